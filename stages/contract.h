/* contract.h - submission contracts: what a competition accepts, checked
 * before a submission file is written or uploaded.
 *
 * A competition may declare its contract in the config (every key optional):
 *   competition:
 *     submission:
 *       columns: [PassengerId, Survived]  # the header, in order (default: the sample's)
 *       ids: sample        # sample: the sample's ids in its order | set: the same
 *                          # ids in any order | any: not checked
 *       values: auto       # auto | probability | label | tags | rle | number | text
 *       labels: [0, 1]     # label: the allowed values (default: the dataset's classes)
 *       vocabulary: [...]  # tags: the allowed tags (default: the dataset's classes)
 *       min: 0             # number: bounds (a probability is always within [0, 1])
 *       max: 1
 *       rle_order: column  # rle: the pixel order (default: the submit stage's)
 * With values: auto each column gets the kind the submit stage writes for
 * the task and the stage's `format`:
 *   binary target       probability (format auto, proba) or label (format label)
 *   a class-named column probability, or label 0/1 with format label
 *   multiclass target   label;  regression: number;  multilabel target: tags
 *   segmentation        rle (text when the stage writes WKT; the stage's
 *                       class_column is text)
 * Every file must have the contract's header, the sample's row count, the
 * ids as declared and, in every cell, a value of its column's kind: numbers
 * finite and not empty, labels among the labels, tags (space-separated,
 * possibly none) in the vocabulary, RLE as 1-indexed "start length" pairs
 * with ascending starts and no overlapping runs (or the stage's `empty`).
 * Failures are KP_ERR_FORMAT with one sentence naming the place:
 *   FILE:1: header 'id,target' differs from the contract's 'PassengerId,Survived'
 *   FILE:7: 417 rows, the sample has 418
 *   FILE:LINE:COL: column 'Survived' of id '892': 'x' is not one of the labels 0, 1
 */
#ifndef KP_CONTRACT_H
#define KP_CONTRACT_H

#include <stddef.h>
#include "stage.h"
#include "../lib/buf.h"
#include "../lib/params.h"
#include "../pipeline/config.h"

typedef struct kp_contract kp_contract;

/* The keys of competition.submission, {NULL}-terminated (config.c validates
 * the block against it). */
extern const kp_keyspec kp_contract_keys[];

/* Checks what a keyspec cannot in a validated competition.submission block p
 * of comp (min <= max, the id column among the columns, no column twice);
 * errors read "FILE:LINE:COL: competition.submission.KEY: ...". */
int kp_contract_check_params(const kp_params *p, const kp_competition *comp, const char *file,
                             char *err, size_t errlen);

/* Builds the contract of cfg's competition for the submit stage submit_stage
 * (borrowed; NULL: format auto, no segmentation options) and the dataset's
 * classes (borrowed, n_classes of them; NULL: the contract's labels or
 * vocabulary); reads the sample submission.  *out is caller-owned
 * (kp_contract_free), untouched on failure. */
int kp_contract_create(const kp_config *cfg, const kp_stage *submit_stage,
                       const char *const *classes, int n_classes, kp_contract **out,
                       char *err, size_t errlen);

/* Frees a contract; NULL is accepted. */
void kp_contract_free(kp_contract *c);

/* Checks a submission's text (len bytes, borrowed; name for messages);
 * 0 or KP_ERR_FORMAT with the first problem. */
int kp_contract_check(const kp_contract *c, const char *name, const char *text, size_t len,
                      char *err, size_t errlen);

/* Checks the file at path (a gzip file is checked uncompressed). */
int kp_contract_check_file(const kp_contract *c, const char *path, char *err, size_t errlen);

/* Builds the contract for a submit stage with the classes of the stage's
 * dataset artifact when it exists, else the contract's own labels or
 * vocabulary (for `kpipe kaggle submit --config`); *out caller-owned. */
int kp_contract_for_stage(const kp_config *cfg, const kp_stage *submit_stage,
                          kp_contract **out, char *err, size_t errlen);

/* Appends one line per rule of c to out (for --dry-run and the docs);
 * 0 or KP_ERR_NOMEM. */
int kp_contract_describe(const kp_contract *c, kp_buf *out);

#endif

/* folds.h - the folds stage: a fold number in [0, k) for every train row.
 *
 * Kinds:
 *   plain       rows shuffled, then cut into k contiguous near-equal chunks
 *               (fold sizes differ by at most one);
 *   stratified  each class's rows shuffled and dealt round-robin, the fold
 *               counter running on from one class to the next, so each fold
 *               holds floor or ceil(n_c / k) rows of every class c;
 *   group       groups (sizes descending, ties in a seeded shuffled order)
 *               each go whole to the currently smallest fold, as
 *               scikit-learn's GroupKFold; a group is never split.
 * Repeat r uses the stream kp_rng_derive(seed, r).  The stage keys k, kind,
 * seed, repeats and group default to the competition's folds block.
 */
#ifndef KP_FOLDS_H
#define KP_FOLDS_H

#include <stdint.h>
#include <stdio.h>
#include <stddef.h>
#include "../lib/rng.h"
#include "../pipeline/config.h"
#include "artifact.h"
#include "stage.h"

/* The folds stage type. */
extern const kp_stage_ops kp_stage_folds;

/* Fills out[n] with plain k folds (2 <= k <= n); 0 or KP_ERR_ARG. */
int fold_assign_plain(int64_t n, int k, kp_rng *rng, int32_t *out, char *err, size_t errlen);

/* Fills out[n] with stratified k folds of class labels y[n] (integers in
 * [0, n_classes)); KP_ERR_ARG when a class has fewer than k rows. */
int fold_assign_stratified(const float *y, int64_t n, int n_classes, int k, kp_rng *rng,
                           int32_t *out, char *err, size_t errlen);

/* Fills out[n] with k folds that never split a group (groups[n], any
 * values); KP_ERR_ARG when there are fewer than k distinct groups. */
int fold_assign_group(const int64_t *groups, int64_t n, int k, kp_rng *rng, int32_t *out,
                      char *err, size_t errlen);

/* The folds settings once stage keys and the competition are merged. */
typedef struct kp_fold_spec {
    int k, repeats;
    kp_fold_kind kind;
    uint64_t seed;
    const char *group;          /* borrowed; NULL when none */
} kp_fold_spec;

/* Returns "plain", "stratified" or "group". */
const char *kp_fold_kind_name(kp_fold_kind kind);

/* Resolves opts (stage keys: an absent or "" key takes the competition's
 * value) over comp->folds into *out and checks it against comp->task: k >= 2,
 * repeats >= 1, no stratified folds for regression or multilabel, a group
 * column for kind group, equal to the competition's (the only one preprocess
 * stores).  0 or KP_ERR_CONFIG with a message naming the key. */
int kp_folds_resolve(const kp_params *opts, const kp_competition *comp, kp_fold_spec *out,
                     char *err, size_t errlen);

/* Reads the dataset at dataset_path, assigns spec's folds for every repeat
 * and writes the folds artifact to out_path; log (may be NULL) gets the fold
 * sizes.  0 or a negative kp_status. */
int kp_folds_make(const char *dataset_path, const kp_fold_spec *spec, const char *out_path,
                  FILE *log, char *err, size_t errlen);

#endif

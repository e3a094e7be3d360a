/* config.h - a pipeline's YAML config, loaded, checked and matrix-expanded.
 *
 *   competition:
 *     name: demo
 *     train: ../data/demo/train.csv        # paths are relative to this file
 *     test: ../data/demo/test.csv
 *     sample_submission: ../data/demo/sample_submission.csv
 *     id: id
 *     target: diagnosis                    # or a list of columns
 *     task: binary                         # binary|multiclass|regression|multilabel
 *     metric: auc
 *     folds: {k: 5, kind: stratified, seed: 42, repeats: 1, group: col}
 *   run_dir: runs/demo                     # optional
 *   stages:
 *     lr:
 *       type: train
 *       needs: [prep, folds]
 *       model: logistic
 *       params: {C: 1.0}
 *       matrix: {C: [0.1, 1, 10], seed: [1, 2]}
 *
 * A stage with a matrix becomes one stage per combination, named
 * "BASE/K=V,K=V" in the matrix's key order; `needs: [BASE]` names them all,
 * `needs: ["BASE/K=V"]` those with that value of K, and in a stage with a
 * matrix `{K}` in a need is its own value of K (config_needs.c).
 * Matrix keys are model params (into params) or stage keys.  Every error
 * reads "FILE:LINE:COL: KEY.PATH: problem"; nothing runs before the whole
 * config is checked and every input file located.
 */
#ifndef KP_CONFIG_H
#define KP_CONFIG_H

#include <stdint.h>
#include <stddef.h>
#include "../lib/hash.h"
#include "../lib/params.h"
#include "../models/model.h"

struct kp_stage_ops;

typedef enum kp_fold_kind { KP_FOLDS_PLAIN, KP_FOLDS_STRATIFIED, KP_FOLDS_GROUP } kp_fold_kind;

typedef struct kp_competition {
    char *name;
    char *train, *test, *sample_submission;   /* resolved paths */
    char *id;
    char **targets; int n_targets;
    kp_task_kind task;
    char *metric;
    double beta, threshold;                   /* metric options (beta: 1, threshold: 0.5) */
    double empty_score;                       /* dice/iou of an empty-empty image (1) */
    struct {
        int k, repeats;
        kp_fold_kind kind;
        char *group;                          /* group column or NULL */
        uint64_t seed;
    } folds;
    kp_params *submission;                    /* the submission contract's keys
                                                 (stages/contract.h), validated; NULL
                                                 when the block is absent; owned */
} kp_competition;

typedef struct kp_stage {
    char *name;              /* unique: "lr" or "lr/C=0.1,seed=1" */
    char *base;              /* the name as declared ("lr") */
    char *type;              /* stage type name */
    const struct kp_stage_ops *ops;
    int *needs; int n_needs; /* indices into kp_config.stages, in declared order */
    kp_params *opts;         /* the stage's own keys (type/needs/matrix/params excluded), validated */
    kp_params *params;       /* the `params:` map (model params), possibly empty */
    char *dir;               /* run_dir/name: where its outputs and logs live */
    int line, col;           /* where the stage was declared */
    void *state;             /* owned by the stage type (ops->free_state) */
} kp_stage;

typedef struct kp_config {
    char *path;              /* the config file as given */
    char *dir;               /* its folder: paths resolve against it */
    char *run_dir;           /* default: DIR/runs/BASENAME */
    kp_competition comp;
    kp_stage *stages; int n_stages;   /* in declaration order, matrices expanded */
    kp_hash text_hash;       /* of the YAML text as loaded (the up-to-date stamp's key) */
} kp_config;

/* Loads, checks and expands path; *out caller-owned (kp_config_free). */
int kp_config_load(const char *path, kp_config **out, char *err, size_t errlen);

/* The same from an in-memory YAML text; `path` names it and sets the base folder. */
int kp_config_load_string(const char *path, const char *yaml, size_t len, kp_config **out,
                          char *err, size_t errlen);

/* Frees a config; NULL is accepted. */
void kp_config_free(kp_config *c);

/* Returns the index of the stage named name, or -1. */
int kp_config_find_stage(const kp_config *c, const char *name);

/* Resolves a config-relative path into out (absolute paths kept as they are). */
int kp_config_path(const kp_config *c, const char *rel, char *out, size_t outlen);

/* Hashes the competition block into out (part of every task's cache key). */
int kp_config_competition_canonical(const kp_config *c, kp_buf *out);

#endif

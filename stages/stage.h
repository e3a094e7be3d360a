/* stage.h - the interface of a stage type, and what a running task sees.
 *
 * A stage runs as one task, or as n_parts independent part tasks (one per
 * fold) followed by one merge task that depends on all of them.  Parts need
 * the final task of every stage the stage needs; the final task's outputs
 * are the stage's outputs.  Tasks run in a child process (fork, no exec) via
 * ops->run, or, for stages that set ops->command, by exec'ing that command.
 * Adding a stage type is one file defining a kp_stage_ops and one line in
 * stages/registry.c.
 */
#ifndef KP_STAGE_H
#define KP_STAGE_H

#include <stdio.h>
#include <stddef.h>
#include "../lib/params.h"
#include "../lib/buf.h"
#include "../pipeline/config.h"

typedef enum kp_artifact_kind {
    KP_ART_NONE, KP_ART_DATASET, KP_ART_FOLDS, KP_ART_PREDS, KP_ART_FILES,
    KP_ART_SUBMISSION
} kp_artifact_kind;

/* What a task gets when it runs (in the child). All borrowed. */
typedef struct kp_task_ctx {
    const kp_config *cfg;
    const kp_stage *stage;
    int part;            /* 0..n_parts-1 for a part task, -1 for the merge or single task */
    int n_parts;
    int threads;         /* thread budget for BLAS and kp_parallel_for */
    FILE *log;           /* the task's log (also its stdout/stderr) */
} kp_task_ctx;

typedef struct kp_stage_ops {
    const char *name;
    const char *doc;                  /* one line */
    const kp_keyspec *keys;           /* the stage's own keys, {NULL}-terminated */
    kp_artifact_kind output;          /* what its final task produces */
    /* Checks the stage against the whole config at load time (needs of the
     * right kinds, model params against the model's spec, ...); may set
     * st->state. Errors name FILE:LINE:COL and the key. NULL = no check. */
    int (*check)(kp_stage *st, const kp_config *cfg, char *err, size_t errlen);
    /* Returns the number of part tasks (0: the stage is a single task). NULL = 0. */
    int (*n_parts)(const kp_stage *st, const kp_config *cfg);
    /* Appends the paths the task writes (part = -1: final task) to out, one per line. */
    int (*outputs)(const kp_stage *st, const kp_config *cfg, int part, kp_buf *out);
    /* Appends files outside the run dir that the stage reads (CSVs, scripts), one per line. NULL = none. */
    int (*inputs)(const kp_stage *st, const kp_config *cfg, kp_buf *out);
    /* Runs a task in the child process. NULL for command stages. */
    int (*run)(const kp_task_ctx *ctx, char *err, size_t errlen);
    /* Command stages: writes the shell command to run into out. NULL otherwise. */
    int (*command)(const kp_stage *st, const kp_config *cfg, kp_buf *out, char *err, size_t errlen);
    /* Frees st->state. NULL = nothing to free. */
    void (*free_state)(kp_stage *st);
} kp_stage_ops;

/* Returns the registered stage type called name, or NULL. */
const kp_stage_ops *kp_stage_find(const char *name);

/* Returns the number of stage types and, via kp_stage_at, each one. */
int kp_stage_type_count(void);
const kp_stage_ops *kp_stage_at(int i);

/* Returns the index (into cfg->stages) of the first stage that st needs whose
 * output is of kind `kind`, or -1. */
int kp_stage_need_of_kind(const kp_stage *st, const kp_config *cfg, kp_artifact_kind kind);

/* Writes the path of the stage's main artifact ("DIR/dataset.safetensors",
 * "DIR/folds.safetensors", "DIR/preds.safetensors") into out. */
int kp_stage_artifact_path(const kp_stage *st, char *out, size_t outlen);

/* Writes the path of part p's file "DIR/part<p>.safetensors" into out. */
int kp_stage_part_path(const kp_stage *st, int part, char *out, size_t outlen);

#endif

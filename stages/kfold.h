/* kfold.h - the k-fold core shared by the train and stack stages.
 *
 * Part p of a k-fold stage is repeat r = p / k, fold f = p % k: the model is
 * fitted (seed kp_rng_derive(stage seed, p)) on the train rows whose fold in
 * repeat r is not f, and predicts the held-out rows and the whole test set.
 * The held-out rows are also handed to the model as kp_fit_opts.X_valid (for
 * models that early-stop, as is usual on Kaggle; such a model's OOF score is
 * then slightly optimistic).
 * On an image dataset (images_train set) the model is an image model: it
 * fits with kp_model_fit_images on the fold's train rows of the one image
 * tensor (nothing is copied), with the held-out rows as
 * kp_fit_opts.valid_rows, and predicts the held-out and test images with
 * kp_model_predict_images (no transform).
 * Part p writes DIR/part<p>.safetensors
 *   oof_index I64 [n_valid]        the held-out train rows, ascending
 *   oof F32 [n_valid, n_out]       their predictions
 *   test F32 [n_test, n_out]       the test predictions of this part's model
 *   metadata: kpipe.artifact "part", part, score, metric, folds_hash
 * and the checkpoint DIR/model_part<p>.safetensors.  The merge checks every
 * part (folds hash, shapes, every train row held out exactly once per repeat
 * and in the right fold), averages the OOF over repeats and the test over
 * parts in part order (so the bytes never depend on scheduling), scores each
 * part and the whole OOF, and writes DIR/preds.safetensors.  For a
 * multilabel task scored by f1_samples or fbeta_samples the merge also
 * searches per-label thresholds on the OOF (stages/thresholds.h) and writes
 * them into the predictions (metadata thresholds, and oof_score_thresholds:
 * the OOF score with them; the fold scores and oof_score stay at the
 * competition's common threshold).
 *
 * Also here: the config checks and input loading both stages share.
 */
#ifndef KP_KFOLD_H
#define KP_KFOLD_H

#include <stdint.h>
#include <stdio.h>
#include "stage.h"
#include "artifact.h"
#include "../models/metric.h"

/* Everything one k-fold stage fits; all pointers borrowed. */
typedef struct kp_kfold {
    const kp_stage *stage;          /* parts and checkpoints go to stage->dir */
    const kp_model_ops *model;
    const kp_params *params;        /* the model's validated params */
    kp_problem pb;
    kp_matrix X_train, X_test;      /* same cols; for images only .rows counts */
    const kp_images *images_train;  /* an image dataset's images, or NULL (tabular) */
    const kp_images *images_test;   /* X_test.rows images; set with images_train */
    const float *y;                 /* X_train.rows rows in the model.h layout */
    const kp_folds *folds;          /* folds->n == X_train.rows */
    uint64_t seed;                  /* the stage seed */
    const kp_metric_ops *metric;
    kp_metric_opts mopts;
    int threads;
    FILE *log;                      /* may be NULL */
} kp_kfold;

/* Runs part `part`: fits, predicts, writes the part file and the checkpoint. */
int kp_kfold_part(const kp_kfold *kf, int part, char *err, size_t errlen);

/* Merges all k * repeats parts into DIR/preds.safetensors; classes_json is
 * the dataset's "classes" metadata (or NULL). */
int kp_kfold_merge(const kp_kfold *kf, const char *classes_json, char *err, size_t errlen);

/* Writes the checkpoint path "DIR/model_part<p>.safetensors" into out. */
int kp_kfold_model_path(const kp_stage *st, int part, char *out, size_t outlen);

/* Appends the part and checkpoint paths (part >= 0) or the preds path (part
 * -1) to out, one per line: the outputs() of a k-fold stage. */
int kp_kfold_outputs(const kp_stage *st, int part, kp_buf *out);

/* ---- config checks (at load time) ---- */

/* Resolves the k and repeats of the folds stage that st needs (its own k /
 * repeats keys, else the competition's); returns k * repeats, or 0 when st
 * needs no folds stage. */
int kp_kfold_count(const kp_stage *st, const kp_config *cfg);

/* Checks st's needs: exactly one dataset and one folds stage, and between
 * min_preds and max_preds prediction stages (max < 0: no limit). */
int kp_kfold_check_needs(const kp_stage *st, const kp_config *cfg, int min_preds,
                         int max_preds, char *err, size_t errlen);

/* Checks that model `name` (from the stage key `key`) is registered (else a
 * suggestion), supports the competition's task, fits what the stage gives it
 * (images when st's dataset stage is of type images and st stacks no
 * predictions, else a feature matrix), and validates st->params against its
 * keyspec ("stages.NAME.params"). */
int kp_kfold_check_model(kp_stage *st, const kp_config *cfg, const char *key,
                         const char *name, char *err, size_t errlen);

/* ---- at run time ---- */

/* Opens the dataset and folds artifacts st needs and checks they agree
 * (rows; k * repeats == n_parts when n_parts > 0); both caller-owned. */
int kp_kfold_open_inputs(const kp_task_ctx *ctx, kp_dataset **d, kp_folds **f,
                         char *err, size_t errlen);

/* Finds the competition metric and its options. */
int kp_kfold_metric(const kp_config *cfg, const kp_problem *pb, const kp_metric_ops **m,
                    kp_metric_opts *o, char *err, size_t errlen);

/* Scores the rows idx[0..n) of pred (n_out per row, indexed by train row)
 * against y; idx NULL = all rows 0..n. */
int kp_kfold_score(const kp_metric_ops *m, const kp_metric_opts *o, const kp_problem *pb,
                   const float *y, const float *pred, const int64_t *idx, int64_t n,
                   double *out, char *err, size_t errlen);

/* Scores pred (indexed by train row) per part of the folds (k * repeats
 * scores into out, caller-allocated, in part order). */
int kp_kfold_fold_scores(const kp_metric_ops *m, const kp_metric_opts *o,
                         const kp_problem *pb, const float *y, const float *pred,
                         const kp_folds *f, double *out, char *err, size_t errlen);

/* Logs the per-fold scores, "cv METRIC mean ± std" and the OOF score. */
void kp_kfold_log_scores(FILE *log, const char *metric, const double *scores, int k,
                         int repeats, double oof_score);

/* printf to the task log (a NULL log is ignored); flushes. */
void kp_kfold_logf(FILE *log, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif

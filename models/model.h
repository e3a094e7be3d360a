/* model.h - the one interface every model in the zoo implements.
 *
 * A model is fitted on a dense row-major float matrix and predicts one row of
 * n_out floats per input row:
 *   binary      n_out = 1, P(y = 1)          y[i] in {0, 1}
 *   multiclass  n_out = n_classes, P(class)  y[i] = class index
 *   regression  n_out = 1, the value         y[i] = target
 *   multilabel  n_out = n_labels, P(label)   y[i * n_out + j] in {0, 1}
 *   segmentation n_out = mask_c * mask_h * mask_w: a CHW probability map per
 *               image (mask_c 1: P(pixel in the mask), sigmoid; mask_c >= 2:
 *               P(pixel of class c), softmax, class 0 the background);
 *               y[i * mask_h * mask_w + p] = pixel p's mask value (0/1 or class)
 * Adding a model is one file defining a kp_model_ops and one line in
 * models/registry.c.  Checkpoints are safetensors files whose metadata holds
 * "kpipe.model" (the model name), "kpipe.task" and "kpipe.n_out"; loading
 * one of another model type, or a corrupted one, is a clear error.
 */
#ifndef KP_MODEL_H
#define KP_MODEL_H

#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include "../lib/params.h"
#include "safetensors.h"

typedef enum kp_task_kind {
    KP_TASK_BINARY, KP_TASK_MULTICLASS, KP_TASK_REGRESSION, KP_TASK_MULTILABEL,
    KP_TASK_SEGMENTATION, KP_TASK_COUNT
} kp_task_kind;

#define KP_TASK_BIT(t) (1u << (t))

typedef struct kp_problem {
    kp_task_kind task;
    int n_out;          /* outputs per row, see above */
    int mask_c, mask_h, mask_w;   /* segmentation: map channels and size (else 0) */
} kp_problem;

/* Returns the target values per row: 1, n_out (multilabel) or mask_h * mask_w. */
int kp_problem_y_width(const kp_problem *pb);

/* Parses a map shape "CxHxW" (each in 1..65536); 0 or KP_ERR_ARG. */
int kp_mask_shape_parse(const char *s, int *c, int *h, int *w);

/* A dense row-major matrix; data borrowed. */
typedef struct kp_matrix {
    const float *data;
    int64_t rows, cols;
} kp_matrix;

/* A competition's images decoded once (lib/image_set.h): n images of
 * height x width x channels samples, HWC, uint8_t (depth 8) or uint16_t
 * (depth 16), with the per-channel mean and std of the train images in
 * sample units.  All borrowed. */
typedef struct kp_images {
    const void *data;
    int64_t n;
    int height, width, channels, depth;
    const float *mean, *std;
} kp_images;

typedef struct kp_fit_opts {
    uint64_t seed;            /* for any randomness in the fit */
    int threads;              /* thread budget (BLAS and kp_parallel_for) */
    const kp_matrix *X_valid; /* optional held-out rows for early stopping, or NULL */
    const float *y_valid;
    FILE *log;                /* progress lines (may be NULL) */
    /* Optional: every train row of the data set (all folds, features only),
     * for label-free preprocessing shared by every fold, e.g. gbdt's bin
     * edges; NULL means X. */
    const kp_matrix *X_all;
    /* Image models: the held-out rows (of the same kp_images as the fit's)
     * for validation each epoch, or NULL; their targets are y_valid. */
    const int64_t *valid_rows;
    int64_t n_valid;
} kp_fit_opts;

typedef struct kp_model_ops {
    const char *name;
    const char *doc;                 /* one line */
    const kp_keyspec *params;        /* {NULL}-terminated */
    unsigned tasks;                  /* KP_TASK_BIT mask of supported tasks */
    /* Fits on X (rows x cols) and y; *model is owned by the caller (ops->free). */
    int (*fit)(const kp_params *params, const kp_problem *pb, const kp_matrix *X,
               const float *y, const kp_fit_opts *opts, void **model,
               char *err, size_t errlen);
    /* Writes X->rows * n_out predictions to out (caller-allocated). */
    int (*predict)(const void *model, const kp_matrix *X, float *out, int threads,
                   char *err, size_t errlen);
    /* Adds the model's tensors and metadata to w. */
    int (*save)(const void *model, kp_stw *w, char *err, size_t errlen);
    /* Rebuilds a model from an opened checkpoint; *model caller-owned. */
    int (*load)(const kp_st *st, const kp_problem *pb, void **model, char *err, size_t errlen);
    /* Frees a model; NULL is accepted. */
    void (*free)(void *model);
    /* 1 if X may hold NaN (a missing value, e.g. preprocess `impute: none`),
     * which the model routes itself; else kp_model_fit/predict refuse NaN.
     * Infinities are always refused. */
    int missing_ok;
    /* Image models (NULL for tabular ones): fit on rows[0..n) of X with
     * targets y (n rows in the layout above), and predict rows[0..n) of X
     * after D4 transform `d4` (lib/d4.h; 0 = as is) into out (n * n_out). */
    int (*fit_images)(const kp_params *params, const kp_problem *pb, const kp_images *X,
                      const int64_t *rows, int64_t n, const float *y,
                      const kp_fit_opts *opts, void **model, char *err, size_t errlen);
    int (*predict_images)(const void *model, const kp_images *X, const int64_t *rows,
                          int64_t n, int d4, float *out, int threads, char *err,
                          size_t errlen);
    /* Optional: checks what the keyspec cannot (e.g. cnn's block grammar) on
     * validated params at config load; errors read "FILE:LINE:COL: WHERE.KEY...". */
    int (*check)(const kp_params *params, const char *file, const char *where, char *err,
                 size_t errlen);
} kp_model_ops;

/* A fitted model of any type. */
typedef struct kp_model kp_model;

/* Returns the registered model called name, or NULL. */
const kp_model_ops *kp_model_find(const char *name);

/* Returns the number of registered models and, via kp_model_at, each one. */
int kp_model_count(void);
const kp_model_ops *kp_model_at(int i);

/* Returns the kp_task_kind for "binary" etc.; 0 or KP_ERR_ARG. */
int kp_task_parse(const char *s, kp_task_kind *out);

/* Returns "binary", "multiclass", "regression" or "multilabel". */
const char *kp_task_name(kp_task_kind t);

/* Fits model `name` with validated params; *out caller-owned (kp_model_free). */
int kp_model_fit(const kp_model_ops *ops, const kp_params *params, const kp_problem *pb,
                 const kp_matrix *X, const float *y, const kp_fit_opts *opts,
                 kp_model **out, char *err, size_t errlen);

/* Predicts X->rows * n_out values into out (caller-allocated). */
int kp_model_predict(const kp_model *m, const kp_matrix *X, float *out, int threads,
                     char *err, size_t errlen);

/* Fits image model `ops` (it has fit_images) on rows[0..n) of X, targets y
 * (n rows in the layout above; opts->valid_rows / y_valid optional, also
 * checked); params and X borrowed; *out caller-owned (kp_model_free). */
int kp_model_fit_images(const kp_model_ops *ops, const kp_params *params, const kp_problem *pb,
                        const kp_images *X, const int64_t *rows, int64_t n, const float *y,
                        const kp_fit_opts *opts, kp_model **out, char *err, size_t errlen);

/* Predicts rows[0..n) of X after D4 transform d4 (lib/d4.h, 0 = as is) into
 * out (n * n_out, caller-allocated). */
int kp_model_predict_images(const kp_model *m, const kp_images *X, const int64_t *rows,
                            int64_t n, int d4, float *out, int threads, char *err,
                            size_t errlen);

/* Writes image `row` of X as normalised CHW floats into dst (channels x
 * height x width): (sample - mean[c]) / std[c], both per channel in sample
 * units (std > 0), for image models' batches. */
void kp_images_to_chw(const kp_images *X, int64_t row, const float *mean, const float *std,
                      float *dst);

/* Saves the model as a safetensors checkpoint at path (atomically). */
int kp_model_save(const kp_model *m, const char *path, char *err, size_t errlen);

/* Loads a checkpoint; if expect is non-NULL the file must be of that model
 * type.  *out caller-owned. */
int kp_model_load(const char *path, const kp_model_ops *expect, kp_model **out,
                  char *err, size_t errlen);

/* Returns the model's ops and problem; borrowed. */
const kp_model_ops *kp_model_ops_of(const kp_model *m);
const kp_problem *kp_model_problem(const kp_model *m);

/* Frees the model; NULL is accepted. */
void kp_model_free(kp_model *m);

#endif

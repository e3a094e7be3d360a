/* linear.h - the fitted form shared by linear models (internal to models/).
 *
 * out[i, k] = link(intercept[k] + sum_j coef[k, j] * X[i, j]), computed in
 * double from the float weights, so a model fitted in this process and one
 * loaded from its checkpoint predict the same bits.  Checkpoint tensors:
 * "coef" F32 [n_out, n_features] and "intercept" F32 [n_out].
 */
#ifndef KP_LINEAR_H
#define KP_LINEAR_H

#include <stdint.h>
#include "model.h"

typedef enum kp_link {
    KP_LINK_IDENTITY,   /* regression value */
    KP_LINK_CLIP01,     /* the value clipped to [0, 1]: a score, not a probability */
    KP_LINK_SIGMOID,    /* independent probabilities (binary, multilabel) */
    KP_LINK_SOFTMAX     /* class probabilities summing to 1 (multiclass) */
} kp_link;

typedef struct kp_linear {
    kp_link link;
    int n_out;
    int64_t n_features;
    float *coef;        /* n_out x n_features, owned */
    float *intercept;   /* n_out, owned */
} kp_linear;

/* Returns a zeroed model (NULL on allocation failure); free with kp_linear_free. */
kp_linear *kp_linear_create(kp_link link, int n_out, int64_t n_features);

/* Frees a kp_linear; NULL is accepted (the ops->free of linear models). */
void kp_linear_free(void *model);

/* Writes X->rows * n_out predictions (ops->predict of linear models). */
int kp_linear_predict(const void *model, const kp_matrix *X, float *out, int threads,
                      char *err, size_t errlen);

/* Adds "coef" and "intercept" to w (ops->save of linear models). */
int kp_linear_save(const void *model, kp_stw *w, char *err, size_t errlen);

/* Reads "coef" and "intercept" from st, checking dtypes, shapes against
 * pb->n_out and finiteness; *out caller-owned. */
int kp_linear_load(const kp_st *st, const kp_problem *pb, kp_link link, kp_linear **out,
                   char *err, size_t errlen);

#endif

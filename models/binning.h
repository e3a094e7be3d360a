/* binning.h - features quantised into at most 255 bins, as XGBoost `hist`
 * and LightGBM do, for the tree models (gbdt, forest).
 *
 * kp_bins_create() finds, for every feature, ascending cut values
 * cut[0] < cut[1] < ... < cut[nb-1] = +inf from the non-missing values of a
 * matrix (all distinct values when there are at most max_bin of them, with
 * cuts half way between neighbours; else quantiles of at most
 * KP_BINS_SAMPLE rows chosen by a fixed stride, so the result is the same
 * for the same matrix whatever the thread count).  A value x falls in bin
 * b = the first b with x <= cut[b]; NaN falls in KP_BIN_MISSING.  So a tree
 * split "bin <= b" is exactly "x <= cut[b]" on raw floats, and a model can
 * store float thresholds and predict without the bins.
 */
#ifndef KP_BINNING_H
#define KP_BINNING_H

#include <stdint.h>
#include "model.h"

#define KP_BIN_MISSING 255      /* the code of a NaN */
#define KP_BINS_MAX 255         /* most value bins per feature */
#define KP_BINS_SAMPLE 200000   /* rows looked at to find quantile cuts */

typedef struct kp_bins kp_bins;

/* Finds the cuts of every column of X with at most max_bin (2..255) bins per
 * feature, on up to `threads` threads; *out caller-owned (kp_bins_free). */
int kp_bins_create(const kp_matrix *X, int max_bin, int threads, kp_bins **out,
                   char *err, size_t errlen);

/* Frees the bins; NULL is accepted. */
void kp_bins_free(kp_bins *b);

/* Returns the number of features. */
int kp_bins_features(const kp_bins *b);

/* Returns feature f's number of value bins (1..max_bin) and its cuts in
 * *cuts (borrowed, ascending, the last one +inf). */
int kp_bins_cuts(const kp_bins *b, int f, const float **cuts);

/* Returns the bin of value x for feature f (KP_BIN_MISSING for NaN). */
uint8_t kp_bins_code(const kp_bins *b, int f, float x);

/* Writes the bins of every cell of X (X->cols must equal the feature count)
 * into codes, row-major: codes[i * cols + f]; codes is caller-allocated
 * (rows * cols bytes).  Runs on up to `threads` threads. */
int kp_bins_apply(const kp_bins *b, const kp_matrix *X, uint8_t *codes, int threads,
                  char *err, size_t errlen);

#endif

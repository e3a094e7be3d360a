/* seg_loss.h - segmentation losses: BCE / cross-entropy, soft Dice, soft Jaccard.
 *
 * A segmentation net outputs logits z[n, C, P] (P = H * W pixels, C mask
 * channels); targets are y[n, P]: for C == 1 the mask value (0/1, or a soft
 * target in [0, 1]), for C >= 2 the class index 0..C-1 (class 0 background).
 * Probabilities are p = sigmoid(z) for C == 1 and the softmax over the C
 * channels of each pixel for C >= 2.  With the weights of a kp_seg_loss:
 *
 *   total   = bce * BCE + dice * DICE + jaccard * JACCARD
 *   BCE     = mean over the n * P pixels of BCEWithLogits(z, y) (C == 1), or
 *             of the softmax cross-entropy -log p[y] (C >= 2)
 *   DICE    = mean over images i and channels k of
 *             1 - (2 sum_j p y + 1) / (sum_j p + sum_j y + 1)
 *   JACCARD = mean over images i and channels k of
 *             1 - (sum_j p y + 1) / (sum_j p + sum_j y - sum_j p y + 1)
 *
 * where the channels are the one channel for C == 1, and classes 1..C-1
 * (with one-hot targets y = [y_j == k]) for C >= 2; sums run over the P
 * pixels of one image.  These are the definitions of the PyTorch benchmark
 * (smooth 1, per-image soft scores as in the Carvana and Nerve solutions).
 *
 * Numerically stable for any finite logits; sums are per image in double;
 * images run in parallel and their losses are added in image order, so the
 * result has the same bits for every thread count.  The pixel math runs 16
 * pixels at a time (AVX-512 where the CPU has it, SSE otherwise: the same
 * operations in the same order, so the same bits).  Logits are meant to be
 * finite: a NaN or infinite one makes the loss NaN.
 */
#ifndef KP_NN_SEG_LOSS_H
#define KP_NN_SEG_LOSS_H

#include <stddef.h>

/* The weights of the three terms (0 = term not used). */
typedef struct kp_seg_loss {
    float bce, dice, jaccard;
} kp_seg_loss;

/* Parses "bce", "dice", "jaccard", "ce", sums "bce+dice" and weights
 * "0.5*bce + 2*dice" (spaces allowed; "ce" is the same term as "bce": sigmoid
 * BCE for C == 1, softmax cross-entropy for C >= 2; a weight is a positive
 * finite number, each term at most once).  Fills *out and returns 0, or
 * returns KP_ERR_ARG with a message naming the bad term (*out untouched). */
int kp_seg_loss_parse(const char *s, kp_seg_loss *out, char *err, size_t errlen);

/* Floats of workspace kp_seg_loss_eval needs for n images of c channels and
 * `pixels` pixels on `threads` threads. */
size_t kp_seg_loss_workspace(int n, int c, int pixels, int threads);

/* Returns the loss (the total above, which is a mean over the batch) of
 * logits z[n, c, pixels] against targets y[n, pixels]; writes the
 * probabilities to p[n, c, pixels] (or NULL) and the gradient of the loss
 * with respect to z to dz[n, c, pixels] (overwritten; NULL = not wanted).
 * ws: kp_seg_loss_workspace(n, c, pixels, threads) floats, caller-owned
 * (n and threads here at most the workspace's).
 * For c >= 2 the y are class indices 0..c-1 (the caller checks them: any
 * other value only makes the loss meaningless, never reads out of bounds). */
double kp_seg_loss_eval(const kp_seg_loss *L, int n, int c, int pixels, const float *z,
                        const float *y, float *p, float *dz, float *ws, int threads);

/* For tests: 0 makes later calls take the SSE path even on an AVX-512 CPU,
 * 1 (the default) lets them choose; both give the same bits.  Not thread-safe. */
void kp_seg_loss_set_simd(int on);

#endif

/* kernels.h - the forward and backward passes of the network library's layers.
 *
 * Tensors are NCHW float32, batch first: x[((i * C + c) * H + y) * W + x].
 * Every kernel runs over the whole batch of n images on `threads` threads
 * (kp_parallel_for over fixed chunks of images) and gives the same bits for
 * every thread count: partial sums are made per chunk and reduced in chunk
 * order.  GEMMs are cblas_sgemm calls, made from the kernel's own threads;
 * the caller sets OpenBLAS to one thread while training.  Kernels allocate
 * nothing: the caller allocates every buffer and workspace once (the sizes
 * come from the *_workspace functions) and reuses them every batch, because
 * touching fresh memory costs far more than the arithmetic on these machines.
 *
 * Backward passes: dx is overwritten (NULL: not wanted); parameter
 * gradients dW, db, dgamma, dbeta are ACCUMULATED (+=), so a caller zeroes
 * them once per batch.  Each backward is checked against finite differences
 * in tests/test_nn_kernels.c.
 */
#ifndef KP_NN_KERNELS_H
#define KP_NN_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* ---- conv2d (im2col + sgemm) ---- */

/* A conv2d layer's geometry: square kernel k, same stride/pad/dilation on
 * both axes; out = (in + 2 pad - dilation (k - 1) - 1) / stride + 1. */
typedef struct kp_conv_shape {
    int c_in, h_in, w_in;
    int c_out, k, stride, pad, dilation;
    int h_out, w_out;               /* filled by kp_conv_shape_init */
} kp_conv_shape;

/* Fills h_out, w_out; 0, or KP_ERR_ARG with a message if any size is
 * non-positive or the output would be empty. */
int kp_conv_shape_init(kp_conv_shape *s, char *err, size_t errlen);

/* Floats of workspace kp_conv_forward/backward need for batch n on threads. */
size_t kp_conv_workspace(const kp_conv_shape *s, int n, int threads);

/* y[n, c_out, h_out, w_out] = conv(x[n, c_in, h_in, w_in], W[c_out, c_in, k, k]) + b[c_out]
 * (b may be NULL).  ws: kp_conv_workspace floats. */
void kp_conv_forward(const kp_conv_shape *s, int n, const float *x, const float *W,
                     const float *b, float *y, float *ws, int threads);

/* From dy: dx (overwritten, or NULL), dW += , db += (or NULL). */
void kp_conv_backward(const kp_conv_shape *s, int n, const float *x, const float *W,
                      const float *dy, float *dx, float *dW, float *db, float *ws,
                      int threads);

/* ---- pooling ---- */

typedef enum kp_pool_kind { KP_POOL_MAX, KP_POOL_AVG } kp_pool_kind;

/* A pooling window k x k with stride and padding (padding never wins a max
 * and is not counted in an average: count_include_pad=False). */
typedef struct kp_pool_shape {
    kp_pool_kind kind;
    int c, h_in, w_in, k, stride, pad;
    int h_out, w_out;               /* filled by kp_pool_shape_init, floor mode */
} kp_pool_shape;

/* Fills h_out, w_out; 0 or KP_ERR_ARG (pad > k / 2, empty output, ...). */
int kp_pool_shape_init(kp_pool_shape *s, char *err, size_t errlen);

/* y[n, c, h_out, w_out]; for max pooling argmax[n, c, h_out, w_out] gets the
 * index (y * w_in + x) of each maximum, for the backward pass (NULL for avg). */
void kp_pool_forward(const kp_pool_shape *s, int n, const float *x, float *y,
                     int32_t *argmax, int threads);

/* dx (overwritten) from dy. */
void kp_pool_backward(const kp_pool_shape *s, int n, const float *dy,
                      const int32_t *argmax, float *dx, int threads);

/* Global average pooling: y[n, c] = mean over h x w of x[n, c, h, w]. */
void kp_gap_forward(int n, int c, int hw, const float *x, float *y, int threads);
void kp_gap_backward(int n, int c, int hw, const float *dy, float *dx, int threads);

/* ---- batch norm (over n and the hw positions of each channel) ---- */

typedef struct kp_bn_state {
    int c;
    float eps, momentum;            /* PyTorch's defaults: 1e-5, 0.1 */
    float *gamma, *beta;            /* [c] parameters */
    float *running_mean, *running_var;  /* [c]; var unbiased, as PyTorch keeps it */
    float *save_mean, *save_invstd; /* [c] written by a training forward */
    int fuse_leaky;                 /* 1: y = leaky(bn(x), slope) in one pass, and the
                                     * backward's dy is that of the activation's output */
    float slope;                    /* the fused activation's slope (0: ReLU) */
} kp_bn_state;

/* Floats of workspace the batch norm passes need for batch n on threads. */
size_t kp_bn_workspace(int n, int c, int threads);

/* Training: normalises with the batch statistics (biased variance), updates
 * the running ones, fills save_*; y may equal x. */
void kp_bn_forward_train(kp_bn_state *s, int n, int hw, const float *x, float *y,
                         float *ws, int threads);

/* Inference: normalises with the running statistics; y may equal x. */
void kp_bn_forward_eval(const kp_bn_state *s, int n, int hw, const float *x, float *y,
                        int threads);

/* From the training forward's x and dy: dx (overwritten; may equal dy),
 * dgamma +=, dbeta +=. */
void kp_bn_backward(const kp_bn_state *s, int n, int hw, const float *x, const float *dy,
                    float *dx, float *dgamma, float *dbeta, float *ws, int threads);

/* ---- transposed conv2d and bilinear upsampling (upsample.c) ---- */

/* A transposed conv2d layer's geometry (PyTorch's ConvTranspose2d with
 * padding 0): W[c_in, c_out, k, k], b[c_out], out = (in - 1) stride + k. */
typedef struct kp_upconv_shape {
    int c_in, h_in, w_in, c_out, k, stride;
    int h_out, w_out;               /* filled by kp_upconv_shape_init */
} kp_upconv_shape;

/* Fills h_out, w_out; 0, or KP_ERR_ARG with a message if a size is not
 * positive or the layer is too large. */
int kp_upconv_shape_init(kp_upconv_shape *s, char *err, size_t errlen);

/* Floats of workspace kp_upconv_forward/backward need for batch n on threads. */
size_t kp_upconv_workspace(const kp_upconv_shape *s, int n, int threads);

/* y[n, c_out, h_out, w_out] = conv_transpose(x[n, c_in, h_in, w_in], W) + b
 * (b may be NULL).  ws: kp_upconv_workspace floats. */
void kp_upconv_forward(const kp_upconv_shape *s, int n, const float *x, const float *W,
                       const float *b, float *y, float *ws, int threads);

/* From dy: dx (overwritten, or NULL), dW += (or NULL), db += (or NULL). */
void kp_upconv_backward(const kp_upconv_shape *s, int n, const float *x, const float *W,
                        const float *dy, float *dx, float *dW, float *db, float *ws,
                        int threads);

/* Bilinear upsampling by an integer factor f >= 1 (PyTorch's nn.Upsample(scale_factor=f,
 * mode='bilinear', align_corners=False)): y[n, c, h f, w f] from x[n, c, h, w]. */
void kp_upsample_forward(int n, int c, int h, int w, int f, const float *x, float *y,
                         int threads);

/* dx[n, c, h, w] (overwritten) from dy[n, c, h f, w f]. */
void kp_upsample_backward(int n, int c, int h, int w, int f, const float *dy, float *dx,
                          int threads);

/* ---- element-wise ---- */

/* y = x > 0 ? x : slope * x (slope 0: ReLU), over count floats; y may equal x. */
void kp_leaky_forward(size_t count, float slope, const float *x, float *y, int threads);

/* dx = dy where y > 0 else slope * dy (from the forward's OUTPUT y, so the
 * pass can run in place); dx may equal dy. */
void kp_leaky_backward(size_t count, float slope, const float *y, const float *dy,
                       float *dx, int threads);

/* Inverted dropout: mask[i] = 0 with probability p, else 1 / (1 - p), drawn
 * from seed (deterministic: element i's draw depends on seed and i only);
 * y = x * mask.  y may equal x. */
void kp_dropout_forward(size_t count, float p, uint64_t seed, const float *x, float *y,
                        float *mask, int threads);
void kp_dropout_backward(size_t count, const float *mask, const float *dy, float *dx,
                         int threads);

/* y = a + b over count floats (residual blocks); backward is dy to both. */
void kp_add_forward(size_t count, const float *a, const float *b, float *y, int threads);

/* Channel concatenation: y[n, ca + cb, hw] from a[n, ca, hw] and b[n, cb, hw]. */
void kp_concat_forward(int n, int ca, int cb, int hw, const float *a, const float *b,
                       float *y, int threads);

/* Splits dy[n, ca + cb, hw] into da (overwritten) and db (overwritten). */
void kp_concat_backward(int n, int ca, int cb, int hw, const float *dy, float *da,
                        float *db, int threads);

/* ---- linear (PyTorch's nn.Linear: W[out, in]) ---- */

/* y[n, out] = x[n, in] W^T + b (b may be NULL). */
void kp_linear_forward(int n, int in, int out, const float *x, const float *W,
                       const float *b, float *y, int threads);

/* Floats of workspace kp_linear_backward needs. */
size_t kp_linear_workspace(int n, int in, int out, int threads);

/* dx (overwritten, or NULL), dW +=, db += (or NULL). */
void kp_linear_backward(int n, int in, int out, const float *x, const float *W,
                        const float *dy, float *dx, float *dW, float *db, float *ws,
                        int threads);

/* ---- losses (mean over the batch) ---- */

/* Softmax cross-entropy of logits z[n, k] against class indices y[n]
 * (as floats); writes probabilities p[n, k] (or NULL) and dz = (p - onehot) / n
 * (or NULL); returns the mean loss. */
double kp_softmax_ce(int n, int k, const float *z, const float *y, float *p, float *dz);

/* Sigmoid binary cross-entropy of logits z[n, k] against 0/1 targets y[n, k],
 * summed over the k outputs and averaged over n (numerically stable);
 * writes p = sigmoid(z) (or NULL) and dz = (p - y) / n (or NULL); returns the loss. */
double kp_sigmoid_bce(int n, int k, const float *z, const float *y, float *p, float *dz);

#endif

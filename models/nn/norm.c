/* norm.c - batch normalisation (PyTorch's BatchNorm2d) over NCHW tensors.
 *
 * One task per channel does the whole channel: it sums the channel over the
 * batch, then normalises it (or forms its gradient) straight away, while the
 * n x hw floats it just read are still in the core's cache (400 KB for a
 * batch of 128 at 32 x 28 x 28), so a pass reads memory once.  A channel's
 * sums are made in one fixed order by one task, so the bits never depend on
 * the thread count and no workspace is needed (the price: a layer with
 * fewer channels than threads, such as one on a 3-band input, uses only c
 * threads; inference splits by image instead).  Sums are made in 16 float
 * lanes over spans of at most BN_SPAN floats, then added into doubles; the
 * variance is summed around the channel's first value, so large means do
 * not cancel.  The affine passes follow PyTorch's CPU kernels:
 *   forward  y = x a + b,  a = gamma invstd, b = beta - mean a
 *   backward dx = (dy - (x - mean) invstd^2 mean(dy (x - mean)) - mean(dy)) gamma invstd
 */
#include <math.h>
#include <string.h>
#include "../../lib/parallel.h"
#include "kernels.h"
#include "pick.h"

#define LANES 16        /* float lanes of a sum: the compiler makes vectors of them */
#define BN_SPAN 1024    /* floats summed in float lanes before the lanes go into doubles */

typedef struct bn_job {
    const kp_bn_state *s;
    kp_bn_state *train;     /* the same state, writable, in a training forward */
    size_t n, hw;
    const float *x, *dy;
    float *y, *dx, *dgamma, *dbeta;
} bn_job;

/* Four vectors of four float lanes: 16 lanes the compiler keeps in registers. */
typedef float v4f __attribute__((vector_size(16)));

/* Loads 4 floats from p (any alignment). */
static inline v4f load4(const float *p)
{
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Adds the 16 lanes of a0..a3 (lane order) into *acc. */
static void add_lanes(v4f a0, v4f a1, v4f a2, v4f a3, double *acc)
{
    double s = 0;
    for (int j = 0; j < 4; j++)
        s += (double)a0[j] + (double)a1[j] + (double)a2[j] + (double)a3[j];
    *acc += s;
}

/* Adds the sum of x[i] - k to acc[0] and of (x[i] - k)^2 to acc[1], i < len. */
static void sums_shifted(const float *x, size_t len, float k, double acc[2])
{
    for (size_t i0 = 0; i0 < len; i0 += BN_SPAN) {
        size_t m = len - i0 < BN_SPAN ? len - i0 : BN_SPAN, i = 0;
        const float *p = x + i0;
        v4f a0 = { 0 }, a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        for (; i + LANES <= m; i += LANES) {
            v4f d0 = load4(p + i) - k, d1 = load4(p + i + 4) - k;
            v4f d2 = load4(p + i + 8) - k, d3 = load4(p + i + 12) - k;
            a0 += d0, a1 += d1, a2 += d2, a3 += d3;
            b0 += d0 * d0, b1 += d1 * d1, b2 += d2 * d2, b3 += d3 * d3;
        }
        for (; i < m; i++) {
            float d = p[i] - k;
            a0[0] += d;
            b0[0] += d * d;
        }
        add_lanes(a0, a1, a2, a3, &acc[0]);
        add_lanes(b0, b1, b2, b3, &acc[1]);
    }
}

/* Adds the sum of dy[i] to acc[0] and of dy[i] (x[i] - mean) to acc[1], i < len. */
static void sums_grad(const float *x, const float *dy, size_t len, float mean, double acc[2])
{
    for (size_t i0 = 0; i0 < len; i0 += BN_SPAN) {
        size_t m = len - i0 < BN_SPAN ? len - i0 : BN_SPAN, i = 0;
        const float *p = x + i0, *q = dy + i0;
        v4f a0 = { 0 }, a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        for (; i + LANES <= m; i += LANES) {
            v4f g0 = load4(q + i), g1 = load4(q + i + 4);
            v4f g2 = load4(q + i + 8), g3 = load4(q + i + 12);
            a0 += g0, a1 += g1, a2 += g2, a3 += g3;
            b0 += g0 * (load4(p + i) - mean), b1 += g1 * (load4(p + i + 4) - mean);
            b2 += g2 * (load4(p + i + 8) - mean), b3 += g3 * (load4(p + i + 12) - mean);
        }
        for (; i < m; i++) {
            a0[0] += q[i];
            b0[0] += q[i] * (p[i] - mean);
        }
        add_lanes(a0, a1, a2, a3, &acc[0]);
        add_lanes(b0, b1, b2, b3, &acc[1]);
    }
}

/* y[i] = x[i] a + b for i < len; y may equal x. */
static void affine(const float *x, float *y, size_t len, float a, float b)
{
    size_t i = 0;
    for (; i + LANES <= len; i += LANES) {
        float t[LANES];
        for (int j = 0; j < LANES; j++)
            t[j] = x[i + j] * a + b;
        memcpy(y + i, t, sizeof t);
    }
    for (; i < len; i++)
        y[i] = x[i] * a + b;
}

/* y[i] = leaky(x[i] a + b, slope): the affine pass with a fused activation. */
static void affine_leaky(const float *x, float *y, size_t len, float a, float b, float slope)
{
    size_t i = 0;
    for (; i + LANES <= len; i += LANES) {
        float t[LANES];
        for (int j = 0; j < LANES; j++) {
            float v = x[i + j] * a + b;
            t[j] = kp_pick(v > 0, v, slope * v);
        }
        memcpy(y + i, t, sizeof t);
    }
    for (; i < len; i++) {
        float v = x[i] * a + b;
        y[i] = v > 0 ? v : slope * v;
    }
}

/* The affine pass of state s on channel c, with its fused activation if any. */
static void channel_affine(const kp_bn_state *s, const float *x, float *y, size_t len, float a,
                           float b)
{
    if (s->fuse_leaky)
        affine_leaky(x, y, len, a, b, s->slope);
    else
        affine(x, y, len, a, b);
}

/* Through a fused activation: g[i] = dy[i] where x[i] a + b > 0, else slope dy[i]
 * (the activation's input is recomputed bit for bit as the forward made it). */
static void leaky_grad(const float *x, const float *dy, float *g, size_t len, float a, float b,
                       float slope)
{
    size_t i = 0;
    for (; i + LANES <= len; i += LANES) {
        float t[LANES];
        for (int j = 0; j < LANES; j++)
            t[j] = kp_pick(x[i + j] * a + b > 0, dy[i + j], slope * dy[i + j]);
        memcpy(g + i, t, sizeof t);
    }
    for (; i < len; i++)
        g[i] = x[i] * a + b > 0 ? dy[i] : slope * dy[i];
}

/* dx[i] = (dy[i] - (x[i] - mean) proj - gmean) scale for i < len; dx may equal dy. */
static void grad_input(const float *x, const float *dy, float *dx, size_t len, float mean,
                       float proj, float gmean, float scale)
{
    size_t i = 0;
    for (; i + LANES <= len; i += LANES) {
        float t[LANES];
        for (int j = 0; j < LANES; j++)
            t[j] = (dy[i + j] - (x[i + j] - mean) * proj - gmean) * scale;
        memcpy(dx + i, t, sizeof t);
    }
    for (; i < len; i++)
        dx[i] = (dy[i] - (x[i] - mean) * proj - gmean) * scale;
}

size_t kp_bn_workspace(int n, int c, int threads)
{
    (void)n, (void)c, (void)threads;
    return 0;   /* a channel's sums live in its task */
}

/* Folds the batch mean and biased variance of channel c into the running
 * statistics (unbiased variance, as PyTorch keeps it) and fills save_*. */
static void bn_update_stats(kp_bn_state *s, size_t c, double mean, double var, double count)
{
    double m = s->momentum, unbiased = count > 1 ? var * count / (count - 1) : var;
    s->running_mean[c] = (float)((1 - m) * s->running_mean[c] + m * mean);
    s->running_var[c] = (float)((1 - m) * s->running_var[c] + m * unbiased);
    s->save_mean[c] = (float)mean;
    s->save_invstd[c] = (float)(1 / sqrt(var + s->eps));
}

/* Training forward of channel c: its statistics, then y. */
static void bn_train_channel(void *data, size_t c, int tid)
{
    (void)tid;
    const bn_job *j = data;
    kp_bn_state *s = j->train;
    size_t stride = (size_t)s->c * j->hw;
    const float *xc = j->x + c * j->hw;
    float k = xc[0];
    double acc[2] = { 0, 0 }, count = (double)j->n * (double)j->hw;
    for (size_t i = 0; i < j->n; i++)
        sums_shifted(xc + i * stride, j->hw, k, acc);
    double dm = acc[0] / count, var = acc[1] / count - dm * dm;
    bn_update_stats(s, c, k + dm, var > 0 ? var : 0, count);
    float a = s->gamma[c] * s->save_invstd[c], b = s->beta[c] - s->save_mean[c] * a;
    for (size_t i = 0; i < j->n; i++)
        channel_affine(s, xc + i * stride, j->y + c * j->hw + i * stride, j->hw, a, b);
}

void kp_bn_forward_train(kp_bn_state *s, int n, int hw, const float *x, float *y,
                         float *ws, int threads)
{
    (void)ws;
    bn_job j = { .s = s, .train = s, .n = (size_t)n, .hw = (size_t)hw, .x = x, .y = y };
    if (n > 0 && hw > 0)
        kp_parallel_for(threads, bn_train_channel, &j, (size_t)s->c);
}

/* Inference forward of image i, every channel. */
static void bn_eval_image(void *data, size_t i, int tid)
{
    (void)tid;
    const bn_job *j = data;
    const kp_bn_state *s = j->s;
    for (size_t c = 0; c < (size_t)s->c; c++) {
        float invstd = (float)(1 / sqrt((double)s->running_var[c] + s->eps));
        float a = s->gamma[c] * invstd, b = s->beta[c] - s->running_mean[c] * a;
        size_t off = (i * (size_t)s->c + c) * j->hw;
        channel_affine(s, j->x + off, j->y + off, j->hw, a, b);
    }
}

void kp_bn_forward_eval(const kp_bn_state *s, int n, int hw, const float *x, float *y,
                        int threads)
{
    bn_job j = { .s = s, .hw = (size_t)hw, .x = x, .y = y };
    if (n > 0 && hw > 0)
        kp_parallel_for(threads, bn_eval_image, &j, (size_t)n);
}

/* dy of the batch norm's output for span [off, off + len): dy itself, or
 * through the fused activation into tmp. */
static const float *span_dy(const bn_job *j, size_t c, size_t off, size_t len, float *tmp)
{
    const kp_bn_state *s = j->s;
    if (!s->fuse_leaky)
        return j->dy + off;
    float a = s->gamma[c] * s->save_invstd[c], b = s->beta[c] - s->save_mean[c] * a;
    leaky_grad(j->x + off, j->dy + off, tmp, len, a, b, s->slope);
    return tmp;
}

/* Backward of channel c: its two sums, dgamma and dbeta, then dx; spans of
 * at most BN_SPAN floats, so a fused activation's gradient stays in L1. */
static void bn_backward_channel(void *data, size_t c, int tid)
{
    (void)tid;
    const bn_job *j = data;
    const kp_bn_state *s = j->s;
    size_t stride = (size_t)s->c * j->hw;
    float mean = s->save_mean[c], invstd = s->save_invstd[c], tmp[BN_SPAN];
    double acc[2] = { 0, 0 }, count = (double)j->n * (double)j->hw;
    for (size_t i = 0; i < j->n; i++)
        for (size_t k = 0; k < j->hw; k += BN_SPAN) {
            size_t off = c * j->hw + i * stride + k, len = j->hw - k < BN_SPAN ? j->hw - k : BN_SPAN;
            sums_grad(j->x + off, span_dy(j, c, off, len, tmp), len, mean, acc);
        }
    if (j->dbeta)
        j->dbeta[c] += (float)acc[0];
    if (j->dgamma)
        j->dgamma[c] += (float)(acc[1] * invstd);
    if (!j->dx)
        return;
    float gmean = (float)(acc[0] / count);
    float proj = (float)(acc[1] / count * invstd * invstd), scale = invstd * s->gamma[c];
    for (size_t i = 0; i < j->n; i++)
        for (size_t k = 0; k < j->hw; k += BN_SPAN) {
            size_t off = c * j->hw + i * stride + k, len = j->hw - k < BN_SPAN ? j->hw - k : BN_SPAN;
            grad_input(j->x + off, span_dy(j, c, off, len, tmp), j->dx + off, len, mean, proj,
                       gmean, scale);
        }
}

void kp_bn_backward(const kp_bn_state *s, int n, int hw, const float *x, const float *dy,
                    float *dx, float *dgamma, float *dbeta, float *ws, int threads)
{
    (void)ws;
    bn_job j = { .s = s, .n = (size_t)n, .hw = (size_t)hw, .x = x, .dy = dy, .dx = dx,
                 .dgamma = dgamma, .dbeta = dbeta };
    if (n > 0 && hw > 0)
        kp_parallel_for(threads, bn_backward_channel, &j, (size_t)s->c);
}

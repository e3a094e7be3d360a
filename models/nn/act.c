/* act.c - the element-wise layers: leaky ReLU / ReLU, dropout, add, concat.
 *
 * The element-wise passes split their floats into fixed chunks of
 * ACT_CHUNK (a constant, so the split never depends on the thread count;
 * nothing is reduced, so any split gives the same bits anyway).  Inner
 * loops work on blocks of 16 floats written through a small array, a shape
 * GCC vectorises at -O2 even when the output may alias the input; the
 * leaky select is made on the bits, as float selects are not vectorised
 * under the default -ftrapping-math.  Dropout's draw for element i is 24
 * bits of a hash of (seed, i) (splitmix64's finaliser), dropped when below
 * p 2^24 (no branch), so the mask is the same for any chunking and thread
 * count.  A NULL input gradient in a backward pass is not wanted: skipped.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "../../lib/parallel.h"
#include "kernels.h"
#include "pick.h"

#define ACT_CHUNK ((size_t)1 << 15)   /* floats per parallel task (128 KB) */
#define LANES 16

typedef struct ew_job {
    size_t count;
    float slope, scale;
    uint32_t thr;           /* dropout: draws below it are dropped */
    uint64_t key;
    const float *a, *b;
    float *y, *mask;
} ew_job;

/* Runs fn over the chunks of job->count floats. */
static void run_chunks(kp_for_fn fn, ew_job *job, int threads)
{
    kp_parallel_for(threads, fn, job, (job->count + ACT_CHUNK - 1) / ACT_CHUNK);
}

/* The float range [*lo, *hi) of chunk c. */
static void chunk_range(const ew_job *j, size_t c, size_t *lo, size_t *hi)
{
    *lo = c * ACT_CHUNK;
    *hi = j->count - *lo < ACT_CHUNK ? j->count : *lo + ACT_CHUNK;
}

/* out[i] = key[i] > 0 ? v[i] : slope v[i] for i in [lo, hi); out may alias. */
static void leaky_span(const float *key, const float *v, float *out, size_t lo, size_t hi,
                       float slope)
{
    size_t i = lo;
    for (; i + LANES <= hi; i += LANES) {
        float t[LANES];
        for (int j = 0; j < LANES; j++)
            t[j] = kp_pick(key[i + j] > 0, v[i + j], slope * v[i + j]);
        memcpy(out + i, t, sizeof t);
    }
    for (; i < hi; i++)
        out[i] = key[i] > 0 ? v[i] : slope * v[i];
}

static void leaky_fwd_chunk(void *data, size_t c, int tid)
{
    (void)tid;
    const ew_job *j = data;
    size_t lo, hi;
    chunk_range(j, c, &lo, &hi);
    leaky_span(j->a, j->a, j->y, lo, hi, j->slope);
}

void kp_leaky_forward(size_t count, float slope, const float *x, float *y, int threads)
{
    ew_job j = { .count = count, .slope = slope, .a = x, .y = y };
    run_chunks(leaky_fwd_chunk, &j, threads);
}

static void leaky_bwd_chunk(void *data, size_t c, int tid)
{
    (void)tid;
    const ew_job *j = data;
    size_t lo, hi;
    chunk_range(j, c, &lo, &hi);
    leaky_span(j->a, j->b, j->y, lo, hi, j->slope);
}

void kp_leaky_backward(size_t count, float slope, const float *y, const float *dy,
                       float *dx, int threads)
{
    ew_job j = { .count = count, .slope = slope, .a = y, .b = dy, .y = dx };
    if (dx)
        run_chunks(leaky_bwd_chunk, &j, threads);
}

/* ---- dropout ---- */

/* splitmix64's finaliser: a bijective 64-bit mix. */
static inline uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

static void dropout_fwd_chunk(void *data, size_t c, int tid)
{
    (void)tid;
    const ew_job *j = data;
    size_t lo, hi;
    chunk_range(j, c, &lo, &hi);
    uint32_t thr = j->thr;
    float scale = j->scale;
    for (size_t i = lo; i < hi; i++) {
        /* 24 random bits k: dropped when k / 2^24 < p, i.e. k < thr (no branch) */
        uint32_t k = (uint32_t)(mix64(j->key + i * 0x9E3779B97F4A7C15u) >> 40);
        float m = kp_pick(k < thr, 0.0f, scale);
        j->mask[i] = m;
        j->y[i] = j->a[i] * m;
    }
}

void kp_dropout_forward(size_t count, float p, uint64_t seed, const float *x, float *y,
                        float *mask, int threads)
{
    float q = p > 0 ? (p < 1 ? p : 1) : 0;
    ew_job j = { .count = count, .scale = q < 1 ? 1 / (1 - q) : 0,
                 .thr = (uint32_t)ceilf(q * 0x1p24f), .key = mix64(seed), .a = x, .y = y,
                 .mask = mask };
    run_chunks(dropout_fwd_chunk, &j, threads);
}

/* y[i] = a[i] * b[i] over chunk c (dropout backward). */
static void mul_chunk(void *data, size_t c, int tid)
{
    (void)tid;
    const ew_job *j = data;
    size_t lo, hi, i;
    chunk_range(j, c, &lo, &hi);
    for (i = lo; i + LANES <= hi; i += LANES) {
        float t[LANES];
        for (int k = 0; k < LANES; k++)
            t[k] = j->a[i + k] * j->b[i + k];
        memcpy(j->y + i, t, sizeof t);
    }
    for (; i < hi; i++)
        j->y[i] = j->a[i] * j->b[i];
}

void kp_dropout_backward(size_t count, const float *mask, const float *dy, float *dx,
                         int threads)
{
    ew_job j = { .count = count, .a = dy, .b = mask, .y = dx };
    if (dx)
        run_chunks(mul_chunk, &j, threads);
}

/* ---- add and concat ---- */
/* (As for every backward pass, a NULL input gradient is not wanted.) */

static void add_chunk(void *data, size_t c, int tid)
{
    (void)tid;
    const ew_job *j = data;
    size_t lo, hi, i;
    chunk_range(j, c, &lo, &hi);
    for (i = lo; i + LANES <= hi; i += LANES) {
        float t[LANES];
        for (int k = 0; k < LANES; k++)
            t[k] = j->a[i + k] + j->b[i + k];
        memcpy(j->y + i, t, sizeof t);
    }
    for (; i < hi; i++)
        j->y[i] = j->a[i] + j->b[i];
}

void kp_add_forward(size_t count, const float *a, const float *b, float *y, int threads)
{
    ew_job j = { .count = count, .a = a, .b = b, .y = y };
    run_chunks(add_chunk, &j, threads);
}

typedef struct cat_job {
    size_t na, nb;          /* floats of a and b per image */
    const float *src, *a_src, *b_src;
    float *dst, *a_dst, *b_dst;
} cat_job;

static void concat_fwd_image(void *data, size_t i, int tid)
{
    (void)tid;
    const cat_job *j = data;
    float *y = j->dst + i * (j->na + j->nb);
    if (j->na)
        memcpy(y, j->a_src + i * j->na, j->na * sizeof *y);
    if (j->nb)
        memcpy(y + j->na, j->b_src + i * j->nb, j->nb * sizeof *y);
}

void kp_concat_forward(int n, int ca, int cb, int hw, const float *a, const float *b,
                       float *y, int threads)
{
    cat_job j = { .na = (size_t)ca * hw, .nb = (size_t)cb * hw, .a_src = a, .b_src = b,
                  .dst = y };
    if (n > 0)
        kp_parallel_for(threads, concat_fwd_image, &j, (size_t)n);
}

static void concat_bwd_image(void *data, size_t i, int tid)
{
    (void)tid;
    const cat_job *j = data;
    const float *dy = j->src + i * (j->na + j->nb);
    if (j->na && j->a_dst)
        memcpy(j->a_dst + i * j->na, dy, j->na * sizeof *dy);
    if (j->nb && j->b_dst)
        memcpy(j->b_dst + i * j->nb, dy + j->na, j->nb * sizeof *dy);
}

void kp_concat_backward(int n, int ca, int cb, int hw, const float *dy, float *da,
                        float *db, int threads)
{
    cat_job j = { .na = (size_t)ca * hw, .nb = (size_t)cb * hw, .src = dy, .a_dst = da,
                  .b_dst = db };
    if (n > 0 && (da || db))
        kp_parallel_for(threads, concat_bwd_image, &j, (size_t)n);
}

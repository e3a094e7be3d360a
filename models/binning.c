/* binning.c - per-feature cut values and uint8 bin codes (see binning.h). */
#include "binning.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/err.h"
#include "../lib/parallel.h"

struct kp_bins {
    int features;
    int stride;        /* cuts per feature slot (max_bin) */
    int *count;        /* value bins of each feature */
    float *cuts;       /* features x stride, ascending, the last used one +inf */
};

/* The bits of a float as an unsigned key with the same order (no NaN). */
static uint32_t float_key(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u & 0x80000000u ? ~u : u | 0x80000000u;
}

static float key_float(uint32_t k)
{
    uint32_t u = k & 0x80000000u ? k & 0x7fffffffu : ~k;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* Sorts v[0..n) ascending (no NaN) by an LSD radix sort on 11-bit digits,
 * with keys (2n) as scratch. */
static void sort_floats(float *v, uint32_t *keys, size_t n)
{
    uint32_t *a = keys, *b = keys + n;
    for (size_t i = 0; i < n; i++)
        a[i] = float_key(v[i]);
    for (int shift = 0; shift < 33; shift += 11) {
        size_t count[2049] = { 0 };
        for (size_t i = 0; i < n; i++)
            count[((a[i] >> shift) & 2047) + 1]++;
        for (int d = 0; d < 2048; d++)
            count[d + 1] += count[d];
        for (size_t i = 0; i < n; i++)
            b[count[(a[i] >> shift) & 2047]++] = a[i];
        uint32_t *t = a;
        a = b;
        b = t;
    }
    for (size_t i = 0; i < n; i++)   /* a: the last pass's output */
        v[i] = key_float(a[i]);
}

/* A cut between two neighbouring sorted values lo < hi: their midpoint when it
 * is strictly below hi in float, else lo (so lo goes left, hi right). */
static float cut_between(float lo, float hi)
{
    float m = (float)(((double)lo + (double)hi) / 2);
    return m < hi && m >= lo ? m : lo;
}

/* Fills cuts with feature values v[0..n) (sorted, no NaN); returns the count. */
static int cuts_from_sorted(const float *v, size_t n, int max_bin, float *cuts)
{
    int nb = 0;
    size_t distinct = n > 0;
    for (size_t i = 1; i < n; i++)
        distinct += v[i] != v[i - 1];
    if (distinct <= (size_t)max_bin) {
        for (size_t i = 1; i < n; i++)
            if (v[i] != v[i - 1])
                cuts[nb++] = cut_between(v[i - 1], v[i]);
    } else {
        for (int b = 1; b < max_bin; b++) {
            size_t idx = (size_t)((double)b * (double)n / max_bin);
            if (idx == 0 || idx >= n)
                continue;
            float c = v[idx - 1] < v[idx] ? cut_between(v[idx - 1], v[idx]) : v[idx];
            if (nb == 0 || c > cuts[nb - 1])
                cuts[nb++] = c;
        }
    }
    if (nb > 0 && cuts[nb - 1] == INFINITY)
        nb--;
    cuts[nb++] = INFINITY;
    return nb;
}

typedef struct create_job {
    const kp_matrix *X;
    kp_bins *b;
    float **scratch;   /* one sample buffer per thread */
    uint32_t **keys;   /* one radix scratch per thread */
    size_t sample;
} create_job;

static void create_feature(void *data, size_t f, int tid)
{
    create_job *j = data;
    const kp_matrix *X = j->X;
    float *v = j->scratch[tid];
    size_t n = 0;
    for (size_t s = 0; s < j->sample; s++) {
        int64_t row = j->sample == (size_t)X->rows ? (int64_t)s
                                                   : (int64_t)((double)s * X->rows / j->sample);
        float x = X->data[row * X->cols + (int64_t)f];
        if (!isnan(x))
            v[n++] = x;
    }
    sort_floats(v, j->keys[tid], n);
    j->b->count[f] = cuts_from_sorted(v, n, j->b->stride, j->b->cuts + f * (size_t)j->b->stride);
}

int kp_bins_create(const kp_matrix *X, int max_bin, int threads, kp_bins **out,
                   char *err, size_t errlen)
{
    *out = NULL;
    if (max_bin < 2 || max_bin > KP_BINS_MAX)
        return kp_errf(err, errlen, KP_ERR_ARG, "max_bin must be in 2..%d, not %d", KP_BINS_MAX,
                       max_bin);
    if (X->cols <= 0 || X->cols > INT32_MAX || X->rows < 0)
        return kp_errf(err, errlen, KP_ERR_ARG, "cannot bin a %lld x %lld matrix",
                       (long long)X->rows, (long long)X->cols);
    if (threads < 1)
        threads = 1;
    kp_bins *b = calloc(1, sizeof *b);
    create_job j = { X, b, calloc((size_t)threads, sizeof(float *)),
                     calloc((size_t)threads, sizeof(uint32_t *)),
                     X->rows > KP_BINS_SAMPLE ? KP_BINS_SAMPLE : (size_t)X->rows };
    int rc = KP_ERR_NOMEM;
    if (!b || !j.scratch || !j.keys)
        goto fail;
    b->features = (int)X->cols;
    b->stride = max_bin;
    b->count = calloc((size_t)X->cols, sizeof *b->count);
    b->cuts = malloc(sizeof *b->cuts * (size_t)X->cols * (size_t)max_bin);
    if (!b->count || !b->cuts)
        goto fail;
    for (int t = 0; t < threads; t++)
        if (!(j.scratch[t] = malloc(sizeof(float) * (j.sample ? j.sample : 1))) ||
            !(j.keys[t] = malloc(2 * sizeof(uint32_t) * (j.sample ? j.sample : 1))))
            goto fail;
    kp_parallel_for(threads, create_feature, &j, (size_t)X->cols);
    rc = 0;
    *out = b;
    b = NULL;
fail:
    for (int t = 0; j.scratch && t < threads; t++)
        free(j.scratch[t]);
    for (int t = 0; j.keys && t < threads; t++)
        free(j.keys[t]);
    free(j.scratch);
    free(j.keys);
    kp_bins_free(b);
    return rc < 0 ? kp_errf(err, errlen, rc, "out of memory binning %lld features",
                            (long long)X->cols) : 0;
}

void kp_bins_free(kp_bins *b)
{
    if (!b)
        return;
    free(b->count);
    free(b->cuts);
    free(b);
}

int kp_bins_features(const kp_bins *b) { return b->features; }

int kp_bins_cuts(const kp_bins *b, int f, const float **cuts)
{
    *cuts = b->cuts + (size_t)f * (size_t)b->stride;
    return b->count[f];
}

uint8_t kp_bins_code(const kp_bins *b, int f, float x)
{
    if (isnan(x))
        return KP_BIN_MISSING;
    const float *c = b->cuts + (size_t)f * (size_t)b->stride;
    int lo = 0, hi = b->count[f] - 1;   /* c[hi] = +inf >= x */
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (x <= c[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    return (uint8_t)lo;
}

typedef struct apply_job {
    const kp_bins *b;
    const kp_matrix *X;
    uint8_t *codes;
} apply_job;

#define APPLY_BLOCK 4096

static void apply_block(void *data, size_t blk, int tid)
{
    (void)tid;
    apply_job *j = data;
    int64_t cols = j->X->cols, end = (int64_t)(blk + 1) * APPLY_BLOCK;
    if (end > j->X->rows)
        end = j->X->rows;
    for (int64_t i = (int64_t)blk * APPLY_BLOCK; i < end; i++)
        for (int64_t f = 0; f < cols; f++)
            j->codes[i * cols + f] = kp_bins_code(j->b, (int)f, j->X->data[i * cols + f]);
}

int kp_bins_apply(const kp_bins *b, const kp_matrix *X, uint8_t *codes, int threads,
                  char *err, size_t errlen)
{
    if (X->cols != b->features)
        return kp_errf(err, errlen, KP_ERR_MISMATCH, "the bins are for %d features, not %lld",
                       b->features, (long long)X->cols);
    apply_job j = { b, X, codes };
    size_t blocks = (size_t)((X->rows + APPLY_BLOCK - 1) / APPLY_BLOCK);
    kp_parallel_for(threads < 1 ? 1 : threads, apply_block, &j, blocks);
    return 0;
}

/* pool.c - max, average and global average pooling (models/nn/kernels.h).
 *
 * Every image is one work item and every channel plane is pooled on its own,
 * so no result depends on the thread count.  Windows are clipped to the
 * image: padding never wins a max and is not counted in an average
 * (PyTorch's count_include_pad=False).  A max propagates NaN as PyTorch
 * does.  The 2x2 stride-2 unpadded max pool, the usual one, has its own
 * loops: AVX-512 where the CPU has it (16 outputs at a time, and a backward
 * pass that writes dx once instead of zeroing then scattering).  argmax may
 * be NULL for a max pool whose backward pass is not wanted (inference).
 */
#include "kernels.h"

#include <limits.h>
#include <math.h>
#include <string.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define KP_POOL_AVX512 1
#define KP_AVX512 __attribute__((target("avx512f")))
#endif
#include "../../lib/err.h"
#include "../../lib/parallel.h"

typedef struct pool_job {
    const kp_pool_shape *s;
    const float *x, *dy;
    float *y, *dx;
    const int32_t *argmax_in;
    int32_t *argmax;
} pool_job;

typedef struct gap_job {
    int c, hw;
    const float *x;
    float *y;
} gap_job;

/* ---- shapes ---- */

int kp_pool_shape_init(kp_pool_shape *s, char *err, size_t errlen)
{
    const struct { const char *name; int v; int min; } f[] = {
        { "c", s->c, 1 }, { "h_in", s->h_in, 1 },     { "w_in", s->w_in, 1 },
        { "k", s->k, 1 }, { "stride", s->stride, 1 }, { "pad", s->pad, 0 },
    };
    if (s->kind != KP_POOL_MAX && s->kind != KP_POOL_AVG)
        return kp_errf(err, errlen, KP_ERR_ARG, "pool: unknown kind %d", (int)s->kind);
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (f[i].v < f[i].min)
            return kp_errf(err, errlen, KP_ERR_ARG, "pool: %s must be %s, got %d", f[i].name,
                           f[i].min ? "positive" : "non-negative", f[i].v);
    if (s->pad > s->k / 2)
        return kp_errf(err, errlen, KP_ERR_ARG,
                       "pool: pad %d is more than half the window %d", s->pad, s->k);
    if ((long long)s->h_in + 2LL * s->pad < s->k || (long long)s->w_in + 2LL * s->pad < s->k)
        return kp_errf(err, errlen, KP_ERR_ARG,
                       "pool: the %dx%d window does not fit the %dx%d input padded by %d: "
                       "the output would be empty", s->k, s->k, s->h_in, s->w_in, s->pad);
    if ((long long)s->h_in * s->w_in > INT32_MAX)
        return kp_errf(err, errlen, KP_ERR_ARG, "pool: a %dx%d plane is too large",
                       s->h_in, s->w_in);
    s->h_out = (int)(((long long)s->h_in + 2LL * s->pad - s->k) / s->stride + 1);
    s->w_out = (int)(((long long)s->w_in + 2LL * s->pad - s->k) / s->stride + 1);
    return 0;
}

/* [*lo, *hi): output o's window clipped to [0, n). */
static void window(int o, int stride, int pad, int k, int n, int *lo, int *hi)
{
    int a = o * stride - pad, b = a + k;
    *lo = a > 0 ? a : 0;
    *hi = b < n ? b : n;
}

/* ---- forward ---- */

/* One plane, any window: max with its index, or the mean of the real pixels. */
static void pool_plane(const kp_pool_shape *s, const float *x, float *y, int32_t *am)
{
    for (int oy = 0; oy < s->h_out; oy++) {
        int y0, y1;
        window(oy, s->stride, s->pad, s->k, s->h_in, &y0, &y1);
        for (int ox = 0; ox < s->w_out; ox++) {
            int x0, x1;
            window(ox, s->stride, s->pad, s->k, s->w_in, &x0, &x1);
            size_t o = (size_t)oy * s->w_out + ox;
            int32_t best = y0 * s->w_in + x0;
            float acc = s->kind == KP_POOL_MAX ? x[best] : 0;
            for (int iy = y0; iy < y1; iy++)
                for (int ix = x0; ix < x1; ix++) {
                    int32_t idx = iy * s->w_in + ix;
                    float v = x[idx];
                    if (s->kind == KP_POOL_AVG)
                        acc += v;
                    else if (v > acc || isnan(v)) {
                        acc = v;
                        best = idx;
                    }
                }
            if (s->kind == KP_POOL_AVG)
                y[o] = acc / (float)((y1 - y0) * (x1 - x0));
            else {
                y[o] = acc;
                if (am)
                    am[o] = best;
            }
        }
    }
}

/* One plane of the 2x2, stride-2, unpadded max pool (same scan order). */
static void max2_plane(const kp_pool_shape *s, const float *x, float *y, int32_t *am)
{
    int w = s->w_in;
    for (int oy = 0; oy < s->h_out; oy++) {
        const float *r0 = x + (size_t)(2 * oy) * w, *r1 = r0 + w;
        float *yo = y + (size_t)oy * s->w_out;
        int32_t base = 2 * oy * w;
        for (int ox = 0; ox < s->w_out; ox++) {
            float cand[4] = { r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1] };
            int32_t off[4] = { 0, 1, w, w + 1 };
            float m = cand[0];
            int32_t b = 0;
            for (int t = 1; t < 4; t++)
                if (cand[t] > m || isnan(cand[t])) {
                    m = cand[t];
                    b = off[t];
                }
            yo[ox] = m;
            if (am)
                am[(size_t)oy * s->w_out + ox] = base + 2 * ox + b;
        }
    }
}

static int simd_off;        /* tests: 1 keeps the AVX-512 loops off */

/* Test hook (not in kernels.h): on = 0 disables the AVX-512 loops. */
void kp_pool_set_simd(int on)
{
    simd_off = !on;
}

/* Whether the 2x2, stride-2, unpadded max pool runs on AVX-512 here. */
static int max2_avx512(void)
{
#ifdef KP_POOL_AVX512
    return __builtin_cpu_supports("avx512f") && !simd_off;
#else
    return 0;
#endif
}

#ifdef KP_POOL_AVX512
/* (m, id) = (v, vid) in the lanes where v wins: larger, or NaN. */
KP_AVX512 static inline void max2_take(__m512 *m, __m512i *id, __m512 v, __m512i vid)
{
    __mmask16 k = _mm512_cmp_ps_mask(v, *m, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    *m = _mm512_mask_mov_ps(*m, k, v);
    *id = _mm512_mask_mov_epi32(*id, k, vid);
}

/* max2_plane, 16 outputs at a time: the even and odd columns of two input
 * rows, compared in the same order as the scalar loop. */
KP_AVX512 static void max2_plane512(const kp_pool_shape *s, const float *x, float *y,
                                    int32_t *am)
{
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4,
                                          2, 0);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    int w = s->w_in;
    for (int oy = 0; oy < s->h_out; oy++)
        for (int ox = 0; ox < s->w_out; ox += 16) {
            int n = s->w_out - ox < 16 ? s->w_out - ox : 16;
            __mmask16 mo = (__mmask16)((1u << n) - 1);
            __mmask16 lo = (__mmask16)(n >= 8 ? 0xFFFF : (1u << 2 * n) - 1);
            __mmask16 hi = (__mmask16)(n > 8 ? (1u << (2 * n - 16)) - 1 : 0);
            const float *r0 = x + (size_t)(2 * oy) * w + 2 * ox, *r1 = r0 + w;
            __m512 a0 = _mm512_maskz_loadu_ps(lo, r0), a1 = _mm512_maskz_loadu_ps(hi, r0 + 16);
            __m512 b0 = _mm512_maskz_loadu_ps(lo, r1), b1 = _mm512_maskz_loadu_ps(hi, r1 + 16);
            __m512i base = _mm512_add_epi32(_mm512_set1_epi32(2 * oy * w + 2 * ox), even);
            __m512i id = base;
            __m512 m = _mm512_permutex2var_ps(a0, even, a1);
            max2_take(&m, &id, _mm512_permutex2var_ps(a0, odd, a1),
                      _mm512_add_epi32(base, _mm512_set1_epi32(1)));
            max2_take(&m, &id, _mm512_permutex2var_ps(b0, even, b1),
                      _mm512_add_epi32(base, _mm512_set1_epi32(w)));
            max2_take(&m, &id, _mm512_permutex2var_ps(b0, odd, b1),
                      _mm512_add_epi32(base, _mm512_set1_epi32(w + 1)));
            _mm512_mask_storeu_ps(y + (size_t)oy * s->w_out + ox, mo, m);
            if (am)
                _mm512_mask_storeu_epi32(am + (size_t)oy * s->w_out + ox, mo, id);
        }
}
#endif

static void pool_forward_image(void *data, size_t i, int tid)
{
    (void)tid;
    const pool_job *j = data;
    const kp_pool_shape *s = j->s;
    size_t in = (size_t)s->h_in * s->w_in, out = (size_t)s->h_out * s->w_out;
    int fast = s->kind == KP_POOL_MAX && s->k == 2 && s->stride == 2 && s->pad == 0;
    for (int c = 0; c < s->c; c++) {
        size_t p = i * (size_t)s->c + (size_t)c;
        int32_t *am = j->argmax ? j->argmax + p * out : NULL;
#ifdef KP_POOL_AVX512
        if (fast && max2_avx512()) {
            max2_plane512(s, j->x + p * in, j->y + p * out, am);
            continue;
        }
#endif
        if (fast)
            max2_plane(s, j->x + p * in, j->y + p * out, am);
        else
            pool_plane(s, j->x + p * in, j->y + p * out, am);
    }
}

void kp_pool_forward(const kp_pool_shape *s, int n, const float *x, float *y,
                     int32_t *argmax, int threads)
{
    pool_job j = { .s = s, .x = x, .y = y, .argmax = argmax };
    kp_parallel_for(threads, pool_forward_image, &j, n > 0 ? (size_t)n : 0);
}

/* ---- backward ---- */

/* dx of one average-pooled plane: each dy shared evenly by its real pixels. */
static void avg_back_plane(const kp_pool_shape *s, const float *dy, float *dx)
{
    for (int oy = 0; oy < s->h_out; oy++) {
        int y0, y1;
        window(oy, s->stride, s->pad, s->k, s->h_in, &y0, &y1);
        for (int ox = 0; ox < s->w_out; ox++) {
            int x0, x1;
            window(ox, s->stride, s->pad, s->k, s->w_in, &x0, &x1);
            float g = dy[(size_t)oy * s->w_out + ox] / (float)((y1 - y0) * (x1 - x0));
            for (int iy = y0; iy < y1; iy++)
                for (int ix = x0; ix < x1; ix++)
                    dx[(size_t)iy * s->w_in + ix] += g;
        }
    }
}

#ifdef KP_POOL_AVX512
/* dx of one plane of the 2x2, stride-2, unpadded max pool, written once:
 * each output's dy at its argmax, zeros elsewhere (the windows do not overlap). */
KP_AVX512 static void max2_back_plane512(const kp_pool_shape *s, const float *dy,
                                         const int32_t *am, float *dx)
{
    const __m512i lo_idx = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1,
                                            16, 0);
    const __m512i hi_idx = _mm512_add_epi32(lo_idx, _mm512_set1_epi32(8));
    const __m512i two = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4,
                                         2, 0);
    int w = s->w_in;
    for (int oy = 0; oy < s->h_out; oy++) {
        float *d0 = dx + (size_t)(2 * oy) * w, *d1 = d0 + w;
        for (int ox = 0; ox < s->w_out; ox += 16) {
            int n = s->w_out - ox < 16 ? s->w_out - ox : 16;
            __mmask16 mo = (__mmask16)((1u << n) - 1);
            __mmask16 lo = (__mmask16)(n >= 8 ? 0xFFFF : (1u << 2 * n) - 1);
            __mmask16 hi = (__mmask16)(n > 8 ? (1u << (2 * n - 16)) - 1 : 0);
            size_t o = (size_t)oy * s->w_out + (size_t)ox;
            __m512 g = _mm512_maskz_loadu_ps(mo, dy + o);
            __m512i a = _mm512_sub_epi32(_mm512_maskz_loadu_epi32(mo, am + o),
                                         _mm512_add_epi32(_mm512_set1_epi32(2 * oy * w + 2 * ox),
                                                          two));
            __m512 z = _mm512_setzero_ps();
            __m512 e0 = _mm512_mask_mov_ps(z, _mm512_cmpeq_epi32_mask(a, _mm512_set1_epi32(0)), g);
            __m512 o0 = _mm512_mask_mov_ps(z, _mm512_cmpeq_epi32_mask(a, _mm512_set1_epi32(1)), g);
            __m512 e1 = _mm512_mask_mov_ps(z, _mm512_cmpeq_epi32_mask(a, _mm512_set1_epi32(w)), g);
            __m512 o1 =
                _mm512_mask_mov_ps(z, _mm512_cmpeq_epi32_mask(a, _mm512_set1_epi32(w + 1)), g);
            _mm512_mask_storeu_ps(d0 + 2 * ox, lo, _mm512_permutex2var_ps(e0, lo_idx, o0));
            _mm512_mask_storeu_ps(d0 + 2 * ox + 16, hi, _mm512_permutex2var_ps(e0, hi_idx, o0));
            _mm512_mask_storeu_ps(d1 + 2 * ox, lo, _mm512_permutex2var_ps(e1, lo_idx, o1));
            _mm512_mask_storeu_ps(d1 + 2 * ox + 16, hi, _mm512_permutex2var_ps(e1, hi_idx, o1));
        }
        if (w % 2)      /* floor mode: the last column feeds no window */
            d0[w - 1] = d1[w - 1] = 0;
    }
    size_t done = (size_t)(2 * s->h_out) * w, in = (size_t)s->h_in * w;
    memset(dx + done, 0, (in - done) * sizeof *dx);
}
#endif

/* dx of one plane: zeros, then each dy added where it came from. */
static void pool_back_plane(const kp_pool_shape *s, const float *dy, const int32_t *am,
                            float *dx)
{
    size_t in = (size_t)s->h_in * s->w_in, out = (size_t)s->h_out * s->w_out;
#ifdef KP_POOL_AVX512
    if (s->kind == KP_POOL_MAX && s->k == 2 && s->stride == 2 && s->pad == 0 && max2_avx512()) {
        max2_back_plane512(s, dy, am, dx);
        return;
    }
#endif
    memset(dx, 0, in * sizeof *dx);
    if (s->kind == KP_POOL_AVG) {
        avg_back_plane(s, dy, dx);
        return;
    }
    for (size_t o = 0; o < out; o++)
        dx[am[o]] += dy[o];
}

static void pool_backward_image(void *data, size_t i, int tid)
{
    (void)tid;
    const pool_job *j = data;
    const kp_pool_shape *s = j->s;
    size_t in = (size_t)s->h_in * s->w_in, out = (size_t)s->h_out * s->w_out;
    for (int c = 0; c < s->c; c++) {
        size_t p = i * (size_t)s->c + (size_t)c;
        pool_back_plane(s, j->dy + p * out, j->argmax_in ? j->argmax_in + p * out : NULL,
                        j->dx + p * in);
    }
}

void kp_pool_backward(const kp_pool_shape *s, int n, const float *dy,
                      const int32_t *argmax, float *dx, int threads)
{
    pool_job j = { .s = s, .dy = dy, .dx = dx, .argmax_in = argmax };
    kp_parallel_for(threads, pool_backward_image, &j, n > 0 ? (size_t)n : 0);
}

/* ---- global average pooling ---- */

/* The sum of n floats in 16 interleaved lanes, combined pairwise: a fixed
 * order, in vector registers of any width (a GCC/Clang vector type). */
static float lane_sum(const float *p, size_t n)
{
    typedef float v16 __attribute__((vector_size(64)));
    v16 acc = { 0 }, v;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        memcpy(&v, p + i, sizeof v);
        acc += v;
    }
    float a[16];
    memcpy(a, &acc, sizeof a);
    for (int l = 0; i < n; i++, l++)
        a[l] += p[i];
    for (int w = 8; w > 0; w /= 2)
        for (int l = 0; l < w; l++)
            a[l] += a[l + w];
    return a[0];
}

static void gap_forward_image(void *data, size_t i, int tid)
{
    (void)tid;
    const gap_job *j = data;
    for (int c = 0; c < j->c; c++) {
        size_t p = i * (size_t)j->c + (size_t)c;
        j->y[p] = lane_sum(j->x + p * (size_t)j->hw, (size_t)j->hw) / (float)j->hw;
    }
}

void kp_gap_forward(int n, int c, int hw, const float *x, float *y, int threads)
{
    gap_job j = { c, hw, x, y };
    kp_parallel_for(threads, gap_forward_image, &j, n > 0 ? (size_t)n : 0);
}

static void gap_backward_image(void *data, size_t i, int tid)
{
    (void)tid;
    const gap_job *j = data;    /* x: dy [n, c]; y: dx [n, c, hw] */
    for (int c = 0; c < j->c; c++) {
        size_t p = i * (size_t)j->c + (size_t)c;
        float g = j->x[p] / (float)j->hw, *d = j->y + p * (size_t)j->hw;
        for (int t = 0; t < j->hw; t++)
            d[t] = g;
    }
}

void kp_gap_backward(int n, int c, int hw, const float *dy, float *dx, int threads)
{
    gap_job j = { c, hw, dy, dx };
    kp_parallel_for(threads, gap_backward_image, &j, n > 0 ? (size_t)n : 0);
}

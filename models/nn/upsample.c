/* upsample.c - transposed convolution and bilinear upsampling (models/nn/kernels.h).
 *
 * Transposed convolution (PyTorch's ConvTranspose2d, padding 0, W[c_in,
 * c_out, k, k]) is the adjoint of a conv, so it runs on the conv's im2col
 * geometry read backwards.  Forward, per image: one sgemm col = W^T x_i
 * (c_out k k rows of h_in w_in positions), then col goes to y: when k equals
 * the stride (the UNet case) the taps of one input pixel cover disjoint
 * output pixels and each is written once, bias added on the way; otherwise
 * y starts at the bias and every tap is added in (col2im).  Backward: the
 * gather dcol = im2col(dy) (every tap is inside dy: there is no padding),
 * then dx_i = W dcol and dW += x_i dcol^T, two sgemms per image.
 *
 * As in conv.c, backward cuts the batch into fixed chunks of images (their
 * number depends on n only); each chunk sums dW and db into its own partial
 * in the workspace and the partials are added in chunk order, so the bits
 * do not depend on the thread count.  Workspace, in floats: one column block
 * per thread, then one partial per chunk, each rounded up to 64 bytes.
 *
 * Bilinear upsampling by an integer factor (align_corners=False) computes
 * PyTorch's source coordinates and weights in float, in its order of
 * operations; each image is one work item and the backward pass scatters
 * each output's gradient onto its four source pixels, plane by plane.
 *
 * On CPUs with AVX-512 the k = stride = 2 scatter and gather interleave and
 * de-interleave 16 pixels at a time, and upsampling by 2 runs separably, a
 * row at a time: each input row is interpolated along x once (and kept while
 * output rows use it), then each output row mixes two of those; backward is
 * the adjoint, row gradients gathered first and sent back along x once a
 * row is done.  Forward passes and the transposed conv's backward give the
 * same bits on both paths (the same operations in the same order);
 * upsampling's backward adds in another order.  The test hook
 * kp_upsample_set_simd(0) keeps the generic loops.
 */
#include "kernels.h"

#include <cblas.h>
#include <limits.h>
#include <string.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define KP_UP_AVX512 1
#define KP_AVX512 __attribute__((target("avx512f")))
#endif
#include "../../lib/err.h"
#include "../../lib/parallel.h"

enum {
    UP_MAX_CHUNKS = 16,     /* partial dW buffers of a backward pass, at most */
    WS_ALIGN = 16,          /* floats: each workspace region starts on 64 bytes */
    TAB = 256,              /* bilinear: output columns whose weights are tabled at once */
    ROW2_MAX = 2048         /* bilinear x2 on AVX-512: widest input row (stack rows) */
};

/* Where the workspace regions lie, in floats. */
typedef struct up_layout {
    size_t col;             /* per-thread column block, rounded */
    size_t part;            /* one chunk's partial dW then db, rounded */
    size_t total;
} up_layout;

/* Everything the work items of one transposed-conv pass read. */
typedef struct upconv_job {
    const kp_upconv_shape *s;
    int n, chunk;           /* batch size, images per backward chunk */
    const float *x, *W, *b, *dy;
    float *y, *dx, *dW, *ws, *parts;
    int want_db;
    up_layout lay;
} upconv_job;

static size_t round_up(size_t v)
{
    return (v + WS_ALIGN - 1) / WS_ALIGN * WS_ALIGN;
}

/* ---- AVX-512 building blocks: rows interleaved by two and back ---- */

static int simd_off;        /* tests: 1 keeps the AVX-512 loops off */

/* Test hook (not in kernels.h): on = 0 disables the AVX-512 loops. */
void kp_upsample_set_simd(int on)
{
    simd_off = !on;
}

/* Whether the AVX-512 loops run here. */
static int simd(void)
{
#ifdef KP_UP_AVX512
    return __builtin_cpu_supports("avx512f") && !simd_off;
#else
    return 0;
#endif
}

#ifdef KP_UP_AVX512
/* The lanes [0, n) of a 16-lane vector (n <= 16). */
static inline __mmask16 lanes(int n)
{
    return (__mmask16)((1u << n) - 1);
}

/* out[2 l] = a[l], out[2 l + 1] = b[l] for l < n. */
KP_AVX512 static inline void store2(float *out, __m512 a, __m512 b, int n)
{
    const __m512i lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i hi = _mm512_add_epi32(lo, _mm512_set1_epi32(8));
    _mm512_mask_storeu_ps(out, lanes(n >= 8 ? 16 : 2 * n), _mm512_permutex2var_ps(a, lo, b));
    if (n > 8)
        _mm512_mask_storeu_ps(out + 16, lanes(2 * n - 16), _mm512_permutex2var_ps(a, hi, b));
}

/* *even = in[2 l], *odd = in[2 l + 1] for l < n (0 past n). */
KP_AVX512 static inline void load2(const float *in, int n, __m512 *even, __m512 *odd)
{
    const __m512i ev = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4,
                                        2, 0);
    const __m512i od = _mm512_add_epi32(ev, _mm512_set1_epi32(1));
    __m512 a = _mm512_maskz_loadu_ps(lanes(n >= 8 ? 16 : 2 * n), in);
    __m512 b = n > 8 ? _mm512_maskz_loadu_ps(lanes(2 * n - 16), in + 16) : _mm512_setzero_ps();
    *even = _mm512_permutex2var_ps(a, ev, b);
    *odd = _mm512_permutex2var_ps(a, od, b);
}

/* out[2 ix + kx] = r0[ix] + bo (kx 0) or r1[ix] + bo (kx 1), ix < w. */
KP_AVX512 static void scatter2_row(const float *r0, const float *r1, float bo, int w, float *out)
{
    __m512 b = _mm512_set1_ps(bo);
    for (int ix = 0; ix < w; ix += 16) {
        int n = w - ix < 16 ? w - ix : 16;
        __m512 a0 = _mm512_add_ps(_mm512_maskz_loadu_ps(lanes(n), r0 + ix), b);
        __m512 a1 = _mm512_add_ps(_mm512_maskz_loadu_ps(lanes(n), r1 + ix), b);
        store2(out + 2 * ix, a0, a1, n);
    }
}

/* a[l] += p[i + l] over the whole 16-float blocks of p; returns floats done. */
KP_AVX512 static size_t lane_sum512(const float *p, size_t n, float *a)
{
    __m512 acc = _mm512_loadu_ps(a);
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        acc = _mm512_add_ps(acc, _mm512_loadu_ps(p + i));
    _mm512_storeu_ps(a, acc);
    return i;
}

/* y[t] += x[t] over the whole 16-float blocks of n; returns floats done. */
KP_AVX512 static size_t add512(float *y, const float *x, size_t n)
{
    size_t t = 0;
    for (; t + 16 <= n; t += 16)
        _mm512_storeu_ps(y + t, _mm512_add_ps(_mm512_loadu_ps(y + t), _mm512_loadu_ps(x + t)));
    return t;
}

/* r0[ix] = in[2 ix], r1[ix] = in[2 ix + 1], ix < w. */
KP_AVX512 static void gather2_row(const float *in, int w, float *r0, float *r1)
{
    for (int ix = 0; ix < w; ix += 16) {
        int n = w - ix < 16 ? w - ix : 16;
        __m512 e, o;
        load2(in + 2 * ix, n, &e, &o);
        _mm512_mask_storeu_ps(r0 + ix, lanes(n), e);
        _mm512_mask_storeu_ps(r1 + ix, lanes(n), o);
    }
}
#endif

/* ---- transposed convolution: shapes and workspace ---- */

int kp_upconv_shape_init(kp_upconv_shape *s, char *err, size_t errlen)
{
    const struct { const char *name; int v; } f[] = {
        { "c_in", s->c_in }, { "h_in", s->h_in }, { "w_in", s->w_in },
        { "c_out", s->c_out }, { "k", s->k }, { "stride", s->stride },
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (f[i].v < 1)
            return kp_errf(err, errlen, KP_ERR_ARG, "upconv: %s must be positive, got %d",
                           f[i].name, f[i].v);
    long long ho = ((long long)s->h_in - 1) * s->stride + s->k;
    long long wo = ((long long)s->w_in - 1) * s->stride + s->k;
    double taps = (double)s->c_out * s->k * s->k;       /* doubles: no overflow */
    if ((double)ho * wo > INT_MAX || taps * s->c_in > INT_MAX ||
        taps * s->h_in * s->w_in > INT_MAX)
        return kp_errf(err, errlen, KP_ERR_ARG, "upconv: %d x %d channels of %dx%d kernels "
                       "from a %dx%d input to %lldx%lld are too large",
                       s->c_in, s->c_out, s->k, s->k, s->h_in, s->w_in, ho, wo);
    s->h_out = (int)ho;
    s->w_out = (int)wo;
    return 0;
}

/* The number of chunks a batch of n is cut into (never more for a larger n). */
static size_t chunk_count(int n)
{
    return n < 1 ? 0 : n < UP_MAX_CHUNKS ? (size_t)n : UP_MAX_CHUNKS;
}

static up_layout layout(const kp_upconv_shape *s, int n, int threads)
{
    size_t taps = (size_t)s->c_out * s->k * s->k;
    up_layout l;
    l.col = round_up(taps * s->h_in * s->w_in);
    l.part = round_up((size_t)s->c_in * taps + s->c_out);
    l.total = (size_t)(threads > 1 ? threads : 1) * l.col + chunk_count(n) * l.part;
    return l;
}

size_t kp_upconv_workspace(const kp_upconv_shape *s, int n, int threads)
{
    return layout(s, n, threads).total;
}

/* ---- transposed convolution: taps to pixels and back ---- */

/* k == stride: y[o][iy s + ky][ix s + kx] = col[(o k + ky) k + kx][iy w + ix] + b[o];
 * every output pixel is written exactly once. */
static void scatter_disjoint(const kp_upconv_shape *s, const float *col, const float *b,
                             float *y)
{
    int k = s->k, w = s->w_in, wo = s->w_out;
    size_t hw = (size_t)s->h_in * w;
    for (int o = 0; o < s->c_out; o++) {
        float bo = b ? b[o] : 0.0f;
        float *plane = y + (size_t)o * s->h_out * wo;
        for (int ky = 0; ky < k; ky++)
            for (int iy = 0; iy < s->h_in; iy++) {
                float *out = plane + (size_t)(iy * k + ky) * wo;
                const float *r = col + ((size_t)(o * k + ky) * k) * hw + (size_t)iy * w;
#ifdef KP_UP_AVX512
                if (k == 2 && simd()) {
                    scatter2_row(r, r + hw, bo, w, out);
                    continue;
                }
#endif
                if (k == 2)
                    for (int ix = 0; ix < w; ix++) {
                        out[2 * ix] = r[ix] + bo;
                        out[2 * ix + 1] = r[hw + (size_t)ix] + bo;
                    }
                else
                    for (int kx = 0; kx < k; kx++)
                        for (int ix = 0; ix < w; ix++)
                            out[ix * k + kx] = r[(size_t)kx * hw + (size_t)ix] + bo;
            }
    }
}

/* Any k and stride: y = b (or 0), then every tap added to its pixel (col2im). */
static void scatter_add(const kp_upconv_shape *s, const float *col, const float *b, float *y)
{
    int k = s->k, st = s->stride, w = s->w_in, wo = s->w_out;
    size_t hw = (size_t)s->h_in * w, plane = (size_t)s->h_out * wo;
    for (int o = 0; o < s->c_out; o++) {
        float bo = b ? b[o] : 0.0f, *yo = y + (size_t)o * plane;
        for (size_t p = 0; p < plane; p++)
            yo[p] = bo;
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++) {
                const float *r = col + ((size_t)(o * k + ky) * k + kx) * hw;
                for (int iy = 0; iy < s->h_in; iy++) {
                    float *out = yo + (size_t)(iy * st + ky) * wo + kx;
                    const float *ri = r + (size_t)iy * w;
                    for (int ix = 0; ix < w; ix++)
                        out[ix * st] += ri[ix];
                }
            }
    }
}

/* dcol[(o k + ky) k + kx][iy w + ix] = dy[o][iy s + ky][ix s + kx]: the adjoint
 * of both scatters (an im2col of dy without padding). */
static void gather(const kp_upconv_shape *s, const float *dy, float *dcol)
{
    int k = s->k, st = s->stride, w = s->w_in, wo = s->w_out;
    size_t hw = (size_t)s->h_in * w;
    for (int o = 0; o < s->c_out; o++) {
        const float *plane = dy + (size_t)o * s->h_out * wo;
        for (int ky = 0; ky < k; ky++)
            for (int iy = 0; iy < s->h_in; iy++) {
                const float *in = plane + (size_t)(iy * st + ky) * wo;
                float *r = dcol + ((size_t)(o * k + ky) * k) * hw + (size_t)iy * w;
#ifdef KP_UP_AVX512
                if (k == 2 && st == 2 && simd()) {
                    gather2_row(in, w, r, r + hw);
                    continue;
                }
#endif
                if (k == 2 && st == 2)
                    for (int ix = 0; ix < w; ix++) {
                        r[ix] = in[2 * ix];
                        r[hw + (size_t)ix] = in[2 * ix + 1];
                    }
                else
                    for (int kx = 0; kx < k; kx++)
                        for (int ix = 0; ix < w; ix++)
                            r[(size_t)kx * hw + (size_t)ix] = in[ix * st + kx];
            }
    }
}

/* ---- transposed convolution: forward ---- */

static void forward_image(void *data, size_t i, int tid)
{
    const upconv_job *j = data;
    const kp_upconv_shape *s = j->s;
    int taps = s->c_out * s->k * s->k, hw = s->h_in * s->w_in;
    const float *xi = j->x + i * (size_t)s->c_in * hw;
    float *yi = j->y + i * (size_t)s->c_out * s->h_out * s->w_out;
    float *col = j->ws + (size_t)tid * j->lay.col;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, taps, hw, s->c_in, 1.0f, j->W, taps,
                xi, hw, 0.0f, col, hw);
    if (s->k == s->stride)
        scatter_disjoint(s, col, j->b, yi);
    else
        scatter_add(s, col, j->b, yi);
}

void kp_upconv_forward(const kp_upconv_shape *s, int n, const float *x, const float *W,
                       const float *b, float *y, float *ws, int threads)
{
    upconv_job j = { .s = s, .n = n, .x = x, .W = W, .b = b, .y = y, .ws = ws,
                     .lay = layout(s, n, threads) };
    if (n <= 0)
        return;
    kp_parallel_for(threads, forward_image, &j, (size_t)n);
}

/* ---- transposed convolution: backward ---- */

/* The sum of n floats in 16 interleaved lanes, combined pairwise: a fixed
 * order, the same bits with or without AVX-512 (and as conv.c sums db). */
static float lane_sum(const float *p, size_t n)
{
    float a[16] = { 0 };
    size_t i = 0;
#ifdef KP_UP_AVX512
    if (simd())
        i = lane_sum512(p, n, a);
#endif
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++)
            a[l] += p[i + (size_t)l];
    for (int l = 0; i < n; i++, l++)
        a[l] += p[i];
    for (int w = 8; w > 0; w /= 2)
        for (int l = 0; l < w; l++)
            a[l] += a[l + w];
    return a[0];
}

/* Image i's share of a backward pass: the chunk's partial dW (first:
 * overwrite) and db from dcol and dy_i, and dx_i. */
static void backward_image(const upconv_job *j, size_t i, float *dcol, float *part, int first)
{
    const kp_upconv_shape *s = j->s;
    int taps = s->c_out * s->k * s->k, hw = s->h_in * s->w_in, hwo = s->h_out * s->w_out;
    const float *dyi = j->dy + i * (size_t)s->c_out * hwo;
    if (j->dW || j->dx)
        gather(s, dyi, dcol);
    if (j->dW)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s->c_in, taps, hw, 1.0f,
                    j->x + i * (size_t)s->c_in * hw, hw, dcol, hw, first ? 0.0f : 1.0f, part,
                    taps);
    if (j->want_db) {
        float *pdb = part + (size_t)s->c_in * taps;
        for (int o = 0; o < s->c_out; o++) {
            float v = lane_sum(dyi + (size_t)o * hwo, (size_t)hwo);
            pdb[o] = first ? v : pdb[o] + v;
        }
    }
    if (j->dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->c_in, hw, taps, 1.0f, j->W,
                    taps, dcol, hw, 0.0f, j->dx + i * (size_t)s->c_in * hw, hw);
}

static void backward_chunk(void *data, size_t ci, int tid)
{
    const upconv_job *j = data;
    size_t i0 = ci * (size_t)j->chunk, i1 = i0 + (size_t)j->chunk;
    if (i1 > (size_t)j->n)
        i1 = (size_t)j->n;
    float *dcol = j->ws + (size_t)tid * j->lay.col;
    float *part = j->parts + ci * j->lay.part;
    for (size_t i = i0; i < i1; i++)
        backward_image(j, i, dcol, part, i == i0);
}

/* y[t] += x[t], t < n. */
static void add_to(float *y, const float *x, size_t n)
{
    size_t t = 0;
#ifdef KP_UP_AVX512
    if (simd())
        t = add512(y, x, n);
#endif
    for (; t < n; t++)
        y[t] += x[t];
}

/* dW += the chunks' partials, then db +=, in chunk order. */
static void reduce_partials(const upconv_job *j, size_t chunks, float *db)
{
    const kp_upconv_shape *s = j->s;
    size_t nw = (size_t)s->c_in * s->c_out * s->k * s->k;
    for (size_t c = 0; c < chunks; c++) {
        const float *p = j->parts + c * j->lay.part;
        if (j->dW)
            add_to(j->dW, p, nw);
        for (int o = 0; db && o < s->c_out; o++)
            db[o] += p[nw + (size_t)o];
    }
}

void kp_upconv_backward(const kp_upconv_shape *s, int n, const float *x, const float *W,
                        const float *dy, float *dx, float *dW, float *db, float *ws,
                        int threads)
{
    if (n <= 0)
        return;
    size_t chunks = chunk_count(n);
    upconv_job j = { .s = s, .n = n, .chunk = (int)(((size_t)n + chunks - 1) / chunks),
                     .x = x, .W = W, .dy = dy, .dx = dx, .dW = dW, .ws = ws,
                     .want_db = db != NULL, .lay = layout(s, n, threads) };
    j.parts = ws + (size_t)(threads > 1 ? threads : 1) * j.lay.col;
    chunks = ((size_t)n + (size_t)j.chunk - 1) / (size_t)j.chunk;
    kp_parallel_for(threads, backward_chunk, &j, chunks);
    reduce_partials(&j, chunks, db);
}

/* ---- bilinear upsampling ---- */

/* One output coordinate's two source pixels and their weights. */
typedef struct lerp {
    int i0, i1;
    float l0, l1;
} lerp;

/* The helpers below are inlined into the AVX-512 loops that use them: a
 * call from those to SSE code would run with the registers' upper halves
 * dirty, several times slower. */
#define INLINE static inline __attribute__((always_inline))

/* PyTorch's align_corners=False source of output o along an axis of n
 * input pixels scaled by f: (o + 0.5) / f - 0.5, clamped at 0, in float. */
INLINE lerp lerp_at(int o, int f, int n)
{
    float scale = (float)(1.0 / f);
    float src = scale * ((float)o + 0.5f) - 0.5f;
    if (src < 0)
        src = 0;
    lerp l;
    l.i0 = (int)src;
    l.i1 = l.i0 + (l.i0 < n - 1 ? 1 : 0);
    l.l1 = src - (float)l.i0;
    l.l1 = l.l1 < 0 ? 0 : l.l1 > 1 ? 1 : l.l1;
    l.l0 = 1.0f - l.l1;
    return l;
}

/* The geometry of one bilinear pass. */
typedef struct bilinear_job {
    int c, h, w, f;
    const float *x, *dy;
    float *y, *dx;
} bilinear_job;

/* x[i0] l0 + x[i1] l1: one output of a row interpolated along its length. */
INLINE float lerp_row(const float *x, lerp l)
{
    return x[l.i0] * l.l0 + x[l.i1] * l.l1;
}

/* The adjoint of lerp_row for input pixel i: the gradient g of the wo = w f
 * outputs of a row, summed back onto pixel i. */
INLINE float lerp_row_back(const float *g, int f, int w, int i)
{
    int lo = (i - 1) * f > 0 ? (i - 1) * f : 0, hi = (i + 2) * f < w * f ? (i + 2) * f : w * f;
    float s = 0;
    for (int ox = lo; ox < hi; ox++) {
        lerp l = lerp_at(ox, f, w);
        if (l.i0 == i)
            s += l.l0 * g[ox];
        if (l.i1 == i)
            s += l.l1 * g[ox];
    }
    return s;
}

#ifdef KP_UP_AVX512
/* Whether a pass runs the AVX-512 loops for a factor of 2 (separable, one
 * row at a time: x's rows interpolated along x once, then pairs of them
 * mixed per output row; the same bits as the generic loops). */
static int up2_simd(int f, int w)
{
    return f == 2 && w <= ROW2_MAX && simd();
}

/* h[0, 2w) = row x interpolated by 2: h[2i] = x[i-1] l0 + x[i] l1 and
 * h[2i+1] = x[i] l0' + x[i+1] l1' with lerp_at's weights (1/4, 3/4), the
 * two end pixels (a neighbour clamped) by lerp_row itself. */
KP_AVX512 static void hlerp2(const float *x, int w, float *h)
{
    const __m512 q = _mm512_set1_ps(0.25f), t = _mm512_set1_ps(0.75f);
    __m512 prev = _mm512_setzero_ps();
    for (int i = 0; i < w; i += 16) {
        int n = w - i < 16 ? w - i : 16;
        __m512 b = _mm512_maskz_loadu_ps(lanes(n), x + i);
        __m512 a = _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(b),
                                                           _mm512_castps_si512(prev), 15));
        __m512 c = _mm512_maskz_loadu_ps(lanes(i + n == w ? n - 1 : n), x + i + 1);
        __m512 tb = _mm512_mul_ps(b, t);
        store2(h + 2 * i, _mm512_add_ps(_mm512_mul_ps(a, q), tb),
               _mm512_add_ps(tb, _mm512_mul_ps(c, q)), n);
        prev = b;
    }
    h[0] = lerp_row(x, lerp_at(0, 2, w));
    h[2 * w - 1] = lerp_row(x, lerp_at(2 * w - 1, 2, w));
}

/* dx[0, w) = the adjoint of hlerp2 applied to the row gradient g[0, 2w). */
KP_AVX512 static void hlerp2_back(const float *g, int w, float *dx)
{
    const __m512 q = _mm512_set1_ps(0.25f), t = _mm512_set1_ps(0.75f);
    __m512 prev = _mm512_setzero_ps();
    for (int i = 0; i < w; i += 16) {
        int n = w - i < 16 ? w - i : 16;
        __m512 e, o, en, on;
        load2(g + 2 * i, n, &e, &o);                              /* g[2i], g[2i + 1] */
        load2(g + 2 * i + 2, i + n == w ? n - 1 : n, &en, &on);   /* g[2i + 2] */
        __m512 op = _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(o),
                                                            _mm512_castps_si512(prev), 15));
        __m512 d = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(e, t), _mm512_mul_ps(o, t)),
                                 _mm512_add_ps(_mm512_mul_ps(en, q), _mm512_mul_ps(op, q)));
        _mm512_mask_storeu_ps(dx + i, lanes(n), d);
        prev = o;
    }
    dx[0] = lerp_row_back(g, 2, w, 0);
    dx[w - 1] = lerp_row_back(g, 2, w, w - 1);
}

/* out[t] = h0[t] l0 + h1[t] l1, t < n. */
KP_AVX512 static void vlerp(const float *h0, const float *h1, float l0, float l1, int n,
                            float *out)
{
    __m512 a = _mm512_set1_ps(l0), b = _mm512_set1_ps(l1);
    for (int t = 0; t < n; t += 16) {
        __mmask16 m = lanes(n - t < 16 ? n - t : 16);
        __m512 v = _mm512_add_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, h0 + t), a),
                                 _mm512_mul_ps(_mm512_maskz_loadu_ps(m, h1 + t), b));
        _mm512_mask_storeu_ps(out + t, m, v);
    }
}

/* r[t] += l g[t], t < n. */
KP_AVX512 static void axpy(float *r, float l, const float *g, int n)
{
    __m512 a = _mm512_set1_ps(l);
    for (int t = 0; t < n; t += 16) {
        __mmask16 m = lanes(n - t < 16 ? n - t : 16);
        __m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, r + t),
                                 _mm512_mul_ps(a, _mm512_maskz_loadu_ps(m, g + t)));
        _mm512_mask_storeu_ps(r + t, m, v);
    }
}

/* One plane of h x w upsampled by 2, keeping the two interpolated input
 * rows the current output row mixes. */
KP_AVX512 static void up2_plane(int h, int w, const float *x, float *y)
{
    float rows[2][2 * ROW2_MAX];
    int have[2] = { -1, -1 };
    for (int oy = 0; oy < 2 * h; oy++) {
        lerp ly = lerp_at(oy, 2, h);
        const float *r[2];
        for (int k = 0; k < 2; k++) {
            int want = k ? ly.i1 : ly.i0, slot = have[0] == want ? 0 : have[1] == want ? 1 : -1;
            if (slot < 0) {
                slot = have[0] == ly.i0 || have[0] == ly.i1;   /* evict the stale row */
                hlerp2(x + (size_t)want * w, w, rows[slot]);
                have[slot] = want;
            }
            r[k] = rows[slot];
        }
        vlerp(r[0], r[1], ly.l0, ly.l1, 2 * w, y + (size_t)oy * 2 * w);
    }
}

/* The adjoint of up2_plane: output rows summed into the gradients of the
 * two interpolated rows they mix; a row is done (and goes back along x
 * into dx) once the output rows have moved past it. */
KP_AVX512 static void up2_plane_back(int h, int w, const float *dy, float *dx)
{
    float rows[2][2 * ROW2_MAX];
    size_t wo = 2 * (size_t)w;
    int cur = 0;
    memset(rows, 0, sizeof rows);
    for (int oy = 0; oy < 2 * h; oy++) {
        lerp ly = lerp_at(oy, 2, h);
        for (; cur < ly.i0; cur++) {
            hlerp2_back(rows[cur % 2], w, dx + (size_t)cur * w);
            memset(rows[cur % 2], 0, wo * sizeof(float));
        }
        axpy(rows[ly.i0 % 2], ly.l0, dy + (size_t)oy * wo, (int)wo);
        axpy(rows[ly.i1 % 2], ly.l1, dy + (size_t)oy * wo, (int)wo);
    }
    for (; cur < h; cur++)
        hlerp2_back(rows[cur % 2], w, dx + (size_t)cur * w);
}
#endif

/* Fills tab[0, n) with the column weights of outputs ox0 .. ox0 + n. */
static void lerp_table(const bilinear_job *j, int ox0, int n, lerp *tab)
{
    for (int t = 0; t < n; t++)
        tab[t] = lerp_at(ox0 + t, j->f, j->w);
}

/* Output columns [ox0, ox0 + nx) of every row of one plane. */
static void bilinear_plane_cols(const bilinear_job *j, const float *x, float *y, int ox0,
                                int nx, const lerp *tab)
{
    int wo = j->w * j->f;
    for (int oy = 0; oy < j->h * j->f; oy++) {
        lerp ly = lerp_at(oy, j->f, j->h);
        const float *r0 = x + (size_t)ly.i0 * j->w, *r1 = x + (size_t)ly.i1 * j->w;
        float *out = y + (size_t)oy * wo + ox0;
        for (int t = 0; t < nx; t++) {
            const lerp *lx = &tab[t];
            out[t] = lerp_row(r0, *lx) * ly.l0 + lerp_row(r1, *lx) * ly.l1;
        }
    }
}

static void bilinear_forward_image(void *data, size_t i, int tid)
{
    (void)tid;
    const bilinear_job *j = data;
    size_t in = (size_t)j->h * j->w, out = in * (size_t)j->f * j->f;
    lerp tab[TAB];
#ifdef KP_UP_AVX512
    if (up2_simd(j->f, j->w)) {
        for (size_t p = i * (size_t)j->c; p < (i + 1) * (size_t)j->c; p++)
            up2_plane(j->h, j->w, j->x + p * in, j->y + p * out);
        return;
    }
#endif
    for (int ox0 = 0; ox0 < j->w * j->f; ox0 += TAB) {
        int nx = j->w * j->f - ox0 < TAB ? j->w * j->f - ox0 : TAB;
        lerp_table(j, ox0, nx, tab);
        for (int c = 0; c < j->c; c++) {
            size_t p = i * (size_t)j->c + (size_t)c;
            bilinear_plane_cols(j, j->x + p * in, j->y + p * out, ox0, nx, tab);
        }
    }
}

void kp_upsample_forward(int n, int c, int h, int w, int f, const float *x, float *y,
                         int threads)
{
    bilinear_job j = { .c = c, .h = h, .w = w, .f = f, .x = x, .y = y };
    if (n > 0)
        kp_parallel_for(threads, bilinear_forward_image, &j, (size_t)n);
}

/* Adds the gradient of output columns [ox0, ox0 + nx) of one plane to dx. */
static void bilinear_plane_cols_back(const bilinear_job *j, const float *dy, float *dx,
                                     int ox0, int nx, const lerp *tab)
{
    int wo = j->w * j->f;
    for (int oy = 0; oy < j->h * j->f; oy++) {
        lerp ly = lerp_at(oy, j->f, j->h);
        float *r0 = dx + (size_t)ly.i0 * j->w, *r1 = dx + (size_t)ly.i1 * j->w;
        const float *g = dy + (size_t)oy * wo + ox0;
        for (int t = 0; t < nx; t++) {
            const lerp *lx = &tab[t];
            r0[lx->i0] += ly.l0 * lx->l0 * g[t];
            r0[lx->i1] += ly.l0 * lx->l1 * g[t];
            r1[lx->i0] += ly.l1 * lx->l0 * g[t];
            r1[lx->i1] += ly.l1 * lx->l1 * g[t];
        }
    }
}

static void bilinear_backward_image(void *data, size_t i, int tid)
{
    (void)tid;
    const bilinear_job *j = data;
    size_t in = (size_t)j->h * j->w, out = in * (size_t)j->f * j->f;
    lerp tab[TAB];
#ifdef KP_UP_AVX512
    if (up2_simd(j->f, j->w)) {
        for (size_t p = i * (size_t)j->c; p < (i + 1) * (size_t)j->c; p++)
            up2_plane_back(j->h, j->w, j->dy + p * out, j->dx + p * in);
        return;
    }
#endif
    memset(j->dx + i * (size_t)j->c * in, 0, (size_t)j->c * in * sizeof *j->dx);
    for (int ox0 = 0; ox0 < j->w * j->f; ox0 += TAB) {
        int nx = j->w * j->f - ox0 < TAB ? j->w * j->f - ox0 : TAB;
        lerp_table(j, ox0, nx, tab);
        for (int c = 0; c < j->c; c++) {
            size_t p = i * (size_t)j->c + (size_t)c;
            bilinear_plane_cols_back(j, j->dy + p * out, j->dx + p * in, ox0, nx, tab);
        }
    }
}

void kp_upsample_backward(int n, int c, int h, int w, int f, const float *dy, float *dx,
                          int threads)
{
    bilinear_job j = { .c = c, .h = h, .w = w, .f = f, .dy = dy, .dx = dx };
    if (n > 0)
        kp_parallel_for(threads, bilinear_backward_image, &j, (size_t)n);
}

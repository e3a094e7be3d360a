/* conv.c - conv2d forward and backward (models/nn/kernels.h).
 *
 * Two ways to compute, chosen per shape, both giving the same bits on every
 * thread count:
 *
 * im2col + sgemm, for every shape.  Forward: each image is one work item;
 * its im2col block goes into the calling thread's slice of the workspace and
 * one single-threaded sgemm y_i = W col_i (+ b) writes its output (a 1x1,
 * stride 1, pad 0 conv needs no im2col).  dx: for stride 1 it is itself a
 * conv of dy with the flipped, transposed kernel (pad' = dilation (k - 1) -
 * pad), an im2col of dy and one sgemm; for larger strides dcol = W^T dy_i is
 * scattered back by col2im.  dW: sgemm dy_i col_i^T.
 *
 * Direct AVX-512 kernels, for the stride-1 convs whose output is as large as
 * their input (2 pad = dilation (k - 1): the usual "same" conv), on CPUs
 * that have AVX-512: no im2col and no sgemm.  Forward and dx: a register tile
 * of 8 output channels x 48 pixels accumulates over every input channel and
 * tap, from loads of the input masked where the zero padding is.  dW (3x3,
 * at least 8 input channels): the image copied channels-last with a zero
 * border, and a tile of 3 output x 16 input channels x 9 taps summed over
 * every pixel.  They run 1.5-2x faster than im2col + sgemm here.
 *
 * Backward cuts the batch into fixed chunks of images (their number depends
 * on n only, never on the thread count).  A chunk sums dW and db over its
 * images into its own partial buffer in the workspace; the partials are then
 * added to dW and db in chunk order.  dx is per image.
 *
 * Workspace, in floats: one column block (or channels-last copy) per thread,
 * the flipped or packed kernel (stride 1 only), then one partial per chunk;
 * each rounded up to 64 bytes.  A workspace sized for (n, threads) serves any
 * smaller batch and any thread count up to threads.
 */
#include "kernels.h"

#include <cblas.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define KP_CONV_DIRECT 1
#define KP_AVX512 __attribute__((target("avx512f")))
#endif
#include "../../lib/err.h"
#include "../../lib/parallel.h"

enum {
    CONV_MAX_CHUNKS = 16,   /* partial dW buffers of a backward pass, at most */
    WS_ALIGN = 16,          /* floats: each workspace region starts on 64 bytes */
    DR = 8,                 /* direct conv: output channels per register tile */
    DV = 3,                 /* direct conv: vectors of 16 pixels per register tile */
    DK_MAX = 7              /* direct conv: largest kernel */
};

/* A same-size, stride-1 conv run directly: c_in planes of h x w in, c_out out. */
typedef struct direct_geom {
    int c_in, c_out, h, w, k, pad, dil;
} direct_geom;

/* The geometry of one im2col: a c x h x w input read into c k k rows of
 * ho x wo positions (the forward conv, or the transposed one of dx). */
typedef struct im2col_geom {
    int c, h, w, k, stride, pad, dil, ho, wo;
} im2col_geom;

/* Where the workspace regions lie, in floats. */
typedef struct ws_layout {
    size_t col;             /* per-thread column block, rounded */
    size_t wt;              /* the flipped kernel (stride 1), rounded */
    size_t part;            /* one chunk's partial dW then db, rounded */
    size_t total;
} ws_layout;

/* Everything the work items of one pass read. */
typedef struct conv_job {
    const kp_conv_shape *s;
    im2col_geom fwd, tr;    /* x's im2col; dy's im2col for stride-1 dx */
    int n, chunk;           /* batch size, images per backward chunk */
    const float *x, *W, *b, *dy;
    float *y, *dx, *wt, *ws;
    int want_dw, want_db;
    int direct;             /* forward and dx by the direct kernel */
    int dw_direct;          /* dW by the direct kernel */
    direct_geom dfwd, dbwd; /* its geometry for y and for dx */
    ws_layout lay;
} conv_job;

static size_t round_up(size_t v)
{
    return (v + WS_ALIGN - 1) / WS_ALIGN * WS_ALIGN;
}

/* ---- shapes ---- */

static long long out_size(int in, int k, int stride, int pad, int dil)
{
    return ((long long)in + 2LL * pad - (long long)dil * (k - 1) - 1) / stride + 1;
}

int kp_conv_shape_init(kp_conv_shape *s, char *err, size_t errlen)
{
    const struct { const char *name; int v; int min; } f[] = {
        { "c_in", s->c_in, 1 },   { "h_in", s->h_in, 1 }, { "w_in", s->w_in, 1 },
        { "c_out", s->c_out, 1 }, { "k", s->k, 1 },       { "stride", s->stride, 1 },
        { "pad", s->pad, 0 },     { "dilation", s->dilation, 1 },
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (f[i].v < f[i].min)
            return kp_errf(err, errlen, KP_ERR_ARG, "conv2d: %s must be %s, got %d",
                           f[i].name, f[i].min ? "positive" : "non-negative", f[i].v);
    long long span = (long long)s->dilation * (s->k - 1) + 1;
    long long hp = (long long)s->h_in + 2LL * s->pad, wp = (long long)s->w_in + 2LL * s->pad;
    long long ho = out_size(s->h_in, s->k, s->stride, s->pad, s->dilation);
    long long wo = out_size(s->w_in, s->k, s->stride, s->pad, s->dilation);
    if (hp < span || wp < span)
        return kp_errf(err, errlen, KP_ERR_ARG,
                       "conv2d: the %lld-pixel kernel span does not fit the %dx%d input "
                       "padded by %d: the output would be empty",
                       span, s->h_in, s->w_in, s->pad);
    if (hp * wp > INT_MAX || (long long)s->c_in * s->k * s->k > INT_MAX ||
        (long long)s->c_out * s->k * s->k > INT_MAX)
        return kp_errf(err, errlen, KP_ERR_ARG, "conv2d: %d x %d channels of %dx%d kernels "
                       "on a %lldx%lld padded input are too large",
                       s->c_out, s->c_in, s->k, s->k, hp, wp);
    s->h_out = (int)ho;
    s->w_out = (int)wo;
    return 0;
}

/* The number of backward chunks and their size for a batch of n. */
static int chunk_images(int n)
{
    int chunks = n < CONV_MAX_CHUNKS ? n : CONV_MAX_CHUNKS;
    return chunks > 0 ? (n + chunks - 1) / chunks : 1;
}

/* A 1x1, stride 1, pad 0 im2col is the input itself. */
static int im2col_is_identity(const im2col_geom *g)
{
    return g->k == 1 && g->stride == 1 && g->pad == 0;
}

static size_t im2col_floats(const im2col_geom *g)
{
    return im2col_is_identity(g) ? 0 : (size_t)g->c * g->k * g->k * g->ho * g->wo;
}

static im2col_geom fwd_geom(const kp_conv_shape *s)
{
    return (im2col_geom){ s->c_in, s->h_in, s->w_in, s->k, s->stride, s->pad,
                          s->dilation, s->h_out, s->w_out };
}

/* dx of a stride-1 conv is a conv of dy with pad' = dilation (k - 1) - pad. */
static im2col_geom tr_geom(const kp_conv_shape *s)
{
    return (im2col_geom){ s->c_out, s->h_out, s->w_out, s->k, 1,
                          s->dilation * (s->k - 1) - s->pad, s->dilation, s->h_in, s->w_in };
}

static int dw_direct_ok(const kp_conv_shape *s);
static size_t dw_xt_floats(const kp_conv_shape *s);

/* Channels of the direct dW kernel's input copy: c_in rounded up to 16. */
static size_t dw_cp(const kp_conv_shape *s)
{
    return ((size_t)s->c_in + 15) / 16 * 16;
}

static ws_layout layout(const kp_conv_shape *s, int n, int threads)
{
    im2col_geom f = fwd_geom(s), t = tr_geom(s);
    size_t kk = (size_t)s->c_in * s->k * s->k, col = im2col_floats(&f);
    size_t dcol = s->stride == 1 ? im2col_floats(&t) : kk * s->h_out * s->w_out;
    ws_layout l;
    size_t xt = dw_direct_ok(s) ? dw_xt_floats(s) + 16 : 0;   /* + room to align it */
    col = col > dcol ? col : dcol;
    l.col = round_up(col > xt ? col : xt);
    size_t pack_y = (size_t)(s->c_out + DR - 1) / DR * DR * kk;
    size_t pack_x = (size_t)(s->c_in + DR - 1) / DR * DR * s->c_out * s->k * s->k;
    l.wt = s->stride == 1 ? round_up(pack_y > pack_x ? pack_y : pack_x) : 0;
    size_t part = (size_t)s->c_out * kk, part_t = (size_t)s->c_out * 9 * dw_cp(s);
    l.part = round_up((dw_direct_ok(s) && part_t > part ? part_t : part) + s->c_out);
    /* at most this many chunks, and never fewer for a larger batch */
    size_t chunks = n < 1 ? 0 : n < CONV_MAX_CHUNKS ? (size_t)n : CONV_MAX_CHUNKS;
    l.total = (size_t)(threads > 1 ? threads : 1) * l.col + l.wt + chunks * l.part;
    return l;
}

size_t kp_conv_workspace(const kp_conv_shape *s, int n, int threads)
{
    return layout(s, n, threads).total;
}

/* ---- im2col and col2im ---- */

/* [*lo, *hi): the outputs o in [0, no) whose input o * stride + off is in [0, n). */
static void valid_range(int off, int stride, int n, int no, int *lo, int *hi)
{
    int a = off >= 0 ? 0 : (-off + stride - 1) / stride;
    int b = n - 1 - off < 0 ? 0 : (n - 1 - off) / stride + 1;
    a = a < no ? a : no;
    b = b < no ? b : no;
    *lo = a;
    *hi = b > a ? b : a;
}

/* One im2col row (channel plane src, kernel tap at offsets yoff, xoff) when
 * stride is 1 and the output is as wide as the input: one shifted copy of
 * the whole valid band, then the wrapped-around edge columns are zeroed. */
static void im2col_row_shift(const im2col_geom *g, const float *src, int yoff, int xoff,
                             int y0, int y1, int x0, int x1, float *row)
{
    size_t w = (size_t)g->wo;
    size_t start = (size_t)y0 * w + (size_t)x0, end = (size_t)(y1 - 1) * w + (size_t)x1;
    memcpy(row + start, src + (ptrdiff_t)start + (ptrdiff_t)yoff * g->w + xoff,
           (end - start) * sizeof *row);
    for (int oy = y0; oy < y1; oy++) {
        float *r = row + (size_t)oy * w;
        for (int ox = 0; ox < x0; ox++)
            r[ox] = 0;
        for (int ox = x1; ox < g->wo; ox++)
            r[ox] = 0;
    }
}

/* One im2col row in general: row by row, strided reads. */
static void im2col_row_general(const im2col_geom *g, const float *src, int yoff, int xoff,
                               int y0, int y1, int x0, int x1, float *row)
{
    for (int oy = y0; oy < y1; oy++) {
        const float *in = src + (size_t)(oy * g->stride + yoff) * g->w;
        float *r = row + (size_t)oy * g->wo;
        memset(r, 0, (size_t)x0 * sizeof *r);
        if (g->stride == 1)
            memcpy(r + x0, in + x0 + xoff, (size_t)(x1 - x0) * sizeof *r);
        else
            for (int ox = x0; ox < x1; ox++)
                r[ox] = in[ox * g->stride + xoff];
        memset(r + x1, 0, (size_t)(g->wo - x1) * sizeof *r);
    }
}

/* col[(c k + ky) k + kx][oy wo + ox] = x[c][oy s - pad + ky d][ox s - pad + kx d] or 0. */
static void im2col(const im2col_geom *g, const float *x, float *col)
{
    size_t plane = (size_t)g->ho * g->wo;
    int shift = g->stride == 1 && g->wo == g->w;
    for (int c = 0; c < g->c; c++) {
        const float *src = x + (size_t)c * g->h * g->w;
        for (int ky = 0; ky < g->k; ky++) {
            int yoff = ky * g->dil - g->pad, y0, y1;
            valid_range(yoff, g->stride, g->h, g->ho, &y0, &y1);
            for (int kx = 0; kx < g->k; kx++) {
                int xoff = kx * g->dil - g->pad, x0, x1;
                valid_range(xoff, g->stride, g->w, g->wo, &x0, &x1);
                float *row = col + ((size_t)(c * g->k + ky) * g->k + kx) * plane;
                memset(row, 0, (size_t)y0 * g->wo * sizeof *row);
                if (y1 > y0 && x1 > x0 && shift)
                    im2col_row_shift(g, src, yoff, xoff, y0, y1, x0, x1, row);
                else if (x1 > x0)
                    im2col_row_general(g, src, yoff, xoff, y0, y1, x0, x1, row);
                else
                    memset(row + (size_t)y0 * g->wo, 0, (size_t)(y1 - y0) * g->wo * sizeof *row);
                memset(row + (size_t)y1 * g->wo, 0, (size_t)(g->ho - y1) * g->wo * sizeof *row);
            }
        }
    }
}

/* The adjoint of im2col: x = 0, then every column entry added back to its pixel. */
static void col2im(const im2col_geom *g, const float *col, float *x)
{
    size_t plane = (size_t)g->ho * g->wo;
    memset(x, 0, (size_t)g->c * g->h * g->w * sizeof *x);
    for (int c = 0; c < g->c; c++) {
        float *dst = x + (size_t)c * g->h * g->w;
        for (int ky = 0; ky < g->k; ky++) {
            int yoff = ky * g->dil - g->pad, y0, y1;
            valid_range(yoff, g->stride, g->h, g->ho, &y0, &y1);
            for (int kx = 0; kx < g->k; kx++) {
                int xoff = kx * g->dil - g->pad, x0, x1;
                valid_range(xoff, g->stride, g->w, g->wo, &x0, &x1);
                const float *row = col + ((size_t)(c * g->k + ky) * g->k + kx) * plane;
                for (int oy = y0; oy < y1; oy++) {
                    float *out = dst + (size_t)(oy * g->stride + yoff) * g->w + xoff;
                    const float *r = row + (size_t)oy * g->wo;
                    for (int ox = x0; ox < x1; ox++)
                        out[ox * g->stride] += r[ox];
                }
            }
        }
    }
}

/* ---- direct same-size convolution (AVX-512) ---- */

static int direct_off;      /* tests: 1 forces im2col + sgemm everywhere */

/* Test hook (not in kernels.h): on = 0 disables the direct kernel. */
void kp_conv_set_direct(int on)
{
    direct_off = !on;
}

/* Whether this CPU and shape take the direct kernel. */
static int direct_ok(const kp_conv_shape *s)
{
#ifdef KP_CONV_DIRECT
    return __builtin_cpu_supports("avx512f") && !direct_off && s->stride == 1 && s->k > 1 && s->k <= DK_MAX &&
           s->h_out == s->h_in && s->w_out == s->w_in;
#else
    (void)s;
    return 0;
#endif
}

/* wp[ob][t][c][r] = W[ob DR + r][c][t] (0 past c_out): y's register tiles. */
static void pack_forward(const kp_conv_shape *s, const float *W, float *wp)
{
    int kk = s->k * s->k, blocks = (s->c_out + DR - 1) / DR;
    for (int ob = 0; ob < blocks; ob++)
        for (int t = 0; t < kk; t++)
            for (int c = 0; c < s->c_in; c++)
                for (int r = 0; r < DR; r++) {
                    int o = ob * DR + r;
                    *wp++ = o < s->c_out ? W[((size_t)o * s->c_in + c) * kk + t] : 0;
                }
}

/* wp[cb][t][o][r] = W[o][cb DR + r][kk - 1 - t]: dx's tiles, the kernel
 * transposed and flipped. */
static void pack_backward(const kp_conv_shape *s, const float *W, float *wp)
{
    int kk = s->k * s->k, blocks = (s->c_in + DR - 1) / DR;
    for (int cb = 0; cb < blocks; cb++)
        for (int t = 0; t < kk; t++)
            for (int o = 0; o < s->c_out; o++)
                for (int r = 0; r < DR; r++) {
                    int c = cb * DR + r;
                    *wp++ = c < s->c_in ? W[((size_t)o * s->c_in + c) * kk + kk - 1 - t] : 0;
                }
}

#ifdef KP_CONV_DIRECT
/* Lane masks of the pixels q0 + 16 v + lane: tm[(ky k + kx) DV + v] has
 * the lanes (with q < h w) whose input pixel for tap (ky, kx) is inside the
 * image; the others read the zero padding. */
static void direct_masks(const direct_geom *g, int q0, int nv, uint16_t *tm)
{
    uint16_t rm[DV * DK_MAX] = { 0 }, cm[DV * DK_MAX] = { 0 };
    int P = g->h * g->w, oy = q0 / g->w, ox = q0 - oy * g->w;
    for (int l = 0; l < 16 * nv && q0 + l < P; l++) {
        uint16_t bit = (uint16_t)(1u << (l % 16));
        for (int t = 0; t < g->k; t++) {
            int iy = oy + t * g->dil - g->pad, ix = ox + t * g->dil - g->pad;
            if (iy >= 0 && iy < g->h)
                rm[t * DV + l / 16] |= bit;
            if (ix >= 0 && ix < g->w)
                cm[t * DV + l / 16] |= bit;
        }
        if (++ox == g->w)
            ox = 0, oy++;
    }
    for (int ky = 0; ky < g->k; ky++)
        for (int kx = 0; kx < g->k; kx++)
            for (int v = 0; v < DV; v++)
                tm[(ky * g->k + kx) * DV + v] = rm[ky * DV + v] & cm[kx * DV + v];
}

/* acc += one tap over every input channel, from src (channel 0's pixels at
 * the tap's offset); masked: loads through the tap's masks m, else plain
 * loads (every lane inside the image).  masked and nv are constants after
 * inlining. */
KP_AVX512 static inline __attribute__((always_inline)) void
direct_tap(const direct_geom *g, const float *src, const float *wp, const __mmask16 *m,
           __m512 acc[DR][DV], const int nv, const int masked)
{
    size_t P = (size_t)g->h * g->w;
    for (int c = 0; c < g->c_in; c++, src += P, wp += DR) {
        __m512 xv[DV];
#pragma GCC unroll 3
        for (int v = 0; v < nv; v++)
            xv[v] = masked ? _mm512_maskz_loadu_ps(m[v], src + 16 * v)
                           : _mm512_loadu_ps(src + 16 * v);
#pragma GCC unroll 8
        for (int r = 0; r < DR; r++) {
            __m512 w = _mm512_set1_ps(wp[r]);
#pragma GCC unroll 3
            for (int v = 0; v < nv; v++)
                acc[r][v] = _mm512_fmadd_ps(xv[v], w, acc[r][v]);
        }
    }
}

/* One register tile: y[o0 + r][q0 + 16 v + lane] for r < DR, v < nv, from
 * the packed kernel wp of its channel block (nv is a constant after inlining). */
KP_AVX512 static inline __attribute__((always_inline)) void
direct_tile(const direct_geom *g, const float *x, const float *wp, const float *b, float *y,
            int q0, int o0, const uint16_t *tm, const int nv)
{
    size_t P = (size_t)g->h * g->w;
    __m512 acc[DR][DV];
#pragma GCC unroll 8
    for (int r = 0; r < DR; r++) {
        __m512 v0 = _mm512_set1_ps(b && o0 + r < g->c_out ? b[o0 + r] : 0.0f);
#pragma GCC unroll 3
        for (int v = 0; v < nv; v++)
            acc[r][v] = v0;
    }
    for (int ky = 0; ky < g->k; ky++)
        for (int kx = 0; kx < g->k; kx++, tm += DV, wp += (size_t)g->c_in * DR) {
            __mmask16 m[DV];    /* the tap's masks hold for every input channel */
            int full = 1;
#pragma GCC unroll 3
            for (int v = 0; v < nv; v++) {
                m[v] = tm[v];
                full &= tm[v] == 0xFFFF;
            }
            const float *src = x + q0 + (ptrdiff_t)(ky * g->dil - g->pad) * g->w +
                               kx * g->dil - g->pad;
            if (full)
                direct_tap(g, src, wp, m, acc, nv, 0);
            else
                direct_tap(g, src, wp, m, acc, nv, 1);
        }
    /* constant indices throughout, so that acc stays in registers */
#pragma GCC unroll 8
    for (int r = 0; r < DR; r++)
#pragma GCC unroll 3
        for (int v = 0; v < nv; v++) {
            int left = (int)P - q0 - 16 * v;
            __mmask16 keep = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
            if (o0 + r < g->c_out)
                _mm512_mask_storeu_ps(y + (size_t)(o0 + r) * P + q0 + 16 * v, keep, acc[r][v]);
        }
}

/* Prefetches elements [lo, hi) of each of n planes of P floats (for writing: w). */
KP_AVX512 static void prefetch_planes(const float *base, int n, size_t P, size_t lo, size_t hi,
                                      int w)
{
    hi = hi < P ? hi : P;
    for (int c = 0; c < n && lo < hi; c++)
        for (size_t i = lo; i < hi + 15; i += 16) {
            const char *p = (const char *)(base + c * P + (i < hi ? i : hi - 1));
            if (w)
                _mm_prefetch(p, _MM_HINT_ET0);
            else
                _mm_prefetch(p, _MM_HINT_T0);
        }
}

/* Asks for the lines of input and output that the pixel block at q will
 * need (its lowest taps reach pad rows down): the batch's images come from
 * memory, and the tiles ask for them two blocks ahead. */
KP_AVX512 static void direct_prefetch(const direct_geom *g, const float *x, float *y,
                                      size_t q, size_t len)
{
    size_t P = (size_t)g->h * g->w, below = (size_t)g->pad * g->w + (size_t)g->pad;
    prefetch_planes(x, g->c_in, P, q + below, q + below + len, 0);
    prefetch_planes(y, g->c_out, P, q, q + len, 1);
}

/* Every tile of pixels q0 .. q0 + 16 nv of one image (all channel blocks). */
KP_AVX512 static void direct_pixels(const direct_geom *g, const float *x, const float *wp,
                                    const float *b, float *y, int q0, int nv)
{
    uint16_t tm[DK_MAX * DK_MAX * DV];
    direct_masks(g, q0, nv, tm);
    direct_prefetch(g, x, y, (size_t)q0 + 2 * 16 * DV, 16 * DV);
    size_t wstride = (size_t)g->c_in * g->k * g->k * DR;
    for (int o0 = 0; o0 < g->c_out; o0 += DR, wp += wstride) {
        if (nv == 3)
            direct_tile(g, x, wp, b, y, q0, o0, tm, 3);
        else if (nv == 2)
            direct_tile(g, x, wp, b, y, q0, o0, tm, 2);
        else
            direct_tile(g, x, wp, b, y, q0, o0, tm, 1);
    }
}
#endif

/* y (c_out x h x w) = the conv of one image x with the packed kernel wp (+ b). */
static void direct_image(const direct_geom *g, const float *x, const float *wp,
                         const float *b, float *y)
{
#ifdef KP_CONV_DIRECT
    int P = g->h * g->w;
    direct_prefetch(g, x, y, 0, 2 * 16 * DV);
    prefetch_planes(x, g->c_in, (size_t)P, 0, (size_t)(g->pad * g->w + g->pad), 0);
    for (int q0 = 0; q0 < P;) {
        int left = P - q0, nv = left > 32 ? 3 : left > 16 ? 2 : 1;
        direct_pixels(g, x, wp, b, y, q0, nv);
        q0 += 16 * nv;
    }
#else
    (void)g, (void)x, (void)wp, (void)b, (void)y;
#endif
}

static direct_geom direct_fwd_geom(const kp_conv_shape *s)
{
    return (direct_geom){ s->c_in, s->c_out, s->h_in, s->w_in, s->k, s->pad, s->dilation };
}

/* dx of a same-size conv: dy through the flipped kernel, pad' = pad. */
static direct_geom direct_bwd_geom(const kp_conv_shape *s)
{
    return (direct_geom){ s->c_out, s->c_in, s->h_in, s->w_in, s->k,
                          s->dilation * (s->k - 1) - s->pad, s->dilation };
}

/* ---- direct dW of a same-size 3x3 conv (AVX-512) ----
 *
 * The image is copied channels-last into a zero-bordered buffer xt[Hp][Wp][Cp]
 * (Cp = c_in rounded up to 16, zeros past c_in), so that for every output
 * pixel a 16-channel vector of each of the 9 taps is one plain load.  A
 * register tile holds dW for 3 output channels x 9 taps x 16 input channels,
 * summed over every pixel, and is added into the chunk's partial, laid out
 * pt[o][t][Cp]; reduce_partials transposes it into dW[o][c][t].
 */

/* Whether dW takes the direct kernel: 3x3, enough input channels to fill
 * its vectors (else im2col + sgemm). */
static int dw_direct_ok(const kp_conv_shape *s)
{
    return direct_ok(s) && s->k == 3 && s->c_in >= 8;
}

static size_t dw_xt_floats(const kp_conv_shape *s)
{
    return (size_t)(s->h_in + 2 * s->pad) * (size_t)(s->w_in + 2 * s->pad) * dw_cp(s);
}

#ifdef KP_CONV_DIRECT
/* Transposes the 16 x 16 block in r (r[i] is row i) in place. */
KP_AVX512 static inline __attribute__((always_inline)) void transpose16(__m512 r[16])
{
    __m512 t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int g = 0; g < 16; g += 4) {   /* u[g + j], lane L: rows g..g+3 of column 4 L + j */
        u[g] = _mm512_shuffle_ps(t[g], t[g + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[g + 1] = _mm512_shuffle_ps(t[g], t[g + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[g + 2] = _mm512_shuffle_ps(t[g + 1], t[g + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[g + 3] = _mm512_shuffle_ps(t[g + 1], t[g + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int j = 0; j < 4; j++) {
        t[j] = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88);
        t[4 + j] = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xDD);
        t[8 + j] = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88);
        t[12 + j] = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xDD);
    }
    for (int j = 0; j < 4; j++) {
        r[j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88);
        r[8 + j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0xDD);
        r[4 + j] = _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0x88);
        r[12 + j] = _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0xDD);
    }
}

/* One image row y into xt, 16 pixels x 16 channels at a time. */
KP_AVX512 static void dw_transpose_row(const kp_conv_shape *s, const float *x, int y, float *xt)
{
    size_t cp = dw_cp(s), wp = (size_t)(s->w_in + 2 * s->pad), P = (size_t)s->h_in * s->w_in;
    float *row = xt + ((size_t)(y + s->pad) * wp + (size_t)s->pad) * cp;
    for (int x0 = 0; x0 < s->w_in; x0 += 16) {
        int nx = s->w_in - x0 < 16 ? s->w_in - x0 : 16;
        __mmask16 m = (__mmask16)((1u << nx) - 1);
        for (size_t c0 = 0; c0 < cp; c0 += 16) {
            __m512 r[16];
            for (size_t i = 0; i < 16; i++)
                r[i] = c0 + i < (size_t)s->c_in
                           ? _mm512_maskz_loadu_ps(m, x + (c0 + i) * P + (size_t)y * s->w_in + x0)
                           : _mm512_setzero_ps();
            transpose16(r);
            for (int j = 0; j < nx; j++)
                _mm512_storeu_ps(row + (size_t)(x0 + j) * cp + c0, r[j]);
        }
    }
}

/* xt = image x channels-last, zero border of pad pixels, zero channels past c_in. */
KP_AVX512 static void dw_transpose(const kp_conv_shape *s, const float *x, float *xt)
{
    size_t cp = dw_cp(s), wp = (size_t)(s->w_in + 2 * s->pad), pad = (size_t)s->pad;
    memset(xt, 0, pad * wp * cp * sizeof *xt);
    memset(xt + (pad + (size_t)s->h_in) * wp * cp, 0, pad * wp * cp * sizeof *xt);
    for (int y = 0; y < s->h_in; y++) {
        float *row = xt + ((size_t)y + pad) * wp * cp;
        memset(row, 0, pad * cp * sizeof *row);
        memset(row + (pad + (size_t)s->w_in) * cp, 0, pad * cp * sizeof *row);
        dw_transpose_row(s, x, y, xt);
    }
}
#endif

#ifdef KP_CONV_DIRECT
/* pt[o0 + r][t][c0 .. c0 + 16] += sum over pixels of dy[o0 + r][pixel] times
 * tap t's 16 channels, for r < nr (nr is a constant after inlining). */
KP_AVX512 static inline __attribute__((always_inline)) void
dw_tile(const kp_conv_shape *s, const float *dyi, const float *xt, float *pt, int o0, int c0,
        const int nr)
{
    size_t cp = dw_cp(s), wp = (size_t)(s->w_in + 2 * s->pad), P = (size_t)s->h_in * s->w_in;
    size_t cs = (size_t)s->dilation * cp, rs = (size_t)s->dilation * wp * cp;
    __m512 acc[3][9];
    float *out = pt + ((size_t)o0 * 9) * cp + (size_t)c0;
#pragma GCC unroll 3
    for (int r = 0; r < nr; r++)
#pragma GCC unroll 9
        for (int t = 0; t < 9; t++)
            acc[r][t] = _mm512_loadu_ps(out + ((size_t)r * 9 + (size_t)t) * cp);
    for (int y = 0; y < s->h_in; y++) {
        const float *d = dyi + (size_t)o0 * P + (size_t)y * s->w_in;
        const float *px = xt + (size_t)y * wp * cp + (size_t)c0;
        for (int x = 0; x < s->w_in; x++, px += cp) {
            __m512 g[3];
#pragma GCC unroll 3
            for (int r = 0; r < nr; r++)
                g[r] = _mm512_set1_ps(d[(size_t)r * P + (size_t)x]);
#pragma GCC unroll 9
            for (int t = 0; t < 9; t++) {
                __m512 v = _mm512_loadu_ps(px + (size_t)(t / 3) * rs + (size_t)(t % 3) * cs);
#pragma GCC unroll 3
                for (int r = 0; r < nr; r++)
                    acc[r][t] = _mm512_fmadd_ps(g[r], v, acc[r][t]);
            }
        }
    }
#pragma GCC unroll 3
    for (int r = 0; r < nr; r++)
#pragma GCC unroll 9
        for (int t = 0; t < 9; t++)
            _mm512_storeu_ps(out + ((size_t)r * 9 + (size_t)t) * cp, acc[r][t]);
}

/* Adds one image's dW into the partial pt, from its copy xt; meanwhile asks
 * for the next image next (or NULL) a slice per tile, so that its copy
 * does not wait for memory. */
KP_AVX512 static void dw_image(const kp_conv_shape *s, const float *dyi, const float *xt,
                               float *pt, const float *next)
{
    int cp = (int)dw_cp(s), tiles = cp / 16 * ((s->c_out + 2) / 3), tile = 0;
    size_t len = (size_t)s->c_in * s->h_in * s->w_in, step = (len + (size_t)tiles - 1) / (size_t)tiles;
    for (int c0 = 0; c0 < cp; c0 += 16)
        for (int o0 = 0, nr; o0 < s->c_out; o0 += nr, tile++) {
            if (next)
                prefetch_planes(next, 1, len, (size_t)tile * step, (size_t)(tile + 1) * step, 0);
            nr = s->c_out - o0;
            nr = nr == 4 ? 2 : nr > 3 ? 3 : nr;     /* 4 left: 2 + 2, not 3 + 1 */
            if (nr == 3)
                dw_tile(s, dyi, xt, pt, o0, c0, 3);
            else if (nr == 2)
                dw_tile(s, dyi, xt, pt, o0, c0, 2);
            else
                dw_tile(s, dyi, xt, pt, o0, c0, 1);
        }
}
#endif

/* The direct path of backward_params: copy, then accumulate (pt zeroed first). */
static void dw_direct(const kp_conv_shape *s, const float *xi, const float *dyi, float *pt,
                      float *xt, int first, const float *next)
{
    if (first)
        memset(pt, 0, (size_t)s->c_out * 9 * dw_cp(s) * sizeof *pt);
    xt += (64 - (uintptr_t)xt % 64) % 64 / sizeof *xt;   /* loads on whole cache lines */
#ifdef KP_CONV_DIRECT
    dw_transpose(s, xi, xt);
    dw_image(s, dyi, xt, pt, next);
#else
    (void)xi, (void)dyi, (void)next;
#endif
}

/* dW[o][c][t] += pt[o][t][c]: the direct partial's layout undone. */
static void dw_add_transposed(const kp_conv_shape *s, const float *pt, float *dW)
{
    size_t cp = dw_cp(s);
    for (int o = 0; o < s->c_out; o++)
        for (int c = 0; c < s->c_in; c++)
            for (int t = 0; t < 9; t++)
                dW[((size_t)o * s->c_in + c) * 9 + t] += pt[((size_t)o * 9 + t) * cp + c];
}

/* ---- forward ---- */

static void forward_image(void *data, size_t i, int tid)
{
    const conv_job *j = data;
    const kp_conv_shape *s = j->s;
    int hw = s->h_out * s->w_out, kk = s->c_in * s->k * s->k;
    const float *xi = j->x + i * s->c_in * s->h_in * s->w_in, *col = xi;
    float *yi = j->y + i * (size_t)s->c_out * hw;
    if (j->direct) {
        direct_image(&j->dfwd, xi, j->wt, j->b, yi);
        return;
    }
    if (!im2col_is_identity(&j->fwd)) {
        float *buf = j->ws + (size_t)tid * j->lay.col;
        im2col(&j->fwd, xi, buf);
        col = buf;
    }
    float beta = 0;
    if (j->b) {
        for (int o = 0; o < s->c_out; o++)
            for (int p = 0; p < hw; p++)
                yi[(size_t)o * hw + p] = j->b[o];
        beta = 1;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->c_out, hw, kk, 1.0f, j->W, kk,
                col, hw, beta, yi, hw);
}

void kp_conv_forward(const kp_conv_shape *s, int n, const float *x, const float *W,
                     const float *b, float *y, float *ws, int threads)
{
    conv_job j = { .s = s, .fwd = fwd_geom(s), .n = n, .x = x, .W = W, .b = b, .y = y,
                   .ws = ws, .direct = direct_ok(s), .dfwd = direct_fwd_geom(s),
                   .lay = layout(s, n, threads) };
    if (n <= 0)
        return;
    j.wt = ws + (size_t)(threads > 1 ? threads : 1) * j.lay.col;
    if (j.direct)
        pack_forward(s, W, j.wt);
    kp_parallel_for(threads, forward_image, &j, (size_t)n);
}

/* ---- backward ---- */

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

/* Wt[c][o][ky][kx] = W[o][c][k-1-ky][k-1-kx]: the kernel of dx as a conv of dy. */
static void flip_kernel(const kp_conv_shape *s, const float *W, float *wt)
{
    int k = s->k, kk = k * k;
    for (int o = 0; o < s->c_out; o++)
        for (int c = 0; c < s->c_in; c++) {
            const float *src = W + ((size_t)o * s->c_in + c) * kk;
            float *dst = wt + ((size_t)c * s->c_out + o) * kk;
            for (int t = 0; t < kk; t++)
                dst[t] = src[kk - 1 - t];
        }
}

/* dx_i from dy_i, with the thread's column block buf. */
static void backward_dx(const conv_job *j, const float *dyi, float *dxi, float *buf)
{
    const kp_conv_shape *s = j->s;
    int hw_in = s->h_in * s->w_in, hw_out = s->h_out * s->w_out;
    int kk = s->c_in * s->k * s->k;
    if (j->direct) {
        direct_image(&j->dbwd, dyi, j->wt, NULL, dxi);
        return;
    }
    if (s->stride == 1) {
        int kt = s->c_out * s->k * s->k;
        const float *col = dyi;
        if (!im2col_is_identity(&j->tr)) {
            im2col(&j->tr, dyi, buf);
            col = buf;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->c_in, hw_in, kt, 1.0f,
                    j->wt, kt, col, hw_in, 0.0f, dxi, hw_in);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kk, hw_out, s->c_out, 1.0f, j->W, kk,
                dyi, hw_out, 0.0f, buf, hw_out);
    col2im(&j->fwd, buf, dxi);
}

/* The chunk's partial dW (and db after it) from image i; first: overwrite;
 * last: the chunk's last image. */
static void backward_params(const conv_job *j, size_t i, const float *dyi, float *part,
                            float *buf, int first, int last)
{
    const kp_conv_shape *s = j->s;
    int hw = s->h_out * s->w_out, kk = s->c_in * s->k * s->k;
    if (j->want_dw && j->dw_direct) {
        size_t in = (size_t)s->c_in * s->h_in * s->w_in;
        const float *next = last ? NULL : j->x + (i + 1) * in;
        dw_direct(s, j->x + i * in, dyi, part, buf, first, next);
    } else if (j->want_dw) {
        const float *xi = j->x + i * s->c_in * s->h_in * s->w_in, *col = xi;
        if (!im2col_is_identity(&j->fwd)) {
            im2col(&j->fwd, xi, buf);
            col = buf;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s->c_out, kk, hw, 1.0f, dyi, hw,
                    col, hw, first ? 0.0f : 1.0f, part, kk);
    }
    if (j->want_db) {
        float *pdb = part + j->lay.part - (size_t)s->c_out;
        for (int o = 0; o < s->c_out; o++) {
            float v = lane_sum(dyi + (size_t)o * hw, (size_t)hw);
            pdb[o] = first ? v : pdb[o] + v;
        }
    }
}

static void backward_chunk(void *data, size_t ci, int tid)
{
    const conv_job *j = data;
    const kp_conv_shape *s = j->s;
    size_t i0 = ci * (size_t)j->chunk, i1 = i0 + (size_t)j->chunk;
    if (i1 > (size_t)j->n)
        i1 = (size_t)j->n;
    float *buf = j->ws + (size_t)tid * j->lay.col;
    float *part = j->wt + j->lay.wt + ci * j->lay.part;
    for (size_t i = i0; i < i1; i++) {
        const float *dyi = j->dy + i * (size_t)s->c_out * s->h_out * s->w_out;
        backward_params(j, i, dyi, part, buf, i == i0, i + 1 == i1);
        if (j->dx)
            backward_dx(j, dyi, j->dx + i * (size_t)s->c_in * s->h_in * s->w_in, buf);
    }
}

/* dW += the chunks' partials, then db +=, in chunk order. */
static void reduce_partials(const conv_job *j, size_t chunks, float *dW, float *db)
{
    const kp_conv_shape *s = j->s;
    size_t nw = (size_t)s->c_out * s->c_in * s->k * s->k;
    const float *parts = j->wt + j->lay.wt;
    for (size_t c = 0; c < chunks; c++) {
        const float *p = parts + c * j->lay.part;
        if (dW && j->dw_direct)
            dw_add_transposed(s, p, dW);
        else if (dW)
            for (size_t t = 0; t < nw; t++)
                dW[t] += p[t];
        if (db)
            for (int o = 0; o < s->c_out; o++)
                db[o] += p[j->lay.part - (size_t)s->c_out + (size_t)o];
    }
}

void kp_conv_backward(const kp_conv_shape *s, int n, const float *x, const float *W,
                      const float *dy, float *dx, float *dW, float *db, float *ws,
                      int threads)
{
    if (n <= 0)
        return;
    conv_job j = { .s = s, .fwd = fwd_geom(s), .tr = tr_geom(s), .n = n,
                   .chunk = chunk_images(n), .x = x, .W = W, .dy = dy, .dx = dx, .ws = ws,
                   .want_dw = dW != NULL, .want_db = db != NULL,
                   .direct = direct_ok(s), .dw_direct = dw_direct_ok(s),
                   .dbwd = direct_bwd_geom(s), .lay = layout(s, n, threads) };
    j.wt = ws + (size_t)(threads > 1 ? threads : 1) * j.lay.col;
    if (dx && j.direct)
        pack_backward(s, W, j.wt);
    else if (dx && s->stride == 1)
        flip_kernel(s, W, j.wt);
    size_t chunks = ((size_t)n + (size_t)j.chunk - 1) / (size_t)j.chunk;
    kp_parallel_for(threads, backward_chunk, &j, chunks);
    reduce_partials(&j, chunks, dW, db);
}

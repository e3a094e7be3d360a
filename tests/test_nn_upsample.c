/* test_nn_upsample.c - transposed convolution and bilinear upsampling
 * (models/nn/upsample.c), their net nodes, and loading tensors by prefix
 * map or freezing them by prefix (models/nn/net.c).
 *
 * Backward passes are checked against central finite differences of
 * L = sum(r . forward) taken on double-precision reference loops (written
 * from PyTorch's definitions), on a table of shapes: k = stride = 2, k = 3
 * stride 2, k > stride 1 and k < stride 3, odd sizes, more images than
 * backward chunks.  The PyTorch values were made offline with torch 1.13:
 * x[i] = ((7 i) mod 11 - 5) / 4, W[i] = ((5 i) mod 13 - 6) / 8 in flat
 * order, bias (0.5, -0.25, 0.125), ConvTranspose2d and
 * nn.Upsample(scale_factor=f, mode='bilinear', align_corners=False), printed
 * with %.9g.  Tests of the kernels run twice: with the AVX-512 loops (k = 2
 * scatter and gather, factor-2 upsampling; where the CPU has them) and with
 * the generic loops only.
 */
#include "kp_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/err.h"
#include "../lib/rng.h"
#include "../models/nn/kernels.h"
#include "../models/nn/net.h"

void openblas_set_num_threads(int);
void kp_upsample_set_simd(int on);     /* test hook in upsample.c */

/* ---- helpers ---- */

static float *fvec(size_t n)
{
    float *v = calloc(n ? n : 1, sizeof *v);
    assert_non_null(v);
    return v;
}

static double *dvec(size_t n)
{
    double *v = calloc(n ? n : 1, sizeof *v);
    assert_non_null(v);
    return v;
}

/* Fills v with uniform values in [-1, 1) from seed. */
static void fill(float *v, size_t n, uint64_t seed)
{
    kp_rng r;
    kp_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++)
        v[i] = (float)(2 * kp_rng_uniform(&r) - 1);
}

/* ((a i) mod m - off) / d: the exact inputs of the PyTorch references. */
static void pattern(float *v, size_t n, int a, int m, int off, float d)
{
    for (size_t i = 0; i < n; i++)
        v[i] = (float)((int)((i * (size_t)a) % (size_t)m) - off) / d;
}

static void assert_near(const char *what, const float *got, const double *want, size_t n,
                        double tol)
{
    for (size_t i = 0; i < n; i++)
        if (!(fabs((double)got[i] - want[i]) <= tol * (1 + fabs(want[i]))))
            fail_msg("%s[%zu]: got %.9g, want %.9g", what, i, got[i], want[i]);
}

static void assert_near_f(const char *what, const float *got, const float *want, size_t n,
                          double tol)
{
    for (size_t i = 0; i < n; i++)
        if (!(fabs((double)got[i] - want[i]) <= tol * (1 + fabs((double)want[i]))))
            fail_msg("%s[%zu]: got %.9g, want %.9g", what, i, got[i], want[i]);
}

/* ---- double-precision references ---- */

/* One transposed conv problem: inputs as doubles, for the reference. */
typedef struct upconv_ref {
    kp_upconv_shape s;
    int n, bias;
    double *x, *W, *b;
} upconv_ref;

static size_t ref_nx(const upconv_ref *p)
{
    return (size_t)p->n * p->s.c_in * p->s.h_in * p->s.w_in;
}

static size_t ref_nw(const upconv_ref *p)
{
    return (size_t)p->s.c_in * p->s.c_out * p->s.k * p->s.k;
}

static size_t ref_ny(const upconv_ref *p)
{
    return (size_t)p->n * p->s.c_out * p->s.h_out * p->s.w_out;
}

/* y[i][o][iy s + ky][ix s + kx] += W[c][o][ky][kx] x[i][c][iy][ix], + b[o]. */
static void upconv_reference(const upconv_ref *p, double *y)
{
    const kp_upconv_shape *s = &p->s;
    size_t plane = (size_t)s->h_out * s->w_out;
    for (int i = 0; i < p->n; i++)
        for (int o = 0; o < s->c_out; o++) {
            double *yo = y + ((size_t)i * s->c_out + o) * plane;
            for (size_t q = 0; q < plane; q++)
                yo[q] = p->bias ? p->b[o] : 0;
            for (int c = 0; c < s->c_in; c++)
                for (int ky = 0; ky < s->k; ky++)
                    for (int kx = 0; kx < s->k; kx++) {
                        double w = p->W[(((size_t)c * s->c_out + o) * s->k + ky) * s->k + kx];
                        const double *xc = p->x + ((size_t)i * s->c_in + c) * s->h_in * s->w_in;
                        for (int iy = 0; iy < s->h_in; iy++)
                            for (int ix = 0; ix < s->w_in; ix++)
                                yo[(size_t)(iy * s->stride + ky) * s->w_out + ix * s->stride +
                                   kx] += w * xc[iy * s->w_in + ix];
                    }
        }
}

/* Bilinear reference: PyTorch's align_corners=False coordinates in double. */
static void lerp_ref(int o, int f, int n, int *i0, int *i1, double *l1)
{
    double src = (o + 0.5) / f - 0.5;
    if (src < 0)
        src = 0;
    *i0 = (int)src;
    *i1 = *i0 < n - 1 ? *i0 + 1 : *i0;
    *l1 = src - *i0;
}

static void upsample_reference(int n, int c, int h, int w, int f, const double *x, double *y)
{
    for (int p = 0; p < n * c; p++)
        for (int oy = 0; oy < h * f; oy++)
            for (int ox = 0; ox < w * f; ox++) {
                int y0, y1, x0, x1;
                double ly, lx;
                lerp_ref(oy, f, h, &y0, &y1, &ly);
                lerp_ref(ox, f, w, &x0, &x1, &lx);
                const double *xp = x + (size_t)p * h * w;
                double top = (1 - lx) * xp[y0 * w + x0] + lx * xp[y0 * w + x1];
                double bot = (1 - lx) * xp[y1 * w + x0] + lx * xp[y1 * w + x1];
                y[((size_t)p * h * f + oy) * w * f + ox] = (1 - ly) * top + ly * bot;
            }
}

/* ---- finite differences on the references ---- */

typedef void (*ref_fn)(void *ctx, double *out);

static double weighted(const float *r, const double *out, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += r[i] * out[i];
    return s;
}

/* Checks got[i] against (L(v + h) - L(v - h)) / 2h for each of the n entries of v. */
static void check_fd(const char *what, ref_fn f, void *ctx, const float *r, size_t nout,
                     double *v, size_t n, const float *got)
{
    const double h = 1e-3;
    double *out = dvec(nout);
    for (size_t i = 0; i < n; i++) {
        double keep = v[i];
        v[i] = keep + h;
        f(ctx, out);
        double up = weighted(r, out, nout);
        v[i] = keep - h;
        f(ctx, out);
        double fd = (up - weighted(r, out, nout)) / (2 * h);
        v[i] = keep;
        if (!(fabs(fd - got[i]) <= 1e-4 * (1 + fabs(fd))))
            fail_msg("%s[%zu]: backward %.9g, finite difference %.9g", what, i, got[i], fd);
    }
    free(out);
}

static void upconv_fd(void *ctx, double *out)
{
    upconv_reference(ctx, out);
}

static void to_double(const float *v, double *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        d[i] = v[i];
}

/* ---- transposed convolution ---- */

typedef struct upconv_case { int n, c_in, h, w, c_out, k, stride, bias; } upconv_case;

/* The kernel's forward and backward against the reference and its finite differences. */
static void check_upconv_case(const upconv_case *c, int threads)
{
    char err[KP_ERRLEN], what[128];
    upconv_ref p = { { c->c_in, c->h, c->w, c->c_out, c->k, c->stride, 0, 0 }, c->n, c->bias,
                     NULL, NULL, NULL };
    assert_int_equal(kp_upconv_shape_init(&p.s, err, sizeof err), 0);
    size_t nx = ref_nx(&p), nw = ref_nw(&p), ny = ref_ny(&p);
    float *x = fvec(nx), *W = fvec(nw), *b = fvec(c->c_out), *y = fvec(ny), *r = fvec(ny);
    float *dx = fvec(nx), *dW = fvec(nw), *db = fvec(c->c_out);
    float *ws = fvec(kp_upconv_workspace(&p.s, c->n, threads));
    fill(x, nx, 1), fill(W, nw, 2), fill(b, c->c_out, 3), fill(r, ny, 4);
    p.x = dvec(nx), p.W = dvec(nw), p.b = dvec(c->c_out);
    to_double(x, p.x, nx), to_double(W, p.W, nw), to_double(b, p.b, c->c_out);
    double *yref = dvec(ny);
    upconv_reference(&p, yref);
    kp_upconv_forward(&p.s, c->n, x, W, c->bias ? b : NULL, y, ws, threads);
    snprintf(what, sizeof what, "upconv n=%d %d->%d %dx%d k=%d s=%d bias=%d", c->n, c->c_in,
             c->c_out, c->h, c->w, c->k, c->stride, c->bias);
    assert_near(what, y, yref, ny, 1e-5);
    kp_upconv_backward(&p.s, c->n, x, W, r, dx, dW, c->bias ? db : NULL, ws, threads);
    check_fd(what, upconv_fd, &p, r, ny, p.x, nx, dx);
    check_fd(what, upconv_fd, &p, r, ny, p.W, nw, dW);
    if (c->bias)
        check_fd(what, upconv_fd, &p, r, ny, p.b, (size_t)c->c_out, db);
    free(x), free(W), free(b), free(y), free(r), free(dx), free(dW), free(db), free(ws);
    free(p.x), free(p.W), free(p.b), free(yref);
}

static void test_upconv_backward_matches_finite_differences(void **state)
{
    (void)state;
    openblas_set_num_threads(1);
    static const upconv_case cases[] = {
        { 2, 3, 3, 5, 2, 2, 2, 1 },  { 1, 2, 5, 3, 3, 2, 2, 0 },  /* the UNet case, odd sizes */
        { 2, 2, 3, 4, 3, 3, 2, 1 },  { 1, 3, 5, 5, 2, 3, 2, 0 },  /* overlapping taps */
        { 2, 2, 2, 3, 2, 3, 1, 1 },  { 1, 2, 3, 3, 2, 2, 3, 1 },  /* k > s = 1; gaps, k < s */
        { 1, 1, 1, 1, 1, 2, 2, 1 },  { 19, 2, 3, 3, 2, 2, 2, 1 }, /* one pixel; > 16 chunks */
        { 3, 17, 2, 2, 5, 2, 2, 1 },                              /* more channels than taps */
    };
    for (int simd = 1; simd >= 0; simd--) {
        kp_upsample_set_simd(simd);
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
            check_upconv_case(&cases[i], 2);
    }
    kp_upsample_set_simd(1);
}

/* Runs ConvTranspose2d's reference shapes through the kernel; y gets n=1 outputs. */
static void torch_upconv(int c_in, int h, int w, int c_out, int k, float *y)
{
    char err[KP_ERRLEN];
    kp_upconv_shape s = { c_in, h, w, c_out, k, 2, 0, 0 };
    assert_int_equal(kp_upconv_shape_init(&s, err, sizeof err), 0);
    float x[64], W[64], b[3] = { 0.5f, -0.25f, 0.125f };
    pattern(x, (size_t)c_in * h * w, 7, 11, 5, 4);
    pattern(W, (size_t)c_in * c_out * k * k, 5, 13, 6, 8);
    float *ws = fvec(kp_upconv_workspace(&s, 1, 1));
    kp_upconv_forward(&s, 1, x, W, b, y, ws, 1);
    free(ws);
}

static void test_upconv_forward_matches_torch(void **state)
{
    (void)state;
    static const float k2[3 * 4 * 6] = {
        1.6875, -0.09375, 0.125, 0.4375, 0.625, 1.3125, -0.25, 1.625, 0.75, 0.25, 0.375, 0.25,
        -0.25, -0.21875, 0.25, 0.65625, 0.75, 1.53125, 1.03125, 0.25, 0.65625, 0.25, 0.28125,
        0.25, -0.90625, -1.0625, -0.1875, 0.125, 0.1875, -0.75, 0.8125, -0.96875, -0.375,
        -0.0625, -0.875, -0.1875, -0.46875, 0.78125, -0.09375, -0.09375, 0.28125, -0.96875, 0,
        0.03125, -0.5, -0.09375, -1, -0.21875, 1.28125, -0.5, -0.1875, 0.125, 0.0625, 0.75,
        -0.65625, 1.21875, 0.4375, -0.0625, -0.1875, -0.3125, -0.375, -0.34375, -0.125,
        0.28125, 0.125, 0.90625, 0.90625, 0.125, 0.28125, -0.125, -0.34375, -0.375,
    };
    static const float k3[2 * 5 * 5] = {
        1.625, 0.59375, -0.96875, 0.625, 0.46875, 0.96875, 0.34375, -0.0625, 0.5625, 0.40625,
        1.84375, -0.09375, 0.4375, 0.34375, 1.375, 0.125, 0.4375, 0.125, 0.65625, 1.4375, 0.25,
        0.5625, -0.25, 0.96875, -0.28125, -0.28125, -0.90625, 0.1875, -0.3125, -0.0625,
        -0.53125, 0.875, -0.125, -1.1875, -0.125, -0.90625, 0.40625, -0.75, 0.75, -0.65625,
        -0.25, 0.875, -0.125, -1.1875, -0.40625, -0.125, -0.625, 0.3125, -0.875, -0.09375,
    };
    float y[72];
    for (int simd = 1; simd >= 0; simd--) {
        kp_upsample_set_simd(simd);
        torch_upconv(2, 2, 3, 3, 2, y);         /* 2 x 2x3 -> 3 x 4x6, k = s = 2 */
        assert_near_f("ConvTranspose2d(2, 3, 2, stride=2)", y, k2, 72, 1e-6);
        torch_upconv(2, 2, 2, 2, 3, y);         /* 2 x 2x2 -> 2 x 5x5, k = 3, s = 2 */
        assert_near_f("ConvTranspose2d(2, 2, 3, stride=2)", y, k3, 50, 1e-6);
    }
    kp_upsample_set_simd(1);
}

static void test_upconv_shape_errors_name_the_size(void **state)
{
    (void)state;
    static const struct { kp_upconv_shape s; const char *msg; } cases[] = {
        { { 0, 4, 4, 2, 2, 2, 0, 0 }, "upconv: c_in must be positive, got 0" },
        { { 3, 4, -1, 2, 2, 2, 0, 0 }, "upconv: w_in must be positive, got -1" },
        { { 3, 4, 4, 2, 0, 2, 0, 0 }, "upconv: k must be positive, got 0" },
        { { 3, 4, 4, 2, 2, 0, 0, 0 }, "upconv: stride must be positive, got 0" },
        { { 3, 40000, 40000, 2, 2, 2, 0, 0 },
          "upconv: 3 x 2 channels of 2x2 kernels from a 40000x40000 input to 80000x80000 "
          "are too large" },
        { { 1, 4, 4, 1, 2, 1 << 30, 0, 0 },
          "upconv: 1 x 1 channels of 2x2 kernels from a 4x4 input to 3221225474x3221225474 "
          "are too large" },
    };
    char err[KP_ERRLEN];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kp_upconv_shape s = cases[i].s;
        assert_int_equal(kp_upconv_shape_init(&s, err, sizeof err), KP_ERR_ARG);
        assert_string_equal(err, cases[i].msg);
        assert_int_equal(s.h_out, 0);            /* untouched on failure */
    }
}

static void test_upconv_backward_accumulates_and_skips_what_is_not_wanted(void **state)
{
    (void)state;
    char err[KP_ERRLEN];
    kp_upconv_shape s = { 3, 3, 5, 2, 2, 2, 0, 0 };
    assert_int_equal(kp_upconv_shape_init(&s, err, sizeof err), 0);
    enum { N = 4 };
    size_t nx = (size_t)N * 3 * 15, nw = 3 * 2 * 4, ny = (size_t)N * 2 * 6 * 10;
    float *x = fvec(nx), *W = fvec(nw), *dy = fvec(ny), *dx = fvec(nx), *dx2 = fvec(nx);
    float *dW = fvec(nw), *dW2 = fvec(nw), db[2] = { 0 }, db2[2] = { 0.5f, -1 };
    float *ws = fvec(kp_upconv_workspace(&s, N, 2));
    fill(x, nx, 5), fill(W, nw, 6), fill(dy, ny, 7);
    kp_upconv_backward(&s, N, x, W, dy, dx, dW, db, ws, 2);
    for (size_t i = 0; i < nw; i++)
        dW2[i] = 1.0f;
    kp_upconv_backward(&s, N, x, W, dy, NULL, dW2, db2, ws, 2);   /* no dx */
    for (size_t i = 0; i < nw; i++)
        assert_float_equal(dW2[i], 1.0f + dW[i], 1e-6);
    assert_float_equal(db2[0], 0.5f + db[0], 1e-6);
    assert_float_equal(db2[1], -1.0f + db[1], 1e-6);
    kp_upconv_backward(&s, N, x, W, dy, dx2, NULL, NULL, ws, 2);  /* dx only */
    assert_memory_equal(dx, dx2, nx * sizeof *dx);
    free(x), free(W), free(dy), free(dx), free(dx2), free(dW), free(dW2), free(ws);
}

/* ---- bilinear upsampling ---- */

typedef struct upsample_ctx { int n, c, h, w, f; double *x; } upsample_ctx;

static void upsample_fd(void *p, double *out)
{
    upsample_ctx *u = p;
    upsample_reference(u->n, u->c, u->h, u->w, u->f, u->x, out);
}

typedef struct upsample_case { int n, c, h, w, f; } upsample_case;

/* The kernel's forward and backward against the reference and its finite differences. */
static void check_upsample_case(const upsample_case *cs, uint64_t seed)
{
    upsample_ctx u = { cs->n, cs->c, cs->h, cs->w, cs->f, NULL };
    size_t nx = (size_t)u.n * u.c * u.h * u.w, ny = nx * (size_t)u.f * u.f;
    float *x = fvec(nx), *y = fvec(ny), *r = fvec(ny), *dx = fvec(nx);
    double *yref = dvec(ny);
    u.x = dvec(nx);
    fill(x, nx, 10 + seed), fill(r, ny, 20 + seed);
    to_double(x, u.x, nx);
    upsample_fd(&u, yref);
    kp_upsample_forward(u.n, u.c, u.h, u.w, u.f, x, y, 2);
    char what[96];
    snprintf(what, sizeof what, "upsample n=%d c=%d %dx%d f=%d", u.n, u.c, u.h, u.w, u.f);
    assert_near(what, y, yref, ny, 1e-6);
    for (size_t i = 0; i < nx; i++)
        dx[i] = 99;                               /* overwritten, not added to */
    kp_upsample_backward(u.n, u.c, u.h, u.w, u.f, r, dx, 2);
    check_fd(what, upsample_fd, &u, r, ny, u.x, nx, dx);
    free(x), free(y), free(r), free(dx), free(yref), free(u.x);
}

static void test_upsample_backward_matches_finite_differences(void **state)
{
    (void)state;
    static const upsample_case cases[] = {
        { 2, 2, 3, 5, 2 }, { 1, 3, 1, 1, 2 }, { 1, 1, 4, 3, 3 }, { 2, 1, 2, 2, 1 },
        { 1, 2, 5, 2, 4 }, { 1, 1, 2, 300, 2 },   /* 600 columns: past one weight table */
        { 1, 1, 3, 17, 2 }, { 1, 1, 1, 33, 2 },   /* rows across 16-lane blocks */
        { 1, 1, 1, 2100, 2 },                     /* too wide for the AVX-512 rows */
    };
    for (int simd = 1; simd >= 0; simd--) {
        kp_upsample_set_simd(simd);
        for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++)
            check_upsample_case(&cases[t], t);
    }
    kp_upsample_set_simd(1);
}

static void test_upsample_forward_matches_torch(void **state)
{
    (void)state;
    static const float f2[2 * 6 * 6] = {
        -1.25, -0.8125, 0.0625, 0.25, -0.25, -0.5, -0.625, -0.359375, 0.171875, 0.1875,
        -0.3125, -0.5625, 0.625, 0.546875, 0.390625, 0.0625, -0.4375, -0.6875, 1.1875, 0.9375,
        0.4375, -0.0625, -0.5625, -0.8125, 1.0625, 0.8125, 0.3125, -0.1875, -0.6875, -0.9375,
        1, 0.75, 0.25, -0.25, -0.75, -1, 0.75, 0.5, 0, -0.5, -1, -1.25, 0.6875, 0.4375,
        -0.0625, -0.390625, -0.546875, -0.625, 0.5625, 0.3125, -0.1875, -0.171875, 0.359375,
        0.625, 0.4375, 0.1875, -0.3125, -0.125, 0.75, 1.1875, 0.3125, 0.0625, -0.4375, -0.25,
        0.625, 1.0625, 0.25, 0, -0.5, -0.3125, 0.5625, 1,
    };
    static const float f3[6 * 9] = {
        -1.25, -1.25, -0.666666627, -0.0833332986, 0.49999994, 0.166666627, -0.166666746,
        -0.5, -0.5, -1.25, -1.25, -0.666666567, -0.0833332911, 0.49999994, 0.166666627,
        -0.166666746, -0.5, -0.5, -0.416666567, -0.416666567, -0.138888776, 0.138888925,
        0.416666597, 0.0833332837, -0.250000089, -0.583333313, -0.583333313, 0.416666716,
        0.416666716, 0.388888896, 0.361111104, 0.333333284, -4.84287739e-08, -0.333333433,
        -0.666666687, -0.666666687, 1.25, 1.25, 0.916666567, 0.583333313, 0.249999955,
        -0.0833333731, -0.416666716, -0.75, -0.74999994, 1.25, 1.25, 0.916666627, 0.583333313,
        0.24999994, -0.0833333731, -0.416666746, -0.75, -0.75,
    };
    float x[18], y[72];
    pattern(x, 18, 7, 11, 5, 4);
    for (int simd = 1; simd >= 0; simd--) {
        kp_upsample_set_simd(simd);
        kp_upsample_forward(1, 2, 3, 3, 2, x, y, 1);
        assert_near_f("Upsample(2) of 2 x 3x3", y, f2, 72, 1e-6);
        kp_upsample_forward(1, 1, 2, 3, 3, x, y, 1);
        assert_near_f("Upsample(3) of 1 x 2x3", y, f3, 54, 1e-6);
    }
    kp_upsample_set_simd(1);
}

/* Forward passes, and the transposed conv's backward, give the same bits
 * with and without the AVX-512 loops (upsampling's backward adds in another
 * order: it is checked by finite differences both ways). */
static void test_simd_and_generic_loops_give_the_same_bits(void **state)
{
    (void)state;
    openblas_set_num_threads(1);
    static const upconv_case cases[] = {
        { 3, 5, 7, 19, 4, 2, 2, 1 }, { 2, 3, 1, 1, 2, 2, 2, 1 }, { 2, 4, 3, 40, 3, 2, 2, 0 },
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        const upconv_case *c = &cases[t];
        char err[KP_ERRLEN];
        kp_upconv_shape s = { c->c_in, c->h, c->w, c->c_out, c->k, c->stride, 0, 0 };
        assert_int_equal(kp_upconv_shape_init(&s, err, sizeof err), 0);
        size_t nx = (size_t)c->n * c->c_in * c->h * c->w, nw = (size_t)c->c_in * c->c_out * 4;
        size_t ny = (size_t)c->n * c->c_out * s.h_out * s.w_out, len = ny + nx + nw + c->c_out;
        size_t nu = nx * 4;
        float *x = fvec(nx), *W = fvec(nw), *b = fvec(c->c_out), *dy = fvec(ny);
        float *ws = fvec(kp_upconv_workspace(&s, c->n, 2)), *out[2], *up[2];
        fill(x, nx, 51), fill(W, nw, 52), fill(b, c->c_out, 53), fill(dy, ny, 54);
        for (int simd = 0; simd < 2; simd++) {
            kp_upsample_set_simd(simd);
            float *o = out[simd] = fvec(len);
            up[simd] = fvec(nu);
            kp_upconv_forward(&s, c->n, x, W, c->bias ? b : NULL, o, ws, 2);
            kp_upconv_backward(&s, c->n, x, W, dy, o + ny, o + ny + nx, o + ny + nx + nw, ws, 2);
            kp_upsample_forward(c->n, c->c_in, c->h, c->w, 2, x, up[simd], 2);
        }
        kp_upsample_set_simd(1);
        assert_memory_equal(out[0], out[1], len * sizeof(float));
        assert_memory_equal(up[0], up[1], nu * sizeof(float));
        free(x), free(W), free(b), free(dy), free(ws);
        free(out[0]), free(out[1]), free(up[0]), free(up[1]);
    }
}

/* ---- threads ---- */

/* Every output of both kernels' passes on `threads` threads, concatenated. */
static float *run_all(int threads, const upconv_case *c, size_t *len)
{
    char err[KP_ERRLEN];
    kp_upconv_shape s = { c->c_in, c->h, c->w, c->c_out, c->k, c->stride, 0, 0 };
    assert_int_equal(kp_upconv_shape_init(&s, err, sizeof err), 0);
    size_t nx = (size_t)c->n * c->c_in * c->h * c->w, nw = (size_t)c->c_in * c->c_out * c->k * c->k;
    size_t ny = (size_t)c->n * c->c_out * s.h_out * s.w_out;
    *len = ny + nx + nw + (size_t)c->c_out + 4 * nx + nx;
    float *out = fvec(*len), *o = out;
    float *x = fvec(nx), *W = fvec(nw), *b = fvec(c->c_out), *dy = fvec(ny);
    float *ws = fvec(kp_upconv_workspace(&s, c->n, threads));
    fill(x, nx, 31), fill(W, nw, 32), fill(b, c->c_out, 33), fill(dy, ny, 34);
    kp_upconv_forward(&s, c->n, x, W, b, o, ws, threads), o += ny;
    kp_upconv_backward(&s, c->n, x, W, dy, o, o + nx, o + nx + nw, ws, threads);
    o += nx + nw + c->c_out;
    kp_upsample_forward(c->n, c->c_in, c->h, c->w, 2, x, o, threads);
    kp_upsample_backward(c->n, c->c_in, c->h, c->w, 2, o, o + 4 * nx, threads);
    free(x), free(W), free(b), free(dy), free(ws);
    return out;
}

static void test_kernels_give_the_same_bits_on_1_2_and_3_threads(void **state)
{
    (void)state;
    openblas_set_num_threads(1);
    static const upconv_case cases[] = {
        { 5, 8, 7, 9, 6, 2, 2, 1 }, { 20, 5, 4, 3, 3, 3, 2, 1 }, { 37, 16, 4, 4, 8, 2, 2, 1 },
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        size_t len;
        float *one = run_all(1, &cases[t], &len);
        for (int threads = 2; threads <= 3; threads++) {
            float *more = run_all(threads, &cases[t], &len);
            assert_memory_equal(one, more, len * sizeof *one);
            free(more);
        }
        free(one);
    }
}

/* ---- net nodes ---- */

/* A small UNet over 2 x 4x6 images: enc.0 (conv 3x3, leaky) -> max pool ->
 * enc.1 (1x1) -> up.0 (upconv k2 s2) ++ enc.0's output -> dec.0 (1x1) ->
 * bilinear x2 -> up.1 (upconv k3 s2, no bias): 1 x 17x25 outputs. */
static kp_nn_net *unet(int threads, uint64_t seed)
{
    char err[KP_ERRLEN];
    kp_nn_net *net = NULL;
    assert_int_equal(kp_nn_create(2, 4, 6, &net, err, sizeof err), 0);
    int e0 = kp_nn_conv(net, 0, 4, 3, 1, 1, 1, 1, "enc.0", err, sizeof err);
    int r = kp_nn_leaky(net, e0, 0.1f, err, sizeof err);
    int p = kp_nn_pool(net, r, KP_POOL_MAX, 2, 2, 0, err, sizeof err);
    int e1 = kp_nn_conv(net, p, 6, 1, 1, 0, 1, 1, "enc.1", err, sizeof err);
    int u0 = kp_nn_upconv(net, e1, 3, 2, 2, 1, "up.0", err, sizeof err);
    int cat = kp_nn_concat(net, u0, r, err, sizeof err);
    int d = kp_nn_conv(net, cat, 2, 1, 1, 0, 1, 0, "dec.0", err, sizeof err);
    int up = kp_nn_upsample(net, d, 2, err, sizeof err);
    int u1 = kp_nn_upconv(net, up, 1, 3, 2, 0, "up.1", err, sizeof err);
    if (u1 < 0)
        fail_msg("%s", err);
    int c, h, w;
    kp_nn_shape(net, up, &c, &h, &w);
    assert_true(c == 2 && h == 8 && w == 12);
    assert_int_equal(kp_nn_compile(net, 4, threads, seed, err, sizeof err), 0);
    assert_int_equal(kp_nn_outputs(net), 17 * 25);
    return net;
}

/* sum(out * r) after a training forward. */
static double probe_loss(kp_nn_net *net, const float *x, int n, const float *r)
{
    const float *z = kp_nn_forward(net, x, n, 1, 1);
    double s = 0;
    for (int i = 0; i < n * kp_nn_outputs(net); i++)
        s += (double)z[i] * r[i];
    return s;
}

static void test_nn_unet_gradients_match_finite_differences(void **state)
{
    (void)state;
    openblas_set_num_threads(1);
    kp_nn_net *net = unet(2, 7);
    enum { N = 3, OUT = 17 * 25 };
    float *x = fvec((size_t)N * 48), *r = fvec((size_t)N * OUT);
    fill(x, (size_t)N * 48, 41), fill(r, (size_t)N * OUT, 42);
    size_t np;
    float *w = kp_nn_params(net, &np);
    probe_loss(net, x, N, r);
    kp_nn_backward(net, N, r);
    float *g = fvec(np);
    memcpy(g, kp_nn_grads(net), np * sizeof *g);
    double center = probe_loss(net, x, N, r);
    int bad = 0, kinks = 0;
    for (size_t i = 0; i < np; i++) {
        float keep = w[i];
        const float h = 1e-3f;
        w[i] = keep + h;
        double up = probe_loss(net, x, N, r);
        w[i] = keep - h;
        double down = probe_loss(net, x, N, r);
        w[i] = keep;
        double fd = (up - down) / (2.0 * h), right = (up - center) / h, left = (center - down) / h;
        if (fabs(right - left) > 2e-2 * fmax(1.0, fabs(fd))) {
            kinks++;     /* a leaky ReLU or a max switched inside [-h, h] */
            continue;
        }
        if (fabs(fd - g[i]) > 2e-2 * fmax(1.0, fabs(fd))) {
            print_message("param %zu: backward %g, finite difference %g\n", i, g[i], fd);
            bad++;
        }
    }
    assert_true(kinks <= (int)np / 20);
    assert_int_equal(bad, 0);
    free(g), free(x), free(r);
    kp_nn_free(net);
}

static void test_nn_unet_same_bits_for_any_thread_count(void **state)
{
    (void)state;
    openblas_set_num_threads(1);
    enum { N = 4, OUT = 17 * 25 };
    float *x = fvec((size_t)N * 48), *r = fvec((size_t)N * OUT), *out[3], *grads[3];
    fill(x, (size_t)N * 48, 43), fill(r, (size_t)N * OUT, 44);
    size_t np = 0;
    for (int t = 0; t < 3; t++) {
        kp_nn_net *net = unet(t + 1, 5);
        kp_nn_params(net, &np);
        out[t] = fvec((size_t)N * OUT), grads[t] = fvec(np);
        memcpy(out[t], kp_nn_forward(net, x, N, 1, 5), (size_t)N * OUT * sizeof(float));
        kp_nn_backward(net, N, r);
        memcpy(grads[t], kp_nn_grads(net), np * sizeof(float));
        kp_nn_free(net);
    }
    for (int t = 1; t < 3; t++) {
        assert_memory_equal(out[0], out[t], (size_t)N * OUT * sizeof(float));
        assert_memory_equal(grads[0], grads[t], np * sizeof(float));
    }
    for (int t = 0; t < 3; t++)
        free(out[t]), free(grads[t]);
    free(x), free(r);
}

/* Saves net to DIR/name; returns the heap path. */
static char *save_net(const kp_nn_net *net, const char *dir, const char *name)
{
    char err[KP_ERRLEN];
    kp_stw *w = kp_stw_create();
    assert_int_equal(kp_nn_save(net, w, err, sizeof err), 0);
    char *path = kp_test_join(dir, name);
    assert_int_equal(kp_stw_write(w, path, err, sizeof err), 0);
    kp_stw_free(w);
    return path;
}

static void test_nn_upconv_saves_torch_names_and_loads_back(void **state)
{
    (void)state;
    char err[KP_ERRLEN];
    char *dir = kp_test_tmpdir();
    kp_nn_net *a = unet(1, 1), *b = unet(1, 2);
    char *path = save_net(a, dir, "unet.safetensors");
    kp_st *st = NULL;
    assert_int_equal(kp_st_open(path, &st, err, sizeof err), 0);
    static const struct { const char *name; int ndim; int64_t shape[4]; } want[] = {
        { "up.0.weight", 4, { 6, 3, 2, 2 } }, { "up.0.bias", 1, { 3 } },
        { "up.1.weight", 4, { 2, 1, 3, 3 } }, { "enc.0.weight", 4, { 4, 2, 3, 3 } },
        { "dec.0.weight", 4, { 2, 7, 1, 1 } },
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!kp_st_expect(st, want[i].name, KP_F32, want[i].ndim, want[i].shape, err, sizeof err))
            fail_msg("%s", err);
    assert_null(kp_st_find(st, "up.1.bias"));
    assert_int_equal(kp_st_count(st), 8);
    size_t na, nb;
    float *pa = kp_nn_params(a, &na), *pb = kp_nn_params(b, &nb);
    assert_int_equal(na, nb);
    assert_true(memcmp(pa, pb, na * sizeof *pa) != 0);   /* different seeds */
    assert_int_equal(kp_nn_load(b, st, NULL, err, sizeof err), 0);
    assert_memory_equal(pa, pb, na * sizeof *pa);
    kp_st_close(st);
    kp_nn_free(a), kp_nn_free(b);
    free(path), free(dir);
}

static void test_nn_upconv_init_uses_torch_fan_in_and_decays_weights(void **state)
{
    (void)state;
    char err[KP_ERRLEN];
    /* fan_in = weight.size(1) k k = 2 * 4 = 8, not c_in k k = 256 */
    static const struct { kp_nn_init init; double wbound, bbound; } cases[] = {
        { KP_NN_INIT_TORCH, 0.35355339, 0.35355339 }, { KP_NN_INIT_HE, 0.8660254, 0 },
    };
    for (size_t t = 0; t < 2; t++) {
        kp_nn_net *net = NULL;
        assert_int_equal(kp_nn_create(64, 2, 2, &net, err, sizeof err), 0);
        assert_true(kp_nn_upconv(net, 0, 2, 2, 2, 1, "up", err, sizeof err) > 0);
        kp_nn_set_init(net, cases[t].init);
        assert_int_equal(kp_nn_compile(net, 1, 1, 3, err, sizeof err), 0);
        size_t np;
        const float *w = kp_nn_params(net, &np);
        const uint8_t *decay = kp_nn_decay_mask(net);
        assert_int_equal(np, 512 + 2);
        double wmax = 0, bmax = 0;
        for (size_t i = 0; i < 512; i++) {
            wmax = fmax(wmax, fabs(w[i]));
            assert_int_equal(decay[i], 1);
        }
        for (size_t i = 512; i < np; i++) {
            bmax = fmax(bmax, fabs(w[i]));
            assert_int_equal(decay[i], 0);
        }
        assert_true(wmax <= cases[t].wbound && wmax > 0.9 * cases[t].wbound);
        assert_true(bmax <= cases[t].bbound);
        kp_nn_free(net);
    }
}

static void test_nn_upsample_rejects_a_bad_factor(void **state)
{
    (void)state;
    char err[KP_ERRLEN];
    kp_nn_net *net = NULL;
    assert_int_equal(kp_nn_create(1, 4, 4, &net, err, sizeof err), 0);
    assert_int_equal(kp_nn_upsample(net, 0, 0, err, sizeof err), KP_ERR_ARG);
    assert_string_equal(err, "upsampling factor 0 is not positive");
    assert_int_equal(kp_nn_upsample(net, 0, 40000, err, sizeof err), KP_ERR_ARG);
    assert_string_equal(err, "upsampling 1 x 4 x 4 by 40000 is too large");
    kp_nn_free(net);
}

/* ---- loading by prefix map, masks by prefix ---- */

/* The unet's four encoder tensors written under file names names[0..3]
 * (for enc.0.weight, enc.0.bias, enc.1.weight, enc.1.bias) with values
 * 100 + tensor + index / 1000; shape0: enc.0.weight's shape. */
static char *encoder_file(const char *dir, const char *const *names, const int64_t *shape0)
{
    char err[KP_ERRLEN];
    static const int64_t shapes[4][4] = { { 4, 2, 3, 3 }, { 4 }, { 6, 4, 1, 1 }, { 6 } };
    static const int ndim[4] = { 4, 1, 4, 1 };
    kp_stw *w = kp_stw_create();
    float v[72];
    for (int t = 0; t < 4; t++) {
        for (int i = 0; i < 72; i++)
            v[i] = 100.0f * (float)(t + 1) + (float)i / 1000.0f;
        if (names[t])
            assert_int_equal(kp_stw_add(w, names[t], KP_F32, ndim[t],
                                        t == 0 && shape0 ? shape0 : shapes[t], v), 0);
    }
    assert_int_equal(kp_stw_add(w, "classifier.weight", KP_F32, 1, shapes[1], v), 0);
    char *path = kp_test_join(dir, "enc.safetensors");
    assert_int_equal(kp_stw_write(w, path, err, sizeof err), 0);
    kp_stw_free(w);
    return path;
}

static void test_nn_load_mapped_renames_prefixes(void **state)
{
    (void)state;
    static const struct { const char *map[2]; int n_map; const char *names[4]; } cases[] = {
        { { "enc=features" }, 1,
          { "features.0.weight", "features.0.bias", "features.1.weight", "features.1.bias" } },
        { { "enc=" }, 1, { "0.weight", "0.bias", "1.weight", "1.bias" } },
        { { "enc=features", "enc.0=stem.conv" }, 2,   /* the longest prefix wins */
          { "stem.conv.weight", "stem.conv.bias", "features.1.weight", "features.1.bias" } },
        { { "enc.0=a", "enc.1.weight=b.w" }, 2, { "a.weight", "a.bias", "b.w", NULL } },
    };
    char err[KP_ERRLEN];
    char *dir = kp_test_tmpdir();
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char *path = encoder_file(dir, cases[c].names, NULL);
        kp_st *st = NULL;
        assert_int_equal(kp_st_open(path, &st, err, sizeof err), 0);
        kp_nn_net *net = unet(1, 1);
        size_t np;
        float *w = kp_nn_params(net, &np), *before = fvec(np);
        memcpy(before, w, np * sizeof *w);
        int loaded = -1;
        if (kp_nn_load_mapped(net, st, cases[c].map, cases[c].n_map, &loaded, err,
                              sizeof err) < 0)
            fail_msg("case %zu: %s", c, err);
        int want = cases[c].names[3] ? 4 : 3;
        assert_int_equal(loaded, want);
        /* enc.0.weight (72), enc.0.bias (4), enc.1.weight (24), enc.1.bias (6), in order */
        static const size_t off[4] = { 0, 72, 76, 100 }, len[4] = { 72, 4, 24, 6 };
        for (int t = 0; t < 4; t++)
            for (size_t i = 0; i < len[t]; i++) {
                float v = t < want ? 100.0f * (float)(t + 1) + (float)i / 1000.0f
                                   : before[off[t] + i];
                assert_float_equal(w[off[t] + i], v, 0);
            }
        assert_memory_equal(w + 106, before + 106, (np - 106) * sizeof *w);  /* up, dec */
        kp_nn_free(net);
        kp_st_close(st);
        free(before), free(path);
    }
    free(dir);
}

static void test_nn_load_mapped_errors_name_both_tensors_and_leave_the_net(void **state)
{
    (void)state;
    static const char *const full[4] = { "features.0.weight", "features.0.bias",
                                         "features.1.weight", "features.1.bias" };
    static const char *const no_bias[4] = { "features.0.weight", "features.0.bias",
                                            "features.1.weight", NULL };
    static const int64_t wrong[4] = { 4, 2, 1, 1 };
    static const struct {
        const char *const *names; const int64_t *shape0; const char *map[2]; int n_map;
        int status; const char *msg;    /* %s: the file's path */
    } cases[] = {
        { no_bias, NULL, { "enc=features" }, 1, KP_ERR_NOTFOUND,
          "%s: no tensor 'features.1.bias' for the network's 'enc.1.bias'" },
        { full, wrong, { "enc=features" }, 1, KP_ERR_MISMATCH,
          "%s: tensor 'features.0.weight' has shape [4, 2, 1, 1], expected [4, 2, 3, 3] "
          "for the network's 'enc.0.weight'" },
        { full, NULL, { "enc=features", "encoder" }, 2, KP_ERR_ARG,
          "tensor map entry 'encoder' is not NETPREFIX=FILEPREFIX" },
        { full, NULL, { "enc=features", "enc.10=features.10" }, 2, KP_ERR_NOTFOUND,
          "tensor map entry 'enc.10=features.10' matches no tensor of the network" },
    };
    char err[KP_ERRLEN], want[KP_ERRLEN];
    char *dir = kp_test_tmpdir();
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char *path = encoder_file(dir, cases[c].names, cases[c].shape0);
        kp_st *st = NULL;
        assert_int_equal(kp_st_open(path, &st, err, sizeof err), 0);
        kp_nn_net *net = unet(1, 1);
        size_t np;
        float *w = kp_nn_params(net, &np), *before = fvec(np);
        memcpy(before, w, np * sizeof *w);
        int loaded = -7;
        assert_int_equal(kp_nn_load_mapped(net, st, cases[c].map, cases[c].n_map, &loaded, err,
                                           sizeof err), cases[c].status);
        snprintf(want, sizeof want, cases[c].msg, path);
        assert_string_equal(err, want);
        assert_int_equal(loaded, -7);
        assert_memory_equal(w, before, np * sizeof *w);   /* nothing copied */
        kp_nn_free(net);
        kp_st_close(st);
        free(before), free(path);
    }
    free(dir);
}

static void test_nn_load_mapped_reads_batch_norm_statistics(void **state)
{
    (void)state;
    char err[KP_ERRLEN];
    char *dir = kp_test_tmpdir();
    kp_stw *w = kp_stw_create();
    static const int64_t wshape[4] = { 2, 1, 1, 1 }, cshape[1] = { 2 };
    static const float wv[2] = { 3, 4 }, g[2] = { 5, 6 }, b[2] = { 7, 8 }, m[2] = { 9, 10 },
                       v[2] = { 11, 12 };
    const int64_t batches = 42;
    assert_int_equal(kp_stw_add(w, "stem.0.weight", KP_F32, 4, wshape, wv), 0);
    assert_int_equal(kp_stw_add(w, "stem.1.weight", KP_F32, 1, cshape, g), 0);
    assert_int_equal(kp_stw_add(w, "stem.1.bias", KP_F32, 1, cshape, b), 0);
    assert_int_equal(kp_stw_add(w, "stem.1.running_mean", KP_F32, 1, cshape, m), 0);
    assert_int_equal(kp_stw_add(w, "stem.1.running_var", KP_F32, 1, cshape, v), 0);
    assert_int_equal(kp_stw_add(w, "stem.1.num_batches_tracked", KP_I64, 0, NULL, &batches), 0);
    char *path = kp_test_join(dir, "stem.safetensors");
    assert_int_equal(kp_stw_write(w, path, err, sizeof err), 0);
    kp_stw_free(w);
    kp_nn_net *net = NULL;
    assert_int_equal(kp_nn_create(1, 3, 3, &net, err, sizeof err), 0);
    int c = kp_nn_conv(net, 0, 2, 1, 1, 0, 1, 0, "enc.0", err, sizeof err);
    assert_true(kp_nn_batchnorm(net, c, "enc.1", err, sizeof err) > 0);
    assert_int_equal(kp_nn_compile(net, 1, 1, 1, err, sizeof err), 0);
    kp_st *st = NULL;
    assert_int_equal(kp_st_open(path, &st, err, sizeof err), 0);
    const char *map[] = { "enc=stem" };
    int loaded = 0;
    assert_int_equal(kp_nn_load_mapped(net, st, map, 1, &loaded, err, sizeof err), 0);
    assert_int_equal(loaded, 5);
    float snap[10];
    assert_int_equal(kp_nn_state_size(net), 10);
    kp_nn_state_get(net, snap);           /* params (w, gamma, beta), then mean, var */
    static const float want[10] = { 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };
    assert_memory_equal(snap, want, sizeof want);
    kp_stw *out = kp_stw_create();
    assert_int_equal(kp_nn_save(net, out, err, sizeof err), 0);
    char *saved = kp_test_join(dir, "saved.safetensors");
    assert_int_equal(kp_stw_write(out, saved, err, sizeof err), 0);
    kp_st *back = NULL;
    assert_int_equal(kp_st_open(saved, &back, err, sizeof err), 0);
    const kp_tensor *t = kp_st_find(back, "enc.1.num_batches_tracked");
    assert_non_null(t);
    assert_int_equal(*(const int64_t *)t->data, 42);
    kp_st_close(back), kp_st_close(st), kp_stw_free(out), kp_nn_free(net);
    free(saved), free(path), free(dir);
}

static void test_nn_prefix_mask_matches_whole_name_components(void **state)
{
    (void)state;
    char err[KP_ERRLEN];
    kp_nn_net *net = NULL;
    assert_int_equal(kp_nn_create(1, 4, 4, &net, err, sizeof err), 0);
    int a = kp_nn_conv(net, 0, 2, 1, 1, 0, 1, 1, "enc.1", err, sizeof err);      /* 2 + 2 */
    int b = kp_nn_conv(net, a, 2, 1, 1, 0, 1, 1, "enc.10", err, sizeof err);     /* 4 + 2 */
    int c = kp_nn_batchnorm(net, b, "enc.1.bn", err, sizeof err);                /* 2 + 2 */
    int d = kp_nn_conv(net, c, 2, 1, 1, 0, 1, 0, "enc.1.0", err, sizeof err);    /* 4 */
    assert_true(kp_nn_upconv(net, d, 1, 2, 2, 1, "up", err, sizeof err) > 0);    /* 8 + 1 */
    assert_int_equal(kp_nn_compile(net, 1, 1, 1, err, sizeof err), 0);
    size_t np;
    kp_nn_params(net, &np);
    assert_int_equal(np, 27);
    static const struct { const char *prefix; size_t count; const char *mask; } cases[] = {
        { "enc.1", 12, "1111" "000000" "1111" "1111" "000000000" },
        { "enc", 18, "1111" "111111" "1111" "1111" "000000000" },
        { "enc.1.0.weight", 4, "0000" "000000" "0000" "1111" "000000000" },
        { "enc.1.0.w", 0, "0000" "000000" "0000" "0000" "000000000" },
        { "up", 9, "0000" "000000" "0000" "0000" "111111111" },
        { "", 27, "1111" "111111" "1111" "1111" "111111111" },
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        uint8_t mask[27];
        memset(mask, 0, sizeof mask);
        assert_int_equal(kp_nn_prefix_mask(net, cases[t].prefix, mask), cases[t].count);
        for (size_t i = 0; i < 27; i++)
            if (mask[i] != (uint8_t)(cases[t].mask[i] - '0'))
                fail_msg("prefix '%s': mask[%zu] = %d", cases[t].prefix, i, mask[i]);
    }
    uint8_t mask[27];
    memset(mask, 7, sizeof mask);                      /* others untouched */
    assert_int_equal(kp_nn_prefix_mask(net, "enc.10", mask), 6);
    for (size_t i = 0; i < 27; i++)
        assert_int_equal(mask[i], i >= 4 && i < 10 ? 1 : 7);
    kp_nn_free(net);
}

KP_TEST_GROUP(nn_upsample)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_upconv_backward_matches_finite_differences),
        cmocka_unit_test(test_upconv_forward_matches_torch),
        cmocka_unit_test(test_upconv_shape_errors_name_the_size),
        cmocka_unit_test(test_upconv_backward_accumulates_and_skips_what_is_not_wanted),
        cmocka_unit_test(test_upsample_backward_matches_finite_differences),
        cmocka_unit_test(test_upsample_forward_matches_torch),
        cmocka_unit_test(test_simd_and_generic_loops_give_the_same_bits),
        cmocka_unit_test(test_kernels_give_the_same_bits_on_1_2_and_3_threads),
        cmocka_unit_test(test_nn_unet_gradients_match_finite_differences),
        cmocka_unit_test(test_nn_unet_same_bits_for_any_thread_count),
        cmocka_unit_test(test_nn_upconv_saves_torch_names_and_loads_back),
        cmocka_unit_test(test_nn_upconv_init_uses_torch_fan_in_and_decays_weights),
        cmocka_unit_test(test_nn_upsample_rejects_a_bad_factor),
        cmocka_unit_test(test_nn_load_mapped_renames_prefixes),
        cmocka_unit_test(test_nn_load_mapped_errors_name_both_tensors_and_leave_the_net),
        cmocka_unit_test(test_nn_load_mapped_reads_batch_norm_statistics),
        cmocka_unit_test(test_nn_prefix_mask_matches_whole_name_components),
    };
    return KP_RUN(nn_upsample, t);
}

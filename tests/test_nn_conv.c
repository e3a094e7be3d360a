/* test_nn_conv.c - conv2d, pooling and global average pooling kernels
 * (models/nn/conv.c, models/nn/pool.c).
 *
 * Forward passes are checked against direct loops in double on tables of
 * shapes, backward passes against central finite differences of the scalar
 * loss sum(y * r) for a random r (so dL/dy = r), and every pass for the same
 * bytes on 1, 2 and 3 threads.  Convs run both through the direct AVX-512
 * kernels (when the CPU has them) and through im2col + sgemm, pooling with
 * and without its AVX-512 loops (test hooks).  Workspaces are allocated at
 * exactly kp_conv_workspace's size, full of NaN, so that ASan catches any
 * overrun and a read of something not written shows.
 */
#include "kp_test.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/err.h"
#include "../lib/rng.h"
#include "../models/nn/kernels.h"

void openblas_set_num_threads(int n);
/* Test hook in models/nn/conv.c: 0 sends every conv through im2col + sgemm. */
void kp_conv_set_direct(int on);
/* Test hook in models/nn/pool.c: 0 keeps pooling off its AVX-512 loops. */
void kp_pool_set_simd(int on);

/* ---- fixtures ---- */

/* A conv case: geometry, batch, bias or not. */
typedef struct conv_case {
    int c_in, h, w, c_out, k, stride, pad, dil, n, bias;
} conv_case;

static kp_conv_shape conv_shape_of(const conv_case *c)
{
    kp_conv_shape s = { c->c_in, c->h, c->w, c->c_out, c->k, c->stride, c->pad, c->dil, 0, 0 };
    char err[KP_ERRLEN];
    assert_int_equal(kp_conv_shape_init(&s, err, sizeof err), 0);
    return s;
}

/* |got - want| <= tol (1 + |want|), false for NaN. */
static int close_to(double got, double want, double tol)
{
    return fabs(got - want) <= tol * (1 + fabs(want));
}

static float *rand_floats(kp_rng *r, size_t n)
{
    float *v = malloc((n ? n : 1) * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++)
        v[i] = (float)(2 * kp_rng_uniform(r) - 1);
    return v;
}

static float *zero_floats(size_t n)
{
    float *v = calloc(n ? n : 1, sizeof *v);
    assert_non_null(v);
    return v;
}

static size_t x_size(const kp_conv_shape *s, int n)
{
    return (size_t)n * s->c_in * s->h_in * s->w_in;
}

static size_t y_size(const kp_conv_shape *s, int n)
{
    return (size_t)n * s->c_out * s->h_out * s->w_out;
}

static size_t w_size(const kp_conv_shape *s)
{
    return (size_t)s->c_out * s->c_in * s->k * s->k;
}

/* A workspace of exactly the size asked for, full of NaN: the kernels must
 * not read what they have not written. */
static float *conv_ws(const kp_conv_shape *s, int n, int threads)
{
    size_t len = kp_conv_workspace(s, n, threads);
    float *ws = malloc((len ? len : 1) * sizeof *ws);
    assert_non_null(ws);
    for (size_t i = 0; i < len; i++)
        ws[i] = NAN;
    return ws;
}

/* The direct convolution, in double. */
static void naive_conv(const kp_conv_shape *s, int n, const float *x, const float *W,
                       const float *b, double *y)
{
    for (int i = 0; i < n; i++)
        for (int o = 0; o < s->c_out; o++)
            for (int oy = 0; oy < s->h_out; oy++)
                for (int ox = 0; ox < s->w_out; ox++) {
                    double acc = b ? b[o] : 0;
                    for (int c = 0; c < s->c_in; c++)
                        for (int ky = 0; ky < s->k; ky++)
                            for (int kx = 0; kx < s->k; kx++) {
                                int iy = oy * s->stride - s->pad + ky * s->dilation;
                                int ix = ox * s->stride - s->pad + kx * s->dilation;
                                if (iy < 0 || iy >= s->h_in || ix < 0 || ix >= s->w_in)
                                    continue;
                                acc += (double)x[(((size_t)i * s->c_in + c) * s->h_in + iy) * s->w_in + ix] *
                                       W[(((size_t)o * s->c_in + c) * s->k + ky) * s->k + kx];
                            }
                    y[(((size_t)i * s->c_out + o) * s->h_out + oy) * s->w_out + ox] = acc;
                }
}

/* sum(y * r) in double, y from kp_conv_forward. */
static double conv_loss(const kp_conv_shape *s, int n, const float *x, const float *W,
                        const float *b, const float *r, float *y, float *ws)
{
    kp_conv_forward(s, n, x, W, b, y, ws, 1);
    double l = 0;
    for (size_t i = 0; i < y_size(s, n); i++)
        l += (double)y[i] * r[i];
    return l;
}

/* ---- conv2d shapes ---- */

static void test_conv_shape_init_computes_output_size(void **state)
{
    (void)state;
    const struct { int in, k, stride, pad, dil, out; } t[] = {
        { 28, 3, 1, 1, 1, 28 }, { 28, 3, 1, 0, 1, 26 }, { 7, 3, 2, 1, 1, 4 },
        { 10, 5, 1, 2, 2, 6 },  { 1, 1, 1, 0, 1, 1 },   { 8, 1, 3, 0, 1, 3 },
        { 5, 3, 2, 2, 1, 4 },
    };
    char err[KP_ERRLEN];
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        kp_conv_shape s = { 2, t[i].in, t[i].in + 1, 3, t[i].k, t[i].stride, t[i].pad, t[i].dil,
                            0, 0 };
        assert_int_equal(kp_conv_shape_init(&s, err, sizeof err), 0);
        assert_int_equal(s.h_out, t[i].out);
        assert_int_equal(s.w_out, (t[i].in + 1 + 2 * t[i].pad - t[i].dil * (t[i].k - 1) - 1) /
                                      t[i].stride + 1);
    }
}

static void test_conv_shape_init_rejects_bad_sizes_with_message(void **state)
{
    (void)state;
    const struct { kp_conv_shape s; const char *msg; } t[] = {
        { { 0, 8, 8, 4, 3, 1, 1, 1, -7, -7 }, "conv2d: c_in must be positive, got 0" },
        { { 1, -2, 8, 4, 3, 1, 1, 1, -7, -7 }, "conv2d: h_in must be positive, got -2" },
        { { 1, 8, 0, 4, 3, 1, 1, 1, -7, -7 }, "conv2d: w_in must be positive, got 0" },
        { { 1, 8, 8, 0, 3, 1, 1, 1, -7, -7 }, "conv2d: c_out must be positive, got 0" },
        { { 1, 8, 8, 4, 0, 1, 1, 1, -7, -7 }, "conv2d: k must be positive, got 0" },
        { { 1, 8, 8, 4, 3, 0, 1, 1, -7, -7 }, "conv2d: stride must be positive, got 0" },
        { { 1, 8, 8, 4, 3, 1, -1, 1, -7, -7 }, "conv2d: pad must be non-negative, got -1" },
        { { 1, 8, 8, 4, 3, 1, 1, 0, -7, -7 }, "conv2d: dilation must be positive, got 0" },
        { { 1, 2, 2, 4, 5, 1, 1, 1, -7, -7 },
          "conv2d: the 5-pixel kernel span does not fit the 2x2 input padded by 1: "
          "the output would be empty" },
        { { 1, 9, 6, 4, 3, 1, 0, 3, -7, -7 },
          "conv2d: the 7-pixel kernel span does not fit the 9x6 input padded by 0: "
          "the output would be empty" },
        { { 1, 50000, 50000, 4, 3, 1, 1, 1, -7, -7 },
          "conv2d: 4 x 1 channels of 3x3 kernels on a 50002x50002 padded input are too large" },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        kp_conv_shape s = t[i].s;
        char err[KP_ERRLEN] = "";
        assert_int_equal(kp_conv_shape_init(&s, err, sizeof err), KP_ERR_ARG);
        assert_string_equal(err, t[i].msg);
        assert_int_equal(s.h_out, -7);
        assert_int_equal(s.w_out, -7);
    }
}

/* ---- conv2d forward ---- */

static const conv_case fwd_cases[] = {
    /* c_in h  w  c_out k stride pad dil n bias */
    { 1, 7, 9, 4, 3, 1, 1, 1, 1, 1 },    /* c_in 1, same padding */
    { 3, 9, 7, 5, 3, 2, 1, 1, 5, 1 },    /* stride 2 */
    { 3, 11, 10, 2, 5, 1, 2, 1, 5, 0 },  /* k 5, pad 2, no bias */
    { 1, 13, 11, 3, 5, 2, 2, 2, 5, 1 },  /* stride 2, dilation 2 */
    { 3, 8, 8, 4, 1, 1, 0, 1, 5, 1 },    /* 1x1: no im2col */
    { 3, 9, 9, 4, 1, 2, 0, 1, 1, 1 },    /* 1x1 stride 2 */
    { 3, 10, 9, 3, 3, 1, 0, 2, 5, 1 },   /* dilation 2, pad 0 */
    { 1, 5, 6, 2, 3, 2, 2, 1, 1, 1 },    /* pad 2 on a 3x3 */
    { 3, 12, 12, 8, 3, 1, 2, 2, 5, 1 },  /* dilation 2, same size */
    { 2, 6, 5, 3, 1, 1, 1, 1, 5, 1 },    /* 1x1 with padding */
    { 1, 4, 4, 2, 5, 1, 3, 1, 2, 0 },    /* pad larger than k / 2 */
    { 3, 3, 17, 2, 3, 3, 0, 1, 5, 1 },   /* stride 3, wide */
    { 5, 6, 7, 12, 3, 1, 1, 1, 2, 1 },   /* same size: 42 pixels, 12 channels */
    { 2, 5, 5, 9, 5, 1, 2, 1, 3, 1 },    /* same size, k 5: 25 pixels */
    { 1, 9, 8, 3, 7, 1, 3, 1, 1, 1 },    /* same size, k 7 */
};

static void test_conv_forward_matches_direct_convolution_on_shape_table(void **state)
{
    (void)state;
    kp_rng r;
    kp_rng_seed(&r, 11);
    for (size_t m = 0; m < 2 * sizeof fwd_cases / sizeof fwd_cases[0]; m++) {
        size_t t = m / 2;   /* each case direct, then by im2col + sgemm */
        kp_conv_set_direct(m % 2 == 0);
        const conv_case *c = &fwd_cases[t];
        kp_conv_shape s = conv_shape_of(c);
        float *x = rand_floats(&r, x_size(&s, c->n)), *W = rand_floats(&r, w_size(&s));
        float *b = rand_floats(&r, (size_t)s.c_out), *y = zero_floats(y_size(&s, c->n));
        float *ws = conv_ws(&s, c->n, 2);
        double *ref = malloc(y_size(&s, c->n) * sizeof *ref);
        assert_non_null(ref);
        kp_conv_forward(&s, c->n, x, W, c->bias ? b : NULL, y, ws, 2);
        naive_conv(&s, c->n, x, W, c->bias ? b : NULL, ref);
        for (size_t i = 0; i < y_size(&s, c->n); i++)
            if (!close_to(y[i], ref[i], 1e-4))
                fail_msg("case %zu mode %zu: y[%zu] = %.7g, direct %.7g", t, m % 2, i, y[i],
                         ref[i]);
        free(x), free(W), free(b), free(y), free(ws), free(ref);
    }
    kp_conv_set_direct(1);
}

/* ---- conv2d backward ---- */

static const conv_case bwd_cases[] = {
    { 2, 5, 6, 3, 3, 1, 1, 1, 2, 1 },    /* stride 1: dx as a conv of dy */
    { 2, 7, 6, 3, 3, 2, 1, 1, 2, 1 },    /* stride 2: col2im */
    { 1, 7, 7, 2, 3, 1, 2, 2, 2, 1 },    /* dilation 2 */
    { 3, 5, 4, 2, 1, 1, 0, 1, 3, 1 },    /* 1x1: no im2col either way */
    { 2, 4, 5, 2, 1, 1, 1, 1, 2, 1 },    /* 1x1 pad 1: negative pad in dx */
    { 1, 9, 8, 2, 5, 3, 2, 1, 2, 1 },    /* k 5, stride 3 */
    { 2, 6, 6, 2, 3, 1, 0, 1, 1, 1 },    /* valid conv */
    { 3, 6, 5, 10, 3, 1, 1, 1, 2, 1 },   /* same size, channels not a multiple of 8 */
    { 9, 4, 9, 2, 5, 1, 2, 1, 1, 1 },    /* same size, k 5, 9 input channels */
    { 8, 5, 6, 3, 3, 1, 1, 1, 2, 1 },    /* same 3x3, 8 input channels: direct dW */
    { 17, 4, 5, 4, 3, 1, 2, 2, 1, 1 },   /* direct dW, dilation 2, 17 input channels */
    { 8, 4, 4, 1, 3, 1, 1, 1, 2, 1 },    /* direct dW, one output channel */
};

/* Checks analytic gradients g[0..count) of parameter p against central
 * differences of the loss, perturbing p in place. */
static void check_fd(const char *what, size_t t, float *p, size_t count, const double *g,
                     const kp_conv_shape *s, int n, float *x, float *W, float *b,
                     const float *r, float *y, float *ws)
{
    const float eps = 1e-2f;
    for (size_t i = 0; i < count; i++) {
        float keep = p[i];
        p[i] = keep + eps;
        double lp = conv_loss(s, n, x, W, b, r, y, ws);
        p[i] = keep - eps;
        double lm = conv_loss(s, n, x, W, b, r, y, ws);
        p[i] = keep;
        double fd = (lp - lm) / (2.0 * eps);
        if (!close_to(g[i], fd, 2e-3))
            fail_msg("case %zu: d%s[%zu] = %.7g, finite difference %.7g", t, what, i, g[i], fd);
    }
}

static double *to_double(const float *v, size_t n)
{
    double *d = malloc((n ? n : 1) * sizeof *d);
    assert_non_null(d);
    for (size_t i = 0; i < n; i++)
        d[i] = v[i];
    return d;
}

static void test_conv_backward_matches_finite_differences(void **state)
{
    (void)state;
    kp_rng rng;
    kp_rng_seed(&rng, 12);
    for (size_t m = 0; m < 2 * sizeof bwd_cases / sizeof bwd_cases[0]; m++) {
        size_t t = m / 2;   /* each case direct, then by im2col + sgemm */
        kp_conv_set_direct(m % 2 == 0);
        const conv_case *c = &bwd_cases[t];
        kp_conv_shape s = conv_shape_of(c);
        size_t nx = x_size(&s, c->n), nw = w_size(&s), ny = y_size(&s, c->n);
        float *x = rand_floats(&rng, nx), *W = rand_floats(&rng, nw);
        float *b = rand_floats(&rng, (size_t)s.c_out), *r = rand_floats(&rng, ny);
        float *y = zero_floats(ny), *dx = zero_floats(nx), *dW = zero_floats(nw);
        float *db = zero_floats((size_t)s.c_out), *ws = conv_ws(&s, c->n, 2);
        kp_conv_backward(&s, c->n, x, W, r, dx, dW, db, ws, 2);
        double *gx = to_double(dx, nx), *gw = to_double(dW, nw);
        double *gb = to_double(db, (size_t)s.c_out);
        check_fd("x", t, x, nx, gx, &s, c->n, x, W, b, r, y, ws);
        check_fd("W", t, W, nw, gw, &s, c->n, x, W, b, r, y, ws);
        check_fd("b", t, b, (size_t)s.c_out, gb, &s, c->n, x, W, b, r, y, ws);
        free(x), free(W), free(b), free(r), free(y), free(dx), free(dW), free(db), free(ws);
        free(gx), free(gw), free(gb);
    }
    kp_conv_set_direct(1);
}

/* dW and db summed directly, in double, over every image and output pixel. */
static void naive_param_grads(const kp_conv_shape *s, int n, const float *x, const float *dy,
                              double *dW, double *db)
{
    int kk = s->k * s->k;
    memset(dW, 0, w_size(s) * sizeof *dW);
    memset(db, 0, (size_t)s->c_out * sizeof *db);
    for (int i = 0; i < n; i++)
        for (int o = 0; o < s->c_out; o++)
            for (int oy = 0; oy < s->h_out; oy++)
                for (int ox = 0; ox < s->w_out; ox++) {
                    double g = dy[(((size_t)i * s->c_out + o) * s->h_out + oy) * s->w_out + ox];
                    db[o] += g;
                    for (int c = 0; c < s->c_in; c++)
                        for (int t = 0; t < kk; t++) {
                            int iy = oy * s->stride - s->pad + t / s->k * s->dilation;
                            int ix = ox * s->stride - s->pad + t % s->k * s->dilation;
                            if (iy >= 0 && iy < s->h_in && ix >= 0 && ix < s->w_in)
                                dW[((size_t)o * s->c_in + c) * kk + t] +=
                                    g * x[(((size_t)i * s->c_in + c) * s->h_in + iy) * s->w_in + ix];
                        }
                }
}

static void test_conv_backward_sums_dW_db_over_every_image_of_a_large_batch(void **state)
{
    (void)state;
    kp_rng rng;
    kp_rng_seed(&rng, 17);
    const conv_case cases[] = {
        { 3, 6, 6, 4, 3, 1, 1, 1, 37, 1 },   /* 13 chunks of 3 images */
        { 2, 7, 7, 3, 3, 2, 1, 1, 50, 1 },   /* 13 chunks of 4 */
        { 16, 6, 6, 5, 3, 1, 1, 1, 37, 1 },  /* direct dW */
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        kp_conv_shape s = conv_shape_of(&cases[t]);
        int n = cases[t].n;
        size_t nx = x_size(&s, n), nw = w_size(&s), ny = y_size(&s, n);
        float *x = rand_floats(&rng, nx), *W = rand_floats(&rng, nw);
        float *dy = rand_floats(&rng, ny), *dx = zero_floats(nx), *dW = zero_floats(nw);
        float *db = zero_floats((size_t)s.c_out), *ws = conv_ws(&s, n, 2);
        double *rW = malloc(nw * sizeof *rW), *rb = malloc((size_t)s.c_out * sizeof *rb);
        assert_non_null(rW), assert_non_null(rb);
        kp_conv_backward(&s, n, x, W, dy, dx, dW, db, ws, 2);
        naive_param_grads(&s, n, x, dy, rW, rb);
        for (size_t i = 0; i < nw; i++)
            if (!close_to(dW[i], rW[i], 1e-4))
                fail_msg("case %zu: dW[%zu] = %.7g, direct sum %.7g", t, i, dW[i], rW[i]);
        for (int o = 0; o < s.c_out; o++)
            if (!close_to(db[o], rb[o], 1e-4))
                fail_msg("case %zu: db[%d] = %.7g, direct sum %.7g", t, o, db[o], rb[o]);
        free(x), free(W), free(dy), free(dx), free(dW), free(db), free(ws), free(rW), free(rb);
    }
}

static void test_conv_backward_accumulates_dW_db_and_overwrites_dx(void **state)
{
    (void)state;
    kp_rng rng;
    kp_rng_seed(&rng, 13);
    const conv_case cases[] = {
        { 2, 6, 6, 3, 3, 1, 1, 1, 4, 1 },    /* dW by sgemm */
        { 8, 6, 6, 3, 3, 1, 1, 1, 20, 1 },   /* dW by the direct kernel, 3 images a chunk */
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        kp_conv_shape s = conv_shape_of(&cases[t]);
        int n = cases[t].n;
        size_t nx = x_size(&s, n), nw = w_size(&s), ny = y_size(&s, n);
        float *x = rand_floats(&rng, nx), *W = rand_floats(&rng, nw);
        float *dy = rand_floats(&rng, ny), *dx0 = zero_floats(nx), *dW0 = zero_floats(nw);
        float *db0 = zero_floats(3), *dx = rand_floats(&rng, nx), *dW = zero_floats(nw);
        float *db = zero_floats(3), *ws = conv_ws(&s, n, 1);
        kp_conv_backward(&s, n, x, W, dy, dx0, dW0, db0, ws, 1);
        for (size_t i = 0; i < nw; i++)
            dW[i] = 1.5f;
        for (int o = 0; o < 3; o++)
            db[o] = -2.0f;
        kp_conv_backward(&s, n, x, W, dy, dx, dW, db, ws, 1);   /* dx starts as noise */
        for (size_t i = 0; i < nw; i++)
            if (!close_to(dW[i], 1.5 + dW0[i], 1e-5))
                fail_msg("case %zu: dW[%zu] = %.7g, want 1.5 + %.7g", t, i, dW[i], dW0[i]);
        for (int o = 0; o < 3; o++)
            if (!close_to(db[o], -2.0 + db0[o], 1e-5))
                fail_msg("case %zu: db[%d] = %.7g, want -2 + %.7g", t, o, db[o], db0[o]);
        assert_memory_equal(dx, dx0, nx * sizeof *dx);
        free(x), free(W), free(dy), free(dx0), free(dW0), free(db0), free(dx), free(dW);
        free(db), free(ws);
    }
}

static void test_conv_backward_without_dx_or_db_gives_the_same_dW(void **state)
{
    (void)state;
    kp_rng rng;
    kp_rng_seed(&rng, 14);
    const conv_case cases[] = { { 2, 6, 6, 3, 3, 1, 1, 1, 4, 1 }, { 2, 7, 7, 3, 3, 2, 1, 1, 3, 1 } };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        kp_conv_shape s = conv_shape_of(&cases[t]);
        int n = cases[t].n;
        size_t nx = x_size(&s, n), nw = w_size(&s), ny = y_size(&s, n);
        float *x = rand_floats(&rng, nx), *W = rand_floats(&rng, nw);
        float *dy = rand_floats(&rng, ny), *dx = zero_floats(nx);
        float *dW = zero_floats(nw), *db = zero_floats(3), *dW2 = zero_floats(nw);
        float *db2 = zero_floats(3), *ws = conv_ws(&s, n, 2);
        kp_conv_backward(&s, n, x, W, dy, dx, dW, db, ws, 2);
        kp_conv_backward(&s, n, x, W, dy, NULL, dW2, NULL, ws, 2);
        assert_memory_equal(dW, dW2, nw * sizeof *dW);
        kp_conv_backward(&s, n, x, W, dy, NULL, NULL, db2, ws, 2);
        assert_memory_equal(db, db2, 3 * sizeof *db);
        free(x), free(W), free(dy), free(dx), free(dW), free(db), free(dW2), free(db2);
        free(ws);
    }
}

static void test_conv_threads_1_2_3_give_identical_bytes(void **state)
{
    (void)state;
    kp_rng rng;
    kp_rng_seed(&rng, 15);
    const conv_case cases[] = {
        { 3, 10, 10, 8, 3, 1, 1, 1, 37, 1 },   /* 13 chunks of 3 images */
        { 4, 9, 9, 5, 3, 2, 1, 1, 20, 1 },     /* col2im path */
        { 6, 5, 5, 7, 1, 1, 0, 1, 19, 1 },     /* 1x1 path */
        { 12, 7, 7, 7, 3, 1, 1, 1, 21, 1 },    /* direct dW */
    };
    for (size_t m = 0; m < 2 * sizeof cases / sizeof cases[0]; m++) {
        size_t t = m / 2;   /* each case direct, then by im2col + sgemm */
        kp_conv_set_direct(m % 2 == 0);
        kp_conv_shape s = conv_shape_of(&cases[t]);
        int n = cases[t].n;
        size_t nx = x_size(&s, n), nw = w_size(&s), ny = y_size(&s, n);
        float *x = rand_floats(&rng, nx), *W = rand_floats(&rng, nw);
        float *b = rand_floats(&rng, (size_t)s.c_out), *dy = rand_floats(&rng, ny);
        float *out[3][4];
        for (int th = 1; th <= 3; th++) {
            float **o = out[th - 1], *ws = conv_ws(&s, n, th);
            o[0] = zero_floats(ny), o[1] = zero_floats(nx);
            o[2] = zero_floats(nw), o[3] = zero_floats((size_t)s.c_out);
            kp_conv_forward(&s, n, x, W, b, o[0], ws, th);
            kp_conv_backward(&s, n, x, W, dy, o[1], o[2], o[3], ws, th);
            free(ws);
        }
        size_t sizes[4] = { ny, nx, nw, (size_t)s.c_out };
        for (int th = 1; th < 3; th++)
            for (int k = 0; k < 4; k++)
                assert_memory_equal(out[0][k], out[th][k], sizes[k] * sizeof(float));
        for (int th = 0; th < 3; th++)
            for (int k = 0; k < 4; k++)
                free(out[th][k]);
        free(x), free(W), free(b), free(dy);
    }
    kp_conv_set_direct(1);
}

static void test_conv_smaller_batch_fits_the_workspace_of_a_larger_one(void **state)
{
    (void)state;
    kp_rng rng;
    kp_rng_seed(&rng, 16);
    conv_case c = { 3, 8, 8, 4, 3, 1, 1, 1, 40, 1 };
    kp_conv_shape s = conv_shape_of(&c);
    for (int n = 1; n < 40; n += 7)
        assert_true(kp_conv_workspace(&s, n, 2) <= kp_conv_workspace(&s, 40, 2));
    int n = 23;   /* 12 chunks of 2, where 40 images make 14 of 3 */
    size_t nx = x_size(&s, n), nw = w_size(&s), ny = y_size(&s, n);
    float *x = rand_floats(&rng, nx), *W = rand_floats(&rng, nw), *dy = rand_floats(&rng, ny);
    float *dx = zero_floats(nx), *dW = zero_floats(nw), *dW1 = zero_floats(nw);
    float *ws = conv_ws(&s, 40, 2), *ws1 = conv_ws(&s, n, 1);
    kp_conv_backward(&s, n, x, W, dy, dx, dW, NULL, ws, 2);
    kp_conv_backward(&s, n, x, W, dy, dx, dW1, NULL, ws1, 1);
    assert_memory_equal(dW, dW1, nw * sizeof *dW);
    free(x), free(W), free(dy), free(dx), free(dW), free(dW1), free(ws), free(ws1);
}

/* ---- pooling ---- */

typedef struct pool_case {
    int c, h, w, k, stride, pad;
} pool_case;

static const pool_case pool_cases[] = {
    { 2, 6, 6, 2, 2, 0 },   /* the 2x2 fast path */
    { 2, 7, 5, 2, 2, 0 },   /* odd size: floor mode drops the last row */
    { 1, 4, 71, 2, 2, 0 },  /* 35 outputs a row: 16 + 16 + 3 */
    { 2, 7, 5, 3, 2, 1 },
    { 1, 5, 5, 3, 1, 1 },   /* overlapping windows */
    { 3, 8, 7, 2, 1, 0 },
    { 2, 9, 9, 4, 3, 2 },
    { 1, 1, 1, 1, 1, 0 },
};

static kp_pool_shape pool_shape_of(const pool_case *c, kp_pool_kind kind)
{
    kp_pool_shape s = { kind, c->c, c->h, c->w, c->k, c->stride, c->pad, 0, 0 };
    char err[KP_ERRLEN];
    assert_int_equal(kp_pool_shape_init(&s, err, sizeof err), 0);
    return s;
}

static size_t pool_in(const kp_pool_shape *s, int n)
{
    return (size_t)n * s->c * s->h_in * s->w_in;
}

static size_t pool_out(const kp_pool_shape *s, int n)
{
    return (size_t)n * s->c * s->h_out * s->w_out;
}

/* Direct pooling over the real pixels of each window: the max and its index, or the mean. */
static void naive_pool(const kp_pool_shape *s, int n, const float *x, double *y, int32_t *am)
{
    for (size_t p = 0; p < (size_t)n * s->c; p++)
        for (int oy = 0; oy < s->h_out; oy++)
            for (int ox = 0; ox < s->w_out; ox++) {
                double m = -INFINITY, sum = 0;
                int cnt = 0, best = -1;
                for (int ky = 0; ky < s->k; ky++)
                    for (int kx = 0; kx < s->k; kx++) {
                        int iy = oy * s->stride - s->pad + ky, ix = ox * s->stride - s->pad + kx;
                        if (iy < 0 || iy >= s->h_in || ix < 0 || ix >= s->w_in)
                            continue;
                        double v = x[(p * s->h_in + iy) * s->w_in + ix];
                        sum += v, cnt++;
                        if (v > m)
                            m = v, best = iy * s->w_in + ix;
                    }
                size_t o = (p * s->h_out + oy) * s->w_out + ox;
                y[o] = s->kind == KP_POOL_MAX ? m : sum / cnt;
                if (am)
                    am[o] = best;
            }
}

static void test_pool_forward_matches_naive_on_shape_table(void **state)
{
    (void)state;
    kp_rng rng;
    kp_rng_seed(&rng, 21);
    for (size_t m = 0; m < 2 * sizeof pool_cases / sizeof pool_cases[0]; m++)
        for (int kind = KP_POOL_MAX; kind <= KP_POOL_AVG; kind++) {
            size_t t = m / 2;   /* each case with AVX-512 loops (if any), then without */
            kp_pool_set_simd(m % 2 == 0);
            kp_pool_shape s = pool_shape_of(&pool_cases[t], (kp_pool_kind)kind);
            int n = 3;
            size_t ni = pool_in(&s, n), no = pool_out(&s, n);
            float *x = rand_floats(&rng, ni), *y = zero_floats(no);
            double *ref = malloc(no * sizeof *ref);
            int32_t *am = calloc(no, sizeof *am), *am_ref = calloc(no, sizeof *am_ref);
            assert_non_null(ref), assert_non_null(am), assert_non_null(am_ref);
            kp_pool_forward(&s, n, x, y, kind == KP_POOL_MAX ? am : NULL, 2);
            naive_pool(&s, n, x, ref, am_ref);
            float *y2 = zero_floats(no);   /* a max pool without argmax (inference) */
            kp_pool_forward(&s, n, x, y2, NULL, 2);
            assert_memory_equal(y, y2, no * sizeof *y);
            free(y2);
            for (size_t i = 0; i < no; i++) {
                if (!(fabs(y[i] - ref[i]) <= 1e-6))
                    fail_msg("case %zu kind %d: y[%zu] = %.7g, naive %.7g", t, kind, i, y[i],
                             ref[i]);
                if (kind == KP_POOL_MAX && am[i] != am_ref[i])
                    fail_msg("case %zu: argmax[%zu] = %d, naive %d", t, i, am[i], am_ref[i]);
            }
            free(x), free(y), free(ref), free(am), free(am_ref);
        }
    kp_pool_set_simd(1);
}

static void test_pool_padding_never_wins_a_max_nor_counts_in_an_average(void **state)
{
    (void)state;
    const float x[4] = { -4, -3, -2, -1 };   /* 1 x 2 x 2 */
    const struct { kp_pool_kind kind; float y[4]; int32_t am[4]; } t[] = {
        { KP_POOL_MAX, { -1, -1, -1, -1 }, { 3, 3, 3, 3 } },
        { KP_POOL_AVG, { -2.5f, -2.5f, -2.5f, -2.5f }, { 0, 0, 0, 0 } },
    };
    for (size_t i = 0; i < 2; i++) {
        kp_pool_shape s = { t[i].kind, 1, 2, 2, 3, 1, 1, 0, 0 };
        char err[KP_ERRLEN];
        assert_int_equal(kp_pool_shape_init(&s, err, sizeof err), 0);
        assert_int_equal(s.h_out, 2);
        float y[4];
        int32_t am[4] = { 0, 0, 0, 0 };
        kp_pool_forward(&s, 1, x, y, t[i].kind == KP_POOL_MAX ? am : NULL, 1);
        for (int j = 0; j < 4; j++) {
            assert_float_equal(y[j], t[i].y[j], 1e-7);
            assert_int_equal(am[j], t[i].am[j]);
        }
    }
}

static void test_pool_max_propagates_nan(void **state)
{
    (void)state;
    const float x[8] = { 1, NAN, 2, 3, 4, 5, 6, 7 };   /* 1 x 2 x 4 */
    kp_pool_shape s = { KP_POOL_MAX, 1, 2, 4, 2, 2, 0, 0, 0 };
    char err[KP_ERRLEN];
    assert_int_equal(kp_pool_shape_init(&s, err, sizeof err), 0);
    for (int simd = 1; simd >= 0; simd--) {
        kp_pool_set_simd(simd);
        float y[2];
        int32_t am[2];
        kp_pool_forward(&s, 1, x, y, am, 1);
        assert_true(isnan(y[0]));
        assert_int_equal(am[0], 1);
        assert_float_equal(y[1], 7, 0);
        assert_int_equal(am[1], 7);
    }
    kp_pool_set_simd(1);
}

static void test_pool_max_backward_routes_dy_to_each_argmax(void **state)
{
    (void)state;
    kp_rng rng;
    kp_rng_seed(&rng, 22);
    for (size_t m = 0; m < 2 * sizeof pool_cases / sizeof pool_cases[0]; m++) {
        size_t t = m / 2;   /* each case with AVX-512 loops (if any), then without */
        kp_pool_set_simd(m % 2 == 0);
        kp_pool_shape s = pool_shape_of(&pool_cases[t], KP_POOL_MAX);
        int n = 2;
        size_t ni = pool_in(&s, n), no = pool_out(&s, n), plane = (size_t)s.h_in * s.w_in;
        float *x = rand_floats(&rng, ni), *y = zero_floats(no), *dy = rand_floats(&rng, no);
        float *dx = rand_floats(&rng, ni);   /* overwritten */
        double *ref = calloc(ni, sizeof *ref);
        int32_t *am = calloc(no, sizeof *am);
        assert_non_null(ref), assert_non_null(am);
        kp_pool_forward(&s, n, x, y, am, 2);
        kp_pool_backward(&s, n, dy, am, dx, 2);
        size_t per = (size_t)s.h_out * s.w_out;
        for (size_t o = 0; o < no; o++)
            ref[o / per * plane + (size_t)am[o]] += dy[o];
        for (size_t i = 0; i < ni; i++)
            if (!(fabs(dx[i] - ref[i]) <= 1e-6))
                fail_msg("case %zu: dx[%zu] = %.7g, routed %.7g", t, i, dx[i], ref[i]);
        free(x), free(y), free(dy), free(dx), free(ref), free(am);
    }
    kp_pool_set_simd(1);
}

/* sum(y * r) in double, y from kp_pool_forward. */
static double pool_loss(const kp_pool_shape *s, int n, const float *x, const float *r, float *y)
{
    kp_pool_forward(s, n, x, y, NULL, 1);
    double l = 0;
    for (size_t i = 0; i < pool_out(s, n); i++)
        l += (double)y[i] * r[i];
    return l;
}

static void test_pool_avg_backward_matches_finite_differences(void **state)
{
    (void)state;
    kp_rng rng;
    kp_rng_seed(&rng, 23);
    const float eps = 1e-2f;
    for (size_t t = 0; t < sizeof pool_cases / sizeof pool_cases[0]; t++) {
        kp_pool_shape s = pool_shape_of(&pool_cases[t], KP_POOL_AVG);
        int n = 2;
        size_t ni = pool_in(&s, n), no = pool_out(&s, n);
        float *x = rand_floats(&rng, ni), *y = zero_floats(no), *r = rand_floats(&rng, no);
        float *dx = zero_floats(ni);
        kp_pool_backward(&s, n, r, NULL, dx, 2);
        for (size_t i = 0; i < ni; i++) {
            float keep = x[i];
            x[i] = keep + eps;
            double lp = pool_loss(&s, n, x, r, y);
            x[i] = keep - eps;
            double lm = pool_loss(&s, n, x, r, y);
            x[i] = keep;
            double fd = (lp - lm) / (2.0 * eps);
            if (!close_to(dx[i], fd, 1e-3))
                fail_msg("case %zu: dx[%zu] = %.7g, finite difference %.7g", t, i, dx[i], fd);
        }
        free(x), free(y), free(r), free(dx);
    }
}

static void test_pool_threads_1_2_3_give_identical_bytes(void **state)
{
    (void)state;
    kp_rng rng;
    kp_rng_seed(&rng, 24);
    for (int kc = 0; kc < 4; kc++) {
        int kind = kc % 2 ? KP_POOL_AVG : KP_POOL_MAX;   /* overlapping windows, then 2x2 */
        kp_pool_shape s = pool_shape_of(&pool_cases[kc < 2 ? 4 : 1], (kp_pool_kind)kind);
        int n = 11;
        size_t ni = pool_in(&s, n), no = pool_out(&s, n);
        float *x = rand_floats(&rng, ni), *dy = rand_floats(&rng, no), *y[3], *dx[3];
        int32_t *am[3];
        for (int th = 0; th < 3; th++) {
            y[th] = zero_floats(no), dx[th] = zero_floats(ni);
            am[th] = calloc(no, sizeof *am[th]);
            assert_non_null(am[th]);
            int32_t *a = kind == KP_POOL_MAX ? am[th] : NULL;
            kp_pool_forward(&s, n, x, y[th], a, th + 1);
            kp_pool_backward(&s, n, dy, a, dx[th], th + 1);
        }
        for (int th = 1; th < 3; th++) {
            assert_memory_equal(y[0], y[th], no * sizeof(float));
            assert_memory_equal(dx[0], dx[th], ni * sizeof(float));
            assert_memory_equal(am[0], am[th], no * sizeof(int32_t));
        }
        for (int th = 0; th < 3; th++)
            free(y[th]), free(dx[th]), free(am[th]);
        free(x), free(dy);
    }
}

static void test_pool_shape_init_rejects_bad_sizes_with_message(void **state)
{
    (void)state;
    const struct { kp_pool_shape s; const char *msg; } t[] = {
        { { (kp_pool_kind)7, 1, 4, 4, 2, 2, 0, -7, -7 }, "pool: unknown kind 7" },
        { { KP_POOL_MAX, 0, 4, 4, 2, 2, 0, -7, -7 }, "pool: c must be positive, got 0" },
        { { KP_POOL_MAX, 1, 0, 4, 2, 2, 0, -7, -7 }, "pool: h_in must be positive, got 0" },
        { { KP_POOL_AVG, 1, 4, -1, 2, 2, 0, -7, -7 }, "pool: w_in must be positive, got -1" },
        { { KP_POOL_MAX, 1, 4, 4, 0, 2, 0, -7, -7 }, "pool: k must be positive, got 0" },
        { { KP_POOL_MAX, 1, 4, 4, 2, 0, 0, -7, -7 }, "pool: stride must be positive, got 0" },
        { { KP_POOL_MAX, 1, 4, 4, 2, 2, -1, -7, -7 }, "pool: pad must be non-negative, got -1" },
        { { KP_POOL_AVG, 1, 4, 4, 3, 1, 2, -7, -7 },
          "pool: pad 2 is more than half the window 3" },
        { { KP_POOL_MAX, 1, 2, 3, 5, 1, 1, -7, -7 },
          "pool: the 5x5 window does not fit the 2x3 input padded by 1: "
          "the output would be empty" },
        { { KP_POOL_MAX, 1, 50000, 50000, 2, 2, 0, -7, -7 },
          "pool: a 50000x50000 plane is too large" },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        kp_pool_shape s = t[i].s;
        char err[KP_ERRLEN] = "";
        assert_int_equal(kp_pool_shape_init(&s, err, sizeof err), KP_ERR_ARG);
        assert_string_equal(err, t[i].msg);
        assert_int_equal(s.h_out, -7);
        assert_int_equal(s.w_out, -7);
    }
}

/* ---- global average pooling ---- */

static void test_gap_forward_is_the_plane_mean_and_backward_spreads_dy(void **state)
{
    (void)state;
    kp_rng rng;
    kp_rng_seed(&rng, 31);
    const int n = 3, c = 4, hws[] = { 1, 7, 49, 100 };
    for (size_t t = 0; t < sizeof hws / sizeof hws[0]; t++) {
        int hw = hws[t];
        size_t ni = (size_t)n * c * hw;
        float *x = rand_floats(&rng, ni), *y = zero_floats((size_t)n * c);
        float *dy = rand_floats(&rng, (size_t)n * c), *dx = zero_floats(ni);
        kp_gap_forward(n, c, hw, x, y, 2);
        kp_gap_backward(n, c, hw, dy, dx, 2);
        for (int p = 0; p < n * c; p++) {
            double m = 0;
            for (int i = 0; i < hw; i++)
                m += x[(size_t)p * hw + i];
            assert_float_equal(y[p], m / hw, 1e-6);
            for (int i = 0; i < hw; i++)   /* the gradient of the mean */
                assert_float_equal(dx[(size_t)p * hw + i], dy[p] / hw, 1e-7);
        }
        free(x), free(y), free(dy), free(dx);
    }
}

static void test_gap_threads_1_and_3_give_identical_bytes(void **state)
{
    (void)state;
    kp_rng rng;
    kp_rng_seed(&rng, 32);
    const int n = 9, c = 5, hw = 37;
    float *x = rand_floats(&rng, (size_t)n * c * hw), *y1 = zero_floats((size_t)n * c);
    float *y3 = zero_floats((size_t)n * c);
    kp_gap_forward(n, c, hw, x, y1, 1);
    kp_gap_forward(n, c, hw, x, y3, 3);
    assert_memory_equal(y1, y3, (size_t)n * c * sizeof(float));
    free(x), free(y1), free(y3);
}

static int setup_blas(void **state)
{
    (void)state;
    openblas_set_num_threads(1);
    return 0;
}

KP_TEST_GROUP(nn_conv)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_conv_shape_init_computes_output_size),
        cmocka_unit_test(test_conv_shape_init_rejects_bad_sizes_with_message),
        cmocka_unit_test_setup(test_conv_forward_matches_direct_convolution_on_shape_table,
                               setup_blas),
        cmocka_unit_test_setup(test_conv_backward_matches_finite_differences, setup_blas),
        cmocka_unit_test_setup(test_conv_backward_sums_dW_db_over_every_image_of_a_large_batch,
                               setup_blas),
        cmocka_unit_test_setup(test_conv_backward_accumulates_dW_db_and_overwrites_dx,
                               setup_blas),
        cmocka_unit_test_setup(test_conv_backward_without_dx_or_db_gives_the_same_dW,
                               setup_blas),
        cmocka_unit_test_setup(test_conv_threads_1_2_3_give_identical_bytes, setup_blas),
        cmocka_unit_test_setup(test_conv_smaller_batch_fits_the_workspace_of_a_larger_one,
                               setup_blas),
        cmocka_unit_test(test_pool_forward_matches_naive_on_shape_table),
        cmocka_unit_test(test_pool_padding_never_wins_a_max_nor_counts_in_an_average),
        cmocka_unit_test(test_pool_max_propagates_nan),
        cmocka_unit_test(test_pool_max_backward_routes_dy_to_each_argmax),
        cmocka_unit_test(test_pool_avg_backward_matches_finite_differences),
        cmocka_unit_test(test_pool_threads_1_2_3_give_identical_bytes),
        cmocka_unit_test(test_pool_shape_init_rejects_bad_sizes_with_message),
        cmocka_unit_test(test_gap_forward_is_the_plane_mean_and_backward_spreads_dy),
        cmocka_unit_test(test_gap_threads_1_and_3_give_identical_bytes),
    };
    return KP_RUN(nn_conv, t);
}

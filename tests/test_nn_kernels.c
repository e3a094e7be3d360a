/* test_nn_kernels.c - the layer kernels of models/nn other than conv and
 * pooling: batch norm, leaky ReLU, dropout, add, concat, linear, losses.
 *
 * Every backward pass is checked against central finite differences of
 * L = sum(r . forward(inputs)) for a fixed random r, on a table of shapes
 * chosen to cross the kernels' lane (16), span and chunk boundaries.  The
 * PyTorch references were made offline with torch 1.13 (BatchNorm2d with
 * running stats (0.1, -0.2, 0.3) / (1, 0.5, 2); cross_entropy and
 * binary_cross_entropy_with_logits in float64, BCE times k because ours
 * sums over the outputs), pasted with %.9g.
 */
#include "kp_test.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/rng.h"
#include "../models/nn/kernels.h"

/* ---- helpers ---- */

static float *fvec(size_t n)
{
    float *v = calloc(n ? n : 1, sizeof *v);
    assert_non_null(v);
    return v;
}

/* Fills v with uniform values in [lo, hi) from seed. */
static void fill(float *v, size_t n, uint64_t seed, double lo, double hi)
{
    kp_rng r;
    kp_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++)
        v[i] = (float)(lo + (hi - lo) * kp_rng_uniform(&r));
}

/* Fills v with values of magnitude in [0.1, 2) and random sign: clear of a kink at 0. */
static void fill_away_from_zero(float *v, size_t n, uint64_t seed)
{
    fill(v, n, seed, 0.1, 2);
    for (size_t i = 0; i < n; i++)
        if (i * 2654435761u % 7 < 3)
            v[i] = -v[i];
}

static void assert_near_array(const char *what, const float *got, const float *want, size_t n,
                              double tol)
{
    for (size_t i = 0; i < n; i++)
        if (!(fabs((double)got[i] - want[i]) <= tol * (1 + fabs((double)want[i]))))
            fail_msg("%s[%zu]: got %.9g, want %.9g", what, i, got[i], want[i]);
}

/* ---- finite differences ---- */

typedef void (*fwd_fn)(void *ctx, float *out);

/* One input of a forward pass and the analytic gradient of L with respect to it. */
typedef struct fd_input { const char *name; float *v; size_t n; const float *grad; } fd_input;

static double weighted(const float *r, const float *out, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)r[i] * out[i];
    return s;
}

/* Checks each input's gradient against (L(v + h) - L(v - h)) / 2h. */
static void check_fd(const char *what, fwd_fn f, void *ctx, const float *r, size_t nout,
                     const fd_input *in, int nin)
{
    const float h = 1e-2f;
    float *out = fvec(nout);
    for (int k = 0; k < nin; k++)
        for (size_t i = 0; i < in[k].n; i++) {
            float save = in[k].v[i];
            in[k].v[i] = save + h;
            double step = in[k].v[i];
            f(ctx, out);
            double lp = weighted(r, out, nout);
            in[k].v[i] = save - h;
            step -= in[k].v[i];
            f(ctx, out);
            double num = (lp - weighted(r, out, nout)) / step;
            in[k].v[i] = save;
            if (!(fabs(num - in[k].grad[i]) <= 2e-3 * (1 + fabs(num))))
                fail_msg("%s: dL/d%s[%zu] analytic %.7g, numeric %.7g", what, in[k].name, i,
                         in[k].grad[i], num);
        }
    free(out);
}

/* ---- batch norm ---- */

typedef struct bn_fix {
    kp_bn_state s;
    int n, hw;
    float *x;
} bn_fix;

/* A state for c channels: gamma 1, beta 0, running mean 0 and var 1 (PyTorch's start). */
static kp_bn_state bn_state(int c)
{
    float *m = fvec((size_t)6 * c);
    kp_bn_state s = { c, 1e-5f, 0.1f, m, m + c, m + 2 * c, m + 3 * c, m + 4 * c, m + 5 * c, 0, 0 };
    for (int i = 0; i < c; i++)
        s.gamma[i] = s.running_var[i] = 1;
    return s;
}

static void bn_forward_fd(void *p, float *out)
{
    bn_fix *b = p;
    kp_bn_forward_train(&b->s, b->n, b->hw, b->x, out, NULL, 1);
}

static void test_bn_backward_matches_finite_differences(void **state)
{
    (void)state;
    static const struct { int n, c, hw; } shapes[] = {
        { 2, 3, 5 }, { 4, 2, 1 }, { 1, 3, 6 }, { 3, 1, 16 }, { 2, 2, 37 }, { 1, 1, 1500 },
    };
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        int n = shapes[t].n, c = shapes[t].c, hw = shapes[t].hw;
        size_t cnt = (size_t)n * c * hw;
        bn_fix b = { bn_state(c), n, hw, fvec(cnt) };
        float *y = fvec(cnt), *r = fvec(cnt), *dx = fvec(cnt), *dg = fvec(c), *db = fvec(c);
        fill(b.x, cnt, 10 + t, -2, 2);
        fill(r, cnt, 20 + t, -1, 1);
        fill(b.s.gamma, c, 30 + t, 0.5, 1.5);
        fill(b.s.beta, c, 40 + t, -1, 1);
        kp_bn_forward_train(&b.s, n, hw, b.x, y, NULL, 1);
        kp_bn_backward(&b.s, n, hw, b.x, r, dx, dg, db, NULL, 1);
        char what[64];
        snprintf(what, sizeof what, "bn n=%d c=%d hw=%d", n, c, hw);
        fd_input in[] = { { "x", b.x, cnt, dx }, { "gamma", b.s.gamma, c, dg },
                          { "beta", b.s.beta, c, db } };
        check_fd(what, bn_forward_fd, &b, r, cnt, in, 3);
        free(b.s.gamma), free(b.x), free(y), free(r), free(dx), free(dg), free(db);
    }
}

/* x, gamma, beta, dy of the PyTorch reference: 2 images, 3 channels of 2 x 2. */
static const float bn_x[] = { 0.5, -1.25, 2.0, 0.75, 1.5, 1.5, -0.5, 3.0, -2.0, 0.25, 0.0, 1.0,
                              1.0, 0.5, -0.75, 2.5, 0.125, 4.0, -1.0, 2.0, 3.0, -1.5, 0.5, -0.25 };
static const float bn_gamma[] = { 1.5, -0.5, 2.0 }, bn_beta[] = { 0.25, 1.0, -0.5 };
static const float bn_dy[] = { 0.3, -0.1, 0.7, 0.2, -0.4, 0.9, 0.05, -0.6, 0.8, -0.3, 0.1, 0.45,
                               -0.2, 0.6, -0.5, 0.35, 0.15, -0.7, 0.25, 0.4, -0.9, 0.55, -0.15, 0.65 };
static const float bn_y_train[] = {
    0.0500540137, -2.18934083, 1.96953523, 0.36996755, 0.946516275, 0.946516275, 1.56887233,
    0.479749173, -3.45931292, -0.325922757, -0.674077213, 0.718540609, 0.689881086, 0.0500540137,
    -1.5495137, 2.60936236, 1.37438607, 0.168571115, 1.72446144, 0.790927231, 3.50377631,
    -2.76300383, 0.022231698, -1.0222317,
};
static const float bn_rm[] = { 0.155625001, -0.0471874923, 0.282499999 };
static const float bn_rv[] = { 1.05703127, 0.745061338, 2.03571415 };
static const float bn_dx[] = {
    0.209591955, 0.16406849, 0.321735144, 0.0150067881, 0.117682718, -0.286848754, 0.0792772248,
    0.10369987, -0.0162162874, -0.572476983, -0.123831928, 0.797192752, -0.563474596, 0.593488216,
    -0.48103264, -0.259383291, 0.0164017156, 0.0840053558, 0.0424477644, -0.156665891,
    -0.215624407, -0.147566527, -0.255182207, 0.533705771,
};
static const float bn_dgamma[] = { 1.9528054, -2.0989933, -3.5772872 };
static const float bn_dbeta[] = { 1.35000002, 0.0499999821, 1.19999993 };
static const float bn_y_eval[] = {
    0.752431512, -1.80075943, 2.94088078, 1.11717308, 0.103781253, 0.103781253, 1.26229465,
    -0.765103817, -3.69949389, -0.545556843, -0.895994306, 0.505755544, 1.48191464, 0.752431512,
    -1.07127631, 3.6703639, 0.900259256, -1.34436059, 1.55192304, -0.185847104, 3.30925512,
    -2.99861908, -0.195119381, -1.24643183,
};

/* The reference state after its training forward. */
static kp_bn_state bn_torch_state(float *y)
{
    kp_bn_state s = bn_state(3);
    memcpy(s.gamma, bn_gamma, sizeof bn_gamma);
    memcpy(s.beta, bn_beta, sizeof bn_beta);
    const float rm[] = { 0.1f, -0.2f, 0.3f }, rv[] = { 1.0f, 0.5f, 2.0f };
    memcpy(s.running_mean, rm, sizeof rm);
    memcpy(s.running_var, rv, sizeof rv);
    kp_bn_forward_train(&s, 2, 4, bn_x, y, NULL, 1);
    return s;
}

static void test_bn_train_forward_matches_torch_and_updates_running_stats(void **state)
{
    (void)state;
    float y[24];
    kp_bn_state s = bn_torch_state(y);
    assert_near_array("y", y, bn_y_train, 24, 1e-5);
    assert_near_array("running_mean", s.running_mean, bn_rm, 3, 1e-6);
    assert_near_array("running_var", s.running_var, bn_rv, 3, 1e-6);
    const float mean[] = { 0.65625f, 1.328125f, 0.125f };   /* the batch means */
    assert_near_array("save_mean", s.save_mean, mean, 3, 1e-7);
    free(s.gamma);
}

static void test_bn_backward_matches_torch(void **state)
{
    (void)state;
    float y[24], dx[24], dg[3] = { 0 }, db[3] = { 0 };
    kp_bn_state s = bn_torch_state(y);
    kp_bn_backward(&s, 2, 4, bn_x, bn_dy, dx, dg, db, NULL, 1);
    assert_near_array("dx", dx, bn_dx, 24, 1e-5);
    assert_near_array("dgamma", dg, bn_dgamma, 3, 1e-5);
    assert_near_array("dbeta", db, bn_dbeta, 3, 1e-6);
    free(s.gamma);
}

static void test_bn_eval_forward_uses_running_stats_like_torch(void **state)
{
    (void)state;
    float y[24], ye[24];
    kp_bn_state s = bn_torch_state(y);
    kp_bn_forward_eval(&s, 2, 4, bn_x, ye, 1);
    assert_near_array("y_eval", ye, bn_y_eval, 24, 1e-5);
    free(s.gamma);
}

static void test_bn_in_place_passes_give_the_same_bits(void **state)
{
    (void)state;
    float y[24], buf[24], dx[24], dx2[24], dg[3] = { 0 }, db[3] = { 0 };
    kp_bn_state s = bn_torch_state(y), s2 = bn_torch_state(buf);
    memcpy(buf, bn_x, sizeof buf);
    kp_bn_forward_train(&s2, 2, 4, buf, buf, NULL, 1);
    kp_bn_forward_train(&s, 2, 4, bn_x, y, NULL, 1);
    assert_memory_equal(buf, y, sizeof y);
    kp_bn_backward(&s, 2, 4, bn_x, bn_dy, dx, dg, db, NULL, 1);
    memcpy(dx2, bn_dy, sizeof dx2);
    kp_bn_backward(&s, 2, 4, bn_x, dx2, dx2, dg, db, NULL, 1);
    assert_memory_equal(dx2, dx, sizeof dx);
    memcpy(buf, bn_x, sizeof buf);
    kp_bn_forward_eval(&s, 2, 4, buf, buf, 1);
    kp_bn_forward_eval(&s, 2, 4, bn_x, y, 1);
    assert_memory_equal(buf, y, sizeof y);
    free(s.gamma), free(s2.gamma);
}

/* A fused activation gives the bits of batch norm then leaky ReLU, both ways,
 * with spans longer than one BN_SPAN. */
static void test_bn_fused_leaky_equals_bn_then_leaky(void **state)
{
    (void)state;
    enum { N = 3, C = 2, HW = 1500, COUNT = N * C * HW };
    float *x = fvec(COUNT), *dy = fvec(COUNT), *y1 = fvec(COUNT), *y2 = fvec(COUNT);
    float *g = fvec(COUNT), *dx1 = fvec(COUNT), *dx2 = fvec(COUNT);
    for (int i = 0; i < COUNT; i++) {
        x[i] = (float)sin(i * 0.37) * 3 + 0.5f;
        dy[i] = (float)cos(i * 0.11);
    }
    for (int k = 0; k < 2; k++) {
        float slope = k ? 0.1f : 0.0f, dg1[C] = {0}, db1[C] = {0}, dg2[C] = {0}, db2[C] = {0};
        kp_bn_state a = bn_state(C), b = bn_state(C);
        a.gamma[1] = b.gamma[1] = 1.5f;
        a.beta[0] = b.beta[0] = -0.25f;
        b.fuse_leaky = 1, b.slope = slope;
        kp_bn_forward_train(&a, N, HW, x, y1, NULL, 2);
        kp_leaky_forward(COUNT, slope, y1, y1, 2);
        kp_bn_forward_train(&b, N, HW, x, y2, NULL, 2);
        assert_memory_equal(y1, y2, COUNT * sizeof(float));
        kp_leaky_backward(COUNT, slope, y1, dy, g, 2);
        kp_bn_backward(&a, N, HW, x, g, dx1, dg1, db1, NULL, 2);
        kp_bn_backward(&b, N, HW, x, dy, dx2, dg2, db2, NULL, 2);
        assert_memory_equal(dx1, dx2, COUNT * sizeof(float));
        assert_memory_equal(dg1, dg2, sizeof dg1);
        assert_memory_equal(db1, db2, sizeof db1);
        kp_bn_forward_eval(&a, N, HW, x, y1, 2);
        kp_leaky_forward(COUNT, slope, y1, y1, 2);
        kp_bn_forward_eval(&b, N, HW, x, y2, 2);
        assert_memory_equal(y1, y2, COUNT * sizeof(float));
        free(a.gamma), free(b.gamma);
    }
    free(x), free(dy), free(y1), free(y2), free(g), free(dx1), free(dx2);
}

static void test_bn_statistics_survive_a_large_mean(void **state)
{
    (void)state;
    /* 1e4 + deviations in [-1, 1): a float sum of squares around 0 would lose them */
    enum { N = 4096 };
    float *x = fvec(N), *y = fvec(N);
    fill(x, N, 5, -1, 1);
    double mean = 0, var = 0;
    for (int i = 0; i < N; i++) {
        x[i] += 1e4f;
        mean += x[i];
    }
    mean /= N;
    for (int i = 0; i < N; i++)
        var += (x[i] - mean) * (x[i] - mean);
    var /= N;
    kp_bn_state s = bn_state(1);
    kp_bn_forward_train(&s, 1, N, x, y, NULL, 1);
    assert_true(fabs(s.save_mean[0] - mean) < 1e-3);
    assert_true(fabs(s.save_invstd[0] - 1 / sqrt(var + 1e-5)) < 1e-4 * s.save_invstd[0]);
    free(s.gamma), free(x), free(y);
}

/* ---- leaky ReLU, dropout, add, concat ---- */

typedef struct ew_fix {
    size_t count;
    float slope, p;
    int n, ca, cb, hw;
    float *x, *x2, *mask;
} ew_fix;

static void leaky_forward_fd(void *p, float *out)
{
    ew_fix *e = p;
    kp_leaky_forward(e->count, e->slope, e->x, out, 1);
}

static void test_leaky_backward_matches_finite_differences(void **state)
{
    (void)state;
    static const struct { size_t count; float slope; } cases[] = {
        { 1, 0 }, { 16, 0 }, { 37, 0 }, { 1, 0.1f }, { 16, 0.1f }, { 37, 0.1f },
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        size_t n = cases[t].count;
        ew_fix e = { .count = n, .slope = cases[t].slope, .x = fvec(n) };
        float *y = fvec(n), *r = fvec(n), *dx = fvec(n);
        fill_away_from_zero(e.x, n, 50 + t);
        fill(r, n, 60 + t, -1, 1);
        kp_leaky_forward(n, e.slope, e.x, y, 1);
        kp_leaky_backward(n, e.slope, y, r, dx, 1);
        char what[64];
        snprintf(what, sizeof what, "leaky count=%zu slope=%g", n, e.slope);
        fd_input in[] = { { "x", e.x, n, dx } };
        check_fd(what, leaky_forward_fd, &e, r, n, in, 1);
        free(e.x), free(y), free(r), free(dx);
    }
}

static void test_leaky_forward_values_and_in_place(void **state)
{
    (void)state;
    float x[18], want0[18], want1[18], y[18];
    for (int i = 0; i < 18; i++) {
        x[i] = (float)(i - 9) * 0.5f;
        want0[i] = x[i] > 0 ? x[i] : 0;
        want1[i] = x[i] > 0 ? x[i] : 0.25f * x[i];
    }
    kp_leaky_forward(18, 0, x, y, 1);
    assert_near_array("relu", y, want0, 18, 0);
    memcpy(y, x, sizeof y);
    kp_leaky_forward(18, 0.25f, y, y, 1);
    assert_near_array("leaky in place", y, want1, 18, 0);
}

static void dropout_forward_fd(void *p, float *out)
{
    ew_fix *e = p;
    kp_dropout_forward(e->count, e->p, 77, e->x, out, e->mask, 1);
}

static void test_dropout_backward_matches_finite_differences(void **state)
{
    (void)state;
    enum { N = 40 };
    ew_fix e = { .count = N, .p = 0.3f, .x = fvec(N), .mask = fvec(N) };
    float y[N], r[N], dx[N];
    fill(e.x, N, 70, -2, 2);
    fill(r, N, 71, -1, 1);
    kp_dropout_forward(N, e.p, 77, e.x, y, e.mask, 1);
    kp_dropout_backward(N, e.mask, r, dx, 1);
    fd_input in[] = { { "x", e.x, N, dx } };
    check_fd("dropout", dropout_forward_fd, &e, r, N, in, 1);
    free(e.x), free(e.mask);
}

static void test_dropout_drops_about_p_and_scales_the_rest(void **state)
{
    (void)state;
    enum { N = 100000 };
    float *x = fvec(N), *y = fvec(N), *mask = fvec(N), *mask2 = fvec(N);
    for (int i = 0; i < N; i++)
        x[i] = 1;
    kp_dropout_forward(N, 0.3f, 123, x, y, mask, 2);
    int dropped = 0;
    for (int i = 0; i < N; i++) {
        dropped += y[i] == 0;
        if (y[i] != 0 && y[i] != 1 / (1 - 0.3f))
            fail_msg("y[%d] = %.9g: neither 0 nor 1 / (1 - p)", i, y[i]);
    }
    /* binomial(1e5, 0.3): sd 145; 5 sd either side */
    assert_in_range(dropped, 30000 - 725, 30000 + 725);
    kp_dropout_forward(N, 0.3f, 123, x, y, mask2, 1);
    assert_memory_equal(mask, mask2, N * sizeof *mask);
    kp_dropout_forward(N, 0.3f, 124, x, y, mask2, 1);
    assert_true(memcmp(mask, mask2, N * sizeof *mask) != 0);
    kp_dropout_forward(N, 0, 124, x, y, mask2, 1);
    assert_memory_equal(x, y, N * sizeof *y);
    free(x), free(y), free(mask), free(mask2);
}

static void add_forward_fd(void *p, float *out)
{
    ew_fix *e = p;
    kp_add_forward(e->count, e->x, e->x2, out, 1);
}

static void test_add_backward_is_dy_to_both_inputs(void **state)
{
    (void)state;
    enum { N = 21 };
    ew_fix e = { .count = N, .x = fvec(N), .x2 = fvec(N) };
    float r[N];
    fill(e.x, N, 80, -2, 2);
    fill(e.x2, N, 81, -2, 2);
    fill(r, N, 82, -1, 1);
    fd_input in[] = { { "a", e.x, N, r }, { "b", e.x2, N, r } };
    check_fd("add", add_forward_fd, &e, r, N, in, 2);
    free(e.x), free(e.x2);
}

static void concat_forward_fd(void *p, float *out)
{
    ew_fix *e = p;
    kp_concat_forward(e->n, e->ca, e->cb, e->hw, e->x, e->x2, out, 1);
}

static void test_concat_backward_matches_finite_differences(void **state)
{
    (void)state;
    static const struct { int n, ca, cb, hw; } shapes[] = {
        { 1, 1, 1, 1 }, { 2, 2, 3, 4 }, { 3, 1, 2, 5 }, { 2, 3, 0, 2 },
    };
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        ew_fix e = { .n = shapes[t].n, .ca = shapes[t].ca, .cb = shapes[t].cb, .hw = shapes[t].hw };
        size_t na = (size_t)e.n * e.ca * e.hw, nb = (size_t)e.n * e.cb * e.hw, ny = na + nb;
        e.x = fvec(na), e.x2 = fvec(nb);
        float *r = fvec(ny), *da = fvec(na), *db = fvec(nb);
        fill(e.x, na, 90 + t, -2, 2);
        fill(e.x2, nb, 95 + t, -2, 2);
        fill(r, ny, 99 + t, -1, 1);
        kp_concat_backward(e.n, e.ca, e.cb, e.hw, r, da, db, 1);
        char what[64];
        snprintf(what, sizeof what, "concat n=%d ca=%d cb=%d hw=%d", e.n, e.ca, e.cb, e.hw);
        fd_input in[] = { { "a", e.x, na, da }, { "b", e.x2, nb, db } };
        check_fd(what, concat_forward_fd, &e, r, ny, in, 2);
        free(e.x), free(e.x2), free(r), free(da), free(db);
    }
}

static void test_concat_places_channels_of_a_before_b(void **state)
{
    (void)state;
    const float a[] = { 1, 2, 3, 4 };                          /* n 2, ca 1, hw 2 */
    const float b[] = { 5, 6, 7, 8, 9, 10, 11, 12 };           /* n 2, cb 2, hw 2 */
    const float want[] = { 1, 2, 5, 6, 7, 8, 3, 4, 9, 10, 11, 12 };
    float y[12], da[4], db[8];
    kp_concat_forward(2, 1, 2, 2, a, b, y, 2);
    assert_memory_equal(y, want, sizeof want);
    kp_concat_backward(2, 1, 2, 2, y, da, db, 2);
    assert_memory_equal(da, a, sizeof a);
    assert_memory_equal(db, b, sizeof b);
}

/* ---- linear ---- */

typedef struct lin_fix {
    int n, in, out;
    float *x, *W, *b;
} lin_fix;

static void linear_forward_fd(void *p, float *out)
{
    lin_fix *l = p;
    kp_linear_forward(l->n, l->in, l->out, l->x, l->W, l->b, out, 1);
}

static void test_linear_backward_matches_finite_differences(void **state)
{
    (void)state;
    static const struct { int n, in, out, bias; } shapes[] = {
        { 1, 1, 1, 1 }, { 3, 4, 5, 1 }, { 70, 3, 2, 1 }, { 5, 6, 40, 1 }, { 33, 2, 33, 0 },
    };
    int old = openblas_get_num_threads();
    openblas_set_num_threads(1);
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        int n = shapes[t].n, in = shapes[t].in, out = shapes[t].out;
        size_t nx = (size_t)n * in, nw = (size_t)out * in, ny = (size_t)n * out;
        lin_fix l = { n, in, out, fvec(nx), fvec(nw), shapes[t].bias ? fvec(out) : NULL };
        float *r = fvec(ny), *dx = fvec(nx), *dW = fvec(nw), *db = fvec(out);
        fill(l.x, nx, 110 + t, -1, 1);
        fill(l.W, nw, 120 + t, -1, 1);
        if (l.b)
            fill(l.b, out, 130 + t, -1, 1);
        fill(r, ny, 140 + t, -1, 1);
        kp_linear_backward(n, in, out, l.x, l.W, r, dx, dW, l.b ? db : NULL, NULL, 2);
        char what[64];
        snprintf(what, sizeof what, "linear n=%d in=%d out=%d", n, in, out);
        fd_input inp[] = { { "x", l.x, nx, dx }, { "W", l.W, nw, dW }, { "b", l.b, out, db } };
        check_fd(what, linear_forward_fd, &l, r, ny, inp, l.b ? 3 : 2);
        free(l.x), free(l.W), free(l.b), free(r), free(dx), free(dW), free(db);
    }
    openblas_set_num_threads(old);
}

static void test_linear_forward_is_x_times_w_transposed_plus_b(void **state)
{
    (void)state;
    const float x[] = { 1, 2, 3, -1, 0, 2 };           /* 2 x 3 */
    const float W[] = { 1, 0, -1, 2, 1, 0.5f };        /* 2 x 3: W[out, in] */
    const float b[] = { 0.5f, -1 };
    const float want[] = { -1.5f, 4.5f, -2.5f, -2 }, want_nob[] = { -2, 5.5f, -3, -1 };
    float y[4];
    kp_linear_forward(2, 3, 2, x, W, b, y, 1);
    assert_near_array("y", y, want, 4, 0);
    kp_linear_forward(2, 3, 2, x, W, NULL, y, 1);
    assert_near_array("y without b", y, want_nob, 4, 0);
}

static void test_parameter_gradients_accumulate(void **state)
{
    (void)state;
    float y[24], dx[24], dg0[3] = { 0 }, db0[3] = { 0 }, dg[3] = { 1, 2, 3 }, db[3] = { -1, 0, 4 };
    kp_bn_state s = bn_torch_state(y);
    kp_bn_backward(&s, 2, 4, bn_x, bn_dy, dx, dg0, db0, NULL, 1);
    kp_bn_backward(&s, 2, 4, bn_x, bn_dy, dx, dg, db, NULL, 1);
    for (int c = 0; c < 3; c++) {
        assert_float_equal(dg[c], (float)(c + 1) + dg0[c], 1e-6);
        assert_float_equal(db[c], (float)(c == 0 ? -1 : c == 1 ? 0 : 4) + db0[c], 1e-6);
    }
    const float x[] = { 1, 2 }, W[] = { 3, 4 }, dy[] = { 1, -2 };   /* n 2, in 1, out 1 */
    float dW[1] = { 10 }, dbl[1] = { 20 };
    kp_linear_backward(2, 1, 1, x, W, dy, NULL, dW, dbl, NULL, 1);
    assert_float_equal(dW[0], 10 + (1 * 1 - 2 * 2), 0);
    assert_float_equal(dbl[0], 20 - 1, 0);
    free(s.gamma);
}

static void test_backward_passes_skip_null_input_gradients(void **state)
{
    (void)state;
    float y[24], dx[24], dg[3] = { 0 }, db[3] = { 0 }, dg2[3] = { 0 }, db2[3] = { 0 };
    kp_bn_state s = bn_torch_state(y);
    kp_bn_backward(&s, 2, 4, bn_x, bn_dy, dx, dg, db, NULL, 1);
    kp_bn_backward(&s, 2, 4, bn_x, bn_dy, NULL, dg2, db2, NULL, 1);
    assert_memory_equal(dg, dg2, sizeof dg);
    assert_memory_equal(db, db2, sizeof db);
    kp_leaky_backward(24, 0.1f, bn_x, bn_dy, NULL, 2);
    kp_dropout_backward(24, bn_x, bn_dy, NULL, 2);
    const float cat[] = { 1, 2, 3, 4, 5, 6 };   /* n 2, ca 1, cb 2, hw 1 */
    float da[2] = { 0 }, dbc[4] = { 0 };
    kp_concat_backward(2, 1, 2, 1, cat, da, NULL, 2);
    kp_concat_backward(2, 1, 2, 1, cat, NULL, dbc, 2);
    const float want_a[] = { 1, 4 }, want_b[] = { 2, 3, 5, 6 };
    assert_memory_equal(da, want_a, sizeof da);
    assert_memory_equal(dbc, want_b, sizeof dbc);
    free(s.gamma);
}

/* ---- losses ---- */

typedef struct loss_fix {
    int n, k, bce;
    float *z, *y;
} loss_fix;

static void loss_fd(void *p, float *out)
{
    loss_fix *l = p;
    out[0] = (float)(l->bce ? kp_sigmoid_bce(l->n, l->k, l->z, l->y, NULL, NULL)
                            : kp_softmax_ce(l->n, l->k, l->z, l->y, NULL, NULL));
}

static void test_loss_gradients_match_finite_differences(void **state)
{
    (void)state;
    static const struct { int bce, n, k; } cases[] = {
        { 0, 1, 2 }, { 0, 3, 4 }, { 0, 5, 10 }, { 1, 1, 1 }, { 1, 3, 4 }, { 1, 4, 2 },
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        int n = cases[t].n, k = cases[t].k;
        size_t nz = (size_t)n * k;
        loss_fix l = { n, k, cases[t].bce, fvec(nz), fvec(nz) };
        float *dz = fvec(nz), one = 1;
        fill(l.z, nz, 150 + t, -3, 3);
        for (size_t i = 0; i < (l.bce ? nz : (size_t)n); i++)
            l.y[i] = l.bce ? (float)(i % 3 == 0) : (float)(i * 7 % (size_t)k);
        if (l.bce)
            kp_sigmoid_bce(n, k, l.z, l.y, NULL, dz);
        else
            kp_softmax_ce(n, k, l.z, l.y, NULL, dz);
        char what[64];
        snprintf(what, sizeof what, "%s n=%d k=%d", l.bce ? "bce" : "ce", n, k);
        fd_input in[] = { { "z", l.z, nz, dz } };
        check_fd(what, loss_fd, &l, &one, 1, in, 1);
        free(l.z), free(l.y), free(dz);
    }
}

static void test_softmax_ce_matches_torch_and_is_stable_at_100(void **state)
{
    (void)state;
    const float z[] = { 1, -0.5f, 2, 0.25f, 100, -100, 0, 50, -100, 100, -3, 99 };
    const float y[] = { 2, 3, 0 };
    const float want_p[] = { 0.226563245, 0.0505530946, 0.615862787, 0.1070209, 1, 0,
                             3.78350585e-44, 1.92874989e-22, 0, 0.731058598, 1.40129846e-45,
                             0.268941432 };
    const float want_dz[] = { 0.0755210817, 0.0168510322, -0.128045753, 0.0356736332,
                              0.333333343, 0, 1.26116862e-44, -0.333333343, -0.333333343,
                              0.243686199, 0, 0.0896471441 };
    float p[12], dz[12];
    double loss = kp_softmax_ce(3, 4, z, y, p, dz);
    assert_true(fabs(loss - 83.599330940740074) < 1e-9);
    assert_near_array("p", p, want_p, 12, 1e-6);
    assert_near_array("dz", dz, want_dz, 12, 1e-6);
}

static void test_sigmoid_bce_matches_torch_and_is_stable_at_100(void **state)
{
    (void)state;
    const float z[] = { 1, -0.5f, 100, -100, 0.25f, 3 };
    const float y[] = { 1, 0, 0, 1, 1, 0 };
    const float want_p[] = { 0.731058598, 0.377540678, 1, 0, 0.562176526, 0.952574134 };
    const float want_dz[] = { -0.134470716, 0.188770339, 0.5, -0.5, -0.218911752, 0.476287067 };
    float p[6], dz[6];
    double loss = kp_sigmoid_bce(2, 3, z, y, p, dz);
    assert_true(fabs(loss - 102.20593272157546) < 1e-9);
    assert_near_array("p", p, want_p, 6, 1e-6);
    assert_near_array("dz", dz, want_dz, 6, 1e-6);
}

/* ---- thread counts ---- */

enum { T_BN = 8 * 5 * 300, T_EW = 3 * 32768 + 123, T_CAT = 9 * 5 * 50 };
enum { T_LN = 100, T_LI = 37, T_LO = 70 };

/* Each case runs its kernels on `threads` and writes every output into out. */
typedef size_t (*thread_case)(int threads, float *out);

static size_t bn_case(int threads, float *out)
{
    kp_bn_state s = bn_state(5);
    float *x = fvec(T_BN), *dy = fvec(T_BN), *dgb = out + 3 * T_BN;
    fill(x, T_BN, 200, -3, 5);
    fill(dy, T_BN, 201, -1, 1);
    fill(s.gamma, 5, 202, 0.5, 2);
    memset(dgb, 0, 10 * sizeof *dgb);
    kp_bn_forward_train(&s, 8, 300, x, out, NULL, threads);
    kp_bn_backward(&s, 8, 300, x, dy, out + T_BN, dgb, dgb + 5, NULL, threads);
    kp_bn_forward_eval(&s, 8, 300, x, out + 2 * T_BN, threads);
    memcpy(dgb + 10, s.gamma, 6 * 5 * sizeof *out);
    free(s.gamma), free(x), free(dy);
    return 3 * T_BN + 40;
}

static size_t elementwise_case(int threads, float *out)
{
    float *x = fvec(T_EW), *x2 = fvec(T_EW);
    fill(x, T_EW, 210, -1, 1);
    fill(x2, T_EW, 211, -1, 1);
    kp_leaky_forward(T_EW, 0.1f, x, out, threads);
    kp_leaky_backward(T_EW, 0.1f, x, x2, out + T_EW, threads);
    kp_dropout_forward(T_EW, 0.5f, 9, x, out + 2 * T_EW, out + 3 * T_EW, threads);
    kp_dropout_backward(T_EW, out + 3 * T_EW, x2, out + 4 * T_EW, threads);
    kp_add_forward(T_EW, x, x2, out + 5 * T_EW, threads);
    free(x), free(x2);
    return 6 * (size_t)T_EW;
}

static size_t concat_case(int threads, float *out)
{
    float *a = fvec(T_CAT), *b = fvec(T_CAT);
    fill(a, T_CAT, 220, -1, 1);
    kp_concat_forward(9, 5, 0, 50, a, b, out, threads);
    kp_concat_forward(9, 2, 3, 50, a, a + 9 * 2 * 50, out + T_CAT, threads);
    kp_concat_backward(9, 3, 2, 50, a, out + 2 * T_CAT, out + 2 * T_CAT + 9 * 3 * 50, threads);
    free(a), free(b);
    return 3 * T_CAT;
}

static size_t linear_case(int threads, float *out)
{
    size_t nx = T_LN * T_LI, nw = T_LO * T_LI, ny = T_LN * T_LO;
    float *x = fvec(nx), *W = fvec(nw), *b = fvec(T_LO), *dy = fvec(ny);
    fill(x, nx, 230, -1, 1);
    fill(W, nw, 231, -1, 1);
    fill(b, T_LO, 232, -1, 1);
    fill(dy, ny, 233, -1, 1);
    kp_linear_forward(T_LN, T_LI, T_LO, x, W, b, out, threads);
    float *dx = out + ny, *dW = dx + nx, *db = dW + nw;
    memset(dW, 0, (nw + T_LO) * sizeof *dW);
    kp_linear_backward(T_LN, T_LI, T_LO, x, W, dy, dx, dW, db, NULL, threads);
    free(x), free(W), free(b), free(dy);
    return ny + nx + nw + T_LO;
}

static void test_kernels_give_the_same_bits_on_1_2_and_3_threads(void **state)
{
    (void)state;
    static const struct { const char *name; thread_case run; } cases[] = {
        { "batch norm", bn_case }, { "element-wise", elementwise_case },
        { "concat", concat_case }, { "linear", linear_case },
    };
    size_t cap = 6 * (size_t)T_EW;
    float *ref = fvec(cap), *got = fvec(cap);
    int old = openblas_get_num_threads();
    openblas_set_num_threads(1);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t n = cases[c].run(1, ref);
        assert_true(n <= cap);
        for (int threads = 2; threads <= 3; threads++) {
            memset(got, 0xff, cap * sizeof *got);
            cases[c].run(threads, got);
            if (memcmp(ref, got, n * sizeof *got) != 0)
                fail_msg("%s: %d threads differ from 1", cases[c].name, threads);
        }
    }
    openblas_set_num_threads(old);
    free(ref), free(got);
}

KP_TEST_GROUP(nn_kernels)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_bn_backward_matches_finite_differences),
        cmocka_unit_test(test_bn_train_forward_matches_torch_and_updates_running_stats),
        cmocka_unit_test(test_bn_backward_matches_torch),
        cmocka_unit_test(test_bn_eval_forward_uses_running_stats_like_torch),
        cmocka_unit_test(test_bn_in_place_passes_give_the_same_bits),
        cmocka_unit_test(test_bn_fused_leaky_equals_bn_then_leaky),
        cmocka_unit_test(test_bn_statistics_survive_a_large_mean),
        cmocka_unit_test(test_leaky_backward_matches_finite_differences),
        cmocka_unit_test(test_leaky_forward_values_and_in_place),
        cmocka_unit_test(test_dropout_backward_matches_finite_differences),
        cmocka_unit_test(test_dropout_drops_about_p_and_scales_the_rest),
        cmocka_unit_test(test_add_backward_is_dy_to_both_inputs),
        cmocka_unit_test(test_concat_backward_matches_finite_differences),
        cmocka_unit_test(test_concat_places_channels_of_a_before_b),
        cmocka_unit_test(test_linear_backward_matches_finite_differences),
        cmocka_unit_test(test_linear_forward_is_x_times_w_transposed_plus_b),
        cmocka_unit_test(test_parameter_gradients_accumulate),
        cmocka_unit_test(test_backward_passes_skip_null_input_gradients),
        cmocka_unit_test(test_loss_gradients_match_finite_differences),
        cmocka_unit_test(test_softmax_ce_matches_torch_and_is_stable_at_100),
        cmocka_unit_test(test_sigmoid_bce_matches_torch_and_is_stable_at_100),
        cmocka_unit_test(test_kernels_give_the_same_bits_on_1_2_and_3_threads),
    };
    return KP_RUN(nn_kernels, t);
}

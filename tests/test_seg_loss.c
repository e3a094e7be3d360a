/* test_seg_loss.c - segmentation losses: parsing, values against PyTorch 1.13,
 * gradients against finite differences, thread and SIMD invariance.
 *
 * The expected values were computed once with PyTorch 1.13 (float32, one
 * thread) on the inputs below: F.binary_cross_entropy_with_logits and
 * F.cross_entropy (mean), and the soft Dice / Jaccard of seg_loss.h on
 * torch.sigmoid / torch.softmax(dim=1) with one-hot targets for classes 1..C-1.
 */
#include "kp_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/err.h"
#include "../models/nn/seg_loss.h"

/* ---- fixtures: exactly representable logits, replayed in the PyTorch script ---- */

/* C = 1, n = 2, 4 x 5: image 0 has a mask, image 1 is empty. */
static void inputs1(float z[40], float y[40])
{
    for (int i = 0; i < 40; i++) {
        z[i] = (float)((i * 37) % 41 - 20) * 0.25f;
        y[i] = i < 20 && (i * 11) % 7 < 3;
    }
}

/* C = 3, n = 2, 4 x 5, class indices. */
static void inputs3(float z[120], float y[40])
{
    for (int i = 0; i < 120; i++)
        z[i] = (float)((i * 29) % 43 - 21) * 0.125f;
    for (int j = 0; j < 40; j++)
        y[j] = (float)((j * 5 + j / 7) % 3);
}

/* Random logits in [-scale, scale] and targets for c channels (xorshift). */
static void random_inputs(int n, int c, int P, float scale, float *z, float *y, uint64_t seed)
{
    uint64_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < (size_t)n * c * P + (size_t)n * P; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        double u = (double)(s >> 11) / 9007199254740992.0;
        if (i < (size_t)n * c * P)
            z[i] = (float)((2 * u - 1) * scale);
        else
            y[i - (size_t)n * c * P] = c == 1 ? (float)(u < 0.4) : (float)(int)(u * c);
    }
}

/* Evaluates L with a workspace of exactly the size asked for. */
static double eval(const kp_seg_loss *L, int n, int c, int P, const float *z, const float *y,
                   float *p, float *dz, int threads)
{
    float *ws = malloc(sizeof(float) * kp_seg_loss_workspace(n, c, P, threads));
    assert_non_null(ws);
    double v = kp_seg_loss_eval(L, n, c, P, z, y, p, dz, ws, threads);
    free(ws);
    return v;
}

/* ---- parsing ---- */

typedef struct parse_case { const char *s; float bce, dice, jaccard; } parse_case;

static void test_seg_loss_parse_accepts_terms_sums_and_weights(void **state)
{
    (void)state;
    static const parse_case cases[] = {
        { "bce", 1, 0, 0 },
        { "ce", 1, 0, 0 },
        { "dice", 0, 1, 0 },
        { "jaccard", 0, 0, 1 },
        { "bce+dice", 1, 1, 0 },
        { " bce + jaccard ", 1, 0, 1 },
        { "0.5*bce+2*dice", 0.5f, 2, 0 },
        { "0.5 * ce + 2 * dice + 0.25*jaccard", 0.5f, 2, 0.25f },
        { "1e-1*dice+3*bce", 3, 0.1f, 0 },
        { ".5*jaccard", 0, 0, 0.5f },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kp_seg_loss L = { -1, -1, -1 };
        char err[KP_ERRLEN] = "";
        int rc = kp_seg_loss_parse(cases[i].s, &L, err, sizeof err);
        if (rc != 0)
            fail_msg("\"%s\": %s", cases[i].s, err);
        assert_true(L.bce == cases[i].bce && L.dice == cases[i].dice &&
                    L.jaccard == cases[i].jaccard);
    }
}

typedef struct bad_case { const char *s, *msg; } bad_case;

static void test_seg_loss_parse_rejects_bad_terms_with_message(void **state)
{
    (void)state;
    static const bad_case cases[] = {
        { "", "loss \"\": expected a term (bce, ce, dice or jaccard) at column 1" },
        { "focal", "loss \"focal\": unknown term \"focal\" (terms: bce, ce, dice, jaccard)" },
        { "bce+", "loss \"bce+\": expected a term (bce, ce, dice or jaccard) at column 5" },
        { "bce dice", "loss \"bce dice\": expected '+' or the end at column 5, not 'd'" },
        { "dice*2", "loss \"dice*2\": expected '+' or the end at column 5, not '*'" },
        { "2 dice", "loss \"2 dice\": expected '*' after the weight \"2\" at column 3" },
        { "0*bce", "loss \"0*bce\": weight \"0\" must be a positive finite number" },
        { "-1*bce", "loss \"-1*bce\": weight \"-1\" must be a positive finite number" },
        { "1e99*bce", "loss \"1e99*bce\": weight \"1e99\" must be a positive finite number" },
        { "bce+ce", "loss \"bce+ce\": term \"ce\" appears twice (bce and ce are the same term)" },
        { "dice+0.5*dice", "loss \"dice+0.5*dice\": term \"dice\" appears twice" },
        { "BCE", "loss \"BCE\": unknown term \"BCE\" (terms: bce, ce, dice, jaccard)" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kp_seg_loss L = { 7, 8, 9 };
        char err[KP_ERRLEN] = "";
        assert_int_equal(kp_seg_loss_parse(cases[i].s, &L, err, sizeof err), KP_ERR_ARG);
        assert_string_equal(err, cases[i].msg);
        assert_true(L.bce == 7 && L.dice == 8 && L.jaccard == 9);
    }
}

/* ---- values ---- */

typedef struct value_case { kp_seg_loss L; double want; } value_case;

static void check_values(const value_case *cases, size_t n_cases, int c, const float *z,
                         const float *y)
{
    for (size_t i = 0; i < n_cases; i++) {
        double got = eval(&cases[i].L, 2, c, 20, z, y, NULL, NULL, 1);
        if (!(fabs(got - cases[i].want) <= 2e-6 * fabs(cases[i].want)))
            fail_msg("case %zu: %.9g, PyTorch %.9g", i, got, cases[i].want);
    }
}

static void test_seg_loss_binary_matches_pytorch(void **state)
{
    (void)state;
    float z[40], y[40];
    inputs1(z, y);
    static const value_case cases[] = {
        { { 1, 0, 0 }, 1.5508761405944824 },
        { { 0, 1, 0 }, 0.7205284237861633 },
        { { 0, 0, 1 }, 0.7911280393600464 },
        { { 0.5f, 2, 1 }, 3.0076229572296143 },
    };
    check_values(cases, sizeof cases / sizeof cases[0], 1, z, y);
}

static void test_seg_loss_multiclass_matches_pytorch(void **state)
{
    (void)state;
    float z[120], y[40];
    inputs3(z, y);
    static const value_case cases[] = {
        { { 1, 0, 0 }, 1.731182336807251 },
        { { 0, 1, 0 }, 0.6069928407669067 },
        { { 0, 0, 1 }, 0.7203482389450073 },
        { { 0.5f, 2, 1 }, 2.7999250888824463 },
    };
    check_values(cases, sizeof cases / sizeof cases[0], 3, z, y);
}

/* Logits of +-1e4 saturate without overflow: values as PyTorch's, finite gradients. */
static void test_seg_loss_extreme_logits_stay_finite_and_match_pytorch(void **state)
{
    (void)state;
    static const float z1[] = { 200, -200, 1e4f, -1e4f, 30, -30, 0.5f, -0.5f };
    static const float y1[] = { 1, 0, 0, 1, 1, 1, 0, 1 };
    static const float z3[] = { 300, -300, 0, 1e4f, 0, 0, 5, -1e4f, -300, 300, 0, 0 };
    static const float y3[] = { 0, 1, 2, 0 };
    static const struct { int c, P; const float *z, *y; kp_seg_loss L; double want; } cases[] = {
        { 1, 8, z1, y1, { 1, 0, 0 }, 2503.99365234375 },
        { 1, 8, z1, y1, { 0, 1, 0 }, 0.42449188232421875 },
        { 1, 8, z1, y1, { 0, 0, 1 }, 0.5568962097167969 },
        { 3, 4, z3, y3, { 1, 0, 0 }, 76.25334930419922 },
        { 3, 4, z3, y3, { 0, 1, 0 }, 0.6640819907188416 },
        { 3, 4, z3, y3, { 0, 0, 1 }, 0.6648166179656982 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        float dz[12], p[12];
        double got = eval(&cases[i].L, 1, cases[i].c, cases[i].P, cases[i].z, cases[i].y, p,
                          dz, 1);
        if (!(fabs(got - cases[i].want) <= 2e-6 * fabs(cases[i].want)))
            fail_msg("case %zu: %.9g, PyTorch %.9g", i, got, cases[i].want);
        for (int k = 0; k < cases[i].c * cases[i].P; k++)
            assert_true(isfinite(dz[k]) && p[k] >= 0 && p[k] <= 1);
    }
}

/* Confident right logits keep their tiny BCE (log1p, not log(1 + e), which is
 * 0 in float; PyTorch 1.13 returns 0 here), against the double formula. */
static void test_seg_loss_confident_logits_keep_their_tiny_bce(void **state)
{
    (void)state;
    static const float z[] = { 20, -20, 17, -17 }, y[] = { 1, 0, 1, 0 };
    kp_seg_loss L = { 1, 0, 0 };
    double got = eval(&L, 1, 1, 4, z, y, NULL, NULL, 1), want = 2.173026497560593e-08;
    if (!(fabs(got - want) <= 1e-6 * want))
        fail_msg("%.9g, want %.9g", got, want);
}

/* A NaN logit (a diverged net) makes every term NaN, for one and three channels. */
static void test_seg_loss_nan_logit_makes_the_loss_nan(void **state)
{
    (void)state;
    static const kp_seg_loss terms[] = { { 1, 0, 0 }, { 0, 1, 0 }, { 0, 0, 1 } };
    float z1[40], y1[40], z3[120], y3[40];
    inputs1(z1, y1);
    inputs3(z3, y3);
    z1[27] = NAN;
    z3[47] = -NAN;
    for (size_t i = 0; i < 3; i++) {
        assert_true(isnan(eval(&terms[i], 2, 1, 20, z1, y1, NULL, NULL, 1)));
        assert_true(isnan(eval(&terms[i], 2, 3, 20, z3, y3, NULL, NULL, 1)));
    }
}

/* p is sigmoid(z) for one channel and the softmax over channels for three. */
static void test_seg_loss_probabilities_are_sigmoid_and_softmax(void **state)
{
    (void)state;
    float z1[40], y1[40], z3[120], y3[40], p[120];
    kp_seg_loss L = { 1, 1, 0 };
    inputs1(z1, y1);
    eval(&L, 2, 1, 20, z1, y1, p, NULL, 1);
    for (int i = 0; i < 40; i++)
        assert_float_equal(p[i], 1 / (1 + exp(-(double)z1[i])), 2e-7);
    inputs3(z3, y3);
    eval(&L, 2, 3, 20, z3, y3, p, NULL, 1);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 20; j++) {
            const float *zi = z3 + i * 60 + j;
            double s = exp(zi[0]) + exp(zi[20]) + exp(zi[40]);
            for (int k = 0; k < 3; k++)
                assert_float_equal(p[i * 60 + k * 20 + j], exp(zi[k * 20]) / s, 2e-7);
        }
}

/* The loss is the same whether p and dz are wanted or not. */
static void test_seg_loss_p_and_dz_are_optional(void **state)
{
    (void)state;
    float z[120], y[40], p[120], dz[120];
    kp_seg_loss L = { 0.5f, 2, 1 };
    inputs3(z, y);
    double a = eval(&L, 2, 3, 20, z, y, NULL, NULL, 1);
    double b = eval(&L, 2, 3, 20, z, y, p, dz, 1);
    assert_true(a == b);
}

/* ---- gradients ---- */

/* Checks dz against central differences of the loss, one logit at a time. */
static void check_gradient(const kp_seg_loss *L, int n, int c, int P, const float *z0,
                           const float *y)
{
    size_t count = (size_t)n * c * P;
    float *z = malloc(sizeof(float) * count), *dz = malloc(sizeof(float) * count);
    assert_true(z && dz);
    memcpy(z, z0, sizeof(float) * count);
    eval(L, n, c, P, z, y, NULL, dz, 1);
    double gmax = 0;
    for (size_t k = 0; k < count; k++)
        gmax = fmax(gmax, fabs(dz[k]));
    assert_true(gmax > 0);
    const float h = 1e-2f;
    for (size_t k = 0; k < count; k++) {
        z[k] = z0[k] + h;
        double up = eval(L, n, c, P, z, y, NULL, NULL, 1);
        z[k] = z0[k] - h;
        double down = eval(L, n, c, P, z, y, NULL, NULL, 1);
        z[k] = z0[k];
        double fd = (up - down) / ((double)(z0[k] + h) - (double)(z0[k] - h));
        if (!(fabs(fd - dz[k]) <= 1e-3 * gmax))
            fail_msg("logit %zu: dz %.9g, finite difference %.9g (max |dz| %.3g)", k,
                     (double)dz[k], fd, gmax);
    }
    free(z);
    free(dz);
}

static const kp_seg_loss grad_losses[] = {
    { 1, 0, 0 }, { 0, 1, 0 }, { 0, 0, 1 }, { 0.5f, 2, 1 },
};

static void test_seg_loss_binary_gradient_matches_finite_differences(void **state)
{
    (void)state;
    float z[40], y[40];
    inputs1(z, y);
    for (int i = 0; i < 40; i++)
        z[i] *= 0.5f;       /* logits in [-2.5, 2.5]: every pixel has a gradient */
    for (size_t i = 0; i < sizeof grad_losses / sizeof grad_losses[0]; i++)
        check_gradient(&grad_losses[i], 2, 1, 20, z, y);
}

static void test_seg_loss_soft_target_gradient_matches_finite_differences(void **state)
{
    (void)state;
    float z[40], y[40];
    inputs1(z, y);
    for (int i = 0; i < 40; i++) {
        z[i] *= 0.5f;
        y[i] = (float)(i % 5) * 0.25f;
    }
    for (size_t i = 0; i < sizeof grad_losses / sizeof grad_losses[0]; i++)
        check_gradient(&grad_losses[i], 2, 1, 20, z, y);
}

static void test_seg_loss_multiclass_gradient_matches_finite_differences(void **state)
{
    (void)state;
    float z[120], y[40];
    inputs3(z, y);
    for (size_t i = 0; i < sizeof grad_losses / sizeof grad_losses[0]; i++)
        check_gradient(&grad_losses[i], 2, 3, 20, z, y);
}

/* ---- invariance ---- */

typedef struct run_out { double loss; float *p, *dz; } run_out;

static run_out run(const kp_seg_loss *L, int n, int c, int P, const float *z, const float *y,
                   int threads)
{
    size_t count = (size_t)n * c * P;
    run_out r = { 0, malloc(sizeof(float) * count), malloc(sizeof(float) * count) };
    assert_true(r.p && r.dz);
    r.loss = eval(L, n, c, P, z, y, r.p, r.dz, threads);
    return r;
}

static void assert_same_run(run_out a, run_out b, size_t count)
{
    assert_memory_equal(&a.loss, &b.loss, sizeof a.loss);
    assert_memory_equal(a.p, b.p, sizeof(float) * count);
    assert_memory_equal(a.dz, b.dz, sizeof(float) * count);
    free(b.p);
    free(b.dz);
}

static void test_seg_loss_same_bits_for_any_thread_count(void **state)
{
    (void)state;
    static const int shapes[][3] = { { 7, 1, 1000 }, { 5, 3, 333 } };
    kp_seg_loss L = { 0.5f, 2, 1 };
    for (size_t s = 0; s < 2; s++) {
        int n = shapes[s][0], c = shapes[s][1], P = shapes[s][2];
        size_t count = (size_t)n * c * P;
        float *z = malloc(sizeof(float) * count), *y = malloc(sizeof(float) * n * P);
        assert_true(z && y);
        random_inputs(n, c, P, 6, z, y, 11 + s);
        run_out one = run(&L, n, c, P, z, y, 1);
        for (int t = 2; t <= 8; t *= 2)
            assert_same_run(one, run(&L, n, c, P, z, y, t), count);
        free(one.p);
        free(one.dz);
        free(z);
        free(y);
    }
}

/* The AVX-512 path (where the CPU has it) and the SSE path give the same
 * bits, on large logits and on partial last blocks. */
static void test_seg_loss_simd_and_sse_paths_give_the_same_bits(void **state)
{
    (void)state;
    static const int shapes[][3] = { { 3, 1, 4099 }, { 2, 4, 1027 } };
    kp_seg_loss L = { 1, 1, 1 };
    for (size_t s = 0; s < 2; s++) {
        int n = shapes[s][0], c = shapes[s][1], P = shapes[s][2];
        size_t count = (size_t)n * c * P;
        float *z = malloc(sizeof(float) * count), *y = malloc(sizeof(float) * n * P);
        assert_true(z && y);
        random_inputs(n, c, P, 90, z, y, 5 + s);
        run_out simd = run(&L, n, c, P, z, y, 2);
        kp_seg_loss_set_simd(0);
        run_out sse = run(&L, n, c, P, z, y, 2);
        kp_seg_loss_set_simd(1);
        assert_same_run(simd, sse, count);
        free(simd.p);
        free(simd.dz);
        free(z);
        free(y);
    }
}

KP_TEST_GROUP(seg_loss)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_seg_loss_parse_accepts_terms_sums_and_weights),
        cmocka_unit_test(test_seg_loss_parse_rejects_bad_terms_with_message),
        cmocka_unit_test(test_seg_loss_binary_matches_pytorch),
        cmocka_unit_test(test_seg_loss_multiclass_matches_pytorch),
        cmocka_unit_test(test_seg_loss_extreme_logits_stay_finite_and_match_pytorch),
        cmocka_unit_test(test_seg_loss_confident_logits_keep_their_tiny_bce),
        cmocka_unit_test(test_seg_loss_nan_logit_makes_the_loss_nan),
        cmocka_unit_test(test_seg_loss_probabilities_are_sigmoid_and_softmax),
        cmocka_unit_test(test_seg_loss_p_and_dz_are_optional),
        cmocka_unit_test(test_seg_loss_binary_gradient_matches_finite_differences),
        cmocka_unit_test(test_seg_loss_soft_target_gradient_matches_finite_differences),
        cmocka_unit_test(test_seg_loss_multiclass_gradient_matches_finite_differences),
        cmocka_unit_test(test_seg_loss_same_bits_for_any_thread_count),
        cmocka_unit_test(test_seg_loss_simd_and_sse_paths_give_the_same_bits),
    };
    return KP_RUN(seg_loss, t);
}

/* test_knn.c - the knn model: hand-computed and scikit-learn predictions,
 * neighbours against a brute-force reference, checkpoints, determinism.
 *
 * The sk_* reference values were computed once with scikit-learn 1.2
 * (KNeighborsClassifier.predict_proba / KNeighborsRegressor.predict,
 * algorithm='brute') on the same float32 values, and pasted with %.17g; the
 * fixture has no distance ties at the k-th neighbour (checked offline), so
 * scikit-learn's unspecified tie order does not matter.
 */
#include "kp_test.h"
#include "model_fixture.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "../lib/err.h"
#include "../lib/rng.h"
#include "../models/metric.h"
#include "../models/model.h"

extern const kp_model_ops kp_model_knn;

/* ---- reference data (scikit-learn 1.2) ---- */

static const float sk_X[] = {
    0.30f, -1.04f, 0.75f, 0.94f, -1.95f, -1.30f,
    0.13f, -0.32f, -0.02f, -0.85f, 0.88f, 0.78f,
    0.07f, 1.13f, 0.47f, -0.86f, 0.37f, -0.96f,
    0.88f, -0.05f, -0.18f, -0.68f, 1.22f, -0.15f,
    -0.43f, -0.35f, 0.53f, 0.37f, 0.41f, 0.43f,
    2.14f, -0.41f, -0.51f, -0.81f, 0.62f, 1.13f,
    -0.11f, -0.84f, -0.82f, 0.65f, 0.74f, 0.54f,
    -0.67f, 0.23f, 0.12f, 0.22f, 0.87f, 0.22f,
    0.68f, 0.07f, 0.29f, 0.63f, -1.46f, -0.32f,
    -0.47f, -0.64f, -0.28f, 1.49f, -0.87f, 0.97f,
    -1.68f, -0.33f, 0.16f, 0.59f, 0.71f, 0.79f,
    -0.35f, -0.46f, 0.86f, -0.19f, -1.28f, -1.13f,
};
static const float sk_Q[] = {
    -0.92f, 0.50f, 0.14f, 0.69f, -0.43f, 0.16f,
    0.63f, -0.31f, 0.46f, -0.66f, -0.36f, -0.38f,
    -1.20f, 0.49f, -0.47f, 0.01f, 0.48f, 0.45f,
    0.67f, -0.10f, -0.42f, -0.08f, -1.69f, -1.45f,
};
static const float sk_yc[] = {
    1, 0, 1, 2, 1, 2, 1, 2, 1, 0, 2, 2, 0, 2, 0, 2, 2, 1, 2, 0, 0, 0, 1, 2,
};
static const float sk_yr[] = {
    2.52f, -5.18f, 1.30f, 0.71f, -1.78f, -4.34f, 0.22f, -1.59f,
    0.70f, 0.07f, 4.81f, -0.72f, -3.07f, 0.54f, 0.66f, 4.08f,
    2.51f, 1.07f, 4.39f, -3.57f, -1.92f, -2.78f, -1.17f, -4.13f,
};
static const double sk_proba_euclidean_uniform_5[] = {
    0.20000000000000001, 0.20000000000000001, 0.59999999999999998,
    0.20000000000000001, 0.59999999999999998, 0.20000000000000001,
    0.20000000000000001, 0.59999999999999998, 0.20000000000000001,
    0.40000000000000002, 0.40000000000000002, 0.20000000000000001,
    0.40000000000000002, 0, 0.59999999999999998,
    0.40000000000000002, 0.20000000000000001, 0.40000000000000002,
    0.40000000000000002, 0.40000000000000002, 0.20000000000000001,
    0.40000000000000002, 0.20000000000000001, 0.40000000000000002,
};
static const double sk_reg_euclidean_uniform_5[] = {
    -0.048000013828277587, 1.3239999845623971, 1.3239999845623971, 0.79599997997283933,
    -1.2960000276565551, 0.026000000536441803, 0.20600000172853469, -1.3839999914169312,
};
static const double sk_proba_euclidean_distance_5[] = {
    0.37553961429437199, 0.13107704481993912, 0.49338334088568891,
    0.14055725878540781, 0.60413678320131226, 0.25530595801327999,
    0.17023262446088447, 0.51872797902280088, 0.31103939651631474,
    0.32811105432276882, 0.2948254614843816, 0.37706348419284952,
    0.37680470620942186, 0, 0.62319529379057803,
    0.45383047411720367, 0.16826130832897476, 0.37790821755382142,
    0.23802017026819172, 0.58454639128543007, 0.17743343844637827,
    0.36806180266963273, 0.14416274597924267, 0.48777545135112466,
};
static const double sk_reg_euclidean_distance_5[] = {
    0.10089630138646127, 1.346526822567097, 1.461993182249234, 1.5878681140184057,
    -1.6657284845787761, 0.274989484799538, 0.43388664111530323, -2.3507057520599108,
};
static const double sk_proba_cosine_distance_4[] = {
    0.85064725834517951, 0, 0.14935274165482046,
    0.54704080455323278, 0.14134007342940508, 0.31161912201736208,
    0.94188758973089792, 0.017343688584814335, 0.040768721684287836,
    0.22060060650910218, 0, 0.77939939349089782,
    0.44788852415944896, 0, 0.55211147584055098,
    0.40409350489221796, 0.41388534594104925, 0.18202114916673273,
    0.079347863743276265, 0.38735820547881927, 0.53329393077790443,
    0.4451727044379355, 0, 0.55482729556206456,
};
static const double sk_reg_cosine_distance_4[] = {
    0.39405325627514876, -0.72380723382155754, -3.1900381842037899, 0.49160255358404886,
    -2.0452322238532585, -0.59095675972974371, 2.1093848259477155, -3.6219855857263688,
};
static const double sk_proba_cosine_uniform_3[] = {
    0.33333333333333331, 0, 0.66666666666666663,
    0.33333333333333331, 0.33333333333333331, 0.33333333333333331,
    0.33333333333333331, 0.33333333333333331, 0.33333333333333331,
    0.33333333333333331, 0, 0.66666666666666663,
    0.33333333333333331, 0, 0.66666666666666663,
    0.66666666666666663, 0.33333333333333331, 0,
    0.33333333333333331, 0.33333333333333331, 0.33333333333333331,
    0.66666666666666663, 0, 0.33333333333333331,
};
static const double sk_reg_cosine_uniform_3[] = {
    -0.073333342870076493, 0.48666666944821674, 0.48666667938232422, -0.62333341439565026,
    -1.7566667199134827, -1.4966666474938393, -0.04999996225039164, -4.1266666253407793,
};

/* ---- helpers ---- */

/* Returns params from {key, value, ..., NULL} (caller frees). */
static kp_params *params_of(const char *const *kv)
{
    kp_params *p = kp_params_create();
    assert_non_null(p);
    for (int i = 0; kv && kv[i]; i += 2)
        assert_int_equal(kp_params_set(p, kv[i], kv[i + 1], 0, 0), 0);
    return p;
}

/* Fits knn through kp_model_fit or fails the test; caller frees. */
static kp_model *fit(kp_task_kind task, int n_out, const float *X, int64_t rows, int64_t cols,
                     const float *y, const char *const *kv)
{
    kp_params *p = params_of(kv);
    kp_problem pb = { .task = task, .n_out = n_out };
    kp_matrix m = { X, rows, cols };
    kp_fit_opts o = { .seed = 1, .threads = 1 };
    kp_model *model = NULL;
    char err[KP_ERRLEN] = "";
    int rc = kp_model_fit(&kp_model_knn, p, &pb, &m, y, &o, &model, err, sizeof err);
    kp_params_free(p);
    if (rc != 0)
        fail_msg("fit knn: %s", err);
    return model;
}

/* Predicts rows x cols of X into a heap array of rows * n_out (caller frees). */
static float *predict(const kp_model *m, const float *X, int64_t rows, int64_t cols, int threads)
{
    kp_matrix Q = { X, rows, cols };
    float *out = malloc(sizeof *out * (size_t)rows * (size_t)kp_model_problem(m)->n_out);
    char err[KP_ERRLEN] = "";
    assert_non_null(out);
    if (kp_model_predict(m, &Q, out, threads, err, sizeof err) != 0)
        fail_msg("predict knn: %s", err);
    return out;
}

/* Fails unless |got[i] - want[i]| <= tol for each i. */
static void assert_close(const char *what, const float *got, const double *want, int n,
                         double tol)
{
    for (int i = 0; i < n; i++)
        if (!(fabs(got[i] - want[i]) <= tol))
            fail_msg("%s[%d]: got %.10g, want %.10g (tol %g)", what, i, got[i], want[i], tol);
}

/* ---- hand-computed predictions ---- */

/* Five points in the plane: distances from (0, 0) are 0, 1, 2, 4, 5. */
static const float hand_X[] = { 0, 0, 1, 0, 0, 2, 4, 0, 0, -5 };
static const float hand_class[] = { 0, 1, 1, 0, 2 };
static const float hand_value[] = { 1, 2, 4, 8, 16 };

static void test_knn_euclidean_predictions_equal_hand_computed_values(void **state)
{
    (void)state;
    static const char *const u3[] = { "n_neighbors", "3", NULL };
    static const char *const d3[] = { "n_neighbors", "3", "weights", "distance", NULL };
    static const char *const d2[] = { "n_neighbors", "2", "weights", "distance", NULL };
    static const float q[] = { 0.5f, 0, 0, 3 };
    double r5 = sqrt(4.25);
    kp_model *c = fit(KP_TASK_MULTICLASS, 3, hand_X, 5, 2, hand_class, u3);
    kp_model *r = fit(KP_TASK_REGRESSION, 1, hand_X, 5, 2, hand_value, d3);
    kp_model *r2 = fit(KP_TASK_REGRESSION, 1, hand_X, 5, 2, hand_value, d2);
    float *pc = predict(c, q, 2, 2, 1), *pr = predict(r, q, 2, 2, 1);
    float *pr2 = predict(r2, q, 2, 2, 1);
    /* (0.5, 0): rows 0 and 1 at 0.5, row 2 at sqrt(4.25), then 3.5 and 5.02;
     * (0, 3): rows 2 at 1, 0 at 3, 1 at sqrt(10), then 5 and 8 */
    double want_c[] = { 1 / 3.0, 2 / 3.0, 0, 1 / 3.0, 2 / 3.0, 0 };
    double want_r[] = { (1 / 0.5 + 2 / 0.5 + 4 / r5) / (2 / 0.5 + 1 / r5),
                        (4 / 1.0 + 1 / 3.0 + 2 / sqrt(10.0)) / (1 + 1 / 3.0 + 1 / sqrt(10.0)) };
    double want_r2[] = { (1 + 2) / 2.0, (4 / 1.0 + 1 / 3.0) / (1 + 1 / 3.0) };
    assert_close("class", pc, want_c, 6, 1e-7);
    assert_close("distance-weighted value", pr, want_r, 2, 1e-6);
    assert_close("2-nn value", pr2, want_r2, 2, 1e-6);
    free(pc);
    free(pr);
    free(pr2);
    kp_model_free(c);
    kp_model_free(r);
    kp_model_free(r2);
}

static void test_knn_cosine_predictions_equal_hand_computed_values(void **state)
{
    (void)state;
    static const float X[] = { 1, 0, 0, 1, 1, 1, -1, 0 };
    static const float y[] = { 1, 2, 4, 8 };
    static const float q[] = { 1, 2 };
    static const char *const u2[] = { "n_neighbors", "2", "metric", "cosine", NULL };
    static const char *const d2[] = { "n_neighbors", "2", "metric", "cosine", "weights",
                                      "distance", NULL };
    /* cos((1,2), .) = 1/sqrt5, 2/sqrt5, 3/sqrt10, -1/sqrt5: nearest rows 2 then 1 */
    double d_2 = 1 - 3 / sqrt(10.0), d_1 = 1 - 2 / sqrt(5.0);
    double want_u = (4 + 2) / 2.0, want_d = (4 / d_2 + 2 / d_1) / (1 / d_2 + 1 / d_1);
    kp_model *u = fit(KP_TASK_REGRESSION, 1, X, 4, 2, y, u2);
    kp_model *d = fit(KP_TASK_REGRESSION, 1, X, 4, 2, y, d2);
    float *pu = predict(u, q, 1, 2, 1), *pd = predict(d, q, 1, 2, 1);
    assert_close("uniform", pu, &want_u, 1, 1e-6);
    assert_close("distance", pd, &want_d, 1, 1e-5);
    free(pu);
    free(pd);
    kp_model_free(u);
    kp_model_free(d);
}

static void test_knn_exact_match_takes_all_the_weight_with_distance_weights(void **state)
{
    (void)state;
    /* rows 0 and 3 equal the query (euclidean), rows 0, 3 and 4 point its way (cosine) */
    static const float X[] = { 1, 1, 0, 1, 3, 0, 1, 1, 2, 2 };
    static const float y[] = { 10, 20, 30, 40, 50 };
    static const float q[] = { 1, 1 };
    static const char *const e[] = { "n_neighbors", "4", "weights", "distance", NULL };
    static const char *const c[] = { "n_neighbors", "4", "weights", "distance", "metric", "cosine",
                                     NULL };
    double want_e = (10 + 40) / 2.0, want_c = (10 + 40 + 50) / 3.0;
    kp_model *me = fit(KP_TASK_REGRESSION, 1, X, 5, 2, y, e);
    kp_model *mc = fit(KP_TASK_REGRESSION, 1, X, 5, 2, y, c);
    float *pe = predict(me, q, 1, 2, 1), *pc = predict(mc, q, 1, 2, 1);
    assert_close("euclidean", pe, &want_e, 1, 0);
    assert_close("cosine", pc, &want_c, 1, 1e-5);
    free(pe);
    free(pc);
    kp_model_free(me);
    kp_model_free(mc);
}

static void test_knn_distance_ties_go_to_the_lower_train_row(void **state)
{
    (void)state;
    /* every row is at distance 1 from the query (0, 0); the 3 nearest are rows 0, 1, 2 */
    static const float X[] = { 1, 0, 0, 1, -1, 0, 0, -1, 1, 0, 0, 1 };
    static const float y[] = { 1, 2, 4, 8, 16, 32 };
    static const float q[] = { 0, 0 };
    static const char *const u3[] = { "n_neighbors", "3", NULL };
    kp_model *m = fit(KP_TASK_REGRESSION, 1, X, 6, 2, y, u3);
    float *p = predict(m, q, 1, 2, 1);
    double want = (1 + 2 + 4) / 3.0;
    assert_close("tied", p, &want, 1, 1e-6);   /* rows 0, 1, 3 would give 11/3 */
    free(p);
    kp_model_free(m);
}

/* ---- scikit-learn ---- */

typedef struct sk_case {
    const char *metric, *weights, *k;
    const double *proba, *reg;
    double tol;
} sk_case;

static void test_knn_matches_scikit_learn_on_a_fixed_set(void **state)
{
    (void)state;
    static const sk_case cases[] = {
        { "euclidean", "uniform", "5", sk_proba_euclidean_uniform_5, sk_reg_euclidean_uniform_5,
          1e-6 },
        { "euclidean", "distance", "5", sk_proba_euclidean_distance_5,
          sk_reg_euclidean_distance_5, 1e-6 },
        { "cosine", "distance", "4", sk_proba_cosine_distance_4, sk_reg_cosine_distance_4, 1e-6 },
        { "cosine", "uniform", "3", sk_proba_cosine_uniform_3, sk_reg_cosine_uniform_3, 1e-6 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const sk_case *c = &cases[i];
        const char *const kv[] = { "n_neighbors", c->k, "weights", c->weights, "metric", c->metric,
                                   NULL };
        kp_model *mc = fit(KP_TASK_MULTICLASS, 3, sk_X, 24, 3, sk_yc, kv);
        kp_model *mr = fit(KP_TASK_REGRESSION, 1, sk_X, 24, 3, sk_yr, kv);
        float *pc = predict(mc, sk_Q, 8, 3, 2), *pr = predict(mr, sk_Q, 8, 3, 2);
        char what[64];
        snprintf(what, sizeof what, "%s %s proba", c->metric, c->weights);
        assert_close(what, pc, c->proba, 24, c->tol);
        snprintf(what, sizeof what, "%s %s regression", c->metric, c->weights);
        assert_close(what, pr, c->reg, 8, c->tol * 10);
        free(pc);
        free(pr);
        kp_model_free(mc);
        kp_model_free(mr);
    }
}

/* ---- against a brute-force reference ---- */

typedef struct ref_nb { double dist; int j; } ref_nb;

static int ref_cmp(const void *a, const void *b)
{
    const ref_nb *x = a, *y = b;
    if (x->dist != y->dist)
        return x->dist < y->dist ? -1 : 1;
    return (x->j > y->j) - (x->j < y->j);
}

/* The mean train row index of the k nearest rows of q, by a full sort. */
static float ref_mean_index(const float *X, int n, int d, const float *q, int k, int cosine,
                            ref_nb *nb)
{
    for (int j = 0; j < n; j++) {
        double s = 0, qq = 0, xx = 0;
        for (int t = 0; t < d; t++) {
            double a = q[t], b = X[(size_t)j * d + t];
            s += cosine ? a * b : (a - b) * (a - b);
            qq += a * a;
            xx += b * b;
        }
        double c = qq > 0 && xx > 0 ? s / sqrt(qq * xx) : 0;
        nb[j] = (ref_nb){ cosine ? fmin(fmax(1 - c, 0), 2) : sqrt(s), j };
    }
    qsort(nb, (size_t)n, sizeof *nb, ref_cmp);
    double sum = 0, w = 0;
    for (int i = 0; i < k; i++) {
        sum += nb[i].j;
        w += 1;
    }
    return (float)(sum / w);
}

static void test_knn_neighbours_match_a_brute_force_reference(void **state)
{
    (void)state;
    /* small integer features: many exact distance ties, which must go to
     * the lower row; an offset of 1000 makes the float scores coarse next to
     * the distances, so the candidate margin has to do its job */
    enum { N = 3000, M = 600, D = 4, K = 7 };   /* 2 query blocks, 6 train chunks */
    static const struct { const char *metric; float offset; } cases[] = {
        { "euclidean", 0 }, { "euclidean", 1000 }, { "cosine", 0 }, { "cosine", 1000 },
    };
    float *X = malloc(sizeof *X * (N + M) * D), *y = malloc(sizeof *y * N);
    ref_nb *nb = malloc(sizeof *nb * N);
    kp_rng r;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        kp_rng_seed(&r, 5 + c);
        for (int i = 0; i < (N + M) * D; i++)
            X[i] = cases[c].offset + (float)kp_rng_below(&r, 4);
        for (int j = 0; j < N; j++)
            y[j] = (float)j;
        const char *const kv[] = { "n_neighbors", "7", "metric", cases[c].metric, NULL };
        kp_model *m = fit(KP_TASK_REGRESSION, 1, X, N, D, y, kv);
        float *p = predict(m, X + N * D, M, D, 2);
        for (int i = 0; i < M; i++) {
            float want = ref_mean_index(X, N, D, X + (N + i) * D, K, cases[c].metric[0] == 'c', nb);
            if (p[i] != want)
                fail_msg("%s offset %g, query %d: mean neighbour row %.9g, reference %.9g",
                         cases[c].metric, cases[c].offset, i, p[i], want);
        }
        free(p);
        kp_model_free(m);
    }
    free(X);
    free(y);
    free(nb);
}

/* ---- generated problems ---- */

typedef struct quality_case {
    kp_task_kind task;
    int n_out;
    const char *metric;
    double bound;   /* at least this (or at most, for lower-is-better metrics) */
} quality_case;

/* knn with k = 5 on 800 rows of 6 features learns a linear boundary less
 * sharply than logistic (whose bands in test_models.c are 0.93 / 0.98).
 * Each band sits a few points under the score measured on these seeds
 * (given beside it), so that a broken vote or neighbour search fails. */
static const quality_case quality[] = {
    { KP_TASK_BINARY, 1, "accuracy", 0.85 },      /* measured 0.8875 */
    { KP_TASK_BINARY, 1, "auc", 0.92 },           /* 0.9480 */
    { KP_TASK_MULTICLASS, 4, "accuracy", 0.78 },  /* 0.8225 */
    { KP_TASK_REGRESSION, 1, "rmse", 1.1 },       /* 0.9538; the sd of y is about 3.7 */
    { KP_TASK_MULTILABEL, 3, "auc", 0.93 },       /* 0.9653 */
};

static void test_knn_fits_generated_problems_within_accuracy_bands(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof quality / sizeof quality[0]; c++) {
        const quality_case *q = &quality[c];
        gen g = generate(q->task, q->n_out, 1200, 6, 100 + c);
        int yw = q->task == KP_TASK_MULTILABEL ? q->n_out : 1;
        kp_model *m = fit(q->task, q->n_out, g.X, 800, 6, g.y, NULL);
        float *pred = predict(m, g.X + 800 * 6, 400, 6, 2);
        const kp_metric_ops *mo = kp_metric_find(q->metric);
        kp_problem pb = { .task = q->task, .n_out = q->n_out };
        char err[KP_ERRLEN] = "";
        double s = 0;
        assert_int_equal(mo->score(&pb, g.y + 800 * yw, pred, 400, NULL, &s, err, sizeof err), 0);
        if (mo->greater_is_better ? s < q->bound : s > q->bound)
            fail_msg("knn %s: %s %.4f, bound %.4f", kp_task_name(q->task), q->metric, s,
                     q->bound);
        free(pred);
        kp_model_free(m);
        gen_free(&g);
    }
}

/* ---- checkpoints ---- */

static void test_knn_save_load_round_trip_predicts_identical_bits(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir();
    static const char *const kv[] = { "n_neighbors", "4", "weights", "distance", "metric",
                                      "cosine", NULL };
    for (size_t c = 0; c < sizeof quality / sizeof quality[0]; c++) {
        const quality_case *q = &quality[c];
        gen g = generate(q->task, q->n_out, 300, 5, 7 + c);
        kp_model *m = fit(q->task, q->n_out, g.X, 300, 5, g.y, c % 2 ? kv : NULL), *back = NULL;
        char err[KP_ERRLEN] = "", name[32];
        snprintf(name, sizeof name, "m%zu.safetensors", c);
        char *path = kp_test_join(dir, name);
        if (kp_model_save(m, path, err, sizeof err) != 0)
            fail_msg("save: %s", err);
        if (kp_model_load(path, &kp_model_knn, &back, err, sizeof err) != 0)
            fail_msg("load: %s", err);
        float *a = predict(m, g.X, 300, 5, 1), *b = predict(back, g.X, 300, 5, 2);
        assert_memory_equal(a, b, sizeof *a * 300 * (size_t)q->n_out);
        assert_int_equal(kp_model_problem(back)->task, q->task);
        assert_int_equal(kp_model_problem(back)->n_out, q->n_out);
        kp_st *st = NULL;   /* the checkpoint is the train rows and targets */
        assert_int_equal(kp_st_open(path, &st, err, sizeof err), 0);
        assert_int_equal(kp_st_count(st), 2);
        assert_int_equal(kp_st_find(st, "X")->numel, 300 * 5);
        assert_string_equal(kp_st_meta(st, "knn.n_neighbors"), c % 2 ? "4" : "5");
        kp_st_close(st);
        free(path);
        free(a);
        free(b);
        kp_model_free(m);
        kp_model_free(back);
        gen_free(&g);
    }
    free(dir);
}

/* One tensor of a hand-made checkpoint. */
typedef struct tspec {
    const char *name;
    kp_dtype dtype;
    int ndim;
    int64_t shape[2];
} tspec;

typedef struct bad_ckpt {
    const char *meta[8];    /* knn.* pairs, NULL-terminated */
    tspec t[2];
    int poke;               /* index of y (>= 0) or X (-1 - index) to overwrite */
    float value;
    const char *tail;       /* the message after "PATH: " */
} bad_ckpt;

#define GOOD_META "knn.n_neighbors", "2", "knn.weights", "uniform", "knn.metric", "euclidean"
#define GOOD_X { "X", KP_F32, 2, { 4, 2 } }
#define GOOD_Y { "y", KP_F32, 2, { 4, 1 } }

static const bad_ckpt bad[] = {
    { { GOOD_META, NULL }, { { "X", KP_F64, 2, { 4, 2 } }, GOOD_Y }, 0, 0,
      "tensor 'X' has dtype F64, expected F32" },
    { { GOOD_META, NULL }, { { "X", KP_F32, 1, { 8 } }, GOOD_Y }, 0, 0,
      "tensor 'X' has 1 dims, expected 2" },
    { { GOOD_META, NULL }, { GOOD_X, { "y", KP_F32, 2, { 3, 1 } } }, 0, 0,
      "tensor 'y' has shape [3, 1], expected [4, 1]" },
    { { GOOD_META, NULL }, { GOOD_X, { "z", KP_F32, 2, { 4, 1 } } }, 0, 0, "no tensor 'y'" },
    { { GOOD_META, NULL }, { GOOD_X, GOOD_Y }, 2, 3,
      "tensor 'y' holds 3 at row 2, not a valid multiclass target" },
    { { GOOD_META, NULL }, { GOOD_X, GOOD_Y }, -4, NAN,
      "tensor 'X' holds a non-finite value at row 1" },
    { { "knn.n_neighbors", "9", "knn.weights", "uniform", "knn.metric", "euclidean", NULL },
      { GOOD_X, GOOD_Y }, 0, 0, "knn.n_neighbors 9 is more than the 4 train rows" },
    { { "knn.n_neighbors", "2x", "knn.weights", "uniform", "knn.metric", "euclidean", NULL },
      { GOOD_X, GOOD_Y }, 0, 0, "metadata knn.n_neighbors '2x' is not a positive count" },
    { { "knn.n_neighbors", "2", "knn.weights", "gaussian", "knn.metric", "euclidean", NULL },
      { GOOD_X, GOOD_Y }, 0, 0, "metadata knn.weights 'gaussian' is not uniform or distance" },
    { { "knn.n_neighbors", "2", "knn.weights", "uniform", NULL }, { GOOD_X, GOOD_Y }, 0, 0,
      "metadata knn.metric '(missing)' is not euclidean or cosine" },
};

/* Writes the checkpoint of case b to DIR/NAME; returns the heap path. */
static char *write_bad(const char *dir, const char *name, const bad_ckpt *b)
{
    kp_stw *w = kp_stw_create();
    double buf[16] = { 0 };
    float *f = (float *)buf;
    static const float y[4] = { 0, 1, 2, 1 };
    for (int i = 0; b->meta[i]; i += 2)
        assert_int_equal(kp_stw_meta(w, b->meta[i], b->meta[i + 1]), 0);
    for (int t = 0; t < 2; t++) {
        memset(buf, 0, sizeof buf);
        if (b->t[t].name[0] == 'y' || b->t[t].name[0] == 'z')
            memcpy(f, y, sizeof y);
        if (t == 1 && b->poke >= 0 && b->value != 0)
            f[b->poke] = b->value;
        if (t == 0 && b->poke < 0)
            f[-1 - b->poke] = b->value;
        assert_int_equal(kp_stw_add(w, b->t[t].name, b->t[t].dtype, b->t[t].ndim, b->t[t].shape,
                                    buf), 0);
    }
    char *path = kp_test_join(dir, name), err[KP_ERRLEN];
    assert_int_equal(kp_stw_write(w, path, err, sizeof err), 0);
    kp_stw_free(w);
    return path;
}

static void test_knn_load_refuses_corrupted_checkpoints(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir();
    kp_problem pb = { .task = KP_TASK_MULTICLASS, .n_out = 3 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char name[32], err[KP_ERRLEN] = "", want[KP_ERRLEN];
        snprintf(name, sizeof name, "bad%zu.safetensors", i);
        char *path = write_bad(dir, name, &bad[i]);
        kp_st *st = NULL;
        void *model = NULL;
        assert_int_equal(kp_st_open(path, &st, err, sizeof err), 0);
        int rc = kp_model_knn.load(st, &pb, &model, err, sizeof err);
        snprintf(want, sizeof want, "%s: %s", path, bad[i].tail);
        if (rc != KP_ERR_FORMAT || strcmp(err, want) != 0)
            fail_msg("case %zu: status %d, message '%s', want '%s'", i, rc, err, want);
        assert_null(model);
        kp_st_close(st);
        free(path);
    }
    free(dir);
}

static void test_knn_load_refuses_truncated_checkpoint(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), err[KP_ERRLEN] = "";
    char *path = kp_test_join(dir, "cut.safetensors");
    kp_model *m = fit(KP_TASK_MULTICLASS, 3, sk_X, 24, 3, sk_yc, NULL), *back = NULL;
    assert_int_equal(kp_model_save(m, path, err, sizeof err), 0);
    assert_int_equal(truncate(path, 200), 0);
    assert_true(kp_model_load(path, &kp_model_knn, &back, err, sizeof err) < 0);
    assert_null(back);
    assert_int_equal(strncmp(err, path, strlen(path)), 0);   /* names the file */
    free(path);
    kp_model_free(m);
    free(dir);
}

/* ---- determinism and input checks ---- */

static void test_knn_is_deterministic_across_runs_and_thread_counts(void **state)
{
    (void)state;
    /* 3 query blocks of 512 rows, 6 train chunks of 512 rows; OpenBLAS's own
     * thread count must not matter either */
    enum { N = 3000, M = 1100, D = 8 };
    gen g = generate(KP_TASK_MULTICLASS, 4, N + M, D, 31);
    static const char *const kv[] = { "weights", "distance", NULL };
    int blas = openblas_get_num_threads();
    float *p[4];
    for (int run = 0; run < 4; run++) {
        openblas_set_num_threads(run == 3 ? 2 : 1);
        kp_model *m = fit(KP_TASK_MULTICLASS, 4, g.X, N, D, g.y, kv);
        p[run] = predict(m, g.X + N * D, M, D, run == 0 ? 1 : run);
        kp_model_free(m);
    }
    openblas_set_num_threads(blas);
    for (int run = 1; run < 4; run++)
        assert_memory_equal(p[0], p[run], sizeof(float) * M * 4);
    for (int run = 0; run < 4; run++)
        free(p[run]);
    gen_free(&g);
}

/* Fits knn and expects failure with exactly `want`. */
static void assert_fit_fails(kp_task_kind task, int n_out, const float *X, int64_t rows,
                             int64_t cols, const float *y, const char *const *kv, int status,
                             const char *want)
{
    kp_params *p = params_of(kv);
    kp_problem pb = { .task = task, .n_out = n_out };
    kp_matrix m = { X, rows, cols };
    kp_model *model = NULL;
    char err[KP_ERRLEN] = "";
    int rc = kp_model_fit(&kp_model_knn, p, &pb, &m, y, NULL, &model, err, sizeof err);
    kp_params_free(p);
    assert_int_equal(rc, status);
    assert_string_equal(err, want);
    assert_null(model);
}

static void test_knn_rejects_bad_inputs_with_clear_messages(void **state)
{
    (void)state;
    static const float y_nan[] = { 1, 2, NAN, 4, 5 };
    static const char *const k9[] = { "n_neighbors", "9", NULL };
    static const char *const wx[] = { "weights", "gaussian", NULL };
    assert_fit_fails(KP_TASK_REGRESSION, 1, hand_X, 5, 2, y_nan, NULL, KP_ERR_ARG,
                     "knn: y[2] = nan is not finite");
    assert_fit_fails(KP_TASK_REGRESSION, 1, hand_X, 5, 2, hand_value, k9, KP_ERR_ARG,
                     "knn: n_neighbors = 9 is more than the 5 train rows");
    assert_fit_fails(KP_TASK_REGRESSION, 1, hand_X, 5, 2, hand_value, wx, KP_ERR_ARG,
                     "knn: weights = 'gaussian' is not uniform or distance");
    kp_model *m = fit(KP_TASK_REGRESSION, 1, hand_X, 5, 2, hand_value, NULL);
    static const float q_nan[] = { 0, 1, NAN, 2 };
    float out[2];
    char err[KP_ERRLEN] = "";
    kp_matrix wrong = { hand_X, 2, 5 }, nan = { q_nan, 2, 2 };
    assert_int_equal(kp_model_predict(m, &wrong, out, 1, err, sizeof err), KP_ERR_MISMATCH);
    assert_string_equal(err, "knn: X has 5 columns but the model was fitted on 2 features");
    assert_int_equal(kp_model_predict(m, &nan, out, 1, err, sizeof err), KP_ERR_ARG);
    assert_string_equal(err, "knn: X[1, 0] is nan; this model does not take missing values "
                             "(impute them in preprocess)");
    kp_model_free(m);
}

static void test_knn_params_have_scikit_learn_names_and_defaults(void **state)
{
    (void)state;
    const kp_keyspec *s = kp_model_knn.params;
    assert_int_equal(kp_keyspec_count(s), 3);
    assert_string_equal(s[0].name, "n_neighbors");
    assert_string_equal(s[0].def, "5");
    assert_string_equal(s[1].name, "weights");
    assert_string_equal(s[1].def, "uniform");
    assert_string_equal(s[2].name, "metric");
    assert_string_equal(s[2].def, "euclidean");
    assert_int_equal(kp_model_knn.tasks, 0xf);
}

KP_TEST_GROUP(knn)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_knn_euclidean_predictions_equal_hand_computed_values),
        cmocka_unit_test(test_knn_cosine_predictions_equal_hand_computed_values),
        cmocka_unit_test(test_knn_exact_match_takes_all_the_weight_with_distance_weights),
        cmocka_unit_test(test_knn_distance_ties_go_to_the_lower_train_row),
        cmocka_unit_test(test_knn_matches_scikit_learn_on_a_fixed_set),
        cmocka_unit_test(test_knn_neighbours_match_a_brute_force_reference),
        cmocka_unit_test(test_knn_fits_generated_problems_within_accuracy_bands),
        cmocka_unit_test(test_knn_save_load_round_trip_predicts_identical_bits),
        cmocka_unit_test(test_knn_load_refuses_corrupted_checkpoints),
        cmocka_unit_test(test_knn_load_refuses_truncated_checkpoint),
        cmocka_unit_test(test_knn_is_deterministic_across_runs_and_thread_counts),
        cmocka_unit_test(test_knn_rejects_bad_inputs_with_clear_messages),
        cmocka_unit_test(test_knn_params_have_scikit_learn_names_and_defaults),
    };
    return KP_RUN(knn, t);
}

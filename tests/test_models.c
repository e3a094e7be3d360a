/* test_models.c - the model interface, logistic and ridge against scikit-learn.
 *
 * The fixed data sets and reference optima below were computed once with
 * scikit-learn 1.2 (LogisticRegression(C, tol=1e-10, max_iter=10000),
 * Ridge(alpha, solver='cholesky')) on the same float32 values, and pasted
 * with %.17g.  Objectives are the unscaled sum of log losses + ||W||^2/(2C).
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

/* ---- reference data (scikit-learn 1.2) ---- */

static const float bin_X[] = {
    1.69f, -0.47f, 0.03f, 0.41f, -0.79f, 0.00f, -0.00f, -1.75f, 1.02f,
    0.60f, -0.63f, -0.17f, 0.51f, -0.26f, -0.24f, -1.45f, 0.55f, 0.12f,
    0.27f, -1.53f, 1.65f, 0.15f, -0.39f, 2.03f, -0.05f, -1.45f, -0.41f,
    -2.29f, 1.05f, -0.42f, -0.74f, 1.07f, -1.65f, 0.54f, -2.06f, -0.66f,
    -1.20f, 1.46f, 1.77f, -0.33f, 0.84f, -0.18f, 0.57f, -0.75f, -1.71f,
    -1.80f, 0.38f, 2.25f, 0.27f, -0.52f, 1.91f, 0.24f, 0.10f, 0.25f,
    -0.13f, -0.31f, -1.43f, 0.50f, -0.09f, 1.19f, -0.37f, -1.91f, -0.10f,
    1.70f, -0.38f, -0.89f, -1.19f, -1.05f, -0.30f, -1.18f, 1.50f, -0.28f,
    0.11f, 1.44f, 1.50f, -0.21f, 0.33f, 0.74f, -0.19f, -1.78f, 0.65f,
    0.89f, 0.42f, -0.92f, -0.20f, -0.59f, -0.30f, 1.30f, 1.53f, 0.67f,
    0.55f, 0.68f, -0.01f, -0.08f, -0.67f, -0.06f, 2.26f, 0.87f, -0.34f,
    -0.47f, -0.86f, 0.37f, 0.39f, -1.44f, 0.49f, -0.57f, 1.43f, 0.16f,
    1.72f, -0.46f, -0.29f, 0.30f, 1.06f, 0.57f, -1.23f, 0.18f, 0.02f,
    -0.43f, -0.65f, 1.75f,
};
static const float bin_y[] = {
    1, 1, 1, 1, 1, 0, 1, 1, 1, 0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 1,
    1, 1, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 1, 1, 0, 1, 0, 0, 1,
};
static const double bin_coef[] = {
    1.4555124943257061, -1.9979156380730021, 0.57095356740995373,
};
static const double bin_intercept[] = {
    -0.5166813952950684,
};
static const double bin_objective = 11.495073047474856;
static const float bal_y[] = {
    1, 1, 1, 1, 1, 0, 1, 1, 1, 0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 1,
    1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 1, 0, 0, 1,
};
static const double bal_coef[] = {
    0.86899568671859528, -1.2607401075321383, 0.31929299919571197,
};
static const double bal_intercept[] = {
    -0.29839187825546004,
};
static const double bal_objective = 15.597629795419895;
static const float mc_X[] = {
    -0.93f, 0.41f, 1.86f, -1.50f, 0.48f, 1.11f, -0.70f, 0.58f, -1.07f,
    -0.81f, -0.82f, 0.19f, -0.09f, 0.95f, -0.94f, -0.13f, 0.96f, 0.56f,
    -1.32f, 0.67f, -0.48f, 0.39f, 0.30f, 1.22f, 0.12f, -1.85f, -1.37f,
    0.73f, -0.26f, 1.14f, 0.27f, -0.75f, 1.08f, -0.81f, -2.05f, 2.06f,
    -1.91f, 0.64f, 0.94f, 0.15f, -1.68f, 1.02f, -1.44f, -1.34f, -0.36f,
    0.79f, 0.30f, 0.81f, -0.44f, -0.17f, -1.14f, -0.32f, 0.59f, -0.30f,
    0.48f, -0.57f, -0.59f, 0.04f, -0.19f, 0.59f, 0.18f, 1.74f, -0.22f,
    -0.23f, -1.04f, 0.02f, 0.68f, -0.74f, -0.05f, 0.72f, -0.13f, -0.52f,
    0.97f, 0.10f, 0.40f, 1.17f, 1.15f, -0.35f, -0.53f, 0.28f, -0.13f,
    -1.90f, 1.28f, 0.02f, 0.74f, -1.17f, 1.29f, -0.59f, -0.11f, -1.40f,
    -0.17f, -0.23f, -0.19f, 0.44f, 0.06f, 0.98f, -0.47f, -1.00f, -0.02f,
    0.63f, 1.24f, 0.81f, -1.77f, 0.38f, 1.46f, 0.06f, -0.52f, 0.31f,
    -0.50f, 0.64f, -0.01f, 1.39f, 0.50f, -0.72f, 0.60f, 0.94f, -0.57f,
    -0.43f, -2.31f, 0.90f, -0.59f, -2.12f, -1.77f, -0.22f, 0.76f, -0.09f,
    0.47f, -1.10f, -1.34f, 0.89f, 0.49f, -0.03f, 1.28f, -0.95f, -0.42f,
};
static const float mc_y[] = {
    2, 1, 0, 2, 1, 2, 1, 2, 2, 2, 2, 2, 2, 2, 2, 0, 1, 1, 0, 2,
    1, 2, 2, 0, 0, 0, 2, 1, 2, 0, 0, 2, 2, 1, 1, 0, 1, 0, 2, 2,
    2, 1, 0, 2, 2,
};
static const double mc_coef[] = {
    0.65254818308997697, -0.066464657417126913, -0.50231959362085443, -0.67081091910589197,
    0.94615399582152548, -0.10097890129377321, 0.018262736015915, -0.87968933840439867,
    0.60329849491462761,
};
static const double mc_intercept[] = {
    -0.097516110522794894, -0.4604017104653465, 0.55791782098814124,
};
static const double mc_objective = 31.828630442089942;
static const float rg_X[] = {
    3.05f, 5.51f, 2.41f, 2.09f, 1.43f, 5.89f, -0.92f, -0.47f,
    -0.56f, -2.11f, 1.25f, 0.83f, 0.40f, -0.69f, 2.89f, 1.84f,
    2.50f, 2.54f, 1.60f, 0.34f, -0.25f, 2.55f, 0.58f, -1.05f,
    0.65f, 0.87f, 0.14f, -2.32f, 1.16f, -0.66f, 0.50f, -1.19f,
    4.24f, 0.98f, -1.50f, -0.34f, -0.88f, 1.60f, 0.19f, -1.23f,
    0.39f, 3.07f, 2.82f, 1.88f, 1.71f, 0.13f, -2.72f, -1.75f,
    2.29f, 1.78f, 2.46f, 0.68f, 3.27f, -1.79f, 1.17f, 3.25f,
    -0.83f, 3.79f, 0.38f, 0.74f, -2.07f, 3.50f, 1.11f, -3.45f,
    1.20f, 2.96f, -0.49f, -0.13f, 1.50f, 3.81f, 1.45f, 2.78f,
    4.31f, 1.27f, 1.94f, 1.41f, -0.04f, 2.41f, -0.04f, -0.80f,
    1.92f, 3.71f, 3.01f, 2.19f, 1.74f, -1.15f, 0.48f, -0.34f,
    -1.91f, 1.22f, 0.53f, -0.58f, -1.46f, 1.83f, 3.27f, 0.27f,
    -2.34f, 1.04f, 1.32f, 2.01f, -0.06f, 0.69f, -0.48f, -2.08f,
    1.89f, 1.69f, 2.35f, 0.50f, 0.51f, 1.22f, -0.36f, 1.37f,
    -1.69f, 1.28f, 1.24f, 0.33f, -0.54f, -2.65f, -1.59f, -1.31f,
};
static const float rg_Y[] = {
    1.16f, 2.82f, -9.02f, 3.35f, 11.83f, -3.90f, 11.62f, -2.18f, 1.63f, 1.96f,
    -3.83f, 2.20f, -5.00f, 1.60f, 3.93f, -0.11f, 4.33f, -2.69f, -4.21f, 0.61f,
    5.94f, 1.18f, -0.39f, -3.20f, 5.30f, 1.76f, 20.96f, -3.79f, -1.97f, 1.86f,
    -16.18f, 5.42f, 0.27f, -0.48f, 7.64f, 2.67f, 11.77f, 1.03f, -3.06f, 0.88f,
    7.05f, 1.41f, 7.01f, -2.96f, -1.35f, 0.93f, 0.85f, 4.16f, 6.10f, -4.49f,
    -3.39f, 1.87f, 8.15f, 2.24f, 5.57f, -1.86f, 2.56f, 1.15f, 3.70f, -4.75f,
};
static const double rg_coef[] = {
    0.96743874836069066, -2.0535012329373763, 0.46119915644882598, 2.9884383660396789,
    0.089869471076631097, 0.8938615886554917, 0.9875513817363325, -0.96104755084725435,
};
static const double rg_intercept[] = {
    4.177516338886802, -1.8014573941939269,
};
static const double rg_noint_coef[] = {
    1.5733142918261338, -1.4238577677088298, 1.452864702560076, 2.3385167985220763,
};
static const float du_X[] = {
    0.14f, 0.97f, -0.51f, -1.70f, 0.14f, 0.52f, -0.65f, -0.62f, 0.20f, -0.54f,
    0.10f, 1.27f, -1.94f, -0.99f, 0.43f, 0.09f, -0.56f, 0.51f, 0.54f, 1.03f,
    -1.87f, 0.66f, 0.38f, 1.07f, -0.02f, -1.06f, -0.69f, 1.04f, -0.93f, -0.08f,
    1.01f, -0.78f, 0.42f, -2.83f, 0.32f, -1.31f, -0.29f, 1.51f, 1.08f, 1.33f,
    0.75f, 1.16f, -0.14f, 0.99f, 0.18f, 1.66f, -0.74f, -0.19f, 0.62f, 0.13f,
    -0.49f, -1.55f, -0.26f, -0.13f, -0.24f, 0.73f, 0.23f, 0.77f, 1.06f, 0.79f,
};
static const float du_y[] = {
    3.97f, -4.37f, -3.68f, -0.51f, 3.97f, -1.16f,
};
static const double du_coef[] = {
    1.2967053716146542, -0.0068250178196853639, 1.8759002671958369, -0.47837270850421199,
    -0.15384365499804498, 1.1705827939614672, -0.26580129757769533, -1.3218555308512763,
    0.16537591936905677, -1.4332946753958078,
};
static const double du_intercept[] = {
    1.1459821679341975,
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

/* Fits model `name` or fails the test; returns the model (caller frees). */
static kp_model *fit(const char *name, kp_task_kind task, int n_out, const float *X,
                     int64_t rows, int64_t cols, const float *y, const char *const *kv)
{
    kp_params *p = params_of(kv);
    kp_problem pb = { .task = task, .n_out = n_out };
    kp_matrix m = { X, rows, cols };
    kp_fit_opts o = { .seed = 1, .threads = 1 };
    kp_model *model = NULL;
    char err[KP_ERRLEN] = "";
    int rc = kp_model_fit(kp_model_find(name), p, &pb, &m, y, &o, &model, err, sizeof err);
    kp_params_free(p);
    if (rc != 0)
        fail_msg("fit %s: %s", name, err);
    return model;
}

/* Saves m to DIR/NAME; returns the heap path. */
static char *save(const kp_model *m, const char *dir, const char *name)
{
    char *path = kp_test_join(dir, name), err[KP_ERRLEN] = "";
    if (kp_model_save(m, path, err, sizeof err) != 0)
        fail_msg("save: %s", err);
    return path;
}

/* Copies the checkpoint's coef (rows x cols) and intercept (rows) to double. */
static void weights(const kp_model *m, int rows, int cols, double *coef, double *intercept)
{
    char *dir = kp_test_tmpdir(), *path = save(m, dir, "w.safetensors"), err[KP_ERRLEN];
    kp_st *st = NULL;
    assert_int_equal(kp_st_open(path, &st, err, sizeof err), 0);
    const kp_tensor *c = kp_st_find(st, "coef"), *b = kp_st_find(st, "intercept");
    assert_non_null(c);
    assert_non_null(b);
    assert_int_equal(c->numel, (int64_t)rows * cols);
    assert_int_equal(b->numel, rows);
    for (int i = 0; i < rows * cols; i++)
        coef[i] = ((const float *)c->data)[i];
    for (int i = 0; i < rows; i++)
        intercept[i] = ((const float *)b->data)[i];
    kp_st_close(st);
    free(path);
    free(dir);
}

/* Fails unless |got[i] - want[i]| <= tol for each i. */
static void assert_close(const char *what, const double *got, const double *want, int n,
                         double tol)
{
    for (int i = 0; i < n; i++)
        if (!(fabs(got[i] - want[i]) <= tol))
            fail_msg("%s[%d]: got %.10g, want %.10g (tol %g)", what, i, got[i], want[i], tol);
}

/* Sum of binary log losses (weights sw or 1) + ||w||^2 / (2C). */
static double binary_objective(const float *X, const float *y, int n, int d, const double *w,
                               double b, double C, const double *sw)
{
    double f = 0;
    for (int i = 0; i < n; i++) {
        double z = b;
        for (int j = 0; j < d; j++)
            z += w[j] * X[i * d + j];
        double l = log1p(exp(-fabs(z))) + fmax(z, 0) - y[i] * z;
        f += (sw ? sw[i] : 1) * l;
    }
    for (int j = 0; j < d; j++)
        f += 0.5 / C * w[j] * w[j];
    return f;
}

/* Sum of multinomial log losses + ||W||^2 / (2C). */
static double multinomial_objective(const float *X, const float *y, int n, int d, int K,
                                    const double *W, const double *b, double C)
{
    double f = 0, z[16];
    for (int i = 0; i < n; i++) {
        double mx = -INFINITY, s = 0;
        for (int k = 0; k < K; k++) {
            z[k] = b[k];
            for (int j = 0; j < d; j++)
                z[k] += W[k * d + j] * X[i * d + j];
            mx = fmax(mx, z[k]);
        }
        for (int k = 0; k < K; k++)
            s += exp(z[k] - mx);
        f += mx + log(s) - z[(int)y[i]];
    }
    for (int j = 0; j < K * d; j++)
        f += 0.5 / C * W[j] * W[j];
    return f;
}

/* Returns |a - b| / |b|. */
static double rel(double a, double b) { return fabs(a - b) / fabs(b); }

/* ---- against scikit-learn ---- */

static const char *const tight[] = { "tol", "1e-10", "max_iter", "10000", NULL };

static void test_logistic_binary_matches_scikit_learn_optimum(void **state)
{
    (void)state;
    kp_model *m = fit("logistic", KP_TASK_BINARY, 1, bin_X, 40, 3, bin_y, tight);
    double w[3], b;
    weights(m, 1, 3, w, &b);
    double f = binary_objective(bin_X, bin_y, 40, 3, w, b, 1.0, NULL);
    assert_true(rel(f, bin_objective) <= 1e-4);
    assert_true(f <= bin_objective * (1 + 1e-6));   /* not worse than scikit-learn's */
    assert_close("coef", w, bin_coef, 3, 1e-4);
    assert_close("intercept", &b, bin_intercept, 1, 1e-4);
    kp_model_free(m);
}

static void test_logistic_balanced_class_weight_matches_scikit_learn(void **state)
{
    (void)state;
    static const char *const kv[] = { "C", "0.3", "class_weight", "balanced", "tol", "1e-10",
                                      "max_iter", "10000", NULL };
    kp_model *m = fit("logistic", KP_TASK_BINARY, 1, bin_X, 40, 3, bal_y, kv);
    double w[3], b, sw[40], pos = 0;
    weights(m, 1, 3, w, &b);
    for (int i = 0; i < 40; i++)
        pos += bal_y[i];
    for (int i = 0; i < 40; i++)
        sw[i] = 40 / (2 * (bal_y[i] == 1 ? pos : 40 - pos));
    double f = binary_objective(bin_X, bal_y, 40, 3, w, b, 0.3, sw);
    assert_true(rel(f, bal_objective) <= 1e-4);
    assert_close("coef", w, bal_coef, 3, 1e-4);
    assert_close("intercept", &b, bal_intercept, 1, 1e-4);
    kp_model_free(m);
}

static void test_logistic_multinomial_matches_scikit_learn_optimum(void **state)
{
    (void)state;
    static const char *const kv[] = { "C", "0.5", "tol", "1e-10", "max_iter", "10000", NULL };
    kp_model *m = fit("logistic", KP_TASK_MULTICLASS, 3, mc_X, 45, 3, mc_y, kv);
    double W[9], b[3];
    weights(m, 3, 3, W, b);
    double f = multinomial_objective(mc_X, mc_y, 45, 3, 3, W, b, 0.5);
    assert_true(rel(f, mc_objective) <= 1e-4);
    assert_close("coef", W, mc_coef, 9, 1e-4);
    assert_close("intercept", b, mc_intercept, 3, 1e-4);
    kp_model_free(m);
}

static void test_ridge_matches_scikit_learn(void **state)
{
    (void)state;
    static const char *const kv[] = { "alpha", "2.0", NULL };
    for (int t = 0; t < 2; t++) {
        float y[30];
        for (int i = 0; i < 30; i++)
            y[i] = rg_Y[i * 2 + t];
        kp_model *m = fit("ridge", KP_TASK_REGRESSION, 1, rg_X, 30, 4, y, kv);
        double w[4], b;
        weights(m, 1, 4, w, &b);
        assert_close("coef", w, rg_coef + 4 * t, 4, 1e-6 * (1 + fabs(rg_coef[4 * t])) + 1e-6);
        assert_close("intercept", &b, rg_intercept + t, 1, 1e-6 * (1 + fabs(rg_intercept[t])));
        kp_model_free(m);
    }
}

static void test_ridge_without_intercept_matches_scikit_learn(void **state)
{
    (void)state;
    static const char *const kv[] = { "alpha", "2.0", "fit_intercept", "false", NULL };
    float y[30];
    for (int i = 0; i < 30; i++)
        y[i] = rg_Y[i * 2];
    kp_model *m = fit("ridge", KP_TASK_REGRESSION, 1, rg_X, 30, 4, y, kv);
    double w[4], b, zero = 0;
    weights(m, 1, 4, w, &b);
    assert_close("coef", w, rg_noint_coef, 4, 3e-6);
    assert_close("intercept", &b, &zero, 1, 0);
    kp_model_free(m);
}

static void test_ridge_with_more_features_than_rows_matches_scikit_learn(void **state)
{
    (void)state;
    static const char *const kv[] = { "alpha", "0.5", NULL };
    kp_model *m = fit("ridge", KP_TASK_REGRESSION, 1, du_X, 6, 10, du_y, kv);
    double w[10], b;
    weights(m, 1, 10, w, &b);
    assert_close("coef", w, du_coef, 10, 3e-6);
    assert_close("intercept", &b, du_intercept, 1, 3e-6);
    kp_model_free(m);
}

/* ---- generated problems ---- */

typedef struct quality_case {
    const char *model;
    kp_task_kind task;
    int n_out;
    const char *metric;
    double bound;   /* at least this (or at most, for lower-is-better metrics) */
} quality_case;

static const quality_case quality[] = {
    { "logistic", KP_TASK_BINARY, 1, "accuracy", 0.93 },
    { "logistic", KP_TASK_BINARY, 1, "auc", 0.98 },
    { "logistic", KP_TASK_MULTICLASS, 4, "accuracy", 0.88 },
    { "logistic", KP_TASK_MULTICLASS, 4, "logloss", 0.3 },
    { "logistic", KP_TASK_MULTILABEL, 3, "auc", 0.98 },
    { "ridge", KP_TASK_REGRESSION, 1, "rmse", 0.35 },   /* the noise is 0.3 */
    { "ridge", KP_TASK_BINARY, 1, "auc", 0.98 },
    { "ridge", KP_TASK_MULTILABEL, 3, "auc", 0.98 },
    /* bounds below the worst of 12 seeds of this generator */
    { "knn", KP_TASK_BINARY, 1, "accuracy", 0.85 },
    { "knn", KP_TASK_BINARY, 1, "auc", 0.93 },
    { "knn", KP_TASK_MULTICLASS, 4, "accuracy", 0.72 },
    { "knn", KP_TASK_REGRESSION, 1, "rmse", 2.0 },
    { "knn", KP_TASK_MULTILABEL, 3, "auc", 0.93 },
    { "naive_bayes", KP_TASK_BINARY, 1, "accuracy", 0.90 },
    { "naive_bayes", KP_TASK_BINARY, 1, "auc", 0.97 },
    { "naive_bayes", KP_TASK_MULTICLASS, 4, "accuracy", 0.82 },
    { "naive_bayes", KP_TASK_MULTICLASS, 4, "logloss", 0.6 },
    { "naive_bayes", KP_TASK_MULTILABEL, 3, "auc", 0.97 },
    /* the default [100] net; bounds below the worst of 30 seeds */
    { "mlp", KP_TASK_BINARY, 1, "accuracy", 0.92 },
    { "mlp", KP_TASK_BINARY, 1, "auc", 0.98 },
    { "mlp", KP_TASK_MULTICLASS, 4, "accuracy", 0.87 },
    { "mlp", KP_TASK_MULTICLASS, 4, "logloss", 0.3 },
    { "mlp", KP_TASK_MULTILABEL, 3, "auc", 0.98 },
    { "mlp", KP_TASK_REGRESSION, 1, "rmse", 0.5 },
    /* bounds below the worst of 30 seeds; trees fit this linear target in steps */
    { "gbdt", KP_TASK_BINARY, 1, "accuracy", 0.88 },
    { "gbdt", KP_TASK_BINARY, 1, "auc", 0.95 },
    { "gbdt", KP_TASK_MULTICLASS, 4, "accuracy", 0.78 },
    { "gbdt", KP_TASK_MULTICLASS, 4, "logloss", 0.55 },
    { "gbdt", KP_TASK_MULTILABEL, 3, "auc", 0.96 },
    { "gbdt", KP_TASK_REGRESSION, 1, "rmse", 2.2 },
    /* default parameters; bounds below the worst of 24 seeds */
    { "forest", KP_TASK_BINARY, 1, "accuracy", 0.86 },
    { "forest", KP_TASK_BINARY, 1, "auc", 0.94 },
    { "forest", KP_TASK_MULTICLASS, 4, "accuracy", 0.77 },
    { "forest", KP_TASK_MULTICLASS, 4, "logloss", 0.65 },
    { "forest", KP_TASK_REGRESSION, 1, "rmse", 2.5 },
    { "forest", KP_TASK_MULTILABEL, 3, "auc", 0.94 },
};

static void test_models_fit_generated_problems_well(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof quality / sizeof quality[0]; c++) {
        const quality_case *q = &quality[c];
        gen g = generate(q->task, q->n_out, 1200, 6, 100 + c);
        int yw = q->task == KP_TASK_MULTILABEL ? q->n_out : 1;
        kp_model *m = fit(q->model, q->task, q->n_out, g.X, 800, 6, g.y, NULL);
        float *pred = malloc(sizeof *pred * 400 * (size_t)q->n_out);
        kp_matrix test = { g.X + 800 * 6, 400, 6 };
        char err[KP_ERRLEN] = "";
        assert_int_equal(kp_model_predict(m, &test, pred, 2, err, sizeof err), 0);
        const kp_metric_ops *mo = kp_metric_find(q->metric);
        double s = 0;
        kp_problem pb = { .task = q->task, .n_out = q->n_out };
        assert_int_equal(mo->score(&pb, g.y + 800 * yw, pred, 400, NULL, &s, err, sizeof err), 0);
        if (mo->greater_is_better ? s < q->bound : s > q->bound)
            fail_msg("%s %s: %s %.4f, bound %.4f", q->model, kp_task_name(q->task), q->metric,
                     s, q->bound);
        free(pred);
        kp_model_free(m);
        gen_free(&g);
    }
}

/* ---- checkpoints ---- */

static void test_save_load_round_trip_predicts_identical_bits(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir();
    for (size_t c = 0; c < sizeof quality / sizeof quality[0]; c++) {
        const quality_case *q = &quality[c];
        gen g = generate(q->task, q->n_out, 300, 5, 7 + c);
        kp_model *m = fit(q->model, q->task, q->n_out, g.X, 300, 5, g.y, NULL), *back = NULL;
        size_t np = 300 * (size_t)q->n_out;
        float *a = malloc(sizeof *a * np), *b = malloc(sizeof *b * np);
        kp_matrix X = { g.X, 300, 5 };
        char err[KP_ERRLEN] = "", name[32];
        snprintf(name, sizeof name, "m%zu.safetensors", c);
        char *path = save(m, dir, name);
        assert_int_equal(kp_model_load(path, kp_model_find(q->model), &back, err, sizeof err), 0);
        assert_int_equal(kp_model_predict(m, &X, a, 1, err, sizeof err), 0);
        assert_int_equal(kp_model_predict(back, &X, b, 2, err, sizeof err), 0);
        assert_memory_equal(a, b, sizeof *a * np);
        assert_ptr_equal(kp_model_ops_of(back), kp_model_find(q->model));
        assert_int_equal(kp_model_problem(back)->task, q->task);
        assert_int_equal(kp_model_problem(back)->n_out, q->n_out);
        free(path);
        free(a);
        free(b);
        kp_model_free(m);
        kp_model_free(back);
        gen_free(&g);
    }
    free(dir);
}

/* Loads path expecting `expect` (may be NULL); fails unless the status and
 * message ("PATH: " + tail) match and *out stays NULL. */
static void assert_load_fails(const char *path, const char *expect, int status, const char *tail)
{
    kp_model *m = NULL;
    char err[KP_ERRLEN] = "", want[KP_ERRLEN];
    int rc = kp_model_load(path, expect ? kp_model_find(expect) : NULL, &m, err, sizeof err);
    snprintf(want, sizeof want, "%s: %s", path, tail);
    assert_int_equal(rc, status);
    assert_string_equal(err, want);
    assert_null(m);
}

static void test_load_refuses_another_models_checkpoint(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir();
    float y[40];
    for (int i = 0; i < 40; i++)
        y[i] = bin_X[i * 3];
    kp_model *m = fit("ridge", KP_TASK_REGRESSION, 1, bin_X, 40, 3, y, NULL);
    char *path = save(m, dir, "ridge.safetensors");
    assert_load_fails(path, "logistic", KP_ERR_MISMATCH,
                      "checkpoint is a 'ridge' model, expected 'logistic'");
    free(path);
    kp_model_free(m);
    free(dir);
}

/* Writes a safetensors file with the given metadata (NULL-terminated pairs)
 * and a coef/intercept of the given shapes; returns the heap path. */
static char *write_st(const char *dir, const char *name, const char *const *meta, int64_t rows,
                      int64_t cols, float first)
{
    kp_stw *w = kp_stw_create();
    float coef[16] = { first }, b[4] = { 0 };
    int64_t cs[2] = { rows, cols }, bs[1] = { rows };
    for (int i = 0; meta && meta[i]; i += 2)
        assert_int_equal(kp_stw_meta(w, meta[i], meta[i + 1]), 0);
    assert_int_equal(kp_stw_add(w, "coef", KP_F32, 2, cs, coef), 0);
    assert_int_equal(kp_stw_add(w, "intercept", KP_F32, 1, bs, b), 0);
    char *path = kp_test_join(dir, name), err[KP_ERRLEN];
    assert_int_equal(kp_stw_write(w, path, err, sizeof err), 0);
    kp_stw_free(w);
    return path;
}

typedef struct bad_ckpt {
    const char *meta[10];
    int64_t rows, cols;
    float first;
    int status;
    const char *tail;
} bad_ckpt;

static const bad_ckpt bad[] = {
    { { "format", "pt", NULL }, 1, 3, 0, KP_ERR_FORMAT,
      "not a kpipe checkpoint (no kpipe.model metadata)" },
    { { "kpipe.model", "catboost", "kpipe.task", "binary", "kpipe.n_out", "1", "kpipe.format", "1",
        NULL }, 1, 3, 0, KP_ERR_FORMAT, "checkpoint is of unknown model 'catboost'" },
    { { "kpipe.model", "logistic", "kpipe.task", "binary", "kpipe.n_out", "1", "kpipe.format",
        "2", NULL }, 1, 3, 0, KP_ERR_FORMAT, "kpipe.format is '2', expected '1'" },
    { { "kpipe.model", "logistic", "kpipe.task", "ranking", "kpipe.n_out", "1", "kpipe.format",
        "1", NULL }, 1, 3, 0, KP_ERR_FORMAT, "kpipe.task 'ranking' is not a task" },
    { { "kpipe.model", "logistic", "kpipe.task", "multilabel", "kpipe.n_out", "2x",
        "kpipe.format", "1", NULL }, 1, 3, 0, KP_ERR_FORMAT,
      "kpipe.n_out '2x' is not a positive count" },
    { { "kpipe.model", "ridge", "kpipe.task", "multiclass", "kpipe.n_out", "3", "kpipe.format",
        "1", NULL }, 3, 3, 0, KP_ERR_FORMAT,
      "ridge: task 'multiclass' is not supported (only binary, regression, multilabel)" },
    { { "kpipe.model", "logistic", "kpipe.task", "multilabel", "kpipe.n_out", "2",
        "kpipe.format", "1", NULL }, 1, 3, 0, KP_ERR_FORMAT,
      "tensor 'coef' has shape [1, 3], expected [2, *]" },
    { { "kpipe.model", "logistic", "kpipe.task", "binary", "kpipe.n_out", "1", "kpipe.format",
        "1", NULL }, 1, 3, NAN, KP_ERR_FORMAT,
      "tensor 'coef' holds a non-finite value at index 0" },
};

static void test_load_refuses_corrupted_checkpoints(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir();
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "bad%zu.safetensors", i);
        char *path = write_st(dir, name, bad[i].meta, bad[i].rows, bad[i].cols, bad[i].first);
        assert_load_fails(path, NULL, bad[i].status, bad[i].tail);
        free(path);
    }
    free(dir);
}

static void test_load_refuses_truncated_checkpoint(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), err[KP_ERRLEN] = "";
    kp_model *m = fit("logistic", KP_TASK_BINARY, 1, bin_X, 40, 3, bin_y, NULL), *back = NULL;
    char *path = save(m, dir, "cut.safetensors");
    assert_int_equal(truncate(path, 100), 0);
    assert_true(kp_model_load(path, NULL, &back, err, sizeof err) < 0);
    assert_null(back);
    assert_int_equal(strncmp(err, path, strlen(path)), 0);   /* names the file */
    free(path);
    kp_model_free(m);
    free(dir);
}

/* ---- determinism, input checks, registry ---- */

static void test_fit_is_deterministic_across_runs_and_blas_threads(void **state)
{
    (void)state;
    /* large enough (n * K * d > 65536 * 4) for OpenBLAS to split dgemm over threads */
    gen g = generate(KP_TASK_MULTICLASS, 4, 5000, 16, 99);
    float *p[3];
    int threads = openblas_get_num_threads();
    for (int run = 0; run < 3; run++) {
        openblas_set_num_threads(run == 2 ? 2 : 1);
        kp_model *m = fit("logistic", KP_TASK_MULTICLASS, 4, g.X, 5000, 16, g.y, NULL);
        kp_matrix X = { g.X, 5000, 16 };
        char err[KP_ERRLEN];
        p[run] = malloc(sizeof(float) * 5000 * 4);
        assert_int_equal(kp_model_predict(m, &X, p[run], run + 1, err, sizeof err), 0);
        kp_model_free(m);
    }
    openblas_set_num_threads(threads);
    assert_memory_equal(p[0], p[1], sizeof(float) * 5000 * 4);
    assert_memory_equal(p[0], p[2], sizeof(float) * 5000 * 4);
    for (int run = 0; run < 3; run++)
        free(p[run]);
    gen_free(&g);
}

/* Fits and expects failure with exactly `want`. */
static void assert_fit_fails(const char *name, kp_task_kind task, int n_out, const float *X,
                             int64_t rows, int64_t cols, const float *y, const char *const *kv,
                             int status, const char *want)
{
    kp_params *p = params_of(kv);
    kp_problem pb = { .task = task, .n_out = n_out };
    kp_matrix m = { X, rows, cols };
    kp_model *model = NULL;
    char err[KP_ERRLEN] = "";
    int rc = kp_model_fit(kp_model_find(name), p, &pb, &m, y, NULL, &model, err, sizeof err);
    kp_params_free(p);
    assert_int_equal(rc, status);
    assert_string_equal(err, want);
    assert_null(model);
}

static void test_fit_rejects_bad_inputs_with_clear_messages(void **state)
{
    (void)state;
    static const float y_bad[] = { 0, 1, 2, 0 }, y_mc[] = { 0, 1, 3, 0 };
    static const float X_nan[] = { 1, 2, NAN, 4 }, X_inf[] = { 1, 2, INFINITY, 4 };
    static const char *const c0[] = { "C", "0", NULL };
    assert_fit_fails("ridge", KP_TASK_MULTICLASS, 3, bin_X, 4, 3, y_mc, NULL, KP_ERR_ARG,
                     "ridge: task 'multiclass' is not supported "
                     "(only binary, regression, multilabel)");
    assert_fit_fails("logistic", KP_TASK_BINARY, 1, bin_X, 4, 3, y_bad, NULL, KP_ERR_ARG,
                     "logistic: y[2] = 2 is not 0 or 1");
    assert_fit_fails("logistic", KP_TASK_MULTICLASS, 3, bin_X, 4, 3, y_mc, NULL, KP_ERR_ARG,
                     "logistic: y[2] = 3 is not a class index in [0, 3)");
    assert_fit_fails("logistic", KP_TASK_MULTILABEL, 2, bin_X, 2, 3, y_bad, NULL, KP_ERR_ARG,
                     "logistic: y[1, 0] = 2 is not 0 or 1");
    assert_fit_fails("ridge", KP_TASK_REGRESSION, 1, X_nan, 2, 2, y_bad, NULL, KP_ERR_ARG,
                     "ridge: X[1, 0] is nan; this model does not take missing values "
                     "(impute them in preprocess)");
    assert_fit_fails("gbdt", KP_TASK_REGRESSION, 1, X_inf, 2, 2, y_bad, NULL, KP_ERR_ARG,
                     "gbdt: X[1, 0] is inf; features must be finite");
    assert_fit_fails("logistic", KP_TASK_BINARY, 2, bin_X, 4, 3, y_bad, NULL, KP_ERR_ARG,
                     "logistic: task 'binary' cannot have 2 outputs");
    assert_fit_fails("logistic", KP_TASK_BINARY, 1, bin_X, 40, 3, bin_y, c0, KP_ERR_ARG,
                     "logistic: C = 0 must be a positive number");
}

/* A model that routes missing values (ops->missing_ok) gets NaN through
 * kp_model_fit and kp_model_predict; the others are refused at predict too. */
static void test_missing_values_reach_only_the_models_that_take_them(void **state)
{
    (void)state;
    enum { N = 200 };
    float X[N * 2], y[N], p[N];
    for (int i = 0; i < N; i++) {
        y[i] = (float)(i % 2);
        X[2 * i] = i % 5 == 0 ? NAN : (float)(i % 2) + 0.1f * (float)(i % 7);
        X[2 * i + 1] = (float)(i % 3);
    }
    kp_model *m = fit("gbdt", KP_TASK_BINARY, 1, X, N, 2, y, NULL);
    kp_matrix Xm = { X, N, 2 };
    char err[KP_ERRLEN] = "";
    assert_int_equal(kp_model_predict(m, &Xm, p, 1, err, sizeof err), 0);
    for (int i = 0; i < N; i++)
        assert_true(isfinite(p[i]));
    kp_model_free(m);
    float Xf[N * 2];
    for (int i = 0; i < N * 2; i++)
        Xf[i] = isnan(X[i]) ? 0 : X[i];
    m = fit("logistic", KP_TASK_BINARY, 1, Xf, N, 2, y, NULL);
    assert_int_equal(kp_model_predict(m, &Xm, p, 1, err, sizeof err), KP_ERR_ARG);
    assert_string_equal(err, "logistic: X[0, 0] is nan; this model does not take missing values "
                             "(impute them in preprocess)");
    kp_model_free(m);
}

static void test_ridge_singular_system_without_penalty_is_an_error(void **state)
{
    (void)state;
    static const float X[] = { 1, 2, 2, 4, 3, 6, 4, 8 };   /* second column = 2 * first */
    static const float y[] = { 1, 2, 3, 4 };
    static const char *const a0[] = { "alpha", "0", NULL };
    assert_fit_fails("ridge", KP_TASK_REGRESSION, 1, X, 4, 2, y, a0, KP_ERR_ARG,
                     "ridge: the 2 x 2 system is not positive definite (alpha = 0 with constant "
                     "or collinear features?); use alpha > 0");
}

static void test_predict_rejects_wrong_column_count(void **state)
{
    (void)state;
    kp_model *m = fit("logistic", KP_TASK_BINARY, 1, bin_X, 40, 3, bin_y, NULL);
    kp_matrix X = { bin_X, 10, 2 };
    float out[10];
    char err[KP_ERRLEN] = "";
    assert_int_equal(kp_model_predict(m, &X, out, 1, err, sizeof err), KP_ERR_MISMATCH);
    assert_string_equal(err, "logistic: X has 2 columns but the model was fitted on 3 features");
    kp_model_free(m);
}

static void test_fit_without_params_uses_the_spec_defaults(void **state)
{
    (void)state;
    const kp_model_ops *ops = kp_model_find("logistic");
    kp_params *p = kp_params_create();
    char err[KP_ERRLEN] = "";
    assert_int_equal(kp_params_validate(p, ops->params, "t.yaml", "params", err, sizeof err), 0);
    kp_model *a = fit("logistic", KP_TASK_BINARY, 1, bin_X, 40, 3, bin_y, NULL);
    kp_problem pb = { .task = KP_TASK_BINARY, .n_out = 1 };
    kp_matrix X = { bin_X, 40, 3 };
    kp_model *b = NULL;
    assert_int_equal(kp_model_fit(ops, p, &pb, &X, bin_y, NULL, &b, err, sizeof err), 0);
    float pa[40], pbv[40];
    assert_int_equal(kp_model_predict(a, &X, pa, 1, err, sizeof err), 0);
    assert_int_equal(kp_model_predict(b, &X, pbv, 1, err, sizeof err), 0);
    assert_memory_equal(pa, pbv, sizeof pa);
    kp_params_free(p);
    kp_model_free(a);
    kp_model_free(b);
}

static void test_model_registry_and_task_names(void **state)
{
    (void)state;
    static const char *const names[] = { "logistic", "ridge", "knn", "naive_bayes", "mlp",
                                           "gbdt", "forest", "cnn", "unet" };
    int n = (int)(sizeof names / sizeof names[0]);
    assert_int_equal(kp_model_count(), n);
    for (int i = 0; i < n; i++) {
        assert_string_equal(kp_model_at(i)->name, names[i]);
        assert_ptr_equal(kp_model_find(names[i]), kp_model_at(i));
    }
    assert_null(kp_model_at(n));
    assert_null(kp_model_find("xgboost"));
    for (int t = 0; t < KP_TASK_COUNT; t++) {
        kp_task_kind k = KP_TASK_COUNT;
        assert_int_equal(kp_task_parse(kp_task_name((kp_task_kind)t), &k), 0);
        assert_int_equal(k, t);
    }
    kp_task_kind k = KP_TASK_BINARY;
    assert_int_equal(kp_task_parse("ranking", &k), KP_ERR_ARG);
    for (int i = 0; i < kp_model_count(); i++) {
        const kp_model_ops *o = kp_model_at(i);
        /* a model takes tabular rows (fit, predict) or images (fit_images, ...), both paired */
        assert_true(o->doc && o->params && o->save && o->load && o->free);
        assert_true(!o->fit == !o->predict && !o->fit_images == !o->predict_images);
        assert_true(o->fit || o->fit_images);
        assert_true(kp_keyspec_count(o->params) >= 2);
    }
}

KP_TEST_GROUP(models)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_logistic_binary_matches_scikit_learn_optimum),
        cmocka_unit_test(test_logistic_balanced_class_weight_matches_scikit_learn),
        cmocka_unit_test(test_logistic_multinomial_matches_scikit_learn_optimum),
        cmocka_unit_test(test_ridge_matches_scikit_learn),
        cmocka_unit_test(test_ridge_without_intercept_matches_scikit_learn),
        cmocka_unit_test(test_ridge_with_more_features_than_rows_matches_scikit_learn),
        cmocka_unit_test(test_models_fit_generated_problems_well),
        cmocka_unit_test(test_save_load_round_trip_predicts_identical_bits),
        cmocka_unit_test(test_load_refuses_another_models_checkpoint),
        cmocka_unit_test(test_load_refuses_corrupted_checkpoints),
        cmocka_unit_test(test_load_refuses_truncated_checkpoint),
        cmocka_unit_test(test_fit_is_deterministic_across_runs_and_blas_threads),
        cmocka_unit_test(test_fit_rejects_bad_inputs_with_clear_messages),
        cmocka_unit_test(test_missing_values_reach_only_the_models_that_take_them),
        cmocka_unit_test(test_ridge_singular_system_without_penalty_is_an_error),
        cmocka_unit_test(test_predict_rejects_wrong_column_count),
        cmocka_unit_test(test_fit_without_params_uses_the_spec_defaults),
        cmocka_unit_test(test_model_registry_and_task_names),
    };
    return KP_RUN(models, t);
}

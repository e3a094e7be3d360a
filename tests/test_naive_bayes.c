/* test_naive_bayes.c - the naive_bayes model against scikit-learn's
 * GaussianNB, absent classes, multilabel, checkpoints, determinism.
 *
 * The sk_nb_* probabilities were computed once with scikit-learn 1.2
 * (GaussianNB(...).fit(X, y).predict_proba(Q)) on the same float32 values,
 * and pasted with %.17g.
 */
#include "kp_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "../lib/err.h"
#include "../lib/rng.h"
#include "../models/metric.h"
#include "../models/model.h"

extern const kp_model_ops kp_model_naive_bayes;

/* ---- reference data (scikit-learn 1.2) ---- */

static const float nb_X[] = {
    -1.27f, 0.27f, 0.16f, 1.41f, -3.52f, 0.06f,
    0.75f, -0.39f, -1.23f, 0.32f, -1.48f, -0.51f,
    1.86f, -1.31f, 0.27f, 0.88f, -0.58f, -0.11f,
    1.71f, -0.94f, -0.63f, 0.08f, 1.36f, -1.55f,
    0.86f, 0.12f, -0.64f, 2.80f, 0.26f, -0.90f,
    0.07f, 0.58f, -0.19f, 1.48f, -0.57f, 0.97f,
    1.44f, -0.68f, 0.20f, 0.34f, -0.37f, -0.89f,
    1.02f, -1.20f, 1.50f, 1.95f, -1.82f, -0.49f,
    2.25f, -2.99f, 0.14f, 0.70f, 0.76f, 0.99f,
    0.47f, -0.87f, 0.05f, 1.52f, -0.43f, -0.30f,
    0.35f, -0.12f, -0.20f, -0.31f, -0.51f, -0.14f,
    2.77f, -0.35f, 0.58f, 2.27f, -1.34f, 1.65f,
    1.59f, -0.42f, -0.69f, 1.95f, -2.69f, -1.44f,
    1.30f, -1.90f, 0.76f, 2.24f, -0.83f, -0.62f,
    0.21f, 0.49f, -0.18f, 1.39f, -0.30f, 1.12f,
};
static const float nb_Q[] = {
    -1.55f, -0.12f, 0.05f, -1.58f, 0.39f, -1.29f,
    1.46f, 0.29f, 0.13f, -0.89f, -0.18f, -3.00f,
    -1.70f, 0.54f, -3.19f, 1.27f, -2.62f, 1.14f,
};
static const float nb_yc[] = {
    0, 2, 1, 1, 1, 0, 2, 0, 0, 1, 0, 1, 0, 1, 2, 1, 2, 1, 1, 0, 0, 1, 2, 2, 2, 2, 2, 0, 0, 2,
};
static const float nb_yb[] = {
    0, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
};
static const double sk_nb_default[] = {
    0.85655316524669733, 0.1434468317981327, 2.9551702598185023e-09,
    0.86417381258720793, 0.13582618579203057, 1.6207617792767778e-09,
    0.5347551956850588, 0.3147697952322509, 0.15047500908269051,
    0.0018413703961205083, 0.9981289107655078, 2.9718838372047809e-05,
    0.0019382788534428503, 0.99806168898812619, 3.215843239821519e-08,
    1.1244146796559559e-05, 0.020296519915033354, 0.97969223593817034,
};
static const double sk_nb_priors[] = {
    0.7949370452614728, 0.2050629385192306, 1.621929625632423e-08,
    0.8117259897958089, 0.18827400157500551, 8.6291853464320716e-09,
    0.38573802117779288, 0.34227439148472039, 0.27198758733748685,
    0.0021095447470328675, 0.99781245668389085, 7.799856907695683e-05,
    0.0023668133906587039, 0.99763306743401359, 1.1917532705947768e-07,
    6.8423900096817129e-06, 0.013350438509591379, 0.98664271910039891,
};
static const double sk_nb_binary[] = {
    0.0011484151878640115, 0.00033646064102635105, 0.88937468655968266,
    0.028492927056252396, 0.010344259171400973, 0.99932308955736315,
};

/* ---- helpers ---- */

/* Returns params from {key, value, ..., NULL}; a value "a,b" becomes a list (caller frees). */
static kp_params *params_of(const char *const *kv)
{
    kp_params *p = kp_params_create();
    assert_non_null(p);
    for (int i = 0; kv && kv[i]; i += 2) {
        if (!strchr(kv[i + 1], ',')) {
            assert_int_equal(kp_params_set(p, kv[i], kv[i + 1], 0, 0), 0);
            continue;
        }
        char buf[256], *items[16];
        int n = 0;
        snprintf(buf, sizeof buf, "%s", kv[i + 1]);
        for (char *s = strtok(buf, ","); s && n < 16; s = strtok(NULL, ","))
            items[n++] = s;
        assert_int_equal(kp_params_set_list(p, kv[i], (const char *const *)items, n, 0, 0), 0);
    }
    return p;
}

/* Fits naive_bayes through kp_model_fit or fails the test; caller frees. */
static kp_model *fit(kp_task_kind task, int n_out, const float *X, int64_t rows, int64_t cols,
                     const float *y, const char *const *kv)
{
    kp_params *p = params_of(kv);
    kp_problem pb = { .task = task, .n_out = n_out };
    kp_matrix m = { X, rows, cols };
    kp_fit_opts o = { .seed = 1, .threads = 1 };
    kp_model *model = NULL;
    char err[KP_ERRLEN] = "";
    int rc = kp_model_fit(&kp_model_naive_bayes, p, &pb, &m, y, &o, &model, err, sizeof err);
    kp_params_free(p);
    if (rc != 0)
        fail_msg("fit naive_bayes: %s", err);
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
        fail_msg("predict naive_bayes: %s", err);
    return out;
}

/* Fails unless |got[i * gs] - want[i * ws]| <= tol for i < n. */
static void assert_close(const char *what, const float *got, int gs, const double *want, int ws,
                         int n, double tol)
{
    for (int i = 0; i < n; i++)
        if (!(fabs(got[i * gs] - want[i * ws]) <= tol))
            fail_msg("%s[%d]: got %.10g, want %.10g (tol %g)", what, i, got[i * gs], want[i * ws],
                     tol);
}

/* ---- scikit-learn ---- */

static void test_naive_bayes_matches_scikit_learn_probabilities(void **state)
{
    (void)state;
    static const char *const pri[] = { "priors", "0.2,0.3,0.5", "var_smoothing", "1e-2", NULL };
    static const char *const bpri[] = { "priors", "0.7,0.3", NULL };
    kp_model *a = fit(KP_TASK_MULTICLASS, 3, nb_X, 30, 3, nb_yc, NULL);
    kp_model *b = fit(KP_TASK_MULTICLASS, 3, nb_X, 30, 3, nb_yc, pri);
    kp_model *c = fit(KP_TASK_BINARY, 1, nb_X, 30, 3, nb_yb, bpri);
    float *pa = predict(a, nb_Q, 6, 3, 1), *pb = predict(b, nb_Q, 6, 3, 2);
    float *pc = predict(c, nb_Q, 6, 3, 1);
    assert_close("default", pa, 1, sk_nb_default, 1, 18, 1e-6);
    assert_close("priors and var_smoothing", pb, 1, sk_nb_priors, 1, 18, 1e-6);
    assert_close("binary P(1)", pc, 1, sk_nb_binary, 1, 6, 1e-6);
    free(pa);
    free(pb);
    free(pc);
    kp_model_free(a);
    kp_model_free(b);
    kp_model_free(c);
}

static void test_naive_bayes_class_absent_from_the_rows_gets_probability_zero(void **state)
{
    (void)state;
    /* four classes, no row of class 3: the other three are scikit-learn's
     * three-class model */
    kp_model *m = fit(KP_TASK_MULTICLASS, 4, nb_X, 30, 3, nb_yc, NULL);
    float *p = predict(m, nb_Q, 6, 3, 1);
    for (int k = 0; k < 3; k++)
        assert_close("present class", p + k, 4, sk_nb_default + k, 3, 6, 1e-6);
    for (int i = 0; i < 6; i++)
        assert_true(p[i * 4 + 3] == 0);
    free(p);
    kp_model_free(m);
}

static void test_naive_bayes_multilabel_is_one_binary_model_per_label(void **state)
{
    (void)state;
    float y2[60], y1[30];
    for (int i = 0; i < 30; i++) {
        y2[2 * i] = nb_yb[i];
        y2[2 * i + 1] = y1[i] = nb_yc[i] == 2;
    }
    kp_model *ml = fit(KP_TASK_MULTILABEL, 2, nb_X, 30, 3, y2, NULL);
    kp_model *b0 = fit(KP_TASK_BINARY, 1, nb_X, 30, 3, nb_yb, NULL);
    kp_model *b1 = fit(KP_TASK_BINARY, 1, nb_X, 30, 3, y1, NULL);
    float *p = predict(ml, nb_Q, 6, 3, 1), *p0 = predict(b0, nb_Q, 6, 3, 1);
    float *p1 = predict(b1, nb_Q, 6, 3, 1);
    for (int i = 0; i < 6; i++) {
        assert_true(p[2 * i] == p0[i]);
        assert_true(p[2 * i + 1] == p1[i]);
    }
    free(p);
    free(p0);
    free(p1);
    kp_model_free(ml);
    kp_model_free(b0);
    kp_model_free(b1);
}

/* ---- generated problems ---- */

typedef struct gen { float *X, *y; } gen;

/* Makes a problem with class-conditional normal features: class (or label
 * pattern) k shifts feature j by mean[k][j] (1.2 x a normal draw). */
static gen generate(kp_task_kind task, int n_out, int n, int d, uint64_t seed)
{
    kp_rng r;
    kp_rng_seed(&r, seed);
    int K = task == KP_TASK_MULTICLASS ? n_out : 2, L = task == KP_TASK_MULTILABEL ? n_out : 1;
    gen g = { malloc(sizeof(float) * (size_t)n * d), malloc(sizeof(float) * (size_t)n * L) };
    double mean[8][16];
    assert_true(K * L <= 8 && d <= 16);
    for (int k = 0; k < K * L; k++)
        for (int j = 0; j < d; j++)
            mean[k][j] = 1.2 * kp_rng_normal(&r);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < d; j++)
            g.X[i * d + j] = (float)kp_rng_normal(&r);
        for (int l = 0; l < L; l++) {
            int k = (int)kp_rng_below(&r, (uint64_t)K);
            g.y[i * L + l] = (float)k;
            for (int j = 0; j < d; j++)
                g.X[i * d + j] += (float)mean[l * K + k][j];
        }
    }
    return g;
}

static void gen_free(gen *g)
{
    free(g->X);
    free(g->y);
}

typedef struct quality_case {
    kp_task_kind task;
    int n_out;
    const char *metric;
    double bound;   /* at least this (or at most, for lower-is-better metrics) */
} quality_case;

/* Gaussian classes with 6 features and 800 rows: naive Bayes is the right
 * model here (for multilabel, each label's model sees the others' shifts
 * as extra noise).  Each band sits a few points under the score measured on
 * these seeds (beside it), so a broken likelihood or prior fails. */
static const quality_case quality[] = {
    { KP_TASK_BINARY, 1, "accuracy", 0.90 },      /* measured 0.9325 */
    { KP_TASK_BINARY, 1, "auc", 0.98 },           /* 1.0000 (seed 101 draws far-apart means) */
    { KP_TASK_MULTICLASS, 4, "accuracy", 0.80 },  /* 0.8450 */
    { KP_TASK_MULTICLASS, 4, "logloss", 0.65 },   /* 0.5244 */
    { KP_TASK_MULTILABEL, 3, "auc", 0.95 },       /* 0.9837 */
};

static void test_naive_bayes_fits_generated_problems_within_accuracy_bands(void **state)
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
            fail_msg("naive_bayes %s: %s %.4f, bound %.4f", kp_task_name(q->task), q->metric, s,
                     q->bound);
        free(pred);
        kp_model_free(m);
        gen_free(&g);
    }
}

/* ---- checkpoints ---- */

static void test_naive_bayes_save_load_round_trip_predicts_identical_bits(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir();
    for (size_t c = 0; c < sizeof quality / sizeof quality[0]; c++) {
        const quality_case *q = &quality[c];
        gen g = generate(q->task, q->n_out, 300, 5, 7 + c);
        kp_model *m = fit(q->task, q->n_out, g.X, 300, 5, g.y, NULL), *back = NULL;
        char err[KP_ERRLEN] = "", name[32];
        snprintf(name, sizeof name, "m%zu.safetensors", c);
        char *path = kp_test_join(dir, name);
        if (kp_model_save(m, path, err, sizeof err) != 0)
            fail_msg("save: %s", err);
        if (kp_model_load(path, &kp_model_naive_bayes, &back, err, sizeof err) != 0)
            fail_msg("load: %s", err);
        float *a = predict(m, g.X, 300, 5, 1), *b = predict(back, g.X, 300, 5, 2);
        assert_memory_equal(a, b, sizeof *a * 300 * (size_t)q->n_out);
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

/* One tensor of a hand-made checkpoint for a 3-class model over 2 features. */
typedef struct tspec {
    const char *name;
    kp_dtype dtype;
    int ndim;
    int64_t shape[3];
} tspec;

typedef struct bad_ckpt {
    tspec t[3];
    int which;          /* tensor to poke (0 theta, 1 var, 2 log_prior), -1 none */
    int at;
    double value;
    const char *tail;   /* the message after "PATH: " */
} bad_ckpt;

#define THETA { "theta", KP_F64, 3, { 1, 3, 2 } }
#define VAR { "var", KP_F64, 3, { 1, 3, 2 } }
#define PRIOR { "log_prior", KP_F64, 2, { 1, 3 } }

static const bad_ckpt bad[] = {
    { { { "theta", KP_F32, 3, { 1, 3, 2 } }, VAR, PRIOR }, -1, 0, 0,
      "tensor 'theta' has dtype F32, expected F64" },
    { { { "theta", KP_F64, 3, { 1, 2, 2 } }, VAR, PRIOR }, -1, 0, 0,
      "tensor 'theta' has shape [1, 2, 2], expected [1, 3, *]" },
    { { THETA, { "var", KP_F64, 3, { 1, 3, 3 } }, PRIOR }, -1, 0, 0,
      "tensor 'var' has shape [1, 3, 3], expected [1, 3, 2]" },
    { { THETA, VAR, { "prior", KP_F64, 2, { 1, 3 } } }, -1, 0, 0, "no tensor 'log_prior'" },
    { { THETA, VAR, PRIOR }, 0, 3, NAN, "tensor 'theta' holds a non-finite value at index 3" },
    { { THETA, VAR, PRIOR }, 1, 4, 0, "tensor 'var' holds 0 at index 4; variances must be > 0" },
    { { THETA, VAR, PRIOR }, 1, 1, -1, "tensor 'var' holds -1 at index 1; variances must be > 0" },
    { { THETA, VAR, PRIOR }, 2, 2, 0.5, "tensor 'log_prior' holds 0.5, not a log probability" },
    { { THETA, VAR, PRIOR }, 2, 0, NAN, "tensor 'log_prior' holds nan, not a log probability" },
    { { THETA, VAR, PRIOR }, 3, 0, -INFINITY,
      "tensor 'log_prior' gives no class of model 0 a chance" },
};

/* Writes the checkpoint of case b to DIR/NAME; returns the heap path. */
static char *write_bad(const char *dir, const char *name, const bad_ckpt *b)
{
    kp_stw *w = kp_stw_create();
    for (int t = 0; t < 3; t++) {
        double v[16];
        for (int i = 0; i < 16; i++)
            v[i] = t == 2 ? log(1 / 3.0) : t == 1 ? 1 + i : 0.5 * i;
        if (b->which == t || (b->which == 3 && t == 2))
            for (int i = b->which == 3 ? 0 : b->at; i < (b->which == 3 ? 3 : b->at + 1); i++)
                v[i] = b->value;
        if (b->t[t].dtype == KP_F32) {
            float f[16];
            for (int i = 0; i < 16; i++)
                f[i] = (float)v[i];
            assert_int_equal(kp_stw_add(w, b->t[t].name, KP_F32, b->t[t].ndim, b->t[t].shape, f),
                             0);
        } else {
            assert_int_equal(kp_stw_add(w, b->t[t].name, KP_F64, b->t[t].ndim, b->t[t].shape, v),
                             0);
        }
    }
    char *path = kp_test_join(dir, name), err[KP_ERRLEN];
    assert_int_equal(kp_stw_write(w, path, err, sizeof err), 0);
    kp_stw_free(w);
    return path;
}

static void test_naive_bayes_load_refuses_corrupted_checkpoints(void **state)
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
        int rc = kp_model_naive_bayes.load(st, &pb, &model, err, sizeof err);
        snprintf(want, sizeof want, "%s: %s", path, bad[i].tail);
        if (rc != KP_ERR_FORMAT || strcmp(err, want) != 0)
            fail_msg("case %zu: status %d, message '%s', want '%s'", i, rc, err, want);
        assert_null(model);
        kp_st_close(st);
        free(path);
    }
    free(dir);
}

static void test_naive_bayes_load_refuses_truncated_checkpoint(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), err[KP_ERRLEN] = "";
    char *path = kp_test_join(dir, "cut.safetensors");
    kp_model *m = fit(KP_TASK_MULTICLASS, 3, nb_X, 30, 3, nb_yc, NULL), *back = NULL;
    assert_int_equal(kp_model_save(m, path, err, sizeof err), 0);
    assert_int_equal(truncate(path, 150), 0);
    assert_true(kp_model_load(path, &kp_model_naive_bayes, &back, err, sizeof err) < 0);
    assert_null(back);
    assert_int_equal(strncmp(err, path, strlen(path)), 0);   /* names the file */
    free(path);
    kp_model_free(m);
    free(dir);
}

/* ---- determinism and input checks ---- */

static void test_naive_bayes_is_deterministic_across_runs_and_thread_counts(void **state)
{
    (void)state;
    enum { N = 3000, D = 6 };   /* 6 blocks of 512 rows at predict */
    gen g = generate(KP_TASK_MULTICLASS, 4, N, D, 41);
    float *p[3];
    for (int run = 0; run < 3; run++) {
        kp_model *m = fit(KP_TASK_MULTICLASS, 4, g.X, N, D, g.y, NULL);
        p[run] = predict(m, g.X, N, D, run + 1);
        kp_model_free(m);
    }
    assert_memory_equal(p[0], p[1], sizeof(float) * N * 4);
    assert_memory_equal(p[0], p[2], sizeof(float) * N * 4);
    for (int run = 0; run < 3; run++)
        free(p[run]);
    gen_free(&g);
}

/* Fits naive_bayes and expects failure with exactly `want`. */
static void assert_fit_fails(kp_task_kind task, int n_out, const float *X, int64_t rows,
                             int64_t cols, const float *y, const char *const *kv, int status,
                             const char *want)
{
    kp_params *p = params_of(kv);
    kp_problem pb = { .task = task, .n_out = n_out };
    kp_matrix m = { X, rows, cols };
    kp_model *model = NULL;
    char err[KP_ERRLEN] = "";
    int rc = kp_model_fit(&kp_model_naive_bayes, p, &pb, &m, y, NULL, &model, err, sizeof err);
    kp_params_free(p);
    assert_int_equal(rc, status);
    assert_string_equal(err, want);
    assert_null(model);
}

static void test_naive_bayes_rejects_bad_inputs_with_clear_messages(void **state)
{
    (void)state;
    static const float y_nan[] = { 0, 1, NAN, 1 }, X_const[] = { 1, 5, 2, 5, 3, 5, 4, 5 };
    static const float y4[] = { 0, 1, 0, 1 };
    static const char *const p3[] = { "priors", "0.5,0.25,0.25", NULL };
    static const char *const pneg[] = { "priors", "1.5,-0.5", NULL };
    static const char *const psum[] = { "priors", "0.5,0.4", NULL };
    static const char *const vs0[] = { "var_smoothing", "0", NULL };
    assert_fit_fails(KP_TASK_BINARY, 1, nb_X, 4, 3, y_nan, NULL, KP_ERR_ARG,
                     "naive_bayes: y[2] = nan is not 0 or 1");
    assert_fit_fails(KP_TASK_REGRESSION, 1, nb_X, 4, 3, y4, NULL, KP_ERR_ARG,
                     "naive_bayes: task 'regression' is not supported "
                     "(only binary, multiclass, multilabel)");
    assert_fit_fails(KP_TASK_BINARY, 1, nb_X, 4, 3, y4, p3, KP_ERR_ARG,
                     "naive_bayes: priors has 3 values but the task has 2 classes");
    assert_fit_fails(KP_TASK_BINARY, 1, nb_X, 4, 3, y4, pneg, KP_ERR_ARG,
                     "naive_bayes: priors[1] = '-0.5' is not a number >= 0");
    assert_fit_fails(KP_TASK_BINARY, 1, nb_X, 4, 3, y4, psum, KP_ERR_ARG,
                     "naive_bayes: priors sum to 0.90000000000000002, not 1");
    assert_fit_fails(KP_TASK_BINARY, 1, X_const, 4, 2, y4, vs0, KP_ERR_ARG,
                     "naive_bayes: feature 1 of class 0 has variance 0; raise var_smoothing");
    kp_model *m = fit(KP_TASK_MULTICLASS, 3, nb_X, 30, 3, nb_yc, NULL);
    static const float q_nan[] = { 0, 1, 2, INFINITY, 1, 2 };
    float out[6];
    char err[KP_ERRLEN] = "";
    kp_matrix wrong = { nb_X, 3, 2 }, bad = { q_nan, 2, 3 };
    assert_int_equal(kp_model_predict(m, &wrong, out, 1, err, sizeof err), KP_ERR_MISMATCH);
    assert_string_equal(err, "naive_bayes: X has 2 columns but the model was fitted on 3 features");
    assert_int_equal(kp_model_predict(m, &bad, out, 1, err, sizeof err), KP_ERR_ARG);
    assert_string_equal(err, "naive_bayes: X[1, 0] is inf; features must be finite");
    kp_model_free(m);
}

static void test_naive_bayes_params_have_scikit_learn_names_and_defaults(void **state)
{
    (void)state;
    const kp_keyspec *s = kp_model_naive_bayes.params;
    assert_int_equal(kp_keyspec_count(s), 2);
    assert_string_equal(s[0].name, "var_smoothing");
    assert_string_equal(s[0].def, "1e-9");
    assert_string_equal(s[1].name, "priors");
    assert_int_equal(s[1].type, KP_PT_LIST);
    assert_false(kp_model_naive_bayes.tasks & KP_TASK_BIT(KP_TASK_REGRESSION));
}

KP_TEST_GROUP(naive_bayes)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_naive_bayes_matches_scikit_learn_probabilities),
        cmocka_unit_test(test_naive_bayes_class_absent_from_the_rows_gets_probability_zero),
        cmocka_unit_test(test_naive_bayes_multilabel_is_one_binary_model_per_label),
        cmocka_unit_test(test_naive_bayes_fits_generated_problems_within_accuracy_bands),
        cmocka_unit_test(test_naive_bayes_save_load_round_trip_predicts_identical_bits),
        cmocka_unit_test(test_naive_bayes_load_refuses_corrupted_checkpoints),
        cmocka_unit_test(test_naive_bayes_load_refuses_truncated_checkpoint),
        cmocka_unit_test(test_naive_bayes_is_deterministic_across_runs_and_thread_counts),
        cmocka_unit_test(test_naive_bayes_rejects_bad_inputs_with_clear_messages),
        cmocka_unit_test(test_naive_bayes_params_have_scikit_learn_names_and_defaults),
    };
    return KP_RUN(naive_bayes, t);
}

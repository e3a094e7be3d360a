/* test_gbdt.c - the gbdt model: hand-computed splits, missing values, early
 * stopping, the four tasks and three regression losses, both growth
 * policies, importances, checkpoints (round trip and hostile files) and
 * determinism across thread counts.
 *
 * Models are fitted through kp_model_fit where the inputs are finite; the
 * missing-value tests call kp_model_gbdt.fit directly, since kp_model_fit
 * refuses NaN features.  Checkpoints are read back with kp_model_gbdt.load
 * on an opened kp_st (what kp_model_load does after the registry lookup).
 */
#include "kp_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/err.h"
#include "../lib/rng.h"
#include "../models/model.h"

extern const kp_model_ops kp_model_gbdt;
#define OPS (&kp_model_gbdt)

/* ---- helpers ---- */

/* Returns validated params from {key, value, ..., NULL} (caller frees). */
static kp_params *params_of(const char *const *kv)
{
    kp_params *p = kp_params_create();
    char err[KP_ERRLEN] = "";
    assert_non_null(p);
    for (int i = 0; kv && kv[i]; i += 2)
        assert_int_equal(kp_params_set(p, kv[i], kv[i + 1], 0, 0), 0);
    if (kp_params_validate(p, OPS->params, "test", "gbdt", err, sizeof err) != 0)
        fail_msg("params: %s", err);
    return p;
}

/* Fits through kp_model_fit or fails the test; caller frees. */
static kp_model *fit_opts(kp_task_kind task, int n_out, const float *X, int64_t rows,
                          int64_t cols, const float *y, const char *const *kv,
                          const kp_fit_opts *o)
{
    kp_params *p = params_of(kv);
    kp_problem pb = { .task = task, .n_out = n_out };
    kp_matrix m = { X, rows, cols };
    kp_fit_opts def = { .seed = 1, .threads = 1 };
    kp_model *model = NULL;
    char err[KP_ERRLEN] = "";
    int rc = kp_model_fit(OPS, p, &pb, &m, y, o ? o : &def, &model, err, sizeof err);
    kp_params_free(p);
    if (rc != 0)
        fail_msg("fit: %s", err);
    return model;
}

static kp_model *fit(kp_task_kind task, int n_out, const float *X, int64_t rows, int64_t cols,
                     const float *y, const char *const *kv)
{
    return fit_opts(task, n_out, X, rows, cols, y, kv, NULL);
}

/* Fits with ops->fit directly (features may be NaN); returns the impl. */
static void *fit_raw(kp_task_kind task, const float *X, int64_t rows, int64_t cols,
                     const float *y, const char *const *kv)
{
    kp_params *p = params_of(kv);
    kp_problem pb = { .task = task, .n_out = 1 };
    kp_matrix m = { X, rows, cols };
    kp_fit_opts o = { .seed = 1, .threads = 1 };
    void *model = NULL;
    char err[KP_ERRLEN] = "";
    int rc = OPS->fit(p, &pb, &m, y, &o, &model, err, sizeof err);
    kp_params_free(p);
    if (rc != 0)
        fail_msg("fit: %s", err);
    return model;
}

/* Predicts rows x n_out values; heap. */
static float *predict(const kp_model *m, const float *X, int64_t rows, int64_t cols, int n_out,
                      int threads)
{
    float *out = malloc(sizeof *out * (size_t)(rows * n_out));
    kp_matrix x = { X, rows, cols };
    char err[KP_ERRLEN] = "";
    if (kp_model_predict(m, &x, out, threads, err, sizeof err) != 0)
        fail_msg("predict: %s", err);
    return out;
}

/* Saves m to DIR/NAME; returns the heap path. */
static char *save(const kp_model *m, const char *dir, const char *name)
{
    char *path = kp_test_join(dir, name), err[KP_ERRLEN] = "";
    if (kp_model_save(m, path, err, sizeof err) != 0)
        fail_msg("save: %s", err);
    return path;
}

/* Saves a bare impl (fitted with fit_raw) and opens it; caller closes. */
static kp_st *open_impl(const void *impl, const char *dir, const char *name)
{
    kp_stw *w = kp_stw_create();
    char *path = kp_test_join(dir, name), err[KP_ERRLEN] = "";
    kp_st *st = NULL;
    assert_int_equal(OPS->save(impl, w, err, sizeof err), 0);
    assert_int_equal(kp_stw_write(w, path, err, sizeof err), 0);
    assert_int_equal(kp_st_open(path, &st, err, sizeof err), 0);
    kp_stw_free(w);
    free(path);
    return st;
}

/* Opens a checkpoint or fails; caller closes. */
static kp_st *open_ckpt(const char *path)
{
    kp_st *st = NULL;
    char err[KP_ERRLEN] = "";
    if (kp_st_open(path, &st, err, sizeof err) != 0)
        fail_msg("open: %s", err);
    return st;
}

/* Loads a gbdt checkpoint as kp_model_load does once the model is found:
 * returns the status, the impl in *out, the message in err. */
static int load_impl(const char *path, kp_problem *pb, void **out, char *err, size_t errlen)
{
    kp_st *st = NULL;
    *out = NULL;
    int rc = kp_st_open(path, &st, err, errlen);
    if (rc == 0) {
        *pb = (kp_problem){ .task = KP_TASK_BINARY, .n_out = 1 };
        assert_int_equal(kp_task_parse(kp_st_meta(st, "kpipe.task"), &pb->task), 0);
        pb->n_out = atoi(kp_st_meta(st, "kpipe.n_out"));
        rc = OPS->load(st, pb, out, err, errlen);
    }
    kp_st_close(st);
    return rc;
}

static const int32_t *i32(const kp_st *st, const char *name)
{
    const kp_tensor *t = kp_st_find(st, name);
    assert_non_null(t);
    assert_int_equal(t->dtype, KP_I32);
    return t->data;
}

static const float *f32(const kp_st *st, const char *name)
{
    const kp_tensor *t = kp_st_find(st, name);
    assert_non_null(t);
    assert_int_equal(t->dtype, KP_F32);
    return t->data;
}

static int64_t numel(const kp_st *st, const char *name)
{
    const kp_tensor *t = kp_st_find(st, name);
    assert_non_null(t);
    return t->numel;
}

/* ---- generated problems ---- */

typedef struct gen { float *X, *y; int n, d, n_out; } gen;

/* A nonlinear problem for trees: scores z_k from products, steps and sines
 * of the first features plus N(0, 0.3^2) noise; binary/multilabel y = z > 0,
 * multiclass the argmax, regression z itself. */
static gen generate(kp_task_kind task, int n_out, int n, int d, uint64_t seed)
{
    kp_rng r;
    kp_rng_seed(&r, seed);
    int K = task == KP_TASK_MULTICLASS || task == KP_TASK_MULTILABEL ? n_out : 1;
    int yw = task == KP_TASK_MULTILABEL ? n_out : 1;
    gen g = { malloc(sizeof(float) * (size_t)n * d), malloc(sizeof(float) * (size_t)n * yw), n,
              d, n_out };
    assert_true(d >= 4 && K <= 8);
    for (int i = 0; i < n; i++) {
        float *x = g.X + (size_t)i * d;
        double z[8], best = -INFINITY;
        for (int j = 0; j < d; j++)
            x[j] = (float)kp_rng_normal(&r);
        for (int k = 0; k < K; k++) {
            int a = k % d, b = (k + 1) % d, c = (k + 2) % d;
            z[k] = 1.5 * x[a] * x[b] + 2 * (x[c] > 0.3) - 1 + sin(2 * x[a]) +
                   0.3 * kp_rng_normal(&r);
        }
        for (int k = 0; k < K; k++) {
            if (task == KP_TASK_MULTICLASS && z[k] > best) {
                best = z[k];
                g.y[i] = (float)k;
            }
            if (task == KP_TASK_BINARY || task == KP_TASK_MULTILABEL)
                g.y[i * yw + k] = z[k] > 0;
        }
        if (task == KP_TASK_REGRESSION)
            g.y[i] = (float)z[0];
    }
    return g;
}

static void gen_free(gen *g)
{
    free(g->X);
    free(g->y);
}

/* Accuracy of probabilities p (n x K; K = 1: threshold 0.5) against y. */
static double accuracy(const float *p, const float *y, int n, int K, int multilabel)
{
    int ok = 0, total = 0;
    for (int i = 0; i < n; i++) {
        if (K == 1 || multilabel) {
            for (int k = 0; k < K; k++, total++)
                ok += (p[i * K + k] > 0.5f) == (y[i * K + k] > 0.5f);
            continue;
        }
        int best = 0;
        for (int k = 1; k < K; k++)
            best = p[i * K + k] > p[i * K + best] ? k : best;
        ok += best == (int)y[i];
        total++;
    }
    return (double)ok / total;
}

/* R^2 of predictions p against y. */
static double r2(const float *p, const float *y, int n)
{
    double mean = 0, ss = 0, st = 0;
    for (int i = 0; i < n; i++)
        mean += y[i] / n;
    for (int i = 0; i < n; i++) {
        ss += (p[i] - y[i]) * (double)(p[i] - y[i]);
        st += (y[i] - mean) * (y[i] - mean);
    }
    return 1 - ss / st;
}

/* ---- the first split, by hand ---- */

/* Regression, squared error, base_score 0, lambda 1, eta 1, one split:
 *
 *   x0:  1  2  3  4  5  6  7  8       y: 1 1 2 1 5 6 5 7
 *   x1:  3  1  4  1  5  9  2  6
 *
 * g_i = pred - y_i = -y_i, h_i = 1; the node sums are G = -28, H = 8 and its
 * own gain G^2 / (H + lambda) = 784 / 9 = 87.111.  The cuts of x0 are the
 * midpoints 1.5 .. 7.5.  Splitting x0 at 4.5: left rows 1-4 have
 * GL = -(1+1+2+1) = -5, HL = 4; right rows 5-8 GR = -23, HR = 4; loss change
 * 25/5 + 529/5 - 784/9 = 5 + 105.8 - 87.111 = 23.689.  The runners-up are
 * x0 <= 3.5 (16/4 + 576/6 - 87.111 = 12.889) and x1 <= 1.5 / x0 <= 2.5
 * (10.794); every other split gains less.  Leaves: -GL / (HL + 1) = 1.0 and
 * -GR / (HR + 1) = 4.6. */
static const float hand_X[] = { 1, 3, 2, 1, 3, 4, 4, 1, 5, 5, 6, 9, 7, 2, 8, 6 };
static const float hand_y[] = { 1, 1, 2, 1, 5, 6, 5, 7 };

static void test_gbdt_root_split_matches_hand_computation(void **state)
{
    (void)state;
    static const char *const kv[] = { "objective", "reg:squarederror", "base_score", "0",
                                      "n_estimators", "1", "max_depth", "1",
                                      "learning_rate", "1", "reg_lambda", "1", NULL };
    kp_model *m = fit(KP_TASK_REGRESSION, 1, hand_X, 8, 2, hand_y, kv);
    char *dir = kp_test_tmpdir(), *path = save(m, dir, "hand.safetensors");
    kp_st *st = open_ckpt(path);
    assert_int_equal(numel(st, "feature"), 3);
    assert_int_equal(i32(st, "feature")[0], 0);
    assert_true(f32(st, "threshold")[0] == 4.5f);
    assert_int_equal(i32(st, "left")[0], 1);
    assert_int_equal(i32(st, "right")[0], 2);
    assert_true(fabsf(f32(st, "value")[1] - 1.0f) < 1e-6f);
    assert_true(fabsf(f32(st, "value")[2] - 4.6f) < 1e-6f);
    assert_true(fabs(f32(st, "importance_gain")[0] - 213.2 / 9) < 1e-4);
    assert_true(f32(st, "importance_gain")[1] == 0);
    float x[4] = { 4.4f, 0, 4.6f, 0 }, *p = predict(m, x, 2, 2, 1, 1);
    assert_true(fabsf(p[0] - 1.0f) < 1e-6f && fabsf(p[1] - 4.6f) < 1e-6f);
    free(p);
    kp_st_close(st);
    free(path);
    free(dir);
    kp_model_free(m);
}

/* ---- missing values ---- */

/* x0 = 1..6 with y = 0 0 0 1 1 1, then three NaN rows of class `nan_class`. */
static void missing_data(float *X, float *y, float nan_class)
{
    for (int i = 0; i < 6; i++) {
        X[i] = (float)(i + 1);
        y[i] = i >= 3;
    }
    for (int i = 6; i < 9; i++) {
        X[i] = NAN;
        y[i] = nan_class;
    }
}

/* Binary logistic, base 0.5: g = 0.5 - y, h = 0.25.  With the NaN rows of
 * class 1, x0 <= 3.5 with NaN on the right gains 1.5^2/1.75 + 3^2/2.5 -
 * 1.5^2/3.25 = 4.19 against 0.59 with NaN on the left; with NaN rows of
 * class 0 the two swap.  So the learned default follows the NaN rows' class. */
static void test_gbdt_missing_values_go_where_the_data_says(void **state)
{
    (void)state;
    static const char *const kv[] = { "n_estimators", "1", "max_depth", "1",
                                      "min_child_weight", "0", "learning_rate", "1", NULL };
    char *dir = kp_test_tmpdir();
    for (int nan_class = 0; nan_class <= 1; nan_class++) {
        float X[9], y[9];
        missing_data(X, y, (float)nan_class);
        void *m = fit_raw(KP_TASK_BINARY, X, 9, 1, y, kv);
        kp_st *st = open_impl(m, dir, nan_class ? "nan1.safetensors" : "nan0.safetensors");
        const kp_tensor *dl = kp_st_find(st, "default_left");
        assert_int_equal(i32(st, "feature")[0], 0);
        assert_true(f32(st, "threshold")[0] == 3.5f);
        assert_int_equal(((const uint8_t *)dl->data)[0], nan_class ? 0 : 1);
        /* at predict, NaN follows default_left: it lands with its class */
        float q[3] = { NAN, 1, 6 }, p[3];
        kp_matrix xq = { q, 3, 1 };
        char err[KP_ERRLEN] = "";
        assert_int_equal(OPS->predict(m, &xq, p, 1, err, sizeof err), 0);
        assert_true(p[0] == (nan_class ? p[2] : p[1]));
        assert_true(nan_class ? p[0] > 0.5f : p[0] < 0.5f);
        kp_st_close(st);
        OPS->free(m);
    }
    free(dir);
}

/* Held-out accuracy of 30 rounds on g (1000 rows train, 500 test). */
static double holdout_accuracy(const gen *g)
{
    static const char *const kv[] = { "n_estimators", "30", NULL };
    void *m = fit_raw(KP_TASK_BINARY, g->X, 1000, 4, g->y, kv);
    float p[500];
    kp_matrix xt = { g->X + 1000 * 4, 500, 4 };
    char err[KP_ERRLEN] = "";
    assert_int_equal(OPS->predict(m, &xt, p, 2, err, sizeof err), 0);
    OPS->free(m);
    return accuracy(p, g->y + 1000, 500, 1, 0);
}

static void test_gbdt_missing_values_carry_their_signal(void **state)
{
    (void)state;
    /* x3 is missing on every other row of class 1: NaN itself says "1";
     * the same rows with noise instead of NaN carry no such hint */
    gen g = generate(KP_TASK_BINARY, 1, 1500, 4, 77), h = generate(KP_TASK_BINARY, 1, 1500, 4, 77);
    kp_rng r;
    kp_rng_seed(&r, 5);
    for (int i = 0; i < g.n; i += 2)
        if (g.y[i] > 0.5f) {
            g.X[i * 4 + 3] = NAN;
            h.X[i * 4 + 3] = (float)kp_rng_normal(&r);
        }
    double with_nan = holdout_accuracy(&g), with_noise = holdout_accuracy(&h);  /* 0.962, 0.928 */
    if (!(with_nan > with_noise + 0.01))
        fail_msg("accuracy %.4f with NaNs, %.4f with noise", with_nan, with_noise);
    gen_free(&g);
    gen_free(&h);
}

/* ---- the tasks ---- */

typedef struct task_case {
    kp_task_kind task;
    int n_out;
    const char *objective;
    double bound;       /* accuracy or R^2 on 500 held-out rows, at least */
} task_case;

/* Bounds: a few points under what the fit reaches (in the comment) on these
 * seeds, well above what guessing the majority or the mean gives. */
static const task_case tasks[] = {
    { KP_TASK_BINARY, 1, "auto", 0.93 },                       /* 0.956 */
    { KP_TASK_MULTICLASS, 3, "auto", 0.86 },                   /* 0.890 */
    { KP_TASK_MULTILABEL, 3, "auto", 0.93 },                   /* 0.958 */
    { KP_TASK_REGRESSION, 1, "reg:squarederror", 0.92 },       /* 0.952 */
    { KP_TASK_REGRESSION, 1, "reg:absoluteerror", 0.90 },      /* 0.933 */
    { KP_TASK_REGRESSION, 1, "reg:pseudohubererror", 0.90 },   /* 0.935 */
};

static void test_gbdt_fits_every_task_and_loss_to_a_known_band(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof tasks / sizeof tasks[0]; c++) {
        const task_case *t = &tasks[c];
        int K = t->n_out, yw = t->task == KP_TASK_MULTILABEL ? K : 1;
        gen g = generate(t->task, K, 2000, 5, 300 + c);
        const char *kv[] = { "objective", t->objective, "n_estimators", "60",
                             "learning_rate", "0.2", NULL };
        kp_model *m = fit(t->task, K, g.X, 1500, 5, g.y, kv);
        float *p = predict(m, g.X + 1500 * 5, 500, 5, K, 2);
        double s = t->task == KP_TASK_REGRESSION
                       ? r2(p, g.y + 1500, 500)
                       : accuracy(p, g.y + 1500 * yw, 500, K, t->task == KP_TASK_MULTILABEL);
        if (s < t->bound)
            fail_msg("%s %s: %.4f, bound %.4f", kp_task_name(t->task), t->objective, s, t->bound);
        if (t->task == KP_TASK_MULTICLASS)
            for (int i = 0; i < 500; i++)
                assert_true(fabsf(p[3 * i] + p[3 * i + 1] + p[3 * i + 2] - 1) < 1e-5f);
        free(p);
        kp_model_free(m);
        gen_free(&g);
    }
}

static void test_gbdt_multiclass_grows_one_tree_per_class_per_round(void **state)
{
    (void)state;
    gen g = generate(KP_TASK_MULTICLASS, 4, 400, 5, 11);
    static const char *const kv[] = { "n_estimators", "7", "max_depth", "3", NULL };
    kp_model *m = fit(KP_TASK_MULTICLASS, 4, g.X, 400, 5, g.y, kv);
    char *dir = kp_test_tmpdir(), *path = save(m, dir, "mc.safetensors");
    kp_st *st = open_ckpt(path);
    assert_int_equal(numel(st, "tree_offsets"), 7 * 4 + 1);
    assert_int_equal(numel(st, "base_score"), 4);
    float *p = predict(m, g.X, 400, 5, 4, 1);
    double acc = accuracy(p, g.y, 400, 4, 0);
    assert_true(acc > 0.75);    /* train accuracy after 7 rounds is 0.82; 4 classes */
    free(p);
    kp_st_close(st);
    free(path);
    free(dir);
    kp_model_free(m);
    gen_free(&g);
}

/* absoluteerror sets each leaf to eta * the median residual of its rows.
 * base = median(1 1 1 2 5 5 6 7) = 3.5, so g = sign(3.5 - y) is +1 on rows
 * 1-4 and -1 on rows 5-8, split at x0 <= 4.5; residuals y - 3.5: left
 * -2.5 -2.5 -1.5 -2.5 (median -2.5), right 1.5 2.5 1.5 3.5 (median 2);
 * eta 0.5 makes the leaves -1.25 and 1. */
static void test_gbdt_absolute_error_leaves_are_median_residuals(void **state)
{
    (void)state;
    static const char *const kv[] = { "objective", "reg:absoluteerror", "n_estimators", "1",
                                      "max_depth", "1", "learning_rate", "0.5",
                                      "min_child_weight", "0", NULL };
    kp_model *m = fit(KP_TASK_REGRESSION, 1, hand_X, 8, 2, hand_y, kv);
    char *dir = kp_test_tmpdir(), *path = save(m, dir, "l1.safetensors");
    kp_st *st = open_ckpt(path);
    assert_true(f32(st, "base_score")[0] == 3.5f);
    assert_int_equal(i32(st, "feature")[0], 0);
    assert_true(f32(st, "threshold")[0] == 4.5f);
    assert_true(f32(st, "value")[1] == -1.25f);
    assert_true(f32(st, "value")[2] == 1.0f);
    kp_st_close(st);
    free(path);
    free(dir);
    kp_model_free(m);
}

/* ---- growth policies ---- */

/* Returns the depth of node i of a tree (nodes from off) and counts leaves. */
static int tree_depth(const int32_t *feature, const int32_t *left, const int32_t *right,
                      int off, int i, int *leaves)
{
    if (feature[off + i] < 0) {
        ++*leaves;
        return 0;
    }
    int a = tree_depth(feature, left, right, off, left[off + i], leaves);
    int b = tree_depth(feature, left, right, off, right[off + i], leaves);
    return 1 + (a > b ? a : b);
}

static void test_gbdt_depthwise_and_lossguide_both_grow_bounded_trees(void **state)
{
    (void)state;
    static const char *const depthwise[] = { "max_depth", "3", "n_estimators", "40",
                                             "learning_rate", "0.2", NULL };
    static const char *const lossguide[] = { "grow_policy", "lossguide", "max_depth", "0",
                                             "max_leaves", "5", "n_estimators", "40",
                                             "learning_rate", "0.2", NULL };
    const char *const *kvs[2] = { depthwise, lossguide };
    gen g = generate(KP_TASK_BINARY, 1, 2000, 5, 21);
    char *dir = kp_test_tmpdir();
    int deepest[2] = { 0, 0 };
    for (int c = 0; c < 2; c++) {
        kp_model *m = fit(KP_TASK_BINARY, 1, g.X, 1500, 5, g.y, kvs[c]);
        char *path = save(m, dir, c ? "lg.safetensors" : "dw.safetensors");
        kp_st *st = open_ckpt(path);
        const int32_t *off = i32(st, "tree_offsets");
        for (int t = 0; t < 40; t++) {
            int leaves = 0, depth = tree_depth(i32(st, "feature"), i32(st, "left"),
                                               i32(st, "right"), off[t], 0, &leaves);
            assert_true(c ? leaves <= 5 : depth <= 3);
            deepest[c] = depth > deepest[c] ? depth : deepest[c];
        }
        float *p = predict(m, g.X + 1500 * 5, 500, 5, 1, 1);
        double acc = accuracy(p, g.y + 1500, 500, 1, 0);
        if (acc < 0.88)     /* 0.926 depthwise, 0.914 lossguide */
            fail_msg("%s: accuracy %.4f", c ? "lossguide" : "depthwise", acc);
        free(p);
        kp_st_close(st);
        free(path);
        kp_model_free(m);
    }
    assert_int_equal(deepest[0], 3);
    assert_true(deepest[1] >= 3);   /* leaf-wise: 5 leaves may go 4 deep */
    free(dir);
    gen_free(&g);
}

/* ---- early stopping ---- */

/* Mean logloss of probabilities p against 0/1 labels y. */
static double logloss(const float *p, const float *y, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s -= y[i] > 0.5f ? log(p[i]) : log(1 - p[i]);
    return s / n;
}

static void test_gbdt_early_stopping_keeps_the_best_round(void **state)
{
    (void)state;
    gen g = generate(KP_TASK_BINARY, 1, 900, 6, 5);
    for (int i = 0; i < 900; i += 4)     /* label noise, so the held-out loss turns up */
        g.y[i] = 1 - g.y[i];
    kp_matrix Xv = { g.X + 600 * 6, 300, 6 };
    kp_fit_opts o = { .seed = 3, .threads = 1, .X_valid = &Xv, .y_valid = g.y + 600 };
    static const char *const es[] = { "n_estimators", "300", "learning_rate", "0.5",
                                      "max_depth", "6", "early_stopping_rounds", "5", NULL };
    kp_model *m = fit_opts(KP_TASK_BINARY, 1, g.X, 600, 6, g.y, es, &o);
    char *dir = kp_test_tmpdir(), *path = save(m, dir, "es.safetensors");
    kp_st *st = open_ckpt(path);
    int kept = (int)numel(st, "tree_offsets") - 1;
    assert_true(kept >= 1 && kept < 300);
    float *p = predict(m, Xv.data, 300, 6, 1, 1);
    double best = logloss(p, g.y + 600, 300);
    /* the same fit cut at `kept` rounds is the same model ... */
    char n_kept[16];
    snprintf(n_kept, sizeof n_kept, "%d", kept);
    const char *cut[] = { "n_estimators", n_kept, "learning_rate", "0.5", "max_depth", "6", NULL };
    kp_model *m2 = fit_opts(KP_TASK_BINARY, 1, g.X, 600, 6, g.y, cut, &o);
    float *p2 = predict(m2, Xv.data, 300, 6, 1, 1);
    assert_memory_equal(p, p2, sizeof *p * 300);
    /* ... and the 5 rounds after it do no better on the held-out rows */
    for (int extra = 1; extra <= 5; extra++) {
        snprintf(n_kept, sizeof n_kept, "%d", kept + extra);
        kp_model *m3 = fit_opts(KP_TASK_BINARY, 1, g.X, 600, 6, g.y, cut, &o);
        float *p3 = predict(m3, Xv.data, 300, 6, 1, 1);
        assert_true(logloss(p3, g.y + 600, 300) >= best - 1e-6);
        free(p3);
        kp_model_free(m3);
    }
    free(p);
    free(p2);
    kp_model_free(m2);
    kp_st_close(st);
    free(path);
    free(dir);
    kp_model_free(m);
    gen_free(&g);
}

static void test_gbdt_logs_progress_every_ten_trees(void **state)
{
    (void)state;
    gen g = generate(KP_TASK_REGRESSION, 1, 300, 4, 9);
    char *text = NULL;
    size_t len = 0;
    FILE *log = open_memstream(&text, &len);
    kp_matrix Xv = { g.X + 200 * 4, 100, 4 };
    kp_fit_opts o = { .seed = 1, .threads = 1, .log = log, .X_valid = &Xv,
                      .y_valid = g.y + 200 };
    static const char *const kv[] = { "n_estimators", "20", NULL };
    kp_model *m = fit_opts(KP_TASK_REGRESSION, 1, g.X, 200, 4, g.y, kv, &o);
    fclose(log);
    assert_non_null(strstr(text, "gbdt: tree 10/20 train-rmse "));
    assert_non_null(strstr(text, "gbdt: tree 20/20 train-rmse "));
    assert_non_null(strstr(text, " valid-rmse "));
    free(text);
    kp_model_free(m);
    gen_free(&g);
}

/* ---- importances, shared bins ---- */

static void test_gbdt_importance_counts_every_split_and_its_gain(void **state)
{
    (void)state;
    gen g = generate(KP_TASK_BINARY, 1, 1000, 6, 31);
    static const char *const kv[] = { "n_estimators", "20", "max_depth", "4", NULL };
    kp_model *m = fit(KP_TASK_BINARY, 1, g.X, 1000, 6, g.y, kv);
    char *dir = kp_test_tmpdir(), *path = save(m, dir, "imp.safetensors");
    kp_st *st = open_ckpt(path);
    const int32_t *feature = i32(st, "feature"), *split = i32(st, "importance_split");
    const float *gain = f32(st, "importance_gain");
    assert_int_equal(numel(st, "importance_split"), 6);
    assert_int_equal(numel(st, "importance_gain"), 6);
    int64_t internal = 0, total = 0;
    for (int64_t i = 0; i < numel(st, "feature"); i++)
        internal += feature[i] >= 0;
    double g_all = 0, g_used = 0;
    for (int j = 0; j < 6; j++) {
        total += split[j];
        g_all += gain[j];
        assert_true(gain[j] >= 0 && (split[j] > 0 || gain[j] == 0));
        if (j < 3)      /* z depends on x0, x1, x2 only */
            g_used += gain[j];
    }
    assert_int_equal(total, internal);
    assert_true(g_used > 0.9 * g_all);
    kp_st_close(st);
    free(path);
    free(dir);
    kp_model_free(m);
    gen_free(&g);
}

/* X = 1 2 3 4 (y 0 0 1 1): alone its cut between 2 and 3 is 2.5; with
 * X_all holding 2.6 too the cuts are 2.3 and 2.8, and the split x <= 2.3. */
static void test_gbdt_bins_come_from_X_all(void **state)
{
    (void)state;
    static const float X[] = { 1, 2, 3, 4 }, y[] = { 0, 0, 1, 1 }, all[] = { 1, 2, 2.6f, 3, 4 };
    static const char *const kv[] = { "n_estimators", "1", "max_depth", "1",
                                      "min_child_weight", "0", NULL };
    kp_matrix Xall = { all, 5, 1 };
    kp_fit_opts with = { .threads = 1, .X_all = &Xall }, without = { .threads = 1 };
    const kp_fit_opts *o[2] = { &without, &with };
    float want[2] = { 2.5f, 2.3f };
    char *dir = kp_test_tmpdir();
    for (int c = 0; c < 2; c++) {
        kp_model *m = fit_opts(KP_TASK_BINARY, 1, X, 4, 1, y, kv, o[c]);
        char *path = save(m, dir, c ? "all.safetensors" : "own.safetensors");
        kp_st *st = open_ckpt(path);
        assert_true(f32(st, "threshold")[0] == want[c]);
        kp_st_close(st);
        free(path);
        kp_model_free(m);
    }
    free(dir);
}

/* ---- determinism ---- */

static void test_gbdt_is_deterministic_across_runs_and_thread_counts(void **state)
{
    (void)state;
    /* 40000 rows: several partition chunks and histogram tasks per node */
    gen g = generate(KP_TASK_MULTICLASS, 3, 40000, 12, 8);
    static const char *const kv[] = { "n_estimators", "3", "max_depth", "5", "subsample",
                                      "0.8", "colsample_bytree", "0.7", NULL };
    float *p[3];
    for (int r = 0; r < 3; r++) {
        kp_fit_opts o = { .seed = 42, .threads = r == 0 ? 1 : 2 };
        kp_model *m = fit_opts(KP_TASK_MULTICLASS, 3, g.X, 40000, 12, g.y, kv, &o);
        p[r] = predict(m, g.X, 2000, 12, 3, r == 0 ? 1 : 2);
        kp_model_free(m);
    }
    assert_memory_equal(p[0], p[1], sizeof(float) * 2000 * 3);
    assert_memory_equal(p[1], p[2], sizeof(float) * 2000 * 3);
    kp_fit_opts o = { .seed = 43, .threads = 2 };   /* another seed draws other rows */
    kp_model *m = fit_opts(KP_TASK_MULTICLASS, 3, g.X, 40000, 12, g.y, kv, &o);
    float *q = predict(m, g.X, 2000, 12, 3, 2);
    assert_true(memcmp(q, p[0], sizeof(float) * 2000 * 3) != 0);
    free(q);
    kp_model_free(m);
    for (int r = 0; r < 3; r++)
        free(p[r]);
    gen_free(&g);
}

/* ---- bad inputs ---- */

static void test_gbdt_rejects_bad_inputs_clearly(void **state)
{
    (void)state;
    float X[8] = { 1, 2, 3, 4, 5, 6, 7, 8 }, y[4] = { 0, 1, NAN, 1 };
    kp_params *p = params_of(NULL);
    kp_problem pb = { .task = KP_TASK_BINARY, .n_out = 1 };
    kp_matrix m = { X, 4, 2 };
    kp_fit_opts o = { .threads = 1 };
    kp_model *model = NULL;
    char err[KP_ERRLEN] = "";
    assert_int_equal(kp_model_fit(OPS, p, &pb, &m, y, &o, &model, err, sizeof err),
                     KP_ERR_ARG);
    assert_string_equal(err, "gbdt: y[2] = nan is not 0 or 1");
    assert_null(model);
    y[2] = 0;
    kp_model *ok = fit(KP_TASK_BINARY, 1, X, 4, 2, y, NULL);
    float out[4];
    kp_matrix wrong = { X, 2, 3 };
    assert_int_equal(kp_model_predict(ok, &wrong, out, 1, err, sizeof err), KP_ERR_MISMATCH);
    assert_string_equal(err, "gbdt: X has 3 columns but the model was fitted on 2 features");
    kp_model_free(ok);
    kp_params_free(p);
    /* parameters the keyspec cannot check alone */
    static const char *const bad0[] = { "objective", "reg:absoluteerror", NULL };
    static const char *const bad1[] = { "max_depth", "0", NULL };
    static const char *const bad2[] = { "base_score", "1.5", NULL };
    static const char *const *const bad[] = { bad0, bad1, bad2 };
    static const char *const msg[] = {
        "gbdt: objective 'reg:absoluteerror' needs task regression, not binary",
        "gbdt: max_depth = 0 needs max_leaves > 0 (a tree must be bounded)",
        "gbdt: base_score = 1.5 must be in (0, 1) for binary",
    };
    for (int c = 0; c < 3; c++) {
        p = params_of(bad[c]);
        model = NULL;
        assert_int_equal(kp_model_fit(OPS, p, &pb, &m, y, &o, &model, err, sizeof err),
                         KP_ERR_ARG);
        assert_string_equal(err, msg[c]);
        assert_null(model);
        kp_params_free(p);
    }
}

/* ---- checkpoints ---- */

static void test_gbdt_round_trip_predicts_identical_bits(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir();
    for (size_t c = 0; c < sizeof tasks / sizeof tasks[0]; c++) {
        const task_case *t = &tasks[c];
        gen g = generate(t->task, t->n_out, 400, 5, 50 + c);
        const char *kv[] = { "objective", t->objective, "n_estimators", "15", NULL };
        kp_model *m = fit(t->task, t->n_out, g.X, 400, 5, g.y, kv);
        char name[32], err[KP_ERRLEN] = "";
        snprintf(name, sizeof name, "rt%zu.safetensors", c);
        char *path = save(m, dir, name);
        kp_problem pb;
        void *back = NULL;
        assert_int_equal(load_impl(path, &pb, &back, err, sizeof err), 0);
        assert_int_equal(pb.task, t->task);
        size_t np = 400 * (size_t)t->n_out;
        float *a = predict(m, g.X, 400, 5, t->n_out, 1), *b = malloc(sizeof *b * np);
        kp_matrix X = { g.X, 400, 5 };
        assert_int_equal(OPS->predict(back, &X, b, 2, err, sizeof err), 0);
        assert_memory_equal(a, b, sizeof *a * np);
        free(a);
        free(b);
        free(path);
        OPS->free(back);
        kp_model_free(m);
        gen_free(&g);
    }
    free(dir);
}

static void test_gbdt_round_trip_through_kp_model_load(void **state)
{
    (void)state;
    if (!kp_model_find("gbdt"))
        skip();     /* until models/registry.c lists gbdt */
    gen g = generate(KP_TASK_BINARY, 1, 300, 4, 2);
    kp_model *m = fit(KP_TASK_BINARY, 1, g.X, 300, 4, g.y, NULL), *back = NULL;
    char *dir = kp_test_tmpdir(), *path = save(m, dir, "m.safetensors"), err[KP_ERRLEN] = "";
    assert_int_equal(kp_model_load(path, OPS, &back, err, sizeof err), 0);
    float *a = predict(m, g.X, 300, 4, 1, 1), *b = predict(back, g.X, 300, 4, 1, 2);
    assert_memory_equal(a, b, sizeof *a * 300);
    free(a);
    free(b);
    free(path);
    free(dir);
    kp_model_free(back);
    kp_model_free(m);
    gen_free(&g);
}

typedef struct mutation {
    const char *tensor;
    int kind;           /* 0 set element, 1 change dtype, 2 drop the last element, 3 omit */
    int index;          /* element (-1: the first leaf of tree 0) */
    double value;
    const char *tail;   /* the message after "PATH: " */
} mutation;

static const mutation mutations[] = {
    { "feature", 0, 0, 99, "tree 0 node 0 has a feature index out of range" },
    { "feature", 0, 0, -2, "tree 0 node 0 has a feature index out of range" },
    { "left", 0, 0, 0, "tree 0 node 0 has a child index out of range (children must follow "
      "their node inside the tree)" },
    { "right", 0, 0, 1000, "tree 0 node 0 has a child index out of range (children must "
      "follow their node inside the tree)" },
    { "threshold", 0, 0, NAN, "tree 0 node 0 has a NaN threshold" },
    { "value", 0, -1, INFINITY, "tree 0 node %d has a non-finite value" },
    { "left", 0, -1, 1, "tree 0 node %d has a leaf with children" },
    { "default_left", 0, 0, 2, "tree 0 node 0 has a default_left that is not 0 or 1" },
    { "tree_offsets", 0, 1, 0, "tensor 'tree_offsets' is not increasing at tree 0" },
    { "tree_offsets", 0, 0, 1, "tensor 'tree_offsets' does not start at 0" },
    { "base_score", 0, 0, NAN, "tensor 'base_score' holds a non-finite value" },
    { "importance_split", 0, 1, -1, "feature 1 has a negative or non-finite importance" },
    { "feature", 1, 0, 0, "tensor 'feature' has dtype F32, expected I32" },
    { "value", 2, 0, 0, "tensor 'value' has shape [%lld], expected [%lld]" },
    { "default_left", 3, 0, 0, "no tensor 'default_left'" },
};

/* Writes the tensors of st (all copied, one mutated by mu) and its metadata. */
static void write_mutated(const kp_st *st, const mutation *mu, int leaf, const char *path)
{
    kp_stw *w = kp_stw_create();
    static const char *const meta[] = { "kpipe.model", "kpipe.task", "kpipe.n_out",
                                        "kpipe.format" };
    for (int i = 0; i < 4; i++)
        assert_int_equal(kp_stw_meta(w, meta[i], kp_st_meta(st, meta[i])), 0);
    for (int i = 0; i < kp_st_count(st); i++) {
        const kp_tensor *t = kp_st_at(st, i);
        int hit = strcmp(t->name, mu->tensor) == 0;
        if (hit && mu->kind == 3)
            continue;
        unsigned char *copy = malloc(t->nbytes + 8);
        memcpy(copy, t->data, t->nbytes);
        int64_t shape[1] = { t->shape[0] };
        kp_dtype dt = t->dtype;
        if (hit && mu->kind == 0) {
            int at = mu->index < 0 ? leaf : mu->index;
            if (dt == KP_I32)
                ((int32_t *)copy)[at] = (int32_t)mu->value;
            else if (dt == KP_F32)
                ((float *)copy)[at] = (float)mu->value;
            else
                copy[at] = (unsigned char)mu->value;
        }
        if (hit && mu->kind == 1)
            dt = KP_F32;
        if (hit && mu->kind == 2)
            shape[0]--;
        assert_int_equal(kp_stw_add(w, t->name, dt, 1, shape, copy), 0);
        free(copy);
    }
    char err[KP_ERRLEN];
    assert_int_equal(kp_stw_write(w, path, err, sizeof err), 0);
    kp_stw_free(w);
}

static void test_gbdt_refuses_corrupted_checkpoints(void **state)
{
    (void)state;
    gen g = generate(KP_TASK_BINARY, 1, 300, 4, 4);
    static const char *const kv[] = { "n_estimators", "3", "max_depth", "3", NULL };
    kp_model *m = fit(KP_TASK_BINARY, 1, g.X, 300, 4, g.y, kv);
    char *dir = kp_test_tmpdir(), *good = save(m, dir, "good.safetensors");
    kp_st *st = open_ckpt(good);
    int leaf = 0, n_nodes = (int)numel(st, "feature");
    while (i32(st, "feature")[leaf] >= 0)
        leaf++;
    for (size_t c = 0; c < sizeof mutations / sizeof mutations[0]; c++) {
        const mutation *mu = &mutations[c];
        char name[32], tail[256], want[KP_ERRLEN], err[KP_ERRLEN] = "";
        snprintf(name, sizeof name, "bad%zu.safetensors", c);
        char *path = kp_test_join(dir, name);
        write_mutated(st, mu, leaf, path);
        if (mu->kind == 2)
            snprintf(tail, sizeof tail, mu->tail, (long long)n_nodes - 1, (long long)n_nodes);
        else
            snprintf(tail, sizeof tail, mu->tail, leaf);
        snprintf(want, sizeof want, "%s: %s", path, tail);
        kp_problem pb;
        void *back = (void *)1;
        int rc = load_impl(path, &pb, &back, err, sizeof err);
        if (rc != KP_ERR_FORMAT || strcmp(err, want) != 0)
            fail_msg("mutation %zu: status %d, message '%s', want '%s'", c, rc, err, want);
        assert_null(back);
        free(path);
    }
    kp_st_close(st);
    free(good);
    free(dir);
    kp_model_free(m);
    gen_free(&g);
}

static void test_gbdt_refuses_a_truncated_checkpoint(void **state)
{
    (void)state;
    gen g = generate(KP_TASK_BINARY, 1, 300, 4, 4);
    kp_model *m = fit(KP_TASK_BINARY, 1, g.X, 300, 4, g.y, NULL);
    char *dir = kp_test_tmpdir(), *good = save(m, dir, "good.safetensors");
    char *cut = kp_test_join(dir, "cut.safetensors");
    FILE *fp = fopen(good, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    size_t len = (size_t)ftell(fp);
    rewind(fp);
    unsigned char *raw = malloc(len);
    assert_int_equal(fread(raw, 1, len, fp), len);
    fclose(fp);
    fp = fopen(cut, "wb");
    assert_int_equal(fwrite(raw, 1, len - 9, fp), len - 9);     /* the last tensor's tail */
    fclose(fp);
    kp_problem pb;
    void *back = (void *)1;
    char err[KP_ERRLEN] = "";
    assert_int_equal(load_impl(cut, &pb, &back, err, sizeof err), KP_ERR_FORMAT);
    assert_true(strncmp(err, cut, strlen(cut)) == 0);     /* the reader names the file */
    assert_null(back);
    free(raw);
    free(cut);
    free(good);
    free(dir);
    kp_model_free(m);
    gen_free(&g);
}

KP_TEST_GROUP(gbdt)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_gbdt_root_split_matches_hand_computation),
        cmocka_unit_test(test_gbdt_missing_values_go_where_the_data_says),
        cmocka_unit_test(test_gbdt_missing_values_carry_their_signal),
        cmocka_unit_test(test_gbdt_fits_every_task_and_loss_to_a_known_band),
        cmocka_unit_test(test_gbdt_multiclass_grows_one_tree_per_class_per_round),
        cmocka_unit_test(test_gbdt_absolute_error_leaves_are_median_residuals),
        cmocka_unit_test(test_gbdt_depthwise_and_lossguide_both_grow_bounded_trees),
        cmocka_unit_test(test_gbdt_early_stopping_keeps_the_best_round),
        cmocka_unit_test(test_gbdt_logs_progress_every_ten_trees),
        cmocka_unit_test(test_gbdt_importance_counts_every_split_and_its_gain),
        cmocka_unit_test(test_gbdt_bins_come_from_X_all),
        cmocka_unit_test(test_gbdt_is_deterministic_across_runs_and_thread_counts),
        cmocka_unit_test(test_gbdt_rejects_bad_inputs_clearly),
        cmocka_unit_test(test_gbdt_round_trip_predicts_identical_bits),
        cmocka_unit_test(test_gbdt_round_trip_through_kp_model_load),
        cmocka_unit_test(test_gbdt_refuses_corrupted_checkpoints),
        cmocka_unit_test(test_gbdt_refuses_a_truncated_checkpoint),
    };
    return KP_RUN(gbdt, t);
}

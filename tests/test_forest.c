/* test_forest.c - the forest model (random forest and extra trees): fits of
 * every task, hand-checked splits, the stored tree tensors, checkpoints,
 * determinism and input checks.
 *
 * The generated problems are those of tests/test_models.c (a noisy linear
 * model of 6 normal features, 800 rows to fit, 400 to score).  The bands
 * were set from scikit-learn 1.2's RandomForestClassifier/Regressor and
 * ExtraTrees* (n_estimators=50, defaults otherwise, the mean over
 * random_state 0..4) on the same rows, written out once and scored offline:
 * each band sits about 0.03 (RMSE: 10%) on the worse side of scikit-learn's
 * score, so a forest as good as scikit-learn's passes and one that splits
 * badly does not.
 */
#include "kp_test.h"
#include "model_fixture.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "../lib/err.h"
#include "../lib/rng.h"
#include "../models/metric.h"
#include "../models/model.h"

extern const kp_model_ops kp_model_forest;

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

/* Fits the forest with params kv on `threads` threads, or fails the test. */
static kp_model *fit_t(kp_task_kind task, int n_out, const float *X, int64_t rows, int64_t cols,
                       const float *y, const char *const *kv, int threads)
{
    kp_params *p = params_of(kv);
    kp_problem pb = { .task = task, .n_out = n_out };
    kp_matrix m = { X, rows, cols };
    kp_fit_opts o = { .seed = 1, .threads = threads };
    kp_model *model = NULL;
    char err[KP_ERRLEN] = "";
    int rc = kp_model_fit(&kp_model_forest, p, &pb, &m, y, &o, &model, err, sizeof err);
    kp_params_free(p);
    if (rc != 0)
        fail_msg("fit forest: %s", err);
    return model;
}

static kp_model *fit(kp_task_kind task, int n_out, const float *X, int64_t rows, int64_t cols,
                     const float *y, const char *const *kv)
{
    return fit_t(task, n_out, X, rows, cols, y, kv, 1);
}

/* Predicts rows x cols of X (n_out per row) into a heap array. */
static float *predict(const kp_model *m, const float *X, int64_t rows, int64_t cols, int threads)
{
    float *out = malloc(sizeof *out * (size_t)rows * (size_t)kp_model_problem(m)->n_out);
    kp_matrix Xm = { X, rows, cols };
    char err[KP_ERRLEN] = "";
    if (kp_model_predict(m, &Xm, out, threads, err, sizeof err) != 0)
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

/* A fitted forest's tensors, read back from its checkpoint. */
typedef struct trees {
    kp_st *st;
    char *dir, *path;
    int64_t n_trees, n_nodes;
    const int64_t *offset;
    const int32_t *feature, *left, *right;
    const float *thr, *value;
    const uint8_t *mleft;
} trees;

static trees trees_of(const kp_model *m)
{
    trees t = { 0 };
    char err[KP_ERRLEN] = "";
    t.dir = kp_test_tmpdir();
    t.path = save(m, t.dir, "t.safetensors");
    assert_int_equal(kp_st_open(t.path, &t.st, err, sizeof err), 0);
    const kp_tensor *o = kp_st_find(t.st, "tree_offset"), *f = kp_st_find(t.st, "feature");
    assert_non_null(o);
    assert_non_null(f);
    t.n_trees = o->numel - 1;
    t.n_nodes = f->numel;
    t.offset = o->data;
    t.feature = f->data;
    t.left = kp_st_find(t.st, "left")->data;
    t.right = kp_st_find(t.st, "right")->data;
    t.thr = kp_st_find(t.st, "threshold")->data;
    t.value = kp_st_find(t.st, "value")->data;
    t.mleft = kp_st_find(t.st, "missing_left")->data;
    return t;
}

static void trees_free(trees *t)
{
    kp_st_close(t->st);
    free(t->path);
    free(t->dir);
}

/* Returns the global index of the leaf row x reaches in tree k. */
static int64_t leaf_of(const trees *t, int64_t k, const float *x)
{
    int64_t base = t->offset[k], i = 0;
    while (t->feature[base + i] >= 0) {
        float v = x[t->feature[base + i]];
        int left = v <= t->thr[base + i] || (isnan(v) && t->mleft[base + i]);
        i = left ? t->left[base + i] : t->right[base + i];
    }
    return base + i;
}

/* Returns the depth of tree k. */
static int depth_of(const trees *t, int64_t k, int64_t i)
{
    int64_t g = t->offset[k] + i;
    if (t->feature[g] < 0)
        return 0;
    int l = depth_of(t, k, t->left[g]), r = depth_of(t, k, t->right[g]);
    return 1 + (l > r ? l : r);
}

/* ---- generated problems (as tests/test_models.c) ---- */

/* Returns metric `name` of pred on the rows [from, from + n) of g. */
static double score_of(const char *name, const gen *g, kp_task_kind task, const float *pred,
                       int from, int n)
{
    const kp_metric_ops *mo = kp_metric_find(name);
    kp_problem pb = { .task = task, .n_out = g->n_out };
    int yw = task == KP_TASK_MULTILABEL ? g->n_out : 1;
    double s = 0;
    char err[KP_ERRLEN] = "";
    assert_non_null(mo);
    if (mo->score(&pb, g->y + (size_t)from * yw, pred, n, NULL, &s, err, sizeof err) != 0)
        fail_msg("score %s: %s", name, err);
    return s;
}

/* ---- quality ---- */

typedef struct quality_case {
    const char *kind;
    kp_task_kind task;
    int n_out;
    const char *metric;
    double bound;   /* at least this (or at most, for rmse) */
    double sklearn; /* what scikit-learn 1.2 reaches on the same rows */
} quality_case;

static const quality_case quality[] = {
    { "random", KP_TASK_BINARY, 1, "accuracy", 0.88, 0.9115 },
    { "random", KP_TASK_BINARY, 1, "auc", 0.93, 0.9614 },
    { "random", KP_TASK_MULTICLASS, 4, "accuracy", 0.81, 0.8475 },
    { "random", KP_TASK_REGRESSION, 1, "rmse", 0.99, 0.9007 },
    { "random", KP_TASK_MULTILABEL, 3, "auc", 0.93, 0.9659 },
    { "extra", KP_TASK_BINARY, 1, "accuracy", 0.87, 0.9035 },
    { "extra", KP_TASK_MULTICLASS, 4, "accuracy", 0.86, 0.8900 },
    { "extra", KP_TASK_REGRESSION, 1, "rmse", 1.04, 0.9446 },
};

static void test_forest_fits_generated_problems_of_every_task(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof quality / sizeof quality[0]; c++) {
        const quality_case *q = &quality[c];
        const char *const kv[] = { "kind", q->kind, "n_estimators", "50", NULL };
        gen g = generate(q->task, q->n_out, 1200, 6, 100 + c);
        kp_model *m = fit_t(q->task, q->n_out, g.X, 800, 6, g.y, kv, 2);
        float *pred = predict(m, g.X + 800 * 6, 400, 6, 2);
        double s = score_of(q->metric, &g, q->task, pred, 800, 400);
        int higher = strcmp(q->metric, "rmse") != 0;
        if (getenv("FOREST_SCORES"))
            printf("%s %s %s %.4f (scikit-learn %.4f)\n", q->kind, kp_task_name(q->task),
                   q->metric, s, q->sklearn);
        if (higher ? s < q->bound : s > q->bound)
            fail_msg("%s %s: %s %.4f, bound %.4f (scikit-learn %.4f)", q->kind,
                     kp_task_name(q->task), q->metric, s, q->bound, q->sklearn);
        free(pred);
        kp_model_free(m);
        gen_free(&g);
    }
}

/* ---- the trees ---- */

/* feature 1 separates the classes between 3 and 10; feature 0 does not. */
static const float sep_X[] = {
    5, 1,   1, 2,   4, 3,   2, 10,   6, 11,   3, 12,
};
static const float sep_y[] = { 0, 0, 0, 1, 1, 1 };
static const char *const one_exact_tree[] = {
    "n_estimators", "1", "bootstrap", "false", "max_features", "all", NULL,
};

static void test_forest_single_exact_tree_splits_at_the_hand_checked_midpoint(void **state)
{
    (void)state;
    kp_model *m = fit(KP_TASK_BINARY, 1, sep_X, 6, 2, sep_y, one_exact_tree);
    trees t = trees_of(m);
    assert_int_equal(t.n_trees, 1);
    assert_int_equal(t.n_nodes, 3);                 /* one split, two pure leaves */
    assert_int_equal(t.feature[0], 1);
    assert_true(t.thr[0] == 6.5f);                  /* (3 + 10) / 2, as scikit-learn */
    assert_int_equal(t.left[0], 1);
    assert_int_equal(t.right[0], 2);
    assert_int_equal(t.feature[1], -1);
    assert_int_equal(t.feature[2], -1);
    assert_true(t.value[1] == 0.0f && t.value[2] == 1.0f);   /* P(class 1) per leaf */
    trees_free(&t);
    kp_model_free(m);
}

static void test_forest_regression_leaves_hold_the_mean_target(void **state)
{
    (void)state;
    static const float X[] = { 1, 2, 3, 4, 5, 6 };
    static const float y[] = { 1, 2, 3, 10, 20, 30 };
    static const char *const kv[] = { "n_estimators", "1", "bootstrap", "false", "max_depth",
                                      "1", NULL };
    kp_model *m = fit(KP_TASK_REGRESSION, 1, X, 6, 1, y, kv);
    trees t = trees_of(m);
    /* squared error of the five cuts after 1..5 rows: 568, 417.25, 202, 100 (4 | 5:
     * 50 + 50) and 254.8; the best is between 4 and 5 */
    assert_int_equal(t.n_nodes, 3);
    assert_int_equal(t.feature[0], 0);
    assert_true(t.thr[0] == 4.5f);
    assert_true(fabsf(t.value[0] - 11.0f) < 1e-6f);
    assert_true(fabsf(t.value[1] - 4.0f) < 1e-6f);        /* (1 + 2 + 3 + 10) / 4 */
    assert_true(fabsf(t.value[2] - 25.0f) < 1e-6f);       /* (20 + 30) / 2 */
    trees_free(&t);
    kp_model_free(m);
}

/* y = 1 0 0 0 1 2 0 at x = 1..7: the weighted Gini of the six cuts is 3, 3.8,
 * 3.83, 3.5, 3.4, 3.67 (best after 1 row), the weighted entropy 5.21, 6.14,
 * 6.07, 5.55, 4.75, 6.07 nats (best after 5 rows). */
static void test_forest_gini_and_entropy_choose_their_own_best_cut(void **state)
{
    (void)state;
    static const float X[] = { 1, 2, 3, 4, 5, 6, 7 };
    static const float y[] = { 1, 0, 0, 0, 1, 2, 0 };
    static const char *const crit[] = { "gini", "entropy" };
    static const float want[] = { 1.5f, 5.5f };
    for (int c = 0; c < 2; c++) {
        const char *const kv[] = { "n_estimators", "1", "bootstrap", "false", "max_depth", "1",
                                   "criterion", crit[c], NULL };
        kp_model *m = fit(KP_TASK_MULTICLASS, 3, X, 7, 1, y, kv);
        trees t = trees_of(m);
        assert_int_equal(t.n_nodes, 3);
        if (t.thr[0] != want[c])
            fail_msg("%s cut at %g, want %g", crit[c], t.thr[0], want[c]);
        trees_free(&t);
        kp_model_free(m);
    }
}

static void test_forest_extra_trees_differ_from_random_forest_for_one_seed(void **state)
{
    (void)state;
    gen g = generate(KP_TASK_BINARY, 1, 300, 5, 3);
    static const char *const rf[] = { "kind", "random", "n_estimators", "5", NULL };
    static const char *const et[] = { "kind", "extra", "n_estimators", "5", "bootstrap", "true",
                                      NULL };
    kp_model *a = fit(KP_TASK_BINARY, 1, g.X, 300, 5, g.y, rf);
    kp_model *b = fit(KP_TASK_BINARY, 1, g.X, 300, 5, g.y, et);
    trees ta = trees_of(a), tb = trees_of(b);
    /* same seed, same bootstrap draws: only the cut rule differs */
    assert_true(ta.n_nodes != tb.n_nodes ||
                memcmp(ta.thr, tb.thr, sizeof(float) * (size_t)ta.n_nodes) != 0);
    float *pa = predict(a, g.X, 300, 5, 1), *pb = predict(b, g.X, 300, 5, 1);
    assert_true(memcmp(pa, pb, sizeof(float) * 300) != 0);
    free(pa);
    free(pb);
    trees_free(&ta);
    trees_free(&tb);
    kp_model_free(a);
    kp_model_free(b);
    gen_free(&g);
}

static void test_forest_respects_min_samples_leaf_in_every_leaf(void **state)
{
    (void)state;
    gen g = generate(KP_TASK_MULTICLASS, 3, 400, 4, 5);
    static const char *const kinds[] = { "random", "extra" };
    for (int k = 0; k < 2; k++) {
        const char *const kv[] = { "kind", kinds[k], "n_estimators", "4", "bootstrap", "false",
                                   "min_samples_leaf", "7", NULL };
        kp_model *m = fit(KP_TASK_MULTICLASS, 3, g.X, 400, 4, g.y, kv);
        trees t = trees_of(m);
        int *count = calloc((size_t)t.n_nodes, sizeof *count), leaves = 0;
        for (int64_t tr = 0; tr < t.n_trees; tr++)
            for (int i = 0; i < 400; i++)
                count[leaf_of(&t, tr, g.X + i * 4)]++;
        for (int64_t i = 0; i < t.n_nodes; i++) {
            if (t.feature[i] >= 0)
                continue;
            leaves++;
            if (count[i] < 7)
                fail_msg("%s: leaf %lld holds %d rows, min_samples_leaf is 7", kinds[k],
                         (long long)i, count[i]);
        }
        assert_true(leaves > 4 * 5);    /* the trees did grow */
        free(count);
        trees_free(&t);
        kp_model_free(m);
    }
    gen_free(&g);
}

static void test_forest_respects_max_depth(void **state)
{
    (void)state;
    gen g = generate(KP_TASK_REGRESSION, 1, 300, 4, 6);
    static const char *const kv[] = { "n_estimators", "3", "max_depth", "3", NULL };
    kp_model *m = fit(KP_TASK_REGRESSION, 1, g.X, 300, 4, g.y, kv);
    trees t = trees_of(m);
    for (int64_t k = 0; k < t.n_trees; k++)
        assert_int_equal(depth_of(&t, k, 0), 3);
    trees_free(&t);
    kp_model_free(m);
    gen_free(&g);
}

static void test_forest_multiclass_probabilities_sum_to_one(void **state)
{
    (void)state;
    gen g = generate(KP_TASK_MULTICLASS, 5, 500, 6, 8);
    static const char *const kinds[] = { "random", "extra" };
    for (int k = 0; k < 2; k++) {
        const char *const kv[] = { "kind", kinds[k], "n_estimators", "20", "criterion",
                                   k ? "entropy" : "gini", NULL };
        kp_model *m = fit(KP_TASK_MULTICLASS, 5, g.X, 400, 6, g.y, kv);
        float *p = predict(m, g.X + 400 * 6, 100, 6, 1);
        for (int i = 0; i < 100; i++) {
            double s = 0;
            for (int c = 0; c < 5; c++) {
                assert_true(p[i * 5 + c] >= 0 && p[i * 5 + c] <= 1);
                s += p[i * 5 + c];
            }
            if (fabs(s - 1) > 1e-5)
                fail_msg("%s: row %d probabilities sum to %.8f", kinds[k], i, s);
        }
        free(p);
        kp_model_free(m);
    }
    gen_free(&g);
}

/* A NaN row at prediction goes to the heavier child when training had none. */
static void test_forest_routes_unseen_nan_to_the_heavier_child(void **state)
{
    (void)state;
    static const float X[] = { 1, 2, 3, 4, 5, 6, 7 };
    static const float y[] = { 0, 0, 1, 1, 1, 1, 1 };
    static const char *const kv[] = { "n_estimators", "1", "bootstrap", "false", NULL };
    kp_model *m = fit(KP_TASK_BINARY, 1, X, 7, 1, y, kv);
    trees t = trees_of(m);
    assert_true(t.thr[0] == 2.5f);
    assert_int_equal(t.mleft[0], 0);                /* 2 rows left, 5 right */
    static const float q[] = { NAN };
    float *p = predict(m, q, 1, 1, 1);
    assert_true(p[0] == 1.0f);
    free(p);
    trees_free(&t);
    kp_model_free(m);
}

/* NaN rows in training go with the class they resemble, for both kinds. */
static void test_forest_learns_the_side_of_nan_rows(void **state)
{
    (void)state;
    static const float X[] = { 1, 2, 3, NAN, NAN, 10, 11, 12 };
    static const float y[] = { 0, 0, 0, 0, 0, 1, 1, 1 };
    static const float q[] = { NAN, 0, 100 };
    static const char *const kinds[] = { "random", "extra" };
    for (int k = 0; k < 2; k++) {
        const char *const kv[] = { "kind", kinds[k], "n_estimators", "10", "bootstrap",
                                   "false", NULL };
        kp_model *m = fit(KP_TASK_BINARY, 1, X, 8, 1, y, kv);
        float *p = predict(m, q, 3, 1, 1);
        if (!(p[0] == 0.0f && p[1] == 0.0f && p[2] == 1.0f))
            fail_msg("%s: P(1) of NaN, 0, 100 = %g %g %g, want 0 0 1", kinds[k], p[0], p[1],
                     p[2]);
        free(p);
        kp_model_free(m);
    }
}

/* ---- checkpoints ---- */

static void test_forest_save_load_round_trip_predicts_identical_bits(void **state)
{
    (void)state;
    static const kp_task_kind tasks[] = { KP_TASK_BINARY, KP_TASK_MULTICLASS, KP_TASK_REGRESSION,
                                          KP_TASK_MULTILABEL };
    static const int n_out[] = { 1, 3, 1, 2 };
    char *dir = kp_test_tmpdir();
    for (int c = 0; c < 4; c++) {
        gen g = generate(tasks[c], n_out[c], 200, 5, 20 + c);
        const char *const kv[] = { "n_estimators", "7", "kind", c % 2 ? "extra" : "random",
                                   NULL };
        kp_model *m = fit(tasks[c], n_out[c], g.X, 200, 5, g.y, kv), *back = NULL;
        char name[32], err[KP_ERRLEN] = "";
        snprintf(name, sizeof name, "f%d.safetensors", c);
        char *path = save(m, dir, name);
        if (kp_model_load(path, &kp_model_forest, &back, err, sizeof err) != 0)
            fail_msg("load: %s", err);
        float *a = predict(m, g.X, 200, 5, 1), *b = predict(back, g.X, 200, 5, 2);
        assert_memory_equal(a, b, sizeof *a * 200 * (size_t)n_out[c]);
        assert_int_equal(kp_model_problem(back)->task, tasks[c]);
        assert_int_equal(kp_model_problem(back)->n_out, n_out[c]);
        free(a);
        free(b);
        free(path);
        kp_model_free(m);
        kp_model_free(back);
        gen_free(&g);
    }
    free(dir);
}

/* A hand-made one-tree forest on 2 features (binary): node 0 splits feature
 * 1 at 0.5 into leaves 1 and 2; mutations make it hostile. */
typedef struct ckpt {
    const char *n_features;
    int64_t offset[3];
    int n_off;
    int32_t feature[3], left[3], right[3];
    float thr[3], value[3];
    uint8_t mleft[3];
    int64_t value_cols;
    kp_dtype thr_dtype;
} ckpt;

static const ckpt good = { "2", { 0, 3 }, 2, { 1, -1, -1 }, { 1, -1, -1 }, { 2, -1, -1 },
                           { 0.5f, 0, 0 }, { 0.5f, 0, 1 }, { 0, 0, 0 }, 1, KP_F32 };

/* Writes c as a forest checkpoint at DIR/NAME; returns the heap path. */
static char *write_ckpt(const char *dir, const char *name, const ckpt *c)
{
    kp_stw *w = kp_stw_create();
    int64_t so[1] = { c->n_off }, sn[1] = { 3 }, sv[2] = { 3, c->value_cols };
    double thr64[3] = { c->thr[0], c->thr[1], c->thr[2] };
    float value[6] = { c->value[0], c->value[1], c->value[2], 0, 0, 0 };
    assert_int_equal(kp_stw_meta(w, "kpipe.model", "forest"), 0);
    assert_int_equal(kp_stw_meta(w, "kpipe.task", "binary"), 0);
    assert_int_equal(kp_stw_meta(w, "kpipe.n_out", "1"), 0);
    assert_int_equal(kp_stw_meta(w, "kpipe.format", "1"), 0);
    if (c->n_features)
        assert_int_equal(kp_stw_meta(w, "forest.n_features", c->n_features), 0);
    assert_int_equal(kp_stw_add(w, "tree_offset", KP_I64, 1, so, c->offset), 0);
    assert_int_equal(kp_stw_add(w, "feature", KP_I32, 1, sn, c->feature), 0);
    assert_int_equal(kp_stw_add(w, "threshold", c->thr_dtype, 1, sn,
                                c->thr_dtype == KP_F64 ? (const void *)thr64 : c->thr), 0);
    assert_int_equal(kp_stw_add(w, "left", KP_I32, 1, sn, c->left), 0);
    assert_int_equal(kp_stw_add(w, "right", KP_I32, 1, sn, c->right), 0);
    assert_int_equal(kp_stw_add(w, "missing_left", KP_U8, 1, sn, c->mleft), 0);
    assert_int_equal(kp_stw_add(w, "value", KP_F32, 2, sv, value), 0);
    char *path = kp_test_join(dir, name), err[KP_ERRLEN];
    assert_int_equal(kp_stw_write(w, path, err, sizeof err), 0);
    kp_stw_free(w);
    return path;
}

typedef struct mutation {
    const char *what;
    void (*apply)(ckpt *c);
    const char *tail;   /* the message after "PATH: " */
} mutation;

static void no_n_features(ckpt *c) { c->n_features = NULL; }
static void feature_out_of_range(ckpt *c) { c->feature[0] = 2; }
static void child_points_back(ckpt *c) { c->right[0] = 0; }
static void child_past_tree(ckpt *c) { c->left[0] = 3; }
static void leaf_with_child(ckpt *c) { c->left[2] = 1; }
static void offsets_short(ckpt *c) { c->offset[1] = 2; }
static void value_shape(ckpt *c) { c->value_cols = 2; }
static void value_not_probability(ckpt *c) { c->value[2] = 1.5f; }
static void threshold_f64(ckpt *c) { c->thr_dtype = KP_F64; }
static void threshold_nan(ckpt *c) { c->thr[0] = NAN; }
static void mleft_two(ckpt *c) { c->mleft[1] = 2; }

static const mutation mutations[] = {
    { "no n_features", no_n_features, "forest.n_features '(missing)' is not a positive count" },
    { "feature out of range", feature_out_of_range,
      "tree 0 node 0 (feature 2, left 1, right 2): feature is out of range" },
    { "a cycle", child_points_back,
      "tree 0 node 0 (feature 1, left 1, right 0): a child is not a later node of the same tree" },
    { "child past the tree", child_past_tree,
      "tree 0 node 0 (feature 1, left 3, right 2): a child is not a later node of the same tree" },
    { "leaf with a child", leaf_with_child,
      "tree 0 node 2 (feature -1, left 1, right -1): a leaf (feature -1) has children" },
    { "offsets end early", offsets_short,
      "tensor 'tree_offset' must hold 2 to 100001 entries from 0 to the 3 nodes" },
    { "value of 2 columns", value_shape, "tensor 'value' has shape [3, 2], expected [3, 1]" },
    { "value 1.5", value_not_probability,
      "tensor 'value' holds 1.5 at index 2, not a probability" },
    { "threshold F64", threshold_f64, "tensor 'threshold' has dtype F64, expected F32" },
    { "threshold NaN", threshold_nan,
      "tree 0 node 0 (feature 1, left 1, right 2): threshold is NaN" },
    { "missing_left 2", mleft_two,
      "tree 0 node 1 (feature -1, left -1, right -1): missing_left is not 0 or 1" },
};

static void test_forest_load_refuses_corrupted_checkpoints(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), err[KP_ERRLEN] = "";
    kp_model *m = NULL;
    char *path = write_ckpt(dir, "good.safetensors", &good);
    if (kp_model_load(path, &kp_model_forest, &m, err, sizeof err) != 0)
        fail_msg("the unmutated checkpoint: %s", err);
    static const float q[] = { 0, 0.2f, 0, 0.7f };
    float *p = predict(m, q, 2, 2, 1);
    assert_true(p[0] == 0.0f && p[1] == 1.0f);
    free(p);
    kp_model_free(m);
    free(path);
    for (size_t i = 0; i < sizeof mutations / sizeof mutations[0]; i++) {
        ckpt c = good;
        char name[32], want[KP_ERRLEN];
        mutations[i].apply(&c);
        snprintf(name, sizeof name, "bad%zu.safetensors", i);
        path = write_ckpt(dir, name, &c);
        m = NULL;
        int rc = kp_model_load(path, NULL, &m, err, sizeof err);
        snprintf(want, sizeof want, "%s: %s", path, mutations[i].tail);
        if (rc != KP_ERR_FORMAT || strcmp(err, want) != 0)
            fail_msg("%s: got %d '%s', want '%s'", mutations[i].what, rc, err, want);
        assert_null(m);
        free(path);
    }
    free(dir);
}

static void test_forest_load_refuses_truncated_checkpoint(void **state)
{
    (void)state;
    gen g = generate(KP_TASK_BINARY, 1, 100, 3, 9);
    static const char *const kv[] = { "n_estimators", "3", NULL };
    kp_model *m = fit(KP_TASK_BINARY, 1, g.X, 100, 3, g.y, kv), *back = NULL;
    char *dir = kp_test_tmpdir(), *path = save(m, dir, "cut.safetensors"), err[KP_ERRLEN] = "";
    assert_int_equal(truncate(path, 200), 0);
    assert_true(kp_model_load(path, &kp_model_forest, &back, err, sizeof err) < 0);
    assert_null(back);
    assert_int_equal(strncmp(err, path, strlen(path)), 0);     /* names the file */
    free(path);
    free(dir);
    kp_model_free(m);
    gen_free(&g);
}

/* Flips random bytes in the tensor data of a real checkpoint: every load
 * either fails with a message or gives a forest that predicts (no crash,
 * no out-of-bounds read: the group runs under ASan). */
static void test_forest_load_survives_random_byte_flips(void **state)
{
    (void)state;
    gen g = generate(KP_TASK_MULTICLASS, 3, 120, 4, 14);
    static const char *const kv[] = { "n_estimators", "3", NULL };
    kp_model *m = fit(KP_TASK_MULTICLASS, 3, g.X, 120, 4, g.y, kv);
    char *dir = kp_test_tmpdir(), *path = save(m, dir, "flip.safetensors");
    char *good = NULL;
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long len = ftell(f);
    uint64_t hlen = 0;
    rewind(f);
    good = malloc((size_t)len);
    assert_int_equal(fread(good, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    memcpy(&hlen, good, sizeof hlen);               /* little-endian host */
    kp_rng r;
    kp_rng_seed(&r, 15);
    int loaded = 0, refused = 0;
    for (int trial = 0; trial < 300; trial++) {
        char *bad = malloc((size_t)len), err[KP_ERRLEN] = "";
        memcpy(bad, good, (size_t)len);
        for (int k = 0; k < 1 + trial % 4; k++) {
            size_t at = 8 + (size_t)hlen + kp_rng_below(&r, (uint64_t)len - 8 - hlen);
            bad[at] = (char)kp_rng_below(&r, 256);
        }
        f = fopen(path, "wb");
        assert_int_equal(fwrite(bad, 1, (size_t)len, f), (size_t)len);
        fclose(f);
        kp_model *back = NULL;
        if (kp_model_load(path, &kp_model_forest, &back, err, sizeof err) == 0) {
            float *p = predict(back, g.X, 120, 4, 1);
            free(p);
            kp_model_free(back);
            loaded++;
        } else {
            assert_true(strncmp(err, path, strlen(path)) == 0);     /* names the file */
            refused++;
        }
        free(bad);
    }
    assert_true(loaded > 0 && refused > 0);         /* both kinds of flip happened */
    free(good);
    free(path);
    free(dir);
    kp_model_free(m);
    gen_free(&g);
}

/* ---- determinism and inputs ---- */

static void test_forest_is_deterministic_across_runs_and_thread_counts(void **state)
{
    (void)state;
    gen g = generate(KP_TASK_MULTICLASS, 3, 600, 6, 11);
    static const char *const kinds[] = { "random", "extra" };
    for (int k = 0; k < 2; k++) {
        const char *const kv[] = { "kind", kinds[k], "n_estimators", "12", NULL };
        float *p[3];
        trees t[3];
        for (int run = 0; run < 3; run++) {
            int threads = run == 0 ? 1 : run + 1;
            kp_model *m = fit_t(KP_TASK_MULTICLASS, 3, g.X, 500, 6, g.y, kv, threads);
            p[run] = predict(m, g.X + 500 * 6, 100, 6, run == 0 ? 1 : 2);
            t[run] = trees_of(m);
            kp_model_free(m);
        }
        for (int run = 1; run < 3; run++) {
            assert_memory_equal(p[0], p[run], sizeof(float) * 300);
            assert_int_equal(t[0].n_nodes, t[run].n_nodes);
            assert_memory_equal(t[0].thr, t[run].thr, sizeof(float) * (size_t)t[0].n_nodes);
            assert_memory_equal(t[0].feature, t[run].feature, 4 * (size_t)t[0].n_nodes);
        }
        for (int run = 0; run < 3; run++) {
            free(p[run]);
            trees_free(&t[run]);
        }
    }
    gen_free(&g);
}

static void test_forest_seed_changes_the_trees(void **state)
{
    (void)state;
    gen g = generate(KP_TASK_BINARY, 1, 200, 4, 12);
    kp_problem pb = { .task = KP_TASK_BINARY, .n_out = 1 };
    kp_matrix X = { g.X, 200, 4 };
    kp_model *m[2];
    char err[KP_ERRLEN];
    for (int s = 0; s < 2; s++) {
        kp_fit_opts o = { .seed = 1 + (uint64_t)s, .threads = 1 };
        assert_int_equal(kp_model_fit(&kp_model_forest, NULL, &pb, &X, g.y, &o, &m[s], err,
                                      sizeof err), 0);
    }
    float *a = predict(m[0], g.X, 200, 4, 1), *b = predict(m[1], g.X, 200, 4, 1);
    assert_true(memcmp(a, b, sizeof(float) * 200) != 0);
    free(a);
    free(b);
    kp_model_free(m[0]);
    kp_model_free(m[1]);
    gen_free(&g);
}

/* Fits and expects failure with exactly `want`. */
static void assert_fit_fails(kp_task_kind task, int n_out, const float *X, int64_t rows,
                             int64_t cols, const float *y, const char *const *kv, int status,
                             const char *want)
{
    kp_params *p = params_of(kv);
    kp_problem pb = { .task = task, .n_out = n_out };
    kp_matrix m = { X, rows, cols };
    kp_model *model = NULL;
    char err[KP_ERRLEN] = "";
    int rc = kp_model_fit(&kp_model_forest, p, &pb, &m, y, NULL, &model, err, sizeof err);
    kp_params_free(p);
    assert_int_equal(rc, status);
    assert_string_equal(err, want);
    assert_null(model);
}

typedef struct bad_fit {
    kp_task_kind task;
    const char *kv[5];
    const char *want;
} bad_fit;

static const bad_fit bad_fits[] = {
    { KP_TASK_BINARY, { "max_features", "half", NULL },
      "forest: max_features = 'half' is not auto, sqrt, log2, all, a fraction in (0, 1] or a "
      "count from 1 to the 2 features" },
    { KP_TASK_BINARY, { "max_features", "3", NULL },
      "forest: max_features = '3' is not auto, sqrt, log2, all, a fraction in (0, 1] or a "
      "count from 1 to the 2 features" },
    { KP_TASK_BINARY, { "criterion", "squared_error", NULL },
      "forest: criterion 'squared_error' is for regression; use gini or entropy" },
    { KP_TASK_REGRESSION, { "criterion", "gini", NULL },
      "forest: criterion 'gini' is for classification; use squared_error" },
    { KP_TASK_BINARY, { "kind", "extra", "max_samples", "0.5", NULL },
      "forest: max_samples needs bootstrap: true" },
    { KP_TASK_BINARY, { "max_samples", "7", NULL },
      "forest: max_samples = 7 is not a fraction in (0, 1] or a count from 2 to the 6 rows" },
    { KP_TASK_BINARY, { "kind", "boosted", NULL },
      "forest: kind 'boosted' is not random or extra" },
};

static void test_forest_rejects_bad_inputs_with_clear_messages(void **state)
{
    (void)state;
    static const float y_nan[] = { 0, 1, NAN, 0, 1, 1 };
    static const float y3[] = { 0, 1, 3, 0, 1, 1 };
    assert_fit_fails(KP_TASK_REGRESSION, 1, sep_X, 6, 2, y_nan, NULL, KP_ERR_ARG,
                     "forest: y[2] = nan is not finite");
    assert_fit_fails(KP_TASK_MULTICLASS, 3, sep_X, 6, 2, y3, NULL, KP_ERR_ARG,
                     "forest: y[2] = 3 is not a class index in [0, 3)");
    for (size_t i = 0; i < sizeof bad_fits / sizeof bad_fits[0]; i++)
        assert_fit_fails(bad_fits[i].task, 1, sep_X, 6, 2, sep_y, bad_fits[i].kv, KP_ERR_ARG,
                         bad_fits[i].want);
}

static void test_forest_predict_rejects_wrong_column_count(void **state)
{
    (void)state;
    kp_model *m = fit(KP_TASK_BINARY, 1, sep_X, 6, 2, sep_y, one_exact_tree);
    kp_matrix X = { sep_X, 4, 3 };
    float out[4];
    char err[KP_ERRLEN] = "";
    assert_int_equal(kp_model_predict(m, &X, out, 1, err, sizeof err), KP_ERR_MISMATCH);
    assert_string_equal(err, "forest: X has 3 columns but the model was fitted on 2 features");
    kp_model_free(m);
}

static void test_forest_without_params_uses_the_spec_defaults(void **state)
{
    (void)state;
    kp_params *p = kp_params_create();
    char err[KP_ERRLEN] = "";
    assert_int_equal(kp_params_validate(p, kp_model_forest.params, "t.yaml", "params", err,
                                        sizeof err), 0);
    gen g = generate(KP_TASK_REGRESSION, 1, 150, 4, 13);
    kp_problem pb = { .task = KP_TASK_REGRESSION, .n_out = 1 };
    kp_matrix X = { g.X, 150, 4 };
    kp_fit_opts o = { .seed = 1, .threads = 1 };
    kp_model *a = NULL, *b = NULL;
    assert_int_equal(kp_model_fit(&kp_model_forest, NULL, &pb, &X, g.y, &o, &a, err,
                                  sizeof err), 0);
    assert_int_equal(kp_model_fit(&kp_model_forest, p, &pb, &X, g.y, &o, &b, err,
                                  sizeof err), 0);
    float *pa = predict(a, g.X, 150, 4, 1), *pbv = predict(b, g.X, 150, 4, 1);
    assert_memory_equal(pa, pbv, sizeof(float) * 150);
    trees t = trees_of(a);
    assert_int_equal(t.n_trees, 100);   /* n_estimators defaults to 100 */
    trees_free(&t);
    free(pa);
    free(pbv);
    kp_params_free(p);
    kp_model_free(a);
    kp_model_free(b);
    gen_free(&g);
}

KP_TEST_GROUP(forest)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_forest_fits_generated_problems_of_every_task),
        cmocka_unit_test(test_forest_single_exact_tree_splits_at_the_hand_checked_midpoint),
        cmocka_unit_test(test_forest_regression_leaves_hold_the_mean_target),
        cmocka_unit_test(test_forest_gini_and_entropy_choose_their_own_best_cut),
        cmocka_unit_test(test_forest_extra_trees_differ_from_random_forest_for_one_seed),
        cmocka_unit_test(test_forest_respects_min_samples_leaf_in_every_leaf),
        cmocka_unit_test(test_forest_respects_max_depth),
        cmocka_unit_test(test_forest_multiclass_probabilities_sum_to_one),
        cmocka_unit_test(test_forest_routes_unseen_nan_to_the_heavier_child),
        cmocka_unit_test(test_forest_learns_the_side_of_nan_rows),
        cmocka_unit_test(test_forest_save_load_round_trip_predicts_identical_bits),
        cmocka_unit_test(test_forest_load_refuses_corrupted_checkpoints),
        cmocka_unit_test(test_forest_load_refuses_truncated_checkpoint),
        cmocka_unit_test(test_forest_load_survives_random_byte_flips),
        cmocka_unit_test(test_forest_is_deterministic_across_runs_and_thread_counts),
        cmocka_unit_test(test_forest_seed_changes_the_trees),
        cmocka_unit_test(test_forest_rejects_bad_inputs_with_clear_messages),
        cmocka_unit_test(test_forest_predict_rejects_wrong_column_count),
        cmocka_unit_test(test_forest_without_params_uses_the_spec_defaults),
    };
    return KP_RUN(forest, t);
}

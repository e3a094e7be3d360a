/* test_stack.c - the stack stage: folds-hash check, level-2 model, blends. */
#include "stage_fixture.h"

#include <jansson.h>
#include <math.h>
#include "../lib/rng.h"
#include "../models/metric.h"

#define N 60
#define NT 8
#define D 2

static const char *const yaml_fmt =
    "competition:\n"
    "  train: train.csv\n"
    "  test: test.csv\n"
    "  sample_submission: sample.csv\n"
    "  id: id\n"
    "  target: y\n"
    "  task: binary\n"
    "  metric: auc\n"
    "  folds: {k: %d, kind: plain, seed: 1}\n"
    "stages:\n"
    "  prep: {type: preprocess}\n"
    "  folds: {type: folds, needs: [prep]}\n"
    "  lr: {type: train, needs: [prep, folds], model: logistic, matrix: {C: [1, 2, 3]}}\n"
    "%s";

/* Writes the folds of n rows (row i in fold i % k) and returns their hash. */
static void write_folds(const kp_config *cfg, int64_t n, int k, char hash[33])
{
    int32_t fold[N];
    char err[KP_ERRLEN] = "";
    for (int64_t i = 0; i < n; i++)
        fold[i] = (int32_t)(i % k);
    fx_folds(cfg, "folds", fold, n, k, 1);
    kp_folds *f = NULL;
    char *path = fx_path(cfg, "folds", "folds.safetensors");
    assert_int_equal(kp_folds_open(path, &f, err, sizeof err), 0);
    memcpy(hash, f->hash, 33);
    kp_folds_close(f);
    free(path);
}

/* Writes stage's preds.safetensors (binary, one output). */
static void write_preds(const kp_config *cfg, const char *stage, const float *oof, int64_t n,
                        const float *test, int64_t nt, const char *hash)
{
    char err[KP_ERRLEN] = "";
    double scores[1] = {0.5};
    kp_preds_out o = {
        .pb = {KP_TASK_BINARY, 1}, .n_train = n, .n_test = nt, .oof = oof, .test = test,
        .folds_hash = hash, .metric = "auc", .model = "logistic", .stage = stage,
        .fold_scores = scores, .n_folds = 1, .oof_score = 0.5,
    };
    char *path = fx_path(cfg, stage, "preds.safetensors");
    int rc = kp_preds_write(path, &o, err, sizeof err);
    if (rc)
        print_error("%s\n", err);
    assert_int_equal(rc, 0);
    free(path);
}

/* Loads the config with the stack stage text `stack` and writes a dataset of
 * n rows with labels y (features: two noise columns). */
static kp_config *setup(const char *dir, const char *stack, int k, const float *y, int64_t n,
                        int64_t nt, char hash[33])
{
    static float X[N * D], Xt[NT * D];
    char yaml[4096];
    kp_rng r;
    kp_rng_seed(&r, 11);
    for (int i = 0; i < N * D; i++)
        X[i] = (float)kp_rng_normal(&r);
    for (int i = 0; i < NT * D; i++)
        Xt[i] = (float)kp_rng_normal(&r);
    snprintf(yaml, sizeof yaml, yaml_fmt, k, stack);
    kp_config *cfg = fx_config(dir, yaml);
    fx_data d = {KP_TASK_BINARY, 1, "[\"0\",\"1\"]", n, nt, D, X, Xt, y, NULL};
    fx_dataset(cfg, "prep", &d);
    write_folds(cfg, n, k, hash);
    return cfg;
}

/* Three noisy views of the same signal: y = [s > 0], input j = sigmoid(3 s + noise_j);
 * the third input is pure noise. */
static void make_inputs(float *y, float oof[3][N], float test[3][NT])
{
    kp_rng r;
    kp_rng_seed(&r, 5);
    for (int i = 0; i < N; i++) {
        double s = kp_rng_normal(&r);
        y[i] = s > 0 ? 1.0f : 0.0f;
        for (int j = 0; j < 2; j++)
            oof[j][i] = (float)(1 / (1 + exp(-(3 * s + 2.5 * kp_rng_normal(&r)))));
        oof[2][i] = (float)kp_rng_uniform(&r);
    }
    for (int i = 0; i < NT; i++)
        for (int j = 0; j < 3; j++)
            test[j][i] = (float)kp_rng_uniform(&r);
}

static const char *const inputs[3] = {"lr/C=1", "lr/C=2", "lr/C=3"};

static kp_config *setup_three(const char *dir, const char *stack, float oof[3][N],
                              float test[3][NT])
{
    static float y[N];
    char hash[33];
    make_inputs(y, oof, test);
    kp_config *cfg = setup(dir, stack, 3, y, N, NT, hash);
    for (int j = 0; j < 3; j++)
        write_preds(cfg, inputs[j], oof[j], N, test[j], NT, hash);
    return cfg;
}

static void test_stack_refuses_predictions_made_on_other_folds(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), hash[33], err[KP_ERRLEN] = "", want[KP_ERRLEN];
    static float y[N], oof[N], test[NT];
    for (int i = 0; i < N; i++)
        y[i] = (float)(i % 2), oof[i] = 0.5f;
    kp_config *cfg = setup(dir, "  stack: {type: stack, needs: [prep, folds, lr], method: mean}\n",
                           3, y, N, NT, hash);
    const char *other = "0123456789abcdef0123456789abcdef";
    write_preds(cfg, "lr/C=1", oof, N, test, NT, hash);
    write_preds(cfg, "lr/C=2", oof, N, test, NT, other);
    write_preds(cfg, "lr/C=3", oof, N, test, NT, hash);
    assert_int_equal(fx_run(cfg, "stack", -1, NULL, err, sizeof err), KP_ERR_MISMATCH);
    snprintf(want, sizeof want, "stack: predictions of 'lr/C=2' were made on other folds "
             "(hash %s) than 'folds' (hash %s)", other, hash);
    assert_string_equal(err, want);
    char *preds = fx_path(cfg, "stack", "preds.safetensors");
    assert_int_equal(access(preds, F_OK), -1);   /* nothing written */
    free(preds);
    kp_config_free(cfg);
    free(dir);
}

static void test_stack_rank_mean_matches_hand_example(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), hash[33];
    static const float y[4] = {0, 0, 1, 1};
    static const float oa[4] = {0.1f, 0.4f, 0.4f, 0.9f}, ta[3] = {0.3f, 0.2f, 0.1f};
    static const float ob[4] = {0.8f, 0.2f, 0.6f, 0.6f}, tb[3] = {0.5f, 0.5f, 0.5f};
    static const float oc[4] = {0.1f, 0.2f, 0.3f, 0.4f}, tc[3] = {0.1f, 0.2f, 0.3f};
    kp_config *cfg = setup(dir, "  blend: {type: stack, needs: [prep, folds, lr], "
                           "method: rank_mean}\n", 2, y, 4, 3, hash);
    write_preds(cfg, "lr/C=1", oa, 4, ta, 3, hash);
    write_preds(cfg, "lr/C=2", ob, 4, tb, 3, hash);
    write_preds(cfg, "lr/C=3", oc, 4, tc, 3, hash);
    assert_int_equal(fx_n_parts(cfg, "blend"), 0);
    fx_run_ok(cfg, "blend");
    kp_preds *p = fx_preds(cfg, "blend");
    /* ranks / (n - 1): a 0 .5 .5 1, b 1 0 .5 .5, c 0 1/3 2/3 1 */
    const double want_oof[4] = {1.0 / 3, (0.5 + 1.0 / 3) / 3, (1 + 2.0 / 3) / 3, 2.5 / 3};
    /* test: a 1 .5 0, b .5 .5 .5 (all tied), c 0 .5 1 */
    const double want_test[3] = {0.5, 0.5, 0.5};
    for (int i = 0; i < 4; i++)
        assert_float_equal(p->oof[i], want_oof[i], 1e-6);
    for (int i = 0; i < 3; i++)
        assert_float_equal(p->test[i], want_test[i], 1e-6);
    /* folds {0, 2} and {1, 3}: one negative and one positive each */
    assert_int_equal(p->n_folds, 2);
    assert_float_equal(p->fold_scores[0], 1.0, 1e-9);   /* 1/3 < 5/9 */
    assert_float_equal(p->fold_scores[1], 1.0, 1e-9);   /* 5/18 < 5/6 */
    assert_string_equal(p->model, "rank_mean");
    kp_preds_close(p);
    kp_config_free(cfg);
    free(dir);
}

static void test_stack_mean_averages_the_inputs(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir();
    static float oof[3][N], test[3][NT];
    kp_config *cfg = setup_three(dir, "  m: {type: stack, needs: [prep, folds, lr], "
                                 "method: mean}\n", oof, test);
    fx_run_ok(cfg, "m");
    kp_preds *p = fx_preds(cfg, "m");
    for (int i = 0; i < N; i++)
        assert_float_equal(p->oof[i], (oof[0][i] + oof[1][i] + oof[2][i]) / 3.0, 1e-6);
    for (int i = 0; i < NT; i++)
        assert_float_equal(p->test[i], (test[0][i] + test[1][i] + test[2][i]) / 3.0, 1e-6);
    assert_int_equal(p->n_folds, 3);
    kp_preds_close(p);
    kp_config_free(cfg);
    free(dir);
}

/* Returns the AUC of pred against the setup's labels. */
static double auc_of(const kp_preds *blend, const float *pred, const kp_config *cfg)
{
    (void)blend;
    char err[KP_ERRLEN] = "", *path = fx_path(cfg, "prep", "dataset.safetensors");
    kp_dataset *d = NULL;
    double s = 0;
    kp_metric_opts o = kp_metric_defaults();
    kp_problem pb = { .task = KP_TASK_BINARY, .n_out = 1 };
    assert_int_equal(kp_dataset_open(path, &d, err, sizeof err), 0);
    assert_int_equal(kp_metric_find("auc")->score(&pb, d->y, pred, N, &o, &s, err, sizeof err), 0);
    kp_dataset_close(d);
    free(path);
    return s;
}

static void test_stack_weights_are_a_distribution_no_worse_than_the_best_input(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir();
    static float oof[3][N], test[3][NT];
    kp_config *cfg = setup_three(dir, "  w: {type: stack, needs: [prep, folds, lr], "
                                 "method: weights}\n", oof, test);
    fx_run_ok(cfg, "w");
    kp_preds *p = fx_preds(cfg, "w");
    const char *meta = kp_st_meta(p->st, "weights");
    assert_non_null(meta);
    json_t *obj = json_loads(meta, 0, NULL);
    assert_true(json_is_object(obj));
    double sum = 0, w[3], best = 0;
    for (int j = 0; j < 3; j++) {
        json_t *v = json_object_get(obj, inputs[j]);
        assert_true(json_is_number(v));
        w[j] = json_number_value(v);
        assert_true(w[j] >= 0);
        sum += w[j];
        double s = auc_of(p, oof[j], cfg);
        best = s > best ? s : best;
    }
    json_decref(obj);
    assert_float_equal(sum, 1.0, 1e-9);
    assert_true(p->oof_score >= best);
    assert_float_equal(p->oof_score, auc_of(p, p->oof, cfg), 1e-9);
    for (int i = 0; i < NT; i++)
        assert_float_equal(p->test[i], w[0] * test[0][i] + w[1] * test[1][i] + w[2] * test[2][i],
                           1e-6);
    kp_preds_close(p);
    kp_config_free(cfg);
    free(dir);
}

static void test_stack_model_fits_kfold_on_the_inputs(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), err[KP_ERRLEN] = "";
    static float oof[3][N], test[3][NT];
    kp_config *cfg = setup_three(dir, "  s: {type: stack, needs: [prep, folds, lr], "
                                 "model: logistic, params: {C: 1.0}}\n", oof, test);
    assert_int_equal(fx_n_parts(cfg, "s"), 3);
    fx_run_ok(cfg, "s");
    kp_preds *p = fx_preds(cfg, "s");
    assert_int_equal(p->n_train, N);
    assert_int_equal(p->n_folds, 3);
    assert_true(p->oof_score > 0.8);
    /* the level-2 model saw one column per input */
    kp_st *st = NULL;
    char *path = fx_path(cfg, "s", "model_part0.safetensors");
    assert_int_equal(kp_st_open(path, &st, err, sizeof err), 0);
    assert_int_equal(kp_st_find(st, "coef")->shape[1], 3);
    kp_st_close(st);
    free(path);
    kp_preds_close(p);
    kp_config_free(cfg);
    free(dir);
}

static void test_stack_use_features_appends_the_dataset_features(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), err[KP_ERRLEN] = "";
    static float oof[3][N], test[3][NT];
    kp_config *cfg = setup_three(dir, "  s: {type: stack, needs: [prep, folds, lr], "
                                 "use_features: true}\n", oof, test);
    assert_int_equal(fx_run(cfg, "s", 1, NULL, err, sizeof err), 0);
    kp_st *st = NULL;
    char *path = fx_path(cfg, "s", "model_part1.safetensors");
    assert_int_equal(kp_st_open(path, &st, err, sizeof err), 0);
    assert_int_equal(kp_st_find(st, "coef")->shape[1], 3 + D);
    kp_st_close(st);
    free(path);
    kp_config_free(cfg);
    free(dir);
}

static void test_stack_transform_none_feeds_raw_probabilities(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir();
    static float oof[3][N], test[3][NT];
    kp_config *cfg = setup_three(dir, "  s: {type: stack, needs: [prep, folds, lr]}\n"
                                 "  r: {type: stack, needs: [prep, folds, lr], transform: none}\n",
                                 oof, test);
    fx_run_ok(cfg, "s");
    fx_run_ok(cfg, "r");
    kp_preds *s = fx_preds(cfg, "s"), *r = fx_preds(cfg, "r");
    int differ = 0;
    for (int i = 0; i < N; i++)
        differ |= s->oof[i] != r->oof[i];
    assert_true(differ);
    kp_preds_close(s);
    kp_preds_close(r);
    kp_config_free(cfg);
    free(dir);
}

static void test_stack_outputs_of_a_blend_are_one_preds_file(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), hash[33], want[8192];
    static float y[N];
    kp_config *cfg = setup(dir, "  b: {type: stack, needs: [prep, folds, lr], method: weights}\n",
                           3, y, N, NT, hash);
    const kp_stage *st = fx_stage(cfg, "b");
    kp_buf b;
    kp_buf_init(&b, 0);
    assert_int_equal(fx_n_parts(cfg, "b"), 0);
    assert_int_equal(st->ops->outputs(st, cfg, -1, &b), 0);
    snprintf(want, sizeof want, "%s/preds.safetensors\n", st->dir);
    assert_string_equal(kp_buf_str(&b), want);
    kp_buf_free(&b);
    kp_config_free(cfg);
    free(dir);
}

/* Config errors found by stack's check(). */
static const struct {
    const char *stage, *want;
} bad_configs[] = {
    {"  s: {type: stack, needs: [prep, folds]}\n",
     "stages.s.needs: stack stage 's' needs at least 1 predictions stage (type train or stack), "
     "found 0"},
    {"  s: {type: stack, needs: [prep, lr]}\n",
     "stages.s.needs: stack stage 's' needs exactly one folds stage (type folds), found 0"},
    {"  s: {type: stack, needs: [prep, folds, lr], method: mean, params: {C: 1}}\n",
     "stages.s.params: method mean takes no model params (only method: model does)"},
    {"  s: {type: stack, needs: [prep, folds, lr], model: rigde}\n",
     "stages.s.model: unknown model 'rigde' (did you mean 'ridge'?)"},
    {"  s: {type: stack, needs: [prep, folds, lr], method: median}\n", "stages.s.method"},
    {"  s: {type: stack, needs: [prep, folds, lr], model: ridge, params: {C: 1}}\n",
     "stages.s.params: unknown key 'C'"},
};

static void test_stack_check_rejects_bad_stages_with_their_place(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad_configs / sizeof bad_configs[0]; i++) {
        char *dir = kp_test_tmpdir(), yaml[4096], err[KP_ERRLEN] = "";
        kp_config *cfg = NULL;
        snprintf(yaml, sizeof yaml, yaml_fmt, 3, bad_configs[i].stage);
        assert_int_equal(fx_load(dir, yaml, &cfg, err, sizeof err), KP_ERR_CONFIG);
        if (!strstr(err, bad_configs[i].want))
            print_error("case %zu: got '%s'\n", i, err);
        assert_non_null(strstr(err, bad_configs[i].want));
        assert_non_null(strstr(err, "kp.yaml:"));
        free(dir);
    }
}

static void test_stack_default_model_on_regression_says_it_is_the_default(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), err[KP_ERRLEN] = "";
    kp_config *cfg = NULL;
    const char *yaml =
        "competition: {train: train.csv, test: test.csv, sample_submission: sample.csv, id: id,\n"
        "  target: y, task: regression, metric: rmse, folds: {k: 2, kind: plain}}\n"
        "stages:\n"
        "  prep: {type: preprocess}\n"
        "  folds: {type: folds, needs: [prep]}\n"
        "  r: {type: train, needs: [prep, folds], model: ridge}\n"
        "  s: {type: stack, needs: [prep, folds, r]}\n";
    assert_int_equal(fx_load(dir, yaml, &cfg, err, sizeof err), KP_ERR_CONFIG);
    assert_non_null(strstr(err, "kp.yaml:7:3: stages.s.model: the default model 'logistic' "
                                "does not support regression tasks (set the key to one that "
                                "does)"));
    free(dir);
}

KP_TEST_GROUP(stack)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_stack_refuses_predictions_made_on_other_folds),
        cmocka_unit_test(test_stack_rank_mean_matches_hand_example),
        cmocka_unit_test(test_stack_mean_averages_the_inputs),
        cmocka_unit_test(test_stack_weights_are_a_distribution_no_worse_than_the_best_input),
        cmocka_unit_test(test_stack_model_fits_kfold_on_the_inputs),
        cmocka_unit_test(test_stack_use_features_appends_the_dataset_features),
        cmocka_unit_test(test_stack_transform_none_feeds_raw_probabilities),
        cmocka_unit_test(test_stack_outputs_of_a_blend_are_one_preds_file),
        cmocka_unit_test(test_stack_check_rejects_bad_stages_with_their_place),
        cmocka_unit_test(test_stack_default_model_on_regression_says_it_is_the_default),
    };
    return KP_RUN(stack, t);
}

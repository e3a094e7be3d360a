/* test_train.c - the train stage and the k-fold core (stages/kfold.c). */
#include "stage_fixture.h"

#include <math.h>
#include "../lib/rng.h"
#include "../models/model.h"
#include "../stages/kfold.h"

#define N 60
#define NT 9
#define D 3

static const char *const yaml_fmt =
    "competition:\n"
    "  train: train.csv\n"
    "  test: test.csv\n"
    "  sample_submission: sample.csv\n"
    "  id: id\n"
    "  target: y\n"
    "  task: %s\n"
    "  metric: %s\n"
    "  folds: {k: %d, kind: plain, seed: 1, repeats: %d}\n"
    "stages:\n"
    "  prep: {type: preprocess}\n"
    "  folds: {type: folds, needs: [prep]}\n"
    "%s";

static const char *const lr_stage =
    "  lr: {type: train, needs: [prep, folds], model: logistic, seed: 3, params: {C: 1.0}}\n";

/* A separable-ish binary problem: y = [x0 + noise > 0]. */
static void make_binary(float *X, float *Xt, float *y)
{
    kp_rng r;
    kp_rng_seed(&r, 7);
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < D; j++)
            X[i * D + j] = (float)kp_rng_normal(&r);
        y[i] = X[i * D] + 0.7 * kp_rng_normal(&r) > 0 ? 1.0f : 0.0f;
    }
    for (int i = 0; i < NT * D; i++)
        Xt[i] = (float)kp_rng_normal(&r);
}

/* Folds of repeat r: row i is in fold (i + r * (i / k)) % k. */
static void make_folds(int32_t *fold, int k, int repeats)
{
    for (int r = 0; r < repeats; r++)
        for (int i = 0; i < N; i++)
            fold[r * N + i] = (i + r * (i / k)) % k;
}

/* Loads a binary config with `stages` and writes its dataset and folds. */
static kp_config *setup(const char *dir, const char *stages, int k, int repeats)
{
    static float X[N * D], Xt[NT * D], y[N];
    int32_t fold[4 * N];
    char yaml[4096];
    snprintf(yaml, sizeof yaml, yaml_fmt, "binary", "auc", k, repeats, stages);
    kp_config *cfg = fx_config(dir, yaml);
    make_binary(X, Xt, y);
    fx_data d = {KP_TASK_BINARY, 1, "[\"neg\",\"pos\"]", N, NT, D, X, Xt, y, NULL};
    fx_dataset(cfg, "prep", &d);
    make_folds(fold, k, repeats);
    fx_folds(cfg, "folds", fold, N, k, repeats);
    return cfg;
}

/* Opens part p of stage lr; returns the tensors. */
static kp_st *open_part(const kp_config *cfg, int p, const int64_t **idx, int64_t *n,
                        const float **oof, const float **test)
{
    char name[64], err[KP_ERRLEN] = "";
    kp_st *st = NULL;
    snprintf(name, sizeof name, "part%d.safetensors", p);
    char *path = fx_path(cfg, "lr", name);
    assert_int_equal(kp_st_open(path, &st, err, sizeof err), 0);
    free(path);
    const kp_tensor *ti = kp_st_find(st, "oof_index"), *to = kp_st_find(st, "oof"),
                    *tt = kp_st_find(st, "test");
    assert_non_null(ti);
    assert_non_null(to);
    assert_non_null(tt);
    assert_int_equal(to->shape[0], ti->shape[0]);
    assert_int_equal(tt->shape[0], NT);
    *idx = ti->data;
    *n = ti->shape[0];
    *oof = to->data;
    *test = tt->data;
    return st;
}

static void test_train_parts_hold_out_every_row_exactly_once(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir();
    kp_config *cfg = setup(dir, lr_stage, 3, 1);
    fx_run_ok(cfg, "lr");
    int seen[N] = {0};
    for (int p = 0; p < 3; p++) {
        const int64_t *idx;
        const float *oof, *test;
        int64_t n;
        kp_st *st = open_part(cfg, p, &idx, &n, &oof, &test);
        for (int64_t i = 0; i < n; i++) {
            assert_int_equal(idx[i] % 3, p);   /* the folds put row i in fold i % 3 */
            seen[idx[i]]++;
        }
        kp_st_close(st);
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(seen[i], 1);
    kp_config_free(cfg);
    free(dir);
}

static void test_train_oof_comes_from_parts_and_test_is_their_mean(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir();
    kp_config *cfg = setup(dir, lr_stage, 3, 1);
    fx_run_ok(cfg, "lr");
    kp_preds *pr = fx_preds(cfg, "lr");
    assert_int_equal(pr->n_train, N);
    assert_int_equal(pr->n_test, NT);
    double mean[NT] = {0};
    for (int p = 0; p < 3; p++) {
        const int64_t *idx;
        const float *oof, *test;
        int64_t n;
        kp_st *st = open_part(cfg, p, &idx, &n, &oof, &test);
        for (int64_t i = 0; i < n; i++)
            assert_true(pr->oof[idx[i]] == oof[i]);
        for (int i = 0; i < NT; i++)
            mean[i] += test[i] / 3.0;
        kp_st_close(st);
    }
    for (int i = 0; i < NT; i++)
        assert_float_equal(pr->test[i], mean[i], 1e-6);
    assert_int_equal(pr->n_folds, 3);
    kp_folds *f = NULL;
    char err[KP_ERRLEN] = "", *fpath = fx_path(cfg, "folds", "folds.safetensors");
    assert_int_equal(kp_folds_open(fpath, &f, err, sizeof err), 0);
    assert_string_equal(pr->folds_hash, f->hash);
    assert_string_equal(pr->model, "logistic");
    assert_string_equal(pr->stage, "lr");
    kp_folds_close(f);
    free(fpath);
    assert_true(pr->oof_score > 0.8);   /* the problem is learnable */
    kp_preds_close(pr);
    kp_config_free(cfg);
    free(dir);
}

static void test_train_same_seed_gives_identical_bytes(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir();
    kp_config *cfg = setup(dir, lr_stage, 3, 1);
    char *preds = fx_path(cfg, "lr", "preds.safetensors");
    char *part = fx_path(cfg, "lr", "part1.safetensors");
    size_t na, nb, npa, npb;
    fx_run_ok(cfg, "lr");
    char *a = fx_read(preds, &na), *ap = fx_read(part, &npa);
    unlink(preds);
    unlink(part);
    fx_run_ok(cfg, "lr");
    char *b = fx_read(preds, &nb), *bp = fx_read(part, &npb);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na);
    assert_int_equal(npa, npb);
    assert_memory_equal(ap, bp, npa);
    free(a); free(b); free(ap); free(bp); free(preds); free(part);
    kp_config_free(cfg);
    free(dir);
}

static void test_train_thread_count_does_not_change_the_bytes(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), err[KP_ERRLEN] = "";
    kp_config *cfg = setup(dir, lr_stage, 3, 1);
    const kp_stage *st = fx_stage(cfg, "lr");
    char *preds = fx_path(cfg, "lr", "preds.safetensors");
    char *bytes[2];
    size_t len[2];
    for (int run = 0; run < 2; run++) {
        for (int t = 0; t < 4; t++) {   /* parts 0, 1, 2, then the merge; 1 or 2 threads */
            kp_task_ctx ctx = {cfg, st, t < 3 ? t : -1, 3, run ? 2 : 1, NULL};
            assert_int_equal(st->ops->run(&ctx, err, sizeof err), 0);
        }
        bytes[run] = fx_read(preds, &len[run]);
        unlink(preds);
    }
    assert_int_equal(len[0], len[1]);
    assert_memory_equal(bytes[0], bytes[1], len[0]);
    free(bytes[0]);
    free(bytes[1]);
    free(preds);
    kp_config_free(cfg);
    free(dir);
}

static void test_train_repeats_average_oof_over_repeats(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir();
    kp_config *cfg = setup(dir, lr_stage, 2, 2);
    assert_int_equal(fx_n_parts(cfg, "lr"), 4);
    fx_run_ok(cfg, "lr");
    double oof[N] = {0}, test[NT] = {0};
    for (int p = 0; p < 4; p++) {
        const int64_t *idx;
        const float *po, *pt;
        int64_t n;
        kp_st *st = open_part(cfg, p, &idx, &n, &po, &pt);
        for (int64_t i = 0; i < n; i++)
            oof[idx[i]] += po[i] / 2.0;
        for (int i = 0; i < NT; i++)
            test[i] += pt[i] / 4.0;
        kp_st_close(st);
    }
    kp_preds *pr = fx_preds(cfg, "lr");
    for (int i = 0; i < N; i++)
        assert_float_equal(pr->oof[i], oof[i], 1e-6);
    for (int i = 0; i < NT; i++)
        assert_float_equal(pr->test[i], test[i], 1e-6);
    assert_int_equal(pr->n_folds, 4);
    kp_preds_close(pr);
    kp_config_free(cfg);
    free(dir);
}

static void test_train_merge_refuses_part_made_on_other_folds(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), err[KP_ERRLEN] = "";
    kp_config *cfg = setup(dir, lr_stage, 3, 1);
    for (int p = 0; p < 3; p++)
        assert_int_equal(fx_run(cfg, "lr", p, NULL, err, sizeof err), 0);
    int32_t fold[N];
    for (int i = 0; i < N; i++)
        fold[i] = (i / 20) % 3;              /* other folds, same k */
    fx_folds(cfg, "folds", fold, N, 3, 1);
    assert_int_equal(fx_run(cfg, "lr", -1, NULL, err, sizeof err), KP_ERR_MISMATCH);
    assert_non_null(strstr(err, "part0.safetensors was made on other folds (hash "));
    kp_config_free(cfg);
    free(dir);
}

static void test_train_merge_refuses_row_missing_from_parts(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), err[KP_ERRLEN] = "";
    kp_config *cfg = setup(dir, lr_stage, 3, 1);
    for (int p = 0; p < 3; p++)
        assert_int_equal(fx_run(cfg, "lr", p, NULL, err, sizeof err), 0);
    /* rewrite part 1 without its first held-out row (train row 1) */
    const int64_t *idx;
    const float *oof, *test;
    int64_t n;
    kp_st *st = open_part(cfg, 1, &idx, &n, &oof, &test);
    kp_stw *w = kp_stw_create();
    int64_t si[1] = {n - 1}, so[2] = {n - 1, 1}, stt[2] = {NT, 1};
    assert_int_equal(kp_stw_add(w, "oof_index", KP_I64, 1, si, idx + 1), 0);
    assert_int_equal(kp_stw_add(w, "oof", KP_F32, 2, so, oof + 1), 0);
    assert_int_equal(kp_stw_add(w, "test", KP_F32, 2, stt, test), 0);
    assert_int_equal(kp_stw_meta(w, "folds_hash", kp_st_meta(st, "folds_hash")), 0);
    kp_st_close(st);
    char *path = fx_path(cfg, "lr", "part1.safetensors");
    assert_int_equal(kp_stw_write(w, path, err, sizeof err), 0);
    kp_stw_free(w);
    assert_int_equal(fx_run(cfg, "lr", -1, NULL, err, sizeof err), KP_ERR_MISMATCH);
    assert_string_equal(err, "stage 'lr': no part of repeat 0 held out train row 1");
    free(path);
    kp_config_free(cfg);
    free(dir);
}

static void test_train_checkpoint_predicts_the_part_oof(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), err[KP_ERRLEN] = "";
    kp_config *cfg = setup(dir, lr_stage, 3, 1);
    assert_int_equal(fx_run(cfg, "lr", 2, NULL, err, sizeof err), 0);
    const int64_t *idx;
    const float *oof, *test;
    int64_t n;
    kp_st *st = open_part(cfg, 2, &idx, &n, &oof, &test);
    kp_dataset *d = NULL;
    char *dpath = fx_path(cfg, "prep", "dataset.safetensors");
    char *mpath = fx_path(cfg, "lr", "model_part2.safetensors");
    assert_int_equal(kp_dataset_open(dpath, &d, err, sizeof err), 0);
    kp_model *m = NULL;
    assert_int_equal(kp_model_load(mpath, kp_model_find("logistic"), &m, err, sizeof err), 0);
    float got[NT];
    kp_matrix Xt = {d->X_test, NT, D};
    assert_int_equal(kp_model_predict(m, &Xt, got, 1, err, sizeof err), 0);
    for (int i = 0; i < NT; i++)
        assert_float_equal(got[i], test[i], 1e-6);
    kp_model_free(m);
    kp_dataset_close(d);
    kp_st_close(st);
    free(dpath);
    free(mpath);
    kp_config_free(cfg);
    free(dir);
}

static void test_train_logs_each_fold_and_the_cv_mean(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), err[KP_ERRLEN] = "", *text = NULL;
    size_t len = 0;
    kp_config *cfg = setup(dir, lr_stage, 3, 1);
    FILE *log = open_memstream(&text, &len);
    assert_int_equal(fx_run(cfg, "lr", 0, log, err, sizeof err), 0);
    fflush(log);
    assert_non_null(strstr(text, "fold 1/3: auc 0."));
    assert_non_null(strstr(text, "(fit "));
    for (int p = 1; p < 3; p++)
        assert_int_equal(fx_run(cfg, "lr", p, log, err, sizeof err), 0);
    assert_int_equal(fx_run(cfg, "lr", -1, log, err, sizeof err), 0);
    fclose(log);
    assert_non_null(strstr(text, "fold 3/3: auc "));
    assert_non_null(strstr(text, "cv auc 0."));
    assert_non_null(strstr(text, " \xc2\xb1 0."));
    assert_non_null(strstr(text, "oof auc "));
    free(text);
    kp_config_free(cfg);
    free(dir);
}

static void test_train_outputs_lists_part_checkpoint_and_preds(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir();
    kp_config *cfg = setup(dir, lr_stage, 3, 1);
    const kp_stage *st = fx_stage(cfg, "lr");
    kp_buf b;
    kp_buf_init(&b, 0);
    assert_int_equal(st->ops->outputs(st, cfg, 2, &b), 0);
    char want[8192];
    snprintf(want, sizeof want, "%s/part2.safetensors\n%s/model_part2.safetensors\n", st->dir,
             st->dir);
    assert_string_equal(kp_buf_str(&b), want);
    kp_buf_reset(&b);
    assert_int_equal(st->ops->outputs(st, cfg, -1, &b), 0);
    snprintf(want, sizeof want, "%s/preds.safetensors\n", st->dir);
    assert_string_equal(kp_buf_str(&b), want);
    kp_buf_free(&b);
    kp_config_free(cfg);
    free(dir);
}

static void test_train_n_parts_follow_the_folds_stage_over_the_competition(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), yaml[4096];
    snprintf(yaml, sizeof yaml, yaml_fmt, "binary", "auc", 3, 2, lr_stage);
    kp_config *cfg = fx_config(dir, yaml);
    assert_int_equal(fx_n_parts(cfg, "lr"), 6);             /* competition: 3 x 2 */
    kp_config_free(cfg);
    char *yaml2 = strdup(yaml), *at = strstr(yaml2, "needs: [prep]}");
    assert_non_null(at);
    snprintf(yaml, sizeof yaml, "%.*sneeds: [prep], k: 4}%s", (int)(at - yaml2), yaml2,
             at + strlen("needs: [prep]}"));
    cfg = fx_config(dir, yaml);
    assert_int_equal(fx_n_parts(cfg, "lr"), 8);             /* the stage's k: 4 x 2 */
    kp_config_free(cfg);
    free(yaml2);
    free(dir);
}

/* Config errors found by train's check(). */
static const struct {
    const char *task, *stage, *want;
} bad_configs[] = {
    {"binary", "  lr: {type: train, needs: [prep], model: logistic}\n",
     "stages.lr.needs: train stage 'lr' needs exactly one folds stage (type folds), found 0"},
    {"binary", "  lr: {type: train, needs: [folds], model: logistic}\n",
     "stages.lr.needs: train stage 'lr' needs exactly one dataset stage (type preprocess or "
     "images), found 0"},
    {"binary", "  lr: {type: train, needs: [prep, folds], model: logisitc}\n",
     "stages.lr.model: unknown model 'logisitc' (did you mean 'logistic'?)"},
    {"multiclass", "  lr: {type: train, needs: [prep, folds], model: ridge}\n",
     "stages.lr.model: model 'ridge' does not support multiclass tasks"},
    {"binary", "  lr: {type: train, needs: [prep, folds], model: logistic, params: {CC: 1}}\n",
     "stages.lr.params: unknown key 'CC' (did you mean 'C'?)"},
};

static void test_train_check_rejects_bad_stages_with_their_place(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad_configs / sizeof bad_configs[0]; i++) {
        char *dir = kp_test_tmpdir(), yaml[4096], err[KP_ERRLEN] = "";
        kp_config *cfg = NULL;
        snprintf(yaml, sizeof yaml, yaml_fmt, bad_configs[i].task,
                 strcmp(bad_configs[i].task, "binary") ? "logloss" : "auc", 3, 1,
                 bad_configs[i].stage);
        assert_int_equal(fx_load(dir, yaml, &cfg, err, sizeof err), KP_ERR_CONFIG);
        assert_null(cfg);
        if (!strstr(err, bad_configs[i].want))
            print_error("case %zu: got '%s'\n", i, err);
        assert_non_null(strstr(err, bad_configs[i].want));
        assert_non_null(strstr(err, "kp.yaml:"));
        free(dir);
    }
}

/* A model's path param (cnn's init) resolves against the config's folder and
 * is an input of the stage, so a changed weights file reruns it. */
static void test_train_lists_model_files_as_inputs_resolved_to_the_config(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir();
    kp_config *cfg = fx_config(dir,
        "competition: {train: train.csv, test: test.csv, sample_submission: sample.csv,\n"
        "  id: id, target: y, task: binary, metric: auc}\n"
        "stages:\n"
        "  imgs: {type: images, train_dir: img, test_dir: img}\n"
        "  folds: {type: folds, needs: [imgs]}\n"
        "  cnn: {type: train, needs: [imgs, folds], model: cnn,\n"
        "        params: {init: w/start.safetensors, epochs: 1}}\n");
    const kp_stage *st = fx_stage(cfg, "cnn");
    kp_buf in = {0};
    assert_int_equal(st->ops->inputs(st, cfg, &in), 0);
    char want[4200];
    snprintf(want, sizeof want, "%s/w/start.safetensors\n", dir);
    assert_non_null(in.data);
    assert_string_equal(in.data, want);
    kp_buf_free(&in);
    kp_config_free(cfg);
    free(dir);
}

/* A model's own checks run at config load: cnn's blocks and augmentations
 * are named by file, line, column and list index before anything runs. */
static void test_train_checks_cnn_blocks_and_augment_at_config_load(void **state)
{
    (void)state;
    static const struct { const char *params, *msg; } cases[] = {
        {"{arch: [cbr 8, cbrr 8]}",
         "kp.yaml:6:71: stages.cnn.params.arch[1]: unknown block 'cbrr' (did you mean 'cbr'?)"},
        {"{augment: [hlfip]}",
         "kp.yaml:6:74: stages.cnn.params.augment[0]: unknown augmentation 'hlfip' "
         "(did you mean 'hflip'?)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *dir = kp_test_tmpdir(), yaml[1024], err[KP_ERRLEN] = "";
        snprintf(yaml, sizeof yaml,
                 "competition: {train: train.csv, test: test.csv, sample_submission: sample.csv,\n"
                 "  id: id, target: y, task: binary, metric: auc}\n"
                 "stages:\n"
                 "  imgs: {type: images, train_dir: img, test_dir: img}\n"
                 "  folds: {type: folds, needs: [imgs]}\n"
                 "  cnn: {type: train, needs: [imgs, folds], model: cnn, params: %s}\n",
                 cases[i].params);
        kp_config *cfg = NULL;
        assert_int_equal(fx_load(dir, yaml, &cfg, err, sizeof err), KP_ERR_CONFIG);
        assert_null(cfg);
        if (!strstr(err, cases[i].msg))
            fail_msg("got: %s", err);
        free(dir);
    }
}

KP_TEST_GROUP(train)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_train_parts_hold_out_every_row_exactly_once),
        cmocka_unit_test(test_train_lists_model_files_as_inputs_resolved_to_the_config),
        cmocka_unit_test(test_train_checks_cnn_blocks_and_augment_at_config_load),
        cmocka_unit_test(test_train_oof_comes_from_parts_and_test_is_their_mean),
        cmocka_unit_test(test_train_same_seed_gives_identical_bytes),
        cmocka_unit_test(test_train_thread_count_does_not_change_the_bytes),
        cmocka_unit_test(test_train_repeats_average_oof_over_repeats),
        cmocka_unit_test(test_train_merge_refuses_part_made_on_other_folds),
        cmocka_unit_test(test_train_merge_refuses_row_missing_from_parts),
        cmocka_unit_test(test_train_checkpoint_predicts_the_part_oof),
        cmocka_unit_test(test_train_logs_each_fold_and_the_cv_mean),
        cmocka_unit_test(test_train_outputs_lists_part_checkpoint_and_preds),
        cmocka_unit_test(test_train_n_parts_follow_the_folds_stage_over_the_competition),
        cmocka_unit_test(test_train_check_rejects_bad_stages_with_their_place),
    };
    return KP_RUN(train, t);
}

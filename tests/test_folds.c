/* test_folds.c - fold assignment properties, the folds and preds artifacts, the folds stage. */
#include "kp_test.h"
#include "../stages/folds.h"
#include "../stages/preprocess.h"
#include "../lib/err.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- property helpers ---- */

typedef struct fcase { int64_t n; int k, classes; uint64_t seed; } fcase;

static const fcase cases[] = {
    {10, 2, 2, 1}, {11, 3, 2, 7}, {50, 5, 3, 42}, {97, 7, 4, 123}, {200, 10, 2, 9},
    {1000, 5, 5, 2024}, {37, 4, 3, 0}, {23, 2, 2, 77},
};
#define N_CASES (sizeof cases / sizeof cases[0])

/* Labels with uneven class sizes, every class at least k rows. */
static float *make_labels(const fcase *c)
{
    float *y = malloc((size_t)c->n * sizeof *y);
    for (int64_t i = 0; i < c->n; i++)
        y[i] = (float)((i * 7 + i / 3) % c->classes);
    return y;
}

/* Groups of uneven sizes: about n / (2k) distinct values, not in row order. */
static int64_t *make_groups(const fcase *c)
{
    int64_t *g = malloc((size_t)c->n * sizeof *g), G = c->n / 2 > c->k ? c->n / 2 : c->k;
    for (int64_t i = 0; i < c->n; i++)
        g[i] = 1000 + ((i * i + 3 * i) % G) * 17;
    return g;
}

static void assert_complete(const int32_t *f, int64_t n, int k, int64_t *size)
{
    memset(size, 0, (size_t)k * sizeof *size);
    for (int64_t i = 0; i < n; i++) {
        assert_true(f[i] >= 0 && f[i] < k);
        size[f[i]]++;
    }
    for (int j = 0; j < k; j++)
        assert_true(size[j] > 0);
}

static void assert_balanced(const int64_t *size, int k)
{
    int64_t lo = size[0], hi = size[0];
    for (int j = 1; j < k; j++) {
        lo = size[j] < lo ? size[j] : lo;
        hi = size[j] > hi ? size[j] : hi;
    }
    assert_true(hi - lo <= 1);
}

typedef int (*assign_fn)(const fcase *c, uint64_t stream, const void *data, int32_t *out);

static int run_plain(const fcase *c, uint64_t stream, const void *data, int32_t *out)
{
    kp_rng r;
    (void)data;
    kp_rng_seed(&r, kp_rng_derive(c->seed, stream));
    return fold_assign_plain(c->n, c->k, &r, out, NULL, 0);
}

static int run_strat(const fcase *c, uint64_t stream, const void *data, int32_t *out)
{
    kp_rng r;
    kp_rng_seed(&r, kp_rng_derive(c->seed, stream));
    return fold_assign_stratified(data, c->n, c->classes, c->k, &r, out, NULL, 0);
}

static int run_group(const fcase *c, uint64_t stream, const void *data, int32_t *out)
{
    kp_rng r;
    kp_rng_seed(&r, kp_rng_derive(c->seed, stream));
    return fold_assign_group(data, c->n, c->k, &r, out, NULL, 0);
}

/* Same stream -> same folds; another stream -> other folds (for n >= 20). */
static void assert_reproducible(const fcase *c, assign_fn fn, const void *data, const int32_t *f)
{
    int32_t *again = malloc((size_t)c->n * sizeof *again);
    assert_int_equal(fn(c, 0, data, again), 0);
    assert_memory_equal(again, f, (size_t)c->n * sizeof *f);
    assert_int_equal(fn(c, 1, data, again), 0);
    if (c->n >= 20)
        assert_memory_not_equal(again, f, (size_t)c->n * sizeof *f);
    free(again);
}

/* ---- properties ---- */

static void test_folds_plain_complete_balanced_reproducible(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_CASES; i++) {
        const fcase *c = &cases[i];
        int32_t *f = malloc((size_t)c->n * sizeof *f);
        int64_t size[16];
        assert_int_equal(run_plain(c, 0, NULL, f), 0);
        assert_complete(f, c->n, c->k, size);
        assert_balanced(size, c->k);
        assert_reproducible(c, run_plain, NULL, f);
        free(f);
    }
}

static void test_folds_stratified_per_class_counts_within_one(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_CASES; i++) {
        const fcase *c = &cases[i];
        float *y = make_labels(c);
        int32_t *f = malloc((size_t)c->n * sizeof *f);
        int64_t size[16], per[16];
        assert_int_equal(run_strat(c, 0, y, f), 0);
        assert_complete(f, c->n, c->k, size);
        assert_balanced(size, c->k);
        for (int cls = 0; cls < c->classes; cls++) {
            memset(per, 0, sizeof per);
            for (int64_t r = 0; r < c->n; r++)
                per[f[r]] += y[r] == (float)cls;
            assert_balanced(per, c->k);
        }
        assert_reproducible(c, run_strat, y, f);
        free(f);
        free(y);
    }
}

static void test_folds_group_never_splits_a_group(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_CASES; i++) {
        const fcase *c = &cases[i];
        int64_t *g = make_groups(c);
        int32_t *f = malloc((size_t)c->n * sizeof *f);
        int64_t size[16];
        assert_int_equal(run_group(c, 0, g, f), 0);
        assert_complete(f, c->n, c->k, size);
        for (int64_t a = 0; a < c->n; a++)
            for (int64_t b = a + 1; b < c->n; b++)
                if (g[a] == g[b])
                    assert_int_equal(f[a], f[b]);
        assert_reproducible(c, run_group, g, f);
        free(f);
        free(g);
    }
}

static void test_folds_group_fills_the_smallest_fold_first(void **state)
{
    (void)state;
    /* group sizes 5, 4, 3, 2, 1, 1: greedy gives 5+2+1 = 8 and 4+3+1 = 8 */
    int64_t g[16] = {9, 9, 9, 9, 9, 4, 4, 4, 4, 7, 7, 7, 2, 2, 5, 6};
    int32_t f[16];
    kp_rng r;
    kp_rng_seed(&r, 3);
    assert_int_equal(fold_assign_group(g, 16, 2, &r, f, NULL, 0), 0);
    int64_t size[2] = {0, 0};
    for (int i = 0; i < 16; i++)
        size[f[i]]++;
    assert_int_equal(size[0], 8);
    assert_int_equal(size[1], 8);
    assert_int_equal(f[0], 0);                /* the largest group goes to fold 0 */
    assert_int_not_equal(f[5], f[0]);         /* the second to the other fold */
}

static void test_folds_bad_k_is_an_error(void **state)
{
    (void)state;
    int32_t f[4];
    char err[KP_ERRLEN];
    kp_rng r;
    kp_rng_seed(&r, 1);
    int ks[] = {1, 0, 5};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(fold_assign_plain(4, ks[i], &r, f, err, sizeof err), KP_ERR_ARG);
        assert_non_null(strstr(err, "needs 2 <= k <= rows (4)"));
    }
}

static void test_folds_stratified_class_smaller_than_k_is_an_error(void **state)
{
    (void)state;
    float y[8] = {0, 0, 0, 0, 0, 0, 1, 1};
    int32_t f[8];
    char err[KP_ERRLEN];
    kp_rng r;
    kp_rng_seed(&r, 1);
    assert_int_equal(fold_assign_stratified(y, 8, 2, 3, &r, f, err, sizeof err), KP_ERR_ARG);
    assert_string_equal(err, "class 1 has 2 rows, fewer than k = 3 folds");
    y[0] = 2;
    assert_int_equal(fold_assign_stratified(y, 8, 2, 2, &r, f, err, sizeof err), KP_ERR_ARG);
    assert_string_equal(err, "row 0 has label 2, not a class index in [0, 2)");
}

static void test_folds_group_fewer_groups_than_k_is_an_error(void **state)
{
    (void)state;
    int64_t g[6] = {1, 1, 2, 2, 2, 1};
    int32_t f[6];
    char err[KP_ERRLEN];
    kp_rng r;
    kp_rng_seed(&r, 1);
    assert_int_equal(fold_assign_group(g, 6, 3, &r, f, err, sizeof err), KP_ERR_ARG);
    assert_string_equal(err, "only 2 distinct groups, fewer than k = 3 folds");
}

/* ---- folds artifact ---- */

static void test_folds_artifact_round_trips_with_hash(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), *path = kp_test_join(dir, "folds.safetensors");
    int32_t fold[2 * 6] = {0, 1, 2, 0, 1, 2, 2, 2, 1, 1, 0, 0};
    char err[KP_ERRLEN] = "";
    assert_int_equal(kp_folds_write(path, fold, 6, 3, 2, "plain", 42, err, sizeof err), 0);
    kp_folds *f = NULL;
    assert_int_equal(kp_folds_open(path, &f, err, sizeof err), 0);
    assert_int_equal(f->k, 3);
    assert_int_equal(f->repeats, 2);
    assert_int_equal(f->n, 6);
    assert_memory_equal(f->fold, fold, sizeof fold);
    assert_int_equal(strlen(f->hash), 32);
    char first[33];
    strcpy(first, f->hash);
    kp_folds_close(f);
    fold[11] = 1;   /* other folds, other hash */
    assert_int_equal(kp_folds_write(path, fold, 6, 3, 2, "plain", 42, err, sizeof err), 0);
    assert_int_equal(kp_folds_open(path, &f, err, sizeof err), 0);
    assert_string_not_equal(f->hash, first);
    kp_folds_close(f);
    free(path);
    free(dir);
}

/* Writes a folds file by hand: fold tensor [repeats, n] and the given metadata. */
static char *write_raw_folds(const char *dir, const int32_t *fold, int64_t rows, int64_t n,
                             const char *k, const char *repeats, const char *hash)
{
    char *path = kp_test_join(dir, "raw.safetensors");
    kp_stw *w = kp_stw_create();
    int64_t shape[2] = {rows, n};
    assert_int_equal(kp_stw_add(w, "fold", KP_I32, 2, shape, fold), 0);
    assert_int_equal(kp_stw_meta(w, "kpipe.artifact", "folds"), 0);
    assert_int_equal(kp_stw_meta(w, "k", k), 0);
    assert_int_equal(kp_stw_meta(w, "repeats", repeats), 0);
    assert_int_equal(kp_stw_meta(w, "folds_hash", hash), 0);
    char err[KP_ERRLEN];
    assert_int_equal(kp_stw_write(w, path, err, sizeof err), 0);
    kp_stw_free(w);
    return path;
}

static void test_folds_open_refuses_inconsistent_files(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), *good = kp_test_join(dir, "good.safetensors");
    int32_t fold[4] = {0, 1, 0, 1}, bad[4] = {0, 1, 5, 1}, empty[4] = {0, 0, 0, 0};
    char err[KP_ERRLEN] = "", hash[40];
    kp_folds *f = NULL;
    assert_int_equal(kp_folds_write(good, fold, 4, 2, 1, "plain", 1, err, sizeof err), 0);
    assert_int_equal(kp_folds_open(good, &f, err, sizeof err), 0);
    strcpy(hash, f->hash);
    kp_folds_close(f);
    f = NULL;
    struct { const int32_t *fold; int64_t rows, n; const char *k, *rep, *hash; int rc;
             const char *msg; } c[] = {
        {bad, 1, 4, "2", "1", hash, KP_ERR_FORMAT, "fold[0, 2] = 5 is outside [0, 2)"},
        {empty, 1, 4, "2", "1", hash, KP_ERR_FORMAT, "fold 1 of repeat 0 is empty"},
        {fold, 1, 4, "2", "2", hash, KP_ERR_MISMATCH, "metadata says 2 repeats"},
        {fold, 1, 4, "9", "1", hash, KP_ERR_FORMAT, "metadata 'k' is '9'"},
        {fold, 1, 4, "2", "1", "00000000000000000000000000000000", KP_ERR_MISMATCH,
         "does not match the fold values"},
        {fold, 2, 2, "2", "1", hash, KP_ERR_MISMATCH, "has shape [2, 2]"},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        char *p = write_raw_folds(dir, c[i].fold, c[i].rows, c[i].n, c[i].k, c[i].rep, c[i].hash);
        assert_int_equal(kp_folds_open(p, &f, err, sizeof err), c[i].rc);
        assert_null(f);
        if (!strstr(err, c[i].msg) || !strstr(err, "raw.safetensors"))
            fail_msg("case %zu: got \"%s\"", i, err);
        free(p);
    }
    free(good);
    free(dir);
}

static void test_folds_open_refuses_another_artifact_kind(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), *path = kp_test_join(dir, "p.safetensors");
    float oof[2] = {0.5f, 0.5f};
    kp_preds_out o = {.pb = {KP_TASK_BINARY, 1}, .n_train = 2, .n_test = 0, .oof = oof,
                      .test = oof, .folds_hash = "x", .metric = "auc"};
    char err[KP_ERRLEN];
    assert_int_equal(kp_preds_write(path, &o, err, sizeof err), 0);
    kp_folds *f = NULL;
    assert_int_equal(kp_folds_open(path, &f, err, sizeof err), KP_ERR_MISMATCH);
    assert_non_null(strstr(err, "not a folds artifact (metadata kpipe.artifact is 'preds')"));
    free(path);
    free(dir);
}

/* ---- preds artifact ---- */

static void test_folds_preds_round_trip_computes_cv_stats(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), *path = kp_test_join(dir, "preds.safetensors");
    float oof[3 * 2] = {0.1f, 0.9f, 0.2f, 0.8f, 0.3f, 0.7f}, test[2] = {0.4f, 0.6f};
    float th[2] = {0.25f, 0.75f};
    double scores[4] = {0.5, 0.7, 0.6, 0.8};
    const char *extra[] = {"weights", "{\"a\":1}", "note", "x", NULL};
    kp_preds_out o = {.pb = {KP_TASK_MULTILABEL, 2}, .n_train = 3, .n_test = 1, .oof = oof,
                      .test = test, .folds_hash = "0123456789abcdef0123456789abcdef",
                      .metric = "logloss", .model = "logistic", .stage = "lr",
                      .classes_json = "[\"a\",\"b\"]", .fold_scores = scores, .n_folds = 4,
                      .oof_score = 0.625, .thresholds = th, .extra_meta = extra};
    char err[KP_ERRLEN] = "";
    assert_int_equal(kp_preds_write(path, &o, err, sizeof err), 0);
    kp_preds *p = NULL;
    assert_int_equal(kp_preds_open(path, &p, err, sizeof err), 0);
    assert_int_equal(p->pb.task, KP_TASK_MULTILABEL);
    assert_int_equal(p->pb.n_out, 2);
    assert_int_equal(p->n_train, 3);
    assert_int_equal(p->n_test, 1);
    assert_memory_equal(p->oof, oof, sizeof oof);
    assert_memory_equal(p->test, test, sizeof test);
    assert_string_equal(p->folds_hash, o.folds_hash);
    assert_string_equal(p->metric, "logloss");
    assert_string_equal(p->model, "logistic");
    assert_string_equal(p->stage, "lr");
    assert_int_equal(p->n_folds, 4);
    assert_memory_equal(p->fold_scores, scores, sizeof scores);   /* %.17g round trip */
    assert_true(fabs(p->cv_mean - 0.65) < 1e-15);
    assert_true(fabs(p->cv_std - sqrt(0.0125)) < 1e-15);          /* population std */
    assert_true(p->oof_score == 0.625);
    assert_non_null(p->thresholds);
    assert_true(p->thresholds[0] == 0.25f && p->thresholds[1] == 0.75f);
    assert_string_equal(kp_st_meta(p->st, "weights"), "{\"a\":1}");
    assert_string_equal(kp_st_meta(p->st, "note"), "x");
    kp_preds_close(p);
    free(path);
    free(dir);
}

static void test_folds_preds_nan_fold_score_survives_as_nan(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), *path = kp_test_join(dir, "preds.safetensors");
    float v[2] = {1, 2};
    double scores[2] = {NAN, 0.5};
    kp_preds_out o = {.pb = {KP_TASK_REGRESSION, 1}, .n_train = 2, .n_test = 0, .oof = v,
                      .test = v, .folds_hash = "h", .fold_scores = scores, .n_folds = 2,
                      .oof_score = 0.5};
    char err[KP_ERRLEN] = "";
    assert_int_equal(kp_preds_write(path, &o, err, sizeof err), 0);
    kp_preds *p = NULL;
    assert_int_equal(kp_preds_open(path, &p, err, sizeof err), 0);
    assert_true(isnan(p->fold_scores[0]));
    assert_true(p->fold_scores[1] == 0.5);
    assert_null(p->thresholds);
    assert_string_equal(p->metric, "");
    kp_preds_close(p);
    free(path);
    free(dir);
}

static void test_folds_preds_refuse_classes_that_do_not_fit(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), *path = kp_test_join(dir, "preds.safetensors");
    float v[6] = {0};
    kp_preds_out o = {.pb = {KP_TASK_MULTICLASS, 3}, .n_train = 1, .n_test = 1, .oof = v,
                      .test = v, .folds_hash = "h", .classes_json = "[\"a\",\"b\"]"};
    char err[KP_ERRLEN] = "";
    assert_int_equal(kp_preds_write(path, &o, err, sizeof err), 0);
    kp_preds *p = NULL;
    assert_int_equal(kp_preds_open(path, &p, err, sizeof err), KP_ERR_MISMATCH);
    assert_non_null(strstr(err, "must list 3 classes, it lists 2"));
    o.classes_json = "{\"a\":1}";
    assert_int_equal(kp_preds_write(path, &o, err, sizeof err), KP_ERR_ARG);
    assert_non_null(strstr(err, "classes is not a JSON array"));
    free(path);
    free(dir);
}

/* ---- the stage ---- */

/* Writes a small dataset artifact: binary, y as given, optional groups. */
static char *write_dataset(const char *dir, const float *y, const int64_t *groups, int64_t n,
                           const char *task, const char *n_out, const char *classes)
{
    char *path = kp_test_join(dir, "dataset.safetensors");
    float *x = calloc((size_t)n, sizeof *x);
    int64_t *off = calloc((size_t)n + 1, sizeof *off);
    int64_t s2[2] = {n, 1}, s0[2] = {0, 1}, s1[1] = {n}, so[1] = {n + 1}, sb[1] = {0};
    int64_t zo[1] = {1}, zero = 0;
    uint8_t b = 0;
    kp_stw *w = kp_stw_create();
    assert_int_equal(kp_stw_add(w, "X_train", KP_F32, 2, s2, x), 0);
    assert_int_equal(kp_stw_add(w, "X_test", KP_F32, 2, s0, x), 0);
    assert_int_equal(kp_stw_add(w, "y", KP_F32, 1, s1, y), 0);
    if (groups)
        assert_int_equal(kp_stw_add(w, "groups", KP_I64, 1, s1, groups), 0);
    assert_int_equal(kp_stw_add(w, "train_ids.offsets", KP_I64, 1, so, off), 0);
    assert_int_equal(kp_stw_add(w, "train_ids.bytes", KP_U8, 1, sb, &b), 0);
    assert_int_equal(kp_stw_add(w, "test_ids.offsets", KP_I64, 1, zo, &zero), 0);
    assert_int_equal(kp_stw_add(w, "test_ids.bytes", KP_U8, 1, sb, &b), 0);
    const char *meta[][2] = {{"kpipe.artifact", "dataset"}, {"task", task}, {"n_out", n_out},
                             {"classes", classes}, {"features", "[\"x\"]"},
                             {"id_column", "id"}, {"target_columns", "[\"y\"]"}};
    for (size_t i = 0; i < sizeof meta / sizeof meta[0]; i++)
        assert_int_equal(kp_stw_meta(w, meta[i][0], meta[i][1]), 0);
    char err[KP_ERRLEN] = "";
    if (kp_stw_write(w, path, err, sizeof err) != 0)
        fail_msg("%s", err);
    kp_stw_free(w);
    free(x);
    free(off);
    return path;
}

static void test_folds_make_writes_stratified_folds_of_a_dataset(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), *out = kp_test_join(dir, "folds.safetensors");
    float y[30];
    for (int i = 0; i < 30; i++)
        y[i] = i % 3 == 0;   /* 10 positives */
    char *ds = write_dataset(dir, y, NULL, 30, "binary", "1", "[\"no\",\"yes\"]");
    kp_fold_spec s = {.k = 5, .repeats = 2, .kind = KP_FOLDS_STRATIFIED, .seed = 42};
    char err[KP_ERRLEN] = "";
    char *logbuf = NULL;
    size_t loglen = 0;
    FILE *log = open_memstream(&logbuf, &loglen);
    if (kp_folds_make(ds, &s, out, log, err, sizeof err) != 0)
        fail_msg("%s", err);
    fclose(log);
    assert_non_null(strstr(logbuf, "folds: 5 stratified folds x 2 repeats of 30 rows (seed 42); "
                                   "fold sizes 6..6"));
    kp_folds *f = NULL;
    assert_int_equal(kp_folds_open(out, &f, err, sizeof err), 0);
    assert_int_equal(f->k, 5);
    assert_int_equal(f->repeats, 2);
    assert_int_equal(f->n, 30);
    for (int r = 0; r < 2; r++)
        for (int fo = 0; fo < 5; fo++) {
            int pos = 0;
            for (int i = 0; i < 30; i++)
                pos += f->fold[r * 30 + i] == fo && y[i] == 1;
            assert_int_equal(pos, 2);
        }
    assert_memory_not_equal(f->fold, f->fold + 30, 30 * sizeof *f->fold);
    kp_folds_close(f);
    free(logbuf);
    free(ds);
    free(out);
    free(dir);
}

static void test_folds_make_names_the_class_too_small_and_missing_groups(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), *out = kp_test_join(dir, "folds.safetensors");
    float y[10] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1};
    char *ds = write_dataset(dir, y, NULL, 10, "binary", "1", "[\"B\",\"M\"]");
    kp_fold_spec s = {.k = 3, .repeats = 1, .kind = KP_FOLDS_STRATIFIED, .seed = 1};
    char err[KP_ERRLEN] = "";
    assert_int_equal(kp_folds_make(ds, &s, out, NULL, err, sizeof err), KP_ERR_ARG);
    assert_non_null(strstr(err, "dataset.safetensors: class 'M' has 2 rows, fewer than k = 3 "
                                "folds; lower k or use kind: plain"));
    s.kind = KP_FOLDS_GROUP;
    assert_int_equal(kp_folds_make(ds, &s, out, NULL, err, sizeof err), KP_ERR_MISMATCH);
    assert_non_null(strstr(err, "the dataset has no groups"));
    s.kind = KP_FOLDS_PLAIN;
    s.k = 11;
    assert_int_equal(kp_folds_make(ds, &s, out, NULL, err, sizeof err), KP_ERR_ARG);
    assert_non_null(strstr(err, "k = 11 folds needs 2 <= k <= rows (10)"));
    free(ds);
    free(out);
    free(dir);
}

static void test_folds_make_group_folds_from_dataset_groups(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), *out = kp_test_join(dir, "folds.safetensors");
    float y[12] = {0};
    int64_t g[12] = {0, 0, 1, 1, 1, 2, 3, 3, 4, 5, 5, 5};
    char *ds = write_dataset(dir, y, g, 12, "regression", "1", "[]");
    kp_fold_spec s = {.k = 3, .repeats = 1, .kind = KP_FOLDS_GROUP, .seed = 5};
    char err[KP_ERRLEN] = "";
    if (kp_folds_make(ds, &s, out, NULL, err, sizeof err) != 0)
        fail_msg("%s", err);
    kp_folds *f = NULL;
    assert_int_equal(kp_folds_open(out, &f, err, sizeof err), 0);
    for (int i = 1; i < 12; i++)
        if (g[i] == g[i - 1])
            assert_int_equal(f->fold[i], f->fold[i - 1]);
    kp_folds_close(f);
    s.kind = KP_FOLDS_STRATIFIED;
    assert_int_equal(kp_folds_make(ds, &s, out, NULL, err, sizeof err), KP_ERR_ARG);
    assert_non_null(strstr(err, "task regression has none; use kind: plain"));
    free(ds);
    free(out);
    free(dir);
}

static kp_competition make_comp(kp_task_kind task)
{
    kp_competition c = {.task = task};
    c.folds.k = 5;
    c.folds.repeats = 1;
    c.folds.kind = KP_FOLDS_STRATIFIED;
    c.folds.seed = 42;
    return c;
}

static void test_folds_resolve_takes_stage_keys_over_competition(void **state)
{
    (void)state;
    kp_competition c = make_comp(KP_TASK_BINARY);
    kp_params *o = kp_params_create();
    kp_fold_spec s;
    char err[KP_ERRLEN] = "";
    assert_int_equal(kp_folds_resolve(o, &c, &s, err, sizeof err), 0);
    assert_int_equal(s.k, 5);
    assert_int_equal(s.kind, KP_FOLDS_STRATIFIED);
    assert_int_equal(s.seed, 42);
    assert_int_equal(s.repeats, 1);
    assert_int_equal(kp_params_set(o, "k", "3", 1, 1), 0);
    assert_int_equal(kp_params_set(o, "kind", "plain", 1, 1), 0);
    assert_int_equal(kp_params_set(o, "seed", "7", 1, 1), 0);
    assert_int_equal(kp_params_set(o, "repeats", "", 1, 1), 0);   /* "" = competition's */
    assert_int_equal(kp_folds_resolve(o, &c, &s, err, sizeof err), 0);
    assert_int_equal(s.k, 3);
    assert_int_equal(s.kind, KP_FOLDS_PLAIN);
    assert_int_equal(s.seed, 7);
    assert_int_equal(s.repeats, 1);
    kp_params_free(o);
}

static void test_folds_resolve_refuses_bad_combinations(void **state)
{
    (void)state;
    char grp[] = "site", other[] = "user";
    struct { kp_task_kind task; const char *key, *value; char *comp_group; const char *msg; }
        c[] = {
        {KP_TASK_REGRESSION, NULL, NULL, NULL, "kind: stratified folds need one class per row, "
                                               "task regression has none; use kind: plain"},
        {KP_TASK_MULTILABEL, "kind", "stratified", NULL, "task multilabel has none"},
        {KP_TASK_BINARY, "k", "1", NULL, "k: 1 folds; k must be at least 2"},
        {KP_TASK_BINARY, "kind", "group", NULL, "kind: group folds need a group column"},
        {KP_TASK_BINARY, "group", other, grp, "group: 'user' is not competition.folds.group"},
        {KP_TASK_BINARY, "kind", "random", NULL, "kind: 'random' is not plain"},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        kp_competition comp = make_comp(c[i].task);
        comp.folds.group = c[i].comp_group;
        if (c[i].comp_group)
            comp.folds.kind = KP_FOLDS_GROUP;
        kp_params *o = kp_params_create();
        if (c[i].key)
            assert_int_equal(kp_params_set(o, c[i].key, c[i].value, 1, 1), 0);
        kp_fold_spec s = {.k = -99};
        char err[KP_ERRLEN] = "";
        assert_int_equal(kp_folds_resolve(o, &comp, &s, err, sizeof err), KP_ERR_CONFIG);
        assert_int_equal(s.k, -99);
        if (!strstr(err, c[i].msg))
            fail_msg("case %zu: got \"%s\"", i, err);
        kp_params_free(o);
    }
}

static void test_folds_stage_check_names_place_and_key(void **state)
{
    (void)state;
    kp_stage st[2] = {{0}};
    st[0].name = st[0].base = "prep";
    st[0].ops = &kp_stage_preprocess;
    st[1].name = st[1].base = "folds";
    st[1].ops = &kp_stage_folds;
    st[1].line = 9;
    st[1].col = 3;
    st[1].opts = kp_params_create();
    int need = 0;
    kp_config cfg = {.path = "c.yaml", .comp = make_comp(KP_TASK_REGRESSION), .stages = st,
                     .n_stages = 2};
    char err[KP_ERRLEN] = "";
    assert_int_equal(kp_stage_folds.check(&st[1], &cfg, err, sizeof err), KP_ERR_CONFIG);
    assert_string_equal(err, "c.yaml:9:3: stages.folds.needs: a folds stage needs a preprocess "
                             "stage (a dataset)");
    st[1].needs = &need;
    st[1].n_needs = 1;
    assert_int_equal(kp_params_set(st[1].opts, "kind", "stratified", 12, 11), 0);
    assert_int_equal(kp_stage_folds.check(&st[1], &cfg, err, sizeof err), KP_ERR_CONFIG);
    assert_non_null(strstr(err, "c.yaml:12:11: stages.folds.kind: stratified folds need"));
    assert_int_equal(kp_params_set(st[1].opts, "kind", "plain", 12, 11), 0);
    assert_int_equal(kp_stage_folds.check(&st[1], &cfg, err, sizeof err), 0);
    kp_params_free(st[1].opts);
}

static void test_folds_stage_type_declares_keys_and_output(void **state)
{
    (void)state;
    assert_string_equal(kp_stage_folds.name, "folds");
    assert_int_equal(kp_stage_folds.output, KP_ART_FOLDS);
    const char *want[] = {"k", "kind", "seed", "repeats", "group"};
    assert_int_equal(kp_keyspec_count(kp_stage_folds.keys), 5);
    for (int i = 0; i < 5; i++) {
        assert_string_equal(kp_stage_folds.keys[i].name, want[i]);
        assert_string_equal(kp_stage_folds.keys[i].def, "");
    }
    kp_stage st = {.name = "folds", .dir = "runs/x/folds", .ops = &kp_stage_folds};
    kp_buf b;
    kp_buf_init(&b, 0);
    assert_int_equal(kp_stage_folds.outputs(&st, NULL, -1, &b), 0);
    assert_string_equal(kp_buf_str(&b), "runs/x/folds/folds.safetensors\n");
    kp_buf_free(&b);
}

KP_TEST_GROUP(folds)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_folds_plain_complete_balanced_reproducible),
        cmocka_unit_test(test_folds_stratified_per_class_counts_within_one),
        cmocka_unit_test(test_folds_group_never_splits_a_group),
        cmocka_unit_test(test_folds_group_fills_the_smallest_fold_first),
        cmocka_unit_test(test_folds_bad_k_is_an_error),
        cmocka_unit_test(test_folds_stratified_class_smaller_than_k_is_an_error),
        cmocka_unit_test(test_folds_group_fewer_groups_than_k_is_an_error),
        cmocka_unit_test(test_folds_artifact_round_trips_with_hash),
        cmocka_unit_test(test_folds_open_refuses_inconsistent_files),
        cmocka_unit_test(test_folds_open_refuses_another_artifact_kind),
        cmocka_unit_test(test_folds_preds_round_trip_computes_cv_stats),
        cmocka_unit_test(test_folds_preds_nan_fold_score_survives_as_nan),
        cmocka_unit_test(test_folds_preds_refuse_classes_that_do_not_fit),
        cmocka_unit_test(test_folds_make_writes_stratified_folds_of_a_dataset),
        cmocka_unit_test(test_folds_make_names_the_class_too_small_and_missing_groups),
        cmocka_unit_test(test_folds_make_group_folds_from_dataset_groups),
        cmocka_unit_test(test_folds_resolve_takes_stage_keys_over_competition),
        cmocka_unit_test(test_folds_resolve_refuses_bad_combinations),
        cmocka_unit_test(test_folds_stage_check_names_place_and_key),
        cmocka_unit_test(test_folds_stage_type_declares_keys_and_output),
    };
    return KP_RUN(folds, t);
}

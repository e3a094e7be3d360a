/* stage_fixture.h - shared by the train, stack and submit tests: a config
 * loaded from inline YAML in a temporary folder, artifacts written by hand,
 * and a stage's tasks run in-process the way the executor runs them.
 */
#ifndef KP_STAGE_FIXTURE_H
#define KP_STAGE_FIXTURE_H

#include "kp_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "../lib/err.h"
#include "../pipeline/config.h"
#include "../stages/artifact.h"
#include "../stages/stage.h"

/* Writes DIR/NAME with text unless it exists. */
static inline void fx_stub(const char *dir, const char *name, const char *text)
{
    char *p = kp_test_join(dir, name);
    if (access(p, F_OK) != 0)
        free(kp_test_write(dir, name, text));
    free(p);
}

/* Loads yaml as DIR/kp.yaml (stub train/test/sample CSVs are written first);
 * returns the status, the config in *out (caller frees) and the message in err. */
static inline int fx_load(const char *dir, const char *yaml, kp_config **out, char *err,
                          size_t errlen)
{
    fx_stub(dir, "train.csv", "id,x,y\n1,0,0\n2,1,1\n");
    fx_stub(dir, "test.csv", "id,x\n3,0\n");
    fx_stub(dir, "sample.csv", "id,y\n3,0.5\n");
    char *path = kp_test_join(dir, "kp.yaml");
    *out = NULL;
    int rc = kp_config_load_string(path, yaml, strlen(yaml), out, err, errlen);
    free(path);
    return rc;
}

/* Loads yaml and asserts it loads. */
static inline kp_config *fx_config(const char *dir, const char *yaml)
{
    char err[KP_ERRLEN] = "";
    kp_config *cfg = NULL;
    int rc = fx_load(dir, yaml, &cfg, err, sizeof err);
    if (rc != 0)
        print_error("config: %s\n", err);
    assert_int_equal(rc, 0);
    return cfg;
}

static inline const kp_stage *fx_stage(const kp_config *cfg, const char *name)
{
    int i = kp_config_find_stage(cfg, name);
    if (i < 0)
        print_error("no stage '%s'\n", name);
    assert_true(i >= 0);
    return &cfg->stages[i];
}

/* Returns the heap path "STAGE_DIR/file". */
static inline char *fx_path(const kp_config *cfg, const char *stage, const char *file)
{
    return kp_test_join(fx_stage(cfg, stage)->dir, file);
}

/* Reads a whole (binary) file; asserts it exists; caller frees. */
static inline char *fx_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        print_error("cannot open %s\n", path);
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    b[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* What fx_dataset writes. */
typedef struct fx_data {
    kp_task_kind task;
    int n_out;
    const char *classes;          /* JSON array text */
    int64_t n, n_test, n_feat;
    const float *X, *X_test, *y;  /* y: n (or n * n_out for multilabel) */
    const char *const *test_ids;  /* n_test ids, or NULL for "t0", "t1", ... */
} fx_data;

/* Adds ids PREFIX.offsets / PREFIX.bytes to w. */
static inline void fx_ids(kp_stw *w, const char *prefix, int64_t n, const char *const *ids,
                          const char *gen)
{
    size_t total = (size_t)n * 24 + 1;
    for (int64_t i = 0; ids && i < n; i++)
        total += strlen(ids[i]);
    int64_t *off = calloc((size_t)n + 1, sizeof *off);
    char *bytes = calloc(total, 1), name[64];
    for (int64_t i = 0; i < n; i++) {
        int len = ids ? (int)strlen(ids[i]) : sprintf(bytes + off[i], "%s%lld", gen, (long long)i);
        if (ids)
            memcpy(bytes + off[i], ids[i], (size_t)len);
        off[i + 1] = off[i] + len;
    }
    int64_t so[1] = {n + 1}, sb[1] = {off[n]};
    snprintf(name, sizeof name, "%s.offsets", prefix);
    assert_int_equal(kp_stw_add(w, name, KP_I64, 1, so, off), 0);
    snprintf(name, sizeof name, "%s.bytes", prefix);
    assert_int_equal(kp_stw_add(w, name, KP_U8, 1, sb, bytes), 0);
    free(off);
    free(bytes);
}

/* Writes the dataset artifact of stage `stage` (the layout of artifact.h). */
static inline void fx_dataset(const kp_config *cfg, const char *stage, const fx_data *d)
{
    char err[KP_ERRLEN] = "", feats[4096] = "[", num[32];
    kp_stw *w = kp_stw_create();
    int ml = d->task == KP_TASK_MULTILABEL;
    int64_t sx[2] = {d->n, d->n_feat}, st[2] = {d->n_test, d->n_feat}, sy[2] = {d->n, d->n_out};
    assert_int_equal(kp_stw_add(w, "X_train", KP_F32, 2, sx, d->X), 0);
    assert_int_equal(kp_stw_add(w, "X_test", KP_F32, 2, st, d->X_test), 0);
    assert_int_equal(kp_stw_add(w, "y", KP_F32, ml ? 2 : 1, sy, d->y), 0);
    fx_ids(w, "train_ids", d->n, NULL, "r");
    fx_ids(w, "test_ids", d->n_test, d->test_ids, "t");
    for (int64_t j = 0; j < d->n_feat; j++)
        snprintf(feats + strlen(feats), sizeof feats - strlen(feats), "%s\"f%lld\"", j ? "," : "",
                 (long long)j);
    strcat(feats, "]");
    snprintf(num, sizeof num, "%d", d->n_out);
    assert_int_equal(kp_stw_meta(w, "kpipe.artifact", "dataset"), 0);
    assert_int_equal(kp_stw_meta(w, "task", kp_task_name(d->task)), 0);
    assert_int_equal(kp_stw_meta(w, "n_out", num), 0);
    assert_int_equal(kp_stw_meta(w, "classes", d->classes ? d->classes : "[]"), 0);
    assert_int_equal(kp_stw_meta(w, "features", feats), 0);
    assert_int_equal(kp_stw_meta(w, "id_column", "id"), 0);
    assert_int_equal(kp_stw_meta(w, "target_columns", "[\"y\"]"), 0);
    char *path = fx_path(cfg, stage, "dataset.safetensors");
    int rc = kp_stw_write(w, path, err, sizeof err);
    if (rc)
        print_error("%s\n", err);
    assert_int_equal(rc, 0);
    free(path);
    kp_stw_free(w);
}

/* Writes the folds artifact of stage `stage`. */
static inline void fx_folds(const kp_config *cfg, const char *stage, const int32_t *fold,
                            int64_t n, int k, int repeats)
{
    char err[KP_ERRLEN] = "";
    char *path = fx_path(cfg, stage, "folds.safetensors");
    int rc = kp_folds_write(path, fold, n, k, repeats, "plain", 1, err, sizeof err);
    if (rc)
        print_error("%s\n", err);
    assert_int_equal(rc, 0);
    free(path);
}

/* Returns the number of part tasks of a stage. */
static inline int fx_n_parts(const kp_config *cfg, const char *stage)
{
    const kp_stage *st = fx_stage(cfg, stage);
    return st->ops->n_parts ? st->ops->n_parts(st, cfg) : 0;
}

/* Runs one task of a stage (part -1: the final task) as the executor would. */
static inline int fx_run(const kp_config *cfg, const char *stage, int part, FILE *log,
                         char *err, size_t errlen)
{
    const kp_stage *st = fx_stage(cfg, stage);
    kp_task_ctx ctx = {cfg, st, part, fx_n_parts(cfg, stage), 1, log};
    return st->ops->run(&ctx, err, errlen);
}

/* Runs every part and then the final task; stops at the first failure. */
static inline int fx_run_all(const kp_config *cfg, const char *stage, FILE *log, char *err,
                             size_t errlen)
{
    int n = fx_n_parts(cfg, stage), rc = 0;
    for (int p = 0; p < n && rc == 0; p++)
        rc = fx_run(cfg, stage, p, log, err, errlen);
    return rc ? rc : fx_run(cfg, stage, -1, log, err, errlen);
}

/* Runs every task and asserts success. */
static inline void fx_run_ok(const kp_config *cfg, const char *stage)
{
    char err[KP_ERRLEN] = "";
    int rc = fx_run_all(cfg, stage, NULL, err, sizeof err);
    if (rc)
        print_error("%s: %s\n", stage, err);
    assert_int_equal(rc, 0);
}

/* Opens a stage's preds.safetensors (asserting success); caller closes. */
static inline kp_preds *fx_preds(const kp_config *cfg, const char *stage)
{
    char err[KP_ERRLEN] = "";
    kp_preds *p = NULL;
    char *path = fx_path(cfg, stage, "preds.safetensors");
    int rc = kp_preds_open(path, &p, err, sizeof err);
    if (rc)
        print_error("%s\n", err);
    assert_int_equal(rc, 0);
    free(path);
    return p;
}

#endif

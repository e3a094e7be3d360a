/* tta.c - the tta stage: test-time augmentation of an image model's folds.
 *
 *   tta:
 *     type: tta
 *     needs: [cnn]          # one train stage of an image model
 *     transforms: all       # all | auto | [identity, hflip, vflip, rot90, rot180,
 *                           #   rot270, transpose, transverse]
 *     merge: mean           # mean | gmean | max
 *
 * The dataset and folds are those of the train stage it needs.  Part p (one
 * per part of that stage) loads its checkpoint DIR/model_part<p>.safetensors
 * and predicts the fold's held-out rows and every test row under each
 * candidate transform (all, auto: the eight, or the four that keep the shape
 * of non-square images; a list: as listed), and writes DIR/part<p>.safetensors
 *   oof_index I64 [n_valid]           the held-out train rows, ascending
 *   oof.NAME F32 [n_valid, n_out]     per candidate transform NAME
 *   test.NAME F32 [n_test, n_out]
 *   metadata: kpipe.artifact "tta_part", part, metric, folds_hash,
 *     transforms (JSON list of the candidates), scores (JSON object NAME ->
 *     the fold's score under NAME alone)
 * The merge checks every part like the train merge (folds hash, shapes, each
 * train row held out once per repeat and in its fold), scores the OOF of
 * each transform alone and picks the transforms (all of them, or for auto the
 * greedy selection of tta.h), then merges the chosen transforms per part:
 * the OOF averaged over repeats, the test averaged over parts in part order.
 * It writes DIR/preds.safetensors (artifact.h) with the fold scores, the
 * thresholds of a multilabel F-beta task (searched on the merged OOF, with
 * oof_score_thresholds, as the train merge does) and the metadata tta_transforms
 * (JSON list of the chosen names), tta_scores (JSON object NAME -> OOF score
 * alone), tta_merge and tta_source (the train stage).  The pure pieces
 * (names, merges, the auto selection) are in tta_core.c.
 */
#include "postproc.h"
#include "tta.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "kfold.h"
#include "thresholds.h"
#include "../lib/err.h"

#define PATH_LEN 4096

/* ---- config ---- */

static const kp_keyspec tta_keys[] = {
    {"transforms", KP_PT_LIST, "all", NULL, 0, 0,
     "all | auto | a list of identity, hflip, vflip, rot90, rot180, rot270, transpose, transverse"},
    {"merge", KP_PT_ENUM, "mean", "mean|gmean|max", 0, 0,
     "how a part's predictions under the transforms become one"},
    {NULL, 0, NULL, NULL, 0, 0, NULL},
};

static const char *stage_where(const kp_stage *st)
{
    return st->base ? st->base : st->name;
}

/* Returns the train stage st needs (its only need), or NULL. */
static const kp_stage *source_stage(const kp_stage *st, const kp_config *cfg)
{
    if (st->n_needs != 1)
        return NULL;
    const kp_stage *s = &cfg->stages[st->needs[0]];
    return s->type && strcmp(s->type, "train") == 0 ? s : NULL;
}

/* Checks that st needs exactly one train stage of an image model. */
static int check_source(const kp_stage *st, const kp_config *cfg, char *err, size_t errlen)
{
    const char *f = cfg->path, *w = stage_where(st);
    if (st->n_needs != 1)
        return kp_errf(err, errlen, KP_ERR_CONFIG,
                       "%s:%d:%d: stages.%s.needs: tta stage '%s' needs exactly one train stage "
                       "of an image model, found %d needs", f, st->line, st->col, w, st->name,
                       st->n_needs);
    const kp_stage *s = &cfg->stages[st->needs[0]];
    if (!source_stage(st, cfg))
        return kp_errf(err, errlen, KP_ERR_CONFIG,
                       "%s:%d:%d: stages.%s.needs: tta stage '%s' needs a train stage of an image "
                       "model, but '%s' is a stage of type %s", f, st->line, st->col, w,
                       st->name, s->name, s->type ? s->type : "?");
    const char *model = kp_params_str(s->opts, "model", "");
    const kp_model_ops *m = kp_model_find(model);
    if (m && !m->predict_images)
        return kp_errf(err, errlen, KP_ERR_CONFIG,
                       "%s:%d:%d: stages.%s.needs: train stage '%s' fits model '%s', which does "
                       "not predict images (tta needs an image model such as cnn)", f, st->line,
                       st->col, w, s->name, model);
    return 0;   /* an unknown model is the train stage's own error */
}

/* Parses st's transforms and merge; errors name the key. */
static int read_opts(const kp_stage *st, const kp_config *cfg, kp_tta_spec *spec,
                     kp_tta_merge_kind *how, char *err, size_t errlen)
{
    const char *const *items = NULL;
    int n = 0, line = 0, col = 0;
    char msg[KP_ERRLEN];
    kp_params_where(st->opts, "transforms", &line, &col);
    if (line == 0)
        line = st->line, col = st->col;
    if (kp_params_get_list(st->opts, "transforms", &items, &n) < 0)
        n = 0;
    int rc = kp_tta_parse(items, n, spec, msg, sizeof msg);
    if (rc < 0)
        return kp_errf(err, errlen, rc, "%s:%d:%d: stages.%s.%s", cfg->path, line, col,
                       stage_where(st), msg);
    if (kp_tta_merge_parse(kp_params_str(st->opts, "merge", "mean"), how) < 0)
        return kp_errf(err, errlen, KP_ERR_CONFIG, "stages.%s.merge: not mean, gmean or max",
                       stage_where(st));
    return 0;
}

/* ops->check: the need, the keys, and no gmean for regression. */
static int tta_check(kp_stage *st, const kp_config *cfg, char *err, size_t errlen)
{
    kp_tta_spec spec;
    kp_tta_merge_kind how;
    int rc = check_source(st, cfg, err, errlen);
    if (rc == 0)
        rc = read_opts(st, cfg, &spec, &how, err, errlen);
    if (rc == 0 && how == KP_TTA_GMEAN && cfg->comp.task == KP_TASK_REGRESSION) {
        int line = st->line, col = st->col;
        kp_params_where(st->opts, "merge", &line, &col);
        rc = kp_errf(err, errlen, KP_ERR_CONFIG,
                     "%s:%d:%d: stages.%s.merge: gmean merges probabilities, not the values of "
                     "a regression task (use mean or max)", cfg->path, line, col,
                     stage_where(st));
    }
    return rc;
}

/* ops->n_parts: one per part of the train stage. */
static int tta_n_parts(const kp_stage *st, const kp_config *cfg)
{
    const kp_stage *s = source_stage(st, cfg);
    return s ? kp_kfold_count(s, cfg) : 0;
}

/* ops->outputs: DIR/part<p>.safetensors, or DIR/preds.safetensors. */
static int tta_outputs(const kp_stage *st, const kp_config *cfg, int part, kp_buf *out)
{
    char path[PATH_LEN];
    (void)cfg;
    int rc = part < 0 ? kp_stage_artifact_path(st, path, sizeof path)
                      : kp_stage_part_path(st, part, path, sizeof path);
    return rc < 0 ? KP_ERR_ARG : kp_buf_printf(out, "%s\n", path);
}

/* Reads the train stage's checkpoints and its dataset and folds artifacts. */
static int tta_inputs(const kp_stage *st, const kp_config *cfg, kp_buf *out)
{
    char path[PATH_LEN];
    const kp_stage *s = source_stage(st, cfg);
    int n = s ? kp_kfold_count(s, cfg) : 0, rc = 0;
    for (int p = 0; p < n && rc == 0; p++)
        rc = kp_kfold_model_path(s, p, path, sizeof path) < 0
                 ? KP_ERR_ARG : kp_buf_printf(out, "%s\n", path);
    kp_artifact_kind kinds[2] = {KP_ART_DATASET, KP_ART_FOLDS};
    for (int i = 0; s && i < 2 && rc == 0; i++) {
        int k = kp_stage_need_of_kind(s, cfg, kinds[i]);
        if (k >= 0)
            rc = kp_stage_artifact_path(&cfg->stages[k], path, sizeof path) < 0
                     ? KP_ERR_ARG : kp_buf_printf(out, "%s\n", path);
    }
    return rc;
}

/* ---- what both tasks open ---- */

typedef struct tta_run {
    const kp_task_ctx *ctx;
    const kp_stage *src;              /* the train stage */
    kp_dataset *d;
    kp_folds *f;
    const kp_metric_ops *m;
    kp_metric_opts mo;
    kp_tta_mode mode;
    kp_tta_merge_kind how;
    int n_cand, cand[KP_D4_COUNT];    /* candidate transforms */
    char cand_json[160];              /* their names as a JSON list */
} tta_run;

static void tta_run_free(tta_run *r)
{
    kp_dataset_close(r->d);
    kp_folds_close(r->f);
}

/* Writes the names of t[0..n) as a JSON list into out. */
static void names_json(const int *t, int n, char *out, size_t len)
{
    size_t used = (size_t)snprintf(out, len, "[");
    for (int i = 0; i < n && used < len; i++)
        used += (size_t)snprintf(out + used, len - used, "%s\"%s\"", i ? "," : "",
                                 kp_tta_name(t[i]));
    if (used < len)
        snprintf(out + used, len - used, "]");
}

/* Finds the candidates for the dataset's images; a listed transform that
 * needs square images is an error naming it. */
static int candidates(tta_run *r, const kp_tta_spec *spec, char *err, size_t errlen)
{
    const kp_images *X = &r->d->images_train;
    const kp_stage *st = r->ctx->stage;
    if (!X->data)
        return kp_errf(err, errlen, KP_ERR_MISMATCH,
                       "stage '%s': the dataset of train stage '%s' has no images", st->name,
                       r->src->name);
    r->n_cand = kp_tta_candidates(spec, X->height, X->width, r->cand);
    if (r->n_cand < 0) {
        int i = -1 - r->n_cand, line = st->line, col = st->col;
        kp_params_where(st->opts, "transforms", &line, &col);
        return kp_errf(err, errlen, KP_ERR_CONFIG,
                       "%s:%d:%d: stages.%s.transforms[%d]: %s swaps height and width, but the "
                       "images are %d x %d (H x W); it needs square images", r->ctx->cfg->path,
                       line, col, stage_where(st), i, kp_tta_name(spec->t[i]), X->height,
                       X->width);
    }
    names_json(r->cand, r->n_cand, r->cand_json, sizeof r->cand_json);
    return 0;
}

/* Opens the dataset and folds of the train stage, the metric and the options. */
static int tta_open(const kp_task_ctx *ctx, tta_run *r, char *err, size_t errlen)
{
    kp_tta_spec spec;
    memset(r, 0, sizeof *r);
    r->ctx = ctx;
    r->src = source_stage(ctx->stage, ctx->cfg);
    if (!r->src)
        return kp_errf(err, errlen, KP_ERR_CONFIG, "stage '%s' needs no train stage",
                       ctx->stage->name);
    kp_task_ctx sub = *ctx;   /* the train stage's inputs, as its own tasks see them */
    sub.stage = r->src;
    int rc = read_opts(ctx->stage, ctx->cfg, &spec, &r->how, err, errlen);
    if (rc == 0) {
        r->mode = spec.mode;
        rc = kp_kfold_open_inputs(&sub, &r->d, &r->f, err, errlen);
    }
    if (rc == 0)
        rc = kp_kfold_metric(ctx->cfg, &r->d->pb, &r->m, &r->mo, err, errlen);
    if (rc == 0)
        rc = candidates(r, &spec, err, errlen);
    return rc;
}

/* Writes "fold 3/5" or "repeat 2/3 fold 3/5" for part p into buf. */
static void part_label(const kp_folds *f, int p, char *buf, size_t len)
{
    if (f->repeats > 1)
        snprintf(buf, len, "repeat %d/%d fold %d/%d", p / f->k + 1, f->repeats, p % f->k + 1,
                 f->k);
    else
        snprintf(buf, len, "fold %d/%d", p % f->k + 1, f->k);
}


/* Scores packed predictions of the train rows idx[0..n); ybuf holds n rows of y. */
static int score_rows(const tta_run *r, const int64_t *idx, int64_t n, const float *pred,
                      float *ybuf, double *out, char *err, size_t errlen)
{
    int64_t yw = kp_problem_y_width(&r->d->pb);
    for (int64_t i = 0; i < n; i++)
        memcpy(ybuf + i * yw, r->d->y + idx[i] * yw, (size_t)yw * sizeof *ybuf);
    return r->m->score(&r->d->pb, ybuf, pred, n, &r->mo, out, err, errlen);
}

/* ---- a part ---- */

typedef struct tta_part_buf {
    int64_t *idx, n;
    float *oof, *test, *ybuf;   /* n_cand blocks of n x n_out; of n_test x n_out; n rows of y */
    double scores[KP_D4_COUNT];
} tta_part_buf;

/* Collects the held-out rows of part p, ascending, and allocates the buffers. */
static int part_alloc(const tta_run *r, int p, tta_part_buf *b, char *err, size_t errlen)
{
    const kp_folds *f = r->f;
    const int32_t *fold = f->fold + (int64_t)(p / f->k) * f->n;
    int64_t k = r->d->pb.n_out, nt = r->d->n_test;
    b->idx = malloc((size_t)f->n * sizeof *b->idx);
    for (int64_t i = 0; b->idx && i < f->n; i++)
        if (fold[i] == p % f->k)
            b->idx[b->n++] = i;
    b->oof = malloc((size_t)(b->n > 0 ? b->n : 1) * k * r->n_cand * sizeof *b->oof);
    b->test = malloc((size_t)(nt > 0 ? nt : 1) * k * r->n_cand * sizeof *b->test);
    b->ybuf = malloc((size_t)(b->n > 0 ? b->n : 1) * kp_problem_y_width(&r->d->pb) *
                     sizeof *b->ybuf);
    if (!b->idx || !b->oof || !b->test || !b->ybuf)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "part %d: out of memory", p);
    if (b->n == 0)
        return kp_errf(err, errlen, KP_ERR_MISMATCH, "part %d: fold %d of repeat %d is empty", p,
                       p % f->k, p / f->k);
    return 0;
}

/* Fails naming the first non-finite prediction. */
static int check_finite(const float *v, int64_t n, int k, const char *what, int t, int p,
                        char *err, size_t errlen)
{
    for (int64_t i = 0; i < n * k; i++)
        if (!isfinite(v[i]))
            return kp_errf(err, errlen, KP_ERR_TASK, "part %d: the model predicted %g for %s "
                           "row %lld under %s", p, (double)v[i], what, (long long)(i / k),
                           kp_tta_name(t));
    return 0;
}

/* Predicts the held-out and test rows under every candidate, scoring each. */
static int part_predict(const tta_run *r, const kp_model *model, int p, tta_part_buf *b,
                        char *err, size_t errlen)
{
    const kp_dataset *d = r->d;
    int64_t k = d->pb.n_out, nt = d->n_test;
    int64_t *trow = malloc((size_t)(nt > 0 ? nt : 1) * sizeof *trow);
    int rc = trow ? 0 : kp_errf(err, errlen, KP_ERR_NOMEM, "part %d: out of memory", p);
    for (int64_t i = 0; i < nt && trow; i++)
        trow[i] = i;
    for (int c = 0; c < r->n_cand && rc == 0; c++) {
        float *oof = b->oof + c * b->n * k, *test = b->test + c * nt * k;
        rc = kp_model_predict_images(model, &d->images_train, b->idx, b->n, r->cand[c], oof,
                                     r->ctx->threads, err, errlen);
        if (rc == 0 && nt > 0)
            rc = kp_model_predict_images(model, &d->images_test, trow, nt, r->cand[c], test,
                                         r->ctx->threads, err, errlen);
        if (rc == 0)
            rc = check_finite(oof, b->n, (int)k, "train", r->cand[c], p, err, errlen);
        if (rc == 0)
            rc = check_finite(test, nt, (int)k, "test", r->cand[c], p, err, errlen);
        if (rc == 0)
            rc = score_rows(r, b->idx, b->n, oof, b->ybuf, &b->scores[c], err, errlen);
    }
    free(trow);
    return rc;
}

/* Writes {"NAME": score, ...} for the candidates into out (non-finite: null). */
static int scores_json(const int *t, const double *s, int n, kp_buf *out)
{
    int rc = kp_buf_adds(out, "{");
    for (int i = 0; i < n && rc == 0; i++)
        rc = isfinite(s[i]) ? kp_buf_printf(out, "%s\"%s\":%.17g", i ? "," : "",
                                            kp_tta_name(t[i]), s[i])
                            : kp_buf_printf(out, "%s\"%s\":null", i ? "," : "", kp_tta_name(t[i]));
    return rc ? rc : kp_buf_adds(out, "}");
}

/* Adds part p's tensors and metadata to w. */
static int part_fill(const tta_run *r, int p, const tta_part_buf *b, kp_stw *w)
{
    char name[64], num[32];
    int64_t k = r->d->pb.n_out, nt = r->d->n_test;
    int64_t si[1] = {b->n}, so[2] = {b->n, k}, st[2] = {nt, k};
    kp_buf sj;
    kp_buf_init(&sj, 0);
    int rc = kp_stw_add(w, "oof_index", KP_I64, 1, si, b->idx);
    for (int c = 0; c < r->n_cand && rc == 0; c++) {
        snprintf(name, sizeof name, "oof.%s", kp_tta_name(r->cand[c]));
        rc = kp_stw_add(w, name, KP_F32, 2, so, b->oof + c * b->n * k);
        snprintf(name, sizeof name, "test.%s", kp_tta_name(r->cand[c]));
        if (rc == 0)
            rc = kp_stw_add(w, name, KP_F32, 2, st, b->test + c * nt * k);
    }
    snprintf(num, sizeof num, "%d", p);
    if (rc == 0 && (rc = kp_stw_meta(w, "kpipe.artifact", "tta_part")) == 0 &&
        (rc = kp_stw_meta(w, "part", num)) == 0 && (rc = kp_stw_meta(w, "metric", r->m->name)) == 0 &&
        (rc = kp_stw_meta(w, "folds_hash", r->f->hash)) == 0 &&
        (rc = kp_stw_meta(w, "transforms", r->cand_json)) == 0 &&
        (rc = scores_json(r->cand, b->scores, r->n_cand, &sj)) == 0)
        rc = kp_stw_meta(w, "scores", kp_buf_str(&sj));
    kp_buf_free(&sj);
    return rc < 0 ? KP_ERR_NOMEM : 0;
}

/* Logs part p's score under each transform. */
static void part_log(const tta_run *r, int p, const tta_part_buf *b)
{
    FILE *log = r->ctx->log;
    char label[64];
    if (!log)
        return;
    part_label(r->f, p, label, sizeof label);
    fprintf(log, "%s: %s", label, r->m->name);
    for (int c = 0; c < r->n_cand; c++)
        fprintf(log, "%s %s %.4f", c ? "," : "", kp_tta_name(r->cand[c]), b->scores[c]);
    fprintf(log, "\n");
    fflush(log);
}

/* Part p: load the checkpoint, predict under every candidate, write the part file. */
static int run_part(const tta_run *r, int p, char *err, size_t errlen)
{
    char path[PATH_LEN];
    tta_part_buf b = {0};
    kp_model *model = NULL;
    kp_stw *w = NULL;
    int rc;
    if ((rc = kp_kfold_model_path(r->src, p, path, sizeof path)) < 0 ||
        (rc = kp_model_load(path, NULL, &model, err, errlen)) < 0 ||
        (rc = part_alloc(r, p, &b, err, errlen)) < 0)
        goto fail;
    const kp_problem *mp = kp_model_problem(model);
    if (mp->task != r->d->pb.task || mp->n_out != r->d->pb.n_out) {
        rc = kp_errf(err, errlen, KP_ERR_MISMATCH, "%s: a %s model of %d outputs, but the dataset "
                     "is %s with %d", path, kp_task_name(mp->task), mp->n_out,
                     kp_task_name(r->d->pb.task), r->d->pb.n_out);
        goto fail;
    }
    if ((rc = part_predict(r, model, p, &b, err, errlen)) < 0)
        goto fail;
    part_log(r, p, &b);
    if (!(w = kp_stw_create()) || part_fill(r, p, &b, w) < 0) {
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "part %d: could not build the part file", p);
        goto fail;
    }
    if ((rc = kp_stage_part_path(r->ctx->stage, p, path, sizeof path)) < 0)
        rc = kp_errf(err, errlen, KP_ERR_ARG, "part %d: path too long", p);
    else
        rc = kp_stw_write(w, path, err, errlen);
fail:
    kp_stw_free(w);
    kp_model_free(model);
    free(b.idx); free(b.oof); free(b.test); free(b.ybuf);
    return rc;
}

/* ---- the merge ---- */

/* One opened part file. */
typedef struct tta_in {
    kp_st *st;
    const int64_t *idx;
    int64_t n;
    const float *oof[KP_D4_COUNT], *test[KP_D4_COUNT];   /* per candidate */
} tta_in;

typedef struct tta_merge {
    tta_run *r;
    int n_parts;
    tta_in *in;
    int pos[KP_D4_COUNT];        /* transform -> candidate index */
    double *sum;                 /* n_train x n_out: merged OOF summed over repeats */
    float *oof, *tmp, *ybuf;     /* merged OOF; a part's merge; a part's y rows */
    double *part_scores;         /* of the last merge_oof with scoring */
} tta_merge;

/* Checks part p's held-out rows: in range, in its fold, each once per repeat. */
static int check_rows(const tta_merge *M, int p, const tta_in *in, uint8_t *seen,
                      char *err, size_t errlen)
{
    const kp_folds *f = M->r->f;
    const int32_t *fold = f->fold + (int64_t)(p / f->k) * f->n;
    const char *path = kp_st_path(in->st);
    for (int64_t i = 0; i < in->n; i++) {
        int64_t row = in->idx[i];
        if (row < 0 || row >= f->n)
            return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: oof_index[%lld] = %lld is not a "
                           "train row", path, (long long)i, (long long)row);
        if (fold[row] != p % f->k || seen[row])
            return kp_errf(err, errlen, KP_ERR_MISMATCH, "%s: train row %lld is %s", path,
                           (long long)row, seen[row] ? "held out twice" : "not in this fold");
        seen[row] = 1;
    }
    return 0;
}

/* Opens part p: its folds hash, transforms and tensor shapes. */
static int merge_open(tta_merge *M, int p, char *err, size_t errlen)
{
    char path[PATH_LEN], name[64];
    const tta_run *r = M->r;
    tta_in *in = &M->in[p];
    if (kp_stage_part_path(r->ctx->stage, p, path, sizeof path) < 0)
        return kp_errf(err, errlen, KP_ERR_ARG, "part %d: path too long", p);
    int rc = kp_st_open(path, &in->st, err, errlen);
    if (rc < 0)
        return rc;
    const char *h = kp_st_meta(in->st, "folds_hash"), *t = kp_st_meta(in->st, "transforms");
    if (!h || strcmp(h, r->f->hash) != 0)
        return kp_errf(err, errlen, KP_ERR_MISMATCH, "%s was made on other folds (hash %s) than "
                       "the folds artifact (hash %s)", path, h ? h : "missing", r->f->hash);
    if (!t || strcmp(t, r->cand_json) != 0)
        return kp_errf(err, errlen, KP_ERR_MISMATCH, "%s holds the transforms %s, not %s", path,
                       t ? t : "(none)", r->cand_json);
    const kp_tensor *ti = kp_st_expect(in->st, "oof_index", KP_I64, 1, NULL, err, errlen);
    if (!ti)
        return KP_ERR_FORMAT;
    in->idx = ti->data;
    in->n = ti->shape[0];
    int64_t so[2] = {in->n, r->d->pb.n_out}, st[2] = {r->d->n_test, r->d->pb.n_out};
    for (int c = 0; c < r->n_cand; c++) {
        const kp_tensor *a, *b;
        snprintf(name, sizeof name, "oof.%s", kp_tta_name(r->cand[c]));
        if (!(a = kp_st_expect(in->st, name, KP_F32, 2, so, err, errlen)))
            return KP_ERR_FORMAT;
        snprintf(name, sizeof name, "test.%s", kp_tta_name(r->cand[c]));
        if (!(b = kp_st_expect(in->st, name, KP_F32, 2, st, err, errlen)))
            return KP_ERR_FORMAT;
        in->oof[c] = a->data;
        in->test[c] = b->data;
    }
    return 0;
}

/* Opens every part and checks that each repeat holds out every row once. */
static int merge_open_all(tta_merge *M, char *err, size_t errlen)
{
    const kp_folds *f = M->r->f;
    int64_t max_n = 0;
    uint8_t *seen = calloc((size_t)f->n, 1);
    int rc = seen ? 0 : kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    for (int p = 0; p < M->n_parts && rc == 0; p++) {
        if ((rc = merge_open(M, p, err, errlen)) < 0 ||
            (rc = check_rows(M, p, &M->in[p], seen, err, errlen)) < 0)
            break;
        max_n = M->in[p].n > max_n ? M->in[p].n : max_n;
        if (p % f->k < f->k - 1)
            continue;
        for (int64_t i = 0; i < f->n && rc == 0; i++)
            if (!seen[i])
                rc = kp_errf(err, errlen, KP_ERR_MISMATCH, "stage '%s': no part of repeat %d "
                             "held out train row %lld", M->r->ctx->stage->name, p / f->k,
                             (long long)i);
        memset(seen, 0, (size_t)f->n);
    }
    free(seen);
    int64_t k = M->r->d->pb.n_out, big = max_n > M->r->d->n_test ? max_n : M->r->d->n_test;
    int64_t yw = kp_problem_y_width(&M->r->d->pb);
    if (rc == 0 && (!(M->tmp = malloc((size_t)(big > 0 ? big : 1) * k * sizeof *M->tmp)) ||
                    !(M->ybuf = malloc((size_t)(max_n > 0 ? max_n : 1) * yw * sizeof *M->ybuf))))
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    return rc;
}

/* Merges transforms sel[0..n) of every part into M->oof (averaged over
 * repeats), scoring each part into M->part_scores when score_parts. */
static int merge_oof(tta_merge *M, const int *sel, int n, int score_parts, char *err,
                     size_t errlen)
{
    const tta_run *r = M->r;
    int64_t k = r->d->pb.n_out, total = r->f->n * k;
    const float *src[KP_D4_COUNT];
    memset(M->sum, 0, (size_t)total * sizeof *M->sum);
    for (int p = 0; p < M->n_parts; p++) {
        const tta_in *in = &M->in[p];
        for (int i = 0; i < n; i++)
            src[i] = in->oof[M->pos[sel[i]]];
        kp_tta_merge(r->how, &r->d->pb, src, n, in->n, M->tmp);
        for (int64_t i = 0; i < in->n; i++)
            for (int64_t j = 0; j < k; j++)
                M->sum[in->idx[i] * k + j] += M->tmp[i * k + j];
        int rc = score_parts ? score_rows(r, in->idx, in->n, M->tmp, M->ybuf,
                                          &M->part_scores[p], err, errlen) : 0;
        if (rc < 0)
            return kp_err_prefix(err, errlen, rc, kp_st_path(in->st));
    }
    for (int64_t i = 0; i < total; i++)
        M->oof[i] = (float)(M->sum[i] / r->f->repeats);
    return 0;
}

/* kp_tta_score_fn: the OOF score of the merge of sel. */
static int score_set(void *ctx, const int *sel, int n, double *score, char *err, size_t errlen)
{
    tta_merge *M = ctx;
    const tta_run *r = M->r;
    int rc = merge_oof(M, sel, n, 0, err, errlen);
    if (rc == 0)
        rc = r->m->score(&r->d->pb, r->d->y, M->oof, r->f->n, &r->mo, score, err, errlen);
    return rc < 0 ? kp_err_prefix(err, errlen, rc, "scoring the merged out-of-fold predictions")
                  : 0;
}

/* Merges the chosen transforms of every part's test predictions, averaged in part order. */
static void merge_test(const tta_merge *M, const int *sel, int n, float *out)
{
    const tta_run *r = M->r;
    int64_t total = r->d->n_test * r->d->pb.n_out;
    const float *src[KP_D4_COUNT];
    for (int64_t i = 0; i < total; i++)
        M->sum[i] = 0;
    for (int p = 0; p < M->n_parts; p++) {
        for (int i = 0; i < n; i++)
            src[i] = M->in[p].test[M->pos[sel[i]]];
        kp_tta_merge(r->how, &r->d->pb, src, n, r->d->n_test, M->tmp);
        for (int64_t i = 0; i < total; i++)
            M->sum[i] += M->tmp[i];
    }
    for (int64_t i = 0; i < total; i++)
        out[i] = (float)(M->sum[i] / M->n_parts);
}

/* Scores every candidate alone into solo[] and logs it. */
static int solo_scores(tta_merge *M, double *solo, char *err, size_t errlen)
{
    const tta_run *r = M->r;
    for (int c = 0; c < r->n_cand; c++) {
        int rc = score_set(M, &r->cand[c], 1, &solo[c], err, errlen);
        if (rc < 0)
            return rc;
        kp_kfold_logf(r->ctx->log, "tta %s alone: oof %s %.4f\n", kp_tta_name(r->cand[c]),
                      r->m->name, solo[c]);
    }
    return 0;
}

/* Logs what auto tried and kept. */
static void log_auto(const tta_run *r, const kp_tta_auto_out *a)
{
    FILE *log = r->ctx->log;
    if (!log)
        return;
    fprintf(log, "auto (%s): %s %.4f", r->m->name, kp_tta_name(a->tried[0]), a->score[0]);
    for (int i = 1; i < a->n_tried; i++)
        fprintf(log, ", + %s %.4f %s", kp_tta_name(a->tried[i]), a->score[i],
                a->kept[i] ? "kept" : "dropped");
    fprintf(log, "\n");
    fflush(log);
}

/* Picks the transforms to merge: every candidate, or auto's selection. */
static int choose(tta_merge *M, const double *solo, int *chosen, int *n, char *err,
                  size_t errlen)
{
    const tta_run *r = M->r;
    if (r->mode != KP_TTA_AUTO) {
        memcpy(chosen, r->cand, (size_t)r->n_cand * sizeof *chosen);
        *n = r->n_cand;
        return 0;
    }
    kp_tta_auto_out a;
    int rc = kp_tta_auto(r->cand, solo, r->n_cand, r->m->greater_is_better, score_set, M, &a,
                         err, errlen);
    if (rc < 0)
        return rc;
    log_auto(r, &a);
    memcpy(chosen, a.chosen, (size_t)a.n_chosen * sizeof *chosen);
    *n = a.n_chosen;
    return 0;
}

/* Writes DIR/preds.safetensors. */
static int merge_write(const tta_merge *M, const float *test, const double *oof_score,
                       const float *thr, double with_thr, const char *chosen_json,
                       const char *scores, char *err, size_t errlen)
{
    const tta_run *r = M->r;
    char path[PATH_LEN], num[32];
    if (kp_stage_artifact_path(r->ctx->stage, path, sizeof path) < 0)
        return kp_errf(err, errlen, KP_ERR_ARG, "stage '%s': path too long", r->ctx->stage->name);
    snprintf(num, sizeof num, "%.17g", with_thr);
    const char *extra[13] = {"tta_transforms", chosen_json, "tta_scores", scores,
                             "tta_merge", kp_tta_merge_name(r->how), "tta_source", r->src->name};
    int ne = 8;
    char pp_json[128], pp_num[64];
    if (thr)
        extra[ne++] = "oof_score_thresholds", extra[ne++] = num;
    if (r->d->pb.task == KP_TASK_SEGMENTATION) {
        int rc = kp_postproc_for_preds(r->m, &r->mo, &r->d->pb, r->d->y, M->oof, r->f->n,
                                       r->ctx->threads, r->ctx->log, pp_json, pp_num, err,
                                       errlen);
        if (rc < 0)
            return rc;
        extra[ne++] = "postproc", extra[ne++] = pp_json;
        extra[ne++] = "oof_score_postproc", extra[ne++] = pp_num;
    }
    extra[ne] = NULL;
    kp_preds_out o = {
        .pb = r->d->pb, .n_train = r->f->n, .n_test = r->d->n_test, .oof = M->oof,
        .test = test, .folds_hash = r->f->hash, .metric = r->m->name,
        .model = kp_params_str(r->src->opts, "model", ""), .stage = r->ctx->stage->name,
        .classes_json = kp_st_meta(r->d->st, "classes"), .fold_scores = M->part_scores,
        .n_folds = M->n_parts, .oof_score = *oof_score, .thresholds = thr, .extra_meta = extra,
    };
    return kp_preds_write(path, &o, err, errlen);
}

/* Merges the chosen transforms, scores, searches thresholds and writes. */
static int merge_final(tta_merge *M, const int *chosen, int n, const char *scores,
                       char *err, size_t errlen)
{
    const tta_run *r = M->r;
    char chosen_json[160];
    double oof_score = 0, after = 0;
    float *thr = NULL, *test = malloc((size_t)(r->d->n_test > 0 ? r->d->n_test : 1) *
                                      r->d->pb.n_out * sizeof *test);
    int rc = test ? 0 : kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    names_json(chosen, n, chosen_json, sizeof chosen_json);
    if (rc == 0 && (rc = merge_oof(M, chosen, n, 1, err, errlen)) == 0)
        rc = r->m->score(&r->d->pb, r->d->y, M->oof, r->f->n, &r->mo, &oof_score, err, errlen);
    if (rc < 0)
        goto fail;
    kp_kfold_logf(r->ctx->log, "tta %s merged by %s: oof %s %.4f\n", chosen_json,
                  kp_tta_merge_name(r->how), r->m->name, oof_score);
    kp_kfold_log_scores(r->ctx->log, r->m->name, M->part_scores, r->f->k, r->f->repeats,
                        oof_score);
    if ((rc = kp_thresholds_for_preds(r->m, &r->mo, &r->d->pb, r->d->y, M->oof, r->f->n,
                                      r->ctx->log, &thr, &after, err, errlen)) < 0) {
        kp_err_prefix(err, errlen, rc, "searching per-label thresholds");
        goto fail;
    }
    merge_test(M, chosen, n, test);
    rc = merge_write(M, test, &oof_score, thr, after, chosen_json, scores, err, errlen);
fail:
    free(thr);
    free(test);
    return rc;
}

/* The merge task (see the top of this file). */
static int run_merge(tta_run *r, char *err, size_t errlen)
{
    int64_t k = r->d->pb.n_out, rows = r->f->n > r->d->n_test ? r->f->n : r->d->n_test;
    tta_merge M = {.r = r, .n_parts = r->f->k * r->f->repeats};
    double solo[KP_D4_COUNT];
    int chosen[KP_D4_COUNT], n_chosen = 0, rc = 0;
    kp_buf scores;
    kp_buf_init(&scores, 0);
    for (int c = 0; c < r->n_cand; c++)
        M.pos[r->cand[c]] = c;
    M.in = calloc((size_t)M.n_parts, sizeof *M.in);
    M.sum = malloc((size_t)rows * k * sizeof *M.sum);
    M.oof = malloc((size_t)r->f->n * k * sizeof *M.oof);
    M.part_scores = calloc((size_t)M.n_parts, sizeof *M.part_scores);
    if (!M.in || !M.sum || !M.oof || !M.part_scores)
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory merging %d parts", M.n_parts);
    if (rc == 0 && (rc = merge_open_all(&M, err, errlen)) == 0 &&
        (rc = solo_scores(&M, solo, err, errlen)) == 0 &&
        (rc = choose(&M, solo, chosen, &n_chosen, err, errlen)) == 0)
        rc = scores_json(r->cand, solo, r->n_cand, &scores) < 0
                 ? kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory") : 0;
    if (rc == 0)
        rc = merge_final(&M, chosen, n_chosen, kp_buf_str(&scores), err, errlen);
    for (int p = 0; M.in && p < M.n_parts; p++)
        kp_st_close(M.in[p].st);
    free(M.in); free(M.sum); free(M.oof); free(M.tmp); free(M.ybuf); free(M.part_scores);
    kp_buf_free(&scores);
    return rc;
}

/* ops->run: a part or the merge. */
static int tta_task(const kp_task_ctx *ctx, char *err, size_t errlen)
{
    tta_run r;
    int rc = tta_open(ctx, &r, err, errlen);
    if (rc == 0 && ctx->part >= r.f->k * r.f->repeats)
        rc = kp_errf(err, errlen, KP_ERR_ARG, "part %d is out of range: the folds have %d parts",
                     ctx->part, r.f->k * r.f->repeats);
    if (rc == 0)
        rc = ctx->part >= 0 ? run_part(&r, ctx->part, err, errlen) : run_merge(&r, err, errlen);
    tta_run_free(&r);
    return rc;
}

const kp_stage_ops kp_stage_tta = {
    .name = "tta",
    .doc = "test-time augmentation: an image model's folds predicted under D4 transforms, merged",
    .keys = tta_keys,
    .output = KP_ART_PREDS,
    .check = tta_check,
    .n_parts = tta_n_parts,
    .outputs = tta_outputs,
    .inputs = tta_inputs,
    .run = tta_task,
};

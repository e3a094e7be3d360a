/* kfold.c - fit one fold (a part task) and merge the folds (the final task). */
#include "kfold.h"
#include "folds.h"
#include "postproc.h"
#include "thresholds.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "../lib/err.h"
#include "../lib/rng.h"

#define PATH_LEN 4096

/* ---- small helpers ---- */

void kp_kfold_logf(FILE *log, const char *fmt, ...)
{
    if (!log)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(log, fmt, ap);
    va_end(ap);
    fflush(log);
}

/* Values per row of y: n_out for multilabel, the pixels of a mask, else 1. */
static int64_t y_width(const kp_problem *pb)
{
    return kp_problem_y_width(pb);
}

/* Copies rows idx[0..n) of src (cols wide) into a new array (caller frees). */
static float *gather_rows(const float *src, int64_t cols, const int64_t *idx, int64_t n)
{
    float *out = malloc((size_t)(n * cols > 0 ? n * cols : 1) * sizeof *out);
    if (!out)
        return NULL;
    for (int64_t i = 0; i < n; i++)
        memcpy(out + i * cols, src + idx[i] * cols, (size_t)cols * sizeof *out);
    return out;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int kp_kfold_model_path(const kp_stage *st, int part, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%s/model_part%d.safetensors", st->dir, part);
    return n < 0 || (size_t)n >= outlen ? KP_ERR_ARG : 0;
}

int kp_kfold_outputs(const kp_stage *st, int part, kp_buf *out)
{
    char a[PATH_LEN], b[PATH_LEN];
    if (part < 0) {
        if (kp_stage_artifact_path(st, a, sizeof a) < 0)
            return KP_ERR_ARG;
        return kp_buf_printf(out, "%s\n", a);
    }
    if (kp_stage_part_path(st, part, a, sizeof a) < 0 ||
        kp_kfold_model_path(st, part, b, sizeof b) < 0)
        return KP_ERR_ARG;
    return kp_buf_printf(out, "%s\n%s\n", a, b);
}

/* ---- scoring ---- */

int kp_kfold_metric(const kp_config *cfg, const kp_problem *pb, const kp_metric_ops **m,
                    kp_metric_opts *o, char *err, size_t errlen)
{
    const char *name = cfg->comp.metric ? cfg->comp.metric : "";
    *m = kp_metric_find(name);
    if (!*m)
        return kp_errf(err, errlen, KP_ERR_CONFIG, "unknown metric '%s'", name);
    if (!((*m)->tasks & KP_TASK_BIT(pb->task)))
        return kp_errf(err, errlen, KP_ERR_CONFIG, "metric '%s' does not score %s tasks",
                       name, kp_task_name(pb->task));
    *o = kp_metric_defaults();
    if (cfg->comp.beta > 0)
        o->beta = cfg->comp.beta;
    if (cfg->comp.threshold > 0)
        o->threshold = cfg->comp.threshold;
    o->empty_score = cfg->comp.empty_score;
    return 0;
}

/* Scores packed predictions (n rows) against the y rows idx (NULL = 0..n). */
static int score_packed(const kp_metric_ops *m, const kp_metric_opts *o, const kp_problem *pb,
                        const float *y, const float *pred, const int64_t *idx, int64_t n,
                        double *out, char *err, size_t errlen)
{
    if (!idx)
        return m->score(pb, y, pred, n, o, out, err, errlen);
    float *yv = gather_rows(y, y_width(pb), idx, n);
    if (!yv)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory scoring %lld rows", (long long)n);
    int rc = m->score(pb, yv, pred, n, o, out, err, errlen);
    free(yv);
    return rc;
}

int kp_kfold_score(const kp_metric_ops *m, const kp_metric_opts *o, const kp_problem *pb,
                   const float *y, const float *pred, const int64_t *idx, int64_t n,
                   double *out, char *err, size_t errlen)
{
    if (!idx)
        return m->score(pb, y, pred, n, o, out, err, errlen);
    float *pv = gather_rows(pred, pb->n_out, idx, n);
    if (!pv)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory scoring %lld rows", (long long)n);
    int rc = score_packed(m, o, pb, y, pv, idx, n, out, err, errlen);
    free(pv);
    return rc;
}

/* Collects the train rows of repeat r whose fold is (want == 1) or is not
 * (want == 0) f, ascending; *idx caller-frees. */
static int fold_rows(const kp_folds *F, int r, int f, int want, int64_t **idx, int64_t *n)
{
    const int32_t *fold = F->fold + (int64_t)r * F->n;
    int64_t c = 0;
    *idx = malloc((size_t)(F->n > 0 ? F->n : 1) * sizeof **idx);
    if (!*idx)
        return KP_ERR_NOMEM;
    for (int64_t i = 0; i < F->n; i++)
        if ((fold[i] == f) == want)
            (*idx)[c++] = i;
    *n = c;
    return 0;
}

int kp_kfold_fold_scores(const kp_metric_ops *m, const kp_metric_opts *o,
                         const kp_problem *pb, const float *y, const float *pred,
                         const kp_folds *f, double *out, char *err, size_t errlen)
{
    for (int p = 0; p < f->k * f->repeats; p++) {
        int64_t *idx, n;
        if (fold_rows(f, p / f->k, p % f->k, 1, &idx, &n) < 0)
            return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
        int rc = n > 0 ? kp_kfold_score(m, o, pb, y, pred, idx, n, &out[p], err, errlen)
                       : kp_errf(err, errlen, KP_ERR_MISMATCH, "fold %d of repeat %d is empty",
                                 p % f->k, p / f->k);
        free(idx);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Writes "fold 3/5" or "repeat 2/3 fold 3/5" for part p into buf. */
static void part_label(int p, int k, int repeats, char *buf, size_t len)
{
    if (repeats > 1)
        snprintf(buf, len, "repeat %d/%d fold %d/%d", p / k + 1, repeats, p % k + 1, k);
    else
        snprintf(buf, len, "fold %d/%d", p % k + 1, k);
}

void kp_kfold_log_scores(FILE *log, const char *metric, const double *scores, int k,
                         int repeats, double oof_score)
{
    int n = k * repeats;
    double mean = 0, var = 0;
    char label[64];
    for (int p = 0; p < n; p++) {
        part_label(p, k, repeats, label, sizeof label);
        kp_kfold_logf(log, "%s: %s %.4f\n", label, metric, scores[p]);
        mean += scores[p];
    }
    mean = n > 0 ? mean / n : 0;
    for (int p = 0; p < n; p++)
        var += (scores[p] - mean) * (scores[p] - mean);
    var = n > 0 ? var / n : 0;
    kp_kfold_logf(log, "cv %s %.4f \xc2\xb1 %.4f over %d folds; oof %s %.4f\n", metric, mean,
                  sqrt(var), n, metric, oof_score);
}

/* ---- one part ---- */

typedef struct part_data {
    int64_t *fit_idx, *val_idx;
    int64_t n_fit, n_val;
    float *X_fit, *y_fit, *X_val, *y_val;
    float *oof, *test;
} part_data;

static void part_data_free(part_data *d)
{
    free(d->fit_idx); free(d->val_idx);
    free(d->X_fit); free(d->y_fit); free(d->X_val); free(d->y_val);
    free(d->oof); free(d->test);
}

/* Splits the rows of part p into fitted and held-out copies. */
static int part_split(const kp_kfold *kf, int p, part_data *d, char *err, size_t errlen)
{
    const kp_folds *F = kf->folds;
    int r = p / F->k, f = p % F->k;
    int64_t cols = kf->X_train.cols, yw = y_width(&kf->pb), n_out = kf->pb.n_out;
    if (fold_rows(F, r, f, 0, &d->fit_idx, &d->n_fit) < 0 ||
        fold_rows(F, r, f, 1, &d->val_idx, &d->n_val) < 0)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory splitting part %d", p);
    if (d->n_val == 0 || d->n_fit == 0)
        return kp_errf(err, errlen, KP_ERR_MISMATCH,
                       "part %d: fold %d of repeat %d holds %s of the %lld train rows", p, f, r,
                       d->n_val == 0 ? "none" : "all", (long long)F->n);
    if (!kf->images_train) {   /* images are read in place through the row lists */
        d->X_fit = gather_rows(kf->X_train.data, cols, d->fit_idx, d->n_fit);
        d->X_val = gather_rows(kf->X_train.data, cols, d->val_idx, d->n_val);
    }
    d->y_fit = gather_rows(kf->y, yw, d->fit_idx, d->n_fit);
    d->y_val = gather_rows(kf->y, yw, d->val_idx, d->n_val);
    d->oof = malloc((size_t)(d->n_val * n_out) * sizeof *d->oof);
    d->test = malloc((size_t)(kf->X_test.rows * n_out > 0 ? kf->X_test.rows * n_out : 1) *
                     sizeof *d->test);
    if ((!kf->images_train && (!d->X_fit || !d->X_val)) || !d->y_fit || !d->y_val || !d->oof ||
        !d->test)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory splitting part %d", p);
    return 0;
}

/* Fails naming the first non-finite prediction (row is rows[i], or i). */
static int check_finite(const float *v, int64_t n, int n_out, const int64_t *rows,
                        const char *what, const kp_kfold *kf, int p, char *err, size_t errlen)
{
    for (int64_t i = 0; i < n * n_out; i++)
        if (!isfinite(v[i]))
            return kp_errf(err, errlen, KP_ERR_TASK,
                           "part %d: model '%s' predicted %g for %s row %lld", p,
                           kf->model->name, (double)v[i], what,
                           (long long)(rows ? rows[i / n_out] : i / n_out));
    return 0;
}

/* Fits part p's model on the rows of a feature matrix and predicts its
 * held-out rows and the test set. */
static int fit_predict_matrix(const kp_kfold *kf, int p, part_data *d, kp_model **m,
                              double *secs, char *err, size_t errlen)
{
    kp_matrix Xf = {d->X_fit, d->n_fit, kf->X_train.cols};
    kp_matrix Xv = {d->X_val, d->n_val, kf->X_train.cols};
    kp_fit_opts fo = {kp_rng_derive(kf->seed, (uint64_t)p), kf->threads, &Xv, d->y_val, kf->log,
                      &kf->X_train, NULL, 0};
    double t0 = now_seconds();
    int rc = kp_model_fit(kf->model, kf->params, &kf->pb, &Xf, d->y_fit, &fo, m, err, errlen);
    *secs = now_seconds() - t0;
    if (rc < 0)
        return rc;
    rc = kp_model_predict(*m, &Xv, d->oof, kf->threads, err, errlen);
    if (rc == 0 && kf->X_test.rows > 0)
        rc = kp_model_predict(*m, &kf->X_test, d->test, kf->threads, err, errlen);
    return rc;
}

/* Fits part p's image model on the fold's train images (by index, with the
 * held-out ones for validation) and predicts the held-out and test images. */
static int fit_predict_images(const kp_kfold *kf, int p, part_data *d, kp_model **m,
                              double *secs, char *err, size_t errlen)
{
    int64_t n_test = kf->images_test->n, *all = NULL;
    kp_fit_opts fo = {kp_rng_derive(kf->seed, (uint64_t)p), kf->threads, NULL, d->y_val, kf->log,
                      NULL, d->val_idx, d->n_val};
    double t0 = now_seconds();
    int rc = kp_model_fit_images(kf->model, kf->params, &kf->pb, kf->images_train, d->fit_idx,
                                 d->n_fit, d->y_fit, &fo, m, err, errlen);
    *secs = now_seconds() - t0;
    if (rc == 0)
        rc = kp_model_predict_images(*m, kf->images_train, d->val_idx, d->n_val, 0, d->oof,
                                     kf->threads, err, errlen);
    if (rc == 0 && n_test > 0 && !(all = malloc((size_t)n_test * sizeof *all)))
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "part %d: out of memory", p);
    for (int64_t i = 0; all && i < n_test; i++)
        all[i] = i;
    if (rc == 0 && n_test > 0)
        rc = kp_model_predict_images(*m, kf->images_test, all, n_test, 0, d->test, kf->threads,
                                     err, errlen);
    free(all);
    return rc;
}

/* Checks that the model fits what the stage has: images or a feature matrix. */
static int check_model_data(const kp_kfold *kf, char *err, size_t errlen)
{
    const char *name = kf->model->name, *stage = kf->stage->name;
    if (kf->images_train && (!kf->images_test || kf->images_test->n != kf->X_test.rows))
        return kp_errf(err, errlen, KP_ERR_INTERNAL, "stage '%s': test images do not match the "
                       "%lld test rows", stage, (long long)kf->X_test.rows);
    if (kf->images_train && !kf->model->fit_images)
        return kp_errf(err, errlen, KP_ERR_CONFIG, "stage '%s': model '%s' fits a feature matrix "
                       "but the dataset holds images: use an image model such as cnn", stage, name);
    if (!kf->images_train && !kf->model->fit)
        return kp_errf(err, errlen, KP_ERR_CONFIG, "stage '%s': model '%s' fits images but the "
                       "stage has a feature matrix: give it a dataset of type images", stage,
                       name);
    return 0;
}

/* Fits part p's model and predicts its held-out rows and the test set. */
static int part_fit_predict(const kp_kfold *kf, int p, part_data *d, kp_model **m,
                            double *secs, char *err, size_t errlen)
{
    int rc = kf->images_train ? fit_predict_images(kf, p, d, m, secs, err, errlen)
                              : fit_predict_matrix(kf, p, d, m, secs, err, errlen);
    if (rc == 0)
        rc = check_finite(d->oof, d->n_val, kf->pb.n_out, d->val_idx, "train", kf, p, err, errlen);
    if (rc == 0)
        rc = check_finite(d->test, kf->X_test.rows, kf->pb.n_out, NULL, "test", kf, p, err, errlen);
    return rc;
}

/* Writes part p's file (tensors and metadata, see kfold.h). */
static int part_write(const kp_kfold *kf, int p, const part_data *d, double score,
                      char *err, size_t errlen)
{
    char path[PATH_LEN], num[64];
    int64_t n_out = kf->pb.n_out;
    int64_t si[1] = {d->n_val}, so[2] = {d->n_val, n_out}, st[2] = {kf->X_test.rows, n_out};
    kp_stw *w = kp_stw_create();
    int rc = w ? 0 : KP_ERR_NOMEM;
    if (rc == 0)
        rc = kp_stw_add(w, "oof_index", KP_I64, 1, si, d->val_idx);
    if (rc == 0)
        rc = kp_stw_add(w, "oof", KP_F32, 2, so, d->oof);
    if (rc == 0)
        rc = kp_stw_add(w, "test", KP_F32, 2, st, d->test);
    snprintf(num, sizeof num, "%.17g", score);
    if (rc == 0)
        rc = kp_stw_meta(w, "score", num);
    snprintf(num, sizeof num, "%d", p);
    if (rc == 0)
        rc = kp_stw_meta(w, "part", num);
    if (rc == 0)
        rc = kp_stw_meta(w, "kpipe.artifact", "part");
    if (rc == 0)
        rc = kp_stw_meta(w, "metric", kf->metric->name);
    if (rc == 0)
        rc = kp_stw_meta(w, "folds_hash", kf->folds->hash);
    if (rc < 0)
        rc = kp_errf(err, errlen, rc, "part %d: could not build the part file", p);
    else if (kp_stage_part_path(kf->stage, p, path, sizeof path) < 0)
        rc = kp_errf(err, errlen, KP_ERR_ARG, "part %d: path too long", p);
    else
        rc = kp_stw_write(w, path, err, errlen);
    kp_stw_free(w);
    return rc;
}

int kp_kfold_part(const kp_kfold *kf, int part, char *err, size_t errlen)
{
    part_data d = {0};
    kp_model *m = NULL;
    double secs = 0, score = 0;
    char path[PATH_LEN], label[64];
    int n_parts = kf->folds->k * kf->folds->repeats, rc;
    if (part < 0 || part >= n_parts)
        return kp_errf(err, errlen, KP_ERR_ARG, "part %d is out of range: the folds have %d parts",
                       part, n_parts);
    if ((rc = check_model_data(kf, err, errlen)) < 0 ||
        (rc = part_split(kf, part, &d, err, errlen)) < 0 ||
        (rc = part_fit_predict(kf, part, &d, &m, &secs, err, errlen)) < 0)
        goto fail;
    rc = score_packed(kf->metric, &kf->mopts, &kf->pb, d.y_val, d.oof, NULL, d.n_val, &score,
                      err, errlen);
    if (rc < 0) {
        kp_err_prefix(err, errlen, rc, "scoring the held-out rows");
        goto fail;
    }
    part_label(part, kf->folds->k, kf->folds->repeats, label, sizeof label);
    kp_kfold_logf(kf->log, "%s: %s %.4f (fit %.3fs)\n", label, kf->metric->name, score, secs);
    if ((rc = kp_kfold_model_path(kf->stage, part, path, sizeof path)) < 0) {
        rc = kp_errf(err, errlen, rc, "part %d: checkpoint path too long", part);
        goto fail;
    }
    if ((rc = kp_model_save(m, path, err, errlen)) < 0 ||
        (rc = part_write(kf, part, &d, score, err, errlen)) < 0)
        goto fail;
fail:
    kp_model_free(m);
    part_data_free(&d);
    return rc;
}

/* ---- the merge ---- */

typedef struct merge_acc {
    double *oof, *test;     /* sums */
    uint8_t *seen;          /* rows held out so far in the current repeat */
    double *scores;         /* one per part */
} merge_acc;

/* Checks part p's held-out rows: in range, in fold f, each once per repeat. */
static int merge_check_rows(const kp_kfold *kf, int p, const int64_t *idx, int64_t n,
                            merge_acc *a, const char *path, char *err, size_t errlen)
{
    const kp_folds *F = kf->folds;
    const int32_t *fold = F->fold + (int64_t)(p / F->k) * F->n;
    for (int64_t i = 0; i < n; i++) {
        int64_t row = idx[i];
        if (row < 0 || row >= F->n)
            return kp_errf(err, errlen, KP_ERR_FORMAT,
                           "%s: oof_index[%lld] = %lld is not a train row", path, (long long)i,
                           (long long)row);
        if (fold[row] != p % F->k)
            return kp_errf(err, errlen, KP_ERR_MISMATCH,
                           "%s: train row %lld is held out but is in fold %d, not %d", path,
                           (long long)row, fold[row], p % F->k);
        if (a->seen[row])
            return kp_errf(err, errlen, KP_ERR_MISMATCH, "%s: train row %lld is held out twice",
                           path, (long long)row);
        a->seen[row] = 1;
    }
    return 0;
}

/* Opens part p's file and checks its folds hash and tensor shapes. */
static int merge_open(const kp_kfold *kf, int p, kp_st **st, const kp_tensor **ti,
                      const kp_tensor **to, const kp_tensor **tt, char *path, char *err,
                      size_t errlen)
{
    int rc = kp_stage_part_path(kf->stage, p, path, PATH_LEN);
    if (rc < 0)
        return kp_errf(err, errlen, KP_ERR_ARG, "part %d: path too long", p);
    if ((rc = kp_st_open(path, st, err, errlen)) < 0)
        return rc;
    const char *h = kp_st_meta(*st, "folds_hash");
    if (!h || strcmp(h, kf->folds->hash) != 0)
        return kp_errf(err, errlen, KP_ERR_MISMATCH,
                       "%s was made on other folds (hash %s) than the folds artifact (hash %s)",
                       path, h ? h : "missing", kf->folds->hash);
    *ti = kp_st_expect(*st, "oof_index", KP_I64, 1, NULL, err, errlen);
    if (!*ti)
        return KP_ERR_FORMAT;
    int64_t so[2] = {(*ti)->shape[0], kf->pb.n_out}, st_[2] = {kf->X_test.rows, kf->pb.n_out};
    *to = kp_st_expect(*st, "oof", KP_F32, 2, so, err, errlen);
    *tt = *to ? kp_st_expect(*st, "test", KP_F32, 2, st_, err, errlen) : NULL;
    return *tt ? 0 : KP_ERR_FORMAT;
}

/* Adds part p into the sums and scores it. */
static int merge_part(const kp_kfold *kf, int p, merge_acc *a, char *err, size_t errlen)
{
    char path[PATH_LEN];
    kp_st *st = NULL;
    const kp_tensor *ti = NULL, *to = NULL, *tt = NULL;
    int64_t n_out = kf->pb.n_out;
    int rc = merge_open(kf, p, &st, &ti, &to, &tt, path, err, errlen);
    if (rc < 0)
        goto fail;
    const int64_t *idx = ti->data;
    const float *oof = to->data, *test = tt->data;
    if ((rc = merge_check_rows(kf, p, idx, ti->shape[0], a, path, err, errlen)) < 0)
        goto fail;
    for (int64_t i = 0; i < ti->shape[0]; i++)
        for (int64_t j = 0; j < n_out; j++)
            a->oof[idx[i] * n_out + j] += oof[i * n_out + j];
    for (int64_t i = 0; i < kf->X_test.rows * n_out; i++)
        a->test[i] += test[i];
    rc = score_packed(kf->metric, &kf->mopts, &kf->pb, kf->y, oof, idx, ti->shape[0],
                      &a->scores[p], err, errlen);
    if (rc < 0)
        kp_err_prefix(err, errlen, rc, path);
fail:
    kp_st_close(st);
    return rc;
}

/* Checks that repeat r held out every train row, then clears the marks. */
static int merge_end_repeat(const kp_kfold *kf, int r, merge_acc *a, char *err, size_t errlen)
{
    for (int64_t i = 0; i < kf->folds->n; i++)
        if (!a->seen[i])
            return kp_errf(err, errlen, KP_ERR_MISMATCH,
                           "stage '%s': no part of repeat %d held out train row %lld",
                           kf->stage->name, r, (long long)i);
    memset(a->seen, 0, (size_t)kf->folds->n);
    return 0;
}

/* Turns the sums into float means. */
static void means(const double *sum, int64_t n, double div, float *out)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = (float)(sum[i] / div);
}

/* Scores the merged OOF, logs and writes DIR/preds.safetensors. */
static int merge_write(const kp_kfold *kf, const char *classes_json, const float *oof,
                       const float *test, const double *scores, char *err, size_t errlen)
{
    char path[PATH_LEN];
    double oof_score = 0;
    const kp_folds *F = kf->folds;
    int rc = score_packed(kf->metric, &kf->mopts, &kf->pb, kf->y, oof, NULL, F->n, &oof_score,
                          err, errlen);
    if (rc < 0)
        return kp_err_prefix(err, errlen, rc, "scoring the merged out-of-fold predictions");
    kp_kfold_log_scores(kf->log, kf->metric->name, scores, F->k, F->repeats, oof_score);
    float *thr = NULL;
    double with_thr = 0;
    char num[64];
    if ((rc = kp_thresholds_for_preds(kf->metric, &kf->mopts, &kf->pb, kf->y, oof, F->n,
                                      kf->log, &thr, &with_thr, err, errlen)) < 0)
        return kp_err_prefix(err, errlen, rc, "searching per-label thresholds");
    snprintf(num, sizeof num, "%.17g", with_thr);
    const char *extra[] = {"oof_score_thresholds", num, NULL};
    char pp_json[128], pp_num[64];
    const char *pp_extra[] = {"postproc", pp_json, "oof_score_postproc", pp_num, NULL};
    if (kf->pb.task == KP_TASK_SEGMENTATION &&
        (rc = kp_postproc_for_preds(kf->metric, &kf->mopts, &kf->pb, kf->y, oof, F->n,
                                    kf->threads, kf->log, pp_json, pp_num, err, errlen)) < 0)
        return rc;
    if (kp_stage_artifact_path(kf->stage, path, sizeof path) < 0)
        rc = kp_errf(err, errlen, KP_ERR_ARG, "stage '%s': path too long", kf->stage->name);
    kp_preds_out o = {
        .pb = kf->pb, .n_train = F->n, .n_test = kf->X_test.rows, .oof = oof, .test = test,
        .folds_hash = F->hash, .metric = kf->metric->name, .model = kf->model->name,
        .stage = kf->stage->name, .classes_json = classes_json, .fold_scores = scores,
        .n_folds = F->k * F->repeats, .oof_score = oof_score, .thresholds = thr,
        .extra_meta = thr ? extra : kf->pb.task == KP_TASK_SEGMENTATION ? pp_extra : NULL,
    };
    if (rc == 0)
        rc = kp_preds_write(path, &o, err, errlen);
    free(thr);
    return rc;
}

int kp_kfold_merge(const kp_kfold *kf, const char *classes_json, char *err, size_t errlen)
{
    const kp_folds *F = kf->folds;
    int n_parts = F->k * F->repeats, rc = 0;
    int64_t n_oof = F->n * kf->pb.n_out, n_test = kf->X_test.rows * kf->pb.n_out;
    merge_acc a = {
        calloc((size_t)(n_oof > 0 ? n_oof : 1), sizeof(double)),
        calloc((size_t)(n_test > 0 ? n_test : 1), sizeof(double)),
        calloc((size_t)(F->n > 0 ? F->n : 1), 1),
        calloc((size_t)n_parts, sizeof(double)),
    };
    float *oof = malloc((size_t)(n_oof > 0 ? n_oof : 1) * sizeof *oof);
    float *test = malloc((size_t)(n_test > 0 ? n_test : 1) * sizeof *test);
    if (!a.oof || !a.test || !a.seen || !a.scores || !oof || !test) {
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory merging %d parts", n_parts);
        goto fail;
    }
    for (int p = 0; p < n_parts; p++) {
        if ((rc = merge_part(kf, p, &a, err, errlen)) < 0)
            goto fail;
        if (p % F->k == F->k - 1 && (rc = merge_end_repeat(kf, p / F->k, &a, err, errlen)) < 0)
            goto fail;
    }
    means(a.oof, n_oof, F->repeats, oof);
    means(a.test, n_test, n_parts, test);
    rc = merge_write(kf, classes_json, oof, test, a.scores, err, errlen);
fail:
    free(a.oof); free(a.test); free(a.seen); free(a.scores);
    free(oof); free(test);
    return rc;
}

/* ---- config checks ---- */

int kp_kfold_count(const kp_stage *st, const kp_config *cfg)
{
    int fi = kp_stage_need_of_kind(st, cfg, KP_ART_FOLDS);
    kp_fold_spec s;
    if (fi < 0 || kp_folds_resolve(cfg->stages[fi].opts, &cfg->comp, &s, NULL, 0) < 0)
        return 0;   /* the folds stage's own check reports why */
    return s.k * s.repeats;
}

static const char *stage_where(const kp_stage *st)
{
    return st->base ? st->base : st->name;
}

/* Counts st's needs by kind; *other gets the first need of another kind (or -1). */
static void count_needs(const kp_stage *st, const kp_config *cfg, int *n_data, int *n_folds,
                        int *n_preds, int *other)
{
    *n_data = *n_folds = *n_preds = 0;
    *other = -1;
    for (int i = 0; i < st->n_needs; i++) {
        const kp_stage *n = &cfg->stages[st->needs[i]];
        kp_artifact_kind k = n->ops ? n->ops->output : KP_ART_NONE;
        if (k == KP_ART_DATASET)
            (*n_data)++;
        else if (k == KP_ART_FOLDS)
            (*n_folds)++;
        else if (k == KP_ART_PREDS)
            (*n_preds)++;
        else if (*other < 0)
            *other = st->needs[i];
    }
}

int kp_kfold_check_needs(const kp_stage *st, const kp_config *cfg, int min_preds,
                         int max_preds, char *err, size_t errlen)
{
    int nd, nf, np, other;
    count_needs(st, cfg, &nd, &nf, &np, &other);
    const char *f = cfg->path, *w = stage_where(st), *t = st->type ? st->type : "?";
    if (nd != 1)
        return kp_errf(err, errlen, KP_ERR_CONFIG,
                       "%s:%d:%d: stages.%s.needs: %s stage '%s' needs exactly one dataset stage "
                       "(type preprocess or images), found %d", f, st->line, st->col, w, t,
                       st->name, nd);
    if (nf != 1)
        return kp_errf(err, errlen, KP_ERR_CONFIG,
                       "%s:%d:%d: stages.%s.needs: %s stage '%s' needs exactly one folds stage "
                       "(type folds), found %d", f, st->line, st->col, w, t, st->name, nf);
    if (np < min_preds)
        return kp_errf(err, errlen, KP_ERR_CONFIG,
                       "%s:%d:%d: stages.%s.needs: %s stage '%s' needs at least %d predictions "
                       "stage (type train or stack), found %d", f, st->line, st->col, w, t,
                       st->name, min_preds, np);
    if (max_preds >= 0 && np > max_preds)
        return kp_errf(err, errlen, KP_ERR_CONFIG,
                       "%s:%d:%d: stages.%s.needs: %s stage '%s' cannot use predictions stages "
                       "(found %d)", f, st->line, st->col, w, t, st->name, np);
    if (other >= 0)
        return kp_errf(err, errlen, KP_ERR_CONFIG,
                       "%s:%d:%d: stages.%s.needs: %s stage '%s' cannot use stage '%s' (type %s)",
                       f, st->line, st->col, w, t, st->name, cfg->stages[other].name,
                       cfg->stages[other].type ? cfg->stages[other].type : "?");
    return 0;
}

/* Reports an unknown model with the nearest registered name suggested. */
static int unknown_model(const kp_stage *st, const kp_config *cfg, const char *key,
                         const char *name, int line, int col, char *err, size_t errlen)
{
    enum { MAX_MODELS = 256 };
    const char *names[MAX_MODELS];
    int n = kp_model_count() < MAX_MODELS ? kp_model_count() : MAX_MODELS;
    for (int i = 0; i < n; i++)
        names[i] = kp_model_at(i)->name;
    const char *s = kp_suggest(name, names, n);
    return kp_errf(err, errlen, KP_ERR_CONFIG, "%s:%d:%d: stages.%s.%s: unknown model '%s'%s%s%s",
                   cfg->path, line, col, stage_where(st), key, name, s ? " (did you mean '" : "",
                   s ? s : "", s ? "'?)" : " (kpipe models lists them)");
}

/* Checks that model m fits what st gives it: the images of a dataset stage of
 * type images when st stacks no predictions, else a feature matrix. */
static int check_model_input(const kp_stage *st, const kp_config *cfg, const char *key,
                             const kp_model_ops *m, int line, int col, char *err, size_t errlen)
{
    int nd, nf, np, other;
    int di = kp_stage_need_of_kind(st, cfg, KP_ART_DATASET);
    const kp_stage *ds = di >= 0 ? &cfg->stages[di] : NULL;
    count_needs(st, cfg, &nd, &nf, &np, &other);
    int images = ds && ds->ops && strcmp(ds->ops->name, "images") == 0 && np == 0;
    if (images && !m->fit_images)
        return kp_errf(err, errlen, KP_ERR_CONFIG,
                       "%s:%d:%d: stages.%s.%s: model '%s' fits a feature matrix, but dataset "
                       "stage '%s' (type images) holds images: use an image model (cnn)",
                       cfg->path, line, col, stage_where(st), key, m->name, ds->name);
    if (!images && !m->fit)
        return kp_errf(err, errlen, KP_ERR_CONFIG,
                       "%s:%d:%d: stages.%s.%s: model '%s' fits images, but stage '%s' has a "
                       "feature matrix to fit on (%s)", cfg->path, line, col, stage_where(st),
                       key, m->name, st->name,
                       np > 0 ? "the predictions it stacks" : "use a dataset stage of type images");
    return 0;
}

int kp_kfold_check_model(kp_stage *st, const kp_config *cfg, const char *key,
                         const char *name, char *err, size_t errlen)
{
    int line = 0, col = 0;
    char where[512];
    if (st->opts)
        kp_params_where(st->opts, key, &line, &col);
    int defaulted = line == 0;   /* the value is the keyspec's default */
    if (line == 0)
        line = st->line, col = st->col;
    if (!name || !*name)
        return kp_errf(err, errlen, KP_ERR_CONFIG, "%s:%d:%d: stages.%s.%s: missing (required)",
                       cfg->path, line, col, stage_where(st), key);
    const kp_model_ops *m = kp_model_find(name);
    if (!m)
        return unknown_model(st, cfg, key, name, line, col, err, errlen);
    if (!(m->tasks & KP_TASK_BIT(cfg->comp.task)))
        return kp_errf(err, errlen, KP_ERR_CONFIG,
                       "%s:%d:%d: stages.%s.%s: %smodel '%s' does not support %s tasks%s",
                       cfg->path, line, col, stage_where(st), key, defaulted ? "the default " : "",
                       name, kp_task_name(cfg->comp.task),
                       defaulted ? " (set the key to one that does)" : "");
    int rc = check_model_input(st, cfg, key, m, line, col, err, errlen);
    if (rc < 0)
        return rc;
    if (!st->params && !(st->params = kp_params_create()))
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    snprintf(where, sizeof where, "stages.%s.params", stage_where(st));
    rc = kp_params_validate(st->params, m->params, cfg->path, where, err, errlen);
    if (rc == 0 && m->check)
        rc = m->check(st->params, cfg->path, where, err, errlen);
    return rc;
}

/* ---- inputs at run time ---- */

/* Opens the artifact of the stage st needs of kind `kind` with `open`. */
static int open_need(const kp_task_ctx *ctx, kp_artifact_kind kind, const char *what,
                     char *path, int *index, char *err, size_t errlen)
{
    *index = kp_stage_need_of_kind(ctx->stage, ctx->cfg, kind);
    if (*index < 0)
        return kp_errf(err, errlen, KP_ERR_CONFIG, "stage '%s' needs no %s stage",
                       ctx->stage->name, what);
    if (kp_stage_artifact_path(&ctx->cfg->stages[*index], path, PATH_LEN) < 0)
        return kp_errf(err, errlen, KP_ERR_ARG, "stage '%s': path too long", ctx->stage->name);
    return 0;
}

int kp_kfold_open_inputs(const kp_task_ctx *ctx, kp_dataset **d, kp_folds **f,
                         char *err, size_t errlen)
{
    char path[PATH_LEN];
    int di, fi, rc;
    *d = NULL;
    *f = NULL;
    if ((rc = open_need(ctx, KP_ART_DATASET, "dataset", path, &di, err, errlen)) < 0 ||
        (rc = kp_dataset_open(path, d, err, errlen)) < 0 ||
        (rc = open_need(ctx, KP_ART_FOLDS, "folds", path, &fi, err, errlen)) < 0 ||
        (rc = kp_folds_open(path, f, err, errlen)) < 0)
        goto fail;
    if ((*f)->n != (*d)->n_train) {
        rc = kp_errf(err, errlen, KP_ERR_MISMATCH,
                     "folds '%s' have %lld rows but dataset '%s' has %lld train rows",
                     ctx->cfg->stages[fi].name, (long long)(*f)->n, ctx->cfg->stages[di].name,
                     (long long)(*d)->n_train);
        goto fail;
    }
    if (ctx->n_parts > 0 && (*f)->k * (*f)->repeats != ctx->n_parts) {
        rc = kp_errf(err, errlen, KP_ERR_MISMATCH,
                     "folds '%s' have %d folds x %d repeats but stage '%s' has %d parts",
                     ctx->cfg->stages[fi].name, (*f)->k, (*f)->repeats, ctx->stage->name,
                     ctx->n_parts);
        goto fail;
    }
    return 0;
fail:
    kp_dataset_close(*d);
    kp_folds_close(*f);
    *d = NULL;
    *f = NULL;
    return rc;
}

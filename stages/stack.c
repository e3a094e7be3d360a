/* stack.c - the stack stage: a level-2 model or a blend over train stages.
 *
 *   stack:
 *     type: stack
 *     needs: [prep, folds, lr, ridge]     # one dataset, one folds, >= 1 preds
 *     method: model          # model | mean | rank_mean | weights
 *     model: logistic        # method model: the level-2 model (params: as usual)
 *     transform: logit       # none | logit: probabilities enter as logit(clip(p))
 *     use_features: false    # method model: append the dataset's features
 *     seed: 0                # method model: part p fits with kp_rng_derive(seed, p)
 *     rounds: 100            # method weights: rounds of greedy selection
 *
 * Every input's folds hash must equal the folds artifact's: out-of-fold
 * predictions made on other folds leak the target into the level-2 fit.
 *
 * method model runs k-fold (kfold.h) on the level-1 matrix: the inputs' OOF
 * predictions side by side for train, their test predictions for test
 * (logit-transformed for binary, multiclass and multilabel tasks unless
 * transform: none; regression values go in as they are).
 * The blends are one task on the raw predictions (transform is not used):
 *   mean       the average of the inputs;
 *   rank_mean  per output column, the average of normalised ranks
 *              rank / (n - 1) (0-based, ties get their average rank; 0.5
 *              when n = 1), computed separately on the OOF and on the test;
 *   weights    non-negative weights summing to 1 fitted on the OOF to
 *              optimise the competition metric itself, by greedy forward
 *              selection with replacement (Caruana et al. 2004): each round
 *              adds the input that gives the best blend (ties: the first in
 *              needs order), and the weights are the selection counts of the
 *              best round.  Round 1 picks the best single input, so the blend
 *              never scores worse than it on the OOF.  Deterministic: a
 *              coordinate search on the simplex with step 1/rounds.
 * A blend's preds.safetensors has the fold scores of the blended OOF per fold
 * and, for weights, metadata "weights": {"stage": w, ...} in needs order.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "kfold.h"
#include "postproc.h"
#include "thresholds.h"
#include "../lib/err.h"

#define PATH_LEN 4096

enum { M_MODEL, M_MEAN, M_RANK_MEAN, M_WEIGHTS };
static const char *const method_names[] = {"model", "mean", "rank_mean", "weights"};

static const kp_keyspec stack_keys[] = {
    {"method", KP_PT_ENUM, "model", "model|mean|rank_mean|weights", 0, 0,
     "a level-2 model fitted k-fold, or a blend"},
    {"model", KP_PT_STRING, "logistic", NULL, 0, 0, "method model: the level-2 model"},
    {"transform", KP_PT_ENUM, "logit", "none|logit", 0, 0,
     "method model: level-1 probabilities as logit(clip(p, 1e-6, 1-1e-6))"},
    {"use_features", KP_PT_BOOL, "false", NULL, 0, 0,
     "method model: append the dataset's features to the level-1 matrix"},
    {"seed", KP_PT_INT, "0", NULL, 0, 0, "method model: part p fits with kp_rng_derive(seed, p)"},
    {"rounds", KP_PT_INT, "100", NULL, 1, 100000, "method weights: rounds of greedy selection"},
    {NULL, 0, NULL, NULL, 0, 0, NULL},
};

static int stack_method(const kp_stage *st)
{
    const char *m = kp_params_str(st->opts, "method", "model");
    for (int i = 0; i < 4; i++)
        if (strcmp(m, method_names[i]) == 0)
            return i;
    return M_MODEL;
}

/* ---- config ---- */

static int stack_check(kp_stage *st, const kp_config *cfg, char *err, size_t errlen)
{
    int rc = kp_kfold_check_needs(st, cfg, 1, -1, err, errlen);
    if (rc < 0)
        return rc;
    int method = stack_method(st);
    if (method == M_MODEL)
        return kp_kfold_check_model(st, cfg, "model", kp_params_str(st->opts, "model", NULL),
                                    err, errlen);
    if (st->params && kp_params_count(st->params) > 0) {
        int line = st->line, col = st->col;
        kp_params_where(st->params, kp_params_key(st->params, 0), &line, &col);
        return kp_errf(err, errlen, KP_ERR_CONFIG,
                       "%s:%d:%d: stages.%s.params: method %s takes no model params "
                       "(only method: model does)", cfg->path, line, col,
                       st->base ? st->base : st->name, method_names[method]);
    }
    return 0;
}

static int stack_n_parts(const kp_stage *st, const kp_config *cfg)
{
    return stack_method(st) == M_MODEL ? kp_kfold_count(st, cfg) : 0;
}

static int stack_outputs(const kp_stage *st, const kp_config *cfg, int part, kp_buf *out)
{
    (void)cfg;
    return kp_kfold_outputs(st, part, out);
}

/* ---- inputs ---- */

typedef struct stack_in {
    kp_dataset *d;
    kp_folds *f;
    kp_preds **p;        /* the prediction inputs, in needs order */
    const kp_stage **ps; /* their stages */
    int n;
} stack_in;

static void stack_in_free(stack_in *in)
{
    for (int i = 0; i < in->n; i++)
        kp_preds_close(in->p[i]);
    free(in->p);
    free(in->ps);
    kp_dataset_close(in->d);
    kp_folds_close(in->f);
}

/* Fails naming the first non-finite value of an input. */
static int check_finite(const kp_stage *ps, const char *what, const float *v, int64_t rows,
                        int n_out, char *err, size_t errlen)
{
    for (int64_t i = 0; i < rows * n_out; i++)
        if (!isfinite(v[i]))
            return kp_errf(err, errlen, KP_ERR_FORMAT,
                           "predictions of '%s' hold %g at %s row %lld", ps->name, (double)v[i],
                           what, (long long)(i / n_out));
    return 0;
}

/* Checks one input against the folds and the dataset. */
static int check_input(const kp_task_ctx *ctx, const stack_in *in, const kp_stage *ps,
                       const kp_preds *p, char *err, size_t errlen)
{
    const kp_dataset *d = in->d;
    int fi = kp_stage_need_of_kind(ctx->stage, ctx->cfg, KP_ART_FOLDS);
    if (strcmp(p->folds_hash, in->f->hash) != 0)
        return kp_errf(err, errlen, KP_ERR_MISMATCH,
                       "%s: predictions of '%s' were made on other folds (hash %s) than '%s' "
                       "(hash %s)", ctx->stage->name, ps->name, p->folds_hash,
                       ctx->cfg->stages[fi].name, in->f->hash);
    if (p->pb.task != d->pb.task || p->pb.n_out != d->pb.n_out || p->n_train != d->n_train ||
        p->n_test != d->n_test)
        return kp_errf(err, errlen, KP_ERR_MISMATCH,
                       "%s: predictions of '%s' (%s, %d outputs, %lld train and %lld test rows) "
                       "do not fit the dataset (%s, %d outputs, %lld and %lld)", ctx->stage->name,
                       ps->name, kp_task_name(p->pb.task), p->pb.n_out, (long long)p->n_train,
                       (long long)p->n_test, kp_task_name(d->pb.task), d->pb.n_out,
                       (long long)d->n_train, (long long)d->n_test);
    int rc = check_finite(ps, "train", p->oof, p->n_train, p->pb.n_out, err, errlen);
    return rc ? rc : check_finite(ps, "test", p->test, p->n_test, p->pb.n_out, err, errlen);
}

/* Opens the dataset, the folds and every prediction input, and checks them. */
static int stack_open(const kp_task_ctx *ctx, stack_in *in, char *err, size_t errlen)
{
    char path[PATH_LEN];
    const kp_stage *st = ctx->stage;
    int rc = kp_kfold_open_inputs(ctx, &in->d, &in->f, err, errlen);
    if (rc < 0)
        return rc;
    in->p = calloc((size_t)st->n_needs + 1, sizeof *in->p);
    in->ps = calloc((size_t)st->n_needs + 1, sizeof *in->ps);
    if (!in->p || !in->ps)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    for (int i = 0; i < st->n_needs; i++) {
        const kp_stage *ps = &ctx->cfg->stages[st->needs[i]];
        if (!ps->ops || ps->ops->output != KP_ART_PREDS)
            continue;
        if (kp_stage_artifact_path(ps, path, sizeof path) < 0)
            return kp_errf(err, errlen, KP_ERR_ARG, "stage '%s': path too long", ps->name);
        if ((rc = kp_preds_open(path, &in->p[in->n], err, errlen)) < 0)
            return rc;
        in->ps[in->n++] = ps;
        if ((rc = check_input(ctx, in, ps, in->p[in->n - 1], err, errlen)) < 0)
            return rc;
    }
    return in->n > 0 ? 0 : kp_errf(err, errlen, KP_ERR_CONFIG,
                                   "stage '%s' needs no predictions stage", st->name);
}

/* ---- method model ---- */

static float level1_value(float v, int logit)
{
    if (!logit)
        return v;
    double p = v < 1e-6 ? 1e-6 : v > 1 - 1e-6 ? 1 - 1e-6 : v;
    return (float)log(p / (1 - p));
}

/* Fills rows x cols: the inputs' predictions side by side, then the features. */
static void level1_fill(const stack_in *in, int test, int logit, int use_features, float *X,
                        int64_t cols)
{
    int64_t rows = test ? in->d->n_test : in->d->n_train, n_feat = in->d->n_feat;
    const float *feat = test ? in->d->X_test : in->d->X_train;
    for (int64_t i = 0; i < rows; i++) {
        float *row = X + i * cols;
        for (int j = 0; j < in->n; j++) {
            int n_out = in->p[j]->pb.n_out;
            const float *src = (test ? in->p[j]->test : in->p[j]->oof) + i * n_out;
            for (int o = 0; o < n_out; o++)
                *row++ = level1_value(src[o], logit);
        }
        if (use_features)
            memcpy(row, feat + i * n_feat, (size_t)n_feat * sizeof *row);
    }
}

static int run_model(const kp_task_ctx *ctx, const stack_in *in, char *err, size_t errlen)
{
    const kp_stage *st = ctx->stage;
    const kp_dataset *d = in->d;
    int use_features = kp_params_bool(st->opts, "use_features", 0);
    int logit = strcmp(kp_params_str(st->opts, "transform", "logit"), "logit") == 0 &&
                d->pb.task != KP_TASK_REGRESSION;
    int64_t cols = (int64_t)in->n * d->pb.n_out + (use_features ? d->n_feat : 0);
    const char *name = kp_params_str(st->opts, "model", "logistic");
    float *Xtr = malloc((size_t)(d->n_train * cols > 0 ? d->n_train * cols : 1) * sizeof *Xtr);
    float *Xte = malloc((size_t)(d->n_test * cols > 0 ? d->n_test * cols : 1) * sizeof *Xte);
    kp_kfold kf = {
        .stage = st, .model = kp_model_find(name), .params = st->params, .pb = d->pb,
        .X_train = {Xtr, d->n_train, cols}, .X_test = {Xte, d->n_test, cols}, .y = d->y,
        .folds = in->f, .seed = (uint64_t)kp_params_int(st->opts, "seed", 0),
        .threads = ctx->threads, .log = ctx->log,
    };
    int rc = 0;
    if (!Xtr || !Xte)
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory for the level-1 matrix");
    else if (!kf.model)
        rc = kp_errf(err, errlen, KP_ERR_CONFIG, "unknown model '%s'", name);
    else
        rc = kp_kfold_metric(ctx->cfg, &kf.pb, &kf.metric, &kf.mopts, err, errlen);
    if (rc == 0) {
        level1_fill(in, 0, logit, use_features, Xtr, cols);
        level1_fill(in, 1, logit, use_features, Xte, cols);
        rc = ctx->part >= 0 ? kp_kfold_part(&kf, ctx->part, err, errlen)
                            : kp_kfold_merge(&kf, kp_st_meta(d->st, "classes"), err, errlen);
    }
    free(Xtr);
    free(Xte);
    return rc;
}

/* ---- blends ---- */

/* out = sum_j w[j] * input_j (OOF or test), summed in input order. */
static void blend_apply(const stack_in *in, const double *w, int test, float *out)
{
    int64_t n = (test ? in->d->n_test : in->d->n_train) * in->d->pb.n_out;
    for (int64_t i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < in->n; j++)
            s += w[j] * (test ? in->p[j]->test : in->p[j]->oof)[i];
        out[i] = (float)s;
    }
}

typedef struct ranked { float v; int64_t i; } ranked;

static int cmp_ranked(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->v != y->v)
        return x->v < y->v ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

/* Adds the normalised ranks of column col of v (n rows, stride wide) to acc. */
static int add_ranks(const float *v, int64_t n, int stride, int col, double *acc)
{
    ranked *r = malloc((size_t)(n > 0 ? n : 1) * sizeof *r);
    if (!r)
        return KP_ERR_NOMEM;
    for (int64_t i = 0; i < n; i++)
        r[i] = (ranked){v[i * stride + col], i};
    qsort(r, (size_t)n, sizeof *r, cmp_ranked);
    for (int64_t a = 0, b; a < n; a = b) {
        for (b = a + 1; b < n && r[b].v == r[a].v; b++)
            ;
        double rank = 0.5 * (double)(a + b - 1);   /* average of ranks a .. b-1 */
        double norm = n > 1 ? rank / (double)(n - 1) : 0.5;
        for (int64_t t = a; t < b; t++)
            acc[r[t].i * stride + col] += norm;
    }
    free(r);
    return 0;
}

/* out = the mean over inputs of their per-column normalised ranks. */
static int blend_ranks(const stack_in *in, int test, float *out)
{
    int64_t rows = test ? in->d->n_test : in->d->n_train;
    int n_out = in->d->pb.n_out;
    double *acc = calloc((size_t)(rows * n_out > 0 ? rows * n_out : 1), sizeof *acc);
    if (!acc)
        return KP_ERR_NOMEM;
    for (int j = 0; j < in->n; j++)
        for (int c = 0; c < n_out; c++)
            if (add_ranks(test ? in->p[j]->test : in->p[j]->oof, rows, n_out, c, acc) < 0) {
                free(acc);
                return KP_ERR_NOMEM;
            }
    for (int64_t i = 0; i < rows * n_out; i++)
        out[i] = (float)(acc[i] / in->n);
    free(acc);
    return 0;
}

typedef struct wsearch {
    const stack_in *in;
    const kp_metric_ops *m;
    kp_metric_opts o;
    double *sum;      /* sum of the selected inputs' OOF */
    float *cand;      /* a candidate blend */
    int *count, *best_count;
} wsearch;

static int better(const kp_metric_ops *m, double a, double b)
{
    return m->greater_is_better ? a > b : a < b;
}

/* Picks the input whose addition (to `total` selected) blends best. */
static int wsearch_round(wsearch *s, int total, int *pick, double *score, char *err,
                         size_t errlen)
{
    const stack_in *in = s->in;
    int64_t n = in->d->n_train * in->d->pb.n_out;
    *pick = -1;
    for (int j = 0; j < in->n; j++) {
        double sc;
        for (int64_t i = 0; i < n; i++)
            s->cand[i] = (float)((s->sum[i] + in->p[j]->oof[i]) / (total + 1));
        int rc = kp_kfold_score(s->m, &s->o, &in->d->pb, in->d->y, s->cand, NULL,
                                in->d->n_train, &sc, err, errlen);
        if (rc < 0)
            return rc;
        if (*pick < 0 || better(s->m, sc, *score))
            *pick = j, *score = sc;
    }
    for (int64_t i = 0; i < n; i++)
        s->sum[i] += in->p[*pick]->oof[i];
    return 0;
}

/* Fits the weights w[in->n] (see the file comment). */
static int fit_weights(wsearch *s, int rounds, double *w, char *err, size_t errlen)
{
    double best = 0, score = 0;
    int total_best = 0, rc = 0;
    for (int t = 0; t < rounds; t++) {
        int pick;
        if ((rc = wsearch_round(s, t, &pick, &score, err, errlen)) < 0)
            return rc;
        s->count[pick]++;
        if (t == 0 || better(s->m, score, best)) {
            best = score;
            total_best = t + 1;
            memcpy(s->best_count, s->count, (size_t)s->in->n * sizeof *s->count);
        }
    }
    for (int j = 0; j < s->in->n; j++)
        w[j] = (double)s->best_count[j] / total_best;
    return 0;
}

/* Appends JSON string s (quoted, escaped) to b. */
static int json_string(kp_buf *b, const char *s)
{
    int rc = kp_buf_adds(b, "\"");
    for (; rc == 0 && *s; s++)
        rc = (*s == '"' || *s == '\\') ? kp_buf_printf(b, "\\%c", *s)
             : (unsigned char)*s < 0x20 ? kp_buf_printf(b, "\\u%04x", (unsigned char)*s)
                                         : kp_buf_add(b, s, 1);
    return rc ? rc : kp_buf_adds(b, "\"");
}

/* Writes {"stage": w, ...} into b and logs the weights. */
static int weights_json(const kp_task_ctx *ctx, const stack_in *in, const double *w, kp_buf *b)
{
    int rc = kp_buf_adds(b, "{");
    kp_kfold_logf(ctx->log, "weights:");
    for (int j = 0; rc == 0 && j < in->n; j++) {
        rc = kp_buf_adds(b, j ? ", " : "");
        if (rc == 0)
            rc = json_string(b, in->ps[j]->name);
        if (rc == 0)
            rc = kp_buf_printf(b, ": %.17g", w[j]);
        kp_kfold_logf(ctx->log, " %s %.4f", in->ps[j]->name, w[j]);
    }
    kp_kfold_logf(ctx->log, "\n");
    return rc ? rc : kp_buf_adds(b, "}");
}

/* Fits the weights and writes their JSON into meta. */
static int blend_weights(const kp_task_ctx *ctx, const stack_in *in, const kp_metric_ops *m,
                         const kp_metric_opts *o, double *w, kp_buf *meta, char *err,
                         size_t errlen)
{
    int64_t n = in->d->n_train * in->d->pb.n_out;
    wsearch s = {
        in, m, *o, calloc((size_t)(n > 0 ? n : 1), sizeof(double)),
        malloc((size_t)(n > 0 ? n : 1) * sizeof(float)),
        calloc((size_t)in->n, sizeof(int)), calloc((size_t)in->n, sizeof(int)),
    };
    int rc = s.sum && s.cand && s.count && s.best_count ? 0 : KP_ERR_NOMEM;
    if (rc < 0)
        kp_errf(err, errlen, rc, "out of memory fitting blend weights");
    else if ((rc = fit_weights(&s, (int)kp_params_int(ctx->stage->opts, "rounds", 100), w,
                               err, errlen)) == 0 &&
             weights_json(ctx, in, w, meta) < 0)
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    free(s.sum); free(s.cand); free(s.count); free(s.best_count);
    return rc;
}

/* Computes the blend of `method` into oof and test (weights into meta). */
static int blend(const kp_task_ctx *ctx, const stack_in *in, int method,
                 const kp_metric_ops *m, const kp_metric_opts *o, float *oof, float *test,
                 kp_buf *meta, char *err, size_t errlen)
{
    int rc = 0;
    if (method == M_RANK_MEAN) {
        if (blend_ranks(in, 0, oof) < 0 || blend_ranks(in, 1, test) < 0)
            rc = kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory ranking predictions");
        return rc;
    }
    double *w = malloc((size_t)in->n * sizeof *w);
    if (!w)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    for (int j = 0; j < in->n; j++)
        w[j] = 1.0 / in->n;
    if (method == M_WEIGHTS)
        rc = blend_weights(ctx, in, m, o, w, meta, err, errlen);
    if (rc == 0) {
        blend_apply(in, w, 0, oof);
        blend_apply(in, w, 1, test);
    }
    free(w);
    return rc;
}

/* Scores the blend per fold and overall, logs, and writes preds.safetensors. */
static int blend_write(const kp_task_ctx *ctx, const stack_in *in, int method,
                       const kp_metric_ops *m, const kp_metric_opts *o, const float *oof,
                       const float *test, const char *weights, char *err, size_t errlen)
{
    const kp_folds *f = in->f;
    char path[PATH_LEN], num[64] = "";
    double oof_score, with_thr = 0, *scores = malloc((size_t)(f->k * f->repeats) * sizeof *scores);
    float *thr = NULL;
    const char *extra[9] = {NULL};
    char pp_json[128], pp_num[64];
    int rc = scores ? 0 : kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory"), ne = 0;
    if (rc == 0)
        rc = kp_kfold_fold_scores(m, o, &in->d->pb, in->d->y, oof, f, scores, err, errlen);
    if (rc == 0)
        rc = kp_kfold_score(m, o, &in->d->pb, in->d->y, oof, NULL, in->d->n_train, &oof_score,
                            err, errlen);
    if (rc == 0 && kp_stage_artifact_path(ctx->stage, path, sizeof path) < 0)
        rc = kp_errf(err, errlen, KP_ERR_ARG, "stage '%s': path too long", ctx->stage->name);
    if (rc == 0)
        kp_kfold_log_scores(ctx->log, m->name, scores, f->k, f->repeats, oof_score);
    if (rc == 0)   /* multilabel F-beta: per-label thresholds (stages/thresholds.h) */
        rc = kp_thresholds_for_preds(m, o, &in->d->pb, in->d->y, oof, in->d->n_train, ctx->log,
                                     &thr, &with_thr, err, errlen);
    snprintf(num, sizeof num, "%.17g", with_thr);
    if (weights)
        extra[ne++] = "weights", extra[ne++] = weights;
    if (thr)
        extra[ne++] = "oof_score_thresholds", extra[ne++] = num;
    if (rc == 0 && in->d->pb.task == KP_TASK_SEGMENTATION &&
        (rc = kp_postproc_for_preds(m, o, &in->d->pb, in->d->y, oof, in->d->n_train,
                                    ctx->threads, ctx->log, pp_json, pp_num, err, errlen)) == 0)
        extra[ne++] = "postproc", extra[ne++] = pp_json, extra[ne++] = "oof_score_postproc",
        extra[ne++] = pp_num;
    if (rc == 0) {
        kp_preds_out po = {
            .pb = in->d->pb, .n_train = in->d->n_train, .n_test = in->d->n_test, .oof = oof,
            .test = test, .folds_hash = f->hash, .metric = m->name,
            .model = method_names[method], .stage = ctx->stage->name,
            .classes_json = kp_st_meta(in->d->st, "classes"), .fold_scores = scores,
            .n_folds = f->k * f->repeats, .oof_score = oof_score, .thresholds = thr,
            .extra_meta = ne ? extra : NULL,
        };
        rc = kp_preds_write(path, &po, err, errlen);
    }
    free(thr);
    free(scores);
    return rc;
}

static int run_blend(const kp_task_ctx *ctx, const stack_in *in, int method, char *err,
                     size_t errlen)
{
    const kp_dataset *d = in->d;
    const kp_metric_ops *m;
    kp_metric_opts o;
    kp_buf meta;
    kp_buf_init(&meta, 0);
    float *oof = malloc((size_t)(d->n_train * d->pb.n_out > 0 ? d->n_train * d->pb.n_out : 1) *
                        sizeof *oof);
    float *test = malloc((size_t)(d->n_test * d->pb.n_out > 0 ? d->n_test * d->pb.n_out : 1) *
                         sizeof *test);
    int rc = oof && test ? 0 : kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    if (rc == 0)
        rc = kp_kfold_metric(ctx->cfg, &d->pb, &m, &o, err, errlen);
    if (rc == 0)
        rc = blend(ctx, in, method, m, &o, oof, test, &meta, err, errlen);
    if (rc == 0)
        rc = blend_write(ctx, in, method, m, &o, oof, test,
                         method == M_WEIGHTS ? kp_buf_str(&meta) : NULL, err, errlen);
    kp_buf_free(&meta);
    free(oof);
    free(test);
    return rc;
}

static int stack_run(const kp_task_ctx *ctx, char *err, size_t errlen)
{
    stack_in in = {0};
    int method = stack_method(ctx->stage);
    int rc = stack_open(ctx, &in, err, errlen);
    if (rc == 0 && method == M_MODEL)
        rc = run_model(ctx, &in, err, errlen);
    else if (rc == 0 && ctx->part >= 0)
        rc = kp_errf(err, errlen, KP_ERR_INTERNAL, "stage '%s' (method %s) has no part tasks",
                     ctx->stage->name, method_names[method]);
    else if (rc == 0)
        rc = run_blend(ctx, &in, method, err, errlen);
    stack_in_free(&in);
    return rc;
}

const kp_stage_ops kp_stage_stack = {
    .name = "stack",
    .doc = "stacks or blends the predictions of train stages made on the same folds",
    .keys = stack_keys,
    .output = KP_ART_PREDS,
    .check = stack_check,
    .n_parts = stack_n_parts,
    .outputs = stack_outputs,
    .run = stack_run,
};

/* thresholds.c - per-label thresholds by coordinate ascent (see thresholds.h).
 *
 * The score of a label's candidate threshold is found for the whole grid in
 * one sweep: with the other labels' decisions fixed, each row's F-beta takes
 * one value f1 when the label is predicted and another f0 when it is not, so
 * score(t) = sum f0 + sum of (f1 - f0) over the rows whose prediction is
 * above t: a prefix sum over the rows sorted by prediction, descending.
 */
#include "thresholds.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/err.h"

typedef struct search {
    const float *y, *p;      /* n x L, borrowed */
    int64_t n;
    int L;
    double b2;               /* beta squared */
    float grid[KP_THRESHOLDS_GRID];
    int *g;                  /* each label's grid index */
    int32_t *tp, *fp, *fn;   /* per row, with every label's current decision */
    int64_t *order;          /* per label: rows by prediction, descending (L x n) */
    double *delta;           /* per row: f1 - f0 for the label being searched */
    double score[KP_THRESHOLDS_GRID];
} search;

/* One row's F-beta, computed as models/metrics/fscore.c does. */
static double f_beta(double b2, double tp, double fp, double fn)
{
    double den = (1 + b2) * tp + b2 * fn + fp;
    return den > 0 ? (1 + b2) * tp / den : 0;
}

static void search_free(search *s)
{
    free(s->g);
    free(s->tp);
    free(s->fp);
    free(s->fn);
    free(s->order);
    free(s->delta);
}

/* What qsort_r compares: one label's column of the predictions. */
typedef struct column { const float *p; int L; } column;

/* Orders rows by prediction, descending, then by row. */
static int cmp_desc(const void *a, const void *b, void *arg)
{
    const column *c = arg;
    int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
    float x = c->p[i * c->L], z = c->p[j * c->L];
    if (x != z)
        return x > z ? -1 : 1;
    return (i > j) - (i < j);
}

/* Allocates s's arrays and sorts every label's rows; 0 or KP_ERR_NOMEM. */
static int search_init(search *s)
{
    size_t n = (size_t)s->n, L = (size_t)s->L;
    s->g = calloc(L, sizeof *s->g);
    s->tp = calloc(n, sizeof *s->tp);
    s->fp = calloc(n, sizeof *s->fp);
    s->fn = calloc(n, sizeof *s->fn);
    s->order = malloc(n * L * sizeof *s->order);
    s->delta = malloc(n * sizeof *s->delta);
    if (!s->g || !s->tp || !s->fp || !s->fn || !s->order || !s->delta)
        return KP_ERR_NOMEM;
    for (int k = 0; k < KP_THRESHOLDS_GRID; k++)
        s->grid[k] = (float)((k + 1) / 100.0);
    for (size_t j = 0; j < L; j++) {
        int64_t *o = s->order + j * n;
        for (size_t i = 0; i < n; i++)
            o[i] = (int64_t)i;
        column c = {s->p + j, s->L};
        qsort_r(o, n, sizeof *o, cmp_desc, &c);
    }
    return 0;
}

/* Scores every common threshold (all labels at grid value k) into s->score. */
static void score_common(search *s)
{
    for (int k = 0; k < KP_THRESHOLDS_GRID; k++) {
        double sum = 0;
        for (int64_t i = 0; i < s->n; i++) {
            int tp = 0, fp = 0, fn = 0;
            for (int j = 0; j < s->L; j++) {
                int d = s->p[i * s->L + j] > s->grid[k], t = s->y[i * s->L + j] == 1;
                tp += d && t;
                fp += d && !t;
                fn += !d && t;
            }
            sum += f_beta(s->b2, tp, fp, fn);
        }
        s->score[k] = sum;
    }
}

/* Returns the middle of the first run of grid values reaching the best score. */
static int best_index(const double *score)
{
    int first = 0;
    for (int k = 1; k < KP_THRESHOLDS_GRID; k++)
        if (score[k] > score[first])
            first = k;
    int last = first;
    while (last + 1 < KP_THRESHOLDS_GRID && score[last + 1] == score[first])
        last++;
    return (first + last) / 2;
}

/* Puts every label at grid index k and counts each row's decisions. */
static void start_common(search *s, int k)
{
    for (int j = 0; j < s->L; j++)
        s->g[j] = k;
    for (int64_t i = 0; i < s->n; i++)
        for (int j = 0; j < s->L; j++) {
            int d = s->p[i * s->L + j] > s->grid[k], t = s->y[i * s->L + j] == 1;
            s->tp[i] += d && t;
            s->fp[i] += d && !t;
            s->fn[i] += !d && t;
        }
}

/* Sets label j's threshold to grid index k, updating the row counts. */
static void set_label(search *s, int j, int k)
{
    for (int64_t i = 0; i < s->n; i++) {
        float p = s->p[i * s->L + j];
        int was = p > s->grid[s->g[j]], now = p > s->grid[k], t = s->y[i * s->L + j] == 1;
        s->tp[i] += (now && t) - (was && t);
        s->fp[i] += (now && !t) - (was && !t);
        s->fn[i] += (!now && t) - (!was && t);
    }
    s->g[j] = k;
}

/* Scores every grid value for label j, the others fixed, into s->score. */
static void score_label(search *s, int j)
{
    double base = 0, cum = 0;
    for (int64_t i = 0; i < s->n; i++) {
        int d = s->p[i * s->L + j] > s->grid[s->g[j]], t = s->y[i * s->L + j] == 1;
        double tp = s->tp[i] - (d && t), fp = s->fp[i] - (d && !t), fn = s->fn[i] - (!d && t);
        double f0 = f_beta(s->b2, tp, fp, fn + t);
        double f1 = f_beta(s->b2, tp + t, fp + !t, fn);
        base += f0;
        s->delta[i] = f1 - f0;
    }
    const int64_t *o = s->order + (size_t)j * (size_t)s->n;
    int64_t m = 0;   /* rows above the threshold: a prefix of o */
    for (int k = KP_THRESHOLDS_GRID - 1; k >= 0; k--) {
        while (m < s->n && s->p[o[m] * s->L + j] > s->grid[k])
            cum += s->delta[o[m++]];
        s->score[k] = base + cum;
    }
}

/* One coordinate-ascent pass over the labels; returns how many moved. */
static int search_pass(search *s)
{
    int moved = 0;
    for (int j = 0; j < s->L; j++) {
        score_label(s, j);
        int k = best_index(s->score);
        if (s->score[k] > s->score[s->g[j]]) {
            set_label(s, j, k);
            moved++;
        }
    }
    return moved;
}

/* Checks the inputs of a search; 0 or KP_ERR_ARG. */
static int check_inputs(const kp_problem *pb, const float *y, const float *oof, int64_t n,
                        double beta, char *err, size_t errlen)
{
    if (pb->task != KP_TASK_MULTILABEL || pb->n_out < 1)
        return kp_errf(err, errlen, KP_ERR_ARG,
                       "thresholds: a %s task with %d outputs has no per-label thresholds "
                       "(multilabel only)", kp_task_name(pb->task), pb->n_out);
    if (n < 1 || !(beta > 0 && isfinite(beta)))
        return kp_errf(err, errlen, KP_ERR_ARG, "thresholds: %lld rows and beta %g; need rows "
                       "and a positive beta", (long long)n, beta);
    for (int64_t i = 0; i < n * pb->n_out; i++) {
        if (y[i] != 0 && y[i] != 1)
            return kp_errf(err, errlen, KP_ERR_ARG, "thresholds: y[%lld, %lld] = %g is not 0 or 1",
                           (long long)(i / pb->n_out), (long long)(i % pb->n_out), (double)y[i]);
        if (!isfinite(oof[i]))
            return kp_errf(err, errlen, KP_ERR_ARG,
                           "thresholds: prediction [%lld, %lld] = %g is not finite",
                           (long long)(i / pb->n_out), (long long)(i % pb->n_out),
                           (double)oof[i]);
    }
    return 0;
}

int kp_thresholds_search(const kp_problem *pb, const float *y, const float *oof, int64_t n,
                         double beta, float *thr, char *err, size_t errlen)
{
    search s = {.y = y, .p = oof, .n = n, .L = pb->n_out, .b2 = beta * beta};
    int rc = check_inputs(pb, y, oof, n, beta, err, errlen);
    if (rc < 0)
        goto fail;
    if ((rc = search_init(&s)) < 0) {
        kp_errf(err, errlen, rc, "thresholds: out of memory for %lld rows", (long long)n);
        goto fail;
    }
    score_common(&s);
    start_common(&s, best_index(s.score));
    for (int pass = 0; pass < KP_THRESHOLDS_PASSES && search_pass(&s) > 0; pass++)
        ;
    for (int j = 0; j < s.L; j++)
        thr[j] = s.grid[s.g[j]];
fail:
    search_free(&s);
    return rc;
}

int kp_thresholds_apply(const kp_metric_ops *m, const kp_problem *pb)
{
    return m && pb->task == KP_TASK_MULTILABEL &&
           (strcmp(m->name, "f1_samples") == 0 || strcmp(m->name, "fbeta_samples") == 0);
}

/* Logs the scores before and after and the thresholds. */
static void log_thresholds(FILE *log, const kp_metric_ops *m, const kp_metric_opts *o,
                           double before, double after, const float *thr, int L)
{
    if (!log)
        return;
    fprintf(log, "thresholds: oof %s %.4f at threshold %g, %.4f with per-label thresholds [",
            m->name, before, o->threshold, after);
    for (int j = 0; j < L; j++)
        fprintf(log, "%s%.2f", j ? ", " : "", (double)thr[j]);
    fprintf(log, "]\n");
    fflush(log);
}

int kp_thresholds_for_preds(const kp_metric_ops *m, const kp_metric_opts *o,
                            const kp_problem *pb, const float *y, const float *oof, int64_t n,
                            FILE *log, float **thr, double *after, char *err, size_t errlen)
{
    double before = 0;
    float *t = NULL;
    int rc = 0;
    *thr = NULL;
    if (!kp_thresholds_apply(m, pb))
        return 0;
    double beta = strcmp(m->name, "f1_samples") == 0 ? 1 : o->beta;
    kp_metric_opts with = *o;
    if (!(t = malloc((size_t)pb->n_out * sizeof *t))) {
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "thresholds: out of memory");
        goto fail;
    }
    with.thresholds = t;
    if ((rc = m->score(pb, y, oof, n, o, &before, err, errlen)) < 0 ||
        (rc = kp_thresholds_search(pb, y, oof, n, beta, t, err, errlen)) < 0 ||
        (rc = m->score(pb, y, oof, n, &with, after, err, errlen)) < 0)
        goto fail;
    log_thresholds(log, m, o, before, *after, t, pb->n_out);
    *thr = t;
    t = NULL;
fail:
    free(t);
    return rc;
}

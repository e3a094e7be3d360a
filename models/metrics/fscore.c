/* fscore.c - F1 and F-beta: micro (f1, fbeta) and sample-averaged (*_samples).
 *
 * F_beta = (1 + b^2) TP / ((1 + b^2) TP + b^2 FN + FP), and 0 when the
 * denominator is 0 (nothing true, nothing predicted): scikit-learn 1.2's
 * zero_division default.  Decisions are pred > threshold (per-output
 * thresholds for multilabel when given), argmax for multiclass.
 * f1/fbeta: binary scores the positive class; multiclass is micro-averaged
 * (which equals accuracy); multilabel is micro-averaged over every (row,
 * label) decision.  f1_samples/fbeta_samples (multilabel) average the
 * per-row F_beta, as scikit-learn's average='samples' (Planet's F2).
 */
#include <math.h>
#include "../../lib/err.h"
#include "common.h"

#define MICRO_TASKS (KP_TASK_BIT(KP_TASK_BINARY) | KP_TASK_BIT(KP_TASK_MULTICLASS) | \
                     KP_TASK_BIT(KP_TASK_MULTILABEL))
#define SAMPLES_TASKS KP_TASK_BIT(KP_TASK_MULTILABEL)

typedef struct counts { double tp, fp, fn; } counts;

static double f_beta(double beta, counts c)
{
    double b2 = beta * beta, den = (1 + b2) * c.tp + b2 * c.fn + c.fp;
    return den > 0 ? (1 + b2) * c.tp / den : 0;
}

/* Adds row i's decisions to *c. */
static void count_row(const kp_problem *pb, const float *y, const float *p,
                      const kp_metric_opts *o, counts *c)
{
    if (pb->task == KP_TASK_MULTICLASS) {
        int right = km_argmax(p, pb->n_out) == (int)y[0];
        c->tp += right;
        c->fp += !right;
        c->fn += !right;
        return;
    }
    for (int k = 0; k < pb->n_out; k++) {
        int d = km_positive(o, k, p[k]), t = y[k] == 1;
        c->tp += d && t;
        c->fp += d && !t;
        c->fn += !d && t;
    }
}

/* Checks the inputs and beta; 0 or KP_ERR_ARG. */
static int check(const char *name, unsigned tasks, double beta, const kp_problem *pb,
                 const float *y_true, const float *pred, int64_t n, char *err, size_t errlen)
{
    int rc = km_check(name, tasks, pb, y_true, pred, n, err, errlen);
    if (rc == 0 && !(beta > 0 && isfinite(beta)))
        rc = kp_errf(err, errlen, KP_ERR_ARG, "%s: beta = %g must be a positive number", name,
                     beta);
    return rc;
}

/* Micro F-beta over all decisions into *out. */
static int micro(const char *name, double beta, const kp_problem *pb, const float *y_true,
                 const float *pred, int64_t n, const kp_metric_opts *o, double *out,
                 char *err, size_t errlen)
{
    int rc = check(name, MICRO_TASKS, beta, pb, y_true, pred, n, err, errlen);
    if (rc < 0)
        return rc;
    counts c = { 0, 0, 0 };
    int yw = km_y_width(pb);
    for (int64_t i = 0; i < n; i++)
        count_row(pb, y_true + i * yw, pred + i * pb->n_out, o, &c);
    *out = f_beta(beta, c);
    return 0;
}

/* Mean over rows of each row's F-beta into *out. */
static int samples(const char *name, double beta, const kp_problem *pb, const float *y_true,
                   const float *pred, int64_t n, const kp_metric_opts *o, double *out,
                   char *err, size_t errlen)
{
    int rc = check(name, SAMPLES_TASKS, beta, pb, y_true, pred, n, err, errlen);
    if (rc < 0)
        return rc;
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        counts c = { 0, 0, 0 };
        count_row(pb, y_true + i * pb->n_out, pred + i * pb->n_out, o, &c);
        s += f_beta(beta, c);
    }
    *out = s / (double)n;
    return 0;
}

static int f1_score(const kp_problem *pb, const float *y_true, const float *pred, int64_t n,
                    const kp_metric_opts *opts, double *out, char *err, size_t errlen)
{
    kp_metric_opts o = km_opts(opts);
    return micro("f1", 1, pb, y_true, pred, n, &o, out, err, errlen);
}

static int fbeta_score(const kp_problem *pb, const float *y_true, const float *pred, int64_t n,
                       const kp_metric_opts *opts, double *out, char *err, size_t errlen)
{
    kp_metric_opts o = km_opts(opts);
    return micro("fbeta", o.beta, pb, y_true, pred, n, &o, out, err, errlen);
}

static int f1_samples_score(const kp_problem *pb, const float *y_true, const float *pred,
                            int64_t n, const kp_metric_opts *opts, double *out, char *err,
                            size_t errlen)
{
    kp_metric_opts o = km_opts(opts);
    return samples("f1_samples", 1, pb, y_true, pred, n, &o, out, err, errlen);
}

static int fbeta_samples_score(const kp_problem *pb, const float *y_true, const float *pred,
                               int64_t n, const kp_metric_opts *opts, double *out, char *err,
                               size_t errlen)
{
    kp_metric_opts o = km_opts(opts);
    return samples("fbeta_samples", o.beta, pb, y_true, pred, n, &o, out, err, errlen);
}

const kp_metric_ops kp_metric_f1 = {
    .name = "f1", .doc = "F1: positive class (binary), micro-averaged (multiclass, multilabel)",
    .greater_is_better = 1, .tasks = MICRO_TASKS, .score = f1_score,
};

const kp_metric_ops kp_metric_fbeta = {
    .name = "fbeta", .doc = "F-beta (beta from the config): as f1",
    .greater_is_better = 1, .tasks = MICRO_TASKS, .score = fbeta_score,
};

const kp_metric_ops kp_metric_f1_samples = {
    .name = "f1_samples", .doc = "F1 per row, averaged over rows (multilabel)",
    .greater_is_better = 1, .tasks = SAMPLES_TASKS, .score = f1_samples_score,
};

const kp_metric_ops kp_metric_fbeta_samples = {
    .name = "fbeta_samples", .doc = "F-beta per row, averaged over rows (multilabel; Planet's F2)",
    .greater_is_better = 1, .tasks = SAMPLES_TASKS, .score = fbeta_samples_score,
};

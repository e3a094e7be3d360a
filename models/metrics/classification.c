/* classification.c - accuracy and log loss. */
#include <math.h>
#include "../../lib/err.h"
#include "common.h"

#define LOGLOSS_EPS 1e-15   /* probabilities are clipped to [eps, 1 - eps] */
#define ACCURACY_TASKS (KP_TASK_BIT(KP_TASK_BINARY) | KP_TASK_BIT(KP_TASK_MULTICLASS) | \
                        KP_TASK_BIT(KP_TASK_MULTILABEL))
#define LOGLOSS_TASKS (KP_TASK_BIT(KP_TASK_BINARY) | KP_TASK_BIT(KP_TASK_MULTICLASS))

/* Returns 1 if row i of pred gives exactly the right answer(s). */
static int row_correct(const kp_problem *pb, const float *y, const float *p,
                       const kp_metric_opts *o)
{
    if (pb->task == KP_TASK_MULTICLASS)
        return km_argmax(p, pb->n_out) == (int)y[0];
    for (int k = 0; k < pb->n_out; k++)
        if (km_positive(o, k, p[k]) != (y[k] == 1))
            return 0;
    return 1;
}

/* binary: pred > threshold; multiclass: argmax; multilabel: every label right
 * (subset accuracy, scikit-learn's accuracy_score on label indicators). */
static int accuracy_score(const kp_problem *pb, const float *y_true, const float *pred,
                          int64_t n, const kp_metric_opts *opts, double *out,
                          char *err, size_t errlen)
{
    int rc = km_check("accuracy", ACCURACY_TASKS, pb, y_true, pred, n, err, errlen);
    if (rc < 0)
        return rc;
    kp_metric_opts o = km_opts(opts);
    int yw = km_y_width(pb);
    int64_t right = 0;
    for (int64_t i = 0; i < n; i++)
        right += row_correct(pb, y_true + i * yw, pred + i * pb->n_out, &o);
    *out = (double)right / (double)n;
    return 0;
}

/* Returns row i's -log p(true class) after clipping and renormalising the
 * row as scikit-learn's log_loss does. */
static double row_logloss(const kp_problem *pb, float y, const float *p)
{
    if (pb->task == KP_TASK_BINARY) {
        double q = fmin(fmax(p[0], LOGLOSS_EPS), 1 - LOGLOSS_EPS), q0 = 1 - q;
        return -log((y == 1 ? q : q0) / (q0 + q));
    }
    double sum = 0, qy = 0;
    for (int k = 0; k < pb->n_out; k++) {
        double q = fmin(fmax(p[k], LOGLOSS_EPS), 1 - LOGLOSS_EPS);
        sum += q;
        if (k == (int)y)
            qy = q;
    }
    return -log(qy / sum);
}

/* Mean negative log-likelihood; binary pred is P(1), multiclass one
 * probability per class (rows are renormalised after clipping). */
static int logloss_score(const kp_problem *pb, const float *y_true, const float *pred,
                         int64_t n, const kp_metric_opts *opts, double *out,
                         char *err, size_t errlen)
{
    (void)opts;
    int rc = km_check("logloss", LOGLOSS_TASKS, pb, y_true, pred, n, err, errlen);
    if (rc < 0)
        return rc;
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += row_logloss(pb, y_true[i], pred + i * pb->n_out);
    *out = s / (double)n;
    return 0;
}

const kp_metric_ops kp_metric_accuracy = {
    .name = "accuracy",
    .doc = "share of rows right: binary pred > threshold, multiclass argmax, multilabel all labels",
    .greater_is_better = 1,
    .tasks = ACCURACY_TASKS,
    .score = accuracy_score,
};

const kp_metric_ops kp_metric_logloss = {
    .name = "logloss",
    .doc = "mean negative log-likelihood, probabilities clipped to [1e-15, 1 - 1e-15]",
    .greater_is_better = 0,
    .tasks = LOGLOSS_TASKS,
    .score = logloss_score,
};

/* auc.c - area under the ROC curve, exact with ties (Mann-Whitney U).
 *
 * Sorting the scores once (O(n log n)), tied scores share their average
 * rank, and AUC = (sum of positive ranks - P(P+1)/2) / (P N): the same value
 * as scikit-learn's roc_auc_score (trapezoids through tied points).
 * multiclass: one-vs-rest per class, macro-averaged; multilabel: per label,
 * macro-averaged.  A class or label whose y_true is all 0 or all 1 makes AUC
 * undefined, and that is an error naming it.
 */
#include <stdlib.h>
#include "../../lib/err.h"
#include "common.h"

#define AUC_TASKS (KP_TASK_BIT(KP_TASK_BINARY) | KP_TASK_BIT(KP_TASK_MULTICLASS) | \
                   KP_TASK_BIT(KP_TASK_MULTILABEL))

typedef struct auc_item { float score; int positive; } auc_item;

static int cmp_score(const void *a, const void *b)
{
    float x = ((const auc_item *)a)->score, y = ((const auc_item *)b)->score;
    return (x > y) - (x < y);
}

/* Returns the AUC of the n items (sorted in place), or -1 when they hold
 * only one class. */
static double items_auc(auc_item *it, int64_t n)
{
    qsort(it, (size_t)n, sizeof *it, cmp_score);
    double rank_sum = 0, pos = 0;
    for (int64_t i = 0; i < n;) {
        int64_t j = i, p = 0;
        for (; j < n && it[j].score == it[i].score; j++)
            p += it[j].positive;
        rank_sum += (double)p * (double)(i + 1 + j) / 2;   /* average of ranks i+1..j */
        pos += (double)p;
        i = j;
    }
    double neg = (double)n - pos;
    if (pos == 0 || neg == 0)
        return -1;
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg);
}

/* Returns 1 if row i is a positive for output k. */
static int is_positive(const kp_problem *pb, const float *y_true, int64_t i, int k)
{
    if (pb->task == KP_TASK_MULTICLASS)
        return (int)y_true[i] == k;
    return y_true[i * km_y_width(pb) + k] == 1;
}

/* Fills it with output k's scores and labels and returns its AUC, or an error. */
static int output_auc(const kp_problem *pb, const float *y_true, const float *pred, int64_t n,
                      int k, auc_item *it, double *out, char *err, size_t errlen)
{
    for (int64_t i = 0; i < n; i++)
        it[i] = (auc_item){ pred[i * pb->n_out + k], is_positive(pb, y_true, i, k) };
    *out = items_auc(it, n);
    if (*out >= 0)
        return 0;
    if (pb->task == KP_TASK_BINARY)
        return kp_errf(err, errlen, KP_ERR_ARG,
                       "auc: y_true holds only one class; AUC is not defined");
    return kp_errf(err, errlen, KP_ERR_ARG,
                   "auc: %s %d is %s in y_true; its AUC is not defined",
                   pb->task == KP_TASK_MULTICLASS ? "class" : "label", k,
                   pb->task == KP_TASK_MULTICLASS ? "absent or the only class" : "all 0 or all 1");
}

static int auc_score(const kp_problem *pb, const float *y_true, const float *pred, int64_t n,
                     const kp_metric_opts *opts, double *out, char *err, size_t errlen)
{
    (void)opts;
    int rc = km_check("auc", AUC_TASKS, pb, y_true, pred, n, err, errlen);
    if (rc < 0)
        return rc;
    auc_item *it = malloc(sizeof *it * (size_t)n);
    if (!it)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "auc: out of memory for %lld rows",
                       (long long)n);
    double sum = 0, a = 0;
    for (int k = 0; k < pb->n_out && rc == 0; k++) {
        rc = output_auc(pb, y_true, pred, n, k, it, &a, err, errlen);
        sum += a;
    }
    free(it);
    if (rc == 0)
        *out = sum / pb->n_out;
    return rc;
}

const kp_metric_ops kp_metric_auc = {
    .name = "auc",
    .doc = "ROC AUC (exact, ties averaged); multiclass one-vs-rest and multilabel macro-averaged",
    .greater_is_better = 1,
    .tasks = AUC_TASKS,
    .score = auc_score,
};

/* common.c - checks and helpers shared by the metrics. */
#include "common.h"

#include <math.h>
#include <stdio.h>
#include "../../lib/err.h"

/* Returns a comma-separated list of the task names in the mask, into buf. */
static const char *task_list(unsigned tasks, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = 0;
    for (int t = 0; t < KP_TASK_COUNT; t++)
        if (tasks & KP_TASK_BIT(t))
            used += (size_t)snprintf(buf + used, used < len ? len - used : 0, "%s%s",
                                     used ? ", " : "", kp_task_name((kp_task_kind)t));
    return buf;
}

/* Checks pb itself against the metric's tasks. */
static int check_problem(const char *name, unsigned tasks, const kp_problem *pb, int64_t n,
                         char *err, size_t errlen)
{
    char list[128];
    if ((unsigned)pb->task >= KP_TASK_COUNT || !(tasks & KP_TASK_BIT(pb->task)))
        return kp_errf(err, errlen, KP_ERR_ARG, "%s: not defined for task '%s' (only %s)", name,
                       kp_task_name(pb->task), task_list(tasks, list, sizeof list));
    int one = pb->task == KP_TASK_BINARY || pb->task == KP_TASK_REGRESSION;
    if ((one && pb->n_out != 1) || (pb->task == KP_TASK_MULTICLASS && pb->n_out < 2) ||
        pb->n_out < 1)
        return kp_errf(err, errlen, KP_ERR_ARG, "%s: task '%s' cannot have %d outputs", name,
                       kp_task_name(pb->task), pb->n_out);
    if (n < 1)
        return kp_errf(err, errlen, KP_ERR_ARG, "%s: no rows to score", name);
    return 0;
}

/* Returns 1 if v is a valid y_true value for the task. */
static int valid_target(const kp_problem *pb, float v)
{
    switch (pb->task) {
    case KP_TASK_BINARY:
    case KP_TASK_MULTILABEL: return v == 0 || v == 1;
    case KP_TASK_MULTICLASS: return v >= 0 && v < pb->n_out && v == floorf(v);
    default: return isfinite(v);
    }
}

/* Writes "[i]" or "[i, k]" (multi-output rows) into buf. */
static const char *cell(int64_t i, int width, char *buf, size_t len)
{
    if (width == 1)
        snprintf(buf, len, "[%lld]", (long long)i);
    else
        snprintf(buf, len, "[%lld, %lld]", (long long)(i / width), (long long)(i % width));
    return buf;
}

int km_check(const char *name, unsigned tasks, const kp_problem *pb, const float *y_true,
             const float *pred, int64_t n, char *err, size_t errlen)
{
    int rc = check_problem(name, tasks, pb, n, err, errlen);
    if (rc < 0)
        return rc;
    char at[64];
    int yw = km_y_width(pb);
    for (int64_t i = 0; i < n * yw; i++)
        if (!valid_target(pb, y_true[i]))
            return kp_errf(err, errlen, KP_ERR_ARG, "%s: y_true%s = %g is not %s", name,
                           cell(i, yw, at, sizeof at), y_true[i],
                           pb->task == KP_TASK_MULTICLASS ? "a class index"
                           : pb->task == KP_TASK_REGRESSION ? "finite" : "0 or 1");
    for (int64_t i = 0; i < n * pb->n_out; i++)
        if (!isfinite(pred[i]))
            return kp_errf(err, errlen, KP_ERR_ARG, "%s: pred%s = %g is not finite", name,
                           cell(i, pb->n_out, at, sizeof at), pred[i]);
    return 0;
}

kp_metric_opts km_opts(const kp_metric_opts *o)
{
    return o ? *o : kp_metric_defaults();
}

int km_positive(const kp_metric_opts *o, int k, float pred)
{
    return pred > (o->thresholds ? o->thresholds[k] : o->threshold);
}

int km_argmax(const float *v, int n)
{
    int best = 0;
    for (int k = 1; k < n; k++)
        if (v[k] > v[best])
            best = k;
    return best;
}

int km_y_width(const kp_problem *pb)
{
    return pb->task == KP_TASK_MULTILABEL ? pb->n_out : 1;
}

/* regression.c - RMSE, RMSLE and MAE (regression tasks). */
#include <math.h>
#include "../../lib/err.h"
#include "common.h"

#define REG_TASKS KP_TASK_BIT(KP_TASK_REGRESSION)

static int rmse_score(const kp_problem *pb, const float *y_true, const float *pred, int64_t n,
                      const kp_metric_opts *opts, double *out, char *err, size_t errlen)
{
    (void)opts;
    int rc = km_check("rmse", REG_TASKS, pb, y_true, pred, n, err, errlen);
    if (rc < 0)
        return rc;
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)pred[i] - (double)y_true[i];
        s += d * d;
    }
    *out = sqrt(s / (double)n);
    return 0;
}

/* Returns 0 if no value of v is negative, else an error naming the row. */
static int check_nonneg(const char *what, const float *v, int64_t n, char *err, size_t errlen)
{
    for (int64_t i = 0; i < n; i++)
        if (v[i] < 0)
            return kp_errf(err, errlen, KP_ERR_ARG,
                           "rmsle: %s[%lld] = %g is negative; RMSLE needs values >= 0", what,
                           (long long)i, v[i]);
    return 0;
}

static int rmsle_score(const kp_problem *pb, const float *y_true, const float *pred, int64_t n,
                       const kp_metric_opts *opts, double *out, char *err, size_t errlen)
{
    (void)opts;
    int rc = km_check("rmsle", REG_TASKS, pb, y_true, pred, n, err, errlen);
    if (rc == 0)
        rc = check_nonneg("y_true", y_true, n, err, errlen);
    if (rc == 0)
        rc = check_nonneg("pred", pred, n, err, errlen);
    if (rc < 0)
        return rc;
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = log1p((double)pred[i]) - log1p((double)y_true[i]);
        s += d * d;
    }
    *out = sqrt(s / (double)n);
    return 0;
}

static int mae_score(const kp_problem *pb, const float *y_true, const float *pred, int64_t n,
                     const kp_metric_opts *opts, double *out, char *err, size_t errlen)
{
    (void)opts;
    int rc = km_check("mae", REG_TASKS, pb, y_true, pred, n, err, errlen);
    if (rc < 0)
        return rc;
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += fabs((double)pred[i] - (double)y_true[i]);
    *out = s / (double)n;
    return 0;
}

const kp_metric_ops kp_metric_rmse = {
    .name = "rmse", .doc = "root mean squared error", .greater_is_better = 0,
    .tasks = REG_TASKS, .score = rmse_score,
};

const kp_metric_ops kp_metric_rmsle = {
    .name = "rmsle", .doc = "root mean squared error of log(1 + x); values must be >= 0",
    .greater_is_better = 0, .tasks = REG_TASKS, .score = rmsle_score,
};

const kp_metric_ops kp_metric_mae = {
    .name = "mae", .doc = "mean absolute error", .greater_is_better = 0,
    .tasks = REG_TASKS, .score = mae_score,
};

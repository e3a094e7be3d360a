/* test_metrics.c - every metric against scikit-learn 1.2, and its errors.
 *
 * The expected values were computed once with scikit-learn 1.2 on the same
 * float32 inputs (accuracy_score, log_loss(eps=1e-15), roc_auc_score,
 * mean_squared_error, mean_squared_log_error, mean_absolute_error, f1_score,
 * fbeta_score on predictions thresholded with pred > threshold) and pasted
 * here with %.17g.
 */
#include "kp_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/err.h"
#include "../models/metric.h"

/* binary: ties at 0.5 across both classes */
static const float yb[] = { 0, 1, 1, 0, 1, 0, 1, 0 };
static const float pb[] = { 0.2f, 0.6f, 0.5f, 0.7f, 0.9f, 0.1f, 0.5f, 0.5f };
static const float pb01[] = { 0.0f, 1.0f, 0.3f, 1.0f };   /* needs clipping */
/* multiclass, 3 classes: rows with tied maxima */
static const float ym[] = { 0, 2, 1, 1, 0, 2, 1 };
static const float pm[] = {
    0.7f, 0.2f, 0.1f,  0.1f, 0.3f, 0.6f,  0.2f, 0.5f, 0.3f,  0.4f, 0.4f, 0.2f,
    0.5f, 0.25f, 0.25f,  0.3f, 0.3f, 0.4f,  0.1f, 0.1f, 0.8f,
};
/* multilabel, 3 labels */
static const float yl[] = { 1, 0, 1,  0, 0, 0,  1, 1, 0,  0, 1, 1,  1, 0, 0 };
static const float pl[] = {
    0.9f, 0.2f, 0.4f,  0.1f, 0.6f, 0.3f,  0.8f, 0.7f, 0.1f,  0.3f, 0.4f, 0.9f,  0.6f, 0.4f, 0.7f,
};
static const float thr[] = { 0.5f, 0.35f, 0.5f };
/* regression */
static const float yr[] = { 3.0f, 0.5f, 2.0f, 7.0f, 0.0f };
static const float pr[] = { 2.5f, 0.0f, 2.0f, 8.0f, 1.0f };

typedef struct metric_case {
    const char *metric;
    kp_task_kind task;
    int n_out;
    const float *y, *p;
    int64_t n;
    double beta, threshold;
    const float *thresholds;
    double want;
} metric_case;

#define B KP_TASK_BINARY
#define M KP_TASK_MULTICLASS
#define L KP_TASK_MULTILABEL
#define R KP_TASK_REGRESSION

static const metric_case cases[] = {
    { "accuracy", B, 1, yb, pb, 8, 1, 0.5, NULL, 0.625 },
    { "accuracy", B, 1, yb, pb, 8, 1, 0.45, NULL, 0.75 },
    { "accuracy", M, 3, ym, pm, 7, 1, 0.5, NULL, 0.7142857142857143 },
    { "accuracy", L, 3, yl, pl, 5, 1, 0.5, NULL, 0.20000000000000001 },
    { "accuracy", L, 3, yl, pl, 5, 1, 0.5, thr, 0.40000000000000002 },
    { "logloss", B, 1, yb, pb, 8, 1, 0.5, NULL, 0.52851306310008694 },
    { "logloss", B, 1, yb, pb01, 4, 1, 0.5, NULL, 8.9358871892325968 },
    { "logloss", M, 3, ym, pm, 7, 1, 0.5, NULL, 0.91270878892358331 },
    { "auc", B, 1, yb, pb, 8, 1, 0.5, NULL, 0.75 },
    { "auc", M, 3, ym, pm, 7, 1, 0.5, NULL, 0.8222222222222223 },
    { "auc", L, 3, yl, pl, 5, 1, 0.5, NULL, 0.86111111111111116 },
    { "rmse", R, 1, yr, pr, 5, 1, 0.5, NULL, 0.70710678118654757 },
    { "rmsle", R, 1, yr, pr, 5, 1, 0.5, NULL, 0.36784737164102288 },
    { "mae", R, 1, yr, pr, 5, 1, 0.5, NULL, 0.59999999999999998 },
    { "f1", B, 1, yb, pb, 8, 1, 0.5, NULL, 0.57142857142857151 },
    { "fbeta", B, 1, yb, pb, 8, 2, 0.3, NULL, 0.90909090909090906 },
    { "f1", M, 3, ym, pm, 7, 1, 0.5, NULL, 0.7142857142857143 },
    { "f1", L, 3, yl, pl, 5, 1, 0.5, NULL, 0.7142857142857143 },
    { "fbeta", L, 3, yl, pl, 5, 0.5, 0.5, thr, 0.69767441860465118 },
    { "f1_samples", L, 3, yl, pl, 5, 1, 0.5, NULL, 0.59999999999999987 },
    { "fbeta_samples", L, 3, yl, pl, 5, 2, 0.5, NULL, 0.58888888888888891 },
    { "fbeta_samples", L, 3, yl, pl, 5, 2, 0.5, thr, 0.65396825396825398 },
};

/* Scores one case; returns the status, value in *out, message in err. */
static int run_case(const metric_case *c, double *out, char *err)
{
    const kp_metric_ops *ops = kp_metric_find(c->metric);
    assert_non_null(ops);
    kp_problem prob = { .task = c->task, .n_out = c->n_out };
    kp_metric_opts o = { .beta = c->beta, .threshold = c->threshold, .thresholds = c->thresholds,
                         .empty_score = 1 };
    return ops->score(&prob, c->y, c->p, c->n, &o, out, err, KP_ERRLEN);
}

static void test_metrics_match_scikit_learn(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[KP_ERRLEN] = "";
        double got = NAN;
        int rc = run_case(&cases[i], &got, err);
        if (rc != 0)
            fail_msg("case %zu (%s): %s", i, cases[i].metric, err);
        if (!(fabs(got - cases[i].want) <= 1e-9))
            fail_msg("case %zu (%s): got %.17g, scikit-learn %.17g", i, cases[i].metric, got,
                     cases[i].want);
    }
}

static void test_auc_all_tied_scores_is_one_half(void **state)
{
    (void)state;
    static const float y[] = { 0, 1, 0, 1, 1 }, p[] = { 0.3f, 0.3f, 0.3f, 0.3f, 0.3f };
    metric_case c = { "auc", B, 1, y, p, 5, 1, 0.5, NULL, 0.5 };
    double got = 0;
    char err[KP_ERRLEN];
    assert_int_equal(run_case(&c, &got, err), 0);
    assert_true(got == 0.5);
}

/* Returns the AUC by counting every (positive, negative) pair, ties as 1/2. */
static double pairwise_auc(const float *y, const float *p, int n)
{
    double good = 0, pairs = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            if (y[i] == 1 && y[j] == 0) {
                pairs += 1;
                good += p[i] > p[j] ? 1 : p[i] == p[j] ? 0.5 : 0;
            }
    return good / pairs;
}

static void test_auc_equals_pairwise_count_with_many_ties(void **state)
{
    (void)state;
    enum { N = 3000 };
    float *y = malloc(sizeof *y * N), *p = malloc(sizeof *p * N);
    uint64_t s = 12345;
    for (int i = 0; i < N; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        y[i] = (float)((s >> 33) % 3 == 0);
        p[i] = (float)((s >> 40) % 50) / 50.0f + 0.1f * y[i];   /* 60 distinct scores */
    }
    metric_case c = { "auc", B, 1, y, p, N, 1, 0.5, NULL, 0 };
    double got = 0;
    char err[KP_ERRLEN];
    assert_int_equal(run_case(&c, &got, err), 0);
    assert_true(fabs(got - pairwise_auc(y, p, N)) <= 1e-12);
    free(y);
    free(p);
}

static void test_fbeta_samples_row_with_nothing_true_or_predicted_scores_zero(void **state)
{
    (void)state;
    /* scikit-learn 1.2: fbeta_score([[0,0,0],[1,0,1]], same, beta=2, average='samples') = 0.5 */
    static const float y[] = { 0, 0, 0, 1, 0, 1 }, p[] = { 0.1f, 0.2f, 0.3f, 0.9f, 0.1f, 0.8f };
    metric_case c = { "fbeta_samples", L, 3, y, p, 2, 2, 0.5, NULL, 0 };
    double got = 0;
    char err[KP_ERRLEN];
    assert_int_equal(run_case(&c, &got, err), 0);
    assert_true(fabs(got - 0.5) <= 1e-15);
}

static void test_metric_null_opts_mean_defaults(void **state)
{
    (void)state;
    kp_problem prob = { .task = B, .n_out = 1 };
    double a = 0, b = 0;
    char err[KP_ERRLEN];
    kp_metric_opts d = kp_metric_defaults();
    assert_true(d.beta == 1 && d.threshold == 0.5 && d.thresholds == NULL);
    const kp_metric_ops *f = kp_metric_find("fbeta");
    assert_int_equal(f->score(&prob, yb, pb, 8, NULL, &a, err, sizeof err), 0);
    assert_int_equal(f->score(&prob, yb, pb, 8, &d, &b, err, sizeof err), 0);
    assert_true(a == b && fabs(a - 0.57142857142857151) <= 1e-9);
}

static void test_metric_registry_lists_each_metric_once(void **state)
{
    (void)state;
    static const char *const names[] = { "accuracy", "logloss", "auc", "rmse", "rmsle", "mae",
                                         "f1", "fbeta", "f1_samples", "fbeta_samples", "dice",
                                         "iou" };
    assert_int_equal(kp_metric_count(), 12);
    for (int i = 0; i < 12; i++) {
        const kp_metric_ops *m = kp_metric_find(names[i]);
        assert_non_null(m);
        assert_ptr_equal(kp_metric_at(i), m);
        assert_non_null(m->doc);
        assert_int_equal(m->greater_is_better,
                         strcmp(names[i], "logloss") && strcmp(names[i], "rmse") &&
                             strcmp(names[i], "rmsle") && strcmp(names[i], "mae"));
    }
    assert_null(kp_metric_find("roc_auc"));
    assert_null(kp_metric_at(12));
    assert_null(kp_metric_at(-1));
}

typedef struct error_case {
    metric_case c;
    int status;
    const char *message;
} error_case;

static const float y_neg[] = { 1, 2, -1 }, p_pos[] = { 1, 2, 3 }, p_neg[] = { 1, -0.5f, 3 };
static const float y_bad[] = { 0, 2, 1 }, p_nan[] = { NAN, 0.5f, 0.5f };
static const float y_one[] = { 1, 1, 1 }, ym_two[] = { 0, 1, 0, 1, 0, 1, 1 };

static const error_case errors[] = {
    { { "auc", R, 1, yr, pr, 5, 1, 0.5, NULL, 0 }, KP_ERR_ARG,
      "auc: not defined for task 'regression' (only binary, multiclass, multilabel)" },
    { { "logloss", L, 3, yl, pl, 5, 1, 0.5, NULL, 0 }, KP_ERR_ARG,
      "logloss: not defined for task 'multilabel' (only binary, multiclass)" },
    { { "rmse", B, 1, yb, pb, 8, 1, 0.5, NULL, 0 }, KP_ERR_ARG,
      "rmse: not defined for task 'binary' (only regression)" },
    { { "f1_samples", B, 1, yb, pb, 8, 1, 0.5, NULL, 0 }, KP_ERR_ARG,
      "f1_samples: not defined for task 'binary' (only multilabel)" },
    { { "rmsle", R, 1, y_neg, p_pos, 3, 1, 0.5, NULL, 0 }, KP_ERR_ARG,
      "rmsle: y_true[2] = -1 is negative; RMSLE needs values >= 0" },
    { { "rmsle", R, 1, p_pos, p_neg, 3, 1, 0.5, NULL, 0 }, KP_ERR_ARG,
      "rmsle: pred[1] = -0.5 is negative; RMSLE needs values >= 0" },
    { { "auc", B, 1, y_one, pb, 3, 1, 0.5, NULL, 0 }, KP_ERR_ARG,
      "auc: y_true holds only one class; AUC is not defined" },
    { { "auc", M, 3, ym_two, pm, 7, 1, 0.5, NULL, 0 }, KP_ERR_ARG,
      "auc: class 2 is absent or the only class in y_true; its AUC is not defined" },
    { { "auc", L, 3, yl, pl, 2, 1, 0.5, NULL, 0 }, KP_ERR_ARG,
      "auc: label 1 is all 0 or all 1 in y_true; its AUC is not defined" },
    { { "accuracy", B, 1, y_bad, pb, 3, 1, 0.5, NULL, 0 }, KP_ERR_ARG,
      "accuracy: y_true[1] = 2 is not 0 or 1" },
    { { "accuracy", L, 3, y_neg, pl, 1, 1, 0.5, NULL, 0 }, KP_ERR_ARG,
      "accuracy: y_true[0, 1] = 2 is not 0 or 1" },
    { { "logloss", M, 3, y_neg, pm, 3, 1, 0.5, NULL, 0 }, KP_ERR_ARG,
      "logloss: y_true[2] = -1 is not a class index" },
    { { "logloss", B, 1, yb, p_nan, 3, 1, 0.5, NULL, 0 }, KP_ERR_ARG,
      "logloss: pred[0] = nan is not finite" },
    { { "fbeta", B, 1, yb, pb, 8, 0, 0.5, NULL, 0 }, KP_ERR_ARG,
      "fbeta: beta = 0 must be a positive number" },
    { { "mae", R, 1, yr, pr, 0, 1, 0.5, NULL, 0 }, KP_ERR_ARG, "mae: no rows to score" },
    { { "accuracy", B, 3, yb, pb, 2, 1, 0.5, NULL, 0 }, KP_ERR_ARG,
      "accuracy: task 'binary' cannot have 3 outputs" },
};

static void test_metric_errors_name_the_problem_and_leave_output(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++) {
        char err[KP_ERRLEN] = "";
        double got = -123;
        int rc = run_case(&errors[i].c, &got, err);
        if (rc != errors[i].status || strcmp(err, errors[i].message) != 0 || got != -123)
            fail_msg("error case %zu: status %d, message \"%s\", out %g", i, rc, err, got);
    }
}

KP_TEST_GROUP(metrics)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_metrics_match_scikit_learn),
        cmocka_unit_test(test_auc_all_tied_scores_is_one_half),
        cmocka_unit_test(test_auc_equals_pairwise_count_with_many_ties),
        cmocka_unit_test(test_fbeta_samples_row_with_nothing_true_or_predicted_scores_zero),
        cmocka_unit_test(test_metric_null_opts_mean_defaults),
        cmocka_unit_test(test_metric_registry_lists_each_metric_once),
        cmocka_unit_test(test_metric_errors_name_the_problem_and_leave_output),
    };
    return KP_RUN(metrics, t);
}

/* test_thresholds.c - per-label thresholds for multi-label F-beta (stages/thresholds.c). */
#include "kp_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/err.h"
#include "../lib/rng.h"
#include "../models/metric.h"
#include "../stages/thresholds.h"

/* Scores thresholds thr with the registered metric `name` (beta given). */
static double metric_score(const char *name, double beta, int n, int L, const float *y,
                           const float *p, const float *thr)
{
    const kp_metric_ops *m = kp_metric_find(name);
    assert_non_null(m);
    kp_problem pb = { .task = KP_TASK_MULTILABEL, .n_out = L };
    kp_metric_opts o = kp_metric_defaults();
    o.beta = beta;
    o.thresholds = thr;
    double s = -1;
    char err[KP_ERRLEN] = "";
    assert_int_equal(m->score(&pb, y, p, n, &o, &s, err, sizeof err), 0);
    return s;
}

/* A noisy multi-label problem: p leans towards y. */
static void make_problem(uint64_t seed, int n, int L, float *y, float *p)
{
    kp_rng r;
    kp_rng_seed(&r, seed);
    for (int i = 0; i < n * L; i++) {
        y[i] = kp_rng_uniform(&r) < 0.4 ? 1.0f : 0.0f;
        p[i] = (float)(0.4 * y[i] + 0.6 * kp_rng_uniform(&r));
    }
}

/* The sample-averaged F2 of 8 rows x 3 labels at thresholds (a, b, c), inline. */
static double brute_score(const float *y, const float *p, const float *t)
{
    double sum = 0;
    for (int i = 0; i < 8; i++) {
        double tp = 0, fp = 0, fn = 0;
        for (int j = 0; j < 3; j++) {
            int d = p[i * 3 + j] > t[j], yes = y[i * 3 + j] == 1;
            tp += d && yes, fp += d && !yes, fn += !d && yes;
        }
        double den = 5 * tp + 4 * fn + fp;
        sum += den > 0 ? 5 * tp / den : 0;
    }
    return sum / 8;
}

static void test_thresholds_reach_the_brute_force_optimum_on_a_tiny_case(void **state)
{
    (void)state;
    float y[24], p[24], thr[3], t[3];
    char err[KP_ERRLEN] = "";
    make_problem(11, 8, 3, y, p);
    double best = -1;
    for (int a = 1; a < 100; a++)
        for (int b = 1; b < 100; b++)
            for (int c = 1; c < 100; c++) {
                t[0] = (float)(a / 100.0), t[1] = (float)(b / 100.0), t[2] = (float)(c / 100.0);
                double s = brute_score(y, p, t);
                best = s > best ? s : best;
            }
    kp_problem pb = { .task = KP_TASK_MULTILABEL, .n_out = 3 };
    assert_int_equal(kp_thresholds_search(&pb, y, p, 8, 2.0, thr, err, sizeof err), 0);
    double got = metric_score("fbeta_samples", 2.0, 8, 3, y, p, thr);
    assert_true(fabs(got - best) < 1e-12);
    assert_true(fabs(brute_score(y, p, thr) - got) < 1e-12);   /* the inline scorer agrees */
    assert_true(best > metric_score("fbeta_samples", 2.0, 8, 3, y, p, (float[]){.5f, .5f, .5f}));
}

static void test_thresholds_separate_separable_labels_perfectly(void **state)
{
    (void)state;
    /* label 0: positives from 0.62, negatives up to 0.34; label 1: 0.21 / 0.08
     * (every row has a label: a row without any scores 0 whatever is predicted) */
    const float y[] = {1, 0, 0, 1, 1, 1, 1, 0, 1, 0, 0, 1};
    const float p[] = {0.90f, 0.05f, 0.30f, 0.40f, 0.62f, 0.21f,
                       0.95f, 0.08f, 0.70f, 0.02f, 0.34f, 0.55f};
    float thr[2];
    char err[KP_ERRLEN] = "";
    kp_problem pb = { .task = KP_TASK_MULTILABEL, .n_out = 2 };
    assert_int_equal(kp_thresholds_search(&pb, y, p, 6, 2.0, thr, err, sizeof err), 0);
    assert_true(metric_score("fbeta_samples", 2.0, 6, 2, y, p, thr) == 1.0);
    assert_true(thr[0] >= 0.34f && thr[0] < 0.62f);
    assert_true(thr[1] >= 0.08f && thr[1] < 0.21f);
}

static void test_thresholds_take_the_middle_of_the_best_plateau(void **state)
{
    (void)state;
    /* One label: a row without the label scores 0 whatever is predicted, so
     * every threshold below the smallest positive (0.305) is best: grid
     * 0.01 .. 0.30, whose middle is 0.15. */
    const float y[] = {1, 0, 1, 0, 1};
    const float p[] = {0.305f, 0.9f, 0.8f, 0.5f, 0.6f};
    float thr[1];
    char err[KP_ERRLEN] = "";
    kp_problem pb = { .task = KP_TASK_MULTILABEL, .n_out = 1 };
    assert_int_equal(kp_thresholds_search(&pb, y, p, 5, 1.0, thr, err, sizeof err), 0);
    assert_true(thr[0] == (float)0.15);
}

static void test_thresholds_never_score_below_the_common_half(void **state)
{
    (void)state;
    enum { n = 200, L = 5 };
    static float y[n * L], p[n * L];
    float thr[L], half[L] = {.5f, .5f, .5f, .5f, .5f};
    char err[KP_ERRLEN] = "";
    kp_problem pb = { .task = KP_TASK_MULTILABEL, .n_out = L };
    for (uint64_t seed = 1; seed <= 5; seed++) {
        make_problem(seed, n, L, y, p);
        for (int beta = 1; beta <= 2; beta++) {
            assert_int_equal(kp_thresholds_search(&pb, y, p, n, beta, thr, err, sizeof err), 0);
            assert_true(metric_score("fbeta_samples", beta, n, L, y, p, thr) >
                        metric_score("fbeta_samples", beta, n, L, y, p, half));
        }
    }
}

static void test_thresholds_lower_for_f2_than_for_f1(void **state)
{
    (void)state;
    enum { n = 300, L = 4 };
    static float y[n * L], p[n * L];
    float t1[L], t2[L];
    char err[KP_ERRLEN] = "";
    kp_problem pb = { .task = KP_TASK_MULTILABEL, .n_out = L };
    make_problem(5, n, L, y, p);
    assert_int_equal(kp_thresholds_search(&pb, y, p, n, 1.0, t1, err, sizeof err), 0);
    assert_int_equal(kp_thresholds_search(&pb, y, p, n, 2.0, t2, err, sizeof err), 0);
    double m1 = 0, m2 = 0;
    for (int j = 0; j < L; j++)
        m1 += t1[j], m2 += t2[j];
    assert_true(m2 < m1);   /* F2 weighs recall: labels are predicted more readily */
}

static void test_thresholds_refuse_a_task_that_is_not_multilabel(void **state)
{
    (void)state;
    const float y[] = {0, 1}, p[] = {0.2f, 0.7f};
    float thr[1] = {-7};
    char err[KP_ERRLEN] = "";
    kp_problem pb = { .task = KP_TASK_BINARY, .n_out = 1 };
    assert_int_equal(kp_thresholds_search(&pb, y, p, 2, 2.0, thr, err, sizeof err), KP_ERR_ARG);
    assert_non_null(strstr(err, "a binary task"));
    assert_non_null(strstr(err, "multilabel only"));
    assert_true(thr[0] == -7);
}

static void test_thresholds_refuse_a_prediction_that_is_not_finite(void **state)
{
    (void)state;
    const float y[] = {0, 1, 1, 0}, p[] = {0.2f, 0.7f, NAN, 0.1f};
    float thr[2] = {-7, -7};
    char err[KP_ERRLEN] = "";
    kp_problem pb = { .task = KP_TASK_MULTILABEL, .n_out = 2 };
    assert_int_equal(kp_thresholds_search(&pb, y, p, 2, 2.0, thr, err, sizeof err), KP_ERR_ARG);
    assert_non_null(strstr(err, "prediction [1, 0] = nan is not finite"));
    assert_true(thr[0] == -7 && thr[1] == -7);
}

static void test_thresholds_for_preds_search_and_log_for_samples_metrics(void **state)
{
    (void)state;
    enum { n = 100, L = 3 };
    static float y[n * L], p[n * L];
    char err[KP_ERRLEN] = "", *text = NULL;
    size_t len = 0;
    float *thr = NULL;
    double after = -1;
    kp_problem pb = { .task = KP_TASK_MULTILABEL, .n_out = L };
    kp_metric_opts o = kp_metric_defaults();
    o.beta = 2;
    make_problem(3, n, L, y, p);
    FILE *log = open_memstream(&text, &len);
    assert_int_equal(kp_thresholds_for_preds(kp_metric_find("fbeta_samples"), &o, &pb, y, p, n,
                                             log, &thr, &after, err, sizeof err), 0);
    fclose(log);
    assert_non_null(thr);
    assert_true(after == metric_score("fbeta_samples", 2, n, L, y, p, thr));
    char want[128];
    snprintf(want, sizeof want, "with per-label thresholds [%.2f, ", (double)thr[0]);
    assert_non_null(strstr(text, "thresholds: oof fbeta_samples "));
    assert_non_null(strstr(text, want));
    free(thr);
    free(text);
}

static void test_thresholds_for_preds_skip_micro_metrics(void **state)
{
    (void)state;
    const float y[] = {0, 1, 1, 0}, p[] = {0.2f, 0.7f, 0.6f, 0.1f};
    float *thr = (float *)1;
    double after = -1;
    char err[KP_ERRLEN] = "";
    kp_problem pb = { .task = KP_TASK_MULTILABEL, .n_out = 2 };
    kp_metric_opts o = kp_metric_defaults();
    assert_int_equal(kp_thresholds_for_preds(kp_metric_find("fbeta"), &o, &pb, y, p, 2, NULL,
                                             &thr, &after, err, sizeof err), 0);
    assert_null(thr);
    assert_true(after == -1);
}

KP_TEST_GROUP(thresholds)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_thresholds_reach_the_brute_force_optimum_on_a_tiny_case),
        cmocka_unit_test(test_thresholds_separate_separable_labels_perfectly),
        cmocka_unit_test(test_thresholds_take_the_middle_of_the_best_plateau),
        cmocka_unit_test(test_thresholds_never_score_below_the_common_half),
        cmocka_unit_test(test_thresholds_lower_for_f2_than_for_f1),
        cmocka_unit_test(test_thresholds_refuse_a_task_that_is_not_multilabel),
        cmocka_unit_test(test_thresholds_refuse_a_prediction_that_is_not_finite),
        cmocka_unit_test(test_thresholds_for_preds_search_and_log_for_samples_metrics),
        cmocka_unit_test(test_thresholds_for_preds_skip_micro_metrics),
    };
    return KP_RUN(thresholds, t);
}

/* test_seg_metrics.c - the dice and iou metrics on tiny hand-computed masks,
 * the empty-mask convention, multi-class maps, and their errors. */
#include "kp_test.h"

#include <math.h>
#include <string.h>
#include "../lib/err.h"
#include "../models/metric.h"

/* 2 x 3 masks, one channel.  Image a: A = {0, 1, 4}, pred > 0.5 = {0, 2, 4}
 * (pixel 1 sits exactly on 0.5: not positive); image b: both empty;
 * image c: nothing true, two predicted; image d: two true, nothing predicted. */
static const float ya[] = { 1, 1, 0, 0, 1, 0 };
static const float pa[] = { 0.9f, 0.5f, 0.6f, 0.1f, 0.7f, 0.2f };
static const float yab[] = { 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0 };
static const float pab[] = { 0.9f, 0.5f, 0.6f, 0.1f, 0.7f, 0.2f, 0.1f, 0.2f, 0.3f, 0.4f, 0, 0.5f };
static const float yc[] = { 0, 0, 0, 0, 0, 0 };
static const float pc[] = { 0.9f, 0.1f, 0.1f, 0.1f, 0.1f, 0.8f };
static const float yd[] = { 0, 1, 0, 0, 0, 1 };
static const float pd[] = { 0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.0f };

/* 2 x 2 maps, three channels (CHW).  Image m1: y = [0 1; 2 1], argmax =
 * [0 1; 2 2] (pixel 3: 0.3, 0.3, 0.4); class 1: A = {1, 3}, B = {1}; class 2:
 * A = {2}, B = {2, 3}.  Image m2: y = [0 1; 1 0], argmax = [0 1; 0 0]
 * (pixel 2 ties 0.4 / 0.4: the first channel wins); class 2 empty in both. */
static const float ym1[] = { 0, 1, 2, 1 };
static const float pm1[] = { 0.8f, 0.1f, 0.2f, 0.3f,  0.1f, 0.7f, 0.3f, 0.3f,
                             0.1f, 0.2f, 0.5f, 0.4f };
static const float ym2[] = { 0, 1, 1, 0 };
static const float pm2[] = { 0.8f, 0.1f, 0.4f, 0.5f,  0.1f, 0.7f, 0.4f, 0.2f,
                             0.1f, 0.2f, 0.2f, 0.3f };
static const float ym12[] = { 0, 1, 2, 1,  0, 1, 1, 0 };
static const float pm12[] = { 0.8f, 0.1f, 0.2f, 0.3f,  0.1f, 0.7f, 0.3f, 0.3f,
                              0.1f, 0.2f, 0.5f, 0.4f,
                              0.8f, 0.1f, 0.4f, 0.5f,  0.1f, 0.7f, 0.4f, 0.2f,
                              0.1f, 0.2f, 0.2f, 0.3f };

typedef struct seg_case {
    const char *metric;
    int c, h, w;
    const float *y, *p;
    int64_t n;
    double threshold, empty, want;
} seg_case;

static const seg_case cases[] = {
    { "dice", 1, 2, 3, ya, pa, 1, 0.5, 1, 2.0 / 3 },           /* 2*2 / (3+3) */
    { "iou", 1, 2, 3, ya, pa, 1, 0.5, 1, 0.5 },                /* 2 / 4 */
    { "dice", 1, 2, 3, ya, pa, 1, 0.3, 1, 6.0 / 7 },           /* B = {0,1,2,4} */
    { "iou", 1, 2, 3, ya, pa, 1, 0.3, 1, 0.75 },
    { "dice", 1, 2, 3, yab, pab, 2, 0.5, 1, (2.0 / 3 + 1) / 2 },   /* b both empty */
    { "dice", 1, 2, 3, yab, pab, 2, 0.5, 0, (2.0 / 3 + 0) / 2 },
    { "iou", 1, 2, 3, yab, pab, 2, 0.5, 1, (0.5 + 1) / 2 },
    { "iou", 1, 2, 3, yab, pab, 2, 0.5, 0, (0.5 + 0) / 2 },
    { "dice", 1, 2, 3, yc, pc, 1, 0.5, 1, 0 },                 /* only predicted */
    { "iou", 1, 2, 3, yc, pc, 1, 0.5, 1, 0 },
    { "dice", 1, 2, 3, yd, pd, 1, 0.5, 1, 0 },                 /* only true */
    { "iou", 1, 2, 3, yd, pd, 1, 0.5, 1, 0 },
    { "dice", 1, 2, 3, ya, ya, 1, 0.5, 0, 1 },                 /* perfect */
    { "dice", 3, 2, 2, ym1, pm1, 1, 0.5, 1, 2.0 / 3 },         /* (2/3 + 2/3) / 2 */
    { "iou", 3, 2, 2, ym1, pm1, 1, 0.5, 1, 0.5 },
    { "dice", 3, 2, 2, ym2, pm2, 1, 0.5, 1, (2.0 / 3 + 1) / 2 },
    { "dice", 3, 2, 2, ym2, pm2, 1, 0.5, 0, (2.0 / 3 + 0) / 2 },
    { "iou", 3, 2, 2, ym2, pm2, 1, 0.5, 1, (0.5 + 1) / 2 },
    { "dice", 3, 2, 2, ym12, pm12, 2, 0.5, 1, (2.0 / 3 + 2.0 / 3 + 2.0 / 3 + 1) / 4 },
    { "iou", 3, 2, 2, ym12, pm12, 2, 0.5, 0, (0.5 + 0.5 + 0.5 + 0) / 4 },
};

/* Scores one case; returns the status, value in *out, message in err. */
static int run_case(const seg_case *c, double *out, char *err)
{
    const kp_metric_ops *ops = kp_metric_find(c->metric);
    assert_non_null(ops);
    kp_problem pb = { .task = KP_TASK_SEGMENTATION, .n_out = c->c * c->h * c->w,
                      .mask_c = c->c, .mask_h = c->h, .mask_w = c->w };
    kp_metric_opts o = kp_metric_defaults();
    o.threshold = c->threshold;
    o.empty_score = c->empty;
    return ops->score(&pb, c->y, c->p, c->n, &o, out, err, KP_ERRLEN);
}

static void test_seg_metrics_match_hand_computed_masks(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[KP_ERRLEN] = "";
        double got = NAN;
        if (run_case(&cases[i], &got, err) != 0)
            fail_msg("case %zu (%s): %s", i, cases[i].metric, err);
        if (!(fabs(got - cases[i].want) <= 1e-12))
            fail_msg("case %zu (%s): got %.17g, want %.17g", i, cases[i].metric, got,
                     cases[i].want);
    }
}

/* NULL options: threshold 0.5 and empty masks scoring 1. */
static void test_seg_metrics_null_opts_mean_threshold_half_and_empty_one(void **state)
{
    (void)state;
    kp_problem pb = { .task = KP_TASK_SEGMENTATION, .n_out = 6, .mask_c = 1, .mask_h = 2,
                      .mask_w = 3 };
    double got = 0;
    char err[KP_ERRLEN];
    assert_int_equal(kp_metric_find("dice")->score(&pb, yab, pab, 2, NULL, &got, err,
                                                    sizeof err), 0);
    assert_true(fabs(got - 5.0 / 6) <= 1e-12);
    assert_true(kp_metric_defaults().empty_score == 1);
}

static void test_seg_metrics_are_registered_for_segmentation_only(void **state)
{
    (void)state;
    static const char *const names[] = { "dice", "iou" };
    for (int i = 0; i < 2; i++) {
        const kp_metric_ops *m = kp_metric_find(names[i]);
        assert_non_null(m);
        assert_string_equal(m->name, names[i]);
        assert_non_null(m->doc);
        assert_int_equal(m->greater_is_better, 1);
        assert_int_equal(m->tasks, KP_TASK_BIT(KP_TASK_SEGMENTATION));
    }
}

typedef struct seg_error {
    const char *metric;
    kp_task_kind task;
    int c, h, w, n_out;
    const float *y, *p;
    int64_t n;
    const char *message;
} seg_error;

static const float y_two[] = { 0, 1, 0, 0, 1, 2 };
static const float y_nan[] = { 0, 1, NAN, 0, 1, 0 };
static const float y_cls3[] = { 0, 1, 2, 1,  0, 3, 0, 0 };
static const float y_half[] = { 0, 1.5f, 2, 1 };
static const float p_nan[] = { 0.8f, 0.1f, 0.2f, 0.3f,  0.1f, 0.7f, 0.3f, 0.3f,
                               0.1f, 0.2f, NAN, 0.4f };

static const seg_error errors[] = {
    { "dice", KP_TASK_BINARY, 0, 0, 0, 1, ya, pa, 6,
      "dice: not defined for task 'binary' (only segmentation)" },
    { "iou", KP_TASK_SEGMENTATION, 1, 2, 3, 5, ya, pa, 1,
      "iou: segmentation maps of 1x2x3 cannot have 5 outputs" },
    { "dice", KP_TASK_SEGMENTATION, 1, 2, 3, 6, ya, pa, 0, "dice: no rows to score" },
    { "dice", KP_TASK_SEGMENTATION, 1, 2, 3, 6, y_two, pa, 1,
      "dice: y_true[image 0, row 1, column 2] = 2 is not 0 or 1" },
    { "iou", KP_TASK_SEGMENTATION, 1, 2, 3, 6, y_nan, pa, 1,
      "iou: y_true[image 0, row 0, column 2] = nan is not 0 or 1" },
    { "iou", KP_TASK_SEGMENTATION, 3, 2, 2, 12, y_cls3, pm12, 2,
      "iou: y_true[image 1, row 0, column 1] = 3 is not a class index in 0..2" },
    { "dice", KP_TASK_SEGMENTATION, 3, 2, 2, 12, y_half, pm1, 1,
      "dice: y_true[image 0, row 0, column 1] = 1.5 is not a class index in 0..2" },
    { "dice", KP_TASK_SEGMENTATION, 3, 2, 2, 12, ym1, p_nan, 1,
      "dice: pred[image 0, channel 2, row 1, column 0] = nan is not finite" },
};

static void test_seg_metrics_errors_name_the_pixel_and_leave_output(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++) {
        const seg_error *e = &errors[i];
        kp_problem pb = { .task = e->task, .n_out = e->n_out, .mask_c = e->c, .mask_h = e->h,
                          .mask_w = e->w };
        char err[KP_ERRLEN] = "";
        double got = -123;
        int rc = kp_metric_find(e->metric)->score(&pb, e->y, e->p, e->n, NULL, &got, err,
                                                  sizeof err);
        if (rc != KP_ERR_ARG || strcmp(err, e->message) != 0 || got != -123)
            fail_msg("error case %zu: status %d, message \"%s\", out %g", i, rc, err, got);
    }
}

KP_TEST_GROUP(seg_metrics)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_seg_metrics_match_hand_computed_masks),
        cmocka_unit_test(test_seg_metrics_null_opts_mean_threshold_half_and_empty_one),
        cmocka_unit_test(test_seg_metrics_are_registered_for_segmentation_only),
        cmocka_unit_test(test_seg_metrics_errors_name_the_pixel_and_leave_output),
    };
    return KP_RUN(seg_metrics, t);
}

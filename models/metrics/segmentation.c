/* segmentation.c - Dice and IoU of predicted masks, averaged over images.
 *
 * pred holds one CHW map per image (mask_c channels of mask_h x mask_w);
 * y_true one mask_h x mask_w mask per image.  The predicted mask is
 * pred > threshold for one channel, the argmax over the channels (the first
 * on ties) for several.  Per image, and per class 1..mask_c-1 for several
 * channels, with A the true and B the predicted pixels:
 *   dice = 2 |A n B| / (|A| + |B|),   iou = |A n B| / |A u B|,
 * and empty_score (default 1) when A and B are both empty.  The score is the
 * mean over images (and classes), as Kaggle scored Carvana and Ultrasound
 * Nerve (where an empty prediction of an empty mask scores 1).
 */
#include <math.h>
#include <stdlib.h>
#include "../../lib/err.h"
#include "common.h"

#define SEG_TASKS KP_TASK_BIT(KP_TASK_SEGMENTATION)

typedef enum seg_score { SEG_DICE, SEG_IOU } seg_score;

/* Pixel counts of one image and class: true, predicted, both. */
typedef struct seg_counts { int64_t t, p, both; } seg_counts;

/* Checks the task and the map geometry; 0 or KP_ERR_ARG. */
static int check_problem(const char *name, const kp_problem *pb, int64_t n, char *err,
                         size_t errlen)
{
    if (pb->task != KP_TASK_SEGMENTATION)
        return kp_errf(err, errlen, KP_ERR_ARG, "%s: not defined for task '%s' (only "
                       "segmentation)", name, (unsigned)pb->task < KP_TASK_COUNT
                       ? kp_task_name(pb->task) : "?");
    if (pb->mask_c < 1 || pb->mask_h < 1 || pb->mask_w < 1 ||
        (int64_t)pb->mask_c * pb->mask_h * pb->mask_w != pb->n_out)
        return kp_errf(err, errlen, KP_ERR_ARG, "%s: segmentation maps of %dx%dx%d cannot have "
                       "%d outputs", name, pb->mask_c, pb->mask_h, pb->mask_w, pb->n_out);
    if (n < 1)
        return kp_errf(err, errlen, KP_ERR_ARG, "%s: no rows to score", name);
    return 0;
}

/* Returns 1 if v is a mask value for maps of c channels: 0/1, or a class index. */
static int valid_target(int c, float v)
{
    return c == 1 ? v == 0 || v == 1 : v >= 0 && v < c && v == floorf(v);
}

/* Checks every y_true value and every prediction; 0 or KP_ERR_ARG naming the
 * image, channel, row and column. */
static int check_values(const char *name, const kp_problem *pb, const float *y_true,
                        const float *pred, int64_t n, char *err, size_t errlen)
{
    int64_t P = (int64_t)pb->mask_h * pb->mask_w;
    for (int64_t i = 0; i < n * P; i++)
        if (!valid_target(pb->mask_c, y_true[i])) {
            int64_t j = i % P;
            if (pb->mask_c == 1)
                return kp_errf(err, errlen, KP_ERR_ARG, "%s: y_true[image %lld, row %lld, column "
                               "%lld] = %g is not 0 or 1", name, (long long)(i / P),
                               (long long)(j / pb->mask_w), (long long)(j % pb->mask_w),
                               (double)y_true[i]);
            return kp_errf(err, errlen, KP_ERR_ARG, "%s: y_true[image %lld, row %lld, column %lld] "
                           "= %g is not a class index in 0..%d", name, (long long)(i / P),
                           (long long)(j / pb->mask_w), (long long)(j % pb->mask_w),
                           (double)y_true[i], pb->mask_c - 1);
        }
    for (int64_t i = 0; i < n * pb->n_out; i++)
        if (!isfinite(pred[i])) {
            int64_t j = i % P, k = i / P % pb->mask_c;
            return kp_errf(err, errlen, KP_ERR_ARG, "%s: pred[image %lld, channel %lld, row %lld, "
                           "column %lld] = %g is not finite", name, (long long)(i / pb->n_out),
                           (long long)k, (long long)(j / pb->mask_w),
                           (long long)(j % pb->mask_w), (double)pred[i]);
        }
    return 0;
}

static double overlap_score(seg_score kind, seg_counts c, double empty)
{
    if (c.t + c.p == 0)
        return empty;
    double both = (double)c.both;
    return kind == SEG_DICE ? 2 * both / (double)(c.t + c.p) : both / (double)(c.t + c.p - c.both);
}

/* One channel: the score of an image's pred > threshold against y. */
static double binary_image(seg_score kind, int64_t P, const float *y, const float *p,
                           const kp_metric_opts *o)
{
    seg_counts c = { 0, 0, 0 };
    for (int64_t j = 0; j < P; j++) {
        int t = y[j] == 1, d = p[j] > o->threshold;
        c.t += t;
        c.p += d;
        c.both += t && d;
    }
    return overlap_score(kind, c, o->empty_score);
}

/* Returns the channel of the largest of the nc values at p, stride P (the first on ties). */
static int argmax_strided(const float *p, int nc, int64_t P)
{
    int best = 0;
    for (int k = 1; k < nc; k++)
        if (p[k * P] > p[best * P])
            best = k;
    return best;
}

/* Several channels: the sum over classes 1..nc-1 of an image's argmax-mask
 * scores against y; counts: nc scratch counters. */
static double multi_image(seg_score kind, int nc, int64_t P, const float *y, const float *p,
                          const kp_metric_opts *o, seg_counts *counts)
{
    for (int k = 0; k < nc; k++)
        counts[k] = (seg_counts){ 0, 0, 0 };
    for (int64_t j = 0; j < P; j++) {
        int t = (int)y[j], d = argmax_strided(p + j, nc, P);
        counts[t].t++;
        counts[d].p++;
        counts[t].both += t == d;
    }
    double sum = 0;
    for (int k = 1; k < nc; k++)
        sum += overlap_score(kind, counts[k], o->empty_score);
    return sum;
}

/* Mean per-image (and per-class) score into *out. */
static int seg_score_all(const char *name, seg_score kind, const kp_problem *pb,
                         const float *y_true, const float *pred, int64_t n,
                         const kp_metric_opts *opts, double *out, char *err, size_t errlen)
{
    int rc = check_problem(name, pb, n, err, errlen);
    if (rc == 0)
        rc = check_values(name, pb, y_true, pred, n, err, errlen);
    if (rc < 0)
        return rc;
    kp_metric_opts o = km_opts(opts);
    int nc = pb->mask_c;
    int64_t P = (int64_t)pb->mask_h * pb->mask_w;
    seg_counts counts[256], *cnt = nc <= 256 ? counts : malloc(sizeof *cnt * (size_t)nc);
    if (!cnt)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory for %d classes", name, nc);
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        const float *y = y_true + i * P, *p = pred + i * pb->n_out;
        sum += nc == 1 ? binary_image(kind, P, y, p, &o) : multi_image(kind, nc, P, y, p, &o, cnt);
    }
    if (cnt != counts)
        free(cnt);
    *out = sum / ((double)n * (nc == 1 ? 1 : nc - 1));
    return 0;
}

static int dice_score(const kp_problem *pb, const float *y_true, const float *pred, int64_t n,
                      const kp_metric_opts *opts, double *out, char *err, size_t errlen)
{
    return seg_score_all("dice", SEG_DICE, pb, y_true, pred, n, opts, out, err, errlen);
}

static int iou_score(const kp_problem *pb, const float *y_true, const float *pred, int64_t n,
                     const kp_metric_opts *opts, double *out, char *err, size_t errlen)
{
    return seg_score_all("iou", SEG_IOU, pb, y_true, pred, n, opts, out, err, errlen);
}

const kp_metric_ops kp_metric_dice = {
    .name = "dice", .doc = "Dice of the predicted masks, mean over images (and classes 1..C-1)",
    .greater_is_better = 1, .tasks = SEG_TASKS, .score = dice_score,
};

const kp_metric_ops kp_metric_iou = {
    .name = "iou", .doc = "IoU (Jaccard) of the predicted masks, mean over images (and classes)",
    .greater_is_better = 1, .tasks = SEG_TASKS, .score = iou_score,
};

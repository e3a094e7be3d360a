/* metric.h - competition metrics behind one interface.
 *
 * y_true and pred follow the layout of model.h (pred has n_out values per
 * row; y_true one value per row, or n_out for multilabel).  Adding a metric is
 * one file in models/metrics/ and one line in models/metrics/registry.c.
 * Registered names: accuracy, logloss, auc, rmse, rmsle, mae, f1, fbeta,
 * f1_samples, fbeta_samples, dice, iou.  f1/fbeta are the positive-class score for
 * binary tasks and micro-averaged for multiclass/multilabel; *_samples are
 * sample-averaged (multilabel, as Planet scored F2).
 */
#ifndef KP_METRIC_H
#define KP_METRIC_H

#include <stdint.h>
#include <stddef.h>
#include "model.h"

typedef struct kp_metric_opts {
    double beta;        /* F-beta's beta (default 1) */
    double threshold;   /* probability threshold for label metrics (default 0.5) */
    const float *thresholds; /* per-output thresholds (multilabel) or NULL */
    double empty_score; /* dice/iou of an image whose true and predicted masks are
                           both empty (default 1, as Kaggle's Dice is defined) */
} kp_metric_opts;

typedef struct kp_metric_ops {
    const char *name;
    const char *doc;
    int greater_is_better;
    unsigned tasks;    /* KP_TASK_BIT mask */
    /* Scores n rows into *out; errors on shape/value problems (e.g. rmsle on negatives). */
    int (*score)(const kp_problem *pb, const float *y_true, const float *pred, int64_t n,
                 const kp_metric_opts *o, double *out, char *err, size_t errlen);
} kp_metric_ops;

/* Returns the registered metric called name, or NULL. */
const kp_metric_ops *kp_metric_find(const char *name);

/* Returns the number of registered metrics and, via kp_metric_at, each one. */
int kp_metric_count(void);
const kp_metric_ops *kp_metric_at(int i);

/* Default options: beta 1, threshold 0.5, no per-output thresholds. */
kp_metric_opts kp_metric_defaults(void);

#endif

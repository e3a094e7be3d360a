/* common.h - checks and helpers shared by the metrics (internal to models/metrics/). */
#ifndef KP_METRIC_COMMON_H
#define KP_METRIC_COMMON_H

#include <stdint.h>
#include <stddef.h>
#include "../metric.h"

/* Checks that the task is in `tasks`, n >= 1, n_out fits the task, every
 * y_true value fits the task (0/1, class index, finite) and every prediction
 * is finite; 0 or KP_ERR_ARG with a message starting "NAME: ". */
int km_check(const char *name, unsigned tasks, const kp_problem *pb, const float *y_true,
             const float *pred, int64_t n, char *err, size_t errlen);

/* Returns *o, or kp_metric_defaults() when o is NULL. */
kp_metric_opts km_opts(const kp_metric_opts *o);

/* Returns 1 if pred is a positive decision for output k: pred > threshold
 * (o->thresholds[k] when given, else o->threshold). */
int km_positive(const kp_metric_opts *o, int k, float pred);

/* Returns the index of the largest of the n values (the first on ties). */
int km_argmax(const float *v, int n);

/* Returns the number of y_true values per row: n_out for multilabel, else 1. */
int km_y_width(const kp_problem *pb);

#endif

/* thresholds.h - per-class decision thresholds for multi-label tasks.
 *
 * A multi-label model outputs one probability per label; the submission
 * writes the labels whose probability is above a threshold.  Scored by a
 * sample-averaged F-beta (Planet's F2), one threshold per label searched on
 * the out-of-fold predictions beats the single 0.5 by a wide margin, as the
 * Planet winners found.  The search: every threshold starts at the best
 * common value of the grid 0.01, 0.02, ..., 0.99; then passes of coordinate
 * ascent (label 0, 1, ... in order) move one label's threshold to the grid
 * value that maximises the score with the others fixed, until a pass changes
 * nothing (at most KP_THRESHOLDS_PASSES passes).  A threshold moves only on a
 * strict gain, to the middle of the first run of grid values that reach the
 * best score.  Decisions are pred > threshold, as the metrics take them.
 * Deterministic and single-threaded: same inputs, same bits.
 */
#ifndef KP_THRESHOLDS_H
#define KP_THRESHOLDS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "../models/metric.h"
#include "../models/model.h"

#define KP_THRESHOLDS_GRID 99     /* candidates k / 100, k = 1 .. 99 */
#define KP_THRESHOLDS_PASSES 8    /* at most this many coordinate-ascent passes */

/* Searches per-label thresholds maximising the sample-averaged F-beta of oof
 * (n rows x pb->n_out probabilities) against y (n x n_out, 0/1) into
 * thr[pb->n_out] (caller-allocated; untouched on failure).  0, KP_ERR_ARG (not
 * multilabel, n < 1, beta not positive, a y not 0/1, a prediction not
 * finite) or KP_ERR_NOMEM, with the message in err. */
int kp_thresholds_search(const kp_problem *pb, const float *y, const float *oof, int64_t n,
                         double beta, float *thr, char *err, size_t errlen);

/* Returns 1 when thresholds apply to predictions of pb scored by metric m:
 * a multilabel task and metric f1_samples or fbeta_samples. */
int kp_thresholds_apply(const kp_metric_ops *m, const kp_problem *pb);

/* For predictions where kp_thresholds_apply holds: searches the thresholds
 * on oof (beta from o; 1 for f1_samples), logs the OOF score at o's common
 * threshold and with the thresholds, and returns them in *thr (caller frees)
 * and that score in *after.  Otherwise *thr = NULL.  0 or a negative status. */
int kp_thresholds_for_preds(const kp_metric_ops *m, const kp_metric_opts *o,
                            const kp_problem *pb, const float *y, const float *oof, int64_t n,
                            FILE *log, float **thr, double *after, char *err, size_t errlen);

#endif

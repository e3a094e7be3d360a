/* postproc.h - segmentation post-processing chosen on out-of-fold maps.
 *
 * A probability map becomes a mask by a threshold (binary masks; argmax
 * for several classes) and then loses every 8-connected component smaller
 * than min_size pixels (set to background), as Ultrasound Nerve and Carvana
 * solutions cleaned their masks.  The k-fold and TTA merges search both on
 * the OOF maps to maximise the competition metric (Dice or IoU, per image,
 * lib/mask.h components): first the threshold on a 0.05 grid from 0.1 to
 * 0.9 with no filtering, then the minimum size among 0 and fractions of the
 * image (0.05% .. 5%), then the threshold again; a value replaces the
 * current one only when it scores strictly better, so ties keep the
 * plainer choice.  The choice is written into the predictions' metadata
 * ("postproc": {"threshold": T, "min_size": S}) and used by submit.
 */
#ifndef KP_POSTPROC_H
#define KP_POSTPROC_H

#include <stdint.h>
#include <stdio.h>
#include "../models/metric.h"

typedef struct kp_postproc {
    float threshold;    /* binary masks: pixel in the mask when p > threshold */
    int min_size;       /* components below this many pixels are removed (0: none) */
} kp_postproc;

/* The default: threshold 0.5, no filtering. */
kp_postproc kp_postproc_default(void);

/* Turns one map (pb->n_out floats, CHW) into a mask of mask_h x mask_w
 * bytes (0/1, or the class); work: kp_postproc_work_size bytes. */
void kp_postproc_apply(const kp_postproc *pp, const kp_problem *pb, const float *map,
                       uint8_t *mask, void *work);

/* Bytes of work kp_postproc_apply needs for maps of w x h. */
size_t kp_postproc_work_size(int w, int h);

/* Searches pp on the OOF maps oof (n rows of pb->n_out) against y, scored by
 * metric m with options o; logs the steps; *score gets the OOF score with
 * the chosen pp.  threads: images in parallel.  0 or a status. */
int kp_postproc_search(const kp_metric_ops *m, const kp_metric_opts *o, const kp_problem *pb,
                       const float *y, const float *oof, int64_t n, int threads, FILE *log,
                       kp_postproc *pp, double *score, char *err, size_t errlen);

/* For a merge writing predictions: searches pp (as above) and writes the
 * metadata texts: json {"threshold": T, "min_size": S} (128 bytes) and num,
 * the OOF score with pp (64 bytes).  0 or a status with a message. */
int kp_postproc_for_preds(const kp_metric_ops *m, const kp_metric_opts *o,
                          const kp_problem *pb, const float *y, const float *oof, int64_t n,
                          int threads, FILE *log, char json[128], char num[64], char *err,
                          size_t errlen);

/* Writes the metadata text {"threshold": T, "min_size": S} into buf. */
void kp_postproc_json(const kp_postproc *pp, char *buf, size_t len);

/* Parses that text into *pp; 0 or KP_ERR_FORMAT. */
int kp_postproc_parse(const char *s, kp_postproc *pp);

#endif

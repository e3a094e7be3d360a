/* submit_masks.h - segmentation submissions: each test image's predicted map
 * as the competition writes a mask (the submit stage, submit.c).
 *
 * A map (mask_c x H x W at the data set's size) is resized back to its
 * image's original size (bilinear, per channel), post-processed with the
 * threshold and minimum component size the predictions carry (the size
 * scaled by the area ratio; stages/postproc.h) and written as
 *   rle   Kaggle's run-length encoding in the competition's pixel order
 *         (lib/rle.h), or the `empty` marker for an empty mask;
 *   wkt   a WKT MULTIPOLYGON of one class's pixels (Dstl), scaled by that
 *         image's grid size (Xmax, Ymin; lib/polygon.h).
 * Rows are encoded in parallel into separate strings, so the bytes do not
 * depend on the thread count.
 */
#ifndef KP_SUBMIT_MASKS_H
#define KP_SUBMIT_MASKS_H

#include <stdint.h>
#include "artifact.h"
#include "postproc.h"
#include "stage.h"
#include "../lib/csv.h"
#include "../lib/rle.h"

typedef struct kp_mask_cells_opts {
    const kp_problem *pb;          /* the maps' shape */
    const float *maps;             /* test maps, pb->n_out per test row */
    const int32_t *sizes;          /* [test row][2]: original width, height */
    kp_postproc pp;
    int wkt;                       /* 0: RLE; 1: WKT MULTIPOLYGON */
    kp_rle_order order;            /* RLE */
    const char *empty;             /* RLE: the cell of an empty mask */
    const double *grid;            /* WKT: [test row][2] Xmax, Ymin; NULL: pixels */
    int threads;
} kp_mask_cells_opts;

/* Writes the cell of each of n submission rows into cells[i] (malloc'd,
 * caller frees each and the array): row i is test row rows[i] and, for WKT
 * or several classes, class classes[i] (NULL: the mask, or every non-
 * background class for RLE).  0 or KP_ERR_NOMEM. */
int kp_mask_cells(const kp_mask_cells_opts *o, const int64_t *rows, const int *classes,
                  int64_t n, char **cells, char *err, size_t errlen);

/* Checks the RLE conventions against the train CSV: every string of column
 * col (1-based file lines in messages) decoded at the train image's
 * original size (sizes [row][2]) must re-encode to the same bytes; else an
 * error naming FILE:LINE:COL and both strings' first difference. */
int kp_rle_validate(const char *file, const char *const *rle, const size_t *lines, long col,
                    const int32_t *sizes, int64_t n, kp_rle_order order, char *err,
                    size_t errlen);

/* The submit stage's cells for a segmentation task: options from the stage,
 * the train RLE check (when the masks came from RLE and `validate` is set),
 * Dstl's grid sizes and class column; *cells gets one malloc'd string per
 * sample row (row_of: its test row), caller frees.  0 or a status (submit_seg.c). */
int kp_submit_seg_cells(const kp_task_ctx *ctx, const kp_dataset *d, const kp_preds *p,
                        const kp_csv *sample, const int64_t *row_of, char ***cells, char *err,
                        size_t errlen);

#endif

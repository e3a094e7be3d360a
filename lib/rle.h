/* rle.h - Kaggle's run-length encoding of binary masks, in and out.
 *
 * A mask is h x w bytes, row-major (mask[y * w + x]), nonzero = in the mask.
 * Its encoding is "start length start length ...": pixels numbered from 1 in
 * the competition's order, one pair per maximal run of mask pixels, pairs
 * sorted by start, single spaces, no trailing space; an empty mask is "".
 *   KP_RLE_COLUMN_MAJOR  top to bottom, then left to right: pixel (x, y) is
 *                        number x * h + y + 1 (Kaggle's usual wording,
 *                        Ultrasound Nerve Segmentation)
 *   KP_RLE_ROW_MAJOR     left to right, then top to bottom: y * w + x + 1
 *                        (Carvana, as its train_masks.csv round-trips)
 * Decoding is strict about numbers and order (a submission that does not
 * round-trip is a bug to report) and lenient about whitespace: spaces, tabs
 * and line ends may lead, trail and repeat.  Runs that touch (a start just
 * after the previous run's end) are accepted; overlapping ones are not.
 */
#ifndef KP_RLE_H
#define KP_RLE_H

#include <stddef.h>
#include <stdint.h>
#include "buf.h"

typedef enum kp_rle_order { KP_RLE_COLUMN_MAJOR, KP_RLE_ROW_MAJOR } kp_rle_order;

/* Parses "column" / "row" (also "column-major" / "row-major") into *out;
 * 0 or KP_ERR_ARG (*out untouched). */
int kp_rle_order_parse(const char *s, kp_rle_order *out);

/* Returns "column-major" or "row-major" (static). */
const char *kp_rle_order_name(kp_rle_order order);

/* Appends the RLE of mask (h * w bytes, borrowed; w, h >= 0) to out;
 * 0 or KP_ERR_NOMEM (out then keeps only what it held before). */
KP_WARN_UNUSED int kp_rle_encode(const uint8_t *mask, int w, int h, kp_rle_order order,
                                 kp_buf *out);

/* Decodes s into mask (h * w bytes, caller-owned): zeroes it, then sets every
 * pixel of every run to value.  0, or KP_ERR_FORMAT with "RLE column C: ..."
 * naming the 1-based character column and the problem (not a number, odd
 * count, start < 1, zero length, a run past the last pixel, runs unsorted or
 * overlapping); on error mask is untouched. */
int kp_rle_decode(const char *s, int w, int h, kp_rle_order order, uint8_t value,
                  uint8_t *mask, char *err, size_t errlen);

#endif

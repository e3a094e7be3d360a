/* images_masks.h - a segmentation competition's masks, decoded for the
 * images stage (images.c).
 *
 * Masks come as PNG files beside the images ("{id}_mask.png": nonzero is
 * the mask, or, with classes >= 2, the pixel value or palette index is the
 * class) or as run-length-encoded strings in the train CSV (Carvana's
 * rle_mask: row-major; Ultrasound Nerve's pixels: column-major; lib/rle.h),
 * decoded at the size of the id's image.  Each mask is resized to the data
 * set's size by nearest neighbour and written as floats (0/1 or the class).
 * Ids are decoded in parallel; a failure reports the lowest failing id, so
 * the message does not depend on the thread count.
 */
#ifndef KP_IMAGES_MASKS_H
#define KP_IMAGES_MASKS_H

#include <stddef.h>
#include <stdint.h>
#include "../lib/rle.h"

typedef struct kp_masks_opts {
    const char *mask_dir;          /* PNG masks: folder and file pattern with {id}, */
    const char *mask_pattern;      /* or NULL: RLE strings */
    const char *const *rle;        /* RLE mode: one string per id (borrowed) */
    const size_t *rle_lines;       /* ... the CSV line of each, for messages */
    const char *rle_file;          /* ... the CSV's name */
    long rle_col;                  /* ... its 1-based column */
    kp_rle_order order;
    const char *image_dir;         /* RLE mode: the id's image gives the mask's size */
    const char *image_pattern;
    int classes;                   /* 1: binary (nonzero = 1); >= 2: values are classes */
    int width, height;             /* the data set's size */
    int threads;
} kp_masks_opts;

/* Decodes the masks of ids[0..n) into y (n * height * width floats,
 * caller-allocated) and each image's original width and height into sizes
 * (n * 2, caller-allocated).  0 or a negative status; errors name the id,
 * the file or CSV line and column. */
int kp_masks_load(const kp_masks_opts *o, const char *const *ids, int64_t n, float *y,
                  int32_t *sizes, char *err, size_t errlen);

/* Reads the size of each id's image dir/pattern (PNG header only) into
 * sizes (n * 2: width, height); 0 or a status naming the file. */
int kp_image_sizes(const char *dir, const char *pattern, const char *const *ids, int64_t n,
                   int threads, int32_t *sizes, char *err, size_t errlen);

#endif

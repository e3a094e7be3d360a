/* image_set.h - a competition's images decoded once into one tensor.
 *
 * An image competition ships a folder of PNGs named by id; an id may map to
 * several files stacked as channels (multispectral bands, e.g.
 * "{id}_B1.png" ... "{id}_B4.png").  kp_image_set_load decodes every id's
 * files in parallel, resizes each to width x height and writes them into
 * one N x H x W x C array (channels in pattern order, then each file's own
 * channels), so that training epochs never touch PNG again.  All files of
 * a pattern must agree in channels and depth; a file that does not, or
 * that cannot be read, is an error naming it (the lowest failing id's, so
 * the message does not depend on the thread count).
 */
#ifndef KP_IMAGE_SET_H
#define KP_IMAGE_SET_H

#include <stddef.h>
#include <stdint.h>
#include "image.h"

typedef struct kp_image_set_opts {
    const char *dir;                 /* folder the patterns are relative to */
    const char *const *patterns;     /* file names with "{id}", e.g. "{id}.png" */
    int n_patterns;
    int width, height;               /* the size every image is resized to */
    kp_resize_mode mode;
    int threads;
} kp_image_set_opts;

/* Writes dir/pattern with "{id}" replaced by id into buf (n bytes); 0 or
 * KP_ERR_ARG when it does not fit.  The file an id's pattern names. */
int kp_image_path(const char *dir, const char *pattern, const char *id, char *buf, size_t n);

/* Decodes ids[0..n) into *data (n * height * width * channels samples of
 * *depth bits: uint8_t or uint16_t; caller frees with free()); fills
 * *channels and *depth.  0 or a negative status. */
int kp_image_set_load(const kp_image_set_opts *o, const char *const *ids, int64_t n,
                      void **data, int *channels, int *depth, char *err, size_t errlen);

/* Per-channel mean and standard deviation (population) of n images of
 * H x W x C samples, in sample units; mean and std caller-allocated (C). */
void kp_image_set_stats(const void *data, int64_t n, int height, int width, int channels,
                        int depth, double *mean, double *std);

#endif

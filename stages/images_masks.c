/* images_masks.c - a segmentation competition's masks (see images_masks.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "images_masks.h"
#include "../lib/err.h"
#include "../lib/image.h"
#include "../lib/image_set.h"
#include "../lib/mask.h"
#include "../lib/parallel.h"

#define PATH_LEN 4096

/* Reads a PNG mask into *out (w x h bytes: 0/1, or the class), malloc'd. */
static int read_png_mask(const kp_masks_opts *o, const char *id, uint8_t **out, int *w, int *h,
                         char *err, size_t errlen)
{
    char path[PATH_LEN];
    kp_image img;
    if (kp_image_path(o->mask_dir, o->mask_pattern, id, path, sizeof path) < 0)
        return kp_errf(err, errlen, KP_ERR_ARG, "id '%s': mask file name too long", id);
    int rc = kp_image_read_labels(path, &img, err, errlen);
    if (rc < 0)
        return rc;
    size_t px = (size_t)img.width * img.height;
    uint8_t *m = malloc(px ? px : 1);
    if (!m) {
        kp_image_free(&img);
        return kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory", path);
    }
    for (size_t p = 0; p < px && rc == 0; p++) {
        unsigned v = 0, any = 0;
        for (int c = 0; c < img.channels; c++) {
            unsigned s = img.depth == 16 ? ((const uint16_t *)img.data)[p * img.channels + c]
                                         : ((const uint8_t *)img.data)[p * img.channels + c];
            v = c == 0 ? s : v;
            any |= s;
        }
        if (o->classes >= 2 && v >= (unsigned)o->classes)
            rc = kp_errf(err, errlen, KP_ERR_FORMAT, "%s: pixel (%zu, %zu) is %u; the masks "
                         "have %d classes (images stage mask_classes)", path,
                         p % (size_t)img.width, p / (size_t)img.width, v, o->classes);
        m[p] = (uint8_t)(o->classes >= 2 ? v : any != 0);
    }
    *w = img.width, *h = img.height;
    kp_image_free(&img);
    if (rc < 0)
        free(m);
    else
        *out = m;
    return rc;
}

/* Decodes id i's RLE string at the size of its image into *out (malloc'd). */
static int read_rle_mask(const kp_masks_opts *o, int64_t i, const char *id, uint8_t **out,
                         int *w, int *h, char *err, size_t errlen)
{
    char path[PATH_LEN], msg[KP_ERRLEN];
    if (kp_image_path(o->image_dir, o->image_pattern, id, path, sizeof path) < 0)
        return kp_errf(err, errlen, KP_ERR_ARG, "id '%s': image file name too long", id);
    int rc = kp_image_png_size(path, w, h, err, errlen);
    if (rc < 0)
        return rc;
    uint8_t *m = malloc((size_t)*w * *h);
    if (!m)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory", path);
    if (kp_rle_decode(o->rle[i], *w, *h, o->order, 1, m, msg, sizeof msg) < 0) {
        free(m);
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s:%zu:%ld: id '%s' (%s image %dx%d, %s): "
                       "%s", o->rle_file, o->rle_lines[i], o->rle_col, id, path, *w, *h,
                       kp_rle_order_name(o->order), msg);
    }
    *out = m;
    return 0;
}

typedef struct mask_job {
    const kp_masks_opts *o;
    const char *const *ids;
    float *y;
    int32_t *sizes;
    int *status;
} mask_job;

/* Decodes mask i into y; the status (and, with err, the message) of id i. */
static int one_mask(const mask_job *j, int64_t i, uint8_t *small, char *err, size_t errlen)
{
    const kp_masks_opts *o = j->o;
    uint8_t *m = NULL;
    int w = 0, h = 0;
    int rc = o->mask_pattern ? read_png_mask(o, j->ids[i], &m, &w, &h, err, errlen)
                             : read_rle_mask(o, i, j->ids[i], &m, &w, &h, err, errlen);
    if (rc < 0)
        return rc;
    size_t px = (size_t)o->width * o->height;
    kp_mask_resize_nearest(m, w, h, small, o->width, o->height);
    for (size_t p = 0; p < px; p++)
        j->y[(size_t)i * px + p] = small[p];
    j->sizes[2 * i] = w, j->sizes[2 * i + 1] = h;
    free(m);
    return 0;
}

static void mask_worker(void *data, size_t i, int tid)
{
    const mask_job *j = data;
    char msg[8];
    uint8_t *small = malloc((size_t)j->o->width * j->o->height);
    (void)tid;
    j->status[i] = small ? one_mask(j, (int64_t)i, small, msg, sizeof msg) : KP_ERR_NOMEM;
    free(small);
}

int kp_masks_load(const kp_masks_opts *o, const char *const *ids, int64_t n, float *y,
                  int32_t *sizes, char *err, size_t errlen)
{
    int *status = calloc((size_t)(n > 0 ? n : 1), sizeof *status), rc = 0;
    if (!status)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory decoding masks");
    mask_job j = {o, ids, y, sizes, status};
    kp_parallel_for(o->threads, mask_worker, &j, (size_t)n);
    for (int64_t i = 0; i < n && rc == 0; i++)
        if (status[i] < 0) {   /* again, alone, for the message */
            uint8_t *small = malloc((size_t)o->width * o->height);
            rc = small ? one_mask(&j, i, small, err, errlen)
                       : kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
            rc = rc < 0 ? rc : kp_errf(err, errlen, status[i], "id '%s': mask failed",
                                       ids[i]);
            free(small);
        }
    free(status);
    return rc;
}

typedef struct size_job {
    const char *dir, *pattern;
    const char *const *ids;
    int32_t *sizes;
    int *status;
} size_job;

static void size_worker(void *data, size_t i, int tid)
{
    const size_job *j = data;
    char path[PATH_LEN], msg[8];
    int w = 0, h = 0;
    (void)tid;
    j->status[i] = kp_image_path(j->dir, j->pattern, j->ids[i], path, sizeof path) < 0
                       ? KP_ERR_ARG : kp_image_png_size(path, &w, &h, msg, sizeof msg);
    j->sizes[2 * i] = w, j->sizes[2 * i + 1] = h;
}

int kp_image_sizes(const char *dir, const char *pattern, const char *const *ids, int64_t n,
                   int threads, int32_t *sizes, char *err, size_t errlen)
{
    int *status = calloc((size_t)(n > 0 ? n : 1), sizeof *status), rc = 0;
    char path[PATH_LEN];
    if (!status)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory reading image sizes");
    size_job j = {dir, pattern, ids, sizes, status};
    kp_parallel_for(threads, size_worker, &j, (size_t)n);
    for (int64_t i = 0; i < n && rc == 0; i++)
        if (status[i] < 0) {
            int w, h;
            rc = kp_image_path(dir, pattern, ids[i], path, sizeof path) < 0
                     ? kp_errf(err, errlen, KP_ERR_ARG, "id '%s': file name too long", ids[i])
                     : kp_image_png_size(path, &w, &h, err, errlen);
        }
    free(status);
    return rc;
}

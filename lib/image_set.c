/* image_set.c - decoding a folder of PNGs into one tensor (see image_set.h). */
#include "image_set.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "err.h"
#include "parallel.h"

/* One id's outcome: 0, or a status with its message. */
typedef struct id_result {
    int status;
    char *message;   /* owned, or NULL */
} id_result;

typedef struct load_job {
    const kp_image_set_opts *o;
    const char *const *ids;
    uint8_t *data;
    size_t image_bytes;           /* bytes of one H x W x C image */
    const int *pat_channels;      /* channels of each pattern (from id 0) */
    int channels, depth;
    id_result *res;
} load_job;

int kp_image_path(const char *dir, const char *pattern, const char *id, char *buf, size_t n)
{
    const char *at = strstr(pattern, "{id}");
    int len = at ? snprintf(buf, n, "%s/%.*s%s%s", dir, (int)(at - pattern), pattern, id, at + 4)
                 : snprintf(buf, n, "%s/%s", dir, pattern);
    return len < 0 || (size_t)len >= n ? KP_ERR_ARG : 0;
}

/* Reads and resizes one file of id; fills *img (caller frees). */
static int read_one(const kp_image_set_opts *o, const char *pattern, const char *id,
                    kp_image *img, char *path, size_t pathlen, char *err, size_t errlen)
{
    kp_image raw;
    if (kp_image_path(o->dir, pattern, id, path, pathlen) < 0)
        return kp_errf(err, errlen, KP_ERR_ARG, "id '%s': file name too long", id);
    int rc = kp_image_read_png(path, &raw, err, errlen);
    if (rc < 0)
        return rc;
    if (raw.width == o->width && raw.height == o->height) {
        *img = raw;
        return 0;
    }
    rc = kp_image_resize(&raw, o->width, o->height, o->mode, img, err, errlen);
    kp_image_free(&raw);
    return rc < 0 ? kp_err_prefix(err, errlen, rc, path) : 0;
}

/* Copies img's channels into the id's slot at channel offset c0. */
static void place(const load_job *j, size_t i, const kp_image *img, int c0)
{
    size_t pixels = (size_t)img->width * img->height, bps = (size_t)j->depth / 8;
    uint8_t *out = j->data + i * j->image_bytes;
    for (size_t p = 0; p < pixels; p++)
        memcpy(out + (p * j->channels + c0) * bps, (const uint8_t *)img->data +
               p * img->channels * bps, (size_t)img->channels * bps);
}

static void load_id(void *data, size_t i, int tid)
{
    (void)tid;
    load_job *j = data;
    char err[KP_ERRLEN] = "", path[4096];
    int c0 = 0, rc = 0;
    for (int k = 0; rc == 0 && k < j->o->n_patterns; k++) {
        kp_image img = { 0 };
        rc = read_one(j->o, j->o->patterns[k], j->ids[i], &img, path, sizeof path, err,
                      sizeof err);
        if (rc == 0 && (img.channels != j->pat_channels[k] || img.depth != j->depth))
            rc = kp_errf(err, sizeof err, KP_ERR_FORMAT,
                         "%s: %d channel(s) of %d bits, but the other files of '%s' have %d "
                         "of %d bits", path, img.channels, img.depth, j->o->patterns[k],
                         j->pat_channels[k], j->depth);
        if (rc == 0)
            place(j, i, &img, c0);
        c0 += j->pat_channels[k];
        kp_image_free(&img);
    }
    j->res[i].status = rc;
    if (rc < 0)
        j->res[i].message = strdup(err);
}

/* Reads id 0's files for the layout: channels per pattern and depth. */
static int probe_layout(const kp_image_set_opts *o, const char *id, int *pat_channels,
                        int *channels, int *depth, char *err, size_t errlen)
{
    *channels = 0;
    for (int k = 0; k < o->n_patterns; k++) {
        char path[4096];
        kp_image img = { 0 };
        int rc = read_one(o, o->patterns[k], id, &img, path, sizeof path, err, errlen);
        if (rc < 0)
            return rc;
        pat_channels[k] = img.channels;
        if (k > 0 && img.depth != *depth) {
            kp_image_free(&img);
            return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: %d bits, but '%s' gives %d", path,
                           img.depth, o->patterns[0], *depth);
        }
        *depth = img.depth;
        *channels += img.channels;
        kp_image_free(&img);
    }
    return 0;
}

int kp_image_set_load(const kp_image_set_opts *o, const char *const *ids, int64_t n,
                      void **data, int *channels, int *depth, char *err, size_t errlen)
{
    *data = NULL;
    if (n < 1 || o->n_patterns < 1 || o->width < 1 || o->height < 1)
        return kp_errf(err, errlen, KP_ERR_ARG, "an image set needs ids, patterns and a size");
    int *pat = calloc((size_t)o->n_patterns, sizeof *pat);
    if (!pat)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    int rc = probe_layout(o, ids[0], pat, channels, depth, err, errlen);
    load_job j = { o, ids, NULL, (size_t)o->width * o->height * *channels * (*depth / 8), pat,
                   *channels, *depth, NULL };
    if (rc == 0 && (!(j.data = malloc(j.image_bytes * (size_t)n)) ||
                    !(j.res = calloc((size_t)n, sizeof *j.res))))
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory for %lld images",
                     (long long)n);
    if (rc == 0)
        kp_parallel_for(o->threads, load_id, &j, (size_t)n);
    for (int64_t i = 0; rc == 0 && i < n; i++)
        if (j.res[i].status < 0)
            rc = kp_errf(err, errlen, j.res[i].status, "%s",
                         j.res[i].message ? j.res[i].message : "out of memory");
    for (int64_t i = 0; j.res && i < n; i++)
        free(j.res[i].message);
    free(j.res);
    free(pat);
    if (rc < 0)
        free(j.data);
    else
        *data = j.data;
    return rc;
}

void kp_image_set_stats(const void *data, int64_t n, int height, int width, int channels,
                        int depth, double *mean, double *std)
{
    size_t per = (size_t)height * width, total = (size_t)n * per;
    for (int c = 0; c < channels; c++) {
        double s = 0, ss = 0;
        for (size_t p = 0; p < total; p++) {
            size_t i = p * channels + c;
            double v = depth == 8 ? ((const uint8_t *)data)[i] : ((const uint16_t *)data)[i];
            s += v;
            ss += v * v;
        }
        mean[c] = total ? s / total : 0;
        double var = total ? ss / total - mean[c] * mean[c] : 0;
        std[c] = var > 0 ? sqrt(var) : 0;
    }
}

/* image_resize.c - area and bilinear resizing of a kp_image (see image.h).
 *
 * Separable: each output column (row) is a weighted sum of source columns
 * (rows), the weights computed once per axis; the horizontal pass goes into
 * a float buffer, the vertical pass rounds into the output's depth.
 */
#include "image.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "err.h"

/* The source indices and weights of every output position on one axis. */
typedef struct axis {
    int *first, *count;   /* per output: first source index and how many */
    float *w;             /* per output: count weights, at stride max_taps */
    int max_taps;
} axis;

static void axis_free(axis *a)
{
    free(a->first);
    free(a->count);
    free(a->w);
}

/* Area: output o covers [o * s, (o + 1) * s) of the source, s = n_src / n_dst;
 * each source pixel weighs by its overlap.  (Enlarging, it is nearest-ish:
 * one or two taps.) */
static void area_taps(axis *a, int o, double s, int n_src)
{
    double lo = o * s, hi = (o + 1) * s;
    int i0 = (int)floor(lo), i1 = (int)ceil(hi) - 1;
    if (i1 >= n_src)
        i1 = n_src - 1;
    a->first[o] = i0;
    a->count[o] = i1 - i0 + 1;
    for (int i = i0; i <= i1; i++) {
        double ov = fmin(hi, i + 1.0) - fmax(lo, (double)i);
        a->w[(size_t)o * a->max_taps + (i - i0)] = (float)(ov / s);
    }
}

/* Bilinear: output o samples the source at (o + 0.5) * s - 0.5, clamped. */
static void bilinear_taps(axis *a, int o, double s, int n_src)
{
    double x = (o + 0.5) * s - 0.5;
    x = fmin(fmax(x, 0.0), n_src - 1.0);
    int i0 = (int)floor(x);
    double f = x - i0;
    a->first[o] = i0;
    a->count[o] = i0 + 1 < n_src ? 2 : 1;
    a->w[(size_t)o * a->max_taps] = (float)(a->count[o] == 2 ? 1 - f : 1);
    if (a->count[o] == 2)
        a->w[(size_t)o * a->max_taps + 1] = (float)f;
}

static int axis_init(axis *a, int n_src, int n_dst, kp_resize_mode mode)
{
    double s = (double)n_src / n_dst;
    a->max_taps = mode == KP_RESIZE_AREA ? (int)ceil(s) + 2 : 2;
    a->first = malloc(sizeof *a->first * (size_t)n_dst);
    a->count = malloc(sizeof *a->count * (size_t)n_dst);
    a->w = calloc((size_t)n_dst * (size_t)a->max_taps, sizeof *a->w);
    if (!a->first || !a->count || !a->w)
        return KP_ERR_NOMEM;
    for (int o = 0; o < n_dst; o++) {
        if (mode == KP_RESIZE_AREA)
            area_taps(a, o, s, n_src);
        else
            bilinear_taps(a, o, s, n_src);
    }
    return 0;
}

static float sample(const kp_image *img, size_t i)
{
    return img->depth == 8 ? ((const uint8_t *)img->data)[i] : ((const uint16_t *)img->data)[i];
}

static void store(kp_image *img, size_t i, float v)
{
    float top = img->depth == 8 ? 255.0f : 65535.0f;
    v = fminf(fmaxf(nearbyintf(v), 0.0f), top);
    if (img->depth == 8)
        ((uint8_t *)img->data)[i] = (uint8_t)v;
    else
        ((uint16_t *)img->data)[i] = (uint16_t)v;
}

/* Horizontal pass: src (H x W x C) into tmp (H x w x C floats). */
static void resize_rows(const kp_image *src, const axis *ax, int w, float *tmp)
{
    int C = src->channels;
    for (int y = 0; y < src->height; y++)
        for (int o = 0; o < w; o++)
            for (int c = 0; c < C; c++) {
                float acc = 0;
                for (int t = 0; t < ax->count[o]; t++)
                    acc += ax->w[(size_t)o * ax->max_taps + t] *
                           sample(src, ((size_t)y * src->width + ax->first[o] + t) * C + c);
                tmp[((size_t)y * w + o) * C + c] = acc;
            }
}

/* Vertical pass: tmp (H x w x C) into dst (h x w x C). */
static void resize_cols(const float *tmp, const axis *ay, kp_image *dst)
{
    int C = dst->channels, w = dst->width;
    for (int o = 0; o < dst->height; o++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < C; c++) {
                float acc = 0;
                for (int t = 0; t < ay->count[o]; t++)
                    acc += ay->w[(size_t)o * ay->max_taps + t] *
                           tmp[((size_t)(ay->first[o] + t) * w + x) * C + c];
                store(dst, ((size_t)o * w + x) * C + c, acc);
            }
}

int kp_image_resize(const kp_image *src, int width, int height, kp_resize_mode mode,
                    kp_image *dst, char *err, size_t errlen)
{
    memset(dst, 0, sizeof *dst);
    if (width < 1 || height < 1 || width > KP_IMAGE_MAX_SIDE || height > KP_IMAGE_MAX_SIDE)
        return kp_errf(err, errlen, KP_ERR_ARG, "cannot resize to %d x %d", width, height);
    axis ax = { 0 }, ay = { 0 };
    *dst = (kp_image){ width, height, src->channels, src->depth, NULL };
    float *tmp = malloc(sizeof *tmp * (size_t)src->height * width * src->channels);
    dst->data = malloc(kp_image_bytes(dst));
    int rc = !tmp || !dst->data ? KP_ERR_NOMEM : 0;
    if (rc == 0)
        rc = axis_init(&ax, src->width, width, mode);
    if (rc == 0)
        rc = axis_init(&ay, src->height, height, mode);
    if (rc == 0) {
        resize_rows(src, &ax, width, tmp);
        resize_cols(tmp, &ay, dst);
    }
    free(tmp);
    axis_free(&ax);
    axis_free(&ay);
    if (rc < 0) {
        kp_image_free(dst);
        return kp_errf(err, errlen, rc, "out of memory resizing to %d x %d", width, height);
    }
    return 0;
}

/* unet_tiles.c - a unet's predictions: whole images, or overlapping tiles
 * blended with a window so that memory stays bounded for large images.
 *
 * The net takes net_h x net_w inputs.  An image of h x w (after its D4
 * transform) is covered by tiles at offsets 0, s, 2s, ... and h - net_h
 * (s = tile - overlap) on each axis; each tile's probabilities are weighted
 * by a window that ramps linearly over the `overlap` pixels at each inner
 * edge (1 at an image border, so every pixel's weights sum to at least
 * one tile's full weight), summed, and divided by the summed weights.  The
 * map is then transformed back by the inverse D4 transform.  Tiles of
 * several images share a batch; everything is allocated once per call.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/d4.h"
#include "../lib/err.h"
#include "../lib/parallel.h"
#include "unet_int.h"

void kp_unet_load_image(const kp_unet *m, const kp_images *X, int64_t row, float *x)
{
    kp_images_to_chw(X, row, m->mean, m->std, x);
}

void kp_unet_activate(int n, int classes, size_t hw, float *z)
{
    for (int i = 0; i < n; i++) {
        float *r = z + (size_t)i * classes * hw;
        if (classes == 1) {
            for (size_t p = 0; p < hw; p++)
                r[p] = 1.0f / (1.0f + expf(-r[p]));
            continue;
        }
        for (size_t p = 0; p < hw; p++) {
            float mx = r[p], sum = 0;
            for (int k = 1; k < classes; k++)
                mx = r[k * hw + p] > mx ? r[k * hw + p] : mx;
            for (int k = 0; k < classes; k++)
                sum += (r[k * hw + p] = expf(r[k * hw + p] - mx));
            for (int k = 0; k < classes; k++)
                r[k * hw + p] /= sum;
        }
    }
}

/* Tile offsets along an axis of n pixels for tiles of t with overlap o;
 * returns the count (offsets caller-allocated, n / (t - o) + 2 entries). */
static int tile_offsets(int n, int t, int o, int *off)
{
    int step = t - o > 0 ? t - o : 1, k = 0;
    for (int p = 0; p + t < n; p += step)
        off[k++] = p;
    off[k++] = n - t;
    return k;
}

/* Window weight of position i in a tile of t at offset p along an axis of n. */
static float ramp(int i, int t, int p, int n, int o)
{
    float w = 1;
    if (o <= 0)
        return 1;
    if (p > 0 && i < o)
        w = fminf(w, (i + 0.5f) / o);
    if (p + t < n && t - 1 - i < o)
        w = fminf(w, (t - i - 0.5f) / o);
    return w;
}

/* One call's buffers. */
typedef struct tiler {
    const kp_unet *m;
    int H, W, K;                    /* the transformed image and the map channels */
    int nty, ntx, *oy, *ox;
    int per_batch;                  /* images whose tiles share a forward */
    float *img, *acc, *wsum, *x, *z, *tmp;
} tiler;

static void tiler_free(tiler *t)
{
    free(t->oy);
    free(t->ox);
    free(t->img);
    free(t->acc);
    free(t->wsum);
    free(t->x);
    free(t->z);
    free(t->tmp);
}

/* Plans the tiles of an H x W image and allocates everything. */
static int tiler_init(tiler *t, const kp_unet *m, int d4, char *err, size_t errlen)
{
    int swap = kp_d4_swaps(d4);
    t->m = m;
    t->H = swap ? m->w : m->h, t->W = swap ? m->h : m->w, t->K = m->pb.mask_c;
    int th = m->net_h, tw = m->net_w;
    t->oy = malloc(((size_t)t->H + 2) * sizeof *t->oy);
    t->ox = malloc(((size_t)t->W + 2) * sizeof *t->ox);
    if (!t->oy || !t->ox)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory planning tiles");
    t->nty = tile_offsets(t->H, th, m->overlap, t->oy);
    t->ntx = tile_offsets(t->W, tw, m->overlap, t->ox);
    int tiles = t->nty * t->ntx;
    t->per_batch = m->max_batch / tiles > 0 ? m->max_batch / tiles : 1;
    size_t hw = (size_t)t->H * t->W, thw = (size_t)th * tw;
    t->img = malloc((size_t)t->per_batch * m->c * hw * sizeof *t->img);
    t->acc = malloc((size_t)t->per_batch * t->K * hw * sizeof *t->acc);
    t->wsum = calloc(hw, sizeof *t->wsum);
    t->x = malloc((size_t)m->max_batch * m->c * thw * sizeof *t->x);
    t->z = malloc((size_t)m->max_batch * t->K * thw * sizeof *t->z);
    t->tmp = malloc((size_t)m->c * hw * sizeof *t->tmp);
    if (!t->img || !t->acc || !t->wsum || !t->x || !t->z || !t->tmp)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory for %d x %d prediction tiles",
                       t->nty, t->ntx);
    for (int a = 0; a < t->nty; a++)
        for (int b = 0; b < t->ntx; b++)
            for (int y = 0; y < th; y++)
                for (int x = 0; x < tw; x++)
                    t->wsum[(size_t)(t->oy[a] + y) * t->W + t->ox[b] + x] +=
                        ramp(y, th, t->oy[a], t->H, m->overlap) *
                        ramp(x, tw, t->ox[b], t->W, m->overlap);
    return 0;
}

/* Copies tile j (image j / tiles, tile j % tiles) of t->img into x. */
static void cut_tile(const tiler *t, int j, float *x)
{
    const kp_unet *m = t->m;
    int tiles = t->nty * t->ntx, g = j / tiles, k = j % tiles;
    int y0 = t->oy[k / t->ntx], x0 = t->ox[k % t->ntx];
    size_t hw = (size_t)t->H * t->W;
    for (int c = 0; c < m->c; c++)
        for (int y = 0; y < m->net_h; y++)
            memcpy(x + ((size_t)c * m->net_h + y) * m->net_w,
                   t->img + ((size_t)g * m->c + c) * hw + (size_t)(y0 + y) * t->W + x0,
                   (size_t)m->net_w * sizeof *x);
}

/* Adds tile j's probabilities p (K x net_h x net_w) into t->acc, windowed. */
static void paste_tile(const tiler *t, int j, const float *p)
{
    const kp_unet *m = t->m;
    int tiles = t->nty * t->ntx, g = j / tiles, k = j % tiles;
    int y0 = t->oy[k / t->ntx], x0 = t->ox[k % t->ntx];
    size_t hw = (size_t)t->H * t->W, thw = (size_t)m->net_h * m->net_w;
    for (int c = 0; c < t->K; c++)
        for (int y = 0; y < m->net_h; y++) {
            float wy = ramp(y, m->net_h, y0, t->H, m->overlap);
            float *dst = t->acc + ((size_t)g * t->K + c) * hw + (size_t)(y0 + y) * t->W + x0;
            const float *src = p + c * thw + (size_t)y * m->net_w;
            for (int x = 0; x < m->net_w; x++)
                dst[x] += src[x] * wy * ramp(x, m->net_w, x0, t->W, m->overlap);
        }
}

/* Predicts images rows[0..g) into out (n_out each). */
static void predict_group(tiler *t, const kp_images *X, const int64_t *rows, int g, int d4,
                          float *out)
{
    const kp_unet *m = t->m;
    size_t hw = (size_t)t->H * t->W, thw = (size_t)m->net_h * m->net_w;
    int tiles = t->nty * t->ntx, jobs = g * tiles;
    for (int i = 0; i < g; i++) {
        float *dst = t->img + (size_t)i * m->c * hw;
        kp_unet_load_image(m, X, rows[i], d4 ? t->tmp : dst);
        if (d4)
            kp_d4_apply(t->tmp, m->c, m->h, m->w, d4, dst);
    }
    memset(t->acc, 0, (size_t)g * t->K * hw * sizeof *t->acc);
    for (int j0 = 0; j0 < jobs; j0 += m->max_batch) {
        int b = jobs - j0 < m->max_batch ? jobs - j0 : m->max_batch;
        for (int j = 0; j < b; j++)
            cut_tile(t, j0 + j, t->x + (size_t)j * m->c * thw);
        memcpy(t->z, kp_nn_forward(m->net, t->x, b, 0, 0), (size_t)b * t->K * thw * sizeof *t->z);
        kp_unet_activate(b, t->K, thw, t->z);
        for (int j = 0; j < b; j++)
            paste_tile(t, j0 + j, t->z + (size_t)j * t->K * thw);
    }
    for (int i = 0; i < g; i++) {
        float *a = t->acc + (size_t)i * t->K * hw;
        for (int c = 0; c < t->K; c++)
            for (size_t p = 0; p < hw; p++)
                a[c * hw + p] /= t->wsum[p];
        if (d4)
            kp_d4_apply(a, t->K, t->H, t->W, kp_d4_inverse(d4), out + (size_t)i * t->K * hw);
        else
            memcpy(out + (size_t)i * t->K * hw, a, t->K * hw * sizeof *out);
    }
}

int kp_unet_predict_rows(const kp_unet *m, const kp_images *X, const int64_t *rows, int64_t n,
                         int d4, float *out, char *err, size_t errlen)
{
    tiler t = {0};
    int rc = tiler_init(&t, m, d4, err, errlen);
    size_t n_out = (size_t)m->pb.n_out;
    for (int64_t i = 0; rc == 0 && i < n; i += t.per_batch) {
        int g = n - i < t.per_batch ? (int)(n - i) : t.per_batch;
        predict_group(&t, X, rows + i, g, d4, out + (size_t)i * n_out);
    }
    tiler_free(&t);
    return rc;
}

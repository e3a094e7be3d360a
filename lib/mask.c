/* mask.c - thresholds, connected components, resizing of masks and maps (see mask.h). */
#include "mask.h"
#include "err.h"

#include <assert.h>
#include <math.h>
#include <string.h>

void kp_mask_threshold(const float *p, int w, int h, float t, uint8_t *mask)
{
    size_t n = (size_t)w * (size_t)h;
    for (size_t i = 0; i < n; i++)
        mask[i] = p[i] > t;
}

/* ---- connected components ---------------------------------------------- */

/* Union-find over pixel indices: par[i] <= i always, so a set's root is its
 * first pixel in raster order. */
static int32_t uf_find(int32_t *par, int32_t i)
{
    int32_t r = i;
    while (par[r] != r)
        r = par[r];
    while (par[i] != r) {       /* path compression */
        int32_t next = par[i];
        par[i] = r;
        i = next;
    }
    return r;
}

/* Joins the sets of a and b; returns the root (the smaller index). */
static int32_t uf_union(int32_t *par, int32_t a, int32_t b)
{
    a = uf_find(par, a);
    b = uf_find(par, b);
    if (a < b) {
        par[b] = a;
        return a;
    }
    par[a] = b;
    return b;
}

/* The parent of a new foreground pixel from its earlier neighbours a and b
 * (-1 when absent), joining them. */
static int32_t join(int32_t *par, int32_t self, int32_t a, int32_t b)
{
    if (a >= 0 && b >= 0)
        return uf_union(par, a, b);
    return a >= 0 ? a : b >= 0 ? b : self;
}

/* An earlier pixel of i's component among its 4 edge neighbours (west,
 * north), joining them; i itself when there is none. */
static int32_t parent_4(const uint8_t *m, int w, int x, int y, int32_t i, int32_t *par)
{
    int32_t a = x > 0 && m[i - 1] ? i - 1 : -1;
    int32_t b = y > 0 && m[i - w] ? i - w : -1;
    return join(par, i, a, b);
}

/* The same among the 8 neighbours visited before i.  When north is set it
 * is enough: west, north-west and north-east were joined to it when they
 * were visited.  West and north-west are each other's north. */
static int32_t parent_8(const uint8_t *m, int w, int x, int y, int32_t i, int32_t *par)
{
    if (y > 0 && m[i - w])
        return i - w;
    int32_t a = x > 0 && m[i - 1] ? i - 1 : x > 0 && y > 0 && m[i - w - 1] ? i - w - 1 : -1;
    int32_t b = y > 0 && x + 1 < w && m[i - w + 1] ? i - w + 1 : -1;
    return join(par, i, a, b);
}

/* First pass over row y: links each foreground pixel to an earlier one of
 * its component (background gets 0). */
static void label_row(const uint8_t *mask, int w, int y, int conn, int32_t *par)
{
    int32_t row = y * w;
    for (int x = 0; x < w; x++) {
        int32_t i = row + x;
        if (!mask[i])
            par[i] = 0;
        else
            par[i] = conn == 8 ? parent_8(mask, w, x, y, i, par) : parent_4(mask, w, x, y, i, par);
    }
}

int kp_mask_label(const uint8_t *mask, int w, int h, int connectivity, int32_t *labels)
{
    assert(w >= 0 && h >= 0);
    if ((connectivity != 4 && connectivity != 8) || (int64_t)w * h > INT32_MAX)
        return KP_ERR_ARG;
    for (int y = 0; y < h; y++)
        label_row(mask, w, y, connectivity, labels);
    /* Second pass in raster order: a root opens a new label; any other pixel's
     * parent is earlier, so already holds its final label. */
    int32_t n = w * h, count = 0;
    for (int32_t i = 0; i < n; i++)
        if (mask[i])
            labels[i] = labels[i] == i ? ++count : labels[labels[i]];
    return count;
}

/* At most ceil(w/2) * ceil(h/2) 8-connected components fit in w x h: their
 * first pixels are pairwise not adjacent. */
static size_t max_components(int w, int h)
{
    return (size_t)(w / 2 + w % 2) * (size_t)(h / 2 + h % 2);
}

size_t kp_mask_work_size(int w, int h)
{
    return sizeof(int32_t) * ((size_t)w * (size_t)h + max_components(w, h) + 1);
}

int kp_mask_remove_small(uint8_t *mask, int w, int h, int min_size, void *work)
{
    assert(((uintptr_t)work & 3) == 0);
    int32_t *labels = work, n = 0;
    int count = kp_mask_label(mask, w, h, 8, labels);
    if (count <= 0 || min_size <= 1)
        return count < 0 ? count : 0;
    n = w * h;
    int32_t *size = labels + n;
    memset(size, 0, sizeof(int32_t) * ((size_t)count + 1));
    for (int32_t i = 0; i < n; i++)
        size[labels[i]]++;
    int removed = 0;
    for (int c = 1; c <= count; c++)
        removed += size[c] < min_size;
    for (int32_t i = 0; i < n; i++)
        if (labels[i] && size[labels[i]] < min_size)
            mask[i] = 0;
    return removed;
}

/* ---- resizing ---------------------------------------------------------- */

/* Source sample of output coordinate i (of n2) over a source of n: the two
 * neighbours *i0, *i1 and the weight *f of *i1 (half-pixel centres, clamped). */
static void linear_tap(int i, int n, int n2, int *i0, int *i1, float *f)
{
    double s = (i + 0.5) * ((double)n / n2) - 0.5;
    if (s <= 0) {
        *i0 = *i1 = 0;
        *f = 0;
        return;
    }
    int k = (int)s;
    if (k >= n - 1) {
        *i0 = *i1 = n - 1;
        *f = 0;
        return;
    }
    *i0 = k;
    *i1 = k + 1;
    *f = (float)(s - k);
}

/* Output columns are done in strips whose taps are computed once on the stack. */
#define KP_RESIZE_STRIP 256

/* Resizes output columns [xa, xb) of every row (see kp_map_resize). */
static void resize_strip(const float *src, int w, int h, float *dst, int w2, int h2,
                         int xa, int xb)
{
    int x0[KP_RESIZE_STRIP], x1[KP_RESIZE_STRIP];
    float fx[KP_RESIZE_STRIP];
    for (int x = xa; x < xb; x++)
        linear_tap(x, w, w2, &x0[x - xa], &x1[x - xa], &fx[x - xa]);
    for (int y = 0; y < h2; y++) {
        int y0, y1;
        float fy;
        linear_tap(y, h, h2, &y0, &y1, &fy);
        const float *r0 = src + (size_t)y0 * w, *r1 = src + (size_t)y1 * w;
        float *out = dst + (size_t)y * w2 + xa;
        for (int k = 0; k < xb - xa; k++) {
            float top = r0[x0[k]] + fx[k] * (r0[x1[k]] - r0[x0[k]]);
            float bot = r1[x0[k]] + fx[k] * (r1[x1[k]] - r1[x0[k]]);
            out[k] = top + fy * (bot - top);
        }
    }
}

void kp_map_resize(const float *src, int w, int h, float *dst, int w2, int h2)
{
    assert(w > 0 && h > 0 && w2 > 0 && h2 > 0);
    for (int xa = 0; xa < w2; xa += KP_RESIZE_STRIP)
        resize_strip(src, w, h, dst, w2, h2, xa,
                     w2 - xa < KP_RESIZE_STRIP ? w2 : xa + KP_RESIZE_STRIP);
}

/* Nearest source index of output i (of n2) over a source of n, computed
 * exactly in integers: floor((i + 0.5) * n / n2). */
static int nearest_tap(int i, int n, int n2)
{
    int64_t k = ((2 * (int64_t)i + 1) * n) / (2 * (int64_t)n2);
    return k < n ? (int)k : n - 1;
}

void kp_map_resize_nearest(const float *src, int w, int h, float *dst, int w2, int h2)
{
    assert(w > 0 && h > 0 && w2 > 0 && h2 > 0);
    for (int y = 0; y < h2; y++) {
        const float *row = src + (size_t)nearest_tap(y, h, h2) * w;
        for (int x = 0; x < w2; x++)
            dst[(size_t)y * w2 + x] = row[nearest_tap(x, w, w2)];
    }
}

void kp_mask_resize_nearest(const uint8_t *src, int w, int h, uint8_t *dst, int w2, int h2)
{
    assert(w > 0 && h > 0 && w2 > 0 && h2 > 0);
    for (int y = 0; y < h2; y++) {
        const uint8_t *row = src + (size_t)nearest_tap(y, h, h2) * w;
        for (int x = 0; x < w2; x++)
            dst[(size_t)y * w2 + x] = row[nearest_tap(x, w, w2)];
    }
}

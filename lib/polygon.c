/* polygon.c - masks traced into polygons and written as WKT (see polygon.h).
 *
 * The boundary of the mask is a set of unit edges between a mask pixel and a
 * background pixel, each directed with the mask pixel on its left in the
 * x-right, y-up sense of the numbers (so a shell has positive shoelace area).
 * Every vertex has as many edges in as out; following them from edge to edge
 * gives closed rings.  Only at a diagonal vertex (two mask pixels meeting at
 * a corner, the other two background) is there a choice; it is made from the
 * 4-connected labels so that every ring stays simple (see polygon.h).
 */
#include "polygon.h"
#include "mask.h"
#include "err.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { DIR_E, DIR_S, DIR_W, DIR_N };    /* +x, +y, -x, -y; turning +1 is toward the mask */

static const int dir_dx[4] = {1, 0, -1, 0};
static const int dir_dy[4] = {0, 1, 0, -1};

typedef struct ring {
    int32_t label;        /* the component it bounds */
    size_t first, n;      /* its vertices: xy[2 * first ...], n corners, not closed */
} ring;

typedef struct tracer {
    const uint8_t *m;
    int w, h;
    int32_t *lab;         /* 4-connected labels, owned */
    uint8_t *seen;        /* per pixel, bit d: its edge leaving in direction d is traced */
    int32_t *xy;          /* ring corners (x, y), owned */
    size_t nxy, capxy;
    ring *rings;          /* owned */
    size_t nring, capring;
} tracer;

/* Label of pixel (x, y); 0 outside the mask or the image. */
static int32_t label_at(const tracer *t, int x, int y)
{
    if (x < 0 || y < 0 || x >= t->w || y >= t->h)
        return 0;
    return t->lab[(size_t)y * t->w + x];
}

/* The pixel on the left (mask side) of the edge leaving vertex (vx, vy) in
 * direction d, which owns that edge; the pixel on its right is the other one
 * beside the edge. */
static void edge_pixels(int vx, int vy, int d, int *lx, int *ly, int *rx, int *ry)
{
    static const int ox[4] = {0, -1, -1, 0}, oy[4] = {0, 0, -1, -1};   /* left pixel */
    static const int px[4] = {0, 0, -1, -1}, py[4] = {-1, 0, 0, -1};   /* right pixel */
    *lx = vx + ox[d];
    *ly = vy + oy[d];
    *rx = vx + px[d];
    *ry = vy + py[d];
}

/* Returns 1 if a boundary edge leaves vertex (vx, vy) in direction d. */
static int has_edge(const tracer *t, int vx, int vy, int d)
{
    int lx, ly, rx, ry;
    edge_pixels(vx, vy, d, &lx, &ly, &rx, &ry);
    return label_at(t, lx, ly) != 0 && label_at(t, rx, ry) == 0;
}

/* Direction to leave vertex (vx, vy) after arriving in direction d.  At a
 * diagonal vertex both turns are open: turning toward the mask wraps one
 * pixel's corner (the two pixels are different polygons); turning away wraps
 * the background corner (they are one polygon, so the two background pixels
 * belong to different rings). */
static int next_dir(const tracer *t, int vx, int vy, int d)
{
    int toward = (d + 1) & 3, away = (d + 3) & 3;
    int ht = has_edge(t, vx, vy, toward), ha = has_edge(t, vx, vy, away);
    if (ht && ha) {
        int32_t a = label_at(t, vx - 1, vy - 1), b = label_at(t, vx, vy);
        if (!a) {             /* the mask pixels are north-east and south-west */
            a = label_at(t, vx, vy - 1);
            b = label_at(t, vx - 1, vy);
        }
        return a == b ? away : toward;
    }
    return ht ? toward : ha ? away : d;
}

/* Appends corner (x, y); 0 or KP_ERR_NOMEM. */
static int push_corner(tracer *t, int x, int y)
{
    if (t->nxy == t->capxy) {
        size_t cap = t->capxy ? 2 * t->capxy : 256;
        int32_t *p = realloc(t->xy, 2 * cap * sizeof *p);
        if (!p)
            return KP_ERR_NOMEM;
        t->xy = p;
        t->capxy = cap;
    }
    t->xy[2 * t->nxy] = x;
    t->xy[2 * t->nxy + 1] = y;
    t->nxy++;
    return 0;
}

/* Reverses corners [a, b) of v. */
static void reverse_corners(int32_t *v, size_t a, size_t b)
{
    for (; a + 1 < b; a++, b--) {
        int32_t x = v[2 * a], y = v[2 * a + 1];
        v[2 * a] = v[2 * (b - 1)];
        v[2 * a + 1] = v[2 * (b - 1) + 1];
        v[2 * (b - 1)] = x;
        v[2 * (b - 1) + 1] = y;
    }
}

/* Rotates ring r's corners so that it starts at its top-left one. */
static void rotate_to_top_left(tracer *t, const ring *r)
{
    int32_t *v = t->xy + 2 * r->first;
    size_t k = 0;
    for (size_t i = 1; i < r->n; i++)
        if (v[2 * i + 1] < v[2 * k + 1] || (v[2 * i + 1] == v[2 * k + 1] && v[2 * i] < v[2 * k]))
            k = i;
    reverse_corners(v, 0, k);      /* rotation by three reversals */
    reverse_corners(v, k, r->n);
    reverse_corners(v, 0, r->n);
}

/* Appends a ring record; 0 or KP_ERR_NOMEM. */
static int push_ring(tracer *t, const ring *r)
{
    if (t->nring == t->capring) {
        size_t cap = t->capring ? 2 * t->capring : 16;
        ring *p = realloc(t->rings, cap * sizeof *p);
        if (!p)
            return KP_ERR_NOMEM;
        t->rings = p;
        t->capring = cap;
    }
    t->rings[t->nring++] = *r;
    return 0;
}

/* Follows the ring through the unseen edge leaving (vx, vy) in direction d,
 * recording its corners.  0, KP_ERR_NOMEM or KP_ERR_INTERNAL. */
static int trace_ring(tracer *t, int vx, int vy, int d)
{
    int lx, ly, rx, ry;
    edge_pixels(vx, vy, d, &lx, &ly, &rx, &ry);
    ring r = {label_at(t, lx, ly), t->nxy, 0};
    const int sx = vx, sy = vy, sd = d;
    size_t steps = 0, limit = 4 * (size_t)t->w * t->h + 4;
    do {
        edge_pixels(vx, vy, d, &lx, &ly, &rx, &ry);
        t->seen[(size_t)ly * t->w + lx] |= (uint8_t)(1u << d);
        vx += dir_dx[d];
        vy += dir_dy[d];
        int nd = next_dir(t, vx, vy, d);
        if (nd != d && push_corner(t, vx, vy) < 0)
            return KP_ERR_NOMEM;
        d = nd;
        if (++steps > limit)
            return KP_ERR_INTERNAL;
    } while (vx != sx || vy != sy || d != sd);
    r.n = t->nxy - r.first;
    rotate_to_top_left(t, &r);
    return push_ring(t, &r);
}

/* Traces every ring, scanning pixels in raster order: a component's first
 * ring is its shell (its first pixel's top edge), holes follow in raster
 * order.  0 or a status. */
static int trace_all(tracer *t)
{
    /* the vertex each side's edge starts from, relative to the pixel, and
     * the direction it leaves in: top, right, bottom, left */
    static const int vx0[4] = {0, 1, 1, 0}, vy0[4] = {0, 0, 1, 1};
    static const int side_dir[4] = {DIR_E, DIR_S, DIR_W, DIR_N};
    for (int y = 0; y < t->h; y++)
        for (int x = 0; x < t->w; x++) {
            size_t i = (size_t)y * t->w + x;
            if (!t->lab[i])
                continue;
            const int32_t nb[4] = {label_at(t, x, y - 1), label_at(t, x + 1, y),
                                   label_at(t, x, y + 1), label_at(t, x - 1, y)};
            for (int s = 0; s < 4; s++) {
                int d = side_dir[s];
                if (nb[s] || (t->seen[i] >> d & 1))
                    continue;           /* not a boundary side, or already traced */
                int rc = trace_ring(t, x + vx0[s], y + vy0[s], d);
                if (rc < 0)
                    return rc;
            }
        }
    return 0;
}

/* Returns twice ring r's signed (shoelace) area in pixel units. */
static int64_t ring_area2(const tracer *t, const ring *r)
{
    const int32_t *v = t->xy + 2 * r->first;
    int64_t a = 0;
    for (size_t i = 0; i < r->n; i++) {
        size_t j = (i + 1) % r->n;
        a += (int64_t)v[2 * i] * v[2 * j + 1] - (int64_t)v[2 * j] * v[2 * i + 1];
    }
    return a;
}

/* Sorts the rings by label, keeping discovery order within a label (shell
 * first), into *out (heap); checks the shell/hole orientation.  0 or a status. */
static int group_rings(const tracer *t, int count, ring **out)
{
    size_t *start = calloc((size_t)count + 2, sizeof *start);
    ring *g = malloc((t->nring ? t->nring : 1) * sizeof *g);
    int rc = KP_ERR_NOMEM;
    if (!start || !g)
        goto fail;
    for (size_t i = 0; i < t->nring; i++)
        start[t->rings[i].label + 1]++;
    for (int c = 1; c <= count + 1; c++)
        start[c] += start[c - 1];
    for (size_t i = 0; i < t->nring; i++)
        g[start[t->rings[i].label]++] = t->rings[i];
    rc = KP_ERR_INTERNAL;
    for (size_t i = 0; i < t->nring; i++) {
        int shell = i == 0 || g[i - 1].label != g[i].label;
        if ((ring_area2(t, &g[i]) > 0) != shell)
            goto fail;
    }
    free(start);
    *out = g;
    return 0;
fail:
    free(start);
    free(g);
    return rc;
}

/* Every corner has an integer x in [0, w] and y in [0, h], so each scaled
 * coordinate is formatted once into a table and copied from there. */
#define COORD_STRIDE 32   /* "%.17g" of a double takes at most 24 bytes */

typedef struct wkt_writer {
    char *xs, *ys;        /* (w + 1) and (h + 1) NUL-terminated texts, owned */
    int flip;             /* write rings backwards (sx * sy < 0) */
    kp_buf *out;
} wkt_writer;

/* Formats v * s for v in [0, n] into table (n + 1 entries). */
static void format_coords(char *table, int n, double s, int digits)
{
    for (int v = 0; v <= n; v++)
        snprintf(table + (size_t)v * COORD_STRIDE, COORD_STRIDE, "%.*g", digits,
                 v * s + 0.0);   /* + 0.0: no "-0" */
}

/* Appends ring r as "(x y, ..., x y)", closed, reversed when flipping. */
static int write_ring(const tracer *t, const wkt_writer *wr, const ring *r)
{
    const int32_t *v = t->xy + 2 * r->first;
    char text[2 * COORD_STRIDE + 4];
    if (kp_buf_adds(wr->out, "(") < 0)
        return KP_ERR_NOMEM;
    for (size_t k = 0; k <= r->n; k++) {
        size_t i = k == r->n ? 0 : wr->flip && k ? r->n - k : k;
        const char *x = wr->xs + (size_t)v[2 * i] * COORD_STRIDE;
        const char *y = wr->ys + (size_t)v[2 * i + 1] * COORD_STRIDE;
        int len = snprintf(text, sizeof text, "%s%s %s", k ? ", " : "", x, y);
        if (kp_buf_add(wr->out, text, (size_t)len) < 0)
            return KP_ERR_NOMEM;
    }
    return kp_buf_adds(wr->out, ")");
}

/* Appends the MULTIPOLYGON text of the grouped rings g. */
static int write_rings(const tracer *t, const wkt_writer *wr, const ring *g)
{
    if (kp_buf_adds(wr->out, "MULTIPOLYGON (") < 0)
        return KP_ERR_NOMEM;
    for (size_t i = 0; i < t->nring; i++) {
        int shell = i == 0 || g[i - 1].label != g[i].label;
        int last = i + 1 == t->nring || g[i + 1].label != g[i].label;
        if (kp_buf_adds(wr->out, shell ? (i ? ", (" : "(") : ", ") < 0 ||
            write_ring(t, wr, &g[i]) < 0 || (last && kp_buf_adds(wr->out, ")") < 0))
            return KP_ERR_NOMEM;
    }
    return kp_buf_adds(wr->out, ")");
}

/* Writes the grouped rings g with coordinates scaled by (sx, sy). */
static int write_wkt(const tracer *t, const ring *g, double sx, double sy, int digits,
                     kp_buf *out)
{
    wkt_writer wr = {.flip = sx * sy < 0, .out = out};
    wr.xs = malloc(((size_t)t->w + 1) * COORD_STRIDE);
    wr.ys = malloc(((size_t)t->h + 1) * COORD_STRIDE);
    int rc = KP_ERR_NOMEM;
    if (!wr.xs || !wr.ys)
        goto fail;
    format_coords(wr.xs, t->w, sx, digits);
    format_coords(wr.ys, t->h, sy, digits);
    rc = write_rings(t, &wr, g);
fail:
    free(wr.xs);
    free(wr.ys);
    return rc;
}

/* Labels, traces and writes; the tracer's arrays are freed by the caller. */
static int wkt_run(tracer *t, double sx, double sy, int digits, kp_buf *out)
{
    size_t n = (size_t)t->w * t->h;
    t->lab = malloc((n ? n : 1) * sizeof *t->lab);
    t->seen = calloc(n ? n : 1, 1);
    if (!t->lab || !t->seen)
        return KP_ERR_NOMEM;
    int count = kp_mask_label(t->m, t->w, t->h, 4, t->lab);
    if (count <= 0)
        return count < 0 ? count : kp_buf_adds(out, "MULTIPOLYGON EMPTY");
    int rc = trace_all(t);
    ring *g = NULL;
    if (rc == 0)
        rc = group_rings(t, count, &g);
    if (rc == 0)
        rc = write_wkt(t, g, sx, sy, digits, out);
    free(g);
    return rc;
}

int kp_wkt_multipolygon(const uint8_t *mask, int w, int h, double sx, double sy, int digits,
                        kp_buf *out)
{
    assert(w >= 0 && h >= 0 && out);
    if ((int64_t)w * h > INT32_MAX)
        return KP_ERR_ARG;
    digits = digits < 1 ? 1 : digits > 17 ? 17 : digits;
    size_t before = out->len;
    tracer t = {.m = mask, .w = w, .h = h};
    int rc = wkt_run(&t, sx, sy, digits, out);
    free(t.lab);
    free(t.seen);
    free(t.xy);
    free(t.rings);
    if (rc < 0 && out->data) {
        out->len = before;           /* drop a partial text */
        out->data[before] = 0;
    }
    return rc;
}

void kp_dstl_scale(int w, int h, double xmax, double ymin, double *sx, double *sy)
{
    double wp = (double)w * w / (w + 1.0), hp = (double)h * h / (h + 1.0);
    *sx = xmax / wp;
    *sy = ymin / hp;
}

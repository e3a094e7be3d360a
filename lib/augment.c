/* augment.c - seeded image augmentation: the config grammar and the
 * transforms (see augment.h and docs/augment.md). */
#include "augment.h"

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "d4.h"
#include "err.h"

/* ---- the grammar: "NAME [ARGS...] [p=PROB] [border=zero|reflect]" ---- */

typedef enum aug_kind {
    AUG_HFLIP, AUG_VFLIP, AUG_ROT90, AUG_TRANSPOSE, AUG_CROP, AUG_SSR, AUG_BC, AUG_COUNT
} aug_kind;

/* One positional argument: its name in messages, bounds and default. */
typedef struct arg_spec {
    const char *name;
    int whole;              /* a whole number (else any finite number) */
    double min, max;        /* inclusive; max_open makes max exclusive */
    int max_open;
    double def;
} arg_spec;

#define MAX_ARGS 3

typedef struct aug_spec {
    const char *name;
    aug_kind kind;
    int nargs;
    arg_spec args[MAX_ARGS];
    double p;               /* default probability */
    int has_border;
    kp_aug_border border;   /* default border */
} aug_spec;

#define PROB_ARG { "P", 0, 0, 1, 0, -1 }   /* def -1: "not given", p= or default */

/* One row per kind, in aug_kind order. */
static const aug_spec specs[] = {
    { "hflip", AUG_HFLIP, 1, { PROB_ARG }, 0.5, 0, KP_AUG_ZERO },
    { "vflip", AUG_VFLIP, 1, { PROB_ARG }, 0.5, 0, KP_AUG_ZERO },
    { "rot90", AUG_ROT90, 1, { PROB_ARG }, 0.5, 0, KP_AUG_ZERO },
    { "transpose", AUG_TRANSPOSE, 1, { PROB_ARG }, 0.5, 0, KP_AUG_ZERO },
    { "crop", AUG_CROP, 1, { { "PAD", 1, 0, 65535, 0, 4 } }, 1.0, 1, KP_AUG_ZERO },
    { "ssr", AUG_SSR, 3,
      { { "SHIFT", 0, 0, 1, 0, 0.0625 }, { "SCALE", 0, 0, 1, 1, 0.1 },
        { "ROTATE", 0, 0, 180, 0, 45 } }, 0.5, 1, KP_AUG_REFLECT },
    { "bc", AUG_BC, 2,
      { { "BRIGHTNESS", 0, 0, HUGE_VAL, 0, 0.2 }, { "CONTRAST", 0, 0, 1, 0, 0.2 } },
      0.5, 0, KP_AUG_ZERO },
};
_Static_assert(sizeof specs / sizeof specs[0] == AUG_COUNT, "one spec per aug_kind");

/* Longer names, as albumentations and torchvision call them. */
static const struct { const char *name; aug_kind kind; } aliases[] = {
    { "random_crop", AUG_CROP },
    { "shift_scale_rotate", AUG_SSR },
    { "brightness_contrast", AUG_BC },
};
#define N_ALIASES ((int)(sizeof aliases / sizeof aliases[0]))

#define MAX_WORDS 16
#define MAX_ITEM 256

/* One item being parsed: where it is (for messages) and its words. */
typedef struct item_ctx {
    const char *label, *key, *text;   /* label: "[FILE:LINE:COL: WHERE.]KEY" */
    int index;
    char *err;
    size_t errlen;
    char buf[MAX_ITEM];
    char *words[MAX_WORDS];
    int nwords;
} item_ctx;

/* Formats "LABEL[I] 'ITEM': message" into the error buffer. */
__attribute__((format(printf, 2, 3)))
static int item_err(const item_ctx *c, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return kp_errf(c->err, c->errlen, KP_ERR_CONFIG, "%s[%d] '%s': %s", c->label, c->index,
                   c->text, msg);
}

/* Splits the item into words at spaces and tabs. */
static int split_words(item_ctx *c)
{
    if (strlen(c->text) >= MAX_ITEM)
        return item_err(c, "the item is longer than %d characters", MAX_ITEM - 1);
    strcpy(c->buf, c->text);
    c->nwords = 0;
    char *save = NULL;
    for (char *s = strtok_r(c->buf, " \t", &save); s; s = strtok_r(NULL, " \t", &save)) {
        if (c->nwords == MAX_WORDS)
            return item_err(c, "more than %d words", MAX_WORDS);
        c->words[c->nwords++] = s;
    }
    if (c->nwords == 0)
        return kp_errf(c->err, c->errlen, KP_ERR_CONFIG,
                       "%s[%d]: empty item (expected a name such as 'hflip' or 'crop 4')",
                       c->label, c->index);
    return 0;
}

/* Finds the spec named word, or reports the unknown name with a suggestion. */
static int find_spec(const item_ctx *c, const char *word, const aug_spec **out)
{
    const char *names[AUG_COUNT + N_ALIASES];
    for (int i = 0; i < AUG_COUNT; i++)
        names[i] = specs[i].name;
    for (int i = 0; i < N_ALIASES; i++)
        names[AUG_COUNT + i] = aliases[i].name;
    for (int i = 0; i < AUG_COUNT + N_ALIASES; i++)
        if (strcmp(word, names[i]) == 0) {
            *out = &specs[i < AUG_COUNT ? i : (int)aliases[i - AUG_COUNT].kind];
            return 0;
        }
    const char *near = kp_suggest(word, names, AUG_COUNT + N_ALIASES);
    if (near)
        return kp_errf(c->err, c->errlen, KP_ERR_CONFIG,
                       "%s[%d]: unknown augmentation '%s' (did you mean '%s'?)", c->label,
                       c->index, word, near);
    return kp_errf(c->err, c->errlen, KP_ERR_CONFIG,
                   "%s[%d]: unknown augmentation '%s' (known: hflip, vflip, rot90, transpose, "
                   "crop, ssr, bc)", c->label, c->index, word);
}

/* Parses word as the argument described by a, bounds checked, into *x. */
static int parse_number(const item_ctx *c, const arg_spec *a, const char *word, double *x)
{
    char *end;
    double v = strtod(word, &end);
    if (end == word || *end || !isfinite(v))
        return item_err(c, "%s '%s' is not a number", a->name, word);
    if (a->whole && v != floor(v))
        return item_err(c, "%s '%s' is not a whole number", a->name, word);
    if (v < a->min || v > a->max || (a->max_open && v == a->max)) {
        if (isinf(a->max))
            return item_err(c, "%s %s is below %g", a->name, word, a->min);
        return item_err(c, "%s %s is outside [%g, %g%c", a->name, word, a->min, a->max,
                        a->max_open ? ')' : ']');
    }
    *x = v;
    return 0;
}

/* The parsed values of one item before they go into a kp_augment. */
typedef struct item_vals {
    double args[MAX_ARGS];
    int nargs;
    double p;               /* < 0: not given */
    kp_aug_border border;
} item_vals;

/* Lists a spec's argument names, space-separated, into buf. */
static void arg_names(const aug_spec *s, char *buf, size_t n)
{
    buf[0] = 0;
    for (int i = 0; i < s->nargs; i++)
        snprintf(buf + strlen(buf), n - strlen(buf), "%s%s", i ? " " : "", s->args[i].name);
}

/* Parses option "key=value" (p, and border where the transform has one). */
static int parse_option(const item_ctx *c, const aug_spec *s, char *word, item_vals *v)
{
    char *eq = strchr(word, '=');
    *eq = 0;
    const char *key = word, *val = eq + 1;
    if (!*val)
        return item_err(c, "option '%s' has no value", key);
    if (strcmp(key, "p") == 0) {
        static const arg_spec prob = PROB_ARG;
        if (v->p >= 0)
            return item_err(c, "the probability is given twice");
        return parse_number(c, &prob, val, &v->p);
    }
    if (s->has_border && strcmp(key, "border") == 0) {
        if (strcmp(val, "zero") && strcmp(val, "reflect"))
            return item_err(c, "border '%s' is not zero or reflect", val);
        v->border = strcmp(val, "zero") == 0 ? KP_AUG_ZERO : KP_AUG_REFLECT;
        return 0;
    }
    const char *opts[2] = { "p", "border" };
    const char *near = kp_suggest(key, opts, s->has_border ? 2 : 1);
    if (near)
        return item_err(c, "unknown option '%s' (did you mean '%s'?)", key, near);
    return item_err(c, "unknown option '%s' (%s takes %s)", key, s->name,
                    s->has_border ? "p= and border=" : "only p=");
}

/* Parses the words after the name into *v, starting from the defaults. */
static int parse_args(item_ctx *c, const aug_spec *s, item_vals *v)
{
    v->nargs = 0;
    v->p = -1;
    v->border = s->border;
    for (int i = 0; i < s->nargs; i++)
        v->args[i] = s->args[i].def;
    for (int w = 1; w < c->nwords; w++) {
        int rc, is_option = strchr(c->words[w], '=') != NULL;
        if (is_option)
            rc = parse_option(c, s, c->words[w], v);
        else if (v->nargs == s->nargs) {
            char names[64];
            arg_names(s, names, sizeof names);
            rc = item_err(c, "too many arguments: %s takes at most %d (%s)", s->name, s->nargs,
                          names);
        } else
            rc = parse_number(c, &s->args[v->nargs], c->words[w], &v->args[v->nargs]);
        if (rc)
            return rc;
        if (!is_option)
            v->nargs++;
    }
    if (s->args[0].def < 0 && v->nargs == 1 && v->p >= 0)   /* "hflip 0.3 p=0.4" */
        return item_err(c, "the probability is given twice");
    return 0;
}

/* Stores one parsed item into *a. */
static void store(const aug_spec *s, const item_vals *v, kp_augment *a)
{
    double p = v->p >= 0 ? v->p : s->p;
    if (s->args[0].def < 0 && v->nargs == 1)   /* a flip's positional probability */
        p = v->args[0];
    switch (s->kind) {
    case AUG_HFLIP: a->hflip = p; break;
    case AUG_VFLIP: a->vflip = p; break;
    case AUG_ROT90: a->rot90 = p; break;
    case AUG_TRANSPOSE: a->transpose = p; break;
    case AUG_CROP:
        a->crop.p = p, a->crop.pad = (int)v->args[0], a->crop.border = v->border;
        break;
    case AUG_SSR:
        a->ssr.p = p, a->ssr.shift = v->args[0], a->ssr.scale = v->args[1];
        a->ssr.rotate = v->args[2], a->ssr.border = v->border;
        break;
    case AUG_BC:
        a->bc.p = p, a->bc.brightness = v->args[0], a->bc.contrast = v->args[1];
        break;
    case AUG_COUNT: assert(0); break;
    }
}

/* Parses item i; seen[kind] holds 1 + the index that first named a kind. */
static int parse_item(item_ctx *c, int seen[AUG_COUNT], kp_augment *a)
{
    const aug_spec *s = NULL;
    item_vals v;
    int rc;
    if ((rc = split_words(c)) || (rc = find_spec(c, c->words[0], &s)))
        return rc;
    if (seen[s->kind])
        return item_err(c, "%s is already listed as %s[%d]", s->name, c->key,
                        seen[s->kind] - 1);
    seen[s->kind] = c->index + 1;
    if ((rc = parse_args(c, s, &v)))
        return rc;
    store(s, &v, a);
    return 0;
}

/* Parses the list with messages starting with label, which ends with key. */
static int parse_list(const char *const *items, int n, const char *label, const char *key,
                      kp_augment *out, char *err, size_t errlen)
{
    kp_augment a;
    int seen[AUG_COUNT] = { 0 };
    memset(&a, 0, sizeof a);
    for (int i = 0; i < n; i++) {
        item_ctx c = { .label = label, .key = key, .text = items[i], .index = i, .err = err,
                       .errlen = errlen };
        int rc = parse_item(&c, seen, &a);
        if (rc)
            return rc;
    }
    *out = a;
    return 0;
}

int kp_augment_parse(const char *const *items, int n, kp_augment *out, char *err,
                     size_t errlen)
{
    return parse_list(items, n, "augment", "augment", out, err, errlen);
}

int kp_augment_from_params(const kp_params *p, const char *key, const char *file,
                           const char *where, kp_augment *out, char *err, size_t errlen)
{
    const char *const *items;
    int n, line, col;
    if (kp_params_get_list(p, key, &items, &n) != 0) {
        memset(out, 0, sizeof *out);
        return 0;
    }
    kp_params_where(p, key, &line, &col);
    char label[512];
    const char *w = where ? where : "", *dot = *w ? "." : "";
    if (file && *file && line > 0)
        snprintf(label, sizeof label, "%s:%d:%d: %s%s%s", file, line, col, w, dot, key);
    else if (file && *file)
        snprintf(label, sizeof label, "%s: %s%s%s", file, w, dot, key);
    else
        snprintf(label, sizeof label, "%s%s%s", w, dot, key);
    return parse_list(items, n, label, key, out, err, errlen);
}

/* ---- checks ---- */

int kp_augment_check(const kp_augment *a, int C, int H, int W, char *err, size_t errlen)
{
    if (C <= 0 || H <= 0 || W <= 0)
        return kp_errf(err, errlen, KP_ERR_CONFIG, "augment: bad image shape %d x %d x %d",
                       C, H, W);
    if ((a->rot90 > 0 || a->transpose > 0) && H != W)
        return kp_errf(err, errlen, KP_ERR_CONFIG,
                       "augment: %s needs square images, but they are %d x %d (height x width)",
                       a->rot90 > 0 ? "rot90" : "transpose", H, W);
    if (a->crop.p > 0 && (a->crop.pad >= H || a->crop.pad >= W))
        return kp_errf(err, errlen, KP_ERR_CONFIG,
                       "augment: crop pads by %d pixels, which must be below the image's "
                       "height and width (%d x %d)", a->crop.pad, H, W);
    return 0;
}

int kp_augment_any(const kp_augment *a)
{
    return a->hflip > 0 || a->vflip > 0 || a->rot90 > 0 || a->transpose > 0 ||
           a->crop.p > 0 || a->ssr.p > 0 || a->bc.p > 0;
}

size_t kp_augment_workspace(const kp_augment *a, int C, int H, int W)
{
    int geometric = a->hflip > 0 || a->vflip > 0 || a->rot90 > 0 || a->transpose > 0 ||
                    a->crop.p > 0 || a->ssr.p > 0;
    return geometric ? (size_t)C * H * W : 0;
}

/* ---- the transforms ---- */

/* Maps any index into 0..n-1 by mirroring without repeating the edge. */
static inline int reflect_index(int i, int n)
{
    if (n == 1)
        return 0;
    int period = 2 * (n - 1);
    i = abs(i) % period;
    return i < n ? i : period - i;
}

/* Copies one row moved right by dx into out: the part that stays inside
 * with memcpy, the rest zeros or mirrored. */
static void shift_row(const float *row, int W, int dx, kp_aug_border border, float *out)
{
    int lo = dx > 0 ? dx : 0, hi = dx < 0 ? W + dx : W;
    if (hi < lo)   /* moved out entirely */
        hi = lo = W;
    for (int x = 0; x < lo; x++)
        out[x] = border == KP_AUG_ZERO ? 0.0f : row[reflect_index(x - dx, W)];
    if (hi > lo)
        memcpy(out + lo, row + lo - dx, (size_t)(hi - lo) * sizeof *out);
    for (int x = hi; x < W; x++)
        out[x] = border == KP_AUG_ZERO ? 0.0f : row[reflect_index(x - dx, W)];
}

void kp_augment_shift(const float *src, int C, int H, int W, int dy, int dx,
                      kp_aug_border border, float *dst)
{
    for (int c = 0; c < C; c++) {
        const float *plane = src + (size_t)c * H * W;
        for (int y = 0; y < H; y++) {
            float *out = dst + ((size_t)c * H + y) * W;
            int sy = y - dy;
            if (border == KP_AUG_ZERO && (sy < 0 || sy >= H))
                memset(out, 0, (size_t)W * sizeof *out);
            else
                shift_row(plane + (size_t)reflect_index(sy, H) * W, W, dx, border, out);
        }
    }
}

/* Bilinear taps of one output pixel: four plane offsets and their weights. */
typedef struct taps { size_t off[4]; float w[4]; } taps;

/* Resolves source index i on an axis of n: 1 and *j when inside (or
 * reflected), 0 when it falls in a zero border. */
static inline int axis_index(int i, int n, kp_aug_border border, int *j)
{
    if (i >= 0 && i < n) {
        *j = i;
        return 1;
    }
    if (border == KP_AUG_ZERO)
        return 0;
    *j = reflect_index(i, n);
    return 1;
}

/* Splits coordinate s into its floor and fraction, snapping fractions within
 * 1e-6 of a whole pixel so that quarter turns land exactly on pixels. */
static inline void split_coord(double s, int *i0, float *f)
{
    if (!(s > -1e7 && s < 1e7))   /* far outside (a tiny scale): any border pixel */
        s = -2;
    int i = (int)s;
    i -= s < i;                   /* floor without a libm call */
    double fr = s - i;
    if (fr < 1e-6)
        fr = 0;
    else if (fr > 1 - 1e-6)
        i += 1, fr = 0;
    *i0 = i;
    *f = (float)fr;
}

/* Fills the taps for source point (sx, sy); taps in a zero border weigh 0. */
static inline void make_taps(double sx, double sy, int H, int W, kp_aug_border border,
                             taps *t)
{
    int x0, y0;
    float fx, fy;
    split_coord(sx, &x0, &fx);
    split_coord(sy, &y0, &fy);
    const float wy[2] = { 1 - fy, fy }, wx[2] = { 1 - fx, fx };
    if (x0 >= 0 && x0 < W - 1 && y0 >= 0 && y0 < H - 1) {   /* inside: no border */
        size_t o = (size_t)y0 * W + x0;
        t->off[0] = o, t->off[1] = o + 1, t->off[2] = o + W, t->off[3] = o + W + 1;
        t->w[0] = wy[0] * wx[0], t->w[1] = wy[0] * wx[1];
        t->w[2] = wy[1] * wx[0], t->w[3] = wy[1] * wx[1];
        return;
    }
    for (int k = 0; k < 4; k++) {
        int iy, ix, ky = k >> 1, kx = k & 1;
        int in = axis_index(y0 + ky, H, border, &iy) & axis_index(x0 + kx, W, border, &ix);
        t->off[k] = in ? (size_t)iy * W + ix : 0;
        t->w[k] = in ? wy[ky] * wx[kx] : 0.0f;
    }
}

/* Writes pixel p of every channel from the taps. */
static inline void blend(const float *src, size_t hw, int C, const taps *t, size_t p,
                         float *dst)
{
    for (int c = 0; c < C; c++) {
        const float *s = src + c * hw;
        dst[c * hw + p] = t->w[0] * s[t->off[0]] + t->w[1] * s[t->off[1]] +
                          t->w[2] * s[t->off[2]] + t->w[3] * s[t->off[3]];
    }
}

void kp_augment_warp(const float *src, int C, int H, int W, double angle, double scale,
                     double dx, double dy, kp_aug_border border, float *dst)
{
    /* OpenCV's getRotationMatrix2D(center, angle, scale) maps source to
     * destination: d = A (s - c) + c + shift with A = [a b; -b a], so
     * s = A^-1 (d - c - shift) + c, A^-1 = [a -b; b a] / (a^2 + b^2). */
    double r = angle * M_PI / 180.0, a = scale * cos(r), b = scale * sin(r);
    double det = a * a + b * b;
    assert(det > 0);
    double cx = W / 2.0 - 0.5, cy = H / 2.0 - 0.5, tx = cx + dx * W, ty = cy + dy * H;
    double m00 = a / det, m01 = -b / det, m10 = b / det, m11 = a / det;
    double m02 = cx - (m00 * tx + m01 * ty), m12 = cy - (m10 * tx + m11 * ty);
    size_t hw = (size_t)H * W;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            taps t;
            make_taps(m00 * x + m01 * y + m02, m10 * x + m11 * y + m12, H, W, border, &t);
            blend(src, hw, C, &t, (size_t)y * W + x, dst);
        }
}

/* A D4 element as (f, q): horizontal flip f times, then q counter-clockwise
 * quarter turns; kp_d4 index t = 4 f + q. */
static int d4_then(int t1, int t2)
{
    int f1 = t1 >= 4, q1 = t1 % 4, f2 = t2 >= 4, q2 = t2 % 4;
    /* R^q2 F^f2 R^q1 F^f1 = R^(q2 -+ q1) F^(f1 ^ f2), as F R = R^-1 F */
    int q = ((q2 + (f2 ? -q1 : q1)) % 4 + 4) % 4;
    return 4 * (f1 ^ f2) + q;
}

/* Returns 1 with probability p (drawing only when p > 0). */
static int coin(kp_rng *rng, double p)
{
    return p > 0 && kp_rng_uniform(rng) < p;
}

/* Returns a uniform double in [lo, hi). */
static double uniform(kp_rng *rng, double lo, double hi)
{
    return lo + (hi - lo) * kp_rng_uniform(rng);
}

/* Draws the flips and turns, composed into one D4 index. */
static int draw_d4(const kp_augment *a, kp_rng *rng)
{
    int t = 0;
    if (coin(rng, a->hflip))
        t = d4_then(t, 4);
    if (coin(rng, a->vflip))
        t = d4_then(t, 6);
    if (coin(rng, a->rot90))
        t = d4_then(t, (int)kp_rng_below(rng, 4));
    if (coin(rng, a->transpose))
        t = d4_then(t, 5);
    return t;
}

/* Random crop of the padded image: a shift in [-pad, pad] on each axis. */
static void apply_crop(const kp_augment *a, kp_rng *rng, float *img, int C, int H, int W,
                       float *tmp)
{
    int pad = a->crop.pad;
    int oy = (int)kp_rng_below(rng, 2 * (uint64_t)pad + 1);
    int ox = (int)kp_rng_below(rng, 2 * (uint64_t)pad + 1);
    if (oy == pad && ox == pad)
        return;
    memcpy(tmp, img, (size_t)C * H * W * sizeof *img);
    kp_augment_shift(tmp, C, H, W, pad - oy, pad - ox, a->crop.border, img);
}

/* ShiftScaleRotate with albumentations' draws: angle, scale, dx, dy. */
static void apply_ssr(const kp_augment *a, kp_rng *rng, float *img, int C, int H, int W,
                      float *tmp)
{
    double angle = uniform(rng, -a->ssr.rotate, a->ssr.rotate);
    double scale = uniform(rng, 1 - a->ssr.scale, 1 + a->ssr.scale);
    double dx = uniform(rng, -a->ssr.shift, a->ssr.shift);
    double dy = uniform(rng, -a->ssr.shift, a->ssr.shift);
    memcpy(tmp, img, (size_t)C * H * W * sizeof *img);
    kp_augment_warp(tmp, C, H, W, angle, scale, dx, dy, a->ssr.border, img);
}

/* RandomBrightnessContrast on normalised data: x = alpha x + beta. */
static void apply_bc(const kp_augment *a, kp_rng *rng, float *img, size_t n)
{
    float alpha = (float)uniform(rng, 1 - a->bc.contrast, 1 + a->bc.contrast);
    float beta = (float)uniform(rng, -a->bc.brightness, a->bc.brightness);
    for (size_t i = 0; i < n; i++)
        img[i] = img[i] * alpha + beta;
}

void kp_augment_apply(const kp_augment *a, kp_rng *rng, float *img, int C, int H, int W,
                      float *tmp)
{
    kp_augment_apply_masked(a, rng, img, C, 0, H, W, tmp);
}

void kp_augment_apply_masked(const kp_augment *a, kp_rng *rng, float *img, int C, int M,
                             int H, int W, float *tmp)
{
    size_t n = (size_t)C * H * W;
    C += M;
    int t = draw_d4(a, rng);
    if (t) {
        assert(!kp_d4_swaps(t) || H == W);
        kp_d4_apply(img, C, H, W, t, tmp);
        memcpy(img, tmp, (size_t)C * H * W * sizeof *img);
    }
    if (coin(rng, a->crop.p))
        apply_crop(a, rng, img, C, H, W, tmp);
    if (coin(rng, a->ssr.p))
        apply_ssr(a, rng, img, C, H, W, tmp);
    if (coin(rng, a->bc.p))
        apply_bc(a, rng, img, n);
}

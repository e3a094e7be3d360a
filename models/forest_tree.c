/* forest_tree.c - grows one tree of a random forest (on binned features)
 * or of extra trees (on raw values); forest.c says why.
 *
 * The drawn rows live in position arrays (row, bootstrap count, class or
 * w * y) that a split partitions stably, so a node owns the range
 * [start, end) and reads its rows' data in order; only the feature column is
 * read by row.  Nodes are grown depth first from an explicit stack.  At each
 * node, mtry features are drawn without replacement, and more while all
 * drawn ones are constant in the node (as scikit-learn: the search goes on
 * until one valid cut exists).  A feature found constant in a node is
 * remembered for its subtree (a bitmap per stack frame) and costs no pass
 * there when drawn again.  For each non-constant feature:
 *   random forest  the node's rows are summed per bin (a 256-bin histogram
 *                  kept zero between uses, with a bitmap of the occupied
 *                  bins, so a small node costs its rows, not the bins) and
 *                  every cut between two occupied bins is scored;
 *   extra trees    one threshold is drawn uniformly between the node's
 *                  smallest and largest value and scored.
 * NaN (code KP_BIN_MISSING, or a NaN value) is tried on both sides of every
 * cut and goes to the better; when a node has none it goes to the heavier
 * child.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/err.h"
#include "binning.h"
#include "forest_int.h"

/* Draws mtry features, and more while all drawn ones were constant in the
 * node; returns 1 if a valid cut was found. */
static int find_split(const fr_data *D, fr_work *w, int64_t a, int64_t b, fr_split *best)
{
    int F = D->n_usable, drawn = 0, varied = 0;
    best->feature = -1;
    best->proxy = -INFINITY;
    for (int i = 0; i < F && (drawn < D->s->mtry || !varied); i++, drawn++) {
        int j = i + (int)kp_rng_below(&w->rng, (uint64_t)(F - i)), f = w->perm[j];
        uint64_t bit = (uint64_t)1 << (f & 63);
        double before = best->proxy;
        w->perm[j] = w->perm[i];
        w->perm[i] = f;
        if (w->cbits[f >> 6] & bit)
            continue;                   /* constant in an ancestor */
        int v = D->s->extra ? fr_random_cut(D, w, f, a, b, best)
                            : fr_best_cut(D, w, f, a, b, best);
        varied += v;
        if (!v)
            w->cbits[f >> 6] |= bit;
        if (best->proxy != before) {    /* keep this feature's codes or values */
            uint8_t *c = w->cs;
            float *x = w->xs;
            w->cs = w->cbest, w->cbest = c;
            w->xs = w->xbest, w->xbest = x;
        }
    }
    return best->feature >= 0;
}

/* Stably moves the rows of [a, b) going left to the front (writing each
 * row to both sides and advancing one, so no branch on the data); returns
 * the end of the left part. */
static int64_t partition(const fr_data *D, fr_work *w, const fr_split *sp, int64_t a, int64_t b)
{
    const uint8_t *cs = D->codes ? w->cbest : NULL;
    const float *xs = w->xbest;
    int64_t nl = a, nr = 0;
    for (int64_t k = a; k < b; k++) {
        int32_t r = w->idx[k];
        uint64_t inc = w->inc[k];
        int left;
        if (cs) {
            int c = cs[k];
            left = c <= sp->bin || (c == KP_BIN_MISSING && sp->mleft);
        } else {
            float x = xs[k];
            left = x <= sp->thr || (x != x && sp->mleft);
        }
        w->idx[nl] = r;
        w->tidx[nr] = r;
        w->inc[nl] = inc;
        w->tinc[nr] = inc;
        if (w->cls) {
            int32_t c = w->cls[k];
            w->cls[nl] = c;
            w->tcls[nr] = c;
        }
        if (w->wy) {
            double v = w->wy[k];
            w->wy[nl] = v;
            w->twy[nr] = v;
        }
        nl += left;
        nr += !left;
    }
    memcpy(w->idx + nl, w->tidx, sizeof *w->idx * (size_t)nr);
    memcpy(w->inc + nl, w->tinc, sizeof *w->inc * (size_t)nr);
    if (w->cls)
        memcpy(w->cls + nl, w->tcls, sizeof *w->cls * (size_t)nr);
    if (w->wy)
        memcpy(w->wy + nl, w->twy, sizeof *w->wy * (size_t)nr);
    return nl;
}

/* The float threshold of a cut: x <= it exactly when code <= bin for the
 * node's rows; half way across empty bins, as scikit-learn's midpoints. */
static float threshold(const fr_data *D, const fr_split *sp)
{
    if (sp->bin < 0)
        return sp->thr;
    const float *cut = D->cuts[sp->feature];
    if (sp->next < 0 || sp->next == sp->bin + 1)
        return cut[sp->bin];
    double lo = cut[sp->bin], hi = cut[sp->next - 1];
    return (float)(lo + (hi - lo) / 2);
}

/* ---- growing ---- */

/* Draws the tree's rows (bootstrap counts in w->tinc, by row) and lists the
 * drawn ones by position; returns their count. */
static int64_t draw_rows(const fr_data *D, fr_work *w)
{
    int64_t n = D->n, m = 0;
    uint64_t *count = w->tinc;
    if (D->s->bootstrap) {
        memset(count, 0, sizeof *count * (size_t)n);
        for (int64_t t = 0; t < D->s->n_draw; t++)
            count[kp_rng_below(&w->rng, (uint64_t)n)]++;
    } else {
        for (int64_t r = 0; r < n; r++)
            count[r] = 1;
    }
    for (int64_t r = 0; r < n; r++) {
        if (!count[r])
            continue;
        w->idx[m] = (int32_t)r;
        w->inc[m] = count[r] | FR_ONE_ROW;
        if (w->cls)
            w->cls[m] = D->cls[r];
        if (w->wy)
            w->wy[m] = (double)count[r] * D->y[r];
        m++;
    }
    return m;
}

/* Pushes f with the current known-constant features w->cbits. */
static int push_frame(fr_work *w, int64_t *top, fr_frame f)
{
    size_t words = (size_t)w->words;
    if (*top == w->stack_cap) {
        int64_t cap = w->stack_cap * 2;
        fr_frame *s = realloc(w->stack, sizeof *s * (size_t)cap);
        if (s)
            w->stack = s;
        uint64_t *bits = s ? realloc(w->stack_bits, sizeof *bits * words * (size_t)cap) : NULL;
        if (!bits)
            return KP_ERR_NOMEM;
        w->stack_bits = bits;
        w->stack_cap = cap;
    }
    memcpy(w->stack_bits + (size_t)*top * words, w->cbits, sizeof *w->cbits * words);
    w->stack[(*top)++] = f;
    return 0;
}

/* Splits node fr.node with sp: adds its children and pushes them. */
static int split_node(const fr_data *D, fr_work *w, fr_nodes *t, fr_frame fr,
                      const fr_split *sp, int64_t *top)
{
    int64_t mid = partition(D, w, sp, fr.start, fr.end);
    int64_t l = fr_nodes_push(t), r = fr_nodes_push(t);
    if (l < 0 || r < 0 || l > INT32_MAX - 1)
        return KP_ERR_NOMEM;
    t->feature[fr.node] = sp->feature;
    t->thr[fr.node] = threshold(D, sp);
    t->mleft[fr.node] = (uint8_t)sp->mleft;
    t->left[fr.node] = (int32_t)l;
    t->right[fr.node] = (int32_t)r;
    int rc = push_frame(w, top, (fr_frame){ mid, fr.end, r, fr.depth + 1 });
    return rc < 0 ? rc : push_frame(w, top, (fr_frame){ fr.start, mid, l, fr.depth + 1 });
}

int fr_grow(const fr_data *D, fr_work *w, uint64_t seed, fr_nodes *t, int *depth)
{
    const fr_settings *s = D->s;
    int64_t top = 0;
    kp_rng_seed(&w->rng, seed);
    memcpy(w->perm, D->usable, sizeof *w->perm * (size_t)D->n_usable);
    t->n = 0;
    *depth = 0;
    int64_t m = draw_rows(D, w);
    memset(w->cbits, 0, sizeof *w->cbits * (size_t)w->words);
    if (fr_nodes_push(t) < 0 || push_frame(w, &top, (fr_frame){ 0, m, 0, 0 }) < 0)
        return KP_ERR_NOMEM;
    while (top > 0) {
        fr_frame fr = w->stack[--top];
        memcpy(w->cbits, w->stack_bits + (size_t)top * w->words,
               sizeof *w->cbits * (size_t)w->words);
        int64_t rows = fr.end - fr.start;
        int pure = fr_node_stats(D, w, fr.start, fr.end, t->value + fr.node * t->n_out);
        *depth = fr.depth > *depth ? fr.depth : *depth;
        if (pure || rows < s->min_split || rows < 2 * (int64_t)s->min_leaf ||
            (s->max_depth > 0 && fr.depth >= s->max_depth))
            continue;
        fr_split sp;
        if (find_split(D, w, fr.start, fr.end, &sp) &&
            split_node(D, w, t, fr, &sp, &top) < 0)
            return KP_ERR_NOMEM;
    }
    return 0;
}

/* ---- memory ---- */

int64_t fr_nodes_push(fr_nodes *t)
{
    if (t->n == t->cap) {
        int64_t cap = t->cap ? t->cap * 2 : 64;
        int32_t *f = realloc(t->feature, sizeof *f * (size_t)cap);
        if (f)
            t->feature = f;
        int32_t *l = f ? realloc(t->left, sizeof *l * (size_t)cap) : NULL;
        if (l)
            t->left = l;
        int32_t *r = l ? realloc(t->right, sizeof *r * (size_t)cap) : NULL;
        if (r)
            t->right = r;
        float *th = r ? realloc(t->thr, sizeof *th * (size_t)cap) : NULL;
        if (th)
            t->thr = th;
        uint8_t *ml = th ? realloc(t->mleft, (size_t)cap) : NULL;
        if (ml)
            t->mleft = ml;
        float *v = ml ? realloc(t->value, sizeof *v * (size_t)cap * t->n_out) : NULL;
        if (!v)
            return -1;
        t->value = v;
        t->cap = cap;
    }
    int64_t i = t->n++;
    t->feature[i] = t->left[i] = t->right[i] = -1;
    t->thr[i] = 0;
    t->mleft[i] = 0;
    memset(t->value + i * t->n_out, 0, sizeof *t->value * (size_t)t->n_out);
    return i;
}

void fr_nodes_free(fr_nodes *t)
{
    if (!t)
        return;
    free(t->feature);
    free(t->left);
    free(t->right);
    free(t->thr);
    free(t->mleft);
    free(t->value);
}

fr_work *fr_work_create(const fr_data *D)
{
    fr_work *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    size_t n = (size_t)D->n, S = (size_t)D->S;
    int cls = D->kind == FR_CLASS, val = D->kind == FR_VALUE;
    w->idx = malloc(sizeof *w->idx * n);
    w->tidx = malloc(sizeof *w->tidx * n);
    w->inc = malloc(sizeof *w->inc * n);
    w->tinc = malloc(sizeof *w->tinc * n);
    w->cls = cls ? malloc(sizeof *w->cls * n) : NULL;
    w->tcls = cls ? malloc(sizeof *w->tcls * n) : NULL;
    w->wy = val ? malloc(sizeof *w->wy * n) : NULL;
    w->twy = val ? malloc(sizeof *w->twy * n) : NULL;
    w->hist = calloc(256 * S, sizeof *w->hist);
    w->xs = D->xcol ? malloc(sizeof *w->xs * n) : NULL;
    w->xbest = D->xcol ? malloc(sizeof *w->xbest * n) : NULL;
    w->cs = D->codes ? malloc(n) : NULL;
    w->cbest = D->codes ? malloc(n) : NULL;
    w->nl = malloc(sizeof *w->nl * 2 * (size_t)D->K);
    w->tot = malloc(sizeof *w->tot * 5 * S);
    w->perm = malloc(sizeof *w->perm * (size_t)(D->n_usable > 0 ? D->n_usable : 1));
    w->stack_cap = 64;
    w->words = (D->d + 63) / 64;
    w->stack = malloc(sizeof *w->stack * (size_t)w->stack_cap);
    w->stack_bits = malloc(sizeof *w->stack_bits * (size_t)w->words * (size_t)w->stack_cap);
    w->cbits = malloc(sizeof *w->cbits * (size_t)w->words);
    if (!w->idx || !w->tidx || !w->inc || !w->tinc || (cls && (!w->cls || !w->tcls)) ||
        (val && (!w->wy || !w->twy)) || (D->xcol && (!w->xs || !w->xbest)) ||
        (D->codes && (!w->cs || !w->cbest)) || !w->hist || !w->nl || !w->tot || !w->perm ||
        !w->stack || !w->stack_bits || !w->cbits) {
        fr_work_free(w);
        return NULL;
    }
    w->L = w->tot + S;
    w->R = w->tot + 2 * S;
    w->M = w->tot + 3 * S;
    w->acc = w->tot + 4 * S;
    w->nr = w->nl + D->K;
    return w;
}

void fr_work_free(fr_work *w)
{
    if (!w)
        return;
    free(w->idx);
    free(w->tidx);
    free(w->inc);
    free(w->tinc);
    free(w->cls);
    free(w->tcls);
    free(w->wy);
    free(w->twy);
    free(w->hist);
    free(w->xs);
    free(w->xbest);
    free(w->cs);
    free(w->cbest);
    free(w->nl);
    free(w->tot);
    free(w->perm);
    free(w->stack);
    free(w->stack_bits);
    free(w->cbits);
    free(w);
}

/* gbdt_grow.c - grows one regression tree on gradient histograms, as
 * XGBoost's `hist` updater (1.7) does; gbdt_hist.c builds the histograms
 * and finds the splits.
 *
 * The rows of the tree live in one index array; a node owns a range of it,
 * and splitting a node partitions its range in place (stably, in parallel
 * chunks, so rows stay ascending and codes are read in memory order).  Of
 * two children only the one with fewer rows is built from its rows; the
 * other is the parent's histogram minus it, in the parent's buffer.
 * depthwise splits every open leaf of a level at once (XGBoost's Driver
 * pops a whole level); lossguide splits the open leaf with the largest loss
 * change first (ties: the older node), as LightGBM's leaf-wise growth.
 * A split needs loss change > 1e-6 and >= gamma, both children a nonzero
 * hessian sum, and the depth and leaf limits; a leaf's value is
 * -eta T(G) / (H + lambda).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/err.h"
#include "../lib/parallel.h"
#include "gbdt_int.h"

/* Grows *p (elements of size sz, capacity *cap) to hold need; 0 or -1. */
int gb_ensure(void *p, int *cap, int need, size_t sz)
{
    if (need <= *cap)
        return 0;
    int c = *cap ? *cap : 16;
    while (c < need)
        c *= 2;
    void *old, *q;
    memcpy(&old, p, sizeof old);    /* p is the address of any T * */
    if (!(q = realloc(old, (size_t)c * sz)))
        return -1;
    memcpy(p, &q, sizeof q);
    *cap = c;
    return 0;
}

/* ---- create / free ---- */

gb_grower *gb_grower_create(const gb_tree_params *p, const kp_bins *bins, const float *X,
                            int n, int d, int threads)
{
    gb_grower *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->p = p;
    g->n = n;
    g->d = d;
    g->n_groups = (d + GW - 1) / GW;
    g->threads = threads < 1 ? 1 : threads;
    g->stride = (size_t)g->n_groups * GW;
    if (g->stride > 32)     /* a row in one cache line where it fits */
        g->stride = (g->stride + 63) / 64 * 64;
    g->codes_grp = calloc((size_t)n * GW, (size_t)g->n_groups);
    g->codes_row = calloc((size_t)n, g->stride);
    g->codes_col = malloc((size_t)n * d);
    g->nbins = malloc(sizeof *g->nbins * (size_t)d);
    g->cuts = malloc(sizeof *g->cuts * (size_t)d);
    g->rows = malloc(sizeof *g->rows * (size_t)n);
    g->tmp = malloc(sizeof *g->tmp * (size_t)n);
    g->iota = malloc(sizeof *g->iota * (size_t)n);
    g->grp_lo = malloc(sizeof *g->grp_lo * (size_t)g->n_groups);
    g->grp_hi = malloc(sizeof *g->grp_hi * (size_t)g->n_groups);
    g->grp_full = malloc(sizeof *g->grp_full * (size_t)g->n_groups);
    g->sel_groups = malloc(sizeof *g->sel_groups * (size_t)g->n_groups);
    if (!g->codes_grp || !g->codes_row || !g->codes_col || !g->nbins || !g->cuts || !g->rows ||
        !g->tmp || !g->iota || !g->grp_lo || !g->grp_hi || !g->grp_full || !g->sel_groups ||
        gb_make_codes(g, bins, X) < 0) {
        gb_grower_free(g);
        return NULL;
    }
    return g;
}

void gb_grower_free(gb_grower *g)
{
    if (!g)
        return;
    for (int i = 0; i < g->n_all; i++)
        free(g->all[i]);
    free(g->all);
    free(g->pool);
    free(g->codes_grp);
    free(g->codes_row);
    free(g->codes_col);
    free(g->grp_lo);
    free(g->grp_hi);
    free(g->grp_full);
    free(g->sel_groups);
    free(g->nbins);
    free(g->cuts);
    free(g->rows);
    free(g->tmp);
    free(g->iota);
    free(g->nodes);
    free(g->open);
    free(g->batch);
    free(g->kids);
    free(g->ht);
    free(g->pt);
    free(g->leaf_ids);
    free(g);
}

/* ---- partitioning ---- */

/* Stably partitions a chunk in place: its left rows first. */
static void part_chunk(void *data, size_t i, int tid)
{
    (void)tid;
    gb_grower *g = data;
    gb_ptask *t = &g->pt[i];
    const uint8_t *col = g->codes_col + (size_t)t->feature * g->n;
    int *rows = g->rows + t->begin, *tmp = g->tmp + t->begin, nl = 0, nr = 0;
    for (int j = 0; j < t->end - t->begin; j++) {
        int r = rows[j], c = col[r];
        int left = c == KP_BIN_MISSING ? t->dleft : c <= t->bin;
        rows[nl] = r;
        tmp[nr] = r;
        nl += left;
        nr += !left;
    }
    memcpy(rows + nl, tmp, sizeof *rows * (size_t)nr);
    t->n_left = nl;
}

/* Moves a chunk of a node with several chunks to its final place, in tmp. */
static void part_gather(void *data, size_t i, int tid)
{
    (void)tid;
    gb_grower *g = data;
    gb_ptask *t = &g->pt[i];
    if (!t->multi)
        return;
    int nl = t->n_left, nr = t->end - t->begin - nl;
    memcpy(g->tmp + t->dst_left, g->rows + t->begin, sizeof(int) * (size_t)nl);
    memcpy(g->tmp + t->dst_right, g->rows + t->begin + nl, sizeof(int) * (size_t)nr);
}

static void part_copy_back(void *data, size_t i, int tid)
{
    (void)tid;
    gb_grower *g = data;
    gb_ptask *t = &g->pt[i];
    if (t->multi)
        memcpy(g->rows + t->begin, g->tmp + t->begin, sizeof(int) * (size_t)(t->end - t->begin));
}

/* Partitions the rows of every leaf in the batch by its split; fills the
 * kids' row ranges (kids[2i] left, kids[2i + 1] right). */
static int partition_batch(gb_grower *g)
{
    int n_tasks = 0, multi = 0;
    for (int i = 0; i < g->n_batch; i++) {
        gb_leaf *lf = &g->batch[i];
        int chunks = (lf->end - lf->begin + CHUNK - 1) / CHUNK;
        if (gb_ensure(&g->pt, &g->cap_pt, n_tasks + chunks, sizeof *g->pt) < 0)
            return -1;
        multi |= chunks > 1;
        for (int c = 0; c < chunks; c++) {
            int b = lf->begin + c * CHUNK, e = b + CHUNK < lf->end ? b + CHUNK : lf->end;
            g->pt[n_tasks++] = (gb_ptask){ b, e, lf->split.feature, lf->split.bin,
                                           lf->split.dleft, 0, chunks > 1, 0, 0 };
        }
    }
    kp_parallel_for(g->threads, part_chunk, g, (size_t)n_tasks);
    int t = 0;
    for (int i = 0; i < g->n_batch; i++) {
        gb_leaf *lf = &g->batch[i];
        int nl = 0, t0 = t, t1 = t + (lf->end - lf->begin + CHUNK - 1) / CHUNK;
        for (; t < t1; t++)
            nl += g->pt[t].n_left;
        int pl = lf->begin, pr = lf->begin + nl;
        for (int k = t0; k < t1; k++) {
            g->pt[k].dst_left = pl;
            g->pt[k].dst_right = pr;
            pl += g->pt[k].n_left;
            pr += g->pt[k].end - g->pt[k].begin - g->pt[k].n_left;
        }
        g->kids[2 * i].begin = lf->begin;
        g->kids[2 * i].end = g->kids[2 * i + 1].begin = lf->begin + nl;
        g->kids[2 * i + 1].end = lf->end;
    }
    if (multi) {
        kp_parallel_for(g->threads, part_gather, g, (size_t)n_tasks);
        kp_parallel_for(g->threads, part_copy_back, g, (size_t)n_tasks);
    }
    return 0;
}

/* ---- the tree ---- */

/* Appends a leaf node with sums (gs, hs); returns its index or -1. */
static int new_node(gb_grower *g, double gs, double hs, int begin, int end)
{
    if (gb_ensure(&g->nodes, &g->cap_nodes, g->n_nodes + 1, sizeof *g->nodes) < 0)
        return -1;
    g->nodes[g->n_nodes] = (gb_node){ .feature = -1, .bin = 0, .left = -1, .right = -1,
                                      .value = g->p->eta * gb_calc_weight(g->p, gs, hs),
                                      .begin = begin, .end = end };
    return g->n_nodes++;
}

/* May the children of a leaf at `depth` be split further?  (XGBoost's IsChildValid.) */
static int children_may_split(const gb_grower *g, int depth, int n_leaves)
{
    const gb_tree_params *p = g->p;
    return (p->max_depth == 0 || depth + 1 < p->max_depth) &&
           (p->max_leaves == 0 || n_leaves < p->max_leaves);
}

/* May this leaf be split now?  (XGBoost's ExpandEntry::IsValid.) */
static int may_split(const gb_grower *g, const gb_leaf *lf, int n_leaves)
{
    const gb_tree_params *p = g->p;
    const gb_split *s = &lf->split;
    return s->loss > GB_EPS && s->hl != 0 && s->hr != 0 && s->loss >= p->gamma &&
           (p->max_depth == 0 || lf->depth < p->max_depth) &&
           (p->max_leaves == 0 || n_leaves < p->max_leaves);
}

/* Moves the leaves to split next from open to batch: the whole level
 * (depthwise, in node order) or the best one (lossguide). */
static int select_batch(gb_grower *g, int *n_leaves)
{
    g->n_batch = 0;
    if (gb_ensure(&g->batch, &g->cap_batch, g->n_open, sizeof *g->batch) < 0)
        return -1;
    if (!g->p->lossguide) {
        for (int i = 0; i < g->n_open; i++) {
            if (may_split(g, &g->open[i], *n_leaves)) {
                g->batch[g->n_batch++] = g->open[i];
                ++*n_leaves;
            } else {
                gb_hist_put(g, &g->open[i].hist);
            }
        }
        g->n_open = 0;
        return 0;
    }
    int best = 0;
    for (int i = 1; i < g->n_open; i++) {
        double a = g->open[i].split.loss, b = g->open[best].split.loss;
        if (a > b || (a == b && g->open[i].node < g->open[best].node))
            best = i;
    }
    gb_leaf lf = g->open[best];
    g->open[best] = g->open[--g->n_open];
    if (may_split(g, &lf, *n_leaves)) {
        g->batch[g->n_batch++] = lf;
        ++*n_leaves;
    } else {
        gb_hist_put(g, &lf.hist);
    }
    return 0;
}

/* Turns every batch leaf into a split node with two new leaf children. */
static int apply_splits(gb_grower *g)
{
    if (gb_ensure(&g->kids, &g->cap_kids, 2 * g->n_batch, sizeof *g->kids) < 0)
        return -1;
    for (int i = 0; i < g->n_batch; i++) {
        gb_leaf *lf = &g->batch[i];
        gb_split *s = &lf->split;
        int l = new_node(g, s->gl, s->hl, 0, 0), r = l < 0 ? -1 : new_node(g, s->gr, s->hr, 0, 0);
        if (r < 0)
            return -1;
        gb_node *nd = &g->nodes[lf->node];
        *nd = (gb_node){ s->feature, s->bin, s->dleft, l, r, 0, s->loss, lf->begin, lf->end };
        const gb_tree_params *p = g->p;
        g->kids[2 * i] = (gb_leaf){ .node = l, .depth = lf->depth + 1, .g = s->gl, .h = s->hl,
                                    .root_gain = gb_calc_gain(p, s->gl, s->hl) };
        g->kids[2 * i + 1] = (gb_leaf){ .node = r, .depth = lf->depth + 1, .g = s->gr,
                                        .h = s->hr, .root_gain = gb_calc_gain(p, s->gr, s->hr) };
    }
    return 0;
}

/* Builds the kids' histograms (smaller one from rows, the other by
 * subtraction in the parent's buffer) and finds their best splits. */
static int split_kids(gb_grower *g, int n_leaves)
{
    int64_t total = 0;
    int n_tasks = 0;
    for (int i = 0; i < g->n_batch; i++)
        if (children_may_split(g, g->batch[i].depth, n_leaves)) {
            gb_leaf *l = &g->kids[2 * i], *r = &g->kids[2 * i + 1];
            total += l->end - l->begin <= r->end - r->begin ? l->end - l->begin : r->end - r->begin;
        }
    for (int i = 0; i < g->n_batch; i++) {
        gb_leaf *par = &g->batch[i], *l = &g->kids[2 * i], *r = &g->kids[2 * i + 1];
        if (!children_may_split(g, par->depth, n_leaves)) {
            gb_hist_put(g, &par->hist);
            continue;
        }
        gb_leaf *small = l->end - l->begin <= r->end - r->begin ? l : r;
        gb_leaf *big = small == l ? r : l;
        if (!(small->hist = gb_hist_get(g)))
            return -1;
        big->hist = par->hist;
        par->hist = NULL;
        int blocks = gb_block_count(g, small->end - small->begin, total);
        if (gb_add_hist_tasks(g, &n_tasks, small, big, big->hist, blocks) < 0)
            return -1;
    }
    gb_run_hist_tasks(g, n_tasks);
    return 0;
}

/* Puts the kids that can split into open; frees the others' histograms. */
static int open_kids(gb_grower *g)
{
    if (gb_ensure(&g->open, &g->cap_open, g->n_open + 2 * g->n_batch, sizeof *g->open) < 0)
        return -1;
    for (int i = 0; i < 2 * g->n_batch; i++) {
        gb_leaf *k = &g->kids[i];
        g->nodes[k->node].begin = k->begin;
        g->nodes[k->node].end = k->end;
        if (k->hist && k->split.loss > GB_EPS)
            g->open[g->n_open++] = *k;
        else
            gb_hist_put(g, &k->hist);
    }
    return 0;
}

/* Starts the tree: the root node, its histogram and best split. */
static int grow_root(gb_grower *g, int m)
{
    double gs = 0, hs = 0;
    for (int i = 0; i < m; i++) {
        gs += g->gh[g->rows[i]].g;
        hs += g->gh[g->rows[i]].h;
    }
    g->n_nodes = 0;
    g->n_open = 0;
    if (new_node(g, gs, hs, 0, m) < 0)
        return -1;
    gb_leaf root = { .node = 0, .begin = 0, .end = m, .depth = 0, .g = gs, .h = hs,
                     .root_gain = gb_calc_gain(g->p, gs, hs) };
    if (m == 0 || !children_may_split(g, -1, 1))
        return 0;
    if (gb_ensure(&g->open, &g->cap_open, 1, sizeof *g->open) < 0 || !(root.hist = gb_hist_get(g)))
        return -1;
    g->open[0] = root;
    int n_tasks = 0;
    if (gb_add_hist_tasks(g, &n_tasks, &g->open[0], NULL, NULL, gb_block_count(g, m, m)) < 0)
        return -1;
    gb_run_hist_tasks(g, n_tasks);
    if (g->open[0].split.loss > GB_EPS)
        g->n_open = 1;
    else
        gb_hist_put(g, &g->open[0].hist);
    return 0;
}

/* Writes the grown tree into the forest (thresholds from the cuts). */
static int emit(gb_grower *g, gb_forest *f)
{
    if (gb_forest_reserve(f, g->n_nodes) < 0 ||
        gb_ensure(&g->leaf_ids, &g->cap_leaf_ids, g->n_nodes, sizeof *g->leaf_ids) < 0)
        return -1;
    int o = f->n_nodes;
    g->n_leaves = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const gb_node *nd = &g->nodes[i];
        f->feature[o + i] = nd->feature;
        f->left[o + i] = nd->left;
        f->right[o + i] = nd->right;
        f->default_left[o + i] = (uint8_t)nd->dleft;
        f->value[o + i] = nd->feature < 0 ? (float)nd->value : 0;
        f->gain[o + i] = (float)nd->gain;
        f->threshold[o + i] = 0;
        if (nd->feature >= 0)
            f->threshold[o + i] = nd->bin < 0 ? -INFINITY : g->cuts[nd->feature][nd->bin];
        else
            g->leaf_ids[g->n_leaves++] = i;
    }
    f->n_nodes += g->n_nodes;
    f->offsets[++f->n_trees] = f->n_nodes;
    gb_forest_pack(f, o);
    return 0;
}

/* Notes which features of each code group the tree uses. */
static void select_groups(gb_grower *g, const int *feats, int nf)
{
    g->feats = feats;
    g->nf = nf;
    g->n_sel = 0;
    for (int k = 0; k < nf; k++) {
        int grp = feats[k] / GW;
        if (g->n_sel == 0 || g->sel_groups[g->n_sel - 1] != grp) {
            g->sel_groups[g->n_sel++] = grp;
            g->grp_lo[grp] = k;
        }
        g->grp_hi[grp] = k + 1;
    }
    for (int s = 0; s < g->n_sel; s++) {
        int grp = g->sel_groups[s], lanes = g->d - grp * GW < GW ? g->d - grp * GW : GW;
        g->grp_full[grp] = g->grp_hi[grp] - g->grp_lo[grp] == lanes;
    }
}

int gb_grow(gb_grower *g, const gb_gh *gh, const int *rows, int m, const int *feats, int nf,
            gb_forest *f, char *err, size_t errlen)
{
    g->gh = gh;
    select_groups(g, feats, nf);
    memcpy(g->rows, rows, sizeof *rows * (size_t)m);
    int n_leaves = 1;
    if (grow_root(g, m) < 0)
        goto nomem;
    while (g->n_open > 0) {
        if (select_batch(g, &n_leaves) < 0)
            goto nomem;
        if (g->n_batch == 0)
            continue;
        if (apply_splits(g) < 0 || partition_batch(g) < 0 || split_kids(g, n_leaves) < 0 ||
            open_kids(g) < 0)
            goto nomem;
    }
    if (emit(g, f) < 0)
        goto nomem;
    return 0;
nomem:
    g->n_open = g->n_pool = 0;    /* every buffer is free again */
    for (int i = 0; i < g->n_all; i++)
        g->pool[g->n_pool++] = g->all[i];
    return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory growing a tree of %d rows", m);
}

int gb_grower_leaves(const gb_grower *g) { return g->n_leaves; }

int gb_grower_leaf(const gb_grower *g, int i, const int **rows, int *count)
{
    const gb_node *nd = &g->nodes[g->leaf_ids[i]];
    *rows = g->rows + nd->begin;
    *count = nd->end - nd->begin;
    return g->leaf_ids[i];
}

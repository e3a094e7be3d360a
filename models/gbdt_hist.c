/* gbdt_hist.c - bin codes, gradient histograms and the split search of the
 * gbdt grower (see gbdt_grow.c for the tree around them).
 *
 * Codes: the train rows are binned once (a branch-free search in each
 * feature's cuts, exactly kp_bins_code) into three layouts: groups of GW = 8
 * features stored column block by column block (the root reads them as a
 * stream), the same bytes row by row in one cache line per row (deeper nodes
 * gather their rows from it), and one column per feature (partitioning).
 * A histogram holds, for each feature, NB = 256 slots (255 = missing) of
 * (sum g, sum h) in double; a task adds its node's rows to a block of
 * feature groups, ROW_CHUNK rows at a time so the rows' code lines stay in
 * cache from one group to the next, then subtracts the result from the
 * parent's buffer (histogram subtraction: the sibling, for free) and
 * searches both for splits.  Every cell is summed by one task in row order,
 * and the blocks' best splits are reduced in feature order, so the result
 * never depends on the thread count or the blocking.
 *
 * Split search per feature, as XGBoost's HistEvaluator: a forward scan with
 * missing values on the right, then, if the node has missing values for the
 * feature, a backward scan with them on the left.  A split's loss change is
 * gain(left) + gain(right) - gain(node); both sides need a hessian sum >=
 * min_child_weight, and a candidate replaces the best only if strictly
 * better (so lower features and earlier bins win ties).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/parallel.h"
#include "gbdt_int.h"
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define MIN_TASK_WORK 65536     /* rows x features below which a node is one task */
#define PREFETCH 24             /* rows ahead to prefetch when building */
#define ROW_CHUNK 4096          /* rows per pass over a task's groups (their codes stay in L2) */

static double soft(double g, double alpha)
{
    return g > alpha ? g - alpha : g < -alpha ? g + alpha : 0;
}

/* XGBoost's CalcGain of the evaluator: T(G)^2 / (H + lambda), 0 if H <= 0. */
double gb_calc_gain(const gb_tree_params *p, double g, double h)
{
    if (h <= 0)
        return 0;
    double t = soft(g, p->alpha);
    return t * t / (h + p->lambda);
}

/* XGBoost's CalcWeight: -T(G) / (H + lambda), 0 below min_child_weight. */
double gb_calc_weight(const gb_tree_params *p, double g, double h)
{
    if (h < p->min_child_weight || h <= 0)
        return 0;
    return -soft(g, p->alpha) / (h + p->lambda);
}

/* Returns a histogram buffer from the pool (or a new one); NULL if out of memory. */
double *gb_hist_get(gb_grower *g)
{
    if (g->n_pool > 0)
        return g->pool[--g->n_pool];
    if (g->n_all == g->cap_all) {   /* the pool never holds more than all */
        int cap = g->cap_all ? 2 * g->cap_all : 16;
        double **a = realloc(g->all, sizeof *a * (size_t)cap), **p;
        if (!a)
            return NULL;
        g->all = a;
        if (!(p = realloc(g->pool, sizeof *p * (size_t)cap)))
            return NULL;
        g->pool = p;
        g->cap_all = cap;
    }
    double *h = aligned_alloc(64, sizeof(double) * 2 * NB * GW * (size_t)g->n_groups);
    if (h)
        g->all[g->n_all++] = h;
    return h;
}

void gb_hist_put(gb_grower *g, double **h)
{
    if (*h)
        g->pool[g->n_pool++] = *h;
    *h = NULL;
}

/* Returns the number of cuts below x in c[0..255] (ascending, padded with
 * +inf): the first bin b with x <= c[b], as kp_bins_code, without branches. */
static int bin_of(const float *c, float x)
{
    int b = 0;
    for (int step = 128; step > 0; step >>= 1)
        b += c[b + step - 1] < x ? step : 0;
    return b;
}

typedef struct code_job { gb_grower *g; const float *X; const float *cuts; } code_job;

/* Writes the codes of rows [i * CHUNK, ...) in the three layouts. */
static void code_block(void *data, size_t i, int tid)
{
    (void)tid;
    code_job *j = data;
    gb_grower *g = j->g;
    size_t n = (size_t)g->n, d = (size_t)g->d;
    size_t r0 = i * CHUNK, r1 = r0 + CHUNK < n ? r0 + CHUNK : n;
    for (size_t r = r0; r < r1; r++)
        for (size_t f = 0; f < d; f++) {
            float x = j->X[r * d + f];
            uint8_t c = isnan(x) ? KP_BIN_MISSING : (uint8_t)bin_of(j->cuts + f * NB, x);
            g->codes_grp[((f / GW) * n + r) * GW + f % GW] = c;
            g->codes_row[r * g->stride + f] = c;
            g->codes_col[f * n + r] = c;
        }
}

/* Bins X into the grower's three code layouts; 0 or -1. */
int gb_make_codes(gb_grower *g, const kp_bins *bins, const float *X)
{
    float *cuts = malloc(sizeof *cuts * NB * (size_t)g->d);
    if (!cuts)
        return -1;
    for (int f = 0; f < g->d; f++) {
        g->nbins[f] = kp_bins_cuts(bins, f, &g->cuts[f]);
        for (int b = 0; b < NB; b++)
            cuts[(size_t)f * NB + b] = b < g->nbins[f] ? g->cuts[f][b] : INFINITY;
    }
    code_job j = { g, X, cuts };
    kp_parallel_for(g->threads, code_block, &j, ((size_t)g->n + CHUNK - 1) / CHUNK);
    for (int i = 0; i < g->n; i++)
        g->iota[i] = i;
    free(cuts);
    return 0;
}

/* ---- histograms ---- */

#ifdef __SSE2__
typedef __m128d gb_pair;
/* Loads a gb_gh as two doubles (g, h). */
static inline gb_pair pair_load(const gb_gh *p)
{
    return _mm_cvtps_pd(_mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)(const void *)p)));
}
static inline void pair_add(double *b, gb_pair v)
{
    _mm_store_pd(b, _mm_add_pd(_mm_load_pd(b), v));
}
#else
typedef struct gb_pair { double g, h; } gb_pair;
static inline gb_pair pair_load(const gb_gh *p) { return (gb_pair){ p->g, p->h }; }
static inline void pair_add(double *b, gb_pair v)
{
    b[0] += v.g;
    b[1] += v.h;
}
#endif

/* Adds the gradient v of a row with codes c (8 lanes, a byte each) to h. */
#define ADD_LANE(h, c, v, j)                                                               \
    pair_add((h) + ((((size_t)(j) << 8) + (((c) >> (8 * (j))) & 0xff)) << 1), (v))
#define ADD_ROW(h, c, v)                                                                   \
    do {                                                                                   \
        ADD_LANE(h, c, v, 0); ADD_LANE(h, c, v, 1); ADD_LANE(h, c, v, 2);                  \
        ADD_LANE(h, c, v, 3); ADD_LANE(h, c, v, 4); ADD_LANE(h, c, v, 5);                  \
        ADD_LANE(h, c, v, 6); ADD_LANE(h, c, v, 7);                                        \
    } while (0)

/* Adds the rows' gradients to every lane of a group's histogram h; two rows
 * at a time, for more independent work in flight. */
static void add_group(const uint8_t *codes, size_t stride, const int *rows, int nrows,
                      const gb_gh *gh, double *h)
{
    int i = 0;
    for (; i + 1 < nrows; i += 2) {
        int r = rows[i], s = rows[i + 1];
        if (i + PREFETCH + 1 < nrows) {
            __builtin_prefetch(codes + (size_t)rows[i + PREFETCH] * stride);
            __builtin_prefetch(codes + (size_t)rows[i + PREFETCH + 1] * stride);
            __builtin_prefetch(gh + rows[i + PREFETCH]);
            __builtin_prefetch(gh + rows[i + PREFETCH + 1]);
        }
        uint64_t c, d;
        memcpy(&c, codes + (size_t)r * stride, GW);
        memcpy(&d, codes + (size_t)s * stride, GW);
        gb_pair v = pair_load(gh + r), w = pair_load(gh + s);
        ADD_ROW(h, c, v);
        ADD_ROW(h, d, w);
    }
    for (; i < nrows; i++) {
        uint64_t c;
        memcpy(&c, codes + (size_t)rows[i] * stride, GW);
        gb_pair v = pair_load(gh + rows[i]);
        ADD_ROW(h, c, v);
    }
}

/* add_group over the consecutive rows r0 .. r0 + nrows - 1. */
static void add_group_seq(const uint8_t *codes, size_t stride, int r0, int nrows,
                          const gb_gh *gh, double *h)
{
    int r = r0, end = r0 + nrows;
    for (; r + 1 < end; r += 2) {
        uint64_t c, d;
        memcpy(&c, codes + (size_t)r * stride, GW);
        memcpy(&d, codes + (size_t)(r + 1) * stride, GW);
        gb_pair v = pair_load(gh + r), w = pair_load(gh + r + 1);
        ADD_ROW(h, c, v);
        ADD_ROW(h, d, w);
    }
    for (; r < end; r++) {
        uint64_t c;
        memcpy(&c, codes + (size_t)r * stride, GW);
        gb_pair v = pair_load(gh + r);
        ADD_ROW(h, c, v);
    }
}

/* Adds the rows' gradients to lanes lanes[0..nl) of a group's histogram h. */
static void add_lanes(const uint8_t *codes, size_t stride, const int *rows, int nrows,
                      const gb_gh *gh, const int *lanes, int nl, double *h)
{
    for (int i = 0; i < nrows; i++) {
        int r = rows[i];
        if (i + PREFETCH < nrows) {
            __builtin_prefetch(codes + (size_t)rows[i + PREFETCH] * stride);
            __builtin_prefetch(gh + rows[i + PREFETCH]);
        }
        const uint8_t *c = codes + (size_t)r * stride;
        gb_pair v = pair_load(gh + r);
        for (int k = 0; k < nl; k++)
            pair_add(h + (((size_t)lanes[k] * NB + c[lanes[k]]) << 1), v);
    }
}

/* Adds rows [c0, c1) of the task to group grp of histogram dst.  The root
 * (every row, in order) reads the group's own column block; other nodes read
 * the row-major codes, whose lines stay in cache from one group to the next. */
static void build_group(const gb_grower *g, const gb_htask *t, int grp, int c0, int c1,
                        double *dst)
{
    const uint8_t *codes = t->rows ? g->codes_row + (size_t)grp * GW
                                   : g->codes_grp + (size_t)grp * g->n * GW;
    size_t stride = t->rows ? g->stride : GW;
    if (g->grp_full[grp] && !t->rows) {
        add_group_seq(codes, stride, c0, c1 - c0, g->gh, dst);
    } else if (g->grp_full[grp]) {
        add_group(codes, stride, t->rows + c0, c1 - c0, g->gh, dst);
    } else {
        int lanes[GW], nl = 0;
        for (int k = g->grp_lo[grp]; k < g->grp_hi[grp]; k++)
            lanes[nl++] = g->feats[k] % GW;
        add_lanes(codes, stride, (t->rows ? t->rows : g->iota) + c0, c1 - c0, g->gh, lanes, nl,
                  dst);
    }
}

/* Offers a candidate split; it replaces *best only if strictly better.  The
 * loss change is gb_calc_gain(left) + gb_calc_gain(right) - root_gain, with
 * the two divisions made one. */
static inline void offer(const gb_tree_params *p, const gb_leaf *lf, gb_split *best, int f,
                         int bin, int dleft, double gl, double hl)
{
    double gr = lf->g - gl, hr = lf->h - hl;
    if (!(hl >= p->min_child_weight && hr >= p->min_child_weight) || !(hl > 0 && hr > 0))
        return;
    double tl = p->alpha > 0 ? soft(gl, p->alpha) : gl, tr = p->alpha > 0 ? soft(gr, p->alpha) : gr;
    double dl = hl + p->lambda, dr = hr + p->lambda, num = tl * tl * dr + tr * tr * dl;
    if (!(num >= (best->loss + lf->root_gain) * (dl * dr) * (1 - 1e-9)))
        return;     /* cannot beat the best (loosely, so rounding never drops one that can) */
    double loss = num / (dl * dr) - lf->root_gain;
    if (!(loss > best->loss) || !isfinite(loss))
        return;
    *best = (gb_split){ loss, f, bin, dleft, gl, hl, gr, hr };
}

/* Scans feature f of leaf lf's histogram h for the best split. */
static void eval_feature(const gb_grower *g, const gb_leaf *lf, const double *h, int f,
                         gb_split *best)
{
    const gb_tree_params *p = g->p;
    int nb = g->nbins[f];
    const double *m = h + 2 * (NB - 1);
    int missing = m[0] != 0 || m[1] != 0;
    double gl = 0, hl = 0;
    for (int b = 0; b < nb - !missing; b++) {   /* missing on the right */
        if (h[2 * b + 1] == 0 && h[2 * b] == 0 && b > 0)
            continue;       /* an empty bin: the same split as the bin before */
        gl += h[2 * b];
        hl += h[2 * b + 1];
        offer(p, lf, best, f, b, 0, gl, hl);
    }
    if (!missing)
        return;
    double gr = 0, hr = 0;
    for (int b = nb - 1; b >= 0; b--) {         /* missing on the left */
        gr += h[2 * b];
        hr += h[2 * b + 1];
        offer(p, lf, best, f, b - 1, 1, lf->g - gr, lf->h - hr);
    }
}

/* Finds leaf lf's best split over the drawn features of groups sel_groups[lo..hi). */
static void eval_block(const gb_grower *g, const gb_leaf *lf, const double *hist, int lo,
                       int hi, gb_split *best)
{
    *best = (gb_split){ .feature = -1 };
    for (int s = lo; s < hi; s++) {
        int grp = g->sel_groups[s];
        for (int k = g->grp_lo[grp]; k < g->grp_hi[grp]; k++)
            eval_feature(g, lf, hist + (size_t)g->feats[k] * NB * 2, g->feats[k], best);
    }
}

/* a[i] -= b[i] for i < n. */
static void subtract(double *restrict a, const double *restrict b, int n)
{
    for (int i = 0; i < n; i++)
        a[i] -= b[i];
}

/* Task i: builds its groups of dst, subtracts them from sub, and finds the
 * best split of a (and b) over those groups' features. */
static void hist_task(void *data, size_t i, int tid)
{
    (void)tid;
    gb_grower *g = data;
    gb_htask *t = &g->ht[i];
    for (int s = t->lo; s < t->hi; s++)
        memset(t->dst + (size_t)g->sel_groups[s] * GW * NB * 2, 0, sizeof(double) * GW * NB * 2);
    for (int c0 = 0; c0 < t->nrows; c0 += ROW_CHUNK) {
        int c1 = c0 + ROW_CHUNK < t->nrows ? c0 + ROW_CHUNK : t->nrows;
        for (int s = t->lo; s < t->hi; s++)
            build_group(g, t, g->sel_groups[s], c0, c1,
                        t->dst + (size_t)g->sel_groups[s] * GW * NB * 2);
    }
    for (int s = t->lo; s < t->hi; s++) {
        size_t o = (size_t)g->sel_groups[s] * GW * NB * 2;
        if (t->sub)
            subtract(t->sub + o, t->dst + o, GW * NB * 2);
    }
    eval_block(g, t->a, t->dst, t->lo, t->hi, &t->best_a);
    if (t->b)
        eval_block(g, t->b, t->sub, t->lo, t->hi, &t->best_b);
}

/* Queues the tasks of one histogram: built for a from its rows, b = parent - a. */
int gb_add_hist_tasks(gb_grower *g, int *n_tasks, gb_leaf *a, gb_leaf *b, double *parent,
                      int blocks)
{
    if (gb_ensure(&g->ht, &g->cap_ht, *n_tasks + blocks, sizeof *g->ht) < 0)
        return -1;
    for (int k = 0; k < blocks; k++)
        g->ht[(*n_tasks)++] = (gb_htask){
            .rows = a->end - a->begin == g->n ? NULL : g->rows + a->begin,
            .nrows = a->end - a->begin,
            .lo = g->n_sel * k / blocks, .hi = g->n_sel * (k + 1) / blocks,
            .dst = a->hist, .sub = parent, .a = a, .b = b };
    return 0;
}

/* Feature blocks for a histogram of `rows` rows when `total` rows are built
 * in all: enough tasks to keep every thread busy (the result is the same
 * for any blocking). */
int gb_block_count(const gb_grower *g, int64_t rows, int64_t total)
{
    if (g->threads == 1 || rows * g->nf < MIN_TASK_WORK)
        return 1;
    int64_t want = (int64_t)g->threads * 3, blocks = (rows * want + total - 1) / total;
    return (int)(blocks < 1 ? 1 : blocks > g->n_sel ? g->n_sel : blocks);
}

/* Runs the queued histogram tasks and stores each leaf's best split. */
void gb_run_hist_tasks(gb_grower *g, int n_tasks)
{
    int64_t work = 0;
    for (int i = 0; i < n_tasks; i++)
        work += (int64_t)g->ht[i].nrows * (g->ht[i].hi - g->ht[i].lo) * GW;
    kp_parallel_for(work < MIN_TASK_WORK ? 1 : g->threads, hist_task, g, (size_t)n_tasks);
    for (int i = 0; i < n_tasks; i++) {
        gb_htask *t = &g->ht[i];
        int first = i == 0 || g->ht[i - 1].a != t->a;
        if (first || t->best_a.loss > t->a->split.loss)
            t->a->split = t->best_a;
        if (t->b && (first || t->best_b.loss > t->b->split.loss))
            t->b->split = t->best_b;
    }
}

/* forest_cut.c - a node's statistics and the scoring of its cuts, for
 * forest_tree.c.
 *
 * Statistics of a set of rows are S slots (fr_slot); each row adds its
 * bootstrap count w and, in the high 32 bits, 1 (so one add keeps both the
 * weighted and the distinct row count, the latter for min_samples_leaf):
 *   FR_CLASS   slot c: sum of (w | 1 << 32) over the rows of class c
 *   FR_LABELS  slot 0: sum of (w | 1 << 32); slot 1 + j: sum of w * y_j
 *   FR_VALUE   slot 0: sum of (w | 1 << 32); slot 1 (double): sum of w * y
 * A cut maximises score(left) + score(right): sum n_c^2 / n (Gini),
 * sum n_c log n_c - n log n (entropy), s^2 / n (squared error), i.e. it
 * minimises the children's weighted impurity as scikit-learn's proxy does.
 */
#include <float.h>
#include <math.h>
#include <string.h>
#include "binning.h"
#include "forest_int.h"

#define LOW32 FR_LOW32         /* the weight part of a packed slot */

/* ---- statistics ---- */

static void st_zero(const fr_data *D, fr_slot *s) { memset(s, 0, sizeof *s * (size_t)D->S); }

/* Returns the packed (count << 32 | weight) of s. */
static uint64_t st_packed(const fr_data *D, const fr_slot *s)
{
    if (D->kind != FR_CLASS)
        return s[0].u;
    uint64_t t = 0;
    for (int c = 0; c < D->K; c++)
        t += s[c].u;
    return t;
}

static void st_add(const fr_data *D, fr_slot *d, const fr_slot *a)
{
    if (D->kind == FR_VALUE) {
        d[0].u += a[0].u;
        d[1].f += a[1].f;
        return;
    }
    for (int i = 0; i < D->S; i++)
        d[i].u += a[i].u;
}

/* d = a - b */
static void st_sub(const fr_data *D, fr_slot *d, const fr_slot *a, const fr_slot *b)
{
    if (D->kind == FR_VALUE) {
        d[0].u = a[0].u - b[0].u;
        d[1].f = a[1].f - b[1].f;
        return;
    }
    for (int i = 0; i < D->S; i++)
        d[i].u = a[i].u - b[i].u;
}

/* Adds the row at position k to d. */
static void st_add_row(const fr_data *D, const fr_work *w, fr_slot *d, int64_t k)
{
    uint64_t inc = w->inc[k];
    if (D->kind == FR_CLASS) {
        d[w->cls[k]].u += inc;
    } else if (D->kind == FR_VALUE) {
        d[0].u += inc;
        d[1].f += w->wy[k];
    } else {
        const uint8_t *lab = D->labels + (size_t)w->idx[k] * D->K;
        d[0].u += inc;
        for (int j = 0; j < D->K; j++)
            d[1 + j].u += (inc & LOW32) * lab[j];
    }
}

static double xlogx(double x) { return x > 0 ? x * log(x) : 0; }

/* Returns the split score of one side (larger is purer, see the top). */
static double st_score(const fr_data *D, const fr_slot *s)
{
    int gini = D->s->criterion != FR_ENTROPY;
    double q = 0, n = (double)(st_packed(D, s) & LOW32);
    if (n == 0)
        return 0;
    if (D->kind == FR_VALUE)
        return s[1].f * s[1].f / n;
    if (D->kind == FR_CLASS) {
        for (int c = 0; c < D->K; c++) {
            double nc = (double)(s[c].u & LOW32);
            q += gini ? nc * nc : xlogx(nc);
        }
        return gini ? q / n : q - xlogx(n);
    }
    for (int j = 0; j < D->K; j++) {
        double n1 = (double)s[1 + j].u, n0 = n - n1;
        q += gini ? (n1 * n1 + n0 * n0) / n : xlogx(n1) + xlogx(n0) - xlogx(n);
    }
    return q;
}

int fr_node_stats(const fr_data *D, fr_work *w, int64_t a, int64_t b, float *value)
{
    fr_slot *t = w->tot;
    st_zero(D, t);
    for (int64_t k = a; k < b; k++)
        st_add_row(D, w, t, k);
    double n = (double)(st_packed(D, t) & LOW32);
    int impure = 0;
    if (D->kind == FR_VALUE) {
        double mean = t[1].f / n, ss = 0;
        for (int64_t k = a; k < b; k++) {
            double e = D->y[w->idx[k]] - mean;
            ss += (double)(w->inc[k] & LOW32) * e * e;
        }
        value[0] = (float)mean;
        return ss / n <= DBL_EPSILON;
    }
    int binary = D->kind == FR_CLASS && D->n_out == 1;    /* only P(class 1) is kept */
    for (int j = 0; j < D->K; j++) {
        double c = (double)(t[D->kind == FR_CLASS ? j : 1 + j].u & LOW32);
        if (!binary || j == 1)
            value[binary ? 0 : j] = (float)(c / n);
        impure += D->kind == FR_CLASS ? c > 0 : c > 0 && c < n;
    }
    return D->kind == FR_CLASS ? impure <= 1 : impure == 0;
}

/* ---- finding cuts ---- */

/* Keeps the cut if both sides have min_leaf rows and it beats *best.
 * mleft < 0: the node has no NaN; they will go to the heavier side. */
static void consider(const fr_data *D, int f, int bin, int next, float thr, const fr_slot *L,
                     const fr_slot *R, int mleft, fr_split *best)
{
    uint64_t pl = st_packed(D, L), pr = st_packed(D, R);
    uint64_t min_leaf = (uint64_t)D->s->min_leaf;
    if ((pl >> 32) < min_leaf || (pr >> 32) < min_leaf)
        return;
    double p = st_score(D, L) + st_score(D, R);
    if (!(p > best->proxy))
        return;
    *best = (fr_split){ f, bin, next, mleft >= 0 ? mleft : (pl & LOW32) >= (pr & LOW32), p, thr };
}

/* Sums rows [a, b) per bin of column col into w->hist (all zero before)
 * and marks the occupied bins in w->occupied. */
static void fill_hist(const fr_data *D, fr_work *w, const uint8_t *col, int64_t a, int64_t b)
{
    const int32_t *idx = w->idx;
    const uint64_t *inc = w->inc;
    uint64_t *occ = w->occupied;
    fr_slot *h = w->hist;
    int S = D->S;
    occ[0] = occ[1] = occ[2] = occ[3] = 0;
    uint8_t *cs = w->cs;
    if (D->kind == FR_CLASS) {
        const int32_t *cls = w->cls;
        for (int64_t k = a; k < b; k++) {
            unsigned c = cs[k] = col[idx[k]];
            occ[c >> 6] |= (uint64_t)1 << (c & 63);
            h[(size_t)c * S + cls[k]].u += inc[k];
        }
    } else if (D->kind == FR_VALUE) {
        const double *wy = w->wy;
        for (int64_t k = a; k < b; k++) {
            unsigned c = cs[k] = col[idx[k]];
            occ[c >> 6] |= (uint64_t)1 << (c & 63);
            h[2 * c].u += inc[k];
            h[2 * c + 1].f += wy[k];
        }
    } else {
        for (int64_t k = a; k < b; k++) {
            unsigned c = cs[k] = col[idx[k]];
            occ[c >> 6] |= (uint64_t)1 << (c & 63);
            st_add_row(D, w, h + (size_t)c * S, k);
        }
    }
}

/* Lists the occupied bins of the histogram in w->ucode / w->ust
 * (ascending), and in *miss the NaN rows' sums or NULL.  Returns the count. */
static int occupied_bins(const fr_data *D, fr_work *w, const fr_slot **miss)
{
    int u = 0;
    *miss = NULL;
    for (int q = 0; q < 4; q++)
        for (uint64_t bits = w->occupied[q]; bits; bits &= bits - 1) {
            int c = q * 64 + __builtin_ctzll(bits);
            if (c == KP_BIN_MISSING) {
                *miss = w->hist + (size_t)c * D->S;
            } else {
                w->ucode[u] = c;
                w->ust[u++] = w->hist + (size_t)c * D->S;
            }
        }
    return u;
}

/* Zeroes the occupied bins again, for the next feature. */
static void clear_hist(const fr_data *D, fr_work *w)
{
    for (int q = 0; q < 4; q++)
        for (uint64_t bits = w->occupied[q]; bits; bits &= bits - 1) {
            fr_slot *e = w->hist + (size_t)(q * 64 + __builtin_ctzll(bits)) * D->S;
            if (D->S == 2)
                e[0].u = e[1].u = 0;    /* also 0.0 */
            else
                memset(e, 0, sizeof *e * (size_t)D->S);
        }
}

/* Scores every cut between the u occupied bins (and the cut that sends the
 * NaN rows alone to the right): any statistics, criterion and NaN. */
static void scan_cuts(const fr_data *D, fr_work *w, int f, int u, const fr_slot *miss,
                      fr_split *best)
{
    fr_slot *acc = w->acc, *L = w->L, *R = w->R;
    st_zero(D, acc);
    int last = miss ? u : u - 1;
    for (int j = 0; j < last; j++) {
        st_add(D, acc, w->ust[j]);
        int bin = w->ucode[j], next = j + 1 < u ? w->ucode[j + 1] : -1;
        st_sub(D, R, w->tot, acc);
        consider(D, f, bin, next, 0, acc, R, miss ? 0 : -1, best);
        if (miss && j + 1 < u) {
            memcpy(L, acc, sizeof *L * (size_t)D->S);
            st_add(D, L, miss);
            st_sub(D, R, w->tot, L);
            consider(D, f, bin, next, 0, L, R, 1, best);
        }
    }
}

/* Keeps the cut "code <= bin" of feature f (next: the next occupied bin)
 * with left/right weights wl/wr and score p if it beats *best (no NaN in
 * the node: they go to the heavier side). */
static void keep(int f, int bin, int next, double wl, double wr, double p, fr_split *best)
{
    if (p > best->proxy)
        *best = (fr_split){ f, bin, next, wl >= wr, p, 0 };
}

/* Returns the first occupied bin after bin c (c = -1: the first), or 256;
 * the NaN bin is never occupied when this is used. */
static int next_bin(const uint64_t *occ, int c)
{
    for (int q = (c + 1) >> 6; q < 4; q++) {
        uint64_t bits = occ[q] & (c + 1 > q * 64 ? ~(uint64_t)0 << ((c + 1) & 63) : ~(uint64_t)0);
        if (bits)
            return q * 64 + __builtin_ctzll(bits);
    }
    return 256;
}

/* scan_cuts for squared error without NaN, in running sums; zeroes the
 * histogram as it goes. */
static void scan_value(const fr_data *D, fr_work *w, int f, fr_split *best)
{
    uint64_t tot = w->tot[0].u, acc = 0, min_leaf = (uint64_t)D->s->min_leaf;
    double W = (double)(tot & LOW32), Y = w->tot[1].f, sl = 0;
    fr_slot *h = w->hist;
    for (int c = next_bin(w->occupied, -1), nx; c < 256; c = nx) {
        acc += h[2 * c].u;
        sl += h[2 * c + 1].f;
        h[2 * c].u = h[2 * c + 1].u = 0;
        nx = next_bin(w->occupied, c);
        if (nx == 256 || (acc >> 32) < min_leaf || ((tot - acc) >> 32) < min_leaf)
            continue;
        double wl = (double)(acc & LOW32), wr = W - wl, sr = Y - sl;
        keep(f, c, nx, wl, wr, sl * sl / wl + sr * sr / wr, best);
    }
}

/* scan_cuts for Gini over classes without NaN: the sums of squared class
 * weights of both sides move with each bin (exact: whole numbers); zeroes
 * the histogram as it goes. */
static void scan_gini(const fr_data *D, fr_work *w, int f, fr_split *best)
{
    int K = D->K;
    uint64_t tot = st_packed(D, w->tot), acc = 0, min_leaf = (uint64_t)D->s->min_leaf;
    double W = (double)(tot & LOW32), qL = 0, qR = 0, *nl = w->nl, *nr = w->nr;
    for (int c = 0; c < K; c++) {
        nl[c] = 0;
        nr[c] = (double)(w->tot[c].u & LOW32);
        qR += nr[c] * nr[c];
    }
    for (int c = next_bin(w->occupied, -1), nx; c < 256; c = nx) {
        fr_slot *e = w->hist + (size_t)c * K;
        for (int k = 0; k < K; k++) {
            if (!e[k].u)
                continue;
            double n = (double)(e[k].u & LOW32);
            acc += e[k].u;
            qL += n * (2 * nl[k] + n);
            qR += n * (n - 2 * nr[k]);
            nl[k] += n;
            nr[k] -= n;
            e[k].u = 0;
        }
        nx = next_bin(w->occupied, c);
        if (nx == 256 || (acc >> 32) < min_leaf || ((tot - acc) >> 32) < min_leaf)
            continue;
        double wl = (double)(acc & LOW32), wr = W - wl;
        keep(f, c, nx, wl, wr, qL / wl + qR / wr, best);
    }
}

int fr_best_cut(const fr_data *D, fr_work *w, int f, int64_t a, int64_t b, fr_split *best)
{
    const uint8_t *col = D->codes + (size_t)f * D->n;
    fill_hist(D, w, col, a, b);
    const uint64_t *occ = w->occupied;
    int nan = (int)(occ[3] >> 63), u = 0;       /* u: occupied value bins, 2 = "several" */
    for (int q = 0; q < 4; q++) {
        uint64_t bits = q == 3 ? occ[q] & ~((uint64_t)1 << 63) : occ[q];
        u += bits ? 1 + ((bits & (bits - 1)) != 0) : 0;
    }
    int varies = u > 1 || (u == 1 && nan);
    if (varies && !nan && D->kind == FR_VALUE) {
        scan_value(D, w, f, best);
    } else if (varies && !nan && D->kind == FR_CLASS && D->s->criterion == FR_GINI) {
        scan_gini(D, w, f, best);
    } else {
        const fr_slot *miss;
        int u = occupied_bins(D, w, &miss);
        if (varies)
            scan_cuts(D, w, f, u, miss, best);
        clear_hist(D, w);
    }
    return varies;
}

/* Copies column col over rows [a, b) to w->xs[a..b) and finds its smallest
 * and largest non-NaN value (lo > hi when all are NaN); returns 1 if some
 * are NaN.  Four lanes, so the min/max chains overlap. */
static int value_range(const fr_work *w, const float *col, int64_t a, int64_t b, float *lo,
                       float *hi)
{
    const int32_t *idx = w->idx;
    float l[4] = { INFINITY, INFINITY, INFINITY, INFINITY };
    float h[4] = { -INFINITY, -INFINITY, -INFINITY, -INFINITY }, *xs = w->xs;
    int nan = 0;
    int64_t k = a;
    for (; k + 3 < b; k += 4) {
        if (k + 35 < b)
            for (int j = 32; j < 36; j++)
                __builtin_prefetch(col + idx[k + j]);
        for (int j = 0; j < 4; j++) {
            float x = xs[k + j] = col[idx[k + j]];
            l[j] = x < l[j] ? x : l[j];     /* NaN compares false: skipped */
            h[j] = x > h[j] ? x : h[j];
            nan |= x != x;
        }
    }
    for (; k < b; k++) {
        float x = xs[k] = col[idx[k]];
        l[0] = x < l[0] ? x : l[0];
        h[0] = x > h[0] ? x : h[0];
        nan |= x != x;
    }
    for (int j = 1; j < 4; j++) {
        l[0] = l[j] < l[0] ? l[j] : l[0];
        h[0] = h[j] > h[0] ? h[j] : h[0];
    }
    *lo = l[0];
    *hi = h[0];
    return nan;
}

/* Returns v, or 0.0 when the mask m is 0. */
static inline double masked(double v, uint64_t m)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    u &= m;
    memcpy(&v, &u, sizeof v);
    return v;
}

/* Adds the rows of [a, b) with x <= t (not NaN; x from value_range) to L,
 * without branches on x. */
static void sum_left(const fr_data *D, fr_work *w, int64_t a, int64_t b, float t, fr_slot *L)
{
    const float *xs = w->xs;
    const uint64_t *inc = w->inc;
    if (D->kind == FR_CLASS && D->K == 2) {
        uint64_t s0 = 0, s1 = 0;
        for (int64_t k = a; k < b; k++) {
            uint64_t v = inc[k] & -(uint64_t)(xs[k] <= t), one = -(uint64_t)w->cls[k];
            s1 += v & one;
            s0 += v & ~one;
        }
        L[0].u += s0;
        L[1].u += s1;
    } else if (D->kind == FR_CLASS) {
        fr_slot *L2 = w->acc;       /* a second lane for odd rows */
        st_zero(D, L2);
        int64_t k = a;
        for (; k + 1 < b; k += 2) {
            L[w->cls[k]].u += inc[k] & -(uint64_t)(xs[k] <= t);
            L2[w->cls[k + 1]].u += inc[k + 1] & -(uint64_t)(xs[k + 1] <= t);
        }
        if (k < b)
            L[w->cls[k]].u += inc[k] & -(uint64_t)(xs[k] <= t);
        st_add(D, L, L2);
    } else if (D->kind == FR_VALUE) {
        const double *wy = w->wy;
        uint64_t n = 0;
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0;     /* four lanes: the adds overlap */
        int64_t k = a;
        for (; k + 3 < b; k += 4) {     /* masks, not branches, on x */
            uint64_t m0 = -(uint64_t)(xs[k] <= t), m1 = -(uint64_t)(xs[k + 1] <= t);
            uint64_t m2 = -(uint64_t)(xs[k + 2] <= t), m3 = -(uint64_t)(xs[k + 3] <= t);
            n += (inc[k] & m0) + (inc[k + 1] & m1) + (inc[k + 2] & m2) + (inc[k + 3] & m3);
            s0 += masked(wy[k], m0);
            s1 += masked(wy[k + 1], m1);
            s2 += masked(wy[k + 2], m2);
            s3 += masked(wy[k + 3], m3);
        }
        for (; k < b; k++) {
            uint64_t m = -(uint64_t)(xs[k] <= t);
            n += inc[k] & m;
            s0 += masked(wy[k], m);
        }
        L[0].u += n;
        L[1].f += (s0 + s1) + (s2 + s3);
    } else {
        for (int64_t k = a; k < b; k++)
            if (xs[k] <= t)
                st_add_row(D, w, L, k);
    }
}

/* The threshold is drawn uniformly between the node's smallest and largest
 * value (raw values, as scikit-learn). */
int fr_random_cut(const fr_data *D, fr_work *w, int f, int64_t a, int64_t b, fr_split *best)
{
    const float *col = D->xcol + (size_t)f * D->n;
    float lo, hi;
    int nan = value_range(w, col, a, b, &lo, &hi);
    if (lo > hi || (lo == hi && !nan))
        return 0;
    float t = hi;
    if (lo < hi) {
        t = (float)(lo + kp_rng_uniform(&w->rng) * ((double)hi - lo));
        t = t < hi ? t : lo;        /* rounded up to the largest: take the smallest */
    }
    fr_slot *L = w->L, *R = w->R, *M = w->M;
    st_zero(D, L);
    sum_left(D, w, a, b, t, L);
    st_sub(D, R, w->tot, L);
    consider(D, f, -1, -1, t, L, R, nan ? 0 : -1, best);
    if (nan && t < hi) {
        st_zero(D, M);
        for (int64_t k = a; k < b; k++)
            if (isnan(w->xs[k]))
                st_add_row(D, w, M, k);
        st_add(D, L, M);
        st_sub(D, R, w->tot, L);
        consider(D, f, -1, -1, t, L, R, 1, best);
    }
    return 1;
}


/* lbfgs.c - limited-memory BFGS with a strong Wolfe line search (see lbfgs.h). */
#include "lbfgs.h"

#include <assert.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/err.h"

#define C1 1e-4   /* sufficient decrease (Armijo) */
#define C2 0.9    /* curvature; 0.9 is the usual choice for quasi-Newton */

typedef struct lb {
    int n, m;
    kp_lbfgs_fn fn;
    void *data;
    double *s, *y;          /* m x n correction pairs, a ring of `count` from `head` */
    double *rho, *alpha;    /* m each */
    int head, count;
    double *x, *g, *d;      /* current point, its gradient, search direction */
    double *xt, *gt;        /* the line search's trial point and gradient */
    double f, ft;
    int evals;
} lb;

/* One point of the line search: step a, phi(a), phi'(a). */
typedef struct ls_pt { double a, f, dg; } ls_pt;

kp_lbfgs_opts kp_lbfgs_defaults(void)
{
    return (kp_lbfgs_opts){ .m = 10, .max_iter = 200, .max_ls = 40, .gtol = 1e-6,
                            .ftol = 64 * DBL_EPSILON };
}

static double dot(const double *a, const double *b, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static double absmax(const double *a, int n)
{
    double m = 0;
    for (int i = 0; i < n; i++)
        m = fmax(m, fabs(a[i]));
    return m;
}

/* Evaluates phi(a) = f(x + a d) into xt, gt, ft. */
static ls_pt ls_eval(lb *s, double a)
{
    for (int i = 0; i < s->n; i++)
        s->xt[i] = s->x[i] + a * s->d[i];
    s->ft = s->fn(s->data, s->xt, s->gt);
    s->evals++;
    return (ls_pt){ a, s->ft, dot(s->gt, s->d, s->n) };
}

/* Returns the minimiser of the cubic through p and q, kept inside the middle
 * 80% of the interval; the midpoint when the cubic is of no use. */
static double cubic_min(ls_pt p, ls_pt q)
{
    double lo = fmin(p.a, q.a), hi = fmax(p.a, q.a), w = hi - lo, mid = 0.5 * (p.a + q.a);
    if (!isfinite(p.f) || !isfinite(q.f) || !isfinite(p.dg) || !isfinite(q.dg))
        return mid;
    double d1 = p.dg + q.dg - 3 * (p.f - q.f) / (p.a - q.a);
    double disc = d1 * d1 - p.dg * q.dg;
    if (!(disc >= 0))
        return mid;
    double d2 = copysign(sqrt(disc), q.a - p.a);
    double den = q.dg - p.dg + 2 * d2;
    if (den == 0)
        return mid;
    double a = q.a - (q.a - p.a) * (q.dg + d2 - d1) / den;
    return a >= lo + 0.1 * w && a <= hi - 0.1 * w ? a : mid;
}

/* Accepts lo (which satisfies sufficient decrease) when zoom runs out of
 * evaluations; 0 with the point in xt/gt/ft, or -1. */
static int ls_fallback(lb *s, double f0, ls_pt lo)
{
    if (lo.a <= 0 || !(lo.f < f0))
        return -1;
    ls_pt p = ls_eval(s, lo.a);
    return p.f < f0 ? 0 : -1;
}

/* Algorithm 3.6: narrows [lo, hi] to a strong Wolfe step; 0 or -1. */
static int ls_zoom(lb *s, double f0, double dg0, ls_pt lo, ls_pt hi, int budget)
{
    for (int k = 0; k < budget; k++) {
        if (fabs(hi.a - lo.a) <= DBL_EPSILON * fmax(lo.a, hi.a))
            break;
        ls_pt p = ls_eval(s, cubic_min(lo, hi));
        if (!isfinite(p.f) || p.f > f0 + C1 * p.a * dg0 || p.f >= lo.f) {
            hi = p;
            continue;
        }
        if (fabs(p.dg) <= -C2 * dg0)
            return 0;
        if (p.dg * (hi.a - lo.a) >= 0)
            hi = lo;
        lo = p;
    }
    return ls_fallback(s, f0, lo);
}

/* Algorithm 3.5: brackets a strong Wolfe step from a0 along d; 0 with the
 * accepted point in xt/gt/ft, or -1. */
static int line_search(lb *s, double dg0, double a0, int max_ls)
{
    double f0 = s->f;
    ls_pt prev = { 0, f0, dg0 };
    double a = a0;
    for (int k = 0; k < max_ls; k++) {
        ls_pt p = ls_eval(s, a);
        if (!isfinite(p.f) || p.f > f0 + C1 * a * dg0 || (k > 0 && p.f >= prev.f))
            return ls_zoom(s, f0, dg0, prev, p, max_ls - k - 1);
        if (fabs(p.dg) <= -C2 * dg0)
            return 0;
        if (p.dg >= 0)
            return ls_zoom(s, f0, dg0, p, prev, max_ls - k - 1);
        prev = p;
        a *= 2;
    }
    return -1;
}

/* Two-loop recursion: d = -H g with H built from the stored pairs. */
static void direction(lb *s)
{
    int n = s->n;
    memcpy(s->d, s->g, sizeof *s->d * (size_t)n);
    for (int k = s->count - 1; k >= 0; k--) {
        int j = (s->head + k) % s->m;
        s->alpha[j] = s->rho[j] * dot(s->s + (size_t)j * n, s->d, n);
        for (int i = 0; i < n; i++)
            s->d[i] -= s->alpha[j] * s->y[(size_t)j * n + i];
    }
    if (s->count > 0) {
        int j = (s->head + s->count - 1) % s->m;
        const double *yj = s->y + (size_t)j * n;
        double gamma = 1 / (s->rho[j] * dot(yj, yj, n));
        for (int i = 0; i < n; i++)
            s->d[i] *= gamma;
    }
    for (int k = 0; k < s->count; k++) {
        int j = (s->head + k) % s->m;
        double beta = s->rho[j] * dot(s->y + (size_t)j * n, s->d, n);
        for (int i = 0; i < n; i++)
            s->d[i] += s->s[(size_t)j * n + i] * (s->alpha[j] - beta);
    }
    for (int i = 0; i < n; i++)
        s->d[i] = -s->d[i];
}

/* Stores the pair (xt - x, gt - g) unless its curvature s'y is not positive. */
static void remember(lb *s)
{
    int n = s->n;
    double sy = 0, yy = 0;
    for (int i = 0; i < n; i++) {
        double si = s->xt[i] - s->x[i], yi = s->gt[i] - s->g[i];
        sy += si * yi;
        yy += yi * yi;
    }
    if (!(sy > DBL_EPSILON * yy))
        return;
    int j = s->count < s->m ? (s->head + s->count) % s->m : s->head;
    double *sj = s->s + (size_t)j * n, *yj = s->y + (size_t)j * n;
    for (int i = 0; i < n; i++) {
        sj[i] = s->xt[i] - s->x[i];
        yj[i] = s->gt[i] - s->g[i];
    }
    s->rho[j] = 1 / sy;
    if (s->count < s->m)
        s->count++;
    else
        s->head = (s->head + 1) % s->m;
}

/* Takes one step: a direction, a line search (retried once along -g), and
 * the update.  0, or -1 when no acceptable step was found. */
static int step(lb *s, int max_ls)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        direction(s);
        double dg0 = dot(s->g, s->d, s->n);
        if (!(dg0 < 0)) {   /* not a descent direction: forget the curvature */
            s->count = 0;
            direction(s);
            dg0 = dot(s->g, s->d, s->n);
        }
        double a0 = s->count == 0 ? fmin(1, 1 / sqrt(dot(s->g, s->g, s->n))) : 1;
        if (line_search(s, dg0, a0, max_ls) == 0) {
            remember(s);
            return 0;
        }
        if (s->count == 0)
            break;
        s->count = 0;
    }
    return -1;
}

static double *alloc_doubles(size_t n, double **pool, size_t *used)
{
    double *p = *pool + *used;
    *used += n;
    return p;
}

/* Points the state's arrays into one zeroed allocation; 0 or KP_ERR_NOMEM. */
static int lb_alloc(lb *s, double **pool)
{
    size_t n = (size_t)s->n, m = (size_t)s->m, used = 0;
    *pool = calloc(2 * m * n + 2 * m + 5 * n, sizeof **pool);
    if (!*pool)
        return KP_ERR_NOMEM;
    s->s = alloc_doubles(m * n, pool, &used);
    s->y = alloc_doubles(m * n, pool, &used);
    s->rho = alloc_doubles(m, pool, &used);
    s->alpha = alloc_doubles(m, pool, &used);
    s->x = alloc_doubles(n, pool, &used);
    s->g = alloc_doubles(n, pool, &used);
    s->d = alloc_doubles(n, pool, &used);
    s->xt = alloc_doubles(n, pool, &used);
    s->gt = alloc_doubles(n, pool, &used);
    return 0;
}

int kp_lbfgs(int n, double *x, kp_lbfgs_fn fn, void *data, const kp_lbfgs_opts *o,
             kp_lbfgs_result *res, char *err, size_t errlen)
{
    assert(n > 0 && o->m > 0 && o->max_ls > 0);
    lb s = { .n = n, .m = o->m, .fn = fn, .data = data };
    double *pool = NULL;
    if (lb_alloc(&s, &pool) < 0)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "L-BFGS: out of memory for %d parameters", n);
    memcpy(s.x, x, sizeof *x * (size_t)n);
    s.f = fn(data, s.x, s.g);
    s.evals = 1;
    kp_lbfgs_stop stop = KP_LBFGS_GTOL;
    int it = 0;
    while (absmax(s.g, n) > o->gtol) {
        if (it == o->max_iter) {
            stop = KP_LBFGS_MAXITER;
            break;
        }
        it++;
        if (step(&s, o->max_ls) < 0) {
            stop = KP_LBFGS_LINESEARCH;
            break;
        }
        double df = s.f - s.ft, scale = fmax(fmax(fabs(s.f), fabs(s.ft)), 1);
        memcpy(s.x, s.xt, sizeof *x * (size_t)n);
        memcpy(s.g, s.gt, sizeof *x * (size_t)n);
        s.f = s.ft;
        if (df <= o->ftol * scale && absmax(s.g, n) > o->gtol) {
            stop = KP_LBFGS_FTOL;
            break;
        }
    }
    memcpy(x, s.x, sizeof *x * (size_t)n);
    *res = (kp_lbfgs_result){ stop, it, s.evals, s.f, absmax(s.g, n) };
    free(pool);
    return 0;
}

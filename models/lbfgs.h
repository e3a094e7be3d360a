/* lbfgs.h - limited-memory BFGS for smooth unconstrained objectives (internal).
 *
 * The two-loop recursion of Nocedal & Wright (Algorithm 7.4) with the initial
 * scaling gamma = s'y / y'y and a line search that satisfies the strong Wolfe
 * conditions (Algorithms 3.5 and 3.6, cubic interpolation).  Every reduction
 * is a plain loop in index order, so the same inputs give the same bits.
 */
#ifndef KP_LBFGS_H
#define KP_LBFGS_H

#include <stddef.h>

/* Returns f(x) and writes its gradient to grad (n values); x is borrowed. */
typedef double (*kp_lbfgs_fn)(void *data, const double *x, double *grad);

typedef struct kp_lbfgs_opts {
    int m;           /* correction pairs kept (10) */
    int max_iter;    /* iterations (each one line search) */
    int max_ls;      /* function evaluations per line search (40) */
    double gtol;     /* stop when max |grad_i| <= gtol */
    double ftol;     /* stop when (f_k - f_k+1) / max(|f_k|, |f_k+1|, 1) <= ftol */
} kp_lbfgs_opts;

typedef enum kp_lbfgs_stop {
    KP_LBFGS_GTOL,      /* gradient small enough: converged */
    KP_LBFGS_FTOL,      /* no more relative progress: converged */
    KP_LBFGS_MAXITER,   /* ran out of iterations */
    KP_LBFGS_LINESEARCH /* the line search found no acceptable step */
} kp_lbfgs_stop;

typedef struct kp_lbfgs_result {
    kp_lbfgs_stop stop;
    int iters, evals;
    double f;        /* objective at the returned x */
    double gmax;     /* max |grad_i| at the returned x */
} kp_lbfgs_result;

/* Returns opts with m 10, max_ls 40, max_iter 200, gtol 1e-6, ftol 64 eps. */
kp_lbfgs_opts kp_lbfgs_defaults(void);

/* Minimises fn from the starting point x (n values, overwritten with the
 * best point found); fills *res.  0 or KP_ERR_NOMEM. */
int kp_lbfgs(int n, double *x, kp_lbfgs_fn fn, void *data, const kp_lbfgs_opts *o,
             kp_lbfgs_result *res, char *err, size_t errlen);

#endif

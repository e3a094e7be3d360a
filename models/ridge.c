/* ridge.c - ridge regression, as scikit-learn's Ridge(alpha, solver='cholesky').
 *
 * Minimises ||y - Xw - b||^2 + alpha ||w||^2; the intercept comes from
 * centring X and y.  With d features and n rows it solves the d x d system
 * (Xc'Xc + alpha I) W = Xc'Yc when d <= n, else the n x n dual
 * (XcXc' + alpha I) A = Yc, W = Xc'A, both by Cholesky (LAPACK dposv).
 * regression predicts the value; binary and multilabel regress on the 0/1
 * targets and predict the value clipped to [0, 1]: a score that ranks well
 * (fine for AUC) but is not a calibrated probability.
 */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/err.h"
#include "linear.h"
#include "model.h"

/* LAPACK's Cholesky solve, from libopenblas (column-major, Fortran ABI). */
void dposv_(const char *uplo, const int *n, const int *nrhs, double *a, const int *lda,
            double *b, const int *ldb, int *info);

static const kp_keyspec ridge_params[] = {
    { "alpha", KP_PT_FLOAT, "1.0", NULL, 0, 1e12, "L2 penalty strength (>= 0)" },
    { "fit_intercept", KP_PT_BOOL, "true", NULL, 0, 0, "fit an unpenalised intercept" },
    { NULL, 0, NULL, NULL, 0, 0, NULL },
};

/* The centred problem, in double (X and Y copied for the dual only). */
typedef struct ridge_sys {
    int n, d, L;
    double *X, *Y;      /* n x d and n x L, owned, or NULL */
    double *xm, *ym;    /* column means (zero without an intercept), owned */
} ridge_sys;

static void sys_free(ridge_sys *s)
{
    free(s->X);
    free(s->Y);
    free(s->xm);
    free(s->ym);
}

/* Subtracts from each column of A (n x c) its mean, stored in mean. */
static void center(double *A, int n, int c, double *mean)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < c; j++)
            mean[j] += A[(size_t)i * c + j];
    for (int j = 0; j < c; j++)
        mean[j] /= n;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < c; j++)
            A[(size_t)i * c + j] -= mean[j];
}

/* Sets the sizes and allocates the means; with copy (the dual), also copies
 * X and the targets to double and centres them.  0 or KP_ERR_NOMEM. */
static int sys_init(ridge_sys *s, const kp_problem *pb, const kp_matrix *X, const float *y,
                    int fit_intercept, int copy)
{
    s->n = (int)X->rows;
    s->d = (int)X->cols;
    s->L = pb->n_out;
    size_t nd = (size_t)s->n * s->d, nl = (size_t)s->n * s->L;
    s->xm = calloc((size_t)s->d, sizeof *s->xm);
    s->ym = calloc((size_t)s->L, sizeof *s->ym);
    if (!s->xm || !s->ym)
        return KP_ERR_NOMEM;
    if (!copy)
        return 0;
    s->X = malloc(sizeof *s->X * nd);
    s->Y = malloc(sizeof *s->Y * nl);
    if (!s->X || !s->Y)
        return KP_ERR_NOMEM;
    for (size_t i = 0; i < nd; i++)
        s->X[i] = X->data[i];
    for (size_t i = 0; i < nl; i++)
        s->Y[i] = y[i];
    if (fit_intercept) {
        center(s->X, s->n, s->d, s->xm);
        center(s->Y, s->n, s->L, s->ym);
    }
    return 0;
}

/* Adds alpha to the diagonal of A (k x k) and solves A Z = B for the L
 * right-hand sides in B (L x k row-major, i.e. k x L column-major). */
static int cholesky_solve(double *A, int k, double alpha, double *B, int L,
                          char *err, size_t errlen)
{
    for (int i = 0; i < k; i++)
        A[(size_t)i * k + i] += alpha;
    int info = 0;
    dposv_("L", &k, &L, A, &k, B, &k, &info);  /* row-major upper = column-major lower */
    if (info > 0)
        return kp_errf(err, errlen, KP_ERR_ARG,
                       "the %d x %d system is not positive definite (alpha = %g with "
                       "constant or collinear features?); use alpha > 0", k, k, alpha);
    if (info < 0)
        return kp_errf(err, errlen, KP_ERR_INTERNAL, "dposv rejected argument %d", -info);
    return 0;
}

#define PRIMAL_BLOCK 4096   /* rows converted to double at a time */

/* Accumulates Xc'Xc into A (d x d, upper) and Yc'Xc into W (L x d) block by
 * block, centring with the means in s->xm and s->ym: no n x d double copy,
 * so memory traffic stays that of reading X once. */
static int accumulate_normal(const ridge_sys *s, const kp_matrix *X, const float *y,
                             double *A, double *W)
{
    double *Xb = malloc(sizeof *Xb * PRIMAL_BLOCK * (size_t)s->d);
    double *Yb = malloc(sizeof *Yb * PRIMAL_BLOCK * (size_t)s->L);
    if (!Xb || !Yb) {
        free(Xb);
        free(Yb);
        return KP_ERR_NOMEM;
    }
    for (int r0 = 0; r0 < s->n; r0 += PRIMAL_BLOCK) {
        int nb = s->n - r0 < PRIMAL_BLOCK ? s->n - r0 : PRIMAL_BLOCK;
        for (int i = 0; i < nb; i++) {
            for (int j = 0; j < s->d; j++)
                Xb[(size_t)i * s->d + j] = X->data[(size_t)(r0 + i) * s->d + j] - s->xm[j];
            for (int l = 0; l < s->L; l++)
                Yb[(size_t)i * s->L + l] = y[(size_t)(r0 + i) * s->L + l] - s->ym[l];
        }
        double beta = r0 == 0 ? 0.0 : 1.0;
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, s->d, nb, 1.0, Xb, s->d, beta, A,
                    s->d);
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, s->L, s->d, nb, 1.0, Yb, s->L,
                    Xb, s->d, beta, W, s->d);
    }
    free(Xb);
    free(Yb);
    return 0;
}

/* Column means of the n x c float matrix M into mean (double sums). */
static void column_means(const float *M, int n, int c, double *mean)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < c; j++)
            mean[j] += M[(size_t)i * c + j];
    for (int j = 0; j < c; j++)
        mean[j] /= n;
}

/* Solves for W (L x d) from the d x d normal equations, reading X in blocks. */
static int solve_primal(ridge_sys *s, const kp_matrix *X, const float *y, int fit_intercept,
                        double alpha, double *W, char *err, size_t errlen)
{
    double *A = malloc(sizeof *A * (size_t)s->d * s->d);
    if (!A)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory for a %d x %d system",
                       s->d, s->d);
    if (fit_intercept) {
        column_means(X->data, s->n, s->d, s->xm);
        column_means(y, s->n, s->L, s->ym);
    }
    int rc = accumulate_normal(s, X, y, A, W);
    if (rc < 0)
        rc = kp_errf(err, errlen, rc, "out of memory for the normal equations");
    else
        rc = cholesky_solve(A, s->d, alpha, W, s->L, err, errlen);
    free(A);
    return rc;
}

/* Solves for W (L x d) through the n x n kernel system (d > n). */
static int solve_dual(const ridge_sys *s, double alpha, double *W, char *err, size_t errlen)
{
    double *K = malloc(sizeof *K * (size_t)s->n * s->n);
    double *B = malloc(sizeof *B * (size_t)s->n * s->L);
    int rc = KP_ERR_NOMEM;
    if (!K || !B) {
        kp_errf(err, errlen, rc, "out of memory for a %d x %d system", s->n, s->n);
        goto fail;
    }
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, s->n, s->d, 1.0, s->X, s->d,
                0.0, K, s->n);
    for (int i = 0; i < s->n; i++)
        for (int l = 0; l < s->L; l++)
            B[(size_t)l * s->n + i] = s->Y[(size_t)i * s->L + l];
    if ((rc = cholesky_solve(K, s->n, alpha, B, s->L, err, errlen)) < 0)
        goto fail;
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->L, s->d, s->n, 1.0, B, s->n,
                s->X, s->d, 0.0, W, s->d);
fail:
    free(K);
    free(B);
    return rc;
}

/* Stores W and the intercepts ym - xm . w in m, rounded to float. */
static void store(const ridge_sys *s, const double *W, kp_linear *m)
{
    for (int l = 0; l < s->L; l++) {
        double b = s->ym[l];
        for (int j = 0; j < s->d; j++) {
            b -= s->xm[j] * W[(size_t)l * s->d + j];
            m->coef[(size_t)l * s->d + j] = (float)W[(size_t)l * s->d + j];
        }
        m->intercept[l] = (float)b;
    }
}

static int ridge_fit(const kp_params *params, const kp_problem *pb, const kp_matrix *X,
                     const float *y, const kp_fit_opts *opts, void **model,
                     char *err, size_t errlen)
{
    double alpha = kp_params_double(params, "alpha", 1.0);
    int fit_intercept = kp_params_bool(params, "fit_intercept", 1);
    if (!(alpha >= 0) || !isfinite(alpha))
        return kp_errf(err, errlen, KP_ERR_ARG, "alpha = %g must be >= 0", alpha);
    ridge_sys s = { 0 };
    kp_link link = pb->task == KP_TASK_REGRESSION ? KP_LINK_IDENTITY : KP_LINK_CLIP01;
    kp_linear *m = kp_linear_create(link, pb->n_out, X->cols);
    double *W = malloc(sizeof *W * (size_t)pb->n_out * (size_t)X->cols);
    int rc = KP_ERR_NOMEM;
    int primal = X->cols <= X->rows;
    if (!m || !W || sys_init(&s, pb, X, y, fit_intercept, !primal) < 0) {
        kp_errf(err, errlen, rc, "out of memory for %lld x %lld rows", (long long)X->rows,
                (long long)X->cols);
        goto fail;
    }
    rc = primal ? solve_primal(&s, X, y, fit_intercept, alpha, W, err, errlen)
                : solve_dual(&s, alpha, W, err, errlen);
    if (rc < 0)
        goto fail;
    store(&s, W, m);
    if (opts->log)
        fprintf(opts->log, "ridge: solved the %s system for %d output(s), alpha %g\n",
                s.d <= s.n ? "primal" : "dual", s.L, alpha);
    *model = m;
    m = NULL;
fail:
    sys_free(&s);
    free(W);
    kp_linear_free(m);
    return rc;
}

static int ridge_load(const kp_st *st, const kp_problem *pb, void **model, char *err,
                      size_t errlen)
{
    kp_link link = pb->task == KP_TASK_REGRESSION ? KP_LINK_IDENTITY : KP_LINK_CLIP01;
    kp_linear *m = NULL;
    int rc = kp_linear_load(st, pb, link, &m, err, errlen);
    *model = m;
    return rc;
}

const kp_model_ops kp_model_ridge = {
    .name = "ridge",
    .doc = "ridge regression (scikit-learn's Ridge, Cholesky); 0/1 tasks give scores in [0, 1]",
    .params = ridge_params,
    .tasks = KP_TASK_BIT(KP_TASK_REGRESSION) | KP_TASK_BIT(KP_TASK_BINARY) |
             KP_TASK_BIT(KP_TASK_MULTILABEL),
    .fit = ridge_fit,
    .predict = kp_linear_predict,
    .save = kp_linear_save,
    .load = ridge_load,
    .free = kp_linear_free,
};

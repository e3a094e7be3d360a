/* logistic.c - L2-regularised logistic regression, as scikit-learn's
 * LogisticRegression(penalty='l2', C=C, solver='lbfgs').
 *
 * Minimises  sum_i w_i * logloss_i + ||W||^2 / (2C)  (the intercept is not
 * penalised) with L-BFGS in double precision; the loss and gradient use
 * OpenBLAS dgemm over a double copy of X.  binary: one sigmoid model;
 * multiclass: one multinomial softmax model over n_out classes; multilabel:
 * one independent binary model per label.  The stopping rule `tol` is on the
 * gradient of the objective divided by sum_i w_i (= n), so it does not grow
 * with the number of rows (scikit-learn applies its tol to the unscaled sum).
 */
#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/err.h"
#include "lbfgs.h"
#include "linear.h"
#include "model.h"

static const kp_keyspec logistic_params[] = {
    { "C", KP_PT_FLOAT, "1.0", NULL, 1e-12, 1e12,
      "inverse regularisation strength (> 0): the penalty is ||W||^2 / (2C)" },
    { "max_iter", KP_PT_INT, "200", NULL, 1, 1e9, "L-BFGS iterations at most" },
    { "tol", KP_PT_FLOAT, "1e-6", NULL, 0, 1,
      "stop when max |gradient| of objective / n is at most this" },
    { "fit_intercept", KP_PT_BOOL, "true", NULL, 0, 0, "fit an unpenalised intercept" },
    { "class_weight", KP_PT_ENUM, "none", "none|balanced", 0, 0,
      "balanced weighs each class by n / (classes present * its count), as scikit-learn" },
    { NULL, 0, NULL, NULL, 0, 0, NULL },
};

/* One optimisation problem: K = 1 is binary (sigmoid), K > 1 multinomial. */
typedef struct lr_problem {
    const double *X;    /* n x d, borrowed */
    int n, d, K;
    const int *y;       /* n labels: 0/1, or class indices */
    double *sw;         /* n sample weights */
    double sw_sum, inv_c;
    int fit_intercept;
    double *Z;          /* n x K scratch: scores, then residuals */
} lr_problem;

typedef struct lr_settings {
    double C, tol;
    int max_iter, fit_intercept, balanced;
} lr_settings;

/* Turns row i's scores z into residuals w_i * (p - onehot(y)); returns w_i * loss_i. */
static double row_loss(const lr_problem *p, int i, double *z)
{
    double w = p->sw[i];
    int y = p->y[i];
    if (p->K == 1) {
        double t = z[0], e = exp(-fabs(t)), loss = log1p(e) + fmax(t, 0) - y * t;
        double prob = t >= 0 ? 1 / (1 + e) : e / (1 + e);
        z[0] = w * (prob - y);
        return w * loss;
    }
    double mx = z[0], sum = 0, zy = z[y];
    for (int k = 1; k < p->K; k++)
        mx = fmax(mx, z[k]);
    for (int k = 0; k < p->K; k++) {
        z[k] = exp(z[k] - mx);
        sum += z[k];
    }
    for (int k = 0; k < p->K; k++)
        z[k] = w * (z[k] / sum - (k == y));
    return w * (mx + log(sum) - zy);
}

/* The objective / sw_sum and its gradient at x = [W (K x d), b (K)]. */
static double objective(void *data, const double *x, double *grad)
{
    const lr_problem *p = data;
    int n = p->n, d = p->d, K = p->K;
    const double *b = p->fit_intercept ? x + (size_t)K * d : NULL;
    /* K = 1 (binary): gemv, which OpenBLAS 0.3.21's dgemm does not forward
     * to, so a one-column dgemm packs all of X on every call */
    if (K == 1)
        cblas_dgemv(CblasRowMajor, CblasNoTrans, n, d, 1.0, p->X, d, x, 1, 0.0, p->Z, 1);
    else
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, K, d, 1.0, p->X, d, x, d,
                    0.0, p->Z, K);
    double f = 0;
    for (int i = 0; i < n; i++) {
        double *z = p->Z + (size_t)i * K;
        for (int k = 0; b && k < K; k++)
            z[k] += b[k];
        f += row_loss(p, i, z);
    }
    if (K == 1)
        cblas_dgemv(CblasRowMajor, CblasTrans, n, d, 1.0, p->X, d, p->Z, 1, 0.0, grad, 1);
    else
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, d, n, 1.0, p->Z, K, p->X, d,
                    0.0, grad, d);
    for (size_t j = 0; j < (size_t)K * d; j++) {
        f += 0.5 * p->inv_c * x[j] * x[j];
        grad[j] += p->inv_c * x[j];
    }
    for (int k = 0; b && k < K; k++) {
        double s = 0;
        for (int i = 0; i < n; i++)
            s += p->Z[(size_t)i * K + k];
        grad[(size_t)K * d + k] = s;
    }
    size_t n_par = (size_t)K * d + (b ? (size_t)K : 0);
    for (size_t j = 0; j < n_par; j++)
        grad[j] /= p->sw_sum;
    return f / p->sw_sum;
}

/* Fills p->sw: 1, or n / (classes present * count of the class) if balanced. */
static void set_weights(lr_problem *p, int balanced)
{
    int classes = p->K == 1 ? 2 : p->K, present = 0;
    int64_t count[classes];
    memset(count, 0, sizeof count);
    for (int i = 0; i < p->n; i++)
        count[p->y[i]]++;
    for (int c = 0; c < classes; c++)
        present += count[c] > 0;
    for (int i = 0; i < p->n; i++)
        p->sw[i] = balanced ? (double)p->n / ((double)present * (double)count[p->y[i]]) : 1;
    p->sw_sum = 0;
    for (int i = 0; i < p->n; i++)
        p->sw_sum += p->sw[i];
}

static const char *stop_text(kp_lbfgs_stop s)
{
    switch (s) {
    case KP_LBFGS_GTOL: return "converged (gradient below tol)";
    case KP_LBFGS_FTOL: return "converged (no further progress)";
    case KP_LBFGS_MAXITER: return "warning: did not converge within max_iter; raise max_iter";
    default: return "warning: stopped, the line search found no better point";
    }
}

/* Solves one problem into rows [row, row + K) of m; 0 or a status. */
static int solve(lr_problem *p, const lr_settings *s, kp_linear *m, int row, FILE *log,
                 const char *what, char *err, size_t errlen)
{
    size_t nw = (size_t)p->K * p->d, n_par = nw + (s->fit_intercept ? (size_t)p->K : 0);
    if (n_par > INT_MAX)
        return kp_errf(err, errlen, KP_ERR_ARG, "%zu weights are too many", n_par);
    double *x = calloc(n_par, sizeof *x);
    if (!x)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory for %zu weights", n_par);
    kp_lbfgs_opts o = kp_lbfgs_defaults();
    o.max_iter = s->max_iter;
    o.gtol = s->tol;
    kp_lbfgs_result r;
    int rc = kp_lbfgs((int)n_par, x, objective, p, &o, &r, err, errlen);
    if (rc == 0) {
        for (size_t j = 0; j < nw; j++)
            m->coef[(size_t)row * p->d + j] = (float)x[j];
        for (int k = 0; s->fit_intercept && k < p->K; k++)
            m->intercept[row + k] = (float)x[nw + k];
        if (log)
            fprintf(log, "logistic%s: %s after %d iterations, objective/n %.9g, max |grad| %.3g\n",
                    what, stop_text(r.stop), r.iters, r.f, r.gmax);
    }
    free(x);
    return rc;
}

/* Reads the validated params into *s; 0 or KP_ERR_ARG. */
static int read_settings(const kp_params *params, lr_settings *s, char *err, size_t errlen)
{
    s->C = kp_params_double(params, "C", 1.0);
    s->tol = kp_params_double(params, "tol", 1e-6);
    s->max_iter = (int)kp_params_int(params, "max_iter", 200);
    s->fit_intercept = kp_params_bool(params, "fit_intercept", 1);
    s->balanced = strcmp(kp_params_str(params, "class_weight", "none"), "balanced") == 0;
    if (!(s->C > 0) || !isfinite(s->C))
        return kp_errf(err, errlen, KP_ERR_ARG, "C = %g must be a positive number", s->C);
    if (s->max_iter < 1 || !(s->tol >= 0))
        return kp_errf(err, errlen, KP_ERR_ARG, "max_iter must be >= 1 and tol >= 0");
    return 0;
}

/* Fits each of the problem's models (one, or one per label) into m. */
static int fit_all(lr_problem *p, const lr_settings *s, const kp_problem *pb, const float *y,
                   int *yi, kp_linear *m, FILE *log, char *err, size_t errlen)
{
    int labels = pb->task == KP_TASK_MULTILABEL ? pb->n_out : 1;
    for (int j = 0; j < labels; j++) {
        for (int i = 0; i < p->n; i++)
            yi[i] = (int)(pb->task == KP_TASK_MULTILABEL ? y[(size_t)i * labels + j] : y[i]);
        set_weights(p, s->balanced);
        char what[48] = "";
        if (pb->task == KP_TASK_MULTILABEL)
            snprintf(what, sizeof what, " label %d", j);
        int rc = solve(p, s, m, j, log, what, err, errlen);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int logistic_fit(const kp_params *params, const kp_problem *pb, const kp_matrix *X,
                        const float *y, const kp_fit_opts *opts, void **model,
                        char *err, size_t errlen)
{
    lr_settings s;
    int rc = read_settings(params, &s, err, errlen);
    if (rc < 0)
        return rc;
    int n = (int)X->rows, d = (int)X->cols, K = pb->task == KP_TASK_MULTICLASS ? pb->n_out : 1;
    kp_link link = pb->task == KP_TASK_MULTICLASS ? KP_LINK_SOFTMAX : KP_LINK_SIGMOID;
    kp_linear *m = kp_linear_create(link, pb->n_out, d);
    double *Xd = malloc(sizeof *Xd * (size_t)n * d), *sw = malloc(sizeof *sw * (size_t)n);
    double *Z = malloc(sizeof *Z * (size_t)n * K);
    int *yi = malloc(sizeof *yi * (size_t)n);
    if (!m || !Xd || !sw || !Z || !yi) {
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory for %d x %d rows", n, d);
        goto fail;
    }
    for (size_t i = 0; i < (size_t)n * d; i++)
        Xd[i] = X->data[i];
    lr_problem p = { .X = Xd, .n = n, .d = d, .K = K, .y = yi, .sw = sw,
                     .inv_c = 1 / s.C, .fit_intercept = s.fit_intercept, .Z = Z };
    if ((rc = fit_all(&p, &s, pb, y, yi, m, opts->log, err, errlen)) < 0)
        goto fail;
    *model = m;
    m = NULL;
fail:
    kp_linear_free(m);
    free(Xd);
    free(sw);
    free(Z);
    free(yi);
    return rc;
}

static int logistic_load(const kp_st *st, const kp_problem *pb, void **model,
                         char *err, size_t errlen)
{
    kp_link link = pb->task == KP_TASK_MULTICLASS ? KP_LINK_SOFTMAX : KP_LINK_SIGMOID;
    kp_linear *m = NULL;
    int rc = kp_linear_load(st, pb, link, &m, err, errlen);
    *model = m;
    return rc;
}

const kp_model_ops kp_model_logistic = {
    .name = "logistic",
    .doc = "L2 logistic regression (scikit-learn's LogisticRegression, L-BFGS)",
    .params = logistic_params,
    .tasks = KP_TASK_BIT(KP_TASK_BINARY) | KP_TASK_BIT(KP_TASK_MULTICLASS) |
             KP_TASK_BIT(KP_TASK_MULTILABEL),
    .fit = logistic_fit,
    .predict = kp_linear_predict,
    .save = kp_linear_save,
    .load = logistic_load,
    .free = kp_linear_free,
};

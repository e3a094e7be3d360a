/* naive_bayes.c - Gaussian naive Bayes, as scikit-learn's GaussianNB.
 *
 * Each class c has a prior, and per feature j a mean theta[c, j] and a
 * variance var[c, j] (ddof 0, two passes in double) to which epsilon =
 * var_smoothing * (the largest variance of any feature over all rows) is
 * added.  The joint log likelihood of a row x is
 *   jll[c] = log prior[c] - 1/2 sum_j (log(2 pi var[c, j]) + (x_j - theta[c, j])^2 / var[c, j])
 * and P(c | x) = exp(jll[c] - logsumexp(jll)).  binary: classes {0, 1},
 * output P(1); multiclass: n_out classes; multilabel: one two-class model
 * per label, output P(label = 1).  Priors are the class frequencies, or the
 * `priors` list (non-negative, summing to 1 as scikit-learn checks).  A
 * class absent from the training rows gets probability 0 (scikit-learn
 * would not know it); the priors of the others need no renormalising, as
 * the log-sum-exp divides it out.
 *
 * Checkpoint: "theta" and "var" F64 [L, K, d], "log_prior" F64 [L, K]
 * (-inf for a class with no rows or prior 0), L models of K classes.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/err.h"
#include "../lib/parallel.h"
#include "model.h"

#define NB_ROWS_PER_TASK 512    /* rows handed to one kp_parallel_for index */

static const kp_keyspec nb_params[] = {
    { "var_smoothing", KP_PT_FLOAT, "1e-9", NULL, 0, 1,
      "added to every variance, times the largest feature variance" },
    { "priors", KP_PT_LIST, "", NULL, 0, 0,
      "class priors summing to 1 (binary and multilabel: P(0), P(1)); "
      "default: class frequencies" },
    { NULL, 0, NULL, NULL, 0, 0, NULL },
};

typedef struct nb_model {
    kp_task_kind task;
    int n_out, L, K, d;         /* L models of K classes over d features */
    double *theta, *var;        /* L x K x d, owned */
    double *log_prior;          /* L x K, owned */
    double *inv_var;            /* L x K x d: 1 / var, derived, owned */
    double *cst;                /* L x K: log prior - 1/2 sum_j log(2 pi var), derived, owned */
} nb_model;

static void nb_free(void *model)
{
    nb_model *m = model;
    if (!m)
        return;
    free(m->theta);
    free(m->var);
    free(m->log_prior);
    free(m->inv_var);
    free(m->cst);
    free(m);
}

/* Returns an empty model for the problem over d features (NULL on allocation failure). */
static nb_model *nb_create(const kp_problem *pb, int d)
{
    nb_model *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->task = pb->task;
    m->n_out = pb->n_out;
    m->L = pb->task == KP_TASK_MULTILABEL ? pb->n_out : 1;
    m->K = pb->task == KP_TASK_MULTICLASS ? pb->n_out : 2;
    m->d = d;
    size_t g = (size_t)m->L * (size_t)m->K, gd = g * (size_t)d;
    m->theta = calloc(gd, sizeof *m->theta);
    m->var = calloc(gd, sizeof *m->var);
    m->inv_var = calloc(gd, sizeof *m->inv_var);
    m->log_prior = calloc(g, sizeof *m->log_prior);
    m->cst = calloc(g, sizeof *m->cst);
    if (!m->theta || !m->var || !m->inv_var || !m->log_prior || !m->cst) {
        nb_free(m);
        return NULL;
    }
    return m;
}

/* Derives inv_var and cst from var and log_prior. */
static void nb_derive(nb_model *m)
{
    for (size_t g = 0; g < (size_t)m->L * (size_t)m->K; g++) {
        double s = 0;
        for (int j = 0; j < m->d; j++) {
            double v = m->var[g * m->d + j];
            m->inv_var[g * m->d + j] = 1 / v;
            s += log(2 * M_PI * v);
        }
        m->cst[g] = m->log_prior[g] - 0.5 * s;
    }
}

/* Returns var_smoothing * the largest column variance of X. */
static double smoothing(const kp_matrix *X, double var_smoothing)
{
    int64_t n = X->rows, d = X->cols;
    double *mean = calloc((size_t)d, sizeof *mean), *ss = calloc((size_t)d, sizeof *ss);
    double best = 0;
    if (!mean || !ss) {
        free(mean);
        free(ss);
        return -1;
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++)
            mean[j] += X->data[i * d + j];
    for (int64_t j = 0; j < d; j++)
        mean[j] /= (double)n;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) {
            double e = X->data[i * d + j] - mean[j];
            ss[j] += e * e;
        }
    for (int64_t j = 0; j < d; j++)
        best = fmax(best, ss[j] / (double)n);
    free(mean);
    free(ss);
    return var_smoothing * best;
}

/* Returns the class of row i for model l. */
static int label_of(const nb_model *m, const float *y, int64_t i, int l)
{
    return m->task == KP_TASK_MULTILABEL ? (int)y[i * m->L + l] : (int)y[i];
}

/* Fits model l's means and variances (+ eps) and counts its classes into count. */
static void fit_moments(nb_model *m, int l, const kp_matrix *X, const float *y, double eps,
                        int64_t *count)
{
    int d = m->d, K = m->K;
    double *theta = m->theta + (size_t)l * K * d, *var = m->var + (size_t)l * K * d;
    memset(count, 0, sizeof *count * (size_t)K);
    for (int64_t i = 0; i < X->rows; i++) {
        int c = label_of(m, y, i, l);
        count[c]++;
        for (int j = 0; j < d; j++)
            theta[(size_t)c * d + j] += X->data[i * d + j];
    }
    for (int c = 0; c < K; c++)
        for (int j = 0; j < d; j++)
            theta[(size_t)c * d + j] /= count[c] ? (double)count[c] : 1;
    for (int64_t i = 0; i < X->rows; i++) {
        int c = label_of(m, y, i, l);
        for (int j = 0; j < d; j++) {
            double e = X->data[i * d + j] - theta[(size_t)c * d + j];
            var[(size_t)c * d + j] += e * e;
        }
    }
    for (int c = 0; c < K; c++)
        for (int j = 0; j < d; j++)
            var[(size_t)c * d + j] = count[c] ? var[(size_t)c * d + j] / (double)count[c] + eps : 1;
}

/* Reads the `priors` list into prior[0, K) (all -1 when absent); 0 or KP_ERR_ARG. */
static int read_priors(const kp_params *params, int K, double *prior, char *err, size_t errlen)
{
    const char *const *items = NULL;
    int n = 0;
    for (int c = 0; c < K; c++)
        prior[c] = -1;
    if (!kp_params_has(params, "priors") || kp_params_get_list(params, "priors", &items, &n) < 0)
        return 0;
    if (n != K)
        return kp_errf(err, errlen, KP_ERR_ARG, "priors has %d values but the task has %d classes",
                       n, K);
    double sum = 0;
    for (int c = 0; c < K; c++) {
        char *end = NULL;
        errno = 0;
        prior[c] = strtod(items[c], &end);
        if (end == items[c] || *end || errno || !isfinite(prior[c]) || prior[c] < 0)
            return kp_errf(err, errlen, KP_ERR_ARG, "priors[%d] = '%s' is not a number >= 0", c,
                           items[c]);
        sum += prior[c];
    }
    if (!(fabs(sum - 1) <= 1e-8 + 1e-5))   /* numpy.isclose, as scikit-learn */
        return kp_errf(err, errlen, KP_ERR_ARG, "priors sum to %.17g, not 1", sum);
    return 0;
}

/* Sets model l's log priors from counts or the given priors; 0 or KP_ERR_ARG. */
static int set_priors(nb_model *m, int l, const int64_t *count, const double *prior,
                      int64_t n, char *err, size_t errlen)
{
    double *lp = m->log_prior + (size_t)l * m->K;
    int live = 0;
    for (int c = 0; c < m->K; c++) {
        double p = prior[0] < 0 ? (double)count[c] / (double)n : prior[c];
        lp[c] = count[c] && p > 0 ? log(p) : -INFINITY;
        live += isfinite(lp[c]);
    }
    if (!live)
        return kp_errf(err, errlen, KP_ERR_ARG,
                       "priors give probability 0 to every class present%s",
                       m->L > 1 ? " for some label" : "");
    return 0;
}

/* Fails if some class present in the rows has a zero variance; 0 or KP_ERR_ARG. */
static int check_variances(const nb_model *m, char *err, size_t errlen)
{
    char label[32] = "";
    for (size_t i = 0; i < (size_t)m->L * m->K * m->d; i++) {
        if (m->var[i] > 0 && isfinite(m->var[i]))
            continue;
        if (m->L > 1)
            snprintf(label, sizeof label, " of label %d", (int)(i / m->d / m->K));
        return kp_errf(err, errlen, KP_ERR_ARG,
                       "feature %d of class %d%s has variance %g; raise var_smoothing",
                       (int)(i % m->d), (int)(i / m->d % m->K), label, m->var[i]);
    }
    return 0;
}

static int nb_fit(const kp_params *params, const kp_problem *pb, const kp_matrix *X,
                  const float *y, const kp_fit_opts *opts, void **model, char *err,
                  size_t errlen)
{
    double vs = kp_params_double(params, "var_smoothing", 1e-9);
    if (!(vs >= 0) || !isfinite(vs))
        return kp_errf(err, errlen, KP_ERR_ARG, "var_smoothing = %g must be >= 0", vs);
    nb_model *m = nb_create(pb, (int)X->cols);
    int64_t *count = m ? malloc(sizeof *count * (size_t)m->K) : NULL;
    double *prior = m ? malloc(sizeof *prior * (size_t)m->K) : NULL;
    double eps = count && prior ? smoothing(X, vs) : -1;
    int rc = KP_ERR_NOMEM;
    if (eps < 0) {
        kp_errf(err, errlen, rc, "out of memory for %lld features", (long long)X->cols);
        goto fail;
    }
    if ((rc = read_priors(params, m->K, prior, err, errlen)) < 0)
        goto fail;
    for (int l = 0; l < m->L && rc == 0; l++) {
        fit_moments(m, l, X, y, eps, count);
        rc = set_priors(m, l, count, prior, X->rows, err, errlen);
    }
    if (rc < 0 || (rc = check_variances(m, err, errlen)) < 0)
        goto fail;
    nb_derive(m);
    if (opts->log)
        fprintf(opts->log, "naive_bayes: %d model(s) of %d classes over %d features, "
                "epsilon %.6g\n", m->L, m->K, m->d, eps);
    *model = m;
    m = NULL;
fail:
    nb_free(m);
    free(count);
    free(prior);
    return rc;
}

/* ---- prediction ---- */

typedef struct nb_job {
    const nb_model *m;
    const kp_matrix *X;
    float *out;
    double *jll;        /* K per thread */
} nb_job;

/* Fills jll[0, K) for row x and model l; returns logsumexp over the live classes. */
static double joint(const nb_model *m, int l, const float *x, double *jll)
{
    double mx = -INFINITY, sum = 0;
    for (int c = 0; c < m->K; c++) {
        size_t g = (size_t)l * m->K + c;
        jll[c] = m->cst[g];
        if (!isfinite(jll[c]))
            continue;
        const double *th = m->theta + g * m->d, *iv = m->inv_var + g * m->d;
        double s = 0;
        for (int j = 0; j < m->d; j++) {
            double e = x[j] - th[j];
            s += e * e * iv[j];
        }
        jll[c] -= 0.5 * s;
        mx = fmax(mx, jll[c]);
    }
    for (int c = 0; c < m->K; c++)
        if (isfinite(jll[c]))
            sum += exp(jll[c] - mx);
    return mx + log(sum);
}

/* Predicts the rows of block i; each row on its own, so threads never matter. */
static void nb_block(void *data, size_t i, int tid)
{
    const nb_job *job = data;
    const nb_model *m = job->m;
    double *jll = job->jll + (size_t)tid * m->K;
    int64_t r0 = (int64_t)i * NB_ROWS_PER_TASK;
    int64_t r1 = r0 + NB_ROWS_PER_TASK < job->X->rows ? r0 + NB_ROWS_PER_TASK : job->X->rows;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = job->X->data + r * m->d;
        float *out = job->out + r * m->n_out;
        for (int l = 0; l < m->L; l++) {
            double lse = joint(m, l, x, jll);
            if (m->task == KP_TASK_MULTICLASS)
                for (int c = 0; c < m->K; c++)
                    out[c] = isfinite(jll[c]) ? (float)exp(jll[c] - lse) : 0;
            else
                out[l] = isfinite(jll[1]) ? (float)exp(jll[1] - lse) : 0;
        }
    }
}

static int nb_predict(const void *model, const kp_matrix *X, float *out, int threads,
                      char *err, size_t errlen)
{
    const nb_model *m = model;
    if (X->cols != m->d)
        return kp_errf(err, errlen, KP_ERR_MISMATCH,
                       "X has %lld columns but the model was fitted on %d features",
                       (long long)X->cols, m->d);
    for (int64_t i = 0; i < X->rows * X->cols; i++)
        if (!isfinite(X->data[i]))
            return kp_errf(err, errlen, KP_ERR_ARG, "X[%lld, %lld] is %g; features must be finite",
                           (long long)(i / X->cols), (long long)(i % X->cols), X->data[i]);
    threads = threads < 1 ? 1 : threads;
    nb_job job = { m, X, out, malloc(sizeof(double) * (size_t)threads * (size_t)m->K) };
    if (!job.jll)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory for %d classes", m->K);
    size_t blocks = (size_t)((X->rows + NB_ROWS_PER_TASK - 1) / NB_ROWS_PER_TASK);
    kp_parallel_for(threads, nb_block, &job, blocks);
    free(job.jll);
    return 0;
}

/* ---- checkpoint ---- */

static int nb_save(const void *model, kp_stw *w, char *err, size_t errlen)
{
    const nb_model *m = model;
    int64_t ts[3] = { m->L, m->K, m->d }, ps[2] = { m->L, m->K };
    int rc = kp_stw_add(w, "theta", KP_F64, 3, ts, m->theta);
    if (rc == 0)
        rc = kp_stw_add(w, "var", KP_F64, 3, ts, m->var);
    if (rc == 0)
        rc = kp_stw_add(w, "log_prior", KP_F64, 2, ps, m->log_prior);
    if (rc < 0)
        return kp_errf(err, errlen, rc, "could not add the model's tensors: %s", kp_strerror(rc));
    return 0;
}

/* Checks the loaded values: finite means, finite positive variances, log
 * priors finite or -inf with a live class per model; 0 or KP_ERR_FORMAT. */
static int check_loaded(const kp_st *st, const nb_model *m, char *err, size_t errlen)
{
    const char *path = kp_st_path(st);
    size_t g = (size_t)m->L * m->K;
    for (size_t i = 0; i < g * m->d; i++) {
        if (!isfinite(m->theta[i]))
            return kp_errf(err, errlen, KP_ERR_FORMAT,
                           "%s: tensor 'theta' holds a non-finite value at index %zu", path, i);
        if (!isfinite(m->var[i]) || !(m->var[i] > 0))
            return kp_errf(err, errlen, KP_ERR_FORMAT,
                           "%s: tensor 'var' holds %g at index %zu; variances must be > 0",
                           path, m->var[i], i);
    }
    for (int l = 0; l < m->L; l++) {
        int live = 0;
        for (int c = 0; c < m->K; c++) {
            double v = m->log_prior[(size_t)l * m->K + c];
            if (isnan(v) || v > 0)
                return kp_errf(err, errlen, KP_ERR_FORMAT,
                               "%s: tensor 'log_prior' holds %g, not a log probability", path, v);
            live += isfinite(v);
        }
        if (!live)
            return kp_errf(err, errlen, KP_ERR_FORMAT,
                           "%s: tensor 'log_prior' gives no class of model %d a chance", path, l);
    }
    return 0;
}

static int nb_load(const kp_st *st, const kp_problem *pb, void **model, char *err,
                   size_t errlen)
{
    int L = pb->task == KP_TASK_MULTILABEL ? pb->n_out : 1;
    int K = pb->task == KP_TASK_MULTICLASS ? pb->n_out : 2;
    int64_t ts[3] = { L, K, -1 }, ps[2] = { L, K };
    const kp_tensor *theta = kp_st_expect(st, "theta", KP_F64, 3, ts, err, errlen);
    if (!theta)
        return KP_ERR_FORMAT;
    if (theta->shape[2] < 1 || theta->shape[2] > INT_MAX)
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: tensor 'theta' has %lld features",
                       kp_st_path(st), (long long)theta->shape[2]);
    ts[2] = theta->shape[2];
    const kp_tensor *var = kp_st_expect(st, "var", KP_F64, 3, ts, err, errlen);
    const kp_tensor *lp = var ? kp_st_expect(st, "log_prior", KP_F64, 2, ps, err, errlen) : NULL;
    if (!var || !lp)
        return KP_ERR_FORMAT;
    nb_model *m = nb_create(pb, (int)theta->shape[2]);
    if (!m)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory loading the model",
                       kp_st_path(st));
    memcpy(m->theta, theta->data, theta->nbytes);
    memcpy(m->var, var->data, var->nbytes);
    memcpy(m->log_prior, lp->data, lp->nbytes);
    int rc = check_loaded(st, m, err, errlen);
    if (rc < 0) {
        nb_free(m);
        return rc;
    }
    nb_derive(m);
    *model = m;
    return 0;
}

const kp_model_ops kp_model_naive_bayes = {
    .name = "naive_bayes",
    .doc = "Gaussian naive Bayes (scikit-learn's GaussianNB)",
    .params = nb_params,
    .tasks = KP_TASK_BIT(KP_TASK_BINARY) | KP_TASK_BIT(KP_TASK_MULTICLASS) |
             KP_TASK_BIT(KP_TASK_MULTILABEL),
    .fit = nb_fit,
    .predict = nb_predict,
    .save = nb_save,
    .load = nb_load,
    .free = nb_free,
};

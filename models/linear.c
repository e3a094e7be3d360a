/* linear.c - prediction, checkpoint tensors and lifetime of linear models. */
#include "linear.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/err.h"
#include "../lib/parallel.h"

#define ROWS_PER_TASK 256   /* rows handed to one kp_parallel_for index */

kp_linear *kp_linear_create(kp_link link, int n_out, int64_t n_features)
{
    kp_linear *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->link = link;
    m->n_out = n_out;
    m->n_features = n_features;
    m->coef = calloc((size_t)n_out * (size_t)n_features, sizeof *m->coef);
    m->intercept = calloc((size_t)n_out, sizeof *m->intercept);
    if (!m->coef || !m->intercept) {
        kp_linear_free(m);
        return NULL;
    }
    return m;
}

void kp_linear_free(void *model)
{
    kp_linear *m = model;
    if (!m)
        return;
    free(m->coef);
    free(m->intercept);
    free(m);
}

/* Applies the link to the n_out scores z of one row, writing out. */
static void apply_link(kp_link link, const double *z, int n_out, float *out)
{
    if (link == KP_LINK_SOFTMAX) {
        double mx = z[0], sum = 0;
        for (int k = 1; k < n_out; k++)
            mx = fmax(mx, z[k]);
        for (int k = 0; k < n_out; k++)
            sum += exp(z[k] - mx);
        for (int k = 0; k < n_out; k++)
            out[k] = (float)(exp(z[k] - mx) / sum);
        return;
    }
    for (int k = 0; k < n_out; k++) {
        double v = z[k];
        if (link == KP_LINK_SIGMOID)
            v = v >= 0 ? 1 / (1 + exp(-v)) : exp(v) / (1 + exp(v));
        else if (link == KP_LINK_CLIP01)
            v = fmin(fmax(v, 0), 1);
        out[k] = (float)v;
    }
}

typedef struct predict_job {
    const kp_linear *m;
    const kp_matrix *X;
    float *out;
    double *scratch;    /* n_out scores per thread */
} predict_job;

/* Predicts the rows of block i; each row on its own, so threads never matter. */
static void predict_block(void *data, size_t i, int tid)
{
    const predict_job *job = data;
    const kp_linear *m = job->m;
    int64_t d = m->n_features, r0 = (int64_t)i * ROWS_PER_TASK;
    int64_t r1 = r0 + ROWS_PER_TASK < job->X->rows ? r0 + ROWS_PER_TASK : job->X->rows;
    double *z = job->scratch + (size_t)tid * (size_t)m->n_out;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = job->X->data + r * d;
        for (int k = 0; k < m->n_out; k++) {
            const float *w = m->coef + (int64_t)k * d;
            double s = m->intercept[k];
            for (int64_t j = 0; j < d; j++)
                s += (double)w[j] * (double)x[j];
            z[k] = s;
        }
        apply_link(m->link, z, m->n_out, job->out + r * m->n_out);
    }
}

int kp_linear_predict(const void *model, const kp_matrix *X, float *out, int threads,
                      char *err, size_t errlen)
{
    const kp_linear *m = model;
    if (X->cols != m->n_features)
        return kp_errf(err, errlen, KP_ERR_MISMATCH,
                       "X has %lld columns but the model was fitted on %lld features",
                       (long long)X->cols, (long long)m->n_features);
    threads = threads < 1 ? 1 : threads;
    predict_job job = { m, X, out, malloc(sizeof(double) * (size_t)threads * (size_t)m->n_out) };
    if (!job.scratch)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory for %d outputs", m->n_out);
    size_t blocks = (size_t)((X->rows + ROWS_PER_TASK - 1) / ROWS_PER_TASK);
    kp_parallel_for(threads, predict_block, &job, blocks);
    free(job.scratch);
    return 0;
}

int kp_linear_save(const void *model, kp_stw *w, char *err, size_t errlen)
{
    const kp_linear *m = model;
    int64_t cshape[2] = { m->n_out, m->n_features }, ishape[1] = { m->n_out };
    int rc = kp_stw_add(w, "coef", KP_F32, 2, cshape, m->coef);
    if (rc == 0)
        rc = kp_stw_add(w, "intercept", KP_F32, 1, ishape, m->intercept);
    if (rc < 0)
        return kp_errf(err, errlen, rc, "could not add the model's tensors: %s",
                       kp_strerror(rc));
    return 0;
}

/* Returns 0 if every value of t is finite, else KP_ERR_FORMAT with a message. */
static int check_finite(const kp_st *st, const kp_tensor *t, char *err, size_t errlen)
{
    const float *v = t->data;
    for (int64_t i = 0; i < t->numel; i++)
        if (!isfinite(v[i]))
            return kp_errf(err, errlen, KP_ERR_FORMAT,
                           "%s: tensor '%s' holds a non-finite value at index %lld",
                           kp_st_path(st), t->name, (long long)i);
    return 0;
}

int kp_linear_load(const kp_st *st, const kp_problem *pb, kp_link link, kp_linear **out,
                   char *err, size_t errlen)
{
    int64_t cshape[2] = { pb->n_out, -1 }, ishape[1] = { pb->n_out };
    const kp_tensor *c = kp_st_expect(st, "coef", KP_F32, 2, cshape, err, errlen);
    const kp_tensor *b = c ? kp_st_expect(st, "intercept", KP_F32, 1, ishape, err, errlen) : NULL;
    if (!c || !b)
        return KP_ERR_FORMAT;
    if (c->shape[1] < 1)
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: tensor 'coef' has no feature columns",
                       kp_st_path(st));
    int rc = check_finite(st, c, err, errlen);
    if (rc == 0)
        rc = check_finite(st, b, err, errlen);
    if (rc < 0)
        return rc;
    kp_linear *m = kp_linear_create(link, pb->n_out, c->shape[1]);
    if (!m)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory loading the model",
                       kp_st_path(st));
    memcpy(m->coef, c->data, c->nbytes);
    memcpy(m->intercept, b->data, b->nbytes);
    *out = m;
    return 0;
}

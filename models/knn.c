/* knn.c - brute-force k nearest neighbours, as scikit-learn's
 * KNeighborsClassifier / KNeighborsRegressor(algorithm='brute').
 *
 * The model is the training rows and their targets.  Prediction hands blocks
 * of KNN_BLOCK query rows to kp_parallel_for; each block meets the train rows
 * KNN_CHUNK at a time in one single-threaded OpenBLAS sgemm, which gives a
 * float score per pair: g = q'.x' - |x'|^2 / 2 for euclidean (rows centred
 * on the train mean; the largest g is the nearest row), the cosine of the
 * unit rows for cosine.  Float rounding does not get to choose neighbours:
 * a row's scan keeps every train row whose score is within twice a proven
 * error bound of the k-th best score (the bound holds for any summation
 * order, so whatever OpenBLAS's kernel or thread count), then recomputes the
 * distances of those candidates exactly (in double, from the original
 * floats, in feature order) and takes the k smallest, ties going to the
 * lower train row.  The neighbours, and every output bit, thus depend only
 * on the query row and the model, never on threads or blocks.
 *
 * Outputs follow scikit-learn: each neighbour weighs 1 (uniform) or
 * 1 / distance (distance; when some neighbours are at distance 0, they
 * share the weight and the others get none).  multiclass: each class's
 * share of the weight (predict_proba); binary: that of class 1; regression:
 * the weighted mean; multilabel: the weighted mean of each 0/1 label.
 *
 * Checkpoint: "X" F32 [n, d], "y" F32 [n, n_out for multilabel else 1];
 * metadata knn.n_neighbors, knn.weights, knn.metric.
 */
#include <cblas.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/err.h"
#include "../lib/parallel.h"
#include "model.h"

#define KNN_BLOCK 512       /* query rows per parallel task */
#define KNN_CHUNK 512       /* train rows per sgemm: a 1 MB score tile */
#define KNN_HUGE 1e30       /* beyond this squared norm the float scores are not used */

enum { KNN_UNIFORM, KNN_DISTANCE };
enum { KNN_EUCLIDEAN, KNN_COSINE };
static const char *const weight_names[] = { "uniform", "distance", NULL };
static const char *const metric_names[] = { "euclidean", "cosine", NULL };

static const kp_keyspec knn_params[] = {
    { "n_neighbors", KP_PT_INT, "5", NULL, 1, 1e9,
      "neighbours that vote (at most the number of train rows)" },
    { "weights", KP_PT_ENUM, "uniform", "uniform|distance", 0, 0,
      "uniform: each neighbour counts 1; distance: 1 / distance, an exact match takes it all" },
    { "metric", KP_PT_ENUM, "euclidean", "euclidean|cosine", 0, 0,
      "euclidean distance, or cosine distance 1 - cos(a, b)" },
    { NULL, 0, NULL, NULL, 0, 0, NULL },
};

typedef struct knn_model {
    kp_task_kind task;
    int n_out, yw, k, weights, metric;
    int n, d;
    float *X, *y;       /* n x d train rows, n x yw targets: the checkpoint, owned */
    float *G;           /* n x (d + 1) sgemm rows (see above), owned */
    double *mu;         /* d train column means (euclidean), owned */
    double *xx;         /* n squared norms of the X rows (cosine), owned */
    double gmax;        /* largest squared norm of a G row's first d values */
} knn_model;

/* One candidate neighbour: its exact distance and train row. */
typedef struct knn_nb {
    double dist;
    int j;
} knn_nb;

/* The scan state of one query row. */
typedef struct knn_row {
    float *heap;        /* the best hn <= k scores: a min-heap, borrowed */
    int hn;
    float lo;           /* scores below lo cannot be among the k nearest */
    float margin;       /* twice the bound on a score's error */
    int all;            /* 1: the bound is unusable, every train row is a candidate */
    int len, cap;       /* candidates (train row, score), owned */
    int *cj;
    float *cg;
} knn_row;

/* A thread's scratch. */
typedef struct knn_work {
    float *Q;           /* KNN_BLOCK x (d + 1) query rows for the sgemm */
    float *tile;        /* KNN_BLOCK x KNN_CHUNK scores */
    float *heaps;       /* KNN_BLOCK x k */
    knn_row rows[KNN_BLOCK];
    knn_nb *nb;         /* candidates with exact distances */
    size_t nb_cap;
    double *acc;        /* n_out sums */
    int status;         /* first failure in this thread, or 0 */
} knn_work;

typedef struct knn_job {
    const knn_model *m;
    const kp_matrix *X;
    float *out;
    knn_work *work;     /* one per thread */
} knn_job;

static void knn_free(void *model)
{
    knn_model *m = model;
    if (!m)
        return;
    free(m->X);
    free(m->y);
    free(m->G);
    free(m->mu);
    free(m->xx);
    free(m);
}

/* Returns a model with room for n rows (NULL on allocation failure). */
static knn_model *knn_create(const kp_problem *pb, int k, int weights, int metric, int n, int d)
{
    knn_model *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    *m = (knn_model){ .task = pb->task, .n_out = pb->n_out, .k = k, .weights = weights,
                      .metric = metric, .n = n, .d = d,
                      .yw = pb->task == KP_TASK_MULTILABEL ? pb->n_out : 1 };
    m->X = malloc(sizeof *m->X * (size_t)n * (size_t)d);
    m->y = malloc(sizeof *m->y * (size_t)n * (size_t)m->yw);
    m->G = malloc(sizeof *m->G * (size_t)n * (size_t)(d + 1));
    m->mu = calloc((size_t)d, sizeof *m->mu);
    m->xx = calloc((size_t)n, sizeof *m->xx);
    if (!m->X || !m->y || !m->G || !m->mu || !m->xx) {
        knn_free(m);
        return NULL;
    }
    return m;
}

/* Writes the first d values of row x's sgemm form (see the top) to g;
 * returns their squared norm and sets *xx2 to |x|^2 (cosine only). */
static double sgemm_row(const knn_model *m, const float *x, float *g, double *xx2)
{
    double s = 0, xx = 0;
    int d = m->d;
    if (m->metric == KNN_EUCLIDEAN) {
        for (int j = 0; j < d; j++) {
            g[j] = (float)((double)x[j] - m->mu[j]);
            s += (double)g[j] * g[j];
        }
    } else {
        for (int j = 0; j < d; j++)
            xx += (double)x[j] * x[j];
        double r = xx > 0 ? 1 / sqrt(xx) : 0;
        for (int j = 0; j < d; j++) {
            g[j] = (float)(x[j] * r);
            s += (double)g[j] * g[j];
        }
    }
    *xx2 = xx;
    return s;
}

/* Derives G, mu, xx and gmax from the train rows X. */
static void knn_prepare(knn_model *m)
{
    int n = m->n, d = m->d;
    for (int i = 0; m->metric == KNN_EUCLIDEAN && i < n; i++)
        for (int j = 0; j < d; j++)
            m->mu[j] += m->X[(size_t)i * d + j];
    for (int j = 0; j < d; j++)
        m->mu[j] /= n;
    m->gmax = 0;
    for (int i = 0; i < n; i++) {
        float *g = m->G + (size_t)i * (d + 1);
        double s = sgemm_row(m, m->X + (size_t)i * d, g, &m->xx[i]);
        g[d] = m->metric == KNN_EUCLIDEAN ? (float)(-0.5 * s) : 0;
        m->gmax = fmax(m->gmax, s);
    }
}

/* Returns the index of name in names (NULL-terminated), or -1. */
static int choice(const char *const *names, const char *name)
{
    for (int i = 0; name && names[i]; i++)
        if (strcmp(names[i], name) == 0)
            return i;
    return -1;
}

static int knn_fit(const kp_params *params, const kp_problem *pb, const kp_matrix *X,
                   const float *y, const kp_fit_opts *opts, void **model,
                   char *err, size_t errlen)
{
    long long k = kp_params_int(params, "n_neighbors", 5);
    const char *ws = kp_params_str(params, "weights", "uniform");
    const char *ms = kp_params_str(params, "metric", "euclidean");
    int weights = choice(weight_names, ws), metric = choice(metric_names, ms);
    if (weights < 0)
        return kp_errf(err, errlen, KP_ERR_ARG, "weights = '%s' is not uniform or distance", ws);
    if (metric < 0)
        return kp_errf(err, errlen, KP_ERR_ARG, "metric = '%s' is not euclidean or cosine", ms);
    if (k < 1)
        return kp_errf(err, errlen, KP_ERR_ARG, "n_neighbors = %lld must be at least 1", k);
    if (k > X->rows)
        return kp_errf(err, errlen, KP_ERR_ARG,
                       "n_neighbors = %lld is more than the %lld train rows", k,
                       (long long)X->rows);
    knn_model *m = knn_create(pb, (int)k, weights, metric, (int)X->rows, (int)X->cols);
    if (!m)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory for %lld x %lld train rows",
                       (long long)X->rows, (long long)X->cols);
    memcpy(m->X, X->data, sizeof *m->X * (size_t)m->n * (size_t)m->d);
    memcpy(m->y, y, sizeof *m->y * (size_t)m->n * (size_t)m->yw);
    knn_prepare(m);
    if (opts->log)
        fprintf(opts->log, "knn: %d train rows x %d features, n_neighbors %d, %s weights, "
                "%s metric\n", m->n, m->d, m->k, ws, ms);
    *model = m;
    return 0;
}

/* ---- prediction ---- */

/* Pushes v onto the min-heap h of n values. */
static void heap_push(float *h, int *n, float v)
{
    int i = (*n)++;
    while (i > 0 && h[(i - 1) / 2] > v) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = v;
}

/* Replaces the smallest value of the min-heap h of n values by v. */
static void heap_replace_top(float *h, int n, float v)
{
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && h[c + 1] < h[c])
            c++;
        if (h[c] >= v)
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = v;
}

/* Drops the candidates of r scored below r->lo, growing the room when that
 * frees less than half of it; 0 or KP_ERR_NOMEM. */
static int row_make_room(knn_row *r)
{
    int len = 0;
    for (int i = 0; i < r->len; i++)
        if (r->cg[i] >= r->lo) {
            r->cj[len] = r->cj[i];
            r->cg[len++] = r->cg[i];
        }
    r->len = len;
    if (len < r->cap / 2)
        return 0;
    int cap = r->cap < 32 ? 64 : 2 * r->cap;
    int *cj = realloc(r->cj, sizeof *cj * (size_t)cap);
    if (cj)
        r->cj = cj;
    float *cg = cj ? realloc(r->cg, sizeof *cg * (size_t)cap) : NULL;
    if (!cg)
        return KP_ERR_NOMEM;
    r->cg = cg;
    r->cap = cap;
    return 0;
}

/* Returns 1 if any of the 16 scores g[0, 16) is at least lo (vectorised). */
static int any16(const float *g, float lo)
{
    int hit = 0;
    for (int t = 0; t < 16; t++)
        hit |= g[t] >= lo;
    return hit;
}

/* Feeds the scores g[t0, t1) of train rows c0 + t to row r; 0 or KP_ERR_NOMEM. */
static int row_feed(knn_row *r, const float *g, int c0, int t0, int t1, int k)
{
    for (int t = t0; t < t1; t++) {
        float v = g[t];
        if (v < r->lo)
            continue;
        if (r->len == r->cap && row_make_room(r) < 0)
            return KP_ERR_NOMEM;
        r->cj[r->len] = c0 + t;
        r->cg[r->len++] = v;
        if (r->hn < k) {
            heap_push(r->heap, &r->hn, v);
            if (r->hn == k)
                r->lo = r->heap[0] - r->margin;
        } else if (v > r->heap[0]) {
            heap_replace_top(r->heap, k, v);
            r->lo = r->heap[0] - r->margin;
        }
    }
    return 0;
}

/* Feeds the scores g[0, cn) of train rows c0... to row r, skipping runs of
 * 16 below r->lo at once; 0 or KP_ERR_NOMEM. */
static int row_scan(knn_row *r, const float *g, int c0, int cn, int k)
{
    int t = 0;
    for (; t + 16 <= cn; t += 16)
        if (any16(g + t, r->lo) && row_feed(r, g, c0, t, t + 16, k) < 0)
            return KP_ERR_NOMEM;
    return row_feed(r, g, c0, t, cn, k);
}

/* Fills the sgemm rows Q of queries x[0, rows) and starts their scans. */
static void prep_queries(const knn_model *m, knn_work *w, const float *x, int rows)
{
    int d = m->d;
    double u = FLT_EPSILON / 2, wu = (d + 1) * u, gamma = wu / (1 - wu);
    for (int r = 0; r < rows; r++) {
        float *q = w->Q + (size_t)r * (d + 1);
        double xx, s = sgemm_row(m, x + (size_t)r * d, q, &xx);
        q[d] = m->metric == KNN_EUCLIDEAN ? 1 : 0;
        /* Every score is within e = (gamma + 3u)(s + gmax) of its exact
         * value: sgemm's error in any summation order, plus the rounding of
         * q', x' and -|x'|^2/2 to float.  A row with a score below the k-th
         * best minus 2e cannot be among the k nearest; the margin is twice
         * 2e, the slack covering lo's float subtraction and the rounding of
         * the exact distances in double. */
        double margin = 2 * (2 * gamma + 8 * u) * (s + m->gmax) * 1.01 + FLT_MIN;
        knn_row *rs = &w->rows[r];
        rs->heap = w->heaps + (size_t)r * m->k;
        rs->hn = rs->len = 0;
        rs->lo = -INFINITY;
        rs->all = !(s + m->gmax < KNN_HUGE);
        rs->margin = rs->all ? INFINITY : (float)margin;
    }
}

/* Orders candidates by distance, then train row. */
static int nb_cmp(const void *a, const void *b)
{
    const knn_nb *x = a, *y = b;
    if (x->dist != y->dist)
        return x->dist < y->dist ? -1 : 1;
    return (x->j > y->j) - (x->j < y->j);
}

/* Returns the exact distance of query q to train row j. */
static double exact_dist(const knn_model *m, const float *q, double qq, int j)
{
    const float *x = m->X + (size_t)j * m->d;
    double s = 0;
    if (m->metric == KNN_EUCLIDEAN) {
        for (int t = 0; t < m->d; t++) {
            double e = (double)q[t] - x[t];
            s += e * e;
        }
        return sqrt(s);
    }
    for (int t = 0; t < m->d; t++)
        s += (double)q[t] * x[t];
    double c = qq > 0 && m->xx[j] > 0 ? s / sqrt(qq * m->xx[j]) : 0;
    return fmin(fmax(1 - c, 0), 2);
}

/* Leaves the k nearest candidates of row r, sorted, in w->nb; 0 or KP_ERR_NOMEM. */
static int nearest(const knn_model *m, knn_work *w, const knn_row *r, const float *q)
{
    size_t nc = r->all ? (size_t)m->n : (size_t)r->len;
    if (nc > w->nb_cap) {
        knn_nb *nb = realloc(w->nb, sizeof *nb * nc);
        if (!nb)
            return KP_ERR_NOMEM;
        w->nb = nb;
        w->nb_cap = nc;
    }
    double qq = 0;
    for (int t = 0; m->metric == KNN_COSINE && t < m->d; t++)
        qq += (double)q[t] * q[t];
    size_t c = 0;
    for (size_t i = 0; i < nc; i++) {
        if (!r->all && !(r->cg[i] >= r->lo))
            continue;
        int j = r->all ? (int)i : r->cj[i];
        w->nb[c++] = (knn_nb){ exact_dist(m, q, qq, j), j };
    }
    if (c < (size_t)m->k)   /* the bound guarantees k; a bug otherwise */
        return KP_ERR_INTERNAL;
    qsort(w->nb, c, sizeof *w->nb, nb_cmp);
    return 0;
}

/* Writes one row's n_out outputs from its k nearest neighbours nb. */
static void vote(const knn_model *m, const knn_nb *nb, double *acc, float *out)
{
    int zero = 0;
    for (int i = 0; m->weights == KNN_DISTANCE && i < m->k; i++)
        zero += nb[i].dist == 0;
    double wsum = 0;
    memset(acc, 0, sizeof *acc * (size_t)m->n_out);
    for (int i = 0; i < m->k; i++) {
        double wt = m->weights == KNN_UNIFORM ? 1 : zero ? (nb[i].dist == 0) : 1 / nb[i].dist;
        const float *y = m->y + (size_t)nb[i].j * m->yw;
        if (m->task == KP_TASK_MULTICLASS)
            acc[(int)y[0]] += wt;
        else
            for (int l = 0; l < m->n_out; l++)
                acc[l] += wt * y[l];
        wsum += wt;
    }
    for (int l = 0; l < m->n_out; l++)
        out[l] = (float)(acc[l] / wsum);
}

/* Scores query rows [r0, r0 + rows) against every train row, chunk by chunk. */
static int scan_block(const knn_model *m, knn_work *w, int rows)
{
    int d1 = m->d + 1, every = 1;
    for (int r = 0; r < rows; r++)
        every &= w->rows[r].all;
    for (int c0 = 0; !every && c0 < m->n; c0 += KNN_CHUNK) {
        int cn = m->n - c0 < KNN_CHUNK ? m->n - c0 : KNN_CHUNK;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, cn, d1, 1.0f, w->Q, d1,
                    m->G + (size_t)c0 * d1, d1, 0.0f, w->tile, cn);
        for (int r = 0; r < rows; r++)
            if (!w->rows[r].all &&
                row_scan(&w->rows[r], w->tile + (size_t)r * cn, c0, cn, m->k) < 0)
                return KP_ERR_NOMEM;
    }
    return 0;
}

/* Predicts the query rows of block b (a kp_parallel_for body). */
static void knn_block(void *data, size_t b, int tid)
{
    const knn_job *job = data;
    const knn_model *m = job->m;
    knn_work *w = &job->work[tid];
    int64_t r0 = (int64_t)b * KNN_BLOCK;
    int rows = job->X->rows - r0 < KNN_BLOCK ? (int)(job->X->rows - r0) : KNN_BLOCK;
    const float *x = job->X->data + r0 * m->d;
    if (w->status < 0)
        return;
    prep_queries(m, w, x, rows);
    int rc = scan_block(m, w, rows);
    for (int r = 0; rc == 0 && r < rows; r++) {
        rc = nearest(m, w, &w->rows[r], x + (size_t)r * m->d);
        if (rc == 0)
            vote(m, w->nb, w->acc, job->out + (size_t)(r0 + r) * m->n_out);
    }
    if (rc < 0)
        w->status = rc;
}

/* Allocates the scratch of one thread; 0 or KP_ERR_NOMEM. */
static int work_init(knn_work *w, const knn_model *m)
{
    memset(w, 0, sizeof *w);
    w->Q = malloc(sizeof *w->Q * KNN_BLOCK * (size_t)(m->d + 1));
    w->tile = malloc(sizeof *w->tile * KNN_BLOCK * KNN_CHUNK);
    w->heaps = malloc(sizeof *w->heaps * KNN_BLOCK * (size_t)m->k);
    w->acc = malloc(sizeof *w->acc * (size_t)m->n_out);
    return w->Q && w->tile && w->heaps && w->acc ? 0 : KP_ERR_NOMEM;
}

static void work_free(knn_work *w)
{
    free(w->Q);
    free(w->tile);
    free(w->heaps);
    free(w->acc);
    free(w->nb);
    for (int r = 0; r < KNN_BLOCK; r++) {
        free(w->rows[r].cj);
        free(w->rows[r].cg);
    }
}

/* Checks that X has the model's columns and finite values; 0 or a status. */
static int check_queries(const knn_model *m, const kp_matrix *X, char *err, size_t errlen)
{
    if (X->cols != m->d)
        return kp_errf(err, errlen, KP_ERR_MISMATCH,
                       "X has %lld columns but the model was fitted on %d features",
                       (long long)X->cols, m->d);
    if (X->rows < 0 || X->rows > INT_MAX)
        return kp_errf(err, errlen, KP_ERR_ARG, "X has %lld rows; need 0 to %d",
                       (long long)X->rows, INT_MAX);
    for (int64_t i = 0; i < X->rows * X->cols; i++)
        if (!isfinite(X->data[i]))
            return kp_errf(err, errlen, KP_ERR_ARG, "X[%lld, %lld] is %g; features must be finite",
                           (long long)(i / X->cols), (long long)(i % X->cols), X->data[i]);
    return 0;
}

static int knn_predict(const void *model, const kp_matrix *X, float *out, int threads,
                       char *err, size_t errlen)
{
    const knn_model *m = model;
    int rc = check_queries(m, X, err, errlen);
    if (rc < 0 || X->rows == 0)
        return rc;
    size_t blocks = (size_t)((X->rows + KNN_BLOCK - 1) / KNN_BLOCK);
    threads = threads < 1 ? 1 : (size_t)threads > blocks ? (int)blocks : threads;
    knn_job job = { m, X, out, calloc((size_t)threads, sizeof *job.work) };
    rc = job.work ? 0 : KP_ERR_NOMEM;
    for (int t = 0; rc == 0 && t < threads; t++)
        rc = work_init(&job.work[t], m);
    if (rc == 0) {
        int blas = openblas_get_num_threads();
        openblas_set_num_threads(1);    /* the threads go to the query blocks instead */
        kp_parallel_for(threads, knn_block, &job, blocks);
        openblas_set_num_threads(blas);
    }
    for (int t = 0; job.work && t < threads; t++) {
        if (rc == 0 && job.work[t].status < 0)
            rc = job.work[t].status;
        work_free(&job.work[t]);
    }
    free(job.work);
    if (rc == KP_ERR_INTERNAL)
        return kp_errf(err, errlen, rc, "the candidate scan kept fewer than %d rows", m->k);
    if (rc < 0)
        return kp_errf(err, errlen, rc, "out of memory predicting %lld rows",
                       (long long)X->rows);
    return 0;
}

/* ---- checkpoint ---- */

static int knn_save(const void *model, kp_stw *w, char *err, size_t errlen)
{
    const knn_model *m = model;
    int64_t xs[2] = { m->n, m->d }, ys[2] = { m->n, m->yw };
    char k[32];
    snprintf(k, sizeof k, "%d", m->k);
    int rc = kp_stw_add(w, "X", KP_F32, 2, xs, m->X);
    if (rc == 0)
        rc = kp_stw_add(w, "y", KP_F32, 2, ys, m->y);
    if (rc == 0)
        rc = kp_stw_meta(w, "knn.n_neighbors", k);
    if (rc == 0)
        rc = kp_stw_meta(w, "knn.weights", weight_names[m->weights]);
    if (rc == 0)
        rc = kp_stw_meta(w, "knn.metric", metric_names[m->metric]);
    if (rc < 0)
        return kp_errf(err, errlen, rc, "could not add the model's tensors: %s", kp_strerror(rc));
    return 0;
}

/* Reads the knn.* metadata of st into *k, *weights, *metric; 0 or KP_ERR_FORMAT. */
static int load_meta(const kp_st *st, long *k, int *weights, int *metric,
                     char *err, size_t errlen)
{
    const char *path = kp_st_path(st), *ks = kp_st_meta(st, "knn.n_neighbors");
    const char *ws = kp_st_meta(st, "knn.weights"), *ms = kp_st_meta(st, "knn.metric");
    char *end = NULL;
    errno = 0;
    *k = ks ? strtol(ks, &end, 10) : 0;
    if (!ks || end == ks || *end || errno || *k < 1 || *k > INT_MAX)
        return kp_errf(err, errlen, KP_ERR_FORMAT,
                       "%s: metadata knn.n_neighbors '%s' is not a positive count", path,
                       ks ? ks : "(missing)");
    if ((*weights = choice(weight_names, ws)) < 0)
        return kp_errf(err, errlen, KP_ERR_FORMAT,
                       "%s: metadata knn.weights '%s' is not uniform or distance", path,
                       ws ? ws : "(missing)");
    if ((*metric = choice(metric_names, ms)) < 0)
        return kp_errf(err, errlen, KP_ERR_FORMAT,
                       "%s: metadata knn.metric '%s' is not euclidean or cosine", path,
                       ms ? ms : "(missing)");
    return 0;
}

/* Checks every value of the train rows and targets; 0 or KP_ERR_FORMAT. */
static int check_rows(const kp_st *st, const kp_problem *pb, const kp_tensor *X,
                      const kp_tensor *y, char *err, size_t errlen)
{
    const float *x = X->data, *t = y->data;
    for (int64_t i = 0; i < X->numel; i++)
        if (!isfinite(x[i]))
            return kp_errf(err, errlen, KP_ERR_FORMAT,
                           "%s: tensor 'X' holds a non-finite value at row %lld", kp_st_path(st),
                           (long long)(i / X->shape[1]));
    for (int64_t i = 0; i < y->numel; i++) {
        float v = t[i];
        int ok = pb->task == KP_TASK_REGRESSION ? isfinite(v)
               : pb->task == KP_TASK_MULTICLASS ? v >= 0 && v < pb->n_out && v == floorf(v)
               : v == 0 || v == 1;
        if (!ok)
            return kp_errf(err, errlen, KP_ERR_FORMAT,
                           "%s: tensor 'y' holds %g at row %lld, not a valid %s target",
                           kp_st_path(st), v, (long long)(i / y->shape[1]),
                           kp_task_name(pb->task));
    }
    return 0;
}

static int knn_load(const kp_st *st, const kp_problem *pb, void **model, char *err,
                    size_t errlen)
{
    long k = 0;
    int weights = 0, metric = 0, yw = pb->task == KP_TASK_MULTILABEL ? pb->n_out : 1;
    int rc = load_meta(st, &k, &weights, &metric, err, errlen);
    if (rc < 0)
        return rc;
    const char *path = kp_st_path(st);
    const kp_tensor *X = kp_st_expect(st, "X", KP_F32, 2, NULL, err, errlen);
    if (!X)
        return KP_ERR_FORMAT;
    if (X->shape[0] < 1 || X->shape[1] < 1 || X->shape[0] > INT_MAX || X->shape[1] > INT_MAX)
        return kp_errf(err, errlen, KP_ERR_FORMAT,
                       "%s: tensor 'X' has %lld rows and %lld columns; need 1 to %d of each",
                       path, (long long)X->shape[0], (long long)X->shape[1], INT_MAX);
    int64_t ys[2] = { X->shape[0], yw };
    const kp_tensor *y = kp_st_expect(st, "y", KP_F32, 2, ys, err, errlen);
    if (!y)
        return KP_ERR_FORMAT;
    if (k > X->shape[0])
        return kp_errf(err, errlen, KP_ERR_FORMAT,
                       "%s: knn.n_neighbors %ld is more than the %lld train rows", path, k,
                       (long long)X->shape[0]);
    if ((rc = check_rows(st, pb, X, y, err, errlen)) < 0)
        return rc;
    knn_model *m = knn_create(pb, (int)k, weights, metric, (int)X->shape[0], (int)X->shape[1]);
    if (!m)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory loading the model", path);
    memcpy(m->X, X->data, X->nbytes);
    memcpy(m->y, y->data, y->nbytes);
    knn_prepare(m);
    *model = m;
    return 0;
}

const kp_model_ops kp_model_knn = {
    .name = "knn",
    .doc = "brute-force k nearest neighbours (scikit-learn's KNeighbors*, algorithm='brute')",
    .params = knn_params,
    .tasks = KP_TASK_BIT(KP_TASK_BINARY) | KP_TASK_BIT(KP_TASK_MULTICLASS) |
             KP_TASK_BIT(KP_TASK_REGRESSION) | KP_TASK_BIT(KP_TASK_MULTILABEL),
    .fit = knn_fit,
    .predict = knn_predict,
    .save = knn_save,
    .load = knn_load,
    .free = knn_free,
};

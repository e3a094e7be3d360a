/* mlp_nn.c - layers, nets, heads and optimisers of the mlp model (see mlp_int.h).
 *
 * Every reduction (bias and batch norm column sums) runs over rows in index
 * order on one thread, and every GEMM is one cblas_sgemm call, so a pass gives
 * the same bits whenever OpenBLAS runs with the same thread count.
 */
#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/err.h"
#include "../lib/parallel.h"
#include "mlp_int.h"

/* ---- layer kinds ---- */

/* What one layer's pass uses besides its input and output. */
typedef struct pass_ctx {
    float *aux;         /* the layer's cache: batch norm x_hat and 1/std, dropout mask */
    double *acc;        /* column sums, 2 x widest layer */
    kp_rng *rng;        /* dropout masks */
    int threads;        /* for large GEMMs */
    kp_mlpnn_mode mode;
} pass_ctx;

typedef struct layer_ops {
    const char *name;
    /* y (n x out) from x (n x in). */
    void (*forward)(kp_mlpnn_net *net, const kp_mlpnn_layer *l, const pass_ctx *c, const float *x,
                    float *y, int n);
    /* Parameter gradients into g (the layer's slice of grads) and, if dx is
     * non-NULL, dL/dx, from dy and the forward pass's x and y. */
    void (*backward)(const kp_mlpnn_net *net, const kp_mlpnn_layer *l, const pass_ctx *c,
                     const float *x, const float *y, const float *dy, float *dx, float *g, int n);
} layer_ops;

/* ---- GEMM ---- */

#define GEMM_SPLIT (1 << 22)   /* multiply-adds per chunk of a split GEMM, at least */

typedef struct gemm_job {
    enum CBLAS_TRANSPOSE ta, tb;
    int M, N, K, rows;          /* rows: of C per chunk */
    const float *A, *B;
    int lda, ldb, ldc;
    float beta;
    float *C;
} gemm_job;

static void gemm_chunk(void *data, size_t i, int tid)
{
    (void)tid;
    const gemm_job *g = data;
    int m0 = (int)i * g->rows, m = g->M - m0 < g->rows ? g->M - m0 : g->rows;
    const float *A = g->ta == CblasNoTrans ? g->A + (size_t)m0 * g->lda : g->A + m0;
    cblas_sgemm(CblasRowMajor, g->ta, g->tb, m, g->N, g->K, 1.0f, A, g->lda, g->B, g->ldb,
                g->beta, g->C + (size_t)m0 * g->ldc, g->ldc);
}

/* C (M x N, row-major) = op(A) op(B) + beta C.  A large product is cut into
 * chunks of C's rows that depend on the shape alone, each one single-threaded
 * sgemm call, spread over `threads`: the bits never depend on the thread count. */
static void gemm(int threads, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int M, int N,
                 int K, const float *A, int lda, const float *B, int ldb, float beta, float *C,
                 int ldc)
{
    double work = (double)M * N * K;
    int chunks = work < 2.0 * GEMM_SPLIT ? 1 : (int)fmin(8, work / GEMM_SPLIT);
    chunks = chunks > M / 16 ? M / 16 : chunks;   /* 16 rows of C or more each */
    gemm_job g = { ta, tb, M, N, K, 0, A, B, lda, ldb, ldc, beta, C };
    if (chunks <= 1) {
        g.rows = M;
        gemm_chunk(&g, 0, 0);
        return;
    }
    g.rows = (M + chunks - 1) / chunks;
    kp_parallel_for(threads, gemm_chunk, &g, (size_t)((M + g.rows - 1) / g.rows));
}

static void dense_forward(kp_mlpnn_net *net, const kp_mlpnn_layer *l, const pass_ctx *c,
                          const float *x, float *y, int n)
{
    const float *W = net->params + l->p_off, *b = W + (size_t)l->out * l->in;
    for (int i = 0; i < n; i++)
        memcpy(y + (size_t)i * l->out, b, sizeof *b * (size_t)l->out);
    gemm(c->threads, CblasNoTrans, CblasTrans, n, l->out, l->in, x, l->in, W, l->in, 1.0f, y,
         l->out);
}

static void dense_backward(const kp_mlpnn_net *net, const kp_mlpnn_layer *l, const pass_ctx *c,
                           const float *x, const float *y, const float *dy, float *dx,
                           float *g, int n)
{
    (void)y;
    const float *W = net->params + l->p_off;
    int in = l->in, out = l->out;
    double *acc = c->acc;
    gemm(c->threads, CblasTrans, CblasNoTrans, out, in, n, dy, out, x, in, 0.0f, g, in);
    memset(acc, 0, sizeof *acc * (size_t)out);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < out; j++)
            acc[j] += dy[(size_t)i * out + j];
    for (int j = 0; j < out; j++)
        g[(size_t)out * in + j] = (float)acc[j];
    if (dx)
        gemm(c->threads, CblasNoTrans, CblasNoTrans, n, in, out, dy, out, W, in, 0.0f, dx, in);
}

/* Batch statistics of x into mean = acc[0..c) and 1/std = inv; var into acc[c..2c). */
static void bn_stats(const float *x, int n, int c, float eps, double *acc, float *inv)
{
    double *mean = acc, *var = acc + c;
    memset(acc, 0, sizeof *acc * 2 * (size_t)c);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < c; j++)
            mean[j] += x[(size_t)i * c + j];
    for (int j = 0; j < c; j++)
        mean[j] /= n;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < c; j++) {
            double d = x[(size_t)i * c + j] - mean[j];
            var[j] += d * d;
        }
    for (int j = 0; j < c; j++) {
        var[j] /= n;
        inv[j] = (float)(1 / sqrt(var[j] + eps));
    }
}

static void bn_forward(kp_mlpnn_net *net, const kp_mlpnn_layer *l, const pass_ctx *ctx,
                       const float *x, float *y, int n)
{
    int c = l->out;
    float *aux = ctx->aux;
    double *acc = ctx->acc;
    kp_mlpnn_mode mode = ctx->mode;
    const float *gamma = net->params + l->p_off, *beta = gamma + c;
    float *rmean = net->buffers + l->b_off, *rvar = rmean + c;
    if (mode == KP_MLPNN_EVAL) {   /* y = x * s + t with s, t from the running statistics */
        for (int j = 0; j < c; j++) {
            acc[j] = gamma[j] / sqrt((double)rvar[j] + net->bn_eps);
            acc[c + j] = beta[j] - rmean[j] * acc[j];
        }
        for (int i = 0; i < n; i++)
            for (int j = 0; j < c; j++)
                y[(size_t)i * c + j] = (float)(x[(size_t)i * c + j] * acc[j] + acc[c + j]);
        return;
    }
    float *xhat = aux, *inv = aux + (size_t)n * c;
    bn_stats(x, n, c, net->bn_eps, acc, inv);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < c; j++) {
            size_t k = (size_t)i * c + j;
            xhat[k] = (float)((x[k] - acc[j]) * inv[j]);
            y[k] = gamma[j] * xhat[k] + beta[j];
        }
    if (mode != KP_MLPNN_TRAIN)
        return;
    double m = net->bn_momentum, unbias = n > 1 ? (double)n / (n - 1) : 1;
    for (int j = 0; j < c; j++) {
        rmean[j] = (float)((1 - m) * rmean[j] + m * acc[j]);
        rvar[j] = (float)((1 - m) * rvar[j] + m * acc[c + j] * unbias);
    }
}

static void bn_backward(const kp_mlpnn_net *net, const kp_mlpnn_layer *l, const pass_ctx *ctx,
                        const float *x, const float *y, const float *dy, float *dx, float *g,
                        int n)
{
    (void)x, (void)y;
    int c = l->out;
    const float *aux = ctx->aux;
    double *acc = ctx->acc;
    const float *gamma = net->params + l->p_off, *xhat = aux, *inv = aux + (size_t)n * c;
    double *dgamma = acc, *dbeta = acc + c;
    memset(acc, 0, sizeof *acc * 2 * (size_t)c);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < c; j++) {
            size_t k = (size_t)i * c + j;
            dgamma[j] += (double)dy[k] * xhat[k];
            dbeta[j] += dy[k];
        }
    for (int j = 0; j < c; j++) {
        g[j] = (float)dgamma[j];
        g[c + j] = (float)dbeta[j];
    }
    if (!dx)
        return;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < c; j++) {
            size_t k = (size_t)i * c + j;
            double t = n * (double)dy[k] - dbeta[j] - xhat[k] * dgamma[j];
            dx[k] = (float)(gamma[j] * inv[j] * t / n);
        }
}

static void relu_forward(kp_mlpnn_net *net, const kp_mlpnn_layer *l, const pass_ctx *c,
                         const float *x, float *y, int n)
{
    (void)net, (void)c;
    size_t len = (size_t)n * l->out;
    for (size_t k = 0; k < len; k++) {   /* on the bits: no branch to mispredict */
        uint32_t b;
        memcpy(&b, x + k, sizeof b);
        b &= ~(uint32_t)((int32_t)b >> 31);   /* negative (and -0) to +0 */
        memcpy(y + k, &b, sizeof b);
    }
}

static void relu_backward(const kp_mlpnn_net *net, const kp_mlpnn_layer *l, const pass_ctx *c,
                          const float *x, const float *y, const float *dy, float *dx, float *g,
                          int n)
{
    (void)net, (void)c, (void)x, (void)g;
    size_t len = (size_t)n * l->out;
    for (size_t k = 0; dx && k < len; k++) {   /* y is +0 or positive */
        uint32_t by, bd;
        memcpy(&by, y + k, sizeof by);
        memcpy(&bd, dy + k, sizeof bd);
        bd &= -(uint32_t)(by != 0);
        memcpy(dx + k, &bd, sizeof bd);
    }
}

/* Fills mask with 0 or 1/(1 - rate), keeping each unit with probability 1 - rate. */
static void dropout_draw(float *mask, size_t len, float rate, kp_rng *rng)
{
    double keep = 1.0 - rate;
    uint32_t cut = (uint32_t)(keep * 4294967296.0);
    float scale = (float)(1 / keep);
    for (size_t k = 0; k < len; k += 2) {
        uint64_t r = kp_rng_next(rng);
        mask[k] = scale * (float)((uint32_t)r < cut);
        if (k + 1 < len)
            mask[k + 1] = scale * (float)((uint32_t)(r >> 32) < cut);
    }
}

static void dropout_forward(kp_mlpnn_net *net, const kp_mlpnn_layer *l, const pass_ctx *c,
                            const float *x, float *y, int n)
{
    (void)net;
    size_t len = (size_t)n * l->out;
    if (c->mode == KP_MLPNN_EVAL) {
        memcpy(y, x, sizeof *y * len);
        return;
    }
    if (c->mode == KP_MLPNN_TRAIN)
        dropout_draw(c->aux, len, l->rate, c->rng);
    for (size_t k = 0; k < len; k++)
        y[k] = x[k] * c->aux[k];
}

static void dropout_backward(const kp_mlpnn_net *net, const kp_mlpnn_layer *l, const pass_ctx *c,
                             const float *x, const float *y, const float *dy, float *dx,
                             float *g, int n)
{
    (void)net, (void)x, (void)y, (void)g;
    size_t len = (size_t)n * l->out;
    for (size_t k = 0; dx && k < len; k++)
        dx[k] = dy[k] * c->aux[k];
}

static const layer_ops layer_table[] = {
    [KP_MLPNN_DENSE] = { "dense", dense_forward, dense_backward },
    [KP_MLPNN_BATCHNORM] = { "batchnorm", bn_forward, bn_backward },
    [KP_MLPNN_RELU] = { "relu", relu_forward, relu_backward },
    [KP_MLPNN_DROPOUT] = { "dropout", dropout_forward, dropout_backward },
};
_Static_assert(sizeof layer_table / sizeof layer_table[0] == KP_MLPNN_KIND_COUNT,
               "one row per layer kind");

/* ---- nets ---- */

/* Appends a layer of `kind` taking `in` units; updates the parameter counts. */
static void add_layer(kp_mlpnn_net *net, const kp_mlpnn_spec *sp, int in)
{
    kp_mlpnn_layer *l = &net->layers[net->n_layers++];
    int out = sp->kind == KP_MLPNN_DENSE ? sp->out : in;
    *l = (kp_mlpnn_layer){ .kind = sp->kind, .in = in, .out = out, .tag = sp->tag,
                        .rate = sp->rate, .p_off = net->n_params, .b_off = net->n_buffers };
    if (sp->kind == KP_MLPNN_DENSE)
        l->n_p = (size_t)in * out + (size_t)out;
    if (sp->kind == KP_MLPNN_BATCHNORM)
        l->n_p = l->n_b = 2 * (size_t)out;
    net->n_params += l->n_p;
    net->n_buffers += l->n_b;
}

/* Checks the layer list's sizes and rates; 0 or KP_ERR_ARG. */
static int check_spec(int in, const kp_mlpnn_spec *spec, int n, char *err, size_t errlen)
{
    if (in < 1 || n < 1 || n > KP_MLPNN_MAX_LAYERS)
        return kp_errf(err, errlen, KP_ERR_ARG, "a net needs 1 or more inputs and 1 to %d layers",
                       KP_MLPNN_MAX_LAYERS);
    double n_params = 0, w = in;
    for (int i = 0; i < n; i++) {
        const kp_mlpnn_spec *sp = &spec[i];
        if ((unsigned)sp->kind >= KP_MLPNN_KIND_COUNT)
            return kp_errf(err, errlen, KP_ERR_ARG, "layer %d has unknown kind %d", i, sp->kind);
        if (sp->kind == KP_MLPNN_DENSE && (sp->out < 1 || sp->out > KP_MLPNN_MAX_WIDTH))
            return kp_errf(err, errlen, KP_ERR_ARG, "layer %d has %d units; need 1 to %d", i,
                           sp->out, KP_MLPNN_MAX_WIDTH);
        if (sp->kind == KP_MLPNN_DROPOUT && !(sp->rate > 0 && sp->rate < 1))
            return kp_errf(err, errlen, KP_ERR_ARG, "dropout = %g must be in (0, 1)", sp->rate);
        double out = sp->kind == KP_MLPNN_DENSE ? sp->out : w;
        n_params += sp->kind == KP_MLPNN_DENSE ? (w + 1) * out
                    : sp->kind == KP_MLPNN_BATCHNORM ? 2 * w : 0;
        w = out;
    }
    if (n_params > (double)INT32_MAX)
        return kp_errf(err, errlen, KP_ERR_ARG, "the net would have %.0f parameters; at most %d",
                       n_params, INT32_MAX);
    return 0;
}

int kp_mlpnn_create(int in, const kp_mlpnn_spec *spec, int n, kp_mlpnn_net **out_net,
                 char *err, size_t errlen)
{
    int rc = check_spec(in, spec, n, err, errlen);
    if (rc < 0)
        return rc;
    kp_mlpnn_net *net = calloc(1, sizeof *net);
    if (!net || !(net->layers = calloc((size_t)n, sizeof *net->layers)))
        goto nomem;
    net->in = in;
    net->bn_eps = 1e-5f;
    net->bn_momentum = 0.1f;
    for (int i = 0, w = in; i < n; w = net->layers[i++].out)
        add_layer(net, &spec[i], w);
    net->out = net->layers[n - 1].out;
    net->params = calloc(net->n_params, sizeof *net->params);
    net->buffers = calloc(net->n_buffers ? net->n_buffers : 1, sizeof *net->buffers);
    if (!net->params || !net->buffers)
        goto nomem;
    for (int l = 0; l < net->n_layers; l++)   /* running var starts at 1 */
        for (size_t j = 0; j < net->layers[l].n_b / 2; j++)
            net->buffers[net->layers[l].b_off + net->layers[l].n_b / 2 + j] = 1;
    *out_net = net;
    return 0;
nomem:
    kp_mlpnn_free(net);
    return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory for a net with %d inputs", in);
}

int kp_mlpnn_mlp_create(int in, const int *hidden, int n_hidden, int out, int batch_norm,
                     float dropout, kp_mlpnn_net **net, char *err, size_t errlen)
{
    if (n_hidden < 0 || n_hidden > KP_MLPNN_MAX_HIDDEN)
        return kp_errf(err, errlen, KP_ERR_ARG, "%d hidden layers; at most %d", n_hidden,
                       KP_MLPNN_MAX_HIDDEN);
    if (!(dropout >= 0 && dropout < 1))
        return kp_errf(err, errlen, KP_ERR_ARG, "dropout = %g must be in [0, 1)", dropout);
    kp_mlpnn_spec spec[KP_MLPNN_MAX_LAYERS];
    int n = 0;
    for (int i = 0; i < n_hidden; i++) {
        spec[n++] = (kp_mlpnn_spec){ KP_MLPNN_DENSE, hidden[i], i, 0 };
        if (batch_norm)
            spec[n++] = (kp_mlpnn_spec){ KP_MLPNN_BATCHNORM, 0, i, 0 };
        spec[n++] = (kp_mlpnn_spec){ KP_MLPNN_RELU, 0, i, 0 };
        if (dropout > 0)
            spec[n++] = (kp_mlpnn_spec){ KP_MLPNN_DROPOUT, 0, i, dropout };
    }
    spec[n++] = (kp_mlpnn_spec){ KP_MLPNN_DENSE, out, n_hidden, 0 };
    return kp_mlpnn_create(in, spec, n, net, err, errlen);
}

void kp_mlpnn_free(kp_mlpnn_net *net)
{
    if (!net)
        return;
    free(net->layers);
    free(net->params);
    free(net->buffers);
    free(net);
}

void kp_mlpnn_init_params(kp_mlpnn_net *net, kp_mlpnn_init init, kp_rng *rng)
{
    for (int i = 0; i < net->n_layers; i++) {
        const kp_mlpnn_layer *l = &net->layers[i];
        float *p = net->params + l->p_off;
        size_t nw = (size_t)l->in * l->out;
        if (l->kind == KP_MLPNN_BATCHNORM) {
            for (int j = 0; j < l->out; j++) {
                p[j] = 1;
                p[l->out + j] = 0;
            }
            continue;
        }
        if (l->kind != KP_MLPNN_DENSE)
            continue;
        double bound = init == KP_MLPNN_HE ? sqrt(6.0 / l->in) : sqrt(6.0 / (l->in + l->out));
        for (size_t k = 0; k < nw; k++)
            p[k] = (float)(bound * (2 * kp_rng_uniform(rng) - 1));
        for (int j = 0; j < l->out; j++)
            p[nw + j] = init == KP_MLPNN_HE ? 0 : (float)(bound * (2 * kp_rng_uniform(rng) - 1));
    }
}

/* ---- work areas, forward and backward ---- */

kp_mlpnn_work *kp_mlpnn_work_create(const kp_mlpnn_net *net, int max_batch, uint64_t seed)
{
    kp_mlpnn_work *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    int L = net->n_layers, widest = net->in;
    w->max_batch = max_batch;
    w->n_layers = L;
    w->threads = 1;
    kp_rng_seed(&w->rng, seed);
    for (int l = 0; l < L; l++)
        widest = net->layers[l].out > widest ? net->layers[l].out : widest;
    size_t rows = (size_t)max_batch, big = rows * (size_t)widest;
    w->act = calloc((size_t)L, sizeof *w->act);
    w->aux = calloc((size_t)L, sizeof *w->aux);
    w->grads = malloc(sizeof *w->grads * net->n_params);
    w->d0 = malloc(sizeof *w->d0 * big);
    w->d1 = malloc(sizeof *w->d1 * big);
    w->acc = malloc(sizeof *w->acc * 2 * (size_t)widest);
    if (!w->act || !w->aux || !w->grads || !w->d0 || !w->d1 || !w->acc)
        goto fail;
    for (int l = 0; l < L; l++) {
        const kp_mlpnn_layer *ly = &net->layers[l];
        if (!(w->act[l] = malloc(sizeof(float) * rows * (size_t)ly->out)))
            goto fail;
        size_t aux = ly->kind == KP_MLPNN_BATCHNORM ? (rows + 1) * (size_t)ly->out
                     : ly->kind == KP_MLPNN_DROPOUT ? rows * (size_t)ly->out : 0;
        if (aux && !(w->aux[l] = calloc(aux, sizeof(float))))
            goto fail;
    }
    return w;
fail:
    kp_mlpnn_work_free(w);
    return NULL;
}

void kp_mlpnn_work_free(kp_mlpnn_work *w)
{
    if (!w)
        return;
    for (int l = 0; l < w->n_layers; l++) {
        free(w->act ? w->act[l] : NULL);
        free(w->aux ? w->aux[l] : NULL);
    }
    free(w->act);
    free(w->aux);
    free(w->grads);
    free(w->d0);
    free(w->d1);
    free(w->acc);
    free(w);
}

const float *kp_mlpnn_forward(kp_mlpnn_net *net, kp_mlpnn_work *w, const float *x, int n,
                           kp_mlpnn_mode mode)
{
    assert(n >= 1 && n <= w->max_batch);
    const float *in = x;
    for (int l = 0; l < net->n_layers; l++) {
        const kp_mlpnn_layer *ly = &net->layers[l];
        pass_ctx c = { w->aux[l], w->acc, &w->rng, w->threads, mode };
        layer_table[ly->kind].forward(net, ly, &c, in, w->act[l], n);
        in = w->act[l];
    }
    return in;
}

const float *kp_mlpnn_predict(const kp_mlpnn_net *net, kp_mlpnn_work *w, const float *x, int n)
{
    return kp_mlpnn_forward((kp_mlpnn_net *)net, w, x, n, KP_MLPNN_EVAL);   /* EVAL never writes */
}

void kp_mlpnn_backward(const kp_mlpnn_net *net, kp_mlpnn_work *w, const float *x, int n,
                    const float *dlogits, float *dx_out)
{
    const float *dy = dlogits;
    for (int l = net->n_layers - 1; l >= 0; l--) {
        const kp_mlpnn_layer *ly = &net->layers[l];
        float *dx = l == 0 ? dx_out : dy == w->d0 ? w->d1 : w->d0;
        const float *in = l == 0 ? x : w->act[l - 1];
        pass_ctx c = { w->aux[l], w->acc, &w->rng, w->threads, KP_MLPNN_TRAIN };
        layer_table[ly->kind].backward(net, ly, &c, in, w->act[l], dy, dx, w->grads + ly->p_off, n);
        dy = dx;
    }
}

double kp_mlpnn_weight_sq(const kp_mlpnn_net *net)
{
    double s = 0;
    for (int l = 0; l < net->n_layers; l++) {
        const kp_mlpnn_layer *ly = &net->layers[l];
        const float *W = net->params + ly->p_off;
        size_t nw = ly->kind == KP_MLPNN_DENSE ? (size_t)ly->in * ly->out : 0;
        for (size_t k = 0; k < nw; k++)
            s += (double)W[k] * W[k];
    }
    return s;
}

void kp_mlpnn_add_decay(const kp_mlpnn_net *net, float *grads, float coef)
{
    for (int l = 0; l < net->n_layers; l++) {
        const kp_mlpnn_layer *ly = &net->layers[l];
        const float *W = net->params + ly->p_off;
        float *g = grads + ly->p_off;
        size_t nw = ly->kind == KP_MLPNN_DENSE ? (size_t)ly->in * ly->out : 0;
        for (size_t k = 0; k < nw; k++)
            g[k] += coef * W[k];
    }
}

/* ---- heads ---- */

static double sigmoid(double z)
{
    return z >= 0 ? 1 / (1 + exp(-z)) : exp(z) / (1 + exp(z));
}

/* Returns max(z) of the k logits and sets *lse = log(sum exp(z)). */
static double log_sum_exp(const float *z, int k, double *sum_out)
{
    double mx = z[0], sum = 0;
    for (int j = 1; j < k; j++)
        mx = fmax(mx, z[j]);
    for (int j = 0; j < k; j++)
        sum += exp(z[j] - mx);
    *sum_out = sum;
    return mx;
}

/* Loss of one row; writes dL_row/dz * scale to delta if non-NULL. */
static double row_loss(kp_mlpnn_head head, const float *z, const float *y, int k, double scale,
                       float *delta)
{
    double loss = 0;
    if (head == KP_MLPNN_SOFTMAX) {
        int c = (int)y[0];
        double sum, mx = log_sum_exp(z, k, &sum);
        for (int j = 0; delta && j < k; j++)
            delta[j] = (float)((exp(z[j] - mx) / sum - (j == c)) * scale);
        return mx + log(sum) - z[c];
    }
    for (int j = 0; j < k; j++) {
        double t = z[j], d;
        if (head == KP_MLPNN_SIGMOID) {
            loss += log1p(exp(-fabs(t))) + fmax(t, 0) - y[j] * t;
            d = sigmoid(t) - y[j];
        } else {
            d = (t - y[j]) / k;
            loss += 0.5 * (t - y[j]) * d;
        }
        if (delta)
            delta[j] = (float)(d * scale);
    }
    return loss;
}

double kp_mlpnn_head_loss(kp_mlpnn_head head, const float *z, const float *y, int n, int k,
                       float *delta)
{
    double sum = 0;
    int yw = head == KP_MLPNN_SOFTMAX ? 1 : k;
    for (int i = 0; i < n; i++)
        sum += row_loss(head, z + (size_t)i * k, y + (size_t)i * yw, k, 1.0 / n,
                        delta ? delta + (size_t)i * k : NULL);
    return sum;
}

void kp_mlpnn_head_apply(kp_mlpnn_head head, const float *z, int n, int k, float *out)
{
    for (int i = 0; i < n; i++) {
        const float *zi = z + (size_t)i * k;
        float *o = out + (size_t)i * k;
        double sum, mx = head == KP_MLPNN_SOFTMAX ? log_sum_exp(zi, k, &sum) : 0;
        for (int j = 0; j < k; j++)
            o[j] = head == KP_MLPNN_SOFTMAX ? (float)(exp(zi[j] - mx) / sum)
                   : head == KP_MLPNN_SIGMOID ? (float)sigmoid(zi[j]) : zi[j];
    }
}

/* ---- optimisers ---- */

int kp_mlpnn_optim_init(kp_mlpnn_optim *o, size_t n)
{
    o->n = n;
    o->t = 0;
    o->m = calloc(n ? n : 1, sizeof *o->m);
    o->v = o->solver == KP_MLPNN_ADAM ? calloc(n ? n : 1, sizeof *o->v) : NULL;
    return o->m && (o->v || o->solver != KP_MLPNN_ADAM) ? 0 : KP_ERR_NOMEM;
}

void kp_mlpnn_optim_release(kp_mlpnn_optim *o)
{
    free(o->m);
    free(o->v);
    o->m = o->v = NULL;
}

void kp_mlpnn_optim_step(kp_mlpnn_optim *o, float *params, const float *grads)
{
    float *m = o->m, *v = o->v;
    if (o->solver == KP_MLPNN_ADAM) {
        o->t++;
        double t = (double)o->t;
        float lr = (float)(o->lr * sqrt(1 - pow(o->beta2, t)) / (1 - pow(o->beta1, t)));
        float b1 = (float)o->beta1, b2 = (float)o->beta2, eps = (float)o->eps;
        for (size_t k = 0; k < o->n; k++) {
            float g = grads[k];
            m[k] = b1 * m[k] + (1 - b1) * g;
            v[k] = b2 * v[k] + (1 - b2) * g * g;
            params[k] -= lr * m[k] / (sqrtf(v[k]) + eps);
        }
        return;
    }
    float mu = (float)o->momentum, lr = (float)o->lr;
    for (size_t k = 0; k < o->n; k++) {
        m[k] = mu * m[k] - lr * grads[k];
        params[k] += o->nesterov ? mu * m[k] - lr * grads[k] : m[k];
    }
}

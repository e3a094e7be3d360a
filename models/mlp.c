/* mlp.c - a dense neural network for tabular data, as scikit-learn's
 * MLPClassifier / MLPRegressor (activation='relu').
 *
 * Hidden layers are dense + ReLU, each optionally with batch norm before the
 * ReLU and dropout after it; the output layer is sigmoid + binary
 * cross-entropy (binary, multilabel), softmax + cross-entropy (multiclass) or
 * identity + half squared error (regression).  Training is scikit-learn's
 * _fit_stochastic: mini-batches of a seeded shuffle each epoch, each batch's
 * loss = mean loss + 0.5 * alpha * ||W||^2 / batch rows, Adam or SGD with
 * (Nesterov) momentum, and stopping when the training loss has not improved
 * by tol for more than n_iter_no_change epochs.  With early_stopping the
 * criterion is the loss on the fold's held-out rows (opts->X_valid; else a
 * seeded validation_fraction of the training rows) and the best epoch's
 * weights are kept; scikit-learn scores accuracy / R^2 on its own split.
 *
 * Determinism: OpenBLAS's sgemm gives different bits with 1 and 2 threads
 * (measured with 0.3.21 on this project's machine for most shapes a net
 * meets), so fit and predict call it with one OpenBLAS thread (the previous
 * setting is restored) and parallelise themselves: a large GEMM of a
 * training batch is cut into chunks of rows fixed by its shape alone
 * (mlp_nn.c), and predict and the held-out scoring run fixed 256-row blocks,
 * each chunk or block one single-threaded sgemm call on one of
 * opts->threads / threads threads.  So the bits never depend on the thread
 * count.
 */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/err.h"
#include "../lib/parallel.h"
#include "mlp_int.h"
#include "model.h"

#define EVAL_ROWS 256        /* rows per block of prediction / validation */
#define LOG_EVERY 10         /* epochs between progress lines */

static const kp_keyspec mlp_params[] = {
    { "hidden_layer_sizes", KP_PT_LIST, "100", NULL, 0, 0,
      "units of each hidden (dense + ReLU) layer, e.g. [100, 50]; [] for none" },
    { "solver", KP_PT_ENUM, "adam", "adam|sgd", 0, 0, "adam, or sgd with momentum" },
    { "alpha", KP_PT_FLOAT, "1e-4", NULL, 0, 1e6,
      "L2 penalty: each batch's loss adds 0.5 * alpha * ||W||^2 / batch rows (scikit-learn)" },
    { "batch_size", KP_PT_STRING, "auto", NULL, 0, 0,
      "rows per mini-batch, or auto = min(200, rows)" },
    { "learning_rate_init", KP_PT_FLOAT, "1e-3", NULL, 1e-12, 1e3, "initial step size" },
    { "learning_rate", KP_PT_ENUM, "constant", "constant|invscaling|adaptive", 0, 0,
      "sgd schedule: constant; learning_rate_init / (rows seen + 1)^power_t; "
      "or divided by 5 each time the loss stalls" },
    { "power_t", KP_PT_FLOAT, "0.5", NULL, 0, 10, "exponent of the invscaling schedule" },
    { "momentum", KP_PT_FLOAT, "0.9", NULL, 0, 1, "sgd momentum in [0, 1]" },
    { "nesterovs_momentum", KP_PT_BOOL, "true", NULL, 0, 0, "sgd: use Nesterov's momentum" },
    { "beta_1", KP_PT_FLOAT, "0.9", NULL, 0, 1, "adam: decay of the first moment, in [0, 1)" },
    { "beta_2", KP_PT_FLOAT, "0.999", NULL, 0, 1, "adam: decay of the second moment, in [0, 1)" },
    { "epsilon", KP_PT_FLOAT, "1e-8", NULL, 1e-30, 1, "adam: added to sqrt(v) (> 0)" },
    { "max_iter", KP_PT_INT, "200", NULL, 1, 1e7, "epochs at most" },
    { "shuffle", KP_PT_BOOL, "true", NULL, 0, 0, "shuffle the rows every epoch (seeded)" },
    { "tol", KP_PT_FLOAT, "1e-4", NULL, 0, 1e6,
      "an epoch improves if its loss is below the best by more than tol" },
    { "n_iter_no_change", KP_PT_INT, "10", NULL, 1, 1e7,
      "stop after more than this many epochs without improvement" },
    { "early_stopping", KP_PT_BOOL, "false", NULL, 0, 0,
      "judge improvement by the held-out rows' loss and keep the best epoch's weights" },
    { "validation_fraction", KP_PT_FLOAT, "0.1", NULL, 0, 1,
      "early stopping without the fold's held-out rows: hold out this share, in (0, 1)" },
    { "dropout", KP_PT_FLOAT, "0", NULL, 0, 1, "dropout rate after each hidden ReLU, in [0, 1)" },
    { "batch_norm", KP_PT_BOOL, "false", NULL, 0, 0,
      "batch norm before each hidden ReLU (running statistics for prediction)" },
    { "init", KP_PT_ENUM, "glorot", "glorot|he", 0, 0,
      "weights uniform: glorot (scikit-learn, biases too) or he (zero biases)" },
    { NULL, 0, NULL, NULL, 0, 0, NULL },
};

typedef enum schedule { SCHED_CONSTANT, SCHED_INVSCALING, SCHED_ADAPTIVE } schedule;

typedef struct mlp_settings {
    int hidden[KP_MLPNN_MAX_HIDDEN], n_hidden;
    kp_mlpnn_solver solver;
    schedule sched;
    double lr0, power_t, momentum, beta1, beta2, eps, alpha, tol, valid_frac, dropout;
    int nesterov, batch, max_iter, shuffle, n_iter_no_change, early_stopping, batch_norm;
    kp_mlpnn_init init;
} mlp_settings;

/* ---- settings ---- */

/* Parses one hidden size from s[0, len) (spaces and brackets around it
 * allowed); 0 or KP_ERR_ARG. */
static int parse_size(const char *s, size_t len, int *out, char *err, size_t errlen)
{
    char buf[32], *end = buf;
    size_t a = 0, b = len;
    long v = 0;
    while (a < b && memchr(" [(", s[a], 3))   /* "[100", " 50", "(100" */
        a++;
    while (b > a && memchr(" ])", s[b - 1], 3))
        b--;
    if (b - a < sizeof buf) {
        memcpy(buf, s + a, b - a);
        buf[b - a] = 0;
        v = strtol(buf, &end, 10);
    }
    if (a == b || b - a >= sizeof buf || *end || v < 1 || v > KP_MLPNN_MAX_WIDTH)
        return kp_errf(err, errlen, KP_ERR_ARG,
                       "hidden_layer_sizes: '%.*s' is not a whole number in [1, %d]",
                       (int)(len < 32 ? len : 32), s, KP_MLPNN_MAX_WIDTH);
    *out = (int)v;
    return 0;
}

/* Reads hidden_layer_sizes (a list; items may also be comma-separated). */
static int read_hidden(const kp_params *params, mlp_settings *s, char *err, size_t errlen)
{
    const char *const *items, *def = "100";
    int n;
    if (kp_params_get_list(params, "hidden_layer_sizes", &items, &n) < 0) {
        items = &def;
        n = 1;
    }
    s->n_hidden = 0;
    for (int i = 0; i < n; i++) {
        const char *p = items[i] ? items[i] : "";
        if (n == 1 && (strspn(p, " []()") == strlen(p)))
            break;   /* "", "[]": no hidden layer */
        for (;;) {
            size_t len = strcspn(p, ",");
            if (s->n_hidden == KP_MLPNN_MAX_HIDDEN)
                return kp_errf(err, errlen, KP_ERR_ARG,
                               "hidden_layer_sizes: more than %d layers", KP_MLPNN_MAX_HIDDEN);
            int rc = parse_size(p, len, &s->hidden[s->n_hidden++], err, errlen);
            if (rc < 0)
                return rc;
            if (!p[len])
                break;
            p += len + 1;
        }
    }
    return 0;
}

/* Reads batch_size: "auto" (0) or a positive count. */
static int read_batch(const kp_params *params, mlp_settings *s, char *err, size_t errlen)
{
    const char *b = kp_params_str(params, "batch_size", "auto");
    char *end;
    long v = strcmp(b, "auto") == 0 ? 0 : strtol(b, &end, 10);
    if (strcmp(b, "auto") != 0 && (!*b || *end || v < 1 || v > 1L << 30))
        return kp_errf(err, errlen, KP_ERR_ARG,
                       "batch_size '%s' is not 'auto' or a whole number in [1, 2^30]", b);
    s->batch = (int)v;
    return 0;
}

/* Checks the ranges the keyspec cannot express; 0 or KP_ERR_ARG. */
static int check_settings(const mlp_settings *s, char *err, size_t errlen)
{
    struct { const char *name; double v, lo, hi; int hi_open; } r[] = {
        { "alpha", s->alpha, 0, 1e6, 0 }, { "learning_rate_init", s->lr0, 1e-12, 1e3, 0 },
        { "power_t", s->power_t, 0, 10, 0 }, { "momentum", s->momentum, 0, 1, 0 },
        { "beta_1", s->beta1, 0, 1, 1 }, { "beta_2", s->beta2, 0, 1, 1 },
        { "epsilon", s->eps, 1e-30, 1, 0 }, { "tol", s->tol, 0, 1e6, 0 },
        { "dropout", s->dropout, 0, 1, 1 }, { "validation_fraction", s->valid_frac, 1e-9, 1, 1 },
    };
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++)
        if (!(r[i].v >= r[i].lo && (r[i].hi_open ? r[i].v < r[i].hi : r[i].v <= r[i].hi)))
            return kp_errf(err, errlen, KP_ERR_ARG, "%s = %g must be in [%g, %g%c", r[i].name,
                           r[i].v, r[i].lo, r[i].hi, r[i].hi_open ? ')' : ']');
    if (s->max_iter < 1 || s->n_iter_no_change < 1)
        return kp_errf(err, errlen, KP_ERR_ARG, "max_iter and n_iter_no_change must be >= 1");
    return 0;
}

/* Reads the params (defaults as the keyspec) into *s; 0 or KP_ERR_ARG. */
static int read_settings(const kp_params *params, mlp_settings *s, char *err, size_t errlen)
{
    int rc;
    if ((rc = read_hidden(params, s, err, errlen)) < 0 ||
        (rc = read_batch(params, s, err, errlen)) < 0)
        return rc;
    const char *sched = kp_params_str(params, "learning_rate", "constant");
    const char *solver = kp_params_str(params, "solver", "adam");
    s->solver = strcmp(solver, "sgd") == 0 ? KP_MLPNN_SGD : KP_MLPNN_ADAM;
    s->sched = strcmp(sched, "invscaling") == 0 ? SCHED_INVSCALING
               : strcmp(sched, "adaptive") == 0 ? SCHED_ADAPTIVE : SCHED_CONSTANT;
    s->init = strcmp(kp_params_str(params, "init", "glorot"), "he") == 0 ? KP_MLPNN_HE : KP_MLPNN_GLOROT;
    s->alpha = kp_params_double(params, "alpha", 1e-4);
    s->lr0 = kp_params_double(params, "learning_rate_init", 1e-3);
    s->power_t = kp_params_double(params, "power_t", 0.5);
    s->momentum = kp_params_double(params, "momentum", 0.9);
    s->nesterov = kp_params_bool(params, "nesterovs_momentum", 1);
    s->beta1 = kp_params_double(params, "beta_1", 0.9);
    s->beta2 = kp_params_double(params, "beta_2", 0.999);
    s->eps = kp_params_double(params, "epsilon", 1e-8);
    s->max_iter = (int)kp_params_int(params, "max_iter", 200);
    s->shuffle = kp_params_bool(params, "shuffle", 1);
    s->tol = kp_params_double(params, "tol", 1e-4);
    s->n_iter_no_change = (int)kp_params_int(params, "n_iter_no_change", 10);
    s->early_stopping = kp_params_bool(params, "early_stopping", 0);
    s->valid_frac = kp_params_double(params, "validation_fraction", 0.1);
    s->dropout = kp_params_double(params, "dropout", 0);
    s->batch_norm = kp_params_bool(params, "batch_norm", 0);
    return check_settings(s, err, errlen);
}

/* ---- evaluation over fixed row blocks ---- */

typedef struct eval_job {
    const kp_mlpnn_net *net;
    kp_mlpnn_head head;
    const float *X, *y;     /* y may be NULL (no loss) */
    int64_t rows;
    float *out;             /* predictions, or NULL */
    double *loss, *hits;    /* per block: summed loss, correct rows (or squared error) */
    kp_mlpnn_work **work;      /* one per thread */
} eval_job;

/* Counts the block's correct rows (classification) or sums its squared errors. */
static double block_hits(kp_mlpnn_head head, const float *z, const float *y, int n, int k)
{
    double h = 0;
    for (int i = 0; i < n; i++) {
        const float *zi = z + (size_t)i * k;
        if (head == KP_MLPNN_IDENTITY) {
            h += ((double)zi[0] - y[i]) * ((double)zi[0] - y[i]);
            continue;
        }
        int best = 0, ok = 1;
        for (int j = 1; head == KP_MLPNN_SOFTMAX && j < k; j++)
            best = zi[j] > zi[best] ? j : best;
        for (int j = 0; head == KP_MLPNN_SIGMOID && j < k; j++)
            ok &= (zi[j] > 0) == (y[(size_t)i * k + j] > 0.5f);
        h += head == KP_MLPNN_SOFTMAX ? best == (int)y[i] : ok;
    }
    return h;
}

static void eval_block(void *data, size_t b, int tid)
{
    const eval_job *job = data;
    int k = job->net->out, yw = job->head == KP_MLPNN_SOFTMAX ? 1 : k;
    int64_t r0 = (int64_t)b * EVAL_ROWS;
    int n = (int)(job->rows - r0 < EVAL_ROWS ? job->rows - r0 : EVAL_ROWS);
    const float *z = kp_mlpnn_predict(job->net, job->work[tid], job->X + r0 * job->net->in, n);
    if (job->out)
        kp_mlpnn_head_apply(job->head, z, n, k, job->out + r0 * k);
    if (job->y) {
        job->loss[b] = kp_mlpnn_head_loss(job->head, z, job->y + r0 * yw, n, k, NULL);
        job->hits[b] = block_hits(job->head, z, job->y + r0 * yw, n, k);
    }
}

/* Runs the rows through the net on `threads` threads: predictions to out
 * (may be NULL) and, if y is non-NULL, the mean loss and accuracy (or rmse)
 * to *loss and *metric.  0 or KP_ERR_NOMEM. */
static int evaluate(const kp_mlpnn_net *net, kp_mlpnn_head head, const float *X, int64_t rows,
                    const float *y, float *out, int threads, double *loss, double *metric)
{
    size_t blocks = (size_t)((rows + EVAL_ROWS - 1) / EVAL_ROWS);
    threads = threads < 1 ? 1 : (size_t)threads > blocks ? (int)blocks : threads;
    eval_job job = { net, head, X, y, rows, out, calloc(blocks, sizeof(double)),
                     calloc(blocks, sizeof(double)), calloc((size_t)threads, sizeof(void *)) };
    int rc = job.loss && job.hits && job.work ? 0 : KP_ERR_NOMEM;
    for (int t = 0; rc == 0 && t < threads; t++)
        if (!(job.work[t] = kp_mlpnn_work_create(net, EVAL_ROWS, 0)))
            rc = KP_ERR_NOMEM;
    if (rc == 0) {
        int old = openblas_get_num_threads();
        openblas_set_num_threads(1);
        kp_parallel_for(threads, eval_block, &job, blocks);
        openblas_set_num_threads(old);
        double l = 0, h = 0;
        for (size_t b = 0; y && b < blocks; b++) {
            l += job.loss[b];
            h += job.hits[b];
        }
        if (y) {
            *loss = l / (double)rows;
            *metric = head == KP_MLPNN_IDENTITY ? sqrt(h / (double)rows) : h / (double)rows;
        }
    }
    for (int t = 0; job.work && t < threads; t++)
        kp_mlpnn_work_free(job.work[t]);
    free(job.work);
    free(job.loss);
    free(job.hits);
    return rc;
}

/* ---- input checks ---- */

/* Checks that every target of `rows` fits the task; 0 or KP_ERR_ARG naming `what`. */
static int check_y(const kp_problem *pb, const float *y, int64_t rows, const char *what,
                   char *err, size_t errlen)
{
    int64_t n = pb->task == KP_TASK_MULTILABEL ? rows * pb->n_out : rows;
    for (int64_t i = 0; i < n; i++) {
        float v = y[i];
        int ok = pb->task == KP_TASK_REGRESSION ? isfinite(v)
                 : pb->task == KP_TASK_MULTICLASS ? v >= 0 && v < pb->n_out && v == floorf(v)
                 : v == 0 || v == 1;
        if (!ok)
            return kp_errf(err, errlen, KP_ERR_ARG, "%s[%lld] = %g is not %s", what,
                           (long long)i, v,
                           pb->task == KP_TASK_REGRESSION ? "finite"
                           : pb->task == KP_TASK_MULTICLASS ? "a class index" : "0 or 1");
    }
    return 0;
}

/* Checks the training and held-out rows; 0 or KP_ERR_ARG. */
static int check_inputs(const kp_problem *pb, const kp_matrix *X, const float *y,
                        const kp_fit_opts *opts, char *err, size_t errlen)
{
    int one = pb->task == KP_TASK_BINARY || pb->task == KP_TASK_REGRESSION;
    if (pb->n_out < 1 || (one && pb->n_out != 1) ||
        (pb->task == KP_TASK_MULTICLASS && pb->n_out < 2))
        return kp_errf(err, errlen, KP_ERR_ARG, "task '%s' cannot have %d outputs",
                       kp_task_name(pb->task), pb->n_out);
    if (X->rows < 1 || X->rows > INT32_MAX || X->cols < 1 || X->cols > INT32_MAX)
        return kp_errf(err, errlen, KP_ERR_ARG, "X has %lld rows and %lld columns",
                       (long long)X->rows, (long long)X->cols);
    int rc = check_y(pb, y, X->rows, "y", err, errlen);
    const kp_matrix *V = opts->X_valid;
    if (rc < 0 || !V)
        return rc;
    if (V->cols != X->cols || V->rows < 1 || V->rows > INT32_MAX || !opts->y_valid)
        return kp_errf(err, errlen, KP_ERR_ARG,
                       "X_valid has %lld rows and %lld columns (X has %lld columns)%s",
                       (long long)V->rows, (long long)V->cols, (long long)X->cols,
                       opts->y_valid ? "" : " and no y_valid");
    for (int64_t i = 0; i < V->rows * V->cols; i++)
        if (!isfinite(V->data[i]))
            return kp_errf(err, errlen, KP_ERR_ARG,
                           "X_valid[%lld, %lld] is %g; features must be finite",
                           (long long)(i / V->cols), (long long)(i % V->cols), V->data[i]);
    return check_y(pb, opts->y_valid, V->rows, "y_valid", err, errlen);
}

/* ---- training ---- */

typedef struct mlp_fit {
    const mlp_settings *s;
    kp_mlpnn_net *net;
    kp_mlpnn_head head;
    int k, yw, d, n, batch, threads;
    const float *X, *y;         /* training rows (borrowed, or in split) */
    const float *Xv, *yv;       /* held-out rows or NULL (borrowed, or in split) */
    int64_t nv;
    float *split;               /* owned rows of a validation_fraction split */
    kp_mlpnn_work *work;
    float *xb, *yb, *delta;     /* one batch */
    int *idx;                   /* row order */
    kp_mlpnn_optim opt;
    kp_rng order;
    float *best;                /* params then buffers of the best epoch */
    FILE *log;
} mlp_fit;

/* Holds out ceil(validation_fraction * n) seeded random rows of X for early stopping. */
static int split_rows(mlp_fit *f, const kp_matrix *X, const float *y, uint64_t seed,
                      char *err, size_t errlen)
{
    int n = (int)X->rows, d = f->d, yw = f->yw, nv = (int)ceil(f->s->valid_frac * n);
    if (nv < 1 || nv >= n)
        return kp_errf(err, errlen, KP_ERR_ARG, "validation_fraction %g of %d rows leaves "
                       "no training or no validation rows", f->s->valid_frac, n);
    int *perm = malloc(sizeof *perm * (size_t)n);
    f->split = malloc(sizeof *f->split * (size_t)n * (size_t)(d + yw));
    if (!perm || !f->split) {
        free(perm);
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory splitting %d rows", n);
    }
    kp_rng r;
    kp_rng_seed(&r, kp_rng_derive(seed, 3));
    for (int i = 0; i < n; i++)
        perm[i] = i;
    kp_rng_shuffle_int(&r, perm, (size_t)n);
    float *xs = f->split, *ys = f->split + (size_t)n * d;
    for (int i = 0; i < n; i++) {   /* rows perm[0 .. nv) are held out, first */
        memcpy(xs + (size_t)i * d, X->data + (size_t)perm[i] * d, sizeof *xs * (size_t)d);
        memcpy(ys + (size_t)i * yw, y + (size_t)perm[i] * yw, sizeof *ys * (size_t)yw);
    }
    free(perm);
    f->Xv = xs, f->yv = ys, f->nv = nv;
    f->X = xs + (size_t)nv * d, f->y = ys + (size_t)nv * yw, f->n = n - nv;
    return 0;
}

/* Sets the optimiser from the settings; 0 or KP_ERR_NOMEM. */
static int setup_optim(mlp_fit *f)
{
    const mlp_settings *s = f->s;
    f->opt = (kp_mlpnn_optim){ .solver = s->solver, .lr = s->lr0, .momentum = s->momentum,
                            .nesterov = s->nesterov, .beta1 = s->beta1, .beta2 = s->beta2,
                            .eps = s->eps };
    return kp_mlpnn_optim_init(&f->opt, f->net->n_params);
}

/* Builds the net, buffers and optimiser for a fit; 0 or a status. */
static int fit_setup(mlp_fit *f, const mlp_settings *s, const kp_problem *pb, const kp_matrix *X,
                     const float *y, const kp_fit_opts *opts, char *err, size_t errlen)
{
    *f = (mlp_fit){ .s = s, .head = kp_mlp_head_of(pb->task), .k = pb->n_out, .d = (int)X->cols,
                    .n = (int)X->rows, .X = X->data, .y = y, .log = opts->log,
                    .threads = opts->threads < 1 ? 1 : opts->threads };
    f->yw = f->head == KP_MLPNN_SOFTMAX ? 1 : f->k;
    int rc = 0;
    if (opts->X_valid)
        f->Xv = opts->X_valid->data, f->yv = opts->y_valid, f->nv = opts->X_valid->rows;
    else if (s->early_stopping && (rc = split_rows(f, X, y, opts->seed, err, errlen)) < 0)
        return rc;
    f->batch = s->batch == 0 ? (f->n < 200 ? f->n : 200) : s->batch > f->n ? f->n : s->batch;
    if (s->batch > f->n && f->log)
        fprintf(f->log, "mlp: batch_size %d is above the %d training rows; using %d\n",
                s->batch, f->n, f->n);
    if ((rc = kp_mlpnn_mlp_create(f->d, s->hidden, s->n_hidden, f->k, s->batch_norm,
                               (float)s->dropout, &f->net, err, errlen)) < 0)
        return rc;
    kp_rng r;
    kp_rng_seed(&r, kp_rng_derive(opts->seed, 0));
    kp_mlpnn_init_params(f->net, s->init, &r);
    kp_rng_seed(&f->order, kp_rng_derive(opts->seed, 1));
    f->work = kp_mlpnn_work_create(f->net, f->batch, kp_rng_derive(opts->seed, 2));
    f->xb = malloc(sizeof *f->xb * (size_t)f->batch * (size_t)f->d);
    f->yb = malloc(sizeof *f->yb * (size_t)f->batch * (size_t)f->yw);
    f->delta = malloc(sizeof *f->delta * (size_t)f->batch * (size_t)f->k);
    f->idx = malloc(sizeof *f->idx * (size_t)f->n);
    f->best = malloc(sizeof *f->best * (f->net->n_params + f->net->n_buffers));
    if (!f->work || !f->xb || !f->yb || !f->delta || !f->idx || !f->best || setup_optim(f) < 0)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory for a net of %zu parameters "
                       "and batches of %d rows", f->net->n_params, f->batch);
    f->work->threads = f->threads;
    for (int i = 0; i < f->n; i++)
        f->idx[i] = i;
    return 0;
}

static void fit_release(mlp_fit *f)
{
    kp_mlpnn_free(f->net);
    kp_mlpnn_work_free(f->work);
    kp_mlpnn_optim_release(&f->opt);
    free(f->split);
    free(f->xb);
    free(f->yb);
    free(f->delta);
    free(f->idx);
    free(f->best);
}

/* Points *xb, *yb at batch rows [b0, b0 + nb) of this epoch's order (copied if shuffled). */
static void gather(mlp_fit *f, int b0, int nb, const float **xb, const float **yb)
{
    size_t d = (size_t)f->d, yw = (size_t)f->yw;
    if (!f->s->shuffle) {
        *xb = f->X + (size_t)b0 * d;
        *yb = f->y + (size_t)b0 * yw;
        return;
    }
    for (int i = 0; i < nb; i++) {
        size_t r = (size_t)f->idx[b0 + i];
        memcpy(f->xb + i * d, f->X + r * d, sizeof *f->xb * d);
        memcpy(f->yb + i * yw, f->y + r * yw, sizeof *f->yb * yw);
    }
    *xb = f->xb;
    *yb = f->yb;
}

/* One pass over the training rows in mini-batches; returns the mean batch
 * loss (penalty included) weighted by batch rows, as scikit-learn's loss_. */
static double run_epoch(mlp_fit *f)
{
    const mlp_settings *s = f->s;
    if (s->shuffle)
        kp_rng_shuffle_int(&f->order, f->idx, (size_t)f->n);
    double total = 0;
    for (int b0 = 0; b0 < f->n; b0 += f->batch) {
        int nb = f->n - b0 < f->batch ? f->n - b0 : f->batch;
        const float *xb, *yb;
        gather(f, b0, nb, &xb, &yb);
        const float *z = kp_mlpnn_forward(f->net, f->work, xb, nb, KP_MLPNN_TRAIN);
        double loss = kp_mlpnn_head_loss(f->head, z, yb, nb, f->k, f->delta) / nb;
        kp_mlpnn_backward(f->net, f->work, xb, nb, f->delta, NULL);
        if (s->alpha > 0) {
            loss += 0.5 * s->alpha * kp_mlpnn_weight_sq(f->net) / nb;
            kp_mlpnn_add_decay(f->net, f->work->grads, (float)(s->alpha / nb));
        }
        kp_mlpnn_optim_step(&f->opt, f->net->params, f->work->grads);
        total += loss * nb;
    }
    return total / f->n;
}

/* Copies params and buffers to or from f->best. */
static void snapshot(mlp_fit *f, int restore)
{
    kp_mlpnn_net *net = f->net;
    float *p = f->best, *b = f->best + net->n_params;
    memcpy(restore ? net->params : p, restore ? p : net->params, sizeof *p * net->n_params);
    memcpy(restore ? net->buffers : b, restore ? b : net->buffers, sizeof *b * net->n_buffers);
}

typedef struct epoch_state {
    int epoch, no_change, best_epoch;
    double loss, vloss, vmetric, best;
} epoch_state;

static void log_epoch(const mlp_fit *f, const epoch_state *e)
{
    fprintf(f->log, "mlp: epoch %d/%d train-loss %.6f", e->epoch, f->s->max_iter, e->loss);
    if (f->Xv)
        fprintf(f->log, " valid-loss %.6f valid-%s %.4f", e->vloss,
                f->head == KP_MLPNN_IDENTITY ? "rmse" : "accuracy", e->vmetric);
    fprintf(f->log, "\n");
}

/* Scores the epoch (held-out loss if needed), tracks the best; 1 = stop, 0 = go on, <0 error. */
static int end_epoch(mlp_fit *f, epoch_state *e, int64_t seen)
{
    const mlp_settings *s = f->s;
    int logging = f->log && e->epoch % LOG_EVERY == 0;
    if (f->Xv && (s->early_stopping || logging) &&
        evaluate(f->net, f->head, f->Xv, f->nv, f->yv, NULL, f->threads, &e->vloss,
                 &e->vmetric) < 0)
        return KP_ERR_NOMEM;
    double cur = s->early_stopping ? e->vloss : e->loss;
    e->no_change = cur > e->best - s->tol ? e->no_change + 1 : 0;
    if (cur < e->best) {
        e->best = cur;
        e->best_epoch = e->epoch;
        if (s->early_stopping)
            snapshot(f, 0);
    }
    if (s->solver == KP_MLPNN_SGD && s->sched == SCHED_INVSCALING)
        f->opt.lr = s->lr0 / pow((double)seen + 1, s->power_t);
    if (logging)
        log_epoch(f, e);
    if (e->no_change <= s->n_iter_no_change)
        return 0;
    if (s->solver != KP_MLPNN_SGD || s->sched != SCHED_ADAPTIVE || f->opt.lr <= 1e-6)
        return 1;
    f->opt.lr /= 5;
    e->no_change = 0;
    if (f->log)
        fprintf(f->log, "mlp: epoch %d: no improvement for %d epochs; learning rate now %g\n",
                e->epoch, s->n_iter_no_change + 1, f->opt.lr);
    return 0;
}

/* Trains for up to max_iter epochs; 0 or a status. */
static int train(mlp_fit *f, char *err, size_t errlen)
{
    const mlp_settings *s = f->s;
    epoch_state e = { .best = INFINITY, .vloss = NAN, .vmetric = NAN };
    int64_t seen = 0;
    int stop = 0;
    for (e.epoch = 1; e.epoch <= s->max_iter && !stop; e.epoch++) {
        e.loss = run_epoch(f);
        seen += f->n;
        if (!isfinite(e.loss))
            return kp_errf(err, errlen, KP_ERR_ARG, "the training loss is %s at epoch %d; "
                           "lower learning_rate_init", isnan(e.loss) ? "nan" : "inf", e.epoch);
        if ((stop = end_epoch(f, &e, seen)) < 0)
            return kp_errf(err, errlen, stop, "out of memory scoring the held-out rows");
    }
    e.epoch--;
    if (s->early_stopping && e.best_epoch > 0)
        snapshot(f, 1);
    if (!f->log)
        return 0;
    const char *crit = s->early_stopping ? "held-out" : "training";
    if (stop)
        fprintf(f->log, "mlp: stopped at epoch %d: the %s loss did not improve by tol for %d "
                "epochs", e.epoch, crit, s->n_iter_no_change + 1);
    else
        fprintf(f->log, "mlp: warning: max_iter %d epochs reached before the %s loss stopped "
                "improving", s->max_iter, crit);
    if (s->early_stopping)
        fprintf(f->log, "; kept epoch %d (held-out loss %.6f)", e.best_epoch, e.best);
    fprintf(f->log, "\n");
    return 0;
}

static int mlp_fit_model(const kp_params *params, const kp_problem *pb, const kp_matrix *X,
                         const float *y, const kp_fit_opts *opts, void **model,
                         char *err, size_t errlen)
{
    mlp_settings s;
    mlp_fit f = { 0 };
    kp_mlp *m = NULL;
    int rc, old = openblas_get_num_threads();
    if ((rc = read_settings(params, &s, err, errlen)) < 0 ||
        (rc = check_inputs(pb, X, y, opts, err, errlen)) < 0)
        return rc;
    openblas_set_num_threads(1);   /* see the top of this file */
    if ((rc = fit_setup(&f, &s, pb, X, y, opts, err, errlen)) < 0 ||
        (rc = train(&f, err, errlen)) < 0)
        goto fail;
    if (!(m = malloc(sizeof *m))) {
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
        goto fail;
    }
    m->net = f.net;
    m->head = f.head;
    f.net = NULL;
    *model = m;
fail:
    openblas_set_num_threads(old);
    fit_release(&f);
    return rc;
}

static int mlp_predict(const void *model, const kp_matrix *X, float *out, int threads,
                       char *err, size_t errlen)
{
    const kp_mlp *m = model;
    if (X->cols != m->net->in)
        return kp_errf(err, errlen, KP_ERR_MISMATCH,
                       "X has %lld columns but the model was fitted on %d features",
                       (long long)X->cols, m->net->in);
    if (X->rows < 1)
        return 0;
    if (evaluate(m->net, m->head, X->data, X->rows, NULL, out, threads, NULL, NULL) < 0)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory predicting %lld rows",
                       (long long)X->rows);
    return 0;
}

const kp_model_ops kp_model_mlp = {
    .name = "mlp",
    .doc = "dense ReLU network (scikit-learn's MLPClassifier/MLPRegressor; adam or sgd)",
    .params = mlp_params,
    .tasks = KP_TASK_BIT(KP_TASK_BINARY) | KP_TASK_BIT(KP_TASK_MULTICLASS) |
             KP_TASK_BIT(KP_TASK_REGRESSION) | KP_TASK_BIT(KP_TASK_MULTILABEL),
    .fit = mlp_fit_model,
    .predict = mlp_predict,
    .save = kp_mlp_save,
    .load = kp_mlp_load,
    .free = kp_mlp_free,
};

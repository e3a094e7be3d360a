/* cnn.c - a convolutional network for image competitions (models/nn).
 *
 *   cnn:
 *     type: train
 *     needs: [images, folds]
 *     model: cnn
 *     params:
 *       arch: [cbr 32, cbr 32, maxpool, cbr 64, cbr 64, maxpool, dense 128, dropout 0.3]
 *       epochs: 5
 *       optimizer: adam
 *       lr: 0.001
 *       augment: [hflip, crop 2]
 *
 * The architecture is a list of blocks (models/nn/arch.h) ended by a linear
 * layer to the task's outputs: softmax + cross-entropy for multiclass,
 * sigmoid + binary cross-entropy for binary and multilabel, identity + half
 * squared error for regression.  Training (cnn_train.c) runs mini-batches of
 * a seeded shuffle, augments each image on the fly (lib/augment.h), scores
 * the fold's held-out images after every epoch and keeps the best epoch's
 * weights (early stopping after `patience` epochs without a better held-out
 * loss).  OpenBLAS runs on one thread while the kernels parallelise over
 * fixed chunks of images themselves, so the bits never depend on the thread
 * count.  Checkpoints hold PyTorch state_dict names (cnn_io.c, docs/cnn.md).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/blas.h"
#include "../lib/d4.h"
#include "../lib/err.h"
#include "../lib/parallel.h"
#include "cnn_int.h"
#include "nn/arch.h"

void openblas_set_num_threads(int);
int openblas_get_num_threads(void);

static const char *const default_arch[] = {
    "cbr 32", "cbr 32", "maxpool", "cbr 64", "cbr 64", "maxpool", "dense 128", "dropout 0.3",
};

static const kp_keyspec cnn_params[] = {
    {"arch", KP_PT_LIST, "", NULL, 0, 0,
     "blocks, e.g. [cbr 32, maxpool, res 64 stride=2, gap, dense 128, dropout 0.3] "
     "(docs/cnn.md); default: two conv-bn-relu pairs of 32 and 64 with max pooling, dense 128"},
    {"epochs", KP_PT_INT, "10", NULL, 1, 100000, "passes over the training images"},
    {"batch", KP_PT_INT, "128", NULL, 1, 65536, "images per mini-batch"},
    KP_OPTIM_KEYS,
    {"weight_init", KP_PT_ENUM, "pytorch", "pytorch|he", 0, 0,
     "conv and dense weights: PyTorch's defaults (uniform +-1/sqrt(fan_in), biases too) or "
     "He (uniform +-sqrt(6/fan_in), biases zero)"},
    {"patience", KP_PT_INT, "0", NULL, 0, 100000,
     "stop after this many epochs without a better held-out loss (0: run every epoch)"},
    {"init", KP_PT_PATH, "", NULL, 0, 0,
     "start from these weights: a safetensors file holding every tensor under the net's "
     "PyTorch names (a kpipe checkpoint, or a PyTorch state_dict saved with save_file)"},
    {"init_prefix", KP_PT_STRING, "", NULL, 0, 0,
     "prefix of the net's tensor names in the init file, e.g. 'model.'"},
    {"augment", KP_PT_LIST, "", NULL, 0, 0,
     "on-the-fly augmentation, e.g. [hflip, crop 4] (docs/augment.md)"},
    {NULL, 0, NULL, NULL, 0, 0, NULL},
};

/* ---- building ---- */

int kp_cnn_build(kp_cnn *m, int threads, uint64_t seed, char *err, size_t errlen)
{
    int rc = kp_nn_create(m->c, m->h, m->w, &m->net, err, errlen);
    if (rc == 0)
        kp_nn_set_init(m->net, m->init);
    if (rc == 0)
        rc = kp_nn_arch_build(m->net, (const char *const *)m->blocks, m->n_blocks, m->pb.n_out,
                              "arch", err, errlen);
    if (rc == 0)
        rc = kp_nn_compile(m->net, m->max_batch, threads, seed, err, errlen);
    return rc;
}

void kp_cnn_free(void *model)
{
    kp_cnn *m = model;
    if (!m)
        return;
    kp_nn_free(m->net);
    for (int i = 0; i < m->n_blocks; i++)
        free(m->blocks[i]);
    free(m);
}

/* ---- batches ---- */

typedef struct batch_job {
    const kp_cnn *m;
    const kp_images *X;
    const int64_t *rows;
    int d4;
    float *x, *tmp;
} batch_job;

/* Decodes one image: HWC samples to normalised CHW floats. */
static void load_one(void *data, size_t i, int tid)
{
    const batch_job *j = data;
    const kp_cnn *m = j->m;
    size_t chw = (size_t)m->h * m->w * m->c;
    float *dst = j->d4 ? j->tmp + (size_t)tid * chw : j->x + i * chw;
    kp_images_to_chw(j->X, j->rows[i], m->mean, m->std, dst);
    if (j->d4)
        kp_d4_apply(dst, m->c, m->h, m->w, j->d4, j->x + i * chw);
}

void kp_cnn_load_batch(const kp_cnn *m, const kp_images *X, const int64_t *rows, int n,
                       int d4, float *x, float *tmp, int threads)
{
    batch_job j = {m, X, rows, d4, x, tmp};
    kp_parallel_for(threads, load_one, &j, (size_t)n);
}

void kp_cnn_activate(const kp_problem *pb, float *z, int n)
{
    int k = pb->n_out;
    for (int i = 0; i < n; i++) {
        float *r = z + (size_t)i * k;
        if (pb->task == KP_TASK_MULTICLASS) {
            float mx = r[0];
            double sum = 0;
            for (int j = 1; j < k; j++)
                mx = r[j] > mx ? r[j] : mx;
            for (int j = 0; j < k; j++)
                sum += (r[j] = expf(r[j] - mx));
            for (int j = 0; j < k; j++)
                r[j] = (float)(r[j] / sum);
        } else if (pb->task != KP_TASK_REGRESSION) {
            for (int j = 0; j < k; j++)
                r[j] = 1.0f / (1.0f + expf(-r[j]));
        }
    }
}

int kp_cnn_predict_rows(const kp_cnn *m, const kp_images *X, const int64_t *rows, int64_t n,
                        int d4, float *out, char *err, size_t errlen)
{
    int threads = kp_nn_threads(m->net), bs = m->max_batch, k = m->pb.n_out;
    size_t chw = (size_t)m->c * m->h * m->w;
    float *x = malloc((size_t)bs * chw * sizeof *x), *tmp = malloc(threads * chw * sizeof *tmp);
    if (!x || !tmp) {
        free(x);
        free(tmp);
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory predicting images");
    }
    for (int64_t i = 0; i < n; i += bs) {
        int b = n - i < bs ? (int)(n - i) : bs;
        kp_cnn_load_batch(m, X, rows + i, b, d4, x, tmp, threads);
        const float *z = kp_nn_forward(m->net, x, b, 0, 0);
        memcpy(out + i * k, z, (size_t)b * k * sizeof *out);
        kp_cnn_activate(&m->pb, out + i * k, b);
    }
    free(x);
    free(tmp);
    return 0;
}

/* ---- settings ---- */

static int read_settings(const kp_params *p, kp_cnn_settings *s, char *err, size_t errlen)
{
    *s = (kp_cnn_settings){0};
    if (kp_params_get_list(p, "arch", &s->blocks, &s->n_blocks) < 0 || s->n_blocks == 0) {
        s->blocks = default_arch;
        s->n_blocks = (int)(sizeof default_arch / sizeof *default_arch);
    }
    if (s->n_blocks > KP_CNN_MAX_BLOCKS)
        return kp_errf(err, errlen, KP_ERR_CONFIG, "arch: more than %d blocks", KP_CNN_MAX_BLOCKS);
    int rc = kp_nn_arch_check(s->blocks, s->n_blocks, "arch", err, errlen);
    if (rc < 0 || (rc = kp_augment_from_params(p, "augment", "", "params", &s->aug, err,
                                               errlen)) < 0)
        return rc;
    s->epochs = (int)kp_params_int(p, "epochs", 10);
    s->batch = (int)kp_params_int(p, "batch", 128);
    s->patience = (int)kp_params_int(p, "patience", 0);
    return kp_optim_from_params(p, &s->optim, &s->sched, err, errlen);
}

/* At config load: the arch blocks and the augment list, named by their place. */
static int cnn_check(const kp_params *p, const char *file, const char *where, char *err,
                     size_t errlen)
{
    const char *const *blocks;
    int n = 0, line = 0, col = 0;
    kp_augment aug;
    char at[1024], msg[KP_ERRLEN];
    if (kp_params_get_list(p, "arch", &blocks, &n) == 0 && n > 0) {
        kp_params_where(p, "arch", &line, &col);
        snprintf(at, sizeof at, "%s.arch", where);
        if (n > KP_CNN_MAX_BLOCKS)
            return kp_errf(err, errlen, KP_ERR_CONFIG, "%s:%d:%d: %s: more than %d blocks",
                           file, line, col, at, KP_CNN_MAX_BLOCKS);
        if (kp_nn_arch_check(blocks, n, at, msg, sizeof msg) < 0)
            return kp_errf(err, errlen, KP_ERR_CONFIG, "%s:%d:%d: %s", file, line, col, msg);
    }
    return kp_augment_from_params(p, "augment", file, where, &aug, err, errlen);
}

/* ---- the model ops ---- */

/* A model for X's images and pb, with the settings' arch (copied). */
static int cnn_new(const kp_cnn_settings *s, const kp_problem *pb, const kp_images *X,
                   kp_cnn **out, char *err, size_t errlen)
{
    if (X->channels > KP_CNN_MAX_CHANNELS)
        return kp_errf(err, errlen, KP_ERR_ARG, "images of %d channels (at most %d)",
                       X->channels, KP_CNN_MAX_CHANNELS);
    kp_cnn *m = calloc(1, sizeof *m);
    if (!m)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    m->pb = *pb;
    m->c = X->channels, m->h = X->height, m->w = X->width;
    m->max_batch = s->batch;
    for (int c = 0; c < m->c; c++) {
        m->mean[c] = X->mean ? X->mean[c] : 0.0f;
        m->std[c] = X->std && X->std[c] > 0 ? X->std[c] : 1.0f;
    }
    for (int i = 0; i < s->n_blocks; i++) {
        if (!(m->blocks[i] = strdup(s->blocks[i]))) {
            kp_cnn_free(m);
            return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
        }
        m->n_blocks = i + 1;
    }
    *out = m;
    return 0;
}

/* Loads the `init` weights, if any, into m's net. */
static int init_weights(kp_cnn *m, const kp_params *params, char *err, size_t errlen)
{
    const char *path = kp_params_str(params, "init", "");
    kp_st *st = NULL;
    if (!*path)
        return 0;
    int rc = kp_st_open(path, &st, err, errlen);
    if (rc == 0)
        rc = kp_nn_load(m->net, st, kp_params_str(params, "init_prefix", ""), err, errlen);
    kp_st_close(st);
    return rc;
}

static int cnn_fit_images(const kp_params *params, const kp_problem *pb, const kp_images *X,
                          const int64_t *rows, int64_t n, const float *y,
                          const kp_fit_opts *opts, void **model, char *err, size_t errlen)
{
    kp_cnn_settings s;
    kp_cnn *m = NULL;
    int old = openblas_get_num_threads();
    int rc = read_settings(params, &s, err, errlen);
    if (rc == 0)
        rc = kp_augment_check(&s.aug, X->channels, X->height, X->width, err, errlen);
    if (rc == 0 && n < 1)
        rc = kp_errf(err, errlen, KP_ERR_ARG, "no training images");
    if (rc == 0)
        rc = cnn_new(&s, pb, X, &m, err, errlen);
    openblas_set_num_threads(1);   /* see the top of this file */
    kp_blas_stop_threads();        /* idle OpenBLAS workers would spin on our cores */
    if (rc == 0)
        m->init = strcmp(kp_params_str(params, "weight_init", "pytorch"), "he") == 0
                      ? KP_NN_INIT_HE : KP_NN_INIT_TORCH;
    if (rc == 0)
        rc = kp_cnn_build(m, opts->threads, kp_rng_derive(opts->seed, 1), err, errlen);
    if (rc == 0)
        rc = init_weights(m, params, err, errlen);
    if (rc == 0)
        rc = kp_cnn_train(m, &s, X, rows, n, y, opts, err, errlen);
    openblas_set_num_threads(old);
    if (rc < 0) {
        kp_cnn_free(m);
        return rc;
    }
    *model = m;
    return 0;
}

static int cnn_predict_images(const void *model, const kp_images *X, const int64_t *rows,
                              int64_t n, int d4, float *out, int threads, char *err,
                              size_t errlen)
{
    const kp_cnn *m = model;
    (void)threads;     /* the net runs on the threads it was compiled for */
    if (X->channels != m->c || X->height != m->h || X->width != m->w)
        return kp_errf(err, errlen, KP_ERR_MISMATCH,
                       "images are %d x %d x %d (C x H x W) but the network takes %d x %d x %d",
                       X->channels, X->height, X->width, m->c, m->h, m->w);
    if (d4 < 0 || d4 >= KP_D4_COUNT || (kp_d4_swaps(d4) && m->h != m->w))
        return kp_errf(err, errlen, KP_ERR_ARG, "transform %d needs square images", d4);
    int old = openblas_get_num_threads();
    openblas_set_num_threads(1);
    int rc = kp_cnn_predict_rows(m, X, rows, n, d4, out, err, errlen);
    openblas_set_num_threads(old);
    return rc;
}

const kp_model_ops kp_model_cnn = {
    .name = "cnn",
    .doc = "convolutional network on images (conv/bn/relu/pool/residual blocks from YAML)",
    .params = cnn_params,
    .tasks = KP_TASK_BIT(KP_TASK_BINARY) | KP_TASK_BIT(KP_TASK_MULTICLASS) |
             KP_TASK_BIT(KP_TASK_REGRESSION) | KP_TASK_BIT(KP_TASK_MULTILABEL),
    .save = kp_cnn_save,
    .load = kp_cnn_load,
    .free = kp_cnn_free,
    .fit_images = cnn_fit_images,
    .predict_images = cnn_predict_images,
    .check = cnn_check,
};

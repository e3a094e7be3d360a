/* unet.c - a UNet for segmentation competitions (models/nn).
 *
 *   unet:
 *     type: train
 *     needs: [images, folds]
 *     model: unet
 *     params:
 *       depth: 3            # poolings
 *       base: 16            # channels of the first level, doubled per level
 *       up: transpose       # transpose | bilinear
 *       encoder: plain      # plain | residual
 *       loss: bce+dice      # weighted sums of bce (ce), dice, jaccard
 *       epochs: 10
 *       augment: [hflip, vflip]
 *
 * The net (unet_arch.c) maps a C x H x W image to mask_c logit maps: a
 * sigmoid for a binary mask, a softmax over classes otherwise.  Training
 * (unet_train.c) moves the mask with every geometric augmentation, draws a
 * random crop x crop window of each image when `crop` is set (large images:
 * memory stays bounded), scores the held-out images by Dice after every
 * epoch and keeps the best epoch.  Predictions (unet_tiles.c) cover each
 * image with the net's tiles, blended over `overlap` pixels, and map D4
 * transforms back, so TTA merges maps in the image's own orientation.
 * Encoder weights can start from any safetensors file by name mapping
 * (`init` + `init_map`), and stay frozen for `freeze_epochs`.  Checkpoints
 * hold PyTorch state_dict names (unet_io.c, docs/unet.md).
 */
#include <stdlib.h>
#include <string.h>
#include "../lib/blas.h"
#include "../lib/d4.h"
#include "../lib/err.h"
#include "unet_int.h"

void openblas_set_num_threads(int);
int openblas_get_num_threads(void);

static const kp_keyspec unet_params[] = {
    {"depth", KP_PT_INT, "3", NULL, 1, KP_UNET_MAX_DEPTH, "max poolings (levels below the top)"},
    {"base", KP_PT_INT, "16", NULL, 1, 1024, "channels of the first level; doubled per level"},
    {"up", KP_PT_ENUM, "transpose", "transpose|bilinear", 0, 0,
     "decoder upsampling: 2x2 transposed conv, or bilinear then a 3x3 conv"},
    {"encoder", KP_PT_ENUM, "plain", "plain|residual", 0, 0,
     "encoder blocks: two conv-bn-relu, or a ResNet basic block"},
    {"loss", KP_PT_STRING, "bce+dice", NULL, 0, 0,
     "weighted sum of bce (ce for several classes), dice and jaccard, e.g. 0.5*bce+dice"},
    {"epochs", KP_PT_INT, "10", NULL, 1, 100000, "passes over the training images"},
    {"batch", KP_PT_INT, "16", NULL, 1, 65536, "images (or crops) per mini-batch"},
    {"crop", KP_PT_INT, "0", NULL, 0, 65536,
     "train on random crop x crop windows and predict by tiles of that size (0: whole images)"},
    {"overlap", KP_PT_INT, "-1", NULL, -1, 65536,
     "pixels adjacent prediction tiles share, blended linearly (-1: a quarter of crop)"},
    KP_OPTIM_KEYS,
    {"weight_init", KP_PT_ENUM, "pytorch", "pytorch|he", 0, 0,
     "conv weights: PyTorch's defaults or He"},
    {"patience", KP_PT_INT, "0", NULL, 0, 100000,
     "stop after this many epochs without a better held-out Dice (0: run every epoch)"},
    {"init", KP_PT_PATH, "", NULL, 0, 0,
     "safetensors file to start from (a kpipe checkpoint or a converted PyTorch state_dict)"},
    {"init_map", KP_PT_LIST, "", NULL, 0, 0,
     "which tensors init gives, as NETPREFIX=FILEPREFIX, e.g. [enc.0=features.0]; "
     "empty: every tensor under the unet's own names"},
    {"freeze_epochs", KP_PT_INT, "0", NULL, 0, 100000,
     "epochs during which the encoder (enc.*) is not updated"},
    {"augment", KP_PT_LIST, "", NULL, 0, 0,
     "on-the-fly augmentation moving image and mask alike, e.g. [hflip, vflip, ssr 0.1 0.1 15]"},
    {NULL, 0, NULL, NULL, 0, 0, NULL},
};

/* ---- building ---- */

int kp_unet_build(kp_unet *m, int threads, uint64_t seed, char *err, size_t errlen)
{
    int rc = kp_nn_create(m->c, m->net_h, m->net_w, &m->net, err, errlen);
    if (rc == 0)
        kp_nn_set_init(m->net, m->init);
    if (rc == 0 && (rc = kp_unet_arch_build(m->net, &m->arch, m->pb.mask_c, err, errlen)) > 0)
        rc = 0;
    if (rc == 0)
        rc = kp_nn_compile(m->net, m->max_batch, threads, seed, err, errlen);
    return rc;
}

void kp_unet_free(void *model)
{
    kp_unet *m = model;
    if (!m)
        return;
    kp_nn_free(m->net);
    free(m);
}

/* ---- settings ---- */

static int read_settings(const kp_params *p, kp_unet_settings *s, char *err, size_t errlen)
{
    *s = (kp_unet_settings){0};
    int rc = kp_augment_from_params(p, "augment", "", "params", &s->aug, err, errlen);
    if (rc < 0 || (rc = kp_seg_loss_parse(kp_params_str(p, "loss", "bce+dice"), &s->loss, err,
                                          errlen)) < 0)
        return rc;
    s->epochs = (int)kp_params_int(p, "epochs", 10);
    s->batch = (int)kp_params_int(p, "batch", 16);
    s->patience = (int)kp_params_int(p, "patience", 0);
    s->crop = (int)kp_params_int(p, "crop", 0);
    s->freeze_epochs = (int)kp_params_int(p, "freeze_epochs", 0);
    return kp_optim_from_params(p, &s->optim, &s->sched, err, errlen);
}

/* At config load: the loss, the augment list and the init map, named by place. */
static int unet_check(const kp_params *p, const char *file, const char *where, char *err,
                      size_t errlen)
{
    kp_augment aug;
    kp_seg_loss loss;
    const char *const *map;
    int n = 0, line = 0, col = 0;
    char msg[KP_ERRLEN];
    if (kp_seg_loss_parse(kp_params_str(p, "loss", "bce+dice"), &loss, msg, sizeof msg) < 0) {
        kp_params_where(p, "loss", &line, &col);
        return kp_errf(err, errlen, KP_ERR_CONFIG, "%s:%d:%d: %s.loss: %s", file, line, col,
                       where, msg);
    }
    if (kp_params_get_list(p, "init_map", &map, &n) == 0)
        for (int i = 0; i < n; i++)
            if (!strchr(map[i], '=')) {
                kp_params_where(p, "init_map", &line, &col);
                return kp_errf(err, errlen, KP_ERR_CONFIG, "%s:%d:%d: %s.init_map[%d] '%s': not "
                               "NETPREFIX=FILEPREFIX", file, line, col, where, i, map[i]);
            }
    if (n > 0 && !*kp_params_str(p, "init", "")) {
        kp_params_where(p, "init_map", &line, &col);
        return kp_errf(err, errlen, KP_ERR_CONFIG, "%s:%d:%d: %s.init_map needs init (the file "
                       "the tensors come from)", file, line, col, where);
    }
    return kp_augment_from_params(p, "augment", file, where, &aug, err, errlen);
}

/* ---- fitting ---- */

/* A model for X's images and pb with the params' architecture. */
static int unet_new(const kp_params *p, const kp_unet_settings *s, const kp_problem *pb,
                    const kp_images *X, kp_unet **out, char *err, size_t errlen)
{
    int depth = (int)kp_params_int(p, "depth", 3), unit = 1 << depth, crop = s->crop;
    int overlap = (int)kp_params_int(p, "overlap", -1);
    if (pb->task != KP_TASK_SEGMENTATION || pb->mask_h != X->height || pb->mask_w != X->width)
        return kp_errf(err, errlen, KP_ERR_ARG, "unet needs a segmentation task whose masks are "
                       "the images' size (%dx%d)", X->width, X->height);
    if (X->channels > KP_UNET_MAX_CHANNELS)
        return kp_errf(err, errlen, KP_ERR_ARG, "images of %d channels (at most %d)",
                       X->channels, KP_UNET_MAX_CHANNELS);
    if (crop && (crop % unit || crop > X->height || crop > X->width))
        return kp_errf(err, errlen, KP_ERR_ARG, "crop %d must be a multiple of 2^depth = %d and "
                       "fit in the %dx%d images", crop, unit, X->width, X->height);
    if (!crop && (X->height % unit || X->width % unit))
        return kp_errf(err, errlen, KP_ERR_ARG, "%dx%d images do not halve %d times: resize them "
                       "(images stage `size`) to multiples of %d, or set crop", X->width,
                       X->height, depth, unit);
    kp_unet *m = calloc(1, sizeof *m);
    if (!m)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    m->pb = *pb;
    m->arch = (kp_unet_arch){depth, (int)kp_params_int(p, "base", 16),
                             strcmp(kp_params_str(p, "up", "transpose"), "bilinear") == 0,
                             strcmp(kp_params_str(p, "encoder", "plain"), "residual") == 0};
    m->c = X->channels, m->h = X->height, m->w = X->width;
    m->tile = crop;
    m->net_h = crop ? crop : m->h, m->net_w = crop ? crop : m->w;
    m->overlap = overlap < 0 ? crop / 4 : overlap < crop ? overlap : crop - 1;
    m->overlap = crop ? m->overlap : 0;
    m->max_batch = s->batch;
    m->init = strcmp(kp_params_str(p, "weight_init", "pytorch"), "he") == 0 ? KP_NN_INIT_HE
                                                                             : KP_NN_INIT_TORCH;
    for (int c = 0; c < m->c; c++) {
        m->mean[c] = X->mean ? X->mean[c] : 0.0f;
        m->std[c] = X->std && X->std[c] > 0 ? X->std[c] : 1.0f;
    }
    *out = m;
    return 0;
}

/* Loads the `init` weights, if any; fills frozen for freeze_epochs. */
static int init_weights(kp_unet *m, const kp_params *p, const kp_unet_settings *s,
                        uint8_t **frozen, FILE *log, char *err, size_t errlen)
{
    const char *path = kp_params_str(p, "init", ""), *const *map = NULL;
    kp_st *st = NULL;
    int n_map = 0, loaded = 0, rc = 0;
    size_t n_params;
    kp_nn_params(m->net, &n_params);
    if (s->freeze_epochs > 0) {
        if (!(*frozen = calloc(n_params ? n_params : 1, 1)))
            return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
        kp_nn_prefix_mask(m->net, "enc", *frozen);
    }
    if (!*path)
        return 0;
    if (kp_params_get_list(p, "init_map", &map, &n_map) < 0)
        n_map = 0;
    rc = kp_st_open(path, &st, err, errlen);
    if (rc == 0 && n_map > 0)
        rc = kp_nn_load_mapped(m->net, st, map, n_map, &loaded, err, errlen);
    else if (rc == 0)
        rc = kp_nn_load(m->net, st, NULL, err, errlen);
    if (rc == 0 && log)
        fprintf(log, "init: %s (%s)\n", path, n_map ? "mapped" : "every tensor");
    kp_st_close(st);
    return rc < 0 ? kp_err_prefix(err, errlen, rc, "init") : 0;
}

static int unet_fit_images(const kp_params *params, const kp_problem *pb, const kp_images *X,
                           const int64_t *rows, int64_t n, const float *y,
                           const kp_fit_opts *opts, void **model, char *err, size_t errlen)
{
    kp_unet_settings s;
    kp_unet *m = NULL;
    uint8_t *frozen = NULL;
    int old = openblas_get_num_threads();
    int rc = read_settings(params, &s, err, errlen);
    if (rc == 0)
        rc = unet_new(params, &s, pb, X, &m, err, errlen);
    if (rc == 0)
        rc = kp_augment_check(&s.aug, X->channels, m->net_h, m->net_w, err, errlen);
    openblas_set_num_threads(1);   /* the kernels parallelise themselves (kernels.h) */
    kp_blas_stop_threads();
    if (rc == 0)
        rc = kp_unet_build(m, opts->threads, kp_rng_derive(opts->seed, 1), err, errlen);
    if (rc == 0)
        rc = init_weights(m, params, &s, &frozen, opts->log, err, errlen);
    if (rc == 0)
        rc = kp_unet_train(m, &s, X, rows, n, y, frozen, opts, err, errlen);
    openblas_set_num_threads(old);
    free(frozen);
    if (rc < 0) {
        kp_unet_free(m);
        return rc;
    }
    *model = m;
    return 0;
}

static int unet_predict_images(const void *model, const kp_images *X, const int64_t *rows,
                               int64_t n, int d4, float *out, int threads, char *err,
                               size_t errlen)
{
    const kp_unet *m = model;
    (void)threads;     /* the net runs on the threads it was compiled for */
    if (X->channels != m->c || X->height != m->h || X->width != m->w)
        return kp_errf(err, errlen, KP_ERR_MISMATCH,
                       "images are %d x %d x %d (C x H x W) but the unet was trained on "
                       "%d x %d x %d",
                       X->channels, X->height, X->width, m->c, m->h, m->w);
    if (kp_d4_swaps(d4) && m->net_h != m->net_w)
        return kp_errf(err, errlen, KP_ERR_ARG, "transform %d needs square images or crop", d4);
    int old = openblas_get_num_threads();
    openblas_set_num_threads(1);
    int rc = kp_unet_predict_rows(m, X, rows, n, d4, out, err, errlen);
    openblas_set_num_threads(old);
    return rc;
}

const kp_model_ops kp_model_unet = {
    .name = "unet",
    .doc = "UNet segmentation network (depth, base width, transposed/bilinear up, "
           "residual encoder)",
    .params = unet_params,
    .tasks = KP_TASK_BIT(KP_TASK_SEGMENTATION),
    .save = kp_unet_save,
    .load = kp_unet_load,
    .free = kp_unet_free,
    .fit_images = unet_fit_images,
    .predict_images = unet_predict_images,
    .check = unet_check,
};

/* test_unet.c - the unet segmentation model (models/unet*.c): learning,
 * checkpoints under PyTorch's names, D4 predictions mapped back, tiled
 * prediction, encoder initialisation and freezing, errors, determinism. */
#include "kp_test.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/d4.h"
#include "../lib/err.h"
#include "../lib/rng.h"
#include "../models/metric.h"
#include "../models/unet_int.h"

extern const kp_model_ops kp_model_unet;

enum { SIDE = 16, HW = SIDE * SIDE, N_IMG = 32, N_TRAIN = 24 };

static const float pix_mean = 70, pix_std = 60;

/* ---- fixtures ---- */

/* n gray SIDE x SIDE images: noise in 0..99 with a bright square (4 to 7 a
 * side, values 170..249) at a random place; masks are the squares. */
static void square_images(uint8_t *img, float *mask, int n, uint64_t seed)
{
    kp_rng rng;
    kp_rng_seed(&rng, seed);
    for (int i = 0; i < n; i++) {
        uint8_t *p = img + (size_t)i * HW;
        float *m = mask + (size_t)i * HW;
        int s = 4 + (int)kp_rng_below(&rng, 4);
        int y0 = (int)kp_rng_below(&rng, SIDE - s + 1), x0 = (int)kp_rng_below(&rng, SIDE - s + 1);
        for (int j = 0; j < HW; j++) {
            int y = j / SIDE, x = j % SIDE, in = y >= y0 && y < y0 + s && x >= x0 && x < x0 + s;
            p[j] = (uint8_t)(in ? 170 + kp_rng_below(&rng, 80) : kp_rng_below(&rng, 100));
            m[j] = (float)in;
        }
    }
}

/* The images and masks every test starts from. */
typedef struct data {
    uint8_t img[N_IMG * HW];
    float mask[N_IMG * HW];
    int64_t rows[N_IMG];
    kp_images X;
} data;

static data *data_new(uint64_t seed)
{
    data *d = calloc(1, sizeof *d);
    assert_non_null(d);
    square_images(d->img, d->mask, N_IMG, seed);
    for (int i = 0; i < N_IMG; i++)
        d->rows[i] = i;
    d->X = (kp_images){d->img, N_IMG, SIDE, SIDE, 1, 8, &pix_mean, &pix_std};
    return d;
}

static const kp_problem seg_pb = {KP_TASK_SEGMENTATION, HW, 1, SIDE, SIDE};

/* Validated params: a depth-2, base-4 unet, batch 8, lr 0.01, 1 epoch, then
 * the NULL-terminated key/value pairs of kv; caller frees. */
static kp_params *unet_params(const char *const *kv)
{
    static const char *const base[] = {"depth", "2", "base", "4", "batch", "8", "lr", "0.01",
                                       "epochs", "1", NULL};
    char err[KP_ERRLEN];
    kp_params *p = kp_params_create();
    assert_non_null(p);
    for (int i = 0; base[i]; i += 2)
        assert_int_equal(kp_params_set(p, base[i], base[i + 1], 0, 0), 0);
    for (int i = 0; kv && kv[i]; i += 2)
        assert_int_equal(kp_params_set(p, kv[i], kv[i + 1], 0, 0), 0);
    if (kp_params_validate(p, kp_model_unet.params, "t.yaml", "params", err, sizeof err) < 0)
        fail_msg("%s", err);
    return p;
}

/* Fits a unet on the first N_TRAIN images (opts may be NULL); caller frees. */
static kp_model *fit(const data *d, const char *const *kv, const kp_fit_opts *opts)
{
    char err[KP_ERRLEN];
    kp_params *p = unet_params(kv);
    kp_fit_opts o = opts ? *opts : (kp_fit_opts){.seed = 5, .threads = 2};
    kp_model *m = NULL;
    if (kp_model_fit_images(&kp_model_unet, p, &seg_pb, &d->X, d->rows, N_TRAIN, d->mask, &o,
                            &m, err, sizeof err) < 0)
        fail_msg("%s", err);
    kp_params_free(p);
    return m;
}

/* Fits at the ops level, for the tests that reach into the kp_unet; caller
 * frees with kp_unet_free. */
static kp_unet *fit_raw(const data *d, const char *const *kv)
{
    char err[KP_ERRLEN];
    kp_params *p = unet_params(kv);
    kp_fit_opts o = {.seed = 9, .threads = 2};
    void *m = NULL;
    if (kp_model_unet.fit_images(p, &seg_pb, &d->X, d->rows, N_TRAIN, d->mask, &o, &m, err,
                                 sizeof err) < 0)
        fail_msg("%s", err);
    kp_params_free(p);
    return m;
}

static const int64_t all_rows[N_IMG] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10,
                                         11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21,
                                         22, 23, 24, 25, 26, 27, 28, 29, 30, 31};

/* Predicts every image of X (N_IMG of them) under transform t into out. */
static void predict(const kp_model *m, const kp_images *X, int t, float *out)
{
    char err[KP_ERRLEN];
    if (kp_model_predict_images(m, X, all_rows, N_IMG, t, out, 2, err, sizeof err) < 0)
        fail_msg("%s", err);
}

/* Saves m to DIR/name; returns the heap path. */
static char *save(const kp_model *m, const char *dir, const char *name)
{
    char err[KP_ERRLEN], *path = kp_test_join(dir, name);
    if (kp_model_save(m, path, err, sizeof err) < 0)
        fail_msg("%s", err);
    return path;
}

/* Kaggle's Dice of the held-out images' maps (pred, N_IMG - N_TRAIN of them). */
static double held_out_dice(const data *d, const float *pred)
{
    char err[KP_ERRLEN];
    double dice = 0;
    kp_metric_opts mo = kp_metric_defaults();
    const kp_metric_ops *metric = kp_metric_find("dice");
    assert_non_null(metric);
    if (metric->score(&seg_pb, d->mask + (size_t)N_TRAIN * HW, pred + (size_t)N_TRAIN * HW,
                      N_IMG - N_TRAIN, &mo, &dice, err, sizeof err) < 0)
        fail_msg("%s", err);
    return dice;
}

/* ---- learning and checkpoints ---- */

static void test_unet_learns_squares_and_reloads_to_the_same_bits(void **state)
{
    (void)state;
    data *d = data_new(1);
    static float pred[N_IMG * HW], back_pred[N_IMG * HW], ones[N_IMG * HW];
    char *dir = kp_test_tmpdir(), err[KP_ERRLEN];
    kp_model *m = fit(d, (const char *const[]){"epochs", "12", NULL}, NULL), *back = NULL;
    predict(m, &d->X, 0, pred);
    for (size_t i = 0; i < N_IMG * HW; i++)
        ones[i] = 1;
    double trivial = held_out_dice(d, ones), dice = held_out_dice(d, pred);
    assert_true(trivial < 0.35);
    if (dice < 0.8)
        fail_msg("held-out Dice %.4f (predicting every pixel scores %.4f)", dice, trivial);
    char *path = save(m, dir, "unet.safetensors");
    if (kp_model_load(path, &kp_model_unet, &back, err, sizeof err) < 0)
        fail_msg("%s", err);
    assert_int_equal(kp_model_problem(back)->mask_h, SIDE);
    assert_int_equal(kp_model_problem(back)->n_out, HW);
    predict(back, &d->X, 0, back_pred);
    assert_memory_equal(pred, back_pred, sizeof pred);
    kp_model_free(m);
    kp_model_free(back);
    free(path);
    free(dir);
    free(d);
}

/* One 2 x 2 image of 3 channels, HWC, comes out normalised per channel and
 * CHW, from 8-bit and from 16-bit samples alike. */
static void test_unet_load_image_normalises_hwc_samples_into_chw(void **state)
{
    (void)state;
    static const uint8_t s8[2 * 12] = {0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
                                       10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120};
    static const uint16_t s16[2 * 12] = {0,    0,    0,    0,    0,    0,
                                         0,    0,    0,    0,    0,    0,
                                         1000, 2000, 3000, 4000, 5000, 6000,
                                         7000, 8000, 9000, 10000, 11000, 12000};
    static const float mean[3] = {40, 50, 60}, sd[3] = {10, 20, 40};
    static const float want[12] = {-3, 0, 3, 6, -1.5f, 0, 1.5f, 3, -0.75f, 0, 0.75f, 1.5f};
    kp_unet m = {.c = 3, .h = 2, .w = 2, .mean = {40, 50, 60}, .std = {10, 20, 40}};
    kp_images X8 = {s8, 2, 2, 2, 3, 8, mean, sd}, X16 = {s16, 2, 2, 2, 3, 16, mean, sd};
    float x[12];
    kp_unet_load_image(&m, &X8, 1, x);
    for (int i = 0; i < 12; i++)
        assert_float_equal(x[i], want[i], 1e-6);
    for (int c = 0; c < 3; c++)
        m.mean[c] *= 100, m.std[c] *= 100;
    kp_unet_load_image(&m, &X16, 1, x);
    for (int i = 0; i < 12; i++)
        assert_float_equal(x[i], want[i], 1e-6);
}

/* Returns 1 if the h x w box at (y0, x0), grown by a pixel, touches image
 * i's mask. */
static int touches_mask(const data *d, int i, int y0, int x0, int h, int w)
{
    for (int y = y0 - 1; y <= y0 + h; y++)
        for (int x = x0 - 1; x <= x0 + w; x++)
            if (y >= 0 && y < SIDE && x >= 0 && x < SIDE && d->mask[i * HW + y * SIDE + x] > 0)
                return 1;
    return 0;
}

/* Turns d into three classes: the background mid-gray (60..139), the
 * squares class 1, and a dark bar (0..19, 3 x 7 or 7 x 3) apart from the
 * square class 2. */
static void add_bars(data *d, uint64_t seed)
{
    kp_rng rng;
    kp_rng_seed(&rng, seed);
    for (int i = 0; i < N_IMG * HW; i++)
        if (d->mask[i] == 0)
            d->img[i] = (uint8_t)(60 + d->img[i] * 4 / 5);
    for (int i = 0; i < N_IMG; i++) {
        int vertical = (int)kp_rng_below(&rng, 2), h = vertical ? 7 : 3, w = vertical ? 3 : 7;
        int y0, x0, tries = 0;
        do {
            y0 = (int)kp_rng_below(&rng, SIDE - h + 1);
            x0 = (int)kp_rng_below(&rng, SIDE - w + 1);
        } while (touches_mask(d, i, y0, x0, h, w) && ++tries < 50);
        for (int y = y0; tries < 50 && y < y0 + h; y++)
            for (int x = x0; x < x0 + w; x++) {
                d->img[i * HW + y * SIDE + x] = (uint8_t)kp_rng_below(&rng, 20);
                d->mask[i * HW + y * SIDE + x] = 2;
            }
    }
}

/* Three classes (add_bars): the softmax maps sum to one per pixel, the
 * argmax finds every class on held-out images, and validation (Dice over
 * classes 1 and 2) runs on them each epoch. */
static void test_unet_learns_several_classes_with_softmax_maps(void **state)
{
    (void)state;
    data *d = data_new(10);
    add_bars(d, 10);
    static float pred[N_IMG * 3 * HW];
    char err[KP_ERRLEN];
    kp_params *p = unet_params((const char *const[]){"loss", "ce+dice", "batch", "4", "epochs",
                                                     "15", NULL});
    kp_problem pb = {KP_TASK_SEGMENTATION, 3 * HW, 3, SIDE, SIDE};
    kp_fit_opts o = {.seed = 0, .threads = 2, .valid_rows = d->rows + N_TRAIN,
                     .n_valid = N_IMG - N_TRAIN, .y_valid = d->mask + N_TRAIN * HW};
    kp_model *m = NULL;
    if (kp_model_fit_images(&kp_model_unet, p, &pb, &d->X, d->rows, N_TRAIN, d->mask, &o, &m,
                            err, sizeof err) < 0)
        fail_msg("%s", err);
    predict(m, &d->X, 0, pred);
    int64_t right[3] = {0, 0, 0}, total[3] = {0, 0, 0};
    for (int i = N_TRAIN; i < N_IMG; i++)
        for (int q = 0; q < HW; q++) {
            const float *r = pred + (size_t)i * 3 * HW + q;
            int best = r[HW] > r[0] ? 1 : 0, cls = (int)d->mask[i * HW + q];
            best = r[2 * HW] > r[best * HW] ? 2 : best;
            assert_float_equal(r[0] + r[HW] + r[2 * HW], 1, 1e-5);
            right[cls] += best == cls, total[cls]++;
        }
    for (int c = 0; c < 3; c++)
        if (right[c] < total[c] * 8 / 10)
            fail_msg("class %d: %lld of %lld held-out pixels right", c, (long long)right[c],
                     (long long)total[c]);
    kp_model_free(m);
    kp_params_free(p);
    free(d);
}

/* ---- augmentation ---- */

/* Trained only on flipped, turned, shifted and rotated copies (the mask
 * moved with each), the unet still segments the plain held-out images; a
 * mask left in place would teach it squares where there are none. */
static void test_unet_augmentation_moves_the_mask_with_the_image(void **state)
{
    (void)state;
    data *d = data_new(12);
    static float pred[N_IMG * HW];
    kp_params *p = unet_params(NULL);
    const char *aug[] = {"hflip p=1", "vflip p=1", "rot90 p=1", "ssr 0.1 0.1 15 p=1"};
    assert_int_equal(kp_params_set_list(p, "augment", aug, 4, 0, 0), 0);
    assert_int_equal(kp_params_set(p, "epochs", "12", 0, 0), 0);
    char err[KP_ERRLEN];
    kp_fit_opts o = {.seed = 5, .threads = 2};
    kp_model *m = NULL;
    if (kp_model_fit_images(&kp_model_unet, p, &seg_pb, &d->X, d->rows, N_TRAIN, d->mask, &o,
                            &m, err, sizeof err) < 0)
        fail_msg("%s", err);
    predict(m, &d->X, 0, pred);
    double dice = held_out_dice(d, pred);
    if (dice < 0.8)
        fail_msg("held-out Dice %.4f after training on augmented copies", dice);
    kp_model_free(m);
    kp_params_free(p);
    free(d);
}

/* Class maps are labels, not intensities: a shift-scale-rotate that
 * interpolates between a class-2 bar and the background must not invent
 * class 1 on the bar's rim.  Trained with ssr on three classes of which
 * only 0 and 2 ever occur, the unet gives class 1 a low probability
 * everywhere (about 0.05 at most; 0.39 on the rims when the class index was
 * interpolated and rounded). */
static void test_unet_augmentation_keeps_class_maps_to_the_classes_present(void **state)
{
    (void)state;
    data *d = data_new(13);
    add_bars(d, 13);
    for (int i = 0; i < N_IMG * HW; i++)
        if (d->mask[i] == 1) {      /* the squares become background */
            d->mask[i] = 0;
            d->img[i] = 100;
        }
    static float pred[N_IMG * 3 * HW];
    kp_params *p = unet_params((const char *const[]){"loss", "ce", "batch", "4", "epochs", "15",
                                                     NULL});
    const char *aug[] = {"ssr 0.1 0.2 30 p=1"};
    assert_int_equal(kp_params_set_list(p, "augment", aug, 1, 0, 0), 0);
    kp_problem pb = {KP_TASK_SEGMENTATION, 3 * HW, 3, SIDE, SIDE};
    kp_fit_opts o = {.seed = 2, .threads = 2};
    char err[KP_ERRLEN];
    kp_model *m = NULL;
    if (kp_model_fit_images(&kp_model_unet, p, &pb, &d->X, d->rows, N_TRAIN, d->mask, &o, &m,
                            err, sizeof err) < 0)
        fail_msg("%s", err);
    predict(m, &d->X, 0, pred);
    float top = 0;
    for (int i = 0; i < N_IMG; i++)
        for (int q = 0; q < HW; q++)
            top = fmaxf(top, pred[(size_t)i * 3 * HW + HW + q]);
    if (top > 0.15f)
        fail_msg("class 1, which no training mask holds, gets probability %.3f", top);
    kp_model_free(m);
    kp_params_free(p);
    free(d);
}

/* ---- PyTorch names ---- */

typedef struct tensor_case {
    const char *name;
    int ndim;
    int64_t shape[4];
} tensor_case;

/* bench/seg/torch_unet.py's build_net(depth=2, base=4, up="transpose")
 * .state_dict(), printed by PyTorch 1.13. */
static const tensor_case torch_transpose[] = {
    {"enc.0.0.weight", 4, {4, 1, 3, 3}}, {"enc.0.1.weight", 1, {4}}, {"enc.0.1.bias", 1, {4}},
    {"enc.0.1.running_mean", 1, {4}}, {"enc.0.1.running_var", 1, {4}},
    {"enc.0.1.num_batches_tracked", 0, {0}}, {"enc.0.3.weight", 4, {4, 4, 3, 3}},
    {"enc.0.4.weight", 1, {4}}, {"enc.0.4.bias", 1, {4}}, {"enc.0.4.running_mean", 1, {4}},
    {"enc.0.4.running_var", 1, {4}}, {"enc.0.4.num_batches_tracked", 0, {0}},
    {"enc.1.0.weight", 4, {8, 4, 3, 3}}, {"enc.1.1.weight", 1, {8}}, {"enc.1.1.bias", 1, {8}},
    {"enc.1.1.running_mean", 1, {8}}, {"enc.1.1.running_var", 1, {8}},
    {"enc.1.1.num_batches_tracked", 0, {0}}, {"enc.1.3.weight", 4, {8, 8, 3, 3}},
    {"enc.1.4.weight", 1, {8}}, {"enc.1.4.bias", 1, {8}}, {"enc.1.4.running_mean", 1, {8}},
    {"enc.1.4.running_var", 1, {8}}, {"enc.1.4.num_batches_tracked", 0, {0}},
    {"enc.2.0.weight", 4, {16, 8, 3, 3}}, {"enc.2.1.weight", 1, {16}},
    {"enc.2.1.bias", 1, {16}}, {"enc.2.1.running_mean", 1, {16}},
    {"enc.2.1.running_var", 1, {16}}, {"enc.2.1.num_batches_tracked", 0, {0}},
    {"enc.2.3.weight", 4, {16, 16, 3, 3}}, {"enc.2.4.weight", 1, {16}},
    {"enc.2.4.bias", 1, {16}}, {"enc.2.4.running_mean", 1, {16}},
    {"enc.2.4.running_var", 1, {16}}, {"enc.2.4.num_batches_tracked", 0, {0}},
    {"up.0.weight", 4, {16, 8, 2, 2}}, {"up.0.bias", 1, {8}},
    {"up.1.weight", 4, {8, 4, 2, 2}}, {"up.1.bias", 1, {4}},
    {"dec.0.0.weight", 4, {8, 16, 3, 3}}, {"dec.0.1.weight", 1, {8}}, {"dec.0.1.bias", 1, {8}},
    {"dec.0.1.running_mean", 1, {8}}, {"dec.0.1.running_var", 1, {8}},
    {"dec.0.1.num_batches_tracked", 0, {0}}, {"dec.0.3.weight", 4, {8, 8, 3, 3}},
    {"dec.0.4.weight", 1, {8}}, {"dec.0.4.bias", 1, {8}}, {"dec.0.4.running_mean", 1, {8}},
    {"dec.0.4.running_var", 1, {8}}, {"dec.0.4.num_batches_tracked", 0, {0}},
    {"dec.1.0.weight", 4, {4, 8, 3, 3}}, {"dec.1.1.weight", 1, {4}}, {"dec.1.1.bias", 1, {4}},
    {"dec.1.1.running_mean", 1, {4}}, {"dec.1.1.running_var", 1, {4}},
    {"dec.1.1.num_batches_tracked", 0, {0}}, {"dec.1.3.weight", 4, {4, 4, 3, 3}},
    {"dec.1.4.weight", 1, {4}}, {"dec.1.4.bias", 1, {4}}, {"dec.1.4.running_mean", 1, {4}},
    {"dec.1.4.running_var", 1, {4}}, {"dec.1.4.num_batches_tracked", 0, {0}},
    {"head.weight", 4, {1, 4, 1, 1}}, {"head.bias", 1, {1}},
};

/* What up: bilinear changes (the same module with Sequential(Upsample, Conv2d)). */
static const tensor_case torch_bilinear[] = {
    {"up.0.1.weight", 4, {8, 16, 3, 3}}, {"up.0.1.bias", 1, {8}},
    {"up.1.1.weight", 4, {4, 8, 3, 3}}, {"up.1.1.bias", 1, {4}},
    {"dec.1.0.weight", 4, {4, 8, 3, 3}}, {"head.bias", 1, {1}},
};

/* What encoder: residual changes: torchvision-style BasicBlocks with a 1x1
 * conv + bn shortcut (every level changes the channel count here). */
static const tensor_case torch_residual[] = {
    {"enc.0.conv1.weight", 4, {4, 1, 3, 3}}, {"enc.0.bn1.running_var", 1, {4}},
    {"enc.0.conv2.weight", 4, {4, 4, 3, 3}}, {"enc.0.bn2.weight", 1, {4}},
    {"enc.0.down.0.weight", 4, {4, 1, 1, 1}}, {"enc.0.down.1.bias", 1, {4}},
    {"enc.1.conv1.weight", 4, {8, 4, 3, 3}}, {"enc.1.bn1.num_batches_tracked", 0, {0}},
    {"enc.1.conv2.weight", 4, {8, 8, 3, 3}}, {"enc.1.down.0.weight", 4, {8, 4, 1, 1}},
    {"enc.1.down.1.running_mean", 1, {8}}, {"enc.2.conv1.weight", 4, {16, 8, 3, 3}},
    {"enc.2.down.0.weight", 4, {16, 8, 1, 1}}, {"up.0.weight", 4, {16, 8, 2, 2}},
    {"dec.0.0.weight", 4, {8, 16, 3, 3}},
};

/* Checks that the checkpoint at path holds `count` tensors, among them every
 * one of want (F32, or an I64 scalar for num_batches_tracked), and none of absent. */
static void assert_tensors(const char *path, int count, const tensor_case *want, size_t n_want,
                           const char *const *absent)
{
    char err[KP_ERRLEN];
    kp_st *st = NULL;
    if (kp_st_open(path, &st, err, sizeof err) < 0)
        fail_msg("%s", err);
    for (size_t i = 0; i < n_want; i++) {
        const kp_tensor *t = kp_st_find(st, want[i].name);
        if (!t)
            fail_msg("no tensor %s", want[i].name);
        assert_int_equal(t->dtype, want[i].ndim == 0 ? KP_I64 : KP_F32);
        assert_int_equal(t->ndim, want[i].ndim);
        for (int k = 0; k < t->ndim; k++)
            if (t->shape[k] != want[i].shape[k])
                fail_msg("%s: dim %d is %lld, PyTorch has %lld", want[i].name, k,
                         (long long)t->shape[k], (long long)want[i].shape[k]);
    }
    for (int i = 0; absent && absent[i]; i++)
        if (kp_st_find(st, absent[i]))
            fail_msg("unexpected tensor %s", absent[i]);
    assert_int_equal(kp_st_count(st), count);
    kp_st_close(st);
}

static void test_unet_tensors_carry_the_torch_modules_names_and_shapes(void **state)
{
    (void)state;
    data *d = data_new(2);
    char *dir = kp_test_tmpdir();
    kp_model *plain = fit(d, NULL, NULL);
    kp_model *bil = fit(d, (const char *const[]){"up", "bilinear", NULL}, NULL);
    kp_model *res = fit(d, (const char *const[]){"encoder", "residual", NULL}, NULL);
    char *p0 = save(plain, dir, "plain.safetensors"), *p1 = save(bil, dir, "bil.safetensors");
    char *p2 = save(res, dir, "res.safetensors");
    size_t n_torch = sizeof torch_transpose / sizeof torch_transpose[0];
    assert_tensors(p0, (int)n_torch, torch_transpose, n_torch, NULL);
    assert_tensors(p1, (int)n_torch, torch_bilinear,
                   sizeof torch_bilinear / sizeof torch_bilinear[0],
                   (const char *const[]){"up.0.weight", "up.0.bias", "up.1.weight", NULL});
    /* 3 levels x (2 conv + 2 bn + shortcut conv + bn) x their tensors, + up, dec, head */
    assert_tensors(p2, 3 * (3 * 1 + 3 * 5) + 4 + 24 + 2, torch_residual,
                   sizeof torch_residual / sizeof torch_residual[0],
                   (const char *const[]){"enc.1.0.weight", "enc.0.1.weight", NULL});
    kp_model_free(plain);
    kp_model_free(bil);
    kp_model_free(res);
    free(p0);
    free(p1);
    free(p2);
    free(dir);
    free(d);
}

/* ---- D4 transforms map back ---- */

/* Writes transform t of every image of d into img (square images, 1 channel). */
static void transform_images(const data *d, int t, uint8_t *img)
{
    float a[HW], b[HW];
    for (int i = 0; i < N_IMG; i++) {
        for (int j = 0; j < HW; j++)
            a[j] = d->img[(size_t)i * HW + j];
        kp_d4_apply(a, 1, SIDE, SIDE, t, b);
        for (int j = 0; j < HW; j++)
            img[(size_t)i * HW + j] = (uint8_t)b[j];
    }
}

/* Predicting transform t of the images with d4 = inverse(t) runs the net on
 * the images themselves and returns the maps in the transformed images'
 * orientation: t of the plain prediction, bit for bit.  (For t = 4, the
 * hflip: predict(hflip X, 4) = hflip(predict(X, 0)).)  The plain maps are
 * not symmetric, so a map left unmapped, or mapped by t instead of its
 * inverse (t = 1, 3), fails. */
static void test_unet_d4_predictions_come_back_in_the_images_orientation(void **state)
{
    (void)state;
    data *d = data_new(3);
    static uint8_t timg[N_IMG * HW];
    static float plain[N_IMG * HW], got[N_IMG * HW], want[N_IMG * HW];
    kp_model *m = fit(d, (const char *const[]){"epochs", "2", NULL}, NULL);
    predict(m, &d->X, 0, plain);
    for (int t = 1; t < KP_D4_COUNT; t++) {
        transform_images(d, t, timg);
        kp_images Xt = d->X;
        Xt.data = timg;
        predict(m, &Xt, kp_d4_inverse(t), got);
        for (int i = 0; i < N_IMG; i++)
            kp_d4_apply(plain + (size_t)i * HW, 1, SIDE, SIDE, t, want + (size_t)i * HW);
        if (memcmp(got, want, sizeof got) != 0)
            fail_msg("transform %d: the map is not in the transformed image's orientation", t);
        assert_true(memcmp(want, plain, sizeof want) != 0);
    }
    kp_model_free(m);
    free(d);
}

/* ---- tiles ---- */

/* Cuts image i's T x T sub-image at (y0, x0) into out. */
static void cut(const data *d, int i, int y0, int x0, int T, uint8_t *out)
{
    for (int y = 0; y < T; y++)
        memcpy(out + (size_t)y * T, d->img + (size_t)i * HW + (size_t)(y0 + y) * SIDE + x0,
               (size_t)T);
}

/* Predicts image i's tiles (offsets off[0..k) on both axes, row-major) as
 * whole T x T images with the same net, one forward per m->max_batch of
 * them as the tiler batches them; out: k * k maps of T * T. */
static void predict_tiles(const kp_unet *m, const data *d, int i, const int *off, int k,
                          float *out)
{
    int T = m->net_h;
    char err[KP_ERRLEN];
    uint8_t sub[16 * 8 * 8];
    int64_t rows[16];
    assert_true(T == 8 && k * k <= 16);
    for (int a = 0; a < k; a++)
        for (int b = 0; b < k; b++) {
            cut(d, i, off[a], off[b], T, sub + (size_t)(a * k + b) * T * T);
            rows[a * k + b] = a * k + b;
        }
    kp_unet whole = *m;             /* the same net, for T x T images predicted whole */
    whole.h = whole.w = T;
    whole.tile = whole.overlap = 0;
    whole.pb.mask_h = whole.pb.mask_w = T;
    whole.pb.n_out = T * T;
    kp_images X = {sub, k * k, T, T, 1, 8, &pix_mean, &pix_std};
    if (kp_unet_predict_rows(&whole, &X, rows, k * k, 0, out, err, sizeof err) < 0)
        fail_msg("%s", err);
}

/* Trained on 8 x 8 crops, the unet predicts whole 16 x 16 maps; without
 * overlap each pixel's probability is, bit for bit, that of the one tile
 * (at 0 or 8 on each axis) that covers it. */
static void test_unet_tiles_without_overlap_give_each_pixel_its_tiles_probability(void **state)
{
    (void)state;
    data *d = data_new(4);
    static float pred[N_IMG * HW];
    float tiles[4 * 64];
    const int off[2] = {0, 8};
    char err[KP_ERRLEN];
    kp_unet *m = fit_raw(d, (const char *const[]){"crop", "8", "overlap", "0", "batch", "4",
                                                  "epochs", "2", NULL});
    assert_int_equal(m->net_h, 8);
    assert_int_equal(kp_model_unet.predict_images(m, &d->X, d->rows, N_IMG, 0, pred, 2, err,
                                                  sizeof err), 0);
    for (int i = 0; i < N_IMG; i++) {
        predict_tiles(m, d, i, off, 2, tiles);
        for (int p = 0; p < HW; p++) {
            int y = p / SIDE, x = p % SIDE, tile = (y / 8) * 2 + x / 8;
            float want = tiles[tile * 64 + (y % 8) * 8 + x % 8], got = pred[i * HW + p];
            assert_true(isfinite(got) && got >= 0 && got <= 1);
            if (memcmp(&got, &want, sizeof got) != 0)
                fail_msg("image %d pixel (%d, %d): %.9g, its tile says %.9g", i, y, x, got, want);
        }
    }
    kp_unet_free(m);
    free(d);
}

/* The documented window of a tile of t at offset p along an axis of n with
 * overlap o, at position i: a linear ramp over o pixels at inner edges. */
static double window(int i, int t, int p, int n, int o)
{
    double w = 1;
    if (p > 0 && i < o)
        w = (i + 0.5) / o;
    if (p + t < n && t - 1 - i < o)
        w = fmin(w, (t - i - 0.5) / o);
    return w;
}

/* With overlap 4 the 8 x 8 tiles sit at 0, 4, 8 on each axis: every pixel's
 * probability is the window-weighted mean of the tiles covering it (their
 * own predictions, made whole), and the corner 4 x 4 blocks, covered by one
 * tile only, are that tile's bit for bit. */
static void test_unet_blended_tiles_are_the_windowed_mean_of_the_covering_tiles(void **state)
{
    (void)state;
    data *d = data_new(5);
    static float pred[N_IMG * HW];
    float tiles[9 * 64];
    const int off[3] = {0, 4, 8};
    char err[KP_ERRLEN];
    kp_unet *m = fit_raw(d, (const char *const[]){"crop", "8", "overlap", "4", "batch", "4",
                                                  "epochs", "2", NULL});
    assert_int_equal(m->overlap, 4);
    assert_int_equal(kp_model_unet.predict_images(m, &d->X, d->rows, N_IMG, 0, pred, 2, err,
                                                  sizeof err), 0);
    int disagree = 0;
    for (int i = 0; i < N_IMG; i++) {
        predict_tiles(m, d, i, off, 3, tiles);
        for (int p = 0; p < HW; p++) {
            int y = p / SIDE, x = p % SIDE, covering = 0;
            double sum = 0, wsum = 0, lo = 1, hi = 0;
            float got = pred[i * HW + p];
            for (int t = 0; t < 9; t++) {
                int ty = off[t / 3], tx = off[t % 3];
                if (y < ty || y >= ty + 8 || x < tx || x >= tx + 8)
                    continue;
                double v = tiles[t * 64 + (y - ty) * 8 + x - tx];
                double w = window(y - ty, 8, ty, SIDE, 4) * window(x - tx, 8, tx, SIDE, 4);
                sum += w * v, wsum += w, covering++;
                lo = fmin(lo, v), hi = fmax(hi, v);
            }
            if (fabs(got - sum / wsum) > 1e-6)
                fail_msg("image %d pixel (%d, %d): %.9g, the blend of its %d tiles is %.9g", i,
                         y, x, got, covering, sum / wsum);
            disagree += hi - lo > 1e-3;
            if (covering == 1)
                assert_float_equal(got, lo, 0);
        }
    }
    assert_true(disagree > N_IMG);    /* the tiles differ, so the weights matter */
    kp_unet_free(m);
    free(d);
}

/* ---- init + init_map, frozen encoder ---- */

/* Returns 1 if the named tensor of a and b has the same bytes. */
static int same_tensor(const kp_st *a, const kp_st *b, const char *name)
{
    const kp_tensor *x = kp_st_find(a, name), *y = kp_st_find(b, name);
    assert_non_null(x);
    assert_non_null(y);
    return x->nbytes == y->nbytes && memcmp(x->data, y->data, x->nbytes) == 0;
}

static int is_statistic(const char *name)
{
    return strstr(name, ".running_") || strstr(name, ".num_batches_tracked");
}

/* A transpose-up fit starting from a bilinear-up unet's file with init_map
 * [enc=enc] (the encoders match; a load of every tensor would not: up.*
 * differ) and the encoder frozen for all its epochs ends with that file's
 * encoder weights bit for bit (batch norm running statistics still follow
 * the data, as in PyTorch with requires_grad off), while the decoder trained:
 * it is neither the file's nor where the same fit stood after one epoch. */
static void test_unet_init_map_loads_the_encoder_and_freeze_keeps_it(void **state)
{
    (void)state;
    data *d = data_new(6);
    char *dir = kp_test_tmpdir(), err[KP_ERRLEN];
    kp_model *src = fit(d, (const char *const[]){"up", "bilinear", "epochs", "2", NULL}, NULL);
    char *src_path = save(src, dir, "src.safetensors");
    kp_fit_opts o = {.seed = 77, .threads = 2};
    kp_model *m = fit(d, (const char *const[]){"init", src_path, "init_map", "enc=enc",
                                               "epochs", "2", "freeze_epochs", "2", NULL}, &o);
    kp_model *one = fit(d, (const char *const[]){"init", src_path, "init_map", "enc=enc",
                                                 "epochs", "1", "freeze_epochs", "1", NULL}, &o);
    char *path = save(m, dir, "tuned.safetensors"), *path1 = save(one, dir, "one.safetensors");
    kp_st *a = NULL, *b = NULL, *b1 = NULL;
    if (kp_st_open(src_path, &a, err, sizeof err) < 0 ||
        kp_st_open(path, &b, err, sizeof err) < 0 || kp_st_open(path1, &b1, err, sizeof err) < 0)
        fail_msg("%s", err);
    int enc = 0, other = 0;
    for (int i = 0; i < kp_st_count(a); i++) {
        const char *name = kp_st_at(a, i)->name;
        if (is_statistic(name) || strncmp(name, "up.", 3) == 0)
            continue;
        if (strncmp(name, "enc.", 4) == 0) {
            if (!same_tensor(a, b, name))
                fail_msg("frozen encoder tensor %s changed", name);
            enc++;
        } else {
            if (same_tensor(a, b, name) || same_tensor(b1, b, name))
                fail_msg("decoder tensor %s did not train", name);
            other++;
        }
    }
    assert_int_equal(enc, 3 * 2 * 3);   /* 3 levels x 2 x (conv weight, bn weight, bn bias) */
    assert_int_equal(other, 2 * 2 * 3 + 2);       /* dec.0, dec.1 and head */
    kp_st_close(a);
    kp_st_close(b);
    kp_st_close(b1);
    kp_model_free(src);
    kp_model_free(m);
    kp_model_free(one);
    free(src_path);
    free(path);
    free(path1);
    free(dir);
    free(d);
}

/* ---- errors ---- */

typedef struct fit_error_case {
    int side;                       /* image side */
    int mask_side;                  /* the problem's mask side */
    const char *kv[5];
    const char *message;
} fit_error_case;

static const fit_error_case fit_errors[] = {
    {12, 12, {"depth", "3", NULL},
     "unet: 12x12 images do not halve 3 times: resize them (images stage `size`) to multiples "
     "of 8, or set crop"},
    {16, 16, {"crop", "6", NULL},
     "unet: crop 6 must be a multiple of 2^depth = 4 and fit in the 16x16 images"},
    {16, 16, {"crop", "32", NULL},
     "unet: crop 32 must be a multiple of 2^depth = 4 and fit in the 16x16 images"},
    {16, 8, {NULL},
     "unet: unet needs a segmentation task whose masks are the images' size (16x16)"},
};

static void test_unet_fit_refuses_shapes_it_cannot_take_and_says_why(void **state)
{
    (void)state;
    data *d = data_new(7);
    for (size_t c = 0; c < sizeof fit_errors / sizeof fit_errors[0]; c++) {
        const fit_error_case *e = &fit_errors[c];
        kp_params *p = unet_params(e->kv);
        kp_problem pb = {KP_TASK_SEGMENTATION, e->mask_side * e->mask_side, 1, e->mask_side,
                         e->mask_side};
        kp_images X = {d->img, N_IMG, e->side, e->side, 1, 8, &pix_mean, &pix_std};
        kp_fit_opts o = {.seed = 1, .threads = 1};
        kp_model *m = NULL;
        char err[KP_ERRLEN] = "";
        assert_int_equal(kp_model_fit_images(&kp_model_unet, p, &pb, &X, d->rows, 4, d->mask,
                                             &o, &m, err, sizeof err), KP_ERR_ARG);
        assert_string_equal(err, e->message);
        assert_null(m);
        kp_params_free(p);
    }
    free(d);
}

/* An 8 x 16 unet refuses 16 x 16 images, and transforms that swap height
 * and width (there is no crop to tile the swapped image with); a flip it takes. */
static void test_unet_predict_refuses_other_shapes_and_swapping_transforms(void **state)
{
    (void)state;
    data *d = data_new(11);
    static float pred[N_IMG * HW];
    char err[KP_ERRLEN] = "";
    kp_params *p = unet_params(NULL);
    kp_problem pb = {KP_TASK_SEGMENTATION, HW / 2, 1, SIDE / 2, SIDE};
    kp_images wide = {d->img, 2 * N_IMG, SIDE / 2, SIDE, 1, 8, &pix_mean, &pix_std};
    kp_fit_opts o = {.seed = 1, .threads = 1};
    kp_model *m = NULL;
    if (kp_model_fit_images(&kp_model_unet, p, &pb, &wide, d->rows, 8, d->mask, &o, &m, err,
                            sizeof err) < 0)
        fail_msg("%s", err);
    assert_int_equal(kp_model_predict_images(m, &d->X, d->rows, 2, 0, pred, 1, err, sizeof err),
                     KP_ERR_MISMATCH);
    assert_string_equal(err, "unet: images are 1 x 16 x 16 (C x H x W) but the unet was "
                        "trained on 1 x 8 x 16");
    assert_int_equal(kp_model_predict_images(m, &wide, d->rows, 2, 1, pred, 1, err, sizeof err),
                     KP_ERR_ARG);
    assert_string_equal(err, "unet: transform 1 needs square images or crop");
    assert_int_equal(kp_model_predict_images(m, &wide, d->rows, 2, 4, pred, 1, err, sizeof err),
                     0);
    kp_model_free(m);
    kp_params_free(p);
    free(d);
}

/* Copies the checkpoint at from to to with metadata unet.arch set to arch
 * (NULL: left out); every other tensor and key as they were. */
static void rewrite_arch(const char *from, const char *to, const char *arch)
{
    static const char *const keys[] = {"kpipe.model", "kpipe.task", "kpipe.n_out",
                                       "kpipe.format", "kpipe.mask", "unet.input", "unet.tile",
                                       "unet.mean", "unet.std"};
    char err[KP_ERRLEN];
    kp_st *st = NULL;
    kp_stw *w = kp_stw_create();
    if (kp_st_open(from, &st, err, sizeof err) < 0)
        fail_msg("%s", err);
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        assert_non_null(kp_st_meta(st, keys[k]));
        assert_int_equal(kp_stw_meta(w, keys[k], kp_st_meta(st, keys[k])), 0);
    }
    if (arch)
        assert_int_equal(kp_stw_meta(w, "unet.arch", arch), 0);
    for (int i = 0; i < kp_st_count(st); i++) {
        const kp_tensor *t = kp_st_at(st, i);
        assert_int_equal(kp_stw_add(w, t->name, t->dtype, t->ndim, t->shape, t->data), 0);
    }
    assert_int_equal(kp_stw_write(w, to, err, sizeof err), 0);
    kp_stw_free(w);
    kp_st_close(st);
}

typedef struct arch_case {
    const char *arch;               /* unet.arch, or NULL for none */
    const char *tail;               /* the message after "PATH: " */
} arch_case;

static const arch_case bad_arch[] = {
    {"{\"depth\":2,\"base\":4,\"up\":\"transpose\",\"encoder\":\"plain\"}", NULL},
    {"{\"depth\":0,\"base\":4,\"up\":\"transpose\",\"encoder\":\"plain\"}",
     "unet.arch is not {depth 1..7, base, up, encoder}"},
    {"{\"depth\":2,\"base\":4,\"up\":\"nearest\",\"encoder\":\"plain\"}",
     "unet.arch is not {depth 1..7, base, up, encoder}"},
    {"{\"depth\":2,\"base\":4,\"encoder\":\"plain\"}",
     "unet.arch is not {depth 1..7, base, up, encoder}"},
    {"{\"depth\":2,\"base\":4,", "metadata unet.arch is not valid JSON"},
    {NULL, "metadata unet.arch is missing"},
};

/* The first case, the arch as saved, loads: the rewrite itself is sound. */
static void test_unet_load_names_the_file_and_key_of_a_corrupted_arch(void **state)
{
    (void)state;
    data *d = data_new(8);
    char *dir = kp_test_tmpdir();
    kp_model *m = fit(d, NULL, NULL);
    char *good = save(m, dir, "good.safetensors");
    for (size_t c = 0; c < sizeof bad_arch / sizeof bad_arch[0]; c++) {
        char name[32], err[KP_ERRLEN] = "", want[KP_ERRLEN];
        snprintf(name, sizeof name, "arch%zu.safetensors", c);
        char *path = kp_test_join(dir, name);
        rewrite_arch(good, path, bad_arch[c].arch);
        kp_model *back = NULL;
        int rc = kp_model_load(path, &kp_model_unet, &back, err, sizeof err);
        if (!bad_arch[c].tail) {
            if (rc < 0)
                fail_msg("%s", err);
            kp_model_free(back);
        } else {
            snprintf(want, sizeof want, "%s: %s", path, bad_arch[c].tail);
            assert_int_equal(rc, KP_ERR_FORMAT);
            assert_string_equal(err, want);
            assert_null(back);
        }
        free(path);
    }
    kp_model_free(m);
    free(good);
    free(dir);
    free(d);
}

/* Crops, augmentation, held-out validation and the best-epoch choice: the
 * same bits on one thread as on two. */
static void test_unet_fit_gives_the_same_bits_for_any_thread_count(void **state)
{
    (void)state;
    data *d = data_new(9);
    static float pred[2][N_IMG * HW];
    for (int t = 0; t < 2; t++) {
        kp_fit_opts o = {.seed = 3, .threads = t + 1, .valid_rows = d->rows + N_TRAIN,
                         .n_valid = N_IMG - N_TRAIN, .y_valid = d->mask + N_TRAIN * HW};
        kp_model *m = fit(d, (const char *const[]){"crop", "8", "augment", "hflip", "epochs",
                                                   "3", NULL}, &o);
        predict(m, &d->X, 0, pred[t]);
        kp_model_free(m);
    }
    assert_memory_equal(pred[0], pred[1], sizeof pred[0]);
    free(d);
}

/* ---- config checks ---- */

typedef struct check_case {
    const char *init;               /* the init param, or NULL */
    const char *key;
    const char *items[2];           /* a scalar (items[1] NULL) or a list */
    int n;                          /* 0: scalar */
    const char *message;
} check_case;

static const check_case checks[] = {
    {NULL, "loss", {"bce+dise", NULL}, 0,
     "c.yaml:7:13: stages.seg.params.loss: loss \"bce+dise\": unknown term \"dise\" (terms: "
     "bce, ce, dice, jaccard)"},
    {NULL, "loss", {"0.5 bce", NULL}, 0,
     "c.yaml:7:13: stages.seg.params.loss: loss \"0.5 bce\": expected '*' after the weight "
     "\"0.5\" at column 5"},
    {"/tmp/enc.safetensors", "init_map", {"enc=features", "enc.0"}, 2,
     "c.yaml:7:13: stages.seg.params.init_map[1] 'enc.0': not NETPREFIX=FILEPREFIX"},
    {NULL, "init_map", {"enc=enc", NULL}, 1,
     "c.yaml:7:13: stages.seg.params.init_map needs init (the file the tensors come from)"},
};

static void test_unet_check_names_the_config_place_of_a_bad_loss_or_init_map(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof checks / sizeof checks[0]; c++) {
        const check_case *k = &checks[c];
        kp_params *p = kp_params_create();
        char err[KP_ERRLEN] = "";
        if (k->init)
            assert_int_equal(kp_params_set(p, "init", k->init, 6, 13), 0);
        if (k->n)
            assert_int_equal(kp_params_set_list(p, k->key, k->items, k->n, 7, 13), 0);
        else
            assert_int_equal(kp_params_set(p, k->key, k->items[0], 7, 13), 0);
        assert_int_equal(kp_params_validate(p, kp_model_unet.params, "c.yaml",
                                            "stages.seg.params", err, sizeof err), 0);
        assert_int_equal(kp_model_unet.check(p, "c.yaml", "stages.seg.params", err, sizeof err),
                         KP_ERR_CONFIG);
        assert_string_equal(err, k->message);
        kp_params_free(p);
    }
    /* and the defaults pass */
    kp_params *p = unet_params(NULL);
    char err[KP_ERRLEN] = "";
    assert_int_equal(kp_model_unet.check(p, "c.yaml", "stages.seg.params", err, sizeof err), 0);
    kp_params_free(p);
}

KP_TEST_GROUP(unet)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_unet_learns_squares_and_reloads_to_the_same_bits),
        cmocka_unit_test(test_unet_learns_several_classes_with_softmax_maps),
        cmocka_unit_test(test_unet_augmentation_moves_the_mask_with_the_image),
        cmocka_unit_test(test_unet_augmentation_keeps_class_maps_to_the_classes_present),
        cmocka_unit_test(test_unet_load_image_normalises_hwc_samples_into_chw),
        cmocka_unit_test(test_unet_tensors_carry_the_torch_modules_names_and_shapes),
        cmocka_unit_test(test_unet_d4_predictions_come_back_in_the_images_orientation),
        cmocka_unit_test(test_unet_tiles_without_overlap_give_each_pixel_its_tiles_probability),
        cmocka_unit_test(test_unet_blended_tiles_are_the_windowed_mean_of_the_covering_tiles),
        cmocka_unit_test(test_unet_init_map_loads_the_encoder_and_freeze_keeps_it),
        cmocka_unit_test(test_unet_fit_refuses_shapes_it_cannot_take_and_says_why),
        cmocka_unit_test(test_unet_predict_refuses_other_shapes_and_swapping_transforms),
        cmocka_unit_test(test_unet_load_names_the_file_and_key_of_a_corrupted_arch),
        cmocka_unit_test(test_unet_fit_gives_the_same_bits_for_any_thread_count),
        cmocka_unit_test(test_unet_check_names_the_config_place_of_a_bad_loss_or_init_map),
    };
    return KP_RUN(unet, t);
}

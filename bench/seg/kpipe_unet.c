/* kpipe_unet.c - trains kpipe's unet on every train image of a segmentation
 * dataset (the `images` stage's dataset.safetensors of
 * configs/fmnist_segmentation.py's folder) and scores the test images
 * against their masks (test_masks.csv, column-major RLE): the kpipe side of
 * bench/seg/run.sh, timed as torch_unet.py times PyTorch (each epoch's
 * training loop; the model's log gives it).
 *
 * Build (after `make`):
 *   cc -std=c11 -D_GNU_SOURCE -O2 -g $(pkg-config --cflags openblas) bench/seg/kpipe_unet.c \
 *      pipeline/blas_lazy.c build/libkpipe.a \
 *      $(pkg-config --libs yaml-0.1 libpng libcurl jansson libxxhash zlib) \
 *      -lcsv -lm -lpthread -ldl -o build/kpipe_unet
 * Usage:
 *   kpipe_unet DATASET TEST_MASKS_CSV [--epochs N] [--threads T] [--seed S] [key=value ...]
 * (key=value: more unet params, e.g. base=16 loss=bce+dice batch=32)
 * Prints the model's per-epoch log, then one JSON line:
 *   {"epoch_seconds": [...], "seconds_per_epoch": S, "val_dice": D,
 *    "val_dice_hflip_tta": T, ...}
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "../../lib/blas.h"
#include "../../lib/csv.h"
#include "../../lib/err.h"
#include "../../lib/rle.h"
#include "../../models/metric.h"
#include "../../models/model.h"
#include "../../stages/artifact.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

/* Reads "epoch E/N loss L val_dice D S.Ss" lines of the log into secs. */
static int epoch_seconds(const char *log, double *secs, int max)
{
    int n = 0;
    for (const char *p = log; (p = strstr(p, "epoch ")) && n < max; p++) {
        const char *eol = strchr(p, '\n'), *s = strstr(p, " val_dice ");
        if (!eol || !s || s > eol)
            continue;
        s = strchr(s + 10, ' ');
        secs[n++] = s ? atof(s + 1) : 0;
    }
    return n;
}

/* Decodes the test masks (by id) into y (n_test x H x W floats). */
static int test_masks(const kp_dataset *d, const char *path, float *y)
{
    kp_csv *t = NULL;
    char err[KP_ERRLEN], id[256];
    int w = d->pb.mask_w, h = d->pb.mask_h;
    uint8_t *m = malloc((size_t)w * h);
    if (!m || kp_csv_read(path, &t, err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", m ? err : "out of memory");
        free(m);
        return -1;
    }
    int rc = 0;
    for (int64_t i = 0; i < d->n_test && rc == 0; i++) {
        size_t row = 0;
        kp_strings_get(&d->test_ids, i, id, sizeof id);
        while (row < kp_csv_rows(t) && strcmp(kp_csv_get(t, row, 0), id) != 0)
            row++;
        if (row == kp_csv_rows(t) ||
            kp_rle_decode(kp_csv_get(t, row, 1), w, h, KP_RLE_COLUMN_MAJOR, 1, m, err,
                          sizeof err) < 0) {
            fprintf(stderr, "%s: id %s: %s\n", path, id, row == kp_csv_rows(t) ? "missing" : err);
            rc = -1;
        }
        for (int p = 0; rc == 0 && p < w * h; p++)
            y[i * w * h + p] = m[p];
    }
    free(m);
    kp_csv_free(t);
    return rc;
}

static double dice(const kp_dataset *d, const float *y, const float *pred)
{
    const kp_metric_ops *m = kp_metric_find("dice");
    kp_metric_opts o = kp_metric_defaults();
    double v = -1;
    char err[KP_ERRLEN];
    if (m->score(&d->pb, y, pred, d->n_test, &o, &v, err, sizeof err) < 0)
        fprintf(stderr, "%s\n", err);
    return v;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: kpipe_unet DATASET TEST_MASKS_CSV [--epochs N] [--threads T] "
                "[--seed S] [key=value ...]\n");
        return 2;
    }
    char err[KP_ERRLEN];
    const char *epochs = "5";
    int threads = 2;
    uint64_t seed = 1;
    kp_params *p = kp_params_create();
    kp_params_set(p, "batch", "32", 0, 0);
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "--epochs") == 0 && i + 1 < argc)
            epochs = argv[++i];
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 10);
        else if (strchr(argv[i], '=')) {
            char *eq = strchr(argv[i], '=');
            *eq = '\0';
            kp_params_set(p, argv[i], eq + 1, 0, 0);
        }
    }
    kp_params_set(p, "epochs", epochs, 0, 0);
    kp_dataset *d = NULL;
    const kp_model_ops *ops = kp_model_find("unet");
    kp_model *m = NULL;
    char *logtext = NULL;
    size_t loglen = 0;
    FILE *log = open_memstream(&logtext, &loglen);
    if (kp_params_validate(p, ops->params, "bench", "params", err, sizeof err) < 0 ||
        kp_dataset_open(argv[1], &d, err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    int64_t n_rows = d->n_train > d->n_test ? d->n_train : d->n_test;
    int64_t *rows = malloc((size_t)n_rows * sizeof *rows);
    size_t n_pred = (size_t)d->n_test * d->pb.n_out;
    float *pred = malloc(n_pred * sizeof *pred), *flip = malloc(n_pred * sizeof *flip);
    float *y = malloc(n_pred * sizeof *y);
    for (int64_t i = 0; i < n_rows; i++)
        rows[i] = i;
    if (test_masks(d, argv[2], y) < 0)
        return 1;
    kp_fit_opts o = {.seed = seed, .threads = threads, .log = log};
    double t0 = now();
    int rc = kp_model_fit_images(ops, p, &d->pb, &d->images_train, rows, d->n_train, d->y, &o,
                                 &m, err, sizeof err);
    double fit = now() - t0;
    fclose(log);
    if (rc == 0) {
        t0 = now();
        rc = kp_model_predict_images(m, &d->images_test, rows, d->n_test, 0, pred, threads, err,
                                     sizeof err);
    }
    double predict = now() - t0;
    if (rc == 0)
        rc = kp_model_predict_images(m, &d->images_test, rows, d->n_test, 4, flip, threads, err,
                                     sizeof err);
    if (rc < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    double secs[1024], total = 0, plain = dice(d, y, pred), alone = dice(d, y, flip);
    for (size_t i = 0; i < n_pred; i++)
        flip[i] = 0.5f * (flip[i] + pred[i]);
    double tta = dice(d, y, flip);
    fputs(logtext, stdout);
    int n = epoch_seconds(logtext, secs, 1024);
    char blas[256];
    kp_blas_describe(blas, sizeof blas);
    printf("{\"epoch_seconds\": [");
    for (int i = 0; i < n; i++) {
        printf("%s%.3f", i ? ", " : "", secs[i]);
        total += secs[i];
    }
    printf("], \"seconds_per_epoch\": %.3f, \"images_per_s\": %.1f, \"val_dice\": %.4f, "
           "\"val_dice_hflip_alone\": %.4f, \"val_dice_hflip_tta\": %.4f, \"n_train\": %lld, "
           "\"n_valid\": %lld, \"threads\": %d, \"epochs\": %d, \"fit_seconds\": %.3f, "
           "\"predict_seconds\": %.3f, \"kpipe\": \"%s\"}\n",
           n ? total / n : 0, n ? (double)d->n_train * n / total : 0, plain, alone, tta,
           (long long)d->n_train, (long long)d->n_test, threads, n, fit, predict, blas);
    free(logtext);
    free(rows);
    free(pred);
    free(flip);
    free(y);
    kp_model_free(m);
    kp_dataset_close(d);
    kp_params_free(p);
    return 0;
}

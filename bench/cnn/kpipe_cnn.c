/* kpipe_cnn.c - trains kpipe's cnn model on every train image of an image
 * dataset (the `images` stage's dataset.safetensors) and scores the test
 * images against a labels CSV: the kpipe side of bench/cnn/run.sh, timed as
 * torch_cnn.py times PyTorch (the training loop of each epoch).
 *
 * Build (after `make`):
 *   cc -std=c11 -D_GNU_SOURCE -O2 -g $(pkg-config --cflags openblas) bench/cnn/kpipe_cnn.c \
 *      pipeline/blas_lazy.c build/libkpipe.a \
 *      $(pkg-config --libs yaml-0.1 libpng libcurl jansson libxxhash) \
 *      -lcsv -lm -lpthread -ldl -o build/kpipe_cnn
 * (pipeline/blas_lazy.c loads OpenBLAS as the kpipe binary does, with the
 * kernels chosen for the CPU: see lib/blas.h)
 * Usage:
 *   kpipe_cnn DATASET TEST_LABELS_CSV [--epochs N] [--threads T] [--tta hflip]
 *             [--arch "cbr 32,..."]
 *             [key=value ...]       (more cnn params, e.g. lr=0.001 augment=hflip)
 * Prints the model's per-epoch log, then one JSON line:
 *   {"epoch_seconds": [...], "test_accuracy": A, "n_train": N, "n_test": M, ...}
 * Test labels are matched to the dataset's test ids by id; the predicted class
 * is the argmax, written as the dataset's class name.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "../../lib/blas.h"
#include "../../lib/csv.h"
#include "../../lib/err.h"
#include "../../models/model.h"
#include "../../stages/artifact.h"

void openblas_set_num_threads(int);

#define MAX_BLOCKS 64

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

/* Splits "a,b,c" in place into items; returns the count. */
static int split(char *s, const char **items, int max)
{
    int n = 0;
    for (char *tok = strtok(s, ","); tok && n < max; tok = strtok(NULL, ","))
        items[n++] = tok;
    return n;
}

/* Reads "epoch E/N ... S.Ss" lines of the log into secs; returns the count. */
static int epoch_seconds(const char *log, double *secs, int max)
{
    int n = 0;
    for (const char *p = log; (p = strstr(p, "epoch ")) && n < max; p++) {
        const char *eol = strchr(p, '\n'), *s = strstr(p, " val_acc ");
        if (!eol || !s || s > eol || (strstr(p, " batch ") && strstr(p, " batch ") < eol))
            continue;
        s = strchr(s + 9, ' ');
        secs[n++] = s ? atof(s + 1) : 0;
    }
    return n;
}

/* Accuracy of argmax(pred) against the labels CSV (id,label), by id. */
static double accuracy(const kp_dataset *d, const float *pred, const char *labels_path)
{
    kp_csv *t = NULL;
    char err[KP_ERRLEN], id[256];
    if (kp_csv_read(labels_path, &t, err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    long hits = 0, k = d->pb.n_out;
    for (int64_t i = 0; i < d->n_test; i++) {
        kp_strings_get(&d->test_ids, i, id, sizeof id);
        const float *r = pred + i * k;
        int best = 0;
        for (int j = 1; j < k; j++)
            best = r[j] > r[best] ? j : best;
        for (size_t row = 0; row < kp_csv_rows(t); row++)
            if (strcmp(kp_csv_get(t, row, 0), id) == 0) {
                hits += strcmp(kp_csv_get(t, row, 1), d->classes[best]) == 0;
                break;
            }
    }
    kp_csv_free(t);
    return (double)hits / (double)d->n_test;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: kpipe_cnn DATASET TEST_LABELS_CSV [--epochs N] [--threads T] "
                "[--arch B,B,...] [key=value ...]\n");
        return 2;
    }
    char err[KP_ERRLEN], arch_buf[1024] = "cbr 32,cbr 32,maxpool,cbr 64,cbr 64,maxpool,dense 128,dropout 0.3";
    const char *epochs = "5", *blocks[MAX_BLOCKS];
    int threads = 2, tta_hflip = 0;
    kp_params *p = kp_params_create();
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "--epochs") == 0 && i + 1 < argc)
            epochs = argv[++i];
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--tta") == 0 && i + 1 < argc)
            tta_hflip = strcmp(argv[++i], "hflip") == 0;
        else if (strcmp(argv[i], "--arch") == 0 && i + 1 < argc)
            snprintf(arch_buf, sizeof arch_buf, "%s", argv[++i]);
        else if (strchr(argv[i], '=')) {
            char *eq = strchr(argv[i], '=');
            *eq = '\0';
            kp_params_set(p, argv[i], eq + 1, 0, 0);
        }
    }
    int n_blocks = split(arch_buf, blocks, MAX_BLOCKS);
    kp_params_set_list(p, "arch", blocks, n_blocks, 0, 0);
    kp_params_set(p, "epochs", epochs, 0, 0);
    kp_dataset *d = NULL;
    const kp_model_ops *ops = kp_model_find("cnn");
    kp_model *m = NULL;
    char *logtext = NULL;
    size_t loglen = 0;
    FILE *log = open_memstream(&logtext, &loglen);
    if (kp_params_validate(p, ops->params, "bench", "params", err, sizeof err) < 0 ||
        kp_dataset_open(argv[1], &d, err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    int64_t *rows = malloc((size_t)(d->n_train > d->n_test ? d->n_train : d->n_test) * sizeof *rows);
    size_t n_pred = (size_t)d->n_test * d->pb.n_out;
    float *pred = malloc(n_pred * sizeof *pred), *flip = malloc(n_pred * sizeof *flip);
    for (int64_t i = 0; i < d->n_train || i < d->n_test; i++)
        rows[i] = i;
    kp_fit_opts o = {.seed = 1, .threads = threads, .log = log};
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
    if (rc < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    double predict = now() - t0, secs[1024], total = 0, acc = accuracy(d, pred, argv[2]);
    double acc_flip = -1, acc_tta = -1;
    if (tta_hflip && (rc = kp_model_predict_images(m, &d->images_test, rows, d->n_test, 4, flip,
                                                   threads, err, sizeof err)) == 0) {
        acc_flip = accuracy(d, flip, argv[2]);
        for (size_t i = 0; i < n_pred; i++)
            flip[i] = 0.5f * (flip[i] + pred[i]);
        acc_tta = accuracy(d, flip, argv[2]);
    }
    fputs(logtext, stdout);
    int n = epoch_seconds(logtext, secs, 1024);
    char blas[256];
    kp_blas_describe(blas, sizeof blas);
    printf("{\"epoch_seconds\": [");
    for (int i = 0; i < n; i++) {
        printf("%s%.3f", i ? ", " : "", secs[i]);
        total += secs[i];
    }
    printf("], \"seconds_per_epoch\": %.3f, \"images_per_s\": %.1f, \"test_accuracy\": %.4f, "
           "\"n_train\": %lld, \"n_test\": %lld, \"threads\": %d, \"epochs\": %d, "
           "\"fit_seconds\": %.3f, \"predict_seconds\": %.3f, \"test_accuracy_hflip_alone\": %.4f, "
           "\"test_accuracy_hflip_mean\": %.4f, \"kpipe\": \"%s\"}\n",
           n ? total / n : 0, n ? (double)d->n_train * n / total : 0,
           acc, (long long)d->n_train, (long long)d->n_test, threads, n, fit, predict, acc_flip,
           acc_tta, blas);
    free(logtext);
    free(rows);
    free(pred);
    free(flip);
    kp_model_free(m);
    kp_dataset_close(d);
    kp_params_free(p);
    return 0;
}

/* cli_predict.c - `kpipe predict CHECKPOINT DATA [-o OUT]`: a saved model on a dataset. */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/afile.h"
#include "../lib/blas.h"
#include "../lib/csv.h"
#include "../lib/err.h"
#include "../lib/parallel.h"
#include "../models/model.h"
#include "../stages/artifact.h"

const char kp_help_predict[] =
    "usage: kpipe predict CHECKPOINT DATA [-o OUT] [--rows test|train]\n"
    "\n"
    "Loads CHECKPOINT, any model's checkpoint (a train stage writes one per fold:\n"
    "RUN_DIR/STAGE/model_part<P>.safetensors), and predicts the rows of DATA, a\n"
    "dataset written by a preprocess stage (RUN_DIR/STAGE/dataset.safetensors):\n"
    "its test rows, or its train rows with --rows train.  The same checkpoint on\n"
    "the same rows gives the training run's predictions bit for bit (part P's\n"
    "`test` tensor), whatever the thread count.\n"
    "\n"
    "OUT ending in .safetensors gets a tensor `pred` F32 [rows, outputs]; any\n"
    "other OUT (and stdout, without -o) gets CSV: the dataset's id column, then\n"
    "one column per output (`prediction`, or the class names), floats printed\n"
    "so that they read back to the same bits.  OUT is written atomically.\n"
    "\n"
    "options:\n"
    "  -o, --output OUT     where to write (default: stdout, as CSV)\n"
    "      --rows ROWS      test (default) or train\n"
    "  -h, --help           this help\n";

enum { OPT_ROWS = 1000 };

typedef struct predict_args {
    const char *out;
    int train_rows;
} predict_args;

static int on_predict_opt(int opt, const char *arg, void *data)
{
    predict_args *a = data;
    if (opt == 'o') {
        a->out = arg;
        return 0;
    }
    if (opt == OPT_ROWS && (strcmp(arg, "test") == 0 || strcmp(arg, "train") == 0)) {
        a->train_rows = strcmp(arg, "train") == 0;
        return 0;
    }
    if (opt == OPT_ROWS)
        return kp_cli_error(KP_EXIT_USAGE, "predict: --rows expects test or train, not '%s'", arg);
    return kp_cli_error(KP_EXIT_USAGE, "predict: unexpected option");
}

static const struct option predict_longopts[] = {
    {"output", required_argument, NULL, 'o'},
    {"rows", required_argument, NULL, OPT_ROWS},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), m = strlen(tail);
    return n >= m && strcmp(s + n - m, tail) == 0;
}

/* Writes the header: id column, then one name per output. */
static int write_header(FILE *f, const kp_dataset *d, int n_out)
{
    int rc = kp_csv_write_field(f, d->id_column && *d->id_column ? d->id_column : "id");
    for (int j = 0; rc >= 0 && j < n_out; j++) {
        char name[32];
        snprintf(name, sizeof name, "p%d", j);
        rc = putc(',', f) == EOF ? -1
             : kp_csv_write_field(f, n_out == 1 ? "prediction"
                                     : d->n_classes == n_out ? d->classes[j] : name);
    }
    return rc < 0 || putc('\n', f) == EOF ? -1 : 0;
}

/* Writes ids and predictions as CSV; %.9g reads back to the same float. */
static int write_csv(FILE *f, const kp_dataset *d, const kp_strings *ids, const float *p,
                     int64_t rows, int n_out)
{
    char id[4096];
    if (write_header(f, d, n_out) < 0)
        return -1;
    for (int64_t i = 0; i < rows; i++) {
        kp_strings_get(ids, i, id, sizeof id);
        if (kp_csv_write_field(f, id) < 0)
            return -1;
        for (int j = 0; j < n_out; j++)
            if (fprintf(f, ",%.9g", (double)p[i * n_out + j]) < 0)
                return -1;
        if (putc('\n', f) == EOF)
            return -1;
    }
    return 0;
}

static int write_output(const char *out, const kp_dataset *d, const kp_strings *ids,
                        const float *p, int64_t rows, int n_out, char *err, size_t errlen)
{
    if (out && ends_with(out, ".safetensors")) {
        kp_stw *w = kp_stw_create();
        int64_t shape[2] = { rows, n_out };
        int rc = !w || kp_stw_add(w, "pred", KP_F32, 2, shape, p) < 0 ||
                         kp_stw_meta(w, "kpipe.artifact", "predict") < 0
                     ? kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory")
                     : kp_stw_write(w, out, err, errlen);
        kp_stw_free(w);
        return rc;
    }
    if (!out) {
        if (write_csv(stdout, d, ids, p, rows, n_out) < 0 || fflush(stdout) != 0)
            return kp_errf(err, errlen, KP_ERR_IO, "stdout: write failed: %s", strerror(errno));
        return 0;
    }
    kp_afile *af = NULL;
    int rc = kp_afile_open(out, &af, err, errlen);
    if (rc < 0)
        return rc;
    if (write_csv(kp_afile_stream(af), d, ids, p, rows, n_out) < 0) {
        kp_afile_abort(af);
        return kp_errf(err, errlen, KP_ERR_IO, "%s: write failed: %s", out, strerror(errno));
    }
    return kp_afile_commit(af, err, errlen);
}

/* Loads, predicts, writes; 0 or a negative status with err filled. */
/* Predicts the rows X of d (its images for an image model) into p. */
static int predict_rows(const kp_model *m, const kp_dataset *d, const kp_matrix *X,
                        int train_rows, float *p, char *err, size_t errlen)
{
    const kp_images *img = train_rows ? &d->images_train : &d->images_test;
    if (!kp_model_ops_of(m)->predict_images || !img->data)
        return kp_model_predict(m, X, p, kp_thread_budget(), err, errlen);
    int64_t *rows = malloc(sizeof *rows * (size_t)(X->rows + 1));
    if (!rows)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < X->rows; i++)
        rows[i] = i;
    int rc = kp_model_predict_images(m, img, rows, X->rows, 0, p, kp_thread_budget(), err,
                                     errlen);
    free(rows);
    return rc;
}

static int predict(const char *ckpt, const char *data, const predict_args *a, char *err,
                   size_t errlen)
{
    kp_model *m = NULL;
    kp_dataset *d = NULL;
    float *p = NULL;
    int rc = kp_blas_preload(err, errlen);   /* before any thread: see lib/blas.h */
    if (rc == 0)
        rc = kp_model_load(ckpt, NULL, &m, err, errlen);
    if (rc == 0)
        rc = kp_dataset_open(data, &d, err, errlen);
    if (rc < 0)
        goto done;
    int n_out = kp_model_problem(m)->n_out;
    kp_matrix X = { a->train_rows ? d->X_train : d->X_test,
                    a->train_rows ? d->n_train : d->n_test, d->n_feat };
    if (!(p = malloc(sizeof *p * (size_t)(X.rows * n_out + 1)))) {
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
        goto done;
    }
    rc = predict_rows(m, d, &X, a->train_rows, p, err, errlen);
    if (rc < 0) {
        kp_err_prefix(err, errlen, rc, data);
        goto done;
    }
    rc = write_output(a->out, d, a->train_rows ? &d->train_ids : &d->test_ids, p, X.rows, n_out,
                      err, errlen);
done:
    free(p);
    kp_dataset_close(d);
    kp_model_free(m);
    return rc;
}

int kp_cmd_predict(int argc, char **argv)
{
    predict_args a = { NULL, 0 };
    const char *pos[2];
    int n = 0;
    int rc = kp_cli_parse_args(argc, argv, "o:h", predict_longopts, kp_help_predict,
                               on_predict_opt, &a, 2, 2, "CHECKPOINT DATA", pos, &n);
    if (rc)
        return rc < 0 ? KP_EXIT_OK : rc;
    char err[KP_ERRLEN] = "";
    rc = predict(pos[0], pos[1], &a, err, sizeof err);
    return rc < 0 ? kp_cli_error(kp_cli_exit_code(rc), "predict: %s", err) : KP_EXIT_OK;
}

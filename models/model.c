/* model.c - the generic model wrapper: task names, input checks, checkpoints. */
#include "model.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/err.h"

#define KP_MODEL_FORMAT "1"   /* "kpipe.format" of the checkpoints written here */

struct kp_model {
    const kp_model_ops *ops;
    kp_problem pb;
    void *impl;     /* owned, freed with ops->free */
};

static const char *const task_names[KP_TASK_COUNT] = {
    [KP_TASK_BINARY] = "binary", [KP_TASK_MULTICLASS] = "multiclass",
    [KP_TASK_REGRESSION] = "regression", [KP_TASK_MULTILABEL] = "multilabel",
    [KP_TASK_SEGMENTATION] = "segmentation",
};

int kp_mask_shape_parse(const char *s, int *c, int *h, int *w)
{
    int n = 0;
    long v[3];
    for (int i = 0; i < 3; i++) {
        char *end;
        if (*s < '0' || *s > '9')
            return KP_ERR_ARG;
        v[i] = strtol(s, &end, 10);
        if (v[i] < 1 || v[i] > 65536 || (i < 2 && *end != 'x') || (i == 2 && *end))
            return KP_ERR_ARG;
        s = end + (i < 2);
        n++;
    }
    *c = (int)v[0], *h = (int)v[1], *w = (int)v[2];
    return n == 3 ? 0 : KP_ERR_ARG;
}

int kp_problem_y_width(const kp_problem *pb)
{
    if (pb->task == KP_TASK_MULTILABEL)
        return pb->n_out;
    return pb->task == KP_TASK_SEGMENTATION ? pb->mask_h * pb->mask_w : 1;
}

int kp_task_parse(const char *s, kp_task_kind *out)
{
    for (int t = 0; t < KP_TASK_COUNT; t++)
        if (s && strcmp(s, task_names[t]) == 0) {
            *out = (kp_task_kind)t;
            return 0;
        }
    return KP_ERR_ARG;
}

const char *kp_task_name(kp_task_kind t)
{
    return (unsigned)t < KP_TASK_COUNT ? task_names[t] : "unknown";
}

/* Writes the names of the tasks in mask, comma-separated, into buf. */
static const char *task_list(unsigned mask, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = 0;
    for (int t = 0; t < KP_TASK_COUNT; t++)
        if (mask & KP_TASK_BIT(t))
            used += (size_t)snprintf(buf + used, used < len ? len - used : 0, "%s%s",
                                     used ? ", " : "", task_names[t]);
    return buf;
}

/* Checks that pb is a valid problem that ops supports; 0 or KP_ERR_ARG. */
static int check_problem(const kp_model_ops *ops, const kp_problem *pb, char *err, size_t errlen)
{
    char list[128];
    if ((unsigned)pb->task >= KP_TASK_COUNT)
        return kp_errf(err, errlen, KP_ERR_ARG, "unknown task %d", (int)pb->task);
    const char *task = kp_task_name(pb->task);
    if (!(ops->tasks & KP_TASK_BIT(pb->task)))
        return kp_errf(err, errlen, KP_ERR_ARG, "task '%s' is not supported (only %s)", task,
                       task_list(ops->tasks, list, sizeof list));
    int one = pb->task == KP_TASK_BINARY || pb->task == KP_TASK_REGRESSION;
    int seg = pb->task == KP_TASK_SEGMENTATION;
    if (seg && (pb->mask_c < 1 || pb->mask_h < 1 || pb->mask_w < 1 ||
                (int64_t)pb->mask_c * pb->mask_h * pb->mask_w != pb->n_out))
        return kp_errf(err, errlen, KP_ERR_ARG, "segmentation maps of %dx%dx%d cannot have %d "
                       "outputs", pb->mask_c, pb->mask_h, pb->mask_w, pb->n_out);
    if ((one && pb->n_out != 1) || (pb->task == KP_TASK_MULTICLASS && pb->n_out < 2) ||
        pb->n_out < 1)
        return kp_errf(err, errlen, KP_ERR_ARG, "task '%s' cannot have %d outputs", task,
                       pb->n_out);
    return 0;
}

/* Checks X's values: finite, or NaN for a model that takes missing values. */
static int check_values(const kp_model_ops *ops, const kp_matrix *X, char *err, size_t errlen)
{
    for (int64_t i = 0; i < X->rows * X->cols; i++) {
        float v = X->data[i];
        if (isfinite(v) || (isnan(v) && ops->missing_ok))
            continue;
        return kp_errf(err, errlen, KP_ERR_ARG, "X[%lld, %lld] is %g; %s",
                       (long long)(i / X->cols), (long long)(i % X->cols), (double)v,
                       isnan(v) ? "this model does not take missing values (impute them in "
                                  "preprocess)"
                                : "features must be finite");
    }
    return 0;
}

/* Checks X's shape and that every value is finite; 0 or KP_ERR_ARG. */
static int check_matrix(const kp_model_ops *ops, const kp_matrix *X, char *err, size_t errlen)
{
    if (X->rows < 1 || X->cols < 1 || X->rows > INT_MAX || X->cols > INT_MAX)
        return kp_errf(err, errlen, KP_ERR_ARG,
                       "X has %lld rows and %lld columns; need 1 to %d of each",
                       (long long)X->rows, (long long)X->cols, INT_MAX);
    return check_values(ops, X, err, errlen);
}

/* Checks that every target fits the task (see model.h); 0 or KP_ERR_ARG. */
static int check_targets(const kp_problem *pb, const float *y, int64_t rows,
                         char *err, size_t errlen)
{
    int64_t width = kp_problem_y_width(pb), n = rows * width;
    for (int64_t i = 0; i < n; i++) {
        float v = y[i];
        int ok = isfinite(v);
        if (pb->task == KP_TASK_BINARY || pb->task == KP_TASK_MULTILABEL ||
            (pb->task == KP_TASK_SEGMENTATION && pb->mask_c == 1))
            ok = v == 0 || v == 1;
        else if (pb->task == KP_TASK_SEGMENTATION)
            ok = v >= 0 && v < pb->mask_c && v == floorf(v);
        else if (pb->task == KP_TASK_MULTICLASS)
            ok = v >= 0 && v < pb->n_out && v == floorf(v);
        if (ok)
            continue;
        if (pb->task == KP_TASK_SEGMENTATION)
            return kp_errf(err, errlen, KP_ERR_ARG, "mask %lld, pixel (%lld, %lld) = %g is not "
                           "%s", (long long)(i / width), (long long)(i % width % pb->mask_w),
                           (long long)(i % width / pb->mask_w), v,
                           pb->mask_c == 1 ? "0 or 1" : "a class index");
        if (pb->task == KP_TASK_MULTILABEL)
            return kp_errf(err, errlen, KP_ERR_ARG, "y[%lld, %lld] = %g is not 0 or 1",
                           (long long)(i / pb->n_out), (long long)(i % pb->n_out), v);
        if (pb->task == KP_TASK_MULTICLASS)
            return kp_errf(err, errlen, KP_ERR_ARG, "y[%lld] = %g is not a class index in [0, %d)",
                           (long long)i, v, pb->n_out);
        return kp_errf(err, errlen, KP_ERR_ARG, "y[%lld] = %g is not %s", (long long)i, v,
                       pb->task == KP_TASK_BINARY ? "0 or 1" : "finite");
    }
    return 0;
}

/* Checks that ops takes a feature matrix (images 0) or images (images 1). */
static int takes(const kp_model_ops *ops, int images, char *err, size_t errlen)
{
    int ok = images ? ops->fit_images && ops->predict_images : ops->fit && ops->predict;
    if (ok)
        return 0;
    return kp_errf(err, errlen, KP_ERR_ARG, "this model takes %s, not %s",
                   images ? "a feature matrix" : "images",
                   images ? "images (use it on a preprocess dataset)"
                          : "a feature matrix (use it on an images dataset)");
}

int kp_model_fit(const kp_model_ops *ops, const kp_params *params, const kp_problem *pb,
                 const kp_matrix *X, const float *y, const kp_fit_opts *opts,
                 kp_model **out, char *err, size_t errlen)
{
    kp_fit_opts defaults = { .threads = 1 };
    kp_params *empty = NULL;
    kp_model *m = NULL;
    int rc;
    if ((rc = takes(ops, 0, err, errlen)) < 0 || (rc = check_problem(ops, pb, err, errlen)) < 0 ||
        (rc = check_matrix(ops, X, err, errlen)) < 0 ||
        (rc = check_targets(pb, y, X->rows, err, errlen)) < 0)
        goto fail;
    if (!params && !(params = empty = kp_params_create())) {
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (!(m = calloc(1, sizeof *m))) {
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
        goto fail;
    }
    m->ops = ops;
    m->pb = *pb;
    if ((rc = ops->fit(params, pb, X, y, opts ? opts : &defaults, &m->impl, err, errlen)) < 0)
        goto fail;
    *out = m;
    m = NULL;
fail:
    if (rc < 0)
        kp_err_prefix(err, errlen, rc, ops->name);
    kp_model_free(m);
    kp_params_free(empty);
    return rc;
}

int kp_model_predict(const kp_model *m, const kp_matrix *X, float *out, int threads,
                     char *err, size_t errlen)
{
    int rc = takes(m->ops, 0, err, errlen);
    if (rc == 0)
        rc = check_values(m->ops, X, err, errlen);
    if (rc == 0)
        rc = m->ops->predict(m->impl, X, out, threads, err, errlen);
    return rc < 0 ? kp_err_prefix(err, errlen, rc, m->ops->name) : 0;
}

/* ---- image models ---- */

/* Checks an image set's layout; 0 or KP_ERR_ARG. */
static int check_images(const kp_images *X, char *err, size_t errlen)
{
    if (!X->data || X->n < 1 || X->height < 1 || X->width < 1 || X->channels < 1 ||
        (X->depth != 8 && X->depth != 16) || !X->mean || !X->std)
        return kp_errf(err, errlen, KP_ERR_ARG,
                       "images: %lld of %d x %d x %d samples of %d bits%s; need at least one "
                       "image of 8 or 16 bits with its channel statistics", (long long)X->n,
                       X->height, X->width, X->channels, X->depth,
                       X->data && X->mean && X->std ? "" : " (data or statistics missing)");
    return 0;
}

/* Checks rows[0..n) are images of X (n >= 1); `what` names them. */
static int check_rows(const int64_t *rows, int64_t n, const kp_images *X, const char *what,
                      char *err, size_t errlen)
{
    if (n < 1 || !rows)
        return kp_errf(err, errlen, KP_ERR_ARG, "%s: no rows given", what);
    for (int64_t i = 0; i < n; i++)
        if (rows[i] < 0 || rows[i] >= X->n)
            return kp_errf(err, errlen, KP_ERR_ARG, "%s[%lld] = %lld is not an image index in "
                           "[0, %lld)", what, (long long)i, (long long)rows[i], (long long)X->n);
    return 0;
}

/* Checks the fit's inputs: problem, images, rows, targets, held-out rows. */
static int check_image_fit(const kp_model_ops *ops, const kp_problem *pb, const kp_images *X,
                           const int64_t *rows, int64_t n, const float *y,
                           const kp_fit_opts *o, char *err, size_t errlen)
{
    int rc;
    if ((rc = takes(ops, 1, err, errlen)) < 0 || (rc = check_problem(ops, pb, err, errlen)) < 0 ||
        (rc = check_images(X, err, errlen)) < 0 ||
        (rc = check_rows(rows, n, X, "rows", err, errlen)) < 0 ||
        (rc = check_targets(pb, y, n, err, errlen)) < 0)
        return rc;
    if (!o || o->n_valid == 0)
        return 0;
    if (o->n_valid < 0 || !o->y_valid)
        return kp_errf(err, errlen, KP_ERR_ARG, "%lld held-out rows %s", (long long)o->n_valid,
                       o->n_valid < 0 ? "is not a count" : "without their targets (y_valid)");
    if ((rc = check_rows(o->valid_rows, o->n_valid, X, "valid_rows", err, errlen)) < 0 ||
        (rc = check_targets(pb, o->y_valid, o->n_valid, err, errlen)) < 0)
        return kp_err_prefix(err, errlen, rc, "held-out rows");
    return 0;
}

int kp_model_fit_images(const kp_model_ops *ops, const kp_params *params, const kp_problem *pb,
                        const kp_images *X, const int64_t *rows, int64_t n, const float *y,
                        const kp_fit_opts *opts, kp_model **out, char *err, size_t errlen)
{
    kp_fit_opts defaults = { .threads = 1 };
    kp_params *empty = NULL;
    kp_model *m = NULL;
    int rc = check_image_fit(ops, pb, X, rows, n, y, opts, err, errlen);
    if (rc < 0)
        goto fail;
    if ((!params && !(params = empty = kp_params_create())) || !(m = calloc(1, sizeof *m))) {
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
        goto fail;
    }
    m->ops = ops;
    m->pb = *pb;
    if ((rc = ops->fit_images(params, pb, X, rows, n, y, opts ? opts : &defaults, &m->impl, err,
                              errlen)) < 0)
        goto fail;
    *out = m;
    m = NULL;
fail:
    if (rc < 0)
        kp_err_prefix(err, errlen, rc, ops->name);
    kp_model_free(m);
    kp_params_free(empty);
    return rc;
}

int kp_model_predict_images(const kp_model *m, const kp_images *X, const int64_t *rows,
                            int64_t n, int d4, float *out, int threads, char *err,
                            size_t errlen)
{
    int rc;
    if ((rc = takes(m->ops, 1, err, errlen)) == 0 && (rc = check_images(X, err, errlen)) == 0 &&
        (rc = check_rows(rows, n, X, "rows", err, errlen)) == 0) {
        if (d4 < 0 || d4 >= 8)
            rc = kp_errf(err, errlen, KP_ERR_ARG, "transform %d is not a D4 symmetry (0 to 7)", d4);
        else
            rc = m->ops->predict_images(m->impl, X, rows, n, d4, out, threads, err, errlen);
    }
    return rc < 0 ? kp_err_prefix(err, errlen, rc, m->ops->name) : 0;
}

int kp_model_save(const kp_model *m, const char *path, char *err, size_t errlen)
{
    char n_out[32], mask[64];
    snprintf(n_out, sizeof n_out, "%d", m->pb.n_out);
    snprintf(mask, sizeof mask, "%dx%dx%d", m->pb.mask_c, m->pb.mask_h, m->pb.mask_w);
    kp_stw *w = kp_stw_create();
    int rc = KP_ERR_NOMEM;
    if (!w || kp_stw_meta(w, "kpipe.model", m->ops->name) < 0 ||
        kp_stw_meta(w, "kpipe.task", kp_task_name(m->pb.task)) < 0 ||
        kp_stw_meta(w, "kpipe.n_out", n_out) < 0 ||
        kp_stw_meta(w, "kpipe.format", KP_MODEL_FORMAT) < 0 ||
        (m->pb.task == KP_TASK_SEGMENTATION && kp_stw_meta(w, "kpipe.mask", mask) < 0)) {
        kp_errf(err, errlen, rc, "%s: out of memory building the checkpoint", path);
        goto fail;
    }
    if ((rc = m->ops->save(m->impl, w, err, errlen)) < 0) {
        kp_err_prefix(err, errlen, rc, path);
        goto fail;
    }
    rc = kp_stw_write(w, path, err, errlen);
fail:
    kp_stw_free(w);
    return rc;
}

/* Reads the kpipe.* metadata of st into *ops and *pb; 0 or a status. */
static int read_header(const kp_st *st, const kp_model_ops *expect, const kp_model_ops **ops,
                       kp_problem *pb, char *err, size_t errlen)
{
    const char *path = kp_st_path(st), *name = kp_st_meta(st, "kpipe.model");
    const char *task = kp_st_meta(st, "kpipe.task"), *n_out = kp_st_meta(st, "kpipe.n_out");
    const char *format = kp_st_meta(st, "kpipe.format");
    if (!name)
        return kp_errf(err, errlen, KP_ERR_FORMAT,
                       "%s: not a kpipe checkpoint (no kpipe.model metadata)", path);
    if (expect && strcmp(name, expect->name) != 0)
        return kp_errf(err, errlen, KP_ERR_MISMATCH,
                       "%s: checkpoint is a '%s' model, expected '%s'", path, name, expect->name);
    if (!(*ops = kp_model_find(name)))
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: checkpoint is of unknown model '%s'",
                       path, name);
    if (!format || strcmp(format, KP_MODEL_FORMAT) != 0)
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: kpipe.format is '%s', expected '%s'",
                       path, format ? format : "(missing)", KP_MODEL_FORMAT);
    if (kp_task_parse(task, &pb->task) < 0)
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: kpipe.task '%s' is not a task",
                       path, task ? task : "(missing)");
    char *end = NULL;
    errno = 0;
    long v = n_out ? strtol(n_out, &end, 10) : 0;
    if (!n_out || *end || end == n_out || errno || v < 1 || v > INT_MAX)
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: kpipe.n_out '%s' is not a positive count",
                       path, n_out ? n_out : "(missing)");
    pb->n_out = (int)v;
    const char *mask = kp_st_meta(st, "kpipe.mask");
    if (pb->task == KP_TASK_SEGMENTATION &&
        (!mask || kp_mask_shape_parse(mask, &pb->mask_c, &pb->mask_h, &pb->mask_w) < 0))
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: kpipe.mask '%s' is not CxHxW", path,
                       mask ? mask : "(missing)");
    if (check_problem(*ops, pb, err, errlen) < 0) {
        kp_err_prefix(err, errlen, KP_ERR_FORMAT, name);
        return kp_err_prefix(err, errlen, KP_ERR_FORMAT, path);
    }
    return 0;
}

int kp_model_load(const char *path, const kp_model_ops *expect, kp_model **out,
                  char *err, size_t errlen)
{
    kp_st *st = NULL;
    kp_model *m = NULL;
    const kp_model_ops *ops = NULL;
    kp_problem pb;
    int rc;
    if ((rc = kp_st_open(path, &st, err, errlen)) < 0 ||
        (rc = read_header(st, expect, &ops, &pb, err, errlen)) < 0)
        goto fail;
    if (!(m = calloc(1, sizeof *m))) {
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    m->ops = ops;
    m->pb = pb;
    if ((rc = ops->load(st, &pb, &m->impl, err, errlen)) < 0)
        goto fail;
    *out = m;
    m = NULL;
fail:
    kp_model_free(m);
    kp_st_close(st);
    return rc;
}

const kp_model_ops *kp_model_ops_of(const kp_model *m) { return m->ops; }

const kp_problem *kp_model_problem(const kp_model *m) { return &m->pb; }

void kp_model_free(kp_model *m)
{
    if (!m)
        return;
    if (m->impl)
        m->ops->free(m->impl);
    free(m);
}

void kp_images_to_chw(const kp_images *X, int64_t row, const float *mean, const float *std,
                      float *dst)
{
    size_t hw = (size_t)X->height * X->width, base = (size_t)row * hw * X->channels;
    for (int c = 0; c < X->channels; c++) {
        float a = 1.0f / std[c], b = -mean[c] / std[c];
        float *d = dst + c * hw;
        if (X->depth == 16) {
            const uint16_t *s = (const uint16_t *)X->data + base + c;
            for (size_t p = 0; p < hw; p++)
                d[p] = (float)s[p * X->channels] * a + b;
        } else {
            const uint8_t *s = (const uint8_t *)X->data + base + c;
            for (size_t p = 0; p < hw; p++)
                d[p] = (float)s[p * X->channels] * a + b;
        }
    }
}

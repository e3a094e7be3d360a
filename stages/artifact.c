/* artifact.c - the dataset, folds and preds artifacts: writers and checking readers.
 *
 * Every reader treats its file as hostile: the kind, every shape against the
 * others and against the metadata, the id offsets, the fold values and the
 * folds hash are checked before a pointer is handed out, and every error
 * names the file.  Numbers in metadata are written with "%.17g" under the C
 * locale; lists are JSON arrays (jansson).
 */
#include "artifact.h"
#include "postproc.h"

#include <jansson.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/err.h"
#include "../lib/hash.h"
#include "../lib/image.h"

size_t kp_strings_get(const kp_strings *s, int64_t i, char *buf, size_t bufsize)
{
    if (i < 0 || i >= s->n) {
        if (bufsize)
            buf[0] = 0;
        return 0;
    }
    size_t len = (size_t)(s->offsets[i + 1] - s->offsets[i]);
    if (bufsize) {
        size_t m = len < bufsize - 1 ? len : bufsize - 1;
        memcpy(buf, s->bytes + s->offsets[i], m);
        buf[m] = 0;
    }
    return len;
}

/* ---- numbers and JSON in metadata ---- */

/* Formats v with "%.17g" under the C locale into buf. */
static void fmt_g(char *buf, size_t n, double v)
{
    locale_t c = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    locale_t old = c ? uselocale(c) : (locale_t)0;
    snprintf(buf, n, "%.17g", v);
    if (c) {
        uselocale(old);
        freelocale(c);
    }
}

/* Parses a whole string as a double under the C locale ("nan" accepted). */
static int parse_double(const char *s, double *out)
{
    locale_t c = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    char *end = NULL;
    double v = c ? strtod_l(s, &end, c) : strtod(s, &end);
    if (c)
        freelocale(c);
    if (!*s || *end)
        return KP_ERR_FORMAT;
    *out = v;
    return 0;
}

static int parse_ll(const char *s, long long *out)
{
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end)
        return KP_ERR_FORMAT;
    *out = v;
    return 0;
}

/* Returns metadata key of st, or NULL with an error naming the file. */
static const char *meta_req(const kp_st *st, const char *key, char *err, size_t errlen)
{
    const char *v = kp_st_meta(st, key);
    if (!v)
        kp_errf(err, errlen, KP_ERR_FORMAT, "%s: metadata has no '%s'", kp_st_path(st), key);
    return v;
}

/* Reads an integer metadata value in [lo, hi]. */
static int meta_int(const kp_st *st, const char *key, long long lo, long long hi, int *out,
                    char *err, size_t errlen)
{
    const char *v = meta_req(st, key, err, errlen);
    long long x;
    if (!v)
        return KP_ERR_FORMAT;
    if (parse_ll(v, &x) < 0 || x < lo || x > hi)
        return kp_errf(err, errlen, KP_ERR_FORMAT,
                       "%s: metadata '%s' is '%s', expected a whole number in [%lld, %lld]",
                       kp_st_path(st), key, v, lo, hi);
    *out = (int)x;
    return 0;
}

static int meta_double(const kp_st *st, const char *key, double *out, char *err, size_t errlen)
{
    const char *v = meta_req(st, key, err, errlen);
    if (!v)
        return KP_ERR_FORMAT;
    if (parse_double(v, out) < 0)
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: metadata '%s' is '%s', not a number",
                       kp_st_path(st), key, v);
    return 0;
}

/* Checks "kpipe.artifact" is `want`. */
static int check_kind(const kp_st *st, const char *want, char *err, size_t errlen)
{
    const char *v = kp_st_meta(st, "kpipe.artifact");
    if (!v || strcmp(v, want) != 0)
        return kp_errf(err, errlen, KP_ERR_MISMATCH,
                       "%s: not a %s artifact (metadata kpipe.artifact is %s%s%s)",
                       kp_st_path(st), want, v ? "'" : "", v ? v : "missing", v ? "'" : "");
    return 0;
}

static void free_strings(char **s, int n)
{
    for (int i = 0; s && i < n; i++)
        free(s[i]);
    free(s);
}

/* Parses metadata key (a JSON array) of st; returns the array (caller decrefs). */
static json_t *meta_array(const kp_st *st, const char *key, char *err, size_t errlen)
{
    const char *v = meta_req(st, key, err, errlen);
    if (!v)
        return NULL;
    json_t *a = json_loads(v, JSON_DECODE_ANY, NULL);
    if (!json_is_array(a)) {
        json_decref(a);
        kp_errf(err, errlen, KP_ERR_FORMAT, "%s: metadata '%s' is not a JSON array",
                kp_st_path(st), key);
        return NULL;
    }
    return a;
}

/* Reads metadata key as a JSON array of strings into *out (owned) and *n. */
static int meta_strings(const kp_st *st, const char *key, char ***out, int *n, char *err,
                        size_t errlen)
{
    json_t *a = meta_array(st, key, err, errlen);
    if (!a)
        return KP_ERR_FORMAT;
    int rc = 0, m = (int)json_array_size(a);
    char **s = calloc((size_t)m + 1, sizeof *s);
    if (!s)
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory", kp_st_path(st));
    for (int i = 0; i < m && rc == 0; i++) {
        const char *e = json_string_value(json_array_get(a, (size_t)i));
        if (!e)
            rc = kp_errf(err, errlen, KP_ERR_FORMAT, "%s: metadata '%s'[%d] is not a string",
                         kp_st_path(st), key, i);
        else if (!(s[i] = strdup(e)))
            rc = kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory", kp_st_path(st));
    }
    json_decref(a);
    if (rc < 0) {
        free_strings(s, m);
        return rc;
    }
    *out = s;
    *n = m;
    return 0;
}

/* Reads metadata key as a JSON array of numbers (null = NaN) into *out (owned). */
static int meta_numbers(const kp_st *st, const char *key, double **out, int *n, char *err,
                        size_t errlen)
{
    json_t *a = meta_array(st, key, err, errlen);
    if (!a)
        return KP_ERR_FORMAT;
    int rc = 0, m = (int)json_array_size(a);
    double *v = malloc(((size_t)m + 1) * sizeof *v);
    if (!v)
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory", kp_st_path(st));
    for (int i = 0; i < m && rc == 0; i++) {
        json_t *e = json_array_get(a, (size_t)i);
        if (json_is_number(e))
            v[i] = json_number_value(e);
        else if (json_is_null(e))
            v[i] = NAN;
        else
            rc = kp_errf(err, errlen, KP_ERR_FORMAT, "%s: metadata '%s'[%d] is not a number",
                         kp_st_path(st), key, i);
    }
    json_decref(a);
    if (rc < 0) {
        free(v);
        return rc;
    }
    *out = v;
    *n = m;
    return 0;
}

/* Returns a heap JSON array text of n numbers (non-finite as null), or NULL. */
static char *numbers_json(const double *v, int n)
{
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++) {
        json_t *e = isfinite(v[i]) ? json_real(v[i]) : json_null();
        if (json_array_append_new(a, e) < 0) {
            json_decref(a);
            a = NULL;
        }
    }
    char *s = a ? json_dumps(a, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
    json_decref(a);
    return s;
}

/* Sets metadata key to a number; accumulates failures in *rc. */
static void meta_num(kp_stw *w, const char *key, double v, int *rc)
{
    char buf[64];
    fmt_g(buf, sizeof buf, v);
    if (*rc == 0)
        *rc = kp_stw_meta(w, key, buf);
}

static void meta_str(kp_stw *w, const char *key, const char *v, int *rc)
{
    if (*rc == 0)
        *rc = kp_stw_meta(w, key, v ? v : "");
}

/* Checks task, n_out and the number of classes agree. */
static int check_problem(const kp_st *st, const kp_problem *pb, int n_classes, char *err,
                         size_t errlen)
{
    int seg = pb->task == KP_TASK_SEGMENTATION;
    int want_out = pb->task == KP_TASK_BINARY || pb->task == KP_TASK_REGRESSION ? 1
                   : seg ? pb->n_out : n_classes;
    int want_classes = pb->task == KP_TASK_BINARY ? 2
                       : pb->task == KP_TASK_REGRESSION ? 0 : seg ? pb->mask_c : pb->n_out;
    int min_out = pb->task == KP_TASK_MULTICLASS ? 2 : 1;
    if (n_classes >= 0 && n_classes != want_classes)
        return kp_errf(err, errlen, KP_ERR_MISMATCH,
                       "%s: a %s artifact with n_out %d must list %d classes, it lists %d",
                       kp_st_path(st), kp_task_name(pb->task), pb->n_out, want_classes,
                       n_classes);
    if ((n_classes >= 0 && pb->n_out != want_out) || pb->n_out < min_out ||
        ((pb->task == KP_TASK_BINARY || pb->task == KP_TASK_REGRESSION) && pb->n_out != 1))
        return kp_errf(err, errlen, KP_ERR_MISMATCH, "%s: n_out %d does not fit task %s",
                       kp_st_path(st), pb->n_out, kp_task_name(pb->task));
    return 0;
}

/* Reads task and n_out metadata into pb. */
static int read_problem(const kp_st *st, kp_problem *pb, char *err, size_t errlen)
{
    const char *task = meta_req(st, "task", err, errlen);
    if (!task)
        return KP_ERR_FORMAT;
    if (kp_task_parse(task, &pb->task) < 0)
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: unknown task '%s' in metadata",
                       kp_st_path(st), task);
    int rc = meta_int(st, "n_out", 1, INT32_MAX, &pb->n_out, err, errlen);
    if (rc < 0 || pb->task != KP_TASK_SEGMENTATION)
        return rc;
    const char *mask = meta_req(st, "mask_size", err, errlen);
    if (!mask)
        return KP_ERR_FORMAT;
    if (kp_mask_shape_parse(mask, &pb->mask_c, &pb->mask_h, &pb->mask_w) < 0 ||
        (int64_t)pb->mask_c * pb->mask_h * pb->mask_w != pb->n_out)
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: mask_size '%s' is not CxHxW of n_out "
                       "%d values", kp_st_path(st), mask, pb->n_out);
    return 0;
}

/* ---- ids ---- */

/* Finds PREFIX.offsets [n + 1] and PREFIX.bytes and checks the offsets. */
static int open_strings(const kp_st *st, const char *prefix, int64_t n, kp_strings *out,
                        char *err, size_t errlen)
{
    char on[128], bn[128];
    snprintf(on, sizeof on, "%s.offsets", prefix);
    snprintf(bn, sizeof bn, "%s.bytes", prefix);
    int64_t oshape[1] = {n + 1};
    const kp_tensor *o = kp_st_expect(st, on, KP_I64, 1, oshape, err, errlen);
    const kp_tensor *b = o ? kp_st_expect(st, bn, KP_U8, 1, NULL, err, errlen) : NULL;
    if (!b)
        return KP_ERR_FORMAT;
    const int64_t *off = o->data;
    for (int64_t i = 0; i <= n; i++) {
        int64_t lo = i ? off[i - 1] : 0;
        if (off[i] < lo || off[i] > b->numel || (i == 0 && off[0] != 0))
            return kp_errf(err, errlen, KP_ERR_FORMAT,
                           "%s: %s[%lld] = %lld is out of order or beyond the %lld bytes",
                           kp_st_path(st), on, (long long)i, (long long)off[i],
                           (long long)b->numel);
    }
    if (off[n] != b->numel)
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: %s ends at %lld but %s has %lld bytes",
                       kp_st_path(st), on, (long long)off[n], bn, (long long)b->numel);
    *out = (kp_strings){n, off, b->data};
    return 0;
}

/* ---- images (image datasets) ---- */

#define MAX_CHANNELS 1024   /* bands of all an id's files together */

static const float no_features[1];   /* X_train and X_test of an image dataset */

/* Reads metadata key as `channels` finite numbers (>= 0 when nonneg) into
 * *out (owned floats). */
static int channel_stats(const kp_st *st, const char *key, int64_t channels, int nonneg,
                         float **out, char *err, size_t errlen)
{
    double *v = NULL;
    int n = 0, rc = meta_numbers(st, key, &v, &n, err, errlen);
    if (rc == 0 && n != channels)
        rc = kp_errf(err, errlen, KP_ERR_MISMATCH, "%s: metadata '%s' has %d numbers for %lld "
                     "channels", kp_st_path(st), key, n, (long long)channels);
    for (int i = 0; rc == 0 && i < n; i++)
        if (!isfinite(v[i]) || (nonneg && v[i] < 0))
            rc = kp_errf(err, errlen, KP_ERR_FORMAT, "%s: metadata '%s'[%d] is %g, not a %s",
                         kp_st_path(st), key, i, v[i],
                         nonneg ? "finite number >= 0" : "finite number");
    if (rc == 0 && !(*out = malloc((size_t)n * sizeof **out)))
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory", kp_st_path(st));
    for (int i = 0; rc == 0 && i < n; i++)
        (*out)[i] = (float)v[i];
    free(v);
    return rc;
}

/* Checks metadata image_size ("WxH") against the images' width and height. */
static int check_image_size(const kp_st *st, int64_t w, int64_t h, char *err, size_t errlen)
{
    const char *v = meta_req(st, "image_size", err, errlen);
    char want[64];
    if (!v)
        return KP_ERR_FORMAT;
    snprintf(want, sizeof want, "%lldx%lld", (long long)w, (long long)h);
    if (strcmp(v, want) != 0)
        return kp_errf(err, errlen, KP_ERR_MISMATCH,
                       "%s: metadata image_size is '%s' but images_train holds %s images",
                       kp_st_path(st), v, want);
    return 0;
}

/* Finds images_train [n, H, W, C] and images_test [m, H, W, C] (U8 or U16,
 * the same), checks them against the metadata and fills the kp_images. */
static int dataset_images(kp_dataset *d, char *err, size_t errlen)
{
    const kp_st *st = d->st;
    const kp_tensor *tr = kp_st_find(st, "images_train"), *te;
    if (!tr)
        return kp_st_find(st, "images_test")
                   ? kp_errf(err, errlen, KP_ERR_FORMAT, "%s: images_test without images_train",
                             kp_st_path(st)) : 0;
    const int64_t *s = tr->shape;
    if ((tr->dtype != KP_U8 && tr->dtype != KP_U16) || tr->ndim != 4 || s[0] < 1 || s[1] < 1 ||
        s[1] > KP_IMAGE_MAX_SIDE || s[2] < 1 || s[2] > KP_IMAGE_MAX_SIDE || s[3] < 1 ||
        s[3] > MAX_CHANNELS)
        return kp_errf(err, errlen, KP_ERR_FORMAT,
                       "%s: tensor 'images_train' must be U8 or U16 [n >= 1, H, W, C] with H and W "
                       "in [1, %d] and C in [1, %d]", kp_st_path(st), KP_IMAGE_MAX_SIDE,
                       MAX_CHANNELS);
    int64_t ts[4] = {-1, s[1], s[2], s[3]};
    int rc;
    if (!(te = kp_st_expect(st, "images_test", tr->dtype, 4, ts, err, errlen)))
        return KP_ERR_FORMAT;
    if ((rc = check_image_size(st, s[2], s[1], err, errlen)) < 0 ||
        (rc = channel_stats(st, "channel_mean", s[3], 0, &d->channel_mean, err, errlen)) < 0 ||
        (rc = channel_stats(st, "channel_std", s[3], 1, &d->channel_std, err, errlen)) < 0)
        return rc;
    int depth = tr->dtype == KP_U8 ? 8 : 16;
    d->images_train = (kp_images){tr->data, s[0], (int)s[1], (int)s[2], (int)s[3], depth,
                                  d->channel_mean, d->channel_std};
    d->images_test = d->images_train;
    d->images_test.data = te->data;
    d->images_test.n = te->shape[0];
    return 0;
}

/* ---- dataset ---- */

/* Finds X_train and X_test (absent from an image dataset: no features) and
 * sets the row and feature counts. */
static int dataset_features(kp_dataset *d, char *err, size_t errlen)
{
    const kp_st *st = d->st;
    int images = d->images_train.data != NULL;
    if (images && !kp_st_find(st, "X_train") && !kp_st_find(st, "X_test")) {
        d->n_train = d->images_train.n;
        d->n_test = d->images_test.n;
        d->X_train = d->X_test = no_features;
        return 0;
    }
    const kp_tensor *xt = kp_st_expect(st, "X_train", KP_F32, 2, NULL, err, errlen), *xe;
    if (!xt)
        return KP_ERR_FORMAT;
    int64_t xs[2] = {-1, xt->shape[1]};
    if (!(xe = kp_st_expect(st, "X_test", KP_F32, 2, xs, err, errlen)))
        return KP_ERR_FORMAT;
    d->n_train = xt->shape[0];
    d->n_feat = xt->shape[1];
    d->n_test = xe->shape[0];
    d->X_train = xt->data;
    d->X_test = xe->data;
    if (images && (d->images_train.n != d->n_train || d->images_test.n != d->n_test))
        return kp_errf(err, errlen, KP_ERR_MISMATCH,
                       "%s: %lld train and %lld test images but %lld and %lld feature rows",
                       kp_st_path(st), (long long)d->images_train.n,
                       (long long)d->images_test.n, (long long)d->n_train, (long long)d->n_test);
    return 0;
}

/* Segmentation: the images are the masks' size, and train_sizes / test_sizes
 * give each image's original width and height. */
static int dataset_sizes(kp_dataset *d, char *err, size_t errlen)
{
    const kp_st *st = d->st;
    int64_t st_shape[2] = {d->n_train, 2}, se_shape[2] = {d->n_test, 2};
    if (!d->images_train.data || d->images_train.height != d->pb.mask_h ||
        d->images_train.width != d->pb.mask_w)
        return kp_errf(err, errlen, KP_ERR_MISMATCH, "%s: segmentation masks of %dx%d need "
                       "images of that size", kp_st_path(st), d->pb.mask_w, d->pb.mask_h);
    const kp_tensor *a = kp_st_expect(st, "train_sizes", KP_I32, 2, st_shape, err, errlen);
    const kp_tensor *b = a ? kp_st_expect(st, "test_sizes", KP_I32, 2, se_shape, err, errlen)
                           : NULL;
    if (!b)
        return KP_ERR_FORMAT;
    d->train_sizes = a->data;
    d->test_sizes = b->data;
    for (int64_t i = 0; i < 2 * (d->n_train + d->n_test); i++) {
        int32_t v = i < 2 * d->n_train ? d->train_sizes[i] : d->test_sizes[i - 2 * d->n_train];
        if (v < 1 || v > 65536)
            return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: an image size of %d in %s",
                           kp_st_path(st), (int)v, i < 2 * d->n_train ? "train_sizes"
                                                                       : "test_sizes");
    }
    return 0;
}

/* Finds the features (or images), y and groups and checks their shapes agree. */
static int dataset_tensors(kp_dataset *d, char *err, size_t errlen)
{
    const kp_st *st = d->st;
    int rc = dataset_features(d, err, errlen);
    if (rc < 0)
        return rc;
    if (d->n_train < 1)
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: X_train has no rows", kp_st_path(st));
    int64_t ys[2] = {d->n_train, kp_problem_y_width(&d->pb)}, gs[1] = {d->n_train};
    int ml = d->pb.task == KP_TASK_MULTILABEL || d->pb.task == KP_TASK_SEGMENTATION;
    const kp_tensor *y = kp_st_expect(st, "y", KP_F32, ml ? 2 : 1, ys, err, errlen);
    if (!y)
        return KP_ERR_FORMAT;
    const kp_tensor *g = kp_st_find(st, "groups");
    if (g && !(g = kp_st_expect(st, "groups", KP_I64, 1, gs, err, errlen)))
        return KP_ERR_FORMAT;
    d->y = y->data;
    d->groups = g ? g->data : NULL;
    if (d->pb.task == KP_TASK_SEGMENTATION && (rc = dataset_sizes(d, err, errlen)) < 0)
        return rc;
    if (d->n_features != d->n_feat)
        return kp_errf(err, errlen, KP_ERR_MISMATCH,
                       "%s: metadata lists %d features but X_train has %lld columns",
                       kp_st_path(st), d->n_features, (long long)d->n_feat);
    return 0;
}

/* Checks every value of a feature matrix is finite or NaN (a missing value
 * kept by preprocess `impute: none`; models refuse it unless they route it). */
static int check_finite(const kp_st *st, const char *name, const float *x, int64_t rows,
                        int64_t cols, char *err, size_t errlen)
{
    for (int64_t i = 0; i < rows * cols; i++)
        if (isinf(x[i]))
            return kp_errf(err, errlen, KP_ERR_FORMAT,
                           "%s: %s[%lld, %lld] is not a finite number", kp_st_path(st), name,
                           (long long)(i / cols), (long long)(i % cols));
    return 0;
}

/* Checks y holds values its task allows. */
static int check_y(const kp_dataset *d, char *err, size_t errlen)
{
    int64_t n = d->n_train * kp_problem_y_width(&d->pb);
    for (int64_t i = 0; i < n; i++) {
        float v = d->y[i];
        int ok;
        switch (d->pb.task) {
        case KP_TASK_MULTICLASS: ok = v >= 0 && v < d->n_classes && v == floorf(v); break;
        case KP_TASK_SEGMENTATION:
            ok = v >= 0 && v <= (d->pb.mask_c > 1 ? d->pb.mask_c - 1 : 1) && v == floorf(v);
            break;
        case KP_TASK_REGRESSION: ok = isfinite(v); break;
        default: ok = v == 0 || v == 1; break;
        }
        if (!ok)
            return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: y[%lld] = %g is not valid for task %s",
                           kp_st_path(d->st), (long long)i, (double)v, kp_task_name(d->pb.task));
    }
    return 0;
}

/* Reads the dataset's metadata lists and problem. */
static int dataset_meta(kp_dataset *d, char *err, size_t errlen)
{
    const char *id;
    int rc;
    if ((rc = check_kind(d->st, "dataset", err, errlen)) < 0 ||
        (rc = read_problem(d->st, &d->pb, err, errlen)) < 0 ||
        (rc = meta_strings(d->st, "classes", &d->classes, &d->n_classes, err, errlen)) < 0 ||
        (rc = meta_strings(d->st, "features", &d->features, &d->n_features, err, errlen)) < 0 ||
        (rc = check_problem(d->st, &d->pb, d->n_classes, err, errlen)) < 0)
        return rc;
    if (!(id = meta_req(d->st, "id_column", err, errlen)))
        return KP_ERR_FORMAT;
    if (!(d->id_column = strdup(id)))
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    return 0;
}

int kp_dataset_open(const char *path, kp_dataset **out, char *err, size_t errlen)
{
    kp_dataset *d = calloc(1, sizeof *d);
    int rc;
    if (!d)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory", path);
    if ((rc = kp_st_open(path, &d->st, err, errlen)) < 0 ||
        (rc = dataset_meta(d, err, errlen)) < 0 ||
        (rc = dataset_images(d, err, errlen)) < 0 ||
        (rc = dataset_tensors(d, err, errlen)) < 0 ||
        (rc = open_strings(d->st, "train_ids", d->n_train, &d->train_ids, err, errlen)) < 0 ||
        (rc = open_strings(d->st, "test_ids", d->n_test, &d->test_ids, err, errlen)) < 0 ||
        (rc = check_y(d, err, errlen)) < 0 ||
        (rc = check_finite(d->st, "X_train", d->X_train, d->n_train, d->n_feat, err, errlen)) < 0 ||
        (rc = check_finite(d->st, "X_test", d->X_test, d->n_test, d->n_feat, err, errlen)) < 0)
        goto fail;
    *out = d;
    return 0;
fail:
    kp_dataset_close(d);
    return rc;
}

void kp_dataset_close(kp_dataset *d)
{
    if (!d)
        return;
    kp_st_close(d->st);
    free_strings(d->classes, d->n_classes);
    free_strings(d->features, d->n_features);
    free(d->id_column);
    free(d->channel_mean);
    free(d->channel_std);
    free(d);
}

/* ---- folds ---- */

/* Hashes the fold values (little-endian int32) then k and repeats. */
static void folds_hash(const int32_t *fold, int64_t count, int k, int repeats,
                       char hex[KP_HASH_HEXLEN])
{
    uint8_t tail[8];
    for (int b = 0; b < 4; b++) {
        tail[b] = (uint8_t)((uint32_t)k >> (8 * b));
        tail[4 + b] = (uint8_t)((uint32_t)repeats >> (8 * b));
    }
    kp_hasher *h = kp_hasher_create();
    if (!h) {
        hex[0] = 0;
        return;
    }
    kp_hasher_add(h, fold, (size_t)count * sizeof *fold);
    kp_hasher_add(h, tail, sizeof tail);
    kp_hash_hex(kp_hasher_digest(h), hex);
    kp_hasher_free(h);
}

/* Checks every fold value is in [0, k) and no fold of a repeat is empty. */
static int check_fold_values(const char *path, const int32_t *fold, int64_t n, int k,
                             int repeats, char *err, size_t errlen)
{
    int64_t *size = calloc((size_t)k, sizeof *size);
    int rc = size ? 0 : kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory", path);
    for (int r = 0; r < repeats && rc == 0; r++) {
        memset(size, 0, (size_t)k * sizeof *size);
        for (int64_t i = 0; i < n && rc == 0; i++) {
            int32_t f = fold[(int64_t)r * n + i];
            if (f < 0 || f >= k)
                rc = kp_errf(err, errlen, KP_ERR_FORMAT,
                             "%s: fold[%d, %lld] = %d is outside [0, %d)", path, r,
                             (long long)i, (int)f, k);
            else
                size[f]++;
        }
        for (int f = 0; f < k && rc == 0; f++)
            if (size[f] == 0)
                rc = kp_errf(err, errlen, KP_ERR_FORMAT, "%s: fold %d of repeat %d is empty",
                             path, f, r);
    }
    free(size);
    return rc;
}

/* Reads and checks the folds artifact's metadata and tensor. */
static int folds_check(kp_folds *f, char *err, size_t errlen)
{
    const kp_st *st = f->st;
    const char *path = kp_st_path(st), *h;
    int rc;
    const kp_tensor *t;
    if ((rc = check_kind(st, "folds", err, errlen)) < 0)
        return rc;
    if (!(t = kp_st_expect(st, "fold", KP_I32, 2, NULL, err, errlen)))
        return KP_ERR_FORMAT;
    f->n = t->shape[1];
    f->fold = t->data;
    if ((rc = meta_int(st, "repeats", 1, 1 << 20, &f->repeats, err, errlen)) < 0 ||
        (rc = meta_int(st, "k", 2, f->n < 2 ? 2 : f->n, &f->k, err, errlen)) < 0)
        return rc;
    if (t->shape[0] != f->repeats || f->n < 2)
        return kp_errf(err, errlen, KP_ERR_MISMATCH,
                       "%s: tensor 'fold' has shape [%lld, %lld] but metadata says %d repeats",
                       path, (long long)t->shape[0], (long long)f->n, f->repeats);
    if ((rc = check_fold_values(path, f->fold, f->n, f->k, f->repeats, err, errlen)) < 0)
        return rc;
    if (!(h = meta_req(st, "folds_hash", err, errlen)))
        return KP_ERR_FORMAT;
    folds_hash(f->fold, f->n * f->repeats, f->k, f->repeats, f->hash);
    if (strcmp(h, f->hash) != 0)
        return kp_errf(err, errlen, KP_ERR_MISMATCH,
                       "%s: folds_hash %s does not match the fold values (hash %s)", path, h,
                       f->hash);
    return 0;
}

int kp_folds_open(const char *path, kp_folds **out, char *err, size_t errlen)
{
    kp_folds *f = calloc(1, sizeof *f);
    int rc;
    if (!f)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory", path);
    if ((rc = kp_st_open(path, &f->st, err, errlen)) < 0 || (rc = folds_check(f, err, errlen)) < 0) {
        kp_folds_close(f);
        return rc;
    }
    *out = f;
    return 0;
}

void kp_folds_close(kp_folds *f)
{
    if (!f)
        return;
    kp_st_close(f->st);
    free(f);
}

int kp_folds_write(const char *path, const int32_t *fold, int64_t n, int k, int repeats,
                   const char *kind, uint64_t seed, char *err, size_t errlen)
{
    if (n < 2 || k < 2 || k > n || repeats < 1)
        return kp_errf(err, errlen, KP_ERR_ARG,
                       "%s: cannot write %d folds x %d repeats of %lld rows", path, k, repeats,
                       (long long)n);
    int rc = check_fold_values(path, fold, n, k, repeats, err, errlen);
    if (rc < 0)
        return rc;
    char hex[KP_HASH_HEXLEN], num[32];
    folds_hash(fold, n * repeats, k, repeats, hex);
    kp_stw *w = kp_stw_create();
    int64_t shape[2] = {repeats, n};
    rc = w ? kp_stw_add(w, "fold", KP_I32, 2, shape, fold) : KP_ERR_NOMEM;
    meta_str(w, "kpipe.artifact", "folds", &rc);
    meta_num(w, "k", k, &rc);
    meta_num(w, "repeats", repeats, &rc);
    meta_str(w, "kind", kind, &rc);
    snprintf(num, sizeof num, "%llu", (unsigned long long)seed);
    meta_str(w, "seed", num, &rc);
    meta_str(w, "folds_hash", hex, &rc);
    if (rc < 0)
        rc = kp_errf(err, errlen, rc, "%s: cannot build the folds artifact: %s", path,
                     kp_strerror(rc));
    else
        rc = kp_stw_write(w, path, err, errlen);
    kp_stw_free(w);
    return rc;
}

/* ---- predictions ---- */

/* Reads the optional thresholds (n_out entries) and the classes count check. */
static int preds_optional(kp_preds *p, char *err, size_t errlen)
{
    const kp_st *st = p->st;
    int n, rc;
    if (kp_st_meta(st, "classes")) {
        char **cls = NULL;
        if ((rc = meta_strings(st, "classes", &cls, &n, err, errlen)) < 0)
            return rc;
        free_strings(cls, n);
        if ((rc = check_problem(st, &p->pb, n, err, errlen)) < 0)
            return rc;
    }
    kp_postproc pp = kp_postproc_default();
    if (kp_st_meta(st, "postproc") && kp_postproc_parse(kp_st_meta(st, "postproc"), &pp) < 0)
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: metadata postproc is not {\"threshold\": "
                       "0..1, \"min_size\": N}", kp_st_path(st));
    p->pp_threshold = pp.threshold;
    p->pp_min_size = pp.min_size;
    if (!kp_st_meta(st, "thresholds"))
        return 0;
    double *t = NULL;
    if ((rc = meta_numbers(st, "thresholds", &t, &n, err, errlen)) < 0)
        return rc;
    if (n != p->pb.n_out) {
        free(t);
        return kp_errf(err, errlen, KP_ERR_MISMATCH, "%s: %d thresholds for %d outputs",
                       kp_st_path(st), n, p->pb.n_out);
    }
    if (!(p->thresholds = malloc((size_t)n * sizeof *p->thresholds)))
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n && rc == 0; i++)
        p->thresholds[i] = (float)t[i];
    free(t);
    return rc;
}

/* Reads the preds metadata and tensors and checks they agree. */
static int preds_check(kp_preds *p, char *err, size_t errlen)
{
    const kp_st *st = p->st;
    const char *h;
    int rc;
    if ((rc = check_kind(st, "preds", err, errlen)) < 0 ||
        (rc = read_problem(st, &p->pb, err, errlen)) < 0 ||
        (rc = check_problem(st, &p->pb, -1, err, errlen)) < 0)
        return rc;
    int64_t shape[2] = {-1, p->pb.n_out};
    const kp_tensor *oof = kp_st_expect(st, "oof", KP_F32, 2, shape, err, errlen);
    const kp_tensor *test = oof ? kp_st_expect(st, "test", KP_F32, 2, shape, err, errlen) : NULL;
    if (!test)
        return KP_ERR_FORMAT;
    p->n_train = oof->shape[0];
    p->n_test = test->shape[0];
    p->oof = oof->data;
    p->test = test->data;
    if (!(h = meta_req(st, "folds_hash", err, errlen)))
        return KP_ERR_FORMAT;
    snprintf(p->folds_hash, sizeof p->folds_hash, "%s", h);
    if ((rc = meta_numbers(st, "fold_scores", &p->fold_scores, &p->n_folds, err, errlen)) < 0 ||
        (rc = meta_double(st, "cv_mean", &p->cv_mean, err, errlen)) < 0 ||
        (rc = meta_double(st, "cv_std", &p->cv_std, err, errlen)) < 0 ||
        (rc = meta_double(st, "oof_score", &p->oof_score, err, errlen)) < 0)
        return rc;
    p->metric = kp_st_meta(st, "metric") ? kp_st_meta(st, "metric") : "";
    p->model = kp_st_meta(st, "model") ? kp_st_meta(st, "model") : "";
    p->stage = kp_st_meta(st, "stage") ? kp_st_meta(st, "stage") : "";
    return preds_optional(p, err, errlen);
}

int kp_preds_open(const char *path, kp_preds **out, char *err, size_t errlen)
{
    kp_preds *p = calloc(1, sizeof *p);
    int rc;
    if (!p)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory", path);
    if ((rc = kp_st_open(path, &p->st, err, errlen)) < 0 || (rc = preds_check(p, err, errlen)) < 0) {
        kp_preds_close(p);
        return rc;
    }
    *out = p;
    return 0;
}

void kp_preds_close(kp_preds *p)
{
    if (!p)
        return;
    kp_st_close(p->st);
    free(p->fold_scores);
    free(p->thresholds);
    free(p);
}

/* Adds the metadata lists (fold scores, thresholds, classes) and extra_meta. */
static int preds_lists(kp_stw *w, const kp_preds_out *o)
{
    int rc = 0;
    char *scores = numbers_json(o->fold_scores, o->n_folds), *th = NULL;
    if (o->thresholds) {
        double *t = malloc((size_t)o->pb.n_out * sizeof *t);
        for (int i = 0; t && i < o->pb.n_out; i++)
            t[i] = o->thresholds[i];
        th = t ? numbers_json(t, o->pb.n_out) : NULL;
        free(t);
        if (!th)
            rc = KP_ERR_NOMEM;
    }
    if (!scores)
        rc = KP_ERR_NOMEM;
    meta_str(w, "fold_scores", scores, &rc);
    if (th)
        meta_str(w, "thresholds", th, &rc);
    if (o->classes_json)
        meta_str(w, "classes", o->classes_json, &rc);
    for (int i = 0; o->extra_meta && o->extra_meta[i] && o->extra_meta[i + 1]; i += 2)
        meta_str(w, o->extra_meta[i], o->extra_meta[i + 1], &rc);
    free(scores);
    free(th);
    return rc;
}

/* Adds the scalar metadata: kind, problem, names, scores. */
static int preds_scalars(kp_stw *w, const kp_preds_out *o)
{
    double mean = 0, var = 0;
    for (int i = 0; i < o->n_folds; i++)
        mean += o->fold_scores[i];
    mean = o->n_folds > 0 ? mean / o->n_folds : 0;
    for (int i = 0; i < o->n_folds; i++)
        var += (o->fold_scores[i] - mean) * (o->fold_scores[i] - mean);
    var = o->n_folds > 0 ? var / o->n_folds : 0;   /* population std, as logged */
    int rc = 0;
    meta_str(w, "kpipe.artifact", "preds", &rc);
    meta_str(w, "task", kp_task_name(o->pb.task), &rc);
    meta_num(w, "n_out", o->pb.n_out, &rc);
    if (o->pb.task == KP_TASK_SEGMENTATION) {
        char mask[64];
        snprintf(mask, sizeof mask, "%dx%dx%d", o->pb.mask_c, o->pb.mask_h, o->pb.mask_w);
        meta_str(w, "mask_size", mask, &rc);
    }
    meta_str(w, "metric", o->metric, &rc);
    meta_str(w, "folds_hash", o->folds_hash, &rc);
    meta_num(w, "cv_mean", mean, &rc);
    meta_num(w, "cv_std", sqrt(var), &rc);
    meta_num(w, "oof_score", o->oof_score, &rc);
    meta_str(w, "model", o->model, &rc);
    meta_str(w, "stage", o->stage, &rc);
    return rc;
}

int kp_preds_write(const char *path, const kp_preds_out *o, char *err, size_t errlen)
{
    if (o->pb.n_out < 1 || o->n_train < 0 || o->n_test < 0 || o->n_folds < 0 ||
        (o->n_folds > 0 && !o->fold_scores))
        return kp_errf(err, errlen, KP_ERR_ARG, "%s: invalid predictions to write", path);
    if (o->classes_json) {
        json_t *c = json_loads(o->classes_json, JSON_DECODE_ANY, NULL);
        int ok = json_is_array(c);
        json_decref(c);
        if (!ok)
            return kp_errf(err, errlen, KP_ERR_ARG, "%s: classes is not a JSON array", path);
    }
    kp_stw *w = kp_stw_create();
    int64_t so[2] = {o->n_train, o->pb.n_out}, se[2] = {o->n_test, o->pb.n_out};
    int rc = w ? kp_stw_add(w, "oof", KP_F32, 2, so, o->oof) : KP_ERR_NOMEM;
    if (rc == 0)
        rc = kp_stw_add(w, "test", KP_F32, 2, se, o->test);
    if (rc == 0)
        rc = preds_scalars(w, o);
    if (rc == 0)
        rc = preds_lists(w, o);
    if (rc < 0)
        rc = kp_errf(err, errlen, rc, "%s: cannot build the predictions artifact: %s", path,
                     kp_strerror(rc));
    else
        rc = kp_stw_write(w, path, err, errlen);
    kp_stw_free(w);
    return rc;
}

/* images.c - the images stage: an image competition's PNGs decoded once into
 * dataset.safetensors.
 *
 *   images:
 *     type: images
 *     train_dir: ../data/planet/train   # folders relative to the config
 *     test_dir: ../data/planet/test
 *     patterns: ["{id}.png"]            # several: bands stacked as channels
 *     size: 64x64                       # WxH or one number; default: the first train image's
 *     resize: area                      # area | bilinear
 *     test_ids: test                    # test | sample_submission: which CSV lists the test ids
 *
 * Train ids and targets come from competition.train, encoded as preprocess
 * encodes them (preprocess_targets.c: classes, space-separated tags or 0/1
 * columns, groups); the test ids from the id column of competition.test or
 * of the sample submission.  Every id's files are decoded in parallel
 * (lib/image_set.h), resized to `size`, and written as images_train and
 * images_test with the per-channel mean and std of the train images (the
 * layout of artifact.h; no X_train, no features).
 *
 * Caching: the executor hashes every input file it is given (stat-cached)
 * and a folder is not an input, so inputs() lists the two CSVs and then,
 * id by id (train, then test) and pattern by pattern, every image file the
 * stage will read.  A changed, added, removed or renamed image therefore
 * changes the task's key (or is reported missing before anything runs), at
 * the price of one path and one stat per image on every run.  When a CSV
 * cannot be read yet only the CSVs are listed, and the run reports why.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include "artifact.h"
#include "images_masks.h"
#include "preprocess_int.h"
#include "stage.h"
#include "../lib/csv.h"
#include "../lib/err.h"
#include "../lib/image_set.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "16-bit images are written as they are in memory: safetensors is little-endian");

#define PATH_LEN 4096
#define MAX_PATTERNS 256   /* files per id: at most 4 channels each, 1024 in all */

static const kp_keyspec images_keys[] = {
    {"train_dir", KP_PT_PATH, NULL, NULL, 0, 0, "folder of the train images"},
    {"test_dir", KP_PT_PATH, NULL, NULL, 0, 0, "folder of the test images"},
    {"patterns", KP_PT_LIST, "{id}.png", NULL, 0, 0,
     "file names with {id}; several are stacked as channels (bands), in this order"},
    {"size", KP_PT_STRING, "", NULL, 0, 0,
     "WxH (or one number: square) every image is resized to; default: the first train "
     "image's size"},
    {"resize", KP_PT_ENUM, "area", "area|bilinear", 0, 0,
     "how images are resized: area averaging (shrinking) or bilinear"},
    {"test_ids", KP_PT_ENUM, "test", "test|sample_submission", 0, 0,
     "the CSV whose id column lists the test images: competition.test or the sample submission"},
    {"masks", KP_PT_STRING, "", NULL, 0, 0,
     "segmentation: mask file name with {id}, e.g. \"{id}_mask.png\" (default: the RLE "
     "strings of competition.target)"},
    {"mask_dir", KP_PT_PATH, "", NULL, 0, 0, "folder of the mask files (default: train_dir)"},
    {"mask_classes", KP_PT_INT, "1", NULL, 1, 255,
     "1: binary masks (nonzero is the mask); N >= 2: pixel values (palette indices) are "
     "classes 0..N-1, 0 the background"},
    {"rle_order", KP_PT_ENUM, "column", "column|row", 0, 0,
     "pixel order of the train RLE strings: column-major (Kaggle's usual, Ultrasound Nerve) "
     "or row-major (Carvana)"},
    {NULL, 0, NULL, NULL, 0, 0, NULL},
};

/* ---- keys and paths ---- */

/* Parses "WxH" or "N" into *w and *h (each in [1, KP_IMAGE_MAX_SIDE]); 0 or KP_ERR_ARG. */
static int parse_size(const char *s, int *w, int *h)
{
    long a, b;
    char *end;
    if (!s || *s < '0' || *s > '9')
        return KP_ERR_ARG;
    a = strtol(s, &end, 10);
    b = a;
    if (*end == 'x' && end[1] >= '0' && end[1] <= '9')
        b = strtol(end + 1, &end, 10);
    if (*end || a < 1 || b < 1 || a > KP_IMAGE_MAX_SIDE || b > KP_IMAGE_MAX_SIDE)
        return KP_ERR_ARG;
    *w = (int)a;
    *h = (int)b;
    return 0;
}

/* The files a run reads. */
typedef struct paths {
    char train_csv[PATH_LEN], test_csv[PATH_LEN], train_dir[PATH_LEN], test_dir[PATH_LEN];
    char mask_dir[PATH_LEN];
} paths;

/* Resolves the CSVs (the competition's) and the folders (relative to the config). */
static int resolve(const kp_stage *st, const kp_config *cfg, paths *P)
{
    int sample = strcmp(kp_params_str(st->opts, "test_ids", "test"), "sample_submission") == 0;
    const char *test = sample ? cfg->comp.sample_submission : cfg->comp.test;
    const char *tr = kp_params_str(st->opts, "train_dir", ""), *te = kp_params_str(st->opts,
                                                                                   "test_dir", "");
    int a = snprintf(P->train_csv, PATH_LEN, "%s", cfg->comp.train ? cfg->comp.train : "");
    int b = snprintf(P->test_csv, PATH_LEN, "%s", test ? test : "");
    if (a < 0 || a >= PATH_LEN || b < 0 || b >= PATH_LEN ||
        kp_config_path(cfg, tr, P->train_dir, PATH_LEN) < 0 ||
        kp_config_path(cfg, te, P->test_dir, PATH_LEN) < 0)
        return KP_ERR_ARG;
    const char *md = kp_params_str(st->opts, "mask_dir", "");
    if (kp_config_path(cfg, *md ? md : tr, P->mask_dir, PATH_LEN) < 0)
        return KP_ERR_ARG;
    return 0;
}

/* ---- config check ---- */

/* Returns "FILE:LINE:COL: stages.NAME.KEY" for errors about key into buf. */
static const char *key_where(const kp_stage *st, const kp_config *cfg, const char *key,
                             char *buf, size_t n)
{
    int line = 0, col = 0;
    if (st->opts)
        kp_params_where(st->opts, key, &line, &col);
    if (line == 0)
        line = st->line, col = st->col;
    snprintf(buf, n, "%s:%d:%d: stages.%s.%s", cfg->path, line, col,
             st->base ? st->base : st->name, key);
    return buf;
}

/* Checks the patterns: at least one, each with "{id}". */
static int check_patterns(const kp_stage *st, const kp_config *cfg, char *err, size_t errlen)
{
    const char *const *pat;
    int n = 0;
    char at[PATH_LEN];
    if (kp_params_get_list(st->opts, "patterns", &pat, &n) < 0 || n < 1)
        return kp_errf(err, errlen, KP_ERR_CONFIG, "%s: needs at least one file pattern",
                       key_where(st, cfg, "patterns", at, sizeof at));
    for (int i = 0; i < n; i++)
        if (!strstr(pat[i], "{id}"))
            return kp_errf(err, errlen, KP_ERR_CONFIG,
                           "%s: pattern '%s' has no {id} (e.g. \"{id}.png\" or \"{id}_B1.png\")",
                           key_where(st, cfg, "patterns", at, sizeof at), pat[i]);
    return 0;
}

static int images_check(kp_stage *st, const kp_config *cfg, char *err, size_t errlen)
{
    const kp_competition *c = &cfg->comp;
    const char *size = kp_params_str(st->opts, "size", "");
    char at[PATH_LEN];
    int w, h;
    int seg = c->task == KP_TASK_SEGMENTATION;
    if (seg && !*kp_params_str(st->opts, "masks", "") && c->n_targets != 1)
        return kp_errf(err, errlen, KP_ERR_CONFIG, "%s:%d:%d: stages.%s: segmentation masks come "
                       "from PNG files (masks: \"{id}_mask.png\") or one RLE column "
                       "(competition.target); competition.target names %d", cfg->path, st->line,
                       st->col, st->base ? st->base : st->name, c->n_targets);
    static const char *const mask_keys[] = {"masks", "mask_dir", "mask_classes", "rle_order"};
    for (int i = 0; !seg && st->opts && i < 4; i++) {
        int line = 0, col = 0;   /* written in the YAML, not a default */
        kp_params_where(st->opts, mask_keys[i], &line, &col);
        if (line > 0)
            return kp_errf(err, errlen, KP_ERR_CONFIG, "%s: masks are for task segmentation, "
                           "the competition's task is %s", key_where(st, cfg, mask_keys[i], at,
                                                                     sizeof at),
                           kp_task_name(c->task));
    }
    if (!seg && c->task != KP_TASK_MULTILABEL && c->n_targets != 1)
        return kp_errf(err, errlen, KP_ERR_CONFIG, "%s:%d:%d: stages.%s: task %s takes one target "
                       "column, competition.target names %d", cfg->path, st->line, st->col,
                       st->base ? st->base : st->name, kp_task_name(c->task), c->n_targets);
    if (*size && parse_size(size, &w, &h) < 0)
        return kp_errf(err, errlen, KP_ERR_CONFIG, "%s: '%s' is not WxH or one number of pixels "
                       "(each 1 to %d)", key_where(st, cfg, "size", at, sizeof at), size,
                       KP_IMAGE_MAX_SIDE);
    if (strcmp(kp_params_str(st->opts, "test_ids", "test"), "sample_submission") == 0 &&
        (!c->sample_submission || !*c->sample_submission))
        return kp_errf(err, errlen, KP_ERR_CONFIG, "%s: sample_submission needs "
                       "competition.sample_submission", key_where(st, cfg, "test_ids", at,
                                                                    sizeof at));
    return check_patterns(st, cfg, err, errlen);
}

/* ---- files ---- */

static int images_outputs(const kp_stage *st, const kp_config *cfg, int part, kp_buf *out)
{
    char path[PATH_LEN];
    (void)cfg;
    if (part >= 0 || kp_stage_artifact_path(st, path, sizeof path) < 0)
        return KP_ERR_ARG;
    return kp_buf_printf(out, "%s\n", path);
}

/* Appends every image file of the ids in csv's id column (one per pattern). */
static int list_images(const char *csv_path, const char *id, const char *dir,
                       const char *const *pat, int n_pat, kp_buf *out)
{
    kp_csv *t = NULL;
    char path[PATH_LEN];
    long col;
    int rc = 0;
    if (kp_csv_read(csv_path, &t, NULL, 0) < 0 || (col = kp_csv_find(t, id ? id : "")) < 0) {
        kp_csv_free(t);
        return 0;   /* the run reports the unreadable CSV or the missing column */
    }
    for (size_t r = 0; r < kp_csv_rows(t) && rc == 0; r++)
        for (int k = 0; k < n_pat && rc == 0; k++)
            if (kp_image_path(dir, pat[k], kp_csv_get(t, r, (size_t)col), path, sizeof path) == 0)
                rc = kp_buf_printf(out, "%s\n", path);
    kp_csv_free(t);
    return rc;
}

static int images_inputs(const kp_stage *st, const kp_config *cfg, kp_buf *out)
{
    paths P;
    const char *const *pat;
    int n_pat = 0, rc = resolve(st, cfg, &P);
    if (rc < 0)
        return rc;
    if (kp_params_get_list(st->opts, "patterns", &pat, &n_pat) < 0)
        n_pat = 0;
    const char *masks = kp_params_str(st->opts, "masks", "");
    if ((rc = kp_buf_printf(out, "%s\n%s\n", P.train_csv, P.test_csv)) < 0 ||
        (rc = list_images(P.train_csv, cfg->comp.id, P.train_dir, pat, n_pat, out)) < 0 ||
        (cfg->comp.task == KP_TASK_SEGMENTATION && *masks &&
         (rc = list_images(P.train_csv, cfg->comp.id, P.mask_dir, &masks, 1, out)) < 0))
        return rc;
    return list_images(P.test_csv, cfg->comp.id, P.test_dir, pat, n_pat, out);
}

/* ---- a run ---- */

typedef struct run {
    const kp_task_ctx *ctx;
    paths P;
    const char *const *pat;
    int n_pat, width, height, channels, depth;
    kp_resize_mode mode;
    prep p;                     /* the train CSV and the targets (preprocess_targets.c) */
    kp_csv *test;
    long id_te;
    const char **train_ids, **test_ids;
    double mean[4 * MAX_PATTERNS], std[4 * MAX_PATTERNS];
    int32_t *train_sizes, *test_sizes;   /* segmentation: original sizes */
    kp_stw *w;
    char *err;
    size_t errlen;
} run;

static void run_free(run *r)
{
    kp_csv_free(r->p.train);
    kp_csv_free(r->test);
    free(r->p.target);
    free(r->p.y);
    free(r->p.groups);
    for (int i = 0; r->p.classes && i < r->p.n_classes; i++)
        free(r->p.classes[i]);
    free(r->p.classes);
    if (r->p.c)
        freelocale(r->p.c);
    free(r->train_ids);
    free(r->test_ids);
    free(r->train_sizes);
    free(r->test_sizes);
    kp_stw_free(r->w);
}

/* Collects column col of t as an id list (borrowed strings); an empty id is an error. */
static int collect_ids(run *r, const kp_csv *t, long col, const char ***out)
{
    size_t n = kp_csv_rows(t);
    if (!(*out = malloc((n ? n : 1) * sizeof **out)))
        return kp_errf(r->err, r->errlen, KP_ERR_NOMEM, "images: out of memory");
    for (size_t i = 0; i < n; i++) {
        (*out)[i] = kp_csv_get(t, i, (size_t)col);
        if (!*(*out)[i])
            return kp_errf(r->err, r->errlen, KP_ERR_FORMAT, "%s:%zu:%ld: empty id in column '%s'",
                           kp_csv_name(t), kp_csv_line(t, i), col + 1,
                           kp_csv_header(t, (size_t)col));
    }
    return 0;
}

/* Reads both CSVs, builds the targets and groups, and lists the ids. */
static int read_tables(run *r)
{
    const kp_competition *c = &r->ctx->cfg->comp;
    prep *p = &r->p;
    int rc;
    p->comp = c, p->err = r->err, p->errlen = r->errlen, p->log = r->ctx->log;
    kp_prep_default_na(p);
    if (!(p->c = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0)))
        return kp_prep_nomem(p);
    if ((rc = kp_csv_read(r->P.train_csv, &p->train, r->err, r->errlen)) < 0 ||
        (rc = kp_csv_read(r->P.test_csv, &r->test, r->err, r->errlen)) < 0)
        return rc;
    if (kp_csv_rows(p->train) == 0)
        return kp_errf(r->err, r->errlen, KP_ERR_FORMAT, "%s: no data rows", r->P.train_csv);
    if ((rc = kp_prep_need_col(p, p->train, c->id, "id (competition.id)", &p->id_tr)) < 0 ||
        (rc = kp_prep_need_col(p, r->test, c->id, "id (competition.id)", &r->id_te)) < 0 ||
        (rc = kp_prep_find_targets(p)) < 0 ||
        (c->task != KP_TASK_SEGMENTATION && (rc = kp_prep_build_targets(p)) < 0) ||
        (rc = kp_prep_build_groups(p)) < 0 ||
        (rc = collect_ids(r, p->train, p->id_tr, &r->train_ids)) < 0)
        return rc;
    return collect_ids(r, r->test, r->id_te, &r->test_ids);
}

/* Checks that every file of every id of a split exists, naming the first missing one. */
static int check_files(run *r, const kp_csv *t, long col, const char *dir)
{
    char path[PATH_LEN];
    struct stat sb;
    for (size_t i = 0; i < kp_csv_rows(t); i++)
        for (int k = 0; k < r->n_pat; k++) {
            const char *id = kp_csv_get(t, i, (size_t)col);
            if (kp_image_path(dir, r->pat[k], id, path, sizeof path) < 0)
                return kp_errf(r->err, r->errlen, KP_ERR_ARG, "id '%s': file name too long", id);
            if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
                return kp_errf(r->err, r->errlen, KP_ERR_NOTFOUND,
                               "missing image for id '%s' (%s:%zu): %s", id, kp_csv_name(t),
                               kp_csv_line(t, i), path);
        }
    return 0;
}

/* Reads the size key, or the first train image's size when it is not set. */
static int image_size(run *r)
{
    const char *size = kp_params_str(r->ctx->stage->opts, "size", "");
    char path[PATH_LEN];
    kp_image img;
    if (*size)
        return parse_size(size, &r->width, &r->height) < 0
                   ? kp_errf(r->err, r->errlen, KP_ERR_ARG, "images: size '%s' is not WxH", size)
                   : 0;
    if (kp_image_path(r->P.train_dir, r->pat[0], r->train_ids[0], path, sizeof path) < 0)
        return kp_errf(r->err, r->errlen, KP_ERR_ARG, "images: file name too long");
    int rc = kp_image_read_png(path, &img, r->err, r->errlen);
    r->width = img.width;
    r->height = img.height;
    kp_image_free(&img);
    return rc;
}

/* Decodes one split's ids into tensor `name` of r->w; the first split sets
 * channels and depth, the second must match. */
static int decode_split(run *r, const char *dir, const char *const *ids, int64_t n,
                        const char *name, int first)
{
    kp_image_set_opts o = {dir, r->pat, r->n_pat, r->width, r->height, r->mode, r->ctx->threads};
    int64_t shape[4] = {n, r->height, r->width, r->channels};
    void *data = NULL;
    int channels = r->channels, depth = r->depth, rc = 0;
    if (n > 0 && (rc = kp_image_set_load(&o, ids, n, &data, &channels, &depth, r->err,
                                         r->errlen)) < 0)
        return rc;
    if (!first && n > 0 && (channels != r->channels || depth != r->depth))
        rc = kp_errf(r->err, r->errlen, KP_ERR_FORMAT, "%s: the test images have %d channel(s) "
                     "of %d bits but the train images %d of %d bits", dir, channels, depth,
                     r->channels, r->depth);
    r->channels = channels, r->depth = depth, shape[3] = channels;
    if (rc == 0 && first)
        kp_image_set_stats(data, n, r->height, r->width, channels, depth, r->mean, r->std);
    if (rc == 0 && kp_stw_add(r->w, name, depth == 16 ? KP_U16 : KP_U8, 4, shape, data) < 0)
        rc = kp_errf(r->err, r->errlen, KP_ERR_NOMEM, "images: out of memory for %s", name);
    free(data);
    return rc;
}

/* Segmentation: decodes the train masks into the targets and reads every
 * image's original size. */
static int decode_masks(run *r)
{
    const kp_stage *st = r->ctx->stage;
    prep *p = &r->p;
    int64_t n = (int64_t)kp_csv_rows(p->train), n_te = (int64_t)kp_csv_rows(r->test);
    const char *masks = kp_params_str(st->opts, "masks", "");
    const char **rle = NULL;
    size_t *lines = NULL;
    kp_masks_opts o = {.mask_dir = r->P.mask_dir, .mask_pattern = *masks ? masks : NULL,
                       .rle_file = kp_csv_name(p->train), .image_dir = r->P.train_dir,
                       .image_pattern = r->pat[0], .width = r->width, .height = r->height,
                       .classes = (int)kp_params_int(st->opts, "mask_classes", 1),
                       .threads = r->ctx->threads};
    kp_rle_order_parse(kp_params_str(st->opts, "rle_order", "column"), &o.order);
    p->pb = (kp_problem){.task = KP_TASK_SEGMENTATION, .mask_c = o.classes,
                         .mask_h = r->height, .mask_w = r->width,
                         .n_out = o.classes * r->height * r->width};
    p->y = malloc((size_t)n * r->height * r->width * sizeof *p->y);
    r->train_sizes = malloc((size_t)n * 2 * sizeof *r->train_sizes);
    r->test_sizes = malloc((size_t)(n_te > 0 ? n_te : 1) * 2 * sizeof *r->test_sizes);
    if (!o.mask_pattern) {
        rle = malloc((size_t)n * sizeof *rle);
        lines = malloc((size_t)n * sizeof *lines);
        o.rle_col = p->target[0] + 1;
    }
    int rc = 0;
    if (!p->y || !r->train_sizes || !r->test_sizes || (!o.mask_pattern && (!rle || !lines)))
        rc = kp_errf(r->err, r->errlen, KP_ERR_NOMEM, "images: out of memory for the masks");
    for (int64_t i = 0; rc == 0 && rle && i < n; i++) {
        rle[i] = kp_csv_get(p->train, (size_t)i, (size_t)p->target[0]);
        lines[i] = kp_csv_line(p->train, (size_t)i);
    }
    o.rle = rle, o.rle_lines = lines;
    if (rc == 0)
        rc = kp_masks_load(&o, r->train_ids, n, p->y, r->train_sizes, r->err, r->errlen);
    if (rc == 0)
        rc = kp_image_sizes(r->P.test_dir, r->pat[0], r->test_ids, n_te, r->ctx->threads,
                            r->test_sizes, r->err, r->errlen);
    free(rle);
    free(lines);
    return rc;
}

/* ---- writing ---- */

/* Adds PREFIX.offsets and PREFIX.bytes for ids[0..n). */
static int add_ids(kp_stw *w, const char *const *ids, size_t n, const char *prefix)
{
    int64_t *off = malloc((n + 1) * sizeof *off);
    uint8_t *bytes = NULL;
    char name[64];
    int rc = KP_ERR_NOMEM;
    if (!off)
        goto fail;
    off[0] = 0;
    for (size_t i = 0; i < n; i++)
        off[i + 1] = off[i] + (int64_t)strlen(ids[i]);
    if (!(bytes = malloc(off[n] ? (size_t)off[n] : 1)))
        goto fail;
    for (size_t i = 0; i < n; i++)
        memcpy(bytes + off[i], ids[i], (size_t)(off[i + 1] - off[i]));
    int64_t so[1] = {(int64_t)n + 1}, sb[1] = {off[n]};
    snprintf(name, sizeof name, "%s.offsets", prefix);
    if ((rc = kp_stw_add(w, name, KP_I64, 1, so, off)) == 0) {
        snprintf(name, sizeof name, "%s.bytes", prefix);
        rc = kp_stw_add(w, name, KP_U8, 1, sb, bytes);
    }
fail:
    free(off);
    free(bytes);
    return rc;
}

/* Sets metadata key to the JSON array of n strings (or, with s NULL, numbers v). */
static int meta_json(kp_stw *w, const char *key, const char *const *s, const double *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, s ? json_string(s[i]) : json_real(v[i])) < 0) {
            json_decref(a);
            a = NULL;
        }
    char *text = a ? json_dumps(a, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
    int rc = text ? kp_stw_meta(w, key, text) : KP_ERR_FORMAT;
    json_decref(a);
    free(text);
    return rc;
}

/* Segmentation: the masks' tensors and metadata. */
static int add_masks(run *r)
{
    const kp_stage *st = r->ctx->stage;
    const prep *p = &r->p;
    int64_t n = (int64_t)kp_csv_rows(p->train), sy[2] = {n, (int64_t)r->height * r->width};
    int64_t s1[2] = {n, 2}, s2[2] = {(int64_t)kp_csv_rows(r->test), 2};
    char size[64];
    const char *names[255];
    char buf[255][12];   /* "%d" of an int: 11 bytes and the NUL */
    int k = p->pb.mask_c;
    for (int i = 0; i < k; i++) {
        snprintf(buf[i], sizeof buf[i], "%d", i);
        names[i] = k == 1 ? "mask" : buf[i];
    }
    snprintf(size, sizeof size, "%dx%dx%d", k, r->height, r->width);
    int rc;
    if ((rc = kp_stw_add(r->w, "y", KP_F32, 2, sy, p->y)) < 0 ||
        (rc = kp_stw_add(r->w, "train_sizes", KP_I32, 2, s1, r->train_sizes)) < 0 ||
        (rc = kp_stw_add(r->w, "test_sizes", KP_I32, 2, s2, r->test_sizes)) < 0 ||
        (rc = kp_stw_meta(r->w, "mask_size", size)) < 0 ||
        (rc = meta_json(r->w, "classes", names, NULL, (size_t)k)) < 0 ||
        (!*kp_params_str(st->opts, "masks", "") &&
         (rc = kp_stw_meta(r->w, "rle_order", kp_params_str(st->opts, "rle_order", "column"))) < 0))
        return kp_errf(r->err, r->errlen, rc, "images: out of memory adding the masks");
    return 0;
}

/* Adds the targets, ids and metadata of the dataset to r->w. */
static int add_rest(run *r)
{
    const kp_competition *c = &r->ctx->cfg->comp;
    const prep *p = &r->p;
    int64_t n = (int64_t)kp_csv_rows(p->train), sy[2] = {n, p->pb.n_out};
    char num[32], size[64];
    snprintf(num, sizeof num, "%d", p->pb.n_out);
    snprintf(size, sizeof size, "%dx%d", r->width, r->height);
    int ml = p->pb.task == KP_TASK_MULTILABEL, seg = p->pb.task == KP_TASK_SEGMENTATION, rc;
    if ((seg ? (rc = add_masks(r)) : (rc = kp_stw_add(r->w, "y", KP_F32, ml ? 2 : 1, sy,
                                                       p->y))) < 0 ||
        (p->groups && (rc = kp_stw_add(r->w, "groups", KP_I64, 1, sy, p->groups)) < 0) ||
        (rc = add_ids(r->w, r->train_ids, (size_t)n, "train_ids")) < 0 ||
        (rc = add_ids(r->w, r->test_ids, kp_csv_rows(r->test), "test_ids")) < 0 ||
        (rc = kp_stw_meta(r->w, "kpipe.artifact", "dataset")) < 0 ||
        (rc = kp_stw_meta(r->w, "task", kp_task_name(p->pb.task))) < 0 ||
        (rc = kp_stw_meta(r->w, "n_out", num)) < 0 ||
        (rc = kp_stw_meta(r->w, "id_column", c->id)) < 0 ||
        (rc = kp_stw_meta(r->w, "features", "[]")) < 0 ||
        (rc = kp_stw_meta(r->w, "image_size", size)) < 0 ||
        (p->group >= 0 && (rc = kp_stw_meta(r->w, "group_column", c->folds.group)) < 0) ||
        (!seg && (rc = meta_json(r->w, "classes", (const char *const *)p->classes, NULL,
                                 (size_t)p->n_classes)) < 0) ||
        (rc = meta_json(r->w, "target_columns", (const char *const *)c->targets, NULL,
                        (size_t)c->n_targets)) < 0 ||
        (rc = meta_json(r->w, "image_patterns", r->pat, NULL, (size_t)r->n_pat)) < 0 ||
        (rc = meta_json(r->w, "channel_mean", NULL, r->mean, (size_t)r->channels)) < 0 ||
        (rc = meta_json(r->w, "channel_std", NULL, r->std, (size_t)r->channels)) < 0)
        return kp_errf(r->err, r->errlen, rc, "images: cannot build the dataset (%s)",
                       rc == KP_ERR_FORMAT ? "a class label or column name is not valid UTF-8"
                                           : "out of memory");
    return 0;
}

static void log_summary(const run *r, double secs)
{
    FILE *L = r->ctx->log;
    if (!L)
        return;
    fprintf(L, "images: %zu train images from %s, %zu test images from %s: %dx%d, %d channel(s) "
            "of %d bits, decoded in %.1fs\n", kp_csv_rows(r->p.train), r->P.train_dir,
            kp_csv_rows(r->test), r->P.test_dir, r->width, r->height, r->channels, r->depth,
            secs);
    fprintf(L, "images: channel mean/std:");
    for (int k = 0; k < r->channels; k++)
        fprintf(L, " %.2f/%.2f", r->mean[k], r->std[k]);
    fprintf(L, "\nimages: task %s, n_out %d, %d classes%s\n", kp_task_name(r->p.pb.task),
            r->p.pb.n_out, r->p.n_classes, r->p.groups ? ", groups stored" : "");
    fflush(L);
}

/* Reads the options into r. */
static int read_options(run *r)
{
    const kp_stage *st = r->ctx->stage;
    r->mode = strcmp(kp_params_str(st->opts, "resize", "area"), "bilinear") == 0
                  ? KP_RESIZE_BILINEAR : KP_RESIZE_AREA;
    if (kp_params_get_list(st->opts, "patterns", &r->pat, &r->n_pat) < 0 || r->n_pat < 1) {
        static const char *const def[] = {"{id}.png"};
        r->pat = def;
        r->n_pat = 1;
    }
    if (r->n_pat > MAX_PATTERNS)
        return kp_errf(r->err, r->errlen, KP_ERR_ARG, "images: %d patterns; at most %d",
                       r->n_pat, MAX_PATTERNS);
    if (resolve(st, r->ctx->cfg, &r->P) < 0)
        return kp_errf(r->err, r->errlen, KP_ERR_ARG, "stage '%s': path too long", st->name);
    return 0;
}

static int images_run(const kp_task_ctx *ctx, char *err, size_t errlen)
{
    run r = {.ctx = ctx, .err = err, .errlen = errlen, .id_te = -1};
    char out[PATH_LEN];
    struct timespec t0, t1;
    int rc;
    r.p.group = -1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if ((rc = read_options(&r)) < 0 || (rc = read_tables(&r)) < 0 ||
        (rc = check_files(&r, r.p.train, r.p.id_tr, r.P.train_dir)) < 0 ||
        (rc = check_files(&r, r.test, r.id_te, r.P.test_dir)) < 0 || (rc = image_size(&r)) < 0)
        goto fail;
    if (!(r.w = kp_stw_create())) {
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "images: out of memory");
        goto fail;
    }
    if ((rc = decode_split(&r, r.P.train_dir, r.train_ids, (int64_t)kp_csv_rows(r.p.train),
                           "images_train", 1)) < 0 ||
        (rc = decode_split(&r, r.P.test_dir, r.test_ids, (int64_t)kp_csv_rows(r.test),
                           "images_test", 0)) < 0 ||
        (ctx->cfg->comp.task == KP_TASK_SEGMENTATION && (rc = decode_masks(&r)) < 0) ||
        (rc = add_rest(&r)) < 0)
        goto fail;
    if (kp_stage_artifact_path(ctx->stage, out, sizeof out) < 0) {
        rc = kp_errf(err, errlen, KP_ERR_ARG, "stage '%s': path too long", ctx->stage->name);
        goto fail;
    }
    if ((rc = kp_stw_write(r.w, out, err, errlen)) < 0)
        goto fail;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    log_summary(&r, (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9);
fail:
    run_free(&r);
    return rc;
}

const kp_stage_ops kp_stage_images = {
    .name = "images",
    .doc = "decodes the competition's PNG images (resized, bands stacked) into one dataset",
    .keys = images_keys,
    .output = KP_ART_DATASET,
    .check = images_check,
    .outputs = images_outputs,
    .inputs = images_inputs,
    .run = images_run,
};

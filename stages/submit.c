/* submit.c - the submit stage: test predictions as a Kaggle submission CSV.
 *
 *   submit:
 *     type: submit
 *     needs: [prep, stack]          # one dataset, one predictions stage
 *     output: ../submissions/x.csv  # relative to the config's folder
 *     format: auto                  # auto | proba | label
 *     threshold: 0.5                # default: per-output thresholds of the
 *                                   # predictions, else the competition's
 *
 * The file has the sample submission's header and its id order (the sample's
 * ids and the test ids must be the same set).  Each non-id column is either
 * a class name (its probability; with format label 1 if the row is predicted
 * to be of that class, else 0) or the target:
 *   binary      P(positive) (auto, proba) or the predicted class label (label)
 *   multiclass  the most probable class label
 *   regression  the value
 *   multilabel  the tags whose probability is above the threshold (p > t, as
 *               the metrics decide and the per-label thresholds were searched),
 *               space-separated
 *   segmentation each test image's mask as the competition's RLE (or Dstl's
 *               WKT MULTIPOLYGON per image and class), submit_seg.c
 * Numbers are written "%.9g" in the C locale.  The text is checked against
 * the competition's submission contract (contract.h) before anything is
 * written: a file that fails it is not written and the stage fails.  The same
 * bytes then go to the output path and to DIR/submission.csv, each
 * atomically, and a `written` row goes to the ledger beside the output
 * (lib/ledger.h).
 */
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "stage.h"
#include "artifact.h"
#include "contract.h"
#include "submit_upload.h"
#include "submit_masks.h"
#include "../lib/afile.h"
#include "../lib/csv.h"
#include "../lib/err.h"
#include "../lib/gzip.h"
#include "../lib/hash.h"
#include "../lib/ledger.h"

#define PATH_LEN 4096

enum { F_AUTO, F_PROBA, F_LABEL };

static const kp_keyspec submit_keys[] = {
    {"output", KP_PT_PATH, NULL, NULL, 0, 0, "the submission CSV, relative to the config"},
    {"format", KP_PT_ENUM, "auto", "auto|proba|label", 0, 0,
     "auto: probabilities (binary, per-class columns), labels, values, tags"},
    {"threshold", KP_PT_FLOAT, "", NULL, 0, 1,
     "probability threshold for labels and tags (default: the predictions', else the "
     "competition's)"},
    {"rle_order", KP_PT_ENUM, "", "column|row", 0, 0,
     "segmentation: pixel order of the RLE (default: the train RLE's, else column-major)"},
    {"empty", KP_PT_STRING, "", NULL, 0, 0, "segmentation: the cell of an empty mask"},
    {"wkt", KP_PT_BOOL, "false", NULL, 0, 0,
     "segmentation: masks as WKT MULTIPOLYGONs (Dstl) instead of RLE"},
    {"class_column", KP_PT_STRING, "", NULL, 0, 0,
     "segmentation: the sample's column naming each row's class (Dstl's ClassType)"},
    {"grid_sizes", KP_PT_PATH, "", NULL, 0, 0,
     "WKT: CSV of id,Xmax,Ymin per image (Dstl's grid_sizes.csv) scaling pixels to the grid"},
    {"gzip", KP_PT_BOOL, "false", NULL, 0, 0, "write the output gzip-compressed"},
    {"kaggle", KP_PT_STRING, "", NULL, 0, 0,
     "upload the file to this Kaggle competition (once per distinct prediction)"},
    {"message", KP_PT_STRING, "", NULL, 0, 0,
     "kaggle: the submission's description (default: config, stage and CV)"},
    {"reupload", KP_PT_BOOL, "false", NULL, 0, 0,
     "kaggle: upload even a prediction the ledger shows uploaded already"},
    {"validate", KP_PT_BOOL, "true", NULL, 0, 0,
     "segmentation: first check that every train RLE string re-encodes identically"},
    {NULL, 0, NULL, NULL, 0, 0, NULL},
};

/* ---- config ---- */

static int submit_check(kp_stage *st, const kp_config *cfg, char *err, size_t errlen)
{
    int n_data = 0, n_preds = 0;
    for (int i = 0; i < st->n_needs; i++) {
        const kp_stage *n = &cfg->stages[st->needs[i]];
        kp_artifact_kind k = n->ops ? n->ops->output : KP_ART_NONE;
        n_data += k == KP_ART_DATASET;
        n_preds += k == KP_ART_PREDS;
        if (k != KP_ART_DATASET && k != KP_ART_PREDS && k != KP_ART_FOLDS)
            return kp_errf(err, errlen, KP_ERR_CONFIG,
                           "%s:%d:%d: stages.%s.needs: submit stage '%s' cannot use stage '%s' "
                           "(type %s)", cfg->path, st->line, st->col,
                           st->base ? st->base : st->name, st->name, n->name,
                           n->type ? n->type : "?");
    }
    if (n_data != 1 || n_preds != 1)
        return kp_errf(err, errlen, KP_ERR_CONFIG,
                       "%s:%d:%d: stages.%s.needs: submit stage '%s' needs exactly one dataset "
                       "stage (type preprocess) and one predictions stage (type train or stack), "
                       "found %d and %d", cfg->path, st->line, st->col,
                       st->base ? st->base : st->name, st->name, n_data, n_preds);
    if (!cfg->comp.sample_submission || !*cfg->comp.sample_submission)
        return kp_errf(err, errlen, KP_ERR_CONFIG,
                       "%s:%d:%d: stages.%s: a submit stage needs competition.sample_submission",
                       cfg->path, st->line, st->col, st->base ? st->base : st->name);
    const char *fmt = kp_params_str(st->opts, "format", "auto");
    if (cfg->comp.task == KP_TASK_REGRESSION && strcmp(fmt, "label") == 0) {
        int line = st->line, col = st->col;
        kp_params_where(st->opts, "format", &line, &col);
        return kp_errf(err, errlen, KP_ERR_CONFIG,
                       "%s:%d:%d: stages.%s.format: a regression task has no labels",
                       cfg->path, line, col, st->base ? st->base : st->name);
    }
    return 0;
}

static int output_path(const kp_stage *st, const kp_config *cfg, char *out, size_t outlen)
{
    const char *rel = kp_params_str(st->opts, "output", NULL);
    return rel && *rel ? kp_config_path(cfg, rel, out, outlen) : KP_ERR_ARG;
}

static int submit_outputs(const kp_stage *st, const kp_config *cfg, int part, kp_buf *out)
{
    char a[PATH_LEN], b[PATH_LEN];
    if (part >= 0)
        return 0;
    if (output_path(st, cfg, a, sizeof a) < 0 || kp_stage_artifact_path(st, b, sizeof b) < 0)
        return KP_ERR_ARG;
    return kp_buf_printf(out, "%s\n%s\n", a, b);
}

static int submit_inputs(const kp_stage *st, const kp_config *cfg, kp_buf *out)
{
    (void)st;
    if (!cfg->comp.sample_submission || !*cfg->comp.sample_submission)
        return 0;
    return kp_buf_printf(out, "%s\n", cfg->comp.sample_submission);
}

/* ---- the test id index ---- */

typedef struct id_map {
    const kp_strings *ids;
    int64_t *slot;      /* test row + 1, 0 = empty */
    size_t mask;
} id_map;

static uint64_t fnv1a(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 1099511628211ull;
    return h;
}

static const uint8_t *id_bytes(const kp_strings *s, int64_t i, size_t *len)
{
    *len = (size_t)(s->offsets[i + 1] - s->offsets[i]);
    return s->bytes + s->offsets[i];
}

/* Returns the test row of id (len bytes), or -1; *free_slot gets where it would go. */
static int64_t id_find(const id_map *m, const void *id, size_t len, size_t *free_slot)
{
    size_t h = (size_t)fnv1a(id, len) & m->mask;
    for (;; h = (h + 1) & m->mask) {
        if (!m->slot[h]) {
            *free_slot = h;
            return -1;
        }
        size_t l;
        const uint8_t *b = id_bytes(m->ids, m->slot[h] - 1, &l);
        if (l == len && memcmp(b, id, len) == 0)
            return m->slot[h] - 1;
    }
}

/* Indexes the test ids; a duplicate is an error. */
static int id_map_build(id_map *m, const kp_strings *ids, const char *dname, char *err,
                        size_t errlen)
{
    size_t cap = 16;
    while (cap < (size_t)ids->n * 2)
        cap *= 2;
    m->ids = ids;
    m->mask = cap - 1;
    if (!(m->slot = calloc(cap, sizeof *m->slot)))
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory indexing the test ids");
    for (int64_t i = 0; i < ids->n; i++) {
        size_t len, at;
        const uint8_t *b = id_bytes(ids, i, &len);
        if (id_find(m, b, len, &at) >= 0)
            return kp_errf(err, errlen, KP_ERR_FORMAT, "dataset '%s': test id '%.*s' appears twice",
                           dname, (int)len, (const char *)b);
        m->slot[at] = i + 1;
    }
    return 0;
}

/* ---- the submission ---- */

typedef struct sub {
    const kp_task_ctx *ctx;
    const kp_dataset *d;
    const kp_preds *p;
    const char *dname;       /* the dataset stage's name */
    kp_csv *sample;
    long id_col;
    int *col_class;          /* per sample column: class index, -1 target, -2 id */
    int64_t *row_of;         /* per sample row: test row */
    int format;
    double threshold;        /* < 0: not set on the stage */
    char **cells;            /* segmentation: per sample row, the mask's cell (owned) */
} sub;

static double sub_threshold(const sub *s, int j)
{
    if (s->threshold >= 0)
        return s->threshold;
    if (s->p->thresholds)
        return s->p->thresholds[j];
    return s->ctx->cfg->comp.threshold > 0 ? s->ctx->cfg->comp.threshold : 0.5;
}

/* Maps every sample row to its test row; errors name the first bad id. */
static int map_rows(sub *s, char *err, size_t errlen)
{
    id_map m = {0};
    size_t n = kp_csv_rows(s->sample), at;
    const char *file = kp_csv_name(s->sample);
    char *seen = calloc((size_t)s->d->n_test + 1, 1);
    /* Dstl: one row per image and class (class_column), so ids repeat */
    int repeat = s->d->pb.task == KP_TASK_SEGMENTATION &&
                 *kp_params_str(s->ctx->stage->opts, "class_column", "");
    int rc = seen ? id_map_build(&m, &s->d->test_ids, s->dname, err, errlen)
                  : kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    for (size_t r = 0; rc == 0 && r < n; r++) {
        const char *id = kp_csv_get(s->sample, r, (size_t)s->id_col);
        int64_t t = id_find(&m, id, strlen(id), &at);
        if (t < 0)
            rc = kp_errf(err, errlen, KP_ERR_MISMATCH, "%s:%zu: id '%s' (row %zu) is not a test id "
                         "of dataset '%s'", file, kp_csv_line(s->sample, r), id, r + 1, s->dname);
        else if (seen[t] && !repeat)
            rc = kp_errf(err, errlen, KP_ERR_FORMAT, "%s:%zu: id '%s' (row %zu) appears twice",
                         file, kp_csv_line(s->sample, r), id, r + 1);
        else
            seen[t] = 1, s->row_of[r] = t;
    }
    for (int64_t t = 0; rc == 0 && t < s->d->n_test; t++) {
        char id[256];
        if (seen[t])
            continue;
        kp_strings_get(&s->d->test_ids, t, id, sizeof id);
        rc = kp_errf(err, errlen, KP_ERR_MISMATCH, "test id '%s' (test row %lld of dataset "
                         "'%s') is missing from %s", id, (long long)t + 1, s->dname, file);
    }
    free(seen);
    free(m.slot);
    return rc;
}

/* Returns the class index named `name`, or -1. */
static int class_index(const kp_dataset *d, const char *name)
{
    for (int c = 0; c < d->n_classes; c++)
        if (strcmp(d->classes[c], name) == 0)
            return c;
    return -1;
}

/* Classifies the sample's columns and checks they can be written in s->format. */
static int map_cols(sub *s, char *err, size_t errlen)
{
    kp_task_kind task = s->d->pb.task;
    for (size_t c = 0; c < kp_csv_cols(s->sample); c++) {
        const char *h = kp_csv_header(s->sample, c);
        const char *cls = kp_params_str(s->ctx->stage->opts, "class_column", "");
        int k = (long)c == s->id_col || (task == KP_TASK_SEGMENTATION && !strcmp(h, cls)) ? -2
                : task == KP_TASK_REGRESSION || task == KP_TASK_SEGMENTATION ? -1
                : class_index(s->d, h);
        s->col_class[c] = k;
        if (k == -1 && s->format == F_PROBA &&
            (task == KP_TASK_MULTICLASS || task == KP_TASK_MULTILABEL))
            return kp_errf(err, errlen, KP_ERR_CONFIG,
                           "%s:1: column '%s' is not a class name: format proba of a %s task "
                           "needs one column per class", kp_csv_name(s->sample), h,
                           kp_task_name(task));
        if (k == -1 && s->format == F_LABEL && task == KP_TASK_REGRESSION)
            return kp_errf(err, errlen, KP_ERR_CONFIG, "a regression task has no labels");
    }
    return 0;
}

/* Fails naming the id of the first non-finite test prediction. */
static int check_finite(const sub *s, char *err, size_t errlen)
{
    int n_out = s->p->pb.n_out;
    for (int64_t i = 0; i < s->p->n_test * n_out; i++)
        if (!isfinite(s->p->test[i])) {
            char id[256];
            kp_strings_get(&s->d->test_ids, i / n_out, id, sizeof id);
            return kp_errf(err, errlen, KP_ERR_FORMAT, "the prediction for test id '%s' is %g",
                           id, (double)s->p->test[i]);
        }
    return 0;
}

static const char *class_label(const kp_dataset *d, int c, char *buf, size_t len)
{
    if (c < d->n_classes)
        return d->classes[c];
    snprintf(buf, len, "%d", c);
    return buf;
}

static int argmax(const float *p, int n)
{
    int best = 0;
    for (int j = 1; j < n; j++)
        if (p[j] > p[best])
            best = j;
    return best;
}

/* Writes the space-separated tags of one multilabel row. */
static int write_tags(FILE *f, const sub *s, const float *p)
{
    char buf[32];
    int n = 0;
    for (int j = 0; j < s->p->pb.n_out; j++)
        if (p[j] > sub_threshold(s, j) &&
            fprintf(f, "%s%s", n++ ? " " : "", class_label(s->d, j, buf, sizeof buf)) < 0)
            return KP_ERR_IO;
    return 0;
}

/* Writes the cell of a class column (k >= 0). */
static int write_class_cell(FILE *f, const sub *s, const float *p, int k)
{
    kp_task_kind task = s->d->pb.task;
    double v = task == KP_TASK_BINARY ? (k == 1 ? p[0] : 1.0 - p[0]) : p[k];
    if (s->format != F_LABEL)
        return fprintf(f, "%.9g", v) < 0 ? KP_ERR_IO : 0;
    int on = task == KP_TASK_MULTICLASS ? argmax(p, s->p->pb.n_out) == k
             : task == KP_TASK_BINARY   ? (p[0] >= sub_threshold(s, 0)) == (k == 1)
                                        : p[k] > sub_threshold(s, k);   /* multilabel */
    return fputs(on ? "1" : "0", f) < 0 ? KP_ERR_IO : 0;
}

/* Writes the cell of the target column. */
static int write_target_cell(FILE *f, const sub *s, const float *p)
{
    char buf[32];
    switch (s->d->pb.task) {
    case KP_TASK_BINARY:
        if (s->format == F_LABEL)
            return kp_csv_write_field(f, class_label(s->d, p[0] >= sub_threshold(s, 0), buf,
                                                     sizeof buf));
        return fprintf(f, "%.9g", (double)p[0]) < 0 ? KP_ERR_IO : 0;
    case KP_TASK_MULTICLASS:
        return kp_csv_write_field(f, class_label(s->d, argmax(p, s->p->pb.n_out), buf, sizeof buf));
    case KP_TASK_MULTILABEL:
        return write_tags(f, s, p);
    default:
        return fprintf(f, "%.9g", (double)p[0]) < 0 ? KP_ERR_IO : 0;
    }
}

/* Writes the header and every row to f. */
static int write_csv(FILE *f, const sub *s)
{
    size_t cols = kp_csv_cols(s->sample), rows = kp_csv_rows(s->sample);
    int rc = 0;
    for (size_t c = 0; rc == 0 && c < cols; c++)
        if ((c && putc(',', f) == EOF) || kp_csv_write_field(f, kp_csv_header(s->sample, c)) < 0)
            rc = KP_ERR_IO;
    if (rc == 0 && putc('\n', f) == EOF)
        rc = KP_ERR_IO;
    for (size_t r = 0; rc == 0 && r < rows; r++) {
        const float *p = s->p->test + s->row_of[r] * s->p->pb.n_out;
        for (size_t c = 0; rc == 0 && c < cols; c++) {
            int k = s->col_class[c];
            if (c && putc(',', f) == EOF)
                rc = KP_ERR_IO;
            else if (k == -2)
                rc = kp_csv_write_field(f, kp_csv_get(s->sample, r, c));
            else if (s->cells)
                rc = kp_csv_write_field(f, s->cells[r]);
            else
                rc = k >= 0 ? write_class_cell(f, s, p, k) : write_target_cell(f, s, p);
        }
        if (rc == 0 && putc('\n', f) == EOF)
            rc = KP_ERR_IO;
    }
    return rc;
}

/* Formats the whole submission into *text (caller frees) under the C locale. */
static int format_csv(const sub *s, char **text, size_t *len, char *err, size_t errlen)
{
    locale_t c = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    locale_t old = c ? uselocale(c) : (locale_t)0;
    FILE *f = open_memstream(text, len);
    int rc = f ? write_csv(f, s) : KP_ERR_NOMEM;
    if (f && fclose(f) != 0 && rc == 0)
        rc = KP_ERR_NOMEM;
    if (c) {
        uselocale(old);
        freelocale(c);
    }
    return rc < 0 ? kp_errf(err, errlen, rc, "could not format the submission") : 0;
}

/* Checks the text meant for out against the competition's submission contract. */
static int check_contract(const sub *s, const char *out, const char *text, size_t len,
                          char *err, size_t errlen)
{
    kp_contract *c = NULL;
    int rc = kp_contract_create(s->ctx->cfg, s->ctx->stage, (const char *const *)s->d->classes,
                                s->d->n_classes, &c, err, errlen);
    if (rc == 0)
        rc = kp_contract_check(c, out, text, len, err, errlen);
    if (rc == 0 && s->ctx->log)
        fprintf(s->ctx->log, "the submission meets its contract\n");
    kp_contract_free(c);
    return rc;
}

/* Appends a `written` row for out (text: its uncompressed bytes) to the
 * ledger in out's folder. */
static int record(const sub *s, const char *out, const char *text, size_t len, char *err,
                  size_t errlen)
{
    const kp_config *cfg = s->ctx->cfg;
    const char *kaggle = kp_params_str(s->ctx->stage->opts, "kaggle", ""), *slash;
    char path[PATH_LEN], now[32], cfg_hex[KP_HASH_HEXLEN], hex[KP_HASH_HEXLEN], cv[32] = "";
    if (kp_ledger_path_for(out, path, sizeof path) < 0)
        return kp_errf(err, errlen, KP_ERR_ARG, "%s: path too long for its ledger", out);
    if (kp_ledger_now(now) < 0)
        return kp_errf(err, errlen, KP_ERR_ARG, "KPIPE_NOW is not a time YYYY-MM-DDTHH:MM:SSZ");
    kp_hash_hex(cfg->text_hash, cfg_hex);
    kp_hash_hex(kp_hash_bytes(text, len), hex);
    if (isfinite(s->p->oof_score))
        snprintf(cv, sizeof cv, "%.6g", s->p->oof_score);
    slash = strrchr(out, '/');
    kp_ledger_row row = {.time = now, .event = "written",
                         .competition = *kaggle ? (char *)kaggle : cfg->comp.name,
                         .file = (char *)(slash ? slash + 1 : out), .config_hash = cfg_hex,
                         .prediction_hash = hex, .cv = cv, .metric = cfg->comp.metric};
    int rc = kp_ledger_append(path, &row, err, errlen);
    if (rc == 0 && s->ctx->log)
        fprintf(s->ctx->log, "recorded in %s\n", path);
    return rc;
}

/* Uploads the file just written and checked to the stage's Kaggle competition. */
static int upload(const sub *s, const char *out, char *err, size_t errlen)
{
    const kp_stage *st = s->ctx->stage;
    char msg[512], cfg_hex[KP_HASH_HEXLEN];
    const char *given = kp_params_str(st->opts, "message", "");
    long ref = 0;
    kp_hash_hex(s->ctx->cfg->text_hash, cfg_hex);
    if (*given)
        snprintf(msg, sizeof msg, "%s", given);
    else
        snprintf(msg, sizeof msg, "kpipe %s %s cv %s=%.6g", s->ctx->cfg->comp.name, st->name,
                 s->ctx->cfg->comp.metric, s->p->oof_score);
    kp_upload u = {.file = out, .competition = kp_params_str(st->opts, "kaggle", ""),
                   .message = msg, .config_hash = cfg_hex,
                   .force = kp_params_bool(st->opts, "reupload", 0), .log = s->ctx->log};
    int rc = kp_upload_submission(&u, &ref, err, errlen);
    if (rc == KP_ERR_MISMATCH) {   /* already uploaded: a re-run is not a failure */
        if (s->ctx->log)
            fprintf(s->ctx->log, "not uploaded: %s\n", err);
        return 0;
    }
    if (rc == 0 && s->ctx->log)
        fprintf(s->ctx->log, "uploaded %s to %s as submission %ld\n", out, u.competition, ref);
    return rc;
}

/* Writes the submission to the output path and DIR/submission.csv once it
 * meets the contract, then records it in the ledger. */
static int write_outputs(const sub *s, char *err, size_t errlen)
{
    char out[PATH_LEN], copy[PATH_LEN], *text = NULL;
    size_t len = 0;
    const kp_stage *st = s->ctx->stage;
    int rc = format_csv(s, &text, &len, err, errlen);
    if (rc == 0 && (output_path(st, s->ctx->cfg, out, sizeof out) < 0 ||
                    kp_stage_artifact_path(st, copy, sizeof copy) < 0))
        rc = kp_errf(err, errlen, KP_ERR_ARG, "stage '%s': bad or too long output path",
                     st->name);
    if (rc == 0)
        rc = check_contract(s, out, text, len, err, errlen);
    if (rc == 0 && kp_params_bool(st->opts, "gzip", 0))
        rc = kp_gzip_file_atomic(out, text, len, err, errlen);
    else if (rc == 0)
        rc = kp_write_file_atomic(out, text, len, err, errlen);
    if (rc == 0)
        rc = kp_write_file_atomic(copy, text, len, err, errlen);
    if (rc == 0 && s->ctx->log)
        fprintf(s->ctx->log, "wrote %s (%zu rows)\n", out, kp_csv_rows(s->sample));
    if (rc == 0)
        rc = record(s, out, text, len, err, errlen);
    if (rc == 0 && *kp_params_str(st->opts, "kaggle", ""))
        rc = upload(s, out, err, errlen);
    free(text);
    return rc;
}

/* Writes the artifact path of stage i into path. */
static int need_path(const kp_config *cfg, int i, char *path, char *err, size_t errlen)
{
    if (kp_stage_artifact_path(&cfg->stages[i], path, PATH_LEN) < 0)
        return kp_errf(err, errlen, KP_ERR_ARG, "stage '%s': path too long", cfg->stages[i].name);
    return 0;
}

/* Opens the dataset and predictions the stage needs and checks they agree. */
static int open_inputs(const kp_task_ctx *ctx, kp_dataset **d, kp_preds **p, char *err,
                       size_t errlen)
{
    const kp_config *cfg = ctx->cfg;
    char path[PATH_LEN];
    int di = kp_stage_need_of_kind(ctx->stage, cfg, KP_ART_DATASET);
    int pi = kp_stage_need_of_kind(ctx->stage, cfg, KP_ART_PREDS), rc;
    if (di < 0 || pi < 0)
        return kp_errf(err, errlen, KP_ERR_CONFIG, "stage '%s' needs a dataset and a "
                       "predictions stage", ctx->stage->name);
    if ((rc = need_path(cfg, di, path, err, errlen)) < 0 ||
        (rc = kp_dataset_open(path, d, err, errlen)) < 0 ||
        (rc = need_path(cfg, pi, path, err, errlen)) < 0 ||
        (rc = kp_preds_open(path, p, err, errlen)) < 0)
        return rc;
    if ((*p)->n_test != (*d)->n_test || (*p)->pb.task != (*d)->pb.task ||
        (*p)->pb.n_out != (*d)->pb.n_out)
        return kp_errf(err, errlen, KP_ERR_MISMATCH,
                       "predictions of '%s' (%lld test rows, %d outputs) do not fit dataset "
                       "'%s' (%lld test rows, %d outputs)", cfg->stages[pi].name,
                       (long long)(*p)->n_test, (*p)->pb.n_out, cfg->stages[di].name,
                       (long long)(*d)->n_test, (*d)->pb.n_out);
    return 0;
}

/* Reads the sample submission and finds its id column. */
static int open_sample(sub *s, char *err, size_t errlen)
{
    const kp_config *cfg = s->ctx->cfg;
    const char *id = cfg->comp.id ? cfg->comp.id : s->d->id_column;
    if (!cfg->comp.sample_submission || !*cfg->comp.sample_submission)
        return kp_errf(err, errlen, KP_ERR_CONFIG, "the competition has no sample_submission");
    int rc = kp_csv_read(cfg->comp.sample_submission, &s->sample, err, errlen);
    if (rc < 0)
        return rc;
    if ((s->id_col = kp_csv_find(s->sample, id ? id : "")) < 0)
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s:1: the header has no id column '%s'",
                       kp_csv_name(s->sample), id ? id : "");
    s->col_class = calloc(kp_csv_cols(s->sample), sizeof *s->col_class);
    s->row_of = calloc(kp_csv_rows(s->sample) + 1, sizeof *s->row_of);
    return s->col_class && s->row_of ? 0 : kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
}

/* Reads the format and threshold keys into s. */
static void read_keys(sub *s, const kp_params *o)
{
    const char *fmt = kp_params_str(o, "format", "auto");
    s->format = strcmp(fmt, "proba") == 0 ? F_PROBA : strcmp(fmt, "label") == 0 ? F_LABEL
                                                                                 : F_AUTO;
    s->threshold = o && kp_params_has(o, "threshold") ? kp_params_double(o, "threshold", 0.5)
                                                       : -1;
}

static int submit_run(const kp_task_ctx *ctx, char *err, size_t errlen)
{
    kp_dataset *d = NULL;
    kp_preds *p = NULL;
    sub s = {.ctx = ctx, .id_col = -1};
    read_keys(&s, ctx->stage->opts);
    int rc = open_inputs(ctx, &d, &p, err, errlen);
    if (rc == 0) {
        int di = kp_stage_need_of_kind(ctx->stage, ctx->cfg, KP_ART_DATASET);
        s.d = d;
        s.p = p;
        s.dname = ctx->cfg->stages[di].name;
        rc = open_sample(&s, err, errlen);
    }
    if (rc == 0)
        rc = map_rows(&s, err, errlen);
    if (rc == 0)
        rc = map_cols(&s, err, errlen);
    if (rc == 0)
        rc = check_finite(&s, err, errlen);
    if (rc == 0 && d->pb.task == KP_TASK_SEGMENTATION)
        rc = kp_submit_seg_cells(ctx, d, p, s.sample, s.row_of, &s.cells, err, errlen);
    if (rc == 0)
        rc = write_outputs(&s, err, errlen);
    for (size_t r = 0; s.cells && r < kp_csv_rows(s.sample); r++)
        free(s.cells[r]);
    free(s.cells);
    kp_csv_free(s.sample);
    free(s.col_class);
    free(s.row_of);
    kp_preds_close(p);
    kp_dataset_close(d);
    return rc;
}

const kp_stage_ops kp_stage_submit = {
    .name = "submit",
    .doc = "writes the test predictions as a submission CSV in the sample's layout",
    .keys = submit_keys,
    .output = KP_ART_SUBMISSION,
    .check = submit_check,
    .outputs = submit_outputs,
    .inputs = submit_inputs,
    .run = submit_run,
};

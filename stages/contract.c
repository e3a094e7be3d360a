/* contract.c - submission contracts (see contract.h): the rules built from
 * the config, the sample submission and the submit stage, and the check of a
 * file against them. */
#include "contract.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "artifact.h"
#include "../lib/csv.h"
#include "../lib/err.h"
#include "../lib/gzip.h"
#include "../lib/rle.h"
#include "../pipeline/strmap.h"

const kp_keyspec kp_contract_keys[] = {
    {"columns", KP_PT_LIST, "", NULL, 0, 0,
     "the submission's header, in order (default: the sample submission's)"},
    {"ids", KP_PT_ENUM, "sample", "sample|set|any", 0, 0,
     "sample: the sample's ids in its order; set: the same ids in any order; any: not checked"},
    {"values", KP_PT_ENUM, "auto", "auto|probability|label|tags|rle|number|text", 0, 0,
     "the kind of every non-id cell (auto: what the submit stage writes for the task)"},
    {"labels", KP_PT_LIST, "", NULL, 0, 0, "label: the allowed values (default: the classes)"},
    {"vocabulary", KP_PT_LIST, "", NULL, 0, 0, "tags: the allowed tags (default: the classes)"},
    {"min", KP_PT_FLOAT, "", NULL, 0, 0, "number: the smallest allowed value"},
    {"max", KP_PT_FLOAT, "", NULL, 0, 0, "number: the largest allowed value"},
    {"rle_order", KP_PT_ENUM, "", "column|row", 0, 0,
     "rle: the pixel order (default: the submit stage's, else column)"},
    {NULL, 0, NULL, NULL, 0, 0, NULL},
};

typedef enum kind { K_ID, K_PROBABILITY, K_LABEL, K_TAGS, K_RLE, K_NUMBER, K_TEXT } kind;
static const char *const kind_names[] = {"id", "probability", "label", "tags", "rle", "number",
                                         "text"};
enum { IDS_SAMPLE, IDS_SET, IDS_ANY };
enum { SHOW = 60 };   /* characters of a cell shown in a message */

/* A set of allowed strings (labels or tags). */
typedef struct strset {
    char **items;     /* owned */
    int n;
    kp_strmap *map;   /* item -> index */
} strset;

typedef struct col_rule {
    char *name;           /* owned */
    kind k;
    const strset *set;    /* K_LABEL, K_TAGS: the allowed values; NULL: not checked */
} col_rule;

struct kp_contract {
    col_rule *cols;       /* owned, n_cols */
    int n_cols, id_col;
    int cols_from_config;
    char *sample_name;    /* owned; NULL without a sample */
    int ids;              /* IDS_* */
    long n_rows;          /* the sample's data rows; -1 without a sample */
    char **sample_ids;    /* owned, n_rows, the sample's id per row (ids: sample|set) */
    kp_strmap *id_first;  /* id -> its first sample row */
    int *id_count;        /* per first sample row: how often the sample has that id */
    strset labels, vocab, zero_one;
    int has_min, has_max;
    double min, max;
    char *rle_order;      /* owned: "column-major" / "row-major" */
    char *rle_empty;      /* owned: the cell of an empty mask */
};

/* ---- small helpers ---- */

/* Writes 'cell' (cut after SHOW characters) into buf. */
static const char *shown(const char *s, char *buf, size_t n)
{
    size_t len = strlen(s);
    snprintf(buf, n, "'%.*s%s'", SHOW, s, len > SHOW ? "..." : "");
    return buf;
}

/* Appends "a, b, c" (at most 8, then "... (N in all)") of set to out. */
static int list_items(const strset *s, kp_buf *out)
{
    int n = s->n < 8 ? s->n : 8;
    for (int i = 0; i < n; i++)
        if (kp_buf_printf(out, "%s%s", i ? ", " : "", s->items[i]) < 0)
            return KP_ERR_NOMEM;
    return s->n > n ? kp_buf_printf(out, ", ... (%d in all)", s->n) : 0;
}

static void strset_free(strset *s)
{
    for (int i = 0; i < s->n; i++)
        free(s->items[i]);
    free(s->items);
    kp_strmap_free(s->map);
    memset(s, 0, sizeof *s);
}

/* Fills s with copies of items[0..n); 0 or KP_ERR_NOMEM. */
static int strset_init(strset *s, const char *const *items, int n)
{
    if (!(s->items = calloc(n ? (size_t)n : 1, sizeof *s->items)) || !(s->map = kp_strmap_create()))
        return KP_ERR_NOMEM;
    for (int i = 0; i < n; i++) {
        if (!(s->items[s->n] = strdup(items[i])))
            return KP_ERR_NOMEM;
        s->n++;
        if (kp_strmap_put(s->map, items[i], i) < 0)
            return KP_ERR_NOMEM;
    }
    return 0;
}

static int strset_has(const strset *s, const char *x) { return kp_strmap_get(s->map, x) >= 0; }

/* Returns the list under key of the contract's params (or NULL, *n = 0). */
static const char *const *param_list(const kp_params *p, const char *key, int *n)
{
    const char *const *items = NULL;
    *n = 0;
    if (!p || !kp_params_has(p, key) || kp_params_get_list(p, key, &items, n) < 0)
        *n = 0;
    return *n ? items : NULL;
}

/* ---- the config block ---- */

/* Fails when list key of p names a value twice or is an empty list. */
static int check_list(const kp_params *p, const char *key, const char *file, char *err,
                      size_t errlen)
{
    const char *const *items = NULL;
    int n = 0, line, col;
    if (!kp_params_has(p, key))
        return 0;
    kp_params_get_list(p, key, &items, &n);
    kp_params_where(p, key, &line, &col);
    if (n == 0)
        return kp_errf(err, errlen, KP_ERR_CONFIG, "%s:%d:%d: competition.submission.%s: the "
                       "list is empty", file, line, col, key);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++)
            if (strcmp(items[i], items[j]) == 0)
                return kp_errf(err, errlen, KP_ERR_CONFIG, "%s:%d:%d: competition.submission.%s: "
                               "'%s' appears twice", file, line, col, key, items[i]);
    return 0;
}

int kp_contract_check_params(const kp_params *p, const kp_competition *comp, const char *file,
                             char *err, size_t errlen)
{
    int line, col, n = 0, rc;
    const char *const *cols = param_list(p, "columns", &n);
    if ((rc = check_list(p, "columns", file, err, errlen)) < 0 ||
        (rc = check_list(p, "labels", file, err, errlen)) < 0 ||
        (rc = check_list(p, "vocabulary", file, err, errlen)) < 0)
        return rc;
    int has_id = 0;
    for (int i = 0; i < n; i++)
        has_id |= comp->id && strcmp(cols[i], comp->id) == 0;
    kp_params_where(p, "columns", &line, &col);
    if (n > 0 && !has_id)
        return kp_errf(err, errlen, KP_ERR_CONFIG, "%s:%d:%d: competition.submission.columns: "
                       "the id column '%s' is not among them", file, line, col,
                       comp->id ? comp->id : "");
    if (kp_params_has(p, "min") && kp_params_has(p, "max") &&
        kp_params_double(p, "min", 0) > kp_params_double(p, "max", 0)) {
        kp_params_where(p, "max", &line, &col);
        return kp_errf(err, errlen, KP_ERR_CONFIG, "%s:%d:%d: competition.submission.max: %g is "
                       "below min %g", file, line, col, kp_params_double(p, "max", 0),
                       kp_params_double(p, "min", 0));
    }
    return 0;
}

/* ---- building ---- */

void kp_contract_free(kp_contract *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->n_cols; i++)
        free(c->cols[i].name);
    free(c->cols);
    free(c->sample_name);
    for (long r = 0; c->sample_ids && r < c->n_rows; r++)
        free(c->sample_ids[r]);
    free(c->sample_ids);
    kp_strmap_free(c->id_first);
    free(c->id_count);
    strset_free(&c->labels);
    strset_free(&c->vocab);
    strset_free(&c->zero_one);
    free(c->rle_order);
    free(c->rle_empty);
    free(c);
}

/* Indexes the sample's ids (column id_col) for the id checks. */
static int index_ids(kp_contract *c, const kp_csv *sample, long id_col)
{
    size_t n = kp_csv_rows(sample);
    if (!(c->sample_ids = calloc(n ? n : 1, sizeof *c->sample_ids)) ||
        !(c->id_count = calloc(n ? n : 1, sizeof *c->id_count)) ||
        !(c->id_first = kp_strmap_create()) || n > INT32_MAX)
        return KP_ERR_NOMEM;
    for (size_t r = 0; r < n; r++) {
        const char *id = kp_csv_get(sample, r, (size_t)id_col);
        int first = kp_strmap_get(c->id_first, id);
        if (!(c->sample_ids[r] = strdup(id)) ||
            (first < 0 && kp_strmap_put(c->id_first, id, (int)r) < 0))
            return KP_ERR_NOMEM;
        c->id_count[first < 0 ? (int)r : first]++;
    }
    return 0;
}

/* Reads the sample: its row count, its ids and (unless the config gives
 * them) its header as the columns. */
static int read_sample(kp_contract *c, const kp_config *cfg, const char *const *cols, int n_cols,
                       char *err, size_t errlen)
{
    kp_csv *s = NULL;
    const char *id = cfg->comp.id ? cfg->comp.id : "";
    int rc = kp_csv_read(cfg->comp.sample_submission, &s, err, errlen);
    long id_col = rc == 0 ? kp_csv_find(s, id) : -1;
    if (rc == 0 && id_col < 0)
        rc = kp_errf(err, errlen, KP_ERR_FORMAT, "%s:1: the header has no id column '%s'",
                     kp_csv_name(s), id);
    if (rc == 0 && !(c->sample_name = strdup(kp_csv_name(s))))
        rc = KP_ERR_NOMEM;
    if (rc == 0 && !n_cols && (n_cols = (int)kp_csv_cols(s)) > 0 &&
        !(c->cols = calloc((size_t)n_cols, sizeof *c->cols)))
        rc = KP_ERR_NOMEM;
    for (int i = 0; rc == 0 && !cols && i < n_cols; i++, c->n_cols++)
        if (!(c->cols[i].name = strdup(kp_csv_header(s, (size_t)i))))
            rc = KP_ERR_NOMEM;
    c->n_rows = rc == 0 ? (long)kp_csv_rows(s) : -1;
    if (rc == 0 && c->ids != IDS_ANY)
        rc = index_ids(c, s, id_col);
    if (rc == KP_ERR_NOMEM)
        kp_errf(err, errlen, rc, "out of memory reading the sample submission");
    kp_csv_free(s);
    return rc;
}

/* Sets the columns: the config's, else the sample's header. */
static int read_columns(kp_contract *c, const kp_config *cfg, char *err, size_t errlen)
{
    int n = 0;
    const char *const *cols = param_list(cfg->comp.submission, "columns", &n);
    int has_sample = cfg->comp.sample_submission && *cfg->comp.sample_submission;
    c->cols_from_config = n > 0;
    if (n && !(c->cols = calloc((size_t)n, sizeof *c->cols)))
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n; i++, c->n_cols++)
        if (!(c->cols[i].name = strdup(cols[i])))
            return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    if (!has_sample && (!n || c->ids != IDS_ANY))
        return kp_errf(err, errlen, KP_ERR_CONFIG, "%s: the submission contract needs "
                       "competition.sample_submission (%s)", cfg->path,
                       n ? "for its ids; or set competition.submission.ids: any"
                         : "for its header; or set competition.submission.columns");
    c->n_rows = -1;
    int rc = has_sample ? read_sample(c, cfg, cols, n, err, errlen) : 0;
    c->id_col = -1;
    for (int i = 0; rc == 0 && i < c->n_cols; i++)
        if (cfg->comp.id && strcmp(c->cols[i].name, cfg->comp.id) == 0)
            c->id_col = i;
    if (rc == 0 && c->id_col < 0)
        rc = kp_errf(err, errlen, KP_ERR_CONFIG, "%s: the submission contract's columns have no "
                     "id column '%s'", cfg->path, cfg->comp.id ? cfg->comp.id : "");
    return rc;
}

/* The options of the submit stage that decide what it writes. */
typedef struct stage_opts {
    const char *format, *class_column, *empty, *rle_order;
    int wkt;
} stage_opts;

static stage_opts read_stage(const kp_stage *st)
{
    const kp_params *o = st ? st->opts : NULL;
    stage_opts s = {kp_params_str(o, "format", "auto"), kp_params_str(o, "class_column", ""),
                    kp_params_str(o, "empty", ""), kp_params_str(o, "rle_order", ""),
                    kp_params_bool(o, "wkt", 0)};
    return s;
}

/* The kind of column col under values: auto (set: its allowed values). */
static kind auto_kind(const kp_contract *c, const kp_config *cfg, const stage_opts *so,
                      const char *col, const strset *classes, const strset **set)
{
    kp_task_kind task = cfg->comp.task;
    int label = strcmp(so->format, "label") == 0;
    int class_col = classes && classes->map && strset_has(classes, col) &&
                    task != KP_TASK_REGRESSION && task != KP_TASK_SEGMENTATION;
    *set = NULL;
    if (task == KP_TASK_SEGMENTATION)
        return *so->class_column && !strcmp(col, so->class_column) ? K_TEXT
             : so->wkt                                               ? K_TEXT : K_RLE;
    if (task == KP_TASK_REGRESSION)
        return K_NUMBER;
    if (class_col) {
        *set = label ? &c->zero_one : NULL;
        return label ? K_LABEL : K_PROBABILITY;
    }
    if (task == KP_TASK_MULTILABEL) {
        *set = c->vocab.n ? &c->vocab : NULL;
        return K_TAGS;
    }
    *set = c->labels.n ? &c->labels : NULL;
    return task == KP_TASK_MULTICLASS || label ? K_LABEL : K_PROBABILITY;
}

/* Sets every non-id column's kind from values (auto: from the task and stage). */
static void set_kinds(kp_contract *c, const kp_config *cfg, const stage_opts *so,
                      const strset *classes)
{
    const char *values = kp_params_str(cfg->comp.submission, "values", "auto");
    for (int i = 0; i < c->n_cols; i++) {
        col_rule *r = &c->cols[i];
        int k = K_TEXT;
        for (int j = 1; j < (int)(sizeof kind_names / sizeof *kind_names); j++)
            if (strcmp(values, kind_names[j]) == 0)
                k = j;
        if (i == c->id_col)
            r->k = K_ID;
        else if (strcmp(values, "auto") == 0)
            r->k = auto_kind(c, cfg, so, r->name, classes, &r->set);
        else if (cfg->comp.task == KP_TASK_SEGMENTATION && *so->class_column &&
                 !strcmp(r->name, so->class_column))
            r->k = K_TEXT;
        else {
            r->k = (kind)k;
            r->set = k == K_LABEL && c->labels.n ? &c->labels
                   : k == K_TAGS && c->vocab.n   ? &c->vocab : NULL;
        }
    }
}

/* Sets the label, vocabulary and 0/1 sets, the bounds and the RLE options. */
static int read_values(kp_contract *c, const kp_config *cfg, const stage_opts *so,
                       const char *const *classes, int n_classes)
{
    static const char *const zero_one[] = {"0", "1"};
    const kp_params *p = cfg->comp.submission;
    int nl = 0, nv = 0;
    const char *const *labels = param_list(p, "labels", &nl);
    const char *const *vocab = param_list(p, "vocabulary", &nv);
    if (strset_init(&c->zero_one, zero_one, 2) < 0 ||
        strset_init(&c->labels, labels ? labels : classes, labels ? nl : n_classes) < 0 ||
        strset_init(&c->vocab, vocab ? vocab : classes, vocab ? nv : n_classes) < 0)
        return KP_ERR_NOMEM;
    c->has_min = p && kp_params_has(p, "min");
    c->has_max = p && kp_params_has(p, "max");
    c->min = kp_params_double(p, "min", 0);
    c->max = kp_params_double(p, "max", 0);
    const char *order = kp_params_str(p, "rle_order", "");
    kp_rle_order o = KP_RLE_COLUMN_MAJOR;
    kp_rle_order_parse(*order ? order : so->rle_order, &o);
    c->rle_order = strdup(kp_rle_order_name(o));
    c->rle_empty = strdup(so->empty);
    return c->rle_order && c->rle_empty ? 0 : KP_ERR_NOMEM;
}

int kp_contract_create(const kp_config *cfg, const kp_stage *submit_stage,
                       const char *const *classes, int n_classes, kp_contract **out,
                       char *err, size_t errlen)
{
    const kp_params *p = cfg->comp.submission;
    const char *ids = kp_params_str(p, "ids", "sample");
    stage_opts so = read_stage(submit_stage);
    strset cls = {0};
    kp_contract *c = calloc(1, sizeof *c);
    int rc = c ? 0 : KP_ERR_NOMEM;
    if (rc == 0) {
        c->ids = !strcmp(ids, "set") ? IDS_SET : !strcmp(ids, "any") ? IDS_ANY : IDS_SAMPLE;
        rc = read_values(c, cfg, &so, classes, classes ? n_classes : 0);
    }
    if (rc == 0 && !classes)   /* no dataset: the contract's own values name the classes */
        rc = cfg->comp.task == KP_TASK_MULTILABEL
                 ? strset_init(&cls, (const char *const *)c->vocab.items, c->vocab.n)
                 : strset_init(&cls, (const char *const *)c->labels.items, c->labels.n);
    else if (rc == 0)
        rc = strset_init(&cls, classes, n_classes);
    if (rc == KP_ERR_NOMEM)
        kp_errf(err, errlen, rc, "out of memory building the submission contract");
    if (rc == 0 && (rc = read_columns(c, cfg, err, errlen)) == 0) {
        set_kinds(c, cfg, &so, &cls);
        *out = c;
        c = NULL;
    }
    strset_free(&cls);
    kp_contract_free(c);
    return rc;
}

int kp_contract_for_stage(const kp_config *cfg, const kp_stage *submit_stage,
                          kp_contract **out, char *err, size_t errlen)
{
    kp_dataset *d = NULL;
    char path[4096];
    int di = submit_stage ? kp_stage_need_of_kind(submit_stage, cfg, KP_ART_DATASET) : -1, rc = 0;
    if (di >= 0 && kp_stage_artifact_path(&cfg->stages[di], path, sizeof path) == 0 &&
        access(path, F_OK) == 0)
        rc = kp_dataset_open(path, &d, err, errlen);
    if (rc == 0)
        rc = kp_contract_create(cfg, submit_stage, d ? (const char *const *)d->classes : NULL,
                                d ? d->n_classes : 0, out, err, errlen);
    kp_dataset_close(d);
    return rc;
}

/* ---- cells ---- */

/* Checks a probability or number cell; 0 or -1 with the problem in why. */
static int check_number(const kp_contract *c, kind k, const char *s, char *why, size_t n)
{
    char b[SHOW + 8], *end;
    if (!*s) {
        snprintf(why, n, "the cell is empty (a %s is expected)", kind_names[k]);
        return -1;
    }
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || isspace((unsigned char)s[0]))
        snprintf(why, n, "%s is not a number", shown(s, b, sizeof b));
    else if (!isfinite(v))
        snprintf(why, n, "%s is not a finite number", shown(s, b, sizeof b));
    else if (k == K_PROBABILITY && (v < 0 || v > 1))
        snprintf(why, n, "%s is not a probability in [0, 1]", shown(s, b, sizeof b));
    else if (k == K_NUMBER && c->has_min && v < c->min)
        snprintf(why, n, "%s is below the minimum %g", shown(s, b, sizeof b), c->min);
    else if (k == K_NUMBER && c->has_max && v > c->max)
        snprintf(why, n, "%s is above the maximum %g", shown(s, b, sizeof b), c->max);
    else
        return 0;
    return -1;
}

/* Checks a label cell against set (NULL: any non-empty value). */
static int check_label(const strset *set, const char *s, char *why, size_t n)
{
    char b[SHOW + 8];
    kp_buf list;
    if (set ? strset_has(set, s) : *s != 0)
        return 0;
    if (!set) {
        snprintf(why, n, "the cell is empty (a label is expected)");
        return -1;
    }
    kp_buf_init(&list, 4096);
    int nomem = list_items(set, &list) < 0;
    snprintf(why, n, "%s is not one of the labels %s", shown(s, b, sizeof b),
             nomem ? "..." : kp_buf_str(&list));
    kp_buf_free(&list);
    return -1;
}

/* Writes why a tag of a cell (tags s, this tag t[0..len)) is wrong, or
 * returns 0: not empty, not seen before in s, in set (NULL: any). */
static int check_tag(const strset *set, const char *s, const char *t, size_t len, char *why,
                     size_t n)
{
    char b[SHOW + 8], *tag = strndup(t, len);
    kp_buf list;
    int dup = 0, rc = -1;
    for (const char *u = s; u < t && !dup; u += strcspn(u, " ") + 1)
        dup = strcspn(u, " ") == len && strncmp(u, t, len) == 0;
    kp_buf_init(&list, 4096);
    if (!tag)
        snprintf(why, n, "out of memory");
    else if (len == 0)
        snprintf(why, n, "tags %s hold an empty tag (tags are separated by single spaces)",
                 shown(s, b, sizeof b));
    else if (dup)
        snprintf(why, n, "tag %s appears twice", shown(tag, b, sizeof b));
    else if (set && !strset_has(set, tag))
        snprintf(why, n, "tag %s is not in the vocabulary (%s)", shown(tag, b, sizeof b),
                 list_items(set, &list) < 0 ? "..." : kp_buf_str(&list));
    else
        rc = 0;
    kp_buf_free(&list);
    free(tag);
    return rc;
}

/* Checks a tags cell: none, or tags separated by single spaces. */
static int check_tags(const strset *set, const char *s, char *why, size_t n)
{
    for (const char *t = s; *s; t += strcspn(t, " ") + 1) {
        size_t len = strcspn(t, " ");
        if (check_tag(set, s, t, len, why, n) < 0)
            return -1;
        if (t[len] == 0)
            break;
    }
    return 0;
}

/* Reads the next whole number of an RLE at *p (spaces skipped); 1, 0 at
 * the end, -1 on a token that is not a whole number (its text in tok). */
static int rle_next(const char **p, uint64_t *v, char *tok, size_t n)
{
    const char *s = *p + strspn(*p, " \t\r\n");
    size_t len = strcspn(s, " \t\r\n");
    *v = 0;
    if (len == 0)
        return 0;
    *p = s + len;
    snprintf(tok, n, "%.*s", (int)(len < SHOW ? len : SHOW), s);
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9' || *v > (UINT64_MAX - 9) / 10)
            return -1;
        *v = *v * 10 + (uint64_t)(s[i] - '0');
    }
    return 1;
}

/* Checks an RLE cell: "start length" pairs, starts from 1 and ascending,
 * runs not overlapping; the empty marker is an empty mask. */
static int check_rle(const kp_contract *c, const char *s, char *why, size_t n)
{
    char tok[SHOW + 1];
    uint64_t start, len, prev_start = 0, prev_end = 0;
    if (!strcmp(s, c->rle_empty))
        return 0;
    if (!*s) {
        snprintf(why, n, "the cell is empty (an empty mask is written '%s')", c->rle_empty);
        return -1;
    }
    const char *p = s;
    for (int run = 1;; run++) {
        int a = rle_next(&p, &start, tok, sizeof tok);
        if (a == 0)
            return 0;
        int b = a > 0 ? rle_next(&p, &len, tok, sizeof tok) : a;
        if (b < 0)
            snprintf(why, n, "'%s' in the RLE is not a whole number", tok);
        else if (b == 0)
            snprintf(why, n, "the RLE holds an odd count of numbers (%d): it must be start "
                     "length pairs", 2 * run - 1);
        else if (start == 0)
            snprintf(why, n, "the RLE's run %d starts at 0: pixels are numbered from 1", run);
        else if (len == 0)
            snprintf(why, n, "the RLE's run %d (start %llu) has length 0", run,
                     (unsigned long long)start);
        else if (run > 1 && start < prev_start)
            snprintf(why, n, "the RLE's run %d starts at %llu, before the previous start %llu "
                     "(starts must ascend)", run, (unsigned long long)start,
                     (unsigned long long)prev_start);
        else if (run > 1 && start <= prev_end)
            snprintf(why, n, "the RLE's run %d (%llu %llu) overlaps the previous run, which "
                     "ends at pixel %llu", run, (unsigned long long)start,
                     (unsigned long long)len, (unsigned long long)prev_end);
        else {
            prev_start = start;
            prev_end = len - 1 > UINT64_MAX - start ? UINT64_MAX : start + len - 1;
            continue;
        }
        return -1;
    }
}

/* Checks one non-id cell of column rule r. */
static int check_cell(const kp_contract *c, const col_rule *r, const char *s, char *why,
                      size_t n)
{
    switch (r->k) {
    case K_PROBABILITY:
    case K_NUMBER:
        return check_number(c, r->k, s, why, n);
    case K_LABEL:
        return check_label(r->set, s, why, n);
    case K_TAGS:
        return check_tags(r->set, s, why, n);
    case K_RLE:
        return check_rle(c, s, why, n);
    default:
        return 0;
    }
}

/* ---- files ---- */

/* Appends the column names of c (or of t when c is NULL) joined by ',' to out. */
static int join_header(const kp_contract *c, const kp_csv *t, kp_buf *out)
{
    size_t n = c ? (size_t)c->n_cols : kp_csv_cols(t);
    for (size_t i = 0; i < n; i++)
        if (kp_buf_printf(out, "%s%s", i ? "," : "", c ? c->cols[i].name : kp_csv_header(t, i)))
            return KP_ERR_NOMEM;
    return 0;
}

/* Returns 1 when t's header holds the contract's columns in another order. */
static int same_columns(const kp_contract *c, const kp_csv *t)
{
    if (kp_csv_cols(t) != (size_t)c->n_cols)
        return 0;
    for (int i = 0; i < c->n_cols; i++)
        if (kp_csv_find(t, c->cols[i].name) < 0)
            return 0;
    return 1;
}

static int check_header(const kp_contract *c, const kp_csv *t, char *err, size_t errlen)
{
    int ok = kp_csv_cols(t) == (size_t)c->n_cols;
    for (int i = 0; ok && i < c->n_cols; i++)
        ok = strcmp(kp_csv_header(t, (size_t)i), c->cols[i].name) == 0;
    if (ok)
        return 0;
    kp_buf got, want;
    kp_buf_init(&got, 8192);
    kp_buf_init(&want, 8192);
    int nomem = join_header(NULL, t, &got) < 0 || join_header(c, NULL, &want) < 0;
    kp_errf(err, errlen, KP_ERR_FORMAT, "%s:1: header '%s' differs from the contract's '%s'%s",
            kp_csv_name(t), nomem ? "..." : kp_buf_str(&got), nomem ? "..." : kp_buf_str(&want),
            same_columns(c, t) ? " (the same columns in another order)" : "");
    kp_buf_free(&got);
    kp_buf_free(&want);
    return KP_ERR_FORMAT;
}

static int check_row_count(const kp_contract *c, const kp_csv *t, char *err, size_t errlen)
{
    size_t n = kp_csv_rows(t);
    if (c->n_rows < 0 || n == (size_t)c->n_rows)
        return 0;
    /* the first extra row, or the end of the file */
    size_t line = n > (size_t)c->n_rows ? kp_csv_line(t, (size_t)c->n_rows)
                : n ? kp_csv_line(t, n - 1) + 1 : 2;
    return kp_errf(err, errlen, KP_ERR_FORMAT, "%s:%zu: %zu rows, the sample has %ld",
                   kp_csv_name(t), line, n, c->n_rows);
}

/* The id check's state over one file (ids: set counts each id). */
typedef struct id_state {
    int *count;        /* per first sample row: times seen in the file */
    size_t *line;      /* per first sample row: file line of its first sight */
} id_state;

/* Checks the id of file row r; 0 or an error naming the place. */
static int check_id(const kp_contract *c, const kp_csv *t, size_t r, id_state *st, char *err,
                    size_t errlen)
{
    const char *id = kp_csv_get(t, r, (size_t)c->id_col);
    const char *file = kp_csv_name(t);
    size_t line = kp_csv_line(t, r), col = (size_t)c->id_col + 1;
    if (c->ids == IDS_ANY || (c->ids == IDS_SAMPLE && !strcmp(id, c->sample_ids[r])))
        return 0;
    int first = kp_strmap_get(c->id_first, id);
    if (first < 0)
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s:%zu:%zu: id '%.100s' is not in the "
                       "sample submission", file, line, col, id);
    if (c->ids == IDS_SAMPLE && (first >= (int)r || c->id_count[first] > 1))
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s:%zu:%zu: id '%.100s' is out of the "
                       "sample's order: its row %zu has id '%.100s' (ids: set takes any order)",
                       file, line, col, id, r + 1, c->sample_ids[r]);
    if (c->ids == IDS_SAMPLE)
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s:%zu:%zu: id '%.100s' appears twice (first "
                       "on line %zu)", file, line, col, id, kp_csv_line(t, (size_t)first));
    if (st->count[first]++ == 0)
        st->line[first] = line;
    if (st->count[first] <= c->id_count[first])
        return 0;
    if (c->id_count[first] == 1)
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s:%zu:%zu: id '%.100s' appears twice (first "
                       "on line %zu)", file, line, col, id, st->line[first]);
    return kp_errf(err, errlen, KP_ERR_FORMAT, "%s:%zu:%zu: id '%.100s' appears more often than "
                   "the sample's %d times", file, line, col, id, c->id_count[first]);
}

/* Checks every row's id and cells. */
static int check_rows(const kp_contract *c, const kp_csv *t, char *err, size_t errlen)
{
    size_t n = kp_csv_rows(t);
    id_state st = {0};
    int rc = 0;
    if (c->ids == IDS_SET && (!(st.count = calloc(n + 1, sizeof *st.count)) ||
                              !(st.line = calloc(n + 1, sizeof *st.line))))
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory checking the ids");
    for (size_t r = 0; rc == 0 && r < n; r++) {
        if ((rc = check_id(c, t, r, &st, err, errlen)) < 0)
            break;
        for (int j = 0; rc == 0 && j < c->n_cols; j++) {
            char why[600];
            if (j == c->id_col || check_cell(c, &c->cols[j], kp_csv_get(t, r, (size_t)j), why,
                                             sizeof why) == 0)
                continue;
            rc = kp_errf(err, errlen, KP_ERR_FORMAT, "%s:%zu:%d: column '%s' of id '%.100s': %s",
                         kp_csv_name(t), kp_csv_line(t, r), j + 1, c->cols[j].name,
                         kp_csv_get(t, r, (size_t)c->id_col), why);
        }
    }
    free(st.count);
    free(st.line);
    return rc;
}

int kp_contract_check(const kp_contract *c, const char *name, const char *text, size_t len,
                      char *err, size_t errlen)
{
    kp_csv *t = NULL;
    int rc = kp_csv_parse(name, text, len, &t, err, errlen);
    if (rc < 0)
        rc = rc == KP_ERR_NOMEM ? rc : KP_ERR_FORMAT;
    else if ((rc = check_header(c, t, err, errlen)) == 0 &&
             (rc = check_row_count(c, t, err, errlen)) == 0)
        rc = check_rows(c, t, err, errlen);
    kp_csv_free(t);
    return rc;
}

int kp_contract_check_file(const kp_contract *c, const char *path, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    int rc = kp_gzip_read_file(path, (size_t)4 << 30, &text, &len, err, errlen);
    if (rc == 0)
        rc = kp_contract_check(c, path, text, len, err, errlen);
    free(text);
    return rc;
}

/* ---- description ---- */

/* Appends the rule of column rule r. */
static int describe_col(const kp_contract *c, const col_rule *r, kp_buf *out)
{
    int bad = kp_buf_printf(out, "column '%s': ", r->name) < 0;
    switch (r->k) {
    case K_PROBABILITY:
        bad = bad || kp_buf_adds(out, "probability in [0, 1], finite, not empty\n") < 0;
        return bad ? KP_ERR_NOMEM : 0;
    case K_NUMBER:
        bad = bad || kp_buf_adds(out, "number, finite, not empty") < 0 ||
              (c->has_min && kp_buf_printf(out, ", >= %g", c->min) < 0) ||
              (c->has_max && kp_buf_printf(out, ", <= %g", c->max) < 0);
        return bad || kp_buf_adds(out, "\n") < 0 ? KP_ERR_NOMEM : 0;
    case K_LABEL:
    case K_TAGS:
        bad = bad || kp_buf_adds(out, r->k == K_LABEL ? "label, " : "space-separated tags (or "
                                 "none), ") < 0;
        if (!r->set)
            bad = bad || kp_buf_adds(out, r->k == K_LABEL ? "any non-empty value (no labels "
                                     "known)\n" : "any (no vocabulary known)\n") < 0;
        else
            bad = bad || kp_buf_adds(out, r->k == K_LABEL ? "one of " : "each one of ") < 0 ||
                  list_items(r->set, out) < 0 || kp_buf_adds(out, "\n") < 0;
        return bad ? KP_ERR_NOMEM : 0;
    case K_RLE:
        return bad || kp_buf_printf(out, "RLE, 1-indexed start length pairs in %s order, starts "
                                    "ascending, runs not overlapping; an empty mask is '%s'\n",
                                    c->rle_order, c->rle_empty) < 0 ? KP_ERR_NOMEM : 0;
    default:
        return bad || kp_buf_adds(out, "text, not checked\n") < 0 ? KP_ERR_NOMEM : 0;
    }
}

int kp_contract_describe(const kp_contract *c, kp_buf *out)
{
    static const char *const ids[] = {"the sample's ids in its order", "the sample's ids in any "
                                      "order, each as often as in the sample", "not checked"};
    int bad = kp_buf_adds(out, "header: ") < 0 || join_header(c, NULL, out) < 0 ||
              kp_buf_printf(out, " (from %s)\n", c->cols_from_config
                            ? "competition.submission.columns" : c->sample_name) < 0;
    if (c->n_rows >= 0)
        bad = bad || kp_buf_printf(out, "rows: %ld, as the sample\n", c->n_rows) < 0;
    else
        bad = bad || kp_buf_adds(out, "rows: not checked (no sample submission)\n") < 0;
    bad = bad || kp_buf_printf(out, "ids: column '%s', %s\n", c->cols[c->id_col].name,
                               ids[c->ids]) < 0;
    for (int i = 0; !bad && i < c->n_cols; i++)
        bad = i != c->id_col && describe_col(c, &c->cols[i], out) < 0;
    return bad ? KP_ERR_NOMEM : 0;
}

/* preprocess_targets.c - preprocess's value helpers, targets and groups.
 *
 * binary and multiclass: the distinct labels sorted (numerically when all are
 * numbers), y = index; regression: y = the number; multilabel: one column of
 * space-separated tags (vocabulary sorted; an empty field is no tags) or
 * several 0/1 columns.  A missing target is an error naming its row and column.
 */
#include "preprocess_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/buf.h"
#include "../lib/err.h"

/* ---- value helpers ---- */

static const char *const default_na[] = {"", "NA", "NaN", "nan", "NULL", "null", "?"};

void kp_prep_default_na(prep *p)
{
    p->na = default_na;
    p->n_na = (int)(sizeof default_na / sizeof default_na[0]);
    for (int i = 0; i < p->n_na; i++)
        p->na_first[(unsigned char)p->na[i][0]] = 1;
}

int kp_prep_is_na(const prep *p, const char *s)
{
    if (!p->na_first[(unsigned char)s[0]])
        return 0;   /* the common case: no na value starts like s */
    for (int i = 0; i < p->n_na; i++)
        if (strcmp(s, p->na[i]) == 0)
            return 1;
    return 0;
}

int kp_prep_parse_num(const prep *p, const char *s, double *out)
{
    char *end;
    double v = strtod_l(s, &end, p->c);
    if (end == s)
        return 0;
    while (*end == ' ' || *end == '\t')
        end++;
    if (*end || !isfinite(v))
        return 0;
    *out = v;
    return 1;
}

int kp_prep_nomem(prep *p)
{
    return kp_errf(p->err, p->errlen, KP_ERR_NOMEM, "preprocess: out of memory");
}

static int cmp_str(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    int c = strcmp(x->s, y->s);
    return c ? c : (x->row > y->row) - (x->row < y->row);
}

static int cmp_num(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    if (x->v != y->v)
        return x->v < y->v ? -1 : 1;
    return cmp_str(a, b);
}

size_t kp_prep_sort_runs(entry *e, size_t n, int numeric)
{
    qsort(e, n, sizeof *e, numeric ? cmp_num : cmp_str);
    size_t runs = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || strcmp(e[i].s, e[i - 1].s) != 0)
            runs++;
        e[i].run = (int32_t)(runs - 1);
    }
    return runs;
}

/* Copies the distinct strings of sorted entries into *out (owned strdup'd). */
static int run_names(prep *p, const entry *e, size_t n, size_t runs, char ***out)
{
    char **names = calloc(runs ? runs : 1, sizeof *names);
    if (!names)
        return kp_prep_nomem(p);
    for (size_t i = 0; i < n; i++)
        if ((i == 0 || e[i].run != e[i - 1].run) && !(names[e[i].run] = strdup(e[i].s))) {
            for (size_t j = 0; j < runs; j++)
                free(names[j]);
            free(names);
            return kp_prep_nomem(p);
        }
    *out = names;
    return 0;
}

/* ---- targets ---- */

int kp_prep_need_col(prep *p, const kp_csv *t, const char *name, const char *what, long *out)
{
    *out = kp_csv_find(t, name);
    if (*out < 0)
        return kp_errf(p->err, p->errlen, KP_ERR_NOTFOUND, "%s:1: no %s column '%s'",
                       kp_csv_name(t), what, name);
    return 0;
}

int kp_prep_find_targets(prep *p)
{
    const kp_competition *c = p->comp;
    int rc;
    if (!(p->target = calloc((size_t)c->n_targets + 1, sizeof *p->target)))
        return kp_prep_nomem(p);
    for (int i = 0; i < c->n_targets; i++)
        if ((rc = kp_prep_need_col(p, p->train, c->targets[i], "target (competition.target)",
                                   &p->target[i])) < 0)
            return rc;
    p->group = -1;
    if (c->folds.group && *c->folds.group)
        return kp_prep_need_col(p, p->train, c->folds.group, "group (competition.folds.group)",
                                &p->group);
    return 0;
}

/* Returns target column t's value at row r, failing when it is missing. */
static int target_value(prep *p, int t, size_t r, int empty_ok, const char **out)
{
    const char *s = kp_csv_get(p->train, r, (size_t)p->target[t]);
    if (kp_prep_is_na(p, s) && !(empty_ok && !*s))
        return kp_errf(p->err, p->errlen, KP_ERR_FORMAT,
                       "%s:%zu:%ld: missing target value '%s' in column '%s'",
                       kp_csv_name(p->train), kp_csv_line(p->train, r), p->target[t] + 1, s,
                       p->comp->targets[t]);
    *out = s;
    return 0;
}

/* Numbers the distinct values of entries e (sorted numerically when all are
 * numbers) into p->classes and y: y[row] = class when width is 0, else
 * y[row * width + class] = 1. */
static int classes_from(prep *p, entry *e, size_t n, size_t width)
{
    int numeric = 1;
    for (size_t i = 0; i < n && numeric; i++)
        numeric = kp_prep_parse_num(p, e[i].s, &e[i].v);
    size_t runs = kp_prep_sort_runs(e, n, numeric);
    for (size_t i = 0; i < n; i++) {
        if (width == 0)
            p->y[e[i].row] = (float)e[i].run;
        else
            p->y[(size_t)e[i].row * width + (size_t)e[i].run] = 1;
    }
    p->n_classes = (int)runs;
    return run_names(p, e, n, runs, &p->classes);
}

static int class_targets(prep *p)
{
    size_t n = kp_csv_rows(p->train);
    entry *e = malloc(n * sizeof *e);
    int rc = e ? 0 : kp_prep_nomem(p);
    for (size_t r = 0; r < n && rc == 0; r++) {
        e[r] = (entry){.row = (int64_t)r};
        rc = target_value(p, 0, r, 0, &e[r].s);
    }
    if (rc == 0)
        rc = classes_from(p, e, n, 0);
    free(e);
    if (rc < 0)
        return rc;
    int binary = p->pb.task == KP_TASK_BINARY;
    if ((binary && p->n_classes != 2) || p->n_classes < 2)
        return kp_errf(p->err, p->errlen, KP_ERR_FORMAT,
                       "%s: task %s needs %s classes in column '%s', found %d",
                       kp_csv_name(p->train), kp_task_name(p->pb.task),
                       binary ? "exactly 2" : "at least 2", p->comp->targets[0], p->n_classes);
    p->pb.n_out = binary ? 1 : p->n_classes;
    return 0;
}

static int regression_target(prep *p)
{
    for (size_t r = 0; r < kp_csv_rows(p->train); r++) {
        const char *s;
        double v;
        int rc = target_value(p, 0, r, 0, &s);
        if (rc < 0)
            return rc;
        if (!kp_prep_parse_num(p, s, &v))
            return kp_errf(p->err, p->errlen, KP_ERR_FORMAT,
                           "%s:%zu:%ld: target '%s' is '%s', not a number (task regression)",
                           kp_csv_name(p->train), kp_csv_line(p->train, r), p->target[0] + 1,
                           p->comp->targets[0], s);
        p->y[r] = (float)v;
    }
    p->pb.n_out = 1;
    return 0;
}

/* Copies the tags of every row into arena (NUL-terminated) and their rows into rows. */
static int split_tags(prep *p, kp_buf *arena, kp_buf *rows, size_t *count)
{
    for (size_t r = 0; r < kp_csv_rows(p->train); r++) {
        const char *s;
        int64_t row = (int64_t)r;
        int rc = target_value(p, 0, r, 1, &s);
        if (rc < 0)
            return rc;
        for (s += strspn(s, " \t"); *s; s += strspn(s, " \t")) {
            size_t len = strcspn(s, " \t");
            if (kp_buf_add(arena, s, len) < 0 || kp_buf_add(arena, "", 1) < 0 ||
                kp_buf_add(rows, &row, sizeof row) < 0)
                return kp_prep_nomem(p);
            (*count)++;
            s += len;
        }
    }
    return 0;
}

/* One column of space-separated tags: the vocabulary, sorted, is the labels. */
static int multilabel_tags(prep *p)
{
    kp_buf arena, rows;
    size_t m = 0, n = kp_csv_rows(p->train);
    entry *e = NULL;
    kp_buf_init(&arena, 0);
    kp_buf_init(&rows, 0);
    int rc = split_tags(p, &arena, &rows, &m);
    if (rc == 0 && m == 0)
        rc = kp_errf(p->err, p->errlen, KP_ERR_FORMAT, "%s: column '%s' holds no tags",
                     kp_csv_name(p->train), p->comp->targets[0]);
    if (rc == 0 && !(e = malloc(m * sizeof *e)))
        rc = kp_prep_nomem(p);
    const char *s = arena.data;
    for (size_t i = 0; rc == 0 && i < m; s += strlen(s) + 1, i++)
        e[i] = (entry){.s = s, .row = ((const int64_t *)(const void *)rows.data)[i]};
    size_t labels = rc == 0 ? kp_prep_sort_runs(e, m, 0) : 0;   /* y is [n, labels] */
    free(p->y);
    if (rc == 0 && !(p->y = calloc(n * labels, sizeof *p->y)))
        rc = kp_prep_nomem(p);
    if (rc == 0)
        rc = classes_from(p, e, m, labels);
    p->pb.n_out = p->n_classes;
    free(e);
    kp_buf_free(&arena);
    kp_buf_free(&rows);
    return rc;
}

/* Several 0/1 target columns, one label each. */
static int multilabel_columns(prep *p)
{
    size_t n = kp_csv_rows(p->train), L = (size_t)p->comp->n_targets;
    free(p->y);
    if (!(p->y = calloc(n * L, sizeof *p->y)) || !(p->classes = calloc(L, sizeof *p->classes)))
        return kp_prep_nomem(p);
    p->n_classes = (int)L;
    for (size_t j = 0; j < L; j++)
        if (!(p->classes[j] = strdup(p->comp->targets[j])))
            return kp_prep_nomem(p);
    for (size_t r = 0; r < n; r++)
        for (size_t j = 0; j < L; j++) {
            const char *s;
            double v = -1;
            int rc = target_value(p, (int)j, r, 0, &s);
            if (rc < 0)
                return rc;
            if (!kp_prep_parse_num(p, s, &v) || (v != 0 && v != 1))
                return kp_errf(p->err, p->errlen, KP_ERR_FORMAT,
                               "%s:%zu:%ld: label column '%s' is '%s', expected 0 or 1",
                               kp_csv_name(p->train), kp_csv_line(p->train, r),
                               p->target[j] + 1, p->comp->targets[j], s);
            p->y[r * L + j] = (float)v;
        }
    p->pb.n_out = (int)L;
    return 0;
}

int kp_prep_build_targets(prep *p)
{
    size_t n = kp_csv_rows(p->train);
    kp_task_kind t = p->comp->task;
    p->pb.task = t;
    if (p->comp->n_targets < 1 || (t != KP_TASK_MULTILABEL && p->comp->n_targets != 1))
        return kp_errf(p->err, p->errlen, KP_ERR_ARG,
                       "preprocess: task %s takes %s target column, the competition names %d",
                       kp_task_name(t), t == KP_TASK_MULTILABEL ? "at least one" : "one",
                       p->comp->n_targets);
    if (!(p->y = calloc(n, sizeof *p->y)))
        return kp_prep_nomem(p);
    switch (t) {
    case KP_TASK_REGRESSION: return regression_target(p);
    case KP_TASK_MULTILABEL:
        return p->comp->n_targets > 1 ? multilabel_columns(p) : multilabel_tags(p);
    default: return class_targets(p);
    }
}

int kp_prep_build_groups(prep *p)
{
    size_t n = kp_csv_rows(p->train);
    if (p->group < 0)
        return 0;
    entry *e = malloc(n * sizeof *e);
    int32_t *run_of = malloc(n * sizeof *run_of), *id = malloc(n * sizeof *id);
    p->groups = malloc(n * sizeof *p->groups);
    int rc = e && run_of && id && p->groups ? 0 : kp_prep_nomem(p);
    for (size_t r = 0; r < n && rc == 0; r++)
        e[r] = (entry){.s = kp_csv_get(p->train, r, (size_t)p->group), .row = (int64_t)r};
    if (rc == 0) {
        kp_prep_sort_runs(e, n, 0);
        for (size_t i = 0; i < n; i++) {
            run_of[e[i].row] = e[i].run;
            id[i] = -1;
        }
        int32_t next = 0;
        for (size_t r = 0; r < n; r++) {
            if (id[run_of[r]] < 0)
                id[run_of[r]] = next++;
            p->groups[r] = id[run_of[r]];
        }
    }
    free(e);
    free(run_of);
    free(id);
    return rc;
}

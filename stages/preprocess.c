/* preprocess.c - the preprocess stage: train/test CSVs to dataset.safetensors.
 *
 * One pass decides each feature column's kind and statistics from train
 * (test only takes part in "is every value a number"), a second encodes the
 * rows; the targets, groups and ids follow, then the artifact is written.
 * Everything is fitted on train only, so test rows never leak into a
 * statistic.  See preprocess.h for the encoding rules.
 */
#include "preprocess_int.h"
#include "artifact.h"

#include <jansson.h>
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/csv.h"
#include "../lib/err.h"

static const kp_keyspec preprocess_keys[] = {
    {"train", KP_PT_PATH, "", NULL, 0, 0,
     "train CSV to read instead of competition.train (e.g. a command stage's output)"},
    {"test", KP_PT_PATH, "", NULL, 0, 0, "test CSV to read instead of competition.test"},
    {"categorical", KP_PT_ENUM, "onehot", "onehot|ordinal", 0, 0,
     "how categorical columns become numbers: onehot (0/1 per category) or ordinal (index)"},
    {"max_onehot", KP_PT_INT, "32", NULL, 0, 1e9,
     "a categorical column with more categories than this is encoded ordinal"},
    {"impute", KP_PT_ENUM, "mean", "mean|median|constant|none", 0, 0,
     "what replaces a missing number: the train mean, train median or fill_value; none "
     "leaves it NaN for the models that route missing values (gbdt, forest)"},
    {"fill_value", KP_PT_FLOAT, "0", NULL, 0, 0, "the value used by impute: constant"},
    {"missing_indicator", KP_PT_BOOL, "false", NULL, 0, 0,
     "add a 0/1 column COL:missing for each feature with missing values in train"},
    {"standardize", KP_PT_BOOL, "false", NULL, 0, 0,
     "scale numeric and ordinal columns to mean 0, std 1 (train statistics; std 0 -> 1)"},
    {"drop", KP_PT_LIST, "", NULL, 0, 0, "train columns to leave out of the features"},
    {"na_values", KP_PT_LIST, "", NULL, 0, 0,
     "strings that mean missing (default: \"\", NA, NaN, nan, NULL, null, ?)"},
    {NULL, 0, NULL, NULL, 0, 0, NULL},
};

/* ---- options and columns ---- */

static int read_options(prep *p, const kp_params *o)
{
    const char *cat = kp_params_str(o, "categorical", "onehot");
    const char *imp = kp_params_str(o, "impute", "mean");
    p->onehot = strcmp(cat, "onehot") == 0;
    p->impute = strcmp(imp, "median") == 0     ? IMPUTE_MEDIAN
                : strcmp(imp, "constant") == 0 ? IMPUTE_CONSTANT
                : strcmp(imp, "none") == 0     ? IMPUTE_NONE
                                               : IMPUTE_MEAN;
    if ((!p->onehot && strcmp(cat, "ordinal") != 0) ||
        (p->impute == IMPUTE_MEAN && strcmp(imp, "mean") != 0))
        return kp_errf(p->err, p->errlen, KP_ERR_ARG,
                       "preprocess: categorical is '%s' and impute '%s'; expected onehot|ordinal "
                       "and mean|median|constant|none", cat, imp);
    p->max_onehot = kp_params_int(o, "max_onehot", 32);
    p->fill_value = kp_params_double(o, "fill_value", 0);
    p->indicator = kp_params_bool(o, "missing_indicator", 0);
    p->standardize = kp_params_bool(o, "standardize", 0);
    if (kp_params_get_list(o, "drop", &p->drop, &p->n_drop) < 0)
        p->n_drop = 0;
    if (kp_params_get_list(o, "na_values", &p->na, &p->n_na) < 0) {
        kp_prep_default_na(p);
        return 0;
    }
    for (int i = 0; i < p->n_na; i++)
        p->na_first[(unsigned char)p->na[i][0]] = 1;
    return 0;
}

static int locate_columns(prep *p)
{
    const kp_competition *c = p->comp;
    int rc;
    if (kp_csv_rows(p->train) == 0)
        return kp_errf(p->err, p->errlen, KP_ERR_FORMAT, "%s: no data rows",
                       kp_csv_name(p->train));
    if ((rc = kp_prep_need_col(p, p->train, c->id, "id (competition.id)", &p->id_tr)) < 0 ||
        (rc = kp_prep_need_col(p, p->test, c->id, "id (competition.id)", &p->id_te)) < 0)
        return rc;
    return kp_prep_find_targets(p);
}

/* Returns 1 when train column col is a feature (not id, target, group, dropped). */
static int is_feature(const prep *p, long col)
{
    if (col == p->id_tr || col == p->group)
        return 0;
    for (int i = 0; i < p->comp->n_targets; i++)
        if (col == p->target[i])
            return 0;
    for (int i = 0; i < p->n_drop; i++)
        if (strcmp(kp_csv_header(p->train, (size_t)col), p->drop[i]) == 0)
            return 0;
    return 1;
}

/* Checks every `drop` name is a train column (suggesting the nearest). */
static int check_drop(prep *p)
{
    size_t nc = kp_csv_cols(p->train);
    for (int i = 0; i < p->n_drop; i++) {
        if (kp_csv_find(p->train, p->drop[i]) >= 0)
            continue;
        const char **names = malloc(nc * sizeof *names);
        if (!names)
            return kp_prep_nomem(p);
        for (size_t c = 0; c < nc; c++)
            names[c] = kp_csv_header(p->train, c);
        const char *s = kp_suggest(p->drop[i], names, (int)nc);
        int rc = kp_errf(p->err, p->errlen, KP_ERR_ARG,
                         "preprocess: drop: %s has no column '%s'%s%s%s", kp_csv_name(p->train),
                         p->drop[i], s ? " (did you mean '" : "", s ? s : "", s ? "'?)" : "");
        free(names);
        return rc;
    }
    return 0;
}

/* Lists the feature columns and finds each in test. */
static int plan_features(prep *p)
{
    size_t nc = kp_csv_cols(p->train);
    int rc = check_drop(p);
    if (rc < 0)
        return rc;
    if (!(p->f = calloc(nc, sizeof *p->f)))
        return kp_prep_nomem(p);
    for (size_t c = 0; c < nc; c++) {
        if (!is_feature(p, (long)c))
            continue;
        const char *name = kp_csv_header(p->train, c);
        long te = kp_csv_find(p->test, name);
        if (te < 0)
            return kp_errf(p->err, p->errlen, KP_ERR_NOTFOUND,
                           "%s:1: no column '%s', a feature column of %s (leave it out with "
                           "drop: [%s])", kp_csv_name(p->test), name, kp_csv_name(p->train), name);
        p->f[p->n_f++] = (feat){.tr = c, .te = (size_t)te, .scale = 1};
    }
    if (p->n_f == 0)
        return kp_errf(p->err, p->errlen, KP_ERR_ARG, "preprocess: %s has no feature columns "
                       "left besides the id, target and group columns", kp_csv_name(p->train));
    return 0;
}

/* ---- feature statistics ---- */

/* Counts missing values of one column and returns whether the others are all
 * numbers; when vals is non-NULL the numbers go to vals[*n_vals]. */
static int scan_column(const prep *p, const kp_csv *t, size_t col, size_t *missing,
                       double *vals, size_t *n_vals)
{
    int numeric = 1;
    double v;
    for (size_t r = 0; r < kp_csv_rows(t); r++) {
        const char *s = kp_csv_get(t, r, col);
        if (kp_prep_is_na(p, s))
            (*missing)++;
        else if (numeric && !kp_prep_parse_num(p, s, &v))
            numeric = 0;
        else if (numeric && vals)
            vals[(*n_vals)++] = v;
    }
    return numeric;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Returns the imputed value from the m train numbers v (reordered). */
static double numeric_fill(const prep *p, double *v, size_t m)
{
    double sum = 0;
    if (p->impute == IMPUTE_CONSTANT)
        return p->fill_value;
    if (p->impute == IMPUTE_NONE)
        return NAN;
    if (m == 0)
        return 0;   /* no value in train at all: nothing to average */
    if (p->impute == IMPUTE_MEDIAN) {
        qsort(v, m, sizeof *v, cmp_double);
        return m % 2 ? v[m / 2] : (v[m / 2 - 1] + v[m / 2]) / 2;
    }
    for (size_t i = 0; i < m; i++)
        sum += v[i];
    return sum / (double)m;
}

/* Collects the sorted distinct train values of a categorical column. */
static int categories(prep *p, feat *f)
{
    size_t n = kp_csv_rows(p->train), m = 0;
    entry *e = malloc((n ? n : 1) * sizeof *e);
    if (!e)
        return kp_prep_nomem(p);
    for (size_t r = 0; r < n; r++) {
        const char *s = kp_csv_get(p->train, r, f->tr);
        if (!kp_prep_is_na(p, s))
            e[m++] = (entry){.s = s, .row = (int64_t)r};
    }
    f->n_cats = kp_prep_sort_runs(e, m, 0);
    f->cats = malloc((f->n_cats ? f->n_cats : 1) * sizeof *f->cats);
    for (size_t i = 0; f->cats && i < m; i++)
        f->cats[e[i].run] = e[i].s;
    free(e);
    return f->cats ? 0 : kp_prep_nomem(p);
}

/* Decides each feature's encoding and output columns. */
static int analyse_features(prep *p)
{
    double *vals = malloc((kp_csv_rows(p->train) + 1) * sizeof *vals);
    int rc = vals ? 0 : kp_prep_nomem(p);
    for (size_t i = 0; i < p->n_f && rc == 0; i++) {
        feat *f = &p->f[i];
        size_t m = 0;
        int num = scan_column(p, p->train, f->tr, &f->miss_train, vals, &m);
        num = scan_column(p, p->test, f->te, &f->miss_test, NULL, NULL) && num;
        if (num) {
            f->mode = COL_NUMERIC;
            f->fill = numeric_fill(p, vals, m);
        } else {
            rc = categories(p, f);
            f->mode = p->onehot && f->n_cats <= (size_t)p->max_onehot ? COL_ONEHOT : COL_ORDINAL;
        }
        f->width = f->mode == COL_ONEHOT ? f->n_cats : 1;
        f->indicator = p->indicator && f->miss_train > 0;
        f->out = p->n_out;
        p->n_out += f->width + (size_t)f->indicator;
    }
    free(vals);
    return rc;
}

/* ---- encoding ---- */

static int cmp_cat(const void *key, const void *elem)
{
    return strcmp(key, *(const char *const *)elem);
}

/* Writes the encoding of value s of feature f into row (its columns only). */
static void encode(const prep *p, feat *f, const char *s, float *row, int is_test)
{
    int missing = kp_prep_is_na(p, s);
    float *o = row + f->out;
    double v = f->fill;
    if (f->indicator)
        o[f->width] = (float)missing;
    if (f->mode == COL_NUMERIC) {
        if (!missing)
            kp_prep_parse_num(p, s, &v);
        o[0] = (float)v;
        return;
    }
    const char **hit = missing ? NULL : bsearch(s, f->cats, f->n_cats, sizeof *f->cats, cmp_cat);
    if (!missing && !hit && is_test)
        f->unseen++;
    long idx = hit ? (long)(hit - f->cats) : -1;
    if (f->mode == COL_ORDINAL) {
        o[0] = (float)idx;
        return;
    }
    memset(o, 0, f->width * sizeof *o);
    if (idx >= 0)
        o[idx] = 1;
}

/* Encodes every row of t into X (rows x n_out). */
static void encode_table(prep *p, const kp_csv *t, float *X, int is_test)
{
    for (size_t r = 0; r < kp_csv_rows(t); r++)
        for (size_t i = 0; i < p->n_f; i++) {
            feat *f = &p->f[i];
            encode(p, f, kp_csv_get(t, r, is_test ? f->te : f->tr), X + r * p->n_out, is_test);
        }
}

/* Scales numeric and ordinal columns with train mean and std (0 -> 1). */
static void standardize(prep *p)
{
    size_t ntr = kp_csv_rows(p->train), nte = kp_csv_rows(p->test), w = p->n_out;
    for (size_t i = 0; i < p->n_f; i++) {
        feat *f = &p->f[i];
        if (f->mode == COL_ONEHOT)
            continue;
        double sum = 0, ss = 0, n = 0;   /* over the values present (impute: none) */
        for (size_t r = 0; r < ntr; r++)
            if (!isnan(p->Xtr[r * w + f->out])) {
                sum += p->Xtr[r * w + f->out];
                n++;
            }
        f->mean = n > 0 ? sum / n : 0;
        for (size_t r = 0; r < ntr; r++) {
            double d = p->Xtr[r * w + f->out] - f->mean;
            ss += isnan(d) ? 0 : d * d;
        }
        double sd = n > 0 ? sqrt(ss / n) : 0;
        f->scale = sd > 0 ? sd : 1;
        for (size_t r = 0; r < ntr; r++)
            p->Xtr[r * w + f->out] = (float)((p->Xtr[r * w + f->out] - f->mean) / f->scale);
        for (size_t r = 0; r < nte; r++)
            p->Xte[r * w + f->out] = (float)((p->Xte[r * w + f->out] - f->mean) / f->scale);
    }
}

static int encode_features(prep *p)
{
    size_t ntr = kp_csv_rows(p->train), nte = kp_csv_rows(p->test);
    p->Xtr = malloc((ntr * p->n_out + 1) * sizeof *p->Xtr);
    p->Xte = malloc((nte * p->n_out + 1) * sizeof *p->Xte);
    if (!p->Xtr || !p->Xte)
        return kp_prep_nomem(p);
    encode_table(p, p->train, p->Xtr, 0);
    encode_table(p, p->test, p->Xte, 1);
    if (p->standardize)
        standardize(p);
    return 0;
}

/* ---- writing ---- */

/* Adds PREFIX.offsets and PREFIX.bytes for the id column of t. */
static int add_ids(kp_stw *w, const kp_csv *t, long col, const char *prefix)
{
    size_t n = kp_csv_rows(t), total = 0;
    int64_t *off = malloc((n + 1) * sizeof *off);
    if (!off)
        return KP_ERR_NOMEM;
    off[0] = 0;
    for (size_t r = 0; r < n; r++)
        off[r + 1] = off[r] + (int64_t)strlen(kp_csv_get(t, r, (size_t)col));
    total = (size_t)off[n];
    uint8_t *bytes = malloc(total ? total : 1);
    for (size_t r = 0; bytes && r < n; r++)
        memcpy(bytes + off[r], kp_csv_get(t, r, (size_t)col), (size_t)(off[r + 1] - off[r]));
    char name[64];
    int64_t so[1] = {(int64_t)n + 1}, sb[1] = {(int64_t)total};
    snprintf(name, sizeof name, "%s.offsets", prefix);
    int rc = bytes ? kp_stw_add(w, name, KP_I64, 1, so, off) : KP_ERR_NOMEM;
    snprintf(name, sizeof name, "%s.bytes", prefix);
    if (rc == 0)
        rc = kp_stw_add(w, name, KP_U8, 1, sb, bytes);
    free(off);
    free(bytes);
    return rc;
}

/* Returns a heap JSON array text of n strings, or NULL (not UTF-8, no memory). */
static char *strings_json(const char *const *s, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_string(s[i])) < 0) {
            json_decref(a);
            a = NULL;
        }
    char *text = a ? json_dumps(a, JSON_COMPACT) : NULL;
    json_decref(a);
    return text;
}

/* Returns a heap string a + sep + b, or NULL. */
static char *join3(const char *a, const char *sep, const char *b)
{
    size_t la = strlen(a), ls = strlen(sep), lb = strlen(b);
    char *s = malloc(la + ls + lb + 1);
    if (s) {
        memcpy(s, a, la);
        memcpy(s + la, sep, ls);
        memcpy(s + la + ls, b, lb + 1);
    }
    return s;
}

/* Fills names[0 .. n_out) with the output feature names (heap strings). */
static int feature_names(const prep *p, char **names)
{
    for (size_t i = 0; i < p->n_f; i++) {
        const feat *f = &p->f[i];
        const char *col = kp_csv_header(p->train, f->tr);
        for (size_t j = 0; j < f->width; j++)
            names[f->out + j] = f->mode == COL_ONEHOT ? join3(col, "=", f->cats[j])
                                                      : join3(col, "", "");
        if (f->indicator)
            names[f->out + f->width] = join3(col, ":missing", "");
    }
    for (size_t i = 0; i < p->n_out; i++)
        if (!names[i])
            return KP_ERR_NOMEM;
    return 0;
}

/* Adds the metadata lists (features, classes, targets) as JSON. */
static int add_lists(prep *p, kp_stw *w)
{
    char **names = calloc(p->n_out + 1, sizeof *names);
    char *feats = NULL, *cls = NULL, *tg = NULL;
    int rc = names ? feature_names(p, names) : KP_ERR_NOMEM;
    if (rc == 0) {
        feats = strings_json((const char *const *)names, p->n_out);
        cls = strings_json((const char *const *)p->classes, (size_t)p->n_classes);
        tg = strings_json((const char *const *)p->comp->targets, (size_t)p->comp->n_targets);
        if (!feats || !cls || !tg)
            rc = KP_ERR_FORMAT;
    }
    if (rc == 0 && (kp_stw_meta(w, "features", feats) < 0 || kp_stw_meta(w, "classes", cls) < 0 ||
                    kp_stw_meta(w, "target_columns", tg) < 0))
        rc = KP_ERR_NOMEM;
    for (size_t i = 0; names && i < p->n_out; i++)
        free(names[i]);
    free(names);
    free(feats);
    free(cls);
    free(tg);
    if (rc == KP_ERR_FORMAT)
        return kp_errf(p->err, p->errlen, rc, "preprocess: a column name or class label of %s "
                       "is not valid UTF-8", kp_csv_name(p->train));
    return rc < 0 ? kp_prep_nomem(p) : 0;
}

static int write_dataset(prep *p, const char *path)
{
    kp_stw *w = kp_stw_create();
    int64_t ntr = (int64_t)kp_csv_rows(p->train), nte = (int64_t)kp_csv_rows(p->test);
    int64_t sx[2] = {ntr, (int64_t)p->n_out}, se[2] = {nte, (int64_t)p->n_out};
    int64_t sy[2] = {ntr, p->pb.n_out};
    char num[32];
    int ml = p->pb.task == KP_TASK_MULTILABEL;
    snprintf(num, sizeof num, "%d", p->pb.n_out);
    int rc = w ? 0 : KP_ERR_NOMEM;
    if (rc == 0 && ((rc = kp_stw_add(w, "X_train", KP_F32, 2, sx, p->Xtr)) < 0 ||
                    (rc = kp_stw_add(w, "X_test", KP_F32, 2, se, p->Xte)) < 0 ||
                    (rc = kp_stw_add(w, "y", KP_F32, ml ? 2 : 1, sy, p->y)) < 0 ||
                    (p->groups && (rc = kp_stw_add(w, "groups", KP_I64, 1, sy, p->groups)) < 0) ||
                    (rc = add_ids(w, p->train, p->id_tr, "train_ids")) < 0 ||
                    (rc = add_ids(w, p->test, p->id_te, "test_ids")) < 0 ||
                    (rc = kp_stw_meta(w, "kpipe.artifact", "dataset")) < 0 ||
                    (rc = kp_stw_meta(w, "task", kp_task_name(p->pb.task))) < 0 ||
                    (rc = kp_stw_meta(w, "n_out", num)) < 0 ||
                    (rc = kp_stw_meta(w, "id_column", p->comp->id)) < 0 ||
                    (p->group >= 0 &&
                     (rc = kp_stw_meta(w, "group_column", p->comp->folds.group)) < 0)))
        rc = kp_errf(p->err, p->errlen, rc, "%s: cannot build the dataset: %s", path,
                     kp_strerror(rc));
    if (rc == 0)
        rc = add_lists(p, w);
    if (rc == 0)
        rc = kp_stw_write(w, path, p->err, p->errlen);
    kp_stw_free(w);
    return rc;
}

/* ---- log ---- */

static void log_summary(const prep *p)
{
    static const char *const how[] = {"numeric", "one-hot", "ordinal"};
    static const char *const imp[] = {", imputed with the mean", ", imputed with the median",
                                      ", imputed with the constant", ", kept as NaN"};
    size_t kinds[3] = {0, 0, 0};
    FILE *L = p->log;
    if (!L)
        return;
    for (size_t i = 0; i < p->n_f; i++)
        kinds[p->f[i].mode]++;
    fprintf(L, "preprocess: train %s: %zu rows; test %s: %zu rows\n", kp_csv_name(p->train),
            kp_csv_rows(p->train), kp_csv_name(p->test), kp_csv_rows(p->test));
    fprintf(L, "preprocess: %zu feature columns -> %zu features: %zu numeric, %zu categorical "
            "(%zu one-hot, %zu ordinal)\n", p->n_f, p->n_out, kinds[0], kinds[1] + kinds[2],
            kinds[1], kinds[2]);
    for (size_t i = 0; i < p->n_f; i++) {
        const feat *f = &p->f[i];
        const char *col = kp_csv_header(p->train, f->tr);
        if (f->miss_train || f->miss_test)
            fprintf(L, "preprocess: column '%s' (%s): %zu missing in train, %zu in test%s\n",
                    col, how[f->mode], f->miss_train, f->miss_test,
                    f->mode == COL_NUMERIC ? imp[p->impute] : "");
        if (f->unseen)
            fprintf(L, "preprocess: column '%s': %zu test rows have a category unseen in train\n",
                    col, f->unseen);
    }
    fprintf(L, "preprocess: task %s, n_out %d, %d classes%s\n", kp_task_name(p->pb.task),
            p->pb.n_out, p->n_classes, p->groups ? ", groups stored" : "");
    fflush(L);
}

static void prep_free(prep *p)
{
    kp_csv_free(p->train);
    kp_csv_free(p->test);
    free(p->target);
    for (size_t i = 0; p->f && i < p->n_f; i++)
        free(p->f[i].cats);
    free(p->f);
    free(p->Xtr);
    free(p->Xte);
    free(p->y);
    free(p->groups);
    for (int i = 0; p->classes && i < p->n_classes; i++)
        free(p->classes[i]);
    free(p->classes);
    if (p->c)
        freelocale(p->c);
}

int kp_preprocess_build(const kp_competition *comp, const kp_params *opts,
                        const char *out_path, FILE *log, char *err, size_t errlen)
{
    prep p = {.comp = comp, .log = log, .err = err, .errlen = errlen};
    kp_params *none = opts ? NULL : kp_params_create();   /* no keys: every default */
    int rc = KP_ERR_NOMEM;
    if ((!opts && !none) || !(p.c = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0))) {
        kp_prep_nomem(&p);
        goto fail;
    }
    if ((rc = read_options(&p, opts ? opts : none)) < 0 ||
        (rc = kp_csv_read(comp->train, &p.train, err, errlen)) < 0 ||
        (rc = kp_csv_read(comp->test, &p.test, err, errlen)) < 0 ||
        (rc = locate_columns(&p)) < 0 || (rc = plan_features(&p)) < 0 ||
        (rc = analyse_features(&p)) < 0 || (rc = encode_features(&p)) < 0 ||
        (rc = kp_prep_build_targets(&p)) < 0 || (rc = kp_prep_build_groups(&p)) < 0 ||
        (rc = write_dataset(&p, out_path)) < 0)
        goto fail;
    log_summary(&p);
fail:
    prep_free(&p);
    kp_params_free(none);
    return rc;
}

/* ---- the stage type ---- */

static int prep_outputs(const kp_stage *st, const kp_config *cfg, int part, kp_buf *out)
{
    char path[4096];
    (void)cfg;
    if (part >= 0 || kp_stage_artifact_path(st, path, sizeof path) < 0)
        return KP_ERR_ARG;
    return kp_buf_printf(out, "%s\n", path);
}

/* Resolves the CSV the stage reads for `key` ("train" or "test") into out:
 * the stage's own key if set (relative to the config), else the competition's. */
static int prep_source(const kp_stage *st, const kp_config *cfg, const char *key, char *out,
                       size_t outlen)
{
    const char *own = kp_params_get(st->opts, key);
    if (own && *own)
        return kp_config_path(cfg, own, out, outlen);
    const char *comp = strcmp(key, "train") == 0 ? cfg->comp.train : cfg->comp.test;
    int n = snprintf(out, outlen, "%s", comp ? comp : "");
    return n < 0 || (size_t)n >= outlen ? KP_ERR_ARG : 0;
}

static int prep_inputs(const kp_stage *st, const kp_config *cfg, kp_buf *out)
{
    char train[4096], test[4096];
    int rc = prep_source(st, cfg, "train", train, sizeof train);
    if (rc || (rc = prep_source(st, cfg, "test", test, sizeof test)))
        return rc;
    return kp_buf_printf(out, "%s\n%s\n", train, test);
}

/* Checks at load time that the task fits the number of target columns. */
static int prep_check(kp_stage *st, const kp_config *cfg, char *err, size_t errlen)
{
    const kp_competition *c = &cfg->comp;
    if (c->task == KP_TASK_MULTILABEL || c->n_targets == 1)
        return 0;
    return kp_errf(err, errlen, KP_ERR_CONFIG, "%s:%d:%d: stages.%s: task %s takes one target "
                   "column, competition.target names %d", cfg->path, st->line, st->col,
                   st->base ? st->base : st->name, kp_task_name(c->task), c->n_targets);
}

static int prep_run(const kp_task_ctx *ctx, char *err, size_t errlen)
{
    char path[4096], train[4096], test[4096];
    kp_competition comp = ctx->cfg->comp;   /* shallow: only train/test are replaced */
    if (kp_stage_artifact_path(ctx->stage, path, sizeof path) < 0 ||
        prep_source(ctx->stage, ctx->cfg, "train", train, sizeof train) < 0 ||
        prep_source(ctx->stage, ctx->cfg, "test", test, sizeof test) < 0)
        return kp_errf(err, errlen, KP_ERR_ARG, "stage '%s': path too long", ctx->stage->name);
    comp.train = train;
    comp.test = test;
    return kp_preprocess_build(&comp, ctx->stage->opts, path, ctx->log, err, errlen);
}

const kp_stage_ops kp_stage_preprocess = {
    .name = "preprocess",
    .doc = "reads the train and test CSVs: imputes, encodes and scales features, encodes targets",
    .keys = preprocess_keys,
    .output = KP_ART_DATASET,
    .check = prep_check,
    .outputs = prep_outputs,
    .inputs = prep_inputs,
    .run = prep_run,
};

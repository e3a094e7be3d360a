/* folds.c - the folds stage: plain, stratified and group k-fold assignment. */
#include "folds.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/err.h"

static const kp_keyspec folds_keys[] = {
    {"k", KP_PT_INT, "", NULL, 2, 1e9, "number of folds (default: competition.folds.k)"},
    {"kind", KP_PT_ENUM, "", "plain|stratified|group", 0, 0,
     "how rows are split (default: competition.folds.kind)"},
    {"seed", KP_PT_INT, "", NULL, 0, 0, "shuffle seed (default: competition.folds.seed)"},
    {"repeats", KP_PT_INT, "", NULL, 1, 1000,
     "independent fold sets, each from its own seed stream (default: competition.folds.repeats)"},
    {"group", KP_PT_STRING, "", NULL, 0, 0,
     "group column for kind group (default: competition.folds.group)"},
    {NULL, 0, NULL, NULL, 0, 0, NULL},
};

static const char *const kind_names[] = {"plain", "stratified", "group"};

const char *kp_fold_kind_name(kp_fold_kind kind)
{
    return (unsigned)kind < 3 ? kind_names[kind] : "unknown";
}

/* Checks 2 <= k <= n and that n fits the int shuffles. */
static int check_k(int64_t n, int k, char *err, size_t errlen)
{
    if (n > INT_MAX)
        return kp_errf(err, errlen, KP_ERR_ARG, "%lld rows are too many to fold", (long long)n);
    if (k < 2 || k > n)
        return kp_errf(err, errlen, KP_ERR_ARG, "k = %d folds needs 2 <= k <= rows (%lld)", k,
                       (long long)n);
    return 0;
}

/* Returns a shuffled 0..n-1 (caller frees), or NULL. */
static int *shuffled(int64_t n, kp_rng *rng)
{
    int *perm = malloc((size_t)(n > 0 ? n : 1) * sizeof *perm);
    for (int64_t i = 0; perm && i < n; i++)
        perm[i] = (int)i;
    if (perm)
        kp_rng_shuffle_int(rng, perm, (size_t)n);
    return perm;
}

int fold_assign_plain(int64_t n, int k, kp_rng *rng, int32_t *out, char *err, size_t errlen)
{
    int rc = check_k(n, k, err, errlen);
    if (rc < 0)
        return rc;
    int *perm = shuffled(n, rng);
    if (!perm)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    int64_t pos = 0, base = n / k, extra = n % k;
    for (int f = 0; f < k; f++)
        for (int64_t j = 0; j < base + (f < extra); j++)
            out[perm[pos++]] = f;
    free(perm);
    return 0;
}

/* Counts rows per class into count[n_classes]; checks labels and sizes. */
static int class_counts(const float *y, int64_t n, int n_classes, int k, int64_t *count,
                        char *err, size_t errlen)
{
    for (int64_t i = 0; i < n; i++) {
        float v = y[i];
        if (!(v >= 0 && v < n_classes && v == floorf(v)))
            return kp_errf(err, errlen, KP_ERR_ARG,
                           "row %lld has label %g, not a class index in [0, %d)", (long long)i,
                           (double)v, n_classes);
        count[(int)v]++;
    }
    for (int c = 0; c < n_classes; c++)
        if (count[c] < k)
            return kp_errf(err, errlen, KP_ERR_ARG,
                           "class %d has %lld rows, fewer than k = %d folds", c,
                           (long long)count[c], k);
    return 0;
}

int fold_assign_stratified(const float *y, int64_t n, int n_classes, int k, kp_rng *rng,
                           int32_t *out, char *err, size_t errlen)
{
    int rc = check_k(n, k, err, errlen);
    if (rc < 0)
        return rc;
    if (n_classes < 1)
        return kp_errf(err, errlen, KP_ERR_ARG, "stratified folds need classes, got %d",
                       n_classes);
    int64_t *start = calloc((size_t)n_classes + 1, sizeof *start);
    int *rows = malloc((size_t)n * sizeof *rows);
    if (!start || !rows) {
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if ((rc = class_counts(y, n, n_classes, k, start + 1, err, errlen)) < 0)
        goto fail;
    for (int c = 0; c < n_classes; c++)   /* counts to start offsets */
        start[c + 1] += start[c];
    int64_t *fill = start;   /* each class's rows, in row order, after fill */
    for (int64_t i = 0; i < n; i++)
        rows[fill[(int)y[i]]++] = (int)i;
    int64_t counter = 0, begin = 0;
    for (int c = 0; c < n_classes; c++) {
        int64_t end = fill[c];   /* fill[c] is now where class c ends */
        kp_rng_shuffle_int(rng, rows + begin, (size_t)(end - begin));
        for (int64_t j = begin; j < end; j++)
            out[rows[j]] = (int32_t)(counter++ % k);
        begin = end;
    }
fail:
    free(start);
    free(rows);
    return rc;
}

/* ---- group folds ---- */

typedef struct group_order { int64_t size; int64_t rank; int32_t id; } group_order;

static int cmp_rows_by_group(const void *a, const void *b, void *arg)
{
    const int64_t *g = arg;
    int64_t x = g[*(const int *)a], y = g[*(const int *)b];
    return (x > y) - (x < y);
}

static int cmp_group_order(const void *a, const void *b)
{
    const group_order *x = a, *y = b;
    if (x->size != y->size)
        return x->size > y->size ? -1 : 1;
    return (x->rank > y->rank) - (x->rank < y->rank);
}

/* Numbers the distinct group values: gid[i] for row i; returns the count, or -1. */
static int64_t number_groups(const int64_t *groups, int64_t n, int32_t *gid)
{
    int *idx = malloc((size_t)n * sizeof *idx);
    if (!idx)
        return -1;
    for (int64_t i = 0; i < n; i++)
        idx[i] = (int)i;
    qsort_r(idx, (size_t)n, sizeof *idx, cmp_rows_by_group, (void *)groups);
    int64_t g = -1;
    for (int64_t i = 0; i < n; i++) {
        if (i == 0 || groups[idx[i]] != groups[idx[i - 1]])
            g++;
        gid[idx[i]] = (int32_t)g;
    }
    free(idx);
    return g + 1;
}

/* Sends each group (largest first) to the smallest fold: fold_of[g]. */
static void greedy_assign(group_order *o, int64_t G, int k, int32_t *fold_of, int64_t *fsize)
{
    qsort(o, (size_t)G, sizeof *o, cmp_group_order);
    for (int64_t i = 0; i < G; i++) {
        int best = 0;
        for (int f = 1; f < k; f++)
            if (fsize[f] < fsize[best])
                best = f;
        fold_of[o[i].id] = best;
        fsize[best] += o[i].size;
    }
}

int fold_assign_group(const int64_t *groups, int64_t n, int k, kp_rng *rng, int32_t *out,
                      char *err, size_t errlen)
{
    int rc = check_k(n, k, err, errlen);
    if (rc < 0)
        return rc;
    int32_t *gid = malloc((size_t)n * sizeof *gid), *fold_of = NULL;
    group_order *o = calloc((size_t)n, sizeof *o);
    int64_t *fsize = calloc((size_t)k, sizeof *fsize), G = -1;
    int *perm = NULL;
    if (gid && o && fsize)
        G = number_groups(groups, n, gid);
    if (G < 0 || !(fold_of = malloc((size_t)G * sizeof *fold_of)) || !(perm = shuffled(G, rng))) {
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (G < k) {
        rc = kp_errf(err, errlen, KP_ERR_ARG,
                     "only %lld distinct groups, fewer than k = %d folds", (long long)G, k);
        goto fail;
    }
    for (int64_t g = 0; g < G; g++)
        o[g].id = (int32_t)g;
    for (int64_t i = 0; i < n; i++)
        o[gid[i]].size++;
    for (int64_t i = 0; i < G; i++)   /* ties broken by the shuffled order */
        o[perm[i]].rank = i;
    greedy_assign(o, G, k, fold_of, fsize);
    for (int64_t i = 0; i < n; i++)
        out[i] = fold_of[gid[i]];
fail:
    free(gid);
    free(fold_of);
    free(o);
    free(fsize);
    free(perm);
    return rc;
}

/* ---- settings ---- */

/* Reads integer key from opts if set (non-empty), else keeps *v. */
static int opt_int(const kp_params *opts, const char *key, long long *v, char *err,
                   size_t errlen)
{
    const char *s = opts ? kp_params_get(opts, key) : NULL;
    char *end;
    if (!s || !*s)
        return 0;
    long long x = strtoll(s, &end, 10);
    if (*end)
        return kp_errf(err, errlen, KP_ERR_CONFIG, "%s: expected a whole number, got '%s'",
                       key, s);
    *v = x;
    return 0;
}

/* Reads kind and group over the competition's. */
static int opt_kind(const kp_params *opts, const kp_competition *comp, kp_fold_spec *o,
                    char *err, size_t errlen)
{
    const char *kind = opts ? kp_params_get(opts, "kind") : NULL;
    const char *group = opts ? kp_params_get(opts, "group") : NULL;
    o->kind = comp->folds.kind;
    o->group = group && *group ? group : comp->folds.group;
    if (o->group && !*o->group)
        o->group = NULL;
    if (!kind || !*kind)
        return 0;
    for (int i = 0; i < 3; i++)
        if (strcmp(kind, kind_names[i]) == 0) {
            o->kind = (kp_fold_kind)i;
            return 0;
        }
    return kp_errf(err, errlen, KP_ERR_CONFIG, "kind: '%s' is not plain, stratified or group",
                   kind);
}

int kp_folds_resolve(const kp_params *opts, const kp_competition *comp, kp_fold_spec *out,
                     char *err, size_t errlen)
{
    long long k = comp->folds.k, r = comp->folds.repeats, seed = (long long)comp->folds.seed;
    kp_fold_spec s;
    int rc;
    if ((rc = opt_int(opts, "k", &k, err, errlen)) < 0 ||
        (rc = opt_int(opts, "repeats", &r, err, errlen)) < 0 ||
        (rc = opt_int(opts, "seed", &seed, err, errlen)) < 0 ||
        (rc = opt_kind(opts, comp, &s, err, errlen)) < 0)
        return rc;
    if (k < 2 || k > INT_MAX)
        return kp_errf(err, errlen, KP_ERR_CONFIG, "k: %lld folds; k must be at least 2", k);
    if (r < 1 || r > 1000)
        return kp_errf(err, errlen, KP_ERR_CONFIG, "repeats: %lld; must be 1 to 1000", r);
    kp_task_kind t = comp->task;
    if (s.kind == KP_FOLDS_STRATIFIED && (t == KP_TASK_REGRESSION || t == KP_TASK_MULTILABEL))
        return kp_errf(err, errlen, KP_ERR_CONFIG, "kind: stratified folds need one class per "
                       "row, task %s has none; use kind: plain", kp_task_name(t));
    if (s.kind == KP_FOLDS_GROUP && !s.group)
        return kp_errf(err, errlen, KP_ERR_CONFIG, "kind: group folds need a group column "
                       "(set competition.folds.group)");
    if (s.kind == KP_FOLDS_GROUP && (!comp->folds.group || strcmp(s.group, comp->folds.group)))
        return kp_errf(err, errlen, KP_ERR_CONFIG, "group: '%s' is not competition.folds.group, "
                       "the only group column preprocess keeps; set it there", s.group);
    s.k = (int)k;
    s.repeats = (int)r;
    s.seed = (uint64_t)seed;
    *out = s;
    return 0;
}

/* ---- making the artifact ---- */

/* Checks every class of d has at least k rows, naming the class label. */
static int check_strata(const kp_dataset *d, int k, char *err, size_t errlen)
{
    int64_t *count = calloc((size_t)d->n_classes + 1, sizeof *count);
    if (!count)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < d->n_train; i++)
        count[(int)d->y[i]]++;   /* kp_dataset_open checked y is a class index */
    int rc = 0;
    for (int c = 0; c < d->n_classes && rc == 0; c++)
        if (count[c] < k)
            rc = kp_errf(err, errlen, KP_ERR_ARG, "class '%s' has %lld rows, fewer than k = %d "
                         "folds; lower k or use kind: plain", d->classes[c],
                         (long long)count[c], k);
    free(count);
    return rc;
}

/* Assigns one repeat's folds for dataset d. */
static int assign_repeat(const kp_dataset *d, const kp_fold_spec *s, int r, int32_t *out,
                         char *err, size_t errlen)
{
    kp_rng rng;
    kp_rng_seed(&rng, kp_rng_derive(s->seed, (uint64_t)r));
    switch (s->kind) {
    case KP_FOLDS_STRATIFIED:
        if (d->pb.task != KP_TASK_BINARY && d->pb.task != KP_TASK_MULTICLASS)
            return kp_errf(err, errlen, KP_ERR_ARG, "stratified folds need class labels, task "
                           "%s has none; use kind: plain", kp_task_name(d->pb.task));
        if (r == 0 && check_strata(d, s->k, err, errlen) < 0)
            return KP_ERR_ARG;
        return fold_assign_stratified(d->y, d->n_train, d->n_classes, s->k, &rng, out, err,
                                      errlen);
    case KP_FOLDS_GROUP:
        if (!d->groups)
            return kp_errf(err, errlen, KP_ERR_MISMATCH, "the dataset has no groups: set "
                           "competition.folds.group so preprocess keeps the column");
        return fold_assign_group(d->groups, d->n_train, s->k, &rng, out, err, errlen);
    default:
        return fold_assign_plain(d->n_train, s->k, &rng, out, err, errlen);
    }
}

/* Logs "folds: ..." with the smallest and largest fold of the first repeat. */
static void log_folds(FILE *log, const kp_fold_spec *s, const int32_t *fold, int64_t n,
                      const char *path)
{
    int64_t lo = INT64_MAX, hi = 0;
    for (int f = 0; f < s->k; f++) {
        int64_t c = 0;
        for (int64_t i = 0; i < n; i++)
            c += fold[i] == f;
        lo = c < lo ? c : lo;
        hi = c > hi ? c : hi;
    }
    fprintf(log, "folds: %d %s folds x %d repeats of %lld rows (seed %llu); fold sizes %lld..%lld;"
            " wrote %s\n", s->k, kp_fold_kind_name(s->kind), s->repeats, (long long)n,
            (unsigned long long)s->seed, (long long)lo, (long long)hi, path);
    fflush(log);
}

int kp_folds_make(const char *dataset_path, const kp_fold_spec *spec, const char *out_path,
                  FILE *log, char *err, size_t errlen)
{
    kp_dataset *d = NULL;
    int32_t *fold = NULL;
    int rc = kp_dataset_open(dataset_path, &d, err, errlen);
    if (rc < 0)
        return rc;
    int64_t n = d->n_train;
    if (!(fold = malloc((size_t)(n * spec->repeats) * sizeof *fold))) {
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int r = 0; r < spec->repeats && rc == 0; r++)
        rc = assign_repeat(d, spec, r, fold + (int64_t)r * n, err, errlen);
    if (rc < 0) {
        kp_err_prefix(err, errlen, rc, dataset_path);
        goto fail;
    }
    rc = kp_folds_write(out_path, fold, n, spec->k, spec->repeats,
                        kp_fold_kind_name(spec->kind), spec->seed, err, errlen);
    if (rc == 0 && log)
        log_folds(log, spec, fold, n, out_path);
fail:
    free(fold);
    kp_dataset_close(d);
    return rc;
}

/* ---- the stage type ---- */

static int folds_check(kp_stage *st, const kp_config *cfg, char *err, size_t errlen)
{
    kp_fold_spec s;
    char msg[KP_ERRLEN], at[512];
    int line = st->line, col = st->col;
    if (kp_stage_need_of_kind(st, cfg, KP_ART_DATASET) < 0)
        return kp_errf(err, errlen, KP_ERR_CONFIG, "%s:%d:%d: stages.%s.needs: a folds stage "
                       "needs a preprocess stage (a dataset)", cfg->path, line, col, st->base ? st->base : st->name);
    int rc = kp_folds_resolve(st->opts, &cfg->comp, &s, msg, sizeof msg);
    if (rc == 0)
        return 0;
    char key[32];   /* the key the message starts with, for its place */
    snprintf(key, sizeof key, "%.*s", (int)strcspn(msg, ":"), msg);
    if (st->opts && kp_params_has(st->opts, key))
        kp_params_where(st->opts, key, &line, &col);
    snprintf(at, sizeof at, "%s:%d:%d: stages.%s", cfg->path, line, col,
             st->base ? st->base : st->name);
    return kp_errf(err, errlen, rc, "%s.%s", at, msg);
}

static int folds_outputs(const kp_stage *st, const kp_config *cfg, int part, kp_buf *out)
{
    char path[4096];
    (void)cfg;
    if (part >= 0 || kp_stage_artifact_path(st, path, sizeof path) < 0)
        return KP_ERR_ARG;
    return kp_buf_printf(out, "%s\n", path);
}

static int folds_run(const kp_task_ctx *ctx, char *err, size_t errlen)
{
    const kp_config *cfg = ctx->cfg;
    char in[4096], out[4096];
    kp_fold_spec s;
    int di = kp_stage_need_of_kind(ctx->stage, cfg, KP_ART_DATASET);
    if (di < 0 || kp_stage_artifact_path(&cfg->stages[di], in, sizeof in) < 0 ||
        kp_stage_artifact_path(ctx->stage, out, sizeof out) < 0)
        return kp_errf(err, errlen, KP_ERR_ARG, "stage '%s': no dataset to fold",
                       ctx->stage->name);
    int rc = kp_folds_resolve(ctx->stage->opts, &cfg->comp, &s, err, errlen);
    if (rc < 0)
        return rc;
    return kp_folds_make(in, &s, out, ctx->log, err, errlen);
}

const kp_stage_ops kp_stage_folds = {
    .name = "folds",
    .doc = "assigns every train row a fold (plain, stratified or group k-fold, repeated)",
    .keys = folds_keys,
    .output = KP_ART_FOLDS,
    .check = folds_check,
    .outputs = folds_outputs,
    .run = folds_run,
};

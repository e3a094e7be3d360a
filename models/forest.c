/* forest.c - random forest and extra trees, as scikit-learn's
 * RandomForestClassifier/Regressor and ExtraTreesClassifier/Regressor.
 *
 * Each tree grows on its own stream kp_rng_derive(seed, tree), so trees are
 * grown in parallel (kp_parallel_for) and the forest is the same whatever
 * the thread count.  Classification leaves hold class (or label)
 * probabilities and prediction averages them over the trees in tree order,
 * as predict_proba; regression averages the leaf means.
 *
 * Why bins for the random forest: its splits are found on histogram bins
 * (models/binning.h, at most max_bin = 255 per feature, cut values from
 * opts->X_all when given) rather than on sorted values.  A node's rows are
 * summed per bin in one pass and every cut between occupied bins is scored,
 * O(rows) per tried feature instead of scikit-learn's O(rows log rows)
 * sort, on one byte per value.  A feature with at most 255 distinct values
 * (the digits, wine and breast-cancer counts, most categorical columns) gets
 * exactly scikit-learn's candidate cuts, midway between neighbouring values
 * (across bins empty in the node too); a feature with more is cut at 255
 * quantiles, which keeps the accuracy in scikit-learn's band
 * (bench/models/forest_vs_sklearn.py measures both, tests/test_forest.c
 * checks bands set from scikit-learn).
 * Why raw values for extra trees: they need no sort, only the node's range,
 * so they draw the threshold uniformly between the node's smallest and
 * largest value exactly as scikit-learn (a cut drawn among quantile bins
 * instead was measurably worse on regression).
 * Missing values (NaN, e.g. after preprocess `impute: none`; the ops set
 * missing_ok) go to the side of each cut that scores better; at prediction
 * NaN goes to the side stored in missing_left (the heavier child when
 * training saw none at that node).
 *
 * Checkpoint: "tree_offset" I64 [trees + 1] (node ranges), then per node
 * "feature" I32, "threshold" F32, "left" I32, "right" I32 (tree-local
 * indices, -1 at a leaf), "missing_left" U8 and "value" F32 [nodes, n_out];
 * metadata "forest.n_features".
 */
#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/err.h"
#include "../lib/parallel.h"
#include "../lib/rng.h"
#include "binning.h"
#include "forest_int.h"

static const kp_keyspec forest_params[] = {
    { "kind", KP_PT_ENUM, "random", "random|extra", 0, 0,
      "random: random forest (best cut of each tried feature); extra: extra trees (one random "
      "cut per tried feature)" },
    { "n_estimators", KP_PT_INT, "100", NULL, 1, 100000, "number of trees" },
    { "criterion", KP_PT_ENUM, "auto", "auto|gini|entropy|log_loss|squared_error", 0, 0,
      "split quality; auto = gini for classification, squared_error for regression" },
    { "max_features", KP_PT_STRING, "auto", NULL, 0, 0,
      "features tried per node: auto (sqrt for classification, all for regression), sqrt, "
      "log2, all, a fraction in (0, 1] or a count" },
    { "max_depth", KP_PT_INT, "0", NULL, 0, 1e6, "maximum tree depth; 0 = unlimited" },
    { "min_samples_split", KP_PT_INT, "2", NULL, 2, 1e9,
      "a node with fewer distinct rows is a leaf" },
    { "min_samples_leaf", KP_PT_INT, "1", NULL, 1, 1e9, "distinct rows each child keeps at least" },
    { "bootstrap", KP_PT_BOOL, "", NULL, 0, 0,
      "draw each tree's rows with replacement; default true for random, false for extra" },
    { "max_samples", KP_PT_FLOAT, "", NULL, 0, 1e12,
      "rows drawn per tree with bootstrap: a fraction in (0, 1] or a count > 1; default all" },
    { "max_bin", KP_PT_INT, "255", NULL, 2, 255,
      "histogram bins per feature: the random forest's cut candidates" },
    { NULL, 0, NULL, NULL, 0, 0, NULL },
};

/* A fitted forest. */
typedef struct fr_model {
    kp_task_kind task;
    int n_out, n_features, n_trees;
    int64_t *offset;        /* n_trees + 1 node offsets */
    fr_nodes nodes;         /* every tree's nodes, tree after tree */
} fr_model;

static void fr_model_free(void *p)
{
    fr_model *m = p;
    if (!m)
        return;
    free(m->offset);
    fr_nodes_free(&m->nodes);
    free(m);
}

/* ---- settings ---- */

/* Sets s->mtry from max_features text for d features; 0 or KP_ERR_ARG. */
static int parse_max_features(const char *v, int d, int regression, fr_settings *s,
                              char *err, size_t errlen)
{
    char *end;
    double x = strtod(v, &end);
    if (strcmp(v, "auto") == 0)
        v = regression ? "all" : "sqrt";
    if (strcmp(v, "sqrt") == 0)
        s->mtry = (int)sqrt((double)d);
    else if (strcmp(v, "log2") == 0)
        s->mtry = (int)log2((double)d);
    else if (strcmp(v, "all") == 0)
        s->mtry = d;
    else if (end != v && *end == 0 && strpbrk(v, ".eE") && x > 0 && x <= 1)
        s->mtry = (int)(x * d);
    else if (end != v && *end == 0 && !strpbrk(v, ".eE") && x >= 1 && x <= d)
        s->mtry = (int)x;
    else
        return kp_errf(err, errlen, KP_ERR_ARG,
                       "max_features = '%s' is not auto, sqrt, log2, all, a fraction in (0, 1] "
                       "or a count from 1 to the %d features", v, d);
    if (s->mtry < 1)
        s->mtry = 1;
    return 0;
}

/* Reads the criterion for the task; 0 or KP_ERR_ARG. */
static int parse_criterion(const char *v, int regression, fr_settings *s, char *err,
                           size_t errlen)
{
    if (strcmp(v, "auto") == 0)
        v = regression ? "squared_error" : "gini";
    int sq = strcmp(v, "squared_error") == 0;
    if (sq != regression)
        return kp_errf(err, errlen, KP_ERR_ARG, "criterion '%s' is for %s; use %s", v,
                       regression ? "classification" : "regression",
                       regression ? "squared_error" : "gini or entropy");
    if (sq)
        s->criterion = FR_SQUARED;
    else if (strcmp(v, "gini") == 0)
        s->criterion = FR_GINI;
    else if (strcmp(v, "entropy") == 0 || strcmp(v, "log_loss") == 0)
        s->criterion = FR_ENTROPY;
    else
        return kp_errf(err, errlen, KP_ERR_ARG,
                       "criterion '%s' is not auto, gini, entropy, log_loss or squared_error", v);
    return 0;
}

/* Sets s->bootstrap and s->n_draw for n rows; 0 or KP_ERR_ARG. */
static int parse_sampling(const kp_params *p, int64_t n, fr_settings *s, char *err,
                          size_t errlen)
{
    s->bootstrap = kp_params_bool(p, "bootstrap", !s->extra);
    s->n_draw = n;
    if (!kp_params_has(p, "max_samples"))
        return 0;
    double x = kp_params_double(p, "max_samples", NAN);
    if (!s->bootstrap)
        return kp_errf(err, errlen, KP_ERR_ARG, "max_samples needs bootstrap: true");
    if (x > 0 && x <= 1)
        s->n_draw = (int64_t)fmax(1, round(x * (double)n));
    else if (x > 1 && x == floor(x) && x <= (double)n)
        s->n_draw = (int64_t)x;
    else
        return kp_errf(err, errlen, KP_ERR_ARG,
                       "max_samples = %g is not a fraction in (0, 1] or a count from 2 to the "
                       "%lld rows", x, (long long)n);
    return 0;
}

/* Reads and checks the params (validated or not) into *s; 0 or KP_ERR_ARG. */
static int read_settings(const kp_params *p, const kp_problem *pb, const kp_matrix *X,
                         fr_settings *s, char *err, size_t errlen)
{
    int regression = pb->task == KP_TASK_REGRESSION, rc;
    const char *kind = kp_params_str(p, "kind", "random");
    memset(s, 0, sizeof *s);
    if (strcmp(kind, "random") != 0 && strcmp(kind, "extra") != 0)
        return kp_errf(err, errlen, KP_ERR_ARG, "kind '%s' is not random or extra", kind);
    s->extra = strcmp(kind, "extra") == 0;
    long long trees = kp_params_int(p, "n_estimators", 100);
    long long depth = kp_params_int(p, "max_depth", 0);
    long long split = kp_params_int(p, "min_samples_split", 2);
    long long leaf = kp_params_int(p, "min_samples_leaf", 1);
    long long bins = kp_params_int(p, "max_bin", 255);
    if (trees < 1 || trees > 100000 || depth < 0 || depth > 1000000 || split < 2 ||
        split > 1000000000 || leaf < 1 || leaf > 1000000000 || bins < 2 || bins > 255)
        return kp_errf(err, errlen, KP_ERR_ARG,
                       "need 1 <= n_estimators <= 100000, 0 <= max_depth, min_samples_split >= 2, "
                       "min_samples_leaf >= 1 and 2 <= max_bin <= 255");
    s->n_trees = (int)trees;
    s->max_depth = (int)depth;
    s->min_split = (int)split;
    s->min_leaf = (int)leaf;
    s->max_bin = (int)bins;
    if ((rc = parse_criterion(kp_params_str(p, "criterion", "auto"), regression, s, err,
                              errlen)) < 0 ||
        (rc = parse_max_features(kp_params_str(p, "max_features", "auto"), (int)X->cols,
                                 regression, s, err, errlen)) < 0)
        return rc;
    return parse_sampling(p, X->rows, s, err, errlen);
}

/* ---- the training set ---- */

/* Everything fr_data borrows, owned here. */
typedef struct fr_prep {
    fr_data D;
    kp_bins *bins;
    uint8_t *codes;
    float *xcol;
    int *usable;
    const float **cuts;
    int32_t *cls;
    uint8_t *labels;
    double *y;
} fr_prep;

static void prep_free(fr_prep *p)
{
    kp_bins_free(p->bins);
    free(p->codes);
    free(p->xcol);
    free(p->usable);
    free(p->cuts);
    free(p->cls);
    free(p->labels);
    free(p->y);
}

/* Random forest: bins X (cuts from opts->X_all when given) into
 * column-major codes. */
static int prep_codes(fr_prep *p, const kp_matrix *X, const kp_fit_opts *opts, int max_bin,
                      char *err, size_t errlen)
{
    const kp_matrix *src = opts->X_all && opts->X_all->cols == X->cols ? opts->X_all : X;
    int64_t n = X->rows, d = X->cols;
    int threads = opts->threads > 0 ? opts->threads : 1, rc;
    uint8_t *rows = malloc((size_t)(n * d));
    p->codes = malloc((size_t)(n * d));
    p->cuts = malloc(sizeof *p->cuts * (size_t)d);
    if (!rows || !p->codes || !p->cuts) {
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory for %lld x %lld codes",
                     (long long)n, (long long)d);
        goto fail;
    }
    if ((rc = kp_bins_create(src, max_bin, threads, &p->bins, err, errlen)) < 0 ||
        (rc = kp_bins_apply(p->bins, X, rows, threads, err, errlen)) < 0)
        goto fail;
    for (int64_t f = 0; f < d; f++)
        kp_bins_cuts(p->bins, (int)f, &p->cuts[f]);
    for (int64_t i0 = 0; i0 < n; i0 += 64)          /* transpose in cache-sized tiles */
        for (int64_t f = 0; f < d; f++)
            for (int64_t i = i0; i < n && i < i0 + 64; i++)
                p->codes[f * n + i] = rows[i * d + f];
fail:
    free(rows);
    return rc;
}

/* Extra trees: copies X column-major. */
static int prep_values(fr_prep *p, const kp_matrix *X, char *err, size_t errlen)
{
    int64_t n = X->rows, d = X->cols;
    if (!(p->xcol = malloc(sizeof *p->xcol * (size_t)(n * d))))
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory for %lld x %lld values",
                       (long long)n, (long long)d);
    for (int64_t i0 = 0; i0 < n; i0 += 64)
        for (int64_t f = 0; f < d; f++)
            for (int64_t i = i0; i < n && i < i0 + 64; i++)
                p->xcol[f * n + i] = X->data[i * d + f];
    return 0;
}

/* Returns 1 if column f holds two or more values over the rows (NaN is one). */
static int varies(const fr_prep *p, int64_t n, int f)
{
    if (p->codes) {
        const uint8_t *col = p->codes + (size_t)f * n;
        for (int64_t i = 1; i < n; i++)
            if (col[i] != col[0])
                return 1;
        return 0;
    }
    const float *col = p->xcol + (size_t)f * n;
    for (int64_t i = 1; i < n; i++)
        if (isnan(col[i]) != isnan(col[0]) || (!isnan(col[0]) && col[i] != col[0]))
            return 1;
    return 0;
}

/* Lists the features that vary over the rows; 0 or KP_ERR_NOMEM. */
static int prep_features(fr_prep *p, int64_t n, int d, char *err, size_t errlen)
{
    if (!(p->usable = malloc(sizeof *p->usable * (size_t)d)))
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    p->D.n_usable = 0;
    for (int f = 0; f < d; f++)
        if (varies(p, n, f))
            p->usable[p->D.n_usable++] = f;
    return 0;
}

/* Converts the targets for the task; 0 or a status. */
static int prep_targets(fr_prep *p, const kp_problem *pb, const float *y, int64_t n,
                        char *err, size_t errlen)
{
    fr_data *D = &p->D;
    int L = pb->n_out, reg = pb->task == KP_TASK_REGRESSION;
    int labels = pb->task == KP_TASK_MULTILABEL;
    D->n_out = L;
    D->kind = reg ? FR_VALUE : labels ? FR_LABELS : FR_CLASS;
    D->K = reg ? 1 : pb->task == KP_TASK_BINARY ? 2 : L;
    D->S = reg ? 2 : labels ? L + 1 : D->K;
    if ((reg && !(p->y = malloc(sizeof *p->y * (size_t)n))) ||
        (labels && !(p->labels = malloc((size_t)(n * L)))) ||
        (D->kind == FR_CLASS && !(p->cls = malloc(sizeof *p->cls * (size_t)n))))
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory for %lld targets",
                       (long long)n);
    for (int64_t i = 0; i < (labels ? n * L : n); i++) {
        if (labels) {
            p->labels[i] = y[i] != 0;
        } else if (reg) {
            if (!isfinite(p->y[i] = y[i]))
                return kp_errf(err, errlen, KP_ERR_ARG, "y[%lld] = %g is not finite",
                               (long long)i, y[i]);
        } else {
            if (!(y[i] >= 0 && y[i] < D->K && y[i] == floorf(y[i])))
                return kp_errf(err, errlen, KP_ERR_ARG, "y[%lld] = %g is not a class in [0, %d)",
                               (long long)i, y[i], D->K);
            p->cls[i] = (int32_t)y[i];
        }
    }
    D->cls = p->cls, D->labels = p->labels, D->y = p->y;
    return 0;
}

/* ---- growing the trees ---- */

typedef struct grow_ctx {
    const fr_data *D;
    fr_work **work;         /* one per thread */
    fr_nodes *trees;
    int *depth, *rc;
    uint64_t seed;
    FILE *log;
    atomic_int done;
} grow_ctx;

static void grow_one(void *data, size_t i, int tid)
{
    grow_ctx *c = data;
    c->rc[i] = fr_grow(c->D, c->work[tid], kp_rng_derive(c->seed, i), &c->trees[i], &c->depth[i]);
    int done = atomic_fetch_add(&c->done, 1) + 1;
    if (c->log && (done % 10 == 0 || done == c->D->s->n_trees))
        fprintf(c->log, "forest: tree %d/%d\n", done, c->D->s->n_trees);
}

/* Concatenates the trees into m; 0 or KP_ERR_NOMEM. */
static int assemble(fr_model *m, fr_nodes *trees, char *err, size_t errlen)
{
    int64_t total = 0;
    m->offset = malloc(sizeof *m->offset * (size_t)(m->n_trees + 1));
    for (int t = 0; m->offset && t < m->n_trees; t++) {
        m->offset[t] = total;
        total += trees[t].n;
    }
    fr_nodes *a = &m->nodes;
    a->n_out = m->n_out;
    a->n = a->cap = total;
    a->feature = malloc(sizeof *a->feature * (size_t)total);
    a->left = malloc(sizeof *a->left * (size_t)total);
    a->right = malloc(sizeof *a->right * (size_t)total);
    a->thr = malloc(sizeof *a->thr * (size_t)total);
    a->mleft = malloc((size_t)total);
    a->value = malloc(sizeof *a->value * (size_t)total * m->n_out);
    if (!m->offset || !a->feature || !a->left || !a->right || !a->thr || !a->mleft || !a->value)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory for %lld nodes", (long long)total);
    m->offset[m->n_trees] = total;
    for (int t = 0; t < m->n_trees; t++) {
        size_t o = (size_t)m->offset[t], k = (size_t)trees[t].n;
        memcpy(a->feature + o, trees[t].feature, sizeof *a->feature * k);
        memcpy(a->left + o, trees[t].left, sizeof *a->left * k);
        memcpy(a->right + o, trees[t].right, sizeof *a->right * k);
        memcpy(a->thr + o, trees[t].thr, sizeof *a->thr * k);
        memcpy(a->mleft + o, trees[t].mleft, k);
        memcpy(a->value + o * m->n_out, trees[t].value, sizeof *a->value * k * m->n_out);
    }
    return 0;
}

/* Grows every tree on up to `threads` threads and assembles m. */
static int grow_all(const fr_data *D, const kp_fit_opts *opts, fr_model *m, char *err,
                    size_t errlen)
{
    int T = D->s->n_trees, nt = opts->threads > 1 ? opts->threads : 1, rc = 0;
    nt = nt < T ? nt : T;
    fr_nodes *trees = calloc((size_t)T, sizeof *trees);
    int *depth = calloc((size_t)T, sizeof *depth), *rcs = calloc((size_t)T, sizeof *rcs);
    fr_work **work = calloc((size_t)nt, sizeof *work);
    for (int i = 0; work && i < nt; i++)
        if (!(work[i] = fr_work_create(D)))
            rc = KP_ERR_NOMEM;
    if (!trees || !depth || !rcs || !work || rc < 0) {
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory for %d trees", T);
        goto fail;
    }
    for (int t = 0; t < T; t++)
        trees[t].n_out = D->n_out;
    grow_ctx c = { D, work, trees, depth, rcs, opts->seed, opts->log, 0 };
    kp_parallel_for(nt, grow_one, &c, (size_t)T);
    for (int t = 0; t < T && rc == 0; t++)
        if (rcs[t] < 0)
            rc = kp_errf(err, errlen, rcs[t], "out of memory growing tree %d", t);
    if (rc == 0 && (rc = assemble(m, trees, err, errlen)) == 0 && opts->log) {
        int maxd = 0;
        for (int t = 0; t < T; t++)
            maxd = depth[t] > maxd ? depth[t] : maxd;
        fprintf(opts->log, "forest: %d %s trees, %lld nodes, depth at most %d, %d of %d features "
                "usable\n", T, D->s->extra ? "extra" : "random", (long long)m->nodes.n, maxd,
                D->n_usable, D->d);
    }
fail:
    for (int t = 0; trees && t < T; t++)
        fr_nodes_free(&trees[t]);
    for (int i = 0; work && i < nt; i++)
        fr_work_free(work[i]);
    free(trees);
    free(depth);
    free(rcs);
    free(work);
    return rc;
}

static int forest_fit(const kp_params *params, const kp_problem *pb, const kp_matrix *X,
                      const float *y, const kp_fit_opts *opts, void **model, char *err,
                      size_t errlen)
{
    fr_settings s;
    fr_prep p = { 0 };
    fr_model *m = NULL;
    int rc;
    if (X->rows < 1 || X->rows > INT32_MAX || X->cols < 1 || X->cols > INT32_MAX)
        return kp_errf(err, errlen, KP_ERR_ARG, "X has %lld rows and %lld columns; need 1 to %d",
                       (long long)X->rows, (long long)X->cols, INT32_MAX);
    if ((rc = read_settings(params, pb, X, &s, err, errlen)) < 0 ||
        (rc = prep_targets(&p, pb, y, X->rows, err, errlen)) < 0 ||
        (rc = s.extra ? prep_values(&p, X, err, errlen)
                      : prep_codes(&p, X, opts, s.max_bin, err, errlen)) < 0 ||
        (rc = prep_features(&p, X->rows, (int)X->cols, err, errlen)) < 0)
        goto fail;
    p.D.codes = p.codes, p.D.xcol = p.xcol, p.D.n = X->rows, p.D.d = (int)X->cols;
    p.D.cuts = p.cuts, p.D.usable = p.usable, p.D.s = &s;
    if (!(m = calloc(1, sizeof *m))) {
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
        goto fail;
    }
    *m = (fr_model){ pb->task, pb->n_out, (int)X->cols, s.n_trees, NULL, { 0 } };
    if ((rc = grow_all(&p.D, opts, m, err, errlen)) < 0)
        goto fail;
    *model = m;
    m = NULL;
fail:
    fr_model_free(m);
    prep_free(&p);
    return rc;
}

/* ---- prediction ---- */

#define PRED_BLOCK 64

typedef struct pred_ctx {
    const fr_model *m;
    const kp_matrix *X;
    float *out;
    double *acc;            /* PRED_BLOCK * n_out per thread */
} pred_ctx;

/* Returns the leaf that row x reaches in the tree starting at node base. */
static int64_t leaf_of(const fr_nodes *a, int64_t base, const float *x)
{
    int64_t i = base;
    while (a->feature[i] >= 0) {
        float v = x[a->feature[i]];
        int left = v <= a->thr[i] || (isnan(v) && a->mleft[i]);
        i = base + (left ? a->left[i] : a->right[i]);
    }
    return i;
}

static void predict_block(void *data, size_t blk, int tid)
{
    pred_ctx *c = data;
    const fr_model *m = c->m;
    const fr_nodes *a = &m->nodes;
    int64_t r0 = (int64_t)blk * PRED_BLOCK, r1 = r0 + PRED_BLOCK, K = m->n_out;
    r1 = r1 < c->X->rows ? r1 : c->X->rows;
    double *acc = c->acc + (size_t)tid * PRED_BLOCK * K;
    memset(acc, 0, sizeof *acc * (size_t)((r1 - r0) * K));
    for (int t = 0; t < m->n_trees; t++)
        for (int64_t r = r0; r < r1; r++) {
            const float *v = a->value + leaf_of(a, m->offset[t], c->X->data + r * c->X->cols) * K;
            for (int64_t k = 0; k < K; k++)
                acc[(r - r0) * K + k] += v[k];
        }
    for (int64_t i = 0; i < (r1 - r0) * K; i++)
        c->out[r0 * K + i] = (float)(acc[i] / m->n_trees);
}

static int forest_predict(const void *model, const kp_matrix *X, float *out, int threads,
                          char *err, size_t errlen)
{
    const fr_model *m = model;
    if (X->cols != m->n_features)
        return kp_errf(err, errlen, KP_ERR_MISMATCH,
                       "X has %lld columns but the model was fitted on %d features",
                       (long long)X->cols, m->n_features);
    size_t blocks = (size_t)((X->rows + PRED_BLOCK - 1) / PRED_BLOCK);
    int nt = threads > 1 ? threads : 1;
    pred_ctx c = { m, X, out, malloc(sizeof(double) * PRED_BLOCK * (size_t)m->n_out * nt) };
    if (!c.acc)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    kp_parallel_for(nt, predict_block, &c, blocks);
    free(c.acc);
    return 0;
}

/* ---- checkpoints ---- */

static int forest_save(const void *model, kp_stw *w, char *err, size_t errlen)
{
    const fr_model *m = model;
    const fr_nodes *a = &m->nodes;
    char nf[32];
    int64_t shape_t[1] = { m->n_trees + 1 }, shape_n[1] = { a->n }, shape_v[2] = { a->n, m->n_out };
    snprintf(nf, sizeof nf, "%d", m->n_features);
    if (kp_stw_meta(w, "forest.n_features", nf) < 0 ||
        kp_stw_add(w, "tree_offset", KP_I64, 1, shape_t, m->offset) < 0 ||
        kp_stw_add(w, "feature", KP_I32, 1, shape_n, a->feature) < 0 ||
        kp_stw_add(w, "threshold", KP_F32, 1, shape_n, a->thr) < 0 ||
        kp_stw_add(w, "left", KP_I32, 1, shape_n, a->left) < 0 ||
        kp_stw_add(w, "right", KP_I32, 1, shape_n, a->right) < 0 ||
        kp_stw_add(w, "missing_left", KP_U8, 1, shape_n, a->mleft) < 0 ||
        kp_stw_add(w, "value", KP_F32, 2, shape_v, a->value) < 0)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory adding %lld nodes",
                       (long long)a->n);
    return 0;
}

/* Checks one tree's nodes [o0, o1) of m; 0 or KP_ERR_FORMAT naming the node. */
static int check_tree(const char *path, const fr_model *m, int t, char *err, size_t errlen)
{
    const fr_nodes *a = &m->nodes;
    int64_t o0 = m->offset[t], n = m->offset[t + 1] - o0;
    for (int64_t i = 0; i < n; i++) {
        int64_t g = o0 + i;
        int32_t f = a->feature[g], l = a->left[g], r = a->right[g];
        const char *bad = NULL;
        if (a->mleft[g] > 1)
            bad = "missing_left is not 0 or 1";
        else if (f == -1 && (l != -1 || r != -1))
            bad = "a leaf (feature -1) has children";
        else if (f != -1 && (f < 0 || f >= m->n_features))
            bad = "feature is out of range";
        else if (f != -1 && (l <= i || l >= n || r <= i || r >= n))
            bad = "a child is not a later node of the same tree";
        else if (f != -1 && isnan(a->thr[g]))
            bad = "threshold is NaN";
        if (bad)
            return kp_errf(err, errlen, KP_ERR_FORMAT,
                           "%s: tree %d node %lld (feature %d, left %d, right %d): %s", path, t,
                           (long long)i, f, l, r, bad);
    }
    return 0;
}

/* Checks tree_offset (T + 1 entries rising from 0 to N, trees under 2^31
 * nodes); 0 or KP_ERR_FORMAT. */
static int check_offsets(const char *path, const int64_t *off, int64_t T, int64_t N,
                         char *err, size_t errlen)
{
    if (T < 1 || T > 100000 || off[0] != 0 || off[T] != N)
        return kp_errf(err, errlen, KP_ERR_FORMAT,
                       "%s: tensor 'tree_offset' must hold 2 to 100001 entries from 0 to the "
                       "%lld nodes", path, (long long)N);
    for (int64_t t = 0; t < T; t++)
        if (off[t + 1] <= off[t] || off[t + 1] - off[t] > INT32_MAX)
            return kp_errf(err, errlen, KP_ERR_FORMAT,
                           "%s: tensor 'tree_offset' gives tree %lld %lld nodes", path,
                           (long long)t, (long long)(off[t + 1] - off[t]));
    return 0;
}

/* Checks that every value is finite, and a probability unless regression. */
static int check_values(const char *path, const fr_model *m, char *err, size_t errlen)
{
    int prob = m->task != KP_TASK_REGRESSION;
    for (int64_t i = 0; i < m->nodes.n * m->n_out; i++) {
        float v = m->nodes.value[i];
        if (!isfinite(v) || (prob && !(v >= 0 && v <= 1)))
            return kp_errf(err, errlen, KP_ERR_FORMAT,
                           "%s: tensor 'value' holds %g at index %lld, not a %s", path, v,
                           (long long)i, prob ? "probability" : "finite number");
    }
    return 0;
}

/* Finds the node tensors (all N long, value N x n_out); 0 or KP_ERR_FORMAT. */
static int find_tensors(const kp_st *st, int n_out, const kp_tensor **t, char *err,
                        size_t errlen)
{
    static const char *const names[] = { "feature", "threshold", "left", "right",
                                         "missing_left" };
    static const kp_dtype types[] = { KP_I32, KP_F32, KP_I32, KP_I32, KP_U8 };
    if (!(t[0] = kp_st_expect(st, "tree_offset", KP_I64, 1, NULL, err, errlen)) ||
        !(t[1] = kp_st_expect(st, "feature", KP_I32, 1, NULL, err, errlen)))
        return KP_ERR_FORMAT;
    int64_t shape[2] = { t[1]->shape[0], n_out };
    for (int i = 1; i < 5; i++)
        if (!(t[i + 1] = kp_st_expect(st, names[i], types[i], 1, shape, err, errlen)))
            return KP_ERR_FORMAT;
    if (!(t[6] = kp_st_expect(st, "value", KP_F32, 2, shape, err, errlen)))
        return KP_ERR_FORMAT;
    return 0;
}

/* Copies the tensors t (as find_tensors) into m's arrays; 0 or KP_ERR_NOMEM. */
static int copy_tensors(fr_model *m, const kp_tensor *const *t, char *err, size_t errlen)
{
    fr_nodes *a = &m->nodes;
    int64_t N = t[1]->shape[0];
    a->n = a->cap = N;
    a->n_out = m->n_out;
    m->offset = malloc(t[0]->nbytes);
    a->feature = malloc(t[1]->nbytes);
    a->thr = malloc(t[2]->nbytes);
    a->left = malloc(t[3]->nbytes);
    a->right = malloc(t[4]->nbytes);
    a->mleft = malloc(t[5]->nbytes);
    a->value = malloc(t[6]->nbytes);
    if (!m->offset || !a->feature || !a->thr || !a->left || !a->right || !a->mleft || !a->value)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory for %lld nodes", (long long)N);
    memcpy(m->offset, t[0]->data, t[0]->nbytes);
    memcpy(a->feature, t[1]->data, t[1]->nbytes);
    memcpy(a->thr, t[2]->data, t[2]->nbytes);
    memcpy(a->left, t[3]->data, t[3]->nbytes);
    memcpy(a->right, t[4]->data, t[4]->nbytes);
    memcpy(a->mleft, t[5]->data, t[5]->nbytes);
    memcpy(a->value, t[6]->data, t[6]->nbytes);
    return 0;
}

static int forest_load(const kp_st *st, const kp_problem *pb, void **model, char *err,
                       size_t errlen)
{
    const char *path = kp_st_path(st), *nf = kp_st_meta(st, "forest.n_features");
    const kp_tensor *t[7];
    char *end = NULL;
    long long d = nf ? strtoll(nf, &end, 10) : 0;
    fr_model *m = NULL;
    int rc;
    if (!nf || *end || end == nf || d < 1 || d > INT32_MAX)
        return kp_errf(err, errlen, KP_ERR_FORMAT,
                       "%s: forest.n_features '%s' is not a positive count", path,
                       nf ? nf : "(missing)");
    if ((rc = find_tensors(st, pb->n_out, t, err, errlen)) < 0)
        return rc;
    if (!(m = calloc(1, sizeof *m)))
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    *m = (fr_model){ pb->task, pb->n_out, (int)d, (int)(t[0]->numel - 1), NULL, { 0 } };
    if ((rc = check_offsets(path, t[0]->data, t[0]->numel - 1, t[1]->shape[0], err, errlen)) < 0 ||
        (rc = copy_tensors(m, t, err, errlen)) < 0 || (rc = check_values(path, m, err, errlen)) < 0)
        goto fail;
    for (int i = 0; i < m->n_trees; i++)
        if ((rc = check_tree(path, m, i, err, errlen)) < 0)
            goto fail;
    *model = m;
    m = NULL;
fail:
    fr_model_free(m);
    return rc;
}

const kp_model_ops kp_model_forest = {
    .name = "forest",
    .doc = "random forest and extra trees (scikit-learn's RandomForest/ExtraTrees) on "
           "histogram bins",
    .params = forest_params,
    .tasks = KP_TASK_BIT(KP_TASK_BINARY) | KP_TASK_BIT(KP_TASK_MULTICLASS) |
             KP_TASK_BIT(KP_TASK_REGRESSION) | KP_TASK_BIT(KP_TASK_MULTILABEL),
    .fit = forest_fit,
    .predict = forest_predict,
    .save = forest_save,
    .load = forest_load,
    .free = fr_model_free,
    .missing_ok = 1,
};

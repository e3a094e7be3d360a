/* gbdt.c - histogram gradient boosting, as XGBoost's tree_method='hist'
 * (1.7), with LightGBM's leaf-wise growth as an option: parameters, the
 * objectives, the boosting loop and early stopping.  gbdt_grow.c and
 * gbdt_hist.c grow the trees; gbdt_forest.c predicts, saves and loads them.
 *
 * Features are binned once (models/binning.h; on opts->X_all when given, so
 * every fold shares the bins).  Each round computes the gradient and hessian
 * of every row for every output and grows one tree per output (multiclass:
 * softmax, one tree per class; multilabel: one logistic tree per label).
 * Objectives, as XGBoost's: binary:logistic, multi:softprob (hessian
 * 2p(1-p)), reg:squarederror, reg:pseudohubererror (huber_slope) and
 * reg:absoluteerror, whose leaves are then set to the median residual of
 * their rows times the learning rate (as XGBoost 2.0 and LightGBM; 1.7 left
 * the rate out, so learning_rate 1 reproduces it).  Subsampled rows and
 * features are drawn per tree from a stream derived from the seed and the
 * tree's index.  With early_stopping_rounds and a held-out part
 * (opts->X_valid), boosting stops once the held-out loss has not improved
 * for that many rounds, and the model keeps the best round.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/err.h"
#include "../lib/parallel.h"
#include "../lib/rng.h"
#include "gbdt_int.h"

#define ROW_BLOCK 16384     /* rows per task for gradients and margins */

static const kp_keyspec gbdt_params[] = {
    { "objective", KP_PT_ENUM, "auto",
      "auto|reg:squarederror|reg:absoluteerror|reg:pseudohubererror", 0, 0,
      "loss for regression; auto = squared error (classification is always logistic/softmax)" },
    { "n_estimators", KP_PT_INT, "100", NULL, 1, 1e6, "boosting rounds (trees per output)" },
    { "learning_rate", KP_PT_FLOAT, "0.3", NULL, 0, 10, "shrinkage eta applied to every leaf" },
    { "max_depth", KP_PT_INT, "6", NULL, 0, 64, "deepest level of a tree; 0 = no limit "
      "(lossguide only)" },
    { "max_leaves", KP_PT_INT, "0", NULL, 0, 2147483647, "most leaves per tree; 0 = no limit "
      "(LightGBM's num_leaves)" },
    { "grow_policy", KP_PT_ENUM, "depthwise", "depthwise|lossguide", 0, 0,
      "depthwise splits level by level; lossguide splits the best leaf first" },
    { "min_child_weight", KP_PT_FLOAT, "1", NULL, 0, 1e30,
      "least hessian sum in a child" },
    { "reg_lambda", KP_PT_FLOAT, "1", NULL, 0, 1e30, "L2 penalty on leaf values (lambda)" },
    { "reg_alpha", KP_PT_FLOAT, "0", NULL, 0, 1e30, "L1 penalty on leaf values (alpha)" },
    { "gamma", KP_PT_FLOAT, "0", NULL, 0, 1e30,
      "least loss reduction to split (min_split_loss)" },
    { "subsample", KP_PT_FLOAT, "1", NULL, 0, 1, "fraction of rows drawn for each tree (> 0)" },
    { "colsample_bytree", KP_PT_FLOAT, "1", NULL, 0, 1,
      "fraction of features drawn for each tree (> 0)" },
    { "max_bin", KP_PT_INT, "255", NULL, 2, 255, "histogram bins per feature" },
    { "base_score", KP_PT_FLOAT, "", NULL, 0, 0, "initial prediction; default 0.5 for "
      "classification, the mean (median for absoluteerror) for regression" },
    { "huber_slope", KP_PT_FLOAT, "1", NULL, 1e-12, 1e30,
      "delta of reg:pseudohubererror" },
    { "early_stopping_rounds", KP_PT_INT, "0", NULL, 0, 1e9, "stop after this many rounds "
      "without a better held-out loss and keep the best round; 0 = off" },
    { NULL, 0, NULL, NULL, 0, 0, NULL },
};

typedef enum gb_obj { GB_LOGISTIC, GB_SOFTMAX, GB_L2, GB_L1, GB_HUBER } gb_obj;

static const char *const obj_metric[] = { "logloss", "mlogloss", "rmse", "mae", "mphe" };

typedef struct gb_settings {
    gb_tree_params tree;
    gb_obj obj;
    int n_rounds, max_bin, early_stop, has_base;
    double subsample, colsample, base_score, slope;
} gb_settings;

/* Everything one fit works on. */
typedef struct gb_fit {
    const gb_settings *s;
    int n, d, K, threads;
    const float *X, *y;
    double *margin;         /* n x K */
    gb_gh *gh;              /* K x n */
    int *rows, *out_rows, *feats;
    int n_rows, n_out_rows;
    const kp_matrix *Xv;    /* held-out rows, or NULL */
    const float *yv;
    double *vmargin;        /* Xv->rows x K */
    double *scratch;        /* n doubles (absoluteerror medians) */
    gb_forest *f;
} gb_fit;

/* ---- settings ---- */

/* Reads the validated params; 0 or KP_ERR_ARG. */
static int read_settings(const kp_params *params, const kp_problem *pb, gb_settings *s,
                         char *err, size_t errlen)
{
    const char *obj = kp_params_str(params, "objective", "auto");
    s->obj = pb->task == KP_TASK_MULTICLASS ? GB_SOFTMAX
             : pb->task != KP_TASK_REGRESSION ? GB_LOGISTIC
             : strcmp(obj, "reg:absoluteerror") == 0 ? GB_L1
             : strcmp(obj, "reg:pseudohubererror") == 0 ? GB_HUBER : GB_L2;
    if (pb->task != KP_TASK_REGRESSION && strcmp(obj, "auto") != 0)
        return kp_errf(err, errlen, KP_ERR_ARG, "objective '%s' needs task regression, not %s",
                       obj, kp_task_name(pb->task));
    gb_tree_params *t = &s->tree;
    t->eta = kp_params_double(params, "learning_rate", 0.3);
    t->max_depth = (int)kp_params_int(params, "max_depth", 6);
    t->max_leaves = (int)kp_params_int(params, "max_leaves", 0);
    t->lossguide = strcmp(kp_params_str(params, "grow_policy", "depthwise"), "lossguide") == 0;
    t->min_child_weight = kp_params_double(params, "min_child_weight", 1);
    t->lambda = kp_params_double(params, "reg_lambda", 1);
    t->alpha = kp_params_double(params, "reg_alpha", 0);
    t->gamma = kp_params_double(params, "gamma", 0);
    s->n_rounds = (int)kp_params_int(params, "n_estimators", 100);
    s->max_bin = (int)kp_params_int(params, "max_bin", 255);
    s->early_stop = (int)kp_params_int(params, "early_stopping_rounds", 0);
    s->subsample = kp_params_double(params, "subsample", 1);
    s->colsample = kp_params_double(params, "colsample_bytree", 1);
    s->slope = kp_params_double(params, "huber_slope", 1);
    s->has_base = kp_params_has(params, "base_score");
    s->base_score = kp_params_double(params, "base_score", 0.5);
    if (t->max_depth == 0 && t->max_leaves == 0)
        return kp_errf(err, errlen, KP_ERR_ARG, "max_depth = 0 needs max_leaves > 0 "
                       "(a tree must be bounded)");
    if (!(s->subsample > 0) || !(s->colsample > 0))
        return kp_errf(err, errlen, KP_ERR_ARG, "subsample and colsample_bytree must be > 0");
    if (s->obj == GB_LOGISTIC && s->has_base && !(s->base_score > 0 && s->base_score < 1))
        return kp_errf(err, errlen, KP_ERR_ARG, "base_score = %g must be in (0, 1) for %s",
                       s->base_score, kp_task_name(pb->task));
    return 0;
}

/* ---- objectives ---- */

/* Returns the k-th smallest of a[0..n) (reorders a). */
static double select_kth(double *a, int n, int k)
{
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        double x = a[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (a[i] < x)
                i++;
            while (a[j] > x)
                j--;
            if (i <= j) {
                double t = a[i];
                a[i++] = a[j];
                a[j--] = t;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            break;
    }
    return a[k];
}

/* Returns the median of a[0..n), n >= 1 (mean of the middle two if n is even). */
static double median(double *a, int n)
{
    double m = select_kth(a, n, (n - 1) / 2);
    if (n % 2)
        return m;
    double next = a[n / 2];
    for (int i = n / 2 + 1; i < n; i++)
        next = fmin(next, a[i]);
    return (m + next) / 2;
}

/* Sets the base margins (XGBoost 1.7's base_score, see the keyspec). */
static void set_base(gb_fit *c)
{
    const gb_settings *s = c->s;
    for (int k = 0; k < c->K; k++) {
        double b = s->base_score;
        if (s->obj == GB_LOGISTIC)
            b = log(b / (1 - b));
        else if (s->obj == GB_SOFTMAX)
            b = 0;      /* adds the same to every class: no effect */
        else if (!s->has_base && s->obj == GB_L1) {
            for (int i = 0; i < c->n; i++)
                c->scratch[i] = c->y[i];
            b = median(c->scratch, c->n);
        } else if (!s->has_base) {
            double sum = 0;
            for (int i = 0; i < c->n; i++)
                sum += c->y[i];
            b = sum / c->n;
        }
        c->f->base[k] = (float)b;
    }
}

static double sigmoid(double z) { return 1 / (1 + exp(-z)); }

/* Writes the gradients of one row (margins z, K outputs) into gh[k * n]. */
static void row_gradient(const gb_fit *c, int i, const double *z, gb_gh *gh)
{
    const gb_settings *s = c->s;
    size_t n = (size_t)c->n;
    if (s->obj == GB_SOFTMAX) {
        double mx = z[0], sum = 0;
        for (int k = 1; k < c->K; k++)
            mx = fmax(mx, z[k]);
        for (int k = 0; k < c->K; k++)
            sum += exp(z[k] - mx);
        for (int k = 0; k < c->K; k++) {
            float p = (float)(exp(z[k] - mx) / sum);
            gh[k * n] = (gb_gh){ p - (k == (int)c->y[i]), fmaxf(2 * p * (1 - p), 1e-16f) };
        }
        return;
    }
    for (int k = 0; k < c->K; k++) {
        float y = c->y[(size_t)i * c->K + k], r = (float)z[k] - y;
        if (s->obj == GB_LOGISTIC) {
            float p = (float)sigmoid(z[k]);
            gh[k * n] = (gb_gh){ p - y, fmaxf(p * (1 - p), 1e-16f) };
        } else if (s->obj == GB_L2) {
            gh[k * n] = (gb_gh){ r, 1 };
        } else if (s->obj == GB_L1) {
            gh[k * n] = (gb_gh){ (float)((r > 0) - (r < 0)), 1 };
        } else {
            float d2 = (float)(s->slope * s->slope), sq = sqrtf(1 + r * r / d2);
            gh[k * n] = (gb_gh){ r / sq, d2 / ((d2 + r * r) * sq) };
        }
    }
}

static void gradient_block(void *data, size_t b, int tid)
{
    (void)tid;
    gb_fit *c = data;
    int i1 = (int)((b + 1) * ROW_BLOCK < (size_t)c->n ? (b + 1) * ROW_BLOCK : (size_t)c->n);
    for (int i = (int)(b * ROW_BLOCK); i < i1; i++)
        row_gradient(c, i, c->margin + (size_t)i * c->K, c->gh + i);
}

/* Returns the loss of one row (margins z) with targets y (K of them, or a class). */
static double row_loss(const gb_settings *s, int K, const double *z, const float *y)
{
    double loss = 0;
    if (s->obj == GB_SOFTMAX) {
        double mx = z[0], sum = 0;
        for (int k = 1; k < K; k++)
            mx = fmax(mx, z[k]);
        for (int k = 0; k < K; k++)
            sum += exp(z[k] - mx);
        return mx + log(sum) - z[(int)y[0]];
    }
    for (int k = 0; k < K; k++) {
        double r = z[k] - y[k], d2 = s->slope * s->slope;
        if (s->obj == GB_LOGISTIC)
            loss += log1p(exp(-fabs(z[k]))) + fmax(z[k], 0) - y[k] * z[k];
        else
            loss += s->obj == GB_L2 ? r * r : s->obj == GB_L1 ? fabs(r)
                    : d2 * (sqrt(1 + r * r / d2) - 1);
    }
    return loss / K;
}

/* Returns the mean loss (rmse for L2) of n rows of margins z and targets y. */
static double mean_loss(const gb_settings *s, int K, const double *z, const float *y, int64_t n)
{
    double sum = 0;
    int yw = s->obj == GB_SOFTMAX ? 1 : K;
    for (int64_t i = 0; i < n; i++)
        sum += row_loss(s, K, z + i * K, y + i * yw);
    return s->obj == GB_L2 ? sqrt(sum / n) : sum / n;
}

/* ---- one round ---- */

/* Draws the rows (subsample) and features (colsample_bytree) of tree `tree`. */
static void draw(gb_fit *c, uint64_t seed, int tree, int *n_feats)
{
    kp_rng r;
    kp_rng_seed(&r, kp_rng_derive(seed, (uint64_t)tree));
    c->n_rows = c->n_out_rows = 0;
    for (int i = 0; i < c->n; i++) {
        if (c->s->subsample >= 1 || kp_rng_uniform(&r) < c->s->subsample)
            c->rows[c->n_rows++] = i;
        else
            c->out_rows[c->n_out_rows++] = i;
    }
    for (int j = 0; j < c->d; j++)
        c->feats[j] = j;
    int m = (int)(c->s->colsample * c->d);
    m = m < 1 ? 1 : m > c->d ? c->d : m;
    if (m < c->d) {
        kp_rng_shuffle_int(&r, c->feats, (size_t)c->d);
        for (int i = 1; i < m; i++)     /* insertion sort of the first m */
            for (int j = i; j > 0 && c->feats[j - 1] > c->feats[j]; j--) {
                int t = c->feats[j];
                c->feats[j] = c->feats[j - 1];
                c->feats[j - 1] = t;
            }
    }
    *n_feats = m;
}

/* absoluteerror: sets each leaf of tree t to eta * the median residual of its rows. */
static void refresh_l1_leaves(gb_fit *c, const gb_grower *g, int t, int k)
{
    for (int l = 0; l < gb_grower_leaves(g); l++) {
        const int *rows;
        int count, node = gb_grower_leaf(g, l, &rows, &count);
        if (count == 0)
            continue;
        for (int i = 0; i < count; i++) {
            size_t r = (size_t)rows[i] * c->K + k;
            c->scratch[i] = c->y[r] - c->margin[r];
        }
        int i = c->f->offsets[t] + node;
        c->f->value[i] = (float)(c->s->tree.eta * median(c->scratch, count));
        c->f->pack[i].v = c->f->value[i];
    }
}

typedef struct eval_job {
    const gb_forest *f;
    const float *X;         /* rows of `cols` features */
    int64_t cols, n;
    const int *rows;        /* rows to add to, or NULL for 0 .. n - 1 */
    double *margin;         /* K per row */
    int t0, t1, K;          /* add trees [t0, t1) */
} eval_job;

static void eval_rows(void *data, size_t b, int tid)
{
    (void)tid;
    const eval_job *j = data;
    int64_t i1 = (int64_t)(b + 1) * ROW_BLOCK < j->n ? (int64_t)(b + 1) * ROW_BLOCK : j->n;
    for (int64_t i = (int64_t)b * ROW_BLOCK; i < i1; i++) {
        int64_t r = j->rows ? j->rows[i] : i;
        for (int t = j->t0; t < j->t1; t++)
            j->margin[r * j->K + t % j->K] += gb_tree_eval(j->f, t, j->X + r * j->cols);
    }
}

/* Adds trees [t0, t1) to the margins of n rows (rows[] or all) of X. */
static void add_trees(const gb_fit *c, const float *X, int64_t cols, const int *rows, int64_t n,
                      double *margin, int t0, int t1)
{
    eval_job j = { c->f, X, cols, n, rows, margin, t0, t1, c->K };
    kp_parallel_for(c->threads, eval_rows, &j, (size_t)((n + ROW_BLOCK - 1) / ROW_BLOCK));
}

/* Adds tree t (output k) to the margins of the train rows: its leaves' rows,
 * then the rows it did not draw. */
static void add_tree(gb_fit *c, const gb_grower *g, int t, int k)
{
    const gb_forest *f = c->f;
    for (int l = 0; l < gb_grower_leaves(g); l++) {
        const int *rows;
        int count, node = gb_grower_leaf(g, l, &rows, &count);
        double v = f->value[f->offsets[t] + node];
        for (int i = 0; i < count; i++)
            c->margin[(size_t)rows[i] * c->K + k] += v;
    }
    if (c->n_out_rows > 0)
        add_trees(c, c->X, c->d, c->out_rows, c->n_out_rows, c->margin, t, t + 1);
}

/* Grows the K trees of round `round`. */
static int boost_round(gb_fit *c, gb_grower *g, uint64_t seed, int round, char *err,
                       size_t errlen)
{
    kp_parallel_for(c->threads, gradient_block, c, ((size_t)c->n + ROW_BLOCK - 1) / ROW_BLOCK);
    for (int k = 0; k < c->K; k++) {
        int t = round * c->K + k, nf, rc;
        draw(c, seed, t, &nf);
        if ((rc = gb_grow(g, c->gh + (size_t)k * c->n, c->rows, c->n_rows, c->feats, nf, c->f,
                          err, errlen)) < 0)
            return rc;
        if (c->s->obj == GB_L1)
            refresh_l1_leaves(c, g, t, k);
        add_tree(c, g, t, k);
    }
    if (c->Xv)
        add_trees(c, c->Xv->data, c->Xv->cols, NULL, c->Xv->rows, c->vmargin, round * c->K,
                  (round + 1) * c->K);
    return 0;
}

/* ---- the fit ---- */

static void fit_free(gb_fit *c)
{
    free(c->margin);
    free(c->gh);
    free(c->rows);
    free(c->out_rows);
    free(c->feats);
    free(c->vmargin);
    free(c->scratch);
    gb_forest_free(c->f);
}

/* Allocates the fit's buffers and sets the base margins; 0 or a status. */
static int fit_init(gb_fit *c, const kp_problem *pb, const kp_matrix *X, const float *y,
                    const kp_fit_opts *opts, char *err, size_t errlen)
{
    c->n = (int)X->rows;
    c->d = (int)X->cols;
    c->K = pb->n_out;
    c->X = X->data;
    c->y = y;
    c->threads = opts->threads < 1 ? 1 : opts->threads;
    const gb_settings *s = c->s;
    if (opts->X_valid && opts->y_valid && opts->X_valid->rows > 0 &&
        (s->early_stop > 0 || opts->log)) {     /* else the held-out rows are not needed */
        if (opts->X_valid->cols != X->cols)
            return kp_errf(err, errlen, KP_ERR_ARG, "X_valid has %lld columns, X has %d",
                           (long long)opts->X_valid->cols, c->d);
        c->Xv = opts->X_valid;
        c->yv = opts->y_valid;
    }
    size_t nk = (size_t)c->n * c->K, vk = c->Xv ? (size_t)c->Xv->rows * c->K : 1;
    c->margin = malloc(sizeof *c->margin * nk);
    c->gh = malloc(sizeof *c->gh * nk);
    c->rows = malloc(sizeof *c->rows * (size_t)c->n);
    c->out_rows = malloc(sizeof *c->out_rows * (size_t)c->n);
    c->feats = malloc(sizeof *c->feats * (size_t)c->d);
    c->vmargin = malloc(sizeof *c->vmargin * vk);
    c->scratch = malloc(sizeof *c->scratch * (size_t)c->n);
    c->f = gb_forest_create(pb->task, c->K, c->d);
    if (!c->margin || !c->gh || !c->rows || !c->out_rows || !c->feats || !c->vmargin ||
        !c->scratch || !c->f)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory for %d x %d rows", c->n, c->d);
    set_base(c);
    for (size_t i = 0; i < nk; i++)
        c->margin[i] = c->f->base[i % c->K];
    for (size_t i = 0; c->Xv && i < vk; i++)
        c->vmargin[i] = c->f->base[i % c->K];
    return 0;
}

/* Checks the held-out targets like the train ones (a class index must index). */
static int check_valid_targets(const gb_fit *c, char *err, size_t errlen)
{
    int64_t n = c->s->obj == GB_SOFTMAX ? c->Xv->rows : c->Xv->rows * c->K;
    for (int64_t i = 0; i < n; i++) {
        float v = c->yv[i];
        int ok = c->s->obj == GB_SOFTMAX ? v >= 0 && v < c->K && v == floorf(v) : isfinite(v);
        if (!ok)
            return kp_errf(err, errlen, KP_ERR_ARG, "y_valid[%lld] = %g is not a valid target",
                           (long long)i, v);
    }
    return 0;
}

/* Finds the bins on X_all when given, else on X; *bins caller-owned. */
static int bin_features(const gb_settings *s, const kp_matrix *X, const kp_fit_opts *opts,
                        int threads, kp_bins **bins, char *err, size_t errlen)
{
    const kp_matrix *B = opts->X_all ? opts->X_all : X;
    if (B->cols != X->cols)
        return kp_errf(err, errlen, KP_ERR_ARG, "X_all has %lld columns, X has %lld",
                       (long long)B->cols, (long long)X->cols);
    return kp_bins_create(B, s->max_bin, threads, bins, err, errlen);
}

/* Is round one to log (every 10 rounds and the last)? */
static int log_due(const gb_settings *s, FILE *log, int round)
{
    return log && ((round + 1) % 10 == 0 || round + 1 == s->n_rounds);
}

/* Logs the train (and held-out) loss after a round. */
static void log_round(const gb_fit *c, FILE *log, int round, double vloss)
{
    const gb_settings *s = c->s;
    const char *m = obj_metric[s->obj];
    fprintf(log, "gbdt: tree %d/%d train-%s %.4f", round + 1, s->n_rounds, m,
            mean_loss(s, c->K, c->margin, c->y, c->n));
    if (c->Xv)
        fprintf(log, " valid-%s %.4f", m, vloss);
    fputc('\n', log);
}

/* Boosts up to n_rounds rounds; *kept is the number of rounds to keep. */
static int boost(gb_fit *c, gb_grower *g, const kp_fit_opts *opts, int *kept, char *err,
                 size_t errlen)
{
    const gb_settings *s = c->s;
    double best = INFINITY;
    int best_round = 0, round, rc;
    for (round = 0; round < s->n_rounds; round++) {
        if ((rc = boost_round(c, g, opts->seed, round, err, errlen)) < 0)
            return rc;
        int due = log_due(s, opts->log, round), stopping = s->early_stop > 0 && c->Xv;
        double vloss = c->Xv && (due || stopping)
                           ? mean_loss(s, c->K, c->vmargin, c->yv, c->Xv->rows) : 0;
        if (due)
            log_round(c, opts->log, round, vloss);
        if (stopping && vloss < best) {
            best = vloss;
            best_round = round;
        }
        if (stopping && round - best_round >= s->early_stop)
            break;
    }
    *kept = s->early_stop > 0 && c->Xv ? best_round + 1 : s->n_rounds;
    if (opts->log && s->early_stop > 0 && c->Xv)
        fprintf(opts->log, "gbdt: %s after %d rounds; best round %d valid-%s %.4f\n",
                round < s->n_rounds ? "stopped early" : "finished", round < s->n_rounds ?
                round + 1 : round, best_round + 1, obj_metric[s->obj], best);
    return 0;
}

static int gbdt_fit(const kp_params *params, const kp_problem *pb, const kp_matrix *X,
                    const float *y, const kp_fit_opts *opts, void **model, char *err,
                    size_t errlen)
{
    gb_settings s;
    gb_fit c = { .s = &s };
    kp_bins *bins = NULL;
    gb_grower *g = NULL;
    int rc, kept;
    if ((rc = read_settings(params, pb, &s, err, errlen)) < 0 ||
        (rc = fit_init(&c, pb, X, y, opts, err, errlen)) < 0 ||
        (c.Xv && (rc = check_valid_targets(&c, err, errlen)) < 0) ||
        (rc = bin_features(&s, X, opts, c.threads, &bins, err, errlen)) < 0)
        goto fail;
    if (!(g = gb_grower_create(&s.tree, bins, X->data, c.n, c.d, c.threads))) {
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory for %d rows", c.n);
        goto fail;
    }
    if ((rc = boost(&c, g, opts, &kept, err, errlen)) < 0)
        goto fail;
    if ((rc = gb_forest_finish(c.f, kept * c.K)) < 0) {
        kp_errf(err, errlen, rc, "out of memory for the feature importances");
        goto fail;
    }
    *model = c.f;
    c.f = NULL;
fail:
    gb_grower_free(g);
    kp_bins_free(bins);
    fit_free(&c);
    return rc;
}

const kp_model_ops kp_model_gbdt = {
    .name = "gbdt",
    .doc = "histogram gradient-boosted trees (XGBoost's tree_method='hist')",
    .params = gbdt_params,
    .tasks = KP_TASK_BIT(KP_TASK_BINARY) | KP_TASK_BIT(KP_TASK_MULTICLASS) |
             KP_TASK_BIT(KP_TASK_REGRESSION) | KP_TASK_BIT(KP_TASK_MULTILABEL),
    .fit = gbdt_fit,
    .predict = gb_forest_predict,
    .save = gb_forest_save,
    .load = gb_forest_load,
    .free = gb_forest_free,
    .missing_ok = 1,
};

/* gbdt_forest.c - the fitted trees of gbdt: prediction on raw floats, and
 * the checkpoint tensors.
 *
 * Checkpoint tensors (N nodes over T trees, F features, K = n_out):
 *   tree_offsets     I32 [T + 1]  tree t is nodes [off[t], off[t + 1])
 *   feature          I32 [N]      split feature, -1 for a leaf
 *   threshold        F32 [N]      x <= threshold goes left
 *   left, right      I32 [N]      children, indices inside the tree, -1 for a leaf
 *   value            F32 [N]      leaf values (learning rate applied)
 *   default_left     U8  [N]      1 if NaN goes left
 *   base_score       F32 [K]      base margin of each output
 *   importance_gain  F32 [F]      total loss change of the splits on each feature
 *   importance_split I32 [F]      number of splits on each feature
 * Tree t adds to output t % K.  A child index is always greater than its
 * node's, which the loader checks, so a walk always ends at a leaf.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/err.h"
#include "../lib/parallel.h"
#include "gbdt_int.h"

#define ROWS_PER_TASK 64    /* rows whose features stay in L1 while the trees pass */

gb_forest *gb_forest_create(kp_task_kind task, int n_out, int n_features)
{
    gb_forest *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->task = task;
    f->n_out = n_out;
    f->n_features = n_features;
    f->offsets = calloc(1, sizeof *f->offsets);
    f->cap_trees = 0;
    f->base = calloc((size_t)n_out, sizeof *f->base);
    f->imp_gain = calloc((size_t)n_features, sizeof *f->imp_gain);
    f->imp_split = calloc((size_t)n_features, sizeof *f->imp_split);
    if (!f->offsets || !f->base || !f->imp_gain || !f->imp_split) {
        gb_forest_free(f);
        return NULL;
    }
    return f;
}

void gb_forest_free(void *model)
{
    gb_forest *f = model;
    if (!f)
        return;
    free(f->offsets);
    free(f->feature);
    free(f->left);
    free(f->right);
    free(f->threshold);
    free(f->value);
    free(f->default_left);
    free(f->gain);
    free(f->pack);
    free(f->base);
    free(f->imp_gain);
    free(f->imp_split);
    free(f);
}

/* Reallocates *p to n elements of size sz; 0 or -1 (then *p is unchanged). */
static int resize(void *p, size_t n, size_t sz)
{
    void *old, *q;
    memcpy(&old, p, sizeof old);    /* p is the address of any T * */
    if (!(q = realloc(old, n * sz)))
        return -1;
    memcpy(p, &q, sizeof q);
    return 0;
}

/* Sets the capacity of every node array to cap; 0 or -1. */
static int resize_nodes(gb_forest *f, int cap)
{
    if (resize(&f->feature, (size_t)cap, sizeof *f->feature) < 0 ||
        resize(&f->left, (size_t)cap, sizeof *f->left) < 0 ||
        resize(&f->right, (size_t)cap, sizeof *f->right) < 0 ||
        resize(&f->threshold, (size_t)cap, sizeof *f->threshold) < 0 ||
        resize(&f->value, (size_t)cap, sizeof *f->value) < 0 ||
        resize(&f->default_left, (size_t)cap, sizeof *f->default_left) < 0 ||
        resize(&f->gain, (size_t)cap, sizeof *f->gain) < 0 ||
        resize(&f->pack, (size_t)cap, sizeof *f->pack) < 0)
        return -1;
    f->cap_nodes = cap;
    return 0;
}

int gb_forest_reserve(gb_forest *f, int nodes)
{
    if (f->n_trees + 2 > f->cap_trees) {
        int cap = f->cap_trees ? 2 * f->cap_trees : 64;
        if (resize(&f->offsets, (size_t)cap, sizeof *f->offsets) < 0)
            return KP_ERR_NOMEM;
        f->cap_trees = cap;
    }
    if ((int64_t)f->n_nodes + nodes > INT32_MAX)
        return KP_ERR_NOMEM;
    if (f->n_nodes + nodes > f->cap_nodes) {
        int64_t cap = f->cap_nodes ? 2 * (int64_t)f->cap_nodes : 1024;
        while (cap < (int64_t)f->n_nodes + nodes)
            cap *= 2;
        if (resize_nodes(f, (int)(cap > INT32_MAX ? INT32_MAX : cap)) < 0)
            return KP_ERR_NOMEM;
    }
    return 0;
}

int gb_forest_finish(gb_forest *f, int n_trees)
{
    double *gain = calloc((size_t)f->n_features, sizeof *gain);
    if (!gain)
        return KP_ERR_NOMEM;
    f->n_trees = n_trees;
    f->n_nodes = f->offsets[n_trees];
    memset(f->imp_split, 0, sizeof *f->imp_split * (size_t)f->n_features);
    for (int i = 0; i < f->n_nodes; i++)
        if (f->feature[i] >= 0) {
            f->imp_split[f->feature[i]]++;
            gain[f->feature[i]] += f->gain[i];
        }
    for (int j = 0; j < f->n_features; j++)
        f->imp_gain[j] = (float)gain[j];
    free(gain);
    return 0;
}

void gb_forest_pack(gb_forest *f, int from)
{
    for (int i = from; i < f->n_nodes; i++) {
        int leaf = f->feature[i] < 0;
        f->pack[i] = (gb_pnode){ f->feature[i], leaf ? f->value[i] : f->threshold[i], f->left[i],
                                 (int32_t)((uint32_t)f->right[i] |
                                           (f->default_left[i] ? 0x80000000u : 0)) };
    }
}

/* ---- prediction ---- */

typedef struct predict_job {
    const gb_forest *f;
    const kp_matrix *X;
    float *out;
    double *scratch;    /* ROWS_PER_TASK * n_out margins per thread */
} predict_job;

/* Turns the n_out margins z of one row into probabilities or values. */
static void apply_link(kp_task_kind task, const double *z, int k, float *out)
{
    if (task == KP_TASK_MULTICLASS) {
        double mx = z[0], sum = 0;
        for (int j = 1; j < k; j++)
            mx = fmax(mx, z[j]);
        for (int j = 0; j < k; j++)
            sum += exp(z[j] - mx);
        for (int j = 0; j < k; j++)
            out[j] = (float)(exp(z[j] - mx) / sum);
        return;
    }
    for (int j = 0; j < k; j++)
        out[j] = task == KP_TASK_REGRESSION ? (float)z[j] : (float)(1 / (1 + exp(-z[j])));
}

/* Predicts a block of rows, tree by tree (each row sums its trees in order). */
static void predict_block(void *data, size_t i, int tid)
{
    const predict_job *j = data;
    const gb_forest *f = j->f;
    int k = f->n_out;
    int64_t r0 = (int64_t)i * ROWS_PER_TASK, r1 = r0 + ROWS_PER_TASK;
    r1 = r1 < j->X->rows ? r1 : j->X->rows;
    double *z = j->scratch + (size_t)tid * ROWS_PER_TASK * (size_t)k;
    for (int64_t r = r0; r < r1; r++)
        for (int c = 0; c < k; c++)
            z[(r - r0) * k + c] = f->base[c];
    for (int t = 0; t < f->n_trees; t++)
        for (int64_t r = r0; r < r1; r++)
            z[(r - r0) * k + t % k] += gb_tree_eval(f, t, j->X->data + r * j->X->cols);
    for (int64_t r = r0; r < r1; r++)
        apply_link(f->task, z + (r - r0) * k, k, j->out + r * k);
}

int gb_forest_predict(const void *model, const kp_matrix *X, float *out, int threads,
                      char *err, size_t errlen)
{
    const gb_forest *f = model;
    if (X->cols != f->n_features)
        return kp_errf(err, errlen, KP_ERR_MISMATCH,
                       "X has %lld columns but the model was fitted on %d features",
                       (long long)X->cols, f->n_features);
    threads = threads < 1 ? 1 : threads;
    predict_job j = { f, X, out,
                      malloc(sizeof(double) * (size_t)threads * ROWS_PER_TASK * (size_t)f->n_out) };
    if (!j.scratch)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory for %d outputs", f->n_out);
    kp_parallel_for(threads, predict_block, &j,
                    (size_t)((X->rows + ROWS_PER_TASK - 1) / ROWS_PER_TASK));
    free(j.scratch);
    return 0;
}

/* ---- checkpoint ---- */

int gb_forest_save(const void *model, kp_stw *w, char *err, size_t errlen)
{
    const gb_forest *f = model;
    int64_t tshape[1] = { f->n_trees + 1 }, nshape[1] = { f->n_nodes };
    int64_t kshape[1] = { f->n_out }, fshape[1] = { f->n_features };
    int rc = 0;
    if ((rc = kp_stw_add(w, "tree_offsets", KP_I32, 1, tshape, f->offsets)) < 0 ||
        (rc = kp_stw_add(w, "feature", KP_I32, 1, nshape, f->feature)) < 0 ||
        (rc = kp_stw_add(w, "threshold", KP_F32, 1, nshape, f->threshold)) < 0 ||
        (rc = kp_stw_add(w, "left", KP_I32, 1, nshape, f->left)) < 0 ||
        (rc = kp_stw_add(w, "right", KP_I32, 1, nshape, f->right)) < 0 ||
        (rc = kp_stw_add(w, "value", KP_F32, 1, nshape, f->value)) < 0 ||
        (rc = kp_stw_add(w, "default_left", KP_U8, 1, nshape, f->default_left)) < 0 ||
        (rc = kp_stw_add(w, "base_score", KP_F32, 1, kshape, f->base)) < 0 ||
        (rc = kp_stw_add(w, "importance_gain", KP_F32, 1, fshape, f->imp_gain)) < 0 ||
        (rc = kp_stw_add(w, "importance_split", KP_I32, 1, fshape, f->imp_split)) < 0)
        return kp_errf(err, errlen, rc, "could not add the model's tensors: %s",
                       kp_strerror(rc));
    return 0;
}

/* The tensors of a checkpoint, shapes checked. */
typedef struct gb_tensors {
    const kp_tensor *off, *feature, *threshold, *left, *right, *value, *dleft, *base, *gain,
        *split;
} gb_tensors;

/* Finds every tensor with its dtype and shape; 0 or KP_ERR_FORMAT. */
static int find_tensors(const kp_st *st, const kp_problem *pb, gb_tensors *t, char *err,
                        size_t errlen)
{
    int64_t any[1] = { -1 }, kshape[1] = { pb->n_out };
    if (!(t->off = kp_st_expect(st, "tree_offsets", KP_I32, 1, any, err, errlen)) ||
        !(t->base = kp_st_expect(st, "base_score", KP_F32, 1, kshape, err, errlen)) ||
        !(t->gain = kp_st_expect(st, "importance_gain", KP_F32, 1, any, err, errlen)))
        return KP_ERR_FORMAT;
    const char *path = kp_st_path(st);
    int64_t trees = t->off->shape[0] - 1, nf = t->gain->shape[0];
    if (trees < pb->n_out || trees % pb->n_out != 0 || trees >= INT32_MAX)
        return kp_errf(err, errlen, KP_ERR_FORMAT,
                       "%s: tensor 'tree_offsets' holds %lld trees, not a positive multiple "
                       "of the %d outputs", path, (long long)trees, pb->n_out);
    if (nf < 1 || nf > INT32_MAX)
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: tensor 'importance_gain' has %lld "
                       "features", path, (long long)nf);
    int64_t nodes[1] = { ((const int32_t *)t->off->data)[trees] }, fshape[1] = { nf };
    if (nodes[0] < trees)
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: tensor 'tree_offsets' ends at %lld, "
                       "fewer nodes than trees", path, (long long)nodes[0]);
    if (!(t->feature = kp_st_expect(st, "feature", KP_I32, 1, nodes, err, errlen)) ||
        !(t->threshold = kp_st_expect(st, "threshold", KP_F32, 1, nodes, err, errlen)) ||
        !(t->left = kp_st_expect(st, "left", KP_I32, 1, nodes, err, errlen)) ||
        !(t->right = kp_st_expect(st, "right", KP_I32, 1, nodes, err, errlen)) ||
        !(t->value = kp_st_expect(st, "value", KP_F32, 1, nodes, err, errlen)) ||
        !(t->dleft = kp_st_expect(st, "default_left", KP_U8, 1, nodes, err, errlen)) ||
        !(t->split = kp_st_expect(st, "importance_split", KP_I32, 1, fshape, err, errlen)))
        return KP_ERR_FORMAT;
    return 0;
}

/* Checks node o + i of a tree of `size` nodes; 0 or KP_ERR_FORMAT. */
static int check_node(const kp_st *st, const gb_tensors *t, int64_t nf, int tree, int o, int i,
                      int size, char *err, size_t errlen)
{
    int32_t f = ((const int32_t *)t->feature->data)[o + i];
    int32_t l = ((const int32_t *)t->left->data)[o + i];
    int32_t r = ((const int32_t *)t->right->data)[o + i];
    float thr = ((const float *)t->threshold->data)[o + i];
    float v = ((const float *)t->value->data)[o + i];
    uint8_t dl = ((const uint8_t *)t->dleft->data)[o + i];
    const char *what = NULL;
    if (f < -1 || f >= nf)
        what = "a feature index out of range";
    else if (f >= 0 && (l <= i || l >= size || r <= i || r >= size || l == r))
        what = "a child index out of range (children must follow their node inside the tree)";
    else if (f >= 0 && isnan(thr))
        what = "a NaN threshold";
    else if (f < 0 && (l != -1 || r != -1))
        what = "a leaf with children";
    else if (!isfinite(v))
        what = "a non-finite value";
    else if (dl > 1)
        what = "a default_left that is not 0 or 1";
    if (!what)
        return 0;
    return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: tree %d node %d has %s", kp_st_path(st),
                   tree, i, what);
}

/* Checks offsets, every node, base scores and importances; 0 or KP_ERR_FORMAT. */
static int check_tensors(const kp_st *st, const gb_tensors *t, char *err, size_t errlen)
{
    const char *path = kp_st_path(st);
    const int32_t *off = t->off->data;
    int64_t trees = t->off->shape[0] - 1, nf = t->gain->shape[0];
    if (off[0] != 0)
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: tensor 'tree_offsets' does not start "
                       "at 0", path);
    for (int64_t k = 0; k < trees; k++) {
        if (off[k + 1] <= off[k])
            return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: tensor 'tree_offsets' is not "
                           "increasing at tree %lld", path, (long long)k);
        for (int i = 0; i < off[k + 1] - off[k]; i++) {
            int rc = check_node(st, t, nf, (int)k, off[k], i, off[k + 1] - off[k], err, errlen);
            if (rc < 0)
                return rc;
        }
    }
    for (int64_t j = 0; j < t->base->numel; j++)
        if (!isfinite(((const float *)t->base->data)[j]))
            return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: tensor 'base_score' holds a "
                           "non-finite value", path);
    for (int64_t j = 0; j < nf; j++) {
        float g = ((const float *)t->gain->data)[j];
        if (!(g >= 0) || !isfinite(g) || ((const int32_t *)t->split->data)[j] < 0)
            return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: feature %lld has a negative or "
                           "non-finite importance", path, (long long)j);
    }
    return 0;
}

int gb_forest_load(const kp_st *st, const kp_problem *pb, void **model, char *err,
                   size_t errlen)
{
    gb_tensors t = { 0 };
    int rc;
    if ((rc = find_tensors(st, pb, &t, err, errlen)) < 0 ||
        (rc = check_tensors(st, &t, err, errlen)) < 0)
        return rc;
    int trees = (int)(t.off->shape[0] - 1), nodes = (int)t.feature->shape[0];
    gb_forest *f = gb_forest_create(pb->task, pb->n_out, (int)t.gain->shape[0]);
    if (!f || gb_forest_reserve(f, nodes) < 0 ||
        resize(&f->offsets, (size_t)trees + 1, sizeof *f->offsets) < 0) {
        gb_forest_free(f);
        return kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory loading %d nodes",
                       kp_st_path(st), nodes);
    }
    f->cap_trees = trees + 1;
    f->n_trees = trees;
    f->n_nodes = nodes;
    memcpy(f->offsets, t.off->data, t.off->nbytes);
    memcpy(f->feature, t.feature->data, t.feature->nbytes);
    memcpy(f->threshold, t.threshold->data, t.threshold->nbytes);
    memcpy(f->left, t.left->data, t.left->nbytes);
    memcpy(f->right, t.right->data, t.right->nbytes);
    memcpy(f->value, t.value->data, t.value->nbytes);
    memcpy(f->default_left, t.dleft->data, t.dleft->nbytes);
    memcpy(f->base, t.base->data, t.base->nbytes);
    memcpy(f->imp_gain, t.gain->data, t.gain->nbytes);
    memcpy(f->imp_split, t.split->data, t.split->nbytes);
    free(f->gain);
    f->gain = NULL;
    gb_forest_pack(f, 0);
    *model = f;
    return 0;
}

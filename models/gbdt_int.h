/* gbdt_int.h - private types shared by the gbdt files:
 *   gbdt.c         parameters, objectives, the boosting loop, the ops table;
 *   gbdt_grow.c    growing one tree: nodes, row partitions, growth policies;
 *   gbdt_hist.c    bin codes, gradient histograms and the split search (the hot part);
 *   gbdt_forest.c  the fitted trees: prediction, checkpoint save and load.
 */
#ifndef KP_GBDT_INT_H
#define KP_GBDT_INT_H

#include <stddef.h>
#include <stdint.h>
#include "binning.h"
#include "model.h"

#define GB_EPS 1e-6     /* XGBoost's kRtEps: a split must gain more than this */

/* A node packed for prediction: 16 bytes, four to a cache line. */
typedef struct gb_pnode {
    int32_t feature;        /* -1 for a leaf */
    float v;                /* the threshold, or a leaf's value */
    int32_t left;
    int32_t right;          /* | INT32_MIN if NaN goes left */
} gb_pnode;

/* The fitted model: the nodes of every tree concatenated, tree t adding to
 * output t % n_out (one tree per output per round). */
typedef struct gb_forest {
    kp_task_kind task;
    int n_out;              /* outputs; trees per round */
    int n_features;
    int n_trees;            /* a multiple of n_out */
    int n_nodes;
    int cap_nodes, cap_trees;
    int32_t *offsets;       /* n_trees + 1: tree t is nodes [offsets[t], offsets[t + 1]) */
    int32_t *feature;       /* split feature, -1 for a leaf */
    int32_t *left, *right;  /* children, indices inside the tree after the node's; -1: leaf */
    float *threshold;       /* x <= threshold goes left, NaN goes the default way */
    float *value;           /* a leaf's value (learning rate applied); 0 inside */
    uint8_t *default_left;  /* 1 if NaN goes left */
    float *gain;            /* loss change of each split; fit only (NULL once loaded) */
    gb_pnode *pack;         /* the same nodes packed (built by gb_forest_pack) */
    float *base;            /* n_out base margins */
    float *imp_gain;        /* n_features: total gain of the splits on each feature */
    int32_t *imp_split;     /* n_features: number of splits on each feature */
} gb_forest;

/* Returns an empty forest, or NULL on allocation failure; free with gb_forest_free. */
gb_forest *gb_forest_create(kp_task_kind task, int n_out, int n_features);

/* Frees the forest (a void * for the ops table); NULL is accepted. */
void gb_forest_free(void *model);

/* Makes room for one more tree of up to `nodes` nodes; 0 or KP_ERR_NOMEM. */
int gb_forest_reserve(gb_forest *f, int nodes);

/* Keeps the first n_trees trees and fills imp_gain / imp_split from them;
 * 0 or KP_ERR_NOMEM. */
int gb_forest_finish(gb_forest *f, int n_trees);

/* Fills f->pack for nodes [from, n_nodes) from the node arrays. */
void gb_forest_pack(gb_forest *f, int from);

/* Returns tree t's value for the row x (raw features; NaN follows the default). */
static inline double gb_tree_eval(const gb_forest *f, int t, const float *x)
{
    const gb_pnode *nd = f->pack + f->offsets[t];
    int i = 0;
    while (nd[i].feature >= 0) {
        float v = x[nd[i].feature];
        int left = (v <= nd[i].v) | ((v != v) & (nd[i].right < 0));    /* no branches */
        int32_t l = nd[i].left, r = nd[i].right & INT32_MAX;
        i = left ? l : r;
    }
    return nd[i].v;
}

/* The ops entries (see model.h). */
int gb_forest_predict(const void *model, const kp_matrix *X, float *out, int threads,
                      char *err, size_t errlen);
int gb_forest_save(const void *model, kp_stw *w, char *err, size_t errlen);
int gb_forest_load(const kp_st *st, const kp_problem *pb, void **model, char *err,
                   size_t errlen);

/* ---- growing one tree ---- */

/* One row's gradient and hessian, as XGBoost's GradientPair. */
typedef struct gb_gh { float g, h; } gb_gh;

/* What shapes a tree (XGBoost's names). */
typedef struct gb_tree_params {
    double eta, lambda, alpha, gamma, min_child_weight;
    int max_depth;          /* 0 = no limit */
    int max_leaves;         /* 0 = no limit */
    int lossguide;          /* grow the best leaf first, else level by level */
} gb_tree_params;

typedef struct gb_grower gb_grower;

/* Returns a grower for the n x d row-major features X binned by bins (p and
 * bins borrowed until gb_grower_free, X only during the call); NULL on
 * allocation failure. */
gb_grower *gb_grower_create(const gb_tree_params *p, const kp_bins *bins, const float *X,
                            int n, int d, int threads);

/* Frees the grower; NULL is accepted. */
void gb_grower_free(gb_grower *g);

/* Grows a tree on rows[0..m) (ascending) with gradients gh (indexed by row)
 * and features feats[0..nf) (ascending), then appends it to f. */
int gb_grow(gb_grower *g, const gb_gh *gh, const int *rows, int m, const int *feats, int nf,
            gb_forest *f, char *err, size_t errlen);

/* Returns the number of leaves of the last tree grown. */
int gb_grower_leaves(const gb_grower *g);

/* Returns leaf i's node index inside the tree, and its rows in *rows, *count
 * (borrowed until the next gb_grow). */
int gb_grower_leaf(const gb_grower *g, int i, const int **rows, int *count);

/* ---- inside the grower (gbdt_grow.c, gbdt_hist.c) ---- */

#define NB 256                  /* histogram slots per feature (255 = missing) */
#define GW 8                    /* features per code group */
#define CHUNK 32768             /* rows per partition and coding task */

typedef struct gb_split {
    double loss;                /* loss change; 0 = no split */
    int feature, bin, dleft;    /* code <= bin goes left (bin -1: none), missing by dleft */
    double gl, hl, gr, hr;      /* the children's sums */
} gb_split;

typedef struct gb_node {        /* a node of the tree being grown */
    int feature, bin, dleft, left, right;
    double value, gain;
    int begin, end;             /* its rows */
} gb_node;

typedef struct gb_leaf {        /* an open leaf: a node that may still split */
    int node, begin, end, depth;
    double g, h, root_gain;
    gb_split split;
    double *hist;               /* NB * 2 doubles per feature, from the pool */
} gb_leaf;

typedef struct gb_htask {       /* build a histogram block, subtract, evaluate */
    const int *rows;            /* NULL: rows 0, 1, ... (the root over every row) */
    int nrows, lo, hi;          /* rows to add; groups sel_groups[lo..hi) */
    double *dst, *sub;          /* built; parent turned into the sibling (or NULL) */
    gb_leaf *a, *b;             /* owners of dst and sub */
    gb_split best_a, best_b;
} gb_htask;

typedef struct gb_ptask {       /* partition one chunk of a node's rows */
    int begin, end, feature, bin, dleft;
    int n_left;                 /* out */
    int multi;                  /* the node has several chunks */
    int dst_left, dst_right;    /* where this chunk's left / right rows end up */
} gb_ptask;

struct gb_grower {
    const gb_tree_params *p;
    uint8_t *codes_grp;         /* n_groups blocks of n x GW codes (features GW k ...) */
    uint8_t *codes_row;         /* n rows of stride bytes: group k at byte GW k */
    size_t stride;
    uint8_t *codes_col;         /* d x n codes */
    int n, d, n_groups, threads;
    int *nbins;                 /* value bins per feature */
    const float **cuts;
    int *rows, *tmp;
    int *iota;                  /* 0, 1, ..., n - 1 */
    const gb_gh *gh;
    const int *feats;           /* the tree's features, ascending */
    int nf;
    int *grp_lo, *grp_hi;       /* the features of group k are feats[grp_lo[k]..grp_hi[k]) */
    int *grp_full;              /* every feature of group k is drawn */
    int *sel_groups, n_sel;     /* groups with a drawn feature, ascending */
    gb_node *nodes;
    int n_nodes, cap_nodes;
    gb_leaf *open, *batch, *kids;
    int n_open, n_batch, cap_open, cap_batch, cap_kids;
    double **pool;              /* free histogram buffers */
    int n_pool;
    double **all;               /* every histogram buffer allocated */
    int n_all, cap_all;
    gb_htask *ht;
    int cap_ht;
    gb_ptask *pt;
    int cap_pt;
    int *leaf_ids;
    int n_leaves, cap_leaf_ids;
};

/* Grows the array at address p (elements of size sz, capacity *cap) to hold
 * need elements; 0 or -1 (then unchanged). */
int gb_ensure(void *p, int *cap, int need, size_t sz);

/* XGBoost's gain T(G)^2 / (H + lambda) (0 if H <= 0), T the soft threshold at alpha. */
double gb_calc_gain(const gb_tree_params *p, double g, double h);

/* XGBoost's leaf weight -T(G) / (H + lambda), 0 below min_child_weight. */
double gb_calc_weight(const gb_tree_params *p, double g, double h);

/* Returns a histogram buffer (from the pool or new; owned by the grower), or NULL. */
double *gb_hist_get(gb_grower *g);

/* Returns *h to the pool and clears it; NULL is accepted. */
void gb_hist_put(gb_grower *g, double **h);

/* Bins X into the grower's code layouts (nbins, cuts, codes_*); 0 or -1. */
int gb_make_codes(gb_grower *g, const kp_bins *bins, const float *X);

/* Returns the feature-group blocks for a histogram of `rows` rows when
 * `total` rows are built in all (any blocking gives the same result). */
int gb_block_count(const gb_grower *g, int64_t rows, int64_t total);

/* Queues the tasks of one histogram: a's built from its rows and, if b,
 * b's = parent - a in the parent's buffer; 0 or -1. */
int gb_add_hist_tasks(gb_grower *g, int *n_tasks, gb_leaf *a, gb_leaf *b, double *parent,
                      int blocks);

/* Runs the queued histogram tasks and stores each leaf's best split. */
void gb_run_hist_tasks(gb_grower *g, int n_tasks);

#endif

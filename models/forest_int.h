/* forest_int.h - the parts of the forest model shared by its files (internal).
 *
 * forest.c reads the parameters, prepares the data, grows the trees on
 * threads and predicts, saves and loads; forest_tree.c grows one tree and
 * forest_cut.c finds a node's cut for it.  A tree is a
 * flat node array in creation order: a split node i has children left[i] and
 * right[i], both > i (so a walk always moves forward and ends); a leaf has
 * feature -1 and children -1.  A row goes left when x <= threshold, or when
 * x is NaN and missing_left is 1.  value holds n_out floats per node: class
 * probabilities, label probabilities or the mean target.
 */
#ifndef KP_FOREST_INT_H
#define KP_FOREST_INT_H

#include <stdint.h>
#include "../lib/rng.h"
#include "model.h"

enum { FR_GINI, FR_ENTROPY, FR_SQUARED };            /* criteria */
enum { FR_CLASS, FR_LABELS, FR_VALUE };               /* what a node's statistics hold */

/* The validated settings of one fit. */
typedef struct fr_settings {
    int extra;              /* 1: extra trees (random cuts), 0: random forest (best cuts) */
    int criterion;
    int n_trees;
    int max_depth;          /* 0 = unlimited */
    int min_split, min_leaf;
    int max_bin;
    int bootstrap;
    int64_t n_draw;         /* rows drawn with replacement per tree when bootstrap */
    int mtry;               /* features tried per node */
} fr_settings;

/* The nodes of one tree (while growing) or of a whole forest. */
typedef struct fr_nodes {
    int32_t *feature, *left, *right;
    float *thr;
    uint8_t *mleft;
    float *value;           /* n x n_out */
    int64_t n, cap;
    int n_out;
} fr_nodes;

/* The training set, shared read-only by the tree builders. */
typedef struct fr_data {
    /* random forest: bin codes; extra trees: raw values */
    const uint8_t *codes;       /* column-major: codes[f * n + i], KP_BIN_MISSING for NaN */
    const float *xcol;          /* column-major: xcol[f * n + i] */
    int64_t n;
    int d;
    const float *const *cuts;   /* cut values of each feature (borrowed from kp_bins) */
    const int *usable;          /* features not constant over the rows */
    int n_usable;
    int kind;                   /* FR_CLASS, FR_LABELS or FR_VALUE */
    int K;                      /* FR_CLASS: classes; FR_LABELS: labels; FR_VALUE: 1 */
    int n_out;                  /* values per node (binary: 1, P(class 1)) */
    int S;                      /* statistic slots per bin (see forest_cut.c) */
    const int32_t *cls;         /* FR_CLASS: class of each row */
    const uint8_t *labels;      /* FR_LABELS: n x K 0/1 */
    const double *y;            /* FR_VALUE: target of each row */
    const fr_settings *s;
} fr_data;

#define FR_LOW32 0xffffffffu
#define FR_ONE_ROW ((uint64_t)1 << 32)

/* The statistics of a set of rows: S slots (see forest_cut.c). */
typedef union fr_slot {
    uint64_t u;
    double f;
} fr_slot;

/* The best cut found so far at a node. */
typedef struct fr_split {
    int feature;
    int bin;        /* random forest: rows with code <= bin go left */
    int next;       /* the first occupied bin right of the cut, or -1 */
    int mleft;      /* NaN goes left */
    double proxy;
    float thr;      /* extra trees: rows with x <= thr go left */
} fr_split;

/* A node waiting on the growing stack. */
typedef struct fr_frame {
    int64_t start, end, node;
    int depth;
} fr_frame;

/* Scratch memory of one tree builder (one per thread). */
struct fr_work {
    /* Per position of the drawn rows, moved together by partition (so the
     * histogram loops read them in order); t* are partition scratch. */
    int32_t *idx, *tidx;        /* the row */
    uint64_t *inc, *tinc;       /* its bootstrap count w | 1 << 32 */
    int32_t *cls, *tcls;        /* FR_CLASS: its class */
    double *wy, *twy;           /* FR_VALUE: w * y */
    /* The node's codes (random forest) or values (extra trees) of the
     * feature being tried, and of the best one so far (for partition). */
    uint8_t *cs, *cbest;
    float *xs, *xbest;
    fr_slot *hist;              /* 256 * S per-bin sums, all zero between features */
    uint64_t occupied[4];       /* bitmap of the bins holding rows */
    double *nl, *nr;            /* K each: class weights left and right (scan_gini) */
    fr_slot *tot, *L, *R, *M, *acc;     /* S each */
    const fr_slot *ust[256];    /* the occupied bins' sums, ascending code */
    int ucode[256];             /* their codes */
    int *perm;                  /* the usable features, reshuffled per node */
    fr_frame *stack;
    uint64_t *stack_bits;       /* per frame: its known-constant features */
    uint64_t *cbits;            /* the current node's known-constant features */
    int words;                  /* uint64 words of one feature bitmap */
    int64_t stack_cap;
    kp_rng rng;
};

typedef struct fr_work fr_work;

/* ---- forest_cut.c: a node's statistics and cuts ---- */

/* Sums the node's rows [a, b) into w->tot and writes its value (n_out
 * floats); returns 1 if the node is pure. */
int fr_node_stats(const fr_data *D, fr_work *w, int64_t a, int64_t b, float *value);

/* Random forest: scores the cuts of feature f over rows [a, b) into *best;
 * returns 0 if f is constant there. */
int fr_best_cut(const fr_data *D, fr_work *w, int f, int64_t a, int64_t b, fr_split *best);

/* Extra trees: scores one random cut of feature f over rows [a, b) into
 * *best; returns 0 if f is constant there. */
int fr_random_cut(const fr_data *D, fr_work *w, int f, int64_t a, int64_t b, fr_split *best);

/* ---- forest_tree.c: growing ---- */

/* Returns a builder's scratch memory for data D (NULL when out of memory);
 * caller frees with fr_work_free. */
fr_work *fr_work_create(const fr_data *D);

/* Frees scratch memory; NULL is accepted. */
void fr_work_free(fr_work *w);

/* Grows one tree from seed into *out (emptied first; its arrays grow with
 * realloc and stay the caller's); *depth is the tree's depth.  0 or
 * KP_ERR_NOMEM. */
int fr_grow(const fr_data *D, fr_work *w, uint64_t seed, fr_nodes *out, int *depth);

/* Appends one node (all fields -1 / 0) and returns its index, or -1 when out
 * of memory. */
int64_t fr_nodes_push(fr_nodes *t);

/* Frees the node arrays (not t itself); NULL is accepted. */
void fr_nodes_free(fr_nodes *t);

#endif

/* preprocess_int.h - what preprocess.c and preprocess_targets.c share (private).
 *
 * One `prep` holds a preprocess run: its options, the two CSVs, the feature
 * plan and the arrays being built.  preprocess.c plans and encodes the
 * features and writes the artifact; preprocess_targets.c has the value
 * helpers and builds the targets and groups, which the images stage
 * (images.c) uses too: it fills only comp, train, the na values, c and the
 * error buffer, and reads y, classes, groups and pb back.
 */
#ifndef KP_PREPROCESS_INT_H
#define KP_PREPROCESS_INT_H

#include <locale.h>
#include <stdint.h>
#include <stdio.h>
#include "../lib/csv.h"
#include "preprocess.h"

enum { IMPUTE_MEAN, IMPUTE_MEDIAN, IMPUTE_CONSTANT, IMPUTE_NONE };
typedef enum col_mode { COL_NUMERIC, COL_ONEHOT, COL_ORDINAL } col_mode;

/* One input feature column and how it is encoded. */
typedef struct feat {
    size_t tr, te;               /* column index in the train / test CSV */
    col_mode mode;
    const char **cats;           /* owned array, strings borrowed from train: sorted */
    size_t n_cats;
    double fill;                 /* numeric: the imputed value */
    double mean, scale;          /* standardization: (x - mean) / scale */
    size_t miss_train, miss_test, unseen;
    int indicator;               /* has a COL:missing column */
    size_t out, width;           /* first output column, value columns */
} feat;

/* A value with its row, for sorting and numbering distinct values. */
typedef struct entry {
    const char *s;
    double v;
    int64_t row;
    int32_t run;                 /* index of its distinct value, after kp_prep_sort_runs */
} entry;

/* A preprocess run; everything is owned and freed by prep_free in preprocess.c. */
typedef struct prep {
    const kp_competition *comp;
    int onehot, impute, indicator, standardize;
    long long max_onehot;
    double fill_value;
    const char *const *drop, *const *na;
    int n_drop, n_na;
    unsigned char na_first[256];  /* 1 for the first byte of some na value */
    kp_csv *train, *test;
    long id_tr, id_te, group;
    long *target;
    feat *f;
    size_t n_f, n_out;
    float *Xtr, *Xte, *y;
    int64_t *groups;
    kp_problem pb;
    char **classes;
    int n_classes;
    locale_t c;
    FILE *log;
    char *err;
    size_t errlen;
} prep;

/* Sets p's na_values to the defaults: "", NA, NaN, nan, NULL, null, ?. */
void kp_prep_default_na(prep *p);

/* Finds column name in t into *out, or fails naming the file and what the
 * column is for (`what`). */
int kp_prep_need_col(prep *p, const kp_csv *t, const char *name, const char *what, long *out);

/* Finds the competition's target columns (p->target, owned by p) and group
 * column (p->group, -1 without one) in p->train. */
int kp_prep_find_targets(prep *p);

/* Returns 1 when s is one of the na_values. */
int kp_prep_is_na(const prep *p, const char *s);

/* Parses s wholly (surrounding spaces allowed) as a finite number: 1 and *out, else 0. */
int kp_prep_parse_num(const prep *p, const char *s, double *out);

/* Fills the error buffer with "out of memory"; returns KP_ERR_NOMEM. */
int kp_prep_nomem(prep *p);

/* Sorts e (numerically when `numeric`, else by bytes) and numbers the
 * distinct strings in e[i].run; returns their count. */
size_t kp_prep_sort_runs(entry *e, size_t n, int numeric);

/* Builds y, the classes and pb (n_out) from the target columns. */
int kp_prep_build_targets(prep *p);

/* Numbers the group column's distinct values in order of first appearance into p->groups. */
int kp_prep_build_groups(prep *p);

#endif

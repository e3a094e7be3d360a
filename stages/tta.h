/* tta.h - the pure pieces of the tta stage (stages/tta.c): transform names,
 * merging predictions made under several transforms, and the `auto`
 * selection.  None of them touches a file, so they are tested alone.
 *
 * Transform names map to the D4 transforms of lib/d4.h:
 *   identity 0, hflip 4, vflip 6, rot90 1 (a counter-clockwise quarter turn),
 *   rot180 2, rot270 3, transpose 5 (main diagonal), transverse 7 (the other
 *   diagonal).  rot90, rot270, transpose and transverse swap height and
 *   width, so they apply to square images only.
 */
#ifndef KP_TTA_H
#define KP_TTA_H

#include <stddef.h>
#include <stdint.h>
#include "../lib/d4.h"
#include "../models/model.h"

/* What `transforms:` asked for. */
typedef enum kp_tta_mode { KP_TTA_ALL, KP_TTA_AUTO, KP_TTA_LIST } kp_tta_mode;

/* How predictions under several transforms become one. */
typedef enum kp_tta_merge_kind { KP_TTA_MEAN, KP_TTA_GMEAN, KP_TTA_MAX } kp_tta_merge_kind;

typedef struct kp_tta_spec {
    kp_tta_mode mode;
    int n;                     /* KP_TTA_LIST: the listed transforms, in list order */
    int t[KP_D4_COUNT];
} kp_tta_spec;

/* Returns the name of D4 transform t ("hflip"), or NULL when t is not in 0..7. */
const char *kp_tta_name(int t);

/* Returns the D4 transform called name, or -1. */
int kp_tta_find(const char *name);

/* Returns the transform at position i (0..7) of the canonical order
 * identity, hflip, vflip, rot90, rot180, rot270, transpose, transverse. */
int kp_tta_at(int i);

/* Parses the items of `transforms:` (all | auto | a list of names) into
 * *out; errors read "transforms[I]: unknown transform 'hflp' (did you mean
 * 'hflip'?)" (KP_ERR_CONFIG), for the caller to prefix with the place. */
int kp_tta_parse(const char *const *items, int n, kp_tta_spec *out, char *err, size_t errlen);

/* Parses "mean", "gmean" or "max"; 0 or KP_ERR_ARG. */
int kp_tta_merge_parse(const char *s, kp_tta_merge_kind *out);

/* Returns "mean", "gmean" or "max". */
const char *kp_tta_merge_name(kp_tta_merge_kind k);

/* Writes the candidate transforms of spec for images of h x w into t[]
 * (all, auto: the canonical order, without the swapping ones unless
 * h == w; a list: as listed) and returns their count, or, when a listed
 * transform needs square images and h != w, -1 - (its index in the list). */
int kp_tta_candidates(const kp_tta_spec *spec, int h, int w, int t[KP_D4_COUNT]);

/* Merges n_src prediction arrays (rows x pb->n_out each, borrowed) into out
 * element by element, in source order and in double: the mean, the
 * geometric mean (of values clipped below at 1e-15) or the max; for a
 * multiclass task gmean and max rows are renormalised to sum to 1.  out may
 * not alias a source. */
void kp_tta_merge(kp_tta_merge_kind how, const kp_problem *pb, const float *const *src,
                  int n_src, int64_t rows, float *out);

/* Scores the merge of transforms sel[0..n) into *score; 0 or a status. */
typedef int (*kp_tta_score_fn)(void *ctx, const int *sel, int n, double *score, char *err,
                               size_t errlen);

/* What kp_tta_auto decided, for the log and the metadata. */
typedef struct kp_tta_auto_out {
    int n_tried;
    int tried[KP_D4_COUNT];     /* transforms in the order tried */
    double score[KP_D4_COUNT];  /* the merged score with tried[i] added (first: alone) */
    int kept[KP_D4_COUNT];      /* 1 if tried[i] stayed */
    int n_chosen;
    int chosen[KP_D4_COUNT];    /* the kept transforms, in the order tried */
    double best;                /* the score of the chosen set */
} kp_tta_auto_out;

/* Greedy selection over candidates cand[0..n) with solo scores solo[0..n):
 * starts from identity (or, when it is not a candidate, the best solo),
 * then tries the others best solo score first (ties: candidate order),
 * keeping each one whose addition does not make fn's merged score worse
 * (greater_is_better says which way is better).  0 or fn's status. */
int kp_tta_auto(const int *cand, const double *solo, int n, int greater_is_better,
                kp_tta_score_fn fn, void *ctx, kp_tta_auto_out *out, char *err, size_t errlen);

#endif

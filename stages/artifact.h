/* artifact.h - the three artifacts that pass between built-in stages.
 *
 * All are safetensors files with metadata "kpipe.artifact" naming the kind.
 *
 * dataset.safetensors (preprocess; X may hold NaN after impute: none):
 *   X_train F32 [n_train, n_feat], X_test F32 [n_test, n_feat]
 *     (absent in an image dataset: n_feat is then 0)
 *   y F32 [n_train] (binary 0/1, multiclass index, regression value)
 *     or [n_train, n_labels] (multilabel 0/1)
 *   groups I64 [n_train] (only when the folds use a group column)
 *   train_ids.offsets I64 [n_train+1], train_ids.bytes U8 [total] (ids as
 *     strings, in file order; id i is bytes[offsets[i] .. offsets[i+1]])
 *   test_ids.offsets, test_ids.bytes likewise
 *   metadata: task, n_out, classes (JSON array of strings: class labels in
 *     index order, or the multilabel tag vocabulary), features (JSON array),
 *     id_column, target_columns (JSON array)
 *   image datasets (the images stage) add
 *   images_train U8|U16 [n_train, H, W, C], images_test likewise [n_test, H, W, C]
 *     (HWC samples of the decoded, resized PNGs, both of one dtype)
 *   metadata: image_size "WxH", channel_mean and channel_std (JSON arrays
 *     of C numbers: per-channel statistics of the train images, in sample units)
 *   segmentation datasets (task segmentation) have
 *   y F32 [n_train, H * W] (each mask at the images' size: 0/1, or the class)
 *   train_sizes I32 [n_train, 2], test_sizes I32 [n_test, 2] (each image's
 *     original width and height: submissions are written at that size)
 *   metadata: mask_size "CxHxW" (C map channels: 1 binary, else classes),
 *     classes ["mask"] (binary) or the C class names, rle_order (of the
 *     train RLE column, if masks came as RLE: "column" or "row")
 * folds.safetensors (folds):
 *   fold I32 [repeats, n_train]: fold number in [0, k) of each train row
 *   metadata: k, repeats, kind, seed, folds_hash (hex of the hash of the
 *     fold tensor's bytes, k and repeats)
 * preds.safetensors (train, stack):
 *   oof F32 [n_train, n_out] (out-of-fold predictions, averaged over repeats)
 *   test F32 [n_test, n_out] (averaged over folds and repeats)
 *   metadata: task, n_out, classes, metric, folds_hash, fold_scores (JSON
 *     array), cv_mean, cv_std, oof_score, model, stage, mask_size (segmentation:
 *     "CxHxW" of the maps), and optionally
 *     thresholds (JSON array, one per output, for multilabel tags)
 */
#ifndef KP_ARTIFACT_H
#define KP_ARTIFACT_H

#include <stdint.h>
#include <stddef.h>
#include "../models/model.h"
#include "../models/safetensors.h"

/* A list of strings stored as offsets + bytes; pointers borrowed from the file. */
typedef struct kp_strings {
    int64_t n;
    const int64_t *offsets;   /* n + 1 entries */
    const uint8_t *bytes;
} kp_strings;

/* Copies string i of s into buf (truncating, NUL-terminated); returns its full length. */
size_t kp_strings_get(const kp_strings *s, int64_t i, char *buf, size_t bufsize);

/* ---- dataset ---- */
typedef struct kp_dataset {
    kp_st *st;                 /* owned */
    kp_problem pb;
    int64_t n_train, n_test, n_feat;
    const float *X_train, *X_test, *y;   /* borrowed from st */
    const int64_t *groups;     /* or NULL */
    kp_strings train_ids, test_ids;
    int n_classes;             /* entries in classes */
    char **classes;            /* owned */
    int n_features;
    char **features;           /* owned */
    char *id_column;           /* owned */
    /* Image datasets: the train and test images (data borrowed from st; NULL
     * for a tabular dataset), whose mean and std point at channel_mean and
     * channel_std (owned, channels entries each, or NULL).  X_train and
     * X_test then point at an empty placeholder and n_feat is 0. */
    kp_images images_train, images_test;
    float *channel_mean, *channel_std;
    /* Segmentation datasets: each image's original width and height
     * ([n, 2], borrowed), for submissions at the competition's size. */
    const int32_t *train_sizes, *test_sizes;
} kp_dataset;

/* Opens and checks a dataset artifact (shapes agree with each other and the
 * metadata, ids offsets monotone and in range, image tensors against
 * image_size and the channel statistics); *out caller-owned. */
int kp_dataset_open(const char *path, kp_dataset **out, char *err, size_t errlen);

/* Closes a dataset; NULL is accepted. */
void kp_dataset_close(kp_dataset *d);

/* ---- folds ---- */
typedef struct kp_folds {
    kp_st *st;                 /* owned */
    int k, repeats;
    int64_t n;                 /* rows */
    const int32_t *fold;       /* [repeats * n], borrowed */
    char hash[33];             /* folds_hash */
} kp_folds;

/* Opens and checks a folds artifact (every value in [0, k)); *out caller-owned. */
int kp_folds_open(const char *path, kp_folds **out, char *err, size_t errlen);

/* Closes; NULL is accepted. */
void kp_folds_close(kp_folds *f);

/* Writes a folds artifact for fold[repeats * n] and computes its hash. */
int kp_folds_write(const char *path, const int32_t *fold, int64_t n, int k, int repeats,
                   const char *kind, uint64_t seed, char *err, size_t errlen);

/* ---- predictions ---- */
typedef struct kp_preds {
    kp_st *st;                 /* owned */
    kp_problem pb;
    int64_t n_train, n_test;
    const float *oof, *test;   /* borrowed */
    char folds_hash[33];
    double cv_mean, cv_std, oof_score;
    int n_folds;
    double *fold_scores;       /* owned, n_folds */
    float *thresholds;         /* owned, n_out entries, or NULL */
    float pp_threshold;        /* segmentation post-processing (metadata postproc, */
    int pp_min_size;           /* stages/postproc.h): 0.5 and 0 when absent */
    const char *metric, *model, *stage;  /* borrowed metadata, may be "" */
} kp_preds;

/* What a stage writes as its predictions. */
typedef struct kp_preds_out {
    kp_problem pb;
    int64_t n_train, n_test;
    const float *oof, *test;
    const char *folds_hash, *metric, *model, *stage;
    const char *classes_json;      /* JSON array text or NULL */
    const double *fold_scores; int n_folds;
    double oof_score;
    const float *thresholds;       /* n_out or NULL */
    const char *const *extra_meta; /* NULL, or {key, value, ..., NULL}: more metadata
                                      (e.g. a blend's "weights"), written as given */
} kp_preds_out;

/* Opens and checks a preds artifact; *out caller-owned. */
int kp_preds_open(const char *path, kp_preds **out, char *err, size_t errlen);

/* Closes; NULL is accepted. */
void kp_preds_close(kp_preds *p);

/* Writes a preds artifact atomically; cv_mean/cv_std computed from fold_scores. */
int kp_preds_write(const char *path, const kp_preds_out *o, char *err, size_t errlen);

#endif

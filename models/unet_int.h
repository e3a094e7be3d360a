/* unet_int.h - what the unet model's files share (unet.c, unet_arch.c,
 * unet_train.c, unet_tiles.c, unet_io.c). */
#ifndef KP_UNET_INT_H
#define KP_UNET_INT_H

#include <stdio.h>
#include "model.h"
#include "nn/net.h"
#include "nn/optim.h"
#include "nn/seg_loss.h"
#include "../lib/augment.h"

#define KP_UNET_MAX_CHANNELS 64
#define KP_UNET_MAX_DEPTH 7

/* The network's shape: what a checkpoint records to rebuild it. */
typedef struct kp_unet_arch {
    int depth;          /* poolings; depth + 1 encoder blocks, the last the bottleneck */
    int base;           /* channels of the first block; doubled at each level */
    int bilinear;       /* 1: upsample by bilinear + 3x3 conv; 0: transposed conv */
    int residual;       /* 1: encoder blocks are ResNet basic blocks */
} kp_unet_arch;

/* A fitted UNet and how to feed it. */
typedef struct kp_unet {
    kp_nn_net *net;                 /* compiled for tile x tile inputs (see unet.c) */
    kp_problem pb;
    kp_unet_arch arch;
    int c, h, w;                    /* the data set's images */
    int tile, overlap;              /* prediction tiles (tile == 0: whole images) */
    int net_h, net_w;               /* the net's input size */
    int max_batch;
    kp_nn_init init;
    float mean[KP_UNET_MAX_CHANNELS], std[KP_UNET_MAX_CHANNELS];   /* sample units */
} kp_unet;

/* How to train, from the params. */
typedef struct kp_unet_settings {
    int epochs, batch, patience, crop, freeze_epochs;
    kp_seg_loss loss;
    kp_optim_opts optim;
    kp_sched sched;
    kp_augment aug;
} kp_unet_settings;

/* Adds the UNet of arch for c_in-channel inputs with `classes` output maps
 * to net (just created; input sides multiples of 2^depth).  Tensor names are
 * those of bench/seg/torch_unet.py's module (docs/unet.md). */
int kp_unet_arch_build(kp_nn_net *net, const kp_unet_arch *arch, int classes, char *err,
                       size_t errlen);

/* Creates m->net for net_h x net_w inputs, compiled for m->max_batch on
 * threads (seed: initial weights); 0 or a status. */
int kp_unet_build(kp_unet *m, int threads, uint64_t seed, char *err, size_t errlen);

/* Frees a model; NULL is accepted. */
void kp_unet_free(void *model);

/* Writes image `row` of X normalised, CHW, into x (c x h x w floats). */
void kp_unet_load_image(const kp_unet *m, const kp_images *X, int64_t row, float *x);

/* Turns n maps of logits (mask_c x hw each) into probabilities in place. */
void kp_unet_activate(int n, int classes, size_t hw, float *z);

/* Predicts rows[0..n) into out (n * n_out maps, CHW, in the images' own
 * orientation): each image under D4 transform d4, cut into the net's tiles,
 * blended, and the map transformed back (unet_tiles.c). */
int kp_unet_predict_rows(const kp_unet *m, const kp_images *X, const int64_t *rows, int64_t n,
                         int d4, float *out, char *err, size_t errlen);

/* Trains m (built for the crop) on rows of X with masks y; keeps the epoch
 * with the best held-out Dice (unet_train.c).  frozen: 1 for each parameter
 * float not to be updated before s->freeze_epochs (or NULL). */
int kp_unet_train(kp_unet *m, const kp_unet_settings *s, const kp_images *X,
                  const int64_t *rows, int64_t n, const float *y, const uint8_t *frozen,
                  const kp_fit_opts *opts, char *err, size_t errlen);

/* Checkpoint I/O (unet_io.c). */
int kp_unet_save(const void *model, kp_stw *w, char *err, size_t errlen);
int kp_unet_load(const kp_st *st, const kp_problem *pb, void **model, char *err,
                 size_t errlen);

#endif

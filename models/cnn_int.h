/* cnn_int.h - what the cnn model's files share (cnn.c, cnn_train.c, cnn_io.c). */
#ifndef KP_CNN_INT_H
#define KP_CNN_INT_H

#include <stdio.h>
#include "model.h"
#include "nn/net.h"
#include "nn/optim.h"
#include "../lib/augment.h"

#define KP_CNN_MAX_BLOCKS 256
#define KP_CNN_MAX_CHANNELS 64

/* A fitted network and how to feed it. */
typedef struct kp_cnn {
    kp_nn_net *net;
    kp_problem pb;
    int c, h, w;                        /* input images */
    int max_batch;                      /* images per pass */
    kp_nn_init init;                    /* how a fit starts the weights */
    float mean[KP_CNN_MAX_CHANNELS], std[KP_CNN_MAX_CHANNELS];   /* sample units */
    int n_blocks;
    char *blocks[KP_CNN_MAX_BLOCKS];    /* owned: the arch, for the checkpoint */
} kp_cnn;

/* How to train, from the params. */
typedef struct kp_cnn_settings {
    const char *const *blocks;          /* borrowed from the params */
    int n_blocks;
    int epochs, batch, patience;
    kp_optim_opts optim;
    kp_sched sched;
    kp_augment aug;
} kp_cnn_settings;

/* Creates m's net from m->blocks for m->c x h x w images and m->pb, compiled
 * for m->max_batch on threads; 0 or a status. */
int kp_cnn_build(kp_cnn *m, int threads, uint64_t seed, char *err, size_t errlen);

/* Frees a model; NULL is accepted. */
void kp_cnn_free(void *model);

/* Writes rows[0..n) of X, normalised and in CHW order (after D4 transform
 * d4), into x (n images); tmp holds threads * c * h * w floats. */
void kp_cnn_load_batch(const kp_cnn *m, const kp_images *X, const int64_t *rows, int n,
                       int d4, float *x, float *tmp, int threads);

/* Turns n rows of the net's outputs into predictions in place (softmax,
 * sigmoid or identity for the task). */
void kp_cnn_activate(const kp_problem *pb, float *z, int n);

/* Trains m (built) on rows of X with targets y; keeps the best epoch. */
int kp_cnn_train(kp_cnn *m, const kp_cnn_settings *s, const kp_images *X,
                 const int64_t *rows, int64_t n, const float *y, const kp_fit_opts *opts,
                 char *err, size_t errlen);

/* Predicts rows[0..n) into out (n * n_out) under D4 transform d4. */
int kp_cnn_predict_rows(const kp_cnn *m, const kp_images *X, const int64_t *rows, int64_t n,
                        int d4, float *out, char *err, size_t errlen);

/* Checkpoint I/O (cnn_io.c). */
int kp_cnn_save(const void *model, kp_stw *w, char *err, size_t errlen);
int kp_cnn_load(const kp_st *st, const kp_problem *pb, void **model, char *err,
                size_t errlen);

#endif

/* mlp_int.h - the small neural-network core under the mlp model (private to models/).
 *
 * A net is a sequence of layers over row-major float32 batches (n rows x
 * width columns).  Kinds: dense (y = x W^T + b, W stored [out x in] as
 * torch.nn.Linear), batch norm (as torch.nn.BatchNorm1d), ReLU and inverted
 * dropout; each kind is one row of a table of forward/backward functions, so
 * issue 4's convolution layers are new rows.  A net owns its parameters (one
 * flat array: every dense W then b, every batch norm gamma then beta) and its
 * buffers (batch norm running mean then var); a kp_mlpnn_work owns what one
 * batch needs (activations, caches, gradients), so several threads can run
 * one net.  A head turns the last layer's outputs (logits) into predictions
 * and, in training, into a loss and dL/dlogits.  All GEMMs are cblas_sgemm;
 * the caller fixes OpenBLAS's thread count (see mlp.c).
 */
#ifndef KP_MLP_INT_H
#define KP_MLP_INT_H

#include <stddef.h>
#include <stdint.h>
#include "../lib/rng.h"
#include "model.h"

#define KP_MLPNN_MAX_HIDDEN 64        /* hidden layers of an mlp at most */
#define KP_MLPNN_MAX_LAYERS (4 * KP_MLPNN_MAX_HIDDEN + 1)
#define KP_MLPNN_MAX_WIDTH (1 << 20)  /* units in one layer at most */

typedef enum kp_mlpnn_kind {
    KP_MLPNN_DENSE, KP_MLPNN_BATCHNORM, KP_MLPNN_RELU, KP_MLPNN_DROPOUT,
    KP_MLPNN_KIND_COUNT
} kp_mlpnn_kind;

typedef enum kp_mlpnn_head {
    KP_MLPNN_SIGMOID,    /* binary / multilabel: binary cross-entropy summed over outputs */
    KP_MLPNN_SOFTMAX,    /* multiclass: cross-entropy; y holds the class index */
    KP_MLPNN_IDENTITY    /* regression: half squared error, averaged over outputs */
} kp_mlpnn_head;

typedef enum kp_mlpnn_mode {
    KP_MLPNN_EVAL,         /* batch norm uses running statistics, dropout is the identity */
    KP_MLPNN_TRAIN,        /* batch statistics (running ones updated), fresh dropout masks */
    KP_MLPNN_TRAIN_REPLAY  /* as TRAIN but reuses the masks and leaves running stats (tests) */
} kp_mlpnn_mode;

typedef enum kp_mlpnn_init { KP_MLPNN_GLOROT, KP_MLPNN_HE } kp_mlpnn_init;

typedef struct kp_mlpnn_layer {
    kp_mlpnn_kind kind;
    int in, out;         /* widths; equal except for dense */
    int tag;             /* checkpoint index: layers.TAG.* (dense), bn.TAG.* (batch norm) */
    size_t p_off, n_p;   /* parameters in net->params (dense: W, b; batch norm: gamma, beta) */
    size_t b_off, n_b;   /* buffers in net->buffers (batch norm: running mean, running var) */
    float rate;          /* dropout rate */
} kp_mlpnn_layer;

/* One layer of a net to build: out is the width of a dense layer (other
 * kinds keep their input's width); rate is dropout's. */
typedef struct kp_mlpnn_spec {
    kp_mlpnn_kind kind;
    int out, tag;
    float rate;
} kp_mlpnn_spec;

typedef struct kp_mlpnn_net {
    int n_layers, in, out;
    kp_mlpnn_layer *layers;
    float *params, *buffers;
    size_t n_params, n_buffers;
    float bn_eps, bn_momentum;   /* 1e-5 and 0.1 as torch */
} kp_mlpnn_net;

typedef struct kp_mlpnn_work {
    int max_batch, n_layers;
    int threads;       /* for the chunks of large GEMMs (1 after create) */
    float **act;       /* act[l]: output of layer l (max_batch x out) */
    float **aux;       /* batch norm: x_hat then 1/std; dropout: mask; else NULL */
    float *grads;      /* n_params, laid out as net->params */
    float *d0, *d1;    /* backward scratch, max_batch x widest layer */
    double *acc;       /* column sums, 2 x widest layer */
    kp_rng rng;        /* dropout masks */
} kp_mlpnn_work;

/* ---- nets (mlp_nn.c) ---- */

/* Builds the n layers of spec on `in` inputs; parameters zeroed, running var
 * 1.  *net caller-owned (kp_mlpnn_free); 0 or KP_ERR_ARG / KP_ERR_NOMEM. */
int kp_mlpnn_create(int in, const kp_mlpnn_spec *spec, int n, kp_mlpnn_net **net, char *err,
                 size_t errlen);

/* Builds dense(+batch norm)+ReLU(+dropout) per hidden size, then a dense output
 * layer; parameters zeroed, running var 1.  *out caller-owned (kp_mlpnn_free). */
int kp_mlpnn_mlp_create(int in, const int *hidden, int n_hidden, int out, int batch_norm,
                     float dropout, kp_mlpnn_net **net, char *err, size_t errlen);

/* Frees a net; NULL is accepted. */
void kp_mlpnn_free(kp_mlpnn_net *net);

/* Draws dense weights and biases (Glorot-uniform as scikit-learn, or He-uniform
 * with zero bias); batch norm gamma 1, beta 0, running mean 0, var 1. */
void kp_mlpnn_init_params(kp_mlpnn_net *net, kp_mlpnn_init init, kp_rng *rng);

/* Returns buffers for batches of up to max_batch rows, dropout masks drawn
 * from seed; NULL on allocation failure.  Caller frees (kp_mlpnn_work_free). */
kp_mlpnn_work *kp_mlpnn_work_create(const kp_mlpnn_net *net, int max_batch, uint64_t seed);

/* Frees a work area; NULL is accepted. */
void kp_mlpnn_work_free(kp_mlpnn_work *w);

/* Runs the n rows x (borrowed) through the net; returns the logits
 * (n x net->out, inside w). */
const float *kp_mlpnn_forward(kp_mlpnn_net *net, kp_mlpnn_work *w, const float *x, int n,
                           kp_mlpnn_mode mode);

/* kp_mlpnn_forward in KP_MLPNN_EVAL mode, which never writes to the net. */
const float *kp_mlpnn_predict(const kp_mlpnn_net *net, kp_mlpnn_work *w, const float *x, int n);

/* Back-propagates dlogits (n x net->out) through the last forward pass of the
 * same x, writing every parameter's gradient to w->grads (overwritten) and,
 * if dx is non-NULL, dL/dx (n x net->in) to dx. */
void kp_mlpnn_backward(const kp_mlpnn_net *net, kp_mlpnn_work *w, const float *x, int n,
                    const float *dlogits, float *dx);

/* Returns the sum of squares of every dense weight (not biases, not batch norm). */
double kp_mlpnn_weight_sq(const kp_mlpnn_net *net);

/* Adds coef * W to the gradient of every dense weight. */
void kp_mlpnn_add_decay(const kp_mlpnn_net *net, float *grads, float coef);

/* ---- heads (mlp_nn.c) ---- */

/* Returns the summed loss of n rows of logits z (n x k) against y (n x k
 * targets, or n class indices for softmax); if delta is non-NULL writes
 * dL/dz of the mean loss (the sum / n) there. */
double kp_mlpnn_head_loss(kp_mlpnn_head head, const float *z, const float *y, int n, int k,
                       float *delta);

/* Writes the predictions (probabilities or values) of n rows of logits. */
void kp_mlpnn_head_apply(kp_mlpnn_head head, const float *z, int n, int k, float *out);

/* ---- optimisers (mlp_nn.c) ---- */

typedef enum kp_mlpnn_solver { KP_MLPNN_ADAM, KP_MLPNN_SGD } kp_mlpnn_solver;

typedef struct kp_mlpnn_optim {
    kp_mlpnn_solver solver;
    double lr;                    /* current learning rate */
    double momentum;              /* sgd */
    int nesterov;                 /* sgd */
    double beta1, beta2, eps;     /* adam */
    int64_t t;                    /* adam steps taken */
    float *m, *v;                 /* adam moments, or sgd velocity in m */
    size_t n;
} kp_mlpnn_optim;

/* Allocates the optimiser's state for n parameters (zeroed); 0 or KP_ERR_NOMEM. */
int kp_mlpnn_optim_init(kp_mlpnn_optim *o, size_t n);

/* Frees the state (the struct itself is the caller's). */
void kp_mlpnn_optim_release(kp_mlpnn_optim *o);

/* One update of params from grads, as scikit-learn's AdamOptimizer / SGDOptimizer. */
void kp_mlpnn_optim_step(kp_mlpnn_optim *o, float *params, const float *grads);

/* ---- checkpoint (mlp_io.c) ---- */

/* A fitted mlp: the net and its output head. */
typedef struct kp_mlp {
    kp_mlpnn_net *net;
    kp_mlpnn_head head;
} kp_mlp;

/* Frees a kp_mlp; NULL is accepted (ops->free). */
void kp_mlp_free(void *model);

/* ops->save and ops->load of mlp. */
int kp_mlp_save(const void *model, kp_stw *w, char *err, size_t errlen);
int kp_mlp_load(const kp_st *st, const kp_problem *pb, void **model, char *err, size_t errlen);

/* Returns the head of a task. */
kp_mlpnn_head kp_mlp_head_of(kp_task_kind task);

#endif

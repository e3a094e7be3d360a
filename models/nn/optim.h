/* optim.h - optimisers and learning-rate schedules, with PyTorch's semantics.
 *
 * A network keeps all its parameters in one float array and their gradients
 * in another of the same length, so an optimiser steps over one array:
 *   sgd    g += wd w; buf = momentum buf + g (buf = g on the first step);
 *          g = nesterov ? g + momentum buf : buf; w -= lr g
 *   adam   g += wd w; m, v moments; w -= lr m_hat / (sqrt(v_hat) + eps)
 *   adamw  w -= lr wd w (decoupled), then adam without wd
 * Weight decay applies only where decay[i] != 0 (the lead's net sets it for
 * conv and linear weights, not biases or batch norm; decay NULL = all).
 * Schedules give the learning rate of a step from the epoch/step counters:
 *   constant, step (lr gamma^(epoch / step_epochs)), cosine (from lr to
 *   min_lr over all steps, per step), onecycle (PyTorch's OneCycleLR with
 *   cosine annealing: pct_start, div_factor, final_div_factor).
 */
#ifndef KP_NN_OPTIM_H
#define KP_NN_OPTIM_H

#include <stddef.h>
#include <stdint.h>
#include "../../lib/params.h"

typedef enum kp_optim_kind { KP_OPTIM_SGD, KP_OPTIM_ADAM, KP_OPTIM_ADAMW } kp_optim_kind;

typedef struct kp_optim_opts {
    kp_optim_kind kind;
    float momentum;        /* sgd; 0 = plain */
    int nesterov;          /* sgd: 1 = Nesterov momentum (needs momentum > 0) */
    float beta1, beta2, eps;   /* adam/adamw: 0.9, 0.999, 1e-8 */
    float weight_decay;
} kp_optim_opts;

typedef struct kp_optim kp_optim;

/* Returns "sgd"/"adam"/"adamw" parsed into *out; 0 or KP_ERR_ARG. */
int kp_optim_parse(const char *name, kp_optim_kind *out);

/* Creates the state for n parameters (moments zeroed); *out caller-owned
 * (kp_optim_free); KP_ERR_ARG on bad options (message), KP_ERR_NOMEM. */
int kp_optim_create(const kp_optim_opts *o, size_t n, kp_optim **out, char *err,
                    size_t errlen);

/* Frees; NULL is accepted. */
void kp_optim_free(kp_optim *o);

/* One step at learning rate lr: updates w[n] from g[n] (decay may be NULL). */
void kp_optim_step(kp_optim *o, float lr, float *w, const float *g, const uint8_t *decay);

typedef enum kp_sched_kind {
    KP_SCHED_CONSTANT, KP_SCHED_STEP, KP_SCHED_COSINE, KP_SCHED_ONECYCLE
} kp_sched_kind;

typedef struct kp_sched {
    kp_sched_kind kind;
    double lr;                 /* base (constant/step/cosine) or maximum (onecycle) */
    int step_epochs;           /* step: decay every step_epochs epochs */
    double gamma;              /* step: factor */
    double min_lr;             /* cosine: final lr */
    double pct_start, div_factor, final_div_factor;   /* onecycle: 0.3, 25, 1e4 */
} kp_sched;

/* Returns "constant"/"step"/"cosine"/"onecycle" parsed into *out; 0 or KP_ERR_ARG. */
int kp_sched_parse(const char *name, kp_sched_kind *out);

/* The learning rate of step `step` (0-based, over all epochs) when an epoch
 * has steps_per_epoch steps and training runs `epochs` epochs. */
double kp_sched_lr(const kp_sched *s, int64_t step, int64_t steps_per_epoch, int epochs);

/* The keyspec entries kp_optim_from_params reads, for a network model's
 * params table (cnn, unet). */
#define KP_OPTIM_KEYS                                                                          \
    {"optimizer", KP_PT_ENUM, "adam", "sgd|adam|adamw", 0, 0, "sgd (momentum), adam or adamw"}, \
    {"lr", KP_PT_FLOAT, "1e-3", NULL, 1e-12, 1e3, "learning rate (the maximum for onecycle)"},  \
    {"momentum", KP_PT_FLOAT, "0.9", NULL, 0, 1, "sgd momentum"},                               \
    {"nesterov", KP_PT_BOOL, "false", NULL, 0, 0, "sgd: Nesterov momentum"},                    \
    {"weight_decay", KP_PT_FLOAT, "0", NULL, 0, 10,                                             \
     "L2 on conv and dense weights (decoupled for adamw)"},                                    \
    {"schedule", KP_PT_ENUM, "constant", "constant|step|cosine|onecycle", 0, 0,                \
     "learning-rate schedule over the epochs"},                                                \
    {"step_epochs", KP_PT_INT, "10", NULL, 1, 100000, "step schedule: epochs between decays"},  \
    {"gamma", KP_PT_FLOAT, "0.1", NULL, 0, 1, "step schedule: decay factor"}

/* Reads a network model's optimiser and schedule keys (optimizer, lr,
 * momentum, nesterov, weight_decay, schedule, step_epochs, gamma; PyTorch's
 * Adam betas and eps, OneCycleLR's defaults) from validated params.
 * 0 or KP_ERR_CONFIG with a message. */
int kp_optim_from_params(const kp_params *p, kp_optim_opts *o, kp_sched *s, char *err,
                         size_t errlen);

#endif

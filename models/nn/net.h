/* net.h - a network: a graph of layers over NCHW float tensors.
 *
 * A net is built node by node (node 0 is the input); each builder takes the
 * ids of its input nodes and returns the new node's id, so residual blocks
 * (add) and skip connections (concat) are as easy as chains.  Nodes are
 * kept in the order built, which is a topological order: forward runs them
 * in it, backward in reverse, adding the gradients of a node read by
 * several others.  kp_nn_compile allocates, once, every parameter (one
 * array, and one of gradients, for the optimiser), every activation and
 * gradient buffer for up to max_batch images, and the kernels' workspaces;
 * no pass allocates afterwards.  A ReLU whose input is read by no one else
 * runs in place, and after a batch norm inside its passes (one sweep of memory).
 *
 * Parameters carry PyTorch's state_dict names ("3.weight", "4.running_mean",
 * "7.conv1.weight"): node names are given by the builder, and a checkpoint
 * is a safetensors file that torch.nn.Module.load_state_dict accepts after
 * safetensors.torch.load_file (batch norms carry num_batches_tracked).
 */
#ifndef KP_NN_NET_H
#define KP_NN_NET_H

#include <stddef.h>
#include <stdint.h>
#include "kernels.h"
#include "../safetensors.h"

typedef struct kp_nn_net kp_nn_net;

typedef enum kp_nn_init {
    KP_NN_INIT_TORCH,   /* PyTorch's defaults: weights and biases uniform in +-1/sqrt(fan_in) */
    KP_NN_INIT_HE       /* He: weights uniform in +-sqrt(6/fan_in), biases zero */
} kp_nn_init;

/* Creates a net whose input is c x h x w images; *out caller-owned (kp_nn_free). */
int kp_nn_create(int c, int h, int w, kp_nn_net **out, char *err, size_t errlen);

/* Frees the net; NULL is accepted. */
void kp_nn_free(kp_nn_net *net);

/* ---- building (before kp_nn_compile); each returns the new node id or a
 * negative status with a message.  name: the PyTorch module path of the
 * layer's parameters (copied), e.g. "3" or "7.conv1". ---- */
int kp_nn_conv(kp_nn_net *net, int in, int c_out, int k, int stride, int pad, int dilation,
               int bias, const char *name, char *err, size_t errlen);
int kp_nn_batchnorm(kp_nn_net *net, int in, const char *name, char *err, size_t errlen);
/* slope 0 is ReLU. */
int kp_nn_leaky(kp_nn_net *net, int in, float slope, char *err, size_t errlen);
int kp_nn_pool(kp_nn_net *net, int in, kp_pool_kind kind, int k, int stride, int pad,
               char *err, size_t errlen);
int kp_nn_gap(kp_nn_net *net, int in, char *err, size_t errlen);
/* Flattens its input (C x H x W features) as PyTorch's nn.Flatten does. */
int kp_nn_linear(kp_nn_net *net, int in, int out, const char *name, char *err, size_t errlen);
int kp_nn_dropout(kp_nn_net *net, int in, float p, char *err, size_t errlen);
int kp_nn_add(kp_nn_net *net, int a, int b, char *err, size_t errlen);
int kp_nn_concat(kp_nn_net *net, int a, int b, char *err, size_t errlen);
/* ConvTranspose2d (padding 0): params "name.weight" [c_in, c_out, k, k] and
 * "name.bias" [c_out] (if bias); out = (in - 1) stride + k. */
int kp_nn_upconv(kp_nn_net *net, int in, int c_out, int k, int stride, int bias,
                 const char *name, char *err, size_t errlen);
/* nn.Upsample(scale_factor=factor, mode='bilinear', align_corners=False); no params. */
int kp_nn_upsample(kp_nn_net *net, int in, int factor, char *err, size_t errlen);

/* Returns the shape of node id's output per image. */
void kp_nn_shape(const kp_nn_net *net, int id, int *c, int *h, int *w);

/* Chooses how kp_nn_compile initialises conv and linear layers (default torch). */
void kp_nn_set_init(kp_nn_net *net, kp_nn_init init);

/* Allocates everything for batches of up to max_batch images on threads
 * threads; the last node built is the output.  Parameters are initialised
 * from seed as kp_nn_set_init chose (BN weight 1, bias 0). */
int kp_nn_compile(kp_nn_net *net, int max_batch, int threads, uint64_t seed, char *err,
                  size_t errlen);

/* ---- passes (after compile) ---- */

/* Runs x (n x C x H x W, n <= max_batch) forward; train: batch statistics
 * and dropout masks drawn from seed.  Returns the output (n x outputs),
 * borrowed until the next pass. */
const float *kp_nn_forward(kp_nn_net *net, const float *x, int n, int train, uint64_t seed);

/* Zeroes the gradients and back-propagates dz (n x outputs) through the
 * last training forward. */
void kp_nn_backward(kp_nn_net *net, int n, const float *dz);

/* Returns the thread count the net was compiled for. */
int kp_nn_threads(const kp_nn_net *net);

/* Returns the number of outputs per image. */
int kp_nn_outputs(const kp_nn_net *net);

/* The parameters as one array of *n floats, their gradients, and the weight
 * decay mask (1 for conv, upconv and linear weights); borrowed. */
float *kp_nn_params(kp_nn_net *net, size_t *n);
const float *kp_nn_grads(const kp_nn_net *net);
const uint8_t *kp_nn_decay_mask(const kp_nn_net *net);

/* Copies parameters and batch norm statistics out to / in from a snapshot
 * of kp_nn_state_size floats (best-epoch checkpoints). */
size_t kp_nn_state_size(const kp_nn_net *net);
void kp_nn_state_get(const kp_nn_net *net, float *snapshot);
void kp_nn_state_set(kp_nn_net *net, const float *snapshot);

/* Adds every parameter and statistic under its PyTorch name to w. */
int kp_nn_save(const kp_nn_net *net, kp_stw *w, char *err, size_t errlen);

/* Loads every parameter and statistic from st by name; shapes must match.
 * prefix: prepended to the net's names when looking up (NULL = none). */
int kp_nn_load(kp_nn_net *net, const kp_st *st, const char *prefix, char *err,
               size_t errlen);

/* Loads the parameters and statistics whose names start with a mapped prefix:
 * map[i] is "NETPREFIX=FILEPREFIX" (e.g. "enc.0=features.0"; "enc=" strips);
 * a tensor NETPREFIX.rest is read from FILEPREFIX.rest in st (shapes must match,
 * a missing one is an error naming both names); others are left as they are.
 * Prefixes match whole name components ("enc.1" matches "enc.1.0.weight", not
 * "enc.10.weight"); the longest matching NETPREFIX wins; an entry that matches
 * no tensor of the net is an error.  Batch norms' num_batches_tracked is read
 * when present (not counted).  Everything is checked before anything is copied:
 * on error the net is untouched.  *loaded gets the number of tensors loaded;
 * 0 or a status. */
int kp_nn_load_mapped(kp_nn_net *net, const kp_st *st, const char *const *map, int n_map,
                      int *loaded, char *err, size_t errlen);

/* Sets mask[j] = 1 for every parameter float (of kp_nn_params) whose tensor name
 * starts with prefix (whole components; "" matches all; others untouched);
 * returns how many were set. */
size_t kp_nn_prefix_mask(const kp_nn_net *net, const char *prefix, uint8_t *mask);

#endif

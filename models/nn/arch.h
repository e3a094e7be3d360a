/* arch.h - network architectures declared in YAML as a list of blocks.
 *
 *   arch: [cbr 32, cbr 32, maxpool, cbr 64, cbr 64, maxpool, dense 128, dropout 0.3]
 *
 * Each block is "NAME [N] [key=value ...]":
 *   cbr C [k=3 stride=1 pad=k/2 dilation=1]   conv (no bias) + batch norm + ReLU
 *   conv C [k=3 stride=1 pad=k/2 dilation=1 bias=1]   a plain convolution
 *   res C [stride=1]     ResNet basic block: cbr, conv-bn, + shortcut (1x1
 *                        conv + bn when C or stride change), ReLU
 *   maxpool [K=2] [stride=K pad=0], avgpool [K=2] [stride=K pad=0]
 *   gap                  global average pooling (then flat)
 *   dense N              linear + ReLU (flattens a spatial input)
 *   dropout P, relu, leaky [SLOPE=0.01], bn
 * A final linear layer to the task's outputs is always added.  Parameters
 * are named as the equivalent torch.nn.Sequential would name them: one
 * index per module (Conv2d, BatchNorm2d, ReLU, MaxPool2d, Flatten, ...),
 * a residual block one module with .conv1 .bn1 .conv2 .bn2 .down.0 .down.1
 * (docs/cnn.md gives the PyTorch code).
 */
#ifndef KP_NN_ARCH_H
#define KP_NN_ARCH_H

#include <stddef.h>
#include "net.h"

/* Checks the syntax of blocks[0..n) (no shapes); errors read
 * "WHERE[i]: problem" (where: e.g. "stages.cnn.params.arch"). */
int kp_nn_arch_check(const char *const *blocks, int n, const char *where, char *err,
                     size_t errlen);

/* Adds the blocks and a final linear of n_out units to net (just created);
 * errors (syntax, or a shape that does not fit, e.g. pooling a 1 x 1 map)
 * name the block as above. */
int kp_nn_arch_build(kp_nn_net *net, const char *const *blocks, int n, int n_out,
                     const char *where, char *err, size_t errlen);

#endif

/* unet_arch.c - the UNet graph, named as PyTorch names its module.
 *
 * The module (bench/seg/torch_unet.py, docs/unet.md):
 *   enc.L   L = 0..depth: Sequential(conv3x3 no bias, bn, relu, conv3x3, bn, relu)
 *           -> enc.L.0, enc.L.1, enc.L.3, enc.L.4; residual: a basic block
 *           enc.L.conv1 .bn1 .conv2 .bn2 (+ .down.0 .down.1 when channels change)
 *           between them MaxPool2d(2); enc.depth is the bottleneck
 *   up.i    i = 0..depth-1, deepest first: ConvTranspose2d(c, c/2, 2, stride 2)
 *           or Sequential(Upsample(2, bilinear), Conv2d(c, c/2, 3, padding 1)) -> up.i.1
 *   dec.i   Sequential as enc on cat([up.i(x), skip]) (2 c/2 -> c/2 channels)
 *   head    Conv2d(base, classes, 1) with bias
 */
#include <stdio.h>
#include "../lib/err.h"
#include "unet_int.h"

/* conv3x3 (no bias) + bn + relu named PREFIX.{ci, ci+1}; returns the node. */
static int conv_bn_relu(kp_nn_net *net, int in, int c, const char *prefix, int ci,
                        char *err, size_t errlen)
{
    char conv[64], bn[64];
    snprintf(conv, sizeof conv, "%s.%d", prefix, ci);
    snprintf(bn, sizeof bn, "%s.%d", prefix, ci + 1);
    int x = kp_nn_conv(net, in, c, 3, 1, 1, 1, 0, conv, err, errlen);
    if (x >= 0)
        x = kp_nn_batchnorm(net, x, bn, err, errlen);
    return x >= 0 ? kp_nn_leaky(net, x, 0, err, errlen) : x;
}

/* The plain block: two conv-bn-relu. */
static int plain_block(kp_nn_net *net, int in, int c, const char *prefix, char *err,
                       size_t errlen)
{
    int x = conv_bn_relu(net, in, c, prefix, 0, err, errlen);
    return x >= 0 ? conv_bn_relu(net, x, c, prefix, 3, err, errlen) : x;
}

/* conv (k, no bias) + bn named PREFIX.CONV and PREFIX.BN. */
static int conv_bn(kp_nn_net *net, int in, int c, int k, const char *prefix,
                   const char *conv_name, const char *bn_name, char *err, size_t errlen)
{
    char conv[64], bn[64];
    snprintf(conv, sizeof conv, "%s.%s", prefix, conv_name);
    snprintf(bn, sizeof bn, "%s.%s", prefix, bn_name);
    int x = kp_nn_conv(net, in, c, k, 1, k / 2, 1, 0, conv, err, errlen);
    return x >= 0 ? kp_nn_batchnorm(net, x, bn, err, errlen) : x;
}

/* A ResNet basic block at stride 1. */
static int residual_block(kp_nn_net *net, int in, int c, const char *prefix, char *err,
                          size_t errlen)
{
    int c_in, h, w, x, s = in;
    kp_nn_shape(net, in, &c_in, &h, &w);
    if ((x = conv_bn(net, in, c, 3, prefix, "conv1", "bn1", err, errlen)) < 0 ||
        (x = kp_nn_leaky(net, x, 0, err, errlen)) < 0 ||
        (x = conv_bn(net, x, c, 3, prefix, "conv2", "bn2", err, errlen)) < 0)
        return x;
    if (c_in != c && (s = conv_bn(net, in, c, 1, prefix, "down.0", "down.1", err, errlen)) < 0)
        return s;
    if ((x = kp_nn_add(net, x, s, err, errlen)) < 0)
        return x;
    return kp_nn_leaky(net, x, 0, err, errlen);
}

/* Upsamples x to half its channels: up.i. */
static int upsample(kp_nn_net *net, int x, int c, int bilinear, int i, char *err, size_t errlen)
{
    char name[64];
    if (!bilinear) {
        snprintf(name, sizeof name, "up.%d", i);
        return kp_nn_upconv(net, x, c, 2, 2, 1, name, err, errlen);
    }
    snprintf(name, sizeof name, "up.%d.1", i);
    x = kp_nn_upsample(net, x, 2, err, errlen);
    return x >= 0 ? kp_nn_conv(net, x, c, 3, 1, 1, 1, 1, name, err, errlen) : x;
}

int kp_unet_arch_build(kp_nn_net *net, const kp_unet_arch *arch, int classes, char *err,
                       size_t errlen)
{
    int skips[KP_UNET_MAX_DEPTH + 1], x = 0, c = arch->base;
    char prefix[32];
    if (arch->depth < 1 || arch->depth > KP_UNET_MAX_DEPTH || arch->base < 1)
        return kp_errf(err, errlen, KP_ERR_ARG, "unet depth %d, base %d: need depth 1..%d and "
                       "base >= 1", arch->depth, arch->base, KP_UNET_MAX_DEPTH);
    for (int l = 0; l <= arch->depth; l++, c *= 2) {
        if (l > 0 && (x = kp_nn_pool(net, x, KP_POOL_MAX, 2, 2, 0, err, errlen)) < 0)
            return x;
        snprintf(prefix, sizeof prefix, "enc.%d", l);
        x = arch->residual ? residual_block(net, x, c, prefix, err, errlen)
                           : plain_block(net, x, c, prefix, err, errlen);
        if (x < 0)
            return x;
        skips[l] = x;
    }
    c /= 2;
    for (int i = 0; i < arch->depth; i++) {
        c /= 2;
        snprintf(prefix, sizeof prefix, "dec.%d", i);
        if ((x = upsample(net, x, c, arch->bilinear, i, err, errlen)) < 0 ||
            (x = kp_nn_concat(net, x, skips[arch->depth - 1 - i], err, errlen)) < 0 ||
            (x = plain_block(net, x, c, prefix, err, errlen)) < 0)
            return x;
    }
    return kp_nn_conv(net, x, classes, 1, 1, 0, 1, 1, "head", err, errlen);
}

/* arch.c - building a network from a list of block strings (see arch.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "arch.h"
#include "../../lib/err.h"
#include "../../lib/params.h"

#define MAX_KEYS 6

/* One parsed block: its kind, its leading number, its key=value options. */
typedef struct block {
    int kind;
    double arg;
    int has_arg;
    int n_keys;
    char key[MAX_KEYS][16];
    double val[MAX_KEYS];
} block;

enum { B_CBR, B_CONV, B_RES, B_MAXPOOL, B_AVGPOOL, B_GAP, B_DENSE, B_DROPOUT, B_RELU, B_LEAKY,
       B_BN, B_COUNT };

static const struct {
    const char *name;
    int arg;               /* 1: N required, 0: optional, -1: none */
    const char *keys;      /* allowed keys, space-separated */
} kinds[B_COUNT] = {
    [B_CBR] = {"cbr", 1, "k stride pad dilation"},
    [B_CONV] = {"conv", 1, "k stride pad dilation bias"},
    [B_RES] = {"res", 1, "stride"},
    [B_MAXPOOL] = {"maxpool", 0, "stride pad"},
    [B_AVGPOOL] = {"avgpool", 0, "stride pad"},
    [B_GAP] = {"gap", -1, ""},
    [B_DENSE] = {"dense", 1, ""},
    [B_DROPOUT] = {"dropout", 1, ""},
    [B_RELU] = {"relu", -1, ""},
    [B_LEAKY] = {"leaky", 0, ""},
    [B_BN] = {"bn", -1, ""},
};

/* Returns 1 if key is a whole word of the space-separated list. */
static int key_allowed(const char *list, const char *key)
{
    size_t n = strlen(key);
    for (const char *p = list; (p = strstr(p, key)); p += n)
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
            return 1;
    return 0;
}

/* Parses a number token fully; 0 or -1. */
static int parse_num(const char *s, double *out)
{
    char *end;
    *out = strtod(s, &end);
    return end != s && *end == '\0' ? 0 : -1;
}

/* Parses the kind word of a block, with a suggestion when unknown. */
static int parse_kind(const char *word, block *b, const char *where, int i, char *err,
                      size_t errlen)
{
    const char *names[B_COUNT];
    for (int k = 0; k < B_COUNT; k++) {
        names[k] = kinds[k].name;
        if (strcmp(word, kinds[k].name) == 0) {
            b->kind = k;
            return 0;
        }
    }
    const char *s = kp_suggest(word, names, B_COUNT);
    return kp_errf(err, errlen, KP_ERR_CONFIG, "%s[%d]: unknown block '%s'%s%s%s", where, i,
                   word, s ? " (did you mean '" : "", s ? s : "", s ? "'?)" : "");
}

/* Parses "key=value" into b. */
static int parse_key(char *tok, block *b, const char *where, int i, char *err, size_t errlen)
{
    char *eq = strchr(tok, '=');
    const char *allowed = kinds[b->kind].keys;
    if (!eq)
        return kp_errf(err, errlen, KP_ERR_CONFIG, "%s[%d]: '%s' is not KEY=VALUE", where, i,
                       tok);
    *eq = '\0';
    if (!key_allowed(allowed, tok))
        return kp_errf(err, errlen, KP_ERR_CONFIG, "%s[%d]: %s takes no key '%s'%s%s", where,
                       i, kinds[b->kind].name, tok, *allowed ? "; it takes: " : "", allowed);
    if (b->n_keys == MAX_KEYS || strlen(tok) >= sizeof b->key[0] ||
        parse_num(eq + 1, &b->val[b->n_keys]) < 0)
        return kp_errf(err, errlen, KP_ERR_CONFIG, "%s[%d]: %s=%s is not a number", where, i,
                       tok, eq + 1);
    strcpy(b->key[b->n_keys++], tok);
    return 0;
}

/* Parses block string s (the i-th of where) into b. */
static int parse_block(const char *s, block *b, const char *where, int i, char *err,
                       size_t errlen)
{
    char buf[256];
    *b = (block){0};
    if (strlen(s) >= sizeof buf)
        return kp_errf(err, errlen, KP_ERR_CONFIG, "%s[%d]: block too long", where, i);
    strcpy(buf, s);
    char *save = NULL, *tok = strtok_r(buf, " \t", &save);
    if (!tok)
        return kp_errf(err, errlen, KP_ERR_CONFIG, "%s[%d]: empty block", where, i);
    int rc = parse_kind(tok, b, where, i, err, errlen);
    while (rc == 0 && (tok = strtok_r(NULL, " \t", &save))) {
        if (!strchr(tok, '=') && !b->has_arg && b->n_keys == 0 && kinds[b->kind].arg >= 0) {
            if (parse_num(tok, &b->arg) < 0)
                return kp_errf(err, errlen, KP_ERR_CONFIG, "%s[%d]: '%s' is not a number",
                               where, i, tok);
            b->has_arg = 1;
        } else
            rc = parse_key(tok, b, where, i, err, errlen);
    }
    if (rc == 0 && kinds[b->kind].arg == 1 && !b->has_arg)
        rc = kp_errf(err, errlen, KP_ERR_CONFIG, "%s[%d]: %s needs a size, e.g. '%s 32'", where,
                     i, kinds[b->kind].name, kinds[b->kind].name);
    return rc;
}

/* Returns option key of b, or def. */
static double opt(const block *b, const char *key, double def)
{
    for (int k = 0; k < b->n_keys; k++)
        if (strcmp(b->key[k], key) == 0)
            return b->val[k];
    return def;
}

int kp_nn_arch_check(const char *const *blocks, int n, const char *where, char *err,
                     size_t errlen)
{
    block b;
    for (int i = 0; i < n; i++) {
        int rc = parse_block(blocks[i], &b, where, i, err, errlen);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- building ---- */

/* The state of a build: the net, the current node, the next module index. */
typedef struct builder {
    kp_nn_net *net;
    int cur, module, flat;
    char *err;
    size_t errlen;
} builder;

/* Returns the name of module index m with suffix (e.g. "7.conv1"). */
static const char *mname(char *buf, size_t n, int m, const char *suffix)
{
    snprintf(buf, n, "%d%s%s", m, suffix ? "." : "", suffix ? suffix : "");
    return buf;
}

/* conv (+ bn + relu when cbr); updates b->cur. */
static int build_conv(builder *bd, int c, int k, int stride, int pad, int dil, int bias,
                      int with_bn_relu, const char *sub_conv, const char *sub_bn, int module)
{
    char name[64];
    int id = kp_nn_conv(bd->net, bd->cur, c, k, stride, pad, dil, bias,
                        mname(name, sizeof name, module, sub_conv), bd->err, bd->errlen);
    if (id >= 0 && with_bn_relu)
        id = kp_nn_batchnorm(bd->net, id, mname(name, sizeof name, sub_bn ? module : module + 1,
                                                sub_bn), bd->err, bd->errlen);
    if (id >= 0 && with_bn_relu == 2)
        id = kp_nn_leaky(bd->net, id, 0, bd->err, bd->errlen);
    if (id >= 0)
        bd->cur = id;
    return id;
}

/* A ResNet basic block of c channels as module m. */
static int build_res(builder *bd, int c, int stride)
{
    int in = bd->cur, cin, h, w, m = bd->module++;
    char name[64];
    kp_nn_shape(bd->net, in, &cin, &h, &w);
    if (build_conv(bd, c, 3, stride, 1, 1, 0, 2, "conv1", "bn1", m) < 0 ||
        build_conv(bd, c, 3, 1, 1, 1, 0, 1, "conv2", "bn2", m) < 0)
        return -1;
    int main_path = bd->cur, shortcut = in;
    if (cin != c || stride != 1) {
        shortcut = kp_nn_conv(bd->net, in, c, 1, stride, 0, 1, 0,
                              mname(name, sizeof name, m, "down.0"), bd->err, bd->errlen);
        if (shortcut >= 0)
            shortcut = kp_nn_batchnorm(bd->net, shortcut, mname(name, sizeof name, m, "down.1"),
                                       bd->err, bd->errlen);
        if (shortcut < 0)
            return shortcut;
    }
    int id = kp_nn_add(bd->net, main_path, shortcut, bd->err, bd->errlen);
    if (id >= 0)
        id = kp_nn_leaky(bd->net, id, 0, bd->err, bd->errlen);
    if (id >= 0)
        bd->cur = id;
    return id;
}

/* A linear layer of n units as the next module (after a counted Flatten
 * when the input is still spatial). */
static int build_linear(builder *bd, int n)
{
    char name[64];
    if (!bd->flat) {
        bd->module++;          /* nn.Flatten */
        bd->flat = 1;
    }
    int id = kp_nn_linear(bd->net, bd->cur, n, mname(name, sizeof name, bd->module++, NULL),
                          bd->err, bd->errlen);
    if (id >= 0)
        bd->cur = id;
    return id;
}

/* Adds one parsed block. */
static int build_block(builder *bd, const block *b)
{
    int a = (int)b->arg, id = 0, k = (int)opt(b, "k", 3), dil = (int)opt(b, "dilation", 1);
    int pk = b->has_arg ? a : 2;
    switch (b->kind) {
    case B_CBR:
        id = build_conv(bd, a, k, (int)opt(b, "stride", 1), (int)opt(b, "pad", k / 2 * dil), dil,
                        0, 2, NULL, NULL, bd->module);
        bd->module += 3;
        return id;
    case B_CONV:
        id = build_conv(bd, a, k, (int)opt(b, "stride", 1), (int)opt(b, "pad", k / 2 * dil), dil,
                        (int)opt(b, "bias", 1), 0, NULL, NULL, bd->module++);
        return id;
    case B_RES: return build_res(bd, a, (int)opt(b, "stride", 1));
    case B_MAXPOOL:
    case B_AVGPOOL:
        id = kp_nn_pool(bd->net, bd->cur, b->kind == B_MAXPOOL ? KP_POOL_MAX : KP_POOL_AVG, pk,
                        (int)opt(b, "stride", pk), (int)opt(b, "pad", 0), bd->err, bd->errlen);
        bd->module++;
        break;
    case B_GAP:
        id = kp_nn_gap(bd->net, bd->cur, bd->err, bd->errlen);
        bd->module += 2;        /* AdaptiveAvgPool2d(1), Flatten */
        bd->flat = 1;
        break;
    case B_DENSE:
        if ((id = build_linear(bd, a)) < 0)
            return id;
        id = kp_nn_leaky(bd->net, bd->cur, 0, bd->err, bd->errlen);
        bd->module++;
        break;
    case B_DROPOUT: id = kp_nn_dropout(bd->net, bd->cur, (float)b->arg, bd->err, bd->errlen); bd->module++; break;
    case B_RELU: id = kp_nn_leaky(bd->net, bd->cur, 0, bd->err, bd->errlen); bd->module++; break;
    case B_LEAKY:
        id = kp_nn_leaky(bd->net, bd->cur, b->has_arg ? (float)b->arg : 0.01f, bd->err,
                         bd->errlen);
        bd->module++;
        break;
    case B_BN: {
        char name[64];
        id = kp_nn_batchnorm(bd->net, bd->cur, mname(name, sizeof name, bd->module++, NULL),
                             bd->err, bd->errlen);
        break;
    }
    }
    if (id >= 0)
        bd->cur = id;
    return id;
}

int kp_nn_arch_build(kp_nn_net *net, const char *const *blocks, int n, int n_out,
                     const char *where, char *err, size_t errlen)
{
    builder bd = {net, 0, 0, 0, err, errlen};
    block b;
    char msg[KP_ERRLEN];
    for (int i = 0; i < n; i++) {
        int rc = parse_block(blocks[i], &b, where, i, err, errlen);
        if (rc < 0)
            return rc;
        if (build_block(&bd, &b) < 0) {
            snprintf(msg, sizeof msg, "%s", err);
            return kp_errf(err, errlen, KP_ERR_CONFIG, "%s[%d] '%s': %s", where, i, blocks[i],
                           msg);
        }
    }
    if (build_linear(&bd, n_out) < 0) {
        snprintf(msg, sizeof msg, "%s", err);
        return kp_errf(err, errlen, KP_ERR_CONFIG, "%s: output layer: %s", where, msg);
    }
    return 0;
}

/* net.c - building, compiling and running a network graph (see net.h). */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "net.h"
#include "../../lib/err.h"
#include "../../lib/rng.h"

#define NN_MAX_NODES 4096

typedef enum node_op {
    OP_INPUT, OP_CONV, OP_BN, OP_LEAKY, OP_POOL, OP_GAP, OP_LINEAR, OP_DROPOUT, OP_ADD,
    OP_CONCAT, OP_UPCONV, OP_UPSAMPLE
} node_op;

typedef struct node {
    node_op op;
    int in[2], n_in;
    int c, h, w;                 /* output shape per image */
    char *name;                  /* parameter prefix, or NULL */
    size_t w_off, w_n, b_off, b_n;   /* slices of params: weight/gamma, bias/beta */
    size_t s_off;                /* batch norm: running mean, var in stats */
    int64_t batches;             /* batch norm: num_batches_tracked */
    kp_conv_shape conv;
    kp_upconv_shape upconv;
    int factor;                  /* upsample: the scale factor */
    kp_pool_shape pool;
    kp_bn_state bn;
    float slope, p;              /* leaky slope, dropout probability */
    int lin_in;                  /* linear: input features */
    int consumers;               /* nodes reading this one */
    int in_place;                /* y and dy are the input's (a ReLU) */
    int fused;                   /* a ReLU done by its input batch norm's passes */
    float *y, *dy, *mask;        /* activations, their gradients, dropout mask */
    int32_t *argmax;             /* max pooling */
} node;

struct kp_nn_net {
    node *nodes;
    int n_nodes, cap;
    int max_batch, threads, compiled;
    float *params, *grads;       /* n_params each */
    uint8_t *decay;
    size_t n_params;
    float *stats;                /* batch norm running statistics */
    size_t n_stats;
    float *ws, *scratch;         /* kernel workspace, gradient scratch */
    uint8_t *written;            /* per node, during backward */
    const float *x;              /* the last forward's input (borrowed) */
    kp_nn_init init;
};

static size_t node_size(const node *nd)
{
    return (size_t)nd->c * nd->h * nd->w;
}

int kp_nn_create(int c, int h, int w, kp_nn_net **out, char *err, size_t errlen)
{
    if (c <= 0 || h <= 0 || w <= 0)
        return kp_errf(err, errlen, KP_ERR_ARG, "network input %d x %d x %d is empty", c, h, w);
    kp_nn_net *net = calloc(1, sizeof *net);
    if (!net || !(net->nodes = calloc(16, sizeof *net->nodes))) {
        free(net);
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory creating a network");
    }
    net->cap = 16;
    net->n_nodes = 1;
    net->nodes[0] = (node){.op = OP_INPUT, .c = c, .h = h, .w = w};
    *out = net;
    return 0;
}

void kp_nn_free(kp_nn_net *net)
{
    if (!net)
        return;
    for (int i = 0; i < net->n_nodes; i++) {
        node *nd = &net->nodes[i];
        free(nd->name);
        if (!nd->in_place) {
            free(nd->y);
            free(nd->dy);
        }
        free(nd->mask);
        free(nd->argmax);
        free(nd->bn.save_mean);
    }
    free(net->nodes);
    free(net->params);
    free(net->grads);
    free(net->decay);
    free(net->stats);
    free(net->ws);
    free(net->scratch);
    free(net->written);
    free(net);
}

/* Appends a node reading `in` (n_in of them); returns its id or an error. */
static int add_node(kp_nn_net *net, node_op op, const int *in, int n_in, const char *name,
                    char *err, size_t errlen)
{
    if (net->compiled)
        return kp_errf(err, errlen, KP_ERR_INTERNAL, "network already compiled");
    for (int i = 0; i < n_in; i++)
        if (in[i] < 0 || in[i] >= net->n_nodes)
            return kp_errf(err, errlen, KP_ERR_ARG, "layer input %d does not exist", in[i]);
    if (net->n_nodes == NN_MAX_NODES)
        return kp_errf(err, errlen, KP_ERR_ARG, "more than %d layers", NN_MAX_NODES);
    if (net->n_nodes == net->cap) {
        node *g = realloc(net->nodes, (size_t)net->cap * 2 * sizeof *g);
        if (!g)
            return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory building a network");
        net->nodes = g;
        net->cap *= 2;
    }
    node *nd = &net->nodes[net->n_nodes];
    *nd = (node){.op = op, .n_in = n_in};
    if (name && !(nd->name = strdup(name)))
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory building a network");
    for (int i = 0; i < n_in; i++) {
        nd->in[i] = in[i];
        net->nodes[in[i]].consumers++;
    }
    const node *src = &net->nodes[in[0]];
    nd->c = src->c, nd->h = src->h, nd->w = src->w;
    return net->n_nodes++;
}

int kp_nn_conv(kp_nn_net *net, int in, int c_out, int k, int stride, int pad, int dilation,
               int bias, const char *name, char *err, size_t errlen)
{
    int id = add_node(net, OP_CONV, &in, 1, name, err, errlen);
    if (id < 0)
        return id;
    node *nd = &net->nodes[id];
    nd->conv = (kp_conv_shape){nd->c, nd->h, nd->w, c_out, k, stride, pad, dilation, 0, 0};
    int rc = kp_conv_shape_init(&nd->conv, err, errlen);
    if (rc < 0)
        return rc;
    nd->c = c_out, nd->h = nd->conv.h_out, nd->w = nd->conv.w_out;
    nd->w_n = (size_t)c_out * nd->conv.c_in * k * k;
    nd->b_n = bias ? (size_t)c_out : 0;
    return id;
}

int kp_nn_batchnorm(kp_nn_net *net, int in, const char *name, char *err, size_t errlen)
{
    int id = add_node(net, OP_BN, &in, 1, name, err, errlen);
    if (id < 0)
        return id;
    node *nd = &net->nodes[id];
    nd->w_n = nd->b_n = (size_t)nd->c;
    nd->bn = (kp_bn_state){.c = nd->c, .eps = 1e-5f, .momentum = 0.1f};
    return id;
}

int kp_nn_leaky(kp_nn_net *net, int in, float slope, char *err, size_t errlen)
{
    if (!(slope >= 0 && slope < 1))
        return kp_errf(err, errlen, KP_ERR_ARG, "leaky ReLU slope %g is not in [0, 1)", slope);
    int id = add_node(net, OP_LEAKY, &in, 1, NULL, err, errlen);
    if (id >= 0)
        net->nodes[id].slope = slope;
    return id;
}

int kp_nn_pool(kp_nn_net *net, int in, kp_pool_kind kind, int k, int stride, int pad,
               char *err, size_t errlen)
{
    int id = add_node(net, OP_POOL, &in, 1, NULL, err, errlen);
    if (id < 0)
        return id;
    node *nd = &net->nodes[id];
    nd->pool = (kp_pool_shape){kind, nd->c, nd->h, nd->w, k, stride, pad, 0, 0};
    int rc = kp_pool_shape_init(&nd->pool, err, errlen);
    if (rc < 0)
        return rc;
    nd->h = nd->pool.h_out, nd->w = nd->pool.w_out;
    return id;
}

int kp_nn_gap(kp_nn_net *net, int in, char *err, size_t errlen)
{
    int id = add_node(net, OP_GAP, &in, 1, NULL, err, errlen);
    if (id >= 0)
        net->nodes[id].h = net->nodes[id].w = 1;
    return id;
}

int kp_nn_linear(kp_nn_net *net, int in, int out, const char *name, char *err, size_t errlen)
{
    if (out <= 0)
        return kp_errf(err, errlen, KP_ERR_ARG, "dense layer of %d units", out);
    int id = add_node(net, OP_LINEAR, &in, 1, name, err, errlen);
    if (id < 0)
        return id;
    node *nd = &net->nodes[id];
    nd->lin_in = (int)node_size(nd);
    nd->c = out, nd->h = nd->w = 1;
    nd->w_n = (size_t)out * nd->lin_in;
    nd->b_n = (size_t)out;
    return id;
}

int kp_nn_dropout(kp_nn_net *net, int in, float p, char *err, size_t errlen)
{
    if (!(p >= 0 && p < 1))
        return kp_errf(err, errlen, KP_ERR_ARG, "dropout %g is not in [0, 1)", p);
    int id = add_node(net, OP_DROPOUT, &in, 1, NULL, err, errlen);
    if (id >= 0)
        net->nodes[id].p = p;
    return id;
}

/* Checks that a and b have the same height and width (and channels if same_c). */
static int check_pair(const kp_nn_net *net, int a, int b, int same_c, const char *what,
                      char *err, size_t errlen)
{
    if (a < 0 || b < 0 || a >= net->n_nodes || b >= net->n_nodes)
        return kp_errf(err, errlen, KP_ERR_ARG, "%s of a layer that does not exist", what);
    const node *x = &net->nodes[a], *y = &net->nodes[b];
    if (x->h != y->h || x->w != y->w || (same_c && x->c != y->c))
        return kp_errf(err, errlen, KP_ERR_ARG, "%s of %d x %d x %d and %d x %d x %d", what,
                       x->c, x->h, x->w, y->c, y->h, y->w);
    return 0;
}

int kp_nn_add(kp_nn_net *net, int a, int b, char *err, size_t errlen)
{
    int rc = check_pair(net, a, b, 1, "addition", err, errlen);
    int in[2] = {a, b};
    return rc < 0 ? rc : add_node(net, OP_ADD, in, 2, NULL, err, errlen);
}

int kp_nn_concat(kp_nn_net *net, int a, int b, char *err, size_t errlen)
{
    int rc = check_pair(net, a, b, 0, "concatenation", err, errlen);
    int in[2] = {a, b};
    int id = rc < 0 ? rc : add_node(net, OP_CONCAT, in, 2, NULL, err, errlen);
    if (id >= 0)
        net->nodes[id].c = net->nodes[a].c + net->nodes[b].c;
    return id;
}

int kp_nn_upconv(kp_nn_net *net, int in, int c_out, int k, int stride, int bias,
                 const char *name, char *err, size_t errlen)
{
    int id = add_node(net, OP_UPCONV, &in, 1, name, err, errlen);
    if (id < 0)
        return id;
    node *nd = &net->nodes[id];
    nd->upconv = (kp_upconv_shape){nd->c, nd->h, nd->w, c_out, k, stride, 0, 0};
    int rc = kp_upconv_shape_init(&nd->upconv, err, errlen);
    if (rc < 0)
        return rc;
    nd->c = c_out, nd->h = nd->upconv.h_out, nd->w = nd->upconv.w_out;
    nd->w_n = (size_t)nd->upconv.c_in * c_out * k * k;
    nd->b_n = bias ? (size_t)c_out : 0;
    return id;
}

int kp_nn_upsample(kp_nn_net *net, int in, int factor, char *err, size_t errlen)
{
    if (factor < 1)
        return kp_errf(err, errlen, KP_ERR_ARG, "upsampling factor %d is not positive", factor);
    int id = add_node(net, OP_UPSAMPLE, &in, 1, NULL, err, errlen);
    if (id < 0)
        return id;
    node *nd = &net->nodes[id];
    if ((double)nd->c * nd->h * nd->w * factor * factor > INT_MAX)
        return kp_errf(err, errlen, KP_ERR_ARG, "upsampling %d x %d x %d by %d is too large",
                       nd->c, nd->h, nd->w, factor);
    nd->factor = factor;
    nd->h *= factor, nd->w *= factor;
    return id;
}

void kp_nn_shape(const kp_nn_net *net, int id, int *c, int *h, int *w)
{
    const node *nd = &net->nodes[id];
    *c = nd->c, *h = nd->h, *w = nd->w;
}

int kp_nn_threads(const kp_nn_net *net)
{
    return net->threads;
}

int kp_nn_outputs(const kp_nn_net *net)
{
    return (int)node_size(&net->nodes[net->n_nodes - 1]);
}

/* ---- compiling ---- */

/* Floats of kernel workspace node nd needs. */
static size_t node_workspace(const kp_nn_net *net, const node *nd)
{
    int n = net->max_batch;
    switch (nd->op) {
    case OP_CONV: return kp_conv_workspace(&nd->conv, n, net->threads);
    case OP_UPCONV: return kp_upconv_workspace(&nd->upconv, n, net->threads);
    case OP_BN: return kp_bn_workspace(n, nd->c, net->threads);
    case OP_LINEAR: return kp_linear_workspace(n, nd->lin_in, nd->c, net->threads);
    default: return 0;
    }
}

/* Lays out parameter and statistics slices; returns the workspace size. */
static size_t layout(kp_nn_net *net, size_t *scratch)
{
    size_t ws = 0;
    *scratch = 0;
    for (int i = 1; i < net->n_nodes; i++) {
        node *nd = &net->nodes[i];
        nd->w_off = net->n_params;
        nd->b_off = nd->w_off + nd->w_n;
        net->n_params += nd->w_n + nd->b_n;
        if (nd->op == OP_BN) {
            nd->s_off = net->n_stats;
            net->n_stats += 2 * (size_t)nd->c;
        }
        size_t w = node_workspace(net, nd);
        ws = w > ws ? w : ws;
        size_t sz = node_size(nd) * (size_t)net->max_batch;
        *scratch = sz > *scratch ? sz : *scratch;
    }
    return ws;
}

/* Conv, upconv and linear weights uniform in +-bound, bound = sqrt(6 / fan_in) for
 * He (kaiming_uniform_, nonlinearity relu; zero biases) or 1 / sqrt(fan_in)
 * for PyTorch's defaults (kaiming_uniform_ with a = sqrt 5; biases uniform in
 * the same bound); batch norm weight 1, bias 0. */
static void init_params(kp_nn_net *net, uint64_t seed)
{
    kp_rng rng;
    kp_rng_seed(&rng, seed);
    for (int i = 1; i < net->n_nodes; i++) {
        node *nd = &net->nodes[i];
        float *W = net->params + nd->w_off;
        if (nd->op == OP_BN) {
            for (size_t j = 0; j < nd->w_n; j++)
                W[j] = 1.0f;
            float *st = net->stats + nd->s_off;
            for (int j = 0; j < nd->c; j++)
                st[j] = 0.0f, st[nd->c + j] = 1.0f;
            continue;
        }
        if (nd->op != OP_CONV && nd->op != OP_UPCONV && nd->op != OP_LINEAR)
            continue;
        /* W[out, in, ...] and, transposed, W[in, out, k, k]: fan_in is size(1) k k */
        size_t rows = nd->op == OP_UPCONV ? (size_t)nd->upconv.c_in : (size_t)nd->c;
        size_t fan_in = nd->w_n / rows;
        double torch_bound = 1.0 / sqrt((double)fan_in);
        double bound = net->init == KP_NN_INIT_HE ? sqrt(6.0 / (double)fan_in) : torch_bound;
        for (size_t j = 0; j < nd->w_n; j++) {
            W[j] = (float)((2.0 * kp_rng_uniform(&rng) - 1.0) * bound);
            net->decay[nd->w_off + j] = 1;
        }
        for (size_t j = 0; net->init == KP_NN_INIT_TORCH && j < nd->b_n; j++)
            net->params[nd->b_off + j] = (float)((2.0 * kp_rng_uniform(&rng) - 1.0) * torch_bound);
    }
}

void kp_nn_set_init(kp_nn_net *net, kp_nn_init init)
{
    net->init = init;
}

/* Points the batch norm state at the net's arrays. */
static void bind_bn(kp_nn_net *net, node *nd)
{
    nd->bn.gamma = net->params + nd->w_off;
    nd->bn.beta = net->params + nd->b_off;
    nd->bn.running_mean = net->stats + nd->s_off;
    nd->bn.running_var = net->stats + nd->s_off + nd->c;
}

/* Allocates node i's buffers (or aliases its input's for an in-place ReLU). */
static int alloc_node(kp_nn_net *net, int i)
{
    node *nd = &net->nodes[i];
    node *src = &net->nodes[nd->in[0]];
    size_t sz = node_size(nd) * (size_t)net->max_batch;
    if (nd->op == OP_LEAKY && nd->in[0] > 0 && src->consumers == 1 && src->op != OP_LEAKY) {
        nd->in_place = 1;
        nd->y = src->y, nd->dy = src->dy;
        if (src->op == OP_BN) {      /* one pass over memory instead of two */
            nd->fused = src->bn.fuse_leaky = 1;
            src->bn.slope = nd->slope;
        }
    } else if (!(nd->y = malloc(sz * sizeof(float))) || !(nd->dy = malloc(sz * sizeof(float))))
        return KP_ERR_NOMEM;
    if (nd->op == OP_DROPOUT && !(nd->mask = malloc(sz * sizeof(float))))
        return KP_ERR_NOMEM;
    if (nd->op == OP_POOL && nd->pool.kind == KP_POOL_MAX &&
        !(nd->argmax = malloc(sz * sizeof(int32_t))))
        return KP_ERR_NOMEM;
    if (nd->op == OP_BN) {
        if (!(nd->bn.save_mean = malloc(2 * (size_t)nd->c * sizeof(float))))
            return KP_ERR_NOMEM;
        nd->bn.save_invstd = nd->bn.save_mean + nd->c;
        bind_bn(net, nd);
    }
    return 0;
}

int kp_nn_compile(kp_nn_net *net, int max_batch, int threads, uint64_t seed, char *err,
                  size_t errlen)
{
    if (net->compiled || net->n_nodes < 2 || max_batch <= 0)
        return kp_errf(err, errlen, KP_ERR_INTERNAL, "network cannot be compiled");
    net->max_batch = max_batch;
    net->threads = threads > 0 ? threads : 1;
    size_t scratch, ws = layout(net, &scratch);
    int rc = 0;
    net->params = calloc(net->n_params + 1, sizeof(float));
    net->grads = calloc(net->n_params + 1, sizeof(float));
    net->decay = calloc(net->n_params + 1, 1);
    net->stats = calloc(net->n_stats + 1, sizeof(float));
    net->ws = malloc((ws + 1) * sizeof(float));
    net->scratch = malloc((scratch + 1) * sizeof(float));
    net->written = calloc((size_t)net->n_nodes, 1);
    if (!net->params || !net->grads || !net->decay || !net->stats || !net->ws ||
        !net->scratch || !net->written)
        rc = KP_ERR_NOMEM;
    for (int i = 1; rc == 0 && i < net->n_nodes; i++)
        rc = alloc_node(net, i);
    if (rc < 0)
        return kp_errf(err, errlen, rc, "out of memory allocating a network for batch %d",
                       max_batch);
    net->compiled = 1;
    init_params(net, seed);
    return 0;
}

/* ---- forward ---- */

/* The output buffer of node i (the input node's is the caller's x). */
static const float *out_of(const kp_nn_net *net, int i, const float *x)
{
    return i == 0 ? x : net->nodes[i].y;
}

static void forward_node(kp_nn_net *net, node *nd, int id, const float *x, int n, int train,
                         uint64_t seed)
{
    const float *a = out_of(net, nd->in[0], x);
    const float *b = nd->n_in > 1 ? out_of(net, nd->in[1], x) : NULL;
    const float *P = net->params;
    size_t count = node_size(nd) * (size_t)n;
    int t = net->threads;
    switch (nd->op) {
    case OP_CONV:
        kp_conv_forward(&nd->conv, n, a, P + nd->w_off, nd->b_n ? P + nd->b_off : NULL, nd->y,
                        net->ws, t);
        break;
    case OP_BN:
        if (train) {
            kp_bn_forward_train(&nd->bn, n, nd->h * nd->w, a, nd->y, net->ws, t);
            nd->batches++;
        } else
            kp_bn_forward_eval(&nd->bn, n, nd->h * nd->w, a, nd->y, t);
        break;
    case OP_LEAKY:
        if (!nd->fused)
            kp_leaky_forward(count, nd->slope, a, nd->y, t);
        break;
    case OP_POOL: kp_pool_forward(&nd->pool, n, a, nd->y, nd->argmax, t); break;
    case OP_GAP:
        kp_gap_forward(n, nd->c, net->nodes[nd->in[0]].h * net->nodes[nd->in[0]].w, a, nd->y, t);
        break;
    case OP_LINEAR:
        kp_linear_forward(n, nd->lin_in, nd->c, a, P + nd->w_off, P + nd->b_off, nd->y, t);
        break;
    case OP_DROPOUT:
        if (train && nd->p > 0)
            kp_dropout_forward(count, nd->p, kp_rng_derive(seed, (uint64_t)id), a, nd->y,
                               nd->mask, t);
        else
            memcpy(nd->y, a, count * sizeof(float));
        break;
    case OP_UPCONV:
        kp_upconv_forward(&nd->upconv, n, a, P + nd->w_off, nd->b_n ? P + nd->b_off : NULL,
                          nd->y, net->ws, t);
        break;
    case OP_UPSAMPLE:
        kp_upsample_forward(n, nd->c, nd->h / nd->factor, nd->w / nd->factor, nd->factor, a,
                            nd->y, t);
        break;
    case OP_ADD: kp_add_forward(count, a, b, nd->y, t); break;
    case OP_CONCAT:
        kp_concat_forward(n, net->nodes[nd->in[0]].c, net->nodes[nd->in[1]].c,
                          nd->h * nd->w, a, b, nd->y, t);
        break;
    case OP_INPUT: break;
    }
}

const float *kp_nn_forward(kp_nn_net *net, const float *x, int n, int train, uint64_t seed)
{
    net->x = x;
    for (int i = 1; i < net->n_nodes; i++)
        forward_node(net, &net->nodes[i], i, x, n, train, seed);
    return net->nodes[net->n_nodes - 1].y;
}

/* ---- backward ---- */

/* Where the gradient for input slot j of nd goes: the input's dy if nothing
 * has written it yet this pass, else the scratch buffer (added afterwards);
 * NULL for the network input. */
static float *grad_target(kp_nn_net *net, const node *nd, int j)
{
    int src = nd->in[j];
    if (src == 0)
        return NULL;
    return net->written[src] ? net->scratch : net->nodes[src].dy;
}

/* Completes a gradient written by grad_target: adds the scratch in, marks it written. */
static void grad_done(kp_nn_net *net, const node *nd, int j, int n)
{
    int src = nd->in[j];
    if (src == 0)
        return;
    node *s = &net->nodes[src];
    if (net->written[src]) {
        size_t count = node_size(s) * (size_t)n;
        kp_add_forward(count, s->dy, net->scratch, s->dy, net->threads);
    }
    net->written[src] = 1;
}

static void backward_node(kp_nn_net *net, node *nd, int n)
{
    const float *a = out_of(net, nd->in[0], net->x);
    const node *src = &net->nodes[nd->in[0]];
    float *G = net->grads;
    const float *P = net->params;
    size_t count = node_size(nd) * (size_t)n;
    int t = net->threads;
    float *da = grad_target(net, nd, 0);
    switch (nd->op) {
    case OP_CONV:
        kp_conv_backward(&nd->conv, n, a, P + nd->w_off, nd->dy, da, G + nd->w_off,
                         nd->b_n ? G + nd->b_off : NULL, net->ws, t);
        break;
    case OP_BN:
        kp_bn_backward(&nd->bn, n, nd->h * nd->w, a, nd->dy, da, G + nd->w_off,
                           G + nd->b_off, net->ws, t);
        break;
    case OP_LEAKY:
        if (da && !nd->fused)
            kp_leaky_backward(count, nd->slope, nd->y, nd->dy, da, t);
        break;
    case OP_POOL:
        if (da)
            kp_pool_backward(&nd->pool, n, nd->dy, nd->argmax, da, t);
        break;
    case OP_GAP:
        if (da)
            kp_gap_backward(n, nd->c, src->h * src->w, nd->dy, da, t);
        break;
    case OP_LINEAR:
        kp_linear_backward(n, nd->lin_in, nd->c, a, P + nd->w_off, nd->dy, da, G + nd->w_off,
                           G + nd->b_off, net->ws, t);
        break;
    case OP_DROPOUT:
        if (da && nd->p > 0)
            kp_dropout_backward(count, nd->mask, nd->dy, da, t);
        else if (da)
            memcpy(da, nd->dy, count * sizeof(float));
        break;
    case OP_UPCONV:
        kp_upconv_backward(&nd->upconv, n, a, P + nd->w_off, nd->dy, da, G + nd->w_off,
                           nd->b_n ? G + nd->b_off : NULL, net->ws, t);
        break;
    case OP_UPSAMPLE:
        if (da)
            kp_upsample_backward(n, nd->c, src->h, src->w, nd->factor, nd->dy, da, t);
        break;
    case OP_ADD:
    case OP_CONCAT:
    case OP_INPUT:
        break;
    }
    grad_done(net, nd, 0, n);
}

/* add and concat: each input slot in turn (the scratch is shared). */
static void backward_pair(kp_nn_net *net, node *nd, int n)
{
    const node *x = &net->nodes[nd->in[0]], *y = &net->nodes[nd->in[1]];
    int hw = nd->h * nd->w;
    for (int j = 0; j < 2; j++) {
        float *d = grad_target(net, nd, j);
        if (!d)
            continue;
        if (nd->op == OP_ADD)
            memcpy(d, nd->dy, node_size(nd) * (size_t)n * sizeof(float));
        else if (j == 0)
            kp_concat_backward(n, x->c, y->c, hw, nd->dy, d, NULL, net->threads);
        else
            kp_concat_backward(n, x->c, y->c, hw, nd->dy, NULL, d, net->threads);
        grad_done(net, nd, j, n);
    }
}

void kp_nn_backward(kp_nn_net *net, int n, const float *dz)
{
    node *last = &net->nodes[net->n_nodes - 1];
    memset(net->grads, 0, net->n_params * sizeof(float));
    memset(net->written, 0, (size_t)net->n_nodes);
    memcpy(last->dy, dz, node_size(last) * (size_t)n * sizeof(float));
    net->written[net->n_nodes - 1] = 1;
    for (int i = net->n_nodes - 1; i > 0; i--) {
        node *nd = &net->nodes[i];
        if (!net->written[i])
            continue;               /* does not reach the output */
        if (nd->op == OP_ADD || nd->op == OP_CONCAT)
            backward_pair(net, nd, n);
        else
            backward_node(net, nd, n);
    }
}

/* ---- parameters, snapshots, checkpoints ---- */

float *kp_nn_params(kp_nn_net *net, size_t *n)
{
    *n = net->n_params;
    return net->params;
}

const float *kp_nn_grads(const kp_nn_net *net)
{
    return net->grads;
}

const uint8_t *kp_nn_decay_mask(const kp_nn_net *net)
{
    return net->decay;
}

size_t kp_nn_state_size(const kp_nn_net *net)
{
    return net->n_params + net->n_stats;
}

void kp_nn_state_get(const kp_nn_net *net, float *snapshot)
{
    memcpy(snapshot, net->params, net->n_params * sizeof(float));
    memcpy(snapshot + net->n_params, net->stats, net->n_stats * sizeof(float));
}

void kp_nn_state_set(kp_nn_net *net, const float *snapshot)
{
    memcpy(net->params, snapshot, net->n_params * sizeof(float));
    memcpy(net->stats, snapshot + net->n_params, net->n_stats * sizeof(float));
}

/* One named tensor of a node: its suffix, data, and shape. */
typedef struct slot {
    const char *suffix;
    float *data;
    int ndim;
    int64_t shape[4];
} slot;

/* Fills the node's named tensors (up to 4 float ones); returns how many. */
static int node_slots(kp_nn_net *net, node *nd, slot *s)
{
    float *P = net->params;
    int64_t c = nd->c;
    switch (nd->op) {
    case OP_CONV:
        s[0] = (slot){"weight", P + nd->w_off, 4,
                      {c, nd->conv.c_in, nd->conv.k, nd->conv.k}};
        if (!nd->b_n)
            return 1;
        s[1] = (slot){"bias", P + nd->b_off, 1, {c}};
        return 2;
    case OP_UPCONV:
        s[0] = (slot){"weight", P + nd->w_off, 4,
                      {nd->upconv.c_in, c, nd->upconv.k, nd->upconv.k}};
        if (!nd->b_n)
            return 1;
        s[1] = (slot){"bias", P + nd->b_off, 1, {c}};
        return 2;
    case OP_LINEAR:
        s[0] = (slot){"weight", P + nd->w_off, 2, {c, nd->lin_in}};
        s[1] = (slot){"bias", P + nd->b_off, 1, {c}};
        return 2;
    case OP_BN:
        s[0] = (slot){"weight", P + nd->w_off, 1, {c}};
        s[1] = (slot){"bias", P + nd->b_off, 1, {c}};
        s[2] = (slot){"running_mean", net->stats + nd->s_off, 1, {c}};
        s[3] = (slot){"running_var", net->stats + nd->s_off + c, 1, {c}};
        return 4;
    default:
        return 0;
    }
}

int kp_nn_save(const kp_nn_net *cnet, kp_stw *w, char *err, size_t errlen)
{
    kp_nn_net *net = (kp_nn_net *)cnet;   /* node_slots hands out writable pointers */
    char name[512];
    slot s[4];
    for (int i = 1; i < net->n_nodes; i++) {
        node *nd = &net->nodes[i];
        int k = node_slots(net, nd, s), rc = 0;
        for (int j = 0; j < k && rc == 0; j++) {
            snprintf(name, sizeof name, "%s.%s", nd->name ? nd->name : "?", s[j].suffix);
            rc = kp_stw_add(w, name, KP_F32, s[j].ndim, s[j].shape, s[j].data);
        }
        if (rc == 0 && nd->op == OP_BN) {
            snprintf(name, sizeof name, "%s.num_batches_tracked", nd->name);
            rc = kp_stw_add(w, name, KP_I64, 0, NULL, &nd->batches);
        }
        if (rc < 0)
            return kp_errf(err, errlen, rc, "cannot add tensor %s to a checkpoint", name);
    }
    return 0;
}

/* Copies tensor prefix+name from st into s (shape must match). */
static int load_slot(const kp_st *st, const char *name, const slot *s, char *err,
                     size_t errlen)
{
    const kp_tensor *t = kp_st_expect(st, name, KP_F32, s->ndim, s->shape, err, errlen);
    if (!t)
        return KP_ERR_MISMATCH;
    memcpy(s->data, t->data, t->nbytes);
    return 0;
}

int kp_nn_load(kp_nn_net *net, const kp_st *st, const char *prefix, char *err, size_t errlen)
{
    char name[512];
    slot s[4];
    for (int i = 1; i < net->n_nodes; i++) {
        node *nd = &net->nodes[i];
        int k = node_slots(net, nd, s);
        for (int j = 0; j < k; j++) {
            snprintf(name, sizeof name, "%s%s.%s", prefix ? prefix : "", nd->name, s[j].suffix);
            int rc = load_slot(st, name, &s[j], err, errlen);
            if (rc < 0)
                return rc;
        }
        if (nd->op == OP_BN) {
            snprintf(name, sizeof name, "%s%s.num_batches_tracked", prefix ? prefix : "",
                     nd->name);
            const kp_tensor *t = kp_st_find(st, name);
            if (t && t->dtype == KP_I64 && t->numel == 1)
                memcpy(&nd->batches, t->data, sizeof nd->batches);
        }
    }
    return 0;
}

/* ---- pretrained encoders and frozen layers ---- */

/* Whether name starts with the len bytes of prefix as whole components
 * (an empty prefix matches every name). */
static int component_prefix(const char *name, const char *prefix, size_t len)
{
    return len == 0 ||
           (strncmp(name, prefix, len) == 0 && (name[len] == '.' || name[len] == '\0'));
}

/* Writes into buf the file's name for net tensor `name` under the longest
 * matching map entry, marking every matching entry in used; returns the
 * entry's index, or -1 if none matches. */
static int map_name(const char *name, const char *const *map, int n_map, uint8_t *used,
                    char *buf, size_t n)
{
    int best = -1;
    size_t best_len = 0;
    for (int i = 0; i < n_map; i++) {
        size_t len = (size_t)(strchr(map[i], '=') - map[i]);
        if (!component_prefix(name, map[i], len))
            continue;
        used[i] = 1;
        if (best < 0 || len > best_len)
            best = i, best_len = len;
    }
    if (best < 0)
        return -1;
    const char *rest = name + best_len, *fp = strchr(map[best], '=') + 1;
    rest += *rest == '.';
    if (!*fp || !*rest)
        snprintf(buf, n, "%s", *fp ? fp : rest);
    else
        snprintf(buf, n, "%s.%s", fp, rest);
    return best;
}

/* Checks (copy 0) or copies (copy 1) file tensor `file` into the net's slot `name`. */
static int map_slot(const kp_st *st, const char *name, const char *file, const slot *s,
                    int copy, char *err, size_t errlen)
{
    if (!kp_st_find(st, file))
        return kp_errf(err, errlen, KP_ERR_NOTFOUND, "%s: no tensor '%s' for the network's '%s'",
                       kp_st_path(st), file, name);
    const kp_tensor *t = kp_st_expect(st, file, KP_F32, s->ndim, s->shape, err, errlen);
    if (!t) {
        size_t len = errlen ? strlen(err) : 0;
        if (len + 1 < errlen)
            snprintf(err + len, errlen - len, " for the network's '%s'", name);
        return KP_ERR_MISMATCH;
    }
    if (copy)
        memcpy(s->data, t->data, t->nbytes);
    return 0;
}

/* Reads a mapped batch norm's num_batches_tracked if the file has it. */
static void map_batches(node *nd, const kp_st *st, const char *const *map, int n_map,
                        uint8_t *used)
{
    char name[512], file[512];
    snprintf(name, sizeof name, "%s.num_batches_tracked", nd->name ? nd->name : "?");
    if (map_name(name, map, n_map, used, file, sizeof file) < 0)
        return;
    const kp_tensor *t = kp_st_find(st, file);
    if (t && t->dtype == KP_I64 && t->numel == 1)
        memcpy(&nd->batches, t->data, sizeof nd->batches);
}

/* One pass over every named tensor of the net: checks (copy 0) or copies
 * the mapped ones; returns their count or a status. */
static int mapped_pass(kp_nn_net *net, const kp_st *st, const char *const *map, int n_map,
                       uint8_t *used, int copy, char *err, size_t errlen)
{
    char name[512], file[512];
    slot s[4];
    int count = 0;
    for (int i = 1; i < net->n_nodes; i++) {
        node *nd = &net->nodes[i];
        int k = node_slots(net, nd, s);
        for (int j = 0; j < k; j++) {
            snprintf(name, sizeof name, "%s.%s", nd->name ? nd->name : "?", s[j].suffix);
            if (map_name(name, map, n_map, used, file, sizeof file) < 0)
                continue;
            int rc = map_slot(st, name, file, &s[j], copy, err, errlen);
            if (rc < 0)
                return rc;
            count++;
        }
        if (copy && nd->op == OP_BN)
            map_batches(nd, st, map, n_map, used);
    }
    return count;
}

int kp_nn_load_mapped(kp_nn_net *net, const kp_st *st, const char *const *map, int n_map,
                      int *loaded, char *err, size_t errlen)
{
    for (int i = 0; i < n_map; i++)
        if (!strchr(map[i], '='))
            return kp_errf(err, errlen, KP_ERR_ARG,
                           "tensor map entry '%s' is not NETPREFIX=FILEPREFIX", map[i]);
    uint8_t *used = calloc((size_t)n_map + 1, 1);
    if (!used)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory loading tensors");
    int rc = mapped_pass(net, st, map, n_map, used, 0, err, errlen);
    for (int i = 0; rc >= 0 && i < n_map; i++)
        if (!used[i])
            rc = kp_errf(err, errlen, KP_ERR_NOTFOUND,
                         "tensor map entry '%s' matches no tensor of the network", map[i]);
    if (rc >= 0)
        rc = mapped_pass(net, st, map, n_map, used, 1, err, errlen);
    if (rc >= 0)
        *loaded = rc, rc = 0;
    free(used);
    return rc;
}

size_t kp_nn_prefix_mask(const kp_nn_net *cnet, const char *prefix, uint8_t *mask)
{
    kp_nn_net *net = (kp_nn_net *)cnet;   /* node_slots hands out writable pointers */
    char name[512];
    slot s[4];
    size_t set = 0, len = strlen(prefix);
    for (int i = 1; i < net->n_nodes; i++) {
        node *nd = &net->nodes[i];
        int k = node_slots(net, nd, s);
        for (int j = 0; j < k; j++) {
            snprintf(name, sizeof name, "%s.%s", nd->name ? nd->name : "?", s[j].suffix);
            if ((nd->op == OP_BN && j >= 2) || !component_prefix(name, prefix, len))
                continue;           /* a batch norm's slots 2 and 3 are statistics */
            size_t count = 1;
            for (int d = 0; d < s[j].ndim; d++)
                count *= (size_t)s[j].shape[d];
            memset(mask + (s[j].data - net->params), 1, count);
            set += count;
        }
    }
    return set;
}

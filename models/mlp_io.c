/* mlp_io.c - the mlp checkpoint: PyTorch-style tensor names plus the architecture.
 *
 * Tensors (F32): layers.I.weight [out, in] and layers.I.bias [out] for dense
 * layer I (0 .. hidden layers; the last is the output layer), and with batch
 * norm bn.I.weight, bn.I.bias, bn.I.running_mean, bn.I.running_var [units]
 * for hidden layer I.  Metadata: mlp.n_features, mlp.hidden_layer_sizes
 * ("100,50", "" for none), mlp.batch_norm ("true"/"false"), mlp.bn_eps.
 * Loading rebuilds the net from the metadata, then requires exactly these
 * tensors with exactly these shapes, finite values and running_var >= 0.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/err.h"
#include "mlp_int.h"

#define NAME_LEN 48

kp_mlpnn_head kp_mlp_head_of(kp_task_kind task)
{
    return task == KP_TASK_MULTICLASS ? KP_MLPNN_SOFTMAX
           : task == KP_TASK_REGRESSION ? KP_MLPNN_IDENTITY : KP_MLPNN_SIGMOID;
}

void kp_mlp_free(void *model)
{
    kp_mlp *m = model;
    if (!m)
        return;
    kp_mlpnn_free(m->net);
    free(m);
}

/* One checkpoint tensor of a layer: its name, shape and place in the net. */
typedef struct slot {
    char name[NAME_LEN];
    int ndim;
    int64_t shape[2];
    float *data;          /* inside net->params or net->buffers */
    int nonneg;           /* running_var */
} slot;

/* Lists the tensors of net into s (room for 4 per layer); returns the count. */
static int slots_of(const kp_mlpnn_net *net, slot *s)
{
    static const char *const bn_names[] = { "weight", "bias", "running_mean", "running_var" };
    int n = 0;
    for (int l = 0; l < net->n_layers; l++) {
        const kp_mlpnn_layer *ly = &net->layers[l];
        float *p = net->params + ly->p_off;
        if (ly->kind == KP_MLPNN_DENSE) {
            s[n] = (slot){ .ndim = 2, .shape = { ly->out, ly->in }, .data = p };
            snprintf(s[n++].name, NAME_LEN, "layers.%d.weight", ly->tag);
            s[n] = (slot){ .ndim = 1, .shape = { ly->out }, .data = p + (size_t)ly->out * ly->in };
            snprintf(s[n++].name, NAME_LEN, "layers.%d.bias", ly->tag);
        }
        for (int j = 0; ly->kind == KP_MLPNN_BATCHNORM && j < 4; j++) {
            float *base = j < 2 ? p : net->buffers + ly->b_off;
            s[n] = (slot){ .ndim = 1, .shape = { ly->out }, .nonneg = j == 3,
                           .data = base + (size_t)(j % 2) * ly->out };
            snprintf(s[n++].name, NAME_LEN, "bn.%d.%s", ly->tag, bn_names[j]);
        }
    }
    return n;
}

/* Writes the hidden sizes (every dense layer but the last) as "100,50" into
 * buf; returns 1 if the net has batch norm. */
static int describe(const kp_mlpnn_net *net, char *buf, size_t len)
{
    size_t used = 0;
    int bn = 0, dense = 0;
    buf[0] = 0;
    for (int l = 0; l < net->n_layers - 1; l++) {
        const kp_mlpnn_layer *ly = &net->layers[l];
        bn |= ly->kind == KP_MLPNN_BATCHNORM;
        if (ly->kind == KP_MLPNN_DENSE && used < len)
            used += (size_t)snprintf(buf + used, len - used, "%s%d", dense++ ? "," : "", ly->out);
    }
    return bn;
}

int kp_mlp_save(const void *model, kp_stw *w, char *err, size_t errlen)
{
    const kp_mlp *m = model;
    const kp_mlpnn_net *net = m->net;
    char hidden[KP_MLPNN_MAX_HIDDEN * 9 + 1], nf[24], eps[32];
    slot *s = malloc(sizeof *s * 4 * (size_t)net->n_layers);
    if (!s)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory saving the net");
    int bn = describe(net, hidden, sizeof hidden);
    snprintf(nf, sizeof nf, "%d", net->in);
    snprintf(eps, sizeof eps, "%.9g", net->bn_eps);
    int rc = 0, n = slots_of(net, s);
    if (kp_stw_meta(w, "mlp.n_features", nf) < 0 ||
        kp_stw_meta(w, "mlp.hidden_layer_sizes", hidden) < 0 ||
        kp_stw_meta(w, "mlp.batch_norm", bn ? "true" : "false") < 0 ||
        (bn && kp_stw_meta(w, "mlp.bn_eps", eps) < 0))
        rc = KP_ERR_NOMEM;
    for (int i = 0; rc == 0 && i < n; i++)
        rc = kp_stw_add(w, s[i].name, KP_F32, s[i].ndim, s[i].shape, s[i].data);
    free(s);
    if (rc < 0)
        return kp_errf(err, errlen, rc, "could not add the net's tensors: %s", kp_strerror(rc));
    return 0;
}

/* Parses a whole decimal number in [lo, hi] from s; 0 or -1. */
static int parse_count(const char *s, size_t len, long lo, long hi, int *out)
{
    char buf[24], *end;
    if (!s || len == 0 || len >= sizeof buf)
        return -1;
    memcpy(buf, s, len);
    buf[len] = 0;
    errno = 0;
    long v = strtol(buf, &end, 10);
    if (*end || errno || v < lo || v > hi || buf[0] == '+' || buf[0] == ' ')
        return -1;
    *out = (int)v;
    return 0;
}

/* Parses "100,50" ("" for none) into sizes; 0 or -1. */
static int parse_sizes(const char *s, int *sizes, int *n)
{
    *n = 0;
    if (!s)
        return -1;
    while (*s) {
        size_t len = strcspn(s, ",");
        if (*n == KP_MLPNN_MAX_HIDDEN || parse_count(s, len, 1, KP_MLPNN_MAX_WIDTH, &sizes[*n]) < 0)
            return -1;
        ++*n;
        s += len;
        if (*s == ',' && !*++s)
            return -1;   /* a trailing comma */
    }
    return 0;
}

typedef struct arch {
    int in, hidden[KP_MLPNN_MAX_HIDDEN], n_hidden, batch_norm;
    float bn_eps;
} arch;

/* Reads the architecture from the metadata; 0 or KP_ERR_FORMAT. */
static int read_arch(const kp_st *st, arch *a, char *err, size_t errlen)
{
    const char *path = kp_st_path(st), *nf = kp_st_meta(st, "mlp.n_features");
    const char *hid = kp_st_meta(st, "mlp.hidden_layer_sizes");
    const char *bn = kp_st_meta(st, "mlp.batch_norm");
    if (!nf || parse_count(nf, strlen(nf), 1, INT32_MAX, &a->in) < 0)
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: mlp.n_features '%s' is not a positive "
                       "count", path, nf ? nf : "(missing)");
    if (!bn || (strcmp(bn, "true") != 0 && strcmp(bn, "false") != 0))
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: mlp.batch_norm '%s' is not true or false",
                       path, bn ? bn : "(missing)");
    a->batch_norm = strcmp(bn, "true") == 0;
    if (parse_sizes(hid, a->hidden, &a->n_hidden) < 0)
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: mlp.hidden_layer_sizes '%s' is not a list "
                       "of up to %d sizes in [1, %d]", path, hid ? hid : "(missing)",
                       KP_MLPNN_MAX_HIDDEN, KP_MLPNN_MAX_WIDTH);
    const char *eps = kp_st_meta(st, "mlp.bn_eps");
    char *end = NULL;
    double e = eps ? strtod(eps, &end) : 1e-5;
    if (a->batch_norm && (!eps || *end || end == eps || !(e > 0 && e < 1)))
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: mlp.bn_eps '%s' is not a number in (0, 1)",
                       path, eps ? eps : "(missing)");
    a->bn_eps = (float)e;
    return 0;
}

/* Fails if the architecture needs far more bytes than the file's tensors hold,
 * so a hostile header cannot make load allocate much more than the file
 * (the tensors' exact shapes are checked after). */
static int check_size(const kp_st *st, const arch *a, int n_out, char *err, size_t errlen)
{
    double need = 0, have = 0;
    for (int i = 0; i <= a->n_hidden; i++) {
        double w = i ? a->hidden[i - 1] : a->in, out = i < a->n_hidden ? a->hidden[i] : n_out;
        need += 4.0 * (w + 1) * out + (i < a->n_hidden && a->batch_norm ? 16.0 * out : 0);
    }
    for (int i = 0; i < kp_st_count(st); i++)
        have += (double)kp_st_at(st, i)->nbytes;
    if (need > 2 * have + (1 << 20))
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: the tensors hold %.0f bytes but the "
                       "architecture in the metadata needs %.0f", kp_st_path(st), have, need);
    return 0;
}

/* Copies tensor s from st after checking dtype, shape and values; 0 or KP_ERR_FORMAT. */
static int load_slot(const kp_st *st, const slot *s, char *err, size_t errlen)
{
    const kp_tensor *t = kp_st_expect(st, s->name, KP_F32, s->ndim, s->shape, err, errlen);
    if (!t)
        return KP_ERR_FORMAT;
    const float *v = t->data;
    for (int64_t i = 0; i < t->numel; i++)
        if (!isfinite(v[i]) || (s->nonneg && v[i] < 0))
            return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: tensor '%s' holds %s value %g at "
                           "index %lld", kp_st_path(st), s->name,
                           isfinite(v[i]) ? "a negative" : "a non-finite", v[i], (long long)i);
    memcpy(s->data, t->data, t->nbytes);
    return 0;
}

/* Fails with the name of the first tensor of st that is not in s[0 .. n). */
static int check_no_extra(const kp_st *st, const slot *s, int n, char *err, size_t errlen)
{
    for (int i = 0; i < kp_st_count(st); i++) {
        const char *name = kp_st_at(st, i)->name;
        int known = 0;
        for (int j = 0; j < n && !known; j++)
            known = strcmp(name, s[j].name) == 0;
        if (!known)
            return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: unexpected tensor '%s' for this "
                           "architecture", kp_st_path(st), name);
    }
    return 0;
}

int kp_mlp_load(const kp_st *st, const kp_problem *pb, void **model, char *err, size_t errlen)
{
    arch a;
    kp_mlp *m = NULL;
    slot *s = NULL;
    int rc = read_arch(st, &a, err, errlen);
    if (rc < 0 || (rc = check_size(st, &a, pb->n_out, err, errlen)) < 0)
        return rc;
    if (!(m = calloc(1, sizeof *m)))
        return kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory", kp_st_path(st));
    m->head = kp_mlp_head_of(pb->task);
    if ((rc = kp_mlpnn_mlp_create(a.in, a.hidden, a.n_hidden, pb->n_out, a.batch_norm, 0, &m->net,
                               err, errlen)) < 0) {
        rc = kp_err_prefix(err, errlen, KP_ERR_FORMAT, kp_st_path(st));
        goto fail;
    }
    m->net->bn_eps = a.bn_eps;
    if (!(s = malloc(sizeof *s * 4 * (size_t)m->net->n_layers))) {
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory", kp_st_path(st));
        goto fail;
    }
    int n = slots_of(m->net, s);
    for (int i = 0; rc == 0 && i < n; i++)
        rc = load_slot(st, &s[i], err, errlen);
    if (rc == 0)
        rc = check_no_extra(st, s, n, err, errlen);
    if (rc < 0)
        goto fail;
    *model = m;
    m = NULL;
fail:
    free(s);
    kp_mlp_free(m);
    return rc;
}

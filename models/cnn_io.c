/* cnn_io.c - cnn checkpoints.
 *
 * The tensors are the net's, under PyTorch state_dict names (net.h); the
 * metadata holds what rebuilds it:
 *   cnn.arch   JSON array of the block strings (models/nn/arch.h)
 *   cnn.input  JSON array [C, H, W]
 *   cnn.mean, cnn.std   JSON arrays, per channel, in sample units
 *   cnn.batch  images per pass
 * Loading checks every value (a hostile file gets a message naming it) and
 * requires every tensor of the rebuilt net with its exact shape.
 */
#include <stdlib.h>
#include <string.h>
#include "../lib/err.h"
#include "../lib/parallel.h"
#include "ckpt_meta.h"
#include "cnn_int.h"
#include "nn/arch.h"

int kp_cnn_save(const void *model, kp_stw *w, char *err, size_t errlen)
{
    const kp_cnn *m = model;
    json_t *arch = json_array();
    char batch[24];
    for (int i = 0; arch && i < m->n_blocks; i++)
        json_array_append_new(arch, json_string(m->blocks[i]));
    snprintf(batch, sizeof batch, "%d", m->max_batch);
    int rc = kp_meta_set_json(w, "cnn.arch", arch);
    if (rc == 0)
        rc = kp_meta_set_json(w, "cnn.input", json_pack("[iii]", m->c, m->h, m->w));
    if (rc == 0)
        rc = kp_meta_set_json(w, "cnn.mean", kp_meta_floats(m->mean, m->c));
    if (rc == 0)
        rc = kp_meta_set_json(w, "cnn.std", kp_meta_floats(m->std, m->c));
    if (rc == 0 && kp_stw_meta(w, "cnn.batch", batch) < 0)
        rc = KP_ERR_NOMEM;
    if (rc < 0)
        return kp_errf(err, errlen, rc, "out of memory saving a cnn");
    return kp_nn_save(m->net, w, err, errlen);
}

/* Reads the [C, H, W] input and the batch. */
static int read_shape(const kp_st *st, kp_cnn *m, char *err, size_t errlen)
{
    json_t *in = kp_meta_parse(st, "cnn.input", err, errlen);
    const char *b = kp_st_meta(st, "cnn.batch");
    char *end = NULL;
    long batch = b ? strtol(b, &end, 10) : 0;
    int ok = in && json_is_array(in) && json_array_size(in) == 3;
    long long v[3] = {0, 0, 0};
    for (int i = 0; ok && i < 3; i++) {
        json_t *x = json_array_get(in, (size_t)i);
        ok = json_is_integer(x) && (v[i] = json_integer_value(x)) > 0 && v[i] <= 65536;
    }
    json_decref(in);
    if (!ok || v[0] > KP_CNN_MAX_CHANNELS || v[0] * v[1] * v[2] > (1LL << 28) || !end ||
        *end || batch < 1 || batch > 65536)
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: cnn.input or cnn.batch is not a valid "
                       "image shape and batch", kp_st_path(st));
    m->c = (int)v[0], m->h = (int)v[1], m->w = (int)v[2];
    m->max_batch = (int)batch;
    return 0;
}

/* Reads the block strings. */
static int read_arch(const kp_st *st, kp_cnn *m, char *err, size_t errlen)
{
    json_t *a = kp_meta_parse(st, "cnn.arch", err, errlen);
    int ok = a && json_is_array(a) && json_array_size(a) <= KP_CNN_MAX_BLOCKS;
    for (size_t i = 0; ok && i < json_array_size(a); i++) {
        const char *s = json_string_value(json_array_get(a, i));
        ok = s && (m->blocks[i] = strdup(s));
        m->n_blocks = ok ? (int)i + 1 : m->n_blocks;
    }
    json_decref(a);
    if (!ok)
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: cnn.arch is not a list of blocks",
                       kp_st_path(st));
    return kp_nn_arch_check((const char *const *)m->blocks, m->n_blocks, "cnn.arch", err,
                            errlen);
}

int kp_cnn_load(const kp_st *st, const kp_problem *pb, void **model, char *err,
                size_t errlen)
{
    kp_cnn *m = calloc(1, sizeof *m);
    if (!m)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    m->pb = *pb;
    int rc = read_shape(st, m, err, errlen);
    if (rc == 0)
        rc = kp_meta_read_floats(st, "cnn.mean", m->mean, m->c, 0, err, errlen);
    if (rc == 0)
        rc = kp_meta_read_floats(st, "cnn.std", m->std, m->c, 1, err, errlen);
    if (rc == 0)
        rc = read_arch(st, m, err, errlen);
    if (rc == 0)
        rc = kp_cnn_build(m, kp_thread_budget(), 0, err, errlen);
    if (rc == 0)
        rc = kp_nn_load(m->net, st, NULL, err, errlen);
    if (rc < 0) {
        kp_cnn_free(m);
        return rc;
    }
    *model = m;
    return 0;
}

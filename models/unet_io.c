/* unet_io.c - unet checkpoints.
 *
 * The tensors are the net's, under PyTorch state_dict names (unet_arch.c);
 * the metadata holds what rebuilds it:
 *   unet.arch    JSON {"depth": D, "base": B, "up": "transpose"|"bilinear",
 *                "encoder": "plain"|"residual"}
 *   unet.input   JSON [C, H, W]: the data set's images
 *   unet.tile    JSON [TILE, OVERLAP, BATCH] (TILE 0: whole images)
 *   unet.mean, unet.std   per channel, in sample units
 * Loading checks every value (a hostile file gets a message naming it) and
 * requires every tensor of the rebuilt net with its exact shape.
 */
#include <stdlib.h>
#include <string.h>
#include "../lib/err.h"
#include "../lib/parallel.h"
#include "ckpt_meta.h"
#include "unet_int.h"

int kp_unet_save(const void *model, kp_stw *w, char *err, size_t errlen)
{
    const kp_unet *m = model;
    const kp_unet_arch *a = &m->arch;
    int rc = kp_meta_set_json(w, "unet.arch", json_pack("{sisissss}", "depth", a->depth,
                                                        "base", a->base, "up",
                                                        a->bilinear ? "bilinear" : "transpose",
                                                        "encoder",
                                                        a->residual ? "residual" : "plain"));
    if (rc == 0)
        rc = kp_meta_set_json(w, "unet.input", json_pack("[iii]", m->c, m->h, m->w));
    if (rc == 0)
        rc = kp_meta_set_json(w, "unet.tile", json_pack("[iii]", m->tile, m->overlap,
                                                        m->max_batch));
    if (rc == 0)
        rc = kp_meta_set_json(w, "unet.mean", kp_meta_floats(m->mean, m->c));
    if (rc == 0)
        rc = kp_meta_set_json(w, "unet.std", kp_meta_floats(m->std, m->c));
    if (rc < 0)
        return kp_errf(err, errlen, rc, "out of memory saving a unet");
    return kp_nn_save(m->net, w, err, errlen);
}

/* Reads a JSON array of n integers in [lo, hi] from metadata key into v. */
static int read_ints(const kp_st *st, const char *key, int n, long long lo, long long hi,
                     int *v, char *err, size_t errlen)
{
    json_t *a = kp_meta_parse(st, key, err, errlen);
    int ok = a && json_is_array(a) && json_array_size(a) == (size_t)n;
    for (int i = 0; ok && i < n; i++) {
        json_t *x = json_array_get(a, (size_t)i);
        long long y = json_integer_value(x);
        ok = json_is_integer(x) && y >= lo && y <= hi;
        v[i] = (int)y;
    }
    json_decref(a);
    if (!ok)
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: %s is not %d integers in [%lld, %lld]",
                       kp_st_path(st), key, n, lo, hi);
    return 0;
}

/* Reads unet.arch. */
static int read_arch(const kp_st *st, kp_unet_arch *a, char *err, size_t errlen)
{
    json_t *o = kp_meta_parse(st, "unet.arch", err, errlen);
    json_int_t depth = 0, base = 0;
    const char *up = NULL, *enc = NULL;
    int ok = o && json_unpack(o, "{sIsIssss}", "depth", &depth, "base", &base, "up", &up,
                              "encoder", &enc) == 0;
    ok = ok && depth >= 1 && depth <= KP_UNET_MAX_DEPTH && base >= 1 && base <= 1024 &&
         (!strcmp(up, "transpose") || !strcmp(up, "bilinear")) &&
         (!strcmp(enc, "plain") || !strcmp(enc, "residual"));
    if (ok)
        *a = (kp_unet_arch){(int)depth, (int)base, !strcmp(up, "bilinear"),
                            !strcmp(enc, "residual")};
    json_decref(o);
    if (!ok && o)
        kp_errf(err, errlen, KP_ERR_FORMAT, "%s: unet.arch is not {depth 1..%d, base, up, "
                "encoder}", kp_st_path(st), KP_UNET_MAX_DEPTH);
    return ok ? 0 : KP_ERR_FORMAT;
}

/* Reads the input shape and tiling, and checks them against the problem. */
static int read_shape(const kp_st *st, kp_unet *m, char *err, size_t errlen)
{
    int in[3], tile[3], unit = 1 << m->arch.depth;
    int rc = read_ints(st, "unet.input", 3, 1, 65536, in, err, errlen);
    if (rc == 0)
        rc = read_ints(st, "unet.tile", 3, 0, 65536, tile, err, errlen);
    if (rc < 0)
        return rc;
    m->c = in[0], m->h = in[1], m->w = in[2];
    m->tile = tile[0], m->overlap = tile[1], m->max_batch = tile[2];
    m->net_h = m->tile ? m->tile : m->h, m->net_w = m->tile ? m->tile : m->w;
    if (m->c > KP_UNET_MAX_CHANNELS || m->max_batch < 1 || m->net_h % unit ||
        m->net_w % unit || m->net_h > m->h || m->net_w > m->w ||
        (m->tile && m->overlap >= m->tile) || m->h != m->pb.mask_h || m->w != m->pb.mask_w ||
        (int64_t)m->c * m->h * m->w > (1LL << 31))
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: unet.input %dx%dx%d or unet.tile "
                       "[%d, %d, %d] do not fit the net (depth %d) or the %dx%d masks",
                       kp_st_path(st), m->c, m->h, m->w, m->tile, m->overlap, m->max_batch,
                       m->arch.depth, m->pb.mask_w, m->pb.mask_h);
    return 0;
}

int kp_unet_load(const kp_st *st, const kp_problem *pb, void **model, char *err,
                 size_t errlen)
{
    kp_unet *m = calloc(1, sizeof *m);
    if (!m)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    m->pb = *pb;
    int rc = pb->task == KP_TASK_SEGMENTATION ? 0
             : kp_errf(err, errlen, KP_ERR_FORMAT, "%s: a unet checkpoint of task %s",
                       kp_st_path(st), kp_task_name(pb->task));
    if (rc == 0)
        rc = read_arch(st, &m->arch, err, errlen);
    if (rc == 0)
        rc = read_shape(st, m, err, errlen);
    if (rc == 0)
        rc = kp_meta_read_floats(st, "unet.mean", m->mean, m->c, 0, err, errlen);
    if (rc == 0)
        rc = kp_meta_read_floats(st, "unet.std", m->std, m->c, 1, err, errlen);
    if (rc == 0)
        rc = kp_unet_build(m, kp_thread_budget(), 0, err, errlen);
    if (rc == 0)
        rc = kp_nn_load(m->net, st, NULL, err, errlen);
    if (rc < 0) {
        kp_unet_free(m);
        return rc;
    }
    *model = m;
    return 0;
}

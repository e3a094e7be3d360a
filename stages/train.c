/* train.c - the train stage: one model fitted k-fold (x repeats) on a dataset.
 *
 *   lr:
 *     type: train
 *     needs: [prep, folds]
 *     model: logistic
 *     seed: 0            # part p fits with seed kp_rng_derive(seed, p)
 *     params: {C: 1.0}
 *
 * One part task per fold and repeat (see kfold.h), then a merge writing
 * DIR/preds.safetensors.  On a dataset of type images the model is an image
 * model (cnn) fitted on the images.
 */
#include <stdlib.h>
#include "kfold.h"
#include "../lib/err.h"

static const kp_keyspec train_keys[] = {
    {"model", KP_PT_STRING, NULL, NULL, 0, 0, "the model to fit (`kpipe models` lists them)"},
    {"seed", KP_PT_INT, "0", NULL, 0, 0, "fit seed; part p uses kp_rng_derive(seed, p)"},
    {NULL, 0, NULL, NULL, 0, 0, NULL},
};

static int train_check(kp_stage *st, const kp_config *cfg, char *err, size_t errlen)
{
    int rc = kp_kfold_check_needs(st, cfg, 0, 0, err, errlen);
    if (rc < 0)
        return rc;
    return kp_kfold_check_model(st, cfg, "model", kp_params_str(st->opts, "model", NULL),
                                err, errlen);
}

static int train_n_parts(const kp_stage *st, const kp_config *cfg)
{
    return kp_kfold_count(st, cfg);
}

static int train_outputs(const kp_stage *st, const kp_config *cfg, int part, kp_buf *out)
{
    (void)cfg;
    return kp_kfold_outputs(st, part, out);
}

/* Calls fn(path, data) for every path-typed model param of st, resolved
 * against the config's folder (the model opens them, e.g. cnn's `init`). */
static int each_model_path(const kp_stage *st, const kp_config *cfg,
                           int (*fn)(const char *key, const char *path, void *data), void *data)
{
    const kp_model_ops *m = kp_model_find(kp_params_str(st->opts, "model", ""));
    char path[4096];
    for (const kp_keyspec *k = m ? m->params : NULL; k && k->name; k++) {
        const char *v = k->type == KP_PT_PATH ? kp_params_get(st->params, k->name) : NULL;
        int rc = 0;
        if (v && *v && (rc = kp_config_path(cfg, v, path, sizeof path)) == 0)
            rc = fn(k->name, path, data);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int list_path(const char *key, const char *path, void *data)
{
    (void)key;
    return kp_buf_printf(data, "%s\n", path);
}

static int set_path(const char *key, const char *path, void *data)
{
    return kp_params_set(data, key, path, 0, 0);
}

/* A model's files (e.g. cnn's `init` weights) are the stage's inputs: a
 * changed file reruns it. */
static int train_inputs(const kp_stage *st, const kp_config *cfg, kp_buf *out)
{
    return each_model_path(st, cfg, list_path, out);
}

static int train_run(const kp_task_ctx *ctx, char *err, size_t errlen)
{
    kp_dataset *d = NULL;
    kp_folds *f = NULL;
    const kp_stage *st = ctx->stage;
    const char *name = kp_params_str(st->opts, "model", "");
    kp_params *params = kp_params_clone(st->params);   /* model paths resolved */
    if (!params || each_model_path(st, ctx->cfg, set_path, params) < 0) {
        kp_params_free(params);
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory resolving model paths");
    }
    kp_kfold kf = {
        .stage = st, .model = kp_model_find(name), .params = params,
        .seed = (uint64_t)kp_params_int(st->opts, "seed", 0), .threads = ctx->threads,
        .log = ctx->log,
    };
    int rc = kf.model ? 0 : kp_errf(err, errlen, KP_ERR_CONFIG, "unknown model '%s'", name);
    if (rc < 0 || (rc = kp_kfold_open_inputs(ctx, &d, &f, err, errlen)) < 0)
        goto fail;
    kf.pb = d->pb;
    kf.X_train = (kp_matrix){d->X_train, d->n_train, d->n_feat};
    kf.X_test = (kp_matrix){d->X_test, d->n_test, d->n_feat};
    if (d->images_train.data) {   /* an images dataset: image models fit the images */
        kf.images_train = &d->images_train;
        kf.images_test = &d->images_test;
    }
    kf.y = d->y;
    kf.folds = f;
    if ((rc = kp_kfold_metric(ctx->cfg, &kf.pb, &kf.metric, &kf.mopts, err, errlen)) < 0)
        goto fail;
    if (ctx->part >= 0)
        rc = kp_kfold_part(&kf, ctx->part, err, errlen);
    else
        rc = kp_kfold_merge(&kf, kp_st_meta(d->st, "classes"), err, errlen);
fail:
    kp_dataset_close(d);
    kp_folds_close(f);
    kp_params_free(params);
    return rc;
}

const kp_stage_ops kp_stage_train = {
    .name = "train",
    .doc = "fits a model k-fold and writes out-of-fold and test predictions",
    .keys = train_keys,
    .output = KP_ART_PREDS,
    .check = train_check,
    .n_parts = train_n_parts,
    .outputs = train_outputs,
    .inputs = train_inputs,
    .run = train_run,
};

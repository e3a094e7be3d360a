/* stage.c - helpers shared by stage types: finding needs, artifact paths. */
#include <stdio.h>
#include "stage.h"
#include "../lib/err.h"

int kp_stage_need_of_kind(const kp_stage *st, const kp_config *cfg, kp_artifact_kind kind)
{
    for (int i = 0; i < st->n_needs; i++) {
        const kp_stage *n = &cfg->stages[st->needs[i]];
        if (n->ops && n->ops->output == kind)
            return st->needs[i];
    }
    return -1;
}

static const char *artifact_file(kp_artifact_kind kind)
{
    switch (kind) {
    case KP_ART_DATASET: return "dataset.safetensors";
    case KP_ART_FOLDS: return "folds.safetensors";
    case KP_ART_PREDS: return "preds.safetensors";
    case KP_ART_SUBMISSION: return "submission.csv";
    default: return NULL;
    }
}

int kp_stage_artifact_path(const kp_stage *st, char *out, size_t outlen)
{
    const char *file = artifact_file(st->ops->output);
    if (!file)
        return KP_ERR_ARG;
    int n = snprintf(out, outlen, "%s/%s", st->dir, file);
    return n < 0 || (size_t)n >= outlen ? KP_ERR_ARG : 0;
}

int kp_stage_part_path(const kp_stage *st, int part, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%s/part%d.safetensors", st->dir, part);
    return n < 0 || (size_t)n >= outlen ? KP_ERR_ARG : 0;
}

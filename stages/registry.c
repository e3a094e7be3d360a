/* registry.c - every stage type kpipe knows; adding one is one line here. */
#include <string.h>
#include "stage.h"

extern const kp_stage_ops kp_stage_preprocess, kp_stage_folds, kp_stage_train,
    kp_stage_stack, kp_stage_submit, kp_stage_command, kp_stage_images;
extern const kp_stage_ops kp_stage_tta, kp_stage_fetch;

static const kp_stage_ops *const registry[] = {
    &kp_stage_preprocess,
    &kp_stage_folds,
    &kp_stage_train,
    &kp_stage_stack,
    &kp_stage_submit,
    &kp_stage_command,
    &kp_stage_images,
    &kp_stage_tta,
    &kp_stage_fetch,
};

#define N_STAGE_TYPES ((int)(sizeof registry / sizeof registry[0]))

int kp_stage_type_count(void) { return N_STAGE_TYPES; }

const kp_stage_ops *kp_stage_at(int i)
{
    return i >= 0 && i < N_STAGE_TYPES ? registry[i] : NULL;
}

const kp_stage_ops *kp_stage_find(const char *name)
{
    for (int i = 0; i < N_STAGE_TYPES; i++)
        if (strcmp(registry[i]->name, name) == 0)
            return registry[i];
    return NULL;
}

/* registry.c - every model kpipe knows; adding one is one line here. */
#include <string.h>
#include "model.h"

extern const kp_model_ops kp_model_logistic, kp_model_ridge, kp_model_knn, kp_model_naive_bayes,
    kp_model_mlp, kp_model_gbdt, kp_model_forest, kp_model_cnn, kp_model_unet;

static const kp_model_ops *const registry[] = {
    &kp_model_logistic,
    &kp_model_ridge,
    &kp_model_knn,
    &kp_model_naive_bayes,
    &kp_model_mlp,
    &kp_model_gbdt,
    &kp_model_forest,
    &kp_model_cnn,
    &kp_model_unet,
};

#define N_MODELS ((int)(sizeof registry / sizeof registry[0]))

int kp_model_count(void) { return N_MODELS; }

const kp_model_ops *kp_model_at(int i)
{
    return i >= 0 && i < N_MODELS ? registry[i] : NULL;
}

const kp_model_ops *kp_model_find(const char *name)
{
    for (int i = 0; name && i < N_MODELS; i++)
        if (strcmp(registry[i]->name, name) == 0)
            return registry[i];
    return NULL;
}

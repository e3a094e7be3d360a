/* registry.c - every metric kpipe knows; adding one is one line here. */
#include <string.h>
#include "../metric.h"

extern const kp_metric_ops kp_metric_accuracy, kp_metric_logloss, kp_metric_auc,
    kp_metric_rmse, kp_metric_rmsle, kp_metric_mae, kp_metric_f1, kp_metric_fbeta,
    kp_metric_f1_samples, kp_metric_fbeta_samples;
extern const kp_metric_ops kp_metric_dice, kp_metric_iou;

static const kp_metric_ops *const registry[] = {
    &kp_metric_accuracy,
    &kp_metric_logloss,
    &kp_metric_auc,
    &kp_metric_rmse,
    &kp_metric_rmsle,
    &kp_metric_mae,
    &kp_metric_f1,
    &kp_metric_fbeta,
    &kp_metric_f1_samples,
    &kp_metric_fbeta_samples,
    &kp_metric_dice, &kp_metric_iou,
};

#define N_METRICS ((int)(sizeof registry / sizeof registry[0]))

int kp_metric_count(void) { return N_METRICS; }

const kp_metric_ops *kp_metric_at(int i)
{
    return i >= 0 && i < N_METRICS ? registry[i] : NULL;
}

const kp_metric_ops *kp_metric_find(const char *name)
{
    for (int i = 0; name && i < N_METRICS; i++)
        if (strcmp(registry[i]->name, name) == 0)
            return registry[i];
    return NULL;
}

kp_metric_opts kp_metric_defaults(void)
{
    return (kp_metric_opts){ .beta = 1, .threshold = 0.5, .thresholds = NULL,
                             .empty_score = 1 };
}

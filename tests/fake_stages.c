/* fake_stages.c - a test-only stand-in for the stage, task and metric
 * registries, so tests/test_config.c can be built alone with tests/unit.sh:
 *
 *   sh tests/unit.sh config tests/test_config.c tests/fake_stages.c \
 *       pipeline/config.c pipeline/config_yaml.c pipeline/config_stages.c \
 *       lib/params.c lib/err.c lib/buf.c
 *
 * The stage types carry the names and keys of the real ones (in stages/)
 * that the config tests use, without their checks.  Not part of the
 * Makefile's build (its name does not start with test_).
 */
#include <string.h>
#include "../stages/stage.h"
#include "../models/metric.h"
#include "../lib/err.h"

static const kp_keyspec preprocess_keys[] = {
    {"standardize", KP_PT_BOOL, "false", NULL, 0, 0, "scale features"},
    {NULL, 0, NULL, NULL, 0, 0, NULL},
};

static const kp_keyspec train_keys[] = {
    {"model", KP_PT_STRING, NULL, NULL, 0, 0, "the model to fit"},
    {"seed", KP_PT_INT, "0", NULL, 0, 0, "fit seed"},
    {NULL, 0, NULL, NULL, 0, 0, NULL},
};

static const kp_keyspec command_keys[] = {
    {"run", KP_PT_STRING, NULL, NULL, 0, 0, "shell command"},
    {"deps", KP_PT_LIST, "", NULL, 0, 0, "files read"},
    {"outs", KP_PT_LIST, NULL, NULL, 0, 0, "files written"},
    {NULL, 0, NULL, NULL, 0, 0, NULL},
};

static const kp_keyspec folds_keys[] = {
    {"k", KP_PT_INT, "", NULL, 2, 1e9, "number of folds"},
    {"kind", KP_PT_ENUM, "", "plain|stratified|group", 0, 0, "how rows are split"},
    {"seed", KP_PT_INT, "", NULL, 0, 0, "shuffle seed"},
    {"repeats", KP_PT_INT, "", NULL, 1, 1000, "independent fold sets"},
    {"group", KP_PT_STRING, "", NULL, 0, 0, "group column"},
    {NULL, 0, NULL, NULL, 0, 0, NULL},
};

static const kp_stage_ops fakes[] = {
    {.name = "preprocess", .keys = preprocess_keys, .output = KP_ART_DATASET},
    {.name = "folds", .keys = folds_keys, .output = KP_ART_FOLDS},
    {.name = "train", .keys = train_keys, .output = KP_ART_PREDS},
    {.name = "command", .keys = command_keys, .output = KP_ART_FILES},
};

#define N_FAKES ((int)(sizeof fakes / sizeof fakes[0]))

int kp_stage_type_count(void) { return N_FAKES; }

const kp_stage_ops *kp_stage_at(int i) { return i >= 0 && i < N_FAKES ? &fakes[i] : NULL; }

const kp_stage_ops *kp_stage_find(const char *name)
{
    for (int i = 0; i < N_FAKES; i++)
        if (strcmp(fakes[i].name, name) == 0)
            return &fakes[i];
    return NULL;
}

/* ---- tasks and metrics, as models/model.c and models/metrics/ name them ---- */

static const char *const tasks[] = {"binary", "multiclass", "regression", "multilabel"};

int kp_task_parse(const char *s, kp_task_kind *out)
{
    for (int t = 0; t < KP_TASK_COUNT; t++)
        if (s && strcmp(s, tasks[t]) == 0) {
            *out = (kp_task_kind)t;
            return 0;
        }
    return KP_ERR_ARG;
}

const char *kp_task_name(kp_task_kind t)
{
    return (unsigned)t < KP_TASK_COUNT ? tasks[t] : "unknown";
}

#define B KP_TASK_BIT(KP_TASK_BINARY)
#define MC KP_TASK_BIT(KP_TASK_MULTICLASS)
#define ML KP_TASK_BIT(KP_TASK_MULTILABEL)

/* Some of the real metrics, with the real task masks. */
static const kp_metric_ops metrics[] = {
    {.name = "accuracy", .greater_is_better = 1, .tasks = B | MC | ML},
    {.name = "logloss", .tasks = B | MC},
    {.name = "auc", .greater_is_better = 1, .tasks = B | MC | ML},
    {.name = "rmse", .tasks = KP_TASK_BIT(KP_TASK_REGRESSION)},
};

#define N_METRICS ((int)(sizeof metrics / sizeof metrics[0]))

int kp_metric_count(void) { return N_METRICS; }

const kp_metric_ops *kp_metric_at(int i) { return i >= 0 && i < N_METRICS ? &metrics[i] : NULL; }

const kp_metric_ops *kp_metric_find(const char *name)
{
    for (int i = 0; i < N_METRICS; i++)
        if (strcmp(metrics[i].name, name) == 0)
            return &metrics[i];
    return NULL;
}

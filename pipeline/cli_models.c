/* cli_models.c - `kpipe models [MODEL]`: the model zoo and its parameters. */
#include "cli.h"

#include <stdio.h>
#include <string.h>
#include "../lib/err.h"
#include "../models/model.h"

const char kp_help_models[] =
    "usage: kpipe models [MODEL]\n"
    "\n"
    "Without MODEL: one line per registered model (name, tasks, what it is).\n"
    "With MODEL: its parameters, as a train stage's `params:` takes them, with\n"
    "type, default, allowed values and meaning.  docs/config.md documents the\n"
    "same (a test keeps the two in step).\n"
    "\n"
    "options:\n"
    "  -h, --help   this help\n";

static const char *type_name(kp_ptype t)
{
    switch (t) {
    case KP_PT_STRING: return "string";
    case KP_PT_INT: return "int";
    case KP_PT_FLOAT: return "float";
    case KP_PT_BOOL: return "bool";
    case KP_PT_ENUM: return "enum";
    case KP_PT_LIST: return "list";
    case KP_PT_PATH: return "path";
    }
    return "?";
}

/* Writes the model's supported tasks ("binary multiclass ...") into buf. */
static void tasks_text(const kp_model_ops *m, char *buf, size_t n)
{
    buf[0] = 0;
    for (int t = 0; t < KP_TASK_COUNT; t++)
        if (m->tasks & KP_TASK_BIT(t)) {
            size_t used = strlen(buf);
            snprintf(buf + used, n - used, "%s%s", used ? " " : "", kp_task_name((kp_task_kind)t));
        }
}

/* Writes what values a parameter takes ("a|b|c", "[0, 1]", "") into buf. */
static void range_text(const kp_keyspec *k, char *buf, size_t n)
{
    if (k->type == KP_PT_ENUM && k->choices)
        snprintf(buf, n, "%s", k->choices);
    else if ((k->type == KP_PT_INT || k->type == KP_PT_FLOAT) && k->min < k->max)
        snprintf(buf, n, "[%g, %g]", k->min, k->max);
    else
        buf[0] = 0;
}

static void print_list(void)
{
    char tasks[128];
    printf("%-12s %-40s %s\n", "MODEL", "TASKS", "WHAT");
    for (int i = 0; i < kp_model_count(); i++) {
        const kp_model_ops *m = kp_model_at(i);
        tasks_text(m, tasks, sizeof tasks);
        printf("%-12s %-40s %s\n", m->name, tasks, m->doc);
    }
    printf("\n`kpipe models MODEL` lists a model's parameters.\n");
}

static void print_model(const kp_model_ops *m)
{
    char tasks[128], range[256];
    tasks_text(m, tasks, sizeof tasks);
    printf("%s: %s\ntasks: %s\n\n", m->name, m->doc, tasks);
    printf("%-22s %-7s %-12s %-24s %s\n", "PARAMETER", "TYPE", "DEFAULT", "VALUES", "MEANING");
    for (const kp_keyspec *k = m->params; k && k->name; k++) {
        range_text(k, range, sizeof range);
        printf("%-22s %-7s %-12s %-24s %s\n", k->name, type_name(k->type),
               !k->def ? "(required)" : *k->def ? k->def : "(none)", range, k->doc ? k->doc : "");
    }
}

static int no_options(int opt, const char *arg, void *data)
{
    (void)opt;
    (void)arg;
    (void)data;
    return kp_cli_error(KP_EXIT_USAGE, "models: unexpected option");
}

static const struct option models_longopts[] = {
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

int kp_cmd_models(int argc, char **argv)
{
    const char *pos[1];
    int n = 0;
    int rc = kp_cli_parse_args(argc, argv, "h", models_longopts, kp_help_models, no_options, NULL,
                               0, 1, "MODEL", pos, &n);
    if (rc)
        return rc < 0 ? KP_EXIT_OK : rc;
    if (n == 0) {
        print_list();
        return KP_EXIT_OK;
    }
    const kp_model_ops *m = kp_model_find(pos[0]);
    if (!m) {
        const char *names[64];
        int k = 0;
        for (; k < kp_model_count() && k < 64; k++)
            names[k] = kp_model_at(k)->name;
        const char *near = kp_suggest(pos[0], names, k);
        return kp_cli_error(KP_EXIT_USAGE, "models: unknown model '%s'%s%s%s", pos[0],
                            near ? " (did you mean '" : " (see kpipe models)", near ? near : "",
                            near ? "'?)" : "");
    }
    print_model(m);
    return KP_EXIT_OK;
}

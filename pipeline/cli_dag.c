/* cli_dag.c - `kpipe dag` (the stage graph as text or Graphviz) and `kpipe clean`. */
#include "cli.h"

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "fs.h"
#include "../lib/err.h"
#include "../stages/stage.h"

const char kp_help_dag[] =
    "usage: kpipe dag CONFIG [--dot]\n"
    "\n"
    "Prints the stage graph: each stage (matrix combinations expanded) with its\n"
    "type, its number of tasks and the stages it needs.\n"
    "\n"
    "options:\n"
    "      --dot    print it in Graphviz's dot language instead\n"
    "               (kpipe dag CONFIG --dot | dot -Tsvg > dag.svg)\n"
    "  -h, --help   this help\n";

const char kp_help_clean[] =
    "usage: kpipe clean CONFIG\n"
    "\n"
    "Removes everything in CONFIG's run directory (run_dir: its artifacts, logs\n"
    "and run log), so the next run starts from scratch.  Files outside the run\n"
    "directory (a submission written elsewhere) are left alone.  Refuses while\n"
    "a run is using the directory.\n"
    "\n"
    "options:\n"
    "  -h, --help   this help\n";

static int tasks_of(const kp_graph *g, int stage)
{
    int n = 0;
    for (int i = 0; i < kp_graph_count(g); i++)
        n += kp_graph_task(g, i)->stage == stage;
    return n;
}

static void print_text(const kp_cli_ctx *ctx)
{
    const kp_config *cfg = ctx->cfg;
    int w = 5;
    for (int i = 0; i < cfg->n_stages; i++) {
        int n = (int)strlen(cfg->stages[i].name);
        w = n > w && n <= 60 ? n : w;
    }
    for (int i = 0; i < cfg->n_stages; i++) {
        const kp_stage *st = &cfg->stages[i];
        int n = tasks_of(ctx->g, i);
        printf("%-*s  %-10s  %3d task%s", w, st->name, st->type, n, n == 1 ? " " : "s");
        for (int j = 0; j < st->n_needs; j++)
            printf("%s%s", j ? ", " : "  needs ", cfg->stages[st->needs[j]].name);
        putchar('\n');
    }
}

/* Prints s as a dot string literal. */
static void dot_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            putchar('\\');
        putchar(*s);
    }
    putchar('"');
}

static void print_dot(const kp_cli_ctx *ctx)
{
    const kp_config *cfg = ctx->cfg;
    printf("digraph kpipe {\n  rankdir=LR;\n  node [shape=box];\n");
    for (int i = 0; i < cfg->n_stages; i++) {
        const kp_stage *st = &cfg->stages[i];
        int n = tasks_of(ctx->g, i);
        printf("  ");
        dot_string(st->name);
        printf(" [label=\"");
        for (const char *p = st->name; *p; p++) {
            if (*p == '"' || *p == '\\')
                putchar('\\');
            putchar(*p);
        }
        printf("\\n%s, %d task%s\"];\n", st->type, n, n == 1 ? "" : "s");
    }
    for (int i = 0; i < cfg->n_stages; i++) {
        const kp_stage *st = &cfg->stages[i];
        for (int j = 0; j < st->n_needs; j++) {
            printf("  ");
            dot_string(cfg->stages[st->needs[j]].name);
            printf(" -> ");
            dot_string(st->name);
            printf(";\n");
        }
    }
    printf("}\n");
}

static int on_dag_opt(int opt, const char *arg, void *data)
{
    (void)arg;
    if (opt != 'd')
        return kp_cli_error(KP_EXIT_USAGE, "unexpected option");
    *(int *)data = 1;
    return 0;
}

static const struct option dag_longopts[] = {
    {"dot", no_argument, NULL, 'd'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

int kp_cmd_dag(int argc, char **argv)
{
    const char *config;
    kp_cli_ctx ctx;
    int dot = 0;
    int rc = kp_cli_parse(argc, argv, "h", dag_longopts, kp_help_dag, on_dag_opt, &dot, &config);
    if (rc)
        return rc < 0 ? KP_EXIT_OK : rc;
    if ((rc = kp_cli_load(config, &ctx)) != 0)
        return rc;
    if (dot)
        print_dot(&ctx);
    else
        print_text(&ctx);
    kp_cli_done(&ctx);
    return KP_EXIT_OK;
}

/* ---- clean ---- */

static int n_removed, n_remove_failed;

static int remove_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag;
    if (ftw->level == 0)
        return 0;   /* the run dir itself stays */
    if (remove(path) == 0)
        n_removed++;
    else if (n_remove_failed++ == 0)
        kp_cli_error(KP_EXIT_IO, "clean: cannot remove %s: %s", path, strerror(errno));
    return 0;
}

/* Refuses run dirs whose removal would take the config or the whole disk with it. */
static int check_run_dir(const kp_config *cfg, const char *run_dir)
{
    size_t n = strlen(run_dir);
    if (n == 0 || strcmp(run_dir, "/") == 0)
        return kp_cli_error(KP_EXIT_CONFIG, "clean: refusing to clean run_dir '%s'", run_dir);
    if (strcmp(run_dir, cfg->dir) == 0 ||
        (strncmp(cfg->dir, run_dir, n) == 0 && cfg->dir[n] == '/'))
        return kp_cli_error(KP_EXIT_CONFIG,
                            "clean: refusing to clean %s: it holds the config folder %s",
                            run_dir, cfg->dir);
    return 0;
}

static int clean(kp_cli_ctx *ctx)
{
    char err[KP_ERRLEN] = "", lock_path[4300], real[PATH_MAX];
    kp_fs *fs = kp_fs_real();
    struct stat sb;
    const char *run_dir = realpath(ctx->cfg->run_dir, real) ? real : ctx->cfg->run_dir;
    int token = -1, rc = check_run_dir(ctx->cfg, run_dir);
    if (rc)
        return rc;
    if (stat(run_dir, &sb) != 0) {
        printf("nothing to clean: %s does not exist\n", run_dir);
        return KP_EXIT_OK;
    }
    snprintf(lock_path, sizeof lock_path, "%s/lock", ctx->state_dir);
    if (fs->ops->mkdirs(fs, ctx->state_dir, err, sizeof err) < 0 ||
        fs->ops->lock(fs, lock_path, &token, err, sizeof err) < 0)
        return kp_cli_error(KP_EXIT_IO, "clean: %s", err);
    n_removed = n_remove_failed = 0;
    nftw(run_dir, remove_one, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
    fs->ops->unlock(fs, token);
    printf("removed %d entr%s from %s\n", n_removed, n_removed == 1 ? "y" : "ies", run_dir);
    return n_remove_failed ? KP_EXIT_IO : KP_EXIT_OK;
}

int kp_cmd_clean(int argc, char **argv)
{
    const char *config;
    kp_cli_ctx ctx;
    int rc = kp_cli_parse(argc, argv, "h", dag_longopts + 1, kp_help_clean, on_dag_opt, NULL,
                          &config);
    if (rc)
        return rc < 0 ? KP_EXIT_OK : rc;
    if ((rc = kp_cli_load(config, &ctx)) != 0)
        return rc;
    rc = clean(&ctx);
    kp_cli_done(&ctx);
    return rc;
}

/* cli_run.c - `kpipe run` and `kpipe plan`: the executor from the command line. */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "exec.h"
#include "fs.h"
#include "progress.h"
#include "runner.h"
#include "stamp.h"
#include "../lib/err.h"

#define MAX_NAMES 256
#define MAX_JOBS 1024

const char kp_help_run[] =
    "usage: kpipe run CONFIG [options]\n"
    "\n"
    "Runs the stale tasks of CONFIG's stages in parallel: a task runs when its\n"
    "config, its code version or the content of its inputs changed since it\n"
    "last ran, or an output of it is missing.\n"
    "\n"
    "options:\n"
    "  -j, --jobs N       run up to N tasks at once (default: the number of cores);\n"
    "                     each task gets max(1, cores / N) threads\n"
    "      --only STAGE   run only STAGE and what it needs (repeatable; a matrix\n"
    "                     stage's base name selects all its combinations)\n"
    "      --force STAGE  re-run STAGE even if it is up to date (repeatable)\n"
    "  -k, --keep-going   after a failure, go on with tasks that do not need it\n"
    "  -n, --dry-run      print what would run and why; run nothing\n"
    "  -h, --help         this help\n";

const char kp_help_plan[] =
    "usage: kpipe plan CONFIG [options]\n"
    "\n"
    "Prints every task and whether it would run and why: \"up to date\",\n"
    "\"run: never run\", \"run: config changed\", \"run: input changed: PATH\",\n"
    "\"run: output missing: PATH\", \"run: upstream TASK will run\", ...\n"
    "Runs nothing and writes nothing.\n"
    "\n"
    "options:\n"
    "      --only STAGE   plan only STAGE and what it needs (repeatable)\n"
    "      --force STAGE  as if STAGE were forced (repeatable)\n"
    "  -h, --help         this help\n";

enum { OPT_ONLY = 1000, OPT_FORCE };

typedef struct run_args {
    int jobs, keep_going, dry_run;
    const char *only[MAX_NAMES], *force[MAX_NAMES];
    int n_only, n_force;
} run_args;

static int parse_jobs(const char *s, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 1 || v > MAX_JOBS)
        return kp_cli_error(KP_EXIT_USAGE, "run: -j expects a whole number from 1 to %d, not '%s'",
                            MAX_JOBS, s);
    *out = (int)v;
    return 0;
}

static int add_name(const char **names, int *n, const char *name, const char *opt)
{
    if (*n == MAX_NAMES)
        return kp_cli_error(KP_EXIT_USAGE, "%s given more than %d times", opt, MAX_NAMES);
    names[(*n)++] = name;
    return 0;
}

static int on_run_opt(int opt, const char *arg, void *data)
{
    run_args *a = data;
    switch (opt) {
    case 'j': return parse_jobs(arg, &a->jobs);
    case 'k': a->keep_going = 1; return 0;
    case 'n': a->dry_run = 1; return 0;
    case OPT_ONLY: return add_name(a->only, &a->n_only, arg, "--only");
    case OPT_FORCE: return add_name(a->force, &a->n_force, arg, "--force");
    default: return kp_cli_error(KP_EXIT_USAGE, "unexpected option");
    }
}

static const struct option run_longopts[] = {
    {"jobs", required_argument, NULL, 'j'},
    {"only", required_argument, NULL, OPT_ONLY},
    {"force", required_argument, NULL, OPT_FORCE},
    {"keep-going", no_argument, NULL, 'k'},
    {"dry-run", no_argument, NULL, 'n'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static const struct option plan_longopts[] = {
    {"only", required_argument, NULL, OPT_ONLY},
    {"force", required_argument, NULL, OPT_FORCE},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* Runs (or plans) the loaded config with the options; returns an exit code. */
static int execute(kp_cli_ctx *ctx, const run_args *a, int explain, const char *stamp)
{
    char err[KP_ERRLEN] = "";
    int cores = kp_cli_cores(), jobs = a->jobs > 0 ? a->jobs : cores;
    kp_exec_opts o = {
        .state_dir = ctx->state_dir, .jobs = jobs,
        .only = a->only, .n_only = a->n_only, .force = a->force, .n_force = a->n_force,
        .keep_going = a->keep_going, .dry_run = a->dry_run, .explain = explain,
        .out = stdout, .tty = isatty(fileno(stdout)),
        .stamp_path = stamp, .config_hash = ctx->cfg->text_hash,
    };
    kp_runner *r = NULL;
    kp_exec_summary sum = { 0 };
    int rc = 0;
    if (!a->dry_run && !explain)
        rc = kp_runner_fork_create(ctx->cfg, jobs, kp_runner_thread_budget(cores, jobs), &r,
                                   err, sizeof err);
    if (rc == 0)
        rc = kp_exec_run(ctx->g, r, kp_fs_real(), &o, &sum, err, sizeof err);
    kp_runner_free(r);   /* restores the signal mask */
    fflush(stdout);
    if (rc == KP_ERR_TASK && sum.interrupted)
        return kp_cli_error(KP_EXIT_INTERRUPTED, "interrupted");
    if (rc < 0)
        return kp_cli_error(kp_cli_exit_code(rc), "%s", err);
    return KP_EXIT_OK;
}

/* When the up-to-date stamp proves there is nothing to do, prints the
 * summary a no-op run prints and returns 1; else 0 (see stamp.h). */
static int report_stamped(const char *stamp, const char *config)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int n = kp_stamp_check(stamp, config);
    if (n < 0)
        return 0;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    char dur[32];
    kp_progress_duration((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000,
                         dur, sizeof dur);
    printf("0 ran, %d up to date, 0 failed, 0 blocked, 0 not run in %s\n", n, dur);
    return 1;
}

static int command(int argc, char **argv, const char *shortopts, const struct option *longopts,
                   const char *help, int explain)
{
    run_args a;
    const char *config;
    kp_cli_ctx ctx;
    char stamp[4200];
    memset(&a, 0, sizeof a);
    int rc = kp_cli_parse(argc, argv, shortopts, longopts, help, on_run_opt, &a, &config);
    if (rc)
        return rc < 0 ? KP_EXIT_OK : rc;
    int changes = !explain && !a.dry_run;   /* this command may run tasks */
    int has_stamp = changes && kp_stamp_path(config, stamp, sizeof stamp) == 0;
    if (has_stamp && a.n_only == 0 && a.n_force == 0 && report_stamped(stamp, config))
        return KP_EXIT_OK;
    if ((rc = kp_cli_load(config, &ctx)) != 0)
        return rc;
    rc = execute(&ctx, &a, explain, has_stamp ? stamp : NULL);
    kp_cli_keep(&ctx);   /* main returns rc next: exit frees it all at once */
    return rc;
}

int kp_cmd_run(int argc, char **argv)
{
    return command(argc, argv, "j:knh", run_longopts, kp_help_run, 0);
}

int kp_cmd_plan(int argc, char **argv)
{
    return command(argc, argv, "h", plan_longopts, kp_help_plan, 1);
}

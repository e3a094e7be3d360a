/* cli_status.c - `kpipe status`: each stage's state and cost, the CV
 * leaderboard, and the submissions' CV against the Kaggle leaderboard. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "exec.h"
#include "fs.h"
#include "progress.h"
#include "../lib/err.h"
#include "../lib/ledger.h"
#include "../models/metric.h"
#include "../stages/artifact.h"
#include "../stages/stage.h"

const char kp_help_status[] =
    "usage: kpipe status CONFIG\n"
    "\n"
    "Prints each stage's state (up to date, stale, failed, never run) with the\n"
    "wall time, CPU time and peak memory of its tasks' last runs, and a\n"
    "leaderboard of the stages that make predictions, sorted by their\n"
    "cross-validation score (mean +- std over folds), and the last submissions\n"
    "of each submit stage from its ledger (ledger.csv beside its output): CV\n"
    "against the public and private leaderboard scores.  Runs nothing.\n"
    "\n"
    "options:\n"
    "  -h, --help   this help\n";

typedef struct stage_row {
    int n_tasks, n_recorded, n_stale, n_failed;
    int64_t wall_ms, cpu_ms, rss_kb;
} stage_row;

typedef struct board_row {
    const kp_stage *st;
    double mean, std;
    int n_folds;
    char model[64];
} board_row;

static const char *state_of(const stage_row *r)
{
    if (r->n_failed)
        return "failed";
    if (r->n_recorded == 0)
        return "never run";
    return r->n_stale ? "stale" : "up to date";
}

static void add_task(stage_row *r, const kp_task_plan *p)
{
    r->n_tasks++;
    r->n_stale += p->will_run;
    if (!p->has_entry)
        return;
    r->n_recorded++;
    r->n_failed += p->last_exit != 0;
    r->wall_ms += p->wall_ms;
    r->cpu_ms += p->cpu_ms;
    if (p->rss_kb > r->rss_kb)
        r->rss_kb = p->rss_kb;
}

static int name_width(const kp_config *cfg)
{
    int w = 5;
    for (int i = 0; i < cfg->n_stages; i++) {
        int n = (int)strlen(cfg->stages[i].name);
        w = n > w && n <= 60 ? n : w;
    }
    return w;
}

static void print_stages(const kp_config *cfg, const stage_row *rows)
{
    int w = name_width(cfg);
    printf("%-*s  %-10s  %5s  %9s  %9s  %9s\n", w, "stage", "state", "tasks", "wall", "cpu",
           "peak rss");
    for (int i = 0; i < cfg->n_stages; i++) {
        const stage_row *r = &rows[i];
        char wall[32] = "-", cpu[32] = "-", rss[32] = "-";
        if (r->n_recorded) {
            kp_progress_duration(r->wall_ms, wall, sizeof wall);
            kp_progress_duration(r->cpu_ms, cpu, sizeof cpu);
            snprintf(rss, sizeof rss, "%.1f MB", (double)r->rss_kb / 1024);
        }
        printf("%-*s  %-10s  %5d  %9s  %9s  %9s\n", w, cfg->stages[i].name, state_of(r),
               r->n_tasks, wall, cpu, rss);
    }
}

static int greater_first;

static int cmp_board(const void *a, const void *b)
{
    const board_row *x = a, *y = b;
    if (x->mean != y->mean)
        return (x->mean < y->mean) == greater_first ? 1 : -1;
    return strcmp(x->st->name, y->st->name);
}

/* Fills rows with the CV scores of every prediction stage that has its artifact. */
static int collect_board(const kp_config *cfg, board_row *rows)
{
    int n = 0;
    for (int i = 0; i < cfg->n_stages; i++) {
        const kp_stage *st = &cfg->stages[i];
        char path[4200], err[KP_ERRLEN];
        kp_preds *p = NULL;
        if (st->ops->output != KP_ART_PREDS || kp_stage_artifact_path(st, path, sizeof path) < 0 ||
            kp_preds_open(path, &p, err, sizeof err) < 0)
            continue;
        rows[n] = (board_row){ st, p->cv_mean, p->cv_std, p->n_folds, "" };
        snprintf(rows[n].model, sizeof rows[n].model, "%s", p->model);
        n++;
        kp_preds_close(p);
    }
    return n;
}

static void print_board(const kp_config *cfg)
{
    board_row *rows = calloc((size_t)cfg->n_stages + 1, sizeof *rows);
    if (!rows)
        return;
    int n = collect_board(cfg, rows), w = name_width(cfg);
    const kp_metric_ops *m = kp_metric_find(cfg->comp.metric);
    greater_first = m ? m->greater_is_better : 1;
    qsort(rows, (size_t)n, sizeof *rows, cmp_board);
    if (n > 0)
        printf("\nleaderboard (%s, %s is better; cv mean +- std over folds):\n",
               cfg->comp.metric, greater_first ? "higher" : "lower");
    for (int i = 0; i < n; i++)
        printf("%4d  %-*s  %.6f +- %.6f  (%d folds)  %s\n", i + 1, w, rows[i].st->name,
               rows[i].mean, rows[i].std, rows[i].n_folds, rows[i].model);
    free(rows);
}

/* ---- submissions: the ledgers of the submit stages ---- */

enum { LEDGER_ROWS = 10 };

/* Copies s into out (n bytes) with control characters as spaces; "-" if empty. */
static const char *cell(const char *s, char *out, size_t n, size_t width)
{
    size_t i = 0;
    for (; s[i] && i + 1 < n && i < width; i++)
        out[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? ' ' : s[i];
    out[i] = 0;
    return i ? out : "-";
}

/* Prints the last rows of file in l, oldest first. */
static void print_ledger_rows(const kp_ledger *l, const char *file)
{
    int idx[LEDGER_ROWS], n = 0;
    for (int i = kp_ledger_count(l) - 1; i >= 0 && n < LEDGER_ROWS; i--)
        if (strcmp(kp_ledger_at(l, i)->file, file) == 0)
            idx[n++] = i;
    printf("  %-20s  %-8s  %-10s  %-10s  %-10s  %-12s  %s\n", "time", "event", "cv", "public",
           "private", "ref", "message");
    while (n-- > 0) {
        const kp_ledger_row *r = kp_ledger_at(l, idx[n]);
        char a[32], b[32], c[32], d[32], e[64];
        printf("  %-20s  %-8s  %-10s  %-10s  %-10s  %-12s  %s\n", r->time, r->event,
               cell(r->cv, a, sizeof a, 10), cell(r->public_score, b, sizeof b, 10),
               cell(r->private_score, c, sizeof c, 10), cell(r->ref, d, sizeof d, 12),
               cell(r->message, e, sizeof e, 60));
    }
}

/* Notes when the newest `written` row of file has no upload of its prediction. */
static void print_upload_note(const kp_ledger *l, const char *file)
{
    for (int i = kp_ledger_count(l) - 1; i >= 0; i--) {
        const kp_ledger_row *r = kp_ledger_at(l, i);
        if (strcmp(r->file, file) != 0 || strcmp(r->event, "written") != 0)
            continue;
        if (kp_ledger_find_upload(l, r->competition, r->prediction_hash) < 0)
            printf("  note: the newest %s (written %s) has not been uploaded\n", file, r->time);
        return;
    }
}

/* Returns 1 when an earlier submit stage than i writes the same output. */
static int output_seen(const kp_config *cfg, int i, const char *out)
{
    for (int j = 0; j < i; j++) {
        const kp_stage *st = &cfg->stages[j];
        char o[4200];
        const char *rel = kp_params_str(st->opts, "output", "");
        if (st->ops->output == KP_ART_SUBMISSION && *rel &&
            kp_config_path(cfg, rel, o, sizeof o) == 0 && strcmp(o, out) == 0)
            return 1;
    }
    return 0;
}

/* Prints the ledger rows of submit stage i's output; returns 1 if printed. */
static int print_stage_ledger(const kp_config *cfg, int i, int printed)
{
    const kp_stage *st = &cfg->stages[i];
    const char *rel = kp_params_str(st->opts, "output", "");
    char out[4200], path[4300], err[KP_ERRLEN];
    kp_ledger *l = NULL;
    if (st->ops->output != KP_ART_SUBMISSION || !*rel ||
        kp_config_path(cfg, rel, out, sizeof out) < 0 || output_seen(cfg, i, out) ||
        kp_ledger_path_for(out, path, sizeof path) < 0 || access(path, F_OK) != 0)
        return 0;
    const char *slash = strrchr(out, '/'), *file = slash ? slash + 1 : out;
    if (!printed)
        printf("\nsubmissions (cv: %s out of fold; public, private: the Kaggle leaderboard):\n",
               cfg->comp.metric);
    printf("%s -> %s\n", st->name, path);
    if (kp_ledger_read(path, &l, err, sizeof err) < 0)
        printf("  cannot read the ledger: %s\n", err);
    else {
        print_ledger_rows(l, file);
        print_upload_note(l, file);
    }
    kp_ledger_free(l);
    return 1;
}

/* Prints the submissions of every submit stage that has a ledger. */
static void print_submissions(const kp_config *cfg)
{
    int printed = 0;
    for (int i = 0; i < cfg->n_stages; i++)
        printed |= print_stage_ledger(cfg, i, printed);
}

static int status(kp_cli_ctx *ctx)
{
    char err[KP_ERRLEN] = "";
    int n = kp_graph_count(ctx->g);
    kp_task_plan *plans = calloc((size_t)n + 1, sizeof *plans);
    stage_row *rows = calloc((size_t)ctx->cfg->n_stages + 1, sizeof *rows);
    kp_exec_opts o = { .state_dir = ctx->state_dir };
    int rc = plans && rows ? kp_exec_plan(ctx->g, kp_fs_real(), &o, plans, err, sizeof err)
                           : kp_errf(err, sizeof err, KP_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n && rc == 0; i++) {
        const kp_task *t = kp_graph_task(ctx->g, i);
        if (t->stage >= 0)
            add_task(&rows[t->stage], &plans[i]);
    }
    if (rc == 0) {
        print_stages(ctx->cfg, rows);
        print_board(ctx->cfg);
        print_submissions(ctx->cfg);
    }
    free(plans);
    free(rows);
    return rc < 0 ? kp_cli_error(kp_cli_exit_code(rc), "%s", err) : KP_EXIT_OK;
}

static int no_opts(int opt, const char *arg, void *data)
{
    (void)opt, (void)arg, (void)data;
    return kp_cli_error(KP_EXIT_USAGE, "unexpected option");
}

static const struct option status_longopts[] = {
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

int kp_cmd_status(int argc, char **argv)
{
    const char *config;
    kp_cli_ctx ctx;
    int rc = kp_cli_parse(argc, argv, "h", status_longopts, kp_help_status, no_opts, NULL, &config);
    if (rc)
        return rc < 0 ? KP_EXIT_OK : rc;
    if ((rc = kp_cli_load(config, &ctx)) != 0)
        return rc;
    rc = status(&ctx);
    kp_cli_done(&ctx);
    return rc;
}

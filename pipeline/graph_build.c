/* graph_build.c - the task graph of a loaded config.
 *
 * Two passes: the first makes every task with its outputs and edges, the
 * second adds inputs, now that every output's producer is known (a file a
 * stage declares as an outside input but another task writes, e.g. a
 * command stage's deps, is an internal input that must come from a need).
 */
#include "graph.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/err.h"
#include "../stages/stage.h"

#ifndef KP_VERSION
#define KP_VERSION "unknown"
#endif

typedef struct build {
    const kp_config *cfg;
    kp_graph *g;
    int *final;        /* stage index -> its final task */
    int *first;        /* stage index -> its first task (parts come first) */
    char *err;
    size_t errlen;
} build;

/* Appends the command line with the run and config folders written as
 * {run_dir} and {config_dir}, so a moved checkout keeps its cache. */
static int add_command(const kp_config *cfg, const char *command, kp_buf *out)
{
    const char *dirs[2] = { cfg->run_dir, cfg->dir }, *names[2] = { "{run_dir}", "{config_dir}" };
    int rc = kp_buf_adds(out, "[command]\n");
    for (const char *p = command; *p && rc == 0;) {
        int k = 0;
        while (k < 2 && !(dirs[k] && *dirs[k] && strncmp(p, dirs[k], strlen(dirs[k])) == 0))
            k++;
        if (k < 2) {
            rc = kp_buf_adds(out, names[k]);
            p += strlen(dirs[k]);
        } else {
            rc = kp_buf_add(out, p++, 1);
        }
    }
    return rc ? rc : kp_buf_adds(out, "\n");
}

int kp_graph_param_text(const kp_config *cfg, const kp_stage *st, const char *task_id,
                        const char *command, kp_buf *out)
{
    int rc = kp_buf_printf(out, "kpipe %s\ntype=%s\ntask=%s\n[opts]\n", KP_VERSION,
                           st->type ? st->type : "", task_id);
    if (rc == 0 && st->opts)
        rc = kp_params_canonical(st->opts, out);
    if (rc == 0)
        rc = kp_buf_adds(out, "[params]\n");
    if (rc == 0 && st->params)
        rc = kp_params_canonical(st->params, out);
    if (rc == 0)
        rc = kp_buf_adds(out, "[competition]\n");
    if (rc == 0)
        rc = kp_config_competition_canonical(cfg, out);
    if (rc == 0 && command)
        rc = add_command(cfg, command, out);
    return rc;
}

/* Calls fn(b, task, line) for every non-empty line of text. */
static int each_line(build *b, int task, const char *text,
                     int (*fn)(build *b, int task, const char *line))
{
    int rc = 0;
    while (*text && rc == 0) {
        const char *eol = strchr(text, '\n');
        size_t n = eol ? (size_t)(eol - text) : strlen(text);
        if (n > 0) {
            char *line = strndup(text, n);
            rc = line ? fn(b, task, line) : KP_ERR_NOMEM;
            free(line);
        }
        text += n + (eol != NULL);
    }
    return rc < 0 && rc != KP_ERR_NOMEM ? rc :
           rc < 0 ? kp_errf(b->err, b->errlen, rc, "out of memory building the task graph") : 0;
}

static int add_output_line(build *b, int task, const char *line)
{
    return kp_graph_add_output(b->g, task, line);
}

/* Adds one task of stage si with its outputs, param text, command and files. */
static int add_task(build *b, int si, int part, int n_parts, int *index)
{
    const kp_stage *st = &b->cfg->stages[si];
    char id[4096], log[4096];
    kp_buf text, cmd, outs;
    kp_buf_init(&text, 0);
    kp_buf_init(&cmd, 0);
    kp_buf_init(&outs, 0);
    snprintf(id, sizeof id, part >= 0 ? "%s#part%d" : "%s", st->name, part);
    if (part >= 0)
        snprintf(log, sizeof log, "%s/part%d.log", st->dir, part);
    else
        snprintf(log, sizeof log, "%s/%s.log", st->dir, n_parts > 0 ? "merge" : "task");
    int rc = kp_graph_add(b->g, id, st->name, st->base, part, index, b->err, b->errlen);
    if (rc < 0)
        goto fail;
    kp_task *t = kp_graph_task(b->g, *index);
    t->stage = si;
    t->n_parts = n_parts;
    if (st->ops->command && (rc = st->ops->command(st, b->cfg, &cmd, b->err, b->errlen)) < 0)
        goto fail;
    rc = KP_ERR_NOMEM;
    if (kp_graph_param_text(b->cfg, st, id, st->ops->command ? kp_buf_str(&cmd) : NULL, &text) < 0 ||
        kp_graph_set_params(b->g, *index, kp_buf_str(&text)) < 0 ||
        kp_graph_set_files(b->g, *index, st->dir, log) < 0 ||
        (st->ops->command &&
         kp_graph_set_command(b->g, *index, kp_buf_str(&cmd), b->cfg->dir) < 0) ||
        (st->ops->outputs && st->ops->outputs(st, b->cfg, part, &outs) < 0)) {
        kp_errf(b->err, b->errlen, rc, "stage %s: cannot list its files", st->name);
        goto fail;
    }
    rc = each_line(b, *index, kp_buf_str(&outs), add_output_line);
fail:
    kp_buf_free(&text);
    kp_buf_free(&cmd);
    kp_buf_free(&outs);
    return rc;
}

/* Pass 1 for one stage: its part tasks, then its final task. */
static int add_stage(build *b, int si)
{
    const kp_stage *st = &b->cfg->stages[si];
    int n_parts = st->ops->n_parts ? st->ops->n_parts(st, b->cfg) : 0;
    int rc = 0, index = -1;
    b->first[si] = kp_graph_count(b->g);
    for (int p = 0; p < n_parts && rc == 0; p++)
        rc = add_task(b, si, p, n_parts, &index);
    if (rc == 0)
        rc = add_task(b, si, -1, n_parts, &index);
    b->final[si] = index;
    for (int p = 0; p < n_parts && rc == 0; p++)
        rc = kp_graph_add_dep(b->g, index, b->first[si] + p);
    return rc < 0 && rc != KP_ERR_NOMEM ? rc :
           rc < 0 ? kp_errf(b->err, b->errlen, rc, "out of memory building the task graph") : 0;
}

/* Adds the outputs of task `from` as inputs of task `to`. */
static int add_outputs_as_inputs(build *b, int to, int from)
{
    const kp_task *f = kp_graph_task(b->g, from);
    for (int i = 0; i < f->n_outputs; i++)
        if (kp_graph_add_input(b->g, to, f->outputs[i], 0) < 0)
            return KP_ERR_NOMEM;
    return 0;
}

/* Returns 1 if stage si needs stage sj, directly or through other needs. */
static int needs_transitively(const kp_config *cfg, int si, int sj, int depth)
{
    const kp_stage *st = &cfg->stages[si];
    if (depth > cfg->n_stages)
        return 0;
    for (int i = 0; i < st->n_needs; i++)
        if (st->needs[i] == sj || needs_transitively(cfg, st->needs[i], sj, depth + 1))
            return 1;
    return 0;
}

/* An outside input: external unless some task writes it, then it must be a need's. */
static int add_outside_input(build *b, int task, const char *path)
{
    const kp_task *t = kp_graph_task(b->g, task);
    int producer = kp_graph_producer(b->g, path);
    if (producer < 0)
        return kp_graph_add_input(b->g, task, path, 1);
    const kp_task *p = kp_graph_task(b->g, producer);
    if (p->stage == t->stage)
        return kp_errf(b->err, b->errlen, KP_ERR_CONFIG,
                       "stage %s reads %s, which it writes itself", t->stage_name, path);
    if (!needs_transitively(b->cfg, t->stage, p->stage, 0))
        return kp_errf(b->err, b->errlen, KP_ERR_CONFIG,
                       "stage %s reads %s, which stage %s writes: add %s to its needs",
                       t->stage_name, path, p->stage_name, p->stage_base);
    return kp_graph_add_input(b->g, task, path, 0);
}

/* Pass 2 for one task: edges to needed stages, inputs in cache-key order. */
static int wire_task(build *b, int task, const char *outside)
{
    kp_task *t = kp_graph_task(b->g, task);
    const kp_stage *st = &b->cfg->stages[t->stage];
    int is_merge = t->part < 0 && t->n_parts > 0;
    for (int i = 0; i < st->n_needs; i++) {
        int up = b->final[st->needs[i]];
        if ((!is_merge && kp_graph_add_dep(b->g, task, up) < 0) ||
            add_outputs_as_inputs(b, task, up) < 0)
            return kp_errf(b->err, b->errlen, KP_ERR_NOMEM, "out of memory");
    }
    for (int p = 0; is_merge && p < t->n_parts; p++)
        if (add_outputs_as_inputs(b, task, b->first[t->stage] + p) < 0)
            return kp_errf(b->err, b->errlen, KP_ERR_NOMEM, "out of memory");
    return each_line(b, task, outside, add_outside_input);
}

static int wire_stage(build *b, int si)
{
    const kp_stage *st = &b->cfg->stages[si];
    kp_buf outside;
    kp_buf_init(&outside, 0);
    int rc = 0;
    if (st->ops->inputs && st->ops->inputs(st, b->cfg, &outside) < 0)
        rc = kp_errf(b->err, b->errlen, KP_ERR_NOMEM, "stage %s: cannot list its inputs", st->name);
    for (int task = b->first[si]; task <= b->final[si] && rc == 0; task++)
        rc = wire_task(b, task, kp_buf_str(&outside));
    kp_buf_free(&outside);
    return rc;
}

int kp_graph_build(const kp_config *cfg, kp_graph **out, char *err, size_t errlen)
{
    build b = { cfg, kp_graph_create(), NULL, NULL, err, errlen };
    int rc = KP_ERR_NOMEM;
    size_t n = (size_t)cfg->n_stages + 1;
    b.final = malloc(n * sizeof *b.final);
    b.first = malloc(n * sizeof *b.first);
    if (!b.g || !b.final || !b.first) {
        kp_errf(err, errlen, rc, "out of memory building the task graph");
        goto fail;
    }
    for (int si = 0; si < cfg->n_stages; si++)
        if ((rc = add_stage(&b, si)) < 0)
            goto fail;
    for (int si = 0; si < cfg->n_stages; si++)
        if ((rc = wire_stage(&b, si)) < 0)
            goto fail;
    if ((rc = kp_graph_finish(b.g, err, errlen)) < 0)
        goto fail;
    *out = b.g;
    b.g = NULL;
fail:
    kp_graph_free(b.g);
    free(b.final);
    free(b.first);
    return rc;
}

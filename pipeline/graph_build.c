/* graph_build.c - the task graph of a loaded config.
 *
 * Two passes: the first makes every task with its outputs and edges, the
 * second adds inputs, now that every output's producer is known (a file a
 * stage declares as an outside input but another task writes, e.g. a
 * command stage's deps, is an internal input that must come from a need).
 * A task's inputs are the outputs of the stages it needs, then its outside
 * inputs that are not among them, each once.
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
    const char *comp;  /* the competition's canonical text, made once */
    int *direct;       /* direct[s] == stamp: stage s is a need of the stage being wired */
    int *above;        /* above[s] == stamp: stage s is needed, directly or not */
    int stamp, above_done;
    int *stack;        /* for the walk that fills above */
    kp_buf opts;       /* the canonical opts text of stage opts_of */
    const kp_stage *opts_of;
    kp_buf text, cmd, files;   /* scratch, reused from task to task */
    char *err;
    size_t errlen;
} build;

static int nomem(build *b)
{
    return kp_errf(b->err, b->errlen, KP_ERR_NOMEM, "out of memory building the task graph");
}

/* Appends the command line with the run and config folders written as
 * {run_dir} and {config_dir}, so a moved checkout keeps its cache. */
static int add_command(const kp_config *cfg, const char *command, kp_buf *out)
{
    const char *dirs[2] = { cfg->run_dir, cfg->dir }, *names[2] = { "{run_dir}", "{config_dir}" };
    size_t lens[2] = { dirs[0] ? strlen(dirs[0]) : 0, dirs[1] ? strlen(dirs[1]) : 0 };
    const char *hit[2] = { NULL, NULL }, *next;   /* the next match of each at or after p */
    int rc = kp_buf_adds(out, "[command]\n"), known = 0;
    for (const char *p = command; *p && rc == 0;) {
        for (int k = 0; k < 2; k++)
            if (!known || (hit[k] && hit[k] < p))
                hit[k] = lens[k] ? strstr(p, dirs[k]) : NULL;
        known = 1;
        /* the earliest hit; at the same place, the run dir (it is tried first) */
        int k = hit[0] && (!hit[1] || hit[0] <= hit[1]) ? 0 : hit[1] ? 1 : -1;
        next = k < 0 ? p + strlen(p) : hit[k];
        rc = kp_buf_add(out, p, (size_t)(next - p));
        if (rc == 0 && k >= 0) {
            rc = kp_buf_adds(out, names[k]);
            next += lens[k];
        }
        p = next;
    }
    return rc ? rc : kp_buf_adds(out, "\n");
}

/* kp_graph_param_text with the canonical opts text given (opts, or NULL to make it). */
static int param_text(const kp_config *cfg, const kp_stage *st, const char *task_id,
                      const char *command, const char *comp, const char *opts, kp_buf *out)
{
    int rc = kp_buf_adds(out, "kpipe " KP_VERSION "\ntype=");
    if (rc == 0)
        rc = kp_buf_adds(out, st->type ? st->type : "");
    if (rc == 0)
        rc = kp_buf_adds(out, "\ntask=");
    if (rc == 0)
        rc = kp_buf_adds(out, task_id);
    if (rc == 0)
        rc = kp_buf_adds(out, "\n[opts]\n");
    if (rc == 0 && opts)
        rc = kp_buf_adds(out, opts);
    else if (rc == 0 && st->opts)
        rc = kp_params_canonical(st->opts, out);
    if (rc == 0)
        rc = kp_buf_adds(out, "[params]\n");
    if (rc == 0 && st->params)
        rc = kp_params_canonical(st->params, out);
    if (rc == 0)
        rc = kp_buf_adds(out, "[competition]\n");
    if (rc == 0)
        rc = comp ? kp_buf_adds(out, comp) : kp_config_competition_canonical(cfg, out);
    if (rc == 0 && command)
        rc = add_command(cfg, command, out);
    return rc;
}

int kp_graph_param_text(const kp_config *cfg, const kp_stage *st, const char *task_id,
                        const char *command, const char *comp, kp_buf *out)
{
    return param_text(cfg, st, task_id, command, comp, NULL, out);
}

/* Returns 1 if a and b hold the same keys in the same order with the same values. */
static int same_params(const kp_params *a, const kp_params *b)
{
    int n = kp_params_count(a);
    if (n != kp_params_count(b))
        return 0;
    for (int i = 0; i < n; i++) {
        const char *k = kp_params_key(a, i), *const *x, *const *y;
        int nx, ny;
        if (strcmp(k, kp_params_key(b, i)) != 0 || kp_params_get_list(a, k, &x, &nx) < 0 ||
            kp_params_get_list(b, k, &y, &ny) < 0 || nx != ny ||
            (kp_params_get(a, k) == NULL) != (kp_params_get(b, k) == NULL))
            return 0;
        for (int j = 0; j < nx; j++)
            if (strcmp(x[j], y[j]) != 0)
                return 0;
    }
    return 1;
}

/* Returns the canonical text of st->opts: the last one made when the opts
 * are the same (a matrix's expansions usually share them), else made now. */
static const char *opts_text(build *b, const kp_stage *st)
{
    if (!st->opts)
        return "";
    if (b->opts_of && (b->opts_of == st || same_params(b->opts_of->opts, st->opts)))
        return kp_buf_str(&b->opts);
    kp_buf_reset(&b->opts);
    b->opts_of = NULL;
    if (kp_params_canonical(st->opts, &b->opts) < 0)
        return NULL;
    b->opts_of = st;
    return kp_buf_str(&b->opts);
}

/* Calls fn(b, task, line) for every non-empty line of text. */
static int each_line(build *b, int task, const char *text,
                     int (*fn)(build *b, int task, const char *line))
{
    char small[4096];
    int rc = 0;
    while (*text && rc == 0) {
        const char *eol = strchr(text, '\n');
        size_t n = eol ? (size_t)(eol - text) : strlen(text);
        if (n > 0) {
            char *line = n < sizeof small ? small : malloc(n + 1);
            if (line) {
                memcpy(line, text, n);
                line[n] = 0;
            }
            rc = line ? fn(b, task, line) : KP_ERR_NOMEM;
            if (line != small)
                free(line);
        }
        text += n + (eol != NULL);
    }
    return rc == KP_ERR_NOMEM ? nomem(b) : rc;
}

static int add_output_line(build *b, int task, const char *line)
{
    return kp_graph_add_output(b->g, task, line);
}

/* Writes a, b and c joined into out[n]; -1 if it does not fit. */
static int join3(char *out, size_t n, const char *a, const char *b, const char *c)
{
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    if (la + lb + lc >= n)
        return -1;
    memcpy(out, a, la);
    memcpy(out + la, b, lb);
    memcpy(out + la + lb, c, lc + 1);
    return 0;
}

/* Writes the id and log path of a task of stage st (part -1: the final task). */
static int task_names(const kp_stage *st, int part, int n_parts, char *id, char *log, size_t n)
{
    char p[32];
    if (part < 0)
        return join3(id, n, st->name, "", "") < 0 ||
               join3(log, n, st->dir, n_parts > 0 ? "/merge" : "/task", ".log") < 0
                   ? KP_ERR_CONFIG : 0;
    snprintf(p, sizeof p, "part%d", part);
    return join3(id, n, st->name, "#", p) < 0 || join3(log, n, st->dir, "/", p) < 0 ||
           strlen(log) + 4 >= n ? KP_ERR_CONFIG : (strcat(log, ".log"), 0);
}

/* Sets a new task's param text, command, files and outputs. */
static int fill_task(build *b, const kp_stage *st, int index, int part)
{
    kp_buf *text = &b->text, *cmd = &b->cmd, *outs = &b->files;
    kp_buf_reset(text);
    kp_buf_reset(cmd);
    kp_buf_reset(outs);
    kp_task *t = kp_graph_task(b->g, index);
    int rc = st->ops->command ? st->ops->command(st, b->cfg, cmd, b->err, b->errlen) : 0;
    if (rc < 0)
        return rc;
    const char *opts = opts_text(b, st);
    if (!opts ||
        param_text(b->cfg, st, t->id, st->ops->command ? kp_buf_str(cmd) : NULL, b->comp, opts,
                   text) < 0 ||
        (st->ops->command && kp_graph_set_command(b->g, index, kp_buf_str(cmd), b->cfg->dir) < 0) ||
        (st->ops->outputs && st->ops->outputs(st, b->cfg, part, outs) < 0))
        return kp_errf(b->err, b->errlen, KP_ERR_NOMEM, "stage %s: cannot list its files",
                       st->name);
    if (kp_graph_set_params(b->g, index, kp_buf_str(text)) < 0)
        return nomem(b);
    return each_line(b, index, kp_buf_str(outs), add_output_line);
}

/* Adds one task of stage si with its outputs, param text, command and files. */
static int add_task(build *b, int si, int part, int n_parts, int *index)
{
    const kp_stage *st = &b->cfg->stages[si];
    char id[4096], log[4096];
    if (task_names(st, part, n_parts, id, log, sizeof id) < 0)
        return kp_errf(b->err, b->errlen, KP_ERR_CONFIG, "stage %s: name too long", st->name);
    int rc = kp_graph_add(b->g, id, st->name, st->base, part, index, b->err, b->errlen);
    if (rc < 0)
        return rc;
    kp_task *t = kp_graph_task(b->g, *index);
    t->stage = si;
    t->n_parts = n_parts;
    char where[4096];
    snprintf(where, sizeof where, "%s:%d:%d: stages.%s", b->cfg->path, st->line, st->col,
             st->base ? st->base : st->name);
    if (kp_graph_set_files(b->g, *index, st->dir, log) < 0 ||
        kp_graph_set_where(b->g, *index, where) < 0)
        return nomem(b);
    return fill_task(b, st, *index, part);
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
    return rc == KP_ERR_NOMEM ? nomem(b) : rc;
}

/* Adds the outputs of task `from` as inputs of task `to`. */
static int add_outputs_as_inputs(build *b, int to, int from)
{
    const kp_task *f = kp_graph_task(b->g, from);
    for (int i = 0; i < f->n_outputs; i++)
        if (kp_graph_add_input_from(b->g, to, from, i) < 0)
            return KP_ERR_NOMEM;
    return 0;
}

/* Marks in b->above every stage that stage si needs, directly or not (once per stage). */
static void mark_above(build *b, int si)
{
    const kp_config *cfg = b->cfg;
    int depth = 0;
    if (b->above_done)
        return;
    b->above_done = 1;
    b->stack[depth++] = si;
    while (depth > 0) {
        const kp_stage *st = &cfg->stages[b->stack[--depth]];
        for (int i = 0; i < st->n_needs; i++)
            if (b->above[st->needs[i]] != b->stamp) {
                b->above[st->needs[i]] = b->stamp;
                b->stack[depth++] = st->needs[i];
            }
    }
}

/* An outside input: external unless some task writes it, then it must be a
 * need's (and is already an input when a direct need's final task writes it). */
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
    if (b->direct[p->stage] == b->stamp && producer == b->final[p->stage])
        return 0;
    mark_above(b, t->stage);
    if (b->above[p->stage] != b->stamp)
        return kp_errf(b->err, b->errlen, KP_ERR_CONFIG,
                       "stage %s reads %s, which stage %s writes: add %s to its needs",
                       t->stage_name, path, p->stage_name, p->stage_base);
    for (int j = 0; j < p->n_outputs; j++)
        if (strcmp(p->outputs[j], path) == 0)
            return kp_graph_add_input_from(b->g, task, producer, j);
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
            return nomem(b);
    }
    for (int p = 0; is_merge && p < t->n_parts; p++)
        if (add_outputs_as_inputs(b, task, b->first[t->stage] + p) < 0)
            return nomem(b);
    return each_line(b, task, outside, add_outside_input);
}

static int wire_stage(build *b, int si)
{
    const kp_stage *st = &b->cfg->stages[si];
    kp_buf *outside = &b->files;
    int rc = 0;
    kp_buf_reset(outside);
    b->stamp++;
    b->above_done = 0;
    for (int i = 0; i < st->n_needs; i++)
        b->direct[st->needs[i]] = b->stamp;
    if (st->ops->inputs && st->ops->inputs(st, b->cfg, outside) < 0)
        rc = kp_errf(b->err, b->errlen, KP_ERR_NOMEM, "stage %s: cannot list its inputs", st->name);
    for (int task = b->first[si]; task <= b->final[si] && rc == 0; task++)
        rc = wire_task(b, task, kp_buf_str(outside));
    return rc;
}

static int build_init(build *b, const kp_config *cfg, char *err, size_t errlen)
{
    size_t n = (size_t)cfg->n_stages + 1;
    kp_buf comp;
    kp_buf_init(&comp, 0);
    memset(b, 0, sizeof *b);
    kp_buf_init(&b->opts, 0);
    kp_buf_init(&b->text, 0);
    kp_buf_init(&b->cmd, 0);
    kp_buf_init(&b->files, 0);
    b->cfg = cfg, b->err = err, b->errlen = errlen;
    b->g = kp_graph_create();
    b->final = malloc(n * sizeof *b->final);
    b->first = malloc(n * sizeof *b->first);
    b->direct = calloc(n, sizeof *b->direct);
    b->above = calloc(n, sizeof *b->above);
    b->stack = malloc(n * sizeof *b->stack);
    int bad = kp_config_competition_canonical(cfg, &comp) < 0;
    b->comp = bad ? NULL : kp_buf_take(&comp);
    kp_buf_free(&comp);
    return !b->g || !b->final || !b->first || !b->direct || !b->above || !b->stack || !b->comp
               ? nomem(b) : 0;
}

int kp_graph_build(const kp_config *cfg, kp_graph **out, char *err, size_t errlen)
{
    build b;
    int rc = build_init(&b, cfg, err, errlen), n_tasks = 0;
    for (int si = 0; si < cfg->n_stages && rc == 0; si++) {
        const kp_stage *st = &cfg->stages[si];
        n_tasks += 1 + (st->ops->n_parts ? st->ops->n_parts(st, cfg) : 0);
    }
    if (rc == 0 && kp_graph_reserve(b.g, n_tasks) < 0)
        rc = nomem(&b);
    for (int si = 0; si < cfg->n_stages && rc == 0; si++)
        rc = add_stage(&b, si);
    for (int si = 0; si < cfg->n_stages && rc == 0; si++)
        rc = wire_stage(&b, si);
    if (rc == 0)
        rc = kp_graph_finish(b.g, err, errlen);
    if (rc == 0) {
        *out = b.g;
        b.g = NULL;
    }
    kp_graph_free(b.g);
    free(b.final);
    free(b.first);
    free((char *)b.comp);
    free(b.direct);
    free(b.above);
    free(b.stack);
    kp_buf_free(&b.opts);
    kp_buf_free(&b.text);
    kp_buf_free(&b.cmd);
    kp_buf_free(&b.files);
    return rc;
}

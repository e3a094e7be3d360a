/* exec.c - the scheduler (see exec.h): plan, start, reap, record.
 *
 * Every wanted task goes WAITING -> (its deps done) settle: key computed,
 * then SKIPPED, or READY -> RUNNING -> OK / FAILED.  Dependents of a
 * FAILED task become BLOCKED.  A plan (dry run, explain, status) runs the
 * same settle walk with WOULD_RUN in place of READY, so a task whose
 * upstream would run is reported as such without hashing anything.
 *
 * Outputs are not deleted before a task starts (on ext4 that made re-runs
 * allocate a new inode per output, slower than a cold run): their stat is
 * taken instead, and after exit 0 each must exist and differ from it
 * (dev, inode, size or mtime), or the task "did not write" it.
 */
#include "exec.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "progress.h"
#include "runlog.h"
#include "stamp.h"
#include "../lib/buf.h"
#include "../lib/err.h"
#include "../lib/params.h"

enum { S_WAITING, S_READY, S_RUNNING, S_OK, S_SKIPPED, S_FAILED, S_BLOCKED, S_WOULD_RUN };

typedef struct xtask {
    int state;
    int pending;          /* wanted deps not yet finished */
    int wanted, forced;
    kp_reason why;
    const char *detail;
    kp_hash key, params;
    kp_hash *in_hashes;   /* content hashes of the inputs when it settled */
    kp_fstat *before;     /* its outputs' stats when it started (while running) */
} xtask;

typedef struct exec {
    kp_graph *g;
    kp_runner *r;
    kp_fs *fs;
    const kp_exec_opts *o;
    kp_runlog *rl;
    kp_progress *prog;
    xtask *x;
    int n;
    int *work, n_work;    /* settled-to-be: all deps finished */
    int *ready, n_ready;  /* to start: a min-heap of task indices (graph order) */
    int planning;         /* nothing runs: WOULD_RUN instead of READY */
    int stopping;
    kp_exec_summary sum;
    kp_buf failures;      /* summary lines for failed tasks */
    char *err;
    size_t errlen;
} exec;

static kp_task *T(const exec *e, int i) { return kp_graph_task(e->g, i); }

/* ---- selection and checks before anything runs ---- */

static int matches(const kp_task *t, const char *name)
{
    return strcmp(t->stage_name, name) == 0 || strcmp(t->stage_base, name) == 0 ||
           strcmp(t->id, name) == 0;
}

/* Fails with "unknown stage 'x'" and the nearest stage name suggested. */
static int unknown_name(exec *e, const char *what, const char *name)
{
    const char **names = malloc((size_t)e->n * sizeof *names);
    const char *near = NULL;
    if (names) {
        for (int i = 0; i < e->n; i++)
            names[i] = T(e, i)->stage_name;
        near = kp_suggest(name, names, e->n);
    }
    kp_errf(e->err, e->errlen, KP_ERR_ARG, "%s: unknown stage '%s'%s%s%s", what, name,
            near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "");
    free(names);
    return KP_ERR_ARG;
}

/* Marks task i and everything it needs as wanted. */
static void want(exec *e, int i)
{
    if (e->x[i].wanted)
        return;
    e->x[i].wanted = 1;
    const kp_task *t = T(e, i);
    for (int d = 0; d < t->n_deps; d++)
        want(e, t->deps[d]);
}

static int select_tasks(exec *e)
{
    const kp_exec_opts *o = e->o;
    for (int k = 0; k < o->n_only; k++) {
        int hit = 0;
        for (int i = 0; i < e->n; i++)
            if (matches(T(e, i), o->only[k]))
                want(e, i), hit = 1;
        if (!hit)
            return unknown_name(e, "--only", o->only[k]);
    }
    for (int i = 0; i < e->n && o->n_only == 0; i++)
        e->x[i].wanted = 1;
    for (int k = 0; k < o->n_force; k++) {
        int hit = 0;
        for (int i = 0; i < e->n; i++)
            if (matches(T(e, i), o->force[k]))
                e->x[i].forced = 1, hit = 1;
        if (!hit)
            return unknown_name(e, "--force", o->force[k]);
    }
    return 0;
}

static int check_external_inputs(exec *e)
{
    for (int i = 0; i < e->n; i++) {
        const kp_task *t = T(e, i);
        for (int j = 0; j < t->n_inputs && e->x[i].wanted; j++) {
            kp_fstat st;
            if (!t->external[j])
                continue;
            int rc = kp_fs_stat(e->fs, t->inputs[j], &st, e->err, e->errlen);
            if (rc < 0)
                return rc;
            if (!st.exists && t->where)   /* name the config line that declares it */
                return kp_errf(e->err, e->errlen, KP_ERR_NOTFOUND,
                               "%s: input file %s does not exist (stage %s)", t->where,
                               t->inputs[j], t->stage_name);
            if (!st.exists)
                return kp_errf(e->err, e->errlen, KP_ERR_NOTFOUND,
                               "stage %s: input file %s does not exist", t->stage_name, t->inputs[j]);
        }
    }
    return 0;
}

/* ---- settling a task whose deps are done ---- */

static int compute_key(exec *e, int i)
{
    const kp_task *t = T(e, i);
    xtask *x = &e->x[i];
    kp_hasher *h = kp_hasher_create();
    free(x->in_hashes);
    x->in_hashes = malloc(((size_t)t->n_inputs + 1) * sizeof *x->in_hashes);
    if (!h || !x->in_hashes) {
        kp_hasher_free(h);
        return kp_errf(e->err, e->errlen, KP_ERR_NOMEM, "out of memory");
    }
    /* no paths: files are known by position and content, so a moved checkout keeps its cache */
    int counts[2] = { t->n_inputs, t->n_outputs }, rc = 0;
    kp_hasher_adds(h, t->param_text);
    kp_hasher_add(h, counts, sizeof counts);
    for (int j = 0; j < t->n_inputs && rc == 0; j++) {
        /* an input hashed earlier in this run (its producer's output) is not stat'ed again */
        if ((rc = kp_runlog_file_hash_seen(e->rl, t->inputs[j], &x->in_hashes[j], e->err,
                                           e->errlen)) < 0)
            break;
        kp_hasher_add(h, &x->in_hashes[j], sizeof x->in_hashes[j]);
    }
    if (rc == KP_ERR_NOTFOUND)
        kp_err_prefix(e->err, e->errlen, rc, t->id);
    x->key = kp_hasher_digest(h);
    kp_hasher_free(h);
    return rc;
}

/* Returns the first input whose hash differs from the entry's (by position), or NULL. */
static const char *changed_input(const exec *e, int i, const kp_runlog_entry *ent)
{
    const kp_task *t = T(e, i);
    for (int j = 0; j < t->n_inputs; j++)
        if (j >= ent->n_inputs || !kp_hash_eq(ent->in_hashes[j], e->x[i].in_hashes[j]))
            return t->inputs[j];
    return NULL;
}

/* Checks every output exists with the hash the entry recorded at its position. */
static int check_outputs(exec *e, int i, const kp_runlog_entry *ent)
{
    const kp_task *t = T(e, i);
    xtask *x = &e->x[i];
    for (int j = 0; j < t->n_outputs; j++) {
        kp_hash h;
        int rc = kp_runlog_file_hash(e->rl, t->outputs[j], &h, e->err, e->errlen);
        if (rc == KP_ERR_NOTFOUND ||
            (rc == 0 && (j >= ent->n_outputs || !kp_hash_eq(h, ent->out_hashes[j])))) {
            x->why = rc ? KP_WHY_OUTPUT_MISSING : KP_WHY_OUTPUT_CHANGED;
            x->detail = t->outputs[j];
            return 0;
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Sets x->why from what needs no file hashed (forced, never run, failed,
 * config changed); returns 1 if that decides it. */
static int own_reason(exec *e, int i, const kp_runlog_entry *ent)
{
    xtask *x = &e->x[i];
    const char *text = T(e, i)->param_text;
    x->params = kp_hash_bytes(text, strlen(text));
    x->detail = NULL;
    x->why = x->forced ? KP_WHY_FORCED : !ent ? KP_WHY_NEVER_RUN :
             ent->exit_status != 0 ? KP_WHY_FAILED_BEFORE :
             !kp_hash_eq(ent->params, x->params) ? KP_WHY_CONFIG_CHANGED : KP_WHY_UP_TO_DATE;
    return x->why != KP_WHY_UP_TO_DATE;
}

/* Sets x->why for a task whose key is computed. */
static int decide(exec *e, int i)
{
    xtask *x = &e->x[i];
    const kp_runlog_entry *ent = kp_runlog_find(e->rl, T(e, i)->id);
    if (own_reason(e, i, ent))
        return 0;
    if (kp_hash_eq(ent->key, x->key))
        return check_outputs(e, i, ent);
    x->why = KP_WHY_INPUT_CHANGED;
    x->detail = changed_input(e, i, ent);
    return 0;
}

/* A task finished well (ran, skipped or would run): its users may settle. */
static void complete(exec *e, int i)
{
    const kp_task *t = T(e, i);
    for (int u = 0; u < t->n_users; u++) {
        xtask *xu = &e->x[t->users[u]];
        if (xu->wanted && --xu->pending == 0 && xu->state == S_WAITING)
            e->work[e->n_work++] = t->users[u];
    }
}

static void push_ready(exec *e, int i)
{
    int k = e->n_ready++;
    for (; k > 0 && e->ready[(k - 1) / 2] > i; k = (k - 1) / 2)
        e->ready[k] = e->ready[(k - 1) / 2];
    e->ready[k] = i;
}

/* Removes and returns the lowest ready index. */
static int pop_ready(exec *e)
{
    int top = e->ready[0], last = e->ready[--e->n_ready], k = 0;
    for (;;) {
        int c = 2 * k + 1;
        if (c >= e->n_ready)
            break;
        if (c + 1 < e->n_ready && e->ready[c + 1] < e->ready[c])
            c++;
        if (last <= e->ready[c])
            break;
        e->ready[k] = e->ready[c];
        k = c;
    }
    if (e->n_ready > 0)
        e->ready[k] = last;
    return top;
}

/* Returns a dependency that would run (planning), or -1. */
static int upstream_running(const exec *e, int i)
{
    const kp_task *t = T(e, i);
    for (int d = 0; d < t->n_deps; d++)
        if (e->x[t->deps[d]].state == S_WOULD_RUN)
            return t->deps[d];
    return -1;
}

static int settle(exec *e, int i)
{
    xtask *x = &e->x[i];
    int up = e->planning ? upstream_running(e, i) : -1, rc;
    if (up >= 0) {   /* its own reason if it has one, else the upstream's */
        if (!own_reason(e, i, kp_runlog_find(e->rl, T(e, i)->id))) {
            x->why = KP_WHY_UPSTREAM;
            x->detail = T(e, up)->id;
        }
    } else if ((rc = compute_key(e, i)) < 0 || (rc = decide(e, i)) < 0) {
        return rc;
    }
    if (x->why == KP_WHY_UP_TO_DATE) {
        x->state = S_SKIPPED;
        e->sum.n_up_to_date++;
        kp_progress_skip(e->prog);
        complete(e, i);
    } else if (e->planning) {
        x->state = S_WOULD_RUN;
        complete(e, i);
    } else {
        x->state = S_READY;
        push_ready(e, i);
    }
    return 0;
}

static int settle_all(exec *e)
{
    while (e->n_work > 0) {
        int rc = settle(e, e->work[--e->n_work]);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- running ---- */

static void block_users(exec *e, int i)
{
    const kp_task *t = T(e, i);
    for (int u = 0; u < t->n_users; u++) {
        xtask *xu = &e->x[t->users[u]];
        if (xu->wanted && xu->state == S_WAITING) {
            xu->state = S_BLOCKED;
            block_users(e, t->users[u]);
        }
    }
}

/* Appends the task's own error (its log's last "kpipe: " line) to the failures. */
static int add_task_error(exec *e, const kp_task *t)
{
    char *text = NULL, err[KP_ERRLEN];
    size_t len = 0;
    if (!t->log_path || e->fs->ops->read(e->fs, t->log_path, &text, &len, err, sizeof err) < 0)
        return 0;
    const char *hit = NULL;
    for (const char *p = text; (p = strstr(p, "kpipe: ")); p++)
        if (p == text || p[-1] == '\n')
            hit = p;
    int rc = hit ? kp_buf_printf(&e->failures, "\n    %.*s", (int)strcspn(hit, "\n"), hit) : 0;
    free(text);
    return rc;
}

static void fail(exec *e, int i, int exit_status)
{
    const kp_task *t = T(e, i);
    e->x[i].state = S_FAILED;
    e->sum.n_failed++;
    block_users(e, i);
    if (!e->o->keep_going)
        e->stopping = 1;
    int rc = exit_status == -1 ? kp_buf_printf(&e->failures, "  %s: a declared output is missing", t->id)
                               : kp_buf_printf(&e->failures, "  %s: exit %d", t->id, exit_status);
    if (rc == 0 && t->log_path)
        rc = kp_buf_printf(&e->failures, "; log: %s", t->log_path);
    if (rc == 0 && exit_status > 0)
        rc = add_task_error(e, t);
    if (rc == 0)
        rc = kp_buf_adds(&e->failures, "\n");
    (void)rc;   /* a summary line lost to memory pressure is not worth failing over */
}

/* Takes the stat of every output, so that one left as it was counts as not written. */
static int stat_outputs(exec *e, int i, char *err, size_t errlen)
{
    const kp_task *t = T(e, i);
    xtask *x = &e->x[i];
    free(x->before);
    if (!(x->before = calloc((size_t)t->n_outputs + 1, sizeof *x->before)))
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    for (int j = 0; j < t->n_outputs; j++) {
        int rc = kp_fs_stat(e->fs, t->outputs[j], &x->before[j], err, errlen);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int start(exec *e, int i)
{
    const kp_task *t = T(e, i);
    char err[KP_ERRLEN] = "";
    int rc = stat_outputs(e, i, err, sizeof err);
    if (rc == 0)
        rc = e->r->ops->start(e->r, e->g, i, err, sizeof err);
    if (rc < 0) {
        kp_progress_printf(e->prog, "kpipe: cannot start %s: %s", t->id, err);
        fail(e, i, 127);
        return 0;
    }
    e->x[i].state = S_RUNNING;
    kp_progress_start(e->prog, t->id);
    return 0;
}

static int same_file(const kp_fstat *a, const kp_fstat *b)
{
    return a->exists && b->exists && a->dev == b->dev && a->ino == b->ino &&
           a->size == b->size && a->mtime_ns == b->mtime_ns;
}

/* Checks that a task that exited 0 wrote every output: each must exist and
 * differ from its stat at the start.  Returns 0, or -1 (after saying which). */
static int outputs_written(exec *e, int i)
{
    const kp_task *t = T(e, i);
    const kp_fstat *before = e->x[i].before;
    for (int j = 0; j < t->n_outputs; j++) {
        kp_fstat now;
        /* A command may keep an output it finds up to date, as in make; a
         * built-in task always writes anew (temp file + rename). */
        if (kp_fs_stat(e->fs, t->outputs[j], &now, NULL, 0) == 0 && now.exists && !now.is_dir &&
            (t->command || !(before && same_file(&before[j], &now))))
            continue;
        kp_progress_printf(e->prog, "kpipe: %s exited 0 but did not write %s", t->id,
                           t->outputs[j]);
        return -1;
    }
    return 0;
}

/* Hashes the outputs of a task whose status is 0 (status becomes -1 if one
 * has gone since) and appends its run to the run log. */
static int record(exec *e, const kp_run_result *res, int *status)
{
    int i = res->task, rc = 0;
    const kp_task *t = T(e, i);
    xtask *x = &e->x[i];
    kp_hash *outs = calloc((size_t)t->n_outputs + 1, sizeof *outs);
    if (!outs)
        return kp_errf(e->err, e->errlen, KP_ERR_NOMEM, "out of memory");
    for (int j = 0; j < t->n_outputs && *status == 0 && rc == 0; j++) {
        char err[KP_ERRLEN];
        rc = kp_runlog_file_hash(e->rl, t->outputs[j], &outs[j], err, sizeof err);
        if (rc == KP_ERR_NOTFOUND) {   /* removed since outputs_written looked */
            kp_progress_printf(e->prog, "kpipe: %s exited 0 but did not write %s", t->id,
                               t->outputs[j]);
            *status = -1, rc = 0;
        } else if (rc < 0) {
            rc = kp_errf(e->err, e->errlen, rc, "%s", err);
        }
    }
    kp_runlog_entry ent = {
        t->id, x->key, x->params, res->start_ns, res->wall_ms, res->cpu_ms, res->rss_kb, *status,
        t->n_inputs, (const char *const *)t->inputs, x->in_hashes,
        *status == 0 ? t->n_outputs : 0, (const char *const *)t->outputs, outs,
    };
    /* a task killed by the interrupt did not fail: leave no failure on record */
    if (rc == 0 && !(e->sum.interrupted && *status >= 128))
        rc = kp_runlog_record(e->rl, &ent, e->err, e->errlen);
    free(outs);
    return rc;
}

/* Starts ready tasks, in graph order, while the runner has room. */
static void start_ready(exec *e)
{
    if (e->r->ops->interrupted(e->r))
        e->sum.interrupted = e->stopping = 1;
    while (!e->stopping && e->n_ready > 0 && e->r->ops->can_start_more(e->r))
        start(e, pop_ready(e));
}

static int finished(exec *e, const kp_run_result *res)
{
    int i = res->task, status = res->exit_status;
    const kp_task *t = T(e, i);
    xtask *x = &e->x[i];
    if (status == 0 && outputs_written(e, i) < 0)
        status = -1;
    free(x->before);
    x->before = NULL;
    kp_progress_done(e->prog, t->id, status == 0, status, res->wall_ms, t->log_path);
    if (status == 0)
        start_ready(e);   /* refill the freed slot now: the rest is bookkeeping */
    int rc = record(e, res, &status);
    if (rc < 0)
        return rc;
    if (status != 0) {
        fail(e, i, status);
        return 0;
    }
    x->state = S_OK;
    e->sum.n_ran++;
    complete(e, i);
    return 0;
}

/* Starts what may start, then waits for one event. Returns 1 when all is done. */
static int step(exec *e)
{
    int rc = settle_all(e);
    if (rc < 0)
        return rc;
    start_ready(e);
    if (e->r->ops->running(e->r) == 0)
        return e->n_work > 0 ? 0 : 1;   /* a start failure may have unblocked nothing */
    kp_run_result res;
    rc = e->r->ops->wait(e->r, e->o->tty ? 1000 : -1, &res, e->err, e->errlen);
    if (rc == KP_WAIT_DONE)
        return finished(e, &res);
    if (rc == KP_WAIT_INTERRUPTED)
        e->sum.interrupted = e->stopping = 1;
    else if (rc == KP_WAIT_TIMEOUT)
        kp_progress_tick(e->prog);
    return rc < 0 ? rc : 0;
}

/* ---- setup and the API ---- */

static int exec_init(exec *e, kp_graph *g, kp_fs *fs, const kp_exec_opts *o,
                     char *err, size_t errlen)
{
    memset(e, 0, sizeof *e);
    e->g = g, e->fs = fs, e->o = o, e->err = err, e->errlen = errlen;
    e->n = kp_graph_count(g);
    kp_buf_init(&e->failures, 1 << 20);
    e->x = calloc((size_t)e->n + 1, sizeof *e->x);
    e->work = malloc(((size_t)e->n + 1) * sizeof *e->work);
    e->ready = malloc(((size_t)e->n + 1) * sizeof *e->ready);
    if (!e->x || !e->work || !e->ready)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    int rc = select_tasks(e);
    if (rc == 0)
        rc = check_external_inputs(e);
    for (int i = 0; i < e->n && rc == 0; i++) {
        const kp_task *t = T(e, i);
        if (!e->x[i].wanted)
            continue;
        e->sum.n_wanted++;
        for (int d = 0; d < t->n_deps; d++)
            e->x[i].pending++;
        if (e->x[i].pending == 0)
            e->work[e->n_work++] = i;
    }
    return rc;
}

static void exec_free(exec *e)
{
    for (int i = 0; e->x && i < e->n; i++) {
        free(e->x[i].in_hashes);
        free(e->x[i].before);
    }
    free(e->x);
    free(e->work);
    free(e->ready);
    kp_buf_free(&e->failures);
    kp_progress_free(e->prog);
    kp_runlog_close(e->rl);
}

int kp_exec_plan(kp_graph *g, kp_fs *fs, const kp_exec_opts *o, kp_task_plan *plans,
                 char *err, size_t errlen)
{
    exec e;
    int rc = exec_init(&e, g, fs, o, err, errlen);
    e.planning = 1;
    if (rc == 0)
        rc = kp_runlog_open(fs, o->state_dir, 1, &e.rl, err, errlen);
    if (rc == 0)
        rc = settle_all(&e);
    for (int i = 0; i < e.n && rc == 0; i++) {
        kp_task_plan *p = &plans[i];
        const kp_runlog_entry *ent = kp_runlog_find(e.rl, T(&e, i)->id);
        memset(p, 0, sizeof *p);
        p->wanted = e.x[i].wanted;
        p->will_run = e.x[i].state == S_WOULD_RUN;
        p->why = e.x[i].why;
        p->detail = e.x[i].detail;
        if ((p->has_entry = ent != NULL)) {
            p->last_exit = ent->exit_status;
            p->start_ns = ent->start_ns, p->wall_ms = ent->wall_ms;
            p->cpu_ms = ent->cpu_ms, p->rss_kb = ent->rss_kb;
        }
    }
    exec_free(&e);
    return rc;
}

void kp_exec_reason_text(const kp_task_plan *p, char *buf, size_t n)
{
    const char *d = p->detail;
    switch (p->why) {
    case KP_WHY_UP_TO_DATE: snprintf(buf, n, "up to date"); break;
    case KP_WHY_FORCED: snprintf(buf, n, "run: forced"); break;
    case KP_WHY_NEVER_RUN: snprintf(buf, n, "run: never run"); break;
    case KP_WHY_FAILED_BEFORE: snprintf(buf, n, "run: last run failed"); break;
    case KP_WHY_CONFIG_CHANGED: snprintf(buf, n, "run: config changed"); break;
    case KP_WHY_INPUT_CHANGED:
        if (d)
            snprintf(buf, n, "run: input changed: %s", d);
        else
            snprintf(buf, n, "run: inputs changed");
        break;
    case KP_WHY_OUTPUT_MISSING: snprintf(buf, n, "run: output missing: %s", d ? d : "?"); break;
    case KP_WHY_OUTPUT_CHANGED: snprintf(buf, n, "run: output changed: %s", d ? d : "?"); break;
    case KP_WHY_UPSTREAM: snprintf(buf, n, "run: upstream %s will run", d ? d : "?"); break;
    }
}

/* Prints the plan: every wanted task (explain) or those that would run (dry run). */
static int print_plan(kp_graph *g, kp_fs *fs, const kp_exec_opts *o, kp_exec_summary *sum,
                      char *err, size_t errlen)
{
    int n = kp_graph_count(g), width = 0;
    kp_task_plan *plans = calloc((size_t)n + 1, sizeof *plans);
    if (!plans)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    int rc = kp_exec_plan(g, fs, o, plans, err, errlen);
    for (int i = 0; i < n; i++) {
        int len = (int)strlen(kp_graph_task(g, i)->id);
        width = len > width && len <= 60 ? len : width;
    }
    for (int i = 0; i < n && rc == 0; i++) {
        char why[4200];
        if (!plans[i].wanted)
            continue;
        sum->n_wanted++;
        sum->n_up_to_date += !plans[i].will_run;
        sum->n_not_run += plans[i].will_run;
        if (!o->out || (!o->explain && !plans[i].will_run))
            continue;
        kp_exec_reason_text(&plans[i], why, sizeof why);
        fprintf(o->out, "%-*s  %s\n", width, kp_graph_task(g, i)->id, why);
    }
    if (rc == 0 && o->out)
        fprintf(o->out, "%d task%s would run, %d up to date\n", sum->n_not_run,
                sum->n_not_run == 1 ? "" : "s", sum->n_up_to_date);
    free(plans);
    return rc;
}

static void print_summary(exec *e, int64_t t0)
{
    kp_exec_summary *s = &e->sum;
    s->wall_ms = (kp_fs_now(e->fs) - t0) / 1000000;
    for (int i = 0; i < e->n; i++) {
        s->n_blocked += e->x[i].wanted && e->x[i].state == S_BLOCKED;
        s->n_not_run += e->x[i].wanted && (e->x[i].state == S_READY || e->x[i].state == S_WAITING);
    }
    if (!e->o->out)
        return;
    char dur[32];
    kp_progress_duration(s->wall_ms, dur, sizeof dur);
    kp_progress_printf(e->prog, "%s%d ran, %d up to date, %d failed, %d blocked, %d not run in %s",
                       s->interrupted ? "interrupted: " : "", s->n_ran, s->n_up_to_date,
                       s->n_failed, s->n_blocked, s->n_not_run, dur);
    if (e->failures.len)
        fprintf(e->o->out, "failed:\n%s", kp_buf_str(&e->failures));
}

/* Writes the up-to-date stamp after a complete run; a failure only costs the
 * next no-op run its shortcut, so it is not an error. */
static void write_stamp(kp_fs *fs, const kp_exec_opts *o, int n_tasks, const kp_buf *lines)
{
    char runlog[4200];
    snprintf(runlog, sizeof runlog, "%s/runlog", o->state_dir);
    kp_stamp_write(fs, o->stamp_path, o->config_hash, n_tasks, runlog, lines, NULL, 0);
}

int kp_exec_run(kp_graph *g, kp_runner *r, kp_fs *fs, const kp_exec_opts *o,
                kp_exec_summary *sum, char *err, size_t errlen)
{
    kp_exec_summary dummy;
    sum = sum ? sum : &dummy;
    memset(sum, 0, sizeof *sum);
    if (o->dry_run || o->explain)
        return print_plan(g, fs, o, sum, err, errlen);
    exec e;
    int lock = -1, rc = exec_init(&e, g, fs, o, err, errlen);
    int64_t t0 = kp_fs_now(fs);
    char lock_path[4200];
    snprintf(lock_path, sizeof lock_path, "%s/lock", o->state_dir);
    e.r = r;
    if (rc == 0)
        rc = fs->ops->mkdirs(fs, o->state_dir, err, errlen);
    if (rc == 0)
        rc = fs->ops->lock(fs, lock_path, &lock, err, errlen);
    if (rc == 0 && o->stamp_path)
        rc = fs->ops->remove(fs, o->stamp_path, err, errlen);   /* before anything changes */
    if (rc == 0)
        rc = kp_runlog_open(fs, o->state_dir, 0, &e.rl, err, errlen);
    if (rc == 0 && !(e.prog = kp_progress_create(o->out, o->tty, o->jobs, e.sum.n_wanted)))
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    while (rc == 0 && (rc = step(&e)) == 0)
        ;
    if (rc == 1) {
        print_summary(&e, t0);
        rc = 0;
        if (e.sum.interrupted)
            rc = kp_errf(err, errlen, KP_ERR_TASK, "interrupted");
        else if (e.sum.n_failed)
            rc = kp_errf(err, errlen, KP_ERR_TASK, "%d task%s failed", e.sum.n_failed,
                         e.sum.n_failed == 1 ? "" : "s");
    }
    *sum = e.sum;
    kp_buf stamp;
    kp_buf_init(&stamp, 0);
    int complete = rc == 0 && o->stamp_path && o->n_only == 0 &&
                   e.sum.n_ran + e.sum.n_up_to_date == kp_graph_count(g) &&
                   kp_stamp_collect(g, e.rl, &stamp) == 0;
    exec_free(&e);   /* closes (and compacts) the run log before the lock goes */
    if (complete)
        write_stamp(fs, o, kp_graph_count(g), &stamp);
    kp_buf_free(&stamp);
    if (lock >= 0)
        fs->ops->unlock(fs, lock);
    return rc;
}

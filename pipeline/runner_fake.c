/* runner_fake.c - a runner that runs nothing, for executor tests.
 *
 * start() only queues the task; wait() "finishes" the earliest started one
 * by calling the test's callback, which writes outputs into the in-memory
 * file system.  So up to -j tasks are "running" at once, deterministically.
 */
#include "runner.h"

#include <stdlib.h>
#include <string.h>
#include "../lib/buf.h"
#include "../lib/err.h"

typedef struct fake_runner {
    kp_runner base;        /* first: a kp_runner * is a fake_runner * */
    kp_fs *fs;
    int jobs;
    kp_fake_fn fn;
    void *data;
    const kp_graph *g;
    int *queue;            /* running tasks in start order */
    int64_t *starts;       /* their start times */
    int n_running;
    int max_running;
    int n_started;
    int interrupt_after;   /* report an interrupt after this many starts (0 = never) */
    int interrupt_sent;
    kp_buf started;
} fake_runner;

static fake_runner *F(kp_runner *r) { return (fake_runner *)r; }

static int fake_can_start_more(kp_runner *r)
{
    return F(r)->n_running < F(r)->jobs;
}

static int fake_start(kp_runner *r, const kp_graph *g, int task, char *err, size_t errlen)
{
    fake_runner *f = F(r);
    if (f->n_running >= f->jobs)
        return kp_errf(err, errlen, KP_ERR_INTERNAL, "fake runner: more than %d tasks started", f->jobs);
    const kp_task *t = kp_graph_task(g, task);
    if ((f->started.len && kp_buf_adds(&f->started, " ") < 0) || kp_buf_adds(&f->started, t->id) < 0)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    f->g = g;
    f->queue[f->n_running] = task;
    f->starts[f->n_running] = kp_fs_now(f->fs);
    f->n_running++;
    f->n_started++;
    if (f->n_running > f->max_running)
        f->max_running = f->n_running;
    return 0;
}

static int fake_interrupted(kp_runner *r)
{
    fake_runner *f = F(r);
    if (f->interrupt_after > 0 && f->n_started >= f->interrupt_after && !f->interrupt_sent) {
        f->interrupt_sent = 1;
        return 1;
    }
    return 0;
}

static int fake_wait(kp_runner *r, int timeout_ms, kp_run_result *out, char *err, size_t errlen)
{
    (void)timeout_ms, (void)err, (void)errlen;
    fake_runner *f = F(r);
    if (fake_interrupted(r))
        return KP_WAIT_INTERRUPTED;
    if (f->n_running == 0)
        return KP_WAIT_IDLE;
    int task = f->queue[0];
    int64_t start = f->starts[0];
    f->n_running--;
    memmove(f->queue, f->queue + 1, (size_t)f->n_running * sizeof *f->queue);
    memmove(f->starts, f->starts + 1, (size_t)f->n_running * sizeof *f->starts);
    kp_fs_mem_advance(f->fs, 10000000);
    memset(out, 0, sizeof *out);
    out->task = task;
    out->start_ns = start;
    out->wall_ms = (kp_fs_now(f->fs) - start) / 1000000;
    out->exit_status = f->fn(f->fs, kp_graph_task(f->g, task), f->data);
    out->cpu_ms = out->wall_ms;
    out->rss_kb = 1024;
    return KP_WAIT_DONE;
}

static int fake_running(kp_runner *r)
{
    return F(r)->n_running;
}

static void fake_free(kp_runner *r)
{
    fake_runner *f = F(r);
    kp_buf_free(&f->started);
    free(f->queue);
    free(f->starts);
    free(f);
}

static const kp_runner_ops fake_ops = {
    fake_can_start_more, fake_start, fake_wait, fake_interrupted, fake_running, fake_free,
};

kp_runner *kp_runner_fake_create(kp_fs *fs, int jobs, kp_fake_fn fn, void *data)
{
    fake_runner *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->base.ops = &fake_ops;
    f->fs = fs;
    f->jobs = jobs > 0 ? jobs : 1;
    f->fn = fn;
    f->data = data;
    kp_buf_init(&f->started, 0);
    f->queue = malloc((size_t)f->jobs * sizeof *f->queue);
    f->starts = malloc((size_t)f->jobs * sizeof *f->starts);
    if (!f->queue || !f->starts) {
        fake_free(&f->base);
        return NULL;
    }
    return &f->base;
}

const char *kp_runner_fake_started(kp_runner *r)
{
    return kp_buf_str(&F(r)->started);
}

int kp_runner_fake_max_running(kp_runner *r)
{
    return F(r)->max_running;
}

void kp_runner_fake_interrupt_after(kp_runner *r, int n)
{
    F(r)->interrupt_after = n;
}

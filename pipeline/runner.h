/* runner.h - what starts and reaps tasks, behind an ops table (ninja's CommandRunner).
 *
 * The executor asks can_start_more, calls start for a ready task, and wait
 * to learn which task finished.  The fork runner (runner_fork.c) runs
 * built-in stage tasks in a fork()ed child without exec and command tasks
 * by vfork and exec; the fake runner (runner_fake.c) runs nothing: it calls a test
 * callback that writes the task's outputs into an in-memory kp_fs, and
 * records the order of starts and the most tasks running at once.
 */
#ifndef KP_RUNNER_H
#define KP_RUNNER_H

#include <stddef.h>
#include <stdint.h>
#include "graph.h"
#include "fs.h"

/* A finished task. */
typedef struct kp_run_result {
    int task;                 /* its index in the graph */
    int exit_status;          /* 0 ok, the exit code, or 128+N when killed by signal N */
    int64_t start_ns;         /* wall clock at start */
    int64_t wall_ms, cpu_ms;  /* elapsed; user + system CPU */
    int64_t rss_kb;           /* peak resident set size */
} kp_run_result;

/* What wait returns (besides a negative status on error). */
enum {
    KP_WAIT_DONE = 0,         /* *out holds a finished task */
    KP_WAIT_TIMEOUT = 1,      /* timeout_ms passed; nothing finished */
    KP_WAIT_INTERRUPTED = 2,  /* SIGINT/SIGTERM arrived and was forwarded to the children */
    KP_WAIT_IDLE = 3          /* nothing is running */
};

typedef struct kp_runner kp_runner;

typedef struct kp_runner_ops {
    /* Returns 1 if another task may start now (fewer than -j running). */
    int (*can_start_more)(kp_runner *r);
    /* Starts task (borrowed from g, which must outlive the run); 0 or a negative status. */
    int (*start)(kp_runner *r, const kp_graph *g, int task, char *err, size_t errlen);
    /* Waits up to timeout_ms (-1: no limit) for a task to finish; a KP_WAIT_ value. */
    int (*wait)(kp_runner *r, int timeout_ms, kp_run_result *out, char *err, size_t errlen);
    /* Returns 1 (once per signal) if SIGINT/SIGTERM arrived since the last call or wait;
     * the signal has been forwarded to the running children. */
    int (*interrupted)(kp_runner *r);
    /* Returns the number of tasks started and not yet returned by wait. */
    int (*running)(kp_runner *r);
    /* Frees the runner (running children are killed and reaped). */
    void (*free)(kp_runner *r);
} kp_runner_ops;

struct kp_runner {
    const kp_runner_ops *ops;
};

/* Frees a runner; NULL is accepted. */
void kp_runner_free(kp_runner *r);

/* Returns the thread budget per task: max(1, cores / jobs). */
int kp_runner_thread_budget(int cores, int jobs);

/* ---- the fork runner ---- */

/* Makes a runner that runs up to jobs tasks at once, each with `threads`
 * BLAS/kp_parallel_for threads; cfg (borrowed, may be NULL when every task
 * is a command) gives built-in tasks their stage.  Blocks SIGINT, SIGTERM and
 * SIGCHLD in the calling thread until kp_runner_free, so the process must
 * have no other thread then (OpenBLAS's workers are stopped here), and
 * asks for a short scheduler slice until then (Linux 6.12+; children get
 * the default); *out caller-owned. */
int kp_runner_fork_create(const kp_config *cfg, int jobs, int threads, kp_runner **out,
                          char *err, size_t errlen);

/* ---- the fake runner, for tests ---- */

/* Runs one task in the test: writes its outputs into fs; returns the exit status. */
typedef int (*kp_fake_fn)(kp_fs *fs, const kp_task *t, void *data);

/* Makes a fake runner: up to jobs tasks "run" at once; wait finishes the
 * earliest started one by calling fn(fs, task, data) and advancing the
 * fake clock 10 ms.  fs and data borrowed; NULL on allocation failure. */
kp_runner *kp_runner_fake_create(kp_fs *fs, int jobs, kp_fake_fn fn, void *data);

/* Returns the ids of the tasks started so far, joined by " " (borrowed). */
const char *kp_runner_fake_started(kp_runner *r);

/* Returns the most tasks that were running at once. */
int kp_runner_fake_max_running(kp_runner *r);

/* Makes the runner report an interrupt once n tasks have started. */
void kp_runner_fake_interrupt_after(kp_runner *r, int n);

#endif

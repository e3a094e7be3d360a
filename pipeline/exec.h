/* exec.h - the scheduler: which tasks are stale, in what order they run.
 *
 * A task becomes ready when every task it depends on has finished.  Its
 * cache key is computed then: hash(param text, input and output counts, and
 * each input's content hash, in order; no paths, so a moved checkout keeps
 * its cache), so an upstream task that re-ran
 * but wrote identical bytes does not make it run (ninja's restat).  It is
 * skipped when the run log has the same key for it, a zero exit status, and
 * every output exists with the content hash recorded.  Ready tasks start in
 * graph order, as many as the runner allows (-j).  A failed task (non-zero
 * exit, or a declared output missing afterwards) blocks only its
 * dependents; without keep_going no new task starts after a failure, but
 * running ones finish.  Before anything runs every external input must
 * exist, and RUN_DIR/.kpipe/lock must be free (a second concurrent run is
 * refused).  SIGINT/SIGTERM (seen by the runner) stop new starts, running
 * tasks are signalled and waited for, and the result says interrupted.
 */
#ifndef KP_EXEC_H
#define KP_EXEC_H

#include <stdint.h>
#include <stdio.h>
#include "fs.h"
#include "graph.h"
#include "runner.h"

/* Why a task will run (or not). */
typedef enum kp_reason {
    KP_WHY_UP_TO_DATE,
    KP_WHY_FORCED,          /* --force named its stage */
    KP_WHY_NEVER_RUN,       /* no run log entry */
    KP_WHY_FAILED_BEFORE,   /* its last run failed */
    KP_WHY_CONFIG_CHANGED,  /* its param text's hash differs from the recorded one */
    KP_WHY_INPUT_CHANGED,   /* detail: the first input whose content changed (or NULL) */
    KP_WHY_OUTPUT_MISSING,  /* detail: the output */
    KP_WHY_OUTPUT_CHANGED,  /* detail: the output whose content is not what it wrote */
    KP_WHY_UPSTREAM         /* detail: the id of a dependency that will run (plans only) */
} kp_reason;

typedef struct kp_exec_opts {
    const char *state_dir;             /* RUN_DIR/.kpipe: run log and lock */
    int jobs;                          /* as given to the runner (for the ETA) */
    const char *const *only; int n_only;    /* stage names or matrix bases, or none = all */
    const char *const *force; int n_force;  /* stage names or bases to re-run even if cached */
    int keep_going;                    /* after a failure, go on with what does not depend on it */
    int dry_run;                       /* print what would run and why; run nothing */
    int explain;                       /* print every task's state and reason (kpipe plan) */
    FILE *out;                         /* progress, plan and summary lines; NULL = silent */
    int tty;                           /* out is a terminal: one live status line */
    const char *stamp_path;            /* the up-to-date stamp (stamp.h): removed before a
                                          run starts, written after a complete one; or NULL */
    kp_hash config_hash;               /* the config text's hash, for the stamp */
} kp_exec_opts;

/* One task's plan (kp_exec_plan) with the stats of its last recorded run. */
typedef struct kp_task_plan {
    int wanted;             /* selected by only (all tasks when only is empty) */
    int will_run;
    kp_reason why;
    const char *detail;     /* borrowed from the graph: a path or a task id, or NULL */
    int has_entry;          /* the run log knows the task: the fields below are set */
    int last_exit;          /* its last exit status (-1: a declared output was missing) */
    int64_t start_ns, wall_ms, cpu_ms, rss_kb;
} kp_task_plan;

/* What a run did. */
typedef struct kp_exec_summary {
    int n_wanted;       /* tasks selected */
    int n_ran;          /* started and succeeded */
    int n_up_to_date;   /* skipped */
    int n_failed;
    int n_blocked;      /* not run because something they need failed */
    int n_not_run;      /* not started because the run stopped (dry run: would run) */
    int interrupted;    /* SIGINT/SIGTERM arrived */
    int64_t wall_ms;
} kp_exec_summary;

/* Runs the stale tasks of g (borrowed; kp_graph_finish done) with runner r
 * and file system fs.  With o->dry_run or o->explain nothing runs, r may be
 * NULL and the plan is printed to o->out.  Fills *sum (may be NULL).
 * Returns 0 when every wanted task is up to date or ran; KP_ERR_TASK when a
 * task failed or the run was interrupted (sum->interrupted); KP_ERR_ARG for
 * an unknown name in only/force; KP_ERR_NOTFOUND for a missing external
 * input; KP_ERR_IO when the lock is taken or the run log cannot be written. */
int kp_exec_run(kp_graph *g, kp_runner *r, kp_fs *fs, const kp_exec_opts *o,
                kp_exec_summary *sum, char *err, size_t errlen);

/* Works out, without running or writing anything, which tasks would run
 * and why: fills plans[kp_graph_count(g)] (caller-allocated).  Errors as kp_exec_run. */
int kp_exec_plan(kp_graph *g, kp_fs *fs, const kp_exec_opts *o, kp_task_plan *plans,
                 char *err, size_t errlen);

/* Writes "up to date" or "run: <reason>" for a plan into buf. */
void kp_exec_reason_text(const kp_task_plan *p, char *buf, size_t bufsize);

#endif

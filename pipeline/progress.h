/* progress.h - what a run prints while it runs.
 *
 * Not a terminal: one plain line per task started and finished,
 *     [  3/130] start logreg/C=0.1#part2
 *     [ 12/130] done  logreg/C=0.1#part2  0.41s  eta 12s
 * where the count is tasks started (or finished) out of the tasks that need
 * to run (the total shrinks as tasks turn out up to date), and the ETA is the
 * finished tasks' mean time x tasks remaining / jobs.  On a terminal, a
 * single status line (running tasks, count, ETA, elapsed) redrawn with \r
 * replaces the start lines (never both); done and FAIL lines print above it.
 */
#ifndef KP_PROGRESS_H
#define KP_PROGRESS_H

#include <stdint.h>
#include <stdio.h>

typedef struct kp_progress kp_progress;

/* Returns a new reporter writing to out (borrowed; NULL = silent) for up to
 * total tasks, or NULL on allocation failure. */
kp_progress *kp_progress_create(FILE *out, int tty, int jobs, int total);

/* Clears the status line and frees; NULL is accepted. */
void kp_progress_free(kp_progress *p);

/* One task turned out up to date: the total shrinks. */
void kp_progress_skip(kp_progress *p);

/* A task started (id borrowed until its done call). */
void kp_progress_start(kp_progress *p, const char *id);

/* A task finished: ok, or failed with exit_status (log may be NULL). */
void kp_progress_done(kp_progress *p, const char *id, int ok, int exit_status,
                      int64_t wall_ms, const char *log);

/* Redraws the status line (terminal only): time passes for the ETA. */
void kp_progress_tick(kp_progress *p);

/* Prints a whole line (the status line is cleared first and redrawn after). */
void kp_progress_printf(kp_progress *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Writes a duration as "0.41s", "12s", "3m05s" or "1h02m" into buf. */
void kp_progress_duration(int64_t ms, char *buf, size_t bufsize);

#endif

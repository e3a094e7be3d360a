/* parallel.h - a small parallel-for over a fixed thread count (after klib's kthread).
 *
 * fn(data, i, tid) is called once for every i in [0, n), on n_threads threads
 * (tid in [0, n_threads)).  Which thread runs which i is not fixed, so callers
 * that reduce must write per-i results and combine them in index order: the
 * result then never depends on the thread count.
 */
#ifndef KP_PARALLEL_H
#define KP_PARALLEL_H

#include <stddef.h>

typedef void (*kp_for_fn)(void *data, size_t i, int tid);

/* Runs fn for every i in [0, n) on up to n_threads threads (1 = inline). */
void kp_parallel_for(int n_threads, kp_for_fn fn, void *data, size_t n);

/* Returns the thread budget of this process: $KPIPE_THREADS, else the core count. */
int kp_thread_budget(void);

#endif

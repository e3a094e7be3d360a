/* parallel.c - a small parallel-for on pthreads (after klib's kthread). */
#include "parallel.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct pfor_shared {
    kp_for_fn fn;
    void *data;
    size_t n;
    atomic_size_t next;     /* the next index to hand out */
} pfor_shared;

typedef struct pfor_worker {
    pfor_shared *sh;
    int tid;
} pfor_worker;

static void *pfor_run(void *arg)
{
    pfor_worker *w = arg;
    pfor_shared *sh = w->sh;
    for (;;) {
        size_t i = atomic_fetch_add_explicit(&sh->next, 1, memory_order_relaxed);
        if (i >= sh->n)
            break;
        sh->fn(sh->data, i, w->tid);
    }
    return NULL;
}

static void pfor_inline(kp_for_fn fn, void *data, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fn(data, i, 0);
}

void kp_parallel_for(int n_threads, kp_for_fn fn, void *data, size_t n)
{
    if (n_threads <= 1 || n <= 1) {
        pfor_inline(fn, data, n);
        return;
    }
    if ((size_t)n_threads > n)
        n_threads = (int)n;
    pfor_shared sh = { fn, data, n, 0 };
    pthread_t *th = malloc(sizeof *th * (size_t)n_threads);
    pfor_worker *w = malloc(sizeof *w * (size_t)n_threads);
    if (!th || !w) {   /* no memory for threads: still visit every index */
        free(th);
        free(w);
        pfor_inline(fn, data, n);
        return;
    }
    int started = 0;
    for (int t = 1; t < n_threads; t++) {
        w[t] = (pfor_worker){ &sh, t };
        if (pthread_create(&th[t], NULL, pfor_run, &w[t]) != 0)
            break;          /* run with the threads we have */
        started = t;
    }
    w[0] = (pfor_worker){ &sh, 0 };
    pfor_run(&w[0]);        /* the caller works too */
    for (int t = 1; t <= started; t++)
        pthread_join(th[t], NULL);
    free(th);
    free(w);
}

int kp_thread_budget(void)
{
    const char *s = getenv("KPIPE_THREADS");
    if (s && *s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (*end == 0 && v > 0 && v <= INT_MAX)
            return (int)v;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 && n <= INT_MAX ? (int)n : 1;
}

/* blas_linked.c - lib/blas.h for binaries linked with OpenBLAS (the tests). */
#include "blas.h"

#include <stdio.h>

/* Stops OpenBLAS's worker threads (pthread builds; weak: absent elsewhere). */
void blas_thread_shutdown_(void) __attribute__((weak));

int kp_blas_preload(char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    return 0;
}

char *openblas_get_config(void);
char *openblas_get_corename(void);

void kp_blas_describe(char *buf, size_t n)
{
    snprintf(buf, n, "%s, kernels %s", openblas_get_config(), openblas_get_corename());
}

void kp_blas_stop_threads(void)
{
    if (blas_thread_shutdown_)
        blas_thread_shutdown_();
}

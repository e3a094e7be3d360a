/* blas.h - when kpipe's process loads OpenBLAS.
 *
 * OpenBLAS allocates its buffers and starts its thread pool in its library
 * constructor: about 4 ms of CPU and 6 ms of wall time before main, on
 * every kpipe command.  The scheduler never calls BLAS, so the kpipe binary
 * does not link OpenBLAS: it links pipeline/blas_lazy.c, whose cblas_* and
 * LAPACK entry points load libopenblas with dlopen on first use.  Built-in
 * tasks run in forked children, so the runner preloads it once in the
 * parent before forking the first one.  Loading it, kpipe chooses the
 * kernel set for the CPU's instructions (OPENBLAS_CORETYPE, unless set):
 * OpenBLAS falls back to generic kernels on CPUs newer than its release.
 * Every other binary (the tests)
 * links OpenBLAS as usual and gets lib/blas_linked.c, where these do little.
 */
#ifndef KP_BLAS_H
#define KP_BLAS_H

#include <stddef.h>

/* Loads OpenBLAS if it is not loaded yet; 0 or KP_ERR_IO naming the library. */
int kp_blas_preload(char *err, size_t errlen);

/* Writes "OpenBLAS <version and build> kernels <core>" into buf (loading
 * OpenBLAS if needed), or why it cannot be loaded. */
void kp_blas_describe(char *buf, size_t n);

/* Stops OpenBLAS's worker threads if it is loaded (they spin waiting for
 * work; the next BLAS call starts them again). */
void kp_blas_stop_threads(void);

#endif

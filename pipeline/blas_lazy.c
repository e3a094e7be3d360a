/* blas_lazy.c - lib/blas.h for the kpipe binary: OpenBLAS loaded on first use.
 *
 * The kpipe binary does not link libopenblas (see lib/blas.h for why).  It
 * links this file instead, which defines every BLAS/LAPACK function kpipe
 * calls as a forwarder to the real one, found with dlopen/dlsym the first
 * time any of them runs (or at kp_blas_preload).  The prototypes come from
 * <cblas.h>, so the compiler checks each forwarder's signature.  A model
 * that calls a BLAS function not listed here makes the kpipe link fail with
 * "undefined reference": add one line below.
 */
#include <cblas.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include "../lib/blas.h"
#include "../lib/err.h"

#define OPENBLAS_SONAME "libopenblas.so.0"

void dposv_(const char *uplo, const int *n, const int *nrhs, double *a, const int *lda,
            double *b, const int *ldb, int *info);

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static void *lib;
static char load_error[512];

/* The OpenBLAS kernel set for this CPU's instruction set, or NULL.  OpenBLAS
 * picks one itself from the CPU model, but falls back to its generic SSE3
 * kernels (Prescott) on models newer than its release: Debian 12's 0.3.21
 * does so on Sapphire Rapids, where sgemm then runs ~4x slower. */
static const char *core_for_cpu(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512bf16"))
        return "Cooperlake";
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return "Haswell";
    return NULL;
}

/* Loads OpenBLAS with a kernel set for this CPU's instructions, unless the
 * user chose one with OPENBLAS_CORETYPE.  The variable is read by OpenBLAS's
 * constructor during dlopen and removed afterwards, so commands started
 * later do not inherit it. */
static void load(void)
{
    const char *core = getenv("OPENBLAS_CORETYPE") ? NULL : core_for_cpu();
    if (core)
        setenv("OPENBLAS_CORETYPE", core, 1);
    lib = dlopen(OPENBLAS_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!lib)
        snprintf(load_error, sizeof load_error, "cannot load OpenBLAS: %s", dlerror());
    if (core)
        unsetenv("OPENBLAS_CORETYPE");
}

/* Returns the real function called name; a missing library or symbol at a
 * BLAS call (after kp_blas_preload succeeded, or in `kpipe predict`) is a
 * broken installation: it says so and aborts. */
static void *sym(const char *name)
{
    pthread_once(&load_once, load);
    void *f = lib ? dlsym(lib, name) : NULL;
    if (!f) {
        fprintf(stderr, "kpipe: %s\n", lib ? dlerror() : load_error);
        abort();
    }
    return f;
}

int kp_blas_preload(char *err, size_t errlen)
{
    pthread_once(&load_once, load);
    return lib ? 0 : kp_errf(err, errlen, KP_ERR_IO, "%s", load_error);
}

void kp_blas_describe(char *buf, size_t n)
{
    if (kp_blas_preload(buf, n) < 0)
        return;
    char *(*config)(void) = (char *(*)(void))dlsym(lib, "openblas_get_config");
    char *(*core)(void) = (char *(*)(void))dlsym(lib, "openblas_get_corename");
    snprintf(buf, n, "%s, kernels %s", config ? config() : "OpenBLAS",
             core ? core() : "unknown");
}

void kp_blas_stop_threads(void)
{
    void (*stop)(void) = lib ? (void (*)(void))dlsym(lib, "blas_thread_shutdown_") : NULL;
    if (stop)
        stop();
}

/* FORWARD(return type, name, (parameters), (arguments)): a forwarder whose
 * real function is looked up once. */
#define FORWARD(ret, name, params, args)                                    \
    ret name params                                                         \
    {                                                                       \
        static ret (*real) params;                                          \
        if (!__atomic_load_n(&real, __ATOMIC_ACQUIRE))                      \
            __atomic_store_n(&real, (ret (*) params)sym(#name), __ATOMIC_RELEASE); \
        return real args;                                                   \
    }

#define ORD const enum CBLAS_ORDER
#define TRN const enum CBLAS_TRANSPOSE
#define UPL const enum CBLAS_UPLO
#define BI const blasint

FORWARD(void, openblas_set_num_threads, (int n), (n))
FORWARD(int, openblas_get_num_threads, (void), ())
FORWARD(void, dposv_, (const char *uplo, const int *n, const int *nrhs, double *a,
                       const int *lda, double *b, const int *ldb, int *info),
        (uplo, n, nrhs, a, lda, b, ldb, info))
FORWARD(void, cblas_sgemm, (ORD o, TRN ta, TRN tb, BI m, BI n, BI k, const float al,
                            const float *a, BI lda, const float *b, BI ldb, const float be,
                            float *c, BI ldc),
        (o, ta, tb, m, n, k, al, a, lda, b, ldb, be, c, ldc))
FORWARD(void, cblas_dgemm, (ORD o, TRN ta, TRN tb, BI m, BI n, BI k, const double al,
                            const double *a, BI lda, const double *b, BI ldb, const double be,
                            double *c, BI ldc),
        (o, ta, tb, m, n, k, al, a, lda, b, ldb, be, c, ldc))
FORWARD(void, cblas_sgemv, (ORD o, TRN t, BI m, BI n, const float al, const float *a, BI lda,
                            const float *x, BI incx, const float be, float *y, BI incy),
        (o, t, m, n, al, a, lda, x, incx, be, y, incy))
FORWARD(void, cblas_dgemv, (ORD o, TRN t, BI m, BI n, const double al, const double *a, BI lda,
                            const double *x, BI incx, const double be, double *y, BI incy),
        (o, t, m, n, al, a, lda, x, incx, be, y, incy))
FORWARD(void, cblas_ssyrk, (ORD o, UPL u, TRN t, BI n, BI k, const float al, const float *a,
                            BI lda, const float be, float *c, BI ldc),
        (o, u, t, n, k, al, a, lda, be, c, ldc))
FORWARD(void, cblas_dsyrk, (ORD o, UPL u, TRN t, BI n, BI k, const double al, const double *a,
                            BI lda, const double be, double *c, BI ldc),
        (o, u, t, n, k, al, a, lda, be, c, ldc))
FORWARD(void, cblas_sger, (ORD o, BI m, BI n, const float al, const float *x, BI incx,
                           const float *y, BI incy, float *a, BI lda),
        (o, m, n, al, x, incx, y, incy, a, lda))
FORWARD(float, cblas_sdot, (BI n, const float *x, BI incx, const float *y, BI incy),
        (n, x, incx, y, incy))
FORWARD(double, cblas_ddot, (BI n, const double *x, BI incx, const double *y, BI incy),
        (n, x, incx, y, incy))
FORWARD(void, cblas_saxpy, (BI n, const float al, const float *x, BI incx, float *y, BI incy),
        (n, al, x, incx, y, incy))
FORWARD(void, cblas_daxpy, (BI n, const double al, const double *x, BI incx, double *y, BI incy),
        (n, al, x, incx, y, incy))
FORWARD(void, cblas_sscal, (BI n, const float al, float *x, BI incx), (n, al, x, incx))
FORWARD(void, cblas_dscal, (BI n, const double al, double *x, BI incx), (n, al, x, incx))
FORWARD(float, cblas_snrm2, (BI n, const float *x, BI incx), (n, x, incx))
FORWARD(double, cblas_dnrm2, (BI n, const double *x, BI incx), (n, x, incx))
FORWARD(void, cblas_scopy, (BI n, const float *x, BI incx, float *y, BI incy),
        (n, x, incx, y, incy))

/* sgemm_peak.c - OpenBLAS sgemm throughput on this machine, for one kernel choice.
 *
 *   cc -std=c11 -O2 bench/cnn/sgemm_peak.c -ldl -o sgemm_peak
 *   ./sgemm_peak [--core env|unset|auto|NAME] [--n 2048] [--threads 2] [--reps 5]
 *
 * Times C = A B (row-major, n x n floats, alpha 1, beta 0) with OpenBLAS's
 * cblas_sgemm after one warm-up call, reps times, and prints one JSON line:
 * the kernel set OpenBLAS runs (openblas_get_corename), its build, the
 * GFLOP/s (2 n^3 / seconds) of the fastest and the median run, and whether
 * a few entries of C match a double-precision dot product.
 *
 * OpenBLAS reads OPENBLAS_CORETYPE once, when the library is loaded, so the
 * library is loaded here with dlopen after the choice is made:
 *   env     the environment as it is (OPENBLAS_CORETYPE set or not);
 *   unset   OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed: OpenBLAS picks
 *           from the CPU model (Debian 12's 0.3.21 falls back to its
 *           generic Prescott kernels on CPUs newer than its release);
 *   auto    what the kpipe binary does (pipeline/blas_lazy.c): the
 *           environment's value if set, else Cooperlake / SkylakeX / Haswell
 *           from the CPU's instruction set;
 *   NAME    OPENBLAS_CORETYPE=NAME.
 * Every buffer is allocated and written before timing (page faults are
 * expensive here), so the times are the kernel's alone.  Exit status 0, or
 * 1 with a message on stderr (bad option, library missing, wrong result).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_REPS 100
enum { ROW_MAJOR = 101, NO_TRANS = 111 };   /* cblas.h's values */

typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int,
                         const float *, int, float, float *, int);

typedef struct blas {
    void *lib;
    sgemm_fn sgemm;
    void (*set_threads)(int);
    char *(*corename)(void);
    char *(*config)(void);
} blas;

typedef struct opts {
    const char *core;
    int n, threads, reps;
} opts;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* kpipe's choice of kernel set for this CPU (pipeline/blas_lazy.c). */
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

/* Sets the environment for the kernel choice core; 0, or -1 with a message
 * on an empty name. */
static int choose_core(const char *core)
{
    if (strcmp(core, "env") == 0)
        return 0;
    if (strcmp(core, "unset") == 0) {
        unsetenv("OPENBLAS_CORETYPE");
        unsetenv("OPENBLAS_L2_SIZE");
        return 0;
    }
    if (strcmp(core, "auto") == 0) {
        const char *c = core_for_cpu();
        if (!getenv("OPENBLAS_CORETYPE") && c)
            setenv("OPENBLAS_CORETYPE", c, 1);
        return 0;
    }
    if (!*core) {
        fprintf(stderr, "sgemm_peak: --core needs env, unset, auto or a kernel name\n");
        return -1;
    }
    setenv("OPENBLAS_CORETYPE", core, 1);
    return 0;
}

/* Loads libopenblas and its symbols into *b; 0 or -1 with a message. */
static int load_blas(blas *b)
{
    b->lib = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!b->lib) {
        fprintf(stderr, "sgemm_peak: cannot load OpenBLAS: %s\n", dlerror());
        return -1;
    }
    *(void **)&b->sgemm = dlsym(b->lib, "cblas_sgemm");
    *(void **)&b->set_threads = dlsym(b->lib, "openblas_set_num_threads");
    *(void **)&b->corename = dlsym(b->lib, "openblas_get_corename");
    *(void **)&b->config = dlsym(b->lib, "openblas_get_config");
    if (!b->sgemm || !b->set_threads || !b->corename || !b->config) {
        fprintf(stderr, "sgemm_peak: libopenblas.so.0 lacks a symbol: %s\n", dlerror());
        return -1;
    }
    return 0;
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

/* Fills *o from argv; 0 or -1 with a message. */
static int parse_args(int argc, char **argv, opts *o)
{
    *o = (opts){ "env", 2048, 2, 5 };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = !v;
        if (!bad && strcmp(a, "--core") == 0)
            o->core = v;
        else if (!bad && strcmp(a, "--n") == 0)
            bad = parse_int(v, 1, 16384, &o->n);
        else if (!bad && strcmp(a, "--threads") == 0)
            bad = parse_int(v, 1, 256, &o->threads);
        else if (!bad && strcmp(a, "--reps") == 0)
            bad = parse_int(v, 1, MAX_REPS, &o->reps);
        else
            bad = 1;
        if (bad) {
            fprintf(stderr, "sgemm_peak: bad option %s%s%s (usage: --core env|unset|auto|NAME "
                    "--n N --threads T --reps R)\n", a, v ? " " : "", v ? v : "");
            return -1;
        }
        i++;
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Largest error of a few entries of C against double dot products, relative
 * to the sum of the products' magnitudes. */
static double check_entries(const float *A, const float *B, const float *C, int n)
{
    double worst = 0;
    for (int t = 0; t < 16; t++) {
        int i = (int)((unsigned)t * 2654435761u % (unsigned)n), j = (t * 7919) % n;
        double s = 0, mag = 0;
        for (int k = 0; k < n; k++) {
            double p = (double)A[(size_t)i * n + k] * B[(size_t)k * n + j];
            s += p;
            mag += p < 0 ? -p : p;
        }
        double e = (C[(size_t)i * n + j] - s) / (mag > 0 ? mag : 1);
        worst = e < 0 ? (-e > worst ? -e : worst) : (e > worst ? e : worst);
    }
    return worst;
}

/* Times o->reps sgemm calls into secs (sorted); returns the result check. */
static double time_sgemm(const blas *b, const opts *o, float *A, float *B, float *C,
                         double *secs)
{
    int n = o->n;
    b->sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, n, n, n, 1.0f, A, n, B, n, 0.0f, C, n);
    for (int r = 0; r < o->reps; r++) {
        double t0 = now();
        b->sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, n, n, n, 1.0f, A, n, B, n, 0.0f, C, n);
        secs[r] = now() - t0;
    }
    qsort(secs, (size_t)o->reps, sizeof *secs, cmp_double);
    return check_entries(A, B, C, n);
}

static void print_result(const blas *b, const opts *o, const double *secs, double err)
{
    const char *env = getenv("OPENBLAS_CORETYPE");
    double flop = 2.0 * o->n * (double)o->n * o->n;
    printf("{\"core_request\": \"%s\", \"OPENBLAS_CORETYPE\": \"%s\", \"corename\": \"%s\", "
           "\"config\": \"%s\", \"n\": %d, \"threads\": %d, \"reps\": %d, "
           "\"gflops_best\": %.1f, \"gflops_median\": %.1f, \"seconds_best\": %.4f, "
           "\"max_rel_error\": %.2g}\n",
           o->core, env ? env : "unset", b->corename(), b->config(), o->n, o->threads,
           o->reps, flop / secs[0] / 1e9, flop / secs[o->reps / 2] / 1e9, secs[0], err);
}

int main(int argc, char **argv)
{
    opts o;
    blas b = { 0 };
    float *A = NULL, *B = NULL, *C = NULL;
    double secs[MAX_REPS];
    int rc = 1;
    if (parse_args(argc, argv, &o) || choose_core(o.core) || load_blas(&b))
        goto fail;
    b.set_threads(o.threads);
    size_t count = (size_t)o.n * (size_t)o.n;
    A = malloc(count * sizeof *A);
    B = malloc(count * sizeof *B);
    C = malloc(count * sizeof *C);
    if (!A || !B || !C) {
        fprintf(stderr, "sgemm_peak: out of memory for n = %d\n", o.n);
        goto fail;
    }
    for (size_t i = 0; i < count; i++) {
        A[i] = (float)((i * 37 + 11) % 101) / 101.0f - 0.5f;
        B[i] = (float)((i * 53 + 7) % 97) / 97.0f - 0.5f;
        C[i] = 0.0f;
    }
    double err = time_sgemm(&b, &o, A, B, C, secs);
    print_result(&b, &o, secs, err);
    if (err > 1e-4) {
        fprintf(stderr, "sgemm_peak: wrong result (relative error %.2g)\n", err);
        goto fail;
    }
    rc = 0;
fail:
    free(A);
    free(B);
    free(C);
    if (b.lib)
        dlclose(b.lib);
    return rc;
}

/* conv_bench.c - conv2d kernel throughput on the Fashion-MNIST benchmark CNN.
 *
 * Times kp_conv_forward + kp_conv_backward for each conv of the issue-4
 * network (batch 128, pad 1, 3x3) and reports GFLOP/s per layer and as a
 * fraction of a plain 2048^3 cblas_sgemm on the same number of OpenBLAS
 * threads ("the fraction of OpenBLAS peak"), plus the images/s the conv
 * layers alone allow.  The first conv computes no dx, as in training.
 *
 * Build and run from the repository root (OpenBLAS picks its kernels from
 * OPENBLAS_CORETYPE at load, as kpipe does: Cooperlake on this machine):
 *   cc -std=c11 -D_GNU_SOURCE -O2 -g bench/cnn/conv_bench.c models/nn/conv.c \
 *      lib/parallel.c lib/err.c $(pkg-config --cflags --libs openblas) -lpthread -lm \
 *      -o build/conv_bench
 *   OPENBLAS_CORETYPE=Cooperlake ./build/conv_bench [threads=2] [rounds=5] [im2col]
 * im2col: every conv through im2col + sgemm (no direct AVX-512 kernels), to
 * compare.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "../../lib/err.h"
#include "../../models/nn/kernels.h"

void openblas_set_num_threads(int n);
char *openblas_get_corename(void);
/* Stops OpenBLAS's worker threads, which spin for a while after a
 * multi-threaded call (pthread builds; weak: absent elsewhere). */
void blas_thread_shutdown_(void) __attribute__((weak));
/* models/nn/conv.c's test hook: 0 sends every conv through im2col + sgemm. */
void kp_conv_set_direct(int on);

enum { BATCH = 128 };

typedef struct layer {
    const char *name;
    int c_in, hw, c_out, want_dx;
} layer;

static const layer layers[] = {
    { "conv1  1->32 28x28", 1, 28, 32, 0 },
    { "conv2 32->32 28x28", 32, 28, 32, 1 },
    { "conv3 32->64 14x14", 32, 14, 64, 1 },
    { "conv4 64->64 14x14", 64, 14, 64, 1 },
};

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* A touched (page-faulted) buffer of n floats with small values. */
static float *buffer(size_t n)
{
    float *v = malloc((n ? n : 1) * sizeof *v);
    if (!v) {
        fprintf(stderr, "conv_bench: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++)
        v[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    return v;
}

/* The buffers of one layer's passes, allocated and touched once. */
typedef struct layer_run {
    const layer *L;
    kp_conv_shape s;
    float *x, *W, *b, *y, *dy, *dx, *dW, *db, *ws;
    double tf, tb;          /* best seconds of a forward, of a backward */
} layer_run;

/* The shape of a layer of the network. */
static kp_conv_shape layer_shape(const layer *L)
{
    kp_conv_shape s = { L->c_in, L->hw, L->hw, L->c_out, 3, 1, 1, 1, 0, 0 };
    char err[KP_ERRLEN];
    if (kp_conv_shape_init(&s, err, sizeof err)) {
        fprintf(stderr, "conv_bench: %s\n", err);
        exit(1);
    }
    return s;
}

static void run_open(layer_run *r, const layer *L, int threads)
{
    r->L = L;
    r->s = layer_shape(L);
    size_t nx = (size_t)BATCH * r->s.c_in * r->s.h_in * r->s.w_in;
    size_t ny = (size_t)BATCH * r->s.c_out * r->s.h_out * r->s.w_out;
    size_t nw = (size_t)r->s.c_out * r->s.c_in * 9;
    r->x = buffer(nx), r->W = buffer(nw), r->b = buffer((size_t)r->s.c_out);
    r->y = buffer(ny), r->dy = buffer(ny), r->dx = buffer(nx), r->dW = buffer(nw);
    r->db = buffer((size_t)r->s.c_out), r->ws = buffer(kp_conv_workspace(&r->s, BATCH, threads));
    r->tf = r->tb = 1e30;
}

static void run_close(layer_run *r)
{
    free(r->x), free(r->W), free(r->b), free(r->y), free(r->dy), free(r->dx);
    free(r->dW), free(r->db), free(r->ws);
}

/* Times reps forward + backward passes, keeping the best of each. */
static void run_time(layer_run *r, int threads, int reps)
{
    for (int i = 0; i < reps; i++) {
        double t0 = now();
        kp_conv_forward(&r->s, BATCH, r->x, r->W, r->b, r->y, r->ws, threads);
        double t1 = now();
        kp_conv_backward(&r->s, BATCH, r->x, r->W, r->dy, r->L->want_dx ? r->dx : NULL,
                         r->dW, r->db, r->ws, threads);
        double t2 = now();
        r->tf = t1 - t0 < r->tf ? t1 - t0 : r->tf;
        r->tb = t2 - t1 < r->tb ? t2 - t1 : r->tb;
    }
}

/* Floating-point operations of one batch's forward (and, with bwd, backward). */
static double pass_flops(const layer *L, int bwd)
{
    kp_conv_shape s = layer_shape(L);
    double f = 2.0 * s.c_out * s.c_in * 9 * s.h_out * s.w_out * BATCH;
    return bwd ? f * (L->want_dx ? 2 : 1) : f;
}

/* Best seconds of cblas_sgemm 2048^3 on threads OpenBLAS threads over reps
 * calls (a, b, c: 2048^2 floats each); OpenBLAS's threads are stopped after,
 * since they spin for a while and would steal the kernels' cores. */
static double sgemm_time(int threads, int reps, const float *a, const float *b, float *c)
{
    const int n = 2048;
    double best = 1e30;
    openblas_set_num_threads(threads);
    for (int r = 0; r < reps; r++) {
        double t = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
        t = now() - t;
        best = t < best ? t : best;
    }
    openblas_set_num_threads(1);
    if (blas_thread_shutdown_)
        blas_thread_shutdown_();
    return best;
}

/* The 1-minute load average, to tell a busy machine from a quiet one. */
static double load_average(void)
{
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1)
            l = -1;
        fclose(f);
    }
    return l;
}

static void print_table(const layer_run *runs, size_t n, double peak)
{
    printf("| layer | fwd ms | fwd GFLOP/s | bwd ms | bwd GFLOP/s | GFLOP/s | of peak |\n");
    printf("|---|---:|---:|---:|---:|---:|---:|\n");
    for (size_t i = 0; i < n; i++) {
        const layer_run *r = &runs[i];
        double f = pass_flops(r->L, 0), fb = pass_flops(r->L, 1);
        double g = (f + fb) / (r->tf + r->tb) * 1e-9;
        printf("| %s | %7.2f | %6.1f | %7.2f | %6.1f | %6.1f | %4.2f |\n", r->L->name,
               r->tf * 1e3, f / r->tf * 1e-9, r->tb * 1e3, fb / r->tb * 1e-9, g, g / peak);
    }
}

int main(int argc, char **argv)
{
    enum { N_LAYERS = sizeof layers / sizeof layers[0] };
    int threads = argc > 1 ? atoi(argv[1]) : 2, rounds = argc > 2 ? atoi(argv[2]) : 5;
    int im2col = argc > 3 && strcmp(argv[3], "im2col") == 0;
    if (threads < 1 || rounds < 1 || (argc > 3 && !im2col)) {
        fprintf(stderr, "usage: conv_bench [threads] [rounds] [im2col]\n");
        return 2;
    }
    kp_conv_set_direct(!im2col);
    openblas_set_num_threads(1);
    if (blas_thread_shutdown_)
        blas_thread_shutdown_();
    printf("load average before: %.2f\n", load_average());
    layer_run runs[N_LAYERS];
    for (size_t i = 0; i < N_LAYERS; i++) {
        run_open(&runs[i], &layers[i], threads);
        run_time(&runs[i], threads, 2);   /* warm-up */
        runs[i].tf = runs[i].tb = 1e30;
    }
    float *a = buffer(2048 * 2048), *b = buffer(2048 * 2048), *c = buffer(2048 * 2048);
    (void)sgemm_time(threads, 1, a, b, c);   /* warm-up */
    double tpeak = 1e30;
    /* Rounds alternate the layers and the sgemm so that a busy spell on this
     * shared machine hits both; each keeps its best time. */
    for (int round = 0; round < rounds; round++) {
        for (size_t i = 0; i < N_LAYERS; i++)
            run_time(&runs[i], threads, 3);
        double t = sgemm_time(threads, 2, a, b, c);
        tpeak = t < tpeak ? t : tpeak;
    }
    double peak = 2.0 * 2048 * 2048 * 2048.0 / tpeak * 1e-9, total = 0;
    printf("batch %d, %d kernel threads, OpenBLAS 1 thread in the kernels, %s; best of %d "
           "rounds\n\n", BATCH, threads,
           im2col ? "im2col + sgemm only" : "direct AVX-512 kernels where they apply", rounds);
    print_table(runs, N_LAYERS, peak);
    for (size_t i = 0; i < N_LAYERS; i++)
        total += runs[i].tf + runs[i].tb;
    printf("\nOpenBLAS kernels %s; sgemm 2048^3 on %d threads: %.1f GFLOP/s (the peak)\n",
           openblas_get_corename(), threads, peak);
    printf("conv layers forward+backward: %.1f ms per batch of %d, %.0f images/s\n",
           total * 1e3, BATCH, BATCH / total);
    printf("load average after: %.2f\n", load_average());
    for (size_t i = 0; i < N_LAYERS; i++)
        run_close(&runs[i]);
    free(a), free(b), free(c);
    return 0;
}

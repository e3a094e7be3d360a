/* mlp_time.c - times kpipe's mlp fit + predict on one split.
 *
 *   mlp_time TASK N_OUT DATA.safetensors THREADS REPEATS OUT.f32 [key=value ...]
 *
 * DATA holds F32 tensors "X_train" [n, d], "y_train" [n, w] and "X_test"
 * [m, d] (bench/models/mlp_vs_sklearn.py writes them).  Each repeat runs
 * kp_model_fit then kp_model_predict with THREADS threads; the fastest
 * repeat's fit and predict seconds (wall) and the least CPU seconds of the
 * process during a fit (the machine may be shared) are printed as one JSON
 * line, and the test predictions (m x N_OUT floats, little-endian) are
 * written to OUT.
 * $MLP_TIME_LOG=1 sends the fit's progress lines to stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "../../lib/err.h"
#include "../../models/model.h"

extern const kp_model_ops kp_model_mlp;

static double clock_s(clockid_t id)
{
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double now(void) { return clock_s(CLOCK_MONOTONIC); }

/* Returns the F32 2-d tensor name of st, or exits with a message (a tool, not a library). */
static const kp_tensor *tensor(const kp_st *st, const char *name)
{
    char err[KP_ERRLEN];
    const kp_tensor *t = kp_st_expect(st, name, KP_F32, 2, NULL, err, sizeof err);
    if (!t) {
        fprintf(stderr, "mlp_time: %s\n", err);
        exit(1);
    }
    return t;
}

/* Builds params from key=value arguments; a value "[a,b]" becomes a list. */
static kp_params *parse_params(int argc, char **argv)
{
    kp_params *p = kp_params_create();
    for (int i = 0; p && i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (!eq) {
            fprintf(stderr, "mlp_time: '%s' is not key=value\n", argv[i]);
            exit(2);
        }
        *eq = 0;
        kp_params_set(p, argv[i], eq + 1, 0, 0);
    }
    return p;
}

int main(int argc, char **argv)
{
    if (argc < 7) {
        fprintf(stderr, "usage: mlp_time TASK N_OUT DATA THREADS REPEATS OUT [k=v ...]\n");
        return 2;
    }
    kp_problem pb = { .task = KP_TASK_BINARY, .n_out = atoi(argv[2]) };
    char err[KP_ERRLEN];
    kp_st *st = NULL;
    if (kp_task_parse(argv[1], &pb.task) < 0 || kp_st_open(argv[3], &st, err, sizeof err) < 0) {
        fprintf(stderr, "mlp_time: bad task or data: %s\n", argv[3]);
        return 1;
    }
    const kp_tensor *Xt = tensor(st, "X_train"), *yt = tensor(st, "y_train");
    const kp_tensor *Xs = tensor(st, "X_test");
    kp_matrix X = { Xt->data, Xt->shape[0], Xt->shape[1] };
    kp_matrix T = { Xs->data, Xs->shape[0], Xs->shape[1] };
    int threads = atoi(argv[4]), repeats = atoi(argv[5]);
    kp_params *params = parse_params(argc - 7, argv + 7);
    const char *log = getenv("MLP_TIME_LOG");
    kp_fit_opts o = { .seed = 1, .threads = threads, .log = log && *log == '1' ? stderr : NULL };
    float *pred = malloc(sizeof *pred * (size_t)T.rows * (size_t)pb.n_out);
    double best_fit = 1e30, best_pred = 1e30, best_cpu = 1e30;
    for (int r = 0; r < repeats; r++) {
        kp_model *m = NULL;
        double t0 = now(), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
        if (kp_model_fit(&kp_model_mlp, params, &pb, &X, yt->data, &o, &m, err, sizeof err) < 0) {
            fprintf(stderr, "mlp_time: %s\n", err);
            return 1;
        }
        double t1 = now(), c1 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
        if (kp_model_predict(m, &T, pred, threads, err, sizeof err) < 0) {
            fprintf(stderr, "mlp_time: %s\n", err);
            return 1;
        }
        double t2 = now();
        best_fit = t1 - t0 < best_fit ? t1 - t0 : best_fit;
        best_pred = t2 - t1 < best_pred ? t2 - t1 : best_pred;
        best_cpu = c1 - c0 < best_cpu ? c1 - c0 : best_cpu;
        kp_model_free(m);
    }
    FILE *f = fopen(argv[6], "wb");
    size_t np = (size_t)T.rows * (size_t)pb.n_out;
    if (!f || fwrite(pred, sizeof *pred, np, f) != np) {
        fprintf(stderr, "mlp_time: cannot write %s\n", argv[6]);
        return 1;
    }
    fclose(f);
    printf("{\"fit_seconds\": %.6f, \"fit_cpu_seconds\": %.6f, \"predict_seconds\": %.6f}\n",
           best_fit, best_cpu, best_pred);
    free(pred);
    kp_params_free(params);
    kp_st_close(st);
    return 0;
}

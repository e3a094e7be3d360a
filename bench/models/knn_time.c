/* knn_time.c - times kpipe's knn and naive_bayes fit + predict on one split.
 *
 *   knn_time MODEL TASK N_OUT DATA.safetensors THREADS REPEATS OUT.f32 [key=value ...]
 *
 * DATA holds F32 tensors "X_train" [n, d], "y_train" [n, w] and "X_test"
 * [m, d] (bench/models/knn_nb_vs_sklearn.py writes them).  Each repeat runs
 * kp_model_fit then kp_model_predict with THREADS threads; the fastest
 * repeat's fit, predict and total wall seconds, and the least CPU seconds
 * (all threads) of any repeat, are printed as one JSON line, and
 * the test predictions (m x N_OUT floats, little-endian) are written to OUT.
 * Built by the Python script with the Makefile's -O2 from the model sources.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "../../lib/err.h"
#include "../../models/model.h"

extern const kp_model_ops kp_model_knn, kp_model_naive_bayes;

static const kp_model_ops *const timed[] = { &kp_model_knn, &kp_model_naive_bayes };

/* Returns the seconds of clock `id` (wall: CLOCK_MONOTONIC, CPU: CLOCK_PROCESS_CPUTIME_ID). */
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
        fprintf(stderr, "knn_time: %s\n", err);
        exit(1);
    }
    return t;
}

/* Builds params from key=value arguments. */
static kp_params *parse_params(int argc, char **argv)
{
    kp_params *p = kp_params_create();
    for (int i = 0; p && i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (!eq) {
            fprintf(stderr, "knn_time: '%s' is not key=value\n", argv[i]);
            exit(2);
        }
        *eq = 0;
        if (strchr(eq + 1, ',')) {  /* a list: a,b,c */
            const char *items[64];
            int n = 0;
            for (char *s = strtok(eq + 1, ","); s && n < 64; s = strtok(NULL, ","))
                items[n++] = s;
            kp_params_set_list(p, argv[i], items, n, 0, 0);
        } else {
            kp_params_set(p, argv[i], eq + 1, 0, 0);
        }
    }
    return p;
}

int main(int argc, char **argv)
{
    if (argc < 8) {
        fprintf(stderr, "usage: knn_time MODEL TASK N_OUT DATA THREADS REPEATS OUT [k=v ...]\n");
        return 2;
    }
    const kp_model_ops *ops = NULL;
    for (size_t i = 0; i < sizeof timed / sizeof timed[0]; i++)
        if (strcmp(timed[i]->name, argv[1]) == 0)
            ops = timed[i];
    kp_problem pb = { .task = KP_TASK_BINARY, .n_out = atoi(argv[3]) };
    char err[KP_ERRLEN];
    kp_st *st = NULL;
    if (!ops || kp_task_parse(argv[2], &pb.task) < 0 ||
        kp_st_open(argv[4], &st, err, sizeof err) < 0) {
        fprintf(stderr, "knn_time: bad model, task or data: %s\n", ops ? err : argv[1]);
        return 1;
    }
    const kp_tensor *xt = tensor(st, "X_train"), *yt = tensor(st, "y_train");
    const kp_tensor *xs = tensor(st, "X_test");
    kp_matrix X = { xt->data, xt->shape[0], xt->shape[1] };
    kp_matrix T = { xs->data, xs->shape[0], xs->shape[1] };
    int threads = atoi(argv[5]), repeats = atoi(argv[6]);
    kp_params *params = parse_params(argc - 8, argv + 8);
    kp_fit_opts opts = { .seed = 1, .threads = threads };
    float *out = malloc(sizeof *out * (size_t)T.rows * (size_t)pb.n_out);
    double best[4] = { 1e30, 1e30, 1e30, 1e30 };   /* fit, predict, total, CPU of the fastest */
    for (int r = 0; r < repeats; r++) {
        kp_model *m = NULL;
        double c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID), t0 = now(), t1 = t0;
        int rc = kp_model_fit(ops, params, &pb, &X, yt->data, &opts, &m, err, sizeof err);
        if (rc == 0) {
            t1 = now();
            rc = kp_model_predict(m, &T, out, threads, err, sizeof err);
        }
        double t2 = now(), cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
        kp_model_free(m);
        if (rc < 0) {
            fprintf(stderr, "knn_time: %s\n", err);
            return 1;
        }
        if (t2 - t0 < best[2]) {
            best[0] = t1 - t0;
            best[1] = t2 - t1;
            best[2] = t2 - t0;
        }
        if (cpu < best[3])
            best[3] = cpu;
    }
    FILE *f = fopen(argv[7], "wb");
    if (!f || fwrite(out, sizeof *out, (size_t)T.rows * pb.n_out, f) != (size_t)T.rows * pb.n_out) {
        fprintf(stderr, "knn_time: cannot write %s\n", argv[7]);
        return 1;
    }
    fclose(f);
    printf("{\"fit\": %.6f, \"predict\": %.6f, \"total\": %.6f, \"cpu\": %.6f}\n", best[0],
           best[1], best[2], best[3]);
    kp_params_free(params);
    free(out);
    kp_st_close(st);
    return 0;
}

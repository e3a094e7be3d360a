/* fit_model.c - fits one kpipe model on a generated (or loaded) problem and
 * prints the fit time and the held-out score.
 *
 * Build against the library (after `make`):
 *   cc -std=c11 -D_GNU_SOURCE -O2 -g bench/models/fit_model.c build/libkpipe.a \
 *      $(pkg-config --libs yaml-0.1 libpng libcurl openblas jansson libxxhash) \
 *      -lcsv -lm -lpthread -o build/fit_model
 * or without make, from the sources (every model the registry lists):
 *   cc -std=c11 -D_GNU_SOURCE -O2 -g $(pkg-config --cflags openblas) \
 *      bench/models/fit_model.c $(find lib models -name '*.c') \
 *      $(pkg-config --libs yaml-0.1 libpng libcurl openblas jansson libxxhash) \
 *      -lcsv -lm -lpthread -o /tmp/fit_model
 *
 * Usage:
 *   fit_model MODEL [key=value ...] [--rows N] [--cols D] [--test M] [--seed S]
 *             [--threads T] [--task binary|regression] [--valid] [--log]
 *             [--dump DIR] [--npy X.npy Y.npy] [--save CHECKPOINT]
 * The generated binary problem: X ~ N(0, 1) (n + m) x d float32 with a fixed
 * seed, y = 1 if 1.5 sin(2 x0) + x1 x2 + 0.5 x3^2 - 0.5 + 0.8 [x4 > 0]
 * - 0.6 x5 + 0.3 x6 x7 + N(0, 0.5^2) > 0 (regression: that value); the
 * first n rows train, the last m are held out.  --npy loads X (float32 or
 * float64, C order) and y instead and holds out the last m rows.  --valid
 * hands the held-out rows to the fit as opts->X_valid (early stopping);
 * --save writes the fitted model's checkpoint.
 * --dump DIR writes X_train.f32, y_train.f32, X_test.f32, y_test.f32 (raw
 * little-endian) and shape.txt for bench/models/gbdt_vs_xgboost.py.
 * Prints one line: model, fit seconds (wall, and CPU of the process: the
 * machine may be shared), held-out AUC and logloss (binary) or RMSE
 * (regression).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "../../lib/err.h"
#include "../../lib/rng.h"
#include "../../models/model.h"

extern const kp_model_ops kp_model_gbdt;

typedef struct args {
    const char *model, *dump, *npy_x, *npy_y, *save;
    int64_t rows, cols, test;
    uint64_t seed;
    int threads, valid, log;
    kp_task_kind task;
} args;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void die(const char *msg)
{
    fprintf(stderr, "fit_model: %s\n", msg);
    exit(1);
}

/* Fills X ((n + m) x d) and y with the generated problem. */
static void generate(const args *a, float *X, float *y)
{
    kp_rng r;
    kp_rng_seed(&r, a->seed);
    int64_t d = a->cols;
    for (int64_t i = 0; i < a->rows + a->test; i++) {
        float *x = X + i * d;
        for (int64_t j = 0; j < d; j++)
            x[j] = (float)kp_rng_normal(&r);
        double z = 1.5 * sin(2 * x[0]) + x[1] * x[2] + 0.5 * x[3] * x[3] - 0.5 +
                   0.8 * (x[4] > 0) - 0.6 * x[5] + 0.3 * x[6] * x[7] +
                   0.5 * kp_rng_normal(&r);
        y[i] = a->task == KP_TASK_REGRESSION ? (float)z : (float)(z > 0);
    }
}

/* Reads a C-order float32/float64 .npy of 1 or 2 dims into a new float array. */
static float *read_npy(const char *path, int64_t *rows, int64_t *cols)
{
    FILE *fp = fopen(path, "rb");
    unsigned char pre[10];
    if (!fp || fread(pre, 1, 10, fp) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0)
        die("cannot read the .npy file (need magic \\x93NUMPY)");
    size_t hl = pre[8] | (size_t)pre[9] << 8;
    if (pre[6] >= 2) {
        unsigned char ext[2];
        if (fread(ext, 1, 2, fp) != 2)
            die("truncated .npy header");
        hl = (hl | (size_t)ext[0] << 16 | (size_t)ext[1] << 24);
    }
    char *h = calloc(1, hl + 1);
    if (!h || fread(h, 1, hl, fp) != hl)
        die("truncated .npy header");
    int f8 = strstr(h, "'<f8'") != NULL;
    if ((!f8 && !strstr(h, "'<f4'")) || strstr(h, "True"))
        die(".npy must be little-endian float32 or float64 in C order");
    char *s = strchr(strstr(h, "'shape'"), '(');
    *rows = strtoll(s + 1, &s, 10);
    *cols = *s == ',' && s[1] != ')' ? strtoll(s + 1, NULL, 10) : 1;
    size_t n = (size_t)(*rows * *cols), es = f8 ? 8 : 4;
    unsigned char *raw = malloc(n * es);
    float *out = malloc(n * sizeof *out);
    if (!raw || !out || fread(raw, es, n, fp) != n)
        die("truncated .npy data");
    for (size_t i = 0; i < n; i++) {
        double v;
        float fv;
        if (f8)
            memcpy(&v, raw + 8 * i, 8);
        else
            memcpy(&fv, raw + 4 * i, 4), v = fv;
        out[i] = (float)v;
    }
    free(raw);
    free(h);
    fclose(fp);
    return out;
}

static void write_raw(const char *dir, const char *name, const float *v, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(v, sizeof *v, n, fp) != n || fclose(fp) != 0)
        die("cannot write the dump");
}

static void dump(const args *a, const float *X, const float *y)
{
    char path[4096];
    int64_t n = a->rows, m = a->test, d = a->cols;
    write_raw(a->dump, "X_train.f32", X, (size_t)(n * d));
    write_raw(a->dump, "y_train.f32", y, (size_t)n);
    write_raw(a->dump, "X_test.f32", X + n * d, (size_t)(m * d));
    write_raw(a->dump, "y_test.f32", y + n, (size_t)m);
    snprintf(path, sizeof path, "%s/shape.txt", a->dump);
    FILE *fp = fopen(path, "w");
    if (!fp)
        die("cannot write shape.txt");
    fprintf(fp, "%lld %lld %lld\n", (long long)n, (long long)m, (long long)d);
    fclose(fp);
}

typedef struct scored { float p; float y; } scored;

static int by_p(const void *a, const void *b)
{
    float x = ((const scored *)a)->p, z = ((const scored *)b)->p;
    return (x > z) - (x < z);
}

/* Returns the ROC AUC of predictions p for 0/1 labels y (ties averaged). */
static double auc(const float *p, const float *y, int64_t m)
{
    scored *s = malloc(sizeof *s * (size_t)m);
    if (!s)
        die("out of memory");
    for (int64_t i = 0; i < m; i++)
        s[i] = (scored){ p[i], y[i] };
    qsort(s, (size_t)m, sizeof *s, by_p);
    double rank_sum = 0, pos = 0;
    for (int64_t i = 0; i < m;) {
        int64_t j = i;
        while (j < m && s[j].p == s[i].p)
            j++;
        double avg = (double)(i + j + 1) / 2;
        for (int64_t k = i; k < j; k++)
            if (s[k].y > 0.5) {
                rank_sum += avg;
                pos++;
            }
        i = j;
    }
    free(s);
    double neg = (double)m - pos;
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg);
}

static void parse(int argc, char **argv, args *a, kp_params *p)
{
    *a = (args){ .rows = 500000, .cols = 50, .test = 100000, .seed = 42, .threads = 2,
                 .task = KP_TASK_BINARY };
    if (argc < 2)
        die("usage: fit_model MODEL [key=value ...] [--rows N] [--cols D] [--test M] "
            "[--seed S] [--threads T] [--task binary|regression] [--valid] [--log] "
            "[--dump DIR] [--npy X.npy Y.npy] [--save CHECKPOINT]");
    a->model = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *s = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(s, "--valid") == 0 || strcmp(s, "--log") == 0) {
            *(s[2] == 'v' ? &a->valid : &a->log) = 1;
            continue;
        }
        if (strncmp(s, "--", 2) != 0) {
            char *eq = strchr(s, '=');
            if (!eq)
                die("a parameter must be key=value");
            char key[256];
            snprintf(key, sizeof key, "%.*s", (int)(eq - s), s);
            if (kp_params_set(p, key, eq + 1, 0, 0) < 0)
                die("out of memory");
            continue;
        }
        if (!v)
            die("an option lacks its value");
        i++;
        if (strcmp(s, "--rows") == 0) a->rows = atoll(v);
        else if (strcmp(s, "--cols") == 0) a->cols = atoll(v);
        else if (strcmp(s, "--test") == 0) a->test = atoll(v);
        else if (strcmp(s, "--seed") == 0) a->seed = strtoull(v, NULL, 10);
        else if (strcmp(s, "--threads") == 0) a->threads = atoi(v);
        else if (strcmp(s, "--dump") == 0) a->dump = v;
        else if (strcmp(s, "--save") == 0) a->save = v;
        else if (strcmp(s, "--npy") == 0 && i + 1 < argc) { a->npy_x = v; a->npy_y = argv[++i]; }
        else if (strcmp(s, "--task") == 0) {
            if (kp_task_parse(v, &a->task) < 0 || (a->task != KP_TASK_BINARY &&
                                                   a->task != KP_TASK_REGRESSION))
                die("--task must be binary or regression");
        } else
            die("unknown option");
    }
}

/* Loads (--npy) or generates the rows into *X, *y (heap). */
static void load_data(args *a, float **X, float **y)
{
    if (a->npy_x) {
        int64_t yr, yc;
        *X = read_npy(a->npy_x, &a->rows, &a->cols);
        *y = read_npy(a->npy_y, &yr, &yc);
        if (yr != a->rows || yc != 1 || a->test >= a->rows)
            die("y must have one value per row of X, and --test fewer rows than X");
        a->rows -= a->test;
        return;
    }
    *X = malloc(sizeof **X * (size_t)((a->rows + a->test) * a->cols));
    *y = malloc(sizeof **y * (size_t)(a->rows + a->test));
    if (!*X || !*y)
        die("out of memory");
    generate(a, *X, *y);
}

/* Returns the model called a->model (gbdt even before the registry lists it). */
static const kp_model_ops *find_model(const args *a)
{
    const kp_model_ops *ops = kp_model_find(a->model);
    if (!ops && strcmp(a->model, "gbdt") == 0)
        ops = &kp_model_gbdt;
    if (!ops)
        die("unknown model");
    return ops;
}

/* Prints the result line: times, then AUC and logloss or RMSE of pred. */
static void report(const args *a, const double *t, const float *pred, const float *yt)
{
    double ll = 0, se = 0;
    for (int64_t i = 0; i < a->test; i++) {
        double q = fmin(fmax(pred[i], 1e-15), 1 - 1e-15);
        ll -= yt[i] > 0.5 ? log(q) : log(1 - q);
        se += (pred[i] - yt[i]) * (double)(pred[i] - yt[i]);
    }
    printf("%s fit %.3f s (cpu %.3f s) predict %.3f s (cpu %.3f s) rows %lld cols %lld "
           "threads %d ", a->model, t[0], t[1], t[2], t[3], (long long)a->rows,
           (long long)a->cols, a->threads);
    if (a->task == KP_TASK_BINARY)
        printf("test-auc %.6f test-logloss %.6f\n", auc(pred, yt, a->test), ll / (double)a->test);
    else
        printf("test-rmse %.6f\n", sqrt(se / (double)a->test));
}

int main(int argc, char **argv)
{
    args a;
    kp_params *p = kp_params_create();
    float *X, *y;
    parse(argc, argv, &a, p);
    load_data(&a, &X, &y);
    if (a.dump) {
        dump(&a, X, y);
        printf("dumped %lld + %lld rows x %lld to %s\n", (long long)a.rows, (long long)a.test,
               (long long)a.cols, a.dump);
        return 0;
    }
    const kp_model_ops *ops = find_model(&a);
    char err[KP_ERRLEN];
    if (kp_params_validate(p, ops->params, "argv", a.model, err, sizeof err) < 0)
        die(err);
    kp_problem pb = { a.task, 1 };
    kp_matrix Xtr = { X, a.rows, a.cols }, Xte = { X + a.rows * a.cols, a.test, a.cols };
    kp_fit_opts o = { .seed = a.seed, .threads = a.threads, .log = a.log ? stderr : NULL,
                      .X_valid = a.valid ? &Xte : NULL, .y_valid = a.valid ? y + a.rows : NULL };
    kp_model *m = NULL;
    float *pred = malloc(sizeof *pred * (size_t)a.test);
    double t[4] = { now(), cpu_now() };
    if (!pred || kp_model_fit(ops, p, &pb, &Xtr, y, &o, &m, err, sizeof err) < 0)
        die(err);
    t[0] = now() - t[0];
    t[1] = cpu_now() - t[1];
    if (a.save && kp_model_save(m, a.save, err, sizeof err) < 0)
        die(err);
    t[2] = now();
    t[3] = cpu_now();
    if (kp_model_predict(m, &Xte, pred, a.threads, err, sizeof err) < 0)
        die(err);
    t[2] = now() - t[2];
    t[3] = cpu_now() - t[3];
    report(&a, t, pred, y + a.rows);
    kp_model_free(m);
    kp_params_free(p);
    free(pred);
    free(X);
    free(y);
    return 0;
}

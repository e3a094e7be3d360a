/* test_nn_net.c - network graphs (models/nn/net.c, arch.c) and the cnn model. */
#include "kp_test.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/err.h"
#include "../lib/rng.h"
#include "../models/cnn_int.h"
#include "../models/nn/arch.h"

extern const kp_model_ops kp_model_cnn;
void openblas_set_num_threads(int);

/* ---- the graph's backward pass against finite differences ---- */

/* A graph using every node kind: conv, bn, relu, leaky, a residual add,
 * pooling both ways, concat, dropout (p = 0 keeps it differentiable), gap, linear. */
static kp_nn_net *every_kind_net(int threads)
{
    char err[KP_ERRLEN];
    kp_nn_net *net = NULL;
    assert_int_equal(kp_nn_create(2, 6, 6, &net, err, sizeof err), 0);
    int a = kp_nn_conv(net, 0, 4, 3, 1, 1, 1, 1, "c1", err, sizeof err);
    int b = kp_nn_batchnorm(net, a, "bn", err, sizeof err);
    int r = kp_nn_leaky(net, b, 0, err, sizeof err);
    int s = kp_nn_conv(net, r, 4, 1, 1, 0, 1, 0, "c2", err, sizeof err);
    int l = kp_nn_leaky(net, s, 0.1f, err, sizeof err);
    int sum = kp_nn_add(net, l, r, err, sizeof err);
    int mp = kp_nn_pool(net, sum, KP_POOL_MAX, 2, 2, 0, err, sizeof err);
    int ap = kp_nn_pool(net, sum, KP_POOL_AVG, 2, 2, 0, err, sizeof err);
    int cat = kp_nn_concat(net, mp, ap, err, sizeof err);
    int d = kp_nn_dropout(net, cat, 0.0f, err, sizeof err);
    int g = kp_nn_gap(net, d, err, sizeof err);
    int fc = kp_nn_linear(net, g, 3, "fc", err, sizeof err);
    assert_true(fc > 0);
    assert_int_equal(kp_nn_compile(net, 4, threads, 7, err, sizeof err), 0);
    return net;
}

/* sum(out * r) after a training forward. */
static double probe_loss(kp_nn_net *net, const float *x, int n, const float *r)
{
    const float *z = kp_nn_forward(net, x, n, 1, 1);
    double s = 0;
    for (int i = 0; i < n * kp_nn_outputs(net); i++)
        s += (double)z[i] * r[i];
    return s;
}

static void test_nn_graph_gradients_match_finite_differences(void **state)
{
    (void)state;
    openblas_set_num_threads(1);
    kp_nn_net *net = every_kind_net(1);
    enum { N = 3 };
    float x[N * 2 * 36], r[N * 3];
    kp_rng rng;
    kp_rng_seed(&rng, 3);
    for (size_t i = 0; i < sizeof x / sizeof *x; i++)
        x[i] = (float)kp_rng_normal(&rng);
    for (size_t i = 0; i < sizeof r / sizeof *r; i++)
        r[i] = (float)kp_rng_normal(&rng);
    size_t np;
    float *w = kp_nn_params(net, &np);
    probe_loss(net, x, N, r);
    kp_nn_backward(net, N, r);
    float *g = malloc(np * sizeof *g);
    memcpy(g, kp_nn_grads(net), np * sizeof *g);
    int bad = 0, kinks = 0;
    double center = probe_loss(net, x, N, r);
    for (size_t i = 0; i < np; i++) {
        float keep = w[i];
        const float h = 1e-3f;
        w[i] = keep + h;
        double up = probe_loss(net, x, N, r);
        w[i] = keep - h;
        double down = probe_loss(net, x, N, r);
        w[i] = keep;
        double fd = (up - down) / (2.0 * h), right = (up - center) / h, left = (center - down) / h;
        if (fabs(right - left) > 2e-2 * fmax(1.0, fabs(fd))) {
            kinks++;     /* a ReLU or a max switched inside [-h, h]: no derivative to check */
            continue;
        }
        if (fabs(fd - g[i]) > 2e-2 * fmax(1.0, fabs(fd))) {
            print_message("param %zu: backward %g, finite difference %g\n", i, g[i], fd);
            bad++;
        }
    }
    assert_true(kinks <= (int)np / 20);
    assert_int_equal(bad, 0);
    free(g);
    kp_nn_free(net);
}

static void test_nn_graph_same_bits_for_any_thread_count(void **state)
{
    (void)state;
    openblas_set_num_threads(1);
    enum { N = 4 };
    float x[N * 2 * 36], r[N * 3], out[2][N * 3], grads[2][512] = {{0}};
    for (size_t i = 0; i < sizeof x / sizeof *x; i++)
        x[i] = (float)sin((double)i);
    for (size_t i = 0; i < sizeof r / sizeof *r; i++)
        r[i] = (float)cos((double)i);
    for (int t = 0; t < 2; t++) {
        kp_nn_net *net = every_kind_net(t + 1);
        size_t np;
        kp_nn_params(net, &np);
        assert_true(np <= 512);
        memcpy(out[t], kp_nn_forward(net, x, N, 1, 5), sizeof out[t]);
        kp_nn_backward(net, N, r);
        memcpy(grads[t], kp_nn_grads(net), np * sizeof(float));
        kp_nn_free(net);
    }
    assert_memory_equal(out[0], out[1], sizeof out[0]);
    assert_memory_equal(grads[0], grads[1], sizeof grads[0]);
}

/* ---- architectures ---- */

static const char *const bench_arch[] = {
    "cbr 32", "cbr 32", "maxpool", "cbr 64", "cbr 64", "maxpool", "dense 128", "dropout 0.3",
};

static void test_nn_arch_names_parameters_as_torch_sequential(void **state)
{
    (void)state;
    char err[KP_ERRLEN];
    kp_nn_net *net = NULL;
    kp_stw *w = kp_stw_create();
    assert_int_equal(kp_nn_create(1, 28, 28, &net, err, sizeof err), 0);
    assert_int_equal(kp_nn_arch_build(net, bench_arch, 8, 10, "arch", err, sizeof err), 0);
    assert_int_equal(kp_nn_compile(net, 2, 1, 1, err, sizeof err), 0);
    assert_int_equal(kp_nn_save(net, w, err, sizeof err), 0);
    char *path = kp_test_tmpdir();
    char file[512];
    snprintf(file, sizeof file, "%s/net.safetensors", path);
    assert_int_equal(kp_stw_write(w, file, err, sizeof err), 0);
    kp_st *st = NULL;
    assert_int_equal(kp_st_open(file, &st, err, sizeof err), 0);
    static const struct { const char *name; int ndim; int64_t shape[4]; } want[] = {
        {"0.weight", 4, {32, 1, 3, 3}}, {"1.weight", 1, {32}}, {"1.running_var", 1, {32}},
        {"3.weight", 4, {32, 32, 3, 3}}, {"4.bias", 1, {32}}, {"7.weight", 4, {64, 32, 3, 3}},
        {"10.weight", 4, {64, 64, 3, 3}}, {"11.running_mean", 1, {64}},
        {"15.weight", 2, {128, 3136}}, {"15.bias", 1, {128}}, {"18.weight", 2, {10, 128}},
        {"18.bias", 1, {10}},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        const kp_tensor *t = kp_st_expect(st, want[i].name, KP_F32, want[i].ndim,
                                          want[i].shape, err, sizeof err);
        if (!t)
            fail_msg("%s", err);
    }
    const kp_tensor *nbt = kp_st_find(st, "4.num_batches_tracked");
    assert_non_null(nbt);
    assert_int_equal(nbt->dtype, KP_I64);
    assert_null(kp_st_find(st, "0.bias"));        /* conv before bn has no bias */
    assert_int_equal(kp_st_count(st), 4 + 4 * 5 + 4);  /* convs, bns, linears */
    kp_st_close(st);
    kp_stw_free(w);
    kp_nn_free(net);
    free(path);
}

static void test_nn_arch_errors_name_the_block(void **state)
{
    (void)state;
    static const struct { const char *block; const char *msg; } cases[] = {
        {"cbrr 32", "arch[1]: unknown block 'cbrr' (did you mean 'cbr'?)"},
        {"cbr", "arch[1]: cbr needs a size, e.g. 'cbr 32'"},
        {"cbr 32 kk=3", "arch[1]: cbr takes no key 'kk'; it takes: k stride pad dilation"},
        {"cbr 32 k=x", "arch[1]: k=x is not a number"},
        {"dense many", "arch[1]: 'many' is not a number"},
        {"maxpool 2 2", "arch[1]: '2' is not KEY=VALUE"},
    };
    char err[KP_ERRLEN];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *blocks[] = {"cbr 8", cases[i].block};
        assert_int_equal(kp_nn_arch_check(blocks, 2, "arch", err, sizeof err), KP_ERR_CONFIG);
        assert_string_equal(err, cases[i].msg);
    }
    kp_nn_net *net = NULL;
    const char *shrink[] = {"maxpool 4", "maxpool 4"};
    assert_int_equal(kp_nn_create(1, 8, 8, &net, err, sizeof err), 0);
    assert_int_equal(kp_nn_arch_build(net, shrink, 2, 2, "arch", err, sizeof err),
                     KP_ERR_CONFIG);
    assert_non_null(strstr(err, "arch[1] 'maxpool 4': "));
    kp_nn_free(net);
}

/* ---- the cnn model ---- */

enum { SIDE = 12, N_IMG = 160 };

/* Gray images with a bright 4 x 4 square in one of four quadrants (the
 * class) on noise; uint8 samples. */
static void quadrant_images(uint8_t *img, float *y, int n, uint64_t seed)
{
    kp_rng rng;
    kp_rng_seed(&rng, seed);
    for (int i = 0; i < n; i++) {
        int cls = i % 4, oy = (cls / 2) * 6 + 1, ox = (cls % 2) * 6 + 1;
        uint8_t *p = img + (size_t)i * SIDE * SIDE;
        for (int j = 0; j < SIDE * SIDE; j++)
            p[j] = (uint8_t)kp_rng_below(&rng, 100);
        for (int yy = 0; yy < 4; yy++)
            for (int xx = 0; xx < 4; xx++)
                p[(oy + yy + (int)kp_rng_below(&rng, 2)) * SIDE + ox + xx] = 250;
        y[i] = (float)cls;
    }
}

/* The validated params of a small cnn trained for `epochs`; caller frees. */
static kp_params *small_cnn_params(const char *epochs)
{
    char err[KP_ERRLEN];
    kp_params *p = kp_params_create();
    const char *arch[] = {"cbr 8", "maxpool", "cbr 16", "gap"};
    kp_params_set_list(p, "arch", arch, 4, 0, 0);
    kp_params_set(p, "epochs", epochs, 0, 0);
    kp_params_set(p, "batch", "16", 0, 0);
    kp_params_set(p, "lr", "0.01", 0, 0);
    assert_int_equal(kp_params_validate(p, kp_model_cnn.params, "t.yaml", "params", err,
                                        sizeof err), 0);
    return p;
}

/* Fits a small cnn on the quadrant problem; caller frees with ops->free. */
static void *fit_quadrants(int threads, const char *epochs, kp_images *X, int64_t *rows,
                           const float *y)
{
    char err[KP_ERRLEN];
    kp_params *p = small_cnn_params(epochs);
    kp_problem pb = { .task = KP_TASK_MULTICLASS, .n_out = 4 };
    kp_fit_opts o = {.seed = 11, .threads = threads};
    void *m = NULL;
    if (kp_model_cnn.fit_images(p, &pb, X, rows, N_IMG, y, &o, &m, err, sizeof err) < 0)
        fail_msg("%s", err);
    kp_params_free(p);
    return m;
}

static void test_cnn_learns_a_tiny_problem_to_full_accuracy(void **state)
{
    (void)state;
    static uint8_t img[N_IMG * SIDE * SIDE];
    static float y[N_IMG], pred[N_IMG * 4];
    int64_t rows[N_IMG];
    quadrant_images(img, y, N_IMG, 1);
    for (int i = 0; i < N_IMG; i++)
        rows[i] = i;
    float mean = 60, sd = 70;
    kp_images X = {img, N_IMG, SIDE, SIDE, 1, 8, &mean, &sd};
    void *m = fit_quadrants(2, "15", &X, rows, y);
    char err[KP_ERRLEN];
    assert_int_equal(kp_model_cnn.predict_images(m, &X, rows, N_IMG, 0, pred, 2, err,
                                                 sizeof err), 0);
    int hits = 0;
    for (int i = 0; i < N_IMG; i++) {
        int best = 0;
        for (int j = 1; j < 4; j++)
            best = pred[i * 4 + j] > pred[i * 4 + best] ? j : best;
        hits += best == (int)y[i];
    }
    assert_int_equal(hits, N_IMG);
    kp_model_cnn.free(m);
}

static void test_cnn_fit_gives_same_bits_for_any_thread_count(void **state)
{
    (void)state;
    static uint8_t img[N_IMG * SIDE * SIDE];
    static float y[N_IMG], pred[2][N_IMG * 4];
    int64_t rows[N_IMG];
    quadrant_images(img, y, N_IMG, 2);
    for (int i = 0; i < N_IMG; i++)
        rows[i] = i;
    float mean = 60, sd = 70;
    kp_images X = {img, N_IMG, SIDE, SIDE, 1, 8, &mean, &sd};
    char err[KP_ERRLEN];
    for (int t = 0; t < 2; t++) {
        void *m = fit_quadrants(t + 1, "2", &X, rows, y);
        assert_int_equal(kp_model_cnn.predict_images(m, &X, rows, N_IMG, 4, pred[t], 1, err,
                                                     sizeof err), 0);
        kp_model_cnn.free(m);
    }
    assert_memory_equal(pred[0], pred[1], sizeof pred[0]);
}

static void test_cnn_checkpoint_reloads_to_the_same_predictions(void **state)
{
    (void)state;
    static uint8_t img[N_IMG * SIDE * SIDE];
    static float y[N_IMG], pred[2][N_IMG * 4];
    int64_t rows[N_IMG];
    quadrant_images(img, y, N_IMG, 3);
    for (int i = 0; i < N_IMG; i++)
        rows[i] = i;
    float mean = 60, sd = 70;
    kp_images X = {img, N_IMG, SIDE, SIDE, 1, 8, &mean, &sd};
    char err[KP_ERRLEN], file[512];
    void *m = fit_quadrants(2, "1", &X, rows, y), *back = NULL;
    char *dir = kp_test_tmpdir();
    snprintf(file, sizeof file, "%s/cnn.safetensors", dir);
    kp_stw *w = kp_stw_create();
    assert_int_equal(kp_model_cnn.save(m, w, err, sizeof err), 0);
    assert_int_equal(kp_stw_write(w, file, err, sizeof err), 0);
    kp_st *st = NULL;
    assert_int_equal(kp_st_open(file, &st, err, sizeof err), 0);
    kp_problem pb = { .task = KP_TASK_MULTICLASS, .n_out = 4 };
    if (kp_model_cnn.load(st, &pb, &back, err, sizeof err) < 0)
        fail_msg("%s", err);
    assert_int_equal(kp_model_cnn.predict_images(m, &X, rows, N_IMG, 2, pred[0], 1, err,
                                                 sizeof err), 0);
    assert_int_equal(kp_model_cnn.predict_images(back, &X, rows, N_IMG, 2, pred[1], 1, err,
                                                 sizeof err), 0);
    assert_memory_equal(pred[0], pred[1], sizeof pred[0]);
    kp_st_close(st);
    kp_stw_free(w);
    kp_model_cnn.free(m);
    kp_model_cnn.free(back);
    free(dir);
}

static void test_cnn_refuses_images_of_another_shape(void **state)
{
    (void)state;
    static uint8_t img[N_IMG * SIDE * SIDE];
    static float y[N_IMG], pred[N_IMG * 4];
    int64_t rows[N_IMG];
    quadrant_images(img, y, N_IMG, 4);
    for (int i = 0; i < N_IMG; i++)
        rows[i] = i;
    float mean = 60, sd = 70;
    kp_images X = {img, N_IMG, SIDE, SIDE, 1, 8, &mean, &sd};
    void *m = fit_quadrants(1, "1", &X, rows, y);
    kp_images other = {img, N_IMG / 2, SIDE, SIDE * 2, 1, 8, &mean, &sd};
    char err[KP_ERRLEN];
    assert_int_equal(kp_model_cnn.predict_images(m, &other, rows, 4, 0, pred, 1, err,
                                                 sizeof err), KP_ERR_MISMATCH);
    assert_string_equal(err, "images are 1 x 12 x 24 (C x H x W) but the network takes "
                        "1 x 12 x 12");
    kp_model_cnn.free(m);
}

/* Two labels: a bright square in the top half, and one in the bottom half. */
static void two_square_images(uint8_t *img, float *y, int n)
{
    kp_rng rng;
    kp_rng_seed(&rng, 9);
    for (int i = 0; i < n; i++) {
        uint8_t *p = img + (size_t)i * SIDE * SIDE;
        for (int j = 0; j < SIDE * SIDE; j++)
            p[j] = (uint8_t)kp_rng_below(&rng, 60);
        for (int half = 0; half < 2; half++) {
            y[i * 2 + half] = (float)((i >> half) & 1);
            if (y[i * 2 + half] > 0)
                for (int yy = 0; yy < 3; yy++)
                    for (int xx = 0; xx < 3; xx++)
                        p[(half * 6 + 1 + yy) * SIDE + 4 + xx + (int)kp_rng_below(&rng, 3)] = 240;
        }
    }
}

/* Multilabel: sigmoid outputs; the log's val_acc is the share of labels right. */
static void test_cnn_multilabel_learns_each_label_and_logs_the_share_right(void **state)
{
    (void)state;
    static uint8_t img[N_IMG * SIDE * SIDE];
    static float y[N_IMG * 2], pred[N_IMG * 2];
    int64_t rows[N_IMG];
    two_square_images(img, y, N_IMG);
    for (int i = 0; i < N_IMG; i++)
        rows[i] = i;
    float mean = 40, sd = 50;
    kp_images X = {img, N_IMG, SIDE, SIDE, 1, 8, &mean, &sd};
    char err[KP_ERRLEN], *logtext = NULL;
    size_t loglen = 0;
    FILE *log = open_memstream(&logtext, &loglen);
    kp_params *p = small_cnn_params("12");
    kp_problem pb = { .task = KP_TASK_MULTILABEL, .n_out = 2 };
    kp_fit_opts o = {.seed = 1, .threads = 2, .log = log, .valid_rows = rows,
                     .n_valid = N_IMG, .y_valid = y};
    void *m = NULL;
    if (kp_model_cnn.fit_images(p, &pb, &X, rows, N_IMG, y, &o, &m, err, sizeof err) < 0)
        fail_msg("%s", err);
    fclose(log);
    assert_int_equal(kp_model_cnn.predict_images(m, &X, rows, N_IMG, 0, pred, 2, err,
                                                 sizeof err), 0);
    int right = 0;
    for (int i = 0; i < 2 * N_IMG; i++)
        right += (pred[i] >= 0.5f) == (y[i] > 0.5f);
    assert_true(right >= 2 * N_IMG * 98 / 100);
    const char *last = strstr(logtext, "epoch 12/12");
    assert_non_null(last);
    double acc = atof(strstr(last, "val_acc ") + 8);
    assert_true(acc >= 0.98 && acc <= 1.0);
    free(logtext);
    kp_params_free(p);
    kp_model_cnn.free(m);
}

KP_TEST_GROUP(nn_net)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_nn_graph_gradients_match_finite_differences),
        cmocka_unit_test(test_nn_graph_same_bits_for_any_thread_count),
        cmocka_unit_test(test_nn_arch_names_parameters_as_torch_sequential),
        cmocka_unit_test(test_nn_arch_errors_name_the_block),
        cmocka_unit_test(test_cnn_learns_a_tiny_problem_to_full_accuracy),
        cmocka_unit_test(test_cnn_fit_gives_same_bits_for_any_thread_count),
        cmocka_unit_test(test_cnn_checkpoint_reloads_to_the_same_predictions),
        cmocka_unit_test(test_cnn_refuses_images_of_another_shape),
        cmocka_unit_test(test_cnn_multilabel_learns_each_label_and_logs_the_share_right),
    };
    return KP_RUN(nn_net, t);
}

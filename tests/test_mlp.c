/* test_mlp.c - the mlp model and the network core under it (models/mlp*.c).
 *
 * The scikit-learn references below come from MLPClassifier/MLPRegressor
 * 1.2's _backprop (hidden (3,), alpha 0.1) on the same float32 weights: the
 * loss with its L2 term and every gradient, pasted with %.17g.  Weights are
 * in torch layout ([out x in], then the bias), scikit-learn's transposed.
 */
#include "kp_test.h"
#include "model_fixture.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "../lib/err.h"
#include "../lib/rng.h"
#include "../models/metric.h"
#include "../models/mlp_int.h"
#include "../models/model.h"

extern const kp_model_ops kp_model_mlp;

/* ---- reference values (scikit-learn 1.2) ---- */

static const float ref_X[] = {
    1.78999996, 0.439999998, 0.100000001, -1.86000001, -0.280000001, -0.349999994,
    -0.0799999982, -0.629999995, -0.0399999991, -0.479999989, -1.30999994, 0.879999995,
    0.879999995, 1.71000004, 0.0500000007, -0.400000006, -0.550000012, -1.54999995, 0.980000019,
    -1.10000002, -1.19000006, -0.209999993, 1.49000001, 0.239999995,
};
/* binary: out_activation logistic */
static const float bin_y[] = { 0, 1, 1, 0, 1, 0 };
static const float bin_params[] = {
    -0.819028139, -0.128410697, 0.596045017, -0.501133502, -0.570394576, -0.615069091,
    1.58088863, -0.643012881, 0.50019598, -0.184024572, -0.995298684, -1.93526649, -0.277137607,
    -0.307162732, 0.3371934, -0.105531387, -1.29862833, 0.517340362, -0.106881231,
};
static const double bin_loss = 1.5029152655735645;
static const double bin_grads[] = {
    -0.024802536353498685, -0.031376984014253186, 0.025526994265620995, -0.032238843953459537,
    -0.14673959320869573, -0.37002794661712768, 0.2182284562416974, -0.30465635212219433,
    0.25475462973955881, 0.28893661789208497, -0.025987610627088056, -0.12280614905837216,
    0.0245751243253618, 0.30241195122791587, -0.035572793517266665, -0.2608471417123045,
    -0.55992186981652103, 0.4766378961877526, -0.065017286643346578,
};
/* multiclass: out_activation softmax */
static const float mc_y[] = { 0, 2, 1, 2, 0, 1 };
static const float mc_params[] = {
    -1.39451277, -0.699105859, -0.214209497, 0.886550009, -0.477319717, 0.0237710532,
    0.810546756, 0.895512521, -0.470875502, -1.79860616, 0.682238281, 1.19003451, -0.335490197,
    0.253750026, -0.558266878, -0.48230809, 1.06699026, -0.539781988, -1.53157759, -0.157931745,
    0.120493494, 0.838518023, 1.419716, 0.122356564, -0.319258571, 0.131383985, 0.58169353,
};
static const double mc_loss = 2.8704988019563777;
static const double mc_grads[] = {
    -0.58741889635720668, -0.5018252390320409, 0.24926047022069331, 0.26588149169967379,
    -0.32922073620436781, -0.080820465265870486, 0.42068309991704428, 0.059280230626074355,
    -0.063956318020735745, -0.18819440448494226, 0.12070527198893984, -0.10058977139556374,
    0.90798536519834772, 0.27904816834744928, 0.09696960652668872, -0.046397967567456865,
    -0.02396902781915267, -0.29226113391596076, -0.42323505392902661, -0.36852575248387387,
    -0.30918582025541064, 0.45004356060698508, 0.43130768883326187, 0.5964980886732657,
    -0.21288759392056014, -0.146003081724636, 0.35889067564519617,
};
/* regression: out_activation identity */
static const float rg_y[] = { 0.5, -1.2, 2, 0.3, -0.7, 1.1 };
static const float rg_params[] = {
    -0.81994468, 1.41570187, 0.514530599, 1.11333036, 0.719470739, 0.387030691, 0.199269369,
    -1.09653521, -0.123605482, 0.540973127, -1.11661077, 0.190850556, 0.18422313, -0.251373678,
    0.0435189642, 0.934305847, -0.0192835759, -0.710925937, -0.874721348,
};
static const double rg_loss = 1.5299703515868948;
static const double rg_grads[] = {
    -0.024464538087188337, -0.063781748242161942, -0.041227046919921115, 0.032966672131333891,
    0.021237819289896629, 0.009902688010677542, 0.004482857413698773, -0.027296925611141273,
    0.016344185824748347, -0.14034373444638079, -0.61937049181034831, 0.39141736079704686,
    -0.086555451664854441, 0.0052864176607429697, 0.50202409484538124, -0.13466931999800286,
    -0.87067999842650456, -0.97352920293715905, -0.95525512650638145,
};
/* multilabel: out_activation logistic */
static const float ml_y[] = { 0, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 1 };
static const float ml_params[] = {
    -0.777472377, -0.767996967, -0.08756347, -0.240164861, -0.472862989, 0.301836193,
    0.543257296, 1.72651947, -0.413133889, -0.459766746, -0.684349716, 0.699428558,
    -0.388060987, -0.0239222813, 0.169345662, 0.986776829, -0.424465716, 0.516049564,
    0.119189113, -0.584421337, 0.250448287, -0.154994383, -0.0567215011,
};
static const double ml_loss = 1.3927241311684047;
static const double ml_grads[] = {
    -0.036602745593724846, 0.047769733328040111, 0.057824281649716834, 0.092611980884894862,
    -0.057072602555013681, 0.0076404771276653545, 0.10311696174502853, 0.017880269127926507,
    0.010656916427077626, 0.018594994401062045, 0.0066816314137888022, 0.041360789465144786,
    -0.06088467915206839, 0.018266459846958374, -0.071282294903109056, -0.021772310092705426,
    0.068480214784044188, -0.11263351522776939, 0.042355474163134232, -0.16026824114256166,
    0.1621675037970505, 0.045495272175549849, -0.037068818242012878,
};

/* ---- helpers ---- */

/* Returns params from {key, value, ..., NULL} (caller frees). */
static kp_params *params_of(const char *const *kv)
{
    kp_params *p = kp_params_create();
    assert_non_null(p);
    for (int i = 0; kv && kv[i]; i += 2)
        assert_int_equal(kp_params_set(p, kv[i], kv[i + 1], 0, 0), 0);
    return p;
}

/* Fits mlp through kp_model_fit or fails the test; returns the model (caller frees). */
static kp_model *fit_with(kp_task_kind task, int n_out, const float *X, int64_t rows,
                          int64_t cols, const float *y, const char *const *kv,
                          const kp_fit_opts *opts)
{
    kp_params *p = params_of(kv);
    kp_problem pb = { .task = task, .n_out = n_out };
    kp_matrix m = { X, rows, cols };
    kp_fit_opts o = { .seed = 1, .threads = 1 };
    kp_model *model = NULL;
    char err[KP_ERRLEN] = "";
    int rc = kp_model_fit(&kp_model_mlp, p, &pb, &m, y, opts ? opts : &o, &model, err, sizeof err);
    kp_params_free(p);
    if (rc != 0)
        fail_msg("fit mlp: %s", err);
    return model;
}

/* Predicts rows x cols with `threads`; returns heap predictions. */
static float *predict(const kp_model *m, const float *X, int64_t rows, int64_t cols, int threads)
{
    int n_out = kp_model_problem(m)->n_out;
    float *out = malloc(sizeof *out * (size_t)rows * (size_t)n_out);
    kp_matrix Xm = { X, rows, cols };
    char err[KP_ERRLEN] = "";
    assert_non_null(out);
    if (kp_model_predict(m, &Xm, out, threads, err, sizeof err) != 0)
        fail_msg("predict: %s", err);
    return out;
}

/* Scores predictions of rows [from, n) of g with metric `name`. */
static double score(const gen *g, kp_task_kind task, const float *pred, int from,
                    const char *name)
{
    int yw = task == KP_TASK_MULTILABEL ? g->n_out : 1;
    kp_problem pb = { .task = task, .n_out = g->n_out };
    double s = 0;
    char err[KP_ERRLEN] = "";
    const kp_metric_ops *mo = kp_metric_find(name);
    assert_non_null(mo);
    if (mo->score(&pb, g->y + (size_t)from * yw, pred, g->n - from, NULL, &s, err, sizeof err))
        fail_msg("score: %s", err);
    return s;
}

/* ---- fitting ---- */

typedef struct quality_case {
    kp_task_kind task;
    int n_out;
    const char *metric;
    double bound;   /* at least (at most for rmse / logloss) */
} quality_case;

/* Bands: the scores are linear with noise 0.3, so a fitted model gets close
 * to the Bayes rate (about 0.97 accuracy, rmse 0.3).  On 800 rows the worst
 * of 30 generator seeds scored, with the net below (32 units, 50 epochs at
 * rate 0.01): accuracy 0.933 / auc 0.984 (binary), 0.895 / logloss 0.21
 * (multiclass), auc 0.988 (multilabel), rmse 0.36; with the defaults (100
 * units, up to 200 epochs, 6 times the work) 0.935 / 0.986, 0.893 / 0.21,
 * 0.988, 0.39.  The bounds sit just below. */
static const char *const quick_net[] = { "hidden_layer_sizes", "32", "learning_rate_init", "0.01",
                                         "max_iter", "50", NULL };

static const quality_case quality[] = {
    { KP_TASK_BINARY, 1, "accuracy", 0.92 },
    { KP_TASK_BINARY, 1, "auc", 0.98 },
    { KP_TASK_MULTICLASS, 4, "accuracy", 0.87 },
    { KP_TASK_MULTICLASS, 4, "logloss", 0.3 },
    { KP_TASK_MULTILABEL, 3, "auc", 0.98 },
    { KP_TASK_REGRESSION, 1, "rmse", 0.5 },
};

static void test_mlp_fits_generated_problems_of_each_task_well(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof quality / sizeof quality[0]; c++) {
        const quality_case *q = &quality[c];
        gen g = generate(q->task, q->n_out, 1200, 6, 100 + c);
        kp_model *m = fit_with(q->task, q->n_out, g.X, 800, 6, g.y, quick_net, NULL);
        float *pred = predict(m, g.X + 800 * 6, 400, 6, 2);
        double s = score(&g, q->task, pred, 800, q->metric);
        int lower = strcmp(q->metric, "rmse") == 0 || strcmp(q->metric, "logloss") == 0;
        if (lower ? s > q->bound : s < q->bound)
            fail_msg("%s: %s %.4f, bound %.4f", kp_task_name(q->task), q->metric, s, q->bound);
        free(pred);
        kp_model_free(m);
        gen_free(&g);
    }
}

static void test_mlp_learns_xor(void **state)
{
    (void)state;
    static const float X[] = { 0, 0, 0, 1, 1, 0, 1, 1 }, y[] = { 0, 1, 1, 0 };
    static const char *const kv[] = { "hidden_layer_sizes", "16", "learning_rate_init", "0.05",
                                      "alpha", "0", "max_iter", "500", "tol", "0",
                                      "n_iter_no_change", "1000", NULL };
    kp_model *m = fit_with(KP_TASK_BINARY, 1, X, 4, 2, y, kv, NULL);
    float *p = predict(m, X, 4, 2, 1);
    for (int i = 0; i < 4; i++)
        if (fabsf(p[i] - y[i]) > 0.05f)
            fail_msg("xor row %d: P(1) = %.4f, want %g", i, p[i], y[i]);
    free(p);
    kp_model_free(m);
}

/* Fits with the log captured; returns the model and *log (heap text). */
static kp_model *fit_logged(kp_task_kind task, int n_out, const float *X, int64_t rows,
                            int64_t cols, const float *y, const char *const *kv,
                            const kp_matrix *Xv, const float *yv, char **log)
{
    size_t len = 0;
    FILE *f = open_memstream(log, &len);
    assert_non_null(f);
    kp_fit_opts o = { .seed = 1, .threads = 2, .X_valid = Xv, .y_valid = yv, .log = f };
    kp_model *m = fit_with(task, n_out, X, rows, cols, y, kv, &o);
    fclose(f);
    return m;
}

/* Returns the train-loss of the last progress line of log. */
static double last_train_loss(const char *log)
{
    const char *p = log, *q;
    double v = NAN;
    while ((q = strstr(p, "train-loss ")) != NULL) {
        v = strtod(q + strlen("train-loss "), NULL);
        p = q + 1;
    }
    return v;
}

typedef struct solver_case {
    const char *kv[12];
    double loss;    /* the training loss must end below this */
} solver_case;

/* The noise of the problem leaves a loss near 0.11 (0.30 for plain sgd after
 * 60 epochs); an untrained net is near 0.69. */
static const solver_case solvers[] = {
    { { "solver", "adam", "learning_rate_init", "0.01", NULL }, 0.2 },
    { { "solver", "sgd", "learning_rate_init", "0.05", "nesterovs_momentum", "false", NULL }, 0.2 },
    { { "solver", "sgd", "learning_rate_init", "0.05", "nesterovs_momentum", "true", NULL }, 0.2 },
    { { "solver", "sgd", "learning_rate_init", "0.05", "momentum", "0", NULL }, 0.45 },
};

static void test_mlp_sgd_momentum_and_adam_converge(void **state)
{
    (void)state;
    gen g = generate(KP_TASK_BINARY, 1, 600, 4, 5);
    for (size_t c = 0; c < sizeof solvers / sizeof solvers[0]; c++) {
        const char *kv[24] = { "hidden_layer_sizes", "16", "max_iter", "60", "tol", "0",
                               "n_iter_no_change", "100" };
        for (int i = 0; solvers[c].kv[i]; i++)
            kv[8 + i] = solvers[c].kv[i];
        char *log = NULL;
        kp_model *m = fit_logged(KP_TASK_BINARY, 1, g.X, 400, 4, g.y, kv, NULL, NULL, &log);
        double loss = last_train_loss(log);
        float *p = predict(m, g.X + 400 * 4, 200, 4, 1);
        double acc = score(&g, KP_TASK_BINARY, p, 400, "accuracy");
        if (!(loss < solvers[c].loss) || acc < 0.9)
            fail_msg("case %zu (%s %s): train loss %.4f (bound %.2f), accuracy %.4f", c,
                     solvers[c].kv[1], solvers[c].kv[4] ? solvers[c].kv[4] : "", loss,
                     solvers[c].loss, acc);
        free(p);
        free(log);
        kp_model_free(m);
    }
    gen_free(&g);
}

/* Returns the mean binary log loss of p against y. */
static double logloss(const float *p, const float *y, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s -= y[i] ? log(fmax(p[i], 1e-12)) : log(fmax(1 - p[i], 1e-12));
    return s / n;
}

static void test_mlp_early_stopping_stops_and_restores_the_best_epoch(void **state)
{
    (void)state;
    /* 200 training rows with 30% of labels flipped: a wide net overfits them and
     * the loss on 200 clean held-out rows turns up. */
    gen g = generate(KP_TASK_BINARY, 1, 400, 5, 11);
    kp_rng r;
    kp_rng_seed(&r, 3);
    for (int i = 0; i < 200; i++)
        if (kp_rng_uniform(&r) < 0.3)
            g.y[i] = 1 - g.y[i];
    kp_matrix Xv = { g.X + 200 * 5, 200, 5 };
    static const char *const kv[] = { "hidden_layer_sizes", "64,64", "learning_rate_init", "0.01",
                                      "alpha", "0", "max_iter", "300", "early_stopping", "true",
                                      "n_iter_no_change", "5", NULL };
    char *log = NULL;
    kp_model *m = fit_logged(KP_TASK_BINARY, 1, g.X, 200, 5, g.y, kv, &Xv, g.y + 200, &log);
    const char *stop = strstr(log, "mlp: stopped at epoch ");
    const char *kept = strstr(log, "kept epoch ");
    if (!stop || !kept)
        fail_msg("no early stop in the log:\n%s", log);
    int last = atoi(stop + strlen("mlp: stopped at epoch "));
    int best = atoi(kept + strlen("kept epoch "));
    assert_true(best >= 1 && best < last && last < 300);
    /* the kept weights are those of a fit that ran exactly `best` epochs */
    char epochs[16];
    snprintf(epochs, sizeof epochs, "%d", best);
    const char *kv2[] = { "hidden_layer_sizes", "64,64", "learning_rate_init", "0.01", "alpha", "0",
                          "max_iter", epochs, "n_iter_no_change", "100000", NULL };
    kp_model *b = fit_with(KP_TASK_BINARY, 1, g.X, 200, 5, g.y, kv2, NULL);
    snprintf(epochs, sizeof epochs, "%d", last);
    kp_model *e = fit_with(KP_TASK_BINARY, 1, g.X, 200, 5, g.y, kv2, NULL);
    float *pm = predict(m, Xv.data, 200, 5, 1), *pb = predict(b, Xv.data, 200, 5, 1);
    float *pe = predict(e, Xv.data, 200, 5, 1);
    assert_memory_equal(pm, pb, sizeof *pm * 200);
    assert_true(logloss(pm, g.y + 200, 200) < logloss(pe, g.y + 200, 200));
    free(pm);
    free(pb);
    free(pe);
    free(log);
    kp_model_free(m);
    kp_model_free(b);
    kp_model_free(e);
    gen_free(&g);
}

static void test_mlp_early_stopping_without_held_out_rows_splits_the_training_rows(void **state)
{
    (void)state;
    gen g = generate(KP_TASK_MULTICLASS, 3, 300, 4, 12);
    static const char *const kv[] = { "early_stopping", "true", "validation_fraction", "0.2",
                                      "max_iter", "30", "learning_rate_init", "0.01", NULL };
    char *log = NULL;
    kp_model *m = fit_logged(KP_TASK_MULTICLASS, 3, g.X, 300, 4, g.y, kv, NULL, NULL, &log);
    assert_non_null(strstr(log, "mlp: epoch 10/30 train-loss "));
    assert_non_null(strstr(log, " valid-loss "));   /* the 60 held-out rows are scored */
    assert_non_null(strstr(log, "kept epoch "));
    free(log);
    kp_model_free(m);
    gen_free(&g);
}

static void test_mlp_logs_progress_every_10_epochs(void **state)
{
    (void)state;
    gen g = generate(KP_TASK_REGRESSION, 1, 300, 4, 13);
    kp_matrix Xv = { g.X + 200 * 4, 100, 4 };
    static const char *const kv[] = { "max_iter", "25", "n_iter_no_change", "100", NULL };
    char *log = NULL;
    kp_model *m = fit_logged(KP_TASK_REGRESSION, 1, g.X, 200, 4, g.y, kv, &Xv, g.y + 200, &log);
    int lines = 0;
    for (const char *p = log; (p = strstr(p, "mlp: epoch ")) != NULL; p++)
        lines++;
    assert_int_equal(lines, 2);
    assert_non_null(strstr(log, "mlp: epoch 10/25 train-loss "));
    assert_non_null(strstr(log, "mlp: epoch 20/25 train-loss "));
    assert_non_null(strstr(log, " valid-loss "));
    assert_non_null(strstr(log, " valid-rmse "));
    assert_non_null(strstr(log, "mlp: warning: max_iter 25 epochs reached before the training "
                                "loss stopped improving\n"));
    free(log);
    kp_model_free(m);
    gen_free(&g);
}

static void test_mlp_stops_when_the_training_loss_stalls(void **state)
{
    (void)state;
    gen g = generate(KP_TASK_BINARY, 1, 200, 3, 14);
    static const char *const kv[] = { "max_iter", "1000", "tol", "0.5", NULL };
    char *log = NULL;
    kp_model *m = fit_logged(KP_TASK_BINARY, 1, g.X, 200, 3, g.y, kv, NULL, NULL, &log);
    /* no epoch can beat the first by 0.5, so the fit stops after 1 + 11 epochs */
    assert_non_null(strstr(log, "mlp: stopped at epoch 12: the training loss did not improve by "
                                "tol for 11 epochs\n"));
    free(log);
    kp_model_free(m);
    gen_free(&g);
}

static void test_mlp_adaptive_sgd_divides_the_rate_by_5_until_1e_6(void **state)
{
    (void)state;
    gen g = generate(KP_TASK_BINARY, 1, 100, 3, 15);
    static const char *const kv[] = { "solver", "sgd", "learning_rate", "adaptive", "tol", "0.5",
                                      "n_iter_no_change", "1", "max_iter", "100", NULL };
    char *log = NULL;
    kp_model *m = fit_logged(KP_TASK_BINARY, 1, g.X, 100, 3, g.y, kv, NULL, NULL, &log);
    /* 1e-3 / 5^k after every 2 stalled epochs; at 3.2e-7 <= 1e-6 the fit stops */
    static const char *const want[] = {
        "mlp: epoch 3: no improvement for 2 epochs; learning rate now 0.0002\n",
        "mlp: epoch 11: no improvement for 2 epochs; learning rate now 3.2e-07\n",
        "mlp: stopped at epoch 13: the training loss did not improve by tol for 2 epochs\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(log, want[i]))
            fail_msg("no line '%s' in the log:\n%s", want[i], log);
    free(log);
    kp_model_free(m);
    gen_free(&g);
}

static void test_nn_initialisation_follows_glorot_and_he_bounds(void **state)
{
    (void)state;
    static const int hidden[] = { 30 };
    for (int init = 0; init < 2; init++) {
        kp_mlpnn_net *net = NULL;
        char err[KP_ERRLEN] = "";
        kp_rng r;
        kp_rng_seed(&r, 70);
        assert_int_equal(kp_mlpnn_mlp_create(10, hidden, 1, 2, 0, 0, &net, err, sizeof err), 0);
        kp_mlpnn_init_params(net, init ? KP_MLPNN_HE : KP_MLPNN_GLOROT, &r);
        const float *p = net->params;
        double bound = init ? sqrt(6.0 / 10) : sqrt(6.0 / 40), top = 0, bias = 0;
        for (int k = 0; k < 300; k++)
            top = fmax(top, fabs(p[k]));
        for (int k = 300; k < 330; k++)
            bias = fmax(bias, fabs(p[k]));
        assert_true(top <= bound && top > 0.9 * bound);   /* uniform over the whole range */
        assert_true(init ? bias == 0 : bias > 0.5 * bound && bias <= bound);
        kp_mlpnn_free(net);
    }
}

/* ---- determinism ---- */

static void test_mlp_is_deterministic_across_runs_and_thread_counts(void **state)
{
    (void)state;
    /* GEMMs large enough for OpenBLAS to split over threads if it were allowed
     * to, and for the fit to cut into chunks (500 x 128 x 256) */
    gen g = generate(KP_TASK_MULTICLASS, 4, 2000, 20, 21);
    kp_matrix Xv = { g.X + 1500 * 20, 500, 20 };
    static const char *const kv[] = { "hidden_layer_sizes", "256,128", "batch_norm", "true",
                                      "dropout", "0.2", "max_iter", "2", "batch_size", "500",
                                      "early_stopping", "true", NULL };
    int blas = openblas_get_num_threads();
    float *p[3];
    for (int run = 0; run < 3; run++) {
        openblas_set_num_threads(2);
        kp_fit_opts o = { .seed = 9, .threads = run == 2 ? 2 : 1, .X_valid = &Xv,
                          .y_valid = g.y + 1500 };
        kp_model *m = fit_with(KP_TASK_MULTICLASS, 4, g.X, 1500, 20, g.y, kv, &o);
        assert_int_equal(openblas_get_num_threads(), 2);   /* restored */
        p[run] = predict(m, g.X, 2000, 20, run + 1);
        kp_model_free(m);
    }
    openblas_set_num_threads(blas);
    assert_memory_equal(p[0], p[1], sizeof(float) * 2000 * 4);
    assert_memory_equal(p[0], p[2], sizeof(float) * 2000 * 4);
    for (int run = 0; run < 3; run++)
        free(p[run]);
    gen_free(&g);
}

static void test_mlp_seed_changes_the_fit(void **state)
{
    (void)state;
    gen g = generate(KP_TASK_BINARY, 1, 200, 3, 22);
    kp_fit_opts o1 = { .seed = 1, .threads = 1 }, o2 = { .seed = 2, .threads = 1 };
    static const char *const kv[] = { "max_iter", "3", NULL };
    kp_model *a = fit_with(KP_TASK_BINARY, 1, g.X, 200, 3, g.y, kv, &o1);
    kp_model *b = fit_with(KP_TASK_BINARY, 1, g.X, 200, 3, g.y, kv, &o2);
    float *pa = predict(a, g.X, 200, 3, 1), *pb = predict(b, g.X, 200, 3, 1);
    assert_memory_not_equal(pa, pb, sizeof *pa * 200);
    free(pa);
    free(pb);
    kp_model_free(a);
    kp_model_free(b);
    gen_free(&g);
}

/* ---- checkpoints ---- */

typedef struct arch_case {
    kp_task_kind task;
    int n_out;
    const char *kv[8];
} arch_case;

static const arch_case archs[] = {
    { KP_TASK_BINARY, 1, { "hidden_layer_sizes", "8,4", NULL } },
    { KP_TASK_MULTICLASS, 3, { "hidden_layer_sizes", "6", "batch_norm", "true", NULL } },
    { KP_TASK_REGRESSION, 1, { "batch_norm", "true", "dropout", "0.3", NULL } },
    { KP_TASK_MULTILABEL, 2, { "hidden_layer_sizes", "[]", NULL } },
};

static void test_mlp_save_load_round_trip_predicts_identical_bits(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir();
    for (size_t c = 0; c < sizeof archs / sizeof archs[0]; c++) {
        const arch_case *a = &archs[c];
        static const char *const base[] = { "max_iter", "5", NULL };
        const char *kv[12];
        int n = 0;
        for (int i = 0; a->kv[i]; i++)
            kv[n++] = a->kv[i];
        for (int i = 0; base[i]; i++)
            kv[n++] = base[i];
        kv[n] = NULL;
        gen g = generate(a->task, a->n_out, 300, 5, 30 + c);
        kp_model *m = fit_with(a->task, a->n_out, g.X, 300, 5, g.y, kv, NULL), *back = NULL;
        char name[32], err[KP_ERRLEN] = "";
        snprintf(name, sizeof name, "m%zu.safetensors", c);
        char *path = kp_test_join(dir, name);
        assert_int_equal(kp_model_save(m, path, err, sizeof err), 0);
        if (kp_model_load(path, &kp_model_mlp, &back, err, sizeof err) != 0)
            fail_msg("load: %s", err);
        float *pa = predict(m, g.X, 300, 5, 1), *pb = predict(back, g.X, 300, 5, 2);
        assert_memory_equal(pa, pb, sizeof *pa * 300 * (size_t)a->n_out);
        assert_int_equal(kp_model_problem(back)->task, a->task);
        free(pa);
        free(pb);
        free(path);
        kp_model_free(m);
        kp_model_free(back);
        gen_free(&g);
    }
    free(dir);
}

static void test_mlp_checkpoint_uses_pytorch_tensor_names_and_shapes(void **state)
{
    (void)state;
    static const struct { const char *name; int ndim; int64_t shape[2]; } want[] = {
        { "layers.0.weight", 2, { 8, 3 } }, { "layers.0.bias", 1, { 8 } },
        { "bn.0.weight", 1, { 8 } }, { "bn.0.bias", 1, { 8 } },
        { "bn.0.running_mean", 1, { 8 } }, { "bn.0.running_var", 1, { 8 } },
        { "layers.1.weight", 2, { 4, 8 } }, { "layers.1.bias", 1, { 4 } },
        { "bn.1.running_var", 1, { 4 } }, { "layers.2.weight", 2, { 3, 4 } },
        { "layers.2.bias", 1, { 3 } },
    };
    static const char *const kv[] = { "hidden_layer_sizes", "8,4", "batch_norm", "true",
                                      "max_iter", "2", NULL };
    gen g = generate(KP_TASK_MULTICLASS, 3, 100, 3, 40);
    kp_model *m = fit_with(KP_TASK_MULTICLASS, 3, g.X, 100, 3, g.y, kv, NULL);
    char *dir = kp_test_tmpdir(), *path = kp_test_join(dir, "names.safetensors");
    char err[KP_ERRLEN] = "";
    kp_st *st = NULL;
    assert_int_equal(kp_model_save(m, path, err, sizeof err), 0);
    assert_int_equal(kp_st_open(path, &st, err, sizeof err), 0);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!kp_st_expect(st, want[i].name, KP_F32, want[i].ndim, want[i].shape, err, sizeof err))
            fail_msg("%s", err);
    assert_int_equal(kp_st_count(st), 14);
    assert_string_equal(kp_st_meta(st, "mlp.hidden_layer_sizes"), "8,4");
    assert_string_equal(kp_st_meta(st, "mlp.n_features"), "3");
    assert_string_equal(kp_st_meta(st, "mlp.batch_norm"), "true");
    kp_st_close(st);
    free(path);
    free(dir);
    kp_model_free(m);
    gen_free(&g);
}

/* A change to a good checkpoint: a metadata value, or one tensor's fate. */
typedef enum mutation { M_META, M_DROP, M_TRANSPOSE, M_F64, M_FIRST, M_EXTRA } mutation;

typedef struct bad_case {
    mutation op;
    const char *key;     /* metadata key or tensor name */
    const char *value;   /* M_META: the new value */
    float first;         /* M_FIRST: the tensor's first value */
    const char *tail;    /* expected message after "PATH: " */
} bad_case;

static const bad_case bad[] = {
    { M_META, "mlp.hidden_layer_sizes", "3,x", 0,
      "mlp.hidden_layer_sizes '3,x' is not a list of up to 64 sizes in [1, 1048576]" },
    { M_META, "mlp.hidden_layer_sizes", "3,", 0,
      "mlp.hidden_layer_sizes '3,' is not a list of up to 64 sizes in [1, 1048576]" },
    { M_META, "mlp.n_features", "0", 0, "mlp.n_features '0' is not a positive count" },
    { M_META, "mlp.batch_norm", "yes", 0, "mlp.batch_norm 'yes' is not true or false" },
    { M_META, "mlp.bn_eps", "0", 0, "mlp.bn_eps '0' is not a number in (0, 1)" },
    { M_META, "mlp.hidden_layer_sizes", "300", 0,
      "tensor 'layers.0.weight' has shape [3, 2], expected [300, 2]" },
    { M_META, "mlp.hidden_layer_sizes", "100000", 0,
      "the tensors hold 100 bytes but the architecture in the metadata needs 3200004" },
    { M_TRANSPOSE, "layers.0.weight", NULL, 0,
      "tensor 'layers.0.weight' has shape [2, 3], expected [3, 2]" },
    { M_DROP, "layers.1.bias", NULL, 0, "no tensor 'layers.1.bias'" },
    { M_F64, "bn.0.weight", NULL, 0, "tensor 'bn.0.weight' has dtype F64, expected F32" },
    { M_FIRST, "bn.0.running_var", NULL, -1,
      "tensor 'bn.0.running_var' holds a negative value -1 at index 0" },
    { M_FIRST, "layers.1.weight", NULL, NAN,
      "tensor 'layers.1.weight' holds a non-finite value nan at index 0" },
    { M_EXTRA, "layers.2.weight", NULL, 0,
      "unexpected tensor 'layers.2.weight' for this architecture" },
};

static const char *const meta_keys[] = {
    "kpipe.model", "kpipe.task", "kpipe.n_out", "kpipe.format", "mlp.n_features",
    "mlp.hidden_layer_sizes", "mlp.batch_norm", "mlp.bn_eps",
};

/* Copies tensor t into w, applying c if it names t. */
static void copy_tensor(kp_stw *w, const kp_tensor *t, const bad_case *c)
{
    int hit = strcmp(t->name, c->key) == 0;
    int64_t shape[2] = { t->shape[0], t->ndim > 1 ? t->shape[1] : 0 };
    float *v = malloc(t->nbytes);
    double *d = malloc(sizeof *d * (size_t)t->numel);
    memcpy(v, t->data, t->nbytes);
    for (int64_t i = 0; i < t->numel; i++)
        d[i] = v[i];
    if (hit && c->op == M_FIRST)
        v[0] = c->first;
    if (hit && c->op == M_TRANSPOSE) {
        shape[0] = t->shape[1];
        shape[1] = t->shape[0];
    }
    if (!(hit && c->op == M_DROP))
        assert_int_equal(kp_stw_add(w, t->name, hit && c->op == M_F64 ? KP_F64 : KP_F32, t->ndim,
                                    shape, hit && c->op == M_F64 ? (void *)d : (void *)v), 0);
    free(v);
    free(d);
}

/* Writes a copy of the checkpoint at src with mutation c; returns the heap path. */
static char *mutate(const char *src, const char *dir, size_t i, const bad_case *c)
{
    kp_st *st = NULL;
    char err[KP_ERRLEN], name[32];
    assert_int_equal(kp_st_open(src, &st, err, sizeof err), 0);
    kp_stw *w = kp_stw_create();
    for (size_t k = 0; k < sizeof meta_keys / sizeof meta_keys[0]; k++) {
        const char *v = kp_st_meta(st, meta_keys[k]);
        if (c->op == M_META && strcmp(meta_keys[k], c->key) == 0)
            v = c->value;
        assert_int_equal(kp_stw_meta(w, meta_keys[k], v), 0);
    }
    for (int k = 0; k < kp_st_count(st); k++)
        copy_tensor(w, kp_st_at(st, k), c);
    if (c->op == M_EXTRA) {
        int64_t shape[2] = { 1, 1 };
        float one = 1;
        assert_int_equal(kp_stw_add(w, c->key, KP_F32, 2, shape, &one), 0);
    }
    snprintf(name, sizeof name, "bad%zu.safetensors", i);
    char *path = kp_test_join(dir, name);
    assert_int_equal(kp_stw_write(w, path, err, sizeof err), 0);
    kp_stw_free(w);
    kp_st_close(st);
    return path;
}

static void test_mlp_load_refuses_corrupted_checkpoints(void **state)
{
    (void)state;
    static const char *const kv[] = { "hidden_layer_sizes", "3", "batch_norm", "true",
                                      "max_iter", "2", NULL };
    gen g = generate(KP_TASK_BINARY, 1, 50, 2, 41);
    kp_model *m = fit_with(KP_TASK_BINARY, 1, g.X, 50, 2, g.y, kv, NULL);
    char *dir = kp_test_tmpdir(), *good = kp_test_join(dir, "good.safetensors");
    char err[KP_ERRLEN] = "", want[KP_ERRLEN];
    assert_int_equal(kp_model_save(m, good, err, sizeof err), 0);
    kp_problem pb = { .task = KP_TASK_BINARY, .n_out = 1 };
    for (size_t i = 0; i <= sizeof bad / sizeof bad[0]; i++) {   /* the last: unmutated */
        int last = i == sizeof bad / sizeof bad[0];
        char *path = last ? kp_test_join(dir, "good.safetensors") : mutate(good, dir, i, &bad[i]);
        kp_st *st = NULL;
        void *back = NULL;
        assert_int_equal(kp_st_open(path, &st, err, sizeof err), 0);
        int rc = kp_model_mlp.load(st, &pb, &back, err, sizeof err);
        snprintf(want, sizeof want, "%s: %s", path, last ? "" : bad[i].tail);
        if (last ? rc != 0 : (rc != KP_ERR_FORMAT || strcmp(err, want) != 0))
            fail_msg("case %zu: status %d, message\n  %s\nwant\n  %s", i, rc, err, want);
        assert_true(last ? back != NULL : back == NULL);
        kp_model_mlp.free(back);
        kp_st_close(st);
        free(path);
    }
    free(good);
    free(dir);
    kp_model_free(m);
    gen_free(&g);
}

static void test_mlp_load_refuses_another_models_checkpoint(void **state)
{
    (void)state;
    gen g = generate(KP_TASK_BINARY, 1, 50, 2, 44);
    static const char *const kv[] = { "max_iter", "1", NULL };
    kp_model *m = fit_with(KP_TASK_BINARY, 1, g.X, 50, 2, g.y, kv, NULL), *back = NULL;
    char *dir = kp_test_tmpdir(), *path = kp_test_join(dir, "mlp.safetensors");
    char err[KP_ERRLEN] = "", want[KP_ERRLEN];
    assert_int_equal(kp_model_save(m, path, err, sizeof err), 0);
    assert_int_equal(kp_model_load(path, kp_model_find("logistic"), &back, err, sizeof err),
                     KP_ERR_MISMATCH);
    snprintf(want, sizeof want, "%s: checkpoint is a 'mlp' model, expected 'logistic'", path);
    assert_string_equal(err, want);
    assert_null(back);
    free(path);
    free(dir);
    kp_model_free(m);
    gen_free(&g);
}

static void test_mlp_load_refuses_truncated_checkpoint(void **state)
{
    (void)state;
    gen g = generate(KP_TASK_BINARY, 1, 50, 2, 42);
    static const char *const kv[] = { "max_iter", "2", NULL };
    kp_model *m = fit_with(KP_TASK_BINARY, 1, g.X, 50, 2, g.y, kv, NULL), *back = NULL;
    char *dir = kp_test_tmpdir(), *path = kp_test_join(dir, "cut.safetensors");
    char err[KP_ERRLEN] = "";
    assert_int_equal(kp_model_save(m, path, err, sizeof err), 0);
    assert_int_equal(truncate(path, 300), 0);
    assert_true(kp_model_load(path, &kp_model_mlp, &back, err, sizeof err) < 0);
    assert_null(back);
    assert_int_equal(strncmp(err, path, strlen(path)), 0);   /* names the file */
    free(path);
    free(dir);
    kp_model_free(m);
    gen_free(&g);
}

/* ---- input checks ---- */

/* Fits (through kp_model_fit) and expects failure with exactly `want`. */
static void assert_fit_fails(kp_task_kind task, int n_out, const float *X, int64_t rows,
                             int64_t cols, const float *y, const char *const *kv,
                             const kp_fit_opts *opts, int status, const char *want)
{
    kp_params *p = params_of(kv);
    kp_problem pb = { .task = task, .n_out = n_out };
    kp_matrix m = { X, rows, cols };
    kp_model *model = NULL;
    char err[KP_ERRLEN] = "";
    int rc = kp_model_fit(&kp_model_mlp, p, &pb, &m, y, opts, &model, err, sizeof err);
    kp_params_free(p);
    assert_int_equal(rc, status);
    assert_string_equal(err, want);
    assert_null(model);
}

typedef struct param_case {
    const char *kv[3];
    const char *want;
} param_case;

static const param_case bad_params[] = {
    { { "hidden_layer_sizes", "10,0" },
      "mlp: hidden_layer_sizes: '0' is not a whole number in [1, 1048576]" },
    { { "hidden_layer_sizes", "ten" },
      "mlp: hidden_layer_sizes: 'ten' is not a whole number in [1, 1048576]" },
    { { "batch_size", "big" },
      "mlp: batch_size 'big' is not 'auto' or a whole number in [1, 2^30]" },
    { { "dropout", "1" }, "mlp: dropout = 1 must be in [0, 1)" },
    { { "beta_2", "1" }, "mlp: beta_2 = 1 must be in [0, 1)" },
    { { "validation_fraction", "0" }, "mlp: validation_fraction = 0 must be in [1e-09, 1)" },
    { { "learning_rate_init", "-1" }, "mlp: learning_rate_init = -1 must be in [1e-12, 1000]" },
};

static void test_mlp_rejects_bad_inputs_with_clear_messages(void **state)
{
    (void)state;
    static const float X[] = { 1, 2, 3, 4, 5, 6, 7, 8 }, y_nan[] = { 1, NAN, 2, 3 };
    static const float y_mc[] = { 0, 1, 2, 0 }, yv_bad[] = { 0, 5 };
    assert_fit_fails(KP_TASK_REGRESSION, 1, X, 4, 2, y_nan, NULL, NULL, KP_ERR_ARG,
                     "mlp: y[1] = nan is not finite");
    for (size_t i = 0; i < sizeof bad_params / sizeof bad_params[0]; i++)
        assert_fit_fails(KP_TASK_REGRESSION, 1, X, 4, 2, y_mc, bad_params[i].kv, NULL,
                         KP_ERR_ARG, bad_params[i].want);
    kp_matrix Xv = { X, 4, 1 };
    kp_fit_opts o = { .seed = 1, .threads = 1, .X_valid = &Xv, .y_valid = y_mc };
    assert_fit_fails(KP_TASK_MULTICLASS, 3, X, 4, 2, y_mc, NULL, &o, KP_ERR_ARG,
                     "mlp: X_valid has 4 rows and 1 columns (X has 2 columns)");
    Xv = (kp_matrix){ X, 2, 2 };
    o.y_valid = yv_bad;
    assert_fit_fails(KP_TASK_MULTICLASS, 3, X, 4, 2, y_mc, NULL, &o, KP_ERR_ARG,
                     "mlp: y_valid[1] = 5 is not a class index");
    static const char *const diverge[] = { "solver", "sgd", "learning_rate_init", "1000",
                                           "momentum", "0", NULL };
    static const float y_big[] = { 1e30f, -1e30f, 1e30f, -1e30f };
    assert_fit_fails(KP_TASK_REGRESSION, 1, X, 4, 2, y_big, diverge, NULL, KP_ERR_ARG,
                     "mlp: the training loss is nan at epoch 2; lower learning_rate_init");
}

static void test_mlp_predict_rejects_wrong_column_count(void **state)
{
    (void)state;
    gen g = generate(KP_TASK_BINARY, 1, 40, 3, 43);
    static const char *const kv[] = { "max_iter", "1", NULL };
    kp_model *m = fit_with(KP_TASK_BINARY, 1, g.X, 40, 3, g.y, kv, NULL);
    kp_matrix X = { g.X, 10, 2 };
    float out[10];
    char err[KP_ERRLEN] = "";
    assert_int_equal(kp_model_predict(m, &X, out, 1, err, sizeof err), KP_ERR_MISMATCH);
    assert_string_equal(err, "mlp: X has 2 columns but the model was fitted on 3 features");
    kp_model_free(m);
    gen_free(&g);
}

/* ---- gradients ---- */

typedef double (*loss_fn)(void *ctx);

/* Central difference of f in v (restored afterwards), over the step actually taken. */
static double numeric(loss_fn f, void *ctx, float *v, float h)
{
    float old = *v, up = old + h, down = old - h;
    *v = up;
    double lp = f(ctx);
    *v = down;
    double lm = f(ctx);
    *v = old;
    return (lp - lm) / ((double)up - (double)down);
}

/* Fails unless every analytic[i] matches the finite difference in v[i]. */
static void check_grad(const char *what, loss_fn f, void *ctx, float *v, const float *analytic,
                       size_t n)
{
    for (size_t i = 0; i < n; i++) {
        double num = numeric(f, ctx, &v[i], 1e-3f), a = analytic[i];
        if (!(fabs(num - a) <= 2e-3 + 1e-2 * fabs(num)))
            fail_msg("%s[%zu]: backward %.6g, finite difference %.6g", what, i, a, num);
    }
}

/* One net under test: loss = sum(g . net(x)) in replay mode. */
typedef struct probe {
    kp_mlpnn_net *net;
    kp_mlpnn_work *w;
    float x[64], g[64];
    int n;
} probe;

static double probe_loss(void *ctx)
{
    probe *p = ctx;
    const float *y = kp_mlpnn_forward(p->net, p->w, p->x, p->n, KP_MLPNN_TRAIN_REPLAY);
    double s = 0;
    for (int i = 0; i < p->n * p->net->out; i++)
        s += (double)p->g[i] * y[i];
    return s;
}

/* Builds the one-layer net `spec` on `in` inputs, runs forward + backward on
 * random x and g, and checks dL/dx and every parameter against finite differences. */
static void check_layer(const char *what, kp_mlpnn_spec spec, int in, int n, uint64_t seed)
{
    probe p = { .n = n };
    char err[KP_ERRLEN] = "";
    kp_rng r;
    kp_rng_seed(&r, seed);
    assert_int_equal(kp_mlpnn_create(in, &spec, 1, &p.net, err, sizeof err), 0);
    assert_non_null(p.w = kp_mlpnn_work_create(p.net, n, seed));
    for (size_t i = 0; i < p.net->n_params; i++)
        p.net->params[i] = (float)(0.5 + kp_rng_uniform(&r));
    for (int i = 0; i < n * in; i++) {   /* |x| >= 0.1: no ReLU kink within the step */
        double u = kp_rng_normal(&r);
        p.x[i] = (float)(u + (u >= 0 ? 0.1 : -0.1));
    }
    for (int i = 0; i < n * p.net->out; i++)
        p.g[i] = (float)kp_rng_normal(&r);
    float dx[64], gp[64];
    kp_mlpnn_forward(p.net, p.w, p.x, n, KP_MLPNN_TRAIN);   /* draws the dropout mask, kept after */
    kp_mlpnn_backward(p.net, p.w, p.x, n, p.g, dx);
    memcpy(gp, p.w->grads, sizeof(float) * p.net->n_params);
    char name[64];
    snprintf(name, sizeof name, "%s dL/dx", what);
    check_grad(name, probe_loss, &p, p.x, dx, (size_t)(n * in));
    snprintf(name, sizeof name, "%s dL/dparam", what);
    check_grad(name, probe_loss, &p, p.net->params, gp, p.net->n_params);
    kp_mlpnn_work_free(p.w);
    kp_mlpnn_free(p.net);
}

static void test_nn_dense_backward_matches_finite_differences(void **state)
{
    (void)state;
    check_layer("dense", (kp_mlpnn_spec){ KP_MLPNN_DENSE, 3, 0, 0 }, 4, 5, 1);
}

static void test_nn_relu_backward_matches_finite_differences(void **state)
{
    (void)state;
    check_layer("relu", (kp_mlpnn_spec){ KP_MLPNN_RELU, 0, 0, 0 }, 4, 5, 2);
}

static void test_nn_batchnorm_backward_matches_finite_differences(void **state)
{
    (void)state;
    check_layer("batchnorm", (kp_mlpnn_spec){ KP_MLPNN_BATCHNORM, 0, 0, 0 }, 3, 6, 3);
}

static void test_nn_dropout_backward_with_a_fixed_mask_matches_finite_differences(void **state)
{
    (void)state;
    check_layer("dropout", (kp_mlpnn_spec){ KP_MLPNN_DROPOUT, 0, 0, 0.4f }, 4, 5, 4);
}

static void test_nn_large_dense_layer_matches_a_reference_product(void **state)
{
    (void)state;
    /* 256 x 300 -> 130: each GEMM (~10M multiply-adds) is cut into 2 chunks */
    enum { N = 256, IN = 300, OUT = 130 };
    kp_mlpnn_spec spec = { KP_MLPNN_DENSE, OUT, 0, 0 };
    kp_mlpnn_net *net = NULL;
    char err[KP_ERRLEN] = "";
    kp_rng r;
    kp_rng_seed(&r, 80);
    assert_int_equal(kp_mlpnn_create(IN, &spec, 1, &net, err, sizeof err), 0);
    kp_mlpnn_work *w = kp_mlpnn_work_create(net, N, 1);
    float *x = malloc(sizeof *x * N * IN), *dy = malloc(sizeof *dy * N * OUT);
    float *dx = malloc(sizeof *dx * N * IN);
    assert_true(w && x && dy && dx);
    w->threads = 2;
    kp_mlpnn_init_params(net, KP_MLPNN_GLOROT, &r);
    for (int i = 0; i < N * IN; i++)
        x[i] = (float)kp_rng_normal(&r);
    for (int i = 0; i < N * OUT; i++)
        dy[i] = (float)kp_rng_normal(&r);
    const float *y = kp_mlpnn_forward(net, w, x, N, KP_MLPNN_TRAIN);
    kp_mlpnn_backward(net, w, x, N, dy, dx);
    const float *W = net->params, *b = W + OUT * IN, *gW = w->grads;
    for (int i = 0; i < N; i += 7)   /* y = x W^T + b and dx = dy W, sampled rows */
        for (int o = 0; o < OUT; o++) {
            double s = b[o], t = 0;
            for (int k = 0; k < IN; k++)
                s += (double)x[i * IN + k] * W[o * IN + k];
            assert_float_equal(y[i * OUT + o], s, 1e-4 * (1 + fabs(s)));
            for (int k = 0; o < IN / 10 && k < OUT; k++)
                t += (double)dy[i * OUT + k] * W[k * IN + o * 10];
            if (o < IN / 10)
                assert_float_equal(dx[i * IN + o * 10], t, 1e-4 * (1 + fabs(t)));
        }
    for (int o = 0; o < OUT; o += 5)   /* dW = dy^T x, sampled rows */
        for (int k = 0; k < IN; k++) {
            double s = 0;
            for (int i = 0; i < N; i++)
                s += (double)dy[i * OUT + o] * x[i * IN + k];
            assert_float_equal(gW[o * IN + k], s, 1e-4 * (1 + fabs(s)));
        }
    free(x);
    free(dy);
    free(dx);
    kp_mlpnn_work_free(w);
    kp_mlpnn_free(net);
}

typedef struct head_probe {
    kp_mlpnn_head head;
    float z[24], y[24];
    int n, k;
} head_probe;

static double head_mean_loss(void *ctx)
{
    head_probe *h = ctx;
    return kp_mlpnn_head_loss(h->head, h->z, h->y, h->n, h->k, NULL) / h->n;
}

static void test_nn_head_losses_match_finite_differences(void **state)
{
    (void)state;
    static const struct { kp_mlpnn_head head; int k; } heads[] = {
        { KP_MLPNN_SIGMOID, 1 }, { KP_MLPNN_SIGMOID, 3 }, { KP_MLPNN_SOFTMAX, 4 }, { KP_MLPNN_IDENTITY, 1 },
    };
    for (size_t c = 0; c < sizeof heads / sizeof heads[0]; c++) {
        head_probe h = { .head = heads[c].head, .n = 5, .k = heads[c].k };
        kp_rng r;
        kp_rng_seed(&r, 50 + c);
        for (int i = 0; i < h.n * h.k; i++) {
            h.z[i] = (float)(2 * kp_rng_normal(&r));
            h.y[i] = h.head == KP_MLPNN_IDENTITY ? (float)kp_rng_normal(&r)
                     : h.head == KP_MLPNN_SOFTMAX ? (float)kp_rng_below(&r, (uint64_t)h.k)
                     : (float)kp_rng_below(&r, 2);
        }
        float delta[24];
        kp_mlpnn_head_loss(h.head, h.z, h.y, h.n, h.k, delta);
        char name[32];
        snprintf(name, sizeof name, "head %zu", c);
        check_grad(name, head_mean_loss, &h, h.z, delta, (size_t)(h.n * h.k));
    }
}

/* A whole net with its training loss: mean head loss + 0.5 alpha ||W||^2 / n. */
typedef struct net_probe {
    kp_mlpnn_net *net;
    kp_mlpnn_work *w;
    kp_mlpnn_head head;
    float x[64], y[16];
    int n;
    double alpha;
} net_probe;

static double net_loss(void *ctx)
{
    net_probe *p = ctx;
    const float *z = kp_mlpnn_forward(p->net, p->w, p->x, p->n, KP_MLPNN_TRAIN_REPLAY);
    return kp_mlpnn_head_loss(p->head, z, p->y, p->n, p->net->out, NULL) / p->n +
           0.5 * p->alpha * kp_mlpnn_weight_sq(p->net) / p->n;
}

static void test_nn_whole_net_gradient_matches_finite_differences(void **state)
{
    (void)state;
    static const int hidden[] = { 5, 4 };
    net_probe p = { .head = KP_MLPNN_SOFTMAX, .n = 8, .alpha = 0.3 };
    char err[KP_ERRLEN] = "";
    kp_rng r;
    kp_rng_seed(&r, 60);
    assert_int_equal(kp_mlpnn_mlp_create(4, hidden, 2, 3, 1, 0.25f, &p.net, err, sizeof err), 0);
    assert_int_equal(p.net->n_layers, 9);   /* (dense, bn, relu, dropout) x 2, dense */
    assert_non_null(p.w = kp_mlpnn_work_create(p.net, p.n, 61));
    kp_mlpnn_init_params(p.net, KP_MLPNN_GLOROT, &r);
    for (int i = 0; i < p.n * 4; i++)
        p.x[i] = (float)kp_rng_normal(&r);
    for (int i = 0; i < p.n; i++)
        p.y[i] = (float)kp_rng_below(&r, 3);
    float delta[24], grads[256];
    assert_true(p.net->n_params <= 256);
    const float *z = kp_mlpnn_forward(p.net, p.w, p.x, p.n, KP_MLPNN_TRAIN);
    kp_mlpnn_head_loss(p.head, z, p.y, p.n, 3, delta);
    kp_mlpnn_backward(p.net, p.w, p.x, p.n, delta, NULL);
    kp_mlpnn_add_decay(p.net, p.w->grads, (float)(p.alpha / p.n));
    memcpy(grads, p.w->grads, sizeof(float) * p.net->n_params);
    check_grad("net", net_loss, &p, p.net->params, grads, p.net->n_params);
    kp_mlpnn_work_free(p.w);
    kp_mlpnn_free(p.net);
}

typedef struct sk_case {
    kp_task_kind task;
    int k;
    const float *y, *params;
    double loss;
    const double *grads;
} sk_case;

static const sk_case sk[] = {
    { KP_TASK_BINARY, 1, bin_y, bin_params, bin_loss, bin_grads },
    { KP_TASK_MULTICLASS, 3, mc_y, mc_params, mc_loss, mc_grads },
    { KP_TASK_REGRESSION, 1, rg_y, rg_params, rg_loss, rg_grads },
    { KP_TASK_MULTILABEL, 2, ml_y, ml_params, ml_loss, ml_grads },
};

static void test_mlp_loss_and_gradients_match_scikit_learn_backprop(void **state)
{
    (void)state;
    static const int hidden[] = { 3 };
    const double alpha = 0.1;
    const int n = 6;
    for (size_t c = 0; c < sizeof sk / sizeof sk[0]; c++) {
        kp_mlpnn_net *net = NULL;
        char err[KP_ERRLEN] = "";
        kp_mlpnn_head head = kp_mlp_head_of(sk[c].task);
        assert_int_equal(kp_mlpnn_mlp_create(4, hidden, 1, sk[c].k, 0, 0, &net, err, sizeof err), 0);
        kp_mlpnn_work *w = kp_mlpnn_work_create(net, n, 1);
        assert_non_null(w);
        memcpy(net->params, sk[c].params, sizeof(float) * net->n_params);
        float delta[24];
        const float *z = kp_mlpnn_forward(net, w, ref_X, n, KP_MLPNN_TRAIN);
        double loss = kp_mlpnn_head_loss(head, z, sk[c].y, n, sk[c].k, delta) / n +
                      0.5 * alpha * kp_mlpnn_weight_sq(net) / n;
        kp_mlpnn_backward(net, w, ref_X, n, delta, NULL);
        kp_mlpnn_add_decay(net, w->grads, (float)(alpha / n));
        if (!(fabs(loss - sk[c].loss) <= 1e-6 * fabs(sk[c].loss)))
            fail_msg("case %zu: loss %.10g, scikit-learn %.10g", c, loss, sk[c].loss);
        for (size_t i = 0; i < net->n_params; i++)
            if (!(fabs(w->grads[i] - sk[c].grads[i]) <= 1e-6 + 1e-5 * fabs(sk[c].grads[i])))
                fail_msg("case %zu grad %zu: %.8g, scikit-learn %.8g", c, i, w->grads[i],
                         sk[c].grads[i]);
        kp_mlpnn_work_free(w);
        kp_mlpnn_free(net);
    }
}

static void test_nn_batchnorm_keeps_running_statistics_for_prediction(void **state)
{
    (void)state;
    static const float x[] = { 1, 10, 2, 20, 3, 30, 6, 40 };   /* 4 rows x 2 */
    kp_mlpnn_spec spec = { KP_MLPNN_BATCHNORM, 0, 0, 0 };
    kp_mlpnn_net *net = NULL;
    char err[KP_ERRLEN] = "";
    assert_int_equal(kp_mlpnn_create(2, &spec, 1, &net, err, sizeof err), 0);
    kp_mlpnn_work *w = kp_mlpnn_work_create(net, 4, 1);
    net->params[0] = 2, net->params[1] = 0.5f, net->params[2] = 1, net->params[3] = -1;
    kp_mlpnn_forward(net, w, x, 4, KP_MLPNN_TRAIN);
    /* mean (3, 25), unbiased var (14/3, 500/3); momentum 0.1 from (0, 1) */
    const float *rm = net->buffers, *rv = net->buffers + 2;
    assert_float_equal(rm[0], 0.3, 1e-6);
    assert_float_equal(rm[1], 2.5, 1e-6);
    assert_float_equal(rv[0], 0.9 + 0.1 * 14.0 / 3, 1e-6);
    assert_float_equal(rv[1], 0.9 + 0.1 * 500.0 / 3, 1e-5);
    kp_mlpnn_forward(net, w, x, 4, KP_MLPNN_TRAIN_REPLAY);   /* replay leaves them */
    assert_float_equal(rm[0], 0.3, 1e-6);
    const float *y = kp_mlpnn_predict(net, w, x, 4);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 2; j++) {
            double want = net->params[j] * (x[i * 2 + j] - rm[j]) / sqrt(rv[j] + 1e-5) +
                          net->params[2 + j];
            assert_float_equal(y[i * 2 + j], want, 1e-5 * (1 + fabs(want)));
        }
    kp_mlpnn_work_free(w);
    kp_mlpnn_free(net);
}

static void test_mlp_declares_every_task_and_documented_params(void **state)
{
    (void)state;
    assert_string_equal(kp_model_mlp.name, "mlp");
    assert_int_equal(kp_model_mlp.tasks, (1u << KP_TASK_SEGMENTATION) - 1);   /* all but masks */
    static const char *const keys[] = {
        "hidden_layer_sizes", "solver", "alpha", "batch_size", "learning_rate_init",
        "learning_rate", "power_t", "momentum", "nesterovs_momentum", "beta_1", "beta_2",
        "epsilon", "max_iter", "shuffle", "tol", "n_iter_no_change", "early_stopping",
        "validation_fraction", "dropout", "batch_norm", "init",
    };
    assert_int_equal(kp_keyspec_count(kp_model_mlp.params), sizeof keys / sizeof keys[0]);
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        assert_string_equal(kp_model_mlp.params[i].name, keys[i]);
        assert_non_null(kp_model_mlp.params[i].doc);
    }
    kp_params *p = kp_params_create();   /* the defaults validate */
    char err[KP_ERRLEN] = "";
    assert_int_equal(kp_params_validate(p, kp_model_mlp.params, "t.yaml", "params", err,
                                        sizeof err), 0);
    kp_params_free(p);
}

KP_TEST_GROUP(mlp)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_mlp_fits_generated_problems_of_each_task_well),
        cmocka_unit_test(test_mlp_learns_xor),
        cmocka_unit_test(test_mlp_sgd_momentum_and_adam_converge),
        cmocka_unit_test(test_mlp_early_stopping_stops_and_restores_the_best_epoch),
        cmocka_unit_test(test_mlp_early_stopping_without_held_out_rows_splits_the_training_rows),
        cmocka_unit_test(test_mlp_logs_progress_every_10_epochs),
        cmocka_unit_test(test_mlp_stops_when_the_training_loss_stalls),
        cmocka_unit_test(test_mlp_adaptive_sgd_divides_the_rate_by_5_until_1e_6),
        cmocka_unit_test(test_nn_initialisation_follows_glorot_and_he_bounds),
        cmocka_unit_test(test_mlp_is_deterministic_across_runs_and_thread_counts),
        cmocka_unit_test(test_mlp_seed_changes_the_fit),
        cmocka_unit_test(test_mlp_save_load_round_trip_predicts_identical_bits),
        cmocka_unit_test(test_mlp_checkpoint_uses_pytorch_tensor_names_and_shapes),
        cmocka_unit_test(test_mlp_load_refuses_corrupted_checkpoints),
        cmocka_unit_test(test_mlp_load_refuses_another_models_checkpoint),
        cmocka_unit_test(test_mlp_load_refuses_truncated_checkpoint),
        cmocka_unit_test(test_mlp_rejects_bad_inputs_with_clear_messages),
        cmocka_unit_test(test_mlp_predict_rejects_wrong_column_count),
        cmocka_unit_test(test_nn_dense_backward_matches_finite_differences),
        cmocka_unit_test(test_nn_relu_backward_matches_finite_differences),
        cmocka_unit_test(test_nn_batchnorm_backward_matches_finite_differences),
        cmocka_unit_test(test_nn_dropout_backward_with_a_fixed_mask_matches_finite_differences),
        cmocka_unit_test(test_nn_large_dense_layer_matches_a_reference_product),
        cmocka_unit_test(test_nn_head_losses_match_finite_differences),
        cmocka_unit_test(test_nn_whole_net_gradient_matches_finite_differences),
        cmocka_unit_test(test_mlp_loss_and_gradients_match_scikit_learn_backprop),
        cmocka_unit_test(test_nn_batchnorm_keeps_running_statistics_for_prediction),
        cmocka_unit_test(test_mlp_declares_every_task_and_documented_params),
    };
    return KP_RUN(mlp, t);
}

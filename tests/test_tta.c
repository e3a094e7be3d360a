/* test_tta.c - the tta stage (stages/tta.c) and its pure pieces (tta_core.c). */
#include "stage_fixture.h"

#include <math.h>
#include "../lib/d4.h"
#include "../lib/image.h"
#include "../lib/rng.h"
#include "../models/model.h"
#include "../stages/thresholds.h"
#include "../stages/tta.h"

/* ---- transform names ---- */

static void test_tta_names_map_to_their_d4_transforms(void **state)
{
    (void)state;
    static const struct { const char *name; int t; } cases[] = {
        {"identity", 0}, {"hflip", 4}, {"vflip", 6}, {"rot90", 1},
        {"rot180", 2}, {"rot270", 3}, {"transpose", 5}, {"transverse", 7},
    };
    for (int i = 0; i < 8; i++) {
        assert_int_equal(kp_tta_find(cases[i].name), cases[i].t);
        assert_string_equal(kp_tta_name(cases[i].t), cases[i].name);
        assert_int_equal(kp_tta_at(i), cases[i].t);   /* the canonical order */
    }
    assert_int_equal(kp_tta_find("flip"), -1);
    assert_null(kp_tta_name(8));
}

/* Each name does to a 2 x 2 image [[a, b], [c, d]] what it says. */
static void test_tta_names_mean_what_they_say_on_an_image(void **state)
{
    (void)state;
    static const float src[4] = {1, 2, 3, 4};   /* a b / c d */
    static const struct { const char *name; float want[4]; } cases[] = {
        {"identity", {1, 2, 3, 4}},
        {"hflip", {2, 1, 4, 3}},          /* columns mirrored */
        {"vflip", {3, 4, 1, 2}},          /* rows mirrored */
        {"rot90", {2, 4, 1, 3}},          /* counter-clockwise */
        {"rot180", {4, 3, 2, 1}},
        {"rot270", {3, 1, 4, 2}},
        {"transpose", {1, 3, 2, 4}},      /* main diagonal */
        {"transverse", {4, 2, 3, 1}},     /* anti-diagonal */
    };
    for (int i = 0; i < 8; i++) {
        float dst[4];
        kp_d4_apply(src, 1, 2, 2, kp_tta_find(cases[i].name), dst);
        for (int j = 0; j < 4; j++)
            if (dst[j] != cases[i].want[j])
                fail_msg("%s: pixel %d is %g, expected %g", cases[i].name, j, (double)dst[j],
                         (double)cases[i].want[j]);
    }
}

/* ---- parsing transforms ---- */

static void test_tta_parse_all_auto_and_lists(void **state)
{
    (void)state;
    static const struct {
        const char *items[4];
        int n;
        kp_tta_mode mode;
        int count, t[4];
    } cases[] = {
        {{"all"}, 1, KP_TTA_ALL, 0, {0}},
        {{"auto"}, 1, KP_TTA_AUTO, 0, {0}},
        {{"hflip"}, 1, KP_TTA_LIST, 1, {4}},
        {{"rot90", "identity", "transverse"}, 3, KP_TTA_LIST, 3, {1, 0, 7}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[KP_ERRLEN] = "";
        kp_tta_spec s;
        assert_int_equal(kp_tta_parse(cases[i].items, cases[i].n, &s, err, sizeof err), 0);
        assert_int_equal(s.mode, cases[i].mode);
        assert_int_equal(s.n, cases[i].count);
        for (int j = 0; j < cases[i].count; j++)
            assert_int_equal(s.t[j], cases[i].t[j]);
    }
}

static void test_tta_parse_errors_name_the_item(void **state)
{
    (void)state;
    static const struct { const char *items[4]; int n; const char *msg; } cases[] = {
        {{"identity", "vflip", "hflp"}, 3,
         "transforms[2]: unknown transform 'hflp' (did you mean 'hflip'?)"},
        {{"zzzzzzzzzz"}, 1, "transforms[0]: unknown transform 'zzzzzzzzzz' (all, auto, or a "
                            "list of identity, hflip, vflip, rot90, rot180, rot270, transpose, "
                            "transverse)"},
        {{"identity", "auto"}, 2,
         "transforms[1]: 'auto' stands alone (transforms: auto), not in a list"},
        {{"hflip", "vflip", "hflip"}, 3, "transforms[2]: 'hflip' is listed twice"},
        {{NULL}, 0, "transforms: empty (all, auto, or a list of transform names)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[KP_ERRLEN] = "";
        kp_tta_spec s = {KP_TTA_LIST, 5, {9}};
        assert_int_equal(kp_tta_parse(cases[i].items, cases[i].n, &s, err, sizeof err),
                         KP_ERR_CONFIG);
        assert_string_equal(err, cases[i].msg);
        assert_int_equal(s.n, 5);   /* untouched */
    }
}

static void test_tta_candidates_of_non_square_images_keep_their_shape(void **state)
{
    (void)state;
    kp_tta_spec all = {KP_TTA_ALL, 0, {0}}, autos = {KP_TTA_AUTO, 0, {0}};
    kp_tta_spec list = {KP_TTA_LIST, 3, {4, 1, 0}};
    int t[KP_D4_COUNT];
    assert_int_equal(kp_tta_candidates(&all, 8, 8, t), 8);
    assert_int_equal(t[1], 4);
    assert_int_equal(kp_tta_candidates(&autos, 8, 6, t), 4);
    int want[4] = {0, 4, 6, 2};
    for (int i = 0; i < 4; i++)
        assert_int_equal(t[i], want[i]);
    assert_int_equal(kp_tta_candidates(&list, 8, 8, t), 3);
    assert_int_equal(t[1], 1);
    assert_int_equal(kp_tta_candidates(&list, 8, 6, t), -1 - 1);   /* rot90 at [1] */
}

/* ---- merging ---- */

static void assert_floats(const float *got, const double *want, int n, const char *what)
{
    for (int i = 0; i < n; i++)
        if (fabs(got[i] - want[i]) > 1e-6)
            fail_msg("%s[%d] = %.8f, expected %.8f", what, i, (double)got[i], want[i]);
}

/* Two rows of one output (binary) or one row of two classes (multiclass):
 * reference values from numpy. */
static void test_tta_merge_mean_gmean_max(void **state)
{
    (void)state;
    static const float a[2] = {0.2f, 0.8f}, b[2] = {0.4f, 0.6f}, c[2] = {0.1f, 0.9f};
    const float *src[3] = {a, b, c};
    kp_problem bin = { .task = KP_TASK_BINARY, .n_out = 1 }, mc = { .task = KP_TASK_MULTICLASS, .n_out = 2 };
    static const struct {
        kp_tta_merge_kind how;
        int multiclass, n_src;
        double want[2];
    } cases[] = {
        {KP_TTA_MEAN, 0, 2, {0.3, 0.7}},
        {KP_TTA_GMEAN, 0, 2, {0.28284271, 0.69282032}},
        {KP_TTA_MAX, 0, 2, {0.4, 0.8}},
        {KP_TTA_MEAN, 0, 3, {0.23333333, 0.76666667}},
        {KP_TTA_GMEAN, 0, 3, {0.2, 0.75595263}},
        {KP_TTA_MEAN, 1, 2, {0.3, 0.7}},
        {KP_TTA_GMEAN, 1, 2, {0.28989795, 0.71010205}},   /* renormalised */
        {KP_TTA_MAX, 1, 2, {0.33333333, 0.66666667}},
        {KP_TTA_GMEAN, 1, 3, {0.20921539, 0.79078461}},
        {KP_TTA_MAX, 1, 3, {0.30769231, 0.69230769}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        float out[2];
        const kp_problem *pb = cases[i].multiclass ? &mc : &bin;
        kp_tta_merge(cases[i].how, pb, src, cases[i].n_src, cases[i].multiclass ? 1 : 2, out);
        char what[64];
        snprintf(what, sizeof what, "case %zu (%s)", i, kp_tta_merge_name(cases[i].how));
        assert_floats(out, cases[i].want, 2, what);
    }
}

static void test_tta_merge_gmean_clips_zero_probabilities(void **state)
{
    (void)state;
    static const float a[1] = {0.0f}, b[1] = {0.5f};
    const float *src[2] = {a, b};
    kp_problem bin = { .task = KP_TASK_BINARY, .n_out = 1 };
    float out[1];
    kp_tta_merge(KP_TTA_GMEAN, &bin, src, 2, 1, out);
    assert_true(fabs(out[0] - 2.236067977e-08) < 1e-12);   /* sqrt(1e-15 * 0.5) */
}

static void test_tta_merge_parse_names(void **state)
{
    (void)state;
    kp_tta_merge_kind k = KP_TTA_MEAN;
    assert_int_equal(kp_tta_merge_parse("gmean", &k), 0);
    assert_int_equal(k, KP_TTA_GMEAN);
    assert_int_equal(kp_tta_merge_parse("max", &k), 0);
    assert_int_equal(k, KP_TTA_MAX);
    assert_int_equal(kp_tta_merge_parse("median", &k), KP_ERR_ARG);
    assert_int_equal(k, KP_TTA_MAX);
    assert_string_equal(kp_tta_merge_name(KP_TTA_MEAN), "mean");
}

/* ---- auto selection ---- */

/* A score for every set of transforms (bit t set: t chosen), and the sets asked. */
typedef struct fake_scores {
    double by_mask[256];
    int asked[8], n_asked;
    int fail_at;              /* fail on this call (1-based), 0: never */
} fake_scores;

static int fake_score(void *ctx, const int *sel, int n, double *score, char *err, size_t errlen)
{
    fake_scores *f = ctx;
    int mask = 0;
    for (int i = 0; i < n; i++)
        mask |= 1 << sel[i];
    f->asked[f->n_asked++] = mask;
    if (f->n_asked == f->fail_at)
        return kp_errf(err, errlen, KP_ERR_ARG, "metric failed");
    *score = f->by_mask[mask];
    return 0;
}

static void assert_ints(const int *got, const int *want, int n, const char *what)
{
    for (int i = 0; i < n; i++)
        if (got[i] != want[i])
            fail_msg("%s[%d] = %d, expected %d", what, i, got[i], want[i]);
}

/* Start from identity, try vflip (best solo), rot180, hflip; keep what does not lower it. */
static void test_tta_auto_keeps_transforms_that_do_not_lower_the_score(void **state)
{
    (void)state;
    char err[KP_ERRLEN] = "";
    int cand[4] = {0, 4, 6, 2};
    double solo[4] = {0.90, 0.85, 0.91, 0.88};
    fake_scores f = {.fail_at = 0};
    f.by_mask[1 << 0 | 1 << 6] = 0.915;                       /* + vflip: better */
    f.by_mask[1 << 0 | 1 << 6 | 1 << 2] = 0.910;              /* + rot180: worse */
    f.by_mask[1 << 0 | 1 << 6 | 1 << 4] = 0.915;              /* + hflip: the same */
    kp_tta_auto_out o;
    assert_int_equal(kp_tta_auto(cand, solo, 4, 1, fake_score, &f, &o, err, sizeof err), 0);
    int tried[4] = {0, 6, 2, 4}, kept[4] = {1, 1, 0, 1}, chosen[3] = {0, 6, 4};
    assert_int_equal(o.n_tried, 4);
    assert_ints(o.tried, tried, 4, "tried");
    assert_ints(o.kept, kept, 4, "kept");
    assert_int_equal(o.n_chosen, 3);
    assert_ints(o.chosen, chosen, 3, "chosen");
    assert_true(o.best == 0.915);
    assert_true(o.score[0] == 0.90 && o.score[2] == 0.910);
    assert_int_equal(f.n_asked, 3);   /* identity alone is its solo score */
}

/* The issue's example: a flip that costs points on its own is dropped. */
static void test_tta_auto_drops_a_flip_that_lowers_accuracy(void **state)
{
    (void)state;
    char err[KP_ERRLEN] = "";
    int cand[2] = {0, 4};
    double solo[2] = {0.930, 0.882};
    fake_scores f = {.fail_at = 0};
    f.by_mask[1 << 0 | 1 << 4] = 0.915;
    kp_tta_auto_out o;
    assert_int_equal(kp_tta_auto(cand, solo, 2, 1, fake_score, &f, &o, err, sizeof err), 0);
    assert_int_equal(o.n_chosen, 1);
    assert_int_equal(o.chosen[0], 0);
    assert_int_equal(o.kept[1], 0);
    assert_true(o.best == 0.930);
}

/* Lower is better (logloss); ties in solo score keep the candidate order. */
static void test_tta_auto_lower_is_better_and_ties_keep_candidate_order(void **state)
{
    (void)state;
    char err[KP_ERRLEN] = "";
    int cand[4] = {0, 4, 6, 2};
    double solo[4] = {0.30, 0.20, 0.20, 0.40};
    fake_scores f = {.fail_at = 0};
    f.by_mask[1 << 0 | 1 << 4] = 0.25;                 /* + hflip: lower, kept */
    f.by_mask[1 << 0 | 1 << 4 | 1 << 6] = 0.26;        /* + vflip: higher, dropped */
    f.by_mask[1 << 0 | 1 << 4 | 1 << 2] = 0.24;        /* + rot180: kept */
    kp_tta_auto_out o;
    assert_int_equal(kp_tta_auto(cand, solo, 4, 0, fake_score, &f, &o, err, sizeof err), 0);
    int tried[4] = {0, 4, 6, 2}, chosen[3] = {0, 4, 2};
    assert_ints(o.tried, tried, 4, "tried");
    assert_int_equal(o.n_chosen, 3);
    assert_ints(o.chosen, chosen, 3, "chosen");
    assert_true(o.best == 0.24);
}

/* Without identity among the candidates, the best solo transform starts. */
static void test_tta_auto_without_identity_starts_from_the_best_solo(void **state)
{
    (void)state;
    char err[KP_ERRLEN] = "";
    int cand[3] = {4, 6, 2};
    double solo[3] = {0.5, 0.7, 0.6};
    fake_scores f = {.fail_at = 0};
    f.by_mask[1 << 6 | 1 << 2] = 0.65;
    f.by_mask[1 << 6 | 1 << 4] = 0.75;
    kp_tta_auto_out o;
    assert_int_equal(kp_tta_auto(cand, solo, 3, 1, fake_score, &f, &o, err, sizeof err), 0);
    int tried[3] = {6, 2, 4}, chosen[2] = {6, 4};
    assert_ints(o.tried, tried, 3, "tried");
    assert_ints(o.chosen, chosen, 2, "chosen");
}

static void test_tta_auto_returns_the_score_error(void **state)
{
    (void)state;
    char err[KP_ERRLEN] = "";
    int cand[3] = {0, 4, 6};
    double solo[3] = {0.5, 0.7, 0.6};
    fake_scores f = {.fail_at = 2};
    kp_tta_auto_out o;
    assert_int_equal(kp_tta_auto(cand, solo, 3, 1, fake_score, &f, &o, err, sizeof err),
                     KP_ERR_ARG);
    assert_string_equal(err, "metric failed");
}

/* ---- the stage ---- */

#define NTR 48    /* train images */
#define NTE 12    /* test images */

/* Writes an 8-bit gray w x h PNG: background 20 + noise, a 2 x 2 block of 230
 * at (x, y). */
static void write_blob(const char *dir, const char *name, int w, int h, int x, int y,
                       kp_rng *r)
{
    uint8_t px[64 * 64];
    for (int i = 0; i < w * h; i++)
        px[i] = (uint8_t)(20 + kp_rng_below(r, 20));
    for (int dy = 0; dy < 2; dy++)
        for (int dx = 0; dx < 2; dx++)
            px[(y + dy) * w + x + dx] = 230;
    kp_image img = {w, h, 1, 8, px};
    char *path = kp_test_join(dir, name), err[KP_ERRLEN] = "";
    int rc = kp_image_write_png(path, &img, err, sizeof err);
    if (rc)
        print_error("%s\n", err);
    assert_int_equal(rc, 0);
    free(path);
}

/* Left-or-right images of w x h: label L has its block in the left half, R
 * in the right, at any height; so a vertical flip keeps the class and a
 * horizontal one swaps it.  Writes the CSVs and the PNGs. */
static void left_right(const char *dir, int w, int h)
{
    char *tr = kp_test_join(dir, "img/train"), *te = kp_test_join(dir, "img/test");
    char csv[4096] = "id,label\n", tcsv[1024] = "id\n", sample[1024] = "id,label\n", name[32];
    kp_rng r;
    kp_rng_seed(&r, 11);
    for (int i = 0; i < NTR + NTE; i++) {
        int right = i % 2, x = (int)kp_rng_below(&r, (uint64_t)(w / 2 - 1));
        int y = (int)kp_rng_below(&r, (uint64_t)(h - 1));
        snprintf(name, sizeof name, i < NTR ? "r%d.png" : "t%d.png", i);
        write_blob(i < NTR ? tr : te, name, w, h, right ? w / 2 + x : x, y, &r);
        if (i < NTR)
            snprintf(csv + strlen(csv), sizeof csv - strlen(csv), "r%d,%s\n", i, right ? "R" : "L");
        else {
            snprintf(tcsv + strlen(tcsv), sizeof tcsv - strlen(tcsv), "t%d\n", i);
            snprintf(sample + strlen(sample), sizeof sample - strlen(sample), "t%d,L\n", i);
        }
    }
    free(kp_test_write(dir, "train.csv", csv));
    free(kp_test_write(dir, "test.csv", tcsv));
    free(kp_test_write(dir, "sample.csv", sample));
    free(tr);
    free(te);
}

static const char *const yaml_fmt =
    "competition:\n"
    "  train: train.csv\n"
    "  test: test.csv\n"
    "  sample_submission: sample.csv\n"
    "  id: id\n"
    "  target: label\n"
    "  task: %s\n"
    "  metric: %s\n"
    "  folds: {k: 3, kind: plain, seed: 1}\n"
    "stages:\n"
    "  imgs: {type: images, train_dir: img/train, test_dir: img/test}\n"
    "  folds: {type: folds, needs: [imgs]}\n"
    "  cnn:\n"
    "    type: train\n"
    "    needs: [imgs, folds]\n"
    "    model: cnn\n"
    "    seed: 1\n"
    "    params: {arch: [cbr 4, maxpool, dense 16], epochs: 12, batch: 8, lr: 0.01}\n"
    "  tta: {type: tta, needs: [%s]%s}\n";

/* Loads the left-right config with the tta stage's keys (", transforms: auto"). */
static kp_config *config(const char *dir, const char *task, const char *metric,
                         const char *keys)
{
    char yaml[4096];
    snprintf(yaml, sizeof yaml, yaml_fmt, task, metric, "cnn", keys);
    return fx_config(dir, yaml);
}

/* A folder where the cnn of the left-right config is trained (once per run
 * of the group: the tests share it and write only their own tta outputs). */
static const char *trained(void)
{
    static char *dir;
    static int tried;
    if (dir)
        return dir;
    if (tried)
        fail_msg("the cnn of the left-right task did not train (see the first failure)");
    tried = 1;
    char *d = kp_test_tmpdir();
    left_right(d, 8, 8);
    kp_config *cfg = config(d, "binary", "accuracy", "");
    fx_run_ok(cfg, "imgs");
    fx_run_ok(cfg, "folds");
    fx_run_ok(cfg, "cnn");
    kp_config_free(cfg);
    return dir = d;
}

/* A folder with the left-right images of w x h and their dataset and folds. */
static char *prepared(int w, int h, const char *keys, kp_config **cfg)
{
    char *dir = kp_test_tmpdir();
    left_right(dir, w, h);
    *cfg = config(dir, "binary", "accuracy", keys);
    fx_run_ok(*cfg, "imgs");
    fx_run_ok(*cfg, "folds");
    return dir;
}

/* ---- config checks ---- */

static void test_tta_needs_one_train_stage_of_an_image_model(void **state)
{
    (void)state;
    static const char *const tabular =
        "competition: {train: train.csv, test: test.csv, id: id, target: y, task: binary, "
        "metric: auc}\n"
        "stages:\n"
        "  prep: {type: preprocess}\n"
        "  folds: {type: folds, needs: [prep]}\n"
        "  lr: {type: train, needs: [prep, folds], model: logistic}\n"
        "  tta: {type: tta, needs: [lr]}\n";
    static const struct { const char *yaml, *needs, *msg; } cases[] = {
        {NULL, "imgs",
         "kp.yaml:19:3: stages.tta.needs: tta stage 'tta' needs a train stage of an image model, "
         "but 'imgs' is a stage of type images"},
        {NULL, "cnn, imgs",
         "kp.yaml:19:3: stages.tta.needs: tta stage 'tta' needs exactly one train stage of an "
         "image model, found 2 needs"},
        {tabular, NULL,
         "kp.yaml:6:3: stages.tta.needs: train stage 'lr' fits model 'logistic', which does not "
         "predict images (tta needs an image model such as cnn)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *dir = kp_test_tmpdir(), err[KP_ERRLEN] = "", yaml[4096];
        kp_config *cfg = NULL;
        if (cases[i].yaml)
            snprintf(yaml, sizeof yaml, "%s", cases[i].yaml);
        else {
            left_right(dir, 8, 8);
            snprintf(yaml, sizeof yaml, yaml_fmt, "binary", "accuracy", cases[i].needs, "");
        }
        assert_int_equal(fx_load(dir, yaml, &cfg, err, sizeof err), KP_ERR_CONFIG);
        if (!strstr(err, cases[i].msg))
            fail_msg("case %zu: got '%s'", i, err);
        assert_null(cfg);
        free(dir);
    }
}

static void test_tta_config_errors_name_the_key(void **state)
{
    (void)state;
    static const struct { const char *task, *metric, *keys, *msg; } cases[] = {
        {"binary", "accuracy", ", transforms: [identity, vflip, hflp]",
         "kp.yaml:19:46: stages.tta.transforms[2]: unknown transform 'hflp' (did you mean "
         "'hflip'?)"},
        {"binary", "accuracy", ", transforms: [auto, hflip]",
         "kp.yaml:19:46: stages.tta.transforms[0]: 'auto' stands alone (transforms: auto), not "
         "in a list"},
        {"binary", "accuracy", ", merge: median",
         "kp.yaml:19:41: stages.tta.merge: 'median' is not one of mean|gmean|max"},
        {"regression", "rmse", ", merge: gmean",
         "kp.yaml:19:41: stages.tta.merge: gmean merges probabilities, not the values of a "
         "regression task (use mean or max)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *dir = kp_test_tmpdir(), err[KP_ERRLEN] = "", yaml[4096];
        kp_config *cfg = NULL;
        left_right(dir, 8, 8);
        if (strcmp(cases[i].task, "regression") == 0)
            free(kp_test_write(dir, "train.csv", "id,label\nr0,1.5\nr1,2\n"));
        snprintf(yaml, sizeof yaml, yaml_fmt, cases[i].task, cases[i].metric, "cnn",
                 cases[i].keys);
        assert_int_equal(fx_load(dir, yaml, &cfg, err, sizeof err), KP_ERR_CONFIG);
        if (!strstr(err, cases[i].msg))
            fail_msg("case %zu: got '%s'", i, err);
        free(dir);
    }
}

/* Its parts are the train stage's; it reads that stage's checkpoints, dataset and folds. */
static void test_tta_parts_inputs_and_outputs_follow_the_train_stage(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir();
    left_right(dir, 8, 8);
    kp_config *cfg = config(dir, "binary", "accuracy", "");
    const kp_stage *st = fx_stage(cfg, "tta");
    kp_buf in, out;
    kp_buf_init(&in, 0);
    kp_buf_init(&out, 0);
    assert_int_equal(fx_n_parts(cfg, "tta"), 3);
    assert_int_equal(st->ops->outputs(st, cfg, 1, &out), 0);
    assert_int_equal(st->ops->outputs(st, cfg, -1, &out), 0);
    assert_int_equal(st->ops->inputs(st, cfg, &in), 0);
    char want[8192];
    const char *tta = st->dir, *cnn = fx_stage(cfg, "cnn")->dir;
    snprintf(want, sizeof want, "%s/part1.safetensors\n%s/preds.safetensors\n", tta, tta);
    assert_string_equal(kp_buf_str(&out), want);
    snprintf(want, sizeof want, "%s/model_part0.safetensors\n%s/model_part1.safetensors\n"
             "%s/model_part2.safetensors\n%s/dataset.safetensors\n%s/folds.safetensors\n",
             cnn, cnn, cnn, fx_stage(cfg, "imgs")->dir, fx_stage(cfg, "folds")->dir);
    assert_string_equal(kp_buf_str(&in), want);
    kp_buf_free(&in);
    kp_buf_free(&out);
    kp_config_free(cfg);
    free(dir);
}

/* A listed transform that swaps height and width needs square images. */
static void test_tta_rot90_on_non_square_images_is_an_error(void **state)
{
    (void)state;
    char err[KP_ERRLEN] = "";
    kp_config *cfg;
    char *dir = prepared(8, 6, ", transforms: [identity, rot90]", &cfg);
    assert_int_equal(fx_run(cfg, "tta", 0, NULL, err, sizeof err), KP_ERR_CONFIG);
    char want[KP_ERRLEN];
    snprintf(want, sizeof want, "%s:19:46: stages.tta.transforms[1]: rot90 swaps height and "
             "width, but the images are 6 x 8 (H x W); it needs square images", cfg->path);
    assert_string_equal(err, want);
    kp_config_free(cfg);
    free(dir);
}

/* Runs the tta stage of a config over the trained folder with keys; returns its preds. */
static kp_preds *run_tta(kp_config **cfg, const char *keys)
{
    *cfg = config(trained(), "binary", "accuracy", keys);
    fx_run_ok(*cfg, "tta");
    return fx_preds(*cfg, "tta");
}

static void test_tta_identity_alone_reproduces_the_train_stage(void **state)
{
    (void)state;
    kp_config *cfg;
    kp_preds *p = run_tta(&cfg, ", transforms: [identity]");
    kp_preds *base = fx_preds(cfg, "cnn");
    assert_int_equal(p->n_train, NTR);
    assert_int_equal(p->n_test, NTE);
    assert_memory_equal(p->oof, base->oof, NTR * sizeof *p->oof);
    assert_memory_equal(p->test, base->test, NTE * sizeof *p->test);
    assert_true(p->oof_score == base->oof_score);
    assert_int_equal(p->n_folds, 3);
    for (int i = 0; i < 3; i++)
        assert_true(p->fold_scores[i] == base->fold_scores[i]);
    assert_string_equal(kp_st_meta(p->st, "tta_transforms"), "[\"identity\"]");
    assert_string_equal(kp_st_meta(p->st, "tta_source"), "cnn");
    assert_string_equal(p->model, "cnn");
    assert_string_equal(p->stage, "tta");
    kp_preds_close(base);
    kp_preds_close(p);
    kp_config_free(cfg);
}

/* Replaces the first `from` in yaml (at most 4096 bytes) by `to`. */
static void replace(char *yaml, const char *from, const char *to)
{
    char *at = strstr(yaml, from), rest[4096];
    assert_non_null(at);
    snprintf(rest, sizeof rest, "%s", at + strlen(from));
    snprintf(at, 4096 - (size_t)(at - yaml), "%s%s", to, rest);
}

/* With repeated folds, identity alone still equals the train stage's bytes:
 * OOF averaged over repeats, test over parts, in the same order. */
static void test_tta_identity_matches_the_train_stage_with_repeats(void **state)
{
    (void)state;
    char yaml[4096], *dir = kp_test_tmpdir();
    left_right(dir, 8, 8);
    snprintf(yaml, sizeof yaml, yaml_fmt, "binary", "accuracy", "cnn", ", transforms: [identity]");
    replace(yaml, "needs: [imgs]}", "needs: [imgs], k: 2, repeats: 2}");
    replace(yaml, "epochs: 12", "epochs: 3");
    kp_config *cfg = fx_config(dir, yaml);
    assert_int_equal(fx_n_parts(cfg, "tta"), 4);
    const char *order[4] = {"imgs", "folds", "cnn", "tta"};
    for (int i = 0; i < 4; i++)
        fx_run_ok(cfg, order[i]);
    kp_preds *p = fx_preds(cfg, "tta"), *base = fx_preds(cfg, "cnn");
    assert_memory_equal(p->oof, base->oof, NTR * sizeof *p->oof);
    assert_memory_equal(p->test, base->test, NTE * sizeof *p->test);
    assert_int_equal(p->n_folds, 4);
    assert_memory_equal(p->fold_scores, base->fold_scores, 4 * sizeof *p->fold_scores);
    kp_preds_close(base);
    kp_preds_close(p);
    kp_config_free(cfg);
    free(dir);
}

/* Reads the number after "\"NAME\":" in a JSON object text. */
static double json_score(const char *json, const char *name)
{
    char key[64];
    snprintf(key, sizeof key, "\"%s\":", name);
    const char *at = strstr(json, key);
    if (!at)
        fail_msg("no %s in %s", key, json);
    return strtod(at + strlen(key), NULL);
}

/* The issue's example: on a model trained without flips, auto drops hflip
 * (it swaps left and right) and the merge is no worse than identity. */
static void test_tta_auto_drops_hflip_on_a_left_right_task(void **state)
{
    (void)state;
    kp_config *cfg;
    kp_preds *p = run_tta(&cfg, ", transforms: auto");
    const char *chosen = kp_st_meta(p->st, "tta_transforms");
    const char *scores = kp_st_meta(p->st, "tta_scores");
    assert_non_null(chosen);
    assert_non_null(scores);
    assert_true(strncmp(chosen, "[\"identity\"", 11) == 0);
    assert_null(strstr(chosen, "hflip"));
    double id = json_score(scores, "identity"), hf = json_score(scores, "hflip");
    for (int t = 0; t < 8; t++)
        json_score(scores, kp_tta_name(t));   /* every transform was scored */
    if (!(id >= 0.8 && hf < 0.5))
        fail_msg("identity %.4f, hflip %.4f: the cnn did not learn left from right", id, hf);
    assert_true(p->oof_score >= id);
    kp_preds_close(p);
    kp_config_free(cfg);
}

/* Part p's file holds each transform's predictions, as the checkpoint
 * predicts them under that transform. */
static void test_tta_part_holds_each_transforms_predictions(void **state)
{
    (void)state;
    char err[KP_ERRLEN] = "";
    kp_config *cfg = config(trained(), "binary", "accuracy", ", transforms: [vflip, hflip]");
    assert_int_equal(fx_run(cfg, "tta", 1, NULL, err, sizeof err), 0);
    char *path = fx_path(cfg, "tta", "part1.safetensors");
    char *ckpt = fx_path(cfg, "cnn", "model_part1.safetensors");
    char *data = fx_path(cfg, "imgs", "dataset.safetensors");
    kp_st *st = NULL;
    kp_model *m = NULL;
    kp_dataset *d = NULL;
    assert_int_equal(kp_st_open(path, &st, err, sizeof err), 0);
    assert_int_equal(kp_model_load(ckpt, NULL, &m, err, sizeof err), 0);
    assert_int_equal(kp_dataset_open(data, &d, err, sizeof err), 0);
    assert_string_equal(kp_st_meta(st, "transforms"), "[\"vflip\",\"hflip\"]");
    const kp_tensor *ti = kp_st_find(st, "oof_index"), *hf = kp_st_find(st, "oof.hflip");
    const kp_tensor *th = kp_st_find(st, "test.hflip");
    assert_non_null(ti);
    assert_non_null(hf);
    assert_non_null(th);
    assert_null(kp_st_find(st, "oof.identity"));
    int64_t n = ti->shape[0], all[NTE];
    float want[NTR], want_t[NTE];
    assert_int_equal(kp_model_predict_images(m, &d->images_train, ti->data, n, 4, want, 1, err,
                                             sizeof err), 0);
    for (int i = 0; i < NTE; i++)
        all[i] = i;
    assert_int_equal(kp_model_predict_images(m, &d->images_test, all, NTE, 4, want_t, 1, err,
                                             sizeof err), 0);
    assert_memory_equal(hf->data, want, (size_t)n * sizeof *want);
    assert_memory_equal(th->data, want_t, sizeof want_t);
    kp_dataset_close(d);
    kp_model_free(m);
    kp_st_close(st);
    free(path); free(ckpt); free(data);
    kp_config_free(cfg);
}

/* merge: max takes, per part, the larger of the two transforms' predictions. */
static void test_tta_merge_max_takes_the_larger_prediction_per_part(void **state)
{
    (void)state;
    char err[KP_ERRLEN] = "";
    kp_config *cfg;
    kp_preds *p = run_tta(&cfg, ", transforms: [identity, vflip], merge: max");
    double test[NTE] = {0};
    for (int part = 0; part < 3; part++) {
        char name[32];
        snprintf(name, sizeof name, "part%d.safetensors", part);
        char *path = fx_path(cfg, "tta", name);
        kp_st *st = NULL;
        assert_int_equal(kp_st_open(path, &st, err, sizeof err), 0);
        const kp_tensor *ti = kp_st_find(st, "oof_index");
        const float *a = kp_st_find(st, "oof.identity")->data, *b = kp_st_find(st, "oof.vflip")->data;
        const float *ta = kp_st_find(st, "test.identity")->data;
        const float *tb = kp_st_find(st, "test.vflip")->data;
        for (int64_t i = 0; i < ti->shape[0]; i++)
            assert_true(p->oof[((const int64_t *)ti->data)[i]] == (a[i] > b[i] ? a[i] : b[i]));
        for (int i = 0; i < NTE; i++)
            test[i] += ta[i] > tb[i] ? ta[i] : tb[i];
        kp_st_close(st);
        free(path);
    }
    for (int i = 0; i < NTE; i++)
        assert_true(p->test[i] == (float)(test[i] / 3));
    assert_string_equal(kp_st_meta(p->st, "tta_merge"), "max");
    kp_preds_close(p);
    kp_config_free(cfg);
}

/* The bytes do not depend on the thread count. */
static void test_tta_bytes_do_not_depend_on_threads(void **state)
{
    (void)state;
    char err[KP_ERRLEN] = "";
    char *a = NULL, *b = NULL;
    size_t la = 0, lb = 0;
    for (int run = 0; run < 2; run++) {
        kp_config *cfg = config(trained(), "binary", "accuracy", ", transforms: all");
        const kp_stage *st = fx_stage(cfg, "tta");
        setenv("KPIPE_THREADS", run ? "2" : "1", 1);
        for (int i = 0; i < 4; i++) {
            kp_task_ctx ctx = {cfg, st, i < 3 ? i : -1, 3, run ? 2 : 1, NULL};   /* then merge */
            int rc = st->ops->run(&ctx, err, sizeof err);
            if (rc)
                print_error("%s\n", err);
            assert_int_equal(rc, 0);
        }
        char *path = fx_path(cfg, "tta", "preds.safetensors");
        if (run)
            b = fx_read(path, &lb);
        else
            a = fx_read(path, &la);
        free(path);
        kp_config_free(cfg);
    }
    unsetenv("KPIPE_THREADS");
    assert_int_equal(la, lb);
    assert_memory_equal(a, b, la);
    free(a);
    free(b);
}

/* The merge refuses parts made with other transforms. */
static void test_tta_merge_refuses_parts_of_other_transforms(void **state)
{
    (void)state;
    char err[KP_ERRLEN] = "";
    kp_config *cfg = config(trained(), "binary", "accuracy", ", transforms: [rot180]");
    kp_config *other = config(trained(), "binary", "accuracy", ", transforms: [identity]");
    for (int part = 0; part < 3; part++)
        assert_int_equal(fx_run(cfg, "tta", part, NULL, err, sizeof err), 0);
    assert_int_equal(fx_run(other, "tta", -1, NULL, err, sizeof err), KP_ERR_MISMATCH);
    char *path = fx_path(cfg, "tta", "part0.safetensors"), want[KP_ERRLEN];
    snprintf(want, sizeof want, "%s holds the transforms [\"rot180\"], not [\"identity\"]", path);
    assert_string_equal(err, want);
    free(path);
    kp_config_free(cfg);
    kp_config_free(other);
}

/* A multilabel F-beta task gets per-label thresholds searched on the merged OOF. */
static void test_tta_multilabel_thresholds_come_from_the_merged_oof(void **state)
{
    (void)state;
    char err[KP_ERRLEN] = "";
    char *dir = kp_test_tmpdir();
    left_right(dir, 8, 8);
    kp_config *cfg = config(dir, "multilabel", "f1_samples", ", transforms: [identity, vflip]");
    fx_run_ok(cfg, "imgs");
    fx_run_ok(cfg, "folds");
    fx_run_ok(cfg, "cnn");
    fx_run_ok(cfg, "tta");
    kp_preds *p = fx_preds(cfg, "tta");
    char *data = fx_path(cfg, "imgs", "dataset.safetensors");
    kp_dataset *d = NULL;
    assert_int_equal(kp_dataset_open(data, &d, err, sizeof err), 0);
    assert_int_equal(p->pb.n_out, 2);
    assert_non_null(p->thresholds);
    float thr[2];
    assert_int_equal(kp_thresholds_search(&p->pb, d->y, p->oof, NTR, 1.0, thr, err, sizeof err),
                     0);
    assert_memory_equal(thr, p->thresholds, sizeof thr);
    assert_non_null(kp_st_meta(p->st, "oof_score_thresholds"));
    kp_dataset_close(d);
    kp_preds_close(p);
    kp_config_free(cfg);
    free(data);
    free(dir);
}

KP_TEST_GROUP(tta)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_tta_names_map_to_their_d4_transforms),
        cmocka_unit_test(test_tta_names_mean_what_they_say_on_an_image),
        cmocka_unit_test(test_tta_parse_all_auto_and_lists),
        cmocka_unit_test(test_tta_parse_errors_name_the_item),
        cmocka_unit_test(test_tta_candidates_of_non_square_images_keep_their_shape),
        cmocka_unit_test(test_tta_merge_mean_gmean_max),
        cmocka_unit_test(test_tta_merge_gmean_clips_zero_probabilities),
        cmocka_unit_test(test_tta_merge_parse_names),
        cmocka_unit_test(test_tta_auto_keeps_transforms_that_do_not_lower_the_score),
        cmocka_unit_test(test_tta_auto_drops_a_flip_that_lowers_accuracy),
        cmocka_unit_test(test_tta_auto_lower_is_better_and_ties_keep_candidate_order),
        cmocka_unit_test(test_tta_auto_without_identity_starts_from_the_best_solo),
        cmocka_unit_test(test_tta_auto_returns_the_score_error),
        cmocka_unit_test(test_tta_needs_one_train_stage_of_an_image_model),
        cmocka_unit_test(test_tta_config_errors_name_the_key),
        cmocka_unit_test(test_tta_parts_inputs_and_outputs_follow_the_train_stage),
        cmocka_unit_test(test_tta_rot90_on_non_square_images_is_an_error),
        cmocka_unit_test(test_tta_identity_alone_reproduces_the_train_stage),
        cmocka_unit_test(test_tta_identity_matches_the_train_stage_with_repeats),
        cmocka_unit_test(test_tta_auto_drops_hflip_on_a_left_right_task),
        cmocka_unit_test(test_tta_part_holds_each_transforms_predictions),
        cmocka_unit_test(test_tta_merge_max_takes_the_larger_prediction_per_part),
        cmocka_unit_test(test_tta_bytes_do_not_depend_on_threads),
        cmocka_unit_test(test_tta_merge_refuses_parts_of_other_transforms),
        cmocka_unit_test(test_tta_multilabel_thresholds_come_from_the_merged_oof),
    };
    return KP_RUN(tta, t);
}

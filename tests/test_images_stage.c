/* test_images_stage.c - the images stage (stages/images.c), image datasets
 * (stages/artifact.c) and k-fold on images (stages/kfold.c, models/model.c)
 * with a fake image model defined here. */
#include "stage_fixture.h"

#include <math.h>
#include <sys/stat.h>
#include "../lib/image.h"
#include "../models/model.h"
#include "../stages/kfold.h"
#include "../stages/thresholds.h"

/* ---- fixtures ---- */

/* Makes the folders DIR/img/train and DIR/img/test; returns them (heap). */
static void image_dirs(const char *dir, char **tr, char **te)
{
    *tr = kp_test_join(dir, "img/train");
    *te = kp_test_join(dir, "img/test");
    free(kp_test_write(*tr, ".keep", ""));
    free(kp_test_write(*te, ".keep", ""));
}

/* Writes DIR/NAME as a w x h PNG of c channels x depth bits; sample s of
 * pixel p is base + p * c + s (wrapping at the depth). */
static void write_png(const char *dir, const char *name, int w, int h, int c, int depth,
                      int base)
{
    size_t n = (size_t)w * h * c;
    kp_image img = {w, h, c, depth, malloc(n * (size_t)(depth / 8))};
    for (size_t i = 0; i < n; i++) {
        if (depth == 8)
            ((uint8_t *)img.data)[i] = (uint8_t)(base + (int)i);
        else
            ((uint16_t *)img.data)[i] = (uint16_t)(base + (int)i);
    }
    char *path = kp_test_join(dir, name), err[KP_ERRLEN] = "";
    int rc = kp_image_write_png(path, &img, err, sizeof err);
    if (rc)
        print_error("%s\n", err);
    assert_int_equal(rc, 0);
    kp_image_free(&img);
    free(path);
}

/* Writes DIR/NAME as a 2 x 2 RGB PNG whose channel j is v[j] everywhere. */
static void write_flat_rgb(const char *dir, const char *name, const int v[3])
{
    uint8_t px[12];
    for (int i = 0; i < 12; i++)
        px[i] = (uint8_t)v[i % 3];
    kp_image img = {2, 2, 3, 8, px};
    char *path = kp_test_join(dir, name), err[KP_ERRLEN] = "";
    assert_int_equal(kp_image_write_png(path, &img, err, sizeof err), 0);
    free(path);
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
    "  beta: 2\n"
    "  folds: {k: 3, kind: plain, seed: 1}\n"
    "stages:\n"
    "  imgs: {type: images, train_dir: img/train, test_dir: img/test%s}\n"
    "  folds: {type: folds, needs: [imgs]}\n"
    "%s";

/* Loads the config with the images stage's extra keys and more stages. */
static kp_config *config(const char *dir, const char *task, const char *metric,
                         const char *keys, const char *stages)
{
    char yaml[4096];
    snprintf(yaml, sizeof yaml, yaml_fmt, task, metric, keys, stages);
    return fx_config(dir, yaml);
}

/* Six 4 x 4 RGB train images (dogs bright, cats dark) and two test images. */
static void cats_and_dogs(const char *dir)
{
    free(kp_test_write(dir, "train.csv", "id,label\na,cat\nb,dog\nc,cat\nd,dog\ne,cat\nf,dog\n"));
    free(kp_test_write(dir, "test.csv", "id\nt1\nt2\n"));
    free(kp_test_write(dir, "sample.csv", "id,label\nt2,cat\nt1,cat\n"));
    char *tr, *te;
    image_dirs(dir, &tr, &te);
    const char *ids = "abcdef";
    for (int i = 0; i < 6; i++) {
        char name[16];
        snprintf(name, sizeof name, "%c.png", ids[i]);
        write_png(tr, name, 4, 4, 3, 8, i % 2 ? 150 + i : 10 + i);
    }
    write_png(te, "t1.png", 4, 4, 3, 8, 160);
    write_png(te, "t2.png", 4, 4, 3, 8, 5);
    free(tr);
    free(te);
}

/* Opens a stage's dataset.safetensors, asserting success; caller closes. */
static kp_dataset *open_dataset(const kp_config *cfg, const char *stage)
{
    char err[KP_ERRLEN] = "";
    kp_dataset *d = NULL;
    char *path = fx_path(cfg, stage, "dataset.safetensors");
    int rc = kp_dataset_open(path, &d, err, sizeof err);
    if (rc)
        print_error("%s\n", err);
    assert_int_equal(rc, 0);
    free(path);
    return d;
}

/* ---- the stage ---- */

static void test_images_stage_writes_images_targets_ids_and_channel_stats(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir();
    cats_and_dogs(dir);
    kp_config *cfg = config(dir, "binary", "auc", "", "");
    fx_run_ok(cfg, "imgs");
    kp_dataset *d = open_dataset(cfg, "imgs");
    const kp_images *im = &d->images_train;
    assert_int_equal(d->n_train, 6);
    assert_int_equal(d->n_test, 2);
    assert_int_equal(d->n_feat, 0);
    assert_true(im->width == 4 && im->height == 4 && im->channels == 3 && im->depth == 8);
    assert_int_equal(d->images_test.n, 2);
    const uint8_t *px = im->data, *tp = d->images_test.data;
    assert_int_equal(px[48 + 5], 150 + 1 + 5);   /* image b (index 1), sample 5 */
    assert_int_equal(tp[47], (160 + 47) & 255);
    for (int i = 0; i < 6; i++)
        assert_true(d->y[i] == (float)(i % 2));
    assert_string_equal(d->classes[0], "cat");
    assert_string_equal(d->classes[1], "dog");
    char id[16];
    kp_strings_get(&d->test_ids, 1, id, sizeof id);
    assert_string_equal(id, "t2");
    /* channel 0 holds base + 3p over the 16 pixels of each image */
    double sum = 0, ss = 0;
    for (int i = 0; i < 6; i++)
        for (int p = 0; p < 16; p++) {
            double v = (i % 2 ? 150 + i : 10 + i) + 3 * p;
            sum += v, ss += v * v;
        }
    double mean = sum / 96, sd = sqrt(ss / 96 - mean * mean);
    assert_true(fabs(im->mean[0] - mean) < 1e-3 && fabs(im->std[0] - sd) < 1e-3);
    assert_true(d->images_test.mean == im->mean);
    kp_dataset_close(d);
    kp_config_free(cfg);
    free(dir);
}

static void test_images_stage_stacks_16_bit_bands_and_resizes(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir();
    free(kp_test_write(dir, "train.csv", "id,label\nx,1.5\ny,2.5\n"));
    free(kp_test_write(dir, "test.csv", "id\nz\n"));
    char *tr, *te;
    image_dirs(dir, &tr, &te);
    const char *ids[] = {"x", "y"};
    for (int i = 0; i < 2; i++) {
        char name[32];
        snprintf(name, sizeof name, "%s_B1.png", ids[i]);
        write_png(tr, name, 4, 2, 1, 16, 1000);
        snprintf(name, sizeof name, "%s_B2.png", ids[i]);
        write_png(tr, name, 4, 2, 1, 16, 60000);
    }
    write_png(te, "z_B1.png", 4, 2, 1, 16, 7);
    write_png(te, "z_B2.png", 4, 2, 1, 16, 9);
    kp_config *cfg = config(dir, "regression", "rmse",
                            ", patterns: [\"{id}_B1.png\", \"{id}_B2.png\"], size: 2x1", "");
    fx_run_ok(cfg, "imgs");
    kp_dataset *d = open_dataset(cfg, "imgs");
    const kp_images *im = &d->images_train;
    assert_true(im->width == 2 && im->height == 1 && im->channels == 2 && im->depth == 16);
    const uint16_t *px = im->data;
    /* area 4x2 -> 2x1: output pixel 0 averages samples 0, 1, 4, 5 of the band */
    assert_int_equal(px[0], 1000 + (0 + 1 + 4 + 5) / 4);
    assert_int_equal(px[1], 60000 + (0 + 1 + 4 + 5) / 4);
    assert_true(d->y[0] == 1.5f && d->y[1] == 2.5f);
    kp_dataset_close(d);
    kp_config_free(cfg);
    free(tr);
    free(te);
    free(dir);
}

static void test_images_stage_encodes_multilabel_tags(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir();
    free(kp_test_write(dir, "train.csv", "id,label\na,haze road\nb,road\nc,\n"));
    free(kp_test_write(dir, "test.csv", "id\nt\n"));
    char *tr, *te;
    image_dirs(dir, &tr, &te);
    write_png(tr, "a.png", 2, 2, 1, 8, 0);
    write_png(tr, "b.png", 2, 2, 1, 8, 0);
    write_png(tr, "c.png", 2, 2, 1, 8, 0);
    write_png(te, "t.png", 2, 2, 1, 8, 0);
    kp_config *cfg = config(dir, "multilabel", "fbeta_samples", "", "");
    fx_run_ok(cfg, "imgs");
    kp_dataset *d = open_dataset(cfg, "imgs");
    assert_int_equal(d->pb.n_out, 2);
    assert_string_equal(d->classes[0], "haze");
    const float want[] = {1, 1, 0, 1, 0, 0};
    for (int i = 0; i < 6; i++)
        assert_true(d->y[i] == want[i]);
    kp_dataset_close(d);
    kp_config_free(cfg);
    free(tr);
    free(te);
    free(dir);
}

static void test_images_stage_reads_test_ids_from_the_sample_submission(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir();
    cats_and_dogs(dir);
    free(kp_test_write(dir, "test.csv", "nothing\n1\n"));   /* not used */
    kp_config *cfg = config(dir, "binary", "auc", ", test_ids: sample_submission, size: 2", "");
    fx_run_ok(cfg, "imgs");
    kp_dataset *d = open_dataset(cfg, "imgs");
    char id[16];
    kp_strings_get(&d->test_ids, 0, id, sizeof id);
    assert_string_equal(id, "t2");
    assert_true(d->images_test.width == 2 && d->images_test.height == 2);
    kp_dataset_close(d);
    kp_config_free(cfg);
    free(dir);
}

static void test_images_stage_names_the_missing_image_and_its_id(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), err[KP_ERRLEN] = "", want[4096];
    cats_and_dogs(dir);
    char *gone = kp_test_join(dir, "img/train/d.png");
    assert_int_equal(unlink(gone), 0);
    kp_config *cfg = config(dir, "binary", "auc", "", "");
    assert_int_equal(fx_run(cfg, "imgs", -1, NULL, err, sizeof err), KP_ERR_NOTFOUND);
    snprintf(want, sizeof want, "missing image for id 'd' (%s/train.csv:5): %s", dir, gone);
    assert_string_equal(err, want);
    kp_config_free(cfg);
    free(gone);
    free(dir);
}

static void test_images_stage_names_a_corrupt_png(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), err[KP_ERRLEN] = "";
    cats_and_dogs(dir);
    char *good = kp_test_join(dir, "img/test/t1.png"), *bad = kp_test_join(dir, "img/test/t2.png");
    size_t len = 0;
    char *bytes = fx_read(good, &len);
    FILE *f = fopen(bad, "wb");
    assert_int_equal(fwrite(bytes, 1, len / 2, f), len / 2);   /* truncated */
    fclose(f);
    kp_config *cfg = config(dir, "binary", "auc", "", "");
    assert_int_equal(fx_run(cfg, "imgs", -1, NULL, err, sizeof err), KP_ERR_FORMAT);
    assert_true(strncmp(err, bad, strlen(bad)) == 0);
    assert_non_null(strstr(err, ": corrupt PNG: "));
    kp_config_free(cfg);
    free(bytes);
    free(good);
    free(bad);
    free(dir);
}

static void test_images_stage_lists_the_csvs_then_every_image_as_inputs(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), want[8192] = "", *line;
    cats_and_dogs(dir);
    kp_config *cfg = config(dir, "binary", "auc", ", patterns: [\"{id}.png\", \"{id}.png\"]", "");
    const kp_stage *st = fx_stage(cfg, "imgs");
    kp_buf b;
    kp_buf_init(&b, 0);
    assert_int_equal(st->ops->inputs(st, cfg, &b), 0);
    snprintf(want, sizeof want, "%s/train.csv\n%s/test.csv\n", dir, dir);
    for (const char *id = "abcdef"; *id; id++)
        for (int k = 0; k < 2; k++) {
            line = want + strlen(want);
            sprintf(line, "%s/img/train/%c.png\n", dir, *id);
        }
    line = want + strlen(want);
    sprintf(line, "%s/img/test/t1.png\n%s/img/test/t1.png\n%s/img/test/t2.png\n"
            "%s/img/test/t2.png\n", dir, dir, dir, dir);
    assert_string_equal(kp_buf_str(&b), want);
    kp_buf_free(&b);
    kp_config_free(cfg);
    free(dir);
}

static void test_images_stage_config_errors_name_the_key(void **state)
{
    (void)state;
    static const struct { const char *keys, *want; } cases[] = {
        {", size: 0x4", "kp.yaml:12:72: stages.imgs.size: '0x4' is not WxH or one number of "
                        "pixels (each 1 to 65536)"},
        {", size: 4x", "kp.yaml:12:72: stages.imgs.size: '4x' is not WxH"},
        {", patterns: [\"{id}.png\", b.png]", "kp.yaml:12:76: stages.imgs.patterns: pattern "
                                              "'b.png' has no {id}"},
        {", resize: nearest", "stages.imgs.resize"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *dir = kp_test_tmpdir(), err[KP_ERRLEN] = "", yaml[4096];
        kp_config *cfg = NULL;
        snprintf(yaml, sizeof yaml, yaml_fmt, "binary", "auc", cases[i].keys, "");
        assert_int_equal(fx_load(dir, yaml, &cfg, err, sizeof err), KP_ERR_CONFIG);
        if (!strstr(err, cases[i].want))
            fail_msg("case %zu: got '%s', want '%s'", i, err, cases[i].want);
        assert_null(cfg);
        free(dir);
    }
}

static void test_images_stage_needs_a_sample_submission_for_its_test_ids(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), err[KP_ERRLEN] = "";
    const char *yaml =
        "competition: {train: train.csv, test: test.csv, id: id, target: y, task: binary, "
        "metric: auc}\n"
        "stages:\n"
        "  imgs: {type: images, train_dir: a, test_dir: b, test_ids: sample_submission}\n";
    kp_config *cfg = NULL;
    assert_int_equal(fx_load(dir, yaml, &cfg, err, sizeof err), KP_ERR_CONFIG);
    if (!strstr(err, "kp.yaml:3:61: stages.imgs.test_ids"))
        print_error("%s\n", err);
    assert_non_null(strstr(err, "kp.yaml:3:61: stages.imgs.test_ids: sample_submission needs "
                                "competition.sample_submission"));
    free(dir);
}

/* ---- image datasets on disk ---- */

/* What write_dataset breaks. */
enum { OK, TEST_DTYPE, SIZE_META, MEAN_COUNT, STD_NEGATIVE, THREE_DIMS, NO_TRAIN };

/* Writes an image dataset of 2 train and 1 test 2 x 3 x 2 images, broken as `how`. */
static char *write_dataset(const char *dir, int how)
{
    static const uint8_t px[2 * 3 * 2 * 2] = {0};
    static const uint16_t px16[3 * 2 * 2] = {0};
    static const float y[2] = {0, 1};
    kp_stw *w = kp_stw_create();
    int64_t s_tr[4] = {2, 3, 2, 2}, s_te[4] = {1, 3, 2, 2}, sy[1] = {2}, s3[3] = {2, 3, 4};
    if (how == THREE_DIMS)
        assert_int_equal(kp_stw_add(w, "images_train", KP_U8, 3, s3, px), 0);
    else if (how != NO_TRAIN)
        assert_int_equal(kp_stw_add(w, "images_train", KP_U8, 4, s_tr, px), 0);
    assert_int_equal(kp_stw_add(w, "images_test", how == TEST_DTYPE ? KP_U16 : KP_U8, 4, s_te,
                                how == TEST_DTYPE ? (const void *)px16 : px), 0);
    assert_int_equal(kp_stw_add(w, "y", KP_F32, 1, sy, y), 0);
    fx_ids(w, "train_ids", 2, NULL, "r");
    fx_ids(w, "test_ids", 1, NULL, "t");
    const char *meta[][2] = {
        {"kpipe.artifact", "dataset"}, {"task", "binary"}, {"n_out", "1"},
        {"classes", "[\"a\",\"b\"]"}, {"features", "[]"}, {"id_column", "id"},
        {"image_size", how == SIZE_META ? "3x2" : "2x3"},
        {"channel_mean", how == MEAN_COUNT ? "[1]" : "[1, 2]"},
        {"channel_std", how == STD_NEGATIVE ? "[1, -2]" : "[1, 2]"},
    };
    for (size_t i = 0; i < sizeof meta / sizeof meta[0]; i++)
        assert_int_equal(kp_stw_meta(w, meta[i][0], meta[i][1]), 0);
    char *path = kp_test_join(dir, "d.safetensors"), err[KP_ERRLEN] = "";
    assert_int_equal(kp_stw_write(w, path, err, sizeof err), 0);
    kp_stw_free(w);
    return path;
}

static void test_image_dataset_open_checks_every_image_field(void **state)
{
    (void)state;
    static const struct { int how, rc; const char *want; } cases[] = {
        {OK, 0, ""},
        {TEST_DTYPE, KP_ERR_FORMAT, "tensor 'images_test' has dtype U16, expected U8"},
        {SIZE_META, KP_ERR_MISMATCH, "metadata image_size is '3x2' but images_train holds 2x3 "
                                     "images"},
        {MEAN_COUNT, KP_ERR_MISMATCH, "metadata 'channel_mean' has 1 numbers for 2 channels"},
        {STD_NEGATIVE, KP_ERR_FORMAT, "metadata 'channel_std'[1] is -2, not a finite number >= 0"},
        {THREE_DIMS, KP_ERR_FORMAT, "tensor 'images_train' must be U8 or U16 [n >= 1, H, W, C]"},
        {NO_TRAIN, KP_ERR_FORMAT, "images_test without images_train"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *dir = kp_test_tmpdir(), err[KP_ERRLEN] = "";
        char *path = write_dataset(dir, cases[i].how);
        kp_dataset *d = NULL;
        int rc = kp_dataset_open(path, &d, err, sizeof err);
        if (rc != cases[i].rc || !strstr(err, cases[i].want) ||
            (rc && strncmp(err, path, strlen(path)) != 0))
            fail_msg("case %zu: status %d, message '%s'", i, rc, err);
        if (rc == 0) {
            assert_true(d->images_train.n == 2 && d->images_test.n == 1 && d->n_feat == 0);
            assert_true(d->images_train.height == 3 && d->images_train.width == 2);
            assert_true(d->channel_std[1] == 2.0f && d->images_test.std == d->channel_std);
        }
        kp_dataset_close(d);
        free(path);
        free(dir);
    }
}

/* ---- k-fold on images with a fake model ---- */

/* The fake image model: remembers the share of positives of each output in
 * its fit rows, and predicts each output j as the mean of channel j (or of
 * every sample for single-output tasks) / 255, or that share for multiclass. */
typedef struct fake { int n_out; float prior[8]; } fake;

static int fake_fits, fake_overlaps;   /* fits seen; fits whose rows met their valid_rows */

static int fake_fit(const kp_params *params, const kp_problem *pb, const kp_images *X,
                    const int64_t *rows, int64_t n, const float *y, const kp_fit_opts *opts,
                    void **model, char *err, size_t errlen)
{
    (void)params, (void)X, (void)err, (void)errlen;
    fake *m = calloc(1, sizeof *m);
    m->n_out = pb->n_out;
    int yw = pb->task == KP_TASK_MULTILABEL ? pb->n_out : 1;
    for (int64_t i = 0; i < n; i++) {
        if (pb->task == KP_TASK_MULTICLASS)
            m->prior[(int)y[i]] += 1.0f / (float)n;
        else
            for (int j = 0; j < yw; j++)
                m->prior[j] += y[i * yw + j] / (float)n;
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t v = 0; v < opts->n_valid; v++)
            fake_overlaps += rows[i] == opts->valid_rows[v];
    fake_fits++;
    *model = m;
    return 0;
}

static int fake_predict(const void *model, const kp_images *X, const int64_t *rows, int64_t n,
                        int d4, float *out, int threads, char *err, size_t errlen)
{
    (void)threads, (void)err, (void)errlen;
    const fake *m = model;
    size_t per = (size_t)X->height * X->width;
    assert_int_equal(d4, 0);
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < m->n_out; j++) {
            const uint8_t *px = (const uint8_t *)X->data + (size_t)rows[i] * per * X->channels;
            double s = 0;
            int one = m->n_out == 1 || X->channels != m->n_out;
            for (size_t p = 0; p < per * X->channels; p++)
                if (one || (int)(p % X->channels) == j)
                    s += px[p];
            out[i * m->n_out + j] = one && m->n_out > 1
                                        ? m->prior[j]
                                        : (float)(s / (one ? per * X->channels : per) / 255);
        }
    return 0;
}

static int fake_save(const void *model, kp_stw *w, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    const fake *m = model;
    int64_t s[1] = {m->n_out};
    return kp_stw_add(w, "prior", KP_F32, 1, s, m->prior);
}

static const kp_keyspec no_params[] = {{NULL, 0, NULL, NULL, 0, 0, NULL}};

static const kp_model_ops fake_ops = {
    .name = "fake_images", .doc = "test", .params = no_params, .tasks = 0xf,
    .save = fake_save, .free = free, .fit_images = fake_fit, .predict_images = fake_predict,
};

/* The train stage whose k-fold run_kfold runs with the fake model in its
 * place (cnn passes the config check: it fits images). */
static const char *const lr_stage = "  lr: {type: train, needs: [imgs, folds], model: cnn}\n";

/* Runs every part and the merge of stage lr's k-fold with `model` on the
 * dataset of stage imgs and the folds of stage folds, as train.c does. */
static int run_kfold(const kp_config *cfg, const kp_model_ops *model, FILE *log, char *err,
                     size_t errlen)
{
    kp_dataset *d = open_dataset(cfg, "imgs");
    kp_folds *f = NULL;
    char *fpath = fx_path(cfg, "folds", "folds.safetensors");
    assert_int_equal(kp_folds_open(fpath, &f, err, errlen), 0);
    const kp_stage *st = fx_stage(cfg, "lr");
    free(kp_test_write(st->dir, ".keep", ""));
    kp_kfold kf = {
        .stage = st, .model = model, .pb = d->pb, .X_train = {d->X_train, d->n_train, 0},
        .X_test = {d->X_test, d->n_test, 0}, .images_train = &d->images_train,
        .images_test = &d->images_test, .y = d->y, .folds = f, .seed = 5, .threads = 2,
        .log = log,
    };
    int rc = kp_kfold_metric(cfg, &kf.pb, &kf.metric, &kf.mopts, err, errlen);
    for (int p = 0; rc == 0 && p < f->k * f->repeats; p++)
        rc = kp_kfold_part(&kf, p, err, errlen);
    if (rc == 0)
        rc = kp_kfold_merge(&kf, kp_st_meta(d->st, "classes"), err, errlen);
    free(fpath);
    kp_folds_close(f);
    kp_dataset_close(d);
    return rc;
}

static void test_kfold_fits_an_image_model_on_fold_rows_in_place(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), err[KP_ERRLEN] = "";
    cats_and_dogs(dir);
    kp_config *cfg = config(dir, "binary", "accuracy", "", lr_stage);
    fx_run_ok(cfg, "imgs");
    fx_run_ok(cfg, "folds");
    fake_fits = fake_overlaps = 0;
    int rc = run_kfold(cfg, &fake_ops, NULL, err, sizeof err);
    if (rc)
        print_error("%s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(fake_fits, 3);
    assert_int_equal(fake_overlaps, 0);
    kp_preds *p = fx_preds(cfg, "lr");
    for (int i = 0; i < 6; i++) {   /* the mean sample of image i: base + 23.5 */
        double base = i % 2 ? 150 + i : 10 + i;
        assert_true(fabsf(p->oof[i] - (float)((base + 23.5) / 255)) < 1e-6f);
    }
    assert_true(p->oof_score == 1.0 && !p->thresholds);
    assert_true(fabsf(p->test[0] - (float)((160 + 23.5) / 255)) < 1e-6f);
    kp_preds_close(p);
    kp_config_free(cfg);
    free(dir);
}

static void test_kfold_refuses_a_tabular_model_on_images_at_run_time(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), err[KP_ERRLEN] = "";
    cats_and_dogs(dir);
    kp_config *cfg = config(dir, "binary", "accuracy", "", lr_stage);
    fx_run_ok(cfg, "imgs");
    fx_run_ok(cfg, "folds");
    kp_model_ops tabular = fake_ops;
    tabular.name = "tabular";
    tabular.fit_images = NULL;
    tabular.predict_images = NULL;
    assert_int_equal(run_kfold(cfg, &tabular, NULL, err, sizeof err), KP_ERR_CONFIG);
    assert_string_equal(err, "stage 'lr': model 'tabular' fits a feature matrix but the dataset "
                             "holds images: use an image model such as cnn");
    kp_config_free(cfg);
    free(dir);
}

static void test_train_config_matches_the_model_to_the_dataset_kind(void **state)
{
    (void)state;
    static const struct { const char *stages, *want; } cases[] = {
        {"  lr: {type: train, needs: [imgs, folds], model: logistic}\n",
         "kp.yaml:14:50: stages.lr.model: model 'logistic' fits a feature matrix, but dataset "
         "stage 'imgs' (type images) holds images: use an image model (cnn)"},
        {"  prep: {type: preprocess}\n"
         "  f2: {type: folds, needs: [prep]}\n"
         "  net: {type: train, needs: [prep, f2], model: cnn}\n",
         "kp.yaml:16:48: stages.net.model: model 'cnn' fits images, but stage 'net' has a feature "
         "matrix to fit on (use a dataset stage of type images)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *dir = kp_test_tmpdir(), err[KP_ERRLEN] = "", yaml[4096];
        kp_config *cfg = NULL;
        snprintf(yaml, sizeof yaml, yaml_fmt, "binary", "auc", "", cases[i].stages);
        assert_int_equal(fx_load(dir, yaml, &cfg, err, sizeof err), KP_ERR_CONFIG);
        if (!strstr(err, cases[i].want))
            fail_msg("case %zu: got '%s'", i, err);
        free(dir);
    }
}

/* Nine 2 x 2 RGB train images: channel j is 100 when the image has tag j, else 40. */
static void tagged_images(const char *dir)
{
    static const char *const tags[] = {"clear haze", "road", "clear", "haze road", "clear road",
                                       "haze", "clear haze road", "road", "clear"};
    static const char *const names[] = {"clear", "haze", "road"};
    char csv[1024] = "id,label\n", *tr, *te, name[32];
    image_dirs(dir, &tr, &te);
    for (int i = 0; i < 9; i++) {
        int v[3];
        for (int j = 0; j < 3; j++)
            v[j] = strstr(tags[i], names[j]) ? 100 + i : 40 + i;
        snprintf(name, sizeof name, "i%d.png", i);
        write_flat_rgb(tr, name, v);
        snprintf(csv + strlen(csv), sizeof csv - strlen(csv), "i%d,%s\n", i, tags[i]);
    }
    write_flat_rgb(te, "t.png", (int[]){100, 40, 100});
    free(kp_test_write(dir, "train.csv", csv));
    free(kp_test_write(dir, "test.csv", "id\nt\n"));
    free(tr);
    free(te);
}

static void test_kfold_merge_writes_multilabel_thresholds_for_fbeta_samples(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), err[KP_ERRLEN] = "", *text = NULL;
    size_t len = 0;
    tagged_images(dir);
    kp_config *cfg = config(dir, "multilabel", "fbeta_samples", "", lr_stage);
    fx_run_ok(cfg, "imgs");
    fx_run_ok(cfg, "folds");
    FILE *log = open_memstream(&text, &len);
    int rc = run_kfold(cfg, &fake_ops, log, err, sizeof err);
    fclose(log);
    if (rc)
        print_error("%s\n", err);
    assert_int_equal(rc, 0);
    kp_preds *p = fx_preds(cfg, "lr");
    /* predictions: 100..108 / 255 (0.39 .. 0.42) with the tag, 40..48 / 255 without:
     * nothing passes 0.5, every threshold found separates them */
    assert_true(p->oof_score == 0);
    assert_non_null(p->thresholds);
    for (int j = 0; j < 3; j++)
        assert_true(p->thresholds[j] >= 48 / 255.0f && p->thresholds[j] < 100 / 255.0f);
    assert_string_equal(kp_st_meta(p->st, "oof_score_thresholds"), "1");
    assert_non_null(strstr(text, "thresholds: oof fbeta_samples 0.0000 at threshold 0.5, "
                                 "1.0000 with per-label thresholds ["));
    kp_preds_close(p);
    kp_config_free(cfg);
    free(text);
    free(dir);
}

static void test_stack_blend_writes_multilabel_thresholds_too(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), err[KP_ERRLEN] = "", stages[512];
    tagged_images(dir);
    snprintf(stages, sizeof stages, "%s  blend: {type: stack, needs: [imgs, folds, lr], "
             "method: mean}\n", lr_stage);
    kp_config *cfg = config(dir, "multilabel", "fbeta_samples", "", stages);
    fx_run_ok(cfg, "imgs");
    fx_run_ok(cfg, "folds");
    int rc = run_kfold(cfg, &fake_ops, NULL, err, sizeof err);
    if (rc)
        print_error("%s\n", err);
    assert_int_equal(rc, 0);
    fx_run_ok(cfg, "blend");
    kp_preds *lr = fx_preds(cfg, "lr"), *p = fx_preds(cfg, "blend");
    assert_non_null(p->thresholds);
    for (int j = 0; j < 3; j++)   /* the mean of one input is that input */
        assert_true(p->thresholds[j] == lr->thresholds[j]);
    assert_string_equal(kp_st_meta(p->st, "oof_score_thresholds"), "1");
    kp_preds_close(lr);
    kp_preds_close(p);
    kp_config_free(cfg);
    free(dir);
}

/* ---- model.c's image wrappers ---- */

static void test_model_fit_images_checks_rows_and_held_out_targets(void **state)
{
    (void)state;
    static const uint8_t px[3 * 4] = {0};
    static const float mean[1] = {0}, sd[1] = {1}, y[2] = {0, 1}, yv[1] = {2};
    kp_images X = {px, 3, 2, 2, 1, 8, mean, sd};
    kp_problem pb = { .task = KP_TASK_BINARY, .n_out = 1 };
    kp_model *m = NULL;
    char err[KP_ERRLEN] = "";
    int64_t rows[2] = {0, 3}, good[2] = {0, 1}, valid[1] = {2};
    assert_int_equal(kp_model_fit_images(&fake_ops, NULL, &pb, &X, rows, 2, y, NULL, &m, err,
                                         sizeof err), KP_ERR_ARG);
    assert_string_equal(err, "fake_images: rows[1] = 3 is not an image index in [0, 3)");
    kp_fit_opts o = {.threads = 1, .y_valid = yv, .valid_rows = valid, .n_valid = 1};
    assert_int_equal(kp_model_fit_images(&fake_ops, NULL, &pb, &X, good, 2, y, &o, &m, err,
                                         sizeof err), KP_ERR_ARG);
    assert_string_equal(err, "fake_images: held-out rows: y[0] = 2 is not 0 or 1");
    assert_null(m);
    kp_model_ops tabular = fake_ops;
    tabular.fit_images = NULL;
    assert_int_equal(kp_model_fit_images(&tabular, NULL, &pb, &X, good, 2, y, NULL, &m, err,
                                         sizeof err), KP_ERR_ARG);
    assert_non_null(strstr(err, "this model takes a feature matrix, not images"));
}

static void test_model_fit_refuses_an_image_model_on_a_matrix(void **state)
{
    (void)state;
    static const float x[2] = {1, 2}, y[2] = {0, 1};
    kp_matrix X = {x, 2, 1};
    kp_problem pb = { .task = KP_TASK_BINARY, .n_out = 1 };
    kp_model *m = NULL;
    char err[KP_ERRLEN] = "";
    assert_int_equal(kp_model_fit(&fake_ops, NULL, &pb, &X, y, NULL, &m, err, sizeof err),
                     KP_ERR_ARG);
    assert_string_equal(err, "fake_images: this model takes images, not a feature matrix (use it "
                             "on an images dataset)");
    assert_null(m);
}

KP_TEST_GROUP(images_stage)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_images_stage_writes_images_targets_ids_and_channel_stats),
        cmocka_unit_test(test_images_stage_stacks_16_bit_bands_and_resizes),
        cmocka_unit_test(test_images_stage_encodes_multilabel_tags),
        cmocka_unit_test(test_images_stage_reads_test_ids_from_the_sample_submission),
        cmocka_unit_test(test_images_stage_names_the_missing_image_and_its_id),
        cmocka_unit_test(test_images_stage_names_a_corrupt_png),
        cmocka_unit_test(test_images_stage_lists_the_csvs_then_every_image_as_inputs),
        cmocka_unit_test(test_images_stage_config_errors_name_the_key),
        cmocka_unit_test(test_images_stage_needs_a_sample_submission_for_its_test_ids),
        cmocka_unit_test(test_image_dataset_open_checks_every_image_field),
        cmocka_unit_test(test_kfold_fits_an_image_model_on_fold_rows_in_place),
        cmocka_unit_test(test_kfold_refuses_a_tabular_model_on_images_at_run_time),
        cmocka_unit_test(test_train_config_matches_the_model_to_the_dataset_kind),
        cmocka_unit_test(test_kfold_merge_writes_multilabel_thresholds_for_fbeta_samples),
        cmocka_unit_test(test_stack_blend_writes_multilabel_thresholds_too),
        cmocka_unit_test(test_model_fit_images_checks_rows_and_held_out_targets),
        cmocka_unit_test(test_model_fit_refuses_an_image_model_on_a_matrix),
    };
    return KP_RUN(images_stage, t);
}

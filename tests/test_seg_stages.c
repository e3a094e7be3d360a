/* test_seg_stages.c - the segmentation stages: masks in the images stage
 * (stages/images.c, stages/images_masks.c), the post-processing searched on
 * OOF maps (stages/postproc.c) and segmentation submissions (stages/submit.c,
 * stages/submit_seg.c, stages/submit_masks.c). */
#include "stage_fixture.h"

#include <math.h>
#include <zlib.h>
#include "../lib/image.h"
#include "../lib/rle.h"
#include "../models/metric.h"
#include "../stages/postproc.h"

/* ---- fixtures ---- */

/* Writes DIR/NAME as a w x h 8-bit PNG of c channels holding px (row-major, HWC). */
static void write_png(const char *dir, const char *name, int w, int h, int c, const uint8_t *px)
{
    kp_image img = {w, h, c, 8, (void *)px};
    char *path = kp_test_join(dir, name), err[KP_ERRLEN] = "";
    free(kp_test_write(dir, ".keep", ""));
    int rc = kp_image_write_png(path, &img, err, sizeof err);
    if (rc)
        print_error("%s\n", err);
    assert_int_equal(rc, 0);
    free(path);
}

/* Writes DIR/NAME as a w x h RGB PNG (every sample 100): an image whose size is all that counts. */
static void write_rgb(const char *dir, const char *name, int w, int h)
{
    uint8_t *px = malloc((size_t)w * h * 3);
    memset(px, 100, (size_t)w * h * 3);
    write_png(dir, name, w, h, 3, px);
    free(px);
}

static const char *const seg_fmt =
    "competition:\n"
    "  train: train.csv\n"
    "  test: test.csv\n"
    "  sample_submission: sample.csv\n"
    "%s"
    "  task: segmentation\n"
    "  metric: dice\n"
    "  folds: {k: 2, kind: plain, seed: 1}\n"
    "stages:\n"
    "  imgs: {type: images, train_dir: img/train, test_dir: img/test%s}\n"
    "  folds: {type: folds, needs: [imgs]}\n"
    "  net: {type: train, needs: [imgs, folds], model: unet}\n"
    "  sub: {type: submit, needs: [imgs, net], output: out/sub.csv%s}\n";

/* The competition's id line, and its id and target lines. */
#define ID "  id: id\n"
#define ID_PIXELS ID "  target: pixels\n"
#define ID_RLE ID "  target: rle_mask\n"

/* Loads the segmentation config: comp holds the competition's id and target
 * lines (ID, ID_PIXELS, ...); imgs and sub are more keys of those stages (", k: v"). */
static kp_config *seg_config(const char *dir, const char *comp, const char *imgs,
                             const char *sub)
{
    char yaml[4096];
    snprintf(yaml, sizeof yaml, seg_fmt, comp, imgs, sub);
    return fx_config(dir, yaml);
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

/* Asserts the n floats of got are the n bytes of want, naming the first difference. */
static void expect_mask(const float *got, const uint8_t *want, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (got[i] != (float)want[i])
            fail_msg("%s: pixel %zu is %g, want %d", what, i, (double)got[i], want[i]);
}

/* ---- images stage: PNG masks ---- */

/* Train images a (4 x 4) and b (6 x 2) with masks a_mask.png and b_mask.png
 * (1 channel, 0 or 255), test images t0 (4 x 4) and t1 (3 x 5). */
static void png_masks_competition(const char *dir)
{
    static const uint8_t ma[16] = {
        0,   0,   0,   255,
        0,   255, 0,   255,
        0,   0,   0,   0,
        255, 255, 0,   255,
    };
    static const uint8_t mb[12] = {
        255, 255, 0, 0, 0,   0,
        0,   0,   0, 0, 255, 255,
    };
    char *tr = kp_test_join(dir, "img/train"), *te = kp_test_join(dir, "img/test");
    free(kp_test_write(dir, "train.csv", "id\na\nb\n"));
    free(kp_test_write(dir, "test.csv", "id\nt0\nt1\n"));
    write_rgb(tr, "a.png", 4, 4);
    write_rgb(tr, "b.png", 6, 2);
    write_png(tr, "a_mask.png", 4, 4, 1, ma);
    write_png(tr, "b_mask.png", 6, 2, 1, mb);
    write_rgb(te, "t0.png", 4, 4);
    write_rgb(te, "t1.png", 3, 5);
    free(tr);
    free(te);
}

static void test_images_stage_png_masks_are_resized_nearest_to_the_dataset_size(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir();
    png_masks_competition(dir);
    kp_config *cfg = seg_config(dir, ID, ", masks: \"{id}_mask.png\", size: 2x2", "");
    fx_run_ok(cfg, "imgs");
    kp_dataset *d = open_dataset(cfg, "imgs");
    assert_int_equal(d->pb.task, KP_TASK_SEGMENTATION);
    assert_true(d->pb.mask_c == 1 && d->pb.mask_h == 2 && d->pb.mask_w == 2);
    assert_int_equal(d->pb.n_out, 4);
    assert_string_equal(kp_st_meta(d->st, "mask_size"), "1x2x2");
    assert_int_equal(d->n_classes, 1);
    assert_string_equal(d->classes[0], "mask");
    assert_null(kp_st_meta(d->st, "rle_order"));
    /* nearest with half-pixel centres: 4 -> 2 takes source 1 and 3, 6 -> 2 takes
     * 1 and 4, 2 -> 2 keeps 0 and 1 */
    static const uint8_t want[8] = {1, 1, 1, 1,   1, 0, 0, 1};
    expect_mask(d->y, want, 8, "y");
    static const int32_t train_sizes[4] = {4, 4, 6, 2}, test_sizes[4] = {4, 4, 3, 5};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(d->train_sizes[i], train_sizes[i]);
        assert_int_equal(d->test_sizes[i], test_sizes[i]);
    }
    assert_true(d->images_train.width == 2 && d->images_train.height == 2);
    kp_dataset_close(d);
    kp_config_free(cfg);
    free(dir);
}

static void test_images_stage_png_masks_keep_their_size_without_resize(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir();
    png_masks_competition(dir);
    kp_config *cfg = seg_config(dir, ID, ", masks: \"{id}_mask.png\", size: 4x4", "");
    fx_run_ok(cfg, "imgs");
    kp_dataset *d = open_dataset(cfg, "imgs");
    assert_string_equal(kp_st_meta(d->st, "mask_size"), "1x4x4");
    static const uint8_t a[16] = {0, 0, 0, 1, 0, 1, 0, 1, 0, 0, 0, 0, 1, 1, 0, 1};
    expect_mask(d->y, a, 16, "mask of a");
    /* b: 6 x 2 -> 4 x 4: x takes floor((x + 0.5) * 1.5) = 0, 2, 3, 5; y takes 0, 0, 1, 1 */
    static const uint8_t b[16] = {1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1};
    expect_mask(d->y + 16, b, 16, "mask of b");
    kp_dataset_close(d);
    kp_config_free(cfg);
    free(dir);
}

/* Writes a train image and a gray label mask of 3 x 2 with pixel (2, 1) set to last. */
static void label_competition(const char *dir, uint8_t last)
{
    uint8_t m[6] = {0, 1, 2, 2, 0, last};
    char *tr = kp_test_join(dir, "img/train"), *te = kp_test_join(dir, "img/test");
    free(kp_test_write(dir, "train.csv", "id\na\n"));
    free(kp_test_write(dir, "test.csv", "id\nt0\n"));
    write_rgb(tr, "a.png", 3, 2);
    write_png(tr, "a_mask.png", 3, 2, 1, m);
    write_rgb(te, "t0.png", 3, 2);
    free(tr);
    free(te);
}

static void test_images_stage_label_png_gives_classes_with_mask_classes(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir();
    label_competition(dir, 1);
    kp_config *cfg = seg_config(dir, ID, ", masks: \"{id}_mask.png\", mask_classes: 3", "");
    fx_run_ok(cfg, "imgs");
    kp_dataset *d = open_dataset(cfg, "imgs");
    assert_string_equal(kp_st_meta(d->st, "mask_size"), "3x2x3");
    assert_true(d->pb.mask_c == 3 && d->pb.n_out == 18);
    assert_int_equal(d->n_classes, 3);
    assert_string_equal(d->classes[2], "2");
    static const uint8_t want[6] = {0, 1, 2, 2, 0, 1};
    expect_mask(d->y, want, 6, "labels");
    kp_dataset_close(d);
    kp_config_free(cfg);
    free(dir);
}

static void test_images_stage_label_at_or_above_mask_classes_names_file_and_pixel(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), err[KP_ERRLEN] = "", want[8192];
    label_competition(dir, 3);
    kp_config *cfg = seg_config(dir, ID, ", masks: \"{id}_mask.png\", mask_classes: 3", "");
    assert_int_equal(fx_run(cfg, "imgs", -1, NULL, err, sizeof err), KP_ERR_FORMAT);
    snprintf(want, sizeof want, "%s/img/train/a_mask.png: pixel (2, 1) is 3; the masks have 3 "
             "classes (images stage mask_classes)", dir);
    assert_string_equal(err, want);
    char *out = fx_path(cfg, "imgs", "dataset.safetensors");
    assert_int_equal(access(out, F_OK), -1);   /* nothing written */
    free(out);
    kp_config_free(cfg);
    free(dir);
}

/* ---- images stage: RLE strings ---- */

/* Train images a, b (3 x 2) whose masks are train.csv's pixels column, test t0. */
static void rle_competition(const char *dir, const char *rle_a, const char *rle_b)
{
    char csv[512];
    char *tr = kp_test_join(dir, "img/train"), *te = kp_test_join(dir, "img/test");
    snprintf(csv, sizeof csv, "id,pixels\na,%s\nb,%s\n", rle_a, rle_b);
    free(kp_test_write(dir, "train.csv", csv));
    free(kp_test_write(dir, "test.csv", "id\nt0\n"));
    write_rgb(tr, "a.png", 3, 2);
    write_rgb(tr, "b.png", 3, 2);
    write_rgb(te, "t0.png", 5, 4);
    free(tr);
    free(te);
}

static void test_images_stage_rle_column_decodes_in_the_configured_pixel_order(void **state)
{
    (void)state;
    /* "1 2 5 1" on 3 x 2: column-major numbers (x, y) as x * 2 + y + 1, so pixels
     * 1, 2 are column 0 and 5 is (2, 0); row-major numbers them y * 3 + x + 1,
     * so 1, 2 are (0, 0), (1, 0) and 5 is (1, 1) */
    static const struct { const char *order; uint8_t want[6]; } cases[] = {
        {"column", {1, 0, 1,   1, 0, 0}},
        {"row", {1, 1, 0,   0, 1, 0}},
    };
    /* b: a mask encoded here in the case's order must come back unchanged */
    static const uint8_t b[6] = {0, 1, 1,   1, 0, 1};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *dir = kp_test_tmpdir(), keys[128];
        kp_rle_order order;
        assert_int_equal(kp_rle_order_parse(cases[i].order, &order), 0);
        kp_buf enc;
        kp_buf_init(&enc, 0);
        assert_int_equal(kp_rle_encode(b, 3, 2, order, &enc), 0);
        rle_competition(dir, "1 2 5 1", kp_buf_str(&enc));
        snprintf(keys, sizeof keys, ", rle_order: %s", cases[i].order);
        kp_config *cfg = seg_config(dir, ID_PIXELS, keys, "");
        fx_run_ok(cfg, "imgs");
        kp_dataset *d = open_dataset(cfg, "imgs");
        assert_string_equal(kp_st_meta(d->st, "mask_size"), "1x2x3");
        assert_string_equal(kp_st_meta(d->st, "rle_order"), cases[i].order);
        expect_mask(d->y, cases[i].want, 6, cases[i].order);
        expect_mask(d->y + 6, b, 6, kp_buf_str(&enc));
        assert_true(d->train_sizes[0] == 3 && d->train_sizes[1] == 2);
        assert_true(d->test_sizes[0] == 5 && d->test_sizes[1] == 4);
        kp_dataset_close(d);
        kp_config_free(cfg);
        kp_buf_free(&enc);
        free(dir);
    }
}

static void test_images_stage_bad_rle_names_file_line_column_and_id(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), err[KP_ERRLEN] = "", want[8192];
    rle_competition(dir, "1 2", "3 1 2");
    kp_config *cfg = seg_config(dir, ID_PIXELS, "", "");
    assert_int_equal(fx_run(cfg, "imgs", -1, NULL, err, sizeof err), KP_ERR_FORMAT);
    snprintf(want, sizeof want, "%s/train.csv:3:2: id 'b' (%s/img/train/b.png image 3x2, "
             "column-major): RLE column 5: start 2 has no run length (the count of numbers "
             "is odd)", dir, dir);
    assert_string_equal(err, want);
    kp_config_free(cfg);
    free(dir);
}

/* ---- config ---- */

static void test_config_segmentation_needs_a_target_or_mask_files(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), err[KP_ERRLEN] = "", yaml[4096];
    kp_config *cfg = NULL;
    snprintf(yaml, sizeof yaml, seg_fmt, ID, "", "");
    assert_int_equal(fx_load(dir, yaml, &cfg, err, sizeof err), KP_ERR_CONFIG);
    assert_null(cfg);
    assert_non_null(strstr(err, "kp.yaml:10:3: stages.imgs: segmentation masks come from PNG "
                                "files (masks: \"{id}_mask.png\") or one RLE column "
                                "(competition.target); competition.target names 0"));
    free(dir);
}

static void test_config_mask_keys_on_a_non_segmentation_task_are_an_error(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), err[KP_ERRLEN] = "";
    kp_config *cfg = NULL;
    const char *yaml =
        "competition:\n  train: train.csv\n  test: test.csv\n  id: id\n  target: label\n"
        "  task: multiclass\n  metric: accuracy\n"
        "stages:\n  imgs: {type: images, train_dir: a, test_dir: b, masks: \"{id}_m.png\"}\n";
    assert_int_equal(fx_load(dir, yaml, &cfg, err, sizeof err), KP_ERR_CONFIG);
    assert_null(cfg);
    assert_non_null(strstr(err, "stages.imgs.masks: masks are for task segmentation, the "
                                "competition's task is multiclass"));
    free(dir);
}

/* ---- post-processing ---- */

static void test_postproc_apply_thresholds_then_drops_small_components(void **state)
{
    (void)state;
    /* 6 x 4: a 2 x 2 blob of 0.8, a 0.6 over a 0.45 (one pixel at 0.5, two at
     * 0.4), a lone 0.5 (not above 0.5) and a lone 0.1 */
    static const float map[24] = {
        0.8f, 0.8f, 0,    0,    0,    0.6f,
        0.8f, 0.8f, 0,    0,    0,    0.45f,
        0,    0,    0,    0.5f, 0,    0,
        0.1f, 0,    0,    0,    0,    0,
    };
    static const struct { float t; int min_size; uint8_t want[24]; } cases[] = {
        {0.5f, 0, {1, 1, 0, 0, 0, 1,   1, 1, 0, 0, 0, 0,   0, 0, 0, 0, 0, 0,   0, 0, 0, 0, 0, 0}},
        {0.5f, 2, {1, 1, 0, 0, 0, 0,   1, 1, 0, 0, 0, 0,   0, 0, 0, 0, 0, 0,   0, 0, 0, 0, 0, 0}},
        {0.4f, 2, {1, 1, 0, 0, 0, 1,   1, 1, 0, 0, 0, 1,   0, 0, 0, 0, 0, 0,   0, 0, 0, 0, 0, 0}},
        {0.4f, 5, {0}},
        {0.05f, 0, {1, 1, 0, 0, 0, 1,   1, 1, 0, 0, 0, 1,   0, 0, 0, 1, 0, 0,   1, 0, 0, 0, 0, 0}},
    };
    kp_problem pb = {.task = KP_TASK_SEGMENTATION, .n_out = 24, .mask_c = 1, .mask_h = 4,
                     .mask_w = 6};
    void *work = aligned_alloc(16, (kp_postproc_work_size(6, 4) + 15) & ~(size_t)15);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t mask[24];
        memset(mask, 7, sizeof mask);
        kp_postproc pp = {cases[i].t, cases[i].min_size};
        kp_postproc_apply(&pp, &pb, map, mask, work);
        for (int p = 0; p < 24; p++)
            if (mask[p] != cases[i].want[p])
                fail_msg("case %zu: pixel %d is %d, want %d", i, p, mask[p], cases[i].want[p]);
    }
    free(work);
}

static void test_postproc_apply_takes_the_argmax_of_classes_and_filters_each(void **state)
{
    (void)state;
    /* 4 x 2, three channels: class 1 wins a 3-pixel component, class 2 two
     * diagonal pixels, the background the rest; a tie keeps the lower class */
    static const float map[3 * 8] = {
        0.1f, 0.1f, 0.1f, 0.9f,   0.2f, 0.3f, 0.4f, 0.4f,   /* class 0 */
        0.8f, 0.8f, 0.2f, 0.05f,  0.7f, 0.3f, 0.3f, 0.4f,   /* class 1 */
        0.1f, 0.1f, 0.7f, 0.05f,  0.1f, 0.4f, 0.3f, 0.2f,   /* class 2 */
    };
    static const uint8_t plain[8] = {1, 1, 2, 0, 1, 2, 0, 0};
    static const uint8_t filtered[8] = {1, 1, 0, 0, 1, 0, 0, 0};
    kp_problem pb = {.task = KP_TASK_SEGMENTATION, .n_out = 24, .mask_c = 3, .mask_h = 2,
                     .mask_w = 4};
    void *work = aligned_alloc(16, (kp_postproc_work_size(4, 2) + 15) & ~(size_t)15);
    uint8_t mask[8];
    kp_postproc pp = {0.5f, 0};
    kp_postproc_apply(&pp, &pb, map, mask, work);
    assert_memory_equal(mask, plain, 8);
    pp.min_size = 3;   /* class 2's two pixels are 8-connected diagonally: 2 < 3 */
    kp_postproc_apply(&pp, &pb, map, mask, work);
    assert_memory_equal(mask, filtered, 8);
    free(work);
}

enum { SW = 20, SH = 20, SN = 6 };

/* Synthetic OOF maps: image i's true mask is a 6 x 6 blob at (2 + i, 3 + i % 4);
 * its OOF map is 0.7 on the blob's inner 4 x 4, 0.4 on the blob's border, 0.12
 * on the ring just outside it (not in the mask), 0.9 on three lone specks far
 * from the blob and 0.02 elsewhere.  Threshold 0.5 misses the border; 0.1 takes
 * the ring; 0.15 takes the blob exactly, and a minimum size drops the specks. */
static void synthetic_oof(float *y, float *oof)
{
    for (int i = 0; i < SN; i++) {
        int bx = 2 + i, by = 3 + i % 4;
        float *m = oof + (size_t)i * SW * SH, *t = y + (size_t)i * SW * SH;
        for (int p = 0; p < SW * SH; p++) {
            int x = p % SW - bx, yy = p / SW - by;
            int in = x >= 0 && x < 6 && yy >= 0 && yy < 6;
            int inner = x >= 1 && x < 5 && yy >= 1 && yy < 5;
            int ring = x >= -1 && x < 7 && yy >= -1 && yy < 7;
            t[p] = (float)in;
            m[p] = inner ? 0.7f : in ? 0.4f : ring ? 0.12f : 0.02f;
        }
        m[19 * SW + 0] = m[0 * SW + 19] = m[19 * SW + 17] = 0.9f;   /* specks */
    }
}

static void test_postproc_search_beats_the_default_on_synthetic_oof(void **state)
{
    (void)state;
    float *y = malloc(sizeof(float) * SN * SW * SH), *oof = malloc(sizeof(float) * SN * SW * SH);
    synthetic_oof(y, oof);
    kp_problem pb = {.task = KP_TASK_SEGMENTATION, .n_out = SW * SH, .mask_c = 1, .mask_h = SH,
                     .mask_w = SW};
    const kp_metric_ops *dice = kp_metric_find("dice");
    assert_non_null(dice);
    kp_metric_opts o = kp_metric_defaults();
    char err[KP_ERRLEN] = "", *text = NULL;
    size_t len = 0;
    double base = 0, score = 0;
    assert_int_equal(dice->score(&pb, y, oof, SN, &o, &base, err, sizeof err), 0);
    /* at 0.5: 16 of 36 true pixels and 3 specks: 2 * 16 / (36 + 19) */
    assert_true(fabs(base - 32.0 / 55) < 1e-12);
    FILE *log = open_memstream(&text, &len);
    kp_postproc pp;
    int rc = kp_postproc_search(dice, &o, &pb, y, oof, SN, 2, log, &pp, &score, err, sizeof err);
    fclose(log);
    if (rc)
        print_error("%s\n", err);
    assert_int_equal(rc, 0);
    assert_true(fabsf(pp.threshold - 0.15f) < 1e-6f);
    assert_int_equal(pp.min_size, 2);   /* floor(0.0005 * 400) = 0 and 0.4 are skipped */
    assert_true(score == 1.0 && score > base);
    assert_string_equal(text, "postproc: threshold 0.15, min component 2 px: OOF dice 1.00000 "
                              "(threshold 0.5, none: 0.58182)\n");
    free(text);
    free(y);
    free(oof);
}

static void test_postproc_search_result_does_not_depend_on_threads(void **state)
{
    (void)state;
    float *y = malloc(sizeof(float) * SN * SW * SH), *oof = malloc(sizeof(float) * SN * SW * SH);
    synthetic_oof(y, oof);
    for (int i = 0; i < SN * SW * SH; i += 7)   /* noise so scores differ in the last bits */
        oof[i] = fminf(1.0f, oof[i] + 0.03f * (float)(i % 5));
    kp_problem pb = {.task = KP_TASK_SEGMENTATION, .n_out = SW * SH, .mask_c = 1, .mask_h = SH,
                     .mask_w = SW};
    kp_metric_opts o = kp_metric_defaults();
    char err[KP_ERRLEN] = "", json[2][128], num[2][64];
    for (int k = 0; k < 2; k++)
        assert_int_equal(kp_postproc_for_preds(kp_metric_find("iou"), &o, &pb, y, oof, SN,
                                               k ? 3 : 1, NULL, json[k], num[k], err,
                                               sizeof err), 0);
    assert_string_equal(json[0], json[1]);
    assert_string_equal(num[0], num[1]);
    kp_postproc pp;
    assert_int_equal(kp_postproc_parse(json[0], &pp), 0);
    assert_true(pp.threshold > 0 && pp.threshold < 1);
    free(y);
    free(oof);
}

static void test_postproc_json_round_trips(void **state)
{
    (void)state;
    static const kp_postproc cases[] = {{0.5f, 0}, {0.15f, 2}, {0.1f + 0.05f * 13, 123456},
                                        {0, 0}, {1, 7}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[128];
        kp_postproc back = {-1, -1};
        kp_postproc_json(&cases[i], buf, sizeof buf);
        assert_int_equal(kp_postproc_parse(buf, &back), 0);
        if (back.threshold != cases[i].threshold || back.min_size != cases[i].min_size)
            fail_msg("case %zu: '%s' read back as %.9g, %d", i, buf, (double)back.threshold,
                     back.min_size);
    }
    char buf[128];
    kp_postproc_json(&cases[1], buf, sizeof buf);
    assert_string_equal(buf, "{\"threshold\": 0.150000006, \"min_size\": 2}");
}

static void test_postproc_parse_refuses_bad_text_and_leaves_the_output(void **state)
{
    (void)state;
    static const char *const cases[] = {
        NULL,
        "",
        "not json",
        "{}",
        "{\"threshold\": 0.5}",
        "{\"min_size\": 3}",
        "{\"threshold\": 1.5, \"min_size\": 0}",
        "{\"threshold\": -0.1, \"min_size\": 0}",
        "{\"threshold\": 0.5, \"min_size\": -1}",
        "{\"threshold\": 0.5, \"min_size\": 4294967296}",
        "{\"threshold\": \"0.5\", \"min_size\": 0}",
        "{\"threshold\": 0.5, \"min_size\": 0.5}",
        "{\"threshold\": 0.5, \"min_size\": 0, \"min_size\": 1}",
        "[0.5, 0]",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kp_postproc pp = {0.25f, 9};
        if (kp_postproc_parse(cases[i], &pp) != KP_ERR_FORMAT)
            fail_msg("case %zu: '%s' was accepted", i, cases[i] ? cases[i] : "(null)");
        assert_true(pp.threshold == 0.25f && pp.min_size == 9);
    }
}

/* ---- submit ---- */

enum { DW = 4, DH = 4, DHW = DW * DH };

/* A segmentation dataset and predictions written by hand. */
typedef struct seg_case {
    int mask_c;
    int n_test;
    const char *const *test_ids;
    const int32_t *test_sizes;     /* [n_test][2] */
    const float *test;             /* n_test maps of mask_c * DHW */
    const char *postproc;          /* the preds' metadata, or NULL */
    const char *rle_order;         /* the dataset's metadata, or NULL */
    int n_train;
    const int32_t *train_sizes;    /* [n_train][2] */
} seg_case;

/* Writes imgs' dataset: DH x DW gray images, empty masks, the case's sizes. */
static void seg_dataset(const kp_config *cfg, const seg_case *c)
{
    char err[KP_ERRLEN] = "", num[32], size[64], classes[256] = "[";
    uint8_t *px = calloc((size_t)(c->n_train + c->n_test) * DHW, 1);
    float *y = calloc((size_t)c->n_train * DHW, sizeof *y);
    kp_stw *w = kp_stw_create();
    int64_t s_tr[4] = {c->n_train, DH, DW, 1}, s_te[4] = {c->n_test, DH, DW, 1};
    int64_t sy[2] = {c->n_train, DHW}, ss_tr[2] = {c->n_train, 2}, ss_te[2] = {c->n_test, 2};
    assert_int_equal(kp_stw_add(w, "images_train", KP_U8, 4, s_tr, px), 0);
    assert_int_equal(kp_stw_add(w, "images_test", KP_U8, 4, s_te, px + c->n_train * DHW), 0);
    assert_int_equal(kp_stw_add(w, "y", KP_F32, 2, sy, y), 0);
    assert_int_equal(kp_stw_add(w, "train_sizes", KP_I32, 2, ss_tr, c->train_sizes), 0);
    assert_int_equal(kp_stw_add(w, "test_sizes", KP_I32, 2, ss_te, c->test_sizes), 0);
    fx_ids(w, "train_ids", c->n_train, NULL, "r");
    fx_ids(w, "test_ids", c->n_test, c->test_ids, "t");
    for (int k = 0; k < c->mask_c; k++)
        snprintf(classes + strlen(classes), sizeof classes - strlen(classes), "%s\"%d\"",
                 k ? "," : "", k);
    snprintf(classes + strlen(classes), sizeof classes - strlen(classes), "]");
    snprintf(num, sizeof num, "%d", c->mask_c * DHW);
    snprintf(size, sizeof size, "%dx%dx%d", c->mask_c, DH, DW);
    const char *meta[][2] = {
        {"kpipe.artifact", "dataset"}, {"task", "segmentation"}, {"n_out", num},
        {"mask_size", size}, {"classes", c->mask_c == 1 ? "[\"mask\"]" : classes},
        {"features", "[]"}, {"id_column", "id"}, {"target_columns", "[]"},
        {"image_size", "4x4"}, {"channel_mean", "[0]"}, {"channel_std", "[1]"},
        {"rle_order", c->rle_order},
    };
    for (size_t i = 0; i < sizeof meta / sizeof meta[0]; i++)
        if (meta[i][1])
            assert_int_equal(kp_stw_meta(w, meta[i][0], meta[i][1]), 0);
    char *path = fx_path(cfg, "imgs", "dataset.safetensors");
    int rc = kp_stw_write(w, path, err, sizeof err);
    if (rc)
        print_error("%s\n", err);
    assert_int_equal(rc, 0);
    free(path);
    kp_stw_free(w);
    free(px);
    free(y);
}

/* Writes net's predictions: zero OOF maps and the case's test maps. */
static void seg_preds(const kp_config *cfg, const seg_case *c, const char *classes)
{
    char err[KP_ERRLEN] = "";
    float *oof = calloc((size_t)c->n_train * c->mask_c * DHW, sizeof *oof);
    const char *extra[] = {"postproc", c->postproc, NULL};
    kp_preds_out o = {
        .pb = {KP_TASK_SEGMENTATION, c->mask_c * DHW, c->mask_c, DH, DW},
        .n_train = c->n_train, .n_test = c->n_test, .oof = oof, .test = c->test,
        .folds_hash = "00000000000000000000000000000000", .metric = "dice", .model = "unet",
        .stage = "net", .classes_json = classes, .extra_meta = c->postproc ? extra : NULL,
    };
    char *path = fx_path(cfg, "net", "preds.safetensors");
    int rc = kp_preds_write(path, &o, err, sizeof err);
    if (rc)
        print_error("%s\n", err);
    assert_int_equal(rc, 0);
    free(path);
    free(oof);
}

/* Loads the config with submit keys `sub`, writes the CSVs, dataset and predictions. */
static kp_config *seg_setup(const char *dir, const seg_case *c, const char *comp,
                            const char *train_csv, const char *sample, const char *sub)
{
    free(kp_test_write(dir, "train.csv", train_csv));
    free(kp_test_write(dir, "test.csv", "id\nt0\nt1\n"));
    free(kp_test_write(dir, "sample.csv", sample));
    kp_config *cfg = seg_config(dir, comp, "", sub);
    char classes[256] = "[";
    for (int k = 0; k < c->mask_c; k++)
        snprintf(classes + strlen(classes), sizeof classes - strlen(classes), "%s\"%d\"",
                 k ? "," : "", k);
    strcat(classes, "]");
    seg_dataset(cfg, c);
    seg_preds(cfg, c, c->mask_c == 1 ? "[\"mask\"]" : classes);
    return cfg;
}

/* Test maps at 4 x 4 for t0 (all 0.3: empty) and t1 (1 at (1, 1), 0.55 at (3, 2)). */
static const float two_maps[2 * DHW] = {
    0.3f, 0.3f, 0.3f, 0.3f,  0.3f, 0.3f, 0.3f, 0.3f,  0.3f, 0.3f, 0.3f, 0.3f,
    0.3f, 0.3f, 0.3f, 0.3f,
    0,    0,    0,    0,     0,    1,    0,    0,     0,    0,    0,    0.55f,
    0,    0,    0,    0,
};
static const char *const t01[] = {"t0", "t1"};
/* t0 keeps the data set's size; t1 was 8 x 4: bilinear doubles x, keeps y */
static const int32_t sizes_t01[4] = {4, 4, 8, 4};
static const int32_t train_3x2[4] = {3, 2, 3, 2};
static const char *const plain_train = "id,rle_mask\nr0,1 2 5 1\nr1,\n";

static void test_submit_seg_writes_rle_at_original_size_in_sample_order(void **state)
{
    (void)state;
    /* t1 at 8 x 4: source pixel (1, 1) covers x = 2, 3 of row 1 (0.75 there, 0.25
     * at x = 1, 4); (3, 2) at 0.55 becomes 0.55 at x = 7 and 0.41 at x = 6:
     * above 0.5, not above the predictions' threshold 0.6.  Column-major numbers
     * (x, y) as x * 4 + y + 1 (10, 14), row-major as y * 8 + x + 1 (11, 12). */
    static const struct { const char *pp, *keys, *want; } cases[] = {
        {"{\"threshold\": 0.6, \"min_size\": 0}", ", empty: \"-\"",
         "id,rle_mask\nt1,10 1 14 1\nt0,-\n"},
        {"{\"threshold\": 0.6, \"min_size\": 0}", ", rle_order: row",
         "id,rle_mask\nt1,11 2\nt0,\n"},
        {NULL, ", rle_order: row", "id,rle_mask\nt1,11 2 24 1\nt0,\n"},   /* default 0.5 */
        {"{\"threshold\": 0.2, \"min_size\": 0}", ", empty: EMPTY",
         "id,rle_mask\nt1,6 1 10 1 14 1 18 1 27 1 31 1\nt0,1 16\n"},
        /* min_size 2 at 4 x 4 is 4 at 8 x 4: t1's 2-pixel blob goes */
        {"{\"threshold\": 0.6, \"min_size\": 2}", ", rle_order: row, empty: \"-\"",
         "id,rle_mask\nt1,-\nt0,-\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *dir = kp_test_tmpdir(), err[KP_ERRLEN] = "";
        seg_case c = {1, 2, t01, sizes_t01, two_maps, cases[i].pp, NULL, 2, train_3x2};
        kp_config *cfg = seg_setup(dir, &c, ID_RLE, plain_train, "id,rle_mask\nt1,1 1\nt0,1 1\n",
                                   cases[i].keys);
        int rc = fx_run(cfg, "sub", -1, NULL, err, sizeof err);
        if (rc)
            fail_msg("case %zu: %s", i, err);
        char *out = kp_test_join(dir, "out/sub.csv"), *copy = fx_path(cfg, "sub",
                                                                      "submission.csv");
        char *got = kp_test_read(out), *again = kp_test_read(copy);
        assert_non_null(got);
        if (strcmp(got, cases[i].want) != 0)
            fail_msg("case %zu: got\n%s\nwant\n%s", i, got, cases[i].want);
        assert_string_equal(again, got);
        free(got);
        free(again);
        free(out);
        free(copy);
        kp_config_free(cfg);
        free(dir);
    }
}

/* Reads the gzip file at path (zlib) into a heap string. */
static char *gunzip_file(const char *path)
{
    gzFile f = gzopen(path, "rb");
    assert_non_null(f);
    size_t cap = 1 << 16, len = 0;
    char *b = malloc(cap);
    int n;
    while ((n = gzread(f, b + len, (unsigned)(cap - len - 1))) > 0) {
        len += (size_t)n;
        if (cap - len < 2)
            b = realloc(b, cap *= 2);
    }
    assert_true(n == 0);
    assert_int_equal(gzclose(f), Z_OK);
    b[len] = 0;
    return b;
}

static void test_submit_seg_gzip_output_decompresses_to_the_plain_copy(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir();
    seg_case c = {1, 2, t01, sizes_t01, two_maps, "{\"threshold\": 0.6, \"min_size\": 0}", NULL,
                  2, train_3x2};
    kp_config *cfg = seg_setup(dir, &c, ID_RLE, plain_train, "id,rle_mask\nt0,1 1\nt1,1 1\n",
                               ", gzip: true, empty: \"-\"");
    fx_run_ok(cfg, "sub");
    char *out = kp_test_join(dir, "out/sub.csv"), *copy = fx_path(cfg, "sub", "submission.csv");
    size_t len = 0;
    char *raw = fx_read(out, &len), *plain = kp_test_read(copy), *text = gunzip_file(out);
    assert_true(len > 2 && (uint8_t)raw[0] == 0x1f && (uint8_t)raw[1] == 0x8b);
    assert_string_equal(plain, "id,rle_mask\nt0,-\nt1,10 1 14 1\n");
    assert_string_equal(text, plain);
    free(raw);
    free(plain);
    free(text);
    free(out);
    free(copy);
    kp_config_free(cfg);
    free(dir);
}

static void test_submit_seg_validate_names_the_train_line_of_a_non_canonical_rle(void **state)
{
    (void)state;
    static const struct { const char *train, *want; } cases[] = {
        {"id,rle_mask\nr0,1 2 5 1\nr1,1 2  5 1\n",
         "train.csv:3:2: the train mask's RLE does not re-encode to the same text (column-major "
         "order, 3x2): character 5 is ' 5 1' in the file but '5 1' re-encoded"},
        {"id,rle_mask\nr0,5 1 1 2\nr1,\n",
         "train.csv:2:2: RLE column 5: start 1 is not after the previous run, which ends at "
         "pixel 5 (runs must be sorted and must not overlap)"},
        {"id,rle_mask\nr0,1 2 3 1\nr1,\n",   /* touching runs decode but join on re-encoding */
         "train.csv:2:2: the train mask's RLE does not re-encode to the same text (column-major "
         "order, 3x2): character 3 is '2 3 1' in the file but '3' re-encoded"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *dir = kp_test_tmpdir(), err[KP_ERRLEN] = "", want[8192];
        seg_case c = {1, 2, t01, sizes_t01, two_maps, NULL, "column", 2, train_3x2};
        kp_config *cfg = seg_setup(dir, &c, ID_RLE, cases[i].train, "id,rle_mask\nt0,\nt1,\n", "");
        assert_int_equal(fx_run(cfg, "sub", -1, NULL, err, sizeof err), KP_ERR_FORMAT);
        snprintf(want, sizeof want, "%s/%s", dir, cases[i].want);
        if (strcmp(err, want) != 0)
            fail_msg("case %zu: got '%s'\nwant '%s'", i, err, want);
        char *out = kp_test_join(dir, "out/sub.csv");
        assert_int_equal(access(out, F_OK), -1);   /* nothing written */
        free(out);
        kp_config_free(cfg);
        free(dir);
    }
}

static void test_submit_seg_validate_passes_canonical_rle_and_can_be_off(void **state)
{
    (void)state;
    static const char *const keys[] = {"", ", validate: false"};
    static const char *const trains[] = {plain_train, "id,rle_mask\nr0,1 2  5 1\nr1,\n"};
    for (int i = 0; i < 2; i++) {
        char *dir = kp_test_tmpdir(), err[KP_ERRLEN] = "", *text = NULL;
        size_t len = 0;
        seg_case c = {1, 2, t01, sizes_t01, two_maps, NULL, "column", 2, train_3x2};
        kp_config *cfg = seg_setup(dir, &c, ID_RLE, trains[i], "id,rle_mask\nt0,\nt1,\n", keys[i]);
        FILE *log = open_memstream(&text, &len);
        int rc = fx_run(cfg, "sub", -1, log, err, sizeof err);
        fclose(log);
        if (rc)
            fail_msg("case %d: %s", i, err);
        assert_int_equal(!!strstr(text, "validated the RLE conventions: 2 train masks "
                                        "re-encode identically (column-major)"), i == 0);
        kp_config_free(cfg);
        free(text);
        free(dir);
    }
}

static void test_submit_seg_wkt_writes_multipolygons_per_image_and_class(void **state)
{
    (void)state;
    /* one 4 x 4 test image, three channels: class 1 wins pixel (1, 1) and class
     * 0 everything else; the grid (Xmax 6.4, Ymin -1.6) scales x by 6.4 / 3.2 = 2
     * and y by -1.6 / 3.2 = -0.5 */
    float maps[3 * DHW];
    for (int p = 0; p < DHW; p++) {
        maps[p] = 0.8f;
        maps[DHW + p] = 0.1f;
        maps[2 * DHW + p] = 0.1f;
    }
    maps[DHW + 1 * DW + 1] = 0.9f;
    static const char *const ids[] = {"6120_2_2"};
    static const int32_t sizes[2] = {4, 4}, tr_sizes[4] = {4, 4, 4, 4};
    char *dir = kp_test_tmpdir();
    free(kp_test_write(dir, "grid_sizes.csv", "id,Xmax,Ymin\nother,1,-1\n6120_2_2,6.4,-1.6\n"));
    seg_case c = {3, 1, ids, sizes, maps, NULL, NULL, 2, tr_sizes};
    kp_config *cfg = seg_setup(dir, &c, "  id: ImageId\n  target: rle_mask\n",
                               "ImageId,rle_mask\nr0,\nr1,\n",
                               "ImageId,ClassType,MultipolygonWKT\n"
                               "6120_2_2,2,MULTIPOLYGON EMPTY\n"
                               "6120_2_2,1,MULTIPOLYGON EMPTY\n",
                               ", wkt: true, class_column: ClassType, grid_sizes: grid_sizes.csv");
    fx_run_ok(cfg, "sub");
    char *out = kp_test_join(dir, "out/sub.csv"), *got = kp_test_read(out);
    /* pixel (1, 1) is the square x 2..4, y -0.5..-1; counter-clockwise with y up,
     * from the top-left vertex */
    assert_string_equal(got, "ImageId,ClassType,MultipolygonWKT\n"
                             "6120_2_2,2,MULTIPOLYGON EMPTY\n"
                             "6120_2_2,1,\"MULTIPOLYGON (((2 -0.5, 2 -1, 4 -1, 4 -0.5, "
                             "2 -0.5)))\"\n");
    free(got);
    free(out);
    kp_config_free(cfg);
    free(dir);
}

KP_TEST_GROUP(seg_stages)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_images_stage_png_masks_are_resized_nearest_to_the_dataset_size),
        cmocka_unit_test(test_images_stage_png_masks_keep_their_size_without_resize),
        cmocka_unit_test(test_images_stage_label_png_gives_classes_with_mask_classes),
        cmocka_unit_test(test_images_stage_label_at_or_above_mask_classes_names_file_and_pixel),
        cmocka_unit_test(test_images_stage_rle_column_decodes_in_the_configured_pixel_order),
        cmocka_unit_test(test_images_stage_bad_rle_names_file_line_column_and_id),
        cmocka_unit_test(test_config_segmentation_needs_a_target_or_mask_files),
        cmocka_unit_test(test_config_mask_keys_on_a_non_segmentation_task_are_an_error),
        cmocka_unit_test(test_postproc_apply_thresholds_then_drops_small_components),
        cmocka_unit_test(test_postproc_apply_takes_the_argmax_of_classes_and_filters_each),
        cmocka_unit_test(test_postproc_search_beats_the_default_on_synthetic_oof),
        cmocka_unit_test(test_postproc_search_result_does_not_depend_on_threads),
        cmocka_unit_test(test_postproc_json_round_trips),
        cmocka_unit_test(test_postproc_parse_refuses_bad_text_and_leaves_the_output),
        cmocka_unit_test(test_submit_seg_writes_rle_at_original_size_in_sample_order),
        cmocka_unit_test(test_submit_seg_gzip_output_decompresses_to_the_plain_copy),
        cmocka_unit_test(test_submit_seg_validate_names_the_train_line_of_a_non_canonical_rle),
        cmocka_unit_test(test_submit_seg_validate_passes_canonical_rle_and_can_be_off),
        cmocka_unit_test(test_submit_seg_wkt_writes_multipolygons_per_image_and_class),
    };
    return KP_RUN(seg_stages, t);
}

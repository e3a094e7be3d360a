/* test_image_set.c - a folder of PNGs decoded into one N x H x W x C tensor. */
#include "kp_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/err.h"
#include "../lib/image_set.h"

/* Writes dir/name as a w x h image of channels x depth, every sample v. */
static void write_flat(const char *dir, const char *name, int w, int h, int channels, int depth,
                       int v)
{
    kp_image img = { w, h, channels, depth, malloc((size_t)w * h * channels * (depth / 8)) };
    for (size_t i = 0; i < (size_t)w * h * channels; i++) {
        if (depth == 8)
            ((uint8_t *)img.data)[i] = (uint8_t)v;
        else
            ((uint16_t *)img.data)[i] = (uint16_t)v;
    }
    char *path = kp_test_join(dir, name), err[KP_ERRLEN] = "";
    assert_int_equal(kp_image_write_png(path, &img, err, sizeof err), 0);
    kp_image_free(&img);
    free(path);
}

static void test_image_set_resizes_every_id_into_one_tensor(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), err[KP_ERRLEN] = "";
    write_flat(dir, "a.png", 4, 4, 3, 8, 10);
    write_flat(dir, "b.png", 8, 6, 3, 8, 200);   /* another size: resized */
    const char *ids[] = { "a", "b" }, *pat[] = { "{id}.png" };
    kp_image_set_opts o = { dir, pat, 1, 4, 4, KP_RESIZE_AREA, 2 };
    void *data = NULL;
    int channels = 0, depth = 0;
    assert_int_equal(kp_image_set_load(&o, ids, 2, &data, &channels, &depth, err, sizeof err), 0);
    assert_int_equal(channels, 3);
    assert_int_equal(depth, 8);
    const uint8_t *p = data;
    for (int i = 0; i < 4 * 4 * 3; i++) {
        assert_int_equal(p[i], 10);
        assert_int_equal(p[4 * 4 * 3 + i], 200);
    }
    double mean[3], sd[3];
    kp_image_set_stats(data, 2, 4, 4, 3, 8, mean, sd);
    assert_true(mean[0] == 105 && sd[0] == 95);
    free(data);
    free(dir);
}

static void test_image_set_stacks_band_files_as_channels(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), err[KP_ERRLEN] = "";
    write_flat(dir, "x_B1.png", 3, 2, 1, 16, 1000);
    write_flat(dir, "x_B2.png", 3, 2, 1, 16, 60000);
    const char *ids[] = { "x" }, *pat[] = { "{id}_B1.png", "{id}_B2.png" };
    kp_image_set_opts o = { dir, pat, 2, 3, 2, KP_RESIZE_BILINEAR, 1 };
    void *data = NULL;
    int channels = 0, depth = 0;
    assert_int_equal(kp_image_set_load(&o, ids, 1, &data, &channels, &depth, err, sizeof err), 0);
    assert_int_equal(channels, 2);
    assert_int_equal(depth, 16);
    const uint16_t *p = data;
    for (int px = 0; px < 6; px++)
        assert_true(p[2 * px] == 1000 && p[2 * px + 1] == 60000);
    free(data);
    free(dir);
}

static void test_image_set_names_the_first_bad_file_whatever_the_threads(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), err[KP_ERRLEN] = "", want[KP_ERRLEN];
    write_flat(dir, "0.png", 2, 2, 1, 8, 1);
    write_flat(dir, "1.png", 2, 2, 3, 8, 1);      /* RGB among grays */
    write_flat(dir, "3.png", 2, 2, 1, 8, 1);      /* 2.png is missing */
    const char *ids[] = { "0", "1", "2", "3" }, *pat[] = { "{id}.png" };
    for (int threads = 1; threads <= 2; threads++) {
        kp_image_set_opts o = { dir, pat, 1, 2, 2, KP_RESIZE_AREA, threads };
        void *data = (void *)1;
        int channels, depth;
        assert_int_equal(kp_image_set_load(&o, ids, 4, &data, &channels, &depth, err,
                                           sizeof err), KP_ERR_FORMAT);
        snprintf(want, sizeof want, "%s/1.png: 3 channel(s) of 8 bits, but the other files of "
                 "'{id}.png' have 1 of 8 bits", dir);
        assert_string_equal(err, want);
        assert_null(data);
    }
    const char *ids2[] = { "0", "2" };
    kp_image_set_opts o = { dir, pat, 1, 2, 2, KP_RESIZE_AREA, 2 };
    void *data;
    int channels, depth;
    assert_int_equal(kp_image_set_load(&o, ids2, 2, &data, &channels, &depth, err, sizeof err),
                     KP_ERR_IO);
    snprintf(want, sizeof want, "%s/2.png: cannot open: No such file or directory", dir);
    assert_string_equal(err, want);
    free(dir);
}

KP_TEST_GROUP(image_set)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_image_set_resizes_every_id_into_one_tensor),
        cmocka_unit_test(test_image_set_stacks_band_files_as_channels),
        cmocka_unit_test(test_image_set_names_the_first_bad_file_whatever_the_threads),
    };
    return KP_RUN(image_set, t);
}

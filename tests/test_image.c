/* test_image.c - PNG read/write: every layout round-trips; bad files are named. */
#include "kp_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/err.h"
#include "../lib/image.h"
#include <png.h>

/* Makes a w x h image whose samples are a known pattern. */
static kp_image pattern(int w, int h, int channels, int depth)
{
    kp_image img = { w, h, channels, depth, NULL };
    size_t n = (size_t)w * h * channels;
    img.data = malloc(kp_image_bytes(&img));
    for (size_t i = 0; i < n; i++) {
        if (depth == 8)
            ((uint8_t *)img.data)[i] = (uint8_t)(i * 37 + 11);
        else
            ((uint16_t *)img.data)[i] = (uint16_t)(i * 4099 + 257);
    }
    return img;
}

static void test_image_every_layout_round_trips_through_png(void **state)
{
    (void)state;
    static const struct { int channels, depth; } cases[] = {
        { 1, 8 }, { 2, 8 }, { 3, 8 }, { 4, 8 }, { 1, 16 }, { 3, 16 }, { 4, 16 },
    };
    char *dir = kp_test_tmpdir();
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        kp_image img = pattern(13, 7, cases[c].channels, cases[c].depth), back;
        char name[32], err[KP_ERRLEN] = "";
        snprintf(name, sizeof name, "img%zu.png", c);
        char *path = kp_test_join(dir, name);
        assert_int_equal(kp_image_write_png(path, &img, err, sizeof err), 0);
        assert_int_equal(kp_image_read_png(path, &back, err, sizeof err), 0);
        assert_int_equal(back.width, 13);
        assert_int_equal(back.height, 7);
        assert_int_equal(back.channels, cases[c].channels);
        assert_int_equal(back.depth, cases[c].depth);
        assert_memory_equal(back.data, img.data, kp_image_bytes(&img));
        kp_image_free(&back);
        kp_image_free(&img);
        free(path);
    }
    free(dir);
}

/* Writes a 4 x 2 two-colour palette PNG with libpng itself. */
static void write_palette_png(const char *path)
{
    FILE *f = fopen(path, "wb");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    png_color pal[2] = { { 255, 0, 0 }, { 0, 0, 255 } };
    png_byte rows[2][4] = { { 0, 1, 1, 0 }, { 1, 1, 0, 0 } };
    png_init_io(png, f);
    png_set_IHDR(png, info, 4, 2, 8, PNG_COLOR_TYPE_PALETTE, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_set_PLTE(png, info, pal, 2);
    png_write_info(png, info);
    png_write_row(png, rows[0]);
    png_write_row(png, rows[1]);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    fclose(f);
}

static void test_image_palette_png_reads_as_rgb(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), *path = kp_test_join(dir, "pal.png"), err[KP_ERRLEN] = "";
    write_palette_png(path);
    kp_image img;
    assert_int_equal(kp_image_read_png(path, &img, err, sizeof err), 0);
    assert_int_equal(img.channels, 3);
    assert_int_equal(img.depth, 8);
    const uint8_t *p = img.data;
    assert_true(p[0] == 255 && p[1] == 0 && p[2] == 0);    /* (0, 0): red */
    assert_true(p[3] == 0 && p[4] == 0 && p[5] == 255);    /* (1, 0): blue */
    kp_image_free(&img);
    free(path);
    free(dir);
}

typedef struct bad_case {
    const char *what;
    const char *shell;    /* makes bad.png from good.png in the folder */
    int status;
    const char *message;  /* after "PATH: " */
} bad_case;

static const bad_case bad[] = {
    { "truncated", "head -c 60 good.png > bad.png", KP_ERR_FORMAT, "corrupt PNG: " },
    { "not a PNG", "printf 'GIF89a....' > bad.png", KP_ERR_FORMAT, "not a PNG file" },
    { "empty", ": > bad.png", KP_ERR_FORMAT, "not a PNG file" },
    { "flipped data byte", "cp good.png bad.png && printf '\\377\\377\\377\\377' | "
      "dd of=bad.png bs=1 seek=50 conv=notrunc 2>/dev/null", KP_ERR_FORMAT, "corrupt PNG: " },
    { "missing", "rm -f bad.png", KP_ERR_IO, "cannot open: No such file or directory" },
};

static void test_image_bad_files_are_errors_naming_the_file(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), *good = kp_test_join(dir, "good.png");
    char *badp = kp_test_join(dir, "bad.png");
    kp_image img = pattern(40, 30, 3, 8);
    char err[KP_ERRLEN] = "";
    assert_int_equal(kp_image_write_png(good, &img, err, sizeof err), 0);
    kp_image_free(&img);
    for (size_t c = 0; c < sizeof bad / sizeof bad[0]; c++) {
        char cmd[4096], want[KP_ERRLEN];
        snprintf(cmd, sizeof cmd, "cd '%s' && %s", dir, bad[c].shell);
        assert_int_equal(kp_test_sh(cmd, NULL), 0);
        kp_image back;
        int rc = kp_image_read_png(badp, &back, err, sizeof err);
        snprintf(want, sizeof want, "%s: %s", badp, bad[c].message);
        if (rc != bad[c].status || strncmp(err, want, strlen(want)) != 0)
            fail_msg("%s: status %d, message '%s'", bad[c].what, rc, err);
        assert_null(back.data);
    }
    free(good);
    free(badp);
    free(dir);
}

static void test_image_write_refuses_impossible_layouts(void **state)
{
    (void)state;
    kp_image img = pattern(2, 2, 3, 8);
    img.depth = 12;
    char err[KP_ERRLEN] = "";
    assert_int_equal(kp_image_write_png("/nonexistent/x.png", &img, err, sizeof err), KP_ERR_ARG);
    assert_string_equal(err, "/nonexistent/x.png: cannot write a 2 x 2 image of 3 channels at "
                             "12 bits");
    img.depth = 8;
    kp_image_free(&img);
}

/* ---- resizing ---- */

static kp_image resized(const kp_image *src, int w, int h, kp_resize_mode mode)
{
    kp_image dst;
    char err[KP_ERRLEN] = "";
    assert_int_equal(kp_image_resize(src, w, h, mode, &dst, err, sizeof err), 0);
    assert_int_equal(dst.width, w);
    assert_int_equal(dst.height, h);
    assert_int_equal(dst.channels, src->channels);
    assert_int_equal(dst.depth, src->depth);
    return dst;
}

static void test_image_resize_to_the_same_size_changes_nothing(void **state)
{
    (void)state;
    kp_image img = pattern(9, 6, 3, 8);
    for (int mode = 0; mode < 2; mode++) {
        kp_image same = resized(&img, 9, 6, (kp_resize_mode)mode);
        assert_memory_equal(same.data, img.data, kp_image_bytes(&img));
        kp_image_free(&same);
    }
    kp_image_free(&img);
}

static void test_image_area_shrink_averages_blocks(void **state)
{
    (void)state;
    uint8_t px[16] = { 0, 2, 10, 10, 4, 6, 10, 10, 100, 100, 1, 3, 100, 100, 5, 7 };
    kp_image img = { 4, 4, 1, 8, px };
    kp_image half = resized(&img, 2, 2, KP_RESIZE_AREA);
    const uint8_t *p = half.data;
    assert_int_equal(p[0], 3);     /* (0 + 2 + 4 + 6) / 4 */
    assert_int_equal(p[1], 10);
    assert_int_equal(p[2], 100);
    assert_int_equal(p[3], 4);     /* (1 + 3 + 5 + 7) / 4 */
    kp_image_free(&half);
}

static void test_image_bilinear_uses_half_pixel_centres(void **state)
{
    (void)state;
    uint8_t px[2] = { 0, 100 };
    kp_image img = { 2, 1, 1, 8, px };
    kp_image wide = resized(&img, 4, 1, KP_RESIZE_BILINEAR);
    const uint8_t *p = wide.data;
    assert_true(p[0] == 0 && p[1] == 25 && p[2] == 75 && p[3] == 100);
    kp_image_free(&wide);
}

static void test_image_resize_keeps_a_constant_16_bit_image_constant(void **state)
{
    (void)state;
    kp_image img = pattern(7, 5, 2, 16);
    for (size_t i = 0; i < 7 * 5 * 2; i++)
        ((uint16_t *)img.data)[i] = 40000;
    for (int mode = 0; mode < 2; mode++) {
        kp_image r = resized(&img, 3, 4, (kp_resize_mode)mode);
        for (size_t i = 0; i < 3 * 4 * 2; i++)
            assert_int_equal(((uint16_t *)r.data)[i], 40000);
        kp_image_free(&r);
    }
    kp_image bad;
    char err[KP_ERRLEN] = "";
    assert_int_equal(kp_image_resize(&img, 0, 4, KP_RESIZE_AREA, &bad, err, sizeof err),
                     KP_ERR_ARG);
    assert_string_equal(err, "cannot resize to 0 x 4");
    assert_null(bad.data);
    kp_image_free(&img);
}

KP_TEST_GROUP(image)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_image_every_layout_round_trips_through_png),
        cmocka_unit_test(test_image_palette_png_reads_as_rgb),
        cmocka_unit_test(test_image_bad_files_are_errors_naming_the_file),
        cmocka_unit_test(test_image_write_refuses_impossible_layouts),
        cmocka_unit_test(test_image_resize_to_the_same_size_changes_nothing),
        cmocka_unit_test(test_image_area_shrink_averages_blocks),
        cmocka_unit_test(test_image_bilinear_uses_half_pixel_centres),
        cmocka_unit_test(test_image_resize_keeps_a_constant_16_bit_image_constant),
    };
    return KP_RUN(image, t);
}

/* test_mask.c - lib/mask: thresholds, components, small-component removal, resizing. */
#include "kp_test.h"
#include "../lib/mask.h"
#include "../lib/err.h"
#include "../lib/rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Builds a w x h mask from '#' (in) and '.' (out), row by row. */
static uint8_t *mask_from(const char *pic, int w, int h)
{
    uint8_t *m = calloc((size_t)w * h + 1, 1);
    for (int i = 0; i < w * h; i++)
        m[i] = pic[i] == '#';
    return m;
}

/* Writes a mask back as '#' and '.' into a heap string. */
static char *pic_of(const uint8_t *m, int w, int h)
{
    char *s = calloc((size_t)w * h + 1, 1);
    for (int i = 0; i < w * h; i++)
        s[i] = m[i] ? '#' : '.';
    return s;
}

static void test_mask_threshold_is_strictly_greater(void **state)
{
    (void)state;
    const float p[6] = {0.2f, 0.5f, 0.51f, 1.0f, NAN, -1.0f};
    uint8_t m[6];
    kp_mask_threshold(p, 3, 2, 0.5f, m);
    const uint8_t want[6] = {0, 0, 1, 1, 0, 0};
    assert_memory_equal(m, want, 6);
}

/* Component counts with 8- and 4-connectivity. */
static void test_mask_label_counts_table(void **state)
{
    (void)state;
    static const struct { const char *name, *pic; int w, h, c8, c4; } cases[] = {
        {"empty", "......", 3, 2, 0, 0},
        {"full", "######", 3, 2, 1, 1},
        {"diagonal touching", "#." ".#", 2, 2, 1, 2},
        {"anti-diagonal", ".#" "#.", 2, 2, 1, 2},
        {"x pattern", "#.#" ".#." "#.#", 3, 3, 1, 5},
        {"ring", "###" "#.#" "###", 3, 3, 1, 1},
        {"diamond ring", ".#." "#.#" ".#.", 3, 3, 1, 4},
        {"u merges late", "#.#" "#.#" "###", 3, 3, 1, 1},
        {"v joined by ne and nw", "#.#" ".#.", 3, 2, 1, 3},
        {"w then ne join", "#..#" ".##.", 4, 2, 1, 3},
        {"staircase", "#..." ".#.." "..#." "...#", 4, 4, 1, 4},
        {"two blocks", "##.##" "##.##", 5, 2, 2, 2},
        {"checkerboard", "#.#." ".#.#" "#.#.", 4, 3, 1, 6},
        {"single column", "#" "." "#" "#", 1, 4, 2, 2},
        {"single row", "#.##.#", 6, 1, 3, 3},
        {"spiral", "#####" "....#" "###.#" "#...#" "#####", 5, 5, 1, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int w = cases[i].w, h = cases[i].h;
        uint8_t *m = mask_from(cases[i].pic, w, h);
        int32_t *lab = malloc(sizeof(int32_t) * (size_t)w * h);
        int c8 = kp_mask_label(m, w, h, 8, lab);
        int c4 = kp_mask_label(m, w, h, 4, lab);
        if (c8 != cases[i].c8 || c4 != cases[i].c4)
            fail_msg("%s: 8-connected %d (want %d), 4-connected %d (want %d)", cases[i].name,
                     c8, cases[i].c8, c4, cases[i].c4);
        free(lab);
        free(m);
    }
}

static void test_mask_label_numbers_in_raster_order_of_first_pixel(void **state)
{
    (void)state;
    /* the component whose first pixel is top right is 1, then down the left, then the last */
    const char *pic = "..#" "#.#" "#.." "..#";
    uint8_t *m = mask_from(pic, 3, 4);
    int32_t lab[12];
    assert_int_equal(kp_mask_label(m, 3, 4, 8, lab), 3);
    const int32_t want8[12] = {0, 0, 1, 2, 0, 1, 2, 0, 0, 0, 0, 3};
    assert_memory_equal(lab, want8, sizeof want8);
    const char *u = "#.#" "#.#" "###";
    uint8_t *mu = mask_from(u, 3, 3);
    int32_t lu[9];
    assert_int_equal(kp_mask_label(mu, 3, 3, 4, lu), 1);
    const int32_t wantu[9] = {1, 0, 1, 1, 0, 1, 1, 1, 1};
    assert_memory_equal(lu, wantu, sizeof wantu);
    free(mu);
    free(m);
}

static void test_mask_label_rejects_bad_connectivity(void **state)
{
    (void)state;
    uint8_t m[1] = {1};
    int32_t lab[1] = {-7};
    assert_int_equal(kp_mask_label(m, 1, 1, 6, lab), KP_ERR_ARG);
    assert_int_equal(lab[0], -7);
}

/* Reference labelling: flood fill from each unlabelled pixel in raster order. */
static int flood_label(const uint8_t *m, int w, int h, int conn, int32_t *lab, int32_t *stack)
{
    int count = 0;
    memset(lab, 0, sizeof(int32_t) * (size_t)w * h);
    for (int s = 0; s < w * h; s++) {
        if (!m[s] || lab[s])
            continue;
        int top = 0;
        lab[s] = ++count;
        stack[top++] = s;
        while (top) {
            int i = stack[--top], x = i % w, y = i / w;
            for (int dy = -1; dy <= 1; dy++)
                for (int dx = -1; dx <= 1; dx++) {
                    int nx = x + dx, ny = y + dy, j = ny * w + nx;
                    if ((conn == 4 && dx && dy) || nx < 0 || ny < 0 || nx >= w || ny >= h)
                        continue;
                    if (m[j] && !lab[j]) {
                        lab[j] = count;
                        stack[top++] = j;
                    }
                }
        }
    }
    return count;
}

static void test_mask_label_matches_flood_fill_on_random_masks(void **state)
{
    (void)state;
    kp_rng rng;
    kp_rng_seed(&rng, 42);
    for (int trial = 0; trial < 60; trial++) {
        int w = 1 + (int)kp_rng_below(&rng, 40), h = 1 + (int)kp_rng_below(&rng, 40);
        double density = (trial % 6 + 1) / 7.0;
        size_t n = (size_t)w * h;
        uint8_t *m = malloc(n);
        int32_t *lab = malloc(4 * n), *ref = malloc(4 * n), *stack = malloc(4 * n);
        for (size_t i = 0; i < n; i++)
            m[i] = kp_rng_uniform(&rng) < density;
        for (int conn = 4; conn <= 8; conn += 4) {
            int want = flood_label(m, w, h, conn, ref, stack);
            assert_int_equal(kp_mask_label(m, w, h, conn, lab), want);
            assert_memory_equal(lab, ref, 4 * n);
        }
        free(m);
        free(lab);
        free(ref);
        free(stack);
    }
}

/* Removes components below min_size: the count removed and the mask left. */
static void test_mask_remove_small_thresholds_table(void **state)
{
    (void)state;
    /* a 2x2 block, a lone pixel, a diagonal pair (one 8-connected component), an L of 3 */
    const char *pic = "##..#" "##..." "....." "#..##" ".#..#";
    static const struct { int min_size, removed; const char *left; } cases[] = {
        {0, 0, "##..#" "##..." "....." "#..##" ".#..#"},
        {1, 0, "##..#" "##..." "....." "#..##" ".#..#"},
        {2, 1, "##..." "##..." "....." "#..##" ".#..#"},
        {3, 2, "##..." "##..." "....." "...##" "....#"},
        {4, 3, "##..." "##..." "....." "....." "....."},
        {5, 4, "....." "....." "....." "....." "....."},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *m = mask_from(pic, 5, 5);
        void *work = malloc(kp_mask_work_size(5, 5));
        int removed = kp_mask_remove_small(m, 5, 5, cases[i].min_size, work);
        char *left = pic_of(m, 5, 5);
        if (removed != cases[i].removed || strcmp(left, cases[i].left) != 0)
            fail_msg("min_size %d: removed %d (want %d), left %s (want %s)", cases[i].min_size,
                     removed, cases[i].removed, left, cases[i].left);
        free(left);
        free(work);
        free(m);
    }
}

static void test_mask_work_size_covers_worst_case_checkerboard(void **state)
{
    (void)state;
    /* isolated pixels on every other row and column: the most components */
    int w = 7, h = 5;
    uint8_t m[35];
    for (int i = 0; i < 35; i++)
        m[i] = (i % 7) % 2 == 0 && (i / 7) % 2 == 0;
    assert_int_equal(kp_mask_work_size(w, h), sizeof(int32_t) * (35 + 4 * 3 + 1));
    void *work = malloc(kp_mask_work_size(w, h));   /* ASan checks the bound */
    assert_int_equal(kp_mask_remove_small(m, w, h, 2, work), 12);
    for (int i = 0; i < 35; i++)
        assert_int_equal(m[i], 0);
    free(work);
}

static void test_map_resize_same_size_is_identity(void **state)
{
    (void)state;
    float src[15], dst[15];
    for (int i = 0; i < 15; i++)
        src[i] = (float)(i * i) * 0.37f - 3.0f;
    kp_map_resize(src, 5, 3, dst, 5, 3);
    assert_memory_equal(src, dst, sizeof src);
    kp_map_resize_nearest(src, 5, 3, dst, 5, 3);
    assert_memory_equal(src, dst, sizeof src);
}

/* Asserts n floats equal within 1e-6. */
static void assert_floats(const float *got, const float *want, int n)
{
    for (int i = 0; i < n; i++)
        if (fabsf(got[i] - want[i]) > 1e-6f)
            fail_msg("value %d: %.7g, want %.7g", i, got[i], want[i]);
}

static void test_map_resize_doubles_with_half_pixel_centres(void **state)
{
    (void)state;
    /* samples at -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1) */
    const float src[4] = {0, 1, 2, 3};
    const float want[16] = {0.0f, 0.25f, 0.75f, 1.0f,  0.5f, 0.75f, 1.25f, 1.5f,
                            1.5f, 1.75f, 2.25f, 2.5f,  2.0f, 2.25f, 2.75f, 3.0f};
    float dst[16];
    kp_map_resize(src, 2, 2, dst, 4, 4);
    assert_floats(dst, want, 16);
}

static void test_map_resize_halves_and_odd_ratios(void **state)
{
    (void)state;
    float src[16], dst[4];
    for (int i = 0; i < 16; i++)
        src[i] = (float)i;
    kp_map_resize(src, 4, 4, dst, 2, 2);     /* samples at 0.5 and 2.5: 2x2 means */
    const float halves[4] = {2.5f, 4.5f, 10.5f, 12.5f};
    assert_floats(dst, halves, 4);
    const float row[3] = {0, 10, 20};
    kp_map_resize(row, 3, 1, dst, 2, 1);     /* samples at 0.25 and 1.75 */
    const float thirds[2] = {2.5f, 17.5f};
    assert_floats(dst, thirds, 2);
    kp_map_resize(row, 3, 1, dst, 1, 3);     /* one column: the middle sample, 3 rows */
    const float col[3] = {10, 10, 10};
    assert_floats(dst, col, 3);
}

static void test_map_resize_nearest_uses_pixel_centres(void **state)
{
    (void)state;
    const float src[4] = {0, 1, 2, 3};
    float up[4], down[3];
    kp_map_resize_nearest(src, 2, 1, up, 4, 1);
    const float want_up[4] = {0, 0, 1, 1};
    assert_memory_equal(up, want_up, sizeof up);
    kp_map_resize_nearest(src, 4, 1, down, 3, 1);   /* centres 0.67, 2, 3.33 */
    const float want_down[3] = {0, 2, 3};
    assert_memory_equal(down, want_down, sizeof down);
    const uint8_t m[6] = {1, 2, 3, 4, 5, 6};   /* 3 x 2 labels to 2 x 4 */
    uint8_t out[8];
    kp_mask_resize_nearest(m, 3, 2, out, 2, 4);
    const uint8_t want_m[8] = {1, 3, 1, 3, 4, 6, 4, 6};
    assert_memory_equal(out, want_m, 8);
}

KP_TEST_GROUP(mask) {
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_mask_threshold_is_strictly_greater),
        cmocka_unit_test(test_mask_label_counts_table),
        cmocka_unit_test(test_mask_label_numbers_in_raster_order_of_first_pixel),
        cmocka_unit_test(test_mask_label_rejects_bad_connectivity),
        cmocka_unit_test(test_mask_label_matches_flood_fill_on_random_masks),
        cmocka_unit_test(test_mask_remove_small_thresholds_table),
        cmocka_unit_test(test_mask_work_size_covers_worst_case_checkerboard),
        cmocka_unit_test(test_map_resize_same_size_is_identity),
        cmocka_unit_test(test_map_resize_doubles_with_half_pixel_centres),
        cmocka_unit_test(test_map_resize_halves_and_odd_ratios),
        cmocka_unit_test(test_map_resize_nearest_uses_pixel_centres),
    };
    return KP_RUN(mask, t);
}

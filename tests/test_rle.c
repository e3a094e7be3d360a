/* test_rle.c - lib/rle: Kaggle run-length encoding, both pixel orders. */
#include "kp_test.h"
#include "../lib/rle.h"
#include "../lib/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Encodes mask, asserting success; returns a heap string. */
static char *encode(const uint8_t *mask, int w, int h, kp_rle_order order)
{
    kp_buf b;
    kp_buf_init(&b, 0);
    assert_int_equal(kp_rle_encode(mask, w, h, order, &b), 0);
    return kp_buf_take(&b);
}

/* Decodes s, asserting success, into a new mask set to 1. */
static uint8_t *decode(const char *s, int w, int h, kp_rle_order order)
{
    char err[KP_ERRLEN] = "";
    uint8_t *m = malloc((size_t)w * h + 1);
    int rc = kp_rle_decode(s, w, h, order, 1, m, err, sizeof err);
    if (rc != 0)
        fail_msg("decode of '%s' failed: %s", s, err);
    return m;
}

/* Builds a w x h mask from a string of '#' (in) and '.' (out), row by row. */
static uint8_t *mask_from(const char *pic, int w, int h)
{
    uint8_t *m = calloc((size_t)w * h + 1, 1);
    for (int i = 0; i < w * h; i++)
        m[i] = pic[i] == '#';
    return m;
}

static void test_rle_order_parse_names(void **state)
{
    (void)state;
    kp_rle_order o = KP_RLE_ROW_MAJOR;
    assert_int_equal(kp_rle_order_parse("column", &o), 0);
    assert_int_equal(o, KP_RLE_COLUMN_MAJOR);
    assert_int_equal(kp_rle_order_parse("row-major", &o), 0);
    assert_int_equal(o, KP_RLE_ROW_MAJOR);
    assert_int_equal(kp_rle_order_parse("column-major", &o), 0);
    assert_int_equal(o, KP_RLE_COLUMN_MAJOR);
    assert_int_equal(kp_rle_order_parse("row", &o), 0);
    assert_int_equal(o, KP_RLE_ROW_MAJOR);
    assert_int_equal(kp_rle_order_parse("Row", &o), KP_ERR_ARG);
    assert_int_equal(kp_rle_order_parse("diagonal", &o), KP_ERR_ARG);
    assert_int_equal(o, KP_RLE_ROW_MAJOR);   /* untouched on failure */
    assert_string_equal(kp_rle_order_name(KP_RLE_COLUMN_MAJOR), "column-major");
}

/* Hand-made masks with their exact encodings in both orders. */
static void test_rle_exact_strings_both_orders(void **state)
{
    (void)state;
    static const struct { const char *pic; int w, h; const char *col, *row; } cases[] = {
        /* 3 wide, 2 tall: columns read 1 0 | 1 1 | 0 1, rows 1 1 0 | 0 1 1 */
        {"##." ".##", 3, 2, "1 1 3 2 6 1", "1 2 5 2"},
        {"#.." "...", 3, 2, "1 1", "1 1"},
        {"..." "..#", 3, 2, "6 1", "6 1"},
        {"..#" "...", 3, 2, "5 1", "3 1"},
        {"######", 3, 2, "1 6", "1 6"},
        {"......", 3, 2, "", ""},
        /* a run crossing from the bottom of one column to the top of the next */
        {".#" "#." "#.", 2, 3, "2 3", "2 2 5 1"},
        /* 4 x 3 with a vertical bar and a dot */
        {".#.." ".#.#" ".#..", 4, 3, "4 3 11 1", "2 1 6 1 8 1 10 1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *m = mask_from(cases[i].pic, cases[i].w, cases[i].h);
        char *c = encode(m, cases[i].w, cases[i].h, KP_RLE_COLUMN_MAJOR);
        char *r = encode(m, cases[i].w, cases[i].h, KP_RLE_ROW_MAJOR);
        if (strcmp(c, cases[i].col) || strcmp(r, cases[i].row))
            fail_msg("case %zu: column '%s' (want '%s'), row '%s' (want '%s')", i, c,
                     cases[i].col, r, cases[i].row);
        free(c);
        free(r);
        free(m);
    }
}

static void test_rle_nonzero_values_count_as_mask(void **state)
{
    (void)state;
    const uint8_t m[6] = {255, 7, 0, 0, 1, 128};
    char *r = encode(m, 3, 2, KP_RLE_ROW_MAJOR);
    assert_string_equal(r, "1 2 5 2");
    free(r);
}

static void test_rle_encode_appends_to_buffer(void **state)
{
    (void)state;
    const uint8_t m[4] = {0, 1, 1, 0};
    kp_buf b;
    kp_buf_init(&b, 0);
    assert_int_equal(kp_buf_adds(&b, "id,"), 0);
    assert_int_equal(kp_rle_encode(m, 2, 2, KP_RLE_ROW_MAJOR, &b), 0);
    assert_string_equal(kp_buf_str(&b), "id,2 2");
    kp_buf_free(&b);
}

static void test_rle_encode_out_of_room_keeps_buffer(void **state)
{
    (void)state;
    uint8_t m[64];
    for (int i = 0; i < 64; i++)
        m[i] = (uint8_t)(i % 2);
    kp_buf b;
    kp_buf_init(&b, 16);
    assert_int_equal(kp_buf_adds(&b, "id,"), 0);
    assert_int_equal(kp_rle_encode(m, 8, 8, KP_RLE_ROW_MAJOR, &b), KP_ERR_NOMEM);
    assert_string_equal(kp_buf_str(&b), "id,");
    kp_buf_free(&b);
}

/* Fills m (w x h) with pattern k of the round-trip table. */
static void edge_pattern(uint8_t *m, int w, int h, int k)
{
    int n = w * h;
    memset(m, 0, (size_t)n);
    for (int i = 0; i < n; i++) {
        int x = i % w, y = i / w;
        switch (k) {
        case 0: break;                                       /* empty */
        case 1: m[i] = 1; break;                             /* full */
        case 2: m[i] = i == 0; break;                        /* first pixel */
        case 3: m[i] = i == n - 1; break;                    /* last pixel */
        case 4: m[i] = x % 2 == 0; break;                    /* vertical stripes */
        case 5: m[i] = y % 2 == 1; break;                    /* horizontal stripes */
        case 6: m[i] = (x + y) % 2 == 0; break;              /* checkerboard */
        case 7: m[i] = (uint8_t)((i * 2654435761u) >> 31); break;   /* scattered */
        case 8: m[i] = x == w - 1 || y == 0; break;          /* top row and last column */
        }
    }
}

static void test_rle_round_trips_edge_cases(void **state)
{
    (void)state;
    static const int sizes[][2] = {{1, 1}, {1, 9}, {9, 1}, {7, 5}, {5, 7}, {2, 2}, {16, 3},
                                   {33, 17}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int w = sizes[s][0], h = sizes[s][1];
        uint8_t *m = malloc((size_t)w * h);
        for (int k = 0; k < 9; k++)
            for (int o = 0; o < 2; o++) {
                edge_pattern(m, w, h, k);
                char *rle = encode(m, w, h, (kp_rle_order)o);
                uint8_t *back = decode(rle, w, h, (kp_rle_order)o);
                if (memcmp(back, m, (size_t)w * h) != 0)
                    fail_msg("%dx%d pattern %d order %d: '%s' does not round-trip", w, h,
                             k, o, rle);
                free(back);
                free(rle);
            }
        free(m);
    }
}

static void test_rle_empty_mask_is_empty_string_and_zero_size_ok(void **state)
{
    (void)state;
    uint8_t m[4] = {0};
    char *r = encode(m, 2, 2, KP_RLE_COLUMN_MAJOR);
    assert_string_equal(r, "");
    free(r);
    r = encode(NULL, 0, 5, KP_RLE_COLUMN_MAJOR);
    assert_string_equal(r, "");
    free(r);
}

static void test_rle_decode_sets_value_and_zeroes_first(void **state)
{
    (void)state;
    char err[KP_ERRLEN] = "";
    uint8_t m[6] = {9, 9, 9, 9, 9, 9};
    assert_int_equal(kp_rle_decode("1 1 3 2 6 1", 3, 2, KP_RLE_COLUMN_MAJOR, 255, m, err,
                                   sizeof err), 0);
    const uint8_t want[6] = {255, 255, 0, 0, 255, 255};
    assert_memory_equal(m, want, 6);
}

static void test_rle_decode_tolerates_whitespace(void **state)
{
    (void)state;
    static const char *const texts[] = {
        "1 2 5 2", "  1 2 5 2", "1 2 5 2  ", "1   2 \t 5\t2", "\n1 2\r\n5 2\n", " 1 2 5 2 ",
    };
    const uint8_t want[6] = {1, 1, 0, 0, 1, 1};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        uint8_t *m = decode(texts[i], 3, 2, KP_RLE_ROW_MAJOR);
        assert_memory_equal(m, want, 6);
        free(m);
    }
    uint8_t *m = decode("   ", 3, 2, KP_RLE_ROW_MAJOR);
    const uint8_t zero[6] = {0};
    assert_memory_equal(m, zero, 6);
    free(m);
}

static void test_rle_decode_accepts_touching_runs(void **state)
{
    (void)state;
    uint8_t *m = decode("1 2 3 1", 3, 2, KP_RLE_ROW_MAJOR);
    const uint8_t want[6] = {1, 1, 1, 0, 0, 0};
    assert_memory_equal(m, want, 6);
    free(m);
}

/* Malformed strings on a 3 x 2 mask: status, message, and mask untouched. */
static void test_rle_decode_errors_name_column_and_problem(void **state)
{
    (void)state;
    static const struct { const char *s; const char *msg; } cases[] = {
        {"1 2 x 1", "RLE column 5: 'x' is not a number"},
        {"1 2 -5 1", "RLE column 5: '-5' is not a number"},
        {"1.5 2", "RLE column 1: '1.5' is not a number"},
        {"1,2", "RLE column 1: '1,2' is not a number"},
        {"1 2 5", "RLE column 5: start 5 has no run length (the count of numbers is odd)"},
        {"0 2", "RLE column 1: start 0 is below 1 (starts are 1-indexed)"},
        {"1 0", "RLE column 3: run length 0 (lengths must be at least 1)"},
        {"5 3", "RLE column 1: the run '5 3' ends past pixel 6, the last of a 3 x 2 mask"},
        {"7 1", "RLE column 1: the run '7 1' ends past pixel 6, the last of a 3 x 2 mask"},
        {"1 99999999999999999999999", "RLE column 1: the run '1 99999999999999999999999' "
                                      "ends past pixel 6, the last of a 3 x 2 mask"},
        {"4 1 2 1", "RLE column 5: start 2 is not after the previous run, which ends at pixel "
                    "4 (runs must be sorted and must not overlap)"},
        {"1 3  3 1", "RLE column 6: start 3 is not after the previous run, which ends at "
                     "pixel 3 (runs must be sorted and must not overlap)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[KP_ERRLEN] = "";
        uint8_t m[6] = {7, 7, 7, 7, 7, 7};
        const uint8_t same[6] = {7, 7, 7, 7, 7, 7};
        int rc = kp_rle_decode(cases[i].s, 3, 2, KP_RLE_ROW_MAJOR, 1, m, err, sizeof err);
        if (rc != KP_ERR_FORMAT || strcmp(err, cases[i].msg) != 0)
            fail_msg("'%s': status %d, message '%s'", cases[i].s, rc, err);
        assert_memory_equal(m, same, 6);
    }
}

/* A Carvana-size mask (1918 x 1280, an ellipse): both orders round-trip and
 * agree with a pixel-by-pixel reference encoder. */
static void test_rle_large_mask_matches_reference(void **state)
{
    (void)state;
    int w = 1918, h = 1280;
    uint8_t *m = malloc((size_t)w * h);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double dx = (x - 900.0) / 700.0, dy = (y - 600.0) / 500.0;
            m[(size_t)y * w + x] = dx * dx + dy * dy < 1.0 || (x + y) % 97 == 0;
        }
    for (int o = 0; o < 2; o++) {
        kp_buf ref;
        kp_buf_init(&ref, 0);
        size_t n = (size_t)w * h;
        int prev = 0;
        size_t start = 0;
        for (size_t p = 0; p <= n; p++) {
            int v = 0;
            if (p < n)
                v = o == KP_RLE_ROW_MAJOR ? m[p] : m[(p % h) * w + p / h];
            if (v && !prev)
                start = p;
            if (!v && prev)
                assert_int_equal(kp_buf_printf(&ref, "%s%zu %zu", ref.len ? " " : "",
                                               start + 1, p - start), 0);
            prev = v;
        }
        char *rle = encode(m, w, h, (kp_rle_order)o);
        assert_string_equal(rle, kp_buf_str(&ref));
        uint8_t *back = decode(rle, w, h, (kp_rle_order)o);
        assert_memory_equal(back, m, n);
        free(back);
        free(rle);
        kp_buf_free(&ref);
    }
    free(m);
}

KP_TEST_GROUP(rle) {
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_rle_order_parse_names),
        cmocka_unit_test(test_rle_exact_strings_both_orders),
        cmocka_unit_test(test_rle_nonzero_values_count_as_mask),
        cmocka_unit_test(test_rle_encode_appends_to_buffer),
        cmocka_unit_test(test_rle_encode_out_of_room_keeps_buffer),
        cmocka_unit_test(test_rle_round_trips_edge_cases),
        cmocka_unit_test(test_rle_empty_mask_is_empty_string_and_zero_size_ok),
        cmocka_unit_test(test_rle_decode_sets_value_and_zeroes_first),
        cmocka_unit_test(test_rle_decode_tolerates_whitespace),
        cmocka_unit_test(test_rle_decode_accepts_touching_runs),
        cmocka_unit_test(test_rle_decode_errors_name_column_and_problem),
        cmocka_unit_test(test_rle_large_mask_matches_reference),
    };
    return KP_RUN(rle, t);
}

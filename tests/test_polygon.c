/* test_polygon.c - lib/polygon: masks traced into OGC-valid WKT multipolygons. */
#include "kp_test.h"
#include "../lib/polygon.h"
#include "../lib/err.h"

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

/* Returns the WKT of pic (heap), asserting success. */
static char *wkt_of(const char *pic, int w, int h, double sx, double sy, int digits)
{
    uint8_t *m = mask_from(pic, w, h);
    kp_buf b;
    kp_buf_init(&b, 0);
    assert_int_equal(kp_wkt_multipolygon(m, w, h, sx, sy, digits, &b), 0);
    free(m);
    return kp_buf_take(&b);
}

/* Shapes in pixel units with their exact WKT.  Every expected string here was
 * checked offline with shapely 1.8.5 (Debian python3-shapely): is_valid,
 * area = pixel count, symmetric difference with the union of the pixel
 * squares of area 0, exteriors counter-clockwise, interiors clockwise. */
static void test_polygon_wkt_exact_shapes_table(void **state)
{
    (void)state;
    static const struct { const char *name, *pic; int w, h; const char *wkt; } cases[] = {
        {"single pixel", "#", 1, 1, "MULTIPOLYGON (((0 0, 1 0, 1 1, 0 1, 0 0)))"},
        {"pixel inside a frame of background", "...." ".#.." "....", 4, 3,
         "MULTIPOLYGON (((1 1, 2 1, 2 2, 1 2, 1 1)))"},
        {"collinear corners merged", "###" "###", 3, 2,
         "MULTIPOLYGON (((0 0, 3 0, 3 2, 0 2, 0 0)))"},
        {"l shape", "#." "##", 2, 2, "MULTIPOLYGON (((0 0, 1 0, 1 1, 2 1, 2 2, 0 2, 0 0)))"},
        {"ring with a hole", "###" "#.#" "###", 3, 3,
         "MULTIPOLYGON (((0 0, 3 0, 3 3, 0 3, 0 0), (1 1, 1 2, 2 2, 2 1, 1 1)))"},
        {"two separate squares", "##.##" "##.##", 5, 2,
         "MULTIPOLYGON (((0 0, 2 0, 2 2, 0 2, 0 0)), ((3 0, 5 0, 5 2, 3 2, 3 0)))"},
        {"diagonal pixels touch at a point", "#." ".#", 2, 2,
         "MULTIPOLYGON (((0 0, 1 0, 1 1, 0 1, 0 0)), ((1 1, 2 1, 2 2, 1 2, 1 1)))"},
        {"anti-diagonal pixels", ".#" "#.", 2, 2,
         "MULTIPOLYGON (((1 0, 2 0, 2 1, 1 1, 1 0)), ((0 1, 1 1, 1 2, 0 2, 0 1)))"},
        {"hole touching the shell at a corner", "....." ".###." ".#.#." ".##.." ".....", 5, 5,
         "MULTIPOLYGON (((1 1, 4 1, 4 3, 3 3, 3 4, 1 4, 1 1), (2 2, 2 3, 3 3, 3 2, 2 2)))"},
        {"island in a lake", "#####" "#...#" "#.#.#" "#...#" "#####", 5, 5,
         "MULTIPOLYGON (((0 0, 5 0, 5 5, 0 5, 0 0), (1 1, 1 4, 4 4, 4 1, 1 1)), "
         "((2 2, 3 2, 3 3, 2 3, 2 2)))"},
        {"two polygons enclosing background", "##.." "#.#." ".##." "....", 4, 4,
         "MULTIPOLYGON (((0 0, 2 0, 2 1, 1 1, 1 2, 0 2, 0 0)), "
         "((2 1, 3 1, 3 3, 1 3, 1 2, 2 2, 2 1)))"},
        {"hole open to a notch", "####" "#.#." "####", 4, 3,
         "MULTIPOLYGON (((0 0, 4 0, 4 1, 3 1, 3 2, 4 2, 4 3, 0 3, 0 0), "
         "(1 1, 1 2, 2 2, 2 1, 1 1)))"},
        {"random 6 x 5", ".##..#" "####.." "#.##.." ".####." "##.###", 6, 5,
         "MULTIPOLYGON (((1 0, 3 0, 3 1, 4 1, 4 3, 5 3, 5 4, 6 4, 6 5, 3 5, 3 4, 2 4, 2 5, "
         "0 5, 0 4, 1 4, 1 3, 0 3, 0 1, 1 1, 1 0), (1 2, 1 3, 2 3, 2 2, 1 2)), "
         "((5 0, 6 0, 6 1, 5 1, 5 0)))"},
        {"random 7 x 6", "##.#.##" "..###.#" "#.#.##." "#######" "#####.#" "#######", 7, 6,
         "MULTIPOLYGON (((0 0, 2 0, 2 1, 0 1, 0 0)), ((3 0, 4 0, 4 1, 5 1, 5 2, 6 2, 6 3, "
         "7 3, 7 6, 0 6, 0 2, 1 2, 1 3, 2 3, 2 1, 3 1, 3 0), (3 2, 3 3, 4 3, 4 2, 3 2), "
         "(5 4, 5 5, 6 5, 6 4, 5 4)), ((5 0, 7 0, 7 2, 6 2, 6 1, 5 1, 5 0)))"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *s = wkt_of(cases[i].pic, cases[i].w, cases[i].h, 1, 1, 12);
        if (strcmp(s, cases[i].wkt) != 0)
            fail_msg("%s:\n got  %s\n want %s", cases[i].name, s, cases[i].wkt);
        free(s);
    }
}

static void test_polygon_empty_mask_is_multipolygon_empty(void **state)
{
    (void)state;
    char *s = wkt_of("......", 3, 2, 1, 1, 8);
    assert_string_equal(s, "MULTIPOLYGON EMPTY");
    free(s);
    s = wkt_of("", 0, 0, 1, 1, 8);
    assert_string_equal(s, "MULTIPOLYGON EMPTY");
    free(s);
}

/* A negative y scale mirrors the shapes: rings are reversed so shells stay
 * counter-clockwise (checked with shapely), and no "-0" is written. */
static void test_polygon_negative_y_scale_reverses_rings(void **state)
{
    (void)state;
    char *s = wkt_of("##" "#.", 2, 2, 0.5, -0.25, 12);
    assert_string_equal(s, "MULTIPOLYGON (((0 0, 0 -0.5, 0.5 -0.5, 0.5 -0.25, 1 -0.25, 1 0, "
                           "0 0)))");
    free(s);
    s = wkt_of("##.#." "#.#.#" "#.###" ".####", 5, 4, 0.5, -0.25, 12);
    assert_string_equal(s, "MULTIPOLYGON (((0 0, 0 -0.75, 0.5 -0.75, 0.5 -0.25, 1 -0.25, 1 0, "
                           "0 0)), ((1.5 0, 1.5 -0.25, 2 -0.25, 2 0, 1.5 0)), ((1 -0.25, "
                           "1 -0.75, 0.5 -0.75, 0.5 -1, 2.5 -1, 2.5 -0.25, 2 -0.25, 2 -0.5, "
                           "1.5 -0.5, 1.5 -0.25, 1 -0.25)))");
    free(s);
}

/* Twice the shoelace area of every ring of a WKT text, in order. */
static int ring_areas(const char *s, double *area, int max)
{
    int n = 0;
    const char *p = strstr(s, "(((");
    while (p && n < max) {
        while (*p == '(' || *p == ' ' || *p == ',')
            p++;
        double x0, y0, px, py, a = 0;
        int used;
        if (sscanf(p, "%lf %lf%n", &x0, &y0, &used) != 2)
            break;
        p += used;
        px = x0;
        py = y0;
        while (*p == ',') {
            double x, y;
            if (sscanf(p + 1, "%lf %lf%n", &x, &y, &used) != 2)
                return -1;
            p += 1 + used;
            a += px * y - x * py;
            px = x;
            py = y;
        }
        area[n++] = a;
        p = strchr(p, ',');
    }
    return n;
}

static void test_polygon_shells_ccw_holes_cw_for_both_y_signs(void **state)
{
    (void)state;
    const char *pic = "#####" "#...#" "#.#.#" "#...#" "#####";
    for (int sign = -1; sign <= 1; sign += 2) {
        char *s = wkt_of(pic, 5, 5, 2.0, sign * 3.0, 12);
        double a[4];
        assert_int_equal(ring_areas(s, a, 4), 3);
        assert_true(fabs(a[0] - 2 * 25 * 6.0) < 1e-9);    /* shell */
        assert_true(fabs(a[1] + 2 * 9 * 6.0) < 1e-9);     /* hole */
        assert_true(fabs(a[2] - 2 * 1 * 6.0) < 1e-9);     /* island */
        free(s);
    }
}

static void test_polygon_digits_round_coordinates(void **state)
{
    (void)state;
    char *s = wkt_of("#", 1, 1, 1.0 / 3.0, 2.0 / 3.0, 4);
    assert_string_equal(s, "MULTIPOLYGON (((0 0, 0.3333 0, 0.3333 0.6667, 0 0.6667, 0 0)))");
    free(s);
}

static void test_polygon_appends_and_keeps_buffer_when_full(void **state)
{
    (void)state;
    uint8_t m[4] = {1, 0, 0, 1};
    kp_buf b;
    kp_buf_init(&b, 0);
    assert_int_equal(kp_buf_adds(&b, "6010_1_2,1,"), 0);
    assert_int_equal(kp_wkt_multipolygon(m, 2, 2, 1, 1, 6, &b), 0);
    assert_string_equal(kp_buf_str(&b), "6010_1_2,1,MULTIPOLYGON (((0 0, 1 0, 1 1, 0 1, 0 0)), "
                                        "((1 1, 2 1, 2 2, 1 2, 1 1)))");
    kp_buf_free(&b);
    kp_buf_init(&b, 40);
    assert_int_equal(kp_buf_adds(&b, "id,"), 0);
    assert_int_equal(kp_wkt_multipolygon(m, 2, 2, 1, 1, 6, &b), KP_ERR_NOMEM);
    assert_string_equal(kp_buf_str(&b), "id,");
    kp_buf_free(&b);
}

/* Values from Python: w * w / (w + 1) etc. for a 3349 x 3391 Dstl image. */
static void test_polygon_dstl_scale_matches_formula(void **state)
{
    (void)state;
    double sx, sy;
    kp_dstl_scale(3349, 3391, 0.009188, -0.00904, &sx, &sy);
    assert_true(fabs(sx - 2.7443247254476073e-06) < 1e-20);
    assert_true(fabs(sy + 2.6666664347600433e-06) < 1e-20);
    /* the far corner lands just past the grid: W' < W */
    assert_true(fabs(3349 * sx - 0.009190743505524037) < 1e-17);
    assert_true(fabs(3391 * sy + 0.009042665880271306) < 1e-17);
}

/* A large blob with a hole: shell and hole areas add up to the pixel count. */
static void test_polygon_large_disc_area_equals_pixel_count(void **state)
{
    (void)state;
    int w = 301, h = 257;
    uint8_t *m = malloc((size_t)w * h);
    long pixels = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double r = hypot(x - 150.3, y - 128.7);
            m[(size_t)y * w + x] = r < 120 && r > 40;
            pixels += m[(size_t)y * w + x];
        }
    kp_buf b;
    kp_buf_init(&b, 0);
    assert_int_equal(kp_wkt_multipolygon(m, w, h, 1, 1, 12, &b), 0);
    double a[4];
    assert_int_equal(ring_areas(kp_buf_str(&b), a, 4), 2);
    assert_true(a[0] > 0 && a[1] < 0);
    assert_true(fabs((a[0] + a[1]) / 2 - (double)pixels) < 1e-9);
    kp_buf_free(&b);
    free(m);
}

KP_TEST_GROUP(polygon) {
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_polygon_wkt_exact_shapes_table),
        cmocka_unit_test(test_polygon_empty_mask_is_multipolygon_empty),
        cmocka_unit_test(test_polygon_negative_y_scale_reverses_rings),
        cmocka_unit_test(test_polygon_shells_ccw_holes_cw_for_both_y_signs),
        cmocka_unit_test(test_polygon_digits_round_coordinates),
        cmocka_unit_test(test_polygon_appends_and_keeps_buffer_when_full),
        cmocka_unit_test(test_polygon_dstl_scale_matches_formula),
        cmocka_unit_test(test_polygon_large_disc_area_equals_pixel_count),
    };
    return KP_RUN(polygon, t);
}

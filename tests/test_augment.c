/* test_augment.c - seeded augmentation: each transform on hand-computed
 * images, identity at p = 0, determinism, and the config grammar's errors. */
#include "kp_test.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include "../lib/augment.h"
#include "../lib/d4.h"
#include "../lib/err.h"
#include "../lib/params.h"

enum { MAXPIX = 64 };

/* Applies a to a copy of src under seed; out gets C*H*W floats. */
static void augment_seeded(const kp_augment *a, uint64_t seed, const float *src, int C, int H,
                           int W, float *out)
{
    float tmp[MAXPIX];
    size_t n = (size_t)C * H * W;
    assert_true(n <= MAXPIX);
    assert_true(kp_augment_workspace(a, C, H, W) <= MAXPIX);
    kp_rng r;
    kp_rng_seed(&r, seed);
    memcpy(out, src, n * sizeof *out);
    kp_augment_apply(a, &r, out, C, H, W, tmp);
}

/* Fails with both images printed when they differ by more than tol. */
static void assert_images_near(const float *got, const float *want, int n, float tol)
{
    for (int i = 0; i < n; i++)
        if (!(fabsf(got[i] - want[i]) <= tol))
            fail_msg("pixel %d: got %.9g, want %.9g", i, got[i], want[i]);
}

/* ---- the D4 transforms ---- */

/* The 2 x 3 image 1 2 3 / 4 5 6 on channel 0 and +10 on channel 1. */
static const float img23[12] = { 1, 2, 3, 4, 5, 6, 11, 12, 13, 14, 15, 16 };

static void test_augment_hflip_p1_mirrors_columns_of_every_channel(void **state)
{
    (void)state;
    kp_augment a = { .hflip = 1 };
    const float want[12] = { 3, 2, 1, 6, 5, 4, 13, 12, 11, 16, 15, 14 };
    float out[12];
    augment_seeded(&a, 1, img23, 2, 2, 3, out);
    assert_memory_equal(out, want, sizeof want);
}

static void test_augment_vflip_p1_mirrors_rows_of_every_channel(void **state)
{
    (void)state;
    kp_augment a = { .vflip = 1 };
    const float want[12] = { 4, 5, 6, 1, 2, 3, 14, 15, 16, 11, 12, 13 };
    float out[12];
    augment_seeded(&a, 1, img23, 2, 2, 3, out);
    assert_memory_equal(out, want, sizeof want);
}

/* The 3 x 3 image 1..9 and its transforms. */
static const float img33[9] = { 1, 2, 3, 4, 5, 6, 7, 8, 9 };

static void test_augment_transpose_p1_swaps_rows_and_columns(void **state)
{
    (void)state;
    kp_augment a = { .transpose = 1 };
    const float want[9] = { 1, 4, 7, 2, 5, 8, 3, 6, 9 };
    float out[9];
    augment_seeded(&a, 1, img33, 1, 3, 3, out);
    assert_memory_equal(out, want, sizeof want);
}

static void test_augment_hflip_and_vflip_p1_make_a_half_turn(void **state)
{
    (void)state;
    kp_augment a = { .hflip = 1, .vflip = 1 };
    const float want[12] = { 6, 5, 4, 3, 2, 1, 16, 15, 14, 13, 12, 11 };
    float out[12];
    augment_seeded(&a, 3, img23, 2, 2, 3, out);
    assert_memory_equal(out, want, sizeof want);
}

static void test_augment_rot90_p1_gives_each_of_the_four_quarter_turns(void **state)
{
    (void)state;
    static const float turns[4][9] = {
        { 1, 2, 3, 4, 5, 6, 7, 8, 9 },
        { 3, 6, 9, 2, 5, 8, 1, 4, 7 },   /* counter-clockwise */
        { 9, 8, 7, 6, 5, 4, 3, 2, 1 },
        { 7, 4, 1, 8, 5, 2, 9, 6, 3 },   /* clockwise */
    };
    kp_augment a = { .rot90 = 1 };
    int seen[4] = { 0 };
    for (uint64_t seed = 0; seed < 64; seed++) {
        float out[9];
        augment_seeded(&a, seed, img33, 1, 3, 3, out);
        int k = 0;
        while (k < 4 && memcmp(out, turns[k], sizeof out) != 0)
            k++;
        if (k == 4)
            fail_msg("seed %d: not a quarter turn", (int)seed);
        seen[k]++;
    }
    for (int k = 0; k < 4; k++)
        assert_true(seen[k] > 0);
}

static void test_augment_all_d4_transforms_compose_in_their_fixed_order(void **state)
{
    (void)state;
    /* hflip, vflip, rot90 by k, transpose: one of four results, one per k */
    enum { C = 2, N = 4 };
    float img[C * N * N], a1[C * N * N], a2[C * N * N], want[4][C * N * N];
    for (int i = 0; i < C * N * N; i++)
        img[i] = (float)(i * i % 37);
    for (int k = 0; k < 4; k++) {
        kp_d4_apply(img, C, N, N, 4, a1);
        kp_d4_apply(a1, C, N, N, 6, a2);
        kp_d4_apply(a2, C, N, N, k, a1);
        kp_d4_apply(a1, C, N, N, 5, want[k]);
    }
    kp_augment a = { .hflip = 1, .vflip = 1, .rot90 = 1, .transpose = 1 };
    int seen[4] = { 0 };
    for (uint64_t seed = 0; seed < 64; seed++) {
        float out[C * N * N];
        augment_seeded(&a, seed, img, C, N, N, out);
        int k = 0;
        while (k < 4 && memcmp(out, want[k], sizeof out) != 0)
            k++;
        if (k == 4)
            fail_msg("seed %d: not hflip, vflip, a quarter turn, transpose", (int)seed);
        seen[k]++;
    }
    for (int k = 0; k < 4; k++)
        assert_true(seen[k] > 0);
}

static void test_augment_transpose_applies_to_the_drawn_quarter_turn(void **state)
{
    (void)state;
    /* hflip, rot90 draw the same k with or without a transpose after them */
    enum { C = 2, N = 4, n = C * N * N };
    float img[n], turned[n], both[n], want[n];
    for (int i = 0; i < n; i++)
        img[i] = (float)(i * i % 37);
    kp_augment a = { .hflip = 1, .rot90 = 1 }, b = { .hflip = 1, .rot90 = 1, .transpose = 1 };
    for (uint64_t seed = 0; seed < 16; seed++) {
        augment_seeded(&a, seed, img, C, N, N, turned);
        augment_seeded(&b, seed, img, C, N, N, both);
        kp_d4_apply(turned, C, N, N, 5, want);
        assert_memory_equal(both, want, sizeof want);
    }
}

/* ---- crop with padding ---- */

static void test_augment_shift_zero_border_fills_with_zeros(void **state)
{
    (void)state;
    const float want[9] = { 0, 0, 0, 2, 3, 0, 5, 6, 0 };   /* down 1, left 1 */
    float out[9];
    kp_augment_shift(img33, 1, 3, 3, 1, -1, KP_AUG_ZERO, out);
    assert_memory_equal(out, want, sizeof want);
}

static void test_augment_shift_reflect_border_mirrors_without_the_edge(void **state)
{
    (void)state;
    /* 3 x 4: 1 2 3 4 / 5 6 7 8 / 9 10 11 12, moved right 2 and up 1 */
    const float src[12] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };
    const float want[12] = { 7, 6, 5, 6, 11, 10, 9, 10, 7, 6, 5, 6 };
    float out[12];
    kp_augment_shift(src, 1, 3, 4, -1, 2, KP_AUG_REFLECT, out);
    assert_memory_equal(out, want, sizeof want);
}

static void test_augment_shift_beyond_the_image_is_all_border(void **state)
{
    (void)state;
    const float row[3] = { 1, 2, 3 }, mirrored[3] = { 2, 1, 2 }, zeros[3] = { 0, 0, 0 };
    float out[3];
    kp_augment_shift(row, 1, 1, 3, 0, 5, KP_AUG_ZERO, out);
    assert_memory_equal(out, zeros, sizeof out);
    kp_augment_shift(row, 1, 1, 3, 0, 5, KP_AUG_REFLECT, out);
    assert_memory_equal(out, mirrored, sizeof out);
}

static void test_augment_crop_keeps_size_and_shifts_content_within_the_padding(void **state)
{
    (void)state;
    enum { C = 2, N = 5, P = 2, n = C * N * N };
    float img[n];
    for (int i = 0; i < n; i++)
        img[i] = (float)(1 + i * 7 % 23);
    kp_augment a = { .crop = { .p = 1, .pad = P, .border = KP_AUG_ZERO } };
    int seen[2 * P + 1][2 * P + 1];
    memset(seen, 0, sizeof seen);
    for (uint64_t seed = 0; seed < 400; seed++) {
        float out[n + 4], tmp[n + 4], shifted[n];
        for (int i = 0; i < n + 4; i++)
            out[i] = tmp[i] = -999;   /* guards after the image */
        memcpy(out, img, sizeof img);
        kp_rng r;
        kp_rng_seed(&r, seed);
        kp_augment_apply(&a, &r, out, C, N, N, tmp);
        assert_true(out[n] == -999 && out[n + 3] == -999 && tmp[n] == -999 && tmp[n + 3] == -999);
        int found = 0;
        for (int dy = -P; dy <= P; dy++)
            for (int dx = -P; dx <= P; dx++) {
                kp_augment_shift(img, C, N, N, dy, dx, KP_AUG_ZERO, shifted);
                if (memcmp(out, shifted, sizeof shifted) == 0)
                    found++, seen[dy + P][dx + P]++;
            }
        if (found != 1)
            fail_msg("seed %d: matches %d shifts", (int)seed, found);
    }
    for (int i = 0; i < 2 * P + 1; i++)
        for (int j = 0; j < 2 * P + 1; j++)
            if (!seen[i][j])
                fail_msg("offset (%d, %d) never drawn", i - P, j - P);
}

/* ---- shift-scale-rotate ---- */

static void test_augment_ssr_with_zero_limits_is_the_identity(void **state)
{
    (void)state;
    enum { C = 2, H = 4, W = 5, n = C * H * W };
    float img[n], out[n];
    for (int i = 0; i < n; i++)
        img[i] = (float)(i * 13 % 19) - 9.5f;
    for (int b = 0; b < 2; b++) {
        kp_augment a = { .ssr = { .p = 1, .border = b ? KP_AUG_REFLECT : KP_AUG_ZERO } };
        augment_seeded(&a, 5, img, C, H, W, out);
        assert_images_near(out, img, n, 1e-6f);
    }
}

/* A 5 x 5 image with no symmetry. */
static void asymmetric5(float *img)
{
    for (int i = 0; i < 25; i++)
        img[i] = (float)(i * i % 29);
}

static void test_augment_warp_quarter_turns_equal_the_d4_rotations(void **state)
{
    (void)state;
    float img[25], got[25], want[25];
    asymmetric5(img);
    const struct { double angle; int t; } cases[] = { { 90, 1 }, { -90, 3 }, { 180, 2 } };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kp_d4_apply(img, 1, 5, 5, cases[i].t, want);
        kp_augment_warp(img, 1, 5, 5, cases[i].angle, 1, 0, 0, KP_AUG_ZERO, got);
        for (int y = 1; y < 4; y++)   /* interior pixels */
            assert_images_near(got + y * 5 + 1, want + y * 5 + 1, 3, 1e-5f);
        kp_augment_warp(img, 1, 5, 5, cases[i].angle, 1, 0, 0, KP_AUG_REFLECT, got);
        assert_images_near(got, want, 25, 0);   /* whole-pixel sources are exact */
    }
}

static void test_augment_warp_scale_two_zooms_about_the_centre(void **state)
{
    (void)state;
    /* value = column on a 4 x 4 image: zoomed x2 about x = 1.5, column x
     * samples the source at x / 2 + 0.75 */
    float img[16], out[16];
    for (int i = 0; i < 16; i++)
        img[i] = (float)(i % 4);
    kp_augment_warp(img, 1, 4, 4, 0, 2, 0, 0, KP_AUG_ZERO, out);
    const float row[4] = { 0.75f, 1.25f, 1.75f, 2.25f };
    for (int y = 0; y < 4; y++)
        assert_images_near(out + 4 * y, row, 4, 1e-6f);
}

static void test_augment_warp_shift_by_a_quarter_moves_one_pixel_of_four(void **state)
{
    (void)state;
    float img[16], got[16], want[16];
    for (int i = 0; i < 16; i++)
        img[i] = (float)(i * 5 % 17);
    for (int b = 0; b < 2; b++) {
        kp_aug_border border = b ? KP_AUG_REFLECT : KP_AUG_ZERO;
        kp_augment_warp(img, 1, 4, 4, 0, 1, 0.25, -0.25, border, got);
        kp_augment_shift(img, 1, 4, 4, -1, 1, border, want);
        assert_images_near(got, want, 16, 1e-6f);
    }
}

static void test_augment_warp_matches_scipy_bilinear_reference(void **state)
{
    (void)state;
    /* scipy.ndimage.affine_transform(order=1, mode='mirror' / 'grid-constant')
     * with the inverse of OpenCV's matrix for angle 30, scale 1.1, dx 0.1, dy -0.05 */
    static const float reflect[25] = {
        3.16876171f, 4.52763343f, 5.64681358f, 5.06413328f, 7.78537176f,
        2.58154379f, 2.54666112f, 5.4607717f, 4.74959781f, 4.79752716f,
        3.91433761f, 3.23834348f, 2.07237049f, 2.35019591f, 1.23080556f,
        5.24533907f, 5.71462824f, 6.87470711f, 5.13785889f, 4.21270418f,
        6.51323866f, 2.58335435f, 3.76861708f, 3.60027439f, 5.55419904f,
    };
    static const float zero[25] = {
        2.81342497f, 4.27132031f, 5.64681358f, 5.06413328f, 7.78537176f,
        2.58154379f, 2.54666112f, 5.4607717f, 4.74959781f, 4.79752716f,
        3.89453663f, 3.23834348f, 2.07237049f, 2.35019591f, 1.23080556f,
        3.42632102f, 5.71462824f, 6.87470711f, 5.13785889f, 4.21270418f,
        0.0321096451f, 1.08172508f, 3.76861708f, 3.60027439f, 4.02810009f,
    };
    float img[25], out[25];
    for (int y = 0; y < 5; y++)
        for (int x = 0; x < 5; x++)
            img[y * 5 + x] = (float)((15 * y + 7 * x) % 11);
    kp_augment_warp(img, 1, 5, 5, 30, 1.1, 0.1, -0.05, KP_AUG_REFLECT, out);
    assert_images_near(out, reflect, 25, 1e-5f);
    kp_augment_warp(img, 1, 5, 5, 30, 1.1, 0.1, -0.05, KP_AUG_ZERO, out);
    assert_images_near(out, zero, 25, 1e-5f);
}

/* ---- brightness / contrast ---- */

static void test_augment_bc_p1_applies_one_alpha_and_beta_within_limits(void **state)
{
    (void)state;
    enum { n = 2 * 2 * 3 };
    kp_augment a = { .bc = { .p = 1, .brightness = 0.2, .contrast = 0.3 } };
    double first_alpha = 0;
    int alphas_differ = 0;
    for (uint64_t seed = 0; seed < 20; seed++) {
        float out[n];
        augment_seeded(&a, seed, img23, 2, 2, 3, out);
        double alpha = (out[1] - out[0]) / (img23[1] - img23[0]);
        double beta = out[0] - alpha * img23[0];
        assert_true(alpha >= 0.7 - 1e-5 && alpha <= 1.3 + 1e-5);
        assert_true(beta >= -0.2 - 1e-4 && beta <= 0.2 + 1e-4);
        for (int i = 0; i < n; i++)
            assert_true(fabs(out[i] - (alpha * img23[i] + beta)) < 1e-4);
        alphas_differ |= seed > 0 && fabs(alpha - first_alpha) > 1e-3;
        if (seed == 0)
            first_alpha = alpha;
    }
    assert_true(alphas_differ);
}

/* ---- probabilities and determinism ---- */

/* Every transform enabled with probability p. */
static kp_augment everything(double p)
{
    kp_augment a = { .hflip = p, .vflip = p, .rot90 = p, .transpose = p,
                     .crop = { p, 1, KP_AUG_REFLECT },
                     .ssr = { p, 0.1, 0.1, 20, KP_AUG_REFLECT },
                     .bc = { p, 0.2, 0.2 } };
    return a;
}

static void test_augment_p0_is_the_identity(void **state)
{
    (void)state;
    enum { C = 2, N = 4, n = C * N * N };
    float img[n], out[n];
    for (int i = 0; i < n; i++)
        img[i] = (float)i - 7.25f;
    kp_augment a = everything(0);
    assert_int_equal(kp_augment_any(&a), 0);
    for (uint64_t seed = 0; seed < 16; seed++) {
        augment_seeded(&a, seed, img, C, N, N, out);
        assert_memory_equal(out, img, sizeof img);
    }
}

static void test_augment_same_seed_gives_the_same_bits_and_another_seed_differs(void **state)
{
    (void)state;
    enum { C = 3, N = 4, n = C * N * N };
    float img[n], a1[n], a2[n], b[n];
    for (int i = 0; i < n; i++)
        img[i] = (float)(i * 11 % 13) * 0.37f;
    kp_augment a = everything(1);
    assert_int_equal(kp_augment_any(&a), 1);
    augment_seeded(&a, 42, img, C, N, N, a1);
    augment_seeded(&a, 42, img, C, N, N, a2);
    augment_seeded(&a, 43, img, C, N, N, b);
    assert_memory_equal(a1, a2, sizeof a1);
    assert_memory_not_equal(a1, b, sizeof a1);
    assert_memory_not_equal(a1, img, sizeof a1);
}

static void test_augment_workspace_is_one_image_only_for_geometric_transforms(void **state)
{
    (void)state;
    kp_augment bc = { .bc = { 0.5, 0.2, 0.2 } }, all = everything(0.5), none = everything(0);
    assert_int_equal(kp_augment_workspace(&bc, 3, 8, 9), 0);
    assert_int_equal(kp_augment_workspace(&all, 3, 8, 9), 3 * 8 * 9);
    assert_int_equal(kp_augment_workspace(&none, 3, 8, 9), 0);
}

static void test_augment_check_rejects_what_the_image_shape_cannot_take(void **state)
{
    (void)state;
    static const struct { kp_augment a; int H, W; const char *msg; } cases[] = {
        { { .rot90 = 0.5 }, 4, 5,
          "augment: rot90 needs square images, but they are 4 x 5 (height x width)" },
        { { .transpose = 1 }, 6, 3,
          "augment: transpose needs square images, but they are 6 x 3 (height x width)" },
        { { .crop = { 1, 5, KP_AUG_ZERO } }, 8, 5,
          "augment: crop pads by 5 pixels, which must be below the image's height and "
          "width (8 x 5)" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[KP_ERRLEN] = "";
        assert_int_equal(kp_augment_check(&cases[i].a, 1, cases[i].H, cases[i].W, err,
                                          sizeof err), KP_ERR_CONFIG);
        assert_string_equal(err, cases[i].msg);
    }
    kp_augment ok = { .hflip = 1, .vflip = 1, .crop = { 1, 4, KP_AUG_ZERO } };
    assert_int_equal(kp_augment_check(&ok, 3, 8, 5, NULL, 0), 0);
}

/* ---- the config grammar ---- */

static void test_augment_parse_reads_the_documented_example(void **state)
{
    (void)state;
    const char *items[] = { "hflip", "vflip 0.5", "rot90", "crop 4", "ssr 0.0625 0.1 15",
                            "bc 0.2 0.2" };
    kp_augment a;
    char err[KP_ERRLEN] = "";
    assert_int_equal(kp_augment_parse(items, 6, &a, err, sizeof err), 0);
    assert_true(a.hflip == 0.5 && a.vflip == 0.5 && a.rot90 == 0.5 && a.transpose == 0);
    assert_true(a.crop.p == 1 && a.crop.pad == 4 && a.crop.border == KP_AUG_ZERO);
    assert_true(a.ssr.p == 0.5 && a.ssr.shift == 0.0625 && a.ssr.scale == 0.1);
    assert_true(a.ssr.rotate == 15 && a.ssr.border == KP_AUG_REFLECT);
    assert_true(a.bc.p == 0.5 && a.bc.brightness == 0.2 && a.bc.contrast == 0.2);
}

static void test_augment_parse_fills_defaults_and_reads_options(void **state)
{
    (void)state;
    kp_augment a;
    const char *items[] = { "crop", "ssr", "bc", "hflip p=1", "vflip 0.25", "transpose" };
    assert_int_equal(kp_augment_parse(items, 6, &a, NULL, 0), 0);
    assert_true(a.crop.p == 1 && a.crop.pad == 4);
    assert_true(a.ssr.shift == 0.0625 && a.ssr.scale == 0.1 && a.ssr.rotate == 45);
    assert_true(a.bc.brightness == 0.2 && a.bc.contrast == 0.2 && a.bc.p == 0.5);
    assert_true(a.hflip == 1 && a.vflip == 0.25 && a.transpose == 0.5);
    const char *more[] = { "crop 8 border=reflect p=0.5", "ssr 0.1 border=zero",
                           "brightness_contrast 0.1 p=0" };
    assert_int_equal(kp_augment_parse(more, 3, &a, NULL, 0), 0);
    assert_true(a.crop.pad == 8 && a.crop.border == KP_AUG_REFLECT && a.crop.p == 0.5);
    assert_true(a.ssr.shift == 0.1 && a.ssr.scale == 0.1 && a.ssr.border == KP_AUG_ZERO);
    assert_true(a.bc.brightness == 0.1 && a.bc.contrast == 0.2 && a.bc.p == 0);
    assert_true(a.hflip == 0 && a.crop.p == 0.5);   /* a fresh parse starts from nothing */
}

static void test_augment_parse_errors_name_the_item_and_the_problem(void **state)
{
    (void)state;
    static const struct { const char *items[3]; int n; const char *msg; } cases[] = {
        { { "hflip", "hlfip" }, 2,
          "augment[1]: unknown augmentation 'hlfip' (did you mean 'hflip'?)" },
        { { "blur 3" }, 1,
          "augment[0]: unknown augmentation 'blur' (known: hflip, vflip, rot90, transpose, "
          "crop, ssr, bc)" },
        { { "  " }, 1, "augment[0]: empty item (expected a name such as 'hflip' or 'crop 4')" },
        { { "vflip 2" }, 1, "augment[0] 'vflip 2': P 2 is outside [0, 1]" },
        { { "crop x" }, 1, "augment[0] 'crop x': PAD 'x' is not a number" },
        { { "crop 2.5" }, 1, "augment[0] 'crop 2.5': PAD '2.5' is not a whole number" },
        { { "crop -1" }, 1, "augment[0] 'crop -1': PAD -1 is outside [0, 65535]" },
        { { "ssr 0.1 1 10" }, 1, "augment[0] 'ssr 0.1 1 10': SCALE 1 is outside [0, 1)" },
        { { "ssr 0.1 0.1 10 5" }, 1,
          "augment[0] 'ssr 0.1 0.1 10 5': too many arguments: ssr takes at most 3 "
          "(SHIFT SCALE ROTATE)" },
        { { "bc -0.1" }, 1, "augment[0] 'bc -0.1': BRIGHTNESS -0.1 is below 0" },
        { { "bc 0.1 nan" }, 1, "augment[0] 'bc 0.1 nan': CONTRAST 'nan' is not a number" },
        { { "hflip p=1.5" }, 1, "augment[0] 'hflip p=1.5': P 1.5 is outside [0, 1]" },
        { { "hflip 0.3 p=0.4" }, 1,
          "augment[0] 'hflip 0.3 p=0.4': the probability is given twice" },
        { { "crop 4 bordr=zero" }, 1,
          "augment[0] 'crop 4 bordr=zero': unknown option 'bordr' (did you mean 'border'?)" },
        { { "hflip border=zero" }, 1,
          "augment[0] 'hflip border=zero': unknown option 'border' (hflip takes only p=)" },
        { { "crop 4 border=wrap" }, 1,
          "augment[0] 'crop 4 border=wrap': border 'wrap' is not zero or reflect" },
        { { "crop 4 p=" }, 1, "augment[0] 'crop 4 p=': option 'p' has no value" },
        { { "hflip", "crop", "hflip 0.2" }, 3,
          "augment[2] 'hflip 0.2': hflip is already listed as augment[0]" },
        { { "ssr", "shift_scale_rotate 0.1" }, 2,
          "augment[1] 'shift_scale_rotate 0.1': ssr is already listed as augment[0]" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kp_augment a, before;
        memset(&a, 0x5a, sizeof a);
        before = a;
        char err[KP_ERRLEN] = "";
        int rc = kp_augment_parse(cases[i].items, cases[i].n, &a, err, sizeof err);
        if (rc != KP_ERR_CONFIG || strcmp(err, cases[i].msg) != 0)
            fail_msg("case %d: rc %d, message '%s'\n  want '%s'", (int)i, rc, err, cases[i].msg);
        assert_memory_equal(&a, &before, sizeof a);
    }
}

static void test_augment_from_params_errors_name_file_line_and_key(void **state)
{
    (void)state;
    kp_params *p = kp_params_create();
    const char *items[] = { "hflip", "crop x" }, *twice[] = { "crop", "hflip", "hflip 1" };
    assert_int_equal(kp_params_set_list(p, "augment", items, 2, 12, 14), 0);
    kp_augment a;
    char err[KP_ERRLEN] = "";
    assert_int_equal(kp_augment_from_params(p, "augment", "cnn.yaml", "stages.cnn.params", &a,
                                            err, sizeof err), KP_ERR_CONFIG);
    assert_string_equal(err, "cnn.yaml:12:14: stages.cnn.params.augment[1] 'crop x': "
                             "PAD 'x' is not a number");
    assert_int_equal(kp_params_set_list(p, "augment", twice, 3, 12, 14), 0);
    assert_int_equal(kp_augment_from_params(p, "augment", "cnn.yaml", "stages.cnn.params", &a,
                                            err, sizeof err), KP_ERR_CONFIG);
    assert_string_equal(err, "cnn.yaml:12:14: stages.cnn.params.augment[2] 'hflip 1': "
                             "hflip is already listed as augment[1]");
    assert_int_equal(kp_augment_from_params(p, "augment", "", "params", &a, err, sizeof err),
                     KP_ERR_CONFIG);
    assert_string_equal(err, "params.augment[2] 'hflip 1': hflip is already listed as augment[1]");
    kp_params_free(p);
}

static void test_augment_from_params_reads_a_scalar_and_an_absent_key(void **state)
{
    (void)state;
    kp_params *p = kp_params_create();
    assert_int_equal(kp_params_set(p, "augment", "rot90 1", 3, 5), 0);
    kp_augment a;
    memset(&a, 0x5a, sizeof a);
    assert_int_equal(kp_augment_from_params(p, "augment", "f.yaml", "m", &a, NULL, 0), 0);
    assert_true(a.rot90 == 1 && a.hflip == 0 && a.crop.p == 0);
    memset(&a, 0x5a, sizeof a);
    assert_int_equal(kp_augment_from_params(p, "aug", "f.yaml", "m", &a, NULL, 0), 0);
    assert_int_equal(kp_augment_any(&a), 0);
    kp_params_free(p);
}

KP_TEST_GROUP(augment)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_augment_hflip_p1_mirrors_columns_of_every_channel),
        cmocka_unit_test(test_augment_vflip_p1_mirrors_rows_of_every_channel),
        cmocka_unit_test(test_augment_transpose_p1_swaps_rows_and_columns),
        cmocka_unit_test(test_augment_hflip_and_vflip_p1_make_a_half_turn),
        cmocka_unit_test(test_augment_rot90_p1_gives_each_of_the_four_quarter_turns),
        cmocka_unit_test(test_augment_all_d4_transforms_compose_in_their_fixed_order),
        cmocka_unit_test(test_augment_transpose_applies_to_the_drawn_quarter_turn),
        cmocka_unit_test(test_augment_shift_zero_border_fills_with_zeros),
        cmocka_unit_test(test_augment_shift_reflect_border_mirrors_without_the_edge),
        cmocka_unit_test(test_augment_shift_beyond_the_image_is_all_border),
        cmocka_unit_test(test_augment_crop_keeps_size_and_shifts_content_within_the_padding),
        cmocka_unit_test(test_augment_ssr_with_zero_limits_is_the_identity),
        cmocka_unit_test(test_augment_warp_quarter_turns_equal_the_d4_rotations),
        cmocka_unit_test(test_augment_warp_scale_two_zooms_about_the_centre),
        cmocka_unit_test(test_augment_warp_shift_by_a_quarter_moves_one_pixel_of_four),
        cmocka_unit_test(test_augment_warp_matches_scipy_bilinear_reference),
        cmocka_unit_test(test_augment_bc_p1_applies_one_alpha_and_beta_within_limits),
        cmocka_unit_test(test_augment_p0_is_the_identity),
        cmocka_unit_test(test_augment_same_seed_gives_the_same_bits_and_another_seed_differs),
        cmocka_unit_test(test_augment_workspace_is_one_image_only_for_geometric_transforms),
        cmocka_unit_test(test_augment_check_rejects_what_the_image_shape_cannot_take),
        cmocka_unit_test(test_augment_parse_reads_the_documented_example),
        cmocka_unit_test(test_augment_parse_fills_defaults_and_reads_options),
        cmocka_unit_test(test_augment_parse_errors_name_the_item_and_the_problem),
        cmocka_unit_test(test_augment_from_params_errors_name_file_line_and_key),
        cmocka_unit_test(test_augment_from_params_reads_a_scalar_and_an_absent_key),
    };
    return KP_RUN(augment, t);
}

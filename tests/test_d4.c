/* test_d4.c - the eight square symmetries: known images, inverses, distinctness. */
#include "kp_test.h"

#include <string.h>
#include "../lib/d4.h"

/* The 2 x 3 image  1 2 3 / 4 5 6  under each transform (C = 1). */
static const struct { int t, H, W; float want[6]; } known[] = {
    { 0, 2, 3, { 1, 2, 3, 4, 5, 6 } },
    { 1, 3, 2, { 3, 6, 2, 5, 1, 4 } },   /* counter-clockwise quarter turn */
    { 2, 2, 3, { 6, 5, 4, 3, 2, 1 } },
    { 3, 3, 2, { 4, 1, 5, 2, 6, 3 } },   /* clockwise quarter turn */
    { 4, 2, 3, { 3, 2, 1, 6, 5, 4 } },   /* horizontal flip */
    { 6, 2, 3, { 4, 5, 6, 1, 2, 3 } },   /* vertical flip */
};

static void test_d4_transforms_of_a_known_image(void **state)
{
    (void)state;
    const float img[6] = { 1, 2, 3, 4, 5, 6 };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        float out[6];
        kp_d4_apply(img, 1, 2, 3, known[i].t, out);
        assert_int_equal(kp_d4_swaps(known[i].t), known[i].H == 3);
        if (memcmp(out, known[i].want, sizeof out) != 0)
            fail_msg("transform %d: got %g %g %g %g %g %g", known[i].t, out[0], out[1], out[2],
                     out[3], out[4], out[5]);
    }
}

static void test_d4_inverse_undoes_every_transform_on_every_channel(void **state)
{
    (void)state;
    enum { C = 2, H = 3, W = 5 };
    float img[C * H * W], fwd[C * H * W], back[C * H * W];
    for (int i = 0; i < C * H * W; i++)
        img[i] = (float)(i * 7 % 31);
    for (int t = 0; t < KP_D4_COUNT; t++) {
        int Ho = kp_d4_swaps(t) ? W : H, Wo = kp_d4_swaps(t) ? H : W;
        kp_d4_apply(img, C, H, W, t, fwd);
        kp_d4_apply(fwd, C, Ho, Wo, kp_d4_inverse(t), back);
        assert_memory_equal(back, img, sizeof img);
    }
}

static void test_d4_eight_transforms_of_an_asymmetric_square_differ(void **state)
{
    (void)state;
    float img[9], out[KP_D4_COUNT][9];
    for (int i = 0; i < 9; i++)
        img[i] = (float)(i * i);
    for (int t = 0; t < KP_D4_COUNT; t++)
        kp_d4_apply(img, 1, 3, 3, t, out[t]);
    for (int a = 0; a < KP_D4_COUNT; a++)
        for (int b = a + 1; b < KP_D4_COUNT; b++)
            if (memcmp(out[a], out[b], sizeof img) == 0)
                fail_msg("transforms %d and %d agree", a, b);
}

KP_TEST_GROUP(d4)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_d4_transforms_of_a_known_image),
        cmocka_unit_test(test_d4_inverse_undoes_every_transform_on_every_channel),
        cmocka_unit_test(test_d4_eight_transforms_of_an_asymmetric_square_differ),
    };
    return KP_RUN(d4, t);
}

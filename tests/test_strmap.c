/* test_strmap.c - the string -> int map behind the graph and run log. */
#include "kp_test.h"

#include <stdio.h>
#include "../pipeline/strmap.h"

static void test_strmap_finds_every_key_across_growth(void **state)
{
    (void)state;
    kp_strmap *m = kp_strmap_create();
    char key[64];
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "runs/demo/fit/m=%d,fold=%d/part.safetensors", i / 5, i % 5);
        assert_int_equal(kp_strmap_put(m, key, i), 0);
    }
    assert_int_equal(kp_strmap_count(m), 5000);
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "runs/demo/fit/m=%d,fold=%d/part.safetensors", i / 5, i % 5);
        assert_int_equal(kp_strmap_get(m, key), i);
    }
    kp_strmap_free(m);
}

static void test_strmap_put_replaces_and_absent_is_minus_one(void **state)
{
    (void)state;
    kp_strmap *m = kp_strmap_create();
    assert_int_equal(kp_strmap_get(m, "a"), -1);   /* empty map */
    assert_int_equal(kp_strmap_put(m, "a", 1), 0);
    assert_int_equal(kp_strmap_put(m, "a", 7), 0);
    assert_int_equal(kp_strmap_count(m), 1);
    assert_int_equal(kp_strmap_get(m, "a"), 7);
    assert_int_equal(kp_strmap_get(m, "b"), -1);
    assert_int_equal(kp_strmap_get(m, ""), -1);
    kp_strmap_free(m);
    kp_strmap_free(NULL);
}

KP_TEST_GROUP(strmap)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_strmap_finds_every_key_across_growth),
        cmocka_unit_test(test_strmap_put_replaces_and_absent_is_minus_one),
    };
    return KP_RUN(strmap, t);
}

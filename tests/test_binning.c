/* test_binning.c - feature cuts and bin codes for the tree models. */
#include "kp_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/err.h"
#include "../lib/rng.h"
#include "../models/binning.h"

static kp_bins *bins_of(const float *X, int64_t rows, int64_t cols, int max_bin, int threads)
{
    kp_matrix m = { X, rows, cols };
    kp_bins *b = NULL;
    char err[KP_ERRLEN] = "";
    assert_int_equal(kp_bins_create(&m, max_bin, threads, &b, err, sizeof err), 0);
    return b;
}

static void test_binning_few_distinct_values_cut_half_way(void **state)
{
    (void)state;
    const float X[] = { 3, 1, 2, 1, NAN, 3 };
    kp_bins *b = bins_of(X, 6, 1, 255, 1);
    const float *c;
    assert_int_equal(kp_bins_cuts(b, 0, &c), 3);
    assert_true(c[0] == 1.5f && c[1] == 2.5f && isinf(c[2]));
    assert_int_equal(kp_bins_code(b, 0, 1), 0);
    assert_int_equal(kp_bins_code(b, 0, 1.5f), 0);
    assert_int_equal(kp_bins_code(b, 0, 1.6f), 1);
    assert_int_equal(kp_bins_code(b, 0, 99), 2);
    assert_int_equal(kp_bins_code(b, 0, -INFINITY), 0);
    assert_int_equal(kp_bins_code(b, 0, INFINITY), 2);
    assert_int_equal(kp_bins_code(b, 0, NAN), KP_BIN_MISSING);
    kp_bins_free(b);
}

/* The radix sort orders signs, zeros and infinities like the float order. */
static void test_binning_negative_values_and_infinities_sort_in_float_order(void **state)
{
    (void)state;
    const float X[] = { 4, -1, -INFINITY, 0, -2.5f, -0.0f, 4, -1 };
    kp_bins *b = bins_of(X, 8, 1, 255, 1);
    const float *c;
    assert_int_equal(kp_bins_cuts(b, 0, &c), 5);
    assert_true(isinf(c[0]) && c[0] < 0);   /* -inf and -2.5 have no finite midpoint */
    assert_true(c[1] == -1.75f && c[2] == -0.5f && c[3] == 2.0f && isinf(c[4]) && c[4] > 0);
    kp_bins_free(b);
}

static void test_binning_many_values_give_quantile_bins_of_similar_size(void **state)
{
    (void)state;
    enum { N = 10000 };
    float *X = malloc(sizeof *X * N);
    kp_rng r;
    kp_rng_seed(&r, 5);
    for (int i = 0; i < N; i++)
        X[i] = (float)kp_rng_normal(&r);
    kp_bins *b = bins_of(X, N, 1, 16, 1);
    const float *c;
    int nb = kp_bins_cuts(b, 0, &c), count[16] = { 0 };
    assert_int_equal(nb, 16);
    for (int i = 0; i < N; i++)
        count[kp_bins_code(b, 0, X[i])]++;
    for (int k = 0; k < nb; k++)
        if (count[k] < N / 16 - 50 || count[k] > N / 16 + 50)
            fail_msg("bin %d holds %d of %d rows", k, count[k], N);
    kp_bins_free(b);
    free(X);
}

/* "code <= k" must be exactly "x <= cut[k]", so trees can store float cuts. */
static void test_binning_code_agrees_with_cuts_on_raw_floats(void **state)
{
    (void)state;
    enum { N = 3000 };
    float *X = malloc(sizeof *X * N);
    kp_rng r;
    kp_rng_seed(&r, 9);
    for (int i = 0; i < N; i++)
        X[i] = (float)(int)(kp_rng_uniform(&r) * 600) / 7.0f;   /* ties and > 255 values */
    kp_bins *b = bins_of(X, N, 1, 255, 1);
    const float *c;
    int nb = kp_bins_cuts(b, 0, &c);
    for (int k = 1; k < nb; k++)
        assert_true(c[k - 1] < c[k]);
    for (int i = 0; i < N; i++) {
        int code = kp_bins_code(b, 0, X[i]);
        for (int k = 0; k < nb; k++)
            assert_int_equal(code <= k, X[i] <= c[k]);
    }
    kp_bins_free(b);
    free(X);
}

static void test_binning_constant_or_missing_feature_has_one_bin(void **state)
{
    (void)state;
    const float X[] = { 7, NAN, 7, NAN, 7, NAN };
    kp_bins *b = bins_of(X, 3, 2, 255, 1);
    const float *c;
    assert_int_equal(kp_bins_cuts(b, 0, &c), 1);
    assert_int_equal(kp_bins_cuts(b, 1, &c), 1);
    assert_int_equal(kp_bins_code(b, 0, 7), 0);
    kp_bins_free(b);
}

static void test_binning_apply_matches_code_whatever_the_threads(void **state)
{
    (void)state;
    enum { N = 9000, D = 3 };
    float *X = malloc(sizeof *X * N * D);
    uint8_t *one = malloc(N * D), *two = malloc(N * D);
    kp_rng r;
    kp_rng_seed(&r, 3);
    for (int i = 0; i < N * D; i++)
        X[i] = i % 17 == 0 ? NAN : (float)kp_rng_normal(&r);
    kp_bins *b1 = bins_of(X, N, D, 64, 1), *b2 = bins_of(X, N, D, 64, 2);
    kp_matrix m = { X, N, D };
    char err[KP_ERRLEN] = "";
    assert_int_equal(kp_bins_apply(b1, &m, one, 1, err, sizeof err), 0);
    assert_int_equal(kp_bins_apply(b2, &m, two, 2, err, sizeof err), 0);
    assert_memory_equal(one, two, N * D);
    for (int i = 0; i < N * D; i++)
        assert_int_equal(one[i], kp_bins_code(b1, i % D, X[i]));
    kp_matrix wrong = { X, N / D, D + 1 };
    assert_int_equal(kp_bins_apply(b1, &wrong, one, 1, err, sizeof err), KP_ERR_MISMATCH);
    assert_string_equal(err, "the bins are for 3 features, not 4");
    kp_bins_free(b1);
    kp_bins_free(b2);
    free(X);
    free(one);
    free(two);
}

static void test_binning_rejects_max_bin_out_of_range(void **state)
{
    (void)state;
    const float X[] = { 1, 2 };
    kp_matrix m = { X, 2, 1 };
    kp_bins *b = NULL;
    char err[KP_ERRLEN] = "";
    assert_int_equal(kp_bins_create(&m, 256, 1, &b, err, sizeof err), KP_ERR_ARG);
    assert_string_equal(err, "max_bin must be in 2..255, not 256");
    assert_null(b);
}

KP_TEST_GROUP(binning)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_binning_few_distinct_values_cut_half_way),
        cmocka_unit_test(test_binning_negative_values_and_infinities_sort_in_float_order),
        cmocka_unit_test(test_binning_many_values_give_quantile_bins_of_similar_size),
        cmocka_unit_test(test_binning_code_agrees_with_cuts_on_raw_floats),
        cmocka_unit_test(test_binning_constant_or_missing_feature_has_one_bin),
        cmocka_unit_test(test_binning_apply_matches_code_whatever_the_threads),
        cmocka_unit_test(test_binning_rejects_max_bin_out_of_range),
    };
    return KP_RUN(binning, t);
}

/* test_sha256.c - lib/sha256: known vectors, streaming, files, hex checks. */
#include "kp_test.h"
#include "../lib/sha256.h"
#include "../lib/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Returns the hex digest of n bytes fed at once. */
static void digest(const void *p, size_t n, char hex[KP_SHA256_HEXLEN])
{
    kp_sha256 *s = kp_sha256_create();
    assert_non_null(s);
    kp_sha256_add(s, p, n);
    kp_sha256_hex(s, hex);
    kp_sha256_free(s);
}

/* Fills n bytes with the pattern the reference digest below was made from
 * (python: bytes(((i*31+7)^(i>>8))&255 for i in range(n))). */
static unsigned char *pattern(size_t n)
{
    unsigned char *p = malloc(n);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(((i * 31 + 7) ^ (i >> 8)) & 255);
    return p;
}

static const char *const PATTERN_1M =
    "62db649367f92b7f585bc2eda21acd6f9a37d6d42b3423e69a309baee0bbd6d8";

/* FIPS 180-2 vectors, checked against python's hashlib. */
static void test_sha256_known_vectors(void **state)
{
    (void)state;
    static const struct { const char *in; const char *hex; } cases[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char hex[KP_SHA256_HEXLEN];
        digest(cases[i].in, strlen(cases[i].in), hex);
        assert_string_equal(hex, cases[i].hex);
    }
}

static void test_sha256_streaming_odd_chunks_equals_one_shot(void **state)
{
    (void)state;
    size_t n = (size_t)1 << 20;
    unsigned char *p = pattern(n);
    static const size_t chunks[] = {1, 3, 63, 64, 65, 1000, 4097, 65537};
    char one[KP_SHA256_HEXLEN];
    digest(p, n, one);
    assert_string_equal(one, PATTERN_1M);
    for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
        kp_sha256 *s = kp_sha256_create();
        assert_non_null(s);
        for (size_t off = 0; off < n; off += chunks[c])
            kp_sha256_add(s, p + off, off + chunks[c] <= n ? chunks[c] : n - off);
        kp_sha256_add(s, p, 0);     /* an empty add changes nothing */
        char hex[KP_SHA256_HEXLEN];
        kp_sha256_hex(s, hex);
        kp_sha256_free(s);
        if (strcmp(hex, one) != 0)
            fail_msg("chunk size %zu: %s != %s", chunks[c], hex, one);
    }
    free(p);
}

static void test_sha256_file_of_one_megabyte_matches_reference(void **state)
{
    (void)state;
    size_t n = (size_t)1 << 20;
    unsigned char *p = pattern(n);
    char *dir = kp_test_tmpdir();
    char *path = kp_test_join(dir, "big.bin");
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
    char hex[KP_SHA256_HEXLEN] = "", err[KP_ERRLEN] = "";
    assert_int_equal(kp_sha256_file(path, hex, err, sizeof err), 0);
    assert_string_equal(hex, PATTERN_1M);
    free(p);
    free(path);
    free(dir);
}

static void test_sha256_file_empty_is_empty_digest(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir();
    char *path = kp_test_write(dir, "empty.txt", "");
    char hex[KP_SHA256_HEXLEN] = "", err[KP_ERRLEN] = "";
    assert_int_equal(kp_sha256_file(path, hex, err, sizeof err), 0);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    free(path);
    free(dir);
}

static void test_sha256_missing_file_error_names_path(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir();
    char *path = kp_test_join(dir, "nope.zip");
    char hex[KP_SHA256_HEXLEN] = "untouched", err[KP_ERRLEN] = "";
    assert_int_equal(kp_sha256_file(path, hex, err, sizeof err), KP_ERR_IO);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "No such file or directory"));
    assert_string_equal(hex, "untouched");
    free(path);
    free(dir);
}

static void test_sha256_directory_is_a_read_error(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir();
    char hex[KP_SHA256_HEXLEN] = "untouched", err[KP_ERRLEN] = "";
    assert_int_equal(kp_sha256_file(dir, hex, err, sizeof err), KP_ERR_IO);
    assert_non_null(strstr(err, dir));
    assert_string_equal(hex, "untouched");
    free(dir);
}

static void test_sha256_valid_table(void **state)
{
    (void)state;
    static const char *const H = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    static const struct { const char *s; int valid; } cases[] = {
        {"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", 1},
        {"E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855", 1},
        {"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85", 0},   /* 63 */
        {"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8555", 0}, /* 65 */
        {"g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", 0},
        {"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85 ", 0},
        {" e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85", 0},
        {"", 0},
        {NULL, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (kp_sha256_valid(cases[i].s) != cases[i].valid)
            fail_msg("case %zu: kp_sha256_valid(\"%s\") != %d", i,
                     cases[i].s ? cases[i].s : "(null)", cases[i].valid);
    assert_int_equal((int)strlen(H), KP_SHA256_HEXLEN - 1);
}

static void test_sha256_eq_table(void **state)
{
    (void)state;
    static const char *const L = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    static const char *const U = "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD";
    static const char *const D = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ae";
    static const struct { const char *a, *b; int eq; } cases[] = {
        {L, L, 1},
        {L, U, 1},
        {U, L, 1},
        {L, D, 0},
        {L, "ba7816bf", 0},       /* a prefix is not a digest */
        {"", "", 0},              /* nor is an empty string, equal or not */
        {"xyz", "xyz", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (kp_sha256_eq(cases[i].a, cases[i].b) != cases[i].eq)
            fail_msg("case %zu: kp_sha256_eq(%s, %s) != %d", i, cases[i].a, cases[i].b,
                     cases[i].eq);
}

static void test_sha256_free_accepts_null(void **state)
{
    (void)state;
    kp_sha256_free(NULL);
}

KP_TEST_GROUP(sha256) {
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_sha256_known_vectors),
        cmocka_unit_test(test_sha256_streaming_odd_chunks_equals_one_shot),
        cmocka_unit_test(test_sha256_file_of_one_megabyte_matches_reference),
        cmocka_unit_test(test_sha256_file_empty_is_empty_digest),
        cmocka_unit_test(test_sha256_missing_file_error_names_path),
        cmocka_unit_test(test_sha256_directory_is_a_read_error),
        cmocka_unit_test(test_sha256_valid_table),
        cmocka_unit_test(test_sha256_eq_table),
        cmocka_unit_test(test_sha256_free_accepts_null),
    };
    return KP_RUN(sha256, t);
}

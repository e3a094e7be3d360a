/* test_lib.c - the foundation library: err, buf, rng, hash, afile, parallel. */
#include "kp_test.h"
#include "../lib/afile.h"
#include "../lib/buf.h"
#include "../lib/err.h"
#include "../lib/hash.h"
#include "../lib/parallel.h"
#include "../lib/rng.h"

#include <dirent.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Returns the number of entries of dir whose name contains ".tmp.". */
static int count_temp_files(const char *dir)
{
    int n = 0;
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)))
        n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}

static int is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* ------------------------------------------------------------------ err */

static void test_err_errf_formats_and_returns_status(void **state)
{
    (void)state;
    char err[KP_ERRLEN];
    assert_int_equal(kp_errf(err, sizeof err, KP_ERR_FORMAT, "%s:%d: bad", "f.csv", 3), KP_ERR_FORMAT);
    assert_string_equal(err, "f.csv:3: bad");
    assert_int_equal(kp_errf(NULL, 0, KP_ERR_IO, "ignored"), KP_ERR_IO);
}

static void test_err_errf_truncates_to_buffer(void **state)
{
    (void)state;
    char err[6];
    kp_errf(err, sizeof err, KP_ERR_ARG, "%s", "abcdefghij");
    assert_string_equal(err, "abcde");
}

static void test_err_prefix_prepends_and_keeps_status(void **state)
{
    (void)state;
    char err[KP_ERRLEN] = "tensor 'w' missing";
    assert_int_equal(kp_err_prefix(err, sizeof err, KP_ERR_NOTFOUND, "stage train"), KP_ERR_NOTFOUND);
    assert_string_equal(err, "stage train: tensor 'w' missing");
    char small[12] = "0123456789";
    kp_err_prefix(small, sizeof small, KP_ERR_IO, "ab");
    assert_string_equal(small, "ab: 0123456");
}

static void test_err_strerror_names_every_status(void **state)
{
    (void)state;
    for (int s = KP_OK; s >= KP_ERR_INTERNAL; s--)
        assert_string_not_equal(kp_strerror(s), "unknown status");
    assert_string_equal(kp_strerror(KP_ERR_CYCLE), "cycle in the stage graph");
    assert_string_equal(kp_strerror(-99), "unknown status");
    assert_string_equal(kp_strerror(5), "unknown status");
}

/* ------------------------------------------------------------------ buf */

static void test_buf_empty_is_empty_string(void **state)
{
    (void)state;
    kp_buf b;
    kp_buf_init(&b, 0);
    assert_string_equal(kp_buf_str(&b), "");
    assert_int_equal(b.len, 0);
    kp_buf_free(&b);
    kp_buf_free(NULL);
}

static void test_buf_grows_across_many_appends(void **state)
{
    (void)state;
    kp_buf b;
    kp_buf_init(&b, 0);
    for (int i = 0; i < 10000; i++)
        assert_int_equal(kp_buf_add(&b, &"0123456789"[i % 10], 1), 0);
    assert_int_equal(b.len, 10000);
    assert_true(b.cap > b.len);
    assert_int_equal(strlen(kp_buf_str(&b)), 10000);
    for (int i = 0; i < 10000; i++)
        assert_int_equal(b.data[i], '0' + i % 10);
    kp_buf_free(&b);
}

static void test_buf_cap_refuses_growth_and_leaves_buffer_unchanged(void **state)
{
    (void)state;
    kp_buf b;
    kp_buf_init(&b, 8);
    assert_int_equal(kp_buf_adds(&b, "abcdef"), 0);
    assert_int_equal(kp_buf_adds(&b, "xyz"), KP_ERR_NOMEM);
    assert_string_equal(kp_buf_str(&b), "abcdef");
    assert_int_equal(kp_buf_printf(&b, "%d", 123), KP_ERR_NOMEM);
    assert_string_equal(kp_buf_str(&b), "abcdef");
    assert_int_equal(kp_buf_adds(&b, "gh"), 0);   /* exactly at the cap */
    assert_string_equal(kp_buf_str(&b), "abcdefgh");
    assert_int_equal(kp_buf_add(&b, "i", 1), KP_ERR_NOMEM);
    kp_buf_free(&b);
}

static void test_buf_printf_appends_formatted_text(void **state)
{
    (void)state;
    kp_buf b;
    kp_buf_init(&b, 0);
    assert_int_equal(kp_buf_adds(&b, "x="), 0);
    assert_int_equal(kp_buf_printf(&b, "%d,%.17g", 42, 0.1), 0);
    assert_string_equal(kp_buf_str(&b), "x=42,0.10000000000000001");
    char big[300];
    memset(big, 'q', sizeof big - 1);
    big[sizeof big - 1] = 0;
    assert_int_equal(kp_buf_printf(&b, "[%s]", big), 0);   /* forces growth */
    assert_int_equal(b.len, 24 + 301);
    assert_int_equal(b.data[b.len - 1], ']');
    kp_buf_free(&b);
}

static void test_buf_take_hands_over_and_empties(void **state)
{
    (void)state;
    kp_buf b;
    kp_buf_init(&b, 0);
    assert_int_equal(kp_buf_adds(&b, "hello"), 0);
    char *s = kp_buf_take(&b);
    assert_string_equal(s, "hello");
    assert_int_equal(b.len, 0);
    assert_string_equal(kp_buf_str(&b), "");
    free(s);
    s = kp_buf_take(&b);    /* empty: a heap "" */
    assert_non_null(s);
    assert_string_equal(s, "");
    free(s);
    kp_buf_free(&b);
}

static void test_buf_reset_keeps_storage(void **state)
{
    (void)state;
    kp_buf b;
    kp_buf_init(&b, 0);
    assert_int_equal(kp_buf_adds(&b, "abc"), 0);
    char *p = b.data;
    kp_buf_reset(&b);
    assert_string_equal(kp_buf_str(&b), "");
    assert_ptr_equal(b.data, p);
    assert_int_equal(kp_buf_adds(&b, "z"), 0);
    assert_string_equal(kp_buf_str(&b), "z");
    kp_buf_free(&b);
}

/* ------------------------------------------------------------------ rng */

static void test_rng_matches_reference_xoshiro256starstar(void **state)
{
    (void)state;
    /* Reference values from an independent Python transcription of
     * splitmix64 + xoshiro256** (seed 42). */
    kp_rng r;
    kp_rng_seed(&r, 42);
    assert_true(kp_rng_next(&r) == 0x15780b2e0c2ec716ULL);
    assert_true(kp_rng_next(&r) == 0x6104d9866d113a7eULL);
    assert_true(kp_rng_next(&r) == 0xae17533239e499a1ULL);
}

static void test_rng_same_seed_same_stream(void **state)
{
    (void)state;
    kp_rng a, b, c;
    kp_rng_seed(&a, 7);
    kp_rng_seed(&b, 7);
    kp_rng_seed(&c, 8);
    int differ = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = kp_rng_next(&a);
        assert_true(x == kp_rng_next(&b));
        differ += x != kp_rng_next(&c);
    }
    assert_true(differ > 990);
}

static void test_rng_below_stays_in_range_and_is_roughly_uniform(void **state)
{
    (void)state;
    kp_rng r;
    kp_rng_seed(&r, 1);
    int count[10] = { 0 };
    for (int i = 0; i < 100000; i++) {
        uint64_t x = kp_rng_below(&r, 10);
        assert_true(x < 10);
        count[x]++;
    }
    for (int k = 0; k < 10; k++)   /* expected 10000, sd ~95 */
        assert_true(count[k] > 9500 && count[k] < 10500);
    for (int i = 0; i < 100; i++)
        assert_true(kp_rng_below(&r, 1) == 0);
    uint64_t big = (1ULL << 63) + 1;
    int high = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = kp_rng_below(&r, big);
        assert_true(x < big);
        high += x >= (1ULL << 62);
    }
    assert_true(high > 430 && high < 570);   /* about half the range */
}

static void test_rng_derive_gives_distinct_streams(void **state)
{
    (void)state;
    enum { N = 1000 };
    static uint64_t seeds[N], firsts[N];
    for (int i = 0; i < N; i++) {
        seeds[i] = kp_rng_derive(42, (uint64_t)i);
        kp_rng r;
        kp_rng_seed(&r, seeds[i]);
        firsts[i] = kp_rng_next(&r);
    }
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++)
            assert_true(seeds[i] != seeds[j] && firsts[i] != firsts[j]);
    assert_true(kp_rng_derive(42, 7) == kp_rng_derive(42, 7));
    assert_true(kp_rng_derive(42, 7) != kp_rng_derive(43, 7));
    assert_true(kp_rng_derive(42, 0) != 42);
}

static void test_rng_uniform_and_normal_have_expected_moments(void **state)
{
    (void)state;
    kp_rng r;
    kp_rng_seed(&r, 3);
    double su = 0, sn = 0, sn2 = 0;
    enum { N = 200000 };
    for (int i = 0; i < N; i++) {
        double u = kp_rng_uniform(&r);
        assert_true(u >= 0.0 && u < 1.0);
        su += u;
        double z = kp_rng_normal(&r);
        assert_true(isfinite(z));
        sn += z;
        sn2 += z * z;
    }
    assert_true(fabs(su / N - 0.5) < 0.005);
    assert_true(fabs(sn / N) < 0.01);
    assert_true(fabs(sn2 / N - 1.0) < 0.02);
}

static void test_rng_shuffle_is_a_deterministic_permutation(void **state)
{
    (void)state;
    int a[50], b[50], seen[50] = { 0 };
    for (int i = 0; i < 50; i++)
        a[i] = b[i] = i;
    kp_rng r1, r2;
    kp_rng_seed(&r1, 9);
    kp_rng_seed(&r2, 9);
    kp_rng_shuffle_int(&r1, a, 50);
    kp_rng_shuffle_int(&r2, b, 50);
    int moved = 0;
    for (int i = 0; i < 50; i++) {
        assert_int_equal(a[i], b[i]);
        seen[a[i]]++;
        moved += a[i] != i;
    }
    for (int i = 0; i < 50; i++)
        assert_int_equal(seen[i], 1);
    assert_true(moved > 25);
    kp_rng_shuffle_int(&r1, a, 0);   /* n = 0 and 1 are no-ops */
    kp_rng_shuffle_int(&r1, a, 1);
}

/* ----------------------------------------------------------------- hash */

static void test_hash_known_values_of_empty_and_abc(void **state)
{
    (void)state;
    /* XXH3-128 reference values (the empty one is xxh128sum's for an empty file). */
    char hex[KP_HASH_HEXLEN];
    kp_hash_hex(kp_hash_bytes("", 0), hex);
    assert_string_equal(hex, "99aa06d3014798d86001c324468d497f");
    kp_hash_hex(kp_hash_bytes(NULL, 0), hex);
    assert_string_equal(hex, "99aa06d3014798d86001c324468d497f");
    kp_hash_hex(kp_hash_bytes("abc", 3), hex);
    assert_string_equal(hex, "06b05ab6733a618578af5f94892f3950");
}

static void test_hash_streaming_equals_one_shot(void **state)
{
    (void)state;
    static char data[5000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (char)(i * 31 + 7);
    kp_hasher *h = kp_hasher_create();
    assert_non_null(h);
    kp_hasher_add(h, data, 1);
    kp_hasher_add(h, data + 1, 0);
    kp_hasher_add(h, data + 1, 2999);
    assert_false(kp_hash_eq(kp_hasher_digest(h), kp_hash_bytes(data, sizeof data)));
    kp_hasher_add(h, data + 3000, 2000);
    assert_true(kp_hash_eq(kp_hasher_digest(h), kp_hash_bytes(data, sizeof data)));
    kp_hasher_free(h);
    kp_hasher_free(NULL);
}

static void test_hash_adds_separates_strings(void **state)
{
    (void)state;
    kp_hasher *h1 = kp_hasher_create(), *h2 = kp_hasher_create();
    kp_hasher_adds(h1, "a");
    kp_hasher_adds(h1, "b");
    kp_hasher_adds(h2, "ab");
    assert_false(kp_hash_eq(kp_hasher_digest(h1), kp_hasher_digest(h2)));
    assert_true(kp_hash_eq(kp_hasher_digest(h1), kp_hash_bytes("a\0b\0", 4)));
    kp_hasher_free(h1);
    kp_hasher_free(h2);
}

static void test_hash_hex_parse_round_trip(void **state)
{
    (void)state;
    kp_hash h = { 0x0123456789abcdefULL, 0xfedcba9876543210ULL }, back;
    char hex[KP_HASH_HEXLEN];
    kp_hash_hex(h, hex);
    assert_string_equal(hex, "0123456789abcdeffedcba9876543210");
    assert_int_equal(kp_hash_parse(hex, &back), 0);
    assert_true(kp_hash_eq(h, back));
    assert_int_equal(kp_hash_parse("0123456789ABCDEFFEDCBA9876543210", &back), 0);
    assert_true(kp_hash_eq(h, back));
}

static void test_hash_parse_rejects_bad_hex(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", "0123456789abcdeffedcba987654321",        /* 31 digits */
        "0123456789abcdeffedcba98765432100",          /* 33 digits */
        "0123456789abcdeffedcba987654321g", " 123456789abcdeffedcba9876543210",
    };
    kp_hash out = { 1, 2 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(kp_hash_parse(bad[i], &out), KP_ERR_FORMAT);
    assert_true(out.hi == 1 && out.lo == 2);   /* untouched */
}

static void test_hash_file_equals_hash_of_contents_across_chunks(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), *path = kp_test_join(dir, "big.bin");
    size_t n = (5u << 20) / 2 + 123;   /* 2.5 MiB: three 1 MiB chunks */
    unsigned char *data = malloc(n);
    for (size_t i = 0; i < n; i++)
        data[i] = (unsigned char)(i ^ (i >> 8));
    char err[KP_ERRLEN];
    assert_int_equal(kp_write_file_atomic(path, data, n, err, sizeof err), 0);
    kp_hash h;
    assert_int_equal(kp_hash_file(path, &h, err, sizeof err), 0);
    assert_true(kp_hash_eq(h, kp_hash_bytes(data, n)));
    free(data);
    free(path);
    free(dir);
}

static void test_hash_file_missing_names_path(void **state)
{
    (void)state;
    char err[KP_ERRLEN];
    kp_hash h = { 5, 6 };
    assert_int_equal(kp_hash_file("/nonexistent/kp/x.bin", &h, err, sizeof err), KP_ERR_IO);
    assert_non_null(strstr(err, "/nonexistent/kp/x.bin"));
    assert_non_null(strstr(err, "No such file"));
    assert_true(h.hi == 5 && h.lo == 6);
}

/* ---------------------------------------------------------------- afile */

static void test_afile_commit_replaces_atomically_and_leaves_no_temp(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), *path = kp_test_write(dir, "out.csv", "old\n");
    char err[KP_ERRLEN], *s;
    kp_afile *f;
    assert_int_equal(kp_afile_open(path, &f, err, sizeof err), 0);
    fputs("new contents\n", kp_afile_stream(f));
    fflush(kp_afile_stream(f));
    s = kp_test_read(path);
    assert_string_equal(s, "old\n");   /* untouched until commit */
    free(s);
    assert_int_equal(count_temp_files(dir), 1);
    assert_int_equal(kp_afile_commit(f, err, sizeof err), 0);
    s = kp_test_read(path);
    assert_string_equal(s, "new contents\n");
    free(s);
    assert_int_equal(count_temp_files(dir), 0);
    free(path);
    free(dir);
}

static void test_afile_abort_leaves_destination_untouched(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), *path = kp_test_write(dir, "keep.txt", "keep\n");
    char err[KP_ERRLEN];
    kp_afile *f;
    assert_int_equal(kp_afile_open(path, &f, err, sizeof err), 0);
    fputs("garbage", kp_afile_stream(f));
    kp_afile_abort(f);
    kp_afile_abort(NULL);
    char *s = kp_test_read(path);
    assert_string_equal(s, "keep\n");
    free(s);
    assert_int_equal(count_temp_files(dir), 0);
    free(path);
    free(dir);
}

static void test_afile_open_creates_missing_folders(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), *path = kp_test_join(dir, "a/b/c/out.bin");
    char err[KP_ERRLEN];
    assert_int_equal(kp_write_file_atomic(path, "xy", 2, err, sizeof err), 0);
    char *s = kp_test_read(path);
    assert_string_equal(s, "xy");
    free(s);
    free(path);
    free(dir);
}

static void test_afile_open_under_a_file_names_path(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), *file = kp_test_write(dir, "plain", "x");
    char *path = kp_test_join(file, "sub/out.bin");
    char err[KP_ERRLEN];
    kp_afile *f = NULL;
    assert_int_equal(kp_afile_open(path, &f, err, sizeof err), KP_ERR_IO);
    assert_null(f);
    assert_non_null(strstr(err, path));
    free(path);
    free(file);
    free(dir);
}

static void test_mkdirs_creates_nested_and_accepts_existing(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), *deep = kp_test_join(dir, "x/y/z/");
    char err[KP_ERRLEN];
    assert_int_equal(kp_mkdirs(deep, err, sizeof err), 0);
    assert_true(is_dir(deep));
    assert_int_equal(kp_mkdirs(deep, err, sizeof err), 0);   /* again: fine */
    assert_int_equal(kp_mkdirs(dir, err, sizeof err), 0);
    free(deep);
    free(dir);
}

static void test_mkdirs_through_a_file_fails_with_path(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), *file = kp_test_write(dir, "f", "x");
    char *deep = kp_test_join(file, "g");
    char err[KP_ERRLEN];
    assert_int_equal(kp_mkdirs(deep, err, sizeof err), KP_ERR_IO);
    assert_non_null(strstr(err, deep));
    assert_int_equal(kp_mkdirs(file, err, sizeof err), KP_ERR_IO);
    assert_non_null(strstr(err, "not a directory"));
    free(deep);
    free(file);
    free(dir);
}

static void test_read_file_round_trips_binary(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), *path = kp_test_join(dir, "bin");
    char err[KP_ERRLEN], *out;
    size_t len;
    static const char data[] = "a\0b\nc\xff";
    assert_int_equal(kp_write_file_atomic(path, data, sizeof data - 1, err, sizeof err), 0);
    assert_int_equal(kp_read_file(path, &out, &len, err, sizeof err), 0);
    assert_int_equal(len, sizeof data - 1);
    assert_memory_equal(out, data, len);
    assert_int_equal(out[len], 0);
    free(out);
    assert_int_equal(kp_write_file_atomic(path, NULL, 0, err, sizeof err), 0);
    assert_int_equal(kp_read_file(path, &out, &len, err, sizeof err), 0);
    assert_int_equal(len, 0);
    assert_string_equal(out, "");
    free(out);
    free(path);
    free(dir);
}

static void test_read_file_missing_names_path(void **state)
{
    (void)state;
    char err[KP_ERRLEN], *out = NULL;
    size_t len = 77;
    assert_int_equal(kp_read_file("/nonexistent/kp.txt", &out, &len, err, sizeof err), KP_ERR_IO);
    assert_non_null(strstr(err, "/nonexistent/kp.txt"));
    assert_null(out);
    assert_int_equal(len, 77);
}

/* ------------------------------------------------------------- parallel */

typedef struct visit_ctx {
    atomic_int count[1000];
    atomic_int bad_tid;
    int n_threads;
} visit_ctx;

static void visit(void *data, size_t i, int tid)
{
    visit_ctx *c = data;
    atomic_fetch_add(&c->count[i], 1);
    if (tid < 0 || tid >= (c->n_threads > 1 ? c->n_threads : 1))
        atomic_fetch_add(&c->bad_tid, 1);
}

static void test_parallel_for_visits_every_index_once(void **state)
{
    (void)state;
    static const int threads[] = { 1, 2, 7 };
    static const size_t sizes[] = { 0, 1, 3, 1000 };
    for (size_t a = 0; a < 3; a++) {
        for (size_t b = 0; b < 4; b++) {
            visit_ctx *c = calloc(1, sizeof *c);
            c->n_threads = threads[a];
            kp_parallel_for(threads[a], visit, c, sizes[b]);
            for (size_t i = 0; i < 1000; i++)
                assert_int_equal(atomic_load(&c->count[i]), i < sizes[b] ? 1 : 0);
            assert_int_equal(atomic_load(&c->bad_tid), 0);
            free(c);
        }
    }
}

static void test_thread_budget_reads_env_else_core_count(void **state)
{
    (void)state;
    char *old = getenv("KPIPE_THREADS") ? strdup(getenv("KPIPE_THREADS")) : NULL;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    setenv("KPIPE_THREADS", "3", 1);
    assert_int_equal(kp_thread_budget(), 3);
    static const char *const bad[] = { "0", "-2", "abc", "4x", "" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        setenv("KPIPE_THREADS", bad[i], 1);
        assert_int_equal(kp_thread_budget(), (int)cores);
    }
    unsetenv("KPIPE_THREADS");
    assert_int_equal(kp_thread_budget(), (int)cores);
    if (old)
        setenv("KPIPE_THREADS", old, 1);
    free(old);
}

KP_TEST_GROUP(lib) {
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_err_errf_formats_and_returns_status),
        cmocka_unit_test(test_err_errf_truncates_to_buffer),
        cmocka_unit_test(test_err_prefix_prepends_and_keeps_status),
        cmocka_unit_test(test_err_strerror_names_every_status),
        cmocka_unit_test(test_buf_empty_is_empty_string),
        cmocka_unit_test(test_buf_grows_across_many_appends),
        cmocka_unit_test(test_buf_cap_refuses_growth_and_leaves_buffer_unchanged),
        cmocka_unit_test(test_buf_printf_appends_formatted_text),
        cmocka_unit_test(test_buf_take_hands_over_and_empties),
        cmocka_unit_test(test_buf_reset_keeps_storage),
        cmocka_unit_test(test_rng_matches_reference_xoshiro256starstar),
        cmocka_unit_test(test_rng_same_seed_same_stream),
        cmocka_unit_test(test_rng_below_stays_in_range_and_is_roughly_uniform),
        cmocka_unit_test(test_rng_derive_gives_distinct_streams),
        cmocka_unit_test(test_rng_uniform_and_normal_have_expected_moments),
        cmocka_unit_test(test_rng_shuffle_is_a_deterministic_permutation),
        cmocka_unit_test(test_hash_known_values_of_empty_and_abc),
        cmocka_unit_test(test_hash_streaming_equals_one_shot),
        cmocka_unit_test(test_hash_adds_separates_strings),
        cmocka_unit_test(test_hash_hex_parse_round_trip),
        cmocka_unit_test(test_hash_parse_rejects_bad_hex),
        cmocka_unit_test(test_hash_file_equals_hash_of_contents_across_chunks),
        cmocka_unit_test(test_hash_file_missing_names_path),
        cmocka_unit_test(test_afile_commit_replaces_atomically_and_leaves_no_temp),
        cmocka_unit_test(test_afile_abort_leaves_destination_untouched),
        cmocka_unit_test(test_afile_open_creates_missing_folders),
        cmocka_unit_test(test_afile_open_under_a_file_names_path),
        cmocka_unit_test(test_mkdirs_creates_nested_and_accepts_existing),
        cmocka_unit_test(test_mkdirs_through_a_file_fails_with_path),
        cmocka_unit_test(test_read_file_round_trips_binary),
        cmocka_unit_test(test_read_file_missing_names_path),
        cmocka_unit_test(test_parallel_for_visits_every_index_once),
        cmocka_unit_test(test_thread_budget_reads_env_else_core_count),
    };
    return KP_RUN(lib, t);
}

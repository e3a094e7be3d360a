/* test_runlog.c - the run log and the content-hash cache, on the in-memory file system. */
#include "kp_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/buf.h"
#include "../lib/err.h"
#include "../pipeline/fs.h"
#include "../pipeline/runlog.h"

#define DIR "/run/.kpipe"
#define LOG DIR "/runlog"

static kp_runlog *open_log(kp_fs *fs)
{
    char err[KP_ERRLEN] = "";
    kp_runlog *rl = NULL;
    int rc = kp_runlog_open(fs, DIR, 0, &rl, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    return rl;
}

/* Records task with a key made from `seed` and one output. */
static void record(kp_runlog *rl, const char *task, uint64_t seed, int exit_status)
{
    const char *in[] = { "/data/in.csv" }, *out[] = { "/run/a/out" };
    kp_hash ih[] = { { 1, 2 } }, oh[] = { { 3, seed } };
    kp_runlog_entry e = { task, { seed, seed }, { 7, 7 }, 123, 45, 40, 2048, exit_status,
                          1, in, ih, 1, out, oh };
    char err[KP_ERRLEN];
    assert_int_equal(kp_runlog_record(rl, &e, err, sizeof err), 0);
}

static void test_runlog_entry_round_trips_through_the_file(void **state)
{
    (void)state;
    kp_fs *fs = kp_fs_mem_create();
    kp_runlog *rl = open_log(fs);
    record(rl, "lr/C=0.1#part2", 9, 0);
    kp_runlog_close(rl);
    rl = open_log(fs);
    const kp_runlog_entry *e = kp_runlog_find(rl, "lr/C=0.1#part2");
    assert_non_null(e);
    assert_true(e->key.hi == 9 && e->key.lo == 9 && e->params.hi == 7);
    assert_int_equal(e->start_ns, 123);
    assert_int_equal(e->wall_ms, 45);
    assert_int_equal(e->cpu_ms, 40);
    assert_int_equal(e->rss_kb, 2048);
    assert_int_equal(e->exit_status, 0);
    assert_int_equal(e->n_inputs, 1);
    assert_true(e->in_hashes[0].hi == 1 && e->in_hashes[0].lo == 2);
    assert_null(e->in_paths);   /* paths are not stored: the graph knows them */
    assert_int_equal(e->n_outputs, 1);
    assert_true(e->out_hashes[0].hi == 3 && e->out_hashes[0].lo == 9);
    kp_runlog_close(rl);
    kp_fs_free(fs);
}

static void test_runlog_last_entry_for_a_task_wins(void **state)
{
    (void)state;
    kp_fs *fs = kp_fs_mem_create();
    kp_runlog *rl = open_log(fs);
    record(rl, "a", 1, 0);
    record(rl, "b", 5, 0);
    record(rl, "a", 2, 1);
    kp_runlog_close(rl);
    rl = open_log(fs);
    const kp_runlog_entry *e = kp_runlog_find(rl, "a");
    assert_non_null(e);
    assert_true(e->key.hi == 2);
    assert_int_equal(e->exit_status, 1);
    assert_true(kp_runlog_find(rl, "b")->key.hi == 5);
    kp_runlog_close(rl);
    kp_fs_free(fs);
}

static void test_runlog_torn_last_line_is_ignored(void **state)
{
    (void)state;
    const size_t cuts[] = { 1, 10 };   /* just the newline; part of the hashes too */
    for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
        kp_fs *fs = kp_fs_mem_create();
        kp_runlog *rl = open_log(fs);
        record(rl, "a", 1, 0);
        record(rl, "b", 2, 0);
        kp_runlog_close(rl);
        /* cut the last line short, as a run killed mid-append would */
        char *text = strdup(kp_fs_mem_get(fs, LOG));
        text[strlen(text) - cuts[k]] = 0;
        assert_int_equal(kp_fs_mem_put(fs, LOG, text), 0);
        free(text);
        rl = open_log(fs);
        assert_non_null(kp_runlog_find(rl, "a"));
        assert_null(kp_runlog_find(rl, "b"));
        assert_int_equal(kp_runlog_discarded(rl), 0);
        /* the log was repaired: a new line is not glued to the torn one */
        record(rl, "c", 3, 0);
        kp_runlog_close(rl);
        rl = open_log(fs);
        assert_non_null(kp_runlog_find(rl, "a"));
        assert_non_null(kp_runlog_find(rl, "c"));
        kp_runlog_close(rl);
        kp_fs_free(fs);
    }
}

static void test_runlog_malformed_line_is_skipped_and_later_lines_kept(void **state)
{
    (void)state;
    kp_fs *fs = kp_fs_mem_create();
    kp_runlog *rl = open_log(fs);
    record(rl, "a", 1, 0);
    kp_runlog_close(rl);
    kp_buf b;
    kp_buf_init(&b, 0);
    assert_int_equal(kp_buf_adds(&b, kp_fs_mem_get(fs, LOG)), 0);
    assert_int_equal(kp_buf_adds(&b, "T\tbroken\tnot-a-hash\n"), 0);
    assert_int_equal(kp_fs_mem_put(fs, LOG, kp_buf_str(&b)), 0);
    kp_buf_free(&b);
    rl = open_log(fs);
    record(rl, "b", 2, 0);
    kp_runlog_close(rl);
    rl = open_log(fs);
    assert_non_null(kp_runlog_find(rl, "a"));
    assert_non_null(kp_runlog_find(rl, "b"));
    assert_null(kp_runlog_find(rl, "broken"));
    kp_runlog_close(rl);
    kp_fs_free(fs);
}

static void test_runlog_unknown_version_or_garbage_is_discarded(void **state)
{
    (void)state;
    const char *cases[] = {
        "# kpipe runlog v99\nT\ta\t00000000000000010000000000000001\n",
        "\x01\x02garbage without a newline",
        "",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kp_fs *fs = kp_fs_mem_create();
        assert_int_equal(kp_fs_mem_put(fs, LOG, cases[i]), 0);
        kp_runlog *rl = open_log(fs);
        assert_int_equal(kp_runlog_discarded(rl), 1);
        assert_null(kp_runlog_find(rl, "a"));
        assert_string_equal(kp_fs_mem_get(fs, LOG), KP_RUNLOG_HEADER "\n");
        kp_runlog_close(rl);
        kp_fs_free(fs);
    }
}

static void test_runlog_escapes_tabs_and_newlines_in_names(void **state)
{
    (void)state;
    kp_fs *fs = kp_fs_mem_create();
    kp_runlog *rl = open_log(fs);
    record(rl, "odd\tname\nwith\\slash", 4, 0);
    kp_runlog_close(rl);
    rl = open_log(fs);
    const kp_runlog_entry *e = kp_runlog_find(rl, "odd\tname\nwith\\slash");
    assert_non_null(e);
    assert_true(e->key.hi == 4);
    kp_runlog_close(rl);
    kp_fs_free(fs);
}

static void test_runlog_hash_cache_hit_reads_no_data(void **state)
{
    (void)state;
    kp_fs *fs = kp_fs_mem_create();
    char err[KP_ERRLEN];
    kp_hash h1, h2;
    assert_int_equal(kp_fs_mem_put(fs, "/data/train.csv", "a,b\n1,2\n"), 0);
    kp_runlog *rl = open_log(fs);
    int before = kp_fs_mem_reads(fs);
    assert_int_equal(kp_runlog_file_hash(rl, "/data/train.csv", &h1, err, sizeof err), 0);
    assert_int_equal(kp_fs_mem_reads(fs), before + 1);
    kp_runlog_close(rl);
    rl = open_log(fs);   /* reading the log itself is one read */
    before = kp_fs_mem_reads(fs);
    assert_int_equal(kp_runlog_file_hash(rl, "/data/train.csv", &h2, err, sizeof err), 0);
    assert_int_equal(kp_fs_mem_reads(fs), before);
    assert_true(kp_hash_eq(h1, h2));
    kp_runlog_close(rl);
    kp_fs_free(fs);
}

static void test_runlog_rewritten_file_is_hashed_again(void **state)
{
    (void)state;
    kp_fs *fs = kp_fs_mem_create();
    char err[KP_ERRLEN];
    kp_hash h1, h2;
    assert_int_equal(kp_fs_mem_put(fs, "/f", "one"), 0);
    kp_runlog *rl = open_log(fs);
    assert_int_equal(kp_runlog_file_hash(rl, "/f", &h1, err, sizeof err), 0);
    assert_int_equal(kp_fs_mem_put(fs, "/f", "two"), 0);   /* new inode and mtime */
    int before = kp_fs_mem_reads(fs);
    assert_int_equal(kp_runlog_file_hash(rl, "/f", &h2, err, sizeof err), 0);
    assert_int_equal(kp_fs_mem_reads(fs), before + 1);
    assert_false(kp_hash_eq(h1, h2));
    kp_runlog_close(rl);
    kp_fs_free(fs);
}

static void test_runlog_hash_of_missing_file_is_notfound(void **state)
{
    (void)state;
    kp_fs *fs = kp_fs_mem_create();
    char err[KP_ERRLEN] = "";
    kp_hash h = { 5, 5 };
    kp_runlog *rl = open_log(fs);
    assert_int_equal(kp_runlog_file_hash(rl, "/nope", &h, err, sizeof err), KP_ERR_NOTFOUND);
    assert_string_equal(err, "/nope: no such file");
    assert_true(h.hi == 5 && h.lo == 5);
    kp_runlog_close(rl);
    kp_fs_free(fs);
}

static void test_runlog_compaction_keeps_only_live_entries(void **state)
{
    (void)state;
    kp_fs *fs = kp_fs_mem_create();
    kp_runlog *rl = open_log(fs);
    for (int i = 0; i < 300; i++)
        record(rl, i % 2 ? "a" : "b", (uint64_t)i, 0);
    assert_int_equal(kp_runlog_lines(rl), 300);
    kp_runlog_close(rl);   /* grown past 3x the live entries: compacted */
    rl = open_log(fs);
    assert_int_equal(kp_runlog_lines(rl), 2);
    assert_true(kp_runlog_find(rl, "a")->key.hi == 299);
    assert_true(kp_runlog_find(rl, "b")->key.hi == 298);
    kp_runlog_close(rl);
    kp_fs_free(fs);
}

static void test_runlog_read_only_never_writes(void **state)
{
    (void)state;
    kp_fs *fs = kp_fs_mem_create();
    char err[KP_ERRLEN];
    kp_hash h;
    kp_runlog *rl = NULL;
    assert_int_equal(kp_fs_mem_put(fs, "/f", "x"), 0);
    assert_int_equal(kp_runlog_open(fs, DIR, 1, &rl, err, sizeof err), 0);
    assert_int_equal(kp_runlog_file_hash(rl, "/f", &h, err, sizeof err), 0);
    record(rl, "a", 1, 0);
    kp_runlog_close(rl);
    assert_null(kp_fs_mem_get(fs, LOG));
    kp_fs_free(fs);
}

static void test_runlog_task_line_holds_hashes_but_no_paths(void **state)
{
    (void)state;
    kp_fs *fs = kp_fs_mem_create();
    kp_runlog *rl = open_log(fs);
    record(rl, "t", 9, 0);
    kp_runlog_close(rl);
    const char *text = kp_fs_mem_get(fs, LOG);
    assert_string_equal(text, KP_RUNLOG_HEADER "\n"
                        "T\tt\t00000000000000090000000000000009\t00000000000000070000000000000007"
                        "\t123\t45\t40\t2048\t0\t1\t1"
                        "\t00000000000000010000000000000002\t00000000000000030000000000000009\n");
    kp_fs_free(fs);
}

static void test_runlog_hashes_with_every_hex_digit_round_trip(void **state)
{
    (void)state;
    kp_fs *fs = kp_fs_mem_create();
    char err[KP_ERRLEN];
    const kp_hash in[] = { { 0x0123456789abcdefull, 0xfedcba9876543210ull } };
    const kp_hash out[] = { { 0xffffffffffffffffull, 0x8000000000000001ull } };
    kp_runlog_entry e = { "t", { 0xa5a5a5a55a5a5a5aull, 0x0f0f0f0ff0f0f0f0ull }, { 0, 1 },
                          1, 2, 3, 4, 0, 1, NULL, in, 1, NULL, out };
    kp_runlog *rl = open_log(fs);
    assert_int_equal(kp_runlog_record(rl, &e, err, sizeof err), 0);
    kp_runlog_close(rl);
    rl = open_log(fs);
    const kp_runlog_entry *got = kp_runlog_find(rl, "t");
    assert_non_null(got);
    assert_true(kp_hash_eq(got->key, e.key) && kp_hash_eq(got->params, e.params));
    assert_true(kp_hash_eq(got->in_hashes[0], in[0]) && kp_hash_eq(got->out_hashes[0], out[0]));
    kp_runlog_close(rl);
    kp_fs_free(fs);
}

static void test_runlog_malformed_task_lines_are_junk(void **state)
{
    (void)state;
    static const char *const lines[] = {
        /* one output hash announced, none given */
        "T\tt\t00000000000000090000000000000009\t00000000000000070000000000000007"
        "\t1\t1\t1\t1\t0\t0\t1\n",
        /* a hash more than announced */
        "T\tt\t00000000000000090000000000000009\t00000000000000070000000000000007"
        "\t1\t1\t1\t1\t0\t0\t0\t00000000000000010000000000000002\n",
        /* hash digits out of range: upper case, and the bytes next to '0'-'9' and 'a'-'f' */
        "T\tt\t0000000000000009000000000000000A\t00000000000000070000000000000007"
        "\t1\t1\t1\t1\t0\t0\t0\n",
        "T\tt\t000000000000000900000000000000:0\t00000000000000070000000000000007"
        "\t1\t1\t1\t1\t0\t0\t0\n",
        "T\tt\t00000000000000090000000000000/00\t00000000000000070000000000000007"
        "\t1\t1\t1\t1\t0\t0\t0\n",
        "T\tt\t0000000000000009000000000000000g\t00000000000000070000000000000007"
        "\t1\t1\t1\t1\t0\t0\t0\n",
        "T\tt\t000000000000000900000000000`0000\t00000000000000070000000000000007"
        "\t1\t1\t1\t1\t0\t0\t0\n",
        /* a hash one digit short */
        "T\tt\t0000000000000009000000000000000\t00000000000000070000000000000007"
        "\t1\t1\t1\t1\t0\t0\t0\n",
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        kp_fs *fs = kp_fs_mem_create();
        kp_buf b;
        kp_buf_init(&b, 0);
        assert_int_equal(kp_buf_adds(&b, KP_RUNLOG_HEADER "\n"), 0);
        assert_int_equal(kp_buf_adds(&b, lines[i]), 0);
        assert_int_equal(kp_fs_mem_put(fs, LOG, kp_buf_str(&b)), 0);
        kp_buf_free(&b);
        kp_runlog *rl = open_log(fs);
        assert_null(kp_runlog_find(rl, "t"));
        assert_string_equal(kp_fs_mem_get(fs, LOG), KP_RUNLOG_HEADER "\n");   /* rewritten */
        kp_runlog_close(rl);
        kp_fs_free(fs);
    }
}

static void test_runlog_seen_lookup_skips_the_stat_until_a_full_lookup(void **state)
{
    (void)state;
    kp_fs *fs = kp_fs_mem_create();
    char err[KP_ERRLEN];
    kp_hash h1, h2, h3, h4;
    assert_int_equal(kp_fs_mem_put(fs, "/f", "one"), 0);
    kp_runlog *rl = open_log(fs);
    assert_int_equal(kp_runlog_file_hash_seen(rl, "/f", &h1, err, sizeof err), 0);
    assert_int_equal(kp_fs_mem_put(fs, "/f", "two"), 0);   /* as a task rewriting it */
    /* looked up already in this process: served from memory, the change unseen */
    assert_int_equal(kp_runlog_file_hash_seen(rl, "/f", &h2, err, sizeof err), 0);
    assert_true(kp_hash_eq(h1, h2));
    /* the executor hashes a task's outputs with the full lookup after it ran */
    assert_int_equal(kp_runlog_file_hash(rl, "/f", &h3, err, sizeof err), 0);
    assert_false(kp_hash_eq(h1, h3));
    assert_int_equal(kp_runlog_file_hash_seen(rl, "/f", &h4, err, sizeof err), 0);
    assert_true(kp_hash_eq(h3, h4));
    kp_runlog_close(rl);
    kp_fs_free(fs);
}

static void test_runlog_seen_lookup_stats_files_only_loaded_from_the_log(void **state)
{
    (void)state;
    kp_fs *fs = kp_fs_mem_create();
    char err[KP_ERRLEN];
    kp_hash h1, h2;
    assert_int_equal(kp_fs_mem_put(fs, "/f", "one"), 0);
    kp_runlog *rl = open_log(fs);
    assert_int_equal(kp_runlog_file_hash(rl, "/f", &h1, err, sizeof err), 0);
    kp_runlog_close(rl);
    assert_int_equal(kp_fs_mem_put(fs, "/f", "two"), 0);
    rl = open_log(fs);   /* the cache line is from an earlier process: not trusted unseen */
    assert_int_equal(kp_runlog_file_hash_seen(rl, "/f", &h2, err, sizeof err), 0);
    assert_false(kp_hash_eq(h1, h2));
    kp_runlog_close(rl);
    kp_fs_free(fs);
}

KP_TEST_GROUP(runlog)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_runlog_entry_round_trips_through_the_file),
        cmocka_unit_test(test_runlog_last_entry_for_a_task_wins),
        cmocka_unit_test(test_runlog_torn_last_line_is_ignored),
        cmocka_unit_test(test_runlog_malformed_line_is_skipped_and_later_lines_kept),
        cmocka_unit_test(test_runlog_unknown_version_or_garbage_is_discarded),
        cmocka_unit_test(test_runlog_escapes_tabs_and_newlines_in_names),
        cmocka_unit_test(test_runlog_hash_cache_hit_reads_no_data),
        cmocka_unit_test(test_runlog_rewritten_file_is_hashed_again),
        cmocka_unit_test(test_runlog_hash_of_missing_file_is_notfound),
        cmocka_unit_test(test_runlog_compaction_keeps_only_live_entries),
        cmocka_unit_test(test_runlog_read_only_never_writes),
        cmocka_unit_test(test_runlog_task_line_holds_hashes_but_no_paths),
        cmocka_unit_test(test_runlog_hashes_with_every_hex_digit_round_trip),
        cmocka_unit_test(test_runlog_malformed_task_lines_are_junk),
        cmocka_unit_test(test_runlog_seen_lookup_skips_the_stat_until_a_full_lookup),
        cmocka_unit_test(test_runlog_seen_lookup_stats_files_only_loaded_from_the_log),
    };
    return KP_RUN(runlog, t);
}

/* test_stamp.c - the up-to-date stamp: what makes kp_stamp_check say no. */
#include "kp_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "../lib/err.h"
#include "../lib/hash.h"
#include "../pipeline/fs.h"
#include "../pipeline/stamp.h"

typedef struct fixture {
    char *dir, *config, *runlog, *data, *stamp;
} fixture;

/* Writes a config, a run log and one data file, and a valid stamp of them. */
static fixture make_stamped(void)
{
    fixture f;
    f.dir = kp_test_tmpdir();
    f.config = kp_test_write(f.dir, "c.yaml", "competition: {}\n");
    f.runlog = kp_test_write(f.dir, "runlog", "# kpipe runlog v2\n");
    f.data = kp_test_write(f.dir, "data.csv", "a,b\n1,2\n");
    f.stamp = kp_test_join(f.dir, "cache/stamp");
    kp_fstat st;
    kp_buf lines;
    char err[KP_ERRLEN] = "";
    kp_buf_init(&lines, 0);
    assert_int_equal(kp_fs_stat(kp_fs_real(), f.data, &st, err, sizeof err), 0);
    assert_true(kp_buf_printf(&lines, "%llu %llu %lld %lld %s\n", (unsigned long long)st.dev,
                              (unsigned long long)st.ino, (long long)st.size,
                              (long long)st.mtime_ns, f.data) == 0);
    kp_hash h = kp_hash_bytes("competition: {}\n", strlen("competition: {}\n"));
    assert_int_equal(kp_stamp_write(kp_fs_real(), f.stamp, h, 7, f.runlog, &lines, err,
                                    sizeof err), 0);
    kp_buf_free(&lines);
    return f;
}

static void fixture_free(fixture *f)
{
    free(f->dir);
    free(f->config);
    free(f->runlog);
    free(f->data);
    free(f->stamp);
}

static void test_stamp_of_unchanged_files_gives_the_task_count(void **state)
{
    (void)state;
    fixture f = make_stamped();
    assert_int_equal(kp_stamp_check(f.stamp, f.config), 7);
    fixture_free(&f);
}

/* Each change, applied in a fresh fixture, must make the stamp say no. */
typedef struct change_case {
    const char *what;
    const char *shell;   /* run in the fixture's folder */
} change_case;

static const change_case changes[] = {
    { "config text", "printf 'competition: {k: 1}\\n' > c.yaml" },
    { "data content", "printf 'a,b\\n1,3\\n' > data.csv" },
    { "data mtime only", "touch -d '2001-01-01' data.csv" },
    { "data replaced by a copy", "cp data.csv x && mv x data.csv" },
    { "data gone", "rm data.csv" },
    { "run log appended", "echo 'T x' >> runlog" },
    { "run log gone", "rm runlog" },
    { "another kpipe version", "sed -i 's/^version .*/version 0.0.0-old/' cache/stamp" },
    { "a torn file line", "sed -i '$ s/ [^ ]*$//' cache/stamp" },
    { "no trailing newline", "truncate -s -1 cache/stamp" },
    { "a bad number", "sed -i '$ s/^[0-9]*/x/' cache/stamp" },
    { "the task count gone", "sed -i 's/^tasks .*/tasks/' cache/stamp" },
    { "an empty stamp", ": > cache/stamp" },
    { "no stamp", "rm cache/stamp" },
};

static void test_stamp_says_no_after_any_change(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof changes / sizeof changes[0]; i++) {
        fixture f = make_stamped();
        char cmd[4096];
        snprintf(cmd, sizeof cmd, "cd '%s' && %s", f.dir, changes[i].shell);
        assert_int_equal(kp_test_sh(cmd, NULL), 0);
        int n = kp_stamp_check(f.stamp, f.config);
        if (n != -1)
            fail_msg("after '%s' the stamp still says %d tasks are up to date", changes[i].what, n);
        fixture_free(&f);
    }
}

static void test_stamp_path_follows_xdg_cache_home_then_home(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), *config = kp_test_write(dir, "c.yaml", "x\n"), a[4200], b[4200];
    char *old = getenv("XDG_CACHE_HOME") ? strdup(getenv("XDG_CACHE_HOME")) : NULL;
    setenv("XDG_CACHE_HOME", "/cache", 1);
    assert_int_equal(kp_stamp_path(config, a, sizeof a), 0);
    assert_int_equal(strncmp(a, "/cache/kpipe/stamps/", 20), 0);
    unsetenv("XDG_CACHE_HOME");
    char *home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
    setenv("HOME", "/home/u", 1);
    assert_int_equal(kp_stamp_path(config, b, sizeof b), 0);
    assert_int_equal(strncmp(b, "/home/u/.cache/kpipe/stamps/", 28), 0);
    assert_string_equal(a + 20, b + 28);   /* named by the config's path either way */
    unsetenv("HOME");
    assert_int_equal(kp_stamp_path(config, a, sizeof a), KP_ERR_NOTFOUND);
    if (home)
        setenv("HOME", home, 1);
    if (old)
        setenv("XDG_CACHE_HOME", old, 1);
    free(home);
    free(old);
    free(config);
    free(dir);
}

KP_TEST_GROUP(stamp)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_stamp_of_unchanged_files_gives_the_task_count),
        cmocka_unit_test(test_stamp_says_no_after_any_change),
        cmocka_unit_test(test_stamp_path_follows_xdg_cache_home_then_home),
    };
    return KP_RUN(stamp, t);
}

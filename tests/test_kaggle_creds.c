/* test_kaggle_creds.c - where the Kaggle credentials come from, and which
 * files are refused. Each test sets the environment from scratch. */
#include "kp_test.h"
#include "../lib/err.h"
#include "../lib/kaggle_creds.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SECRET "kgat_s3cr3t0123"

/* A clean environment: HOME = a fresh folder with no .kaggle. */
static char *clean_env(void)
{
    char *home = kp_test_tmpdir();
    const char *vars[] = {"KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY",
                          "KAGGLE_CONFIG_DIR", "XDG_CONFIG_HOME"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
    setenv("HOME", home, 1);
    return home;
}

/* Writes a credentials file with the given mode; returns its heap path. */
static char *write_secret(const char *dir, const char *name, const char *text, mode_t mode)
{
    char *path = kp_test_write(dir, name, text);
    assert_int_equal(chmod(path, mode), 0);
    return path;
}

static kp_kaggle_creds *load_ok(void)
{
    char err[KP_ERRLEN] = "";
    kp_kaggle_creds *c = NULL;
    int rc = kp_kaggle_creds_load(&c, err, sizeof err);
    if (rc)
        fail_msg("%s", err);
    return c;
}

static void test_creds_token_env_is_a_bearer_header(void **state)
{
    (void)state;
    free(clean_env());
    setenv("KAGGLE_API_TOKEN", SECRET, 1);
    kp_kaggle_creds *c = load_ok();
    assert_string_equal(kp_kaggle_creds_header(c), "Authorization: Bearer " SECRET);
    assert_string_equal(kp_kaggle_creds_source(c), "KAGGLE_API_TOKEN");
    kp_kaggle_creds_free(c);
}

static void test_creds_token_env_may_name_a_file(void **state)
{
    (void)state;
    char *home = clean_env(), *path = write_secret(home, "tok", SECRET "\n", 0600);
    setenv("KAGGLE_API_TOKEN", path, 1);
    kp_kaggle_creds *c = load_ok();
    assert_string_equal(kp_kaggle_creds_header(c), "Authorization: Bearer " SECRET);
    assert_non_null(strstr(kp_kaggle_creds_source(c), path));
    kp_kaggle_creds_free(c);
    free(path);
    free(home);
}

static void test_creds_access_token_file_in_home_kaggle(void **state)
{
    (void)state;
    char *home = clean_env(), *path = write_secret(home, ".kaggle/access_token", SECRET, 0600);
    kp_kaggle_creds *c = load_ok();
    assert_string_equal(kp_kaggle_creds_header(c), "Authorization: Bearer " SECRET);
    assert_string_equal(kp_kaggle_creds_source(c), path);
    kp_kaggle_creds_free(c);
    free(path);
    free(home);
}

static void test_creds_username_and_key_env_are_basic(void **state)
{
    (void)state;
    free(clean_env());
    setenv("KAGGLE_USERNAME", "ada", 1);
    setenv("KAGGLE_KEY", "0123abcd", 1);
    kp_kaggle_creds *c = load_ok();
    /* base64("ada:0123abcd") */
    assert_string_equal(kp_kaggle_creds_header(c), "Authorization: Basic YWRhOjAxMjNhYmNk");
    assert_string_equal(kp_kaggle_creds_user(c), "ada");
    kp_kaggle_creds_free(c);
}

static void test_creds_kaggle_json_is_basic(void **state)
{
    (void)state;
    char *home = clean_env();
    free(write_secret(home, ".kaggle/kaggle.json", "{\"username\":\"ab\",\"key\":\"k1\"}", 0600));
    kp_kaggle_creds *c = load_ok();
    assert_string_equal(kp_kaggle_creds_header(c), "Authorization: Basic YWI6azE=");
    kp_kaggle_creds_free(c);
    free(home);
}

/* The order: token env, access_token, user/key env, kaggle.json. */
static void test_creds_order_token_before_file_before_basic(void **state)
{
    (void)state;
    char *home = clean_env();
    free(write_secret(home, ".kaggle/kaggle.json", "{\"username\":\"ab\",\"key\":\"k1\"}", 0600));
    setenv("KAGGLE_USERNAME", "env", 1);
    setenv("KAGGLE_KEY", "envkey", 1);
    kp_kaggle_creds *c = load_ok();
    assert_string_equal(kp_kaggle_creds_source(c), "KAGGLE_USERNAME/KAGGLE_KEY");
    kp_kaggle_creds_free(c);
    free(write_secret(home, ".kaggle/access_token", "filetoken", 0600));
    c = load_ok();
    assert_string_equal(kp_kaggle_creds_header(c), "Authorization: Bearer filetoken");
    kp_kaggle_creds_free(c);
    setenv("KAGGLE_API_TOKEN", "envtoken", 1);
    c = load_ok();
    assert_string_equal(kp_kaggle_creds_header(c), "Authorization: Bearer envtoken");
    kp_kaggle_creds_free(c);
    free(home);
}

/* $KAGGLE_CONFIG_DIR, else ~/.kaggle when it exists, else $XDG_CONFIG_HOME/kaggle. */
static void test_creds_config_dir_order(void **state)
{
    (void)state;
    char dir[4096], *home = clean_env(), *want;
    setenv("XDG_CONFIG_HOME", home, 1);
    assert_int_equal(kp_kaggle_config_dir(dir, sizeof dir), 0);
    want = kp_test_join(home, "kaggle");
    assert_string_equal(dir, want);
    free(want);
    free(write_secret(home, ".kaggle/x", "", 0600));
    assert_int_equal(kp_kaggle_config_dir(dir, sizeof dir), 0);
    want = kp_test_join(home, ".kaggle");
    assert_string_equal(dir, want);
    free(want);
    setenv("KAGGLE_CONFIG_DIR", "/somewhere/else", 1);
    assert_int_equal(kp_kaggle_config_dir(dir, sizeof dir), 0);
    assert_string_equal(dir, "/somewhere/else");
    free(home);
}

static void test_creds_xdg_folder_is_read_without_home_kaggle(void **state)
{
    (void)state;
    char *home = clean_env();
    setenv("XDG_CONFIG_HOME", home, 1);
    free(write_secret(home, "kaggle/access_token", "xdgtoken", 0600));
    kp_kaggle_creds *c = load_ok();
    assert_string_equal(kp_kaggle_creds_header(c), "Authorization: Bearer xdgtoken");
    kp_kaggle_creds_free(c);
    free(home);
}

/* Every credentials file readable by group or others is refused with the fix. */
static void test_creds_group_or_other_readable_files_are_refused(void **state)
{
    (void)state;
    static const struct { const char *name; const char *text; mode_t mode; } cases[] = {
        {"kaggle.json", "{\"username\":\"ab\",\"key\":\"" SECRET "\"}", 0644},
        {"kaggle.json", "{\"username\":\"ab\",\"key\":\"" SECRET "\"}", 0640},
        {"access_token", SECRET, 0604},
        {"access_token", SECRET, 0660},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[KP_ERRLEN] = "", *home = clean_env(), rel[64], msg[4200];
        snprintf(rel, sizeof rel, ".kaggle/%s", cases[i].name);
        char *path = write_secret(home, rel, cases[i].text, cases[i].mode);
        kp_kaggle_creds *c = NULL;
        assert_int_equal(kp_kaggle_creds_load(&c, err, sizeof err), KP_ERR_ARG);
        assert_null(c);
        snprintf(msg, sizeof msg, "chmod 600 %s", path);
        assert_non_null(strstr(err, msg));
        assert_null(strstr(err, SECRET));
        free(path);
        free(home);
    }
}

static void test_creds_none_names_where_it_looked(void **state)
{
    (void)state;
    char err[KP_ERRLEN] = "", *home = clean_env();
    kp_kaggle_creds *c = NULL;
    assert_int_equal(kp_kaggle_creds_load(&c, err, sizeof err), KP_ERR_NOTFOUND);
    assert_non_null(strstr(err, "KAGGLE_API_TOKEN"));
    assert_non_null(strstr(err, "kaggle.json"));
    assert_non_null(strstr(err, "/kaggle"));   /* the XDG folder, as ~/.kaggle is absent */
    free(home);
}

/* A broken kaggle.json names the file and never echoes its text. */
static void test_creds_bad_kaggle_json_names_file_not_secret(void **state)
{
    (void)state;
    static const char *const texts[] = {"{\"username\":\"ab\",\"key\":\"" SECRET "\"",
                                        "{\"user\":\"ab\",\"key\":\"" SECRET "\"}",
                                        "{\"username\":\"\",\"key\":\"" SECRET "\"}"};
    for (size_t i = 0; i < 3; i++) {
        char err[KP_ERRLEN] = "", *home = clean_env();
        char *path = write_secret(home, ".kaggle/kaggle.json", texts[i], 0600);
        kp_kaggle_creds *c = NULL;
        assert_int_equal(kp_kaggle_creds_load(&c, err, sizeof err), KP_ERR_FORMAT);
        assert_non_null(strstr(err, path));
        assert_null(strstr(err, SECRET));
        free(path);
        free(home);
    }
}

KP_TEST_GROUP(kaggle_creds)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_creds_token_env_is_a_bearer_header),
        cmocka_unit_test(test_creds_token_env_may_name_a_file),
        cmocka_unit_test(test_creds_access_token_file_in_home_kaggle),
        cmocka_unit_test(test_creds_username_and_key_env_are_basic),
        cmocka_unit_test(test_creds_kaggle_json_is_basic),
        cmocka_unit_test(test_creds_order_token_before_file_before_basic),
        cmocka_unit_test(test_creds_config_dir_order),
        cmocka_unit_test(test_creds_xdg_folder_is_read_without_home_kaggle),
        cmocka_unit_test(test_creds_group_or_other_readable_files_are_refused),
        cmocka_unit_test(test_creds_none_names_where_it_looked),
        cmocka_unit_test(test_creds_bad_kaggle_json_names_file_not_secret),
    };
    return KP_RUN(kaggle_creds, t);
}

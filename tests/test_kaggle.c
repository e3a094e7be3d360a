/* test_kaggle.c - lib/kaggle.h against the test server playing Kaggle:
 * listing, downloads through the redirects, resumable uploads, listing
 * submissions, and which calls are (not) retried. */
#include "kp_test.h"
#include "http_server.h"
#include "../lib/err.h"
#include "../lib/kaggle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN "kgat_unit_T0KEN_55"
#define API "/v1/competitions.CompetitionApiService/"

typedef struct fixture {
    ts_server *s;
    kp_kaggle *k;
    char *dir;
    char *log_text;
    size_t log_len;
    FILE *log;
} fixture;

static void fx_open(fixture *fx)
{
    char err[KP_ERRLEN] = "";
    memset(fx, 0, sizeof *fx);
    assert_non_null(fx->s = ts_start());
    ts_set_auth(fx->s, "Bearer " TOKEN);
    ts_add_competition_file(fx->s, "comp", "train.csv", "a,b\n1,2\n", 8);
    fx->dir = kp_test_tmpdir();
    fx->log = open_memstream(&fx->log_text, &fx->log_len);
    setenv("KAGGLE_API_TOKEN", TOKEN, 1);
    setenv("KPIPE_RETRY_BACKOFF_MS", "5", 1);
    unsetenv("KAGGLE_API_ENDPOINT");
    char endpoint[256];
    snprintf(endpoint, sizeof endpoint, "%s//", ts_url(fx->s));   /* slashes trimmed */
    kp_kaggle_opts o = {.endpoint = endpoint, .log = fx->log};
    if (kp_kaggle_create(&o, &fx->k, err, sizeof err))
        fail_msg("%s", err);
    assert_string_equal(kp_kaggle_endpoint(fx->k), ts_url(fx->s));
}

static void fx_close(fixture *fx)
{
    kp_kaggle_free(fx->k);
    ts_stop(fx->s);
    fclose(fx->log);
    assert_null(strstr(fx->log_text ? fx->log_text : "", TOKEN));
    free(fx->log_text);
    free(fx->dir);
    unsetenv("KAGGLE_API_TOKEN");
    unsetenv("KPIPE_RETRY_BACKOFF_MS");
}

/* Writes n bytes of a pattern to DIR/name; returns the heap path. */
static char *write_bytes(const char *dir, const char *name, size_t n)
{
    char *text = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        text[i] = (char)('a' + (i * 7 + i / 13) % 26);
    text[n] = 0;
    char *path = kp_test_write(dir, name, text);
    free(text);
    return path;
}

static void test_kaggle_list_files_reads_names_and_sizes(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx);
    ts_add_competition_file(fx.s, "comp", "test.csv", "a\n", 2);
    kp_kaggle_file *f = NULL;
    int n = 0;
    char err[KP_ERRLEN] = "";
    assert_int_equal(kp_kaggle_list_files(fx.k, "comp", &f, &n, err, sizeof err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(f[0].name, "train.csv");
    assert_int_equal(f[0].size, 8);
    assert_string_equal(f[1].name, "test.csv");
    kp_kaggle_files_free(f, n);
    fx_close(&fx);
}

static void test_kaggle_download_one_file_follows_the_redirect(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx);
    char err[KP_ERRLEN] = "";
    const char *names[] = {"train.csv"};
    assert_int_equal(kp_kaggle_download(fx.k, "comp", fx.dir, names, 1, 0, 0, err, sizeof err), 0);
    char *p = kp_test_join(fx.dir, "train.csv"), *got = kp_test_read(p);
    assert_string_equal(got, "a,b\n1,2\n");
    assert_int_equal(ts_requests_to(fx.s, API "DownloadDataFile"), 1);
    assert_int_equal(ts_requests_to(fx.s, "/files/comp/train.csv"), 1);
    /* already there: not asked for again */
    assert_int_equal(kp_kaggle_download(fx.k, "comp", fx.dir, names, 1, 0, 0, err, sizeof err), 0);
    assert_int_equal(ts_requests_to(fx.s, API "DownloadDataFile"), 1);
    free(got);
    free(p);
    fx_close(&fx);
}

/* A refused file name never reaches the server. */
static void test_kaggle_download_refuses_names_with_folders(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx);
    char err[KP_ERRLEN] = "";
    const char *names[] = {"../x.csv"};
    assert_int_equal(kp_kaggle_download(fx.k, "comp", fx.dir, names, 1, 0, 0, err, sizeof err),
                     KP_ERR_ARG);
    assert_non_null(strstr(err, "'../x.csv' is not a file name"));
    assert_int_equal(ts_request_count(fx.s), 0);
    fx_close(&fx);
}

static void test_kaggle_submit_resumes_a_cut_upload(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx);
    char err[KP_ERRLEN] = "", *path = write_bytes(fx.dir, "sub.csv", 200000);
    long ref = 0;
    ts_cut(fx.s, "/upload/1", 1, 70000);
    assert_int_equal(kp_kaggle_submit(fx.k, "comp", path, "first", &ref, err, sizeof err), 0);
    assert_true(ref > 0);
    size_t len;
    char desc[64], *want = kp_test_read(path);
    const void *got = ts_submission(fx.s, ref, &len, desc, sizeof desc);
    assert_int_equal(len, 200000);
    assert_memory_equal(got, want, len);
    assert_string_equal(desc, "first");
    /* the cut PUT, the status query, then the rest from byte 70000 */
    int resumed = 0, asked = 0;
    for (int i = 0; i < ts_request_count(fx.s); i++) {
        ts_request r;
        ts_request_at(fx.s, i, &r);
        resumed += !strcmp(r.content_range, "bytes 70000-199999/200000");
        asked += !strcmp(r.content_range, "bytes */200000");
    }
    assert_int_equal(resumed, 1);
    assert_int_equal(asked, 1);
    free(want);
    free(path);
    fx_close(&fx);
}

static void test_kaggle_submit_retries_a_busy_upload(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx);
    char err[KP_ERRLEN] = "", *path = write_bytes(fx.dir, "sub.csv", 1000);
    long ref = 0;
    ts_fail(fx.s, "/upload/1", 2, 503, -1);
    assert_int_equal(kp_kaggle_submit(fx.k, "comp", path, "m", &ref, err, sizeof err), 0);
    size_t len;
    assert_non_null(ts_submission(fx.s, ref, &len, NULL, 0));
    assert_int_equal(len, 1000);
    free(path);
    fx_close(&fx);
}

/* CreateSubmission is not repeated: a retry could submit twice. */
static void test_kaggle_create_submission_is_not_retried(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx);
    char err[KP_ERRLEN] = "", *path = write_bytes(fx.dir, "sub.csv", 100);
    long ref = 0;
    ts_fail(fx.s, API "CreateSubmission", 1, 503, -1);
    assert_int_not_equal(kp_kaggle_submit(fx.k, "comp", path, "m", &ref, err, sizeof err), 0);
    assert_non_null(strstr(err, "503"));
    assert_int_equal(ts_requests_to(fx.s, API "CreateSubmission"), 1);
    assert_int_equal(ts_submission_count(fx.s), 0);
    free(path);
    fx_close(&fx);
}

static void test_kaggle_submissions_are_listed_with_scores_after_a_retry(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx);
    char err[KP_ERRLEN] = "", *path = write_bytes(fx.dir, "sub.csv", 100);
    long a = 0, b = 0;
    assert_int_equal(kp_kaggle_submit(fx.k, "comp", path, "one", &a, err, sizeof err), 0);
    assert_int_equal(kp_kaggle_submit(fx.k, "comp", path, "two", &b, err, sizeof err), 0);
    ts_set_score(fx.s, a, "0.5", "0.25");
    ts_fail(fx.s, API "ListSubmissions", 1, 429, 0);
    kp_kaggle_sub *s = NULL;
    int n = 0;
    assert_int_equal(kp_kaggle_submissions(fx.k, "comp", &s, &n, err, sizeof err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(s[0].ref, b);   /* newest first */
    assert_string_equal(s[1].description, "one");
    assert_string_equal(s[1].public_score, "0.5");
    assert_string_equal(s[1].private_score, "0.25");
    assert_string_equal(s[0].public_score, "");
    assert_string_equal(s[1].file_name, "sub.csv");
    kp_kaggle_subs_free(s, n);
    free(path);
    fx_close(&fx);
}

static void test_kaggle_errors_name_competition_and_fix(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx);
    char err[KP_ERRLEN] = "";
    kp_kaggle_file *f = NULL;
    int n = 0;
    assert_int_equal(kp_kaggle_list_files(fx.k, "nope", &f, &n, err, sizeof err), KP_ERR_NOTFOUND);
    assert_non_null(strstr(err, "competition 'nope' not found on Kaggle"));
    ts_forbid(fx.s, "comp");
    assert_int_equal(kp_kaggle_download(fx.k, "comp", fx.dir, NULL, 0, 0, 0, err, sizeof err),
                     KP_ERR_ARG);
    assert_non_null(strstr(err, "accept the competition rules on the website first"));
    assert_non_null(strstr(err, "kaggle.com/competitions/comp/rules"));
    assert_null(strstr(err, TOKEN));
    fx_close(&fx);
}

KP_TEST_GROUP(kaggle)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_kaggle_list_files_reads_names_and_sizes),
        cmocka_unit_test(test_kaggle_download_one_file_follows_the_redirect),
        cmocka_unit_test(test_kaggle_download_refuses_names_with_folders),
        cmocka_unit_test(test_kaggle_submit_resumes_a_cut_upload),
        cmocka_unit_test(test_kaggle_submit_retries_a_busy_upload),
        cmocka_unit_test(test_kaggle_create_submission_is_not_retried),
        cmocka_unit_test(test_kaggle_submissions_are_listed_with_scores_after_a_retry),
        cmocka_unit_test(test_kaggle_errors_name_competition_and_fix),
    };
    return KP_RUN(kaggle, t);
}

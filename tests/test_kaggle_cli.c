/* test_kaggle_cli.c - the kpipe binary against a local Kaggle (tests/http_server.h):
 * a config from an empty folder to an uploaded, scored submission; the fetch
 * stage's failure paths; the `kpipe kaggle` commands' refusals. */
#include "kp_test.h"
#include "http_server.h"

#include <archive.h>
#include <archive_entry.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SECRET "kgat_e2e_S3CRET_7781"

/* Builds a zip of n (name, text) pairs in memory; returns heap bytes, *len. */
static unsigned char *zip_of(const char *const *names, const char *const *texts, int n,
                             size_t *len)
{
    size_t cap = 1 << 20, used = 0;
    for (int i = 0; i < n; i++)
        cap += strlen(texts[i]) + 1024;
    unsigned char *buf = malloc(cap);
    struct archive *a = archive_write_new();
    assert_non_null(buf);
    assert_int_equal(archive_write_set_format_zip(a), ARCHIVE_OK);
    assert_int_equal(archive_write_open_memory(a, buf, cap, &used), ARCHIVE_OK);
    for (int i = 0; i < n; i++) {
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, names[i]);
        archive_entry_set_size(e, (la_int64_t)strlen(texts[i]));
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
        assert_int_equal(archive_write_data(a, texts[i], strlen(texts[i])),
                         (la_ssize_t)strlen(texts[i]));
        archive_entry_free(e);
    }
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
    *len = used;
    return buf;
}

/* Reads the repository's titanic file rel (train.csv cut to its first 300 rows). */
static char *titanic(const char *rel)
{
    char path[4096], *text;
    snprintf(path, sizeof path, "%s/data/titanic/%s", kp_test_root(), rel);
    assert_non_null(text = kp_test_read(path));
    if (!strcmp(rel, "train.csv")) {
        char *p = text;
        for (int lines = 0; *p && lines < 301; p++)
            lines += *p == '\n';
        *p = 0;
    }
    return text;
}

/* A server playing Kaggle with the titanic competition's data as one zip. */
static ts_server *kaggle_server(void)
{
    static const char *const names[] = {"train.csv", "test.csv", "sample_submission.csv"};
    const char *texts[3];
    ts_server *s = ts_start();
    assert_non_null(s);
    ts_set_auth(s, "Bearer " SECRET);
    for (int i = 0; i < 3; i++) {
        texts[i] = titanic(names[i]);
        ts_add_competition_file(s, "titanic", names[i], texts[i], strlen(texts[i]));
    }
    size_t len;
    unsigned char *zip = zip_of(names, texts, 3, &len);
    ts_add_file(s, "/files/titanic.zip", zip, len);
    free(zip);
    for (int i = 0; i < 3; i++)
        free((char *)texts[i]);
    return s;
}

/* TMP/{configs,submissions} with the titanic-kaggle config; returns TMP (heap). */
static char *kaggle_tree(void)
{
    char *dir = kp_test_tmpdir(), cmd[4096];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/submissions' '%s/configs' '%s/kaggle' && "
             "cp '%s/configs/titanic-kaggle.yaml' '%s/configs/'", dir, dir, dir, kp_test_root(),
             dir);
    assert_int_equal(kp_test_sh(cmd, NULL), 0);
    return dir;
}

/* Runs "kpipe ARGS" in dir with the server as Kaggle and the token set. */
static int kpipe_at(const ts_server *s, const char *dir, const char *env, const char *args,
                    char **out)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "cd '%s' && env -u KAGGLE_USERNAME -u KAGGLE_KEY "
             "KAGGLE_API_ENDPOINT='%s' KAGGLE_CONFIG_DIR='%s/kaggle' KPIPE_RETRY_BACKOFF_MS=5 %s "
             "'%s' %s", dir, ts_url(s), dir, env ? env : "KAGGLE_API_TOKEN=" SECRET,
             kp_test_bin(), args);
    int rc = kp_test_sh(cmd, out);
    if (out && *out)
        assert_null(strstr(*out, SECRET));   /* never, in any output */
    return rc;
}

static char *read_in(const char *dir, const char *rel)
{
    char *p = kp_test_join(dir, rel), *s = kp_test_read(p);
    free(p);
    return s;
}

/* Counts the lines of text that contain every one of the words. */
static int lines_with(const char *text, const char *a, const char *b)
{
    int n = 0;
    for (const char *l = text; l && *l;) {
        const char *e = strchr(l, '\n');
        size_t len = e ? (size_t)(e - l) : strlen(l);
        char *line = strndup(l, len);
        n += strstr(line, a) && (!b || strstr(line, b));
        free(line);
        l += len + (e != NULL);
    }
    return n;
}

static void test_kaggle_config_goes_from_empty_folder_to_scored_submission(void **state)
{
    (void)state;
    ts_server *s = kaggle_server();
    char *dir = kaggle_tree(), *out = NULL;
    int rc = kpipe_at(s, dir, NULL, "run configs/titanic-kaggle.yaml -j 2", &out);
    if (rc)
        fprintf(stderr, "%s\n", out);
    assert_int_equal(rc, 0);
    free(out);
    /* the data came through the API's redirect, the submission went back up */
    char *sub = read_in(dir, "submissions/titanic-kaggle.csv");
    assert_non_null(sub);
    assert_int_equal(ts_submission_count(s), 1);
    size_t len;
    char desc[256];
    const void *up = ts_submission(s, 1001, &len, desc, sizeof desc);   /* refs start at 1001 */
    assert_non_null(up);
    assert_int_equal(len, strlen(sub));
    assert_memory_equal(up, sub, len);
    assert_string_equal(desc, "gbdt + logistic, logistic stack");
    char *ledger = read_in(dir, "submissions/ledger.csv");
    assert_non_null(ledger);
    assert_int_equal(lines_with(ledger, ",written,titanic,titanic-kaggle.csv,", NULL), 1);
    assert_int_equal(lines_with(ledger, ",uploaded,titanic,titanic-kaggle.csv,", ",1001,"), 1);
    free(ledger);
    /* the leaderboard score comes back into the ledger and `kpipe status` */
    ts_set_score(s, 1001, "0.77990", "0.77511");
    assert_int_equal(kpipe_at(s, dir, NULL, "kaggle submissions titanic", &out), 0);
    assert_non_null(strstr(out, "0.77990"));
    free(out);
    ledger = read_in(dir, "submissions/ledger.csv");
    assert_int_equal(lines_with(ledger, ",uploaded,", ",0.77990,0.77511"), 1);
    free(ledger);
    assert_int_equal(kpipe_at(s, dir, NULL, "status configs/titanic-kaggle.yaml", &out), 0);
    assert_non_null(strstr(out, "0.77990"));
    free(out);
    /* a re-run is up to date: no request for the data, no second upload */
    ts_clear_requests(s);
    assert_int_equal(kpipe_at(s, dir, NULL, "run configs/titanic-kaggle.yaml", &out), 0);
    free(out);
    assert_int_equal(ts_request_count(s), 0);
    assert_int_equal(ts_submission_count(s), 1);
    /* the same prediction by hand: refused, unless forced */
    rc = kpipe_at(s, dir, NULL, "kaggle submit submissions/titanic-kaggle.csv -c titanic "
                  "-m again", &out);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "already uploaded"));
    free(out);
    assert_int_equal(ts_submission_count(s), 1);
    /* --dry-run: every check, the contract printed, no request, no credentials */
    ts_clear_requests(s);
    assert_int_equal(kpipe_at(s, dir, "env -u KAGGLE_API_TOKEN", "kaggle submit "
                              "submissions/titanic-kaggle.csv -c titanic -m again --dry-run "
                              "--config configs/titanic-kaggle.yaml", &out), 0);
    assert_non_null(strstr(out, "meets the contract"));
    assert_non_null(strstr(out, "would NOT be uploaded"));
    assert_int_equal(ts_request_count(s), 0);
    free(out);
    assert_int_equal(kpipe_at(s, dir, NULL, "kaggle submit submissions/titanic-kaggle.csv -c "
                              "titanic -m again --force", &out), 0);
    free(out);
    assert_int_equal(ts_submission_count(s), 2);
    free(sub);
    free(dir);
    ts_stop(s);
}

/* An upload that fails fails the submit task; the next run uploads, once. */
static void test_kaggle_failed_upload_is_retried_by_the_next_run(void **state)
{
    (void)state;
    ts_server *s = kaggle_server();
    char *dir = kaggle_tree(), *out = NULL;
    ts_fail(s, "/v1/competitions.CompetitionApiService/CreateSubmission", 1, 503, -1);
    assert_int_equal(kpipe_at(s, dir, NULL, "run configs/titanic-kaggle.yaml -j 2", &out), 1);
    assert_non_null(strstr(out, "503"));   /* the task's own error, under its summary line */
    free(out);
    assert_int_equal(ts_submission_count(s), 0);
    char *ledger = read_in(dir, "submissions/ledger.csv");
    assert_int_equal(lines_with(ledger, ",written,", NULL), 1);
    assert_int_equal(lines_with(ledger, ",uploaded,", NULL), 0);
    free(ledger);
    assert_int_equal(kpipe_at(s, dir, NULL, "run configs/titanic-kaggle.yaml -j 2", &out), 0);
    free(out);
    assert_int_equal(ts_submission_count(s), 1);
    ledger = read_in(dir, "submissions/ledger.csv");
    assert_int_equal(lines_with(ledger, ",uploaded,", NULL), 1);
    free(ledger);
    free(dir);
    ts_stop(s);
}

/* A file failing the contract is never uploaded. */
static void test_kaggle_submit_refuses_a_file_failing_the_contract(void **state)
{
    (void)state;
    ts_server *s = kaggle_server();
    char *dir = kaggle_tree(), *out = NULL, *sample = titanic("sample_submission.csv");
    /* the data as if fetched */
    free(kp_test_write(dir, "data/titanic-kaggle/train.csv", sample));
    free(kp_test_write(dir, "data/titanic-kaggle/test.csv", sample));
    free(kp_test_write(dir, "data/titanic-kaggle/sample_submission.csv", sample));
    /* a label the contract does not allow, in the second row */
    char *bad = strdup(sample), *second = strchr(strchr(bad, '\n') + 1, '\n') + 1;
    second[strcspn(second, ",") + 1] = '7';
    free(kp_test_write(dir, "submissions/bad.csv", bad));
    int rc = kpipe_at(s, dir, NULL, "kaggle submit submissions/bad.csv -c titanic -m x "
                      "--config configs/titanic-kaggle.yaml", &out);
    assert_int_not_equal(rc, 0);
    if (!strstr(out, "bad.csv:3"))
        fail_msg("%s", out);
    assert_int_equal(ts_submission_count(s), 0);
    free(out);
    free(bad);
    free(sample);
    free(dir);
    ts_stop(s);
}

static void test_kaggle_download_403_says_to_accept_the_rules(void **state)
{
    (void)state;
    ts_server *s = kaggle_server();
    char *dir = kaggle_tree(), *out = NULL;
    ts_add_competition_file(s, "closed", "train.csv", "a\n1\n", 4);
    ts_forbid(s, "closed");
    int rc = kpipe_at(s, dir, NULL, "kaggle download closed -o got", &out);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(out, "accept the competition rules on the website first"));
    assert_non_null(strstr(out, "403"));
    free(out);
    rc = kpipe_at(s, dir, NULL, "kaggle download nosuch -o got", &out);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(out, "'nosuch' not found"));
    free(out);
    /* the wrong token: 401 names where the credentials came from */
    rc = kpipe_at(s, dir, "KAGGLE_API_TOKEN=wrong", "kaggle download titanic -o got", &out);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(out, "refused the credentials from KAGGLE_API_TOKEN"));
    free(out);
    free(dir);
    ts_stop(s);
}

static void test_kaggle_download_cli_fetches_and_unpacks(void **state)
{
    (void)state;
    ts_server *s = kaggle_server();
    char *dir = kaggle_tree(), *out = NULL;
    assert_int_equal(kpipe_at(s, dir, NULL, "kaggle download titanic -o got", &out), 0);
    free(out);
    char *got = read_in(dir, "got/test.csv"), *want = titanic("test.csv");
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
    free(want);
    /* one file by name, through DownloadDataFile */
    assert_int_equal(kpipe_at(s, dir, NULL, "kaggle download titanic -f sample_submission.csv "
                              "-o one", &out), 0);
    free(out);
    got = read_in(dir, "one/sample_submission.csv");
    assert_non_null(got);
    free(got);
    free(dir);
    ts_stop(s);
}

/* Credentials readable by others are refused with the chmod fix. */
static void test_kaggle_cli_refuses_credentials_others_can_read(void **state)
{
    (void)state;
    ts_server *s = kaggle_server();
    char *dir = kaggle_tree(), *out = NULL, *kdir = kp_test_join(dir, "kaggle");
    char *json = kp_test_write(kdir, "kaggle.json", "{\"username\":\"u\",\"key\":\"" SECRET "\"}");
    assert_int_equal(chmod(json, 0644), 0);
    int rc = kpipe_at(s, dir, "env -u KAGGLE_API_TOKEN", "kaggle submissions titanic", &out);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(out, "chmod 600"));
    assert_int_equal(ts_request_count(s), 0);
    free(out);
    free(json);
    free(kdir);
    free(dir);
    ts_stop(s);
}

/* --verbose shows the exchange, never the token. */
static void test_kaggle_verbose_output_hides_the_token(void **state)
{
    (void)state;
    ts_server *s = kaggle_server();
    char *dir = kaggle_tree(), *out = NULL;
    assert_int_equal(kpipe_at(s, dir, NULL, "kaggle submissions titanic --verbose", &out), 0);
    assert_non_null(strstr(out, "ListSubmissions"));
    assert_non_null(strstr(out, "Authorization"));
    free(out);   /* kpipe_at checked the secret is absent */
    free(dir);
    ts_stop(s);
}

/* ---- the fetch stage over plain URLs ---- */

#define CSV_A "id,x,y\n1,0.5,0\n2,1.5,1\n3,2.5,0\n4,3.5,1\n"
/* sha256 of CSV_A */
#define CSV_A_SHA "ca1bbe2b7cea830ba47714b8b72d6c9ed81653e5ebe7c21e066b436c05c41756"

/* A config whose competition files come from one fetch stage with `files`. */
static char *fetch_tree(const char *files_yaml, const char *provides)
{
    char *dir = kaggle_tree(), yaml[8192];
    snprintf(yaml, sizeof yaml,
             "competition:\n  name: t\n  train: data/train.csv\n  test: data/train.csv\n"
             "  id: id\n  target: y\n  task: binary\n  metric: auc\n"
             "stages:\n  data:\n    type: fetch\n    dir: data\n    files:\n%s"
             "    provides: [%s]\n", files_yaml, provides);
    free(kp_test_write(dir, "fetch.yaml", yaml));
    return dir;
}

static void test_fetch_stage_resumes_a_cut_download_and_retries_503(void **state)
{
    (void)state;
    ts_server *s = kaggle_server();
    char files[1024], *out = NULL;
    ts_add_file(s, "/files/train.csv", CSV_A, strlen(CSV_A));
    ts_add_file(s, "/files/test.csv", CSV_A, strlen(CSV_A));
    ts_cut(s, "/files/train.csv", 1, 10);
    ts_fail(s, "/files/test.csv", 2, 503, -1);
    snprintf(files, sizeof files, "      - %s/files/train.csv sha256=%s\n      - %s/files/test.csv "
             "size=%zu\n", ts_url(s), CSV_A_SHA, ts_url(s), strlen(CSV_A));
    char *dir = fetch_tree(files, "train.csv, test.csv");
    int rc = kpipe_at(s, dir, NULL, "run fetch.yaml", &out);
    if (rc)
        fprintf(stderr, "%s\n", out);
    assert_int_equal(rc, 0);
    free(out);
    char *got = read_in(dir, "data/train.csv");
    assert_string_equal(got, CSV_A);
    free(got);
    int ranged = 0;
    for (int i = 0; i < ts_request_count(s); i++) {
        ts_request r;
        assert_int_equal(ts_request_at(s, i, &r), 0);
        ranged += !strcmp(r.path, "/files/train.csv") && !strcmp(r.range, "bytes=10-");
    }
    assert_int_equal(ranged, 1);
    assert_int_equal(ts_requests_to(s, "/files/test.csv"), 3);
    /* the same URLs and checksums again: up to date, no request */
    ts_clear_requests(s);
    assert_int_equal(kpipe_at(s, dir, NULL, "run fetch.yaml", &out), 0);
    free(out);
    assert_int_equal(ts_request_count(s), 0);
    free(dir);
    ts_stop(s);
}

static void test_fetch_stage_checksum_mismatch_keeps_no_file(void **state)
{
    (void)state;
    ts_server *s = kaggle_server();
    char files[1024], *out = NULL, bad[65];
    memset(bad, 'a', 64);
    bad[64] = 0;
    ts_add_file(s, "/files/train.csv", CSV_A, strlen(CSV_A));
    snprintf(files, sizeof files, "      - %s/files/train.csv sha256=%s\n", ts_url(s), bad);
    char *dir = fetch_tree(files, "train.csv");
    assert_int_not_equal(kpipe_at(s, dir, NULL, "run fetch.yaml", &out), 0);
    assert_non_null(strstr(out, "/files/train.csv"));
    assert_non_null(strstr(out, bad));
    free(out);
    char *p = kp_test_join(dir, "data/train.csv"), *part = kp_test_join(dir, "data/train.csv.part");
    assert_int_not_equal(access(p, F_OK), 0);
    assert_int_not_equal(access(part, F_OK), 0);
    free(p);
    free(part);
    free(dir);
    ts_stop(s);
}

static void test_fetch_stage_refuses_an_archive_entry_leaving_dir(void **state)
{
    (void)state;
    static const char *const names[] = {"train.csv", "../evil.txt"};
    static const char *const texts[] = {CSV_A, "gotcha\n"};
    ts_server *s = kaggle_server();
    size_t len;
    unsigned char *zip = zip_of(names, texts, 2, &len);
    ts_add_file(s, "/files/data.zip", zip, len);
    free(zip);
    char files[1024], *out = NULL;
    snprintf(files, sizeof files, "      - %s/files/data.zip\n", ts_url(s));
    char *dir = fetch_tree(files, "train.csv");
    assert_int_not_equal(kpipe_at(s, dir, NULL, "run fetch.yaml", &out), 0);
    assert_non_null(strstr(out, "../evil.txt"));
    free(out);
    char *evil = kp_test_join(dir, "evil.txt"), *train = kp_test_join(dir, "data/train.csv");
    assert_int_not_equal(access(evil, F_OK), 0);
    assert_int_not_equal(access(train, F_OK), 0);   /* nothing of a refused archive */
    free(evil);
    free(train);
    free(dir);
    ts_stop(s);
}

static void test_fetch_stage_404_names_the_url_and_status(void **state)
{
    (void)state;
    ts_server *s = kaggle_server();
    char files[1024], *out = NULL;
    snprintf(files, sizeof files, "      - %s/files/nothing.csv name=train.csv\n", ts_url(s));
    char *dir = fetch_tree(files, "train.csv");
    assert_int_not_equal(kpipe_at(s, dir, NULL, "run fetch.yaml", &out), 0);
    assert_non_null(strstr(out, "/files/nothing.csv"));
    assert_non_null(strstr(out, "404"));
    free(out);
    free(dir);
    ts_stop(s);
}

static void test_fetch_stage_bad_entries_are_config_errors(void **state)
{
    (void)state;
    static const struct { const char *files, *want; } cases[] = {
        {"      - not-a-url\n", "fetch.yaml:14:7: stages.data.files[1]: expected a URL"},
        {"      - http://h/a.csv sha256=12\n", "'sha256=12' is not sha256="},
        {"      - http://h/a.csv size=-3\n", "'size=-3'"},
        {"      - http://h/\n", "no usable file name"},
    };
    ts_server *s = kaggle_server();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *dir = fetch_tree(cases[i].files, "a.csv"), *out = NULL;
        assert_int_equal(kpipe_at(s, dir, NULL, "run fetch.yaml", &out), 3);
        if (!strstr(out, cases[i].want))
            fail_msg("case %zu: %s", i, out);
        free(out);
        free(dir);
    }
    ts_stop(s);
}

/* The file:// scheme goes through the same downloader. */
static void test_fetch_stage_reads_file_urls(void **state)
{
    (void)state;
    ts_server *s = kaggle_server();
    char *src = kp_test_tmpdir(), *path = kp_test_write(src, "train.csv", CSV_A), files[4096];
    char *out = NULL;
    snprintf(files, sizeof files, "      - file://%s sha256=%s\n      - file://%s name=test.csv\n",
             path, CSV_A_SHA, path);
    char *dir = fetch_tree(files, "train.csv, test.csv");
    assert_int_equal(kpipe_at(s, dir, NULL, "run fetch.yaml", &out), 0);
    free(out);
    char *got = read_in(dir, "data/test.csv");
    assert_string_equal(got, CSV_A);
    free(got);
    free(path);
    free(src);
    free(dir);
    ts_stop(s);
}

KP_TEST_GROUP(kaggle_cli)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_kaggle_config_goes_from_empty_folder_to_scored_submission),
        cmocka_unit_test(test_kaggle_failed_upload_is_retried_by_the_next_run),
        cmocka_unit_test(test_kaggle_submit_refuses_a_file_failing_the_contract),
        cmocka_unit_test(test_kaggle_download_403_says_to_accept_the_rules),
        cmocka_unit_test(test_kaggle_download_cli_fetches_and_unpacks),
        cmocka_unit_test(test_kaggle_cli_refuses_credentials_others_can_read),
        cmocka_unit_test(test_kaggle_verbose_output_hides_the_token),
        cmocka_unit_test(test_fetch_stage_resumes_a_cut_download_and_retries_503),
        cmocka_unit_test(test_fetch_stage_checksum_mismatch_keeps_no_file),
        cmocka_unit_test(test_fetch_stage_refuses_an_archive_entry_leaving_dir),
        cmocka_unit_test(test_fetch_stage_404_names_the_url_and_status),
        cmocka_unit_test(test_fetch_stage_bad_entries_are_config_errors),
        cmocka_unit_test(test_fetch_stage_reads_file_urls),
    };
    return KP_RUN(kaggle_cli, t);
}

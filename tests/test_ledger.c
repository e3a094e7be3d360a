/* test_ledger.c - the submissions ledger: appends, quoting, uploads, scores,
 * damaged files, concurrent writers, time and file hashes. */
#include "kp_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "../lib/err.h"
#include "../lib/gzip.h"
#include "../lib/hash.h"
#include "../lib/ledger.h"

#define HEADER "time,event,competition,file,config_hash,prediction_hash,cv,metric,message,ref," \
               "public_score,private_score\n"
#define H1 "0123456789abcdef0123456789abcdef"
#define H2 "fedcba9876543210fedcba9876543210"

/* A row with the given event, hash, ref and message (the rest fixed). */
static kp_ledger_row row_of(char *event, char *hash, char *ref, char *message)
{
    kp_ledger_row r = {.time = "2026-11-30T12:00:00Z", .event = event, .competition = "titanic",
                       .file = "sub.csv", .config_hash = H2, .prediction_hash = hash,
                       .cv = "0.8123", .metric = "accuracy", .message = message, .ref = ref};
    return r;
}

/* Appends r to path and asserts success. */
static void append_ok(const char *path, const kp_ledger_row *r)
{
    char err[KP_ERRLEN] = "";
    int rc = kp_ledger_append(path, r, err, sizeof err);
    if (rc)
        fail_msg("append: %s", err);
}

/* Reads path and asserts success; caller frees. */
static kp_ledger *read_ok(const char *path)
{
    char err[KP_ERRLEN] = "";
    kp_ledger *l = NULL;
    int rc = kp_ledger_read(path, &l, err, sizeof err);
    if (rc)
        fail_msg("read: %s", err);
    return l;
}

static void test_ledger_append_creates_the_file_with_its_header(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), *path = kp_test_join(dir, "sub/ledger.csv");
    kp_ledger_row r = row_of("written", H1, NULL, NULL);
    append_ok(path, &r);   /* the folder sub/ is created too */
    char *text = kp_test_read(path);
    assert_string_equal(text, HEADER "2026-11-30T12:00:00Z,written,titanic,sub.csv," H2 "," H1
                                     ",0.8123,accuracy,,,,\n");
    free(text);
    free(path);
    free(dir);
}

static void test_ledger_missing_file_reads_as_an_empty_ledger(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), *path = kp_test_join(dir, "ledger.csv");
    kp_ledger *l = read_ok(path);
    assert_int_equal(kp_ledger_count(l), 0);
    assert_null(kp_ledger_at(l, 0));
    assert_int_equal(kp_ledger_find_upload(l, "titanic", H1), -1);
    kp_ledger_free(l);
    free(path);
    free(dir);
}

static void test_ledger_quotes_commas_quotes_and_line_ends_in_messages(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), *path = kp_test_join(dir, "ledger.csv");
    kp_ledger_row r = row_of("uploaded", H1, "123", "gbdt, \"tuned\"\nsecond line");
    append_ok(path, &r);
    char *text = kp_test_read(path);
    assert_non_null(strstr(text, ",accuracy,\"gbdt, \"\"tuned\"\"\nsecond line\",123,,\n"));
    kp_ledger *l = read_ok(path);
    assert_int_equal(kp_ledger_count(l), 1);
    assert_string_equal(kp_ledger_at(l, 0)->message, "gbdt, \"tuned\"\nsecond line");
    assert_string_equal(kp_ledger_at(l, 0)->ref, "123");
    assert_string_equal(kp_ledger_at(l, 0)->public_score, "");   /* NULL fields read as "" */
    kp_ledger_free(l);
    free(text);
    free(path);
    free(dir);
}

static void test_ledger_find_upload_takes_uploaded_rows_of_the_competition_only(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), *path = kp_test_join(dir, "ledger.csv");
    kp_ledger_row rows[] = {
        row_of("written", H1, NULL, NULL), row_of("uploaded", H1, "1", "first"),
        row_of("written", H2, NULL, NULL), row_of("uploaded", H1, "2", "again, forced"),
    };
    for (size_t i = 0; i < 4; i++)
        append_ok(path, &rows[i]);
    kp_ledger_row other = row_of("uploaded", H2, "3", NULL);
    other.competition = "spaceship";
    append_ok(path, &other);
    kp_ledger *l = read_ok(path);
    assert_int_equal(kp_ledger_count(l), 5);
    assert_int_equal(kp_ledger_find_upload(l, "titanic", H1), 3);   /* the last one */
    assert_int_equal(kp_ledger_find_upload(l, "titanic", H2), -1);  /* only written */
    assert_int_equal(kp_ledger_find_upload(l, "spaceship", H2), 4);
    assert_int_equal(kp_ledger_find_upload(l, "spaceship", H1), -1);
    kp_ledger_free(l);
    free(path);
    free(dir);
}

static void test_ledger_set_scores_rewrites_the_uploaded_row_of_the_ref(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), *path = kp_test_join(dir, "ledger.csv"), err[KP_ERRLEN] = "";
    kp_ledger_row a = row_of("uploaded", H1, "11", "a"), b = row_of("uploaded", H2, "12", "b");
    append_ok(path, &a);
    append_ok(path, &b);
    assert_int_equal(kp_ledger_set_scores(path, "titanic", "12", "0.77511", "0.7", err,
                                          sizeof err), 0);
    char *text = kp_test_read(path);
    assert_string_equal(text, HEADER
        "2026-11-30T12:00:00Z,uploaded,titanic,sub.csv," H2 "," H1 ",0.8123,accuracy,a,11,,\n"
        "2026-11-30T12:00:00Z,uploaded,titanic,sub.csv," H2 "," H2 ",0.8123,accuracy,b,12,"
        "0.77511,0.7\n");
    free(text);
    free(path);
    free(dir);
}

static void test_ledger_set_scores_of_an_unknown_ref_is_notfound_and_changes_nothing(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), *path = kp_test_join(dir, "ledger.csv"), err[KP_ERRLEN] = "";
    char want[4096];
    kp_ledger_row a = row_of("written", H1, "11", NULL);
    append_ok(path, &a);
    char *before = kp_test_read(path);
    /* a written row with that ref does not count, nor another competition */
    assert_int_equal(kp_ledger_set_scores(path, "titanic", "11", "0.5", "", err, sizeof err),
                     KP_ERR_NOTFOUND);
    snprintf(want, sizeof want, "%s: no uploaded row of competition 'titanic' has the "
             "submission ref '11'", path);
    assert_string_equal(err, want);
    assert_int_equal(kp_ledger_set_scores(path, "titanic", "11", "high", "", err, sizeof err),
                     KP_ERR_ARG);
    assert_non_null(strstr(err, "score 'high' is not a number"));
    char *after = kp_test_read(path);
    assert_string_equal(after, before);
    free(before);
    free(after);
    free(path);
    free(dir);
}

/* Damaged ledgers: the text after the header line, and the message after "FILE". */
static const struct {
    const char *what, *text, *msg;
} damaged[] = {
    {"another header", "time,event\n2026-11-30T12:00:00Z,written\n",
     ":1: the header is not a ledger's (time,event,competition,file,config_hash,"
     "prediction_hash,cv,metric,message,ref,public_score,private_score)"},
    {"bad time", HEADER "2026-11-30T12:00:00Z,written,t,f,," H1 ",,,,,,\n"
                        "yesterday,written,t,f,," H1 ",,,,,,\n",
     ":3: damaged ledger row: time 'yesterday' is not YYYY-MM-DDTHH:MM:SSZ"},
    {"bad event", HEADER "2026-11-30T12:00:00Z,deleted,t,f,," H1 ",,,,,,\n",
     ":2: damaged ledger row: event 'deleted' is not written or uploaded"},
    {"short hash", HEADER "2026-11-30T12:00:00Z,written,t,f,,0123,,,,,,\n",
     ":2: damaged ledger row: prediction_hash '0123' is not 32 hex digits"},
    {"cv not a number", HEADER "2026-11-30T12:00:00Z,written,t,f,," H1 ",nan,,,,,\n",
     ":2: damaged ledger row: cv 'nan' is not a number"},
    {"no competition", HEADER "2026-11-30T12:00:00Z,written,,f,," H1 ",,,,,,\n",
     ":2: damaged ledger row: competition is empty"},
    {"ragged row", HEADER "2026-11-30T12:00:00Z,written,t,f\n", ":2"},
    {"line after a quoted message", HEADER
     "2026-11-30T12:00:00Z,written,t,f,," H1 ",,,\"two\nlines\",,,\n"
     "2026-11-30T12:00:00Z,written,t,f,," H2 ",x,,,,,\n",
     ":4: damaged ledger row: cv 'x' is not a number"},
};

static void test_ledger_damaged_ledger_names_the_line_and_is_not_appended_to(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof damaged / sizeof damaged[0]; i++) {
        char *dir = kp_test_tmpdir(), *path = kp_test_write(dir, "ledger.csv", damaged[i].text);
        char err[KP_ERRLEN] = "", want[4096];
        kp_ledger *l = NULL;
        snprintf(want, sizeof want, "%s%s", path, damaged[i].msg);
        assert_int_equal(kp_ledger_read(path, &l, err, sizeof err), KP_ERR_FORMAT);
        assert_null(l);
        if (strncmp(err, want, strlen(want)) != 0)
            fail_msg("%s: got '%s', want '%s'", damaged[i].what, err, want);
        kp_ledger_row r = row_of("written", H1, NULL, NULL);
        assert_int_equal(kp_ledger_append(path, &r, err, sizeof err), KP_ERR_FORMAT);
        assert_int_equal(strncmp(err, want, strlen(want)), 0);
        char *after = kp_test_read(path);
        assert_string_equal(after, damaged[i].text);   /* never rewritten */
        free(after);
        free(path);
        free(dir);
    }
}

static void test_ledger_append_rejects_a_bad_row_naming_the_field(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), *path = kp_test_join(dir, "ledger.csv"), err[KP_ERRLEN] = "";
    kp_ledger_row r = row_of("written", "not-a-hash", NULL, NULL);
    assert_int_equal(kp_ledger_append(path, &r, err, sizeof err), KP_ERR_ARG);
    assert_non_null(strstr(err, "cannot append a row whose prediction_hash 'not-a-hash' is not "
                                "32 hex digits"));
    r = row_of("written", H1, NULL, NULL);
    r.time = "now";
    assert_int_equal(kp_ledger_append(path, &r, err, sizeof err), KP_ERR_ARG);
    assert_non_null(strstr(err, "time 'now' is not YYYY-MM-DDTHH:MM:SSZ"));
    assert_null(kp_test_read(path));   /* no file made */
    free(path);
    free(dir);
}

static void test_ledger_append_ends_a_last_line_that_lacks_its_line_end(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir();
    char *path = kp_test_write(dir, "ledger.csv", HEADER "2026-11-30T12:00:00Z,written,t,f,,"
                                                  H1 ",,,,,,");
    kp_ledger_row r = row_of("written", H2, NULL, NULL);
    append_ok(path, &r);
    kp_ledger *l = read_ok(path);
    assert_int_equal(kp_ledger_count(l), 2);
    assert_string_equal(kp_ledger_at(l, 1)->prediction_hash, H2);
    kp_ledger_free(l);
    free(path);
    free(dir);
}

static void test_ledger_two_processes_appending_at_once_lose_no_row(void **state)
{
    (void)state;
    enum { PROCS = 4, ROWS = 60 };
    char *dir = kp_test_tmpdir(), *path = kp_test_join(dir, "ledger.csv");
    pid_t pids[PROCS];
    for (int p = 0; p < PROCS; p++) {
        if ((pids[p] = fork()) == 0) {
            int bad = 0;
            for (int i = 0; i < ROWS && !bad; i++) {
                char msg[64], err[KP_ERRLEN];
                snprintf(msg, sizeof msg, "process %d, row %d", p, i);
                kp_ledger_row r = row_of("written", H1, NULL, msg);
                bad = kp_ledger_append(path, &r, err, sizeof err) != 0;
            }
            _exit(bad);
        }
        assert_true(pids[p] > 0);
    }
    for (int p = 0; p < PROCS; p++) {
        int status = -1;
        assert_int_equal(waitpid(pids[p], &status, 0), pids[p]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    kp_ledger *l = read_ok(path);
    assert_int_equal(kp_ledger_count(l), PROCS * ROWS);
    int seen[PROCS][ROWS] = {{0}};
    for (int i = 0; i < kp_ledger_count(l); i++) {
        int p = -1, r = -1;
        assert_int_equal(sscanf(kp_ledger_at(l, i)->message, "process %d, row %d", &p, &r), 2);
        seen[p][r]++;
    }
    for (int p = 0; p < PROCS; p++)
        for (int r = 0; r < ROWS; r++)
            assert_int_equal(seen[p][r], 1);
    kp_ledger_free(l);
    free(path);
    free(dir);
}

static void test_ledger_scores_rewritten_while_another_process_appends_lose_no_row(void **state)
{
    (void)state;
    enum { ROWS = 80 };
    char *dir = kp_test_tmpdir(), *path = kp_test_join(dir, "ledger.csv");
    kp_ledger_row up = row_of("uploaded", H1, "7", NULL);
    append_ok(path, &up);
    pid_t pids[2];
    for (int p = 0; p < 2; p++) {
        if ((pids[p] = fork()) == 0) {
            int bad = 0;
            for (int i = 0; i < ROWS && !bad; i++) {
                char num[32], err[KP_ERRLEN];
                snprintf(num, sizeof num, "%d", i);
                kp_ledger_row r = row_of("written", H2, NULL, num);
                bad = p ? kp_ledger_set_scores(path, "titanic", "7", num, "", err, sizeof err)
                        : kp_ledger_append(path, &r, err, sizeof err);
            }
            _exit(bad != 0);
        }
        assert_true(pids[p] > 0);
    }
    for (int p = 0; p < 2; p++) {
        int status = -1;
        assert_int_equal(waitpid(pids[p], &status, 0), pids[p]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    kp_ledger *l = read_ok(path);
    assert_int_equal(kp_ledger_count(l), 1 + ROWS);
    assert_string_equal(kp_ledger_at(l, 0)->public_score, "79");
    kp_ledger_free(l);
    free(path);
    free(dir);
}

static void test_ledger_now_is_iso_utc_and_honours_KPIPE_NOW(void **state)
{
    (void)state;
    char now[32];
    unsetenv("KPIPE_NOW");
    assert_int_equal(kp_ledger_now(now), 0);
    assert_int_equal(strlen(now), 20);
    assert_true(now[4] == '-' && now[10] == 'T' && now[19] == 'Z');
    setenv("KPIPE_NOW", "2026-11-30T12:00:00Z", 1);
    assert_int_equal(kp_ledger_now(now), 0);
    assert_string_equal(now, "2026-11-30T12:00:00Z");
    setenv("KPIPE_NOW", "2026-13-30T12:00:00Z", 1);   /* month 13 */
    assert_int_equal(kp_ledger_now(now), KP_ERR_ARG);
    unsetenv("KPIPE_NOW");
}

static void test_ledger_path_for_is_beside_the_submission(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(kp_ledger_path_for("../submissions/titanic.csv", out, sizeof out), 0);
    assert_string_equal(out, "../submissions/ledger.csv");
    assert_int_equal(kp_ledger_path_for("/x.csv.gz", out, sizeof out), 0);
    assert_string_equal(out, "/ledger.csv");
    assert_int_equal(kp_ledger_path_for("sub.csv", out, sizeof out), 0);
    assert_string_equal(out, "ledger.csv");
    assert_int_equal(kp_ledger_path_for("a/very/long/folder/name/for/sixteen/bytes/x.csv", out,
                                        16), KP_ERR_ARG);
}

static void test_ledger_file_hash_is_of_the_uncompressed_bytes(void **state)
{
    (void)state;
    const char *text = "id,y\n1,0.5\n2,0.25\n";
    char *dir = kp_test_tmpdir(), *plain = kp_test_write(dir, "sub.csv", text);
    char *gz = kp_test_join(dir, "sub.csv.gz"), err[KP_ERRLEN] = "";
    char want[KP_HASH_HEXLEN], a[KP_HASH_HEXLEN], b[KP_HASH_HEXLEN];
    kp_hash_hex(kp_hash_bytes(text, strlen(text)), want);
    assert_int_equal(kp_gzip_file_atomic(gz, text, strlen(text), err, sizeof err), 0);
    assert_int_equal(kp_ledger_file_hash(plain, a, err, sizeof err), 0);
    assert_int_equal(kp_ledger_file_hash(gz, b, err, sizeof err), 0);
    assert_string_equal(a, want);
    assert_string_equal(b, want);
    free(plain);
    free(gz);
    free(dir);
}

static void test_gzip_read_file_reads_gzip_and_plain_and_refuses_a_cut_stream(void **state)
{
    (void)state;
    const char *text = "id,rle\n1,1 2 5 1\n";
    char *dir = kp_test_tmpdir(), *gz = kp_test_join(dir, "a.gz"), err[KP_ERRLEN] = "";
    char *plain = kp_test_write(dir, "a.csv", text), *got = NULL;
    size_t len = 0;
    assert_int_equal(kp_gzip_file_atomic(gz, text, strlen(text), err, sizeof err), 0);
    assert_int_equal(kp_gzip_read_file(gz, 0, &got, &len, err, sizeof err), 0);
    assert_int_equal(len, strlen(text));
    assert_string_equal(got, text);
    free(got);
    assert_int_equal(kp_gzip_read_file(plain, 0, &got, &len, err, sizeof err), 0);
    assert_string_equal(got, text);
    free(got);
    got = NULL;
    assert_int_equal(kp_gzip_read_file(gz, 4, &got, &len, err, sizeof err), KP_ERR_NOMEM);
    assert_null(got);
    FILE *f = fopen(gz, "r+b");   /* cut the stream half way */
    assert_non_null(f);
    assert_int_equal(ftruncate(fileno(f), 20), 0);
    fclose(f);
    assert_int_equal(kp_gzip_read_file(gz, 0, &got, &len, err, sizeof err), KP_ERR_FORMAT);
    assert_null(got);
    assert_non_null(strstr(err, "a.gz: cannot read the gzip data: "));
    free(gz);
    free(plain);
    free(dir);
}

/* ---- kpipe status: CV against LB ---- */

/* Writes a config with a submit stage writing out/sub.csv into dir. */
static void status_fixture(const char *dir)
{
    free(kp_test_write(dir, "train.csv", "id,x,y\n1,0,0\n2,1,1\n3,0,0\n4,1,1\n"));
    free(kp_test_write(dir, "test.csv", "id,x\n5,0\n"));
    free(kp_test_write(dir, "sample.csv", "id,y\n5,0.5\n"));
    free(kp_test_write(dir, "kp.yaml",
                       "competition: {train: train.csv, test: test.csv, sample_submission: "
                       "sample.csv, id: id, target: y, task: binary, metric: auc}\n"
                       "stages:\n"
                       "  prep: {type: preprocess}\n"
                       "  folds: {type: folds, needs: [prep]}\n"
                       "  lr: {type: train, needs: [prep, folds], model: logistic}\n"
                       "  sub: {type: submit, needs: [prep, lr], output: out/sub.csv}\n"));
}

/* Runs `kpipe status kp.yaml` in dir; returns its output (heap). */
static char *run_status(const char *dir)
{
    char cmd[8192], *out = NULL;
    const char *bin = kp_test_bin();
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s%s%s' status kp.yaml", dir,
             bin[0] == '/' ? "" : kp_test_root(), bin[0] == '/' ? "" : "/", bin);
    int rc = kp_test_sh(cmd, &out);
    if (rc != 0)
        fail_msg("kpipe status: exit %d: %s", rc, out ? out : "");
    return out;
}

static void test_status_shows_the_ledger_of_each_submit_stage_and_notes_no_upload(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), *path = kp_test_join(dir, "out/ledger.csv"), want[4096];
    status_fixture(dir);
    kp_ledger_row rows[] = {
        row_of("written", H1, NULL, NULL), row_of("uploaded", H1, "11", "first,\ntry"),
        row_of("written", H2, NULL, NULL), row_of("written", H2, NULL, NULL),
    };
    rows[0].cv = "0.9";
    rows[1].public_score = "0.88";
    rows[2].file = "other.csv";   /* another file's row: not shown */
    rows[3].time = "2026-12-01T08:30:00Z";
    for (size_t i = 0; i < 4; i++)
        append_ok(path, &rows[i]);
    char *out = run_status(dir);
    snprintf(want, sizeof want,
             "\nsubmissions (cv: auc out of fold; public, private: the Kaggle leaderboard):\n"
             "sub -> %s\n"
             "  time                  event     cv          public      private     ref           "
             "message\n"
             "  2026-11-30T12:00:00Z  written   0.9         -           -           -             "
             "-\n"
             "  2026-11-30T12:00:00Z  uploaded  0.8123      0.88        -           11            "
             "first, try\n"
             "  2026-12-01T08:30:00Z  written   0.8123      -           -           -             "
             "-\n"
             "  note: the newest sub.csv (written 2026-12-01T08:30:00Z) has not been uploaded\n",
             path);
    if (!strstr(out, want))
        fail_msg("got\n%s\nwant it to hold\n%s", out, want);
    free(out);
    /* once that prediction is uploaded, the note goes */
    kp_ledger_row up = row_of("uploaded", H2, "12", NULL);
    append_ok(path, &up);
    out = run_status(dir);
    assert_non_null(strstr(out, "  2026-11-30T12:00:00Z  uploaded  0.8123      -           -"
                                "           12            -\n"));
    assert_null(strstr(out, "note:"));
    free(out);
    free(path);
    free(dir);
}

static void test_status_without_a_ledger_shows_no_submissions(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir();
    status_fixture(dir);
    char *out = run_status(dir);
    assert_non_null(strstr(out, "sub    never run"));
    assert_null(strstr(out, "submissions"));
    free(out);
    free(dir);
}

KP_TEST_GROUP(ledger)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_ledger_append_creates_the_file_with_its_header),
        cmocka_unit_test(test_ledger_missing_file_reads_as_an_empty_ledger),
        cmocka_unit_test(test_ledger_quotes_commas_quotes_and_line_ends_in_messages),
        cmocka_unit_test(test_ledger_find_upload_takes_uploaded_rows_of_the_competition_only),
        cmocka_unit_test(test_ledger_set_scores_rewrites_the_uploaded_row_of_the_ref),
        cmocka_unit_test(test_ledger_set_scores_of_an_unknown_ref_is_notfound_and_changes_nothing),
        cmocka_unit_test(test_ledger_damaged_ledger_names_the_line_and_is_not_appended_to),
        cmocka_unit_test(test_ledger_append_rejects_a_bad_row_naming_the_field),
        cmocka_unit_test(test_ledger_append_ends_a_last_line_that_lacks_its_line_end),
        cmocka_unit_test(test_ledger_two_processes_appending_at_once_lose_no_row),
        cmocka_unit_test(test_ledger_scores_rewritten_while_another_process_appends_lose_no_row),
        cmocka_unit_test(test_ledger_now_is_iso_utc_and_honours_KPIPE_NOW),
        cmocka_unit_test(test_ledger_path_for_is_beside_the_submission),
        cmocka_unit_test(test_ledger_file_hash_is_of_the_uncompressed_bytes),
        cmocka_unit_test(test_gzip_read_file_reads_gzip_and_plain_and_refuses_a_cut_stream),
        cmocka_unit_test(test_status_shows_the_ledger_of_each_submit_stage_and_notes_no_upload),
        cmocka_unit_test(test_status_without_a_ledger_shows_no_submissions),
    };
    return KP_RUN(ledger, t);
}

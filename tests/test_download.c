/* test_download.c - lib/download against the test server: parallel files,
 * checksums, skips, resumes, retries, 4xx errors, file:// and secrets. */
#include "kp_test.h"
#include "http_server.h"
#include "../lib/download.h"
#include "../lib/err.h"
#include "../lib/sha256.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TOKEN "tok-SeCrEt-4242"

/* The server, a session (backoff 10 ms, capped at 300 ms), a folder, and the log. */
typedef struct fixture {
    ts_server *s;
    kp_http *h;
    char *dir;
    char *log_text, *verbose_text;
    size_t log_len, verbose_len;
    FILE *log, *verbose;
    kp_dl_opts o;
} fixture;

static void fx_open_with(fixture *fx, int max_retries, long stall_s)
{
    memset(fx, 0, sizeof *fx);
    fx->s = ts_start();
    assert_non_null(fx->s);
    fx->dir = kp_test_tmpdir();
    fx->log = open_memstream(&fx->log_text, &fx->log_len);
    fx->verbose = open_memstream(&fx->verbose_text, &fx->verbose_len);
    kp_http_opts ho;
    kp_http_opts_default(&ho);
    ho.max_retries = max_retries;
    ho.backoff_ms = 10;
    ho.max_backoff_ms = 300;
    ho.stall_timeout_s = stall_s;
    ho.auth_header = "Authorization: Bearer " TOKEN;
    ho.verbose = fx->verbose;
    char err[KP_ERRLEN] = "";
    if (kp_http_create(&ho, &fx->h, err, sizeof err) != 0)
        fail_msg("kp_http_create: %s", err);
    fx->o = (kp_dl_opts){.parallel = 4, .log = fx->log};
}

static void fx_open(fixture *fx)
{
    fx_open_with(fx, 5, 60);
}

static void fx_close(fixture *fx)
{
    kp_http_free(fx->h);
    ts_stop(fx->s);
    fclose(fx->log);
    fclose(fx->verbose);
    free(fx->log_text);
    free(fx->verbose_text);
    free(fx->dir);
}

/* Returns the log so far (borrowed). */
static const char *fx_log(fixture *fx)
{
    fflush(fx->log);
    return fx->log_text ? fx->log_text : "";
}

/* Returns n pattern bytes (seeded), heap. */
static unsigned char *pattern(size_t n, unsigned seed)
{
    unsigned char *p = malloc(n ? n : 1);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(i * 7 + (i >> 8) + seed * 13);
    return p;
}

/* Returns the hex sha256 of n bytes into hex. */
static void sha_of(const void *p, size_t n, char hex[KP_SHA256_HEXLEN])
{
    kp_sha256 *s = kp_sha256_create();
    assert_non_null(s);
    kp_sha256_add(s, p, n);
    kp_sha256_hex(s, hex);
    kp_sha256_free(s);
}

/* Returns a heap "SERVER_URL + path" or "DIR/name". */
static char *url_of(fixture *fx, const char *path)
{
    char *u = NULL;
    assert_true(asprintf(&u, "%s%s", ts_url(fx->s), path) > 0);
    return u;
}

/* Asserts the file at path holds exactly data[0..n). */
static void assert_file_is(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("%s is missing", path);
    unsigned char *got = malloc(n + 1);
    assert_non_null(got);
    size_t k = fread(got, 1, n + 1, f);
    fclose(f);
    if (k != n)
        fail_msg("%s has %zu bytes, expected %zu", path, k, n);
    assert_memory_equal(got, data, n);
    free(got);
}

/* Returns 1 when path exists. */
static int exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* Writes n bytes to path. */
static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

/* One served file and its download entry. */
typedef struct one {
    unsigned char *data;
    size_t n;
    char *url, *dest, *part;
    char sha[KP_SHA256_HEXLEN];
    kp_dl_file f;
} one;

/* Serves n pattern bytes at /files/NAME and fills an entry to dir/out/NAME (sha declared). */
static void one_make(fixture *fx, one *e, const char *name, size_t n, unsigned seed)
{
    char path[256];
    memset(e, 0, sizeof *e);
    e->n = n;
    e->data = pattern(n, seed);
    snprintf(path, sizeof path, "/files/%s", name);
    ts_add_file(fx->s, path, e->data, n);
    e->url = url_of(fx, path);
    snprintf(path, sizeof path, "out/%s", name);
    e->dest = kp_test_join(fx->dir, path);
    assert_true(asprintf(&e->part, "%s.part", e->dest) > 0);
    sha_of(e->data, n, e->sha);
    e->f = (kp_dl_file){.url = e->url, .dest = e->dest, .sha256 = e->sha, .size = (int64_t)n};
}

static void one_free(one *e)
{
    free(e->data);
    free(e->url);
    free(e->dest);
    free(e->part);
}

/* Downloads the one file, asserting success. */
static void fetch_ok(fixture *fx, one *e)
{
    char err[KP_ERRLEN] = "";
    if (kp_download(fx->h, &e->f, 1, &fx->o, err, sizeof err) != 0)
        fail_msg("kp_download: %s", err);
    assert_int_equal(e->f.status, 0);
    assert_file_is(e->dest, e->data, e->n);
    assert_false(exists(e->part));
}

/* Downloads the one file expecting failure rc; err gets the message. */
static void fetch_fails(fixture *fx, one *e, int rc, char *err, size_t errlen)
{
    assert_int_equal(kp_download(fx->h, &e->f, 1, &fx->o, err, errlen), rc);
    assert_int_equal(e->f.status, rc);
    assert_false(exists(e->dest));
}

/* ---- the normal path ---- */

static void test_download_three_files_in_parallel_byte_exact(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx);
    one e[3];
    kp_dl_file f[3];
    static const size_t sizes[] = {300000, 1, 70000};
    for (int i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof name, "f%d.bin", i);
        one_make(&fx, &e[i], name, sizes[i], (unsigned)i);
        f[i] = e[i].f;
    }
    f[2].sha256 = NULL;   /* size only */
    char err[KP_ERRLEN] = "";
    if (kp_download(fx.h, f, 3, &fx.o, err, sizeof err) != 0)
        fail_msg("kp_download: %s", err);
    for (int i = 0; i < 3; i++) {
        assert_file_is(e[i].dest, e[i].data, e[i].n);
        assert_false(exists(e[i].part));
        assert_int_equal(f[i].bytes, (int64_t)sizes[i]);
        assert_int_equal(f[i].attempts, 1);
        assert_int_equal(f[i].skipped, 0);
        assert_int_equal(f[i].resumed, 0);
        char line[1024];
        snprintf(line, sizeof line, "fetched %s -> %s (%zu bytes)\n", e[i].url, e[i].dest,
                 sizes[i]);
        assert_non_null(strstr(fx_log(&fx), line));
        one_free(&e[i]);
    }
    fx_close(&fx);
}

static void test_download_sha256_mismatch_names_url_and_digests_and_keeps_nothing(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx);
    one e;
    one_make(&fx, &e, "a.csv", 5000, 1);
    const char *bad = "00000000000000000000000000000000000000000000000000000000000000ff";
    e.f.sha256 = bad;
    char err[KP_ERRLEN], want[1024];
    fetch_fails(&fx, &e, KP_ERR_MISMATCH, err, sizeof err);
    snprintf(want, sizeof want, "%s: sha256 mismatch: expected %s, got %s; the file was not kept",
             e.url, bad, e.sha);
    assert_string_equal(err, want);
    assert_false(exists(e.part));
    assert_non_null(strstr(fx_log(&fx), "failed "));
    one_free(&e);
    fx_close(&fx);
}

static void test_download_size_mismatch_keeps_nothing(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx);
    one e;
    one_make(&fx, &e, "a.csv", 5000, 1);
    e.f.sha256 = NULL;
    e.f.size = 4999;
    char err[KP_ERRLEN], want[1024];
    fetch_fails(&fx, &e, KP_ERR_MISMATCH, err, sizeof err);
    snprintf(want, sizeof want, "%s: expected 4999 bytes, got 5000; the file was not kept", e.url);
    assert_string_equal(err, want);
    assert_false(exists(e.part));
    one_free(&e);
    fx_close(&fx);
}

static void test_download_skips_a_dest_whose_sha256_matches_without_a_request(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx);
    one e;
    one_make(&fx, &e, "a.csv", 2000, 1);
    fetch_ok(&fx, &e);
    ts_clear_requests(fx.s);
    fetch_ok(&fx, &e);
    assert_int_equal(ts_requests_to(fx.s, "/files/a.csv"), 0);
    assert_int_equal(e.f.skipped, 1);
    assert_int_equal(e.f.attempts, 0);
    assert_int_equal(e.f.bytes, 2000);
    char line[1024];
    snprintf(line, sizeof line, "skipped %s (sha256 matches)\n", e.dest);
    assert_non_null(strstr(fx_log(&fx), line));
    one_free(&e);
    fx_close(&fx);
}

static void test_download_skips_by_size_when_no_sha256_is_declared(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx);
    one e;
    one_make(&fx, &e, "a.csv", 2000, 1);
    e.f.sha256 = NULL;
    char *out = kp_test_join(fx.dir, "out");
    assert_int_equal(mkdir(out, 0777), 0);
    unsigned char *other = pattern(2000, 9);   /* same size, other bytes: trusted by size */
    write_bytes(e.dest, other, 2000);
    char err[KP_ERRLEN] = "";
    assert_int_equal(kp_download(fx.h, &e.f, 1, &fx.o, err, sizeof err), 0);
    assert_int_equal(e.f.skipped, 1);
    assert_int_equal(ts_requests_to(fx.s, "/files/a.csv"), 0);
    assert_non_null(strstr(fx_log(&fx), "(size matches)"));
    free(other);
    free(out);
    one_free(&e);
    fx_close(&fx);
}

static void test_download_refetches_a_dest_whose_sha256_differs(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx);
    one e;
    one_make(&fx, &e, "a.csv", 2000, 1);
    char *out = kp_test_join(fx.dir, "out");
    assert_int_equal(mkdir(out, 0777), 0);
    unsigned char *other = pattern(2000, 9);
    write_bytes(e.dest, other, 2000);
    fetch_ok(&fx, &e);
    assert_int_equal(e.f.skipped, 0);
    assert_int_equal(ts_requests_to(fx.s, "/files/a.csv"), 1);
    free(other);
    free(out);
    one_free(&e);
    fx_close(&fx);
}

/* ---- resuming ---- */

static void test_download_resumes_after_a_cut_with_a_range_request(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx);
    one e;
    one_make(&fx, &e, "big.bin", 200000, 2);
    ts_cut(fx.s, "/files/big.bin", 1, 60000);
    fetch_ok(&fx, &e);
    assert_int_equal(e.f.attempts, 2);
    assert_int_equal(e.f.resumed, 1);
    ts_request q;
    assert_int_equal(ts_request_count(fx.s), 2);
    assert_int_equal(ts_request_at(fx.s, 0, &q), 0);
    assert_string_equal(q.range, "");
    assert_int_equal(ts_request_at(fx.s, 1, &q), 0);
    assert_string_equal(q.range, "bytes=60000-");
    assert_int_equal(q.status, 206);
    assert_non_null(strstr(fx_log(&fx), "(200000 bytes, resumed at 60000)"));
    assert_non_null(strstr(fx_log(&fx), "(attempt 2/6)"));
    /* the digest streamed over the kept prefix and the rest is the file's */
    assert_string_equal(e.f.sha256_hex, e.sha);
    one_free(&e);
    fx_close(&fx);
}

static void test_download_resumes_a_part_left_by_an_earlier_run(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx);
    one e;
    one_make(&fx, &e, "big.bin", 100000, 3);
    char *out = kp_test_join(fx.dir, "out");
    assert_int_equal(mkdir(out, 0777), 0);
    write_bytes(e.part, e.data, 12345);
    fetch_ok(&fx, &e);
    assert_int_equal(e.f.attempts, 1);
    assert_int_equal(e.f.resumed, 1);
    ts_request q;
    assert_int_equal(ts_request_at(fx.s, 0, &q), 0);
    assert_string_equal(q.range, "bytes=12345-");
    assert_non_null(strstr(fx_log(&fx), "resumed at 12345)"));
    free(out);
    one_free(&e);
    fx_close(&fx);
}

static void test_download_server_ignoring_range_restarts_from_zero(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx);
    one e;
    one_make(&fx, &e, "big.bin", 100000, 3);
    ts_ignore_range(fx.s, "/files/big.bin");
    char *out = kp_test_join(fx.dir, "out");
    assert_int_equal(mkdir(out, 0777), 0);
    unsigned char *junk = pattern(5000, 77);   /* a stale .part: must not stay in front */
    write_bytes(e.part, junk, 5000);
    fetch_ok(&fx, &e);
    assert_int_equal(e.f.attempts, 1);
    assert_int_equal(e.f.resumed, 0);
    ts_request q;
    assert_int_equal(ts_request_at(fx.s, 0, &q), 0);
    assert_string_equal(q.range, "bytes=5000-");
    assert_int_equal(q.status, 200);
    assert_string_equal(e.f.sha256_hex, e.sha);   /* the stale prefix left the digest too */
    free(junk);
    free(out);
    one_free(&e);
    fx_close(&fx);
}

static void test_download_416_restarts_from_zero_once(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx);
    one e;
    one_make(&fx, &e, "a.bin", 3000, 4);
    e.f.size = -1;   /* unknown: the long .part is only found out by the server */
    char *out = kp_test_join(fx.dir, "out");
    assert_int_equal(mkdir(out, 0777), 0);
    unsigned char *junk = pattern(4000, 5);
    write_bytes(e.part, junk, 4000);
    fetch_ok(&fx, &e);
    assert_int_equal(e.f.attempts, 2);
    assert_int_equal(e.f.resumed, 0);
    ts_request q;
    assert_int_equal(ts_request_at(fx.s, 0, &q), 0);
    assert_int_equal(q.status, 416);
    assert_int_equal(ts_request_at(fx.s, 1, &q), 0);
    assert_string_equal(q.range, "");
    assert_int_equal(q.status, 200);
    free(junk);
    free(out);
    one_free(&e);
    fx_close(&fx);
}

/* ---- retries ---- */

static void test_download_retries_503_twice_then_succeeds(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx);
    one e;
    one_make(&fx, &e, "a.bin", 3000, 4);
    ts_fail(fx.s, "/files/a.bin", 2, 503, -1);
    fetch_ok(&fx, &e);
    assert_int_equal(e.f.attempts, 3);
    assert_int_equal(ts_requests_to(fx.s, "/files/a.bin"), 3);
    char line[1024];
    snprintf(line, sizeof line, "retrying %s in 0.0s: HTTP 503 (attempt 2/6)\n", e.url);
    assert_non_null(strstr(fx_log(&fx), line));
    snprintf(line, sizeof line, "retrying %s in 0.0s: HTTP 503 (attempt 3/6)\n", e.url);
    assert_non_null(strstr(fx_log(&fx), line));
    one_free(&e);
    fx_close(&fx);
}

static void test_download_429_retry_after_is_honoured_up_to_the_cap(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx);
    one e;
    one_make(&fx, &e, "a.bin", 3000, 4);
    ts_fail(fx.s, "/files/a.bin", 1, 429, 1);   /* 1 s asked, 300 ms allowed; backoff is 10 ms */
    fetch_ok(&fx, &e);
    assert_int_equal(e.f.attempts, 2);
    char line[1024];
    snprintf(line, sizeof line, "retrying %s in 0.3s: HTTP 429 (attempt 2/6)\n", e.url);
    assert_non_null(strstr(fx_log(&fx), line));
    one_free(&e);
    fx_close(&fx);
}

/* libcurl's speed is an average over the last ~5 s, so a stall right after
 * bytes flowed is noticed up to ~5 s late; a stall before the first byte shows
 * the cut itself quickly (the server would hold on for 30 s). */
static void test_download_stalled_transfer_is_cut_and_retried(void **state)
{
    (void)state;
    fixture fx;
    fx_open_with(&fx, 5, 1);
    one e;
    one_make(&fx, &e, "a.bin", 100000, 6);
    ts_stall(fx.s, "/files/a.bin", 1, 0, 30);
    fetch_ok(&fx, &e);
    assert_int_equal(e.f.attempts, 2);
    assert_non_null(strstr(fx_log(&fx), ": Operation too slow. Less than 1 bytes/sec"));
    assert_non_null(strstr(fx_log(&fx), "(attempt 2/6)"));
    one_free(&e);
    fx_close(&fx);
}

static void test_download_others_go_on_while_one_waits_for_its_retry(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx);
    one a, b;
    one_make(&fx, &a, "a.bin", 1000, 1);
    one_make(&fx, &b, "b.bin", 1000, 2);
    ts_fail(fx.s, "/files/a.bin", 1, 429, 1);   /* a waits 300 ms */
    kp_dl_file f[2] = {a.f, b.f};
    fx.o.parallel = 1;
    char err[KP_ERRLEN] = "";
    assert_int_equal(kp_download(fx.h, f, 2, &fx.o, err, sizeof err), 0);
    ts_request q;   /* with one slot: a (429), then b while a waits, then a again */
    assert_int_equal(ts_request_count(fx.s), 3);
    assert_int_equal(ts_request_at(fx.s, 1, &q), 0);
    assert_string_equal(q.path, "/files/b.bin");
    assert_int_equal(ts_request_at(fx.s, 2, &q), 0);
    assert_string_equal(q.path, "/files/a.bin");
    one_free(&a);
    one_free(&b);
    fx_close(&fx);
}

/* ---- failures ---- */

static void test_download_404_and_403_name_url_and_status_without_retry(void **state)
{
    (void)state;
    static const struct { int status, rc; const char *text; } cases[] = {
        {404, KP_ERR_NOTFOUND, "HTTP 404 Not Found: injected failure"},
        {403, KP_ERR_ARG, "HTTP 403 Forbidden: injected failure"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fixture fx;
        fx_open(&fx);
        one e;
        one_make(&fx, &e, "a.bin", 1000, 1);
        ts_fail(fx.s, "/files/a.bin", 1, cases[i].status, -1);
        char err[KP_ERRLEN], want[1024];
        fetch_fails(&fx, &e, cases[i].rc, err, sizeof err);
        snprintf(want, sizeof want, "%s: %s", e.url, cases[i].text);
        assert_string_equal(err, want);
        assert_int_equal(ts_requests_to(fx.s, "/files/a.bin"), 1);
        assert_int_equal(e.f.attempts, 1);
        assert_false(exists(e.part));   /* nothing was received: no empty .part left */
        one_free(&e);
        fx_close(&fx);
    }
}

static void test_download_retries_spent_is_an_error(void **state)
{
    (void)state;
    fixture fx;
    fx_open_with(&fx, 2, 60);
    one e;
    one_make(&fx, &e, "a.bin", 1000, 1);
    ts_fail(fx.s, "/files/a.bin", 10, 503, -1);
    char err[KP_ERRLEN], want[1024];
    fetch_fails(&fx, &e, KP_ERR_IO, err, sizeof err);
    snprintf(want, sizeof want, "%s: HTTP 503 Service Unavailable: injected failure "
             "(after 3 attempts)", e.url);
    assert_string_equal(err, want);
    assert_int_equal(ts_requests_to(fx.s, "/files/a.bin"), 3);
    assert_int_equal(e.f.attempts, 3);
    one_free(&e);
    fx_close(&fx);
}

static void test_download_connection_refused_is_retried_then_an_error(void **state)
{
    (void)state;
    fixture fx;
    fx_open_with(&fx, 1, 60);
    char *dest = kp_test_join(fx.dir, "x.bin");
    kp_dl_file f = {.url = "http://127.0.0.1:1/x.bin?sig=QUERY-SECRET", .dest = dest, .size = -1,
                    .auth = 1};
    char err[KP_ERRLEN];
    assert_int_equal(kp_download(fx.h, &f, 1, &fx.o, err, sizeof err), KP_ERR_IO);
    assert_non_null(strstr(err, "http://127.0.0.1:1/x.bin?...: "));
    assert_non_null(strstr(err, "(after 2 attempts)"));
    assert_null(strstr(err, "QUERY-SECRET"));
    assert_int_equal(f.attempts, 2);
    free(dest);
    fx_close(&fx);
}

static void test_download_all_files_are_attempted_and_the_first_failure_reported(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx);
    one e[3];
    kp_dl_file f[3];
    for (int i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof name, "f%d.bin", i);
        one_make(&fx, &e[i], name, 1000, (unsigned)i);
        f[i] = e[i].f;
    }
    ts_fail(fx.s, "/files/f1.bin", 1, 404, -1);
    ts_fail(fx.s, "/files/f2.bin", 1, 403, -1);
    char err[KP_ERRLEN];
    assert_int_equal(kp_download(fx.h, f, 3, &fx.o, err, sizeof err), KP_ERR_NOTFOUND);
    assert_non_null(strstr(err, "/files/f1.bin: HTTP 404"));
    assert_int_equal(f[0].status, 0);
    assert_int_equal(f[1].status, KP_ERR_NOTFOUND);
    assert_int_equal(f[2].status, KP_ERR_ARG);
    assert_file_is(e[0].dest, e[0].data, 1000);
    assert_non_null(strstr(fx_log(&fx), "/files/f2.bin: HTTP 403"));   /* the other is logged */
    for (int i = 0; i < 3; i++)
        one_free(&e[i]);
    fx_close(&fx);
}

static void test_download_bad_arguments_are_refused_before_any_request(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx);
    static const struct { const char *url, *dest, *sha, *msg; } cases[] = {
        {NULL, "/tmp/x", NULL, "download 1: a URL and a destination are needed"},
        {"http://h/x", NULL, NULL, "download 1: a URL and a destination are needed"},
        {"http://h/x", "/tmp/x", "abc", "/tmp/x: the declared sha256 'abc' is not 64 hex digits"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kp_dl_file f = {.url = cases[i].url, .dest = cases[i].dest, .sha256 = cases[i].sha,
                        .size = -1};
        char err[KP_ERRLEN];
        assert_int_equal(kp_download(fx.h, &f, 1, &fx.o, err, sizeof err), KP_ERR_ARG);
        assert_string_equal(err, cases[i].msg);
    }
    kp_dl_file two[2] = {{.url = "http://h/a", .dest = "/tmp/same", .size = -1},
                         {.url = "http://h/b", .dest = "/tmp/same", .size = -1}};
    char err[KP_ERRLEN];
    assert_int_equal(kp_download(fx.h, two, 2, &fx.o, err, sizeof err), KP_ERR_ARG);
    assert_string_equal(err, "/tmp/same: two downloads share this destination");
    assert_int_equal(ts_request_count(fx.s), 0);
    fx_close(&fx);
}

/* ---- sources, secrets, progress ---- */

static void test_download_file_url_works(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx);
    unsigned char *data = pattern(50000, 8);
    char *src = kp_test_join(fx.dir, "src.bin");
    write_bytes(src, data, 50000);
    char *url = NULL, *dest = kp_test_join(fx.dir, "sub/dir/dst.bin");
    assert_true(asprintf(&url, "file://%s", src) > 0);
    char sha[KP_SHA256_HEXLEN];
    sha_of(data, 50000, sha);
    kp_dl_file f = {.url = url, .dest = dest, .sha256 = sha, .size = -1};
    char err[KP_ERRLEN] = "";
    if (kp_download(fx.h, &f, 1, &fx.o, err, sizeof err) != 0)
        fail_msg("kp_download: %s", err);
    assert_file_is(dest, data, 50000);
    assert_int_equal(f.bytes, 50000);
    free(data), free(src), free(url), free(dest);
    fx_close(&fx);
}

static void test_download_file_url_resumes_a_part(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx);
    unsigned char *data = pattern(50000, 8);
    char *src = kp_test_join(fx.dir, "src.bin"), *dest = kp_test_join(fx.dir, "dst.bin");
    char *part = kp_test_join(fx.dir, "dst.bin.part"), *url = NULL;
    write_bytes(src, data, 50000);
    write_bytes(part, data, 20000);
    assert_true(asprintf(&url, "file://%s", src) > 0);
    kp_dl_file f = {.url = url, .dest = dest, .size = 50000};
    char err[KP_ERRLEN] = "";
    if (kp_download(fx.h, &f, 1, &fx.o, err, sizeof err) != 0)
        fail_msg("kp_download: %s", err);
    assert_file_is(dest, data, 50000);
    assert_int_equal(f.resumed, 1);
    free(data), free(src), free(url), free(dest), free(part);
    fx_close(&fx);
}

static void test_download_never_shows_the_token_or_the_query(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx);
    ts_add_file(fx.s, "/files/a.bin", "abc", 3);
    char *url = url_of(&fx, "/files/a.bin?X-Goog-Signature=QUERY-SECRET");
    char *missing = url_of(&fx, "/files/none?X-Goog-Signature=QUERY-SECRET");
    char *d1 = kp_test_join(fx.dir, "a.bin"), *d2 = kp_test_join(fx.dir, "none");
    kp_dl_file f[2] = {{.url = url, .dest = d1, .size = 3, .auth = 1},
                       {.url = missing, .dest = d2, .size = -1, .auth = 1}};
    char err[KP_ERRLEN];
    assert_int_equal(kp_download(fx.h, f, 2, &fx.o, err, sizeof err), KP_ERR_NOTFOUND);
    fflush(fx.verbose);
    const char *texts[] = {err, fx_log(&fx), fx.verbose_text};
    for (int i = 0; i < 3; i++) {
        assert_null(strstr(texts[i], TOKEN));
        assert_null(strstr(texts[i], "QUERY-SECRET"));
    }
    assert_non_null(strstr(err, "/files/none?...: HTTP 404 Not Found"));
    assert_non_null(strstr(fx_log(&fx), "/files/a.bin?... -> "));
    assert_non_null(strstr(fx.verbose_text, "> Authorization: [redacted]"));
    ts_request q;
    assert_int_equal(ts_request_at(fx.s, 0, &q), 0);
    assert_int_equal(q.had_auth, 1);
    free(url), free(missing), free(d1), free(d2);
    fx_close(&fx);
}

/* Records progress calls. */
typedef struct calls { int n; int64_t last_done, last_total; int done_eq_total; } calls;

static void record(void *arg, int64_t done, int64_t total, double rate)
{
    calls *c = arg;
    assert_true(rate >= 0);
    c->n++;
    c->last_done = done;
    c->last_total = total;
    c->done_eq_total += total == done;
}

static void test_download_progress_ends_with_done_equal_total(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx);
    one a, b;
    one_make(&fx, &a, "a.bin", 40000, 1);
    one_make(&fx, &b, "b.bin", 2000, 2);
    calls c = {0};
    fx.o.progress = record;
    fx.o.progress_arg = &c;
    kp_dl_file f[2] = {a.f, b.f};
    char err[KP_ERRLEN] = "";
    assert_int_equal(kp_download(fx.h, f, 2, &fx.o, err, sizeof err), 0);
    assert_true(c.n >= 1);
    assert_int_equal(c.last_done, 42000);
    assert_int_equal(c.last_total, 42000);
    assert_int_equal(c.done_eq_total, 1);
    one_free(&a);
    one_free(&b);
    fx_close(&fx);
}

static void test_download_printer_plain_prints_only_at_the_end_and_tty_redraws(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    kp_dl_printer p = {.out = out, .tty = 0};
    kp_dl_print_progress(&p, 1024, 10 << 20, 1024.0);
    fflush(out);
    assert_int_equal(len, 0);   /* less than 10 s since the start */
    kp_dl_print_progress(&p, 10 << 20, 10 << 20, 2.0 * (1 << 20));
    fflush(out);
    assert_non_null(strstr(text, "10.0 MiB / 10.0 MiB  2.0 MiB/s  done in 0s\n"));
    fclose(out);
    free(text);
    text = NULL;
    out = open_memstream(&text, &len);
    kp_dl_printer t = {.out = out, .tty = 1};
    kp_dl_print_progress(&t, 3 << 20, 13 << 20, 1 << 20);
    kp_dl_print_progress(&t, 5 << 20, -1, 1 << 20);
    fflush(out);
    assert_non_null(strstr(text, "\r3.0 MiB / 13.0 MiB  1.0 MiB/s  ETA 10s"));
    assert_non_null(strstr(text, "\r5.0 MiB  1.0 MiB/s"));
    assert_null(strchr(text, '\n'));   /* redrawn in place until the end */
    fclose(out);
    free(text);
}

KP_TEST_GROUP(download)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_download_three_files_in_parallel_byte_exact),
        cmocka_unit_test(test_download_sha256_mismatch_names_url_and_digests_and_keeps_nothing),
        cmocka_unit_test(test_download_size_mismatch_keeps_nothing),
        cmocka_unit_test(test_download_skips_a_dest_whose_sha256_matches_without_a_request),
        cmocka_unit_test(test_download_skips_by_size_when_no_sha256_is_declared),
        cmocka_unit_test(test_download_refetches_a_dest_whose_sha256_differs),
        cmocka_unit_test(test_download_resumes_after_a_cut_with_a_range_request),
        cmocka_unit_test(test_download_resumes_a_part_left_by_an_earlier_run),
        cmocka_unit_test(test_download_server_ignoring_range_restarts_from_zero),
        cmocka_unit_test(test_download_416_restarts_from_zero_once),
        cmocka_unit_test(test_download_retries_503_twice_then_succeeds),
        cmocka_unit_test(test_download_429_retry_after_is_honoured_up_to_the_cap),
        cmocka_unit_test(test_download_stalled_transfer_is_cut_and_retried),
        cmocka_unit_test(test_download_others_go_on_while_one_waits_for_its_retry),
        cmocka_unit_test(test_download_404_and_403_name_url_and_status_without_retry),
        cmocka_unit_test(test_download_retries_spent_is_an_error),
        cmocka_unit_test(test_download_connection_refused_is_retried_then_an_error),
        cmocka_unit_test(test_download_all_files_are_attempted_and_the_first_failure_reported),
        cmocka_unit_test(test_download_bad_arguments_are_refused_before_any_request),
        cmocka_unit_test(test_download_file_url_works),
        cmocka_unit_test(test_download_file_url_resumes_a_part),
        cmocka_unit_test(test_download_never_shows_the_token_or_the_query),
        cmocka_unit_test(test_download_progress_ends_with_done_equal_total),
        cmocka_unit_test(test_download_printer_plain_prints_only_at_the_end_and_tty_redraws),
    };
    return KP_RUN(download, t);
}

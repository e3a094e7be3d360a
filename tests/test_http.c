/* test_http.c - lib/http: requests against the test server, the retry
 * policy, statuses, and secrets kept out of verbose output and messages. */
#include "kp_test.h"
#include "http_server.h"
#include "../lib/err.h"
#include "../lib/http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TOKEN "tok-SeCrEt-4242"
#define AUTH "Authorization: Bearer " TOKEN
#define API "/v1/competitions.CompetitionApiService/"

/* A server and a session with fast retries (backoff 10 ms, at most 300 ms),
 * optionally with auth and verbose output. */
typedef struct fixture {
    ts_server *s;
    kp_http *h;
    char *vtext;
    size_t vlen;
    FILE *verbose;
} fixture;

static void fx_open(fixture *fx, int max_retries, int auth, int verbose)
{
    memset(fx, 0, sizeof *fx);
    fx->s = ts_start();
    assert_non_null(fx->s);
    kp_http_opts o;
    kp_http_opts_default(&o);
    o.max_retries = max_retries;
    o.backoff_ms = 10;
    o.max_backoff_ms = 300;
    o.auth_header = auth ? AUTH : NULL;
    if (verbose)
        o.verbose = fx->verbose = open_memstream(&fx->vtext, &fx->vlen);
    char err[KP_ERRLEN] = "";
    if (kp_http_create(&o, &fx->h, err, sizeof err) != 0)
        fail_msg("kp_http_create: %s", err);
}

/* Returns the verbose output so far (borrowed from fx). */
static const char *fx_verbose(fixture *fx)
{
    fflush(fx->verbose);
    return fx->vtext ? fx->vtext : "";
}

static void fx_close(fixture *fx)
{
    kp_http_free(fx->h);
    ts_stop(fx->s);
    if (fx->verbose)
        fclose(fx->verbose);
    free(fx->vtext);
}

/* Returns a heap "SERVER_URL + path". */
static char *url_of(fixture *fx, const char *path)
{
    char *u = NULL;
    assert_true(asprintf(&u, "%s%s", ts_url(fx->s), path) > 0);
    return u;
}

/* Runs req, asserting a response arrived. */
static void do_ok(fixture *fx, const kp_http_req *req, kp_http_resp *r)
{
    char err[KP_ERRLEN] = "";
    if (kp_http_do(fx->h, req, r, err, sizeof err) != 0)
        fail_msg("kp_http_do: %s", err);
}

/* ---- pure functions ---- */

static void test_http_url_redact_cuts_query_and_userinfo(void **state)
{
    (void)state;
    static const struct { const char *in, *out; } cases[] = {
        {"https://u:p@h.example/x?sig=abc", "https://h.example/x?..."},
        {"https://h/x/y.zip", "https://h/x/y.zip"},
        {"http://h:8080/a?b=c#frag", "http://h:8080/a?..."},
        {"https://user@h?q", "https://h?..."},
        {"file:///tmp/a.csv", "file:///tmp/a.csv"},
        {"/upload/3?token=zzz", "/upload/3?..."},
        {"https://h/p?next=https://u:p@g/", "https://h/p?..."},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[128];
        kp_http_url_redact(cases[i].in, out, sizeof out);
        if (strcmp(out, cases[i].out) != 0)
            fail_msg("%s -> %s, expected %s", cases[i].in, out, cases[i].out);
    }
    char small[8];
    kp_http_url_redact("https://h/abcdef?x", small, sizeof small);
    assert_string_equal(small, "https:/");   /* truncated, still a C string */
}

static void test_http_text_redact_hides_header_values_queries_and_the_credential(void **state)
{
    (void)state;
    kp_http_opts o;
    kp_http_opts_default(&o);
    o.auth_header = AUTH;
    kp_http *h = NULL;
    char err[KP_ERRLEN];
    assert_int_equal(kp_http_create(&o, &h, err, sizeof err), 0);
    static const struct { const char *in, *out; } cases[] = {
        {"Authorization: Bearer abc", "Authorization: [redacted]"},
        {"proxy-authorization: Basic dXM6cHc=", "proxy-authorization: [redacted]"},
        {"h2h3 [authorization: Bearer abc]", "h2h3 [authorization: [redacted]]"},
        {"Set-Cookie: session=abc; Path=/", "Set-Cookie: [redacted]"},
        {"GET /files/a.csv?sig=Q1 HTTP/1.1", "GET /files/a.csv?... HTTP/1.1"},
        {"Location: https://u:p@store/x?X-Goog-Signature=Q2", "Location: https://store/x?..."},
        {"Issue another request to this URL: 'http://h/x?a=1'",
         "Issue another request to this URL: 'http://h/x?...'"},
        {"echo " TOKEN " back", "echo [redacted] back"},
        {"Connected to 127.0.0.1 (127.0.0.1) port 80 (#0)",
         "Connected to 127.0.0.1 (127.0.0.1) port 80 (#0)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[256];
        kp_http_text_redact(h, cases[i].in, out, sizeof out);
        if (strcmp(out, cases[i].out) != 0)
            fail_msg("%s -> %s, expected %s", cases[i].in, out, cases[i].out);
    }
    kp_http_free(h);
}

static void test_http_backoff_doubles_caps_and_honours_retry_after(void **state)
{
    (void)state;
    kp_http_opts o;
    kp_http_opts_default(&o);
    o.backoff_ms = 100;
    o.max_backoff_ms = 1000;
    static const struct { int attempt; long retry_after, ms; } cases[] = {
        {1, -1, 100}, {2, -1, 200}, {3, -1, 400}, {4, -1, 800}, {5, -1, 1000}, {60, -1, 1000},
        {1, 0, 0}, {1, 1, 1000}, {3, 2, 1000}, {1, 100000000L, 1000},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        long ms = kp_http_backoff_ms(&o, cases[i].attempt, cases[i].retry_after);
        if (ms != cases[i].ms)
            fail_msg("attempt %d, retry-after %ld: %ld ms, expected %ld", cases[i].attempt,
                     cases[i].retry_after, ms, cases[i].ms);
    }
    o.max_backoff_ms = 3000;
    assert_int_equal(kp_http_backoff_ms(&o, 1, 2), 2000);
}

static void test_http_status_transient_table(void **state)
{
    (void)state;
    static const struct { long status; int transient; } cases[] = {
        {200, 0}, {206, 0}, {302, 0}, {400, 0}, {401, 0}, {403, 0}, {404, 0}, {416, 0},
        {408, 1}, {429, 1}, {500, 1}, {502, 1}, {503, 1}, {504, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (kp_http_status_transient(cases[i].status) != cases[i].transient)
            fail_msg("status %ld", cases[i].status);
}

static void test_http_status_error_names_url_status_and_server_message(void **state)
{
    (void)state;
    static const struct { long status; const char *body; int rc; const char *msg; } cases[] = {
        {404, "{\"code\":404,\"message\":\"Competition not found\"}", KP_ERR_NOTFOUND,
         "https://h/x?...: HTTP 404 Not Found: Competition not found"},
        {403, "{\"error\":{\"message\":\"rules not accepted\"}}", KP_ERR_ARG,
         "https://h/x?...: HTTP 403 Forbidden: rules not accepted"},
        {500, "  oops\nsecond line", KP_ERR_IO,
         "https://h/x?...: HTTP 500 Internal Server Error: oops"},
        {418, "", KP_ERR_ARG, "https://h/x?...: HTTP 418"},
        {400, "bad\x01" "byte", KP_ERR_ARG, "https://h/x?...: HTTP 400 Bad Request: bad?byte"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kp_http_resp r = {.status = cases[i].status, .retry_after_s = -1};
        kp_buf_init(&r.body, 0);
        assert_int_equal(kp_buf_adds(&r.body, cases[i].body), 0);
        char err[KP_ERRLEN];
        int rc = kp_http_status_error("https://h/x?sig=Q", &r, err, sizeof err);
        assert_int_equal(rc, cases[i].rc);
        assert_string_equal(err, cases[i].msg);
        kp_http_resp_free(&r);
    }
}

static void test_http_create_rejects_bad_options_without_echoing_the_header(void **state)
{
    (void)state;
    kp_http_opts o;
    kp_http_opts_default(&o);
    o.auth_header = "Authorization: Bearer " TOKEN "\r\nX-Evil: 1";
    kp_http *h = (kp_http *)0x1;
    char err[KP_ERRLEN];
    assert_int_equal(kp_http_create(&o, &h, err, sizeof err), KP_ERR_ARG);
    assert_ptr_equal(h, (kp_http *)0x1);
    assert_non_null(strstr(err, "one \"Name: value\" line"));
    assert_null(strstr(err, TOKEN));
    kp_http_opts_default(&o);
    o.max_retries = -1;
    assert_int_equal(kp_http_create(&o, &h, err, sizeof err), KP_ERR_ARG);
    assert_non_null(strstr(err, "must be >= 0"));
}

static void test_http_options_hide_the_auth_header(void **state)
{
    (void)state;
    kp_http_opts o;
    kp_http_opts_default(&o);
    o.auth_header = AUTH;
    o.max_retries = 3;
    kp_http *h = NULL;
    char err[KP_ERRLEN];
    assert_int_equal(kp_http_create(&o, &h, err, sizeof err), 0);
    const kp_http_opts *got = kp_http_options(h);
    assert_null(got->auth_header);
    assert_int_equal(got->max_retries, 3);
    assert_string_equal(got->user_agent, "kpipe/" KP_VERSION);
    kp_http_free(h);
    kp_http_free(NULL);
}

/* ---- requests ---- */

static void test_http_get_returns_status_and_body(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx, 0, 0, 0);
    ts_add_file(fx.s, "/files/a.txt", "hello\n", 6);
    char *u = url_of(&fx, "/files/a.txt");
    kp_http_req req = {.method = "GET", .url = u};
    kp_http_resp r;
    do_ok(&fx, &req, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body.len, 6);
    assert_string_equal(kp_buf_str(&r.body), "hello\n");
    assert_null(r.location);
    assert_int_equal(r.retry_after_s, -1);
    kp_http_resp_free(&r);
    free(u);
    fx_close(&fx);
}

static void test_http_404_is_a_response_not_an_error(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx, 3, 0, 0);
    char *u = url_of(&fx, "/files/missing");
    kp_http_req req = {.method = "GET", .url = u, .retry = 1};
    kp_http_resp r;
    do_ok(&fx, &req, &r);
    assert_int_equal(r.status, 404);
    assert_int_equal(ts_requests_to(fx.s, "/files/missing"), 1);   /* not retried */
    kp_http_resp_free(&r);
    free(u);
    fx_close(&fx);
}

static void test_http_auth_header_is_sent_only_when_asked(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx, 0, 1, 0);
    ts_set_auth(fx.s, "Bearer " TOKEN);
    ts_add_competition_file(fx.s, "comp", "train.csv", "a,b\n", 4);
    char *u = url_of(&fx, API "ListDataFiles");
    const char *body = "{\"competitionName\":\"comp\"}";
    for (int auth = 0; auth <= 1; auth++) {
        kp_http_req req = {.method = "POST", .url = u, .content_type = "application/json",
                           .body = body, .body_len = strlen(body), .auth = auth};
        kp_http_resp r;
        do_ok(&fx, &req, &r);
        assert_int_equal(r.status, auth ? 200 : 401);
        if (auth)
            assert_non_null(strstr(kp_buf_str(&r.body), "\"name\":\"train.csv\""));
        ts_request q;
        assert_int_equal(ts_request_at(fx.s, auth, &q), 0);
        assert_int_equal(q.had_auth, auth);
        assert_int_equal(q.auth_ok, auth);
        assert_string_equal(q.method, "POST");
        kp_http_resp_free(&r);
    }
    free(u);
    fx_close(&fx);
}

static void test_http_post_redirect_not_followed_gives_location(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx, 0, 0, 0);
    ts_add_competition_file(fx.s, "comp", "a.csv", "x\n", 2);
    char *u = url_of(&fx, API "DownloadDataFile");
    char *want = url_of(&fx, "/files/comp/a.csv");
    const char *body = "{\"competitionName\":\"comp\",\"fileName\":\"a.csv\"}";
    kp_http_req req = {.method = "POST", .url = u, .body = body, .body_len = strlen(body)};
    kp_http_resp r;
    do_ok(&fx, &req, &r);
    assert_int_equal(r.status, 302);
    assert_non_null(r.location);
    assert_string_equal(r.location, want);
    assert_int_equal(ts_request_count(fx.s), 1);
    kp_http_resp_free(&r);
    free(u);
    free(want);
    fx_close(&fx);
}

static void test_http_post_redirect_followed_is_asked_again_as_get(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx, 0, 0, 0);
    ts_add_competition_file(fx.s, "comp", "a.csv", "x,y\n1,2\n", 8);
    char *u = url_of(&fx, API "DownloadDataFile");
    const char *body = "{\"competitionName\":\"comp\",\"fileName\":\"a.csv\"}";
    kp_http_req req = {.method = "POST", .url = u, .body = body, .body_len = strlen(body),
                       .follow = 1};
    kp_http_resp r;
    do_ok(&fx, &req, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(kp_buf_str(&r.body), "x,y\n1,2\n");
    assert_null(r.location);
    ts_request q;
    assert_int_equal(ts_request_count(fx.s), 2);
    assert_int_equal(ts_request_at(fx.s, 1, &q), 0);
    assert_string_equal(q.method, "GET");
    assert_string_equal(q.path, "/files/comp/a.csv");
    kp_http_resp_free(&r);
    free(u);
    fx_close(&fx);
}

static void test_http_retries_503_then_succeeds(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx, 5, 0, 1);
    ts_add_file(fx.s, "/files/a.txt", "ok", 2);
    ts_fail(fx.s, "/files/a.txt", 2, 503, -1);
    char *u = url_of(&fx, "/files/a.txt");
    kp_http_req req = {.method = "GET", .url = u, .retry = 1};
    kp_http_resp r;
    do_ok(&fx, &req, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(kp_buf_str(&r.body), "ok");
    assert_int_equal(ts_requests_to(fx.s, "/files/a.txt"), 3);
    assert_non_null(strstr(fx_verbose(&fx), "retrying GET "));
    assert_non_null(strstr(fx_verbose(&fx), ": HTTP 503 (attempt 3/6)"));
    kp_http_resp_free(&r);
    free(u);
    fx_close(&fx);
}

static void test_http_no_retry_unless_the_request_allows_it(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx, 5, 0, 0);
    ts_add_file(fx.s, "/files/a.txt", "ok", 2);
    ts_fail(fx.s, "/files/a.txt", 1, 503, -1);
    char *u = url_of(&fx, "/files/a.txt");
    kp_http_req req = {.method = "GET", .url = u};
    kp_http_resp r;
    do_ok(&fx, &req, &r);
    assert_int_equal(r.status, 503);
    assert_int_equal(ts_requests_to(fx.s, "/files/a.txt"), 1);
    kp_http_resp_free(&r);
    free(u);
    fx_close(&fx);
}

static void test_http_retries_spent_return_the_last_transient_status(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx, 2, 0, 0);
    ts_add_file(fx.s, "/files/a.txt", "ok", 2);
    ts_fail(fx.s, "/files/a.txt", 10, 500, -1);
    char *u = url_of(&fx, "/files/a.txt");
    kp_http_req req = {.method = "GET", .url = u, .retry = 1};
    kp_http_resp r;
    do_ok(&fx, &req, &r);
    assert_int_equal(r.status, 500);
    assert_non_null(strstr(kp_buf_str(&r.body), "injected failure"));
    assert_int_equal(ts_requests_to(fx.s, "/files/a.txt"), 3);
    kp_http_resp_free(&r);
    free(u);
    fx_close(&fx);
}

static void test_http_429_retry_after_is_read_and_honoured(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx, 0, 0, 0);
    ts_add_file(fx.s, "/files/a.txt", "ok", 2);
    ts_fail(fx.s, "/files/a.txt", 1, 429, 7);
    char *u = url_of(&fx, "/files/a.txt");
    kp_http_req req = {.method = "GET", .url = u};
    kp_http_resp r;
    do_ok(&fx, &req, &r);
    assert_int_equal(r.status, 429);
    assert_int_equal(r.retry_after_s, 7);
    kp_http_resp_free(&r);
    fx_close(&fx);
    /* with retries the delay is Retry-After, capped by max_backoff_ms (300 ms here) */
    fx_open(&fx, 3, 0, 1);
    ts_add_file(fx.s, "/files/a.txt", "ok", 2);
    ts_fail(fx.s, "/files/a.txt", 1, 429, 1);
    free(u);
    u = url_of(&fx, "/files/a.txt");
    req.url = u;
    req.retry = 1;
    do_ok(&fx, &req, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(fx_verbose(&fx), " in 0.3s: HTTP 429 (attempt 2/4)"));
    kp_http_resp_free(&r);
    free(u);
    fx_close(&fx);
}

static void test_http_connection_refused_names_redacted_url_after_retries(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx, 2, 1, 1);
    const char *u = "http://user:pw-SECRET@127.0.0.1:1/x?sig=QUERY-SECRET";
    kp_http_req req = {.method = "GET", .url = u, .retry = 1, .auth = 1};
    kp_http_resp r;
    char err[KP_ERRLEN] = "";
    assert_int_equal(kp_http_do(fx.h, &req, &r, err, sizeof err), KP_ERR_IO);
    assert_non_null(strstr(err, "GET http://127.0.0.1:1/x?...: "));
    assert_non_null(strstr(err, "(after 3 attempts)"));
    const char *v = fx_verbose(&fx);
    const char *secrets[] = {"SECRET", TOKEN};
    for (int i = 0; i < 2; i++) {
        assert_null(strstr(err, secrets[i]));
        assert_null(strstr(v, secrets[i]));
    }
    assert_null(r.body.data);   /* nothing left to free */
    kp_http_resp_free(&r);
    fx_close(&fx);
}

static void test_http_verbose_shows_headers_with_secrets_redacted(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx, 0, 1, 1);
    ts_add_file(fx.s, "/files/a.txt", "ok", 2);
    char *u = url_of(&fx, "/files/a.txt?X-Goog-Signature=QUERY-SECRET");
    const char *extra[] = {"X-Test: visible"};
    kp_http_req req = {.method = "GET", .url = u, .auth = 1, .headers = extra, .n_headers = 1};
    kp_http_resp r;
    do_ok(&fx, &req, &r);
    assert_int_equal(r.status, 200);   /* the server ignores the query */
    const char *v = fx_verbose(&fx);
    assert_non_null(strstr(v, "> GET /files/a.txt?... HTTP/1.1\n"));
    assert_non_null(strstr(v, "> Authorization: [redacted]\n"));
    assert_non_null(strstr(v, "> X-Test: visible\n"));
    assert_non_null(strstr(v, "< HTTP/1.1 200 OK\n"));
    assert_null(strstr(v, TOKEN));
    assert_null(strstr(v, "QUERY-SECRET"));
    ts_request q;
    assert_int_equal(ts_request_at(fx.s, 0, &q), 0);
    assert_int_equal(q.had_auth, 1);   /* sent all the same */
    kp_http_resp_free(&r);
    free(u);
    fx_close(&fx);
}

static void test_http_failed_status_message_hides_token_and_query(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx, 0, 1, 1);
    ts_set_auth(fx.s, "Bearer other");
    char *u = url_of(&fx, API "ListDataFiles?key=QUERY-SECRET");
    const char *body = "{\"competitionName\":\"comp\"}";
    kp_http_req req = {.method = "POST", .url = u, .body = body, .body_len = strlen(body),
                       .auth = 1};
    kp_http_resp r;
    do_ok(&fx, &req, &r);
    assert_int_equal(r.status, 401);
    char err[KP_ERRLEN];
    assert_int_equal(kp_http_status_error(u, &r, err, sizeof err), KP_ERR_ARG);
    assert_non_null(strstr(err, "/ListDataFiles?...: HTTP 401 Unauthorized: Unauthenticated"));
    assert_null(strstr(err, "QUERY-SECRET"));
    assert_null(strstr(fx_verbose(&fx), TOKEN));
    assert_null(strstr(fx_verbose(&fx), "QUERY-SECRET"));
    kp_http_resp_free(&r);
    free(u);
    fx_close(&fx);
}

/* Writes n pattern bytes to dir/name; returns the heap path and the bytes in *data. */
static char *pattern_file(const char *dir, const char *name, size_t n, unsigned char **data)
{
    unsigned char *p = malloc(n);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(i * 7 + (i >> 8));
    char *path = kp_test_join(dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
    *data = p;
    return path;
}

/* PUTs bytes [a, b] of path to the upload URL with Content-Range; returns the status. */
static long put_range(fixture *fx, const char *url, const char *path, int64_t a, int64_t b,
                      int64_t total, kp_http_resp *r)
{
    char cr[96];
    const char *hdr[] = {cr};
    snprintf(cr, sizeof cr, "Content-Range: bytes %lld-%lld/%lld", (long long)a, (long long)b,
             (long long)total);
    kp_http_req req = {.method = "PUT", .url = url, .body_file = path, .body_offset = a,
                       .body_file_len = b - a + 1, .headers = hdr, .n_headers = 1,
                       .content_type = "application/octet-stream"};
    do_ok(fx, &req, r);
    return r->status;
}

static void test_http_put_file_ranges_make_a_byte_exact_upload(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx, 0, 0, 0);
    ts_add_competition_file(fx.s, "comp", "x", "", 0);
    char *dir = kp_test_tmpdir();
    unsigned char *data;
    size_t n = 100000;
    char *path = pattern_file(dir, "sub.csv", n, &data);
    char *u = url_of(&fx, API "StartSubmissionUpload");
    const char *body = "{\"competitionName\":\"comp\",\"fileName\":\"sub.csv\","
                       "\"contentLength\":100000,\"lastModifiedEpochSeconds\":1}";
    kp_http_req req = {.method = "POST", .url = u, .body = body, .body_len = strlen(body)};
    kp_http_resp r;
    do_ok(&fx, &req, &r);
    assert_int_equal(r.status, 200);
    char *put = url_of(&fx, "/upload/1");
    kp_http_resp_free(&r);
    assert_int_equal(put_range(&fx, put, path, 0, 39999, (int64_t)n, &r), 308);
    assert_string_equal(r.range, "bytes=0-39999");
    kp_http_resp_free(&r);
    assert_int_equal(put_range(&fx, put, path, 40000, (int64_t)n - 1, (int64_t)n, &r), 200);
    assert_null(r.range);
    kp_http_resp_free(&r);
    free(u);
    u = url_of(&fx, API "CreateSubmission");
    body = "{\"competitionName\":\"comp\",\"blobFileTokens\":\"blob-1\","
           "\"submissionDescription\":\"d\"}";
    req = (kp_http_req){.method = "POST", .url = u, .body = body, .body_len = strlen(body)};
    do_ok(&fx, &req, &r);
    assert_int_equal(r.status, 200);
    kp_http_resp_free(&r);
    size_t len = 0;
    const void *got = ts_submission(fx.s, 1001, &len, NULL, 0);
    assert_non_null(got);
    assert_int_equal(len, n);
    assert_memory_equal(got, data, n);
    free(u), free(put), free(path), free(data), free(dir);
    fx_close(&fx);
}

static void test_http_put_range_past_the_file_end_is_refused(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx, 0, 0, 0);
    char *dir = kp_test_tmpdir();
    unsigned char *data;
    char *path = pattern_file(dir, "small.bin", 10, &data);
    char *u = url_of(&fx, "/upload/1");
    kp_http_req req = {.method = "PUT", .url = u, .body_file = path, .body_offset = 5,
                       .body_file_len = 6};
    kp_http_resp r;
    char err[KP_ERRLEN];
    assert_int_equal(kp_http_do(fx.h, &req, &r, err, sizeof err), KP_ERR_ARG);
    assert_non_null(strstr(err, "small.bin: bytes 5..11 asked, the file has 10"));
    assert_int_equal(ts_request_count(fx.s), 0);
    free(u), free(path), free(data), free(dir);
    fx_close(&fx);
}

static void test_http_file_url_reads_the_file(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx, 0, 0, 0);
    char *dir = kp_test_tmpdir();
    char *path = kp_test_write(dir, "a.txt", "from disk\n");
    char *u = NULL;
    assert_true(asprintf(&u, "file://%s", path) > 0);
    kp_http_req req = {.method = "GET", .url = u};
    kp_http_resp r;
    do_ok(&fx, &req, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(kp_buf_str(&r.body), "from disk\n");
    kp_http_resp_free(&r);
    free(u), free(path), free(dir);
    fx_close(&fx);
}

static void test_http_body_over_64_mib_is_an_error(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx, 3, 0, 0);
    size_t n = ((size_t)64 << 20) + 1;
    char *big = calloc(1, n);
    assert_non_null(big);
    ts_add_file(fx.s, "/files/big", big, n);
    free(big);
    char *u = url_of(&fx, "/files/big");
    kp_http_req req = {.method = "GET", .url = u, .retry = 1};
    kp_http_resp r;
    char err[KP_ERRLEN];
    assert_int_equal(kp_http_do(fx.h, &req, &r, err, sizeof err), KP_ERR_IO);
    assert_non_null(strstr(err, "/files/big: the response body is over 64 MiB"));
    assert_int_equal(ts_requests_to(fx.s, "/files/big"), 1);   /* not retried */
    free(u);
    fx_close(&fx);
}

static void test_http_ca_bundle_comes_from_the_environment(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx, 0, 0, 0);
    /* https to a socket that listens and never answers: the CA file is loaded
     * before any TLS byte.  (Not the test server: libmicrohttpd 0.9.75 can
     * crash stopping while a connection closes without a request.) */
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t salen = sizeof sa;
    assert_true(ls >= 0);
    assert_int_equal(bind(ls, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(ls, 4), 0);
    assert_int_equal(getsockname(ls, (struct sockaddr *)&sa, &salen), 0);
    char *u = NULL;
    assert_true(asprintf(&u, "https://127.0.0.1:%u/x", (unsigned)ntohs(sa.sin_port)) > 0);
    setenv("CURL_CA_BUNDLE", "/nonexistent/kp-ca.pem", 1);
    kp_http_req req = {.method = "GET", .url = u};
    kp_http_resp r;
    char err[KP_ERRLEN] = "";
    int rc = kp_http_do(fx.h, &req, &r, err, sizeof err);
    unsetenv("CURL_CA_BUNDLE");
    assert_int_equal(rc, KP_ERR_IO);
    assert_non_null(strstr(err, "/nonexistent/kp-ca.pem"));
    close(ls);
    free(u);
    fx_close(&fx);
}

static void test_http_request_needs_url_and_method(void **state)
{
    (void)state;
    fixture fx;
    fx_open(&fx, 0, 0, 0);
    static const kp_http_req bad[] = {
        {.method = "GET", .url = NULL},
        {.method = "get", .url = "http://h/"},
        {.method = "POST", .url = "http://h/", .body_file = "/etc/hostname"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kp_http_resp r;
        char err[KP_ERRLEN] = "";
        assert_int_equal(kp_http_do(fx.h, &bad[i], &r, err, sizeof err), KP_ERR_ARG);
        assert_true(err[0] != 0);
    }
    const char *hdr[] = {"X-A: 1\r\nX-B: 2"};
    kp_http_req req = {.method = "GET", .url = ts_url(fx.s), .headers = hdr, .n_headers = 1};
    kp_http_resp r;
    char err[KP_ERRLEN];
    assert_int_equal(kp_http_do(fx.h, &req, &r, err, sizeof err), KP_ERR_ARG);
    assert_string_equal(err, "a request header has a line break");
    fx_close(&fx);
}

KP_TEST_GROUP(http)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_http_url_redact_cuts_query_and_userinfo),
        cmocka_unit_test(test_http_text_redact_hides_header_values_queries_and_the_credential),
        cmocka_unit_test(test_http_backoff_doubles_caps_and_honours_retry_after),
        cmocka_unit_test(test_http_status_transient_table),
        cmocka_unit_test(test_http_status_error_names_url_status_and_server_message),
        cmocka_unit_test(test_http_create_rejects_bad_options_without_echoing_the_header),
        cmocka_unit_test(test_http_options_hide_the_auth_header),
        cmocka_unit_test(test_http_get_returns_status_and_body),
        cmocka_unit_test(test_http_404_is_a_response_not_an_error),
        cmocka_unit_test(test_http_auth_header_is_sent_only_when_asked),
        cmocka_unit_test(test_http_post_redirect_not_followed_gives_location),
        cmocka_unit_test(test_http_post_redirect_followed_is_asked_again_as_get),
        cmocka_unit_test(test_http_retries_503_then_succeeds),
        cmocka_unit_test(test_http_no_retry_unless_the_request_allows_it),
        cmocka_unit_test(test_http_retries_spent_return_the_last_transient_status),
        cmocka_unit_test(test_http_429_retry_after_is_read_and_honoured),
        cmocka_unit_test(test_http_connection_refused_names_redacted_url_after_retries),
        cmocka_unit_test(test_http_verbose_shows_headers_with_secrets_redacted),
        cmocka_unit_test(test_http_failed_status_message_hides_token_and_query),
        cmocka_unit_test(test_http_put_file_ranges_make_a_byte_exact_upload),
        cmocka_unit_test(test_http_put_range_past_the_file_end_is_refused),
        cmocka_unit_test(test_http_file_url_reads_the_file),
        cmocka_unit_test(test_http_body_over_64_mib_is_an_error),
        cmocka_unit_test(test_http_ca_bundle_comes_from_the_environment),
        cmocka_unit_test(test_http_request_needs_url_and_method),
    };
    return KP_RUN(http, t);
}

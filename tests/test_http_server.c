/* test_http_server.c - the tests' own HTTP server (tests/http_server.c),
 * checked with plain libcurl easy calls: files, ranges, faults, and the
 * Kaggle methods. */
#include "kp_test.h"
#include "http_server.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <pthread.h>
#include <time.h>

#define API "/v1/competitions.CompetitionApiService/"

/* What one curl call got back. */
typedef struct got {
    CURLcode rc;
    long status;
    char body[8192];
    size_t len;
    char headers[4096];
    size_t hlen;
    size_t total;                 /* body bytes received, kept or not */
} got;

/* Optional parts of a request. */
typedef struct req_opts {
    const char *method;           /* NULL: GET, or POST when body is set */
    const char *body;
    size_t len;                   /* body length (strlen when 0 and body set) */
    const char *hdr[4];           /* extra request headers */
    int low_speed;                /* trip curl's low-speed limit after 1 s */
} req_opts;

/* Appends to a fixed buffer, dropping what does not fit. */
static size_t append(char *dst, size_t cap, size_t *len, const char *p, size_t n)
{
    size_t room = cap - 1 - *len;
    size_t k = n < room ? n : room;
    memcpy(dst + *len, p, k);
    *len += k;
    dst[*len] = '\0';
    return n;
}

/* curl write callback into got.body. */
static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
    got *g = ud;
    g->total += sz * n;
    return append(g->body, sizeof g->body, &g->len, p, sz * n);
}

/* curl header callback into got.headers. */
static size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
    got *g = ud;
    return append(g->headers, sizeof g->headers, &g->hlen, p, sz * n);
}

/* Performs one request to s's url + path; returns what came back (heap, caller frees). */
static got *call(ts_server *s, const char *path, const req_opts *o)
{
    static const req_opts none = {0};
    o = o ? o : &none;
    got *g = calloc(1, sizeof *g);
    char url[512];
    snprintf(url, sizeof url, "%s%s", ts_url(s), path);
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    for (int i = 0; i < 4 && o->hdr[i]; i++)
        h = curl_slist_append(h, o->hdr[i]);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, g);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, g);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    if (o->body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, o->body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)(o->len ? o->len : strlen(o->body)));
    }
    if (o->method && strcmp(o->method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    else if (o->method)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, o->method);
    if (o->low_speed) {
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 1L);
    }
    g->rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &g->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return g;
}

/* POSTs a JSON body to an API method with an optional Authorization header. */
static got *api(ts_server *s, const char *method, const char *json, const char *auth)
{
    char path[256], hdr[256];
    snprintf(path, sizeof path, API "%s", method);
    snprintf(hdr, sizeof hdr, "Authorization: %s", auth ? auth : "");
    req_opts o = {.body = json, .hdr = {"Content-Type: application/json", auth ? hdr : NULL}};
    return call(s, path, &o);
}

/* Copies the value of response header name from g into out ("" if absent). */
static const char *header(const got *g, const char *name, char *out, size_t n)
{
    out[0] = '\0';
    size_t k = strlen(name);
    for (const char *p = g->headers; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncasecmp(p, name, k) == 0 && p[k] == ':') {
            p += k + 1;
            p += strspn(p, " ");
            size_t v = strcspn(p, "\r\n");
            snprintf(out, n, "%.*s", (int)(v < n ? v : n - 1), p);
            break;
        }
    }
    return out;
}

/* Returns monotonic seconds. */
static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static const char DATA[] = "id,target\n1,0\n2,1\n3,0\n4,1\n";

/* ---- files ---- */

static void test_file_get_returns_bytes_with_content_length(void **state)
{
    (void)state;
    ts_server *s = ts_start();
    assert_non_null(s);
    assert_true(strncmp(ts_url(s), "http://127.0.0.1:", 17) == 0);
    ts_add_file(s, "/files/a.csv", DATA, strlen(DATA));
    got *g = call(s, "/files/a.csv", NULL);
    char v[64];
    assert_int_equal(g->rc, CURLE_OK);
    assert_int_equal(g->status, 200);
    assert_int_equal(g->len, strlen(DATA));
    assert_memory_equal(g->body, DATA, strlen(DATA));
    assert_int_equal(atoi(header(g, "Content-Length", v, sizeof v)), (int)strlen(DATA));
    free(g);
    req_opts head = {.method = "HEAD"};
    g = call(s, "/files/a.csv", &head);
    assert_int_equal(g->status, 200);
    assert_int_equal(g->len, 0);
    assert_int_equal(atoi(header(g, "Content-Length", v, sizeof v)), (int)strlen(DATA));
    free(g);
    ts_stop(s);
}

static void test_range_get_answers_206_with_content_range(void **state)
{
    (void)state;
    static const struct { const char *range, *content_range; size_t off, end; } cases[] = {
        {"Range: bytes=10-", "bytes 10-25/26", 10, 26},
        {"Range: bytes=0-3", "bytes 0-3/26", 0, 4},
        {"Range: bytes=25-", "bytes 25-25/26", 25, 26},
        {"Range: bytes=20-99", "bytes 20-25/26", 20, 26},
    };
    ts_server *s = ts_start();
    ts_add_file(s, "/files/a.csv", DATA, strlen(DATA));
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        req_opts o = {.hdr = {cases[i].range}};
        got *g = call(s, "/files/a.csv", &o);
        char v[64];
        assert_int_equal(g->status, 206);
        assert_string_equal(header(g, "Content-Range", v, sizeof v), cases[i].content_range);
        assert_int_equal(g->len, cases[i].end - cases[i].off);
        assert_memory_equal(g->body, DATA + cases[i].off, g->len);
        free(g);
    }
    ts_stop(s);
}

static void test_range_past_end_answers_416(void **state)
{
    (void)state;
    ts_server *s = ts_start();
    ts_add_file(s, "/files/a.csv", DATA, strlen(DATA));
    req_opts o = {.hdr = {"Range: bytes=26-"}};
    got *g = call(s, "/files/a.csv", &o);
    char v[64];
    assert_int_equal(g->status, 416);
    assert_string_equal(header(g, "Content-Range", v, sizeof v), "bytes */26");
    free(g);
    ts_stop(s);
}

static void test_ignore_range_answers_200_with_whole_file(void **state)
{
    (void)state;
    ts_server *s = ts_start();
    ts_add_file(s, "/files/a.csv", DATA, strlen(DATA));
    ts_ignore_range(s, "/files/a.csv");
    req_opts o = {.hdr = {"Range: bytes=10-"}};
    got *g = call(s, "/files/a.csv", &o);
    assert_int_equal(g->status, 200);
    assert_int_equal(g->len, strlen(DATA));
    free(g);
    ts_stop(s);
}

static void test_unknown_path_answers_404(void **state)
{
    (void)state;
    ts_server *s = ts_start();
    got *g = call(s, "/files/none.csv", NULL);
    assert_int_equal(g->status, 404);
    free(g);
    ts_stop(s);
}

/* ---- faults ---- */

static void test_fail_answers_status_and_retry_after_n_times(void **state)
{
    (void)state;
    ts_server *s = ts_start();
    ts_add_file(s, "/files/a.csv", DATA, strlen(DATA));
    ts_fail(s, "/files/a.csv", 2, 503, 3);
    ts_fail(s, "/files/a.csv", 1, 429, -1);
    static const struct { long status; const char *retry_after; } want[] = {
        {503, "3"}, {503, "3"}, {429, ""}, {200, ""},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        got *g = call(s, "/files/a.csv", NULL);
        char v[64];
        assert_int_equal(g->status, want[i].status);
        assert_string_equal(header(g, "Retry-After", v, sizeof v), want[i].retry_after);
        free(g);
    }
    ts_stop(s);
}

static void test_fail_applies_to_api_paths(void **state)
{
    (void)state;
    ts_server *s = ts_start();
    ts_add_competition_file(s, "titanic", "train.csv", DATA, strlen(DATA));
    ts_fail(s, API "ListDataFiles", 1, 500, -1);
    got *g = api(s, "ListDataFiles", "{\"competitionName\":\"titanic\"}", NULL);
    assert_int_equal(g->status, 500);
    free(g);
    g = api(s, "ListDataFiles", "{\"competitionName\":\"titanic\"}", NULL);
    assert_int_equal(g->status, 200);
    free(g);
    ts_stop(s);
}

static void test_cut_makes_curl_report_partial_file(void **state)
{
    (void)state;
    ts_server *s = ts_start();
    ts_add_file(s, "/files/a.csv", DATA, strlen(DATA));
    ts_cut(s, "/files/a.csv", 1, 10);
    got *g = call(s, "/files/a.csv", NULL);
    assert_int_equal(g->rc, CURLE_PARTIAL_FILE);
    assert_int_equal(g->status, 200);
    assert_int_equal(g->len, 10);
    assert_memory_equal(g->body, DATA, 10);
    free(g);
    g = call(s, "/files/a.csv", NULL);   /* consumed: whole again */
    assert_int_equal(g->rc, CURLE_OK);
    assert_int_equal(g->len, strlen(DATA));
    free(g);
    ts_stop(s);
}

static void test_cut_of_range_response_counts_from_its_start(void **state)
{
    (void)state;
    ts_server *s = ts_start();
    ts_add_file(s, "/files/a.csv", DATA, strlen(DATA));
    ts_cut(s, "/files/a.csv", 1, 5);
    req_opts o = {.hdr = {"Range: bytes=10-"}};
    got *g = call(s, "/files/a.csv", &o);
    assert_int_equal(g->rc, CURLE_PARTIAL_FILE);
    assert_int_equal(g->status, 206);
    assert_int_equal(g->len, 5);
    assert_memory_equal(g->body, DATA + 10, 5);
    free(g);
    ts_stop(s);
}

static void test_stall_trips_curl_low_speed_limit(void **state)
{
    (void)state;
    ts_server *s = ts_start();
    ts_add_file(s, "/files/a.csv", DATA, strlen(DATA));
    ts_stall(s, "/files/a.csv", 1, 0, 30);
    req_opts o = {.low_speed = 1};
    double t0 = now_s();
    got *g = call(s, "/files/a.csv", &o);
    double took = now_s() - t0;
    assert_int_equal(g->rc, CURLE_OPERATION_TIMEDOUT);
    assert_int_equal(g->len, 0);
    assert_int_equal(g->status, 200);
    assert_true(took >= 0.9 && took < 5);
    free(g);
    t0 = now_s();
    ts_stop(s);   /* the server side is still sleeping in its 30 s stall */
    assert_true(now_s() - t0 < 2);
}

static void test_stall_ends_with_a_closed_connection(void **state)
{
    (void)state;
    ts_server *s = ts_start();
    ts_add_file(s, "/files/a.csv", DATA, strlen(DATA));
    ts_stall(s, "/files/a.csv", 1, 4, 1);
    double t0 = now_s();
    got *g = call(s, "/files/a.csv", NULL);
    assert_int_equal(g->rc, CURLE_PARTIAL_FILE);
    assert_int_equal(g->len, 4);
    assert_true(now_s() - t0 >= 0.9);
    free(g);
    ts_stop(s);
}

/* Returns n bytes of a fixed pattern (heap, caller frees). */
static char *pattern(size_t n)
{
    char *p = malloc(n);
    for (size_t i = 0; i < n; i++)
        p[i] = (char)('a' + (i * 7 + i / 251) % 26);
    return p;
}

static void test_cut_of_a_large_file_sends_exactly_after_bytes(void **state)
{
    (void)state;
    size_t n = 3u << 20;
    char *big = pattern(n);
    ts_server *s = ts_start();
    ts_add_file(s, "/files/big.bin", big, n);
    ts_cut(s, "/files/big.bin", 1, 1234567);
    got *g = call(s, "/files/big.bin", NULL);
    assert_int_equal(g->rc, CURLE_PARTIAL_FILE);
    assert_int_equal(g->total, 1234567);
    assert_memory_equal(g->body, big, g->len);
    free(g);
    g = call(s, "/files/big.bin", NULL);
    assert_int_equal(g->rc, CURLE_OK);
    assert_int_equal(g->total, n);
    free(g);
    ts_stop(s);
    free(big);
}

/* Thread body: a GET of /files/slow.bin into *(got **)arg. */
static void *slow_get(void *arg)
{
    ts_server **s = arg;
    return call(*s, "/files/slow.bin", NULL);
}

static void test_a_stalled_connection_does_not_block_others(void **state)
{
    (void)state;
    ts_server *s = ts_start();
    ts_add_file(s, "/files/slow.bin", DATA, strlen(DATA));
    ts_add_file(s, "/files/a.csv", DATA, strlen(DATA));
    ts_stall(s, "/files/slow.bin", 1, 3, 2);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, slow_get, &s), 0);
    struct timespec wait = {0, 200 * 1000 * 1000};
    nanosleep(&wait, NULL);
    double t0 = now_s();
    got *g = call(s, "/files/a.csv", NULL);
    assert_true(now_s() - t0 < 1);
    assert_int_equal(g->status, 200);
    free(g);
    void *slow = NULL;
    pthread_join(th, &slow);
    assert_int_equal(((got *)slow)->rc, CURLE_PARTIAL_FILE);
    assert_int_equal(((got *)slow)->total, 3);
    free(slow);
    ts_stop(s);
}

/* ---- Kaggle API ---- */

static void test_api_without_the_right_authorization_answers_401(void **state)
{
    (void)state;
    static const struct { const char *auth; long status; } cases[] = {
        {NULL, 401}, {"Bearer wrong", 401}, {"Bearer tok ", 401}, {"Bearer tok", 200},
    };
    ts_server *s = ts_start();
    ts_set_auth(s, "Bearer tok");
    ts_add_competition_file(s, "titanic", "train.csv", DATA, strlen(DATA));
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        got *g = api(s, "ListDataFiles", "{\"competitionName\":\"titanic\"}", cases[i].auth);
        assert_int_equal(g->status, cases[i].status);
        if (cases[i].status == 401)
            assert_string_equal(g->body, "{\"code\":401,\"message\":\"Unauthenticated\"}");
        free(g);
    }
    ts_stop(s);
}

static void test_list_data_files_lists_the_competition_files(void **state)
{
    (void)state;
    ts_server *s = ts_start();
    ts_add_competition_file(s, "titanic", "train.csv", DATA, strlen(DATA));
    ts_add_competition_file(s, "titanic", "test.csv", "id\n5\n", 5);
    ts_add_competition_file(s, "other", "x.csv", "x", 1);
    got *g = api(s, "ListDataFiles", "{\"competitionName\":\"titanic\"}", NULL);
    assert_int_equal(g->status, 200);
    json_t *j = json_loads(g->body, 0, NULL);
    json_t *files = json_object_get(j, "files");
    assert_int_equal(json_array_size(files), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(files, 0), "name")),
                        "train.csv");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(files, 1), "totalBytes")),
                     5);
    assert_non_null(json_object_get(json_array_get(files, 0), "creationDate"));
    assert_string_equal(json_string_value(json_object_get(j, "nextPageToken")), "");
    json_decref(j);
    free(g);
    ts_stop(s);
}

static void test_download_data_file_redirects_to_the_file(void **state)
{
    (void)state;
    ts_server *s = ts_start();
    ts_add_competition_file(s, "titanic", "train.csv", DATA, strlen(DATA));
    got *g = api(s, "DownloadDataFile", "{\"competitionName\":\"titanic\",\"fileName\":\"train.csv\"}",
                 NULL);
    char loc[256], want[256];
    assert_int_equal(g->status, 302);
    snprintf(want, sizeof want, "%s/files/titanic/train.csv", ts_url(s));
    assert_string_equal(header(g, "Location", loc, sizeof loc), want);
    free(g);
    g = call(s, "/files/titanic/train.csv", NULL);
    assert_int_equal(g->status, 200);
    assert_memory_equal(g->body, DATA, strlen(DATA));
    free(g);
    g = api(s, "DownloadDataFile", "{\"competitionName\":\"titanic\",\"fileName\":\"nope.csv\"}",
            NULL);
    assert_int_equal(g->status, 404);
    free(g);
    ts_stop(s);
}

static void test_download_data_files_redirects_to_the_zip(void **state)
{
    (void)state;
    ts_server *s = ts_start();
    ts_add_competition_file(s, "titanic", "train.csv", DATA, strlen(DATA));
    got *g = api(s, "DownloadDataFiles", "{\"competitionName\":\"titanic\"}", NULL);
    char loc[256], want[256];
    assert_int_equal(g->status, 302);
    snprintf(want, sizeof want, "%s/files/titanic.zip", ts_url(s));
    assert_string_equal(header(g, "Location", loc, sizeof loc), want);
    free(g);
    ts_stop(s);
}

static void test_forbidden_competition_downloads_answer_403(void **state)
{
    (void)state;
    static const char *methods[] = {"DownloadDataFile", "DownloadDataFiles"};
    ts_server *s = ts_start();
    ts_add_competition_file(s, "titanic", "train.csv", DATA, strlen(DATA));
    ts_forbid(s, "titanic");
    for (size_t i = 0; i < 2; i++) {
        got *g = api(s, methods[i], "{\"competitionName\":\"titanic\",\"fileName\":\"train.csv\"}",
                     NULL);
        assert_int_equal(g->status, 403);
        assert_non_null(strstr(g->body, "You must accept this competition's rules"));
        free(g);
    }
    ts_stop(s);
}

static void test_unknown_competition_answers_404(void **state)
{
    (void)state;
    static const char *methods[] = {"ListDataFiles", "DownloadDataFile", "DownloadDataFiles",
                                    "StartSubmissionUpload", "CreateSubmission",
                                    "ListSubmissions"};
    ts_server *s = ts_start();
    ts_add_competition_file(s, "titanic", "train.csv", DATA, strlen(DATA));
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        got *g = api(s, methods[i], "{\"competitionName\":\"nope\",\"fileName\":\"a\"}", NULL);
        assert_int_equal(g->status, 404);
        assert_string_equal(g->body, "{\"code\":404,\"message\":\"Competition not found\"}");
        free(g);
    }
    ts_stop(s);
}

/* Starts an upload for titanic; returns its number N (createUrl ends in /upload/N). */
static int start_upload(ts_server *s, size_t len)
{
    char body[256], want[128];
    snprintf(body, sizeof body, "{\"competitionName\":\"titanic\",\"fileName\":\"sub.csv\","
             "\"contentLength\":%zu,\"lastModifiedEpochSeconds\":1700000000}", len);
    got *g = api(s, "StartSubmissionUpload", body, NULL);
    assert_int_equal(g->status, 200);
    json_t *j = json_loads(g->body, 0, NULL);
    const char *token = json_string_value(json_object_get(j, "token"));
    assert_non_null(token);
    int n = atoi(token + 5);
    snprintf(want, sizeof want, "%s/upload/%d", ts_url(s), n);
    assert_string_equal(json_string_value(json_object_get(j, "createUrl")), want);
    json_decref(j);
    free(g);
    return n;
}

/* PUTs body to /upload/N with a Content-Range header (NULL: none). */
static got *put(ts_server *s, int n, const char *content_range, const char *body, size_t len)
{
    char path[64], cr[128];
    snprintf(path, sizeof path, "/upload/%d", n);
    snprintf(cr, sizeof cr, "Content-Range: %s", content_range ? content_range : "");
    req_opts o = {.method = "PUT", .body = len ? body : "", .len = len,
                  .hdr = {content_range ? cr : NULL, "Expect:"}};
    return call(s, path, &o);
}

static void test_submission_uploads_in_two_parts_then_lists_with_its_score(void **state)
{
    (void)state;
    ts_server *s = ts_start();
    ts_add_competition_file(s, "titanic", "train.csv", DATA, strlen(DATA));
    size_t len = strlen(DATA);
    int n = start_upload(s, len);
    char v[64], cr[64];
    got *g = put(s, n, "bytes 0-9/26", DATA, 10);
    assert_int_equal(g->status, 308);
    assert_string_equal(header(g, "Range", v, sizeof v), "bytes=0-9");
    free(g);
    g = put(s, n, "bytes */26", NULL, 0);   /* status query */
    assert_int_equal(g->status, 308);
    assert_string_equal(header(g, "Range", v, sizeof v), "bytes=0-9");
    free(g);
    snprintf(cr, sizeof cr, "bytes 10-%zu/%zu", len - 1, len);
    g = put(s, n, cr, DATA + 10, len - 10);
    assert_int_equal(g->status, 200);
    free(g);
    char body[256];
    snprintf(body, sizeof body, "{\"competitionName\":\"titanic\",\"blobFileTokens\":\"blob-%d\","
             "\"submissionDescription\":\"first try\"}", n);
    g = api(s, "CreateSubmission", body, NULL);
    assert_int_equal(g->status, 200);
    json_t *j = json_loads(g->body, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "message")),
                        "Successfully submitted to titanic");
    long ref = (long)json_integer_value(json_object_get(j, "ref"));
    json_decref(j);
    free(g);
    assert_int_equal(ts_submission_count(s), 1);
    size_t got_len = 0;
    char desc[64];
    const void *bytes = ts_submission(s, ref, &got_len, desc, sizeof desc);
    assert_non_null(bytes);
    assert_int_equal(got_len, len);
    assert_memory_equal(bytes, DATA, len);
    assert_string_equal(desc, "first try");
    assert_null(ts_submission(s, ref + 1, &got_len, NULL, 0));
    g = api(s, "ListSubmissions", "{\"competitionName\":\"titanic\"}", NULL);
    j = json_loads(g->body, 0, NULL);
    json_t *sub = json_array_get(json_object_get(j, "submissions"), 0);
    assert_int_equal(json_integer_value(json_object_get(sub, "ref")), ref);
    assert_string_equal(json_string_value(json_object_get(sub, "publicScore")), "");
    assert_string_equal(json_string_value(json_object_get(sub, "fileName")), "sub.csv");
    assert_string_equal(json_string_value(json_object_get(sub, "status")), "COMPLETE");
    json_decref(j);
    free(g);
    ts_set_score(s, ref, "0.76555", "0.77");
    g = api(s, "ListSubmissions", "{\"competitionName\":\"titanic\"}", NULL);
    j = json_loads(g->body, 0, NULL);
    sub = json_array_get(json_object_get(j, "submissions"), 0);
    assert_string_equal(json_string_value(json_object_get(sub, "publicScore")), "0.76555");
    assert_string_equal(json_string_value(json_object_get(sub, "privateScore")), "0.77");
    json_decref(j);
    free(g);
    ts_stop(s);
}

static void test_list_submissions_is_newest_first(void **state)
{
    (void)state;
    ts_server *s = ts_start();
    ts_add_competition_file(s, "titanic", "train.csv", DATA, strlen(DATA));
    for (int i = 0; i < 2; i++) {
        int n = start_upload(s, 3);
        got *g = put(s, n, NULL, "abc", 3);
        assert_int_equal(g->status, 200);
        free(g);
        char body[256];
        snprintf(body, sizeof body, "{\"competitionName\":\"titanic\","
                 "\"blobFileTokens\":[\"blob-%d\"],\"submissionDescription\":\"sub %d\"}", n, i);
        g = api(s, "CreateSubmission", body, NULL);
        assert_int_equal(g->status, 200);
        free(g);
    }
    got *g = api(s, "ListSubmissions", "{\"competitionName\":\"titanic\"}", NULL);
    json_t *j = json_loads(g->body, 0, NULL);
    json_t *subs = json_object_get(j, "submissions");
    assert_int_equal(json_array_size(subs), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(subs, 0), "description")),
                        "sub 1");
    json_decref(j);
    free(g);
    g = api(s, "ListSubmissions", "{\"competitionName\":\"titanic\",\"page\":2}", NULL);
    assert_string_equal(g->body, "{\"submissions\":[]}");
    free(g);
    ts_stop(s);
}

static void test_upload_cut_keeps_a_prefix_and_answers_503(void **state)
{
    (void)state;
    ts_server *s = ts_start();
    ts_add_competition_file(s, "titanic", "train.csv", DATA, strlen(DATA));
    int n = start_upload(s, strlen(DATA));
    char path[64], v[64];
    snprintf(path, sizeof path, "/upload/%d", n);
    ts_cut(s, path, 1, 6);
    got *g = put(s, n, "bytes 0-25/26", DATA, 26);
    assert_int_equal(g->status, 503);
    free(g);
    g = put(s, n, "bytes */26", NULL, 0);
    assert_int_equal(g->status, 308);
    assert_string_equal(header(g, "Range", v, sizeof v), "bytes=0-5");
    free(g);
    g = put(s, n, "bytes 6-25/26", DATA + 6, 20);
    assert_int_equal(g->status, 200);
    free(g);
    ts_stop(s);
}

static void test_large_upload_with_expect_continue_arrives_whole(void **state)
{
    (void)state;
    size_t len = 3u << 20;
    char *big = pattern(len);
    ts_server *s = ts_start();
    ts_add_competition_file(s, "titanic", "train.csv", DATA, strlen(DATA));
    int n = start_upload(s, len);
    char path[64], cr[128], body[256];
    snprintf(path, sizeof path, "/upload/%d", n);
    snprintf(cr, sizeof cr, "Content-Range: bytes 0-%zu/%zu", len - 1, len);
    req_opts o = {.method = "PUT", .body = big, .len = len, .hdr = {cr}};
    got *g = call(s, path, &o);   /* curl sends Expect: 100-continue for this size */
    assert_int_equal(g->status, 200);
    free(g);
    snprintf(body, sizeof body, "{\"competitionName\":\"titanic\",\"blobFileTokens\":\"blob-%d\","
             "\"submissionDescription\":\"big\"}", n);
    g = api(s, "CreateSubmission", body, NULL);
    assert_int_equal(g->status, 200);
    free(g);
    size_t got_len = 0;
    const void *bytes = ts_submission(s, 1001, &got_len, NULL, 0);
    assert_non_null(bytes);
    assert_int_equal(got_len, len);
    assert_memory_equal(bytes, big, len);
    ts_stop(s);
    free(big);
}

static void test_upload_rejects_a_part_not_at_the_bytes_held(void **state)
{
    (void)state;
    static const char *bad[] = {"bytes 5-25/26", "bytes 0-9/26", "bytes oops", "bytes 0-25/20"};
    ts_server *s = ts_start();
    ts_add_competition_file(s, "titanic", "train.csv", DATA, strlen(DATA));
    int n = start_upload(s, strlen(DATA));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        got *g = put(s, n, bad[i], DATA + 5, 21);
        assert_int_equal(g->status, 400);
        free(g);
    }
    got *g = put(s, n, "bytes */26", NULL, 0);
    assert_int_equal(g->status, 308);
    char v[64];
    assert_string_equal(header(g, "Range", v, sizeof v), "");   /* nothing held */
    free(g);
    ts_stop(s);
}

static void test_create_submission_with_an_incomplete_or_unknown_token_answers_400(void **state)
{
    (void)state;
    ts_server *s = ts_start();
    ts_add_competition_file(s, "titanic", "train.csv", DATA, strlen(DATA));
    int n = start_upload(s, strlen(DATA));
    got *g = put(s, n, "bytes 0-9/26", DATA, 10);
    free(g);
    char body[256];
    const char *tokens[] = {"blob-1", "blob-99", "nope"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(body, sizeof body, "{\"competitionName\":\"titanic\",\"blobFileTokens\":\"%s\","
                 "\"submissionDescription\":\"x\"}", tokens[i]);
        g = api(s, "CreateSubmission", body, NULL);
        assert_int_equal(g->status, 400);
        free(g);
    }
    assert_int_equal(ts_submission_count(s), 0);
    ts_stop(s);
}

/* ---- recording ---- */

static void test_requests_are_recorded_with_range_and_auth(void **state)
{
    (void)state;
    ts_server *s = ts_start();
    ts_set_auth(s, "Bearer tok");
    ts_add_competition_file(s, "titanic", "train.csv", DATA, strlen(DATA));
    req_opts o = {.hdr = {"Range: bytes=3-"}};
    free(call(s, "/files/titanic/train.csv", &o));
    free(api(s, "ListDataFiles", "{\"competitionName\":\"titanic\"}", "Bearer tok"));
    free(api(s, "ListDataFiles", "{\"competitionName\":\"titanic\"}", "Bearer bad"));
    assert_int_equal(ts_request_count(s), 3);
    assert_int_equal(ts_requests_to(s, API "ListDataFiles"), 2);
    ts_request q;
    assert_int_equal(ts_request_at(s, 0, &q), 0);
    assert_string_equal(q.method, "GET");
    assert_string_equal(q.path, "/files/titanic/train.csv");
    assert_string_equal(q.range, "bytes=3-");
    assert_int_equal(q.had_auth, 0);
    assert_int_equal(q.status, 206);
    assert_int_equal(ts_request_at(s, 1, &q), 0);
    assert_string_equal(q.method, "POST");
    assert_int_equal(q.had_auth, 1);
    assert_int_equal(q.auth_ok, 1);
    assert_int_equal(q.status, 200);
    assert_int_equal(ts_request_at(s, 2, &q), 0);
    assert_int_equal(q.had_auth, 1);
    assert_int_equal(q.auth_ok, 0);
    assert_int_equal(q.status, 401);
    assert_int_equal(ts_request_at(s, 3, &q), -1);
    ts_clear_requests(s);
    assert_int_equal(ts_request_count(s), 0);
    ts_stop(s);
}

static void test_upload_records_content_range(void **state)
{
    (void)state;
    ts_server *s = ts_start();
    ts_add_competition_file(s, "titanic", "train.csv", DATA, strlen(DATA));
    int n = start_upload(s, strlen(DATA));
    ts_clear_requests(s);
    free(put(s, n, "bytes 0-9/26", DATA, 10));
    ts_request q;
    assert_int_equal(ts_request_at(s, 0, &q), 0);
    assert_string_equal(q.method, "PUT");
    assert_string_equal(q.content_range, "bytes 0-9/26");
    assert_int_equal(q.status, 308);
    ts_stop(s);
}

static void test_stop_accepts_null(void **state)
{
    (void)state;
    ts_stop(NULL);
}

KP_TEST_GROUP(http_server) { const struct CMUnitTest t[] = {
    cmocka_unit_test(test_file_get_returns_bytes_with_content_length),
    cmocka_unit_test(test_range_get_answers_206_with_content_range),
    cmocka_unit_test(test_range_past_end_answers_416),
    cmocka_unit_test(test_ignore_range_answers_200_with_whole_file),
    cmocka_unit_test(test_unknown_path_answers_404),
    cmocka_unit_test(test_fail_answers_status_and_retry_after_n_times),
    cmocka_unit_test(test_fail_applies_to_api_paths),
    cmocka_unit_test(test_cut_makes_curl_report_partial_file),
    cmocka_unit_test(test_cut_of_range_response_counts_from_its_start),
    cmocka_unit_test(test_stall_trips_curl_low_speed_limit),
    cmocka_unit_test(test_stall_ends_with_a_closed_connection),
    cmocka_unit_test(test_cut_of_a_large_file_sends_exactly_after_bytes),
    cmocka_unit_test(test_a_stalled_connection_does_not_block_others),
    cmocka_unit_test(test_api_without_the_right_authorization_answers_401),
    cmocka_unit_test(test_list_data_files_lists_the_competition_files),
    cmocka_unit_test(test_download_data_file_redirects_to_the_file),
    cmocka_unit_test(test_download_data_files_redirects_to_the_zip),
    cmocka_unit_test(test_forbidden_competition_downloads_answer_403),
    cmocka_unit_test(test_unknown_competition_answers_404),
    cmocka_unit_test(test_submission_uploads_in_two_parts_then_lists_with_its_score),
    cmocka_unit_test(test_list_submissions_is_newest_first),
    cmocka_unit_test(test_upload_cut_keeps_a_prefix_and_answers_503),
    cmocka_unit_test(test_large_upload_with_expect_continue_arrives_whole),
    cmocka_unit_test(test_upload_rejects_a_part_not_at_the_bytes_held),
    cmocka_unit_test(test_create_submission_with_an_incomplete_or_unknown_token_answers_400),
    cmocka_unit_test(test_requests_are_recorded_with_range_and_auth),
    cmocka_unit_test(test_upload_records_content_range),
    cmocka_unit_test(test_stop_accepts_null),
}; return KP_RUN(http_server, t); }

/* http.c - HTTP requests over libcurl's easy interface: the session, the
 * retry loop, statuses and delays.  What is written (messages, verbose
 * output) goes through the redaction of http_redact.c. */
#include "http_int.h"
#include "err.h"

#include <curl/curl.h>
#include <jansson.h>

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#ifndef KP_VERSION
#define KP_VERSION "dev"
#endif

#define HTTP_BODY_MAX ((size_t)64 << 20)
#define HTTP_URL_MAX 512                 /* redacted URLs in messages */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_OK;

/* Runs curl_global_init once per process. */
static void global_init(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- options and the session ---- */

void kp_http_opts_default(kp_http_opts *o)
{
    *o = (kp_http_opts){.auth_header = NULL, .user_agent = NULL, .max_retries = 5,
                        .backoff_ms = 1000, .max_backoff_ms = 60000, .connect_timeout_s = 30,
                        .stall_timeout_s = 60, .verbose = NULL};
    const char *ms = getenv("KPIPE_RETRY_BACKOFF_MS");   /* tests: retries in milliseconds */
    if (ms && atol(ms) > 0) {
        o->backoff_ms = atol(ms);
        o->max_backoff_ms = 20 * o->backoff_ms;
    }
}

/* Returns 1 when s holds a CR or LF (a header injection). */
static int has_newline(const char *s)
{
    return s && strpbrk(s, "\r\n") != NULL;
}

/* Checks the numbers and strings of o; 0 or KP_ERR_ARG (never echoing the auth header). */
static int check_opts(const kp_http_opts *o, char *err, size_t errlen)
{
    if (o->max_retries < 0 || o->backoff_ms < 0 || o->max_backoff_ms < 0 ||
        o->connect_timeout_s < 0 || o->stall_timeout_s < 0)
        return kp_errf(err, errlen, KP_ERR_ARG, "http options: retries, delays and timeouts "
                       "must be >= 0");
    if (o->auth_header && (has_newline(o->auth_header) || !strchr(o->auth_header, ':')))
        return kp_errf(err, errlen, KP_ERR_ARG, "http options: the auth header must be one "
                       "\"Name: value\" line (its value is not shown)");
    if (has_newline(o->user_agent))
        return kp_errf(err, errlen, KP_ERR_ARG, "http options: the user agent has a line break");
    return 0;
}

/* Returns the credential in "Name: Scheme credential" (or the whole value), or NULL if short. */
static const char *find_secret(const char *auth)
{
    const char *v = strchr(auth, ':') + 1;
    v += strspn(v, " \t");
    const char *sp = strpbrk(v, " \t");
    if (sp)
        v = sp + strspn(sp, " \t");
    return strlen(v) >= 4 ? v : NULL;
}

int kp_http_create(const kp_http_opts *o, kp_http **out, char *err, size_t errlen)
{
    kp_http_opts d;
    if (!o) {
        kp_http_opts_default(&d);
        o = &d;
    }
    int rc = check_opts(o, err, errlen);
    if (rc < 0)
        return rc;
    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK)
        return kp_errf(err, errlen, KP_ERR_IO, "cannot initialise libcurl: %s",
                       curl_easy_strerror(global_rc));
    kp_http *h = calloc(1, sizeof *h);
    rc = KP_ERR_NOMEM;
    if (!h || !(h->ua = strdup(o->user_agent ? o->user_agent : "kpipe/" KP_VERSION)) ||
        (o->auth_header && !(h->auth = strdup(o->auth_header)))) {
        kp_errf(err, errlen, rc, "http session: out of memory");
        goto fail;
    }
    h->o = *o;
    h->o.auth_header = NULL;
    h->o.user_agent = h->ua;
    h->secret = h->auth ? find_secret(h->auth) : NULL;
    *out = h;
    h = NULL;
    rc = 0;
fail:
    kp_http_free(h);
    return rc;
}

void kp_http_free(kp_http *h)
{
    if (!h)
        return;
    if (h->auth) {
        explicit_bzero(h->auth, strlen(h->auth));
        free(h->auth);
    }
    free(h->ua);
    free(h);
}

const kp_http_opts *kp_http_options(const kp_http *h)
{
    return &h->o;
}

/* ---- easy handles ---- */

/* Points curl at the CA bundle/folder named by the environment, when set. */
static CURLcode set_ca(CURL *c)
{
    CURLcode rc = CURLE_OK;
    const char *file = getenv("CURL_CA_BUNDLE");
    const char *dir = getenv("SSL_CERT_DIR");
    if (!file || !*file)
        file = getenv("SSL_CERT_FILE");
    if (file && *file)
        rc = curl_easy_setopt(c, CURLOPT_CAINFO, file);
    if (rc == CURLE_OK && dir && *dir)
        rc = curl_easy_setopt(c, CURLOPT_CAPATH, dir);
    return rc;
}

int kp_http_setup_easy(kp_http *h, void *curl_easy, char *err, size_t errlen)
{
    CURL *c = curl_easy;
    CURLcode rc = CURLE_OK;
#define SETOPT(opt, val) \
    do { if (rc == CURLE_OK) rc = curl_easy_setopt(c, opt, val); } while (0)
    SETOPT(CURLOPT_USERAGENT, h->ua);
    SETOPT(CURLOPT_NOSIGNAL, 1L);
    SETOPT(CURLOPT_CONNECTTIMEOUT, h->o.connect_timeout_s);
    SETOPT(CURLOPT_MAXREDIRS, 10L);
    /* libcurl averages the speed over the last ~5 s: a stall right after bytes
     * flowed is cut up to ~5 s after stall_timeout_s, one from the start on time. */
    if (h->o.stall_timeout_s > 0) {
        SETOPT(CURLOPT_LOW_SPEED_LIMIT, 1L);
        SETOPT(CURLOPT_LOW_SPEED_TIME, h->o.stall_timeout_s);
    }
    /* Proxies: libcurl reads http_proxy, https_proxy, no_proxy and ALL_PROXY itself. */
    if (rc == CURLE_OK)
        rc = set_ca(c);
    if (h->o.verbose) {
        SETOPT(CURLOPT_DEBUGFUNCTION, kp_http_on_debug);
        SETOPT(CURLOPT_DEBUGDATA, h);
        SETOPT(CURLOPT_VERBOSE, 1L);
    }
#undef SETOPT
    if (rc != CURLE_OK)
        return kp_errf(err, errlen, KP_ERR_IO, "cannot set up a curl handle: %s",
                       curl_easy_strerror(rc));
    return 0;
}

/* Appends line to *list; 0 or KP_ERR_NOMEM (the list unchanged). */
static int slist_add(struct curl_slist **list, const char *line)
{
    struct curl_slist *t = curl_slist_append(*list, line);
    if (!t)
        return KP_ERR_NOMEM;
    *list = t;
    return 0;
}

int kp_http_headers(kp_http *h, int auth, const char *const *extra, int n_extra, void **out)
{
    struct curl_slist *l = NULL;
    int rc = auth && h->auth ? slist_add(&l, h->auth) : 0;
    for (int i = 0; rc == 0 && i < n_extra; i++)
        rc = has_newline(extra[i]) ? KP_ERR_ARG : slist_add(&l, extra[i]);
    if (rc < 0) {
        curl_slist_free_all(l);
        l = NULL;
    }
    *out = l;
    return rc;
}

int kp_http_curl_transient(int curl_code)
{
    switch (curl_code) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return 1;
    default:
        return 0;
    }
}

/* ---- one request ---- */

/* Where a request's body comes from, and where its response goes. */
typedef struct req_io {
    kp_http_resp *resp;
    int too_big;           /* the body passed HTTP_BODY_MAX */
    const char *mem;       /* the PUT body in memory, or NULL */
    FILE *f;               /* or the file it is read from */
    int64_t base, len, pos;
} req_io;

/* Returns a heap copy of a header value without spaces and CR/LF, or NULL. */
static char *header_value(const char *v, size_t n)
{
    while (n > 0 && (*v == ' ' || *v == '\t'))
        v++, n--;
    while (n > 0 && strchr(" \t\r\n", v[n - 1]))
        n--;
    return strndup(v, n);
}

/* Parses a Retry-After value (seconds or an HTTP date) into seconds, or -1. */
static long parse_retry_after(const char *v)
{
    char *end;
    errno = 0;
    long s = strtol(v, &end, 10);
    if (end != v && *end == 0 && errno == 0)
        return s < 0 ? -1 : s;
    time_t t = curl_getdate(v, NULL);
    if (t < 0)
        return -1;
    time_t now = time(NULL);
    return t > now ? (long)(t - now) : 0;
}

/* Replaces *slot with a copy of the header value (a missing copy just leaves NULL). */
static void keep_header(char **slot, const char *v, size_t n)
{
    free(*slot);
    *slot = header_value(v, n);
}

/* CURLOPT_HEADERFUNCTION: keeps Location, Range and Retry-After of the last response. */
static size_t on_header(char *p, size_t size, size_t nmemb, void *arg)
{
    req_io *io = arg;
    kp_http_resp *r = io->resp;
    size_t n = size * nmemb;
    if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) {   /* a new response: forget the last one's */
        free(r->location), free(r->range);
        r->location = r->range = NULL;
        r->retry_after_s = -1;
    } else if (n > 9 && strncasecmp(p, "Location:", 9) == 0) {
        keep_header(&r->location, p + 9, n - 9);
    } else if (n > 6 && strncasecmp(p, "Range:", 6) == 0) {
        keep_header(&r->range, p + 6, n - 6);
    } else if (n > 12 && strncasecmp(p, "Retry-After:", 12) == 0) {
        char *v = header_value(p + 12, n - 12);
        r->retry_after_s = v ? parse_retry_after(v) : -1;
        free(v);
    }
    return n;
}

/* CURLOPT_WRITEFUNCTION: the response body into resp->body (capped). */
static size_t on_write(char *p, size_t size, size_t nmemb, void *arg)
{
    req_io *io = arg;
    size_t n = size * nmemb;
    if (kp_buf_add(&io->resp->body, p, n) < 0) {
        io->too_big = 1;
        return 0;
    }
    return n;
}

/* CURLOPT_READFUNCTION: the PUT body, from memory or the file range. */
static size_t on_read(char *p, size_t size, size_t nmemb, void *arg)
{
    req_io *io = arg;
    int64_t left = io->len - io->pos;
    size_t n = size * nmemb;
    if ((int64_t)n > left)
        n = (size_t)left;
    if (n == 0)
        return 0;
    if (io->mem)
        memcpy(p, io->mem + io->pos, n);
    else if (fread(p, 1, n, io->f) != n)
        return CURL_READFUNC_ABORT;   /* the file shrank or failed: never send short */
    io->pos += (int64_t)n;
    return n;
}

/* CURLOPT_SEEKFUNCTION: rewinds the PUT body (a redirect or a resent request). */
static int on_seek(void *arg, curl_off_t off, int origin)
{
    req_io *io = arg;
    if (origin != SEEK_SET || off < 0 || off > io->len)
        return CURL_SEEKFUNC_CANTSEEK;
    if (io->f && fseeko(io->f, (off_t)(io->base + off), SEEK_SET) != 0)
        return CURL_SEEKFUNC_FAIL;
    io->pos = off;
    return CURL_SEEKFUNC_OK;
}

/* Opens req's body file at its offset into io; 0 or KP_ERR_IO / KP_ERR_ARG naming it. */
static int open_body_file(const kp_http_req *req, req_io *io, char *err, size_t errlen)
{
    struct stat sb;
    io->f = fopen(req->body_file, "rb");
    if (!io->f || fstat(fileno(io->f), &sb) != 0)
        return kp_errf(err, errlen, KP_ERR_IO, "%s: cannot open: %s", req->body_file,
                       strerror(errno));
    if (req->body_offset < 0 || req->body_file_len < 0 ||
        req->body_offset > (int64_t)sb.st_size - req->body_file_len)
        return kp_errf(err, errlen, KP_ERR_ARG, "%s: bytes %lld..%lld asked, the file has %lld",
                       req->body_file, (long long)req->body_offset,
                       (long long)(req->body_offset + req->body_file_len), (long long)sb.st_size);
    if (fseeko(io->f, (off_t)req->body_offset, SEEK_SET) != 0)
        return kp_errf(err, errlen, KP_ERR_IO, "%s: cannot seek: %s", req->body_file,
                       strerror(errno));
    io->base = req->body_offset;
    io->len = req->body_file_len;
    return 0;
}

/* Sets the method and body options of c for req; 0 or a negative status. */
static int set_method(CURL *c, const kp_http_req *req, req_io *io, char *err, size_t errlen)
{
    const char *m = req->method;
    CURLcode cc = CURLE_OK;
    if (strcmp(m, "PUT") == 0) {
        int rc = req->body_file ? open_body_file(req, io, err, errlen) : 0;
        if (rc < 0)
            return rc;
        if (!req->body_file) {
            io->mem = req->body ? req->body : "";
            io->len = (int64_t)req->body_len;
        }
        if ((cc = curl_easy_setopt(c, CURLOPT_UPLOAD, 1L)) == CURLE_OK &&
            (cc = curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read)) == CURLE_OK &&
            (cc = curl_easy_setopt(c, CURLOPT_READDATA, io)) == CURLE_OK &&
            (cc = curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, on_seek)) == CURLE_OK &&
            (cc = curl_easy_setopt(c, CURLOPT_SEEKDATA, io)) == CURLE_OK)
            cc = curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)io->len);
    } else if (strcmp(m, "GET") == 0) {
        cc = curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(m, "HEAD") == 0) {
        cc = curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else {   /* POST, or another method with an in-memory body */
        if ((cc = curl_easy_setopt(c, CURLOPT_POST, 1L)) == CURLE_OK &&
            (cc = curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len)) ==
                CURLE_OK)
            cc = curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->body ? req->body : "");
        if (cc == CURLE_OK && strcmp(m, "POST") != 0)
            cc = curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, m);
    }
    if (cc != CURLE_OK)
        return kp_errf(err, errlen, KP_ERR_IO, "cannot set up a %s request: %s", m,
                       curl_easy_strerror(cc));
    return 0;
}

/* Builds the header list of req: auth, extra lines, Content-Type, no Expect; 0 or < 0. */
static int req_headers(kp_http *h, const kp_http_req *req, struct curl_slist **out, char *err,
                       size_t errlen)
{
    void *l = NULL;
    int rc = kp_http_headers(h, req->auth, req->headers, req->n_headers, &l);
    struct curl_slist *list = l;
    char ct[256];
    snprintf(ct, sizeof ct, "Content-Type: %s", req->content_type ? req->content_type : "");
    if (rc == 0 && req->content_type)
        rc = has_newline(ct) ? KP_ERR_ARG : slist_add(&list, ct);
    if (rc == 0)   /* no "Expect: 100-continue" round trip before a body */
        rc = slist_add(&list, "Expect:");
    if (rc < 0) {
        curl_slist_free_all(list);
        return kp_errf(err, errlen, rc, rc == KP_ERR_ARG ? "a request header has a line break"
                       : "request headers: out of memory");
    }
    *out = list;
    return 0;
}

/* Sets everything of one request on c (session, URL, headers, callbacks, method). */
static int setup_request(kp_http *h, CURL *c, const kp_http_req *req, req_io *io,
                         struct curl_slist *hdrs, char *cerr, char *err, size_t errlen)
{
    int rc = kp_http_setup_easy(h, c, err, errlen);
    if (rc < 0)
        return rc;
    CURLcode cc;
    if ((cc = curl_easy_setopt(c, CURLOPT_URL, req->url)) != CURLE_OK ||
        (cc = curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs)) != CURLE_OK ||
        (cc = curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr)) != CURLE_OK ||
        (cc = curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header)) != CURLE_OK ||
        (cc = curl_easy_setopt(c, CURLOPT_HEADERDATA, io)) != CURLE_OK ||
        (cc = curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write)) != CURLE_OK ||
        (cc = curl_easy_setopt(c, CURLOPT_WRITEDATA, io)) != CURLE_OK ||
        (cc = curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, req->follow ? 1L : 0L)) != CURLE_OK) {
        char u[HTTP_URL_MAX];
        kp_http_url_redact(req->url, u, sizeof u);
        return kp_errf(err, errlen, KP_ERR_ARG, "%s: %s", u, curl_easy_strerror(cc));
    }
    return set_method(c, req, io, err, errlen);
}

/* Runs req once into resp. 0 when a response arrived; else < 0 with *cc the curl
 * code (CURLE_OK when the request could not even start) and cerr curl's text. */
static int http_once(kp_http *h, const kp_http_req *req, kp_http_resp *resp, CURLcode *cc,
                     char *cerr, int *too_big, char *err, size_t errlen)
{
    req_io io = {.resp = resp};
    struct curl_slist *hdrs = NULL;
    CURL *c = curl_easy_init();
    int rc = c ? req_headers(h, req, &hdrs, err, errlen)
               : kp_errf(err, errlen, KP_ERR_NOMEM, "cannot make a curl handle");
    if (rc == 0)
        rc = setup_request(h, c, req, &io, hdrs, cerr, err, errlen);
    if (rc < 0)
        goto fail;
    if ((*cc = curl_easy_perform(c)) != CURLE_OK) {
        *too_big = io.too_big;
        rc = KP_ERR_IO;
        goto fail;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
    if (resp->status == 0)
        resp->status = 200;   /* a non-HTTP URL (file://) that succeeded */
fail:
    if (io.f)
        fclose(io.f);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    return rc;
}

/* ---- the retry loop ---- */

/* Empties resp for a new attempt. */
static void resp_reset(kp_http_resp *resp)
{
    kp_buf_free(&resp->body);
    kp_buf_init(&resp->body, HTTP_BODY_MAX);
    free(resp->location), free(resp->range);
    resp->location = resp->range = NULL;
    resp->status = 0;
    resp->retry_after_s = -1;
}

/* Checks what the request asks for; 0 or KP_ERR_ARG. */
static int check_req(const kp_http_req *req, char *err, size_t errlen)
{
    const char *m = req->method ? req->method : "";
    if (!req->url || !*m || strspn(m, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != strlen(m))
        return kp_errf(err, errlen, KP_ERR_ARG, "an HTTP request needs a URL and an upper-case "
                       "method");
    if (req->body_file && strcmp(m, "PUT") != 0)
        return kp_errf(err, errlen, KP_ERR_ARG, "a request body from a file needs PUT, not %s", m);
    if (req->n_headers < 0 || (req->n_headers > 0 && !req->headers))
        return kp_errf(err, errlen, KP_ERR_ARG, "an HTTP request's header count is wrong");
    return 0;
}

/* Writes why the transfer failed (curl's redacted text) into why. */
static void transfer_reason(const kp_http *h, CURLcode cc, const char *cerr, int too_big,
                            char *why, size_t n)
{
    if (too_big)
        snprintf(why, n, "the response body is over %zu MiB", HTTP_BODY_MAX >> 20);
    else if (cerr[0])
        kp_http_text_redact(h, cerr, why, n);
    else
        snprintf(why, n, "%s", curl_easy_strerror(cc));
}

/* Sleeps out the backoff before retry number attempt (a 429/503's Retry-After honoured). */
static void retry_wait(const kp_http *h, const char *method, const char *url,
                       const kp_http_resp *resp, int attempt, const char *why)
{
    long ra = resp && (resp->status == 429 || resp->status == 503) ? resp->retry_after_s : -1;
    long ms = kp_http_backoff_ms(&h->o, attempt, ra);
    if (h->o.verbose)
        fprintf(h->o.verbose, "* retrying %s %s in %.1fs: %s (attempt %d/%d)\n", method, url,
                (double)ms / 1000.0, why, attempt + 1, h->o.max_retries + 1);
    kp_http_sleep_ms(ms);
}

int kp_http_do(kp_http *h, const kp_http_req *req, kp_http_resp *resp, char *err, size_t errlen)
{
    memset(resp, 0, sizeof *resp);
    resp_reset(resp);
    int rc = check_req(req, err, errlen), attempt = 1, too_big = 0;
    char url[HTTP_URL_MAX], why[CURL_ERROR_SIZE + 64];
    CURLcode cc = CURLE_OK;
    kp_http_url_redact(req->url, url, sizeof url);
    for (; rc == 0; attempt++) {
        char cerr[CURL_ERROR_SIZE] = "";
        cc = CURLE_OK;
        resp_reset(resp);
        rc = http_once(h, req, resp, &cc, cerr, &too_big, err, errlen);
        if (rc < 0 && cc == CURLE_OK)
            break;   /* not a transfer failure: nothing to retry */
        int transient = rc < 0 ? kp_http_curl_transient(cc) && !too_big
                               : kp_http_status_transient(resp->status);
        if (rc < 0)
            transfer_reason(h, cc, cerr, too_big, why, sizeof why);
        else
            snprintf(why, sizeof why, "HTTP %ld", resp->status);
        if (!req->retry || !transient || attempt > h->o.max_retries)
            break;
        retry_wait(h, req->method, url, rc == 0 ? resp : NULL, attempt, why);
        rc = 0;
    }
    if (rc < 0 && cc != CURLE_OK) {
        char tail[48] = "";
        if (attempt > 1)
            snprintf(tail, sizeof tail, " (after %d attempts)", attempt);
        kp_errf(err, errlen, KP_ERR_IO, "%s %s: %s%s", req->method, url, why, tail);
    }
    if (rc < 0)
        kp_http_resp_free(resp);
    return rc;
}

void kp_http_resp_free(kp_http_resp *resp)
{
    if (!resp)
        return;
    kp_buf_free(&resp->body);
    free(resp->location);
    free(resp->range);
    resp->location = resp->range = NULL;
}

/* ---- statuses and delays ---- */

/* Returns the reason phrase of an HTTP status ("" if not listed). */
static const char *reason_phrase(long status)
{
    static const struct { long code; const char *text; } t[] = {
        {400, "Bad Request"}, {401, "Unauthorized"}, {403, "Forbidden"}, {404, "Not Found"},
        {405, "Method Not Allowed"}, {408, "Request Timeout"}, {409, "Conflict"},
        {410, "Gone"}, {413, "Content Too Large"}, {416, "Range Not Satisfiable"},
        {429, "Too Many Requests"}, {500, "Internal Server Error"}, {501, "Not Implemented"},
        {502, "Bad Gateway"}, {503, "Service Unavailable"}, {504, "Gateway Timeout"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (t[i].code == status)
            return t[i].text;
    return "";
}

/* Copies a printable, one-line form of s[0..n) into out (at most 200 characters). */
static void one_line(const char *s, size_t n, char *out, size_t outlen)
{
    size_t o = 0, cap = outlen - 1 < 200 ? outlen - 1 : 200;
    while (n > 0 && isspace((unsigned char)*s))
        s++, n--;
    for (size_t i = 0; i < n && s[i] != '\n' && s[i] != '\r' && o < cap; i++)
        out[o++] = isprint((unsigned char)s[i]) ? s[i] : '?';
    while (o > 0 && out[o - 1] == ' ')
        o--;
    out[o] = 0;
}

/* Writes the server's message (a JSON body's "message", else its first line) into out. */
static void server_message(const kp_http_resp *r, char *out, size_t outlen)
{
    out[0] = 0;
    if (r->body.len == 0)
        return;
    json_t *j = json_loadb(r->body.data, r->body.len, 0, NULL);
    json_t *m = json_object_get(j, "message");
    if (!json_is_string(m))
        m = json_object_get(json_object_get(j, "error"), "message");
    if (json_is_string(m))
        one_line(json_string_value(m), json_string_length(m), out, outlen);
    else
        one_line(r->body.data, r->body.len, out, outlen);
    json_decref(j);
}

int kp_http_status_error(const char *url, const kp_http_resp *resp, char *err, size_t errlen)
{
    char u[HTTP_URL_MAX], msg[256];
    kp_http_url_redact(url, u, sizeof u);
    server_message(resp, msg, sizeof msg);
    long s = resp->status;
    int rc = s == 404 ? KP_ERR_NOTFOUND : s >= 400 && s < 500 ? KP_ERR_ARG : KP_ERR_IO;
    const char *reason = reason_phrase(s);
    return kp_errf(err, errlen, rc, "%s: HTTP %ld%s%s%s%s", u, s, *reason ? " " : "", reason,
                   *msg ? ": " : "", msg);
}

int kp_http_status_transient(long status)
{
    return (status >= 500 && status <= 599) || status == 429 || status == 408;
}

long kp_http_backoff_ms(const kp_http_opts *o, int attempt, long retry_after_s)
{
    long cap = o->max_backoff_ms, d;
    if (retry_after_s >= 0) {
        d = retry_after_s > cap / 1000 ? cap : retry_after_s * 1000;
    } else {
        d = o->backoff_ms;
        for (int i = 1; i < attempt && d < cap; i++)
            d = d > cap / 2 ? cap : d * 2;
    }
    return d < cap ? d : cap;
}

void kp_http_sleep_ms(long ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

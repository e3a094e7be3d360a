/* http_server.c - the tests' HTTP server (see http_server.h): a file host
 * on libmicrohttpd, one thread per connection, with faults armed per path;
 * Kaggle's competition API is in http_server_kaggle.c.  All state sits
 * behind one mutex; a request is answered in three steps: route it to a
 * ts_reply (status, headers, body) under the lock, record it, then turn the
 * reply into an MHD response (a plain buffer, or a reader callback that cuts
 * or stalls the body). */
#include "http_server_int.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define MAX_BODY ((size_t)256 << 20)

/* A request body being received (MHD's con_cls). */
typedef struct ts_conn { char *body; size_t len, cap; } ts_conn;

/* The state of a body that is cut or stalled (owns body). */
typedef struct ts_stream {
    ts_server *s;
    char *body;
    size_t len;
    int64_t after;
    int seconds;
} ts_stream;

int ts_vec_grow(void *vp, int n, int *cap, size_t sz)
{
    void **v = vp;
    if (n < *cap)
        return 0;
    int nc = *cap ? *cap * 2 : 8;
    void *p = realloc(*v, (size_t)nc * sz);
    if (!p)
        return -1;
    *v = p;
    *cap = nc;
    return 0;
}

void ts_copy_str(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src ? src : "");
}

/* ---- replies ---- */

void ts_add_hdr(ts_reply *r, const char *name, const char *fmt, ...)
{
    if (r->nhdr >= MAX_HDRS)
        return;
    va_list ap;
    va_start(ap, fmt);
    ts_copy_str(r->hdr[r->nhdr][0], sizeof r->hdr[0][0], name);
    vsnprintf(r->hdr[r->nhdr][1], sizeof r->hdr[0][1], fmt, ap);
    va_end(ap);
    r->nhdr++;
}

/* Sets the reply's status and a copy of len bytes as its body. */
static void set_body(ts_reply *r, int status, const void *data, size_t len)
{
    r->status = status;
    free(r->body);
    r->body = malloc(len ? len : 1);
    r->len = r->body ? len : 0;
    if (r->body && len)
        memcpy(r->body, data, len);
}

void ts_set_json(ts_reply *r, int status, json_t *j)
{
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    set_body(r, status, text ? text : "{}", text ? strlen(text) : 2);
    free(text);
    ts_add_hdr(r, "Content-Type", "application/json");
}

void ts_set_error(ts_reply *r, int status, const char *msg)
{
    ts_set_json(r, status, json_pack("{s:i,s:s}", "code", status, "message", msg));
}

void ts_set_text(ts_reply *r, int status, const char *text)
{
    set_body(r, status, text, strlen(text));
    ts_add_hdr(r, "Content-Type", "text/plain");
}

/* ---- lookups (lock held) ---- */

/* Returns the file served at path, or NULL. */
static ts_file *find_file(ts_server *s, const char *path)
{
    for (int i = 0; i < s->files.n; i++)
        if (strcmp(s->files.v[i].path, path) == 0)
            return &s->files.v[i];
    return NULL;
}

/* Returns 1 if an ignore-range fault is armed for path. */
static int ignores_range(ts_server *s, const char *path)
{
    for (int i = 0; i < s->faults.n; i++)
        if (s->faults.v[i].kind == F_IGNORE_RANGE && strcmp(s->faults.v[i].path, path) == 0)
            return 1;
    return 0;
}

/* Copies the first armed fault for path into *f and consumes one use of it. */
static void take_fault(ts_server *s, const char *path, ts_fault *f)
{
    memset(f, 0, sizeof *f);
    for (int i = 0; i < s->faults.n; i++) {
        ts_fault *a = &s->faults.v[i];
        if (a->kind != F_IGNORE_RANGE && a->n > 0 && strcmp(a->path, path) == 0) {
            *f = *a;
            a->n--;
            return;
        }
    }
}

/* Arms a fault on path (lock taken here). */
static void arm(ts_server *s, const char *path, ts_fault f)
{
    ts_copy_str(f.path, sizeof f.path, path);
    pthread_mutex_lock(&s->lock);
    ts_fault *a = VEC_PUSH(s->faults);
    if (a)
        *a = f;
    pthread_mutex_unlock(&s->lock);
}

/* ---- files ---- */

/* Parses "bytes=A-" or "bytes=A-B" into *a, *b (b = -1 when open); 0 or -1. */
static int parse_range(const char *h, int64_t *a, int64_t *b)
{
    char *end;
    if (strncmp(h, "bytes=", 6) != 0 || h[6] < '0' || h[6] > '9')
        return -1;
    *a = strtoll(h + 6, &end, 10);
    if (*end++ != '-')
        return -1;
    *b = -1;
    if (*end >= '0' && *end <= '9')
        *b = strtoll(end, &end, 10);
    return *end == '\0' && (*b < 0 || *b >= *a) ? 0 : -1;
}

/* Serves a GET or HEAD of a file, honouring Range. */
static void serve_file(ts_server *s, const ts_in *in, ts_reply *r)
{
    ts_file *f = find_file(s, in->url);
    if (!f) {
        ts_set_text(r, 404, "not found");
        return;
    }
    int64_t a = 0, b = -1, len = (int64_t)f->len;
    if (in->range[0] && !ignores_range(s, in->url) && parse_range(in->range, &a, &b) == 0) {
        if (a >= len) {
            ts_set_text(r, 416, "range not satisfiable");
            ts_add_hdr(r, "Content-Range", "bytes */%" PRId64, len);
            return;
        }
        if (b < 0 || b >= len)
            b = len - 1;
        set_body(r, 206, f->data + a, (size_t)(b - a + 1));
        ts_add_hdr(r, "Content-Range", "bytes %" PRId64 "-%" PRId64 "/%" PRId64, a, b, len);
    } else {
        set_body(r, 200, f->data, f->len);
    }
    ts_add_hdr(r, "Accept-Ranges", "bytes");
    ts_add_hdr(r, "Content-Type", "application/octet-stream");
}

/* ---- the request cycle ---- */

/* Routes one request to its reply (lock held); may consume the fault f. */
static void route(ts_server *s, const ts_in *in, ts_fault *f, ts_reply *r)
{
    if (f->kind == F_FAIL) {
        ts_set_error(r, f->status, "injected failure");
        if (f->retry_after >= 0)
            ts_add_hdr(r, "Retry-After", "%d", f->retry_after);
    } else if (strncmp(in->url, API_PREFIX, strlen(API_PREFIX)) == 0) {
        ts_serve_api(s, in, r);
    } else if (strncmp(in->url, UPLOAD_PREFIX, strlen(UPLOAD_PREFIX)) == 0 &&
               strcmp(in->method, "PUT") == 0) {
        ts_serve_upload(s, in, f, r);
    } else if (strcmp(in->method, "GET") == 0 || strcmp(in->method, "HEAD") == 0) {
        serve_file(s, in, r);
    } else {
        ts_set_text(r, 404, "not found");
    }
}

/* Records the request and its answer (lock held). */
static void record(ts_server *s, const ts_in *in, int status)
{
    ts_request *q = VEC_PUSH(s->reqs);
    if (!q)
        return;
    ts_copy_str(q->method, sizeof q->method, in->method);
    ts_copy_str(q->path, sizeof q->path, in->url);
    ts_copy_str(q->range, sizeof q->range, in->range);
    ts_copy_str(q->content_range, sizeof q->content_range, in->content_range);
    q->had_auth = in->auth != NULL;
    q->auth_ok = in->auth && s->auth && strcmp(in->auth, s->auth) == 0;
    q->status = status;
}

/* Sleeps up to seconds, in small steps, returning early when the server stops. */
static void stall(ts_server *s, int seconds)
{
    struct timespec step = {0, 20 * 1000 * 1000};
    for (long ms = 0; ms < seconds * 1000L && !atomic_load(&s->stopping); ms += 20)
        nanosleep(&step, NULL);
}

/* MHD reader: sends the first `after` bytes, then (stalls and) fails. */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    ts_stream *t = cls;
    if ((int64_t)pos >= t->after) {
        stall(t->s, t->seconds);
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = (size_t)(t->after - (int64_t)pos);
    if (n > max)
        n = max;
    memcpy(buf, t->body + pos, n);
    return (ssize_t)n;
}

/* Frees a ts_stream. */
static void stream_free(void *cls)
{
    ts_stream *t = cls;
    free(t->body);
    free(t);
}

/* Turns reply r into an MHD response, taking its body; cut/stall faults stream a prefix. */
static struct MHD_Response *make_response(ts_server *s, ts_reply *r, const ts_fault *f)
{
    struct MHD_Response *resp = NULL;
    ts_stream *t = NULL;
    if ((f->kind == F_CUT || f->kind == F_STALL) && f->after < (int64_t)r->len &&
        (t = malloc(sizeof *t)) != NULL) {
        *t = (ts_stream){s, r->body, r->len, f->after < 0 ? 0 : f->after,
                         f->kind == F_STALL ? f->seconds : 0};
        resp = MHD_create_response_from_callback(r->len, 16384, stream_read, t, stream_free);
        if (!resp)
            free(t);
        else
            r->body = NULL;
    } else {
        resp = MHD_create_response_from_buffer(r->len, r->body, MHD_RESPMEM_MUST_FREE);
        if (resp)
            r->body = NULL;
    }
    for (int i = 0; resp && i < r->nhdr; i++)
        MHD_add_response_header(resp, r->hdr[i][0], r->hdr[i][1]);
    return resp;
}

/* Copies request header name into dst ("" if absent). */
static void get_hdr(struct MHD_Connection *con, const char *name, char *dst, size_t n)
{
    ts_copy_str(dst, n, MHD_lookup_connection_value(con, MHD_HEADER_KIND, name));
}

/* Answers a fully received request. */
static enum MHD_Result respond(ts_server *s, struct MHD_Connection *con, const char *url,
                               const char *method, const ts_conn *c)
{
    ts_in in = {method, url, MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Authorization"),
                "", "", c->body, c->len};
    get_hdr(con, "Range", in.range, sizeof in.range);
    get_hdr(con, "Content-Range", in.content_range, sizeof in.content_range);
    ts_reply r = {0};
    ts_fault f;
    pthread_mutex_lock(&s->lock);
    take_fault(s, url, &f);
    route(s, &in, &f, &r);
    record(s, &in, r.status);
    pthread_mutex_unlock(&s->lock);
    struct MHD_Response *resp = make_response(s, &r, &f);
    free(r.body);
    if (!resp)
        return MHD_NO;
    enum MHD_Result ret = MHD_queue_response(con, (unsigned)r.status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* MHD access handler: gathers the body in *con_cls, answers at the last call. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *con, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)version;
    ts_conn *c = *con_cls;
    if (!c) {
        *con_cls = calloc(1, sizeof(ts_conn));
        return *con_cls ? MHD_YES : MHD_NO;
    }
    size_t n = *upload_data_size;
    if (n == 0)
        return respond(cls, con, url, method, c);
    if (c->len + n > MAX_BODY)
        return MHD_NO;
    if (c->len + n > c->cap) {
        size_t nc = (c->len + n) * 2;
        char *p = realloc(c->body, nc);
        if (!p)
            return MHD_NO;
        c->body = p;
        c->cap = nc;
    }
    memcpy(c->body + c->len, upload_data, n);
    c->len += n;
    *upload_data_size = 0;
    return MHD_YES;
}

/* MHD completion callback: frees the request's ts_conn. */
static void on_completed(void *cls, struct MHD_Connection *con, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)con, (void)toe;
    ts_conn *c = *con_cls;
    if (c)
        free(c->body);
    free(c);
    *con_cls = NULL;
}

/* MHD logger: quiet unless KP_TEST_HTTP_LOG is set (faults make it chatty). */
static void on_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    if (getenv("KP_TEST_HTTP_LOG"))
        vfprintf(stderr, fmt, ap);
}

/* ---- public API ---- */

ts_server *ts_start(void)
{
    ts_server *s = calloc(1, sizeof *s);
    if (!s || pthread_mutex_init(&s->lock, NULL) != 0) {
        free(s);
        return NULL;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                                MHD_USE_ERROR_LOG,
                            0, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, &sa,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                            MHD_OPTION_EXTERNAL_LOGGER, on_log, s, MHD_OPTION_END);
    const union MHD_DaemonInfo *info =
        s->d ? MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT) : NULL;
    if (!info || info->port == 0) {
        ts_stop(s);
        return NULL;
    }
    snprintf(s->url, sizeof s->url, "http://127.0.0.1:%u", (unsigned)info->port);
    return s;
}

void ts_stop(ts_server *s)
{
    if (!s)
        return;
    atomic_store(&s->stopping, 1);
    if (s->d)
        MHD_stop_daemon(s->d);
    for (int i = 0; i < s->files.n; i++)
        free(s->files.v[i].path), free(s->files.v[i].data);
    ts_kaggle_free(s);
    free(s->files.v), free(s->faults.v), free(s->reqs.v), free(s->auth);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

const char *ts_url(const ts_server *s)
{
    return s->url;
}

int ts_put_file(ts_server *s, const char *path, const void *data, size_t len)
{
    unsigned char *copy = malloc(len ? len : 1);
    ts_file *f = find_file(s, path);
    if (!f && (f = VEC_PUSH(s->files)) != NULL && !(f->path = strdup(path)))
        s->files.n--, f = NULL;
    if (!copy || !f) {
        free(copy);
        return -1;
    }
    if (len)
        memcpy(copy, data, len);
    free(f->data);
    f->data = copy;
    f->len = len;
    return 0;
}

void ts_add_file(ts_server *s, const char *path, const void *data, size_t len)
{
    pthread_mutex_lock(&s->lock);
    if (ts_put_file(s, path, data, len) != 0)
        fprintf(stderr, "http_server: out of memory adding %s\n", path);
    pthread_mutex_unlock(&s->lock);
}

void ts_set_auth(ts_server *s, const char *authorization)
{
    pthread_mutex_lock(&s->lock);
    free(s->auth);
    s->auth = authorization ? strdup(authorization) : NULL;
    pthread_mutex_unlock(&s->lock);
}

void ts_fail(ts_server *s, const char *path, int n, int status, int retry_after)
{
    arm(s, path, (ts_fault){.kind = F_FAIL, .n = n, .status = status, .retry_after = retry_after});
}

void ts_cut(ts_server *s, const char *path, int n, int64_t after)
{
    arm(s, path, (ts_fault){.kind = F_CUT, .n = n, .after = after});
}

void ts_stall(ts_server *s, const char *path, int n, int64_t after, int seconds)
{
    arm(s, path, (ts_fault){.kind = F_STALL, .n = n, .after = after, .seconds = seconds});
}

void ts_ignore_range(ts_server *s, const char *path)
{
    arm(s, path, (ts_fault){.kind = F_IGNORE_RANGE});
}

int ts_request_count(const ts_server *s)
{
    ts_server *m = (ts_server *)s;
    pthread_mutex_lock(&m->lock);
    int n = s->reqs.n;
    pthread_mutex_unlock(&m->lock);
    return n;
}

int ts_request_at(const ts_server *s, int i, ts_request *out)
{
    ts_server *m = (ts_server *)s;
    int rc = -1;
    pthread_mutex_lock(&m->lock);
    if (i >= 0 && i < s->reqs.n) {
        *out = s->reqs.v[i];
        rc = 0;
    }
    pthread_mutex_unlock(&m->lock);
    return rc;
}

int ts_requests_to(const ts_server *s, const char *path)
{
    ts_server *m = (ts_server *)s;
    int n = 0;
    pthread_mutex_lock(&m->lock);
    for (int i = 0; i < s->reqs.n; i++)
        n += strcmp(s->reqs.v[i].path, path) == 0;
    pthread_mutex_unlock(&m->lock);
    return n;
}

void ts_clear_requests(ts_server *s)
{
    pthread_mutex_lock(&s->lock);
    s->reqs.n = 0;
    pthread_mutex_unlock(&s->lock);
}

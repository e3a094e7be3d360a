/* http_server.c - the tests' HTTP server (see http_server.h): a file host
 * and Kaggle's competition API on libmicrohttpd, one thread per connection,
 * with faults armed per path.  All state sits behind one mutex; a request
 * is answered in three steps: route it to a ts_reply (status, headers, body)
 * under the lock, record it, then turn the reply into an MHD response
 * (a plain buffer, or a reader callback that cuts or stalls the body). */
#include "http_server.h"

#include <jansson.h>
#include <microhttpd.h>

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define API_PREFIX "/v1/competitions.CompetitionApiService/"
#define UPLOAD_PREFIX "/upload/"
#define MAX_HDRS 6
#define MAX_BODY ((size_t)256 << 20)

enum { F_NONE, F_FAIL, F_CUT, F_STALL, F_IGNORE_RANGE };

typedef struct ts_fault {
    char path[256];
    int kind, n, status, retry_after, seconds;
    int64_t after;
} ts_fault;

typedef struct ts_file { char *path; unsigned char *data; size_t len; } ts_file;
typedef struct ts_comp { char *name; int forbidden; } ts_comp;
typedef struct ts_cfile { char *comp, *name; size_t len; } ts_cfile;

typedef struct ts_upload {
    char *comp, *file_name;
    unsigned char *data;
    size_t held, cap;
    int64_t total;
} ts_upload;

typedef struct ts_sub {
    long ref;
    char *comp, *file_name, *desc, *data;
    size_t len;
    char date[32], pub[64], priv[64];
} ts_sub;

/* A growable array: items, count, capacity. */
#define TS_VEC(T) struct { T *v; int n, cap; }

struct ts_server {
    struct MHD_Daemon *d;
    char url[64];
    pthread_mutex_t lock;
    atomic_int stopping;
    char *auth;
    TS_VEC(ts_file) files;
    TS_VEC(ts_comp) comps;
    TS_VEC(ts_cfile) cfiles;
    TS_VEC(ts_fault) faults;
    TS_VEC(ts_upload) uploads;
    TS_VEC(ts_sub) subs;
    TS_VEC(ts_request) reqs;
};

/* One request as the router sees it (all borrowed). */
typedef struct ts_in {
    const char *method, *url, *auth;
    char range[64], content_range[64];
    const char *body;
    size_t len;
} ts_in;

/* The answer the router builds; body is heap-owned. */
typedef struct ts_reply {
    int status, nhdr;
    char hdr[MAX_HDRS][2][512];
    char *body;
    size_t len;
} ts_reply;

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

/* Makes room for one more item of size sz in *v (count n, capacity *cap); 0 or -1. */
static int vec_grow(void *vp, int n, int *cap, size_t sz)
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
#define VEC_PUSH(vec) (vec_grow(&(vec).v, (vec).n, &(vec).cap, sizeof *(vec).v) == 0 \
                       ? memset(&(vec).v[(vec).n++], 0, sizeof *(vec).v) : NULL)

/* Copies src into dst of size n, truncating. */
static void copy_str(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src ? src : "");
}

/* ---- replies ---- */

/* Adds a header name: value to the reply. */
static void add_hdr(ts_reply *r, const char *name, const char *fmt, ...)
{
    if (r->nhdr >= MAX_HDRS)
        return;
    va_list ap;
    va_start(ap, fmt);
    copy_str(r->hdr[r->nhdr][0], sizeof r->hdr[0][0], name);
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

/* Sets a JSON reply from j (consumed). */
static void set_json(ts_reply *r, int status, json_t *j)
{
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    set_body(r, status, text ? text : "{}", text ? strlen(text) : 2);
    free(text);
    add_hdr(r, "Content-Type", "application/json");
}

/* Sets Kaggle's error reply {"code":status,"message":msg}. */
static void set_error(ts_reply *r, int status, const char *msg)
{
    set_json(r, status, json_pack("{s:i,s:s}", "code", status, "message", msg));
}

/* Sets a plain-text reply. */
static void set_text(ts_reply *r, int status, const char *text)
{
    set_body(r, status, text, strlen(text));
    add_hdr(r, "Content-Type", "text/plain");
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

/* Returns competition name, adding it when add is set; NULL if unknown. */
static ts_comp *find_comp(ts_server *s, const char *name, int add)
{
    for (int i = 0; i < s->comps.n; i++)
        if (strcmp(s->comps.v[i].name, name) == 0)
            return &s->comps.v[i];
    ts_comp *c = add ? VEC_PUSH(s->comps) : NULL;
    if (c && !(c->name = strdup(name)))
        s->comps.n--, c = NULL;
    return c;
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
    copy_str(f.path, sizeof f.path, path);
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
        set_text(r, 404, "not found");
        return;
    }
    int64_t a = 0, b = -1, len = (int64_t)f->len;
    if (in->range[0] && !ignores_range(s, in->url) && parse_range(in->range, &a, &b) == 0) {
        if (a >= len) {
            set_text(r, 416, "range not satisfiable");
            add_hdr(r, "Content-Range", "bytes */%" PRId64, len);
            return;
        }
        if (b < 0 || b >= len)
            b = len - 1;
        set_body(r, 206, f->data + a, (size_t)(b - a + 1));
        add_hdr(r, "Content-Range", "bytes %" PRId64 "-%" PRId64 "/%" PRId64, a, b, len);
    } else {
        set_body(r, 200, f->data, f->len);
    }
    add_hdr(r, "Accept-Ranges", "bytes");
    add_hdr(r, "Content-Type", "application/octet-stream");
}

/* ---- uploads ---- */

/* Appends len bytes to upload u; 0 or -1. */
static int upload_append(ts_upload *u, const char *data, size_t len)
{
    if (u->held + len > u->cap) {
        size_t nc = (u->held + len) * 2;
        unsigned char *p = realloc(u->data, nc ? nc : 1);
        if (!p)
            return -1;
        u->data = p;
        u->cap = nc;
    }
    if (len)
        memcpy(u->data + u->held, data, len);
    u->held += len;
    return 0;
}

/* Sets the resumable-upload answer: 200 when complete, else 308 with Range. */
static void upload_status(const ts_upload *u, ts_reply *r)
{
    if (u->total >= 0 && (int64_t)u->held == u->total) {
        set_text(r, 200, "");
        return;
    }
    set_text(r, 308, "");
    if (u->held > 0)
        add_hdr(r, "Range", "bytes=0-%zu", u->held - 1);
}

/* Serves PUT /upload/N (Google's resumable upload); a cut fault keeps a prefix. */
static void serve_upload(ts_server *s, const ts_in *in, ts_fault *f, ts_reply *r)
{
    char *end;
    long n = strtol(in->url + strlen(UPLOAD_PREFIX), &end, 10);
    if (*end || n < 1 || n > s->uploads.n) {
        set_text(r, 404, "no such upload");
        return;
    }
    ts_upload *u = &s->uploads.v[n - 1];
    int64_t a = 0, b = (int64_t)in->len - 1, total = (int64_t)in->len;
    const char *cr = in->content_range;
    if (cr[0] && sscanf(cr, "bytes */%" SCNd64, &total) == 1 && in->len == 0) {
        u->total = total;
        upload_status(u, r);
        return;
    }
    if (cr[0] && sscanf(cr, "bytes %" SCNd64 "-%" SCNd64 "/%" SCNd64, &a, &b, &total) != 3) {
        set_text(r, 400, "bad Content-Range");
        return;
    }
    if (a != (int64_t)u->held || b - a + 1 != (int64_t)in->len || b >= total) {
        set_text(r, 400, "Content-Range does not follow the bytes held");
        return;
    }
    u->total = total;
    size_t keep = in->len;
    if (f->kind == F_CUT && f->after < (int64_t)keep)
        keep = f->after < 0 ? 0 : (size_t)f->after;
    if (upload_append(u, in->body, keep) != 0) {
        set_text(r, 500, "out of memory");
        return;
    }
    if (f->kind == F_CUT) {
        f->kind = F_NONE;
        set_text(r, 503, "upload cut");
        return;
    }
    upload_status(u, r);
}

/* ---- Kaggle API ---- */

/* Returns the string member key of o, or NULL. */
static const char *jstr(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* Returns the integer (or numeric string) member key of o, or dflt. */
static int64_t jint(json_t *o, const char *key, int64_t dflt)
{
    json_t *v = json_object_get(o, key);
    if (json_is_integer(v))
        return json_integer_value(v);
    if (json_is_string(v))
        return strtoll(json_string_value(v), NULL, 10);
    return dflt;
}

/* ListDataFiles: the competition's files. */
static void api_list_files(ts_server *s, json_t *req, const char *comp, ts_reply *r)
{
    (void)req;
    json_t *files = json_array();
    for (int i = 0; i < s->cfiles.n; i++) {
        const ts_cfile *c = &s->cfiles.v[i];
        if (strcmp(c->comp, comp) == 0)
            json_array_append_new(files, json_pack("{s:s,s:I,s:s}", "name", c->name,
                                                   "totalBytes", (json_int_t)c->len,
                                                   "creationDate", "2020-01-01T00:00:00Z"));
    }
    set_json(r, 200, json_pack("{s:o,s:s}", "files", files, "nextPageToken", ""));
}

/* DownloadDataFile: a redirect to the file. */
static void api_download_file(ts_server *s, json_t *req, const char *comp, ts_reply *r)
{
    const char *name = jstr(req, "fileName");
    int found = 0;
    for (int i = 0; name && i < s->cfiles.n; i++)
        found |= strcmp(s->cfiles.v[i].comp, comp) == 0 && strcmp(s->cfiles.v[i].name, name) == 0;
    if (!found) {
        set_error(r, 404, "File not found");
        return;
    }
    set_text(r, 302, "");
    add_hdr(r, "Location", "%s/files/%s/%s", s->url, comp, name);
}

/* DownloadDataFiles: a redirect to the competition's zip. */
static void api_download_all(ts_server *s, json_t *req, const char *comp, ts_reply *r)
{
    (void)req;
    set_text(r, 302, "");
    add_hdr(r, "Location", "%s/files/%s.zip", s->url, comp);
}

/* StartSubmissionUpload: opens upload N, answers its token and URL. */
static void api_start_upload(ts_server *s, json_t *req, const char *comp, ts_reply *r)
{
    ts_upload *u = VEC_PUSH(s->uploads);
    if (!u || !(u->comp = strdup(comp)) || !(u->file_name = strdup(jstr(req, "fileName") ? jstr(req, "fileName") : ""))) {
        set_error(r, 500, "out of memory");
        return;
    }
    u->total = jint(req, "contentLength", -1);
    char token[32], url[128];
    snprintf(token, sizeof token, "blob-%d", s->uploads.n);
    snprintf(url, sizeof url, "%s" UPLOAD_PREFIX "%d", s->url, s->uploads.n);
    set_json(r, 200, json_pack("{s:s,s:s}", "token", token, "createUrl", url));
}

/* Returns the upload named by a "blob-N" token (string, or first of an array), or NULL. */
static ts_upload *upload_by_token(ts_server *s, json_t *tok)
{
    if (json_is_array(tok))
        tok = json_array_get(tok, 0);
    const char *t = json_string_value(tok);
    char *end;
    if (!t || strncmp(t, "blob-", 5) != 0)
        return NULL;
    long n = strtol(t + 5, &end, 10);
    return *end || n < 1 || n > s->uploads.n ? NULL : &s->uploads.v[n - 1];
}

/* CreateSubmission: turns a complete upload into a submission. */
static void api_create(ts_server *s, json_t *req, const char *comp, ts_reply *r)
{
    ts_upload *u = upload_by_token(s, json_object_get(req, "blobFileTokens"));
    if (!u || u->total < 0 || (int64_t)u->held != u->total || strcmp(u->comp, comp) != 0) {
        set_error(r, 400, "Invalid or incomplete blob file token");
        return;
    }
    const char *desc = jstr(req, "submissionDescription");
    ts_sub *sub = VEC_PUSH(s->subs);
    if (!sub || !(sub->comp = strdup(comp)) || !(sub->file_name = strdup(u->file_name)) ||
        !(sub->desc = strdup(desc ? desc : "")) || !(sub->data = malloc(u->held ? u->held : 1))) {
        set_error(r, 500, "out of memory");
        return;
    }
    memcpy(sub->data, u->data, u->held);
    sub->len = u->held;
    sub->ref = 1000 + s->subs.n;
    time_t now = time(NULL);
    struct tm tm;
    strftime(sub->date, sizeof sub->date, "%Y-%m-%dT%H:%M:%S.000Z", gmtime_r(&now, &tm));
    char msg[300];
    snprintf(msg, sizeof msg, "Successfully submitted to %s", comp);
    set_json(r, 200, json_pack("{s:s,s:I}", "message", msg, "ref", (json_int_t)sub->ref));
}

/* ListSubmissions: the competition's submissions, newest first (page 1 only). */
static void api_list_subs(ts_server *s, json_t *req, const char *comp, ts_reply *r)
{
    json_t *list = json_array();
    for (int i = s->subs.n - 1; i >= 0 && jint(req, "page", 1) <= 1; i--) {
        const ts_sub *b = &s->subs.v[i];
        if (strcmp(b->comp, comp) != 0)
            continue;
        json_array_append_new(list, json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:I}",
            "ref", (json_int_t)b->ref, "date", b->date, "description", b->desc,
            "fileName", b->file_name, "status", "COMPLETE", "publicScore", b->pub,
            "privateScore", b->priv, "totalBytes", (json_int_t)b->len));
    }
    set_json(r, 200, json_pack("{s:o}", "submissions", list));
}

typedef void (*api_fn)(ts_server *s, json_t *req, const char *comp, ts_reply *r);

static const struct { const char *name; api_fn fn; int download; } api_methods[] = {
    {"ListDataFiles", api_list_files, 0},
    {"DownloadDataFile", api_download_file, 1},
    {"DownloadDataFiles", api_download_all, 1},
    {"StartSubmissionUpload", api_start_upload, 0},
    {"CreateSubmission", api_create, 0},
    {"ListSubmissions", api_list_subs, 0},
};

/* Serves POST /v1/competitions.CompetitionApiService/METHOD. */
static void serve_api(ts_server *s, const ts_in *in, ts_reply *r)
{
    const char *name = in->url + strlen(API_PREFIX);
    size_t m = 0, nm = sizeof api_methods / sizeof api_methods[0];
    while (m < nm && strcmp(api_methods[m].name, name) != 0)
        m++;
    if (strcmp(in->method, "POST") != 0 || m == nm) {
        set_error(r, m == nm ? 404 : 405, m == nm ? "Method not found" : "Use POST");
        return;
    }
    if (s->auth && (!in->auth || strcmp(in->auth, s->auth) != 0)) {
        set_error(r, 401, "Unauthenticated");
        return;
    }
    json_t *req = json_loadb(in->len ? in->body : "{}", in->len ? in->len : 2, 0, NULL);
    const char *comp = jstr(req, "competitionName");
    ts_comp *c = comp ? find_comp(s, comp, 0) : NULL;
    if (!json_is_object(req))
        set_error(r, 400, "Invalid JSON body");
    else if (!c)
        set_error(r, 404, "Competition not found");
    else if (c->forbidden && api_methods[m].download)
        set_error(r, 403, "You must accept this competition's rules before you'll be able to "
                          "download files.");
    else
        api_methods[m].fn(s, req, comp, r);
    json_decref(req);
}

/* ---- the request cycle ---- */

/* Routes one request to its reply (lock held); may consume the fault f. */
static void route(ts_server *s, const ts_in *in, ts_fault *f, ts_reply *r)
{
    if (f->kind == F_FAIL) {
        set_error(r, f->status, "injected failure");
        if (f->retry_after >= 0)
            add_hdr(r, "Retry-After", "%d", f->retry_after);
    } else if (strncmp(in->url, API_PREFIX, strlen(API_PREFIX)) == 0) {
        serve_api(s, in, r);
    } else if (strncmp(in->url, UPLOAD_PREFIX, strlen(UPLOAD_PREFIX)) == 0 &&
               strcmp(in->method, "PUT") == 0) {
        serve_upload(s, in, f, r);
    } else if (strcmp(in->method, "GET") == 0 || strcmp(in->method, "HEAD") == 0) {
        serve_file(s, in, r);
    } else {
        set_text(r, 404, "not found");
    }
}

/* Records the request and its answer (lock held). */
static void record(ts_server *s, const ts_in *in, int status)
{
    ts_request *q = VEC_PUSH(s->reqs);
    if (!q)
        return;
    copy_str(q->method, sizeof q->method, in->method);
    copy_str(q->path, sizeof q->path, in->url);
    copy_str(q->range, sizeof q->range, in->range);
    copy_str(q->content_range, sizeof q->content_range, in->content_range);
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
    copy_str(dst, n, MHD_lookup_connection_value(con, MHD_HEADER_KIND, name));
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
    for (int i = 0; i < s->comps.n; i++)
        free(s->comps.v[i].name);
    for (int i = 0; i < s->cfiles.n; i++)
        free(s->cfiles.v[i].comp), free(s->cfiles.v[i].name);
    for (int i = 0; i < s->uploads.n; i++)
        free(s->uploads.v[i].comp), free(s->uploads.v[i].file_name), free(s->uploads.v[i].data);
    for (int i = 0; i < s->subs.n; i++)
        free(s->subs.v[i].comp), free(s->subs.v[i].file_name), free(s->subs.v[i].desc),
            free(s->subs.v[i].data);
    free(s->files.v), free(s->comps.v), free(s->cfiles.v), free(s->faults.v);
    free(s->uploads.v), free(s->subs.v), free(s->reqs.v), free(s->auth);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

const char *ts_url(const ts_server *s)
{
    return s->url;
}

/* Stores a copy of data at path (lock held); 0 or -1. */
static int put_file(ts_server *s, const char *path, const void *data, size_t len)
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
    if (put_file(s, path, data, len) != 0)
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

void ts_add_competition_file(ts_server *s, const char *comp, const char *name, const void *data,
                             size_t len)
{
    char path[512];
    snprintf(path, sizeof path, "/files/%s/%s", comp, name);
    pthread_mutex_lock(&s->lock);
    ts_cfile *c = NULL;
    for (int i = 0; i < s->cfiles.n && !c; i++)
        if (strcmp(s->cfiles.v[i].comp, comp) == 0 && strcmp(s->cfiles.v[i].name, name) == 0)
            c = &s->cfiles.v[i];
    if (!c && (c = VEC_PUSH(s->cfiles)) != NULL) {
        c->comp = strdup(comp);
        c->name = strdup(name);
    }
    if (!find_comp(s, comp, 1) || !c || !c->comp || !c->name || put_file(s, path, data, len))
        fprintf(stderr, "http_server: out of memory adding %s\n", path);
    else
        c->len = len;
    pthread_mutex_unlock(&s->lock);
}

void ts_forbid(ts_server *s, const char *comp)
{
    pthread_mutex_lock(&s->lock);
    ts_comp *c = find_comp(s, comp, 1);
    if (c)
        c->forbidden = 1;
    pthread_mutex_unlock(&s->lock);
}

void ts_set_score(ts_server *s, long ref, const char *public_score, const char *private_score)
{
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < s->subs.n; i++)
        if (s->subs.v[i].ref == ref) {
            copy_str(s->subs.v[i].pub, sizeof s->subs.v[i].pub, public_score);
            copy_str(s->subs.v[i].priv, sizeof s->subs.v[i].priv, private_score);
        }
    pthread_mutex_unlock(&s->lock);
}

const void *ts_submission(const ts_server *s, long ref, size_t *len, char *desc, size_t desclen)
{
    ts_server *m = (ts_server *)s;   /* the lock is the only thing changed */
    const void *data = NULL;
    pthread_mutex_lock(&m->lock);
    for (int i = 0; i < s->subs.n && !data; i++)
        if (s->subs.v[i].ref == ref) {
            data = s->subs.v[i].data;
            if (len)
                *len = s->subs.v[i].len;
            if (desc && desclen)
                copy_str(desc, desclen, s->subs.v[i].desc);
        }
    pthread_mutex_unlock(&m->lock);
    return data;
}

int ts_submission_count(const ts_server *s)
{
    ts_server *m = (ts_server *)s;
    pthread_mutex_lock(&m->lock);
    int n = s->subs.n;
    pthread_mutex_unlock(&m->lock);
    return n;
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

/* http_server_kaggle.c - the tests' HTTP server playing Kaggle's API (see
 * http_server.h): the JSON methods under API_PREFIX, resumable submission
 * uploads under UPLOAD_PREFIX, the submissions made from them, and the
 * public functions that set up competitions and read submissions back.
 * Everything is called with the server's lock held, except the public
 * functions, which take it. */
#include "http_server_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* ---- lookups (lock held) ---- */

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
        ts_set_text(r, 200, "");
        return;
    }
    ts_set_text(r, 308, "");
    if (u->held > 0)
        ts_add_hdr(r, "Range", "bytes=0-%zu", u->held - 1);
}

void ts_serve_upload(ts_server *s, const ts_in *in, ts_fault *f, ts_reply *r)
{
    char *end;
    long n = strtol(in->url + strlen(UPLOAD_PREFIX), &end, 10);
    if (*end || n < 1 || n > s->uploads.n) {
        ts_set_text(r, 404, "no such upload");
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
        ts_set_text(r, 400, "bad Content-Range");
        return;
    }
    if (a != (int64_t)u->held || b - a + 1 != (int64_t)in->len || b >= total) {
        ts_set_text(r, 400, "Content-Range does not follow the bytes held");
        return;
    }
    u->total = total;
    size_t keep = in->len;
    if (f->kind == F_CUT && f->after < (int64_t)keep)
        keep = f->after < 0 ? 0 : (size_t)f->after;
    if (upload_append(u, in->body, keep) != 0) {
        ts_set_text(r, 500, "out of memory");
        return;
    }
    if (f->kind == F_CUT) {
        f->kind = F_NONE;
        ts_set_text(r, 503, "upload cut");
        return;
    }
    upload_status(u, r);
}

/* ---- the JSON methods ---- */

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
    ts_set_json(r, 200, json_pack("{s:o,s:s}", "files", files, "nextPageToken", ""));
}

/* DownloadDataFile: a redirect to the file. */
static void api_download_file(ts_server *s, json_t *req, const char *comp, ts_reply *r)
{
    const char *name = jstr(req, "fileName");
    int found = 0;
    for (int i = 0; name && i < s->cfiles.n; i++)
        found |= strcmp(s->cfiles.v[i].comp, comp) == 0 && strcmp(s->cfiles.v[i].name, name) == 0;
    if (!found) {
        ts_set_error(r, 404, "File not found");
        return;
    }
    ts_set_text(r, 302, "");
    ts_add_hdr(r, "Location", "%s/files/%s/%s", s->url, comp, name);
}

/* DownloadDataFiles: a redirect to the competition's zip. */
static void api_download_all(ts_server *s, json_t *req, const char *comp, ts_reply *r)
{
    (void)req;
    ts_set_text(r, 302, "");
    ts_add_hdr(r, "Location", "%s/files/%s.zip", s->url, comp);
}

/* StartSubmissionUpload: opens upload N, answers its token and URL. */
static void api_start_upload(ts_server *s, json_t *req, const char *comp, ts_reply *r)
{
    const char *name = jstr(req, "fileName");
    ts_upload *u = VEC_PUSH(s->uploads);
    if (!u || !(u->comp = strdup(comp)) || !(u->file_name = strdup(name ? name : ""))) {
        ts_set_error(r, 500, "out of memory");
        return;
    }
    u->total = jint(req, "contentLength", -1);
    char token[32], url[128];
    snprintf(token, sizeof token, "blob-%d", s->uploads.n);
    snprintf(url, sizeof url, "%s" UPLOAD_PREFIX "%d", s->url, s->uploads.n);
    ts_set_json(r, 200, json_pack("{s:s,s:s}", "token", token, "createUrl", url));
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
        ts_set_error(r, 400, "Invalid or incomplete blob file token");
        return;
    }
    const char *desc = jstr(req, "submissionDescription");
    ts_sub *sub = VEC_PUSH(s->subs);
    if (!sub || !(sub->comp = strdup(comp)) || !(sub->file_name = strdup(u->file_name)) ||
        !(sub->desc = strdup(desc ? desc : "")) || !(sub->data = malloc(u->held ? u->held : 1))) {
        ts_set_error(r, 500, "out of memory");
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
    ts_set_json(r, 200, json_pack("{s:s,s:I}", "message", msg, "ref", (json_int_t)sub->ref));
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
    ts_set_json(r, 200, json_pack("{s:o}", "submissions", list));
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

void ts_serve_api(ts_server *s, const ts_in *in, ts_reply *r)
{
    const char *name = in->url + strlen(API_PREFIX);
    size_t m = 0, nm = sizeof api_methods / sizeof api_methods[0];
    while (m < nm && strcmp(api_methods[m].name, name) != 0)
        m++;
    if (strcmp(in->method, "POST") != 0 || m == nm) {
        ts_set_error(r, m == nm ? 404 : 405, m == nm ? "Method not found" : "Use POST");
        return;
    }
    if (s->auth && (!in->auth || strcmp(in->auth, s->auth) != 0)) {
        ts_set_error(r, 401, "Unauthenticated");
        return;
    }
    json_t *req = json_loadb(in->len ? in->body : "{}", in->len ? in->len : 2, 0, NULL);
    const char *comp = jstr(req, "competitionName");
    ts_comp *c = comp ? find_comp(s, comp, 0) : NULL;
    if (!json_is_object(req))
        ts_set_error(r, 400, "Invalid JSON body");
    else if (!c)
        ts_set_error(r, 404, "Competition not found");
    else if (c->forbidden && api_methods[m].download)
        ts_set_error(r, 403, "You must accept this competition's rules before you'll be able "
                             "to download files.");
    else
        api_methods[m].fn(s, req, comp, r);
    json_decref(req);
}

/* ---- public API ---- */

void ts_kaggle_free(ts_server *s)
{
    for (int i = 0; i < s->comps.n; i++)
        free(s->comps.v[i].name);
    for (int i = 0; i < s->cfiles.n; i++)
        free(s->cfiles.v[i].comp), free(s->cfiles.v[i].name);
    for (int i = 0; i < s->uploads.n; i++)
        free(s->uploads.v[i].comp), free(s->uploads.v[i].file_name), free(s->uploads.v[i].data);
    for (int i = 0; i < s->subs.n; i++)
        free(s->subs.v[i].comp), free(s->subs.v[i].file_name), free(s->subs.v[i].desc),
            free(s->subs.v[i].data);
    free(s->comps.v), free(s->cfiles.v), free(s->uploads.v), free(s->subs.v);
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
    if (!find_comp(s, comp, 1) || !c || !c->comp || !c->name || ts_put_file(s, path, data, len))
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
            ts_copy_str(s->subs.v[i].pub, sizeof s->subs.v[i].pub, public_score);
            ts_copy_str(s->subs.v[i].priv, sizeof s->subs.v[i].priv, private_score);
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
                ts_copy_str(desc, desclen, s->subs.v[i].desc);
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

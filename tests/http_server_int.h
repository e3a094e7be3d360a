/* http_server_int.h - what http_server.c (the server, the file host, the
 * faults, the request cycle) and http_server_kaggle.c (Kaggle's JSON methods,
 * resumable uploads, submissions) share.  Private to these two files; the
 * tests use http_server.h.
 *
 * The server's state sits behind s->lock: every function here that takes a
 * ts_server expects the lock held by its caller.  A ts_reply owns its body.
 */
#ifndef KP_TEST_HTTP_SERVER_INT_H
#define KP_TEST_HTTP_SERVER_INT_H

#include <jansson.h>
#include <microhttpd.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "http_server.h"

#define API_PREFIX "/v1/competitions.CompetitionApiService/"
#define UPLOAD_PREFIX "/upload/"
#define MAX_HDRS 6                 /* headers of one reply at most */

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

/* Pushes a zeroed item on a TS_VEC; returns it, or NULL when out of memory. */
#define VEC_PUSH(vec) (ts_vec_grow(&(vec).v, (vec).n, &(vec).cap, sizeof *(vec).v) == 0 \
                       ? memset(&(vec).v[(vec).n++], 0, sizeof *(vec).v) : NULL)

/* Makes room for one more item of size sz in *vp (count n, capacity *cap; reallocated); 0 or -1. */
int ts_vec_grow(void *vp, int n, int *cap, size_t sz);

/* Copies src (NULL = "") into dst of size n, truncating. */
void ts_copy_str(char *dst, size_t n, const char *src);

/* Adds a header "name: printf(fmt, ...)" to the reply (dropped past MAX_HDRS). */
void ts_add_hdr(ts_reply *r, const char *name, const char *fmt, ...);

/* Sets a JSON reply from j (consumed; NULL answers "{}"). */
void ts_set_json(ts_reply *r, int status, json_t *j);

/* Sets Kaggle's error reply {"code":status,"message":msg} (msg copied). */
void ts_set_error(ts_reply *r, int status, const char *msg);

/* Sets a plain-text reply (text copied). */
void ts_set_text(ts_reply *r, int status, const char *text);

/* Serves a copy of len bytes of data at path (replacing what was there); 0 or -1. */
int ts_put_file(ts_server *s, const char *path, const void *data, size_t len);

/* Serves POST API_PREFIX METHOD: Kaggle's JSON methods (http_server_kaggle.c). */
void ts_serve_api(ts_server *s, const ts_in *in, ts_reply *r);

/* Serves PUT UPLOAD_PREFIX N (a resumable upload); a cut fault f keeps a prefix and is used up. */
void ts_serve_upload(ts_server *s, const ts_in *in, ts_fault *f, ts_reply *r);

/* Frees the Kaggle state (competitions, files, uploads, submissions); ts_stop calls it last. */
void ts_kaggle_free(ts_server *s);

#endif

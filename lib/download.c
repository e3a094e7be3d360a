/* download.c - several files at once over curl's multi interface.
 *
 * Each file is a small state machine: WAIT (for a slot, or until its retry
 * time), ACTIVE (a transfer appending to "<dest>.part"), DONE (renamed into
 * place, skipped, or failed).  One loop starts what is ready, drives curl,
 * reaps finished transfers and sleeps in curl_multi_poll no longer than the
 * next retry time, so a file waiting out its backoff never holds up others.
 *
 * A resumed request asks "Range: bytes=K-" with CURLOPT_RANGE rather than
 * CURLOPT_RESUME_FROM_LARGE: with the latter libcurl itself fails a 200
 * answer (CURLE_RANGE_ERROR) and swallows a 416, where we want to restart
 * the file from zero in both cases. */
#include "download.h"
#include "afile.h"
#include "err.h"
#include "sha256.h"

#include <curl/curl.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DL_URL_MAX 512
#define DL_EBODY_MAX 65536         /* the part of an error body kept for its message */
#define DL_PROGRESS_MS 250.0

enum dl_state { DL_WAIT, DL_ACTIVE, DL_DONE };

typedef struct dl_run dl_run;

/* One file's transfer state. */
typedef struct dl_xfer {
    dl_run *run;
    kp_dl_file *f;
    char *part;                /* "<dest>.part" (owned) */
    char url[DL_URL_MAX];      /* redacted, for messages */
    int state;
    double next_at;            /* a waiting file starts no sooner (monotonic ms) */
    CURL *c;
    struct curl_slist *hdrs;
    int fd;                    /* the .part while active, else -1 */
    int64_t start;             /* bytes of .part when the response began (the Range asked) */
    int64_t got;               /* bytes written by this response */
    int64_t have;              /* bytes of .part after the last transfer (progress) */
    int64_t resumed_at;        /* the offset a Range request continued from, -1 if none */
    int64_t cr_start;          /* a 206's Content-Range start, -1 if none */
    long code;                 /* the response's HTTP status (0: not HTTP) */
    int first_seen;            /* the response's first body bytes were seen */
    int bad_range;             /* a 206 for another range than asked */
    int restarts;              /* restarts from zero after a 416 or a wrong range */
    int retries;               /* transient retries so far */
    int werr;                  /* errno of a failed write, 0 if none */
    kp_buf ebody;              /* a non-2xx response's body */
    kp_sha256 *digest;         /* of the .part's bytes so far (owned; NULL before the body) */
    int64_t hashed;            /* bytes fed to digest */
    char cerr[CURL_ERROR_SIZE];
    char msg[KP_ERRLEN];       /* this file's failure */
} dl_xfer;

struct dl_run {
    kp_http *h;
    const kp_http_opts *ho;
    const kp_dl_opts *o;
    CURLM *multi;
    dl_xfer *x;
    int n, active, left, parallel;
    double t0, last_progress;
    int64_t fetched;           /* bytes received by this run (the rate) */
};

/* Returns a monotonic clock in milliseconds. */
static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Writes a line to the log, when there is one. */
__attribute__((format(printf, 2, 3)))
static void dl_log(const dl_run *r, const char *fmt, ...)
{
    if (!r->o->log)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(r->o->log, fmt, ap);
    va_end(ap);
    fputc('\n', r->o->log);
    fflush(r->o->log);
}

/* ---- the end of a file: failure or success ---- */

/* Closes the .part's descriptor if open. */
static void close_part(dl_xfer *x)
{
    if (x->fd >= 0)
        close(x->fd);
    x->fd = -1;
}

/* Marks x DONE. */
static void set_done(dl_xfer *x)
{
    x->state = DL_DONE;
    x->run->left--;
}

/* Fails x with status rc and a formatted message (logged); an empty .part is removed. */
__attribute__((format(printf, 3, 4)))
static void dl_fail(dl_xfer *x, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->msg, sizeof x->msg, fmt, ap);
    va_end(ap);
    struct stat sb;
    if (x->fd >= 0 && fstat(x->fd, &sb) == 0 && sb.st_size == 0)
        unlink(x->part);
    close_part(x);
    x->f->status = rc;
    set_done(x);
    dl_log(x->run, "failed %s", x->msg);
}

/* fsyncs the folder holding path; 0 or -1 (errno set). */
static int sync_dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    int fd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    int rc = fd >= 0 && fsync(fd) == 0 ? 0 : -1;
    int e = errno;
    if (fd >= 0)
        close(fd);
    free(dir);
    errno = e;
    return rc;
}

/* Checks the whole .part's size and sha256; 0, or x failed (the .part removed). */
static int check_part(dl_xfer *x, int64_t bytes)
{
    kp_dl_file *f = x->f;
    char hex[KP_SHA256_HEXLEN], e[KP_ERRLEN];
    if (f->size >= 0 && bytes != f->size) {
        unlink(x->part);
        dl_fail(x, KP_ERR_MISMATCH, "%s: expected %lld bytes, got %lld; the file was not kept",
                x->url, (long long)f->size, (long long)bytes);
        return -1;
    }
    int rc = 0;
    if (x->digest && x->hashed == bytes)
        kp_sha256_hex(x->digest, hex);   /* the bytes as they arrived */
    else
        rc = kp_sha256_file(x->part, hex, e, sizeof e);
    kp_sha256_free(x->digest);
    x->digest = NULL;
    if (rc < 0) {
        dl_fail(x, rc, "%s: %s", x->url, e);
        return -1;
    }
    memcpy(f->sha256_hex, hex, KP_SHA256_HEXLEN);
    if (f->sha256 && !kp_sha256_eq(hex, f->sha256)) {
        f->sha256_hex[0] = 0;
        unlink(x->part);
        dl_fail(x, KP_ERR_MISMATCH, "%s: sha256 mismatch: expected %s, got %s; the file was "
                "not kept", x->url, f->sha256, hex);
        return -1;
    }
    return 0;
}

/* A finished transfer: checks, fsyncs and renames the .part into place. */
static void dl_complete(dl_xfer *x)
{
    kp_dl_file *f = x->f;
    struct stat sb;
    if (fstat(x->fd, &sb) != 0) {
        dl_fail(x, KP_ERR_IO, "%s: cannot stat: %s", x->part, strerror(errno));
        return;
    }
    if (check_part(x, (int64_t)sb.st_size) < 0)
        return;
    if (fsync(x->fd) != 0 || rename(x->part, f->dest) != 0 || sync_dir_of(f->dest) != 0) {
        dl_fail(x, KP_ERR_IO, "%s: cannot put in place: %s", f->dest, strerror(errno));
        return;
    }
    close_part(x);
    f->bytes = x->have = (int64_t)sb.st_size;
    f->resumed = x->resumed_at >= 0;
    set_done(x);
    if (f->resumed)
        dl_log(x->run, "fetched %s -> %s (%lld bytes, resumed at %lld)", x->url, f->dest,
               (long long)f->bytes, (long long)x->resumed_at);
    else
        dl_log(x->run, "fetched %s -> %s (%lld bytes)", x->url, f->dest, (long long)f->bytes);
}

/* ---- callbacks ---- */

/* Empties the .part: the response starts the file from byte 0; 0 or -1 (errno). */
static int restart_zero(dl_xfer *x)
{
    if (x->fd >= 0 && ftruncate(x->fd, 0) != 0)
        return -1;
    x->start = 0;
    x->resumed_at = -1;
    return 0;
}

/* kp_read_chunks' callback: feeds the .part's prefix to a digest. */
static void digest_add(void *d, const void *p, size_t n)
{
    kp_sha256_add(d, p, n);
}

/* Starts x's digest over the .part's x->start bytes already there; 0 or -1. */
static int digest_begin(dl_xfer *x)
{
    char e[KP_ERRLEN];
    kp_sha256_free(x->digest);
    x->hashed = 0;
    if (!(x->digest = kp_sha256_create()))
        return -1;
    if (x->start > 0 && kp_read_chunks(x->part, digest_add, x->digest, e, sizeof e) < 0) {
        kp_sha256_free(x->digest);   /* the check hashes the whole file instead */
        x->digest = NULL;
        return 0;
    }
    x->hashed = x->start;
    return 0;
}

/* The first body bytes of a 2xx response: where they go in the .part; 0 or -1 to abort. */
static int first_write(dl_xfer *x)
{
    x->first_seen = 1;
    if (x->code != 0 && x->code != 206 && x->start > 0) {   /* the Range was ignored */
        if (restart_zero(x) < 0) {
            x->werr = errno;
            return -1;
        }
        return digest_begin(x);
    }
    if (x->code == 206 && x->cr_start != x->start) {
        x->bad_range = 1;
        return -1;
    }
    if (x->start > 0 && x->resumed_at < 0)
        x->resumed_at = x->start;
    return digest_begin(x);
}

/* CURLOPT_WRITEFUNCTION: a 2xx body appends to the .part; another keeps its message. */
static size_t dl_on_write(char *p, size_t size, size_t nmemb, void *arg)
{
    dl_xfer *x = arg;
    size_t n = size * nmemb;
    if (x->code != 0 && (x->code < 200 || x->code > 299)) {
        int full = kp_buf_add(&x->ebody, p, n) < 0;   /* past the cap: the start is enough */
        (void)full;
        return n;
    }
    if (!x->first_seen && first_write(x) < 0)
        return 0;
    if (kp_write_all(x->fd, p, n) < 0) {
        x->werr = errno ? errno : EIO;
        return 0;
    }
    if (x->digest) {
        kp_sha256_add(x->digest, p, n);
        x->hashed += (int64_t)n;
    }
    x->got += (int64_t)n;
    x->run->fetched += (int64_t)n;
    return n;
}

/* Copies a header line (not NUL-terminated) into buf as a C string. */
static void header_copy(const char *p, size_t n, char *buf, size_t buflen)
{
    if (n >= buflen)
        n = buflen - 1;
    memcpy(buf, p, n);
    buf[n] = 0;
}

/* CURLOPT_HEADERFUNCTION: each response's status and Content-Range. */
static size_t dl_on_header(char *p, size_t size, size_t nmemb, void *arg)
{
    dl_xfer *x = arg;
    size_t n = size * nmemb;
    char line[128];
    if (n > 5 && memcmp(p, "HTTP/", 5) == 0) {   /* a new response (redirects, 100) */
        header_copy(p, n, line, sizeof line);
        const char *sp = strchr(line, ' ');
        x->code = sp ? strtol(sp + 1, NULL, 10) : 0;
        x->first_seen = 0;
        x->cr_start = -1;
        kp_buf_reset(&x->ebody);
    } else if (n > 14 && strncasecmp(p, "Content-Range:", 14) == 0) {
        long long a;
        header_copy(p + 14, n - 14, line, sizeof line);
        x->cr_start = sscanf(line, " bytes %lld-", &a) == 1 ? a : -1;
    }
    return n;
}

/* ---- starting and reaping transfers ---- */

/* Sets the options of x's easy handle; 0 or a negative status (message in x->msg). */
static int setup_xfer(dl_xfer *x)
{
    dl_run *r = x->run;
    char range[32];
    void *hdrs = NULL;
    int rc = kp_http_setup_easy(r->h, x->c, x->msg, sizeof x->msg);
    if (rc == 0 && (rc = kp_http_headers(r->h, x->f->auth, NULL, 0, &hdrs)) < 0)
        kp_errf(x->msg, sizeof x->msg, rc, "%s: request headers: out of memory", x->url);
    x->hdrs = hdrs;
    snprintf(range, sizeof range, "%lld-", (long long)x->start);
    CURLcode cc = CURLE_OK;
#define SETOPT(opt, val) \
    do { if (cc == CURLE_OK) cc = curl_easy_setopt(x->c, opt, val); } while (0)
    SETOPT(CURLOPT_URL, x->f->url);
    SETOPT(CURLOPT_HTTPHEADER, x->hdrs);
    SETOPT(CURLOPT_FOLLOWLOCATION, 1L);
    SETOPT(CURLOPT_ERRORBUFFER, x->cerr);
    SETOPT(CURLOPT_WRITEFUNCTION, dl_on_write);
    SETOPT(CURLOPT_WRITEDATA, x);
    SETOPT(CURLOPT_HEADERFUNCTION, dl_on_header);
    SETOPT(CURLOPT_HEADERDATA, x);
    SETOPT(CURLOPT_PRIVATE, x);
    SETOPT(CURLOPT_RANGE, x->start > 0 ? range : NULL);
    SETOPT(CURLOPT_BUFFERSIZE, 512L * 1024);   /* fewer, larger writes and digest calls */
#undef SETOPT
    if (rc == 0 && cc != CURLE_OK)
        rc = kp_errf(x->msg, sizeof x->msg, KP_ERR_ARG, "%s: %s", x->url, curl_easy_strerror(cc));
    return rc;
}

/* Opens the .part for appending and notes its size as the Range to ask; 0 or KP_ERR_IO. */
static int open_part(dl_xfer *x)
{
    struct stat sb;
    x->fd = open(x->part, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
    if (x->fd < 0 || fstat(x->fd, &sb) != 0)
        return kp_errf(x->msg, sizeof x->msg, KP_ERR_IO, "%s: cannot open: %s", x->part,
                       strerror(errno));
    x->start = (int64_t)sb.st_size;
    if (x->f->size >= 0 && x->start > x->f->size && restart_zero(x) < 0)
        return kp_errf(x->msg, sizeof x->msg, KP_ERR_IO, "%s: cannot truncate: %s", x->part,
                       strerror(errno));
    x->have = x->start;
    return 0;
}

/* Starts one request for x (state ACTIVE); a local failure fails the file. */
static void dl_start(dl_xfer *x)
{
    dl_run *r = x->run;
    x->got = 0;
    x->code = 0;
    x->first_seen = x->bad_range = x->werr = 0;
    x->cr_start = -1;
    x->cerr[0] = 0;
    kp_buf_reset(&x->ebody);
    int rc = open_part(x);
    if (rc == 0 && !(x->c = curl_easy_init()))
        rc = kp_errf(x->msg, sizeof x->msg, KP_ERR_NOMEM, "%s: cannot make a curl handle",
                     x->url);
    if (rc == 0)
        rc = setup_xfer(x);
    if (rc == 0 && curl_multi_add_handle(r->multi, x->c) != CURLM_OK)
        rc = kp_errf(x->msg, sizeof x->msg, KP_ERR_IO, "%s: cannot start the transfer", x->url);
    if (rc < 0) {
        curl_easy_cleanup(x->c);
        curl_slist_free_all(x->hdrs);
        x->c = NULL;
        x->hdrs = NULL;
        char m[KP_ERRLEN];
        memcpy(m, x->msg, sizeof m);
        dl_fail(x, rc, "%s", m);
        return;
    }
    x->f->attempts++;
    x->state = DL_ACTIVE;
    r->active++;
}

/* Detaches x's finished easy handle from the multi and frees it. */
static void dl_release(dl_xfer *x)
{
    curl_multi_remove_handle(x->run->multi, x->c);
    curl_easy_cleanup(x->c);
    curl_slist_free_all(x->hdrs);
    x->c = NULL;
    x->hdrs = NULL;
    x->run->active--;
}

/* Writes why the last transfer of x failed into why (curl's text, redacted, or the status). */
static void dl_reason(dl_xfer *x, CURLcode res, char *why, size_t n)
{
    if (res == CURLE_OK)
        snprintf(why, n, "HTTP %ld", x->code);
    else if (x->cerr[0])
        kp_http_text_redact(x->run->h, x->cerr, why, n);
    else
        snprintf(why, n, "%s", curl_easy_strerror(res));
}

/* Schedules x's next attempt after the backoff (a 429/503's Retry-After honoured). */
static void dl_retry(dl_xfer *x, CURLcode res, long retry_after)
{
    dl_run *r = x->run;
    char why[CURL_ERROR_SIZE + 32];
    dl_reason(x, res, why, sizeof why);
    x->retries++;
    long ra = res == CURLE_OK && (x->code == 429 || x->code == 503) ? retry_after : -1;
    long ms = kp_http_backoff_ms(r->ho, x->retries, ra);
    close_part(x);
    x->state = DL_WAIT;
    x->next_at = now_ms() + (double)ms;
    dl_log(r, "retrying %s in %.1fs: %s (attempt %d/%d)", x->url, (double)ms / 1000.0, why,
           x->retries + 1, r->ho->max_retries + 1);
}

/* Fails x for its last response (a 4xx, or retries spent) or transport error. */
static void dl_fail_transfer(dl_xfer *x, CURLcode res, int transient)
{
    char m[KP_ERRLEN], tail[48] = "";
    int rc = KP_ERR_IO;
    if (transient && x->retries > 0)
        snprintf(tail, sizeof tail, " (after %d attempts)", x->retries + 1);
    if (res == CURLE_OK) {
        kp_http_resp resp = {.status = x->code, .body = x->ebody, .retry_after_s = -1};
        rc = kp_http_status_error(x->f->url, &resp, m, sizeof m);
    } else {
        char why[CURL_ERROR_SIZE + 32];
        dl_reason(x, res, why, sizeof why);
        snprintf(m, sizeof m, "%s: %s", x->url, why);
    }
    dl_fail(x, rc, "%s%s", m, tail);
}

/* Starts x again from byte 0 at once (after a 416 or a 206 for the wrong range). */
static void dl_restart(dl_xfer *x)
{
    if (restart_zero(x) < 0) {
        dl_fail(x, KP_ERR_IO, "%s: cannot truncate: %s", x->part, strerror(errno));
        return;
    }
    x->restarts++;
    x->have = 0;
    close_part(x);
    x->state = DL_WAIT;
    x->next_at = now_ms();
}

/* Decides what follows a finished transfer: done, restart, retry or failure. */
static void dl_finish(dl_xfer *x, CURLcode res)
{
    curl_off_t ra = 0;
    if (curl_easy_getinfo(x->c, CURLINFO_RETRY_AFTER, &ra) != CURLE_OK || ra <= 0)
        ra = -1;
    dl_release(x);
    x->have = x->start + x->got;
    int range_refused = (res == CURLE_OK && x->code == 416) || res == CURLE_BAD_DOWNLOAD_RESUME;
    if (x->werr) {
        dl_fail(x, KP_ERR_IO, "%s: cannot write: %s", x->part, strerror(x->werr));
    } else if ((x->bad_range || range_refused) && x->start > 0 && x->restarts == 0) {
        dl_restart(x);
    } else if (x->bad_range) {
        dl_fail(x, KP_ERR_IO, "%s: the server answered another range than bytes=%lld-",
                x->url, (long long)x->start);
    } else if (res == CURLE_OK && (x->code == 0 || (x->code >= 200 && x->code <= 299))) {
        int whole = x->code != 0 && x->code != 206 && x->start > 0;   /* and had no body */
        if (whole && restart_zero(x) < 0)
            dl_fail(x, KP_ERR_IO, "%s: cannot truncate: %s", x->part, strerror(errno));
        else
            dl_complete(x);
    } else {
        int transient = res != CURLE_OK ? kp_http_curl_transient(res)
                                        : kp_http_status_transient(x->code);
        if (transient && x->retries < x->run->ho->max_retries)
            dl_retry(x, res, (long)ra);
        else
            dl_fail_transfer(x, res, transient);
    }
}

/* Reaps every finished transfer. */
static void dl_reap(dl_run *r)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(r->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        dl_xfer *x = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        dl_finish(x, m->data.result);
    }
}

/* Starts the waiting files whose time has come, in order, while slots are free. */
static void dl_start_ready(dl_run *r)
{
    double now = now_ms();
    for (int i = 0; i < r->n && r->active < r->parallel; i++)
        if (r->x[i].state == DL_WAIT && r->x[i].next_at <= now)
            dl_start(&r->x[i]);
}

/* Returns how long the loop may sleep: until the next retry time (when a slot is free). */
static int dl_wait_ms(const dl_run *r)
{
    double ms = r->o->progress ? DL_PROGRESS_MS : 1000.0, now = now_ms();
    for (int i = 0; i < r->n && r->active < r->parallel; i++)
        if (r->x[i].state == DL_WAIT && r->x[i].next_at - now < ms)
            ms = r->x[i].next_at - now;
    return ms < 0 ? 0 : (int)ms + 1;
}

/* ---- progress ---- */

/* Returns the expected size of x's file, or -1 while unknown. */
static int64_t dl_total_of(const dl_xfer *x)
{
    curl_off_t cl = -1;
    if (x->f->size >= 0)
        return x->f->size;
    if (x->state == DL_DONE)
        return x->have;
    if (x->state != DL_ACTIVE || !x->first_seen ||
        curl_easy_getinfo(x->c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) != CURLE_OK || cl < 0)
        return -1;
    return x->start + (int64_t)cl;
}

/* Reports progress to the callback: at most every 250 ms, and at the end (total = done). */
static void dl_progress(dl_run *r, int final)
{
    double now = now_ms();
    if (!r->o->progress || (!final && now - r->last_progress < DL_PROGRESS_MS))
        return;
    r->last_progress = now;
    int64_t done = 0, total = 0;
    for (int i = 0; i < r->n; i++) {
        const dl_xfer *x = &r->x[i];
        int64_t t = dl_total_of(x);
        done += x->state == DL_ACTIVE ? x->start + x->got : x->have;
        total = total < 0 || t < 0 ? -1 : total + t;
    }
    if (!final && total >= 0 && done >= total)
        return;   /* only the last call says "all done" */
    double secs = (now - r->t0) / 1e3;
    r->o->progress(r->o->progress_arg, done, final ? done : total,
                   secs > 0 ? (double)r->fetched / secs : 0.0);
}

/* ---- setup ---- */

/* Compares two files by dest (for the duplicate check). */
static int cmp_dest(const void *a, const void *b)
{
    return strcmp((*(kp_dl_file *const *)a)->dest, (*(kp_dl_file *const *)b)->dest);
}

/* Checks the file list: URLs, dests, digests, no dest twice; 0 or KP_ERR_ARG. */
static int check_files(kp_dl_file *files, int n, char *err, size_t errlen)
{
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        if (!files[i].url || !*files[i].url || !files[i].dest || !*files[i].dest)
            rc = kp_errf(err, errlen, KP_ERR_ARG, "download %d: a URL and a destination are "
                         "needed", i + 1);
        else if (files[i].sha256 && !kp_sha256_valid(files[i].sha256))
            rc = kp_errf(err, errlen, KP_ERR_ARG, "%s: the declared sha256 '%s' is not 64 hex "
                         "digits", files[i].dest, files[i].sha256);
    }
    kp_dl_file **s = rc == 0 ? malloc((size_t)n * sizeof *s) : NULL;
    if (rc == 0 && !s)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "download: out of memory");
    for (int i = 0; s && i < n; i++)
        s[i] = &files[i];
    if (s)
        qsort(s, (size_t)n, sizeof *s, cmp_dest);
    for (int i = 1; s && i < n && rc == 0; i++)
        if (strcmp(s[i - 1]->dest, s[i]->dest) == 0)
            rc = kp_errf(err, errlen, KP_ERR_ARG, "%s: two downloads share this destination",
                         s[i]->dest);
    free(s);
    return rc;
}

/* Returns 1 when f's dest is there with the declared sha256 (or size); its size in *bytes. */
static int dest_matches(const dl_run *r, kp_dl_file *f, int64_t *bytes)
{
    struct stat sb;
    char hex[KP_SHA256_HEXLEN], e[KP_ERRLEN];
    if (stat(f->dest, &sb) != 0 || !S_ISREG(sb.st_mode))
        return 0;
    *bytes = (int64_t)sb.st_size;
    if (f->size >= 0 && (int64_t)sb.st_size != f->size)
        return 0;
    if (f->sha256) {
        if (kp_sha256_file(f->dest, hex, e, sizeof e) < 0 || !kp_sha256_eq(hex, f->sha256))
            return 0;
        memcpy(f->sha256_hex, hex, KP_SHA256_HEXLEN);
        dl_log(r, "skipped %s (sha256 matches)", f->dest);
        return 1;
    }
    if (f->size < 0)
        return 0;   /* nothing declared to check it against: fetched again */
    dl_log(r, "skipped %s (size matches)", f->dest);
    return 1;
}

/* Returns a heap copy of path's folder ("." when it has no slash). */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    return strndup(path, slash == path ? 1 : (size_t)(slash - path));
}

/* Prepares x for file f: out fields, ".part" name, folder; DONE already if dest matches. */
static int dl_prepare(dl_run *r, dl_xfer *x, kp_dl_file *f, char *err, size_t errlen)
{
    *x = (dl_xfer){.run = r, .f = f, .fd = -1, .resumed_at = -1, .cr_start = -1};
    kp_buf_init(&x->ebody, DL_EBODY_MAX);
    f->bytes = 0;
    f->skipped = f->resumed = f->attempts = f->status = 0;
    f->sha256_hex[0] = 0;
    kp_http_url_redact(f->url, x->url, sizeof x->url);
    char *dir = dir_of(f->dest);
    if (!dir || asprintf(&x->part, "%s.part", f->dest) < 0) {
        x->part = NULL;
        free(dir);
        return kp_errf(err, errlen, KP_ERR_NOMEM, "download: out of memory");
    }
    int rc = kp_mkdirs(dir, err, errlen);
    free(dir);
    if (rc < 0)
        return rc;
    if (dest_matches(r, f, &x->have)) {
        f->skipped = 1;
        f->bytes = x->have;
        x->state = DL_DONE;
        return 0;
    }
    x->state = DL_WAIT;
    r->left++;
    return 0;
}

/* Frees everything the run holds (transfers still active are cut). */
static void dl_cleanup(dl_run *r)
{
    for (int i = 0; r->x && i < r->n; i++) {
        dl_xfer *x = &r->x[i];
        if (x->c) {
            curl_multi_remove_handle(r->multi, x->c);
            curl_easy_cleanup(x->c);
        }
        curl_slist_free_all(x->hdrs);
        close_part(x);
        free(x->part);
        kp_buf_free(&x->ebody);
        kp_sha256_free(x->digest);
    }
    free(r->x);
    if (r->multi)
        curl_multi_cleanup(r->multi);
}

/* Drives the transfers until every file is DONE; 0 or KP_ERR_IO (curl's multi failed). */
static int dl_loop(dl_run *r, char *err, size_t errlen)
{
    while (r->left > 0) {
        int running = 0;
        dl_start_ready(r);
        CURLMcode mc = curl_multi_perform(r->multi, &running);
        if (mc == CURLM_OK)
            dl_reap(r);
        if (mc == CURLM_OK && r->left > 0)
            mc = curl_multi_poll(r->multi, NULL, 0, dl_wait_ms(r), NULL);
        if (mc != CURLM_OK)
            return kp_errf(err, errlen, KP_ERR_IO, "download: %s", curl_multi_strerror(mc));
        dl_progress(r, 0);
    }
    return 0;
}

/* Returns the status of the first file that failed (its message in err), or 0. */
static int first_failure(const dl_run *r, char *err, size_t errlen)
{
    for (int i = 0; i < r->n; i++)
        if (r->x[i].f->status < 0)
            return kp_errf(err, errlen, r->x[i].f->status, "%s", r->x[i].msg);
    return 0;
}

int kp_download(kp_http *h, kp_dl_file *files, int n, const kp_dl_opts *o, char *err,
                size_t errlen)
{
    kp_dl_opts d = {0};
    dl_run r = {.h = h, .ho = kp_http_options(h), .o = o ? o : &d, .n = n};
    r.parallel = r.o->parallel > 0 ? r.o->parallel : 4;
    r.t0 = now_ms();
    int rc = n < 0 ? kp_errf(err, errlen, KP_ERR_ARG, "download: %d files", n)
                   : check_files(files, n, err, errlen);
    if (rc < 0 || n == 0)
        return rc;
    r.x = calloc((size_t)n, sizeof *r.x);
    if (!r.x || !(r.multi = curl_multi_init())) {
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "download: out of memory");
        goto fail;
    }
    for (int i = 0; i < n; i++)
        r.x[i].fd = -1;
    for (int i = 0; i < n && rc == 0; i++)
        rc = dl_prepare(&r, &r.x[i], &files[i], err, errlen);
    if (rc == 0 && (rc = dl_loop(&r, err, errlen)) == 0)
        rc = first_failure(&r, err, errlen);
    dl_progress(&r, 1);
fail:
    dl_cleanup(&r);
    return rc;
}

/* ---- the progress printer ---- */

/* Formats a byte count as "12.3 MiB". */
static void fmt_bytes(double b, char *out, size_t n)
{
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024 && u < 4)
        b /= 1024, u++;
    snprintf(out, n, u ? "%.1f %s" : "%.0f %s", b, unit[u]);
}

/* Formats seconds as "10s", "3m05s" or "2h07m". */
static void fmt_secs(double s, char *out, size_t n)
{
    long t = s < 0 ? 0 : (long)(s + 0.5);
    if (t < 60)
        snprintf(out, n, "%lds", t);
    else if (t < 3600)
        snprintf(out, n, "%ldm%02lds", t / 60, t % 60);
    else
        snprintf(out, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
}

/* Formats one progress line into out. */
static void progress_line(int64_t done, int64_t total, double rate, double elapsed, char *out,
                          size_t n)
{
    char a[32], b[32], c[32], t[32];
    fmt_bytes((double)done, a, sizeof a);
    fmt_bytes(total < 0 ? 0 : (double)total, b, sizeof b);
    fmt_bytes(rate, c, sizeof c);
    if (total < 0) {
        snprintf(out, n, "%s  %s/s", a, c);
    } else if (done >= total) {
        fmt_secs(elapsed, t, sizeof t);
        snprintf(out, n, "%s / %s  %s/s  done in %s", a, b, c, t);
    } else {
        if (rate > 0)
            fmt_secs((double)(total - done) / rate, t, sizeof t);
        snprintf(out, n, "%s / %s  %s/s  ETA %s", a, b, c, rate > 0 ? t : "--");
    }
}

void kp_dl_print_progress(void *printer, int64_t done, int64_t total, double rate)
{
    kp_dl_printer *p = printer;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    int end = total >= 0 && done >= total;
    if (p->start == 0)
        p->start = p->last = now;
    if (!p->out || (!p->tty && !end && now - p->last < 10.0))
        return;
    char line[160];
    progress_line(done, total, rate, now - p->start, line, sizeof line);
    if (p->tty)
        fprintf(p->out, "\r%-56s%s", line, end ? "\n" : "");
    else
        fprintf(p->out, "%s\n", line);
    fflush(p->out);
    p->last = now;
}

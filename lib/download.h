/* download.h - several files at once over the curl multi interface,
 * resumable, retried, checked, and renamed into place only when whole.
 *
 * Each file is written to "<dest>.part" and, once complete and checked
 * (size, sha256), fsynced and renamed to dest (the folder fsynced too); a
 * dest that already exists with the declared sha256 (or, without one, the
 * declared size) is not fetched again.  A ".part" left by an interrupted
 * run resumes with a Range request (a server that answers 200 instead of
 * 206 restarts it from zero; a 416 restarts it too).  Transient failures
 * (kp_http policy: connection errors, cut or stalled transfers, 5xx, 429
 * with Retry-After) are retried with the session's backoff, resuming where
 * the bytes stopped.  A checksum or size mismatch deletes the ".part" and is
 * an error naming the URL, both digests and "the file was not kept".  A 4xx
 * is an error naming the URL (query redacted) and the status.  The sha256
 * is computed as the bytes arrive (a resumed .part's prefix first), so a
 * fresh download is read once.  All files
 * are attempted; the first error is reported and the others are logged.
 */
#ifndef KP_DOWNLOAD_H
#define KP_DOWNLOAD_H

#include <stdint.h>
#include <stdio.h>
#include "http.h"

typedef struct kp_dl_file {
    const char *url;           /* borrowed */
    const char *dest;          /* final path (its folder is created); borrowed */
    const char *sha256;        /* 64 hex digits, or NULL */
    int64_t size;              /* expected bytes, or -1 */
    int auth;                  /* send the session's auth header */
    /* filled in by kp_download: */
    int64_t bytes;             /* bytes of the final file */
    int skipped;               /* dest was already there and matched */
    int resumed;               /* a Range request continued a ".part" */
    int attempts;              /* requests made */
    int status;                /* 0 or this file's negative kp_status */
    char sha256_hex[65];       /* the file's sha256 when fetched or skipped by checksum, else "" */
} kp_dl_file;

/* Called at most a few times a second and once at the end: bytes so far
 * over all files, the total (-1 while any size is unknown), bytes/s.
 * The last call, and only it, has total == done. */
typedef void (*kp_dl_progress_fn)(void *arg, int64_t done, int64_t total, double rate);

typedef struct kp_dl_opts {
    int parallel;              /* transfers at once (default 4 when <= 0) */
    kp_dl_progress_fn progress;/* NULL = none */
    void *progress_arg;
    FILE *log;                 /* one line per file fetched, skipped, retried or failed; NULL = quiet */
} kp_dl_opts;

/* Downloads files[0..n) (see above); 0 when every file is in place, else
 * the first failure's status with its message in err. */
int kp_download(kp_http *h, kp_dl_file *files, int n, const kp_dl_opts *o, char *err,
                size_t errlen);

/* A progress printer for kp_dl_opts.progress: on a terminal a line redrawn
 * with \r ("12.3 MiB / 45.6 MiB  3.2 MiB/s  ETA 10s"), otherwise a plain
 * line every 10 seconds and at the end. */
typedef struct kp_dl_printer {
    FILE *out;                 /* borrowed */
    int tty;
    double last;               /* internal: when the last line was printed */
    double start;
} kp_dl_printer;
void kp_dl_print_progress(void *printer, int64_t done, int64_t total, double rate);

#endif

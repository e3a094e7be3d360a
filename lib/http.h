/* http.h - HTTP requests over libcurl, with kpipe's retry policy and
 * secret-safe logging.
 *
 * One kp_http holds what every request of a session shares: the auth header
 * (a secret: it is sent, never printed; a redirect to another host drops it,
 * as libcurl does), the user agent, the retry policy and the verbose sink.
 * Proxies come from libcurl's own environment variables (http_proxy,
 * https_proxy, no_proxy, ALL_PROXY); CA certificates from CURL_CA_BUNDLE or
 * SSL_CERT_FILE (a file) and SSL_CERT_DIR (a folder) when set.
 *
 * Transient failures (connection refused/reset, a cut or stalled transfer,
 * HTTP 5xx, 429) are retried with exponential backoff (backoff_ms, doubled
 * each time, capped at max_backoff_ms; a 429/503 Retry-After of seconds is
 * honoured, capped the same) at most max_retries times.  Messages never
 * contain the auth header or a URL's query string (signed URLs carry
 * credentials there): see kp_http_url_redact.
 */
#ifndef KP_HTTP_H
#define KP_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "buf.h"

typedef struct kp_http kp_http;

typedef struct kp_http_opts {
    const char *auth_header;   /* "Authorization: Bearer T" or "...: Basic B64"; NULL = none; copied */
    const char *user_agent;    /* NULL = "kpipe/VERSION" */
    int max_retries;           /* retries after the first attempt (default 5) */
    long backoff_ms;           /* delay before the first retry (default 1000) */
    long max_backoff_ms;       /* cap of any delay, Retry-After included (default 60000) */
    long connect_timeout_s;    /* default 30 */
    long stall_timeout_s;      /* a transfer under 1 byte/s this long is cut, then retried (default 60) */
    FILE *verbose;             /* request and response headers, auth redacted; NULL = quiet; borrowed */
} kp_http_opts;

typedef struct kp_http_req {
    const char *method;        /* "GET", "POST" or "PUT" */
    const char *url;
    const char *content_type;  /* NULL = no Content-Type header */
    const void *body;          /* in-memory body (POST/PUT), body_len bytes; borrowed */
    size_t body_len;
    const char *body_file;     /* or: PUT bytes [body_offset, body_offset + body_file_len) of a file */
    int64_t body_offset, body_file_len;
    const char *const *headers;/* extra "Name: value" lines, not secret; borrowed */
    int n_headers;
    int auth;                  /* send the session's auth header */
    int follow;                /* follow redirects (GET after a 301/302/303 POST) */
    int retry;                 /* retry transient failures (only for requests safe to repeat) */
} kp_http_req;

typedef struct kp_http_resp {
    long status;               /* the final HTTP status */
    kp_buf body;               /* the response body (at most 64 MiB) */
    char *location;            /* the Location header, when not followed (owned; NULL if none) */
    char *range;               /* the Range header (a resumable upload's 308) (owned; NULL if none) */
    long retry_after_s;        /* the Retry-After header in seconds, -1 if none */
} kp_http_resp;

/* Fills o with the defaults above; $KPIPE_RETRY_BACKOFF_MS, when set, makes
 * the first delay that many ms and the cap 20 times it (the tests' retries). */
void kp_http_opts_default(kp_http_opts *o);

/* Makes a session (curl_global_init on first use); *out caller-owned (kp_http_free). */
int kp_http_create(const kp_http_opts *o, kp_http **out, char *err, size_t errlen);

/* Frees a session and wipes its copy of the auth header; NULL is accepted. */
void kp_http_free(kp_http *h);

/* Returns the session's options (the auth header hidden: NULL); borrowed. */
const kp_http_opts *kp_http_options(const kp_http *h);

/* Runs one request into resp (initialised here; free with kp_http_resp_free).
 * Returns 0 whenever an HTTP response arrived, whatever its status (after
 * the retries a transient status is returned as it is); KP_ERR_IO when none
 * did, naming the redacted URL and the transport error. */
int kp_http_do(kp_http *h, const kp_http_req *req, kp_http_resp *resp, char *err, size_t errlen);

/* Frees what resp owns; resp itself is the caller's. */
void kp_http_resp_free(kp_http_resp *resp);

/* Writes "URL: HTTP 404 Not Found" plus the server's message (a JSON body's
 * "message", else the body's first line) into err; returns KP_ERR_NOTFOUND
 * for 404, KP_ERR_ARG for other 4xx, KP_ERR_IO otherwise. */
int kp_http_status_error(const char *url, const kp_http_resp *resp, char *err, size_t errlen);

/* Returns 1 when an HTTP status is worth retrying (5xx, 429, 408). */
int kp_http_status_transient(long status);

/* Returns the delay in ms before retry number `attempt` (1, 2, ...): backoff
 * doubled per attempt, or Retry-After when given (>= 0), both capped. */
long kp_http_backoff_ms(const kp_http_opts *o, int attempt, long retry_after_s);

/* Copies url into out without its query string and userinfo
 * ("https://u:p@h/x?sig=..." -> "https://h/x?..."). */
void kp_http_url_redact(const char *url, char *out, size_t outlen);

/* Returns 1 when a curl error code (CURLcode) is worth retrying: connection
 * refused, send/receive errors, a cut, timed-out or stalled transfer, nothing received. */
int kp_http_curl_transient(int curl_code);

/* Copies text (curl's messages, header lines) into out with the secrets cut:
 * Authorization/Cookie values, URLs' query strings and userinfo, and the
 * session's credential wherever it appears (h may be NULL). */
void kp_http_text_redact(const kp_http *h, const char *text, char *out, size_t outlen);

/* Sleeps ms milliseconds (retries' backoff); tests may shrink the delays via the opts. */
void kp_http_sleep_ms(long ms);

/* Sets the common options of a curl easy handle for this session (user
 * agent, timeouts, CA, verbose with redaction, stall detection); the auth
 * header goes in by kp_http_headers. For lib/download.c. */
int kp_http_setup_easy(kp_http *h, void *curl_easy, char *err, size_t errlen);

/* Appends the auth header (when auth) and the extra lines to a new curl
 * header list (*out: a struct curl_slist *, caller frees with curl_slist_free_all). */
int kp_http_headers(kp_http *h, int auth, const char *const *extra, int n_extra, void **out);

#endif

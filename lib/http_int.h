/* http_int.h - what http.c and http_redact.c share (private to lib/; the
 * public API is http.h).
 *
 * The session struct, so the redaction can find the verbose sink and the
 * credential to mask, and the curl debug callback that http.c installs and
 * http_redact.c implements.
 */
#ifndef KP_HTTP_INT_H
#define KP_HTTP_INT_H

#include <stddef.h>
#include <curl/curl.h>
#include "http.h"

struct kp_http {
    kp_http_opts o;        /* auth_header NULL; user_agent points at ua; verbose borrowed */
    char *auth;            /* "Authorization: ..." (a secret; owned, wiped on free) or NULL */
    const char *secret;    /* the credential inside auth (after its scheme), or NULL; borrowed */
    char *ua;              /* the user agent (owned) */
};

/* CURLOPT_DEBUGFUNCTION, arg the session (borrowed): curl's lines to its verbose sink, redacted. */
int kp_http_on_debug(CURL *c, curl_infotype type, char *data, size_t size, void *arg);

#endif

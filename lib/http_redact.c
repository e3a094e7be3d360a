/* http_redact.c - secrets out of everything kpipe's HTTP code writes: URLs
 * in messages, curl's error text, and the verbose output.
 *
 * Secrets are kept out of every line written in three layers: a header line
 * naming Authorization, Proxy-Authorization, Cookie or Set-Cookie loses its
 * value; every URL-like token loses its query string and userinfo; and the
 * session's credential is masked wherever it still appears. */
#include "http_int.h"
#include "err.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define REDACTED "[redacted]"

/* ---- redaction ---- */

/* The parts of a URL kept in messages: [a, a+an) then [b, b+bn), then "?..." if query. */
typedef struct url_parts {
    const char *a, *b;
    size_t an, bn;
    int query;
} url_parts;

/* Splits u[0..n) into the scheme ("x://"), the rest without userinfo, and a query flag. */
static void url_split(const char *u, size_t n, url_parts *p)
{
    size_t s = 0;
    while (s < n && !strchr(":/?#", u[s]))
        s++;
    p->a = u;
    p->an = 0;
    p->b = u;
    if (s > 0 && s + 3 <= n && memcmp(u + s, "://", 3) == 0) {
        p->an = s + 3;
        size_t e = p->an;
        while (e < n && !strchr("/?#", u[e]))
            e++;
        const char *at = memrchr(u + p->an, '@', e - p->an);
        p->b = at ? at + 1 : u + p->an;
    }
    size_t rest = n - (size_t)(p->b - u);
    const char *q = memchr(p->b, '?', rest);
    p->bn = q ? (size_t)(q - p->b) : rest;
    p->query = q != NULL;
}

/* Appends min(n, room) bytes of s at out[*o] (out keeps a NUL). */
static void put(char *out, size_t outlen, size_t *o, const char *s, size_t n)
{
    size_t room = outlen - 1 - *o;
    if (n > room)
        n = room;
    memcpy(out + *o, s, n);
    *o += n;
    out[*o] = 0;
}

void kp_http_url_redact(const char *url, char *out, size_t outlen)
{
    if (!out || outlen == 0)
        return;
    out[0] = 0;
    if (!url)
        return;
    url_parts p;
    size_t o = 0;
    url_split(url, strlen(url), &p);
    put(out, outlen, &o, p.a, p.an);
    put(out, outlen, &o, p.b, p.bn);
    if (p.query)
        put(out, outlen, &o, "?...", 4);
}

/* Returns 1 when c ends a token of a line being redacted. */
static int is_delim(char c)
{
    return strchr(" \t\r\n\"'<>[]", c) != NULL;
}

/* Returns the length of the secret header name t[0..n) starts with (any case), or 0. */
static size_t secret_header(const char *t, size_t n)
{
    static const char *const names[] = {"authorization:", "proxy-authorization:", "cookie:",
                                        "set-cookie:"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        size_t k = strlen(names[i]);
        if (n >= k && strncasecmp(t, names[i], k) == 0)
            return k;
    }
    return 0;
}

/* Appends one token, a URL's query and userinfo cut; 0 or KP_ERR_NOMEM. */
static int add_token(kp_buf *b, const char *t, size_t n)
{
    if (!memchr(t, '?', n) && !memmem(t, n, "://", 3))
        return kp_buf_add(b, t, n);
    url_parts p;
    url_split(t, n, &p);
    if (kp_buf_add(b, p.a, p.an) < 0 || kp_buf_add(b, p.b, p.bn) < 0)
        return KP_ERR_NOMEM;
    return p.query ? kp_buf_add(b, "?...", 4) : 0;
}

/* Appends s[0..n) to b with secret header values and URLs' queries cut; 0 or KP_ERR_NOMEM. */
static int redact_tokens(kp_buf *b, const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (is_delim(s[i])) {
            if (kp_buf_add(b, s + i++, 1) < 0)
                return KP_ERR_NOMEM;
            continue;
        }
        size_t j = i;
        while (j < n && !is_delim(s[j]))
            j++;
        size_t k = secret_header(s + i, j - i);
        if (k > 0) {   /* "Authorization: Bearer x" -> "Authorization: [redacted]" */
            if (kp_buf_add(b, s + i, k) < 0 || kp_buf_adds(b, " " REDACTED) < 0)
                return KP_ERR_NOMEM;
            while (j < n && !strchr("]\r\n", s[j]))
                j++;
        } else if (add_token(b, s + i, j - i) < 0) {
            return KP_ERR_NOMEM;
        }
        i = j;
    }
    return 0;
}

/* Copies s[0..n) to out with every occurrence of secret masked; 0 or KP_ERR_NOMEM. */
static int mask_secret(kp_buf *out, const char *s, size_t n, const char *secret)
{
    size_t k = strlen(secret);
    const char *end = s + n, *hit;
    while ((hit = memmem(s, (size_t)(end - s), secret, k)) != NULL) {
        if (kp_buf_add(out, s, (size_t)(hit - s)) < 0 || kp_buf_adds(out, REDACTED) < 0)
            return KP_ERR_NOMEM;
        s = hit + k;
    }
    return kp_buf_add(out, s, (size_t)(end - s));
}

/* Writes the redacted form of s[0..n) into out (initialised by the caller); 0 or KP_ERR_NOMEM. */
static int redact(const kp_http *h, const char *s, size_t n, kp_buf *out)
{
    if (!h || !h->secret)
        return redact_tokens(out, s, n);
    kp_buf tmp;
    kp_buf_init(&tmp, 0);
    int rc = redact_tokens(&tmp, s, n);
    if (rc == 0)
        rc = mask_secret(out, kp_buf_str(&tmp), tmp.len, h->secret);
    kp_buf_free(&tmp);
    return rc;
}

void kp_http_text_redact(const kp_http *h, const char *text, char *out, size_t outlen)
{
    if (!out || outlen == 0)
        return;
    out[0] = 0;
    kp_buf b;
    kp_buf_init(&b, 0);
    size_t o = 0;
    if (text && redact(h, text, strlen(text), &b) == 0)
        put(out, outlen, &o, kp_buf_str(&b), b.len);
    else if (text)
        put(out, outlen, &o, "[message not shown: out of memory]", 34);
    kp_buf_free(&b);
}

/* ---- verbose output ---- */

/* Writes one redacted line with its mark ("* ", "> ", "< ") to the verbose sink. */
static void verbose_line(const kp_http *h, const char *mark, const char *s, size_t n)
{
    kp_buf b;
    kp_buf_init(&b, 0);
    int ok = redact(h, s, n, &b) == 0;
    fprintf(h->o.verbose, "%s%s\n", mark, ok ? kp_buf_str(&b) : "[line not shown: out of memory]");
    kp_buf_free(&b);
}

int kp_http_on_debug(CURL *c, curl_infotype type, char *data, size_t size, void *arg)
{
    (void)c;
    const kp_http *h = arg;
    const char *mark = type == CURLINFO_TEXT ? "* " : type == CURLINFO_HEADER_IN ? "< "
                       : type == CURLINFO_HEADER_OUT ? "> " : NULL;
    if (!mark || !h->o.verbose)
        return 0;
    size_t i = 0;
    while (i < size) {
        size_t j = i, e;
        while (j < size && data[j] != '\n')
            j++;
        for (e = j; e > i && data[e - 1] == '\r'; e--)
            ;
        if (e > i)
            verbose_line(h, mark, data + i, e - i);
        i = j + 1;
    }
    return 0;
}

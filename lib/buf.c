/* buf.c - a growable byte buffer with a size cap (after curl's dynbuf). */
#include "buf.h"
#include "err.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KP_BUF_DEFAULT_MAX ((size_t)1 << 30)

void kp_buf_init(kp_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max ? max : KP_BUF_DEFAULT_MAX;
}

void kp_buf_free(kp_buf *b)
{
    if (!b)
        return;
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void kp_buf_reset(kp_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = 0;
}

/* Makes room for n more bytes plus the NUL; 0 or KP_ERR_NOMEM (b unchanged). */
static int buf_reserve(kp_buf *b, size_t n)
{
    size_t max = b->max ? b->max : KP_BUF_DEFAULT_MAX;
    if (max > SIZE_MAX / 2)
        max = SIZE_MAX / 2;
    if (n > max || b->len > max - n)
        return KP_ERR_NOMEM;
    size_t need = b->len + n + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > (max + 1) / 2 ? max + 1 : cap * 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return KP_ERR_NOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int kp_buf_add(kp_buf *b, const void *p, size_t n)
{
    if (buf_reserve(b, n) < 0)
        return KP_ERR_NOMEM;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
    return 0;
}

int kp_buf_adds(kp_buf *b, const char *s)
{
    return kp_buf_add(b, s, strlen(s));
}

int kp_buf_printf(kp_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || buf_reserve(b, (size_t)n) < 0)
        return KP_ERR_NOMEM;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

const char *kp_buf_str(const kp_buf *b)
{
    return b->data ? b->data : "";
}

char *kp_buf_take(kp_buf *b)
{
    char *s = b->data;
    if (!s)
        s = strdup("");
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return s;
}

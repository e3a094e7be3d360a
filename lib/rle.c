/* rle.c - Kaggle's run-length encoding of binary masks (see rle.h). */
#include "rle.h"
#include "err.h"

#include <assert.h>
#include <string.h>

/* ---- encoding ---------------------------------------------------------- */

/* Text is built in a stack chunk and flushed to the buffer in large appends,
 * so encoding costs no allocation per run. */
typedef struct rle_writer {
    kp_buf *out;
    int rc;            /* first failure of a flush, else 0 */
    int any;           /* a pair was written (a space goes before the next) */
    size_t n;
    char chunk[4096];
} rle_writer;

static void writer_flush(rle_writer *wr)
{
    if (wr->n && wr->rc == 0)
        wr->rc = kp_buf_add(wr->out, wr->chunk, wr->n);
    wr->n = 0;
}

/* Writes v in decimal at p; returns the end. */
static char *put_u64(char *p, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

/* Appends the pair for the run of len pixels at 0-based pixel number start. */
static void writer_run(rle_writer *wr, uint64_t start, uint64_t len)
{
    if (wr->n > sizeof wr->chunk - 48)
        writer_flush(wr);
    char *p = wr->chunk + wr->n;
    if (wr->any)
        *p++ = ' ';
    p = put_u64(p, start + 1);
    *p++ = ' ';
    p = put_u64(p, len);
    wr->n = (size_t)(p - wr->chunk);
    wr->any = 1;
}

/* Returns 1 if one of the 8 bytes of v is zero. */
static int has_zero_byte(uint64_t v)
{
    return ((v - 0x0101010101010101ull) & ~v & 0x8080808080808080ull) != 0;
}

/* Index of the first i in [i, n) with (m[i] != 0) == want, or n; skips
 * whole words that cannot hold it. */
static size_t scan_to(const uint8_t *m, size_t i, size_t n, int want)
{
    for (;;) {
        while (i + 8 <= n) {
            uint64_t v;
            memcpy(&v, m + i, 8);
            if (want ? v != 0 : has_zero_byte(v))
                break;
            i += 8;
        }
        size_t end = i + 8 < n ? i + 8 : n;
        for (; i < end; i++)
            if ((m[i] != 0) == want)
                return i;
        if (i >= n)
            return n;
    }
}

/* Row-major pixel order is memory order: runs are found a word at a time. */
static void encode_rows(const uint8_t *mask, size_t n, rle_writer *wr)
{
    size_t i = 0;
    while (i < n) {
        size_t s = scan_to(mask, i, n, 1);
        if (s == n)
            break;
        i = scan_to(mask, s, n, 0);
        writer_run(wr, s, i - s);
    }
}

/* Column-major: walk each column down; a run may continue into the next column. */
static void encode_columns(const uint8_t *mask, int w, int h, rle_writer *wr)
{
    uint64_t p = 0, start = 0;
    int in = 0;
    for (int x = 0; x < w; x++) {
        for (int y = 0; y < h; y++, p++) {
            int v = mask[(size_t)y * w + x] != 0;
            if (v == in)
                continue;
            if (v)
                start = p;
            else
                writer_run(wr, start, p - start);
            in = v;
        }
    }
    if (in)
        writer_run(wr, start, p - start);
}

int kp_rle_encode(const uint8_t *mask, int w, int h, kp_rle_order order, kp_buf *out)
{
    assert(w >= 0 && h >= 0 && (mask || (size_t)w * (size_t)h == 0));
    size_t before = out->len;
    rle_writer wr = {.out = out};
    if (order == KP_RLE_ROW_MAJOR)
        encode_rows(mask, (size_t)w * (size_t)h, &wr);
    else
        encode_columns(mask, w, h, &wr);
    writer_flush(&wr);
    if (wr.rc < 0 && out->data) {
        out->len = before;          /* drop a partial encoding */
        out->data[before] = 0;
    }
    return wr.rc;
}

/* ---- decoding ---------------------------------------------------------- */

typedef struct rle_token {
    const char *p;     /* first character */
    size_t len;        /* characters */
    size_t col;        /* 1-based column of p */
    uint64_t v;        /* value, saturated at UINT64_MAX / 16 */
} rle_token;

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Reads the next whitespace-separated token at *pos; 1 if one was found. */
static int next_token(const char *s, size_t *pos, rle_token *t)
{
    size_t i = *pos;
    while (is_space(s[i]))
        i++;
    if (!s[i])
        return 0;
    t->p = s + i;
    t->col = i + 1;
    while (s[i] && !is_space(s[i]))
        i++;
    t->len = (size_t)(s + i - t->p);
    *pos = i;
    return 1;
}

/* Converts t's digits into t->v; 0 or KP_ERR_FORMAT naming the column. */
static int token_number(rle_token *t, char *err, size_t errlen)
{
    const uint64_t cap = UINT64_MAX / 16;
    t->v = 0;
    for (size_t i = 0; i < t->len; i++) {
        char c = t->p[i];
        if (c < '0' || c > '9')
            return kp_errf(err, errlen, KP_ERR_FORMAT, "RLE column %zu: '%.*s' is not a number",
                           t->col, t->len > 40 ? 40 : (int)t->len, t->p);
        t->v = t->v >= cap ? cap : t->v * 10 + (uint64_t)(c - '0');
    }
    return 0;
}

/* Reads one "start length" pair into *a and *b; 1 if read, 0 at the end of s,
 * or a status. */
static int next_pair(const char *s, size_t *pos, rle_token *a, rle_token *b,
                     char *err, size_t errlen)
{
    if (!next_token(s, pos, a))
        return 0;
    int rc = token_number(a, err, errlen);
    if (rc < 0)
        return rc;
    if (!next_token(s, pos, b))
        return kp_errf(err, errlen, KP_ERR_FORMAT, "RLE column %zu: start %.*s has no run "
                       "length (the count of numbers is odd)", a->col,
                       a->len > 40 ? 40 : (int)a->len, a->p);
    rc = token_number(b, err, errlen);
    return rc < 0 ? rc : 1;
}

/* Checks the run (a, b) of an n-pixel mask after the run ending (1-based,
 * inclusive) at *end; updates *end.  0 or KP_ERR_FORMAT. */
static int check_run(const rle_token *a, const rle_token *b, uint64_t n, int w, int h,
                     uint64_t *end, char *err, size_t errlen)
{
    if (a->v < 1)
        return kp_errf(err, errlen, KP_ERR_FORMAT, "RLE column %zu: start 0 is below 1 "
                       "(starts are 1-indexed)", a->col);
    if (a->v <= *end)
        return kp_errf(err, errlen, KP_ERR_FORMAT, "RLE column %zu: start %llu is not after "
                       "the previous run, which ends at pixel %llu (runs must be sorted and "
                       "must not overlap)", a->col, (unsigned long long)a->v,
                       (unsigned long long)*end);
    if (b->v < 1)
        return kp_errf(err, errlen, KP_ERR_FORMAT, "RLE column %zu: run length 0 (lengths "
                       "must be at least 1)", b->col);
    if (a->v > n || b->v > n - a->v + 1)
        return kp_errf(err, errlen, KP_ERR_FORMAT, "RLE column %zu: the run '%.*s %.*s' ends "
                       "past pixel %llu, the last of a %d x %d mask", a->col,
                       a->len > 24 ? 24 : (int)a->len, a->p, b->len > 24 ? 24 : (int)b->len,
                       b->p, (unsigned long long)n, w, h);
    *end = a->v + b->v - 1;
    return 0;
}

/* Sets the len pixels from 0-based pixel number start to value. */
static void fill_run(uint8_t *mask, int w, int h, kp_rle_order order, uint64_t start,
                     uint64_t len, uint8_t value)
{
    if (order == KP_RLE_ROW_MAJOR) {
        memset(mask + start, value, len);
        return;
    }
    uint64_t x = start / (uint64_t)h, y = start % (uint64_t)h;
    uint8_t *c = mask + y * (uint64_t)w + x;
    while (len--) {
        *c = value;
        if (++y == (uint64_t)h) {
            y = 0;
            c = mask + ++x;
        } else {
            c += w;
        }
    }
}

/* Parses and checks s; fills mask when mask is not NULL.  0 or a status. */
static int decode_pass(const char *s, int w, int h, kp_rle_order order, uint8_t value,
                       uint8_t *mask, char *err, size_t errlen)
{
    uint64_t n = (uint64_t)w * (uint64_t)h, end = 0;
    size_t pos = 0;
    rle_token a, b;
    int rc;
    while ((rc = next_pair(s, &pos, &a, &b, err, errlen)) == 1) {
        rc = check_run(&a, &b, n, w, h, &end, err, errlen);
        if (rc < 0)
            return rc;
        if (mask)
            fill_run(mask, w, h, order, a.v - 1, b.v, value);
    }
    return rc;
}

int kp_rle_decode(const char *s, int w, int h, kp_rle_order order, uint8_t value,
                  uint8_t *mask, char *err, size_t errlen)
{
    assert(s && w >= 0 && h >= 0);
    int rc = decode_pass(s, w, h, order, value, NULL, err, errlen);   /* validate first */
    if (rc < 0)
        return rc;
    if (w > 0 && h > 0)
        memset(mask, 0, (size_t)w * (size_t)h);
    return decode_pass(s, w, h, order, value, mask, err, errlen);
}

int kp_rle_order_parse(const char *s, kp_rle_order *out)
{
    static const struct { const char *name; kp_rle_order order; } names[] = {
        {"column", KP_RLE_COLUMN_MAJOR}, {"column-major", KP_RLE_COLUMN_MAJOR},
        {"row", KP_RLE_ROW_MAJOR}, {"row-major", KP_RLE_ROW_MAJOR},
    };
    for (size_t i = 0; s && i < sizeof names / sizeof names[0]; i++)
        if (strcmp(s, names[i].name) == 0) {
            *out = names[i].order;
            return 0;
        }
    return KP_ERR_ARG;
}

const char *kp_rle_order_name(kp_rle_order order)
{
    return order == KP_RLE_ROW_MAJOR ? "row-major" : "column-major";
}

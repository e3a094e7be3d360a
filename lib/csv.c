/* csv.c - RFC 4180 CSV files read whole into a table of strings (on libcsv).
 *
 * libcsv does the quoting; this file feeds it one line at a time so that the
 * line on which each record starts is known, and keeps every field in one
 * arena of NUL-terminated strings indexed by 32-bit offsets (header first,
 * then the data rows), which is compact enough for files of hundreds of MB.
 * libcsv's space trimming is switched off: spaces belong to the field.
 * Lines are counted at LF, so a file using bare CR line ends reads fine but
 * reports every place as line 1.  Blank lines between records are skipped.
 */
#include "csv.h"
#include "buf.h"
#include "err.h"

#include <csv.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ARENA_MAX ((size_t)UINT32_MAX)

struct kp_csv {
    char *name;          /* owned */
    size_t rows, cols;   /* data rows (header excluded), columns */
    char *arena;         /* owned: every field, NUL-terminated */
    uint32_t *off;       /* owned: (rows + 1) * cols offsets into arena */
    uint32_t *line;      /* owned: rows + 1 line numbers (record starts) */
};

/* A growable array of uint32. */
typedef struct u32vec { uint32_t *v; size_t n, cap; } u32vec;

/* The parse in progress, handed to libcsv's callbacks. */
typedef struct parser {
    const char *name;
    kp_buf arena;
    u32vec off, line;
    size_t cols;          /* 0 until the header is complete */
    size_t fields;        /* fields seen in the current record */
    size_t start_line;    /* line on which the current record started */
    int status;           /* first error, 0 if none */
    char *err;
    size_t errlen;
} parser;

static int u32_push(u32vec *a, uint32_t x)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 1024;
        uint32_t *p = realloc(a->v, cap * sizeof *p);
        if (!p)
            return KP_ERR_NOMEM;
        a->v = p;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return 0;
}

static void fail_nomem(parser *p)
{
    if (!p->status)
        p->status = kp_errf(p->err, p->errlen, KP_ERR_NOMEM,
                            "%s:%zu: out of memory reading the file (fields over 4 GiB in all?)",
                            p->name, p->start_line);
}

/* libcsv field callback: stores the field unless the record has too many. */
static void on_field(void *s, size_t n, void *data)
{
    parser *p = data;
    if (p->status)
        return;
    p->fields++;
    if (p->cols && p->fields > p->cols)
        return;   /* counted for the ragged-row message, not stored */
    size_t at = p->arena.len;
    if (at > ARENA_MAX || u32_push(&p->off, (uint32_t)at) < 0 ||
        kp_buf_add(&p->arena, s, n) < 0 || kp_buf_add(&p->arena, "", 1) < 0)
        fail_nomem(p);
}

/* libcsv record callback: fixes the width from the header, checks the others. */
static void on_record(int c, void *data)
{
    parser *p = data;
    (void)c;
    if (p->status)
        return;
    if (!p->cols) {
        p->cols = p->fields;
    } else if (p->fields != p->cols) {
        size_t col = (p->fields < p->cols ? p->fields : p->cols) + 1;
        p->status = kp_errf(p->err, p->errlen, KP_ERR_FORMAT,
                            "%s:%zu:%zu: row has %zu field%s, the header has %zu",
                            p->name, p->start_line, col, p->fields,
                            p->fields == 1 ? "" : "s", p->cols);
        return;
    }
    if (p->start_line > UINT32_MAX || u32_push(&p->line, (uint32_t)p->start_line) < 0)
        fail_nomem(p);
    p->fields = 0;
}

static int no_space(unsigned char c)
{
    (void)c;
    return 0;
}

/* Reports a strict-mode parse error at byte `at` of line `lineno` (starting at ls). */
static int quote_error(parser *p, const char *ls, const char *at, size_t lineno)
{
    return kp_errf(p->err, p->errlen, KP_ERR_FORMAT,
                   "%s:%zu:%zu: stray quote in field %zu (line %zu, character %zu): a field "
                   "holding a quote must be quoted and the quote doubled",
                   p->name, p->start_line, p->fields + 1, p->fields + 1, lineno,
                   (size_t)(at - ls) + 1);
}

/* Feeds text to libcsv line by line, tracking where each record starts. */
static int feed_lines(parser *p, struct csv_parser *cp, const char *text, size_t len)
{
    size_t lineno = 1, pos = 0;
    while (pos < len && !p->status) {
        const char *ls = text + pos;
        const char *nl = memchr(ls, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - ls) + 1 : len - pos;
        if (cp->pstate == 0)   /* libcsv's ROW_NOT_BEGUN: a record may start on this line */
            p->start_line = lineno;
        size_t done = csv_parse(cp, ls, n, on_field, on_record, p);
        if (done < n && !p->status) {
            if (csv_error(cp) == CSV_EPARSE)
                p->status = quote_error(p, ls, ls + done, lineno);
            else
                fail_nomem(p);
        }
        pos += n;
        lineno++;
    }
    return p->status;
}

/* Finishes the parse: the last unterminated record, an unclosed quote. */
static int finish(parser *p, struct csv_parser *cp)
{
    if (p->status)
        return p->status;
    if (csv_fini(cp, on_field, on_record, p) != 0 && !p->status)
        p->status = kp_errf(p->err, p->errlen, KP_ERR_FORMAT,
                            "%s:%zu:%zu: quoted field %zu never ends: its opening quote has "
                            "no closing quote before the end of the file",
                            p->name, p->start_line, p->fields + 1, p->fields + 1);
    if (!p->status && p->cols == 0)
        p->status = kp_errf(p->err, p->errlen, KP_ERR_FORMAT,
                            "%s:1:1: empty file: there is no header row", p->name);
    return p->status;
}

static int cmp_names(const void *a, const void *b, void *arg)
{
    const kp_csv *t = arg;
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    int c = strcmp(kp_csv_header(t, i), kp_csv_header(t, j));
    return c ? c : (i > j) - (i < j);
}

/* Checks that no two header names are equal. */
static int check_header(const kp_csv *t, char *err, size_t errlen)
{
    size_t *idx = malloc(t->cols * sizeof *idx);
    if (!idx)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory", t->name);
    for (size_t i = 0; i < t->cols; i++)
        idx[i] = i;
    qsort_r(idx, t->cols, sizeof *idx, cmp_names, (void *)t);
    int rc = 0;
    for (size_t i = 1; i < t->cols && !rc; i++) {
        const char *a = kp_csv_header(t, idx[i - 1]);
        if (strcmp(a, kp_csv_header(t, idx[i])) == 0)
            rc = kp_errf(err, errlen, KP_ERR_FORMAT,
                         "%s:%u:%zu: duplicate column name \"%s\" (also column %zu)", t->name,
                         (unsigned)t->line[0], idx[i] + 1, a, idx[i - 1] + 1);
    }
    free(idx);
    return rc;
}

/* Moves the parser's arrays into a new table. */
static int build_table(parser *p, kp_csv **out, char *err, size_t errlen)
{
    kp_csv *t = calloc(1, sizeof *t);
    if (!t || !(t->name = strdup(p->name))) {
        free(t);
        return kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory", p->name);
    }
    t->cols = p->cols;
    t->rows = p->line.n - 1;
    t->arena = kp_buf_take(&p->arena);
    t->off = p->off.v;
    t->line = p->line.v;
    p->off.v = p->line.v = NULL;
    int rc = check_header(t, err, errlen);
    if (rc < 0) {
        kp_csv_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

int kp_csv_parse(const char *name, const char *text, size_t len, kp_csv **out,
                 char *err, size_t errlen)
{
    parser p = {.name = name, .err = err, .errlen = errlen, .start_line = 1};
    struct csv_parser cp;
    kp_buf_init(&p.arena, ARENA_MAX);
    if (csv_init(&cp, CSV_STRICT | CSV_STRICT_FINI) != 0)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory", name);
    csv_set_space_func(&cp, no_space);
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) {
        text += 3;    /* a UTF-8 byte order mark */
        len -= 3;
    }
    int rc = feed_lines(&p, &cp, text, len);
    if (rc == 0)
        rc = finish(&p, &cp);
    csv_free(&cp);
    if (rc == 0)
        rc = build_table(&p, out, err, errlen);
    kp_buf_free(&p.arena);
    free(p.off.v);
    free(p.line.v);
    return rc;
}

int kp_csv_read(const char *path, kp_csv **out, char *err, size_t errlen)
{
    struct stat sb;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &sb) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return kp_errf(err, errlen, e == ENOENT ? KP_ERR_NOTFOUND : KP_ERR_IO,
                       "%s: cannot open: %s", path, strerror(e));
    }
    size_t len = (size_t)sb.st_size;
    void *map = len ? mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    int e = errno;
    close(fd);
    if (len && map == MAP_FAILED)
        return kp_errf(err, errlen, KP_ERR_IO, "%s: cannot map: %s", path, strerror(e));
    int rc = kp_csv_parse(path, len ? map : "", len, out, err, errlen);
    if (len)
        munmap(map, len);
    return rc;
}

void kp_csv_free(kp_csv *t)
{
    if (!t)
        return;
    free(t->name);
    free(t->arena);
    free(t->off);
    free(t->line);
    free(t);
}

size_t kp_csv_rows(const kp_csv *t) { return t->rows; }

size_t kp_csv_cols(const kp_csv *t) { return t->cols; }

const char *kp_csv_name(const kp_csv *t) { return t->name; }

const char *kp_csv_header(const kp_csv *t, size_t c)
{
    return c < t->cols ? t->arena + t->off[c] : NULL;
}

long kp_csv_find(const kp_csv *t, const char *name)
{
    for (size_t c = 0; c < t->cols; c++)
        if (strcmp(t->arena + t->off[c], name) == 0)
            return (long)c;
    return -1;
}

const char *kp_csv_get(const kp_csv *t, size_t r, size_t c)
{
    if (r >= t->rows || c >= t->cols)
        return NULL;
    return t->arena + t->off[(r + 1) * t->cols + c];
}

size_t kp_csv_line(const kp_csv *t, size_t r)
{
    return r < t->rows ? t->line[r + 1] : 0;
}

int kp_csv_write_field(void *file, const char *s)
{
    FILE *f = file;
    if (!strpbrk(s, ",\"\r\n"))
        return fputs(s, f) < 0 ? KP_ERR_IO : 0;
    if (putc('"', f) == EOF)
        return KP_ERR_IO;
    for (; *s; s++)
        if ((*s == '"' && putc('"', f) == EOF) || putc(*s, f) == EOF)
            return KP_ERR_IO;
    return putc('"', f) == EOF ? KP_ERR_IO : 0;
}

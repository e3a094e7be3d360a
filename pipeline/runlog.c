/* runlog.c - the run log and content-hash cache (format in runlog.h).
 *
 * Loading is one pass over the file text, which stays in memory: task ids
 * and paths are unescaped in place and borrowed from it, and every hash of
 * the file goes into one array sized from the file's length, so a loaded
 * line costs no allocation but its map entry.
 */
#include "runlog.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "strmap.h"
#include "../lib/buf.h"
#include "../lib/err.h"

#define MIN_COMPACT_LINES 100
#define COMPACT_RATIO 3
#define HEXLEN 32                 /* a hash in the file: 32 hex digits */
#define MAX_FILES_PER_TASK 1000000

/* An entry: e's strings and arrays are borrowed from the loaded text and
 * arena, or owned (recorded in this process). */
typedef struct stored {
    kp_runlog_entry e;
    char *task;                   /* owned copy of e.task, or NULL */
    kp_hash *hashes;              /* owned in + out hashes, or NULL */
} stored;

typedef struct cached {
    const char *path;             /* borrowed from the text, or == owned */
    char *owned;
    kp_fstat st;
    kp_hash hash;
    int seen;                     /* looked up (stat'ed) by this process */
} cached;

struct kp_runlog {
    kp_fs *fs;
    char *path;
    int read_only, discarded;
    char *text;                   /* the file as loaded (strings borrowed from it) */
    kp_hash *arena;               /* the loaded entries' hashes */
    size_t arena_used, arena_cap;
    stored *tasks;
    int n_tasks, cap_tasks;
    kp_strmap *task_ix;
    cached *files;
    int n_files, cap_files;
    kp_strmap *file_ix;
    int lines;    /* entry lines in the file */
    int junk;     /* malformed or torn lines seen on load */
};

/* ---- entries and cache lines in memory ---- */

static void stored_free(stored *s)
{
    free(s->task);
    free(s->hashes);
    memset(s, 0, sizeof *s);
}

/* Stores s (its ownership moves in), replacing the task's earlier entry. */
static int put_stored(kp_runlog *rl, stored *s)
{
    int i = kp_strmap_get(rl->task_ix, s->e.task);
    if (i >= 0) {
        stored_free(&rl->tasks[i]);
        rl->tasks[i] = *s;
        return 0;
    }
    if (rl->n_tasks == rl->cap_tasks) {
        int cap = rl->cap_tasks ? rl->cap_tasks * 2 : 64;
        stored *nt = realloc(rl->tasks, (size_t)cap * sizeof *nt);
        if (!nt)
            goto fail;
        rl->tasks = nt;
        rl->cap_tasks = cap;
    }
    if (kp_strmap_put(rl->task_ix, s->e.task, rl->n_tasks) < 0)
        goto fail;
    rl->tasks[rl->n_tasks++] = *s;
    return 0;
fail:
    stored_free(s);
    return KP_ERR_NOMEM;
}

/* Stores an owned copy of e (its paths are not kept). */
static int put_copy(kp_runlog *rl, const kp_runlog_entry *e)
{
    int n = e->n_inputs + e->n_outputs;
    stored s = { *e, strdup(e->task), malloc(((size_t)n + 1) * sizeof(kp_hash)) };
    if (!s.task || !s.hashes) {
        stored_free(&s);
        return KP_ERR_NOMEM;
    }
    if (e->n_inputs)
        memcpy(s.hashes, e->in_hashes, (size_t)e->n_inputs * sizeof *s.hashes);
    if (e->n_outputs)
        memcpy(s.hashes + e->n_inputs, e->out_hashes, (size_t)e->n_outputs * sizeof *s.hashes);
    s.e.task = s.task;
    s.e.in_paths = s.e.out_paths = NULL;
    s.e.in_hashes = s.hashes;
    s.e.out_hashes = s.hashes + e->n_inputs;
    return put_stored(rl, &s);
}

/* Sets the cache line of path (borrowed if `borrowed`, else copied). */
static int put_cached(kp_runlog *rl, const char *path, int borrowed, const kp_fstat *st,
                      kp_hash h)
{
    int i = kp_strmap_get(rl->file_ix, path);
    if (i < 0) {
        if (rl->n_files == rl->cap_files) {
            int cap = rl->cap_files ? rl->cap_files * 2 : 64;
            cached *nf = realloc(rl->files, (size_t)cap * sizeof *nf);
            if (!nf)
                return KP_ERR_NOMEM;
            rl->files = nf;
            rl->cap_files = cap;
        }
        char *copy = borrowed ? NULL : strdup(path);
        if ((!borrowed && !copy) || kp_strmap_put(rl->file_ix, path, rl->n_files) < 0) {
            free(copy);
            return KP_ERR_NOMEM;
        }
        i = rl->n_files++;
        rl->files[i].path = borrowed ? path : copy;
        rl->files[i].owned = copy;
    }
    rl->files[i].st = *st;
    rl->files[i].hash = h;
    rl->files[i].seen = !borrowed;   /* a loaded line is not a lookup of this process */
    return 0;
}

/* ---- writing lines ---- */

static int add_escaped(kp_buf *b, const char *s)
{
    for (;;) {
        size_t n = strcspn(s, "\t\n\r\\");
        if (kp_buf_add(b, s, n) < 0)
            return KP_ERR_NOMEM;
        s += n;
        if (!*s)
            return 0;
        const char *esc = *s == '\t' ? "\\t" : *s == '\n' ? "\\n" : *s == '\r' ? "\\r" : "\\\\";
        if (kp_buf_add(b, esc, 2) < 0)
            return KP_ERR_NOMEM;
        s++;
    }
}

static int add_hash(kp_buf *b, kp_hash h)
{
    static const char digits[] = "0123456789abcdef";
    char hex[HEXLEN + 1];
    hex[0] = '\t';
    for (int i = 0; i < 16; i++) {
        hex[1 + i] = digits[(h.hi >> (60 - 4 * i)) & 15];
        hex[17 + i] = digits[(h.lo >> (60 - 4 * i)) & 15];
    }
    return kp_buf_add(b, hex, sizeof hex);
}

/* Appends "\t" and n in decimal. */
static int add_int(kp_buf *b, int64_t n)
{
    char s[24], *p = s + sizeof s;
    uint64_t u = n < 0 ? 0 - (uint64_t)n : (uint64_t)n;
    do
        *--p = (char)('0' + u % 10);
    while ((u /= 10) > 0);
    if (n < 0)
        *--p = '-';
    *--p = '\t';
    return kp_buf_add(b, p, (size_t)(s + sizeof s - p));
}

static int format_entry(kp_buf *b, const kp_runlog_entry *e)
{
    int bad = kp_buf_adds(b, "T\t") < 0 || add_escaped(b, e->task) < 0 ||
              add_hash(b, e->key) < 0 || add_hash(b, e->params) < 0 ||
              add_int(b, e->start_ns) < 0 || add_int(b, e->wall_ms) < 0 ||
              add_int(b, e->cpu_ms) < 0 || add_int(b, e->rss_kb) < 0 ||
              add_int(b, e->exit_status) < 0 || add_int(b, e->n_inputs) < 0 ||
              add_int(b, e->n_outputs) < 0;
    for (int i = 0; !bad && i < e->n_inputs; i++)
        bad = add_hash(b, e->in_hashes[i]) < 0;
    for (int i = 0; !bad && i < e->n_outputs; i++)
        bad = add_hash(b, e->out_hashes[i]) < 0;
    return bad || kp_buf_adds(b, "\n") < 0 ? KP_ERR_NOMEM : 0;
}

static int format_cached(kp_buf *b, const cached *c)
{
    if (kp_buf_adds(b, "H\t") < 0 || add_escaped(b, c->path) < 0 ||
        add_int(b, (int64_t)c->st.dev) < 0 || add_int(b, (int64_t)c->st.ino) < 0 ||
        add_int(b, c->st.size) < 0 || add_int(b, c->st.mtime_ns) < 0 ||
        add_hash(b, c->hash) < 0)
        return KP_ERR_NOMEM;
    return kp_buf_adds(b, "\n");
}

/* ---- reading lines ---- */

/* A line being read: fields are separated by tabs and end at `end` (its '\n'). */
typedef struct line {
    char *p, *end;
    int bad;
} line;

/* Returns the next field, NUL-terminated in place, or NULL (and bad) if none is left. */
static char *field(line *l, size_t *len)
{
    char *f = l->p;
    if (l->bad || f > l->end) {
        l->bad = 1;
        return NULL;
    }
    char *tab = memchr(f, '\t', (size_t)(l->end - f));
    char *stop = tab ? tab : l->end;
    *stop = 0;
    *len = (size_t)(stop - f);
    l->p = stop + 1;
    return f;
}

/* Undoes add_escaped in place; 0, or -1 on a bad escape. */
static int unescape(char *s)
{
    char *o;
    if (!(s = o = strchr(s, '\\')))
        return 0;
    for (; *s; s++) {
        if (*s != '\\') {
            *o++ = *s;
            continue;
        }
        s++;
        if (*s == 't') *o++ = '\t';
        else if (*s == 'n') *o++ = '\n';
        else if (*s == 'r') *o++ = '\r';
        else if (*s == '\\') *o++ = '\\';
        else return -1;
    }
    *o = 0;
    return 0;
}

static int read_text(line *l, const char **out)
{
    size_t n;
    char *f = field(l, &n);
    if (!f || unescape(f) < 0)
        return l->bad = 1, -1;
    *out = f;
    return 0;
}

static int read_int(line *l, int64_t *out)
{
    size_t n;
    const char *f = field(l, &n);
    int neg = f && *f == '-';
    uint64_t v = 0;
    if (!f || n == (size_t)neg || n > 19u + (size_t)neg)
        return l->bad = 1, -1;
    for (size_t i = neg; i < n; i++) {
        if (f[i] < '0' || f[i] > '9')
            return l->bad = 1, -1;
        v = v * 10 + (uint64_t)(f[i] - '0');
    }
    *out = (int64_t)(neg ? 0 - v : v);   /* modular: dev and ino may use all 64 bits */
    return 0;
}

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
/* Parses 8 lowercase hex digits at s into *out, all 8 bytes at once; -1 if
 * one is not a digit. */
static int hex32(const char *s, uint32_t *out)
{
    const uint64_t ones = 0x0101010101010101ull, high = 0x80 * ones;
    uint64_t v;
    memcpy(&v, s, 8);
    uint64_t digit = (v + 0x50 * ones) & ~(v + 0x46 * ones);    /* bytes 0x30..0x39 */
    uint64_t letter = (v + 0x1f * ones) & ~(v + 0x19 * ones);   /* bytes 0x61..0x66 */
    if ((v & high) || ((digit | letter) & high) != high)
        return -1;
    uint64_t x = (v & 0x0f * ones) + ((letter & high) >> 7) * 9;   /* a nibble per byte */
    x = (x << 4 | x >> 8) & 0x00ff00ff00ff00ffull;                /* the first digit highest */
    x = (x << 8 | x >> 16) & 0x0000ffff0000ffffull;
    *out = (uint32_t)(x << 16 | x >> 32);
    return 0;
}
#else
static int hex32(const char *s, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < 8; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return -1;
        v = v << 4 | (uint32_t)d;
    }
    *out = v;
    return 0;
}
#endif

/* Reads a hash field: 32 hex digits, then a tab or the end of the line. */
static int read_hash(line *l, kp_hash *out)
{
    const char *f = l->p;
    uint32_t w[4];
    if (l->bad || l->end - f < HEXLEN || (f + HEXLEN < l->end && f[HEXLEN] != '\t') ||
        hex32(f, &w[0]) < 0 || hex32(f + 8, &w[1]) < 0 || hex32(f + 16, &w[2]) < 0 ||
        hex32(f + 24, &w[3]) < 0)
        return l->bad = 1, -1;
    out->hi = (uint64_t)w[0] << 32 | w[1];
    out->lo = (uint64_t)w[2] << 32 | w[3];
    l->p = (char *)f + HEXLEN + 1;
    return 0;
}

/* Parses the rest of a "T" line into an entry borrowing the text and arena. */
static int parse_task(kp_runlog *rl, line *l)
{
    kp_runlog_entry e = { 0 };
    int64_t v[7];
    read_text(l, &e.task);
    read_hash(l, &e.key);
    read_hash(l, &e.params);
    for (int i = 0; i < 7; i++)
        read_int(l, &v[i]);
    if (l->bad || v[4] < -1000 || v[4] > 1000 || v[5] < 0 || v[6] < 0 ||
        v[5] > MAX_FILES_PER_TASK || v[6] > MAX_FILES_PER_TASK ||
        rl->arena_used + (size_t)(v[5] + v[6]) > rl->arena_cap)
        return -1;
    e.start_ns = v[0], e.wall_ms = v[1], e.cpu_ms = v[2], e.rss_kb = v[3];
    e.exit_status = (int)v[4];
    e.n_inputs = (int)v[5], e.n_outputs = (int)v[6];
    kp_hash *h = rl->arena + rl->arena_used;
    for (int i = 0; i < e.n_inputs + e.n_outputs; i++)
        read_hash(l, &h[i]);
    if (l->bad || l->p <= l->end)   /* a field missing, or one too many */
        return -1;
    rl->arena_used += (size_t)(e.n_inputs + e.n_outputs);
    e.in_hashes = h;
    e.out_hashes = h + e.n_inputs;
    stored s = { e, NULL, NULL };
    return put_stored(rl, &s) < 0 ? KP_ERR_NOMEM : 0;
}

/* Parses the rest of an "H" line into the cache (the path borrowed). */
static int parse_cached(kp_runlog *rl, line *l)
{
    kp_fstat st = { .exists = 1 };
    int64_t dev, ino;
    const char *path;
    kp_hash h;
    read_text(l, &path);
    read_int(l, &dev);
    read_int(l, &ino);
    read_int(l, &st.size);
    read_int(l, &st.mtime_ns);
    read_hash(l, &h);
    if (l->bad || l->p <= l->end)
        return -1;
    st.dev = (uint64_t)dev, st.ino = (uint64_t)ino;
    return put_cached(rl, path, 1, &st, h) < 0 ? KP_ERR_NOMEM : 0;
}

/* Parses one complete line (start..end, end at its '\n'); a malformed one counts as junk. */
static int parse_line(kp_runlog *rl, char *start, char *end)
{
    line l = { start + 2, end, 0 };
    int rc = -1;
    if (end - start >= 2 && start[1] == '\t' && start[0] == 'T')
        rc = parse_task(rl, &l);
    else if (end - start >= 2 && start[1] == '\t' && start[0] == 'H')
        rc = parse_cached(rl, &l);
    if (rc == KP_ERR_NOMEM)
        return rc;
    rl->lines++;
    rl->junk += rc < 0;
    return 0;
}

/* Parses the file text (n bytes); a bad header discards it all, a torn tail is junk. */
static int parse_text(kp_runlog *rl, char *text, size_t n)
{
    size_t hl = strlen(KP_RUNLOG_HEADER);
    char *end = text + strnlen(text, n);
    if ((size_t)(end - text) <= hl || memcmp(text, KP_RUNLOG_HEADER, hl) != 0 || text[hl] != '\n') {
        rl->discarded = 1;
        return 0;
    }
    int lines = 0;
    for (const char *p = text; (p = memchr(p, '\n', (size_t)(end - p))); p++)
        lines++;
    /* room for every line at once (pages never touched cost nothing); the
     * file holds no more hashes than it has bytes for */
    rl->arena_cap = (size_t)(end - text) / (HEXLEN + 1) + 1;
    rl->tasks = malloc((size_t)lines * sizeof *rl->tasks);
    rl->files = malloc((size_t)lines * sizeof *rl->files);
    rl->arena = malloc(rl->arena_cap * sizeof *rl->arena);
    if (!rl->tasks || !rl->files || !rl->arena)
        return KP_ERR_NOMEM;
    rl->cap_tasks = rl->cap_files = lines;
    for (char *p = text + hl + 1; p < end;) {
        char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) {
            rl->junk++;   /* torn last line: the writer died mid-append */
            break;
        }
        if (parse_line(rl, p, eol) < 0)
            return KP_ERR_NOMEM;
        p = eol + 1;
    }
    return 0;
}

/* ---- the API ---- */

static int load(kp_runlog *rl, int *exists, char *err, size_t errlen)
{
    kp_fstat st;
    size_t len = 0;
    int rc = kp_fs_stat(rl->fs, rl->path, &st, err, errlen);
    *exists = st.exists;
    if (rc < 0 || !st.exists)
        return rc;
    if ((rc = rl->fs->ops->read(rl->fs, rl->path, &rl->text, &len, err, errlen)) < 0)
        return rc;
    if ((rc = parse_text(rl, rl->text, len)) < 0)
        kp_errf(err, errlen, rc, "%s: out of memory", rl->path);
    return rc;
}

int kp_runlog_open(kp_fs *fs, const char *dir, int read_only, kp_runlog **out,
                   char *err, size_t errlen)
{
    int rc = KP_ERR_NOMEM, exists = 0;
    kp_runlog *rl = calloc(1, sizeof *rl);
    if (!rl || asprintf(&rl->path, "%s/runlog", dir) < 0 ||
        !(rl->task_ix = kp_strmap_create()) || !(rl->file_ix = kp_strmap_create())) {
        if (rl)
            rl->path = NULL;
        kp_errf(err, errlen, rc, "%s: out of memory", dir);
        goto fail;
    }
    rl->fs = fs;
    rl->read_only = read_only;
    if (!read_only && (rc = fs->ops->mkdirs(fs, dir, err, errlen)) < 0)
        goto fail;
    if ((rc = load(rl, &exists, err, errlen)) < 0)
        goto fail;
    /* a fresh header before the first append: new, discarded or torn logs */
    if (!read_only && (!exists || rl->discarded || rl->junk) &&
        (rc = kp_runlog_compact(rl, 1, err, errlen)) < 0)
        goto fail;
    *out = rl;
    rl = NULL;
    rc = 0;
fail:
    if (rl)
        rl->read_only = 1;   /* close must not write */
    kp_runlog_close(rl);
    return rc;
}

void kp_runlog_close(kp_runlog *rl)
{
    if (!rl)
        return;
    if (!rl->read_only)
        kp_runlog_compact(rl, 0, NULL, 0);
    for (int i = 0; i < rl->n_tasks; i++)
        stored_free(&rl->tasks[i]);
    for (int i = 0; i < rl->n_files; i++)
        free(rl->files[i].owned);
    free(rl->tasks);
    free(rl->files);
    kp_strmap_free(rl->task_ix);
    kp_strmap_free(rl->file_ix);
    free(rl->arena);
    free(rl->text);
    free(rl->path);
    free(rl);
}

int kp_runlog_discarded(const kp_runlog *rl)
{
    return rl->discarded;
}

int kp_runlog_lines(const kp_runlog *rl)
{
    return rl->lines;
}

const kp_runlog_entry *kp_runlog_find(const kp_runlog *rl, const char *task)
{
    int i = kp_strmap_get(rl->task_ix, task);
    return i >= 0 ? &rl->tasks[i].e : NULL;
}

static int append(kp_runlog *rl, kp_buf *b, char *err, size_t errlen)
{
    if (rl->read_only)
        return 0;
    rl->lines++;
    return rl->fs->ops->append(rl->fs, rl->path, b->data, b->len, err, errlen);
}

int kp_runlog_record(kp_runlog *rl, const kp_runlog_entry *e, char *err, size_t errlen)
{
    kp_buf b;
    kp_buf_init(&b, 0);
    int rc = format_entry(&b, e) < 0 || put_copy(rl, e) < 0 ? KP_ERR_NOMEM : 0;
    if (rc < 0)
        kp_errf(err, errlen, rc, "out of memory recording task %s", e->task);
    else
        rc = append(rl, &b, err, errlen);
    kp_buf_free(&b);
    return rc;
}

static int same_stat(const kp_fstat *a, const kp_fstat *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime_ns == b->mtime_ns;
}

/* kp_runlog_file_hash with path's cache line i (-1: none) looked up already. */
static int file_hash(kp_runlog *rl, const char *path, int i, kp_hash *out, char *err,
                     size_t errlen)
{
    kp_fstat st;
    int rc = kp_fs_stat(rl->fs, path, &st, err, errlen);
    if (rc < 0)
        return rc;
    if (!st.exists || st.is_dir)
        return kp_errf(err, errlen, KP_ERR_NOTFOUND, "%s: %s", path,
                       st.exists ? "is a directory" : "no such file");
    if (i >= 0 && same_stat(&rl->files[i].st, &st)) {
        *out = rl->files[i].hash;
        rl->files[i].seen = 1;
        return 0;
    }
    if ((rc = kp_fs_hash(rl->fs, path, out, err, errlen)) < 0)
        return rc;
    kp_buf b;
    kp_buf_init(&b, 0);
    cached c = { path, NULL, st, *out, 1 };
    rc = put_cached(rl, path, 0, &st, *out) < 0 || format_cached(&b, &c) < 0 ? KP_ERR_NOMEM : 0;
    if (rc < 0)
        kp_errf(err, errlen, rc, "%s: out of memory", path);
    else
        rc = append(rl, &b, err, errlen);
    kp_buf_free(&b);
    return rc;
}

int kp_runlog_file_hash(kp_runlog *rl, const char *path, kp_hash *out, char *err, size_t errlen)
{
    return file_hash(rl, path, kp_strmap_get(rl->file_ix, path), out, err, errlen);
}

int kp_runlog_file_hash_seen(kp_runlog *rl, const char *path, kp_hash *out, char *err,
                             size_t errlen)
{
    int i = kp_strmap_get(rl->file_ix, path);
    if (i >= 0 && rl->files[i].seen) {
        *out = rl->files[i].hash;
        return 0;
    }
    return file_hash(rl, path, i, out, err, errlen);
}

int kp_runlog_file_seen_stat(const kp_runlog *rl, const char *path, kp_fstat *st)
{
    int i = kp_strmap_get(rl->file_ix, path);
    if (i < 0 || !rl->files[i].seen)
        return KP_ERR_NOTFOUND;
    *st = rl->files[i].st;
    return 0;
}

/* Appends the cache line of c if the file is still as recorded. */
static int compact_cached(kp_runlog *rl, kp_buf *b, const cached *c, int *n)
{
    kp_fstat st;
    if (kp_fs_stat(rl->fs, c->path, &st, NULL, 0) < 0 || !st.exists || !same_stat(&st, &c->st))
        return 0;
    (*n)++;
    return format_cached(b, c);
}

int kp_runlog_compact(kp_runlog *rl, int force, char *err, size_t errlen)
{
    int live = rl->n_tasks + rl->n_files, n = 0;
    if (rl->read_only ||
        (!force && !rl->junk && (rl->lines < MIN_COMPACT_LINES || rl->lines <= COMPACT_RATIO * live)))
        return 0;
    kp_buf b;
    kp_buf_init(&b, 0);
    int rc = kp_buf_adds(&b, KP_RUNLOG_HEADER "\n");
    for (int i = 0; i < rl->n_tasks && rc == 0; i++, n++)
        rc = format_entry(&b, &rl->tasks[i].e);
    for (int i = 0; i < rl->n_files && rc == 0; i++)
        rc = compact_cached(rl, &b, &rl->files[i], &n);
    if (rc < 0)
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory", rl->path);
    else
        rc = rl->fs->ops->write_atomic(rl->fs, rl->path, b.data, b.len, err, errlen);
    if (rc == 0) {
        rl->lines = n;
        rl->junk = 0;
    }
    kp_buf_free(&b);
    return rc;
}

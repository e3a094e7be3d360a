/* runlog.c - the run log and content-hash cache (format in runlog.h). */
#include "runlog.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "strmap.h"
#include "../lib/buf.h"
#include "../lib/err.h"

#define MIN_COMPACT_LINES 100
#define COMPACT_RATIO 3
#define MAX_FIELDS 100000

/* An owned copy of a kp_runlog_entry: e's pointers point into the arrays. */
typedef struct stored {
    kp_runlog_entry e;
    char *task;
    char **in_paths, **out_paths;
    kp_hash *in_hashes, *out_hashes;
} stored;

typedef struct cached {
    char *path;
    kp_fstat st;
    kp_hash hash;
} cached;

struct kp_runlog {
    kp_fs *fs;
    char *path;
    int read_only, discarded;
    stored *tasks;
    int n_tasks, cap_tasks;
    kp_strmap *task_ix;
    cached *files;
    int n_files, cap_files;
    kp_strmap *file_ix;
    int lines;    /* entry lines in the file */
    int junk;     /* malformed or torn lines seen on load */
};

/* ---- owned entries ---- */

static void stored_free(stored *s)
{
    free(s->task);
    for (int i = 0; s->in_paths && i < s->e.n_inputs; i++)
        free(s->in_paths[i]);
    for (int i = 0; s->out_paths && i < s->e.n_outputs; i++)
        free(s->out_paths[i]);
    free(s->in_paths);
    free(s->out_paths);
    free(s->in_hashes);
    free(s->out_hashes);
    memset(s, 0, sizeof *s);
}

static int copy_files(int n, const char *const *paths, const kp_hash *hashes,
                      char ***out_paths, kp_hash **out_hashes)
{
    *out_paths = calloc((size_t)n + 1, sizeof **out_paths);
    *out_hashes = malloc(((size_t)n + 1) * sizeof **out_hashes);
    if (!*out_paths || !*out_hashes)
        return KP_ERR_NOMEM;
    for (int i = 0; i < n; i++) {
        if (!((*out_paths)[i] = strdup(paths[i])))
            return KP_ERR_NOMEM;
        (*out_hashes)[i] = hashes[i];
    }
    return 0;
}

/* Fills s with a deep copy of e; on failure s is freed. */
static int stored_copy(stored *s, const kp_runlog_entry *e)
{
    memset(s, 0, sizeof *s);
    s->e = *e;
    int rc = (s->task = strdup(e->task)) ? 0 : KP_ERR_NOMEM;
    if (rc == 0)
        rc = copy_files(e->n_inputs, e->in_paths, e->in_hashes, &s->in_paths, &s->in_hashes);
    if (rc == 0)
        rc = copy_files(e->n_outputs, e->out_paths, e->out_hashes, &s->out_paths, &s->out_hashes);
    if (rc < 0) {
        stored_free(s);   /* the path arrays are zeroed, so this frees what was copied */
        return rc;
    }
    s->e.task = s->task;
    s->e.in_paths = (const char *const *)s->in_paths;
    s->e.in_hashes = s->in_hashes;
    s->e.out_paths = (const char *const *)s->out_paths;
    s->e.out_hashes = s->out_hashes;
    return 0;
}

/* Stores a copy of e, replacing the task's earlier entry. */
static int put_entry(kp_runlog *rl, const kp_runlog_entry *e)
{
    stored s;
    if (stored_copy(&s, e) < 0)
        return KP_ERR_NOMEM;
    int i = kp_strmap_get(rl->task_ix, e->task);
    if (i >= 0) {
        stored_free(&rl->tasks[i]);
        rl->tasks[i] = s;
        return 0;
    }
    if (rl->n_tasks == rl->cap_tasks) {
        int cap = rl->cap_tasks ? rl->cap_tasks * 2 : 64;
        stored *nt = realloc(rl->tasks, (size_t)cap * sizeof *nt);
        if (!nt) {
            stored_free(&s);
            return KP_ERR_NOMEM;
        }
        rl->tasks = nt;
        rl->cap_tasks = cap;
    }
    if (kp_strmap_put(rl->task_ix, e->task, rl->n_tasks) < 0) {
        stored_free(&s);
        return KP_ERR_NOMEM;
    }
    rl->tasks[rl->n_tasks++] = s;
    return 0;
}

static int put_cached(kp_runlog *rl, const char *path, const kp_fstat *st, kp_hash h)
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
        char *p = strdup(path);
        if (!p || kp_strmap_put(rl->file_ix, path, rl->n_files) < 0) {
            free(p);
            return KP_ERR_NOMEM;
        }
        i = rl->n_files++;
        rl->files[i].path = p;
    }
    rl->files[i].st = *st;
    rl->files[i].hash = h;
    return 0;
}

/* ---- text form ---- */

static int add_escaped(kp_buf *b, const char *s)
{
    for (; *s; s++) {
        const char *esc = *s == '\t' ? "\\t" : *s == '\n' ? "\\n" : *s == '\r' ? "\\r" :
                          *s == '\\' ? "\\\\" : NULL;
        if (esc ? kp_buf_adds(b, esc) < 0 : kp_buf_add(b, s, 1) < 0)
            return KP_ERR_NOMEM;
    }
    return 0;
}

static int add_hash(kp_buf *b, kp_hash h)
{
    char hex[KP_HASH_HEXLEN];
    kp_hash_hex(h, hex);
    return kp_buf_printf(b, "\t%s", hex);
}

static int add_files(kp_buf *b, int n, const char *const *paths, const kp_hash *hashes)
{
    for (int i = 0; i < n; i++)
        if (kp_buf_adds(b, "\t") < 0 || add_escaped(b, paths[i]) < 0 || add_hash(b, hashes[i]) < 0)
            return KP_ERR_NOMEM;
    return 0;
}

static int format_entry(kp_buf *b, const kp_runlog_entry *e)
{
    if (kp_buf_adds(b, "T\t") < 0 || add_escaped(b, e->task) < 0 || add_hash(b, e->key) < 0 ||
        add_hash(b, e->params) < 0 ||
        kp_buf_printf(b, "\t%" PRId64 "\t%" PRId64 "\t%" PRId64 "\t%" PRId64 "\t%d\t%d\t%d",
                      e->start_ns, e->wall_ms, e->cpu_ms, e->rss_kb, e->exit_status,
                      e->n_inputs, e->n_outputs) < 0 ||
        add_files(b, e->n_inputs, e->in_paths, e->in_hashes) < 0 ||
        add_files(b, e->n_outputs, e->out_paths, e->out_hashes) < 0)
        return KP_ERR_NOMEM;
    return kp_buf_adds(b, "\n");
}

static int format_cached(kp_buf *b, const cached *c)
{
    if (kp_buf_adds(b, "H\t") < 0 || add_escaped(b, c->path) < 0 ||
        kp_buf_printf(b, "\t%" PRIu64 "\t%" PRIu64 "\t%" PRId64 "\t%" PRId64, c->st.dev,
                      c->st.ino, c->st.size, c->st.mtime_ns) < 0 || add_hash(b, c->hash) < 0)
        return KP_ERR_NOMEM;
    return kp_buf_adds(b, "\n");
}

/* Undoes add_escaped in place; 0, or -1 on a bad escape. */
static int unescape(char *s)
{
    char *o = s;
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

static int parse_i64(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end)
        return -1;
    *out = v;
    return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || *s == '-')
        return -1;
    *out = v;
    return 0;
}

/* Splits a line into tab-separated fields (in place); returns the count or -1. */
static int split(char *line, char ***fields)
{
    int n = 1;
    for (const char *p = line; *p; p++)
        n += *p == '\t';
    if (n > MAX_FIELDS || !(*fields = malloc((size_t)n * sizeof **fields)))
        return -1;
    int i = 0;
    for (char *p = line;; p++) {
        (*fields)[i++] = p;
        if (!(p = strchr(p, '\t')))
            break;
        *p = 0;
    }
    return n;
}

/* Parses n path/hash pairs from f into paths/hashes (borrowing f's strings). */
static int parse_files(char **f, int n, const char **paths, kp_hash *hashes)
{
    for (int i = 0; i < n; i++) {
        if (unescape(f[2 * i]) < 0 || kp_hash_parse(f[2 * i + 1], &hashes[i]) < 0)
            return -1;
        paths[i] = f[2 * i];
    }
    return 0;
}

static int parse_task(kp_runlog *rl, char **f, int n)
{
    kp_runlog_entry e = { 0 };
    int64_t v[8];
    if (n < 11 || unescape(f[1]) < 0 || kp_hash_parse(f[2], &e.key) < 0 ||
        kp_hash_parse(f[3], &e.params) < 0)
        return -1;
    for (int i = 0; i < 7; i++)
        if (parse_i64(f[4 + i], &v[i]) < 0)
            return -1;
    if (v[4] < -1000 || v[4] > 1000 || v[5] < 0 || v[6] < 0 || 11 + 2 * (v[5] + v[6]) != n)
        return -1;
    e.task = f[1];
    e.start_ns = v[0], e.wall_ms = v[1], e.cpu_ms = v[2], e.rss_kb = v[3];
    e.exit_status = (int)v[4];
    e.n_inputs = (int)v[5], e.n_outputs = (int)v[6];
    const char **paths = malloc((size_t)(e.n_inputs + e.n_outputs + 1) * sizeof *paths);
    kp_hash *hashes = malloc((size_t)(e.n_inputs + e.n_outputs + 1) * sizeof *hashes);
    int rc = -1;
    if (paths && hashes && parse_files(f + 11, e.n_inputs + e.n_outputs, paths, hashes) == 0) {
        e.in_paths = paths, e.in_hashes = hashes;
        e.out_paths = paths + e.n_inputs, e.out_hashes = hashes + e.n_inputs;
        rc = put_entry(rl, &e) < 0 ? KP_ERR_NOMEM : 0;
    }
    free(paths);
    free(hashes);
    return rc;
}

static int parse_cached(kp_runlog *rl, char **f, int n)
{
    kp_fstat st = { .exists = 1 };
    kp_hash h;
    if (n != 7 || unescape(f[1]) < 0 || parse_u64(f[2], &st.dev) < 0 ||
        parse_u64(f[3], &st.ino) < 0 || parse_i64(f[4], &st.size) < 0 ||
        parse_i64(f[5], &st.mtime_ns) < 0 || kp_hash_parse(f[6], &h) < 0)
        return -1;
    return put_cached(rl, f[1], &st, h) < 0 ? KP_ERR_NOMEM : 0;
}

/* Parses one complete line; a malformed one counts as junk. */
static int parse_line(kp_runlog *rl, char *line)
{
    char **f = NULL;
    int n = split(line, &f), rc = -1;
    if (n > 0 && strcmp(f[0], "T") == 0)
        rc = parse_task(rl, f, n);
    else if (n > 0 && strcmp(f[0], "H") == 0)
        rc = parse_cached(rl, f, n);
    free(f);
    if (rc == KP_ERR_NOMEM)
        return rc;
    rl->lines++;
    rl->junk += rc < 0;
    return 0;
}

/* Parses the file text; a bad header discards it all, a torn tail is junk. */
static int parse_text(kp_runlog *rl, char *text)
{
    char *eol = strchr(text, '\n');
    if (!eol || (size_t)(eol - text) != strlen(KP_RUNLOG_HEADER) ||
        strncmp(text, KP_RUNLOG_HEADER, (size_t)(eol - text)) != 0) {
        rl->discarded = 1;
        return 0;
    }
    for (char *line = eol + 1; *line; line = eol + 1) {
        if (!(eol = strchr(line, '\n'))) {
            rl->junk++;   /* torn last line: the writer died mid-append */
            break;
        }
        *eol = 0;
        if (parse_line(rl, line) < 0)
            return KP_ERR_NOMEM;
    }
    return 0;
}

/* ---- the API ---- */

static int load(kp_runlog *rl, int *exists, char *err, size_t errlen)
{
    kp_fstat st;
    int rc = kp_fs_stat(rl->fs, rl->path, &st, err, errlen);
    *exists = st.exists;
    if (rc < 0 || !st.exists)
        return rc;
    char *text = NULL;
    if ((rc = rl->fs->ops->read(rl->fs, rl->path, &text, NULL, err, errlen)) < 0)
        return rc;
    if ((rc = parse_text(rl, text)) < 0)
        kp_errf(err, errlen, rc, "%s: out of memory", rl->path);
    free(text);
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
        free(rl->files[i].path);
    free(rl->tasks);
    free(rl->files);
    kp_strmap_free(rl->task_ix);
    kp_strmap_free(rl->file_ix);
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
    int rc = format_entry(&b, e) < 0 || put_entry(rl, e) < 0 ? KP_ERR_NOMEM : 0;
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

int kp_runlog_file_hash(kp_runlog *rl, const char *path, kp_hash *out, char *err, size_t errlen)
{
    kp_fstat st;
    int rc = kp_fs_stat(rl->fs, path, &st, err, errlen);
    if (rc < 0)
        return rc;
    if (!st.exists || st.is_dir)
        return kp_errf(err, errlen, KP_ERR_NOTFOUND, "%s: %s", path,
                       st.exists ? "is a directory" : "no such file");
    int i = kp_strmap_get(rl->file_ix, path);
    if (i >= 0 && same_stat(&rl->files[i].st, &st)) {
        *out = rl->files[i].hash;
        return 0;
    }
    if ((rc = kp_fs_hash(rl->fs, path, out, err, errlen)) < 0)
        return rc;
    kp_buf b;
    kp_buf_init(&b, 0);
    cached c = { (char *)path, st, *out };
    rc = put_cached(rl, path, &st, *out) < 0 || format_cached(&b, &c) < 0 ? KP_ERR_NOMEM : 0;
    if (rc < 0)
        kp_errf(err, errlen, rc, "%s: out of memory", path);
    else
        rc = append(rl, &b, err, errlen);
    kp_buf_free(&b);
    return rc;
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

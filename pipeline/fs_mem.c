/* fs_mem.c - an in-memory kp_fs with a fake clock, for executor tests.
 *
 * Files are a flat list of path -> bytes; directories are implied (mkdirs
 * succeeds and records nothing).  Every write stamps the file with the clock
 * (which then advances 1 ms) and a fresh inode number, so the hash cache sees
 * a rewrite even when the bytes are equal.  Reads and hashes are counted.
 */
#include "fs.h"

#include <stdlib.h>
#include <string.h>
#include "../lib/err.h"

typedef struct mem_file {
    char *path;
    char *data;
    size_t len;
    uint64_t ino;
    int64_t mtime_ns;
} mem_file;

typedef struct mem_fs {
    kp_fs base;           /* first: a kp_fs * is a mem_fs * */
    mem_file *files;
    int n, cap;
    int64_t clock_ns;
    uint64_t next_ino;
    int reads;
    char **locks;         /* paths locked, slot index is the token */
    int n_locks;
} mem_fs;

static mem_fs *M(kp_fs *fs) { return (mem_fs *)fs; }

static mem_file *find(mem_fs *m, const char *path)
{
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->files[i].path, path) == 0)
            return &m->files[i];
    return NULL;
}

/* Stores a copy of n bytes under path; 0 or KP_ERR_NOMEM. */
static int put(mem_fs *m, const char *path, const void *data, size_t n)
{
    char *copy = malloc(n + 1);
    if (!copy)
        return KP_ERR_NOMEM;
    if (n)
        memcpy(copy, data, n);
    copy[n] = 0;
    mem_file *f = find(m, path);
    if (!f) {
        if (m->n == m->cap) {
            int cap = m->cap ? m->cap * 2 : 16;
            mem_file *nf = realloc(m->files, (size_t)cap * sizeof *nf);
            if (!nf) {
                free(copy);
                return KP_ERR_NOMEM;
            }
            m->files = nf;
            m->cap = cap;
        }
        f = &m->files[m->n];
        if (!(f->path = strdup(path))) {
            free(copy);
            return KP_ERR_NOMEM;
        }
        f->data = NULL;
        m->n++;
    }
    free(f->data);
    f->data = copy;
    f->len = n;
    f->ino = m->next_ino++;
    f->mtime_ns = m->clock_ns;
    m->clock_ns += 1000000;
    return 0;
}

static int mem_stat(kp_fs *fs, const char *path, kp_fstat *st, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    mem_file *f = find(M(fs), path);
    memset(st, 0, sizeof *st);
    if (f) {
        st->exists = 1;
        st->dev = 1;
        st->ino = f->ino;
        st->size = (int64_t)f->len;
        st->mtime_ns = f->mtime_ns;
    }
    return 0;
}

static int mem_read(kp_fs *fs, const char *path, char **out, size_t *len,
                    char *err, size_t errlen)
{
    mem_file *f = find(M(fs), path);
    if (!f)
        return kp_errf(err, errlen, KP_ERR_IO, "%s: cannot open: No such file or directory", path);
    M(fs)->reads++;
    if (!(*out = malloc(f->len + 1)))
        return kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory", path);
    memcpy(*out, f->data, f->len + 1);
    if (len)
        *len = f->len;
    return 0;
}

static int mem_hash(kp_fs *fs, const char *path, kp_hash *out, char *err, size_t errlen)
{
    mem_file *f = find(M(fs), path);
    if (!f)
        return kp_errf(err, errlen, KP_ERR_NOTFOUND, "%s: no such file", path);
    M(fs)->reads++;
    *out = kp_hash_bytes(f->data, f->len);
    return 0;
}

static int mem_write(kp_fs *fs, const char *path, const void *data, size_t n,
                     char *err, size_t errlen)
{
    if (put(M(fs), path, data, n) < 0)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory", path);
    return 0;
}

static int mem_append(kp_fs *fs, const char *path, const void *data, size_t n,
                      char *err, size_t errlen)
{
    mem_file *f = find(M(fs), path);
    if (!f)
        return mem_write(fs, path, data, n, err, errlen);
    char *p = realloc(f->data, f->len + n + 1);
    if (!p)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory", path);
    memcpy(p + f->len, data, n);
    f->len += n;
    p[f->len] = 0;
    f->data = p;
    f->mtime_ns = M(fs)->clock_ns;
    return 0;
}

static int mem_remove(kp_fs *fs, const char *path, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    mem_fs *m = M(fs);
    mem_file *f = find(m, path);
    if (f) {
        free(f->path);
        free(f->data);
        *f = m->files[--m->n];
    }
    return 0;
}

static int mem_mkdirs(kp_fs *fs, const char *path, char *err, size_t errlen)
{
    (void)fs, (void)path, (void)err, (void)errlen;
    return 0;
}

static int mem_lock(kp_fs *fs, const char *path, int *token, char *err, size_t errlen)
{
    mem_fs *m = M(fs);
    int free_slot = -1;
    for (int i = 0; i < m->n_locks; i++) {
        if (m->locks[i] && strcmp(m->locks[i], path) == 0)
            return kp_errf(err, errlen, KP_ERR_IO,
                           "another kpipe run is using this run directory (%s)", path);
        if (!m->locks[i] && free_slot < 0)
            free_slot = i;
    }
    if (free_slot < 0) {
        char **nl = realloc(m->locks, (size_t)(m->n_locks + 1) * sizeof *nl);
        if (!nl)
            return kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory", path);
        m->locks = nl;
        free_slot = m->n_locks++;
    }
    if (!(m->locks[free_slot] = strdup(path)))
        return kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory", path);
    *token = free_slot;
    return 0;
}

static void mem_unlock(kp_fs *fs, int token)
{
    mem_fs *m = M(fs);
    if (token >= 0 && token < m->n_locks) {
        free(m->locks[token]);
        m->locks[token] = NULL;
    }
}

static int64_t mem_now(kp_fs *fs)
{
    return M(fs)->clock_ns;
}

static void mem_free(kp_fs *fs)
{
    mem_fs *m = M(fs);
    for (int i = 0; i < m->n; i++) {
        free(m->files[i].path);
        free(m->files[i].data);
    }
    for (int i = 0; i < m->n_locks; i++)
        free(m->locks[i]);
    free(m->locks);
    free(m->files);
    free(m);
}

static const kp_fs_ops mem_ops = {
    mem_stat, mem_read, mem_hash, mem_write, mem_append, mem_remove,
    mem_mkdirs, mem_lock, mem_unlock, mem_now, mem_free,
};

kp_fs *kp_fs_mem_create(void)
{
    mem_fs *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->base.ops = &mem_ops;
    m->clock_ns = 1000000000;
    m->next_ino = 1;
    return &m->base;
}

int kp_fs_mem_put(kp_fs *fs, const char *path, const char *text)
{
    return put(M(fs), path, text, strlen(text));
}

const char *kp_fs_mem_get(kp_fs *fs, const char *path)
{
    mem_file *f = find(M(fs), path);
    return f ? f->data : NULL;
}

int kp_fs_mem_reads(kp_fs *fs)
{
    return M(fs)->reads;
}

void kp_fs_mem_advance(kp_fs *fs, int64_t ns)
{
    M(fs)->clock_ns += ns;
}

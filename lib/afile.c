/* afile.c - atomic file output (temp file, fsync, rename) and small file helpers. */
#include "afile.h"
#include "err.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct kp_afile {
    char *path;     /* destination */
    char *tmp;      /* "<path>.tmp.<pid>" */
    FILE *f;
};

/* Returns a heap copy of path's directory ("." when it has no slash). */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

int kp_mkdirs(const char *path, char *err, size_t errlen)
{
    int rc = 0;
    char *p = strdup(path);
    if (!p)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory", path);
    size_t n = strlen(p);
    for (size_t i = 1; i <= n && rc == 0; i++) {
        if (p[i] != '/' && p[i] != 0)
            continue;
        char c = p[i];
        p[i] = 0;
        struct stat sb;
        if (mkdir(p, 0777) != 0 && !(errno == EEXIST && stat(p, &sb) == 0 && S_ISDIR(sb.st_mode)))
            rc = kp_errf(err, errlen, KP_ERR_IO, "%s: cannot create directory %s: %s",
                         path, p, errno == EEXIST ? "not a directory" : strerror(errno));
        p[i] = c;
    }
    free(p);
    return rc;
}

int kp_afile_open(const char *path, kp_afile **out, char *err, size_t errlen)
{
    int rc = KP_ERR_NOMEM;
    kp_afile *a = calloc(1, sizeof *a);
    char *dir = dir_of(path);
    if (!a || !dir || !(a->path = strdup(path)) ||
        asprintf(&a->tmp, "%s.tmp.%ld", path, (long)getpid()) < 0) {
        if (a)
            a->tmp = NULL;
        kp_errf(err, errlen, rc, "%s: out of memory", path);
        goto fail;
    }
    if ((rc = kp_mkdirs(dir, err, errlen)) < 0) {
        kp_err_prefix(err, errlen, rc, path);
        goto fail;
    }
    rc = KP_ERR_IO;
    int fd = open(a->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0 || !(a->f = fdopen(fd, "wb"))) {
        kp_errf(err, errlen, rc, "%s: cannot create: %s", a->tmp, strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(a->tmp);
        }
        goto fail;
    }
    *out = a;
    a = NULL;
    rc = 0;
fail:
    if (a) {
        free(a->path);
        free(a->tmp);
        free(a);
    }
    free(dir);
    return rc;
}

FILE *kp_afile_stream(kp_afile *f)
{
    return f->f;
}

/* fsyncs the directory holding path so the rename is durable. */
static int sync_dir(const char *path, char *err, size_t errlen)
{
    char *dir = dir_of(path);
    if (!dir)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory", path);
    int rc = 0;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0)
        rc = kp_errf(err, errlen, KP_ERR_IO, "%s: cannot sync directory %s: %s",
                     path, dir, strerror(errno));
    if (fd >= 0)
        close(fd);
    free(dir);
    return rc;
}

int kp_afile_commit(kp_afile *f, char *err, size_t errlen)
{
    int rc = KP_ERR_IO;
    FILE *s = f->f;
    f->f = NULL;
    if (fflush(s) != 0 || ferror(s) || fsync(fileno(s)) != 0) {
        kp_errf(err, errlen, rc, "%s: write failed: %s", f->tmp, strerror(errno));
        fclose(s);
        goto fail;
    }
    if (fclose(s) != 0) {
        kp_errf(err, errlen, rc, "%s: close failed: %s", f->tmp, strerror(errno));
        goto fail;
    }
    if (rename(f->tmp, f->path) != 0) {
        kp_errf(err, errlen, rc, "%s: cannot rename %s over it: %s",
                f->path, f->tmp, strerror(errno));
        goto fail;
    }
    rc = sync_dir(f->path, err, errlen);
    free(f->tmp);   /* renamed: nothing left to remove */
    f->tmp = NULL;
fail:
    kp_afile_abort(f);
    return rc;
}

void kp_afile_abort(kp_afile *f)
{
    if (!f)
        return;
    if (f->f)
        fclose(f->f);
    if (f->tmp)
        unlink(f->tmp);
    free(f->tmp);
    free(f->path);
    free(f);
}

int kp_write_file_atomic(const char *path, const void *data, size_t n,
                         char *err, size_t errlen)
{
    kp_afile *f;
    int rc = kp_afile_open(path, &f, err, errlen);
    if (rc < 0)
        return rc;
    if (n && fwrite(data, 1, n, f->f) != n) {
        rc = kp_errf(err, errlen, KP_ERR_IO, "%s: write failed: %s", f->tmp, strerror(errno));
        kp_afile_abort(f);
        return rc;
    }
    return kp_afile_commit(f, err, errlen);
}

/* Reads fd to its end into *data (capacity *cap + 1, grown as needed);
 * sets *n; 0, or -1 with errno (ENOMEM when growth fails). */
static int read_all(int fd, char **data, size_t *cap, size_t *n)
{
    for (;;) {
        if (*n == *cap) {   /* file grew or is not regular: make room */
            char *p = *cap < ((size_t)1 << 40) ? realloc(*data, *cap * 2 + 4097) : NULL;
            if (!p) {
                errno = ENOMEM;
                return -1;
            }
            *data = p;
            *cap = *cap * 2 + 4096;
        }
        ssize_t r = read(fd, *data + *n, *cap - *n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return (int)r;
        *n += (size_t)r;
    }
}

int kp_read_file(const char *path, char **out, size_t *len, char *err, size_t errlen)
{
    int rc = KP_ERR_IO;
    char *data = NULL;
    struct stat sb;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &sb) != 0) {
        kp_errf(err, errlen, rc, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    /* room past the size so the end of file is seen without growing */
    size_t cap = (S_ISREG(sb.st_mode) ? (size_t)sb.st_size : 0) + 4096, n = 0;
    if (!(data = malloc(cap + 1)) || read_all(fd, &data, &cap, &n) != 0) {
        rc = errno == ENOMEM ? KP_ERR_NOMEM : KP_ERR_IO;
        kp_errf(err, errlen, rc, "%s: read failed: %s", path, strerror(errno));
        goto fail;
    }
    data[n] = 0;
    *out = data;
    if (len)
        *len = n;
    data = NULL;
    rc = 0;
fail:
    if (fd >= 0)
        close(fd);
    free(data);
    return rc;
}

int kp_read_chunks(const char *path, void (*fn)(void *arg, const void *p, size_t n), void *arg,
                   char *err, size_t errlen)
{
    enum { CHUNK = 1 << 16 };
    char *chunk = malloc(CHUNK);
    FILE *f = chunk ? fopen(path, "rb") : NULL;
    size_t n;
    int rc = 0;
    if (!chunk)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory", path);
    if (!f) {
        rc = kp_errf(err, errlen, KP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        free(chunk);
        return rc;
    }
    while ((n = fread(chunk, 1, CHUNK, f)) > 0)
        fn(arg, chunk, n);
    if (ferror(f))
        rc = kp_errf(err, errlen, KP_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
    fclose(f);
    free(chunk);
    return rc;
}

int kp_write_all(int fd, const void *p, size_t n)
{
    const char *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

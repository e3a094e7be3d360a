/* fs.c - the real file system behind kp_fs (POSIX calls and lib/afile). */
#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "../lib/afile.h"
#include "../lib/err.h"

static int real_stat(kp_fs *fs, const char *path, kp_fstat *st, char *err, size_t errlen)
{
    (void)fs;
    struct stat sb;
    memset(st, 0, sizeof *st);
    if (stat(path, &sb) != 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return 0;
        return kp_errf(err, errlen, KP_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    }
    st->exists = 1;
    st->is_dir = S_ISDIR(sb.st_mode);
    st->dev = (uint64_t)sb.st_dev;
    st->ino = (uint64_t)sb.st_ino;
    st->size = (int64_t)sb.st_size;
    st->mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
    return 0;
}

static int real_read(kp_fs *fs, const char *path, char **out, size_t *len,
                     char *err, size_t errlen)
{
    (void)fs;
    return kp_read_file(path, out, len, err, errlen);
}

static int real_hash(kp_fs *fs, const char *path, kp_hash *out, char *err, size_t errlen)
{
    (void)fs;
    if (access(path, F_OK) != 0 && errno == ENOENT)
        return kp_errf(err, errlen, KP_ERR_NOTFOUND, "%s: no such file", path);
    return kp_hash_file(path, out, err, errlen);
}

static int real_write_atomic(kp_fs *fs, const char *path, const void *data, size_t n,
                             char *err, size_t errlen)
{
    (void)fs;
    return kp_write_file_atomic(path, data, n, err, errlen);
}

static int real_append(kp_fs *fs, const char *path, const void *data, size_t n,
                       char *err, size_t errlen)
{
    (void)fs;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0)
        return kp_errf(err, errlen, KP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    ssize_t w;
    do
        w = write(fd, data, n);   /* one write: a line is not interleaved */
    while (w < 0 && errno == EINTR);
    int saved = errno;
    close(fd);
    if (w < 0 || (size_t)w != n)
        return kp_errf(err, errlen, KP_ERR_IO, "%s: append failed: %s", path,
                       w < 0 ? strerror(saved) : "short write");
    return 0;
}

static int real_remove(kp_fs *fs, const char *path, char *err, size_t errlen)
{
    (void)fs;
    struct stat sb;
    if (lstat(path, &sb) != 0 || S_ISDIR(sb.st_mode))
        return 0;   /* absent, or a directory we do not remove */
    if (unlink(path) != 0 && errno != ENOENT)
        return kp_errf(err, errlen, KP_ERR_IO, "%s: cannot remove: %s", path, strerror(errno));
    return 0;
}

static int real_mkdirs(kp_fs *fs, const char *path, char *err, size_t errlen)
{
    (void)fs;
    return kp_mkdirs(path, err, errlen);
}

/* A POSIX record lock (fcntl, not flock): it belongs to this process and is
 * not inherited by the children we fork without exec, so a killed run's
 * orphans never keep the next run out. */
static int real_lock(kp_fs *fs, const char *path, int *token, char *err, size_t errlen)
{
    (void)fs;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0)
        return kp_errf(err, errlen, KP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
    if (fcntl(fd, F_SETLK, &fl) == 0) {
        *token = fd;
        return 0;
    }
    int saved = errno;
    struct flock who = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
    long pid = fcntl(fd, F_GETLK, &who) == 0 && who.l_type != F_UNLCK ? (long)who.l_pid : 0;
    close(fd);
    if (saved != EACCES && saved != EAGAIN)
        return kp_errf(err, errlen, KP_ERR_IO, "%s: cannot lock: %s", path, strerror(saved));
    if (pid > 0)
        return kp_errf(err, errlen, KP_ERR_IO,
                       "another kpipe run (pid %ld) is using this run directory (%s)", pid, path);
    return kp_errf(err, errlen, KP_ERR_IO,
                   "another kpipe run is using this run directory (%s)", path);
}

static void real_unlock(kp_fs *fs, int token)
{
    (void)fs;
    if (token >= 0)
        close(token);   /* closing releases the record lock */
}

static int64_t real_now(kp_fs *fs)
{
    (void)fs;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static const kp_fs_ops real_ops = {
    real_stat, real_read, real_hash, real_write_atomic, real_append, real_remove,
    real_mkdirs, real_lock, real_unlock, real_now, NULL,
};

static kp_fs real_fs = { &real_ops };

kp_fs *kp_fs_real(void)
{
    return &real_fs;
}

void kp_fs_free(kp_fs *fs)
{
    if (fs && fs->ops->free)
        fs->ops->free(fs);
}

int kp_fs_stat(kp_fs *fs, const char *path, kp_fstat *st, char *err, size_t errlen)
{
    return fs->ops->stat(fs, path, st, err, errlen);
}

int kp_fs_hash(kp_fs *fs, const char *path, kp_hash *out, char *err, size_t errlen)
{
    return fs->ops->hash(fs, path, out, err, errlen);
}

int64_t kp_fs_now(kp_fs *fs)
{
    return fs->ops->now(fs);
}

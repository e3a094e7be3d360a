/* unpack.c - hostile archives unpacked safely with libarchive.
 *
 * Every entry's name is cleaned and checked before anything is written:
 * absolute paths, ".." components and control characters are refused.
 * Entries are written under a fresh temporary folder DIR/.kpipe-unpack.PID.XXXXXX
 * by walking their folders one openat(O_NOFOLLOW) at a time, so nothing is
 * ever written through a symlink (an earlier "s -> ." entry cannot redirect a
 * later "s/..." one).  A symlink's target may only climb ("..") at its start,
 * and no higher than the link's own folder: once the path has gone down a
 * name, which may itself be a symlink, it never climbs again, so it cannot
 * leave the folder however the links chain.  Hard links must name an earlier
 * regular file.  Bytes are counted as they are written (holes included).
 * When the whole archive is in, a dry pass checks that no file would replace
 * a folder, then the entries are renamed into DIR (merging folders).
 */
#include "unpack.h"
#include "err.h"
#include "afile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <locale.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#define DEFAULT_MAX_BYTES ((int64_t)64 << 30)
#define DEFAULT_MAX_ENTRIES ((int64_t)1000000)
#define TMP_PREFIX ".kpipe-unpack."
#define SHOWN 256           /* bytes of an entry name quoted in a message */

typedef struct unpacker {
    const char *archive;    /* borrowed: the path, for messages */
    struct archive *ar;
    int fd;                 /* the archive file, read by ar */
    int rootfd;             /* the temporary folder */
    int64_t max_bytes, max_entries;
    int64_t bytes, entries; /* so far */
    kp_buf files;           /* regular files, one per line, each once */
    const char *entry;      /* raw name of the current entry (borrowed) */
    const char *path;       /* its cleaned name (borrowed), once checked */
    char *err;
    size_t errlen;
} unpacker;

int kp_unpack_is_archive(const char *name)
{
    static const char *const ends[] = {".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2",
                                       ".tbz2", ".tar.xz", ".txz"};
    size_t n = name ? strlen(name) : 0;
    for (size_t i = 0; i < sizeof ends / sizeof ends[0]; i++) {
        size_t k = strlen(ends[i]);
        if (n > k && strcasecmp(name + n - k, ends[i]) == 0)
            return 1;
    }
    return 0;
}

/* Copies s into out (size SHOWN) with control characters as '?', cut with "...". */
static const char *shown(const char *s, char out[SHOWN])
{
    size_t i = 0;
    for (; s && s[i] && i < SHOWN - 4; i++)
        out[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    out[i] = 0;
    if (s && s[i])
        strcpy(out + i, "...");
    return out;
}

/* Writes "ARCHIVE: entry 'NAME' <what>" into the error buffer; returns status. */
static int refuse(unpacker *u, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int refuse(unpacker *u, int status, const char *fmt, ...)
{
    char what[512], name[SHOWN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return kp_errf(u->err, u->errlen, status, "%s: entry '%s' %s", u->archive,
                   shown(u->entry, name), what);
}

/* Reports libarchive's error about the current entry (or the archive). */
static int corrupt(unpacker *u)
{
    const char *why = archive_error_string(u->ar);
    char name[SHOWN];
    if (!u->entry)
        return kp_errf(u->err, u->errlen, KP_ERR_FORMAT, "%s: corrupt or truncated archive: %s",
                       u->archive, why ? why : "unknown error");
    return kp_errf(u->err, u->errlen, KP_ERR_FORMAT,
                   "%s: corrupt or truncated archive at entry '%s': %s", u->archive,
                   shown(u->entry, name), why ? why : "unknown error");
}

/* Cleans name into *out (heap): drops "." and empty components.  Returns
 * NULL, or why the name is refused (a static string; *out untouched). */
static const char *clean_path(const char *name, char **out)
{
    if (!name || !*name)
        return "has an empty name";
    if (name[0] == '/')
        return "has an absolute path";
    for (const char *p = name; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return "has a control character in its name";
    char *s = malloc(strlen(name) + 1);
    if (!s)
        return "cannot be held in memory";
    size_t n = 0;
    for (const char *p = name; *p;) {
        size_t k = strcspn(p, "/");
        if (k == 2 && p[0] == '.' && p[1] == '.') {
            free(s);
            return "has a '..' component";
        }
        if (k > 0 && !(k == 1 && p[0] == '.')) {
            if (n)
                s[n++] = '/';
            memcpy(s + n, p, k);
            n += k;
        }
        p += k + (p[k] == '/');
    }
    s[n] = 0;
    *out = s;
    return NULL;
}

/* Returns 1 when target, read by a link in a folder depth components deep,
 * is relative, not empty, and climbs only at its start and at most depth. */
static int link_stays_inside(const char *target, int depth)
{
    int went_down = 0;
    if (!target || !*target || target[0] == '/')
        return 0;
    for (const char *p = target; *p;) {
        size_t k = strcspn(p, "/");
        if (k == 2 && p[0] == '.' && p[1] == '.') {
            if (went_down || --depth < 0)
                return 0;
        } else if (k > 0 && !(k == 1 && p[0] == '.')) {
            went_down = 1;
        }
        p += k + (p[k] == '/');
    }
    return 1;
}

/* Returns the number of folders above path's last component. */
static int folder_depth(const char *path)
{
    int d = 0;
    for (const char *p = path; *p; p++)
        d += *p == '/';
    return d;
}

/* Says why the folder prefix (path, ending at name) could not be opened in
 * folder fd; called with errno from the failed openat. */
static int walk_error(unpacker *u, int fd, const char *name, const char *prefix)
{
    int e = errno;
    struct stat sb;
    if (fstatat(fd, name, &sb, AT_SYMLINK_NOFOLLOW) != 0)
        return refuse(u, e == ENOENT ? KP_ERR_FORMAT : KP_ERR_IO,
                      "goes through '%s', which cannot be opened: %s", prefix, strerror(e));
    if (S_ISLNK(sb.st_mode))
        return refuse(u, KP_ERR_FORMAT, "goes through the symlink '%s'; refused", prefix);
    if (!S_ISDIR(sb.st_mode))
        return refuse(u, KP_ERR_FORMAT, "goes through '%s', which is not a folder; refused",
                      prefix);
    return refuse(u, KP_ERR_IO, "cannot open the folder '%s': %s", prefix, strerror(e));
}

/* Opens path's folder under the temporary root, creating folders when create
 * is set and never following a symlink.  *fd is caller-owned (close it unless
 * it is u->rootfd); *leaf points into path at the last component. */
static int open_parent(unpacker *u, char *path, int create, int *fd, char **leaf)
{
    int cur = u->rootfd;
    char *p = path, *slash;
    while ((slash = strchr(p, '/'))) {
        *slash = 0;
        if (create && mkdirat(cur, p, 0755) == 0)
            fchmodat(cur, p, 0755, 0);
        int next = openat(cur, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int rc = next < 0 ? walk_error(u, cur, p, path) : 0;
        if (cur != u->rootfd)
            close(cur);
        if (rc < 0) {
            *slash = '/';
            return rc;
        }
        *slash = '/';
        cur = next;
        p = slash + 1;
    }
    *fd = cur;
    *leaf = p;
    return 0;
}

/* Drops the current entry's path from the files list (the earlier file of
 * that name is being replaced: by a folder, a link, or a later copy). */
static void forget_file(unpacker *u)
{
    size_t n = strlen(u->path);
    char *d = u->files.data;
    for (size_t at = 0, k; d && at < u->files.len; at += k + 1) {
        k = strcspn(d + at, "\n");
        if (k == n && memcmp(d + at, u->path, n) == 0) {
            memmove(d + at, d + at + n + 1, u->files.len - at - n);   /* the NUL too */
            u->files.len -= n + 1;
            return;
        }
    }
}

/* Clears the way for the current entry's leaf: removes an earlier file or
 * link of that name (a file also leaves the files list); a folder there is
 * refused. */
static int clear_leaf(unpacker *u, int fd, const char *leaf)
{
    struct stat sb;
    if (fstatat(fd, leaf, &sb, AT_SYMLINK_NOFOLLOW) != 0)
        return 0;
    if (S_ISDIR(sb.st_mode))
        return refuse(u, KP_ERR_FORMAT, "would replace the folder of an earlier entry; refused");
    if (unlinkat(fd, leaf, 0) != 0)
        return refuse(u, KP_ERR_IO, "cannot replace an earlier entry: %s", strerror(errno));
    if (S_ISREG(sb.st_mode))
        forget_file(u);
    return 0;
}

/* Adds the growth of a file's extent to the byte count; refused past the limit. */
static int count_bytes(unpacker *u, int64_t *end, int64_t new_end)
{
    if (new_end <= *end)
        return 0;
    if (new_end - *end > u->max_bytes - u->bytes)
        return refuse(u, KP_ERR_FORMAT, "makes the archive unpack to more than %lld bytes; refused",
                      (long long)u->max_bytes);
    u->bytes += new_end - *end;
    *end = new_end;
    return 0;
}

/* Writes n bytes at off; 0 or KP_ERR_IO. */
static int write_at(unpacker *u, int fd, const char *p, size_t n, int64_t off)
{
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return refuse(u, KP_ERR_IO, "cannot be written: %s", strerror(w < 0 ? errno : ENOSPC));
        p += w;
        n -= (size_t)w;
        off += w;
    }
    return 0;
}

/* Copies the entry's data blocks to fd, counting them, then any trailing hole. */
static int copy_data(unpacker *u, struct archive_entry *e, int fd)
{
    int64_t end = 0;
    for (;;) {
        const void *buf;
        size_t size;
        la_int64_t off;
        int r = archive_read_data_block(u->ar, &buf, &size, &off);
        if (r == ARCHIVE_EOF)
            break;
        if (r != ARCHIVE_OK)
            return corrupt(u);     /* a warning here is a bad checksum: an error */
        if (off < 0 || size > (size_t)(INT64_MAX - off))
            return refuse(u, KP_ERR_FORMAT, "has a data block at a bad offset; refused");
        int rc = count_bytes(u, &end, off + (int64_t)size);
        if (rc == 0)
            rc = write_at(u, fd, buf, size, off);
        if (rc < 0)
            return rc;
    }
    if (archive_entry_size_is_set(e) && archive_entry_size(e) > end) {
        int rc = count_bytes(u, &end, archive_entry_size(e));
        if (rc < 0)
            return rc;
        if (ftruncate(fd, (off_t)end) != 0)
            return refuse(u, KP_ERR_IO, "cannot be written: %s", strerror(errno));
    }
    return 0;
}

/* Creates the regular file leaf in fd from the entry's data (made durable by
 * one syncfs for the whole archive, see unpack_to_tmp). */
static int make_file(unpacker *u, struct archive_entry *e, int fd, const char *leaf)
{
    int64_t declared = archive_entry_size_is_set(e) ? archive_entry_size(e) : 0;
    if (declared > u->max_bytes - u->bytes)
        return refuse(u, KP_ERR_FORMAT, "makes the archive unpack to more than %lld bytes; refused",
                      (long long)u->max_bytes);
    int rc = clear_leaf(u, fd, leaf);
    if (rc < 0)
        return rc;
    mode_t mode = archive_entry_perm(e) & 0111 ? 0755 : 0644;
    int out = openat(fd, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (out < 0)
        return refuse(u, KP_ERR_IO, "cannot be created: %s", strerror(errno));
    rc = copy_data(u, e, out);
    if (rc == 0 && fchmod(out, mode) != 0)
        rc = refuse(u, KP_ERR_IO, "cannot be written: %s", strerror(errno));
    if (close(out) != 0 && rc == 0)
        rc = refuse(u, KP_ERR_IO, "cannot be written: %s", strerror(errno));
    return rc;
}

/* Creates the folder leaf in fd (an earlier file or link of that name is replaced). */
static int make_dir(unpacker *u, int fd, const char *leaf)
{
    struct stat sb;
    if (fstatat(fd, leaf, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(sb.st_mode))
        return 0;
    int rc = clear_leaf(u, fd, leaf);
    if (rc < 0)
        return rc;
    if (mkdirat(fd, leaf, 0755) != 0 || fchmodat(fd, leaf, 0755, 0) != 0)
        return refuse(u, KP_ERR_IO, "cannot be created: %s", strerror(errno));
    return 0;
}

/* Creates the symlink leaf in fd after checking that its target stays inside. */
static int make_symlink(unpacker *u, const char *path, const char *target, int fd,
                        const char *leaf)
{
    char t[SHOWN];
    if (!link_stays_inside(target, folder_depth(path)))
        return refuse(u, KP_ERR_FORMAT, "is a symlink to '%s', outside the folder; refused",
                      shown(target, t));
    int rc = clear_leaf(u, fd, leaf);
    if (rc < 0)
        return rc;
    if (symlinkat(target, fd, leaf) != 0)
        return refuse(u, KP_ERR_IO, "cannot be created: %s", strerror(errno));
    return 0;
}

/* Creates the hard link leaf in fd to an earlier regular file of the archive. */
static int make_hardlink(unpacker *u, const char *target, int fd, const char *leaf)
{
    char t[SHOWN], *clean = NULL, *tleaf;
    int tfd = -1, rc;
    struct stat sb;
    if (clean_path(target, &clean) || !*clean) {
        rc = refuse(u, KP_ERR_FORMAT, "is a hard link to '%s', outside the folder; refused",
                    shown(target, t));
        goto fail;
    }
    if ((rc = open_parent(u, clean, 0, &tfd, &tleaf)) < 0)
        goto fail;
    if (fstatat(tfd, tleaf, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(sb.st_mode)) {
        rc = refuse(u, KP_ERR_FORMAT, "is a hard link to '%s', which is not an earlier file; refused",
                    shown(target, t));
        goto fail;
    }
    if ((rc = clear_leaf(u, fd, leaf)) < 0)
        goto fail;
    if (linkat(tfd, tleaf, fd, leaf, 0) != 0)
        rc = refuse(u, KP_ERR_IO, "cannot be created: %s", strerror(errno));
fail:
    if (tfd >= 0 && tfd != u->rootfd)
        close(tfd);
    free(clean);
    return rc;
}

/* Checks the entry's name and kind; *path gets the cleaned name (heap). */
static int check_entry(unpacker *u, struct archive_entry *e, char **path)
{
    if (++u->entries > u->max_entries)
        return refuse(u, KP_ERR_FORMAT, "makes the archive hold more than %lld entries; refused",
                      (long long)u->max_entries);
    const char *why = clean_path(u->entry, path);
    if (why)
        return refuse(u, KP_ERR_FORMAT, "%s; refused", why);
    if (strncmp(*path, TMP_PREFIX, strlen(TMP_PREFIX)) == 0)
        return refuse(u, KP_ERR_FORMAT, "has a name kpipe keeps for itself; refused");
    mode_t type = archive_entry_filetype(e);
    if (!archive_entry_hardlink(e) && type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK)
        return refuse(u, KP_ERR_FORMAT, "is a device, fifo or socket; refused");
    if (!**path && type != AE_IFDIR)
        return refuse(u, KP_ERR_FORMAT, "has an empty name; refused");
    return 0;
}

/* Unpacks one entry under the temporary root. */
static int unpack_entry(unpacker *u, struct archive_entry *e)
{
    char *path = NULL, *leaf;
    int fd = -1, rc;
    if ((rc = check_entry(u, e, &path)) < 0 || !*path)
        goto fail;      /* "./" and the like: the root itself */
    u->path = path;
    const char *hard = archive_entry_hardlink(e);
    mode_t type = archive_entry_filetype(e);
    if ((rc = open_parent(u, path, 1, &fd, &leaf)) < 0)
        goto fail;
    if (hard)
        rc = make_hardlink(u, hard, fd, leaf);
    else if (type == AE_IFDIR)
        rc = make_dir(u, fd, leaf);
    else if (type == AE_IFLNK)
        rc = make_symlink(u, path, archive_entry_symlink(e), fd, leaf);
    else
        rc = make_file(u, e, fd, leaf);
    if (rc == 0 && (hard || type == AE_IFREG) && kp_buf_printf(&u->files, "%s\n", path) < 0)
        rc = kp_errf(u->err, u->errlen, KP_ERR_NOMEM, "%s: out of memory listing its files",
                     u->archive);
fail:
    if (fd >= 0 && fd != u->rootfd)
        close(fd);
    u->path = NULL;
    free(path);
    return rc;
}

/* Opens the archive for reading (zip, tar; gzip, bzip2, xz, lzma, zstd). */
static int open_archive(unpacker *u)
{
    int fd = u->fd = open(u->archive, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return kp_errf(u->err, u->errlen, KP_ERR_IO, "%s: cannot open: %s", u->archive,
                       strerror(errno));
    if (!(u->ar = archive_read_new()))
        return kp_errf(u->err, u->errlen, KP_ERR_NOMEM, "%s: out of memory", u->archive);
    archive_read_support_format_zip(u->ar);
    archive_read_support_format_tar(u->ar);
    archive_read_support_filter_gzip(u->ar);
    archive_read_support_filter_bzip2(u->ar);
    archive_read_support_filter_xz(u->ar);
    archive_read_support_filter_lzma(u->ar);
    archive_read_support_filter_zstd(u->ar);
    if (archive_read_open_fd(u->ar, fd, 1 << 16) != ARCHIVE_OK)
        return corrupt(u);
    return 0;
}

/* Reads every entry of the open archive into the temporary root. */
static int unpack_all(unpacker *u)
{
    for (;;) {
        struct archive_entry *e;
        u->entry = NULL;
        int r = archive_read_next_header(u->ar, &e);
        if (r == ARCHIVE_EOF)
            return 0;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
            return corrupt(u);
        u->entry = archive_entry_pathname(e);
        if (!u->entry) {
            const char *why = archive_error_string(u->ar);
            return kp_errf(u->err, u->errlen, KP_ERR_FORMAT,
                           "%s: entry %lld has a name that cannot be read (%s); refused",
                           u->archive, (long long)u->entries + 1, why ? why : "no name");
        }
        int rc = unpack_entry(u, e);
        if (rc < 0)
            return rc;
    }
}

/* nftw callback: removes one node of a tree (children first). */
static int rm_node(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

/* Removes a tree without following symlinks. */
static void rm_tree(const char *path)
{
    nftw(path, rm_node, 16, FTW_DEPTH | FTW_PHYS);
}

/* Lists the names in folder path, each NUL-terminated, into names. */
static int list_dir(const char *path, kp_buf *names, char *err, size_t errlen)
{
    DIR *d = opendir(path);
    if (!d)
        return kp_errf(err, errlen, KP_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
    struct dirent *de;
    int rc = 0;
    while (rc == 0 && (de = readdir(d)))
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0 &&
            kp_buf_add(names, de->d_name, strlen(de->d_name) + 1) < 0)
            rc = kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory", path);
    closedir(d);
    return rc;
}

/* Returns a heap "a/b", or NULL when out of memory. */
static char *join(const char *a, const char *b)
{
    char *s;
    return asprintf(&s, "%s/%s", a, b) < 0 ? NULL : s;
}

/* Moves src over dst (both non-folders, or dst missing), or src's folder
 * over a file or link dst; folders on both sides are merged by the caller. */
static int move_node(const char *src, const char *dst, int src_dir, int dst_exists,
                     char *err, size_t errlen)
{
    if (src_dir && dst_exists && unlink(dst) != 0)
        return kp_errf(err, errlen, KP_ERR_IO, "cannot replace %s: %s", dst, strerror(errno));
    if (rename(src, dst) != 0)
        return kp_errf(err, errlen, KP_ERR_IO, "cannot move %s to %s: %s", src, dst,
                       strerror(errno));
    return 0;
}

/* Moves the contents of folder src into folder dst, merging folders; with
 * dry set, only checks that no file of src would replace a folder of dst.
 * src + skip is the entries' path inside the archive, for messages. */
static int merge(const char *src, const char *dst, size_t skip, int dry, char *err,
                 size_t errlen)
{
    kp_buf names;
    kp_buf_init(&names, 0);
    int rc = list_dir(src, &names, err, errlen);
    for (size_t at = 0; rc == 0 && at < names.len; at += strlen(names.data + at) + 1) {
        char *s = join(src, names.data + at), *d = join(dst, names.data + at);
        struct stat ss, ds;
        if (!s || !d) {
            free(s);
            free(d);
            rc = kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory", dst);
            break;
        }
        int sdir = lstat(s, &ss) == 0 && S_ISDIR(ss.st_mode);
        int dexists = lstat(d, &ds) == 0, ddir = dexists && S_ISDIR(ds.st_mode);
        if (sdir && ddir)
            rc = merge(s, d, skip, dry, err, errlen);
        else if (ddir)
            rc = kp_errf(err, errlen, KP_ERR_FORMAT,
                         "entry '%s' would replace the folder %s; refused", s + skip, d);
        else if (!dry)
            rc = move_node(s, d, sdir, dexists, err, errlen);
        free(s);
        free(d);
    }
    kp_buf_free(&names);
    if (rc == 0 && !dry) {
        int fd = open(dst, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
            fsync(fd);
            close(fd);
        }
    }
    return rc;
}

/* Unpacks the archive into a fresh temporary folder under dir (*tmp, heap). */
static int unpack_to_tmp(unpacker *u, const char *dir, char **tmp)
{
    if (asprintf(tmp, "%s/" TMP_PREFIX "%ld.XXXXXX", dir, (long)getpid()) < 0) {
        *tmp = NULL;
        return kp_errf(u->err, u->errlen, KP_ERR_NOMEM, "%s: out of memory", u->archive);
    }
    if (!mkdtemp(*tmp)) {
        int rc = kp_errf(u->err, u->errlen, KP_ERR_IO, "%s: cannot create a folder in %s: %s",
                         u->archive, dir, strerror(errno));
        free(*tmp);
        *tmp = NULL;
        return rc;
    }
    u->rootfd = open(*tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (u->rootfd < 0)
        return kp_errf(u->err, u->errlen, KP_ERR_IO, "%s: cannot open %s: %s", u->archive,
                       *tmp, strerror(errno));
    int rc = open_archive(u);
    if (rc == 0)
        rc = unpack_all(u);
    /* every file on disk before any is renamed into place: one syncfs
     * costs what one fsync does, where a fsync per file of a 20,000-file
     * archive took seconds */
    if (rc == 0 && syncfs(u->rootfd) != 0)
        rc = kp_errf(u->err, u->errlen, KP_ERR_IO, "%s: cannot sync %s: %s", u->archive, *tmp,
                     strerror(errno));
    return rc;
}

/* libarchive gives names in the thread's locale, and a zip's UTF-8 names
 * have no form in the C locale: this thread reads in C.UTF-8 meanwhile. */
static locale_t utf8_locale_begin(locale_t *old)
{
    locale_t utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
    if (utf8)
        *old = uselocale(utf8);
    return utf8;
}

/* Restores the thread's locale and frees the UTF-8 one (NULL accepted). */
static void utf8_locale_end(locale_t utf8, locale_t old)
{
    if (!utf8)
        return;
    uselocale(old);
    freelocale(utf8);
}

int kp_unpack(const char *archive, const char *dir, const kp_unpack_limits *lim,
              kp_buf *files, char *err, size_t errlen)
{
    unpacker u = {.archive = archive, .fd = -1, .rootfd = -1, .err = err, .errlen = errlen,
                  .max_bytes = lim && lim->max_bytes > 0 ? lim->max_bytes : DEFAULT_MAX_BYTES,
                  .max_entries = lim && lim->max_entries > 0 ? lim->max_entries
                                                            : DEFAULT_MAX_ENTRIES};
    kp_buf_init(&u.files, 0);
    char *tmp = NULL;
    size_t old_len = files ? files->len : 0;
    struct stat sb;
    int made_dir = stat(dir, &sb) != 0, rc;
    locale_t old = (locale_t)0, utf8 = utf8_locale_begin(&old);
    if ((rc = kp_mkdirs(dir, err, errlen)) < 0 || (rc = unpack_to_tmp(&u, dir, &tmp)) < 0)
        goto fail;
    if (files && kp_buf_add(files, u.files.data, u.files.len) < 0) {
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory listing its files", archive);
        goto fail;
    }
    size_t skip = strlen(tmp) + 1;
    if ((rc = merge(tmp, dir, skip, 1, err, errlen)) < 0 ||
        (rc = merge(tmp, dir, skip, 0, err, errlen)) < 0)
        kp_err_prefix(err, errlen, rc, archive);
fail:
    if (rc < 0 && files && files->len > old_len)
        files->data[files->len = old_len] = 0;
    if (u.ar)
        archive_read_free(u.ar);    /* leaves the fd open: it is ours */
    if (u.fd >= 0)
        close(u.fd);
    if (u.rootfd >= 0)
        close(u.rootfd);
    if (tmp)
        rm_tree(tmp);
    if (rc < 0 && made_dir)
        rmdir(dir);
    free(tmp);
    kp_buf_free(&u.files);
    utf8_locale_end(utf8, old);
    return rc;
}

/* fs.h - the file-system operations the executor uses, behind an ops table.
 *
 * After ninja's DiskInterface: the executor and the run log only touch files
 * through a kp_fs, so tests swap the real one for an in-memory file system
 * with a fake clock that counts how many files it was asked to read.
 * Paths are plain strings; the in-memory one treats them as opaque keys
 * (no "." or ".." resolution), so callers should use one spelling per file.
 */
#ifndef KP_FS_H
#define KP_FS_H

#include <stddef.h>
#include <stdint.h>
#include "../lib/hash.h"

/* What stat says about a path.  The hash cache trusts a file's content hash
 * while (dev, ino, size, mtime_ns) are unchanged, as DVC does. */
typedef struct kp_fstat {
    int exists;
    int is_dir;
    uint64_t dev, ino;
    int64_t size;
    int64_t mtime_ns;
} kp_fstat;

typedef struct kp_fs kp_fs;

typedef struct kp_fs_ops {
    /* Fills *st (exists = 0 when the path is absent); 0 or KP_ERR_IO. */
    int (*stat)(kp_fs *fs, const char *path, kp_fstat *st, char *err, size_t errlen);
    /* Reads a whole file into a NUL-terminated heap buffer (*out, caller frees). */
    int (*read)(kp_fs *fs, const char *path, char **out, size_t *len, char *err, size_t errlen);
    /* Hashes a file's content into *out; 0, KP_ERR_NOTFOUND or KP_ERR_IO. */
    int (*hash)(kp_fs *fs, const char *path, kp_hash *out, char *err, size_t errlen);
    /* Replaces path atomically with n bytes (temp file, fsync, rename). */
    int (*write_atomic)(kp_fs *fs, const char *path, const void *data, size_t n,
                        char *err, size_t errlen);
    /* Appends n bytes to path (created if missing) with one write(), no fsync. */
    int (*append)(kp_fs *fs, const char *path, const void *data, size_t n,
                  char *err, size_t errlen);
    /* Removes a regular file; a missing file is not an error. */
    int (*remove)(kp_fs *fs, const char *path, char *err, size_t errlen);
    /* Creates a directory and its parents. */
    int (*mkdirs)(kp_fs *fs, const char *path, char *err, size_t errlen);
    /* Takes an exclusive lock on path (created if missing) for this process;
     * KP_ERR_IO naming the holder's pid when another process holds it.
     * *token is for unlock. */
    int (*lock)(kp_fs *fs, const char *path, int *token, char *err, size_t errlen);
    /* Releases a lock taken by lock. */
    void (*unlock)(kp_fs *fs, int token);
    /* Returns the current time in nanoseconds (wall clock, or the fake one). */
    int64_t (*now)(kp_fs *fs);
    /* Frees the file system (NULL for the static real one). */
    void (*free)(kp_fs *fs);
} kp_fs_ops;

struct kp_fs {
    const kp_fs_ops *ops;
};

/* Returns the real file system (static; kp_fs_free on it does nothing). */
kp_fs *kp_fs_real(void);

/* Frees a file system; NULL is accepted. */
void kp_fs_free(kp_fs *fs);

/* Shorthands for fs->ops->X(fs, ...). */
int kp_fs_stat(kp_fs *fs, const char *path, kp_fstat *st, char *err, size_t errlen);
int kp_fs_hash(kp_fs *fs, const char *path, kp_hash *out, char *err, size_t errlen);
int64_t kp_fs_now(kp_fs *fs);

/* ---- the in-memory file system (fs_mem.c), for tests ---- */

/* Returns a new empty in-memory file system whose clock starts at 1 s and
 * advances 1 ms on every write; NULL on allocation failure.  Free with kp_fs_free. */
kp_fs *kp_fs_mem_create(void);

/* Writes (replacing) a file; its mtime is the clock, its inode a new number. 0 or KP_ERR_NOMEM. */
int kp_fs_mem_put(kp_fs *fs, const char *path, const char *text);

/* Returns the content of a file (borrowed), or NULL if absent. */
const char *kp_fs_mem_get(kp_fs *fs, const char *path);

/* Returns how many times file contents were read or hashed since creation. */
int kp_fs_mem_reads(kp_fs *fs);

/* Moves the fake clock forward by ns nanoseconds. */
void kp_fs_mem_advance(kp_fs *fs, int64_t ns);

#endif

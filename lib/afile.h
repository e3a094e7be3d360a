/* afile.h - atomic file output: write to a temporary file, fsync, rename.
 *
 * A reader never sees a half-written file: until kp_afile_commit() returns 0
 * the destination is untouched (or absent), whatever kills the process.
 */
#ifndef KP_AFILE_H
#define KP_AFILE_H

#include <stddef.h>
#include <stdio.h>

typedef struct kp_afile kp_afile;

/* Opens "<path>.tmp.<pid>" for writing in path's directory (created if
 * missing); *out is caller-owned, release it with commit or abort. */
int kp_afile_open(const char *path, kp_afile **out, char *err, size_t errlen);

/* Returns the stdio stream to write to; borrowed from f. */
FILE *kp_afile_stream(kp_afile *f);

/* Flushes, fsyncs, renames over path, fsyncs the directory, frees f.
 * On failure the temporary file is removed and f is freed all the same. */
int kp_afile_commit(kp_afile *f, char *err, size_t errlen);

/* Removes the temporary file and frees f; NULL is accepted. */
void kp_afile_abort(kp_afile *f);

/* Writes n bytes to path atomically; 0 or a negative status. */
int kp_write_file_atomic(const char *path, const void *data, size_t n,
                         char *err, size_t errlen);

/* Creates a directory and its parents (like mkdir -p); 0 or KP_ERR_IO. */
int kp_mkdirs(const char *path, char *err, size_t errlen);

/* Feeds a whole file to fn(arg, bytes, n) in 64 KiB chunks; 0, or KP_ERR_IO /
 * KP_ERR_NOMEM with the path in err. */
int kp_read_chunks(const char *path, void (*fn)(void *arg, const void *p, size_t n), void *arg,
                   char *err, size_t errlen);
/* Writes n bytes to fd, retrying short writes and EINTR; 0, or -1 with errno set. */
int kp_write_all(int fd, const void *p, size_t n);
/* Reads a whole file into a NUL-terminated heap buffer (*out, caller frees). */
int kp_read_file(const char *path, char **out, size_t *len, char *err, size_t errlen);

#endif

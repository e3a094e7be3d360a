/* gzip.h - gzip-compressed files written atomically (zlib), for submissions
 * that Kaggle takes compressed (a Carvana RLE file is ~400 MB plain). */
#ifndef KP_GZIP_H
#define KP_GZIP_H

#include <stddef.h>

/* Compresses data[0..n) as one gzip member (no name, mtime 0: the bytes
 * depend only on the data and zlib) and writes it to path atomically
 * (lib/afile.h); 0 or a negative status. */
int kp_gzip_file_atomic(const char *path, const void *data, size_t n, char *err,
                        size_t errlen);

/* Reads path whole into a NUL-terminated heap buffer (*out, caller frees;
 * *len bytes): a gzip file (every member) uncompressed, any other file as it
 * is.  At most max bytes (0 = 1 GiB).  0, or KP_ERR_IO (cannot open),
 * KP_ERR_FORMAT (a corrupt or truncated gzip stream) or KP_ERR_NOMEM (out of
 * memory or over max), with the path in err; *out untouched on failure. */
int kp_gzip_read_file(const char *path, size_t max, char **out, size_t *len, char *err,
                      size_t errlen);

#endif

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

#endif

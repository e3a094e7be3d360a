/* gzip.c - gzip-compressed files written atomically (see gzip.h). */
#include <stdlib.h>
#include <stdint.h>
#include <zlib.h>
#include "afile.h"
#include "err.h"
#include "gzip.h"

int kp_gzip_file_atomic(const char *path, const void *data, size_t n, char *err,
                        size_t errlen)
{
    z_stream z = {0};
    if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "%s: cannot start zlib", path);
    size_t cap = deflateBound(&z, (uLong)n) + 64;
    unsigned char *out = malloc(cap);
    int rc = out ? 0 : kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory compressing", path);
    z.next_in = (unsigned char *)data;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    if (rc == 0 && (n > UINT32_MAX || cap > UINT32_MAX || deflate(&z, Z_FINISH) != Z_STREAM_END))
        rc = kp_errf(err, errlen, KP_ERR_IO, "%s: zlib could not compress %zu bytes", path, n);
    if (rc == 0)
        rc = kp_write_file_atomic(path, out, z.total_out, err, errlen);
    deflateEnd(&z);
    free(out);
    return rc;
}

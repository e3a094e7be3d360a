/* gzip.c - gzip-compressed files written atomically, and read back (see gzip.h). */
#include <errno.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <zlib.h>
#include "afile.h"
#include "buf.h"
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

int kp_gzip_read_file(const char *path, size_t max, char **out, size_t *len, char *err,
                      size_t errlen)
{
    kp_buf b;
    char chunk[65536];
    int n, zerr = Z_OK, rc = 0;
    kp_buf_init(&b, max);
    errno = 0;
    gzFile f = gzopen(path, "rb");
    if (!f)
        return kp_errf(err, errlen, KP_ERR_IO, "%s: cannot open: %s", path,
                       errno ? strerror(errno) : "out of memory");
    while (rc == 0 && (n = gzread(f, chunk, sizeof chunk)) > 0)
        if (kp_buf_add(&b, chunk, (size_t)n) < 0)
            rc = kp_errf(err, errlen, KP_ERR_NOMEM, "%s: more than %zu bytes uncompressed, or "
                         "out of memory", path, max ? max : (size_t)1 << 30);
    const char *why = rc == 0 ? gzerror(f, &zerr) : NULL;
    if (rc == 0 && zerr != Z_OK)
        rc = kp_errf(err, errlen, zerr == Z_ERRNO ? KP_ERR_IO : KP_ERR_FORMAT,
                     "%s: cannot read the gzip data: %s", path,
                     zerr == Z_ERRNO ? strerror(errno) : why);
    gzclose(f);
    size_t got = b.len;
    char *text = rc == 0 ? kp_buf_take(&b) : NULL;
    if (rc == 0 && !text)
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory", path);
    if (rc == 0) {
        *out = text;
        *len = got;
    }
    kp_buf_free(&b);
    return rc;
}

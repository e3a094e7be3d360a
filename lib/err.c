/* err.c - status codes and caller-owned error buffers. */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const status_text[] = {
    "success",
    "input/output error",
    "malformed input file",
    "invalid configuration",
    "out of memory",
    "invalid argument",
    "cycle in the stage graph",
    "a task failed",
    "not found",
    "mismatch between artifacts",
    "internal error",
};

const char *kp_strerror(int status)
{
    int i = -status;
    if (i < 0 || i >= (int)(sizeof status_text / sizeof status_text[0]))
        return "unknown status";
    return status_text[i];
}

int kp_errf(char *err, size_t errlen, int status, const char *fmt, ...)
{
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return status;
}

int kp_err_prefix(char *err, size_t errlen, int status, const char *prefix)
{
    if (!err || errlen == 0)
        return status;
    size_t plen = strlen(prefix) + 2;   /* "prefix: " */
    size_t mlen = strnlen(err, errlen - 1);
    if (plen >= errlen) {
        snprintf(err, errlen, "%s", prefix);
        return status;
    }
    if (mlen > errlen - 1 - plen)
        mlen = errlen - 1 - plen;       /* keep the prefix, cut the tail */
    memmove(err + plen, err, mlen);
    memcpy(err, prefix, plen - 2);
    err[plen - 2] = ':';
    err[plen - 1] = ' ';
    err[plen + mlen] = 0;
    return status;
}

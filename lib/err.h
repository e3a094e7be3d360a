/* err.h - status codes and caller-owned error buffers.
 *
 * Every fallible function returns 0 (KP_OK) or a negative kp_status and, on
 * failure, writes one human-readable sentence into an error buffer the caller
 * owns (char *err, size_t errlen; err may be NULL when errlen is 0).
 * Messages about input files name the place: "FILE:LINE:COL: what is wrong".
 */
#ifndef KP_ERR_H
#define KP_ERR_H

#include <stddef.h>

enum kp_status {
    KP_OK = 0,
    KP_ERR_IO = -1,        /* a system call failed (errno text in message) */
    KP_ERR_FORMAT = -2,    /* an input file is malformed or hostile */
    KP_ERR_CONFIG = -3,    /* the YAML config is invalid */
    KP_ERR_NOMEM = -4,     /* allocation failed */
    KP_ERR_ARG = -5,       /* a bad argument or parameter value */
    KP_ERR_CYCLE = -6,     /* the stage graph has a cycle */
    KP_ERR_TASK = -7,      /* one or more tasks failed */
    KP_ERR_NOTFOUND = -8,  /* a named thing (file, tensor, stage) is missing */
    KP_ERR_MISMATCH = -9,  /* artifacts disagree (folds hash, shapes, model type) */
    KP_ERR_INTERNAL = -10  /* a bug: an invariant did not hold */
};

/* Recommended size of an error buffer. */
#define KP_ERRLEN 1024

/* Returns a static description of a status code. */
const char *kp_strerror(int status);

/* Writes the formatted message into err (if errlen > 0) and returns status. */
int kp_errf(char *err, size_t errlen, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Prefixes err (in place) with "prefix: "; returns status unchanged. */
int kp_err_prefix(char *err, size_t errlen, int status, const char *prefix);

#endif

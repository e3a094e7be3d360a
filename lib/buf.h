/* buf.h - a growable byte buffer with a size cap (after curl's dynbuf).
 *
 * Append results must be checked: growth past the cap or a failed allocation
 * returns KP_ERR_NOMEM and leaves the buffer unchanged.  The bytes are always
 * NUL-terminated so kp_buf_str() can be used as a C string.
 */
#ifndef KP_BUF_H
#define KP_BUF_H

#include <stddef.h>

#define KP_WARN_UNUSED __attribute__((warn_unused_result))

typedef struct kp_buf {
    char *data;     /* owned; NULL until the first append */
    size_t len;     /* bytes used, excluding the terminating NUL */
    size_t cap;     /* bytes allocated */
    size_t max;     /* growth limit in bytes (0 = 1 GiB) */
} kp_buf;

/* Initialises an empty buffer that may grow to max bytes (0 = 1 GiB). */
void kp_buf_init(kp_buf *b, size_t max);

/* Frees the bytes; the buffer is empty and reusable afterwards. NULL is accepted. */
void kp_buf_free(kp_buf *b);

/* Empties the buffer without freeing its storage. */
void kp_buf_reset(kp_buf *b);

/* Appends n bytes; 0 or KP_ERR_NOMEM. */
KP_WARN_UNUSED int kp_buf_add(kp_buf *b, const void *p, size_t n);

/* Appends a NUL-terminated string; 0 or KP_ERR_NOMEM. */
KP_WARN_UNUSED int kp_buf_adds(kp_buf *b, const char *s);

/* Appends printf-formatted text; 0 or KP_ERR_NOMEM. */
KP_WARN_UNUSED int kp_buf_printf(kp_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Returns the contents as a C string ("" when empty); borrowed from b. */
const char *kp_buf_str(const kp_buf *b);

/* Hands the bytes to the caller (who frees them) and empties b. "" if empty. */
char *kp_buf_take(kp_buf *b);

#endif

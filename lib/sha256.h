/* sha256.h - SHA-256 digests (OpenSSL's libcrypto), for declared checksums.
 *
 * Hex form is 64 lowercase digits; parsing accepts either case.
 */
#ifndef KP_SHA256_H
#define KP_SHA256_H

#include <stddef.h>

#define KP_SHA256_HEXLEN 65   /* 64 hex digits + NUL */

typedef struct kp_sha256 kp_sha256;

/* Returns a new streaming digest, or NULL on allocation failure (kp_sha256_free). */
kp_sha256 *kp_sha256_create(void);

/* Frees a digest; NULL is accepted. */
void kp_sha256_free(kp_sha256 *s);

/* Feeds n bytes. */
void kp_sha256_add(kp_sha256 *s, const void *p, size_t n);

/* Writes the hex digest of everything fed (the digest cannot be fed again). */
void kp_sha256_hex(kp_sha256 *s, char hex[KP_SHA256_HEXLEN]);

/* Digests a whole file; 0 or KP_ERR_IO naming the path. */
int kp_sha256_file(const char *path, char hex[KP_SHA256_HEXLEN], char *err, size_t errlen);

/* Returns 1 when s is 64 hex digits. */
int kp_sha256_valid(const char *s);

/* Returns 1 when two hex digests are equal (case-insensitive). */
int kp_sha256_eq(const char *a, const char *b);

#endif

/* hash.h - content hashes (XXH3-128 from Debian's libxxhash).
 *
 * Used for cache keys, file content hashes and the folds hash carried by
 * every prediction artifact.  Hex form is 32 lowercase characters.
 */
#ifndef KP_HASH_H
#define KP_HASH_H

#include <stddef.h>
#include <stdint.h>

typedef struct kp_hash { uint64_t hi, lo; } kp_hash;

#define KP_HASH_HEXLEN 33   /* 32 hex digits + NUL */

typedef struct kp_hasher kp_hasher;

/* Returns a new streaming hasher, or NULL on allocation failure; free with kp_hasher_free. */
kp_hasher *kp_hasher_create(void);

/* Frees a hasher; NULL is accepted. */
void kp_hasher_free(kp_hasher *h);

/* Feeds n bytes. */
void kp_hasher_add(kp_hasher *h, const void *p, size_t n);

/* Feeds a string and its terminating NUL (so "a","b" differs from "ab"). */
void kp_hasher_adds(kp_hasher *h, const char *s);

/* Returns the digest of everything fed so far (the hasher may go on). */
kp_hash kp_hasher_digest(const kp_hasher *h);

/* Returns the hash of n bytes. */
kp_hash kp_hash_bytes(const void *p, size_t n);

/* Hashes a whole file by path into *out; 0 or KP_ERR_IO with the path in err. */
int kp_hash_file(const char *path, kp_hash *out, char *err, size_t errlen);

/* Writes 32 hex digits and a NUL into hex[KP_HASH_HEXLEN]. */
void kp_hash_hex(kp_hash h, char hex[KP_HASH_HEXLEN]);

/* Parses 32 hex digits; 0 or KP_ERR_FORMAT. */
int kp_hash_parse(const char *hex, kp_hash *out);

/* Returns 1 when the hashes are equal. */
int kp_hash_eq(kp_hash a, kp_hash b);

#endif

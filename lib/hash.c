/* hash.c - content hashes (XXH3-128 from Debian's libxxhash). */
#include "hash.h"
#include "afile.h"
#include "err.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>


struct kp_hasher { XXH3_state_t *st; };

kp_hasher *kp_hasher_create(void)
{
    kp_hasher *h = malloc(sizeof *h);
    if (!h)
        return NULL;
    h->st = XXH3_createState();
    if (!h->st || XXH3_128bits_reset(h->st) != XXH_OK) {
        kp_hasher_free(h);
        return NULL;
    }
    return h;
}

void kp_hasher_free(kp_hasher *h)
{
    if (!h)
        return;
    if (h->st)
        XXH3_freeState(h->st);
    free(h);
}

void kp_hasher_add(kp_hasher *h, const void *p, size_t n)
{
    if (n)
        XXH3_128bits_update(h->st, p, n);
}

void kp_hasher_adds(kp_hasher *h, const char *s)
{
    XXH3_128bits_update(h->st, s, strlen(s) + 1);
}

static kp_hash from_xxh(XXH128_hash_t x)
{
    kp_hash r = { x.high64, x.low64 };
    return r;
}

kp_hash kp_hasher_digest(const kp_hasher *h)
{
    return from_xxh(XXH3_128bits_digest(h->st));
}

kp_hash kp_hash_bytes(const void *p, size_t n)
{
    static const char empty = 0;
    return from_xxh(XXH3_128bits(n ? p : &empty, n));
}

/* kp_read_chunks' callback: feeds a hasher. */
static void add_chunk(void *h, const void *p, size_t n)
{
    kp_hasher_add(h, p, n);
}

int kp_hash_file(const char *path, kp_hash *out, char *err, size_t errlen)
{
    kp_hasher *h = kp_hasher_create();
    int rc = h ? kp_read_chunks(path, add_chunk, h, err, errlen)
               : kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory while hashing", path);
    if (rc == 0)
        *out = kp_hasher_digest(h);
    kp_hasher_free(h);
    return rc;
}

void kp_hash_hex(kp_hash h, char hex[KP_HASH_HEXLEN])
{
    snprintf(hex, KP_HASH_HEXLEN, "%016llx%016llx",
             (unsigned long long)h.hi, (unsigned long long)h.lo);
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int kp_hash_parse(const char *hex, kp_hash *out)
{
    uint64_t w[2] = { 0, 0 };
    for (int i = 0; i < 32; i++) {
        int d = hex_digit(hex[i]);   /* stops at a NUL: hex_digit(0) < 0 */
        if (d < 0)
            return KP_ERR_FORMAT;
        w[i / 16] = w[i / 16] << 4 | (uint64_t)d;
    }
    if (hex[32] != 0)
        return KP_ERR_FORMAT;
    out->hi = w[0];
    out->lo = w[1];
    return 0;
}

int kp_hash_eq(kp_hash a, kp_hash b)
{
    return a.hi == b.hi && a.lo == b.lo;
}

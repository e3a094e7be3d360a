/* sha256.c - SHA-256 digests on OpenSSL's EVP API. */
#include "sha256.h"
#include "afile.h"
#include "err.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

struct kp_sha256 {
    EVP_MD_CTX *ctx;
    int ok;         /* 0 once an EVP call failed: the digest is then all zeros */
};

kp_sha256 *kp_sha256_create(void)
{
    kp_sha256 *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->ctx = EVP_MD_CTX_new();
    if (!s->ctx || EVP_DigestInit_ex(s->ctx, EVP_sha256(), NULL) != 1) {
        kp_sha256_free(s);
        return NULL;
    }
    s->ok = 1;
    return s;
}

void kp_sha256_free(kp_sha256 *s)
{
    if (!s)
        return;
    EVP_MD_CTX_free(s->ctx);
    free(s);
}

void kp_sha256_add(kp_sha256 *s, const void *p, size_t n)
{
    if (n && s->ok && EVP_DigestUpdate(s->ctx, p, n) != 1)
        s->ok = 0;
}

void kp_sha256_hex(kp_sha256 *s, char hex[KP_SHA256_HEXLEN])
{
    static const char digits[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE] = {0};
    unsigned int n = 0;
    if (!s->ok || EVP_DigestFinal_ex(s->ctx, md, &n) != 1 || n != 32)
        memset(md, 0, sizeof md);
    s->ok = 0;      /* finalised: further input is ignored */
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[64] = 0;
}

/* kp_read_chunks' callback: feeds a digest. */
static void add_chunk(void *s, const void *p, size_t n)
{
    kp_sha256_add(s, p, n);
}

int kp_sha256_file(const char *path, char hex[KP_SHA256_HEXLEN], char *err, size_t errlen)
{
    kp_sha256 *s = kp_sha256_create();
    int rc = s ? kp_read_chunks(path, add_chunk, s, err, errlen)
               : kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory", path);
    if (rc == 0)
        kp_sha256_hex(s, hex);
    kp_sha256_free(s);
    return rc;
}

int kp_sha256_valid(const char *s)
{
    if (!s)
        return 0;
    for (int i = 0; i < 64; i++)
        if (!isxdigit((unsigned char)s[i]))
            return 0;
    return s[64] == 0;
}

int kp_sha256_eq(const char *a, const char *b)
{
    return kp_sha256_valid(a) && kp_sha256_valid(b) && strncasecmp(a, b, 64) == 0;
}

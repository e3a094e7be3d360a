/* kaggle_creds.c - the Kaggle credentials, in the Kaggle tools' order. */
#include "kaggle_creds.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "err.h"

#define SECRET_MAX 4096
#define PATH_LEN 4096

struct kp_kaggle_creds {
    char header[SECRET_MAX + 64];   /* "Authorization: ..." */
    char source[PATH_LEN + 32];
    char user[256];
};

const char *kp_kaggle_creds_header(const kp_kaggle_creds *c) { return c->header; }
const char *kp_kaggle_creds_source(const kp_kaggle_creds *c) { return c->source; }
const char *kp_kaggle_creds_user(const kp_kaggle_creds *c) { return c->user; }

void kp_kaggle_creds_free(kp_kaggle_creds *c)
{
    if (!c)
        return;
    explicit_bzero(c, sizeof *c);
    free(c);
}

int kp_kaggle_config_dir(char *out, size_t outlen)
{
    const char *env = getenv("KAGGLE_CONFIG_DIR"), *home = getenv("HOME");
    const char *xdg = getenv("XDG_CONFIG_HOME");
    struct stat sb;
    int n;
    if (env && *env)
        n = snprintf(out, outlen, "%s", env);
    else if (home && *home && (n = snprintf(out, outlen, "%s/.kaggle", home)) > 0 &&
             (size_t)n < outlen && stat(out, &sb) == 0 && S_ISDIR(sb.st_mode))
        ;
    else if (xdg && *xdg)
        n = snprintf(out, outlen, "%s/kaggle", xdg);
    else
        n = snprintf(out, outlen, "%s/.config/kaggle", home ? home : "");
    return n > 0 && (size_t)n < outlen ? 0 : KP_ERR_ARG;
}

/* Reads a small credentials file into buf after checking nobody else may
 * read it; 1 = read, 0 = absent, < 0 = refused or unreadable. */
static int read_secret_file(const char *path, char *buf, size_t len, char *err, size_t errlen)
{
    struct stat sb;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : kp_errf(err, errlen, KP_ERR_IO, "%s: %s", path, strerror(errno));
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return kp_errf(err, errlen, KP_ERR_ARG, "%s: not a regular file", path);
    }
    if (sb.st_mode & 077) {
        close(fd);
        return kp_errf(err, errlen, KP_ERR_ARG,
                       "%s holds Kaggle credentials but group or others may read it (mode %04o); "
                       "fix it with: chmod 600 %s", path, (unsigned)(sb.st_mode & 07777), path);
    }
    ssize_t n = read(fd, buf, len - 1);
    close(fd);
    if (n < 0)
        return kp_errf(err, errlen, KP_ERR_IO, "%s: %s", path, strerror(errno));
    if ((size_t)n == len - 1)
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: too long for a Kaggle credential", path);
    buf[n] = 0;
    return 1;
}

/* Strips surrounding white space in place; returns s. */
static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = 0;
    return s;
}

/* Fills a Bearer header; a token with control characters or spaces is refused. */
static int set_bearer(kp_kaggle_creds *c, const char *token, char *err, size_t errlen)
{
    if (!*token || strlen(token) > SECRET_MAX || token[strcspn(token, " \t\r\n")])
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: not a Kaggle API token (empty, too long "
                       "or with spaces)", c->source);
    snprintf(c->header, sizeof c->header, "Authorization: Bearer %s", token);
    return 0;
}

/* Base64 of src into dst (dstlen >= 4 * ceil(n / 3) + 1). */
static void base64(const unsigned char *src, size_t n, char *dst)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i = 0, o = 0;
    for (; i + 2 < n; i += 3) {
        unsigned v = (unsigned)src[i] << 16 | (unsigned)src[i + 1] << 8 | src[i + 2];
        dst[o++] = tab[v >> 18 & 63], dst[o++] = tab[v >> 12 & 63];
        dst[o++] = tab[v >> 6 & 63], dst[o++] = tab[v & 63];
    }
    if (i < n) {
        unsigned v = (unsigned)src[i] << 16 | (i + 1 < n ? (unsigned)src[i + 1] << 8 : 0);
        dst[o++] = tab[v >> 18 & 63], dst[o++] = tab[v >> 12 & 63];
        dst[o++] = i + 1 < n ? tab[v >> 6 & 63] : '=';
        dst[o++] = '=';
    }
    dst[o] = 0;
}

/* Fills a Basic header from user and key. */
static int set_basic(kp_kaggle_creds *c, const char *user, const char *key, char *err,
                     size_t errlen)
{
    char pair[2 * 1024 + 2], b64[sizeof pair * 4 / 3 + 8];
    if (!*user || !*key || strlen(user) > 1024 || strlen(key) > 1024 || strchr(user, ':'))
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: the Kaggle user name or key is empty, "
                       "too long or has a ':'", c->source);
    int n = snprintf(pair, sizeof pair, "%s:%s", user, key);
    base64((const unsigned char *)pair, (size_t)n, b64);
    snprintf(c->header, sizeof c->header, "Authorization: Basic %s", b64);
    snprintf(c->user, sizeof c->user, "%s", user);
    explicit_bzero(pair, sizeof pair);
    explicit_bzero(b64, sizeof b64);
    return 0;
}

/* Parses kaggle.json text {"username","key"}; errors never quote the text. */
static int set_from_json(kp_kaggle_creds *c, const char *text, char *err, size_t errlen)
{
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    const char *user = json_string_value(json_object_get(j, "username"));
    const char *key = json_string_value(json_object_get(j, "key"));
    int rc = !j ? kp_errf(err, errlen, KP_ERR_FORMAT, "%s:%d:%d: not valid JSON", c->source,
                          je.line, je.column)
             : !user || !key ? kp_errf(err, errlen, KP_ERR_FORMAT, "%s: expected {\"username\": "
                                       "..., \"key\": ...}", c->source)
                             : set_basic(c, user, key, err, errlen);
    json_decref(j);
    return rc;
}

/* 1: KAGGLE_API_TOKEN as a value or a file. */
static int from_token_env(kp_kaggle_creds *c, char *buf, size_t len, char *err, size_t errlen)
{
    const char *v = getenv("KAGGLE_API_TOKEN");
    struct stat sb;
    if (!v || !*v)
        return 0;
    if (strchr(v, '/') && stat(v, &sb) == 0) {
        snprintf(c->source, sizeof c->source, "%s (KAGGLE_API_TOKEN)", v);
        int rc = read_secret_file(v, buf, len, err, errlen);
        return rc <= 0 ? (rc ? rc : kp_errf(err, errlen, KP_ERR_IO, "%s: cannot read", v))
                       : set_bearer(c, trim(buf), err, errlen) ? KP_ERR_FORMAT : 1;
    }
    snprintf(c->source, sizeof c->source, "KAGGLE_API_TOKEN");
    return set_bearer(c, v, err, errlen) ? KP_ERR_FORMAT : 1;
}

/* 2 and 4: a file in the config folder; parse is set_bearer or JSON. */
static int from_file(kp_kaggle_creds *c, const char *dir, const char *name, int json, char *buf,
                     size_t len, char *err, size_t errlen)
{
    int n = snprintf(c->source, sizeof c->source, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= sizeof c->source)
        return kp_errf(err, errlen, KP_ERR_ARG, "the Kaggle configuration folder path is too long");
    int rc = read_secret_file(c->source, buf, len, err, errlen);
    if (rc <= 0)
        return rc;
    rc = json ? set_from_json(c, buf, err, errlen) : set_bearer(c, trim(buf), err, errlen);
    return rc ? rc : 1;
}

int kp_kaggle_creds_load(kp_kaggle_creds **out, char *err, size_t errlen)
{
    char dir[PATH_LEN - 64], buf[SECRET_MAX + 16];
    kp_kaggle_creds *c = calloc(1, sizeof *c);
    const char *user = getenv("KAGGLE_USERNAME"), *key = getenv("KAGGLE_KEY");
    int rc;
    *out = NULL;
    if (!c)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    if (kp_kaggle_config_dir(dir, sizeof dir) < 0) {
        rc = kp_errf(err, errlen, KP_ERR_ARG, "the Kaggle configuration folder path is too long");
        goto done;
    }
    if ((rc = from_token_env(c, buf, sizeof buf, err, errlen)) ||
        (rc = from_file(c, dir, "access_token", 0, buf, sizeof buf, err, errlen)))
        goto done;
    if (user && *user && key && *key) {
        snprintf(c->source, sizeof c->source, "KAGGLE_USERNAME/KAGGLE_KEY");
        rc = set_basic(c, user, key, err, errlen) ? KP_ERR_FORMAT : 1;
        goto done;
    }
    if ((rc = from_file(c, dir, "kaggle.json", 1, buf, sizeof buf, err, errlen)))
        goto done;
    rc = kp_errf(err, errlen, KP_ERR_NOTFOUND,
                 "no Kaggle credentials: set KAGGLE_API_TOKEN (or KAGGLE_USERNAME and "
                 "KAGGLE_KEY), or save the API token from kaggle.com/settings as %s/access_token "
                 "(or kaggle.json) with chmod 600", dir);
done:
    explicit_bzero(buf, sizeof buf);
    if (rc == 1) {
        *out = c;
        return 0;
    }
    kp_kaggle_creds_free(c);
    return rc;
}

/* fetch.c - the fetch stage: a competition's data from URLs or Kaggle.
 *
 *   data:
 *     type: fetch
 *     dir: ../data/titanic             # where the files go (relative to the config)
 *     kaggle: titanic                  # a Kaggle competition's data (one zip, unpacked)
 *     kaggle_files: [train.csv]        # ... or only these files of it
 *     files:                           # and/or URLs (https, http, file, ...), each
 *       - https://host/train.csv.gz sha256=64HEX size=123 name=train.csv.gz
 *     provides: [train.csv, test.csv]  # what the stages after it read from dir
 *     unpack: true                     # unpack .zip/.tar(.gz|.bz2|.xz) files
 *     max_unpacked: 64G                # refuse archives that unpack to more
 *     parallel: 4                      # transfers at once
 *
 * The stage's outputs are DIR/P for each `provides` entry, the downloaded
 * files that are not unpacked, and STAGE_DIR/manifest.txt (name, bytes and
 * sha256 of each file): a re-run with the same URLs and checksums is up to
 * date without a request.  A competition file (competition.train, ...) that
 * does not exist yet is fine when this stage provides it.  The transfers are
 * lib/download.h's (resumed, retried, checked, renamed into place); the
 * archives lib/unpack.h's; Kaggle lib/kaggle.h's.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "stage.h"
#include "../lib/afile.h"
#include "../lib/download.h"
#include "../lib/err.h"
#include "../lib/kaggle.h"
#include "../lib/sha256.h"
#include "../lib/unpack.h"

#define PATH_LEN 4096
#define FIELD 1024

static const kp_keyspec fetch_keys[] = {
    {"dir", KP_PT_PATH, NULL, NULL, 0, 0, "the folder the files go to, relative to the config"},
    {"files", KP_PT_LIST, "", NULL, 0, 0,
     "URLs, each 'URL [sha256=HEX] [size=BYTES] [name=FILE]'"},
    {"kaggle", KP_PT_STRING, "", NULL, 0, 0,
     "a Kaggle competition whose data to download (the last part of its URL)"},
    {"kaggle_files", KP_PT_LIST, "", NULL, 0, 0,
     "only these files of the Kaggle competition (default: all, as one zip)"},
    {"provides", KP_PT_LIST, "", NULL, 0, 0,
     "files (relative to dir) the later stages read: checked to exist afterwards"},
    {"unpack", KP_PT_BOOL, "true", NULL, 0, 0, "unpack downloaded zip and tar archives into dir"},
    {"max_unpacked", KP_PT_STRING, "64G", NULL, 0, 0,
     "refuse an archive that unpacks to more bytes (K, M, G, T suffixes)"},
    {"parallel", KP_PT_INT, "4", NULL, 1, 64, "transfers at once"},
    {NULL, 0, NULL, NULL, 0, 0, NULL},
};

/* One `files` entry, parsed. */
typedef struct entry {
    char url[FIELD], sha256[KP_SHA256_HEXLEN], name[256];
    long long size;
} entry;

static const char *stage_key(const kp_stage *st)
{
    return st->base ? st->base : st->name;
}

/* Returns the last path component of a URL, without its query (or ""). */
static void url_name(const char *url, char *out, size_t outlen)
{
    size_t end = strcspn(url, "?#");
    const char *s = url;
    for (size_t i = 0; i < end; i++)
        if (url[i] == '/')
            s = url + i + 1;
    snprintf(out, outlen, "%.*s", (int)(url + end - s), s);
}

/* Returns 1 when name is a path inside a folder: relative, no "..", no empty part. */
static int inside_name(const char *name)
{
    if (!*name || *name == '/')
        return 0;
    for (const char *p = name; *p;) {
        size_t n = strcspn(p, "/");
        if (n == 0 || (n == 2 && !strncmp(p, "..", 2)) || (n == 1 && *p == '.'))
            return 0;
        p += n + (p[n] == '/');
    }
    return 1;
}

/* Parses "URL [sha256=HEX] [size=N] [name=FILE]"; errors name item i. */
static int parse_entry(const char *text, entry *e, char *why, size_t whylen)
{
    char buf[4 * FIELD], *save = NULL;
    memset(e, 0, sizeof *e);
    e->size = -1;
    if (strlen(text) >= sizeof buf)
        return snprintf(why, whylen, "too long"), -1;
    strcpy(buf, text);
    char *tok = strtok_r(buf, " \t", &save);
    if (!tok || !strstr(tok, "://") || strlen(tok) >= sizeof e->url)
        return snprintf(why, whylen, "expected a URL (scheme://...) first"), -1;
    strcpy(e->url, tok);
    while ((tok = strtok_r(NULL, " \t", &save))) {
        char *end;
        if (!strncmp(tok, "sha256=", 7) && kp_sha256_valid(tok + 7))
            strcpy(e->sha256, tok + 7);
        else if (!strncmp(tok, "size=", 5) && (e->size = strtoll(tok + 5, &end, 10)) >= 0 &&
                 tok[5] && !*end)
            ;
        else if (!strncmp(tok, "name=", 5) && strlen(tok + 5) < sizeof e->name)
            strcpy(e->name, tok + 5);
        else
            return snprintf(why, whylen, "'%s' is not sha256=<64 hex digits>, size=<bytes> or "
                            "name=<file>", tok), -1;
    }
    if (!e->name[0])
        url_name(e->url, e->name, sizeof e->name);
    if (!inside_name(e->name) || strchr(e->name, '/'))
        return snprintf(why, whylen, "no usable file name (give name=FILE)"), -1;
    return 0;
}

/* Parses every `files` entry into *out (caller frees). */
static int parse_entries(const kp_stage *st, const kp_config *cfg, entry **out, int *n,
                         char *err, size_t errlen)
{
    const char *const *items;
    int line = st->line, col = st->col;
    *out = NULL;
    if (kp_params_get_list(st->opts, "files", &items, n) < 0 || *n == 0) {
        *n = 0;
        return 0;
    }
    kp_params_where(st->opts, "files", &line, &col);
    if (!(*out = calloc((size_t)*n, sizeof **out)))
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    for (int i = 0; i < *n; i++) {
        char why[512];
        if (parse_entry(items[i], &(*out)[i], why, sizeof why) < 0) {
            free(*out);
            *out = NULL;
            return kp_errf(err, errlen, KP_ERR_CONFIG, "%s:%d:%d: stages.%s.files[%d]: %s",
                           cfg->path, line, col, stage_key(st), i + 1, why);
        }
    }
    return 0;
}

/* Parses "64G"-style sizes; -1 when malformed. */
static long long parse_bytes(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    const char *units = "KMGT";
    const char *u = *end ? strchr(units, *end == 'k' ? 'K' : *end) : NULL;
    if (end == s || v <= 0 || (*end && (!u || (end[1] && strcmp(end + 1, "B") &&
                                                strcmp(end + 1, "iB")))))
        return -1;
    for (const char *p = units; u && p <= u; p++)
        v *= 1024;
    return v > 9e18 ? -1 : (long long)v;
}

/* Writes the stage's dir (resolved) into out. */
static int fetch_dir(const kp_stage *st, const kp_config *cfg, char *out, size_t outlen)
{
    const char *rel = kp_params_str(st->opts, "dir", NULL);
    return rel && *rel ? kp_config_path(cfg, rel, out, outlen) : KP_ERR_ARG;
}

/* Fails with the place of key `key` of the stage. */
static int key_error(const kp_stage *st, const kp_config *cfg, const char *key, char *err,
                     size_t errlen, const char *what)
{
    int line = st->line, col = st->col;
    kp_params_where(st->opts, key, &line, &col);
    return kp_errf(err, errlen, KP_ERR_CONFIG, "%s:%d:%d: stages.%s.%s: %s", cfg->path, line,
                   col, stage_key(st), key, what);
}

static int fetch_check(kp_stage *st, const kp_config *cfg, char *err, size_t errlen)
{
    entry *e = NULL;
    const char *const *items;
    int n = 0, n_kf = 0, n_prov = 0;
    int rc = parse_entries(st, cfg, &e, &n, err, errlen);
    free(e);
    if (rc < 0)
        return rc;
    const char *comp = kp_params_str(st->opts, "kaggle", "");
    if (kp_params_get_list(st->opts, "kaggle_files", &items, &n_kf) < 0)
        n_kf = 0;
    if (n_kf && !*comp)
        return key_error(st, cfg, "kaggle_files", err, errlen, "needs `kaggle: COMPETITION`");
    for (int i = 0; i < n_kf; i++)
        if (!inside_name(items[i]) || strchr(items[i], '/'))
            return key_error(st, cfg, "kaggle_files", err, errlen, "expected plain file names");
    if (n == 0 && !*comp)
        return key_error(st, cfg, "files", err, errlen, "a fetch stage needs `files` or `kaggle`");
    if (kp_params_get_list(st->opts, "provides", &items, &n_prov) < 0)
        n_prov = 0;
    for (int i = 0; i < n_prov; i++)
        if (!inside_name(items[i]))
            return key_error(st, cfg, "provides", err, errlen,
                             "expected paths inside dir (relative, no '..')");
    if (parse_bytes(kp_params_str(st->opts, "max_unpacked", "64G")) < 0)
        return key_error(st, cfg, "max_unpacked", err, errlen,
                         "expected a size such as 500M or 64G");
    return 0;
}

/* Returns 1 when entry e is unpacked (so it is not itself an output). */
static int unpacked(const kp_stage *st, const char *name)
{
    return kp_params_bool(st->opts, "unpack", 1) && kp_unpack_is_archive(name);
}

static int manifest_path(const kp_stage *st, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%s/manifest.txt", st->dir);
    return n < 0 || (size_t)n >= outlen ? KP_ERR_ARG : 0;
}

static int fetch_outputs(const kp_stage *st, const kp_config *cfg, int part, kp_buf *out)
{
    char dir[PATH_LEN], path[PATH_LEN];
    const char *const *items;
    entry *e = NULL;
    int n = 0, rc;
    if (part >= 0)
        return 0;
    if (fetch_dir(st, cfg, dir, sizeof dir) < 0 || manifest_path(st, path, sizeof path) < 0 ||
        parse_entries(st, cfg, &e, &n, NULL, 0) < 0)
        return KP_ERR_ARG;
    rc = kp_buf_printf(out, "%s\n", path);
    for (int i = 0; rc == 0 && i < n; i++)
        if (!unpacked(st, e[i].name))
            rc = kp_buf_printf(out, "%s/%s\n", dir, e[i].name);
    free(e);
    if (kp_params_get_list(st->opts, "kaggle_files", &items, &n) < 0)
        n = 0;
    for (int i = 0; rc == 0 && i < n; i++)
        if (!unpacked(st, items[i]))
            rc = kp_buf_printf(out, "%s/%s\n", dir, items[i]);
    if (kp_params_get_list(st->opts, "provides", &items, &n) < 0)
        n = 0;
    for (int i = 0; rc == 0 && i < n; i++)
        rc = kp_buf_printf(out, "%s/%s\n", dir, items[i]);
    return rc;
}

/* ---- running ---- */

typedef struct fetch_run {
    const kp_task_ctx *ctx;
    char dir[PATH_LEN];
    entry *e;
    int n;
    char **dests;
    char (*sha)[KP_SHA256_HEXLEN];   /* per entry, as the downloader computed it */
    long long max_unpacked;
    char *err;
    size_t errlen;
} fetch_run;

/* Downloads the `files` entries in one parallel batch. */
static int fetch_urls(fetch_run *r)
{
    kp_http_opts ho;
    kp_http *h = NULL;
    kp_dl_printer pr = {.out = r->ctx->log};
    kp_dl_opts o = {.parallel = (int)kp_params_int(r->ctx->stage->opts, "parallel", 4),
                    .progress = r->ctx->log ? kp_dl_print_progress : NULL, .progress_arg = &pr,
                    .log = r->ctx->log};
    kp_dl_file *f = calloc((size_t)r->n, sizeof *f);
    int rc = f ? 0 : kp_errf(r->err, r->errlen, KP_ERR_NOMEM, "out of memory");
    kp_http_opts_default(&ho);
    for (int i = 0; rc == 0 && i < r->n; i++) {
        if (asprintf(&r->dests[i], "%s/%s", r->dir, r->e[i].name) < 0) {
            r->dests[i] = NULL;
            rc = kp_errf(r->err, r->errlen, KP_ERR_NOMEM, "out of memory");
        }
        f[i] = (kp_dl_file){.url = r->e[i].url, .dest = r->dests[i], .size = r->e[i].size,
                            .sha256 = r->e[i].sha256[0] ? r->e[i].sha256 : NULL};
    }
    if (rc == 0)
        rc = kp_http_create(&ho, &h, r->err, r->errlen);
    if (rc == 0)
        rc = kp_download(h, f, r->n, &o, r->err, r->errlen);
    for (int i = 0; rc == 0 && i < r->n; i++)
        memcpy(r->sha[i], f[i].sha256_hex, KP_SHA256_HEXLEN);
    kp_http_free(h);
    free(f);
    return rc;
}

/* Unpacks the downloaded archives into dir. */
static int unpack_archives(fetch_run *r)
{
    kp_unpack_limits lim = {.max_bytes = r->max_unpacked};
    for (int i = 0; i < r->n; i++) {
        if (!unpacked(r->ctx->stage, r->e[i].name))
            continue;
        int rc = kp_unpack(r->dests[i], r->dir, &lim, NULL, r->err, r->errlen);
        if (rc < 0)
            return rc;
        if (r->ctx->log)
            fprintf(r->ctx->log, "unpacked %s\n", r->dests[i]);
    }
    return 0;
}

/* Downloads the Kaggle competition's data (all of it or kaggle_files). */
static int fetch_kaggle(fetch_run *r)
{
    const kp_params *o = r->ctx->stage->opts;
    const char *comp = kp_params_str(o, "kaggle", ""), *const *names;
    int n = 0;
    kp_kaggle *k = NULL;
    kp_kaggle_opts ko = {.log = r->ctx->log};
    if (!*comp)
        return 0;
    if (kp_params_get_list(o, "kaggle_files", &names, &n) < 0)
        n = 0;
    int rc = kp_kaggle_create(&ko, &k, r->err, r->errlen);
    if (rc == 0)
        rc = kp_kaggle_download(k, comp, r->dir, names, n, r->max_unpacked, 0, r->err, r->errlen);
    kp_kaggle_free(k);
    return rc;
}

/* Checks every `provides` file is there, naming what is missing. */
static int check_provides(fetch_run *r)
{
    const char *const *items;
    int n = 0;
    if (kp_params_get_list(r->ctx->stage->opts, "provides", &items, &n) < 0)
        return 0;
    for (int i = 0; i < n; i++) {
        char path[2 * PATH_LEN];
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", r->dir, items[i]);
        if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
            return kp_errf(r->err, r->errlen, KP_ERR_NOTFOUND, "stage '%s': %s is not there "
                           "after the downloads and unpacking (`provides` names it)",
                           r->ctx->stage->name, path);
    }
    return 0;
}

/* Writes STAGE_DIR/manifest.txt: each downloaded file, its bytes and sha256. */
static int write_manifest(fetch_run *r)
{
    char path[PATH_LEN], hex[KP_SHA256_HEXLEN];
    kp_buf b;
    int rc = manifest_path(r->ctx->stage, path, sizeof path);
    kp_buf_init(&b, 0);
    for (int i = 0; rc == 0 && i < r->n; i++) {
        struct stat sb;
        if (r->sha[i][0])
            memcpy(hex, r->sha[i], sizeof hex);
        else
            rc = kp_sha256_file(r->dests[i], hex, r->err, r->errlen);
        if (rc == 0 && stat(r->dests[i], &sb) == 0)
            rc = kp_buf_printf(&b, "%s %lld sha256=%s\n", r->e[i].name, (long long)sb.st_size,
                               hex) < 0 ? KP_ERR_NOMEM : 0;
    }
    const char *comp = kp_params_str(r->ctx->stage->opts, "kaggle", "");
    if (rc == 0 && *comp && kp_buf_printf(&b, "kaggle %s\n", comp) < 0)
        rc = KP_ERR_NOMEM;
    if (rc == 0)
        rc = kp_write_file_atomic(path, b.data ? b.data : "", b.len, r->err, r->errlen);
    kp_buf_free(&b);
    return rc;
}

static int fetch_run_task(const kp_task_ctx *ctx, char *err, size_t errlen)
{
    fetch_run r = {.ctx = ctx, .err = err, .errlen = errlen,
                   .max_unpacked = parse_bytes(kp_params_str(ctx->stage->opts, "max_unpacked",
                                                             "64G"))};
    int rc = fetch_dir(ctx->stage, ctx->cfg, r.dir, sizeof r.dir);
    if (rc < 0)
        return kp_errf(err, errlen, KP_ERR_ARG, "stage '%s': bad dir", ctx->stage->name);
    if ((rc = kp_mkdirs(r.dir, err, errlen)) < 0 ||
        (rc = parse_entries(ctx->stage, ctx->cfg, &r.e, &r.n, err, errlen)) < 0)
        return rc;
    if (r.n && (!(r.dests = calloc((size_t)r.n, sizeof *r.dests)) ||
                !(r.sha = calloc((size_t)r.n, sizeof *r.sha))))
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    if (rc == 0 && r.n)
        rc = fetch_urls(&r);
    if (rc == 0)
        rc = unpack_archives(&r);
    if (rc == 0)
        rc = fetch_kaggle(&r);
    if (rc == 0)
        rc = check_provides(&r);
    if (rc == 0)
        rc = write_manifest(&r);
    for (int i = 0; r.dests && i < r.n; i++)
        free(r.dests[i]);
    free(r.dests);
    free(r.sha);
    free(r.e);
    return rc;
}

const kp_stage_ops kp_stage_fetch = {
    .name = "fetch",
    .doc = "downloads data (URLs with checksums, or a Kaggle competition) and unpacks archives",
    .keys = fetch_keys,
    .output = KP_ART_FILES,
    .check = fetch_check,
    .outputs = fetch_outputs,
    .run = fetch_run_task,
};

/* kaggle.c - Kaggle's competition API over lib/http.h and lib/download.h. */
#include "kaggle.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "err.h"
#include "kaggle_creds.h"
#include "unpack.h"

#define SERVICE "competitions.CompetitionApiService"
#define PATH_LEN 4096
#define MAX_PAGES 50

struct kp_kaggle {
    kp_http *http;
    kp_kaggle_creds *creds;
    char *endpoint;
    kp_kaggle_opts o;
};

const char *kp_kaggle_endpoint(const kp_kaggle *k) { return k->endpoint; }

void kp_kaggle_free(kp_kaggle *k)
{
    if (!k)
        return;
    kp_http_free(k->http);
    kp_kaggle_creds_free(k->creds);
    free(k->endpoint);
    free(k);
}

/* The endpoint without trailing slashes. */
static char *endpoint_of(const kp_kaggle_opts *o)
{
    const char *e = o && o->endpoint && *o->endpoint ? o->endpoint : getenv("KAGGLE_API_ENDPOINT");
    char *s = strdup(e && *e ? e : "https://api.kaggle.com");
    for (size_t n = s ? strlen(s) : 0; n > 0 && s[n - 1] == '/'; n--)
        s[n - 1] = 0;
    return s;
}

int kp_kaggle_create(const kp_kaggle_opts *o, kp_kaggle **out, char *err, size_t errlen)
{
    kp_kaggle *k = calloc(1, sizeof *k);
    kp_http_opts ho;
    int rc;
    *out = NULL;
    if (!k || !(k->endpoint = endpoint_of(o))) {
        kp_kaggle_free(k);
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    }
    if (o)
        k->o = *o;
    if ((rc = kp_kaggle_creds_load(&k->creds, err, errlen)) < 0)
        goto fail;
    kp_http_opts_default(&ho);
    ho.auth_header = kp_kaggle_creds_header(k->creds);
    ho.verbose = k->o.verbose;
    if ((rc = kp_http_create(&ho, &k->http, err, errlen)) < 0)
        goto fail;
    *out = k;
    return 0;
fail:
    kp_kaggle_free(k);
    return rc;
}

/* ---- one API call ---- */

/* Turns a failed answer into a message a competitor can act on. */
static int api_error(kp_kaggle *k, const char *method, const char *comp, const kp_http_resp *r,
                     long status, char *err, size_t errlen)
{
    char url[PATH_LEN], why[1024];
    snprintf(url, sizeof url, "%s/v1/" SERVICE "/%s", k->endpoint, method);
    kp_http_resp copy = *r;
    copy.status = status;
    kp_http_status_error(url, &copy, why, sizeof why);
    if (status == 401)
        return kp_errf(err, errlen, KP_ERR_ARG, "Kaggle refused the credentials from %s (%s); "
                       "check them, or make a new API token at kaggle.com/settings",
                       kp_kaggle_creds_source(k->creds), why);
    if (status == 403)
        return kp_errf(err, errlen, KP_ERR_ARG, "competition '%s': %s: accept the competition "
                       "rules on the website first: https://www.kaggle.com/competitions/%s/rules",
                       comp, why, comp);
    if (status == 404)
        return kp_errf(err, errlen, KP_ERR_NOTFOUND, "competition '%s' not found on Kaggle "
                       "(%s); the name is the last part of its URL", comp, why);
    return kp_errf(err, errlen, status >= 400 && status < 500 ? KP_ERR_ARG : KP_ERR_IO, "%s", why);
}

/* POSTs body (stolen) to METHOD; a 2xx JSON answer goes to *out (caller
 * decrefs; NULL when not wanted), a redirect's Location to *location. */
static int api_call(kp_kaggle *k, const char *method, const char *comp, json_t *body, int retry,
                    json_t **out, char **location, char *err, size_t errlen)
{
    char url[PATH_LEN];
    kp_http_resp r;
    char *text = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(body);
    if (!text)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    snprintf(url, sizeof url, "%s/v1/" SERVICE "/%s", k->endpoint, method);
    kp_http_req req = {.method = "POST", .url = url, .content_type = "application/json",
                       .body = text, .body_len = strlen(text), .auth = 1, .retry = retry};
    int rc = kp_http_do(k->http, &req, &r, err, errlen);
    free(text);
    if (rc < 0)
        return rc;
    json_t *j = r.body.len ? json_loadb(r.body.data, r.body.len, 0, NULL) : NULL;
    json_t *code = json_object_get(j, "code");
    long status = json_is_integer(code) && json_integer_value(code) >= 400
                      ? (long)json_integer_value(code) : r.status;
    if (status >= 300 && status < 400 && location && r.location) {
        *location = r.location;
        r.location = NULL;
    } else if (status < 200 || status >= 300) {
        rc = api_error(k, method, comp, &r, status, err, errlen);
    } else if (location) {
        rc = kp_errf(err, errlen, KP_ERR_FORMAT, "%s: expected a redirect to the file, got HTTP "
                     "%ld", url, status);
    } else if (out && !json_is_object(j)) {
        rc = kp_errf(err, errlen, KP_ERR_FORMAT, "%s: the answer is not a JSON object", url);
    } else if (out) {
        *out = json_incref(j);
    }
    json_decref(j);
    kp_http_resp_free(&r);
    return rc;
}

/* Returns a heap copy of a JSON string or number member ("" if absent). */
static char *member_text(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    char buf[64];
    if (json_is_string(v))
        return strdup(json_string_value(v));
    if (json_is_integer(v))
        snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        snprintf(buf, sizeof buf, "%.10g", json_real_value(v));
    else
        buf[0] = 0;
    return strdup(buf);
}

/* Returns an integer member given as a number or a numeric string, or def. */
static long long member_int(const json_t *o, const char *key, long long def)
{
    const json_t *v = json_object_get(o, key);
    if (json_is_integer(v))
        return json_integer_value(v);
    if (json_is_string(v) && *json_string_value(v)) {
        char *end;
        long long x = strtoll(json_string_value(v), &end, 10);
        return *end ? def : x;
    }
    return def;
}

/* ---- data files ---- */

void kp_kaggle_files_free(kp_kaggle_file *files, int n)
{
    for (int i = 0; files && i < n; i++) {
        free(files[i].name);
        free(files[i].created);
    }
    free(files);
}

/* Appends the files of one ListDataFiles page; *next gets its nextPageToken. */
static int add_files(const json_t *page, kp_kaggle_file **files, int *n, char **next)
{
    const json_t *arr = json_object_get(page, "files");
    size_t m = json_array_size(arr);
    kp_kaggle_file *f = realloc(*files, ((size_t)*n + m + 1) * sizeof *f);
    if (!f)
        return KP_ERR_NOMEM;
    *files = f;
    for (size_t i = 0; i < m; i++) {
        const json_t *e = json_array_get(arr, i);
        kp_kaggle_file *x = &f[(*n)++];
        x->name = member_text(e, "name");
        x->created = member_text(e, "creationDate");
        x->size = member_int(e, "totalBytes", -1);
        if (!x->name || !x->created)
            return KP_ERR_NOMEM;
    }
    *next = member_text(page, "nextPageToken");
    return *next ? 0 : KP_ERR_NOMEM;
}

int kp_kaggle_list_files(kp_kaggle *k, const char *competition, kp_kaggle_file **files, int *n,
                         char *err, size_t errlen)
{
    char *token = strdup("");
    int rc = token ? 0 : KP_ERR_NOMEM;
    *files = NULL;
    *n = 0;
    for (int page = 0; rc == 0 && page < MAX_PAGES; page++) {
        json_t *body = json_pack("{s:s}", "competitionName", competition), *ans = NULL;
        if (*token)
            json_object_set_new(body, "pageToken", json_string(token));
        free(token);
        token = NULL;
        if ((rc = api_call(k, "ListDataFiles", competition, body, 1, &ans, NULL, err, errlen)) < 0)
            break;
        rc = add_files(ans, files, n, &token);
        json_decref(ans);
        if (rc == 0 && !*token)
            break;
    }
    free(token);
    if (rc == KP_ERR_NOMEM)
        kp_errf(err, errlen, rc, "out of memory");
    if (rc < 0) {
        kp_kaggle_files_free(*files, *n);
        *files = NULL;
        *n = 0;
    }
    return rc;
}

/* ---- downloads ---- */

/* Asks where file `name` (NULL: the whole data) can be fetched from. */
static int file_url(kp_kaggle *k, const char *comp, const char *name, char **url, char *err,
                    size_t errlen)
{
    json_t *body = name ? json_pack("{s:s,s:s}", "competitionName", comp, "fileName", name)
                        : json_pack("{s:s}", "competitionName", comp);
    *url = NULL;
    return api_call(k, name ? "DownloadDataFile" : "DownloadDataFiles", comp, body, 1, NULL, url,
                    err, errlen);
}

/* Returns 1 when name is a plain file name (no folders, not "." or ".."). */
static int plain_name(const char *name)
{
    return *name && !strchr(name, '/') && strcmp(name, ".") && strcmp(name, "..");
}

/* Unpacks every fetched zip into dir. */
static int unpack_zips(kp_dl_file *f, int n, const char *dir, int64_t max_unpacked, FILE *log,
                       char *err, size_t errlen)
{
    kp_unpack_limits lim = {.max_bytes = max_unpacked};
    for (int i = 0; i < n; i++) {
        size_t len = strlen(f[i].dest);
        if (len < 4 || strcmp(f[i].dest + len - 4, ".zip") != 0)
            continue;
        int rc = kp_unpack(f[i].dest, dir, &lim, NULL, err, errlen);
        if (rc < 0)
            return rc;
        if (log)
            fprintf(log, "unpacked %s into %s\n", f[i].dest, dir);
    }
    return 0;
}

int kp_kaggle_download(kp_kaggle *k, const char *competition, const char *dir,
                       const char *const *names, int n_names, int64_t max_unpacked, int force,
                       char *err, size_t errlen)
{
    int n = n_names > 0 ? n_names : 1, rc = 0;
    kp_dl_file *f = calloc((size_t)n, sizeof *f);
    char **urls = calloc((size_t)n, sizeof *urls), **dests = calloc((size_t)n, sizeof *dests);
    kp_dl_printer pr = {.out = k->o.log, .tty = k->o.tty};
    kp_dl_opts o = {.parallel = 4, .progress = k->o.log ? kp_dl_print_progress : NULL,
                    .progress_arg = &pr, .log = k->o.log};
    if (!f || !urls || !dests)
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    for (int i = 0; rc == 0 && i < n; i++) {
        const char *name = n_names > 0 ? names[i] : NULL;
        struct stat sb;
        if (name && !plain_name(name)) {
            rc = kp_errf(err, errlen, KP_ERR_ARG, "'%s' is not a file name of the competition's "
                         "data", name);
            break;
        }
        if (asprintf(&dests[i], name ? "%s/%s" : "%s/%s.zip", dir, name ? name : competition) < 0) {
            dests[i] = NULL;
            rc = kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
            break;
        }
        f[i] = (kp_dl_file){.dest = dests[i], .size = -1};
        if (!force && stat(dests[i], &sb) == 0 && S_ISREG(sb.st_mode)) {
            f[i].url = "";          /* already whole: not asked again */
            f[i].skipped = 1;
            if (k->o.log)
                fprintf(k->o.log, "kept %s (already downloaded)\n", dests[i]);
            continue;
        }
        if ((rc = file_url(k, competition, name, &urls[i], err, errlen)) == 0)
            f[i].url = urls[i];
    }
    /* the files not already here, in one parallel batch */
    int m = 0;
    for (int i = 0; rc == 0 && i < n; i++)
        if (!f[i].skipped)
            f[m++] = f[i];
    if (rc == 0 && m > 0)
        rc = kp_download(k->http, f, m, &o, err, errlen);
    for (int i = 0; rc == 0 && i < n; i++)
        f[i] = (kp_dl_file){.dest = dests[i]};
    if (rc == 0)
        rc = unpack_zips(f, n, dir, max_unpacked, k->o.log, err, errlen);
    for (int i = 0; i < n; i++) {
        free(urls ? urls[i] : NULL);
        free(dests ? dests[i] : NULL);
    }
    free(urls);
    free(dests);
    free(f);
    return rc;
}

/* ---- submissions ---- */

/* Parses a resumable upload's "Range: bytes=0-K" into the bytes held (K + 1). */
static int64_t bytes_held(const char *range)
{
    const char *dash = range ? strrchr(range, '-') : NULL;
    return dash ? strtoll(dash + 1, NULL, 10) + 1 : 0;
}

/* Asks a resumable upload how many bytes it holds: *held, or *done when complete. */
static int upload_status(kp_kaggle *k, const char *url, int64_t size, int64_t *held, int *done,
                         char *err, size_t errlen)
{
    char cr[96];
    const char *hdr[1] = {cr};
    kp_http_resp r;
    snprintf(cr, sizeof cr, "Content-Range: bytes */%lld", (long long)size);
    kp_http_req req = {.method = "PUT", .url = url, .headers = hdr, .n_headers = 1, .retry = 1};
    int rc = kp_http_do(k->http, &req, &r, err, errlen);
    if (rc < 0)
        return rc;
    if (r.status == 200 || r.status == 201)
        *done = 1;
    else if (r.status == 308)
        *held = bytes_held(r.range);
    else
        rc = kp_http_status_error(url, &r, err, errlen);
    kp_http_resp_free(&r);
    return rc;
}

/* PUTs path to a resumable upload URL, resuming after failures. */
static int upload_file(kp_kaggle *k, const char *url, const char *path, int64_t size, char *err,
                       size_t errlen)
{
    const kp_http_opts *ho = kp_http_options(k->http);
    int64_t held = 0;
    int done = 0, rc = 0;
    for (int attempt = 0; !done; attempt++) {
        char cr[128];
        const char *hdr[1] = {cr};
        kp_http_resp r;
        if (attempt > ho->max_retries)
            return kp_errf(err, errlen, KP_ERR_IO, "uploading %s: gave up after %d attempts "
                           "(%s)", path, attempt, err && *err ? err : "no progress");
        snprintf(cr, sizeof cr, "Content-Range: bytes %lld-%lld/%lld", (long long)held,
                 (long long)size - 1, (long long)size);
        kp_http_req req = {.method = "PUT", .url = url, .body_file = path, .body_offset = held,
                           .body_file_len = size - held, .headers = hdr, .n_headers = 1,
                           .content_type = "application/octet-stream"};
        memset(&r, 0, sizeof r);
        rc = kp_http_do(k->http, &req, &r, err, errlen);
        long status = rc < 0 ? 0 : r.status;
        if (rc == 0 && (status == 200 || status == 201))
            done = 1;
        else if (rc == 0 && status == 308)
            held = bytes_held(r.range);
        else if (rc == 0 && !kp_http_status_transient(status))
            rc = kp_http_status_error(url, &r, err, errlen);
        long retry_after = rc == 0 ? r.retry_after_s : -1;
        kp_http_resp_free(&r);
        if (rc < 0 && status != 0)
            return rc;   /* refused: not worth asking again */
        if (done || status == 308)
            continue;
        if (k->o.log)
            fprintf(k->o.log, "upload of %s interrupted (%s); resuming\n", path,
                    rc < 0 ? err : "server busy");
        kp_http_sleep_ms(kp_http_backoff_ms(ho, attempt + 1, retry_after));
        if ((rc = upload_status(k, url, size, &held, &done, err, errlen)) < 0)
            return rc;
    }
    return 0;
}

/* Returns path's last component (borrowed from path). */
static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

int kp_kaggle_submit(kp_kaggle *k, const char *competition, const char *path,
                     const char *message, long *ref, char *err, size_t errlen)
{
    struct stat sb;
    json_t *ans = NULL;
    *ref = 0;
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size == 0)
        return kp_errf(err, errlen, KP_ERR_NOTFOUND, "%s: not a non-empty file", path);
    json_t *body = json_pack("{s:s,s:s,s:I,s:I}", "competitionName", competition, "fileName",
                             base_name(path), "contentLength", (json_int_t)sb.st_size,
                             "lastModifiedEpochSeconds", (json_int_t)sb.st_mtime);
    int rc = api_call(k, "StartSubmissionUpload", competition, body, 1, &ans, NULL, err, errlen);
    if (rc < 0)
        return rc;
    char *token = member_text(ans, "token"), *url = member_text(ans, "createUrl");
    json_decref(ans);
    ans = NULL;
    if (!token || !url || !*token || !*url)
        rc = kp_errf(err, errlen, KP_ERR_FORMAT, "StartSubmissionUpload answered no token or "
                     "createUrl");
    if (rc == 0 && k->o.log)
        fprintf(k->o.log, "uploading %s (%lld bytes)\n", path, (long long)sb.st_size);
    if (rc == 0)
        rc = upload_file(k, url, path, sb.st_size, err, errlen);
    if (rc == 0) {
        /* not retried: a repeat could submit twice */
        body = json_pack("{s:s,s:s,s:s}", "competitionName", competition, "blobFileTokens", token,
                         "submissionDescription", message ? message : "");
        rc = api_call(k, "CreateSubmission", competition, body, 0, &ans, NULL, err, errlen);
    }
    if (rc == 0 && (*ref = (long)member_int(ans, "ref", 0)) <= 0)
        rc = kp_errf(err, errlen, KP_ERR_FORMAT, "CreateSubmission answered no submission ref");
    if (rc == 0 && k->o.log) {
        char *msg = member_text(ans, "message");
        fprintf(k->o.log, "submitted %s to %s as ref %ld: %s\n", path, competition, *ref,
                msg ? msg : "");
        free(msg);
    }
    json_decref(ans);
    free(token);
    free(url);
    return rc;
}

void kp_kaggle_subs_free(kp_kaggle_sub *subs, int n)
{
    for (int i = 0; subs && i < n; i++) {
        free(subs[i].date);
        free(subs[i].description);
        free(subs[i].file_name);
        free(subs[i].status);
        free(subs[i].public_score);
        free(subs[i].private_score);
    }
    free(subs);
}

/* Appends the submissions of one page not seen yet; *added counts them. */
static int add_subs(const json_t *page, kp_kaggle_sub **subs, int *n, int *added)
{
    const json_t *arr = json_object_get(page, "submissions");
    size_t m = json_array_size(arr);
    kp_kaggle_sub *s = realloc(*subs, ((size_t)*n + m + 1) * sizeof *s);
    *added = 0;
    if (!s)
        return KP_ERR_NOMEM;
    *subs = s;
    for (size_t i = 0; i < m; i++) {
        const json_t *e = json_array_get(arr, i);
        long ref = (long)member_int(e, "ref", 0);
        int dup = 0;
        for (int j = 0; j < *n && !dup; j++)
            dup = s[j].ref == ref;
        if (dup)
            continue;
        kp_kaggle_sub *x = &s[(*n)++];
        *x = (kp_kaggle_sub){.ref = ref, .date = member_text(e, "date"),
                             .description = member_text(e, "description"),
                             .file_name = member_text(e, "fileName"),
                             .status = member_text(e, "status"),
                             .public_score = member_text(e, "publicScore"),
                             .private_score = member_text(e, "privateScore")};
        (*added)++;
        if (!x->date || !x->description || !x->file_name || !x->status || !x->public_score ||
            !x->private_score)
            return KP_ERR_NOMEM;
    }
    return 0;
}

int kp_kaggle_submissions(kp_kaggle *k, const char *competition, kp_kaggle_sub **subs, int *n,
                          char *err, size_t errlen)
{
    int rc = 0, added = 1;
    *subs = NULL;
    *n = 0;
    /* pages of 20 until one brings nothing new */
    for (int page = 1; rc == 0 && added > 0 && page <= MAX_PAGES; page++) {
        json_t *ans = NULL;
        json_t *body = json_pack("{s:s,s:i}", "competitionName", competition, "page", page);
        if ((rc = api_call(k, "ListSubmissions", competition, body, 1, &ans, NULL, err,
                           errlen)) < 0)
            break;
        rc = add_subs(ans, subs, n, &added);
        if (json_array_size(json_object_get(ans, "submissions")) < 20)
            added = 0;
        json_decref(ans);
    }
    if (rc == KP_ERR_NOMEM)
        kp_errf(err, errlen, rc, "out of memory");
    if (rc < 0) {
        kp_kaggle_subs_free(*subs, *n);
        *subs = NULL;
        *n = 0;
    }
    return rc;
}

/* ledger.c - the submissions ledger (see ledger.h): read and checked whole,
 * appended one line at a time and rewritten atomically, both under a lock. */
#include "ledger.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include "afile.h"
#include "buf.h"
#include "csv.h"
#include "err.h"

enum { N_FIELDS = 12, F_TIME = 0, F_EVENT, F_COMP, F_FILE, F_CONFIG, F_PRED, F_CV,
       F_METRIC, F_MESSAGE, F_REF, F_PUBLIC, F_PRIVATE };

static const char *const field_names[N_FIELDS] = {
    "time", "event", "competition", "file", "config_hash", "prediction_hash", "cv", "metric",
    "message", "ref", "public_score", "private_score",
};

static const size_t field_off[N_FIELDS] = {
    offsetof(kp_ledger_row, time), offsetof(kp_ledger_row, event),
    offsetof(kp_ledger_row, competition), offsetof(kp_ledger_row, file),
    offsetof(kp_ledger_row, config_hash), offsetof(kp_ledger_row, prediction_hash),
    offsetof(kp_ledger_row, cv), offsetof(kp_ledger_row, metric),
    offsetof(kp_ledger_row, message), offsetof(kp_ledger_row, ref),
    offsetof(kp_ledger_row, public_score), offsetof(kp_ledger_row, private_score),
};

struct kp_ledger {
    kp_ledger_row *rows;   /* owned, every field owned */
    int n, cap;
};

/* Returns the address of field i of r. */
static char **field_at(kp_ledger_row *r, int i)
{
    return (char **)(void *)((char *)r + field_off[i]);
}

/* Fills f[N_FIELDS] with the fields of r ("" for NULL). */
static void row_fields(const kp_ledger_row *r, const char **f)
{
    for (int i = 0; i < N_FIELDS; i++) {
        const char *s = *field_at((kp_ledger_row *)r, i);
        f[i] = s ? s : "";
    }
}

/* ---- checks ---- */

static int digits(const char *s, int n, int lo, int hi)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (s[i] - '0');
    }
    return v >= lo && v <= hi;
}

/* Returns 1 when s is "YYYY-MM-DDTHH:MM:SSZ". */
static int is_iso_time(const char *s)
{
    return strlen(s) == 20 && digits(s, 4, 0, 9999) && s[4] == '-' && digits(s + 5, 2, 1, 12) &&
           s[7] == '-' && digits(s + 8, 2, 1, 31) && s[10] == 'T' && digits(s + 11, 2, 0, 23) &&
           s[13] == ':' && digits(s + 14, 2, 0, 59) && s[16] == ':' &&
           digits(s + 17, 2, 0, 60) && s[19] == 'Z';
}

static int is_hex32(const char *s)
{
    size_t n = strspn(s, "0123456789abcdef");
    return n == 32 && s[n] == 0;
}

/* Returns 1 when s is "" or a finite number. */
static int is_score(const char *s)
{
    char *end;
    if (!*s)
        return 1;
    double v = strtod(s, &end);
    return *end == 0 && isfinite(v) && !isspace((unsigned char)s[0]);
}

/* Checks the fields of one row; 0, or -1 with the problem written into why. */
static int check_fields(const char *const *f, char *why, size_t n)
{
    if (!is_iso_time(f[F_TIME]))
        snprintf(why, n, "time '%.40s' is not YYYY-MM-DDTHH:MM:SSZ", f[F_TIME]);
    else if (strcmp(f[F_EVENT], "written") && strcmp(f[F_EVENT], "uploaded"))
        snprintf(why, n, "event '%.40s' is not written or uploaded", f[F_EVENT]);
    else if (!*f[F_COMP] || !*f[F_FILE])
        snprintf(why, n, "%s is empty", *f[F_COMP] ? "file" : "competition");
    else if (*f[F_CONFIG] && !is_hex32(f[F_CONFIG]))
        snprintf(why, n, "config_hash '%.40s' is not 32 hex digits", f[F_CONFIG]);
    else if (!is_hex32(f[F_PRED]))
        snprintf(why, n, "prediction_hash '%.40s' is not 32 hex digits", f[F_PRED]);
    else if (!is_score(f[F_CV]) || !is_score(f[F_PUBLIC]) || !is_score(f[F_PRIVATE])) {
        int i = !is_score(f[F_CV]) ? F_CV : !is_score(f[F_PUBLIC]) ? F_PUBLIC : F_PRIVATE;
        snprintf(why, n, "%s '%.40s' is not a number", field_names[i], f[i]);
    } else
        return 0;
    return -1;
}

/* ---- reading ---- */

void kp_ledger_free(kp_ledger *l)
{
    if (!l)
        return;
    for (int r = 0; r < l->n; r++)
        for (int i = 0; i < N_FIELDS; i++)
            free(*field_at(&l->rows[r], i));
    free(l->rows);
    free(l);
}

int kp_ledger_count(const kp_ledger *l) { return l ? l->n : 0; }

const kp_ledger_row *kp_ledger_at(const kp_ledger *l, int i)
{
    return l && i >= 0 && i < l->n ? &l->rows[i] : NULL;
}

/* Appends a copy of the fields f[N_FIELDS] to l; 0 or KP_ERR_NOMEM. */
static int add_row(kp_ledger *l, const char *const *f)
{
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        kp_ledger_row *rows = realloc(l->rows, (size_t)cap * sizeof *rows);
        if (!rows)
            return KP_ERR_NOMEM;
        l->rows = rows, l->cap = cap;
    }
    kp_ledger_row *r = &l->rows[l->n];
    memset(r, 0, sizeof *r);
    l->n++;   /* counted first so that kp_ledger_free frees a half-copied row */
    for (int i = 0; i < N_FIELDS; i++)
        if (!(*field_at(r, i) = strdup(f[i])))
            return KP_ERR_NOMEM;
    return 0;
}

/* Checks the header of t. */
static int check_header(const kp_csv *t, char *err, size_t errlen)
{
    int ok = kp_csv_cols(t) == N_FIELDS;
    for (size_t c = 0; ok && c < N_FIELDS; c++)
        ok = strcmp(kp_csv_header(t, c), field_names[c]) == 0;
    if (ok)
        return 0;
    return kp_errf(err, errlen, KP_ERR_FORMAT, "%s:1: the header is not a ledger's (time,event,"
                   "competition,file,config_hash,prediction_hash,cv,metric,message,ref,"
                   "public_score,private_score)", kp_csv_name(t));
}

/* Parses and checks a ledger's text (name for messages) into *out (may be
 * NULL: only check). */
static int parse_ledger(const char *name, const char *text, size_t len, kp_ledger **out,
                        char *err, size_t errlen)
{
    kp_csv *t = NULL;
    kp_ledger *l = calloc(1, sizeof *l);
    int rc = l ? 0 : kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    if (rc == 0 && len > 0 && (rc = kp_csv_parse(name, text, len, &t, err, errlen)) == 0)
        rc = check_header(t, err, errlen);
    for (size_t r = 0; rc == 0 && t && r < kp_csv_rows(t); r++) {
        const char *f[N_FIELDS];
        char why[200];
        for (int i = 0; i < N_FIELDS; i++)
            f[i] = kp_csv_get(t, r, (size_t)i);
        if (check_fields(f, why, sizeof why) < 0)
            rc = kp_errf(err, errlen, KP_ERR_FORMAT, "%s:%zu: damaged ledger row: %s", name,
                         kp_csv_line(t, r), why);
        else if (out && add_row(l, f) < 0)
            rc = kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    }
    kp_csv_free(t);
    if (rc == 0 && out)
        *out = l, l = NULL;
    kp_ledger_free(l);
    return rc;
}

int kp_ledger_read(const char *path, kp_ledger **out, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    if (access(path, F_OK) != 0 && errno == ENOENT)
        return parse_ledger(path, "", 0, out, err, errlen);
    int rc = kp_read_file(path, &text, &len, err, errlen);
    if (rc == 0)
        rc = parse_ledger(path, text, len, out, err, errlen);
    free(text);
    return rc;
}

int kp_ledger_find_upload(const kp_ledger *l, const char *competition,
                          const char *prediction_hash)
{
    for (int i = kp_ledger_count(l) - 1; i >= 0; i--) {
        const kp_ledger_row *r = &l->rows[i];
        if (!strcmp(r->event, "uploaded") && !strcmp(r->competition, competition) &&
            !strcmp(r->prediction_hash, prediction_hash))
            return i;
    }
    return -1;
}

/* ---- writing ---- */

int kp_ledger_path_for(const char *submission_file, char *out, size_t outlen)
{
    const char *slash = strrchr(submission_file, '/');
    int n = slash ? snprintf(out, outlen, "%.*s/ledger.csv", (int)(slash - submission_file),
                             submission_file)
                  : snprintf(out, outlen, "ledger.csv");
    return n < 0 || (size_t)n >= outlen ? KP_ERR_ARG : 0;
}

/* Appends one CSV line of the fields f[N_FIELDS] (quoted as needed) to b. */
static int format_line(kp_buf *b, const char *const *f)
{
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    int rc = m ? 0 : KP_ERR_NOMEM;
    for (int i = 0; rc == 0 && i < N_FIELDS; i++)
        if ((i && fputc(',', m) == EOF) || kp_csv_write_field(m, f[i]) < 0)
            rc = KP_ERR_NOMEM;
    if (rc == 0 && fputc('\n', m) == EOF)
        rc = KP_ERR_NOMEM;
    if (m && fclose(m) != 0)
        rc = KP_ERR_NOMEM;
    if (rc == 0 && kp_buf_add(b, text, len) < 0)
        rc = KP_ERR_NOMEM;
    free(text);
    return rc;
}

static int format_header(kp_buf *b)
{
    return format_line(b, field_names);
}

/* Takes the exclusive lock of the ledger at path (the lock file
 * "DIR/.NAME.lock", created with DIR if missing); *fd gets the lock's
 * descriptor (close it to unlock). */
static int lock_ledger(const char *path, int *fd, char *err, size_t errlen)
{
    char lock[PATH_MAX];
    const char *slash = strrchr(path, '/');
    int dir = slash ? (int)(slash - path) : 0;
    int n = slash ? snprintf(lock, sizeof lock, "%.*s/.%s.lock", dir, path, slash + 1)
                  : snprintf(lock, sizeof lock, ".%s.lock", path);
    if (n < 0 || (size_t)n >= sizeof lock)
        return kp_errf(err, errlen, KP_ERR_ARG, "%s: path too long", path);
    if (slash) {
        lock[dir] = 0;
        int rc = dir ? kp_mkdirs(lock, err, errlen) : 0;
        lock[dir] = '/';
        if (rc < 0)
            return rc;
    }
    *fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (*fd < 0)
        return kp_errf(err, errlen, KP_ERR_IO, "%s: cannot open: %s", lock, strerror(errno));
    while (flock(*fd, LOCK_EX) != 0)
        if (errno != EINTR) {
            int e = errno;
            close(*fd);
            *fd = -1;
            return kp_errf(err, errlen, KP_ERR_IO, "%s: cannot lock: %s", lock, strerror(e));
        }
    return 0;
}

/* Fsyncs the folder holding path (so a new file's name is durable). */
static void sync_dir(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) + 1 : 1, slash ? path : ".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* Appends the bytes of b to the ledger at path, after checking what it
 * holds (the caller holds the lock): the header first if it is empty, a line
 * end first if its last line lacks one. */
static int append_locked(const char *path, kp_buf *line, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    kp_buf b;
    kp_buf_init(&b, 0);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    int rc = fd < 0 ? kp_errf(err, errlen, KP_ERR_IO, "%s: cannot open: %s", path,
                              strerror(errno)) : kp_read_file(path, &text, &len, err, errlen);
    if (rc == 0)
        rc = parse_ledger(path, text, len, NULL, err, errlen);
    if (rc == 0 && ((len == 0 && format_header(&b) < 0) ||
                    (len > 0 && text[len - 1] != '\n' && kp_buf_add(&b, "\n", 1) < 0) ||
                    kp_buf_add(&b, line->data, line->len) < 0))
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    if (rc == 0 && (kp_write_all(fd, b.data, b.len) < 0 || fsync(fd) != 0))
        rc = kp_errf(err, errlen, KP_ERR_IO, "%s: cannot append: %s", path, strerror(errno));
    if (rc == 0 && len == 0)
        sync_dir(path);
    if (fd >= 0)
        close(fd);
    kp_buf_free(&b);
    free(text);
    return rc;
}

int kp_ledger_append(const char *path, const kp_ledger_row *row, char *err, size_t errlen)
{
    const char *f[N_FIELDS];
    char why[200];
    kp_buf line;
    int lock = -1, rc = 0;
    kp_buf_init(&line, 0);
    row_fields(row, f);
    if (check_fields(f, why, sizeof why) < 0)
        rc = kp_errf(err, errlen, KP_ERR_ARG, "%s: cannot append a row whose %s", path, why);
    else if (format_line(&line, f) < 0)
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    if (rc == 0 && (rc = lock_ledger(path, &lock, err, errlen)) == 0)
        rc = append_locked(path, &line, err, errlen);
    if (lock >= 0)
        close(lock);
    kp_buf_free(&line);
    return rc;
}

/* Sets the scores of the matching rows of l; returns how many matched. */
static int set_rows(kp_ledger *l, const char *competition, const char *ref, const char *pub,
                    const char *priv, int *nomem)
{
    int hits = 0;
    for (int i = 0; i < l->n; i++) {
        kp_ledger_row *r = &l->rows[i];
        if (strcmp(r->event, "uploaded") || strcmp(r->competition, competition) ||
            strcmp(r->ref, ref))
            continue;
        char *a = strdup(pub), *b = strdup(priv);
        if (!a || !b) {
            free(a), free(b);
            *nomem = 1;
            continue;
        }
        free(r->public_score), free(r->private_score);
        r->public_score = a, r->private_score = b;
        hits++;
    }
    return hits;
}

/* Writes the whole ledger l to path atomically. */
static int rewrite(const char *path, const kp_ledger *l, char *err, size_t errlen)
{
    kp_buf b;
    int rc = 0;
    kp_buf_init(&b, 0);
    if (format_header(&b) < 0)
        rc = KP_ERR_NOMEM;
    for (int i = 0; rc == 0 && i < l->n; i++) {
        const char *f[N_FIELDS];
        row_fields(&l->rows[i], f);
        rc = format_line(&b, f);
    }
    if (rc < 0)
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    else
        rc = kp_write_file_atomic(path, b.data, b.len, err, errlen);
    kp_buf_free(&b);
    return rc;
}

int kp_ledger_set_scores(const char *path, const char *competition, const char *ref,
                         const char *public_score, const char *private_score, char *err,
                         size_t errlen)
{
    const char *pub = public_score ? public_score : "", *priv = private_score ? private_score : "";
    kp_ledger *l = NULL;
    int lock = -1, nomem = 0, rc = 0;
    if (!is_score(pub) || !is_score(priv))
        return kp_errf(err, errlen, KP_ERR_ARG, "%s: score '%.40s' is not a number", path,
                       is_score(pub) ? priv : pub);
    if (!ref || !*ref)
        return kp_errf(err, errlen, KP_ERR_ARG, "%s: no submission ref to set scores for", path);
    if ((rc = lock_ledger(path, &lock, err, errlen)) < 0 ||
        (rc = kp_ledger_read(path, &l, err, errlen)) < 0)
        goto fail;
    int hits = set_rows(l, competition, ref, pub, priv, &nomem);
    if (nomem)
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    else if (hits == 0)
        rc = kp_errf(err, errlen, KP_ERR_NOTFOUND, "%s: no uploaded row of competition '%s' "
                     "has the submission ref '%s'", path, competition, ref);
    else
        rc = rewrite(path, l, err, errlen);
fail:
    kp_ledger_free(l);
    if (lock >= 0)
        close(lock);
    return rc;
}

/* ---- time and hashes ---- */

int kp_ledger_now(char out[32])
{
    const char *fixed = getenv("KPIPE_NOW");
    struct tm tm;
    time_t now = time(NULL);
    if (fixed && *fixed) {
        if (!is_iso_time(fixed))
            return KP_ERR_ARG;
        snprintf(out, 32, "%s", fixed);
        return 0;
    }
    if (!gmtime_r(&now, &tm) || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        return KP_ERR_INTERNAL;
    return 0;
}

int kp_ledger_file_hash(const char *path, char hex[KP_HASH_HEXLEN], char *err, size_t errlen)
{
    enum { CHUNK = 1 << 16 };
    char *chunk = malloc(CHUNK);
    kp_hasher *h = kp_hasher_create();
    int n, zerr = Z_OK, rc = h && chunk ? 0 : kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    errno = 0;
    gzFile f = rc == 0 ? gzopen(path, "rb") : NULL;
    if (rc == 0 && !f)
        rc = kp_errf(err, errlen, KP_ERR_IO, "%s: cannot open: %s", path,
                     errno ? strerror(errno) : "out of memory");
    while (rc == 0 && (n = gzread(f, chunk, CHUNK)) > 0)
        kp_hasher_add(h, chunk, (size_t)n);
    const char *why = f ? gzerror(f, &zerr) : NULL;
    if (rc == 0 && zerr != Z_OK)
        rc = kp_errf(err, errlen, zerr == Z_ERRNO ? KP_ERR_IO : KP_ERR_FORMAT,
                     "%s: cannot read: %s", path, zerr == Z_ERRNO ? strerror(errno) : why);
    if (rc == 0)
        kp_hash_hex(kp_hasher_digest(h), hex);
    if (f)
        gzclose(f);
    kp_hasher_free(h);
    free(chunk);
    return rc;
}

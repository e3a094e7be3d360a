/* stamp.c - the up-to-date stamp (see stamp.h). */
#include "stamp.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "strmap.h"
#include "../lib/afile.h"
#include "../lib/err.h"

#ifndef KP_VERSION
#define KP_VERSION "unknown"
#endif

#define STAMP_HEADER "# kpipe stamp v1\n"

int kp_stamp_path(const char *config_path, char *out, size_t n)
{
    char abs[PATH_MAX], hex[KP_HASH_HEXLEN];
    const char *cache = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (!realpath(config_path, abs))
        return KP_ERR_NOTFOUND;
    kp_hash_hex(kp_hash_bytes(abs, strlen(abs)), hex);
    int len = cache && *cache ? snprintf(out, n, "%s/kpipe/stamps/%s", cache, hex)
              : home && *home ? snprintf(out, n, "%s/.cache/kpipe/stamps/%s", home, hex)
                              : -1;
    return len < 0 || (size_t)len >= n ? KP_ERR_NOTFOUND : 0;
}

/* ---- checking (the fast path: plain system calls, no allocation per file) ---- */

/* Reads a whole small file into a NUL-terminated heap buffer, or NULL. */
static char *slurp(const char *path, size_t *len)
{
    char *text = NULL, err[8];
    if (kp_read_file(path, &text, len, err, 0) < 0)
        return NULL;
    return text;
}

/* Parses "DEV INO SIZE MTIME_NS PATH" at *p; checks the file; moves *p to
 * the next line.  Returns 1 when the file's stat is the recorded one. */
static int file_line_holds(char **p)
{
    char *s = *p, *nl = strchr(s, '\n'), *end;
    if (!nl)
        return 0;
    *nl = 0;
    *p = nl + 1;
    uint64_t v[4];
    for (int i = 0; i < 4; i++) {
        errno = 0;
        v[i] = strtoull(s, &end, 10);
        if (errno || end == s || *end != ' ')
            return 0;
        s = end + 1;
    }
    struct stat st;
    return stat(s, &st) == 0 && (uint64_t)st.st_dev == v[0] && (uint64_t)st.st_ino == v[1] &&
           (uint64_t)st.st_size == v[2] &&
           (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec == v[3];
}

/* Returns 1 when the header names this version and config text; sets *tasks
 * and moves *p past it. */
static int header_holds(char **p, const char *config_path, long *tasks)
{
    char want[256], hex[KP_HASH_HEXLEN], *end;
    size_t len = 0;
    char *config = slurp(config_path, &len);
    if (!config)
        return 0;
    kp_hash_hex(kp_hash_bytes(config, len), hex);
    free(config);
    int n = snprintf(want, sizeof want, STAMP_HEADER "version %s\nconfig %s\ntasks ", KP_VERSION,
                     hex);
    if (n < 0 || (size_t)n >= sizeof want || strncmp(*p, want, (size_t)n) != 0)
        return 0;
    errno = 0;
    *tasks = strtol(*p + n, &end, 10);
    if (errno || end == *p + n || *end != '\n' || *tasks < 0 || *tasks > INT_MAX)
        return 0;
    *p = end + 1;
    return 1;
}

int kp_stamp_check(const char *stamp_path, const char *config_path)
{
    size_t len = 0;
    long tasks = -1;
    char *text = slurp(stamp_path, &len), *p = text;
    int ok = text && header_holds(&p, config_path, &tasks) && *p;   /* the run log at least */
    while (ok && *p)
        ok = file_line_holds(&p);
    free(text);
    return ok ? (int)tasks : -1;
}

/* ---- writing ---- */

static int add_line(kp_buf *b, const kp_fstat *st, const char *path)
{
    if (strchr(path, '\n'))
        return KP_ERR_NOTFOUND;   /* cannot be written on one line: no stamp */
    return kp_buf_printf(b, "%" PRIu64 " %" PRIu64 " %" PRId64 " %" PRId64 " %s\n", st->dev,
                         st->ino, st->size, st->mtime_ns, path) < 0 ? KP_ERR_NOMEM : 0;
}

/* Adds path's line unless seen already; 0 or a negative status. */
static int collect_path(const kp_runlog *rl, kp_strmap *seen, const char *path, kp_buf *lines)
{
    kp_fstat st;
    if (kp_strmap_get(seen, path) >= 0)
        return 0;
    if (kp_strmap_put(seen, path, 0) < 0)
        return KP_ERR_NOMEM;
    if (kp_runlog_file_seen_stat(rl, path, &st) < 0)
        return KP_ERR_NOTFOUND;
    return add_line(lines, &st, path);
}

int kp_stamp_collect(const kp_graph *g, const kp_runlog *rl, kp_buf *lines)
{
    kp_strmap *seen = kp_strmap_create();
    int rc = seen ? 0 : KP_ERR_NOMEM;
    for (int i = 0; rc == 0 && i < kp_graph_count(g); i++) {
        const kp_task *t = kp_graph_task(g, i);
        for (int j = 0; rc == 0 && j < t->n_inputs; j++)
            rc = collect_path(rl, seen, t->inputs[j], lines);
        for (int j = 0; rc == 0 && j < t->n_outputs; j++)
            rc = collect_path(rl, seen, t->outputs[j], lines);
    }
    kp_strmap_free(seen);
    return rc;
}

int kp_stamp_write(kp_fs *fs, const char *stamp_path, kp_hash config_hash, int n_tasks,
                   const char *runlog_path, const kp_buf *lines, char *err, size_t errlen)
{
    char hex[KP_HASH_HEXLEN], dir[PATH_MAX];
    kp_fstat st;
    kp_buf b;
    kp_buf_init(&b, 0);
    kp_hash_hex(config_hash, hex);
    int rc = kp_fs_stat(fs, runlog_path, &st, err, errlen);
    if (rc == 0 && !st.exists)
        rc = kp_errf(err, errlen, KP_ERR_NOTFOUND, "%s: no such file", runlog_path);
    if (rc == 0 && (kp_buf_printf(&b, STAMP_HEADER "version %s\nconfig %s\ntasks %d\n",
                                  KP_VERSION, hex, n_tasks) < 0 ||
                    add_line(&b, &st, runlog_path) < 0 ||
                    kp_buf_add(&b, kp_buf_str(lines), lines->len) < 0))
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory", stamp_path);
    snprintf(dir, sizeof dir, "%s", stamp_path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    if (rc == 0 && slash)
        rc = fs->ops->mkdirs(fs, dir, err, errlen);
    if (rc == 0)
        rc = fs->ops->write_atomic(fs, stamp_path, b.data, b.len, err, errlen);
    kp_buf_free(&b);
    return rc;
}

/* runlog.h - what ran, with what key, and the content-hash cache (RUN_DIR/.kpipe/runlog).
 *
 * A text file after ninja's .ninja_log: the first line is "# kpipe runlog v2";
 * then one line per finished task ("T", tab-separated: id, cache key, param
 * hash, start ns, wall ms, CPU ms, peak RSS KB, exit status, input count,
 * output count, then the content hash of each input and each output, in the
 * task's order) and one line per hashed file ("H": path, dev, ino, size,
 * mtime ns, content hash).  Hashes are 32 hex digits, numbers decimal.  A
 * task line holds no paths: the graph knows them (by position), and the
 * H lines hold each file's path once.  The last line for a task or path
 * wins.  Lines are appended with one write() and no fsync: a lost line only
 * means a task re-runs.  A log of an unknown version (v1 included), or with
 * a garbage header, is discarded and rebuilt (not an error); a torn last
 * line (no newline) and malformed lines are ignored.  kp_runlog_compact()
 * rewrites the file atomically once it has grown.
 *
 * The hash cache trusts a file's recorded content hash while its (dev, ino,
 * size, mtime_ns) are unchanged, as DVC does, so a no-op run reads no data.
 */
#ifndef KP_RUNLOG_H
#define KP_RUNLOG_H

#include <stddef.h>
#include <stdint.h>
#include "fs.h"
#include "../lib/hash.h"

#define KP_RUNLOG_HEADER "# kpipe runlog v2"

/* One finished task.  Recorded entries are copied, except in_paths and
 * out_paths, which are not stored: they are NULL in found entries.  Found
 * entries are borrowed. */
typedef struct kp_runlog_entry {
    const char *task;
    kp_hash key;              /* hash of param text + input content hashes */
    kp_hash params;           /* hash of the param text alone (to explain "config changed") */
    int64_t start_ns;         /* wall-clock start, ns since the epoch */
    int64_t wall_ms, cpu_ms;  /* elapsed; user + system CPU of the child */
    int64_t rss_kb;           /* peak resident set of the child */
    int exit_status;          /* 0 = success; 128+N = killed by signal N */
    int n_inputs;
    const char *const *in_paths;
    const kp_hash *in_hashes;
    int n_outputs;
    const char *const *out_paths;
    const kp_hash *out_hashes;
} kp_runlog_entry;

typedef struct kp_runlog kp_runlog;

/* Loads DIR/runlog (DIR is made unless read_only); *out caller-owned
 * (kp_runlog_close).  A read-only log never writes: its cache still serves. */
int kp_runlog_open(kp_fs *fs, const char *dir, int read_only, kp_runlog **out,
                   char *err, size_t errlen);

/* Compacts if needed (errors ignored) and frees; NULL is accepted. */
void kp_runlog_close(kp_runlog *rl);

/* Returns 1 if an existing log was discarded on open (unknown version or garbage). */
int kp_runlog_discarded(const kp_runlog *rl);

/* Returns the last entry of task, or NULL; borrowed until the next record of that task. */
const kp_runlog_entry *kp_runlog_find(const kp_runlog *rl, const char *task);

/* Stores a copy of e and appends its line (unless read-only); 0 or a negative status. */
int kp_runlog_record(kp_runlog *rl, const kp_runlog_entry *e, char *err, size_t errlen);

/* Content hash of path: from the cache while its stat is unchanged, else
 * read and hashed (and the cache line appended).  KP_ERR_NOTFOUND if absent. */
int kp_runlog_file_hash(kp_runlog *rl, const char *path, kp_hash *out, char *err, size_t errlen);

/* As kp_runlog_file_hash, but a path this process has already looked up
 * (with either function) is served from memory without a stat: one stat per
 * file in a run where each output is looked up again as an input of every
 * task that reads it.  kp_runlog_file_hash always stats, so hashing a task's
 * outputs with it after the task ran keeps what is served here current. */
int kp_runlog_file_hash_seen(kp_runlog *rl, const char *path, kp_hash *out, char *err,
                             size_t errlen);

/* Fills *st with the stat under which this process last looked up path's
 * content hash (with either function above); 0, or KP_ERR_NOTFOUND when it
 * did not look path up. */
int kp_runlog_file_seen_stat(const kp_runlog *rl, const char *path, kp_fstat *st);

/* Rewrites the log atomically with only the live entries when it has grown
 * (3x the live entries and at least 100 lines, or junk was seen), or always
 * if force; drops cache lines of files changed or gone.  0 or a negative status. */
int kp_runlog_compact(kp_runlog *rl, int force, char *err, size_t errlen);

/* Returns the number of lines in the file (header excluded) as last loaded or written. */
int kp_runlog_lines(const kp_runlog *rl);

#endif

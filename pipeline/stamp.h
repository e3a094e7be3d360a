/* stamp.h - the up-to-date stamp: a re-run with nothing to do, answered
 * without loading the config.
 *
 * A run that leaves every task of the graph up to date (no --only, nothing
 * failed or interrupted) ends by writing a stamp: the kpipe version, the
 * hash of the config text it loaded, the task count, and the (dev, ino,
 * size, mtime) of the run log and of every input and output of the graph,
 * exactly as the run's hash cache verified them.  The next `kpipe run`
 * reads the stamp first: when the version, the config text and every
 * file's stat are unchanged, the executor would trust the same hash cache
 * lines, compute the same cache keys and find every output in place, so
 * kpipe reports every task up to date without parsing the config, building
 * the graph or reading the run log; a no-op costs one stat per file, as in
 * ninja.  Any other run removes the stamp before it starts a task, so a
 * stamp never outlives a change kpipe made itself.
 *
 * Stamps live in $XDG_CACHE_HOME/kpipe/stamps, else ~/.cache/kpipe/stamps,
 * one per config file, named by the hash of its absolute path.  Format
 * (text): "# kpipe stamp v1", "version V", "config HASH", "tasks N", then
 * one line per file: "DEV INO SIZE MTIME_NS PATH", the run log first.
 */
#ifndef KP_STAMP_H
#define KP_STAMP_H

#include <stddef.h>
#include "fs.h"
#include "graph.h"
#include "runlog.h"
#include "../lib/buf.h"

/* Writes the stamp file's path for config_path into out; 0, or
 * KP_ERR_NOTFOUND when neither XDG_CACHE_HOME nor HOME is set or the path
 * does not fit. */
int kp_stamp_path(const char *config_path, char *out, size_t n);

/* Returns the task count recorded in the stamp at stamp_path when it proves
 * that a run of config_path has nothing to do, else -1 (no stamp, another
 * version or config text, a file changed or gone, a malformed stamp). */
int kp_stamp_check(const char *stamp_path, const char *config_path);

/* Appends to lines the stat line of every input and output of g, as rl's
 * hash cache verified it in this process; 0, or KP_ERR_NOTFOUND when some
 * file was not verified (then no stamp may be written). */
int kp_stamp_collect(const kp_graph *g, const kp_runlog *rl, kp_buf *lines);

/* Writes the stamp atomically through fs: header (config_hash, n_tasks), the
 * run log's stat (runlog_path, read now: call after the log is closed), then
 * lines from kp_stamp_collect.  0 or a negative status. */
int kp_stamp_write(kp_fs *fs, const char *stamp_path, kp_hash config_hash, int n_tasks,
                   const char *runlog_path, const kp_buf *lines, char *err, size_t errlen);

#endif

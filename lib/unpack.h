/* unpack.h - archives (zip, tar, tar.gz, tar.bz2, tar.xz) unpacked safely
 * with libarchive.
 *
 * The archive is hostile: an entry with an absolute path, a ".." component,
 * a symlink or hard link whose target leaves the folder, or a device/fifo
 * is refused, naming the archive and the entry; so is an archive that would
 * unpack to more than max_bytes (counted as the data is written, whatever
 * the headers claim) or more than max_entries entries.  Entries go to a
 * temporary folder inside dir first and are moved into dir only when the
 * whole archive unpacked: a refused or broken archive leaves dir as it was.
 */
#ifndef KP_UNPACK_H
#define KP_UNPACK_H

#include <stdint.h>
#include "buf.h"

typedef struct kp_unpack_limits {
    int64_t max_bytes;         /* total unpacked bytes (default 64 GiB when <= 0) */
    int64_t max_entries;       /* default 1,000,000 when <= 0 */
} kp_unpack_limits;

/* Returns 1 when name ends like an archive kp_unpack reads (.zip .tar
 * .tar.gz .tgz .tar.bz2 .tbz2 .tar.xz .txz). */
int kp_unpack_is_archive(const char *name);

/* Unpacks archive into dir (created if missing; existing files of the same
 * names are replaced).  files (may be NULL) gets the relative path of every
 * regular file unpacked, one per line, in archive order, each path once at
 * its last write: a file that a later entry replaced (by a folder, a link or
 * another copy) leaves the list. */
int kp_unpack(const char *archive, const char *dir, const kp_unpack_limits *lim,
              kp_buf *files, char *err, size_t errlen);

#endif

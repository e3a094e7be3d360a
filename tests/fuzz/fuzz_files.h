/* fuzz_files.h - what the harnesses that read files share: writing the
 * input to a file, and counting open descriptors (a reader must not leak one). */
#ifndef KP_FUZZ_FILES_H
#define KP_FUZZ_FILES_H

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
#include "../../lib/afile.h"

/* Writes the n bytes of data to path (replacing it); aborts on failure. */
static void write_bytes(const char *path, const uint8_t *data, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || kp_write_all(fd, data, n) < 0)
        abort();
    close(fd);
}

/* Returns the number of open file descriptors of this process. */
static int open_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

#endif

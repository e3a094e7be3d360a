/* fuzz_unpack.c - libFuzzer entry point for the archive unpacker.
 *
 * The bytes are written as an archive beside a box folder that holds one
 * fresh, empty destination folder, and kp_unpack unpacks them into it with
 * max_bytes 1 MiB and max_entries 1000.  Layout, one per process:
 *   ROOT/in        the archive          ROOT/box/out   the destination
 * After every input ROOT must hold only in and box, and box only out
 * (nothing was written beside the destination), and out no temporary
 * folder of the unpacker.  Every symlink inside out must lead inside it,
 * followed through the links around it as the kernel would.  On success
 * every listed file is a regular file under out; on failure out is still
 * empty, the list untouched, the status KP_ERR_FORMAT or KP_ERR_IO
 * (KP_ERR_NOMEM allowed) and the message names the archive.  No file
 * descriptor may leak.  out is then removed recursively for the next input.
 * Built with -DKP_LIBFUZZER under clang -fsanitize=fuzzer; without it,
 * main() replays the files named on the command line (builds with gcc).
 */
#include "../../lib/buf.h"
#include "../../lib/err.h"
#include "../../lib/unpack.h"

#include "fuzz_files.h"

#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char root[64];            /* the process's temporary folder */
static char in_path[96], box[96], out[112];

/* nftw callback: removes one node (children first). */
static int rm_node(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

/* Removes the tree at path without following symlinks. */
static void rm_tree(const char *path)
{
    nftw(path, rm_node, 16, FTW_DEPTH | FTW_PHYS);
}

/* Removes the whole temporary folder at exit. */
static void cleanup(void)
{
    rm_tree(root);
}

/* Makes ROOT and ROOT/box on first use; aborts when it cannot. */
static void setup(void)
{
    if (root[0])
        return;
    const char *tmp = getenv("TMPDIR");
    snprintf(root, sizeof root, "%s/kp_fuzz_unpack.XXXXXX",
             tmp && *tmp && strlen(tmp) < 32 ? tmp : "/tmp");
    if (!mkdtemp(root))
        abort();
    snprintf(in_path, sizeof in_path, "%s/in", root);
    snprintf(box, sizeof box, "%s/box", root);
    snprintf(out, sizeof out, "%s/out", box);
    if (mkdir(box, 0755) != 0)
        abort();
    atexit(cleanup);
}

/* Aborts unless folder dir holds exactly the names a and b (b may be NULL). */
static void expect_only(const char *dir, const char *a, const char *b)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int seen = 0;
    if (!d)
        abort();
    while ((de = readdir(d))) {
        const char *n = de->d_name;
        if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0)
            continue;
        if (strcmp(n, a) != 0 && (!b || strcmp(n, b) != 0)) {
            fprintf(stderr, "fuzz_unpack: '%s' appeared in %s\n", n, dir);
            abort();
        }
        seen++;
    }
    closedir(d);
    if (seen != (b ? 2 : 1))
        abort();
}

/* Returns a heap string formatted as printf does; aborts when out of memory. */
static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    va_list ap;
    char *s;
    va_start(ap, f);
    int n = vasprintf(&s, f, ap);
    va_end(ap);
    if (n < 0)
        abort();
    return s;
}

/* Returns the target of the symlink at path (heap); aborts when it cannot be read. */
static char *read_link(const char *path)
{
    char t[PATH_MAX];
    ssize_t n = readlink(path, t, sizeof t - 1);
    if (n < 0)
        abort();
    t[n] = 0;
    return fmt("%s", t);
}

/* Returns 1 when the symlink at rel (relative to out) leads outside out:
 * its target is followed component by component through out as it now is,
 * each symlink met read in turn (up to 40), as the kernel would, so a
 * dangling link that leaves through another link is caught too. */
static int link_escapes(const char *rel)
{
    const char *slash = strrchr(rel, '/');
    char *cur = fmt("%.*s", slash ? (int)(slash - rel) : 0, rel), *full = fmt("%s/%s", out, rel);
    char *rest = read_link(full);
    int hops = 0, escapes = rest[0] == '/';   /* an absolute target */
    free(full);
    while (!escapes && rest[0] && hops < 40) {
        size_t k = strcspn(rest, "/");
        char *name = fmt("%.*s", (int)k, rest), *tail = rest + k + (rest[k] == '/');
        memmove(rest, tail, strlen(tail) + 1);
        if (strcmp(name, "..") == 0) {
            char *up = strrchr(cur, '/');
            escapes = !cur[0];
            *(up ? up : cur) = 0;
        } else if (k > 0 && strcmp(name, ".") != 0) {
            char *next = fmt("%s%s%s", cur, cur[0] ? "/" : "", name);
            struct stat sb;
            full = fmt("%s/%s", out, next);
            if (lstat(full, &sb) == 0 && S_ISLNK(sb.st_mode)) {
                char *t = read_link(full), *r = fmt("%s%s%s", t, rest[0] ? "/" : "", rest);
                escapes = t[0] == '/';
                free(t), free(rest), free(next);
                rest = r;
                hops++;
            } else {
                free(cur);
                cur = next;
            }
            free(full);
        }
        free(name);
    }
    free(cur);
    free(rest);
    return escapes;
}

/* nftw callback: aborts on a symlink in out that leads outside it. */
static int check_node(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)ftw;
    if (flag != FTW_SL && flag != FTW_SLN)
        return 0;
    const char *rel = path + strlen(out) + 1;
    if (link_escapes(rel)) {
        fprintf(stderr, "fuzz_unpack: the symlink %s leads outside the folder\n", rel);
        abort();
    }
    return 0;
}

/* Aborts unless every line of files names a regular file under out. */
static void check_listed(const kp_buf *files)
{
    for (const char *p = kp_buf_str(files), *nl; *p; p = nl + 1) {
        struct stat sb;
        if (!(nl = strchr(p, '\n')) || nl == p)
            abort();
        char *path = fmt("%s/%.*s", out, (int)(nl - p), p);
        int ok = lstat(path, &sb) == 0 && S_ISREG(sb.st_mode);
        free(path);
        if (!ok)
            abort();
    }
}

/* Checks what kp_unpack left behind after returning rc. */
static void check_result(int rc, const char *err, const kp_buf *files)
{
    expect_only(root, "in", "box");
    expect_only(box, "out", NULL);
    if (nftw(out, check_node, 16, FTW_PHYS) != 0)
        abort();
    DIR *d = opendir(out);
    int names = 0, tmp_left = 0;
    for (struct dirent *de; d && (de = readdir(d));) {
        names += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
        tmp_left |= strncmp(de->d_name, ".kpipe-unpack.", 14) == 0;
    }
    if (!d || tmp_left)
        abort();
    closedir(d);
    if (rc == 0) {
        check_listed(files);
        return;
    }
    if ((rc != KP_ERR_FORMAT && rc != KP_ERR_IO && rc != KP_ERR_NOMEM) || names != 0 ||
        files->len != 0 || !strstr(err, in_path)) {
        fprintf(stderr, "fuzz_unpack: status %d, %d names left, message '%s'\n", rc, names, err);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[KP_ERRLEN] = "";
    kp_unpack_limits lim = {.max_bytes = 1 << 20, .max_entries = 1000};
    kp_buf files;
    setup();
    write_bytes(in_path, data, size);
    if (mkdir(out, 0755) != 0)
        abort();
    kp_buf_init(&files, 0);
    int fds = open_fds();
    int rc = kp_unpack(in_path, out, &lim, &files, err, sizeof err);
    if (open_fds() != fds)
        abort();
    check_result(rc, err, &files);
    kp_buf_free(&files);
    rm_tree(out);
    return 0;
}

#include "replay_main.h"

/* harness.c - the test runner's main, totals and fixture helpers. */
#include "kp_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int total_run, total_failed;
static char *tmp_dirs[256];
static int n_tmp_dirs;

int kp_test_run(const char *name, const struct CMUnitTest *tests, size_t n)
{
    int failed = _cmocka_run_group_tests(name, tests, n, NULL, NULL);
    total_run += (int)n;
    total_failed += failed;
    return failed;
}

static void remove_tmp_dirs(void)
{
    if (getenv("KP_TEST_KEEP"))
        return;
    for (int i = 0; i < n_tmp_dirs; i++) {
        char cmd[4200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dirs[i]);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", tmp_dirs[i]);
        free(tmp_dirs[i]);
    }
    n_tmp_dirs = 0;
}

char *kp_test_tmpdir(void)
{
    char tmpl[] = "/tmp/kptest.XXXXXX";
    if (!mkdtemp(tmpl))
        return NULL;
    if (n_tmp_dirs < 256)
        tmp_dirs[n_tmp_dirs++] = strdup(tmpl);
    return strdup(tmpl);
}

char *kp_test_join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s/%s", a, b);
    return s;
}

char *kp_test_write(const char *dir, const char *name, const char *text)
{
    char *path = kp_test_join(dir, name);
    if (!path)
        return NULL;
    for (char *p = path + strlen(dir) + 1; *p; p++) {
        if (*p == '/') {
            *p = 0;
            mkdir(path, 0777);
            *p = '/';
        }
    }
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(path);
        return NULL;
    }
    fputs(text, f);
    fclose(f);
    return path;
}

/* Reads a stream to its end into a heap string (NULL on allocation failure). */
static char *read_stream(FILE *f)
{
    size_t cap = 4096, len = 0, got;
    char *s = malloc(cap);
    while (s && (got = fread(s + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (cap - len < 2) {
            char *t = realloc(s, cap *= 2);
            if (!t)
                free(s);
            s = t;
        }
    }
    if (s)
        s[len] = 0;
    return s;
}

char *kp_test_read(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *s = read_stream(f);
    fclose(f);
    return s;
}

const char *kp_test_bin(void)
{
    const char *b = getenv("KPIPE_BIN");
    return b ? b : "./build/kpipe";
}

const char *kp_test_root(void)
{
    const char *r = getenv("KPIPE_ROOT");
    return r ? r : ".";
}

int kp_test_sh(const char *cmdline, char **out)
{
    char *full = malloc(strlen(cmdline) + 16);
    if (!full)
        return -1;
    sprintf(full, "(%s) 2>&1", cmdline);
    FILE *p = popen(full, "r");
    free(full);
    if (!p)
        return -1;
    char *s = read_stream(p);
    int st = pclose(p);
    if (out)
        *out = s;
    else
        free(s);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int main(int argc, char **argv)
{
    const char *only = argc > 1 ? argv[1] : NULL;
    int groups = 0;
    atexit(remove_tmp_dirs);
    /* kpipe's up-to-date stamps (pipeline/stamp.h) go to a folder of the run's own */
    char *cache = kp_test_tmpdir();
    setenv("XDG_CACHE_HOME", cache, 1);
    free(cache);
    for (const kp_test_group *g = kp_test_groups; g->name; g++) {
        if (only && *only && strcmp(only, g->name) != 0)
            continue;
        g->run();
        groups++;
    }
    if (only && *only && groups == 0) {
        fprintf(stderr, "no test group named '%s'\n", only);
        return 2;
    }
    printf("%d passed, %d failed\n", total_run - total_failed, total_failed);
    return total_failed ? 1 : 0;
}

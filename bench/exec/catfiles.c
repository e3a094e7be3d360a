/* catfiles.c - concatenates files without a shell: catfiles OUT IN...
 *
 * The merge and stack tasks of the executor benchmark need several inputs in
 * one output; `cat a b > out` would need a shell, so every tool runs this
 * same command line instead.  Writes OUT.tmp, then renames it over OUT.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>

/* Appends the file at path to out; returns 0 or -1 (message printed). */
static int append_file(FILE *out, const char *path)
{
    char buf[65536];
    size_t n;
    FILE *in = fopen(path, "rb");
    if (!in) {
        perror(path);
        return -1;
    }
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) {
        if (fwrite(buf, 1, n, out) != n) {
            fclose(in);
            return -1;
        }
    }
    int bad = ferror(in);
    fclose(in);
    return bad ? -1 : 0;
}

int main(int argc, char **argv)
{
    char tmp[4096];
    if (argc < 3) {
        fprintf(stderr, "usage: catfiles OUT IN...\n");
        return 2;
    }
    if (snprintf(tmp, sizeof tmp, "%s.tmp", argv[1]) >= (int)sizeof tmp) {
        fprintf(stderr, "catfiles: output path too long\n");
        return 2;
    }
    FILE *out = fopen(tmp, "wb");
    if (!out) {
        perror(tmp);
        return 1;
    }
    for (int i = 2; i < argc; i++) {
        if (append_file(out, argv[i]) < 0)
            goto fail;
    }
    if (fclose(out) != 0) {
        out = NULL;
        goto fail;
    }
    if (rename(tmp, argv[1]) != 0) {
        perror(argv[1]);
        remove(tmp);
        return 1;
    }
    return 0;
fail:
    if (out)
        fclose(out);
    remove(tmp);
    fprintf(stderr, "catfiles: failed writing %s\n", argv[1]);
    return 1;
}

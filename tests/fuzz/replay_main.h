/* replay_main.h - the gcc build of a fuzz harness: main() replays the files
 * named in argv through LLVMFuzzerTestOneInput, each in a buffer of its exact
 * size so that over-reads are caught by ASan.  Included last by every
 * harness; under -DKP_LIBFUZZER libFuzzer brings its own main. */
#ifndef KP_LIBFUZZER
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) {
            perror(argv[i]);
            return 1;
        }
        size_t cap = 1 << 16, n = 0, r;
        uint8_t *buf = malloc(cap);
        while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
            n += r;
            if (n == cap) {
                uint8_t *grown = realloc(buf, cap *= 2);
                if (!grown)
                    free(buf);
                buf = grown;
            }
        }
        fclose(f);
        if (!buf)
            return 1;
        uint8_t *exact = malloc(n ? n : 1);
        if (!exact) {
            free(buf);
            return 1;
        }
        memcpy(exact, buf, n);
        free(buf);
        LLVMFuzzerTestOneInput(exact, n);
        printf("%s: ok (%zu bytes)\n", argv[i], n);
        free(exact);
    }
    return 0;
}
#endif

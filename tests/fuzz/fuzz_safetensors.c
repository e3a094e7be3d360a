/* fuzz_safetensors.c - libFuzzer entry point for the safetensors reader.
 *
 * Every input must either be refused with KP_ERR_FORMAT or yield tensors whose
 * bytes can all be read (ASan checks the reads stay inside the image).  Built
 * with -DKP_LIBFUZZER under clang -fsanitize=fuzzer; without it, main() replays
 * the files named on the command line (builds with gcc).  See README.md.
 */
#include "../../lib/err.h"
#include "../../models/safetensors.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

volatile unsigned kp_fuzz_sink;     /* keeps the reads from being optimised away */

/* Reads every byte of every tensor and exercises the lookups. */
static unsigned touch(const kp_st *st)
{
    unsigned sum = 0;
    char err[KP_ERRLEN];
    for (int i = 0; i < kp_st_count(st); i++) {
        const kp_tensor *t = kp_st_at(st, i);
        const unsigned char *p = t->data;
        if (t->nbytes != (size_t)t->numel * kp_dtype_size(t->dtype) ||
            (uintptr_t)p % kp_dtype_size(t->dtype) != 0 || t->ndim > KP_ST_MAX_DIMS)
            abort();    /* the reader broke its own contract */
        for (size_t k = 0; k < t->nbytes; k++)
            sum += p[k];
        if (kp_st_find(st, t->name) == NULL ||
            !kp_st_expect(st, t->name, t->dtype, t->ndim, t->shape, err, sizeof err))
            abort();
    }
    kp_st_meta(st, "kpipe.artifact");
    return sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[KP_ERRLEN];
    kp_st *st = NULL;
    int rc = kp_st_open_mem("fuzz", data, size, &st, err, sizeof err);
    if (rc == 0) {
        kp_fuzz_sink += touch(st);
        kp_st_close(st);
    } else if (rc != KP_ERR_FORMAT && rc != KP_ERR_NOMEM) {
        abort();
    }
    return 0;
}

#include "replay_main.h"

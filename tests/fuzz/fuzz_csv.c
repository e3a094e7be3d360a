/* fuzz_csv.c - libFuzzer entry point for the CSV reader.
 *
 * Every input must be parsed or refused with KP_ERR_FORMAT; a parsed table
 * must have every field readable and a header of as many names as columns.
 * Built with -DKP_LIBFUZZER under clang -fsanitize=fuzzer; without it, main()
 * replays the files named on the command line (builds with gcc).
 */
#include "../../lib/csv.h"
#include "../../lib/err.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

volatile size_t kp_fuzz_sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[KP_ERRLEN];
    kp_csv *t = NULL;
    int rc = kp_csv_parse("fuzz.csv", (const char *)data, size, &t, err, sizeof err);
    if (rc == 0) {
        for (size_t c = 0; c < kp_csv_cols(t); c++)
            kp_fuzz_sink += strlen(kp_csv_header(t, c));
        for (size_t r = 0; r < kp_csv_rows(t); r++)
            for (size_t c = 0; c < kp_csv_cols(t); c++)
                kp_fuzz_sink += strlen(kp_csv_get(t, r, c));
        kp_csv_free(t);
    } else if (rc != KP_ERR_FORMAT && rc != KP_ERR_NOMEM) {
        abort();
    }
    return 0;
}

#include "replay_main.h"

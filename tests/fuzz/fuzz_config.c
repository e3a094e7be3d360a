/* fuzz_config.c - libFuzzer entry point for the YAML config loader.
 *
 * Every input must load or be refused with a config-class status and a
 * non-empty message; nothing may crash or leak.  The config's file paths
 * resolve against /nonexistent, so loads fail at the first file check at the
 * latest.  Built with -DKP_LIBFUZZER under clang -fsanitize=fuzzer; without
 * it, main() replays the files named on the command line.
 */
#include "../../lib/err.h"
#include "../../pipeline/config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[KP_ERRLEN] = "";
    kp_config *cfg = NULL;
    int rc = kp_config_load_string("/nonexistent/fuzz.yaml", (const char *)data, size, &cfg,
                                   err, sizeof err);
    if (rc == 0)
        kp_config_free(cfg);
    else if (err[0] == 0 || cfg != NULL || rc == KP_ERR_INTERNAL)
        abort();
    return 0;
}

#include "replay_main.h"

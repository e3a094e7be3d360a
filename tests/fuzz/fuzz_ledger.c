/* fuzz_ledger.c - libFuzzer entry point for the submissions ledger reader.
 *
 * The bytes are written to a ledger file in a temporary folder and read
 * back with kp_ledger_read.  A hostile ledger must be refused with
 * KP_ERR_FORMAT (or KP_ERR_IO) and a message naming the file, the output
 * untouched; a ledger read must keep the reader's promises for every row:
 * no NULL field, a 20-character time, event written or uploaded, a
 * competition and a file, a 32-hex-digit prediction hash, and
 * kp_ledger_find_upload finding every uploaded row.  Nothing may crash,
 * leak memory or leak a file descriptor.  Built with -DKP_LIBFUZZER under
 * clang -fsanitize=fuzzer; without it, main() replays the files named on
 * the command line (builds with gcc).
 */
#include "../../lib/err.h"
#include "../../lib/ledger.h"

#include "fuzz_files.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

volatile size_t kp_fuzz_sink;

static char fuzz_dir[64];    /* one temporary folder per process */
static char fuzz_path[96];   /* FOLDER/ledger.csv */

/* Removes the ledger and its folder at exit. */
static void cleanup(void)
{
    unlink(fuzz_path);
    rmdir(fuzz_dir);
}

/* Makes the temporary folder on first use; aborts when it cannot. */
static void setup(void)
{
    if (fuzz_dir[0])
        return;
    const char *tmp = getenv("TMPDIR");
    snprintf(fuzz_dir, sizeof fuzz_dir, "%s/kp_fuzz_ledger.XXXXXX",
             tmp && *tmp && strlen(tmp) < 32 ? tmp : "/tmp");
    if (!mkdtemp(fuzz_dir))
        abort();
    snprintf(fuzz_path, sizeof fuzz_path, "%s/ledger.csv", fuzz_dir);
    atexit(cleanup);
}

/* Returns 1 when s is 32 lower-case hex digits. */
static int hex32(const char *s)
{
    return strlen(s) == 32 && strspn(s, "0123456789abcdef") == 32;
}

/* Checks row i of l against the reader's promises; aborts when one is broken. */
static void check_row(const kp_ledger *l, int i)
{
    const kp_ledger_row *r = kp_ledger_at(l, i);
    const char *const f[] = {r->time, r->event, r->competition, r->file, r->config_hash,
                             r->prediction_hash, r->cv, r->metric, r->message, r->ref,
                             r->public_score, r->private_score};
    for (size_t k = 0; k < sizeof f / sizeof f[0]; k++) {
        if (!f[k])
            abort();
        kp_fuzz_sink += strlen(f[k]);
    }
    int up = strcmp(r->event, "uploaded") == 0;
    if (strlen(r->time) != 20 || (!up && strcmp(r->event, "written") != 0) ||
        !*r->competition || !*r->file || !hex32(r->prediction_hash) ||
        (*r->config_hash && !hex32(r->config_hash)))
        abort();
    if (up && kp_ledger_find_upload(l, r->competition, r->prediction_hash) < i)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[KP_ERRLEN] = "";
    kp_ledger *l = NULL;
    setup();
    write_bytes(fuzz_path, data, size);
    int fds = open_fds();
    int rc = kp_ledger_read(fuzz_path, &l, err, sizeof err);
    if (open_fds() != fds)
        abort();
    if (rc == 0) {
        int n = kp_ledger_count(l);
        for (int i = 0; i < n; i++)
            check_row(l, i);
        if (n < 0 || kp_ledger_at(l, n) != NULL || kp_ledger_at(l, -1) != NULL)
            abort();
        kp_ledger_free(l);
    } else if ((rc != KP_ERR_FORMAT && rc != KP_ERR_IO && rc != KP_ERR_NOMEM) || l != NULL ||
               (rc == KP_ERR_FORMAT && !strstr(err, fuzz_path))) {
        fprintf(stderr, "fuzz_ledger: status %d, message '%s'\n", rc, err);
        abort();
    }
    return 0;
}

#include "replay_main.h"

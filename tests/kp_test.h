/* kp_test.h - the test harness: cmocka groups registered by name.
 *
 * Each tests/test_NAME.c ends with
 *     KP_TEST_GROUP(name) { const struct CMUnitTest t[] = {...}; return KP_RUN(name, t); }
 * and scripts/gen_test_registry.sh collects the groups.  `kpipe_tests dag`
 * (make test T=dag) runs one group.  The runner closes with "N passed, N failed".
 */
#ifndef KP_TEST_H
#define KP_TEST_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

typedef struct kp_test_group { const char *name; int (*run)(void); } kp_test_group;
extern const kp_test_group kp_test_groups[];

#define KP_TEST_GROUP(name) int kp_test_group_##name(void)
#define KP_RUN(name, tests) kp_test_run(#name, tests, sizeof(tests) / sizeof(tests[0]))

/* Runs a cmocka group and adds to the totals; returns the number failed. */
int kp_test_run(const char *name, const struct CMUnitTest *tests, size_t n);

/* Makes a fresh temporary folder; returns a heap path (caller frees; the
 * folder is removed at exit unless KP_TEST_KEEP is set). */
char *kp_test_tmpdir(void);

/* Writes text to DIR/NAME (creating parent folders); returns the heap path. */
char *kp_test_write(const char *dir, const char *name, const char *text);

/* Returns a heap string "a/b" joined with '/'. */
char *kp_test_join(const char *a, const char *b);

/* Reads a whole file into a heap string (NULL if missing). */
char *kp_test_read(const char *path);

/* Returns the kpipe binary under test ($KPIPE_BIN, else ./build/kpipe). */
const char *kp_test_bin(void);

/* Returns the repository root ($KPIPE_ROOT, else "."). */
const char *kp_test_root(void);

/* Runs a shell command line, capturing stdout+stderr into *out (heap, may be
 * NULL); returns the exit status (or -1). */
int kp_test_sh(const char *cmdline, char **out);

#endif

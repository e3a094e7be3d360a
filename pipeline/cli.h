/* cli.h - what the kpipe commands (pipeline/cli_*.c) share.
 *
 * Exit codes (also in `kpipe --help`):
 *   0    success
 *   1    a task failed
 *   2    usage error (unknown command or option, bad value, unknown stage name)
 *   3    config error (the config cannot be read or is invalid, an input file
 *        is missing, the stage graph has a cycle)
 *   4    I/O or system error (a file could not be read or written, the run
 *        directory is locked by another run, out of memory)
 *   130  interrupted (SIGINT or SIGTERM)
 */
#ifndef KP_CLI_H
#define KP_CLI_H

#include <getopt.h>
#include <stddef.h>
#include "config.h"
#include "graph.h"

enum {
    KP_EXIT_OK = 0,
    KP_EXIT_TASK = 1,
    KP_EXIT_USAGE = 2,
    KP_EXIT_CONFIG = 3,
    KP_EXIT_IO = 4,
    KP_EXIT_INTERRUPTED = 130
};

/* A loaded config and its task graph; both owned. */
typedef struct kp_cli_ctx {
    kp_config *cfg;
    kp_graph *g;
    char state_dir[4200];   /* RUN_DIR/.kpipe */
} kp_cli_ctx;

/* Returns the exit code for a kp_status. */
int kp_cli_exit_code(int status);

/* Prints "kpipe: <message>" to stderr; returns code. */
int kp_cli_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Loads the config at path and builds its graph into ctx; returns an exit
 * code (the error already printed). */
int kp_cli_load(const char *path, kp_cli_ctx *ctx);

/* Frees what kp_cli_load made. */
void kp_cli_done(kp_cli_ctx *ctx);

/* Takes what kp_cli_load made off ctx without freeing it, for a command
 * about to return to exit: the process gives it all back at once, where
 * freeing it block by block costs as much as a no-op run's own work (as
 * ninja's real_main exits without destroying its State).  It stays
 * reachable, so leak checkers do not report it. */
void kp_cli_keep(kp_cli_ctx *ctx);

/* Parses a command's options with getopt_long and its one CONFIG argument
 * (into *config, borrowed from argv).  --help/-h prints help.  Every other
 * option goes to on_opt(opt, optarg, data), which returns 0 or an exit code
 * after printing.  Returns 0, -1 after printing help, or an exit code. */
typedef int (*kp_cli_opt_fn)(int opt, const char *arg, void *data);
int kp_cli_parse(int argc, char **argv, const char *shortopts, const struct option *longopts,
                 const char *help, kp_cli_opt_fn on_opt, void *data, const char **config);

/* As kp_cli_parse, for min_pos..max_pos positional arguments (into pos[],
 * borrowed from argv, and *n_pos); names says what they are in messages
 * ("CHECKPOINT DATA"). */
int kp_cli_parse_args(int argc, char **argv, const char *shortopts,
                      const struct option *longopts, const char *help, kp_cli_opt_fn on_opt,
                      void *data, int min_pos, int max_pos, const char *names,
                      const char **pos, int *n_pos);

/* Returns the number of online cores (at least 1). */
int kp_cli_cores(void);

/* The commands: argv[0] is the command name; each returns an exit code. */
int kp_cmd_run(int argc, char **argv);
int kp_cmd_plan(int argc, char **argv);
int kp_cmd_dag(int argc, char **argv);
int kp_cmd_status(int argc, char **argv);
int kp_cmd_clean(int argc, char **argv);
int kp_cmd_models(int argc, char **argv);
int kp_cmd_predict(int argc, char **argv);
int kp_cmd_kaggle(int argc, char **argv);

/* Help texts of the commands (for `kpipe COMMAND --help` and `kpipe help`). */
extern const char kp_help_run[], kp_help_plan[], kp_help_dag[], kp_help_status[],
    kp_help_clean[], kp_help_models[], kp_help_predict[], kp_help_kaggle[];

#endif

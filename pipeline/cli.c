/* cli.c - what the kpipe commands share: loading, option parsing, exit codes. */
#include "cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "../lib/err.h"

int kp_cli_exit_code(int status)
{
    switch (status) {
    case KP_OK: return KP_EXIT_OK;
    case KP_ERR_TASK: return KP_EXIT_TASK;
    case KP_ERR_ARG: return KP_EXIT_USAGE;
    case KP_ERR_CONFIG: case KP_ERR_CYCLE: case KP_ERR_NOTFOUND: case KP_ERR_FORMAT:
    case KP_ERR_MISMATCH:
        return KP_EXIT_CONFIG;
    default: return KP_EXIT_IO;
    }
}

int kp_cli_error(int code, const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fputs("kpipe: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return code;
}

int kp_cli_load(const char *path, kp_cli_ctx *ctx)
{
    char err[KP_ERRLEN] = "";
    memset(ctx, 0, sizeof *ctx);
    int rc = kp_config_load(path, &ctx->cfg, err, sizeof err);
    if (rc == 0)
        rc = kp_graph_build(ctx->cfg, &ctx->g, err, sizeof err);
    if (rc < 0) {
        kp_cli_done(ctx);
        /* a config that cannot be opened at all is a usage problem of its own kind */
        return kp_cli_error(rc == KP_ERR_IO ? KP_EXIT_CONFIG : kp_cli_exit_code(rc), "%s", err);
    }
    snprintf(ctx->state_dir, sizeof ctx->state_dir, "%s/.kpipe", ctx->cfg->run_dir);
    return 0;
}

void kp_cli_done(kp_cli_ctx *ctx)
{
    kp_graph_free(ctx->g);
    kp_config_free(ctx->cfg);
    ctx->g = NULL;
    ctx->cfg = NULL;
}

void kp_cli_keep(kp_cli_ctx *ctx)
{
    static kp_cli_ctx kept;   /* reachable until the process exits */
    kp_cli_done(&kept);       /* a second call frees the first one's */
    kept = *ctx;
    ctx->g = NULL;
    ctx->cfg = NULL;
}

int kp_cli_parse(int argc, char **argv, const char *shortopts, const struct option *longopts,
                 const char *help, kp_cli_opt_fn on_opt, void *data, const char **config)
{
    int n = 0;
    return kp_cli_parse_args(argc, argv, shortopts, longopts, help, on_opt, data, 1, 1,
                             "CONFIG", config, &n);
}

int kp_cli_parse_args(int argc, char **argv, const char *shortopts,
                      const struct option *longopts, const char *help, kp_cli_opt_fn on_opt,
                      void *data, int min_pos, int max_pos, const char *names,
                      const char **pos, int *n_pos)
{
    char shorts[64];
    snprintf(shorts, sizeof shorts, ":%s", shortopts);   /* ':' tells a missing value apart */
    optind = 0;   /* glibc: a full re-initialisation */
    opterr = 0;
    *n_pos = 0;
    for (;;) {
        int opt = getopt_long(argc, argv, shorts, longopts, NULL);
        if (opt == -1)
            break;
        if (opt == 'h') {
            fputs(help, stdout);
            return -1;
        }
        if (opt == '?' || opt == ':') {
            char name[8];
            const char *last = argv[optind - 1];
            snprintf(name, sizeof name, "-%c", optopt);
            return kp_cli_error(KP_EXIT_USAGE, "%s: %s option '%s' (see kpipe %s --help)",
                                argv[0], opt == ':' ? "missing value for" : "unknown",
                                strncmp(last, "--", 2) == 0 || optopt <= 0 ? last : name,
                                argv[0]);
        }
        int rc = on_opt(opt, optarg, data);
        if (rc)
            return rc;
    }
    int n = argc - optind;
    if (n < min_pos)
        return kp_cli_error(KP_EXIT_USAGE, "%s: %s %s (see kpipe %s --help)", argv[0],
                            min_pos == 1 && max_pos == 1 ? "missing" : "expected", names,
                            argv[0]);
    if (n > max_pos)
        return kp_cli_error(KP_EXIT_USAGE, "%s: unexpected argument '%s' (see kpipe %s --help)",
                            argv[0], argv[optind + max_pos], argv[0]);
    for (int i = 0; i < n; i++)
        pos[i] = argv[optind + i];
    *n_pos = n;
    return 0;
}

int kp_cli_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 && n < 4096 ? (int)n : 1;
}

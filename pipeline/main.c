/* main.c - the kpipe command line: kpipe COMMAND CONFIG [options].
 *
 * Exit codes: 0 success, 1 a task failed, 2 usage error, 3 config error,
 * 4 I/O or system error, 130 interrupted (see pipeline/cli.h).
 */
#include <stdio.h>
#include <string.h>
#include "cli.h"
#include "../lib/blas.h"
#include "../lib/params.h"

#ifndef KP_VERSION
#define KP_VERSION "unknown"
#endif

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
    const char *summary;
} command;

static const command commands[] = {
    {"run", kp_cmd_run, kp_help_run, "run the stale tasks of a pipeline"},
    {"plan", kp_cmd_plan, kp_help_plan, "print what would run and why"},
    {"dag", kp_cmd_dag, kp_help_dag, "print the stage graph (text or --dot)"},
    {"status", kp_cmd_status, kp_help_status, "print stage states, costs and the CV leaderboard"},
    {"clean", kp_cmd_clean, kp_help_clean, "remove the run directory's contents"},
    {"models", kp_cmd_models, kp_help_models, "list the models and their parameters"},
    {"predict", kp_cmd_predict, kp_help_predict, "predict with a saved checkpoint"},
    {"kaggle", kp_cmd_kaggle, kp_help_kaggle, "download data, submit, list submissions and scores"},
};

#define N_COMMANDS ((int)(sizeof commands / sizeof commands[0]))

static void usage(FILE *out)
{
    fprintf(out,
            "usage: kpipe COMMAND CONFIG [options]\n"
            "       kpipe models [MODEL] | kpipe predict CHECKPOINT DATA [-o OUT]\n"
            "       kpipe COMMAND --help | kpipe --help | kpipe --version\n"
            "\n"
            "kpipe runs a Kaggle competition pipeline described by a YAML config: a DAG\n"
            "of stages (preprocess, folds, train, stack, submit, command) whose tasks\n"
            "run in parallel and are cached by the content of their inputs.\n"
            "\n"
            "commands:\n");
    for (int i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(out,
            "\n"
            "exit status:\n"
            "  0    success\n"
            "  1    a task failed (the summary names its log)\n"
            "  2    usage error\n"
            "  3    config error (invalid config, missing input file, cycle)\n"
            "  4    I/O or system error (including: another run holds the run directory)\n"
            "  130  interrupted\n");
}

static const command *find_command(const char *name)
{
    for (int i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static int unknown_command(const char *name)
{
    const char *names[N_COMMANDS];
    for (int i = 0; i < N_COMMANDS; i++)
        names[i] = commands[i].name;
    const char *near = kp_suggest(name, names, N_COMMANDS);
    if (near)
        return kp_cli_error(KP_EXIT_USAGE, "unknown command '%s' (did you mean '%s'?)", name, near);
    return kp_cli_error(KP_EXIT_USAGE, "unknown command '%s' (see kpipe --help)", name);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return KP_EXIT_USAGE;
    }
    const char *arg = argv[1];
    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0 || strcmp(arg, "help") == 0) {
        const command *c = argc > 2 && strcmp(arg, "help") == 0 ? find_command(argv[2]) : NULL;
        if (c)
            fputs(c->help, stdout);
        else
            usage(stdout);
        return KP_EXIT_OK;
    }
    if (strcmp(arg, "--version") == 0 || strcmp(arg, "-V") == 0) {
        char blas[256];
        kp_blas_describe(blas, sizeof blas);
        printf("kpipe %s\n%s\n", KP_VERSION, blas);
        return KP_EXIT_OK;
    }
    const command *c = find_command(arg);
    if (!c)
        return arg[0] == '-' ? kp_cli_error(KP_EXIT_USAGE, "unknown option '%s' (see kpipe --help)", arg)
                             : unknown_command(arg);
    return c->run(argc - 1, argv + 1);
}

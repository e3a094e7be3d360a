/* test_command.c - command stages and built-in tasks through the real fork runner.
 *
 * Each test writes a small YAML config (competition block plus command
 * stages) into a fresh temporary folder, loads it, builds the task graph and
 * runs it with the fork runner on the real file system.
 */
#include "kp_test.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "../lib/err.h"
#include "../pipeline/config.h"
#include "../pipeline/exec.h"
#include "../pipeline/fs.h"
#include "../pipeline/graph.h"
#include "../pipeline/runner.h"
#include "../stages/stage.h"

#define COMPETITION \
    "competition:\n" \
    "  name: t\n" \
    "  train: train.csv\n" \
    "  test: test.csv\n" \
    "  id: id\n" \
    "  target: y\n" \
    "  task: regression\n" \
    "  metric: rmse\n" \
    "  folds: {k: 2, kind: plain}\n" \
    "stages:\n"

typedef struct fixture {
    char *dir;
    kp_config *cfg;
    kp_graph *g;
    char out[8192];     /* what the run printed */
    kp_exec_summary sum;
    char err[KP_ERRLEN];
} fixture;

/* Writes the config (COMPETITION + stages) and its CSVs, loads it and builds the graph. */
static void setup(fixture *f, const char *stages)
{
    memset(f, 0, sizeof *f);
    f->dir = kp_test_tmpdir();
    assert_non_null(f->dir);
    free(kp_test_write(f->dir, "train.csv", "id,y\n1,0.5\n2,1.5\n3,2.5\n4,3.5\n"));
    free(kp_test_write(f->dir, "test.csv", "id\n5\n6\n"));
    char *yaml = malloc(strlen(COMPETITION) + strlen(stages) + 1);
    strcpy(yaml, COMPETITION);
    strcat(yaml, stages);
    char *path = kp_test_write(f->dir, "cmd.yaml", yaml);
    int rc = kp_config_load(path, &f->cfg, f->err, sizeof f->err);
    if (rc != 0)
        fprintf(stderr, "%s\n", f->err);
    assert_int_equal(rc, 0);
    rc = kp_graph_build(f->cfg, &f->g, f->err, sizeof f->err);
    if (rc != 0)
        fprintf(stderr, "%s\n", f->err);
    assert_int_equal(rc, 0);
    free(yaml);
    free(path);
}

static void teardown(fixture *f)
{
    kp_graph_free(f->g);
    kp_config_free(f->cfg);
    free(f->dir);
}

/* Runs the graph with the fork runner (-j 2, 2 threads a task); returns the status. */
static int run(fixture *f)
{
    char state[4200];
    snprintf(state, sizeof state, "%s/.kpipe", f->cfg->run_dir);
    kp_runner *r = NULL;
    assert_int_equal(kp_runner_fork_create(f->cfg, 2, 2, &r, f->err, sizeof f->err), 0);
    FILE *out = fmemopen(f->out, sizeof f->out - 1, "w");
    kp_exec_opts o = { .state_dir = state, .jobs = 2, .out = out };
    int rc = kp_exec_run(f->g, r, kp_fs_real(), &o, &f->sum, f->err, sizeof f->err);
    fclose(out);
    kp_runner_free(r);
    return rc;
}

/* Returns the content of a file under the run dir's stage folder (heap). */
static char *read_stage_file(const fixture *f, const char *stage, const char *name)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s/%s", f->cfg->run_dir, stage, name);
    return kp_test_read(path);
}

static void test_command_placeholders_take_params_and_folders(void **state)
{
    (void)state;
    fixture f;
    setup(&f,
          "  gen:\n"
          "    type: command\n"
          "    run: \"printf '%s %s' {word} {config_dir} > {stage_dir}/out.txt\"\n"
          "    outs: [\"{stage_dir}/out.txt\"]\n"
          "    matrix: {word: [hello, bye]}\n");
    assert_int_equal(run(&f), 0);
    assert_int_equal(f.sum.n_ran, 2);
    char want[4300];
    snprintf(want, sizeof want, "hello %s", f.cfg->dir);
    char *got = read_stage_file(&f, "gen/word=hello", "out.txt");
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
    got = read_stage_file(&f, "gen/word=bye", "out.txt");
    assert_non_null(got);
    assert_int_equal(strncmp(got, "bye ", 4), 0);
    free(got);
    teardown(&f);
}

static void test_command_runs_in_the_config_folder_and_reads_its_deps(void **state)
{
    (void)state;
    fixture f;
    setup(&f,
          "  copy:\n"
          "    type: command\n"
          "    run: cp test.csv {stage_dir}/copy.csv\n"
          "    deps: [test.csv]\n"
          "    outs: [\"{stage_dir}/copy.csv\"]\n");
    assert_int_equal(run(&f), 0);
    char *got = read_stage_file(&f, "copy", "copy.csv");
    assert_non_null(got);
    assert_string_equal(got, "id\n5\n6\n");
    free(got);
    /* nothing changed: nothing runs; the dep changes: it runs again */
    assert_int_equal(run(&f), 0);
    assert_int_equal(f.sum.n_ran, 0);
    free(kp_test_write(f.dir, "test.csv", "id\n7\n"));
    assert_int_equal(run(&f), 0);
    assert_int_equal(f.sum.n_ran, 1);
    teardown(&f);
}

static void test_command_missing_output_is_a_failure(void **state)
{
    (void)state;
    fixture f;
    setup(&f,
          "  lazy:\n"
          "    type: command\n"
          "    run: \"true\"\n"
          "    outs: [never.txt]\n");
    assert_int_equal(run(&f), KP_ERR_TASK);
    assert_int_equal(f.sum.n_failed, 1);
    assert_non_null(strstr(f.out, "lazy exited 0 but did not write "));
    assert_non_null(strstr(f.out, "never.txt"));
    teardown(&f);
}

static void test_command_exit_status_propagates_and_output_goes_to_the_log(void **state)
{
    (void)state;
    fixture f;
    setup(&f,
          "  bad:\n"
          "    type: command\n"
          "    run: \"echo oops >&2; exit 3\"\n"
          "    outs: [bad.txt]\n"
          "  after:\n"
          "    type: command\n"
          "    needs: [bad]\n"
          "    run: touch after.txt\n"
          "    outs: [after.txt]\n");
    assert_int_equal(run(&f), KP_ERR_TASK);
    assert_string_equal(f.err, "1 task failed");
    assert_int_equal(f.sum.n_failed, 1);
    assert_int_equal(f.sum.n_blocked, 1);
    assert_non_null(strstr(f.out, "FAIL  bad"));
    assert_non_null(strstr(f.out, "(exit 3)"));
    char *log = read_stage_file(&f, "bad", "task.log");
    assert_non_null(log);
    assert_string_equal(log, "oops\n");
    free(log);
    teardown(&f);
}

static void test_command_sees_its_thread_budget(void **state)
{
    (void)state;
    fixture f;
    setup(&f,
          "  env:\n"
          "    type: command\n"
          "    run: \"echo $KPIPE_THREADS $OMP_NUM_THREADS $OPENBLAS_NUM_THREADS > env.txt\"\n"
          "    outs: [env.txt]\n");
    assert_int_equal(run(&f), 0);
    char *path = kp_test_join(f.dir, "env.txt");
    char *got = kp_test_read(path);
    assert_non_null(got);
    assert_string_equal(got, "2 2 2\n");
    free(got);
    free(path);
    teardown(&f);
}

static void test_command_literal_braces_are_left_for_the_shell(void **state)
{
    (void)state;
    fixture f;
    setup(&f,
          "  br:\n"
          "    type: command\n"
          "    run: \"X=1; printf '%s|%s' '{{lit}}' ${X} | awk '{print $1}' > br.txt\"\n"
          "    outs: [br.txt]\n");
    assert_int_equal(run(&f), 0);
    char *path = kp_test_join(f.dir, "br.txt");
    char *got = kp_test_read(path);
    assert_non_null(got);
    assert_string_equal(got, "{lit}|1\n");
    free(got);
    free(path);
    teardown(&f);
}

static void test_command_unknown_placeholder_is_a_config_error(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir();
    free(kp_test_write(dir, "train.csv", "id,y\n1,0.5\n2,1.5\n"));
    free(kp_test_write(dir, "test.csv", "id\n5\n"));
    char *path = kp_test_join(dir, "bad.yaml");
    const char *yaml = COMPETITION
        "  gen:\n"
        "    type: command\n"
        "    run: echo {wrod} > x\n"
        "    outs: [x]\n"
        "    params: {word: hi}\n";
    kp_config *cfg = NULL;
    char err[KP_ERRLEN] = "";
    int rc = kp_config_load_string(path, yaml, strlen(yaml), &cfg, err, sizeof err);
    assert_int_equal(rc, KP_ERR_CONFIG);
    assert_non_null(strstr(err, "bad.yaml:13:10: stages.gen.run: unknown placeholder {wrod} "
                                "(did you mean {word}?)"));
    assert_null(cfg);
    free(path);
    free(dir);
}

static void test_command_reading_an_unneeded_stage_output_is_an_error(void **state)
{
    (void)state;
    fixture f;
    memset(&f, 0, sizeof f);
    f.dir = kp_test_tmpdir();
    free(kp_test_write(f.dir, "train.csv", "id,y\n1,0.5\n2,1.5\n"));
    free(kp_test_write(f.dir, "test.csv", "id\n5\n"));
    const char *yaml = COMPETITION
        "  a:\n"
        "    type: command\n"
        "    run: touch a.txt\n"
        "    outs: [a.txt]\n"
        "  b:\n"
        "    type: command\n"
        "    run: cp a.txt b.txt\n"
        "    deps: [a.txt]\n"
        "    outs: [b.txt]\n";
    char *path = kp_test_join(f.dir, "c.yaml");
    assert_int_equal(kp_config_load_string(path, yaml, strlen(yaml), &f.cfg, f.err, sizeof f.err), 0);
    assert_int_equal(kp_graph_build(f.cfg, &f.g, f.err, sizeof f.err), KP_ERR_CONFIG);
    assert_non_null(strstr(f.err, "stage b reads "));
    assert_non_null(strstr(f.err, "a.txt, which stage a writes: add a to its needs"));
    free(path);
    teardown(&f);
}

static void test_command_interrupt_stops_the_run_and_its_children(void **state)
{
    (void)state;
    fixture f;
    setup(&f,
          "  slow:\n"
          "    type: command\n"
          "    run: \"kill -TERM $PPID; sleep 5; touch slow.txt\"\n"
          "    outs: [slow.txt]\n");
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(run(&f), KP_ERR_TASK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_string_equal(f.err, "interrupted");
    assert_true(f.sum.interrupted);
    assert_true(t1.tv_sec - t0.tv_sec < 4);
    teardown(&f);
}

static void test_command_that_cannot_be_run_exits_127_and_its_log_says_why(void **state)
{
    (void)state;
    fixture f;
    setup(&f,
          "  bad:\n"
          "    type: command\n"
          "    run: no-such-program-kpipe x\n"
          "    outs: [bad.txt]\n");
    assert_int_equal(run(&f), KP_ERR_TASK);
    assert_non_null(strstr(f.out, "(exit 127)"));
    char *log = read_stage_file(&f, "bad", "task.log");
    assert_non_null(log);
    assert_string_equal(log, "kpipe: bad: cannot run 'no-such-program-kpipe x': "
                             "No such file or directory\n");
    free(log);
    teardown(&f);
}

static void test_command_script_without_interpreter_line_runs_under_sh(void **state)
{
    (void)state;
    fixture f;
    setup(&f,
          "  gen:\n"
          "    type: command\n"
          "    run: ./gen.sh hello\n"
          "    deps: [gen.sh]\n"
          "    outs: [gen.txt]\n");
    char *script = kp_test_write(f.dir, "gen.sh", "echo $1 > gen.txt\n");
    assert_int_equal(chmod(script, 0755), 0);
    assert_int_equal(run(&f), 0);
    char *path = kp_test_join(f.dir, "gen.txt");
    char *got = kp_test_read(path);
    assert_non_null(got);
    assert_string_equal(got, "hello\n");
    free(got);
    free(path);
    free(script);
    teardown(&f);
}

static void test_command_sees_its_previous_output(void **state)
{
    (void)state;
    fixture f;
    setup(&f,
          "  log:\n"
          "    type: command\n"
          "    run: \"cat dep.txt >> log.txt\"\n"
          "    deps: [dep.txt]\n"
          "    outs: [log.txt]\n");
    free(kp_test_write(f.dir, "dep.txt", "one\n"));
    assert_int_equal(run(&f), 0);
    free(kp_test_write(f.dir, "dep.txt", "two\n"));
    assert_int_equal(run(&f), 0);
    assert_int_equal(f.sum.n_ran, 1);
    char *path = kp_test_join(f.dir, "log.txt");
    char *got = kp_test_read(path);
    assert_non_null(got);
    assert_string_equal(got, "one\ntwo\n");
    free(got);
    free(path);
    teardown(&f);
}

/* As in make, a command may keep an output it finds up to date: an existing
 * declared output counts as written (built-in stages must write theirs). */
static void test_command_output_kept_by_the_command_counts_as_written(void **state)
{
    (void)state;
    fixture f;
    setup(&f,
          "  once:\n"
          "    type: command\n"
          "    run: \"test -e once.txt || cp dep.txt once.txt\"\n"
          "    deps: [dep.txt]\n"
          "    outs: [once.txt]\n");
    free(kp_test_write(f.dir, "dep.txt", "one\n"));
    assert_int_equal(run(&f), 0);
    free(kp_test_write(f.dir, "dep.txt", "two\n"));
    assert_int_equal(run(&f), 0);
    assert_int_equal(f.sum.n_failed, 0);
    assert_int_equal(f.sum.n_ran, 1);
    char *path = kp_test_join(f.dir, "once.txt"), *got = kp_test_read(path);
    assert_string_equal(got, "one\n");
    free(got);
    free(path);
    teardown(&f);
}

/* Returns the pid of a child of parent whose command is name, or 0. */
static pid_t child_named(pid_t parent, const char *name)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    pid_t found = 0;
    while (d && !found && (de = readdir(d))) {
        char path[300], comm[64];
        int pid, ppid;
        snprintf(path, sizeof path, "/proc/%s/stat", de->d_name);
        FILE *fp = fopen(path, "r");
        if (!fp)
            continue;
        if (fscanf(fp, "%d (%63[^)]) %*c %d", &pid, comm, &ppid) == 3 && ppid == parent &&
            strcmp(comm, name) == 0)
            found = pid;
        fclose(fp);
    }
    if (d)
        closedir(d);
    return found;
}

/* Returns 1 if pid is gone (or a zombie) within 3 s. */
static int dies_soon(pid_t pid)
{
    for (int i = 0; i < 300; i++) {
        char path[64], st = 0;
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
        FILE *fp = fopen(path, "r");
        int n = fp ? fscanf(fp, "%*d (%*[^)]) %c", &st) : 0;
        if (fp)
            fclose(fp);
        if (!fp || (n == 1 && st == 'Z'))
            return 1;
        usleep(10000);
    }
    return 0;
}

static void test_command_dies_when_kpipe_is_killed(void **state)
{
    (void)state;
    /* sleep exec'd directly, and through the shell (its own exec keeps the death signal) */
    const char *lines[] = { "sleep 30", "\"echo started; exec sleep 30\"" };
    for (size_t c = 0; c < sizeof lines / sizeof lines[0]; c++) {
        char stages[512];
        snprintf(stages, sizeof stages,
                 "  slow:\n    type: command\n    run: %s\n    outs: [slow.txt]\n", lines[c]);
        fixture f;
        setup(&f, stages);
        pid_t kp = fork();
        assert_true(kp >= 0);
        if (kp == 0) {   /* a kpipe run in a child of the test, to be killed */
            char state_dir[4200], err[KP_ERRLEN];
            kp_runner *r = NULL;
            snprintf(state_dir, sizeof state_dir, "%s/.kpipe", f.cfg->run_dir);
            kp_exec_opts o = { .state_dir = state_dir, .jobs = 1 };
            if (kp_runner_fork_create(f.cfg, 1, 1, &r, err, sizeof err) == 0)
                kp_exec_run(f.g, r, kp_fs_real(), &o, NULL, err, sizeof err);
            _exit(1);
        }
        pid_t sleeper = 0;
        for (int i = 0; i < 500 && !sleeper; i++, usleep(10000))
            sleeper = child_named(kp, "sleep");
        kill(kp, SIGKILL);
        waitpid(kp, NULL, 0);
        assert_true(sleeper > 0);
        int died = dies_soon(sleeper);
        if (!died)
            kill(sleeper, SIGKILL);
        assert_true(died);
        teardown(&f);
    }
}

/* ---- a built-in task: fork without exec ---- */

static int builtin_run(const kp_task_ctx *ctx, char *err, size_t errlen)
{
    char path[4200];
    fprintf(ctx->log, "threads=%d part=%d\n", ctx->threads, ctx->part);
    if (kp_params_bool(ctx->stage->opts, "fail", 0))
        return kp_errf(err, errlen, KP_ERR_ARG, "asked to fail");
    snprintf(path, sizeof path, "%s/out.txt", ctx->stage->dir);
    FILE *fp = fopen(path, "w");
    if (!fp)
        return kp_errf(err, errlen, KP_ERR_IO, "cannot write %s", path);
    fprintf(fp, "%s", ctx->stage->name);
    fclose(fp);
    return 0;
}

static void test_fork_runner_runs_builtin_tasks_in_a_child(void **state)
{
    (void)state;
    fixture f;
    setup(&f,
          "  x:\n"
          "    type: command\n"
          "    run: \"true\"\n"
          "    outs: [\"{stage_dir}/out.txt\"]\n");
    /* make x a built-in task of a test stage type */
    static kp_stage_ops ops;
    ops = *f.cfg->stages[0].ops;
    ops.run = builtin_run;
    ops.command = NULL;
    f.cfg->stages[0].ops = &ops;
    free(kp_graph_task(f.g, 0)->command);
    kp_graph_task(f.g, 0)->command = NULL;
    assert_int_equal(run(&f), 0);
    char *got = read_stage_file(&f, "x", "out.txt");
    assert_non_null(got);
    assert_string_equal(got, "x");
    free(got);
    char *log = read_stage_file(&f, "x", "task.log");
    assert_non_null(log);
    assert_string_equal(log, "threads=2 part=-1\n");
    free(log);
    /* an error from run() fails the task and lands in its log */
    assert_int_equal(kp_params_set(f.cfg->stages[0].opts, "fail", "true", 0, 0), 0);
    assert_int_equal(kp_graph_set_params(f.g, 0, "changed"), 0);
    assert_int_equal(run(&f), KP_ERR_TASK);
    log = read_stage_file(&f, "x", "task.log");
    assert_non_null(log);
    assert_string_equal(log, "threads=2 part=-1\nkpipe: x: asked to fail\n");
    free(log);
    teardown(&f);
}

KP_TEST_GROUP(command)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_command_placeholders_take_params_and_folders),
        cmocka_unit_test(test_command_runs_in_the_config_folder_and_reads_its_deps),
        cmocka_unit_test(test_command_missing_output_is_a_failure),
        cmocka_unit_test(test_command_exit_status_propagates_and_output_goes_to_the_log),
        cmocka_unit_test(test_command_sees_its_thread_budget),
        cmocka_unit_test(test_command_literal_braces_are_left_for_the_shell),
        cmocka_unit_test(test_command_unknown_placeholder_is_a_config_error),
        cmocka_unit_test(test_command_reading_an_unneeded_stage_output_is_an_error),
        cmocka_unit_test(test_command_interrupt_stops_the_run_and_its_children),
        cmocka_unit_test(test_command_that_cannot_be_run_exits_127_and_its_log_says_why),
        cmocka_unit_test(test_command_script_without_interpreter_line_runs_under_sh),
        cmocka_unit_test(test_command_sees_its_previous_output),
        cmocka_unit_test(test_command_output_kept_by_the_command_counts_as_written),
        cmocka_unit_test(test_command_dies_when_kpipe_is_killed),
        cmocka_unit_test(test_fork_runner_runs_builtin_tasks_in_a_child),
    };
    return KP_RUN(command, t);
}

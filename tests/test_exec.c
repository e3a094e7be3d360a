/* test_exec.c - the scheduler with the fake runner and the in-memory file system.
 *
 * Most tests use the diamond
 *        a          (reads the outside file /data/in.csv)
 *       / \
 *      b   c
 *       \ /
 *        d
 * where each task writes /r/ID.out.  The fake task writes its id, its param
 * text and its inputs' contents, so equal inputs give equal bytes, unless
 * its behaviour (task->user) says otherwise.
 */
#include "kp_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/buf.h"
#include "../lib/err.h"
#include "../pipeline/exec.h"
#include "../pipeline/fs.h"
#include "../pipeline/graph.h"
#include "../pipeline/runner.h"
#include "../pipeline/runlog.h"

#define STATE "/r/.kpipe"

typedef struct behaviour {
    int exit_status;
    int write_nothing;       /* exit as told but write no output */
    const char *fixed;       /* write this instead of the derived content */
} behaviour;

static int fake_task(kp_fs *fs, const kp_task *t, void *data)
{
    (void)data;
    const behaviour *b = t->user;
    if (b && b->write_nothing)
        return b->exit_status;
    kp_buf text;
    kp_buf_init(&text, 0);
    int rc = kp_buf_printf(&text, "%s|%s", t->id, t->param_text);
    for (int i = 0; i < t->n_inputs && rc == 0; i++) {
        const char *in = kp_fs_mem_get(fs, t->inputs[i]);
        rc = kp_buf_printf(&text, "|%s", in ? in : "?");
    }
    assert_int_equal(rc, 0);
    for (int i = 0; i < t->n_outputs; i++)
        assert_int_equal(kp_fs_mem_put(fs, t->outputs[i], b && b->fixed ? b->fixed : kp_buf_str(&text)), 0);
    kp_buf_free(&text);
    return b ? b->exit_status : 0;
}

/* Adds task id (stage id) writing ROOT/r/ID.out and reading the outputs of deps. */
static int add_at(kp_graph *g, const char *root, const char *id, const char *deps)
{
    char err[KP_ERRLEN], path[256];
    int i;
    assert_int_equal(kp_graph_add(g, id, id, NULL, -1, &i, err, sizeof err), 0);
    snprintf(path, sizeof path, "%s/r/%s.out", root, id);
    assert_int_equal(kp_graph_add_output(g, i, path), 0);
    assert_int_equal(kp_graph_set_params(g, i, "v1"), 0);
    char *copy = strdup(deps);
    for (char *d = strtok(copy, " "); d; d = strtok(NULL, " ")) {
        int j = kp_graph_find(g, d);
        assert_true(j >= 0);
        snprintf(path, sizeof path, "%s/r/%s.out", root, d);
        assert_int_equal(kp_graph_add_dep(g, i, j), 0);
        assert_int_equal(kp_graph_add_input(g, i, path, 0), 0);
    }
    free(copy);
    return i;
}

static int add(kp_graph *g, const char *id, const char *deps)
{
    return add_at(g, "", id, deps);
}

/* The diamond with its files under root ("" for /r and /data). */
static kp_graph *diamond_at(const char *root)
{
    char err[KP_ERRLEN], in[256];
    kp_graph *g = kp_graph_create();
    int a = add_at(g, root, "a", "");
    snprintf(in, sizeof in, "%s/data/in.csv", root);
    assert_int_equal(kp_graph_add_input(g, a, in, 1), 0);
    add_at(g, root, "b", "a");
    add_at(g, root, "c", "a");
    add_at(g, root, "d", "b c");
    assert_int_equal(kp_graph_finish(g, err, sizeof err), 0);
    return g;
}

static kp_graph *diamond(void)
{
    return diamond_at("");
}

static kp_fs *fs_with_input(void)
{
    kp_fs *fs = kp_fs_mem_create();
    assert_int_equal(kp_fs_mem_put(fs, "/data/in.csv", "x,y\n1,2\n"), 0);
    return fs;
}

/* The options of a plain run with jobs. */
static kp_exec_opts opts(int jobs)
{
    kp_exec_opts o = { 0 };
    o.state_dir = STATE;
    o.jobs = jobs;
    return o;
}

/* Runs g with the fake runner; returns the ids started (heap) and the status in *rc. */
static char *run(kp_fs *fs, kp_graph *g, const kp_exec_opts *o, int *rc, kp_exec_summary *sum,
                 char *err, size_t errlen)
{
    kp_runner *r = kp_runner_fake_create(fs, o->jobs, fake_task, NULL);
    assert_non_null(r);
    *rc = kp_exec_run(g, r, fs, o, sum, err, errlen);
    char *started = strdup(kp_runner_fake_started(r));
    kp_runner_free(r);
    return started;
}

/* Runs and checks the started list and the status. */
static void expect_run(kp_fs *fs, kp_graph *g, const kp_exec_opts *o, const char *started,
                       int want_rc)
{
    char err[KP_ERRLEN] = "";
    kp_exec_summary sum;
    int rc;
    char *got = run(fs, g, o, &rc, &sum, err, sizeof err);
    if (rc != want_rc)
        fprintf(stderr, "status %d: %s\n", rc, err);
    assert_int_equal(rc, want_rc);
    assert_string_equal(got, started);
    free(got);
}

static void test_exec_first_run_runs_every_task_in_graph_order(void **state)
{
    (void)state;
    kp_fs *fs = fs_with_input();
    kp_graph *g = diamond();
    kp_exec_opts o = opts(2);
    expect_run(fs, g, &o, "a b c d", 0);
    assert_non_null(kp_fs_mem_get(fs, "/r/d.out"));
    kp_graph_free(g);
    kp_fs_free(fs);
}

static void test_exec_second_run_runs_nothing_and_reads_no_data(void **state)
{
    (void)state;
    kp_fs *fs = fs_with_input();
    kp_graph *g = diamond();
    kp_exec_opts o = opts(2);
    expect_run(fs, g, &o, "a b c d", 0);
    int reads = kp_fs_mem_reads(fs);
    kp_exec_summary sum;
    char err[KP_ERRLEN];
    int rc;
    char *got = run(fs, g, &o, &rc, &sum, err, sizeof err);
    assert_int_equal(rc, 0);
    assert_string_equal(got, "");
    assert_int_equal(sum.n_up_to_date, 4);
    assert_int_equal(sum.n_ran, 0);
    assert_int_equal(kp_fs_mem_reads(fs), reads + 1);   /* the run log, nothing else */
    free(got);
    kp_graph_free(g);
    kp_fs_free(fs);
}

static void test_exec_changed_params_rerun_the_task_and_its_dependents_only(void **state)
{
    (void)state;
    kp_fs *fs = fs_with_input();
    kp_graph *g = diamond();
    kp_exec_opts o = opts(2);
    expect_run(fs, g, &o, "a b c d", 0);
    assert_int_equal(kp_graph_set_params(g, kp_graph_find(g, "b"), "v2"), 0);
    expect_run(fs, g, &o, "b d", 0);
    expect_run(fs, g, &o, "", 0);
    kp_graph_free(g);
    kp_fs_free(fs);
}

static void test_exec_changed_outside_input_reruns_what_reads_it(void **state)
{
    (void)state;
    kp_fs *fs = fs_with_input();
    kp_graph *g = diamond();
    kp_exec_opts o = opts(1);
    expect_run(fs, g, &o, "a b c d", 0);
    assert_int_equal(kp_fs_mem_put(fs, "/data/in.csv", "x,y\n3,4\n"), 0);
    expect_run(fs, g, &o, "a b c d", 0);
    /* rewritten with the same bytes: a new inode and mtime, but nothing runs */
    assert_int_equal(kp_fs_mem_put(fs, "/data/in.csv", "x,y\n3,4\n"), 0);
    expect_run(fs, g, &o, "", 0);
    kp_graph_free(g);
    kp_fs_free(fs);
}

static void test_exec_upstream_rerun_with_identical_output_skips_dependents(void **state)
{
    (void)state;
    kp_fs *fs = fs_with_input();
    kp_graph *g = diamond();
    behaviour fixed = { 0, 0, "always the same" };
    kp_graph_task(g, kp_graph_find(g, "a"))->user = &fixed;
    kp_exec_opts o = opts(2);
    expect_run(fs, g, &o, "a b c d", 0);
    assert_int_equal(kp_graph_set_params(g, kp_graph_find(g, "a"), "v2"), 0);
    expect_run(fs, g, &o, "a", 0);
    kp_graph_free(g);
    kp_fs_free(fs);
}

static void test_exec_moved_checkout_keeps_its_cache(void **state)
{
    (void)state;
    const char *files[] = { "data/in.csv", "r/a.out", "r/b.out", "r/c.out", "r/d.out",
                            "r/.kpipe/runlog" };
    kp_fs *fs = kp_fs_mem_create();
    assert_int_equal(kp_fs_mem_put(fs, "/old/data/in.csv", "x,y\n1,2\n"), 0);
    kp_graph *g = diamond_at("/old");
    kp_exec_opts o = opts(2);
    o.state_dir = "/old/r/.kpipe";
    expect_run(fs, g, &o, "a b c d", 0);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char from[256], to[256], err[KP_ERRLEN];
        snprintf(from, sizeof from, "/old/%s", files[i]);
        snprintf(to, sizeof to, "/new/%s", files[i]);
        assert_int_equal(kp_fs_mem_put(fs, to, kp_fs_mem_get(fs, from)), 0);
        assert_int_equal(fs->ops->remove(fs, from, err, sizeof err), 0);
    }
    kp_graph_free(g);
    g = diamond_at("/new");
    o.state_dir = "/new/r/.kpipe";
    expect_run(fs, g, &o, "", 0);
    kp_graph_free(g);
    kp_fs_free(fs);
}

static void test_exec_deleted_output_reruns_its_task(void **state)
{
    (void)state;
    kp_fs *fs = fs_with_input();
    kp_graph *g = diamond();
    kp_exec_opts o = opts(2);
    expect_run(fs, g, &o, "a b c d", 0);
    char err[KP_ERRLEN];
    assert_int_equal(fs->ops->remove(fs, "/r/c.out", err, sizeof err), 0);
    expect_run(fs, g, &o, "c", 0);   /* same bytes again: d is not re-run */
    kp_graph_free(g);
    kp_fs_free(fs);
}

static void test_exec_modified_output_reruns_its_task(void **state)
{
    (void)state;
    kp_fs *fs = fs_with_input();
    kp_graph *g = diamond();
    kp_exec_opts o = opts(2);
    expect_run(fs, g, &o, "a b c d", 0);
    assert_int_equal(kp_fs_mem_put(fs, "/r/d.out", "edited by hand"), 0);
    expect_run(fs, g, &o, "d", 0);
    kp_graph_free(g);
    kp_fs_free(fs);
}

static void test_exec_failure_stops_new_starts_without_keep_going(void **state)
{
    (void)state;
    kp_fs *fs = fs_with_input();
    kp_graph *g = diamond();
    behaviour boom = { 3, 0, NULL };
    kp_graph_task(g, kp_graph_find(g, "b"))->user = &boom;
    kp_exec_opts o = opts(1);
    char err[KP_ERRLEN] = "";
    kp_exec_summary sum;
    int rc;
    char *got = run(fs, g, &o, &rc, &sum, err, sizeof err);
    assert_int_equal(rc, KP_ERR_TASK);
    assert_string_equal(err, "1 task failed");
    assert_string_equal(got, "a b");
    assert_int_equal(sum.n_failed, 1);
    assert_int_equal(sum.n_blocked, 1);   /* d */
    assert_int_equal(sum.n_not_run, 1);   /* c */
    free(got);
    kp_graph_free(g);
    kp_fs_free(fs);
}

static void test_exec_unwritten_output_stops_new_starts_without_keep_going(void **state)
{
    (void)state;
    /* b writes nothing: its output absent, then left as an earlier run wrote it */
    for (int earlier = 0; earlier < 2; earlier++) {
        kp_fs *fs = fs_with_input();
        kp_graph *g = diamond();
        kp_exec_opts o = opts(1);
        const char *force[] = { "b", "c" };
        if (earlier) {
            expect_run(fs, g, &o, "a b c d", 0);
            o.force = force, o.n_force = 2;
        }
        behaviour lazy = { 0, 1, NULL };
        kp_graph_task(g, kp_graph_find(g, "b"))->user = &lazy;
        char err[KP_ERRLEN] = "";
        kp_exec_summary sum;
        int rc;
        char *got = run(fs, g, &o, &rc, &sum, err, sizeof err);
        assert_int_equal(rc, KP_ERR_TASK);
        assert_string_equal(got, earlier ? "b" : "a b");
        assert_int_equal(sum.n_failed, 1);
        assert_int_equal(sum.n_not_run, 1);   /* c, ready when b finished */
        free(got);
        kp_graph_free(g);
        kp_fs_free(fs);
    }
}

static void test_exec_failure_blocks_only_dependents_with_keep_going(void **state)
{
    (void)state;
    kp_fs *fs = fs_with_input();
    kp_graph *g = diamond();
    behaviour boom = { 3, 0, NULL };
    kp_graph_task(g, kp_graph_find(g, "b"))->user = &boom;
    kp_exec_opts o = opts(1);
    o.keep_going = 1;
    char err[KP_ERRLEN] = "";
    kp_exec_summary sum;
    int rc;
    char *got = run(fs, g, &o, &rc, &sum, err, sizeof err);
    assert_int_equal(rc, KP_ERR_TASK);
    assert_string_equal(got, "a b c");
    assert_int_equal(sum.n_ran, 2);
    assert_int_equal(sum.n_blocked, 1);
    free(got);
    /* fixed: only the failed task and what it blocked run next time */
    kp_graph_task(g, kp_graph_find(g, "b"))->user = NULL;
    expect_run(fs, g, &o, "b d", 0);
    kp_graph_free(g);
    kp_fs_free(fs);
}

static void test_exec_missing_declared_output_is_a_failure(void **state)
{
    (void)state;
    kp_fs *fs = fs_with_input();
    kp_graph *g = diamond();
    behaviour lazy = { 0, 1, NULL };
    kp_graph_task(g, kp_graph_find(g, "a"))->user = &lazy;
    kp_exec_opts o = opts(2);
    kp_buf out;
    kp_buf_init(&out, 0);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    o.out = f;
    char err[KP_ERRLEN] = "";
    kp_exec_summary sum;
    int rc;
    char *got = run(fs, g, &o, &rc, &sum, err, sizeof err);
    fclose(f);
    assert_int_equal(rc, KP_ERR_TASK);
    assert_string_equal(got, "a");
    assert_int_equal(sum.n_blocked, 3);
    assert_non_null(strstr(text, "a exited 0 but did not write /r/a.out"));
    assert_non_null(strstr(text, "failed:\n  a: a declared output is missing"));
    free(text);
    free(got);
    kp_buf_free(&out);
    kp_graph_free(g);
    kp_fs_free(fs);
}

static void test_exec_never_more_than_jobs_tasks_at_once(void **state)
{
    (void)state;
    char err[KP_ERRLEN], id[16];
    const int jobs[] = { 1, 3, 8 };
    for (size_t k = 0; k < sizeof jobs / sizeof jobs[0]; k++) {
        kp_fs *fs = kp_fs_mem_create();
        kp_graph *g = kp_graph_create();
        for (int i = 0; i < 10; i++) {
            snprintf(id, sizeof id, "t%d", i);
            add(g, id, "");
        }
        add(g, "last", "t0 t9");
        assert_int_equal(kp_graph_finish(g, err, sizeof err), 0);
        kp_runner *r = kp_runner_fake_create(fs, jobs[k], fake_task, NULL);
        kp_exec_opts o = opts(jobs[k]);
        assert_int_equal(kp_exec_run(g, r, fs, &o, NULL, err, sizeof err), 0);
        assert_int_equal(kp_runner_fake_max_running(r), jobs[k]);
        kp_runner_free(r);
        kp_graph_free(g);
        kp_fs_free(fs);
    }
}

static void test_exec_start_order_is_graph_order_not_name_order(void **state)
{
    (void)state;
    for (int rep = 0; rep < 2; rep++) {
        char err[KP_ERRLEN];
        kp_fs *fs = kp_fs_mem_create();
        kp_graph *g = kp_graph_create();
        add(g, "zeta", "");
        add(g, "alpha", "");
        add(g, "mid", "zeta");
        add(g, "beta", "");
        assert_int_equal(kp_graph_finish(g, err, sizeof err), 0);
        kp_exec_opts o = opts(1);
        expect_run(fs, g, &o, "zeta alpha mid beta", 0);
        kp_graph_free(g);
        kp_fs_free(fs);
    }
}

static void test_exec_only_runs_the_stage_and_what_it_needs(void **state)
{
    (void)state;
    kp_fs *fs = fs_with_input();
    kp_graph *g = diamond();
    kp_exec_opts o = opts(2);
    const char *only[] = { "b" };
    o.only = only;
    o.n_only = 1;
    expect_run(fs, g, &o, "a b", 0);
    o.n_only = 0;
    expect_run(fs, g, &o, "c d", 0);
    kp_graph_free(g);
    kp_fs_free(fs);
}

static void test_exec_only_matches_a_matrix_base(void **state)
{
    (void)state;
    char err[KP_ERRLEN];
    kp_fs *fs = kp_fs_mem_create();
    kp_graph *g = kp_graph_create();
    int i;
    add(g, "prep", "");
    assert_int_equal(kp_graph_add(g, "lr/C=1", "lr/C=1", "lr", -1, &i, err, sizeof err), 0);
    assert_int_equal(kp_graph_add_output(g, i, "/r/lr1.out"), 0);
    assert_int_equal(kp_graph_add(g, "lr/C=2", "lr/C=2", "lr", -1, &i, err, sizeof err), 0);
    assert_int_equal(kp_graph_add_output(g, i, "/r/lr2.out"), 0);
    add(g, "other", "prep");
    assert_int_equal(kp_graph_finish(g, err, sizeof err), 0);
    kp_exec_opts o = opts(1);
    const char *only[] = { "lr" };
    o.only = only;
    o.n_only = 1;
    expect_run(fs, g, &o, "lr/C=1 lr/C=2", 0);
    kp_graph_free(g);
    kp_fs_free(fs);
}

static void test_exec_unknown_only_or_force_name_suggests_the_nearest(void **state)
{
    (void)state;
    kp_fs *fs = fs_with_input();
    kp_graph *g = diamond();
    kp_exec_opts o = opts(2);
    const char *names[] = { "bb" };
    char err[KP_ERRLEN] = "";
    kp_exec_summary sum;
    int rc;
    o.only = names;
    o.n_only = 1;
    char *got = run(fs, g, &o, &rc, &sum, err, sizeof err);
    assert_int_equal(rc, KP_ERR_ARG);
    assert_string_equal(err, "--only: unknown stage 'bb' (did you mean 'b'?)");
    assert_string_equal(got, "");
    free(got);
    o.n_only = 0;
    o.force = names;
    o.n_force = 1;
    got = run(fs, g, &o, &rc, &sum, err, sizeof err);
    assert_int_equal(rc, KP_ERR_ARG);
    assert_string_equal(err, "--force: unknown stage 'bb' (did you mean 'b'?)");
    free(got);
    kp_graph_free(g);
    kp_fs_free(fs);
}

static void test_exec_force_reruns_a_cached_stage(void **state)
{
    (void)state;
    kp_fs *fs = fs_with_input();
    kp_graph *g = diamond();
    kp_exec_opts o = opts(2);
    expect_run(fs, g, &o, "a b c d", 0);
    const char *force[] = { "c" };
    o.force = force;
    o.n_force = 1;
    expect_run(fs, g, &o, "c", 0);   /* identical output: d stays cached */
    kp_graph_free(g);
    kp_fs_free(fs);
}

/* Runs a plan (dry run or explain) and returns its printed text (heap). */
static char *plan_text(kp_fs *fs, kp_graph *g, int explain, int *rc)
{
    kp_exec_opts o = opts(2);
    char *text = NULL, err[KP_ERRLEN] = "";
    size_t len = 0;
    o.out = open_memstream(&text, &len);
    o.dry_run = !explain;
    o.explain = explain;
    char *got = run(fs, g, &o, rc, NULL, err, sizeof err);
    fclose(o.out);
    assert_string_equal(got, "");
    free(got);
    return text;
}

static void test_exec_dry_run_runs_and_writes_nothing(void **state)
{
    (void)state;
    kp_fs *fs = fs_with_input();
    kp_graph *g = diamond();
    int rc;
    char *text = plan_text(fs, g, 0, &rc);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(text, "a  run: never run\n"));
    assert_non_null(strstr(text, "d  run: never run\n"));   /* its own reason first */
    assert_non_null(strstr(text, "4 tasks would run, 0 up to date\n"));
    assert_null(kp_fs_mem_get(fs, STATE "/runlog"));
    assert_null(kp_fs_mem_get(fs, "/r/a.out"));
    free(text);
    kp_graph_free(g);
    kp_fs_free(fs);
}

static void test_exec_explain_gives_each_task_its_reason(void **state)
{
    (void)state;
    kp_fs *fs = fs_with_input();
    kp_graph *g = diamond();
    kp_exec_opts o = opts(2);
    expect_run(fs, g, &o, "a b c d", 0);
    char err[KP_ERRLEN];
    assert_int_equal(kp_graph_set_params(g, kp_graph_find(g, "b"), "v2"), 0);
    assert_int_equal(fs->ops->remove(fs, "/r/c.out", err, sizeof err), 0);
    int rc;
    char *text = plan_text(fs, g, 1, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(text,
                        "a  up to date\n"
                        "b  run: config changed\n"
                        "c  run: output missing: /r/c.out\n"
                        "d  run: upstream b will run\n"
                        "3 tasks would run, 1 up to date\n");
    free(text);
    expect_run(fs, g, &o, "b c d", 0);
    assert_int_equal(kp_fs_mem_put(fs, "/data/in.csv", "new"), 0);
    text = plan_text(fs, g, 1, &rc);
    assert_non_null(strstr(text, "a  run: input changed: /data/in.csv\n"));
    free(text);
    kp_graph_free(g);
    kp_fs_free(fs);
}

static void test_exec_plan_reports_stats_of_the_last_run(void **state)
{
    (void)state;
    kp_fs *fs = fs_with_input();
    kp_graph *g = diamond();
    kp_exec_opts o = opts(1);
    expect_run(fs, g, &o, "a b c d", 0);
    kp_task_plan plans[4];
    char err[KP_ERRLEN];
    assert_int_equal(kp_exec_plan(g, fs, &o, plans, err, sizeof err), 0);
    for (int i = 0; i < 4; i++) {
        assert_true(plans[i].has_entry);
        assert_false(plans[i].will_run);
        assert_int_equal(plans[i].wall_ms, 10);   /* the fake clock's 10 ms per task */
        assert_int_equal(plans[i].rss_kb, 1024);
        assert_int_equal(plans[i].last_exit, 0);
    }
    kp_graph_free(g);
    kp_fs_free(fs);
}

static void test_exec_unknown_runlog_version_is_discarded_and_rebuilt(void **state)
{
    (void)state;
    kp_fs *fs = fs_with_input();
    kp_graph *g = diamond();
    kp_exec_opts o = opts(2);
    expect_run(fs, g, &o, "a b c d", 0);
    const char *log = kp_fs_mem_get(fs, STATE "/runlog");
    char *v9 = strdup(log);
    v9[strlen("# kpipe runlog v")] = '9';
    assert_int_equal(kp_fs_mem_put(fs, STATE "/runlog", v9), 0);
    free(v9);
    expect_run(fs, g, &o, "a b c d", 0);
    assert_int_equal(strncmp(kp_fs_mem_get(fs, STATE "/runlog"), KP_RUNLOG_HEADER "\n",
                             strlen(KP_RUNLOG_HEADER) + 1), 0);
    expect_run(fs, g, &o, "", 0);
    kp_graph_free(g);
    kp_fs_free(fs);
}

static void test_exec_missing_outside_input_fails_before_anything_runs(void **state)
{
    (void)state;
    kp_fs *fs = kp_fs_mem_create();
    kp_graph *g = diamond();
    kp_exec_opts o = opts(2);
    char err[KP_ERRLEN] = "";
    kp_exec_summary sum;
    int rc;
    char *got = run(fs, g, &o, &rc, &sum, err, sizeof err);
    assert_int_equal(rc, KP_ERR_NOTFOUND);
    assert_string_equal(err, "stage a: input file /data/in.csv does not exist");
    assert_string_equal(got, "");
    free(got);
    kp_graph_free(g);
    kp_fs_free(fs);
}

static void test_exec_second_concurrent_run_is_refused(void **state)
{
    (void)state;
    kp_fs *fs = fs_with_input();
    kp_graph *g = diamond();
    kp_exec_opts o = opts(2);
    char err[KP_ERRLEN] = "";
    int token, rc;
    assert_int_equal(fs->ops->lock(fs, STATE "/lock", &token, err, sizeof err), 0);
    char *got = run(fs, g, &o, &rc, NULL, err, sizeof err);
    assert_int_equal(rc, KP_ERR_IO);
    assert_string_equal(err, "another kpipe run is using this run directory (/r/.kpipe/lock)");
    assert_string_equal(got, "");
    free(got);
    fs->ops->unlock(fs, token);
    expect_run(fs, g, &o, "a b c d", 0);
    kp_graph_free(g);
    kp_fs_free(fs);
}

static void test_exec_interrupt_lets_running_tasks_finish_and_starts_no_more(void **state)
{
    (void)state;
    kp_fs *fs = fs_with_input();
    kp_graph *g = diamond();
    kp_exec_opts o = opts(1);
    char err[KP_ERRLEN] = "";
    kp_exec_summary sum;
    kp_runner *r = kp_runner_fake_create(fs, 1, fake_task, NULL);
    kp_runner_fake_interrupt_after(r, 1);
    int rc = kp_exec_run(g, r, fs, &o, &sum, err, sizeof err);
    assert_int_equal(rc, KP_ERR_TASK);
    assert_string_equal(err, "interrupted");
    assert_true(sum.interrupted);
    assert_string_equal(kp_runner_fake_started(r), "a");
    assert_int_equal(sum.n_ran, 1);   /* a finished and was recorded */
    kp_runner_free(r);
    expect_run(fs, g, &o, "b c d", 0);
    kp_graph_free(g);
    kp_fs_free(fs);
}

static void test_exec_progress_lines_count_and_time_tasks(void **state)
{
    (void)state;
    kp_fs *fs = fs_with_input();
    kp_graph *g = diamond();
    kp_exec_opts o = opts(1);
    char *text = NULL;
    size_t len = 0;
    o.out = open_memstream(&text, &len);
    int rc;
    char err[KP_ERRLEN];
    char *got = run(fs, g, &o, &rc, NULL, err, sizeof err);
    fclose(o.out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(text, "[  0/4] start a\n[  1/4] done  a  0.01s  eta 0.03s\n"));
    assert_non_null(strstr(text, "[  4/4] done  d  0.01s\n"));
    assert_non_null(strstr(text, "4 ran, 0 up to date, 0 failed, 0 blocked, 0 not run in"));
    free(text);
    free(got);
    kp_graph_free(g);
    kp_fs_free(fs);
}

static void test_graph_cycle_is_reported_with_its_path(void **state)
{
    (void)state;
    char err[KP_ERRLEN] = "";
    kp_graph *g = kp_graph_create();
    add(g, "a", "");
    add(g, "b", "a");
    add(g, "c", "b");
    assert_int_equal(kp_graph_add_dep(g, kp_graph_find(g, "a"), kp_graph_find(g, "c")), 0);
    assert_int_equal(kp_graph_finish(g, err, sizeof err), KP_ERR_CYCLE);
    assert_string_equal(err, "the task graph has a cycle: a -> c -> b -> a");
    kp_graph_free(g);
}

static void test_graph_two_tasks_writing_one_file_is_an_error(void **state)
{
    (void)state;
    char err[KP_ERRLEN] = "";
    kp_graph *g = kp_graph_create();
    add(g, "a", "");
    int b = add(g, "b", "");
    assert_int_equal(kp_graph_add_output(g, b, "/r/a.out"), 0);
    assert_int_equal(kp_graph_finish(g, err, sizeof err), KP_ERR_CONFIG);
    assert_string_equal(err, "/r/a.out is written by both a and b");
    kp_graph_free(g);
}

static void test_graph_duplicate_task_id_is_refused(void **state)
{
    (void)state;
    char err[KP_ERRLEN] = "";
    kp_graph *g = kp_graph_create();
    int i;
    assert_int_equal(kp_graph_add(g, "a", "a", NULL, -1, &i, err, sizeof err), 0);
    assert_int_equal(kp_graph_add(g, "a", "a", NULL, -1, &i, err, sizeof err), KP_ERR_ARG);
    assert_string_equal(err, "two tasks are called 'a'");
    assert_int_equal(kp_graph_count(g), 1);
    kp_graph_free(g);
}

KP_TEST_GROUP(exec)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_exec_first_run_runs_every_task_in_graph_order),
        cmocka_unit_test(test_exec_second_run_runs_nothing_and_reads_no_data),
        cmocka_unit_test(test_exec_changed_params_rerun_the_task_and_its_dependents_only),
        cmocka_unit_test(test_exec_changed_outside_input_reruns_what_reads_it),
        cmocka_unit_test(test_exec_upstream_rerun_with_identical_output_skips_dependents),
        cmocka_unit_test(test_exec_moved_checkout_keeps_its_cache),
        cmocka_unit_test(test_exec_deleted_output_reruns_its_task),
        cmocka_unit_test(test_exec_modified_output_reruns_its_task),
        cmocka_unit_test(test_exec_failure_stops_new_starts_without_keep_going),
        cmocka_unit_test(test_exec_unwritten_output_stops_new_starts_without_keep_going),
        cmocka_unit_test(test_exec_failure_blocks_only_dependents_with_keep_going),
        cmocka_unit_test(test_exec_missing_declared_output_is_a_failure),
        cmocka_unit_test(test_exec_never_more_than_jobs_tasks_at_once),
        cmocka_unit_test(test_exec_start_order_is_graph_order_not_name_order),
        cmocka_unit_test(test_exec_only_runs_the_stage_and_what_it_needs),
        cmocka_unit_test(test_exec_only_matches_a_matrix_base),
        cmocka_unit_test(test_exec_unknown_only_or_force_name_suggests_the_nearest),
        cmocka_unit_test(test_exec_force_reruns_a_cached_stage),
        cmocka_unit_test(test_exec_dry_run_runs_and_writes_nothing),
        cmocka_unit_test(test_exec_explain_gives_each_task_its_reason),
        cmocka_unit_test(test_exec_plan_reports_stats_of_the_last_run),
        cmocka_unit_test(test_exec_unknown_runlog_version_is_discarded_and_rebuilt),
        cmocka_unit_test(test_exec_missing_outside_input_fails_before_anything_runs),
        cmocka_unit_test(test_exec_second_concurrent_run_is_refused),
        cmocka_unit_test(test_exec_interrupt_lets_running_tasks_finish_and_starts_no_more),
        cmocka_unit_test(test_exec_progress_lines_count_and_time_tasks),
        cmocka_unit_test(test_graph_cycle_is_reported_with_its_path),
        cmocka_unit_test(test_graph_two_tasks_writing_one_file_is_an_error),
        cmocka_unit_test(test_graph_duplicate_task_id_is_refused),
    };
    return KP_RUN(exec, t);
}

/* test_e2e.c - the kpipe binary end to end on the bundled demo competition.
 *
 * Each test copies configs/demo.yaml and data/demo into a fresh temporary
 * tree (so runs never touch the repository) and drives ./build/kpipe.
 */
#include "kp_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "../lib/csv.h"
#include "../lib/err.h"
#include "../models/model.h"
#include "../models/safetensors.h"
#include "../pipeline/stamp.h"

/* Makes TMP/{configs,data,submissions} from the repository; returns TMP (heap). */
static char *demo_tree(void)
{
    char *dir = kp_test_tmpdir();
    assert_non_null(dir);
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s/submissions' && cp -r '%s/configs' '%s/' && mkdir '%s/data' && "
             "cp -r '%s'/data/demo '%s'/data/titanic '%s'/data/wine '%s'/data/diabetes "
             "'%s/data/' && rm -rf '%s/configs/runs'",
             dir, kp_test_root(), dir, dir, kp_test_root(), kp_test_root(), kp_test_root(),
             kp_test_root(), dir, dir);
    assert_int_equal(kp_test_sh(cmd, NULL), 0);
    return dir;
}

/* Returns the number of lines of a text. */
static int count_lines(const char *s)
{
    int n = 0;
    for (; s && *s; s++)
        n += *s == '\n';
    return n;
}

/* Runs "kpipe ARGS" inside dir; returns the exit status, output in *out (heap) if out. */
static int kpipe(const char *dir, const char *args, char **out)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' %s", dir, kp_test_bin(), args);
    return kp_test_sh(cmd, out);
}

static char *read_in(const char *dir, const char *rel)
{
    char *p = kp_test_join(dir, rel);
    char *s = kp_test_read(p);
    free(p);
    return s;
}

/* Returns the first column of each line of a CSV text without quotes (heap, '\n'-joined). */
static char *first_column(const char *csv)
{
    char *out = calloc(1, strlen(csv) + 1);
    char *o = out;
    for (const char *p = csv; *p;) {
        while (*p && *p != ',' && *p != '\n')
            *o++ = *p++;
        *o++ = '\n';
        while (*p && *p != '\n')
            p++;
        if (*p)
            p++;
    }
    *o = 0;
    return out;
}

static void test_demo_writes_submission_in_sample_order(void **state)
{
    (void)state;
    char *dir = demo_tree();
    char *out = NULL;
    int rc = kpipe(dir, "run configs/demo.yaml -j 2", &out);
    if (rc != 0)
        fprintf(stderr, "%s\n", out);
    assert_int_equal(rc, 0);
    char *sub = read_in(dir, "submissions/demo.csv");
    char *sample = read_in(dir, "data/demo/sample_submission.csv");
    assert_non_null(sub);
    assert_non_null(sample);
    char *ids_sub = first_column(sub), *ids_sample = first_column(sample);
    assert_string_equal(ids_sub, ids_sample);
    assert_true(strncmp(sub, "id,diagnosis\n", 13) == 0);
    /* every value is a probability */
    int rows = 0;
    for (const char *p = strchr(sub, '\n') + 1; *p; p = strchr(p, '\n') + 1) {
        const char *comma = strchr(p, ',');
        assert_non_null(comma);
        double v = strtod(comma + 1, NULL);
        assert_true(v >= 0.0 && v <= 1.0);
        rows++;
    }
    assert_int_equal(rows, 114);
    free(ids_sub); free(ids_sample); free(sub); free(sample); free(out); free(dir);
}

static void test_demo_second_run_is_all_up_to_date(void **state)
{
    (void)state;
    char *dir = demo_tree();
    assert_int_equal(kpipe(dir, "run configs/demo.yaml -j 2", NULL), 0);
    char *plan = NULL;
    assert_int_equal(kpipe(dir, "plan configs/demo.yaml", &plan), 0);
    assert_null(strstr(plan, "run:"));
    assert_non_null(strstr(plan, "up to date"));
    free(plan); free(dir);
}

/* Runs the demo with the given -j in a fresh tree; returns the submission text. */
static char *demo_submission_with(const char *jobs)
{
    char *dir = demo_tree();
    char args[64];
    snprintf(args, sizeof args, "run configs/demo.yaml -j %s", jobs);
    assert_int_equal(kpipe(dir, args, NULL), 0);
    char *sub = read_in(dir, "submissions/demo.csv");
    assert_non_null(sub);
    free(dir);
    return sub;
}

static void test_demo_jobs_1_and_4_give_identical_submission(void **state)
{
    (void)state;
    char *a = demo_submission_with("1"), *b = demo_submission_with("4");
    assert_string_equal(a, b);
    free(a); free(b);
}

static void test_demo_killed_midrun_resumes_to_identical_submission(void **state)
{
    (void)state;
    char *want = demo_submission_with("2");
    /* The demo runs in about 0.25 s (longer under ASan): these land mid-run. */
    const char *delays[] = {"0.02", "0.06", "0.12", "0.2", "0.35"};
    int resumed_mid_run = 0;
    for (size_t i = 0; i < sizeof delays / sizeof delays[0]; i++) {
        char *dir = demo_tree();
        char cmd[4096];
        snprintf(cmd, sizeof cmd,
                 "cd '%s' && ('%s' run configs/demo.yaml -j 2 >/dev/null 2>&1 & pid=$!; "
                 "sleep %s; kill -9 $pid; wait $pid; sleep 0.1) ; true",
                 dir, kp_test_bin(), delays[i]);
        kp_test_sh(cmd, NULL);
        char *out = NULL;
        int rc = kpipe(dir, "run configs/demo.yaml -j 2", &out);
        if (rc != 0)
            fprintf(stderr, "after kill at %ss: %s\n", delays[i], out);
        assert_int_equal(rc, 0);
        char *got = read_in(dir, "submissions/demo.csv");
        assert_non_null(got);
        assert_string_equal(got, want);
        /* "N ran, M up to date": a resume that both re-ran and reused tasks */
        int ran = 0, cached = 0;
        const char *sum = strstr(out, " ran, ");
        while (sum && sum > out && sum[-1] >= '0' && sum[-1] <= '9')
            sum--;
        if (sum && sscanf(sum, "%d ran, %d up to date", &ran, &cached) == 2 && ran > 0 &&
            cached > 0)
            resumed_mid_run++;
        free(got); free(out); free(dir);
    }
    assert_true(resumed_mid_run > 0);
    free(want);
}

static void test_changed_param_reruns_only_its_dependents(void **state)
{
    (void)state;
    char *dir = demo_tree();
    assert_int_equal(kpipe(dir, "run configs/demo.yaml -j 2", NULL), 0);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "sed -i 's/alpha: 10.0/alpha: 3.0/' '%s/configs/demo.yaml'", dir);
    assert_int_equal(kp_test_sh(cmd, NULL), 0);
    char *plan = NULL;
    assert_int_equal(kpipe(dir, "plan configs/demo.yaml", &plan), 0);
    /* ridge's tasks and those downstream of it re-run; the logistic ones do not */
    assert_non_null(strstr(plan, "run: config changed"));
    char *line = strstr(plan, "logreg/C=0.1#part0");
    assert_non_null(line);
    char *eol = strchr(line, '\n');
    char buf[512] = {0};
    memcpy(buf, line, eol && eol - line < 511 ? (size_t)(eol - line) : 511);
    assert_non_null(strstr(buf, "up to date"));
    free(plan); free(dir);
}

/* ---- the up-to-date stamp (pipeline/stamp.h) ---- */

/* Returns 1 if the demo config in dir has an up-to-date stamp. */
static int demo_has_stamp(const char *dir)
{
    char *config = kp_test_join(dir, "configs/demo.yaml"), stamp[4200];
    assert_int_equal(kp_stamp_path(config, stamp, sizeof stamp), 0);
    free(config);
    return access(stamp, F_OK) == 0;
}

/* Runs the demo in dir, applies the shell command `change` there, runs it
 * again and checks the second run's summary starts with `want`. */
static void assert_rerun_after(const char *change, const char *want)
{
    char *dir = demo_tree(), *out = NULL, cmd[4096];
    assert_int_equal(kpipe(dir, "run configs/demo.yaml -j 2", NULL), 0);
    assert_true(demo_has_stamp(dir));
    snprintf(cmd, sizeof cmd, "cd '%s' && %s", dir, change);
    assert_int_equal(kp_test_sh(cmd, NULL), 0);
    assert_int_equal(kpipe(dir, "run configs/demo.yaml -j 2", &out), 0);
    if (!strstr(out, want))
        fail_msg("after '%s': expected '%s' in:\n%s", change, want, out);
    free(out);
    free(dir);
}

static void test_stamp_answers_a_noop_rerun(void **state)
{
    (void)state;
    assert_rerun_after("true", "0 ran, 40 up to date, 0 failed");
}

static void test_stamp_does_not_hide_a_changed_input(void **state)
{
    (void)state;
    /* one more training row: every task reading the data re-runs */
    assert_rerun_after("tail -n 1 data/demo/train.csv >> data/demo/train.csv", "40 ran, 0 up to date");
}

static void test_stamp_does_not_hide_a_missing_output(void **state)
{
    (void)state;
    assert_rerun_after("rm submissions/demo.csv", "1 ran, 39 up to date");
}

static void test_stamp_does_not_hide_a_deleted_run_log(void **state)
{
    (void)state;
    assert_rerun_after("rm configs/runs/demo/.kpipe/runlog", "40 ran, 0 up to date");
}

static void test_stamp_does_not_hide_a_changed_config(void **state)
{
    (void)state;
    /* ridge's folds and merge and everything downstream of it */
    assert_rerun_after("sed -i 's/alpha: 10.0/alpha: 3.0/' configs/demo.yaml",
                       "14 ran, 26 up to date");
}

static void test_only_partial_or_failed_runs_leave_no_stamp(void **state)
{
    (void)state;
    char *dir = demo_tree(), cmd[4096];
    assert_int_equal(kpipe(dir, "run configs/demo.yaml --only folds", NULL), 0);
    assert_false(demo_has_stamp(dir));
    assert_int_equal(kpipe(dir, "run configs/demo.yaml", NULL), 0);
    assert_true(demo_has_stamp(dir));
    /* a run that fails removes it first and writes none */
    snprintf(cmd, sizeof cmd, "cd '%s' && printf 'id,diagnosis\n' > data/demo/sample_submission.csv",
             dir);
    assert_int_equal(kp_test_sh(cmd, NULL), 0);
    assert_int_not_equal(kpipe(dir, "run configs/demo.yaml", NULL), 0);
    assert_false(demo_has_stamp(dir));
    free(dir);
}

/* ---- kpipe predict and kpipe models ---- */

#define DEMO_CKPT "configs/runs/demo/logreg/C=0.1/model_part2.safetensors"
#define DEMO_PART "configs/runs/demo/logreg/C=0.1/part2.safetensors"
#define DEMO_DATA "configs/runs/demo/prep/dataset.safetensors"

/* Returns part 2's `test` tensor (heap copy) and its element count. */
static float *demo_part_test(const char *dir, int64_t *n)
{
    char *path = kp_test_join(dir, DEMO_PART), err[KP_ERRLEN] = "";
    kp_st *st = NULL;
    assert_int_equal(kp_st_open(path, &st, err, sizeof err), 0);
    const kp_tensor *t = kp_st_find(st, "test");
    assert_non_null(t);
    float *v = malloc(sizeof *v * (size_t)t->numel);
    memcpy(v, t->data, sizeof *v * (size_t)t->numel);
    *n = t->numel;
    kp_st_close(st);
    free(path);
    return v;
}

static void test_predict_reproduces_the_training_runs_test_predictions(void **state)
{
    (void)state;
    char *dir = demo_tree(), *csv = NULL, err[KP_ERRLEN] = "";
    assert_int_equal(kpipe(dir, "run configs/demo.yaml", NULL), 0);
    int64_t n = 0;
    float *want = demo_part_test(dir, &n);
    /* CSV: every float reads back to the training run's bits */
    assert_int_equal(kpipe(dir, "predict " DEMO_CKPT " " DEMO_DATA " -o p.csv", NULL), 0);
    assert_non_null(csv = read_in(dir, "p.csv"));
    assert_int_equal(strncmp(csv, "id,prediction\n", 14), 0);
    const char *line = strchr(csv, '\n') + 1;
    for (int64_t i = 0; i < n; i++, line = strchr(line, '\n') + 1) {
        float got = strtof(strchr(line, ',') + 1, NULL);
        if (memcmp(&got, &want[i], sizeof got) != 0)
            fail_msg("row %lld: %.9g, the training run predicted %.9g", (long long)i, got, want[i]);
    }
    assert_int_equal(*line, 0);
    /* safetensors: the same bytes */
    assert_int_equal(kpipe(dir, "predict " DEMO_CKPT " " DEMO_DATA " -o p.safetensors", NULL), 0);
    char *path = kp_test_join(dir, "p.safetensors");
    kp_st *st = NULL;
    assert_int_equal(kp_st_open(path, &st, err, sizeof err), 0);
    const kp_tensor *t = kp_st_find(st, "pred");
    assert_non_null(t);
    assert_int_equal(t->numel, n);
    assert_memory_equal(t->data, want, sizeof *want * (size_t)n);
    kp_st_close(st);
    free(path); free(want); free(csv); free(dir);
}

typedef struct cli_error_case {
    const char *args;
    int status;
    const char *message;
} cli_error_case;

static const cli_error_case predict_errors[] = {
    { "predict " DEMO_CKPT, 2, "kpipe: predict: expected CHECKPOINT DATA (see kpipe predict --help)" },
    { "predict " DEMO_CKPT " " DEMO_DATA " --rows all", 2,
      "kpipe: predict: --rows expects test or train, not 'all'" },
    { "predict bad.safetensors " DEMO_DATA, 3, "kpipe: predict: bad.safetensors: " },
    { "predict " DEMO_DATA " " DEMO_DATA, 3, "kpipe: predict: " },
    { "predict " DEMO_CKPT " " DEMO_CKPT, 3, "kpipe: predict: " },
    { "models logistc", 2, "kpipe: models: unknown model 'logistc' (did you mean 'logistic'?)" },
};

static void test_predict_and_models_refuse_bad_arguments_clearly(void **state)
{
    (void)state;
    char *dir = demo_tree(), cmd[4096];
    assert_int_equal(kpipe(dir, "run configs/demo.yaml", NULL), 0);
    snprintf(cmd, sizeof cmd, "cd '%s' && head -c 100 " DEMO_CKPT " > bad.safetensors", dir);
    assert_int_equal(kp_test_sh(cmd, NULL), 0);
    for (size_t i = 0; i < sizeof predict_errors / sizeof predict_errors[0]; i++) {
        char *out = NULL;
        int rc = kpipe(dir, predict_errors[i].args, &out);
        if (rc != predict_errors[i].status || !strstr(out, predict_errors[i].message))
            fail_msg("kpipe %s: exit %d, output:\n%s", predict_errors[i].args, rc, out);
        free(out);
    }
    free(dir);
}

static void test_models_lists_every_model_and_its_parameters(void **state)
{
    (void)state;
    char *out = NULL;
    assert_int_equal(kpipe(".", "models", &out), 0);
    for (int i = 0; i < kp_model_count(); i++) {
        char want[64];
        snprintf(want, sizeof want, "\n%s ", kp_model_at(i)->name);
        if (!strstr(out, want))
            fail_msg("kpipe models does not list '%s'", kp_model_at(i)->name);
    }
    free(out);
    for (int i = 0; i < kp_model_count(); i++) {
        const kp_model_ops *m = kp_model_at(i);
        char args[128];
        snprintf(args, sizeof args, "models %s", m->name);
        assert_int_equal(kpipe(".", args, &out), 0);
        for (const kp_keyspec *k = m->params; k->name; k++) {
            char want[128];
            snprintf(want, sizeof want, "\n%-22s ", k->name);
            if (!strstr(out, want))
                fail_msg("kpipe models %s does not list parameter '%s'", m->name, k->name);
        }
        free(out);
    }
}

static void test_bad_config_exits_3_naming_line_and_key(void **state)
{
    (void)state;
    char *dir = demo_tree();
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "sed -i 's/standardize: true/standardise: true/' '%s/configs/demo.yaml'", dir);
    assert_int_equal(kp_test_sh(cmd, NULL), 0);
    char *out = NULL;
    assert_int_equal(kpipe(dir, "run configs/demo.yaml", &out), 3);
    assert_non_null(strstr(out, "demo.yaml:"));
    assert_non_null(strstr(out, "standardise"));
    assert_non_null(strstr(out, "did you mean 'standardize'"));
    free(out); free(dir);
}

/* Checks that two CSV texts have the same header fields and first column, as parsed. */
static void assert_same_ids_and_header(const char *want_text, const char *got_text)
{
    char err[KP_ERRLEN];
    kp_csv *want = NULL, *got = NULL;
    assert_int_equal(kp_csv_parse("sample", want_text, strlen(want_text), &want, err, sizeof err), 0);
    assert_int_equal(kp_csv_parse("submission", got_text, strlen(got_text), &got, err, sizeof err), 0);
    assert_int_equal(kp_csv_cols(got), kp_csv_cols(want));
    assert_int_equal(kp_csv_rows(got), kp_csv_rows(want));
    for (size_t c = 0; c < kp_csv_cols(want); c++)
        assert_string_equal(kp_csv_header(got, c), kp_csv_header(want, c));
    for (size_t r = 0; r < kp_csv_rows(want); r++)
        assert_string_equal(kp_csv_get(got, r, 0), kp_csv_get(want, r, 0));
    kp_csv_free(want);
    kp_csv_free(got);
}

/* Every example config runs to a submission shaped like its sample. */
static void test_every_example_config_runs_to_a_submission(void **state)
{
    (void)state;
    static const struct { const char *config, *sample, *submission; } cases[] = {
        {"titanic", "data/titanic/sample_submission.csv", "submissions/titanic.csv"},
        {"wine", "data/wine/sample_submission.csv", "submissions/wine.csv"},
        {"diabetes", "data/diabetes/sample_submission.csv", "submissions/diabetes.csv"},
        {"fashion-mnist", "data/fashion-mnist/sample_submission.csv",
         "submissions/fashion-mnist.csv"},
        {"fmnist-multilabel", "data/fmnist-multilabel/sample_submission.csv",
         "submissions/fmnist-multilabel.csv"},
        {"fmnist-segmentation", "data/fmnist-segmentation/sample_submission.csv",
         "submissions/fmnist-segmentation.csv"},
    };
    char *dir = demo_tree(), cmd[4096], *listing = NULL;
    /* every config but demo.yaml (tested above) and titanic-kaggle.yaml (run
     * against a local Kaggle by test_kaggle_cli.c) is in the table */
    snprintf(cmd, sizeof cmd, "ls '%s'/configs/*.yaml | wc -l", dir);
    assert_int_equal(kp_test_sh(cmd, &listing), 0);
    assert_int_equal(atoi(listing), (int)(sizeof cases / sizeof cases[0]) + 2);
    free(listing);
    /* the zoo configs stack every model family: on the first 300 rows of
     * their train sets, so that the test (and the ASan run) stays quick */
    snprintf(cmd, sizeof cmd, "cd '%s/data' && for d in titanic diabetes; do "
             "head -n 301 $d/train.csv > $d/t && mv $d/t $d/train.csv; done", dir);
    assert_int_equal(kp_test_sh(cmd, NULL), 0);
    /* the image configs: their data made by their scripts from Debian's
     * dataset-fashion-mnist, 150 train images, one epoch (CNNs under ASan
     * are slow: this keeps CI's sanitizer run short) */
    snprintf(cmd, sizeof cmd, "cd '%s' && python3 configs/fmnist_to_kaggle.py --out "
             "data/fashion-mnist --train-limit 150 --test-limit 20 >/dev/null && "
             "python3 configs/multilabel_from_fmnist.py --out data/fmnist-multilabel "
             "--n-train 100 --n-test 20 >/dev/null && "
             "python3 configs/fmnist_segmentation.py --out data/fmnist-segmentation "
             "--train-limit 60 --test-limit 10 --jobs 1 >/dev/null && "
             "sed -i 's/epochs: [0-9]*/epochs: 1/' configs/fashion-mnist.yaml "
             "configs/fmnist-multilabel.yaml configs/fmnist-segmentation.yaml && "
             "sed -i 's/base: 16/base: 4/' configs/fmnist-segmentation.yaml", dir);
    assert_int_equal(kp_test_sh(cmd, NULL), 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char args[256], *out = NULL;
        snprintf(args, sizeof args, "run configs/%s.yaml -j 2", cases[i].config);
        int rc = kpipe(dir, args, &out);
        if (rc != 0)
            fprintf(stderr, "%s: %s\n", cases[i].config, out);
        assert_int_equal(rc, 0);
        char *sample = read_in(dir, cases[i].sample), *sub = read_in(dir, cases[i].submission);
        assert_non_null(sub);
        assert_int_equal(count_lines(sub), count_lines(sample));
        assert_same_ids_and_header(sample, sub);
        free(sample); free(sub); free(out);
    }
    /* a cnn checkpoint predicts the images of its dataset through `kpipe predict` */
    char *pred = NULL;
    assert_int_equal(kpipe(dir, "predict configs/runs/fashion-mnist/vgg/model_part0.safetensors "
                           "configs/runs/fashion-mnist/images/dataset.safetensors", &pred), 0);
    assert_int_equal(count_lines(pred), 20 + 1);
    assert_non_null(strstr(pred, "te00020,"));
    free(pred);
    /* the segmentation submission is RLE that decodes at the images' size */
    char *seg = read_in(dir, "submissions/fmnist-segmentation.csv");
    assert_non_null(seg);
    assert_non_null(strstr(seg, "img,pixels\n"));
    free(seg);
    free(dir);
}

/* An input file that no stage writes and that is missing stops the run
 * before anything runs, naming the config line of the stage that reads it. */
static void test_missing_stage_input_names_config_line_before_running(void **state)
{
    (void)state;
    char *dir = demo_tree();
    char cmd[4096], *out = NULL;
    snprintf(cmd, sizeof cmd,
             "cd '%s/configs' && sed 's#train: runs/diabetes/fe/train.csv#train: nowhere/train.csv#' "
             "diabetes.yaml > bad.yaml", dir);
    assert_int_equal(kp_test_sh(cmd, NULL), 0);
    assert_int_equal(kpipe(dir, "run configs/bad.yaml", &out), 3);
    assert_non_null(strstr(out, "bad.yaml:22:3: stages.prep: input file "));
    assert_non_null(strstr(out, "nowhere/train.csv does not exist"));
    char *fe_out = read_in(dir, "configs/runs/bad/fe/train.csv");
    assert_null(fe_out);   /* nothing ran */
    free(out); free(dir);
}

static void test_version_and_help(void **state)
{
    (void)state;
    char *out = NULL;
    assert_int_equal(kpipe(".", "--version", &out), 0);
    assert_non_null(strstr(out, "kpipe "));
    assert_non_null(strstr(out, "OpenBLAS"));   /* loaded on demand: it says which kernels */
    free(out);
    assert_int_equal(kpipe(".", "--help", &out), 0);
    assert_non_null(strstr(out, "run"));
    assert_non_null(strstr(out, "status"));
    free(out);
    assert_int_equal(kpipe(".", "frobnicate", &out), 2);
    free(out);
}

KP_TEST_GROUP(e2e)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_demo_writes_submission_in_sample_order),
        cmocka_unit_test(test_demo_second_run_is_all_up_to_date),
        cmocka_unit_test(test_demo_jobs_1_and_4_give_identical_submission),
        cmocka_unit_test(test_demo_killed_midrun_resumes_to_identical_submission),
        cmocka_unit_test(test_changed_param_reruns_only_its_dependents),
        cmocka_unit_test(test_stamp_answers_a_noop_rerun),
        cmocka_unit_test(test_stamp_does_not_hide_a_changed_input),
        cmocka_unit_test(test_stamp_does_not_hide_a_missing_output),
        cmocka_unit_test(test_stamp_does_not_hide_a_deleted_run_log),
        cmocka_unit_test(test_stamp_does_not_hide_a_changed_config),
        cmocka_unit_test(test_only_partial_or_failed_runs_leave_no_stamp),
        cmocka_unit_test(test_predict_reproduces_the_training_runs_test_predictions),
        cmocka_unit_test(test_predict_and_models_refuse_bad_arguments_clearly),
        cmocka_unit_test(test_models_lists_every_model_and_its_parameters),
        cmocka_unit_test(test_bad_config_exits_3_naming_line_and_key),
        cmocka_unit_test(test_every_example_config_runs_to_a_submission),
        cmocka_unit_test(test_missing_stage_input_names_config_line_before_running),
        cmocka_unit_test(test_version_and_help),
    };
    return KP_RUN(e2e, t);
}

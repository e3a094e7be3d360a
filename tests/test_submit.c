/* test_submit.c - the submit stage: sample order and header, formats, id
 * errors, the submission contract and the ledger. */
#include "stage_fixture.h"

#include <math.h>
#include "../lib/hash.h"
#include "../lib/ledger.h"

static const char *const yaml_fmt =
    "competition:\n"
    "  train: train.csv\n"
    "  test: test.csv\n"
    "  sample_submission: sample.csv\n"
    "  id: id\n"
    "  target: %s\n"
    "  task: %s\n"
    "  metric: %s\n"
    "  folds: {k: 2, kind: plain, seed: 1}\n"
    "%s"
    "stages:\n"
    "  prep: {type: preprocess}\n"
    "  folds: {type: folds, needs: [prep]}\n"
    "  lr: {type: train, needs: [prep, folds], model: %s}\n"
    "  sub: {type: submit, needs: [prep, lr], output: out/sub.csv%s}\n";

/* One submission case: the task, the sample file, the test ids and predictions. */
typedef struct scase {
    kp_task_kind task;
    int n_out;
    const char *classes;      /* JSON */
    const char *target;       /* the competition's target (YAML) */
    const char *sub_keys;     /* more keys of the submit stage, ", k: v" */
    const char *sample;       /* the sample submission's text */
    int n_test;
    const char *const *ids;
    const float *test;        /* n_test * n_out */
    const float *thresholds;  /* in the predictions, or NULL */
    const char *comp_extra;   /* more lines of the competition block, or NULL */
} scase;

static const char *task_metric(kp_task_kind t)
{
    return t == KP_TASK_BINARY ? "auc" : t == KP_TASK_MULTICLASS ? "logloss"
         : t == KP_TASK_REGRESSION ? "rmse" : "f1_samples";
}

/* Writes lr's predictions for the case. */
static void write_preds(const kp_config *cfg, const scase *c)
{
    char err[KP_ERRLEN] = "";
    float oof[2 * 8] = {0};
    kp_preds_out o = {
        .pb = {c->task, c->n_out}, .n_train = 2, .n_test = c->n_test, .oof = oof,
        .test = c->test, .folds_hash = "00000000000000000000000000000000", .metric = "x",
        .model = "logistic", .stage = "lr", .classes_json = c->task == KP_TASK_REGRESSION
        ? NULL : c->classes, .thresholds = c->thresholds, .oof_score = 0.8765432,
    };
    char *path = fx_path(cfg, "lr", "preds.safetensors");
    int rc = kp_preds_write(path, &o, err, sizeof err);
    if (rc)
        print_error("%s\n", err);
    assert_int_equal(rc, 0);
    free(path);
}

/* Loads the case's config and writes its dataset and predictions. */
static kp_config *setup(const char *dir, const scase *c)
{
    static const float X[2 * 1] = {0, 1}, Xt[8] = {0};
    float y[2 * 8] = {0, 1};   /* valid for every task */
    char yaml[4096];
    free(kp_test_write(dir, "sample.csv", c->sample));
    snprintf(yaml, sizeof yaml, yaml_fmt, c->target, kp_task_name(c->task), task_metric(c->task),
             c->comp_extra ? c->comp_extra : "",
             c->task == KP_TASK_REGRESSION ? "ridge" : "logistic", c->sub_keys ? c->sub_keys : "");
    kp_config *cfg = fx_config(dir, yaml);
    fx_data d = {c->task, c->n_out, c->task == KP_TASK_REGRESSION ? "[]" : c->classes, 2,
                 c->n_test, 1, X, Xt, y, c->ids};
    fx_dataset(cfg, "prep", &d);
    write_preds(cfg, c);
    return cfg;
}

/* Runs the case's submit stage; returns the status, the file text in *out
 * (NULL if none) and the message in err. */
static int run_case(const scase *c, char **out, char *err, size_t errlen)
{
    char *dir = kp_test_tmpdir();
    kp_config *cfg = setup(dir, c);
    int rc = fx_run(cfg, "sub", -1, NULL, err, errlen);
    char *path = kp_test_join(dir, "out/sub.csv"), *copy = fx_path(cfg, "sub", "submission.csv");
    *out = kp_test_read(path);
    if (*out) {
        char *again = kp_test_read(copy);
        assert_non_null(again);
        assert_string_equal(again, *out);   /* the run-dir copy is the same file */
        free(again);
    }
    free(path);
    free(copy);
    kp_config_free(cfg);
    free(dir);
    return rc;
}

/* Runs a case that must succeed and compares the file with want. */
static void expect_file(const scase *c, const char *want)
{
    char err[KP_ERRLEN] = "", *got = NULL;
    int rc = run_case(c, &got, err, sizeof err);
    if (rc)
        print_error("%s\n", err);
    assert_int_equal(rc, 0);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static const char *const abc[] = {"a", "b", "c"};
static const float binary_test[] = {0.25f, 0.5f, 0.75f};

static void test_submit_follows_the_sample_id_order_and_header(void **state)
{
    (void)state;
    scase c = {KP_TASK_BINARY, 1, "[\"B\",\"M\"]", "diagnosis", NULL,
               "id,diagnosis\nc,0.5\na,0.5\nb,0.5\n", 3, abc, binary_test, NULL, NULL};
    expect_file(&c, "id,diagnosis\nc,0.75\na,0.25\nb,0.5\n");
}

static void test_submit_binary_label_format_writes_class_labels(void **state)
{
    (void)state;
    scase c = {KP_TASK_BINARY, 1, "[\"B\",\"M\"]", "diagnosis", ", format: label",
               "id,diagnosis\na,x\nb,x\nc,x\n", 3, abc, binary_test, NULL, NULL};
    expect_file(&c, "id,diagnosis\na,B\nb,M\nc,M\n");
    c.sub_keys = ", format: label, threshold: 0.6";
    expect_file(&c, "id,diagnosis\na,B\nb,B\nc,M\n");
}

static void test_submit_multiclass_class_columns_get_probabilities(void **state)
{
    (void)state;
    static const float p[] = {0.25f, 0.5f, 0.25f, 0.125f, 0.125f, 0.75f};
    scase c = {KP_TASK_MULTICLASS, 3, "[\"class_0\",\"class_1\",\"class_2\"]", "cultivar", NULL,
               "id,class_0,class_1,class_2\nb,0,0,0\na,0,0,0\n", 2, abc, p, NULL, NULL};
    expect_file(&c, "id,class_0,class_1,class_2\nb,0.125,0.125,0.75\na,0.25,0.5,0.25\n");
}

static void test_submit_multiclass_target_column_gets_the_most_probable_label(void **state)
{
    (void)state;
    static const float p[] = {0.25f, 0.5f, 0.25f, 0.125f, 0.125f, 0.75f};
    scase c = {KP_TASK_MULTICLASS, 3, "[\"x,1\",\"y\",\"z\"]", "cultivar", NULL,
               "id,cultivar\na,?\nb,?\n", 2, abc, p, NULL, NULL};
    expect_file(&c, "id,cultivar\na,y\nb,z\n");
    c.classes = "[\"x\",\"y,1\",\"z\"]";
    expect_file(&c, "id,cultivar\na,\"y,1\"\nb,z\n");   /* a label with a comma is quoted */
}

static void test_submit_multilabel_tags_use_the_thresholds(void **state)
{
    (void)state;
    static const float p[] = {0.6f, 0.3f, 0.8f, 0.1f, 0.1f, 0.1f};
    static const float th[] = {0.5f, 0.2f, 0.9f};
    scase c = {KP_TASK_MULTILABEL, 3, "[\"cloudy\",\"haze\",\"road\"]", "tags", NULL,
               "id,tags\na,\nb,\n", 2, abc, p, th, NULL};
    expect_file(&c, "id,tags\na,cloudy haze\nb,\n");   /* the predictions' thresholds */
    c.sub_keys = ", threshold: 0.7";
    expect_file(&c, "id,tags\na,road\nb,\n");           /* the stage's threshold wins */
    c.thresholds = NULL;
    c.sub_keys = NULL;
    expect_file(&c, "id,tags\na,cloudy road\nb,\n");    /* the competition's 0.5 */
}

static void test_submit_multilabel_tags_need_a_probability_above_the_threshold(void **state)
{
    (void)state;
    /* thresholds are searched for the metrics' decision p > t: a tie is no tag */
    static const float p[] = {0.25f, 0.5f, 0.75f};
    static const float th[] = {0.25f, 0.49f, 0.75f};
    scase c = {KP_TASK_MULTILABEL, 3, "[\"cloudy\",\"haze\",\"road\"]", "tags", NULL,
               "id,tags\na,\n", 1, abc, p, th, NULL};
    expect_file(&c, "id,tags\na,haze\n");
}

static void test_submit_regression_writes_nine_significant_digits(void **state)
{
    (void)state;
    static const float p[] = {1.0f / 3, 1234567.0f, -2.5f};
    scase c = {KP_TASK_REGRESSION, 1, "[]", "progression", NULL,
               "id,progression\na,0\nb,0\nc,0\n", 3, abc, p, NULL, NULL};
    expect_file(&c, "id,progression\na,0.333333343\nb,1234567\nc,-2.5\n");
}

static void test_submit_sample_id_not_in_test_names_file_line_and_id(void **state)
{
    (void)state;
    char err[KP_ERRLEN] = "", *got = NULL;
    scase c = {KP_TASK_BINARY, 1, "[\"B\",\"M\"]", "diagnosis", NULL,
               "id,diagnosis\na,0\nzz,0\nc,0\n", 3, abc, binary_test, NULL, NULL};
    assert_int_equal(run_case(&c, &got, err, sizeof err), KP_ERR_MISMATCH);
    assert_null(got);   /* nothing written */
    assert_non_null(strstr(err, "sample.csv:3: id 'zz' (row 2) is not a test id of dataset "
                                "'prep'"));
}

static void test_submit_test_id_missing_from_sample_is_named(void **state)
{
    (void)state;
    char err[KP_ERRLEN] = "", *got = NULL;
    scase c = {KP_TASK_BINARY, 1, "[\"B\",\"M\"]", "diagnosis", NULL,
               "id,diagnosis\na,0\nc,0\n", 3, abc, binary_test, NULL, NULL};
    assert_int_equal(run_case(&c, &got, err, sizeof err), KP_ERR_MISMATCH);
    assert_null(got);
    assert_non_null(strstr(err, "test id 'b' (test row 2 of dataset 'prep') is missing from "));
    assert_non_null(strstr(err, "sample.csv"));
}

static void test_submit_duplicate_sample_id_is_an_error(void **state)
{
    (void)state;
    char err[KP_ERRLEN] = "", *got = NULL;
    scase c = {KP_TASK_BINARY, 1, "[\"B\",\"M\"]", "diagnosis", NULL,
               "id,diagnosis\na,0\nb,0\na,0\n", 3, abc, binary_test, NULL, NULL};
    assert_int_equal(run_case(&c, &got, err, sizeof err), KP_ERR_FORMAT);
    assert_null(got);
    assert_non_null(strstr(err, "sample.csv:4: id 'a' (row 3) appears twice"));
}

static void test_submit_non_finite_prediction_names_the_id(void **state)
{
    (void)state;
    char err[KP_ERRLEN] = "", *got = NULL;
    static float p[] = {0.25f, 0.5f, 0.75f};
    p[1] = NAN;
    scase c = {KP_TASK_BINARY, 1, "[\"B\",\"M\"]", "diagnosis", NULL,
               "id,diagnosis\na,0\nb,0\nc,0\n", 3, abc, p, NULL, NULL};
    assert_int_equal(run_case(&c, &got, err, sizeof err), KP_ERR_FORMAT);
    assert_null(got);
    assert_string_equal(err, "the prediction for test id 'b' is nan");
}

static void test_submit_declares_the_sample_as_input_and_two_outputs(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), want[8192];
    scase c = {KP_TASK_BINARY, 1, "[\"B\",\"M\"]", "diagnosis", NULL, "id,diagnosis\na,0\n", 1,
               abc, binary_test, NULL, NULL};
    kp_config *cfg = setup(dir, &c);
    const kp_stage *st = fx_stage(cfg, "sub");
    kp_buf b;
    kp_buf_init(&b, 0);
    assert_int_equal(st->ops->outputs(st, cfg, -1, &b), 0);
    snprintf(want, sizeof want, "%s/out/sub.csv\n%s/submission.csv\n", cfg->dir, st->dir);
    assert_string_equal(kp_buf_str(&b), want);
    kp_buf_reset(&b);
    assert_int_equal(st->ops->inputs(st, cfg, &b), 0);
    snprintf(want, sizeof want, "%s\n", cfg->comp.sample_submission);
    assert_string_equal(kp_buf_str(&b), want);
    assert_non_null(strstr(want, "sample.csv"));
    kp_buf_free(&b);
    kp_config_free(cfg);
    free(dir);
}

/* Config errors found by submit's check(). */
static const struct {
    const char *task, *model, *submit, *want;
} bad_configs[] = {
    {"regression", "ridge",
     "  sub: {type: submit, needs: [prep, lr], output: o.csv, format: label}\n",
     "stages.sub.format: a regression task has no labels"},
    {"binary", "logistic", "  sub: {type: submit, needs: [prep], output: o.csv}\n",
     "stages.sub.needs: submit stage 'sub' needs exactly one dataset stage (type preprocess) "
     "and one predictions stage (type train or stack), found 1 and 0"},
    {"binary", "logistic", "  sub: {type: submit, needs: [prep, lr]}\n", "stages.sub"},
};

static void test_submit_check_rejects_bad_stages_with_their_place(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad_configs / sizeof bad_configs[0]; i++) {
        char *dir = kp_test_tmpdir(), yaml[4096], err[KP_ERRLEN] = "";
        kp_config *cfg = NULL;
        snprintf(yaml, sizeof yaml,
                 "competition: {train: train.csv, test: test.csv, sample_submission: sample.csv, "
                 "id: id, target: y, task: %s, metric: %s, folds: {k: 2, kind: plain}}\n"
                 "stages:\n"
                 "  prep: {type: preprocess}\n"
                 "  folds: {type: folds, needs: [prep]}\n"
                 "  lr: {type: train, needs: [prep, folds], model: %s}\n%s",
                 bad_configs[i].task, bad_configs[i].task[0] == 'r' ? "rmse" : "auc",
                 bad_configs[i].model, bad_configs[i].submit);
        assert_int_equal(fx_load(dir, yaml, &cfg, err, sizeof err), KP_ERR_CONFIG);
        if (!strstr(err, bad_configs[i].want))
            print_error("case %zu: got '%s'\n", i, err);
        assert_non_null(strstr(err, bad_configs[i].want));
        assert_non_null(strstr(err, "kp.yaml:"));
        free(dir);
    }
}

/* ---- the contract and the ledger ---- */

static void test_submit_contract_failure_writes_no_file_and_no_ledger_row(void **state)
{
    (void)state;
    static const float p[] = {1.0f, -2.5f, 3.0f};
    static const struct { const char *extra, *want; } cases[] = {
        {"  submission: {min: 0}\n",
         "out/sub.csv:3:2: column 'progression' of id 'b': '-2.5' is below the minimum 0"},
        {"  submission: {columns: [id, target]}\n",
         "out/sub.csv:1: header 'id,progression' differs from the contract's 'id,target'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *dir = kp_test_tmpdir(), err[KP_ERRLEN] = "";
        scase c = {KP_TASK_REGRESSION, 1, "[]", "progression", NULL,
                   "id,progression\na,0\nb,0\nc,0\n", 3, abc, p, NULL, cases[i].extra};
        kp_config *cfg = setup(dir, &c);
        assert_int_equal(fx_run(cfg, "sub", -1, NULL, err, sizeof err), KP_ERR_FORMAT);
        const char *at = strstr(err, "out/sub.csv");
        if (!at || strcmp(at, cases[i].want) != 0)
            fail_msg("case %zu: got '%s', want '%s'", i, err, cases[i].want);
        char *out = kp_test_join(dir, "out/sub.csv"), *ledger = kp_test_join(dir, "out/ledger.csv");
        char *copy = fx_path(cfg, "sub", "submission.csv");
        assert_int_equal(access(out, F_OK), -1);      /* nothing written */
        assert_int_equal(access(copy, F_OK), -1);
        assert_int_equal(access(ledger, F_OK), -1);   /* nothing recorded */
        free(out);
        free(ledger);
        free(copy);
        kp_config_free(cfg);
        free(dir);
    }
}

static void test_submit_records_a_written_row_with_the_hashes_in_the_ledger(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), err[KP_ERRLEN] = "", cfg_hex[KP_HASH_HEXLEN];
    char sub_hex[KP_HASH_HEXLEN];
    scase c = {KP_TASK_BINARY, 1, "[\"B\",\"M\"]", "diagnosis", NULL,
               "id,diagnosis\na,0\nb,0\nc,0\n", 3, abc, binary_test, NULL,
               "  submission: {ids: sample, values: probability}\n"};
    kp_config *cfg = setup(dir, &c);
    setenv("KPIPE_NOW", "2026-11-30T12:00:00Z", 1);
    int rc = fx_run(cfg, "sub", -1, NULL, err, sizeof err);
    if (rc == 0)
        rc = fx_run(cfg, "sub", -1, NULL, err, sizeof err);   /* a second run: a second row */
    unsetenv("KPIPE_NOW");
    if (rc)
        fail_msg("%s", err);
    char *out = kp_test_join(dir, "out/sub.csv"), *ledger = kp_test_join(dir, "out/ledger.csv");
    char *text = kp_test_read(out);
    kp_hash_hex(kp_hash_bytes(text, strlen(text)), sub_hex);
    kp_hash_hex(cfg->text_hash, cfg_hex);
    kp_ledger *l = NULL;
    assert_int_equal(kp_ledger_read(ledger, &l, err, sizeof err), 0);
    assert_int_equal(kp_ledger_count(l), 2);
    const kp_ledger_row *r = kp_ledger_at(l, 1);
    assert_string_equal(r->time, "2026-11-30T12:00:00Z");
    assert_string_equal(r->event, "written");
    assert_string_equal(r->competition, "kp");   /* the config's name: kp.yaml */
    assert_string_equal(r->file, "sub.csv");
    assert_string_equal(r->config_hash, cfg_hex);
    assert_string_equal(r->prediction_hash, sub_hex);
    assert_string_equal(r->cv, "0.876543");
    assert_string_equal(r->metric, "auc");
    assert_string_equal(r->message, "");
    assert_string_equal(r->ref, "");
    kp_ledger_free(l);
    free(text);
    free(out);
    free(ledger);
    kp_config_free(cfg);
    free(dir);
}

KP_TEST_GROUP(submit)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_submit_follows_the_sample_id_order_and_header),
        cmocka_unit_test(test_submit_binary_label_format_writes_class_labels),
        cmocka_unit_test(test_submit_multiclass_class_columns_get_probabilities),
        cmocka_unit_test(test_submit_multiclass_target_column_gets_the_most_probable_label),
        cmocka_unit_test(test_submit_multilabel_tags_use_the_thresholds),
        cmocka_unit_test(test_submit_multilabel_tags_need_a_probability_above_the_threshold),
        cmocka_unit_test(test_submit_regression_writes_nine_significant_digits),
        cmocka_unit_test(test_submit_sample_id_not_in_test_names_file_line_and_id),
        cmocka_unit_test(test_submit_test_id_missing_from_sample_is_named),
        cmocka_unit_test(test_submit_duplicate_sample_id_is_an_error),
        cmocka_unit_test(test_submit_non_finite_prediction_names_the_id),
        cmocka_unit_test(test_submit_declares_the_sample_as_input_and_two_outputs),
        cmocka_unit_test(test_submit_check_rejects_bad_stages_with_their_place),
        cmocka_unit_test(test_submit_contract_failure_writes_no_file_and_no_ledger_row),
        cmocka_unit_test(test_submit_records_a_written_row_with_the_hashes_in_the_ledger),
    };
    return KP_RUN(submit, t);
}

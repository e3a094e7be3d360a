/* test_config.c - the YAML config loader and the params it fills. */
#include "kp_test.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../pipeline/config.h"
#include "../pipeline/graph.h"
#include "../stages/stage.h"
#include "../lib/err.h"

/* A valid competition block of 7 lines: in configs built on it, `stages:` is line 8. */
#define COMP "competition:\n  train: train.csv\n  test: test.csv\n  id: id\n" \
             "  target: y\n  task: binary\n  metric: auc\n"

/* Stages that pass the real stage types' checks: a dataset and folds. */
#define PREP_FOLDS "  prep: {type: preprocess, standardize: true}\n" \
                   "  folds: {type: folds, needs: [prep]}\n"

/* A command stage with a 2 x 2 matrix, fit/m=1,fold=0 ... fit/m=2,fold=1 (line 9). */
#define FIT "  fit: {type: command, run: x, outs: ['o{m}_{fold}'], matrix: {m: [1, 2], fold: [0, 1]}}\n"

/* Returns a fresh folder holding train.csv and test.csv (heap path). */
static char *fixture_dir(void)
{
    char *dir = kp_test_tmpdir();
    assert_non_null(dir);
    free(kp_test_write(dir, "train.csv", "id,x,y\n1,0.5,0\n2,1.5,1\n3,0.2,0\n4,2.5,1\n"
                                         "5,0.1,0\n6,1.9,1\n7,0.3,0\n8,2.2,1\n"));
    free(kp_test_write(dir, "test.csv", "id,x\n9,1.0\n10,0.4\n"));
    return dir;
}

/* Loads yaml as DIR/c.yaml from a fresh fixture folder; returns the status. */
static int load(const char *yaml, kp_config **cfg, char *err)
{
    char *dir = fixture_dir();
    char *path = kp_test_join(dir, "c.yaml");
    int rc = kp_config_load_string(path, yaml, strlen(yaml), cfg, err, KP_ERRLEN);
    free(path);
    free(dir);
    return rc;
}

/* Fails the test with the loader's message unless rc is 0. */
#define assert_loaded(rc, err) \
    do { if ((rc) != 0) fail_msg("load failed with %d: %s", (rc), (err)); } while (0)

/* A competition file that does not exist yet is fine when a fetch stage provides it. */
static void test_config_competition_file_may_come_from_a_fetch_stage(void **state)
{
    (void)state;
    char err[KP_ERRLEN] = "";
    kp_config *cfg = NULL;
    int rc = load("competition:\n  train: d/train.csv\n  test: test.csv\n  id: id\n  target: y\n"
                  "  task: binary\n  metric: auc\nstages:\n"
                  "  data: {type: fetch, dir: d, files: ['http://h/train.csv'], "
                  "provides: [train.csv]}\n"
                  "  prep: {type: preprocess, needs: [data]}\n", &cfg, err);
    assert_loaded(rc, err);
    assert_non_null(strstr(cfg->comp.train, "/d/train.csv"));
    kp_config_free(cfg);
}

/* A fetch dir written with a trailing slash still provides the competition's files. */
static void test_config_fetch_dir_with_trailing_slash_provides_files(void **state)
{
    (void)state;
    char err[KP_ERRLEN] = "";
    kp_config *cfg = NULL;
    int rc = load("competition:\n  train: d/train.csv\n  test: test.csv\n  id: id\n  target: y\n"
                  "  task: binary\n  metric: auc\nstages:\n"
                  "  data: {type: fetch, dir: d//, files: ['http://h/train.csv'], "
                  "provides: [train.csv]}\n"
                  "  prep: {type: preprocess, needs: [data]}\n", &cfg, err);
    assert_loaded(rc, err);
    kp_config_free(cfg);
}

/* ---- bad configs: status and message (with FILE:LINE:COL) ---- */

typedef struct bad_case {
    const char *what, *yaml;
    int status;
    const char *msg;
} bad_case;

static const bad_case bad_cases[] = {
    {"unknown top-level key", COMP "stagse:\n" PREP_FOLDS, KP_ERR_CONFIG,
     "c.yaml:8:1: unknown key 'stagse' (did you mean 'stages'?)"},
    {"unknown competition key",
     "competition:\n  train: train.csv\n  test: test.csv\n  id: id\n  target: y\n"
     "  task: binary\n  metirc: auc\nstages:\n" PREP_FOLDS,
     KP_ERR_CONFIG, "c.yaml:7:3: competition: unknown key 'metirc' (did you mean 'metric'?)"},
    {"unknown folds key", COMP "  folds: {kk: 3}\nstages:\n" PREP_FOLDS, KP_ERR_CONFIG,
     "c.yaml:8:11: competition.folds: unknown key 'kk' (did you mean 'k'?)"},
    {"unknown submission key", COMP "  submission: {colums: [id, y]}\nstages:\n" PREP_FOLDS,
     KP_ERR_CONFIG,
     "c.yaml:8:16: competition.submission: unknown key 'colums' (did you mean 'columns'?)"},
    {"submission ids not a choice", COMP "  submission: {ids: sorted}\nstages:\n" PREP_FOLDS,
     KP_ERR_CONFIG, "c.yaml:8:21: competition.submission.ids: 'sorted' is not one of "
                    "sample|set|any"},
    {"unknown stage key", COMP "stages:\n  prep:\n    type: preprocess\n    standardise: true\n",
     KP_ERR_CONFIG, "c.yaml:11:5: stages.prep: unknown key 'standardise' (did you mean 'standardize'?)"},
    {"k not a number", COMP "  folds: {k: five}\nstages:\n" PREP_FOLDS, KP_ERR_CONFIG,
     "c.yaml:8:14: competition.folds.k: expected a whole number, got 'five'"},
    {"k below its minimum", COMP "  folds: {k: 1}\nstages:\n" PREP_FOLDS, KP_ERR_CONFIG,
     "c.yaml:8:14: competition.folds.k: 1 is below the minimum 2"},
    {"bool stage key not a bool", COMP "stages:\n  prep: {type: preprocess, standardize: maybe}\n",
     KP_ERR_CONFIG, "c.yaml:9:41: stages.prep.standardize: expected true or false, got 'maybe'"},
    {"unknown task",
     "competition:\n  train: train.csv\n  test: test.csv\n  id: id\n  target: y\n"
     "  task: binery\n  metric: auc\nstages:\n" PREP_FOLDS,
     KP_ERR_CONFIG, "c.yaml:6:9: competition.task: 'binery' is not one of "
                    "binary|multiclass|regression|multilabel|segmentation (did you mean 'binary'?)"},
    {"unknown metric",
     "competition:\n  train: train.csv\n  test: test.csv\n  id: id\n  target: y\n"
     "  task: binary\n  metric: acu\nstages:\n" PREP_FOLDS,
     KP_ERR_CONFIG, "c.yaml:7:11: competition.metric: unknown metric 'acu' (did you mean 'auc'?)"},
    {"metric not for the task",
     "competition:\n  train: train.csv\n  test: test.csv\n  id: id\n  target: y\n"
     "  task: binary\n  metric: rmse\nstages:\n" PREP_FOLDS,
     KP_ERR_CONFIG, "c.yaml:7:11: competition.metric: metric 'rmse' does not apply to binary tasks"},
    {"missing competition key",
     "competition:\n  train: train.csv\n  test: test.csv\n  target: y\n"
     "  task: binary\n  metric: auc\nstages:\n" PREP_FOLDS,
     KP_ERR_CONFIG, "c.yaml:1:1: competition: missing required key 'id'"},
    {"missing stages", COMP, KP_ERR_CONFIG, "c.yaml:1:1: missing required key 'stages'"},
    {"missing stage type", COMP "stages:\n  prep: {standardize: true}\n", KP_ERR_CONFIG,
     "c.yaml:9:3: stages.prep: missing required key 'type'"},
    {"missing stage key", COMP "stages:\n" PREP_FOLDS "  m: {type: train, needs: [prep, folds]}\n",
     KP_ERR_CONFIG, "c.yaml:11:3: stages.m: missing required key 'model'"},
    {"missing train file",
     "competition:\n  train: nope.csv\n  test: test.csv\n  id: id\n  target: y\n"
     "  task: binary\n  metric: auc\nstages:\n" PREP_FOLDS,
     KP_ERR_NOTFOUND, "c.yaml:2:10: competition.train: file not found: /"},
    {"missing train file that no fetch stage provides",
     "competition:\n  train: d/nope.csv\n  test: test.csv\n  id: id\n  target: y\n"
     "  task: binary\n  metric: auc\nstages:\n"
     "  data: {type: fetch, dir: d, files: ['http://h/x.csv'], provides: [other.csv]}\n",
     KP_ERR_NOTFOUND, "c.yaml:2:10: competition.train: file not found: /"},
    {"unknown stage type", COMP "stages:\n  m: {type: trian, model: logistic}\n", KP_ERR_CONFIG,
     "c.yaml:9:13: stages.m.type: unknown stage type 'trian' (did you mean 'train'?)"},
    {"unknown need", COMP "stages:\n  prep: {type: preprocess}\n  folds: {type: folds, needs: [perp]}\n",
     KP_ERR_CONFIG, "c.yaml:10:32: stages.folds.needs: unknown stage 'perp' (did you mean 'prep'?)"},
    {"duplicate key",
     "competition:\n  train: train.csv\n  test: test.csv\n  id: id\n  id: other\n  target: y\n"
     "  task: binary\n  metric: auc\nstages:\n" PREP_FOLDS,
     KP_ERR_CONFIG, "c.yaml:5:3: competition: duplicate key 'id' (first at 4:3)"},
    {"duplicate param key", COMP "stages:\n  lr:\n    type: train\n    model: logistic\n"
     "    params: {C: 1, C: 2}\n", KP_ERR_CONFIG,
     "c.yaml:12:20: stages.lr.params: duplicate key 'C' (first at 12:14)"},
    {"YAML syntax error", "competition: [a, b\nstages: {}\n", KP_ERR_CONFIG,
     "c.yaml:2:7: YAML error: did not find expected ',' or ']'"},
    {"cycle of two", COMP "stages:\n  a: {type: command, run: x, outs: [o], needs: [b]}\n"
     "  b: {type: command, run: x, outs: [o], needs: [a]}\n", KP_ERR_CYCLE,
     "c.yaml:9:3: stages: cycle: a -> b -> a"},
    {"cycle of three", COMP "stages:\n  a: {type: command, run: x, outs: [o], needs: [c]}\n"
     "  b: {type: command, run: x, outs: [o], needs: [a]}\n  c: {type: command, run: x, outs: [o], needs: [b]}\n",
     KP_ERR_CYCLE, "c.yaml:9:3: stages: cycle: a -> c -> b -> a"},
    {"stage needing itself", COMP "stages:\n  z: {type: command, run: x, outs: [o]}\n"
     "  a: {type: command, run: x, outs: [o], needs: [z, a]}\n", KP_ERR_CYCLE,
     "c.yaml:10:3: stages: cycle: a -> a"},
    {"group folds without a group column", COMP "  folds: {kind: group}\nstages:\n" PREP_FOLDS,
     KP_ERR_CONFIG, "c.yaml:8:17: competition.folds.group: names the group column and is "
                    "required with kind: group"},
    {"group column without kind group", COMP "  folds: {group: g}\nstages:\n" PREP_FOLDS,
     KP_ERR_CONFIG, "c.yaml:8:18: competition.folds.group: is only used with kind: group"},
    {"matrix value not a list", COMP "stages:\n  lr: {type: train, model: logistic, matrix: {C: 1}}\n",
     KP_ERR_CONFIG, "c.yaml:9:50: stages.lr.matrix.C: expected a non-empty list of values"},
    {"matrix key also set", COMP "stages:\n  lr:\n    type: train\n    model: logistic\n"
     "    params: {C: 1}\n    matrix: {C: [1, 2]}\n", KP_ERR_CONFIG,
     "c.yaml:13:14: stages.lr.matrix: 'C' is also set outside the matrix"},
    {"bad stage name", COMP "stages:\n  'a b': {type: folds}\n", KP_ERR_CONFIG,
     "c.yaml:9:3: stages: bad stage name 'a b'"},
    {"stage not a mapping", COMP "stages:\n  prep: preprocess\n", KP_ERR_CONFIG,
     "c.yaml:9:9: stages.prep: expected a mapping"},
    {"root not a mapping", "- competition\n- stages\n", KP_ERR_CONFIG,
     "c.yaml:1:1: the config must be a mapping"},
    {"selection of an unknown stage", COMP "stages:\n" FIT
     "  merge: {type: command, run: x, outs: [o], needs: ['fitt/m=1']}\n", KP_ERR_CONFIG,
     "c.yaml:10:53: stages.merge.needs: unknown stage 'fitt' (did you mean 'fit'?)"},
    {"selection by an unknown matrix key", COMP "stages:\n" FIT
     "  merge: {type: command, run: x, outs: [o], needs: ['fit/mm=1']}\n", KP_ERR_CONFIG,
     "c.yaml:10:53: stages.merge.needs: stage 'fit' has no matrix key 'mm' (did you mean 'm'?)"},
    {"selection from a stage without a matrix", COMP "stages:\n" FIT
     "  one: {type: command, run: x, outs: [p]}\n"
     "  merge: {type: command, run: x, outs: [o], needs: ['one/m=1']}\n", KP_ERR_CONFIG,
     "c.yaml:11:53: stages.merge.needs: stage 'one' has no matrix to select 'm=1' from"},
    {"selection matching nothing", COMP "stages:\n" FIT
     "  merge: {type: command, run: x, outs: [o], needs: ['fit/m=7']}\n", KP_ERR_CONFIG,
     "c.yaml:10:53: stages.merge.needs: 'fit/m=7' matches no stage"},
    {"selection matching nothing for one expansion", COMP "stages:\n" FIT
     "  merge: {type: command, run: x, outs: ['o{m}'], needs: ['fit/m={m}'],\n"
     "          matrix: {m: [1, 2, 3]}}\n", KP_ERR_CONFIG,
     "c.yaml:10:58: stages.merge.needs: 'fit/m=3' (from 'fit/m={m}') matches no stage"},
    {"selection placeholder not in the stage's matrix", COMP "stages:\n" FIT
     "  merge: {type: command, run: x, outs: ['o{m}'], needs: ['fit/m={n}'],\n"
     "          matrix: {m: [1, 2]}}\n", KP_ERR_CONFIG,
     "c.yaml:10:58: stages.merge.needs: placeholder {n} is not a key of this stage's matrix"},
    {"selection placeholder in a stage without a matrix", COMP "stages:\n" FIT
     "  merge: {type: command, run: x, outs: [o], needs: ['fit/m={m}']}\n", KP_ERR_CONFIG,
     "c.yaml:10:53: stages.merge.needs: placeholder {m}: this stage has no matrix"},
    {"selection without KEY=VALUE", COMP "stages:\n" FIT
     "  merge: {type: command, run: x, outs: [o], needs: ['fit/m']}\n", KP_ERR_CONFIG,
     "c.yaml:10:53: stages.merge.needs: 'fit/m': expected BASE/KEY=VALUE,KEY=VALUE"},
};

static void test_config_bad_configs_fail_with_status_and_located_message(void **state)
{
    (void)state;
    int failed = 0;
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case *bc = &bad_cases[i];
        kp_config *sentinel = (kp_config *)&bad_cases[i], *cfg = sentinel;
        char err[KP_ERRLEN] = "";
        int rc = load(bc->yaml, &cfg, err);
        if (rc != bc->status || !strstr(err, bc->msg) || cfg != sentinel) {
            print_error("case '%s': status %d (want %d)%s, message\n  %s\nwant it to contain\n  %s\n",
                        bc->what, rc, bc->status, cfg != sentinel ? ", output touched" : "", err,
                        bc->msg);
            failed++;
        }
    }
    assert_int_equal(failed, 0);
}

/* ---- good configs ---- */

static void test_config_matrix_expands_in_key_order_last_key_fastest(void **state)
{
    (void)state;
    kp_config *cfg = NULL;
    char err[KP_ERRLEN] = "";
    int rc = load(COMP "stages:\n" PREP_FOLDS
                  "  lr:\n    type: train\n    needs: [prep, folds]\n    model: logistic\n"
                  "    matrix: {C: [0.10, 1], seed: [1, 2]}\n", &cfg, err);
    assert_loaded(rc, err);
    static const char *const names[] = {"lr/C=0.10,seed=1", "lr/C=0.10,seed=2",
                                        "lr/C=1,seed=1", "lr/C=1,seed=2"};
    assert_int_equal(cfg->n_stages, 6);
    for (int i = 0; i < 4; i++) {
        const kp_stage *st = &cfg->stages[2 + i];
        assert_string_equal(st->name, names[i]);
        assert_string_equal(st->base, "lr");
        assert_string_equal(st->type, "train");
        /* C is not a train key, so it is a model param; seed is a train key. */
        assert_string_equal(kp_params_get(st->params, "C"), i < 2 ? "0.10" : "1");
        assert_false(kp_params_has(st->opts, "C"));
        assert_int_equal(kp_params_int(st->opts, "seed", -1), i % 2 + 1);
        assert_false(kp_params_has(st->params, "seed"));
        assert_int_equal(st->n_needs, 2);
        assert_int_equal(st->needs[0], 0);
        assert_int_equal(st->needs[1], 1);
    }
    assert_int_equal(kp_config_find_stage(cfg, "lr/C=1,seed=2"), 5);
    assert_int_equal(kp_config_find_stage(cfg, "lr"), -1);
    kp_config_free(cfg);
}

static void test_config_needs_on_matrix_base_names_every_expansion(void **state)
{
    (void)state;
    kp_config *cfg = NULL;
    char err[KP_ERRLEN] = "";
    int rc = load(COMP "stages:\n" PREP_FOLDS
                  "  lr:\n    type: train\n    needs: [prep, folds]\n    model: logistic\n"
                  "    matrix: {C: [0.1, 1, 10]}\n"
                  "  one: {type: command, run: 'true', outs: [o], needs: ['lr/C=10']}\n"
                  "  all: {type: command, run: 'true', outs: [o], needs: [lr, one, lr]}\n", &cfg, err);
    assert_loaded(rc, err);
    int all = kp_config_find_stage(cfg, "all"), one = kp_config_find_stage(cfg, "one");
    assert_int_equal(cfg->stages[one].n_needs, 1);
    assert_int_equal(cfg->stages[one].needs[0], kp_config_find_stage(cfg, "lr/C=10"));
    assert_int_equal(cfg->stages[all].n_needs, 4);   /* the repeated lr is listed once */
    for (int i = 0; i < 3; i++)
        assert_string_equal(cfg->stages[cfg->stages[all].needs[i]].base, "lr");
    assert_int_equal(cfg->stages[all].needs[3], one);
    kp_config_free(cfg);
}

/* Asserts that stage `name` of cfg needs exactly the stages named in want, in that order. */
static void assert_needs(const kp_config *cfg, const char *name, const char *const *want, int n)
{
    int i = kp_config_find_stage(cfg, name);
    assert_true(i >= 0);
    const kp_stage *st = &cfg->stages[i];
    if (st->n_needs != n)
        fail_msg("%s needs %d stages, want %d", name, st->n_needs, n);
    for (int j = 0; j < n; j++)
        assert_string_equal(cfg->stages[st->needs[j]].name, want[j]);
}

static void test_config_needs_selection_with_placeholder_takes_own_matrix_value(void **state)
{
    (void)state;
    kp_config *cfg = NULL;
    char err[KP_ERRLEN] = "";
    int rc = load(COMP "stages:\n" FIT
                  "  merge: {type: command, run: x, outs: ['o{m}'], needs: ['fit/m={m}'],\n"
                  "          matrix: {m: [1, 2]}}\n", &cfg, err);
    assert_loaded(rc, err);
    static const char *const m1[] = {"fit/m=1,fold=0", "fit/m=1,fold=1"};
    static const char *const m2[] = {"fit/m=2,fold=0", "fit/m=2,fold=1"};
    assert_needs(cfg, "merge/m=1", m1, 2);
    assert_needs(cfg, "merge/m=2", m2, 2);
    kp_config_free(cfg);
}

static void test_config_needs_selection_names_some_keys_in_any_order(void **state)
{
    (void)state;
    kp_config *cfg = NULL;
    char err[KP_ERRLEN] = "";
    int rc = load(COMP "stages:\n" FIT
                  "  folds1: {type: command, run: x, outs: [a], needs: ['fit/fold=1']}\n"
                  "  one: {type: command, run: x, outs: [b], needs: ['fit/fold=0,m=2', fit]}\n",
                  &cfg, err);
    assert_loaded(rc, err);
    static const char *const folds1[] = {"fit/m=1,fold=1", "fit/m=2,fold=1"};
    /* the full name first, then the rest of fit in matrix order, each once */
    static const char *const one[] = {"fit/m=2,fold=0", "fit/m=1,fold=0", "fit/m=1,fold=1",
                                      "fit/m=2,fold=1"};
    assert_needs(cfg, "folds1", folds1, 2);
    assert_needs(cfg, "one", one, 4);
    kp_config_free(cfg);
}

static void test_config_needs_selection_compares_values_as_written(void **state)
{
    (void)state;
    kp_config *cfg = NULL;
    char err[KP_ERRLEN] = "";
    int rc = load(COMP "stages:\n"
                  "  fit: {type: command, run: x, outs: ['o{C}'], matrix: {C: [0.10, 1]}}\n"
                  "  use: {type: command, run: x, outs: [u], needs: ['fit/C=0.10']}\n"
                  "  bad: {type: command, run: x, outs: [v], needs: ['fit/C=0.1']}\n",
                  &cfg, err);
    assert_int_equal(rc, KP_ERR_CONFIG);
    assert_non_null(strstr(err, "c.yaml:11:51: stages.bad.needs: 'fit/C=0.1' matches no stage"));
    kp_config_free(cfg);
}

/* Loads yaml and builds its task graph into *g (the config in *cfg); asserts both work. */
static void load_graph(const char *yaml, kp_config **cfg, kp_graph **g)
{
    char err[KP_ERRLEN] = "";
    int rc = load(yaml, cfg, err);
    assert_loaded(rc, err);
    rc = kp_graph_build(*cfg, g, err, sizeof err);
    assert_loaded(rc, err);
}

static void test_graph_input_from_needs_and_deps_is_listed_once(void **state)
{
    (void)state;
    kp_config *cfg = NULL;
    kp_graph *g = NULL;
    load_graph(COMP "stages:\n"
               "  a: {type: command, run: x, outs: [a.txt, a2.txt]}\n"
               "  b: {type: command, run: x, deps: [a2.txt, train.csv, a.txt], outs: [b.txt],\n"
               "      needs: [a]}\n", &cfg, &g);
    const kp_task *b = kp_graph_task(g, kp_graph_find(g, "b"));
    assert_int_equal(b->n_inputs, 3);   /* a's outputs in their order, then train.csv */
    assert_non_null(strstr(b->inputs[0], "/a.txt"));
    assert_non_null(strstr(b->inputs[1], "/a2.txt"));
    assert_non_null(strstr(b->inputs[2], "/train.csv"));
    assert_false(b->external[0] || b->external[1]);
    assert_true(b->external[2]);
    kp_graph_free(g);
    kp_config_free(cfg);
}

static void test_graph_reading_a_file_of_a_need_of_a_need_is_allowed(void **state)
{
    (void)state;
    kp_config *cfg = NULL;
    kp_graph *g = NULL;
    load_graph(COMP "stages:\n"
               "  a: {type: command, run: x, outs: [a.txt]}\n"
               "  b: {type: command, run: x, outs: [b.txt], needs: [a]}\n"
               "  c: {type: command, run: x, deps: [a.txt], outs: [c.txt], needs: [b]}\n",
               &cfg, &g);
    const kp_task *c = kp_graph_task(g, kp_graph_find(g, "c"));
    assert_int_equal(c->n_inputs, 2);   /* b.txt from its need, a.txt from its deps */
    assert_non_null(strstr(c->inputs[1], "/a.txt"));
    assert_false(c->external[1]);
    kp_graph_free(g);
    kp_config_free(cfg);
}

static void test_graph_param_text_holds_the_competition_and_command(void **state)
{
    (void)state;
    kp_config *cfg = NULL;
    kp_graph *g = NULL;
    load_graph(COMP "stages:\n"
               "  a: {type: command, run: 'cp {config_dir}/x o{m}', outs: ['o{m}'],\n"
               "      matrix: {m: [1, 2]}}\n", &cfg, &g);
    for (int i = 0; i < 2; i++) {
        const char *text = kp_graph_task(g, i)->param_text;
        char cmd[64];
        snprintf(cmd, sizeof cmd, "[command]\ncp {config_dir}/x o%d\n", i + 1);
        assert_non_null(strstr(text, "[opts]\nouts=[o{m}]\nrun=cp {config_dir}/x o{m}\n"));
        assert_non_null(strstr(text, "[competition]\nbeta=1\n"));
        assert_non_null(strstr(text, "\nmetric=auc\n"));
        assert_non_null(strstr(text, cmd));
    }
    kp_graph_free(g);
    kp_config_free(cfg);
}

static void test_config_paths_resolve_against_the_config_folder(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), real[PATH_MAX], want[PATH_MAX + 64];
    assert_non_null(realpath(dir, real));
    free(kp_test_write(dir, "data/train.csv", "id,y\n1,0\n2,1\n3,0\n4,1\n"));
    free(kp_test_write(dir, "data/test.csv", "id\n5\n"));
    char *path = kp_test_write(dir, "cfg/my.yml",
        "competition:\n  train: ../data/train.csv\n  test: ./../data//test.csv\n  id: id\n"
        "  target: y\n  task: binary\n  metric: auc\nstages:\n  prep: {type: preprocess}\n");
    kp_config *cfg = NULL;
    char err[KP_ERRLEN] = "";
    int rc = kp_config_load(path, &cfg, err, sizeof err);
    assert_loaded(rc, err);
    snprintf(want, sizeof want, "%s/cfg", real);
    assert_string_equal(cfg->dir, want);
    snprintf(want, sizeof want, "%s/data/train.csv", real);
    assert_string_equal(cfg->comp.train, want);
    snprintf(want, sizeof want, "%s/data/test.csv", real);
    assert_string_equal(cfg->comp.test, want);
    snprintf(want, sizeof want, "%s/cfg/runs/my", real);
    assert_string_equal(cfg->run_dir, want);
    snprintf(want, sizeof want, "%s/cfg/runs/my/prep", real);
    assert_string_equal(cfg->stages[0].dir, want);
    char out[PATH_MAX];
    assert_int_equal(kp_config_path(cfg, "/abs/x.csv", out, sizeof out), 0);
    assert_string_equal(out, "/abs/x.csv");
    kp_config_free(cfg);
    free(path);
    free(dir);
}

static void test_config_run_dir_is_relative_to_the_config_folder(void **state)
{
    (void)state;
    kp_config *cfg = NULL;
    char err[KP_ERRLEN] = "", want[PATH_MAX + 64];
    int rc = load(COMP "run_dir: out/../runs2\nstages:\n  prep: {type: preprocess}\n", &cfg, err);
    assert_loaded(rc, err);
    snprintf(want, sizeof want, "%s/runs2", cfg->dir);
    assert_string_equal(cfg->run_dir, want);
    kp_config_free(cfg);
}

static void test_config_defaults_are_filled(void **state)
{
    (void)state;
    kp_config *cfg = NULL;
    char err[KP_ERRLEN] = "";
    int rc = load(COMP "stages:\n" PREP_FOLDS
                  "  lr: {type: train, needs: [prep, folds], model: logistic}\n", &cfg, err);
    assert_loaded(rc, err);
    const kp_competition *m = &cfg->comp;
    assert_string_equal(m->name, "c");              /* the config's file name */
    assert_int_equal(m->folds.k, 5);
    assert_int_equal(m->folds.kind, KP_FOLDS_STRATIFIED);
    assert_int_equal(m->folds.seed, 42);
    assert_int_equal(m->folds.repeats, 1);
    assert_null(m->folds.group);
    assert_null(m->sample_submission);
    assert_true(m->beta == 1.0 && m->threshold == 0.5);
    assert_int_equal(m->task, KP_TASK_BINARY);
    assert_string_equal(m->metric, "auc");
    assert_int_equal(m->n_targets, 1);
    assert_string_equal(m->targets[0], "y");
    const kp_stage *lr = &cfg->stages[kp_config_find_stage(cfg, "lr")];
    assert_string_equal(kp_params_get(lr->opts, "seed"), "0");  /* train's seed default */
    kp_config_free(cfg);
}

static void test_config_competition_values_are_read(void **state)
{
    (void)state;
    kp_config *cfg = NULL;
    char err[KP_ERRLEN] = "";
    int rc = load("competition:\n  name: comp\n  train: train.csv\n  test: test.csv\n"
                  "  sample_submission: test.csv\n  id: id\n  target: [x, y]\n"
                  "  task: multilabel\n  metric: auc\n  beta: 2\n  threshold: 0.3\n"
                  "  folds: {k: 3, kind: group, group: x, seed: 7, repeats: 2}\n"
                  "stages:\n  prep: {type: preprocess}\n", &cfg, err);
    assert_loaded(rc, err);
    const kp_competition *m = &cfg->comp;
    assert_string_equal(m->name, "comp");
    assert_non_null(strstr(m->sample_submission, "/test.csv"));
    assert_int_equal(m->n_targets, 2);
    assert_string_equal(m->targets[1], "y");
    assert_int_equal(m->task, KP_TASK_MULTILABEL);
    assert_true(m->beta == 2.0 && m->threshold == 0.3);
    assert_int_equal(m->folds.k, 3);
    assert_int_equal(m->folds.kind, KP_FOLDS_GROUP);
    assert_string_equal(m->folds.group, "x");
    assert_int_equal(m->folds.seed, 7);
    assert_int_equal(m->folds.repeats, 2);
    kp_config_free(cfg);
}

static void test_config_competition_canonical_changes_with_folds(void **state)
{
    (void)state;
    kp_config *a = NULL, *b = NULL;
    char err[KP_ERRLEN] = "";
    assert_loaded(load(COMP "stages:\n  prep: {type: preprocess}\n", &a, err), err);
    assert_loaded(load(COMP "  folds: {k: 4}\nstages:\n  prep: {type: preprocess}\n", &b, err), err);
    kp_buf x, y;
    kp_buf_init(&x, 0);
    kp_buf_init(&y, 0);
    assert_int_equal(kp_config_competition_canonical(a, &x), 0);
    assert_int_equal(kp_config_competition_canonical(b, &y), 0);
    assert_non_null(strstr(kp_buf_str(&x), "\nfolds.k=5\nfolds.kind=stratified\n"));
    assert_non_null(strstr(kp_buf_str(&x), "\ntarget=[y]\ntask=binary\n"));
    assert_non_null(strstr(kp_buf_str(&y), "\nfolds.k=4\n"));
    kp_buf_free(&x);
    kp_buf_free(&y);
    kp_config_free(a);
    kp_config_free(b);
}

static void test_config_submission_block_is_validated_and_hashed_only_when_present(void **state)
{
    (void)state;
    kp_config *a = NULL, *b = NULL;
    char err[KP_ERRLEN] = "";
    assert_loaded(load(COMP "stages:\n  prep: {type: preprocess}\n", &a, err), err);
    assert_loaded(load(COMP "  submission: {columns: [id, y], ids: set}\n"
                       "stages:\n  prep: {type: preprocess}\n", &b, err), err);
    assert_null(a->comp.submission);
    assert_string_equal(kp_params_get(b->comp.submission, "ids"), "set");
    assert_string_equal(kp_params_get(b->comp.submission, "values"), "auto");   /* default */
    kp_buf x, y;
    kp_buf_init(&x, 0);
    kp_buf_init(&y, 0);
    assert_int_equal(kp_config_competition_canonical(a, &x), 0);
    assert_int_equal(kp_config_competition_canonical(b, &y), 0);
    /* without the block, the text (and so every cache key) is what it always was */
    assert_string_equal(kp_buf_str(&x), "beta=1\nfolds.group=\nfolds.k=5\nfolds.kind=stratified\n"
                        "folds.repeats=1\nfolds.seed=42\nid=id\nmetric=auc\nname=c\n"
                        "target=[y]\ntask=binary\nthreshold=0.5\n");
    assert_int_equal(strncmp(kp_buf_str(&y), kp_buf_str(&x), x.len), 0);
    assert_string_equal(kp_buf_str(&y) + x.len,
                        "submission={\ncolumns=[id,y]\nids=set\nvalues=auto\n}\n");
    kp_buf_free(&x);
    kp_buf_free(&y);
    kp_config_free(a);
    kp_config_free(b);
}

static void test_config_missing_file_is_an_io_error(void **state)
{
    (void)state;
    kp_config *cfg = NULL;
    char err[KP_ERRLEN] = "";
    assert_int_equal(kp_config_load("/nonexistent/kp.yaml", &cfg, err, sizeof err), KP_ERR_IO);
    assert_non_null(strstr(err, "/nonexistent/kp.yaml: cannot open"));
    assert_null(cfg);
}

/* ---- params ---- */

static void test_config_suggest_finds_near_typos_only(void **state)
{
    (void)state;
    static const char *const words[] = {"stages", "competition", "run_dir"};
    assert_string_equal(kp_suggest("stagse", words, 3), "stages");
    assert_string_equal(kp_suggest("competiton", words, 3), "competition");
    assert_null(kp_suggest("model", words, 3));
}

static const kp_keyspec spec[] = {
    {"n", KP_PT_INT, "3", NULL, 1, 10, ""},
    {"mode", KP_PT_ENUM, "fast", "fast|slow", 0, 0, ""},
    {"cols", KP_PT_LIST, "", NULL, 0, 0, ""},
    {"name", KP_PT_STRING, NULL, NULL, 0, 0, ""},
    {NULL, 0, NULL, NULL, 0, 0, NULL},
};

static void test_config_params_validate_fills_defaults_and_keeps_given(void **state)
{
    (void)state;
    kp_params *p = kp_params_create();
    char err[KP_ERRLEN] = "";
    assert_int_equal(kp_params_set(p, "name", "x", 2, 3), 0);
    assert_int_equal(kp_params_set(p, "n", "7", 3, 3), 0);
    assert_int_equal(kp_params_validate(p, spec, "f.yaml", "blk", err, sizeof err), 0);
    assert_int_equal(kp_params_int(p, "n", 0), 7);
    assert_string_equal(kp_params_str(p, "mode", NULL), "fast");
    assert_false(kp_params_has(p, "cols"));         /* "" default: stays absent */
    int line, col;
    kp_params_where(p, "n", &line, &col);
    assert_true(line == 3 && col == 3);
    kp_params_free(p);
}

static void test_config_params_validate_names_file_place_and_key(void **state)
{
    (void)state;
    kp_params *p = kp_params_create();
    char err[KP_ERRLEN] = "";
    assert_int_equal(kp_params_set(p, "name", "x", 1, 1), 0);
    assert_int_equal(kp_params_set(p, "mode", "slwo", 4, 9), 0);
    assert_int_equal(kp_params_validate(p, spec, "f.yaml", "blk", err, sizeof err), KP_ERR_CONFIG);
    assert_string_equal(err, "f.yaml:4:9: blk.mode: 'slwo' is not one of fast|slow "
                             "(did you mean 'slow'?)");
    kp_params_free(p);
    p = kp_params_create();
    assert_int_equal(kp_params_set(p, "nn", "1", 5, 2), 0);
    assert_int_equal(kp_params_validate(p, spec, "f.yaml", "blk", err, sizeof err), KP_ERR_CONFIG);
    assert_string_equal(err, "f.yaml:5:2: blk: unknown key 'nn' (did you mean 'n'?)");
    kp_params_free(p);
}

static void test_config_params_list_and_canonical_sorted(void **state)
{
    (void)state;
    kp_params *p = kp_params_create();
    const char *const items[] = {"a", "b,c"};
    const char *const *got;
    int n;
    assert_int_equal(kp_params_set(p, "z", "1", 0, 0), 0);
    assert_int_equal(kp_params_set_list(p, "cols", items, 2, 0, 0), 0);
    assert_int_equal(kp_params_set(p, "one", "x", 0, 0), 0);
    assert_int_equal(kp_params_get_list(p, "one", &got, &n), 0);
    assert_true(n == 1 && strcmp(got[0], "x") == 0);
    assert_null(kp_params_get(p, "cols"));
    kp_params *c = kp_params_clone(p);
    kp_params_free(p);
    kp_buf b;
    kp_buf_init(&b, 0);
    assert_int_equal(kp_params_canonical(c, &b), 0);
    assert_string_equal(kp_buf_str(&b), "cols=[a,b\\,c]\none=x\nz=1\n");
    kp_buf_free(&b);
    kp_params_free(c);
}

KP_TEST_GROUP(config)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_config_competition_file_may_come_from_a_fetch_stage),
        cmocka_unit_test(test_config_fetch_dir_with_trailing_slash_provides_files),
        cmocka_unit_test(test_config_bad_configs_fail_with_status_and_located_message),
        cmocka_unit_test(test_config_matrix_expands_in_key_order_last_key_fastest),
        cmocka_unit_test(test_config_needs_on_matrix_base_names_every_expansion),
        cmocka_unit_test(test_config_needs_selection_with_placeholder_takes_own_matrix_value),
        cmocka_unit_test(test_config_needs_selection_names_some_keys_in_any_order),
        cmocka_unit_test(test_config_needs_selection_compares_values_as_written),
        cmocka_unit_test(test_graph_input_from_needs_and_deps_is_listed_once),
        cmocka_unit_test(test_graph_reading_a_file_of_a_need_of_a_need_is_allowed),
        cmocka_unit_test(test_graph_param_text_holds_the_competition_and_command),
        cmocka_unit_test(test_config_paths_resolve_against_the_config_folder),
        cmocka_unit_test(test_config_run_dir_is_relative_to_the_config_folder),
        cmocka_unit_test(test_config_defaults_are_filled),
        cmocka_unit_test(test_config_competition_values_are_read),
        cmocka_unit_test(test_config_competition_canonical_changes_with_folds),
        cmocka_unit_test(test_config_submission_block_is_validated_and_hashed_only_when_present),
        cmocka_unit_test(test_config_missing_file_is_an_io_error),
        cmocka_unit_test(test_config_suggest_finds_near_typos_only),
        cmocka_unit_test(test_config_params_validate_fills_defaults_and_keeps_given),
        cmocka_unit_test(test_config_params_validate_names_file_place_and_key),
        cmocka_unit_test(test_config_params_list_and_canonical_sorted),
    };
    return KP_RUN(config, t);
}

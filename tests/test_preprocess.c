/* test_preprocess.c - the preprocess stage and the dataset artifact. */
#include "kp_test.h"
#include "../stages/preprocess.h"
#include "../stages/artifact.h"
#include "../lib/err.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One run of preprocess on inline CSVs. */
typedef struct run {
    char *dir, *train, *test, *out;
    char *targets[4];
    kp_competition comp;
    kp_params *opts;
    char err[KP_ERRLEN];
    char *log;
    kp_dataset *d;
} run;

static void run_init(run *r, const char *train, const char *test, kp_task_kind task,
                     const char *target)
{
    memset(r, 0, sizeof *r);
    r->dir = kp_test_tmpdir();
    r->train = kp_test_write(r->dir, "train.csv", train);
    r->test = kp_test_write(r->dir, "test.csv", test);
    r->out = kp_test_join(r->dir, "prep/dataset.safetensors");
    r->targets[0] = (char *)target;
    r->comp = (kp_competition){.name = "t", .train = r->train, .test = r->test, .id = "id",
                               .targets = r->targets, .n_targets = 1, .task = task};
    r->comp.folds.k = 2;
    r->opts = kp_params_create();
}

static void opt(run *r, const char *key, const char *value)
{
    assert_int_equal(kp_params_set(r->opts, key, value, 1, 1), 0);
}

/* Runs preprocess; on success opens the dataset into r->d. Returns the status. */
static int run_build(run *r)
{
    size_t len = 0;
    FILE *log = open_memstream(&r->log, &len);
    int rc = kp_preprocess_build(&r->comp, r->opts, r->out, log, r->err, sizeof r->err);
    fclose(log);
    if (rc == 0 && kp_dataset_open(r->out, &r->d, r->err, sizeof r->err) != 0)
        fail_msg("reopen: %s", r->err);
    return rc;
}

static void run_ok(run *r)
{
    if (run_build(r) != 0)
        fail_msg("preprocess failed: %s", r->err);
}

static void run_free(run *r)
{
    kp_dataset_close(r->d);
    kp_params_free(r->opts);
    free(r->dir);
    free(r->train);
    free(r->test);
    free(r->out);
    free(r->log);
}

static void assert_near(double a, double b)
{
    if (fabs(a - b) > 1e-5 * (1 + fabs(b)))
        fail_msg("%.9g != %.9g", a, b);
}

/* Asserts feature column named `name` exists and returns its index. */
static int feature(const kp_dataset *d, const char *name)
{
    for (int i = 0; i < d->n_features; i++)
        if (strcmp(d->features[i], name) == 0)
            return i;
    fail_msg("no feature '%s'", name);
    return -1;
}

static float xtr(const kp_dataset *d, int64_t r, int c) { return d->X_train[r * d->n_feat + c]; }
static float xte(const kp_dataset *d, int64_t r, int c) { return d->X_test[r * d->n_feat + c]; }

/* ---- features ---- */

static void test_preprocess_numeric_features_binary_string_classes(void **state)
{
    (void)state;
    run r;
    run_init(&r, "id,a,b,diagnosis\nx3,1.5,2,M\nx1,2.5,-1e3,B\nx2,0,7,M\n",
             "id,b,a\nt9,1,2\nt0,3,4\n", KP_TASK_BINARY, "diagnosis");
    run_ok(&r);
    kp_dataset *d = r.d;
    assert_int_equal(d->n_train, 3);
    assert_int_equal(d->n_test, 2);
    assert_int_equal(d->n_feat, 2);
    assert_string_equal(d->features[0], "a");
    assert_string_equal(d->features[1], "b");
    assert_int_equal(d->pb.task, KP_TASK_BINARY);
    assert_int_equal(d->pb.n_out, 1);
    assert_int_equal(d->n_classes, 2);
    assert_string_equal(d->classes[0], "B");
    assert_string_equal(d->classes[1], "M");   /* the positive class is the last */
    float y[3] = {1, 0, 1};
    assert_memory_equal(d->y, y, sizeof y);
    assert_true(xtr(d, 1, 1) == -1000.0f);
    assert_true(xte(d, 0, 0) == 2.0f && xte(d, 0, 1) == 1.0f);   /* test columns by name */
    assert_string_equal(d->id_column, "id");
    assert_null(d->groups);
    run_free(&r);
}

static void test_preprocess_ids_kept_as_strings_in_file_order(void **state)
{
    (void)state;
    run r;
    run_init(&r, "id,v,y\n007,1,0\nb,2,1\n\"a,1\",3,0\n", "id,v\nzz,1\n10,2\n,3\n",
             KP_TASK_BINARY, "y");
    run_ok(&r);
    const char *want_tr[] = {"007", "b", "a,1"}, *want_te[] = {"zz", "10", ""};
    char buf[16];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(kp_strings_get(&r.d->train_ids, i, buf, sizeof buf), strlen(want_tr[i]));
        assert_string_equal(buf, want_tr[i]);
        kp_strings_get(&r.d->test_ids, i, buf, sizeof buf);
        assert_string_equal(buf, want_te[i]);
    }
    assert_int_equal(kp_strings_get(&r.d->train_ids, 0, buf, 2), 3);   /* truncates */
    assert_string_equal(buf, "0");
    assert_int_equal(kp_strings_get(&r.d->train_ids, 3, buf, sizeof buf), 0);
    run_free(&r);
}

static void test_preprocess_onehot_sorted_categories_unseen_is_zero(void **state)
{
    (void)state;
    run r;
    run_init(&r, "id,color,y\n1,red,0\n2,green,1\n3,blue,0\n4,red,1\n",
             "id,color\n5,green\n6,purple\n7,NA\n", KP_TASK_BINARY, "y");
    run_ok(&r);
    kp_dataset *d = r.d;
    assert_int_equal(d->n_feat, 3);
    assert_string_equal(d->features[0], "color=blue");
    assert_string_equal(d->features[1], "color=green");
    assert_string_equal(d->features[2], "color=red");
    float tr0[3] = {0, 0, 1}, te0[3] = {0, 1, 0}, zero[3] = {0, 0, 0};
    assert_memory_equal(d->X_train, tr0, sizeof tr0);
    assert_memory_equal(d->X_test, te0, sizeof te0);
    assert_memory_equal(d->X_test + 3, zero, sizeof zero);   /* unseen */
    assert_memory_equal(d->X_test + 6, zero, sizeof zero);   /* missing */
    assert_non_null(strstr(r.log, "column 'color': 1 test rows have a category unseen"));
    run_free(&r);
}

static void test_preprocess_ordinal_and_max_onehot(void **state)
{
    (void)state;
    struct { const char *key, *value; } c[] = {{"categorical", "ordinal"}, {"max_onehot", "2"}};
    for (size_t i = 0; i < 2; i++) {
        run r;
        run_init(&r, "id,c,y\n1,b,0\n2,a,1\n3,c,0\n4,?,1\n", "id,c\n5,c\n6,zz\n",
                 KP_TASK_BINARY, "y");
        opt(&r, c[i].key, c[i].value);
        run_ok(&r);
        kp_dataset *d = r.d;
        assert_int_equal(d->n_feat, 1);
        assert_string_equal(d->features[0], "c");
        float tr[4] = {1, 0, 2, -1}, te[2] = {2, -1};
        assert_memory_equal(d->X_train, tr, sizeof tr);
        assert_memory_equal(d->X_test, te, sizeof te);
        assert_non_null(strstr(r.log, "0 one-hot, 1 ordinal"));
        run_free(&r);
    }
}

static void test_preprocess_imputation_uses_train_statistics(void **state)
{
    (void)state;
    struct { const char *impute, *fill; float want; } c[] = {
        {"mean", NULL, 14.0f / 3}, {"median", NULL, 3}, {"constant", "-7.5", -7.5f},
        {NULL, NULL, 14.0f / 3},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        run r;
        run_init(&r, "id,x,y\n1,1,0\n2,NA,1\n3,3,0\n4,10,1\n", "id,x\n5,\n6,100\n",
                 KP_TASK_BINARY, "y");
        if (c[i].impute)
            opt(&r, "impute", c[i].impute);
        if (c[i].fill)
            opt(&r, "fill_value", c[i].fill);
        run_ok(&r);
        assert_near(xtr(r.d, 1, 0), c[i].want);
        assert_near(xte(r.d, 0, 0), c[i].want);   /* test imputed with the train value */
        assert_true(xte(r.d, 1, 0) == 100);
        assert_non_null(strstr(r.log, "column 'x' (numeric): 1 missing in train, 1 in test"));
        run_free(&r);
    }
}

static void test_preprocess_impute_none_keeps_nan_and_standardizes_the_rest(void **state)
{
    (void)state;
    run r;
    run_init(&r, "id,x,y\n1,1,0\n2,NA,1\n3,3,0\n", "id,x\n5,\n6,5\n", KP_TASK_BINARY, "y");
    opt(&r, "impute", "none");
    opt(&r, "standardize", "true");
    run_ok(&r);
    assert_true(isnan(xtr(r.d, 1, 0)) && isnan(xte(r.d, 0, 0)));
    assert_near(xtr(r.d, 0, 0), -1);   /* mean 2 and std 1 of the values present */
    assert_near(xte(r.d, 1, 0), 3);
    assert_non_null(strstr(r.log, "column 'x' (numeric): 1 missing in train, 1 in test, kept as NaN"));
    run_free(&r);
}

static void test_preprocess_median_of_even_count_averages_the_middle(void **state)
{
    (void)state;
    run r;
    run_init(&r, "id,x,y\n1,4,0\n2,1,1\n3,,0\n4,10,1\n5,2,0\n", "id,x\n6,\n",
             KP_TASK_BINARY, "y");
    opt(&r, "impute", "median");
    run_ok(&r);
    assert_near(xte(r.d, 0, 0), 3);   /* median of 1 2 4 10 */
    run_free(&r);
}

static void test_preprocess_missing_indicator_only_for_train_missing(void **state)
{
    (void)state;
    run r;
    run_init(&r, "id,a,b,y\n1,1,5,0\n2,NaN,6,1\n3,3,7,0\n", "id,a,b\n4,2,null\n5,?,8\n",
             KP_TASK_BINARY, "y");
    opt(&r, "missing_indicator", "true");
    run_ok(&r);
    kp_dataset *d = r.d;
    assert_int_equal(d->n_feat, 3);
    assert_string_equal(d->features[0], "a");
    assert_string_equal(d->features[1], "a:missing");
    assert_string_equal(d->features[2], "b");
    assert_true(xtr(d, 0, 1) == 0 && xtr(d, 1, 1) == 1);
    assert_true(xte(d, 0, 1) == 0 && xte(d, 1, 1) == 1);
    assert_near(xte(d, 0, 2), 6);   /* b missing only in test: imputed, no indicator */
    run_free(&r);
}

static void test_preprocess_standardize_fits_on_train_only(void **state)
{
    (void)state;
    run r;
    run_init(&r, "id,x,k,c,y\n1,1,5,u,0\n2,2,5,v,1\n3,3,5,u,0\n",
             "id,x,k,c\n4,4,9,v\n5,1000,5,u\n", KP_TASK_BINARY, "y");
    opt(&r, "standardize", "yes");
    run_ok(&r);
    kp_dataset *d = r.d;
    int x = feature(d, "x"), k = feature(d, "k"), cu = feature(d, "c=u");
    double sd = sqrt(2.0 / 3);   /* population std of 1 2 3 */
    assert_near(xtr(d, 0, x), -1 / sd);
    assert_near(xtr(d, 2, x), 1 / sd);
    assert_near(xte(d, 0, x), 2 / sd);
    assert_near(xte(d, 1, x), 998 / sd);   /* the test outlier did not move the scale */
    assert_true(xtr(d, 0, k) == 0 && xte(d, 0, k) == 4);   /* std 0 -> 1 */
    assert_true(xtr(d, 0, cu) == 1 && xtr(d, 1, cu) == 0); /* one-hot untouched */
    run_free(&r);
}

static void test_preprocess_numeric_needs_every_value_numeric_in_train_and_test(void **state)
{
    (void)state;
    run r;
    run_init(&r, "id,a,b,y\n1,1,1,0\n2,2, 2 ,1\n", "id,a,b\n3,x,3\n4,inf,4\n",
             KP_TASK_BINARY, "y");
    run_ok(&r);
    kp_dataset *d = r.d;
    assert_int_equal(d->n_feat, 3);   /* a is categorical (x, inf), b numeric */
    assert_string_equal(d->features[0], "a=1");
    assert_string_equal(d->features[1], "a=2");
    assert_string_equal(d->features[2], "b");
    assert_true(xtr(d, 1, 2) == 2);
    assert_non_null(strstr(r.log, "1 numeric, 1 categorical"));
    run_free(&r);
}

static void test_preprocess_drop_and_custom_na_values(void **state)
{
    (void)state;
    run r;
    run_init(&r, "id,a,junk,y\n1,-999,z,0\n2,4,z,1\n3,2,z,0\n", "id,a\n4,-999\n",
             KP_TASK_BINARY, "y");
    const char *drop[] = {"junk"}, *na[] = {"-999"};
    assert_int_equal(kp_params_set_list(r.opts, "drop", drop, 1, 1, 1), 0);
    assert_int_equal(kp_params_set_list(r.opts, "na_values", na, 1, 1, 1), 0);
    run_ok(&r);
    assert_int_equal(r.d->n_feat, 1);
    assert_string_equal(r.d->features[0], "a");
    assert_near(xtr(r.d, 0, 0), 3);
    assert_near(xte(r.d, 0, 0), 3);
    run_free(&r);
}

static void test_preprocess_group_column_is_stored_not_a_feature(void **state)
{
    (void)state;
    run r;
    run_init(&r, "id,site,v,y\n1,s9,1,0\n2,s2,2,1\n3,s9,3,0\n4,s5,4,1\n5,s2,5,0\n",
             "id,v\n6,1\n", KP_TASK_BINARY, "y");
    r.comp.folds.group = "site";
    r.comp.folds.kind = KP_FOLDS_GROUP;
    run_ok(&r);
    assert_int_equal(r.d->n_feat, 1);
    assert_string_equal(r.d->features[0], "v");
    assert_non_null(r.d->groups);
    int64_t want[5] = {0, 1, 0, 2, 1};   /* first-appearance order */
    assert_memory_equal(r.d->groups, want, sizeof want);
    run_free(&r);
}

/* ---- targets ---- */

static void test_preprocess_zero_one_target_positive_is_one(void **state)
{
    (void)state;
    run r;
    run_init(&r, "id,v,y\n1,1,1\n2,2,0\n3,3,1\n", "id,v\n4,1\n", KP_TASK_BINARY, "y");
    run_ok(&r);
    assert_string_equal(r.d->classes[0], "0");
    assert_string_equal(r.d->classes[1], "1");
    float y[3] = {1, 0, 1};
    assert_memory_equal(r.d->y, y, sizeof y);
    run_free(&r);
}

static void test_preprocess_multiclass_numeric_labels_sort_numerically(void **state)
{
    (void)state;
    run r;
    run_init(&r, "id,v,y\n1,1,10\n2,2,9\n3,3,2\n4,4,9\n", "id,v\n5,1\n", KP_TASK_MULTICLASS, "y");
    run_ok(&r);
    assert_int_equal(r.d->pb.n_out, 3);
    assert_int_equal(r.d->n_classes, 3);
    assert_string_equal(r.d->classes[0], "2");
    assert_string_equal(r.d->classes[1], "9");
    assert_string_equal(r.d->classes[2], "10");
    float y[4] = {2, 1, 0, 1};
    assert_memory_equal(r.d->y, y, sizeof y);
    run_free(&r);
}

static void test_preprocess_regression_target_values(void **state)
{
    (void)state;
    run r;
    run_init(&r, "id,v,price\n1,1,12.5\n2,2,-3\n", "id,v,price\n3,1,NA\n", KP_TASK_REGRESSION,
             "price");
    run_ok(&r);
    assert_int_equal(r.d->n_classes, 0);
    assert_int_equal(r.d->n_feat, 1);   /* the test's target column is not a feature */
    float y[2] = {12.5f, -3};
    assert_memory_equal(r.d->y, y, sizeof y);
    run_free(&r);
}

static void test_preprocess_multilabel_tags_vocabulary_sorted(void **state)
{
    (void)state;
    run r;
    run_init(&r, "id,v,tags\n1,1,cat dog\n2,2,\"\"\n3,3,  bird   cat\n", "id,v\n4,1\n",
             KP_TASK_MULTILABEL, "tags");
    run_ok(&r);
    kp_dataset *d = r.d;
    assert_int_equal(d->pb.n_out, 3);
    assert_string_equal(d->classes[0], "bird");
    assert_string_equal(d->classes[1], "cat");
    assert_string_equal(d->classes[2], "dog");
    float y[9] = {0, 1, 1, 0, 0, 0, 1, 1, 0};
    assert_memory_equal(d->y, y, sizeof y);
    run_free(&r);
}

static void test_preprocess_multilabel_several_zero_one_columns(void **state)
{
    (void)state;
    run r;
    run_init(&r, "id,v,toxic,spam\n1,1,1,0\n2,2,0,0\n3,3,1,1\n", "id,v\n4,1\n",
             KP_TASK_MULTILABEL, "toxic");
    r.targets[1] = "spam";
    r.comp.n_targets = 2;
    run_ok(&r);
    assert_int_equal(r.d->pb.n_out, 2);
    assert_string_equal(r.d->classes[1], "spam");
    assert_int_equal(r.d->n_feat, 1);
    float y[6] = {1, 0, 0, 0, 1, 1};
    assert_memory_equal(r.d->y, y, sizeof y);
    run_free(&r);
}

/* ---- errors ---- */

static void test_preprocess_errors_name_file_row_and_column(void **state)
{
    (void)state;
    struct { const char *train, *test; kp_task_kind task; int rc; const char *msg; } c[] = {
        {"id,v,y\n1,1,a\n2,2,b\n3,3,c\n", "id,v\n4,1\n", KP_TASK_BINARY, KP_ERR_FORMAT,
         "train.csv: task binary needs exactly 2 classes in column 'y', found 3"},
        {"id,v,y\n1,1,a\n2,2,a\n", "id,v\n4,1\n", KP_TASK_MULTICLASS, KP_ERR_FORMAT,
         "needs at least 2 classes in column 'y', found 1"},
        {"id,v,y\n1,1,0\n2,2,NA\n", "id,v\n4,1\n", KP_TASK_BINARY, KP_ERR_FORMAT,
         "train.csv:3:3: missing target value 'NA' in column 'y'"},
        {"id,v,y\n1,1,0\n\"2\n\",2,\n", "id,v\n4,1\n", KP_TASK_BINARY, KP_ERR_FORMAT,
         "train.csv:3:3: missing target value '' in column 'y'"},
        {"id,v,y\n1,1,0.5\n2,2,abc\n", "id,v\n4,1\n", KP_TASK_REGRESSION, KP_ERR_FORMAT,
         "train.csv:3:3: target 'y' is 'abc', not a number (task regression)"},
        {"id,v,w,y\n1,1,1,0\n2,2,2,1\n", "id,v\n4,1\n", KP_TASK_BINARY, KP_ERR_NOTFOUND,
         "test.csv:1: no column 'w', a feature column of"},
        {"id,v,y\n1,1,0\n2,2,1\n", "ID,v\n4,1\n", KP_TASK_BINARY, KP_ERR_NOTFOUND,
         "test.csv:1: no id (competition.id) column 'id'"},
        {"id,v,z\n1,1,0\n2,2,1\n", "id,v\n4,1\n", KP_TASK_BINARY, KP_ERR_NOTFOUND,
         "train.csv:1: no target (competition.target) column 'y'"},
        {"id,y\n1,0\n2,1\n", "id\n4\n", KP_TASK_BINARY, KP_ERR_ARG, "has no feature columns"},
        {"id,v,y\n", "id,v\n4,1\n", KP_TASK_BINARY, KP_ERR_FORMAT, "train.csv: no data rows"},
        {"id,v,y\n1,1,0\n2,2\n", "id,v\n4,1\n", KP_TASK_BINARY, KP_ERR_FORMAT,
         "train.csv:3:3: row has 2 fields, the header has 3"},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        run r;
        run_init(&r, c[i].train, c[i].test, c[i].task, "y");
        assert_int_equal(run_build(&r), c[i].rc);
        if (!strstr(r.err, c[i].msg))
            fail_msg("case %zu: got \"%s\"", i, r.err);
        FILE *f = fopen(r.out, "rb");
        assert_null(f);   /* nothing written on failure */
        run_free(&r);
    }
}

static void test_preprocess_unknown_drop_column_suggests_nearest(void **state)
{
    (void)state;
    run r;
    run_init(&r, "id,price,y\n1,1,0\n2,2,1\n", "id,price\n3,1\n", KP_TASK_BINARY, "y");
    const char *drop[] = {"prices"};
    assert_int_equal(kp_params_set_list(r.opts, "drop", drop, 1, 1, 1), 0);
    assert_int_equal(run_build(&r), KP_ERR_ARG);
    assert_non_null(strstr(r.err, "has no column 'prices' (did you mean 'price'?)"));
    run_free(&r);
}

static void test_preprocess_stage_type_keys_inputs_outputs(void **state)
{
    (void)state;
    assert_string_equal(kp_stage_preprocess.name, "preprocess");
    assert_int_equal(kp_stage_preprocess.output, KP_ART_DATASET);
    const char *want[] = {"train", "test", "categorical", "max_onehot", "impute", "fill_value",
                          "missing_indicator", "standardize", "drop", "na_values"};
    assert_int_equal(kp_keyspec_count(kp_stage_preprocess.keys), 10);
    for (int i = 0; i < 10; i++) {
        assert_string_equal(kp_stage_preprocess.keys[i].name, want[i]);
        assert_non_null(kp_stage_preprocess.keys[i].doc);
    }
    kp_stage st = {.name = "prep", .dir = "runs/d/prep", .ops = &kp_stage_preprocess};
    kp_config cfg = {.comp = {.train = "/d/train.csv", .test = "/d/test.csv"}};
    kp_buf b;
    kp_buf_init(&b, 0);
    assert_int_equal(kp_stage_preprocess.outputs(&st, &cfg, -1, &b), 0);
    assert_string_equal(kp_buf_str(&b), "runs/d/prep/dataset.safetensors\n");
    kp_buf_reset(&b);
    assert_int_equal(kp_stage_preprocess.inputs(&st, &cfg, &b), 0);
    assert_string_equal(kp_buf_str(&b), "/d/train.csv\n/d/test.csv\n");
    kp_buf_free(&b);
}

static void test_preprocess_train_and_test_keys_replace_the_competition_csvs(void **state)
{
    (void)state;
    kp_params *opts = kp_params_create();
    assert_int_equal(kp_params_set(opts, "train", "runs/d/fe/train.csv", 5, 12), 0);
    kp_stage st = {.name = "prep", .dir = "/c/runs/d/prep", .ops = &kp_stage_preprocess,
                   .opts = opts};
    kp_config cfg = {.dir = "/c", .comp = {.train = "/d/train.csv", .test = "/d/test.csv"}};
    kp_buf b;
    kp_buf_init(&b, 0);
    assert_int_equal(kp_stage_preprocess.inputs(&st, &cfg, &b), 0);
    assert_string_equal(kp_buf_str(&b), "/c/runs/d/fe/train.csv\n/d/test.csv\n");
    kp_buf_free(&b);
    kp_params_free(opts);
}

static void test_preprocess_check_refuses_several_targets_unless_multilabel(void **state)
{
    (void)state;
    char *targets[2] = {"a", "b"};
    kp_stage st = {.name = "prep", .base = "prep", .line = 4, .col = 3,
                   .ops = &kp_stage_preprocess};
    kp_config cfg = {.path = "c.yaml", .comp = {.targets = targets, .n_targets = 2,
                                                .task = KP_TASK_REGRESSION}};
    char err[KP_ERRLEN] = "";
    assert_int_equal(kp_stage_preprocess.check(&st, &cfg, err, sizeof err), KP_ERR_CONFIG);
    assert_string_equal(err, "c.yaml:4:3: stages.prep: task regression takes one target column, "
                             "competition.target names 2");
    cfg.comp.task = KP_TASK_MULTILABEL;
    assert_int_equal(kp_stage_preprocess.check(&st, &cfg, err, sizeof err), 0);
}

static void test_preprocess_validated_defaults_match_unvalidated(void **state)
{
    (void)state;
    run r;
    run_init(&r, "id,c,x,y\n1,a,1,0\n2,b,,1\n3,a,5,0\n", "id,c,x\n4,b,\n", KP_TASK_BINARY, "y");
    char err[KP_ERRLEN] = "";
    if (kp_params_validate(r.opts, kp_stage_preprocess.keys, "c.yaml", "stages.prep", err,
                           sizeof err) != 0)
        fail_msg("%s", err);
    run_ok(&r);
    assert_int_equal(r.d->n_feat, 3);          /* one-hot c (2), x */
    assert_near(xte(r.d, 0, 2), 3);            /* mean imputation; "" is missing */
    kp_dataset_close(r.d);
    r.d = NULL;
    kp_params_free(r.opts);
    r.opts = NULL;                             /* no keys at all: the same defaults */
    free(r.log);
    run_ok(&r);
    assert_int_equal(r.d->n_feat, 3);
    assert_near(xte(r.d, 0, 2), 3);
    run_free(&r);
}

/* ---- dataset artifact checks ---- */

/* Copies the dataset at src to dst replacing tensor `name` (if data) or metadata key. */
static void rewrite(const char *src, const char *dst, const char *name, kp_dtype dt, int ndim,
                    const int64_t *shape, const void *data, const char *meta_value)
{
    kp_st *st = NULL;
    char err[KP_ERRLEN];
    assert_int_equal(kp_st_open(src, &st, err, sizeof err), 0);
    kp_stw *w = kp_stw_create();
    for (int i = 0; i < kp_st_count(st); i++) {
        const kp_tensor *t = kp_st_at(st, i);
        if (data && strcmp(t->name, name) == 0)
            assert_int_equal(kp_stw_add(w, name, dt, ndim, shape, data), 0);
        else
            assert_int_equal(kp_stw_add(w, t->name, t->dtype, t->ndim, t->shape, t->data), 0);
    }
    const char *keys[] = {"kpipe.artifact", "task", "n_out", "classes", "features",
                          "id_column", "target_columns"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const char *v = kp_st_meta(st, keys[i]);
        if (meta_value && strcmp(keys[i], name) == 0)
            v = meta_value;
        assert_int_equal(kp_stw_meta(w, keys[i], v), 0);
    }
    assert_int_equal(kp_stw_write(w, dst, err, sizeof err), 0);
    kp_stw_free(w);
    kp_st_close(st);
}

static void test_preprocess_dataset_open_refuses_inconsistent_files(void **state)
{
    (void)state;
    run r;
    run_init(&r, "id,v,y\nA,1,0\nBB,2,1\nC,3,0\n", "id,v\nD,1\n", KP_TASK_BINARY, "y");
    run_ok(&r);
    char *bad = kp_test_join(r.dir, "bad.safetensors");
    float y2[2] = {0, 1}, y3[3] = {0, 2, 1}, x3[3] = {1, INFINITY, 3};
    int64_t s2[1] = {2}, s3[1] = {3}, sx[2] = {3, 1}, so[1] = {4};
    int64_t off_back[4] = {0, 2, 1, 4}, off_far[4] = {0, 1, 3, 9};
    struct { const char *name; kp_dtype dt; int ndim; const int64_t *shape; const void *data;
             const char *meta, *msg; } c[] = {
        {"y", KP_F32, 1, s2, y2, NULL, "tensor 'y' has shape [2], expected [3]"},
        {"y", KP_F32, 1, s3, y3, NULL, "y[1] = 2 is not valid for task binary"},
        {"X_train", KP_F32, 2, sx, x3, NULL, "X_train[1, 0] is not a finite number"},
        {"train_ids.offsets", KP_I64, 1, so, off_back, NULL, "train_ids.offsets[2] = 1"},
        {"train_ids.offsets", KP_I64, 1, so, off_far, NULL, "beyond the 4 bytes"},
        {"n_out", 0, 0, NULL, NULL, "2", "n_out 2 does not fit task binary"},
        {"classes", 0, 0, NULL, NULL, "[\"a\"]", "must list 2 classes, it lists 1"},
        {"features", 0, 0, NULL, NULL, "[\"v\",\"w\"]", "lists 2 features but X_train has 1"},
        {"task", 0, 0, NULL, NULL, "ranking", "unknown task 'ranking'"},
        {"kpipe.artifact", 0, 0, NULL, NULL, "folds", "not a dataset artifact"},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        rewrite(r.out, bad, c[i].name, c[i].dt, c[i].ndim, c[i].shape, c[i].data, c[i].meta);
        kp_dataset *d = NULL;
        char err[KP_ERRLEN] = "";
        assert_true(kp_dataset_open(bad, &d, err, sizeof err) < 0);
        assert_null(d);
        if (!strstr(err, c[i].msg) || !strstr(err, "bad.safetensors"))
            fail_msg("case %zu: got \"%s\"", i, err);
    }
    free(bad);
    run_free(&r);
}

KP_TEST_GROUP(preprocess)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_preprocess_numeric_features_binary_string_classes),
        cmocka_unit_test(test_preprocess_ids_kept_as_strings_in_file_order),
        cmocka_unit_test(test_preprocess_onehot_sorted_categories_unseen_is_zero),
        cmocka_unit_test(test_preprocess_ordinal_and_max_onehot),
        cmocka_unit_test(test_preprocess_imputation_uses_train_statistics),
        cmocka_unit_test(test_preprocess_impute_none_keeps_nan_and_standardizes_the_rest),
        cmocka_unit_test(test_preprocess_median_of_even_count_averages_the_middle),
        cmocka_unit_test(test_preprocess_missing_indicator_only_for_train_missing),
        cmocka_unit_test(test_preprocess_standardize_fits_on_train_only),
        cmocka_unit_test(test_preprocess_numeric_needs_every_value_numeric_in_train_and_test),
        cmocka_unit_test(test_preprocess_drop_and_custom_na_values),
        cmocka_unit_test(test_preprocess_group_column_is_stored_not_a_feature),
        cmocka_unit_test(test_preprocess_zero_one_target_positive_is_one),
        cmocka_unit_test(test_preprocess_multiclass_numeric_labels_sort_numerically),
        cmocka_unit_test(test_preprocess_regression_target_values),
        cmocka_unit_test(test_preprocess_multilabel_tags_vocabulary_sorted),
        cmocka_unit_test(test_preprocess_multilabel_several_zero_one_columns),
        cmocka_unit_test(test_preprocess_errors_name_file_row_and_column),
        cmocka_unit_test(test_preprocess_unknown_drop_column_suggests_nearest),
        cmocka_unit_test(test_preprocess_stage_type_keys_inputs_outputs),
        cmocka_unit_test(test_preprocess_train_and_test_keys_replace_the_competition_csvs),
        cmocka_unit_test(test_preprocess_check_refuses_several_targets_unless_multilabel),
        cmocka_unit_test(test_preprocess_validated_defaults_match_unvalidated),
        cmocka_unit_test(test_preprocess_dataset_open_refuses_inconsistent_files),
    };
    return KP_RUN(preprocess, t);
}

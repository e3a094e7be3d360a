/* test_contract.c - submission contracts: bad files named by place and id,
 * good files of every task, the config block's errors, describe, gzip files
 * and the classes of a submit stage's dataset. */
#include "stage_fixture.h"

#include "../lib/gzip.h"
#include "../stages/contract.h"

/* The competition (line 9: the submission block, if any) and a stage that
 * passes its checks; the submit stage's options come from a kp_stage made
 * by hand (contract_of). */
static const char *const yaml_fmt =
    "competition:\n"
    "  train: train.csv\n"
    "  test: test.csv\n"
    "  sample_submission: sample.csv\n"
    "  id: %s\n"
    "  target: y\n"
    "  task: %s\n"
    "  metric: %s\n"
    "%s"
    "stages:\n"
    "  x: {type: command, run: 'true', outs: [o]}\n";

typedef struct ccase {
    const char *what;
    kp_task_kind task;
    const char *id;          /* the id column (NULL: "id") */
    const char *block;       /* competition.submission as a flow mapping, or NULL */
    const char *opts;        /* the submit stage's options "k=v;k=v", or NULL */
    const char *classes;     /* the dataset's classes "a,b", or NULL */
    const char *sample, *file;
    int status;
    const char *msg;         /* the whole message (0: the file passes) */
} ccase;

static const char *task_metric(kp_task_kind t)
{
    return t == KP_TASK_BINARY ? "auc" : t == KP_TASK_MULTICLASS ? "logloss"
         : t == KP_TASK_REGRESSION ? "rmse" : t == KP_TASK_MULTILABEL ? "f1_samples" : "dice";
}

/* Writes the files and loads the case's config (asserting it loads). */
static kp_config *config_of(const char *dir, const ccase *c)
{
    char yaml[4096], block[1024] = "";
    free(kp_test_write(dir, "train.csv", "id,y\n1,0\n"));
    free(kp_test_write(dir, "test.csv", "id\n2\n"));
    free(kp_test_write(dir, "sample.csv", c->sample));
    if (c->block)
        snprintf(block, sizeof block, "  submission: %s\n", c->block);
    snprintf(yaml, sizeof yaml, yaml_fmt, c->id ? c->id : "id", kp_task_name(c->task),
             task_metric(c->task), block);
    return fx_config(dir, yaml);
}

/* Splits "a,b,c" into items (at most 16; pointers into buf). */
static int split(const char *s, char *buf, size_t n, const char **items, char sep)
{
    int k = 0;
    snprintf(buf, n, "%s", s ? s : "");
    for (char *p = buf; s && *p && k < 16; k++) {
        items[k] = p;
        p += strcspn(p, (char[]){sep, 0});
        if (*p)
            *p++ = 0;
    }
    return k;
}

/* Builds the case's contract with a submit stage holding the case's options. */
static kp_contract *contract_of(const kp_config *cfg, const ccase *c)
{
    char buf[1024], cbuf[1024], err[KP_ERRLEN] = "";
    const char *opts[16], *classes[16];
    int n = split(c->opts, buf, sizeof buf, opts, ';');
    int nc = split(c->classes, cbuf, sizeof cbuf, classes, ',');
    kp_stage st = {.name = "sub", .opts = kp_params_create()};
    for (int i = 0; i < n; i++) {
        char *eq = strchr(opts[i], '=');
        *eq = 0;
        assert_int_equal(kp_params_set(st.opts, opts[i], eq + 1, 1, 1), 0);
    }
    kp_contract *k = NULL;
    int rc = kp_contract_create(cfg, &st, c->classes ? classes : NULL, nc, &k, err, sizeof err);
    if (rc)
        fail_msg("%s: create: %s", c->what, err);
    kp_params_free(st.opts);
    return k;
}

/* Checks the case's file; fails the test naming the case on a difference. */
static void run_case(const ccase *c)
{
    char *dir = kp_test_tmpdir(), err[KP_ERRLEN] = "";
    kp_config *cfg = config_of(dir, c);
    kp_contract *k = contract_of(cfg, c);
    int rc = kp_contract_check(k, "sub.csv", c->file, strlen(c->file), err, sizeof err);
    if (rc != c->status || (c->msg && strcmp(err, c->msg) != 0))
        fail_msg("%s: status %d (want %d), message\n  %s\nwant\n  %s", c->what, rc, c->status,
                 err, c->msg ? c->msg : "");
    kp_contract_free(k);
    kp_config_free(cfg);
    free(dir);
}

#define BIN KP_TASK_BINARY
#define MC KP_TASK_MULTICLASS
#define REG KP_TASK_REGRESSION
#define ML KP_TASK_MULTILABEL
#define SEG KP_TASK_SEGMENTATION
#define F KP_ERR_FORMAT
#define TITANIC "PassengerId,Survived\n892,0\n893,1\n894,0\n"
#define ABC "id,y\na,0\nb,0\nc,0\n"

static const ccase bad_files[] = {
    {"header differs", BIN, "PassengerId", NULL, NULL, "0,1", TITANIC,
     "id,target\n892,0.5\n893,0.5\n894,0.5\n", F,
     "sub.csv:1: header 'id,target' differs from the contract's 'PassengerId,Survived'"},
    {"column order", MC, NULL, NULL, NULL, "p,q,r", "id,p,q,r\na,0,0,0\n",
     "id,q,p,r\na,0.5,0.25,0.25\n", F,
     "sub.csv:1: header 'id,q,p,r' differs from the contract's 'id,p,q,r' (the same columns "
     "in another order)"},
    {"missing row", BIN, "PassengerId", NULL, NULL, "0,1", TITANIC,
     "PassengerId,Survived\n892,0.5\n893,0.5\n", F, "sub.csv:4: 2 rows, the sample has 3"},
    {"extra row", BIN, "PassengerId", NULL, NULL, "0,1", TITANIC,
     "PassengerId,Survived\n892,0.5\n893,0.5\n894,0.5\n895,0.5\n", F,
     "sub.csv:5: 4 rows, the sample has 3"},
    {"duplicate id, ids: sample", BIN, "PassengerId", NULL, NULL, "0,1", TITANIC,
     "PassengerId,Survived\n892,0.5\n892,0.5\n894,0.5\n", F,
     "sub.csv:3:1: id '892' appears twice (first on line 2)"},
    {"duplicate id, ids: set", BIN, "PassengerId", "{ids: set}", NULL, "0,1", TITANIC,
     "PassengerId,Survived\n894,0.5\n893,0.5\n894,0.5\n", F,
     "sub.csv:4:1: id '894' appears twice (first on line 2)"},
    {"id order, ids: sample", BIN, "PassengerId", NULL, NULL, "0,1", TITANIC,
     "PassengerId,Survived\n893,0.5\n892,0.5\n894,0.5\n", F,
     "sub.csv:2:1: id '893' is out of the sample's order: its row 1 has id '892' (ids: set "
     "takes any order)"},
    {"id not in the sample", BIN, "PassengerId", "{ids: set}", NULL, "0,1", TITANIC,
     "PassengerId,Survived\n892,0.5\n999,0.5\n894,0.5\n", F,
     "sub.csv:3:1: id '999' is not in the sample submission"},
    {"NaN", BIN, NULL, NULL, NULL, "0,1", ABC, "id,y\na,0.5\nb,nan\nc,0.5\n", F,
     "sub.csv:3:2: column 'y' of id 'b': 'nan' is not a finite number"},
    {"Inf", REG, NULL, NULL, NULL, NULL, ABC, "id,y\na,1\nb,2\nc,-inf\n", F,
     "sub.csv:4:2: column 'y' of id 'c': '-inf' is not a finite number"},
    {"empty cell", BIN, NULL, NULL, NULL, "0,1", ABC, "id,y\na,0.5\nb,\nc,0.5\n", F,
     "sub.csv:3:2: column 'y' of id 'b': the cell is empty (a probability is expected)"},
    {"not a number", REG, NULL, NULL, NULL, NULL, ABC, "id,y\na,1\nb,2x\nc,3\n", F,
     "sub.csv:3:2: column 'y' of id 'b': '2x' is not a number"},
    {"probability 1.2", BIN, NULL, NULL, NULL, "0,1", ABC, "id,y\na,0.5\nb,0.5\nc,1.2\n", F,
     "sub.csv:4:2: column 'y' of id 'c': '1.2' is not a probability in [0, 1]"},
    {"class column probability below 0", MC, NULL, NULL, NULL, "p,q", "id,p,q\na,0,0\n",
     "id,p,q\na,-0.1,1.1\n", F, "sub.csv:2:2: column 'p' of id 'a': '-0.1' is not a "
     "probability in [0, 1]"},
    {"number below min", REG, NULL, "{min: 0}", NULL, NULL, ABC, "id,y\na,1\nb,-1\nc,3\n", F,
     "sub.csv:3:2: column 'y' of id 'b': '-1' is below the minimum 0"},
    {"number above max", REG, NULL, "{min: 0, max: 10}", NULL, NULL, ABC,
     "id,y\na,1\nb,5\nc,10.5\n", F,
     "sub.csv:4:2: column 'y' of id 'c': '10.5' is above the maximum 10"},
    {"label not in the labels", BIN, "PassengerId", "{values: label, labels: [0, 1]}", NULL,
     NULL, TITANIC, "PassengerId,Survived\n892,0\n893,x\n894,1\n", F,
     "sub.csv:3:2: column 'Survived' of id '893': 'x' is not one of the labels 0, 1"},
    {"label not in the classes (format label)", BIN, NULL, NULL, "format=label", "B,M", ABC,
     "id,y\na,B\nb,M\nc,1\n", F,
     "sub.csv:4:2: column 'y' of id 'c': '1' is not one of the labels B, M"},
    {"multiclass label not in the classes", MC, NULL, NULL, NULL, "p,q,r", ABC,
     "id,y\na,p\nb,s\nc,r\n", F,
     "sub.csv:3:2: column 'y' of id 'b': 's' is not one of the labels p, q, r"},
    {"class column label not 0/1", MC, NULL, NULL, "format=label", "p,q", "id,p,q\na,0,0\n",
     "id,p,q\na,1,0.5\n", F, "sub.csv:2:3: column 'q' of id 'a': '0.5' is not one of the "
     "labels 0, 1"},
    {"tag not in the vocabulary", ML, NULL, NULL, NULL, "cloudy,haze,road", ABC,
     "id,y\na,cloudy road\nb,\nc,haze snow\n", F,
     "sub.csv:4:2: column 'y' of id 'c': tag 'snow' is not in the vocabulary (cloudy, haze, "
     "road)"},
    {"tag not in the configured vocabulary", ML, NULL, "{vocabulary: [haze]}", NULL,
     "cloudy,haze", ABC, "id,y\na,haze\nb,cloudy\nc,\n", F,
     "sub.csv:3:2: column 'y' of id 'b': tag 'cloudy' is not in the vocabulary (haze)"},
    {"tags with two spaces", ML, NULL, NULL, NULL, "cloudy,haze", ABC,
     "id,y\na,cloudy  haze\nb,\nc,\n", F,
     "sub.csv:2:2: column 'y' of id 'a': tags 'cloudy  haze' hold an empty tag (tags are "
     "separated by single spaces)"},
    {"tag twice", ML, NULL, NULL, NULL, "cloudy,haze", ABC, "id,y\na,haze cloudy haze\nb,\nc,\n",
     F, "sub.csv:2:2: column 'y' of id 'a': tag 'haze' appears twice"},
    {"RLE odd count", SEG, NULL, NULL, NULL, NULL, ABC, "id,y\na,1 2\nb,1 2 5\nc,\n", F,
     "sub.csv:3:2: column 'y' of id 'b': the RLE holds an odd count of numbers (3): it must "
     "be start length pairs"},
    {"RLE zero start", SEG, NULL, NULL, NULL, NULL, ABC, "id,y\na,0 2\nb,\nc,\n", F,
     "sub.csv:2:2: column 'y' of id 'a': the RLE's run 1 starts at 0: pixels are numbered "
     "from 1"},
    {"RLE descending starts", SEG, NULL, NULL, NULL, NULL, ABC, "id,y\na,\nb,5 1 1 2\nc,\n", F,
     "sub.csv:3:2: column 'y' of id 'b': the RLE's run 2 starts at 1, before the previous "
     "start 5 (starts must ascend)"},
    {"RLE overlap", SEG, NULL, NULL, NULL, NULL, ABC, "id,y\na,\nb,\nc,1 3 3 1\n", F,
     "sub.csv:4:2: column 'y' of id 'c': the RLE's run 2 (3 1) overlaps the previous run, "
     "which ends at pixel 3"},
    {"RLE zero length", SEG, NULL, NULL, NULL, NULL, ABC, "id,y\na,4 0\nb,\nc,\n", F,
     "sub.csv:2:2: column 'y' of id 'a': the RLE's run 1 (start 4) has length 0"},
    {"RLE not a whole number", SEG, NULL, NULL, NULL, NULL, ABC, "id,y\na,1 2.5\nb,\nc,\n", F,
     "sub.csv:2:2: column 'y' of id 'a': '2.5' in the RLE is not a whole number"},
    {"RLE empty cell where the stage writes a marker", SEG, NULL, NULL, "empty=-", NULL, ABC,
     "id,y\na,-\nb,\nc,-\n", F,
     "sub.csv:3:2: column 'y' of id 'b': the cell is empty (an empty mask is written '-')"},
    {"ragged row", BIN, NULL, NULL, NULL, "0,1", ABC, "id,y\na,0.5\nb,0.5,1\nc,0.5\n", F, NULL},
};

static void test_contract_bad_files_fail_naming_the_place_and_the_id(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad_files / sizeof bad_files[0]; i++)
        run_case(&bad_files[i]);
}

static const ccase good_files[] = {
    {"binary probabilities", BIN, "PassengerId", NULL, NULL, "0,1", TITANIC,
     "PassengerId,Survived\n892,0.25\n893,1\n894,1e-3\n", 0, NULL},
    {"binary labels", BIN, "PassengerId", NULL, "format=label", "0,1", TITANIC,
     "PassengerId,Survived\n892,0\n893,1\n894,0\n", 0, NULL},
    {"ids: set in another order", BIN, "PassengerId", "{ids: set}", NULL, "0,1", TITANIC,
     "PassengerId,Survived\n894,0.5\n892,0.5\n893,0.5\n", 0, NULL},
    {"ids: any, unknown ids", BIN, "PassengerId", "{ids: any}", NULL, "0,1", TITANIC,
     "PassengerId,Survived\n1,0.5\n1,0.5\n2,0.5\n", 0, NULL},
    {"multiclass labels", MC, NULL, NULL, NULL, "p,q,r", ABC, "id,y\na,p\nb,r\nc,q\n", 0, NULL},
    {"multiclass class columns", MC, NULL, NULL, NULL, "p,q,r", "id,p,q,r\na,0,0,0\nb,0,0,0\n",
     "id,p,q,r\na,0.5,0.25,0.25\nb,0,0,1\n", 0, NULL},
    {"multiclass class columns as 0/1", MC, NULL, NULL, "format=label", "p,q,r",
     "id,p,q,r\na,0,0,0\n", "id,p,q,r\na,0,1,0\n", 0, NULL},
    {"regression", REG, NULL, "{min: -5}", NULL, NULL, ABC, "id,y\na,-5\nb,1e6\nc,0.333333343\n",
     0, NULL},
    {"multilabel tags and none", ML, NULL, NULL, NULL, "cloudy,haze,road", ABC,
     "id,y\na,cloudy road\nb,\nc,haze\n", 0, NULL},
    {"segmentation RLE, touching runs, empty", SEG, NULL, NULL, NULL, NULL, ABC,
     "id,y\na,1 2 3 1\nb,\nc,10 1 14 1\n", 0, NULL},
    {"segmentation with an empty marker", SEG, NULL, NULL, "empty=EMPTY", NULL, ABC,
     "id,y\na,EMPTY\nb,5 5\nc,EMPTY\n", 0, NULL},
    {"segmentation WKT per image and class", SEG, "ImageId", NULL,
     "wkt=true;class_column=ClassType", NULL,
     "ImageId,ClassType,MultipolygonWKT\nx,1,MULTIPOLYGON EMPTY\nx,2,MULTIPOLYGON EMPTY\n",
     "ImageId,ClassType,MultipolygonWKT\nx,1,\"MULTIPOLYGON (((2 -0.5, 2 -1, 4 -1, 2 -0.5)))\"\n"
     "x,2,MULTIPOLYGON EMPTY\n", 0, NULL},
    {"text values", BIN, NULL, "{values: text}", NULL, "0,1", ABC, "id,y\na,x\nb,\nc,?\n", 0,
     NULL},
    {"CRLF line ends", BIN, NULL, NULL, NULL, "0,1", ABC, "id,y\r\na,0\r\nb,1\r\nc,0.5\r\n", 0,
     NULL},
};

static void test_contract_good_files_of_every_task_pass(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof good_files / sizeof good_files[0]; i++)
        run_case(&good_files[i]);
}

static void test_contract_ids_repeated_in_the_sample_are_counted_and_ordered(void **state)
{
    (void)state;
    /* Dstl: one row per image and class; a third row of the image is one too many */
    ccase c = {"repeat", SEG, NULL, "{ids: set}", "wkt=true;class_column=k", NULL,
               "id,k,y\nx,1,E\nx,2,E\nz,1,E\n", "id,k,y\nx,1,E\nx,2,E\nx,1,E\n", F,
               "sub.csv:4:1: id 'x' appears more often than the sample's 2 times"};
    run_case(&c);
    c.block = NULL;
    c.msg = "sub.csv:4:1: id 'x' is out of the sample's order: its row 3 has id 'z' (ids: set "
            "takes any order)";
    run_case(&c);
}

static void test_contract_check_file_reads_gzip_files_uncompressed(void **state)
{
    (void)state;
    const char *bad = "id,y\na,0.5\nb,2\nc,0.5\n";
    ccase c = {"gz", BIN, NULL, NULL, NULL, "0,1", ABC, "", 0, NULL};
    char *dir = kp_test_tmpdir(), err[KP_ERRLEN] = "", want[4096];
    char *gz = kp_test_join(dir, "out/sub.csv.gz");
    kp_config *cfg = config_of(dir, &c);
    kp_contract *k = contract_of(cfg, &c);
    assert_int_equal(kp_gzip_file_atomic(gz, bad, strlen(bad), err, sizeof err), 0);
    assert_int_equal(kp_contract_check_file(k, gz, err, sizeof err), KP_ERR_FORMAT);
    snprintf(want, sizeof want, "%s:3:2: column 'y' of id 'b': '2' is not a probability in "
             "[0, 1]", gz);
    assert_string_equal(err, want);
    char *plain = kp_test_write(dir, "ok.csv", "id,y\na,0.5\nb,0\nc,1\n");
    assert_int_equal(kp_contract_check_file(k, plain, err, sizeof err), 0);
    free(plain);
    free(gz);
    kp_contract_free(k);
    kp_config_free(cfg);
    free(dir);
}

static void test_contract_describe_gives_one_line_per_rule(void **state)
{
    (void)state;
    ccase c = {"describe", MC, NULL, "{min: 0}", "format=label", "p,q",
               "id,p,q,y\na,0,0,0\nb,0,0,0\n", "", 0, NULL};
    char *dir = kp_test_tmpdir(), want[4096];
    kp_config *cfg = config_of(dir, &c);
    kp_contract *k = contract_of(cfg, &c);
    kp_buf b;
    kp_buf_init(&b, 0);
    assert_int_equal(kp_contract_describe(k, &b), 0);
    snprintf(want, sizeof want,
             "header: id,p,q,y (from %s)\n"
             "rows: 2, as the sample\n"
             "ids: column 'id', the sample's ids in its order\n"
             "column 'p': label, one of 0, 1\n"
             "column 'q': label, one of 0, 1\n"
             "column 'y': label, one of p, q\n", cfg->comp.sample_submission);
    assert_string_equal(kp_buf_str(&b), want);
    kp_buf_free(&b);
    kp_contract_free(k);
    kp_config_free(cfg);
    free(dir);
}

static void test_contract_describe_names_numbers_tags_and_rle(void **state)
{
    (void)state;
    static const struct {
        kp_task_kind task;
        const char *block, *opts, *classes, *want;
    } cases[] = {
        {REG, "{min: 0, max: 1e3}", NULL, NULL, "column 'y': number, finite, not empty, >= 0, "
         "<= 1000\n"},
        {BIN, NULL, NULL, "0,1", "column 'y': probability in [0, 1], finite, not empty\n"},
        {ML, NULL, NULL, NULL, "column 'y': space-separated tags (or none), any (no vocabulary "
         "known)\n"},
        {ML, "{vocabulary: [a, b]}", NULL, NULL, "column 'y': space-separated tags (or none), "
         "each one of a, b\n"},
        {SEG, "{rle_order: row}", "empty=-", NULL, "column 'y': RLE, 1-indexed start length "
         "pairs in row-major order, starts ascending, runs not overlapping; an empty mask is "
         "'-'\n"},
        {BIN, "{ids: any, values: label}", NULL, NULL, "column 'y': label, any non-empty value "
         "(no labels known)\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ccase c = {"describe", cases[i].task, NULL, cases[i].block, cases[i].opts,
                   cases[i].classes, ABC, "", 0, NULL};
        char *dir = kp_test_tmpdir();
        kp_config *cfg = config_of(dir, &c);
        kp_contract *k = contract_of(cfg, &c);
        kp_buf b;
        kp_buf_init(&b, 0);
        assert_int_equal(kp_contract_describe(k, &b), 0);
        if (!strstr(kp_buf_str(&b), cases[i].want))
            fail_msg("case %zu: got\n%s\nwant a line\n%s", i, kp_buf_str(&b), cases[i].want);
        kp_buf_free(&b);
        kp_contract_free(k);
        kp_config_free(cfg);
        free(dir);
    }
}

static void test_contract_create_fails_without_the_samples_id_column(void **state)
{
    (void)state;
    ccase c = {"no id", BIN, NULL, NULL, NULL, "0,1", "key,y\na,0\n", "", 0, NULL};
    char *dir = kp_test_tmpdir(), err[KP_ERRLEN] = "", want[4096];
    kp_config *cfg = config_of(dir, &c);
    kp_contract *k = (kp_contract *)&c;
    assert_int_equal(kp_contract_create(cfg, NULL, NULL, 0, &k, err, sizeof err), KP_ERR_FORMAT);
    assert_ptr_equal(k, (kp_contract *)&c);   /* untouched */
    snprintf(want, sizeof want, "%s:1: the header has no id column 'id'",
             cfg->comp.sample_submission);
    assert_string_equal(err, want);
    kp_config_free(cfg);
    free(dir);
}

static void test_contract_without_a_sample_needs_columns_and_ids_any(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), err[KP_ERRLEN] = "", want[4096];
    static const char *const blocks[] = {"", "  submission: {columns: [id, y]}\n",
                                         "  submission: {columns: [id, y], ids: any}\n"};
    for (int i = 0; i < 3; i++) {
        char yaml[2048];
        snprintf(yaml, sizeof yaml, "competition:\n  train: train.csv\n  test: test.csv\n"
                 "  id: id\n  target: y\n  task: binary\n  metric: auc\n%sstages:\n"
                 "  x: {type: command, run: 'true', outs: [o]}\n", blocks[i]);
        kp_config *cfg = fx_config(dir, yaml);
        kp_contract *k = NULL;
        int rc = kp_contract_create(cfg, NULL, NULL, 0, &k, err, sizeof err);
        if (i < 2) {
            assert_int_equal(rc, KP_ERR_CONFIG);
            snprintf(want, sizeof want, "%s: the submission contract needs "
                     "competition.sample_submission (%s)", cfg->path,
                     i ? "for its ids; or set competition.submission.ids: any"
                       : "for its header; or set competition.submission.columns");
            assert_string_equal(err, want);
        } else {
            assert_int_equal(rc, 0);
            assert_int_equal(kp_contract_check(k, "s.csv", "id,y\nq,0.5\n", 11, err, sizeof err),
                             0);
        }
        kp_contract_free(k);
        kp_config_free(cfg);
    }
    free(dir);
}

/* Config errors of the submission block (line 9 of yaml_fmt). */
static const struct {
    const char *block, *msg;
} bad_blocks[] = {
    {"{idss: set}", "kp.yaml:9:16: competition.submission: unknown key 'idss' (did you mean "
                    "'ids'?)"},
    {"{values: probabilty}", "kp.yaml:9:24: competition.submission.values: 'probabilty' is not "
     "one of auto|probability|label|tags|rle|number|text (did you mean 'probability'?)"},
    {"{min: 1, max: 0}", "kp.yaml:9:29: competition.submission.max: 0 is below min 1"},
    {"{min: low}", "kp.yaml:9:21: competition.submission.min: expected a number, got 'low'"},
    {"{columns: [PassengerId, Survived]}", "kp.yaml:9:25: competition.submission.columns: the "
     "id column 'id' is not among them"},
    {"{columns: [id, y, y]}", "kp.yaml:9:25: competition.submission.columns: 'y' appears twice"},
    {"{labels: []}", "kp.yaml:9:24: competition.submission.labels: the list is empty"},
    {"[ids, set]", "kp.yaml:9:15: competition.submission: expected a mapping of keys to values"},
    {"{ids: {a: 1}}", "kp.yaml:9:21: competition.submission.ids: expected a value or a list of "
                      "values, not a mapping"},
};

static void test_contract_config_block_errors_name_file_line_column_and_key(void **state)
{
    (void)state;
    int failed = 0;
    for (size_t i = 0; i < sizeof bad_blocks / sizeof bad_blocks[0]; i++) {
        char *dir = kp_test_tmpdir(), yaml[4096], block[512], err[KP_ERRLEN] = "";
        kp_config *cfg = NULL;
        snprintf(block, sizeof block, "  submission: %s\n", bad_blocks[i].block);
        snprintf(yaml, sizeof yaml, yaml_fmt, "id", "binary", "auc", block);
        assert_int_equal(fx_load(dir, yaml, &cfg, err, sizeof err), KP_ERR_CONFIG);
        assert_null(cfg);
        const char *at = strstr(err, "kp.yaml:");
        if (!at || strcmp(at, bad_blocks[i].msg) != 0) {
            print_error("block %s: got '%s', want '%s'\n", bad_blocks[i].block, err,
                        bad_blocks[i].msg);
            failed++;
        }
        free(dir);
    }
    assert_int_equal(failed, 0);
}

/* ---- the classes of a submit stage's dataset ---- */

static const char *const pipeline_yaml =
    "competition:\n"
    "  train: train.csv\n"
    "  test: test.csv\n"
    "  sample_submission: sample.csv\n"
    "  id: id\n"
    "  target: y\n"
    "  task: multiclass\n"
    "  metric: logloss\n"
    "%s"
    "stages:\n"
    "  prep: {type: preprocess}\n"
    "  folds: {type: folds, needs: [prep]}\n"
    "  lr: {type: train, needs: [prep, folds], model: logistic}\n"
    "  sub: {type: submit, needs: [prep, lr], output: out/sub.csv}\n";

static void test_contract_for_stage_takes_the_datasets_classes_else_the_labels(void **state)
{
    (void)state;
    static const float X[2] = {0, 1}, Xt[1] = {0}, y[2] = {0, 1};
    static const char *const ids[] = {"a"};
    char *dir = kp_test_tmpdir(), yaml[4096], err[KP_ERRLEN] = "";
    free(kp_test_write(dir, "sample.csv", "id,y\na,p\n"));
    snprintf(yaml, sizeof yaml, pipeline_yaml, "  submission: {labels: [cat, dog]}\n");
    kp_config *cfg = fx_config(dir, yaml);
    const kp_stage *sub = fx_stage(cfg, "sub");
    kp_contract *k = NULL;
    /* no dataset yet: the contract's labels */
    assert_int_equal(kp_contract_for_stage(cfg, sub, &k, err, sizeof err), 0);
    assert_int_equal(kp_contract_check(k, "s.csv", "id,y\na,dog\n", 11, err, sizeof err), 0);
    assert_int_equal(kp_contract_check(k, "s.csv", "id,y\na,p\n", 9, err, sizeof err),
                     KP_ERR_FORMAT);
    assert_string_equal(err, "s.csv:2:2: column 'y' of id 'a': 'p' is not one of the labels "
                             "cat, dog");
    kp_contract_free(k);
    /* a dataset: its classes name the columns; the labels still rule the label column */
    fx_data d = {KP_TASK_MULTICLASS, 2, "[\"p\",\"q\"]", 2, 1, 1, X, Xt, y, ids};
    fx_dataset(cfg, "prep", &d);
    free(kp_test_write(dir, "sample.csv", "id,p,q\na,0,0\n"));
    assert_int_equal(kp_contract_for_stage(cfg, sub, &k, err, sizeof err), 0);
    assert_int_equal(kp_contract_check(k, "s.csv", "id,p,q\na,0.5,0.5\n", 17, err, sizeof err), 0);
    assert_int_equal(kp_contract_check(k, "s.csv", "id,p,q\na,0.5,7.5\n", 17, err, sizeof err),
                     KP_ERR_FORMAT);
    assert_string_equal(err, "s.csv:2:3: column 'q' of id 'a': '7.5' is not a probability in "
                             "[0, 1]");
    kp_contract_free(k);
    kp_config_free(cfg);
    free(dir);
}

static void test_contract_docs_document_every_key(void **state)
{
    (void)state;
    char *path = kp_test_join(kp_test_root(), "docs/config.md"), *doc = kp_test_read(path);
    assert_non_null(doc);
    const char *start = strstr(doc, "\n### competition.submission\n");
    assert_non_null(start);
    const char *end = strstr(start + 1, "\n## ");
    for (int i = 0; kp_contract_keys[i].name; i++) {
        char row[128];
        snprintf(row, sizeof row, "| `%s` |", kp_contract_keys[i].name);
        const char *at = strstr(start, row);
        if (!at || (end && at > end))
            fail_msg("docs/config.md: competition.submission: key '%s' is not documented",
                     kp_contract_keys[i].name);
    }
    free(doc);
    free(path);
}

KP_TEST_GROUP(contract)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_contract_bad_files_fail_naming_the_place_and_the_id),
        cmocka_unit_test(test_contract_good_files_of_every_task_pass),
        cmocka_unit_test(test_contract_ids_repeated_in_the_sample_are_counted_and_ordered),
        cmocka_unit_test(test_contract_check_file_reads_gzip_files_uncompressed),
        cmocka_unit_test(test_contract_describe_gives_one_line_per_rule),
        cmocka_unit_test(test_contract_describe_names_numbers_tags_and_rle),
        cmocka_unit_test(test_contract_create_fails_without_the_samples_id_column),
        cmocka_unit_test(test_contract_without_a_sample_needs_columns_and_ids_any),
        cmocka_unit_test(test_contract_config_block_errors_name_file_line_column_and_key),
        cmocka_unit_test(test_contract_for_stage_takes_the_datasets_classes_else_the_labels),
        cmocka_unit_test(test_contract_docs_document_every_key),
    };
    return KP_RUN(contract, t);
}

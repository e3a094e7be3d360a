/* test_csv.c - lib/csv: RFC 4180 reading, error places, field writing. */
#include "kp_test.h"
#include "../lib/csv.h"
#include "../lib/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parses text as "t.csv", asserting success. */
static kp_csv *parse_ok(const char *text, size_t len)
{
    char err[KP_ERRLEN] = "";
    kp_csv *t = NULL;
    int rc = kp_csv_parse("t.csv", text, len, &t, err, sizeof err);
    if (rc != 0)
        fail_msg("parse failed: %s", err);
    return t;
}

/* Parses text expecting failure; returns the status, message in err. */
static int parse_fail(const char *text, char *err, size_t errlen)
{
    kp_csv *t = (kp_csv *)0x1;
    int rc = kp_csv_parse("t.csv", text, strlen(text), &t, err, errlen);
    assert_ptr_equal(t, (kp_csv *)0x1);   /* output untouched on failure */
    return rc;
}

static void test_csv_reads_header_and_rows(void **state)
{
    (void)state;
    const char *text = "id,x,y\n1,2.5,a\n2,3.5,b\n";
    kp_csv *t = parse_ok(text, strlen(text));
    assert_int_equal(kp_csv_cols(t), 3);
    assert_int_equal(kp_csv_rows(t), 2);
    assert_string_equal(kp_csv_header(t, 2), "y");
    assert_string_equal(kp_csv_get(t, 0, 1), "2.5");
    assert_string_equal(kp_csv_get(t, 1, 2), "b");
    assert_int_equal(kp_csv_find(t, "x"), 1);
    assert_int_equal(kp_csv_find(t, "nope"), -1);
    assert_string_equal(kp_csv_name(t), "t.csv");
    kp_csv_free(t);
}

static void test_csv_quotes_doubled_quotes_comma_newline(void **state)
{
    (void)state;
    const char *text = "a,b\n\"he said \"\"hi\"\"\",\"x,y\"\n\"line1\nline2\",\"\"\n";
    kp_csv *t = parse_ok(text, strlen(text));
    assert_int_equal(kp_csv_rows(t), 2);
    assert_string_equal(kp_csv_get(t, 0, 0), "he said \"hi\"");
    assert_string_equal(kp_csv_get(t, 0, 1), "x,y");
    assert_string_equal(kp_csv_get(t, 1, 0), "line1\nline2");
    assert_string_equal(kp_csv_get(t, 1, 1), "");
    kp_csv_free(t);
}

static void test_csv_line_numbers_follow_embedded_newlines(void **state)
{
    (void)state;
    const char *text = "a,b\n\"1\n2\n3\",x\n\n4,y\n";
    kp_csv *t = parse_ok(text, strlen(text));
    assert_int_equal(kp_csv_rows(t), 2);
    assert_int_equal(kp_csv_line(t, 0), 2);
    assert_int_equal(kp_csv_line(t, 1), 6);   /* after 3 lines of field and a blank line */
    assert_int_equal(kp_csv_line(t, 2), 0);
    kp_csv_free(t);
}

static void test_csv_crlf_line_ends(void **state)
{
    (void)state;
    const char *text = "a,b\r\n1,2\r\n\"x\r\ny\",3\r\n";
    kp_csv *t = parse_ok(text, strlen(text));
    assert_int_equal(kp_csv_rows(t), 2);
    assert_string_equal(kp_csv_header(t, 1), "b");
    assert_string_equal(kp_csv_get(t, 0, 1), "2");
    assert_string_equal(kp_csv_get(t, 1, 0), "x\r\ny");
    assert_string_equal(kp_csv_get(t, 1, 1), "3");
    kp_csv_free(t);
}

static void test_csv_bom_is_dropped_and_utf8_kept(void **state)
{
    (void)state;
    const char *text = "\xEF\xBB\xBFname,city\nJos\xC3\xA9,Z\xC3\xBCrich\n";
    kp_csv *t = parse_ok(text, strlen(text));
    assert_string_equal(kp_csv_header(t, 0), "name");
    assert_int_equal(kp_csv_find(t, "name"), 0);
    assert_string_equal(kp_csv_get(t, 0, 0), "Jos\xC3\xA9");
    assert_string_equal(kp_csv_get(t, 0, 1), "Z\xC3\xBCrich");
    kp_csv_free(t);
}

static void test_csv_trailing_newline_optional_blank_last_line_ignored(void **state)
{
    (void)state;
    const char *cases[] = {"a,b\n1,2", "a,b\n1,2\n", "a,b\n1,2\n\n", "a,b\r\n1,2\r\n\r\n"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kp_csv *t = parse_ok(cases[i], strlen(cases[i]));
        assert_int_equal(kp_csv_rows(t), 1);
        assert_string_equal(kp_csv_get(t, 0, 1), "2");
        kp_csv_free(t);
    }
}

static void test_csv_empty_field_is_kept_and_spaces_preserved(void **state)
{
    (void)state;
    const char *text = "a,b,c\n,,\n x , \"\" ,\n";
    /* the second row has a space after a closing quote: not RFC 4180 */
    char err[KP_ERRLEN];
    assert_int_equal(parse_fail(text, err, sizeof err), KP_ERR_FORMAT);
    const char *ok = "a,b,c\n,,\n x ,\"\", y\n";
    kp_csv *t = parse_ok(ok, strlen(ok));
    assert_int_equal(kp_csv_rows(t), 2);
    for (int c = 0; c < 3; c++)
        assert_string_equal(kp_csv_get(t, 0, c), "");
    assert_string_equal(kp_csv_get(t, 1, 0), " x ");
    assert_string_equal(kp_csv_get(t, 1, 1), "");
    assert_string_equal(kp_csv_get(t, 1, 2), " y");
    kp_csv_free(t);
}

static void test_csv_header_only_has_zero_rows(void **state)
{
    (void)state;
    kp_csv *t = parse_ok("a,b\n", 4);
    assert_int_equal(kp_csv_rows(t), 0);
    assert_int_equal(kp_csv_cols(t), 2);
    assert_null(kp_csv_get(t, 0, 0));
    kp_csv_free(t);
}

static void test_csv_ragged_row_names_row_and_column(void **state)
{
    (void)state;
    struct { const char *text, *msg; } cases[] = {
        {"a,b,c\n1,2,3\n4,5\n", "t.csv:3:3: row has 2 fields, the header has 3"},
        {"a,b,c\n1,2,3,4,5\n", "t.csv:2:4: row has 5 fields, the header has 3"},
        {"a,b\n\"x\ny\",1\n2\n", "t.csv:4:2: row has 1 field, the header has 2"},
        {"a,b\n1,2\n\n\n3\n", "t.csv:5:2: row has 1 field, the header has 2"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[KP_ERRLEN] = "";
        assert_int_equal(parse_fail(cases[i].text, err, sizeof err), KP_ERR_FORMAT);
        assert_string_equal(err, cases[i].msg);
    }
}

static void test_csv_unterminated_quote_names_row_and_field(void **state)
{
    (void)state;
    char err[KP_ERRLEN] = "";
    assert_int_equal(parse_fail("a,b\n1,2\n3,\"abc\n4,5\n", err, sizeof err), KP_ERR_FORMAT);
    assert_non_null(strstr(err, "t.csv:3:2: quoted field 2 never ends"));
}

static void test_csv_stray_quote_names_row_and_place(void **state)
{
    (void)state;
    struct { const char *text, *msg; } cases[] = {
        {"a,b\n1,2\"3\n", "t.csv:2:2: stray quote in field 2 (line 2, character 4)"},
        {"a,b\n\"1\"x,2\n", "t.csv:2:1: stray quote in field 1 (line 2, character 4)"},
        {"a,b\n\"1\n\"x,2\n", "t.csv:2:1: stray quote in field 1 (line 3, character 2)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[KP_ERRLEN] = "";
        assert_int_equal(parse_fail(cases[i].text, err, sizeof err), KP_ERR_FORMAT);
        if (!strstr(err, cases[i].msg))
            fail_msg("case %zu: got \"%s\"", i, err);
    }
}

static void test_csv_empty_file_is_an_error(void **state)
{
    (void)state;
    const char *cases[] = {"", "\n\n", "\xEF\xBB\xBF", "\r\n"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[KP_ERRLEN] = "";
        assert_int_equal(parse_fail(cases[i], err, sizeof err), KP_ERR_FORMAT);
        assert_string_equal(err, "t.csv:1:1: empty file: there is no header row");
    }
}

static void test_csv_duplicate_header_names_both_columns(void **state)
{
    (void)state;
    char err[KP_ERRLEN] = "";
    assert_int_equal(parse_fail("id,x,y,x\n1,2,3,4\n", err, sizeof err), KP_ERR_FORMAT);
    assert_string_equal(err, "t.csv:1:4: duplicate column name \"x\" (also column 2)");
}

static void test_csv_read_file_and_missing_file(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir();
    char *path = kp_test_write(dir, "d.csv", "a,b\r\n1,2\r\n");
    char err[KP_ERRLEN] = "";
    kp_csv *t = NULL;
    assert_int_equal(kp_csv_read(path, &t, err, sizeof err), 0);
    assert_string_equal(kp_csv_name(t), path);
    assert_string_equal(kp_csv_get(t, 0, 0), "1");
    kp_csv_free(t);
    char *empty = kp_test_write(dir, "e.csv", "");
    t = NULL;
    assert_int_equal(kp_csv_read(empty, &t, err, sizeof err), KP_ERR_FORMAT);
    assert_non_null(strstr(err, "e.csv:1:1: empty file"));
    char *missing = kp_test_join(dir, "nope.csv");
    assert_int_equal(kp_csv_read(missing, &t, err, sizeof err), KP_ERR_NOTFOUND);
    assert_non_null(strstr(err, "nope.csv: cannot open"));
    assert_null(t);
    free(dir);
    free(path);
    free(empty);
    free(missing);
}

static void test_csv_write_field_quotes_only_when_needed_and_round_trips(void **state)
{
    (void)state;
    struct { const char *in, *out; } cases[] = {
        {"plain", "plain"}, {"", ""}, {"a,b", "\"a,b\""}, {"say \"x\"", "\"say \"\"x\"\"\""},
        {"l1\nl2", "\"l1\nl2\""}, {"cr\r", "\"cr\r\""}, {" sp ", " sp "},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        assert_int_equal(kp_csv_write_field(f, "h"), 0);
        fputc('\n', f);
        assert_int_equal(kp_csv_write_field(f, cases[i].in), 0);
        fclose(f);
        assert_string_equal(buf + 2, cases[i].out);
        kp_csv *t = parse_ok(buf, len);
        if (cases[i].in[0]) {   /* an empty last line is a blank line, not a row */
            assert_int_equal(kp_csv_rows(t), 1);
            assert_string_equal(kp_csv_get(t, 0, 0), cases[i].in);
        }
        kp_csv_free(t);
        free(buf);
    }
}

static void test_csv_many_rows_keep_every_field(void **state)
{
    (void)state;
    size_t n = 20000;
    char *text = malloc(n * 32 + 16);
    size_t len = (size_t)sprintf(text, "i,sq,s\n");
    for (size_t i = 0; i < n; i++)
        len += (size_t)sprintf(text + len, "%zu,%zu,\"r%zu\"\n", i, i * i, i);
    kp_csv *t = parse_ok(text, len);
    assert_int_equal(kp_csv_rows(t), n);
    char want[32];
    for (size_t i = 0; i < n; i += 997) {
        sprintf(want, "%zu", i * i);
        assert_string_equal(kp_csv_get(t, i, 1), want);
        sprintf(want, "r%zu", i);
        assert_string_equal(kp_csv_get(t, i, 2), want);
        assert_int_equal(kp_csv_line(t, i), i + 2);
    }
    kp_csv_free(t);
    free(text);
}

KP_TEST_GROUP(csv)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_csv_reads_header_and_rows),
        cmocka_unit_test(test_csv_quotes_doubled_quotes_comma_newline),
        cmocka_unit_test(test_csv_line_numbers_follow_embedded_newlines),
        cmocka_unit_test(test_csv_crlf_line_ends),
        cmocka_unit_test(test_csv_bom_is_dropped_and_utf8_kept),
        cmocka_unit_test(test_csv_trailing_newline_optional_blank_last_line_ignored),
        cmocka_unit_test(test_csv_empty_field_is_kept_and_spaces_preserved),
        cmocka_unit_test(test_csv_header_only_has_zero_rows),
        cmocka_unit_test(test_csv_ragged_row_names_row_and_column),
        cmocka_unit_test(test_csv_unterminated_quote_names_row_and_field),
        cmocka_unit_test(test_csv_stray_quote_names_row_and_place),
        cmocka_unit_test(test_csv_empty_file_is_an_error),
        cmocka_unit_test(test_csv_duplicate_header_names_both_columns),
        cmocka_unit_test(test_csv_read_file_and_missing_file),
        cmocka_unit_test(test_csv_write_field_quotes_only_when_needed_and_round_trips),
        cmocka_unit_test(test_csv_many_rows_keep_every_field),
    };
    return KP_RUN(csv, t);
}

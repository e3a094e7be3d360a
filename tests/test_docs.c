/* test_docs.c - docs/config.md documents every registered stage key, model
 * parameter and metric, so the reference cannot fall behind the code. */
#include "kp_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../models/metric.h"
#include "../models/model.h"
#include "../stages/stage.h"

static char *read_config_doc(void)
{
    char *path = kp_test_join(kp_test_root(), "docs/config.md");
    char *text = kp_test_read(path);
    free(path);
    assert_non_null(text);
    return text;
}

/* Returns the text of section "### name" up to the next heading (heap). */
static char *section(const char *doc, const char *name)
{
    char head[128];
    snprintf(head, sizeof head, "\n### %s\n", name);
    const char *start = strstr(doc, head);
    if (!start)
        return NULL;
    start += strlen(head);
    const char *end = strstr(start, "\n#");
    size_t n = end ? (size_t)(end - start) : strlen(start);
    char *s = malloc(n + 1);
    memcpy(s, start, n);
    s[n] = 0;
    return s;
}

/* Fails naming the key when a table row "| `key` |" is missing from text. */
static void assert_documents_keys(const char *what, const char *text, const kp_keyspec *keys)
{
    for (int i = 0; keys && keys[i].name; i++) {
        char row[128];
        snprintf(row, sizeof row, "| `%s` |", keys[i].name);
        if (!strstr(text, row))
            fail_msg("docs/config.md: %s: key '%s' is not documented", what, keys[i].name);
    }
}

static void test_docs_document_every_stage_key(void **state)
{
    (void)state;
    char *doc = read_config_doc();
    for (int i = 0; i < kp_stage_type_count(); i++) {
        const kp_stage_ops *ops = kp_stage_at(i);
        char *text = section(doc, ops->name);
        if (!text)
            fail_msg("docs/config.md: no section '### %s'", ops->name);
        assert_documents_keys(ops->name, text, ops->keys);
        free(text);
    }
    free(doc);
}

static void test_docs_document_every_model_param(void **state)
{
    (void)state;
    char *doc = read_config_doc();
    for (int i = 0; i < kp_model_count(); i++) {
        const kp_model_ops *ops = kp_model_at(i);
        char *text = section(doc, ops->name);
        if (!text)
            fail_msg("docs/config.md: no section '### %s'", ops->name);
        assert_documents_keys(ops->name, text, ops->params);
        free(text);
    }
    free(doc);
}

static void test_docs_document_every_metric(void **state)
{
    (void)state;
    char *doc = read_config_doc();
    for (int i = 0; i < kp_metric_count(); i++) {
        char row[128];
        snprintf(row, sizeof row, "| `%s` |", kp_metric_at(i)->name);
        if (!strstr(doc, row))
            fail_msg("docs/config.md: metric '%s' is not documented", kp_metric_at(i)->name);
    }
    free(doc);
}

KP_TEST_GROUP(docs)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_docs_document_every_stage_key),
        cmocka_unit_test(test_docs_document_every_model_param),
        cmocka_unit_test(test_docs_document_every_metric),
    };
    return KP_RUN(docs, t);
}

/* config_yaml.c - libyaml's document tree, checked and read with located errors. */
#include "config_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "strmap.h"
#include "../lib/err.h"

#define MAX_DEPTH 64

yaml_node_t *kp_cy_node(kp_cfgctx *c, int index)
{
    return yaml_document_get_node(&c->doc, index);
}

int kp_cy_line(const yaml_node_t *n) { return (int)n->start_mark.line + 1; }
int kp_cy_col(const yaml_node_t *n) { return (int)n->start_mark.column + 1; }

const char *kp_cy_scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

int kp_cy_errat(kp_cfgctx *c, const yaml_node_t *n, int status, const char *fmt, ...)
{
    char msg[KP_ERRLEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!n)
        return kp_errf(c->err, c->errlen, status, "%s: %s", c->file, msg);
    return kp_errf(c->err, c->errlen, status, "%s:%d:%d: %s", c->file, kp_cy_line(n),
                   kp_cy_col(n), msg);
}

/* ---- loading and the structural checks ---- */

static int yaml_error(kp_cfgctx *c, const yaml_parser_t *p)
{
    if (p->error == YAML_MEMORY_ERROR)
        return kp_errf(c->err, c->errlen, KP_ERR_NOMEM, "%s: out of memory", c->file);
    return kp_errf(c->err, c->errlen, KP_ERR_CONFIG, "%s:%d:%d: YAML error: %s", c->file,
                   (int)p->problem_mark.line + 1, (int)p->problem_mark.column + 1,
                   p->problem ? p->problem : "malformed document");
}

typedef struct walk {
    kp_cfgctx *c;
    unsigned char *seen;     /* one mark per node index, so shared (aliased) nodes are walked once */
} walk;

/* Where the walk is: the key of each enclosing mapping, innermost last.
 * The dotted path is only written out for an error. */
typedef struct frame {
    const struct frame *up;  /* NULL at the top */
    const char *key;
} frame;

/* Writes the dotted path of f ("stages.lr.params"; "" at the top) into out. */
static void path_of(const frame *f, char *out, size_t n)
{
    if (!f) {
        out[0] = 0;
        return;
    }
    path_of(f->up, out, n);
    size_t len = strlen(out);
    snprintf(out + len, n - len, "%s%s", len ? "." : "", f->key);
}

static int walk_node(walk *w, int index, const frame *at, int depth);

/* Fails with "PATH: <msg>" at node k for a key of the mapping at `at`. */
static int key_error(walk *w, const yaml_node_t *k, const frame *at, const char *msg)
{
    char path[512];
    path_of(at, path, sizeof path);
    return kp_cy_errat(w->c, k, KP_ERR_CONFIG, "%s%s%s", path, *path ? ": " : "", msg);
}

static int duplicate(walk *w, const yaml_node_t *k, const yaml_node_t *prev, const frame *at)
{
    char msg[400];
    snprintf(msg, sizeof msg, "duplicate key '%s' (first at %d:%d)", kp_cy_scalar(k),
             kp_cy_line(prev), kp_cy_col(prev));
    return key_error(w, k, at, msg);
}

/* Fails on the first key repeated in pairs[0..np); a map of keys for long mappings. */
static int check_duplicates(walk *w, const yaml_node_pair_t *pairs, int np, const frame *at)
{
    kp_strmap *seen = np > 16 ? kp_strmap_create() : NULL;
    int rc = np > 16 && !seen ? kp_errf(w->c->err, w->c->errlen, KP_ERR_NOMEM, "out of memory") : 0;
    for (int i = 0; i < np && !rc; i++) {
        yaml_node_t *k = kp_cy_node(w->c, pairs[i].key);
        const char *key = kp_cy_scalar(k);
        int first = -1;
        if (!key)
            rc = key_error(w, k, at, "keys must be plain values, not lists or mappings");
        else if (seen && (first = kp_strmap_get(seen, key)) < 0 && kp_strmap_put(seen, key, i) < 0)
            rc = kp_errf(w->c->err, w->c->errlen, KP_ERR_NOMEM, "out of memory");
        for (int j = 0; !seen && !rc && j < i && first < 0; j++) {
            const char *pk = kp_cy_scalar(kp_cy_node(w->c, pairs[j].key));
            first = pk && strcmp(pk, key) == 0 ? j : -1;
        }
        if (!rc && first >= 0)
            rc = duplicate(w, k, kp_cy_node(w->c, pairs[first].key), at);
    }
    kp_strmap_free(seen);
    return rc;
}

static int walk_node(walk *w, int index, const frame *at, int depth)
{
    yaml_node_t *n = kp_cy_node(w->c, index);
    char path[512];
    if (!n || w->seen[index])
        return 0;
    w->seen[index] = 1;
    if (depth > MAX_DEPTH)
        return kp_cy_errat(w->c, n, KP_ERR_CONFIG, "nesting deeper than %d levels", MAX_DEPTH);
    if (n->type == YAML_SCALAR_NODE) {
        if (strlen((const char *)n->data.scalar.value) == n->data.scalar.length)
            return 0;
        path_of(at, path, sizeof path);
        return kp_cy_errat(w->c, n, KP_ERR_CONFIG, "%s: a value holds a NUL byte",
                           *path ? path : "config");
    }
    if (n->type == YAML_SEQUENCE_NODE) {
        for (yaml_node_item_t *it = n->data.sequence.items.start;
             it < n->data.sequence.items.top; it++)
            if (walk_node(w, *it, at, depth + 1))
                return KP_ERR_CONFIG;
        return 0;
    }
    yaml_node_pair_t *pairs = n->data.mapping.pairs.start;
    int np = (int)(n->data.mapping.pairs.top - pairs);
    int rc = check_duplicates(w, pairs, np, at);
    for (int i = 0; i < np && !rc; i++) {
        frame sub = { at, kp_cy_scalar(kp_cy_node(w->c, pairs[i].key)) };
        rc = walk_node(w, pairs[i].value, &sub, depth + 1);
    }
    return rc;
}

/* Fails if a second document follows the first. */
static int check_single_document(kp_cfgctx *c, yaml_parser_t *p)
{
    yaml_document_t next;
    if (!yaml_parser_load(p, &next))
        return yaml_error(c, p);
    yaml_node_t *root = yaml_document_get_root_node(&next);
    int rc = 0;
    if (root)
        rc = kp_errf(c->err, c->errlen, KP_ERR_CONFIG,
                     "%s:%d:%d: a config holds one YAML document, found a second", c->file,
                     (int)next.start_mark.line + 1, (int)next.start_mark.column + 1);
    yaml_document_delete(&next);
    return rc;
}

int kp_cy_load(kp_cfgctx *c, const char *yaml, size_t len)
{
    yaml_parser_t p;
    int rc = 0;
    if (!yaml_parser_initialize(&p))
        return kp_errf(c->err, c->errlen, KP_ERR_NOMEM, "%s: out of memory", c->file);
    yaml_parser_set_input_string(&p, (const unsigned char *)yaml, len);
    if (!yaml_parser_load(&p, &c->doc)) {
        rc = yaml_error(c, &p);
        goto fail;
    }
    c->have_doc = 1;
    if (!yaml_document_get_root_node(&c->doc)) {
        rc = kp_errf(c->err, c->errlen, KP_ERR_CONFIG, "%s: the config is empty", c->file);
        goto fail;
    }
    if ((rc = check_single_document(c, &p)))
        goto fail;
    size_t nodes = (size_t)(c->doc.nodes.top - c->doc.nodes.start) + 1;
    walk w = {c, calloc(nodes, 1)};
    if (!w.seen) {
        rc = kp_errf(c->err, c->errlen, KP_ERR_NOMEM, "%s: out of memory", c->file);
        goto fail;
    }
    rc = walk_node(&w, 1, NULL, 0);
    free(w.seen);
fail:
    yaml_parser_delete(&p);
    return rc;
}

void kp_cy_done(kp_cfgctx *c)
{
    if (c->have_doc)
        yaml_document_delete(&c->doc);
    c->have_doc = 0;
}

/* ---- reading mappings ---- */

yaml_node_t *kp_cy_get(kp_cfgctx *c, const yaml_node_t *map, const char *name,
                       yaml_node_t **key)
{
    if (key)
        *key = NULL;
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = kp_cy_node(c, p->key);
        const char *s = kp_cy_scalar(k);
        if (s && strcmp(s, name) == 0) {
            if (key)
                *key = k;
            return kp_cy_node(c, p->value);
        }
    }
    return NULL;
}

int kp_cy_check_keys(kp_cfgctx *c, const yaml_node_t *map, const char *where,
                     const char *const *allowed, int n)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = kp_cy_node(c, p->key);
        const char *s = kp_cy_scalar(k);
        int found = 0;
        for (int i = 0; i < n && !found; i++)
            found = strcmp(s, allowed[i]) == 0;
        if (found)
            continue;
        const char *near = kp_suggest(s, allowed, n);
        char in[600];
        snprintf(in, sizeof in, "%s%s", where && *where ? where : "", where && *where ? ": " : "");
        if (near)
            return kp_cy_errat(c, k, KP_ERR_CONFIG, "%sunknown key '%s' (did you mean '%s'?)",
                               in, s, near);
        return kp_cy_errat(c, k, KP_ERR_CONFIG, "%sunknown key '%s'", in, s);
    }
    return 0;
}

int kp_cy_want_map(kp_cfgctx *c, const yaml_node_t *n, const char *what)
{
    if (n && n->type == YAML_MAPPING_NODE)
        return 0;
    return kp_cy_errat(c, n, KP_ERR_CONFIG, "%s: expected a mapping of keys to values", what);
}

int kp_cy_set_param(kp_cfgctx *c, kp_params *p, const char *key, const yaml_node_t *value,
                    const char *where)
{
    int line = kp_cy_line(value), col = kp_cy_col(value);
    if (value->type == YAML_SCALAR_NODE) {
        if (kp_params_set(p, key, kp_cy_scalar(value), line, col))
            return kp_errf(c->err, c->errlen, KP_ERR_NOMEM, "out of memory");
        return 0;
    }
    if (value->type == YAML_MAPPING_NODE)
        return kp_cy_errat(c, value, KP_ERR_CONFIG,
                           "%s.%s: expected a value or a list of values, not a mapping", where, key);
    const yaml_node_item_t *it = value->data.sequence.items.start;
    int n = (int)(value->data.sequence.items.top - it);
    const char **items = calloc(n ? (size_t)n : 1, sizeof *items);
    if (!items)
        return kp_errf(c->err, c->errlen, KP_ERR_NOMEM, "out of memory");
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        yaml_node_t *item = kp_cy_node(c, it[i]);
        if (!(items[i] = kp_cy_scalar(item)))
            rc = kp_cy_errat(c, item, KP_ERR_CONFIG,
                             "%s.%s: list items must be plain values", where, key);
    }
    if (!rc && kp_params_set_list(p, key, items, n, line, col))
        rc = kp_errf(c->err, c->errlen, KP_ERR_NOMEM, "out of memory");
    free(items);
    return rc;
}

int kp_cy_map_params_except(kp_cfgctx *c, const yaml_node_t *map, kp_params *p,
                            const char *where, const char *const *skip)
{
    int rc = 0;
    for (yaml_node_pair_t *q = map->data.mapping.pairs.start;
         !rc && q < map->data.mapping.pairs.top; q++) {
        const char *k = kp_cy_scalar(kp_cy_node(c, q->key));
        int skipped = 0;
        for (int i = 0; skip && skip[i] && !skipped; i++)
            skipped = strcmp(k, skip[i]) == 0;
        if (!skipped)
            rc = kp_cy_set_param(c, p, k, kp_cy_node(c, q->value), where);
    }
    return rc;
}

int kp_cy_map_params(kp_cfgctx *c, const yaml_node_t *map, kp_params *p, const char *where,
                     const char *skip)
{
    const char *const list[] = {skip, NULL};
    return kp_cy_map_params_except(c, map, p, where, list);
}

int kp_cy_require(kp_cfgctx *c, const kp_params *p, const kp_keyspec *spec,
                  const yaml_node_t *at, const char *where)
{
    for (int i = 0; spec && spec[i].name; i++)
        if (!spec[i].def && !kp_params_has(p, spec[i].name))
            return kp_cy_errat(c, at, KP_ERR_CONFIG, "%s: missing required key '%s'", where,
                               spec[i].name);
    return 0;
}

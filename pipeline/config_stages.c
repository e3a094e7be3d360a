/* config_stages.c - the stages: block: declarations, matrix expansion, needs, cycles. */
#include "config_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/err.h"
#include "../stages/stage.h"

#define MAX_STAGES 4096

static const char *const reserved[] = {"type", "needs", "matrix", "params"};
#define N_RESERVED 4

/* A stage as declared, before its matrix is expanded. */
typedef struct decl {
    const char *name;                 /* borrowed from the document */
    yaml_node_t *key, *node;          /* the name and its mapping */
    const kp_stage_ops *ops;
    kp_params *opts, *params;
    yaml_node_t *needs, *matrix;      /* or NULL */
    int first, count;                 /* its stages in cfg->stages */
    char where[300];                  /* "stages.NAME" */
} decl;

typedef struct sctx {
    kp_cfgctx *c;
    decl *d;
    int n;
} sctx;

static int nomem(kp_cfgctx *c)
{
    return kp_errf(c->err, c->errlen, KP_ERR_NOMEM, "out of memory");
}

static int valid_name(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!(('a' <= *s && *s <= 'z') || ('A' <= *s && *s <= 'Z') || ('0' <= *s && *s <= '9') ||
              *s == '_' || *s == '-'))
            return 0;
    return 1;
}

/* ---- one declaration ---- */

/* Finds d->ops from the type: key. */
static int decl_type(kp_cfgctx *c, decl *d)
{
    yaml_node_t *tn = kp_cy_get(c, d->node, "type", NULL);
    const char *type = kp_cy_scalar(tn);
    if (!tn)
        return kp_cy_errat(c, d->key, KP_ERR_CONFIG, "%s: missing required key 'type'", d->where);
    if (!type)
        return kp_cy_errat(c, tn, KP_ERR_CONFIG, "%s.type: expected a stage type name", d->where);
    if ((d->ops = kp_stage_find(type)))
        return 0;
    const char *names[64];
    int n = kp_stage_type_count() < 64 ? kp_stage_type_count() : 64;
    for (int i = 0; i < n; i++)
        names[i] = kp_stage_at(i)->name;
    const char *near = kp_suggest(type, names, n);
    if (near)
        return kp_cy_errat(c, tn, KP_ERR_CONFIG,
                           "%s.type: unknown stage type '%s' (did you mean '%s'?)", d->where, type,
                           near);
    return kp_cy_errat(c, tn, KP_ERR_CONFIG, "%s.type: unknown stage type '%s'", d->where, type);
}

/* Fails unless the stage's keys are the reserved ones or its type's own. */
static int decl_keys(kp_cfgctx *c, decl *d)
{
    const char *names[80];
    int n = 0;
    for (; n < N_RESERVED; n++)
        names[n] = reserved[n];
    for (int i = 0; d->ops->keys && d->ops->keys[i].name && n < 80; i++)
        names[n++] = d->ops->keys[i].name;
    return kp_cy_check_keys(c, d->node, d->where, names, n);
}

static int decl_params(kp_cfgctx *c, decl *d, yaml_node_t *node)
{
    char w[320];
    snprintf(w, sizeof w, "%s.params", d->where);
    int rc = kp_cy_want_map(c, node, w);
    return rc ? rc : kp_cy_map_params(c, node, d->params, w, NULL);
}

/* Fails unless node is a stage name or a list of them. */
static int decl_needs(kp_cfgctx *c, decl *d, yaml_node_t *node)
{
    d->needs = node;
    if (node->type == YAML_SCALAR_NODE)
        return 0;
    if (node->type == YAML_SEQUENCE_NODE) {
        for (yaml_node_item_t *it = node->data.sequence.items.start;
             it < node->data.sequence.items.top; it++) {
            yaml_node_t *item = kp_cy_node(c, *it);
            if (item->type != YAML_SCALAR_NODE)
                return kp_cy_errat(c, item, KP_ERR_CONFIG,
                                   "%s.needs: expected stage names", d->where);
        }
        return 0;
    }
    return kp_cy_errat(c, node, KP_ERR_CONFIG, "%s.needs: expected a list of stage names",
                       d->where);
}

/* Sorts the declaration's keys into opts, params, needs and matrix. */
static int decl_body(kp_cfgctx *c, decl *d)
{
    int rc = 0;
    for (yaml_node_pair_t *q = d->node->data.mapping.pairs.start;
         !rc && q < d->node->data.mapping.pairs.top; q++) {
        const char *k = kp_cy_scalar(kp_cy_node(c, q->key));
        yaml_node_t *v = kp_cy_node(c, q->value);
        if (strcmp(k, "type") == 0)
            continue;
        else if (strcmp(k, "needs") == 0)
            rc = decl_needs(c, d, v);
        else if (strcmp(k, "params") == 0)
            rc = decl_params(c, d, v);
        else if (strcmp(k, "matrix") == 0) {
            char w[320];
            snprintf(w, sizeof w, "%s.matrix", d->where);
            d->matrix = v;
            rc = kp_cy_want_map(c, v, w);
        } else
            rc = kp_cy_set_param(c, d->opts, k, v, d->where);
    }
    return rc;
}

static int load_decl(kp_cfgctx *c, decl *d, yaml_node_t *key, yaml_node_t *node)
{
    int rc;
    d->key = key;
    d->node = node;
    d->name = kp_cy_scalar(key);
    snprintf(d->where, sizeof d->where, "stages.%s", d->name);
    if (!valid_name(d->name))
        return kp_cy_errat(c, key, KP_ERR_CONFIG,
                           "stages: bad stage name '%s' (use letters, digits, '_' and '-')",
                           d->name);
    if ((rc = kp_cy_want_map(c, node, d->where)) || (rc = decl_type(c, d)) ||
        (rc = decl_keys(c, d)))
        return rc;
    if (!(d->opts = kp_params_create()) || !(d->params = kp_params_create()))
        return nomem(c);
    return decl_body(c, d);
}

/* ---- the matrix ---- */

static int is_stage_key(const kp_stage_ops *ops, const char *key)
{
    for (int i = 0; ops->keys && ops->keys[i].name; i++)
        if (strcmp(ops->keys[i].name, key) == 0)
            return 1;
    return 0;
}

/* Checks one matrix entry and multiplies *count by its length. */
static int matrix_entry(kp_cfgctx *c, decl *d, yaml_node_pair_t *q, long *count)
{
    yaml_node_t *kn = kp_cy_node(c, q->key), *v = kp_cy_node(c, q->value);
    const char *k = kp_cy_scalar(kn);
    for (int i = 0; i < N_RESERVED; i++)
        if (strcmp(k, reserved[i]) == 0)
            return kp_cy_errat(c, kn, KP_ERR_CONFIG, "%s.matrix: '%s' cannot vary", d->where, k);
    if (kp_params_has(d->opts, k) || kp_params_has(d->params, k))
        return kp_cy_errat(c, kn, KP_ERR_CONFIG, "%s.matrix: '%s' is also set outside the matrix",
                           d->where, k);
    int n = v->type == YAML_SEQUENCE_NODE
                ? (int)(v->data.sequence.items.top - v->data.sequence.items.start) : 0;
    if (n == 0)
        return kp_cy_errat(c, v, KP_ERR_CONFIG, "%s.matrix.%s: expected a non-empty list of values",
                           d->where, k);
    for (int i = 0; i < n; i++) {
        yaml_node_t *item = kp_cy_node(c, v->data.sequence.items.start[i]);
        if (!kp_cy_scalar(item))
            return kp_cy_errat(c, item, KP_ERR_CONFIG,
                               "%s.matrix.%s: list items must be plain values", d->where, k);
    }
    *count *= n;
    if (*count > MAX_STAGES)
        return kp_cy_errat(c, kn, KP_ERR_CONFIG, "%s.matrix: more than %d combinations",
                           d->where, MAX_STAGES);
    return 0;
}

static int matrix_count(kp_cfgctx *c, decl *d)
{
    long count = 1;
    int rc = 0;
    if (d->matrix)
        for (yaml_node_pair_t *q = d->matrix->data.mapping.pairs.start;
             !rc && q < d->matrix->data.mapping.pairs.top; q++)
            rc = matrix_entry(c, d, q, &count);
    d->count = (int)count;
    return rc;
}

/* Sets combination `combo`'s matrix values into st and appends ",K=V" to name. */
static int apply_combo(kp_cfgctx *c, const decl *d, kp_stage *st, int combo, kp_buf *name)
{
    yaml_node_pair_t *start = d->matrix->data.mapping.pairs.start;
    yaml_node_pair_t *q = d->matrix->data.mapping.pairs.top;
    int stride = 1;
    while (q-- > start) {     /* the last key varies fastest */
        yaml_node_t *v = kp_cy_node(c, q->value);
        int n = (int)(v->data.sequence.items.top - v->data.sequence.items.start);
        yaml_node_t *item = kp_cy_node(c, v->data.sequence.items.start[(combo / stride) % n]);
        const char *k = kp_cy_scalar(kp_cy_node(c, q->key));
        kp_params *dst = is_stage_key(d->ops, k) ? st->opts : st->params;
        stride *= n;
        if (kp_params_set(dst, k, kp_cy_scalar(item), kp_cy_line(item), kp_cy_col(item)))
            return nomem(c);
    }
    for (q = start; q < d->matrix->data.mapping.pairs.top; q++) {
        const char *k = kp_cy_scalar(kp_cy_node(c, q->key));
        const char *val = kp_params_get(is_stage_key(d->ops, k) ? st->opts : st->params, k);
        if (kp_buf_printf(name, "%s%s=%s", q == start ? "/" : ",", k, val))
            return nomem(c);
    }
    return 0;
}

/* Makes stage number `combo` of declaration d into st (already zeroed). */
static int expand_one(kp_cfgctx *c, const decl *d, kp_stage *st, int combo)
{
    kp_buf name;
    kp_buf_init(&name, 0);
    int rc = 0;
    st->line = kp_cy_line(d->key);
    st->col = kp_cy_col(d->key);
    st->ops = d->ops;
    if (!(st->base = strdup(d->name)) || !(st->type = strdup(d->ops->name)) ||
        !(st->opts = kp_params_clone(d->opts)) || !(st->params = kp_params_clone(d->params)) ||
        kp_buf_adds(&name, d->name)) {
        rc = nomem(c);
        goto fail;
    }
    if (d->matrix && d->count > 0 && (rc = apply_combo(c, d, st, combo, &name)))
        goto fail;
    if (!(st->name = kp_buf_take(&name))) {
        rc = nomem(c);
        goto fail;
    }
    if ((rc = kp_cy_require(c, st->opts, d->ops->keys, d->key, d->where)))
        goto fail;
    rc = kp_params_validate(st->opts, d->ops->keys, c->file, d->where, c->err, c->errlen);
fail:
    kp_buf_free(&name);
    return rc;
}

static int expand_all(sctx *s)
{
    kp_config *cfg = s->c->cfg;
    long total = 0;
    for (int i = 0; i < s->n; i++)
        total += s->d[i].count;
    if (total > MAX_STAGES)
        return kp_cy_errat(s->c, s->d[0].key, KP_ERR_CONFIG, "stages: more than %d stages",
                           MAX_STAGES);
    if (!(cfg->stages = calloc((size_t)total, sizeof *cfg->stages)))
        return nomem(s->c);
    for (int i = 0; i < s->n; i++) {
        s->d[i].first = cfg->n_stages;
        for (int j = 0; j < s->d[i].count; j++) {
            int rc = expand_one(s->c, &s->d[i], &cfg->stages[cfg->n_stages++], j);
            if (rc)
                return rc;
        }
    }
    return 0;
}

/* ---- needs ---- */

static const decl *find_decl(const sctx *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->d[i].name, name) == 0)
            return &s->d[i];
    return NULL;
}

static int unknown_need(sctx *s, const decl *d, const yaml_node_t *item)
{
    const char *name = kp_cy_scalar(item);
    const char **names = malloc((size_t)s->n * sizeof *names);
    if (!names)
        return nomem(s->c);
    for (int i = 0; i < s->n; i++)
        names[i] = s->d[i].name;
    const char *near = kp_suggest(name, names, s->n);
    int rc = near ? kp_cy_errat(s->c, item, KP_ERR_CONFIG,
                                "%s.needs: unknown stage '%s' (did you mean '%s'?)", d->where,
                                name, near)
                  : kp_cy_errat(s->c, item, KP_ERR_CONFIG, "%s.needs: unknown stage '%s'",
                                d->where, name);
    free(names);
    return rc;
}

/* Appends the stages that need-name item stands for to out[*n] (no repeats). */
static int add_need(sctx *s, const decl *d, const yaml_node_t *item, int *out, int *n)
{
    const kp_config *cfg = s->c->cfg;
    const decl *t = find_decl(s, kp_cy_scalar(item));
    int first = t ? t->first : kp_config_find_stage(cfg, kp_cy_scalar(item));
    int count = t ? t->count : 1;
    if (first < 0)
        return unknown_need(s, d, item);
    for (int i = first; i < first + count; i++) {
        int seen = 0;
        for (int j = 0; j < *n && !seen; j++)
            seen = out[j] == i;
        if (!seen)
            out[(*n)++] = i;
    }
    return 0;
}

/* Resolves d's needs once and gives every one of its stages a copy. */
static int resolve_needs(sctx *s, const decl *d)
{
    kp_config *cfg = s->c->cfg;
    yaml_node_item_t one = 0, *items = &one;
    int n_items = 0, n = 0, rc = 0;
    if (!d->needs)
        return 0;
    if (d->needs->type == YAML_SCALAR_NODE) {
        one = (yaml_node_item_t)(d->needs - s->c->doc.nodes.start) + 1;
        n_items = 1;
    } else {
        items = d->needs->data.sequence.items.start;
        n_items = (int)(d->needs->data.sequence.items.top - items);
    }
    int *idx = malloc(((size_t)cfg->n_stages + 1) * sizeof *idx);
    if (!idx)
        return nomem(s->c);
    for (int i = 0; i < n_items && !rc; i++)
        rc = add_need(s, d, kp_cy_node(s->c, items[i]), idx, &n);
    for (int j = 0; !rc && j < d->count; j++) {
        kp_stage *st = &cfg->stages[d->first + j];
        if (!(st->needs = malloc(((size_t)n + 1) * sizeof *st->needs))) {
            rc = nomem(s->c);
            break;
        }
        memcpy(st->needs, idx, (size_t)n * sizeof *idx);
        st->n_needs = n;
    }
    free(idx);
    return rc;
}

/* ---- cycles ---- */

typedef struct dfs {
    kp_cfgctx *c;
    char *mark;      /* 0 unvisited, 1 on the stack, 2 done */
    int *stack, depth;
} dfs;

static int report_cycle(dfs *g, int u)
{
    const kp_config *cfg = g->c->cfg;
    kp_buf path;
    kp_buf_init(&path, 0);
    int pos = g->depth - 1, bad = 0;
    while (pos > 0 && g->stack[pos] != u)
        pos--;
    for (int i = pos; i < g->depth && !bad; i++)
        bad = kp_buf_printf(&path, "%s -> ", cfg->stages[g->stack[i]].name);
    bad = bad || kp_buf_adds(&path, cfg->stages[u].name);
    int rc = bad ? nomem(g->c)
                 : kp_errf(g->c->err, g->c->errlen, KP_ERR_CYCLE, "%s:%d:%d: stages: cycle: %s",
                           g->c->file, cfg->stages[u].line, cfg->stages[u].col,
                           kp_buf_str(&path));
    kp_buf_free(&path);
    return rc;
}

static int visit(dfs *g, int v)
{
    const kp_stage *st = &g->c->cfg->stages[v];
    g->mark[v] = 1;
    g->stack[g->depth++] = v;
    for (int i = 0; i < st->n_needs; i++) {
        int u = st->needs[i], rc = 0;
        if (g->mark[u] == 1)
            return report_cycle(g, u);
        if (g->mark[u] == 0 && (rc = visit(g, u)))
            return rc;
    }
    g->mark[v] = 2;
    g->depth--;
    return 0;
}

static int check_cycles(kp_cfgctx *c)
{
    int n = c->cfg->n_stages, rc = 0;
    dfs g = {c, calloc((size_t)n + 1, 1), malloc(((size_t)n + 1) * sizeof(int)), 0};
    if (!g.mark || !g.stack)
        rc = nomem(c);
    for (int v = 0; !rc && v < n; v++)
        if (g.mark[v] == 0)
            rc = visit(&g, v);
    free(g.mark);
    free(g.stack);
    return rc;
}

/* ---- the block ---- */

static int load_decls(sctx *s, const yaml_node_t *key, const yaml_node_t *node)
{
    int rc;
    if ((rc = kp_cy_want_map(s->c, node, "stages")))
        return rc;
    yaml_node_pair_t *q = node->data.mapping.pairs.start;
    int n = (int)(node->data.mapping.pairs.top - q);
    if (n == 0)
        return kp_cy_errat(s->c, key, KP_ERR_CONFIG, "stages: no stages declared");
    if (n > MAX_STAGES)
        return kp_cy_errat(s->c, key, KP_ERR_CONFIG, "stages: more than %d stages", MAX_STAGES);
    if (!(s->d = calloc((size_t)n, sizeof *s->d)))
        return nomem(s->c);
    for (; s->n < n; s->n++) {
        decl *d = &s->d[s->n];
        if ((rc = load_decl(s->c, d, kp_cy_node(s->c, q[s->n].key), kp_cy_node(s->c, q[s->n].value))) ||
            (rc = matrix_count(s->c, d))) {
            s->n++;   /* so its params are freed */
            return rc;
        }
    }
    return 0;
}

int kp_cfg_load_stages(kp_cfgctx *c, const yaml_node_t *key, const yaml_node_t *node)
{
    sctx s = {c, NULL, 0};
    int rc = load_decls(&s, key, node);
    if (!rc)
        rc = expand_all(&s);
    for (int i = 0; !rc && i < s.n; i++)
        rc = resolve_needs(&s, &s.d[i]);
    if (!rc)
        rc = check_cycles(c);
    for (int i = 0; i < s.n; i++) {
        kp_params_free(s.d[i].opts);
        kp_params_free(s.d[i].params);
    }
    free(s.d);
    return rc;
}

int kp_cfg_check_stages(kp_cfgctx *c)
{
    for (int i = 0; i < c->cfg->n_stages; i++) {
        kp_stage *st = &c->cfg->stages[i];
        int rc = st->ops->check ? st->ops->check(st, c->cfg, c->err, c->errlen) : 0;
        if (rc)
            return rc;
    }
    return 0;
}

/* config_stages.c - the stages: block: declarations and matrix expansion (needs: config_needs.c). */
#include "config_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../lib/err.h"
#include "../stages/stage.h"

#define MAX_STAGES 4096

static const char *const reserved[] = {"type", "needs", "matrix", "params"};
#define N_RESERVED 4

typedef kp_cfgdecl decl;

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

/* Fills d's matrix tables (keys, values, strides) from its checked matrix node. */
static int matrix_tables(kp_cfgctx *c, decl *d)
{
    yaml_node_pair_t *q = d->matrix->data.mapping.pairs.start;
    int n = (int)(d->matrix->data.mapping.pairs.top - q);
    d->keys = calloc((size_t)n, sizeof *d->keys);
    d->is_opt = calloc((size_t)n, 1);
    d->n_vals = calloc((size_t)n, sizeof *d->n_vals);
    d->stride = calloc((size_t)n, sizeof *d->stride);
    d->vals = calloc((size_t)n, sizeof *d->vals);
    if (!d->keys || !d->is_opt || !d->n_vals || !d->stride || !d->vals)
        return nomem(c);
    d->n_keys = n;
    for (int k = n - 1, stride = 1; k >= 0; k--) {   /* the last key varies fastest */
        yaml_node_t *v = kp_cy_node(c, q[k].value);
        d->keys[k] = kp_cy_scalar(kp_cy_node(c, q[k].key));
        d->is_opt[k] = (unsigned char)is_stage_key(d->ops, d->keys[k]);
        d->n_vals[k] = (int)(v->data.sequence.items.top - v->data.sequence.items.start);
        d->stride[k] = stride;
        stride *= d->n_vals[k];
        if (!(d->vals[k] = malloc((size_t)d->n_vals[k] * sizeof *d->vals[k])))
            return nomem(c);
        for (int i = 0; i < d->n_vals[k]; i++)
            d->vals[k][i] = kp_cy_node(c, v->data.sequence.items.start[i]);
    }
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
    return rc || !d->matrix ? rc : matrix_tables(c, d);
}

int kp_cfg_matrix_key(const kp_cfgdecl *d, const char *key, size_t len)
{
    for (int k = 0; k < d->n_keys; k++)
        if (strncmp(d->keys[k], key, len) == 0 && d->keys[k][len] == 0)
            return k;
    return -1;
}

const char *kp_cfg_matrix_value(const kp_cfgdecl *d, int k, int combo)
{
    return kp_cy_scalar(d->vals[k][(combo / d->stride[k]) % d->n_vals[k]]);
}

static void free_decl(decl *d)
{
    kp_params_free(d->opts);
    kp_params_free(d->params);
    for (int k = 0; d->vals && k < d->n_keys; k++)
        free(d->vals[k]);
    free(d->vals);
    free(d->keys);
    free(d->is_opt);
    free(d->n_vals);
    free(d->stride);
}

/* ---- expansion ---- */

/* Sets combination `combo`'s matrix values into st and appends "/K=V,K=V" to name. */
static int apply_combo(kp_cfgctx *c, const decl *d, kp_stage *st, int combo, kp_buf *name)
{
    for (int k = 0; k < d->n_keys; k++) {
        const yaml_node_t *item = d->vals[k][(combo / d->stride[k]) % d->n_vals[k]];
        const char *v = kp_cy_scalar(item);
        if (kp_params_set(d->is_opt[k] ? st->opts : st->params, d->keys[k], v, kp_cy_line(item),
                          kp_cy_col(item)) ||
            kp_buf_adds(name, k ? "," : "/") || kp_buf_adds(name, d->keys[k]) ||
            kp_buf_adds(name, "=") || kp_buf_adds(name, v))
            return nomem(c);
    }
    return 0;
}

/* Returns 1 if a matrix key of d sets a stage key (so each expansion's opts
 * must be validated on its own). */
static int matrix_sets_opts(const decl *d)
{
    for (int k = 0; k < d->n_keys; k++)
        if (d->is_opt[k])
            return 1;
    return 0;
}

/* Makes stage number `combo` of declaration d into st (already zeroed);
 * tmpl is d's opts validated and shared by every expansion, or NULL when
 * each expansion's opts differ; name is scratch space. */
static int expand_one(kp_cfgctx *c, const decl *d, kp_params *tmpl, kp_stage *st, int combo,
                      kp_buf *name)
{
    int rc = 0;
    kp_buf_reset(name);
    st->line = kp_cy_line(d->key);
    st->col = kp_cy_col(d->key);
    st->ops = d->ops;
    st->base = combo > 0 ? st[-combo].base : kp_cfg_store(c, d->name, strlen(d->name));
    st->type = combo > 0 ? st[-combo].type : kp_cfg_store(c, d->ops->name, strlen(d->ops->name));
    if (!st->base || !st->type || !(st->opts = tmpl ? tmpl : kp_params_clone(d->opts)) ||
        !(st->params = kp_params_clone(d->params)) || kp_buf_adds(name, d->name))
        return nomem(c);
    if ((rc = apply_combo(c, d, st, combo, name)))
        return rc;
    if (!(st->name = kp_cfg_store(c, name->data, name->len)))
        return nomem(c);
    if (tmpl)
        return 0;   /* validated once for all expansions */
    if ((rc = kp_cy_require(c, st->opts, d->ops->keys, d->key, d->where)))
        return rc;
    return kp_params_validate(st->opts, d->ops->keys, c->file, d->where, c->err, c->errlen);
}

/* Expands declaration d into cfg->stages. */
static int expand_decl(kp_cfgctx *c, decl *d)
{
    kp_config *cfg = c->cfg;
    kp_params *tmpl = NULL;
    kp_buf name;
    int rc = 0;
    kp_buf_init(&name, 0);
    d->first = cfg->n_stages;
    if (d->count > 1 && !matrix_sets_opts(d)) {   /* the same opts in every expansion */
        if (!(tmpl = kp_params_clone(d->opts)) || (rc = kp_cfg_share(c, tmpl)))
            return rc ? rc : nomem(c);
        if (!(rc = kp_cy_require(c, tmpl, d->ops->keys, d->key, d->where)))
            rc = kp_params_validate(tmpl, d->ops->keys, c->file, d->where, c->err, c->errlen);
    }
    for (int j = 0; !rc && j < d->count; j++)
        rc = expand_one(c, d, tmpl, &cfg->stages[cfg->n_stages++], j, &name);
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
        int rc = expand_decl(s->c, &s->d[i]);
        if (rc)
            return rc;
    }
    return 0;
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
    if (!rc)
        rc = kp_cfg_resolve_needs(c, s.d, s.n);
    if (!rc)
        rc = kp_cfg_check_cycles(c);
    for (int i = 0; i < s.n; i++)
        free_decl(&s.d[i]);
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

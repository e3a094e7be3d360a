/* config_needs.c - the stages' needs, resolved into stage indices, and the cycle check.
 *
 * A need entry is a stage name ("prep"), a matrix base ("fit": every
 * expansion) or a selection "BASE/K=V,K=V" naming some of BASE's matrix keys
 * ("fit/m=3": every expansion of fit whose m is 3; naming every key is one
 * expansion's full name).  Values compare as written in the YAML.  In a
 * stage with a matrix, "{K}" in an entry is that expansion's value of its
 * own matrix key K, so `needs: ["fit/m={m}"]` gives merge/m=3 the fits of
 * m=3 only.  Entries without a placeholder are resolved once per
 * declaration; entries with one, once per expansion.
 */
#include "config_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "strmap.h"
#include "../lib/err.h"

#define MAX_NEED 4096

typedef struct nctx {
    kp_cfgctx *c;
    const kp_cfgdecl *d;     /* all declarations */
    int n_decls;
    const kp_cfgdecl *self;  /* the declaration being resolved */
    int *out, n_out;         /* the needs so far (stage indices) */
    int *mark, stamp;        /* mark[i] == stamp: stage i is in out */
    kp_strmap *names;        /* declaration name -> index */
    struct vindex **vix;     /* per declaration: its matrix values by text, made on use */
} nctx;

static int nomem(kp_cfgctx *c)
{
    return kp_errf(c->err, c->errlen, KP_ERR_NOMEM, "out of memory");
}

/* Returns the declaration called name (len bytes), or NULL. */
static const kp_cfgdecl *find_decl(const nctx *x, const char *name, size_t len)
{
    char key[MAX_NEED];
    if (len >= sizeof key)
        return NULL;
    memcpy(key, name, len);
    key[len] = 0;
    int i = kp_strmap_get(x->names, key);
    return i >= 0 ? &x->d[i] : NULL;
}

static void add(nctx *x, int stage)
{
    if (x->mark[stage] != x->stamp) {
        x->mark[stage] = x->stamp;
        x->out[x->n_out++] = stage;
    }
}

/* ---- errors ---- */

/* Fails with "WHERE.needs: <what> 'name'" and the nearest candidate suggested. */
static int suggest_err(nctx *x, const yaml_node_t *item, const char *what, const char *name,
                       const char *const *cands, int n)
{
    const char *near = kp_suggest(name, cands, n);
    return kp_cy_errat(x->c, item, KP_ERR_CONFIG, "%s.needs: %s '%s'%s%s%s", x->self->where,
                       what, name, near ? " (did you mean '" : "", near ? near : "",
                       near ? "'?)" : "");
}

static int unknown_stage(nctx *x, const yaml_node_t *item, const char *name)
{
    const char **names = malloc((size_t)x->n_decls * sizeof *names);
    if (!names)
        return nomem(x->c);
    for (int i = 0; i < x->n_decls; i++)
        names[i] = x->d[i].name;
    int rc = suggest_err(x, item, "unknown stage", name, names, x->n_decls);
    free(names);
    return rc;
}

static int unknown_key(nctx *x, const yaml_node_t *item, const kp_cfgdecl *t, const char *key)
{
    char what[400];
    if (t->n_keys == 0)
        return kp_cy_errat(x->c, item, KP_ERR_CONFIG,
                           "%s.needs: stage '%s' has no matrix to select '%s' from",
                           x->self->where, t->name, key);
    snprintf(what, sizeof what, "stage '%s' has no matrix key", t->name);
    return suggest_err(x, item, what, key, t->keys, t->n_keys);
}

/* ---- one entry ---- */

/* Writes entry text with every {K} replaced by combination combo's value of
 * this stage's matrix key K into out. */
static int substitute(nctx *x, const yaml_node_t *item, int combo, char *out, size_t outlen)
{
    const char *p = kp_cy_scalar(item);
    size_t n = 0;
    while (*p) {
        const char *end = *p == '{' ? strchr(p + 1, '}') : NULL;
        const char *v = p;
        size_t len = 1;
        if (end) {
            int k = kp_cfg_matrix_key(x->self, p + 1, (size_t)(end - p - 1));
            if (k < 0) {
                char name[256];
                snprintf(name, sizeof name, "%.*s", (int)(end - p - 1), p + 1);
                return x->self->n_keys == 0
                    ? kp_cy_errat(x->c, item, KP_ERR_CONFIG,
                                  "%s.needs: placeholder {%s}: this stage has no matrix",
                                  x->self->where, name)
                    : kp_cy_errat(x->c, item, KP_ERR_CONFIG,
                                  "%s.needs: placeholder {%s} is not a key of this stage's matrix",
                                  x->self->where, name);
            }
            v = kp_cfg_matrix_value(x->self, k, combo);
            len = strlen(v);
            end++;
        }
        if (n + len >= outlen)
            return kp_cy_errat(x->c, item, KP_ERR_CONFIG, "%s.needs: entry too long",
                               x->self->where);
        memcpy(out + n, v, len);
        n += len;
        p = end ? end : p + 1;
    }
    out[n] = 0;
    return 0;
}

/* The values of one matrix key, looked up by their text. */
typedef struct vindex {
    kp_strmap *first;        /* value -> its first index */
    int *next;               /* index -> the next index with the same value, or -1 */
} vindex;

/* Returns the value index of t's matrix key k, made on first use (NULL: no memory). */
static const vindex *value_index(nctx *x, const kp_cfgdecl *t, int k)
{
    vindex **v = &x->vix[t - x->d];
    if (!*v && !(*v = calloc((size_t)t->n_keys, sizeof **v)))
        return NULL;
    vindex *ix = &(*v)[k];
    if (ix->first)
        return ix;
    if (!(ix->first = kp_strmap_create()) ||
        !(ix->next = malloc((size_t)t->n_vals[k] * sizeof *ix->next)))
        return NULL;
    for (int i = t->n_vals[k] - 1; i >= 0; i--) {   /* backwards: chains in value order */
        const char *val = kp_cy_scalar(t->vals[k][i]);
        ix->next[i] = kp_strmap_get(ix->first, val);
        if (kp_strmap_put(ix->first, val, i) < 0)
            return NULL;
    }
    return ix;
}

/* The expansions a selection admits: per key, the admitted value indices
 * (list[k][0..len[k]), or all of them when list[k] is NULL). */
typedef struct selection {
    int **list, *len;
} selection;

/* Narrows sel by one constraint "K=V" (text, len bytes). */
static int constrain(nctx *x, const yaml_node_t *item, const kp_cfgdecl *t, const char *text,
                     size_t len, selection *sel, const char *entry)
{
    const char *eq = memchr(text, '=', len);
    char key[256], val[MAX_NEED];
    if (!eq || eq == text)
        return kp_cy_errat(x->c, item, KP_ERR_CONFIG,
                           "%s.needs: '%s': expected BASE/KEY=VALUE,KEY=VALUE", x->self->where,
                           entry);
    int k = kp_cfg_matrix_key(t, text, (size_t)(eq - text));
    if (k < 0) {
        snprintf(key, sizeof key, "%.*s", (int)(eq - text), text);
        return unknown_key(x, item, t, key);
    }
    const vindex *ix = value_index(x, t, k);
    if (!ix)
        return nomem(x->c);
    snprintf(val, sizeof val, "%.*s", (int)(len - (size_t)(eq + 1 - text)), eq + 1);
    int n = 0, *now = malloc((size_t)t->n_vals[k] * sizeof *now);
    if (!now)
        return nomem(x->c);
    for (int i = kp_strmap_get(ix->first, val); i >= 0; i = ix->next[i]) {
        int admitted = !sel->list[k];   /* the key is not narrowed yet */
        for (int j = 0; !admitted && j < sel->len[k]; j++)
            admitted = sel->list[k][j] == i;
        if (admitted)
            now[n++] = i;
    }
    free(sel->list[k]);
    sel->list[k] = now;
    sel->len[k] = n;
    return 0;
}

/* Adds every expansion of t that sel admits; fails if there is none. */
static int add_selected(nctx *x, const yaml_node_t *item, const kp_cfgdecl *t,
                        const selection *sel, const char *entry)
{
    int *pos = calloc((size_t)t->n_keys, sizeof *pos), k, found = 0, empty = 0;
    if (!pos)
        return nomem(x->c);
    for (k = 0; k < t->n_keys; k++)
        empty |= sel->len[k] == 0;
    while (!empty) {   /* an odometer over the admitted values, the last key fastest */
        int combo = 0;
        for (k = 0; k < t->n_keys; k++)
            combo += (sel->list[k] ? sel->list[k][pos[k]] : pos[k]) * t->stride[k];
        add(x, t->first + combo);
        found = 1;
        for (k = t->n_keys - 1; k >= 0 && ++pos[k] == sel->len[k]; k--)
            pos[k] = 0;
        if (k < 0)
            break;
    }
    free(pos);
    if (found)
        return 0;
    if (strcmp(entry, kp_cy_scalar(item)) != 0)
        return kp_cy_errat(x->c, item, KP_ERR_CONFIG,
                           "%s.needs: '%s' (from '%s') matches no stage", x->self->where, entry,
                           kp_cy_scalar(item));
    return kp_cy_errat(x->c, item, KP_ERR_CONFIG, "%s.needs: '%s' matches no stage",
                       x->self->where, entry);
}

/* Resolves a selection "BASE/K=V,..." (entry, slash at its '/'). */
static int add_selection(nctx *x, const yaml_node_t *item, const char *entry, const char *slash)
{
    const kp_cfgdecl *t = find_decl(x, entry, (size_t)(slash - entry));
    if (!t) {
        char base[256];
        snprintf(base, sizeof base, "%.*s", (int)(slash - entry), entry);
        return unknown_stage(x, item, base);
    }
    if (t->n_keys == 0)
        return unknown_key(x, item, t, slash + 1);
    selection sel = { calloc((size_t)t->n_keys, sizeof *sel.list),
                      malloc((size_t)t->n_keys * sizeof *sel.len) };
    int rc = sel.list && sel.len ? 0 : nomem(x->c);
    for (int k = 0; !rc && k < t->n_keys; k++)
        sel.len[k] = t->n_vals[k];
    for (const char *p = slash + 1; !rc;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if ((rc = constrain(x, item, t, p, len, &sel, entry)) || !comma)
            break;
        p = comma + 1;
    }
    if (!rc)
        rc = add_selected(x, item, t, &sel, entry);
    for (int k = 0; sel.list && k < t->n_keys; k++)
        free(sel.list[k]);
    free(sel.list);
    free(sel.len);
    return rc;
}

/* Adds the stages that entry `item` stands for in combination combo of x->self. */
static int add_entry(nctx *x, const yaml_node_t *item, int combo)
{
    char entry[MAX_NEED];
    const char *text = kp_cy_scalar(item);
    int rc;
    if (strchr(text, '{')) {
        if ((rc = substitute(x, item, combo, entry, sizeof entry)))
            return rc;
        text = entry;
    }
    const char *slash = strchr(text, '/');
    if (slash)
        return add_selection(x, item, text, slash);
    const kp_cfgdecl *t = find_decl(x, text, strlen(text));
    if (!t)
        return unknown_stage(x, item, text);
    for (int i = t->first; i < t->first + t->count; i++)
        add(x, i);
    return 0;
}

/* ---- a declaration ---- */

/* Gives stage st a copy of x's resolved needs. */
static int give(nctx *x, kp_stage *st)
{
    if (!(st->needs = malloc(((size_t)x->n_out + 1) * sizeof *st->needs)))
        return nomem(x->c);
    memcpy(st->needs, x->out, (size_t)x->n_out * sizeof *x->out);
    st->n_needs = x->n_out;
    return 0;
}

/* Returns the need entries of d (its one scalar, or its list) in *items. */
static int entries(kp_cfgctx *c, const kp_cfgdecl *d, yaml_node_t ***items)
{
    const yaml_node_t *n = d->needs;
    int count = n->type == YAML_SCALAR_NODE ? 1
              : (int)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (!(*items = malloc(((size_t)count + 1) * sizeof **items)))
        return nomem(c);
    for (int i = 0; i < count; i++)
        (*items)[i] = n->type == YAML_SCALAR_NODE ? (yaml_node_t *)n
                                                  : kp_cy_node(c, n->data.sequence.items.start[i]);
    return count;
}

/* Resolves the needs of x->self, once or per expansion (placeholders). */
static int resolve_decl(nctx *x)
{
    const kp_cfgdecl *d = x->self;
    kp_stage *stages = x->c->cfg->stages;
    yaml_node_t **items = NULL;
    int n = d->needs ? entries(x->c, d, &items) : 0, per_combo = 0, rc = 0;
    if (n < 0)
        return n;
    for (int i = 0; i < n; i++)
        per_combo |= strchr(kp_cy_scalar(items[i]), '{') != NULL;
    for (int j = 0; !rc && j < d->count; j++) {
        if (j == 0 || per_combo) {
            x->n_out = 0;
            x->stamp++;
            for (int i = 0; !rc && i < n; i++)
                rc = add_entry(x, items[i], j);
        }
        if (!rc)
            rc = give(x, &stages[d->first + j]);
    }
    free(items);
    return rc;
}

int kp_cfg_resolve_needs(kp_cfgctx *c, kp_cfgdecl *d, int n)
{
    int total = c->cfg->n_stages;
    nctx x = {c, d, n, NULL, malloc(((size_t)total + 1) * sizeof(int)), 0,
              calloc((size_t)total + 1, sizeof(int)), 0, kp_strmap_create(),
              calloc((size_t)n + 1, sizeof *x.vix)};
    int rc = x.out && x.mark && x.names && x.vix ? 0 : nomem(c);
    for (int i = 0; !rc && i < n; i++)
        if (kp_strmap_get(x.names, d[i].name) < 0 && kp_strmap_put(x.names, d[i].name, i) < 0)
            rc = nomem(c);
    for (int i = 0; !rc && i < n; i++) {
        x.self = &d[i];
        rc = resolve_decl(&x);
    }
    free(x.out);
    free(x.mark);
    kp_strmap_free(x.names);
    for (int i = 0; x.vix && i < n; i++)
        for (int k = 0; x.vix[i] && k < d[i].n_keys; k++) {
            kp_strmap_free(x.vix[i][k].first);
            free(x.vix[i][k].next);
        }
    for (int i = 0; x.vix && i < n; i++)
        free(x.vix[i]);
    free(x.vix);
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

int kp_cfg_check_cycles(kp_cfgctx *c)
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

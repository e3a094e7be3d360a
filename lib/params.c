/* params.c - named parameters from the config, and the specs that check them. */
#include "params.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "err.h"

typedef struct kp_pval {
    char *key;
    char *value;          /* the scalar, or NULL for a list */
    char **items;         /* the list (n items), or NULL for a scalar */
    int n;
    int line, col;
} kp_pval;

struct kp_params {
    kp_pval *v;
    int n, cap;
};

/* ---- the list ---- */

kp_params *kp_params_create(void)
{
    return calloc(1, sizeof(kp_params));
}

static void pval_clear(kp_pval *v)
{
    free(v->value);
    for (int i = 0; i < v->n; i++)
        free(v->items[i]);
    free(v->items);
    v->value = NULL;
    v->items = NULL;
    v->n = 0;
}

void kp_params_free(kp_params *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->n; i++) {
        pval_clear(&p->v[i]);
        free(p->v[i].key);
    }
    free(p->v);
    free(p);
}

static kp_pval *find(const kp_params *p, const char *key)
{
    for (int i = 0; p && i < p->n; i++)
        if (strcmp(p->v[i].key, key) == 0)
            return &p->v[i];
    return NULL;
}

/* Returns the slot for key (a new empty one appended if absent), or NULL. */
static kp_pval *slot(kp_params *p, const char *key)
{
    kp_pval *v = find(p, key);
    if (v)
        return v;
    if (p->n == p->cap) {
        int cap = p->cap ? p->cap * 2 : 8;
        kp_pval *nv = realloc(p->v, (size_t)cap * sizeof *nv);
        if (!nv)
            return NULL;
        p->v = nv;
        p->cap = cap;
    }
    char *k = strdup(key);
    if (!k)
        return NULL;
    v = &p->v[p->n++];
    memset(v, 0, sizeof *v);
    v->key = k;
    return v;
}

int kp_params_set(kp_params *p, const char *key, const char *value, int line, int col)
{
    char *copy = strdup(value);
    kp_pval *v = copy ? slot(p, key) : NULL;
    if (!v) {
        free(copy);
        return KP_ERR_NOMEM;
    }
    pval_clear(v);
    v->value = copy;
    v->line = line;
    v->col = col;
    return 0;
}

/* Returns a heap copy of n strings, or NULL (n == 0 gives a 1-slot array). */
static char **copy_items(const char *const *items, int n)
{
    char **c = calloc(n > 0 ? (size_t)n : 1, sizeof *c);
    for (int i = 0; c && i < n; i++) {
        if (!(c[i] = strdup(items[i]))) {
            while (i-- > 0)
                free(c[i]);
            free(c);
            return NULL;
        }
    }
    return c;
}

int kp_params_set_list(kp_params *p, const char *key, const char *const *items, int n,
                       int line, int col)
{
    char **copy = copy_items(items, n);
    kp_pval *v = copy ? slot(p, key) : NULL;
    if (!v) {
        for (int i = 0; copy && i < n; i++)
            free(copy[i]);
        free(copy);
        return KP_ERR_NOMEM;
    }
    pval_clear(v);
    v->items = copy;
    v->n = n;
    v->line = line;
    v->col = col;
    return 0;
}

kp_params *kp_params_clone(const kp_params *p)
{
    kp_params *c = kp_params_create();
    for (int i = 0; c && i < p->n; i++) {
        const kp_pval *v = &p->v[i];
        int rc = v->items
            ? kp_params_set_list(c, v->key, (const char *const *)v->items, v->n, v->line, v->col)
            : kp_params_set(c, v->key, v->value, v->line, v->col);
        if (rc) {
            kp_params_free(c);
            return NULL;
        }
    }
    return c;
}

int kp_params_count(const kp_params *p) { return p->n; }

const char *kp_params_key(const kp_params *p, int i)
{
    return i >= 0 && i < p->n ? p->v[i].key : NULL;
}

int kp_params_has(const kp_params *p, const char *key) { return find(p, key) != NULL; }

const char *kp_params_get(const kp_params *p, const char *key)
{
    const kp_pval *v = find(p, key);
    return v ? v->value : NULL;
}

int kp_params_get_list(const kp_params *p, const char *key, const char *const **items, int *n)
{
    const kp_pval *v = find(p, key);
    if (!v)
        return KP_ERR_NOTFOUND;
    *items = v->items ? (const char *const *)v->items : (const char *const *)&v->value;
    *n = v->items ? v->n : 1;
    return 0;
}

void kp_params_where(const kp_params *p, const char *key, int *line, int *col)
{
    const kp_pval *v = find(p, key);
    *line = v ? v->line : 0;
    *col = v ? v->col : 0;
}

/* ---- parsing scalars ---- */

static int parse_int(const char *s, long long *out)
{
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (!*s || *end || errno)
        return -1;
    *out = x;
    return 0;
}

static int parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (!*s || *end || errno == ERANGE || !isfinite(x))
        return -1;
    *out = x;
    return 0;
}

static int parse_bool(const char *s, int *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return *out = 1, 0;
        if (strcasecmp(s, no[i]) == 0)
            return *out = 0, 0;
    }
    return -1;
}

double kp_params_double(const kp_params *p, const char *key, double def)
{
    const char *s = kp_params_get(p, key);
    double x;
    return s && parse_double(s, &x) == 0 ? x : def;
}

long long kp_params_int(const kp_params *p, const char *key, long long def)
{
    const char *s = kp_params_get(p, key);
    long long x;
    return s && parse_int(s, &x) == 0 ? x : def;
}

int kp_params_bool(const kp_params *p, const char *key, int def)
{
    const char *s = kp_params_get(p, key);
    int x;
    return s && parse_bool(s, &x) == 0 ? x : def;
}

const char *kp_params_str(const kp_params *p, const char *key, const char *def)
{
    const char *s = kp_params_get(p, key);
    return s ? s : def;
}

/* ---- suggestions ---- */

static size_t levenshtein(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return (size_t)-1;   /* too long to be a typo worth suggesting */
    size_t row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

const char *kp_suggest(const char *word, const char *const *candidates, int n)
{
    size_t limit = strlen(word) / 3 > 2 ? strlen(word) / 3 : 2;
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    for (int i = 0; i < n; i++) {
        size_t d = candidates[i] ? levenshtein(word, candidates[i]) : (size_t)-1;
        if (d < best_d) {
            best_d = d;
            best = candidates[i];
        }
    }
    return best && best_d <= limit ? best : NULL;
}

int kp_keyspec_count(const kp_keyspec *spec)
{
    int n = 0;
    while (spec && spec[n].name)
        n++;
    return n;
}

/* ---- validation ---- */

typedef struct vctx {
    const char *file, *where;
    char *err;
    size_t errlen;
} vctx;

/* Formats "FILE:LINE:COL: WHERE.KEY: " (or shorter forms) into buf. */
static void place(const vctx *c, const kp_pval *v, const char *key, char *buf, size_t n)
{
    const char *w = c->where ? c->where : "";
    const char *dot = *w && key ? "." : "";
    if (v && v->line > 0)
        snprintf(buf, n, "%s:%d:%d: %s%s%s", c->file, v->line, v->col, w, dot, key ? key : "");
    else
        snprintf(buf, n, "%s: %s%s%s", c->file, w, dot, key ? key : "");
}

static int unknown_key(const vctx *c, const kp_pval *v, const kp_keyspec *spec)
{
    int n = kp_keyspec_count(spec);
    const char *names[64];
    for (int i = 0; i < n && i < 64; i++)
        names[i] = spec[i].name;
    const char *s = kp_suggest(v->key, names, n < 64 ? n : 64);
    char at[512];
    place(c, v, NULL, at, sizeof at);
    if (s)
        return kp_errf(c->err, c->errlen, KP_ERR_CONFIG,
                       "%s: unknown key '%s' (did you mean '%s'?)", at, v->key, s);
    return kp_errf(c->err, c->errlen, KP_ERR_CONFIG, "%s: unknown key '%s'", at, v->key);
}

/* Returns 1 if s is one of the '|'-separated choices. */
static int in_choices(const char *s, const char *choices)
{
    size_t n = strlen(s);
    for (const char *p = choices; p && *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, s, n) == 0)
            return 1;
        p = bar ? bar + 1 : p + len;
    }
    return 0;
}

static int bad_choice(const vctx *c, const kp_pval *v, const kp_keyspec *k, const char *at)
{
    char buf[256], *names[32];
    int n = 0;
    snprintf(buf, sizeof buf, "%s", k->choices ? k->choices : "");
    for (char *tok = strtok(buf, "|"); tok && n < 32; tok = strtok(NULL, "|"))
        names[n++] = tok;
    const char *s = kp_suggest(v->value, (const char *const *)names, n);
    const char *all = k->choices ? k->choices : "";
    if (s)
        return kp_errf(c->err, c->errlen, KP_ERR_CONFIG,
                       "%s: '%s' is not one of %s (did you mean '%s'?)", at, v->value, all, s);
    return kp_errf(c->err, c->errlen, KP_ERR_CONFIG, "%s: '%s' is not one of %s", at,
                   v->value, all);
}

static int check_bounds(const vctx *c, const kp_keyspec *k, double x, const char *at,
                        const char *text)
{
    if (!(k->min < k->max))
        return 0;
    if (x < k->min)
        return kp_errf(c->err, c->errlen, KP_ERR_CONFIG, "%s: %s is below the minimum %g",
                       at, text, k->min);
    if (x > k->max)
        return kp_errf(c->err, c->errlen, KP_ERR_CONFIG, "%s: %s is above the maximum %g",
                       at, text, k->max);
    return 0;
}

/* Checks one present value against its spec entry. */
static int check_value(const vctx *c, const kp_pval *v, const kp_keyspec *k)
{
    char at[512];
    place(c, v, v->key, at, sizeof at);
    if (k->type == KP_PT_LIST)
        return 0;
    if (v->items)
        return kp_errf(c->err, c->errlen, KP_ERR_CONFIG,
                       "%s: expected a single value, got a list", at);
    long long i;
    double x;
    int b;
    switch (k->type) {
    case KP_PT_INT:
        if (parse_int(v->value, &i))
            return kp_errf(c->err, c->errlen, KP_ERR_CONFIG,
                           "%s: expected a whole number, got '%s'", at, v->value);
        return check_bounds(c, k, (double)i, at, v->value);
    case KP_PT_FLOAT:
        if (parse_double(v->value, &x))
            return kp_errf(c->err, c->errlen, KP_ERR_CONFIG,
                           "%s: expected a number, got '%s'", at, v->value);
        return check_bounds(c, k, x, at, v->value);
    case KP_PT_BOOL:
        if (parse_bool(v->value, &b))
            return kp_errf(c->err, c->errlen, KP_ERR_CONFIG,
                           "%s: expected true or false, got '%s'", at, v->value);
        return 0;
    case KP_PT_ENUM:
        return in_choices(v->value, k->choices) ? 0 : bad_choice(c, v, k, at);
    default:
        if (!k->def && !*v->value)
            return kp_errf(c->err, c->errlen, KP_ERR_CONFIG, "%s: must not be empty", at);
        return 0;
    }
}

static const kp_keyspec *spec_find(const kp_keyspec *spec, const char *key)
{
    for (int i = 0; spec && spec[i].name; i++)
        if (strcmp(spec[i].name, key) == 0)
            return &spec[i];
    return NULL;
}

int kp_params_validate(kp_params *p, const kp_keyspec *spec, const char *file,
                       const char *where, char *err, size_t errlen)
{
    vctx c = {file ? file : "config", where, err, errlen};
    for (int i = 0; i < p->n; i++) {
        const kp_keyspec *k = spec_find(spec, p->v[i].key);
        int rc = k ? check_value(&c, &p->v[i], k) : unknown_key(&c, &p->v[i], spec);
        if (rc)
            return rc;
    }
    for (int i = 0; spec && spec[i].name; i++) {
        const kp_keyspec *k = &spec[i];
        if (find(p, k->name))
            continue;
        if (!k->def) {
            char at[512];
            place(&c, NULL, NULL, at, sizeof at);
            return kp_errf(err, errlen, KP_ERR_CONFIG, "%s: missing required key '%s'", at,
                           k->name);
        }
        if (*k->def && kp_params_set(p, k->name, k->def, 0, 0))
            return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    }
    return 0;
}

/* ---- canonical text ---- */

static int cmp_key(const void *a, const void *b)
{
    return strcmp((*(const kp_pval *const *)a)->key, (*(const kp_pval *const *)b)->key);
}

/* Appends s with '\\', ',', ']' and newlines escaped so lists stay unambiguous. */
static int add_escaped(kp_buf *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == ',' || *s == ']' || *s == '[' || *s == '\n') {
            char e[2] = {'\\', *s == '\n' ? 'n' : *s};
            if (kp_buf_add(out, e, 2))
                return KP_ERR_NOMEM;
        } else if (kp_buf_add(out, s, 1)) {
            return KP_ERR_NOMEM;
        }
    }
    return 0;
}

static int add_value(kp_buf *out, const kp_pval *v)
{
    if (!v->items)
        return add_escaped(out, v->value);
    if (kp_buf_adds(out, "["))
        return KP_ERR_NOMEM;
    for (int i = 0; i < v->n; i++)
        if ((i && kp_buf_adds(out, ",")) || add_escaped(out, v->items[i]))
            return KP_ERR_NOMEM;
    return kp_buf_adds(out, "]") ? KP_ERR_NOMEM : 0;
}

int kp_params_canonical(const kp_params *p, kp_buf *out)
{
    const kp_pval **sorted = malloc((p->n ? (size_t)p->n : 1) * sizeof *sorted);
    int rc = KP_ERR_NOMEM;
    if (!sorted)
        return rc;
    for (int i = 0; i < p->n; i++)
        sorted[i] = &p->v[i];
    qsort(sorted, (size_t)p->n, sizeof *sorted, cmp_key);
    for (int i = 0; i < p->n; i++) {
        if (add_escaped(out, sorted[i]->key) || kp_buf_adds(out, "=") ||
            add_value(out, sorted[i]) || kp_buf_adds(out, "\n"))
            goto fail;
    }
    rc = 0;
fail:
    free(sorted);
    return rc;
}

/* config.c - loading a pipeline config: the top level, the competition block, paths. */
#include "config_int.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "../lib/err.h"
#include "../lib/hash.h"
#include "../models/metric.h"
#include "../stages/contract.h"
#include "../stages/stage.h"

static const kp_keyspec comp_keys[] = {
    {"name", KP_PT_STRING, "", NULL, 0, 0, "competition name (default: the config's file name)"},
    {"train", KP_PT_PATH, NULL, NULL, 0, 0, "training CSV"},
    {"test", KP_PT_PATH, NULL, NULL, 0, 0, "test CSV"},
    {"sample_submission", KP_PT_PATH, "", NULL, 0, 0, "sample submission CSV"},
    {"id", KP_PT_STRING, NULL, NULL, 0, 0, "id column"},
    {"target", KP_PT_LIST, "", NULL, 0, 0,
     "target column, or a list of them (segmentation: the train CSV's RLE column, or none "
     "when the masks are PNG files)"},
    {"task", KP_PT_ENUM, NULL, "binary|multiclass|regression|multilabel|segmentation", 0, 0,
     "task kind"},
    {"metric", KP_PT_STRING, NULL, NULL, 0, 0, "competition metric"},
    {"beta", KP_PT_FLOAT, "1", NULL, 1e-6, 1e6, "beta of fbeta metrics"},
    {"threshold", KP_PT_FLOAT, "0.5", NULL, 0, 1, "probability threshold of label metrics"},
    {"empty_score", KP_PT_FLOAT, "1", NULL, 0, 1,
     "dice/iou of an image whose true and predicted masks are both empty"},
    {NULL, 0, NULL, NULL, 0, 0, NULL}
};

static const kp_keyspec fold_keys[] = {
    {"k", KP_PT_INT, "5", NULL, 2, 1e6, "number of folds"},
    {"kind", KP_PT_ENUM, "", "plain|stratified|group", 0, 0,
     "how rows are split (default: stratified for binary/multiclass, else plain)"},
    {"seed", KP_PT_INT, "42", NULL, 0, 9e18, "shuffling seed"},
    {"repeats", KP_PT_INT, "1", NULL, 1, 1000, "repetitions with derived seeds"},
    {"group", KP_PT_STRING, "", NULL, 0, 0, "group column (kind: group)"},
    {NULL, 0, NULL, NULL, 0, 0, NULL}
};

/* ---- what the loader owns besides the public struct ---- */

/* Stage names, bases, types and folders live in big blocks freed with the
 * config, and the opts that a matrix's expansions have in common are one
 * kp_params they all point at (kept in `shared`). */
typedef struct store_block {
    struct store_block *next;
    size_t used, cap;
    char data[];
} store_block;

typedef struct config_store {
    kp_config pub;                /* first: a kp_config * is a config_store * */
    store_block *blocks;
    kp_params **shared;
    int n_shared, cap_shared;
} config_store;

#define STORE_BLOCK 65536

static config_store *S(kp_config *c) { return (config_store *)c; }

char *kp_cfg_store(kp_cfgctx *c, const char *s, size_t n)
{
    config_store *cs = S(c->cfg);
    store_block *b = cs->blocks;
    if (!b || b->cap - b->used < n + 1) {
        size_t cap = n + 1 > STORE_BLOCK ? n + 1 : STORE_BLOCK;
        if (!(b = malloc(sizeof *b + cap)))
            return NULL;
        b->next = cs->blocks, b->used = 0, b->cap = cap;
        cs->blocks = b;
    }
    char *copy = b->data + b->used;
    memcpy(copy, s, n);
    copy[n] = 0;
    b->used += n + 1;
    return copy;
}

int kp_cfg_share(kp_cfgctx *c, kp_params *p)
{
    config_store *cs = S(c->cfg);
    if (cs->n_shared == cs->cap_shared) {
        int cap = cs->cap_shared ? 2 * cs->cap_shared : 16;
        kp_params **n = realloc(cs->shared, (size_t)cap * sizeof *n);
        if (!n) {
            kp_params_free(p);
            return kp_errf(c->err, c->errlen, KP_ERR_NOMEM, "out of memory");
        }
        cs->shared = n, cs->cap_shared = cap;
    }
    cs->shared[cs->n_shared++] = p;
    return 0;
}

/* ---- paths ---- */

/* Rewrites an absolute path in place without ".", ".." and repeated slashes. */
static void normalize(char *path)
{
    char *src = strdup(path), *save = NULL;
    size_t n = 0;
    if (!src)
        return;   /* left as it is: still a valid path */
    for (char *t = strtok_r(src, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
        if (strcmp(t, "..") == 0) {
            while (n > 0 && path[--n] != '/')
                ;
        } else if (strcmp(t, ".") != 0) {
            size_t len = strlen(t);
            path[n++] = '/';
            memcpy(path + n, t, len);   /* never longer than what was read */
            n += len;
        }
    }
    if (n == 0)
        path[n++] = '/';
    path[n] = 0;
    free(src);
}

/* Returns 1 if path (absolute) holds "//", a "." or ".." component, or a trailing '/'. */
static int needs_normalize(const char *path)
{
    for (const char *p = strchr(path, '/'); p; p = strchr(p + 1, '/')) {
        const char *q = p + 1;
        if (*q == '/' || *q == 0 || (q[0] == '.' && (q[1] == '/' || q[1] == 0)) ||
            (q[0] == '.' && q[1] == '.' && (q[2] == '/' || q[2] == 0)))
            return p != path || *q != 0;   /* "/" alone is fine */
    }
    return 0;
}

int kp_config_path(const kp_config *c, const char *rel, char *out, size_t outlen)
{
    size_t nd = rel[0] == '/' ? 0 : strlen(c->dir), nr = strlen(rel);
    if (nd + 1 + nr >= outlen)
        return KP_ERR_ARG;
    if (nd) {
        memcpy(out, c->dir, nd);
        out[nd++] = '/';
    }
    memcpy(out + nd, rel, nr + 1);
    if (rel[0] != '/' && needs_normalize(out))
        normalize(out);
    return 0;
}

/* Sets cfg->dir to the absolute folder of cfg->path (realpath when it exists). */
static int set_dir(kp_config *cfg)
{
    char buf[PATH_MAX], real[PATH_MAX];
    const char *slash = strrchr(cfg->path, '/');
    int n = slash ? snprintf(buf, sizeof buf, "%.*s", (int)(slash - cfg->path + 1), cfg->path)
                  : snprintf(buf, sizeof buf, ".");
    if (n < 0 || (size_t)n >= sizeof buf)
        return KP_ERR_ARG;
    if (realpath(buf, real)) {
        cfg->dir = strdup(real);
    } else {
        char cwd[PATH_MAX], joined[2 * PATH_MAX + 2];
        if (buf[0] != '/' && !getcwd(cwd, sizeof cwd))
            return KP_ERR_IO;
        snprintf(joined, sizeof joined, "%s%s%s", buf[0] == '/' ? "" : cwd,
                 buf[0] == '/' ? "" : "/", buf);
        normalize(joined);
        cfg->dir = strdup(joined);
    }
    return cfg->dir ? 0 : KP_ERR_NOMEM;
}

/* Returns the config's file name without folder and .yaml/.yml (heap). */
static char *config_basename(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *b = slash ? slash + 1 : path;
    size_t n = strlen(b);
    if (n > 5 && strcmp(b + n - 5, ".yaml") == 0)
        n -= 5;
    else if (n > 4 && strcmp(b + n - 4, ".yml") == 0)
        n -= 4;
    return strndup(b, n);
}

/* Resolves the path param key into *out; a missing file is noted in
 * c->absent (check_absent fails unless a stage writes it). */
static int comp_path(kp_cfgctx *c, const kp_params *p, const char *key, char **out)
{
    const char *rel = kp_params_get(p, key);
    char abs[PATH_MAX];
    int line, col;
    struct stat sb;
    if (!rel || !*rel)
        return 0;
    kp_params_where(p, key, &line, &col);
    if (kp_config_path(c->cfg, rel, abs, sizeof abs))
        return kp_errf(c->err, c->errlen, KP_ERR_CONFIG, "%s:%d:%d: competition.%s: path too long",
                       c->file, line, col, key);
    if (stat(abs, &sb) != 0) {
        if (c->n_absent < 4) {
            c->absent[c->n_absent].key = key;
            c->absent[c->n_absent].line = line;
            c->absent[c->n_absent++].col = col;
        }
    } else if (!S_ISREG(sb.st_mode))
        return kp_errf(c->err, c->errlen, KP_ERR_CONFIG,
                       "%s:%d:%d: competition.%s: not a regular file: %s", c->file, line, col,
                       key, abs);
    *out = strdup(abs);
    return *out ? 0 : kp_errf(c->err, c->errlen, KP_ERR_NOMEM, "out of memory");
}

/* ---- the competition block ---- */

/* Fills comp->metric after checking it is registered and fits the task. */
static int comp_metric(kp_cfgctx *c, const kp_params *p, kp_competition *comp)
{
    const char *name = kp_params_get(p, "metric");
    int line, col;
    kp_params_where(p, "metric", &line, &col);
    const kp_metric_ops *m = kp_metric_find(name);
    if (!m) {
        const char *names[64];
        int n = kp_metric_count() < 64 ? kp_metric_count() : 64;
        for (int i = 0; i < n; i++)
            names[i] = kp_metric_at(i)->name;
        const char *near = kp_suggest(name, names, n);
        return kp_errf(c->err, c->errlen, KP_ERR_CONFIG,
                       "%s:%d:%d: competition.metric: unknown metric '%s'%s%s%s", c->file, line,
                       col, name, near ? " (did you mean '" : "", near ? near : "",
                       near ? "'?)" : "");
    }
    if (!(m->tasks & KP_TASK_BIT(comp->task)))
        return kp_errf(c->err, c->errlen, KP_ERR_CONFIG,
                       "%s:%d:%d: competition.metric: metric '%s' does not apply to %s tasks",
                       c->file, line, col, name, kp_task_name(comp->task));
    comp->metric = strdup(name);
    return comp->metric ? 0 : kp_errf(c->err, c->errlen, KP_ERR_NOMEM, "out of memory");
}

static int comp_targets(kp_cfgctx *c, const kp_params *p, kp_competition *comp)
{
    const char *const *items = NULL;
    int n = 0, line, col;
    if (kp_params_get_list(p, "target", &items, &n) < 0)
        n = 0;   /* no target key: items and n are not set */
    kp_params_where(p, "target", &line, &col);
    const char *task = kp_params_get(p, "task");
    if ((n == 0 || !*items[0]) && task && strcmp(task, "segmentation") == 0)
        return 0;
    if (n == 0 || !*items[0])
        return kp_errf(c->err, c->errlen, KP_ERR_CONFIG,
                       "%s:%d:%d: competition.target: name at least one column", c->file, line, col);
    if (!(comp->targets = calloc((size_t)n, sizeof *comp->targets)))
        return kp_errf(c->err, c->errlen, KP_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n; i++)
        if (!(comp->targets[comp->n_targets++] = strdup(items[i])))
            return kp_errf(c->err, c->errlen, KP_ERR_NOMEM, "out of memory");
    return 0;
}

/* Checks that group is given exactly when kind is group. */
static int folds_group(kp_cfgctx *c, const kp_params *p, const kp_competition *comp)
{
    const char *group = kp_params_get(p, "group");
    int want = comp->folds.kind == KP_FOLDS_GROUP, has = group && *group, line, col;
    if (want == has)
        return 0;
    kp_params_where(p, group ? "group" : "kind", &line, &col);
    return kp_errf(c->err, c->errlen, KP_ERR_CONFIG, "%s:%d:%d: competition.folds.group: %s",
                   c->file, line, col, has ? "is only used with kind: group"
                                           : "names the group column and is required with kind: group");
}

/* Reads and checks the folds: mapping (node may be NULL: all defaults). */
static int comp_folds(kp_cfgctx *c, const yaml_node_t *node, kp_competition *comp)
{
    static const char *const names[] = {"k", "kind", "seed", "repeats", "group"};
    const char *w = "competition.folds";
    kp_params *p = kp_params_create();
    int rc = p ? 0 : kp_errf(c->err, c->errlen, KP_ERR_NOMEM, "out of memory");
    if (!rc && node && !(rc = kp_cy_want_map(c, node, w)) &&
        !(rc = kp_cy_check_keys(c, node, w, names, 5)))
        rc = kp_cy_map_params(c, node, p, w, NULL);
    if (rc || (rc = kp_params_validate(p, fold_keys, c->file, w, c->err, c->errlen)))
        goto fail;
    const char *kind = kp_params_get(p, "kind"), *group = kp_params_get(p, "group");
    comp->folds.k = (int)kp_params_int(p, "k", 5);
    comp->folds.repeats = (int)kp_params_int(p, "repeats", 1);
    comp->folds.seed = (uint64_t)kp_params_int(p, "seed", 42);
    if (!kind || !*kind) /* stratify where there are classes to stratify on */
        kind = comp->task == KP_TASK_BINARY || comp->task == KP_TASK_MULTICLASS ? "stratified"
                                                                                : "plain";
    comp->folds.kind = kind[0] == 'p' ? KP_FOLDS_PLAIN
                     : kind[0] == 's' ? KP_FOLDS_STRATIFIED : KP_FOLDS_GROUP;
    if ((rc = folds_group(c, p, comp)))
        goto fail;
    if (group && *group && !(comp->folds.group = strdup(group)))
        rc = kp_errf(c->err, c->errlen, KP_ERR_NOMEM, "out of memory");
fail:
    kp_params_free(p);
    return rc;
}

/* Reads and checks the submission contract: mapping (node may be NULL: none). */
static int comp_submission(kp_cfgctx *c, const yaml_node_t *node, kp_competition *comp)
{
    const char *names[16], *w = "competition.submission";
    int n = 0, rc;
    for (; kp_contract_keys[n].name && n < 16; n++)
        names[n] = kp_contract_keys[n].name;
    if (!node)
        return 0;
    if (!(comp->submission = kp_params_create()))
        return kp_errf(c->err, c->errlen, KP_ERR_NOMEM, "out of memory");
    if ((rc = kp_cy_want_map(c, node, w)) || (rc = kp_cy_check_keys(c, node, w, names, n)) ||
        (rc = kp_cy_map_params(c, node, comp->submission, w, NULL)) ||
        (rc = kp_params_validate(comp->submission, kp_contract_keys, c->file, w, c->err,
                                 c->errlen)))
        return rc;
    return kp_contract_check_params(comp->submission, comp, c->file, c->err, c->errlen);
}

/* Collects the competition keys (all but folds and submission) into p and validates them. */
static int comp_params(kp_cfgctx *c, const yaml_node_t *key, const yaml_node_t *node,
                       kp_params *p)
{
    static const char *const blocks[] = {"folds", "submission", NULL};
    const char *names[16];
    int n = 0, rc;
    for (; comp_keys[n].name; n++)
        names[n] = comp_keys[n].name;
    names[n++] = "folds";
    names[n++] = "submission";
    if ((rc = kp_cy_want_map(c, node, "competition")) ||
        (rc = kp_cy_check_keys(c, node, "competition", names, n)))
        return rc;
    if ((rc = kp_cy_map_params_except(c, node, p, "competition", blocks)) ||
        (rc = kp_cy_require(c, p, comp_keys, key, "competition")))
        return rc;
    return kp_params_validate(p, comp_keys, c->file, "competition", c->err, c->errlen);
}

static int dup_into(kp_cfgctx *c, char **dst, const char *s)
{
    *dst = strdup(s);
    return *dst ? 0 : kp_errf(c->err, c->errlen, KP_ERR_NOMEM, "out of memory");
}

static int load_competition(kp_cfgctx *c, const yaml_node_t *key, const yaml_node_t *node)
{
    kp_competition *comp = &c->cfg->comp;
    kp_params *p = kp_params_create();
    int rc = p ? comp_params(c, key, node, p) : kp_errf(c->err, c->errlen, KP_ERR_NOMEM, "out of memory");
    if (rc)
        goto fail;
    const char *name = kp_params_get(p, "name");
    char *base = name && *name ? NULL : config_basename(c->cfg->path);
    rc = dup_into(c, &comp->name, base ? base : name ? name : "");
    free(base);
    if (rc || (rc = dup_into(c, &comp->id, kp_params_get(p, "id"))) ||
        (rc = comp_path(c, p, "train", &comp->train)) ||
        (rc = comp_path(c, p, "test", &comp->test)) ||
        (rc = comp_path(c, p, "sample_submission", &comp->sample_submission)) ||
        (rc = comp_targets(c, p, comp)))
        goto fail;
    if (kp_task_parse(kp_params_get(p, "task"), &comp->task)) {
        rc = kp_errf(c->err, c->errlen, KP_ERR_INTERNAL, "unknown task");
        goto fail;
    }
    comp->beta = kp_params_double(p, "beta", 1);
    comp->threshold = kp_params_double(p, "threshold", 0.5);
    comp->empty_score = kp_params_double(p, "empty_score", 1);
    if ((rc = comp_metric(c, p, comp)))
        goto fail;
    if ((rc = comp_folds(c, kp_cy_get(c, node, "folds", NULL), comp)))
        goto fail;
    rc = comp_submission(c, kp_cy_get(c, node, "submission", NULL), comp);
fail:
    kp_params_free(p);
    return rc;
}

/* ---- the top level ---- */

static int load_run_dir(kp_cfgctx *c, const yaml_node_t *node)
{
    kp_config *cfg = c->cfg;
    char abs[PATH_MAX];
    const char *rel = kp_cy_scalar(node);
    if (node && (!rel || !*rel))
        return kp_cy_errat(c, node, KP_ERR_CONFIG, "run_dir: expected a folder path");
    if (node) {
        if (kp_config_path(cfg, rel, abs, sizeof abs))
            return kp_cy_errat(c, node, KP_ERR_CONFIG, "run_dir: path too long");
        normalize(abs);
        return dup_into(c, &cfg->run_dir, abs);
    }
    char *base = config_basename(cfg->path);
    int n = base ? snprintf(abs, sizeof abs, "%s/runs/%s", cfg->dir, base) : -1;
    free(base);
    if (n < 0 || (size_t)n >= sizeof abs)
        return kp_errf(c->err, c->errlen, KP_ERR_NOMEM, "%s: run_dir: path too long", c->file);
    return dup_into(c, &cfg->run_dir, abs);
}

static int set_stage_dirs(kp_cfgctx *c)
{
    kp_buf dir;
    int rc = 0;
    kp_buf_init(&dir, 0);
    for (int i = 0; i < c->cfg->n_stages && rc == 0; i++) {
        kp_stage *st = &c->cfg->stages[i];
        kp_buf_reset(&dir);
        if (kp_buf_adds(&dir, c->cfg->run_dir) < 0 || kp_buf_adds(&dir, "/") < 0 ||
            kp_buf_adds(&dir, st->name) < 0 || !(st->dir = kp_cfg_store(c, dir.data, dir.len)))
            rc = kp_errf(c->err, c->errlen, KP_ERR_NOMEM, "out of memory");
    }
    kp_buf_free(&dir);
    return rc;
}

/* Returns the competition file called key ("train", ...), or NULL. */
static const char *comp_file(const kp_competition *m, const char *key)
{
    return !strcmp(key, "train") ? m->train : !strcmp(key, "test") ? m->test
                                                                     : m->sample_submission;
}

/* Returns 1 when some stage lists path among its final outputs. */
static int written_by_a_stage(const kp_config *cfg, const char *path)
{
    kp_buf out;
    size_t n = strlen(path);
    int hit = 0;
    kp_buf_init(&out, 0);
    for (int i = 0; i < cfg->n_stages && !hit; i++) {
        const kp_stage *st = &cfg->stages[i];
        kp_buf_reset(&out);
        if (!st->ops->outputs || st->ops->outputs(st, cfg, -1, &out) < 0)
            continue;
        for (const char *l = kp_buf_str(&out); *l && !hit;) {
            size_t len = strcspn(l, "\n");
            hit = len == n && strncmp(l, path, n) == 0;
            l += len + (l[len] != 0);
        }
    }
    kp_buf_free(&out);
    return hit;
}

/* A competition file missing at load is an error unless a stage (a fetch
 * stage) writes it; the task graph then orders its readers after that stage. */
static int check_absent(kp_cfgctx *c)
{
    for (int i = 0; i < c->n_absent; i++) {
        const char *path = comp_file(&c->cfg->comp, c->absent[i].key);
        if (!written_by_a_stage(c->cfg, path))
            return kp_errf(c->err, c->errlen, KP_ERR_NOTFOUND,
                           "%s:%d:%d: competition.%s: file not found: %s (and no stage, such as "
                           "a fetch stage, writes it)", c->file, c->absent[i].line,
                           c->absent[i].col, c->absent[i].key, path);
    }
    return 0;
}

static int load_root(kp_cfgctx *c)
{
    static const char *const top[] = {"competition", "stages", "run_dir"};
    yaml_node_t *root = yaml_document_get_root_node(&c->doc);
    yaml_node_t *ck, *sk;
    int rc;
    if (root->type != YAML_MAPPING_NODE)
        return kp_cy_errat(c, root, KP_ERR_CONFIG,
                           "the config must be a mapping with competition and stages");
    if ((rc = kp_cy_check_keys(c, root, "", top, 3)))
        return rc;
    yaml_node_t *comp = kp_cy_get(c, root, "competition", &ck);
    yaml_node_t *stages = kp_cy_get(c, root, "stages", &sk);
    if (!comp || !stages)
        return kp_cy_errat(c, root, KP_ERR_CONFIG, "missing required key '%s'",
                           comp ? "stages" : "competition");
    if ((rc = load_competition(c, ck, comp)) ||
        (rc = load_run_dir(c, kp_cy_get(c, root, "run_dir", NULL))) ||
        (rc = kp_cfg_load_stages(c, sk, stages)) || (rc = set_stage_dirs(c)) ||
        (rc = kp_cfg_check_stages(c)))
        return rc;
    return check_absent(c);
}

int kp_config_load_string(const char *path, const char *yaml, size_t len, kp_config **out,
                          char *err, size_t errlen)
{
    kp_cfgctx c = {.file = path, .err = err, .errlen = errlen};
    int rc = KP_ERR_NOMEM;
    config_store *cs = calloc(1, sizeof *cs);
    if (!(c.cfg = cs ? &cs->pub : NULL) || !(c.cfg->path = strdup(path))) {
        kp_errf(err, errlen, rc, "out of memory");
        goto fail;
    }
    if ((rc = set_dir(c.cfg))) {
        kp_errf(err, errlen, rc, "%s: cannot resolve the config's folder", path);
        goto fail;
    }
    if ((rc = kp_cy_load(&c, yaml, len)) || (rc = load_root(&c)))
        goto fail;
    kp_cy_done(&c);
    c.cfg->text_hash = kp_hash_bytes(yaml, len);
    *out = c.cfg;
    return 0;
fail:
    kp_cy_done(&c);
    kp_config_free(c.cfg);
    return rc;
}

int kp_config_load(const char *path, kp_config **out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *text = NULL;
    size_t len = 0;
    if (!f)
        return kp_errf(err, errlen, KP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    FILE *mem = open_memstream(&text, &len);
    char chunk[8192];
    size_t got;
    while (mem && (got = fread(chunk, 1, sizeof chunk, f)) > 0)
        fwrite(chunk, 1, got, mem);
    int bad = !mem || ferror(f);
    if (mem)
        bad |= fclose(mem) != 0;
    fclose(f);
    int rc = bad ? kp_errf(err, errlen, KP_ERR_IO, "%s: cannot read", path)
                 : kp_config_load_string(path, text ? text : "", len, out, err, errlen);
    free(text);
    return rc;
}

/* ---- queries and cleanup ---- */

int kp_config_find_stage(const kp_config *c, const char *name)
{
    for (int i = 0; i < c->n_stages; i++)
        if (strcmp(c->stages[i].name, name) == 0)
            return i;
    return -1;
}

int kp_config_competition_canonical(const kp_config *c, kp_buf *out)
{
    const kp_competition *m = &c->comp;
    static const char *const kinds[] = {"plain", "stratified", "group"};
    int bad = kp_buf_printf(out, "beta=%.17g\nfolds.group=%s\nfolds.k=%d\nfolds.kind=%s\n",
                            m->beta, m->folds.group ? m->folds.group : "", m->folds.k,
                            kinds[m->folds.kind]) ||
              kp_buf_printf(out, "folds.repeats=%d\nfolds.seed=%llu\nid=%s\nmetric=%s\nname=%s\n",
                            m->folds.repeats, (unsigned long long)m->folds.seed, m->id, m->metric,
                            m->name) ||
              kp_buf_adds(out, "target=[");
    for (int i = 0; !bad && i < m->n_targets; i++)
        bad = kp_buf_printf(out, "%s%s", i ? "," : "", m->targets[i]);
    /* No paths: the files are inputs of the tasks that read them and are
     * hashed by content, so moving a checkout keeps its cache. */
    bad = bad || kp_buf_printf(out, "]\ntask=%s\nthreshold=%.17g\n",
                               kp_task_name(m->task), m->threshold);
    if (m->task == KP_TASK_SEGMENTATION)
        bad = bad || kp_buf_printf(out, "empty_score=%.17g\n", m->empty_score);
    if (m->submission)   /* only when declared: other configs keep their cache keys */
        bad = bad || kp_buf_adds(out, "submission={\n") ||
              kp_params_canonical(m->submission, out) || kp_buf_adds(out, "}\n");
    return bad ? KP_ERR_NOMEM : 0;
}

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)*(void *const *)a, y = (uintptr_t)*(void *const *)b;
    return x < y ? -1 : x > y;
}

/* Frees what stage st owns: not its strings (in the store's blocks) nor
 * shared opts (sorted[0..n), freed once by the caller). */
static void free_stage(kp_stage *st, kp_params **sorted, int n)
{
    if (st->state && st->ops && st->ops->free_state)
        st->ops->free_state(st);
    free(st->needs);
    if (n == 0 || !bsearch(&st->opts, sorted, (size_t)n, sizeof *sorted, cmp_ptr))
        kp_params_free(st->opts);
    kp_params_free(st->params);
}

void kp_config_free(kp_config *c)
{
    if (!c)
        return;
    config_store *cs = S(c);
    if (cs->n_shared > 1)
        qsort(cs->shared, (size_t)cs->n_shared, sizeof *cs->shared, cmp_ptr);
    for (int i = 0; i < c->n_stages; i++)
        free_stage(&c->stages[i], cs->shared, cs->n_shared);
    free(c->stages);
    for (int i = 0; i < cs->n_shared; i++)
        kp_params_free(cs->shared[i]);
    free(cs->shared);
    for (store_block *b = cs->blocks, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    kp_competition *m = &c->comp;
    free(m->name);
    free(m->train);
    free(m->test);
    free(m->sample_submission);
    free(m->id);
    for (int i = 0; i < m->n_targets; i++)
        free(m->targets[i]);
    free(m->targets);
    free(m->metric);
    free(m->folds.group);
    kp_params_free(m->submission);
    free(c->path);
    free(c->dir);
    free(c->run_dir);
    free(cs);
}

/* command.c - the `command` stage: a user's own command line as a node of the DAG.
 *
 *   fe:
 *     type: command
 *     run: "sh fe.sh {src} {stage_dir}/train.csv"   # the command line
 *     deps: [fe.sh, ../data/train.csv]               # files it reads
 *     outs: ["{stage_dir}/train.csv"]                # files it writes (required)
 *     params: {src: ../data/train.csv}
 *
 * deps and outs are relative to the config folder, and the command runs
 * there.  In run, deps and outs, {KEY} is replaced by the stage's value of
 * KEY (params first, then the stage's own keys, so a matrix over params
 * makes many commands; a list becomes its items joined by spaces), and
 * {stage_dir}, {run_dir} and {config_dir} by those absolute folders.  "{{"
 * and "}}" are literal braces; "${X}" and braces around anything that is not
 * a name (awk's "{print $1}") are left alone for the shell.  The outputs
 * are checked to exist after the command exits 0 (by the executor).
 * The check expands run, deps and outs once and keeps them in st->state,
 * which the graph builder reads through ops->command, outputs and inputs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "stage.h"
#include "../lib/err.h"

static const kp_keyspec command_keys[] = {
    {"run", KP_PT_STRING, NULL, NULL, 0, 0,
     "the command line; {KEY} is replaced by params, {stage_dir}, {run_dir}, {config_dir}"},
    {"deps", KP_PT_LIST, "", NULL, 0, 0, "files it reads, relative to the config folder"},
    {"outs", KP_PT_LIST, NULL, NULL, 0, 0, "files it writes, relative to the config folder"},
    {NULL, 0, NULL, NULL, 0, 0, NULL},
};

static const char *const builtin_names[] = { "stage_dir", "run_dir", "config_dir" };
#define N_BUILTIN 3

static int is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-' || c == '.';
}

/* Returns the length of a placeholder name at s (up to its '}'), or 0. */
static size_t name_len(const char *s)
{
    size_t n = 0;
    while (is_name_char(s[n]))
        n++;
    return n > 0 && s[n] == '}' ? n : 0;
}

/* Appends the value of name (a builtin, a param or an own key); 1 if unknown. */
static int add_value(const kp_stage *st, const kp_config *cfg, const char *name, kp_buf *out,
                     int *rc)
{
    const char *builtin[N_BUILTIN] = { st->dir, cfg->run_dir, cfg->dir };
    for (int i = 0; i < N_BUILTIN; i++)
        if (strcmp(name, builtin_names[i]) == 0) {
            *rc = kp_buf_adds(out, builtin[i] ? builtin[i] : "");
            return 0;
        }
    const char *const *items;
    int n;
    if ((!st->params || kp_params_get_list(st->params, name, &items, &n) < 0) &&
        (!st->opts || !strcmp(name, "run") || !strcmp(name, "deps") || !strcmp(name, "outs") ||
         kp_params_get_list(st->opts, name, &items, &n) < 0))
        return 1;
    *rc = 0;
    for (int i = 0; i < n && *rc == 0; i++)
        *rc = (i && kp_buf_adds(out, " ")) || kp_buf_adds(out, items[i]) ? KP_ERR_NOMEM : 0;
    return 0;
}

/* Collects every name a placeholder may use, for "did you mean". */
static int known_names(const kp_stage *st, const char **names, int max)
{
    int n = 0;
    for (int i = 0; i < N_BUILTIN && n < max; i++)
        names[n++] = builtin_names[i];
    for (int i = 0; st->params && i < kp_params_count(st->params) && n < max; i++)
        names[n++] = kp_params_key(st->params, i);
    return n;
}

static int unknown(const kp_stage *st, const kp_config *cfg, const char *key, const char *name,
                   char *err, size_t errlen)
{
    const char *names[64];
    int line = st->line, col = st->col, l, c;
    kp_params_where(st->opts, key, &l, &c);
    if (l > 0)
        line = l, col = c;
    const char *near = kp_suggest(name, names, known_names(st, names, 64));
    return kp_errf(err, errlen, KP_ERR_CONFIG,
                   "%s:%d:%d: stages.%s.%s: unknown placeholder {%s}%s%s%s", cfg->path, line, col,
                   st->base, key, name, near ? " (did you mean {" : "", near ? near : "",
                   near ? "}?)" : "");
}

/* Expands the placeholders of text (the value of key, for messages) into out. */
static int expand(const kp_stage *st, const kp_config *cfg, const char *key, const char *text,
                  kp_buf *out, char *err, size_t errlen)
{
    int rc = 0;
    for (const char *p = text; *p && rc == 0;) {
        size_t plain = strcspn(p, "{}"), n = *p == '{' ? name_len(p + 1) : 0;
        if (plain > 0) {
            rc = kp_buf_add(out, p, plain);
            p += plain;
        } else if ((p[0] == '{' && p[1] == '{') || (p[0] == '}' && p[1] == '}')) {
            rc = kp_buf_add(out, p, 1);
            p += 2;
        } else if (n > 0 && !(p > text && p[-1] == '$')) {
            char name[256];
            size_t m = n < sizeof name ? n : sizeof name - 1;
            memcpy(name, p + 1, m);
            name[m] = 0;
            if (add_value(st, cfg, name, out, &rc))
                return unknown(st, cfg, key, name, err, errlen);
            p += n + 2;
        } else {
            rc = kp_buf_add(out, p++, 1);
        }
    }
    return rc ? kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory") : 0;
}

/* What command_check expands once, kept in st->state for the graph builder:
 * the command line, then the resolved deps and outs (one path per line),
 * each NUL-terminated in text. */
typedef struct cmd_state {
    size_t len[3];          /* of the line, the deps, the outs */
    char text[];
} cmd_state;

/* Appends every item of list key, expanded and resolved against the config folder. */
static int add_paths(const kp_stage *st, const kp_config *cfg, const char *key, kp_buf *out,
                     char *err, size_t errlen)
{
    const char *const *items;
    int n = 0, rc = 0;
    if (kp_params_get_list(st->opts, key, &items, &n) < 0)
        return 0;
    for (int i = 0; i < n && rc == 0; i++) {
        char path[4096];
        size_t at = out->len;   /* expanded at the end of out, then replaced by its path */
        if ((rc = expand(st, cfg, key, items[i], out, err, errlen)) < 0)
            break;
        int bad = kp_config_path(cfg, out->data ? out->data + at : "", path, sizeof path) < 0;
        out->len = at;
        if (out->data)
            out->data[at] = 0;
        if (bad)
            rc = kp_errf(err, errlen, KP_ERR_CONFIG, "stages.%s.%s: path too long", st->base, key);
        else if (kp_buf_adds(out, path) < 0 || kp_buf_adds(out, "\n") < 0)
            rc = kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    }
    return rc;
}

static int expand_line(const kp_stage *st, const kp_config *cfg, kp_buf *out,
                       char *err, size_t errlen)
{
    const char *run = kp_params_get(st->opts, "run");
    if (!run || !*run)
        return kp_errf(err, errlen, KP_ERR_CONFIG, "%s:%d:%d: stages.%s.run: empty command",
                       cfg->path, st->line, st->col, st->base);
    return expand(st, cfg, "run", run, out, err, errlen);
}

static void command_free_state(kp_stage *st)
{
    free(st->state);
    st->state = NULL;
}

/* Expands run, deps and outs (checking every placeholder) into st->state. */
static int command_check(kp_stage *st, const kp_config *cfg, char *err, size_t errlen)
{
    const char *const *outs;
    int n = 0, line, col;
    if (kp_params_get_list(st->opts, "outs", &outs, &n) < 0 || n == 0) {
        kp_params_where(st->opts, "outs", &line, &col);
        return kp_errf(err, errlen, KP_ERR_CONFIG,
                       "%s:%d:%d: stages.%s.outs: list at least one file the command writes",
                       cfg->path, line ? line : st->line, line ? col : st->col, st->base);
    }
    kp_buf b;
    size_t len[3];
    kp_buf_init(&b, 0);
    int rc = expand_line(st, cfg, &b, err, errlen);
    len[0] = b.len;
    if (rc == 0 && (rc = kp_buf_add(&b, "", 1) < 0 ? KP_ERR_NOMEM : 0) == 0)
        rc = add_paths(st, cfg, "deps", &b, err, errlen);
    len[1] = b.len - len[0] - 1;
    if (rc == 0 && (rc = kp_buf_add(&b, "", 1) < 0 ? KP_ERR_NOMEM : 0) == 0)
        rc = add_paths(st, cfg, "outs", &b, err, errlen);
    len[2] = b.len - len[0] - len[1] - 2;
    cmd_state *s = rc == 0 ? malloc(sizeof *s + b.len + 1) : NULL;
    if (rc == 0 && !s)
        rc = KP_ERR_NOMEM;
    if (rc == KP_ERR_NOMEM)
        kp_errf(err, errlen, rc, "out of memory");
    if (s) {
        memcpy(s->len, len, sizeof len);
        memcpy(s->text, b.data, b.len + 1);
        command_free_state(st);
        st->state = s;
    }
    kp_buf_free(&b);
    return rc;
}

/* Appends the expansion made by command_check, or expands it now (no check ran). */
static int from_state(const kp_stage *st, const kp_config *cfg, int which, kp_buf *out,
                      char *err, size_t errlen)
{
    const cmd_state *s = st->state;
    if (s) {
        size_t at = which == 0 ? 0 : which == 1 ? s->len[0] + 1 : s->len[0] + s->len[1] + 2;
        return kp_buf_add(out, s->text + at, s->len[which]) < 0
                   ? kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory") : 0;
    }
    return which == 0 ? expand_line(st, cfg, out, err, errlen)
                      : add_paths(st, cfg, which == 1 ? "deps" : "outs", out, err, errlen);
}

static int command_line(const kp_stage *st, const kp_config *cfg, kp_buf *out,
                        char *err, size_t errlen)
{
    return from_state(st, cfg, 0, out, err, errlen);
}

static int command_outputs(const kp_stage *st, const kp_config *cfg, int part, kp_buf *out)
{
    char err[KP_ERRLEN];
    (void)part;
    return from_state(st, cfg, 2, out, err, sizeof err);
}

static int command_inputs(const kp_stage *st, const kp_config *cfg, kp_buf *out)
{
    char err[KP_ERRLEN];
    return from_state(st, cfg, 1, out, err, sizeof err);
}

const kp_stage_ops kp_stage_command = {
    .name = "command",
    .doc = "runs a command line (cwd: the config folder) that reads deps and writes outs",
    .keys = command_keys,
    .output = KP_ART_FILES,
    .check = command_check,
    .n_parts = NULL,
    .outputs = command_outputs,
    .inputs = command_inputs,
    .run = NULL,
    .command = command_line,
    .free_state = command_free_state,
};

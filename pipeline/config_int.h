/* config_int.h - what config.c, config_yaml.c and config_stages.c share.
 *
 * Not a public header: the loader's context (the parsed YAML document, the
 * config under construction, the caller's error buffer) and the helpers that
 * read libyaml nodes and turn them into located errors and kp_params.
 */
#ifndef KP_CONFIG_INT_H
#define KP_CONFIG_INT_H

#include <stddef.h>
#include <yaml.h>
#include "config.h"

typedef struct kp_cfgctx {
    kp_config *cfg;          /* being built; owned by the caller of the loader */
    yaml_document_t doc;     /* valid once have_doc is set */
    int have_doc;
    const char *file;        /* the config path, for messages */
    char *err;
    size_t errlen;
    /* competition files absent at load: fine if a stage (fetch) writes them */
    struct { const char *key; int line, col; } absent[4];
    int n_absent;
} kp_cfgctx;

/* Parses yaml into ctx->doc and checks it for duplicate keys, non-scalar keys
 * and NUL bytes; the caller deletes the document (kp_cy_done). */
int kp_cy_load(kp_cfgctx *c, const char *yaml, size_t len);

/* Deletes the document if there is one. */
void kp_cy_done(kp_cfgctx *c);

/* Returns the node with the given index (1-based), or NULL. */
yaml_node_t *kp_cy_node(kp_cfgctx *c, int index);

/* Returns the 1-based line and column where node starts. */
int kp_cy_line(const yaml_node_t *n);
int kp_cy_col(const yaml_node_t *n);

/* Returns the text of a scalar node (NUL-terminated), or NULL for other kinds. */
const char *kp_cy_scalar(const yaml_node_t *n);

/* Writes "FILE:LINE:COL: <message>" (node's place) into the error buffer; returns status. */
int kp_cy_errat(kp_cfgctx *c, const yaml_node_t *n, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Returns the value of key in mapping map (and its key node in *key, may be NULL), or NULL. */
yaml_node_t *kp_cy_get(kp_cfgctx *c, const yaml_node_t *map, const char *name,
                       yaml_node_t **key);

/* Fails with "unknown key 'x' (did you mean 'y'?)" if map has a key not in
 * allowed[0..n); where names the mapping ("competition.folds"). */
int kp_cy_check_keys(kp_cfgctx *c, const yaml_node_t *map, const char *where,
                     const char *const *allowed, int n);

/* Fails unless node is a mapping; what names it in the message. */
int kp_cy_want_map(kp_cfgctx *c, const yaml_node_t *n, const char *what);

/* Stores value (a scalar or a sequence of scalars) as key in p, located at
 * the value node; where.key names it in errors. */
int kp_cy_set_param(kp_cfgctx *c, kp_params *p, const char *key, const yaml_node_t *value,
                    const char *where);

/* Stores every key of mapping map but skip (may be NULL) in p, as kp_cy_set_param. */
int kp_cy_map_params(kp_cfgctx *c, const yaml_node_t *map, kp_params *p, const char *where,
                     const char *skip);

/* The same, skipping every key of the NULL-terminated list skip (may be NULL). */
int kp_cy_map_params_except(kp_cfgctx *c, const yaml_node_t *map, kp_params *p,
                            const char *where, const char *const *skip);

/* Fails with "WHERE: missing required key 'K'" at node for each required
 * key of spec absent from p. */
int kp_cy_require(kp_cfgctx *c, const kp_params *p, const kp_keyspec *spec,
                  const yaml_node_t *at, const char *where);

/* Loads the stages: block (node is its value, key its key) into c->cfg:
 * declarations, matrix expansion, needs, the cycle check. */
int kp_cfg_load_stages(kp_cfgctx *c, const yaml_node_t *key, const yaml_node_t *node);

/* Returns a NUL-terminated copy of s[0..n) that lives as long as the config
 * (never freed on its own), or NULL when out of memory. */
char *kp_cfg_store(kp_cfgctx *c, const char *s, size_t n);

/* Gives the config p, which stages may then point at as their opts: it is
 * freed once, with the config (also on failure). */
int kp_cfg_share(kp_cfgctx *c, kp_params *p);

/* ---- between config_stages.c and config_needs.c ---- */

/* A stage as declared, before its matrix is expanded. */
typedef struct kp_cfgdecl {
    const char *name;                 /* borrowed from the document */
    yaml_node_t *key, *node;          /* the name and its mapping */
    const struct kp_stage_ops *ops;
    kp_params *opts, *params;
    yaml_node_t *needs, *matrix;      /* or NULL */
    int first, count;                 /* its stages in cfg->stages */
    /* The matrix, in key order (n_keys 0 without one): combination c takes
     * value (c / stride[k]) % n_vals[k] of key k, the last key fastest. */
    int n_keys;
    const char **keys;                /* borrowed from the document */
    unsigned char *is_opt;            /* per key: a stage key (else a model param) */
    int *n_vals, *stride;
    yaml_node_t ***vals;              /* per key: its value nodes */
    char where[300];                  /* "stages.NAME" */
} kp_cfgdecl;

/* Returns the index of matrix key `key` (len bytes) of d, or -1. */
int kp_cfg_matrix_key(const kp_cfgdecl *d, const char *key, size_t len);

/* Returns the value (text as written) of matrix key k in combination combo of d. */
const char *kp_cfg_matrix_value(const kp_cfgdecl *d, int k, int combo);

/* Resolves the needs of every declaration into its expanded stages (d[0..n),
 * expanded already): names, matrix selections, placeholders, no repeats. */
int kp_cfg_resolve_needs(kp_cfgctx *c, kp_cfgdecl *d, int n);

/* Fails with KP_ERR_CYCLE and the cycle's path if the stages' needs loop. */
int kp_cfg_check_cycles(kp_cfgctx *c);

/* Runs every stage type's check over the loaded config. */
int kp_cfg_check_stages(kp_cfgctx *c);

#endif

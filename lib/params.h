/* params.h - named parameters from the config, and the specs that check them.
 *
 * A kp_params is an ordered list of key -> value, where a value is a scalar
 * string or a list of scalar strings, each remembering the config line and
 * column it came from.  A kp_keyspec table (terminated by a {NULL} entry)
 * says which keys a stage, model or block accepts, of what type, with what
 * default; kp_params_validate() checks a kp_params against it, fills the
 * defaults, and reports an unknown key with the nearest valid one suggested.
 */
#ifndef KP_PARAMS_H
#define KP_PARAMS_H

#include <stddef.h>
#include "buf.h"

typedef enum kp_ptype {
    KP_PT_STRING,   /* any scalar */
    KP_PT_INT,      /* a whole number (strtoll, whole string) */
    KP_PT_FLOAT,    /* a finite number (strtod, whole string) */
    KP_PT_BOOL,     /* true/false/yes/no/on/off/1/0 */
    KP_PT_ENUM,     /* one of `choices`, "a|b|c" */
    KP_PT_LIST,     /* a list of scalars (a lone scalar is taken as a list of one) */
    KP_PT_PATH      /* a path, relative to the config file's folder */
} kp_ptype;

typedef struct kp_keyspec {
    const char *name;
    kp_ptype type;
    const char *def;      /* default as text; NULL = required; "" = optional, no default */
    const char *choices;  /* KP_PT_ENUM: "a|b|c" */
    double min, max;      /* numeric bounds, checked when min < max */
    const char *doc;      /* one line for docs and `kpipe models` */
} kp_keyspec;

typedef struct kp_params kp_params;

/* Returns a new empty list (NULL on allocation failure); free with kp_params_free. */
kp_params *kp_params_create(void);

/* Frees the list and its strings; NULL is accepted. */
void kp_params_free(kp_params *p);

/* Returns a deep copy (NULL on allocation failure); caller frees. */
kp_params *kp_params_clone(const kp_params *p);

/* Sets key to a scalar (both copied), replacing any earlier value; 0 or KP_ERR_NOMEM. */
int kp_params_set(kp_params *p, const char *key, const char *value, int line, int col);

/* Sets key to a list of n scalars (copied); 0 or KP_ERR_NOMEM. */
int kp_params_set_list(kp_params *p, const char *key, const char *const *items, int n,
                       int line, int col);

/* Returns the number of keys. */
int kp_params_count(const kp_params *p);

/* Returns the i-th key in insertion order; borrowed. */
const char *kp_params_key(const kp_params *p, int i);

/* Returns 1 if key is present. */
int kp_params_has(const kp_params *p, const char *key);

/* Returns the scalar value of key, or NULL if absent or a list; borrowed. */
const char *kp_params_get(const kp_params *p, const char *key);

/* Returns the list of key (a scalar is a list of one) in *items and *n; 0 or KP_ERR_NOTFOUND. */
int kp_params_get_list(const kp_params *p, const char *key, const char *const **items, int *n);

/* Returns the line and column key came from (0, 0 if unknown). */
void kp_params_where(const kp_params *p, const char *key, int *line, int *col);

/* Typed getters for validated params: return the value, or def if absent. */
double kp_params_double(const kp_params *p, const char *key, double def);
long long kp_params_int(const kp_params *p, const char *key, long long def);
int kp_params_bool(const kp_params *p, const char *key, int def);
const char *kp_params_str(const kp_params *p, const char *key, const char *def);

/* Checks p against spec: unknown keys (with "did you mean"), types, bounds,
 * enum choices, required keys; fills defaults.  Errors read
 * "FILE:LINE:COL: WHERE.KEY: problem" where WHERE is e.g. "stages.lr.params".
 * file and where are only used in messages. */
int kp_params_validate(kp_params *p, const kp_keyspec *spec, const char *file,
                       const char *where, char *err, size_t errlen);

/* Appends "key=value\n" for every key in sorted key order (lists as
 * "key=[a,b]") to out: the canonical text hashed into cache keys. */
int kp_params_canonical(const kp_params *p, kp_buf *out);

/* Returns the candidate closest to word by edit distance if it is close
 * enough to be a plausible typo (distance <= max(2, len/3)), else NULL. */
const char *kp_suggest(const char *word, const char *const *candidates, int n);

/* Returns the number of entries in a {NULL}-terminated spec. */
int kp_keyspec_count(const kp_keyspec *spec);

#endif

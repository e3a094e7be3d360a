/* strmap.h - a string -> int map (open addressing), for ids, paths and indices.
 *
 * Keys are copied; values are non-negative ints (typically indices into an
 * array the caller owns).  Lookups of absent keys return -1.
 */
#ifndef KP_STRMAP_H
#define KP_STRMAP_H

typedef struct kp_strmap kp_strmap;

/* Returns a new empty map, or NULL on allocation failure; free with kp_strmap_free. */
kp_strmap *kp_strmap_create(void);

/* Frees the map and its keys; NULL is accepted. */
void kp_strmap_free(kp_strmap *m);

/* Sets key (copied) to value >= 0, replacing an earlier value; 0 or KP_ERR_NOMEM. */
int kp_strmap_put(kp_strmap *m, const char *key, int value);

/* Returns the value of key, or -1 if absent. */
int kp_strmap_get(const kp_strmap *m, const char *key);

/* Returns the number of keys. */
int kp_strmap_count(const kp_strmap *m);

#endif

/* strmap.c - a string -> int map with open addressing and linear probing. */
#include "strmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include "../lib/err.h"

typedef struct slot { char *key; uint64_t hash; int value; } slot;

struct kp_strmap {
    slot *slots;
    size_t cap;       /* a power of two, or 0 */
    int n;
};

/* XXH3: keys are paths of tens of bytes, hashed many thousands of times per
 * run; a byte-at-a-time hash was 15% of a no-op run's instructions. */
static uint64_t hash_key(const char *s)
{
    return XXH3_64bits(s, strlen(s));
}

kp_strmap *kp_strmap_create(void)
{
    return calloc(1, sizeof(kp_strmap));
}

void kp_strmap_free(kp_strmap *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->cap; i++)
        free(m->slots[i].key);
    free(m->slots);
    free(m);
}

/* Returns the slot holding key (whose hash is h), or the empty slot where it would go. */
static slot *probe(slot *slots, size_t cap, const char *key, uint64_t h)
{
    size_t i = (size_t)h & (cap - 1);
    while (slots[i].key && (slots[i].hash != h || strcmp(slots[i].key, key) != 0))
        i = (i + 1) & (cap - 1);
    return &slots[i];
}

static int grow(kp_strmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 16;
    slot *s = calloc(cap, sizeof *s);
    if (!s)
        return KP_ERR_NOMEM;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key)
            *probe(s, cap, m->slots[i].key, m->slots[i].hash) = m->slots[i];
    free(m->slots);
    m->slots = s;
    m->cap = cap;
    return 0;
}

int kp_strmap_put(kp_strmap *m, const char *key, int value)
{
    if ((size_t)(m->n + 1) * 4 > m->cap * 3 && grow(m) < 0)   /* load <= 3/4 */
        return KP_ERR_NOMEM;
    uint64_t h = hash_key(key);
    slot *s = probe(m->slots, m->cap, key, h);
    if (!s->key) {
        if (!(s->key = strdup(key)))
            return KP_ERR_NOMEM;
        s->hash = h;
        m->n++;
    }
    s->value = value;
    return 0;
}

int kp_strmap_get(const kp_strmap *m, const char *key)
{
    if (!m->cap)
        return -1;
    const slot *s = probe(m->slots, m->cap, key, hash_key(key));
    return s->key ? s->value : -1;
}

int kp_strmap_count(const kp_strmap *m)
{
    return m->n;
}

/* safetensors.c - reading (mmap, hostile-file checks) and writing safetensors.
 *
 * Reader: the 8-byte header length, the JSON header and every tensor entry are
 * checked, then the data section must be covered exactly (no holes, no
 * overlaps) before any pointer is handed out.  Tensors are kept in header
 * order (jansson keeps object keys in the order parsed).
 * Writer: tensors by decreasing element size, ties in insertion order; the
 * header is compact JSON padded with spaces to a multiple of 8.
 */
#include "safetensors.h"
#include "../lib/afile.h"
#include "../lib/err.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_HEADER 100000000ULL   /* 100 MB, as the reference implementation */
#define ST_META_KEY "__metadata__"

static const struct { const char *name; size_t size; } dtype_table[KP_DTYPE_COUNT] = {
    [KP_BOOL] = { "BOOL", 1 }, [KP_U8] = { "U8", 1 },   [KP_I8] = { "I8", 1 },
    [KP_U16] = { "U16", 2 },   [KP_I16] = { "I16", 2 }, [KP_F16] = { "F16", 2 },
    [KP_BF16] = { "BF16", 2 }, [KP_U32] = { "U32", 4 }, [KP_I32] = { "I32", 4 },
    [KP_F32] = { "F32", 4 },   [KP_U64] = { "U64", 8 }, [KP_I64] = { "I64", 8 },
    [KP_F64] = { "F64", 8 },
};

size_t kp_dtype_size(kp_dtype t)
{
    return (unsigned)t < KP_DTYPE_COUNT ? dtype_table[t].size : 0;
}

const char *kp_dtype_name(kp_dtype t)
{
    return (unsigned)t < KP_DTYPE_COUNT ? dtype_table[t].name : "?";
}

int kp_dtype_parse(const char *s, kp_dtype *out)
{
    for (int i = 0; i < KP_DTYPE_COUNT; i++) {
        if (strcmp(s, dtype_table[i].name) == 0) {
            *out = (kp_dtype)i;
            return 0;
        }
    }
    return KP_ERR_FORMAT;
}

/* ---------------------------------------------------------------- reading */

typedef struct st_entry {
    kp_tensor t;        /* t.name points at name */
    char *name;         /* owned */
    void *copy;         /* owned aligned copy of a misaligned tensor, or NULL */
    int64_t begin, end; /* data_offsets */
} st_entry;

struct kp_st {
    char *path;             /* owned */
    void *map;              /* owned mapping (kp_st_open) or NULL */
    size_t map_len;
    const uint8_t *data;    /* the data section (after the header) */
    size_t data_len;
    int n;
    st_entry *e;            /* n entries in header order */
    int n_meta;
    char **meta;            /* owned: key0, value0, key1, value1, ... */
};

/* An empty tensor's data pointer: aligned for every dtype. */
static const uint64_t st_empty[1];

void kp_st_close(kp_st *st)
{
    if (!st)
        return;
    for (int i = 0; i < st->n; i++) {
        free(st->e[i].name);
        free(st->e[i].copy);
    }
    for (int i = 0; i < 2 * st->n_meta; i++)
        free(st->meta[i]);
    if (st->map)
        munmap(st->map, st->map_len);
    free(st->meta);
    free(st->e);
    free(st->path);
    free(st);
}

/* Copies the "__metadata__" object (strings only) into st. */
static int parse_meta(kp_st *st, json_t *obj, char *err, size_t errlen)
{
    if (!json_is_object(obj))
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: \"__metadata__\" is not an object", st->path);
    st->meta = calloc(2 * json_object_size(obj) + 1, sizeof *st->meta);
    if (!st->meta)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory", st->path);
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        if (!json_is_string(v))
            return kp_errf(err, errlen, KP_ERR_FORMAT,
                           "%s: metadata '%s' is not a string", st->path, key);
        char **kv = st->meta + 2 * st->n_meta;
        kv[0] = strdup(key);
        kv[1] = strdup(json_string_value(v));
        st->n_meta++;   /* counted before the check so close frees both */
        if (!kv[0] || !kv[1])
            return kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory", st->path);
    }
    return 0;
}

/* Checks that obj has exactly the keys dtype, shape and data_offsets. */
static int check_entry_keys(const kp_st *st, const char *name, json_t *obj,
                            char *err, size_t errlen)
{
    static const char *const want[] = { "dtype", "shape", "data_offsets" };
    if (!json_is_object(obj))
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: tensor '%s': entry is not an object",
                       st->path, name);
    for (int k = 0; k < 3; k++)
        if (!json_object_get(obj, want[k]))
            return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: tensor '%s': missing \"%s\"",
                           st->path, name, want[k]);
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        if (strcmp(key, want[0]) && strcmp(key, want[1]) && strcmp(key, want[2]))
            return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: tensor '%s': unexpected key \"%s\"",
                           st->path, name, key);
    }
    return 0;
}

/* Parses "shape" into t (ndim, shape, numel, nbytes), refusing overflow. */
static int parse_shape(const kp_st *st, const char *name, json_t *shape, kp_tensor *t,
                       char *err, size_t errlen)
{
    if (!json_is_array(shape))
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: tensor '%s': shape is not an array",
                       st->path, name);
    size_t nd = json_array_size(shape);
    if (nd > KP_ST_MAX_DIMS)
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: tensor '%s': shape has %zu dims, more than %d",
                       st->path, name, nd, KP_ST_MAX_DIMS);
    int64_t numel = 1, nbytes;
    for (size_t d = 0; d < nd; d++) {
        json_t *x = json_array_get(shape, d);
        if (!json_is_integer(x) || json_integer_value(x) < 0)
            return kp_errf(err, errlen, KP_ERR_FORMAT,
                           "%s: tensor '%s': shape[%zu] is not a non-negative integer",
                           st->path, name, d);
        t->shape[d] = (int64_t)json_integer_value(x);
        if (__builtin_mul_overflow(numel, t->shape[d], &numel))
            return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: tensor '%s': shape overflows",
                           st->path, name);
    }
    if (__builtin_mul_overflow(numel, (int64_t)kp_dtype_size(t->dtype), &nbytes))
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: tensor '%s': byte size overflows",
                       st->path, name);
    t->ndim = (int)nd;
    t->numel = numel;
    t->nbytes = (size_t)nbytes;
    return 0;
}

/* Parses "data_offsets" into e->begin/end and checks them against the data. */
static int parse_offsets(const kp_st *st, json_t *off, st_entry *e, char *err, size_t errlen)
{
    const char *name = e->name;
    if (!json_is_array(off) || json_array_size(off) != 2 ||
        !json_is_integer(json_array_get(off, 0)) || !json_is_integer(json_array_get(off, 1)))
        return kp_errf(err, errlen, KP_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets is not an array of two integers",
                       st->path, name);
    int64_t b = (int64_t)json_integer_value(json_array_get(off, 0));
    int64_t en = (int64_t)json_integer_value(json_array_get(off, 1));
    if (b < 0 || b > en)
        return kp_errf(err, errlen, KP_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets [%lld, %lld] are not ordered",
                       st->path, name, (long long)b, (long long)en);
    if ((uint64_t)en > st->data_len)
        return kp_errf(err, errlen, KP_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets [%lld, %lld] run past the %zu data bytes",
                       st->path, name, (long long)b, (long long)en, st->data_len);
    if ((uint64_t)(en - b) != e->t.nbytes)
        return kp_errf(err, errlen, KP_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets [%lld, %lld] hold %lld bytes, shape and dtype need %zu",
                       st->path, name, (long long)b, (long long)en, (long long)(en - b), e->t.nbytes);
    e->begin = b;
    e->end = en;
    return 0;
}

/* Parses one tensor entry into e (name already set). */
static int parse_tensor(const kp_st *st, json_t *obj, st_entry *e, char *err, size_t errlen)
{
    int rc = check_entry_keys(st, e->name, obj, err, errlen);
    if (rc < 0)
        return rc;
    json_t *dt = json_object_get(obj, "dtype");
    if (!json_is_string(dt))
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: tensor '%s': dtype is not a string",
                       st->path, e->name);
    if (kp_dtype_parse(json_string_value(dt), &e->t.dtype) < 0)
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: tensor '%s': unknown dtype \"%s\"",
                       st->path, e->name, json_string_value(dt));
    if ((rc = parse_shape(st, e->name, json_object_get(obj, "shape"), &e->t, err, errlen)) < 0)
        return rc;
    return parse_offsets(st, json_object_get(obj, "data_offsets"), e, err, errlen);
}

/* Parses every header entry into st->e / st->meta. */
static int parse_entries(kp_st *st, json_t *root, char *err, size_t errlen)
{
    size_t n = json_object_size(root);
    st->e = calloc(n + 1, sizeof *st->e);
    if (!st->e)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory", st->path);
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        int rc;
        if (strcmp(key, ST_META_KEY) == 0) {
            if ((rc = parse_meta(st, v, err, errlen)) < 0)
                return rc;
            continue;
        }
        st_entry *e = &st->e[st->n++];
        if (!(e->name = strdup(key)))
            return kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory", st->path);
        e->t.name = e->name;
        if ((rc = parse_tensor(st, v, e, err, errlen)) < 0)
            return rc;
    }
    return 0;
}

static int cmp_by_offset(const void *a, const void *b)
{
    const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return x < y ? -1 : x > y;
}

/* Checks that the tensors cover the data section exactly, without overlap. */
static int check_coverage(const kp_st *st, char *err, size_t errlen)
{
    int rc = 0;
    const st_entry **by = malloc(sizeof *by * (size_t)(st->n + 1));
    if (!by)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory", st->path);
    for (int i = 0; i < st->n; i++)
        by[i] = &st->e[i];
    qsort(by, (size_t)st->n, sizeof *by, cmp_by_offset);
    int64_t pos = 0;
    const char *prev = NULL;
    for (int i = 0; i < st->n && rc == 0; i++) {
        if (by[i]->begin < pos)
            rc = kp_errf(err, errlen, KP_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets [%lld, %lld] overlap tensor '%s'",
                         st->path, by[i]->name, (long long)by[i]->begin, (long long)by[i]->end, prev);
        else if (by[i]->begin > pos)
            rc = kp_errf(err, errlen, KP_ERR_FORMAT,
                         "%s: tensor '%s': data bytes [%lld, %lld) before it belong to no tensor (hole)",
                         st->path, by[i]->name, (long long)pos, (long long)by[i]->begin);
        pos = by[i]->end;
        prev = by[i]->name;
    }
    if (rc == 0 && (uint64_t)pos != st->data_len)
        rc = kp_errf(err, errlen, KP_ERR_FORMAT,
                     "%s: data bytes [%lld, %zu) at the end belong to no tensor (hole)",
                     st->path, (long long)pos, st->data_len);
    free(by);
    return rc;
}

/* Points every tensor at its bytes, copying misaligned ones to aligned memory. */
static int place_data(kp_st *st, char *err, size_t errlen)
{
    for (int i = 0; i < st->n; i++) {
        st_entry *e = &st->e[i];
        size_t align = kp_dtype_size(e->t.dtype);
        const uint8_t *p = st->data + e->begin;
        if (e->t.nbytes == 0) {
            e->t.data = st_empty;
            continue;
        }
        if ((uintptr_t)p % align == 0) {
            e->t.data = p;
            continue;
        }
        if (posix_memalign(&e->copy, align < sizeof(void *) ? sizeof(void *) : align,
                           e->t.nbytes) != 0) {
            e->copy = NULL;
            return kp_errf(err, errlen, KP_ERR_NOMEM, "%s: tensor '%s': out of memory (%zu bytes)",
                           st->path, e->name, e->t.nbytes);
        }
        memcpy(e->copy, p, e->t.nbytes);
        e->t.data = e->copy;
    }
    return 0;
}

/* Checks the 8-byte length prefix; sets *hlen. */
static int check_prefix(const kp_st *st, const uint8_t *data, size_t len, uint64_t *hlen,
                        char *err, size_t errlen)
{
    if (len < 8)
        return kp_errf(err, errlen, KP_ERR_FORMAT,
                       "%s: file is %zu bytes, shorter than the 8-byte header length", st->path, len);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | data[i];
    if (n == 0)
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: header length is 0", st->path);
    if (n > ST_MAX_HEADER)
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: header length %llu is over the 100 MB limit",
                       st->path, (unsigned long long)n);
    if (n > len - 8)
        return kp_errf(err, errlen, KP_ERR_FORMAT,
                       "%s: header length %llu runs past the end of the file (%zu bytes)",
                       st->path, (unsigned long long)n, len);
    *hlen = n;
    return 0;
}

/* Validates the image into st (whose path is set); st->map may own it. */
static int st_load(kp_st *st, const uint8_t *data, size_t len, char *err, size_t errlen)
{
    uint64_t hlen = 0;
    int rc = check_prefix(st, data, len, &hlen, err, errlen);
    if (rc < 0)
        return rc;
    st->data = data + 8 + hlen;
    st->data_len = len - 8 - (size_t)hlen;
    json_error_t jerr;
    json_t *root = json_loadb((const char *)data + 8, (size_t)hlen,
                              JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!root)
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: header is not valid JSON: %s (header byte %d)",
                       st->path, jerr.text, jerr.position);
    if (!json_is_object(root))
        rc = kp_errf(err, errlen, KP_ERR_FORMAT, "%s: header is not a JSON object", st->path);
    else if ((rc = parse_entries(st, root, err, errlen)) == 0 &&
             (rc = check_coverage(st, err, errlen)) == 0)
        rc = place_data(st, err, errlen);
    json_decref(root);
    return rc;
}

/* Returns a new kp_st owning a copy of name, or NULL. */
static kp_st *st_new(const char *name)
{
    kp_st *st = calloc(1, sizeof *st);
    if (st && !(st->path = strdup(name))) {
        free(st);
        st = NULL;
    }
    return st;
}

int kp_st_open_mem(const char *name, const void *data, size_t len, kp_st **out,
                   char *err, size_t errlen)
{
    kp_st *st = st_new(name);
    if (!st)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "%s: out of memory", name);
    int rc = st_load(st, data, len, err, errlen);
    if (rc < 0) {
        kp_st_close(st);
        return rc;
    }
    *out = st;
    return 0;
}

int kp_st_open(const char *path, kp_st **out, char *err, size_t errlen)
{
    int rc = KP_ERR_NOMEM;
    struct stat sb;
    kp_st *st = st_new(path);
    int fd = -1;
    if (!st) {
        kp_errf(err, errlen, rc, "%s: out of memory", path);
        goto fail;
    }
    rc = KP_ERR_IO;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &sb) != 0) {
        kp_errf(err, errlen, rc, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        kp_errf(err, errlen, rc, "%s: not a regular file", path);
        goto fail;
    }
    if (sb.st_size > 0) {
        void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            kp_errf(err, errlen, rc, "%s: cannot map: %s", path, strerror(errno));
            goto fail;
        }
        st->map = m;
        st->map_len = (size_t)sb.st_size;
    }
    if ((rc = st_load(st, st->map, st->map_len, err, errlen)) < 0)
        goto fail;
    *out = st;
    st = NULL;
fail:
    if (fd >= 0)
        close(fd);
    kp_st_close(st);
    return rc;
}

int kp_st_count(const kp_st *st)
{
    return st->n;
}

const kp_tensor *kp_st_at(const kp_st *st, int i)
{
    return i >= 0 && i < st->n ? &st->e[i].t : NULL;
}

const kp_tensor *kp_st_find(const kp_st *st, const char *name)
{
    for (int i = 0; i < st->n; i++)
        if (strcmp(st->e[i].name, name) == 0)
            return &st->e[i].t;
    return NULL;
}

/* Formats a shape as "[3, 4]" (-1 as "*") into out. */
static void format_shape(int ndim, const int64_t *shape, char *out, size_t outlen)
{
    size_t k = (size_t)snprintf(out, outlen, "[");
    for (int d = 0; d < ndim && k < outlen; d++) {
        if (shape[d] < 0)
            k += (size_t)snprintf(out + k, outlen - k, "%s*", d ? ", " : "");
        else
            k += (size_t)snprintf(out + k, outlen - k, "%s%lld", d ? ", " : "", (long long)shape[d]);
    }
    if (k < outlen)
        snprintf(out + k, outlen - k, "]");
}

const kp_tensor *kp_st_expect(const kp_st *st, const char *name, kp_dtype dtype,
                              int ndim, const int64_t *shape, char *err, size_t errlen)
{
    const kp_tensor *t = kp_st_find(st, name);
    char want[256], have[256];
    if (!t) {
        kp_errf(err, errlen, KP_ERR_NOTFOUND, "%s: no tensor '%s'", st->path, name);
        return NULL;
    }
    if (t->dtype != dtype) {
        kp_errf(err, errlen, KP_ERR_MISMATCH, "%s: tensor '%s' has dtype %s, expected %s",
                st->path, name, kp_dtype_name(t->dtype), kp_dtype_name(dtype));
        return NULL;
    }
    if (t->ndim != ndim) {
        kp_errf(err, errlen, KP_ERR_MISMATCH, "%s: tensor '%s' has %d dims, expected %d",
                st->path, name, t->ndim, ndim);
        return NULL;
    }
    for (int d = 0; shape && d < ndim; d++) {
        if (shape[d] >= 0 && shape[d] != t->shape[d]) {
            format_shape(ndim, t->shape, have, sizeof have);
            format_shape(ndim, shape, want, sizeof want);
            kp_errf(err, errlen, KP_ERR_MISMATCH, "%s: tensor '%s' has shape %s, expected %s",
                    st->path, name, have, want);
            return NULL;
        }
    }
    return t;
}

const char *kp_st_meta(const kp_st *st, const char *key)
{
    for (int i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta[2 * i], key) == 0)
            return st->meta[2 * i + 1];
    return NULL;
}

const char *kp_st_path(const kp_st *st)
{
    return st->path;
}

/* ---------------------------------------------------------------- writing */

typedef struct stw_tensor {
    char *name;         /* owned */
    kp_dtype dtype;
    int ndim;
    int64_t shape[KP_ST_MAX_DIMS];
    void *data;         /* owned copy (NULL when nbytes is 0) */
    size_t nbytes;
    int order;          /* insertion index: the tie-break */
} stw_tensor;

struct kp_stw {
    stw_tensor *t;
    int n, cap;
    char **meta;        /* owned: key0, value0, ... */
    int n_meta, cap_meta;
};

kp_stw *kp_stw_create(void)
{
    return calloc(1, sizeof(kp_stw));
}

void kp_stw_free(kp_stw *w)
{
    if (!w)
        return;
    for (int i = 0; i < w->n; i++) {
        free(w->t[i].name);
        free(w->t[i].data);
    }
    for (int i = 0; i < 2 * w->n_meta; i++)
        free(w->meta[i]);
    free(w->t);
    free(w->meta);
    free(w);
}

/* Returns 1 when s can be a JSON string (valid UTF-8, no NUL inside). */
static int is_json_string(const char *s)
{
    json_t *j = json_string(s);
    json_decref(j);
    return j != NULL;
}

/* Checks the arguments of kp_stw_add; sets *nbytes. */
static int stw_check(const kp_stw *w, const char *name, kp_dtype dtype, int ndim,
                     const int64_t *shape, const void *data, size_t *nbytes)
{
    if (!name || strcmp(name, ST_META_KEY) == 0 || !is_json_string(name) ||
        (unsigned)dtype >= KP_DTYPE_COUNT || ndim < 0 || ndim > KP_ST_MAX_DIMS ||
        (ndim > 0 && !shape))
        return KP_ERR_ARG;
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return KP_ERR_ARG;
    int64_t numel = 1, nb;
    for (int d = 0; d < ndim; d++)
        if (shape[d] < 0 || __builtin_mul_overflow(numel, shape[d], &numel))
            return KP_ERR_ARG;
    if (__builtin_mul_overflow(numel, (int64_t)kp_dtype_size(dtype), &nb) || (nb > 0 && !data))
        return KP_ERR_ARG;
    *nbytes = (size_t)nb;
    return 0;
}

int kp_stw_add(kp_stw *w, const char *name, kp_dtype dtype, int ndim,
               const int64_t *shape, const void *data)
{
    size_t nbytes;
    int rc = stw_check(w, name, dtype, ndim, shape, data, &nbytes);
    if (rc < 0)
        return rc;
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 8;
        stw_tensor *t = realloc(w->t, sizeof *t * (size_t)cap);
        if (!t)
            return KP_ERR_NOMEM;
        w->t = t;
        w->cap = cap;
    }
    stw_tensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    t->data = nbytes ? malloc(nbytes) : NULL;
    if (!t->name || (nbytes && !t->data)) {
        free(t->name);
        free(t->data);
        return KP_ERR_NOMEM;
    }
    if (nbytes)
        memcpy(t->data, data, nbytes);
    t->dtype = dtype;
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++)
        t->shape[d] = shape[d];
    t->nbytes = nbytes;
    t->order = w->n++;
    return 0;
}

int kp_stw_meta(kp_stw *w, const char *key, const char *value)
{
    if (!key || !value || !is_json_string(key) || !is_json_string(value))
        return KP_ERR_ARG;
    char *v = strdup(value);
    if (!v)
        return KP_ERR_NOMEM;
    for (int i = 0; i < w->n_meta; i++) {
        if (strcmp(w->meta[2 * i], key) == 0) {
            free(w->meta[2 * i + 1]);
            w->meta[2 * i + 1] = v;
            return 0;
        }
    }
    if (w->n_meta == w->cap_meta) {
        int cap = w->cap_meta ? 2 * w->cap_meta : 8;
        char **m = realloc(w->meta, sizeof *m * 2 * (size_t)cap);
        if (!m) {
            free(v);
            return KP_ERR_NOMEM;
        }
        w->meta = m;
        w->cap_meta = cap;
    }
    char *k = strdup(key);
    if (!k) {
        free(v);
        return KP_ERR_NOMEM;
    }
    w->meta[2 * w->n_meta] = k;
    w->meta[2 * w->n_meta + 1] = v;
    w->n_meta++;
    return 0;
}

static int cmp_write_order(const void *a, const void *b)
{
    const stw_tensor *x = *(const stw_tensor *const *)a, *y = *(const stw_tensor *const *)b;
    size_t sx = kp_dtype_size(x->dtype), sy = kp_dtype_size(y->dtype);
    if (sx != sy)
        return sx > sy ? -1 : 1;
    return (x->order > y->order) - (x->order < y->order);
}

/* Builds {"dtype":..,"shape":[..],"data_offsets":[b,e]} for one tensor. */
static json_t *stw_entry_json(const stw_tensor *t, size_t begin)
{
    json_t *e = json_object(), *shape = json_array();
    json_t *off = json_pack("[II]", (json_int_t)begin, (json_int_t)(begin + t->nbytes));
    int bad = !e || !shape || !off;
    for (int d = 0; d < t->ndim && !bad; d++)
        bad = json_array_append_new(shape, json_integer((json_int_t)t->shape[d])) != 0;
    bad = bad || json_object_set_new(e, "dtype", json_string(kp_dtype_name(t->dtype))) != 0;
    bad = bad || json_object_set(e, "shape", shape) != 0;
    bad = bad || json_object_set(e, "data_offsets", off) != 0;
    json_decref(shape);
    json_decref(off);
    if (bad) {
        json_decref(e);
        return NULL;
    }
    return e;
}

/* Builds the header JSON for tensors in write order `by`. */
static json_t *stw_header_json(const kp_stw *w, stw_tensor *const *by)
{
    json_t *root = json_object();
    int bad = !root;
    if (!bad && w->n_meta > 0) {
        json_t *m = json_object();
        for (int i = 0; i < w->n_meta && m && !bad; i++)
            bad = json_object_set_new(m, w->meta[2 * i], json_string(w->meta[2 * i + 1])) != 0;
        bad = bad || !m || json_object_set(root, ST_META_KEY, m) != 0;
        json_decref(m);
    }
    size_t pos = 0;
    for (int i = 0; i < w->n && !bad; i++) {
        bad = json_object_set_new(root, by[i]->name, stw_entry_json(by[i], pos)) != 0;
        pos += by[i]->nbytes;
    }
    if (bad) {
        json_decref(root);
        return NULL;
    }
    return root;
}

/* Writes length prefix, padded header and data to f; 0 or -1 (errno set). */
static int stw_emit(FILE *f, const char *hdr, stw_tensor *const *by, int n)
{
    size_t hlen = strlen(hdr), padded = (hlen + 7) / 8 * 8;
    uint8_t len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    if (fwrite(len8, 1, 8, f) != 8 || fwrite(hdr, 1, hlen, f) != hlen)
        return -1;
    for (size_t i = hlen; i < padded; i++)
        if (fputc(' ', f) == EOF)
            return -1;
    for (int i = 0; i < n; i++)
        if (by[i]->nbytes && fwrite(by[i]->data, 1, by[i]->nbytes, f) != by[i]->nbytes)
            return -1;
    return 0;
}

int kp_stw_write(const kp_stw *w, const char *path, char *err, size_t errlen)
{
    int rc = KP_ERR_NOMEM;
    json_t *root = NULL;
    char *hdr = NULL;
    kp_afile *af = NULL;
    stw_tensor **by = malloc(sizeof *by * (size_t)(w->n + 1));
    if (by) {
        for (int i = 0; i < w->n; i++)
            by[i] = &w->t[i];
        qsort(by, (size_t)w->n, sizeof *by, cmp_write_order);
        root = stw_header_json(w, by);
    }
    if (!root || !(hdr = json_dumps(root, JSON_PRESERVE_ORDER | JSON_COMPACT))) {
        kp_errf(err, errlen, rc, "%s: out of memory building the header", path);
        goto fail;
    }
    if ((rc = kp_afile_open(path, &af, err, errlen)) < 0)
        goto fail;
    if (stw_emit(kp_afile_stream(af), hdr, by, w->n) != 0) {
        rc = kp_errf(err, errlen, KP_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        kp_afile_abort(af);
        goto fail;
    }
    rc = kp_afile_commit(af, err, errlen);
fail:
    free(hdr);
    json_decref(root);
    free(by);
    return rc;
}

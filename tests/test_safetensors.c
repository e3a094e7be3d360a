/* test_safetensors.c - safetensors reader (hostile files) and writer. */
#include "kp_test.h"
#include "../lib/afile.h"
#include "../lib/err.h"
#include "../models/safetensors.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Returns a heap image: 8-byte LE length of hdr, hdr, then data_len bytes
 * 0, 1, 2, ... (*len gets the total). */
static unsigned char *make_image(const char *hdr, size_t data_len, size_t *len)
{
    size_t hlen = strlen(hdr);
    unsigned char *p = malloc(8 + hlen + data_len + 1);
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    memcpy(p + 8, hdr, hlen);
    for (size_t i = 0; i < data_len; i++)
        p[8 + hlen + i] = (unsigned char)i;
    *len = 8 + hlen + data_len;
    return p;
}

/* Fills n bytes with a pattern that depends on seed. */
static void fill(unsigned char *p, size_t n, int seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(i * 7 + (size_t)seed * 13 + 1);
}

/* Writes w to DIR/name; returns the heap path. */
static char *write_st(const char *dir, const char *name, const kp_stw *w)
{
    char *path = kp_test_join(dir, name), err[KP_ERRLEN];
    int rc = kp_stw_write(w, path, err, sizeof err);
    if (rc != 0)
        fail_msg("%s", err);
    return path;
}

/* Reads a whole file (bytes) into *len; heap. */
static char *slurp(const char *path, size_t *len)
{
    char *out, err[KP_ERRLEN];
    assert_int_equal(kp_read_file(path, &out, len, err, sizeof err), 0);
    return out;
}

/* ---------------------------------------------------------------- dtypes */

static void test_dtype_table_names_sizes_and_parse(void **state)
{
    (void)state;
    static const size_t sizes[KP_DTYPE_COUNT] = { 1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 8, 8, 8 };
    for (int t = 0; t < KP_DTYPE_COUNT; t++) {
        kp_dtype back = KP_DTYPE_COUNT;
        assert_int_equal(kp_dtype_size((kp_dtype)t), sizes[t]);
        assert_int_equal(kp_dtype_parse(kp_dtype_name((kp_dtype)t), &back), 0);
        assert_int_equal(back, t);
    }
    assert_string_equal(kp_dtype_name(KP_BF16), "BF16");
    kp_dtype out = KP_U8;
    assert_int_equal(kp_dtype_parse("f32", &out), KP_ERR_FORMAT);
    assert_int_equal(kp_dtype_parse("F8_E4M3", &out), KP_ERR_FORMAT);
    assert_int_equal(out, KP_U8);
}

/* ----------------------------------------------------------- round trip */

static void test_round_trip_every_dtype_and_a_scalar(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), err[KP_ERRLEN], name[32];
    unsigned char data[KP_DTYPE_COUNT][48];
    int64_t shape[2] = { 2, 3 };
    double scalar = -3.25;
    kp_stw *w = kp_stw_create();
    for (int t = 0; t < KP_DTYPE_COUNT; t++) {
        fill(data[t], sizeof data[t], t);
        snprintf(name, sizeof name, "t_%s", kp_dtype_name((kp_dtype)t));
        assert_int_equal(kp_stw_add(w, name, (kp_dtype)t, 2, shape, data[t]), 0);
    }
    assert_int_equal(kp_stw_add(w, "scalar", KP_F64, 0, NULL, &scalar), 0);
    char *path = write_st(dir, "all.safetensors", w);
    kp_st *st = NULL;
    assert_int_equal(kp_st_open(path, &st, err, sizeof err), 0);
    assert_int_equal(kp_st_count(st), KP_DTYPE_COUNT + 1);
    assert_string_equal(kp_st_path(st), path);
    for (int t = 0; t < KP_DTYPE_COUNT; t++) {
        snprintf(name, sizeof name, "t_%s", kp_dtype_name((kp_dtype)t));
        const kp_tensor *x = kp_st_find(st, name);
        assert_non_null(x);
        size_t es = kp_dtype_size((kp_dtype)t);
        assert_int_equal(x->dtype, t);
        assert_int_equal(x->ndim, 2);
        assert_int_equal(x->shape[0], 2);
        assert_int_equal(x->shape[1], 3);
        assert_int_equal(x->numel, 6);
        assert_int_equal(x->nbytes, 6 * es);
        assert_int_equal((uintptr_t)x->data % es, 0);
        assert_memory_equal(x->data, data[t], 6 * es);
    }
    const kp_tensor *s = kp_st_expect(st, "scalar", KP_F64, 0, NULL, err, sizeof err);
    assert_non_null(s);
    assert_int_equal(s->numel, 1);
    assert_true(*(const double *)s->data == -3.25);
    assert_null(kp_st_find(st, "nope"));
    assert_null(kp_st_at(st, -1));
    assert_null(kp_st_at(st, KP_DTYPE_COUNT + 1));
    kp_st_close(st);
    kp_st_close(NULL);
    kp_stw_free(w);
    free(path);
    free(dir);
}

static void test_round_trip_empty_file_and_zero_size_tensor(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), err[KP_ERRLEN];
    kp_stw *w = kp_stw_create();
    char *empty = write_st(dir, "empty.safetensors", w);
    int64_t shape[2] = { 0, 5 };
    assert_int_equal(kp_stw_add(w, "none", KP_F32, 2, shape, NULL), 0);
    char *zero = write_st(dir, "zero.safetensors", w);
    kp_st *st = NULL;
    assert_int_equal(kp_st_open(empty, &st, err, sizeof err), 0);
    assert_int_equal(kp_st_count(st), 0);
    assert_null(kp_st_meta(st, "x"));
    kp_st_close(st);
    assert_int_equal(kp_st_open(zero, &st, err, sizeof err), 0);
    const kp_tensor *t = kp_st_expect(st, "none", KP_F32, 2, shape, err, sizeof err);
    assert_non_null(t);
    assert_int_equal(t->numel, 0);
    assert_int_equal(t->nbytes, 0);
    assert_non_null(t->data);
    kp_st_close(st);
    kp_stw_free(w);
    free(empty);
    free(zero);
    free(dir);
}

static void test_metadata_round_trips_and_replaces(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), err[KP_ERRLEN];
    kp_stw *w = kp_stw_create();
    assert_int_equal(kp_stw_meta(w, "kpipe.artifact", "preds"), 0);
    assert_int_equal(kp_stw_meta(w, "folds_hash", "abc"), 0);
    assert_int_equal(kp_stw_meta(w, "kpipe.artifact", "dataset"), 0);
    assert_int_equal(kp_stw_meta(w, "empty", ""), 0);
    char *path = write_st(dir, "m.safetensors", w);
    kp_st *st = NULL;
    assert_int_equal(kp_st_open(path, &st, err, sizeof err), 0);
    assert_string_equal(kp_st_meta(st, "kpipe.artifact"), "dataset");
    assert_string_equal(kp_st_meta(st, "folds_hash"), "abc");
    assert_string_equal(kp_st_meta(st, "empty"), "");
    assert_null(kp_st_meta(st, "missing"));
    kp_st_close(st);
    size_t len;
    char *bytes = slurp(path, &len);
    assert_memory_equal(bytes + 8, "{\"__metadata__\":{\"kpipe.artifact\":\"dataset\",\"folds_hash\":\"abc\"", 62);
    free(bytes);
    kp_stw_free(w);
    free(path);
    free(dir);
}

/* Builds the same writer content each call (tensors of mixed sizes). */
static kp_stw *sample_writer(void)
{
    static const unsigned char u8[3] = { 1, 2, 3 };
    static const double f64[1] = { 2.5 };
    static const int16_t i16[1] = { -7 };
    static const float f32[1] = { 0.25f };
    static const unsigned char b[1] = { 1 };
    static const int64_t i64[2] = { -1, 1LL << 40 };
    int64_t n1 = 1, n2 = 2, n3 = 3;
    kp_stw *w = kp_stw_create();
    assert_int_equal(kp_stw_meta(w, "k", "v"), 0);
    assert_int_equal(kp_stw_add(w, "u8", KP_U8, 1, &n3, u8), 0);
    assert_int_equal(kp_stw_add(w, "f64", KP_F64, 1, &n1, f64), 0);
    assert_int_equal(kp_stw_add(w, "i16", KP_I16, 1, &n1, i16), 0);
    assert_int_equal(kp_stw_add(w, "f32", KP_F32, 1, &n1, f32), 0);
    assert_int_equal(kp_stw_add(w, "bool", KP_BOOL, 1, &n1, b), 0);
    assert_int_equal(kp_stw_add(w, "i64", KP_I64, 1, &n2, i64), 0);
    return w;
}

static void test_writer_orders_by_element_size_and_aligns(void **state)
{
    (void)state;
    static const char *const order[] = { "f64", "i64", "f32", "i16", "u8", "bool" };
    char *dir = kp_test_tmpdir(), err[KP_ERRLEN];
    kp_stw *w = sample_writer();
    char *path = write_st(dir, "o.safetensors", w);
    size_t len;
    unsigned char *bytes = (unsigned char *)slurp(path, &len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | bytes[i];
    assert_int_equal(hlen % 8, 0);
    assert_int_equal(bytes[8 + hlen - 1], ' ');   /* padded with spaces */
    kp_st *st = NULL;
    assert_int_equal(kp_st_open_mem("o", bytes, len, &st, err, sizeof err), 0);
    const unsigned char *expect = bytes + 8 + hlen;   /* contiguous in this order */
    for (int i = 0; i < 6; i++) {
        const kp_tensor *t = kp_st_at(st, i);
        assert_string_equal(t->name, order[i]);
        assert_ptr_equal(t->data, expect);          /* aligned: no copy was made */
        expect += t->nbytes;
    }
    assert_ptr_equal(expect, bytes + len);
    kp_st_close(st);
    free(bytes);
    kp_stw_free(w);
    free(path);
    free(dir);
}

static void test_writer_output_is_byte_identical_for_identical_input(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), err[KP_ERRLEN];
    kp_stw *w1 = sample_writer(), *w2 = sample_writer();
    char *p1 = write_st(dir, "a.safetensors", w1), *p2 = write_st(dir, "b.safetensors", w2);
    /* Rewrite from what was read back: same bytes again. */
    kp_st *st = NULL;
    assert_int_equal(kp_st_open(p1, &st, err, sizeof err), 0);
    kp_stw *w3 = kp_stw_create();
    assert_int_equal(kp_stw_meta(w3, "k", kp_st_meta(st, "k")), 0);
    for (int i = 0; i < kp_st_count(st); i++) {
        const kp_tensor *t = kp_st_at(st, i);
        assert_int_equal(kp_stw_add(w3, t->name, t->dtype, t->ndim, t->shape, t->data), 0);
    }
    kp_st_close(st);
    char *p3 = write_st(dir, "c.safetensors", w3);
    size_t n1, n2, n3;
    char *b1 = slurp(p1, &n1), *b2 = slurp(p2, &n2), *b3 = slurp(p3, &n3);
    assert_int_equal(n1, n2);
    assert_int_equal(n1, n3);
    assert_memory_equal(b1, b2, n1);
    assert_memory_equal(b1, b3, n1);
    free(b1), free(b2), free(b3);
    free(p1), free(p2), free(p3);
    kp_stw_free(w1), kp_stw_free(w2), kp_stw_free(w3);
    free(dir);
}

static void test_writer_refuses_bad_arguments(void **state)
{
    (void)state;
    float x[4] = { 0 };
    int64_t ok[1] = { 4 }, neg[1] = { -1 }, big[9] = { 1, 1, 1, 1, 1, 1, 1, 1, 1 };
    int64_t huge[2] = { INT64_MAX / 2, 4 };
    kp_stw *w = kp_stw_create();
    assert_int_equal(kp_stw_add(w, "x", KP_F32, 1, ok, x), 0);
    assert_int_equal(kp_stw_add(w, "x", KP_F32, 1, ok, x), KP_ERR_ARG);          /* duplicate */
    assert_int_equal(kp_stw_add(w, "__metadata__", KP_F32, 1, ok, x), KP_ERR_ARG);
    assert_int_equal(kp_stw_add(w, "n", KP_F32, 1, neg, x), KP_ERR_ARG);
    assert_int_equal(kp_stw_add(w, "d", KP_F32, 9, big, x), KP_ERR_ARG);
    assert_int_equal(kp_stw_add(w, "h", KP_F32, 2, huge, x), KP_ERR_ARG);         /* overflow */
    assert_int_equal(kp_stw_add(w, "z", KP_F32, 1, ok, NULL), KP_ERR_ARG);
    assert_int_equal(kp_stw_add(w, "t", KP_DTYPE_COUNT, 1, ok, x), KP_ERR_ARG);
    assert_int_equal(kp_stw_add(w, "bad\xff", KP_F32, 1, ok, x), KP_ERR_ARG);     /* not UTF-8 */
    assert_int_equal(kp_stw_meta(w, "k", "\xc3"), KP_ERR_ARG);
    kp_stw_free(w);
    kp_stw_free(NULL);
}

static void test_writer_error_names_path(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), *file = kp_test_write(dir, "plain", "x");
    char *path = kp_test_join(file, "sub/out.safetensors"), err[KP_ERRLEN];
    kp_stw *w = kp_stw_create();
    assert_int_equal(kp_stw_write(w, path, err, sizeof err), KP_ERR_IO);
    assert_non_null(strstr(err, path));
    kp_stw_free(w);
    free(path);
    free(file);
    free(dir);
}

/* ------------------------------------------------------------ expect */

static void test_expect_names_what_differs(void **state)
{
    (void)state;
    float x[6] = { 0 };
    int64_t shape[2] = { 2, 3 }, want_any[2] = { -1, 3 }, want_bad[2] = { 2, 4 };
    kp_stw *w = kp_stw_create();
    assert_int_equal(kp_stw_add(w, "x", KP_F32, 2, shape, x), 0);
    char *dir = kp_test_tmpdir(), *path = write_st(dir, "e.safetensors", w), err[KP_ERRLEN];
    kp_st *st = NULL;
    assert_int_equal(kp_st_open(path, &st, err, sizeof err), 0);
    assert_non_null(kp_st_expect(st, "x", KP_F32, 2, want_any, err, sizeof err));
    assert_non_null(kp_st_expect(st, "x", KP_F32, 2, NULL, err, sizeof err));
    static const struct { const char *name; kp_dtype dt; int ndim; const int64_t *shape; const char *msg; } cases[] = {
        { "y", KP_F32, 2, NULL, "no tensor 'y'" },
        { "x", KP_F64, 2, NULL, "tensor 'x' has dtype F32, expected F64" },
        { "x", KP_F32, 1, NULL, "tensor 'x' has 2 dims, expected 1" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err[0] = 0;
        assert_null(kp_st_expect(st, cases[i].name, cases[i].dt, cases[i].ndim, cases[i].shape, err, sizeof err));
        assert_non_null(strstr(err, cases[i].msg));
        assert_non_null(strstr(err, path));
    }
    assert_null(kp_st_expect(st, "x", KP_F32, 2, want_bad, err, sizeof err));
    assert_non_null(strstr(err, "tensor 'x' has shape [2, 3], expected [2, 4]"));
    kp_st_close(st);
    kp_stw_free(w);
    free(path);
    free(dir);
}

/* ------------------------------------------------------------ hostile */

#define RAW(s) s, sizeof(s) - 1

typedef struct hostile_case {
    const char *raw;        /* whole file bytes, or NULL to use hdr + data */
    size_t raw_len;
    const char *hdr;
    size_t data_len;
    const char *needle;     /* a distinctive part of the message */
} hostile_case;

static const hostile_case hostile[] = {
    { RAW("abc"), NULL, 0, "file is 3 bytes, shorter than the 8-byte header length" },
    { RAW(""), NULL, 0, "file is 0 bytes" },
    { RAW("\0\0\0\0\0\0\0\0{}"), NULL, 0, "header length is 0" },
    { RAW("\x64\0\0\0\0\0\0\0{}"), NULL, 0, "header length 100 runs past the end of the file (10 bytes)" },
    { RAW("\x00\xc2\xeb\x0b\0\0\0\0{}"), NULL, 0, "header length 200000000 is over the 100 MB limit" },
    { RAW("\x04\0\0\0\0\0\0\0{\0} "), NULL, 0, "header is not valid JSON" },
    { NULL, 0, "{bad", 0, "header is not valid JSON" },
    { NULL, 0, "{} x", 0, "header is not valid JSON" },
    { NULL, 0, "[]", 0, "header is not a JSON object" },
    { NULL, 0, "\"w\"", 0, "header is not a JSON object" },
    { NULL, 0, "{\"a\":{},\"a\":{}}", 0, "duplicate" },
    { NULL, 0, "{\"\xff\":{}}", 0, "header is not valid JSON" },
    { NULL, 0, "{\"__metadata__\":3}", 0, "\"__metadata__\" is not an object" },
    { NULL, 0, "{\"__metadata__\":{\"a\":\"b\",\"n\":1}}", 0, "metadata 'n' is not a string" },
    { NULL, 0, "{\"w\":5}", 0, "tensor 'w': entry is not an object" },
    { NULL, 0, "{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'w': missing \"dtype\"" },
    { NULL, 0, "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "tensor 'w': missing \"shape\"" },
    { NULL, 0, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "tensor 'w': missing \"data_offsets\"" },
    { NULL, 0, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4,
      "tensor 'w': unexpected key \"x\"" },
    { NULL, 0, "{\"w\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'w': dtype is not a string" },
    { NULL, 0, "{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
      "tensor 'w': unknown dtype \"F8_E4M3\"" },
    { NULL, 0, "{\"w\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,16]}}", 16, "tensor 'w': shape is not an array" },
    { NULL, 0, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,0]}}", 0,
      "tensor 'w': shape[1] is not a non-negative integer" },
    { NULL, 0, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8,
      "tensor 'w': shape[0] is not a non-negative integer" },
    { NULL, 0, "{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1,
      "tensor 'w': shape has 9 dims, more than 8" },
    { NULL, 0, "{\"w\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}", 0,
      "tensor 'w': shape overflows" },
    { NULL, 0, "{\"w\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,0]}}", 0,
      "tensor 'w': byte size overflows" },
    { NULL, 0, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4,
      "tensor 'w': data_offsets is not an array of two integers" },
    { NULL, 0, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,\"4\"]}}", 4,
      "tensor 'w': data_offsets is not an array of two integers" },
    { NULL, 0, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,99999999999999999999]}}", 4,
      "header is not valid JSON" },
    { NULL, 0, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8,
      "tensor 'w': data_offsets [8, 4] are not ordered" },
    { NULL, 0, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4,
      "tensor 'w': data_offsets [-4, 0] are not ordered" },
    { NULL, 0, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4,
      "tensor 'w': data_offsets [0, 8] run past the 4 data bytes" },
    { NULL, 0, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4,
      "tensor 'w': data_offsets [0, 4] hold 4 bytes, shape and dtype need 8" },
    { NULL, 0, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
      "tensor 'b': data_offsets [4, 12] overlap tensor 'a'" },
    { NULL, 0, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
      "tensor 'b': data_offsets [0, 8] overlap tensor 'a'" },
    { NULL, 0, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}", 8,
      "tensor 'z': data_offsets [4, 4] overlap tensor 'a'" },
    { NULL, 0, "{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 12,
      "tensor 'b': data bytes [4, 8) before it belong to no tensor (hole)" },
    { NULL, 0, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
      "tensor 'a': data bytes [0, 4) before it belong to no tensor (hole)" },
    { NULL, 0, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8,
      "data bytes [4, 8) at the end belong to no tensor (hole)" },
    { NULL, 0, "{}", 3, "data bytes [0, 3) at the end belong to no tensor (hole)" },
};

static void test_hostile_files_are_refused_with_a_message(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
        const hostile_case *c = &hostile[i];
        size_t len;
        unsigned char *img;
        if (c->raw) {
            img = malloc(c->raw_len + 1);
            memcpy(img, c->raw, c->raw_len);
            len = c->raw_len;
        } else {
            img = make_image(c->hdr, c->data_len, &len);
        }
        char err[KP_ERRLEN] = "";
        kp_st *st = NULL;
        int rc = kp_st_open_mem("bad.st", img, len, &st, err, sizeof err);
        if (rc != KP_ERR_FORMAT || !strstr(err, c->needle) || strncmp(err, "bad.st: ", 8) != 0)
            fail_msg("case %zu: rc %d, message \"%s\", wanted \"%s\"", i, rc, err, c->needle);
        assert_null(st);
        free(img);
    }
}

static void test_valid_edge_cases_are_accepted(void **state)
{
    (void)state;
    static const struct { const char *hdr; size_t data_len; int count; } ok[] = {
        { "{}", 0, 0 },
        { "{}      ", 0, 0 },
        { "{\"__metadata__\":{}}", 0, 0 },
        { "{\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
          "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, 2 },
        { "{\"a\":{\"data_offsets\":[0,4],\"shape\":[],\"dtype\":\"I32\"}}", 4, 1 },
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        size_t len;
        unsigned char *img = make_image(ok[i].hdr, ok[i].data_len, &len);
        char err[KP_ERRLEN];
        kp_st *st = NULL;
        int rc = kp_st_open_mem("ok.st", img, len, &st, err, sizeof err);
        if (rc != 0)
            fail_msg("case %zu: %s", i, err);
        assert_int_equal(kp_st_count(st), ok[i].count);
        kp_st_close(st);
        free(img);
    }
}

static void test_truncation_at_every_byte_is_refused(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), err[KP_ERRLEN];
    kp_stw *w = sample_writer();
    char *path = write_st(dir, "t.safetensors", w);
    size_t n;
    char *full = slurp(path, &n);
    for (size_t len = 0; len < n; len++) {
        char *cut = malloc(len ? len : 1);   /* exact size: ASan sees any over-read */
        memcpy(cut, full, len);
        kp_st *st = NULL;
        int rc = kp_st_open_mem("cut", cut, len, &st, err, sizeof err);
        if (rc != KP_ERR_FORMAT)
            fail_msg("truncated to %zu of %zu bytes: rc %d", len, n, rc);
        assert_null(st);
        free(cut);
    }
    char *longer = malloc(n + 1);        /* one byte more: a hole at the end */
    memcpy(longer, full, n);
    longer[n] = 0;
    kp_st *st = NULL;
    assert_int_equal(kp_st_open_mem("long", longer, n + 1, &st, err, sizeof err), KP_ERR_FORMAT);
    assert_non_null(strstr(err, "at the end belong to no tensor"));
    assert_int_equal(kp_st_open_mem("full", full, n, &st, err, sizeof err), 0);
    kp_st_close(st);
    free(longer);
    free(full);
    kp_stw_free(w);
    free(path);
    free(dir);
}

static void test_misaligned_tensor_is_copied_correctly(void **state)
{
    (void)state;
    /* A 112-byte header (so the data starts 8-aligned); "f" starts at data byte 1. */
    const char *hdr = "{\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                      "\"f\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[1,9]}}      ";
    assert_int_equal(strlen(hdr) % 8, 0);
    size_t len;
    unsigned char *img = make_image(hdr, 9, &len);
    unsigned char *base = NULL;
    assert_int_equal(posix_memalign((void **)&base, 16, len), 0);
    memcpy(base, img, len);
    float want[2] = { 1.5f, -2.0f };
    memcpy(base + 8 + strlen(hdr) + 1, want, sizeof want);
    char err[KP_ERRLEN];
    kp_st *st = NULL;
    assert_int_equal(kp_st_open_mem("mis", base, len, &st, err, sizeof err), 0);
    const kp_tensor *f = kp_st_expect(st, "f", KP_F32, 1, NULL, err, sizeof err);
    assert_non_null(f);
    assert_int_equal((uintptr_t)f->data % 4, 0);
    assert_false((const unsigned char *)f->data >= base && (const unsigned char *)f->data < base + len);
    const float *fv = f->data;
    assert_true(fv[0] == 1.5f && fv[1] == -2.0f);
    const kp_tensor *b = kp_st_find(st, "b");
    assert_ptr_equal(b->data, base + 8 + strlen(hdr));   /* bytes need no copy */
    kp_st_close(st);
    free(base);
    free(img);
}

static void test_open_errors_name_the_path(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), *empty = kp_test_write(dir, "empty.st", ""), err[KP_ERRLEN];
    kp_st *st = NULL;
    assert_int_equal(kp_st_open("/nonexistent/x.safetensors", &st, err, sizeof err), KP_ERR_IO);
    assert_non_null(strstr(err, "/nonexistent/x.safetensors: cannot open"));
    assert_int_equal(kp_st_open(dir, &st, err, sizeof err), KP_ERR_IO);
    assert_non_null(strstr(err, "not a regular file"));
    assert_int_equal(kp_st_open(empty, &st, err, sizeof err), KP_ERR_FORMAT);
    assert_non_null(strstr(err, "shorter than the 8-byte header length"));
    assert_non_null(strstr(err, empty));
    assert_null(st);
    free(empty);
    free(dir);
}

/* ------------------------------------------------------- python-written */

/* Written by /usr/bin/python3 + numpy in the huggingface layout (metadata
 * first, json.dumps separators, tensors sorted by alignment then name):
 *   bias F64 [2] = [1.5, -2.25]; ids I64 [2,2] = [[1,-2],[3,2**40]];
 *   step I32 [] = 7; weight F32 [2,3] = arange(6)*0.5-1; half F16 [2] = [1,-0.5];
 *   mask BOOL [3] = [1,0,1]; metadata format=pt, source=python. */
static const unsigned char python_file[] = {
    0xc8, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x7b, 0x22, 0x5f, 0x5f, 0x6d, 0x65, 0x74, 0x61,
    0x64, 0x61, 0x74, 0x61, 0x5f, 0x5f, 0x22, 0x3a, 0x20, 0x7b, 0x22, 0x66, 0x6f, 0x72, 0x6d, 0x61,
    0x74, 0x22, 0x3a, 0x20, 0x22, 0x70, 0x74, 0x22, 0x2c, 0x20, 0x22, 0x73, 0x6f, 0x75, 0x72, 0x63,
    0x65, 0x22, 0x3a, 0x20, 0x22, 0x70, 0x79, 0x74, 0x68, 0x6f, 0x6e, 0x22, 0x7d, 0x2c, 0x20, 0x22,
    0x62, 0x69, 0x61, 0x73, 0x22, 0x3a, 0x20, 0x7b, 0x22, 0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a,
    0x20, 0x22, 0x46, 0x36, 0x34, 0x22, 0x2c, 0x20, 0x22, 0x73, 0x68, 0x61, 0x70, 0x65, 0x22, 0x3a,
    0x20, 0x5b, 0x32, 0x5d, 0x2c, 0x20, 0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f, 0x66, 0x66, 0x73,
    0x65, 0x74, 0x73, 0x22, 0x3a, 0x20, 0x5b, 0x30, 0x2c, 0x20, 0x31, 0x36, 0x5d, 0x7d, 0x2c, 0x20,
    0x22, 0x69, 0x64, 0x73, 0x22, 0x3a, 0x20, 0x7b, 0x22, 0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a,
    0x20, 0x22, 0x49, 0x36, 0x34, 0x22, 0x2c, 0x20, 0x22, 0x73, 0x68, 0x61, 0x70, 0x65, 0x22, 0x3a,
    0x20, 0x5b, 0x32, 0x2c, 0x20, 0x32, 0x5d, 0x2c, 0x20, 0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f,
    0x66, 0x66, 0x73, 0x65, 0x74, 0x73, 0x22, 0x3a, 0x20, 0x5b, 0x31, 0x36, 0x2c, 0x20, 0x34, 0x38,
    0x5d, 0x7d, 0x2c, 0x20, 0x22, 0x73, 0x74, 0x65, 0x70, 0x22, 0x3a, 0x20, 0x7b, 0x22, 0x64, 0x74,
    0x79, 0x70, 0x65, 0x22, 0x3a, 0x20, 0x22, 0x49, 0x33, 0x32, 0x22, 0x2c, 0x20, 0x22, 0x73, 0x68,
    0x61, 0x70, 0x65, 0x22, 0x3a, 0x20, 0x5b, 0x5d, 0x2c, 0x20, 0x22, 0x64, 0x61, 0x74, 0x61, 0x5f,
    0x6f, 0x66, 0x66, 0x73, 0x65, 0x74, 0x73, 0x22, 0x3a, 0x20, 0x5b, 0x34, 0x38, 0x2c, 0x20, 0x35,
    0x32, 0x5d, 0x7d, 0x2c, 0x20, 0x22, 0x77, 0x65, 0x69, 0x67, 0x68, 0x74, 0x22, 0x3a, 0x20, 0x7b,
    0x22, 0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x20, 0x22, 0x46, 0x33, 0x32, 0x22, 0x2c, 0x20,
    0x22, 0x73, 0x68, 0x61, 0x70, 0x65, 0x22, 0x3a, 0x20, 0x5b, 0x32, 0x2c, 0x20, 0x33, 0x5d, 0x2c,
    0x20, 0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f, 0x66, 0x66, 0x73, 0x65, 0x74, 0x73, 0x22, 0x3a,
    0x20, 0x5b, 0x35, 0x32, 0x2c, 0x20, 0x37, 0x36, 0x5d, 0x7d, 0x2c, 0x20, 0x22, 0x68, 0x61, 0x6c,
    0x66, 0x22, 0x3a, 0x20, 0x7b, 0x22, 0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x20, 0x22, 0x46,
    0x31, 0x36, 0x22, 0x2c, 0x20, 0x22, 0x73, 0x68, 0x61, 0x70, 0x65, 0x22, 0x3a, 0x20, 0x5b, 0x32,
    0x5d, 0x2c, 0x20, 0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f, 0x66, 0x66, 0x73, 0x65, 0x74, 0x73,
    0x22, 0x3a, 0x20, 0x5b, 0x37, 0x36, 0x2c, 0x20, 0x38, 0x30, 0x5d, 0x7d, 0x2c, 0x20, 0x22, 0x6d,
    0x61, 0x73, 0x6b, 0x22, 0x3a, 0x20, 0x7b, 0x22, 0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x20,
    0x22, 0x42, 0x4f, 0x4f, 0x4c, 0x22, 0x2c, 0x20, 0x22, 0x73, 0x68, 0x61, 0x70, 0x65, 0x22, 0x3a,
    0x20, 0x5b, 0x33, 0x5d, 0x2c, 0x20, 0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f, 0x66, 0x66, 0x73,
    0x65, 0x74, 0x73, 0x22, 0x3a, 0x20, 0x5b, 0x38, 0x30, 0x2c, 0x20, 0x38, 0x33, 0x5d, 0x7d, 0x7d,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf8, 0x3f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0xc0,
    0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
    0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0xbf, 0x00, 0x00, 0x00, 0xbf, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x3f, 0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0xc0, 0x3f, 0x00, 0x3c, 0x00, 0xb8,
    0x01, 0x00, 0x01,
};

static void test_python_written_file_is_read(void **state)
{
    (void)state;
    char *dir = kp_test_tmpdir(), *path = kp_test_join(dir, "py.safetensors"), err[KP_ERRLEN];
    assert_int_equal(kp_write_file_atomic(path, python_file, sizeof python_file, err, sizeof err), 0);
    kp_st *st = NULL;
    if (kp_st_open(path, &st, err, sizeof err) != 0)
        fail_msg("%s", err);
    static const char *const order[] = { "bias", "ids", "step", "weight", "half", "mask" };
    assert_int_equal(kp_st_count(st), 6);
    for (int i = 0; i < 6; i++)
        assert_string_equal(kp_st_at(st, i)->name, order[i]);
    assert_string_equal(kp_st_meta(st, "format"), "pt");
    assert_string_equal(kp_st_meta(st, "source"), "python");
    const kp_tensor *t = kp_st_expect(st, "bias", KP_F64, 1, (int64_t[]){ 2 }, err, sizeof err);
    assert_true(((const double *)t->data)[0] == 1.5 && ((const double *)t->data)[1] == -2.25);
    t = kp_st_expect(st, "ids", KP_I64, 2, (int64_t[]){ 2, 2 }, err, sizeof err);
    const int64_t *ids = t->data;
    assert_true(ids[0] == 1 && ids[1] == -2 && ids[2] == 3 && ids[3] == (int64_t)1 << 40);
    t = kp_st_expect(st, "step", KP_I32, 0, NULL, err, sizeof err);
    assert_int_equal(*(const int32_t *)t->data, 7);
    t = kp_st_expect(st, "weight", KP_F32, 2, (int64_t[]){ 2, 3 }, err, sizeof err);
    for (int i = 0; i < 6; i++)
        assert_true(((const float *)t->data)[i] == (float)i * 0.5f - 1.0f);
    t = kp_st_expect(st, "half", KP_F16, 1, (int64_t[]){ 2 }, err, sizeof err);
    assert_int_equal(((const uint16_t *)t->data)[0], 0x3c00);   /* 1.0 */
    assert_int_equal(((const uint16_t *)t->data)[1], 0xb800);   /* -0.5 */
    t = kp_st_expect(st, "mask", KP_BOOL, 1, (int64_t[]){ 3 }, err, sizeof err);
    assert_memory_equal(t->data, "\1\0\1", 3);
    kp_st_close(st);
    free(path);
    free(dir);
}

KP_TEST_GROUP(safetensors) {
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_dtype_table_names_sizes_and_parse),
        cmocka_unit_test(test_round_trip_every_dtype_and_a_scalar),
        cmocka_unit_test(test_round_trip_empty_file_and_zero_size_tensor),
        cmocka_unit_test(test_metadata_round_trips_and_replaces),
        cmocka_unit_test(test_writer_orders_by_element_size_and_aligns),
        cmocka_unit_test(test_writer_output_is_byte_identical_for_identical_input),
        cmocka_unit_test(test_writer_refuses_bad_arguments),
        cmocka_unit_test(test_writer_error_names_path),
        cmocka_unit_test(test_expect_names_what_differs),
        cmocka_unit_test(test_hostile_files_are_refused_with_a_message),
        cmocka_unit_test(test_valid_edge_cases_are_accepted),
        cmocka_unit_test(test_truncation_at_every_byte_is_refused),
        cmocka_unit_test(test_misaligned_tensor_is_copied_correctly),
        cmocka_unit_test(test_open_errors_name_the_path),
        cmocka_unit_test(test_python_written_file_is_read),
    };
    return KP_RUN(safetensors, t);
}

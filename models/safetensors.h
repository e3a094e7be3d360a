/* safetensors.h - the artifact and checkpoint format shared by every stage.
 *
 * Layout: 8-byte little-endian header length N, N bytes of JSON
 *   {"NAME": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *    "__metadata__": {"key": "value", ...}}
 * then the raw little-endian data.  Files are read by mmap and treated as
 * hostile: the header length, every dtype, shape, offset and the absence of
 * holes and overlaps are checked before any pointer is handed out.
 * The writer puts tensors in order of decreasing element size (then in the
 * order they were added) and pads the header with spaces to a multiple of 8,
 * so every tensor is aligned; the reader copies a misaligned tensor written by
 * another tool to aligned memory of its own.
 */
#ifndef KP_SAFETENSORS_H
#define KP_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

typedef enum kp_dtype {
    KP_BOOL, KP_U8, KP_I8, KP_U16, KP_I16, KP_F16, KP_BF16,
    KP_U32, KP_I32, KP_F32, KP_U64, KP_I64, KP_F64,
    KP_DTYPE_COUNT
} kp_dtype;

#define KP_ST_MAX_DIMS 8

/* One tensor as found in a file; all pointers borrowed from the kp_st. */
typedef struct kp_tensor {
    const char *name;
    kp_dtype dtype;
    int ndim;
    int64_t shape[KP_ST_MAX_DIMS];
    int64_t numel;          /* product of shape (1 for a scalar) */
    const void *data;       /* aligned to the element size */
    size_t nbytes;
} kp_tensor;

/* ---- reading ---- */
typedef struct kp_st kp_st;

/* Maps and validates path; *out is caller-owned (kp_st_close). Errors name the file. */
int kp_st_open(const char *path, kp_st **out, char *err, size_t errlen);

/* Validates an in-memory image (borrowed until kp_st_close); `name` is used in errors. */
int kp_st_open_mem(const char *name, const void *data, size_t len, kp_st **out,
                   char *err, size_t errlen);

/* Unmaps and frees; NULL is accepted. */
void kp_st_close(kp_st *st);

/* Returns the number of tensors. */
int kp_st_count(const kp_st *st);

/* Returns tensor i in file order (0 <= i < count); borrowed. */
const kp_tensor *kp_st_at(const kp_st *st, int i);

/* Returns the tensor named `name`, or NULL; borrowed. */
const kp_tensor *kp_st_find(const kp_st *st, const char *name);

/* Returns the tensor `name` if it has dtype `dtype`, ndim dims and, for each
 * dim d with shape[d] >= 0, that extent; else NULL with a message naming the
 * file, tensor and what differs. shape may be NULL (any extents). */
const kp_tensor *kp_st_expect(const kp_st *st, const char *name, kp_dtype dtype,
                              int ndim, const int64_t *shape, char *err, size_t errlen);

/* Returns the metadata value for key, or NULL; borrowed. */
const char *kp_st_meta(const kp_st *st, const char *key);

/* Returns the path or name the file was opened with; borrowed. */
const char *kp_st_path(const kp_st *st);

/* ---- writing ---- */
typedef struct kp_stw kp_stw;

/* Returns a new empty writer (NULL on allocation failure); free with kp_stw_free. */
kp_stw *kp_stw_create(void);

/* Frees the writer; NULL is accepted. */
void kp_stw_free(kp_stw *w);

/* Adds a tensor; the data is copied. Names must be unique and not "__metadata__". */
int kp_stw_add(kp_stw *w, const char *name, kp_dtype dtype, int ndim,
               const int64_t *shape, const void *data);

/* Sets a metadata string (copied); a second call with the same key replaces it. */
int kp_stw_meta(kp_stw *w, const char *key, const char *value);

/* Writes the file atomically (temp file, fsync, rename). */
int kp_stw_write(const kp_stw *w, const char *path, char *err, size_t errlen);

/* ---- dtypes ---- */

/* Returns the element size in bytes. */
size_t kp_dtype_size(kp_dtype t);

/* Returns the safetensors name ("F32", ...). */
const char *kp_dtype_name(kp_dtype t);

/* Parses a safetensors dtype name; 0 or KP_ERR_FORMAT. */
int kp_dtype_parse(const char *s, kp_dtype *out);

#endif

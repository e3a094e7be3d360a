/* ckpt_meta.h - JSON values in a checkpoint's metadata (cnn_io.c, unet_io.c).
 *
 * Network checkpoints record what rebuilds the net (shapes, per-channel
 * statistics) as JSON text in safetensors metadata; reading treats the file
 * as hostile: every value is checked and a bad one named with the file.
 */
#ifndef KP_CKPT_META_H
#define KP_CKPT_META_H

#include <jansson.h>
#include "safetensors.h"

/* Sets metadata key of w to the JSON text of v (stolen, NULL = out of
 * memory); 0 or KP_ERR_NOMEM. */
int kp_meta_set_json(kp_stw *w, const char *key, json_t *v);

/* Returns a new JSON array of v[0..n), or NULL. */
json_t *kp_meta_floats(const float *v, int n);

/* Parses metadata key of st as JSON (caller json_decref's it); NULL with a
 * message naming the file and key if absent or not JSON. */
json_t *kp_meta_parse(const kp_st *st, const char *key, char *err, size_t errlen);

/* Reads metadata key of st as an array of c finite numbers (positive when
 * positive is set) into out; 0 or KP_ERR_FORMAT. */
int kp_meta_read_floats(const kp_st *st, const char *key, float *out, int c, int positive,
                        char *err, size_t errlen);

#endif

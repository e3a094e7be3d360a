/* kaggle_creds.h - finding the user's Kaggle credentials, as the Kaggle
 * tools do, and refusing files others can read.
 *
 * In this order:
 *   1. KAGGLE_API_TOKEN: the token itself, or the path of a file holding it -> Bearer
 *   2. CONFIG_DIR/access_token                                               -> Bearer
 *   3. KAGGLE_USERNAME and KAGGLE_KEY                                        -> Basic
 *   4. CONFIG_DIR/kaggle.json {"username": ..., "key": ...}                  -> Basic
 * where CONFIG_DIR is $KAGGLE_CONFIG_DIR, else ~/.kaggle when it exists,
 * else $XDG_CONFIG_HOME/kaggle (XDG_CONFIG_HOME defaults to ~/.config).
 * A credentials file readable or writable by group or others is refused,
 * with the `chmod 600` that fixes it in the message (the Python CLI only
 * warns).  The secret is only ever in the auth header; messages name the
 * source ("KAGGLE_API_TOKEN", "/home/u/.kaggle/kaggle.json"), never the value.
 */
#ifndef KP_KAGGLE_CREDS_H
#define KP_KAGGLE_CREDS_H

#include <stddef.h>

typedef struct kp_kaggle_creds kp_kaggle_creds;

/* Finds the credentials; *out caller-owned (kp_kaggle_creds_free).
 * KP_ERR_NOTFOUND names every place looked at; KP_ERR_ARG a refused file. */
int kp_kaggle_creds_load(kp_kaggle_creds **out, char *err, size_t errlen);

/* Wipes and frees; NULL is accepted. */
void kp_kaggle_creds_free(kp_kaggle_creds *c);

/* Returns the header line "Authorization: Bearer T" or "Authorization: Basic B64"
 * (a secret: borrowed, never print it). */
const char *kp_kaggle_creds_header(const kp_kaggle_creds *c);

/* Returns where the credentials came from (not secret; borrowed). */
const char *kp_kaggle_creds_source(const kp_kaggle_creds *c);

/* Returns the user name for Basic credentials, "" for a token (borrowed). */
const char *kp_kaggle_creds_user(const kp_kaggle_creds *c);

/* Writes the Kaggle configuration folder (see above) into out; 0 or KP_ERR_ARG. */
int kp_kaggle_config_dir(char *out, size_t outlen);

#endif

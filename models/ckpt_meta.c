/* ckpt_meta.c - JSON values in a checkpoint's metadata (see ckpt_meta.h). */
#include <math.h>
#include <stdlib.h>
#include "../lib/err.h"
#include "ckpt_meta.h"

int kp_meta_set_json(kp_stw *w, const char *key, json_t *v)
{
    char *s = v ? json_dumps(v, JSON_COMPACT) : NULL;
    int rc = s && kp_stw_meta(w, key, s) == 0 ? 0 : KP_ERR_NOMEM;
    free(s);
    json_decref(v);
    return rc;
}

json_t *kp_meta_floats(const float *v, int n)
{
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++)
        json_array_append_new(a, json_real(v[i]));
    return a;
}

json_t *kp_meta_parse(const kp_st *st, const char *key, char *err, size_t errlen)
{
    const char *s = kp_st_meta(st, key);
    json_t *v = s ? json_loads(s, JSON_REJECT_DUPLICATES, NULL) : NULL;
    if (!v)
        kp_errf(err, errlen, KP_ERR_FORMAT, "%s: metadata %s is %s", kp_st_path(st), key,
                s ? "not valid JSON" : "missing");
    return v;
}

int kp_meta_read_floats(const kp_st *st, const char *key, float *out, int c, int positive,
                        char *err, size_t errlen)
{
    json_t *a = kp_meta_parse(st, key, err, errlen);
    int ok = a && json_is_array(a) && json_array_size(a) == (size_t)c;
    for (int i = 0; ok && i < c; i++) {
        json_t *x = json_array_get(a, (size_t)i);
        double d = json_number_value(x);
        ok = json_is_number(x) && isfinite(d) && (!positive || d > 0);
        out[i] = (float)d;
    }
    json_decref(a);
    if (!ok)
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s: %s is not %d finite%s numbers",
                       kp_st_path(st), key, c, positive ? " positive" : "");
    return 0;
}

/* tta_core.c - the pure pieces of the tta stage (see tta.h): transform
 * names, merging predictions, the auto selection. */
#include "tta.h"

#include <assert.h>
#include <math.h>
#include <string.h>
#include "../lib/err.h"
#include "../lib/params.h"

/* ---- transform names ---- */

static const char *const d4_names[KP_D4_COUNT] = {
    [0] = "identity", [1] = "rot90", [2] = "rot180", [3] = "rot270",
    [4] = "hflip", [5] = "transpose", [6] = "vflip", [7] = "transverse",
};

/* The canonical order of the names (the order of `all`). */
static const int canonical[KP_D4_COUNT] = {0, 4, 6, 1, 2, 3, 5, 7};

const char *kp_tta_name(int t)
{
    return t >= 0 && t < KP_D4_COUNT ? d4_names[t] : NULL;
}

int kp_tta_find(const char *name)
{
    for (int t = 0; name && t < KP_D4_COUNT; t++)
        if (strcmp(name, d4_names[t]) == 0)
            return t;
    return -1;
}

int kp_tta_at(int i)
{
    return i >= 0 && i < KP_D4_COUNT ? canonical[i] : -1;
}

static const char *const merge_names[] = {"mean", "gmean", "max"};

int kp_tta_merge_parse(const char *s, kp_tta_merge_kind *out)
{
    for (int i = 0; s && i < 3; i++)
        if (strcmp(s, merge_names[i]) == 0) {
            *out = (kp_tta_merge_kind)i;
            return 0;
        }
    return KP_ERR_ARG;
}

const char *kp_tta_merge_name(kp_tta_merge_kind k)
{
    return (unsigned)k < 3 ? merge_names[k] : "?";
}

/* Reports an unknown name at position i with a suggestion. */
static int unknown_transform(const char *name, int i, char *err, size_t errlen)
{
    const char *cands[KP_D4_COUNT + 2];
    for (int j = 0; j < KP_D4_COUNT; j++)
        cands[j] = d4_names[canonical[j]];
    cands[KP_D4_COUNT] = "all";
    cands[KP_D4_COUNT + 1] = "auto";
    const char *s = kp_suggest(name, cands, KP_D4_COUNT + 2);
    if (s)
        return kp_errf(err, errlen, KP_ERR_CONFIG,
                       "transforms[%d]: unknown transform '%s' (did you mean '%s'?)", i, name, s);
    return kp_errf(err, errlen, KP_ERR_CONFIG,
                   "transforms[%d]: unknown transform '%s' (all, auto, or a list of identity, "
                   "hflip, vflip, rot90, rot180, rot270, transpose, transverse)", i, name);
}

int kp_tta_parse(const char *const *items, int n, kp_tta_spec *out, char *err, size_t errlen)
{
    kp_tta_spec s = {KP_TTA_LIST, 0, {0}};
    if (n < 1)
        return kp_errf(err, errlen, KP_ERR_CONFIG,
                       "transforms: empty (all, auto, or a list of transform names)");
    for (int i = 0; i < n; i++) {
        int whole = strcmp(items[i], "all") == 0 ? 1 : strcmp(items[i], "auto") == 0 ? 2 : 0;
        if (whole && n > 1)
            return kp_errf(err, errlen, KP_ERR_CONFIG,
                           "transforms[%d]: '%s' stands alone (transforms: %s), not in a list",
                           i, items[i], items[i]);
        if (whole) {
            s.mode = whole == 1 ? KP_TTA_ALL : KP_TTA_AUTO;
            break;
        }
        int t = kp_tta_find(items[i]);
        if (t < 0)
            return unknown_transform(items[i], i, err, errlen);
        for (int j = 0; j < s.n; j++)
            if (s.t[j] == t)
                return kp_errf(err, errlen, KP_ERR_CONFIG, "transforms[%d]: '%s' is listed twice",
                               i, items[i]);
        s.t[s.n++] = t;
    }
    *out = s;
    return 0;
}

int kp_tta_candidates(const kp_tta_spec *spec, int h, int w, int t[KP_D4_COUNT])
{
    int n = 0;
    if (spec->mode != KP_TTA_LIST) {
        for (int i = 0; i < KP_D4_COUNT; i++)
            if (h == w || !kp_d4_swaps(canonical[i]))
                t[n++] = canonical[i];
        return n;
    }
    for (int i = 0; i < spec->n; i++) {
        if (h != w && kp_d4_swaps(spec->t[i]))
            return -1 - i;
        t[n++] = spec->t[i];
    }
    return n;
}

/* ---- merging ---- */

/* Divides row r (k values) by its sum when the sum is positive. */
static void renormalise(float *r, int k)
{
    double sum = 0;
    for (int j = 0; j < k; j++)
        sum += r[j];
    for (int j = 0; sum > 0 && j < k; j++)
        r[j] = (float)(r[j] / sum);
}

void kp_tta_merge(kp_tta_merge_kind how, const kp_problem *pb, const float *const *src,
                  int n_src, int64_t rows, float *out)
{
    int64_t k = pb->n_out, n = rows * k;
    for (int64_t i = 0; i < n; i++) {
        double acc = how == KP_TTA_MAX ? -HUGE_VAL : 0;
        for (int s = 0; s < n_src; s++) {
            double v = src[s][i];
            if (how == KP_TTA_MEAN)
                acc += v;
            else if (how == KP_TTA_GMEAN)
                acc += log(v > 1e-15 ? v : 1e-15);
            else if (v > acc)
                acc = v;
        }
        out[i] = (float)(how == KP_TTA_MEAN ? acc / n_src
                         : how == KP_TTA_GMEAN ? exp(acc / n_src) : acc);
    }
    if (how != KP_TTA_MEAN && pb->task == KP_TASK_MULTICLASS)
        for (int64_t r = 0; r < rows; r++)
            renormalise(out + r * k, (int)k);
}

/* ---- auto selection ---- */

/* Returns 1 if a is strictly better than b. */
static int better(double a, double b, int greater_is_better)
{
    return greater_is_better ? a > b : a < b;
}

/* Writes into order[] the candidates other than `first`, best solo first
 * (a stable insertion sort: ties keep candidate order). */
static int auto_order(const double *solo, int n, int first, int greater, int *order)
{
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (i == first)
            continue;
        int j = m++;
        while (j > 0 && better(solo[i], solo[order[j - 1]], greater)) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
    return m;
}

int kp_tta_auto(const int *cand, const double *solo, int n, int greater_is_better,
                kp_tta_score_fn fn, void *ctx, kp_tta_auto_out *out, char *err, size_t errlen)
{
    int first = 0, order[KP_D4_COUNT];
    assert(n >= 1 && n <= KP_D4_COUNT);
    for (int i = 1; i < n; i++)
        if (cand[i] == 0 || (cand[first] != 0 && better(solo[i], solo[first], greater_is_better)))
            first = i;
    memset(out, 0, sizeof *out);
    int m = auto_order(solo, n, first, greater_is_better, order);
    out->tried[0] = out->chosen[0] = cand[first];
    out->score[0] = out->best = solo[first];
    out->kept[0] = 1;
    out->n_tried = out->n_chosen = 1;
    for (int i = 0; i < m; i++) {
        double s;
        out->chosen[out->n_chosen] = cand[order[i]];
        int rc = fn(ctx, out->chosen, out->n_chosen + 1, &s, err, errlen);
        if (rc < 0)
            return rc;
        int keep = !better(out->best, s, greater_is_better);
        out->tried[out->n_tried] = cand[order[i]];
        out->score[out->n_tried] = s;
        out->kept[out->n_tried++] = keep;
        if (keep) {
            out->n_chosen++;
            out->best = s;
        }
    }
    return 0;
}

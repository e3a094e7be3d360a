/* postproc.c - segmentation post-processing chosen on OOF maps (see postproc.h). */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "postproc.h"
#include "../lib/err.h"
#include "../lib/mask.h"
#include "../lib/parallel.h"

kp_postproc kp_postproc_default(void)
{
    return (kp_postproc){.threshold = 0.5f, .min_size = 0};
}

size_t kp_postproc_work_size(int w, int h)
{
    return kp_mask_work_size(w, h) + (size_t)w * h + 16;
}

/* Removes the small components of class c of a label mask (class pixels -> 0). */
static void filter_class(uint8_t *mask, size_t hw, int w, int h, int c, int min_size,
                         uint8_t *bin, void *work)
{
    for (size_t p = 0; p < hw; p++)
        bin[p] = mask[p] == c;
    kp_mask_remove_small(bin, w, h, min_size, work);
    for (size_t p = 0; p < hw; p++)
        if (mask[p] == c && !bin[p])
            mask[p] = 0;
}

void kp_postproc_apply(const kp_postproc *pp, const kp_problem *pb, const float *map,
                       uint8_t *mask, void *work)
{
    int w = pb->mask_w, h = pb->mask_h, k = pb->mask_c;
    size_t hw = (size_t)w * h;
    void *comp = (char *)work + ((hw + 15) & ~(size_t)15);
    if (k == 1) {
        kp_mask_threshold(map, w, h, pp->threshold, mask);
        if (pp->min_size > 1)
            kp_mask_remove_small(mask, w, h, pp->min_size, comp);
        return;
    }
    for (size_t p = 0; p < hw; p++) {
        int best = 0;
        for (int c = 1; c < k; c++)
            best = map[c * hw + p] > map[best * hw + p] ? c : best;
        mask[p] = (uint8_t)best;
    }
    for (int c = 1; pp->min_size > 1 && c < k; c++)
        filter_class(mask, hw, w, h, c, pp->min_size, (uint8_t *)work, comp);
}

/* ---- search ---- */

typedef struct search {
    const kp_problem *pb;
    const float *oof;
    float *pred;              /* n maps of 0/1 (one-hot for classes) */
    uint8_t *masks;           /* per thread: a mask */
    char *work;               /* per thread: kp_postproc_work_size bytes */
    size_t work_size;
    kp_postproc pp;
} search;

static void apply_one(void *data, size_t i, int tid)
{
    const search *s = data;
    const kp_problem *pb = s->pb;
    size_t hw = (size_t)pb->mask_w * pb->mask_h;
    uint8_t *m = s->masks + (size_t)tid * hw;
    float *out = s->pred + i * (size_t)pb->n_out;
    kp_postproc_apply(&s->pp, pb, s->oof + i * (size_t)pb->n_out, m, s->work +
                      (size_t)tid * s->work_size);
    if (pb->mask_c == 1) {
        for (size_t p = 0; p < hw; p++)
            out[p] = m[p];
        return;
    }
    for (int c = 0; c < pb->mask_c; c++)
        for (size_t p = 0; p < hw; p++)
            out[c * hw + p] = m[p] == c;
}

/* Scores pp: applies it to every map and calls the metric (threshold 0.5 on 0/1). */
static int score_pp(search *s, kp_postproc pp, const kp_metric_ops *m, kp_metric_opts o,
                    const float *y, int64_t n, int threads, double *out, char *err,
                    size_t errlen)
{
    s->pp = pp;
    kp_parallel_for(threads, apply_one, s, (size_t)n);
    o.threshold = 0.5;
    o.thresholds = NULL;
    return m->score(s->pb, y, s->pred, n, &o, out, err, errlen);
}

/* Tries every value of a grid for one field, keeping strict improvements. */
static int try_grid(search *s, kp_postproc *best, double *best_score, int field,
                    const double *grid, int n_grid, const kp_metric_ops *m,
                    const kp_metric_opts *o, const float *y, int64_t n, int threads,
                    char *err, size_t errlen)
{
    int sign = m->greater_is_better ? 1 : -1;
    for (int g = 0; g < n_grid; g++) {
        kp_postproc pp = *best;
        if (field == 0)
            pp.threshold = (float)grid[g];
        else
            pp.min_size = (int)grid[g];
        double v;
        int rc = score_pp(s, pp, m, *o, y, n, threads, &v, err, errlen);
        if (rc < 0)
            return rc;
        if (sign * (v - *best_score) > 0) {
            *best = pp;
            *best_score = v;
        }
    }
    return 0;
}

int kp_postproc_search(const kp_metric_ops *m, const kp_metric_opts *o, const kp_problem *pb,
                       const float *y, const float *oof, int64_t n, int threads, FILE *log,
                       kp_postproc *pp, double *score, char *err, size_t errlen)
{
    size_t hw = (size_t)pb->mask_w * pb->mask_h;
    threads = threads > 0 ? threads : 1;
    size_t work = (kp_postproc_work_size(pb->mask_w, pb->mask_h) + 15) & ~(size_t)15;
    search s = {.pb = pb, .oof = oof, .work_size = work};
    s.pred = malloc((size_t)n * pb->n_out * sizeof *s.pred);
    s.masks = malloc((size_t)threads * hw);
    s.work = aligned_alloc(16, (size_t)threads * s.work_size);
    double thr[17], sizes[8];
    int n_sizes = 1;
    for (int i = 0; i < 17; i++)
        thr[i] = 0.1 + 0.05 * i;
    static const double frac[] = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05};
    sizes[0] = 0;
    for (int i = 0; i < 7; i++) {
        double v = floor(frac[i] * (double)hw);
        if (v >= 2 && v > sizes[n_sizes - 1])
            sizes[n_sizes++] = v;
    }
    *pp = kp_postproc_default();
    int rc = s.pred && s.masks && s.work ? 0 : kp_errf(err, errlen, KP_ERR_NOMEM,
                                                       "out of memory searching post-processing");
    double base = 0;
    if (rc == 0)
        rc = score_pp(&s, *pp, m, *o, y, n, threads, &base, err, errlen);
    *score = base;
    if (rc == 0 && pb->mask_c == 1)
        rc = try_grid(&s, pp, score, 0, thr, 17, m, o, y, n, threads, err, errlen);
    if (rc == 0)
        rc = try_grid(&s, pp, score, 1, sizes, n_sizes, m, o, y, n, threads, err, errlen);
    if (rc == 0 && pb->mask_c == 1 && pp->min_size > 0)
        rc = try_grid(&s, pp, score, 0, thr, 17, m, o, y, n, threads, err, errlen);
    if (rc == 0 && log) {
        fprintf(log, "postproc: threshold %.2f, min component %d px: OOF %s %.5f "
                "(threshold 0.5, none: %.5f)\n", (double)pp->threshold, pp->min_size, m->name,
                *score, base);
        fflush(log);
    }
    free(s.pred);
    free(s.masks);
    free(s.work);
    return rc;
}

int kp_postproc_for_preds(const kp_metric_ops *m, const kp_metric_opts *o,
                          const kp_problem *pb, const float *y, const float *oof, int64_t n,
                          int threads, FILE *log, char json[128], char num[64], char *err,
                          size_t errlen)
{
    kp_postproc pp;
    double score = 0;
    int rc = kp_postproc_search(m, o, pb, y, oof, n, threads, log, &pp, &score, err, errlen);
    if (rc < 0)
        return kp_err_prefix(err, errlen, rc, "searching the post-processing");
    kp_postproc_json(&pp, json, 128);
    snprintf(num, 64, "%.17g", score);
    return 0;
}

void kp_postproc_json(const kp_postproc *pp, char *buf, size_t len)
{
    snprintf(buf, len, "{\"threshold\": %.9g, \"min_size\": %d}", (double)pp->threshold,
             pp->min_size);
}

int kp_postproc_parse(const char *s, kp_postproc *pp)
{
    json_t *v = s ? json_loads(s, JSON_REJECT_DUPLICATES, NULL) : NULL;
    double t = 0;
    json_int_t size = -1;
    int ok = v && json_unpack(v, "{sFsI}", "threshold", &t, "min_size", &size) == 0 &&
             isfinite(t) && t >= 0 && t <= 1 && size >= 0 && size <= INT32_MAX;
    json_decref(v);
    if (!ok)
        return KP_ERR_FORMAT;
    pp->threshold = (float)t;
    pp->min_size = (int)size;
    return 0;
}

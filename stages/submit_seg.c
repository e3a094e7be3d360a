/* submit_seg.c - the submit stage's segmentation cells (see submit_masks.h):
 * options, the train RLE check, Dstl's grid sizes. */
#include <stdlib.h>
#include <string.h>
#include "submit_masks.h"
#include "artifact.h"
#include "stage.h"
#include "../lib/csv.h"
#include "../lib/err.h"

/* The RLE pixel order: the stage's, else the train RLE's, else column-major. */
static kp_rle_order rle_order(const kp_stage *st, const kp_dataset *d)
{
    kp_rle_order o = KP_RLE_COLUMN_MAJOR;
    const char *s = kp_params_str(st->opts, "rle_order", "");
    if (!*s)
        s = kp_st_meta(d->st, "rle_order");
    if (s)
        kp_rle_order_parse(s, &o);
    return o;
}

/* Re-encodes every train RLE string of competition.target (masks read from RLE). */
static int validate_train(const kp_task_ctx *ctx, const kp_dataset *d, kp_rle_order order,
                          char *err, size_t errlen)
{
    const kp_competition *c = &ctx->cfg->comp;
    kp_csv *t = NULL;
    long col = -1;
    int rc = kp_csv_read(c->train, &t, err, errlen);
    if (rc == 0 && (c->n_targets < 1 || (col = kp_csv_find(t, c->targets[0])) < 0))
        rc = kp_errf(err, errlen, KP_ERR_FORMAT, "%s:1: no RLE column '%s' to validate",
                     c->train, c->n_targets ? c->targets[0] : "");
    int64_t n = t ? (int64_t)kp_csv_rows(t) : 0;
    if (rc == 0 && n != d->n_train)
        rc = kp_errf(err, errlen, KP_ERR_MISMATCH, "%s: %lld rows but the dataset has %lld",
                     c->train, (long long)n, (long long)d->n_train);
    const char **rle = rc == 0 ? malloc((size_t)(n ? n : 1) * sizeof *rle) : NULL;
    size_t *lines = rc == 0 ? malloc((size_t)(n ? n : 1) * sizeof *lines) : NULL;
    if (rc == 0 && (!rle || !lines))
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; rc == 0 && i < n; i++) {
        rle[i] = kp_csv_get(t, (size_t)i, (size_t)col);
        lines[i] = kp_csv_line(t, (size_t)i);
    }
    if (rc == 0)
        rc = kp_rle_validate(c->train, rle, lines, col + 1, d->train_sizes, n, order, err,
                             errlen);
    if (rc == 0 && ctx->log)
        fprintf(ctx->log, "validated the RLE conventions: %lld train masks re-encode "
                "identically (%s)\n", (long long)n, kp_rle_order_name(order));
    free(rle);
    free(lines);
    kp_csv_free(t);
    return rc;
}

/* Reads Dstl's grid sizes (id, Xmax, Ymin) for every test row into *grid. */
static int read_grid(const kp_task_ctx *ctx, const kp_dataset *d, double **grid, char *err,
                     size_t errlen)
{
    char path[4096], id[512];
    kp_csv *t = NULL;
    const char *rel = kp_params_str(ctx->stage->opts, "grid_sizes", "");
    if (kp_config_path(ctx->cfg, rel, path, sizeof path) < 0)
        return kp_errf(err, errlen, KP_ERR_ARG, "grid_sizes: path too long");
    int rc = kp_csv_read(path, &t, err, errlen);
    long cx = t ? kp_csv_find(t, "Xmax") : -1, cy = t ? kp_csv_find(t, "Ymin") : -1;
    if (rc == 0 && (cx < 0 || cy < 0))
        rc = kp_errf(err, errlen, KP_ERR_FORMAT, "%s:1: needs columns Xmax and Ymin", path);
    if (rc == 0 && !(*grid = calloc((size_t)(d->n_test ? d->n_test : 1) * 2, sizeof **grid)))
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; rc == 0 && i < d->n_test; i++) {
        size_t r = 0, rows = kp_csv_rows(t);
        kp_strings_get(&d->test_ids, i, id, sizeof id);
        while (r < rows && strcmp(kp_csv_get(t, r, 0), id) != 0)
            r++;
        char *e1, *e2;
        double x = r < rows ? strtod(kp_csv_get(t, r, (size_t)cx), &e1) : 0;
        double y = r < rows ? strtod(kp_csv_get(t, r, (size_t)cy), &e2) : 0;
        if (r == rows)
            rc = kp_errf(err, errlen, KP_ERR_MISMATCH, "%s: no row for test id '%s'", path, id);
        else if (*e1 || *e2 || !(x > 0) || !(y < 0))
            rc = kp_errf(err, errlen, KP_ERR_FORMAT, "%s:%zu: Xmax must be > 0 and Ymin < 0",
                         path, kp_csv_line(t, r));
        (*grid)[2 * i] = x, (*grid)[2 * i + 1] = y;
    }
    kp_csv_free(t);
    return rc;
}

/* The class of each sample row from class_column (NULL when not set). */
static int read_classes(const kp_task_ctx *ctx, const kp_dataset *d, const kp_csv *sample,
                        int **out, char *err, size_t errlen)
{
    const char *name = kp_params_str(ctx->stage->opts, "class_column", "");
    long col = *name ? kp_csv_find(sample, name) : -1;
    size_t n = kp_csv_rows(sample);
    *out = NULL;
    if (!*name)
        return 0;
    if (col < 0)
        return kp_errf(err, errlen, KP_ERR_FORMAT, "%s:1: no class column '%s'",
                       kp_csv_name(sample), name);
    if (!(*out = malloc((n ? n : 1) * sizeof **out)))
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    for (size_t r = 0; r < n; r++) {
        char *end;
        const char *s = kp_csv_get(sample, r, (size_t)col);
        long v = strtol(s, &end, 10);
        if (!*s || *end || v < 0 || (d->pb.mask_c > 1 && v >= d->pb.mask_c))
            return kp_errf(err, errlen, KP_ERR_FORMAT, "%s:%zu:%ld: class '%s' is not a mask "
                           "class (0..%d)", kp_csv_name(sample), kp_csv_line(sample, r), col + 1,
                           s, d->pb.mask_c - 1);
        (*out)[r] = (int)v;
    }
    return 0;
}

int kp_submit_seg_cells(const kp_task_ctx *ctx, const kp_dataset *d, const kp_preds *p,
                        const kp_csv *sample, const int64_t *row_of, char ***cells, char *err,
                        size_t errlen)
{
    const kp_stage *st = ctx->stage;
    kp_mask_cells_opts o = {.pb = &d->pb, .maps = p->test, .sizes = d->test_sizes,
                            .pp = {p->pp_threshold, p->pp_min_size},
                            .wkt = kp_params_bool(st->opts, "wkt", 0),
                            .order = rle_order(st, d),
                            .empty = kp_params_str(st->opts, "empty", ""),
                            .threads = ctx->threads};
    double *grid = NULL;
    int *classes = NULL, rc = 0;
    size_t n = kp_csv_rows(sample);
    if (!o.wkt && kp_params_bool(st->opts, "validate", 1) && kp_st_meta(d->st, "rle_order"))
        rc = validate_train(ctx, d, o.order, err, errlen);
    if (rc == 0 && o.wkt && *kp_params_str(st->opts, "grid_sizes", ""))
        rc = read_grid(ctx, d, &grid, err, errlen);
    if (rc == 0)
        rc = read_classes(ctx, d, sample, &classes, err, errlen);
    o.grid = grid;
    if (rc == 0 && !(*cells = calloc(n ? n : 1, sizeof **cells)))
        rc = kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory");
    if (rc == 0)
        rc = kp_mask_cells(&o, row_of, classes, (int64_t)n, *cells, err, errlen);
    if (rc == 0 && ctx->log)
        fprintf(ctx->log, "masks: %zu %s cells at the images' original sizes, threshold %.2f, "
                "min component %d px (at %dx%d)\n", n, o.wkt ? "WKT" : kp_rle_order_name(o.order),
                (double)o.pp.threshold, o.pp.min_size, d->pb.mask_w, d->pb.mask_h);
    free(grid);
    free(classes);
    return rc;
}

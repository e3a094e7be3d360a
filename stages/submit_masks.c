/* submit_masks.c - segmentation submissions (see submit_masks.h). */
#include <stdlib.h>
#include <string.h>
#include "submit_masks.h"
#include "../lib/buf.h"
#include "../lib/err.h"
#include "../lib/mask.h"
#include "../lib/parallel.h"
#include "../lib/polygon.h"

#define WKT_DIGITS 9

typedef struct cell_job {
    const kp_mask_cells_opts *o;
    const int64_t *rows;
    const int *classes;
    char **cells;
    int *status;
} cell_job;

/* The post-processed mask of test row t at its original size into *mask (malloc'd). */
static int row_mask(const kp_mask_cells_opts *o, int64_t t, uint8_t **mask, int *w, int *h)
{
    const kp_problem *pb = o->pb;
    int W = o->sizes[2 * t], H = o->sizes[2 * t + 1], k = pb->mask_c;
    size_t hw = (size_t)pb->mask_w * pb->mask_h, HW = (size_t)W * H;
    const float *map = o->maps + t * (int64_t)pb->n_out;
    kp_problem big = *pb;
    big.mask_w = W, big.mask_h = H, big.n_out = k * W * H;
    float *resized = malloc((size_t)k * HW * sizeof *resized);
    void *work = aligned_alloc(16, (kp_postproc_work_size(W, H) + 15) & ~(size_t)15);
    *mask = malloc(HW ? HW : 1);
    int rc = resized && work && *mask ? 0 : KP_ERR_NOMEM;
    for (int c = 0; rc == 0 && c < k; c++)
        kp_map_resize(map + c * hw, pb->mask_w, pb->mask_h, resized + c * HW, W, H);
    kp_postproc pp = o->pp;
    pp.min_size = (int)((double)pp.min_size * (double)HW / (double)hw + 0.5);
    if (rc == 0)
        kp_postproc_apply(&pp, &big, resized, *mask, work);
    free(resized);
    free(work);
    *w = W, *h = H;
    return rc;
}

/* Encodes row i's cell. */
static int one_cell(const cell_job *j, int64_t i)
{
    const kp_mask_cells_opts *o = j->o;
    int64_t t = j->rows[i];
    int cls = j->classes ? j->classes[i] : -1, w, h, rc;
    uint8_t *mask = NULL;
    kp_buf b;
    kp_buf_init(&b, 0);
    if ((rc = row_mask(o, t, &mask, &w, &h)) < 0)
        goto done;
    size_t HW = (size_t)w * h;
    for (size_t p = 0; p < HW; p++)   /* one class's pixels, or every non-background one */
        mask[p] = cls >= 0 && o->pb->mask_c > 1 ? mask[p] == cls : mask[p] != 0;
    if (o->wkt) {
        double sx = 1, sy = 1;
        if (o->grid)
            kp_dstl_scale(w, h, o->grid[2 * t], o->grid[2 * t + 1], &sx, &sy);
        rc = kp_wkt_multipolygon(mask, w, h, sx, sy, WKT_DIGITS, &b);
    } else
        rc = kp_rle_encode(mask, w, h, o->order, &b);
    if (rc == 0 && !o->wkt && b.len == 0 && o->empty)
        rc = kp_buf_adds(&b, o->empty);
    if (rc == 0 && !(j->cells[i] = kp_buf_take(&b)))
        rc = KP_ERR_NOMEM;
done:
    free(mask);
    kp_buf_free(&b);
    return rc;
}

static void cell_worker(void *data, size_t i, int tid)
{
    const cell_job *j = data;
    (void)tid;
    j->status[i] = one_cell(j, (int64_t)i);
}

int kp_mask_cells(const kp_mask_cells_opts *o, const int64_t *rows, const int *classes,
                  int64_t n, char **cells, char *err, size_t errlen)
{
    int *status = calloc((size_t)(n > 0 ? n : 1), sizeof *status), rc = 0;
    if (!status)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory encoding masks");
    cell_job j = {o, rows, classes, cells, status};
    kp_parallel_for(o->threads, cell_worker, &j, (size_t)n);
    for (int64_t i = 0; i < n && rc == 0; i++)
        if (status[i] < 0)
            rc = kp_errf(err, errlen, status[i], "out of memory encoding the mask of row %lld",
                         (long long)i + 1);
    free(status);
    return rc;
}

/* Returns the offset of the first difference of a and b. */
static size_t first_diff(const char *a, const char *b)
{
    size_t i = 0;
    while (a[i] && a[i] == b[i])
        i++;
    return i;
}

int kp_rle_validate(const char *file, const char *const *rle, const size_t *lines, long col,
                    const int32_t *sizes, int64_t n, kp_rle_order order, char *err,
                    size_t errlen)
{
    kp_buf b;
    kp_buf_init(&b, 0);
    uint8_t *mask = NULL;
    size_t cap = 0;
    int rc = 0;
    for (int64_t i = 0; i < n && rc == 0; i++) {
        int w = sizes[2 * i], h = sizes[2 * i + 1];
        size_t px = (size_t)w * h;
        char msg[KP_ERRLEN];
        if (px > cap) {
            free(mask);
            mask = malloc(cap = px);
            if (!mask) {
                rc = kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory validating RLE");
                break;
            }
        }
        kp_buf_reset(&b);
        if (kp_rle_decode(rle[i], w, h, order, 1, mask, msg, sizeof msg) < 0)
            rc = kp_errf(err, errlen, KP_ERR_FORMAT, "%s:%zu:%ld: %s", file, lines[i], col, msg);
        else if (kp_rle_encode(mask, w, h, order, &b) < 0)
            rc = kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory validating RLE");
        else if (strcmp(kp_buf_str(&b), rle[i]) != 0) {
            size_t at = first_diff(kp_buf_str(&b), rle[i]);
            rc = kp_errf(err, errlen, KP_ERR_FORMAT, "%s:%zu:%ld: the train mask's RLE does not "
                         "re-encode to the same text (%s order, %dx%d): character %zu is '%.12s' "
                         "in the file but '%.12s' re-encoded", file, lines[i], col,
                         kp_rle_order_name(order), w, h, at + 1, rle[i] + at,
                         kp_buf_str(&b) + at);
        }
    }
    free(mask);
    kp_buf_free(&b);
    return rc;
}

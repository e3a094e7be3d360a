/* dense.c - the linear layer (PyTorch's nn.Linear: W[out, in], y = x W^T + b).
 *
 * Every product is a cblas_sgemm made from this file's own tasks (the caller
 * sets OpenBLAS to one thread).  The tasks are fixed slices, whatever the
 * thread count, and each output float is made by one sgemm call of a fixed
 * shape, so the bits never depend on the thread count:
 *   y, dx   slices of LIN_ROWS batch rows;
 *   dW, db  slices of LIN_OUTS output units, each over the whole batch
 *           (dW[o0:o1] += dy[:, o0:o1]^T x, summed over the batch inside one
 *           sgemm: no per-chunk partials, no workspace, no reduction pass).
 */
#include <cblas.h>
#include <string.h>
#include "../../lib/parallel.h"
#include "kernels.h"

#define LIN_ROWS 32     /* batch rows per forward / dx task */
#define LIN_OUTS 32     /* output units per dW / db task */

typedef struct lin_job {
    int n, in, out;
    const float *x, *W, *b, *dy;
    float *y, *dx, *dW, *db;
    size_t row_tasks;   /* backward: tasks [0, row_tasks) make dx, the rest dW and db */
} lin_job;

/* Number of slices of size `size` covering `total`. */
static size_t slices(int total, int size)
{
    return total > 0 ? (size_t)((total + size - 1) / size) : 0;
}

/* y rows [r0, r0 + m) = x W^T + b. */
static void lin_forward_rows(void *data, size_t t, int tid)
{
    (void)tid;
    const lin_job *j = data;
    int r0 = (int)t * LIN_ROWS, m = j->n - r0 < LIN_ROWS ? j->n - r0 : LIN_ROWS;
    float *y = j->y + (size_t)r0 * j->out;
    for (int r = 0; r < m && j->b; r++)
        memcpy(y + (size_t)r * j->out, j->b, (size_t)j->out * sizeof *y);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, j->out, j->in, 1.0f,
                j->x + (size_t)r0 * j->in, j->in, j->W, j->in, j->b ? 1.0f : 0.0f, y, j->out);
}

void kp_linear_forward(int n, int in, int out, const float *x, const float *W,
                       const float *b, float *y, int threads)
{
    lin_job j = { .n = n, .in = in, .out = out, .x = x, .W = W, .b = b, .y = y };
    if (in > 0 && out > 0)
        kp_parallel_for(threads, lin_forward_rows, &j, slices(n, LIN_ROWS));
}

size_t kp_linear_workspace(int n, int in, int out, int threads)
{
    (void)n, (void)in, (void)out, (void)threads;
    return 0;   /* dW is summed over the batch inside each sgemm */
}

/* dx rows [r0, r0 + m) = dy W. */
static void lin_backward_rows(const lin_job *j, int r0)
{
    int m = j->n - r0 < LIN_ROWS ? j->n - r0 : LIN_ROWS;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, j->in, j->out, 1.0f,
                j->dy + (size_t)r0 * j->out, j->out, j->W, j->in, 0.0f,
                j->dx + (size_t)r0 * j->in, j->in);
}

/* dW rows [o0, o0 + m) += dy[:, o0:o0 + m]^T x, and db[o0:o0 + m] += column sums of dy. */
static void lin_backward_units(const lin_job *j, int o0)
{
    int m = j->out - o0 < LIN_OUTS ? j->out - o0 : LIN_OUTS;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m, j->in, j->n, 1.0f, j->dy + o0,
                j->out, j->x, j->in, 1.0f, j->dW + (size_t)o0 * j->in, j->in);
    if (!j->db)
        return;
    double acc[LIN_OUTS] = { 0 };
    for (int i = 0; i < j->n; i++) {
        const float *d = j->dy + (size_t)i * j->out + o0;
        for (int o = 0; o < m; o++)
            acc[o] += d[o];
    }
    for (int o = 0; o < m; o++)
        j->db[o0 + o] += (float)acc[o];
}

static void lin_backward_task(void *data, size_t t, int tid)
{
    (void)tid;
    const lin_job *j = data;
    if (t < j->row_tasks)
        lin_backward_rows(j, (int)t * LIN_ROWS);
    else
        lin_backward_units(j, (int)(t - j->row_tasks) * LIN_OUTS);
}

void kp_linear_backward(int n, int in, int out, const float *x, const float *W,
                        const float *dy, float *dx, float *dW, float *db, float *ws,
                        int threads)
{
    (void)ws;
    lin_job j = { .n = n, .in = in, .out = out, .x = x, .W = W, .dy = dy, .dx = dx, .dW = dW,
                  .db = db, .row_tasks = dx ? slices(n, LIN_ROWS) : 0 };
    if (n <= 0 || in <= 0 || out <= 0)
        return;
    kp_parallel_for(threads, lin_backward_task, &j, j.row_tasks + slices(out, LIN_OUTS));
}

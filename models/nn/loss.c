/* loss.c - the losses at a network's head, mean over the batch.
 *
 * Both are computed per row in double from the float logits, stably for any
 * logit size: the softmax subtracts the row's maximum (log-sum-exp), and
 * the sigmoid cross-entropy is max(z, 0) - z y + log1p(exp(-|z|)).  The
 * batches here are small (n x k floats), so the passes run on one thread.
 */
#include <assert.h>
#include <math.h>
#include "kernels.h"

/* Loss of one softmax row against class c; p row and dz row (scaled by inv_n)
 * if non-NULL. */
static double softmax_row(int k, const float *z, int c, double inv_n, float *p, float *dz)
{
    double mx = z[0], sum = 0;
    for (int j = 1; j < k; j++)
        mx = z[j] > mx ? z[j] : mx;
    for (int j = 0; j < k; j++)
        sum += exp(z[j] - mx);
    double lse = mx + log(sum);
    for (int j = 0; j < k && (p || dz); j++) {
        double pj = exp(z[j] - lse);
        if (p)
            p[j] = (float)pj;
        if (dz)
            dz[j] = (float)((pj - (j == c)) * inv_n);
    }
    return lse - z[c];
}

double kp_softmax_ce(int n, int k, const float *z, const float *y, float *p, float *dz)
{
    double sum = 0, inv_n = n > 0 ? 1.0 / n : 0;
    for (int i = 0; i < n; i++) {
        size_t off = (size_t)i * k;
        int c = (int)y[i];
        assert(c >= 0 && c < k && "class index out of range");
        sum += softmax_row(k, z + off, c, inv_n, p ? p + off : NULL, dz ? dz + off : NULL);
    }
    return sum * inv_n;
}

/* sigmoid(z), without overflow for any z. */
static double sigmoid(double z)
{
    if (z >= 0)
        return 1 / (1 + exp(-z));
    double e = exp(z);
    return e / (1 + e);
}

double kp_sigmoid_bce(int n, int k, const float *z, const float *y, float *p, float *dz)
{
    double sum = 0, inv_n = n > 0 ? 1.0 / n : 0;
    size_t count = (size_t)(n > 0 ? n : 0) * (size_t)(k > 0 ? k : 0);
    for (size_t i = 0; i < count; i++) {
        double zi = z[i], yi = y[i], pi = sigmoid(zi);
        sum += (zi > 0 ? zi : 0) - zi * yi + log1p(exp(-fabs(zi)));
        if (p)
            p[i] = (float)pi;
        if (dz)
            dz[i] = (float)((pi - yi) * inv_n);
    }
    return sum * inv_n;
}

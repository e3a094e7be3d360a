/* model_fixture.h - the generated problem the model tests share: n rows of
 * d standard normal features and K random linear scores (weights 1.5 x a
 * normal draw) plus N(0, 0.3^2) noise; binary and multilabel y = score > 0,
 * multiclass the argmax, regression the first score + 2.  The same seed
 * gives the same data in every test file, so bounds measured in one hold
 * in another.
 */
#ifndef KP_MODEL_FIXTURE_H
#define KP_MODEL_FIXTURE_H

#include "kp_test.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include "../lib/rng.h"
#include "../models/model.h"

typedef struct gen { float *X, *y; int n, d, n_out; } gen;

/* Makes a learnable problem of the task with n rows and d <= 32 features
 * (K = n_out <= 8 scores); free with gen_free. */
static inline gen generate(kp_task_kind task, int n_out, int n, int d, uint64_t seed)
{
    kp_rng r;
    kp_rng_seed(&r, seed);
    int K = task == KP_TASK_MULTILABEL || task == KP_TASK_MULTICLASS ? n_out : 1;
    int yw = task == KP_TASK_MULTILABEL ? n_out : 1;
    gen g = { malloc(sizeof(float) * (size_t)n * d), malloc(sizeof(float) * (size_t)n * yw), n,
              d, n_out };
    double W[8 * 32];
    assert_true(K <= 8 && d <= 32);
    for (int i = 0; i < K * d; i++)
        W[i] = 1.5 * kp_rng_normal(&r);
    for (int i = 0; i < n; i++) {
        double z[8], best = -INFINITY;
        for (int j = 0; j < d; j++)
            g.X[i * d + j] = (float)kp_rng_normal(&r);
        for (int k = 0; k < K; k++) {
            z[k] = 0.3 * kp_rng_normal(&r);
            for (int j = 0; j < d; j++)
                z[k] += W[k * d + j] * g.X[i * d + j];
        }
        for (int k = 0; task == KP_TASK_MULTICLASS && k < K; k++)
            if (z[k] > best) {
                best = z[k];
                g.y[i] = (float)k;
            }
        if (task == KP_TASK_REGRESSION)
            g.y[i] = (float)(z[0] + 2);
        for (int k = 0; (task == KP_TASK_BINARY || task == KP_TASK_MULTILABEL) && k < K; k++)
            g.y[i * yw + k] = z[k] > 0;
    }
    return g;
}

static inline void gen_free(gen *g)
{
    free(g->X);
    free(g->y);
}

#endif

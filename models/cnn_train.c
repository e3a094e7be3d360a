/* cnn_train.c - the training loop of the cnn model (see cnn.c).
 *
 * Every buffer (the batch, its targets, the loss gradient, the held-out
 * predictions, the best epoch's snapshot) is allocated once before the
 * first epoch.  Epoch e shuffles the training positions with an RNG derived
 * from (seed, e); image i of the shuffle is augmented with an RNG derived
 * from (seed, e, i), and batch b's dropout masks from (seed, e, b), so
 * nothing depends on the thread count.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "../lib/err.h"
#include "../lib/parallel.h"
#include "cnn_int.h"

#define LOG_SECONDS 10.0       /* between progress lines within an epoch */

typedef struct trainer {
    kp_cnn *m;
    const kp_cnn_settings *s;
    const kp_images *X;
    const int64_t *rows;
    const float *y;
    int64_t n;
    const kp_fit_opts *opts;
    int threads, k, y_width;
    size_t chw, aug_ws;
    int64_t *order, *batch_rows;     /* positions in rows; rows of the batch */
    float *x, *tmp, *yb, *dz, *vpred, *best;
    kp_optim *opt;
    uint64_t seed;
} trainer;

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void trainer_release(trainer *t)
{
    free(t->order);
    free(t->batch_rows);
    free(t->x);
    free(t->tmp);
    free(t->yb);
    free(t->dz);
    free(t->vpred);
    free(t->best);
    kp_optim_free(t->opt);
}

static int trainer_setup(trainer *t, char *err, size_t errlen)
{
    const kp_cnn *m = t->m;
    size_t bs = (size_t)t->s->batch, tmp_n;
    size_t params;
    kp_nn_params(m->net, &params);
    t->threads = kp_nn_threads(m->net);
    t->k = m->pb.n_out;
    t->y_width = m->pb.task == KP_TASK_MULTILABEL ? t->k : 1;
    t->chw = (size_t)m->c * m->h * m->w;
    t->aug_ws = kp_augment_workspace(&t->s->aug, m->c, m->h, m->w);
    tmp_n = t->aug_ws > t->chw ? t->aug_ws : t->chw;
    t->order = malloc((size_t)t->n * sizeof *t->order);
    t->batch_rows = malloc(bs * sizeof *t->batch_rows);
    t->x = malloc(bs * t->chw * sizeof *t->x);
    t->tmp = malloc((size_t)t->threads * tmp_n * sizeof *t->tmp);
    t->yb = malloc(bs * t->y_width * sizeof *t->yb);
    t->dz = malloc(bs * t->k * sizeof *t->dz);
    t->vpred = malloc((size_t)(t->opts->n_valid + 1) * t->k * sizeof *t->vpred);
    t->best = malloc(kp_nn_state_size(m->net) * sizeof *t->best);
    if (!t->order || !t->batch_rows || !t->x || !t->tmp || !t->yb || !t->dz || !t->vpred ||
        !t->best)
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory allocating training buffers");
    for (int64_t i = 0; i < t->n; i++)
        t->order[i] = i;
    return kp_optim_create(&t->s->optim, params, &t->opt, err, errlen);
}

/* ---- one batch ---- */

typedef struct aug_job {
    const trainer *t;
    uint64_t seed;        /* the epoch's */
    int64_t first;        /* shuffle position of the batch's first image */
} aug_job;

static void augment_one(void *data, size_t i, int tid)
{
    const aug_job *j = data;
    const trainer *t = j->t;
    kp_rng rng;
    kp_rng_seed(&rng, kp_rng_derive(j->seed, (uint64_t)(j->first + (int64_t)i)));
    kp_augment_apply(&t->s->aug, &rng, t->x + i * t->chw, t->m->c, t->m->h, t->m->w,
                     t->tmp + (size_t)tid * (t->aug_ws > t->chw ? t->aug_ws : t->chw));
}

/* Loss and its gradient dz for the batch's outputs z against yb. */
static double batch_loss(const kp_problem *pb, int b, const float *z, const float *yb,
                         float *dz)
{
    int k = pb->n_out;
    if (pb->task == KP_TASK_MULTICLASS)
        return kp_softmax_ce(b, k, z, yb, NULL, dz);
    if (pb->task != KP_TASK_REGRESSION)
        return kp_sigmoid_bce(b, k, z, yb, NULL, dz);
    double loss = 0;
    for (int i = 0; i < b * k; i++) {
        double d = (double)z[i] - yb[i];
        loss += 0.5 * d * d;
        if (dz)
            dz[i] = (float)(d / b);
    }
    return loss / b;
}

/* Trains on shuffle positions [first, first + b); returns the batch loss. */
static double train_batch(trainer *t, int epoch, int64_t batch_no, int64_t first, int b,
                          int64_t step, int64_t steps_per_epoch)
{
    kp_cnn *m = t->m;
    uint64_t eseed = kp_rng_derive(t->seed, (uint64_t)epoch + 1);
    for (int i = 0; i < b; i++) {
        int64_t pos = t->order[first + i];
        t->batch_rows[i] = t->rows[pos];
        memcpy(t->yb + (size_t)i * t->y_width, t->y + pos * t->y_width,
               (size_t)t->y_width * sizeof *t->yb);
    }
    kp_cnn_load_batch(m, t->X, t->batch_rows, b, 0, t->x, t->tmp, t->threads);
    if (kp_augment_any(&t->s->aug)) {
        aug_job j = {t, kp_rng_derive(eseed, 1), first};
        kp_parallel_for(t->threads, augment_one, &j, (size_t)b);
    }
    const float *z = kp_nn_forward(m->net, t->x, b, 1,
                                   kp_rng_derive(kp_rng_derive(eseed, 2), (uint64_t)batch_no));
    double loss = batch_loss(&m->pb, b, z, t->yb, t->dz);
    kp_nn_backward(m->net, b, t->dz);
    size_t np;
    float *w = kp_nn_params(m->net, &np);
    float lr = (float)kp_sched_lr(&t->s->sched, step, steps_per_epoch, t->s->epochs);
    kp_optim_step(t->opt, lr, w, kp_nn_grads(m->net), kp_nn_decay_mask(m->net));
    return loss;
}

/* ---- held-out scoring ---- */

/* Loss (on probabilities) and accuracy of the held-out predictions. */
static void valid_scores(const trainer *t, double *loss, double *acc)
{
    const kp_problem *pb = &t->m->pb;
    int64_t n = t->opts->n_valid;
    const float *y = t->opts->y_valid, *p = t->vpred;
    double l = 0, hits = 0;
    int k = t->k;
    for (int64_t i = 0; i < n; i++) {
        const float *r = p + i * k;
        if (pb->task == KP_TASK_MULTICLASS) {
            int yi = (int)y[i], best = 0;
            for (int j = 1; j < k; j++)
                best = r[j] > r[best] ? j : best;
            l -= log(fmax(r[yi], 1e-15));
            hits += best == yi;
        } else if (pb->task == KP_TASK_REGRESSION) {
            double d = r[0] - y[i];
            l += 0.5 * d * d;
        } else {
            double row_hits = 0;
            for (int j = 0; j < k; j++) {
                double q = fmin(fmax(r[j], 1e-15), 1 - 1e-15), yy = y[i * k + j];
                l -= yy * log(q) + (1 - yy) * log(1 - q);
                row_hits += (q >= 0.5) == (yy >= 0.5);
            }
            hits += row_hits / k;   /* binary and multilabel: the share of labels right */
        }
    }
    *loss = l / (double)(n > 0 ? n : 1);
    *acc = pb->task == KP_TASK_REGRESSION ? NAN : hits / (double)(n > 0 ? n : 1);
}

/* ---- epochs ---- */

static void shuffle(trainer *t, int epoch)
{
    kp_rng rng;
    kp_rng_seed(&rng, kp_rng_derive(kp_rng_derive(t->seed, (uint64_t)epoch + 1), 0));
    kp_rng_shuffle_i64(&rng, t->order, (size_t)t->n);
}

/* Runs one epoch; returns the mean training loss. */
static double run_epoch(trainer *t, int epoch, double t0)
{
    int bs = t->s->batch;
    int64_t steps = (t->n + bs - 1) / bs;
    double sum = 0, last_log = now_seconds();
    shuffle(t, epoch);
    for (int64_t b = 0; b < steps; b++) {
        int64_t first = b * bs;
        int nb = t->n - first < bs ? (int)(t->n - first) : bs;
        sum += train_batch(t, epoch, b, first, nb, (int64_t)epoch * steps + b, steps) * nb;
        double now = now_seconds();
        if (t->opts->log && now - last_log >= LOG_SECONDS) {
            double per_batch = (now - t0) / (double)(b + 1);
            double left = per_batch * ((double)(steps - b - 1) +
                                       (double)steps * (t->s->epochs - epoch - 1));
            fprintf(t->opts->log, "epoch %d/%d batch %lld/%lld loss %.4f %.0f img/s ETA %.0fs\n",
                    epoch + 1, t->s->epochs, (long long)b + 1, (long long)steps,
                    sum / (double)(first + nb), (double)(first + nb) / (now - t0), left);
            fflush(t->opts->log);
            last_log = now;
        }
    }
    return sum / (double)t->n;
}

int kp_cnn_train(kp_cnn *m, const kp_cnn_settings *s, const kp_images *X,
                 const int64_t *rows, int64_t n, const float *y, const kp_fit_opts *opts,
                 char *err, size_t errlen)
{
    trainer t = {.m = m, .s = s, .X = X, .rows = rows, .y = y, .n = n, .opts = opts,
                 .seed = kp_rng_derive(opts->seed, 2)};
    int rc = trainer_setup(&t, err, errlen), best_epoch = -1, stale = 0;
    int validate = opts->valid_rows && opts->n_valid > 0 && opts->y_valid;
    double best_loss = INFINITY, t0 = now_seconds();
    for (int e = 0; rc == 0 && e < s->epochs; e++) {
        double te = now_seconds(), loss = run_epoch(&t, e, te), vloss = NAN, vacc = NAN;
        double secs = now_seconds() - te;
        if (validate && (rc = kp_cnn_predict_rows(m, X, opts->valid_rows, opts->n_valid, 0,
                                                  t.vpred, err, errlen)) < 0)
            break;
        if (validate)
            valid_scores(&t, &vloss, &vacc);
        if (!validate || vloss < best_loss) {
            best_loss = validate ? vloss : loss;
            best_epoch = e;
            stale = 0;
            kp_nn_state_get(m->net, t.best);
        } else
            stale++;
        if (opts->log) {
            double el = now_seconds() - t0;
            fprintf(opts->log, "epoch %d/%d loss %.4f val_loss %.4f val_acc %.4f %.1fs "
                    "%.0f img/s ETA %.0fs%s\n", e + 1, s->epochs, loss, vloss, vacc, secs,
                    (double)n / secs, el / (e + 1) * (s->epochs - e - 1),
                    best_epoch == e ? " *" : "");
            fflush(opts->log);
        }
        if (s->patience > 0 && stale >= s->patience)
            break;
    }
    if (rc == 0 && best_epoch >= 0) {
        kp_nn_state_set(m->net, t.best);
        if (opts->log)
            fprintf(opts->log, "best epoch %d (%s %.4f)\n", best_epoch + 1,
                    validate ? "val_loss" : "loss", best_loss);
    }
    trainer_release(&t);
    return rc;
}

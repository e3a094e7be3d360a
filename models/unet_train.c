/* unet_train.c - the training loop of the unet model (see unet.c).
 *
 * Every buffer is allocated once before the first epoch.  Epoch e shuffles
 * the training positions with an RNG derived from (seed, e); sample i of the
 * shuffle draws its crop window and its augmentation from an RNG derived
 * from (seed, e, i), so nothing depends on the thread count.  The mask
 * rides along through the augmentation (kp_augment_apply_masked): a binary
 * mask as one channel, thresholded at 0.5 after it; classes as one
 * indicator channel per class 1..K-1, the label after it their argmax
 * (with 1 - their sum for the background), since interpolating class
 * indices would invent classes (between 0 and 2 lies 1).
 * After every epoch the held-out images are predicted as the merge will
 * predict them (whole, or tiled) and scored by Kaggle's Dice (per image,
 * both-empty = 1); the best epoch's weights are kept.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "../lib/err.h"
#include "../lib/parallel.h"
#include "metric.h"
#include "unet_int.h"

#define LOG_SECONDS 10.0       /* between progress lines within an epoch */

typedef struct trainer {
    kp_unet *m;
    const kp_unet_settings *s;
    const kp_images *X;
    const int64_t *rows;
    const float *y;
    int64_t n;
    const kp_fit_opts *opts;
    const uint8_t *frozen;
    int threads, K, M;               /* M: mask channels (1, or K - 1 indicators) */
    size_t hw, thw, slot;            /* image pixels, net pixels, per-thread floats */
    int64_t *order;
    float *x, *yb, *dz, *tmp, *loss_ws, *vpred, *best, *w0;
    kp_optim *opt;
    uint64_t seed, eseed;
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
    free(t->x);
    free(t->yb);
    free(t->dz);
    free(t->tmp);
    free(t->loss_ws);
    free(t->vpred);
    free(t->best);
    free(t->w0);
    kp_optim_free(t->opt);
}

static int trainer_setup(trainer *t, char *err, size_t errlen)
{
    const kp_unet *m = t->m;
    size_t bs = (size_t)t->s->batch, params, aug;
    float *w = kp_nn_params(m->net, &params);
    t->threads = kp_nn_threads(m->net);
    t->K = m->pb.mask_c;
    t->M = t->K == 1 ? 1 : t->K - 1;
    t->hw = (size_t)m->h * m->w;
    t->thw = (size_t)m->net_h * m->net_w;
    aug = kp_augment_workspace(&t->s->aug, m->c + t->M, m->net_h, m->net_w);
    /* per thread: the whole image (c channels), the sample (c + M), the augment's workspace */
    t->slot = t->hw * m->c + t->thw * (m->c + t->M) + (aug > t->thw ? aug : t->thw);
    t->order = malloc((size_t)t->n * sizeof *t->order);
    t->x = malloc(bs * m->c * t->thw * sizeof *t->x);
    t->yb = malloc(bs * t->thw * sizeof *t->yb);
    t->dz = malloc(bs * t->K * t->thw * sizeof *t->dz);
    t->tmp = malloc((size_t)t->threads * t->slot * sizeof *t->tmp);
    t->loss_ws = malloc((kp_seg_loss_workspace((int)bs, t->K, (int)t->thw, t->threads) + 1) *
                        sizeof *t->loss_ws);
    t->vpred = malloc(((size_t)t->opts->n_valid * m->pb.n_out + 1) * sizeof *t->vpred);
    t->best = malloc(kp_nn_state_size(m->net) * sizeof *t->best);
    t->w0 = t->frozen ? malloc(params * sizeof *t->w0) : NULL;
    if (!t->order || !t->x || !t->yb || !t->dz || !t->tmp || !t->loss_ws || !t->vpred ||
        !t->best || (t->frozen && !t->w0))
        return kp_errf(err, errlen, KP_ERR_NOMEM, "out of memory allocating training buffers");
    if (t->w0)
        memcpy(t->w0, w, params * sizeof *w);
    for (int64_t i = 0; i < t->n; i++)
        t->order[i] = i;
    return kp_optim_create(&t->s->optim, params, &t->opt, err, errlen);
}

/* ---- one batch ---- */

typedef struct sample_job {
    const trainer *t;
    int64_t first;        /* shuffle position of the batch's first sample */
} sample_job;

/* Copies the crop window at (y0, x0) of the image (c x h x w) and of its mask
 * (as the M mask channels) into smp. */
static void cut_sample(const trainer *t, const float *img, const float *mask, int y0, int x0,
                       float *smp)
{
    const kp_unet *m = t->m;
    for (int c = 0; c < m->c + t->M; c++)
        for (int y = 0; y < m->net_h; y++) {
            float *d = smp + ((size_t)c * m->net_h + y) * m->net_w;
            const float *s = (c < m->c ? img + c * t->hw : mask) + (size_t)(y0 + y) * m->w + x0;
            float k = (float)(c - m->c + 1);
            if (c < m->c || t->K == 1)
                memcpy(d, s, (size_t)m->net_w * sizeof *d);
            else
                for (int x = 0; x < m->net_w; x++)
                    d[x] = (float)(s[x] == k);
        }
}

/* The target of pixel p from the (augmented) mask channels ms. */
static float label_of(const trainer *t, const float *ms, size_t p)
{
    if (t->K == 1)
        return (float)(ms[p] > 0.5f);
    float sum = 0, top;
    int best = 0;
    for (int k = 0; k < t->M; k++)
        sum += ms[k * t->thw + p];
    top = 1 - sum;
    for (int k = 0; k < t->M; k++)
        if (ms[k * t->thw + p] > top)
            top = ms[k * t->thw + p], best = k + 1;
    return (float)best;
}

/* Builds sample i of the batch: crop window, augmentation, image to x, mask to yb. */
static void make_sample(void *data, size_t i, int tid)
{
    const sample_job *j = data;
    const trainer *t = j->t;
    const kp_unet *m = t->m;
    int64_t pos = t->order[j->first + (int64_t)i];
    float *img = t->tmp + (size_t)tid * t->slot, *smp = img + t->hw * m->c;
    float *ws = smp + t->thw * (m->c + t->M);
    const float *mask = t->y + pos * (int64_t)t->hw;
    kp_rng rng;
    kp_rng_seed(&rng, kp_rng_derive(kp_rng_derive(t->eseed, 1), (uint64_t)(j->first + (int64_t)i)));
    int y0 = m->h > m->net_h ? (int)kp_rng_below(&rng, (uint64_t)(m->h - m->net_h + 1)) : 0;
    int x0 = m->w > m->net_w ? (int)kp_rng_below(&rng, (uint64_t)(m->w - m->net_w + 1)) : 0;
    kp_unet_load_image(m, t->X, t->rows[pos], img);
    cut_sample(t, img, mask, y0, x0, smp);
    if (kp_augment_any(&t->s->aug))
        kp_augment_apply_masked(&t->s->aug, &rng, smp, m->c, t->M, m->net_h, m->net_w, ws);
    memcpy(t->x + i * m->c * t->thw, smp, m->c * t->thw * sizeof *smp);
    float *yb = t->yb + i * t->thw, *ms = smp + m->c * t->thw;
    for (size_t p = 0; p < t->thw; p++)
        yb[p] = label_of(t, ms, p);
}

/* Trains on shuffle positions [first, first + b); returns the batch loss. */
static double train_batch(trainer *t, int epoch, int64_t batch_no, int64_t first, int b,
                          int64_t step, int64_t steps_per_epoch)
{
    kp_unet *m = t->m;
    sample_job j = {t, first};
    kp_parallel_for(t->threads, make_sample, &j, (size_t)b);
    const float *z = kp_nn_forward(m->net, t->x, b, 1,
                                   kp_rng_derive(kp_rng_derive(t->eseed, 2), (uint64_t)batch_no));
    double loss = kp_seg_loss_eval(&t->s->loss, b, t->K, (int)t->thw, z, t->yb, NULL, t->dz,
                                   t->loss_ws, t->threads);
    kp_nn_backward(m->net, b, t->dz);
    size_t np;
    float *w = kp_nn_params(m->net, &np);
    float lr = (float)kp_sched_lr(&t->s->sched, step, steps_per_epoch, t->s->epochs);
    kp_optim_step(t->opt, lr, w, kp_nn_grads(m->net), kp_nn_decay_mask(m->net));
    if (t->frozen && epoch < t->s->freeze_epochs)
        for (size_t i = 0; i < np; i++)
            if (t->frozen[i])
                w[i] = t->w0[i];
    return loss;
}

/* ---- epochs ---- */

static void shuffle(trainer *t)
{
    kp_rng rng;
    kp_rng_seed(&rng, kp_rng_derive(t->eseed, 0));
    kp_rng_shuffle_i64(&rng, t->order, (size_t)t->n);
}

/* Runs one epoch; returns the mean training loss. */
static double run_epoch(trainer *t, int epoch, double t0)
{
    int bs = t->s->batch;
    int64_t steps = (t->n + bs - 1) / bs;
    double sum = 0, last_log = now_seconds();
    t->eseed = kp_rng_derive(t->seed, (uint64_t)epoch + 1);
    shuffle(t);
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

/* Predicts the held-out images and scores them by Dice. */
static int validate(trainer *t, double *dice, char *err, size_t errlen)
{
    const kp_fit_opts *o = t->opts;
    const kp_metric_ops *metric = kp_metric_find("dice");
    kp_metric_opts mo = kp_metric_defaults();
    int rc = kp_unet_predict_rows(t->m, t->X, o->valid_rows, o->n_valid, 0, t->vpred, err,
                                  errlen);
    if (rc == 0 && !metric)
        rc = kp_errf(err, errlen, KP_ERR_ARG, "the dice metric is not registered");
    if (rc == 0)
        rc = metric->score(&t->m->pb, o->y_valid, t->vpred, o->n_valid, &mo, dice, err, errlen);
    return rc;
}

int kp_unet_train(kp_unet *m, const kp_unet_settings *s, const kp_images *X,
                  const int64_t *rows, int64_t n, const float *y, const uint8_t *frozen,
                  const kp_fit_opts *opts, char *err, size_t errlen)
{
    trainer t = {.m = m, .s = s, .X = X, .rows = rows, .y = y, .n = n, .opts = opts,
                 .frozen = frozen, .seed = kp_rng_derive(opts->seed, 2)};
    int rc = trainer_setup(&t, err, errlen), best_epoch = -1, stale = 0;
    int held_out = opts->valid_rows && opts->n_valid > 0 && opts->y_valid;
    double best = -INFINITY, t0 = now_seconds();
    for (int e = 0; rc == 0 && e < s->epochs; e++) {
        double te = now_seconds(), loss = run_epoch(&t, e, te), dice = NAN;
        double secs = now_seconds() - te;
        if (held_out && (rc = validate(&t, &dice, err, errlen)) < 0)
            break;
        double score = held_out ? dice : -loss;
        if (score > best) {
            best = score;
            best_epoch = e;
            stale = 0;
            kp_nn_state_get(m->net, t.best);
        } else
            stale++;
        if (opts->log) {
            double el = now_seconds() - t0;
            fprintf(opts->log,
                    "epoch %d/%d loss %.4f val_dice %.4f %.1fs %.0f img/s ETA %.0fs%s%s\n",
                    e + 1, s->epochs, loss, dice, secs, (double)n / secs,
                    el / (e + 1) * (s->epochs - e - 1), best_epoch == e ? " *" : "",
                    frozen && e < s->freeze_epochs ? " (encoder frozen)" : "");
            fflush(opts->log);
        }
        if (s->patience > 0 && stale >= s->patience)
            break;
    }
    if (rc == 0 && best_epoch >= 0) {
        kp_nn_state_set(m->net, t.best);
        if (opts->log)
            fprintf(opts->log, "best epoch %d (%s %.4f)\n", best_epoch + 1,
                    held_out ? "val_dice" : "loss", held_out ? best : -best);
    }
    trainer_release(&t);
    return rc;
}

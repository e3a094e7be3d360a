/* optim.c - SGD, Adam and AdamW over one parameter array, and the
 * learning-rate schedules (see optim.h).
 *
 * The updates follow PyTorch 1.13's single-tensor code paths operation by
 * operation, in float, with the scalar factors made in double and rounded
 * to float once as PyTorch does (torch/optim/sgd.py, adam.py, adamw.py), so
 * trajectories agree with PyTorch's to float rounding.  The schedules are
 * PyTorch's closed forms: StepLR per epoch, CosineAnnealingLR stepped per
 * batch with T_max the total step count, OneCycleLR (cosine, two phases).
 * PyTorch's OneCycleLR also cycles momentum / Adam's beta1 by default;
 * these schedules give the learning rate only (cycle_momentum=False).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../../lib/err.h"
#include "optim.h"

struct kp_optim {
    kp_optim_opts o;
    size_t n;
    int64_t t;          /* steps taken */
    float *m;           /* sgd: momentum buffer; adam: first moment */
    float *v;           /* adam: second moment */
};

static const char *const optim_names[] = { "sgd", "adam", "adamw" };
static const char *const sched_names[] = { "constant", "step", "cosine", "onecycle" };

/* Index of name in names[count], or -1. */
static int find_name(const char *name, const char *const *names, int count)
{
    for (int i = 0; name && i < count; i++)
        if (strcmp(name, names[i]) == 0)
            return i;
    return -1;
}

int kp_optim_parse(const char *name, kp_optim_kind *out)
{
    int i = find_name(name, optim_names, 3);
    if (i < 0)
        return KP_ERR_ARG;
    *out = (kp_optim_kind)i;
    return 0;
}

int kp_sched_parse(const char *name, kp_sched_kind *out)
{
    int i = find_name(name, sched_names, 4);
    if (i < 0)
        return KP_ERR_ARG;
    *out = (kp_sched_kind)i;
    return 0;
}

/* 0 if lo <= v < hi (hi_open) or lo <= v <= hi, else KP_ERR_ARG naming it. */
static int check_range(const char *what, double v, double lo, double hi, int hi_open, char *err,
                       size_t errlen)
{
    if (isfinite(v) && v >= lo && (hi_open ? v < hi : v <= hi))
        return 0;
    if (isinf(hi))
        return kp_errf(err, errlen, KP_ERR_ARG, "%s must be at least %g (got %g)", what, lo, v);
    return kp_errf(err, errlen, KP_ERR_ARG, "%s must be in [%g, %g%c (got %g)", what, lo, hi,
                   hi_open ? ')' : ']', v);
}

/* 0, or KP_ERR_ARG with a message naming the first bad option. */
static int check_opts(const kp_optim_opts *o, char *err, size_t errlen)
{
    int rc;
    if ((int)o->kind < 0 || o->kind > KP_OPTIM_ADAMW)
        return kp_errf(err, errlen, KP_ERR_ARG, "unknown optimiser kind %d", (int)o->kind);
    const char *name = optim_names[o->kind];
    char what[64];
    snprintf(what, sizeof what, "%s: weight_decay", name);
    if ((rc = check_range(what, o->weight_decay, 0, INFINITY, 0, err, errlen)) < 0)
        return rc;
    if (o->kind == KP_OPTIM_SGD) {
        if ((rc = check_range("sgd: momentum", o->momentum, 0, 1, 1, err, errlen)) < 0)
            return rc;
        if (o->nesterov && o->momentum <= 0)
            return kp_errf(err, errlen, KP_ERR_ARG, "sgd: nesterov needs momentum > 0");
        return 0;
    }
    snprintf(what, sizeof what, "%s: beta1", name);
    if ((rc = check_range(what, o->beta1, 0, 1, 1, err, errlen)) < 0)
        return rc;
    snprintf(what, sizeof what, "%s: beta2", name);
    if ((rc = check_range(what, o->beta2, 0, 1, 1, err, errlen)) < 0)
        return rc;
    snprintf(what, sizeof what, "%s: eps", name);
    return check_range(what, o->eps, 0, INFINITY, 0, err, errlen);
}

int kp_optim_create(const kp_optim_opts *o, size_t n, kp_optim **out, char *err,
                    size_t errlen)
{
    int rc = check_opts(o, err, errlen);
    if (rc < 0)
        return rc;
    kp_optim *opt = calloc(1, sizeof *opt);
    if (!opt)
        goto fail;
    opt->o = *o;
    opt->n = n;
    int need_m = o->kind != KP_OPTIM_SGD || o->momentum > 0;
    opt->m = need_m ? calloc(n ? n : 1, sizeof *opt->m) : NULL;
    opt->v = o->kind != KP_OPTIM_SGD ? calloc(n ? n : 1, sizeof *opt->v) : NULL;
    if ((need_m && !opt->m) || (o->kind != KP_OPTIM_SGD && !opt->v))
        goto fail;
    *out = opt;
    return 0;
fail:
    kp_optim_free(opt);
    return kp_errf(err, errlen, KP_ERR_NOMEM, "no memory for the optimiser state of %zu "
                   "parameters", n);
}

void kp_optim_free(kp_optim *o)
{
    if (!o)
        return;
    free(o->m);
    free(o->v);
    free(o);
}

/* Weight decay of parameter i: wd, or 0 where the mask says no. */
static inline float decay_of(float wd, const uint8_t *decay, size_t i)
{
    return decay && !decay[i] ? 0.0f : wd;
}

/* torch.optim.SGD (dampening 0).  PyTorch sets buf = g on the first step;
 * with dampening 0 that is momentum * 0 + g, what the zeroed buffer gives. */
static void sgd_step(kp_optim *o, float lr, float *w, const float *g, const uint8_t *decay)
{
    float wd = o->o.weight_decay, mu = o->o.momentum;
    for (size_t i = 0; i < o->n; i++) {
        float d = g[i];
        float wdi = decay_of(wd, decay, i);
        if (wdi != 0)
            d = d + wdi * w[i];
        if (mu != 0) {
            float b = o->m[i] * mu + d;
            o->m[i] = b;
            d = o->o.nesterov ? d + mu * b : b;
        }
        w[i] = w[i] + -lr * d;
    }
}

/* torch.optim.Adam / AdamW (amsgrad off): coupled decay adds wd w to the
 * gradient, decoupled decay scales w by 1 - lr wd first. */
static void adam_step(kp_optim *o, float lr, float *w, const float *g, const uint8_t *decay)
{
    const kp_optim_opts *p = &o->o;
    double t = (double)o->t;
    float b1 = p->beta1, b2 = p->beta2, eps = p->eps, wd = p->weight_decay;
    float step_size = (float)(lr / (1 - pow(b1, t)));
    float bc2_sqrt = (float)sqrt(1 - pow(b2, t));
    float shrink = (float)(1 - (double)lr * wd);
    int decoupled = p->kind == KP_OPTIM_ADAMW;
    for (size_t i = 0; i < o->n; i++) {
        float gi = g[i];
        float wdi = decay_of(wd, decay, i);
        if (wdi != 0 && decoupled)
            w[i] = w[i] * shrink;
        else if (wdi != 0)
            gi = gi + wdi * w[i];
        o->m[i] = o->m[i] * b1 + gi * (1 - b1);
        o->v[i] = o->v[i] * b2 + (1 - b2) * gi * gi;
        float denom = sqrtf(o->v[i]) / bc2_sqrt + eps;
        w[i] = w[i] + -step_size * (o->m[i] / denom);
    }
}

void kp_optim_step(kp_optim *o, float lr, float *w, const float *g, const uint8_t *decay)
{
    o->t++;
    if (o->o.kind == KP_OPTIM_SGD)
        sgd_step(o, lr, w, g, decay);
    else
        adam_step(o, lr, w, g, decay);
}

/* ---- schedules ---- */

/* PyTorch's _annealing_cos: from start (pct 0) to end (pct 1) along a half cosine. */
static double anneal_cos(double start, double end, double pct)
{
    return end + (start - end) / 2.0 * (cos(M_PI * pct) + 1);
}

/* OneCycleLR (three_phase False): warm up from lr / div_factor to lr over
 * pct_start of the steps, then anneal to lr / div_factor / final_div_factor. */
static double onecycle_lr(const kp_sched *s, double step, double total)
{
    double initial = s->lr / s->div_factor, final = initial / s->final_div_factor;
    double end1 = s->pct_start * total - 1, end2 = total - 1;
    if (step <= end1)
        return anneal_cos(initial, s->lr, end1 > 0 ? step / end1 : 1);
    return anneal_cos(s->lr, final, end2 > end1 ? (step - end1) / (end2 - end1) : 1);
}

double kp_sched_lr(const kp_sched *s, int64_t step, int64_t steps_per_epoch, int epochs)
{
    int64_t per = steps_per_epoch > 0 ? steps_per_epoch : 1;
    int64_t total = per * (epochs > 0 ? epochs : 1);
    if (step < 0)
        step = 0;
    if (step > total - 1 && s->kind != KP_SCHED_STEP)
        step = total - 1;
    switch (s->kind) {
    case KP_SCHED_STEP:
        return s->lr * pow(s->gamma, (double)((step / per) / (s->step_epochs > 0 ? s->step_epochs
                                                                                 : 1)));
    case KP_SCHED_COSINE:
        return s->min_lr + (s->lr - s->min_lr) * (1 + cos(M_PI * (double)step / (double)total)) / 2;
    case KP_SCHED_ONECYCLE:
        return onecycle_lr(s, (double)step, (double)total);
    case KP_SCHED_CONSTANT:
    default:
        return s->lr;
    }
}

int kp_optim_from_params(const kp_params *p, kp_optim_opts *o, kp_sched *s, char *err,
                         size_t errlen)
{
    *o = (kp_optim_opts){.momentum = (float)kp_params_double(p, "momentum", 0.9),
                         .nesterov = kp_params_bool(p, "nesterov", 0),
                         .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                         .weight_decay = (float)kp_params_double(p, "weight_decay", 0)};
    *s = (kp_sched){0};
    if (kp_optim_parse(kp_params_str(p, "optimizer", "adam"), &o->kind) < 0 ||
        kp_sched_parse(kp_params_str(p, "schedule", "constant"), &s->kind) < 0)
        return kp_errf(err, errlen, KP_ERR_CONFIG, "unknown optimizer or schedule");
    s->lr = kp_params_double(p, "lr", 1e-3);
    s->step_epochs = (int)kp_params_int(p, "step_epochs", 10);
    s->gamma = kp_params_double(p, "gamma", 0.1);
    s->pct_start = 0.3, s->div_factor = 25, s->final_div_factor = 1e4;
    return 0;
}

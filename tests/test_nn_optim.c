/* test_nn_optim.c - optimisers and learning-rate schedules (models/nn/optim.c).
 *
 * The trajectories and schedules below come from PyTorch 1.13 offline: five
 * parameters w0, four fixed gradients, the learning rate set to 0.1, 0.05,
 * 0.02, 0.01 before the four steps; weight decay on parameters 0, 1 and 3
 * only (the decay mask), made by running torch with and without decay and
 * taking each element from the matching run.  Schedules: 3 epochs of 7
 * steps, the optimiser's lr read before each step (StepLR stepped per
 * epoch, the others per step; OneCycleLR with cycle_momentum=False).
 * Values pasted with %.9g (floats) and %.17g (doubles).
 */
#include "kp_test.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include "../lib/err.h"
#include "../models/nn/optim.h"

enum { NP = 5, STEPS = 4 };

static const float w0[NP] = { 0.5, -1.0, 2.0, 0.0, -0.25 };
static const float grads[STEPS][NP] = {
    { 0.1, -0.2, 0.3, 0.05, -0.4 }, { -0.3, 0.1, 0.2, -0.15, 0.05 },
    { 0.25, 0.35, -0.1, 0.4, -0.2 }, { 0.05, -0.45, 0.15, 0.1, 0.3 },
};
static const float lrs[STEPS] = { 0.1f, 0.05f, 0.02f, 0.01f };
static const uint8_t mask[NP] = { 1, 1, 0, 1, 0 };

static const struct {
    const char *name;
    kp_optim_opts opts;
    float want[STEPS][NP];
} trajectories[] = {
    { "sgd", { KP_OPTIM_SGD, 0, 0, 0, 0, 0, 0 },
      { { 0.49000001, -0.980000019, 1.97000003, -0.00500000035, -0.209999993 },
        { 0.504999995, -0.985000014, 1.96000004, 0.00249999994, -0.212499991 },
        { 0.5, -0.992000043, 1.96200001, -0.00549999997, -0.208499998 },
        { 0.499500006, -0.987500072, 1.9605, -0.00650000013, -0.211500004 } } },
    { "sgd momentum 0.9 wd 0.01", { KP_OPTIM_SGD, 0.9f, 0, 0, 0, 0, 0.01f },
      { { 0.489499986, -0.978999972, 1.97000003, -0.00500000035, -0.209999993 },
        { 0.499530226, -0.974060476, 1.94650006, 0.000252499594, -0.194499999 },
        { 0.498041213, -0.979087472, 1.94004011, -0.00585665088, -0.184919998 },
        { 0.496821344, -0.976751685, 1.93563306, -0.00960518233, -0.183608994 } } },
    { "sgd nesterov 0.9 wd 0.1", { KP_OPTIM_SGD, 0.9f, 1, 0, 0, 0, 0.1f },
      { { 0.471500009, -0.943000019, 1.94299996, -0.00949999969, -0.173999995 },
        { 0.489445746, -0.931391537, 1.91184998, 0.00281524984, -0.162550002 },
        { 0.479995012, -0.936870575, 1.90803599, -0.0106790578, -0.149928004 },
        { 0.476570696, -0.926694334, 1.90256965, -0.0150286723, -0.151748106 } } },
    { "adam", { KP_OPTIM_ADAM, 0, 0, 0.9f, 0.999f, 1e-8f, 0 },
      { { 0.400000006, -0.899999976, 1.89999998, -0.0999999791, -0.150000006 },
        { 0.424709499, -0.886683106, 1.85148239, -0.0752904862, -0.121373281 },
        { 0.422775507, -0.895237088, 1.84044456, -0.0843658, -0.107762814 },
        { 0.42127353, -0.893340349, 1.83408439, -0.0893028229, -0.106352873 } } },
    { "adam betas 0.8 0.99 eps 1e-6 wd 0.1", { KP_OPTIM_ADAM, 0, 0, 0.8f, 0.99f, 1e-6f, 0.1f },
      { { 0.400000662, -0.900000334, 1.90000033, -0.0999980196, -0.150000244 },
        { 0.418299794, -0.869823933, 1.85201466, -0.0719345361, -0.123624288 },
        { 0.412212342, -0.872636676, 1.84242535, -0.0817600042, -0.110460728 },
        { 0.408493787, -0.867855787, 1.8364948, -0.086857006, -0.11004924 } } },
    { "adamw wd 0.1", { KP_OPTIM_ADAMW, 0, 0, 0.9f, 0.999f, 1e-8f, 0.1f },
      { { 0.395000011, -0.889999986, 1.89999998, -0.0999999791, -0.150000006 },
        { 0.417734504, -0.872233093, 1.85148239, -0.0747904852, -0.121373281 },
        { 0.414965063, -0.879042625, 1.84044456, -0.0837162212, -0.107762814 },
        { 0.413048118, -0.876266837, 1.83408439, -0.0885695294, -0.106352873 } } },
};

/* Runs STEPS steps from w0 with the reference gradients and lrs into w. */
static void run_steps(const kp_optim_opts *o, const uint8_t *decay, float w[STEPS][NP])
{
    char err[KP_ERRLEN] = "";
    kp_optim *opt = NULL;
    assert_int_equal(kp_optim_create(o, NP, &opt, err, sizeof err), 0);
    float cur[NP];
    memcpy(cur, w0, sizeof cur);
    for (int s = 0; s < STEPS; s++) {
        kp_optim_step(opt, lrs[s], cur, grads[s], decay);
        memcpy(w[s], cur, sizeof cur);
    }
    kp_optim_free(opt);
}

static void test_optimisers_follow_torch_trajectories(void **state)
{
    (void)state;
    for (size_t t = 0; t < sizeof trajectories / sizeof trajectories[0]; t++) {
        float got[STEPS][NP];
        run_steps(&trajectories[t].opts, mask, got);
        for (int s = 0; s < STEPS; s++)
            for (int i = 0; i < NP; i++) {
                double want = trajectories[t].want[s][i];
                if (!(fabs(got[s][i] - want) <= 2e-7 * (1 + fabs(want))))
                    fail_msg("%s, step %d, w[%d]: got %.9g, want %.9g", trajectories[t].name,
                             s + 1, i, got[s][i], want);
            }
    }
}

static void test_decay_mask_null_decays_everything_and_zero_entries_skip_it(void **state)
{
    (void)state;
    static const uint8_t all[NP] = { 1, 1, 1, 1, 1 }, none[NP] = { 0 };
    for (size_t t = 0; t < sizeof trajectories / sizeof trajectories[0]; t++) {
        kp_optim_opts nowd = trajectories[t].opts;
        nowd.weight_decay = 0;
        float null_mask[STEPS][NP], all_mask[STEPS][NP], none_mask[STEPS][NP], plain[STEPS][NP];
        run_steps(&trajectories[t].opts, NULL, null_mask);
        run_steps(&trajectories[t].opts, all, all_mask);
        run_steps(&trajectories[t].opts, none, none_mask);
        run_steps(&nowd, NULL, plain);
        if (memcmp(null_mask, all_mask, sizeof all_mask) != 0)
            fail_msg("%s: decay NULL differs from a mask of ones", trajectories[t].name);
        if (memcmp(none_mask, plain, sizeof plain) != 0)
            fail_msg("%s: a mask of zeros differs from weight_decay 0", trajectories[t].name);
        if (trajectories[t].opts.weight_decay != 0 &&
            memcmp(all_mask, plain, sizeof plain) == 0)
            fail_msg("%s: weight decay changed nothing", trajectories[t].name);
    }
}

static void test_optim_create_rejects_bad_options_with_a_message(void **state)
{
    (void)state;
    static const struct { kp_optim_opts o; const char *msg; } bad[] = {
        { { KP_OPTIM_SGD, 0, 1, 0, 0, 0, 0 }, "sgd: nesterov needs momentum > 0" },
        { { KP_OPTIM_SGD, 1, 0, 0, 0, 0, 0 }, "sgd: momentum must be in [0, 1) (got 1)" },
        { { KP_OPTIM_SGD, -0.5f, 0, 0, 0, 0, 0 }, "sgd: momentum must be in [0, 1) (got -0.5)" },
        { { KP_OPTIM_SGD, 0, 0, 0, 0, 0, NAN }, "sgd: weight_decay must be at least 0 (got nan)" },
        { { KP_OPTIM_ADAM, 0, 0, 1, 0.999f, 1e-8f, 0 }, "adam: beta1 must be in [0, 1) (got 1)" },
        { { KP_OPTIM_ADAMW, 0, 0, 0.9f, -0.25f, 1e-8f, 0 },
          "adamw: beta2 must be in [0, 1) (got -0.25)" },
        { { KP_OPTIM_ADAM, 0, 0, 0.9f, 0.999f, -1, 0 }, "adam: eps must be at least 0 (got -1)" },
        { { KP_OPTIM_ADAMW, 0, 0, 0.9f, 0.999f, 1e-8f, -0.5f },
          "adamw: weight_decay must be at least 0 (got -0.5)" },
        { { (kp_optim_kind)7, 0, 0, 0, 0, 0, 0 }, "unknown optimiser kind 7" },
    };
    for (size_t t = 0; t < sizeof bad / sizeof bad[0]; t++) {
        char err[KP_ERRLEN] = "";
        kp_optim *sentinel = (kp_optim *)&err, *opt = sentinel;
        assert_int_equal(kp_optim_create(&bad[t].o, 3, &opt, err, sizeof err), KP_ERR_ARG);
        assert_string_equal(err, bad[t].msg);
        assert_ptr_equal(opt, sentinel);
    }
}

static void test_optim_parse_accepts_the_three_names_only(void **state)
{
    (void)state;
    static const struct { const char *name; kp_optim_kind kind; } good[] = {
        { "sgd", KP_OPTIM_SGD }, { "adam", KP_OPTIM_ADAM }, { "adamw", KP_OPTIM_ADAMW },
    };
    for (size_t t = 0; t < 3; t++) {
        kp_optim_kind k = (kp_optim_kind)-1;
        assert_int_equal(kp_optim_parse(good[t].name, &k), 0);
        assert_int_equal(k, good[t].kind);
    }
    static const char *const bad[] = { "SGD", "", "adam_w", "adamw ", "rmsprop" };
    for (size_t t = 0; t < sizeof bad / sizeof bad[0]; t++) {
        kp_optim_kind k = KP_OPTIM_ADAMW;
        assert_int_equal(kp_optim_parse(bad[t], &k), KP_ERR_ARG);
        assert_int_equal(k, KP_OPTIM_ADAMW);
    }
}

static void test_sched_parse_accepts_the_four_names_only(void **state)
{
    (void)state;
    static const struct { const char *name; kp_sched_kind kind; } good[] = {
        { "constant", KP_SCHED_CONSTANT }, { "step", KP_SCHED_STEP },
        { "cosine", KP_SCHED_COSINE }, { "onecycle", KP_SCHED_ONECYCLE },
    };
    for (size_t t = 0; t < 4; t++) {
        kp_sched_kind k = (kp_sched_kind)-1;
        assert_int_equal(kp_sched_parse(good[t].name, &k), 0);
        assert_int_equal(k, good[t].kind);
    }
    static const char *const bad[] = { "Cosine", "", "one_cycle", "steplr", "exp" };
    for (size_t t = 0; t < sizeof bad / sizeof bad[0]; t++) {
        kp_sched_kind k = KP_SCHED_STEP;
        assert_int_equal(kp_sched_parse(bad[t], &k), KP_ERR_ARG);
        assert_int_equal(k, KP_SCHED_STEP);
    }
}

/* ---- schedules: 3 epochs of 7 steps ---- */

enum { SPE = 7, EPOCHS = 3, TOTAL = SPE * EPOCHS };

static const struct {
    const char *name;
    kp_sched s;
    double want[TOTAL];
} schedules[] = {
    { "onecycle max 0.1", { KP_SCHED_ONECYCLE, 0.1, 0, 0, 0, 0.3, 25, 1e4 },
      { 0.0040000000000000036, 0.012188527098390314, 0.033960276058516578, 0.061886973699572717,
        0.086440348338127915, 0.099243067741484656, 0.099441543545091188, 0.096736235560451536,
        0.09190443762697105, 0.085165996584826986, 0.076827511549137709, 0.0672683836480545,
        0.056923553268744854, 0.046263710266697504, 0.035773877573965704, 0.02593134265232537,
        0.017183940910385519, 0.0099296791893265478, 0.0044986264488089088,
        0.0011378956269720922, 3.9999999999999998e-07 } },
    { "onecycle max 0.02 pct 0.5 div 10 final 100",
      { KP_SCHED_ONECYCLE, 0.02, 0, 0, 0, 0.5, 10, 100 },
      { 0.0019999999999999983, 0.0024876448246942892, 0.0038977354154324552,
        0.0060774665768981544, 0.0087906306157328057, 0.01174321410925099, 0.014615258821876722,
        0.017095534144631667, 0.018915263760858402, 0.0198772517306245, 0.019888419953989035,
        0.019010678990345167, 0.017333188199579963, 0.015005000000000001, 0.012232984130223581,
        0.0092634463650716221, 0.0063602431665797142, 0.0037813368794312528,
        0.0017558746445832133, 0.00046382767019645355, 2.0000000000000002e-05 } },
    { "cosine 0.1 to 0.001", { KP_SCHED_COSINE, 0.1, 0, 0, 0.001, 0, 0, 0 },
      { 0.10000000000000001, 0.099447125898143862, 0.097800853886413963, 0.095097958961169737,
        0.091398819328641745, 0.086786067655576393, 0.081362745192007299, 0.075249999999999997,
        0.068584380706136552, 0.061514786230837559, 0.054199139632528009, 0.046800860367472011,
        0.03948521376916244, 0.032415619293863447, 0.025750000000000012, 0.019637254807992693,
        0.014213932344423596, 0.0096011806713582441, 0.0059020410388302552,
        0.0031991461135860411, 0.0015528741018561378 } },
    { "step every 2 epochs by 0.5", { KP_SCHED_STEP, 0.1, 2, 0.5, 0, 0, 0, 0 },
      { 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1,
        0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05 } },
    { "constant", { KP_SCHED_CONSTANT, 0.03, 0, 0, 0, 0, 0, 0 },
      { 0.03, 0.03, 0.03, 0.03, 0.03, 0.03, 0.03, 0.03, 0.03, 0.03, 0.03, 0.03, 0.03, 0.03,
        0.03, 0.03, 0.03, 0.03, 0.03, 0.03, 0.03 } },
};

static void test_schedules_match_torch_at_every_step(void **state)
{
    (void)state;
    for (size_t t = 0; t < sizeof schedules / sizeof schedules[0]; t++)
        for (int s = 0; s < TOTAL; s++) {
            double got = kp_sched_lr(&schedules[t].s, s, SPE, EPOCHS), want = schedules[t].want[s];
            if (!(fabs(got - want) <= 1e-12 * fabs(want)))
                fail_msg("%s, step %d: got %.17g, want %.17g", schedules[t].name, s, got, want);
        }
}

static void test_schedules_hold_their_last_value_past_the_end(void **state)
{
    (void)state;
    for (size_t t = 0; t < sizeof schedules / sizeof schedules[0]; t++) {
        if (schedules[t].s.kind == KP_SCHED_STEP)
            continue;
        double last = kp_sched_lr(&schedules[t].s, TOTAL - 1, SPE, EPOCHS);
        assert_true(kp_sched_lr(&schedules[t].s, TOTAL + 5, SPE, EPOCHS) == last);
    }
    /* step keeps decaying by epoch: epoch 4 is the third interval */
    assert_true(fabs(kp_sched_lr(&schedules[3].s, 4 * SPE, SPE, EPOCHS) - 0.025) < 1e-15);
}

static void test_optim_free_accepts_null(void **state)
{
    (void)state;
    kp_optim_free(NULL);
}

KP_TEST_GROUP(nn_optim)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_optimisers_follow_torch_trajectories),
        cmocka_unit_test(test_decay_mask_null_decays_everything_and_zero_entries_skip_it),
        cmocka_unit_test(test_optim_create_rejects_bad_options_with_a_message),
        cmocka_unit_test(test_optim_parse_accepts_the_three_names_only),
        cmocka_unit_test(test_sched_parse_accepts_the_four_names_only),
        cmocka_unit_test(test_schedules_match_torch_at_every_step),
        cmocka_unit_test(test_schedules_hold_their_last_value_past_the_end),
        cmocka_unit_test(test_optim_free_accepts_null),
    };
    return KP_RUN(nn_optim, t);
}

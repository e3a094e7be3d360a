/* pick.h - a branch-free float select that GCC vectorises at -O2. */
#ifndef KP_NN_PICK_H
#define KP_NN_PICK_H

#include <stdint.h>
#include <string.h>

/* Returns cond ? a : b, chosen on the bits (float selects are not vectorised
 * under the default -ftrapping-math; this is). */
static inline float kp_pick(int cond, float a, float b)
{
    uint32_t ua, ub, m = -(uint32_t)(cond != 0);
    memcpy(&ua, &a, sizeof ua);
    memcpy(&ub, &b, sizeof ub);
    ua = (ua & m) | (ub & ~m);
    memcpy(&a, &ua, sizeof a);
    return a;
}

#endif

/* rng.h - an explicit, seedable random number generator (xoshiro256**).
 *
 * State is passed to whoever needs randomness; nothing uses rand().  The same
 * seed gives the same stream on every machine.
 */
#ifndef KP_RNG_H
#define KP_RNG_H

#include <stdint.h>
#include <stddef.h>

typedef struct kp_rng { uint64_t s[4]; } kp_rng;

/* Seeds the state from one 64-bit seed (expanded with splitmix64). */
void kp_rng_seed(kp_rng *r, uint64_t seed);

/* Derives an independent seed for stream number `stream` of `seed`. */
uint64_t kp_rng_derive(uint64_t seed, uint64_t stream);

/* Returns the next 64 random bits. */
uint64_t kp_rng_next(kp_rng *r);

/* Returns a uniform double in [0, 1). */
double kp_rng_uniform(kp_rng *r);

/* Returns a uniform integer in [0, n); n > 0 (unbiased). */
uint64_t kp_rng_below(kp_rng *r, uint64_t n);

/* Returns a standard normal deviate. */
double kp_rng_normal(kp_rng *r);

/* Shuffles n ints in place (Fisher-Yates). */
void kp_rng_shuffle_int(kp_rng *r, int *a, size_t n);

/* Shuffles n int64s in place (the same draws as kp_rng_shuffle_int). */
void kp_rng_shuffle_i64(kp_rng *r, int64_t *a, size_t n);

#endif

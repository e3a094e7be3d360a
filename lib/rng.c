/* rng.c - xoshiro256** seeded by splitmix64 (Blackman and Vigna). */
#include "rng.h"

#include <assert.h>
#include <math.h>

/* One splitmix64 step: advances *x and returns the mixed value. */
static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void kp_rng_seed(kp_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);   /* four distinct values: never all zero */
}

uint64_t kp_rng_derive(uint64_t seed, uint64_t stream)
{
    /* Each step is a bijection, so distinct streams of one seed get distinct seeds. */
    uint64_t x = stream;
    uint64_t y = seed ^ splitmix64(&x);
    return splitmix64(&y);
}

uint64_t kp_rng_next(kp_rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

double kp_rng_uniform(kp_rng *r)
{
    return (double)(kp_rng_next(r) >> 11) * 0x1.0p-53;
}

uint64_t kp_rng_below(kp_rng *r, uint64_t n)
{
    /* Lemire's multiply-and-reject: unbiased for every n > 0. */
    assert(n > 0);
    __uint128_t m = (__uint128_t)kp_rng_next(r) * n;
    uint64_t lo = (uint64_t)m;
    if (lo < n) {
        uint64_t threshold = -n % n;
        while (lo < threshold) {
            m = (__uint128_t)kp_rng_next(r) * n;
            lo = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

double kp_rng_normal(kp_rng *r)
{
    /* Box-Muller, one deviate per call (the state holds no spare). */
    double u1 = 1.0 - kp_rng_uniform(r);   /* (0, 1]: log is finite */
    double u2 = kp_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

void kp_rng_shuffle_int(kp_rng *r, int *a, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)kp_rng_below(r, i);
        int t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

void kp_rng_shuffle_i64(kp_rng *r, int64_t *a, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)kp_rng_below(r, i);
        int64_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

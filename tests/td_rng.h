/*
 * td_rng.h -- the seeded PRNG of the C tests: xoshiro256** seeded through
 * splitmix64, so that a failing randomised run replays from its seed.
 */
#ifndef TD_RNG_H
#define TD_RNG_H

#include <stdint.h>

typedef struct td_rng {
    uint64_t s[4];
} td_rng;

void td_rng_seed(td_rng *r, uint64_t seed);
uint64_t td_rng_next(td_rng *r);

#endif

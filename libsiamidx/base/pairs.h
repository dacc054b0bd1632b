/* base/pairs.h - reproducible randomness, images grouped by artist, pair sampling. */
#ifndef SX_BASE_PAIRS_H
#define SX_BASE_PAIRS_H

#include <stddef.h>
#include <stdint.h>

#include "siamidx.h"

/* xoshiro256** seeded through splitmix64: reproducible, no global state. */
typedef struct sx_rng {
    uint64_t s[4];
} sx_rng;

void sx_rng_seed(sx_rng *r, uint64_t seed);
uint64_t sx_rng_next(sx_rng *r);
double sx_rng_uniform(sx_rng *r);         /* [0, 1) */
size_t sx_rng_below(sx_rng *r, size_t n); /* [0, n), n > 0 */
void sx_shuffle(sx_rng *r, size_t *items, size_t n);

/* Images grouped by artist (CSR): group g holds items[start[g] .. start[g+1]). */
typedef struct sx_groups {
    size_t n_groups;
    size_t *start; /* n_groups + 1 */
    size_t *items; /* row numbers into the caller's embedding matrix */
    int32_t *label; /* artist id of each group */
    size_t n_pairable; /* groups with at least two images */
} sx_groups;

/* Groups rows[0..n) by label[rows[i]]; groups keep row order. */
siamidx_status sx_groups_build(const int32_t *label, const size_t *rows, size_t n,
                               sx_groups *g, siamidx_error *err);
void sx_groups_free(sx_groups *g);

typedef struct sx_pair {
    uint32_t a, b; /* rows */
    uint8_t same;
} sx_pair;

/*
 * Fills out[0..n): even slots same-artist, odd slots different-artist. The
 * artist (or artist pair) is drawn uniformly, then images uniformly inside
 * it, so the largest artists do not dominate and no image is discarded.
 * Needs a group with two images and two groups; returns 0 when impossible.
 */
size_t sx_sample_pairs(const sx_groups *g, size_t n, sx_rng *rng, sx_pair *out);

#endif /* SX_BASE_PAIRS_H */

/*
 * test_rand.h - the deterministic random numbers of the kernel tests
 * (test_conv, test_gemm, test_winograd): xorshift64, uniform in [-1, 1).
 * A test that wants its own stream sets test_rng before its first draw.
 * Header-only (static functions): each test includes it once.
 */
#ifndef SIAMIDX_TEST_RAND_H
#define SIAMIDX_TEST_RAND_H

#include <stdint.h>
#include <stdlib.h>

static uint64_t test_rng = 0x9e3779b97f4a7c15ull;

static inline float frand(void) {
    test_rng ^= test_rng << 13;
    test_rng ^= test_rng >> 7;
    test_rng ^= test_rng << 17;
    return (float)((test_rng >> 40) * (1.0 / (1 << 23)) - 1.0);
}

/* n floats of frand() * scale (a valid allocation also for n = 0). */
static inline float *rand_floats(size_t n, float scale) {
    float *v = malloc((n ? n : 1) * sizeof *v);
    for (size_t i = 0; v && i < n; i++) v[i] = frand() * scale;
    return v;
}

#endif /* SIAMIDX_TEST_RAND_H */

/*
 * index_fixture.h - what the index tests share: deterministic unit vectors,
 * opening a raw index (no model) on a directory, and verifying it.
 */
#ifndef SIAMIDX_TESTS_INDEX_FIXTURE_H
#define SIAMIDX_TESTS_INDEX_FIXTURE_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "check.h"
#include "siamidx.h"
#include "index/index.h"

/* A uniform draw in [-0.5, 0.5) from a 64-bit LCG (the same stream on every machine). */
static inline float fixture_frand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) & 0xffffff) / (float)0xffffff - 0.5f;
}

/* n unit vectors of dim floats (malloc'ed), deterministic in seed. */
static inline float *fixture_unit_vectors(size_t n, int dim, uint64_t seed) {
    float *v = malloc(n * (size_t)dim * sizeof *v);
    for (size_t i = 0; v && i < n; i++) {
        double norm = 0;
        for (int d = 0; d < dim; d++) {
            v[i * dim + d] = fixture_frand(&seed);
            norm += v[i * dim + d] * v[i * dim + d];
        }
        for (int d = 0; d < dim; d++) v[i * dim + d] /= (float)sqrt(norm);
    }
    return v;
}

/* An index of dim-float vectors under model fingerprint fp (created unless read_only). */
static inline siamidx_index *fixture_open_raw(const char *path, const char *fp, uint32_t dim,
                                              int read_only) {
    siamidx_index_options o;
    siamidx_index_options_init(&o);
    o.create = !read_only;
    o.read_only = read_only;
    siamidx_index *idx = NULL;
    siamidx_error err;
    if (sx_index_open_raw(path, fp, dim, "test", "avg", &o, &idx, &err))
        fprintf(stderr, "open %s: %s\n", path, err.message);
    return idx;
}

/* The problems `siamidx_index_verify` finds (99 when it cannot run: a failed CHECK too). */
static inline size_t fixture_problems(siamidx_index *idx) {
    size_t n = 99;
    siamidx_error err;
    CHECK(siamidx_index_verify(idx, NULL, NULL, &n, &err) == SIAMIDX_OK);
    return n;
}

#endif

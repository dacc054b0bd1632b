/*
 * pairs.c - reproducible randomness and artist-balanced pair sampling.
 *
 * Collections are very unbalanced (two artists hold a fifth of the
 * paintings), so pairs are drawn artist-first: a same-artist pair picks an
 * artist uniformly, a different-artist pair two distinct artists uniformly,
 * then images uniformly inside each artist. Small artists are seen as often
 * as large ones and every image of a large artist can still appear.
 */
#include <stdlib.h>
#include <string.h>

#include "base/pairs.h"
#include "base/error.h"

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void sx_rng_seed(sx_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t sx_rng_next(sx_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double sx_rng_uniform(sx_rng *r) { return (double)(sx_rng_next(r) >> 11) * 0x1.0p-53; }

size_t sx_rng_below(sx_rng *r, size_t n) {
    /* Lemire's multiply-shift; the bias for n << 2^64 is negligible here. */
    return (size_t)(((unsigned __int128)sx_rng_next(r) * n) >> 64);
}

void sx_shuffle(sx_rng *r, size_t *items, size_t n) {
    for (size_t i = n; i > 1; i--) {
        size_t j = sx_rng_below(r, i);
        size_t t = items[i - 1];
        items[i - 1] = items[j];
        items[j] = t;
    }
}


typedef struct {
    size_t row;
    int32_t label;
} labelled_row;

static int cmp_labelled(const void *pa, const void *pb) {
    const labelled_row *a = pa, *b = pb;
    if (a->label != b->label) return a->label < b->label ? -1 : 1;
    return a->row < b->row ? -1 : a->row > b->row;
}

siamidx_status sx_groups_build(const int32_t *label, const size_t *rows, size_t n,
                               sx_groups *g, siamidx_error *err) {
    memset(g, 0, sizeof *g);
    labelled_row *lr = malloc((n ? n : 1) * sizeof *lr);
    g->items = malloc((n ? n : 1) * sizeof *g->items);
    g->start = malloc((n + 1) * sizeof *g->start);
    g->label = malloc((n ? n : 1) * sizeof *g->label);
    if (!lr || !g->items || !g->start || !g->label) {
        free(lr);
        sx_groups_free(g);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "grouping %zu images by artist", n);
    }
    for (size_t i = 0; i < n; i++) lr[i] = (labelled_row){rows[i], label[rows[i]]};
    qsort(lr, n, sizeof *lr, cmp_labelled);
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || lr[i].label != lr[i - 1].label) {
            g->start[g->n_groups] = i;
            g->label[g->n_groups++] = lr[i].label;
        }
        g->items[i] = lr[i].row;
    }
    g->start[g->n_groups] = n;
    for (size_t k = 0; k < g->n_groups; k++)
        if (g->start[k + 1] - g->start[k] >= 2) g->n_pairable++;
    free(lr);
    return SIAMIDX_OK;
}

void sx_groups_free(sx_groups *g) {
    free(g->start);
    free(g->items);
    free(g->label);
    memset(g, 0, sizeof *g);
}

static size_t group_size(const sx_groups *g, size_t k) { return g->start[k + 1] - g->start[k]; }

static size_t pick_in(const sx_groups *g, size_t k, sx_rng *rng) {
    return g->items[g->start[k] + sx_rng_below(rng, group_size(g, k))];
}

static size_t pick_pairable_group(const sx_groups *g, sx_rng *rng) {
    size_t want = sx_rng_below(rng, g->n_pairable);
    for (size_t k = 0; k < g->n_groups; k++)
        if (group_size(g, k) >= 2 && want-- == 0) return k;
    return 0; /* unreachable while n_pairable counts correctly */
}

size_t sx_sample_pairs(const sx_groups *g, size_t n, sx_rng *rng, sx_pair *out) {
    if (g->n_pairable == 0 || g->n_groups < 2) return 0;
    for (size_t i = 0; i < n; i++) {
        if (i % 2 == 0) {
            size_t k = pick_pairable_group(g, rng), sz = group_size(g, k);
            size_t x = sx_rng_below(rng, sz), y = sx_rng_below(rng, sz - 1);
            if (y >= x) y++;
            out[i] = (sx_pair){(uint32_t)g->items[g->start[k] + x],
                               (uint32_t)g->items[g->start[k] + y], 1};
        } else {
            size_t ka = sx_rng_below(rng, g->n_groups), kb = sx_rng_below(rng, g->n_groups - 1);
            if (kb >= ka) kb++;
            out[i] = (sx_pair){(uint32_t)pick_in(g, ka, rng), (uint32_t)pick_in(g, kb, rng), 0};
        }
    }
    return n;
}

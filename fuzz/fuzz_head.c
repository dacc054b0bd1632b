/*
 * fuzz_head.c - the head blob an index stores (meta DB "blob/head").
 *
 * Internal functions used (module headers; head.c, answer.c):
 *   struct siamidx_head (dim, n_feat), sx_head_to_blob, sx_attribute
 * Public: siamidx_head_from_blob, siamidx_head_free, siamidx_head_dim,
 *   siamidx_pair_embeddings
 *
 * A blob that parses must give a head that scores pairs: probabilities in
 * [0, 1] for any pair of unit embeddings, symmetric in the two images, and
 * an attribution whose artist shares and "unknown" share are probabilities
 * summing to one. It must also survive a round trip through sx_head_to_blob.
 */
#include <math.h>

#include "fuzz_util.h"
#include "head/head.h"
#include "head/attribution.h"

#define N_CAND 5
#define N_ARTISTS 3

/* A deterministic unit vector, different for each k. */
static void unit(float *v, int dim, unsigned k) {
    double ss = 0;
    uint32_t x = 2463534242u ^ (k * 2654435761u);
    for (int i = 0; i < dim; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        v[i] = (float)((double)(x >> 8) / (1 << 24) - 0.5);
        ss += (double)v[i] * v[i];
    }
    for (int i = 0; i < dim; i++) v[i] = ss > 0 ? (float)(v[i] / sqrt(ss)) : 0;
}

static void check_pairs(const siamidx_head *h) {
    int dim = (int)siamidx_head_dim(h);
    float *e = malloc((size_t)(N_CAND + 1) * dim * sizeof *e);
    if (!e) abort();
    for (int k = 0; k <= N_CAND; k++) unit(e + (size_t)k * dim, dim, (unsigned)k);
    siamidx_error err;
    siamidx_pair_result ab, ba;
    FUZZ_CHECK(siamidx_pair_embeddings(h, e, e + dim, (size_t)dim, &ab, &err) == SIAMIDX_OK, "%s",
               err.message);
    FUZZ_CHECK(siamidx_pair_embeddings(h, e + dim, e, (size_t)dim, &ba, &err) == SIAMIDX_OK, "%s",
               err.message);
    FUZZ_CHECK(ab.probability >= 0 && ab.probability <= 1, "pair probability %g", ab.probability);
    FUZZ_CHECK(ab.probability == ba.probability, "P(a,b) %g != P(b,a) %g", ab.probability,
               ba.probability);
    FUZZ_CHECK(siamidx_pair_embeddings(h, e, e, (size_t)dim + 1, &ab, &err) ==
                   SIAMIDX_ERR_MODEL_MISMATCH, "wrong dimension accepted");

    const float *cand[N_CAND];
    int32_t artist[N_CAND];
    float pair_prob[N_CAND];
    double artist_prob[N_ARTISTS], unknown;
    for (int k = 0; k < N_CAND; k++) {
        cand[k] = e + (size_t)(k + 1) * dim;
        artist[k] = k % N_ARTISTS;
    }
    FUZZ_CHECK(sx_attribute(h, e, cand, artist, N_CAND, N_ARTISTS, pair_prob, artist_prob, &unknown,
                            &err) == SIAMIDX_OK, "%s", err.message);
    double sum = unknown;
    FUZZ_CHECK(unknown >= 0 && unknown <= 1, "unknown share %g", unknown);
    for (int a = 0; a < N_ARTISTS; a++) {
        FUZZ_CHECK(artist_prob[a] >= 0 && artist_prob[a] <= 1, "artist %d share %g", a, artist_prob[a]);
        sum += artist_prob[a];
    }
    FUZZ_CHECK(fabs(sum - 1) < 1e-6, "shares sum to %g", sum);
    for (int k = 0; k < N_CAND; k++)
        FUZZ_CHECK(pair_prob[k] >= 0 && pair_prob[k] <= 1, "candidate %d probability %g", k, pair_prob[k]);
    free(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    siamidx_head *h = NULL;
    siamidx_error err;
    siamidx_status s = siamidx_head_from_blob(data, size, &h, &err);
    fx_say("head", s, err.message);
    if (s != SIAMIDX_OK) {
        FUZZ_CHECK(s == SIAMIDX_ERR_INDEX_CORRUPT && h == NULL, "status %d: %s", s, err.message);
        return 0;
    }
    check_pairs(h);
    /* Round trip: what we write we read back, to the same head. */
    uint8_t *blob;
    size_t len;
    FUZZ_CHECK(sx_head_to_blob(h, &blob, &len, &err) == SIAMIDX_OK, "%s", err.message);
    siamidx_head *h2 = NULL;
    FUZZ_CHECK(siamidx_head_from_blob(blob, len, &h2, &err) == SIAMIDX_OK, "round trip: %s",
               err.message);
    FUZZ_CHECK(h2->dim == h->dim && h2->features == h->features &&
                   !memcmp(h2->w, h->w, (size_t)h->n_feat * sizeof *h->w) &&
                   !memcmp(h2->mean, h->mean, (size_t)h->dim * sizeof *h->mean),
               "round trip changed the head");
    free(blob);
    siamidx_head_free(h2);
    siamidx_head_free(h);
    return 0;
}

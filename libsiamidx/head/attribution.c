/*
 * attribution.c - which artist painted this picture, or none of the candidates.
 *
 * Attribution scores each query-candidate pair with the head and sums the
 * evidence per artist against an "unknown" alternative:
 *
 *   P(a) = sum_{i by a} exp(s l_i) / (exp(u) + sum_j exp(s l_j))
 *
 * with l_i the calibrated pair logits. s and u are fitted on validation
 * queries, each asked twice: with its artist in the index, and with its
 * artist removed, which is what a painting by an unindexed artist looks
 * like. So a stranger gets a low top probability instead of a confident
 * wrong name, and the artist probabilities never sum past 1.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "head/attribution.h"
#include "head/head.h"
#include "head/nearest.h"

size_t sx_attr_candidates(size_t k) { return k * 10 > 50 ? k * 10 : 50; }

double sx_aggregate(const float *logit, const int32_t *artist, size_t n, float scale,
                    float unknown, int n_artists, double *artist_prob) {
    memset(artist_prob, 0, (size_t)n_artists * sizeof *artist_prob);
    double m = unknown;
    for (size_t i = 0; i < n; i++)
        if ((double)scale * logit[i] > m) m = (double)scale * logit[i];
    double total = exp(unknown - m);
    for (size_t i = 0; i < n; i++) {
        double e = exp((double)scale * logit[i] - m);
        if (artist[i] >= 0 && artist[i] < n_artists) artist_prob[artist[i]] += e;
        total += e;
    }
    for (int a = 0; a < n_artists; a++) artist_prob[a] /= total;
    return exp(unknown - m) / total;
}

siamidx_status sx_attribute(const sx_head *h, const float *query, const float *const *cand_emb,
                            const int32_t *cand_artist, size_t n, int n_artists, float *pair_prob,
                            double *artist_prob, double *p_unknown, siamidx_error *err) {
    size_t dim = (size_t)h->dim;
    float *buf = malloc((2 * dim + (size_t)h->n_feat + n + 1) * sizeof(float));
    if (!buf) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "attribution: out of memory");
    float *zq = buf, *zc = zq + dim, *feat = zc + dim, *logit = feat + h->n_feat;
    sx_head_project(h, query, zq);
    for (size_t i = 0; i < n; i++) {
        sx_head_project(h, cand_emb[i], zc);
        logit[i] = sx_head_logit(h, zq, zc, feat);
        if (pair_prob) pair_prob[i] = sx_sigmoid(logit[i]);
    }
    *p_unknown = sx_aggregate(logit, cand_artist, n, h->attr_scale, h->attr_unknown, n_artists,
                              artist_prob);
    free(buf);
    return SIAMIDX_OK;
}

/* Calibrated logits of query q against candidate rows. */
void sx_candidate_logits(const sx_head *h, const sx_train_data *d, size_t q,
                             const size_t *rows, size_t n, float *logit, int32_t *artist,
                             float *scratch) {
    size_t dim = (size_t)h->dim;
    float *zq = scratch, *zc = zq + dim, *feat = zc + dim;
    sx_head_project(h, d->emb + q * dim, zq);
    for (size_t i = 0; i < n; i++) {
        sx_head_project(h, d->emb + rows[i] * dim, zc);
        logit[i] = sx_head_logit(h, zq, zc, feat);
        artist[i] = d->artist[rows[i]];
    }
}

typedef struct {
    size_t nq, m;
    float *logit_known, *logit_unknown; /* nq * m */
    int32_t *art_known, *art_unknown;
    size_t *n_unknown; /* candidates left once the query's artist is removed */
    int32_t *truth;
} fit_cases;

static double fit_loss(const fit_cases *c, float s, float u, int n_artists, double *prob) {
    double loss = 0;
    for (size_t q = 0; q < c->nq; q++) {
        sx_aggregate(c->logit_known + q * c->m, c->art_known + q * c->m, c->m, s, u, n_artists,
                     prob);
        loss -= log(prob[c->truth[q]] + 1e-6);
        double pu = sx_aggregate(c->logit_unknown + q * c->m, c->art_unknown + q * c->m,
                                 c->n_unknown[q], s, u, n_artists, prob);
        loss -= log(pu + 1e-6);
    }
    return loss / (2.0 * (double)c->nq);
}

siamidx_status sx_attribution_fit(sx_head *h, const sx_train_data *d, const uint8_t *roles,
                                  siamidx_error *err) {
    size_t *rows = malloc(d->n * 2 * sizeof *rows);
    if (!rows) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "attribution fit: out of memory");
    size_t *qs = rows, *gal = rows + d->n;
    size_t nq = sx_rows_with_role(roles, d->n, 1u << SX_ROLE_VAL, qs);
    size_t ng = sx_rows_with_role(roles, d->n, 1u << SX_ROLE_TRAIN, gal);
    size_t m = sx_attr_candidates(5), wide = 3 * m;
    if (wide > ng) wide = ng;
    if (m > ng) m = ng;
    fit_cases c = {.nq = nq, .m = m};
    size_t *nn = malloc((nq ? nq : 1) * (wide ? wide : 1) * sizeof *nn);
    c.logit_known = malloc((nq * m + 1) * sizeof(float));
    c.logit_unknown = malloc((nq * m + 1) * sizeof(float));
    c.art_known = malloc((nq * m + 1) * sizeof(int32_t));
    c.art_unknown = malloc((nq * m + 1) * sizeof(int32_t));
    c.n_unknown = malloc((nq + 1) * sizeof(size_t));
    c.truth = malloc((nq + 1) * sizeof(int32_t));
    size_t *kept = malloc((wide + 1) * sizeof *kept);
    float *scratch = malloc((2 * (size_t)h->dim + (size_t)h->n_feat) * sizeof(float));
    double *prob = malloc(((size_t)d->n_artists + 1) * sizeof(double));
    siamidx_status st = SIAMIDX_OK;
    if (!nn || !c.logit_known || !c.logit_unknown || !c.art_known || !c.art_unknown ||
        !c.n_unknown || !c.truth || !kept || !scratch || !prob)
        st = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "attribution fit: out of memory");
    if (!st && nq && m) st = sx_nearest(d, qs, nq, gal, ng, wide, nn, err);
    if (!st && nq && m) {
        for (size_t q = 0; q < nq; q++) {
            const size_t *cand = nn + q * wide;
            c.truth[q] = d->artist[qs[q]];
            sx_candidate_logits(h, d, qs[q], cand, m, c.logit_known + q * m, c.art_known + q * m,
                             scratch);
            size_t k = 0;
            for (size_t i = 0; i < wide && k < m; i++)
                if (d->artist[cand[i]] != c.truth[q]) kept[k++] = cand[i];
            c.n_unknown[q] = k;
            sx_candidate_logits(h, d, qs[q], kept, k, c.logit_unknown + q * m,
                             c.art_unknown + q * m, scratch);
        }
        /* Coarse grid, then a finer look at the unknown logit around the best. */
        static const float scales[] = {0.25f, 0.35f, 0.5f, 0.7f, 1.0f, 1.4f, 2.0f, 2.8f, 4.0f};
        double best = INFINITY;
        for (size_t si = 0; si < sizeof scales / sizeof scales[0]; si++)
            for (float u = -10; u <= 20; u += 1) {
                double l = fit_loss(&c, scales[si], u, d->n_artists, prob);
                if (l < best) best = l, h->attr_scale = scales[si], h->attr_unknown = u;
            }
        float u0 = h->attr_unknown;
        for (float u = u0 - 1; u <= u0 + 1; u += 0.1f) {
            double l = fit_loss(&c, h->attr_scale, u, d->n_artists, prob);
            if (l < best) best = l, h->attr_unknown = u;
        }
    }
    free(rows), free(nn), free(c.logit_known), free(c.logit_unknown), free(c.art_known);
    free(c.art_unknown), free(c.n_unknown), free(c.truth), free(kept), free(scratch), free(prob);
    return st;
}

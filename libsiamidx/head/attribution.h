/* head/attribution.h - which artist: pair scores aggregated per artist against "unknown". */
#ifndef SX_HEAD_ATTRIBUTION_H
#define SX_HEAD_ATTRIBUTION_H

#include <stddef.h>
#include <stdint.h>

#include "siamidx.h"
#include "head/head.h"
#include "head/labelled.h"

size_t sx_attr_candidates(size_t k);

/*
 * Per-artist aggregation of candidates' calibrated pair logits l_i:
 *   P(artist a) = sum_{i by a} exp(s l_i) / (exp(u) + sum_j exp(s l_j)),
 *   P(unknown)  = exp(u) / (...), so the artists sum to at most 1.
 * artist_prob (n_artists, zeroed here) receives P(a); returns P(unknown).
 */
double sx_aggregate(const float *logit, const int32_t *artist, size_t n, float scale,
                    float unknown, int n_artists, double *artist_prob);

/*
 * Scores a query against candidates (raw embeddings, dim floats each) and
 * aggregates: pair_prob[i] (may be NULL) the candidate's calibrated
 * probability, artist_prob[n_artists] the artists, *p_unknown the rest.
 */
siamidx_status sx_attribute(const sx_head *h, const float *query, const float *const *cand_emb,
                            const int32_t *cand_artist, size_t n, int n_artists, float *pair_prob,
                            double *artist_prob, double *p_unknown, siamidx_error *err);

/*
 * Fits attr_scale and attr_unknown on validation queries (role VAL) against
 * the training images: each query once with its artist among the candidates
 * and once with its artist removed (standing for an artist not indexed).
 */
siamidx_status sx_attribution_fit(sx_head *h, const sx_train_data *d, const uint8_t *roles,
                                  siamidx_error *err);


/* Calibrated logits of row q of d against candidate rows (artist[] receives
   their artists); scratch holds 2 * dim + n_feat floats. */
void sx_candidate_logits(const sx_head *h, const sx_train_data *d, size_t q, const size_t *rows,
                         size_t n, float *logit, int32_t *artist, float *scratch);

#endif /* SX_HEAD_ATTRIBUTION_H */

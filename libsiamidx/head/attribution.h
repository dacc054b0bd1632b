/* head/attribution.h - which artist: pair scores aggregated per artist against "unknown". */
#ifndef SX_HEAD_ATTRIBUTION_H
#define SX_HEAD_ATTRIBUTION_H

#include <stddef.h>
#include <stdint.h>

#include "siamidx.h"
#include "head/classifier.h"
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

/* sx_attribute fused with a classifier (c NULL: sx_attribute); see sx_fuse. */
siamidx_status sx_attribute_fused(const sx_head *h, const sx_classifier *c,
                                  const double *class_logp, const int32_t *class_of,
                                  const float *query, const float *const *cand_emb,
                                  const int32_t *cand_artist, size_t n, int n_artists,
                                  float *pair_prob, double *artist_prob, double *p_unknown,
                                  siamidx_error *err);

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

/* ---- the fused answer: classifier + neighbours, against an explicit prior ---- */

/*
 * The one function every answer (query, the protocol, the fit) computes
 * artists and "unknown" with. Inputs are in the caller's artist space
 * (0 .. n_artists-1): the candidates' calibrated pair logits and artists
 * (best first or not), and, with a classifier c, class_of[a] (the artist's
 * class, -1: none) and class_logp[n_classes] (sx_classifier_log_prob of the
 * query; -INFINITY: that class left out).
 *
 * Without a classifier: sx_aggregate with the head's attr_scale/attr_unknown
 * (the answer before the classifier existed). With one:
 *   pn(a) = sum_{i by a} exp(s l_i) / sum_j exp(s l_j)     neighbour evidence
 *   pc(a) = exp(class_logp[class_of[a]])                    classifier
 *   pf(a) = softmax_a(w log max(pc, 1e-6) + (1-w) log max(pn, 1e-6))
 * over the artists with either evidence (the rest get 0), and
 *   logit P(unknown) = b + t log max_a pf(a) + q l_max + log(prior/(1-prior))
 * with l_max the top candidate's pair logit: a likelihood ratio fitted on
 * validation queries asked with and without their artist (equal numbers, so
 * the fit's own prior odds are 1), times the prior odds -- Bayes' rule.
 * artist_prob[a] = (1 - P(unknown)) pf(a); returns P(unknown).
 */
double sx_fuse(const sx_head *h, const sx_classifier *c, const double *class_logp,
               const int32_t *class_of, const float *logit, const int32_t *artist, size_t n,
               int n_artists, double *artist_prob);

/*
 * Fits c's fusion weight and unknown evidence (c fitted on the TRAIN rows of
 * d, h's attribution already fitted): validation queries against the
 * training images, each once with its artist indexed and once with it
 * removed from both the candidates and the classifier.
 */
siamidx_status sx_fusion_fit(sx_classifier *c, const sx_head *h, const sx_train_data *d,
                             const uint8_t *roles, siamidx_error *err);

/* class_of[a] for each of d's artists by name (-1: not a class of c). */
void sx_classes_of(const sx_classifier *c, const sx_train_data *d, int32_t *class_of);

#endif /* SX_HEAD_ATTRIBUTION_H */

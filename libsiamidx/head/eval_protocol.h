/*
 * eval_protocol.h - the evaluation protocol as pure functions: which pairs
 * and queries are asked, and what the answers score. Nothing here reads an
 * index; eval_index.c (the answer layer) feeds it arrays of labels and
 * scores. See docs/evaluation.md for the protocol and why it is built so.
 */
#ifndef SIAMIDX_EVAL_PROTOCOL_H
#define SIAMIDX_EVAL_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#include "siamidx.h"

/* What the protocol knows of one image: dense ids, any non-negative values. */
typedef struct sx_ep_item {
    int32_t artist;
    int32_t source; /* the collection's source_repo */
    int32_t style;  /* source_repo + top folder of source_path: one id per (source, folder) */
} sx_ep_item;

typedef struct sx_ep_pair {
    uint32_t a, b; /* rows; in a negative, a is the anchor taken from the positive */
} sx_ep_pair;

/*
 * Same-artist pairs and two negative sets of the same size. Positive i
 * belongs to artist order[i % P] (P artists with two images or more, in a
 * seeded order: round-robin, so no artist dominates); negatives i of both
 * sets keep one image of positive i (the anchor, drawn at random) and pair it
 * with an image by another artist
 *   neg_source: from the anchor's source,
 *   neg_style:  from the anchor's source and style folder.
 * Where neg_style has no candidate it is drawn as neg_source is
 * (style_fallback counts those); where the source has no other artist
 * either, from any other artist (source_fallback counts each set's).
 */
typedef struct sx_ep_pairs {
    size_t n;
    sx_ep_pair *pos, *neg_source, *neg_style;
    uint8_t *style_fell_back;  /* [n]: neg_style[i] is not same-style */
    uint8_t *source_fell_back; /* [n]: bit 0 neg_source[i], bit 1 neg_style[i] not same-source */
    size_t style_fallback, source_fallback;
} sx_ep_pairs;

/*
 * Draws n_pos positives (and n_pos of each negative) among rows[0..n_rows)
 * of items, deterministically in seed. Fewer than two artists with two
 * images each, or no artist to pair against: out->n = 0 (not an error).
 */
siamidx_status sx_ep_draw_pairs(const sx_ep_item *items, const size_t *rows, size_t n_rows,
                                size_t n_pos, uint64_t seed, sx_ep_pairs *out,
                                siamidx_error *err);
void sx_ep_pairs_free(sx_ep_pairs *p);

/* Verification of positive scores against negative scores (probabilities). */
typedef struct sx_ep_verification {
    size_t n_pos, n_neg;
    double auc;      /* ties count half; NaN without both classes */
    double eer;      /* NaN without both classes */
    double tar_far1; /* true accept rate at 1% false accepts; NaN without both classes */
    double ece;      /* 10 equal-width bins over all pairs; NaN without pairs */
} sx_ep_verification;

void sx_ep_verify(const float *pos, size_t n_pos, const float *neg, size_t n_neg,
                  sx_ep_verification *out);

/*
 * Rank of the truth among named artists (0: first) from their
 * probabilities: artists strictly above it plus those tied with it (ties go
 * against the truth). -1 when the truth has no probability at all (none of
 * its images among the candidates).
 */
int32_t sx_ep_rank(const double *prob, int n_artists, int32_t truth);

/* One attribution query, as scored. */
typedef struct sx_ep_query {
    int32_t truth;    /* artist id, < n_artists */
    int32_t rank;     /* sx_ep_rank; -1: not named at all */
    double p_unknown; /* the "an artist not in the index" share */
    double p_top;     /* the best named artist's probability */
    int32_t top;      /* that artist (-1: none named): what reports call a confusion */
} sx_ep_query;

typedef struct sx_ep_attribution {
    size_t n_queries, n_artists; /* artists: distinct truths among the queries */
    double top1, top3;
    double balanced_top1; /* mean over those artists of their top-1 recall */
    double unknown_first; /* share where unknown outranks every named artist */
    double mean_unknown;
} sx_ep_attribution;

/* NaN for every rate when n == 0. n_artists bounds the truth ids. */
siamidx_status sx_ep_attribute(const sx_ep_query *q, size_t n, int n_artists,
                               sx_ep_attribution *out, siamidx_error *err);

/*
 * Open set: AUROC of the unknown share separating queries by artists not in
 * the index (positives) from queries by indexed artists; ties count half.
 * NaN when either side is empty.
 */
double sx_ep_open_set_auroc(const double *unknown_indexed, size_t n_indexed,
                            const double *unknown_stranger, size_t n_stranger);

#endif

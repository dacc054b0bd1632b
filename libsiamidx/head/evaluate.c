/*
 * evaluate.c - a head measured on the images its training held out: pair
 * verification among TEST images (seen artists) and among UNSEEN images
 * (held-out artists), and attribution of both against the TRAIN+VAL images
 * (the rest of an index), with the same candidates a query scores.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/metrics.h"
#include "base/pairs.h"
#include "head/attribution.h"
#include "head/evaluate.h"
#include "head/nearest.h"

/* Metrics nothing measured are NaN (JSON null), never 0: 0 is a measurement. */
static void pairs_unmeasured(sx_pair_eval *out) {
    memset(out, 0, sizeof *out);
    out->auc = out->accuracy = out->eer = out->tar_at_far1 = out->ece = NAN;
}

static void attribution_unmeasured(sx_attr_eval *out) {
    memset(out, 0, sizeof *out);
    out->top1 = out->top3 = out->balanced = out->unknown_first = out->mean_top_prob = NAN;
}

static siamidx_status eval_pairs(const sx_head *h, const sx_train_data *d, const uint8_t *roles,
                                 int role, uint64_t seed, sx_pair_eval *out, siamidx_error *err) {
    pairs_unmeasured(out); /* stays so when the images allow no same/different pairs */
    size_t *rows = malloc((d->n + 1) * sizeof *rows);
    if (!rows) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "evaluation: out of memory");
    size_t nr = sx_rows_with_role(roles, d->n, 1u << role, rows);
    sx_groups g;
    siamidx_status st = sx_groups_build(d->artist, rows, nr, &g, err);
    free(rows);
    if (st) return st;
    const size_t n = 20000;
    sx_pair *pairs = malloc(n * sizeof *pairs);
    float *prob = malloc(n * sizeof *prob);
    uint8_t *label = malloc(n);
    float *scratch = malloc((4 * (size_t)h->dim + (size_t)h->n_feat) * sizeof(float));
    if (!pairs || !prob || !label || !scratch) {
        st = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "evaluation: out of memory");
    } else {
        sx_rng rng;
        sx_rng_seed(&rng, seed ^ (0x6576616cull + (uint64_t)role));
        if (sx_sample_pairs(&g, n, &rng, pairs) == n) {
            float *za = scratch, *zb = za + h->dim, *feat = zb + h->dim;
            for (size_t i = 0; i < n; i++) {
                sx_head_project(h, d->emb + (size_t)pairs[i].a * h->dim, za);
                sx_head_project(h, d->emb + (size_t)pairs[i].b * h->dim, zb);
                prob[i] = sx_sigmoid(sx_head_logit(h, za, zb, feat));
                label[i] = pairs[i].same;
            }
            out->n_pairs = n;
            out->auc = sx_roc_auc(prob, label, n);
            out->accuracy = sx_accuracy_at(prob, label, n, h->threshold);
            out->eer = sx_eer(prob, label, n);
            out->tar_at_far1 = sx_tar_at_far(prob, label, n, 0.01);
            out->ece = sx_ece(prob, label, n, 10);
        }
    }
    free(pairs), free(prob), free(label), free(scratch);
    sx_groups_free(&g);
    return st;
}

static siamidx_status eval_attribution(const sx_head *h, const sx_train_data *d,
                                       const uint8_t *roles, int role, sx_attr_eval *out,
                                       siamidx_error *err) {
    attribution_unmeasured(out); /* stays so without queries or gallery */
    size_t *rows = malloc((2 * d->n + 1) * sizeof *rows);
    if (!rows) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "evaluation: out of memory");
    size_t *qs = rows, *gal = rows + d->n;
    size_t nq = sx_rows_with_role(roles, d->n, 1u << role, qs);
    size_t ng = sx_rows_with_role(roles, d->n, (1u << SX_ROLE_TRAIN) | (1u << SX_ROLE_VAL), gal);
    size_t m = sx_attr_candidates(5) < ng ? sx_attr_candidates(5) : ng;
    size_t na = (size_t)d->n_artists;
    size_t *nn = malloc((nq * m + 1) * sizeof *nn);
    float *logit = malloc((m + 1) * sizeof *logit);
    int32_t *art = malloc((m + 1) * sizeof *art);
    float *scratch = malloc((2 * (size_t)h->dim + (size_t)h->n_feat) * sizeof(float));
    double *prob = malloc((na + 1) * sizeof *prob);
    size_t *hit = calloc(na + 1, sizeof *hit), *seen = calloc(na + 1, sizeof *seen);
    siamidx_status st = SIAMIDX_OK;
    if (!nn || !logit || !art || !scratch || !prob || !hit || !seen)
        st = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "evaluation: out of memory");
    if (!st && nq && m) st = sx_nearest(d, qs, nq, gal, ng, m, nn, err);
    if (!st && nq && m) {
        size_t top1 = 0, top3 = 0, unk = 0;
        double top_prob = 0;
        for (size_t q = 0; q < nq; q++) {
            sx_candidate_logits(h, d, qs[q], nn + q * m, m, logit, art, scratch);
            double pu = sx_aggregate(logit, art, m, h->attr_scale, h->attr_unknown,
                                     d->n_artists, prob);
            int32_t truth = d->artist[qs[q]];
            size_t better = 0; /* artists ranked above the truth */
            double pmax = 0;
            for (size_t a = 0; a < na; a++) {
                if (prob[a] > prob[truth]) better++;
                if (prob[a] > pmax) pmax = prob[a];
            }
            top1 += better == 0 && prob[truth] > 0;
            top3 += better < 3 && prob[truth] > 0;
            hit[truth] += better == 0 && prob[truth] > 0;
            seen[truth]++;
            unk += pu > pmax;
            top_prob += pmax;
        }
        double bal = 0;
        size_t nart = 0;
        for (size_t a = 0; a < na; a++)
            if (seen[a]) bal += (double)hit[a] / seen[a], nart++;
        out->n_queries = nq;
        out->top1 = (double)top1 / nq;
        out->top3 = (double)top3 / nq;
        out->balanced = nart ? bal / nart : NAN;
        out->unknown_first = (double)unk / nq;
        out->mean_top_prob = top_prob / nq;
    }
    free(rows), free(nn), free(logit), free(art), free(scratch), free(prob), free(hit);
    free(seen);
    return st;
}

siamidx_status sx_evaluate(const sx_head *h, const sx_train_data *d, const uint8_t *roles,
                           uint64_t seed, sx_eval *out, siamidx_error *err) {
    memset(out, 0, sizeof *out);
    if (d->dim != h->dim)
        return sx_fail(err, SIAMIDX_ERR_MODEL_MISMATCH,
                       "the head expects %d-dimensional embeddings, the index holds %d", h->dim,
                       d->dim);
    out->threshold = h->threshold;
    for (size_t i = 0; i < d->n; i++) out->has_unseen |= roles[i] == SX_ROLE_UNSEEN;
    siamidx_status st = eval_pairs(h, d, roles, SX_ROLE_TEST, seed, &out->seen, err);
    if (!st) st = eval_attribution(h, d, roles, SX_ROLE_TEST, &out->seen_attr, err);
    if (!st && out->has_unseen) st = eval_pairs(h, d, roles, SX_ROLE_UNSEEN, seed, &out->unseen, err);
    if (!st && out->has_unseen)
        st = eval_attribution(h, d, roles, SX_ROLE_UNSEEN, &out->unseen_attr, err);
    return st;
}

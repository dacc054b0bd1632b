/*
 * answer.c - the answers a user asks for: is this pair by one artist, and
 * which indexed artist painted this picture (or none of them).
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
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

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

/* ---- brute-force retrieval (evaluation and fitting) ---------------------- */

/*
 * For each of nq query rows, the m gallery rows with the largest inner
 * product of raw embeddings, best first: what a flat inner-product FAISS
 * index returns for L2-normalised embeddings.
 */
static siamidx_status nearest(const sx_train_data *d, const size_t *queries, size_t nq,
                              const size_t *gallery, size_t ng, size_t m, size_t *out,
                              siamidx_error *err) {
    const size_t block = 64, dim = (size_t)d->dim;
    if (m > ng) m = ng;
    float *G = malloc(ng * dim * sizeof(float)), *Q = malloc(block * dim * sizeof(float));
    float *S = malloc(block * ng * sizeof(float)), *best = malloc(m * sizeof(float) + 1);
    if (!G || !Q || !S || !best) {
        free(G), free(Q), free(S), free(best);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "retrieval: out of memory (%zu images)", ng);
    }
    for (size_t j = 0; j < ng; j++) memcpy(G + j * dim, d->emb + gallery[j] * dim, dim * 4);
    for (size_t q0 = 0; q0 < nq; q0 += block) {
        size_t nb = nq - q0 < block ? nq - q0 : block;
        for (size_t i = 0; i < nb; i++) memcpy(Q + i * dim, d->emb + queries[q0 + i] * dim, dim * 4);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb, (int)ng, (int)dim, 1.0f, Q,
                    (int)dim, G, (int)dim, 0.0f, S, (int)ng);
        for (size_t i = 0; i < nb; i++) {
            size_t *o = out + (q0 + i) * m, have = 0;
            const float *s = S + i * ng;
            for (size_t j = 0; j < ng; j++) {
                if (gallery[j] == queries[q0 + i]) continue; /* never its own neighbour */
                if (have == m && s[j] <= best[m - 1]) continue;
                size_t k = have < m ? have++ : m - 1;
                while (k > 0 && best[k - 1] < s[j]) {
                    best[k] = best[k - 1];
                    o[k] = o[k - 1];
                    k--;
                }
                best[k] = s[j];
                o[k] = gallery[j];
            }
            for (size_t k = have; k < m; k++) o[k] = o[have ? have - 1 : 0];
        }
    }
    free(G), free(Q), free(S), free(best);
    return SIAMIDX_OK;
}

static size_t rows_with_role(const uint8_t *roles, size_t n, unsigned mask, size_t *out) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (mask & (1u << roles[i])) out[k++] = i;
    return k;
}

/* Calibrated logits of query q against candidate rows. */
static void candidate_logits(const sx_head *h, const sx_train_data *d, size_t q,
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
    size_t nq = rows_with_role(roles, d->n, 1u << SX_ROLE_VAL, qs);
    size_t ng = rows_with_role(roles, d->n, 1u << SX_ROLE_TRAIN, gal);
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
    if (!st && nq && m) st = nearest(d, qs, nq, gal, ng, wide, nn, err);
    if (!st && nq && m) {
        for (size_t q = 0; q < nq; q++) {
            const size_t *cand = nn + q * wide;
            c.truth[q] = d->artist[qs[q]];
            candidate_logits(h, d, qs[q], cand, m, c.logit_known + q * m, c.art_known + q * m,
                             scratch);
            size_t k = 0;
            for (size_t i = 0; i < wide && k < m; i++)
                if (d->artist[cand[i]] != c.truth[q]) kept[k++] = cand[i];
            c.n_unknown[q] = k;
            candidate_logits(h, d, qs[q], kept, k, c.logit_unknown + q * m,
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

/* ---- roles from the split record ------------------------------------------ */

/* The value of `key=` in info, up to the end of its line (not NUL-terminated). */
static const char *info_value(const char *info, const char *key, size_t *len) {
    size_t kl = strlen(key);
    for (const char *p = info; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        if (n > kl && !strncmp(p, key, kl) && p[kl] == '=') {
            *len = n - kl - 1;
            return p + kl + 1;
        }
        p = nl ? nl + 1 : NULL;
    }
    return NULL;
}

static int in_tab_list(const char *list, size_t len, const char *name) {
    size_t nl = strlen(name);
    for (size_t i = 0; i < len;) {
        const char *tab = memchr(list + i, '\t', len - i);
        size_t n = tab ? (size_t)(tab - (list + i)) : len - i;
        if (n == nl && !memcmp(list + i, name, n)) return 1;
        i += n + 1;
    }
    return 0;
}

typedef struct {
    const char *s;
    size_t n;
} span;

static int cmp_span(const void *pa, const void *pb) {
    const span *a = pa, *b = pb;
    size_t n = a->n < b->n ? a->n : b->n;
    int c = memcmp(a->s, b->s, n);
    return c ? c : (a->n > b->n) - (a->n < b->n);
}

/* Sorted spans of a tab-separated list, for binary search. */
static span *split_tabs(const char *list, size_t len, size_t *count) {
    size_t n = len ? 1 : 0;
    for (size_t i = 0; i < len; i++) n += list[i] == '\t';
    span *s = malloc((n + 1) * sizeof *s);
    if (!s) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < len && k < n;) {
        const char *tab = memchr(list + i, '\t', len - i);
        size_t m = tab ? (size_t)(tab - (list + i)) : len - i;
        s[k++] = (span){list + i, m};
        i += m + 1;
    }
    qsort(s, k, sizeof *s, cmp_span);
    *count = k;
    return s;
}

siamidx_status sx_head_roles(const sx_head *h, const sx_train_data *d, uint8_t *roles,
                             siamidx_error *err) {
    size_t lu = 0, lv = 0, lt = 0;
    const char *info = h->info ? h->info : "";
    const char *unseen = info_value(info, "unseen_artists", &lu);
    const char *val = info_value(info, "val_images", &lv);
    const char *test = info_value(info, "test_images", &lt);
    if (!val || !test)
        return sx_fail(err, SIAMIDX_ERR_NOT_FOUND,
                       "the head carries no split record (it was not trained by `siamidx train`)");
    size_t nv = 0, nt = 0;
    span *sv = split_tabs(val, lv, &nv), *stt = split_tabs(test, lt, &nt);
    uint8_t *held = calloc((size_t)d->n_artists + 1, 1);
    if (!sv || !stt || !held) {
        free(sv), free(stt), free(held);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "split record: out of memory");
    }
    for (int a = 0; unseen && a < d->n_artists; a++) {
        char tmp[32];
        const char *name = d->artist_names ? d->artist_names[a] : tmp;
        if (!d->artist_names) snprintf(tmp, sizeof tmp, "#%d", a);
        held[a] = (uint8_t)in_tab_list(unseen, lu, name);
    }
    for (size_t i = 0; i < d->n; i++) {
        char tmp[32];
        const char *key = d->keys && d->keys[i] ? d->keys[i] : tmp;
        if (key == tmp) snprintf(tmp, sizeof tmp, "#%zu", i);
        span k = {key, strlen(key)};
        roles[i] = held[d->artist[i]]                           ? SX_ROLE_UNSEEN
                   : bsearch(&k, stt, nt, sizeof k, cmp_span) ? SX_ROLE_TEST
                   : bsearch(&k, sv, nv, sizeof k, cmp_span)  ? SX_ROLE_VAL
                                                                : SX_ROLE_TRAIN;
    }
    free(sv), free(stt), free(held);
    return SIAMIDX_OK;
}

/* ---- evaluation ------------------------------------------------------------ */

static siamidx_status eval_pairs(const sx_head *h, const sx_train_data *d, const uint8_t *roles,
                                 int role, uint64_t seed, sx_pair_eval *out, siamidx_error *err) {
    memset(out, 0, sizeof *out);
    size_t *rows = malloc((d->n + 1) * sizeof *rows);
    if (!rows) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "evaluation: out of memory");
    size_t nr = rows_with_role(roles, d->n, 1u << role, rows);
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
    memset(out, 0, sizeof *out);
    size_t *rows = malloc((2 * d->n + 1) * sizeof *rows);
    if (!rows) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "evaluation: out of memory");
    size_t *qs = rows, *gal = rows + d->n;
    size_t nq = rows_with_role(roles, d->n, 1u << role, qs);
    size_t ng = rows_with_role(roles, d->n, (1u << SX_ROLE_TRAIN) | (1u << SX_ROLE_VAL), gal);
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
    if (!st && nq && m) st = nearest(d, qs, nq, gal, ng, m, nn, err);
    if (!st && nq && m) {
        size_t top1 = 0, top3 = 0, unk = 0;
        double top_prob = 0;
        for (size_t q = 0; q < nq; q++) {
            candidate_logits(h, d, qs[q], nn + q * m, m, logit, art, scratch);
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

/* ---- public pair answers ---------------------------------------------------- */

const siamidx_head *siamidx_model_head(const siamidx_model *model) {
    return model ? model->head : NULL;
}

size_t siamidx_head_dim(const siamidx_head *head) { return head ? (size_t)head->dim : 0; }

double siamidx_head_threshold(const siamidx_head *head) { return head ? head->threshold : 0.5; }

siamidx_status siamidx_head_from_blob(const void *blob, size_t len, siamidx_head **out,
                                      siamidx_error *err) {
    if (!blob || !out) return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "head: NULL argument");
    return sx_head_from_blob(blob, len, out, err);
}

siamidx_status siamidx_head_to_blob(const siamidx_head *head, void **blob, size_t *len,
                                    siamidx_error *err) {
    if (!head || !blob || !len)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "head: NULL argument");
    return sx_head_to_blob(head, (uint8_t **)blob, len, err);
}

siamidx_status siamidx_pair_embeddings(const siamidx_head *head, const float *a, const float *b,
                                       size_t dim, siamidx_pair_result *out, siamidx_error *err) {
    if (!head)
        return sx_fail(err, SIAMIDX_ERR_NO_HEAD, "no trained head: run `siamidx train`");
    if (!a || !b || !out)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "pair: NULL argument");
    if (dim != (size_t)head->dim)
        return sx_fail(err, SIAMIDX_ERR_MODEL_MISMATCH,
                       "the head expects %d-dimensional embeddings, got %zu", head->dim, dim);
    float *buf = malloc((2 * dim + (size_t)head->n_feat) * sizeof(float));
    if (!buf) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "pair: out of memory");
    sx_head_project(head, a, buf);
    sx_head_project(head, b, buf + dim);
    float p = sx_sigmoid(sx_head_logit(head, buf, buf + dim, buf + 2 * dim));
    free(buf);
    out->probability = p;
    out->threshold = head->threshold;
    out->same_artist = p >= head->threshold;
    return SIAMIDX_OK;
}

/* Embeds two inputs with `embed` and scores them. */
static siamidx_status pair_with(const siamidx_model *model, const siamidx_head *head,
                                const siamidx_embed_options *opt, siamidx_pair_result *out,
                                siamidx_error *err,
                                siamidx_status (*embed)(const siamidx_model *, const void *,
                                                        const siamidx_embed_options *, float *,
                                                        siamidx_error *),
                                const void *a, const void *b) {
    if (!model || !out) return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "pair: NULL argument");
    if (!head) head = model->head;
    if (!head)
        return sx_fail(err, SIAMIDX_ERR_NO_HEAD,
                       "no trained head: run `siamidx train` (the model %s carries none)",
                       model->path ? model->path : "");
    size_t dim = siamidx_model_dim(model, opt ? opt->pool : SIAMIDX_POOL_DEFAULT);
    float *e = malloc(2 * dim * sizeof(float));
    if (!e) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "pair: out of memory");
    siamidx_status st = embed(model, a, opt, e, err);
    if (!st) st = embed(model, b, opt, e + dim, err);
    if (!st) st = siamidx_pair_embeddings(head, e, e + dim, dim, out, err);
    free(e);
    return st;
}

static siamidx_status embed_path(const siamidx_model *m, const void *path,
                                 const siamidx_embed_options *opt, float *out,
                                 siamidx_error *err) {
    return siamidx_embed_file(m, path, opt, out, err);
}

siamidx_status siamidx_pair_files(const siamidx_model *model, const siamidx_head *head,
                                  const char *path_a, const char *path_b,
                                  const siamidx_embed_options *opt, siamidx_pair_result *out,
                                  siamidx_error *err) {
    if (!path_a || !path_b) return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "pair: NULL path");
    return pair_with(model, head, opt, out, err, embed_path, path_a, path_b);
}

static siamidx_status embed_image(const siamidx_model *m, const void *img,
                                  const siamidx_embed_options *opt, float *out,
                                  siamidx_error *err) {
    const siamidx_rgb_image *im = img;
    return siamidx_embed_rgb(m, im->rgb, im->width, im->height, im->stride, opt, out, err);
}

siamidx_status siamidx_pair_rgb(const siamidx_model *model, const siamidx_head *head,
                                const siamidx_rgb_image *a, const siamidx_rgb_image *b,
                                const siamidx_embed_options *opt, siamidx_pair_result *out,
                                siamidx_error *err) {
    if (!a || !b || !a->rgb || !b->rgb)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "pair: NULL image");
    return pair_with(model, head, opt, out, err, embed_image, a, b);
}

/* ---- the head of an index ---------------------------------------------------- */

#define HEAD_BLOB "head"

void siamidx_train_options_init(siamidx_train_options *opt) {
    sx_train_opts o;
    sx_train_opts_init(&o);
    memset(opt, 0, sizeof *opt);
    opt->epochs = o.epochs;
    opt->seed = o.seed;
    opt->val_fraction = o.val_fraction;
}

/* Everything training and evaluation need from an index, in record order. */
typedef struct index_data {
    sx_train_data d;
    float *emb;
    int32_t *artist;
    char **keys;  /* content hash, hex: the split survives moving the files */
    char **names; /* dense artist id -> name */
    uint32_t *store_artist; /* dense id -> the store's artist id */
    size_t cap;
    int dim_mismatch;
    sx_store *st;
    MDB_txn *txn;
    siamidx_error *err;
    siamidx_status status;
} index_data;

static void index_data_free(index_data *x) {
    for (size_t i = 0; i < x->d.n; i++) free(x->keys ? x->keys[i] : NULL);
    for (int a = 0; a < x->d.n_artists; a++) free(x->names[a]);
    free(x->emb), free(x->artist), free(x->keys), free(x->names), free(x->store_artist);
    memset(x, 0, sizeof *x);
}

static int dense_artist(index_data *x, uint32_t store_id) {
    for (int a = 0; a < x->d.n_artists; a++)
        if (x->store_artist[a] == store_id) return a;
    const char *name;
    if ((x->status = sx_store_artist_name(x->st, x->txn, store_id, &name, NULL, x->err)))
        return -1;
    int a = x->d.n_artists;
    uint32_t *sa = realloc(x->store_artist, (size_t)(a + 1) * sizeof *sa);
    char **nm = sa ? realloc(x->names, (size_t)(a + 1) * sizeof *nm) : NULL;
    if (sa) x->store_artist = sa;
    if (nm) x->names = nm;
    if (!sa || !nm || !(x->names[a] = strdup(name))) {
        x->status = sx_fail(x->err, SIAMIDX_ERR_NO_MEMORY, "out of memory");
        return -1;
    }
    x->store_artist[a] = store_id;
    x->d.n_artists = a + 1;
    return a;
}

static int take_record(void *ctx, const sx_record *r) {
    index_data *x = ctx;
    if (x->d.dim == 0) x->d.dim = (int)r->dim;
    if ((int)r->dim != x->d.dim) {
        x->status = sx_fail(x->err, SIAMIDX_ERR_INDEX_CORRUPT,
                            "record %llu has %u dimensions, others %d",
                            (unsigned long long)r->id, r->dim, x->d.dim);
        return 1;
    }
    size_t n = x->d.n, dim = (size_t)x->d.dim;
    if (n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 1024;
        float *e = realloc(x->emb, cap * dim * sizeof *e);
        if (e) x->emb = e;
        int32_t *a = e ? realloc(x->artist, cap * sizeof *a) : NULL;
        if (a) x->artist = a;
        char **k = a ? realloc(x->keys, cap * sizeof *k) : NULL;
        if (k) x->keys = k;
        if (!k) {
            x->status = sx_fail(x->err, SIAMIDX_ERR_NO_MEMORY, "out of memory reading records");
            return 1;
        }
        x->cap = cap;
    }
    int a = dense_artist(x, r->artist_id);
    if (a < 0) return 1;
    sx_record_embedding(r, x->emb + n * dim);
    x->artist[n] = a;
    if (!(x->keys[n] = malloc(65))) {
        x->status = sx_fail(x->err, SIAMIDX_ERR_NO_MEMORY, "out of memory reading records");
        return 1;
    }
    sx_hex(r->hash, 32, x->keys[n]);
    x->d.n = n + 1;
    return 0;
}

static siamidx_status load_index_data(siamidx_index *idx, index_data *x, siamidx_error *err) {
    memset(x, 0, sizeof *x);
    x->st = sx_index_store(idx);
    x->err = err;
    siamidx_status st = sx_store_read_begin(x->st, &x->txn, err);
    if (st) return st;
    st = sx_store_foreach_record(x->st, x->txn, take_record, x, err);
    sx_store_read_end(x->txn);
    x->txn = NULL;
    if (!st) st = x->status;
    if (!st && x->d.n == 0) st = sx_fail(err, SIAMIDX_ERR_NOT_FOUND, "the index holds no images");
    if (st) {
        index_data_free(x);
        return st;
    }
    x->d.emb = x->emb;
    x->d.artist = x->artist;
    x->d.keys = (const char *const *)x->keys;
    x->d.artist_names = (const char *const *)x->names;
    return SIAMIDX_OK;
}

typedef struct {
    const uint8_t *blob;
    size_t len;
} blob_ctx;

static siamidx_status put_head(sx_wtxn *w, void *ctx, siamidx_error *err) {
    blob_ctx *b = ctx;
    return sx_store_blob_put(w, HEAD_BLOB, b->blob, b->len, err);
}

siamidx_status siamidx_index_train_head(siamidx_index *idx, const siamidx_train_options *opt,
                                        siamidx_train_report *report, siamidx_error *err) {
    if (!idx) return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "train: no index");
    sx_train_opts o;
    sx_train_opts_init(&o);
    if (opt) {
        if (opt->epochs > 0) o.epochs = opt->epochs;
        if (opt->val_fraction > 0) o.val_fraction = opt->val_fraction;
        o.seed = opt->seed;
        o.holdout_artists = opt->holdout_artists;
        o.verbose = opt->verbose;
    }
    index_data x;
    siamidx_status st = load_index_data(idx, &x, err);
    if (st) return st;
    sx_head *h = NULL;
    uint8_t *blob = NULL;
    size_t len = 0;
    st = sx_head_train(&x.d, &o, NULL, &h, err);
    if (!st) st = sx_head_to_blob(h, &blob, &len, err);
    if (!st) {
        blob_ctx b = {blob, len};
        st = sx_store_write(sx_index_store(idx), put_head, &b, err);
    }
    if (!st && report) {
        memset(report, 0, sizeof *report);
        report->val_auc = h->report.val_auc;
        report->val_accuracy = h->report.val_acc;
        report->val_ece = h->report.val_ece;
        report->threshold = h->threshold;
        report->epochs_run = h->report.epochs_run;
        report->best_epoch = h->report.best_epoch;
        report->n_train = h->report.n_train;
        report->n_val = h->report.n_val;
        report->n_test = h->report.n_test;
        report->n_unseen = h->report.n_unseen;
        report->n_unseen_artists = (size_t)(o.holdout_artists);
    }
    free(blob);
    siamidx_head_free(h);
    index_data_free(&x);
    return st;
}

/* The index's own head, or NOT_FOUND. */
static siamidx_status stored_head(siamidx_index *idx, sx_head **out, siamidx_error *err) {
    *out = NULL;
    sx_store *store = sx_index_store(idx);
    MDB_txn *txn;
    siamidx_status st = sx_store_read_begin(store, &txn, err);
    if (st) return st;
    const void *data;
    size_t len;
    st = sx_store_blob_get(store, txn, HEAD_BLOB, &data, &len, err);
    if (!st) st = sx_head_from_blob(data, len, out, err);
    sx_store_read_end(txn);
    return st;
}

siamidx_status siamidx_index_head(siamidx_index *idx, const siamidx_model *model,
                                  siamidx_head **out, siamidx_error *err) {
    if (!idx || !out) return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "head: NULL argument");
    siamidx_status st = stored_head(idx, out, err);
    if (st != SIAMIDX_ERR_NOT_FOUND) return st;
    if (model && model->head) {
        uint8_t *blob;
        size_t len;
        /* A private copy: the caller frees what it gets, whichever source. */
        if ((st = sx_head_to_blob(model->head, &blob, &len, err))) return st;
        st = sx_head_from_blob(blob, len, out, err);
        free(blob);
        return st;
    }
    return sx_fail(err, SIAMIDX_ERR_NO_HEAD, "no trained head: run `siamidx train`");
}

siamidx_status siamidx_index_evaluate(siamidx_index *idx, siamidx_eval_report *out,
                                      siamidx_error *err) {
    if (!idx || !out) return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "eval: NULL argument");
    sx_head *h;
    siamidx_status st = stored_head(idx, &h, err);
    if (st == SIAMIDX_ERR_NOT_FOUND)
        return sx_fail(err, SIAMIDX_ERR_NO_HEAD, "no trained head: run `siamidx train`");
    if (st) return st;
    index_data x;
    uint8_t *roles = NULL;
    if ((st = load_index_data(idx, &x, err))) {
        siamidx_head_free(h);
        return st;
    }
    roles = malloc(x.d.n);
    if (!roles) st = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "eval: out of memory");
    if (!st) st = sx_head_roles(h, &x.d, roles, err);
    if (!st) st = sx_evaluate(h, &x.d, roles, 1, out, err);
    free(roles);
    index_data_free(&x);
    siamidx_head_free(h);
    return st;
}

/* ---- attribution in the query path ------------------------------------------------ */

typedef struct {
    int artist;
    double p;
} ranked;

static int by_prob(const void *a, const void *b) {
    double x = ((const ranked *)a)->p, y = ((const ranked *)b)->p;
    return (x < y) - (x > y);
}

siamidx_status sx_head_score_artists(siamidx_index *idx, MDB_txn *txn, const float *query,
                                     siamidx_neighbor *nb, size_t n_nb, int k,
                                     siamidx_query_result *res, siamidx_error *err) {
    sx_store *store = sx_index_store(idx);
    const void *data;
    size_t len;
    siamidx_error e;
    siamidx_status st = sx_store_blob_get(store, txn, HEAD_BLOB, &data, &len, &e);
    if (st == SIAMIDX_ERR_NOT_FOUND) return SIAMIDX_ERR_NO_HEAD;
    if (st) {
        if (err) *err = e;
        return st;
    }
    sx_head *h = NULL;
    if ((st = sx_head_from_blob(data, len, &h, err))) return st;
    size_t dim = (size_t)h->dim;
    float *emb = malloc((n_nb * dim + 1) * sizeof *emb), *pp = malloc((n_nb + 1) * sizeof *pp);
    const float **cand = malloc((n_nb + 1) * sizeof *cand);
    int32_t *art = malloc((n_nb + 1) * sizeof *art);
    double *prob = malloc((n_nb + 1) * sizeof *prob);
    ranked *rk = malloc((n_nb + 1) * sizeof *rk);
    if (!emb || !pp || !cand || !art || !prob || !rk)
        st = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "query: out of memory");
    /* Dense artist ids among the neighbours: the first neighbour naming each. */
    int n_art = 0;
    for (size_t i = 0; !st && i < n_nb; i++) {
        sx_record r;
        if ((st = sx_store_get_record(store, txn, (uint64_t)nb[i].id, &r, err))) break;
        if (r.dim != dim) {
            st = sx_fail(err, SIAMIDX_ERR_MODEL_MISMATCH,
                         "the head expects %zu-dimensional embeddings, record %lld has %u", dim,
                         (long long)nb[i].id, r.dim);
            break;
        }
        sx_record_embedding(&r, emb + i * dim);
        cand[i] = emb + i * dim;
        size_t j = 0;
        while (j < i && strcmp(nb[j].artist, nb[i].artist)) j++;
        art[i] = j < i ? art[j] : n_art++;
    }
    double unknown = 1;
    if (!st)
        st = sx_attribute(h, query, cand, art, n_nb, n_art, pp, prob, &unknown, err);
    if (!st) {
        for (size_t i = 0; i < n_nb; i++) nb[i].probability = pp[i];
        for (int a = 0; a < n_art; a++) rk[a] = (ranked){a, prob[a]};
        qsort(rk, (size_t)n_art, sizeof *rk, by_prob);
        size_t n_out = (size_t)n_art < (size_t)k ? (size_t)n_art : (size_t)k;
        res->artists = calloc(n_out + 1, sizeof *res->artists);
        if (!res->artists) st = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "query: out of memory");
        for (size_t i = 0; !st && i < n_out; i++) {
            size_t first = 0; /* a neighbour of this artist, for the name */
            while (art[first] != rk[i].artist) first++;
            if (!(res->artists[i].artist = strdup(nb[first].artist))) {
                st = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "query: out of memory");
                break;
            }
            res->artists[i].probability = (float)rk[i].p;
            res->n_artists++;
        }
        res->unknown = (float)unknown;
    }
    free(emb), free(pp), free(cand), free(art), free(prob), free(rk);
    siamidx_head_free(h);
    return st;
}

/* ---- embeddings the index already holds ------------------------------------------------ */

static int sha256_file(const char *path, uint8_t out[32]) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    sx_sha256 h;
    sx_sha256_init(&h);
    uint8_t buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) sx_sha256_update(&h, buf, n);
    int bad = ferror(f);
    fclose(f);
    if (bad) return -1;
    sx_sha256_final(&h, out);
    return 0;
}

siamidx_status sx_index_cached_embedding(siamidx_index *idx, const char *path, float *out,
                                         size_t dim, siamidx_error *err) {
    uint8_t hash[32];
    if (sha256_file(path, hash))
        return sx_fail(err, SIAMIDX_ERR_NOT_FOUND, "%s: not readable", path);
    sx_store *store = sx_index_store(idx);
    MDB_txn *txn;
    siamidx_status st = sx_store_read_begin(store, &txn, err);
    if (st) return st;
    uint64_t id;
    sx_record r;
    st = sx_store_find_hash(store, txn, hash, &id, err);
    if (!st) st = sx_store_get_record(store, txn, id, &r, err);
    if (!st && r.dim != dim)
        st = sx_fail(err, SIAMIDX_ERR_MODEL_MISMATCH, "%s: indexed with %u dimensions, not %zu",
                     path, r.dim, dim);
    if (!st) sx_record_embedding(&r, out);
    sx_store_read_end(txn);
    return st;
}

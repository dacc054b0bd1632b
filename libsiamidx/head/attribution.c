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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "head/attribution.h"
#include "head/classifier.h"
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
    return sx_attribute_fused(h, NULL, NULL, NULL, query, cand_emb, cand_artist, n, n_artists,
                              pair_prob, artist_prob, p_unknown, err);
}

siamidx_status sx_attribute_fused(const sx_head *h, const sx_classifier *c,
                                  const double *class_logp, const int32_t *class_of,
                                  const float *query, const float *const *cand_emb,
                                  const int32_t *cand_artist, size_t n, int n_artists,
                                  float *pair_prob, double *artist_prob, double *p_unknown,
                                  siamidx_error *err) {
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
    *p_unknown = sx_fuse(h, c, class_logp, class_of, logit, cand_artist, n, n_artists,
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

/* ---- the fused answer ---------------------------------------------------------------- */

#define FUSE_FLOOR 1e-6      /* a probability below this is "no evidence", not -infinity */
#define NO_UNKNOWN (-1e30f)  /* sx_aggregate's unknown logit when only the artists matter */
#define PAIR_LOGIT_LIMIT 20.0f

typedef struct fuse_evidence {
    double log_top;   /* log of the largest fused artist probability */
    double top_pair;  /* the best candidate's calibrated pair logit, clamped */
} fuse_evidence;

/* pf[n_artists] (sums to 1 over the artists with evidence) and the unknown evidence. */
static void fuse_artists(const sx_head *h, float w, const double *class_logp,
                         const int32_t *class_of, const float *logit, const int32_t *artist,
                         size_t n, int n_artists, double *pf, fuse_evidence *ev) {
    sx_aggregate(logit, artist, n, h->attr_scale, NO_UNKNOWN, n_artists, pf);
    double m = -INFINITY;
    for (int a = 0; a < n_artists; a++) {
        double lc = class_of[a] >= 0 ? class_logp[class_of[a]] : -INFINITY, pn = pf[a];
        if (!(lc > -INFINITY) && !(pn > 0)) {
            pf[a] = -INFINITY; /* neither says anything of this artist */
            continue;
        }
        double s = w * (lc > log(FUSE_FLOOR) ? lc : log(FUSE_FLOOR)) +
                   (1 - w) * log(pn > FUSE_FLOOR ? pn : FUSE_FLOOR);
        pf[a] = s;
        if (s > m) m = s;
    }
    double total = 0, top = 0;
    for (int a = 0; a < n_artists; a++) total += pf[a] = pf[a] > -INFINITY ? exp(pf[a] - m) : 0;
    for (int a = 0; a < n_artists; a++) {
        pf[a] = total > 0 ? pf[a] / total : 0;
        if (pf[a] > top) top = pf[a];
    }
    float best = -PAIR_LOGIT_LIMIT;
    for (size_t i = 0; i < n; i++) best = logit[i] > best ? logit[i] : best;
    ev->log_top = log(top > FUSE_FLOOR ? top : FUSE_FLOOR);
    ev->top_pair = best < PAIR_LOGIT_LIMIT ? best : PAIR_LOGIT_LIMIT;
}

/* The evidence's log-likelihood ratio for "unknown" (prior odds 1). */
static double unknown_llr(const sx_classifier *c, const fuse_evidence *ev) {
    return c->unk_bias + c->unk_top * ev->log_top + c->unk_pair * ev->top_pair;
}

static double unknown_share(const sx_classifier *c, const fuse_evidence *ev) {
    double p = c->unknown_prior;
    if (!(p > 0)) return 0; /* no stranger ever asks: "unknown" is never the answer */
    double lo = unknown_llr(c, ev) + log(p / (1 - p));
    return 1 / (1 + exp(-lo));
}

double sx_fuse(const sx_head *h, const sx_classifier *c, const double *class_logp,
               const int32_t *class_of, const float *logit, const int32_t *artist, size_t n,
               int n_artists, double *artist_prob) {
    if (!c) {
        if (!n) {
            memset(artist_prob, 0, (size_t)n_artists * sizeof *artist_prob);
            return 1.0;
        }
        return sx_aggregate(logit, artist, n, h->attr_scale, h->attr_unknown, n_artists,
                            artist_prob);
    }
    fuse_evidence ev;
    fuse_artists(h, c->fuse_weight, class_logp, class_of, logit, artist, n, n_artists,
                 artist_prob, &ev);
    double pu = unknown_share(c, &ev);
    for (int a = 0; a < n_artists; a++) artist_prob[a] *= 1 - pu;
    return pu;
}

void sx_classes_of(const sx_classifier *c, const sx_train_data *d, int32_t *class_of) {
    for (int a = 0; a < d->n_artists; a++) {
        char num[32];
        snprintf(num, sizeof num, "artist %d", a); /* as sx_classifier_fit names them */
        class_of[a] = sx_classifier_class(c, d->artist_names ? d->artist_names[a] : num);
    }
}

/* Validation cases of the fusion fit: per query, candidates with and without its artist. */
typedef struct fusion_cases {
    size_t nq, m, C;
    float *logit_known, *logit_unknown;
    int32_t *art_known, *art_unknown;
    size_t *n_unknown;
    int32_t *truth;     /* d's artist */
    double *logp_known; /* [nq][C] */
    double *logp_unknown; /* the same with the truth's class left out, renormalised */
} fusion_cases;

static void fusion_cases_free(fusion_cases *f) {
    free(f->logit_known), free(f->logit_unknown), free(f->art_known), free(f->art_unknown);
    free(f->n_unknown), free(f->truth), free(f->logp_known), free(f->logp_unknown);
}

/* The classifier's log-probabilities of each query, with and without its own class. */
static siamidx_status case_log_probs(const sx_classifier *c, const sx_train_data *d,
                                     const size_t *qs, const int32_t *class_of, fusion_cases *f,
                                     siamidx_error *err) {
    size_t dim = (size_t)d->dim, C = f->C;
    float *e = malloc((f->nq * dim + 1) * sizeof *e);
    if (!e) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "fusion fit: out of memory");
    for (size_t q = 0; q < f->nq; q++) memcpy(e + q * dim, d->emb + qs[q] * dim, dim * sizeof *e);
    siamidx_status st = sx_classifier_log_prob(c, e, f->nq, f->logp_known, err);
    free(e);
    for (size_t q = 0; !st && q < f->nq; q++) {
        const double *k = f->logp_known + q * C;
        double *u = f->logp_unknown + q * C;
        int own = class_of[f->truth[q]];
        double rest = own >= 0 ? 1 - exp(k[own]) : 1;
        double shift = log(rest > 1e-300 ? rest : 1e-300);
        for (size_t j = 0; j < C; j++) u[j] = (int)j == own ? -INFINITY : k[j] - shift;
    }
    return st;
}

static siamidx_status fusion_cases_make(const sx_classifier *c, const sx_head *h,
                                        const sx_train_data *d, const uint8_t *roles,
                                        const int32_t *class_of, fusion_cases *f,
                                        siamidx_error *err) {
    memset(f, 0, sizeof *f);
    size_t *rows = malloc((d->n * 2 + 1) * sizeof *rows);
    if (!rows) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "fusion fit: out of memory");
    size_t *qs = rows, *gal = rows + d->n;
    size_t nq_all = sx_rows_with_role(roles, d->n, 1u << SX_ROLE_VAL, qs), nq = 0;
    for (size_t i = 0; i < nq_all; i++) /* queries of artists the classifier knows */
        if (class_of[d->artist[qs[i]]] >= 0) qs[nq++] = qs[i];
    size_t ng = sx_rows_with_role(roles, d->n, 1u << SX_ROLE_TRAIN, gal);
    size_t m = sx_attr_candidates(5), wide = 3 * m;
    if (wide > ng) wide = ng;
    if (m > ng) m = ng;
    f->nq = m ? nq : 0;
    f->m = m;
    f->C = (size_t)c->n_classes;
    size_t cells = f->nq * m + 1;
    size_t *nn = malloc((f->nq * wide + 1) * sizeof *nn), *kept = malloc((wide + 1) * sizeof *kept);
    float *scratch = malloc((2 * (size_t)h->dim + (size_t)h->n_feat) * sizeof(float));
    f->logit_known = malloc(cells * sizeof(float));
    f->logit_unknown = malloc(cells * sizeof(float));
    f->art_known = malloc(cells * sizeof(int32_t));
    f->art_unknown = malloc(cells * sizeof(int32_t));
    f->n_unknown = malloc((f->nq + 1) * sizeof(size_t));
    f->truth = malloc((f->nq + 1) * sizeof(int32_t));
    f->logp_known = malloc((f->nq * f->C + 1) * sizeof(double));
    f->logp_unknown = malloc((f->nq * f->C + 1) * sizeof(double));
    siamidx_status st = SIAMIDX_OK;
    if (!nn || !kept || !scratch || !f->logit_known || !f->logit_unknown || !f->art_known ||
        !f->art_unknown || !f->n_unknown || !f->truth || !f->logp_known || !f->logp_unknown)
        st = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "fusion fit: out of memory");
    if (!st && f->nq) st = sx_nearest(d, qs, f->nq, gal, ng, wide, nn, err);
    for (size_t q = 0; !st && q < f->nq; q++) {
        const size_t *cand = nn + q * wide;
        f->truth[q] = d->artist[qs[q]];
        sx_candidate_logits(h, d, qs[q], cand, m, f->logit_known + q * m, f->art_known + q * m,
                            scratch);
        size_t k = 0;
        for (size_t i = 0; i < wide && k < m; i++)
            if (d->artist[cand[i]] != f->truth[q]) kept[k++] = cand[i];
        f->n_unknown[q] = k;
        sx_candidate_logits(h, d, qs[q], kept, k, f->logit_unknown + q * m,
                            f->art_unknown + q * m, scratch);
    }
    if (!st && f->nq) st = case_log_probs(c, d, qs, class_of, f, err);
    free(rows), free(nn), free(kept), free(scratch);
    if (st) fusion_cases_free(f);
    return st;
}

/* Top-1 of the known cases at weight w; *loss the mean -log pf(truth). */
static double fused_top1(const sx_head *h, const fusion_cases *f, float w, const int32_t *class_of,
                         int n_artists, double *pf, double *loss) {
    size_t hits = 0;
    double l = 0;
    for (size_t q = 0; q < f->nq; q++) {
        fuse_evidence ev;
        fuse_artists(h, w, f->logp_known + q * f->C, class_of, f->logit_known + q * f->m,
                     f->art_known + q * f->m, f->m, n_artists, pf, &ev);
        int t = f->truth[q], better = 0;
        for (int a = 0; a < n_artists; a++) better += pf[a] > pf[t];
        hits += better == 0;
        l -= log(pf[t] > FUSE_FLOOR ? pf[t] : FUSE_FLOOR);
    }
    *loss = f->nq ? l / (double)f->nq : 0;
    return f->nq ? (double)hits / (double)f->nq : 0;
}

/* Solves the 3x3 system A x = b (Gaussian elimination, partial pivoting); 0 when singular. */
static int solve3(double A[3][3], double b[3], double x[3]) {
    for (int i = 0; i < 3; i++) {
        int p = i;
        for (int r = i + 1; r < 3; r++) p = fabs(A[r][i]) > fabs(A[p][i]) ? r : p;
        if (fabs(A[p][i]) < 1e-12) return 0;
        for (int k = 0; k < 3; k++) {
            double t = A[i][k];
            A[i][k] = A[p][k], A[p][k] = t;
        }
        double t = b[i];
        b[i] = b[p], b[p] = t;
        for (int r = i + 1; r < 3; r++) {
            double f = A[r][i] / A[i][i];
            for (int k = i; k < 3; k++) A[r][k] -= f * A[i][k];
            b[r] -= f * b[i];
        }
    }
    for (int i = 2; i >= 0; i--) {
        double s = b[i];
        for (int k = i + 1; k < 3; k++) s -= A[i][k] * x[k];
        x[i] = s / A[i][i];
    }
    return 1;
}

/*
 * Logistic regression of "unknown" on [1, log top, top pair logit] over the
 * cases (x: n rows of 2, y: 1 for the cases with the artist removed), by
 * Newton's method with a small ridge (separable cases stay finite).
 */
static void fit_unknown(const double *x, const uint8_t *y, size_t n, double theta[3]) {
    theta[0] = theta[1] = theta[2] = 0;
    const double ridge = 1e-3 * (double)n;
    for (int it = 0; it < 50; it++) {
        double g[3] = {0}, H[3][3] = {{0}};
        for (size_t i = 0; i < n; i++) {
            double f[3] = {1, x[2 * i], x[2 * i + 1]};
            double z = theta[0] + theta[1] * f[1] + theta[2] * f[2];
            double p = 1 / (1 + exp(-z)), wgt = p * (1 - p);
            for (int a = 0; a < 3; a++) {
                g[a] += (p - y[i]) * f[a];
                for (int b = 0; b < 3; b++) H[a][b] += wgt * f[a] * f[b];
            }
        }
        for (int a = 1; a < 3; a++) g[a] += ridge * theta[a], H[a][a] += ridge;
        H[0][0] += 1e-9;
        double step[3];
        if (!solve3(H, g, step)) break;
        double size = 0;
        for (int a = 0; a < 3; a++) theta[a] -= step[a], size += fabs(step[a]);
        if (size < 1e-9) break;
    }
}

siamidx_status sx_fusion_fit(sx_classifier *c, const sx_head *h, const sx_train_data *d,
                             const uint8_t *roles, siamidx_error *err) {
    int32_t *class_of = malloc(((size_t)d->n_artists + 1) * sizeof *class_of);
    double *pf = malloc(((size_t)d->n_artists + 1) * sizeof *pf);
    if (!class_of || !pf) {
        free(class_of), free(pf);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "fusion fit: out of memory");
    }
    sx_classes_of(c, d, class_of);
    fusion_cases f;
    siamidx_status st = fusion_cases_make(c, h, d, roles, class_of, &f, err);
    if (st) {
        free(class_of), free(pf);
        return st;
    }
    /* Unfitted defaults (no validation queries): an even mix, and "unknown"
       growing as the top artist's probability and the top pair's fall. */
    c->fuse_weight = SX_CLASSIFIER_DEFAULT_FUSE;
    c->unk_bias = -2, c->unk_top = -1, c->unk_pair = -0.5f;
    c->fused_top1 = NAN;
    if (f.nq) {
        double best = -1, best_loss = INFINITY;
        for (int wi = 0; wi <= 10; wi++) {
            double loss, top1 = fused_top1(h, &f, (float)wi / 10, class_of, d->n_artists, pf,
                                           &loss);
            if (top1 > best || (top1 == best && loss < best_loss))
                best = top1, best_loss = loss, c->fuse_weight = (float)wi / 10;
        }
        c->fused_top1 = best;
        double *x = malloc(4 * f.nq * sizeof *x);
        uint8_t *y = malloc(2 * f.nq);
        if (!x || !y) st = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "fusion fit: out of memory");
        for (size_t q = 0; !st && q < f.nq; q++) {
            fuse_evidence ev;
            fuse_artists(h, c->fuse_weight, f.logp_known + q * f.C, class_of,
                         f.logit_known + q * f.m, f.art_known + q * f.m, f.m, d->n_artists, pf,
                         &ev);
            x[4 * q] = ev.log_top, x[4 * q + 1] = ev.top_pair, y[2 * q] = 0;
            fuse_artists(h, c->fuse_weight, f.logp_unknown + q * f.C, class_of,
                         f.logit_unknown + q * f.m, f.art_unknown + q * f.m, f.n_unknown[q],
                         d->n_artists, pf, &ev);
            x[4 * q + 2] = ev.log_top, x[4 * q + 3] = ev.top_pair, y[2 * q + 1] = 1;
        }
        if (!st) {
            double theta[3];
            fit_unknown(x, y, 2 * f.nq, theta);
            if (isfinite(theta[0]) && isfinite(theta[1]) && isfinite(theta[2]))
                c->unk_bias = (float)theta[0], c->unk_top = (float)theta[1],
                c->unk_pair = (float)theta[2];
        }
        free(x), free(y);
    }
    fusion_cases_free(&f);
    free(class_of), free(pf);
    return st;
}

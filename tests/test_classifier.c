/*
 * test_classifier.c - the logistic classifier over artists and the fused
 * answer, on synthetic clustered embeddings: separable clusters are
 * classified right, the blob round-trips exactly and damage is refused, the
 * fused answer sums to one with "unknown", the unknown share grows with the
 * prior (none at 0), and strangers get more of it than indexed artists.
 */
#include <math.h>

#include "check.h"
#include "base/pairs.h"
#include "head/attribution.h"
#include "head/classifier.h"
#include "head/head.h"
#include "head/head_train.h"
#include "head/labelled.h"
#include "head/nearest.h"

enum { ARTISTS = 16, PER = 40, DIM = 24, N = ARTISTS * PER };

static float emb[N * DIM];
static int32_t artist[N];
static const char *names[ARTISTS];
static char name_buf[ARTISTS][24]; /* "painter " and any int */

/* Cluster centres with noise, L2-normalised; `spread` sets how much they overlap. */
static void make_data(uint64_t seed, float spread) {
    sx_rng rng;
    sx_rng_seed(&rng, seed);
    float centre[ARTISTS][DIM];
    for (int a = 0; a < ARTISTS; a++) {
        for (int j = 0; j < DIM; j++) centre[a][j] = (float)(sx_rng_uniform(&rng) * 2 - 1);
        snprintf(name_buf[a], sizeof name_buf[a], "painter %d", a);
        names[a] = name_buf[a];
    }
    for (int i = 0; i < N; i++) {
        int a = i % ARTISTS;
        artist[i] = a;
        double ss = 0;
        for (int j = 0; j < DIM; j++) {
            float e = centre[a][j] + (float)(sx_rng_uniform(&rng) * 2 - 1) * spread;
            emb[i * DIM + j] = e + 3.0f; /* an offset: the standardisation must remove it */
            ss += (double)emb[i * DIM + j] * emb[i * DIM + j];
        }
        for (int j = 0; j < DIM; j++) emb[i * DIM + j] /= (float)sqrt(ss);
    }
}

static sx_train_data data(void) {
    return (sx_train_data){.n = N, .dim = DIM, .emb = emb, .artist = artist,
                           .n_artists = ARTISTS, .artist_names = names};
}

/* Roles by position within each artist: 60% train, 20% validation, 20% test. */
static void simple_roles(uint8_t *roles) {
    for (int i = 0; i < N; i++) {
        int k = (i / ARTISTS) % 10;
        roles[i] = k < 6 ? SX_ROLE_TRAIN : k < 8 ? SX_ROLE_VAL : SX_ROLE_TEST;
    }
}

static double test_accuracy(const sx_classifier *c, const uint8_t *roles) {
    double lp[ARTISTS];
    size_t hits = 0, n = 0;
    for (int i = 0; i < N; i++) {
        if (roles[i] != SX_ROLE_TEST) continue;
        CHECK(sx_classifier_log_prob(c, emb + i * DIM, 1, lp, NULL) == SIAMIDX_OK);
        int best = 0;
        for (int k = 1; k < c->n_classes; k++) best = lp[k] > lp[best] ? k : best;
        hits += !strcmp(c->names[best], names[artist[i]]);
        n++;
    }
    return (double)hits / (double)n;
}

static void test_separable(void) {
    make_data(11, 0.35f);
    sx_train_data d = data();
    uint8_t roles[N];
    simple_roles(roles);
    sx_classifier *c = NULL;
    siamidx_error err;
    CHECK_MSG(sx_classifier_fit(&d, roles, 0, &c, &err) == SIAMIDX_OK, "%s", err.message);
    if (!c) return;
    CHECK(c->n_classes == ARTISTS && c->dim == DIM);
    CHECK(!strcmp(c->names[5], "painter 5"));
    double acc = test_accuracy(c, roles);
    CHECK_MSG(acc > 0.95, "test accuracy %g on separable clusters", acc);
    CHECK_MSG(c->val_top1 > 0.95, "validation top-1 %g", c->val_top1);
    /* probabilities: a distribution */
    double lp[ARTISTS], s = 0;
    CHECK(sx_classifier_log_prob(c, emb, 1, lp, NULL) == SIAMIDX_OK);
    for (int k = 0; k < ARTISTS; k++) s += exp(lp[k]);
    CHECK_MSG(fabs(s - 1) < 1e-9, "probabilities sum to %g", s);
    sx_classifier_free(c);

    /* chance level on labels unrelated to the clusters: no leak from the test rows */
    int32_t saved[N];
    memcpy(saved, artist, sizeof saved);
    sx_rng rng;
    sx_rng_seed(&rng, 5);
    for (int i = 0; i < N; i++) artist[i] = (int32_t)(sx_rng_uniform(&rng) * ARTISTS) % ARTISTS;
    CHECK(sx_classifier_fit(&d, roles, 0, &c, &err) == SIAMIDX_OK);
    if (c) {
        acc = test_accuracy(c, roles);
        CHECK_MSG(acc < 0.2, "random labels classified at %g", acc);
        sx_classifier_free(c);
    }
    memcpy(artist, saved, sizeof saved);
}

/* A copy of blob with `what` replaced by `with` (first occurrence), or NULL. */
static uint8_t *edited(const uint8_t *blob, size_t len, const char *what, const char *with,
                       size_t *out_len) {
    const uint8_t *at = NULL;
    size_t wl = strlen(what), nl = strlen(with);
    for (size_t i = 0; i + wl <= len && !at; i++)
        if (!memcmp(blob + i, what, wl)) at = blob + i;
    if (!at) return NULL;
    size_t pre = (size_t)(at - blob);
    uint8_t *b = malloc(len - wl + nl);
    memcpy(b, blob, pre);
    memcpy(b + pre, with, nl);
    memcpy(b + pre + nl, at + wl, len - pre - wl);
    *out_len = len - wl + nl;
    return b;
}

static void expect_refused(const uint8_t *b, size_t len, const char *what) {
    sx_classifier *c = (sx_classifier *)1;
    siamidx_error err;
    siamidx_status st = sx_classifier_from_blob(b, len, &c, &err);
    CHECK_MSG(st == SIAMIDX_ERR_INDEX_CORRUPT, "%s: accepted (status %d)", what, st);
    CHECK_MSG(c == NULL, "%s: *out not NULL", what);
}

static void test_blob(void) {
    make_data(12, 0.5f);
    sx_train_data d = data();
    uint8_t roles[N];
    simple_roles(roles);
    sx_classifier *c = NULL, *r = NULL;
    siamidx_error err;
    CHECK(sx_classifier_fit(&d, roles, 0, &c, &err) == SIAMIDX_OK);
    if (!c) return;
    c->fuse_weight = 0.3f, c->unk_bias = -1.25f, c->unk_top = -0.5f, c->unk_pair = -0.125f;
    c->unknown_prior = 0.07f;
    memset(c->head_id, 'a', 64);
    uint8_t *blob;
    size_t len;
    CHECK(sx_classifier_to_blob(c, &blob, &len, &err) == SIAMIDX_OK);
    CHECK_MSG(sx_classifier_from_blob(blob, len, &r, &err) == SIAMIDX_OK, "%s", err.message);
    if (r) {
        CHECK(r->dim == c->dim && r->n_classes == c->n_classes);
        CHECK(!memcmp(r->w, c->w, (size_t)c->n_classes * DIM * sizeof(float)));
        CHECK(!memcmp(r->b, c->b, (size_t)c->n_classes * sizeof(float)));
        CHECK(!memcmp(r->mean, c->mean, DIM * sizeof(float)));
        CHECK(!memcmp(r->inv_std, c->inv_std, DIM * sizeof(float)));
        CHECK(r->fuse_weight == c->fuse_weight && r->unk_bias == c->unk_bias);
        CHECK(r->unk_top == c->unk_top && r->unk_pair == c->unk_pair);
        CHECK(r->unknown_prior == c->unknown_prior && !strcmp(r->head_id, c->head_id));
        for (int k = 0; k < c->n_classes; k++) CHECK(!strcmp(r->names[k], c->names[k]));
        sx_classifier_free(r);
    }
    /* damage: each refused, none crashes */
    expect_refused(blob, len - 1, "truncated by a byte");
    expect_refused(blob, 10, "truncated to its magic");
    uint8_t *b = malloc(len + 1);
    memcpy(b, blob, len);
    b[len] = 'x';
    expect_refused(b, len + 1, "a byte appended");
    b[0] = 'X';
    expect_refused(b, len, "bad magic");
    free(b);
    size_t bl;
    static const char *const edits[][2] = {
        {"fuse_weight=", "fuse_weight=2\nx="}, {"unknown_prior=", "unknown_prior=1\nx="},
        {"dim=24", "dim=25"},                  {"classes=16", "classes=15"},
        {"classes=16", "classes=99999999"},    {"unk_bias=", "unk_bias=nan\nx="},
        {"head_id=", "head_id=zz\nx="},        {"painter 3", "painter 4"}, /* a name twice */
        {"\ndim=24", "\n"}};
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        uint8_t *e = edited(blob, len, edits[i][0], edits[i][1], &bl);
        CHECK_MSG(e != NULL, "edit %zu found nothing to edit", i);
        if (!e) continue;
        expect_refused(e, bl, edits[i][1]);
        free(e);
    }
    /* a non-finite weight in the data section */
    size_t data_at = 0;
    for (size_t i = 0; i + 5 <= len; i++)
        if (!memcmp(blob + i, "\ndata\n", 6)) {
            data_at = i + 6;
            break;
        }
    CHECK(data_at > 0);
    b = malloc(len);
    memcpy(b, blob, len);
    memcpy(b + data_at + 8 * DIM + 4 * 7, "\x00\x00\xc0\x7f", 4); /* w[7] = NaN */
    expect_refused(b, len, "NaN weight");
    free(b);
    free(blob);
    sx_classifier_free(c);
}

/* The fused answer of query row q against the training rows (its own excluded). */
static double fused_unknown(const sx_classifier *c, const sx_head *h, const sx_train_data *d,
                            const uint8_t *roles, size_t q, double *artist_prob) {
    size_t gal[N], ng = sx_rows_with_role(roles, N, 1u << SX_ROLE_TRAIN, gal), nn[50];
    size_t m = 50 < ng ? 50 : ng;
    CHECK(sx_nearest(d, &q, 1, gal, ng, m, nn, NULL) == SIAMIDX_OK);
    float logit[50], scratch[2 * DIM + DIM + 1 + 64];
    int32_t art[50], class_of[ARTISTS];
    CHECK(2 * DIM + h->n_feat <= (int)(sizeof scratch / sizeof scratch[0]));
    sx_candidate_logits(h, d, q, nn, m, logit, art, scratch);
    double lp[ARTISTS];
    CHECK(sx_classifier_log_prob(c, d->emb + q * DIM, 1, lp, NULL) == SIAMIDX_OK);
    sx_classes_of(c, d, class_of);
    return sx_fuse(h, c, lp, class_of, logit, art, m, ARTISTS, artist_prob);
}

static void test_prior_and_strangers(void) {
    make_data(13, 0.8f); /* overlapping clusters: neither evidence is certain */
    sx_train_data d = data();
    sx_train_opts o;
    sx_train_opts_init(&o);
    o.seed = 4;
    o.holdout_artists = 4; /* strangers: in no training row, so in no class */
    uint8_t roles[N];
    sx_head *h = NULL;
    sx_classifier *c = NULL;
    siamidx_error err;
    CHECK_MSG(sx_head_train(&d, &o, roles, &h, &err) == SIAMIDX_OK, "%s", err.message);
    if (!h) return;
    CHECK_MSG(sx_classifier_fit(&d, roles, 0, &c, &err) == SIAMIDX_OK, "%s", err.message);
    if (!c) {
        siamidx_head_free(h);
        return;
    }
    CHECK(c->n_classes == ARTISTS - 4);
    CHECK_MSG(sx_fusion_fit(c, h, &d, roles, &err) == SIAMIDX_OK, "%s", err.message);
    CHECK(c->fuse_weight >= 0 && c->fuse_weight <= 1);
    CHECK_MSG(c->fused_top1 > 0.5, "fused validation top-1 %g", c->fused_top1);
    /* The evidence says "stranger" by a low top probability: a negative weight. */
    CHECK_MSG(c->unk_top < 0, "unknown weight on log top %g", c->unk_top);

    size_t q_known = 0, q_stranger = 0;
    while (roles[q_known] != SX_ROLE_TEST) q_known++;
    while (roles[q_stranger] != SX_ROLE_UNSEEN) q_stranger++;
    static const float priors[] = {0, 0.01f, 0.1f, 0.3f, 0.6f, 0.95f};
    double prev = -1, ap[ARTISTS];
    for (size_t i = 0; i < sizeof priors / sizeof priors[0]; i++) {
        c->unknown_prior = priors[i];
        double pu = fused_unknown(c, h, &d, roles, q_known, ap), s = pu;
        for (int a = 0; a < ARTISTS; a++) s += ap[a];
        CHECK_MSG(fabs(s - 1) < 1e-9, "prior %g: artists + unknown = %g", priors[i], s);
        if (i == 0) CHECK_MSG(pu == 0, "prior 0: unknown %g", pu);
        else CHECK_MSG(pu > prev, "prior %g: unknown %g not above %g", priors[i], pu, prev);
        prev = pu;
    }
    /* strangers get more "unknown" than indexed artists' held-out images, on average */
    c->unknown_prior = 0.5f;
    double u_known = 0, u_stranger = 0;
    size_t nk = 0, ns = 0;
    for (size_t q = 0; q < N; q++) {
        if (roles[q] == SX_ROLE_TEST) u_known += fused_unknown(c, h, &d, roles, q, ap), nk++;
        if (roles[q] == SX_ROLE_UNSEEN) u_stranger += fused_unknown(c, h, &d, roles, q, ap), ns++;
    }
    CHECK(nk > 0 && ns > 0);
    CHECK_MSG(u_stranger / (double)ns > u_known / (double)nk + 0.2,
              "mean unknown: strangers %g, indexed %g", u_stranger / (double)ns,
              u_known / (double)nk);
    /* without a classifier: the head's aggregate, unchanged */
    size_t gal[N], ng = sx_rows_with_role(roles, N, 1u << SX_ROLE_TRAIN, gal), nn[50];
    CHECK(sx_nearest(&d, &q_known, 1, gal, ng, 50, nn, NULL) == SIAMIDX_OK);
    float logit[50], scratch[256];
    int32_t art[50];
    sx_candidate_logits(h, &d, q_known, nn, 50, logit, art, scratch);
    double a1[ARTISTS], a2[ARTISTS];
    double u1 = sx_fuse(h, NULL, NULL, NULL, logit, art, 50, ARTISTS, a1);
    double u2 = sx_aggregate(logit, art, 50, h->attr_scale, h->attr_unknown, ARTISTS, a2);
    CHECK(u1 == u2 && !memcmp(a1, a2, sizeof a1));
    sx_classifier_free(c);
    siamidx_head_free(h);
}

int main(void) {
    test_separable();
    test_blob();
    test_prior_and_strangers();
    CHECK_DONE();
}

/* test_head.c - training the Siamese head on synthetic clustered embeddings. */
#include <math.h>

#include "check.h"
#include "siamidx_ext.h"
#include "base/pairs.h"
#include "nn/model.h"
#include "head/attribution.h"
#include "head/evaluate.h"
#include "head/head.h"
#include "head/head_train.h"
#include "head/labelled.h"
#include "head/split.h"

enum { ARTISTS = 24, PER = 30, DIM = 32, N = ARTISTS * PER };

/* Artists are cluster centres; paintings are noisy copies, L2-normalised. */
static void make_data(float *emb, int32_t *artist, uint64_t seed) {
    sx_rng rng;
    sx_rng_seed(&rng, seed);
    float centre[ARTISTS][DIM];
    for (int a = 0; a < ARTISTS; a++)
        for (int j = 0; j < DIM; j++)
            centre[a][j] = (float)(sx_rng_uniform(&rng) * 2 - 1);
    for (int i = 0; i < N; i++) {
        int a = i % ARTISTS; /* interleaved: the split must not rely on order */
        artist[i] = a;
        double ss = 0;
        for (int j = 0; j < DIM; j++) {
            /* one noisy dimension with a large offset: standardisation must tame it */
            float noise = (float)(sx_rng_uniform(&rng) * 2 - 1) * (j == 0 ? 6.0f : 0.9f);
            emb[i * DIM + j] = centre[a][j] + noise + (j == 0 ? 5.0f : 0.0f);
            ss += emb[i * DIM + j] * emb[i * DIM + j];
        }
        for (int j = 0; j < DIM; j++) emb[i * DIM + j] /= (float)sqrt(ss);
    }
}

static sx_train_data data_of(const float *emb, const int32_t *artist) {
    return (sx_train_data){.n = N, .dim = DIM, .emb = emb, .artist = artist,
                           .n_artists = ARTISTS};
}

static double prob(const sx_head *h, const float *a, const float *b) {
    siamidx_pair_result r;
    CHECK(siamidx_pair_embeddings(h, a, b, DIM, &r, NULL) == SIAMIDX_OK);
    return r.probability;
}

static void test_train_and_evaluate(const float *emb, const int32_t *artist) {
    sx_train_data d = data_of(emb, artist);
    sx_train_opts o;
    sx_train_opts_init(&o);
    o.seed = 3;
    o.holdout_artists = 4;
    uint8_t roles[N];
    sx_head *h = NULL;
    siamidx_error err;
    CHECK_MSG(sx_head_train(&d, &o, roles, &h, &err) == SIAMIDX_OK, "%s", err.message);
    if (!h) return;
    CHECK_MSG(h->report.val_auc > 0.95, "val auc %g", h->report.val_auc);
    CHECK_MSG(h->report.val_ece < 0.05, "val ece %g", h->report.val_ece);
    CHECK(h->threshold > 0.05 && h->threshold < 0.95);

    /* whole artists held out, nothing else */
    int unseen_artist[ARTISTS] = {0}, n_unseen = 0;
    for (int i = 0; i < N; i++) {
        if (roles[i] == SX_ROLE_UNSEEN) unseen_artist[artist[i]] = 1;
    }
    for (int i = 0; i < N; i++)
        CHECK((roles[i] == SX_ROLE_UNSEEN) == unseen_artist[artist[i]]);
    for (int a = 0; a < ARTISTS; a++) n_unseen += unseen_artist[a];
    CHECK(n_unseen == 4);
    CHECK(h->report.n_train + h->report.n_val + h->report.n_test + h->report.n_unseen == N);

    /* symmetric, exactly */
    for (int i = 0; i < 50; i++) {
        const float *a = emb + i * DIM, *b = emb + ((i * 7 + 3) % N) * DIM;
        CHECK(prob(h, a, b) == prob(h, b, a));
    }

    /* held-out evaluation: seen and unseen artists, pairs and attribution */
    sx_eval ev;
    CHECK(sx_evaluate(h, &d, roles, 1, &ev, &err) == SIAMIDX_OK);
    CHECK(ev.has_unseen);
    CHECK_MSG(ev.seen.auc > 0.95 && ev.unseen.auc > 0.9, "auc seen %g unseen %g", ev.seen.auc,
              ev.unseen.auc);
    CHECK_MSG(ev.seen.ece < 0.08, "test ece %g", ev.seen.ece);
    CHECK(ev.seen.eer < 0.15 && ev.seen.tar_at_far1 > 0.3);
    CHECK_MSG(ev.seen_attr.top1 > 0.8 && ev.seen_attr.top3 >= ev.seen_attr.top1,
              "top1 %g top3 %g", ev.seen_attr.top1, ev.seen_attr.top3);
    /* paintings by strangers mostly answer "unknown"; known ones mostly do not */
    CHECK_MSG(ev.unseen_attr.unknown_first > 0.5 && ev.seen_attr.unknown_first < 0.3,
              "unknown first: unseen %g seen %g", ev.unseen_attr.unknown_first,
              ev.seen_attr.unknown_first);
    CHECK(ev.unseen_attr.mean_top_prob < ev.seen_attr.mean_top_prob);

    /* the split record reproduces the roles */
    uint8_t again[N];
    CHECK(sx_head_roles(h, &d, again, &err) == SIAMIDX_OK);
    CHECK(memcmp(roles, again, N) == 0);

    /* serialisation round trip keeps every answer */
    uint8_t *blob;
    size_t len;
    CHECK(sx_head_to_blob(h, &blob, &len, &err) == SIAMIDX_OK);
    sx_head *h2 = NULL;
    CHECK_MSG(sx_head_from_blob(blob, len, &h2, &err) == SIAMIDX_OK, "%s", err.message);
    if (h2) {
        for (int i = 0; i < 20; i++)
            CHECK(prob(h, emb + i * DIM, emb + (i + 5) * DIM) ==
                  prob(h2, emb + i * DIM, emb + (i + 5) * DIM));
        CHECK(h2->threshold == h->threshold && h2->attr_unknown == h->attr_unknown);
        CHECK(h2->report.val_auc == h->report.val_auc);
        /* the validation pairs' reliability bins (pair reports' context) survive */
        uint64_t pairs = 0, same = 0;
        for (int k = 0; k < SX_HEAD_CALIB_BINS; k++) pairs += h->calib_n[k], same += h->calib_same[k];
        CHECK_MSG(h->has_calib && pairs == 10000 && same > 0 && same < pairs, "bins %llu/%llu",
                  (unsigned long long)pairs, (unsigned long long)same);
        CHECK(h2->has_calib && !memcmp(h2->calib_n, h->calib_n, sizeof h->calib_n) &&
              !memcmp(h2->calib_same, h->calib_same, sizeof h->calib_same));
        siamidx_calibration_bin bins[10];
        CHECK(siamidx_head_calibration(h2, bins, 10) == 10 && bins[9].hi == 1.0 &&
              bins[3].pairs == h->calib_n[3] && bins[3].same == h->calib_same[3]);
        /* the bins agree with the probabilities: high bins mostly same-artist pairs */
        CHECK(bins[9].pairs == 0 || bins[9].same * 2 > bins[9].pairs);
        CHECK(bins[0].pairs == 0 || bins[0].same * 2 < bins[0].pairs);
        CHECK(sx_head_roles(h2, &d, again, &err) == SIAMIDX_OK && !memcmp(roles, again, N));
    }
    siamidx_head_free(h2);
    h2 = NULL;
    /* a malformed calibration line is refused; a head without one has none */
    {
        sx_head *g = NULL;
        CHECK(sx_head_calibration_parse(h, "1/2,3/3", 7) == 0);
        const char *ok = "5/1,0/0,0/0,0/0,0/0,0/0,0/0,0/0,0/0,4/4";
        CHECK(sx_head_new(3, SX_FEAT_COS, &g, &err) == SIAMIDX_OK);
        CHECK(siamidx_head_calibration(g, NULL, 0) == 0);
        CHECK(sx_head_calibration_parse(g, ok, strlen(ok)) == 1 && g->calib_n[9] == 4);
        siamidx_head_free(g);
    }
    /* damaged blobs are refused, not trusted */
    CHECK(sx_head_from_blob(blob, len - 1, &h2, &err) == SIAMIDX_ERR_INDEX_CORRUPT && !h2);
    blob[0] = 'X';
    CHECK(sx_head_from_blob(blob, len, &h2, &err) == SIAMIDX_ERR_INDEX_CORRUPT);
    free(blob);
    siamidx_head_free(h2);

    /* attribution: artist probabilities and unknown sum to 1 */
    const float *cand[10];
    int32_t cart[10];
    for (int i = 0; i < 10; i++) cand[i] = emb + (i + 1) * DIM, cart[i] = artist[i + 1];
    double ap[ARTISTS], pu, sum = 0;
    float pp[10];
    CHECK(sx_attribute(h, emb, cand, cart, 10, ARTISTS, pp, ap, &pu, &err) == SIAMIDX_OK);
    for (int a = 0; a < ARTISTS; a++) sum += ap[a];
    CHECK(fabs(sum + pu - 1) < 1e-9 && pu > 0);
    for (int i = 0; i < 10; i++) CHECK(fabsf(pp[i] - (float)prob(h, emb, cand[i])) < 1e-6f);
    siamidx_head_free(h);
}

static void test_deterministic(const float *emb, const int32_t *artist) {
    sx_train_data d = data_of(emb, artist);
    sx_train_opts o;
    sx_train_opts_init(&o);
    o.epochs = 5;
    uint8_t *b1, *b2, *b3;
    size_t l1, l2, l3;
    sx_head *h1, *h2, *h3;
    CHECK(sx_head_train(&d, &o, NULL, &h1, NULL) == SIAMIDX_OK);
    CHECK(sx_head_train(&d, &o, NULL, &h2, NULL) == SIAMIDX_OK);
    o.seed = 99;
    CHECK(sx_head_train(&d, &o, NULL, &h3, NULL) == SIAMIDX_OK);
    sx_head_to_blob(h1, &b1, &l1, NULL);
    sx_head_to_blob(h2, &b2, &l2, NULL);
    sx_head_to_blob(h3, &b3, &l3, NULL);
    CHECK(l1 == l2 && !memcmp(b1, b2, l1));
    CHECK(l1 != l3 || memcmp(b1, b3, l1));
    free(b1), free(b2), free(b3);
    siamidx_head_free(h1), siamidx_head_free(h2), siamidx_head_free(h3);
}

/* Given test images replace the drawn test share; validation comes from the others. */
static void test_given_tests(const float *emb, const int32_t *artist) {
    sx_train_data d = data_of(emb, artist);
    sx_train_opts o;
    sx_train_opts_init(&o);
    o.val_fraction = 0.2;
    o.holdout_artists = 2;
    uint8_t given[N] = {0}, roles[N];
    for (int i = 0; i < N; i += 7) given[i] = 1; /* 103 images, every artist some */
    o.test_items = given;
    CHECK(sx_split_roles(&d, &o, roles, NULL) == SIAMIDX_OK);
    int per_val[ARTISTS] = {0}, per_given[ARTISTS] = {0}, unseen[ARTISTS] = {0};
    for (int i = 0; i < N; i++) {
        int a = artist[i];
        if (roles[i] == SX_ROLE_UNSEEN) {
            unseen[a]++;
            continue;
        }
        /* exactly the given images test, and none of them trains or validates */
        CHECK((roles[i] == SX_ROLE_TEST) == (given[i] == 1));
        per_val[a] += roles[i] == SX_ROLE_VAL;
        per_given[a] += given[i];
    }
    int held = 0;
    for (int a = 0; a < ARTISTS; a++) {
        if (unseen[a]) {
            CHECK(unseen[a] == PER); /* a held-out artist stays whole, given or not */
            held++;
            continue;
        }
        int others = PER - per_given[a];
        CHECK(per_val[a] == (int)(others * 0.1 + 0.5));
    }
    CHECK(held == 2);
    /* deterministic, and the same seed without given images draws a different split */
    uint8_t again[N], drawn[N];
    CHECK(sx_split_roles(&d, &o, again, NULL) == SIAMIDX_OK);
    CHECK(!memcmp(roles, again, N));
    o.test_items = NULL;
    CHECK(sx_split_roles(&d, &o, drawn, NULL) == SIAMIDX_OK);
    CHECK(memcmp(roles, drawn, N));
}

static void test_errors(const float *emb, const int32_t *artist) {
    sx_train_data d = data_of(emb, artist);
    sx_train_opts o;
    sx_train_opts_init(&o);
    sx_head *h = NULL;
    siamidx_error err;
    o.holdout_artists = ARTISTS - 1;
    CHECK(sx_head_train(&d, &o, NULL, &h, &err) == SIAMIDX_ERR_INVALID_ARGUMENT && !h);
    CHECK(strstr(err.message, "hold out") != NULL);
    sx_train_opts_init(&o);
    o.val_fraction = 1.5;
    CHECK(sx_head_train(&d, &o, NULL, &h, &err) == SIAMIDX_ERR_INVALID_ARGUMENT);
    int32_t bad[N];
    memcpy(bad, artist, sizeof bad);
    bad[7] = ARTISTS;
    d.artist = bad;
    sx_train_opts_init(&o);
    CHECK(sx_head_train(&d, &o, NULL, &h, &err) == SIAMIDX_ERR_INVALID_ARGUMENT);
    siamidx_pair_result r;
    CHECK(siamidx_pair_embeddings(NULL, emb, emb, DIM, &r, &err) == SIAMIDX_ERR_NO_HEAD);
    CHECK(strstr(err.message, "siamidx train") != NULL);
}

/* A one-digit dimension round-trips; every truncation and byte flip of a
   blob is refused or parsed, never a crash (run under ASan). */
static void test_blob_robust(void) {
    sx_head *h, *g = NULL;
    CHECK(sx_head_new(3, SX_FEAT_ABS | SX_FEAT_COS, &h, NULL) == SIAMIDX_OK);
    h->w[0] = 0.5f, h->w[3] = -2.0f, h->bias = 0.25f;
    uint8_t *blob;
    size_t len;
    CHECK(sx_head_to_blob(h, &blob, &len, NULL) == SIAMIDX_OK);
    CHECK(sx_head_from_blob(blob, len, &g, NULL) == SIAMIDX_OK && g && g->dim == 3);
    if (g) CHECK(g->n_feat == 4 && g->w[3] == -2.0f && g->bias == 0.25f);
    siamidx_head_free(g);
    for (size_t n = 0; n < len; n++) {
        g = NULL;
        CHECK(sx_head_from_blob(blob, n, &g, NULL) != SIAMIDX_OK && !g);
    }
    for (size_t i = 0; i < len; i++) {
        uint8_t keep = blob[i];
        blob[i] ^= 0x5a;
        g = NULL;
        if (sx_head_from_blob(blob, len, &g, NULL) == SIAMIDX_OK) siamidx_head_free(g);
        blob[i] = keep;
    }
    free(blob);
    siamidx_head_free(h);
}

/* A blob of dim 3, features abs,cos: HEAD_MAGIC, `text`, "data", then the
   floats (mean, inv_std, w: 3 + 3 + 4), every 1/std equal to `inv_std`. */
static size_t damaged_blob(uint8_t *out, const char *text, size_t text_len, float inv_std) {
    static const char magic[] = "SIAMIDX-HEAD 1\ndim=3\nfeatures=abs,cos\n";
    float v[10] = {0.1f, -0.2f, 0.05f, inv_std, inv_std, inv_std, 0.5f, -0.25f, 1.0f, 2.0f};
    size_t n = 0;
    memcpy(out, magic, sizeof magic - 1), n += sizeof magic - 1;
    memcpy(out + n, text, text_len), n += text_len;
    memcpy(out + n, "data\n", 5), n += 5;
    memcpy(out + n, v, sizeof v); /* little-endian host, as the blob */
    return n + sizeof v;
}

/* Damage found by fuzz/fuzz_head.c (and the UB casts next to it): refused
   as corrupt, or parsed into a head whose scores stay probabilities. */
static void test_blob_damage(void) {
    static const struct { const char *text; size_t len; const char *want; } bad[] = {
        {"seed=1\nbes\0\0t_epoch=2\n", 22, "NUL byte"},  /* cut the info in two */
        {"epochs_run=1e300\n", 17, "epochs_run"},         /* (int)1e300 is UB */
        {"n_train=-1\n", 11, "n_train"},                  /* (size_t)-1.0 is UB */
        {"bias=nan\n", 9, "bias"},
        {"platt_a=1e30\n", 13, "platt_a"},
        {"dim=99999999999\n", 16, "missing dim"},        /* atoi overflow */
    };
    uint8_t b[512];
    siamidx_error err;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sx_head *h = NULL;
        size_t n = damaged_blob(b, bad[i].text, bad[i].len, 1.0f);
        siamidx_status s = sx_head_from_blob(b, n, &h, &err);
        CHECK_MSG(s == SIAMIDX_ERR_INDEX_CORRUPT && !h && strstr(err.message, bad[i].want),
                  "case %zu: status %d: %s", i, s, s ? err.message : "accepted");
        siamidx_head_free(h);
    }
    sx_head *h = NULL;
    CHECK(sx_head_from_blob(b, damaged_blob(b, "", 0, INFINITY), &h, &err) ==
          SIAMIDX_ERR_INDEX_CORRUPT && !h);
    /* A tiny 1/std is legal, and must not make 1/|z| overflow into NaN scores. */
    CHECK(sx_head_from_blob(b, damaged_blob(b, "", 0, 1.4e-43f), &h, &err) == SIAMIDX_OK);
    if (h) {
        float e1[3] = {1, 0, 0}, e2[3] = {0.6f, 0.8f, 0};
        siamidx_pair_result r;
        CHECK(siamidx_pair_embeddings(h, e1, e2, 3, &r, &err) == SIAMIDX_OK);
        CHECK_MSG(r.probability >= 0 && r.probability <= 1, "probability %g", r.probability);
    }
    siamidx_head_free(h);
}

int main(void) {
    test_blob_robust();
    test_blob_damage();
    float *emb = malloc(sizeof(float) * N * DIM);
    int32_t artist[N];
    make_data(emb, artist, 11);
    test_train_and_evaluate(emb, artist);
    test_deterministic(emb, artist);
    test_given_tests(emb, artist);
    test_errors(emb, artist);
    free(emb);
    CHECK_DONE();
}

/* test_metrics.c - pair metrics against brute force and hand-worked cases. */
#include <math.h>

#include "check.h"
#include "base/metrics.h"
#include "base/pairs.h"

/* AUC as its definition: P(score_pos > score_neg) + 0.5 P(tie), over all pairs. */
static double brute_auc(const float *s, const uint8_t *y, size_t n) {
    double wins = 0, pairs = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            if (y[i] && !y[j]) {
                wins += s[i] > s[j] ? 1 : s[i] == s[j] ? 0.5 : 0;
                pairs++;
            }
    return wins / pairs;
}

static void test_auc_random(void) {
    sx_rng rng;
    sx_rng_seed(&rng, 42);
    for (int trial = 0; trial < 20; trial++) {
        size_t n = 50 + sx_rng_below(&rng, 400);
        float *s = malloc(n * sizeof *s);
        uint8_t *y = malloc(n);
        int levels = trial % 2 ? 7 : 100000; /* odd trials: many ties */
        for (size_t i = 0; i < n; i++) {
            y[i] = sx_rng_uniform(&rng) < 0.4;
            s[i] = (float)sx_rng_below(&rng, (size_t)levels) / levels + (y[i] ? 0.1f : 0.0f);
        }
        double a = sx_roc_auc(s, y, n), b = brute_auc(s, y, n);
        CHECK_MSG(fabs(a - b) < 1e-9, "trial %d: auc %.12f brute %.12f", trial, a, b);
        free(s);
        free(y);
    }
}

static void test_known_case(void) {
    /* descending: 0.9+ 0.8+ 0.7+ 0.65- 0.6+ 0.3- 0.2- 0.1- */
    float s[] = {0.6f, 0.7f, 0.8f, 0.9f, 0.1f, 0.2f, 0.3f, 0.65f};
    uint8_t y[] = {1, 1, 1, 1, 0, 0, 0, 0};
    CHECK(fabs(sx_roc_auc(s, y, 8) - 15.0 / 16) < 1e-12);
    CHECK_MSG(fabs(sx_eer(s, y, 8) - 0.25) < 1e-12, "eer %g", sx_eer(s, y, 8));
    CHECK_MSG(fabs(sx_tar_at_far(s, y, 8, 0.01) - 0.75) < 1e-12, "tar %g",
              sx_tar_at_far(s, y, 8, 0.01));
    CHECK(fabs(sx_tar_at_far(s, y, 8, 0.25) - 1.0) < 1e-12);
    double t = sx_best_threshold(s, y, 8);
    CHECK_MSG(fabs(sx_accuracy_at(s, y, 8, t) - 0.875) < 1e-12, "t %g", t);
    CHECK(fabs(sx_accuracy_at(s, y, 8, 0.5) - 0.875) < 1e-12);
    CHECK(fabs(sx_accuracy_at(s, y, 8, 0.95) - 0.5) < 1e-12);
}

static void test_separable_and_degenerate(void) {
    float s[] = {0.1f, 0.2f, 0.8f, 0.9f};
    uint8_t y[] = {0, 0, 1, 1};
    CHECK(sx_roc_auc(s, y, 4) == 1.0);
    CHECK(sx_eer(s, y, 4) == 0.0);
    CHECK(sx_tar_at_far(s, y, 4, 0.0) == 1.0);
    double t = sx_best_threshold(s, y, 4);
    CHECK(t > 0.2 && t <= 0.8);
    uint8_t inv[] = {1, 1, 0, 0};
    CHECK(sx_roc_auc(s, inv, 4) == 0.0);
    CHECK(fabs(sx_eer(s, inv, 4) - 1.0) < 1e-12);
    uint8_t one[] = {1, 1, 1, 1};
    CHECK(isnan(sx_roc_auc(s, one, 4)));
    /* all scores tied: AUC 0.5, EER 0.5 */
    float tie[] = {0.5f, 0.5f, 0.5f, 0.5f};
    CHECK(sx_roc_auc(tie, y, 4) == 0.5);
    CHECK(fabs(sx_eer(tie, y, 4) - 0.5) < 1e-12);
}

static void test_ece(void) {
    enum { N = 1000 };
    float p[N];
    uint8_t y[N];
    for (int i = 0; i < N; i++) p[i] = 0.8f, y[i] = i % 5 != 0; /* 80% positive */
    CHECK_MSG(sx_ece(p, y, N, 10) < 1e-6, "ece %g", sx_ece(p, y, N, 10));
    for (int i = 0; i < N; i++) p[i] = 0.9f, y[i] = i % 2; /* 50% positive */
    CHECK(fabs(sx_ece(p, y, N, 10) - 0.4) < 1e-6);
    /* two bins, each off by 0.1 in opposite directions: ECE 0.1 */
    for (int i = 0; i < N; i++) {
        p[i] = i < N / 2 ? 0.2f : 0.7f;
        y[i] = i < N / 2 ? (i % 10 < 3) : (i % 10 < 6);
    }
    CHECK_MSG(fabs(sx_ece(p, y, N, 10) - 0.1) < 1e-6, "ece %g", sx_ece(p, y, N, 10));
    p[0] = 1.0f; /* probability 1 falls in the last bin, not past it */
    CHECK(!isnan(sx_ece(p, y, N, 10)));
}

static void test_pairs_balanced(void) {
    /* One huge artist and many small ones: pairs must not follow image counts. */
    enum { N = 1000 };
    int32_t label[N];
    size_t rows[N];
    for (int i = 0; i < N; i++) label[i] = i < 800 ? 0 : 1 + (i - 800) / 20, rows[i] = i;
    sx_groups g;
    CHECK(sx_groups_build(label, rows, N, &g, NULL) == SIAMIDX_OK);
    CHECK(g.n_groups == 11 && g.n_pairable == 11);
    sx_pair pairs[22000];
    sx_rng rng;
    sx_rng_seed(&rng, 7);
    CHECK(sx_sample_pairs(&g, 22000, &rng, pairs) == 22000);
    size_t same = 0, big_same = 0, bad = 0;
    for (int i = 0; i < 22000; i++) {
        int la = label[pairs[i].a], lb = label[pairs[i].b];
        if (pairs[i].same) same++, big_same += la == 0;
        if ((la == lb) != pairs[i].same || pairs[i].a == pairs[i].b) bad++;
    }
    CHECK(same == 11000 && bad == 0);
    /* the big artist gets about 1/11 of same pairs, not 80% */
    CHECK_MSG(big_same > 800 && big_same < 1200, "big artist same pairs %zu", big_same);
    sx_groups_free(&g);
}

/* ROC: ends at (0,0) and (1,1), monotone, thinned to the cap, one point per tie group. */
static void test_roc_curve(void) {
    const float s[] = {0.9f, 0.8f, 0.8f, 0.3f, 0.1f};
    const uint8_t y[] = {1, 1, 0, 0, 1};
    float far[8], tar[8];
    size_t n = sx_roc_curve(s, y, 5, 8, far, tar);
    CHECK_MSG(n == 5, "%zu points", n); /* (0,0) + 4 tie groups */
    CHECK(far[0] == 0 && tar[0] == 0 && far[n - 1] == 1 && tar[n - 1] == 1);
    CHECK(fabsf(tar[1] - 1.0f / 3) < 1e-6f && far[1] == 0);      /* 0.9 */
    CHECK(fabsf(tar[2] - 2.0f / 3) < 1e-6f && far[2] == 0.5f);   /* 0.8 tie: both move */
    enum { N = 5000 };
    static float big[N];
    static uint8_t lab[N];
    for (int i = 0; i < N; i++) big[i] = (float)((i * 7919) % N) / N, lab[i] = (i * 31) % 3 == 0;
    float bf[50], bt[50];
    n = sx_roc_curve(big, lab, N, 50, bf, bt);
    CHECK_MSG(n >= 40 && n <= 50, "%zu points", n);
    CHECK(bf[n - 1] == 1 && bt[n - 1] == 1);
    for (size_t i = 1; i < n; i++) CHECK(bf[i] >= bf[i - 1] && bt[i] >= bt[i - 1]);
    const uint8_t one_class[] = {1, 1, 1, 1, 1};
    CHECK(sx_roc_curve(s, one_class, 5, 8, far, tar) == 0);
}

int main(void) {
    test_roc_curve();
    test_auc_random();
    test_known_case();
    test_separable_and_degenerate();
    test_ece();
    test_pairs_balanced();
    CHECK_DONE();
}

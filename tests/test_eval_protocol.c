/* test_eval_protocol.c - the evaluation protocol's pair drawing and metrics
   (libsiamidx/eval_protocol.c) on small fixtures worked out by hand. */
#include <math.h>

#include "check.h"
#include "head/eval_protocol.h"
#include "base/metrics.h"
#include "base/pairs.h"

#define NEAR(a, b) (fabs((double)(a) - (double)(b)) < 1e-9)

/*
 * Fixture: artist -> (source, style), images.
 *   0: s0 style0, 4     1: s0 style0, 3     2: s0 style1, 5    5: s0 style1, 1 (not pairable)
 *   3: s1 style2, 2     4: s1 style2, 6
 *   6: s0 style3, 3  (alone in its style: style negatives fall back to the source)
 *   7: s2 style4, 2  (alone in its source: both negatives fall back to any source)
 * Row 0 (artist 0) and row 30 (artist 4) are left out of the rows drawn from.
 */
typedef struct fixture {
    sx_ep_item item[64];
    size_t n, rows[64], n_rows;
} fixture;

static void make_fixture(fixture *f) {
    static const int spec[][4] = {{0, 0, 0, 4}, {1, 0, 0, 3}, {2, 0, 1, 5}, {5, 0, 1, 1},
                                  {3, 1, 2, 2}, {4, 1, 2, 6}, {6, 0, 3, 3}, {7, 2, 4, 2}};
    memset(f, 0, sizeof *f);
    for (size_t s = 0; s < sizeof spec / sizeof spec[0]; s++)
        for (int k = 0; k < spec[s][3]; k++)
            f->item[f->n++] = (sx_ep_item){spec[s][0], spec[s][1], spec[s][2]};
    /* Interleave rows so that groups cannot rely on contiguous input. */
    for (size_t i = f->n; i-- > 0;)
        if (i != 0 && i != 19) f->rows[f->n_rows++] = i;
}

static int in_rows(const fixture *f, size_t r) {
    for (size_t i = 0; i < f->n_rows; i++)
        if (f->rows[i] == r) return 1;
    return 0;
}

static void test_pairs(void) {
    fixture f;
    make_fixture(&f);
    CHECK(f.item[19].artist == 4); /* the left-out row of artist 4 */
    const size_t n_pos = 700;      /* 7 pairable artists: 100 each */
    sx_ep_pairs p;
    siamidx_error err;
    CHECK(sx_ep_draw_pairs(f.item, f.rows, f.n_rows, n_pos, 42, &p, &err) == SIAMIDX_OK);
    CHECK(p.n == n_pos);
    size_t per_artist[8] = {0}, style_fb = 0, source_fb = 0, anchor_a = 0;
    for (size_t i = 0; i < p.n; i++) {
        const sx_ep_pair *pos = &p.pos[i], *ns = &p.neg_source[i], *nt = &p.neg_style[i];
        const sx_ep_item *a = &f.item[pos->a], *b = &f.item[pos->b];
        /* positives: two different images of one artist, from the rows given */
        CHECK(pos->a != pos->b && a->artist == b->artist);
        CHECK(in_rows(&f, pos->a) && in_rows(&f, pos->b));
        per_artist[a->artist]++;
        /* round-robin: the artist sequence repeats with period 7 */
        if (i >= 7) CHECK(f.item[p.pos[i - 7].a].artist == a->artist);
        /* both negatives keep the same anchor, an image of the positive */
        CHECK(ns->a == nt->a && (ns->a == pos->a || ns->a == pos->b));
        anchor_a += ns->a == pos->a;
        const sx_ep_item *anc = &f.item[ns->a], *x = &f.item[ns->b], *y = &f.item[nt->b];
        CHECK(in_rows(&f, ns->b) && in_rows(&f, nt->b));
        CHECK(x->artist != anc->artist && y->artist != anc->artist);
        int alone_in_source = anc->artist == 7, alone_in_style = anc->artist == 6;
        if (alone_in_source) {
            CHECK(p.source_fell_back[i] == 3 && p.style_fell_back[i] == 1);
            CHECK(x->source != anc->source && y->source != anc->source);
        } else {
            CHECK(p.source_fell_back[i] == 0);
            CHECK(x->source == anc->source && y->source == anc->source);
            if (alone_in_style) CHECK(p.style_fell_back[i] == 1 && y->style != anc->style);
            else CHECK(p.style_fell_back[i] == 0 && y->style == anc->style);
        }
        style_fb += p.style_fell_back[i];
        source_fb += (p.source_fell_back[i] & 1) + (p.source_fell_back[i] >> 1);
    }
    for (int a = 0; a < 8; a++)
        CHECK_MSG(per_artist[a] == (a == 5 ? 0u : 100u), "artist %d: %zu positives", a,
                  per_artist[a]);
    CHECK(style_fb == 200 && p.style_fallback == 200); /* artists 6 and 7 */
    CHECK(source_fb == 200 && p.source_fallback == 200); /* artist 7, both sets */
    CHECK(anchor_a > 250 && anchor_a < 450);             /* either image anchors */

    /* Same seed, same draw; another seed, another draw. */
    sx_ep_pairs q, r;
    CHECK(sx_ep_draw_pairs(f.item, f.rows, f.n_rows, n_pos, 42, &q, &err) == SIAMIDX_OK);
    CHECK(sx_ep_draw_pairs(f.item, f.rows, f.n_rows, n_pos, 43, &r, &err) == SIAMIDX_OK);
    CHECK(q.n == p.n && !memcmp(q.pos, p.pos, p.n * sizeof *p.pos) &&
          !memcmp(q.neg_source, p.neg_source, p.n * sizeof *p.pos) &&
          !memcmp(q.neg_style, p.neg_style, p.n * sizeof *p.pos));
    CHECK(r.n == p.n && (memcmp(r.pos, p.pos, p.n * sizeof *p.pos) ||
                         memcmp(r.neg_style, p.neg_style, p.n * sizeof *p.pos)));
    sx_ep_pairs_free(&p), sx_ep_pairs_free(&q), sx_ep_pairs_free(&r);

    /* Fewer positives than artists: each artist at most once. */
    CHECK(sx_ep_draw_pairs(f.item, f.rows, f.n_rows, 5, 1, &p, &err) == SIAMIDX_OK && p.n == 5);
    for (size_t i = 0; i < 5; i++)
        for (size_t j = 0; j < i; j++) CHECK(f.item[p.pos[i].a].artist != f.item[p.pos[j].a].artist);
    sx_ep_pairs_free(&p);

    /* One artist: nothing to draw against, no pairs, no error. */
    size_t one[] = {1, 2, 3};
    CHECK(sx_ep_draw_pairs(f.item, one, 3, 10, 1, &p, &err) == SIAMIDX_OK && p.n == 0);
    sx_ep_pairs_free(&p);
    CHECK(sx_ep_draw_pairs(f.item, f.rows, 0, 10, 1, &p, &err) == SIAMIDX_OK && p.n == 0);
    sx_ep_pairs_free(&p);
}

/* AUC as its definition, over all positive-negative pairs, ties half. */
static double brute_auc(const float *pos, size_t np, const float *neg, size_t nn) {
    double w = 0;
    for (size_t i = 0; i < np; i++)
        for (size_t j = 0; j < nn; j++) w += pos[i] > neg[j] ? 1 : pos[i] == neg[j] ? 0.5 : 0;
    return w / ((double)np * (double)nn);
}

static void test_verification(void) {
    /* Worked by hand (docs in the comments). */
    const float pos[] = {0.9f, 0.8f, 0.5f, 0.5f}, neg[] = {0.7f, 0.5f, 0.2f, 0.1f};
    sx_ep_verification v;
    sx_ep_verify(pos, 4, neg, 4, &v);
    CHECK(v.n_pos == 4 && v.n_neg == 4);
    /* 0.9, 0.8 beat all four; each 0.5 beats 0.2, 0.1, ties 0.5, loses to 0.7: 13/16 */
    CHECK_MSG(NEAR(v.auc, 13.0 / 16), "auc %.9f", v.auc);
    /* FAR/FRR: (0, .75) (0, .5) (.25, .5) then (.5, 0): they cross at 1/3 of the last step */
    CHECK_MSG(fabs(v.eer - 1.0 / 3) < 1e-6, "eer %.9f", v.eer);
    /* FAR 0 holds down to 0.8: 2 of 4 positives accepted */
    CHECK_MSG(NEAR(v.tar_far1, 0.5), "tar %.9f", v.tar_far1);
    /* singleton bins |p - y|: .1 .2 .7 .2 .1, the 0.5 bin |1.5 - 2| = .5: 1.8 / 8 */
    CHECK_MSG(fabs(v.ece - 0.225) < 1e-6, "ece %.9f", v.ece);

    /* TAR at 1% FAR: 200 negatives i/200, so two may be accepted */
    float np_[200], nn_[200];
    for (int i = 0; i < 200; i++) nn_[i] = (float)i / 200.0f;
    for (int i = 0; i < 200; i++) np_[i] = i < 50 ? 0.999f : i < 100 ? 0.9925f : 0.5f;
    sx_ep_verify(np_, 200, nn_, 200, &v);
    CHECK_MSG(NEAR(v.tar_far1, 0.5), "tar %.9f", v.tar_far1);
    /* a positive above the third negative still counts, one below it does not */
    np_[100] = 0.9874f;
    sx_ep_verify(np_, 200, nn_, 200, &v);
    CHECK_MSG(NEAR(v.tar_far1, 101.0 / 200), "tar %.9f", v.tar_far1);
    np_[100] = 0.984f;
    sx_ep_verify(np_, 200, nn_, 200, &v);
    CHECK_MSG(NEAR(v.tar_far1, 0.5), "tar %.9f", v.tar_far1);

    /* Against brute force, with many ties (scores on a coarse grid). */
    sx_rng rng;
    sx_rng_seed(&rng, 7);
    float a[300], b[250];
    for (int i = 0; i < 300; i++) a[i] = (float)(sx_rng_below(&rng, 20) + 5) / 30.0f;
    for (int i = 0; i < 250; i++) b[i] = (float)sx_rng_below(&rng, 20) / 30.0f;
    sx_ep_verify(a, 300, b, 250, &v);
    CHECK_MSG(fabs(v.auc - brute_auc(a, 300, b, 250)) < 1e-12, "auc %.9f vs %.9f", v.auc,
              brute_auc(a, 300, b, 250));
    CHECK(v.eer > 0 && v.eer < 0.5 && v.ece >= 0 && v.ece <= 1);

    /* Perfect separation: AUC 1, EER 0, TAR 1. */
    const float hi[] = {0.9f, 0.8f}, lo[] = {0.2f, 0.1f, 0.3f};
    sx_ep_verify(hi, 2, lo, 3, &v);
    CHECK(NEAR(v.auc, 1) && NEAR(v.eer, 0) && NEAR(v.tar_far1, 1));

    /* Unmeasurable: NaN, never 0. */
    sx_ep_verify(hi, 0, lo, 3, &v);
    CHECK(isnan(v.auc) && isnan(v.eer) && isnan(v.tar_far1) && !isnan(v.ece));
    sx_ep_verify(hi, 0, lo, 0, &v);
    CHECK(isnan(v.auc) && isnan(v.eer) && isnan(v.tar_far1) && isnan(v.ece));
}

static void test_attribution(void) {
    const double p1[] = {0.1, 0.5, 0.3, 0.0};
    CHECK(sx_ep_rank(p1, 4, 1) == 0);
    CHECK(sx_ep_rank(p1, 4, 2) == 1);
    CHECK(sx_ep_rank(p1, 4, 0) == 2);
    CHECK(sx_ep_rank(p1, 4, 3) == -1); /* not among the candidates at all */
    CHECK(sx_ep_rank(p1, 4, 4) == -1);
    const double tie[] = {0.4, 0.4, 0.1};
    CHECK(sx_ep_rank(tie, 3, 0) == 1 && sx_ep_rank(tie, 3, 1) == 1); /* ties go against */

    /* artist 0: ranks 0, 0, 1; artist 1: rank 2; artist 2: not named */
    const sx_ep_query q[] = {{0, 0, 0.10, 0.60, 0}, {0, 0, 0.70, 0.20, 0}, {0, 1, 0.20, 0.50, 1},
                             {1, 2, 0.50, 0.40, 0}, {2, -1, 0.90, 0.05, 0}};
    sx_ep_attribution a;
    siamidx_error err;
    CHECK(sx_ep_attribute(q, 5, 4, &a, &err) == SIAMIDX_OK);
    CHECK(a.n_queries == 5 && a.n_artists == 3);
    CHECK(NEAR(a.top1, 0.4) && NEAR(a.top3, 0.8));
    CHECK_MSG(NEAR(a.balanced_top1, (2.0 / 3 + 0 + 0) / 3), "balanced %.9f", a.balanced_top1);
    CHECK(NEAR(a.unknown_first, 3.0 / 5)); /* 0.70 > 0.20, 0.50 > 0.40, 0.90 > 0.05 */
    CHECK(NEAR(a.mean_unknown, (0.1 + 0.7 + 0.2 + 0.5 + 0.9) / 5));

    CHECK(sx_ep_attribute(q, 0, 4, &a, &err) == SIAMIDX_OK);
    CHECK(a.n_queries == 0 && isnan(a.top1) && isnan(a.balanced_top1) && isnan(a.unknown_first));
    const sx_ep_query bad[] = {{9, 0, 0.1, 0.2, 9}};
    CHECK(sx_ep_attribute(bad, 1, 4, &a, &err) == SIAMIDX_ERR_INVALID_ARGUMENT);
}

static void test_open_set(void) {
    const double indexed[] = {0.1, 0.4, 0.4, 0.8};
    /* 0.4 beats 0.1, ties two 0.4s (1), loses to 0.8; 0.9 beats all; 0.05 none: 6/12 */
    const double s1[] = {0.4, 0.9, 0.05};
    CHECK(NEAR(sx_ep_open_set_auroc(indexed, 4, s1, 3), 0.5));
    const double s2[] = {0.5, 0.9}; /* 3 + 4 of 8 */
    CHECK(NEAR(sx_ep_open_set_auroc(indexed, 4, s2, 2), 7.0 / 8));
    /* doubles closer than a float can tell are still ordered */
    const double i3[] = {0.9999999990}, s3[] = {0.9999999995};
    CHECK(NEAR(sx_ep_open_set_auroc(i3, 1, s3, 1), 1.0));
    CHECK(isnan(sx_ep_open_set_auroc(indexed, 4, s1, 0)));
    CHECK(isnan(sx_ep_open_set_auroc(indexed, 0, s1, 3)));
}

int main(void) {
    test_pairs();
    test_verification();
    test_attribution();
    test_open_set();
    CHECK_DONE();
}

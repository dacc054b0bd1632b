/*
 * eval_protocol.c - pair drawing and scoring of the evaluation protocol.
 *
 * Why the negatives are drawn this way: the paintings come from sources
 * processed differently (one posterized to 150 px, one squashed to 224 px),
 * so a random different-artist pair is often told apart by its processing
 * alone. A negative that shares its anchor's source (and, harder, its
 * WikiArt style folder: Baroque against Baroque) asks the question a user
 * asks: Rubens or Jordaens, not Rubens or a posterized Warhol.
 *
 * Pure functions over label and score arrays: no index, no head.
 */
#include "head/eval_protocol.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/metrics.h"
#include "base/pairs.h"

/* ---- pairs ----------------------------------------------------------------- */

/* Rows grouped by one label (CSR), and where each row sits. */
typedef struct by_label {
    sx_groups g;
    size_t *group_of; /* [max row + 1]: group index of a row */
} by_label;

static siamidx_status group_rows(const sx_ep_item *items, const size_t *rows, size_t n,
                                 size_t max_row, int which, by_label *out, siamidx_error *err) {
    memset(out, 0, sizeof *out);
    int32_t *label = malloc((max_row + 1) * sizeof *label);
    out->group_of = malloc((max_row + 1) * sizeof *out->group_of);
    if (!label || !out->group_of) {
        free(label);
        free(out->group_of);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "evaluation pairs: out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        const sx_ep_item *it = &items[rows[i]];
        label[rows[i]] = which == 0 ? it->artist : which == 1 ? it->source : it->style;
    }
    siamidx_status st = sx_groups_build(label, rows, n, &out->g, err);
    free(label);
    if (st) {
        free(out->group_of);
        out->group_of = NULL;
        return st;
    }
    for (size_t k = 0; k < out->g.n_groups; k++)
        for (size_t j = out->g.start[k]; j < out->g.start[k + 1]; j++)
            out->group_of[out->g.items[j]] = k;
    return SIAMIDX_OK;
}

static void by_label_free(by_label *b) {
    sx_groups_free(&b->g);
    free(b->group_of);
}

/*
 * An image of group k by an artist other than `artist`, or SIZE_MAX when the
 * group has none. Rejection sampling first (cheap when others abound), then
 * an exact draw among the eligible ones, so the result never depends on
 * luck and a group with a single other image still finds it.
 */
static size_t other_artist_in(const sx_ep_item *items, const sx_groups *g, size_t k,
                              int32_t artist, sx_rng *rng) {
    size_t lo = g->start[k], n = g->start[k + 1] - lo;
    for (int t = 0; t < 32; t++) {
        size_t r = g->items[lo + sx_rng_below(rng, n)];
        if (items[r].artist != artist) return r;
    }
    size_t eligible = 0;
    for (size_t j = 0; j < n; j++) eligible += items[g->items[lo + j]].artist != artist;
    if (!eligible) return SIZE_MAX;
    size_t want = sx_rng_below(rng, eligible);
    for (size_t j = 0; j < n; j++)
        if (items[g->items[lo + j]].artist != artist && want-- == 0) return g->items[lo + j];
    return SIZE_MAX; /* unreachable */
}

/* Any row by another artist (the last fallback). */
static size_t other_artist_anywhere(const sx_ep_item *items, const by_label *all, int32_t artist,
                                    sx_rng *rng) {
    return other_artist_in(items, &all->g, 0, artist, rng);
}

void sx_ep_pairs_free(sx_ep_pairs *p) {
    if (!p) return;
    free(p->pos);
    free(p->neg_source);
    free(p->neg_style);
    free(p->style_fell_back);
    free(p->source_fell_back);
    memset(p, 0, sizeof *p);
}

typedef struct draw_ctx {
    const sx_ep_item *items;
    by_label artist, source, style, all;
    sx_rng rng;
} draw_ctx;

/* Negative partner for anchor x: same source (and same style when want_style). */
static size_t negative_for(draw_ctx *c, size_t x, int want_style, int *fell_style,
                           int *fell_source) {
    int32_t artist = c->items[x].artist;
    size_t r = SIZE_MAX;
    *fell_style = *fell_source = 0;
    if (want_style) {
        r = other_artist_in(c->items, &c->style.g, c->style.group_of[x], artist, &c->rng);
        if (r != SIZE_MAX) return r;
        *fell_style = 1;
    }
    r = other_artist_in(c->items, &c->source.g, c->source.group_of[x], artist, &c->rng);
    if (r != SIZE_MAX) return r;
    *fell_source = 1;
    return other_artist_anywhere(c->items, &c->all, artist, &c->rng);
}

static siamidx_status draw_all(draw_ctx *c, size_t n_pos, sx_ep_pairs *out,
                               siamidx_error *err) {
    const sx_groups *ga = &c->artist.g;
    size_t *order = malloc((ga->n_groups + 1) * sizeof *order), p = 0;
    if (!order) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "evaluation pairs: out of memory");
    for (size_t k = 0; k < ga->n_groups; k++)
        if (ga->start[k + 1] - ga->start[k] >= 2) order[p++] = k;
    sx_shuffle(&c->rng, order, p);
    out->pos = malloc(n_pos * sizeof *out->pos);
    out->neg_source = malloc(n_pos * sizeof *out->neg_source);
    out->neg_style = malloc(n_pos * sizeof *out->neg_style);
    out->style_fell_back = calloc(n_pos, 1);
    out->source_fell_back = calloc(n_pos, 1);
    if (!out->pos || !out->neg_source || !out->neg_style || !out->style_fell_back ||
        !out->source_fell_back) {
        free(order);
        sx_ep_pairs_free(out);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "evaluation pairs: out of memory");
    }
    for (size_t i = 0; i < n_pos; i++) {
        size_t k = order[i % p], lo = ga->start[k], sz = ga->start[k + 1] - lo;
        size_t x = sx_rng_below(&c->rng, sz), y = sx_rng_below(&c->rng, sz - 1);
        if (y >= x) y++;
        size_t a = ga->items[lo + x], b = ga->items[lo + y];
        out->pos[i] = (sx_ep_pair){(uint32_t)a, (uint32_t)b};
        size_t anchor = sx_rng_below(&c->rng, 2) ? b : a;
        int fst, fsrc;
        size_t ns = negative_for(c, anchor, 0, &fst, &fsrc);
        out->neg_source[i] = (sx_ep_pair){(uint32_t)anchor, (uint32_t)ns};
        out->source_fell_back[i] |= (uint8_t)fsrc;
        size_t nt = negative_for(c, anchor, 1, &fst, &fsrc);
        out->neg_style[i] = (sx_ep_pair){(uint32_t)anchor, (uint32_t)nt};
        out->style_fell_back[i] = (uint8_t)fst;
        out->source_fell_back[i] |= (uint8_t)(fsrc << 1);
        out->style_fallback += (size_t)fst;
        out->source_fallback += (size_t)(out->source_fell_back[i] & 1) + (size_t)fsrc;
    }
    out->n = n_pos;
    free(order);
    return SIAMIDX_OK;
}

siamidx_status sx_ep_draw_pairs(const sx_ep_item *items, const size_t *rows, size_t n_rows,
                                size_t n_pos, uint64_t seed, sx_ep_pairs *out,
                                siamidx_error *err) {
    memset(out, 0, sizeof *out);
    if (!n_rows || !n_pos) return SIAMIDX_OK;
    size_t max_row = 0;
    for (size_t i = 0; i < n_rows; i++) max_row = rows[i] > max_row ? rows[i] : max_row;
    draw_ctx c = {.items = items};
    sx_rng_seed(&c.rng, seed ^ 0x70726f746f636f6cull); /* "protocol" */
    /* "all": one group holding every row (label 0 for everyone). */
    sx_ep_item *flat = malloc((max_row + 1) * sizeof *flat);
    if (!flat) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "evaluation pairs: out of memory");
    for (size_t i = 0; i < n_rows; i++) flat[rows[i]] = (sx_ep_item){0, 0, 0};
    siamidx_status st = group_rows(items, rows, n_rows, max_row, 0, &c.artist, err);
    if (!st) st = group_rows(items, rows, n_rows, max_row, 1, &c.source, err);
    if (!st) st = group_rows(items, rows, n_rows, max_row, 2, &c.style, err);
    if (!st) st = group_rows(flat, rows, n_rows, max_row, 0, &c.all, err);
    free(flat);
    if (!st && c.artist.g.n_pairable > 0 && c.artist.g.n_groups >= 2)
        st = draw_all(&c, n_pos, out, err);
    by_label_free(&c.artist);
    by_label_free(&c.source);
    by_label_free(&c.style);
    by_label_free(&c.all);
    return st;
}

/* ---- verification ------------------------------------------------------------- */

void sx_ep_verify(const float *pos, size_t n_pos, const float *neg, size_t n_neg,
                  sx_ep_verification *out) {
    size_t n = n_pos + n_neg;
    out->n_pos = n_pos;
    out->n_neg = n_neg;
    out->auc = out->eer = out->tar_far1 = out->ece = NAN;
    float *s = malloc((n + 1) * sizeof *s);
    uint8_t *y = malloc(n + 1);
    if (s && y && n) {
        memcpy(s, pos, n_pos * sizeof *s);
        memcpy(s + n_pos, neg, n_neg * sizeof *s);
        memset(y, 1, n_pos);
        memset(y + n_pos, 0, n_neg);
        out->auc = sx_roc_auc(s, y, n);
        out->eer = sx_eer(s, y, n);
        out->tar_far1 = sx_tar_at_far(s, y, n, 0.01);
        out->ece = sx_ece(s, y, n, 10);
    }
    free(s);
    free(y);
}

/* ---- attribution ------------------------------------------------------------------ */

int32_t sx_ep_rank(const double *prob, int n_artists, int32_t truth) {
    if (truth < 0 || truth >= n_artists || !(prob[truth] > 0)) return -1;
    int32_t rank = 0;
    for (int a = 0; a < n_artists; a++)
        if (a != truth && prob[a] >= prob[truth]) rank++;
    return rank;
}

siamidx_status sx_ep_attribute(const sx_ep_query *q, size_t n, int n_artists,
                               sx_ep_attribution *out, siamidx_error *err) {
    memset(out, 0, sizeof *out);
    out->n_queries = n;
    out->top1 = out->top3 = out->balanced_top1 = out->unknown_first = out->mean_unknown = NAN;
    if (!n) return SIAMIDX_OK;
    size_t *asked = calloc((size_t)n_artists + 1, sizeof *asked);
    size_t *hit = calloc((size_t)n_artists + 1, sizeof *hit);
    if (!asked || !hit) {
        free(asked), free(hit);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "attribution metrics: out of memory");
    }
    size_t top1 = 0, top3 = 0, unk = 0;
    double sum_unknown = 0;
    for (size_t i = 0; i < n; i++) {
        if (q[i].truth < 0 || q[i].truth >= n_artists) {
            free(asked), free(hit);
            return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT,
                           "attribution metrics: query %zu names artist %d of %d", i,
                           (int)q[i].truth, n_artists);
        }
        int first = q[i].rank == 0;
        top1 += (size_t)first;
        top3 += q[i].rank >= 0 && q[i].rank < 3;
        asked[q[i].truth]++;
        hit[q[i].truth] += (size_t)first;
        unk += q[i].p_unknown > q[i].p_top;
        sum_unknown += q[i].p_unknown;
    }
    double recall = 0;
    for (int a = 0; a < n_artists; a++)
        if (asked[a]) recall += (double)hit[a] / (double)asked[a], out->n_artists++;
    out->top1 = (double)top1 / (double)n;
    out->top3 = (double)top3 / (double)n;
    out->balanced_top1 = recall / (double)out->n_artists;
    out->unknown_first = (double)unk / (double)n;
    out->mean_unknown = sum_unknown / (double)n;
    free(asked), free(hit);
    return SIAMIDX_OK;
}

/* ---- open set ------------------------------------------------------------------------ */

typedef struct {
    double v;
    int stranger;
} scored_d;

static int cmp_scored_d(const void *pa, const void *pb) {
    double a = ((const scored_d *)pa)->v, b = ((const scored_d *)pb)->v;
    return (a > b) - (a < b);
}

double sx_ep_open_set_auroc(const double *unknown_indexed, size_t n_indexed,
                            const double *unknown_stranger, size_t n_stranger) {
    if (!n_indexed || !n_stranger) return NAN;
    size_t n = n_indexed + n_stranger;
    scored_d *s = malloc(n * sizeof *s);
    if (!s) return NAN;
    for (size_t i = 0; i < n_indexed; i++) s[i] = (scored_d){unknown_indexed[i], 0};
    for (size_t i = 0; i < n_stranger; i++) s[n_indexed + i] = (scored_d){unknown_stranger[i], 1};
    qsort(s, n, sizeof *s, cmp_scored_d);
    /* Ascending: each stranger beats the indexed queries below it, half the tied ones. */
    double wins = 0, indexed_below = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i, st = 0, ix = 0;
        while (j < n && s[j].v == s[i].v) s[j++].stranger ? st++ : ix++;
        wins += (double)st * (indexed_below + 0.5 * (double)ix);
        indexed_below += (double)ix;
        i = j;
    }
    free(s);
    return wins / ((double)n_indexed * (double)n_stranger);
}

/*
 * query.c - which indexed artist painted this picture: the index's
 * neighbours (index/) scored by a head (head/).
 *
 * One rule picks the head for every answer (index_head.c): the index's
 * trained head, else the model's default head, else none. With a head, the
 * 10*k (at least 50) nearest paintings are scored pair by pair and
 * aggregated per artist against "unknown" (head/attribution.c). With none,
 * the artist scores are a softmax over the neighbours' similarities summed
 * per artist: a ranking, not a calibrated probability, and the result says
 * so (res->head == SIAMIDX_HEAD_NONE; the CLI prints "similarity only").
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "answer/index_head.h"
#include "base/error.h"
#include "head/attribution.h"
#include "head/head.h"
#include "index/index.h"

#define SIMILARITY_NEIGHBORS 20 /* neighbours the similarity-only scores look at */
#define SIMILARITY_TEMPERATURE 0.05f

const char *siamidx_head_source_name(siamidx_head_source source) {
    switch (source) {
    case SIAMIDX_HEAD_INDEX: return "index";
    case SIAMIDX_HEAD_MODEL: return "model";
    default: return "none";
    }
}

void siamidx_query_result_free(siamidx_query_result *res) {
    if (!res) return;
    for (size_t i = 0; i < res->n_neighbors; i++) {
        free(res->neighbors[i].path);
        free(res->neighbors[i].artist);
    }
    for (size_t i = 0; i < res->n_artists; i++) free(res->artists[i].artist);
    free(res->neighbors);
    free(res->artists);
    memset(res, 0, sizeof *res);
}

typedef struct ranked {
    int artist; /* dense id among the neighbours */
    double p;
} ranked;

static int by_prob(const void *a, const void *b) {
    double x = ((const ranked *)a)->p, y = ((const ranked *)b)->p;
    return (x < y) - (x > y);
}

/* Dense artist ids among the neighbours: the first neighbour naming each. */
static int dense_artists(const sx_neighbors *nb, int32_t *art) {
    int n_art = 0;
    for (size_t i = 0; i < nb->n; i++) {
        size_t j = 0;
        while (j < i && strcmp(nb->nb[j].artist, nb->nb[i].artist)) j++;
        art[i] = j < i ? art[j] : n_art++;
    }
    return n_art;
}

/* res->artists: the k best of rk (sorted here), named after their first neighbour. */
static siamidx_status rank_artists(const sx_neighbors *nb, const int32_t *art, ranked *rk,
                                   int n_art, int k, siamidx_query_result *res,
                                   siamidx_error *err) {
    qsort(rk, (size_t)n_art, sizeof *rk, by_prob);
    size_t n_out = (size_t)n_art < (size_t)k ? (size_t)n_art : (size_t)k;
    res->artists = calloc(n_out + 1, sizeof *res->artists);
    if (!res->artists) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "query: out of memory");
    for (size_t i = 0; i < n_out; i++) {
        size_t first = 0;
        while (art[first] != rk[i].artist) first++;
        if (!(res->artists[i].artist = strdup(nb->nb[first].artist)))
            return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "query: out of memory");
        res->artists[i].probability = (float)rk[i].p;
        res->n_artists++;
    }
    return SIAMIDX_OK;
}

/* The head's answer: pair probabilities per neighbour, artists against "unknown". */
static siamidx_status score_with_head(const sx_head *h, const float *query, sx_neighbors *nb,
                                      int k, siamidx_query_result *res, siamidx_error *err) {
    size_t n = nb->n, dim = nb->dim;
    if ((size_t)h->dim != dim)
        return sx_fail(err, SIAMIDX_ERR_MODEL_MISMATCH,
                       "the head expects %d-dimensional embeddings, the index holds %zu", h->dim,
                       dim);
    const float **cand = malloc((n + 1) * sizeof *cand);
    float *pp = malloc((n + 1) * sizeof *pp);
    int32_t *art = malloc((n + 1) * sizeof *art);
    double *prob = malloc((n + 1) * sizeof *prob);
    ranked *rk = malloc((n + 1) * sizeof *rk);
    siamidx_status st = cand && pp && art && prob && rk
                            ? SIAMIDX_OK
                            : sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "query: out of memory");
    int n_art = 0;
    double unknown = 1;
    if (!st) {
        for (size_t i = 0; i < n; i++) cand[i] = nb->emb + i * dim;
        n_art = dense_artists(nb, art);
        st = sx_attribute(h, query, cand, art, n, n_art, pp, prob, &unknown, err);
    }
    if (!st) {
        for (size_t i = 0; i < n; i++) nb->nb[i].probability = pp[i];
        for (int a = 0; a < n_art; a++) rk[a] = (ranked){a, prob[a]};
        st = rank_artists(nb, art, rk, n_art, k, res, err);
        res->unknown = (float)unknown;
    }
    free(cand), free(pp), free(art), free(prob), free(rk);
    return st;
}

/* No head: a softmax over the similarities (temperature 0.05), summed per artist. */
static siamidx_status score_by_similarity(sx_neighbors *nb, int k, siamidx_query_result *res,
                                          siamidx_error *err) {
    size_t n = nb->n;
    int32_t *art = malloc((n + 1) * sizeof *art);
    ranked *rk = calloc(n + 1, sizeof *rk);
    if (!art || !rk) {
        free(art), free(rk);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "query: out of memory");
    }
    int n_art = dense_artists(nb, art);
    double total = 0;
    for (int a = 0; a < n_art; a++) rk[a].artist = a;
    for (size_t i = 0; i < n; i++) {
        double w = exp((nb->nb[i].similarity - nb->nb[0].similarity) / SIMILARITY_TEMPERATURE);
        total += w;
        rk[art[i]].p += w;
    }
    for (int a = 0; a < n_art; a++) rk[a].p /= total;
    siamidx_status st = rank_artists(nb, art, rk, n_art, k, res, err);
    res->unknown = 0;
    free(art), free(rk);
    return st;
}

/* Neighbours enough for either answer: the head's candidates, at least 20. */
static int neighbors_for(int k) {
    size_t kk = sx_attr_candidates((size_t)k);
    if (kk < SIMILARITY_NEIGHBORS) kk = SIMILARITY_NEIGHBORS;
    return (int)(kk > (size_t)k ? kk : (size_t)k);
}

static siamidx_status answer(siamidx_index *idx, const siamidx_model *model, const float *query,
                             int k, siamidx_query_result *res, siamidx_error *err) {
    sx_head *owned = NULL;
    const sx_head *head = NULL;
    sx_neighbors nb;
    memset(&nb, 0, sizeof nb);
    siamidx_status st = sx_answer_head(idx, model, &owned, &head, &res->head, err);
    if (!st) st = sx_index_neighbors(idx, query, neighbors_for(k), &nb, err);
    if (!st && nb.n)
        st = head ? score_with_head(head, query, &nb, k, res, err)
                  : score_by_similarity(&nb, k, res, err);
    siamidx_head_free(owned);
    if (!st) {
        /* The answer keeps the k best neighbours; the rest were candidates only. */
        size_t keep = nb.n < (size_t)k ? nb.n : (size_t)k;
        for (size_t i = keep; i < nb.n; i++) {
            free(nb.nb[i].path);
            free(nb.nb[i].artist);
        }
        res->neighbors = nb.nb;
        res->n_neighbors = keep;
        nb.nb = NULL;
        nb.n = 0;
    }
    sx_neighbors_free(&nb);
    if (st) siamidx_query_result_free(res);
    return st;
}

siamidx_status siamidx_index_query_embedding(siamidx_index *idx, const float *embedding, int k,
                                             siamidx_query_result *res, siamidx_error *err) {
    if (!res) return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "query: bad arguments");
    memset(res, 0, sizeof *res);
    if (!idx || !embedding || k <= 0)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "query: bad arguments");
    return answer(idx, NULL, embedding, k, res, err);
}

siamidx_status siamidx_index_query(siamidx_index *idx, const siamidx_model *model,
                                   const char *image, int k, siamidx_query_result *res,
                                   siamidx_error *err) {
    if (!res) return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "query: bad arguments");
    memset(res, 0, sizeof *res);
    if (!idx || !model || !image || k <= 0)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "query: bad arguments");
    const sx_store_meta *m = sx_index_meta(idx);
    if (!m->dim) return sx_fail(err, SIAMIDX_ERR_NOT_FOUND, "index %s is empty", sx_index_dir(idx));
    if (strcmp(siamidx_model_fingerprint(model), m->fingerprint))
        return sx_fail(err, SIAMIDX_ERR_MODEL_MISMATCH,
                       "index %s was built with model %s, not with this model %s",
                       sx_index_dir(idx), m->fingerprint, siamidx_model_fingerprint(model));
    siamidx_embed_options eo;
    siamidx_embed_options_init(&eo);
    int pool = siamidx_pool_from_name(m->pool);
    eo.pool = pool < 0 ? SIAMIDX_POOL_DEFAULT : (siamidx_pool)pool;
    float *e = malloc(m->dim * sizeof *e);
    if (!e) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "out of memory");
    siamidx_status s = siamidx_embed_file(model, image, &eo, e, err);
    if (!s) s = answer(idx, model, e, k, res, err);
    free(e);
    return s;
}

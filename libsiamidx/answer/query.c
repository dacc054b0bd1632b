/*
 * query.c - which indexed artist painted this picture: the index's
 * neighbours (index/) scored by a head (head/).
 *
 * One rule picks the head for every answer (index_head.c): the index's
 * trained head, else the model's default head, else none. With a head, the
 * candidates (siamidx_query_options; 50 by default) nearest paintings are scored pair by pair and
 * aggregated per artist against "unknown" (head/attribution.c). With none,
 * the artist scores are a softmax over the neighbours' similarities summed
 * per artist: a ranking, not a calibrated probability, and the result says
 * so (res->head == SIAMIDX_HEAD_NONE; the CLI prints "similarity only").
 *
 * An index trained with a classifier (head/classifier.c) answers with both:
 * the classifier's probabilities over every indexed artist fused with the
 * neighbour evidence, "unknown" weighed against the index's prior
 * (sx_fuse, head/attribution.c) -- the very function `siamidx eval` scores.
 *
 * A query whose bytes the index already holds (same SHA-256) is named as an
 * exact match; that record (and any identical copy) is dropped from the
 * neighbours, so a painting is never its own evidence.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "answer/index_head.h"
#include "base/error.h"
#include "base/sha256.h"
#include "head/attribution.h"
#include "head/classifier.h"
#include "head/head.h"
#include "index/index.h"

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
    free(res->exact_match_path);
    free(res->exact_match_artist);
    memset(res, 0, sizeof *res);
    res->exact_match_id = -1;
}

typedef struct ranked {
    int artist; /* in the answer's artist space */
    double p;
} ranked;

static int by_prob(const void *a, const void *b) {
    double x = ((const ranked *)a)->p, y = ((const ranked *)b)->p;
    return (x < y) - (x > y);
}

/* The answer's artists: the classifier's classes (if any), then the
   neighbours' artists it lacks, each by name; art[i] = neighbour i's. */
typedef struct artist_space {
    const char **name; /* borrowed from the classifier and the neighbours */
    int n;
} artist_space;

static int artist_space_make(const sx_neighbors *nb, const sx_classifier *c, int32_t *art,
                             artist_space *sp) {
    int C = c ? c->n_classes : 0;
    sp->n = 0;
    sp->name = malloc(((size_t)C + nb->n + 1) * sizeof *sp->name);
    if (!sp->name) return -1;
    for (int k = 0; k < C; k++) sp->name[sp->n++] = c->names[k];
    for (size_t i = 0; i < nb->n; i++) {
        int a = c ? sx_classifier_class(c, nb->nb[i].artist) : -1;
        for (int j = C; a < 0 && j < sp->n; j++)
            if (!strcmp(sp->name[j], nb->nb[i].artist)) a = j;
        if (a < 0) sp->name[a = sp->n++] = nb->nb[i].artist;
        art[i] = a;
    }
    return 0;
}

/* res->artists: the k best of rk (sorted here), by name. */
static siamidx_status rank_artists(const artist_space *sp, ranked *rk, int n_art, int k,
                                   siamidx_query_result *res, siamidx_error *err) {
    qsort(rk, (size_t)n_art, sizeof *rk, by_prob);
    while (n_art > 0 && !(rk[n_art - 1].p > 0)) n_art--; /* no evidence at all: not named */
    size_t n_out = (size_t)n_art < (size_t)k ? (size_t)n_art : (size_t)k;
    res->artists = calloc(n_out + 1, sizeof *res->artists);
    if (!res->artists) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "query: out of memory");
    for (size_t i = 0; i < n_out; i++) {
        if (!(res->artists[i].artist = strdup(sp->name[rk[i].artist])))
            return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "query: out of memory");
        res->artists[i].probability = (float)rk[i].p;
        res->n_artists++;
    }
    return SIAMIDX_OK;
}

/* The head's answer (fused with the classifier c when there is one): pair
   probabilities per neighbour, artists against "unknown". */
static siamidx_status score_with_head(const sx_head *h, const sx_classifier *c,
                                      const float *query, sx_neighbors *nb, int k,
                                      siamidx_query_result *res, siamidx_error *err) {
    size_t n = nb->n, dim = nb->dim;
    if ((size_t)h->dim != dim || (c && (size_t)c->dim != dim))
        return sx_fail(err, SIAMIDX_ERR_MODEL_MISMATCH,
                       "the head expects %d-dimensional embeddings, the index holds %zu",
                       c && (size_t)c->dim != dim ? c->dim : h->dim, dim);
    size_t C = c ? (size_t)c->n_classes : 0, na_max = C + n + 1;
    const float **cand = malloc((n + 1) * sizeof *cand);
    float *pp = malloc((n + 1) * sizeof *pp);
    int32_t *art = malloc((n + 1) * sizeof *art), *class_of = malloc(na_max * sizeof *class_of);
    double *prob = malloc(na_max * sizeof *prob), *logp = malloc((C + 1) * sizeof *logp);
    ranked *rk = malloc(na_max * sizeof *rk);
    artist_space sp = {0};
    siamidx_status st = cand && pp && art && class_of && prob && logp && rk &&
                                !artist_space_make(nb, c, art, &sp)
                            ? SIAMIDX_OK
                            : sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "query: out of memory");
    double unknown = 1;
    if (!st && c) st = sx_classifier_log_prob(c, query, 1, logp, err);
    if (!st) {
        for (size_t i = 0; i < n; i++) cand[i] = nb->emb + i * dim;
        for (int a = 0; a < sp.n; a++) class_of[a] = a < (int)C ? a : -1;
        st = sx_attribute_fused(h, c, logp, class_of, query, cand, art, n, sp.n, pp, prob,
                                &unknown, err);
    }
    if (!st) {
        for (size_t i = 0; i < n; i++) nb->nb[i].probability = pp[i];
        for (int a = 0; a < sp.n; a++) rk[a] = (ranked){a, prob[a]};
        st = rank_artists(&sp, rk, sp.n, k, res, err);
        res->unknown = (float)unknown;
        res->classifier = c != NULL;
    }
    free(cand), free(pp), free(art), free(class_of), free(prob), free(logp), free(rk);
    free(sp.name);
    return st;
}

/* No head: a softmax over the similarities (temperature 0.05), summed per artist. */
static siamidx_status score_by_similarity(sx_neighbors *nb, int k, siamidx_query_result *res,
                                          siamidx_error *err) {
    size_t n = nb->n;
    int32_t *art = malloc((n + 1) * sizeof *art);
    ranked *rk = calloc(n + 1, sizeof *rk);
    artist_space sp = {0};
    if (!art || !rk || artist_space_make(nb, NULL, art, &sp)) {
        free(art), free(rk);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "query: out of memory");
    }
    double total = 0;
    for (int a = 0; a < sp.n; a++) rk[a].artist = a;
    for (size_t i = 0; i < n; i++) {
        double w = exp((nb->nb[i].similarity - nb->nb[0].similarity) / SIMILARITY_TEMPERATURE);
        total += w;
        rk[art[i]].p += w;
    }
    for (int a = 0; a < sp.n; a++) rk[a].p /= total;
    siamidx_status st = rank_artists(&sp, rk, sp.n, k, res, err);
    res->unknown = 0;
    free(art), free(rk), free(sp.name);
    return st;
}

/* Nearest paintings fetched: the candidates, and at least the neighbours returned. */
static int pool_size(const siamidx_query_options *o) {
    return o->candidates > o->neighbors ? o->candidates : o->neighbors;
}

/* Drops the neighbours holding the query's very bytes: they are the query, not evidence. */
static void drop_exact(sx_neighbors *nb, const uint8_t *hash) {
    size_t kept = 0, dim = nb->dim;
    for (size_t i = 0; i < nb->n; i++) {
        if (!memcmp(nb->hash + i * 32, hash, 32)) {
            free(nb->nb[i].path);
            free(nb->nb[i].artist);
            continue;
        }
        if (kept != i) {
            nb->nb[kept] = nb->nb[i];
            memmove(nb->emb + kept * dim, nb->emb + i * dim, dim * sizeof *nb->emb);
            memcpy(nb->hash + kept * 32, nb->hash + i * 32, 32);
        }
        kept++;
    }
    nb->n = kept;
}

/* Identical copies of one image an index may hold beyond the first: searched past. */
#define EXACT_SPARE 4

/* hash: the query image's content hash, or NULL (an embedding without a file). */
static siamidx_status answer(siamidx_index *idx, const siamidx_model *model, const float *query,
                             const uint8_t *hash, const siamidx_query_options *o,
                             siamidx_query_result *res, siamidx_error *err) {
    int k = o->k, pool = pool_size(o);
    sx_head *owned = NULL;
    sx_classifier *clf = NULL;
    const sx_head *head = NULL;
    sx_neighbors nb;
    memset(&nb, 0, sizeof nb);
    siamidx_status st = sx_answer_head_classifier(idx, model, &owned, &head, &res->head, &clf, err);
    if (!st) st = sx_index_neighbors(idx, query, pool + (hash ? EXACT_SPARE : 0), &nb, err);
    if (!st && hash) drop_exact(&nb, hash);
    /* as many candidates as `eval` scores, whether or not copies were dropped */
    if (!st && nb.n > (size_t)pool) {
        for (size_t i = (size_t)pool; i < nb.n; i++) {
            free(nb.nb[i].path);
            free(nb.nb[i].artist);
        }
        nb.n = (size_t)pool;
    }
    if (!st && nb.n)
        st = head ? score_with_head(head, clf, query, &nb, k, res, err)
                  : score_by_similarity(&nb, k, res, err);
    siamidx_head_free(owned);
    sx_classifier_free(clf);
    if (!st) {
        /* The answer keeps the best neighbours; the rest were candidates only. */
        size_t keep = nb.n < (size_t)o->neighbors ? nb.n : (size_t)o->neighbors;
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

void siamidx_query_options_init(siamidx_query_options *opt) {
    opt->k = 5;
    opt->neighbors = 5;
    opt->candidates = SIAMIDX_DEFAULT_CANDIDATES;
}

/* What siamidx_index_query(k) always meant: k artists, k neighbours, 10*k (at least 50) candidates. */
static siamidx_query_options options_for_k(int k) {
    siamidx_query_options o = {k, k, (int)sx_attr_candidates(k > 0 ? (size_t)k : 1)};
    return o;
}

static int options_valid(const siamidx_query_options *o) {
    return o && o->k > 0 && o->neighbors >= 0 && o->candidates > 0;
}

siamidx_status siamidx_index_query_embedding(siamidx_index *idx, const float *embedding, int k,
                                             siamidx_query_result *res, siamidx_error *err) {
    siamidx_query_options o = options_for_k(k);
    return siamidx_index_query_embedding_opts(idx, embedding, &o, res, err);
}

siamidx_status siamidx_index_query(siamidx_index *idx, const siamidx_model *model,
                                   const char *image, int k, siamidx_query_result *res,
                                   siamidx_error *err) {
    siamidx_query_options o = options_for_k(k);
    return siamidx_index_query_opts(idx, model, image, &o, res, err);
}

siamidx_status siamidx_index_query_embedding_opts(siamidx_index *idx, const float *embedding,
                                                  const siamidx_query_options *opt,
                                                  siamidx_query_result *res, siamidx_error *err) {
    if (!res) return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "query: bad arguments");
    memset(res, 0, sizeof *res);
    res->exact_match_id = -1;
    if (!idx || !embedding || !options_valid(opt))
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "query: bad arguments");
    return answer(idx, NULL, embedding, NULL, opt, res, err);
}

siamidx_status siamidx_index_query_opts(siamidx_index *idx, const siamidx_model *model,
                                        const char *image, const siamidx_query_options *opt,
                                        siamidx_query_result *res, siamidx_error *err) {
    if (!res) return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "query: bad arguments");
    memset(res, 0, sizeof *res);
    res->exact_match_id = -1;
    if (!idx || !model || !image || !options_valid(opt))
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "query: bad arguments");
    const sx_store_meta *m = sx_index_meta(idx);
    if (!m->dim) return sx_fail(err, SIAMIDX_ERR_NOT_FOUND, "index %s is empty", sx_index_dir(idx));
    if (strcmp(siamidx_model_fingerprint(model), m->fingerprint))
        return sx_fail(err, SIAMIDX_ERR_MODEL_MISMATCH,
                       "index %s was built with model %s, not with this model %s",
                       sx_index_dir(idx), m->fingerprint, siamidx_model_fingerprint(model));
    float *e = malloc(m->dim * sizeof *e);
    if (!e) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "out of memory");
    /* An image the index holds: its stored embedding (the same model made
       it), and it is named as the exact match. */
    uint8_t hash[32];
    siamidx_status s = SIAMIDX_ERR_NOT_FOUND;
    int hashed = sx_sha256_file(image, hash) == 0;
    if (hashed) {
        siamidx_error e2;
        s = sx_index_find_content(idx, hash, &res->exact_match_id, &res->exact_match_path,
                                  &res->exact_match_artist, e, &e2);
        if (s && s != SIAMIDX_ERR_NOT_FOUND) {
            if (err) *err = e2;
            free(e);
            return s;
        }
    }
    if (s) { /* not indexed: embed it */
        siamidx_embed_options eo;
        siamidx_embed_options_init(&eo);
        int pool = siamidx_pool_from_name(m->pool);
        eo.pool = pool < 0 ? SIAMIDX_POOL_DEFAULT : (siamidx_pool)pool;
        s = siamidx_embed_file(model, image, &eo, e, err);
    }
    if (!s) {
        /* answer() frees res on failure; the exact match survives only with an answer */
        char *path = res->exact_match_path, *artist = res->exact_match_artist;
        int64_t id = res->exact_match_id;
        res->exact_match_path = res->exact_match_artist = NULL;
        s = answer(idx, model, e, hashed ? hash : NULL, opt, res, err);
        if (!s) {
            res->exact_match_path = path, res->exact_match_artist = artist;
            res->exact_match_id = id;
        } else {
            free(path), free(artist);
        }
    } else {
        siamidx_query_result_free(res);
    }
    free(e);
    return s;
}

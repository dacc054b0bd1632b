/*
 * eval_index.c - the evaluation protocol on an index: reads the records and
 * the head, assigns each image its population, and hands label and score
 * arrays to the pure protocol (eval_protocol.c).
 *
 * Populations: the head's split record names its validation and test images
 * (by content hash) and its held-out artists. "seen" queries are the test
 * images, "unseen" ones every image of the unseen artists; the gallery that
 * attribution searches is everything else (the head's training and
 * validation images), exactly what `siamidx query` would search minus the
 * held-out images.
 *
 * Attribution is scored by sx_fuse (head/attribution.c), the function
 * `siamidx query` answers with: the classifier fused with the neighbours
 * when the index has one, the head alone when not.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "siamidx.h"
#include "siamidx_ext.h"
#include "base/error.h"
#include "base/metrics.h"
#include "answer/index_head.h"
#include "base/sha256.h"
#include "head/attribution.h"
#include "head/classifier.h"
#include "head/eval_protocol.h"
#include "head/nearest.h"
#include "head/head.h"
#include "head/labelled.h"
#include "head/split.h"

void siamidx_protocol_options_init(siamidx_protocol_options *opt) {
    memset(opt, 0, sizeof *opt);
    opt->seed = 1;
    opt->pairs = 10000;
    opt->unknown_prior = -1;
}

/* ---- names to dense ids ---------------------------------------------------- */

typedef struct names {
    char **name;
    size_t n, cap;
} names;

/* Linear lookup is fine: a few hundred artists and sources. */
static int32_t name_id(names *t, const char *s, size_t len) {
    for (size_t i = 0; i < t->n; i++)
        if (strlen(t->name[i]) == len && !memcmp(t->name[i], s, len)) return (int32_t)i;
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 64;
        char **p = realloc(t->name, cap * sizeof *p);
        if (!p) return -1;
        t->name = p;
        t->cap = cap;
    }
    if (!(t->name[t->n] = strndup(s, len))) return -1;
    return (int32_t)t->n++;
}

static void names_free(names *t) {
    for (size_t i = 0; i < t->n; i++) free(t->name[i]);
    free(t->name);
    memset(t, 0, sizeof *t);
}

/* ---- the records ------------------------------------------------------------------ */

typedef struct eval_data {
    size_t n, cap;
    int dim;
    float *emb;
    sx_ep_item *item;
    int32_t *artist; /* = item[].artist, for sx_train_data */
    char **keys;     /* content hash, hex */
    names artists, sources, styles;
    siamidx_error *err;
    siamidx_status status;
} eval_data;

static void eval_data_free(eval_data *x) {
    for (size_t i = 0; i < x->n; i++) free(x->keys[i]);
    free(x->emb), free(x->item), free(x->artist), free(x->keys);
    names_free(&x->artists), names_free(&x->sources), names_free(&x->styles);
    memset(x, 0, sizeof *x);
}

static int grow(eval_data *x) {
    size_t cap = x->cap ? 2 * x->cap : 1024, dim = (size_t)x->dim;
    float *e = realloc(x->emb, cap * dim * sizeof *e);
    if (e) x->emb = e;
    sx_ep_item *it = e ? realloc(x->item, cap * sizeof *it) : NULL;
    if (it) x->item = it;
    int32_t *a = it ? realloc(x->artist, cap * sizeof *a) : NULL;
    if (a) x->artist = a;
    char **k = a ? realloc(x->keys, cap * sizeof *k) : NULL;
    if (k) x->keys = k;
    if (!k) return -1;
    x->cap = cap;
    return 0;
}

/* The style key: source and the top folder of source_path ("Baroque/x.jpg" -> Baroque). */
static int32_t style_id(eval_data *x, const char *source, const char *path) {
    const char *slash = strchr(path, '/');
    size_t top = slash ? (size_t)(slash - path) : 0; /* a bare file name has no folder */
    size_t ls = strlen(source), len = ls + 1 + top;
    char *key = malloc(len + 1);
    if (!key) return -1;
    memcpy(key, source, ls);
    key[ls] = '\t';
    memcpy(key + ls + 1, path, top);
    key[len] = 0;
    int32_t id = name_id(&x->styles, key, len);
    free(key);
    return id;
}

static int take_record(void *ctx, const siamidx_index_record *r) {
    eval_data *x = ctx;
    if (x->dim == 0) x->dim = (int)r->dim;
    if ((int)r->dim != x->dim) {
        x->status = sx_fail(x->err, SIAMIDX_ERR_INDEX_CORRUPT,
                            "record %llu has %u dimensions, others %d",
                            (unsigned long long)r->id, r->dim, x->dim);
        return 1;
    }
    if (x->n == x->cap && grow(x)) goto oom;
    const char *artist = r->artist;
    const char *source = r->source_repo ? r->source_repo : "";
    sx_ep_item it = {name_id(&x->artists, artist, strlen(artist)),
                     name_id(&x->sources, source, strlen(source)),
                     style_id(x, source, r->source_path ? r->source_path : "")};
    if (it.artist < 0 || it.source < 0 || it.style < 0) goto oom;
    size_t n = x->n, dim = (size_t)x->dim;
    memcpy(x->emb + n * dim, r->embedding, dim * sizeof *x->emb);
    x->item[n] = it;
    x->artist[n] = it.artist;
    if (!(x->keys[n] = malloc(65))) goto oom;
    sx_hex(r->hash, 32, x->keys[n]);
    x->n = n + 1;
    return 0;
oom:
    x->status = sx_fail(x->err, SIAMIDX_ERR_NO_MEMORY, "evaluation: out of memory reading records");
    return 1;
}

static siamidx_status load_records(siamidx_index *idx, eval_data *x, siamidx_error *err) {
    memset(x, 0, sizeof *x);
    x->err = err;
    siamidx_status st = siamidx_index_foreach_record(idx, take_record, x, err);
    if (!st) st = x->status;
    if (!st && x->n == 0) st = sx_fail(err, SIAMIDX_ERR_NOT_FOUND, "the index holds no images");
    if (st) eval_data_free(x);
    return st;
}

/* ---- populations ---------------------------------------------------------------------- */

/* Roles from the head's split, then the caller's unseen artists, checked against the head. */
static siamidx_status assign_roles(const sx_head *h, eval_data *x,
                                   const siamidx_protocol_options *o, uint8_t *roles,
                                   siamidx_error *err) {
    sx_train_data d = {.n = x->n, .dim = x->dim, .emb = x->emb, .artist = x->artist,
                       .n_artists = (int)x->artists.n,
                       .artist_names = (const char *const *)x->artists.name,
                       .keys = (const char *const *)x->keys};
    siamidx_status st = sx_head_roles(h, &d, roles, err);
    if (st || !o->unseen_artists) return st;
    uint8_t *listed = calloc(x->artists.n + 1, 1);
    if (!listed) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "evaluation: out of memory");
    for (size_t i = 0; i < o->n_unseen_artists && !st; i++) {
        const char *name = o->unseen_artists[i];
        size_t a = 0;
        while (a < x->artists.n && strcmp(x->artists.name[a], name)) a++;
        if (a == x->artists.n)
            st = sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT,
                         "unseen artist '%s' has no image in the index", name);
        else
            listed[a] = 1;
    }
    size_t outside = 0;
    for (size_t i = 0; i < x->n && !st; i++) {
        if (!listed[x->item[i].artist]) {
            outside++;
            continue;
        }
        if (roles[i] == SX_ROLE_VAL || roles[i] == SX_ROLE_TEST)
            st = sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT,
                         "unseen artist '%s' is not unseen: the head validated or tested on "
                         "its images (train the head on an index without it)",
                         x->artists.name[x->item[i].artist]);
        roles[i] = SX_ROLE_UNSEEN;
    }
    const sx_head_report *r = &h->report;
    size_t trained_on = r->n_train + r->n_val + r->n_test + r->n_unseen;
    if (!st && trained_on > outside)
        st = sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT,
                     "the head was trained on an index of %zu images, but only %zu are by "
                     "artists outside the unseen list: it saw unseen artists (train the head "
                     "on an index without them, then add them)",
                     trained_on, outside);
    free(listed);
    return st;
}

/* ---- scoring ------------------------------------------------------------------------------ */

typedef struct scorer {
    const sx_head *h;
    const sx_classifier *c; /* NULL: the head alone */
    const eval_data *x;
    float *z;    /* [n][dim] projected embeddings */
    float *feat; /* [n_feat] */
} scorer;

static float pair_prob(scorer *s, size_t a, size_t b) {
    size_t dim = (size_t)s->h->dim;
    return sx_sigmoid(sx_head_logit(s->h, s->z + a * dim, s->z + b * dim, s->feat));
}

/* Per-pair probabilities of one population's three pair sets. */
typedef struct pop_pairs {
    sx_ep_pairs p;
    float *pos, *neg_source, *neg_style;
} pop_pairs;

static void pop_pairs_free(pop_pairs *pp) {
    sx_ep_pairs_free(&pp->p);
    free(pp->pos), free(pp->neg_source), free(pp->neg_style);
}

static siamidx_status score_population(scorer *s, const uint8_t *roles, int role, size_t n_pos,
                                       uint64_t seed, pop_pairs *out, siamidx_error *err) {
    memset(out, 0, sizeof *out);
    const eval_data *x = s->x;
    size_t *rows = malloc((x->n + 1) * sizeof *rows), nr = 0;
    if (!rows) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "evaluation: out of memory");
    for (size_t i = 0; i < x->n; i++)
        if (roles[i] == role) rows[nr++] = i;
    siamidx_status st = sx_ep_draw_pairs(x->item, rows, nr, n_pos, seed + (uint64_t)role,
                                         &out->p, err);
    free(rows);
    if (st) return st;
    size_t n = out->p.n;
    out->pos = malloc((n + 1) * sizeof(float));
    out->neg_source = malloc((n + 1) * sizeof(float));
    out->neg_style = malloc((n + 1) * sizeof(float));
    if (!out->pos || !out->neg_source || !out->neg_style) {
        pop_pairs_free(out);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "evaluation: out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        out->pos[i] = pair_prob(s, out->p.pos[i].a, out->p.pos[i].b);
        out->neg_source[i] = pair_prob(s, out->p.neg_source[i].a, out->p.neg_source[i].b);
        out->neg_style[i] = pair_prob(s, out->p.neg_style[i].a, out->p.neg_style[i].b);
    }
    return SIAMIDX_OK;
}

/* Pair metrics of the pairs whose anchor is from `source` (-1: all). */
static siamidx_status pairs_for(const pop_pairs *pp, const eval_data *x, int32_t source,
                                siamidx_protocol_pairs *out, siamidx_error *err) {
    memset(out, 0, sizeof *out);
    size_t n = pp->p.n, k = 0;
    float *buf = malloc((3 * n + 1) * sizeof *buf);
    if (!buf) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "evaluation: out of memory");
    float *pos = buf, *ns = buf + n, *nt = buf + 2 * n;
    for (size_t i = 0; i < n; i++) {
        if (source >= 0 && x->item[pp->p.neg_source[i].a].source != source) continue;
        pos[k] = pp->pos[i];
        ns[k] = pp->neg_source[i];
        nt[k] = pp->neg_style[i];
        out->style_fallback += pp->p.style_fell_back[i];
        out->source_fallback += (pp->p.source_fell_back[i] & 1) + (pp->p.source_fell_back[i] >> 1);
        k++;
    }
    sx_ep_verification v;
    sx_ep_verify(pos, k, ns, k, &v);
    out->same_source = (siamidx_protocol_verification){v.n_pos, v.n_neg, v.auc, v.eer,
                                                       v.tar_far1, v.ece};
    sx_ep_verify(pos, k, nt, k, &v);
    out->same_style = (siamidx_protocol_verification){v.n_pos, v.n_neg, v.auc, v.eer,
                                                      v.tar_far1, v.ece};
    free(buf);
    return SIAMIDX_OK;
}

/* ---- attribution ------------------------------------------------------------------------- */

/* Every seen and unseen query scored against the gallery. */
static siamidx_status score_queries(scorer *s, const uint8_t *roles, sx_ep_query *q,
                                    size_t *qrow, size_t *nq_out, size_t *ng_out,
                                    const siamidx_protocol_options *o, siamidx_error *err) {
    const eval_data *x = s->x;
    const sx_head *h = s->h;
    size_t n = x->n, nq = 0, ng = 0, na = x->artists.n, dim = (size_t)h->dim;
    size_t *gal = malloc((n + 1) * sizeof *gal);
    if (!gal) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "evaluation: out of memory");
    for (size_t i = 0; i < n; i++) {
        if (roles[i] == SX_ROLE_TEST || roles[i] == SX_ROLE_UNSEEN) qrow[nq++] = i;
        else gal[ng++] = i;
    }
    size_t m = sx_attr_candidates(5) < ng ? sx_attr_candidates(5) : ng;
    size_t C = s->c ? (size_t)s->c->n_classes : 0;
    size_t *nn = malloc((nq * m + 1) * sizeof *nn);
    float *logit = malloc((m + 1) * sizeof *logit);
    int32_t *art = malloc((m + 1) * sizeof *art), *class_of = malloc((na + 1) * sizeof *class_of);
    double *prob = malloc((na + 1) * sizeof *prob), *logp = malloc((nq * C + 1) * sizeof *logp);
    float *qemb = s->c ? malloc((nq * dim + 1) * sizeof *qemb) : NULL;
    siamidx_status st = SIAMIDX_OK;
    if (!nn || !logit || !art || !class_of || !prob || !logp || (s->c && !qemb))
        st = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "evaluation: out of memory");
    /* What the index's flat FAISS search returns (queries are never in the gallery). */
    sx_train_data d = {.n = x->n, .dim = x->dim, .emb = x->emb};
    if (!st && nq && m) st = sx_nearest(&d, qrow, nq, gal, ng, m, nn, err);
    if (!st && s->c) { /* the classifier's view of every query, in one batch */
        for (size_t a = 0; a < na; a++) class_of[a] = sx_classifier_class(s->c, x->artists.name[a]);
        for (size_t i = 0; i < nq; i++) memcpy(qemb + i * dim, x->emb + qrow[i] * dim, dim * 4);
        st = sx_classifier_log_prob(s->c, qemb, nq, logp, err);
    }
    for (size_t i = 0; !st && i < nq; i++) {
        if (o->progress && i % 64 == 0) o->progress(o->progress_ctx, i, nq);
        size_t r = qrow[i];
        for (size_t j = 0; j < m; j++) {
            size_t c = nn[i * m + j];
            logit[j] = sx_head_logit(h, s->z + r * dim, s->z + c * dim, s->feat);
            art[j] = x->item[c].artist;
        }
        double pu = sx_fuse(h, s->c, logp + i * C, class_of, logit, art, m, (int)na, prob);
        double top = 0;
        int32_t top_artist = -1;
        for (size_t a = 0; a < na; a++)
            if (prob[a] > top) top = prob[a], top_artist = (int32_t)a;
        q[i] = (sx_ep_query){x->item[r].artist, sx_ep_rank(prob, (int)na, x->item[r].artist), pu,
                             top, top_artist};
    }
    if (!st && o->progress) o->progress(o->progress_ctx, nq, nq);
    *nq_out = nq;
    *ng_out = ng;
    free(gal), free(nn), free(logit), free(art), free(class_of), free(prob), free(logp), free(qemb);
    return st;
}

/* Attribution and open-set figures of the queries from `source` (-1: all). */
static siamidx_status attribution_for(const eval_data *x, const uint8_t *roles,
                                      const sx_ep_query *q, const size_t *qrow, size_t nq,
                                      int32_t source, siamidx_protocol_group *g,
                                      siamidx_error *err) {
    sx_ep_query *sel = malloc((nq + 1) * sizeof *sel);
    double *u_seen = malloc((nq + 1) * sizeof *u_seen), *u_unseen = malloc((nq + 1) * sizeof *u_unseen);
    siamidx_status st = SIAMIDX_OK;
    if (!sel || !u_seen || !u_unseen) st = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "out of memory");
    size_t ns = 0, nu = 0;
    for (int pass = 0; pass < 2 && !st; pass++) {
        int role = pass == 0 ? SX_ROLE_TEST : SX_ROLE_UNSEEN;
        size_t k = 0;
        for (size_t i = 0; i < nq; i++) {
            if (roles[qrow[i]] != role) continue;
            if (source >= 0 && x->item[qrow[i]].source != source) continue;
            sel[k++] = q[i];
            if (pass == 0) u_seen[ns++] = q[i].p_unknown;
            else u_unseen[nu++] = q[i].p_unknown;
        }
        sx_ep_attribution a;
        st = sx_ep_attribute(sel, k, (int)x->artists.n, &a, err);
        siamidx_protocol_attribution *o = pass == 0 ? &g->seen_attribution : &g->unseen_attribution;
        *o = (siamidx_protocol_attribution){a.n_queries,     a.n_artists, a.top1,
                                            a.top3,          a.balanced_top1,
                                            a.unknown_first, a.mean_unknown};
        /* An unseen artist is never in the index: no named answer is right. */
        if (pass == 1) o->top1 = o->top3 = o->balanced_top1 = NAN;
    }
    g->seen_images = ns;
    g->unseen_images = nu;
    if (!st) g->open_set_auroc = sx_ep_open_set_auroc(u_seen, ns, u_unseen, nu);
    free(sel), free(u_seen), free(u_unseen);
    return st;
}

/* Distinct unseen artists with an image from `source` (-1: any); hit: n_artists scratch bytes. */
static size_t unseen_artists_in(const eval_data *x, const uint8_t *roles, int32_t source,
                                uint8_t *hit) {
    size_t k = 0;
    memset(hit, 0, x->artists.n);
    for (size_t i = 0; i < x->n; i++)
        if (roles[i] == SX_ROLE_UNSEEN && (source < 0 || x->item[i].source == source) &&
            !hit[x->item[i].artist])
            hit[x->item[i].artist] = 1, k++;
    return k;
}

/* ---- the whole protocol --------------------------------------------------------------------- */

void siamidx_protocol_report_free(siamidx_protocol_report *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n_groups; i++) free(r->groups[i].source);
    free(r->groups);
    memset(r, 0, sizeof *r);
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static siamidx_status fill_details(const eval_data *x, const uint8_t *roles,
                                   const pop_pairs *seen, const pop_pairs *unseen,
                                   const sx_ep_query *q, const size_t *qrow, size_t nq,
                                   siamidx_protocol_details *d, siamidx_error *err);

static siamidx_status run(const sx_head *h, const sx_classifier *c, eval_data *x, const siamidx_protocol_options *o,
                          siamidx_protocol_report *out, siamidx_protocol_details *details,
                          siamidx_error *err) {
    size_t n = x->n, dim = (size_t)h->dim;
    uint8_t *roles = malloc(n + 1);
    sx_ep_query *q = malloc((n + 1) * sizeof *q);
    size_t *qrow = malloc((n + 1) * sizeof *qrow);
    scorer s = {h, c, x, malloc((n * dim + 1) * sizeof(float)),
                malloc(((size_t)h->n_feat + 1) * sizeof(float))};
    pop_pairs seen = {0}, unseen = {0};
    char **sorted = malloc((x->sources.n + 1) * sizeof *sorted);
    uint8_t *hit = malloc(x->artists.n + 1);
    siamidx_status st = SIAMIDX_OK;
    if (!roles || !q || !qrow || !s.z || !s.feat || !sorted || !hit)
        st = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "evaluation: out of memory");
    if (!st) st = assign_roles(h, x, o, roles, err);
    for (size_t i = 0; !st && i < n; i++) sx_head_project(h, x->emb + i * dim, s.z + i * dim);
    size_t pairs = o->pairs ? o->pairs : 10000, nq = 0, ng = 0;
    if (!st) st = score_population(&s, roles, SX_ROLE_TEST, pairs, o->seed, &seen, err);
    if (!st) st = score_population(&s, roles, SX_ROLE_UNSEEN, pairs, o->seed, &unseen, err);
    if (!st) st = score_queries(&s, roles, q, qrow, &nq, &ng, o, err);
    if (!st) {
        out->seed = o->seed;
        out->pairs = pairs;
        out->gallery_images = ng;
        memset(hit, 0, x->artists.n);
        for (size_t i = 0; i < n; i++)
            if (roles[i] == SX_ROLE_TRAIN || roles[i] == SX_ROLE_VAL) {
                out->gallery_artists += !hit[x->item[i].artist];
                hit[x->item[i].artist] = 1;
            }
        memcpy(sorted, x->sources.name, x->sources.n * sizeof *sorted);
        qsort(sorted, x->sources.n, sizeof *sorted, cmp_name);
        out->groups = calloc(x->sources.n + 1, sizeof *out->groups);
        if (!out->groups) st = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "evaluation: out of memory");
    }
    for (size_t gi = 0; !st && gi <= x->sources.n; gi++) {
        siamidx_protocol_group *g = &out->groups[gi];
        int32_t source = -1;
        if (gi > 0) {
            source = name_id(&x->sources, sorted[gi - 1], strlen(sorted[gi - 1]));
            if (!(g->source = strdup(sorted[gi - 1]))) {
                st = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "evaluation: out of memory");
                break;
            }
        }
        out->n_groups = gi + 1;
        if (!st) st = pairs_for(&seen, x, source, &g->seen_pairs, err);
        if (!st) st = pairs_for(&unseen, x, source, &g->unseen_pairs, err);
        if (!st) st = attribution_for(x, roles, q, qrow, nq, source, g, err);
        g->unseen_artists = unseen_artists_in(x, roles, source, hit);
    }
    if (!st && details) st = fill_details(x, roles, &seen, &unseen, q, qrow, nq, details, err);
    if (st) siamidx_protocol_report_free(out), siamidx_protocol_details_free(details);
    pop_pairs_free(&seen), pop_pairs_free(&unseen);
    free(roles), free(q), free(qrow), free(s.z), free(s.feat), free(sorted), free(hit);
    return st;
}

siamidx_status siamidx_index_evaluate_protocol(siamidx_index *idx,
                                               const siamidx_protocol_options *opt,
                                               siamidx_protocol_report *out, siamidx_error *err) {
    return siamidx_index_evaluate_protocol_details(idx, opt, out, NULL, err);
}

siamidx_status siamidx_index_evaluate_protocol_details(siamidx_index *idx,
                                                       const siamidx_protocol_options *opt,
                                                       siamidx_protocol_report *out,
                                                       siamidx_protocol_details *details,
                                                       siamidx_error *err) {
    if (details) memset(details, 0, sizeof *details);
    if (!idx || !out) return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "eval: NULL argument");
    memset(out, 0, sizeof *out);
    siamidx_protocol_options o;
    siamidx_protocol_options_init(&o);
    if (opt) o = *opt;
    sx_head *h = NULL;
    const sx_head *head;
    sx_classifier *c = NULL;
    siamidx_head_source source;
    siamidx_status st = sx_answer_head_classifier(idx, NULL, &h, &head, &source, &c, err);
    if (st) return st;
    if (!head) return sx_fail(err, SIAMIDX_ERR_NO_HEAD, "no trained head: run `siamidx train`");
    if (c && o.unknown_prior >= 0 && o.unknown_prior < 1) c->unknown_prior = (float)o.unknown_prior;
    eval_data x;
    if (!(st = load_records(idx, &x, err))) {
        if (x.dim != h->dim || (c && c->dim != x.dim))
            st = sx_fail(err, SIAMIDX_ERR_MODEL_MISMATCH,
                         "the head expects %d-dimensional embeddings, the index holds %d",
                         h->dim, x.dim);
        if (!st) st = run(h, c, &x, &o, out, details, err);
        eval_data_free(&x);
    }
    siamidx_head_free(h);
    sx_classifier_free(c);
    return st;
}

/* ---- what reports draw -------------------------------------------------------------------- */

#define ROC_POINTS 200

/* The ROC of positives against one negative set. */
static siamidx_status roc_of(const float *pos, const float *neg, size_t n, siamidx_roc_curve *c,
                             siamidx_error *err) {
    float *score = malloc((2 * n + 1) * sizeof *score);
    uint8_t *label = malloc(2 * n + 1);
    c->far = malloc(ROC_POINTS * sizeof *c->far);
    c->tar = malloc(ROC_POINTS * sizeof *c->tar);
    siamidx_status st = SIAMIDX_OK;
    if (!score || !label || !c->far || !c->tar) {
        st = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "evaluation: out of memory for a ROC curve");
    } else {
        for (size_t i = 0; i < n; i++) {
            score[i] = pos[i], label[i] = 1;
            score[n + i] = neg[i], label[n + i] = 0;
        }
        c->n = sx_roc_curve(score, label, 2 * n, ROC_POINTS, c->far, c->tar);
    }
    free(score), free(label);
    return st;
}

static void calibration_of(const pop_pairs *pp, siamidx_calibration_bin *bins) {
    for (int k = 0; k < 10; k++) bins[k] = (siamidx_calibration_bin){k / 10.0, (k + 1) / 10.0, 0, 0};
    for (size_t i = 0; i < 2 * pp->p.n; i++) {
        float p = i < pp->p.n ? pp->pos[i] : pp->neg_source[i - pp->p.n];
        int k = p != p ? -1 : p >= 1 ? 9 : p < 0 ? 0 : (int)(p * 10);
        if (k < 0) continue;
        bins[k].pairs++;
        bins[k].same += i < pp->p.n;
    }
}

static int cmp_recall(const void *pa, const void *pb) {
    const siamidx_artist_recall *a = pa, *b = pb;
    /* worst first: lower top-1 share (a.top1/a.queries < b.top1/b.queries), then more queries */
    double ra = (double)a->top1 / (double)a->queries, rb = (double)b->top1 / (double)b->queries;
    if (ra != rb) return ra < rb ? -1 : 1;
    if (a->queries != b->queries) return a->queries > b->queries ? -1 : 1;
    return strcmp(a->artist, b->artist);
}

static int cmp_confusion(const void *pa, const void *pb) {
    const siamidx_confusion *a = pa, *b = pb;
    if (a->count != b->count) return a->count > b->count ? -1 : 1;
    int t = strcmp(a->truth, b->truth);
    return t ? t : strcmp(a->named, b->named);
}

/* Per-artist recall and confusions of the seen queries. */
static siamidx_status attribution_details(const eval_data *x, const uint8_t *roles,
                                          const sx_ep_query *q, const size_t *qrow, size_t nq,
                                          siamidx_protocol_details *d, siamidx_error *err) {
    size_t na = x->artists.n;
    siamidx_artist_recall *rec = calloc(na + 1, sizeof *rec);
    /* confusions: a sparse count per (truth, named); at most one per query */
    siamidx_confusion *conf = calloc(nq + 1, sizeof *conf);
    int32_t *pair_t = malloc((nq + 1) * sizeof *pair_t), *pair_n = malloc((nq + 1) * sizeof *pair_n);
    size_t nc = 0;
    siamidx_status st = SIAMIDX_OK;
    if (!rec || !conf || !pair_t || !pair_n) st = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "evaluation: out of memory");
    for (size_t i = 0; !st && i < nq; i++) {
        if (roles[qrow[i]] != SX_ROLE_TEST) continue;
        siamidx_artist_recall *r = &rec[q[i].truth];
        r->queries++;
        r->top1 += q[i].rank == 0;
        r->top3 += q[i].rank >= 0 && q[i].rank < 3;
        if (q[i].top < 0 || q[i].top == q[i].truth) continue;
        size_t k = 0;
        while (k < nc && !(pair_t[k] == q[i].truth && pair_n[k] == q[i].top)) k++;
        if (k == nc) pair_t[nc] = q[i].truth, pair_n[nc] = q[i].top, conf[nc++].count = 0;
        conf[k].count++;
    }
    size_t nr = 0;
    for (size_t a = 0; !st && a < na; a++) {
        if (!rec[a].queries) continue;
        rec[nr] = rec[a];
        if (!(rec[nr].artist = strdup(x->artists.name[a])))
            st = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "evaluation: out of memory");
        else
            nr++;
    }
    for (size_t k = 0; !st && k < nc; k++)
        if (!(conf[k].truth = strdup(x->artists.name[pair_t[k]])) ||
            !(conf[k].named = strdup(x->artists.name[pair_n[k]])))
            st = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "evaluation: out of memory");
    d->recall = rec, d->n_recall = nr;
    d->confusions = conf, d->n_confusions = nc;
    free(pair_t), free(pair_n);
    if (!st) {
        qsort(rec, nr, sizeof *rec, cmp_recall);
        qsort(conf, nc, sizeof *conf, cmp_confusion);
    }
    return st;
}

static siamidx_status fill_details(const eval_data *x, const uint8_t *roles,
                                   const pop_pairs *seen, const pop_pairs *unseen,
                                   const sx_ep_query *q, const size_t *qrow, size_t nq,
                                   siamidx_protocol_details *d, siamidx_error *err) {
    const pop_pairs *pops[2] = {seen, unseen};
    siamidx_status st = SIAMIDX_OK;
    for (int p = 0; p < 2 && !st; p++) {
        st = roc_of(pops[p]->pos, pops[p]->neg_source, pops[p]->p.n, &d->roc[p][0], err);
        if (!st) st = roc_of(pops[p]->pos, pops[p]->neg_style, pops[p]->p.n, &d->roc[p][1], err);
        calibration_of(pops[p], d->calibration[p]);
    }
    if (!st) st = attribution_details(x, roles, q, qrow, nq, d, err);
    return st;
}

void siamidx_protocol_details_free(siamidx_protocol_details *d) {
    if (!d) return;
    for (int p = 0; p < 2; p++)
        for (int k = 0; k < 2; k++) free(d->roc[p][k].far), free(d->roc[p][k].tar);
    for (size_t i = 0; d->recall && i < d->n_recall; i++) free(d->recall[i].artist);
    for (size_t i = 0; d->confusions && i < d->n_confusions; i++)
        free(d->confusions[i].truth), free(d->confusions[i].named);
    free(d->recall);
    free(d->confusions);
    memset(d, 0, sizeof *d);
}

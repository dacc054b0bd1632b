/*
 * index_head.c - the head of an index: training one on the index's images
 * and storing it there, evaluating it on the images training held out, and
 * the rule for which head answers (the index's, else the model's).
 *
 * The index keeps the head as a named blob and knows nothing else of it;
 * the head layer trains and measures on labelled embeddings and knows
 * nothing of the index. This file is where the two meet.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "siamidx_ext.h"
#include "answer/index_head.h"
#include "base/error.h"
#include "base/path.h"
#include "base/sha256.h"
#include "head/attribution.h"
#include "head/classifier.h"
#include "head/evaluate.h"
#include "head/head.h"
#include "head/head_train.h"
#include "head/model_head.h"
#include "head/split.h"
#include "index/index.h"

#define HEAD_BLOB "head"
#define CLASSIFIER_BLOB "classifier"

/*
 * The caller's test images (siamidx_train_options.test_images), matched to
 * records by the path given to `build` or its resolved form, as `remove`
 * matches: each argument contributes its text, its absolute form and its
 * real path, sorted for bsearch.
 */
typedef struct given_name {
    char *path;
    size_t arg;
} given_name;

typedef struct given_tests {
    given_name *name;
    size_t n_names, n_args;
    uint8_t *matched; /* per argument */
} given_tests;

/* Everything training and evaluation need from an index, in record order. */
typedef struct index_data {
    const given_tests *given; /* NULL: no given test images */
    uint8_t *test;            /* per record, with given: 1 = a given test image */
    sx_train_data d;
    float *emb;
    int32_t *artist;
    char **keys;  /* content hash, hex: the split survives moving the files */
    char **names; /* dense artist id -> name */
    uint32_t *store_artist; /* dense id -> the store's artist id */
    size_t cap;
    siamidx_error *err;
    siamidx_status status;
} index_data;

static void index_data_free(index_data *x) {
    for (size_t i = 0; i < x->d.n; i++) free(x->keys ? x->keys[i] : NULL);
    for (int a = 0; a < x->d.n_artists; a++) free(x->names[a]);
    free(x->emb), free(x->artist), free(x->keys), free(x->names), free(x->store_artist);
    free(x->test);
    memset(x, 0, sizeof *x);
}

static int cmp_given(const void *a, const void *b) {
    return strcmp(((const given_name *)a)->path, ((const given_name *)b)->path);
}

static void given_tests_free(given_tests *g) {
    for (size_t i = 0; i < g->n_names; i++) free(g->name[i].path);
    free(g->name), free(g->matched);
    memset(g, 0, sizeof *g);
}

static siamidx_status given_tests_init(given_tests *g, const char *const *paths, size_t n,
                                       siamidx_error *err) {
    memset(g, 0, sizeof *g);
    g->n_args = n;
    g->name = calloc(3 * n + 1, sizeof *g->name);
    g->matched = calloc(n + 1, 1);
    if (!g->name || !g->matched) goto oom;
    for (size_t i = 0; i < n; i++) {
        char *forms[3] = {strdup(paths[i]), sx_path_absolute(paths[i]), realpath(paths[i], NULL)};
        if (!forms[0] || !forms[1]) {
            free(forms[0]), free(forms[1]), free(forms[2]);
            goto oom;
        }
        for (int f = 0; f < 3; f++)
            if (forms[f]) g->name[g->n_names++] = (given_name){forms[f], i};
    }
    qsort(g->name, g->n_names, sizeof *g->name, cmp_given);
    return SIAMIDX_OK;
oom:
    given_tests_free(g);
    return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "train: out of memory");
}

/* Every given test image must be in the index: a typo would silently test on fewer. */
static siamidx_status check_given_tests(const given_tests *g, siamidx_error *err) {
    size_t missing = 0, first = 0;
    for (size_t i = g->n_args; i-- > 0;)
        if (!g->matched[i]) missing++, first = i;
    if (!missing) return SIAMIDX_OK;
    for (size_t i = 0; i < g->n_names; i++)
        if (g->name[i].arg == first)
            return sx_fail(err, SIAMIDX_ERR_NOT_FOUND,
                           "train: %zu of the %zu test images are not in the index (the first: %s)",
                           missing, g->n_args, g->name[i].path);
    return sx_fail(err, SIAMIDX_ERR_NOT_FOUND, "train: %zu test images are not in the index",
                   missing);
}

/* Marks the arguments naming this path; returns whether any does. */
static int given_match(const given_tests *g, const char *path) {
    if (!path || !*path) return 0;
    given_name k = {(char *)path, 0};
    given_name *hit = bsearch(&k, g->name, g->n_names, sizeof k, cmp_given);
    if (!hit) return 0;
    while (hit > g->name && !strcmp(hit[-1].path, path)) hit--;
    for (; hit < g->name + g->n_names && !strcmp(hit->path, path); hit++) g->matched[hit->arg] = 1;
    return 1;
}

static int dense_artist(index_data *x, const siamidx_index_record *r) {
    for (int a = 0; a < x->d.n_artists; a++)
        if (x->store_artist[a] == r->artist_id) return a;
    int a = x->d.n_artists;
    uint32_t *sa = realloc(x->store_artist, (size_t)(a + 1) * sizeof *sa);
    char **nm = sa ? realloc(x->names, (size_t)(a + 1) * sizeof *nm) : NULL;
    if (sa) x->store_artist = sa;
    if (nm) x->names = nm;
    if (!sa || !nm || !(x->names[a] = strdup(r->artist))) {
        x->status = sx_fail(x->err, SIAMIDX_ERR_NO_MEMORY, "out of memory");
        return -1;
    }
    x->store_artist[a] = r->artist_id;
    x->d.n_artists = a + 1;
    return a;
}

static int take_record(void *ctx, const siamidx_index_record *r) {
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
        uint8_t *t = k && x->given ? realloc(x->test, cap) : NULL;
        if (t) x->test = t;
        if (!k || (x->given && !t)) {
            x->status = sx_fail(x->err, SIAMIDX_ERR_NO_MEMORY, "out of memory reading records");
            return 1;
        }
        x->cap = cap;
    }
    int a = dense_artist(x, r);
    if (a < 0) return 1;
    memcpy(x->emb + n * dim, r->embedding, dim * sizeof *x->emb);
    x->artist[n] = a;
    if (!(x->keys[n] = malloc(65))) {
        x->status = sx_fail(x->err, SIAMIDX_ERR_NO_MEMORY, "out of memory reading records");
        return 1;
    }
    sx_hex(r->hash, 32, x->keys[n]);
    if (x->given) {
        int by_path = given_match(x->given, r->path);
        x->test[n] = (uint8_t)(given_match(x->given, r->resolved) | by_path);
    }
    x->d.n = n + 1;
    return 0;
}

static siamidx_status load_index_data(siamidx_index *idx, const given_tests *given,
                                      index_data *x, siamidx_error *err) {
    memset(x, 0, sizeof *x);
    x->err = err;
    x->given = given;
    siamidx_status st = siamidx_index_foreach_record(idx, take_record, x, err);
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

/* The hex SHA-256 of a head blob: what ties a classifier to the head it was fitted with. */
static void blob_id(const void *blob, size_t len, char out[65]) {
    sx_sha256 c;
    uint8_t digest[32];
    sx_sha256_init(&c);
    sx_sha256_update(&c, blob, len);
    sx_sha256_final(&c, digest);
    sx_hex(digest, 32, out);
}

/*
 * The classifier over the index's artists, fitted on the head's training
 * images (its validation images choose the penalty, the fusion weight and
 * the unknown evidence), so `siamidx eval` measures it on images it never
 * saw. Refitted from the index on every `train`: an artist added since is in.
 */
static siamidx_status fit_classifier(const index_data *x, const sx_head *h, const uint8_t *roles,
                                     const siamidx_train_options *opt, const char *head_id,
                                     sx_classifier **out, siamidx_error *err) {
    siamidx_status st = sx_classifier_fit(&x->d, roles, opt && opt->verbose, out, err);
    if (!st) st = sx_fusion_fit(*out, h, &x->d, roles, err);
    if (st) {
        sx_classifier_free(*out);
        *out = NULL;
        return st;
    }
    double prior = opt ? opt->unknown_prior : SIAMIDX_DEFAULT_UNKNOWN_PRIOR;
    (*out)->unknown_prior = (float)prior;
    memcpy((*out)->head_id, head_id, 65);
    return SIAMIDX_OK;
}

siamidx_status siamidx_index_train_head(siamidx_index *idx, const siamidx_train_options *opt,
                                        siamidx_train_report *report, siamidx_error *err) {
    if (!idx) return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "train: no index");
    if (opt && !(opt->unknown_prior >= 0 && opt->unknown_prior < 1))
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT,
                       "train: the unknown prior must be from 0 to below 1, not %g",
                       opt->unknown_prior);
    sx_train_opts o;
    sx_train_opts_from_public(opt, &o);
    given_tests given;
    int have_given = opt && opt->n_test_images;
    if (have_given && !opt->test_images)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "train: test_images is NULL");
    siamidx_status st = have_given ? given_tests_init(&given, opt->test_images,
                                                      opt->n_test_images, err)
                                   : SIAMIDX_OK;
    if (st) return st;
    index_data x;
    st = load_index_data(idx, have_given ? &given : NULL, &x, err);
    if (!st && have_given) st = check_given_tests(&given, err);
    if (have_given) given_tests_free(&given);
    if (st) {
        if (x.d.n) index_data_free(&x);
        return st;
    }
    o.test_items = x.test;
    sx_head *h = NULL;
    sx_classifier *c = NULL;
    uint8_t *blob = NULL, *cblob = NULL, *roles = malloc(x.d.n);
    size_t len = 0, clen = 0;
    char head_id[65];
    if (!roles) st = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "train: out of memory");
    if (!st) st = sx_head_train(&x.d, &o, roles, &h, err);
    if (!st) st = sx_head_to_blob(h, &blob, &len, err);
    if (!st) blob_id(blob, len, head_id);
    if (!st) st = fit_classifier(&x, h, roles, opt, head_id, &c, err);
    if (!st) st = sx_classifier_to_blob(c, &cblob, &clen, err);
    /* Two transactions: after a crash between them the index holds the new
       head and the old classifier, whose head_id no longer matches -- answers
       then ignore it (as without one) until the next `train`. */
    if (!st) st = sx_index_blob_put(idx, HEAD_BLOB, blob, len, err);
    if (!st) st = sx_index_blob_put(idx, CLASSIFIER_BLOB, cblob, clen, err);
    if (!st && report) {
        sx_train_report_from_head(h, (size_t)o.holdout_artists, report);
        report->n_classes = (size_t)c->n_classes;
        report->classifier_val_top1 = c->val_top1;
        report->classifier_val_balanced_top1 = c->val_balanced_top1;
        report->fused_val_top1 = c->fused_top1;
        report->fuse_weight = c->fuse_weight;
        report->unknown_prior = c->unknown_prior;
    }
    free(blob), free(cblob), free(roles);
    siamidx_head_free(h);
    sx_classifier_free(c);
    index_data_free(&x);
    return st;
}

/* The index's head, and the hex SHA-256 of its blob (head_id may be NULL). */
static siamidx_status stored_head(siamidx_index *idx, sx_head **out, char *head_id,
                                  siamidx_error *err) {
    *out = NULL;
    void *data;
    size_t len;
    siamidx_status st = sx_index_blob_get(idx, HEAD_BLOB, &data, &len, err);
    if (!st) st = sx_head_from_blob(data, len, out, err);
    if (!st && head_id) blob_id(data, len, head_id);
    free(data);
    return st;
}

siamidx_status sx_index_stored_head(siamidx_index *idx, sx_head **out, siamidx_error *err) {
    return stored_head(idx, out, NULL, err);
}

/* The classes of artists the index no longer holds (`remove --artist` since
   `train`): left out of the answers rather than named for images gone. */
static siamidx_status drop_removed_artists(siamidx_index *idx, sx_classifier *c,
                                           siamidx_error *err) {
    uint8_t *present = malloc((size_t)c->n_classes + 1);
    if (!present) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "classifier: out of memory");
    siamidx_status st = sx_index_artists_present(idx, c->names, (size_t)c->n_classes, present, err);
    for (int k = 0; !st && k < c->n_classes; k++)
        if (!present[k] && sx_classifier_drop(c, k))
            st = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "classifier: out of memory");
    free(present);
    return st;
}

/* The classifier fitted with the head whose blob has head_id, less the
   artists removed since; NULL when the index has none (an index trained
   before classifiers) or one of another head. */
static siamidx_status stored_classifier(siamidx_index *idx, const char *head_id,
                                        sx_classifier **out, siamidx_error *err) {
    *out = NULL;
    void *data;
    size_t len;
    siamidx_error e;
    siamidx_status st = sx_index_blob_get(idx, CLASSIFIER_BLOB, &data, &len, &e);
    if (st == SIAMIDX_ERR_NOT_FOUND) return SIAMIDX_OK;
    if (!st) st = sx_classifier_from_blob(data, len, out, &e);
    free(data);
    if (st) {
        if (err) *err = e;
        return st;
    }
    if (strcmp((*out)->head_id, head_id)) {
        sx_classifier_free(*out);
        *out = NULL;
        return SIAMIDX_OK;
    }
    return drop_removed_artists(idx, *out, err);
}

siamidx_status sx_answer_head_classifier(siamidx_index *idx, const siamidx_model *model,
                                         sx_head **owned, const sx_head **head,
                                         siamidx_head_source *source, sx_classifier **clf,
                                         siamidx_error *err) {
    *owned = NULL;
    *head = NULL;
    *source = SIAMIDX_HEAD_NONE;
    if (clf) *clf = NULL;
    if (idx) {
        siamidx_error e;
        char head_id[65];
        siamidx_status st = stored_head(idx, owned, head_id, &e);
        if (st == SIAMIDX_OK) {
            *head = *owned;
            *source = SIAMIDX_HEAD_INDEX;
            if (clf && (st = stored_classifier(idx, head_id, clf, err))) {
                siamidx_head_free(*owned);
                *owned = NULL;
                *head = NULL;
                *source = SIAMIDX_HEAD_NONE;
            }
            return st;
        }
        if (st != SIAMIDX_ERR_NOT_FOUND) {
            if (err) *err = e;
            return st;
        }
    }
    if (model && siamidx_model_head(model)) {
        *head = siamidx_model_head(model);
        *source = SIAMIDX_HEAD_MODEL;
    }
    return SIAMIDX_OK;
}

siamidx_status sx_answer_head(siamidx_index *idx, const siamidx_model *model, sx_head **owned,
                              const sx_head **head, siamidx_head_source *source,
                              siamidx_error *err) {
    return sx_answer_head_classifier(idx, model, owned, head, source, NULL, err);
}

siamidx_status siamidx_index_head(siamidx_index *idx, const siamidx_model *model,
                                  siamidx_head **out, siamidx_error *err) {
    if (!idx || !out) return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "head: NULL argument");
    sx_head *owned;
    const sx_head *head;
    siamidx_head_source source;
    siamidx_status st = sx_answer_head(idx, model, &owned, &head, &source, err);
    if (st) return st;
    if (owned) {
        *out = owned;
        return SIAMIDX_OK;
    }
    if (!head) return sx_fail(err, SIAMIDX_ERR_NO_HEAD, "no trained head: run `siamidx train`");
    /* A private copy: the caller frees what it gets, whichever source. */
    uint8_t *blob;
    size_t len;
    if ((st = sx_head_to_blob(head, &blob, &len, err))) return st;
    st = sx_head_from_blob(blob, len, out, err);
    free(blob);
    return st;
}

siamidx_status siamidx_index_evaluate(siamidx_index *idx, siamidx_eval_report *out,
                                      siamidx_error *err) {
    if (!idx || !out) return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "eval: NULL argument");
    sx_head *h;
    siamidx_status st = sx_index_stored_head(idx, &h, err);
    if (st == SIAMIDX_ERR_NOT_FOUND)
        return sx_fail(err, SIAMIDX_ERR_NO_HEAD, "no trained head: run `siamidx train`");
    if (st) return st;
    index_data x;
    uint8_t *roles = NULL;
    if ((st = load_index_data(idx, NULL, &x, err))) {
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

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
#include "base/sha256.h"
#include "head/evaluate.h"
#include "head/head.h"
#include "head/head_train.h"
#include "head/model_head.h"
#include "head/split.h"
#include "index/index.h"

#define HEAD_BLOB "head"

/* Everything training and evaluation need from an index, in record order. */
typedef struct index_data {
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
    memset(x, 0, sizeof *x);
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
        if (!k) {
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
    x->d.n = n + 1;
    return 0;
}

static siamidx_status load_index_data(siamidx_index *idx, index_data *x, siamidx_error *err) {
    memset(x, 0, sizeof *x);
    x->err = err;
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

siamidx_status siamidx_index_train_head(siamidx_index *idx, const siamidx_train_options *opt,
                                        siamidx_train_report *report, siamidx_error *err) {
    if (!idx) return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "train: no index");
    sx_train_opts o;
    sx_train_opts_from_public(opt, &o);
    index_data x;
    siamidx_status st = load_index_data(idx, &x, err);
    if (st) return st;
    sx_head *h = NULL;
    uint8_t *blob = NULL;
    size_t len = 0;
    st = sx_head_train(&x.d, &o, NULL, &h, err);
    if (!st) st = sx_head_to_blob(h, &blob, &len, err);
    if (!st) st = sx_index_blob_put(idx, HEAD_BLOB, blob, len, err);
    if (!st && report) sx_train_report_from_head(h, (size_t)o.holdout_artists, report);
    free(blob);
    siamidx_head_free(h);
    index_data_free(&x);
    return st;
}

siamidx_status sx_index_stored_head(siamidx_index *idx, sx_head **out, siamidx_error *err) {
    *out = NULL;
    void *data;
    size_t len;
    siamidx_status st = sx_index_blob_get(idx, HEAD_BLOB, &data, &len, err);
    if (!st) st = sx_head_from_blob(data, len, out, err);
    free(data);
    return st;
}

siamidx_status sx_answer_head(siamidx_index *idx, const siamidx_model *model, sx_head **owned,
                              const sx_head **head, siamidx_head_source *source,
                              siamidx_error *err) {
    *owned = NULL;
    *head = NULL;
    *source = SIAMIDX_HEAD_NONE;
    if (idx) {
        siamidx_error e;
        siamidx_status st = sx_index_stored_head(idx, owned, &e);
        if (st == SIAMIDX_OK) {
            *head = *owned;
            *source = SIAMIDX_HEAD_INDEX;
            return SIAMIDX_OK;
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
    if ((st = load_index_data(idx, &x, err))) {
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

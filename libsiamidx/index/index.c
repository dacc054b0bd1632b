/*
 * index.c - the index: open, remove, search, info, verify, and what it holds
 * (records, neighbours with their embeddings, named blobs). It returns
 * neighbours and knows nothing of heads: answer/ scores them. Building from
 * image files is build.c.
 *
 * The store (store.c) is the truth; the FAISS index (vindex.c) is brought to
 * the state of the read transaction a query runs in before it searches, and
 * every hit is looked up in that same transaction, so a query only ever
 * returns committed records. Writers hold the writer lock (lock.c) from open
 * to close and write each batch in one transaction.
 */
#include <errno.h>
#include <pthread.h>
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "siamidx_ext.h"
#include "base/error.h"
#include "base/path.h"
#include "base/sha256.h"
#include "index/index.h"
#include "store/lock.h"
#include "store/store.h"
#include "store/vindex.h"


struct siamidx_index {
    char *dir;
    sx_store *st;
    sx_vindex *vi;
    sx_lock *lock;
    int read_only;
    sx_store_meta meta; /* as of open (dim, fingerprint, pool never change after) */
    pthread_mutex_t mu; /* guards vi: queries from many threads */
};

static const char *const index_types[] = {"flat", "hnsw", "ivf", "ivfpq"};

void siamidx_index_options_init(siamidx_index_options *opt) { memset(opt, 0, sizeof *opt); }

const char *siamidx_default_index_path(void) {
    const char *p = getenv("SIAMIDX_INDEX");
    return p && *p ? p : "siamidx.idx";
}

sx_store *sx_index_store(siamidx_index *idx) { return idx->st; }
const sx_store_meta *sx_index_meta(const siamidx_index *idx) { return &idx->meta; }
const char *sx_index_dir(const siamidx_index *idx) { return idx->dir; }

/* ---- opening ---------------------------------------------------------------------- */

static siamidx_status write_meta(sx_wtxn *w, void *ctx, siamidx_error *err) {
    return sx_store_set_meta(w, ctx, err);
}

static siamidx_status check_type(const char *type, siamidx_error *err) {
    for (size_t i = 0; i < sizeof index_types / sizeof index_types[0]; i++)
        if (!strcmp(type, index_types[i])) return SIAMIDX_OK;
    return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT,
                   "unknown index type '%s' (flat, hnsw, ivf or ivfpq)", type);
}

/* Fills an empty index's description, or checks that the model matches it. */
static siamidx_status adopt_model(siamidx_index *idx, const char *fingerprint, uint32_t dim,
                                  const char *arch, const char *pool,
                                  const siamidx_index_options *opt, siamidx_error *err) {
    sx_store_meta *m = &idx->meta;
    int fresh = m->dim == 0;
    if (!fresh && fingerprint && strcmp(m->fingerprint, fingerprint))
        return sx_fail(err, SIAMIDX_ERR_MODEL_MISMATCH,
                       "index %s was built with model %s, not with this model %s", idx->dir,
                       m->fingerprint, fingerprint);
    if (!fresh && fingerprint && pool && *pool && *m->pool && strcmp(m->pool, pool))
        return sx_fail(err, SIAMIDX_ERR_MODEL_MISMATCH,
                       "index %s holds %s-pooled embeddings, not %s (model %s)", idx->dir,
                       m->pool, pool, fingerprint);
    if (!fresh && dim && dim != m->dim)
        return sx_fail(err, SIAMIDX_ERR_MODEL_MISMATCH,
                       "index %s holds %u-dimensional embeddings, not %u", idx->dir, m->dim, dim);
    sx_store_meta want = *m;
    if (fresh && fingerprint && dim) {
        snprintf(want.fingerprint, sizeof want.fingerprint, "%s", fingerprint);
        snprintf(want.arch, sizeof want.arch, "%s", arch ? arch : "");
        snprintf(want.pool, sizeof want.pool, "%s", pool ? pool : "");
        want.dim = dim;
    }
    if (opt->index_type) snprintf(want.index_type, sizeof want.index_type, "%s", opt->index_type);
    if (!memcmp(&want, m, sizeof want)) return SIAMIDX_OK;
    if (idx->read_only) return SIAMIDX_OK; /* nothing to record; queries use the stored meta */
    siamidx_status s = sx_store_write(idx->st, write_meta, &want, err);
    if (!s) *m = want;
    return s;
}

/* Brings the FAISS index to the state of txn (caller holds idx->mu). */
static siamidx_status sync_locked(siamidx_index *idx, MDB_txn *txn, siamidx_error *err) {
    if (!idx->meta.dim) return SIAMIDX_OK;
    return sx_vindex_sync(idx->vi, idx->st, txn, err);
}

/* ---- IVF-PQ's training ---------------------------------------------------------------- */

typedef struct ivf_put_ctx {
    const void *blob;
    size_t len;
    int imported;
    const sx_store_meta *meta; /* NULL: leave the meta as it is */
} ivf_put_ctx;

static siamidx_status put_ivf(sx_wtxn *w, void *ctx, siamidx_error *err) {
    ivf_put_ctx *c = ctx;
    siamidx_status s = c->meta ? sx_store_set_meta(w, c->meta, err) : SIAMIDX_OK;
    return s ? s : sx_vindex_ivf_put(w, c->blob, c->len, c->imported, err);
}

/*
 * A writer of an ivfpq index trains it once it holds IVFPQ_MIN_VECTORS, and
 * again (its own training only) when the collection outgrew it; the
 * training goes into the store in one transaction that logs a rebuild, so
 * a crash leaves either the old training or the new one, each with the
 * records it covers. An imported training (--ivf-from) is never replaced.
 */
static siamidx_status ensure_trained(siamidx_index *idx, siamidx_error *err) {
    if (idx->read_only || !idx->meta.dim || strcmp(idx->meta.index_type, "ivfpq"))
        return SIAMIDX_OK;
    MDB_txn *txn;
    siamidx_status s = sx_store_read_begin(idx->st, &txn, err);
    if (s) return s;
    sx_ivf_info info;
    siamidx_error e;
    siamidx_status have = sx_vindex_ivf_get(idx->st, txn, &info, &e);
    uint64_t n = sx_store_count(idx->st, txn);
    int train = n >= IVFPQ_MIN_VECTORS &&
                (have == SIAMIDX_ERR_NOT_FOUND ||
                 (have == SIAMIDX_OK && sx_vindex_ivf_outgrown(&info, n)));
    if (have == SIAMIDX_ERR_INDEX_CORRUPT && n >= IVFPQ_MIN_VECTORS) {
        fprintf(stderr, "siamidx: warning: %s; training IVF-PQ again\n", e.message);
        train = 1;
    }
    void *blob = NULL;
    size_t len = 0;
    if (train) s = sx_vindex_ivf_train(idx->st, txn, idx->meta.dim, &blob, &len, err);
    sx_store_read_end(txn);
    if (!s && train) {
        ivf_put_ctx c = {.blob = blob, .len = len};
        s = sx_store_write(idx->st, put_ivf, &c, err);
    }
    free(blob);
    return s;
}

static siamidx_status sync_now(siamidx_index *idx, siamidx_error *err) {
    siamidx_status s = ensure_trained(idx, err);
    if (s) return s;
    MDB_txn *txn;
    s = sx_store_read_begin(idx->st, &txn, err);
    if (s) return s;
    pthread_mutex_lock(&idx->mu);
    s = sync_locked(idx, txn, err);
    pthread_mutex_unlock(&idx->mu);
    sx_store_read_end(txn);
    return s;
}

siamidx_status sx_index_sync(siamidx_index *idx, siamidx_error *err) { return sync_now(idx, err); }

siamidx_status sx_index_set_meta(siamidx_index *idx, const sx_store_meta *want,
                                 siamidx_error *err) {
    if (idx->read_only)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "index %s was opened read-only",
                       idx->dir);
    if (want->index_type[0]) {
        siamidx_status s = check_type(want->index_type, err);
        if (s) return s;
    }
    siamidx_status s = sx_store_write(idx->st, write_meta, (void *)want, err);
    if (s) return s;
    uint32_t old_dim = idx->meta.dim;
    idx->meta = *want;
    if (old_dim == want->dim) return SIAMIDX_OK;
    /* The FAISS index was made for no dimension: start it again for this one. */
    MDB_txn *txn;
    if ((s = sx_store_read_begin(idx->st, &txn, err))) return s;
    pthread_mutex_lock(&idx->mu);
    sx_vindex_free(idx->vi);
    idx->vi = NULL;
    s = sx_vindex_load(idx->st, txn, want->dim, &idx->vi, err);
    if (!s) s = sync_locked(idx, txn, err);
    pthread_mutex_unlock(&idx->mu);
    sx_store_read_end(txn);
    return s;
}

siamidx_status sx_index_open_raw(const char *dir, const char *fingerprint, uint32_t dim,
                                 const char *arch, const char *pool,
                                 const siamidx_index_options *opt, siamidx_index **out,
                                 siamidx_error *err) {
    *out = NULL;
    siamidx_index_options defaults;
    if (!opt) {
        siamidx_index_options_init(&defaults);
        opt = &defaults;
    }
    if (!dir || !*dir) dir = siamidx_default_index_path();
    if (opt->index_type) {
        siamidx_status s = check_type(opt->index_type, err);
        if (s) return s;
    }
    siamidx_index *idx = calloc(1, sizeof *idx);
    if (!idx || !(idx->dir = strdup(dir))) {
        free(idx);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "out of memory");
    }
    pthread_mutex_init(&idx->mu, NULL);
    idx->read_only = opt->read_only;
    siamidx_status s = SIAMIDX_OK;
    struct stat sb;
    if (stat(dir, &sb) != 0) {
        if (!opt->create || opt->read_only) {
            s = sx_fail(err, SIAMIDX_ERR_NOT_FOUND, "%s: no such index", dir);
            goto fail;
        }
        if (mkdir(dir, 0777) == 0) {
            sx_fsync_parent(dir); /* the new directory's entry */
        } else if (errno != EEXIST) {
            s = sx_fail(err, SIAMIDX_ERR_IO, "%s: cannot create: %s", dir, strerror(errno));
            goto fail;
        }
    } else if (!S_ISDIR(sb.st_mode)) {
        s = sx_fail(err, SIAMIDX_ERR_INDEX_CORRUPT, "%s: an index is a directory, this is not",
                    dir);
        goto fail;
    }
    if (!opt->read_only && (s = sx_lock_acquire(dir, opt->wait, &idx->lock, err))) goto fail;
    if ((s = sx_store_open(dir, opt->read_only, opt->create, &idx->st, err))) goto fail;
    MDB_txn *txn;
    if ((s = sx_store_read_begin(idx->st, &txn, err))) goto fail;
    s = sx_store_get_meta(idx->st, txn, &idx->meta, err);
    sx_store_read_end(txn);
    if (s) goto fail;
    if ((s = adopt_model(idx, fingerprint, dim, arch, pool, opt, err))) goto fail;
    if ((s = sx_store_read_begin(idx->st, &txn, err))) goto fail;
    s = sx_vindex_load(idx->st, txn, idx->meta.dim, &idx->vi, err);
    sx_store_read_end(txn);
    if (s) goto fail;
    if ((s = sync_now(idx, err))) goto fail;
    *out = idx;
    return SIAMIDX_OK;
fail:
    siamidx_index_close(idx);
    return s;
}

siamidx_status siamidx_index_open(const char *dir, const siamidx_model *model,
                                  const siamidx_index_options *opt, siamidx_index **out,
                                  siamidx_error *err) {
    if (!out) return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "index_open: no output handle");
    if (!model) return sx_index_open_raw(dir, NULL, 0, NULL, NULL, opt, out, err);
    siamidx_pool pool = siamidx_model_default_pool(model);
    return sx_index_open_raw(dir, siamidx_model_fingerprint(model),
                             (uint32_t)siamidx_model_dim(model, pool), siamidx_model_arch(model),
                             siamidx_pool_name(pool), opt, out, err);
}

/* Saves the derived index so the next open starts from it (unless the
   verified snapshot on disk already is of this state); a failure here only
   costs the next open a catch-up. */
static void save_snapshot(siamidx_index *idx) {
    siamidx_error e;
    if (!sx_vindex_is_saved(idx->vi) && sx_vindex_save(idx->vi, idx->st, &e))
        fprintf(stderr, "siamidx: warning: %s (the next open rebuilds or catches up)\n",
                e.message);
}

void siamidx_index_close(siamidx_index *idx) {
    if (!idx) return;
    if (idx->lock && idx->st && idx->vi) save_snapshot(idx);
    sx_vindex_free(idx->vi);
    sx_store_close(idx->st);
    sx_lock_release(idx->lock);
    pthread_mutex_destroy(&idx->mu);
    free(idx->dir);
    free(idx);
}

/* ---- writing records ------------------------------------------------------------------- */

typedef struct items_ctx {
    sx_store *st;
    const sx_index_item *items;
    size_t n;
    uint32_t dim;
} items_ctx;

/* Items [from, to) in one transaction: each replaces whatever record its path had. */
static siamidx_status write_items(sx_wtxn *w, void *ctx, size_t from, size_t to,
                                  siamidx_error *err) {
    items_ctx *c = ctx;
    MDB_txn *txn = sx_wtxn_txn(w);
    for (size_t i = from; i < to; i++) {
        const sx_index_item *it = &c->items[i];
        uint64_t old;
        siamidx_status s = sx_store_find_path(c->st, txn, it->resolved, &old, err);
        if (s == SIAMIDX_OK) s = sx_store_delete_record(w, old, err);
        else if (s == SIAMIDX_ERR_NOT_FOUND) s = SIAMIDX_OK;
        if (s) return s;
        if (it->remove) continue;
        sx_record r = {.size = it->size, .mtime_ns = it->mtime_ns, .path = it->path,
                       .resolved = it->resolved, .title = it->title, .style = it->style,
                       .genre = it->genre, .date = it->date, .source_repo = it->source_repo,
                       .source_path = it->source_path, .dim = c->dim,
                       .embedding = it->embedding};
        memcpy(r.hash, it->hash, 32);
        if ((s = sx_store_put_record(w, &r, it->artist, err))) return s;
    }
    return SIAMIDX_OK;
}

siamidx_status sx_index_writable(const siamidx_index *idx, siamidx_error *err) {
    if (idx->read_only)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "index %s was opened read-only",
                       idx->dir);
    if (!idx->meta.dim)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT,
                       "index %s has no model yet: open it with one to add images", idx->dir);
    return SIAMIDX_OK;
}

siamidx_status sx_index_add_embeddings(siamidx_index *idx, const sx_index_item *items, size_t n,
                                       siamidx_error *err) {
    siamidx_status s = sx_index_writable(idx, err);
    if (s || n == 0) return s;
    items_ctx c = {.st = idx->st, .items = items, .n = n, .dim = idx->meta.dim};
    if ((s = sx_store_write_range(idx->st, write_items, &c, 0, n, err))) return s;
    return sync_now(idx, err);
}

/* ---- removing ------------------------------------------------------------------------ */

typedef struct remove_ctx {
    sx_store *st;
    uint64_t *ids;     /* the records to remove, found first (0: none) */
    uint8_t *matched;  /* per id: it was removed */
    size_t removed;
} remove_ctx;

static siamidx_status remove_ids(sx_wtxn *w, void *ctx, size_t from, size_t to,
                                 siamidx_error *err) {
    remove_ctx *c = ctx;
    for (size_t i = from; i < to; i++) {
        c->matched[i] = 0;
        if (!c->ids[i]) continue;
        siamidx_status s = sx_store_delete_record(w, c->ids[i], err);
        c->matched[i] = s == SIAMIDX_OK;
        if (s == SIAMIDX_ERR_NOT_FOUND) continue; /* removed meanwhile */
        if (s) return s;
    }
    return SIAMIDX_OK;
}

static siamidx_status run_remove(siamidx_index *idx, sx_write_range_fn fn, remove_ctx *c,
                                 size_t n, size_t *removed, siamidx_error *err) {
    if (removed) *removed = 0;
    if (idx->read_only)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "index %s was opened read-only",
                       idx->dir);
    c->st = idx->st;
    c->removed = 0;
    siamidx_status s = n ? sx_store_write_range(idx->st, fn, c, 0, n, err) : SIAMIDX_OK;
    for (size_t i = 0; i < n; i++) c->removed += c->matched[i];
    if (c->removed) {
        siamidx_status ss = sync_now(idx, err);
        if (!s) s = ss;
    }
    if (removed) *removed = c->removed;
    if (!s && c->removed == 0) s = sx_fail(err, SIAMIDX_ERR_NOT_FOUND, "nothing matched in %s",
                                          idx->dir);
    return s;
}

/* Paths as given at build time (as query prints them) that named no
   resolved path: one pass over the records. */
typedef struct given_ctx {
    const char *const *paths;
    const uint8_t *look; /* per path: not found as resolved */
    uint64_t *ids;
    size_t *matches;
    size_t n;
} given_ctx;

static int match_given(void *ctx, const sx_record *r) {
    given_ctx *g = ctx;
    for (size_t i = 0; i < g->n; i++)
        if (g->look[i] && !strcmp(r->path, g->paths[i]) && g->matches[i]++ == 0)
            g->ids[i] = r->id;
    return 0;
}

/* The record each path names, in txn: as resolved (normalised absolute, then
   through symlinks), else as given at build time when exactly one record
   was given so. */
static siamidx_status find_paths(siamidx_index *idx, MDB_txn *txn, const char *const *paths,
                                 size_t n, uint64_t *ids, size_t *matches, siamidx_error *err) {
    size_t unresolved = 0;
    uint8_t *look = calloc(n + 1, 1);
    if (!look) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "remove: out of memory");
    for (size_t i = 0; i < n; i++) {
        char *abs = sx_path_absolute(paths[i]), *real = realpath(paths[i], NULL);
        if (!abs) {
            free(real);
            free(look);
            return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "remove: out of memory");
        }
        siamidx_error e;
        ids[i] = 0;
        matches[i] = 0;
        if (sx_store_find_path(idx->st, txn, abs, &ids[i], &e) &&
            (!real || sx_store_find_path(idx->st, txn, real, &ids[i], &e)))
            ids[i] = 0;
        free(abs);
        free(real);
        matches[i] = ids[i] != 0;
        look[i] = !ids[i];
        unresolved += !ids[i];
    }
    given_ctx g = {paths, look, ids, matches, n};
    siamidx_status s = unresolved ? sx_store_foreach_record(idx->st, txn, match_given, &g, err)
                                  : SIAMIDX_OK;
    for (size_t i = 0; i < n; i++)
        if (matches[i] > 1) ids[i] = 0; /* ambiguous: say so, remove nothing */
    free(look);
    return s;
}

siamidx_status siamidx_index_remove_paths(siamidx_index *idx, const char *const *paths, size_t n,
                                     size_t *matches, size_t *removed, siamidx_error *err) {
    if (removed) *removed = 0;
    remove_ctx c = {.ids = calloc(n + 1, sizeof *c.ids), .matched = calloc(n + 1, 1)};
    size_t *m = matches ? matches : calloc(n + 1, sizeof *m);
    MDB_txn *txn = NULL;
    siamidx_status s = c.ids && c.matched && m ? SIAMIDX_OK
                                              : sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "out of memory");
    if (!s) s = sx_store_read_begin(idx->st, &txn, err);
    if (!s) s = find_paths(idx, txn, paths, n, c.ids, m, err);
    sx_store_read_end(txn);
    if (!s) s = run_remove(idx, remove_ids, &c, n, removed, err);
    for (size_t i = 0; i < n && matches; i++)
        if (m[i] == 1 && !c.matched[i]) m[i] = 0; /* removed meanwhile by another thread */
    if (m != matches) free(m);
    free(c.ids);
    free(c.matched);
    return s;
}

siamidx_status siamidx_index_remove(siamidx_index *idx, const char *const *paths, size_t n,
                                    size_t *removed, siamidx_error *err) {
    return siamidx_index_remove_paths(idx, paths, n, NULL, removed, err);
}

siamidx_status siamidx_index_remove_artist(siamidx_index *idx, const char *artist,
                                           size_t *removed, siamidx_error *err) {
    if (removed) *removed = 0;
    MDB_txn *txn;
    siamidx_status s = sx_store_read_begin(idx->st, &txn, err);
    if (s) return s;
    uint32_t aid;
    size_t n = 0;
    remove_ctx c = {0};
    s = sx_store_artist_id(idx->st, txn, artist ? artist : "", &aid, err);
    if (!s) s = sx_store_artist_records(idx->st, txn, aid, &c.ids, &n, err);
    sx_store_read_end(txn);
    if (!s && !(c.matched = calloc(n + 1, 1)))
        s = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "remove: out of memory");
    if (!s) s = run_remove(idx, remove_ids, &c, n, removed, err);
    free(c.ids);
    free(c.matched);
    return s;
}

/* ---- searching ------------------------------------------------------------------------ */

/*
 * IVF-PQ's similarities are estimates from 8-bit codes: its top k misses
 * many of the exact top k (recall@10 ~0.45 on bench/ivfpq.sh's vectors),
 * while its top 10 k holds nearly all of them. So a lossy index returns
 * its RERANK * k best candidates, re-scored with the embeddings the store
 * holds (exact inner products, in the query's own transaction), and the k
 * best of those.
 */
#define RERANK 10

typedef struct scored {
    int64_t id;
    float sim;
} scored;

static int by_sim_desc(const void *a, const void *b) {
    const scored *x = a, *y = b;
    if (x->sim != y->sim) return x->sim < y->sim ? 1 : -1;
    return (x->id > y->id) - (x->id < y->id);
}

static void rerank_one(siamidx_index *idx, MDB_txn *txn, const float *q, const int64_t *cand,
                       int kk, scored *buf, float *emb, int k, int64_t *ids, float *sims) {
    uint32_t dim = idx->meta.dim;
    int m = 0;
    for (int j = 0; j < kk; j++) {
        sx_record r;
        siamidx_error e;
        if (cand[j] < 0 || sx_store_get_record(idx->st, txn, (uint64_t)cand[j], &r, &e) ||
            r.dim != dim)
            continue;
        sx_record_embedding(&r, emb);
        double d = 0;
        for (uint32_t t = 0; t < dim; t++) d += (double)q[t] * emb[t];
        buf[m].id = cand[j];
        buf[m++].sim = (float)d;
    }
    qsort(buf, (size_t)m, sizeof *buf, by_sim_desc);
    for (int j = 0; j < k; j++) {
        ids[j] = j < m ? buf[j].id : -1;
        sims[j] = j < m ? buf[j].sim : 0;
    }
}

/* Searches under the lock after syncing to txn: the hits reflect exactly txn. */
static siamidx_status search_in(siamidx_index *idx, MDB_txn *txn, const float *q, size_t n,
                                int k, int64_t *ids, float *sims, siamidx_error *err) {
    if (!idx->meta.dim)
        return sx_fail(err, SIAMIDX_ERR_NOT_FOUND, "index %s is empty", idx->dir);
    pthread_mutex_lock(&idx->mu);
    siamidx_status s = sync_locked(idx, txn, err);
    int lossy = !s && sx_vindex_is_lossy(idx->vi);
    int kk = k <= 100000 / RERANK ? k * RERANK : k;
    int64_t *cand = NULL;
    float *csim = NULL;
    if (lossy) {
        cand = malloc(n * (size_t)kk * sizeof *cand);
        csim = malloc(n * (size_t)kk * sizeof *csim);
        if (!cand || !csim) s = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "search: out of memory");
    }
    if (!s) s = sx_vindex_search(idx->vi, q, n, lossy ? kk : k, lossy ? cand : ids,
                                 lossy ? csim : sims, err);
    pthread_mutex_unlock(&idx->mu);
    scored *buf = lossy && !s ? malloc((size_t)kk * sizeof *buf) : NULL;
    float *emb = lossy && !s ? malloc(idx->meta.dim * sizeof *emb) : NULL;
    if (lossy && !s && (!buf || !emb)) s = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "search: out of memory");
    for (size_t i = 0; lossy && !s && i < n; i++)
        rerank_one(idx, txn, q + i * idx->meta.dim, cand + i * (size_t)kk, kk, buf, emb, k,
                   ids + i * (size_t)k, sims + i * (size_t)k);
    free(buf);
    free(emb);
    free(cand);
    free(csim);
    return s;
}

siamidx_status siamidx_index_search(siamidx_index *idx, const float *queries, size_t n, int k,
                                    int64_t *ids, float *sims, siamidx_error *err) {
    if (!idx || !queries || !ids || !sims || k <= 0)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "search: bad arguments");
    MDB_txn *txn;
    siamidx_status s = sx_store_read_begin(idx->st, &txn, err);
    if (s) return s;
    s = search_in(idx, txn, queries, n, k, ids, sims, err);
    /* Only committed records leave: drop any hit the transaction does not hold. */
    for (size_t i = 0; !s && i < n; i++) {
        int64_t *row = ids + i * (size_t)k;
        float *srow = sims + i * (size_t)k;
        int m = 0;
        for (int j = 0; j < k; j++) {
            sx_record r;
            siamidx_error e;
            if (row[j] < 0 || sx_store_get_record(idx->st, txn, (uint64_t)row[j], &r, &e)) continue;
            row[m] = row[j];
            srow[m++] = srow[j];
        }
        for (; m < k; m++) {
            row[m] = -1;
            srow[m] = 0;
        }
    }
    sx_store_read_end(txn);
    return s;
}

static void neighbor_free(siamidx_neighbor *x) {
    free(x->path);
    free(x->artist);
}

void sx_neighbors_free(sx_neighbors *n) {
    for (size_t i = 0; n->nb && i < n->n; i++) neighbor_free(&n->nb[i]);
    free(n->nb);
    free(n->emb);
    free(n->hash);
    memset(n, 0, sizeof *n);
}

/* The hits that are committed records of txn, with their artists and embeddings. */
static siamidx_status collect_neighbors(siamidx_index *idx, MDB_txn *txn, const int64_t *ids,
                                        const float *sims, int kk, sx_neighbors *out,
                                        siamidx_error *err) {
    uint32_t dim = idx->meta.dim;
    for (int j = 0; j < kk; j++) {
        sx_record r;
        const char *artist;
        siamidx_error e;
        if (ids[j] < 0 || sx_store_get_record(idx->st, txn, (uint64_t)ids[j], &r, &e) ||
            sx_store_artist_name(idx->st, txn, r.artist_id, &artist, NULL, &e))
            continue;
        if (r.dim != dim)
            return sx_fail(err, SIAMIDX_ERR_INDEX_CORRUPT,
                           "record %lld has %u dimensions, the index %u", (long long)ids[j],
                           r.dim, dim);
        siamidx_neighbor *x = &out->nb[out->n];
        x->id = ids[j];
        x->similarity = sims[j];
        x->probability = NAN; /* until a head scores the pair */
        x->path = strdup(r.path);
        x->artist = strdup(artist);
        if (!x->path || !x->artist) {
            neighbor_free(x);
            return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "out of memory");
        }
        sx_record_embedding(&r, out->emb + out->n * dim);
        memcpy(out->hash + out->n * 32, r.hash, 32);
        out->n++;
    }
    return SIAMIDX_OK;
}

siamidx_status sx_index_neighbors(siamidx_index *idx, const float *query, int k,
                                  sx_neighbors *out, siamidx_error *err) {
    memset(out, 0, sizeof *out);
    if (!idx || !query || k <= 0)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "query: bad arguments");
    if (!idx->meta.dim) return sx_fail(err, SIAMIDX_ERR_NOT_FOUND, "index %s is empty", idx->dir);
    out->dim = idx->meta.dim;
    int64_t *ids = malloc((size_t)k * sizeof *ids);
    float *sims = malloc((size_t)k * sizeof *sims);
    out->nb = calloc((size_t)k, sizeof *out->nb);
    out->emb = malloc((size_t)k * out->dim * sizeof *out->emb);
    out->hash = malloc((size_t)k * 32);
    MDB_txn *txn = NULL;
    siamidx_status s = ids && sims && out->nb && out->emb && out->hash
                           ? SIAMIDX_OK
                           : sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "out of memory");
    if (!s) s = sx_store_read_begin(idx->st, &txn, err);
    if (!s) s = search_in(idx, txn, query, 1, k, ids, sims, err);
    if (!s) s = collect_neighbors(idx, txn, ids, sims, k, out, err);
    sx_store_read_end(txn);
    free(ids);
    free(sims);
    if (s) sx_neighbors_free(out);
    return s;
}

/* ---- what the index holds: records, named blobs ------------------------------------------ */

typedef struct foreach_ctx {
    siamidx_index *idx;
    MDB_txn *txn;
    siamidx_record_fn fn;
    void *ctx;
    float *buf;
    uint32_t cap;
    siamidx_status status;
    siamidx_error *err;
} foreach_ctx;

static int visit_record(void *ctx, const sx_record *r) {
    foreach_ctx *c = ctx;
    if (r->dim > c->cap) {
        float *b = realloc(c->buf, (size_t)r->dim * sizeof *b);
        if (!b) {
            c->status = sx_fail(c->err, SIAMIDX_ERR_NO_MEMORY, "out of memory reading records");
            return 1;
        }
        c->buf = b;
        c->cap = r->dim;
    }
    const char *artist = NULL;
    siamidx_error e;
    siamidx_status s = sx_store_artist_name(c->idx->st, c->txn, r->artist_id, &artist, NULL, &e);
    if (s) {
        c->status = s;
        if (c->err) *c->err = e;
        return 1;
    }
    sx_record_embedding(r, c->buf);
    siamidx_index_record v = {.id = r->id, .path = r->path, .resolved = r->resolved,
                              .artist = artist, .artist_id = r->artist_id, .size = r->size,
                              .mtime_ns = r->mtime_ns, .dim = r->dim, .embedding = c->buf,
                              .source_repo = r->source_repo ? r->source_repo : "",
                              .source_path = r->source_path ? r->source_path : ""};
    memcpy(v.hash, r->hash, 32);
    return c->fn(c->ctx, &v);
}

siamidx_status siamidx_index_foreach_record(siamidx_index *idx, siamidx_record_fn fn, void *ctx,
                                            siamidx_error *err) {
    if (!idx || !fn) return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "records: NULL argument");
    foreach_ctx c = {.idx = idx, .fn = fn, .ctx = ctx, .err = err};
    siamidx_status s = sx_store_read_begin(idx->st, &c.txn, err);
    if (s) return s;
    s = sx_store_foreach_record(idx->st, c.txn, visit_record, &c, err);
    sx_store_read_end(c.txn);
    free(c.buf);
    return s ? s : c.status;
}

siamidx_status sx_index_blob_get(siamidx_index *idx, const char *name, void **data, size_t *len,
                                 siamidx_error *err) {
    *data = NULL;
    *len = 0;
    MDB_txn *txn;
    siamidx_status s = sx_store_read_begin(idx->st, &txn, err);
    if (s) return s;
    const void *p;
    size_t n;
    s = sx_store_blob_get(idx->st, txn, name, &p, &n, err);
    if (!s && !(*data = malloc(n ? n : 1)))
        s = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "out of memory for blob %s", name);
    if (!s) {
        memcpy(*data, p, n); /* LMDB's memory lives only as long as the transaction */
        *len = n;
    }
    sx_store_read_end(txn);
    return s;
}

typedef struct blob_ctx {
    const char *name;
    const void *data;
    size_t len;
} blob_ctx;

static siamidx_status put_blob(sx_wtxn *w, void *ctx, siamidx_error *err) {
    blob_ctx *b = ctx;
    return sx_store_blob_put(w, b->name, b->data, b->len, err);
}

siamidx_status sx_index_blob_put(siamidx_index *idx, const char *name, const void *data,
                                 size_t len, siamidx_error *err) {
    if (idx->read_only)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "index %s was opened read-only",
                       idx->dir);
    blob_ctx b = {name, data, len};
    return sx_store_write(idx->st, put_blob, &b, err);
}

siamidx_status siamidx_index_cached_embedding(siamidx_index *idx, const char *path, float *out,
                                              size_t dim, siamidx_error *err) {
    if (!idx || !path || !out)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "cached embedding: NULL argument");
    uint8_t hash[32];
    if (sx_sha256_file(path, hash))
        return sx_fail(err, SIAMIDX_ERR_NOT_FOUND, "%s: not readable", path);
    MDB_txn *txn;
    siamidx_status st = sx_store_read_begin(idx->st, &txn, err);
    if (st) return st;
    uint64_t id;
    sx_record r;
    st = sx_store_find_hash(idx->st, txn, hash, &id, err);
    if (!st) st = sx_store_get_record(idx->st, txn, id, &r, err);
    if (!st && r.dim != dim)
        st = sx_fail(err, SIAMIDX_ERR_MODEL_MISMATCH, "%s: indexed with %u dimensions, not %zu",
                     path, r.dim, dim);
    if (!st) sx_record_embedding(&r, out);
    sx_store_read_end(txn);
    return st;
}

siamidx_status sx_index_find_content(siamidx_index *idx, const uint8_t hash[32], int64_t *id,
                                     char **path, char **artist, float *embedding,
                                     siamidx_error *err) {
    *id = -1;
    *path = *artist = NULL;
    MDB_txn *txn;
    siamidx_status st = sx_store_read_begin(idx->st, &txn, err);
    if (st) return st;
    uint64_t rid;
    sx_record r;
    const char *name = NULL;
    st = sx_store_find_hash(idx->st, txn, hash, &rid, err);
    if (!st) st = sx_store_get_record(idx->st, txn, rid, &r, err);
    if (!st) st = sx_store_artist_name(idx->st, txn, r.artist_id, &name, NULL, err);
    if (!st && embedding && r.dim != idx->meta.dim)
        st = sx_fail(err, SIAMIDX_ERR_INDEX_CORRUPT, "record %llu has %u dimensions, the index %u",
                     (unsigned long long)rid, r.dim, idx->meta.dim);
    if (!st) {
        *path = strdup(r.path);
        *artist = strdup(name);
        if (!*path || !*artist) st = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "out of memory");
        else if (embedding) sx_record_embedding(&r, embedding);
        *id = (int64_t)rid;
    }
    sx_store_read_end(txn);
    if (st) {
        free(*path), free(*artist);
        *path = *artist = NULL;
        *id = -1;
    }
    return st;
}

/* ---- inspection ------------------------------------------------------------------------ */

static uint64_t dir_bytes(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    uint64_t total = 0;
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d))) {
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) total += (uint64_t)sb.st_blocks * 512;
    }
    closedir(d);
    return total;
}

typedef struct artist_list {
    siamidx_artist_info *a;
    size_t n, cap;
    int failed;
} artist_list;

static int take_artist(void *ctx, uint32_t id, const char *name, uint64_t count) {
    (void)id;
    artist_list *l = ctx;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        siamidx_artist_info *p = realloc(l->a, cap * sizeof *p);
        if (!p) return l->failed = 1;
        l->a = p;
        l->cap = cap;
    }
    if (!(l->a[l->n].name = strdup(name))) return l->failed = 1;
    l->a[l->n++].images = count;
    return 0;
}

siamidx_status sx_index_artists_present(siamidx_index *idx, char *const *names, size_t n,
                                        uint8_t *present, siamidx_error *err) {
    MDB_txn *txn;
    siamidx_status s = sx_store_read_begin(idx->st, &txn, err);
    if (s) return s;
    for (size_t i = 0; !s && i < n; i++) {
        uint32_t id;
        uint64_t count = 0;
        siamidx_error e;
        s = sx_store_artist_id(idx->st, txn, names[i], &id, &e);
        if (!s) s = sx_store_artist_name(idx->st, txn, id, NULL, &count, &e);
        if (s == SIAMIDX_ERR_NOT_FOUND) s = SIAMIDX_OK, count = 0;
        if (s && err) *err = e;
        present[i] = count > 0;
    }
    sx_store_read_end(txn);
    return s;
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const siamidx_artist_info *)a)->name, ((const siamidx_artist_info *)b)->name);
}

siamidx_status siamidx_index_info_get(siamidx_index *idx, siamidx_index_info *info,
                                      siamidx_error *err) {
    memset(info, 0, sizeof *info);
    MDB_txn *txn;
    siamidx_status s = sx_store_read_begin(idx->st, &txn, err);
    if (s) return s;
    sx_store_meta m = {0};
    artist_list l = {0};
    s = sx_store_get_meta(idx->st, txn, &m, err);
    if (!s) s = sx_store_foreach_artist(idx->st, txn, take_artist, &l, err);
    if (!s && l.failed) s = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "info: out of memory");
    if (!s) {
        info->images = sx_store_count(idx->st, txn);
        pthread_mutex_lock(&idx->mu);
        s = sync_locked(idx, txn, err);
        snprintf(info->faiss, sizeof info->faiss, "%s", sx_vindex_description(idx->vi));
        info->nprobe = sx_vindex_nprobe(idx->vi);
        pthread_mutex_unlock(&idx->mu);
    }
    sx_ivf_info ivf;
    siamidx_error e;
    if (!s && !strcmp(m.index_type, "ivfpq") &&  /* (a training outlives a change of type) */
        sx_vindex_ivf_get(idx->st, txn, &ivf, &e) == SIAMIDX_OK) {
        info->ivf_nlist = ivf.nlist;
        info->pq_m = ivf.m;
        info->pq_nbits = ivf.nbits;
        info->ivf_trained_on = ivf.trained_on;
        info->ivf_imported = ivf.imported;
        memcpy(info->ivf_tag, ivf.tag, sizeof info->ivf_tag);
    }
    sx_store_read_end(txn);
    if (l.a) qsort(l.a, l.n, sizeof *l.a, by_name);
    info->artists = l.a;
    info->n_artists = l.n;
    info->dim = m.dim;
    info->generation = m.generation;
    memcpy(info->fingerprint, m.fingerprint, sizeof info->fingerprint);
    memcpy(info->arch, m.arch, sizeof info->arch);
    memcpy(info->pool, m.pool, sizeof info->pool);
    memcpy(info->index_type, m.index_type, sizeof info->index_type);
    info->shard_index = m.shard_index;
    info->shard_count = m.shard_count;
    info->bytes_on_disk = dir_bytes(idx->dir);
    if (s) siamidx_index_info_free(info);
    return s;
}

void siamidx_index_info_free(siamidx_index_info *info) {
    if (!info) return;
    for (size_t i = 0; i < info->n_artists; i++) free(info->artists[i].name);
    free(info->artists);
    info->artists = NULL;
    info->n_artists = 0;
}

/* ---- verification ----------------------------------------------------------------------- */

typedef struct vcheck {
    siamidx_index *idx;
    sx_problems report;
    int64_t *ids;
    size_t n_ids;
    int compare_vectors;
    float *buf;
} vcheck;

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int check_vector(void *ctx, const sx_record *r) {
    vcheck *v = ctx;
    int64_t id = (int64_t)r->id;
    if (!bsearch(&id, v->ids, v->n_ids, sizeof id, cmp_i64)) {
        sx_problem(&v->report, "record %lld (%s) is missing from the FAISS index", (long long)id, r->path);
        return 0;
    }
    if (!v->compare_vectors || r->dim != v->idx->meta.dim) return 0;
    float *want = v->buf, *have = v->buf + r->dim;
    sx_record_embedding(r, want);
    if (sx_vindex_reconstruct(v->idx->vi, id, have)) {
        sx_problem(&v->report, "record %lld (%s): FAISS cannot return its vector", (long long)id, r->path);
        return 0;
    }
    if (memcmp(want, have, r->dim * sizeof *want))
        sx_problem(&v->report, "record %lld (%s): FAISS vector differs from the stored embedding",
                 (long long)id, r->path);
    return 0;
}

siamidx_status siamidx_index_verify(siamidx_index *idx, siamidx_problem_fn fn, void *ctx,
                                    size_t *n_problems, siamidx_error *err) {
    vcheck v = {.idx = idx, .report = {fn, ctx, 0}};
    sx_store_meta m = {0};
    size_t store_problems = 0;
    MDB_txn *txn;
    siamidx_status s = sx_store_read_begin(idx->st, &txn, err);
    if (s) return s;
    s = sx_store_verify(idx->st, txn, fn, ctx, &store_problems, err);
    if (!s) s = sx_store_get_meta(idx->st, txn, &m, err);
    /* The snapshot the store records must be this store's, intact, loadable. */
    sx_snapshot_meta snap;
    siamidx_error e;
    if (!s && sx_store_get_snapshot(idx->st, txn, &snap, &e) == SIAMIDX_OK &&
        snap.generation > m.generation)
        sx_problem(&v.report, "FAISS snapshot is of generation %llu, the store only of %llu",
                   (unsigned long long)snap.generation, (unsigned long long)m.generation);
    sx_ivf_info ivf;
    siamidx_status ivs = s ? SIAMIDX_ERR_NOT_FOUND : sx_vindex_ivf_get(idx->st, txn, &ivf, &e);
    if (ivs == SIAMIDX_ERR_INDEX_CORRUPT)
        sx_problem(&v.report, "%s (the next writer trains again)", e.message);
    else if (ivs == SIAMIDX_OK && m.dim && ivf.dim != m.dim)
        sx_problem(&v.report, "trained IVF is %u-dimensional, the store %u", ivf.dim, m.dim);
    char why[SIAMIDX_ERROR_MESSAGE_MAX];
    if (!s && m.dim && sx_vindex_check_snapshot(idx->st, txn, m.dim, why, sizeof why))
        sx_problem(&v.report, "%s (the next build or add rebuilds it)", why);
    if (!s && m.dim) {
        pthread_mutex_lock(&idx->mu);
        s = sync_locked(idx, txn, err);
        if (!s) s = sx_vindex_ids(idx->vi, &v.ids, &v.n_ids, err);
        uint64_t records = sx_store_count(idx->st, txn);
        if (!s && v.n_ids != records)
            sx_problem(&v.report, "FAISS holds %zu vectors, the store %llu records", v.n_ids,
                     (unsigned long long)records);
        const char *desc = sx_vindex_description(idx->vi);
        v.compare_vectors = !strcmp(desc, "Flat") || !strncmp(desc, "HNSW", 4);
        v.buf = malloc(2 * m.dim * sizeof *v.buf);
        if (!s && !v.buf) s = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "verify: out of memory");
        if (!s) s = sx_store_foreach_record(idx->st, txn, check_vector, &v, err);
        pthread_mutex_unlock(&idx->mu);
    }
    sx_store_read_end(txn);
    free(v.ids);
    free(v.buf);
    if (n_problems) *n_problems = store_problems + v.report.count;
    return s;
}

/* ---- IVF-PQ: a training from another index, nprobe, merging a shard's codes ----------------- */

siamidx_status siamidx_index_ivf_from(siamidx_index *idx, const char *source,
                                      siamidx_error *err) {
    if (!idx || !source)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "ivf_from: NULL argument");
    siamidx_status s = sx_index_writable(idx, err);
    if (s) return s;
    /* Only the source's store: its FAISS index is not needed, nor loaded. */
    sx_store *src = NULL;
    MDB_txn *txn = NULL;
    sx_store_meta sm;
    void *blob = NULL;
    size_t len = 0;
    sx_ivf_info info;
    if ((s = sx_store_open(source, 1, 0, &src, err))) return s;
    if (!(s = sx_store_read_begin(src, &txn, err))) s = sx_store_get_meta(src, txn, &sm, err);
    if (!s && strcmp(sm.fingerprint, idx->meta.fingerprint))
        s = sx_fail(err, SIAMIDX_ERR_MODEL_MISMATCH,
                    "--ivf-from %s was built with model %s, this index %s with %s", source,
                    *sm.fingerprint ? sm.fingerprint : "(none)", idx->dir, idx->meta.fingerprint);
    if (!s && sm.dim != idx->meta.dim)
        s = sx_fail(err, SIAMIDX_ERR_MODEL_MISMATCH,
                    "--ivf-from %s holds %u-dimensional embeddings, this index %u", source,
                    sm.dim, idx->meta.dim);
    if (!s) {
        s = sx_vindex_ivf_blob(src, txn, &blob, &len, err);
        if (s == SIAMIDX_ERR_NOT_FOUND)
            s = sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT,
                        "--ivf-from %s has no trained IVF-PQ (index type %s; an ivfpq index "
                        "trains once it holds %d images)",
                        source, *sm.index_type ? sm.index_type : "flat", IVFPQ_MIN_VECTORS);
    }
    if (!s) s = sx_vindex_ivf_get(src, txn, &info, err);
    if (!s && info.dim != idx->meta.dim)
        s = sx_fail(err, SIAMIDX_ERR_MODEL_MISMATCH, "--ivf-from %s: its IVF is %u-dimensional, "
                    "this index %u", source, info.dim, idx->meta.dim);
    sx_store_read_end(txn);
    sx_store_close(src);
    /* Adopting the same training again (a re-run shard) changes nothing. */
    sx_ivf_info mine;
    siamidx_error e;
    if (!s && (s = sx_store_read_begin(idx->st, &txn, err)) == SIAMIDX_OK) {
        int same = sx_vindex_ivf_get(idx->st, txn, &mine, &e) == SIAMIDX_OK &&
                   !strcmp(mine.tag, info.tag) && !strcmp(idx->meta.index_type, "ivfpq");
        sx_store_read_end(txn);
        if (same) {
            free(blob);
            return sync_now(idx, err);
        }
    }
    if (!s) {
        sx_store_meta want = idx->meta;
        snprintf(want.index_type, sizeof want.index_type, "ivfpq");
        ivf_put_ctx c = {.blob = blob, .len = len, .imported = 1, .meta = &want};
        s = sx_store_write(idx->st, put_ivf, &c, err);
        if (!s) idx->meta = want;
    }
    free(blob);
    return s ? s : sync_now(idx, err);
}

siamidx_status siamidx_index_set_nprobe(siamidx_index *idx, unsigned nprobe,
                                        siamidx_error *err) {
    if (!idx) return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "set_nprobe: NULL index");
    if (nprobe < 1 || nprobe > 65536)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT,
                       "nprobe must be between 1 and 65536, not %u", nprobe);
    if (strncmp(idx->meta.index_type, "ivf", 3))
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT,
                       "index %s is of type %s: nprobe applies to ivf and ivfpq indexes only",
                       idx->dir, *idx->meta.index_type ? idx->meta.index_type : "flat");
    pthread_mutex_lock(&idx->mu);
    sx_vindex_set_nprobe(idx->vi, nprobe);
    pthread_mutex_unlock(&idx->mu);
    return SIAMIDX_OK;
}

typedef struct translate_ctx {
    siamidx_index *out, *shard;
    MDB_txn *out_txn, *shard_txn;
} translate_ctx;

/* A shard's record id -> OUT's record of the same resolved path, or -1. */
static int64_t translate_id(void *ctx, int64_t shard_id) {
    translate_ctx *c = ctx;
    sx_record r;
    siamidx_error e;
    uint64_t id;
    if (shard_id < 0 || sx_store_get_record(c->shard->st, c->shard_txn, (uint64_t)shard_id, &r, &e) ||
        sx_store_find_path(c->out->st, c->out_txn, r.resolved, &id, &e))
        return -1;
    return (int64_t)id;
}

siamidx_status sx_index_merge_ivf(siamidx_index *out, siamidx_index *shard, int *merged,
                                  siamidx_error *err) {
    int dummy;
    if (!merged) merged = &dummy;
    *merged = 0;
    if (!out || !shard || out == shard)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "merge_ivf: bad arguments");
    if (!out->meta.dim || out->meta.dim != shard->meta.dim)
        return sx_fail(err, SIAMIDX_ERR_MODEL_MISMATCH, "merge_ivf: %s and %s differ in dimension",
                       out->dir, shard->dir);
    translate_ctx c = {.out = out, .shard = shard};
    siamidx_status s = sx_store_read_begin(shard->st, &c.shard_txn, err);
    if (s) return s;
    pthread_mutex_lock(&shard->mu);
    s = sync_locked(shard, c.shard_txn, err);
    if (!s) s = sx_store_read_begin(out->st, &c.out_txn, err);
    if (!s) {
        pthread_mutex_lock(&out->mu);
        s = sx_vindex_merge_from(out->vi, out->st, c.out_txn, shard->vi, translate_id, &c, merged,
                                 err);
        pthread_mutex_unlock(&out->mu);
        sx_store_read_end(c.out_txn);
    }
    pthread_mutex_unlock(&shard->mu);
    sx_store_read_end(c.shard_txn);
    return s;
}

/*
 * index.c - the public index API: open, build, add, remove, query, info, verify.
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

#include "internal.h"

#define DEFAULT_BATCH 256
#define SCORE_NEIGHBORS 20   /* neighbours the artist scores look at */
#define SCORE_TEMPERATURE 0.05f

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

void siamidx_build_options_init(siamidx_build_options *opt) {
    memset(opt, 0, sizeof *opt);
    siamidx_embed_options_init(&opt->embed);
}

sx_store *sx_index_store(siamidx_index *idx) { return idx->st; }

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

static siamidx_status sync_now(siamidx_index *idx, siamidx_error *err) {
    MDB_txn *txn;
    siamidx_status s = sx_store_read_begin(idx->st, &txn, err);
    if (s) return s;
    pthread_mutex_lock(&idx->mu);
    s = sync_locked(idx, txn, err);
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
        if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
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
    if ((s = sx_vindex_load(dir, idx->meta.dim, &idx->vi, err))) goto fail;
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

void siamidx_index_close(siamidx_index *idx) {
    if (!idx) return;
    if (idx->lock && idx->st && idx->vi) {
        /* Save the derived index so the next open starts from it; a failure here
           only costs the next open a catch-up. */
        siamidx_error e;
        uint64_t gen = sx_vindex_generation(idx->vi);
        if (sx_vindex_disk_generation(idx->dir) != gen && sx_vindex_save(idx->vi, idx->dir, &e) == 0)
            sx_store_prune_changes(idx->st, gen, &e);
    }
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

/* One transaction: each item replaces whatever record its path had. */
static siamidx_status write_items(sx_wtxn *w, void *ctx, siamidx_error *err) {
    items_ctx *c = ctx;
    MDB_txn *txn = sx_wtxn_txn(w);
    for (size_t i = 0; i < c->n; i++) {
        const sx_index_item *it = &c->items[i];
        uint64_t old;
        siamidx_status s = sx_store_find_path(c->st, txn, it->resolved, &old, err);
        if (s == SIAMIDX_OK) s = sx_store_delete_record(w, old, err);
        else if (s == SIAMIDX_ERR_NOT_FOUND) s = SIAMIDX_OK;
        if (s) return s;
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

static siamidx_status writable(siamidx_index *idx, siamidx_error *err) {
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
    siamidx_status s = writable(idx, err);
    if (s || n == 0) return s;
    items_ctx c = {.st = idx->st, .items = items, .n = n, .dim = idx->meta.dim};
    if ((s = sx_store_write(idx->st, write_items, &c, err))) return s;
    return sync_now(idx, err);
}

/* ---- building from files ------------------------------------------------------------- */

/* What one image of a build needs. */
typedef struct job {
    const char *path, *resolved, *artist, *title, *style, *genre, *date;
    const char *source_repo, *source_path;
} job;

typedef struct build_state {
    siamidx_index *idx;
    const siamidx_model *model;
    const siamidx_build_options *opt;
    siamidx_embed_options embed;
    siamidx_build_report *rep;
    size_t cap_failures;
} build_state;

static siamidx_status report_failure(build_state *b, const char *path, siamidx_status status,
                                     const char *message) {
    siamidx_build_report *r = b->rep;
    if (r->n_failures == b->cap_failures) {
        size_t cap = b->cap_failures ? b->cap_failures * 2 : 16;
        siamidx_build_failure *p = realloc(r->failures, cap * sizeof *p);
        if (!p) return SIAMIDX_ERR_NO_MEMORY;
        r->failures = p;
        b->cap_failures = cap;
    }
    siamidx_build_failure *f = &r->failures[r->n_failures];
    f->path = strdup(path ? path : "");
    f->message = strdup(message ? message : "");
    f->status = status;
    if (!f->path || !f->message) {
        free(f->path);
        free(f->message);
        return SIAMIDX_ERR_NO_MEMORY;
    }
    r->n_failures++;
    r->failed++;
    return SIAMIDX_OK;
}

void siamidx_build_report_free(siamidx_build_report *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n_failures; i++) {
        free(r->failures[i].path);
        free(r->failures[i].message);
    }
    free(r->failures);
    memset(r, 0, sizeof *r);
}

static int hash_file(const char *path, uint8_t out[32]) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    sx_sha256 h;
    sx_sha256_init(&h);
    uint8_t buf[1 << 16];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) sx_sha256_update(&h, buf, (size_t)n);
    close(fd);
    if (n < 0) return -1;
    sx_sha256_final(&h, out);
    return 0;
}

static int same_text(const char *a, const char *b) { return !strcmp(a ? a : "", b ? b : ""); }

/* The state of one image in a batch. */
enum { PENDING_EMBED, PENDING_READY, PENDING_SKIP };

typedef struct pending {
    int state;
    int share; /* >= 0: takes the embedding of item `share` of this batch */
    sx_index_item item;
} pending;

/* Decides per image: unchanged, reusable (same content already stored), or to embed. */
static siamidx_status triage(build_state *b, const job *jobs, size_t n, pending *p, float *emb,
                             siamidx_error *err) {
    sx_store *st = b->idx->st;
    uint32_t dim = b->idx->meta.dim;
    MDB_txn *txn;
    siamidx_status s = sx_store_read_begin(st, &txn, err);
    if (s) return s;
    for (size_t i = 0; i < n && !s; i++) {
        const job *j = &jobs[i];
        pending *q = &p[i];
        q->share = -1;
        q->state = PENDING_SKIP;
        q->item = (sx_index_item){.path = j->path, .resolved = j->resolved, .artist = j->artist,
                                  .title = j->title, .style = j->style, .genre = j->genre,
                                  .date = j->date, .source_repo = j->source_repo,
                                  .source_path = j->source_path, .embedding = emb + i * dim};
        struct stat sb;
        char msg[SIAMIDX_ERROR_MESSAGE_MAX];
        int missing = stat(j->resolved, &sb) != 0;
        if (missing || !S_ISREG(sb.st_mode)) {
            snprintf(msg, sizeof msg, "%s: %s", j->path,
                     missing ? strerror(errno) : "not a regular file");
            if (report_failure(b, j->path, SIAMIDX_ERR_IO, msg)) s = SIAMIDX_ERR_NO_MEMORY;
            continue;
        }
        q->item.size = (uint64_t)sb.st_size;
        q->item.mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
        int dup = 0;
        for (size_t k = 0; k < i && !dup; k++)
            dup = p[k].state != PENDING_SKIP && !strcmp(jobs[k].resolved, j->resolved);
        if (dup) {
            snprintf(msg, sizeof msg, "%s: listed twice", j->path);
            if (report_failure(b, j->path, SIAMIDX_ERR_CSV, msg)) s = SIAMIDX_ERR_NO_MEMORY;
            continue;
        }
        uint64_t id;
        sx_record r;
        siamidx_error e;
        const char *artist = NULL;
        if (sx_store_find_path(st, txn, j->resolved, &id, &e) == 0 &&
            sx_store_get_record(st, txn, id, &r, &e) == 0 && r.dim == dim &&
            r.size == q->item.size && r.mtime_ns == q->item.mtime_ns) {
            sx_store_artist_name(st, txn, r.artist_id, &artist, NULL, &e);
            /* The path as given may differ (CSV vs folder): same file, unchanged. */
            if (artist && !strcmp(artist, j->artist) && same_text(r.title, j->title) && same_text(r.style, j->style) &&
                same_text(r.genre, j->genre) && same_text(r.date, j->date) &&
                /* No provenance given (a folder) is no change of the stored one. */
                (!j->source_repo || same_text(r.source_repo, j->source_repo)) &&
                (!j->source_path || same_text(r.source_path, j->source_path))) {
                b->rep->unchanged++;
                continue;
            }
            /* Same file, new description: keep the embedding. */
            memcpy(q->item.hash, r.hash, 32);
            sx_record_embedding(&r, emb + i * dim);
            q->state = PENDING_READY;
            b->rep->reused++;
            continue;
        }
        if (hash_file(j->resolved, q->item.hash)) {
            snprintf(msg, sizeof msg, "%s: %s", j->path, strerror(errno));
            if (report_failure(b, j->path, SIAMIDX_ERR_IO, msg)) s = SIAMIDX_ERR_NO_MEMORY;
            continue;
        }
        if (sx_store_find_hash(st, txn, q->item.hash, &id, &e) == 0 &&
            sx_store_get_record(st, txn, id, &r, &e) == 0 && r.dim == dim) {
            sx_record_embedding(&r, emb + i * dim);
            q->state = PENDING_READY;
            b->rep->reused++;
            continue;
        }
        q->state = PENDING_EMBED;
        for (size_t k = 0; k < i; k++)
            if (p[k].state == PENDING_EMBED && p[k].share < 0 &&
                !memcmp(p[k].item.hash, q->item.hash, 32)) {
                q->share = (int)k; /* an identical image earlier in this batch */
                break;
            }
    }
    sx_store_read_end(txn);
    return s;
}

static siamidx_status embed_pending(build_state *b, pending *p, size_t n, float *emb,
                                    siamidx_error *err) {
    uint32_t dim = b->idx->meta.dim;
    const char **paths = malloc((n + 1) * sizeof *paths);
    size_t *which = malloc((n + 1) * sizeof *which);
    float *out = malloc((n + 1) * dim * sizeof *out);
    siamidx_status *status = malloc((n + 1) * sizeof *status);
    siamidx_error *errors = calloc(n + 1, sizeof *errors); /* empty messages if unset */
    siamidx_status s = SIAMIDX_OK;
    if (!paths || !which || !out || !status || !errors) {
        s = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "build: out of memory");
        goto done;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (p[i].state == PENDING_EMBED && p[i].share < 0) {
            paths[m] = p[i].item.resolved;
            which[m++] = i;
        }
    if (m) {
        siamidx_status es = siamidx_embed_files(b->model, paths, m, &b->embed, out, status,
                                                errors, err);
        if (es != SIAMIDX_OK && es != SIAMIDX_ERR_IMAGE) {
            s = es;
            goto done;
        }
    }
    for (size_t t = 0; t < m; t++) {
        pending *q = &p[which[t]];
        if (status[t] == SIAMIDX_OK) {
            b->rep->embedded++;
            memcpy(emb + which[t] * dim, out + t * dim, dim * sizeof *out);
            q->state = PENDING_READY;
        } else {
            q->state = PENDING_SKIP;
            if (report_failure(b, q->item.path, status[t], errors[t].message)) {
                s = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "build: out of memory");
                goto done;
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (p[i].state != PENDING_EMBED) continue;
        pending *src = &p[p[i].share];
        if (src->state == PENDING_READY) {
            memcpy(emb + i * dim, emb + (size_t)p[i].share * dim, dim * sizeof *emb);
            p[i].state = PENDING_READY;
            b->rep->reused++;
        } else {
            p[i].state = PENDING_SKIP;
            char msg[SIAMIDX_ERROR_MESSAGE_MAX];
            snprintf(msg, sizeof msg, "%s: identical to %s, which failed", p[i].item.path,
                     src->item.path);
            report_failure(b, p[i].item.path, SIAMIDX_ERR_IMAGE, msg);
        }
    }
done:
    free(paths);
    free(which);
    free(out);
    free(status);
    free(errors);
    return s;
}

static siamidx_status run_batch(build_state *b, const job *jobs, size_t n, siamidx_error *err) {
    uint32_t dim = b->idx->meta.dim;
    pending *p = calloc(n, sizeof *p);
    float *emb = calloc(n * dim, sizeof *emb);
    sx_index_item *items = malloc(n * sizeof *items);
    siamidx_status s = SIAMIDX_OK;
    if (!p || !emb || !items) s = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "build: out of memory");
    if (!s) s = triage(b, jobs, n, p, emb, err);
    if (!s) s = embed_pending(b, p, n, emb, err);
    size_t m = 0;
    for (size_t i = 0; !s && i < n; i++)
        if (p[i].state == PENDING_READY) items[m++] = p[i].item;
    if (!s && m) s = sx_index_add_embeddings(b->idx, items, m, err);
    if (!s) b->rep->indexed += m;
    free(p);
    free(emb);
    free(items);
    return s;
}

static siamidx_status run_jobs(build_state *b, const job *jobs, size_t n, siamidx_error *err) {
    size_t batch = b->opt && b->opt->batch > 0 ? (size_t)b->opt->batch : DEFAULT_BATCH;
    size_t done0 = b->rep->total - n;
    for (size_t i = 0; i < n; i += batch) {
        size_t m = n - i < batch ? n - i : batch;
        siamidx_status s = run_batch(b, jobs + i, m, err);
        if (s) return s;
        if (b->opt && b->opt->progress)
            b->opt->progress(b->opt->progress_ctx, done0 + i + m, b->rep->total);
    }
    return b->rep->failed ? SIAMIDX_ERR_IMAGE : SIAMIDX_OK;
}

static siamidx_status start_build(siamidx_index *idx, const siamidx_model *model,
                                  const siamidx_build_options *opt, siamidx_build_report *rep,
                                  build_state *b, siamidx_error *err) {
    memset(rep, 0, sizeof *rep);
    *b = (build_state){.idx = idx, .model = model, .opt = opt, .rep = rep};
    siamidx_status s = writable(idx, err);
    if (s) return s;
    if (!model) return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "build: no model");
    if (strcmp(siamidx_model_fingerprint(model), idx->meta.fingerprint))
        return sx_fail(err, SIAMIDX_ERR_MODEL_MISMATCH,
                       "index %s was built with model %s, not with this model %s", idx->dir,
                       idx->meta.fingerprint, siamidx_model_fingerprint(model));
    if (opt) b->embed = opt->embed;
    else siamidx_embed_options_init(&b->embed);
    int pool = siamidx_pool_from_name(idx->meta.pool);
    b->embed.pool = pool < 0 ? SIAMIDX_POOL_DEFAULT : (siamidx_pool)pool;
    if (siamidx_model_dim(model, b->embed.pool) != idx->meta.dim)
        return sx_fail(err, SIAMIDX_ERR_MODEL_MISMATCH, "index %s holds %u-dimensional embeddings",
                       idx->dir, idx->meta.dim);
    return SIAMIDX_OK;
}

siamidx_status siamidx_index_build(siamidx_index *idx, const siamidx_model *model,
                                   const char *collection, const siamidx_build_options *opt,
                                   siamidx_build_report *report, siamidx_error *err) {
    siamidx_build_report local;
    if (!report) report = &local;
    build_state b;
    siamidx_status s = start_build(idx, model, opt, report, &b, err);
    if (s) return s;
    sx_collection c;
    if ((s = sx_collection_load(collection, opt ? opt->root : NULL, &c, err))) return s;
    report->total = c.n_entries + c.n_issues;
    for (size_t i = 0; i < c.n_issues && !s; i++)
        if (report_failure(&b, c.issues[i].path, c.issues[i].status, c.issues[i].message))
            s = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "build: out of memory");
    job *jobs = calloc(c.n_entries + 1, sizeof *jobs);
    if (!s && !jobs) s = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "build: out of memory");
    for (size_t i = 0; !s && i < c.n_entries; i++) {
        const sx_collection_entry *e = &c.entries[i];
        jobs[i] = (job){e->path,  e->resolved, e->artist,      e->title,      e->style,
                        e->genre, e->date,     e->source_repo, e->source_path};
    }
    if (!s) {
        report->total = c.n_entries + report->failed;
        s = run_jobs(&b, jobs, c.n_entries, err);
        if (s == SIAMIDX_ERR_IMAGE)
            sx_fail(err, s, "%zu of %zu entries failed", report->failed, report->total);
    }
    free(jobs);
    sx_collection_free(&c);
    if (report == &local) siamidx_build_report_free(&local);
    return s;
}

/* `path` made absolute against the working directory, "." and ".." removed
   lexically (as collections resolve their entries). */
static char *absolute_path(const char *path) {
    char cwd[4096];
    if (path[0] != '/' && !getcwd(cwd, sizeof cwd)) return NULL;
    size_t n = strlen(path) + (path[0] == '/' ? 0 : strlen(cwd)) + 3;
    char *joined = malloc(n), *out = malloc(n);
    if (!joined || !out) {
        free(joined);
        free(out);
        return NULL;
    }
    snprintf(joined, n, "%s/%s", path[0] == '/' ? "" : cwd, path);
    size_t len = 0;
    for (char *p = joined; *p;) {
        while (*p == '/') p++;
        char *end = p;
        while (*end && *end != '/') end++;
        size_t m = (size_t)(end - p);
        if (m == 2 && p[0] == '.' && p[1] == '.') {
            while (len > 0 && out[len - 1] != '/') len--;
            if (len > 0) len--;
        } else if (m > 0 && !(m == 1 && p[0] == '.')) {
            out[len++] = '/';
            memcpy(out + len, p, m);
            len += m;
        }
        p = end;
    }
    if (len == 0) out[len++] = '/';
    out[len] = 0;
    free(joined);
    return out;
}

siamidx_status siamidx_index_add(siamidx_index *idx, const siamidx_model *model,
                                 const char *const *paths, size_t n, const char *artist,
                                 const siamidx_build_options *opt, siamidx_build_report *report,
                                 siamidx_error *err) {
    siamidx_build_report local;
    if (!report) report = &local;
    build_state b;
    siamidx_status s = start_build(idx, model, opt, report, &b, err);
    if (s) return s;
    if (!artist || !*artist)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "add: no artist given");
    job *jobs = calloc(n + 1, sizeof *jobs);
    char **resolved = calloc(n + 1, sizeof *resolved);
    if (!jobs || !resolved) s = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "add: out of memory");
    for (size_t i = 0; !s && i < n; i++) {
        if (!(resolved[i] = absolute_path(paths[i])))
            s = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "add: out of memory");
        jobs[i] = (job){.path = paths[i], .resolved = resolved[i], .artist = artist};
    }
    report->total = n;
    if (!s) s = run_jobs(&b, jobs, n, err);
    if (s == SIAMIDX_ERR_IMAGE)
        sx_fail(err, s, "%zu of %zu images failed", report->failed, report->total);
    for (size_t i = 0; resolved && i < n; i++) free(resolved[i]);
    free(resolved);
    free(jobs);
    if (report == &local) siamidx_build_report_free(&local);
    return s;
}

/* ---- removing ------------------------------------------------------------------------ */

typedef struct remove_ctx {
    sx_store *st;
    const char *const *paths;
    size_t n;
    const char *artist;
    size_t removed;
} remove_ctx;

static siamidx_status remove_paths(sx_wtxn *w, void *ctx, siamidx_error *err) {
    remove_ctx *c = ctx;
    c->removed = 0;
    for (size_t i = 0; i < c->n; i++) {
        char *abs = absolute_path(c->paths[i]);
        if (!abs) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "remove: out of memory");
        uint64_t id;
        siamidx_error e;
        siamidx_status s = sx_store_find_path(c->st, sx_wtxn_txn(w), abs, &id, &e);
        free(abs);
        if (s == SIAMIDX_ERR_NOT_FOUND) continue;
        if (!s) s = sx_store_delete_record(w, id, err);
        else if (err) *err = e;
        if (s) return s;
        c->removed++;
    }
    return SIAMIDX_OK;
}

static siamidx_status remove_artist(sx_wtxn *w, void *ctx, siamidx_error *err) {
    remove_ctx *c = ctx;
    MDB_txn *txn = sx_wtxn_txn(w);
    uint32_t aid;
    c->removed = 0;
    siamidx_status s = sx_store_artist_id(c->st, txn, c->artist, &aid, err);
    if (s) return s;
    uint64_t *ids;
    size_t n;
    if ((s = sx_store_artist_records(c->st, txn, aid, &ids, &n, err))) return s;
    for (size_t i = 0; i < n && !s; i++) s = sx_store_delete_record(w, ids[i], err);
    free(ids);
    if (!s) c->removed = n;
    return s;
}

static siamidx_status run_remove(siamidx_index *idx, sx_write_fn fn, remove_ctx *c,
                                 size_t *removed, siamidx_error *err) {
    if (idx->read_only)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "index %s was opened read-only",
                       idx->dir);
    c->st = idx->st;
    siamidx_status s = sx_store_write(idx->st, fn, c, err);
    if (!s) s = sync_now(idx, err);
    if (removed) *removed = c->removed;
    if (!s && c->removed == 0) s = sx_fail(err, SIAMIDX_ERR_NOT_FOUND, "nothing matched in %s",
                                          idx->dir);
    return s;
}

siamidx_status siamidx_index_remove(siamidx_index *idx, const char *const *paths, size_t n,
                                    size_t *removed, siamidx_error *err) {
    remove_ctx c = {.paths = paths, .n = n};
    return run_remove(idx, remove_paths, &c, removed, err);
}

siamidx_status siamidx_index_remove_artist(siamidx_index *idx, const char *artist,
                                           size_t *removed, siamidx_error *err) {
    remove_ctx c = {.artist = artist};
    return run_remove(idx, remove_artist, &c, removed, err);
}

/* ---- querying ------------------------------------------------------------------------ */

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

/* Searches under the lock after syncing to txn: the hits reflect exactly txn. */
static siamidx_status search_in(siamidx_index *idx, MDB_txn *txn, const float *q, size_t n,
                                int k, int64_t *ids, float *sims, siamidx_error *err) {
    if (!idx->meta.dim)
        return sx_fail(err, SIAMIDX_ERR_NOT_FOUND, "index %s is empty", idx->dir);
    pthread_mutex_lock(&idx->mu);
    siamidx_status s = sync_locked(idx, txn, err);
    if (!s) s = sx_vindex_search(idx->vi, q, n, k, ids, sims, err);
    pthread_mutex_unlock(&idx->mu);
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

typedef struct tally {
    const char *artist;
    double weight;
} tally;

static int by_weight(const void *a, const void *b) {
    double x = ((const tally *)a)->weight, y = ((const tally *)b)->weight;
    return (x < y) - (x > y);
}

/*
 * For now: a softmax over the neighbours' similarities (temperature 0.05),
 * summed per artist. The Siamese head replaces this with calibrated
 * probabilities.
 */
siamidx_status sx_index_score_artists(siamidx_index *idx, MDB_txn *txn, const float *query,
                                      siamidx_neighbor *nb, size_t n_nb, int k,
                                      siamidx_query_result *res, siamidx_error *err) {
    /* A trained head answers (answer.c); without one, similarities do. */
    siamidx_status hs = sx_head_score_artists(idx, txn, query, nb, n_nb, k, res, err);
    if (hs != SIAMIDX_ERR_NO_HEAD) return hs;
    for (size_t i = 0; i < n_nb; i++) nb[i].probability = NAN;
    tally *t = calloc(n_nb + 1, sizeof *t);
    if (!t) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "query: out of memory");
    size_t n_t = 0;
    double total = 0;
    for (size_t i = 0; i < n_nb; i++) {
        double w = exp((nb[i].similarity - nb[0].similarity) / SCORE_TEMPERATURE);
        total += w;
        size_t a = 0;
        while (a < n_t && strcmp(t[a].artist, nb[i].artist)) a++;
        if (a == n_t) t[n_t++].artist = nb[i].artist;
        t[a].weight += w;
    }
    qsort(t, n_t, sizeof *t, by_weight);
    if (n_t > (size_t)k) n_t = (size_t)k;
    res->artists = calloc(n_t + 1, sizeof *res->artists);
    siamidx_status s = res->artists ? SIAMIDX_OK
                                    : sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "query: out of memory");
    for (size_t i = 0; !s && i < n_t; i++) {
        if (!(res->artists[i].artist = strdup(t[i].artist))) {
            s = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "query: out of memory");
            break;
        }
        res->artists[i].probability = (float)(t[i].weight / total);
        res->n_artists++;
    }
    free(t);
    return s;
}

static siamidx_status collect_neighbors(siamidx_index *idx, MDB_txn *txn, const int64_t *ids,
                                        const float *sims, int kk, siamidx_neighbor *nb,
                                        size_t *n, siamidx_error *err) {
    *n = 0;
    for (int j = 0; j < kk; j++) {
        sx_record r;
        const char *artist;
        siamidx_error e;
        if (ids[j] < 0 || sx_store_get_record(idx->st, txn, (uint64_t)ids[j], &r, &e) ||
            sx_store_artist_name(idx->st, txn, r.artist_id, &artist, NULL, &e))
            continue;
        siamidx_neighbor *x = &nb[(*n)++];
        x->id = ids[j];
        x->similarity = sims[j];
        x->path = strdup(r.path);
        x->artist = strdup(artist);
        if (!x->path || !x->artist) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "out of memory");
    }
    return SIAMIDX_OK;
}

siamidx_status siamidx_index_query_embedding(siamidx_index *idx, const float *embedding, int k,
                                             siamidx_query_result *res, siamidx_error *err) {
    memset(res, 0, sizeof *res);
    if (!idx || !embedding || k <= 0)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "query: bad arguments");
    int kk = k > SCORE_NEIGHBORS ? k : SCORE_NEIGHBORS;
    if ((size_t)kk < sx_attr_candidates((size_t)k)) kk = (int)sx_attr_candidates((size_t)k); /* head */
    int64_t *ids = malloc((size_t)kk * sizeof *ids);
    float *sims = malloc((size_t)kk * sizeof *sims);
    siamidx_neighbor *nb = calloc((size_t)kk, sizeof *nb);
    MDB_txn *txn = NULL;
    size_t n = 0;
    siamidx_status s = ids && sims && nb ? SIAMIDX_OK
                                         : sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "out of memory");
    if (!s) s = sx_store_read_begin(idx->st, &txn, err);
    if (!s) s = search_in(idx, txn, embedding, 1, kk, ids, sims, err);
    if (!s) s = collect_neighbors(idx, txn, ids, sims, kk, nb, &n, err);
    if (!s) s = sx_index_score_artists(idx, txn, embedding, nb, n, k, res, err);
    sx_store_read_end(txn);
    size_t keep = s ? 0 : n < (size_t)k ? n : (size_t)k;
    for (size_t i = keep; i < n; i++) {
        free(nb[i].path);
        free(nb[i].artist);
    }
    res->neighbors = nb;
    res->n_neighbors = keep;
    free(ids);
    free(sims);
    if (s) siamidx_query_result_free(res);
    return s;
}

siamidx_status siamidx_index_query(siamidx_index *idx, const siamidx_model *model,
                                   const char *image, int k, siamidx_query_result *res,
                                   siamidx_error *err) {
    memset(res, 0, sizeof *res);
    if (!idx || !model || !image)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "query: bad arguments");
    if (!idx->meta.dim) return sx_fail(err, SIAMIDX_ERR_NOT_FOUND, "index %s is empty", idx->dir);
    if (strcmp(siamidx_model_fingerprint(model), idx->meta.fingerprint))
        return sx_fail(err, SIAMIDX_ERR_MODEL_MISMATCH,
                       "index %s was built with model %s, not with this model %s", idx->dir,
                       idx->meta.fingerprint, siamidx_model_fingerprint(model));
    siamidx_embed_options eo;
    siamidx_embed_options_init(&eo);
    int pool = siamidx_pool_from_name(idx->meta.pool);
    eo.pool = pool < 0 ? SIAMIDX_POOL_DEFAULT : (siamidx_pool)pool;
    float *e = malloc(idx->meta.dim * sizeof *e);
    if (!e) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "out of memory");
    siamidx_status s = siamidx_embed_file(model, image, &eo, e, err);
    if (!s) s = siamidx_index_query_embedding(idx, e, k, res, err);
    free(e);
    return s;
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
        pthread_mutex_unlock(&idx->mu);
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
    /* Read before the transaction: a snapshot is only written after its commit. */
    uint64_t disk = sx_vindex_disk_generation(idx->dir);
    MDB_txn *txn;
    siamidx_status s = sx_store_read_begin(idx->st, &txn, err);
    if (s) return s;
    s = sx_store_verify(idx->st, txn, fn, ctx, &store_problems, err);
    if (!s) s = sx_store_get_meta(idx->st, txn, &m, err);
    /* The snapshot on disk must load and must not claim a future generation. */
    if (!s && disk > m.generation)
        sx_problem(&v.report, "FAISS snapshot is of generation %llu, the store only of %llu",
                 (unsigned long long)disk, (unsigned long long)m.generation);
    if (!s && disk && m.dim) {
        sx_vindex *fresh = NULL;
        if (sx_vindex_load(idx->dir, m.dim, &fresh, err) == 0 &&
            sx_vindex_generation(fresh) < disk) /* newer: a writer saved meanwhile */
            sx_problem(&v.report, "FAISS snapshot of generation %llu does not load",
                     (unsigned long long)disk);
        sx_vindex_free(fresh);
    }
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

/*
 * build.c - indexing image files: a collection (build) or a list (add).
 *
 * Each batch: triage (unchanged by size and mtime; same bytes as an indexed
 * image or an earlier one of the batch: reuse its embedding), embed the rest
 * with the encoder, and write the batch in ONE transaction
 * (sx_index_add_embeddings). A crash loses at most the batch in flight; the
 * batches committed before stay, and the next build skips them as unchanged.
 *
 * A shard build (`--shard I/N`) takes only the images whose content hash
 * falls in shard I (siamidx_shard_of). The hash needs the file's bytes but
 * nothing more: an image of another shard is read once to hash it and never
 * decoded or embedded. An indexed file whose new bytes hash to another
 * shard is removed in its batch's transaction (that shard's build indexes
 * it), so the shards of one collection never hold one path twice.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/error.h"
#include "base/path.h"
#include "base/sha256.h"
#include "data/collection.h"
#include "data/collection_many.h"
#include "index/index.h"
#include "store/store.h"

#define DEFAULT_BATCH 256

void siamidx_build_options_init(siamidx_build_options *opt) {
    memset(opt, 0, sizeof *opt);
    siamidx_embed_options_init(&opt->embed);
}

/* What one image of a build needs. */
typedef struct job {
    const char *path, *resolved, *artist, *title, *style, *genre, *date;
    const char *source_repo, *source_path;
} job;

typedef struct build_state {
    siamidx_index *idx;
    uint32_t shard_index, shard_count; /* count 0: every image */
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

static int same_text(const char *a, const char *b) { return !strcmp(a ? a : "", b ? b : ""); }

/* The state of one image in a batch. */
enum { PENDING_EMBED, PENDING_READY, PENDING_SKIP, PENDING_REMOVE /* moved to another shard */ };

typedef struct pending {
    int state;
    int share; /* >= 0: takes the embedding of item `share` of this batch */
    sx_index_item item;
} pending;

/* Decides per image: unchanged, reusable (same content already stored), or to embed. */
static siamidx_status triage(build_state *b, const job *jobs, size_t n, pending *p, float *emb,
                             siamidx_error *err) {
    sx_store *st = sx_index_store(b->idx);
    uint32_t dim = sx_index_meta(b->idx)->dim;
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
        int indexed = sx_store_find_path(st, txn, j->resolved, &id, &e) == 0;
        if (indexed && sx_store_get_record(st, txn, id, &r, &e) == 0 && r.dim == dim &&
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
        if (sx_sha256_file(j->resolved, q->item.hash)) {
            snprintf(msg, sizeof msg, "%s: %s", j->path, strerror(errno));
            if (report_failure(b, j->path, SIAMIDX_ERR_IO, msg)) s = SIAMIDX_ERR_NO_MEMORY;
            continue;
        }
        if (b->shard_count &&
            siamidx_shard_of(q->item.hash, b->shard_count) != b->shard_index) {
            b->rep->other_shards++; /* hashed, never decoded */
            if (indexed) q->state = PENDING_REMOVE; /* its new bytes belong elsewhere */
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
    uint32_t dim = sx_index_meta(b->idx)->dim;
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
    uint32_t dim = sx_index_meta(b->idx)->dim;
    pending *p = calloc(n, sizeof *p);
    float *emb = calloc(n * dim, sizeof *emb);
    sx_index_item *items = malloc(n * sizeof *items);
    siamidx_status s = SIAMIDX_OK;
    if (!p || !emb || !items) s = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "build: out of memory");
    if (!s) s = triage(b, jobs, n, p, emb, err);
    if (!s) s = embed_pending(b, p, n, emb, err);
    size_t m = 0, removed = 0;
    for (size_t i = 0; !s && i < n; i++) {
        if (p[i].state == PENDING_READY) items[m++] = p[i].item;
        if (p[i].state == PENDING_REMOVE) {
            items[m] = p[i].item;
            items[m++].remove = 1;
            removed++;
        }
    }
    if (!s && m) s = sx_index_add_embeddings(b->idx, items, m, err);
    if (!s) b->rep->indexed += m - removed;
    if (!s) b->rep->moved_out += removed;
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
        if (b->opt && b->opt->stop && *b->opt->stop)
            return sx_fail(err, SIAMIDX_ERR_INTERRUPTED,
                           "interrupted: %zu of %zu entries done, each batch committed",
                           done0 + i, b->rep->total);
        siamidx_status s = run_batch(b, jobs + i, m, err);
        if (s) return s;
        if (b->opt && b->opt->progress)
            b->opt->progress(b->opt->progress_ctx, done0 + i + m, b->rep->total);
    }
    return b->rep->failed ? SIAMIDX_ERR_IMAGE : SIAMIDX_OK;
}

uint32_t siamidx_shard_of(const uint8_t sha256[32], uint32_t count) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | sha256[i];
    return count ? (uint32_t)(v % count) : 0;
}

/*
 * A shard index holds one shard and nothing else: built only with its own
 * I/N (a first shard build of an empty index records it), never added to
 * or built whole. Otherwise one index could silently mix two partitions
 * and `merge` would be handed the same image from two shards.
 */
static siamidx_status check_shard(build_state *b, int is_build, siamidx_error *err) {
    const sx_store_meta *m = sx_index_meta(b->idx);
    const char *dir = sx_index_dir(b->idx);
    uint32_t i = b->opt ? b->opt->shard_index : 0, n = b->opt ? b->opt->shard_count : 0;
    if (n && !is_build)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "add: shards are for build only");
    if (n && i >= n)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT,
                       "shard %u/%u does not exist: shards run from 0 to %u (0-based, like "
                       "Slurm's --array=0-%u)", i, n, n - 1, n - 1);
    if (!n && m->shard_count)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT,
                       "index %s is shard %u/%u: build it with --shard %u/%u, or merge the "
                       "shards into a full index (siamidx merge) and %s that",
                       dir, m->shard_index, m->shard_count, m->shard_index, m->shard_count,
                       is_build ? "build" : "add to");
    if (!n) return SIAMIDX_OK;
    if (m->shard_count && (m->shard_index != i || m->shard_count != n))
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT,
                       "index %s is shard %u/%u, not %u/%u: give each shard its own index",
                       dir, m->shard_index, m->shard_count, i, n);
    b->shard_index = i;
    b->shard_count = n;
    if (m->shard_count) return SIAMIDX_OK;
    MDB_txn *txn;
    siamidx_status s = sx_store_read_begin(sx_index_store(b->idx), &txn, err);
    if (s) return s;
    uint64_t records = sx_store_count(sx_index_store(b->idx), txn);
    sx_store_read_end(txn);
    if (records)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT,
                       "index %s holds %llu images of a build without --shard: give shard "
                       "%u/%u its own index", dir, (unsigned long long)records, i, n);
    sx_store_meta want = *m; /* an empty index becomes this shard's */
    want.shard_index = i;
    want.shard_count = n;
    return sx_index_set_meta(b->idx, &want, err);
}

static siamidx_status start_build(siamidx_index *idx, const siamidx_model *model,
                                  const siamidx_build_options *opt, siamidx_build_report *rep,
                                  int is_build, build_state *b, siamidx_error *err) {
    memset(rep, 0, sizeof *rep);
    *b = (build_state){.idx = idx, .model = model, .opt = opt, .rep = rep};
    siamidx_status s = sx_index_writable(idx, err);
    if (s) return s;
    if (!model) return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "build: no model");
    if (strcmp(siamidx_model_fingerprint(model), sx_index_meta(idx)->fingerprint))
        return sx_fail(err, SIAMIDX_ERR_MODEL_MISMATCH,
                       "index %s was built with model %s, not with this model %s", sx_index_dir(idx),
                       sx_index_meta(idx)->fingerprint, siamidx_model_fingerprint(model));
    if (opt) b->embed = opt->embed;
    else siamidx_embed_options_init(&b->embed);
    int pool = siamidx_pool_from_name(sx_index_meta(idx)->pool);
    b->embed.pool = pool < 0 ? SIAMIDX_POOL_DEFAULT : (siamidx_pool)pool;
    if (siamidx_model_dim(model, b->embed.pool) != sx_index_meta(idx)->dim)
        return sx_fail(err, SIAMIDX_ERR_MODEL_MISMATCH, "index %s holds %u-dimensional embeddings",
                       sx_index_dir(idx), sx_index_meta(idx)->dim);
    return check_shard(b, is_build, err);
}

siamidx_status siamidx_index_build(siamidx_index *idx, const siamidx_model *model,
                                   const char *collection, const siamidx_build_options *opt,
                                   siamidx_build_report *report, siamidx_error *err) {
    return siamidx_index_build_many(idx, model, &collection, 1, opt, report, err);
}

siamidx_status siamidx_index_build_many(siamidx_index *idx, const siamidx_model *model,
                                        const char *const *collections, size_t n_collections,
                                        const siamidx_build_options *opt,
                                        siamidx_build_report *report, siamidx_error *err) {
    if (!collections || n_collections == 0)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "build: no collection given");
    siamidx_build_report local;
    if (!report) report = &local;
    build_state b;
    siamidx_status s = start_build(idx, model, opt, report, 1, &b, err);
    if (s) return s;
    sx_collection c;
    const char *root = opt ? opt->root : NULL;
    s = n_collections == 1 ? sx_collection_load(collections[0], root, &c, err)
                           : sx_collection_load_many(collections, n_collections, root, &c, err);
    if (s) return s;
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

siamidx_status siamidx_index_add(siamidx_index *idx, const siamidx_model *model,
                                 const char *const *paths, size_t n, const char *artist,
                                 const siamidx_build_options *opt, siamidx_build_report *report,
                                 siamidx_error *err) {
    siamidx_build_report local;
    if (!report) report = &local;
    build_state b;
    siamidx_status s = start_build(idx, model, opt, report, 0, &b, err);
    if (s) return s;
    if (!artist || !*artist)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "add: no artist given");
    job *jobs = calloc(n + 1, sizeof *jobs);
    char **resolved = calloc(n + 1, sizeof *resolved);
    if (!jobs || !resolved) s = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "add: out of memory");
    for (size_t i = 0; !s && i < n; i++) {
        if (!(resolved[i] = sx_path_absolute(paths[i])))
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

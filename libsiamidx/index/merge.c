/*
 * merge.c - joining indexes (the shards of `build --shard I/N`) into one.
 *
 * The records are copied from each shard's LMDB store into OUT's as they are
 * (paths, artist, description, content hash, embedding): nothing is decoded
 * or embedded. In order:
 *
 *   1. every shard is opened read-only and its description checked against
 *      OUT's (or, for an empty OUT, the first shard's): the same model
 *      fingerprint, pooling and dimension; OUT itself is refused;
 *   2. every shard's records are checked against OUT as it is (see
 *      find_conflicts): a conflict refuses the merge before anything is
 *      written;
 *   3. each shard in turn: checked again against OUT as merged so far (the
 *      shards before it), then copied in ONE write transaction
 *      (sx_store_write_range, which halves a shard too big for one);
 *   4. OUT's FAISS index is brought up to date once (update_vectors).
 *
 * Crash safety is LMDB's: a kill during step 3 leaves the shards whose
 * transactions committed and nothing of the one in flight (or, for a shard
 * split in halves, the halves that committed). The FAISS index is derived
 * state: after a kill before step 4 the next open catches it up from the
 * store's change log. A re-run skips every record OUT already holds as it
 * is (copy_range), so it completes the merge and changes nothing else.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/error.h"
#include "base/sha256.h"
#include "index/index.h"
#include "store/store.h"

void siamidx_merge_options_init(siamidx_merge_options *opt) { memset(opt, 0, sizeof *opt); }

typedef struct shard {
    const char *dir;
    sx_store *st;
    sx_store_meta meta;
    uint64_t records;
} shard;

/* ---- 1. descriptions ------------------------------------------------------------------- */

static siamidx_status open_shard(shard *sh, const char *dir, siamidx_error *err) {
    memset(sh, 0, sizeof *sh);
    sh->dir = dir;
    siamidx_status s = sx_store_open(dir, 1, 0, &sh->st, err);
    if (s) {
        sx_error_prefix(err, "shard %s", dir);
        return s;
    }
    MDB_txn *txn;
    if ((s = sx_store_read_begin(sh->st, &txn, err))) return s;
    s = sx_store_get_meta(sh->st, txn, &sh->meta, err);
    sh->records = sx_store_count(sh->st, txn);
    sx_store_read_end(txn);
    return s;
}

/* The shard is of the model `ref` describes (ref_name: where ref comes from). */
static siamidx_status same_model(const shard *sh, const sx_store_meta *ref, const char *ref_name,
                                 siamidx_error *err) {
    const sx_store_meta *m = &sh->meta;
    if (strcmp(m->fingerprint, ref->fingerprint))
        return sx_fail(err, SIAMIDX_ERR_MODEL_MISMATCH,
                       "shard %s was built with model %s, %s with model %s: shards must come "
                       "from one model", sh->dir, m->fingerprint, ref_name, ref->fingerprint);
    if (m->dim != ref->dim || strcmp(m->pool, ref->pool))
        return sx_fail(err, SIAMIDX_ERR_MODEL_MISMATCH,
                       "shard %s holds %u-dimensional %s-pooled embeddings, %s %u-dimensional "
                       "%s-pooled ones (model %s)", sh->dir, m->dim, m->pool, ref_name, ref->dim,
                       ref->pool, ref->fingerprint);
    return SIAMIDX_OK;
}

/* ---- 2. conflicts ------------------------------------------------------------------------- */

typedef struct conflict_scan {
    sx_store *out;
    MDB_txn *out_txn;
    const char *out_dir;
    shard *sh;
    MDB_txn *sh_txn;
    const siamidx_merge_options *opt;
    size_t conflicts;
    char first[SIAMIDX_ERROR_MESSAGE_MAX];
    siamidx_status status; /* a failure reading either store */
    siamidx_error err;
} conflict_scan;

static void conflict(conflict_scan *c, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void conflict(conflict_scan *c, const char *fmt, ...) {
    char line[SIAMIDX_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (c->conflicts++ == 0) snprintf(c->first, sizeof c->first, "%s", line);
    if (c->opt && c->opt->conflict) c->opt->conflict(c->opt->conflict_ctx, line);
}

/* 1 when one of OUT's records with these bytes is by `artist`; else names one in *other. */
static int content_by(conflict_scan *c, const uint8_t hash[32], const char *artist,
                      const char **other, const char **other_path) {
    uint64_t *ids;
    size_t n;
    siamidx_error e;
    *other = *other_path = NULL;
    if ((c->status = sx_store_hash_records(c->out, c->out_txn, hash, &ids, &n, &e))) {
        c->err = e;
        return 1;
    }
    int found = n == 0;
    for (size_t i = 0; i < n && !found; i++) {
        sx_record o;
        const char *name;
        if (sx_store_get_record(c->out, c->out_txn, ids[i], &o, &e) ||
            sx_store_artist_name(c->out, c->out_txn, o.artist_id, &name, NULL, &e))
            continue; /* verify's business; not a conflict */
        found = !strcmp(name, artist);
        *other = name;
        *other_path = o.path;
    }
    free(ids);
    return found || !*other;
}

/*
 * A record conflicts when OUT holds its path under another artist, or its
 * bytes only under other artists: either way merging would put one image
 * under two artists. (One collection may list identical bytes under two
 * artists; build accepts that, and a shard holds both copies, since
 * identical images share a shard: the check is against OUT, not within a
 * shard.)
 */
static int check_record(void *ctx, const sx_record *r) {
    conflict_scan *c = ctx;
    siamidx_error e;
    const char *artist;
    if ((c->status = sx_store_artist_name(c->sh->st, c->sh_txn, r->artist_id, &artist, NULL, &e))) {
        c->err = e;
        return 1;
    }
    uint64_t id;
    sx_record o;
    const char *name;
    if (sx_store_find_path(c->out, c->out_txn, r->resolved, &id, &e) == 0 &&
        sx_store_get_record(c->out, c->out_txn, id, &o, &e) == 0 &&
        sx_store_artist_name(c->out, c->out_txn, o.artist_id, &name, NULL, &e) == 0) {
        if (strcmp(name, artist))
            conflict(c, "%s: by '%s' in shard %s, by '%s' in %s", r->resolved, artist, c->sh->dir,
                     name, c->out_dir);
        return 0;
    }
    const char *other, *other_path;
    if (!content_by(c, r->hash, artist, &other, &other_path)) {
        char hex[65];
        sx_hex(r->hash, 32, hex);
        hex[16] = 0;
        conflict(c, "%s (by '%s' in shard %s) is the same image (SHA-256 %s...) as %s (by '%s' "
                 "in %s)", r->resolved, artist, c->sh->dir, hex, other_path, other, c->out_dir);
    }
    return c->status != SIAMIDX_OK;
}

/* Every conflict of the shard's records with OUT's committed state. */
static siamidx_status find_conflicts(siamidx_index *out, shard *sh,
                                     const siamidx_merge_options *opt, int before_any,
                                     size_t *n_conflicts, siamidx_error *err) {
    conflict_scan c = {.out = sx_index_store(out), .out_dir = sx_index_dir(out), .sh = sh,
                       .opt = opt};
    siamidx_status s = sx_store_read_begin(c.out, &c.out_txn, err);
    if (!s) s = sx_store_read_begin(sh->st, &c.sh_txn, err);
    if (!s) s = sx_store_foreach_record(sh->st, c.sh_txn, check_record, &c, err);
    if (!s && c.status) {
        s = c.status;
        if (err) *err = c.err;
    }
    sx_store_read_end(c.sh_txn);
    sx_store_read_end(c.out_txn);
    *n_conflicts = c.conflicts;
    if (!s && c.conflicts)
        s = sx_fail(err, SIAMIDX_ERR_CONFLICT,
                    "shard %s: %zu record(s) conflict with %s, nothing of %s merged; "
                    "the first: %s", sh->dir, c.conflicts, sx_index_dir(out),
                    before_any ? "any shard" : "this shard", c.first);
    return s;
}

/* ---- 3. copying ------------------------------------------------------------------------------ */

enum { COPY_ADDED = 1, COPY_REPLACED, COPY_UNCHANGED, COPY_KEPT_NEWER };

typedef struct copy_ctx {
    sx_store *out;
    shard *sh;
    MDB_txn *sh_txn;
    uint64_t *ids; /* the shard's records */
    uint8_t *outcome;
    size_t calls, failed_calls;
    /* Test hook, SIAMIDX_TEST_MERGE_SLEEP_US=N: a pause after each record
       written, inside the transaction, so that tests/test_crash_merge.sh can
       kill a merge in the middle of a shard's transaction; 0: off. */
    unsigned sleep_us;
} copy_ctx;

static int same_str(const char *a, const char *b) { return !strcmp(a ? a : "", b ? b : ""); }

/* OUT's record o is r as it is: a re-run has nothing to do for it. */
static int same_record(const sx_record *o, const char *o_artist, const sx_record *r,
                       const char *artist) {
    return !memcmp(o->hash, r->hash, 32) && !strcmp(o_artist, artist) && o->size == r->size &&
           o->mtime_ns == r->mtime_ns && o->dim == r->dim && same_str(o->path, r->path) &&
           same_str(o->title, r->title) && same_str(o->style, r->style) &&
           same_str(o->genre, r->genre) && same_str(o->date, r->date) &&
           same_str(o->source_repo, r->source_repo) && same_str(o->source_path, r->source_path);
}

/* Records [from, to) of the shard into OUT, in the one transaction w. */
static siamidx_status copy_range(sx_wtxn *w, void *ctx, size_t from, size_t to,
                                 siamidx_error *err) {
    copy_ctx *c = ctx;
    MDB_txn *txn = sx_wtxn_txn(w);
    siamidx_status s = SIAMIDX_OK;
    c->calls++;
    for (size_t i = from; i < to && !s; i++) {
        sx_record r, o;
        const char *artist, *o_artist;
        uint64_t old;
        s = sx_store_get_record(c->sh->st, c->sh_txn, c->ids[i], &r, err);
        if (!s) s = sx_store_artist_name(c->sh->st, c->sh_txn, r.artist_id, &artist, NULL, err);
        if (s) break;
        c->outcome[i] = COPY_ADDED;
        siamidx_status found = sx_store_find_path(c->out, txn, r.resolved, &old, err);
        if (found == SIAMIDX_OK) {
            s = sx_store_get_record(c->out, txn, old, &o, err);
            if (!s) s = sx_store_artist_name(c->out, txn, o.artist_id, &o_artist, NULL, err);
            if (s) break;
            if (same_record(&o, o_artist, &r, artist)) {
                c->outcome[i] = COPY_UNCHANGED;
                continue;
            }
            /* The same path with other bytes: the later file wins, in any merge order. */
            if (memcmp(o.hash, r.hash, 32) && o.mtime_ns > r.mtime_ns) {
                c->outcome[i] = COPY_KEPT_NEWER;
                continue;
            }
            c->outcome[i] = COPY_REPLACED;
            s = sx_store_delete_record(w, old, err); /* o's pointers are stale from here */
        } else if (found != SIAMIDX_ERR_NOT_FOUND) {
            s = found;
        }
        if (!s) s = sx_store_put_record(w, &r, artist, err); /* a new id of OUT's */
        if (c->sleep_us) usleep(c->sleep_us);
    }
    if (s) c->failed_calls++;
    return s;
}

static int take_id(void *ctx, const sx_record *r) {
    copy_ctx *c = ctx;
    c->ids[c->calls++] = r->id;
    return 0;
}

static siamidx_status copy_shard(siamidx_index *out, shard *sh, siamidx_merge_report *rep,
                                 siamidx_error *err) {
    copy_ctx c = {.out = sx_index_store(out), .sh = sh};
    const char *hook = getenv("SIAMIDX_TEST_MERGE_SLEEP_US");
    if (hook && *hook) c.sleep_us = (unsigned)strtoul(hook, NULL, 10);
    siamidx_status s = sx_store_read_begin(sh->st, &c.sh_txn, err);
    if (s) return s;
    size_t n = (size_t)sx_store_count(sh->st, c.sh_txn); /* of this read's state */
    c.ids = malloc((n + 1) * sizeof *c.ids);
    c.outcome = calloc(n + 1, 1);
    if (!c.ids || !c.outcome) s = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "merge: out of memory");
    if (!s) s = sx_store_foreach_record(sh->st, c.sh_txn, take_id, &c, err);
    if (!s && c.calls != n)
        s = sx_fail(err, SIAMIDX_ERR_INDEX_CORRUPT, "shard %s: counts %zu records, holds %zu",
                    sh->dir, n, c.calls);
    c.calls = 0;
    if (!s && n) s = sx_store_write_range(c.out, copy_range, &c, 0, n, err);
    if (!s) {
        rep->shards += n > 0;
        rep->records += n;
        rep->transactions += c.calls - c.failed_calls;
        for (size_t i = 0; i < n; i++) {
            rep->added += c.outcome[i] == COPY_ADDED;
            rep->replaced += c.outcome[i] == COPY_REPLACED;
            rep->unchanged += c.outcome[i] == COPY_UNCHANGED;
            rep->kept_newer += c.outcome[i] == COPY_KEPT_NEWER;
        }
    } else {
        sx_error_prefix(err, "shard %s", sh->dir);
    }
    sx_store_read_end(c.sh_txn);
    free(c.ids);
    free(c.outcome);
    return s;
}

/* ---- 4. the FAISS index ---------------------------------------------------------------------- */

/*
 * The one place the merge touches OUT's vector index: after every shard
 * committed. Today it is the ordinary sync from the store's change log
 * (store/vindex.c): a flat or HNSW index gets the new vectors added, an IVF
 * one that the new size calls for more lists is rebuilt (trained) once. An
 * already trained IVF/IVF-PQ index that should take the shards' codes
 * without retraining (FAISS's merge_from) hooks in here.
 */
static siamidx_status update_vectors(siamidx_index *out, siamidx_error *err) {
    return sx_index_sync(out, err);
}

/*
 * Right after a shard's records were committed, and before anything else
 * changes OUT: when OUT is IVF-PQ, its FAISS index takes the shard's codes
 * as they are (sx_index_merge_ivf: FAISS merge_from when both hold the same
 * training, else an ordinary catch-up, with the same result). A kill between
 * the commit and this leaves FAISS behind the store, which the next open
 * catches up from the change log, as after any build.
 */
static siamidx_status move_ivf_codes(siamidx_index *out, const shard *sh,
                                     siamidx_merge_report *report, siamidx_error *err) {
    if (strcmp(sx_index_meta(out)->index_type, "ivfpq") || strcmp(sh->meta.index_type, "ivfpq"))
        return SIAMIDX_OK; /* brought up to date once, at the end */
    siamidx_index_options o;
    siamidx_index_options_init(&o);
    o.read_only = 1;
    siamidx_index *idx = NULL;
    int merged = 0;
    siamidx_status s = siamidx_index_open(sh->dir, NULL, &o, &idx, err);
    if (!s) s = sx_index_merge_ivf(out, idx, &merged, err);
    siamidx_index_close(idx);
    report->codes_moved += !s && merged;
    return s;
}

/* ---- the whole merge ------------------------------------------------------------------------- */

/* An empty OUT takes the first shard's model; OUT stops being a shard. */
static siamidx_status describe_out(siamidx_index *out, const sx_store_meta *ref,
                                   const siamidx_merge_options *opt, siamidx_error *err) {
    sx_store_meta want = *sx_index_meta(out);
    if (!want.dim) {
        memcpy(want.fingerprint, ref->fingerprint, sizeof want.fingerprint);
        memcpy(want.arch, ref->arch, sizeof want.arch);
        memcpy(want.pool, ref->pool, sizeof want.pool);
        want.dim = ref->dim;
        snprintf(want.index_type, sizeof want.index_type, "%s",
                 opt && opt->index_type ? opt->index_type : ref->index_type);
    }
    want.shard_index = want.shard_count = 0; /* it will hold more than one shard */
    if (!memcmp(&want, sx_index_meta(out), sizeof want)) return SIAMIDX_OK;
    return sx_index_set_meta(out, &want, err);
}

siamidx_status siamidx_index_merge(siamidx_index *out, const char *const *shards, size_t n,
                                   const siamidx_merge_options *opt,
                                   siamidx_merge_report *report, siamidx_error *err) {
    siamidx_merge_report local;
    if (!report) report = &local;
    memset(report, 0, sizeof *report);
    if (!out || (!shards && n))
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "merge: NULL argument");
    shard *sh = calloc(n + 1, sizeof *sh);
    if (!sh) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "merge: out of memory");
    siamidx_status s = SIAMIDX_OK;
    const sx_store_meta *out_meta = sx_index_meta(out);
    const char *out_id = sx_store_id(sx_index_store(out));
    sx_store_meta ref = *out_meta;
    char ref_name[4200];
    snprintf(ref_name, sizeof ref_name, "%s", sx_index_dir(out));
    int have_ref = out_meta->dim != 0;
    for (size_t i = 0; i < n && !s; i++) {
        if ((s = open_shard(&sh[i], shards[i], err))) break;
        if (*out_id && !strcmp(sx_store_id(sh[i].st), out_id))
            s = sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT,
                        "shard %s is %s itself (or a copy of it)", shards[i], sx_index_dir(out));
        else if (!sh[i].meta.dim && !sh[i].records)
            continue; /* a shard that never indexed anything has no model: nothing to merge */
        else if (!have_ref) {
            ref = sh[i].meta;
            snprintf(ref_name, sizeof ref_name, "the first shard %s", shards[i]);
            have_ref = 1;
        } else {
            s = same_model(&sh[i], &ref, ref_name, err);
        }
    }
    size_t conflicts = 0;
    for (size_t i = 0; i < n && !s; i++) /* against OUT as it is: refused, nothing written */
        if (sh[i].records) s = find_conflicts(out, &sh[i], opt, 1, &conflicts, err);
    if (!s && have_ref) s = describe_out(out, &ref, opt, err);
    if (!s && have_ref) s = sx_index_writable(out, err); /* else no shard holds a record */
    int first = 1;
    for (size_t i = 0; i < n && !s; i++) {
        if (opt && opt->stop && *opt->stop) {
            s = sx_fail(err, SIAMIDX_ERR_INTERRUPTED,
                        "interrupted: %zu of %zu shards merged, each committed", i, n);
            break;
        }
        if (!sh[i].records) continue;
        /* Against the shards merged before it; the first was checked above. */
        if (!first && (s = find_conflicts(out, &sh[i], opt, 0, &conflicts, err))) break;
        first = 0;
        if ((s = copy_shard(out, &sh[i], report, err))) break;
        if ((s = move_ivf_codes(out, &sh[i], report, err))) break;
        if (opt && opt->progress) opt->progress(opt->progress_ctx, i + 1, n);
    }
    report->conflicts = conflicts;
    if (report->added + report->replaced) {
        siamidx_error e;
        siamidx_status vs = update_vectors(out, s ? &e : err);
        if (!s) s = vs;
    }
    for (size_t i = 0; i < n; i++) sx_store_close(sh[i].st);
    free(sh);
    return s;
}

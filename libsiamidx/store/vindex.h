/* store/vindex.h - the FAISS index, derived from the store. */
#ifndef SX_STORE_VINDEX_H
#define SX_STORE_VINDEX_H

#include <stddef.h>
#include <stdint.h>

#include "siamidx.h"
#include "store/store.h"

typedef struct sx_vindex sx_vindex;
/* Loads the snapshot the store records (as of txn) when it is this store's
   and intact; else, with a warning on stderr when one was there but damaged
   or foreign, an empty index at generation 0 that the first sync rebuilds. */
siamidx_status sx_vindex_load(sx_store *st, MDB_txn *txn, uint32_t dim, sx_vindex **out,
                              siamidx_error *err);
void sx_vindex_free(sx_vindex *v);
/* Brings the index to the state of `txn` (log catch-up, or a rebuild); the
   vector count must then equal the record count. */
siamidx_status sx_vindex_sync(sx_vindex *v, sx_store *st, MDB_txn *txn, siamidx_error *err);
uint64_t sx_vindex_generation(const sx_vindex *v);
const char *sx_vindex_description(const sx_vindex *v); /* "Flat", "HNSW32", "IVF94,Flat" ... */
int64_t sx_vindex_ntotal(const sx_vindex *v);
/* Writes the snapshot (tmp + fsync + rename + fsync of the directory), then
   records it in the store, then drops every other snapshot. Writers only. */
siamidx_status sx_vindex_save(sx_vindex *v, sx_store *st, siamidx_error *err);
/* 1 when the snapshot on disk (loaded or saved by v) is of v's state. */
int sx_vindex_is_saved(const sx_vindex *v);
/* 1 (with why) when the store records a snapshot that is damaged, foreign or
   unreadable; 0 when it is sound or there is none. */
int sx_vindex_check_snapshot(sx_store *st, MDB_txn *txn, uint32_t dim, char *why, size_t cap);
/* n queries: ids[n*k] (-1 when fewer) and inner products sims[n*k]. */
siamidx_status sx_vindex_search(const sx_vindex *v, const float *q, size_t n, int k,
                                int64_t *ids, float *sims, siamidx_error *err);
/* Stored vector of an id (0: ok; non-zero: absent or not reconstructible). */
int sx_vindex_reconstruct(const sx_vindex *v, int64_t id, float *out);
/* Ids the index holds (sorted, malloc'd); SIAMIDX_ERR_UNSUPPORTED when unknown. */
siamidx_status sx_vindex_ids(const sx_vindex *v, int64_t **ids, size_t *n, siamidx_error *err);

/* ---- IVF-PQ: the trained IVF, kept in the store ---------------------------------------- */

#define IVFPQ_MIN_VECTORS 10000 /* PQ's 256 centroids per sub-quantizer want ~39x that */

typedef struct sx_ivf_info {
    uint32_t dim, nlist, m, nbits; /* IVF<nlist>,PQ<m>x<nbits> over dim */
    uint32_t nprobe;               /* the default, chosen with the parameters */
    int imported;                  /* adopted from another index: never retrained here */
    uint64_t trained_on;           /* vectors in the training sample */
    char tag[17];                  /* 16 hex digits of the SHA-256 of the trained index */
    char desc[48];                 /* "IVF2048,PQ32x8" */
} sx_ivf_info;

/* The parameters (desc, nlist, m, nbits, nprobe, trained_on = sample size)
   for n vectors of dim; no tag. */
void sx_vindex_ivfpq_params(uint64_t n, uint32_t dim, sx_ivf_info *p);
/* The store's trained IVF: NOT_FOUND when none, INDEX_CORRUPT when damaged. */
siamidx_status sx_vindex_ivf_get(sx_store *st, MDB_txn *txn, sx_ivf_info *info,
                                 siamidx_error *err);
/* A malloc'd copy of the store's trained IVF blob (checked), for another index. */
siamidx_status sx_vindex_ivf_blob(sx_store *st, MDB_txn *txn, void **blob, size_t *len,
                                  siamidx_error *err);
/* Trains IVF-PQ on a sample of the store's records (>= IVFPQ_MIN_VECTORS) and
   returns the blob (malloc'd) that sx_vindex_ivf_put stores. */
siamidx_status sx_vindex_ivf_train(sx_store *st, MDB_txn *txn, uint32_t dim, void **blob,
                                   size_t *len, siamidx_error *err);
/* Stores a (checked) blob as the store's training, flagged imported or not, in
   w, which then logs a rebuild: every FAISS index of the old training is stale. */
siamidx_status sx_vindex_ivf_put(sx_wtxn *w, const void *blob, size_t len, int imported,
                                 siamidx_error *err);
/* 1 when a training of this store's own should be redone for n vectors (the
   chosen nlist doubled); never for an imported one. */
int sx_vindex_ivf_outgrown(const sx_ivf_info *info, uint64_t n);

/* nprobe for IVF searches (0: the trained default); the effective value, 0
   when the index is not IVF now. */
void sx_vindex_set_nprobe(sx_vindex *v, uint32_t nprobe);
uint32_t sx_vindex_nprobe(const sx_vindex *v);
/* 1 when the index holds compressed codes (PQ): its similarities are estimates. */
int sx_vindex_is_lossy(const sx_vindex *v);

/*
 * Brings v to the state of txn, moving the codes of `shard` (synced, of the
 * same trained IVF) into it with FAISS's merge_from when that is exactly
 * what the log since v's generation added: translate maps each shard label
 * to v's record id (< 0: none). Otherwise, or when FAISS refuses, an
 * ordinary sync (the records are encoded again: the same codes). *merged
 * says which; the shard's handle is emptied after a merge (its next sync
 * rebuilds it).
 */
typedef int64_t (*sx_id_translate_fn)(void *ctx, int64_t shard_id);
siamidx_status sx_vindex_merge_from(sx_vindex *v, sx_store *st, MDB_txn *txn, sx_vindex *shard,
                                    sx_id_translate_fn translate, void *ctx, int *merged,
                                    siamidx_error *err);

#endif /* SX_STORE_VINDEX_H */

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

#endif /* SX_STORE_VINDEX_H */

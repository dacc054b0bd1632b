/* store/store.h - the LMDB store, the index's source of truth. */
#ifndef SX_STORE_STORE_H
#define SX_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "siamidx.h"

typedef struct MDB_txn MDB_txn;
typedef struct sx_store sx_store;
typedef struct sx_wtxn sx_wtxn; /* a write transaction with its change log */

#define SX_STORE_FORMAT 1
#define SX_STORE_ID_LEN 32 /* hex digits of the random store identity */

/* The durable description of an index (meta DB). */
typedef struct sx_store_meta {
    char fingerprint[65];
    char arch[32];
    char pool[16];
    char index_type[16]; /* flat | hnsw | ivf | ivfpq */
    uint32_t dim;
    uint64_t generation; /* +1 in every write transaction that changes records */
    uint64_t next_id;
    /* `build --shard I/N`: the index holds only shard shard_index of
       shard_count (0: not a shard); meta key "shard", absent when 0. */
    uint32_t shard_index, shard_count;
} sx_store_meta;

/* One image. Strings are NUL-terminated; decoded records point into LMDB's
   memory and live as long as the transaction. */
typedef struct sx_record {
    uint64_t id;
    uint32_t artist_id;
    uint64_t size;
    int64_t mtime_ns;
    uint8_t hash[32]; /* SHA-256 of the file's bytes */
    const char *path, *resolved, *title, *style, *genre, *date; /* optional ones may be "" */
    const char *source_repo, *source_path; /* provenance, may be "" (evaluation groups by it) */
    uint32_t dim;
    const void *embedding; /* dim float32, possibly unaligned: copy with sx_record_embedding */
} sx_record;

void sx_record_embedding(const sx_record *r, float *out);
/* Decodes a record value (as stored under its id): SIAMIDX_ERR_INDEX_CORRUPT
   when damaged; the record points into `value`. */
siamidx_status sx_record_decode(const void *value, size_t len, uint64_t id, sx_record *r,
                                siamidx_error *err);

/* Opens DIR/data.mdb. create: make the directory and an empty index if absent.
   A foreign or damaged file gives SIAMIDX_ERR_INDEX_CORRUPT. */
siamidx_status sx_store_open(const char *dir, int read_only, int create, sx_store **out,
                             siamidx_error *err);
void sx_store_close(sx_store *st);
/* Disk bytes of data.mdb. */
uint64_t sx_store_file_bytes(const sx_store *st);
/* The store's random identity (hex, written when it was made; "" for an
   index from before ids, until a writer opens it) and its directory. */
const char *sx_store_id(const sx_store *st);
const char *sx_store_dir(const sx_store *st);

/* fsync of a directory (after a rename or a file made in it) or of the
   directory holding path (after mkdir); 0 or -1 with errno. */
int sx_fsync_dir(const char *dir);
int sx_fsync_parent(const char *path);

/* A read transaction on the last committed state (MVCC); end with sx_store_read_end. */
siamidx_status sx_store_read_begin(sx_store *st, MDB_txn **txn, siamidx_error *err);
void sx_store_read_end(MDB_txn *txn);
MDB_txn *sx_wtxn_txn(sx_wtxn *w);

/*
 * Runs fn inside ONE write transaction and commits it (or, on any error,
 * aborts it whole). Changes made through sx_store_put_record /
 * sx_store_delete_record are logged under a new generation. The map is
 * fixed at open (SIAMIDX_MAP_SIZE, default 1 TiB on 64-bit); a full one is
 * an error naming that variable.
 */
typedef siamidx_status (*sx_write_fn)(sx_wtxn *w, void *ctx, siamidx_error *err);
siamidx_status sx_store_write(sx_store *st, sx_write_fn fn, void *ctx, siamidx_error *err);
/* fn writes items [from, to) of a batch in one transaction; when that is too
   big for one (MDB_TXN_FULL) it runs again on halves, each committed as its
   own transaction, recursively. fn must derive everything from its range.
   SIAMIDX_TEST_TXN_PUTS=N (a test hook) makes write N+1 of a transaction
   fail as MDB_TXN_FULL. */
typedef siamidx_status (*sx_write_range_fn)(sx_wtxn *w, void *ctx, size_t from, size_t to,
                                            siamidx_error *err);
siamidx_status sx_store_write_range(sx_store *st, sx_write_range_fn fn, void *ctx, size_t from,
                                    size_t to, siamidx_error *err);

siamidx_status sx_store_get_meta(sx_store *st, MDB_txn *txn, sx_store_meta *m,
                                 siamidx_error *err);
/* Sets fingerprint/arch/pool/dim/index_type and the shard spec of an index; a
   changed index_type is logged so the FAISS snapshot is rebuilt. */
siamidx_status sx_store_set_meta(sx_wtxn *w, const sx_store_meta *m, siamidx_error *err);

/* Named blobs in the meta DB (e.g. a trained head). NOT_FOUND when absent. */
siamidx_status sx_store_blob_get(sx_store *st, MDB_txn *txn, const char *name,
                                 const void **data, size_t *len, siamidx_error *err);
siamidx_status sx_store_blob_put(sx_wtxn *w, const char *name, const void *data, size_t len,
                                 siamidx_error *err);
/* Logs this transaction as a generation that makes the FAISS index rebuild
   from scratch (e.g. its trained IVF changed), even without record changes. */
void sx_store_request_rebuild(sx_wtxn *w);

/* Records: get by id, find by resolved path / content hash (NOT_FOUND when absent). */
siamidx_status sx_store_get_record(sx_store *st, MDB_txn *txn, uint64_t id, sx_record *r,
                                   siamidx_error *err);
siamidx_status sx_store_find_path(sx_store *st, MDB_txn *txn, const char *resolved,
                                  uint64_t *id, siamidx_error *err);
siamidx_status sx_store_find_hash(sx_store *st, MDB_txn *txn, const uint8_t hash[32],
                                  uint64_t *id, siamidx_error *err);
/* Ids of every record with these bytes (malloc'd array, *n may be 0). */
siamidx_status sx_store_hash_records(sx_store *st, MDB_txn *txn, const uint8_t hash[32],
                                     uint64_t **ids, size_t *n, siamidx_error *err);
/* Adds r under a new id (r->id receives it) for artist `artist` (created when new). */
siamidx_status sx_store_put_record(sx_wtxn *w, sx_record *r, const char *artist,
                                   siamidx_error *err);
siamidx_status sx_store_delete_record(sx_wtxn *w, uint64_t id, siamidx_error *err);

/* Every record in id order, in one read txn; fn returns non-zero to stop. */
typedef int (*sx_record_fn)(void *ctx, const sx_record *r);
siamidx_status sx_store_foreach_record(sx_store *st, MDB_txn *txn, sx_record_fn fn, void *ctx,
                                       siamidx_error *err);
/* Ids of one artist's records (malloc'd array). */
siamidx_status sx_store_artist_records(sx_store *st, MDB_txn *txn, uint32_t artist_id,
                                       uint64_t **ids, size_t *n, siamidx_error *err);
uint64_t sx_store_count(sx_store *st, MDB_txn *txn); /* number of records */

/* Artists: name of an id (pointer into LMDB memory), id of a name, image count. */
siamidx_status sx_store_artist_name(sx_store *st, MDB_txn *txn, uint32_t id, const char **name,
                                    uint64_t *count, siamidx_error *err);
siamidx_status sx_store_artist_id(sx_store *st, MDB_txn *txn, const char *name, uint32_t *id,
                                  siamidx_error *err);
typedef int (*sx_artist_fn)(void *ctx, uint32_t id, const char *name, uint64_t count);
siamidx_status sx_store_foreach_artist(sx_store *st, MDB_txn *txn, sx_artist_fn fn, void *ctx,
                                       siamidx_error *err);

/* The change log: what generation g added and removed; NOT_FOUND when pruned. */
enum { SX_CHANGE_REBUILD = 1 }; /* the FAISS index must be rebuilt from scratch */
typedef struct sx_change {
    uint32_t flags;
    size_t n_added, n_removed;
    uint64_t *added, *removed; /* malloc'd */
} sx_change;
siamidx_status sx_store_get_change(sx_store *st, MDB_txn *txn, uint64_t gen, sx_change *c,
                                   siamidx_error *err);
void sx_change_free(sx_change *c);
/* Drops log entries up to and including `gen` (a snapshot covers them). */
siamidx_status sx_store_prune_changes(sx_store *st, uint64_t gen, siamidx_error *err);
/* The FAISS snapshot the store trusts: written after the snapshot file is in
   place; one transaction records it and prunes the log it covers. */
typedef struct sx_snapshot_meta {
    uint64_t generation, count; /* store generation it reflects; vectors in it */
    uint8_t sha256[32];         /* of the whole file */
    char desc[64];              /* FAISS factory string */
} sx_snapshot_meta;
siamidx_status sx_store_get_snapshot(sx_store *st, MDB_txn *txn, sx_snapshot_meta *m,
                                     siamidx_error *err); /* NOT_FOUND when none */
siamidx_status sx_store_record_snapshot(sx_store *st, const sx_snapshot_meta *m,
                                        siamidx_error *err);
/* Every consistency problem (decoding, lookups both ways, artist counts) to fn. */
siamidx_status sx_store_verify(sx_store *st, MDB_txn *txn, siamidx_problem_fn fn, void *ctx,
                               size_t *n_problems, siamidx_error *err);

#endif /* SX_STORE_STORE_H */

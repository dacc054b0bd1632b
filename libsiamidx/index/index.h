/*
 * index/index.h - the index: the LMDB store and the FAISS index kept in step.
 *
 * It returns neighbours and records and keeps named blobs; it knows nothing
 * of heads (answer/ combines an index with a head). build.c, the other file
 * of this layer, reaches the store through sx_index_store.
 */
#ifndef SX_INDEX_INDEX_H
#define SX_INDEX_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "siamidx.h"
#include "siamidx_ext.h"
#include "store/store.h"

/* Opens an index for embeddings of `dim` from the model of `fingerprint`
   (NULL: any; then dim/arch/pool may be 0/NULL) -- lets tests and benches
   work with precomputed embeddings. */
siamidx_status sx_index_open_raw(const char *dir, const char *fingerprint, uint32_t dim,
                                 const char *arch, const char *pool,
                                 const siamidx_index_options *opt, siamidx_index **out,
                                 siamidx_error *err);

/* What the index was opened as (dim, fingerprint and pool never change after). */
const sx_store_meta *sx_index_meta(const siamidx_index *idx);
const char *sx_index_dir(const siamidx_index *idx);
/* SIAMIDX_ERR_INVALID_ARGUMENT when read-only or without a model yet. */
siamidx_status sx_index_writable(const siamidx_index *idx, siamidx_error *err);
/* The store, for this layer's build.c. Layers above use the functions here. */
sx_store *sx_index_store(siamidx_index *idx);

/* Brings the FAISS index to the last committed state of the store (the
   change log, or a rebuild; see store/vindex.c). */
siamidx_status sx_index_sync(siamidx_index *idx, siamidx_error *err);
/* Records a new description of the index (model, type, shard spec) in one
   write transaction; an index without a model (dim 0) that gets one gets
   a FAISS index of that dimension. Writers only. */
siamidx_status sx_index_set_meta(siamidx_index *idx, const sx_store_meta *want,
                                 siamidx_error *err);

/* An image with its precomputed embedding, for sx_index_add_embeddings. */
typedef struct sx_index_item {
    const char *path, *resolved, *artist;
    const char *title, *style, *genre, *date; /* may be NULL */
    const char *source_repo, *source_path;    /* may be NULL */
    uint64_t size;
    int64_t mtime_ns;
    uint8_t hash[32];
    const float *embedding; /* dim floats */
    int remove; /* only remove the record of this resolved path (embedding unused) */
} sx_index_item;

/* Adds items in one write transaction (an item whose resolved path is already
   indexed replaces that record; one with `remove` set only removes it). */
siamidx_status sx_index_add_embeddings(siamidx_index *idx, const sx_index_item *items, size_t n,
                                       siamidx_error *err);

/* The neighbours of one query, read in one transaction: committed records
   only, decreasing similarity, probability NaN; emb holds their stored
   embeddings (n * dim floats). */
typedef struct sx_neighbors {
    siamidx_neighbor *nb;
    size_t n;
    float *emb;
    uint8_t *hash; /* n * 32: each record's content hash (SHA-256 of its bytes) */
    uint32_t dim;
} sx_neighbors;

siamidx_status sx_index_neighbors(siamidx_index *idx, const float *query, int k,
                                  sx_neighbors *out, siamidx_error *err);
void sx_neighbors_free(sx_neighbors *n);

/* The record of an image with these bytes (content hash): its id, path and
   artist (malloc'd) and embedding (dim floats; may be NULL); NOT_FOUND when
   none. Identical images indexed twice: one of them. */
siamidx_status sx_index_find_content(siamidx_index *idx, const uint8_t hash[32], int64_t *id,
                                     char **path, char **artist, float *embedding,
                                     siamidx_error *err);

/* present[i] = 1 when the index holds an image by names[i], else 0 (an
   artist whose images were all removed, or one it never had). */
siamidx_status sx_index_artists_present(siamidx_index *idx, char *const *names, size_t n,
                                        uint8_t *present, siamidx_error *err);

/* Named blobs (a trained head, ...): a malloc'd copy; NOT_FOUND when absent. */
siamidx_status sx_index_blob_get(siamidx_index *idx, const char *name, void **data, size_t *len,
                                 siamidx_error *err);
/* Stores a blob in one write transaction (writers only). */
siamidx_status sx_index_blob_put(siamidx_index *idx, const char *name, const void *data,
                                 size_t len, siamidx_error *err);

/*
 * After a shard's records were committed to `out` (and before anything else
 * changed it), brings out's FAISS index up to date by moving the shard's
 * IVF-PQ codes into it (FAISS merge_from, nothing re-encoded) when both hold
 * the same trained IVF (--ivf-from the same index); records are matched by
 * resolved path. Otherwise an ordinary catch-up from the records, with the
 * same result. *merged (may be NULL) says whether codes moved. The shard's
 * handle (read-only is fine) rebuilds its own FAISS index on its next use.
 */
siamidx_status sx_index_merge_ivf(siamidx_index *out, siamidx_index *shard, int *merged,
                                  siamidx_error *err);

#endif /* SX_INDEX_INDEX_H */

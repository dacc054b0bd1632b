/*
 * siamidx.h - the public contract of libsiamidx.
 *
 * siamidx tells whether two paintings are by the same artist, and which
 * indexed artists most likely painted a given picture:
 *
 *   model    a ResNet encoder (safetensors file) that turns an image into an
 *            L2-normalised embedding;
 *   index    a directory holding an LMDB store (the source of truth) and a
 *            FAISS snapshot (derived, rebuilt from LMDB whenever needed);
 *   head     a Siamese scorer P(same artist | a, b).
 *
 * Conventions
 *   - Every handle is opaque. Whatever a *_new / *_load / *_open returns is
 *     released by the matching *_free / *_close; passing NULL to those is a
 *     no-op.
 *   - Every fallible function returns a siamidx_status. When `err` is not
 *     NULL it receives the status and a one-line, human readable message
 *     naming the file, tensor or byte offset at fault. There is no global
 *     error state: messages live in the caller's siamidx_error.
 *   - A loaded model is immutable: any number of threads may embed with the
 *     same model at once. An index opened read-only may be queried from many
 *     threads at once. Writes to an index are serialised by the index itself
 *     (one writer process at a time, see siamidx_index_open).
 *   - Embeddings are float32, L2-normalised, of siamidx_model_dim() values.
 */
#ifndef SIAMIDX_H
#define SIAMIDX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SIAMIDX_VERSION_MAJOR 0
#define SIAMIDX_VERSION_MINOR 1
#define SIAMIDX_VERSION_PATCH 0
#define SIAMIDX_VERSION_STRING "0.1.0"

/* ------------------------------------------------------------------------ */
/* Status codes                                                              */
/* ------------------------------------------------------------------------ */

typedef enum siamidx_status {
    SIAMIDX_OK = 0,
    SIAMIDX_ERR_INVALID_ARGUMENT, /* the caller passed something unusable */
    SIAMIDX_ERR_NO_MEMORY,
    SIAMIDX_ERR_IO,               /* a file could not be opened/read/written */
    SIAMIDX_ERR_MODEL_FORMAT,     /* model file malformed, truncated, or missing tensors */
    SIAMIDX_ERR_IMAGE,            /* an image could not be decoded */
    SIAMIDX_ERR_IMAGE_TOO_LARGE,  /* refused before decoding: over the pixel limit */
    SIAMIDX_ERR_UNSUPPORTED,      /* valid request this build/model cannot serve */
    SIAMIDX_ERR_MODEL_MISMATCH,   /* index built with another model */
    SIAMIDX_ERR_INDEX_LOCKED,     /* another process is writing the index */
    SIAMIDX_ERR_INDEX_CORRUPT,    /* the index store is damaged or foreign */
    SIAMIDX_ERR_NOT_FOUND,        /* no such index / image / artist */
    SIAMIDX_ERR_NO_HEAD,          /* no trained Siamese head available */
    SIAMIDX_ERR_CSV,              /* a collection or pairs CSV is malformed */
    SIAMIDX_ERR_BACKEND,          /* LMDB or FAISS reported an error */
    SIAMIDX_ERR_INTERRUPTED,      /* stopped by the caller (e.g. a signal) */
    SIAMIDX_ERR_CONFLICT,         /* merge: the same image under two artists */
    SIAMIDX_STATUS_COUNT
} siamidx_status;

#define SIAMIDX_ERROR_MESSAGE_MAX 512

typedef struct siamidx_error {
    siamidx_status status;
    char message[SIAMIDX_ERROR_MESSAGE_MAX];
} siamidx_error;

/* A short, static description of a status code ("image could not be decoded"). */
const char *siamidx_strerror(siamidx_status status);

/* ------------------------------------------------------------------------ */
/* Model                                                                     */
/* ------------------------------------------------------------------------ */

typedef struct siamidx_model siamidx_model;

typedef enum siamidx_pool {
    SIAMIDX_POOL_DEFAULT = 0, /* whatever the model's metadata names */
    SIAMIDX_POOL_AVG,         /* global average pooling (torchvision's avgpool) */
    SIAMIDX_POOL_MAX,         /* global max pooling */
    SIAMIDX_POOL_GEM,         /* generalised mean, p from metadata (default 3) */
    SIAMIDX_POOL_STYLE        /* per-channel mean and std of the metadata's stages */
} siamidx_pool;

/* Parses "avg", "max", "gem", "style" (or "default"); returns -1 if unknown. */
int siamidx_pool_from_name(const char *name);
const char *siamidx_pool_name(siamidx_pool pool);

/*
 * Loads a model file (safetensors, fp32/fp16/bf16) and folds BatchNorm into
 * the convolutions. Refuses, naming the tensor or byte offset, a file that
 * is truncated, has bad JSON, lacks a tensor or has a tensor of the wrong shape.
 */
siamidx_status siamidx_model_load(const char *path, siamidx_model **out, siamidx_error *err);
void siamidx_model_free(siamidx_model *model);

/* The value of a `__metadata__` key, or NULL. The string lives as long as the model. */
const char *siamidx_model_meta(const siamidx_model *model, const char *key);
/* Number of metadata entries and the i-th key (sorted), for listing. */
size_t siamidx_model_meta_count(const siamidx_model *model);
const char *siamidx_model_meta_key(const siamidx_model *model, size_t i);

const char *siamidx_model_arch(const siamidx_model *model);
int siamidx_model_input_size(const siamidx_model *model);
/* Embedding dimension for a pooling choice (SIAMIDX_POOL_DEFAULT: the model's). */
size_t siamidx_model_dim(const siamidx_model *model, siamidx_pool pool);
siamidx_pool siamidx_model_default_pool(const siamidx_model *model);
/* Number of classes of the model's fc layer, 0 when it has none. */
int siamidx_model_num_classes(const siamidx_model *model);
/*
 * Hex SHA-256 over the weights and the preprocessing metadata: two models
 * with the same fingerprint produce the same embeddings.
 */
const char *siamidx_model_fingerprint(const siamidx_model *model);

/* Where the installed default model lives (compiled in; may not exist). */
const char *siamidx_default_model_path(void);

/* ------------------------------------------------------------------------ */
/* Embedding                                                                 */
/* ------------------------------------------------------------------------ */

#define SIAMIDX_DEFAULT_MAX_PIXELS 100000000ull

typedef struct siamidx_embed_options {
    siamidx_pool pool;   /* SIAMIDX_POOL_DEFAULT: the model's choice */
    uint64_t max_pixels; /* images with more pixels are refused before decoding; 0: default */
    int batch;           /* images per forward pass; 0: default (16) */
} siamidx_embed_options;

void siamidx_embed_options_init(siamidx_embed_options *opt);

/*
 * Sets how many threads the compute kernels use (0: all cores). This is
 * process-wide: it applies to calls from every thread (the library's OpenMP
 * regions read one shared count, and OpenBLAS's pool is global); call it
 * once at start-up.
 */
void siamidx_set_threads(int threads);

/* Embeds one image file. `out` receives siamidx_model_dim(model, opt->pool) floats. */
siamidx_status siamidx_embed_file(const siamidx_model *model, const char *path,
                                  const siamidx_embed_options *opt, float *out,
                                  siamidx_error *err);

/* Embeds an 8-bit RGB buffer (rows of `stride` bytes, 3 bytes per pixel). */
siamidx_status siamidx_embed_rgb(const siamidx_model *model, const uint8_t *rgb, int width,
                                 int height, size_t stride, const siamidx_embed_options *opt,
                                 float *out, siamidx_error *err);

/*
 * Embeds many files in batches. out: n * dim floats in argument order.
 * status[i] / errors[i] (either may be NULL) report each file; a file that
 * fails leaves its row zeroed and does not stop the others. Returns
 * SIAMIDX_OK when every file embedded, SIAMIDX_ERR_IMAGE when some failed,
 * or another status when nothing could be done (errors go to `err`).
 */
siamidx_status siamidx_embed_files(const siamidx_model *model, const char *const *paths, size_t n,
                                   const siamidx_embed_options *opt, float *out,
                                   siamidx_status *status, siamidx_error *errors,
                                   siamidx_error *err);

typedef enum siamidx_output {
    SIAMIDX_OUTPUT_POOLED = 0, /* torchvision avgpool output, flattened, not normalised */
    SIAMIDX_OUTPUT_LOGITS      /* fc output (model must have fc) */
} siamidx_output;

/*
 * Runs the network on an already preprocessed float32 tensor [n, 3, h, w]
 * (NCHW). out: n * (channels or classes) floats.
 */
siamidx_status siamidx_forward_tensor(const siamidx_model *model, const float *x, int n, int h,
                                      int w, siamidx_output output, float *out,
                                      siamidx_error *err);

/* ------------------------------------------------------------------------ */
/* Index                                                                     */
/* ------------------------------------------------------------------------ */
/*
 * An index is a directory (e.g. ./siamidx.idx) holding:
 *   data.mdb, lock.mdb   LMDB: the source of truth -- format version, the
 *                        model's fingerprint, arch, pooling and dimension,
 *                        one record per image (paths, SHA-256, size, mtime,
 *                        artist, title/style/genre/date, embedding), artists,
 *                        lookups by path, content hash and artist, and a
 *                        change log per generation;
 *   vectors.G.DESC.faiss a FAISS snapshot of generation G (derived state; a
 *                        stale or missing one is caught up from LMDB on use);
 *   writer.lock          flock'd by the one writing process, holds its PID.
 * Every change (a batch of images, a removal) is one LMDB transaction: after
 * a crash the index holds exactly the batches that committed. The LMDB map
 * grows by itself.
 */
typedef struct siamidx_index siamidx_index;

typedef struct siamidx_index_options {
    int read_only;          /* queries/info/verify only: no writer lock taken */
    int create;             /* create the index when the directory has none */
    int wait;               /* wait for another writer instead of SIAMIDX_ERR_INDEX_LOCKED */
    const char *index_type; /* "flat" (exact, default), "hnsw" (HNSW32), "ivf" (IVF-Flat),
                               "ivfpq" (IVF-PQ); NULL: keep the index's. Changing it
                               rebuilds the FAISS index. ivf/ivfpq train on the stored
                               embeddings (nlist ~ 4 sqrt(n)) and search exactly (flat)
                               below 2,000 / 10,000 vectors. */
} siamidx_index_options;

void siamidx_index_options_init(siamidx_index_options *opt);

/* The index directory from $SIAMIDX_INDEX, else "siamidx.idx". */
const char *siamidx_default_index_path(void);

/*
 * Opens (or with opt->create, creates) the index in `dir`. `model` is
 * the model embeddings come from; an index built with another model is
 * refused with SIAMIDX_ERR_MODEL_MISMATCH naming both fingerprints. model
 * may be NULL for info/verify/remove. A writer (not read_only) holds the
 * index's lock until siamidx_index_close; a second writer gets
 * SIAMIDX_ERR_INDEX_LOCKED ("index DIR is being written by process N").
 * A damaged or foreign data.mdb gives SIAMIDX_ERR_INDEX_CORRUPT; a missing
 * index (without create) SIAMIDX_ERR_NOT_FOUND. Readers see the last
 * committed state, even while a writer works.
 */
siamidx_status siamidx_index_open(const char *dir, const siamidx_model *model,
                                  const siamidx_index_options *opt, siamidx_index **out,
                                  siamidx_error *err);
/* Writes the FAISS snapshot (writers) and releases the lock. */
void siamidx_index_close(siamidx_index *idx);

/* ---- building ---- */

typedef struct siamidx_build_failure {
    char *path;
    siamidx_status status;
    char *message;
} siamidx_build_failure;

typedef struct siamidx_build_report {
    size_t total;     /* entries in the collection */
    size_t indexed;   /* records written (new or changed images) */
    size_t embedded;  /* images the encoder embedded (failures not counted) */
    size_t reused;    /* indexed from an identical image's stored embedding */
    size_t unchanged; /* already indexed with the same size and mtime */
    size_t failed;    /* entries skipped with an error (see failures) */
    siamidx_build_failure *failures;
    size_t n_failures;
    size_t other_shards; /* shard builds: entries of other shards, hashed but not decoded */
    size_t moved_out;    /* shard builds: records whose file now hashes to another shard, removed */
} siamidx_build_report;

void siamidx_build_report_free(siamidx_build_report *r);

/* Progress after each batch: done out of total entries. */
typedef void (*siamidx_progress_fn)(void *ctx, size_t done, size_t total);

typedef struct siamidx_build_options {
    const char *root; /* CSV collections: directory relative paths start from */
    int batch;        /* images per write transaction; 0: 64 */
    siamidx_embed_options embed;
    siamidx_progress_fn progress;
    void *progress_ctx;
    /* When set and *stop becomes non-zero (e.g. from a signal handler), the
       build stops before its next batch, every batch before committed, and
       returns SIAMIDX_ERR_INTERRUPTED. */
    const volatile int *stop;
    /* Sharded builds (`build --shard I/N`): with shard_count N > 0, only the
       images of shard shard_index I (0 <= I < N) are indexed, those whose
       content hash siamidx_shard_of() maps to I; the others are hashed and
       skipped before decoding. The index records I/N (info shows it); a
       shard index is built only with the same I/N, and takes nothing
       else (no build without a shard, no add): `merge` joins shards. */
    uint32_t shard_index, shard_count;
} siamidx_build_options;

void siamidx_build_options_init(siamidx_build_options *opt);

/*
 * Indexes a collection: a directory of ARTIST/IMAGE files or a CSV with
 * filename and artist columns (optional title, style, genre, date).
 * Incremental: files already indexed with the same size and mtime are not
 * read; a changed file is re-embedded; an image identical to an indexed one
 * reuses its embedding. Bad entries are reported in `report` and skipped.
 * Returns SIAMIDX_OK when every entry is indexed, SIAMIDX_ERR_IMAGE when
 * some failed (the rest are indexed), another status when the build
 * stopped (every batch committed before stays).
 */
siamidx_status siamidx_index_build(siamidx_index *idx, const siamidx_model *model,
                                   const char *collection, const siamidx_build_options *opt,
                                   siamidx_build_report *report, siamidx_error *err);
/* The same over several collections read as one (as train-encoder reads them): an
   artist name in more than one is one artist; an image (resolved path) listed by an
   earlier collection is reported as a failure and skipped. Nothing is copied. */
siamidx_status siamidx_index_build_many(siamidx_index *idx, const siamidx_model *model,
                                        const char *const *collections, size_t n_collections,
                                        const siamidx_build_options *opt,
                                        siamidx_build_report *report, siamidx_error *err);

/*
 * The shard (0 .. count-1) of an image with these bytes: the first 8 bytes
 * of its SHA-256, read big-endian, modulo count. The same on every machine
 * and every run; identical images always share a shard.
 */
uint32_t siamidx_shard_of(const uint8_t sha256[32], uint32_t count);

/* Indexes image files as paintings by `artist` (same rules as build). */
siamidx_status siamidx_index_add(siamidx_index *idx, const siamidx_model *model,
                                 const char *const *paths, size_t n, const char *artist,
                                 const siamidx_build_options *opt, siamidx_build_report *report,
                                 siamidx_error *err);

/* Removes images by path (as given at build time, as query prints it, or
   resolved) or all of an artist's, in one transaction (several, each
   consistent, when too big for one). *removed (may be NULL) receives the
   count; NOT_FOUND when nothing matched. */
siamidx_status siamidx_index_remove(siamidx_index *idx, const char *const *paths, size_t n,
                                    size_t *removed, siamidx_error *err);
siamidx_status siamidx_index_remove_artist(siamidx_index *idx, const char *artist,
                                           size_t *removed, siamidx_error *err);
/* siamidx_index_remove, saying what each path matched: matches[i] (may be
   NULL) is 1 when path i named a record (as resolved: normalised absolute,
   or through symlinks; else as given at build time, as query prints it)
   and it was removed, 0 when it named none, more when it is a path as given
   to several records (ambiguous: none of them removed). */
siamidx_status siamidx_index_remove_paths(siamidx_index *idx, const char *const *paths, size_t n,
                                          size_t *matches, size_t *removed, siamidx_error *err);

/* ---- querying ---- */

typedef struct siamidx_neighbor {
    int64_t id;
    char *path;
    char *artist;
    float similarity; /* cosine similarity of the embeddings */
    float probability; /* the head's P(same artist) for query and neighbour; NaN without a head */
} siamidx_neighbor;

typedef struct siamidx_artist_score {
    char *artist;
    float probability;
} siamidx_artist_score;

/* Which head answered a query. */
typedef enum siamidx_head_source {
    SIAMIDX_HEAD_NONE = 0, /* no head anywhere: similarity only (see siamidx_index_query) */
    SIAMIDX_HEAD_INDEX,    /* the index's own trained head */
    SIAMIDX_HEAD_MODEL     /* the model file's default head */
} siamidx_head_source;

/* "none", "index", "model". */
const char *siamidx_head_source_name(siamidx_head_source source);

typedef struct siamidx_query_result {
    siamidx_neighbor *neighbors; /* decreasing similarity */
    size_t n_neighbors;
    siamidx_artist_score *artists; /* decreasing probability, summing to <= 1 */
    size_t n_artists;
    float unknown; /* P(an artist not in the index); with a head only, else 0 */
    siamidx_head_source head; /* which head scored the artists */
    /* The indexed image with the query's very bytes (SHA-256), else NULL (and
       id -1): it is named here and is neither a neighbour nor evidence. */
    char *exact_match_path, *exact_match_artist;
    int64_t exact_match_id;
    int classifier; /* 1: the index's classifier was fused in (siamidx train) */
} siamidx_query_result;

void siamidx_query_result_free(siamidx_query_result *res);

/*
 * The k nearest indexed paintings of an image and scores for their artists.
 * The head, by one rule for queries and pairs: the index's trained head if
 * it has one, else the model's default head, else none. With no head the
 * artist scores are a softmax over the neighbours' similarities
 * (temperature 0.05) summed per artist -- a ranking, not a calibrated
 * probability -- and res->head says SIAMIDX_HEAD_NONE.
 */
siamidx_status siamidx_index_query(siamidx_index *idx, const siamidx_model *model,
                                   const char *image, int k, siamidx_query_result *res,
                                   siamidx_error *err);
/* The same for an embedding of the index's dimension (no model: the index's head, else none). */
siamidx_status siamidx_index_query_embedding(siamidx_index *idx, const float *embedding, int k,
                                             siamidx_query_result *res, siamidx_error *err);

/*
 * What a query lists and what it weighs, separately (siamidx_index_query(k)
 * is k artists, k neighbours and 10*k, at least 50, candidates).
 */
typedef struct siamidx_query_options {
    int k;          /* artists to list (res->artists), >= 1; init: 5 */
    int neighbors;  /* nearest paintings returned (res->neighbors), >= 0; init: 5 */
    int candidates; /* nearest paintings scored as evidence, >= 1 (fetched: at least
                       `neighbors`); init: SIAMIDX_DEFAULT_CANDIDATES */
} siamidx_query_options;

/* The pool "unknown" was fitted on and `siamidx eval` scores (docs/evaluation.md). */
#define SIAMIDX_DEFAULT_CANDIDATES 50

void siamidx_query_options_init(siamidx_query_options *opt);
siamidx_status siamidx_index_query_opts(siamidx_index *idx, const siamidx_model *model,
                                        const char *image, const siamidx_query_options *opt,
                                        siamidx_query_result *res, siamidx_error *err);
siamidx_status siamidx_index_query_embedding_opts(siamidx_index *idx, const float *embedding,
                                                  const siamidx_query_options *opt,
                                                  siamidx_query_result *res, siamidx_error *err);
/*
 * Raw batch search: n embeddings, ids[n*k] record ids (-1 past the end) and
 * sims[n*k]; every id returned is a committed record.
 */
siamidx_status siamidx_index_search(siamidx_index *idx, const float *queries, size_t n, int k,
                                    int64_t *ids, float *sims, siamidx_error *err);

/* ---- inspection ---- */

typedef struct siamidx_artist_info {
    char *name;
    uint64_t images;
} siamidx_artist_info;

typedef struct siamidx_index_info {
    uint64_t images;
    uint64_t n_artists;
    siamidx_artist_info *artists; /* by name */
    uint32_t dim;
    char fingerprint[65];
    char arch[32];
    char pool[16];
    char index_type[16];   /* as configured */
    char faiss[64];        /* what FAISS holds now, e.g. "Flat" while ivf lacks data */
    uint64_t generation;
    uint64_t bytes_on_disk; /* every file in the directory */
    uint32_t shard_index, shard_count; /* built with --shard I/N; count 0: not a shard */
    /* ivfpq: the trained IVF kept in the store (0 / "" until trained) */
    uint32_t ivf_nlist, pq_m, pq_nbits; /* IVF<nlist>,PQ<m>x<nbits> */
    uint64_t ivf_trained_on;            /* vectors in its training sample */
    int ivf_imported;                   /* adopted with siamidx_index_ivf_from */
    char ivf_tag[17];                   /* names the training (SHA-256 prefix) */
    uint32_t nprobe;                    /* ivf/ivfpq: lists searched now; else 0 */
} siamidx_index_info;

siamidx_status siamidx_index_info_get(siamidx_index *idx, siamidx_index_info *info,
                                      siamidx_error *err);
void siamidx_index_info_free(siamidx_index_info *info);

/*
 * IVF-PQ (docs/index.md, "Index types"; docs/scale.md). An ivfpq index
 * trains once it holds 10,000 vectors: nlist, the PQ code size and the
 * default nprobe follow from the vector count and dimension; the trained
 * (empty) FAISS index is kept in LMDB and every rebuild reuses it.
 *
 * siamidx_index_ivf_from makes idx (a writer) an ivfpq index with the
 * training of the index in directory `source` (which must be trained, of
 * the same model and dimension: SIAMIDX_ERR_INVALID_ARGUMENT /
 * SIAMIDX_ERR_MODEL_MISMATCH, idx unchanged). Its vectors are then encoded
 * with that training at any size and never retrained, so indexes built
 * from one source hold codes that merge without re-encoding. The same
 * training again is a no-op.
 */
siamidx_status siamidx_index_ivf_from(siamidx_index *idx, const char *source,
                                      siamidx_error *err);
/*
 * Inverted lists an ivf/ivfpq search of this handle visits (1..65536; more
 * than nlist searches them all): fewer is faster, more finds more of the
 * exact neighbours. SIAMIDX_ERR_INVALID_ARGUMENT for 0 or an index of
 * another type (flat and hnsw have no lists). Applies from the next search.
 */
siamidx_status siamidx_index_set_nprobe(siamidx_index *idx, unsigned nprobe,
                                        siamidx_error *err);

/*
 * Checks the store (every record decodes; path, hash and artist lookups agree
 * both ways; artist counts), the FAISS index and their agreement (same ids;
 * for flat indexes, vectors equal to the stored embeddings). Each problem is
 * passed to fn (may be NULL); *n_problems receives their number. Returns OK
 * when the checks ran (inspect *n_problems).
 */
typedef void (*siamidx_problem_fn)(void *ctx, const char *problem);
siamidx_status siamidx_index_verify(siamidx_index *idx, siamidx_problem_fn fn, void *ctx,
                                    size_t *n_problems, siamidx_error *err);

/* ---- merging shards ---- */

typedef struct siamidx_merge_options {
    /* The index type of an OUT that holds nothing yet; NULL: the first
       shard's. An OUT with records keeps its own (siamidx_index_options). */
    const char *index_type;
    /* Raised (e.g. by a signal handler): the merge stops before the next
       shard, every shard before committed; SIAMIDX_ERR_INTERRUPTED. */
    const volatile int *stop;
    siamidx_progress_fn progress; /* after each shard: shards done of all */
    void *progress_ctx;
    /* Each conflicting record, one line (may be NULL): see siamidx_index_merge. */
    siamidx_problem_fn conflict;
    void *conflict_ctx;
} siamidx_merge_options;

void siamidx_merge_options_init(siamidx_merge_options *opt);

typedef struct siamidx_merge_report {
    size_t shards;        /* shards merged (those with records) */
    size_t records;       /* records the shards hold */
    size_t added;         /* new in OUT */
    size_t replaced;      /* a path OUT held with other bytes or description, older: replaced */
    size_t unchanged;     /* already in OUT as they are (a re-run) */
    size_t kept_newer;    /* a path OUT holds with other bytes and a later mtime: OUT's kept */
    size_t transactions;  /* write transactions (one per shard unless one was too big) */
    size_t conflicts;     /* records refused (then the status is SIAMIDX_ERR_CONFLICT) */
    size_t codes_moved;   /* shards whose IVF-PQ codes went into OUT as they were (FAISS
                             merge_from: OUT and the shard share one training, e.g. both
                             built with --ivf-from one index); the others are encoded */
} siamidx_merge_report;

/*
 * Adds every record of the indexes in `shards` (directories, typically made
 * by build --shard I/N, but any index works) to `out` (opened for writing,
 * possibly new and empty): paths, artists, descriptions and embeddings as
 * the shards hold them; nothing is embedded again. Ids are OUT's own.
 *
 * Refused before anything is written: a shard built with another model
 * than OUT or than the first shard (SIAMIDX_ERR_MODEL_MISMATCH naming both
 * fingerprints), OUT itself or a copy of it (same store id), a damaged
 * shard. Refused per shard, before anything of that shard is written
 * (SIAMIDX_ERR_CONFLICT naming the first conflict; every one goes to
 * opt->conflict): a record whose path OUT holds under another artist, or
 * whose bytes (SHA-256) OUT holds only under other artists. Every shard is
 * checked against OUT's state before the merge first, so a conflict with
 * what OUT held leaves OUT unchanged; one between two of the given shards
 * is found when the later one's turn comes, the shards before it merged.
 *
 * Idempotent: a record OUT already holds as it is is left alone, so a
 * re-run after a kill or a refusal completes the merge. A path both hold
 * with other bytes keeps the version with the later mtime.
 *
 * Crash safety: each shard is ONE LMDB transaction; a kill leaves the
 * shards that committed. A shard too big for one transaction (LMDB's
 * MDB_TXN_FULL: 2^17 dirty pages, 512 MiB with 4 KiB pages, of the order of
 * 10^5 records) is committed in halves, recursively, each consistent on
 * its own; a kill then may leave part of that shard, which a re-run
 * completes (report->transactions says how many there were). The FAISS index of OUT is brought up to date once, at the end
 * (from LMDB's change log: vectors added, or a rebuild when the index type
 * wants one), and its snapshot written at siamidx_index_close.
 */
siamidx_status siamidx_index_merge(siamidx_index *out, const char *const *shards, size_t n,
                                   const siamidx_merge_options *opt,
                                   siamidx_merge_report *report, siamidx_error *err);

/* ------------------------------------------------------------------------ */
/* Siamese head and answers                                                  */
/* ------------------------------------------------------------------------ */
/*
 * The head turns two embeddings into a calibrated P(same artist):
 *   z = normalise((e - mean) / std)        per-dimension standardisation
 *   P = sigmoid(a * (w . f(za, zb) + b) + c) with f symmetric in the pair
 * (|za - zb| per dimension and the cosine by default; see
 * docs/evaluation.md for why). `siamidx train` fits it on an index and
 * stores it there; a model file may carry a default head (tensors "head.*").
 * An index's own head takes precedence over the model's. With no head at
 * all, pair answers fail with SIAMIDX_ERR_NO_HEAD ("no trained head: run
 * `siamidx train`") rather than guessing; a query still ranks artists by
 * similarity and says so (siamidx_query_result.head).
 *
 * A head is immutable once loaded: any number of threads may score with it.
 *
 * Attribution is siamidx_index_query (above): with a head (the index's, else
 * the model's), the candidates (siamidx_query_options; 10*k, at least 50, for
 * siamidx_index_query) nearest paintings are scored pair by pair
 * (siamidx_neighbor.probability) and aggregated per artist against an
 * "unknown" alternative (siamidx_query_result.unknown), fitted on validation
 * queries with and without their artist indexed; artists + unknown <= 1.
 * An index trained since classifiers exist also holds a logistic classifier
 * over its artists: the answer then fuses its probabilities with the
 * neighbour evidence, and "unknown" is weighed by Bayes' rule against the
 * index's unknown prior (siamidx_train_options.unknown_prior).
 * `siamidx pair` and `siamidx query` call exactly these functions.
 */
typedef struct siamidx_head siamidx_head;

/* The model file's default head, or NULL. Owned by the model. */
const siamidx_head *siamidx_model_head(const siamidx_model *model);
/* A head from / to its serialised form (what an index stores). Free the blob with free(). */
siamidx_status siamidx_head_from_blob(const void *blob, size_t len, siamidx_head **out,
                                      siamidx_error *err);
siamidx_status siamidx_head_to_blob(const siamidx_head *head, void **blob, size_t *len,
                                    siamidx_error *err);
void siamidx_head_free(siamidx_head *head);
/* Embedding dimension the head expects; 0 for NULL. */
size_t siamidx_head_dim(const siamidx_head *head);
/* Decision threshold on the probability, chosen on validation pairs. */
double siamidx_head_threshold(const siamidx_head *head);

typedef struct siamidx_pair_result {
    double probability; /* calibrated P(same artist) */
    double threshold;   /* the head's decision threshold */
    int same_artist;    /* probability >= threshold */
} siamidx_pair_result;

/* An 8-bit RGB buffer: rows of `stride` bytes, 3 bytes per pixel. */
typedef struct siamidx_rgb_image {
    const uint8_t *rgb;
    int width, height;
    size_t stride;
} siamidx_rgb_image;

/* Scores two embeddings (dim floats each, as siamidx_embed_* produce them). */
siamidx_status siamidx_pair_embeddings(const siamidx_head *head, const float *a, const float *b,
                                       size_t dim, siamidx_pair_result *out, siamidx_error *err);
/*
 * Embeds two files / buffers with `model` and scores them. head NULL: the
 * model's default head (SIAMIDX_ERR_NO_HEAD when it has none). opt may be NULL.
 */
siamidx_status siamidx_pair_files(const siamidx_model *model, const siamidx_head *head,
                                  const char *path_a, const char *path_b,
                                  const siamidx_embed_options *opt, siamidx_pair_result *out,
                                  siamidx_error *err);
siamidx_status siamidx_pair_rgb(const siamidx_model *model, const siamidx_head *head,
                                const siamidx_rgb_image *a, const siamidx_rgb_image *b,
                                const siamidx_embed_options *opt, siamidx_pair_result *out,
                                siamidx_error *err);

/* ---- training and evaluation on an index ---- */

typedef struct siamidx_train_options {
    int epochs;           /* at most (early stopping on validation AUC); 0: 60 */
    uint64_t seed;        /* the split and the pairs; same seed, same head */
    double val_fraction;  /* of each seen artist's images held out, half for
                             validation (early stopping, calibration, threshold)
                             and half for `eval`; 0: 0.2 */
    int holdout_artists;  /* whole artists kept out, to measure unseen artists */
    /* Images to test on instead of a drawn share (paths as given to `build`, as
       `remove` takes them): `eval` measures seen artists on exactly these, e.g.
       images an encoder was not trained on. The validation share is then drawn
       from each artist's other images (val_fraction / 2 of them). NULL: drawn. */
    const char *const *test_images;
    size_t n_test_images;
    int verbose;          /* progress on stderr */
    double unknown_prior; /* P(a query's artist is not in the index), 0 <= P < 1: the
                             prior "unknown" is weighed against (docs/evaluation.md);
                             init sets SIAMIDX_DEFAULT_UNKNOWN_PRIOR; 0: never "unknown" */
    siamidx_progress_fn progress; /* after each epoch: epochs done of the most (may stop early) */
    void *progress_ctx;
} siamidx_train_options;

/* Chosen by measurement (docs/evaluation.md, "Attribution: logistic + fusion"). */
#define SIAMIDX_DEFAULT_UNKNOWN_PRIOR 0.08

void siamidx_train_options_init(siamidx_train_options *opt);

typedef struct siamidx_train_report {
    double val_auc, val_accuracy, val_ece; /* on validation pairs */
    double threshold;
    int epochs_run, best_epoch;
    size_t n_train, n_val, n_test, n_unseen; /* images per role */
    size_t n_unseen_artists;
    /* the classifier over the index's artists, fitted with the head */
    size_t n_classes;                   /* artists with training images */
    double classifier_val_top1, classifier_val_balanced_top1; /* alone, validation images */
    double fused_val_top1;              /* fused with the head's neighbours */
    double fuse_weight;                 /* the classifier's log-linear weight */
    double unknown_prior;               /* as stored */
} siamidx_train_report;

/*
 * Trains a head on every image of the index (opened for writing) and stores
 * it there, with its validation numbers and its split (seed, held-out
 * images and artists). Takes seconds for ~10,000 images.
 */
siamidx_status siamidx_index_train_head(siamidx_index *idx, const siamidx_train_options *opt,
                                        siamidx_train_report *report, siamidx_error *err);

/*
 * The head answers from this index use: the index's trained head, else the
 * model's default head (model may be NULL), else SIAMIDX_ERR_NO_HEAD. Free
 * with siamidx_head_free.
 */
siamidx_status siamidx_index_head(siamidx_index *idx, const siamidx_model *model,
                                  siamidx_head **out, siamidx_error *err);

/* A metric that could not be measured (no pairs of both kinds, no queries) is NaN,
   never 0; `siamidx eval --json` writes it as null. */
typedef struct siamidx_pair_metrics {
    size_t n_pairs;  /* balanced same/different, artists balanced */
    double auc, accuracy /* at the head's threshold */, eer, tar_at_far1, ece;
} siamidx_pair_metrics;

typedef struct siamidx_attribution_metrics {
    size_t n_queries;
    double top1, top3, balanced; /* balanced: mean over artists of top-1 accuracy */
    double unknown_first;        /* share of queries answered "unknown" first */
    double mean_top_prob;        /* mean probability of the top artist */
} siamidx_attribution_metrics;

typedef struct siamidx_eval_report {
    double threshold;
    int has_unseen;                           /* artists were held out */
    siamidx_pair_metrics seen, unseen;        /* pairs among held-out images */
    siamidx_attribution_metrics seen_attr, unseen_attr; /* against the rest */
} siamidx_eval_report;

/* Evaluates the index's trained head on the images its training held out. */
siamidx_status siamidx_index_evaluate(siamidx_index *idx, siamidx_eval_report *out,
                                      siamidx_error *err);

/* ---- evaluation: the protocol ---- */

/*
 * the evaluation protocol on an index (docs/evaluation.md).
 *
 * Two populations of held-out images: "seen" (the test images the head's
 * split kept out, of artists it trained on) and "unseen" (every image of
 * artists the head never saw: the list given here, else the head's own
 * held-out artists). For each:
 *   pairs        same-artist pairs drawn round-robin over artists, against
 *                two negative sets of the same size, each negative keeping
 *                one image of a positive: (a) with an image of another
 *                artist from the same source, (b) from the same source and
 *                the same top folder of source_path (WikiArt's style);
 *   attribution  top-1 / top-3 / balanced top-1 of seen test images against
 *                the gallery (the head's training and validation images);
 *   open set     the "unknown" share: AUROC of unseen against seen queries,
 *                and how often it outranks every named artist.
 * Every figure overall and per source (source_repo). Unmeasurable figures
 * are NaN.
 */
typedef struct siamidx_protocol_options {
    uint64_t seed;       /* pair draws */
    size_t pairs;        /* same-artist pairs per population; 0: 10,000 */
    const char *const *unseen_artists; /* artists kept out of the head (and the
                                          encoder); NULL: the head's held-out ones */
    size_t n_unseen_artists;
    double unknown_prior; /* >= 0: scores as if the index's classifier had this
                             prior (to choose one); < 0 (init): the index's own */
    siamidx_progress_fn progress; /* queries scored of all (the slow part), now and then */
    void *progress_ctx;
} siamidx_protocol_options;

void siamidx_protocol_options_init(siamidx_protocol_options *opt);

typedef struct siamidx_protocol_verification {
    size_t positives, negatives;
    double auc, eer, tar_at_far1, ece;
} siamidx_protocol_verification;

typedef struct siamidx_protocol_pairs {
    siamidx_protocol_verification same_source; /* negatives (a) */
    siamidx_protocol_verification same_style;  /* negatives (b) */
    size_t style_fallback;  /* (b) negatives drawn as (a): no same-style image by another artist */
    size_t source_fallback; /* negatives of (a) or (b) from another source: none in the anchor's */
} siamidx_protocol_pairs;

typedef struct siamidx_protocol_attribution {
    size_t queries, artists;
    double top1, top3, balanced_top1; /* NaN for unseen queries (no right answer is named) */
    double unknown_first;             /* share where "unknown" outranks every named artist */
    double mean_unknown;              /* mean "unknown" share */
} siamidx_protocol_attribution;

typedef struct siamidx_protocol_group {
    char *source; /* NULL: all sources together */
    size_t seen_images, unseen_images, unseen_artists;
    siamidx_protocol_pairs seen_pairs, unseen_pairs;
    siamidx_protocol_attribution seen_attribution, unseen_attribution;
    double open_set_auroc; /* unknown share: unseen-artist vs indexed-artist queries */
} siamidx_protocol_group;

typedef struct siamidx_protocol_report {
    uint64_t seed;
    size_t pairs;
    size_t gallery_images, gallery_artists;
    size_t n_groups;
    siamidx_protocol_group *groups; /* [0]: overall; then one per source, by name */
} siamidx_protocol_report;

/*
 * Runs the protocol with the index's trained head. Refuses
 * (SIAMIDX_ERR_INVALID_ARGUMENT) an unseen artist the index does not hold,
 * or one the head trained on: any of its images in the head's validation or
 * test split, or more images in the head's training index than the index
 * holds outside the unseen artists.
 */
siamidx_status siamidx_index_evaluate_protocol(siamidx_index *idx,
                                               const siamidx_protocol_options *opt,
                                               siamidx_protocol_report *out, siamidx_error *err);
void siamidx_protocol_report_free(siamidx_protocol_report *r);

#ifdef __cplusplus
}
#endif

#endif /* SIAMIDX_H */

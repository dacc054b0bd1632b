/*
 * vindex.c - the FAISS index: derived state, always rebuilt from the store.
 *
 * The index is an IndexIDMap2 (record ids as FAISS labels) over a factory
 * description chosen from the configured type and the collection size:
 *   flat   "Flat"             exact inner product
 *   hnsw   "HNSW32"
 *   ivf    "IVF<nlist>,Flat"  trained on the stored embeddings
 *   ivfpq  "IVF<nlist>,PQ<m>x<nbits>@<tag>" from the store's trained IVF
 * (ivf/ivfpq fall back to "Flat" until there is enough data to train).
 * Embeddings are L2-normalised, so inner product is cosine similarity.
 *
 * An IVF-PQ index is trained once and its training is durable: the trained,
 * empty FAISS index is a blob in the store ("faiss.ivf", see "the trained
 * IVF" below), and every rebuild adds the records to a copy of it rather
 * than retraining. So a rebuild gives the same codes, and indexes trained
 * from the same IVF (shards built with --ivf-from) hold compatible codes
 * that FAISS's merge_from can join. <tag> (16 hex digits of the blob's
 * SHA-256) names the training in the description and the snapshot, so a
 * snapshot of another training is never taken for this one.
 *
 * A snapshot on disk is named vectors.<store id>.<generation>.<description>.faiss
 * and checked against the store's record of it (see "snapshots" below): the
 * generation is the store state it reflects, so a stale one is caught up
 * from the store's change log (or rebuilt when the log was pruned, when the
 * type changed, or when FAISS cannot remove, as with HNSW). After every
 * sync the vector count must equal the store's record count, else the
 * index is rebuilt.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <stdint.h>

#include <faiss/c_api/AutoTune_c.h>
#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/MetaIndexes_c.h>
#include <faiss/c_api/error_c.h>
#include <faiss/c_api/impl/AuxIndexStructures_c.h>
#include <faiss/c_api/index_factory_c.h>
#include <faiss/c_api/index_io_c.h>

#include "store/faiss_ext.h"
#include "store/vindex.h"
#include "store/store.h"
#include "base/error.h"
#include "base/sha256.h"

#define IVF_MIN_VECTORS 2000   /* fewer: IVF falls back to Flat */

#define ADD_CHUNK 8192

struct sx_vindex {
    FaissIndex *index; /* NULL until first sync/load */
    uint32_t dim;
    uint64_t gen;
    char desc[64];
    uint64_t saved_gen;   /* the verified snapshot on disk this process knows of */
    char saved_desc[64];  /* ("" when none) */
    uint32_t nprobe_default; /* the trained IVF's (0: the rule in tune) */
    uint32_t nprobe_asked;   /* sx_vindex_set_nprobe (0: the default) */
};

static siamidx_status faiss_fail(siamidx_error *err, const char *what) {
    const char *m = faiss_get_last_error();
    return sx_fail(err, SIAMIDX_ERR_BACKEND, "FAISS: %s: %s", what, m ? m : "unknown error");
}

/* Derived state that cannot be trusted is only rebuilt, but say so. */
static void warn_rebuild(const char *why) {
    fprintf(stderr, "siamidx: warning: %s; rebuilding it from the store\n", why);
}

/* ---- choosing the index ------------------------------------------------------------ */

static int ivf_nlist(uint64_t n) {
    double a = 4.0 * sqrt((double)n), b = (double)n / 39.0; /* 39 training points per list */
    int nlist = (int)(a < b ? a : b);
    return nlist < 1 ? 1 : nlist > 65536 ? 65536 : nlist;
}

static int pq_subquantizers(uint32_t dim) {
    for (int m = (int)dim / 8; m > 1; m--) /* ~8 dims per byte-sized code */
        if (dim % (uint32_t)m == 0) return m;
    return 1;
}

/*
 * IVF-PQ's parameters as functions of the vector count and dimension
 * (bench/ivfpq.sh, docs/scale.md: nprobe measured, nlist and m from
 * FAISS's guidance, not swept on the loaded development machine):
 *   nlist   the power of two nearest 2 sqrt(n), at most n / 39 (FAISS's k-means
 *           wants >= 39 points per centroid): ~500 vectors per list at 1M;
 *   m       dim / 8 byte-sized sub-quantizers (32 bytes a 256-d vector);
 *   nprobe  nlist / 32, within [8, 256]: at 100k (16 of 512 lists) recall@10
 *           of the re-ranked search 0.995 of flat's, at 0.2 ms CPU a query;
 *   sample  40 training points per list (k-means wants >= 39), at least
 *           the 39 * 256 the PQ codebooks want, never more than n.
 */
void sx_vindex_ivfpq_params(uint64_t n, uint32_t dim, sx_ivf_info *p) {
    memset(p, 0, sizeof *p);
    double target = 2.0 * sqrt((double)n);
    uint32_t nlist = 1;
    while (nlist < 65536 && (double)nlist * 1.4142 < target) nlist *= 2;
    while (nlist > 1 && (uint64_t)nlist * 39 > n) nlist /= 2;
    p->dim = dim;
    p->nlist = nlist;
    p->m = (uint32_t)pq_subquantizers(dim);
    p->nbits = 8;
    uint32_t probe = nlist / 32;
    p->nprobe = probe < 8 ? 8 : probe > 256 ? 256 : probe;
    if (p->nprobe > nlist) p->nprobe = nlist;
    uint64_t sample = (uint64_t)nlist * 40;
    if (sample < 39 * 256) sample = 39 * 256;
    p->trained_on = sample < n ? sample : n;
    snprintf(p->desc, sizeof p->desc, "IVF%u,PQ%ux%u", p->nlist, p->m, p->nbits);
}

static void want_description(const char *type, uint64_t n, uint32_t dim, const sx_ivf_info *ivf,
                             char *out, size_t cap) {
    if (!strcmp(type, "hnsw"))
        snprintf(out, cap, "HNSW32");
    else if (!strcmp(type, "ivf") && n >= IVF_MIN_VECTORS)
        snprintf(out, cap, "IVF%d,Flat", ivf_nlist(n));
    else if (!strcmp(type, "ivfpq") && ivf) /* the store's training, at any size */
        snprintf(out, cap, "%.40s@%.16s", ivf->desc, ivf->tag);
    else if (!strcmp(type, "ivfpq") && n >= IVFPQ_MIN_VECTORS) { /* an index from before */
        sx_ivf_info p;
        sx_vindex_ivfpq_params(n, dim, &p);
        snprintf(out, cap, "%snp", p.desc);
    } else
        snprintf(out, cap, "Flat");
}

/* Same structure; IVF lists are retrained only once the data doubled their worth.
   A trained IVF (desc@tag) is good only for itself. */
static int good_enough(const char *have, const char *want) {
    if (!strcmp(have, want)) return 1;
    if (strchr(have, '@') || strchr(want, '@')) return 0;
    int a, b;
    const char *ca = strchr(have, ','), *cb = strchr(want, ',');
    if (sscanf(have, "IVF%d,", &a) == 1 && sscanf(want, "IVF%d,", &b) == 1 && ca && cb &&
        !strcmp(ca, cb))
        return b < 2 * a;
    return 0;
}

static uint32_t default_nprobe(const sx_vindex *v, int nlist) {
    if (v->nprobe_default) return v->nprobe_default;
    int probe = nlist / 16 < 8 ? 8 : nlist / 16 > 64 ? 64 : nlist / 16;
    return (uint32_t)probe;
}

static void tune(sx_vindex *v) {
    FaissParameterSpace *ps;
    if (!v->index || faiss_ParameterSpace_new(&ps)) return;
    int nlist;
    if (!strncmp(v->desc, "HNSW", 4))
        faiss_ParameterSpace_set_index_parameter(ps, v->index, "efSearch", 128);
    else if (sscanf(v->desc, "IVF%d", &nlist) == 1) {
        uint32_t probe = v->nprobe_asked ? v->nprobe_asked : default_nprobe(v, nlist);
        faiss_ParameterSpace_set_index_parameter(ps, v->index, "nprobe",
                                                 probe > (uint32_t)nlist ? (uint32_t)nlist : probe);
    }
    faiss_ParameterSpace_free(ps);
}

void sx_vindex_set_nprobe(sx_vindex *v, uint32_t nprobe) {
    v->nprobe_asked = nprobe;
    tune(v);
}

int sx_vindex_is_lossy(const sx_vindex *v) { return v->index && strstr(v->desc, ",PQ") != NULL; }

uint32_t sx_vindex_nprobe(const sx_vindex *v) {
    int nlist;
    if (!v->index || sscanf(v->desc, "IVF%d", &nlist) != 1) return 0;
    uint32_t probe = v->nprobe_asked ? v->nprobe_asked : default_nprobe(v, nlist);
    return probe > (uint32_t)nlist ? (uint32_t)nlist : probe;
}

/* ---- the trained IVF --------------------------------------------------------------------- */

/*
 * The blob "faiss.ivf" in the store's meta table:
 *   "SXIVF1\0\0" | dim nlist m nbits nprobe flags (u32 LE each) | trained_on (u64 LE)
 *   | SHA-256 of the FAISS bytes | their length (u64 LE) | the FAISS bytes
 * The FAISS bytes are FAISS's own serialisation of the trained, empty
 * IndexIDMap2 over IVF<nlist>,PQ<m>x<nbits>. flags bit 0: adopted from another
 * index (build --ivf-from), so never retrained here. It is written in one
 * transaction that logs a rebuild: every derived index (in memory, on disk)
 * of the old training is then stale by generation.
 */
#define IVF_BLOB "faiss.ivf"
#define IVF_MAGIC "SXIVF1\0\0"
#define IVF_HEADER (8 + 6 * 4 + 8 + 32 + 8)
#define IVF_IMPORTED 1u

static void put_le32(uint8_t *p, uint32_t x) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(x >> (8 * i));
}
static void put_le64(uint8_t *p, uint64_t x) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(x >> (8 * i));
}
static uint32_t get_le32(const uint8_t *p) {
    uint32_t x = 0;
    for (int i = 3; i >= 0; i--) x = x << 8 | p[i];
    return x;
}
static uint64_t get_le64(const uint8_t *p) {
    uint64_t x = 0;
    for (int i = 7; i >= 0; i--) x = x << 8 | p[i];
    return x;
}

static void sha256_of(const void *data, size_t len, uint8_t out[32]);

/* Parses and checks a blob; faiss/flen point into it. 0, or -1 with why. */
static int parse_ivf(const void *data, size_t len, sx_ivf_info *info, const uint8_t **faiss,
                     size_t *flen, char *why, size_t cap) {
    const uint8_t *b = data;
    memset(info, 0, sizeof *info);
    if (len < IVF_HEADER || memcmp(b, IVF_MAGIC, 8)) {
        snprintf(why, cap, "trained IVF blob is not one (%zu bytes)", len);
        return -1;
    }
    info->dim = get_le32(b + 8);
    info->nlist = get_le32(b + 12);
    info->m = get_le32(b + 16);
    info->nbits = get_le32(b + 20);
    info->nprobe = get_le32(b + 24);
    info->imported = (get_le32(b + 28) & IVF_IMPORTED) != 0;
    info->trained_on = get_le64(b + 32);
    uint64_t n = get_le64(b + 72);
    if (n != len - IVF_HEADER || !info->dim || !info->nlist || !info->m || !info->nbits ||
        info->nbits > 16 || info->dim % info->m) {
        snprintf(why, cap, "trained IVF blob is malformed");
        return -1;
    }
    uint8_t digest[32];
    sha256_of(b + IVF_HEADER, (size_t)n, digest);
    if (memcmp(digest, b + 40, 32)) {
        snprintf(why, cap, "trained IVF blob is damaged (checksum mismatch)");
        return -1;
    }
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 8; i++) {
        info->tag[2 * i] = hex[digest[i] >> 4];
        info->tag[2 * i + 1] = hex[digest[i] & 15];
    }
    info->tag[16] = 0;
    snprintf(info->desc, sizeof info->desc, "IVF%u,PQ%ux%u", info->nlist, info->m, info->nbits);
    *faiss = b + IVF_HEADER;
    *flen = (size_t)n;
    return 0;
}

siamidx_status sx_vindex_ivf_get(sx_store *st, MDB_txn *txn, sx_ivf_info *info,
                                 siamidx_error *err) {
    const void *data;
    size_t len, flen;
    const uint8_t *faiss;
    siamidx_status s = sx_store_blob_get(st, txn, IVF_BLOB, &data, &len, err);
    if (s) return s;
    char why[160];
    if (parse_ivf(data, len, info, &faiss, &flen, why, sizeof why))
        return sx_fail(err, SIAMIDX_ERR_INDEX_CORRUPT, "%s: %s", sx_store_dir(st), why);
    return SIAMIDX_OK;
}

siamidx_status sx_vindex_ivf_blob(sx_store *st, MDB_txn *txn, void **blob, size_t *len,
                                  siamidx_error *err) {
    *blob = NULL;
    *len = 0;
    const void *data;
    size_t n;
    siamidx_status s = sx_store_blob_get(st, txn, IVF_BLOB, &data, &n, err);
    if (s) return s;
    sx_ivf_info info;
    const uint8_t *faiss;
    size_t flen;
    char why[160];
    if (parse_ivf(data, n, &info, &faiss, &flen, why, sizeof why))
        return sx_fail(err, SIAMIDX_ERR_INDEX_CORRUPT, "%s: %s", sx_store_dir(st), why);
    if (!(*blob = malloc(n))) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "out of memory");
    memcpy(*blob, data, n); /* LMDB's memory lives only as long as txn */
    *len = n;
    return SIAMIDX_OK;
}

siamidx_status sx_vindex_ivf_put(sx_wtxn *w, const void *blob, size_t len, int imported,
                                 siamidx_error *err) {
    sx_ivf_info info;
    const uint8_t *faiss;
    size_t flen;
    char why[160];
    if (parse_ivf(blob, len, &info, &faiss, &flen, why, sizeof why))
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "%s", why);
    uint8_t *copy = malloc(len);
    if (!copy) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "out of memory");
    memcpy(copy, blob, len);
    put_le32(copy + 28, imported ? IVF_IMPORTED : 0);
    siamidx_status s = sx_store_blob_put(w, IVF_BLOB, copy, len, err);
    free(copy);
    if (!s) sx_store_request_rebuild(w);
    return s;
}

/* FAISS's serialisation of idx in memory (malloc'd). */
static int serialise(const FaissIndex *idx, uint8_t **data, size_t *len) {
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f) return -1;
    int rc = faiss_write_index(idx, f);
    if (fclose(f) || rc) {
        free(buf);
        return -1;
    }
    *data = (uint8_t *)buf;
    *len = n;
    return 0;
}

/* A new FaissIndex from the blob's FAISS bytes: an empty, trained id map of dim. */
static siamidx_status index_from_ivf(const uint8_t *faiss, size_t flen, uint32_t dim,
                                     FaissIndex **out, siamidx_error *err) {
    *out = NULL;
    FILE *f = flen ? fmemopen((void *)faiss, flen, "rb") : NULL;
    FaissIndex *idx = NULL;
    int rc = f ? faiss_read_index(f, 0, &idx) : -1;
    if (f) fclose(f);
    if (rc || !idx) return faiss_fail(err, "trained IVF does not load");
    if (faiss_Index_d(idx) != (int)dim || !faiss_IndexIDMap2_cast(idx) ||
        !faiss_Index_is_trained(idx) || faiss_Index_ntotal(idx) != 0) {
        faiss_Index_free(idx);
        return sx_fail(err, SIAMIDX_ERR_INDEX_CORRUPT,
                       "trained IVF is not an empty, trained %u-dimensional id map", dim);
    }
    *out = idx;
    return SIAMIDX_OK;
}

static siamidx_status create(sx_vindex *v, const char *desc, siamidx_error *err) {
    char full[80];
    snprintf(full, sizeof full, "IDMap2,%s", desc);
    FaissIndex *idx = NULL;
    if (faiss_index_factory(&idx, (int)v->dim, full, METRIC_INNER_PRODUCT))
        return faiss_fail(err, full);
    if (v->index) faiss_Index_free(v->index);
    v->index = idx;
    snprintf(v->desc, sizeof v->desc, "%s", desc);
    v->nprobe_default = 0;
    return SIAMIDX_OK;
}

/* desc@tag: a copy of the store's trained IVF, which must be of that tag. */
static siamidx_status create_trained(sx_vindex *v, sx_store *st, MDB_txn *txn, const char *desc,
                                     siamidx_error *err) {
    const void *data;
    size_t len, flen;
    const uint8_t *faiss;
    sx_ivf_info info;
    siamidx_status s = sx_store_blob_get(st, txn, IVF_BLOB, &data, &len, err);
    if (s) return s;
    char why[160], want[64];
    if (parse_ivf(data, len, &info, &faiss, &flen, why, sizeof why))
        return sx_fail(err, SIAMIDX_ERR_INDEX_CORRUPT, "%s: %s", sx_store_dir(st), why);
    snprintf(want, sizeof want, "%.40s@%.16s", info.desc, info.tag);
    if (strcmp(want, desc))
        return sx_fail(err, SIAMIDX_ERR_INDEX_CORRUPT, "trained IVF is %s, not %s", want, desc);
    FaissIndex *idx;
    if ((s = index_from_ivf(faiss, flen, v->dim, &idx, err))) return s;
    if (v->index) faiss_Index_free(v->index);
    v->index = idx;
    snprintf(v->desc, sizeof v->desc, "%s", desc);
    v->nprobe_default = info.nprobe;
    return SIAMIDX_OK;
}

/* ---- training ------------------------------------------------------------------------------ */

typedef struct sample {
    float *x;
    size_t n, cap;
    uint64_t stride, seen;
    uint32_t dim;
    int bad;
} sample;

static int take_sample(void *ctx, const sx_record *r) {
    sample *c = ctx;
    if (c->seen++ % c->stride) return 0;
    if (r->dim != c->dim) return c->bad = 1;
    sx_record_embedding(r, c->x + c->n * c->dim);
    return ++c->n == c->cap;
}

siamidx_status sx_vindex_ivf_train(sx_store *st, MDB_txn *txn, uint32_t dim, void **blob,
                                   size_t *len, siamidx_error *err) {
    *blob = NULL;
    *len = 0;
    uint64_t n = sx_store_count(st, txn);
    if (n < IVFPQ_MIN_VECTORS)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT,
                       "IVF-PQ trains on at least %d vectors, the index holds %llu",
                       IVFPQ_MIN_VECTORS, (unsigned long long)n);
    sx_ivf_info p;
    sx_vindex_ivfpq_params(n, dim, &p);
    /* Every stride-th record in id order: spread over the collection, the same
       sample for the same store (deterministic, so a retrain repeats itself). */
    sample c = {.cap = (size_t)p.trained_on, .stride = n / p.trained_on, .dim = dim};
    if (!c.stride) c.stride = 1;
    c.x = malloc(c.cap * dim * sizeof(float));
    if (!c.x) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "IVF training: out of memory");
    siamidx_status s = sx_store_foreach_record(st, txn, take_sample, &c, err);
    if (!s && c.bad) s = sx_fail(err, SIAMIDX_ERR_INDEX_CORRUPT, "a record's dimension is not %u", dim);
    /* "np": no polysemous training (FAISS's default for PQ codes of 8 bits),
       which reorders codes for Hamming searches siamidx never runs and takes
       most of the training time. */
    char full[80];
    snprintf(full, sizeof full, "IDMap2,%snp", p.desc);
    FaissIndex *idx = NULL;
    uint8_t *fb = NULL;
    size_t flen = 0;
    if (!s && faiss_index_factory(&idx, (int)dim, full, METRIC_INNER_PRODUCT))
        s = faiss_fail(err, full);
    if (!s && faiss_Index_train(idx, (idx_t)c.n, c.x)) s = faiss_fail(err, "IVF-PQ training");
    if (!s && serialise(idx, &fb, &flen)) s = faiss_fail(err, "IVF-PQ serialisation");
    free(c.x);
    if (idx) faiss_Index_free(idx);
    uint8_t *b = s ? NULL : malloc(IVF_HEADER + flen);
    if (!s && !b) s = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "out of memory");
    if (!s) {
        memcpy(b, IVF_MAGIC, 8);
        uint32_t f[6] = {dim, p.nlist, p.m, p.nbits, p.nprobe, 0};
        for (int i = 0; i < 6; i++) put_le32(b + 8 + 4 * i, f[i]);
        put_le64(b + 32, (uint64_t)c.n);
        sha256_of(fb, flen, b + 40);
        put_le64(b + 72, (uint64_t)flen);
        memcpy(b + IVF_HEADER, fb, flen);
        *blob = b;
        *len = IVF_HEADER + flen;
    }
    free(fb);
    return s;
}

int sx_vindex_ivf_outgrown(const sx_ivf_info *info, uint64_t n) {
    sx_ivf_info p;
    sx_vindex_ivfpq_params(n, info->dim, &p);
    return !info->imported && p.nlist >= 2 * info->nlist;
}

/* ---- rebuilding from the store -------------------------------------------------------- */

typedef struct chunk {
    sx_vindex *v;
    float *x;
    int64_t *ids;
    size_t n, cap;
    int training;        /* collecting a training sample: stop when full */
    uint64_t stride, seen; /* the sample takes every stride-th record */
    int failed;
    siamidx_error *err;
} chunk;

static int flush(chunk *c) {
    if (c->n && !c->failed && faiss_Index_add_with_ids(c->v->index, (idx_t)c->n, c->x, c->ids)) {
        faiss_fail(c->err, "add");
        c->failed = 1;
    }
    c->n = 0;
    return c->failed;
}

static int take_record(void *ctx, const sx_record *r) {
    chunk *c = ctx;
    if (c->training && c->seen++ % c->stride) return 0;
    if (r->dim != c->v->dim) {
        sx_fail(c->err, SIAMIDX_ERR_INDEX_CORRUPT, "record %llu has %u dims, the index %u",
                (unsigned long long)r->id, r->dim, c->v->dim);
        c->failed = 1;
        return 1;
    }
    sx_record_embedding(r, c->x + c->n * c->v->dim);
    c->ids[c->n++] = (int64_t)r->id;
    if (c->n < c->cap) return 0;
    return c->training ? 1 : flush(c);
}

static siamidx_status rebuild(sx_vindex *v, sx_store *st, MDB_txn *txn, const char *desc,
                              uint64_t n, siamidx_error *err) {
    int trained = strchr(desc, '@') != NULL;
    siamidx_status s = trained ? create_trained(v, st, txn, desc, err) : create(v, desc, err);
    if (s) return s;
    size_t cap = ADD_CHUNK;
    int nlist = 0;
    int needs_training = !trained && sscanf(desc, "IVF%d", &nlist) == 1;
    if (needs_training) { /* a sample of up to 64 points per list, from the start */
        cap = (size_t)nlist * 64;
        if (!strstr(desc, "PQ") && cap > n) cap = n;
        if (strstr(desc, "PQ") && cap < 256 * 64) cap = 256 * 64;
        if (cap > n) cap = n;
    }
    chunk c = {.v = v, .cap = cap ? cap : 1, .err = err, .training = needs_training};
    c.stride = n / c.cap ? n / c.cap : 1; /* spread the sample over all artists */
    c.x = malloc(c.cap * v->dim * sizeof(float));
    c.ids = malloc(c.cap * sizeof(int64_t));
    if (!c.x || !c.ids) {
        s = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "FAISS rebuild: out of memory");
        goto done;
    }
    if (needs_training) {
        if ((s = sx_store_foreach_record(st, txn, take_record, &c, err)) || c.failed) goto done;
        if (faiss_Index_train(v->index, (idx_t)c.n, c.x)) {
            s = faiss_fail(err, "train");
            goto done;
        }
        c.n = 0;
        c.training = 0;
    }
    if ((s = sx_store_foreach_record(st, txn, take_record, &c, err))) goto done;
    flush(&c);
done:
    if (!s && c.failed) s = err ? err->status : SIAMIDX_ERR_BACKEND;
    free(c.x);
    free(c.ids);
    if (!s) tune(v);
    return s;
}

/* ---- catching up from the change log ------------------------------------------------ */

typedef struct pending {
    int64_t *added, *removed;
    size_t n_added, n_removed;
    int rebuild;
} pending;

static int append(int64_t **a, size_t *n, const uint64_t *src, size_t m) {
    int64_t *p = realloc(*a, (*n + m + 1) * sizeof *p);
    if (!p) return -1;
    for (size_t i = 0; i < m; i++) p[*n + i] = (int64_t)src[i];
    *a = p;
    *n += m;
    return 0;
}

static siamidx_status collect(sx_vindex *v, sx_store *st, MDB_txn *txn, uint64_t to, pending *p,
                              siamidx_error *err) {
    for (uint64_t g = v->gen + 1; g <= to && !p->rebuild; g++) {
        sx_change ch;
        siamidx_error e;
        siamidx_status s = sx_store_get_change(st, txn, g, &ch, &e);
        if (s == SIAMIDX_ERR_NOT_FOUND) {
            p->rebuild = 1;
            break;
        }
        if (s) {
            if (err) *err = e;
            return s;
        }
        if (ch.flags & SX_CHANGE_REBUILD) p->rebuild = 1;
        if (append(&p->added, &p->n_added, ch.added, ch.n_added) ||
            append(&p->removed, &p->n_removed, ch.removed, ch.n_removed)) {
            sx_change_free(&ch);
            return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "change log: out of memory");
        }
        sx_change_free(&ch);
    }
    /* HNSW graphs cannot drop nodes: rebuild instead. */
    if (p->n_removed && !strncmp(v->desc, "HNSW", 4)) p->rebuild = 1;
    return SIAMIDX_OK;
}

static siamidx_status apply(sx_vindex *v, sx_store *st, MDB_txn *txn, const pending *p,
                            siamidx_error *err) {
    if (p->n_removed) {
        FaissIDSelectorBatch *sel;
        if (faiss_IDSelectorBatch_new(&sel, p->n_removed, p->removed))
            return faiss_fail(err, "selector");
        size_t removed;
        int rc = faiss_Index_remove_ids(v->index, (FaissIDSelector *)sel, &removed);
        faiss_IDSelector_free((FaissIDSelector *)sel);
        if (rc) return faiss_fail(err, "remove");
    }
    chunk c = {.v = v, .cap = ADD_CHUNK, .err = err};
    c.x = malloc(c.cap * v->dim * sizeof(float));
    c.ids = malloc(c.cap * sizeof(int64_t));
    siamidx_status s = SIAMIDX_OK;
    if (!c.x || !c.ids) s = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "FAISS update: out of memory");
    for (size_t i = 0; !s && !c.failed && i < p->n_added; i++) {
        sx_record r;
        siamidx_error e;
        siamidx_status rs = sx_store_get_record(st, txn, (uint64_t)p->added[i], &r, &e);
        if (rs == SIAMIDX_ERR_NOT_FOUND) continue; /* removed by a later generation */
        if (rs) {
            if (err) *err = e;
            s = rs;
            break;
        }
        take_record(&c, &r);
    }
    if (!s) flush(&c);
    if (!s && c.failed) s = err ? err->status : SIAMIDX_ERR_BACKEND;
    free(c.x);
    free(c.ids);
    return s;
}

siamidx_status sx_vindex_sync(sx_vindex *v, sx_store *st, MDB_txn *txn, siamidx_error *err) {
    sx_store_meta m;
    siamidx_status s = sx_store_get_meta(st, txn, &m, err);
    if (s) return s;
    if (v->index && v->gen == m.generation) return SIAMIDX_OK;
    uint64_t n = sx_store_count(st, txn);
    char want[64];
    sx_ivf_info ivf;
    siamidx_error e;
    int has_ivf = !strcmp(m.index_type, "ivfpq") && sx_vindex_ivf_get(st, txn, &ivf, &e) == SIAMIDX_OK;
    want_description(m.index_type, n, v->dim, has_ivf ? &ivf : NULL, want, sizeof want);
    pending p = {0};
    p.rebuild = !v->index || v->gen > m.generation || !good_enough(v->desc, want);
    if (!p.rebuild) s = collect(v, st, txn, m.generation, &p, err);
    if (!s) s = p.rebuild ? rebuild(v, st, txn, want, n, err) : apply(v, st, txn, &p, err);
    if (!s && (uint64_t)faiss_Index_ntotal(v->index) != n) {
        /* The log and the vectors disagree with the records: start again from them. */
        char why[160];
        snprintf(why, sizeof why, "FAISS holds %lld vectors, the store %llu records",
                 (long long)faiss_Index_ntotal(v->index), (unsigned long long)n);
        if (!p.rebuild) warn_rebuild(why);
        s = p.rebuild ? sx_fail(err, SIAMIDX_ERR_INDEX_CORRUPT, "%s", why)
                      : rebuild(v, st, txn, want, n, err);
        if (!s && (uint64_t)faiss_Index_ntotal(v->index) != n)
            s = sx_fail(err, SIAMIDX_ERR_INDEX_CORRUPT, "%s after a rebuild", why);
    }
    if (!s) {
        v->gen = m.generation;
        tune(v);
    } else if (v->index) { /* half-applied: forget it, the next sync rebuilds */
        faiss_Index_free(v->index);
        v->index = NULL;
    }
    free(p.added);
    free(p.removed);
    return s;
}

/* ---- merging a shard's codes ------------------------------------------------------------- */

static int cmp_i64(const void *a, const void *b);

/* 1 when the log from v's generation to txn's only added exactly `ids` (any order). */
static int log_added_exactly(sx_vindex *v, sx_store *st, MDB_txn *txn, uint64_t to,
                             int64_t *ids, size_t n, siamidx_error *err, siamidx_status *s) {
    pending p = {0};
    *s = collect(v, st, txn, to, &p, err);
    int same = !*s && !p.rebuild && !p.n_removed && p.n_added == n;
    if (same) {
        qsort(p.added, n, sizeof *p.added, cmp_i64);
        qsort(ids, n, sizeof *ids, cmp_i64);
        same = !memcmp(p.added, ids, n * sizeof *ids);
    }
    free(p.added);
    free(p.removed);
    return same;
}

siamidx_status sx_vindex_merge_from(sx_vindex *v, sx_store *st, MDB_txn *txn, sx_vindex *shard,
                                    sx_id_translate_fn translate, void *ctx, int *merged,
                                    siamidx_error *err) {
    *merged = 0;
    sx_store_meta m;
    siamidx_status s = sx_store_get_meta(st, txn, &m, err);
    if (s) return s;
    /* Codes move only between copies of one training, onto an index that is
       exactly the state before the shard's records were added. */
    int can = v->index && shard->index && strchr(v->desc, '@') && !strcmp(v->desc, shard->desc) &&
              v->gen < m.generation && faiss_Index_ntotal(shard->index) > 0;
    idx_t *map = NULL;
    size_t n = 0;
    int64_t *ids = NULL;
    if (can) {
        faiss_IndexIDMap2_id_map((FaissIndexIDMap2 *)shard->index, &map, &n);
        ids = malloc((n + 1) * sizeof *ids);
        if (!ids) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "merge: out of memory");
        for (size_t i = 0; can && i < n; i++) can = (ids[i] = translate(ctx, map[i])) >= 0;
    }
    int64_t *sorted = can ? malloc((n + 1) * sizeof *sorted) : NULL;
    if (can && !sorted) {
        free(ids);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "merge: out of memory");
    }
    if (can) {
        memcpy(sorted, ids, n * sizeof *ids);
        can = log_added_exactly(v, st, txn, m.generation, sorted, n, err, &s);
    }
    free(sorted);
    char why[256];
    if (!s && can) {
        for (size_t i = 0; i < n; i++) map[i] = ids[i]; /* the shard's labels become ours */
        if (sx_faiss_merge_idmap2(v->index, shard->index, why, sizeof why) == 0) {
            *merged = 1;
            v->gen = m.generation;
            if ((uint64_t)faiss_Index_ntotal(v->index) != sx_store_count(st, txn)) {
                warn_rebuild("FAISS disagrees with the store after a merge");
                faiss_Index_free(v->index); /* the sync below rebuilds it */
                v->index = NULL;
                *merged = 0;
            }
        } else {
            fprintf(stderr, "siamidx: warning: FAISS %s; adding the shard's vectors instead\n", why);
        }
        /* The shard's handle no longer holds its vectors: its next use rebuilds. */
        faiss_Index_free(shard->index);
        shard->index = NULL;
        shard->gen = 0;
    }
    free(ids);
    if (s) return s;
    /* Whatever did not move is added from the records: the same codes, encoded again. */
    return sx_vindex_sync(v, st, txn, err);
}

/* ---- snapshots ------------------------------------------------------------------------ */

/*
 * A snapshot is DIR/vectors.<store id>.<generation>.<desc, ',' as '_'>.faiss,
 * and the store's "snapshot" record (sx_store_record_snapshot) names its
 * generation, vector count and SHA-256. A snapshot is used only when the
 * record names it and every byte matches: a file of another store (the same
 * directory after data.mdb was replaced), a damaged or truncated file, or
 * one FAISS cannot read is never given to FAISS's loader unchecked, and the
 * index is rebuilt from the store instead, with a warning.
 */
static void snapshot_name(const char *dir, const char *store_id, uint64_t gen,
                          const char *desc, char *out, size_t cap) {
    char d[64];
    snprintf(d, sizeof d, "%s", desc);
    for (char *p = d; *p; p++)
        if (*p == ',') *p = '_';
    snprintf(out, cap, "%s/vectors.%s.%llu.%s.faiss", dir, store_id, (unsigned long long)gen, d);
}

/* The whole file in memory (so that what is checked is what is loaded). */
static int read_file(const char *path, uint8_t **data, size_t *len) {
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t cap = 1 << 16, n = 0;
    uint8_t *b = malloc(cap);
    for (size_t got; b && (got = fread(b + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap) {
            uint8_t *p = cap < SIZE_MAX / 2 ? realloc(b, cap * 2) : NULL;
            if (!p) {
                free(b);
                b = NULL;
                break;
            }
            b = p;
            cap *= 2;
        }
    }
    int bad = !b || ferror(f);
    fclose(f);
    if (bad) {
        free(b);
        return -1;
    }
    *data = b;
    *len = n;
    return 0;
}

static void sha256_of(const void *data, size_t len, uint8_t out[32]) {
    sx_sha256 h;
    sx_sha256_init(&h);
    sx_sha256_update(&h, data, len);
    sx_sha256_final(&h, out);
}

enum { SNAP_LOADED, SNAP_NONE, SNAP_REJECTED };

/* 1 when a snapshot of a trained IVF (desc@tag) is not of the store's training
   now: stale (the training was replaced since, by a transaction that logged a
   rebuild), so never used, but not damage either. */
static int other_training(sx_store *st, MDB_txn *txn, const char *desc) {
    sx_ivf_info ivf;
    siamidx_error e;
    char have[64];
    if (sx_vindex_ivf_get(st, txn, &ivf, &e)) return 1;
    snprintf(have, sizeof have, "%.40s@%.16s", ivf.desc, ivf.tag);
    return strcmp(have, desc) != 0;
}

/* Loads the snapshot the store records, checked; why says what was wrong. */
static int load_checked(sx_store *st, MDB_txn *txn, uint32_t dim, FaissIndex **out,
                        sx_snapshot_meta *m, char *why, size_t cap) {
    *out = NULL;
    why[0] = 0;
    siamidx_error e;
    siamidx_status s = sx_store_get_snapshot(st, txn, m, &e);
    if (s == SIAMIDX_ERR_NOT_FOUND || !dim || !*sx_store_id(st)) return SNAP_NONE;
    if (s) {
        snprintf(why, cap, "%s", e.message);
        return SNAP_REJECTED;
    }
    char path[4096];
    snapshot_name(sx_store_dir(st), sx_store_id(st), m->generation, m->desc, path, sizeof path);
    uint8_t *data, digest[32];
    size_t len;
    if (read_file(path, &data, &len)) {
        if (errno == ENOENT) return SNAP_NONE; /* removed: nothing to distrust */
        snprintf(why, cap, "%s: %s", path, strerror(errno));
        return SNAP_REJECTED;
    }
    sha256_of(data, len, digest);
    FaissIndex *idx = NULL;
    if (memcmp(digest, m->sha256, 32)) {
        snprintf(why, cap, "FAISS snapshot %s is damaged (checksum mismatch)", path);
    } else {
        FILE *f = len ? fmemopen(data, len, "rb") : NULL;
        if (!f || faiss_read_index(f, 0, &idx) || !idx)
            snprintf(why, cap, "FAISS snapshot %s does not load", path);
        else if (faiss_Index_d(idx) != (int)dim || !faiss_IndexIDMap2_cast(idx))
            snprintf(why, cap, "FAISS snapshot %s is not a %u-dimensional id map", path, dim);
        else if ((uint64_t)faiss_Index_ntotal(idx) != m->count)
            snprintf(why, cap, "FAISS snapshot %s holds %lld vectors, the store recorded %llu",
                     path, (long long)faiss_Index_ntotal(idx), (unsigned long long)m->count);
        if (f) fclose(f);
    }
    free(data);
    if (!why[0] && idx && strchr(m->desc, '@') && other_training(st, txn, m->desc)) {
        faiss_Index_free(idx);
        return SNAP_NONE;
    }
    if (why[0]) {
        if (idx) faiss_Index_free(idx);
        return SNAP_REJECTED;
    }
    *out = idx;
    return SNAP_LOADED;
}

siamidx_status sx_vindex_load(sx_store *st, MDB_txn *txn, uint32_t dim, sx_vindex **out,
                              siamidx_error *err) {
    sx_vindex *v = calloc(1, sizeof *v);
    if (!v) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "out of memory");
    v->dim = dim;
    *out = v;
    sx_snapshot_meta m;
    char why[SIAMIDX_ERROR_MESSAGE_MAX];
    FaissIndex *idx;
    int r = load_checked(st, txn, dim, &idx, &m, why, sizeof why);
    if (r == SNAP_REJECTED) warn_rebuild(why); /* only derived state: sync rebuilds it */
    if (r != SNAP_LOADED) return SIAMIDX_OK;
    v->index = idx;
    v->gen = v->saved_gen = m.generation;
    snprintf(v->desc, sizeof v->desc, "%s", m.desc);
    snprintf(v->saved_desc, sizeof v->saved_desc, "%s", m.desc);
    sx_ivf_info ivf;
    siamidx_error e;
    if (strchr(m.desc, '@') && sx_vindex_ivf_get(st, txn, &ivf, &e) == SIAMIDX_OK)
        v->nprobe_default = ivf.nprobe; /* load_checked made sure it is this training */
    tune(v);
    return SIAMIDX_OK;
}

int sx_vindex_check_snapshot(sx_store *st, MDB_txn *txn, uint32_t dim, char *why, size_t cap) {
    FaissIndex *idx;
    sx_snapshot_meta m;
    int r = load_checked(st, txn, dim, &idx, &m, why, cap);
    if (idx) faiss_Index_free(idx);
    return r == SNAP_REJECTED;
}

void sx_vindex_free(sx_vindex *v) {
    if (!v) return;
    if (v->index) faiss_Index_free(v->index);
    free(v);
}

static int fsync_path(const char *path, int flags) {
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* Removes every snapshot but `keep` and temporary files of dead writers (we
   hold the writer lock). A reader still loading one keeps its open file. */
static void drop_old(const char *dir, const char *keep) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[4096];
    size_t n;
    while ((e = readdir(d))) {
        int snap = !strncmp(e->d_name, "vectors.", 8) && (n = strlen(e->d_name)) > 14 &&
                   !strcmp(e->d_name + n - 6, ".faiss");
        if (!snap && strncmp(e->d_name, "vectors.tmp.", 12)) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (!keep || strcmp(path, keep)) unlink(path);
    }
    closedir(d);
}

/*
 * Crash order: the file is complete and fsynced under a temporary name,
 * renamed, the directory fsynced, and only then recorded in the store (with
 * the pruning of the log it covers, one transaction). A crash before the
 * record leaves the old record naming the old snapshot, still on disk.
 */
siamidx_status sx_vindex_save(sx_vindex *v, sx_store *st, siamidx_error *err) {
    if (!v->index) return SIAMIDX_OK;
    const char *dir = sx_store_dir(st);
    if (!*sx_store_id(st))
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "%s: store has no id", dir);
    char tmp[4096], path[4096];
    snapshot_name(dir, sx_store_id(st), v->gen, v->desc, path, sizeof path);
    drop_old(dir, NULL); /* stale temporaries first */
    snprintf(tmp, sizeof tmp, "%s/vectors.tmp.%ld", dir, (long)getpid());
    if (faiss_write_index_fname(v->index, tmp)) {
        unlink(tmp);
        return faiss_fail(err, tmp);
    }
    sx_snapshot_meta m = {.generation = v->gen, .count = (uint64_t)faiss_Index_ntotal(v->index)};
    snprintf(m.desc, sizeof m.desc, "%s", v->desc);
    uint8_t *data;
    size_t len;
    if (fsync_path(tmp, O_RDONLY) || read_file(tmp, &data, &len) || rename(tmp, path) ||
        sx_fsync_dir(dir)) {
        siamidx_status s = sx_fail(err, SIAMIDX_ERR_IO, "%s: %s", path, strerror(errno));
        unlink(tmp);
        return s;
    }
    sha256_of(data, len, m.sha256);
    free(data);
    siamidx_status s = sx_store_record_snapshot(st, &m, err);
    if (s) return s;
    v->saved_gen = v->gen;
    snprintf(v->saved_desc, sizeof v->saved_desc, "%s", v->desc);
    drop_old(dir, path);
    return SIAMIDX_OK;
}

int sx_vindex_is_saved(const sx_vindex *v) {
    return !v->index || (v->saved_gen == v->gen && !strcmp(v->saved_desc, v->desc));
}

/* ---- queries ---------------------------------------------------------------------------- */

uint64_t sx_vindex_generation(const sx_vindex *v) { return v->gen; }
const char *sx_vindex_description(const sx_vindex *v) { return v->index ? v->desc : "none"; }
int64_t sx_vindex_ntotal(const sx_vindex *v) { return v->index ? faiss_Index_ntotal(v->index) : 0; }

siamidx_status sx_vindex_search(const sx_vindex *v, const float *q, size_t n, int k,
                                int64_t *ids, float *sims, siamidx_error *err) {
    if (!v->index || faiss_Index_ntotal(v->index) == 0) {
        for (size_t i = 0; i < n * (size_t)k; i++) {
            ids[i] = -1;
            sims[i] = 0;
        }
        return SIAMIDX_OK;
    }
    if (faiss_Index_search(v->index, (idx_t)n, q, k, sims, ids)) return faiss_fail(err, "search");
    return SIAMIDX_OK;
}

int sx_vindex_reconstruct(const sx_vindex *v, int64_t id, float *out) {
    return v->index ? faiss_Index_reconstruct(v->index, id, out) : -1;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

siamidx_status sx_vindex_ids(const sx_vindex *v, int64_t **ids, size_t *n, siamidx_error *err) {
    *ids = NULL;
    *n = 0;
    if (!v->index) return SIAMIDX_OK;
    idx_t *map;
    size_t m;
    faiss_IndexIDMap2_id_map((FaissIndexIDMap2 *)v->index, &map, &m);
    *ids = malloc((m + 1) * sizeof **ids);
    if (!*ids) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "out of memory");
    memcpy(*ids, map, m * sizeof **ids);
    qsort(*ids, m, sizeof **ids, cmp_i64);
    *n = m;
    return SIAMIDX_OK;
}

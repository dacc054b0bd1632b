/* test_faiss_c.c - the FAISS C API as siamidx uses it: IDMap2 over flat, HNSW
 * and IVF indexes; add, search, remove, reconstruct by id, save and load. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <faiss/c_api/AutoTune_c.h>
#include <faiss/c_api/IndexIVF_c.h>
#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/MetaIndexes_c.h>
#include <faiss/c_api/error_c.h>
#include <faiss/c_api/impl/AuxIndexStructures_c.h>
#include <faiss/c_api/index_factory_c.h>
#include <faiss/c_api/index_io_c.h>

#include "check.h"

enum { DIM = 16, N = 1000, K = 5 };

/* Random unit vectors from a fixed seed (xorshift), like embeddings. */
static void make_vectors(float *x, int n, uint64_t seed) {
    for (int i = 0; i < n; i++) {
        float norm = 0;
        for (int j = 0; j < DIM; j++) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            float v = (float)((seed >> 11) * (1.0 / 9007199254740992.0)) - 0.5f;
            x[i * DIM + j] = v;
            norm += v * v;
        }
        norm = sqrtf(norm);
        for (int j = 0; j < DIM; j++)
            x[i * DIM + j] /= norm;
    }
}

static idx_t id_of(int i) { return 1000 + 7 * (idx_t)i; }

/* Every one of the first `count` vectors finds itself first, at similarity ~1. */
static int finds_itself(const FaissIndex *index, const float *x, int first, int count) {
    float dist[K];
    idx_t lab[K];
    int ok = 0;
    for (int i = first; i < first + count; i++) {
        if (faiss_Index_search(index, 1, x + i * DIM, K, dist, lab) != 0) return -1;
        if (lab[0] == id_of(i) && fabsf(dist[0] - 1.0f) < 1e-4f) ok++;
    }
    return ok;
}

/* Random vectors with ids 1000, 1007, ... as the index engineer stores them. */
typedef struct fixture {
    float *x;
    idx_t *ids;
} fixture;

static fixture fixture_new(void) {
    fixture f = {malloc(sizeof(float) * N * DIM), malloc(sizeof(idx_t) * N)};
    make_vectors(f.x, N, 0x9e3779b97f4a7c15ull);
    for (int i = 0; i < N; i++)
        f.ids[i] = id_of(i);
    return f;
}

static void fixture_free(fixture *f) {
    free(f->x);
    free(f->ids);
}

/* Trains if needed, adds every vector under its id, and sets exhaustive search
 * parameters, so that every query must find itself. */
static void fill(FaissIndex *index, const fixture *f, const char *factory) {
    if (!faiss_Index_is_trained(index)) CHECK(faiss_Index_train(index, N, f->x) == 0);
    CHECK(faiss_Index_is_trained(index));
    CHECK(faiss_Index_add_with_ids(index, N, f->x, f->ids) == 0);
    CHECK(faiss_Index_ntotal(index) == N);

    FaissParameterSpace *ps = NULL;
    CHECK(faiss_ParameterSpace_new(&ps) == 0);
    if (strstr(factory, "HNSW"))
        CHECK(faiss_ParameterSpace_set_index_parameter(ps, index, "efSearch", 128) == 0);
    if (strstr(factory, "IVF"))
        CHECK(faiss_ParameterSpace_set_index_parameter(ps, index, "nprobe", 16) == 0);
    CHECK(faiss_ParameterSpace_set_index_parameter(ps, index, "no_such_knob", 1) != 0);
    faiss_ParameterSpace_free(ps);
    CHECK_MSG(finds_itself(index, f->x, 0, 50) == 50, "%s: self search failed", factory);
}

/* Removes ids of rows 0, 1 (batch) and 10..19 (range); returns 0 or FAISS's code. */
static int remove_some(FaissIndex *index) {
    idx_t gone[2] = {id_of(0), id_of(1)};
    FaissIDSelectorBatch *batch = NULL;
    FaissIDSelectorRange *range = NULL;
    size_t removed = 0;
    CHECK(faiss_IDSelectorBatch_new(&batch, 2, gone) == 0);
    int rc = faiss_Index_remove_ids(index, (const FaissIDSelector *)batch, &removed);
    faiss_IDSelector_free((FaissIDSelector *)batch);
    if (rc) return rc;
    CHECK(removed == 2);
    CHECK(faiss_IDSelectorRange_new(&range, id_of(10), id_of(20)) == 0); /* [imin, imax) */
    CHECK(faiss_IDSelector_is_member((const FaissIDSelector *)range, id_of(19)));
    CHECK(!faiss_IDSelector_is_member((const FaissIDSelector *)range, id_of(20)));
    rc = faiss_Index_remove_ids(index, (const FaissIDSelector *)range, &removed);
    faiss_IDSelectorRange_free(range);
    if (rc) return rc;
    CHECK(removed == 10);
    CHECK(faiss_Index_ntotal(index) == N - 12);
    return 0;
}

static void check_removed(const FaissIndex *index, const float *x) {
    CHECK(finds_itself(index, x, 0, 2) == 0);
    CHECK(finds_itself(index, x, 10, 10) == 0);
    CHECK(finds_itself(index, x, 2, 8) == 8);
    CHECK(finds_itself(index, x, 20, 30) == 30);
}

/* Saves, loads, and checks the copy answers as the original. */
static FaissIndex *round_trip(const FaissIndex *index, const float *x, const char *path) {
    FaissIndex *loaded = NULL;
    CHECK(faiss_write_index_fname(index, path) == 0);
    CHECK(faiss_read_index_fname(path, 0, &loaded) == 0);
    remove(path);
    if (!loaded) return NULL;
    CHECK(faiss_Index_ntotal(loaded) == faiss_Index_ntotal(index));
    float d1[K * 4], d2[K * 4];
    idx_t l1[K * 4], l2[K * 4];
    CHECK(faiss_Index_search(index, 4, x + 30 * DIM, K, d1, l1) == 0);
    CHECK(faiss_Index_search(loaded, 4, x + 30 * DIM, K, d2, l2) == 0);
    CHECK(memcmp(l1, l2, sizeof l1) == 0);
    CHECK(memcmp(d1, d2, sizeof d1) == 0);
    return loaded;
}

/* Flat and HNSW wrapped in IDMap2: ids are ours, reconstruct goes by id. */
static void check_idmap2(const char *factory, int can_remove, const char *path) {
    fprintf(stderr, "-- IDMap2 over %s\n", factory);
    fixture f = fixture_new();
    FaissIndex *inner = NULL, *index = NULL;
    CHECK(faiss_index_factory(&inner, DIM, factory, METRIC_INNER_PRODUCT) == 0);
    CHECK(faiss_IndexIDMap2_new(&index, inner) == 0);
    faiss_IndexIDMap2_set_own_fields(index, 1);
    CHECK(faiss_IndexIDMap2_own_fields(index) == 1);
    CHECK(faiss_IndexIDMap2_cast(index) != NULL);
    CHECK(faiss_IndexIDMap2_cast(inner) == NULL);
    CHECK(faiss_IndexIDMap2_sub_index(index) == inner);
    CHECK(faiss_Index_d(index) == DIM);
    CHECK(faiss_Index_metric_type(index) == METRIC_INNER_PRODUCT);
    fill(index, &f, factory);

    idx_t *map = NULL;
    size_t map_size = 0;
    faiss_IndexIDMap2_id_map(index, &map, &map_size);
    CHECK(map_size == N && map && map[N - 1] == id_of(N - 1));

    float rec[DIM];
    CHECK(faiss_Index_reconstruct(index, id_of(123), rec) == 0);
    CHECK(memcmp(rec, f.x + 123 * DIM, sizeof rec) == 0);
    CHECK(faiss_Index_reconstruct(index, 5, rec) != 0); /* not an id we added */
    CHECK(faiss_get_last_error() && *faiss_get_last_error());
    CHECK(faiss_IndexIDMap2_construct_rev_map(index) == 0);

    int rc = remove_some(index);
    if (can_remove) {
        CHECK(rc == 0);
        check_removed(index, f.x);
        CHECK(faiss_Index_reconstruct(index, id_of(0), rec) != 0);
        CHECK(faiss_Index_reconstruct(index, id_of(20), rec) == 0);
        CHECK(memcmp(rec, f.x + 20 * DIM, sizeof rec) == 0);
    } else {
        /* HNSW cannot delete: an error code and a message, never an abort. */
        CHECK(rc != 0);
        CHECK(faiss_get_last_error() && *faiss_get_last_error());
        CHECK(faiss_Index_ntotal(index) == N);
    }

    FaissIndex *loaded = round_trip(index, f.x, path);
    if (loaded) {
        CHECK(faiss_IndexIDMap2_cast(loaded) != NULL);
        CHECK(faiss_Index_reconstruct(loaded, id_of(40), rec) == 0);
        CHECK(memcmp(rec, f.x + 40 * DIM, sizeof rec) == 0);
        CHECK(faiss_Index_reset(loaded) == 0);
        CHECK(faiss_Index_ntotal(loaded) == 0);
        faiss_Index_free(loaded);
    }
    faiss_Index_free(index);
    fixture_free(&f);
}

/*
 * IVF keeps ids itself, so it is used unwrapped: FAISS 1.7.3's IDMap over an
 * IVF mis-maps ids after remove_ids (the IDMap compacts its id table but the
 * IVF does not renumber). Reconstruct needs a direct map, which the C API can
 * only build for sequential ids; both refusals must be clean errors.
 */
static void check_ivf(const char *path) {
    fprintf(stderr, "-- IVF16,Flat\n");
    fixture f = fixture_new();
    FaissIndex *index = NULL;
    CHECK(faiss_index_factory(&index, DIM, "IVF16,Flat", METRIC_INNER_PRODUCT) == 0);
    FaissIndexIVF *ivf = faiss_IndexIVF_cast(index);
    CHECK(ivf != NULL);
    CHECK(!faiss_Index_is_trained(index));
    fill(index, &f, "IVF16,Flat");
    CHECK(faiss_IndexIVF_nlist(ivf) == 16);
    CHECK(faiss_IndexIVF_nprobe(ivf) == 16);
    faiss_IndexIVF_set_nprobe(ivf, 1);
    CHECK(faiss_IndexIVF_nprobe(ivf) == 1);
    faiss_IndexIVF_set_nprobe(ivf, 16);

    float rec[DIM];
    CHECK(faiss_Index_reconstruct(index, id_of(5), rec) != 0);
    CHECK(faiss_get_last_error() && *faiss_get_last_error());
    CHECK(faiss_IndexIVF_make_direct_map(ivf, 1) != 0);
    CHECK(faiss_get_last_error() && *faiss_get_last_error());
    /* The failed call leaves the map's type set, which blocks remove_ids. */
    CHECK(faiss_IndexIVF_make_direct_map(ivf, 0) == 0);

    int rc = remove_some(index);
    CHECK_MSG(rc == 0, "%s", faiss_get_last_error());
    check_removed(index, f.x);
    FaissIndex *loaded = round_trip(index, f.x, path);
    if (loaded) {
        CHECK(faiss_IndexIVF_cast(loaded) != NULL);
        check_removed(loaded, f.x);
        faiss_Index_free(loaded);
    }
    faiss_Index_free(index);
    fixture_free(&f);
}

int main(void) {
    const char *tmpdir = getenv("SIAMIDX_TMP");
    if (!tmpdir || !*tmpdir) tmpdir = "/tmp";
    mkdir(tmpdir, 0777);

    char path[1024];
    snprintf(path, sizeof path, "%s/test_faiss_c.index", tmpdir);
    check_idmap2("Flat", 1, path);
    check_idmap2("HNSW32", 0, path);
    check_ivf(path);

    /* Error paths: a code and a message, never an exception or abort. */
    FaissIndex *bad = NULL;
    CHECK(faiss_index_factory(&bad, DIM, "NoSuchIndexType", METRIC_L2) != 0);
    const char *msg = faiss_get_last_error();
    CHECK(msg && strstr(msg, "NoSuchIndexType"));
    CHECK(faiss_read_index_fname("/nonexistent/siamidx.index", 0, &bad) != 0);
    msg = faiss_get_last_error();
    CHECK(msg && strstr(msg, "/nonexistent/siamidx.index"));

    /* An untrained IVF refuses to add. */
    FaissIndex *ivf = NULL;
    float v[DIM] = {1};
    idx_t id = 1;
    CHECK(faiss_index_factory(&ivf, DIM, "IVF4,Flat", METRIC_L2) == 0);
    CHECK(!faiss_Index_is_trained(ivf));
    CHECK(faiss_Index_add_with_ids(ivf, 1, v, &id) != 0);
    faiss_Index_free(ivf);

    CHECK_DONE();
}

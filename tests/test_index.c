/* test_index.c - the index API over precomputed embeddings: add, search,
   remove, reopen (snapshot catch-up), index types, locking, model checks. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "index_fixture.h"
#include "index/index.h"
#include "store/vindex.h"

#define DIM 32
#define FP "f1f1f1f1"

static char dir[4096];

static float *make_vectors(size_t n, uint64_t seed) { return fixture_unit_vectors(n, DIM, seed); }

static siamidx_status add_range(siamidx_index *idx, const float *v, size_t from, size_t to,
                                int n_artists) {
    size_t n = to - from;
    sx_index_item *items = calloc(n, sizeof *items);
    char (*paths)[64] = calloc(n, 64), (*artists)[32] = calloc(n, 32);
    for (size_t i = 0; i < n; i++) {
        size_t j = from + i;
        snprintf(paths[i], 64, "/img/%zu.jpg", j);
        snprintf(artists[i], 32, "artist_%zu", j % (size_t)n_artists);
        items[i].path = items[i].resolved = paths[i];
        items[i].artist = artists[i];
        items[i].size = j;
        items[i].hash[0] = (uint8_t)j;
        items[i].hash[1] = (uint8_t)(j >> 8);
        items[i].embedding = v + j * DIM;
    }
    siamidx_error err;
    siamidx_status s = sx_index_add_embeddings(idx, items, n, &err);
    if (s) fprintf(stderr, "add: %s\n", err.message);
    free(items);
    free(paths);
    free(artists);
    return s;
}

static siamidx_index *open_idx(const char *type, int read_only, siamidx_status *st) {
    siamidx_index_options o;
    siamidx_index_options_init(&o);
    o.create = 1;
    o.read_only = read_only;
    o.index_type = type;
    siamidx_index *idx = NULL;
    siamidx_error err;
    *st = sx_index_open_raw(dir, FP, DIM, "test", "avg", &o, &idx, &err);
    if (*st) fprintf(stderr, "open: %s\n", err.message);
    return idx;
}

/* Fraction of vectors whose own record comes back first. */
static double self_recall(siamidx_index *idx, const float *v, size_t n) {
    int64_t *ids = malloc(n * 3 * sizeof *ids);
    float *sims = malloc(n * 3 * sizeof *sims);
    siamidx_error err;
    size_t hit = 0;
    if (siamidx_index_search(idx, v, n, 3, ids, sims, &err) == SIAMIDX_OK)
        for (size_t i = 0; i < n; i++) hit += ids[i * 3] == (int64_t)i + 1;
    free(ids);
    free(sims);
    return (double)hit / (double)n;
}

static void test_basic(void) {
    siamidx_status s;
    float *v = make_vectors(300, 1);
    siamidx_index *idx = open_idx(NULL, 0, &s);
    CHECK(s == SIAMIDX_OK);
    CHECK(add_range(idx, v, 0, 100, 7) == SIAMIDX_OK);
    CHECK(add_range(idx, v, 100, 200, 7) == SIAMIDX_OK);
    CHECK(self_recall(idx, v, 200) == 1.0); /* ids 1..200 in insertion order */

    siamidx_query_result r;
    siamidx_error err;
    CHECK(siamidx_index_query_embedding(idx, v + 42 * DIM, 5, &r, &err) == SIAMIDX_OK);
    CHECK(r.n_neighbors == 5 && r.n_artists >= 1 && r.n_artists <= 5);
    if (r.n_neighbors) {
        CHECK(!strcmp(r.neighbors[0].path, "/img/42.jpg"));
        CHECK(fabsf(r.neighbors[0].similarity - 1.0f) < 1e-4f);
        CHECK(!strcmp(r.neighbors[0].artist, "artist_0"));
    }
    double total = 0;
    for (size_t i = 0; i < r.n_artists; i++) {
        total += r.artists[i].probability;
        if (i) CHECK(r.artists[i].probability <= r.artists[i - 1].probability);
    }
    CHECK(total <= 1.0 + 1e-5 && total > 0.5);
    siamidx_query_result_free(&r);

    /* Re-adding a path replaces its record. */
    CHECK(add_range(idx, v, 150, 151, 7) == SIAMIDX_OK);
    siamidx_index_info info;
    CHECK(siamidx_index_info_get(idx, &info, &err) == SIAMIDX_OK);
    CHECK(info.images == 200 && info.n_artists == 7 && info.dim == DIM);
    CHECK(!strcmp(info.index_type, "flat") && !strcmp(info.faiss, "Flat"));
    siamidx_index_info_free(&info);
    CHECK(fixture_problems(idx) == 0);

    /* Removal by path and by artist. */
    const char *gone[] = {"/img/5.jpg", "/img/6.jpg", "/img/nope.jpg"};
    size_t removed = 0;
    CHECK(siamidx_index_remove(idx, gone, 3, &removed, &err) == SIAMIDX_OK && removed == 2);
    CHECK(siamidx_index_remove_artist(idx, "artist_3", &removed, &err) == SIAMIDX_OK);
    CHECK(removed == 28 || removed == 29);
    size_t again = 1;
    CHECK(siamidx_index_remove_artist(idx, "artist_3", &again, &err) == SIAMIDX_ERR_NOT_FOUND);
    CHECK(again == 0);
    CHECK(siamidx_index_info_get(idx, &info, &err) == SIAMIDX_OK);
    CHECK(info.images == 200 - 2 - removed && info.n_artists == 6);
    siamidx_index_info_free(&info);
    int64_t ids[3];
    float sims[3];
    CHECK(siamidx_index_search(idx, v + 5 * DIM, 1, 3, ids, sims, &err) == SIAMIDX_OK);
    CHECK(ids[0] != 6 && sims[0] < 0.999f); /* record 6 (path 5) is gone */
    CHECK(fixture_problems(idx) == 0);

    /* A second writer is refused while we hold the lock. */
    siamidx_index *other = open_idx(NULL, 0, &s);
    CHECK(s == SIAMIDX_ERR_INDEX_LOCKED && other == NULL);
    /* A reader is fine and sees the committed state. */
    siamidx_index *reader = open_idx(NULL, 1, &s);
    CHECK(s == SIAMIDX_OK);
    CHECK(add_range(idx, v, 200, 210, 7) == SIAMIDX_OK);
    CHECK(siamidx_index_search(reader, v + 205 * DIM, 1, 3, ids, sims, &err) == SIAMIDX_OK);
    CHECK(fabsf(sims[0] - 1.0f) < 1e-4f); /* caught up to the new commit */
    siamidx_index_close(reader);
    siamidx_index_close(idx);

    /* Reopen: the snapshot is loaded; a wrong model is refused. */
    char snap[64];
    idx = open_idx(NULL, 1, &s);
    CHECK(s == SIAMIDX_OK);
    CHECK(siamidx_index_info_get(idx, &info, &err) == SIAMIDX_OK);
    MDB_txn *txn;
    sx_snapshot_meta sm;
    CHECK(sx_store_read_begin(sx_index_store(idx), &txn, &err) == SIAMIDX_OK);
    CHECK(sx_store_get_snapshot(sx_index_store(idx), txn, &sm, &err) == SIAMIDX_OK);
    sx_store_read_end(txn);
    snprintf(snap, sizeof snap, "%llu", (unsigned long long)sm.generation);
    CHECK(sm.generation == info.generation && sm.count == info.images);
    siamidx_index_info_free(&info);
    CHECK(fixture_problems(idx) == 0);
    siamidx_index_close(idx);
    siamidx_index *bad = NULL;
    siamidx_index_options o;
    siamidx_index_options_init(&o);
    CHECK(sx_index_open_raw(dir, "0ther", DIM, "x", "avg", &o, &bad, &err) ==
          SIAMIDX_ERR_MODEL_MISMATCH);
    CHECK(strstr(err.message, FP) && strstr(err.message, "0ther"));
    free(v);
}

/* Switching types rebuilds; every type answers and supports removal. */
static void test_types(void) {
    siamidx_status s;
    size_t n = 2500;
    float *v = make_vectors(n, 7);
    siamidx_index *idx = open_idx("flat", 0, &s);
    CHECK(s == SIAMIDX_OK);
    CHECK(add_range(idx, v, 0, n, 13) == SIAMIDX_OK);
    siamidx_index_close(idx);
    const char *types[] = {"hnsw", "ivf", "ivfpq", "flat"};
    const char *want[] = {"HNSW32", "IVF", "Flat", "Flat"}; /* ivfpq: too few vectors */
    for (int t = 0; t < 4; t++) {
        idx = open_idx(types[t], 0, &s);
        CHECK(s == SIAMIDX_OK);
        if (!idx) continue;
        siamidx_index_info info;
        siamidx_error err;
        CHECK(siamidx_index_info_get(idx, &info, &err) == SIAMIDX_OK);
        CHECK_MSG(!strncmp(info.faiss, want[t], strlen(want[t])), "%s: %s", types[t], info.faiss);
        CHECK(!strcmp(info.index_type, types[t]));
        siamidx_index_info_free(&info);
        double recall = self_recall(idx, v, n);
        CHECK_MSG(recall > 0.9, "%s recall %.3f", types[t], recall);
        char path[32];
        snprintf(path, sizeof path, "/img/%d.jpg", 10 + t);
        const char *p = path;
        size_t removed;
        CHECK(siamidx_index_remove(idx, &p, 1, &removed, &err) == SIAMIDX_OK);
        int64_t ids[2];
        float sims[2];
        CHECK(siamidx_index_search(idx, v + (10 + t) * DIM, 1, 2, ids, sims, &err) == 0);
        CHECK(ids[0] != 10 + t + 1);
        CHECK(fixture_problems(idx) == 0);
        siamidx_index_close(idx);
    }
    free(v);
}

/* IVF-PQ once there is enough data to train it: lossy, but it finds most. */
static void test_ivfpq(void) {
    siamidx_status s;
    size_t n = 10000;
    float *v = make_vectors(n, 11);
    siamidx_index *idx = open_idx("ivfpq", 0, &s);
    CHECK(s == SIAMIDX_OK);
    CHECK(add_range(idx, v, 0, n, 13) == SIAMIDX_OK);
    siamidx_index_info info;
    siamidx_error err;
    CHECK(siamidx_index_info_get(idx, &info, &err) == SIAMIDX_OK);
    CHECK_MSG(!strncmp(info.faiss, "IVF", 3) && strstr(info.faiss, "PQ"), "%s", info.faiss);
    siamidx_index_info_free(&info);
    double recall = self_recall(idx, v, 1000);
    CHECK_MSG(recall > 0.3, "ivfpq recall %.3f", recall);
    const char *p = "/img/3.jpg";
    size_t removed;
    CHECK(siamidx_index_remove(idx, &p, 1, &removed, &err) == SIAMIDX_OK && removed == 1);
    CHECK(fixture_problems(idx) == 0);
    siamidx_index_close(idx);
    free(v);
}

static void test_corrupt(void) {
    char path[4200];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    FILE *f = fopen(path, "wb");
    for (int i = 0; i < 100000; i++) fputc((i * 7919) & 0xff, f);
    fclose(f);
    siamidx_status s;
    siamidx_index *idx = open_idx(NULL, 1, &s);
    CHECK(s == SIAMIDX_ERR_INDEX_CORRUPT && !idx);
    idx = open_idx(NULL, 0, &s);
    CHECK(s == SIAMIDX_ERR_INDEX_CORRUPT && !idx);
    siamidx_index *none = NULL;
    siamidx_index_options o;
    siamidx_index_options_init(&o);
    siamidx_error err;
    CHECK(sx_index_open_raw("/nonexistent/idx", NULL, 0, NULL, NULL, &o, &none, &err) ==
          SIAMIDX_ERR_NOT_FOUND);
}

int main(void) {
    const char *tmp = getenv("SIAMIDX_TMP");
    if (!tmp) tmp = "/tmp";
    mkdir(tmp, 0777);
    snprintf(dir, sizeof dir, "%s/test_index.%d", tmp, (int)getpid());
    test_basic();
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    test_types();
    CHECK(system(cmd) == 0);
    test_ivfpq();
    test_corrupt();
    CHECK(system(cmd) == 0);
    CHECK_DONE();
}

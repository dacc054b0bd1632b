/* test_index_threads.c - reader threads query one index handle while a
   writer thread grows the store to several times LMDB's old initial map
   (16 MiB): every read sees whole committed batches only, counts never go
   backwards, every record read back holds exactly the bytes written, and
   nothing crashes (the map must never be remapped under a reader). Also run
   under ThreadSanitizer (ctest label "threads"). */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "index/index.h"
#include "store/store.h"

#define DIM 2048   /* 8 KiB a record */
#define BATCH 200
#define BATCHES 40 /* 8000 records, ~66 MiB: four times the old 16 MiB map */
#define READERS 3

static char dir[4096];
static siamidx_index *idx;
static atomic_int writer_done;
static atomic_int failures;

/* Record i's embedding: a deterministic unit vector (also its own query). */
static void vector_of(size_t i, float *v) {
    uint64_t s = i * 0x9e3779b97f4a7c15ull + 1;
    double norm = 0;
    for (int d = 0; d < DIM; d++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        v[d] = (float)((s >> 40) & 0xffffff) / (float)0xffffff - 0.5f;
        norm += v[d] * v[d];
    }
    for (int d = 0; d < DIM; d++) v[d] /= (float)sqrt(norm);
}

static void fail(const char *what, long a, long b) {
    fprintf(stderr, "FAIL: %s (%ld, %ld)\n", what, a, b);
    atomic_fetch_add(&failures, 1);
}

static void *writer(void *arg) {
    (void)arg;
    float *emb = malloc((size_t)BATCH * DIM * sizeof *emb);
    sx_index_item items[BATCH];
    char paths[BATCH][32];
    for (size_t b = 0; b < BATCHES; b++) {
        memset(items, 0, sizeof items);
        for (size_t j = 0; j < BATCH; j++) {
            size_t i = b * BATCH + j;
            snprintf(paths[j], sizeof paths[j], "/t/%zu.jpg", i);
            vector_of(i, emb + j * DIM);
            items[j].path = items[j].resolved = paths[j];
            items[j].artist = j % 2 ? "odd" : "even";
            memcpy(items[j].hash, &i, sizeof i);
            items[j].embedding = emb + j * DIM;
        }
        siamidx_error err;
        if (sx_index_add_embeddings(idx, items, BATCH, &err)) {
            fprintf(stderr, "add: %s\n", err.message);
            fail("add", (long)b, 0);
            break;
        }
    }
    free(emb);
    atomic_store(&writer_done, 1);
    return NULL;
}

/* One store read: whole batches only, never fewer than before, and the
   bytes of a committed record are the ones written. */
static void check_store(sx_store *st, uint64_t *last, uint64_t *seed, float *want, float *have) {
    MDB_txn *txn;
    siamidx_error err;
    if (sx_store_read_begin(st, &txn, &err)) {
        fail("read_begin", 0, 0);
        return;
    }
    uint64_t n = sx_store_count(st, txn);
    if (n % BATCH) fail("a half-committed batch is visible", (long)n, BATCH);
    if (n < *last) fail("the record count went backwards", (long)n, (long)*last);
    *last = n;
    for (int probe = 0; n && probe < 4; probe++) {
        *seed = *seed * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t id = 1 + (*seed >> 33) % n; /* ids 1..n in commit order */
        sx_record r;
        if (sx_store_get_record(st, txn, id, &r, &err)) {
            fail("committed record missing", (long)id, (long)n);
            continue;
        }
        usleep(1000); /* hold the pointers into the map a while, as a slow reader would */
        vector_of(id - 1, want);
        sx_record_embedding(&r, have);
        char path[32];
        snprintf(path, sizeof path, "/t/%llu.jpg", (unsigned long long)(id - 1));
        if (r.dim != DIM || strcmp(r.resolved, path) || memcmp(want, have, DIM * sizeof *want))
            fail("record bytes differ from what was written", (long)id, 0);
    }
    sx_store_read_end(txn);
}

static void *reader(void *arg) {
    uint64_t seed = (uint64_t)(uintptr_t)arg, last = 0;
    float *want = malloc(DIM * sizeof *want), *have = malloc(DIM * sizeof *have);
    sx_store *st = sx_index_store(idx);
    int queries = 0;
    while (!atomic_load(&writer_done) || queries < 5) {
        check_store(st, &last, &seed, want, have);
        if (!last || (seed >> 40) % 4) continue; /* a search every fourth round */
        size_t i = (size_t)(seed >> 20) % last;
        vector_of(i, want);
        int64_t ids[3];
        float sims[3];
        siamidx_error err;
        if (siamidx_index_search(idx, want, 1, 3, ids, sims, &err))
            fail("search", (long)i, 0);
        else if (ids[0] != (int64_t)i + 1 || fabsf(sims[0] - 1.0f) > 1e-4f)
            fail("search did not find the record itself", (long)i, (long)ids[0]);
        queries++;
    }
    free(want);
    free(have);
    return NULL;
}

int main(void) {
    const char *tmp = getenv("SIAMIDX_TMP");
    if (!tmp) tmp = "/tmp";
    mkdir(tmp, 0777);
    snprintf(dir, sizeof dir, "%s/test_index_threads.%d", tmp, (int)getpid());
    siamidx_index_options o;
    siamidx_index_options_init(&o);
    o.create = 1;
    siamidx_error err;
    CHECK(sx_index_open_raw(dir, "7h7h7h7h", DIM, "test", "avg", &o, &idx, &err) == 0);
    if (!idx) CHECK_DONE();
    pthread_t w, r[READERS];
    for (int i = 0; i < READERS; i++)
        CHECK(pthread_create(&r[i], NULL, reader, (void *)(uintptr_t)(i + 1)) == 0);
    CHECK(pthread_create(&w, NULL, writer, NULL) == 0);
    pthread_join(w, NULL);
    for (int i = 0; i < READERS; i++) pthread_join(r[i], NULL);
    CHECK(atomic_load(&failures) == 0);

    MDB_txn *txn;
    sx_store *st = sx_index_store(idx);
    CHECK(sx_store_read_begin(st, &txn, &err) == SIAMIDX_OK);
    CHECK(sx_store_count(st, txn) == (uint64_t)BATCH * BATCHES);
    sx_store_read_end(txn);
    CHECK_MSG(sx_store_file_bytes(st) > (64u << 20), "data.mdb has %llu bytes",
              (unsigned long long)sx_store_file_bytes(st));
    size_t problems = 99;
    CHECK(siamidx_index_verify(idx, NULL, NULL, &problems, &err) == SIAMIDX_OK && !problems);
    siamidx_index_close(idx);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    CHECK_DONE();
}

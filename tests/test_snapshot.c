/* test_snapshot.c - the FAISS snapshot is trusted only for its own store and
   only intact: a snapshot left by another store in the same directory, or a
   damaged, truncated, empty or foreign file in its place, is rebuilt from
   LMDB (queries answer from the store's own vectors, verify says so, the
   next writer repairs it), never loaded blindly, never a crash. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "index_fixture.h"
#include "index/index.h"
#include "store/store.h"

#define DIM 32
#define FP "5a5a5a5a"

static char dir[4096];

static float *make_vectors(size_t n, uint64_t seed) { return fixture_unit_vectors(n, DIM, seed); }

static siamidx_index *open_idx(int read_only) { return fixture_open_raw(dir, FP, DIM, read_only); }

/* n vectors in batches of 100 (one generation each), paths /img/<i>.jpg. */
static void add_all(siamidx_index *idx, const float *v, size_t n) {
    for (size_t from = 0; from < n; from += 100) {
        size_t m = n - from < 100 ? n - from : 100;
        sx_index_item items[100];
        char paths[100][32];
        memset(items, 0, sizeof items);
        for (size_t i = 0; i < m; i++) {
            snprintf(paths[i], 32, "/img/%zu.jpg", from + i);
            items[i].path = items[i].resolved = paths[i];
            items[i].artist = i % 2 ? "odd" : "even";
            items[i].hash[0] = (uint8_t)(from + i);
            items[i].hash[1] = (uint8_t)((from + i) >> 8);
            items[i].embedding = v + (from + i) * DIM;
        }
        siamidx_error err;
        CHECK(sx_index_add_embeddings(idx, items, m, &err) == SIAMIDX_OK);
    }
}

/* Fraction of vectors that find themselves (record id i + 1) at similarity 1. */
static double self_recall(siamidx_index *idx, const float *v, size_t n) {
    size_t hit = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t ids[2];
        float sims[2];
        siamidx_error err;
        if (siamidx_index_search(idx, v + i * DIM, 1, 2, ids, sims, &err) == SIAMIDX_OK)
            hit += ids[0] == (int64_t)i + 1 && fabsf(sims[0] - 1.0f) < 1e-4f;
    }
    return (double)hit / (double)n;
}

/* The one snapshot file in dir (path into out), 0 when there is none. */
static int snapshot_file(char *out, size_t cap) {
    DIR *d = opendir(dir);
    int found = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (!strncmp(e->d_name, "vectors.", 8) && n > 6 && !strcmp(e->d_name + n - 6, ".faiss")) {
            snprintf(out, cap, "%s/%s", dir, e->d_name);
            found++;
        }
    }
    if (d) closedir(d);
    return found;
}

static void rm(const char *name) {
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    unlink(p);
}

/* Store A, then data.mdb and lock.mdb deleted, then store B with as many
   generations: B must answer from B's vectors, not A's snapshot. */
static void test_foreign_store(const float *a, const float *b, size_t n) {
    siamidx_index *idx = open_idx(0);
    CHECK(idx != NULL);
    if (!idx) return;
    add_all(idx, a, n);
    siamidx_index_close(idx);
    char snap_a[4200], snap[4200];
    CHECK(snapshot_file(snap_a, sizeof snap_a) == 1);
    rm("data.mdb");
    rm("lock.mdb");
    idx = open_idx(0);
    add_all(idx, b, n);
    CHECK(self_recall(idx, b, n) == 1.0);
    siamidx_index_close(idx);
    CHECK(snapshot_file(snap, sizeof snap) == 1 && strcmp(snap, snap_a)); /* A's is gone */

    idx = open_idx(1);
    double r = self_recall(idx, b, n);
    CHECK_MSG(r == 1.0, "store B answered from its own vectors for %.3f of them", r);
    CHECK(fixture_problems(idx) == 0);
    siamidx_index_close(idx);
}

typedef enum { FLIP_BYTE, TRUNCATE, EMPTY, JPEG } damage;

static void spoil(const char *path, damage how) {
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL);
    if (!f) return;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    if (how == FLIP_BYTE) { /* one byte of the vectors: FAISS itself would load it */
        fseek(f, size - 200, SEEK_SET);
        int c = fgetc(f);
        fseek(f, size - 200, SEEK_SET);
        fputc(c ^ 0x5a, f);
    }
    fclose(f);
    if (how == TRUNCATE) CHECK(truncate(path, size / 2) == 0);
    if (how == EMPTY) CHECK(truncate(path, 0) == 0);
    if (how == JPEG) {
        f = fopen(path, "wb");
        const unsigned char soi[] = {0xff, 0xd8, 0xff, 0xe0, 0, 16, 'J', 'F', 'I', 'F', 0};
        fwrite(soi, 1, sizeof soi, f);
        for (int i = 0; i < 5000; i++) fputc((i * 131) & 0xff, f);
        fclose(f);
    }
}

static void test_damaged(const float *b, size_t n, damage how) {
    char snap[4200];
    CHECK(snapshot_file(snap, sizeof snap) == 1);
    spoil(snap, how);
    siamidx_index *idx = open_idx(1); /* a reader: rebuilds in memory, warns */
    CHECK(idx != NULL);
    if (!idx) return;
    double r = self_recall(idx, b, n);
    CHECK_MSG(r == 1.0, "damage %d: recall %.3f", (int)how, r);
    CHECK_MSG(fixture_problems(idx) >= 1, "damage %d: verify saw nothing", (int)how);
    siamidx_index_close(idx);
    idx = open_idx(0); /* a writer repairs it on close */
    CHECK(self_recall(idx, b, n) == 1.0);
    siamidx_index_close(idx);
    idx = open_idx(1);
    CHECK(fixture_problems(idx) == 0);
    CHECK(self_recall(idx, b, n) == 1.0);
    siamidx_index_close(idx);
}

int main(void) {
    const char *tmp = getenv("SIAMIDX_TMP");
    if (!tmp) tmp = "/tmp";
    mkdir(tmp, 0777);
    snprintf(dir, sizeof dir, "%s/test_snapshot.%d", tmp, (int)getpid());
    size_t n = 300;
    float *a = make_vectors(n, 1), *b = make_vectors(n, 2);
    test_foreign_store(a, b, n);
    for (int how = FLIP_BYTE; how <= JPEG; how++) test_damaged(b, n, (damage)how);
    free(a);
    free(b);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    CHECK_DONE();
}

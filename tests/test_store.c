/* test_store.c - the LMDB store: records and lookups, artists, the change log,
   blobs, map growth, and damage that verify must find (never a crash). */
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "store/store.h"

#define DIM 1024

typedef struct batch {
    size_t from, to;
    const float *emb;
    int delete_from; /* also delete ids [delete_from, delete_from + 3) when > 0 */
} batch;

static siamidx_status put_batch(sx_wtxn *w, void *ctx, siamidx_error *err) {
    batch *b = ctx;
    for (size_t i = b->from; i < b->to; i++) {
        char path[64], artist[32];
        snprintf(path, sizeof path, "/p/%zu.jpg", i);
        snprintf(artist, sizeof artist, "artist %zu", i % 5);
        sx_record r = {.size = i, .mtime_ns = (int64_t)i * 7, .path = path + 1, .resolved = path,
                       .title = i % 2 ? "a title" : NULL, .dim = DIM, .embedding = b->emb};
        memset(r.hash, 0, 32);
        memcpy(r.hash, &i, sizeof i);
        siamidx_status s = sx_store_put_record(w, &r, artist, err);
        if (s) return s;
    }
    for (int k = 0; b->delete_from > 0 && k < 3; k++) {
        siamidx_status s = sx_store_delete_record(w, (uint64_t)(b->delete_from + k), err);
        if (s) return s;
    }
    return sx_store_blob_put(w, "head", "weights", 7, err);
}

/* The same records as put_batch, for a range of one batch. */
static siamidx_status put_range(sx_wtxn *w, void *ctx, size_t from, size_t to,
                                siamidx_error *err) {
    const batch *whole = ctx;
    batch part = {whole->from + from, whole->from + to, whole->emb, 0};
    return put_batch(w, &part, err);
}

static void count_problem(void *ctx, const char *p) {
    (void)p;
    (*(int *)ctx)++;
}

int main(void) {
    const char *tmp = getenv("SIAMIDX_TMP");
    if (!tmp) tmp = "/tmp";
    mkdir(tmp, 0777);
    char dir[4096], cmd[4200];
    snprintf(dir, sizeof dir, "%s/test_store.%d", tmp, (int)getpid());
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);

    sx_store *st;
    siamidx_error err;
    CHECK(sx_store_open(dir, 1, 0, &st, &err) == SIAMIDX_ERR_NOT_FOUND);
    CHECK(sx_store_open(dir, 0, 1, &st, &err) == SIAMIDX_OK);
    float *emb = calloc(DIM, sizeof *emb);
    for (int i = 0; i < DIM; i++) emb[i] = (float)i / DIM;

    /* 6000 records of 4 KiB: past the 16 MiB the map once started with. */
    for (size_t from = 0; from < 6000; from += 1000) {
        batch b = {from, from + 1000, emb, from == 1000 ? 10 : 0};
        CHECK(sx_store_write(st, put_batch, &b, &err) == SIAMIDX_OK);
    }
    MDB_txn *txn;
    CHECK(sx_store_read_begin(st, &txn, &err) == SIAMIDX_OK);
    CHECK(sx_store_count(st, txn) == 5997);
    CHECK(sx_store_file_bytes(st) > (16u << 20));
    sx_store_meta m;
    CHECK(sx_store_get_meta(st, txn, &m, &err) == SIAMIDX_OK);
    CHECK(m.generation == 6 && m.next_id == 6001);

    uint64_t id;
    sx_record r;
    CHECK(sx_store_find_path(st, txn, "/p/42.jpg", &id, &err) == SIAMIDX_OK && id == 43);
    CHECK(sx_store_get_record(st, txn, id, &r, &err) == SIAMIDX_OK);
    CHECK(!strcmp(r.path, "p/42.jpg") && !strcmp(r.title, "") && r.size == 42 && r.dim == DIM);
    float back[DIM];
    sx_record_embedding(&r, back);
    CHECK(!memcmp(back, emb, sizeof back));
    CHECK(sx_store_find_path(st, txn, "/p/9.jpg", &id, &err) == SIAMIDX_ERR_NOT_FOUND);
    uint8_t h[32] = {0};
    size_t i43 = 43;
    memcpy(h, &i43, sizeof i43);
    CHECK(sx_store_find_hash(st, txn, h, &id, &err) == SIAMIDX_OK && id == 44);
    uint32_t aid;
    const char *name;
    uint64_t count;
    CHECK(sx_store_artist_id(st, txn, "artist 3", &aid, &err) == SIAMIDX_OK);
    CHECK(sx_store_artist_name(st, txn, aid, &name, &count, &err) == SIAMIDX_OK);
    CHECK(!strcmp(name, "artist 3") && count == 1200);

    sx_change c;
    CHECK(sx_store_get_change(st, txn, 2, &c, &err) == SIAMIDX_OK);
    CHECK(c.n_added == 1000 && c.n_removed == 3 && c.removed[0] == 10 && c.added[0] == 1001);
    sx_change_free(&c);
    const void *blob;
    size_t len;
    CHECK(sx_store_blob_get(st, txn, "head", &blob, &len, &err) == SIAMIDX_OK && len == 7 &&
          !memcmp(blob, "weights", 7));
    CHECK(sx_store_blob_get(st, txn, "nope", &blob, &len, &err) == SIAMIDX_ERR_NOT_FOUND);
    size_t problems = 99;
    CHECK(sx_store_verify(st, txn, NULL, NULL, &problems, &err) == SIAMIDX_OK && problems == 0);
    sx_store_read_end(txn);

    CHECK(sx_store_prune_changes(st, 3, &err) == SIAMIDX_OK);
    CHECK(sx_store_read_begin(st, &txn, &err) == SIAMIDX_OK);
    CHECK(sx_store_get_change(st, txn, 3, &c, &err) == SIAMIDX_ERR_NOT_FOUND);
    CHECK(sx_store_get_change(st, txn, 4, &c, &err) == SIAMIDX_OK);
    sx_change_free(&c);
    sx_store_read_end(txn);
    sx_store_close(st);

    /* Damage behind the store's back: a garbled record, a dangling path lookup. */
    MDB_env *env;
    MDB_txn *t;
    MDB_dbi recs, paths;
    CHECK(mdb_env_create(&env) == 0);
    mdb_env_set_maxdbs(env, 16);
    CHECK(mdb_env_open(env, dir, 0, 0666) == 0);
    CHECK(mdb_txn_begin(env, NULL, 0, &t) == 0);
    CHECK(mdb_dbi_open(t, "records", 0, &recs) == 0 && mdb_dbi_open(t, "by_path", 0, &paths) == 0);
    uint8_t key[8] = {0, 0, 0, 0, 0, 0, 0, 50};
    MDB_val k = {8, key}, v = {5, "short"};
    CHECK(mdb_put(t, recs, &k, &v, 0) == 0);
    MDB_val pk = {9, "/p/7.jpg"};
    pk.mv_size = strlen("/p/7.jpg");
    CHECK(mdb_del(t, paths, &pk, NULL) == 0);
    CHECK(mdb_txn_commit(t) == 0);
    mdb_env_close(env);

    CHECK(sx_store_open(dir, 1, 0, &st, &err) == SIAMIDX_OK);
    CHECK(sx_store_read_begin(st, &txn, &err) == SIAMIDX_OK);
    CHECK(sx_store_get_record(st, txn, 50, &r, &err) == SIAMIDX_ERR_INDEX_CORRUPT);
    int seen = 0;
    CHECK(sx_store_verify(st, txn, count_problem, &seen, &problems, &err) == SIAMIDX_OK);
    CHECK_MSG(problems >= 2 && (size_t)seen == problems, "problems %zu", problems);
    sx_store_read_end(txn);
    sx_store_close(st);

    /* A foreign LMDB environment (no siamidx tables) is refused. */
    CHECK(system(cmd) == 0);
    mkdir(dir, 0777);
    CHECK(mdb_env_create(&env) == 0);
    CHECK(mdb_env_open(env, dir, 0, 0666) == 0);
    MDB_dbi main_db;
    CHECK(mdb_txn_begin(env, NULL, 0, &t) == 0 && mdb_dbi_open(t, NULL, 0, &main_db) == 0);
    MDB_val fk = {3, "foo"}, fv = {3, "bar"};
    CHECK(mdb_put(t, main_db, &fk, &fv, 0) == 0 && mdb_txn_commit(t) == 0);
    mdb_env_close(env);
    CHECK(sx_store_open(dir, 1, 0, &st, &err) == SIAMIDX_ERR_INDEX_CORRUPT);
    CHECK(sx_store_open(dir, 0, 1, &st, &err) == SIAMIDX_ERR_INDEX_CORRUPT);

    /* A batch too big for one LMDB transaction (MDB_TXN_FULL, here by the test
       hook's limit of 500 writes) is committed in halves, each consistent;
       one item over the limit is a clear error, not a map to grow. */
    CHECK(system(cmd) == 0);
    setenv("SIAMIDX_TEST_TXN_PUTS", "500", 1);
    CHECK(sx_store_open(dir, 0, 1, &st, &err) == SIAMIDX_OK);
    batch big = {0, 1000, emb, 0}; /* ~6 writes a record: ~6000 in all */
    siamidx_status split = sx_store_write_range(st, put_range, &big, 0, 1000, &err);
    CHECK_MSG(split == SIAMIDX_OK, "%s", err.message);
    CHECK(sx_store_read_begin(st, &txn, &err) == SIAMIDX_OK);
    CHECK(sx_store_count(st, txn) == 1000);
    CHECK(sx_store_get_meta(st, txn, &m, &err) == SIAMIDX_OK);
    CHECK_MSG(m.generation >= 16 && m.next_id == 1001, "generation %llu",
              (unsigned long long)m.generation); /* >= 16 transactions of <= 64 records */
    CHECK(sx_store_verify(st, txn, NULL, NULL, &problems, &err) == SIAMIDX_OK && problems == 0);
    sx_store_read_end(txn);
    sx_store_close(st);
    setenv("SIAMIDX_TEST_TXN_PUTS", "3", 1);
    CHECK(sx_store_open(dir, 0, 0, &st, &err) == SIAMIDX_OK);
    batch one = {5000, 5001, emb, 0};
    CHECK(sx_store_write_range(st, put_range, &one, 0, 1, &err) == SIAMIDX_ERR_BACKEND);
    CHECK(strstr(err.message, "too big") != NULL);
    sx_store_close(st);
    unsetenv("SIAMIDX_TEST_TXN_PUTS");

    /* A map sized by SIAMIDX_MAP_SIZE: filling it is a clear error that names
       the variable, the failed batch leaves nothing behind, and a bad value is
       refused. */
    CHECK(system(cmd) == 0);
    setenv("SIAMIDX_MAP_SIZE", "2M", 1);
    CHECK(sx_store_open(dir, 0, 1, &st, &err) == SIAMIDX_OK);
    siamidx_status full = SIAMIDX_OK;
    size_t from = 0;
    for (; from < 2000 && !full; from += 100) {
        batch b = {from, from + 100, emb, 0};
        full = sx_store_write(st, put_batch, &b, &err);
    }
    CHECK_MSG(full == SIAMIDX_ERR_IO && strstr(err.message, "SIAMIDX_MAP_SIZE") &&
                  strstr(err.message, "full"),
              "status %d: %s", (int)full, err.message);
    CHECK(sx_store_read_begin(st, &txn, &err) == SIAMIDX_OK);
    CHECK(sx_store_count(st, txn) == from - 100); /* every batch but the failed one */
    sx_store_read_end(txn);
    sx_store_close(st);
    setenv("SIAMIDX_MAP_SIZE", "lots", 1);
    CHECK(sx_store_open(dir, 1, 0, &st, &err) == SIAMIDX_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "SIAMIDX_MAP_SIZE") != NULL);
    unsetenv("SIAMIDX_MAP_SIZE");

    /* Address space short of the default 1 TiB map (ulimit -v): a smaller map,
       not a failure. In a child, so the limit stays there; not under ASan or
       TSan, whose shadow memory needs terabytes of address space itself. */
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
    fflush(NULL);
    pid_t child = fork();
    if (child == 0) {
        struct rlimit lim = {(rlim_t)64 << 30, (rlim_t)64 << 30};
        if (setrlimit(RLIMIT_AS, &lim) != 0) _exit(2);
        sx_store *small;
        siamidx_error e;
        if (sx_store_open(dir, 1, 0, &small, &e) != SIAMIDX_OK) {
            fprintf(stderr, "open under a 64 GiB address-space limit: %s\n", e.message);
            _exit(1);
        }
        MDB_txn *t;
        int ok = sx_store_read_begin(small, &t, &e) == SIAMIDX_OK && sx_store_count(small, t) > 0;
        if (ok) sx_store_read_end(t);
        sx_store_close(small);
        _exit(ok ? 0 : 3);
    }
    int status = -1;
    CHECK(child > 0 && waitpid(child, &status, 0) == child);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "a store under an address-space limit: child status %d", status);
#endif

    free(emb);
    CHECK(system(cmd) == 0);
    CHECK_DONE();
}

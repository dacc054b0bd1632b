/*
 * store.c - the LMDB store: the index's source of truth.
 *
 * Named databases (keys big-endian so that cursors walk them in id order):
 *   meta          "magic" "format" "store_id" "fingerprint" "arch" "pool" "dim"
 *                 "index_type" "generation" "next_id" "next_artist",
 *                 "shard" (u32 index, u32 count: a `build --shard` index; absent otherwise),
 *                 "snapshot" (the FAISS snapshot on disk: generation, vector
 *                 count, SHA-256, factory string), "blob/NAME" (named blobs,
 *                 e.g. a trained head)
 *   records       id(u64)        -> encoded record (see encode_record)
 *   by_path       resolved path  -> id   (paths over 480 bytes: "#"+sha256 hex)
 *   by_hash       sha256(32)     -> ids  (DUPSORT: identical images)
 *   by_artist     artist(u32)    -> ids  (DUPSORT)
 *   artists       artist(u32)    -> u64 count, name, NUL
 *   artist_names  name           -> artist(u32)
 *   changes       generation(u64)-> u32 flags, u32 n_added, u32 n_removed, ids
 *
 * Every write goes through sx_store_write: one transaction, logged under
 * generation+1 when it changed records, so the FAISS snapshot can catch up
 * incrementally.
 *
 * The map is sized once, at open, and never changed: LMDB forbids
 * mdb_env_set_mapsize while any thread of the process has a transaction,
 * and readers of a shared handle always may. The default is large (1 TiB
 * on 64-bit: address space only, the file grows as data is written), and
 * SIAMIDX_MAP_SIZE overrides it; a full map is a clear error.
 *
 * LMDB also forbids opening one environment twice in a process (closing the
 * second would drop the first's fcntl locks, and another process's
 * mdb_reader_check would then free our readers' slots under them). So the
 * process keeps one MDB_env per index directory (by device and inode),
 * shared by every handle on it and counted; that is the library's only
 * process-wide state.
 */
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store.h"
#include "base/sha256.h"
#include "base/error.h"

#define STORE_MAGIC "siamidx index"
#define RECORD_MAGIC 0x31525853u /* "SXR1" */
#define RECORD_HEADER 72
/* "SXR2": SXR1 plus two strings (source_repo, source_path), written only
   when a record has a provenance, so records without one stay SXR1 bytes. */
#define RECORD_MAGIC_SOURCE 0x32525853u
#define RECORD_HEADER_SOURCE 76
#define RECORD_STRINGS 8
#define MAX_KEY 480
#define DEFAULT_MAP_64 (1ull << 40) /* 1 TiB of address space */
#define DEFAULT_MAP_32 (1ull << 30)

/* One per index directory per process; see the top of the file. */
typedef struct shared_env {
    dev_t dev;
    ino_t ino;
    MDB_env *env;
    int rdonly; /* opened MDB_RDONLY: the directory or data.mdb is not writable */
    MDB_dbi meta, records, by_path, by_hash, by_artist, artists, artist_names, changes;
    size_t map_size;
    int refs;
    struct shared_env *next;
} shared_env;

static pthread_mutex_t envs_mu = PTHREAD_MUTEX_INITIALIZER;
static shared_env *envs; /* guarded by envs_mu */

struct sx_store {
    shared_env *shared;
    MDB_env *env;
    MDB_dbi meta, records, by_path, by_hash, by_artist, artists, artist_names, changes;
    char *dir;
    int read_only;
    char id[SX_STORE_ID_LEN + 1]; /* "" for an index made before store ids */
    size_t map_size;
    /* Test hook, SIAMIDX_TEST_TXN_PUTS=N: a transaction's write N+1 fails as
       MDB_TXN_FULL would (LMDB's own limit, 2^17 dirty pages, takes ~512 MiB
       of writes to reach); 0: off. */
    size_t txn_put_limit;
};

struct sx_wtxn {
    sx_store *st;
    MDB_txn *txn;
    uint32_t flags;
    uint64_t *added, *removed;
    size_t n_added, n_removed, cap_added, cap_removed;
    size_t puts;  /* writes so far, for the test hook below */
    int txn_full; /* LMDB (or the hook) said MDB_TXN_FULL: too big for one transaction */
};

/* ---- small helpers ----------------------------------------------------------- */

static void put_be64(uint8_t *p, uint64_t v) {
    for (int i = 7; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}
static uint64_t get_be64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | p[i];
    return v;
}
static void put_be32(uint8_t *p, uint32_t v) {
    for (int i = 3; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}
static uint32_t get_be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static MDB_val val(const void *p, size_t n) {
    MDB_val v = {n, (void *)p};
    return v;
}

static siamidx_status mdb_fail(siamidx_error *err, int rc, const char *what, const sx_store *st) {
    siamidx_status s = SIAMIDX_ERR_BACKEND;
    if (rc == MDB_MAP_FULL)
        return sx_fail(err, SIAMIDX_ERR_IO,
                       "%s/data.mdb: %s: the index is full: its map of %zu MiB is used up "
                       "(set SIAMIDX_MAP_SIZE larger, e.g. 4T)",
                       st ? st->dir : "?", what, st ? st->map_size >> 20 : (size_t)0);
    if (rc == MDB_MAP_RESIZED)
        return sx_fail(err, SIAMIDX_ERR_IO,
                       "%s/data.mdb: %s: another process grew the index past this process's "
                       "map of %zu MiB (set SIAMIDX_MAP_SIZE as large and reopen)",
                       st ? st->dir : "?", what, st ? st->map_size >> 20 : (size_t)0);
    if (rc == MDB_CORRUPTED || rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH ||
        rc == MDB_INCOMPATIBLE || rc == MDB_PAGE_NOTFOUND || rc == MDB_BAD_VALSIZE)
        s = SIAMIDX_ERR_INDEX_CORRUPT;
    return sx_fail(err, s, "%s/data.mdb: %s: %s", st ? st->dir : "?", what, mdb_strerror(rc));
}

static siamidx_status corrupt(siamidx_error *err, const sx_store *st, const char *fmt,
                              unsigned long long a) {
    char msg[256];
    snprintf(msg, sizeof msg, fmt, a);
    return sx_fail(err, SIAMIDX_ERR_INDEX_CORRUPT, "%s/data.mdb: %s", st->dir, msg);
}

/* by_path / artist_names keys: the string, or "#" + its SHA-256 when too long for LMDB. */
static MDB_val string_key(const char *s, char buf[68]) {
    size_t n = strlen(s);
    if (n > 0 && n <= MAX_KEY && s[0] != '#') return val(s, n);
    sx_sha256 h;
    uint8_t d[32];
    sx_sha256_init(&h);
    sx_sha256_update(&h, s, n);
    sx_sha256_final(&h, d);
    buf[0] = '#';
    sx_hex(d, 32, buf + 1);
    return val(buf, 65);
}

MDB_txn *sx_wtxn_txn(sx_wtxn *w) { return w->txn; }

/* Every write goes through these two, so that MDB_TXN_FULL is noticed wherever it happens. */
static int hook_full(sx_wtxn *w) {
    return w->st->txn_put_limit && ++w->puts > w->st->txn_put_limit;
}

static siamidx_status wput(sx_wtxn *w, MDB_dbi dbi, MDB_val k, MDB_val v, unsigned flags,
                           siamidx_error *err) {
    int rc = hook_full(w) ? MDB_TXN_FULL : mdb_put(w->txn, dbi, &k, &v, flags);
    if (rc == MDB_TXN_FULL) w->txn_full = 1;
    return rc ? mdb_fail(err, rc, "write", w->st) : SIAMIDX_OK;
}

static siamidx_status wdel(sx_wtxn *w, MDB_dbi dbi, MDB_val k, MDB_val *v, siamidx_error *err) {
    int rc = hook_full(w) ? MDB_TXN_FULL : mdb_del(w->txn, dbi, &k, v);
    if (rc == MDB_TXN_FULL) w->txn_full = 1;
    if (rc == MDB_NOTFOUND) return SIAMIDX_OK;
    return rc ? mdb_fail(err, rc, "delete", w->st) : SIAMIDX_OK;
}

static int get(MDB_txn *txn, MDB_dbi dbi, MDB_val k, MDB_val *v) { return mdb_get(txn, dbi, &k, v); }

static siamidx_status meta_u64(sx_store *st, MDB_txn *txn, const char *key, uint64_t *out,
                               siamidx_error *err) {
    MDB_val v;
    int rc = get(txn, st->meta, val(key, strlen(key)), &v);
    if (rc == MDB_NOTFOUND) return corrupt(err, st, "meta record missing (not a siamidx index?)", 0);
    if (rc) return mdb_fail(err, rc, key, st);
    if (v.mv_size != 8) return corrupt(err, st, "meta record has %llu bytes, want 8", v.mv_size);
    *out = get_be64(v.mv_data);
    return SIAMIDX_OK;
}

static siamidx_status put_meta_u64(sx_wtxn *w, const char *key, uint64_t x, siamidx_error *err) {
    uint8_t b[8];
    put_be64(b, x);
    return wput(w, w->st->meta, val(key, strlen(key)), val(b, 8), 0, err);
}

static void meta_string(sx_store *st, MDB_txn *txn, const char *key, char *out, size_t cap) {
    MDB_val v;
    out[0] = 0;
    if (get(txn, st->meta, val(key, strlen(key)), &v) == 0) {
        size_t n = v.mv_size < cap - 1 ? v.mv_size : cap - 1;
        memcpy(out, v.mv_data, n);
        out[n] = 0;
    }
}

static siamidx_status put_meta_string(sx_wtxn *w, const char *key, const char *s,
                                      siamidx_error *err) {
    return wput(w, w->st->meta, val(key, strlen(key)), val(s, strlen(s)), 0, err);
}

static int push_id(uint64_t **a, size_t *n, size_t *cap, uint64_t id) {
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 64;
        uint64_t *p = realloc(*a, c * sizeof *p);
        if (!p) return -1;
        *a = p;
        *cap = c;
    }
    (*a)[(*n)++] = id;
    return 0;
}

/* ---- opening ------------------------------------------------------------------- */

int sx_fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* The directory holding `path` (its parent; "." for a bare name). */
int sx_fsync_parent(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    size_t n = strlen(buf);
    while (n > 1 && buf[n - 1] == '/') buf[--n] = 0; /* "a/b/" is "a/b" */
    char *slash = strrchr(buf, '/');
    if (!slash) return sx_fsync_dir(".");
    if (slash == buf) slash[1] = 0;
    else *slash = 0;
    return sx_fsync_dir(buf);
}

/* SIAMIDX_MAP_SIZE: bytes, or with a K/M/G/T suffix (powers of 1024). */
static siamidx_status map_size(size_t *out, siamidx_error *err) {
    uint64_t def = sizeof(size_t) >= 8 ? DEFAULT_MAP_64 : DEFAULT_MAP_32;
    const char *e = getenv("SIAMIDX_MAP_SIZE");
    *out = (size_t)def;
    if (!e || !*e) return SIAMIDX_OK;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(e, &end, 10);
    int shift = 0;
    if (*end) shift = *end == 'K' || *end == 'k' ? 10 : *end == 'M' || *end == 'm' ? 20
                    : *end == 'G' || *end == 'g' ? 30 : *end == 'T' || *end == 't' ? 40 : -1;
    if (*end && end[1]) shift = -1;
    if (errno || end == e || shift < 0 || v == 0 || v > (SIZE_MAX >> shift) ||
        (v << shift) < (64u << 10))
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT,
                       "SIAMIDX_MAP_SIZE='%s': want a size of at least 64K, like 1T or 512G", e);
    *out = (size_t)(v << shift);
    return SIAMIDX_OK;
}

static int open_dbis(shared_env *st, MDB_txn *txn, unsigned flags) {
    struct {
        const char *name;
        MDB_dbi *dbi;
        unsigned extra;
    } t[] = {{"meta", &st->meta, 0},           {"records", &st->records, 0},
             {"by_path", &st->by_path, 0},     {"by_hash", &st->by_hash, MDB_DUPSORT},
             {"by_artist", &st->by_artist, MDB_DUPSORT},
             {"artists", &st->artists, 0},     {"artist_names", &st->artist_names, 0},
             {"changes", &st->changes, 0}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        int rc = mdb_dbi_open(txn, t[i].name, flags | t[i].extra, t[i].dbi);
        if (rc) return rc;
    }
    return 0;
}

/* A random identity, written once when the store is made: derived files (the
   FAISS snapshot) name it, so that they are never taken for another store's. */
static siamidx_status put_store_id(sx_wtxn *w, siamidx_error *err) {
    uint8_t r[SX_STORE_ID_LEN / 2];
    size_t got = 0;
    while (got < sizeof r) {
        ssize_t n = getrandom(r + got, sizeof r - got, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0)
            return sx_fail(err, SIAMIDX_ERR_IO, "%s: getrandom: %s", w->st->dir, strerror(errno));
        got += (size_t)n;
    }
    char hex[SX_STORE_ID_LEN + 1];
    sx_hex(r, sizeof r, hex);
    return put_meta_string(w, "store_id", hex, err);
}

static siamidx_status init_meta(sx_wtxn *w, void *ctx, siamidx_error *err) {
    (void)ctx;
    sx_store *st = w->st;
    MDB_val v;
    if (get(w->txn, st->meta, val("magic", 5), &v) == 0) { /* already made */
        if (get(w->txn, st->meta, val("store_id", 8), &v) == MDB_NOTFOUND)
            return put_store_id(w, err); /* an index from before store ids */
        return SIAMIDX_OK;
    }
    MDB_stat ms;
    if (mdb_stat(w->txn, st->meta, &ms) == 0 && ms.ms_entries > 0)
        return corrupt(err, st, "not a siamidx index (no magic record)", 0);
    siamidx_status s = put_meta_string(w, "magic", STORE_MAGIC, err);
    if (!s) s = put_store_id(w, err);
    if (!s) s = put_meta_u64(w, "format", SX_STORE_FORMAT, err);
    if (!s) s = put_meta_u64(w, "generation", 0, err);
    if (!s) s = put_meta_u64(w, "next_id", 1, err);
    if (!s) s = put_meta_u64(w, "next_artist", 1, err);
    if (!s) s = put_meta_u64(w, "dim", 0, err);
    if (!s) s = put_meta_string(w, "index_type", "flat", err);
    return s;
}

static siamidx_status check_magic(sx_store *st, siamidx_error *err) {
    MDB_txn *txn;
    siamidx_status s = sx_store_read_begin(st, &txn, err);
    if (s) return s;
    MDB_val v;
    int rc = get(txn, st->meta, val("magic", 5), &v);
    if (rc || v.mv_size != strlen(STORE_MAGIC) || memcmp(v.mv_data, STORE_MAGIC, v.mv_size)) {
        s = corrupt(err, st, "not a siamidx index (no magic record)", 0);
    } else {
        uint64_t fmt = 0;
        s = meta_u64(st, txn, "format", &fmt, err);
        if (!s && fmt != SX_STORE_FORMAT)
            s = corrupt(err, st, "index format %llu is not supported by this siamidx", fmt);
        meta_string(st, txn, "store_id", st->id, sizeof st->id);
        size_t n = strlen(st->id); /* it goes into file names: hex only */
        if (!s && n && (n != SX_STORE_ID_LEN || strspn(st->id, "0123456789abcdef") != n))
            s = corrupt(err, st, "malformed store id", 0);
    }
    sx_store_read_end(txn);
    return s;
}

/* Checks and opens the tables in a new environment (the first handle on it). */
static siamidx_status open_tables(shared_env *e, sx_store *st, int create, siamidx_error *err) {
    MDB_txn *txn;
    int rc = mdb_txn_begin(e->env, NULL, create ? 0 : MDB_RDONLY, &txn);
    if (rc) return mdb_fail(err, rc, "begin", st);
    if (create) { /* never adopt someone else's LMDB environment */
        MDB_dbi main_db, probe;
        MDB_stat ms;
        if (mdb_dbi_open(txn, "meta", 0, &probe) == MDB_NOTFOUND &&
            mdb_dbi_open(txn, NULL, 0, &main_db) == 0 && mdb_stat(txn, main_db, &ms) == 0 &&
            ms.ms_entries > 0) {
            mdb_txn_abort(txn);
            return corrupt(err, st, "not a siamidx index (a foreign LMDB database)", 0);
        }
    }
    rc = open_dbis(e, txn, create ? MDB_CREATE : 0);
    if (rc) {
        mdb_txn_abort(txn);
        if (rc == MDB_NOTFOUND) return corrupt(err, st, "not a siamidx index (missing tables)", 0);
        if (rc == MDB_INCOMPATIBLE) return corrupt(err, st, "not a siamidx index", 0);
        return mdb_fail(err, rc, "opening tables", st);
    }
    rc = mdb_txn_commit(txn); /* makes the table handles the environment's */
    return rc ? mdb_fail(err, rc, "commit", st) : SIAMIDX_OK;
}

static void release_env(shared_env *e) {
    if (!e) return;
    pthread_mutex_lock(&envs_mu);
    if (--e->refs == 0) {
        for (shared_env **p = &envs; *p; p = &(*p)->next)
            if (*p == e) {
                *p = e->next;
                break;
            }
        mdb_env_close(e->env);
        free(e);
    }
    pthread_mutex_unlock(&envs_mu);
}

/*
 * LMDB reads data.mdb through its map, so a page past the end of a truncated
 * file is SIGBUS, not an error. A file may legitimately end before its last
 * page number (pages a transaction allocated and freed again are never
 * written), so the check reads, with pread, what every lookup starts from:
 * the newest meta page's free and main tree roots, and the roots of the
 * named tables when the main tree is one leaf page (as it is here). Each
 * must lie inside the file. (LMDB on-disk format, 64-bit: page header 16
 * bytes; meta: free root at 80, main root at 128, txnid at 144.)
 */
static uint64_t le64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static siamidx_status check_roots(MDB_env *env, const sx_store *st, const char *path,
                                  siamidx_error *err) {
    MDB_stat ms;
    struct stat sb;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || mdb_env_stat(env, &ms) || fstat(fd, &sb) || ms.ms_psize < 512 ||
        ms.ms_psize > 65536) {
        if (fd >= 0) close(fd);
        return sx_fail(err, SIAMIDX_ERR_INDEX_CORRUPT, "%s: cannot read its header", path);
    }
    size_t psize = ms.ms_psize;
    uint64_t pages = (uint64_t)sb.st_size / psize;
    uint8_t *page = malloc(psize);
    siamidx_status s = page ? SIAMIDX_OK : sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "out of memory");
    uint64_t roots[2 + 16], best = 0;
    size_t n_roots = 0;
    for (int m = 0; !s && m < 2; m++) { /* the newer of the two meta pages */
        if (pread(fd, page, psize, (off_t)(m * psize)) != (ssize_t)psize) continue;
        uint64_t txnid = le64(page + 144);
        if (m == 0 || txnid > best) {
            best = txnid;
            roots[0] = le64(page + 80);
            roots[1] = le64(page + 128);
            n_roots = 2;
        }
    }
    const uint64_t none = ~0ull; /* P_INVALID: an empty tree */
    if (!s && n_roots == 2 && roots[1] != none && roots[1] < pages &&
        pread(fd, page, psize, (off_t)(roots[1] * psize)) == (ssize_t)psize) {
        uint16_t flags, lower;
        memcpy(&flags, page + 10, 2);
        memcpy(&lower, page + 12, 2);
        size_t keys = lower >= 16 && lower <= psize ? (size_t)(lower - 16) / 2 : 0;
        for (size_t i = 0; (flags & 0x02) && i < keys && n_roots < 18; i++) { /* P_LEAF */
            uint16_t off, nflags, ksize;
            memcpy(&off, page + 16 + 2 * i, 2);
            if ((size_t)off + 8 > psize) break;
            memcpy(&nflags, page + off + 4, 2);
            memcpy(&ksize, page + off + 6, 2);
            size_t data = (size_t)off + 8 + ksize;
            if ((nflags & 0x02) && data + 48 <= psize) roots[n_roots++] = le64(page + data + 40);
        }
    }
    for (size_t i = 0; !s && i < n_roots; i++)
        if (roots[i] != none && roots[i] >= pages)
            s = corrupt(err, st, "truncated: the file ends before its page %llu", roots[i]);
    free(page);
    close(fd);
    return s;
}

/* The process's environment of st->dir, opened on first use (under envs_mu). */
static siamidx_status acquire_env(sx_store *st, int create, siamidx_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/data.mdb", st->dir);
    struct stat db;
    if (stat(st->dir, &db) != 0)
        return sx_fail(err, SIAMIDX_ERR_NOT_FOUND, "%s: %s", st->dir, strerror(errno));
    size_t want_map;
    siamidx_status s = map_size(&want_map, err);
    if (s) return s;
    pthread_mutex_lock(&envs_mu);
    shared_env *e = envs;
    while (e && !(e->dev == db.st_dev && e->ino == db.st_ino)) e = e->next;
    if (e) {
        if (!st->read_only && e->rdonly)
            s = sx_fail(err, SIAMIDX_ERR_IO, "%s: open read-only in this process (not writable)",
                        st->dir);
        else
            e->refs++;
        goto out;
    }
    if (!(e = calloc(1, sizeof *e))) {
        s = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "%s: out of memory", st->dir);
        goto out;
    }
    e->dev = db.st_dev;
    e->ino = db.st_ino;
    e->map_size = want_map;
    /* Readers share the environment with writers, so it is opened read-write
       whenever it can be; only an unwritable index gets a read-only one. */
    e->rdonly = st->read_only && (access(st->dir, W_OK) != 0 || access(path, W_OK) != 0);
    int rc;
    for (;;) {
        rc = mdb_env_create(&e->env);
        if (!rc) rc = mdb_env_set_maxdbs(e->env, 16);
        if (!rc) rc = mdb_env_set_mapsize(e->env, e->map_size); /* once: see the top */
        if (!rc) rc = mdb_env_open(e->env, st->dir, MDB_NOTLS | (e->rdonly ? MDB_RDONLY : 0), 0666);
        /* Address space can be short of the default map (ulimit -v, a sanitizer's
           shadow memory): then a quarter of it, down to 1 GiB, unless the size was
           asked for. A full map is still a clear error, never a remap. */
        if (rc != ENOMEM || getenv("SIAMIDX_MAP_SIZE") || e->map_size / 4 < ((size_t)1 << 30))
            break;
        mdb_env_close(e->env);
        e->env = NULL;
        e->map_size /= 4;
    }
    if (rc) {
        s = mdb_fail(err, rc, "cannot open", st);
        if (rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH)
            s = sx_fail(err, SIAMIDX_ERR_INDEX_CORRUPT, "%s: not an LMDB file (%s)", path,
                        mdb_strerror(rc));
    } else if (!(s = check_roots(e->env, st, path, err))) {
        s = open_tables(e, st, create && !st->read_only, err);
    }
    if (s) {
        if (e->env) mdb_env_close(e->env);
        free(e);
        e = NULL;
        goto out;
    }
    e->refs = 1;
    e->next = envs;
    envs = e;
out:
    pthread_mutex_unlock(&envs_mu);
    if (s) return s;
    st->shared = e;
    st->env = e->env;
    st->map_size = e->map_size;
    st->meta = e->meta, st->records = e->records, st->by_path = e->by_path;
    st->by_hash = e->by_hash, st->by_artist = e->by_artist, st->artists = e->artists;
    st->artist_names = e->artist_names, st->changes = e->changes;
    return SIAMIDX_OK;
}

siamidx_status sx_store_open(const char *dir, int read_only, int create, sx_store **out,
                             siamidx_error *err) {
    *out = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    struct stat sb;
    int fresh = stat(path, &sb) != 0;
    if (fresh) {
        if (!create || read_only)
            return sx_fail(err, SIAMIDX_ERR_NOT_FOUND, "%s: no index here (no data.mdb)", dir);
        if (mkdir(dir, 0777) == 0) sx_fsync_parent(dir); /* the new directory's entry */
        else if (errno != EEXIST)
            return sx_fail(err, SIAMIDX_ERR_IO, "%s: cannot create: %s", dir, strerror(errno));
    } else if (!S_ISREG(sb.st_mode)) {
        return sx_fail(err, SIAMIDX_ERR_INDEX_CORRUPT, "%s: not a regular file", path);
    } else if (sb.st_size == 0) { /* LMDB would take it for a new environment and write one */
        return sx_fail(err, SIAMIDX_ERR_INDEX_CORRUPT,
                       "%s: empty (0 bytes): damaged, or its creation was interrupted "
                       "(remove the index directory to start again)", path);
    }
    sx_store *st = calloc(1, sizeof *st);
    if (!st || !(st->dir = strdup(dir))) {
        free(st);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "%s: out of memory", dir);
    }
    st->read_only = read_only;
    const char *hook = getenv("SIAMIDX_TEST_TXN_PUTS");
    if (hook && *hook) st->txn_put_limit = (size_t)strtoull(hook, NULL, 10);
    siamidx_status s = acquire_env(st, create || !read_only, err);
    if (s) goto fail;
    if (!read_only) mdb_reader_check(st->env, NULL); /* slots of killed readers */
    if (!read_only && (s = sx_store_write(st, init_meta, NULL, err))) goto fail;
    /* LMDB fsyncs data.mdb, not the directory entries of the files it made. */
    if (fresh && sx_fsync_dir(dir))
        s = sx_fail(err, SIAMIDX_ERR_IO, "%s: fsync: %s", dir, strerror(errno));
    if (s || (s = check_magic(st, err))) goto fail;
    *out = st;
    return SIAMIDX_OK;
fail:
    sx_store_close(st);
    return s;
}

const char *sx_store_id(const sx_store *st) { return st->id; }
const char *sx_store_dir(const sx_store *st) { return st->dir; }

void sx_store_close(sx_store *st) {
    if (!st) return;
    release_env(st->shared);
    free(st->dir);
    free(st);
}

uint64_t sx_store_file_bytes(const sx_store *st) {
    char path[4096];
    struct stat sb;
    snprintf(path, sizeof path, "%s/data.mdb", st->dir);
    return stat(path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

/* ---- transactions ---------------------------------------------------------------- */

siamidx_status sx_store_read_begin(sx_store *st, MDB_txn **txn, siamidx_error *err) {
    int rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, txn);
    if (rc) *txn = NULL;
    return rc ? mdb_fail(err, rc, "read transaction", st) : SIAMIDX_OK;
}

void sx_store_read_end(MDB_txn *txn) {
    if (txn) mdb_txn_abort(txn);
}

static siamidx_status log_changes(sx_wtxn *w, siamidx_error *err) {
    if (!w->n_added && !w->n_removed && !w->flags) return SIAMIDX_OK;
    uint64_t gen;
    siamidx_status s = meta_u64(w->st, w->txn, "generation", &gen, err);
    if (s) return s;
    gen++;
    size_t n = 12 + 8 * (w->n_added + w->n_removed);
    uint8_t *b = malloc(n);
    if (!b) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "change log: out of memory");
    put_be32(b, w->flags);
    put_be32(b + 4, (uint32_t)w->n_added);
    put_be32(b + 8, (uint32_t)w->n_removed);
    for (size_t i = 0; i < w->n_added; i++) put_be64(b + 12 + 8 * i, w->added[i]);
    for (size_t i = 0; i < w->n_removed; i++) put_be64(b + 12 + 8 * (w->n_added + i), w->removed[i]);
    uint8_t k[8];
    put_be64(k, gen);
    s = wput(w, w->st->changes, val(k, 8), val(b, n), 0, err);
    free(b);
    if (!s) s = put_meta_u64(w, "generation", gen, err);
    return s;
}

/* One transaction; on any failure nothing of it stays (LMDB aborts it whole). */
static siamidx_status run_txn(sx_store *st, sx_write_fn fn, void *ctx, int *txn_full,
                              siamidx_error *err) {
    *txn_full = 0;
    if (st->read_only)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "%s: index opened read-only", st->dir);
    sx_wtxn w = {.st = st};
    int rc = mdb_txn_begin(st->env, NULL, 0, &w.txn);
    if (rc) return mdb_fail(err, rc, "write transaction", st);
    siamidx_status s = fn(&w, ctx, err);
    if (!s) s = log_changes(&w, err);
    if (!s) {
        rc = mdb_txn_commit(w.txn);
        w.txn = NULL;
        if (rc == MDB_TXN_FULL) w.txn_full = 1;
        if (rc) s = mdb_fail(err, rc, "commit", st);
    }
    if (w.txn) mdb_txn_abort(w.txn);
    free(w.added);
    free(w.removed);
    *txn_full = w.txn_full && s;
    return s;
}

siamidx_status sx_store_write(sx_store *st, sx_write_fn fn, void *ctx, siamidx_error *err) {
    int full;
    return run_txn(st, fn, ctx, &full, err);
}

typedef struct range_call {
    sx_write_range_fn fn;
    void *ctx;
    size_t from, to;
} range_call;

static siamidx_status run_range(sx_wtxn *w, void *ctx, siamidx_error *err) {
    range_call *c = ctx;
    return c->fn(w, c->ctx, c->from, c->to, err);
}

/*
 * A change too big for one LMDB transaction (MDB_TXN_FULL) is committed in
 * halves, recursively: several transactions, each consistent on its own
 * and logged as its own generation. A crash between them keeps the halves
 * that committed, as between the batches of a build.
 */
siamidx_status sx_store_write_range(sx_store *st, sx_write_range_fn fn, void *ctx, size_t from,
                                    size_t to, siamidx_error *err) {
    range_call c = {fn, ctx, from, to};
    int full;
    siamidx_status s = run_txn(st, run_range, &c, &full, err);
    if (!full) return s;
    if (to - from < 2)
        return sx_fail(err, SIAMIDX_ERR_BACKEND,
                       "%s/data.mdb: one item is too big for an LMDB transaction", st->dir);
    size_t mid = from + (to - from) / 2;
    s = sx_store_write_range(st, fn, ctx, from, mid, err);
    return s ? s : sx_store_write_range(st, fn, ctx, mid, to, err);
}

/* ---- meta ------------------------------------------------------------------------ */

siamidx_status sx_store_get_meta(sx_store *st, MDB_txn *txn, sx_store_meta *m,
                                 siamidx_error *err) {
    memset(m, 0, sizeof *m);
    uint64_t dim = 0;
    siamidx_status s = meta_u64(st, txn, "generation", &m->generation, err);
    if (!s) s = meta_u64(st, txn, "next_id", &m->next_id, err);
    if (!s) s = meta_u64(st, txn, "dim", &dim, err);
    if (s) return s;
    if (dim > 1u << 20) return corrupt(err, st, "implausible embedding dimension %llu", dim);
    m->dim = (uint32_t)dim;
    meta_string(st, txn, "fingerprint", m->fingerprint, sizeof m->fingerprint);
    meta_string(st, txn, "arch", m->arch, sizeof m->arch);
    meta_string(st, txn, "pool", m->pool, sizeof m->pool);
    meta_string(st, txn, "index_type", m->index_type, sizeof m->index_type);
    MDB_val v;
    int rc = get(txn, st->meta, val("shard", 5), &v);
    if (rc == 0) {
        if (v.mv_size != 8) return corrupt(err, st, "shard record has %llu bytes, want 8", v.mv_size);
        m->shard_index = get_be32(v.mv_data);
        m->shard_count = get_be32((const uint8_t *)v.mv_data + 4);
        if (m->shard_count == 0 || m->shard_index >= m->shard_count)
            return corrupt(err, st, "shard record names shard %llu of 0", m->shard_index);
    } else if (rc != MDB_NOTFOUND) {
        return mdb_fail(err, rc, "shard", st);
    }
    return SIAMIDX_OK;
}

static siamidx_status put_shard(sx_wtxn *w, const sx_store_meta *m, siamidx_error *err) {
    if (!m->shard_count) return wdel(w, w->st->meta, val("shard", 5), NULL, err);
    if (m->shard_index >= m->shard_count)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "shard %u of %u does not exist",
                       m->shard_index, m->shard_count);
    uint8_t b[8];
    put_be32(b, m->shard_index);
    put_be32(b + 4, m->shard_count);
    return wput(w, w->st->meta, val("shard", 5), val(b, 8), 0, err);
}

siamidx_status sx_store_set_meta(sx_wtxn *w, const sx_store_meta *m, siamidx_error *err) {
    sx_store_meta old;
    siamidx_status s = sx_store_get_meta(w->st, w->txn, &old, err);
    if (s) return s;
    if (strcmp(old.index_type, m->index_type)) w->flags |= SX_CHANGE_REBUILD;
    if (!s) s = put_meta_string(w, "fingerprint", m->fingerprint, err);
    if (!s) s = put_meta_string(w, "arch", m->arch, err);
    if (!s) s = put_meta_string(w, "pool", m->pool, err);
    if (!s) s = put_meta_string(w, "index_type", m->index_type, err);
    if (!s) s = put_meta_u64(w, "dim", m->dim, err);
    if (!s && (m->shard_index != old.shard_index || m->shard_count != old.shard_count))
        s = put_shard(w, m, err);
    return s;
}

static MDB_val blob_key(const char *name, char *buf, size_t cap) {
    snprintf(buf, cap, "blob/%s", name);
    return val(buf, strlen(buf));
}

siamidx_status sx_store_blob_get(sx_store *st, MDB_txn *txn, const char *name,
                                 const void **data, size_t *len, siamidx_error *err) {
    char kb[MAX_KEY];
    MDB_val v;
    int rc = get(txn, st->meta, blob_key(name, kb, sizeof kb), &v);
    if (rc == MDB_NOTFOUND)
        return sx_fail(err, SIAMIDX_ERR_NOT_FOUND, "%s: no blob '%s'", st->dir, name);
    if (rc) return mdb_fail(err, rc, name, st);
    *data = v.mv_data;
    *len = v.mv_size;
    return SIAMIDX_OK;
}

siamidx_status sx_store_blob_put(sx_wtxn *w, const char *name, const void *data, size_t len,
                                 siamidx_error *err) {
    char kb[MAX_KEY];
    return wput(w, w->st->meta, blob_key(name, kb, sizeof kb), val(data, len), 0, err);
}

void sx_store_request_rebuild(sx_wtxn *w) { w->flags |= SX_CHANGE_REBUILD; }

/* ---- records --------------------------------------------------------------------- */

void sx_record_embedding(const sx_record *r, float *out) {
    memcpy(out, r->embedding, (size_t)r->dim * sizeof(float));
}

static const char *nz(const char *s) { return s ? s : ""; }

/* header | dim floats | six (SXR1) or eight (SXR2) NUL-terminated strings */
static uint8_t *encode_record(const sx_record *r, size_t *size) {
    const char *str[RECORD_STRINGS] = {nz(r->path),  nz(r->resolved), nz(r->title),
                                       nz(r->style), nz(r->genre),    nz(r->date),
                                       nz(r->source_repo), nz(r->source_path)};
    int ns = *str[6] || *str[7] ? 8 : 6;
    size_t header = ns == 8 ? RECORD_HEADER_SOURCE : RECORD_HEADER;
    size_t len[RECORD_STRINGS], n = header + (size_t)r->dim * 4;
    for (int i = 0; i < ns; i++) {
        len[i] = strlen(str[i]);
        if (len[i] > 65535) return NULL;
        n += len[i] + 1;
    }
    uint8_t *b = malloc(n);
    if (!b) return NULL;
    uint32_t magic = ns == 8 ? RECORD_MAGIC_SOURCE : RECORD_MAGIC;
    memcpy(b, &magic, 4);
    memcpy(b + 4, &r->artist_id, 4);
    memcpy(b + 8, &r->size, 8);
    memcpy(b + 16, &r->mtime_ns, 8);
    memcpy(b + 24, r->hash, 32);
    memcpy(b + 56, &r->dim, 4);
    for (int i = 0; i < ns; i++) {
        uint16_t l = (uint16_t)len[i];
        memcpy(b + 60 + 2 * i, &l, 2);
    }
    memcpy(b + header, r->embedding, (size_t)r->dim * 4);
    uint8_t *p = b + header + (size_t)r->dim * 4;
    for (int i = 0; i < ns; i++) {
        memcpy(p, str[i], len[i] + 1);
        p += len[i] + 1;
    }
    *size = n;
    return b;
}

/* Validates every size before trusting it: a damaged record is an error, not a crash. */
static siamidx_status decode_record(sx_store *st, uint64_t id, MDB_val v, sx_record *r,
                                    siamidx_error *err) {
    const uint8_t *b = v.mv_data;
    uint32_t magic;
    if (v.mv_size < RECORD_HEADER)
        return corrupt(err, st, "record %llu is truncated", (unsigned long long)id);
    memcpy(&magic, b, 4);
    if (magic != RECORD_MAGIC && magic != RECORD_MAGIC_SOURCE)
        return corrupt(err, st, "record %llu has a bad magic", (unsigned long long)id);
    int ns = magic == RECORD_MAGIC_SOURCE ? 8 : 6;
    size_t header = ns == 8 ? RECORD_HEADER_SOURCE : RECORD_HEADER;
    if (v.mv_size < header)
        return corrupt(err, st, "record %llu is truncated", (unsigned long long)id);
    r->id = id;
    memcpy(&r->artist_id, b + 4, 4);
    memcpy(&r->size, b + 8, 8);
    memcpy(&r->mtime_ns, b + 16, 8);
    memcpy(r->hash, b + 24, 32);
    memcpy(&r->dim, b + 56, 4);
    size_t need = header + (size_t)r->dim * 4;
    uint16_t len[RECORD_STRINGS];
    for (int i = 0; i < ns; i++) {
        memcpy(&len[i], b + 60 + 2 * i, 2);
        need += len[i] + 1u;
    }
    if (r->dim > 1u << 20 || need != v.mv_size)
        return corrupt(err, st, "record %llu has inconsistent sizes", (unsigned long long)id);
    r->embedding = b + header;
    const char *p = (const char *)b + header + (size_t)r->dim * 4;
    const char **out[RECORD_STRINGS] = {&r->path,  &r->resolved, &r->title,       &r->style,
                                        &r->genre, &r->date,     &r->source_repo, &r->source_path};
    r->source_repo = r->source_path = "";
    for (int i = 0; i < ns; i++) {
        if (p[len[i]] != 0 || memchr(p, 0, len[i]))
            return corrupt(err, st, "record %llu has a malformed string", (unsigned long long)id);
        *out[i] = p;
        p += len[i] + 1;
    }
    return SIAMIDX_OK;
}

/* decode_record over caller-owned bytes (fuzz/fuzz_record.c): no store needed. */
siamidx_status sx_record_decode(const void *value, size_t len, uint64_t id, sx_record *r,
                                siamidx_error *err) {
    sx_store none = {.dir = (char *)"(record)"};
    MDB_val v = {len, (void *)value};
    return decode_record(&none, id, v, r, err);
}

siamidx_status sx_store_get_record(sx_store *st, MDB_txn *txn, uint64_t id, sx_record *r,
                                   siamidx_error *err) {
    uint8_t k[8];
    MDB_val v;
    put_be64(k, id);
    int rc = get(txn, st->records, val(k, 8), &v);
    if (rc == MDB_NOTFOUND)
        return sx_fail(err, SIAMIDX_ERR_NOT_FOUND, "%s: no record %llu", st->dir,
                       (unsigned long long)id);
    if (rc) return mdb_fail(err, rc, "record", st);
    return decode_record(st, id, v, r, err);
}

static siamidx_status id_value(sx_store *st, MDB_val v, uint64_t *id, siamidx_error *err) {
    if (v.mv_size != 8) return corrupt(err, st, "lookup value has %llu bytes, want 8", v.mv_size);
    *id = get_be64(v.mv_data);
    return SIAMIDX_OK;
}

siamidx_status sx_store_find_path(sx_store *st, MDB_txn *txn, const char *resolved,
                                  uint64_t *id, siamidx_error *err) {
    char kb[68];
    MDB_val v;
    int rc = get(txn, st->by_path, string_key(resolved, kb), &v);
    if (rc == MDB_NOTFOUND)
        return sx_fail(err, SIAMIDX_ERR_NOT_FOUND, "%s: not indexed", resolved);
    if (rc) return mdb_fail(err, rc, "path lookup", st);
    return id_value(st, v, id, err);
}

siamidx_status sx_store_find_hash(sx_store *st, MDB_txn *txn, const uint8_t hash[32],
                                  uint64_t *id, siamidx_error *err) {
    MDB_val v;
    int rc = get(txn, st->by_hash, val(hash, 32), &v);
    if (rc == MDB_NOTFOUND) return sx_fail(err, SIAMIDX_ERR_NOT_FOUND, "no image with this hash");
    if (rc) return mdb_fail(err, rc, "hash lookup", st);
    return id_value(st, v, id, err);
}

/* ---- artists ------------------------------------------------------------------------ */

siamidx_status sx_store_artist_name(sx_store *st, MDB_txn *txn, uint32_t id, const char **name,
                                    uint64_t *count, siamidx_error *err) {
    uint8_t k[4];
    MDB_val v;
    put_be32(k, id);
    int rc = get(txn, st->artists, val(k, 4), &v);
    if (rc == MDB_NOTFOUND)
        return sx_fail(err, SIAMIDX_ERR_NOT_FOUND, "%s: no artist %u", st->dir, id);
    if (rc) return mdb_fail(err, rc, "artist", st);
    const uint8_t *b = v.mv_data;
    if (v.mv_size < 9 || b[v.mv_size - 1] != 0 || memchr(b + 8, 0, v.mv_size - 9))
        return corrupt(err, st, "artist %u is malformed", id);
    if (count) *count = get_be64(b);
    if (name) *name = (const char *)b + 8;
    return SIAMIDX_OK;
}

siamidx_status sx_store_artist_id(sx_store *st, MDB_txn *txn, const char *name, uint32_t *id,
                                  siamidx_error *err) {
    char kb[68];
    MDB_val v;
    int rc = get(txn, st->artist_names, string_key(name, kb), &v);
    if (rc == MDB_NOTFOUND) return sx_fail(err, SIAMIDX_ERR_NOT_FOUND, "no artist '%s'", name);
    if (rc) return mdb_fail(err, rc, "artist lookup", st);
    if (v.mv_size != 4) return corrupt(err, st, "artist name lookup has %llu bytes", v.mv_size);
    *id = get_be32(v.mv_data);
    return SIAMIDX_OK;
}

static siamidx_status put_artist(sx_wtxn *w, uint32_t id, const char *name, uint64_t count,
                                 siamidx_error *err) {
    size_t n = strlen(name);
    uint8_t *b = malloc(n + 9), k[4];
    if (!b) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "artist: out of memory");
    put_be64(b, count);
    memcpy(b + 8, name, n + 1);
    put_be32(k, id);
    siamidx_status s = wput(w, w->st->artists, val(k, 4), val(b, n + 9), 0, err);
    free(b);
    return s;
}

/* Adds `delta` images to an artist, creating it (delta > 0) or dropping it at zero. */
static siamidx_status count_artist(sx_wtxn *w, const char *name, uint32_t id_hint, int delta,
                                   uint32_t *id_out, siamidx_error *err) {
    sx_store *st = w->st;
    uint32_t id = id_hint;
    siamidx_status s = SIAMIDX_OK;
    if (name) {
        s = sx_store_artist_id(st, w->txn, name, &id, err);
        if (s == SIAMIDX_ERR_NOT_FOUND && delta > 0) {
            uint64_t next = 0;
            if ((s = meta_u64(st, w->txn, "next_artist", &next, err))) return s;
            id = (uint32_t)next;
            char kb[68];
            uint8_t v[4];
            put_be32(v, id);
            s = wput(w, st->artist_names, string_key(name, kb), val(v, 4), 0, err);
            if (!s) s = put_meta_u64(w, "next_artist", next + 1, err);
            if (!s) s = put_artist(w, id, name, 0, err);
        }
        if (s) return s;
    }
    const char *stored;
    uint64_t count;
    if ((s = sx_store_artist_name(st, w->txn, id, &stored, &count, err))) return s;
    char *copy = strdup(stored); /* stored points into pages this txn may rewrite */
    if (!copy) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "artist: out of memory");
    if (delta < 0 && count <= (uint64_t)-delta) {
        char kb[68];
        uint8_t k[4];
        put_be32(k, id);
        s = wdel(w, st->artists, val(k, 4), NULL, err);
        if (!s) s = wdel(w, st->artist_names, string_key(copy, kb), NULL, err);
    } else {
        s = put_artist(w, id, copy, count + (uint64_t)(int64_t)delta, err);
    }
    free(copy);
    if (id_out) *id_out = id;
    return s;
}

siamidx_status sx_store_put_record(sx_wtxn *w, sx_record *r, const char *artist,
                                   siamidx_error *err) {
    sx_store *st = w->st;
    if (!artist || !*artist)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "%s: no artist", nz(r->path));
    uint64_t next = 0;
    siamidx_status s = meta_u64(st, w->txn, "next_id", &next, err);
    if (!s) s = count_artist(w, artist, 0, +1, &r->artist_id, err);
    if (s) return s;
    r->id = next;
    size_t n;
    uint8_t *b = encode_record(r, &n);
    if (!b) return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "%s: path or field too long",
                           nz(r->path));
    uint8_t k[8], ak[4];
    char kb[68];
    put_be64(k, r->id);
    put_be32(ak, r->artist_id);
    s = wput(w, st->records, val(k, 8), val(b, n), 0, err);
    free(b);
    if (!s) s = wput(w, st->by_path, string_key(r->resolved, kb), val(k, 8), 0, err);
    if (!s) s = wput(w, st->by_hash, val(r->hash, 32), val(k, 8), 0, err);
    if (!s) s = wput(w, st->by_artist, val(ak, 4), val(k, 8), 0, err);
    if (!s) s = put_meta_u64(w, "next_id", next + 1, err);
    if (!s && push_id(&w->added, &w->n_added, &w->cap_added, r->id))
        s = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "change log: out of memory");
    return s;
}

siamidx_status sx_store_delete_record(sx_wtxn *w, uint64_t id, siamidx_error *err) {
    sx_store *st = w->st;
    sx_record r;
    siamidx_status s = sx_store_get_record(st, w->txn, id, &r, err);
    if (s) return s;
    /* Copy what we need: deleting rewrites the pages r points into. */
    uint8_t hash[32], k[8], ak[4];
    char kb[68];
    char *resolved = strdup(r.resolved);
    if (!resolved) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "delete: out of memory");
    memcpy(hash, r.hash, 32);
    uint32_t artist = r.artist_id;
    put_be64(k, id);
    put_be32(ak, artist);
    MDB_val kv = val(k, 8);
    s = wdel(w, st->records, val(k, 8), NULL, err);
    if (!s) { /* only drop the path lookup if it still names this record */
        MDB_val cur;
        if (get(w->txn, st->by_path, string_key(resolved, kb), &cur) == 0 && cur.mv_size == 8 &&
            get_be64(cur.mv_data) == id)
            s = wdel(w, st->by_path, string_key(resolved, kb), NULL, err);
    }
    if (!s) s = wdel(w, st->by_hash, val(hash, 32), &kv, err);
    if (!s) s = wdel(w, st->by_artist, val(ak, 4), &kv, err);
    if (!s) s = count_artist(w, NULL, artist, -1, NULL, err);
    if (!s && push_id(&w->removed, &w->n_removed, &w->cap_removed, id))
        s = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "change log: out of memory");
    free(resolved);
    return s;
}

uint64_t sx_store_count(sx_store *st, MDB_txn *txn) {
    MDB_stat ms;
    return mdb_stat(txn, st->records, &ms) == 0 ? ms.ms_entries : 0;
}

siamidx_status sx_store_foreach_record(sx_store *st, MDB_txn *txn, sx_record_fn fn, void *ctx,
                                       siamidx_error *err) {
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, st->records, &c);
    if (rc) return mdb_fail(err, rc, "cursor", st);
    MDB_val k, v;
    siamidx_status s = SIAMIDX_OK;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 8) {
            s = corrupt(err, st, "record key has %llu bytes", k.mv_size);
            break;
        }
        sx_record r;
        if ((s = decode_record(st, get_be64(k.mv_data), v, &r, err))) break;
        if (fn(ctx, &r)) break;
    }
    if (!s && rc && rc != MDB_NOTFOUND) s = mdb_fail(err, rc, "reading records", st);
    mdb_cursor_close(c);
    return s;
}

/* The record ids stored under one key of a DUPSORT table (by_artist, by_hash). */
static siamidx_status ids_under_key(sx_store *st, MDB_txn *txn, MDB_dbi dbi, MDB_val k,
                                    const char *what, uint64_t **ids, size_t *n,
                                    siamidx_error *err) {
    *ids = NULL;
    *n = 0;
    size_t cap = 0;
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, dbi, &c);
    if (rc) return mdb_fail(err, rc, "cursor", st);
    MDB_val v;
    siamidx_status s = SIAMIDX_OK;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_KEY); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT_DUP)) {
        uint64_t id = 0;
        if ((s = id_value(st, v, &id, err))) break;
        if (push_id(ids, n, &cap, id)) {
            s = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "out of memory");
            break;
        }
    }
    if (!s && rc && rc != MDB_NOTFOUND) s = mdb_fail(err, rc, what, st);
    mdb_cursor_close(c);
    return s;
}

siamidx_status sx_store_artist_records(sx_store *st, MDB_txn *txn, uint32_t artist_id,
                                       uint64_t **ids, size_t *n, siamidx_error *err) {
    uint8_t ak[4];
    put_be32(ak, artist_id);
    return ids_under_key(st, txn, st->by_artist, val(ak, 4), "artist records", ids, n, err);
}

siamidx_status sx_store_hash_records(sx_store *st, MDB_txn *txn, const uint8_t hash[32],
                                     uint64_t **ids, size_t *n, siamidx_error *err) {
    return ids_under_key(st, txn, st->by_hash, val(hash, 32), "hash records", ids, n, err);
}

siamidx_status sx_store_foreach_artist(sx_store *st, MDB_txn *txn, sx_artist_fn fn, void *ctx,
                                       siamidx_error *err) {
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, st->artists, &c);
    if (rc) return mdb_fail(err, rc, "cursor", st);
    MDB_val k, v;
    siamidx_status s = SIAMIDX_OK;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 4) {
            s = corrupt(err, st, "artist key has %llu bytes", k.mv_size);
            break;
        }
        uint32_t id = get_be32(k.mv_data);
        const char *name;
        uint64_t count;
        if ((s = sx_store_artist_name(st, txn, id, &name, &count, err))) break;
        if (fn(ctx, id, name, count)) break;
    }
    if (!s && rc && rc != MDB_NOTFOUND) s = mdb_fail(err, rc, "reading artists", st);
    mdb_cursor_close(c);
    return s;
}

/* ---- change log ------------------------------------------------------------------------ */

siamidx_status sx_store_get_change(sx_store *st, MDB_txn *txn, uint64_t gen, sx_change *c,
                                   siamidx_error *err) {
    memset(c, 0, sizeof *c);
    uint8_t k[8];
    MDB_val v;
    put_be64(k, gen);
    int rc = get(txn, st->changes, val(k, 8), &v);
    if (rc == MDB_NOTFOUND)
        return sx_fail(err, SIAMIDX_ERR_NOT_FOUND, "change log of generation %llu was pruned",
                       (unsigned long long)gen);
    if (rc) return mdb_fail(err, rc, "change log", st);
    const uint8_t *b = v.mv_data;
    if (v.mv_size < 12) return corrupt(err, st, "change log %llu truncated", gen);
    c->flags = get_be32(b);
    c->n_added = get_be32(b + 4);
    c->n_removed = get_be32(b + 8);
    if (v.mv_size != 12 + 8 * (c->n_added + c->n_removed))
        return corrupt(err, st, "change log %llu has inconsistent sizes", gen);
    c->added = malloc((c->n_added + 1) * 8);
    c->removed = malloc((c->n_removed + 1) * 8);
    if (!c->added || !c->removed) {
        sx_change_free(c);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "change log: out of memory");
    }
    for (size_t i = 0; i < c->n_added; i++) c->added[i] = get_be64(b + 12 + 8 * i);
    for (size_t i = 0; i < c->n_removed; i++)
        c->removed[i] = get_be64(b + 12 + 8 * (c->n_added + i));
    return SIAMIDX_OK;
}

void sx_change_free(sx_change *c) {
    free(c->added);
    free(c->removed);
    memset(c, 0, sizeof *c);
}

static siamidx_status prune(sx_wtxn *w, void *ctx, siamidx_error *err) {
    uint64_t upto = *(const uint64_t *)ctx;
    MDB_cursor *c;
    int rc = mdb_cursor_open(w->txn, w->st->changes, &c);
    if (rc) return mdb_fail(err, rc, "cursor", w->st);
    MDB_val k, v;
    while ((rc = mdb_cursor_get(c, &k, &v, MDB_FIRST)) == 0 && k.mv_size == 8 &&
           get_be64(k.mv_data) <= upto) {
        rc = mdb_cursor_del(c, 0);
        if (rc) break;
    }
    mdb_cursor_close(c);
    return rc && rc != MDB_NOTFOUND ? mdb_fail(err, rc, "pruning the change log", w->st)
                                    : SIAMIDX_OK;
}

siamidx_status sx_store_prune_changes(sx_store *st, uint64_t gen, siamidx_error *err) {
    return sx_store_write(st, prune, &gen, err);
}

/* ---- the FAISS snapshot's record ---------------------------------------------------- */

/* "snapshot": generation(8) count(8) sha256(32) description NUL */
siamidx_status sx_store_get_snapshot(sx_store *st, MDB_txn *txn, sx_snapshot_meta *m,
                                     siamidx_error *err) {
    memset(m, 0, sizeof *m);
    MDB_val v;
    int rc = get(txn, st->meta, val("snapshot", 8), &v);
    if (rc == MDB_NOTFOUND) return sx_fail(err, SIAMIDX_ERR_NOT_FOUND, "%s: no snapshot", st->dir);
    if (rc) return mdb_fail(err, rc, "snapshot record", st);
    const uint8_t *b = v.mv_data;
    size_t n = v.mv_size;
    if (n < 49 || n - 48 > sizeof m->desc || b[n - 1] != 0 || memchr(b + 48, 0, n - 49))
        return corrupt(err, st, "snapshot record is malformed (%llu bytes)", n);
    m->generation = get_be64(b);
    m->count = get_be64(b + 8);
    memcpy(m->sha256, b + 16, 32);
    memcpy(m->desc, b + 48, n - 48);
    return SIAMIDX_OK;
}

static siamidx_status record_snapshot(sx_wtxn *w, void *ctx, siamidx_error *err) {
    const sx_snapshot_meta *m = ctx;
    size_t d = strlen(m->desc);
    uint8_t b[48 + sizeof m->desc];
    put_be64(b, m->generation);
    put_be64(b + 8, m->count);
    memcpy(b + 16, m->sha256, 32);
    memcpy(b + 48, m->desc, d + 1);
    siamidx_status s = wput(w, w->st->meta, val("snapshot", 8), val(b, 48 + d + 1), 0, err);
    uint64_t upto = m->generation;
    return s ? s : prune(w, &upto, err);
}

siamidx_status sx_store_record_snapshot(sx_store *st, const sx_snapshot_meta *m,
                                        siamidx_error *err) {
    if (strlen(m->desc) >= sizeof m->desc)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "snapshot description too long");
    return sx_store_write(st, record_snapshot, (void *)m, err);
}

/* ---- verification ---------------------------------------------------------------------- */

typedef struct verify_ctx {
    sx_store *st;
    MDB_txn *txn;
    sx_problems report;
    uint64_t *artist_count; /* indexed by artist id, grown as needed */
    size_t n_artist;
} verify_ctx;

static int dup_exists(MDB_txn *txn, MDB_dbi dbi, MDB_val k, MDB_val v) {
    MDB_cursor *c;
    if (mdb_cursor_open(txn, dbi, &c)) return 0;
    int found = mdb_cursor_get(c, &k, &v, MDB_GET_BOTH) == 0;
    mdb_cursor_close(c);
    return found;
}

static int verify_record(void *ctx, const sx_record *r) {
    verify_ctx *v = ctx;
    sx_store *st = v->st;
    uint8_t k[8], ak[4];
    put_be64(k, r->id);
    put_be32(ak, r->artist_id);
    uint64_t id;
    siamidx_error e;
    if (sx_store_find_path(st, v->txn, r->resolved, &id, &e) || id != r->id)
        sx_problem(&v->report, "record %llu (%s): path lookup does not lead back to it",
                (unsigned long long)r->id, r->path);
    if (!dup_exists(v->txn, st->by_hash, val(r->hash, 32), val(k, 8)))
        sx_problem(&v->report, "record %llu (%s): missing from the hash lookup", (unsigned long long)r->id,
                r->path);
    if (!dup_exists(v->txn, st->by_artist, val(ak, 4), val(k, 8)))
        sx_problem(&v->report, "record %llu (%s): missing from its artist's list", (unsigned long long)r->id,
                r->path);
    const char *name;
    if (sx_store_artist_name(st, v->txn, r->artist_id, &name, NULL, &e))
        sx_problem(&v->report, "record %llu (%s): artist %u does not exist", (unsigned long long)r->id,
                r->path, r->artist_id);
    if (r->artist_id >= v->n_artist) {
        size_t n = (size_t)r->artist_id * 2 + 16;
        uint64_t *p = realloc(v->artist_count, n * sizeof *p);
        if (!p) return 1;
        memset(p + v->n_artist, 0, (n - v->n_artist) * sizeof *p);
        v->artist_count = p;
        v->n_artist = n;
    }
    v->artist_count[r->artist_id]++;
    return 0;
}

/* Walks a lookup table and checks that each entry names a record that points back. */
static void verify_lookup(verify_ctx *v, MDB_dbi dbi, const char *what) {
    MDB_cursor *c;
    if (mdb_cursor_open(v->txn, dbi, &c)) return;
    MDB_val k, d;
    int rc;
    for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
        sx_record r;
        siamidx_error e;
        if (d.mv_size != 8) {
            sx_problem(&v->report, "%s entry has a %zu-byte value", what, d.mv_size);
            continue;
        }
        uint64_t id = get_be64(d.mv_data);
        if (sx_store_get_record(v->st, v->txn, id, &r, &e)) {
            sx_problem(&v->report, "%s entry names record %llu, which does not exist", what,
                    (unsigned long long)id);
            continue;
        }
        char kb[68];
        MDB_val want = val(r.hash, 32);
        uint8_t ak[4];
        if (dbi == v->st->by_path) want = string_key(r.resolved, kb);
        if (dbi == v->st->by_artist) {
            put_be32(ak, r.artist_id);
            want = val(ak, 4);
        }
        if (want.mv_size != k.mv_size || memcmp(want.mv_data, k.mv_data, k.mv_size))
            sx_problem(&v->report, "%s entry for record %llu does not match the record", what,
                    (unsigned long long)id);
    }
    mdb_cursor_close(c);
}

static int verify_artist(void *ctx, uint32_t id, const char *name, uint64_t count) {
    verify_ctx *v = ctx;
    uint64_t have = id < v->n_artist ? v->artist_count[id] : 0;
    if (have != count)
        sx_problem(&v->report, "artist '%s' counts %llu images but %llu records name it", name,
                (unsigned long long)count, (unsigned long long)have);
    uint32_t back;
    siamidx_error e;
    if (sx_store_artist_id(v->st, v->txn, name, &back, &e) || back != id)
        sx_problem(&v->report, "artist '%s': name lookup does not lead back to id %u", name, id);
    if (id < v->n_artist) v->artist_count[id] = 0; /* seen */
    return 0;
}

siamidx_status sx_store_verify(sx_store *st, MDB_txn *txn, siamidx_problem_fn fn, void *ctx,
                               size_t *n_problems, siamidx_error *err) {
    verify_ctx v = {.st = st, .txn = txn, .report = {fn, ctx, 0}};
    siamidx_status s = sx_store_foreach_record(st, txn, verify_record, &v, err);
    if (s == SIAMIDX_ERR_INDEX_CORRUPT) { /* a record that does not decode is a finding */
        sx_problem(&v.report, "%s", err ? err->message : "a record does not decode");
        s = SIAMIDX_OK;
    }
    if (!s) {
        verify_lookup(&v, st->by_path, "path lookup");
        verify_lookup(&v, st->by_hash, "hash lookup");
        verify_lookup(&v, st->by_artist, "artist list");
        s = sx_store_foreach_artist(st, txn, verify_artist, &v, err);
        for (size_t i = 0; !s && i < v.n_artist; i++)
            if (v.artist_count[i])
                sx_problem(&v.report, "artist %zu has %llu records but no artist entry", i,
                        (unsigned long long)v.artist_count[i]);
    }
    free(v.artist_count);
    *n_problems = v.report.count;
    return s;
}

/* test_ivfpq.c - IVF-PQ with a durable training: trained once on a sample and
   kept in LMDB (info names it; a rebuild reuses it, same answers), adopted
   by other indexes (--ivf-from: errors for a flat source or another model /
   dimension, the target unchanged), nprobe (0 and flat refused), a snapshot
   of a replaced training never used, and two shards of one training merged
   with FAISS's merge_from answering exactly as one index built over both. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "index_fixture.h"
#include "index/index.h"
#include "store/store.h"
#include "store/vindex.h"

#define DIM 32
#define FP "77ee77ee"
#define N_TRAIN 12000
#define N_QUERIES 200
#define K 10

static char base[4096];

static void path_of(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", base, name);
}

/* Clustered unit vectors (200 centres; each vector a centre plus noise of a
   third of its norm): searches then have real near neighbours. */
static float *clustered(size_t n, uint64_t seed) {
    enum { CENTRES = 200 };
    uint64_t cs = 99; /* the same centres for every call */
    float *c = fixture_unit_vectors(CENTRES, DIM, cs);
    float *v = malloc(n * DIM * sizeof *v);
    for (size_t i = 0; i < n; i++) {
        size_t k = (size_t)((fixture_frand(&seed) + 0.5f) * CENTRES) % CENTRES;
        double norm = 0;
        for (int d = 0; d < DIM; d++) {
            float x = c[k * DIM + d] + 0.33f * fixture_frand(&seed) * 3.4f / sqrtf(DIM);
            v[i * DIM + d] = x;
            norm += (double)x * x;
        }
        for (int d = 0; d < DIM; d++) v[i * DIM + d] /= (float)sqrt(norm);
    }
    free(c);
    return v;
}

static siamidx_index *open_typed(const char *name, const char *fp, uint32_t dim, const char *type,
                                 int read_only) {
    char p[4200];
    path_of(p, sizeof p, name);
    siamidx_index_options o;
    siamidx_index_options_init(&o);
    o.create = !read_only;
    o.read_only = read_only;
    o.index_type = type;
    siamidx_index *idx = NULL;
    siamidx_error err;
    if (sx_index_open_raw(p, fp, dim, "test", "avg", &o, &idx, &err))
        fprintf(stderr, "open %s: %s\n", p, err.message);
    return idx;
}

/* Items [from, to) of v, paths /img/<i>.jpg, in batches through the index. */
static void add_range(siamidx_index *idx, const float *v, size_t from, size_t to) {
    enum { B = 1000 };
    static sx_index_item items[B];
    static char paths[B][32];
    for (size_t at = from; at < to; at += B) {
        size_t m = to - at < B ? to - at : B;
        memset(items, 0, sizeof items);
        for (size_t i = 0; i < m; i++) {
            snprintf(paths[i], 32, "/img/%zu.jpg", at + i);
            items[i].path = items[i].resolved = paths[i];
            items[i].artist = (at + i) % 3 ? "a" : "b";
            items[i].hash[0] = (uint8_t)(at + i);
            items[i].hash[1] = (uint8_t)((at + i) >> 8);
            items[i].hash[2] = (uint8_t)((at + i) >> 16);
            items[i].embedding = v + (at + i) * DIM;
        }
        siamidx_error err;
        siamidx_status s = sx_index_add_embeddings(idx, items, m, &err);
        CHECK_MSG(s == SIAMIDX_OK, "%s", err.message);
    }
}

/* The same records written straight into the store, the FAISS index not told
   (as a merge commits a shard's records before it moves the codes). */
typedef struct raw_ctx {
    const float *v;
    size_t from, to;
} raw_ctx;

static siamidx_status write_raw(sx_wtxn *w, void *ctx, siamidx_error *err) {
    raw_ctx *c = ctx;
    for (size_t i = c->from; i < c->to; i++) {
        char path[32];
        snprintf(path, sizeof path, "/img/%zu.jpg", i);
        sx_record r = {.path = path, .resolved = path, .dim = DIM, .embedding = c->v + i * DIM};
        r.hash[0] = (uint8_t)i, r.hash[1] = (uint8_t)(i >> 8), r.hash[2] = (uint8_t)(i >> 16);
        siamidx_status s = sx_store_put_record(w, &r, i % 3 ? "a" : "b", err);
        if (s) return s;
    }
    return SIAMIDX_OK;
}

static siamidx_index_info info_of(siamidx_index *idx) {
    siamidx_index_info info;
    siamidx_error err;
    CHECK(siamidx_index_info_get(idx, &info, &err) == SIAMIDX_OK);
    return info;
}

/* Top-K of each query as resolved paths' numbers (-1 past the end) and sims. */
static void search_all(siamidx_index *idx, const float *q, long *hits, float *sims) {
    int64_t ids[N_QUERIES * K];
    siamidx_error err;
    CHECK(siamidx_index_search(idx, q, N_QUERIES, K, ids, sims, &err) == SIAMIDX_OK);
    MDB_txn *txn;
    CHECK(sx_store_read_begin(sx_index_store(idx), &txn, &err) == SIAMIDX_OK);
    for (int i = 0; i < N_QUERIES * K; i++) {
        sx_record r;
        hits[i] = -1;
        if (ids[i] >= 0 && !sx_store_get_record(sx_index_store(idx), txn, (uint64_t)ids[i], &r, &err))
            hits[i] = atol(r.path + 5);
    }
    sx_store_read_end(txn);
}

/* Share of the exact top-K (brute force over v[0..n)) that the index returns. */
static double recall_at_k(siamidx_index *idx, const float *v, size_t n, const float *q) {
    long hits[N_QUERIES * K];
    float sims[N_QUERIES * K];
    search_all(idx, q, hits, sims);
    size_t found = 0;
    float *s = malloc(n * sizeof *s);
    for (int i = 0; i < N_QUERIES; i++) {
        for (size_t j = 0; j < n; j++) {
            float d = 0;
            for (int t = 0; t < DIM; t++) d += q[i * DIM + t] * v[j * DIM + t];
            s[j] = d;
        }
        for (int r = 0; r < K; r++) { /* the r-th best, by selection */
            size_t best = 0;
            for (size_t j = 1; j < n; j++)
                if (s[j] > s[best]) best = j;
            for (int h = 0; h < K; h++) found += hits[i * K + h] == (long)best;
            s[best] = -INFINITY;
        }
    }
    free(s);
    return (double)found / (N_QUERIES * K);
}

static int same_answers(const long *ha, const float *sa, const long *hb, const float *sb) {
    int same = 1;
    for (int i = 0; i < N_QUERIES * K; i++)
        if (ha[i] != hb[i] || fabsf(sa[i] - sb[i]) > 1e-5f) {
            if (same)
                fprintf(stderr, "answer %d differs: %ld %.6f vs %ld %.6f\n", i, ha[i], sa[i],
                        hb[i], sb[i]);
            same = 0;
        }
    return same;
}

static void rm_snapshots(const char *name) {
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "rm -f '%s/%s'/vectors.*", base, name);
    CHECK(system(cmd) == 0);
}

/* Trains on a sample, keeps the training, and a rebuild gives the same answers. */
static void test_train_and_rebuild(const float *v, const float *q) {
    siamidx_index *idx = open_typed("src", FP, DIM, "ivfpq", 0);
    add_range(idx, v, 0, 9000);
    siamidx_index_info info = info_of(idx);
    CHECK_MSG(!strcmp(info.faiss, "Flat") && info.ivf_nlist == 0, "%s", info.faiss);
    siamidx_index_info_free(&info);
    add_range(idx, v, 9000, N_TRAIN);
    info = info_of(idx);
    sx_ivf_info want; /* trained when the batches reached 10,000 vectors, not since */
    sx_vindex_ivfpq_params(IVFPQ_MIN_VECTORS, DIM, &want);
    CHECK_MSG(info.ivf_nlist == want.nlist && info.pq_m == DIM / 8 && info.pq_nbits == 8 &&
                  info.ivf_trained_on == want.trained_on && !info.ivf_imported &&
                  strlen(info.ivf_tag) == 16,
              "nlist %u m %u nbits %u trained on %llu", info.ivf_nlist, info.pq_m, info.pq_nbits,
              (unsigned long long)info.ivf_trained_on);
    char desc[80];
    snprintf(desc, sizeof desc, "%s@%s", want.desc, info.ivf_tag);
    CHECK_MSG(!strcmp(info.faiss, desc), "%s, not %s", info.faiss, desc);
    CHECK(info.nprobe == want.nprobe);
    siamidx_index_info_free(&info);
    double recall = recall_at_k(idx, v, N_TRAIN, q);
    /* 4-byte codes of 32 dims alone find ~0.37 of the top 10; re-ranked top 100, most */
    CHECK_MSG(recall > 0.9, "recall@10 %.3f", recall);
    long h1[N_QUERIES * K], h2[N_QUERIES * K];
    float s1[N_QUERIES * K], s2[N_QUERIES * K];
    search_all(idx, q, h1, s1);
    CHECK(fixture_problems(idx) == 0);
    siamidx_index_close(idx);

    /* From the snapshot, then with no snapshot: the store's training, not a new one. */
    idx = open_typed("src", FP, DIM, NULL, 1);
    search_all(idx, q, h2, s2);
    CHECK(same_answers(h1, s1, h2, s2));
    siamidx_index_close(idx);
    rm_snapshots("src");
    idx = open_typed("src", FP, DIM, NULL, 1);
    info = info_of(idx);
    CHECK_MSG(!strcmp(info.faiss, desc), "rebuilt as %s", info.faiss);
    siamidx_index_info_free(&info);
    search_all(idx, q, h2, s2);
    CHECK(same_answers(h1, s1, h2, s2));
    CHECK(fixture_problems(idx) == 0);
    siamidx_index_close(idx);
}

static void test_nprobe(const float *v) {
    siamidx_index *idx = open_typed("src", FP, DIM, NULL, 1);
    siamidx_error err;
    CHECK(siamidx_index_set_nprobe(idx, 0, &err) == SIAMIDX_ERR_INVALID_ARGUMENT);
    CHECK(siamidx_index_set_nprobe(idx, 1, &err) == SIAMIDX_OK);
    siamidx_index_info info = info_of(idx);
    CHECK(info.nprobe == 1);
    unsigned nlist = info.ivf_nlist;
    siamidx_index_info_free(&info);
    /* Queries off the clusters: their neighbours lie in several lists. */
    float *off = fixture_unit_vectors(N_QUERIES, DIM, 3);
    double one = recall_at_k(idx, v, N_TRAIN, off);
    CHECK(siamidx_index_set_nprobe(idx, nlist, &err) == SIAMIDX_OK);
    double all = recall_at_k(idx, v, N_TRAIN, off);
    free(off);
    CHECK_MSG(all > one + 0.05, "nprobe 1: %.3f, nprobe %u: %.3f", one, nlist, all);
    siamidx_index_close(idx);

    idx = open_typed("flat", FP, DIM, "flat", 0);
    add_range(idx, v, 0, 100);
    CHECK(siamidx_index_set_nprobe(idx, 4, &err) == SIAMIDX_ERR_INVALID_ARGUMENT &&
          strstr(err.message, "flat"));
    siamidx_index_close(idx);
}

/* Bad --ivf-from: the target is left exactly as it was. */
static void test_ivf_from_errors(const float *v) {
    siamidx_index *other_model = open_typed("other_model", "0b0b0b0b", DIM, "ivfpq", 0);
    add_range(other_model, v, 0, N_TRAIN);
    siamidx_index_close(other_model);
    float *v16 = fixture_unit_vectors(N_TRAIN, 16, 5);
    siamidx_index *other_dim = open_typed("other_dim", FP, 16, "ivfpq", 0);
    /* 16-d items: the add_range helper is for DIM, so a small loop here */
    for (size_t at = 0; at < N_TRAIN; at += 1000) {
        sx_index_item items[1000];
        char paths[1000][32];
        memset(items, 0, sizeof items);
        for (size_t i = 0; i < 1000; i++) {
            snprintf(paths[i], 32, "/d16/%zu.jpg", at + i);
            items[i].path = items[i].resolved = paths[i];
            items[i].artist = "a";
            items[i].hash[0] = (uint8_t)(at + i), items[i].hash[1] = (uint8_t)((at + i) >> 8);
            items[i].embedding = v16 + (at + i) * 16;
        }
        siamidx_error err;
        CHECK(sx_index_add_embeddings(other_dim, items, 1000, &err) == SIAMIDX_OK);
    }
    siamidx_index_close(other_dim);
    free(v16);

    siamidx_index *t = open_typed("target", FP, DIM, "flat", 0);
    add_range(t, v, 0, 50);
    siamidx_index_info before = info_of(t);
    const char *bad[] = {"flat", "other_model", "other_dim", "no_such_index"};
    siamidx_status want[] = {SIAMIDX_ERR_INVALID_ARGUMENT, SIAMIDX_ERR_MODEL_MISMATCH,
                             SIAMIDX_ERR_MODEL_MISMATCH, SIAMIDX_ERR_NOT_FOUND};
    const char *says[] = {"no trained IVF-PQ", "0b0b0b0b", "16-dimensional", "no_such_index"};
    for (int i = 0; i < 4; i++) {
        char p[4200];
        path_of(p, sizeof p, bad[i]);
        siamidx_error err = {0};
        siamidx_status s = siamidx_index_ivf_from(t, p, &err);
        CHECK_MSG(s == want[i] && strstr(err.message, says[i]), "%s: %d %s", bad[i], s,
                  err.message);
        siamidx_index_info after = info_of(t);
        CHECK_MSG(after.generation == before.generation && !strcmp(after.index_type, "flat") &&
                      !strcmp(after.faiss, "Flat") && after.ivf_nlist == 0,
                  "%s changed the target: gen %llu type %s", bad[i],
                  (unsigned long long)after.generation, after.index_type);
        siamidx_index_info_free(&after);
    }
    siamidx_index_info_free(&before);
    siamidx_index_close(t);
}

/* Shards of one training merged with merge_from == one index built over both. */
static void test_merge(const float *v, const float *q) {
    char src[4200];
    path_of(src, sizeof src, "src");
    siamidx_index *src_idx = open_typed("src", FP, DIM, NULL, 1);
    siamidx_index_info si = info_of(src_idx);
    siamidx_index_close(src_idx);
    const size_t lo = N_TRAIN, mid = N_TRAIN + 1500, hi = N_TRAIN + 3000; /* the shards' vectors */
    const char *names[] = {"shard1", "shard2", "single", "out"};
    siamidx_index *x[4];
    siamidx_error err;
    for (int i = 0; i < 4; i++) {
        x[i] = open_typed(names[i], FP, DIM, NULL, 0);
        CHECK_MSG(siamidx_index_ivf_from(x[i], src, &err) == SIAMIDX_OK, "%s", err.message);
    }
    add_range(x[0], v, lo, mid);
    add_range(x[1], v, mid, hi);
    add_range(x[2], v, lo, hi);
    /* A small shard is IVF-PQ from its first vector: the source's training. */
    siamidx_index_info i1 = info_of(x[0]);
    CHECK_MSG(strstr(i1.faiss, si.ivf_tag) && i1.ivf_imported && i1.ivf_nlist == si.ivf_nlist,
              "shard: %s", i1.faiss);
    siamidx_index_info_free(&i1);
    /* Adopting the same training again (a re-run) changes nothing. */
    i1 = info_of(x[0]);
    CHECK(siamidx_index_ivf_from(x[0], src, &err) == SIAMIDX_OK);
    siamidx_index_info i2 = info_of(x[0]);
    CHECK(i2.generation == i1.generation);
    siamidx_index_info_free(&i1);
    siamidx_index_info_free(&i2);
    siamidx_index_close(x[0]);
    siamidx_index_close(x[1]);

    for (int sh = 0; sh < 2; sh++) {
        raw_ctx c = {v, sh ? mid : lo, sh ? hi : mid};
        CHECK(sx_store_write(sx_index_store(x[3]), write_raw, &c, &err) == SIAMIDX_OK);
        siamidx_index *shard = open_typed(names[sh], FP, DIM, NULL, 1);
        int merged = 0;
        CHECK_MSG(sx_index_merge_ivf(x[3], shard, &merged, &err) == SIAMIDX_OK, "%s", err.message);
        CHECK_MSG(merged, "shard %d was re-encoded, not merged", sh);
        siamidx_index_close(shard);
    }
    long hm[N_QUERIES * K], hs[N_QUERIES * K];
    float sm[N_QUERIES * K], ss[N_QUERIES * K];
    search_all(x[3], q, hm, sm);
    search_all(x[2], q, hs, ss);
    CHECK(same_answers(hm, sm, hs, ss));
    CHECK(fixture_problems(x[3]) == 0);
    siamidx_index_close(x[3]);
    siamidx_index_close(x[2]);
    /* And after a reopen (snapshot) and a rebuild from the records. */
    siamidx_index *out = open_typed("out", FP, DIM, NULL, 1);
    search_all(out, q, hm, sm);
    CHECK(same_answers(hm, sm, hs, ss));
    siamidx_index_close(out);
    rm_snapshots("out");
    out = open_typed("out", FP, DIM, NULL, 1);
    search_all(out, q, hm, sm);
    CHECK(same_answers(hm, sm, hs, ss));
    siamidx_index_close(out);

    /* siamidx_index_merge does the same: the codes of both shards move as they are. */
    siamidx_index *out3 = open_typed("out3", FP, DIM, NULL, 0);
    CHECK(siamidx_index_ivf_from(out3, src, &err) == SIAMIDX_OK);
    char d1[4200], d2[4200];
    path_of(d1, sizeof d1, names[0]);
    path_of(d2, sizeof d2, names[1]);
    const char *dirs[] = {d1, d2};
    siamidx_merge_report mr;
    CHECK_MSG(siamidx_index_merge(out3, dirs, 2, NULL, &mr, &err) == SIAMIDX_OK, "%s", err.message);
    CHECK_MSG(mr.shards == 2 && mr.added == hi - lo && mr.codes_moved == 2,
              "merge: %zu shards, %zu added, %zu moved as codes", mr.shards, mr.added,
              mr.codes_moved);
    search_all(out3, q, hm, sm);
    CHECK(same_answers(hm, sm, hs, ss));
    CHECK(fixture_problems(out3) == 0);
    siamidx_index_close(out3);

    /* A shard of another training is not merged but encoded again: same answers. */
    siamidx_index *alien = open_typed("alien", FP, DIM, "ivfpq", 0);
    add_range(alien, v, 1, N_TRAIN); /* its own training: another sample */
    siamidx_index *out2 = open_typed("out2", FP, DIM, NULL, 0);
    CHECK(siamidx_index_ivf_from(out2, src, &err) == SIAMIDX_OK);
    raw_ctx c = {v, lo, hi};
    CHECK(sx_store_write(sx_index_store(out2), write_raw, &c, &err) == SIAMIDX_OK);
    int merged = 1;
    CHECK(sx_index_merge_ivf(out2, alien, &merged, &err) == SIAMIDX_OK && !merged);
    search_all(out2, q, hm, sm);
    CHECK(same_answers(hm, sm, hs, ss));
    siamidx_index_close(out2);
    siamidx_index_close(alien);
    siamidx_index_info_free(&si);
}

/* A training replaced by a writer that then died before saving: the old
   training's snapshot (still recorded) is never used. */
static void test_replaced_training(const float *v, const float *q) {
    siamidx_index *idx = open_typed("alien", FP, DIM, NULL, 1);
    siamidx_index_info before = info_of(idx);
    siamidx_index_close(idx);
    /* The writer is this program again (a fresh process: no OpenMP pool inherited). */
    pid_t pid = fork();
    if (pid == 0) {
        execl("/proc/self/exe", "test_ivfpq", "--replace-and-die", base, (char *)NULL);
        _exit(127);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    idx = open_typed("alien", FP, DIM, NULL, 1);
    siamidx_index_info after = info_of(idx);
    siamidx_index *s = open_typed("src", FP, DIM, NULL, 1);
    siamidx_index_info si = info_of(s);
    siamidx_index_close(s);
    CHECK_MSG(strcmp(before.ivf_tag, after.ivf_tag) && !strcmp(after.ivf_tag, si.ivf_tag) &&
                  strstr(after.faiss, si.ivf_tag),
              "before %s after %s (%s)", before.ivf_tag, after.ivf_tag, after.faiss);
    CHECK(fixture_problems(idx) == 0);
    (void)v, (void)q;
    siamidx_index_info_free(&before);
    siamidx_index_info_free(&after);
    siamidx_index_info_free(&si);
    siamidx_index_close(idx);
}

/* ---- the CLI: build --ivf-from, info, query --nprobe, and their errors ---------------- */

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...) {
    char cmd[16384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static int file_has(const char *path, const char *text) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return strstr(buf, text) != NULL;
}

static void test_cli(const float *v) {
    const char *bin = getenv("SIAMIDX_BIN"), *data = getenv("SIAMIDX_TEST_DATA");
    if (!bin || !data) {
        fprintf(stderr, "test_cli skipped: SIAMIDX_BIN / SIAMIDX_TEST_DATA not set\n");
        return;
    }
    char model_path[4200];
    snprintf(model_path, sizeof model_path, "%s/model/tiny_resnet18.safetensors", data);
    siamidx_model *model;
    siamidx_error err;
    CHECK_MSG(siamidx_model_load(model_path, &model, &err) == SIAMIDX_OK, "%s", err.message);
    if (check_failures) return;
    siamidx_pool pool = siamidx_model_default_pool(model);
    CHECK(siamidx_model_dim(model, pool) == DIM);
    /* A trained source of the model's fingerprint, from synthetic vectors. */
    char p[4200];
    path_of(p, sizeof p, "cli_src");
    siamidx_index_options o;
    siamidx_index_options_init(&o);
    o.create = 1;
    o.index_type = "ivfpq";
    siamidx_index *src = NULL;
    CHECK(sx_index_open_raw(p, siamidx_model_fingerprint(model), DIM, siamidx_model_arch(model),
                            siamidx_pool_name(pool), &o, &src, &err) == SIAMIDX_OK);
    add_range(src, v, 0, IVFPQ_MIN_VECTORS);
    siamidx_index_info si = info_of(src);
    siamidx_index_close(src);
    siamidx_model_free(model);
    CHECK(si.ivf_nlist > 0);

    char b[4200]; /* the CLI's files, apart from the indexes above */
    snprintf(b, sizeof b, "%s/cli", base);
    mkdir(b, 0777);
    const char *srcdir = base; /* where cli_src and other_model lie */
    CHECK(sh("python3 '%s/../../tools/make_test_bmps.py' '%s/col' 3 4 > /dev/null", data, b) == 0);
    CHECK(sh("'%s' build '%s/col' -i '%s/shard' -m '%s' --ivf-from '%s/cli_src' --quiet > '%s/out' 2>&1",
             bin, b, b, model_path, srcdir, b) == 0);
    CHECK(sh("'%s' info -i '%s/shard' --json > '%s/info.json'", bin, b, b) == 0);
    char path[4300], tag[64];
    snprintf(path, sizeof path, "%s/info.json", b);
    snprintf(tag, sizeof tag, "\"tag\":\"%s\"", si.ivf_tag); /* docs/json.md: compact */
    CHECK_MSG(file_has(path, tag) && file_has(path, "\"imported\":true") &&
                  file_has(path, "\"index_type\":\"ivfpq\""),
              "info of the shard lacks the source's training %s", si.ivf_tag);
    CHECK(sh("'%s' info -i '%s/shard' | grep -q 'ivf-pq .*nlist %u.*(imported), tag %s'", bin, b,
             si.ivf_nlist, si.ivf_tag) == 0);
    CHECK(sh("'%s' query '%s/col/artist_0/img_0.bmp' -i '%s/shard' -m '%s' --nprobe 2 > /dev/null",
             bin, b, b, model_path) == 0);
    CHECK(sh("'%s' verify -i '%s/shard' > /dev/null", bin, b) == 0);
    /* nprobe 0, nprobe on a flat index, ivf-from with another type: usage errors */
    CHECK(sh("'%s' query '%s/col/artist_0/img_0.bmp' -i '%s/shard' -m '%s' --nprobe 0 2>/dev/null",
             bin, b, b, model_path) == 2);
    CHECK(sh("'%s' build '%s/col' -i '%s/flat' -m '%s' --quiet > /dev/null 2>&1", bin, b, b,
             model_path) == 0);
    snprintf(path, sizeof path, "%s/err", b);
    CHECK(sh("'%s' query '%s/col/artist_0/img_0.bmp' -i '%s/flat' -m '%s' --nprobe 4 2>'%s/err'",
             bin, b, b, model_path, b) == 2);
    CHECK(file_has(path, "type flat"));
    CHECK(sh("'%s' build '%s/col' -i '%s/x' -m '%s' --ivf-from '%s/cli_src' --index-type hnsw 2>/dev/null",
             bin, b, b, model_path, srcdir) == 2);
    /* ivf-from a flat index / another model: errors; the target unchanged or never made */
    CHECK(sh("'%s' dump -i '%s/flat' > '%s/dump1'; '%s' info -i '%s/flat' > '%s/info1'", bin, b, b,
             bin, b, b) == 0);
    const char *bad[] = {"cli/flat", "other_model"};
    const char *says[] = {"no trained IVF-PQ", "was built with model"};
    for (int i = 0; i < 2; i++) {
        CHECK(sh("'%s' build '%s/col' -i '%s/new' -m '%s' --ivf-from '%s/%s' 2>'%s/err' >/dev/null",
                 bin, b, b, model_path, srcdir, bad[i], b) == 1);
        CHECK_MSG(file_has(path, says[i]), "--ivf-from %s: no '%s'", bad[i], says[i]);
        CHECK(sh("test ! -e '%s/new'", b) == 0);
        CHECK(sh("'%s' build '%s/col' -i '%s/flat' -m '%s' --ivf-from '%s/%s' 2>/dev/null >/dev/null",
                 bin, b, b, model_path, srcdir, bad[i]) == 1);
        CHECK(sh("'%s' dump -i '%s/flat' | cmp -s - '%s/dump1' && '%s' info -i '%s/flat' | "
                 "cmp -s - '%s/info1'", bin, b, b, bin, b, b) == 0);
    }
    siamidx_index_info_free(&si);
}

/* The child of test_replaced_training: adopts src's training, exits unclosed. */
static int replace_and_die(void) {
    char src[4200];
    path_of(src, sizeof src, "src");
    siamidx_index *w = open_typed("alien", FP, DIM, NULL, 0);
    siamidx_error err;
    _exit(w && siamidx_index_ivf_from(w, src, &err) == SIAMIDX_OK ? 0 : 1);
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--replace-and-die")) {
        snprintf(base, sizeof base, "%s", argv[2]);
        return replace_and_die();
    }
    const char *tmp = getenv("SIAMIDX_TMP");
    if (!tmp) tmp = "/tmp";
    mkdir(tmp, 0777);
    snprintf(base, sizeof base, "%s/test_ivfpq.%d", tmp, (int)getpid());
    mkdir(base, 0777);
    float *v = clustered(N_TRAIN + 3000, 1);
    float *q = clustered(N_QUERIES, 2);
    test_train_and_rebuild(v, q);
    test_nprobe(v);
    test_ivf_from_errors(v);
    test_merge(v, q);
    test_replaced_training(v, q);
    test_cli(v); /* after test_ivf_from_errors: uses its "other_model" */
    free(v);
    free(q);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    CHECK(system(cmd) == 0);
    CHECK_DONE();
}

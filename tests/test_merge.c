/* test_merge.c - siamidx_index_merge over precomputed embeddings: two shards
   merged equal one index of the same items (records, embeddings, searches);
   idempotence; refusals (conflicting path, conflicting bytes, another model,
   OUT itself) that leave OUT unchanged; a shard split over several
   transactions; the shard function. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "index_fixture.h"
#include "index/index.h"

#define DIM 16
#define FP "f1f1f1f1"
#define N 120

static char root[4096];
static float *vectors;

static void path_of(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", root, name);
}

/* Items [from, to): /img/J.jpg by artist_(J % 3), hash from J, vector J. */
static void add_items(siamidx_index *idx, size_t from, size_t to) {
    size_t n = to - from;
    sx_index_item *items = calloc(n, sizeof *items);
    char (*paths)[64] = calloc(n, 64), (*artists)[32] = calloc(n, 32);
    for (size_t i = 0; i < n; i++) {
        size_t j = from + i;
        snprintf(paths[i], 64, "/img/%zu.jpg", j);
        snprintf(artists[i], 32, "artist_%zu", j % 3);
        items[i].path = items[i].resolved = paths[i];
        items[i].artist = artists[i];
        items[i].title = j % 2 ? "a title" : NULL;
        items[i].size = j;
        items[i].mtime_ns = (int64_t)j * 1000;
        items[i].hash[0] = (uint8_t)j;
        items[i].hash[1] = (uint8_t)(j >> 8);
        items[i].embedding = vectors + j * DIM;
    }
    siamidx_error err;
    siamidx_status s = sx_index_add_embeddings(idx, items, n, &err);
    CHECK_MSG(s == SIAMIDX_OK, "add: %s", err.message);
    free(items);
    free(paths);
    free(artists);
}

/* One item of its own (path, artist, the hash of item `like`). */
static void add_one(siamidx_index *idx, const char *path, const char *artist, size_t like) {
    sx_index_item it = {.path = path, .resolved = path, .artist = artist, .size = 1,
                        .embedding = vectors + like * DIM};
    it.hash[0] = (uint8_t)like;
    it.hash[1] = (uint8_t)(like >> 8);
    siamidx_error err;
    CHECK_MSG(sx_index_add_embeddings(idx, &it, 1, &err) == SIAMIDX_OK, "add: %s", err.message);
}

static siamidx_index *make_index(const char *name, const char *fp, size_t from, size_t to) {
    char p[4200];
    path_of(p, sizeof p, name);
    siamidx_index *idx = fixture_open_raw(p, fp, DIM, 0);
    CHECK(idx != NULL);
    if (idx && to > from) add_items(idx, from, to);
    return idx;
}

/* A fresh index without a model, as `merge -i NEW` opens one. */
static siamidx_index *open_new(const char *name) {
    char p[4200];
    path_of(p, sizeof p, name);
    siamidx_index_options o;
    siamidx_index_options_init(&o);
    o.create = 1;
    siamidx_index *idx = NULL;
    siamidx_error err;
    CHECK_MSG(sx_index_open_raw(p, NULL, 0, NULL, NULL, &o, &idx, &err) == SIAMIDX_OK, "open: %s",
              err.message);
    return idx;
}

/* "path artist e0 e1 ..." of every record, sorted by path, in one string. */
typedef struct dump {
    char *text;
    size_t len, cap;
} dump;

static int dump_record(void *ctx, const siamidx_index_record *r) {
    dump *d = ctx;
    char line[1024];
    int n = snprintf(line, sizeof line, "%s\t%s\t%02x%02x\t%llu", r->path, r->artist, r->hash[0],
                     r->hash[1], (unsigned long long)r->size);
    for (uint32_t i = 0; i < r->dim && n < (int)sizeof line - 16; i++)
        n += snprintf(line + n, sizeof line - (size_t)n, " %.7g", r->embedding[i]);
    line[n++] = '\n';
    if (d->len + (size_t)n + 1 > d->cap) {
        d->cap = (d->len + (size_t)n + 1) * 2;
        d->text = realloc(d->text, d->cap);
    }
    memcpy(d->text + d->len, line, (size_t)n);
    d->len += (size_t)n;
    d->text[d->len] = 0;
    return 0;
}

static int cmp_lines(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The records as sorted lines (ids differ between indexes, contents must not). */
static char *records_of(siamidx_index *idx) {
    dump d = {0};
    siamidx_error err;
    CHECK(siamidx_index_foreach_record(idx, dump_record, &d, &err) == SIAMIDX_OK);
    if (!d.text) return calloc(1, 1);
    size_t n = 0;
    char **lines = malloc((d.len + 1) * sizeof *lines);
    for (char *p = strtok(d.text, "\n"); p; p = strtok(NULL, "\n")) lines[n++] = p;
    qsort(lines, n, sizeof *lines, cmp_lines);
    char *out = malloc(d.len + 2);
    size_t len = 0;
    for (size_t i = 0; i < n; i++) len += (size_t)sprintf(out + len, "%s\n", lines[i]);
    out[len] = 0;
    free(lines);
    free(d.text);
    return out;
}

static uint64_t generation(siamidx_index *idx) {
    siamidx_index_info info;
    siamidx_error err;
    CHECK(siamidx_index_info_get(idx, &info, &err) == SIAMIDX_OK);
    uint64_t g = info.generation;
    siamidx_index_info_free(&info);
    return g;
}

/* The nearest neighbours' paths of a few items, one string. */
static void neighbours(siamidx_index *idx, char *out, size_t cap) {
    size_t len = 0;
    for (size_t q = 0; q < N; q += 17) {
        sx_neighbors nb;
        siamidx_error err;
        CHECK(sx_index_neighbors(idx, vectors + q * DIM, 5, &nb, &err) == SIAMIDX_OK);
        for (size_t i = 0; i < nb.n; i++)
            len += (size_t)snprintf(out + len, cap - len, "%s:%.5f ", nb.nb[i].path,
                                    nb.nb[i].similarity);
        sx_neighbors_free(&nb);
    }
}

static void count_conflict(void *ctx, const char *line) {
    (void)line;
    (*(int *)ctx)++;
}

static void test_shard_of(void) {
    uint8_t h[32] = {0};
    h[7] = 5; /* the first 8 bytes read big-endian: 5 */
    CHECK(siamidx_shard_of(h, 4) == 1);
    CHECK(siamidx_shard_of(h, 5) == 0);
    CHECK(siamidx_shard_of(h, 1) == 0);
    CHECK(siamidx_shard_of(h, 0) == 0);
    h[0] = 1; /* 2^56 + 5 */
    CHECK(siamidx_shard_of(h, 7) == (uint32_t)(((1ull << 56) + 5) % 7));
    h[31] = 0xff; /* only the first 8 bytes count */
    CHECK(siamidx_shard_of(h, 7) == (uint32_t)(((1ull << 56) + 5) % 7));
}

int main(void) {
    const char *tmp = getenv("SIAMIDX_TMP");
    if (!tmp) tmp = "/tmp";
    mkdir(tmp, 0777);
    snprintf(root, sizeof root, "%s/test_merge.%d", tmp, (int)getpid());
    mkdir(root, 0777);
    vectors = fixture_unit_vectors(N, DIM, 7);
    test_shard_of();

    siamidx_index *whole = make_index("whole", FP, 0, N);
    siamidx_index *a = make_index("a", FP, 0, N / 2);
    siamidx_index *b = make_index("b", FP, N / 2, N);
    siamidx_index_close(a);
    siamidx_index_close(b);
    char pa[4200], pb[4200], pout[4200];
    path_of(pa, sizeof pa, "a");
    path_of(pb, sizeof pb, "b");
    path_of(pout, sizeof pout, "out");
    const char *both[] = {pa, pb};

    /* Two shards into a new index: the same records and answers as one index. */
    siamidx_index *out = open_new("out");
    siamidx_merge_report rep;
    siamidx_error err;
    siamidx_status s = siamidx_index_merge(out, both, 2, NULL, &rep, &err);
    CHECK_MSG(s == SIAMIDX_OK, "merge: %s", err.message);
    CHECK(rep.shards == 2 && rep.records == N && rep.added == N && rep.unchanged == 0);
    CHECK(rep.transactions == 2 && rep.conflicts == 0);
    char *want = records_of(whole), *have = records_of(out);
    CHECK_MSG(!strcmp(want, have), "merged records differ");
    free(have);
    static char n1[8192], n2[8192];
    neighbours(whole, n1, sizeof n1);
    neighbours(out, n2, sizeof n2);
    CHECK_MSG(!strcmp(n1, n2), "searches differ:\n%s\n%s", n1, n2);
    CHECK(fixture_problems(out) == 0);
    CHECK(!strcmp(sx_index_meta(out)->fingerprint, FP) && sx_index_meta(out)->dim == DIM);

    /* Again: nothing written. */
    uint64_t gen = generation(out);
    s = siamidx_index_merge(out, both, 2, NULL, &rep, &err);
    CHECK(s == SIAMIDX_OK && rep.added == 0 && rep.unchanged == N && generation(out) == gen);

    /* Refusals leave OUT as it was. */
    siamidx_index *c = make_index("c", FP, 0, 0);
    add_one(c, "/img/5.jpg", "someone else", 5); /* OUT holds the path by artist_2 */
    siamidx_index_close(c);
    siamidx_index *d = make_index("d", FP, 0, 0);
    add_one(d, "/elsewhere/7.jpg", "someone else", 7); /* OUT holds these bytes by artist_1 */
    siamidx_index_close(d);
    siamidx_index *e = make_index("e", "f2f2f2f2", 0, 3); /* another model */
    siamidx_index_close(e);
    char pc[4200], pd[4200], pe[4200];
    path_of(pc, sizeof pc, "c");
    path_of(pd, sizeof pd, "d");
    path_of(pe, sizeof pe, "e");
    int seen = 0;
    siamidx_merge_options mo;
    siamidx_merge_options_init(&mo);
    mo.conflict = count_conflict;
    mo.conflict_ctx = &seen;
    const char *with_c[] = {pa, pc};
    s = siamidx_index_merge(out, with_c, 2, &mo, &rep, &err);
    CHECK_MSG(s == SIAMIDX_ERR_CONFLICT && strstr(err.message, "/img/5.jpg: by 'someone else'") &&
                  strstr(err.message, "by 'artist_2'"), "%s", err.message);
    CHECK(rep.conflicts == 1 && seen == 1 && rep.added == 0);
    const char *with_d[] = {pd};
    s = siamidx_index_merge(out, with_d, 1, &mo, &rep, &err);
    CHECK_MSG(s == SIAMIDX_ERR_CONFLICT && strstr(err.message, "the same image") &&
                  strstr(err.message, "/img/7.jpg (by 'artist_1'"), "%s", err.message);
    const char *with_e[] = {pb, pe};
    s = siamidx_index_merge(out, with_e, 2, NULL, &rep, &err);
    CHECK_MSG(s == SIAMIDX_ERR_MODEL_MISMATCH && strstr(err.message, "f2f2f2f2") &&
                  strstr(err.message, FP), "%s", err.message);
    const char *self[] = {pout};
    s = siamidx_index_merge(out, self, 1, NULL, &rep, &err);
    CHECK_MSG(s == SIAMIDX_ERR_INVALID_ARGUMENT && strstr(err.message, "itself"), "%s", err.message);
    char pnone[4200];
    path_of(pnone, sizeof pnone, "none");
    const char *missing[] = {pnone};
    CHECK(siamidx_index_merge(out, missing, 1, NULL, &rep, &err) == SIAMIDX_ERR_NOT_FOUND);
    CHECK(generation(out) == gen && fixture_problems(out) == 0);
    have = records_of(out);
    CHECK_MSG(!strcmp(want, have), "a refused merge changed OUT");
    free(have);
    siamidx_index_close(out);

    /* A two-shard merge into a new index whose second shard conflicts with the
       first: the first is merged, the second refused. */
    siamidx_index *out3 = open_new("out3");
    const char *a_then_c[] = {pa, pc};
    s = siamidx_index_merge(out3, a_then_c, 2, NULL, &rep, &err);
    CHECK_MSG(s == SIAMIDX_ERR_CONFLICT && strstr(err.message, "nothing of this shard"), "%s",
              err.message);
    CHECK(rep.added == N / 2 && rep.shards == 1);
    CHECK(fixture_problems(out3) == 0);
    siamidx_index_close(out3);

    /* Shards that hold nothing (made without a model) into a new index: nothing to do. */
    siamidx_index *blank = open_new("blank");
    siamidx_index_close(blank);
    siamidx_index *out4 = open_new("out4");
    char pblank[4200];
    path_of(pblank, sizeof pblank, "blank");
    const char *blanks[] = {pblank, pblank};
    s = siamidx_index_merge(out4, blanks, 2, NULL, &rep, &err);
    CHECK_MSG(s == SIAMIDX_OK && rep.shards == 0 && rep.records == 0, "%s", err.message);
    siamidx_index_close(out4);

    /* Too big for one transaction (write 31 of one fails as MDB_TXN_FULL): halves. */
    setenv("SIAMIDX_TEST_TXN_PUTS", "30", 1);
    siamidx_index *out2 = open_new("out2");
    unsetenv("SIAMIDX_TEST_TXN_PUTS");
    s = siamidx_index_merge(out2, both, 2, NULL, &rep, &err);
    CHECK_MSG(s == SIAMIDX_OK, "split merge: %s", err.message);
    CHECK_MSG(rep.transactions > 2 && rep.added == N, "%zu transactions", rep.transactions);
    have = records_of(out2);
    CHECK_MSG(!strcmp(want, have), "split merge differs");
    free(have);
    CHECK(fixture_problems(out2) == 0);
    siamidx_index_close(out2);

    free(want);
    siamidx_index_close(whole);
    free(vectors);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    CHECK(system(cmd) == 0);
    CHECK_DONE();
}

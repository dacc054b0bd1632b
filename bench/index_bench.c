/*
 * index_bench.c - the index against raw FAISS, in one process.
 *
 *   index_bench N_FLAT N_HNSW [DIR]
 *
 * For flat (N_FLAT vectors) and hnsw (N_HNSW vectors): random 512-d unit
 * vectors are added and 1,000 queries (k = 10) searched, once straight
 * through FAISS's C API (IDMap2 over the same factory string, efSearch 128
 * as siamidx sets it) and once through siamidx (each batch of 10,000 a
 * committed LMDB transaction, then the FAISS update; searches sync with the
 * store and filter every hit through it). Prints throughputs, the ratio and
 * the peak resident memory.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <faiss/c_api/AutoTune_c.h>
#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/error_c.h>
#include <faiss/c_api/index_factory_c.h>

#include "index/index.h"

#define DIM 512
#define N_QUERIES 1000
#define K 10
#define BATCH 10000

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static double peak_gib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / (1024.0 * 1024.0);
}

static void random_units(float *v, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++) {
        double norm = 0;
        for (int d = 0; d < DIM; d++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            float x = (float)((seed >> 40) & 0xffffff) / (float)0xffffff - 0.5f;
            v[i * DIM + d] = x;
            norm += x * x;
        }
        for (int d = 0; d < DIM; d++) v[i * DIM + d] /= (float)sqrt(norm);
    }
}

typedef struct result {
    double add_s, search_s;
    int64_t *top1;
    FaissIndex *raw;    /* kept for the alternating searches */
    siamidx_index *sx;
} result;

#define ROUNDS 2 /* searches alternate raw/siamidx; the best of each counts */

static int raw_faiss(const char *desc, const float *x, size_t n, const float *q, result *r) {
    char full[64];
    snprintf(full, sizeof full, "IDMap2,%s", desc);
    FaissIndex *idx;
    if (faiss_index_factory(&idx, DIM, full, METRIC_INNER_PRODUCT)) return -1;
    if (!strncmp(desc, "HNSW", 4)) {
        FaissParameterSpace *ps;
        faiss_ParameterSpace_new(&ps);
        faiss_ParameterSpace_set_index_parameter(ps, idx, "efSearch", 128);
        faiss_ParameterSpace_free(ps);
    }
    int64_t *ids = malloc(BATCH * sizeof *ids);
    double t = now();
    for (size_t i = 0; i < n; i += BATCH) {
        size_t m = n - i < BATCH ? n - i : BATCH;
        for (size_t j = 0; j < m; j++) ids[j] = (int64_t)(i + j + 1); /* siamidx's ids */
        if (faiss_Index_add_with_ids(idx, (idx_t)m, x + i * DIM, ids)) return -1;
    }
    r->add_s = now() - t;
    free(ids);
    r->raw = idx;
    (void)q;
    return 0;
}

/* One timed search of the 1,000 queries through raw FAISS or siamidx. */
static int search_once(result *r, const float *q, int use_sx) {
    float *sims = malloc(N_QUERIES * K * sizeof *sims);
    int64_t *labels = malloc(N_QUERIES * K * sizeof *labels);
    siamidx_error err;
    double t = now();
    int rc = use_sx ? (int)siamidx_index_search(r->sx, q, N_QUERIES, K, labels, sims, &err)
                    : faiss_Index_search(r->raw, N_QUERIES, q, K, sims, labels);
    t = now() - t;
    if (!rc && (r->search_s == 0 || t < r->search_s)) r->search_s = t;
    if (!r->top1) r->top1 = malloc(N_QUERIES * sizeof *r->top1);
    for (int i = 0; i < N_QUERIES; i++) r->top1[i] = labels[i * K];
    free(sims);
    free(labels);
    return rc;
}

static int via_siamidx(const char *type, const char *dir, const float *x, size_t n,
                       const float *q, result *r, double *close_s) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) return -1;
    siamidx_index_options o;
    siamidx_index_options_init(&o);
    o.create = 1;
    o.index_type = type;
    siamidx_index *idx;
    siamidx_error err;
    if (sx_index_open_raw(dir, "bench", DIM, "none", "avg", &o, &idx, &err)) {
        fprintf(stderr, "%s\n", err.message);
        return -1;
    }
    sx_index_item *items = calloc(BATCH, sizeof *items);
    char (*paths)[32] = malloc(BATCH * 32);
    double t = now();
    for (size_t i = 0; i < n; i += BATCH) {
        size_t m = n - i < BATCH ? n - i : BATCH;
        for (size_t j = 0; j < m; j++) {
            snprintf(paths[j], 32, "/v/%zu", i + j);
            items[j].path = items[j].resolved = paths[j];
            items[j].artist = (i + j) % 2 ? "odd" : "even";
            memcpy(items[j].hash, &(uint64_t){i + j}, 8);
            items[j].embedding = x + (i + j) * DIM;
        }
        if (sx_index_add_embeddings(idx, items, m, &err)) {
            fprintf(stderr, "%s\n", err.message);
            return -1;
        }
    }
    r->add_s = now() - t;
    free(items);
    free(paths);
    r->sx = idx;
    (void)q;
    (void)close_s;
    return 0;
}

static int run(const char *type, const char *desc, size_t n, const char *dir) {
    if (n == 0) return 0;
    float *x = malloc(n * DIM * sizeof *x), *q = malloc(N_QUERIES * DIM * sizeof *q);
    if (!x || !q) return -1;
    random_units(x, n, 12345 + n);
    random_units(q, N_QUERIES, 999);
    result raw = {0}, sx = {0};
    double close_s = 0;
    if (raw_faiss(desc, x, n, q, &raw)) {
        fprintf(stderr, "FAISS: %s\n", faiss_get_last_error());
        return -1;
    }
    double peak_raw = peak_gib();
    if (via_siamidx(type, dir, x, n, q, &sx, &close_s)) return -1;
    for (int round = 0; round < ROUNDS; round++)
        if (search_once(&raw, q, 0) || search_once(&sx, q, 1)) {
            fprintf(stderr, "search failed\n");
            return -1;
        }
    faiss_Index_free(raw.raw);
    double t = now();
    siamidx_index_close(sx.sx); /* writes the FAISS snapshot */
    close_s = now() - t;
    int same = 0;
    for (int i = 0; i < N_QUERIES; i++) same += raw.top1[i] == sx.top1[i];
    printf("%-5s n=%zu dim=%d k=%d queries=%d\n", type, n, DIM, K, N_QUERIES);
    printf("  add     raw FAISS %10.0f vec/s   siamidx (LMDB txn per %d + FAISS) %10.0f vec/s"
           "   ratio %.2f\n",
           n / raw.add_s, BATCH, n / sx.add_s, raw.add_s / sx.add_s);
    printf("  search  raw FAISS %10.0f q/s     siamidx %10.0f q/s   ratio %.3f (best of %d)\n",
           N_QUERIES / raw.search_s, N_QUERIES / sx.search_s, raw.search_s / sx.search_s, ROUNDS);
    printf("  same top-1 as raw FAISS: %d/%d; snapshot write at close %.2f s\n", same, N_QUERIES,
           close_s);
    printf("  peak RSS: %.2f GiB after raw FAISS, %.2f GiB after siamidx\n", peak_raw,
           peak_gib());
    fflush(stdout);
    free(raw.top1);
    free(sx.top1);
    free(x);
    free(q);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: index_bench N_FLAT N_HNSW [DIR]\n");
        return 2;
    }
    size_t n_flat = strtoull(argv[1], NULL, 10), n_hnsw = strtoull(argv[2], NULL, 10);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", argc > 3 ? argv[3] : "/tmp/siamidx_bench.idx");
    if (run("flat", "Flat", n_flat, dir) || run("hnsw", "HNSW32", n_hnsw, dir)) return 1;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) ? 1 : 0;
}

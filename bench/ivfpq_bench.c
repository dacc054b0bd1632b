/*
 * ivfpq_bench.c - flat against IVF-PQ on clustered synthetic vectors,
 * through FAISS's C API with siamidx's choices (IDMap2 over the factory
 * string siamidx uses, inner product, the parameters of
 * sx_vindex_ivfpq_params, the training sample size it takes).
 *
 *   ivfpq_bench N [DIM] [QUERIES] [NPROBES]     (defaults 1000000 256 1000 "4,8,16,32,64,128")
 *
 * Data: C = N/100 centres, unit vectors with uniform coordinates; each
 * vector is a centre plus uniform noise of the same per-coordinate spread
 * as the centres' (so ~1.0 norm of noise against a 1.0 centre: a cosine of
 * ~0.5 to its centre, like paintings of one artist), L2-normalised; queries
 * are drawn the same way (new noise), so each has real near neighbours.
 * Ground truth: the flat index's top 10.
 *
 * Prints for each index: build seconds (train, add; wall and CPU), bytes
 * per vector (FAISS's serialisation / N, and the heap the index added / N:
 * mallinfo2, so IndexIDMap2's reverse map, which is not serialised,
 * counts), QPS for one batch of all queries and for the first 200 one at a
 * time (with CPU ms each), recall@10 against flat for each nprobe, plain and
 * with the top 100 re-ranked by exact inner products.
 */
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <faiss/c_api/AutoTune_c.h>
#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/error_c.h>
#include <faiss/c_api/index_factory_c.h>
#include <faiss/c_api/index_io_c.h>

#include "store/vindex.h"

#define K 10
#define SINGLE 200

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

/* CPU seconds of the process (all threads): on a shared machine the wall time
   of a phase depends on the load, its CPU time much less. */
static double cpu(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

/* Bytes the heap holds in use (glibc: small blocks + mmap'd ones): what an
   index allocates, unlike the resident size, which keeps freed memory. */
static double rss_bytes(void) {
    struct mallinfo2 m = mallinfo2();
    return (double)m.uordblks + (double)m.hblkhd;
}

static uint64_t rng = 88172645463325252ull;
static float frand(void) { /* uniform [-0.5, 0.5) */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) & 0xffffff) / (float)0xffffff - 0.5f;
}

static void normalise(float *x, int dim) {
    double n = 0;
    for (int d = 0; d < dim; d++) n += (double)x[d] * x[d];
    for (int d = 0; d < dim; d++) x[d] /= (float)sqrt(n);
}

static void draw(float *out, size_t n, const float *centres, size_t nc, int dim) {
    float spread = 1.0f / sqrtf((float)dim) / 0.2887f; /* uniform noise of a unit vector's scale */
    for (size_t i = 0; i < n; i++) {
        size_t c = (size_t)((frand() + 0.5f) * (float)nc) % nc;
        for (int d = 0; d < dim; d++)
            out[i * dim + d] = centres[c * dim + d] + spread * frand();
        normalise(out + i * dim, dim);
    }
}

static void fail(const char *what) {
    const char *m = faiss_get_last_error();
    fprintf(stderr, "ivfpq_bench: %s: %s\n", what, m ? m : "?");
    exit(1);
}

static size_t serialised_bytes(const FaissIndex *idx) {
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f || faiss_write_index(idx, f)) fail("write");
    fclose(f);
    free(buf);
    return n;
}

static void add_all(FaissIndex *idx, const float *x, size_t n, int dim) {
    enum { CHUNK = 65536 };
    idx_t *ids = malloc(CHUNK * sizeof *ids);
    for (size_t at = 0; at < n; at += CHUNK) {
        size_t m = n - at < CHUNK ? n - at : CHUNK;
        for (size_t i = 0; i < m; i++) ids[i] = (idx_t)(at + i + 1);
        if (faiss_Index_add_with_ids(idx, (idx_t)m, x + at * dim, ids)) fail("add");
    }
    free(ids);
}

/* Batch QPS and single-query QPS; labels of the batch into out. */
static double single_cpu_ms; /* CPU ms per single query, of the last timed_search */

static void timed_search(const FaissIndex *idx, const float *q, size_t nq, int dim, idx_t *out,
                         double *batch_qps, double *single_qps) {
    float *dist = malloc(nq * K * sizeof *dist);
    double t = now();
    if (faiss_Index_search(idx, (idx_t)nq, q, K, dist, out)) fail("search");
    *batch_qps = (double)nq / (now() - t);
    size_t ns = nq < SINGLE ? nq : SINGLE;
    idx_t lab[K];
    t = now();
    double c = cpu();
    for (size_t i = 0; i < ns; i++)
        if (faiss_Index_search(idx, 1, q + i * dim, K, dist, lab)) fail("search");
    *single_qps = (double)ns / (now() - t);
    single_cpu_ms = (cpu() - c) * 1e3 / (double)ns;
    free(dist);
}

/* The top 10 * K of the index re-ranked by exact inner products (x: ids 1..n),
   as a query could re-rank from the embeddings LMDB stores; labels into out. */
static void reranked(const FaissIndex *idx, const float *x, const float *q, size_t nq, int dim,
                     idx_t *out, double *qps) {
    const int kk = 10 * K;
    float *dist = malloc(nq * kk * sizeof *dist);
    idx_t *lab = malloc(nq * kk * sizeof *lab);
    double t = now();
    if (faiss_Index_search(idx, (idx_t)nq, q, kk, dist, lab)) fail("search");
    for (size_t i = 0; i < nq; i++) {
        for (int j = 0; j < kk; j++) {
            float d = -INFINITY;
            if (lab[i * kk + j] > 0) {
                const float *v = x + (size_t)(lab[i * kk + j] - 1) * dim;
                d = 0;
                for (int c = 0; c < dim; c++) d += q[i * dim + c] * v[c];
            }
            dist[i * kk + j] = d;
        }
        for (int r = 0; r < K; r++) { /* selection of the best K */
            int best = 0;
            for (int j = 1; j < kk; j++)
                if (dist[i * kk + j] > dist[i * kk + best]) best = j;
            out[i * K + r] = lab[i * kk + best];
            dist[i * kk + best] = -INFINITY;
        }
    }
    *qps = (double)nq / (now() - t);
    free(dist);
    free(lab);
}

static double recall(const idx_t *truth, const idx_t *got, size_t nq) {
    size_t hit = 0;
    for (size_t i = 0; i < nq; i++)
        for (int a = 0; a < K; a++)
            for (int b = 0; b < K; b++) hit += truth[i * K + a] == got[i * K + b];
    return (double)hit / (double)(nq * K);
}

int main(int argc, char **argv) {
    size_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
    int dim = argc > 2 ? atoi(argv[2]) : 256;
    size_t nq = argc > 3 ? strtoull(argv[3], NULL, 10) : 1000;
    const char *probes = argc > 4 ? argv[4] : "4,8,16,32,64,128";
    size_t nc = n / 100 ? n / 100 : 1;
    float *centres = malloc(nc * dim * sizeof *centres);
    for (size_t i = 0; i < nc * (size_t)dim; i++) centres[i] = frand();
    for (size_t i = 0; i < nc; i++) normalise(centres + i * dim, dim);
    float *x = malloc(n * dim * sizeof *x), *q = malloc(nq * dim * sizeof *q);
    if (!x || !q) return fprintf(stderr, "out of memory\n"), 1;
    double t = now();
    draw(x, n, centres, nc, dim);
    draw(q, nq, centres, nc, dim);
    printf("data: %zu clustered %d-d unit vectors (%zu centres), %zu queries, k=%d (%.1f s to draw)\n",
           n, dim, nc, nq, K, now() - t);

    /* flat: the ground truth */
    double r0 = rss_bytes();
    FaissIndex *flat;
    if (faiss_index_factory(&flat, dim, "IDMap2,Flat", METRIC_INNER_PRODUCT)) fail("factory");
    t = now();
    add_all(flat, x, n, dim);
    double flat_add = now() - t, flat_rss = rss_bytes() - r0;
    idx_t *truth = malloc(nq * K * sizeof *truth), *got = malloc(nq * K * sizeof *got);
    double bq, sq;
    timed_search(flat, q, nq, dim, truth, &bq, &sq);
    printf("flat     build %.1f s (add)  bytes/vector %.0f serialised, %.0f in memory  "
           "QPS batch %.0f single %.0f (%.2f CPU ms each)  recall@10 1\n",
           flat_add, (double)serialised_bytes(flat) / n, flat_rss / n, bq, sq, single_cpu_ms);
    fflush(stdout);
    faiss_Index_free(flat);

    /* ivfpq: siamidx's parameters and sample */
    sx_ivf_info p;
    sx_vindex_ivfpq_params(n, (uint32_t)dim, &p);
    char desc[96];
    snprintf(desc, sizeof desc, "IDMap2,%snp", p.desc);
    r0 = rss_bytes();
    FaissIndex *ivf;
    if (faiss_index_factory(&ivf, dim, desc, METRIC_INNER_PRODUCT)) fail("factory");
    size_t stride = n / p.trained_on ? n / p.trained_on : 1, ns = 0;
    float *sample = malloc(p.trained_on * dim * sizeof *sample);
    for (size_t i = 0; i < n && ns < p.trained_on; i += stride, ns++)
        memcpy(sample + ns * dim, x + i * dim, dim * sizeof *x);
    t = now();
    double c = cpu();
    if (faiss_Index_train(ivf, (idx_t)ns, sample)) fail("train");
    double train = now() - t, train_cpu = cpu() - c;
    free(sample);
    double r1 = rss_bytes();
    t = now();
    c = cpu();
    add_all(ivf, x, n, dim);
    double add = now() - t, add_cpu = cpu() - c, ivf_rss = rss_bytes() - r1;
    printf("ivfpq    %s (default nprobe %u), trained on %zu: build %.1f s (train %.1f + add %.1f; "
           "CPU s train %.1f add %.1f)  bytes/vector %.1f serialised, %.1f in memory "
           "(training %.1f MB)\n",
           p.desc, p.nprobe, ns, train + add, train, add, train_cpu, add_cpu,
           (double)serialised_bytes(ivf) / n, ivf_rss / n, (r1 - r0) / 1e6);
    fflush(stdout);
    FaissParameterSpace *ps;
    faiss_ParameterSpace_new(&ps);
    char *list = strdup(probes);
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        int np = atoi(tok);
        if (np < 1) continue;
        faiss_ParameterSpace_set_index_parameter(ps, ivf, "nprobe", np);
        timed_search(ivf, q, nq, dim, got, &bq, &sq);
        double plain = recall(truth, got, nq), rq;
        reranked(ivf, x, q, nq, dim, got, &rq);
        double ms = single_cpu_ms;
        printf("ivfpq    nprobe %-4d QPS batch %.0f single %.0f (%.3f CPU ms each)  recall@10 %.3f  "
               "re-ranked top %d: QPS batch %.0f recall@10 %.3f\n",
               np, bq, sq, ms, plain, 10 * K, rq, recall(truth, got, nq));
        fflush(stdout);
    }
    free(list);
    faiss_ParameterSpace_free(ps);
    faiss_Index_free(ivf);
    free(x), free(q), free(centres), free(truth), free(got);
    return 0;
}

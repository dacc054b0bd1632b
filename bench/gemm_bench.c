/*
 * gemm_bench.c - nn/gemm.h's kernels against OpenBLAS's sgemm on the
 * convolutions' shapes, single-threaded, and against the core's FMA peak.
 *
 *   cmake --build build --target gemm_bench && OPENBLAS_CORETYPE=SkylakeX build/gemm_bench
 *
 * Times are the thread's CPU time (CLOCK_THREAD_CPUTIME_ID), not wall time:
 * on a shared machine a process may get a tenth of a core, and the wall
 * clock then measures the scheduler.
 *
 * Peak: a loop of independent FMAs on registers (what the core can issue at
 * most, at the clock it runs now), best of 20 short runs. Each shape is timed best-of-R, interleaved
 * (blas, avx2, avx512, blas, ...) so that a busy machine hurts all alike.
 * OpenBLAS gets B row-major as conv.c's cblas path gives it (after im2col);
 * ours packs B from the same matrix (the dense packer), A prepacked.
 */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <cblas.h>

#include "nn/gemm.h"
#include "base/threads.h"

void openblas_set_num_threads(int);

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#define PEAK_ITERS 1000000
__attribute__((target("avx2,fma"))) static double peak_avx2(void) {
    __m256 acc[10], x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < 10; i++) acc[i] = _mm256_set1_ps((float)i);
    double t0 = now();
    for (long it = 0; it < PEAK_ITERS; it++)
#pragma GCC unroll 10
        for (int i = 0; i < 10; i++) acc[i] = _mm256_fmadd_ps(acc[i], x, y);
    double t = now() - t0;
    volatile float sink = 0;
    for (int i = 0; i < 10; i++) sink += _mm256_cvtss_f32(acc[i]);
    return 10.0 * PEAK_ITERS * 16 / t * 1e-9;
}

__attribute__((target("avx512f"))) static double peak_avx512(void) {
    __m512 acc[10], x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < 10; i++) acc[i] = _mm512_set1_ps((float)i);
    double t0 = now();
    for (long it = 0; it < PEAK_ITERS; it++)
#pragma GCC unroll 10
        for (int i = 0; i < 10; i++) acc[i] = _mm512_fmadd_ps(acc[i], x, y);
    double t = now() - t0;
    volatile float sink = 0;
    for (int i = 0; i < 10; i++) sink += _mm512_cvtss_f32(acc[i]);
    return 10.0 * PEAK_ITERS * 32 / t * 1e-9;
}

static float *floats(size_t n) {
    float *p = aligned_alloc(64, (n * sizeof(float) + 63) & ~(size_t)63);
    for (size_t i = 0; i < n; i++) p[i] = (float)((i * 7919) % 1000) * 1e-3f - 0.5f;
    return p;
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 5;
    openblas_set_num_threads(1);
    sx_threads_set(1);
    int has512 = sx_cpu_supports(SX_CPU_AVX512);
    double pk2 = 0, pk5 = 0;
    for (int i = 0; i < 20; i++) {
        double p2 = peak_avx2(), p5 = has512 ? peak_avx512() : 0;
        pk2 = p2 > pk2 ? p2 : pk2;
        pk5 = p5 > pk5 ? p5 : pk5;
    }
    printf("FMA peak, 1 core: avx2 %.1f GFLOP/s, avx512 %.1f GFLOP/s\n", pk2, pk5);
    /* m = cout, n = output columns, k = cin*k*k: resnet50/18 convolutions */
    static const struct { int m, n, k; const char *what; } shapes[] = {
        {64, 3136, 576, "r18 layer1 3x3, batch 1"},
        {64, 12544, 147, "stem 7x7/2, batch 1"},
        {256, 3136, 64, "r50 layer1 1x1 expand, b1"},
        {64, 3136, 256, "r50 layer1 1x1 reduce, b1"},
        {128, 784, 1152, "r50 layer2 3x3, batch 1"},
        {512, 49, 4608, "r50 layer4 3x3, batch 1"},
        {2048, 49, 512, "r50 layer4 1x1 expand, b1"},
        {256, 3136, 2304, "r50 layer3 3x3, batch 16"},
    };
    enum { NK = 3 };
    const sx_gemm_kernel *g[NK] = {&sx_gemm_avx2, has512 ? &sx_gemm_avx512 : NULL,
                                   has512 ? &sx_gemm_avx512_8x32 : NULL};
    double peak[NK] = {pk2, pk5, pk5};
    printf("\n%-27s %5s %5s %4s %6s  GFLOP/s (%% of that ISA's peak) for", "shape", "m", "n", "k",
           "blas");
    for (int i = 0; i < NK; i++)
        if (g[i]) printf(" %s %dx%d,", g[i]->name, g[i]->mr, g[i]->nr);
    printf(" blas = OpenBLAS %s", getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "(detected)");
    printf("\n");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int m = shapes[s].m, n = shapes[s].n, k = shapes[s].k;
        float *a = floats((size_t)m * k), *b = floats((size_t)k * n), *c = floats((size_t)m * n);
        float *pa[NK] = {NULL}, *work[NK] = {NULL};
        for (int i = 0; i < NK; i++)
            if (g[i]) {
                pa[i] = floats(sx_gemm_packed_a_floats(g[i], m, k));
                sx_gemm_pack_a(g[i], a, m, k, pa[i]);
                work[i] = floats(sx_gemm_work_floats(g[i]));
            }
        sx_gemm_b src = {sx_gemm_pack_dense, b, (size_t)n, NULL};
        double best[NK + 1] = {1e30, 1e30, 1e30, 1e30};
        for (int r = 0; r < reps; r++)
            for (int p = 0; p <= NK; p++) {
                if (p > 0 && !g[p - 1]) continue;
                double t0 = now();
                if (p == 0)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, k, b,
                                n, 0.0f, c, n);
                else
                    sx_gemm_run(g[p - 1], pa[p - 1], m, k, &src, (size_t)n, NULL, 0, 0, c,
                                (size_t)n, work[p - 1]);
                double t = now() - t0;
                if (t < best[p]) best[p] = t;
            }
        double fl = 2.0 * m * n * k * 1e-9;
        printf("%-27s %5d %5d %4d %6.1f", shapes[s].what, m, n, k, fl / best[0]);
        for (int i = 0; i < NK; i++)
            if (g[i]) printf("  %6.1f (%3.0f%%)", fl / best[i + 1], 100 * fl / best[i + 1] / peak[i]);
        printf("\n");
        free(a), free(b), free(c);
        for (int i = 0; i < NK; i++) free(pa[i]), free(work[i]);
    }
    return 0;
}

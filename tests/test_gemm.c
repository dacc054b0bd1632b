/*
 * test_gemm.c - nn/gemm.h's kernels against a naive double-precision GEMM.
 *
 * Every kernel this CPU can run (avx2 everywhere, avx512 where present), on
 * shapes that are no multiple of the tiles or cache blocks (m, n, k of 1,
 * primes, k over one kc block, n over one nc block), with and without bias,
 * ReLU and accumulation onto C, on 1, 2 and 3 threads (by rows and by
 * columns), and with C inside a wider matrix (ldc > n) whose other columns
 * must stay untouched.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "test_rand.h"
#include "nn/gemm.h"
#include "base/threads.h"

static float *floats(size_t n) { /* 64-byte aligned, as the kernels' scratch must be */
    return aligned_alloc(64, (n * sizeof(float) + 63) & ~(size_t)63);
}

/* C = (acc ? C : 0) + A B + bias, ReLU; `bound` gets sum |terms| per element (rounding scale). */
static void naive(int m, int n, int k, const float *a, const float *b, const float *bias,
                  int relu, int acc, float *c, size_t ldc, double *bound) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = acc ? c[i * ldc + j] : 0, mag = fabs(s);
            for (int t = 0; t < k; t++) {
                s += (double)a[i * k + t] * b[(size_t)t * n + j];
                mag += fabs((double)a[i * k + t] * b[(size_t)t * n + j]);
            }
            if (bias) s += bias[i], mag += fabs(bias[i]);
            c[i * ldc + j] = (float)(relu && s < 0 ? 0 : s);
            bound[i * n + j] = mag;
        }
}

static void check_shape(const sx_gemm_kernel *g, int m, int n, int k, int threads) {
    size_t ldc = (size_t)n + 3; /* C is the left part of a wider matrix */
    float *a = floats((size_t)m * k), *b = floats((size_t)k * n), *bias = floats(m);
    float *c0 = floats(m * ldc), *want = floats(m * ldc), *got = floats(m * ldc);
    float *packed = floats(sx_gemm_packed_a_floats(g, m, k)), *work = floats(sx_gemm_work_floats(g));
    double *bound = malloc((size_t)m * n * sizeof *bound);
    for (size_t i = 0; i < (size_t)m * k; i++) a[i] = frand();
    for (size_t i = 0; i < (size_t)k * n; i++) b[i] = frand();
    for (int i = 0; i < m; i++) bias[i] = frand();
    for (size_t i = 0; i < m * ldc; i++) c0[i] = frand();
    sx_gemm_pack_a(g, a, m, k, packed);
    sx_gemm_b src = {sx_gemm_pack_dense, b, (size_t)n, NULL};
    sx_threads_set(threads);
    for (int mode = 0; mode < 8; mode++) {
        int relu = mode & 1, acc = mode >> 1 & 1, with_bias = mode >> 2 & 1;
        memcpy(want, c0, m * ldc * sizeof *want);
        memcpy(got, c0, m * ldc * sizeof *got);
        naive(m, n, k, a, b, with_bias ? bias : NULL, relu, acc, want, ldc, bound);
        sx_gemm_run(g, packed, m, k, &src, (size_t)n, with_bias ? bias : NULL, relu, acc, got, ldc,
                    work);
        double worst = 0;
        int untouched = 1;
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++) {
                /* float32 FMAs over k terms: error below k * 2^-24 of the magnitude sum */
                double tol = 1e-6 + 2.0 * (k + 2) * 6e-8 * bound[i * n + j];
                double e = fabs(got[i * ldc + j] - want[i * ldc + j]) / tol;
                worst = e > worst ? e : worst;
            }
            for (size_t j = n; j < ldc; j++) untouched &= got[i * ldc + j] == c0[i * ldc + j];
        }
        CHECK_MSG(worst <= 1.0, "%s m=%d n=%d k=%d threads=%d relu=%d acc=%d bias=%d: error %.3g "
                  "of the tolerance", g->name, m, n, k, threads, relu, acc, with_bias, worst);
        CHECK_MSG(untouched, "%s m=%d n=%d k=%d: wrote past column n", g->name, m, n, k);
    }
    free(a), free(b), free(bias), free(c0), free(want), free(got), free(packed), free(work);
    free(bound);
}

static void check_kernel(const sx_gemm_kernel *g) {
    static const int shapes[][3] = {
        {1, 1, 1},     {1, 1, 7},     {7, 1, 5},    {1, 37, 3},   {5, 3, 1},
        {13, 17, 1},   {14, 32, 16},  {6, 16, 9},   {15, 33, 29}, {29, 70, 257},
        {3, 5, 600},   {64, 500, 27}, {50, 1000, 70}, {100, 40, 300}, {2, 2000, 3},
        {130, 49, 520},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int t = 1; t <= 3; t++) check_shape(g, shapes[s][0], shapes[s][1], shapes[s][2], t);
    printf("%s (%dx%d tiles): %zu shapes x 3 thread counts x 8 modes\n", g->name, g->mr, g->nr,
           sizeof shapes / sizeof shapes[0]);
}

int main(void) {
    CHECK(sx_cpu_supports(SX_CPU_BLAS));
    CHECK(sx_gemm_kernel_for(SX_CPU_BLAS, 64) == NULL);
    int ran = 0;
    for (int p = SX_CPU_AVX2; p <= SX_CPU_AVX512; p++) {
        if (!sx_cpu_supports((sx_cpu_path)p)) {
            printf("%s: not on this CPU, not tested\n", sx_cpu_path_name((sx_cpu_path)p));
            continue;
        }
        /* every tile the path has: the one for small A's (<= 64 rows) and the other */
        const sx_gemm_kernel *small = sx_gemm_kernel_for((sx_cpu_path)p, 64);
        const sx_gemm_kernel *large = sx_gemm_kernel_for((sx_cpu_path)p, 65);
        for (int i = 0; i < 2; i++) {
            const sx_gemm_kernel *g = i ? large : small;
            if (i && large == small) break;
            CHECK(g && !strcmp(g->name, sx_cpu_path_name((sx_cpu_path)p)));
            CHECK(g->mr <= SX_GEMM_MAX_MR && g->nr <= SX_GEMM_MAX_NR);
            if (g) check_kernel(g), ran++;
        }
    }
    CHECK_MSG(ran > 0, "this CPU runs neither kernel (AVX2+FMA is the project's baseline)");
    CHECK_DONE();
}

/*
 * gemm_avx2.c - the AVX2+FMA microkernel: 6 x 16 floats of C in 12 ymm
 * accumulators; per step of k, two loads of B, 6 broadcasts of A, 12 FMAs
 * (the classic Haswell shape: 12 + 2 + 1 of the 16 registers).
 * The library's baseline: every CPU the project supports runs this one.
 */
#include <immintrin.h>

#include "nn/gemm_kernel.h"

#define MR 6
#define NR 16

__attribute__((target("avx2,fma"))) static void tile_6x16(int kc, const float *a, const float *b,
                                                          float *c, size_t ldc, const float *bias,
                                                          int flags) {
    __m256 acc[MR][2];
    if (flags & SX_TILE_LOAD) {
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++) {
            acc[i][0] = _mm256_loadu_ps(c + i * ldc);
            acc[i][1] = _mm256_loadu_ps(c + i * ldc + 8);
        }
    } else {
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    }
    for (int k = 0; k < kc; k++, a += MR, b += NR) {
        __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++) {
            __m256 ai = _mm256_broadcast_ss(a + i);
            acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
        }
    }
    if (flags & SX_TILE_BIAS) {
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++) {
            __m256 bi = _mm256_broadcast_ss(bias + i);
            acc[i][0] = _mm256_add_ps(acc[i][0], bi);
            acc[i][1] = _mm256_add_ps(acc[i][1], bi);
        }
    }
    if (flags & SX_TILE_RELU) {
        __m256 zero = _mm256_setzero_ps();
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++) {
            acc[i][0] = _mm256_max_ps(acc[i][0], zero);
            acc[i][1] = _mm256_max_ps(acc[i][1], zero);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
        _mm256_storeu_ps(c + i * ldc, acc[i][0]);
        _mm256_storeu_ps(c + i * ldc + 8, acc[i][1]);
    }
}

const sx_gemm_kernel sx_gemm_avx2 = {"avx2", MR, NR, 256, 192, tile_6x16};

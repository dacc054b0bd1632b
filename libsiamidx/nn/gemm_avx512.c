/*
 * gemm_avx512.c - the AVX-512 microkernel: 14 x 32 floats of C in 28 zmm
 * accumulators; per step of k, two loads of B, 14 broadcasts of A, 28 FMAs.
 *
 * Compiled for AVX-512 (target attribute below) while the rest of the library
 * stays AVX2: nothing here runs unless sx_cpu_supports(SX_CPU_AVX512).
 * The tile height was chosen by measurement (bench/gemm_bench.c): 8 x 32
 * does not hide the FMA latency, 14 x 32 (28 of the 32 registers) does.
 */
#include <immintrin.h>

#include "nn/gemm.h"

#define MR 14
#define NR 32

__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl"))) static void tile_14x32(
    int kc, const float *a, const float *b, float *c, size_t ldc, const float *bias, int flags) {
    __m512 acc[MR][2];
    if (flags & SX_TILE_LOAD) {
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++) {
            acc[i][0] = _mm512_loadu_ps(c + i * ldc);
            acc[i][1] = _mm512_loadu_ps(c + i * ldc + 16);
        }
    } else {
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    }
    for (int k = 0; k < kc; k++, a += MR, b += NR) {
        __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++) {
            __m512 ai = _mm512_set1_ps(a[i]);
            acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
        }
    }
    if (flags & SX_TILE_BIAS) {
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++) {
            __m512 bi = _mm512_set1_ps(bias[i]);
            acc[i][0] = _mm512_add_ps(acc[i][0], bi);
            acc[i][1] = _mm512_add_ps(acc[i][1], bi);
        }
    }
    if (flags & SX_TILE_RELU) {
        __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++) {
            acc[i][0] = _mm512_max_ps(acc[i][0], zero);
            acc[i][1] = _mm512_max_ps(acc[i][1], zero);
        }
    }
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) {
        _mm512_storeu_ps(c + i * ldc, acc[i][0]);
        _mm512_storeu_ps(c + i * ldc + 16, acc[i][1]);
    }
}

const sx_gemm_kernel sx_gemm_avx512 = {"avx512", MR, NR, 256, 384, tile_14x32};

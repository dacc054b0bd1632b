/*
 * gemm_avx512.c - the AVX-512 microkernel: 14 x 32 floats of C in 28 zmm
 * accumulators; per step of k, two loads of B, 14 broadcasts of A, 28 FMAs.
 *
 * Compiled for AVX-512 (target attribute below) while the rest of the library
 * stays AVX2: nothing here runs unless sx_cpu_supports(SX_CPU_AVX512).
 * A second tile, 8 x 32, serves A's of at most 64 rows, where 14 would pad
 * 64 rows to 70 and send the last panel through the edge path: chosen per
 * convolution by sx_gemm_kernel_for, by measurement (bench/gemm_bench.c,
 * CPU time on this Xeon: 8x32 52-62% of peak on m = 64 against 48% for
 * 14x32; 14x32 3-6% ahead from m = 128 up).
 */
#include <immintrin.h>

#include "nn/gemm_kernel.h"

#define NR 32

/* c[MR][32] (+)= a x b over kc steps, then bias and ReLU: see sx_gemm_tile_fn. */
#define DEFINE_TILE(MR)                                                                       \
    __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl"))) static void tile_##MR##x32(  \
        int kc, const float *a, const float *b, float *c, size_t ldc, const float *bias,        \
        int flags) {                                                                          \
        __m512 acc[MR][2];                                                                    \
        if (flags & SX_TILE_LOAD) {                                                           \
            _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++) {                           \
                acc[i][0] = _mm512_loadu_ps(c + i * ldc);                                     \
                acc[i][1] = _mm512_loadu_ps(c + i * ldc + 16);                                \
            }                                                                                 \
        } else {                                                                              \
            _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] =     \
                _mm512_setzero_ps();                                                          \
        }                                                                                     \
        for (int k = 0; k < kc; k++, a += MR, b += NR) {                                      \
            __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);                       \
            _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++) {                           \
                __m512 ai = _mm512_set1_ps(a[i]);                                             \
                acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);                               \
                acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);                               \
            }                                                                                 \
        }                                                                                     \
        if (flags & SX_TILE_BIAS) {                                                           \
            _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++) {                           \
                __m512 bi = _mm512_set1_ps(bias[i]);                                          \
                acc[i][0] = _mm512_add_ps(acc[i][0], bi);                                     \
                acc[i][1] = _mm512_add_ps(acc[i][1], bi);                                     \
            }                                                                                 \
        }                                                                                     \
        if (flags & SX_TILE_RELU) {                                                           \
            __m512 zero = _mm512_setzero_ps();                                                \
            _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++) {                           \
                acc[i][0] = _mm512_max_ps(acc[i][0], zero);                                   \
                acc[i][1] = _mm512_max_ps(acc[i][1], zero);                                   \
            }                                                                                 \
        }                                                                                     \
        _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++) {                               \
            _mm512_storeu_ps(c + i * ldc, acc[i][0]);                                         \
            _mm512_storeu_ps(c + i * ldc + 16, acc[i][1]);                                    \
        }                                                                                     \
    }

DEFINE_TILE(14)
DEFINE_TILE(8)

const sx_gemm_kernel sx_gemm_avx512 = {"avx512", 14, NR, 256, 384, tile_14x32};
/* For at most 64 rows (sx_gemm_kernel_for): 64 = 8 x 8, no padded rows. */
const sx_gemm_kernel sx_gemm_avx512_8x32 = {"avx512", 8, NR, 256, 384, tile_8x32};

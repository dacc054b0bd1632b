/*
 * nn/gemm_kernel.h - what a GEMM microkernel is (gemm_avx2.c, gemm_avx512.c),
 * apart from nn/gemm.h so that the kernels depend on nothing that calls them.
 */
#ifndef SX_NN_GEMM_KERNEL_H
#define SX_NN_GEMM_KERNEL_H

#include <stddef.h>

/* The largest tile any kernel has (edge tiles go through a buffer this size). */
#define SX_GEMM_MAX_MR 16
#define SX_GEMM_MAX_NR 32

enum { SX_TILE_LOAD = 1, SX_TILE_BIAS = 2, SX_TILE_RELU = 4 };

/*
 * c[0..mr)[0..nr) (row stride ldc) = (flags & LOAD ? c : 0) + a x b over kc
 * steps, where a holds kc groups of mr floats and b kc groups of nr; then,
 * with BIAS, + bias[row], and with RELU, max(0, .).
 */
typedef void (*sx_gemm_tile_fn)(int kc, const float *a, const float *b, float *c, size_t ldc,
                                const float *bias, int flags);

typedef struct sx_gemm_kernel {
    const char *name;
    int mr, nr; /* register tile */
    int kc, nc; /* cache blocks: B's kc x nc block in L2, A's mr x kc panel in L1 */
    sx_gemm_tile_fn tile;
} sx_gemm_kernel;

#endif /* SX_NN_GEMM_KERNEL_H */

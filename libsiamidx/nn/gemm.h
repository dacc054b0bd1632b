/*
 * nn/gemm.h - the convolutions' own single-precision GEMM,
 *   C[m][n] (+)= A[m][k] x B[k][n], then + bias[row] and ReLU,
 * with a register-blocked microkernel per instruction set (gemm_avx2.c,
 * gemm_avx512.c) chosen at run time (nn/cpu.h).
 *
 * A (the weights) is packed once, when the model loads, into panels of `mr`
 * rows: panel p holds rows p*mr .. p*mr+mr-1 as k groups of mr floats (rows
 * past m are zero). B is packed per call, block by block, into panels of `nr`
 * columns by a callback, so a convolution packs straight from its input
 * (implicit im2col, see conv.c) and no full im2col matrix is ever written.
 *
 * Loops (per thread, over its share of rows or columns):
 *   for each block of nc columns, for each block of kc rows of B:
 *     pack B[kc][nc] (stays in L2)
 *     for each panel of mr rows of A (mr x kc stays in L1):
 *       for each panel of nr columns: tile() on the mr x nr block of C
 * The first kc block starts from 0 (or from C, to accumulate a residual), the
 * last one adds the bias and applies the ReLU as it stores, so C is written
 * once per kc block and the epilogue costs no extra pass.
 */
#ifndef SX_NN_GEMM_H
#define SX_NN_GEMM_H

#include <stddef.h>

#include "nn/cpu.h"
#include "nn/gemm_kernel.h"

/* Threads the scratch space (sx_gemm_work_floats) is sized for. */
#define SX_GEMM_MAX_THREADS 16

/*
 * The kernel of `path` for an A of m rows, or NULL for SX_CPU_BLAS. AVX-512
 * has two tile heights: 8 for m <= 64 (no padded rows; measured 5-25% faster
 * than 14 on ResNet's 64-channel convolutions), 14 above (bench/gemm_bench.c).
 */
const sx_gemm_kernel *sx_gemm_kernel_for(sx_cpu_path path, int m);
extern const sx_gemm_kernel sx_gemm_avx2, sx_gemm_avx512, sx_gemm_avx512_8x32;
/* The path whose kernel g is (the inverse of sx_gemm_kernel_for). */
sx_cpu_path sx_gemm_kernel_path(const sx_gemm_kernel *g);

/* Packing A (row-major, m x k) into g's panels. */
size_t sx_gemm_packed_a_floats(const sx_gemm_kernel *g, int m, int k);
void sx_gemm_pack_a(const sx_gemm_kernel *g, const float *a, int m, int k, float *dst);

/*
 * Where B comes from: pack() writes rows [k0, k0 + kc) x columns [j0, j0 + nc)
 * as panels of nr columns, panel q at dst + q * sx_gemm_panel_floats(kc, nr),
 * zero past column j0 + nc; `row` is scratch for nc floats. For a plain
 * row-major matrix use sx_gemm_pack_dense with data/ld.
 */
typedef struct sx_gemm_b sx_gemm_b;
struct sx_gemm_b {
    void (*pack)(const sx_gemm_b *b, size_t k0, int kc, size_t j0, int nc, int nr, float *dst,
                 float *row);
    const float *data; /* dense: B[k][j] = data[k * ld + j] */
    size_t ld;
    const void *ctx; /* for other packers */
};
void sx_gemm_pack_dense(const sx_gemm_b *b, size_t k0, int kc, size_t j0, int nc, int nr,
                        float *dst, float *row);
/*
 * Floats from one B panel to the next: kc * nr and one cache line more, so
 * that the rows a packer writes across panels do not all fall into the same
 * L1 set (kc * nr * 4 bytes is a multiple of 4 KiB for kc = 256: measured 5x
 * slower packing on the AVX2 path).
 */
static inline size_t sx_gemm_panel_floats(int kc, int nr) { return (size_t)kc * nr + 16; }
/* Stores one packed row: row[0..nc) goes to row kk of the panels at dst (as pack() lays them). */
void sx_gemm_put_row(const float *row, int nc, int nr, int kc, int kk, float *dst);

/* Scratch floats sx_gemm_run needs (for up to SX_GEMM_MAX_THREADS threads). */
size_t sx_gemm_work_floats(const sx_gemm_kernel *g);
/* Scratch floats of one thread (sx_gemm_run_serial); a multiple of 16. */
size_t sx_gemm_thread_work_floats(const sx_gemm_kernel *g);

/*
 * C[m][n] (row stride ldc) = (accumulate ? C : 0) + A x B + bias, ReLU'd if
 * `relu`; bias may be NULL. Threads over sx_threads() OpenMP threads (at
 * most SX_GEMM_MAX_THREADS), by columns when there are enough of them, else
 * by rows. `work`: sx_gemm_work_floats(g) floats, 64-byte aligned.
 */
void sx_gemm_run(const sx_gemm_kernel *g, const float *packed_a, int m, int k, const sx_gemm_b *b,
                 size_t n, const float *bias, int relu, int accumulate, float *c, size_t ldc,
                 float *work);
/*
 * The same on the calling thread alone, for callers that run many small
 * GEMMs side by side on their own threads (nn/winograd.c: one per point of
 * the transform). `work`: sx_gemm_thread_work_floats(g) floats, 64-byte
 * aligned, the caller's thread's own.
 */
void sx_gemm_run_serial(const sx_gemm_kernel *g, const float *packed_a, int m, int k,
                        const sx_gemm_b *b, size_t n, const float *bias, int relu, int accumulate,
                        float *c, size_t ldc, float *work);

#endif /* SX_NN_GEMM_H */

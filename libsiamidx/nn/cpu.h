/*
 * nn/cpu.h - which convolution kernels this CPU can run, and which one a
 * model uses.
 *
 * The choice is made once per model, when it is loaded (the weights are
 * packed for that kernel's layout then), from the CPU and the environment
 * variable SIAMIDX_CPU:
 *   unset, "" or "auto"  the best this CPU has: avx512, else avx2
 *   "avx512"             the AVX-512 kernel (avx512f+bw+dq+vl); refused on a CPU without it
 *   "avx2"               the AVX2+FMA kernel (what a CPU without AVX-512 runs)
 *   "blas"               no packed weights: im2col + OpenBLAS's sgemm, as before
 * A request this CPU cannot serve is refused (the model does not load) rather
 * than quietly replaced: a benchmark or test that names a kernel must get it.
 */
#ifndef SX_NN_CPU_H
#define SX_NN_CPU_H

#include "siamidx.h"

typedef enum sx_cpu_path {
    SX_CPU_BLAS,   /* im2col + cblas_sgemm */
    SX_CPU_AVX2,   /* nn/gemm_avx2.c */
    SX_CPU_AVX512, /* nn/gemm_avx512.c */
} sx_cpu_path;

/* Whether this CPU (and its OS) can run `path`. */
int sx_cpu_supports(sx_cpu_path path);
/* "blas", "avx2" or "avx512". */
const char *sx_cpu_path_name(sx_cpu_path path);
/* The path SIAMIDX_CPU asks for, as described above; fails naming the reason. */
siamidx_status sx_cpu_choose(sx_cpu_path *out, siamidx_error *err);

#endif /* SX_NN_CPU_H */

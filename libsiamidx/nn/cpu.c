/*
 * cpu.c - run-time CPU detection and the SIAMIDX_CPU override (see cpu.h).
 *
 * The library is compiled for AVX2+FMA (CMakeLists.txt); AVX-512 code lives
 * in gemm_avx512.c alone, compiled with its own flags and only called once
 * sx_cpu_supports(SX_CPU_AVX512) said yes. __builtin_cpu_supports also checks
 * that the OS saves the AVX-512 registers (XCR0), not only the CPUID bits.
 */
#include <stdlib.h>
#include <string.h>

#include "nn/cpu.h"
#include "base/error.h"

int sx_cpu_supports(sx_cpu_path path) {
    __builtin_cpu_init();
    switch (path) {
    case SX_CPU_BLAS: return 1;
    case SX_CPU_AVX2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case SX_CPU_AVX512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
    }
    return 0;
}

const char *sx_cpu_path_name(sx_cpu_path path) {
    switch (path) {
    case SX_CPU_BLAS: return "blas";
    case SX_CPU_AVX2: return "avx2";
    case SX_CPU_AVX512: return "avx512";
    }
    return "?";
}

siamidx_status sx_cpu_choose(sx_cpu_path *out, siamidx_error *err) {
    const char *want = getenv("SIAMIDX_CPU");
    if (!want || !*want || !strcmp(want, "auto")) {
        *out = sx_cpu_supports(SX_CPU_AVX512) ? SX_CPU_AVX512
             : sx_cpu_supports(SX_CPU_AVX2)   ? SX_CPU_AVX2
                                              : SX_CPU_BLAS;
        return SIAMIDX_OK;
    }
    for (int p = SX_CPU_BLAS; p <= SX_CPU_AVX512; p++) {
        if (strcmp(want, sx_cpu_path_name((sx_cpu_path)p))) continue;
        if (!sx_cpu_supports((sx_cpu_path)p))
            return sx_fail(err, SIAMIDX_ERR_UNSUPPORTED,
                           "SIAMIDX_CPU=%s: this CPU lacks %s", want,
                           p == SX_CPU_AVX512 ? "AVX-512 (avx512f, bw, dq and vl)" : "AVX2+FMA");
        *out = (sx_cpu_path)p;
        return SIAMIDX_OK;
    }
    return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT,
                   "SIAMIDX_CPU=%s: expected auto, avx512, avx2 or blas", want);
}

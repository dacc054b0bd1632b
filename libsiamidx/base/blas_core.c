/*
 * blas_core.c - which kernels OpenBLAS chose, and whether the CPU could do better.
 *
 * A DYNAMIC_ARCH OpenBLAS picks its kernels once, in its load-time
 * constructor, from a table of CPU models; a CPU newer than the table falls
 * back to old SSE3 kernels. Debian 12's OpenBLAS 0.3.21 takes an Intel Xeon
 * of family 6 model 207 (AVX-512) for a "Prescott", and its sgemm is then
 * about 4.5x slower than with the SkylakeX kernels. Nothing can change the
 * choice once the library is loaded: only OPENBLAS_CORETYPE in the
 * environment of a process that has not loaded it yet. So this file only
 * tells; the CLI re-executes itself and the Python module sets the variable
 * before loading us (docs/performance.md).
 */
#include <stddef.h>
#include <strings.h>
#include <string.h>

#include "siamidx_ext.h"

char *openblas_get_corename(void);
char *openblas_get_config(void);

/* How capable a set of kernels is, for sgemm: a higher tier is never slower. */
enum { TIER_UNJUDGED = 0, TIER_OLD = 1, TIER_AVX2 = 2, TIER_AVX512 = 3 };

/* OpenBLAS's x86-64 core names (driver/others/dynamic.c) that have neither
   AVX2 nor AVX-512 kernels. A name not listed anywhere (another OpenBLAS, another
   architecture) is not judged: we never force a core we know nothing about. */
static const char *const old_cores[] = {
    "Unknown",  "Katmai",    "Coppermine", "Northwood",   "Prescott",   "Banias",
    "Atom",     "Core2",     "Penryn",     "Dunnington",  "Nehalem",    "Athlon",
    "Opteron",  "Opteron_SSE3", "Barcelona", "Nano",      "Sandybridge", "Bobcat",
    "Bulldozer", "Piledriver", "Steamroller", "Excavator",
};
static const char *const avx2_cores[] = {"Haswell", "Zen"};
static const char *const avx512_cores[] = {"SkylakeX", "Cooperlake", "SapphireRapids"};

static int listed(const char *name, const char *const *names, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!strcasecmp(name, names[i])) return 1;
    return 0;
}

#define LISTED(name, names) listed(name, names, sizeof names / sizeof names[0])

static int core_tier(const char *name) {
    if (!name) return TIER_UNJUDGED;
    if (LISTED(name, avx512_cores)) return TIER_AVX512;
    if (LISTED(name, avx2_cores)) return TIER_AVX2;
    if (LISTED(name, old_cores)) return TIER_OLD;
    return TIER_UNJUDGED;
}

/* What the CPU (and the OS: libgcc's cpuinfo checks XCR0 for the YMM/ZMM
   state) lets OpenBLAS use. SkylakeX's kernels need AVX-512 F, BW, DQ, VL. */
static int cpu_tier(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        return TIER_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return TIER_AVX2;
    return TIER_OLD;
#else
    return TIER_UNJUDGED;
#endif
}

void siamidx_blas_core_get(siamidx_blas_core *out) {
    memset(out, 0, sizeof *out);
    out->core = openblas_get_corename();
    out->config = openblas_get_config();
    if (!out->core) out->core = "unknown";
    if (!out->config) out->config = "";
    out->dynamic = strstr(out->config, "DYNAMIC_ARCH") != NULL;
    int cpu = cpu_tier();
    out->cpu_core = cpu == TIER_AVX512 ? "SkylakeX" : cpu == TIER_AVX2 ? "Haswell" : NULL;
    int core = core_tier(out->core);
    out->weaker = out->cpu_core && core != TIER_UNJUDGED && core < cpu;
}

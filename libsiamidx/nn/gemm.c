/*
 * gemm.c - the portable half of the convolutions' GEMM (see gemm.h): packing,
 * cache blocking, edge tiles and threading. The microkernels are in
 * gemm_avx2.c and gemm_avx512.c.
 */
#include <omp.h>
#include <string.h>

#include "nn/gemm.h"
#include "base/threads.h"

/* Below this many multiply-adds one thread is faster than waking a second. */
#define MIN_FLOPS_PER_THREAD (1 << 18)

const sx_gemm_kernel *sx_gemm_kernel_for(sx_cpu_path path, int m) {
    switch (path) {
    case SX_CPU_AVX2: return &sx_gemm_avx2;
    case SX_CPU_AVX512: return m <= 64 ? &sx_gemm_avx512_8x32 : &sx_gemm_avx512;
    case SX_CPU_BLAS: break;
    }
    return NULL;
}

sx_cpu_path sx_gemm_kernel_path(const sx_gemm_kernel *g) {
    if (g == &sx_gemm_avx2) return SX_CPU_AVX2;
    if (g == &sx_gemm_avx512 || g == &sx_gemm_avx512_8x32) return SX_CPU_AVX512;
    return SX_CPU_BLAS;
}

/* ---- packing ------------------------------------------------------------------ */

size_t sx_gemm_packed_a_floats(const sx_gemm_kernel *g, int m, int k) {
    size_t panels = ((size_t)m + g->mr - 1) / g->mr;
    return panels * g->mr * (size_t)k;
}

void sx_gemm_pack_a(const sx_gemm_kernel *g, const float *a, int m, int k, float *dst) {
    int mr = g->mr;
    for (int p = 0; p * mr < m; p++) {
        float *panel = dst + (size_t)p * mr * k;
        for (int i = 0; i < mr; i++) {
            int row = p * mr + i;
            for (int kk = 0; kk < k; kk++)
                panel[(size_t)kk * mr + i] = row < m ? a[(size_t)row * k + kk] : 0.0f;
        }
    }
}

/* One panel's row: constant lengths, so the compiler inlines the copy as a few
 * vector moves (a memcpy call per 16 floats cost a quarter of the GEMM). */
static inline void copy_floats(float *d, const float *s, int n) {
    if (n == 16)
        memcpy(d, s, 16 * sizeof *d);
    else if (n == 32)
        memcpy(d, s, 32 * sizeof *d);
    else
        memcpy(d, s, (size_t)n * sizeof *d);
}

void sx_gemm_put_row(const float *row, int nc, int nr, int kc, int kk, float *dst) {
    float *d = dst + (size_t)kk * nr;
    size_t panel = sx_gemm_panel_floats(kc, nr);
    int j = 0;
    for (; j + nr <= nc; j += nr, d += panel) copy_floats(d, row + j, nr);
    if (j < nc) {
        memcpy(d, row + j, (size_t)(nc - j) * sizeof *d);
        memset(d + (nc - j), 0, (size_t)(nr - (nc - j)) * sizeof *d);
    }
}

void sx_gemm_pack_dense(const sx_gemm_b *b, size_t k0, int kc, size_t j0, int nc, int nr,
                        float *dst, float *row) {
    (void)row;
    /* The rows are far apart (ld: a whole activation plane), so the hardware
     * prefetcher misses each one's start: fetch a few rows ahead (measured 2x
     * on the pack of a 512 x 3136 B). */
    enum { AHEAD = 4 };
    for (int kk = 0; kk < kc; kk++) {
        if (kk + AHEAD < kc) {
            const float *next = b->data + (k0 + kk + AHEAD) * b->ld + j0;
            for (int t = 0; t < nc; t += 16) __builtin_prefetch(next + t);
        }
        sx_gemm_put_row(b->data + (k0 + kk) * b->ld + j0, nc, nr, kc, kk, dst);
    }
}

/* ---- one thread's share -------------------------------------------------------- */

static size_t round_up(size_t x, size_t to) { return (x + to - 1) / to * to; }

/* The packed B block: nc / nr panels (rounded up) of up to kc rows. */
static size_t block_floats(const sx_gemm_kernel *g) {
    size_t panels = ((size_t)g->nc + g->nr - 1) / g->nr;
    return round_up(panels * sx_gemm_panel_floats(g->kc, g->nr), 16);
}

/* Per-thread scratch: the packed B block and the packer's row. */
static size_t thread_work_floats(const sx_gemm_kernel *g) {
    return block_floats(g) + round_up((size_t)g->nc, 16);
}

size_t sx_gemm_work_floats(const sx_gemm_kernel *g) {
    return SX_GEMM_MAX_THREADS * thread_work_floats(g);
}

size_t sx_gemm_thread_work_floats(const sx_gemm_kernel *g) { return thread_work_floats(g); }

typedef struct gemm_job {
    const sx_gemm_kernel *g;
    const float *a; /* packed */
    int m, k;
    const sx_gemm_b *b;
    size_t n;
    const float *bias;
    int relu, accumulate;
    float *c;
    size_t ldc;
} gemm_job;

/* One mr x nr tile whose rows or columns run past C's edge: through a buffer. */
static void edge_tile(const gemm_job *j, int kc, const float *a, const float *b, float *c,
                      int rows, int cols, const float *bias, int flags) {
    const sx_gemm_kernel *g = j->g;
    float tile[SX_GEMM_MAX_MR * SX_GEMM_MAX_NR], padded_bias[SX_GEMM_MAX_MR] = {0};
    if (flags & SX_TILE_LOAD)
        for (int r = 0; r < rows; r++) memcpy(tile + r * g->nr, c + r * j->ldc, cols * sizeof *c);
    if (bias) memcpy(padded_bias, bias, rows * sizeof *bias);
    g->tile(kc, a, b, tile, (size_t)g->nr, padded_bias, flags);
    for (int r = 0; r < rows; r++) memcpy(c + r * j->ldc, tile + r * g->nr, cols * sizeof *c);
}

/* Row panels [p0, p1) x columns [j0, j1) of C. */
static void gemm_part(const gemm_job *j, int p0, int p1, size_t j0, size_t j1, float *work) {
    const sx_gemm_kernel *g = j->g;
    int mr = g->mr, nr = g->nr;
    float *bp = work, *row = work + block_floats(g);
    /* Equal kc blocks: 576 rows as 3 x 192, not 256 + 256 + 64. */
    int kblocks = (j->k + g->kc - 1) / g->kc;
    int kstep = (j->k + kblocks - 1) / kblocks;
    for (size_t jc = j0; jc < j1; jc += g->nc) {
        int nc = (int)(j1 - jc < (size_t)g->nc ? j1 - jc : (size_t)g->nc);
        for (int pc = 0; pc < j->k; pc += kstep) {
            int kc = j->k - pc < kstep ? j->k - pc : kstep;
            j->b->pack(j->b, (size_t)pc, kc, jc, nc, nr, bp, row);
            int flags = (pc > 0 || j->accumulate ? SX_TILE_LOAD : 0) |
                        (pc + kc == j->k ? SX_TILE_BIAS | (j->relu ? SX_TILE_RELU : 0) : 0);
            if (!j->bias) flags &= ~SX_TILE_BIAS;
            for (int p = p0; p < p1; p++) {
                const float *a = j->a + (size_t)p * mr * j->k + (size_t)pc * mr;
                const float *bias = j->bias ? j->bias + p * mr : NULL;
                int rows = j->m - p * mr < mr ? j->m - p * mr : mr;
                float *c = j->c + (size_t)p * mr * j->ldc + jc;
                for (int q = 0; q * nr < nc; q++) {
                    int cols = nc - q * nr < nr ? nc - q * nr : nr;
                    const float *b = bp + (size_t)q * sx_gemm_panel_floats(kc, nr);
                    if (rows == mr && cols == nr)
                        g->tile(kc, a, b, c + q * nr, j->ldc, bias, flags);
                    else
                        edge_tile(j, kc, a, b, c + q * nr, rows, cols, bias, flags);
                }
            }
        }
    }
}

/*
 * Thread `tid` of `nt`: a share of the columns (each thread packs only its
 * own B) when every thread gets a few panels' worth, else a share of the row
 * panels (layer4 at batch 1: n = 49, m = 512), every thread then packing all
 * of B, which is small there.
 */
static void gemm_share(const gemm_job *j, int tid, int nt, float *work) {
    const sx_gemm_kernel *g = j->g;
    int panels = (j->m + g->mr - 1) / g->mr;
    if (j->n >= (size_t)nt * 4 * g->nr || panels < nt) {
        size_t per = round_up((j->n + nt - 1) / nt, (size_t)g->nr);
        size_t j0 = per * tid, j1 = j0 + per < j->n ? j0 + per : j->n;
        if (j0 < j1) gemm_part(j, 0, panels, j0, j1, work);
    } else {
        int p0 = (int)((long)panels * tid / nt), p1 = (int)((long)panels * (tid + 1) / nt);
        if (p0 < p1) gemm_part(j, p0, p1, 0, j->n, work);
    }
}

void sx_gemm_run(const sx_gemm_kernel *g, const float *packed_a, int m, int k, const sx_gemm_b *b,
                 size_t n, const float *bias, int relu, int accumulate, float *c, size_t ldc,
                 float *work) {
    if (m <= 0 || n == 0) return;
    gemm_job j = {g, packed_a, m, k, b, n, bias, relu, accumulate, c, ldc};
    double flops = (double)m * n * k;
    int nt = sx_threads();
    if (nt > SX_GEMM_MAX_THREADS) nt = SX_GEMM_MAX_THREADS;
    if (nt > 1 && flops < (double)nt * MIN_FLOPS_PER_THREAD) nt = 1;
    if (nt == 1) {
        sx_gemm_run_serial(g, packed_a, m, k, b, n, bias, relu, accumulate, c, ldc, work);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        int tid = omp_get_thread_num(), got = omp_get_num_threads();
        gemm_share(&j, tid, got, work + (size_t)tid * thread_work_floats(g));
    }
}

void sx_gemm_run_serial(const sx_gemm_kernel *g, const float *packed_a, int m, int k,
                        const sx_gemm_b *b, size_t n, const float *bias, int relu, int accumulate,
                        float *c, size_t ldc, float *work) {
    if (m <= 0 || n == 0) return;
    gemm_job j = {g, packed_a, m, k, b, n, bias, relu, accumulate, c, ldc};
    gemm_share(&j, 0, 1, work);
}

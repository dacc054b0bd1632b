/*
 * stem.c - the 7x7 stride-2 stem as a direct convolution (see stem.h).
 *
 * Output pixel ox of a row reads input columns ix = 2 ox - 3 + kx. Split an
 * input row into its odd columns O[j] = in[2j - 3] and even ones
 * E[j] = in[2j - 2] (zero outside the row), and tap kx reads
 * (kx even ? O : E)[ox + kx / 2]: for a run of output pixels, a contiguous
 * slice. So per output row the 21 rows it reads (cin x 7 kernel rows) are
 * split once, into each thread's buffer, and the kernel runs over
 * cin x 49 row pointers:
 *   acc[co][x] += w[co][tap] * rows[tap][x0 + x]
 * for a block of CB output channels and VB pixels in registers: AVX-512
 * 8 x 32 (16 zmm accumulators), AVX2 4 x 24 (12 ymm); per tap VB / lanes
 * loads, CB broadcasts of the weights and CB x VB / lanes FMAs.
 */
#include <immintrin.h>
#include <omp.h>
#include <string.h>

#include "nn/stem.h"
#include "nn/gemm.h"
#include "base/threads.h"

#define STEM_K 7
#define STEM_MAX_CIN 4
#define MAX_CB 8
#define MAX_VB 32

typedef void (*stem_block_fn)(int taps, const float *const *rows, int x0, const float *wt,
                              float *tmp);

/* tmp[i * 32 + x] = sum_t wt[t * 8 + i] * rows[t][x0 + x], i < 8, x < 32 */
__attribute__((target("avx512f"))) static void block_avx512(int taps, const float *const *rows,
                                                            int x0, const float *wt,
                                                            float *tmp) {
    __m512 acc[8][2];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int t = 0; t < taps; t++, wt += 8) {
        const float *r = rows[t] + x0;
        __m512 b0 = _mm512_loadu_ps(r), b1 = _mm512_loadu_ps(r + 16);
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) {
            __m512 a = _mm512_set1_ps(wt[i]);
            acc[i][0] = _mm512_fmadd_ps(a, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(a, b1, acc[i][1]);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        _mm512_storeu_ps(tmp + i * 32, acc[i][0]);
        _mm512_storeu_ps(tmp + i * 32 + 16, acc[i][1]);
    }
}

/* tmp[i * 24 + x] = sum_t wt[t * 4 + i] * rows[t][x0 + x], i < 4, x < 24 */
__attribute__((target("avx2,fma"))) static void block_avx2(int taps, const float *const *rows,
                                                           int x0, const float *wt, float *tmp) {
    __m256 acc[4][3];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) acc[i][0] = acc[i][1] = acc[i][2] = _mm256_setzero_ps();
    for (int t = 0; t < taps; t++, wt += 4) {
        const float *r = rows[t] + x0;
        __m256 b0 = _mm256_loadu_ps(r), b1 = _mm256_loadu_ps(r + 8), b2 = _mm256_loadu_ps(r + 16);
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            __m256 a = _mm256_broadcast_ss(wt + i);
            acc[i][0] = _mm256_fmadd_ps(a, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(a, b1, acc[i][1]);
            acc[i][2] = _mm256_fmadd_ps(a, b2, acc[i][2]);
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        _mm256_storeu_ps(tmp + i * 24, acc[i][0]);
        _mm256_storeu_ps(tmp + i * 24 + 8, acc[i][1]);
        _mm256_storeu_ps(tmp + i * 24 + 16, acc[i][2]);
    }
}

typedef struct stem_isa {
    int cb, vb; /* output channels x pixels per block */
    stem_block_fn block;
} stem_isa;

static const stem_isa isa_avx512 = {8, 32, block_avx512}, isa_avx2 = {4, 24, block_avx2};

int sx_stem_applies(const sx_conv *c, sx_cpu_path path) {
    return (path == SX_CPU_AVX2 || path == SX_CPU_AVX512) && c->k == STEM_K && c->stride == 2 &&
           c->pad == 3 && c->cin >= 1 && c->cin <= STEM_MAX_CIN;
}

static size_t round16(size_t x) { return (x + 15) & ~(size_t)15; }

/* Floats of one split row: the last block's pixels past the row end (up
 * to 63 for the weight gradient's segments, VB - 1 for the forward), plus
 * the largest tap offset (3), read what split_row wrote there. */
static size_t split_row_floats(int wo) { return round16((size_t)wo + 64 + 4); }

static size_t weight_floats(const sx_conv *c) {
    return round16((size_t)(c->cout + MAX_CB - 1) / MAX_CB * MAX_CB * c->cin * STEM_K * STEM_K);
}

static size_t thread_floats(const sx_conv *c, int wo) {
    return (size_t)2 * c->cin * STEM_K * split_row_floats(wo);
}

size_t sx_stem_work_floats(const sx_conv *c, int w) {
    int wo = (w + 2 * 3 - STEM_K) / 2 + 1;
    return weight_floats(c) + SX_GEMM_MAX_THREADS * thread_floats(c, wo);
}

/* wt[b][t][i] = w[b * cb + i][t] (zero for channels past cout). */
static void arrange_weights(const sx_conv *c, int cb, float *wt) {
    int taps = c->cin * STEM_K * STEM_K, blocks = (c->cout + cb - 1) / cb;
    for (int b = 0; b < blocks; b++)
        for (int t = 0; t < taps; t++)
            for (int i = 0; i < cb; i++) {
                int co = b * cb + i;
                wt[((size_t)b * taps + t) * cb + i] = co < c->cout ? c->w[(size_t)co * taps + t] : 0.0f;
            }
}

/*
 * E[j] = src[2j - 2], O[j] = src[2j - 3], zero outside [0, w); src NULL: a
 * padding row. The interior is one deinterleaving loop the compiler
 * vectorises; only the ends are zeroed (a branch per element cost as much
 * as the kernel).
 */
static void split_row(const float *src, int w, size_t len, float *e, float *o) {
    if (!src) {
        memset(e, 0, len * sizeof *e);
        memset(o, 0, len * sizeof *o);
        return;
    }
    size_t ne = (size_t)(w + 1) / 2, no = (size_t)w / 2; /* even / odd columns of the row */
    e[0] = 0.0f;
    o[0] = o[1] = 0.0f;
    for (size_t t = 0; t < no; t++) {
        e[1 + t] = src[2 * t];
        o[2 + t] = src[2 * t + 1];
    }
    if (ne > no) e[ne] = src[2 * no];
    memset(e + 1 + ne, 0, (len - 1 - ne) * sizeof *e);
    memset(o + 2 + no, 0, (len - 2 - no) * sizeof *o);
}

/* The split rows that output row oy of image img reads, into buf: pair
 * ci * 7 + ky at buf + 2 (ci * 7 + ky) len (E, then O). */
static void split_rows(int cin, const float *in, size_t cstride, size_t nstride, int h, int w,
                       int img, int oy, size_t len, float *buf) {
    for (int ci = 0; ci < cin; ci++)
        for (int ky = 0; ky < STEM_K; ky++) {
            int iy = 2 * oy - 3 + ky;
            float *e = buf + (size_t)2 * (ci * STEM_K + ky) * len;
            const float *src =
                iy >= 0 && iy < h ? in + ci * cstride + img * nstride + (size_t)iy * w : NULL;
            split_row(src, w, len, e, e + len);
        }
}

/* rows[t] for tap t = (ci * 7 + ky) * 7 + kx: (kx even ? O : E) + kx / 2 of its pair. */
static void tap_rows(int taps, const float *buf, size_t len, const float **rows) {
    for (int t = 0; t < taps; t++) {
        int kx = t % STEM_K, split = t / STEM_K;
        const float *e = buf + (size_t)2 * split * len, *o = e + len;
        rows[t] = (kx % 2 ? e : o) + kx / 2;
    }
}

/* Channels [co0, co0 + cnt) of pixels [p, p + px) from the block's tmp:
 * + bias (+ out), ReLU'd; one branch-free loop per case. */
static void store_block(const sx_conv *c, const float *tmp, int vb, int co0, int cnt, size_t p,
                        int px, size_t plane, int relu, int accumulate, float *out) {
    for (int i = 0; i < cnt; i++) {
        float *restrict o = out + (size_t)(co0 + i) * plane + p;
        const float *restrict v = tmp + (size_t)i * vb;
        float bias = c->b ? c->b[co0 + i] : 0.0f;
        if (accumulate)
            for (int x = 0; x < px; x++) o[x] += v[x] + bias;
        else
            for (int x = 0; x < px; x++) o[x] = v[x] + bias;
        if (relu)
            for (int x = 0; x < px; x++) o[x] = o[x] > 0.0f ? o[x] : 0.0f;
    }
}

void sx_stem_run(const sx_conv *c, sx_cpu_path path, const float *in, int in_nchw, int n, int h,
                 int w, float *work, float *out, int relu, int accumulate) {
    const stem_isa *isa = path == SX_CPU_AVX512 ? &isa_avx512 : &isa_avx2;
    int ho, wo;
    sx_conv_out_size(c, h, w, &ho, &wo);
    const int taps = c->cin * STEM_K * STEM_K, blocks = (c->cout + isa->cb - 1) / isa->cb;
    const size_t len = split_row_floats(wo), per_thread = thread_floats(c, wo);
    const size_t hw = (size_t)h * w, plane = (size_t)n * ho * wo;
    const size_t cstride = in_nchw ? hw : (size_t)n * hw, nstride = in_nchw ? c->cin * hw : hw;
    float *wt = work, *bufs = work + weight_floats(c);
    arrange_weights(c, isa->cb, wt);
    int threads = sx_threads() < SX_GEMM_MAX_THREADS ? sx_threads() : SX_GEMM_MAX_THREADS;
#pragma omp parallel num_threads(threads)
    {
        float *buf = bufs + (size_t)omp_get_thread_num() * per_thread;
        const float *rows[STEM_MAX_CIN * STEM_K * STEM_K];
        tap_rows(taps, buf, len, rows);
        float tmp[MAX_CB * MAX_VB];
#pragma omp for schedule(static)
        for (long r = 0; r < (long)n * ho; r++) {
            split_rows(c->cin, in, cstride, nstride, h, w, (int)(r / ho), (int)(r % ho), len, buf);
            for (int x0 = 0; x0 < wo; x0 += isa->vb) {
                int px = wo - x0 < isa->vb ? wo - x0 : isa->vb;
                for (int b = 0; b < blocks; b++) {
                    int co0 = b * isa->cb, cnt = c->cout - co0 < isa->cb ? c->cout - co0 : isa->cb;
                    isa->block(taps, rows, x0, wt + (size_t)b * taps * isa->cb, tmp);
                    store_block(c, tmp, isa->vb, co0, cnt, (size_t)r * wo + x0, px, plane, relu,
                                accumulate, out);
                }
            }
        }
    }
}

/* ---- the weight gradient ------------------------------------------------------------ */

/*
 * dW[co][tap] = sum over output pixels of dout[co][pixel] * rows[tap][pixel]:
 * the same split rows as the forward. Per output row and block of 4 output
 * channels, the row's dout (a segment of 4 vectors per channel) stays in 16
 * registers while every tap adds its 4 row vectors' products into one
 * vector accumulator per channel, acc[tap][co][lane], kept in the thread's
 * work (4 x 147 x 16 floats per block: L1) and summed over lanes once at
 * the end. Per tap: 4 row loads, 4 accumulator loads and stores, 16 FMAs.
 */
#define DW_CB 4
#define DW_SEG 4 /* vectors per segment of a row */

/* acc[t * 4 + i][lane] += sum_v d[i][v] * rows[t][x0 + 16 v + lane], AVX-512 */
__attribute__((target("avx512f"))) static void dw_segment_avx512(int taps,
                                                                 const float *const *rows, int x0,
                                                                 const float *d, size_t ld,
                                                                 float *acc) {
    __m512 dv[DW_CB][DW_SEG];
#pragma GCC unroll 4
    for (int i = 0; i < DW_CB; i++)
#pragma GCC unroll 4
        for (int v = 0; v < DW_SEG; v++) dv[i][v] = _mm512_loadu_ps(d + i * ld + 16 * v);
    for (int t = 0; t < taps; t++, acc += DW_CB * 16) {
        const float *r = rows[t] + x0;
        __m512 r0 = _mm512_loadu_ps(r), r1 = _mm512_loadu_ps(r + 16);
        __m512 r2 = _mm512_loadu_ps(r + 32), r3 = _mm512_loadu_ps(r + 48);
#pragma GCC unroll 4
        for (int i = 0; i < DW_CB; i++) {
            __m512 a = _mm512_loadu_ps(acc + 16 * i);
            a = _mm512_fmadd_ps(dv[i][0], r0, a);
            a = _mm512_fmadd_ps(dv[i][1], r1, a);
            a = _mm512_fmadd_ps(dv[i][2], r2, a);
            a = _mm512_fmadd_ps(dv[i][3], r3, a);
            _mm512_storeu_ps(acc + 16 * i, a);
        }
    }
}

/* The same with 8 lanes (the accumulator's upper 8 lanes unused), AVX2. */
__attribute__((target("avx2,fma"))) static void dw_segment_avx2(int taps,
                                                               const float *const *rows, int x0,
                                                               const float *d, size_t ld,
                                                               float *acc) {
    __m256 dv[DW_CB][DW_SEG];
#pragma GCC unroll 4
    for (int i = 0; i < DW_CB; i++)
#pragma GCC unroll 4
        for (int v = 0; v < DW_SEG; v++) dv[i][v] = _mm256_loadu_ps(d + i * ld + 8 * v);
    for (int t = 0; t < taps; t++, acc += DW_CB * 16) {
        const float *r = rows[t] + x0;
        __m256 r0 = _mm256_loadu_ps(r), r1 = _mm256_loadu_ps(r + 8);
        __m256 r2 = _mm256_loadu_ps(r + 16), r3 = _mm256_loadu_ps(r + 24);
#pragma GCC unroll 4
        for (int i = 0; i < DW_CB; i++) {
            __m256 a = _mm256_loadu_ps(acc + 16 * i);
            a = _mm256_fmadd_ps(dv[i][0], r0, a);
            a = _mm256_fmadd_ps(dv[i][1], r1, a);
            a = _mm256_fmadd_ps(dv[i][2], r2, a);
            a = _mm256_fmadd_ps(dv[i][3], r3, a);
            _mm256_storeu_ps(acc + 16 * i, a);
        }
    }
}

/* Pixels per segment, and the padded length of a dout row. */
static int dw_seg_px(sx_cpu_path path) { return DW_SEG * (path == SX_CPU_AVX512 ? 16 : 8); }

static size_t dw_row_floats(int wo) { return round16((size_t)wo + DW_SEG * 16); }

static size_t dw_acc_floats(const sx_conv *c) {
    return (size_t)(c->cout + DW_CB - 1) / DW_CB * DW_CB * c->cin * STEM_K * STEM_K * 16;
}

static size_t dw_thread_floats(const sx_conv *c, int wo) {
    return thread_floats(c, wo) + dw_acc_floats(c) + round16((size_t)DW_CB * dw_row_floats(wo));
}

size_t sx_stem_weight_grad_floats(const sx_conv *c, int w) {
    int wo = (w + 2 * 3 - STEM_K) / 2 + 1;
    return SX_GEMM_MAX_THREADS * dw_thread_floats(c, wo);
}

void sx_stem_weight_grad(const sx_conv *c, sx_cpu_path path, const float *in, const float *dout,
                         int n, int h, int w, float *work, float *dw) {
    int ho, wo;
    sx_conv_out_size(c, h, w, &ho, &wo);
    const int taps = c->cin * STEM_K * STEM_K, blocks = (c->cout + DW_CB - 1) / DW_CB;
    const int seg = dw_seg_px(path);
    const size_t len = split_row_floats(wo), per_thread = dw_thread_floats(c, wo);
    const size_t hw = (size_t)h * w, plane = (size_t)n * ho * wo, drow = dw_row_floats(wo);
    int threads = sx_threads() < SX_GEMM_MAX_THREADS ? sx_threads() : SX_GEMM_MAX_THREADS;
    int team = 1;
#pragma omp parallel num_threads(threads)
    {
#pragma omp single
        team = omp_get_num_threads();
        float *buf = work + (size_t)omp_get_thread_num() * per_thread;
        float *acc = buf + thread_floats(c, wo), *d = acc + dw_acc_floats(c);
        memset(acc, 0, dw_acc_floats(c) * sizeof *acc);
        const float *rows[STEM_MAX_CIN * STEM_K * STEM_K];
        tap_rows(taps, buf, len, rows);
#pragma omp for schedule(static)
        for (long r = 0; r < (long)n * ho; r++) {
            split_rows(c->cin, in, n * hw, hw, h, w, (int)(r / ho), (int)(r % ho), len, buf);
            for (int b = 0; b < blocks; b++) {
                /* this row's dout for the block, zero past wo and past cout */
                for (int i = 0; i < DW_CB; i++) {
                    int co = b * DW_CB + i;
                    float *di = d + (size_t)i * drow;
                    if (co < c->cout) {
                        memcpy(di, dout + (size_t)co * plane + (size_t)r * wo, (size_t)wo * sizeof *di);
                        memset(di + wo, 0, (drow - wo) * sizeof *di);
                    } else {
                        memset(di, 0, drow * sizeof *di);
                    }
                }
                float *ab = acc + (size_t)b * taps * DW_CB * 16;
                for (int x0 = 0; x0 < wo; x0 += seg) {
                    if (path == SX_CPU_AVX512)
                        dw_segment_avx512(taps, rows, x0, d + x0, drow, ab);
                    else
                        dw_segment_avx2(taps, rows, x0, d + x0, drow, ab);
                }
            }
        }
    }
    /* dw[co][t] += the lanes of every thread's acc[b][t][i] */
    int lanes = path == SX_CPU_AVX512 ? 16 : 8;
    for (int co = 0; co < c->cout; co++)
        for (int t = 0; t < taps; t++) {
            int b = co / DW_CB, i = co % DW_CB;
            double sum = 0.0;
            for (int th = 0; th < team; th++) {
                const float *a = work + (size_t)th * per_thread + thread_floats(c, wo) +
                                 (((size_t)b * taps + t) * DW_CB + i) * 16;
                for (int l = 0; l < lanes; l++) sum += a[l];
            }
            dw[(size_t)co * taps + t] += (float)sum;
        }
}

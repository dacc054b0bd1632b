/*
 * conv_grad.c - the convolution for training (see conv_grad.h): im2col
 * (conv.c's, the one there is) + GEMM forward, and its backward; the 3x3
 * stride-1 convs marked for Winograd take nn/winograd.c's forward, input
 * gradient and weight gradient instead.
 *
 * GEMMs are split over the OpenMP team by this file when OpenBLAS runs
 * single-threaded, as encoder training sets it: one thread pool, never two
 * spinning against each other on a shared machine (docs/performance.md).
 */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "nn/conv_grad.h"
#include "nn/gemm.h"
#include "nn/stem.h"
#include "nn/winograd.h"
#include "base/threads.h"

int openblas_get_num_threads(void);

/* ---- GEMMs split over the OpenMP threads ----------------------------------------- */

/*
 * Row-major C[m][n] = A x B (+ beta C), with A [m][k] (or its transpose) and
 * B [k][n] (or its transpose). When OpenBLAS runs single-threaded, each
 * thread of the team takes a block of C's columns (or of its rows when
 * there are few columns).
 */
static void gemm(int ta, int tb, int m, int n, int k, const float *a, int lda, const float *b,
                 int ldb, float beta, float *c, int ldc) {
    int threads = sx_threads();
    enum CBLAS_TRANSPOSE TA = ta ? CblasTrans : CblasNoTrans, TB = tb ? CblasTrans : CblasNoTrans;
    if (threads < 2 || openblas_get_num_threads() > 1 || (long)m * n * k < (1L << 18)) {
        cblas_sgemm(CblasRowMajor, TA, TB, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    int by_cols = n >= 64 * threads;
#pragma omp parallel num_threads(threads)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int total = by_cols ? n : m;
        int unit = by_cols ? 16 : 1; /* column blocks stay vector aligned */
        int chunks = (total + unit - 1) / unit;
        int lo = (int)((long)chunks * t / nt) * unit, hi = (int)((long)chunks * (t + 1) / nt) * unit;
        if (hi > total) hi = total;
        if (hi > lo) {
            if (by_cols) { /* columns lo..hi of B and C */
                const float *bb = tb ? b + (size_t)lo * ldb : b + lo;
                cblas_sgemm(CblasRowMajor, TA, TB, m, hi - lo, k, 1.0f, a, lda, bb, ldb, beta,
                            c + lo, ldc);
            } else { /* rows lo..hi of A and C */
                const float *aa = ta ? a + lo : a + (size_t)lo * lda;
                cblas_sgemm(CblasRowMajor, TA, TB, hi - lo, n, k, 1.0f, aa, lda, b, ldb, beta,
                            c + (size_t)lo * ldc, ldc);
            }
        }
    }
}

/*
 * C[m][n] += A[m][k] x B[n][k]^T (the weight gradient, k = the batch's
 * output pixels, n = cin * k * k). For a long k, splitting k lets each thread pack only its own
 * slices of A and B; splitting m or n would make every thread pack all of
 * the other operand. Thread 0 accumulates into C, the others into scratch
 * that is added at the end.
 */
static void gemm_nt_ksplit(int m, int n, int k, const float *a, const float *b, float *c) {
    int threads = sx_threads();
    /* Splitting k costs zeroing and adding (threads - 1) * m * n partial sums;
     * splitting C's columns costs each thread packing all of A, m * k. The
     * deep layers (few pixels, many rows: n > k) take the second. */
    if (n >= k) {
        gemm(0, 1, m, n, k, a, k, b, k, 1.0f, c, n);
        return;
    }
    if (threads < 2 || openblas_get_num_threads() > 1 || k < 256 * threads ||
        (long)m * n * k < (1L << 18)) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, a, k, b, k, 1.0f, c,
                    n);
        return;
    }
    size_t mn = (size_t)m * n;
    float *part = malloc(sizeof(float) * mn * (threads - 1));
    if (!part) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, a, k, b, k, 1.0f, c,
                    n);
        return;
    }
#pragma omp parallel num_threads(threads)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int chunks = (k + 15) / 16;
        int lo = (int)((long)chunks * t / nt) * 16, hi = (int)((long)chunks * (t + 1) / nt) * 16;
        if (hi > k) hi = k;
        float *dst = t ? part + (size_t)(t - 1) * mn : c;
        if (t && hi <= lo) memset(dst, 0, sizeof(float) * mn);
        if (hi > lo)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, hi - lo, 1.0f, a + lo, k,
                        b + lo, k, t ? 0.0f : 1.0f, dst, n);
#pragma omp barrier
#pragma omp for schedule(static)
        for (size_t i = 0; i < mn; i++)
            for (int j = 0; j < nt - 1; j++) c[i] += part[(size_t)j * mn + i];
    }
    free(part);
}

/* ---- forward ------------------------------------------------------------------- */

static int conv_pointwise(const sx_conv *c) { return c->k == 1 && c->stride == 1 && c->pad == 0; }

size_t sx_conv_grad_col_floats(const sx_conv *c, int n, int h, int w) {
    int ho, wo;
    sx_conv_out_size(c, h, w, &ho, &wo);
    if (conv_pointwise(c)) return 0;
    return (size_t)c->cin * c->k * c->k * n * ho * wo;
}

/* ---- backward ------------------------------------------------------------------ */

/*
 * The adjoint of one im2col row r = (ci, ky, kx) over output columns
 * [j0, j0 + cols): din_c[img][iy][ix] += src[j - j0] for every column j
 * whose input pixel (iy, ix) lies inside the image. din_c is channel ci's
 * [n][h][w] plane. Walks the columns as conv.c's im2col_row does.
 */
static void col2im_row(const sx_conv *c, float *din_c, int h, int w, int ho, int wo, size_t r,
                       size_t j0, size_t cols, const float *src) {
    int kx = (int)(r % c->k), ky = (int)(r / c->k % c->k);
    int s = c->stride, off = kx - c->pad;
    int lo, hi; /* ox in [lo, hi): ix = ox * s + off inside */
    sx_conv_inside_cols(c, kx, w, &lo, &hi);
    size_t per_img = (size_t)ho * wo, j = j0, end = j0 + cols;
    size_t img = j / per_img, rem = j % per_img;
    int oy = (int)(rem / wo), ox0 = (int)(rem % wo);
    while (j < end) {
        size_t run = (size_t)(wo - ox0);
        if (run > end - j) run = end - j;
        int iy = oy * s - c->pad + ky;
        if (iy >= 0 && iy < h) {
            int a = lo > ox0 ? lo - ox0 : 0, b = hi > ox0 ? hi - ox0 : 0;
            if (a > (int)run) a = (int)run;
            if (b > (int)run) b = (int)run;
            float *to = din_c + (img * h + iy) * (size_t)w + (ptrdiff_t)ox0 * s + off;
            if (s == 1) /* contiguous: vectorises */
                for (int t = a; t < b; t++) to[t] += src[t];
            else
                for (int t = a; t < b; t++) to[(ptrdiff_t)t * s] += src[t];
        }
        src += run;
        j += run;
        ox0 += (int)run;
        if (ox0 == wo) {
            ox0 = 0;
            if (++oy == ho) oy = 0, img++;
        }
    }
}

/* Columns per chunk of the input gradient: W^T x dout for about 2M floats
 * at a time (as conv.c's forward chunks its im2col), so the GEMM writes and
 * col2im reads it in cache instead of through a whole-batch matrix. */
static size_t dcol_chunk_cols(size_t kk, size_t m) {
    size_t cols = ((size_t)2 << 20) / kk;
    cols = cols < 256 ? 256 : cols & ~(size_t)63;
    return cols < m ? cols : m;
}

/* din = col2im(W^T x dout), chunk by chunk through `scratch`. */
static void input_gradient(const sx_conv *c, const float *dout, int n, int h, int w, int ho,
                           int wo, float *scratch, float *din) {
    const size_t m = (size_t)n * ho * wo, kk = (size_t)c->cin * c->k * c->k;
    const size_t plane = (size_t)n * h * w, chunk = dcol_chunk_cols(kk, m);
    memset(din, 0, sizeof(float) * plane * c->cin);
    for (size_t j0 = 0; j0 < m; j0 += chunk) {
        size_t cols = m - j0 < chunk ? m - j0 : chunk;
        gemm(1, 0, (int)kk, (int)cols, c->cout, c->w, (int)kk, dout + j0, (int)m, 0.0f, scratch,
             (int)cols);
        /* rows of one input channel write only its plane: no two threads collide */
#pragma omp parallel for num_threads(sx_threads()) schedule(static)
        for (int ci = 0; ci < c->cin; ci++)
            for (int q = 0; q < c->k * c->k; q++) {
                size_t r = (size_t)ci * c->k * c->k + q;
                col2im_row(c, din + ci * plane, h, w, ho, wo, r, j0, cols, scratch + r * cols);
            }
    }
}

/* ---- the input gradient by Winograd ------------------------------------------- */

/*
 * For a 3x3 stride-1 pad-1 convolution the input gradient is itself one:
 * din = conv(dout, W') with W'[ci][co] = W[co][ci] turned by 180 degrees
 * (each input pixel collects the outputs it fed, through the mirrored
 * taps), so Winograd's forward computes it, with no W^T x dout matrix nine
 * times the input and no col2im. The weights change every step, so their
 * transform U' (sx_winograd_prepare_mirrored, read straight from W) is
 * rebuilt each time: (m+2)^2 floats per (co, ci) against the convolution's
 * 9 * n * h * w multiply-adds per (co, ci). The weight gradient of the same
 * convs is Winograd's too (sx_winograd_weight_grad: dU from the transformed
 * output gradient and input, then dW = G^T dU G), so they build no im2col.
 */
static sx_conv mirrored_conv(const sx_conv *c) {
    const sx_gemm_kernel *g = c->gemm ? sx_gemm_kernel_for(sx_gemm_kernel_path(c->gemm), c->cin)
                                      : NULL;
    return (sx_conv){.cin = c->cout, .cout = c->cin, .k = 3, .stride = 1, .pad = 1,
                     .gemm = g, .wino_m = c->wino_m};
}

static size_t round16(size_t x) { return (x + 15) & ~(size_t)15; }

/* Whether the forward and the input gradient take Winograd: c is marked for
 * it and the batch has tiles enough (the mirrored conv has the same tiles). */
static int wino_applies(const sx_conv *c, int n, int h, int w) {
    return sx_winograd_weight_floats(c, c->wino_m) && sx_winograd_applies(c, n, h, w);
}

/*
 * Scratch of every Winograd step of this conv: transformed weights (this
 * step's U for the forward, the mirrored U' for the input gradient, or dU
 * for the weight gradient: all (m+2)^2 x cin x cout), then the run's
 * workspace (the same size for the conv and its mirror: it counts cin +
 * cout). 0 when Winograd does not apply to this shape.
 */
static size_t max_size(size_t a, size_t b) { return a > b ? a : b; }

/* Floats of the transformed weights' part: U (or dU) and U' (which may be
 * laid out for another kernel, its rows being c's cin). */
static size_t wino_weights_part(const sx_conv *c) {
    sx_conv t = mirrored_conv(c);
    return round16(max_size(sx_winograd_weight_floats(c, c->wino_m),
                            sx_winograd_mirrored_weight_floats(c, c->wino_m, t.gemm)));
}

static size_t wino_scratch_floats(const sx_conv *c, int n, int h, int w) {
    if (!wino_applies(c, n, h, w)) return 0;
    sx_conv t = mirrored_conv(c);
    return wino_weights_part(c) + max_size(sx_winograd_workspace_floats(c, n, h, w),
                                           sx_winograd_workspace_floats(&t, n, h, w));
}

static float *wino_workspace(const sx_conv *c, float *scratch) {
    return scratch + wino_weights_part(c);
}

static void wino_input_gradient(const sx_conv *c, const float *dout, int n, int h, int w,
                                float *scratch, float *din) {
    sx_conv t = mirrored_conv(c);
    sx_winograd_prepare_mirrored(c, c->wino_m, t.gemm, scratch);
    t.wino = scratch;
    sx_winograd_run(&t, dout, n, h, w, wino_workspace(c, scratch), NULL, din, 0, 0);
}

/* The forward by Winograd: U = G g G^T of this step's weights, then the
 * encoder's run (no bias: a BatchNorm follows), leaving V in `kept` unless
 * it is NULL. */
static void wino_forward(const sx_conv *c, const float *in, int n, int h, int w, float *kept,
                         float *scratch, float *out) {
    sx_conv t = *c;
    t.b = NULL;
    sx_winograd_prepare(&t, t.wino_m, scratch);
    sx_winograd_run(&t, in, n, h, w, wino_workspace(c, scratch), kept, out, 0, 0);
}

/* ---- the forward on the project's GEMM ------------------------------------------ */

/*
 * The convs that do not take Winograd run their forward on nn/gemm.h's
 * kernel when the trainer chose one (c->gemm): this step's weights are
 * packed into the scratch (cout x cin*k*k floats, little next to one
 * activation), and the kernel packs im2col straight from the input as
 * inference does, so no im2col matrix is written, and none is kept: the
 * weight gradient rebuilds it. Measured on the stem of resnet18 width 0.5
 * (cout 32, a 77 MB whole-batch im2col), per step: forward 58 ms with
 * im2col + OpenBLAS (35 GFLOP/s), 50 ms writing the kept im2col and
 * packing from it, 26 ms packing from the input; backward 20 ms on the
 * kept im2col, 35 ms rebuilding it (docs/performance.md, session 9).
 */
static int packed_applies(const sx_conv *c, int n, int h, int w) {
    return c->gemm && !wino_applies(c, n, h, w);
}

static size_t packed_scratch_floats(const sx_conv *c, int n, int h, int w) {
    if (!packed_applies(c, n, h, w)) return 0;
    /* the run's work: the kernel's, or the direct stem's (nn/stem.h) */
    size_t work = sx_gemm_work_floats(c->gemm);
    if (sx_stem_applies(c, sx_gemm_kernel_path(c->gemm)) && sx_stem_work_floats(c, w) > work)
        work = sx_stem_work_floats(c, w);
    return round16(sx_conv_packed_floats(c, c->gemm)) + work;
}

static void packed_forward(const sx_conv *c, const float *in, int n, int h, int w, float *scratch,
                           float *out) {
    sx_cpu_path path = sx_gemm_kernel_path(c->gemm);
    if (sx_stem_applies(c, path)) { /* direct, from c->w: nothing to pack */
        sx_conv t = *c;
        t.b = NULL;
        sx_stem_run(&t, path, in, 0, n, h, w, scratch, out, 0, 0);
        return;
    }
    sx_conv t = *c;
    t.b = NULL;
    sx_conv_pack(&t, c->gemm, scratch);
    sx_conv_run(&t, in, 0, n, h, w, scratch + round16(sx_conv_packed_floats(c, c->gemm)), out, 0,
                0);
}

size_t sx_conv_grad_kept_floats(const sx_conv *c, int n, int h, int w) {
    if (wino_applies(c, n, h, w)) return sx_winograd_kept_floats(c, n, h, w);
    if (packed_applies(c, n, h, w)) return 0;
    return sx_conv_grad_col_floats(c, n, h, w);
}

/* A stem with a GEMM kernel: nn/stem.c's forward and weight gradient, no im2col. */
static int stem_direct(const sx_conv *c) {
    return c->gemm && sx_stem_applies(c, sx_gemm_kernel_path(c->gemm));
}

/* Floats of input_gradient's W^T x dout chunk. */
static size_t dcol_floats(const sx_conv *c, int n, int h, int w) {
    int ho, wo;
    sx_conv_out_size(c, h, w, &ho, &wo);
    size_t kk = (size_t)c->cin * c->k * c->k;
    return kk * dcol_chunk_cols(kk, (size_t)n * ho * wo);
}

size_t sx_conv_grad_scratch_floats(const sx_conv *c, int n, int h, int w) {
    size_t col = sx_conv_grad_col_floats(c, n, h, w), wino = wino_scratch_floats(c, n, h, w);
    if (stem_direct(c)) { /* the weight gradient's work, or the input gradient's chunk */
        col = sx_stem_weight_grad_floats(c, w);
        if (dcol_floats(c, n, h, w) > col) col = dcol_floats(c, n, h, w);
    }
    size_t packed = packed_scratch_floats(c, n, h, w), most = col > wino ? col : wino;
    return most > packed ? most : packed;
}

int sx_conv_forward_nobias(const sx_conv *c, const float *in, int n, int h, int w, float *kept,
                           float *scratch, float *out) {
    int ho, wo;
    sx_conv_out_size(c, h, w, &ho, &wo);
    const int m = n * ho * wo, kk = c->cin * c->k * c->k;
    if (wino_applies(c, n, h, w)) {
        wino_forward(c, in, n, h, w, kept, scratch, out);
        return kept != NULL;
    }
    if (packed_applies(c, n, h, w)) {
        packed_forward(c, in, n, h, w, scratch, out);
        return 0;
    }
    if (conv_pointwise(c)) {
        gemm(0, 0, c->cout, m, kk, c->w, kk, in, m, 0.0f, out, m);
        return 0;
    }
    float *col = kept ? kept : scratch;
    sx_conv_im2col(c, in, n, h, w, 0, (size_t)m, col, (size_t)m);
    gemm(0, 0, c->cout, m, kk, c->w, kk, col, m, 0.0f, out, m);
    return kept != NULL;
}

void sx_conv_backward(const sx_conv *c, const float *in, const float *col, const float *dout,
                      int n, int h, int w, float *scratch, float *dw, float *din) {
    int ho, wo;
    sx_conv_out_size(c, h, w, &ho, &wo);
    const int m = n * ho * wo, kk = c->cin * c->k * c->k;
    const int pw = conv_pointwise(c);
    const int wino = wino_applies(c, n, h, w);
    if (dw && wino) {
        sx_winograd_weight_grad(c, in, col, dout, n, h, w, wino_workspace(c, scratch), scratch,
                                dw);
    } else if (dw && stem_direct(c)) {
        sx_stem_weight_grad(c, sx_gemm_kernel_path(c->gemm), in, dout, n, h, w, scratch, dw);
    } else if (dw) {
        const float *b = pw ? in : col;
        if (!b) {
            sx_conv_im2col(c, in, n, h, w, 0, (size_t)m, scratch, (size_t)m);
            b = scratch;
        }
        gemm_nt_ksplit(c->cout, kk, m, dout, b, dw);
    }
    if (!din) return;
    if (pw) /* the input gradient is W^T x dout itself */
        gemm(1, 0, kk, m, c->cout, c->w, kk, dout, m, 0.0f, din, m);
    else if (wino)
        wino_input_gradient(c, dout, n, h, w, scratch, din);
    else
        input_gradient(c, dout, n, h, w, ho, wo, scratch, din);
}

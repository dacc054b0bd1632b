/*
 * conv.c - convolution as GEMM on the CNHW layout (see conv.h).
 *
 * The output columns (n, oy, ox) of a whole batch are cut into chunks whose
 * im2col matrix fits the `col` buffer (a few MB, so it stays in the last
 * level cache between being written and being read by the GEMM).
 *
 * A conv with packed weights (the encoder's, nn/model.c) runs on nn/gemm.h's
 * kernels, which pack the im2col matrix block by block straight from the input
 * (pack_b_conv) and fuse bias, ReLU and residual into their stores; the rest
 * of this comment is about the other path, im2col + OpenBLAS.
 *
 * Threading uses one pool only: two pools spinning against each other on
 * the same cores (OpenMP im2col, then an OpenBLAS-threaded GEMM) measured 2-3x
 * slower than either alone on the 2-core target (docs/performance.md).
 *   - OpenBLAS threaded (openblas_get_num_threads() > 1, what
 *     siamidx_set_threads sets up): im2col and bias stay serial, the GEMM of
 *     each chunk is one OpenBLAS call. Measured the faster of the two.
 *   - OpenBLAS single-threaded (as the encoder training sets it): the OpenMP
 *     threads build the im2col rows together, then each one runs a
 *     single-threaded sgemm on its own block of the output and adds the bias
 *     (and the ReLU) while the block is still in its cache.
 */
#include <math.h>
#include <omp.h>
#include <stddef.h>
#include <string.h>

#include <cblas.h>

#include "nn/conv.h"
#include "nn/gemm.h"
#include "base/threads.h"

/* Target size of the im2col buffer: large enough for efficient GEMM panels,
 * small enough to stay in cache and not to dominate peak memory. */
#define COL_TARGET_FLOATS (2u << 20)
/* Fewer output columns than this per thread and we split the rows instead. */
#define MIN_COLS_PER_THREAD 192

int openblas_get_num_threads(void);

void sx_conv_out_size(const sx_conv *c, int h, int w, int *ho, int *wo) {
    *ho = (h + 2 * c->pad - c->k) / c->stride + 1;
    *wo = (w + 2 * c->pad - c->k) / c->stride + 1;
}

static int conv_is_pointwise(const sx_conv *c) {
    return c->k == 1 && c->stride == 1 && c->pad == 0;
}

/* Output columns per im2col chunk: whole multiples of 64 (cache lines and
 * GEMM panels), never more than the batch has. */
static size_t conv_chunk_cols(const sx_conv *c, int n, int h, int w) {
    int ho, wo;
    sx_conv_out_size(c, h, w, &ho, &wo);
    size_t m = (size_t)n * ho * wo;
    size_t kk = (size_t)c->cin * c->k * c->k;
    size_t cols = COL_TARGET_FLOATS / kk;
    cols = cols < 256 ? 256 : cols & ~(size_t)63;
    return cols < m ? cols : m;
}

size_t sx_conv_col_floats(const sx_conv *c, int n, int h, int w) {
    if (c->packed) return sx_gemm_work_floats(c->gemm);
    if (conv_is_pointwise(c)) return 0;
    return (size_t)c->cin * c->k * c->k * conv_chunk_cols(c, n, h, w);
}

/* Where input element (ch, img, 0, 0) lives for either layout. */
typedef struct conv_input {
    const float *data;
    size_t cstride, nstride; /* floats between channels / between images */
    int h, w;
} conv_input;

/*
 * One im2col row r = (ci, ky, kx) for output columns [j0, j0 + cols):
 * dst[j - j0] = in[ci][img][oy*s - p + ky][ox*s - p + kx], 0 outside.
 */
static void im2col_row(const sx_conv *c, const conv_input *in, int ho, int wo, size_t r,
                       size_t j0, size_t cols, float *dst) {
    int kx = (int)(r % c->k), ky = (int)(r / c->k % c->k);
    size_t ci = r / ((size_t)c->k * c->k);
    size_t per_img = (size_t)ho * wo;
    size_t j = j0, end = j0 + cols;
    int s = c->stride, off = kx - c->pad;
    int lo, hi; /* ix = ox * s + off is inside the row for ox in [lo, hi) */
    sx_conv_inside_cols(c, kx, in->w, &lo, &hi);
    /* the position of column j, divided out once and then stepped: a
       division per run of wo columns cost a quarter of the time at wo <= 32 */
    size_t img = j / per_img, rem = j % per_img;
    int oy = (int)(rem / wo), ox0 = (int)(rem % wo);
    while (j < end) {
        size_t run = (size_t)(wo - ox0);
        if (run > end - j) run = end - j;
        int iy = oy * s - c->pad + ky;
        if (iy < 0 || iy >= in->h) {
            memset(dst, 0, run * sizeof *dst);
        } else {
            const float *src = in->data + ci * in->cstride + img * in->nstride + (size_t)iy * in->w;
            size_t a = lo > ox0 ? (size_t)(lo - ox0) : 0;
            size_t b = hi > ox0 ? (size_t)(hi - ox0) : 0;
            if (a > run) a = run;
            if (b > run) b = run;
            if (b < a) b = a;
            /* the padding at either end is a float or three: stores, not
               calls to memset (which cost as much as the copy at wo <= 32) */
            for (size_t t = 0; t < a; t++) dst[t] = 0.0f;
            const float *from = src + (ptrdiff_t)ox0 * s + off;
            if (s == 1)
                memcpy(dst + a, from + a, (b - a) * sizeof *dst);
            else if (s == 2) /* a constant stride the compiler vectorises */
                for (size_t t = a; t < b; t++) dst[t] = from[2 * t];
            else
                for (size_t t = a; t < b; t++) dst[t] = from[t * s];
            for (size_t t = b; t < run; t++) dst[t] = 0.0f;
        }
        dst += run;
        j += run;
        ox0 += (int)run;
        if (ox0 == wo) {
            ox0 = 0;
            if (++oy == ho) oy = 0, img++;
        }
    }
}

/* Adds the bias (and applies the ReLU) to rows [r0, r0 + rows), columns [c0, c0 + cols). */
static void bias_relu_rows(const sx_conv *c, int r0, int rows, size_t c0, size_t cols, float *out,
                           size_t ldc, int relu) {
    for (int r = r0; r < r0 + rows; r++) {
        float *o = out + (size_t)r * ldc + c0;
        float bias = c->b[r];
        if (relu)
            for (size_t t = 0; t < cols; t++) {
                float v = o[t] + bias;
                o[t] = v > 0.0f ? v : 0.0f;
            }
        else
            for (size_t t = 0; t < cols; t++) o[t] += bias;
    }
}

static void gemm_only(const sx_conv *c, size_t kk, int r0, int rows, const float *b, size_t ldb,
                      size_t c0, size_t cols, float *out, size_t ldc, int accumulate) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, (int)cols, (int)kk, 1.0f,
                c->w + (size_t)r0 * kk, (int)kk, b + c0, (int)ldb, accumulate ? 1.0f : 0.0f,
                out + (size_t)r0 * ldc + c0, (int)ldc);
}

/* out[r0.., c0..] (+)= W[r0..] x B[.., c0..], then bias and ReLU on the block while it is hot. */
static void gemm_block(const sx_conv *c, size_t kk, int r0, int rows, const float *b, size_t ldb,
                       size_t c0, size_t cols, float *out, size_t ldc, int relu, int accumulate) {
    if (rows <= 0 || cols == 0) return;
    gemm_only(c, kk, r0, rows, b, ldb, c0, cols, out, ldc, accumulate);
    bias_relu_rows(c, r0, rows, c0, cols, out, ldc, relu);
}

/* Thread `tid` of `nt`'s share of a chunk's rows x cols output. */
static void gemm_share(const sx_conv *c, size_t kk, const float *b, size_t ldb, size_t cols,
                       float *out, size_t ldc, int relu, int accumulate, int tid, int nt) {
    if (nt == 1) {
        gemm_block(c, kk, 0, c->cout, b, ldb, 0, cols, out, ldc, relu, accumulate);
    } else if (cols >= (size_t)nt * MIN_COLS_PER_THREAD) {
        size_t per = ((cols + nt - 1) / nt + 15) & ~(size_t)15; /* covers all cols */
        size_t c0 = per * tid;
        if (c0 < cols) {
            size_t n = cols - c0 < per ? cols - c0 : per;
            gemm_block(c, kk, 0, c->cout, b, ldb, c0, n, out, ldc, relu, accumulate);
        }
    } else {
        int per = (c->cout + nt - 1) / nt;
        per = (per + 7) & ~7;
        int r0 = per * tid;
        if (r0 < c->cout) {
            int n = c->cout - r0 < per ? c->cout - r0 : per;
            gemm_block(c, kk, r0, n, b, ldb, 0, cols, out, ldc, relu, accumulate);
        }
    }
}

/* ---- the packed-weights path (nn/gemm.h) ---------------------------------------- */

size_t sx_conv_packed_floats(const sx_conv *c, const sx_gemm_kernel *g) {
    return sx_gemm_packed_a_floats(g, c->cout, c->cin * c->k * c->k);
}

void sx_conv_pack(sx_conv *c, const sx_gemm_kernel *g, float *dst) {
    sx_gemm_pack_a(g, c->w, c->cout, c->cin * c->k * c->k, dst);
    c->gemm = g;
    c->packed = dst;
}

typedef struct conv_b {
    const sx_conv *c;
    conv_input in;
    int ho, wo;
} conv_b;

/* Implicit im2col: each im2col row of the block, built in `row` (L1), goes
 * straight into the kernel's panels; the full matrix never exists. */
static void pack_b_conv(const sx_gemm_b *b, size_t k0, int kc, size_t j0, int nc, int nr,
                        float *dst, float *row) {
    const conv_b *cb = b->ctx;
    for (int kk = 0; kk < kc; kk++) {
        im2col_row(cb->c, &cb->in, cb->ho, cb->wo, k0 + kk, j0, (size_t)nc, row);
        sx_gemm_put_row(row, nc, nr, kc, kk, dst);
    }
}

static void conv_run_packed(const sx_conv *c, const conv_input *src, int pointwise, int ho,
                            int wo, size_t m, float *work, float *out, int relu, int accumulate) {
    conv_b cb = {c, *src, ho, wo};
    sx_gemm_b b = {pointwise ? sx_gemm_pack_dense : pack_b_conv, src->data, m, &cb};
    sx_gemm_run(c->gemm, c->packed, c->cout, c->cin * c->k * c->k, &b, m, c->b, relu,
                accumulate, out, m, work);
}

void sx_conv_run(const sx_conv *c, const float *in, int in_nchw, int n, int h, int w, float *col,
                 float *out, int relu, int accumulate) {
    int ho, wo;
    sx_conv_out_size(c, h, w, &ho, &wo);
    size_t m = (size_t)n * ho * wo;
    size_t kk = (size_t)c->cin * c->k * c->k;
    size_t plane = (size_t)h * w;
    conv_input src = {in, in_nchw ? plane : (size_t)n * plane, in_nchw ? c->cin * plane : plane,
                      h, w};
    int pointwise = conv_is_pointwise(c) && !in_nchw;
    if (c->packed) {
        conv_run_packed(c, &src, pointwise, ho, wo, m, col, out, relu, accumulate);
        return;
    }
    size_t chunk = pointwise ? m : conv_chunk_cols(c, n, h, w);
    int blas_threads = openblas_get_num_threads() > 1;

    for (size_t j0 = 0; j0 < m; j0 += chunk) {
        size_t cols = m - j0 < chunk ? m - j0 : chunk;
        const float *b = pointwise ? in + j0 : col;
        size_t ldb = pointwise ? m : cols;
        if (blas_threads) {
            for (size_t r = 0; r < kk && !pointwise; r++)
                im2col_row(c, &src, ho, wo, r, j0, cols, col + r * cols);
            gemm_block(c, kk, 0, c->cout, b, ldb, 0, cols, out + j0, m, relu, accumulate);
            continue;
        }
#pragma omp parallel num_threads(sx_threads())
        {
            int tid = omp_get_thread_num(), nt = omp_get_num_threads();
            if (!pointwise) {
#pragma omp for schedule(static)
                for (long r = 0; r < (long)kk; r++)
                    im2col_row(c, &src, ho, wo, (size_t)r, j0, cols, col + (size_t)r * cols);
            }
            gemm_share(c, kk, b, ldb, cols, out + j0, m, relu, accumulate, tid, nt);
        }
    }
}

void sx_conv_forward(const sx_conv *c, const float *in, int n, int h, int w, float *col,
                     float *out, int relu) {
    sx_conv_run(c, in, 0, n, h, w, col, out, relu, 0);
}

/* ==== Exported for training (nn/conv_grad.c) =====================================
 * The im2col above, for the training convolution, which keeps the whole
 * batch's matrix for its backward pass instead of running in chunks. */

void sx_conv_im2col(const sx_conv *c, const float *in, int n, int h, int w, size_t j0,
                    size_t cols, float *col, size_t ld) {
    int ho, wo;
    sx_conv_out_size(c, h, w, &ho, &wo);
    size_t plane = (size_t)h * w;
    conv_input src = {in, (size_t)n * plane, plane, h, w};
    long kk = (long)c->cin * c->k * c->k;
#pragma omp parallel for num_threads(sx_threads()) schedule(static)
    for (long r = 0; r < kk; r++)
        im2col_row(c, &src, ho, wo, (size_t)r, j0, cols, col + (size_t)r * ld);
}

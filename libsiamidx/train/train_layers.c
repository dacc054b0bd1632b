/*
 * train_layers.c - forward and backward kernels for training (llm.c style).
 *
 * Activations are "CNHW": a tensor of C channels over a batch is a [C][M]
 * matrix with M = N*H*W, so a convolution over the whole batch is one GEMM
 * and BatchNorm statistics are contiguous rows. Each backward kernel sits
 * next to its forward kernel. Parameter gradients accumulate (+=, the caller
 * zeroes them once per step); input gradients are overwritten unless noted.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "train/train_layers.h"
#include "base/threads.h"

/* ---- GEMM split over OpenMP threads ------------------------------------------ */

int openblas_get_num_threads(void);

/*
 * Row-major C[m][n] = A x B (+ beta C), with A [m][k] (or its transpose) and
 * B [k][n] (or its transpose). When OpenBLAS runs single-threaded, the
 * threads of the OpenMP team each take a block of C's columns (or of its
 * rows when there are few columns), so no second thread pool spins against
 * OpenMP's on a shared machine.
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
 * C[m][n] += A[m][k] x B[n][k]^T for a long k (the weight gradient, k = the
 * batch's output pixels). Splitting k lets each thread pack only its own
 * slices of A and B; splitting m or n would make every thread pack all of
 * the other operand. Thread 0 accumulates into C, the others into scratch
 * that is added at the end.
 */
static void gemm_nt_ksplit(int m, int n, int k, const float *a, const float *b, float *c) {
    int threads = sx_threads();
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

/* ---- convolution: im2col + GEMM, col2im for the input gradient ---------- */

void sx_tr_conv_out(const sx_tr_conv *c, int h, int w, int *ho, int *wo) {
    *ho = (h + 2 * c->pad - c->k) / c->stride + 1;
    *wo = (w + 2 * c->pad - c->k) / c->stride + 1;
}

int sx_tr_conv_pointwise(const sx_tr_conv *c) {
    return c->k == 1 && c->stride == 1 && c->pad == 0;
}

size_t sx_tr_conv_col_floats(const sx_tr_conv *c, int n, int h, int w) {
    int ho, wo;
    sx_tr_conv_out(c, h, w, &ho, &wo);
    if (sx_tr_conv_pointwise(c)) return 0;
    return (size_t)c->cin * c->k * c->k * n * ho * wo;
}

/* The outputs ox in [lo, hi) whose input column ox*stride - pad + kx lies
 * inside 0..w-1. */
static void valid_range(const sx_tr_conv *c, int kx, int w, int wo, int *lo, int *hi) {
    int off = kx - c->pad; /* ix = ox*stride + off */
    int l = off >= 0 ? 0 : (-off + c->stride - 1) / c->stride;
    int h = (w - 1 - off) >= 0 ? (w - 1 - off) / c->stride + 1 : 0;
    if (h > wo) h = wo;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

/* col[(ci*k + ky)*k + kx][(img*ho + oy)*wo + ox] = in[ci][img][iy][ix] (0 outside). */
static void im2col(const sx_tr_conv *c, const float *in, int n, int h, int w, int ho, int wo,
                   float *col) {
    const int k = c->k;
    const size_t m = (size_t)n * ho * wo;
#pragma omp parallel for num_threads(sx_threads()) schedule(static)
    for (int row = 0; row < c->cin * k * k; row++) {
        int ci = row / (k * k), ky = row / k % k, kx = row % k;
        float *dst = col + (size_t)row * m;
        for (int img = 0; img < n; img++) {
            const float *src = in + ((size_t)ci * n + img) * h * w;
            for (int oy = 0; oy < ho; oy++) {
                int iy = oy * c->stride - c->pad + ky;
                float *d = dst + ((size_t)img * ho + oy) * wo;
                if (iy < 0 || iy >= h) {
                    memset(d, 0, sizeof(float) * wo);
                    continue;
                }
                const float *s = src + (size_t)iy * w;
                int lo, hi; /* outputs whose input column is inside the image */
                valid_range(c, kx, w, wo, &lo, &hi);
                for (int ox = 0; ox < lo; ox++) d[ox] = 0.0f;
                if (c->stride == 1) {
                    if (hi > lo) memcpy(d + lo, s + lo - c->pad + kx, sizeof(float) * (hi - lo));
                } else {
                    const float *sp = s + lo * c->stride - c->pad + kx;
                    for (int ox = lo; ox < hi; ox++, sp += c->stride) d[ox] = *sp;
                }
                for (int ox = hi > lo ? hi : lo; ox < wo; ox++) d[ox] = 0.0f;
            }
        }
    }
}

/* The adjoint of im2col: din += scatter(col). Parallel over input channels,
 * so no two threads write the same element. */
static void col2im(const sx_tr_conv *c, const float *col, int n, int h, int w, int ho, int wo,
                   float *din) {
    const int k = c->k;
    const size_t m = (size_t)n * ho * wo;
#pragma omp parallel for num_threads(sx_threads()) schedule(static)
    for (int ci = 0; ci < c->cin; ci++) {
        float *dst_c = din + (size_t)ci * n * h * w;
        memset(dst_c, 0, sizeof(float) * n * h * w);
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++) {
                const float *src = col + ((size_t)(ci * k + ky) * k + kx) * m;
                for (int img = 0; img < n; img++)
                    for (int oy = 0; oy < ho; oy++) {
                        int iy = oy * c->stride - c->pad + ky;
                        if (iy < 0 || iy >= h) continue;
                        float *d = dst_c + ((size_t)img * h + iy) * w;
                        const float *s = src + ((size_t)img * ho + oy) * wo;
                        int lo, hi;
                        valid_range(c, kx, w, wo, &lo, &hi);
                        float *dp = d + lo * c->stride - c->pad + kx;
                        for (int ox = lo; ox < hi; ox++, dp += c->stride) *dp += s[ox];
                    }
            }
    }
}

/* out[cout][M] = W[cout][cin*k*k] x col[cin*k*k][M]. No bias: BN follows. */
void sx_tr_conv_forward(const sx_tr_conv *c, const float *wt, const float *in, int n, int h,
                        int w, float *col, float *out) {
    int ho, wo;
    sx_tr_conv_out(c, h, w, &ho, &wo);
    const int m = n * ho * wo, kk = c->cin * c->k * c->k;
    const float *b = in;
    if (!sx_tr_conv_pointwise(c)) {
        im2col(c, in, n, h, w, ho, wo, col);
        b = col;
    }
    gemm(0, 0, c->cout, m, kk, wt, kk, b, m, 0.0f, out, m);
}

/* dW += dout x col^T; din = col2im(W^T x dout) (skipped when din is NULL).
 * `col` is rebuilt from `in` (cheaper than keeping it) and reused for dcol. */
void sx_tr_conv_backward(const sx_tr_conv *c, const float *wt, const float *in,
                         const float *dout, int n, int h, int w, float *col, float *dw,
                         float *din) {
    int ho, wo;
    sx_tr_conv_out(c, h, w, &ho, &wo);
    const int m = n * ho * wo, kk = c->cin * c->k * c->k;
    const int pw = sx_tr_conv_pointwise(c);
    const float *b = in;
    if (dw) {
        if (!pw) {
            im2col(c, in, n, h, w, ho, wo, col);
            b = col;
        }
        gemm_nt_ksplit(c->cout, kk, m, dout, b, dw);
    }
    if (!din) return;
    float *dcol = pw ? din : col;
    gemm(1, 0, kk, m, c->cout, wt, kk, dout, m, 0.0f, dcol, m);
    if (!pw) col2im(c, col, n, h, w, ho, wo, din);
}

/* ---- BatchNorm (training mode: batch statistics; eval: running) --------- */

/* y = gamma * (x - mean) * invstd + beta per channel row of m values; saves
 * mean/invstd for backward and updates the running statistics as PyTorch
 * does (momentum 0.1, unbiased variance in the running estimate). */
void sx_tr_bn_forward(int c, size_t m, const float *x, const float *gamma, const float *beta,
                      float *run_mean, float *run_var, float *mean, float *invstd, float *y,
                      int relu) {
#pragma omp parallel for num_threads(sx_threads()) schedule(static)
    for (int ch = 0; ch < c; ch++) {
        const float *xr = x + (size_t)ch * m;
        double s = 0.0, ss = 0.0;
        for (size_t i = 0; i < m; i++) s += xr[i];
        double mu = s / (double)m;
        for (size_t i = 0; i < m; i++) {
            double d = xr[i] - mu;
            ss += d * d;
        }
        double var = ss / (double)m;
        float is = (float)(1.0 / sqrt(var + SX_TR_BN_EPS));
        mean[ch] = (float)mu;
        invstd[ch] = is;
        if (run_mean) {
            double unbiased = m > 1 ? ss / (double)(m - 1) : var;
            run_mean[ch] = (float)((1.0 - SX_TR_BN_MOMENTUM) * run_mean[ch] + SX_TR_BN_MOMENTUM * mu);
            run_var[ch] =
                (float)((1.0 - SX_TR_BN_MOMENTUM) * run_var[ch] + SX_TR_BN_MOMENTUM * unbiased);
        }
        float a = gamma[ch] * is, b = beta[ch] - (float)mu * a;
        float *yr = y + (size_t)ch * m;
        for (size_t i = 0; i < m; i++) {
            float v = xr[i] * a + b;
            yr[i] = relu && v < 0.0f ? 0.0f : v;
        }
    }
}

/* Inference-mode BatchNorm (frozen stages): running statistics, no updates. */
void sx_tr_bn_forward_eval(int c, size_t m, const float *x, const float *gamma,
                           const float *beta, const float *run_mean, const float *run_var,
                           float *y, int relu) {
#pragma omp parallel for num_threads(sx_threads()) schedule(static)
    for (int ch = 0; ch < c; ch++) {
        float is = 1.0f / sqrtf(run_var[ch] + (float)SX_TR_BN_EPS);
        float a = gamma[ch] * is, b = beta[ch] - run_mean[ch] * a;
        const float *xr = x + (size_t)ch * m;
        float *yr = y + (size_t)ch * m;
        for (size_t i = 0; i < m; i++) {
            float v = xr[i] * a + b;
            yr[i] = relu && v < 0.0f ? 0.0f : v;
        }
    }
}

/* dx = gamma*invstd/m * (m*dy - sum(dy) - xhat*sum(dy*xhat)); xhat is
 * recomputed from x. dx may alias dy. */
void sx_tr_bn_backward(int c, size_t m, const float *x, const float *dy, const float *gamma,
                       const float *mean, const float *invstd, float *dgamma, float *dbeta,
                       float *dx) {
#pragma omp parallel for num_threads(sx_threads()) schedule(static)
    for (int ch = 0; ch < c; ch++) {
        const float *xr = x + (size_t)ch * m, *dr = dy + (size_t)ch * m;
        const float mu = mean[ch], is = invstd[ch];
        double sdy = 0.0, sdyx = 0.0;
        for (size_t i = 0; i < m; i++) {
            sdy += dr[i];
            sdyx += dr[i] * ((xr[i] - mu) * is);
        }
        dgamma[ch] += (float)sdyx;
        dbeta[ch] += (float)sdy;
        float k = gamma[ch] * is / (float)m;
        float a = (float)sdy, b = (float)sdyx;
        float *o = dx + (size_t)ch * m;
        for (size_t i = 0; i < m; i++)
            o[i] = k * ((float)m * dr[i] - a - (xr[i] - mu) * is * b);
    }
}

/* ---- ReLU: the forward is folded into BN or the residual add ------------ */

void sx_tr_relu_forward(float *x, size_t n) {
#pragma omp parallel for num_threads(sx_threads()) schedule(static)
    for (size_t i = 0; i < n; i++)
        if (x[i] < 0.0f) x[i] = 0.0f;
}

/* dy *= (y > 0), where y is the ReLU's output. */
void sx_tr_relu_backward(float *dy, const float *y, size_t n) {
#pragma omp parallel for num_threads(sx_threads()) schedule(static)
    for (size_t i = 0; i < n; i++)
        if (!(y[i] > 0.0f)) dy[i] = 0.0f;
}

/* ---- residual add ---------------------------------------------------------- */

/* out = a + b (+ ReLU). The backward of the add is the identity to both
 * inputs: the caller passes the same gradient on, masked by the ReLU. */
void sx_tr_add_forward(const float *a, const float *b, float *out, size_t n, int relu) {
#pragma omp parallel for num_threads(sx_threads()) schedule(static)
    for (size_t i = 0; i < n; i++) {
        float v = a[i] + b[i];
        out[i] = relu && v < 0.0f ? 0.0f : v;
    }
}

void sx_tr_add_into(float *acc, const float *g, size_t n) {
#pragma omp parallel for num_threads(sx_threads()) schedule(static)
    for (size_t i = 0; i < n; i++) acc[i] += g[i];
}

/* ---- max pool (square window, padding counts as -inf) -------------------- */

void sx_tr_maxpool_forward(int c, int n, int h, int w, int k, int stride, int pad,
                           const float *in, float *out, int32_t *argmax) {
    int ho = (h + 2 * pad - k) / stride + 1, wo = (w + 2 * pad - k) / stride + 1;
#pragma omp parallel for num_threads(sx_threads()) schedule(static)
    for (int plane = 0; plane < c * n; plane++) {
        const float *src = in + (size_t)plane * h * w;
        float *dst = out + (size_t)plane * ho * wo;
        int32_t *arg = argmax + (size_t)plane * ho * wo;
        for (int oy = 0; oy < ho; oy++)
            for (int ox = 0; ox < wo; ox++) {
                float best = -INFINITY;
                int32_t at = -1;
                for (int ky = 0; ky < k; ky++) {
                    int iy = oy * stride - pad + ky;
                    if (iy < 0 || iy >= h) continue;
                    for (int kx = 0; kx < k; kx++) {
                        int ix = ox * stride - pad + kx;
                        if (ix < 0 || ix >= w) continue;
                        float v = src[iy * w + ix];
                        if (v > best) { /* first maximum wins, as PyTorch */
                            best = v;
                            at = iy * w + ix;
                        }
                    }
                }
                dst[oy * wo + ox] = best;
                arg[oy * wo + ox] = at;
            }
    }
}

void sx_tr_maxpool_backward(int c, int n, int h, int w, int ho, int wo, const int32_t *argmax,
                            const float *dout, float *din) {
#pragma omp parallel for num_threads(sx_threads()) schedule(static)
    for (int plane = 0; plane < c * n; plane++) {
        float *d = din + (size_t)plane * h * w;
        memset(d, 0, sizeof(float) * h * w);
        const float *g = dout + (size_t)plane * ho * wo;
        const int32_t *arg = argmax + (size_t)plane * ho * wo;
        for (int i = 0; i < ho * wo; i++)
            if (arg[i] >= 0) d[arg[i]] += g[i];
    }
}

/* ---- global average pool: [C][N*HW] -> [N][C] --------------------------- */

void sx_tr_avgpool_forward(int c, int n, int hw, const float *in, float *out) {
#pragma omp parallel for num_threads(sx_threads()) schedule(static)
    for (int ch = 0; ch < c; ch++)
        for (int img = 0; img < n; img++) {
            const float *s = in + ((size_t)ch * n + img) * hw;
            double acc = 0.0;
            for (int i = 0; i < hw; i++) acc += s[i];
            out[(size_t)img * c + ch] = (float)(acc / hw);
        }
}

void sx_tr_avgpool_backward(int c, int n, int hw, const float *dout, float *din) {
#pragma omp parallel for num_threads(sx_threads()) schedule(static)
    for (int ch = 0; ch < c; ch++)
        for (int img = 0; img < n; img++) {
            float g = dout[(size_t)img * c + ch] / (float)hw;
            float *d = din + ((size_t)ch * n + img) * hw;
            for (int i = 0; i < hw; i++) d[i] = g;
        }
}

/* ---- linear: y[n][out] = x[n][in] W[out][in]^T + b ------------------------ */

void sx_tr_linear_forward(int n, int in, int out, const float *x, const float *wt,
                          const float *b, float *y) {
    for (int i = 0; i < n; i++) memcpy(y + (size_t)i * out, b, sizeof(float) * out);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, wt, in, 1.0f,
                y, out);
}

void sx_tr_linear_backward(int n, int in, int out, const float *x, const float *wt,
                           const float *dy, float *dw, float *db, float *dx) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, n, 1.0f, dy, out, x, in, 1.0f,
                dw, in);
    for (int i = 0; i < n; i++)
        for (int o = 0; o < out; o++) db[o] += dy[(size_t)i * out + o];
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, out, 1.0f, dy, out, wt, in,
                    0.0f, dx, in);
}

/* ---- losses ------------------------------------------------------------------ */

/*
 * Mean softmax cross-entropy over n rows of k logits, with optional label
 * smoothing (PyTorch's definition). Writes dlogits (already divided by n)
 * and the number of rows whose argmax is the label into *correct.
 */
double sx_tr_softmax_ce(int n, int k, const float *logits, const int32_t *labels,
                        float smoothing, float *dlogits, int *correct) {
    double loss = 0.0;
    int right = 0;
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * k;
        float *g = dlogits + (size_t)i * k;
        int best = 0;
        float mx = z[0];
        for (int j = 1; j < k; j++)
            if (z[j] > mx) mx = z[j], best = j;
        double sum = 0.0, zsum = 0.0;
        for (int j = 0; j < k; j++) {
            sum += exp((double)z[j] - mx);
            zsum += z[j];
        }
        double lse = mx + log(sum);
        int y = labels[i];
        loss += (1.0 - smoothing) * (lse - z[y]) + smoothing * (lse - zsum / k);
        for (int j = 0; j < k; j++) {
            double p = exp((double)z[j] - lse);
            double t = (j == y ? 1.0 - smoothing : 0.0) + smoothing / k;
            g[j] = (float)((p - t) / n);
        }
        right += best == y;
    }
    if (correct) *correct = right;
    return loss / n;
}

/*
 * Siamese BCE on the pairs (2i, 2i+1) of an even batch of feature rows:
 * z = w . |fa - fb| + b, target 1 when the two labels agree. Mean over
 * pairs, times `scale`. dfeat += the gradient; dw, db accumulate.
 */
double sx_tr_siamese_bce(int n, int dim, const float *feat, const int32_t *labels,
                         const float *w, float b, float scale, float *dfeat, float *dw,
                         float *db, int *correct) {
    int pairs = n / 2, right = 0;
    double loss = 0.0;
    for (int p = 0; p < pairs; p++) {
        const float *fa = feat + (size_t)(2 * p) * dim, *fb = fa + dim;
        double z = b;
        for (int j = 0; j < dim; j++) z += w[j] * fabsf(fa[j] - fb[j]);
        double y = labels[2 * p] == labels[2 * p + 1] ? 1.0 : 0.0;
        /* log(1 + e^-|z|) form: stable for large |z| */
        loss += (z > 0 ? z : 0) - z * y + log1p(exp(-fabs(z)));
        right += (z > 0) == (y > 0.5);
        double sig = 1.0 / (1.0 + exp(-z));
        float dz = (float)((sig - y) * scale / pairs);
        *db += dz;
        float *ga = dfeat + (size_t)(2 * p) * dim, *gb = ga + dim;
        for (int j = 0; j < dim; j++) {
            float d = fa[j] - fb[j];
            float s = d > 0 ? 1.0f : (d < 0 ? -1.0f : 0.0f);
            dw[j] += dz * fabsf(d);
            ga[j] += dz * w[j] * s;
            gb[j] -= dz * w[j] * s;
        }
    }
    if (correct) *correct = right;
    return pairs ? loss * scale / pairs : 0.0;
}

/*
 * CosFace (large margin cosine loss; Wang et al., CVPR 2018), the logits
 * half: on L2-normalised features xh and L2-normalised class weights wh,
 *     z[i][j] = s * (xh_i . wh_j - m * [j == y_i])
 * which sx_tr_softmax_ce then turns into the loss. Training then shapes the
 * space that verification uses (cosine of normalised embeddings) rather than
 * a linear classifier's. labels NULL: no margin (validation logits).
 * ws (sx_tr_cosface_ws_floats) keeps xh, wh and the inverse norms for
 * backward.
 */
size_t sx_tr_cosface_ws_floats(int n, int in, int k) {
    return (size_t)n * in + (size_t)k * in + (size_t)n + (size_t)k;
}

/* rows of v [rows][in] normalised into out; inv[r] = 1/|v_r| (0 for a zero row) */
static void l2_rows(int rows, int in, const float *v, float *out, float *inv) {
    for (int r = 0; r < rows; r++) {
        const float *a = v + (size_t)r * in;
        double ss = 0;
        for (int j = 0; j < in; j++) ss += (double)a[j] * a[j];
        float f = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
        inv[r] = f;
        for (int j = 0; j < in; j++) out[(size_t)r * in + j] = a[j] * f;
    }
}

void sx_tr_cosface_forward(int n, int in, int k, const float *x, const float *w,
                           const int32_t *labels, float s, float m, float *ws, float *logits) {
    float *xh = ws, *wh = xh + (size_t)n * in, *inv_x = wh + (size_t)k * in, *inv_w = inv_x + n;
    l2_rows(n, in, x, xh, inv_x);
    l2_rows(k, in, w, wh, inv_w);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, k, in, s, xh, in, wh, in, 0.0f,
                logits, k);
    if (labels)
        for (int i = 0; i < n; i++) logits[(size_t)i * k + labels[i]] -= s * m;
}

/* g (rows of dL/dvh) in place to dL/dv: inv * (g - (g . vh) vh), the
 * normalisation's Jacobian; accumulate adds into dst instead. */
static void l2_rows_backward(int rows, int in, const float *vh, const float *inv, float *g,
                             float *dst) {
    for (int r = 0; r < rows; r++) {
        float *gr = g + (size_t)r * in;
        const float *h = vh + (size_t)r * in;
        double d = 0;
        for (int j = 0; j < in; j++) d += (double)gr[j] * h[j];
        float *o = dst ? dst + (size_t)r * in : gr;
        for (int j = 0; j < in; j++) {
            float v = inv[r] * (gr[j] - (float)d * h[j]);
            o[j] = dst ? o[j] + v : v;
        }
    }
}

/* dlogits: dL/dz. dx (n x in) is written, dw (k x in) accumulates; scratch
 * holds k * in floats. */
void sx_tr_cosface_backward(int n, int in, int k, const float *ws, const float *dlogits, float s,
                            float *dw, float *dx, float *scratch) {
    const float *xh = ws, *wh = xh + (size_t)n * in, *inv_x = wh + (size_t)k * in;
    const float *inv_w = inv_x + n;
    /* dL/dxh = s * dz . wh ; dL/dwh = s * dz^T . xh */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, k, s, dlogits, k, wh, in, 0.0f,
                dx, in);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, in, n, s, dlogits, k, xh, in, 0.0f,
                scratch, in);
    l2_rows_backward(n, in, xh, inv_x, dx, NULL);
    l2_rows_backward(k, in, wh, inv_w, scratch, dw);
}

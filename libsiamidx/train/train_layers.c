/*
 * train_layers.c - forward and backward kernels for training (llm.c style).
 *
 * Activations are "CNHW": a tensor of C channels over a batch is a [C][M]
 * matrix with M = N*H*W, so a convolution over the whole batch is one GEMM
 * and BatchNorm statistics are contiguous rows. Each backward kernel sits
 * next to its forward kernel. The convolution is nn's (nn/conv_grad.h: the
 * same im2col as inference, its backward beside it); inference-mode
 * BatchNorm is nn's fold (nn/arch.h). Parameter gradients accumulate (+=, the caller
 * zeroes them once per step); input gradients are overwritten unless noted.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "train/train_layers.h"
#include "nn/encoder.h"
#include "base/threads.h"

/* ---- BatchNorm (training mode: batch statistics) ------------------------- */

/*
 * Sums over a channel's row, in float lanes over chunks of ROW_CHUNK
 * values, each chunk's total added in double: the compiler vectorises the
 * lanes (a double accumulator that must add in order would not be), and
 * no float sum runs over more than ROW_CHUNK / ROW_LANES values.
 */
enum { ROW_LANES = 16, ROW_CHUNK = 1024 };

/* sum x[i] */
static double row_sum(const float *x, size_t m) {
    double total = 0.0;
    size_t i = 0;
    for (; i + ROW_CHUNK <= m; i += ROW_CHUNK) {
        float acc[ROW_LANES] = {0};
        for (size_t j = 0; j < ROW_CHUNK; j += ROW_LANES)
            for (int l = 0; l < ROW_LANES; l++) acc[l] += x[i + j + l];
        double chunk = 0.0;
        for (int l = 0; l < ROW_LANES; l++) chunk += acc[l];
        total += chunk;
    }
    for (; i < m; i++) total += x[i];
    return total;
}

/* sum (x[i] - mu)^2 */
static double row_sum_sq_dev(const float *x, size_t m, float mu) {
    double total = 0.0;
    size_t i = 0;
    for (; i + ROW_CHUNK <= m; i += ROW_CHUNK) {
        float acc[ROW_LANES] = {0};
        for (size_t j = 0; j < ROW_CHUNK; j += ROW_LANES)
            for (int l = 0; l < ROW_LANES; l++) {
                float d = x[i + j + l] - mu;
                acc[l] += d * d;
            }
        double chunk = 0.0;
        for (int l = 0; l < ROW_LANES; l++) chunk += acc[l];
        total += chunk;
    }
    for (; i < m; i++) total += (double)(x[i] - mu) * (x[i] - mu);
    return total;
}

/* dy[q], or with a ReLU after the BatchNorm (relu_y not NULL) dy[q] masked
 * by its output (0 where relu_y[q] <= 0), also written to masked[q] */
static inline float dy_at(const float *dy, const float *relu_y, float *masked, size_t q) {
    if (!relu_y) return dy[q];
    float g = relu_y[q] > 0.0f ? dy[q] : 0.0f;
    masked[q] = g;
    return g;
}

/* sum dy[i] and sum dy[i] * (x[i] - mu) (xhat's numerator; the caller
 * scales), dy read through dy_at: masked (may be dy itself) is written only
 * when relu_y is given */
static void row_sums_dy(const float *dy, const float *relu_y, float *masked, const float *x,
                        size_t m, float mu, double *sdy, double *sdyx) {
    double t0 = 0.0, t1 = 0.0;
    size_t i = 0;
    for (; i + ROW_CHUNK <= m; i += ROW_CHUNK) {
        float a0[ROW_LANES] = {0}, a1[ROW_LANES] = {0};
        for (size_t j = 0; j < ROW_CHUNK; j += ROW_LANES)
            for (int l = 0; l < ROW_LANES; l++) {
                float g = dy_at(dy, relu_y, masked, i + j + l);
                a0[l] += g;
                a1[l] += g * (x[i + j + l] - mu);
            }
        double c0 = 0.0, c1 = 0.0;
        for (int l = 0; l < ROW_LANES; l++) c0 += a0[l], c1 += a1[l];
        t0 += c0, t1 += c1;
    }
    for (; i < m; i++) {
        float g = dy_at(dy, relu_y, masked, i);
        t0 += g, t1 += (double)g * (x[i] - mu);
    }
    *sdy = t0, *sdyx = t1;
}

/* y = gamma * (x - mean) * invstd + beta per channel row of m values; saves
 * mean/invstd for backward and updates the running statistics as PyTorch
 * does (momentum 0.1, unbiased variance in the running estimate). */
void sx_tr_bn_forward(int c, size_t m, const float *x, const float *gamma, const float *beta,
                      float *run_mean, float *run_var, float *mean, float *invstd, float *y,
                      int relu) {
#pragma omp parallel for num_threads(sx_threads()) schedule(static)
    for (int ch = 0; ch < c; ch++) {
        const float *xr = x + (size_t)ch * m;
        double mu = row_sum(xr, m) / (double)m;
        /* the deviations from the float mean: what backward's xhat uses */
        double ss = row_sum_sq_dev(xr, m, (float)mu);
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

/* dx = gamma*invstd/m * (m*dy - sum(dy) - xhat*sum(dy*xhat)) for channel ch;
 * xhat is recomputed from x. dx may alias dy. */
static void bn_backward_row(int ch, size_t m, const float *x, const float *dy, double sdy,
                            double sdyx, const float *gamma, const float *mean,
                            const float *invstd, float *dgamma, float *dbeta, float *dx) {
    const float *xr = x + (size_t)ch * m, *dr = dy + (size_t)ch * m;
    const float mu = mean[ch], is = invstd[ch];
    sdyx *= is;
    dgamma[ch] += (float)sdyx;
    dbeta[ch] += (float)sdy;
    float k = gamma[ch] * is / (float)m;
    float a = (float)sdy, b = (float)sdyx;
    float *o = dx + (size_t)ch * m;
    for (size_t i = 0; i < m; i++) o[i] = k * ((float)m * dr[i] - a - (xr[i] - mu) * is * b);
}

void sx_tr_bn_backward(int c, size_t m, const float *x, const float *dy, const float *gamma,
                       const float *mean, const float *invstd, float *dgamma, float *dbeta,
                       float *dx) {
#pragma omp parallel for num_threads(sx_threads()) schedule(static)
    for (int ch = 0; ch < c; ch++) {
        double sdy, sdyx;
        row_sums_dy(dy + (size_t)ch * m, NULL, NULL, x + (size_t)ch * m, m, mean[ch], &sdy, &sdyx);
        bn_backward_row(ch, m, x, dy, sdy, sdyx, gamma, mean, invstd, dgamma, dbeta, dx);
    }
}

/* The ReLU's backward fused in: each channel's row of dy is masked in place
 * by relu_y (as sx_tr_relu_backward would) in the pass that sums it, then
 * goes through the rest of BatchNorm's backward: two passes over the tensor
 * fewer than the two steps, the same values bit for bit. */
void sx_tr_relu_bn_backward(int c, size_t m, const float *relu_y, float *dy, const float *x,
                            const float *gamma, const float *mean, const float *invstd,
                            float *dgamma, float *dbeta, float *dx) {
#pragma omp parallel for num_threads(sx_threads()) schedule(static)
    for (int ch = 0; ch < c; ch++) {
        size_t off = (size_t)ch * m;
        double sdy, sdyx;
        row_sums_dy(dy + off, relu_y + off, dy + off, x + off, m, mean[ch], &sdy, &sdyx);
        bn_backward_row(ch, m, x, dy, sdy, sdyx, gamma, mean, invstd, dgamma, dbeta, dx);
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

/*
 * ResNet's 3x3 stride-2 pad-1 window, in two vectorisable passes per output
 * row: the 3-wide maximum along each of its (up to) three input rows, then
 * the maximum of those down the rows. Row by row, each keeping its first
 * maximum (strict >, from -inf), then the first row holding the overall
 * one: the first maximum in (ky, kx) order, as the general loop below finds
 * it, ties and argmax included. The general loop, a dependent chain of
 * bounds checks and compare-selects, took 3-4% of a training step.
 */
enum { POOL_CHUNK = 128 };

/* Row iy's maxima over input columns 2ox-1 .. 2ox+1, for ox in [ox0, ox0 + cnt). */
static void pool_row_3s2(const float *row, int iy, int w, int ox0, int cnt, float *hv,
                         int32_t *hi) {
    int j = 0, base = iy * w;
    for (; j < cnt && 2 * (ox0 + j) - 1 < 0; j++) { /* ox = 0: the left padding */
        int x = 2 * (ox0 + j);
        float best = -INFINITY;
        int32_t at = -1;
        if (row[x] > best) best = row[x], at = base + x;
        if (x + 1 < w && row[x + 1] > best) best = row[x + 1], at = base + x + 1;
        hv[j] = best, hi[j] = at;
    }
    int inner = cnt; /* outputs whose three columns are all inside */
    while (inner > j && 2 * (ox0 + inner - 1) + 1 >= w) inner--;
    for (; j < inner; j++) {
        int x = 2 * (ox0 + j) - 1;
        float a = row[x], b = row[x + 1], d = row[x + 2], best = -INFINITY;
        int32_t at = -1;
        if (a > best) best = a, at = base + x;
        if (b > best) best = b, at = base + x + 1;
        if (d > best) best = d, at = base + x + 2;
        hv[j] = best, hi[j] = at;
    }
    for (; j < cnt; j++) { /* the right edge */
        int x = 2 * (ox0 + j) - 1;
        float best = -INFINITY;
        int32_t at = -1;
        for (int ix = x; ix < x + 3 && ix < w; ix++)
            if (row[ix] > best) best = row[ix], at = base + ix;
        hv[j] = best, hi[j] = at;
    }
}

static void maxpool_plane_3s2(const float *src, int h, int w, int ho, int wo, float *dst,
                              int32_t *arg) {
    float hv[3][POOL_CHUNK];
    int32_t hi[3][POOL_CHUNK];
    for (int oy = 0; oy < ho; oy++)
        for (int ox0 = 0; ox0 < wo; ox0 += POOL_CHUNK) {
            int cnt = wo - ox0 < POOL_CHUNK ? wo - ox0 : POOL_CHUNK, rows = 0;
            for (int iy = 2 * oy - 1; iy <= 2 * oy + 1; iy++)
                if (iy >= 0 && iy < h)
                    pool_row_3s2(src + (size_t)iy * w, iy, w, ox0, cnt, hv[rows], hi[rows]),
                        rows++;
            float *o = dst + (size_t)oy * wo + ox0;
            int32_t *a = arg + (size_t)oy * wo + ox0;
            for (int j = 0; j < cnt; j++) o[j] = -INFINITY, a[j] = -1;
            for (int r = 0; r < rows; r++) /* down the rows, across the outputs */
                for (int j = 0; j < cnt; j++)
                    if (hv[r][j] > o[j]) o[j] = hv[r][j], a[j] = hi[r][j];
        }
}

void sx_tr_maxpool_forward(int c, int n, int h, int w, int k, int stride, int pad,
                           const float *in, float *out, int32_t *argmax) {
    int ho = (h + 2 * pad - k) / stride + 1, wo = (w + 2 * pad - k) / stride + 1;
    if (k == 3 && stride == 2 && pad == 1) {
#pragma omp parallel for num_threads(sx_threads()) schedule(static)
        for (int plane = 0; plane < c * n; plane++)
            maxpool_plane_3s2(in + (size_t)plane * h * w, h, w, ho, wo,
                              out + (size_t)plane * ho * wo, argmax + (size_t)plane * ho * wo);
        return;
    }
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

/* The forward is the encoder's average pooling itself (nn/encoder.h), so
 * training and inference pool alike; the backward sits beside it. */
void sx_tr_avgpool_forward(int c, int n, int hw, const float *in, float *out) {
    sx_pool_planes(in, c, n, (size_t)hw, SIAMIDX_POOL_AVG, 0.0f, out, (size_t)c, 0);
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

/* ---- style statistics: the backward of nn's style pooling --------------- */

/* din[v] (+)= dmean / hw + dstd * (v - mean) / (hw * std): the features'
 * gradient dout back onto the plane (a flat plane, std 0, takes the mean's
 * share only). accumulate: add into din instead of writing it. */
void sx_tr_style_backward(int c, int n, int hw, const float *in, const float *feat,
                          const float *dout, size_t ld, size_t off, float *din, int accumulate) {
#pragma omp parallel for num_threads(sx_threads()) schedule(static)
    for (int ch = 0; ch < c; ch++)
        for (int img = 0; img < n; img++) {
            const float *v = in + ((size_t)ch * n + img) * hw;
            const float *f = feat + (size_t)img * ld + off + ch, *g = dout + (size_t)img * ld + off + ch;
            float mean = f[0], sd = f[c];
            float a = g[0] / (float)hw, b = sd > 0.0f ? g[c] / ((float)hw * sd) : 0.0f;
            float *d = din + ((size_t)ch * n + img) * hw;
            for (int i = 0; i < hw; i++) {
                float x = a + b * (v[i] - mean);
                d[i] = accumulate ? d[i] + x : x;
            }
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

/*
 * Supervised contrastive loss (Khosla et al., NeurIPS 2020, the L_out form)
 * on the L2-normalised rows zh of feat [n][dim]: for each anchor i that has
 * at least one other image of its artist in the batch (P(i)),
 *     L_i = log sum_{a != i} e^{s_ia} - 1/|P(i)| sum_{p in P(i)} s_ip,
 *     s_ia = zh_i . zh_a / tau,
 * averaged over those anchors. The classifier compares each image with 214
 * class centres; this compares the images with each other, as verification
 * does, and so shapes the cosine geometry of the embedding itself.
 *
 * With G[i][a] = dL/ds_ia (softmax minus the positives' share, over the
 * anchors), dL/dzh = (G + G^T) zh / tau, then the normalisation's Jacobian.
 * Adds weight * dL/dfeat into dfeat; returns the mean loss (unweighted).
 */
size_t sx_tr_supcon_ws_floats(int n, int dim) {
    return (size_t)2 * n * dim + (size_t)n + (size_t)n * n;
}

double sx_tr_supcon(int n, int dim, const float *feat, const int32_t *labels, float tau,
                    float weight, float *ws, float *dfeat, int *anchors_out) {
    float *zh = ws, *gz = zh + (size_t)n * dim, *inv = gz + (size_t)n * dim, *g = inv + n;
    int anchors = 0;
    for (int i = 0; i < n; i++)
        for (int a = 0; a < n; a++)
            if (a != i && labels[a] == labels[i]) {
                anchors++;
                break;
            }
    if (anchors_out) *anchors_out = anchors;
    if (!anchors) return 0.0;
    l2_rows(n, dim, feat, zh, inv);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, dim, 1.0f / tau, zh, dim, zh, dim,
                0.0f, g, n); /* g = s, overwritten row by row with dL/ds */
    double loss = 0.0;
    for (int i = 0; i < n; i++) {
        float *row = g + (size_t)i * n;
        int npos = 0;
        double top = -INFINITY, pos_sum = 0.0;
        for (int a = 0; a < n; a++) {
            if (a == i) continue;
            if (row[a] > top) top = row[a];
            if (labels[a] == labels[i]) npos++, pos_sum += row[a];
        }
        if (!npos) {
            memset(row, 0, sizeof(float) * n);
            continue;
        }
        double sum = 0.0;
        for (int a = 0; a < n; a++)
            if (a != i) sum += exp(row[a] - top);
        double lse = top + log(sum);
        loss += lse - pos_sum / npos;
        for (int a = 0; a < n; a++) {
            double d = a == i ? 0.0 : exp(row[a] - lse) - (labels[a] == labels[i] ? 1.0 / npos : 0.0);
            row[a] = (float)(d / anchors);
        }
    }
    const float k = weight / tau; /* gz = weight * (G + G^T) zh / tau */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, dim, n, k, g, n, zh, dim, 0.0f, gz,
                dim);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, dim, n, k, g, n, zh, dim, 1.0f, gz,
                dim);
    l2_rows_backward(n, dim, zh, inv, gz, dfeat);
    return loss / anchors;
}

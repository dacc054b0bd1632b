/*
 * test_train_gradcheck.c - every training kernel's backward against central
 * finite differences of its forward.
 *
 * Each layer's scalar loss is L = sum(out * R) for a fixed random R (so dL/dout
 * = R); the loss is summed in double so the differences measure the kernel,
 * not the summation. Inputs avoid the kinks (ReLU near 0, max-pool ties).
 */
#include <math.h>
#include <stdint.h>

#include "check.h"
#include "nn/conv_grad.h"
#include "nn/encoder.h"
#include "nn/cpu.h"
#include "nn/gemm.h"
#include "base/threads.h"
#include "train/train_layers.h"

static uint64_t rng_state = 12345;

static float frand(void) { /* uniform in [-1, 1) */
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((rng_state >> 40) * (1.0 / 8388608.0) - 1.0);
}

static float *randv(size_t n) {
    float *v = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) v[i] = frand();
    return v;
}

/* 64-byte aligned, as the GEMM kernels' scratch must be */
static float *zeros(size_t n) {
    size_t bytes = (n * sizeof(float) + 63) & ~(size_t)63;
    float *v = aligned_alloc(64, bytes ? bytes : 64);
    if (v) memset(v, 0, bytes);
    return v;
}

static double dot(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

typedef double (*loss_fn)(void *ctx);

/* Compares g (analytic) with central differences of fn over x[0..n). */
static void gradcheck(const char *what, float *x, size_t n, const float *g, loss_fn fn,
                      void *ctx, float eps, double tol) {
    double num2 = 0, diff2 = 0, ana2 = 0;
    for (size_t i = 0; i < n; i++) {
        float keep = x[i];
        x[i] = keep + eps;
        double lp = fn(ctx);
        x[i] = keep - eps;
        double lm = fn(ctx);
        x[i] = keep;
        double num = (lp - lm) / (2.0 * eps);
        num2 += num * num;
        ana2 += (double)g[i] * g[i];
        diff2 += (num - g[i]) * (num - g[i]);
    }
    double rel = sqrt(diff2) / fmax(sqrt(num2), sqrt(ana2) + 1e-12);
    printf("%-34s n=%-5zu |g|=%-10.4g rel.err=%.2e\n", what, n, sqrt(ana2), rel);
    CHECK_MSG(rel < tol && ana2 > 0, "%s: relative error %.3g (tolerance %.1g)", what, rel, tol);
}

/* ---- convolution ---------------------------------------------------------- */

typedef struct conv_ctx {
    sx_conv c; /* c.w: the weights */
    int n, h, w;
    float *in, *wt, *col, *out, *r;
    size_t out_n;
} conv_ctx;

static double conv_loss(void *p) {
    conv_ctx *k = p;
    k->c.w = k->wt;
    sx_conv_forward_nobias(&k->c, k->in, k->n, k->h, k->w, NULL, k->col, k->out);
    return dot(k->out, k->r, k->out_n);
}

static void check_conv(const char *name, sx_conv c, int n, int h, int w) {
    conv_ctx k = {c, n, h, w, 0, 0, 0, 0, 0, 0};
    int ho, wo;
    sx_conv_out_size(&c, h, w, &ho, &wo);
    size_t in_n = (size_t)c.cin * n * h * w, w_n = (size_t)c.cout * c.cin * c.k * c.k;
    k.out_n = (size_t)c.cout * n * ho * wo;
    k.in = randv(in_n);
    k.wt = randv(w_n);
    k.r = randv(k.out_n);
    k.out = zeros(k.out_n);
    size_t sf = sx_conv_grad_scratch_floats(&c, n, h, w);
    k.col = zeros(sf ? sf : 1);
    float *dw = zeros(w_n), *din = zeros(in_n);
    k.c.w = k.wt;
    sx_conv_backward(&k.c, k.in, NULL, k.r, n, h, w, k.col, dw, din);
    /* backward on what the forward kept (its im2col, or Winograd's V, as
       training does) gives the same weight gradient as rebuilding it */
    size_t kf = sx_conv_grad_kept_floats(&c, n, h, w);
    float *kept = zeros(kf ? kf : 1), *dw_kept = zeros(w_n), *scratch = zeros(sf ? sf : 1);
    int has_col = sx_conv_forward_nobias(&k.c, k.in, n, h, w, kept, scratch, k.out);
    CHECK_MSG(has_col == (kf > 0), "conv %s: forward says it kept %d (%zu floats to keep)", name,
              has_col, kf);
    sx_conv_backward(&k.c, k.in, has_col ? kept : NULL, k.r, n, h, w, scratch, dw_kept, NULL);
    CHECK_MSG(!memcmp(dw, dw_kept, w_n * sizeof(float)), "conv %s: dW from the kept buffer differs",
              name);
    free(kept), free(dw_kept), free(scratch);
    char label[96];
    snprintf(label, sizeof label, "conv %s dW", name);
    gradcheck(label, k.wt, w_n, dw, conv_loss, &k, 1e-2f, 2e-3);
    snprintf(label, sizeof label, "conv %s dX", name);
    gradcheck(label, k.in, in_n, din, conv_loss, &k, 1e-2f, 2e-3);
    free(k.in), free(k.wt), free(k.r), free(k.out), free(k.col), free(dw), free(din);
}

/* ||got - want|| / ||want|| in float */
static double rel_err_f(const float *got, const float *want, size_t n) {
    double d2 = 0, r2 = 0;
    for (size_t i = 0; i < n; i++) d2 += (got[i] - want[i]) * (got[i] - want[i]), r2 += (double)want[i] * want[i];
    return sqrt(d2) / sqrt(r2);
}

/*
 * The convs that take no Winograd run their forward on the project's GEMM
 * when the trainer gives them a kernel (c.gemm): for every kernel this CPU
 * has, the forward against im2col + OpenBLAS, and both gradients by central
 * differences through that forward.
 */
static void check_conv_kernels(const char *name, sx_conv c, int n, int h, int w) {
    static const sx_cpu_path paths[] = {SX_CPU_AVX2, SX_CPU_AVX512};
    int ho, wo;
    sx_conv_out_size(&c, h, w, &ho, &wo);
    size_t in_n = (size_t)c.cin * n * h * w, w_n = (size_t)c.cout * c.cin * c.k * c.k;
    size_t out_n = (size_t)c.cout * n * ho * wo;
    float *in = randv(in_n), *wt = randv(w_n), *want = zeros(out_n), *got = zeros(out_n);
    c.w = wt;
    float *col = zeros(sx_conv_grad_scratch_floats(&c, n, h, w));
    sx_conv_forward_nobias(&c, in, n, h, w, NULL, col, want);
    free(col);
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
        if (!sx_cpu_supports(paths[i])) {
            printf("# %s: no %s on this CPU\n", name, sx_cpu_path_name(paths[i]));
            continue;
        }
        sx_conv k = c;
        k.gemm = sx_gemm_kernel_for(paths[i], c.cout);
        float *scratch = zeros(sx_conv_grad_scratch_floats(&k, n, h, w));
        float *kept = zeros(sx_conv_grad_col_floats(&k, n, h, w) + 1);
        for (int keep = 0; keep < 2; keep++) { /* a kept buffer or none: never kept */
            memset(got, 0, out_n * sizeof(float));
            int has_col = sx_conv_forward_nobias(&k, in, n, h, w, keep ? kept : NULL, scratch, got);
            double e = rel_err_f(got, want, out_n);
            CHECK_MSG(has_col == (keep && sx_conv_grad_kept_floats(&k, n, h, w)) && e < 1e-6,
                      "conv %s on %s, keep %d: forward rel err %.2e vs OpenBLAS (col %d)", name,
                      sx_cpu_path_name(paths[i]), keep, e, has_col);
        }
        free(scratch), free(kept);
        char label[96];
        snprintf(label, sizeof label, "%s, %s kernel", name, sx_cpu_path_name(paths[i]));
        k.w = NULL;
        check_conv(label, k, n, h, w);
    }
    free(in), free(wt), free(want), free(got);
}

/* ||got - want|| / ||want|| */
static double rel_err_d(const float *got, const double *want, size_t n);

/*
 * The direct stem's weight gradient (nn/stem.c) against the direct sum in
 * double, on rows of several segments (wo 75: 2 of 64 pixels on AVX-512, 3
 * of 32 on AVX2), a channel count that leaves a partial block, two threads.
 */
static void check_stem_weight_grad(void) {
    sx_conv c = {.cin = 3, .cout = 10, .k = 7, .stride = 2, .pad = 3};
    const int n = 2, h = 150, w = 149;
    int ho, wo;
    sx_conv_out_size(&c, h, w, &ho, &wo);
    size_t m = (size_t)n * ho * wo, taps = 147, w_n = (size_t)c.cout * taps;
    float *in = randv((size_t)3 * n * h * w), *dout = randv((size_t)c.cout * m), *wt = randv(w_n);
    double *want = calloc(w_n, sizeof(double));
    for (int co = 0; co < c.cout; co++)
        for (int ci = 0; ci < 3; ci++)
            for (int ky = 0; ky < 7; ky++)
                for (int kx = 0; kx < 7; kx++) {
                    double s = 0;
                    for (int img = 0; img < n; img++)
                        for (int oy = 0; oy < ho; oy++)
                            for (int ox = 0; ox < wo; ox++) {
                                int iy = 2 * oy - 3 + ky, ix = 2 * ox - 3 + kx;
                                if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                                s += (double)dout[(size_t)co * m + ((size_t)img * ho + oy) * wo + ox] *
                                     in[((size_t)ci * n + img) * h * w + (size_t)iy * w + ix];
                            }
                    want[(size_t)co * taps + (ci * 7 + ky) * 7 + kx] = s;
                }
    static const sx_cpu_path paths[] = {SX_CPU_AVX2, SX_CPU_AVX512};
    int threads_before = sx_threads();
    sx_threads_set(2);
    for (size_t p = 0; p < 2; p++) {
        if (!sx_cpu_supports(paths[p])) continue;
        sx_conv k = c;
        k.w = wt;
        k.gemm = sx_gemm_kernel_for(paths[p], c.cout);
        float *scratch = zeros(sx_conv_grad_scratch_floats(&k, n, h, w)), *dw = zeros(w_n);
        sx_conv_backward(&k, in, NULL, dout, n, h, w, scratch, dw, NULL);
        double e = rel_err_d(dw, want, w_n);
        printf("stem dW, direct on %s, against the sum in double: rel.err=%.2e\n",
               sx_cpu_path_name(paths[p]), e);
        CHECK_MSG(e < 1e-5, "stem dW on %s: rel err %.2e", sx_cpu_path_name(paths[p]), e);
        free(scratch), free(dw);
    }
    sx_threads_set(threads_before);
    free(in), free(dout), free(wt), free(want);
}

static double rel_err_d(const float *got, const double *want, size_t n) {
    double d2 = 0, r2 = 0;
    for (size_t i = 0; i < n; i++) d2 += (got[i] - want[i]) * (got[i] - want[i]), r2 += want[i] * want[i];
    return sqrt(d2) / sqrt(r2);
}

/* The input gradient of a batch big enough for several chunks of W^T x dout
 * (conv_grad.c works through ~2M floats at a time) against the direct sum
 * din[ci][img][iy][ix] = sum W[co][ci][ky][kx] dout[co][img][oy][ox]. */
static void check_conv_chunks(sx_conv c, int n, int h, int w) {
    int ho, wo;
    sx_conv_out_size(&c, h, w, &ho, &wo);
    size_t in_n = (size_t)c.cin * n * h * w, m = (size_t)n * ho * wo;
    size_t kk = (size_t)c.cin * c.k * c.k, w_n = (size_t)c.cout * kk;
    float *wt = randv(w_n), *in = randv(in_n), *dout = randv((size_t)c.cout * m);
    float *din = zeros(in_n), *dw = zeros(w_n);
    float *scratch = zeros(sx_conv_grad_scratch_floats(&c, n, h, w));
    double *want = calloc(in_n, sizeof(double));
    c.w = wt;
    sx_conv_backward(&c, in, NULL, dout, n, h, w, scratch, dw, din);
    for (int co = 0; co < c.cout; co++)
        for (int img = 0; img < n; img++)
            for (int oy = 0; oy < ho; oy++)
                for (int ox = 0; ox < wo; ox++) {
                    double g = dout[(size_t)co * m + ((size_t)img * ho + oy) * wo + ox];
                    for (int ci = 0; ci < c.cin; ci++)
                        for (int ky = 0; ky < c.k; ky++)
                            for (int kx = 0; kx < c.k; kx++) {
                                int iy = oy * c.stride - c.pad + ky, ix = ox * c.stride - c.pad + kx;
                                if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                                want[(((size_t)ci * n + img) * h + iy) * w + ix] +=
                                    g * wt[(size_t)co * kk + ((size_t)ci * c.k + ky) * c.k + kx];
                            }
                }
    const char *path = c.wino_m ? (c.wino_m == 2 ? "Winograd F(2x2)" : "Winograd F(4x4)") : "chunks";
    double rel = rel_err_d(din, want, in_n);
    printf("conv %dx%d/%d dX, %zu columns (%s)  rel.err=%.2e\n", c.k, c.k, c.stride, m, path, rel);
    CHECK_MSG(rel < 1e-5, "conv dX over chunks: relative error %.3g", rel);
    /* the input gradient alone (no dW: Winograd then runs the mirrored conv) */
    float *din_alone = zeros(in_n);
    sx_conv_backward(&c, in, NULL, dout, n, h, w, scratch, NULL, din_alone);
    rel = rel_err_d(din_alone, want, in_n);
    printf("conv %dx%d/%d dX alone (%s)  rel.err=%.2e\n", c.k, c.k, c.stride, path, rel);
    CHECK_MSG(rel < 1e-5, "conv dX alone: relative error %.3g", rel);
    free(din_alone);
    /* dW[co][ci][ky][kx] = sum over the batch's outputs of dout x the input
       pixel that tap read; dw started from zero */
    double *want_dw = calloc(w_n, sizeof(double));
    for (int co = 0; co < c.cout; co++)
        for (int ci = 0; ci < c.cin; ci++)
            for (int ky = 0; ky < c.k; ky++)
                for (int kx = 0; kx < c.k; kx++) {
                    double s = 0;
                    for (int img = 0; img < n; img++)
                        for (int oy = 0; oy < ho; oy++)
                            for (int ox = 0; ox < wo; ox++) {
                                int iy = oy * c.stride - c.pad + ky, ix = ox * c.stride - c.pad + kx;
                                if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                                s += (double)dout[(size_t)co * m + ((size_t)img * ho + oy) * wo + ox] *
                                     in[(((size_t)ci * n + img) * h + iy) * w + ix];
                            }
                    want_dw[(size_t)co * kk + ((size_t)ci * c.k + ky) * c.k + kx] = s;
                }
    rel = rel_err_d(dw, want_dw, w_n);
    printf("conv %dx%d/%d dW, %zu columns (%s)  rel.err=%.2e\n", c.k, c.k, c.stride, m, path, rel);
    CHECK_MSG(rel < 1e-5, "conv dW (%s): relative error %.3g", path, rel);
    /* from what the forward kept (Winograd's V of every block, or im2col):
       the same dW to the bit */
    size_t kf = sx_conv_grad_kept_floats(&c, n, h, w), out_n = (size_t)c.cout * m;
    float *kept = zeros(kf + 1), *out = zeros(out_n), *dw_kept = zeros(w_n);
    int has = sx_conv_forward_nobias(&c, in, n, h, w, kept, scratch, out);
    sx_conv_backward(&c, in, has ? kept : NULL, dout, n, h, w, scratch, dw_kept, NULL);
    printf("conv %dx%d/%d dW from the forward's kept %zu floats (%s): %s\n", c.k, c.k, c.stride,
           kf, path, memcmp(dw, dw_kept, w_n * sizeof(float)) ? "differs" : "the same");
    CHECK_MSG(has == (kf > 0) && !memcmp(dw, dw_kept, w_n * sizeof(float)),
              "conv dW (%s) from the kept buffer (%d) differs", path, has);
    free(kept), free(out), free(dw_kept);
    free(wt), free(in), free(dout), free(din), free(dw), free(scratch), free(want), free(want_dw);
}

/* ---- BatchNorm (train mode), with and without the fused ReLU ------------- */

typedef struct bn_ctx {
    int c, relu;
    size_t m;
    float *x, *gamma, *beta, *mean, *invstd, *y, *r;
} bn_ctx;

static double bn_loss(void *p) {
    bn_ctx *k = p;
    sx_tr_bn_forward(k->c, k->m, k->x, k->gamma, k->beta, NULL, NULL, k->mean, k->invstd, k->y,
                     k->relu);
    return dot(k->y, k->r, (size_t)k->c * k->m);
}

static void check_bn(int relu) {
    bn_ctx k = {3, relu, 10, 0, 0, 0, 0, 0, 0, 0};
    size_t n = (size_t)k.c * k.m;
    k.x = randv(n), k.gamma = randv(k.c), k.beta = randv(k.c), k.r = randv(n);
    k.mean = zeros(k.c), k.invstd = zeros(k.c), k.y = zeros(n);
    bn_loss(&k);
    float *dy = zeros(n), *dx = zeros(n), *dg = zeros(k.c), *db = zeros(k.c);
    memcpy(dy, k.r, n * sizeof(float));
    if (relu) sx_tr_relu_backward(dy, k.y, n);
    sx_tr_bn_backward(k.c, k.m, k.x, dy, k.gamma, k.mean, k.invstd, dg, db, dx);
    gradcheck(relu ? "batchnorm+relu dX" : "batchnorm dX", k.x, n, dx, bn_loss, &k, 1e-3f, 5e-3);
    gradcheck(relu ? "batchnorm+relu dgamma" : "batchnorm dgamma", k.gamma, k.c, dg, bn_loss, &k,
              1e-3f, 5e-3);
    gradcheck(relu ? "batchnorm+relu dbeta" : "batchnorm dbeta", k.beta, k.c, db, bn_loss, &k,
              1e-3f, 5e-3);
    if (relu) { /* the fused form (training's) gives the same floats as the two steps */
        float *dy2 = zeros(n), *dx2 = zeros(n), *dg2 = zeros(k.c), *db2 = zeros(k.c);
        memcpy(dy2, k.r, n * sizeof(float));
        sx_tr_relu_bn_backward(k.c, k.m, k.y, dy2, k.x, k.gamma, k.mean, k.invstd, dg2, db2, dx2);
        CHECK_MSG(!memcmp(dx2, dx, n * sizeof(float)) && !memcmp(dy2, dy, n * sizeof(float)) &&
                      !memcmp(dg2, dg, k.c * sizeof(float)) && !memcmp(db2, db, k.c * sizeof(float)),
                  "relu + batchnorm backward fused differs from the two steps");
        free(dy2), free(dx2), free(dg2), free(db2);
    }
    free(k.x), free(k.gamma), free(k.beta), free(k.r), free(k.mean), free(k.invstd), free(k.y);
    free(dy), free(dx), free(dg), free(db);
}

/* ---- ReLU and the residual add ------------------------------------------- */

typedef struct ew_ctx {
    size_t n;
    float *a, *b, *out, *r;
    int mode; /* 0 relu(a), 1 relu(a + b) */
} ew_ctx;

static double ew_loss(void *p) {
    ew_ctx *k = p;
    if (k->mode == 0) {
        memcpy(k->out, k->a, k->n * sizeof(float));
        sx_tr_relu_forward(k->out, k->n);
    } else {
        sx_tr_add_forward(k->a, k->b, k->out, k->n, 1);
    }
    return dot(k->out, k->r, k->n);
}

static void away_from_zero(float *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (fabsf(v[i]) < 0.05f) v[i] = v[i] < 0 ? -0.05f - v[i] : 0.05f + v[i];
}

static void check_relu_add(void) {
    ew_ctx k = {64, randv(64), randv(64), zeros(64), randv(64), 0};
    away_from_zero(k.a, k.n);
    ew_loss(&k);
    float *g = malloc(k.n * sizeof(float));
    memcpy(g, k.r, k.n * sizeof(float));
    sx_tr_relu_backward(g, k.out, k.n);
    gradcheck("relu dX", k.a, k.n, g, ew_loss, &k, 1e-3f, 1e-3);
    k.mode = 1;
    for (size_t i = 0; i < k.n; i++) k.b[i] = 0.5f * k.a[i]; /* a + b stays off zero */
    ew_loss(&k);
    memcpy(g, k.r, k.n * sizeof(float));
    sx_tr_relu_backward(g, k.out, k.n); /* both inputs receive this gradient */
    gradcheck("residual add+relu dA", k.a, k.n, g, ew_loss, &k, 1e-3f, 1e-3);
    gradcheck("residual add+relu dB", k.b, k.n, g, ew_loss, &k, 1e-3f, 1e-3);
    free(k.a), free(k.b), free(k.out), free(k.r), free(g);
}

/* ---- pooling ---------------------------------------------------------------- */

typedef struct pool_ctx {
    int c, n, h, w, ho, wo, avg;
    float *in, *out, *r;
    int32_t *arg;
} pool_ctx;

static double pool_loss(void *p) {
    pool_ctx *k = p;
    if (k->avg) {
        sx_tr_avgpool_forward(k->c, k->n, k->h * k->w, k->in, k->out);
        return dot(k->out, k->r, (size_t)k->c * k->n);
    }
    sx_tr_maxpool_forward(k->c, k->n, k->h, k->w, 3, 2, 1, k->in, k->out, k->arg);
    return dot(k->out, k->r, (size_t)k->c * k->n * k->ho * k->wo);
}

/* Max pooling's forward against the plain definition (clipped windows, first
 * maximum wins, as PyTorch), with ties, value for value and on every argmax:
 * the gradient check cannot see which of two equal inputs was chosen. */
static void check_maxpool_ties_at(int h, int w, int k, int s, int p) {
    const int c = 2, n = 3;
    int ho = (h + 2 * p - k) / s + 1, wo = (w + 2 * p - k) / s + 1;
    size_t in_n = (size_t)c * n * h * w, out_n = (size_t)c * n * ho * wo;
    float *in = randv(in_n), *out = zeros(out_n);
    for (size_t i = 0; i < in_n; i++) in[i] = (float)((int)(in[i] * 3.0f)); /* many ties */
    for (size_t i = 0; i < in_n; i += 7) in[i] = -INFINITY; /* never a maximum over -inf */
    int32_t *arg = calloc(out_n, sizeof *arg);
    sx_tr_maxpool_forward(c, n, h, w, k, s, p, in, out, arg);
    int bad = 0;
    for (int pl = 0; pl < c * n; pl++)
        for (int oy = 0; oy < ho; oy++)
            for (int ox = 0; ox < wo; ox++) {
                float best = -INFINITY;
                int at = -1;
                for (int ky = 0; ky < k; ky++)
                    for (int kx = 0; kx < k; kx++) {
                        int iy = oy * s - p + ky, ix = ox * s - p + kx;
                        if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                        float v = in[(size_t)pl * h * w + iy * w + ix];
                        if (v > best) best = v, at = iy * w + ix;
                    }
                size_t o = (size_t)pl * ho * wo + oy * wo + ox;
                bad += out[o] != best || arg[o] != at;
            }
    printf("maxpool %dx%d/%d pad %d forward on %dx%d with ties: %d of %zu outputs differ from "
           "the definition\n", k, k, s, p, h, w, bad, out_n);
    CHECK_MSG(bad == 0, "maxpool forward %dx%d: %d outputs differ", h, w, bad);
    free(in), free(out), free(arg);
}

/* ResNet's window (its own path) on odd and even sides, a row longer than
 * one chunk of outputs and a 1-pixel image; and a window of the general loop. */
static void check_maxpool_ties(void) {
    int sides[][2] = {{13, 10}, {12, 11}, {5, 301}, {1, 1}, {2, 3}};
    for (size_t i = 0; i < sizeof sides / sizeof sides[0]; i++)
        check_maxpool_ties_at(sides[i][0], sides[i][1], 3, 2, 1);
    check_maxpool_ties_at(9, 8, 2, 2, 0);
}

static void check_pools(void) {
    pool_ctx k = {2, 2, 7, 6, 4, 3, 0, 0, 0, 0, 0};
    size_t in_n = (size_t)k.c * k.n * k.h * k.w, out_n = (size_t)k.c * k.n * k.ho * k.wo;
    /* distinct values spaced far more than eps: no ties, no argmax flips */
    k.in = malloc(in_n * sizeof(float));
    for (size_t i = 0; i < in_n; i++) k.in[i] = (float)((i * 37) % in_n) * 0.01f;
    k.out = zeros(out_n), k.r = randv(out_n), k.arg = calloc(out_n, sizeof(int32_t));
    pool_loss(&k);
    float *din = zeros(in_n);
    sx_tr_maxpool_backward(k.c, k.n, k.h, k.w, k.ho, k.wo, k.arg, k.r, din);
    gradcheck("maxpool 3x3/2 pad 1 dX", k.in, in_n, din, pool_loss, &k, 1e-3f, 1e-3);
    k.avg = 1;
    sx_tr_avgpool_backward(k.c, k.n, k.h * k.w, k.r, din);
    gradcheck("global avgpool dX", k.in, in_n, din, pool_loss, &k, 1e-3f, 1e-3);
    free(k.in), free(k.out), free(k.r), free(k.arg), free(din);
}

/* ---- linear + softmax cross-entropy; Siamese BCE ------------------------- */

typedef struct head_ctx {
    int n, in, out, mode; /* 0 linear, 1 softmax CE, 2 siamese */
    float *x, *w, *b, *y, *r, *scratch;
    int32_t labels[8];
    float sb;
} head_ctx;

static double head_loss(void *p) {
    head_ctx *k = p;
    if (k->mode == 0) {
        sx_tr_linear_forward(k->n, k->in, k->out, k->x, k->w, k->b, k->y);
        return dot(k->y, k->r, (size_t)k->n * k->out);
    }
    if (k->mode == 1)
        return sx_tr_softmax_ce(k->n, k->in, k->x, k->labels, 0.1f, k->scratch, NULL);
    float dw[64] = {0}, db = 0;
    memset(k->scratch, 0, sizeof(float) * k->n * k->in);
    return sx_tr_siamese_bce(k->n, k->in, k->x, k->labels, k->w, k->sb, 0.7f, k->scratch, dw,
                             &db, NULL);
}

static void check_heads(void) {
    head_ctx k = {4, 5, 3, 0, randv(20), randv(15), randv(3), zeros(12), randv(12), zeros(64),
                  {0, 1, 1, 1, 2, 0, 2, 2}, 0.3f};
    float *dw = zeros(15), *db = zeros(3), *dx = zeros(20);
    sx_tr_linear_backward(k.n, k.in, k.out, k.x, k.w, k.r, dw, db, dx);
    gradcheck("linear dW", k.w, 15, dw, head_loss, &k, 1e-2f, 1e-3);
    gradcheck("linear db", k.b, 3, db, head_loss, &k, 1e-2f, 1e-3);
    gradcheck("linear dX", k.x, 20, dx, head_loss, &k, 1e-2f, 1e-3);

    k.mode = 1; /* x as 4 rows of 5 logits */
    float *dl = zeros(20);
    sx_tr_softmax_ce(k.n, k.in, k.x, k.labels, 0.1f, dl, NULL);
    gradcheck("softmax cross-entropy dlogits", k.x, 20, dl, head_loss, &k, 1e-2f, 1e-3);

    k.mode = 2; /* x as 4 feature rows of 5 = 2 pairs; labels 0,1 / 1,1 */
    float *df = zeros(20), *sw = zeros(5), sdb = 0;
    k.w[0] = 0.5f; /* w: first 5 entries are the head's weights */
    for (int i = 0; i < 10; i++) /* keep |fa - fb| off the kink of abs() */
        if (fabsf(k.x[i % 5 + 10 * (i / 5)] - k.x[i % 5 + 10 * (i / 5) + 5]) < 0.1f)
            k.x[i % 5 + 10 * (i / 5) + 5] = k.x[i % 5 + 10 * (i / 5)] - 0.2f;
    sx_tr_siamese_bce(k.n, k.in, k.x, k.labels, k.w, k.sb, 0.7f, df, sw, &sdb, NULL);
    gradcheck("siamese BCE dfeat", k.x, 20, df, head_loss, &k, 1e-2f, 1e-3);
    gradcheck("siamese BCE dw", k.w, 5, sw, head_loss, &k, 1e-2f, 1e-3);
    gradcheck("siamese BCE db", &k.sb, 1, &sdb, head_loss, &k, 1e-2f, 1e-3);
    free(k.x), free(k.w), free(k.b), free(k.y), free(k.r), free(k.scratch);
    free(dw), free(db), free(dx), free(dl), free(df), free(sw);
}

/* ---- CosFace logits + softmax cross-entropy --------------------------------- */

typedef struct cos_ctx {
    int n, in, k;
    float *x, *w, *ws, *logits, *dlogits;
    int32_t labels[6];
    float s, m;
} cos_ctx;

static double cosface_loss(void *p) {
    cos_ctx *c = p;
    sx_tr_cosface_forward(c->n, c->in, c->k, c->x, c->w, c->labels, c->s, c->m, c->ws, c->logits);
    return sx_tr_softmax_ce(c->n, c->k, c->logits, c->labels, 0.1f, c->dlogits, NULL);
}

static void check_cosface(void) {
    cos_ctx c = {6, 5, 4, randv(30), randv(20), NULL, zeros(24), zeros(24),
                 {0, 1, 2, 3, 1, 0}, 8.0f, 0.35f};
    c.ws = zeros(sx_tr_cosface_ws_floats(c.n, c.in, c.k));
    float *dx = zeros(30), *dw = zeros(20), *scratch = zeros(20);
    cosface_loss(&c); /* dlogits and the kept normalisation for this x, w */
    sx_tr_cosface_backward(c.n, c.in, c.k, c.ws, c.dlogits, c.s, dw, dx, scratch);
    /* the margin is there: the label's logit is s*m below s*cos */
    double cos00 = 0, nx = 0, nw = 0;
    for (int j = 0; j < c.in; j++) {
        cos00 += (double)c.x[j] * c.w[j];
        nx += (double)c.x[j] * c.x[j];
        nw += (double)c.w[j] * c.w[j];
    }
    cos00 /= sqrt(nx * nw);
    CHECK_MSG(fabs(c.logits[0] - c.s * (cos00 - c.m)) < 1e-4, "logit %g, want %g", c.logits[0],
              c.s * (cos00 - c.m));
    gradcheck("cosface CE dX", c.x, 30, dx, cosface_loss, &c, 1e-2f, 1e-3);
    gradcheck("cosface CE dW", c.w, 20, dw, cosface_loss, &c, 1e-2f, 1e-3);
    /* scale invariance: the loss does not change when x or a class row is scaled */
    double before = cosface_loss(&c);
    for (int j = 0; j < c.in; j++) c.x[j] *= 3.0f, c.w[c.in + j] *= 0.25f;
    CHECK_MSG(fabs(cosface_loss(&c) - before) < 1e-5, "loss changed with the norms");
    free(c.x), free(c.w), free(c.ws), free(c.logits), free(c.dlogits);
    free(dx), free(dw), free(scratch);
}

/* ---- style statistics ---------------------------------------------------------- */

typedef struct style_ctx {
    float *x, *out, *r; /* x: [3][2*5]; out, r: 2 rows of ld 9 (offset 2, 3 means + 3 stds) */
} style_ctx;

static double style_loss(void *p) {
    style_ctx *c = p;
    sx_pool_planes(c->x, 3, 2, 5, SIAMIDX_POOL_STYLE, 0, c->out, 9, 2);
    double l = 0;
    for (int i = 0; i < 2; i++)
        for (int j = 2; j < 8; j++) l += (double)c->out[i * 9 + j] * c->r[i * 9 + j];
    return l;
}

static void check_style(void) {
    style_ctx c = {randv(30), zeros(18), randv(18)};
    float *dx = randv(30), *keep = zeros(30);
    style_loss(&c);
    memcpy(keep, dx, sizeof(float) * 30);
    sx_tr_style_backward(3, 2, 5, c.x, c.out, c.r, 9, 2, dx, 1); /* accumulates */
    for (int i = 0; i < 30; i++) dx[i] -= keep[i];
    gradcheck("style mean/std dX", c.x, 30, dx, style_loss, &c, 1e-2f, 1e-3);
    /* a flat plane (std 0) gets the mean's share only, and nothing undefined */
    for (int t = 0; t < 5; t++) c.x[t] = 0.25f;
    style_loss(&c);
    CHECK(c.out[2] == 0.25f && c.out[5] == 0.0f);
    sx_tr_style_backward(3, 2, 5, c.x, c.out, c.r, 9, 2, dx, 0);
    for (int t = 0; t < 5; t++)
        CHECK_MSG(fabsf(dx[t] - c.r[2] / 5) < 1e-7f, "flat plane: %g, want %g", dx[t], c.r[2] / 5);
    free(c.x), free(c.out), free(c.r), free(dx), free(keep);
}

/* ---- supervised contrastive term ------------------------------------------ */

typedef struct supcon_ctx {
    int n, dim;
    float *x, *ws, *scratch;
    int32_t labels[8];
    float tau;
} supcon_ctx;

static double supcon_loss(void *p) {
    supcon_ctx *c = p;
    memset(c->scratch, 0, sizeof(float) * c->n * c->dim);
    return sx_tr_supcon(c->n, c->dim, c->x, c->labels, c->tau, 1.0f, c->ws, c->scratch, NULL);
}

static void check_supcon(void) {
    /* by hand: rows (1,0), (0,2), (3,0), labels 0 0 1, tau 1. Anchors 0 and 1
       (row 2 has no positive); cosines s01 = 0, s02 = 1, s12 = 0:
       L0 = log(e^0 + e^1) - 0, L1 = log(e^0 + e^0) - 0. */
    float hx[6] = {1, 0, 0, 2, 3, 0}, hws[64], hd[6] = {0};
    int32_t hl[3] = {0, 0, 1};
    int anchors = 0;
    double l = sx_tr_supcon(3, 2, hx, hl, 1.0f, 1.0f, hws, hd, &anchors);
    double want = (log(1.0 + exp(1.0)) + log(2.0)) / 2;
    CHECK_MSG(anchors == 2, "%d anchors, want 2", anchors);
    CHECK_MSG(fabs(l - want) < 1e-6, "loss %.9g, want %.9g", l, want);
    CHECK_MSG(hd[4] != 0.0f || hd[5] != 0.0f, "a non-anchor's row gets no gradient as a negative");

    /* central differences: 8 rows of 5, two rows without a positive */
    supcon_ctx c = {8, 5, randv(40), NULL, zeros(40), {0, 0, 1, 1, 1, 2, 3, 2}, 0.2f};
    c.ws = zeros(sx_tr_supcon_ws_floats(c.n, c.dim));
    float *df = zeros(40);
    sx_tr_supcon(c.n, c.dim, c.x, c.labels, c.tau, 0.6f, c.ws, df, &anchors);
    CHECK_MSG(anchors == 7, "%d anchors, want 7", anchors);
    for (int i = 0; i < 40; i++) df[i] /= 0.6f; /* the weight scales the gradient only */
    gradcheck("supcon dfeat", c.x, 40, df, supcon_loss, &c, 1e-2f, 1e-3);
    double before = supcon_loss(&c); /* scale invariance of each row */
    for (int j = 0; j < c.dim; j++) c.x[j] *= 4.0f, c.x[3 * c.dim + j] *= 0.3f;
    CHECK_MSG(fabs(supcon_loss(&c) - before) < 1e-5, "loss changed with the norms");
    int32_t none[3] = {0, 1, 2}; /* no anchors: no loss, no gradient */
    memset(hd, 0, sizeof hd);
    CHECK(sx_tr_supcon(3, 2, hx, none, 1.0f, 1.0f, hws, hd, &anchors) == 0.0 && anchors == 0);
    CHECK(hd[0] == 0.0f && hd[3] == 0.0f);
    free(c.x), free(c.ws), free(c.scratch), free(df);
}

int main(void) {
    check_conv("3x3/2 pad 1", (sx_conv){.cin = 3, .cout = 4, .k = 3, .stride = 2, .pad = 1}, 2, 7, 6);
    check_conv("3x3/1 pad 1", (sx_conv){.cin = 4, .cout = 3, .k = 3, .stride = 1, .pad = 1}, 2, 5, 5);
    check_conv("7x7/2 pad 3", (sx_conv){.cin = 3, .cout = 2, .k = 7, .stride = 2, .pad = 3}, 1, 9, 8);
    check_conv("1x1/1", (sx_conv){.cin = 5, .cout = 3, .k = 1, .stride = 1, .pad = 0}, 2, 4, 3);
    check_conv("1x1/2 (downsample)", (sx_conv){.cin = 4, .cout = 6, .k = 1, .stride = 2, .pad = 0}, 2, 5, 6);
    check_conv_kernels("7x7/2 pad 3 (stem)", (sx_conv){.cin = 3, .cout = 20, .k = 7, .stride = 2, .pad = 3}, 2, 19, 17);
    check_conv_kernels("3x3/2 pad 1", (sx_conv){.cin = 6, .cout = 9, .k = 3, .stride = 2, .pad = 1}, 2, 9, 8);
    check_conv_kernels("1x1/1", (sx_conv){.cin = 5, .cout = 70, .k = 1, .stride = 1, .pad = 0}, 2, 4, 3);
    check_conv_kernels("1x1/2 (downsample)", (sx_conv){.cin = 4, .cout = 6, .k = 1, .stride = 2, .pad = 0}, 2, 5, 6);
    check_stem_weight_grad();
    check_conv_chunks((sx_conv){.cin = 64, .cout = 4, .k = 3, .stride = 1, .pad = 1}, 2, 48, 47);
    check_conv_chunks((sx_conv){.cin = 64, .cout = 4, .k = 3, .stride = 2, .pad = 1}, 2, 95, 96);
    /* training marks its 3x3 stride-1 convs for Winograd: the input gradient
       is then the mirrored convolution of dout (edge tiles: 47 and 9 are not
       multiples of the tile) */
    check_conv_chunks((sx_conv){.cin = 24, .cout = 40, .k = 3, .stride = 1, .pad = 1, .wino_m = 4}, 2, 21, 47);
    check_conv_chunks((sx_conv){.cin = 24, .cout = 40, .k = 3, .stride = 1, .pad = 1, .wino_m = 2}, 2, 21, 47);
    /* 128 x 128 channels: 19 tile rows fill a workspace block, so the 20 of
       this batch take two blocks and the weight gradient accumulates dU */
    check_conv_chunks((sx_conv){.cin = 128, .cout = 128, .k = 3, .stride = 1, .pad = 1, .wino_m = 4}, 2, 40, 22);
    check_conv("3x3/1 pad 1, Winograd F(4x4)",
               (sx_conv){.cin = 3, .cout = 4, .k = 3, .stride = 1, .pad = 1, .wino_m = 4}, 2, 9, 10);
    check_bn(0);
    check_bn(1);
    check_relu_add();
    check_pools();
    check_maxpool_ties();
    check_heads();
    check_cosface();
    check_supcon();
    check_style();
    CHECK_DONE();
}

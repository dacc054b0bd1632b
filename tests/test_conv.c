/*
 * test_conv.c - the GEMM convolution and the encoder against naive loops.
 *
 * Every kernel is compared with a direct, obviously correct implementation in
 * NCHW: convolutions of several shapes (7x7/2, 3x3/2, 1x1/2, 1x1/1, batches,
 * inputs large enough to need several im2col chunks), with 1 and 2 threads
 * and with OpenBLAS threading on and off; then whole hand-built ResNets
 * (BasicBlock and Bottleneck, with downsampling) through every output kind
 * and pooling. The convolutions run on the kernel SIAMIDX_CPU names (nn/cpu.h:
 * packed weights for avx512/avx2, im2col + OpenBLAS for blas), as a loaded
 * model's would; ctest runs this file once per kernel.
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "test_rand.h"
#include "nn/conv.h"
#include "nn/encoder.h"
#include "nn/gemm.h"
#include "nn/model.h"

void openblas_set_num_threads(int);

static sx_cpu_path path; /* SIAMIDX_CPU's */

static sx_conv make_conv(int cin, int cout, int k, int stride, int pad) {
    sx_conv c = {.cin = cin, .cout = cout, .k = k, .stride = stride, .pad = pad};
    /* He-like scale keeps activations O(1) through deep stacks. */
    c.w = rand_floats((size_t)cout * cin * k * k, sqrtf(3.0f / (cin * k * k)));
    c.b = rand_floats((size_t)cout, 0.1f);
    const sx_gemm_kernel *g = sx_gemm_kernel_for(path, cout);
    if (g) { /* as nn/model.c packs a loaded model's */
        size_t bytes = (sx_conv_packed_floats(&c, g) * sizeof(float) + 63) & ~(size_t)63;
        sx_conv_pack(&c, g, aligned_alloc(64, bytes));
    }
    return c;
}

static void free_conv(sx_conv *c) {
    free(c->w);
    free(c->b);
    free((void *)c->packed);
}

/* ---- naive NCHW reference ------------------------------------------------- */

static void naive_conv(const sx_conv *c, const float *in, int n, int h, int w, float *out,
                       int relu) {
    int ho, wo;
    sx_conv_out_size(c, h, w, &ho, &wo);
    for (int i = 0; i < n; i++)
        for (int co = 0; co < c->cout; co++)
            for (int oy = 0; oy < ho; oy++)
                for (int ox = 0; ox < wo; ox++) {
                    double s = c->b[co];
                    for (int ci = 0; ci < c->cin; ci++)
                        for (int ky = 0; ky < c->k; ky++)
                            for (int kx = 0; kx < c->k; kx++) {
                                int iy = oy * c->stride - c->pad + ky;
                                int ix = ox * c->stride - c->pad + kx;
                                if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                                s += (double)c->w[((size_t)co * c->cin + ci) * c->k * c->k +
                                                  ky * c->k + kx] *
                                     in[(((size_t)i * c->cin + ci) * h + iy) * w + ix];
                            }
                    if (relu && s < 0) s = 0;
                    out[(((size_t)i * c->cout + co) * ho + oy) * wo + ox] = (float)s;
                }
}

static void naive_maxpool(const float *in, int n, int ch, int h, int w, float *out, int *ho,
                          int *wo) {
    *ho = (h - 1) / 2 + 1;
    *wo = (w - 1) / 2 + 1;
    for (int p = 0; p < n * ch; p++)
        for (int oy = 0; oy < *ho; oy++)
            for (int ox = 0; ox < *wo; ox++) {
                float m = -INFINITY;
                for (int dy = 0; dy < 3; dy++)
                    for (int dx = 0; dx < 3; dx++) {
                        int y = oy * 2 - 1 + dy, x = ox * 2 - 1 + dx;
                        if (y >= 0 && y < h && x >= 0 && x < w && in[((size_t)p * h + y) * w + x] > m)
                            m = in[((size_t)p * h + y) * w + x];
                    }
                out[((size_t)p * *ho + oy) * *wo + ox] = m;
            }
}

static void nchw_to_cnhw(const float *in, int n, int c, size_t hw, float *out) {
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < c; ch++)
            for (size_t t = 0; t < hw; t++)
                out[((size_t)ch * n + i) * hw + t] = in[((size_t)i * c + ch) * hw + t];
}

static double max_rel_err(const float *a, const float *b, size_t n) {
    double worst = 0, scale = 1e-3;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(b[i]));
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs(a[i] - b[i]) / scale);
    return worst;
}

/* ---- convolution ------------------------------------------------------------ */

static void check_conv(int cin, int cout, int k, int stride, int pad, int n, int h, int w) {
    sx_conv c = make_conv(cin, cout, k, stride, pad);
    int ho, wo;
    sx_conv_out_size(&c, h, w, &ho, &wo);
    size_t in_n = (size_t)n * cin * h * w, out_n = (size_t)n * cout * ho * wo;
    float *x = rand_floats(in_n, 1.0f), *xc = malloc(in_n * sizeof *xc);
    float *ref = malloc(out_n * sizeof *ref), *ref_c = malloc(out_n * sizeof *ref_c);
    float *got = malloc(out_n * sizeof *got), *res = rand_floats(out_n, 1.0f);
    size_t colf = sx_conv_col_floats(&c, n, h, w);
    float *col = aligned_alloc(64, ((colf ? colf : 1) * sizeof *col + 63) & ~(size_t)63);
    nchw_to_cnhw(x, n, cin, (size_t)h * w, xc);

    for (int relu = 0; relu < 2; relu++) {
        naive_conv(&c, x, n, h, w, ref, relu);
        nchw_to_cnhw(ref, n, cout, (size_t)ho * wo, ref_c);
        sx_conv_forward(&c, xc, n, h, w, col, got, relu);
        double e = max_rel_err(got, ref_c, out_n);
        CHECK_MSG(e < 1e-4, "conv %d->%d k%d s%d p%d n%d %dx%d relu %d: error %g", cin, cout, k,
                  stride, pad, n, h, w, relu, e);
        if (!(k == 1 && stride == 1 && pad == 0)) { /* NCHW input, as the stem reads it */
            sx_conv_run(&c, x, 1, n, h, w, col, got, relu, 0);
            e = max_rel_err(got, ref_c, out_n);
            CHECK_MSG(e < 1e-4, "conv nchw %d->%d k%d s%d n%d: error %g", cin, cout, k, stride, n, e);
        }
    }
    /* accumulate: relu(W x + b + residual) */
    naive_conv(&c, x, n, h, w, ref, 0);
    nchw_to_cnhw(ref, n, cout, (size_t)ho * wo, ref_c);
    for (size_t i = 0; i < out_n; i++) {
        float v = ref_c[i] + res[i];
        ref_c[i] = v > 0 ? v : 0;
    }
    memcpy(got, res, out_n * sizeof *got);
    sx_conv_run(&c, xc, 0, n, h, w, col, got, 1, 1);
    double e = max_rel_err(got, ref_c, out_n);
    CHECK_MSG(e < 1e-4, "conv accumulate %d->%d k%d s%d n%d: error %g", cin, cout, k, stride, n, e);

    free(x), free(xc), free(ref), free(ref_c), free(got), free(res), free(col);
    free_conv(&c);
}

static void check_convs(void) {
    check_conv(3, 8, 7, 2, 3, 2, 23, 19);   /* stem */
    check_conv(5, 7, 3, 2, 1, 3, 9, 11);    /* 3x3/2 */
    check_conv(4, 6, 3, 1, 1, 1, 6, 6);     /* 3x3/1 */
    check_conv(6, 10, 1, 2, 0, 2, 9, 8);    /* downsample 1x1/2 */
    check_conv(6, 10, 1, 1, 0, 3, 5, 7);    /* pointwise */
    check_conv(64, 24, 3, 1, 1, 2, 48, 48); /* several im2col chunks, column split */
    check_conv(16, 40, 1, 1, 0, 4, 30, 30); /* pointwise, column split */
    check_conv(3, 5, 7, 2, 3, 1, 2, 3);     /* input smaller than the kernel */
    check_conv(16, 70, 3, 1, 1, 2, 12, 12); /* over 64 outputs: the taller AVX-512 tile */
    check_conv(3, 4, 3, 1, 1, 1, 5, 301);   /* 1505 columns: cols / threads rounds down */
}

/* ---- encoder ------------------------------------------------------------------ */

typedef struct test_net {
    siamidx_model m;
    sx_block blocks[8];
} test_net;

/* A small ResNet: stem 3->8, stage 1 (stride 1), stage 2 (stride 2, downsample). */
static void make_net(test_net *t, int bottleneck, int n_stages, int with_fc) {
    memset(t, 0, sizeof *t);
    siamidx_model *m = &t->m;
    m->arch = bottleneck ? "test-bottleneck" : "test-basic";
    m->bottleneck = bottleneck;
    m->n_stages = n_stages;
    m->stem = make_conv(3, 8, 7, 2, 3);
    int exp = bottleneck ? 4 : 1, cin = 8, nb = 0;
    int widths[3] = {8, 12, 16};
    for (int s = 0; s < n_stages; s++) {
        for (int i = 0; i < 2; i++) {
            sx_block *b = &t->blocks[nb++];
            int stride = (s > 0 && i == 0) ? 2 : 1, wdt = widths[s], cout = wdt * exp;
            b->stage = s + 1;
            if (bottleneck) {
                b->c1 = make_conv(cin, wdt, 1, 1, 0);
                b->c2 = make_conv(wdt, wdt, 3, stride, 1);
                b->c3 = make_conv(wdt, cout, 1, 1, 0);
            } else {
                b->c1 = make_conv(cin, wdt, 3, stride, 1);
                b->c2 = make_conv(wdt, cout, 3, 1, 1);
            }
            if (stride != 1 || cin != cout) {
                b->has_down = 1;
                b->down = make_conv(cin, cout, 1, stride, 0);
            }
            cin = cout;
        }
        m->stage_channels[s] = cin;
    }
    m->blocks = t->blocks;
    m->n_blocks = nb;
    m->feat_dim = cin;
    m->pool = SIAMIDX_POOL_AVG;
    m->gem_p = 3.0f;
    m->style_stages = n_stages > 1 ? 3u : 1u;
    if (with_fc) {
        m->n_classes = 5;
        m->fc_w = rand_floats((size_t)5 * cin, 0.3f);
        m->fc_b = rand_floats(5, 0.1f);
    }
}

static void free_net(test_net *t) {
    free_conv(&t->m.stem);
    for (int i = 0; i < t->m.n_blocks; i++) {
        sx_block *b = &t->blocks[i];
        free_conv(&b->c1), free_conv(&b->c2);
        if (t->m.bottleneck) free_conv(&b->c3);
        if (b->has_down) free_conv(&b->down);
    }
    free(t->m.fc_w);
    free(t->m.fc_b);
}

/* Reference: naive NCHW forward, then pools into `out` [n][dim] per `what`/`pool`. */
static size_t naive_forward(const siamidx_model *m, const float *x, int n, int h, int w,
                            sx_encoder_output what, siamidx_pool pool, float *out) {
    size_t big = (size_t)n * 64 * h * w + 64;
    float *a = malloc(big * sizeof *a), *b = malloc(big * sizeof *b);
    float *t1 = malloc(big * sizeof *t1), *t2 = malloc(big * sizeof *t2);
    float *d = malloc(big * sizeof *d);
    int ho, wo, ch = m->stem.cout;
    naive_conv(&m->stem, x, n, h, w, t1, 1);
    sx_conv_out_size(&m->stem, h, w, &ho, &wo);
    naive_maxpool(t1, n, ch, ho, wo, a, &h, &w);
    size_t dim = 0, off = 0;
    float style[4096];
    for (int i = 0; i < m->n_blocks; i++) {
        const sx_block *bl = &m->blocks[i];
        const sx_conv *last = m->bottleneck ? &bl->c3 : &bl->c2;
        int h1, w1;
        naive_conv(&bl->c1, a, n, h, w, t1, 1);
        sx_conv_out_size(&bl->c1, h, w, &h1, &w1);
        const float *lin = t1;
        int lh = h1, lw = w1;
        if (m->bottleneck) {
            naive_conv(&bl->c2, t1, n, h1, w1, t2, 1);
            sx_conv_out_size(&bl->c2, h1, w1, &lh, &lw);
            lin = t2;
        }
        naive_conv(last, lin, n, lh, lw, b, 0);
        int oh, ow;
        sx_conv_out_size(last, lh, lw, &oh, &ow);
        size_t on = (size_t)n * last->cout * oh * ow;
        if (bl->has_down) naive_conv(&bl->down, a, n, h, w, d, 0);
        for (size_t k = 0; k < on; k++) {
            float v = b[k] + (bl->has_down ? d[k] : a[k]);
            a[k] = v > 0 ? v : 0;
        }
        h = oh, w = ow, ch = last->cout;
        int stage_end = i + 1 == m->n_blocks || m->blocks[i + 1].stage != bl->stage;
        if (stage_end && (m->style_stages & (1u << (bl->stage - 1)))) {
            for (int im = 0; im < n; im++)
                for (int c = 0; c < ch; c++) {
                    const float *v = a + ((size_t)im * ch + c) * h * w;
                    double s = 0, ss = 0;
                    for (int t = 0; t < h * w; t++) s += v[t];
                    double mean = s / (h * w);
                    for (int t = 0; t < h * w; t++) ss += (v[t] - mean) * (v[t] - mean);
                    style[im * 1024 + off + c] = (float)mean;
                    style[im * 1024 + off + ch + c] = (float)sqrt(ss / (h * w));
                }
            off += 2 * (size_t)ch;
        }
    }
    if (what == SX_OUT_EMBEDDING && pool == SIAMIDX_POOL_STYLE) {
        dim = off;
        for (int im = 0; im < n; im++) memcpy(out + im * dim, style + im * 1024, dim * sizeof *out);
    } else {
        dim = (size_t)ch;
        for (int im = 0; im < n; im++)
            for (int c = 0; c < ch; c++) {
                const float *v = a + ((size_t)im * ch + c) * h * w;
                double s = 0, mx = -INFINITY;
                for (int t = 0; t < h * w; t++) {
                    s += (what == SX_OUT_EMBEDDING && pool == SIAMIDX_POOL_GEM)
                             ? pow(fmax(v[t], 1e-6), m->gem_p)
                             : v[t];
                    mx = fmax(mx, v[t]);
                }
                double r = s / (h * w);
                if (what == SX_OUT_EMBEDDING && pool == SIAMIDX_POOL_GEM) r = pow(r, 1.0 / m->gem_p);
                if (what == SX_OUT_EMBEDDING && pool == SIAMIDX_POOL_MAX) r = mx;
                out[im * dim + c] = (float)r;
            }
        if (what == SX_OUT_LOGITS) {
            float pooled[64 * 64];
            memcpy(pooled, out, (size_t)n * dim * sizeof *out);
            for (int im = 0; im < n; im++)
                for (int k = 0; k < m->n_classes; k++) {
                    double s = m->fc_b[k];
                    for (size_t c = 0; c < dim; c++) s += (double)m->fc_w[k * dim + c] * pooled[im * dim + c];
                    out[im * m->n_classes + k] = (float)s;
                }
            dim = (size_t)m->n_classes;
        }
    }
    if (what == SX_OUT_EMBEDDING)
        for (int im = 0; im < n; im++) {
            double s = 0;
            for (size_t k = 0; k < dim; k++) s += (double)out[im * dim + k] * out[im * dim + k];
            for (size_t k = 0; k < dim; k++) out[im * dim + k] /= (float)fmax(sqrt(s), 1e-12);
        }
    free(a), free(b), free(t1), free(t2), free(d);
    return dim;
}

static void check_net(int bottleneck, int n_stages, int n, int h, int w) {
    test_net t;
    make_net(&t, bottleneck, n_stages, 1);
    float *x = rand_floats((size_t)n * 3 * h * w, 1.5f);
    sx_encoder *enc = NULL;
    siamidx_error err;
    CHECK(sx_encoder_new(&t.m, n + 1, h, w, &enc, &err) == SIAMIDX_OK);
    if (!enc) return;
    struct { sx_encoder_output what; siamidx_pool pool; } cases[] = {
        {SX_OUT_POOLED, SIAMIDX_POOL_DEFAULT}, {SX_OUT_LOGITS, SIAMIDX_POOL_DEFAULT},
        {SX_OUT_EMBEDDING, SIAMIDX_POOL_AVG},  {SX_OUT_EMBEDDING, SIAMIDX_POOL_MAX},
        {SX_OUT_EMBEDDING, SIAMIDX_POOL_GEM},  {SX_OUT_EMBEDDING, SIAMIDX_POOL_STYLE},
        {SX_OUT_EMBEDDING, SIAMIDX_POOL_DEFAULT}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        float ref[64 * 256], got[64 * 256];
        siamidx_pool pool = cases[c].pool == SIAMIDX_POOL_DEFAULT ? t.m.pool : cases[c].pool;
        size_t dim = naive_forward(&t.m, x, n, h, w, cases[c].what, pool, ref);
        CHECK(dim == sx_output_dim(&t.m, cases[c].what, cases[c].pool));
        for (int rep = 0; rep < 2; rep++) { /* twice: the workspace is reused cleanly */
            memset(got, 0x7f, sizeof got);
            CHECK(sx_encoder_run(enc, x, n, cases[c].what, cases[c].pool, got, &err) == SIAMIDX_OK);
            double e = max_rel_err(got, ref, (size_t)n * dim);
            CHECK_MSG(e < 1e-4, "net bottleneck %d stages %d n %d %dx%d output %d pool %d: error %g",
                      bottleneck, n_stages, n, h, w, cases[c].what, cases[c].pool, e);
        }
        if (cases[c].what == SX_OUT_EMBEDDING)
            for (int i = 0; i < n; i++) {
                double s = 0;
                for (size_t k = 0; k < dim; k++) s += (double)got[i * dim + k] * got[i * dim + k];
                CHECK_MSG(fabs(s - 1.0) < 1e-5, "row %d norm^2 %g", i, s);
            }
    }
    /* a batch smaller than planned gives the same rows as the full batch */
    float one[256], all[64 * 256];
    size_t dim = sx_output_dim(&t.m, SX_OUT_POOLED, SIAMIDX_POOL_DEFAULT);
    CHECK(sx_encoder_run(enc, x, n, SX_OUT_POOLED, SIAMIDX_POOL_DEFAULT, all, &err) == SIAMIDX_OK);
    CHECK(sx_encoder_run(enc, x + (size_t)(n - 1) * 3 * h * w, 1, SX_OUT_POOLED,
                         SIAMIDX_POOL_DEFAULT, one, &err) == SIAMIDX_OK);
    CHECK(max_rel_err(one, all + (n - 1) * dim, dim) < 1e-5);
    /* refusals */
    CHECK(sx_encoder_run(enc, x, n + 2, SX_OUT_POOLED, SIAMIDX_POOL_DEFAULT, all, &err) ==
          SIAMIDX_ERR_INVALID_ARGUMENT);
    sx_encoder_free(enc);
    free(t.m.fc_w);
    t.m.fc_w = NULL;
    CHECK(sx_encoder_new(&t.m, 1, h, w, &enc, &err) == SIAMIDX_OK);
    CHECK(sx_encoder_run(enc, x, 1, SX_OUT_LOGITS, SIAMIDX_POOL_DEFAULT, all, &err) ==
          SIAMIDX_ERR_UNSUPPORTED);
    sx_encoder_free(enc);
    free(x);
    free_net(&t);
}

static void check_nets(void) {
    check_net(0, 2, 3, 37, 29);
    check_net(1, 2, 2, 40, 44);
    check_net(0, 1, 2, 20, 20);
    check_net(1, 3, 1, 33, 35);
}

int main(void) {
    test_rng = 88172645463325252ull; /* this test's stream */
    siamidx_error err;
    if (sx_cpu_choose(&path, &err) != SIAMIDX_OK) {
        fprintf(stderr, "skipped: %s\n", err.message); /* SIAMIDX_CPU=avx512 without AVX-512 */
        return 77;
    }
    printf("convolutions on %s\n", sx_cpu_path_name(path));
    /* every threading mode the kernels have */
    int modes[][2] = {{1, 1}, {2, 1}, {2, 2}, {3, 1}};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        omp_set_num_threads(modes[i][0]);
        openblas_set_num_threads(modes[i][1]);
        check_convs();
        check_nets();
    }
    CHECK_DONE();
}

/*
 * encoder.c - the ResNet forward pass (torchvision semantics) with its memory
 * plan, and the global poolings that turn the last activations into vectors.
 *
 * The forward pass is written once, as walk(). sx_encoder_new runs it in
 * planning mode, where every step only records how many floats each buffer
 * role needs at most; then it allocates those buffers once. sx_encoder_run
 * walks again for real and allocates nothing.
 *
 * Buffer roles (activations are CNHW, see conv.h):
 *   X   the current activation (block input, and output of identity blocks:
 *       the last conv of the block accumulates onto it in place)
 *   T1  conv1's output
 *   T2  conv2's output in Bottleneck blocks
 *   O   the output of downsampling blocks: the 1x1 downsample conv writes it,
 *       the last conv accumulates onto it; then O and X swap roles. Also the
 *       stem's output before max pooling.
 */
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "siamidx_ext.h"
#include "nn/encoder.h"
#include "nn/model.h"
#include "nn/conv.h"
#include "nn/winograd.h"
#include "nn/stem.h"
#include "nn/gemm.h"
#include "base/error.h"
#include "base/threads.h"

enum { BUF_X, BUF_T1, BUF_T2, BUF_O, N_BUFS };

int openblas_get_num_threads(void);

struct siamidx_encoder { /* sx_encoder inside the library */
    const siamidx_model *model;
    int max_batch, h, w;
    int planning; /* 1 while sx_encoder_new sizes the buffers */
    float *buf[N_BUFS];
    size_t cap[N_BUFS];
    int role[N_BUFS]; /* role -> index into buf (X and O swap) */
    float *col;
    size_t col_cap;
    float *pooled; /* [max_batch][feat_dim], for logits */
    float *mirror;        /* flip_view models: the batch mirrored, [max_batch][3][h][w] */
    float *mirror_embed;  /* and its unnormalised embeddings, [max_batch][max dim] */
};

/* ---- output sizes ------------------------------------------------------- */

static siamidx_pool resolve_pool(const siamidx_model *m, siamidx_pool pool) {
    return pool == SIAMIDX_POOL_DEFAULT ? m->pool : pool;
}

static size_t style_dim(const siamidx_model *m) {
    size_t d = 0;
    for (int s = 0; s < m->n_stages; s++)
        if (m->style_stages & (1u << s)) d += 2 * (size_t)m->stage_channels[s];
    return d;
}

size_t sx_output_dim(const siamidx_model *model, sx_encoder_output what, siamidx_pool pool) {
    switch (what) {
    case SX_OUT_POOLED: return (size_t)model->feat_dim;
    case SX_OUT_LOGITS: return model->fc_w ? (size_t)model->n_classes : 0;
    case SX_OUT_EMBEDDING:
    case SX_OUT_FEATURES: break;
    }
    switch (resolve_pool(model, pool)) {
    case SIAMIDX_POOL_STYLE: return style_dim(model);
    case SIAMIDX_POOL_AVG:
    case SIAMIDX_POOL_MAX:
    case SIAMIDX_POOL_GEM: return (size_t)model->feat_dim;
    default: return 0;
    }
}

/* ---- pooling -------------------------------------------------------------- */

/* Max pooling 3x3, stride 2, padding 1; padding never wins (as -inf). */
static void maxpool_3x3s2(const float *in, int planes, int h, int w, float *out, int ho, int wo) {
#pragma omp parallel for num_threads(sx_threads()) schedule(static)
    for (int p = 0; p < planes; p++) {
        const float *src = in + (size_t)p * h * w;
        float *dst = out + (size_t)p * ho * wo;
        for (int oy = 0; oy < ho; oy++) {
            int y0 = oy * 2 - 1, y1 = y0 + 3;
            if (y0 < 0) y0 = 0;
            if (y1 > h) y1 = h;
            for (int ox = 0; ox < wo; ox++) {
                int x0 = ox * 2 - 1, x1 = x0 + 3;
                if (x0 < 0) x0 = 0;
                if (x1 > w) x1 = w;
                float m = -INFINITY;
                for (int y = y0; y < y1; y++)
                    for (int x = x0; x < x1; x++)
                        if (src[(size_t)y * w + x] > m) m = src[(size_t)y * w + x];
                dst[(size_t)oy * wo + ox] = m;
            }
        }
    }
}

/* Reduces each (channel, image) plane of a CNHW activation: encoder.h. */
void sx_pool_planes(const float *act, int channels, int n, size_t hw, siamidx_pool kind,
                    float gem_p, float *out, size_t ld, size_t off) {
#pragma omp parallel for num_threads(sx_threads()) schedule(static)
    for (int c = 0; c < channels; c++) {
        for (int i = 0; i < n; i++) {
            const float *v = act + ((size_t)c * n + i) * hw;
            float *o = out + (size_t)i * ld + off + c;
            if (kind == SIAMIDX_POOL_MAX) {
                float m = -INFINITY;
                for (size_t t = 0; t < hw; t++) m = v[t] > m ? v[t] : m;
                *o = m;
            } else if (kind == SIAMIDX_POOL_GEM) {
                double s = 0;
                for (size_t t = 0; t < hw; t++) {
                    float x = v[t] > 1e-6f ? v[t] : 1e-6f;
                    s += gem_p == 3.0f ? (double)x * x * x : pow(x, gem_p);
                }
                *o = (float)pow(s / hw, 1.0 / gem_p);
            } else if (kind == SIAMIDX_POOL_STYLE) {
                double s = 0, ss = 0;
                for (size_t t = 0; t < hw; t++) s += v[t];
                double mean = s / hw;
                for (size_t t = 0; t < hw; t++) ss += (v[t] - mean) * (v[t] - mean);
                o[0] = (float)mean;
                o[channels] = (float)sqrt(ss / hw);
            } else {
                double s = 0;
                for (size_t t = 0; t < hw; t++) s += v[t];
                *o = (float)(s / hw);
            }
        }
    }
}

static void l2_normalise_rows(float *out, int n, size_t dim) {
    for (int i = 0; i < n; i++) {
        float *v = out + (size_t)i * dim;
        double s = 0;
        for (size_t t = 0; t < dim; t++) s += (double)v[t] * v[t];
        double norm = sqrt(s);
        float scale = (float)(1.0 / (norm > 1e-12 ? norm : 1e-12));
        for (size_t t = 0; t < dim; t++) v[t] *= scale;
    }
}

/* ---- the walk --------------------------------------------------------------- */

static float *role_buf(sx_encoder *e, int role) { return e->buf[e->role[role]]; }

static void need(sx_encoder *e, int role, size_t floats) {
    size_t *cap = &e->cap[e->role[role]];
    if (floats > *cap) *cap = floats;
}

/* A stem with packed weights (the AVX2 and AVX-512 paths) runs as
 * nn/stem.c's direct convolution, not as a GEMM. */
static int conv_is_stem(const sx_conv *c) {
    return c->packed && sx_stem_applies(c, sx_gemm_kernel_path(c->gemm));
}

/* One convolution from role `src` to role `dst`; h, w become the output's. */
static void conv_step(sx_encoder *e, const sx_conv *c, const float *src_data, int in_nchw,
                      int src, int dst, int n, int *h, int *w, int relu, int accumulate) {
    int ho, wo;
    sx_conv_out_size(c, *h, *w, &ho, &wo);
    if (e->planning) {
        /* col serves either path (a smaller batch may take the other one) */
        size_t col = sx_conv_col_floats(c, n, *h, *w);
        size_t wino = sx_winograd_applies(c, n, *h, *w) ? sx_winograd_workspace_floats(c, n, *h, *w) : 0;
        if (wino > col) col = wino;
        if (conv_is_stem(c) && sx_stem_work_floats(c, *w) > col) col = sx_stem_work_floats(c, *w);
        if (col > e->col_cap) e->col_cap = col;
        need(e, dst, (size_t)c->cout * n * ho * wo);
    } else {
        const float *in = src_data ? src_data : role_buf(e, src);
        /* Winograd only where the OpenMP threads run its (m+2)^2 small GEMMs
         * themselves, on the conv's kernel or on a single-threaded OpenBLAS:
         * as that many threaded OpenBLAS calls it measured slower than
         * im2col on the loaded 2-core target (resnet18, batch 1). */
        if (!in_nchw && (c->gemm || openblas_get_num_threads() == 1) &&
            sx_winograd_applies(c, n, *h, *w) && sx_model_winograd_ready(e->model, c))
            sx_winograd_run(c, in, n, *h, *w, e->col, NULL, role_buf(e, dst), relu, accumulate);
        else if (conv_is_stem(c))
            sx_stem_run(c, sx_gemm_kernel_path(c->gemm), in, in_nchw, n, *h, *w, e->col,
                        role_buf(e, dst), relu, accumulate);
        else
            sx_conv_run(c, in, in_nchw, n, *h, *w, e->col, role_buf(e, dst), relu, accumulate);
    }
    *h = ho;
    *w = wo;
}

static void block_step(sx_encoder *e, const sx_block *b, int bottleneck, int n, int *h, int *w) {
    int h1 = *h, w1 = *w, hd = *h, wd = *w;
    int out = b->has_down ? BUF_O : BUF_X;
    if (b->has_down) conv_step(e, &b->down, NULL, 0, BUF_X, BUF_O, n, &hd, &wd, 0, 0);
    conv_step(e, &b->c1, NULL, 0, BUF_X, BUF_T1, n, &h1, &w1, 1, 0);
    if (bottleneck) {
        conv_step(e, &b->c2, NULL, 0, BUF_T1, BUF_T2, n, &h1, &w1, 1, 0);
        conv_step(e, &b->c3, NULL, 0, BUF_T2, out, n, &h1, &w1, 1, 1);
    } else {
        conv_step(e, &b->c2, NULL, 0, BUF_T1, out, n, &h1, &w1, 1, 1);
    }
    if (b->has_down) {
        int t = e->role[BUF_X];
        e->role[BUF_X] = e->role[BUF_O];
        e->role[BUF_O] = t;
    }
    *h = h1;
    *w = w1;
}

/*
 * The network on x [n,3,h,w]. When `style` is not NULL, the mean and std of
 * every stage named in the model's style_stages go to style[img * ld + ...].
 * Leaves the last activation in role X and its size in *ch, *fh, *fw.
 */
static void walk(sx_encoder *e, const float *x, int n, float *style, size_t ld, int *ch, int *fh,
                 int *fw) {
    const siamidx_model *m = e->model;
    for (int i = 0; i < N_BUFS; i++) e->role[i] = i;
    int h = e->h, w = e->w;
    /* The stem's output is the largest activation of all, as large as the
     * blocks' outputs that O holds anyway: it goes to O, not to T1. */
    conv_step(e, &m->stem, x, 1, -1, BUF_O, n, &h, &w, 1, 0);
    int ph = (h + 2 - 3) / 2 + 1, pw = (w + 2 - 3) / 2 + 1;
    if (e->planning)
        need(e, BUF_X, (size_t)m->stem.cout * n * ph * pw);
    else
        maxpool_3x3s2(role_buf(e, BUF_O), m->stem.cout * n, h, w, role_buf(e, BUF_X), ph, pw);
    h = ph;
    w = pw;
    int channels = m->stem.cout;
    size_t style_off = 0;
    for (int i = 0; i < m->n_blocks; i++) {
        const sx_block *b = &m->blocks[i];
        block_step(e, b, m->bottleneck, n, &h, &w);
        channels = m->bottleneck ? b->c3.cout : b->c2.cout;
        int stage_end = i + 1 == m->n_blocks || m->blocks[i + 1].stage != b->stage;
        if (style && stage_end && (m->style_stages & (1u << (b->stage - 1)))) {
            sx_pool_planes(role_buf(e, BUF_X), channels, n, (size_t)h * w, SIAMIDX_POOL_STYLE, 0,
                        style, ld, style_off);
            style_off += 2 * (size_t)channels;
        }
    }
    *ch = channels;
    *fh = h;
    *fw = w;
}

/* ---- public (internal) API ---------------------------------------------------- */

void sx_encoder_free(sx_encoder *enc) {
    if (!enc) return;
    for (int i = 0; i < N_BUFS; i++) free(enc->buf[i]);
    free(enc->col);
    free(enc->pooled);
    free(enc->mirror);
    free(enc->mirror_embed);
    free(enc);
}

static float *alloc_floats(size_t n) {
    if (n == 0) n = 1;
    if (n > SIZE_MAX / sizeof(float)) return NULL;
    /* 64-byte alignment: whole cache lines and AVX-512 loads. */
    size_t bytes = (n * sizeof(float) + 63) & ~(size_t)63;
    return aligned_alloc(64, bytes);
}

siamidx_status sx_encoder_new(const siamidx_model *model, int max_batch, int h, int w,
                              sx_encoder **out, siamidx_error *err) {
    *out = NULL;
    if (!model || max_batch < 1 || h < 1 || w < 1)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT,
                       "encoder: invalid batch %d or input size %dx%d", max_batch, w, h);
    sx_encoder *e = calloc(1, sizeof *e);
    if (!e) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "encoder: out of memory");
    e->model = model;
    e->max_batch = max_batch;
    e->h = h;
    e->w = w;
    e->planning = 1;
    int ch, fh, fw;
    walk(e, NULL, max_batch, NULL, 0, &ch, &fh, &fw);
    e->planning = 0;
    int ok = 1;
    for (int i = 0; i < N_BUFS; i++) ok &= (e->buf[i] = alloc_floats(e->cap[i])) != NULL;
    ok &= (e->col = alloc_floats(e->col_cap)) != NULL;
    ok &= (e->pooled = alloc_floats((size_t)max_batch * model->feat_dim)) != NULL;
    if (model->flip_view) {
        size_t dim = style_dim(model) > (size_t)model->feat_dim ? style_dim(model)
                                                                : (size_t)model->feat_dim;
        ok &= (e->mirror = alloc_floats((size_t)max_batch * 3 * h * w)) != NULL;
        ok &= (e->mirror_embed = alloc_floats((size_t)max_batch * dim)) != NULL;
    }
    if (!ok) {
        size_t total = e->col_cap;
        for (int i = 0; i < N_BUFS; i++) total += e->cap[i];
        sx_encoder_free(e);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY,
                       "encoder: cannot allocate %zu MB of activations for batch %d at %dx%d",
                       total * sizeof(float) >> 20, max_batch, w, h);
    }
    *out = e;
    return SIAMIDX_OK;
}

/* The pooled features of x [n,3,h,w] per `pool`, before the L2 normalisation. */
static void embed_unnormalised(sx_encoder *e, const float *x, int n, siamidx_pool pool,
                               size_t dim, float *out) {
    int style = pool == SIAMIDX_POOL_STYLE;
    int ch, fh, fw;
    walk(e, x, n, style ? out : NULL, dim, &ch, &fh, &fw);
    if (!style)
        sx_pool_planes(role_buf(e, BUF_X), ch, n, (size_t)fh * fw, pool, e->model->gem_p, out, dim,
                    0);
}

/* Every row of every plane of x [n,3,h,w] reversed: the horizontal mirror image, the
 * one test view a flip_view model adds (the encoder trained on random mirrors). */
static void mirror_batch(const float *x, int n, int h, int w, float *out) {
    size_t rows = (size_t)n * 3 * h;
    for (size_t r = 0; r < rows; r++) {
        const float *src = x + r * w;
        float *dst = out + r * w;
        for (int i = 0; i < w; i++) dst[i] = src[w - 1 - i];
    }
}

siamidx_status sx_encoder_run(sx_encoder *enc, const float *x, int n, sx_encoder_output what,
                              siamidx_pool pool, float *out, siamidx_error *err) {
    const siamidx_model *m = enc->model;
    if (n < 1 || n > enc->max_batch)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "encoder: batch of %d (planned for 1..%d)",
                       n, enc->max_batch);
    if (what == SX_OUT_LOGITS && !m->fc_w)
        return sx_fail(err, SIAMIDX_ERR_UNSUPPORTED, "model %s has no fc layer: no logits",
                       m->path ? m->path : m->arch);
    pool = resolve_pool(m, pool);
    size_t dim = sx_output_dim(m, what, pool);
    if (dim == 0)
        return sx_fail(err, SIAMIDX_ERR_UNSUPPORTED,
                       "pooling %d gives no features for model %s (style stages 0x%x)", (int)pool,
                       m->path ? m->path : m->arch, m->style_stages);
    if (what == SX_OUT_EMBEDDING || what == SX_OUT_FEATURES) {
        embed_unnormalised(enc, x, n, pool, dim, out);
        if (what == SX_OUT_FEATURES) return SIAMIDX_OK;
        if (m->flip_view) {
            mirror_batch(x, n, enc->h, enc->w, enc->mirror);
            embed_unnormalised(enc, enc->mirror, n, pool, dim, enc->mirror_embed);
            for (size_t i = 0; i < (size_t)n * dim; i++)
                out[i] = 0.5f * (out[i] + enc->mirror_embed[i]);
        }
        l2_normalise_rows(out, n, dim);
        return SIAMIDX_OK;
    }
    int ch, fh, fw;
    walk(enc, x, n, NULL, dim, &ch, &fh, &fw);
    const float *act = role_buf(enc, BUF_X);
    size_t hw = (size_t)fh * fw;
    if (what == SX_OUT_POOLED) {
        sx_pool_planes(act, ch, n, hw, SIAMIDX_POOL_AVG, 0, out, dim, 0);
    } else if (what == SX_OUT_LOGITS) {
        sx_pool_planes(act, ch, n, hw, SIAMIDX_POOL_AVG, 0, enc->pooled, (size_t)ch, 0);
        for (int i = 0; i < n; i++) memcpy(out + (size_t)i * dim, m->fc_b, dim * sizeof *out);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, m->n_classes, ch, 1.0f,
                    enc->pooled, ch, m->fc_w, ch, 1.0f, out, (int)dim);
    }
    return SIAMIDX_OK;
}

/* ---- siamidx_ext.h: the encoder at a fixed batch ------------------------------------- */

static sx_encoder_output encoder_output(siamidx_output output) {
    return output == SIAMIDX_OUTPUT_LOGITS ? SX_OUT_LOGITS : SX_OUT_POOLED;
}

size_t siamidx_model_output_dim(const siamidx_model *model, siamidx_output output) {
    return model ? sx_output_dim(model, encoder_output(output), SIAMIDX_POOL_DEFAULT) : 0;
}

siamidx_status siamidx_encoder_new(const siamidx_model *model, int max_batch, int h, int w,
                                   siamidx_encoder **out, siamidx_error *err) {
    if (!model || !out || max_batch < 1 || h < 1 || w < 1)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "encoder: bad arguments");
    return sx_encoder_new(model, max_batch, h, w, out, err);
}

void siamidx_encoder_free(siamidx_encoder *enc) { sx_encoder_free(enc); }

siamidx_status siamidx_encoder_run(siamidx_encoder *enc, const float *x, int n,
                                   siamidx_output output, float *out, siamidx_error *err) {
    if (!enc || !x || !out || n < 1)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "encoder: bad arguments");
    return sx_encoder_run(enc, x, n, encoder_output(output), SIAMIDX_POOL_DEFAULT, out, err);
}

/*
 * preprocess.c - torchvision's eval transform, computed in C.
 *
 *   Resize(resize_size)        shorter side to resize_size, PIL bilinear
 *   CenterCrop(input_size)     torchvision's offsets (Python's round)
 *   ToTensor + Normalize       (v / 255 - mean) / std, CHW float
 *
 * The resize reproduces Pillow's resampler (Resample.c) exactly: a triangle
 * filter whose support grows with the downscale factor, weights quantised to
 * 22-bit fixed point, a horizontal pass then a vertical pass, each rounded and
 * clipped to uint8. Any deviation from PIL would shift every embedding
 * slightly, so this file follows its arithmetic step by step.
 *
 * Only the pixels that survive the crop are computed: a 4000 x 3000 photo is
 * resized to 341 x 256, of which 224 x 224 are kept. Each output pixel depends
 * only on its own filter taps, so skipping the others changes nothing. The
 * vertical pass is accumulated row by row as horizontal rows are produced
 * (integer sums do not depend on order), so no intermediate image is stored.
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "image/preprocess.h"
#include "base/error.h"

/*
 * Pillow's coefficients are computed with separate multiplies and adds; a fused
 * multiply-add (which -mfma lets gcc substitute) rounds differently and can
 * move a filter weight or a tap boundary by one step.
 */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#define PRECISION_BITS (32 - 8 - 2) /* Pillow's fixed point for 8-bit images */

/* The filter taps of one axis, for outputs first .. first + n - 1. */
typedef struct taps {
    int n;
    int *start;      /* first input index used by each output */
    int *count;      /* number of inputs it uses */
    size_t *offset;  /* where its weights begin in `weight` */
    int32_t *weight; /* fixed-point weights, PRECISION_BITS fractional bits */
} taps;

static void taps_free(taps *t) {
    free(t->start);
    free(t->count);
    free(t->offset);
    free(t->weight);
    memset(t, 0, sizeof *t);
}

static double bilinear_filter(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* Pillow's precompute_coeffs: the input span [xmin, xmin + count) of output xx. */
static void tap_span(int in_size, double scale, double support, int xx, double *center,
                     int *xmin, int *count) {
    *center = (xx + 0.5) * scale;
    int lo = (int)(*center - support + 0.5);
    int hi = (int)(*center + support + 0.5);
    if (lo < 0) lo = 0;
    if (hi > in_size) hi = in_size;
    *xmin = lo;
    *count = hi - lo;
}

/* Pillow's normalize_coeffs_8bpc: round half away from zero. */
static int32_t fixed_weight(double w) {
    return (int32_t)(w < 0 ? -0.5 + w * (1 << PRECISION_BITS) : 0.5 + w * (1 << PRECISION_BITS));
}

static siamidx_status taps_build(int in_size, int out_size, int first, int n, taps *t,
                                 siamidx_error *err) {
    double scale = (double)in_size / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * filterscale; /* the bilinear filter's support is 1 */
    double center;
    memset(t, 0, sizeof *t);
    t->n = n;
    t->start = malloc(sizeof(int) * (size_t)n);
    t->count = malloc(sizeof(int) * (size_t)n);
    t->offset = malloc(sizeof(size_t) * (size_t)n);
    if (!t->start || !t->count || !t->offset) goto oom;

    size_t total = 0;
    int widest = 0;
    for (int i = 0; i < n; i++) {
        tap_span(in_size, scale, support, first + i, &center, &t->start[i], &t->count[i]);
        t->offset[i] = total;
        total += (size_t)t->count[i];
        if (t->count[i] > widest) widest = t->count[i];
    }
    t->weight = malloc(sizeof(int32_t) * (total ? total : 1));
    double *w = malloc(sizeof(double) * (size_t)(widest ? widest : 1));
    if (!t->weight || !w) {
        free(w);
        goto oom;
    }
    for (int i = 0; i < n; i++) {
        int xmin, count;
        tap_span(in_size, scale, support, first + i, &center, &xmin, &count);
        double sum = 0.0, ss = 1.0 / filterscale; /* Pillow multiplies by the reciprocal */
        for (int x = 0; x < count; x++) {
            w[x] = bilinear_filter((x + xmin - center + 0.5) * ss);
            sum += w[x];
        }
        for (int x = 0; x < count; x++)
            t->weight[t->offset[i] + x] = fixed_weight(sum != 0.0 ? w[x] / sum : w[x]);
    }
    free(w);
    return SIAMIDX_OK;
oom:
    taps_free(t);
    return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "out of memory preparing the resize filter");
}

static uint8_t clip8(int32_t v) {
    if (v >= (1 << PRECISION_BITS << 8)) return 255;
    if (v <= 0) return 0;
    return (uint8_t)(v >> PRECISION_BITS);
}

/* One source row through the horizontal filter: tx->n RGB pixels. */
static void resample_row(const uint8_t *src, const taps *tx, uint8_t *dst) {
    for (int i = 0; i < tx->n; i++) {
        const uint8_t *p = src + (size_t)tx->start[i] * 3;
        const int32_t *k = tx->weight + tx->offset[i];
        int32_t r = 1 << (PRECISION_BITS - 1), g = r, b = r;
        for (int x = 0; x < tx->count[i]; x++, p += 3) {
            r += p[0] * k[x];
            g += p[1] * k[x];
            b += p[2] * k[x];
        }
        dst[i * 3 + 0] = clip8(r);
        dst[i * 3 + 1] = clip8(g);
        dst[i * 3 + 2] = clip8(b);
    }
}

/*
 * torchvision's CenterCrop offset: int(round((size - crop) / 2.0)), Python's
 * round halving to even; negative when the crop is larger than the image,
 * which torchvision pads with zeros, (crop - size) // 2 on the left/top.
 */
static int crop_offset(int size, int crop) {
    if (crop > size) return -((crop - size) / 2);
    int d = size - crop, half = d / 2;
    if (d % 2 && half % 2) half++; /* x.5 rounds to the even neighbour */
    return half;
}

/* torchvision's Resize(int): shorter side to `size`, the other int(size * long / short). */
static siamidx_status resized_size(int w, int h, const sx_preprocess_cfg *cfg, int *rw, int *rh,
                                   siamidx_error *err) {
    if (cfg->policy == SX_RESIZE_SQUASH) {
        *rw = *rh = cfg->input_size;
        return SIAMIDX_OK;
    }
    int shorter = w <= h ? w : h, longer = w <= h ? h : w;
    double other = (double)((int64_t)cfg->resize_size * longer) / shorter;
    if (other >= INT_MAX)
        return sx_fail(err, SIAMIDX_ERR_IMAGE, "image of %dx%d has too extreme an aspect ratio", w,
                       h);
    if (w <= h) {
        *rw = cfg->resize_size;
        *rh = (int)other;
    } else {
        *rw = (int)other;
        *rh = cfg->resize_size;
    }
    return SIAMIDX_OK;
}

static siamidx_status check_args(const uint8_t *rgb, int width, int height, size_t stride,
                                 const sx_preprocess_cfg *cfg, const float *out,
                                 siamidx_error *err) {
    if (!rgb || !cfg || !out)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "preprocess: missing image or output");
    if (width < 1 || height < 1)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "preprocess: empty image (%dx%d)",
                       width, height);
    if (stride < (size_t)width * 3)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT,
                       "preprocess: row stride %zu is shorter than %d RGB pixels", stride, width);
    if (cfg->input_size < 1 || cfg->input_size > 16384 ||
        (cfg->policy == SX_RESIZE_SHORTER_CROP && (cfg->resize_size < 1 || cfg->resize_size > 65536)))
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT,
                       "preprocess: unusable sizes (input %d, resize %d)", cfg->input_size,
                       cfg->resize_size);
    for (int c = 0; c < 3; c++)
        if (!(cfg->std[c] != 0.0f) || !isfinite(cfg->std[c]) || !isfinite(cfg->mean[c]))
            return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT,
                           "preprocess: bad normalisation for channel %d (mean %g, std %g)", c,
                           cfg->mean[c], cfg->std[c]);
    return SIAMIDX_OK;
}

siamidx_status sx_preprocess(const uint8_t *rgb, int width, int height, size_t stride,
                             const sx_preprocess_cfg *cfg, float *out_chw, siamidx_error *err) {
    siamidx_status s = check_args(rgb, width, height, stride, cfg, out_chw, err);
    if (s != SIAMIDX_OK) return s;
    int rw = 0, rh = 0;
    s = resized_size(width, height, cfg, &rw, &rh, err);
    if (s != SIAMIDX_OK) return s;

    /* ToTensor + Normalize as a table: torch computes (float(v) / 255 - mean) / std. */
    float lut[3][256];
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) lut[c][v] = ((float)v / 255.0f - cfg->mean[c]) / cfg->std[c];

    const int side = cfg->input_size;
    const size_t plane = (size_t)side * side;
    int left = crop_offset(rw, side), top = crop_offset(rh, side);
    /* The part of the resized image inside the crop; the rest is padding. */
    int c0 = left > 0 ? left : 0, c1 = left + side < rw ? left + side : rw;
    int r0 = top > 0 ? top : 0, r1 = top + side < rh ? top + side : rh;
    for (int c = 0; c < 3; c++)
        for (size_t i = 0; i < plane; i++) out_chw[c * plane + i] = lut[c][0];
    if (c1 <= c0 || r1 <= r0) return SIAMIDX_OK;

    taps tx, ty;
    s = taps_build(width, rw, c0, c1 - c0, &tx, err);
    if (s != SIAMIDX_OK) return s;
    s = taps_build(height, rh, r0, r1 - r0, &ty, err);
    if (s != SIAMIDX_OK) {
        taps_free(&tx);
        return s;
    }
    const int nx = tx.n, ny = ty.n;
    const size_t row_len = (size_t)nx * 3;
    int32_t *acc = malloc(sizeof(int32_t) * row_len * (size_t)ny);
    uint8_t *hrow = malloc(row_len);
    if (!acc || !hrow) {
        free(acc);
        free(hrow);
        taps_free(&tx);
        taps_free(&ty);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "out of memory resizing a %dx%d image", width,
                       height);
    }
    for (size_t i = 0; i < row_len * (size_t)ny; i++) acc[i] = 1 << (PRECISION_BITS - 1);

    /* Source rows in order; each feeds the (contiguous) output rows whose taps cover it. */
    int y_begin = ty.start[0], y_end = ty.start[ny - 1] + ty.count[ny - 1];
    int r_lo = 0;
    for (int y = y_begin; y < y_end; y++) {
        while (r_lo < ny && ty.start[r_lo] + ty.count[r_lo] <= y) r_lo++;
        if (r_lo == ny || ty.start[r_lo] > y) continue;
        resample_row(rgb + (size_t)y * stride, &tx, hrow);
        for (int r = r_lo; r < ny && ty.start[r] <= y; r++) {
            int32_t k = ty.weight[ty.offset[r] + (size_t)(y - ty.start[r])];
            int32_t *a = acc + (size_t)r * row_len;
            for (size_t i = 0; i < row_len; i++) a[i] += hrow[i] * k;
        }
    }

    for (int r = 0; r < ny; r++) {
        size_t oy = (size_t)(r + r0 - top) * side;
        const int32_t *a = acc + (size_t)r * row_len;
        for (int i = 0; i < nx; i++) {
            size_t o = oy + (size_t)(i + c0 - left);
            for (int c = 0; c < 3; c++) out_chw[c * plane + o] = lut[c][clip8(a[i * 3 + c])];
        }
    }
    free(acc);
    free(hrow);
    taps_free(&tx);
    taps_free(&ty);
    return SIAMIDX_OK;
}

/*
 * The same Pillow bilinear resampler, uint8 RGB to uint8 RGB at any size
 * (the trainer's cache and augmentation): a horizontal pass into a
 * height x out_w image, then the vertical pass, each rounded and clipped as
 * Pillow does.
 */
siamidx_status sx_resize_rgb(const uint8_t *rgb, int width, int height, size_t stride,
                             int out_w, int out_h, uint8_t *out, siamidx_error *err) {
    if (!rgb || !out || width < 1 || height < 1 || out_w < 1 || out_h < 1 ||
        stride < (size_t)width * 3)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "resize: bad sizes (%dx%d to %dx%d)",
                       width, height, out_w, out_h);
    taps tx, ty;
    siamidx_status s = taps_build(width, out_w, 0, out_w, &tx, err);
    if (s != SIAMIDX_OK) return s;
    if ((s = taps_build(height, out_h, 0, out_h, &ty, err)) != SIAMIDX_OK) {
        taps_free(&tx);
        return s;
    }
    const size_t row_len = (size_t)out_w * 3;
    uint8_t *mid = malloc(row_len * (size_t)height);
    if (!mid) {
        taps_free(&tx);
        taps_free(&ty);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "out of memory resizing a %dx%d image", width,
                       height);
    }
    for (int y = 0; y < height; y++) resample_row(rgb + (size_t)y * stride, &tx, mid + y * row_len);
    for (int r = 0; r < out_h; r++) {
        const int32_t *k = ty.weight + ty.offset[r];
        const uint8_t *src = mid + (size_t)ty.start[r] * row_len;
        uint8_t *dst = out + (size_t)r * row_len;
        for (size_t i = 0; i < row_len; i++) {
            int32_t acc = 1 << (PRECISION_BITS - 1);
            for (int y = 0; y < ty.count[r]; y++) acc += src[(size_t)y * row_len + i] * k[y];
            dst[i] = clip8(acc);
        }
    }
    free(mid);
    taps_free(&tx);
    taps_free(&ty);
    return SIAMIDX_OK;
}

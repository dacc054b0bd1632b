/*
 * train_augment.c - processing-invariance augmentation (see train_augment.h).
 *
 * Every draw comes from sx_tr_hash(key, tag, slot, 0) with key the batch's
 * (seed, epoch, step) hash, so a resumed run augments exactly as the
 * interrupted one would have.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/train_augment.h"
#include "train/train_net.h" /* sx_tr_hash */
#include "image/jpeg_write.h"
#include "image/preprocess.h"
#include "base/error.h"

int sx_tr_augment_active(const sx_tr_augment *a) {
    return a && (a->p_squash > 0 || a->p_downup > 0 || a->p_posterize > 0 || a->p_jpeg > 0);
}

void sx_tr_augment_describe(const sx_tr_augment *a, char *out, size_t cap) {
    if (!sx_tr_augment_active(a)) {
        snprintf(out, cap, "none");
        return;
    }
    snprintf(out, cap, "squash %g, downup %g, posterize %g, jpeg %g", a->p_squash, a->p_downup,
             a->p_posterize, a->p_jpeg);
}

/* Replaces im's pixels by a resize to w x h. */
static siamidx_status resize_in_place(sx_image *im, int w, int h, siamidx_error *err) {
    if (w < 1) w = 1;
    if (h < 1) h = 1;
    if (w == im->width && h == im->height) return SIAMIDX_OK;
    uint8_t *dst = malloc((size_t)w * h * 3);
    if (!dst) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "augment: out of memory");
    siamidx_status s =
        sx_resize_rgb(im->rgb, im->width, im->height, (size_t)im->width * 3, w, h, dst, err);
    if (s) {
        free(dst);
        return s;
    }
    sx_image_free(im);
    im->rgb = dst;
    im->width = w;
    im->height = h;
    return SIAMIDX_OK;
}

siamidx_status sx_tr_squash(sx_image *im, double aspect, siamidx_error *err) {
    double r = sqrt(aspect);
    return resize_in_place(im, (int)lround(im->width * r), (int)lround(im->height / r), err);
}

siamidx_status sx_tr_down_up(sx_image *im, double factor, siamidx_error *err) {
    int w = im->width, h = im->height;
    siamidx_status s =
        resize_in_place(im, (int)lround(w * factor), (int)lround(h * factor), err);
    return s ? s : resize_in_place(im, w, h, err);
}

void sx_tr_posterize(sx_image *im, int bits) {
    const int levels = 1 << bits;
    uint8_t lut[256];
    for (int v = 0; v < 256; v++) {
        int q = v * levels / 256; /* 0 .. levels-1, equal bins */
        lut[v] = (uint8_t)((q * 255 + (levels - 1) / 2) / (levels - 1));
    }
    size_t n = (size_t)im->width * im->height * 3;
    for (size_t i = 0; i < n; i++) im->rgb[i] = lut[im->rgb[i]];
}

siamidx_status sx_tr_jpeg(sx_image *im, int quality, siamidx_error *err) {
    uint8_t *data;
    size_t len;
    siamidx_status s = sx_jpeg_encode(im, quality, &data, &len, err);
    if (s) return s;
    sx_image back;
    s = sx_image_decode(data, len, 0, &back, err);
    free(data);
    if (s) return s;
    sx_image_free(im);
    *im = back;
    return SIAMIDX_OK;
}

static double draw(uint64_t key, uint64_t tag, int slot) {
    return (sx_tr_hash(key, tag, (uint64_t)slot, 0) >> 11) * (1.0 / 9007199254740992.0);
}

/* Tags of the draws: whether transform t fires (FIRE + t), and its parameter (PARAM + t). */
enum { FIRE = 0xA90, PARAM = 0xB90 };

static siamidx_status copy_image(const sx_image *src, sx_image *out, siamidx_error *err) {
    size_t n = (size_t)src->width * src->height * 3;
    out->rgb = malloc(n);
    if (!out->rgb) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "augment: out of memory");
    memcpy(out->rgb, src->rgb, n);
    out->width = src->width;
    out->height = src->height;
    return SIAMIDX_OK;
}

siamidx_status sx_tr_augment_apply(const sx_tr_augment *a, const sx_image *src, uint64_t key,
                                   int slot, sx_image *out, siamidx_error *err) {
    memset(out, 0, sizeof *out);
    const float p[4] = {a->p_squash, a->p_downup, a->p_posterize, a->p_jpeg};
    int fire[4], any = 0;
    for (int t = 0; t < 4; t++) any |= fire[t] = p[t] > 0 && draw(key, FIRE + t, slot) < p[t];
    if (!any) return SIAMIDX_OK;
    siamidx_status s = copy_image(src, out, err);
    double u[4];
    for (int t = 0; t < 4; t++) u[t] = draw(key, PARAM + t, slot);
    if (!s && fire[0]) /* log-uniform: squashing and stretching equally likely */
        s = sx_tr_squash(out, exp(log(SX_TR_SQUASH_MIN) * (2 * u[0] - 1)), err);
    if (!s && fire[1])
        s = sx_tr_down_up(out, SX_TR_DOWNUP_MIN + (SX_TR_DOWNUP_MAX - SX_TR_DOWNUP_MIN) * u[1],
                          err);
    if (!s && fire[2]) {
        int span = SX_TR_POSTERIZE_MAX_BITS - SX_TR_POSTERIZE_MIN_BITS + 1;
        sx_tr_posterize(out, SX_TR_POSTERIZE_MIN_BITS + (int)(u[2] * span));
    }
    if (!s && fire[3]) {
        int span = SX_TR_JPEG_MAX_QUALITY - SX_TR_JPEG_MIN_QUALITY + 1;
        s = sx_tr_jpeg(out, SX_TR_JPEG_MIN_QUALITY + (int)(u[3] * span), err);
    }
    if (s) sx_image_free(out);
    return s;
}

/*
 * train_augment.h - processing-invariance augmentation for the encoder
 * trainer (issue 10 section 3).
 *
 * The dev data's sources differ by processing (posterized small images,
 * squashed clean ones, JPEG generations), and a network can learn those
 * artifacts instead of style. Each transform imitates one of them; none
 * rescales the painting globally (brushwork scale is the signal).
 */
#ifndef SIAMIDX_TRAIN_AUGMENT_H
#define SIAMIDX_TRAIN_AUGMENT_H

#include <stdint.h>

#include "siamidx.h"
#include "image/image.h"

/* The probability of each transform per training sample (0: off). */
typedef struct sx_tr_augment {
    float p_squash, p_downup, p_posterize, p_jpeg;
} sx_tr_augment;

/* `--augment processing`: every transform at this probability. */
#define SX_TR_AUGMENT_PROCESSING_P 0.3f

/* The ranges the transforms draw from. */
#define SX_TR_SQUASH_MIN 0.75   /* aspect factor, log-uniform in [min, 1/min] */
#define SX_TR_DOWNUP_MIN 0.4    /* downscale factor, uniform */
#define SX_TR_DOWNUP_MAX 0.9
#define SX_TR_POSTERIZE_MIN_BITS 2
#define SX_TR_POSTERIZE_MAX_BITS 6
#define SX_TR_JPEG_MIN_QUALITY 30
#define SX_TR_JPEG_MAX_QUALITY 95

int sx_tr_augment_active(const sx_tr_augment *a);
/* "squash 0.3, downup 0.3, posterize 0.3, jpeg 0.3" or "none" (metadata). */
void sx_tr_augment_describe(const sx_tr_augment *a, char *out, size_t cap);

/*
 * The transforms, in place (im->rgb is replaced when the size changes):
 *  - squash: width * sqrt(aspect), height / sqrt(aspect) (area kept, so the
 *    scale on average too), with the project's resampler;
 *  - down_up: to factor x the size and back, which blurs as a small source
 *    enlarged by its publisher does;
 *  - posterize: `bits` bits per channel, 2^bits levels spread over 0..255
 *    (a level q is shown as round(q * 255 / (2^bits - 1)), so the image does
 *    not darken as a plain bit mask would);
 *  - jpeg: a baseline JPEG at `quality` (stb_image_write), decoded again.
 */
siamidx_status sx_tr_squash(sx_image *im, double aspect, siamidx_error *err);
siamidx_status sx_tr_down_up(sx_image *im, double factor, siamidx_error *err);
void sx_tr_posterize(sx_image *im, int bits);
siamidx_status sx_tr_jpeg(sx_image *im, int quality, siamidx_error *err);

/*
 * Draws which transforms apply and their parameters from (key, slot), the
 * batch's counter-based randomness, and applies them in the order a
 * publisher would (squash, down-up, posterize, JPEG) to a copy of src in
 * *out. With nothing drawn, *out is left empty (out->rgb NULL): use src.
 */
siamidx_status sx_tr_augment_apply(const sx_tr_augment *a, const sx_image *src, uint64_t key,
                                   int slot, sx_image *out, siamidx_error *err);

#endif

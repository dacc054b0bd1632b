/*
 * fuzz_image.c - image decoding from memory, then the preprocessing path.
 *
 * Internal functions used (module headers; image.c, preprocess.c):
 *   sx_image_decode, sx_image_free, sx_preprocess, sx_preprocess_cfg
 *
 * Every input is decoded with a pixel limit (as `siamidx embed --max-pixels`
 * does), and what decodes goes through three preprocessing configurations:
 * the default model's (shorter side 256, centre crop 224), a squash to an odd
 * size, and a crop larger than the resized image (the zero-padding path).
 * Oracles: the sanitizers, the limit (a decoded image never exceeds it), and
 * finite outputs in the range the normalisation allows.
 */
#include <math.h>

#include "fuzz_util.h"
#include "image/image.h"
#include "image/preprocess.h"

/* 4 Mi pixels = 12 MiB of RGB: large enough for every format's paths, small
   enough that libFuzzer's RSS limit never trips on a legitimate image. */
#define FUZZ_MAX_PIXELS (1u << 22)

static void preprocess_one(const sx_image *img, int input, int resize, sx_resize_policy policy) {
    sx_preprocess_cfg cfg = {input, resize, policy, {0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}};
    size_t n = (size_t)3 * input * input;
    float *out = malloc(n * sizeof *out);
    if (!out) abort();
    siamidx_error err;
    siamidx_status s = sx_preprocess(img->rgb, img->width, img->height, (size_t)img->width * 3,
                                     &cfg, out, &err);
    if (s == SIAMIDX_OK) {
        /* (v / 255 - mean) / std lies in [-mean/std, (1 - mean)/std] per channel. */
        for (int c = 0; c < 3; c++) {
            float lo = -cfg.mean[c] / cfg.std[c] - 1e-4f, hi = (1 - cfg.mean[c]) / cfg.std[c] + 1e-4f;
            for (size_t i = 0; i < n / 3; i++) {
                float v = out[(size_t)c * (n / 3) + i];
                FUZZ_CHECK(isfinite(v) && v >= lo && v <= hi, "channel %d value %g out of [%g, %g]",
                           c, v, lo, hi);
            }
        }
    } else {
        FUZZ_CHECK(s == SIAMIDX_ERR_IMAGE, "preprocess %dx%d: status %d: %s", img->width,
                   img->height, s, err.message);
    }
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sx_image img;
    siamidx_error err;
    siamidx_status s = sx_image_decode(data, size, FUZZ_MAX_PIXELS, &img, &err);
    fx_say("decode", s, err.message);
    if (s != SIAMIDX_OK) {
        FUZZ_CHECK(s == SIAMIDX_ERR_IMAGE || s == SIAMIDX_ERR_IMAGE_TOO_LARGE, "status %d: %s", s,
                   err.message);
        FUZZ_CHECK(img.rgb == NULL && err.message[0], "failure without message or with pixels");
        return 0;
    }
    FUZZ_CHECK(img.width > 0 && img.height > 0 && img.rgb, "empty image decoded");
    FUZZ_CHECK((uint64_t)img.width * img.height <= FUZZ_MAX_PIXELS, "%dx%d over the limit",
               img.width, img.height);
    /* Touch every byte: a short buffer shows up under ASan here. */
    unsigned sum = 0;
    for (size_t i = 0; i < (size_t)img.width * img.height * 3; i++) sum += img.rgb[i];
    (void)sum;
    preprocess_one(&img, 224, 256, SX_RESIZE_SHORTER_CROP);
    preprocess_one(&img, 17, 17, SX_RESIZE_SQUASH);
    preprocess_one(&img, 40, 9, SX_RESIZE_SHORTER_CROP);
    sx_image_free(&img);
    return 0;
}

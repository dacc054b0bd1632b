/*
 * thumbnail.c - a small JPEG of an image file, for reports that inline their
 * pictures (siamidx query/pair --html): decoded as the encoder decodes it
 * (pixel limit, EXIF orientation), shrunk with the preprocessing resampler
 * to fit a square of max_side, never enlarged, encoded with stb_image_write.
 */
#include <stdlib.h>

#include "siamidx_ext.h"
#include "base/error.h"
#include "image/image.h"
#include "image/thumbnail.h"
#include "image/jpeg_write.h"
#include "image/preprocess.h"

siamidx_status siamidx_image_thumbnail_jpeg(const char *path, int max_side, int quality,
                                            void **jpeg, size_t *len, int *width, int *height,
                                            siamidx_error *err) {
    if (!path || !jpeg || !len || max_side < 1 || quality < 1 || quality > 100)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "thumbnail: bad argument");
    *jpeg = NULL;
    *len = 0;
    sx_image im;
    siamidx_status st = sx_image_load(path, 0, &im, err);
    if (st) return st;
    int w = im.width, h = im.height;
    if (w > max_side || h > max_side) {
        /* the longer side to max_side, the shorter one in proportion (at least 1) */
        if (w >= h) h = (int)((double)h * max_side / w + 0.5), w = max_side;
        else w = (int)((double)w * max_side / h + 0.5), h = max_side;
        if (h < 1) h = 1;
        if (w < 1) w = 1;
        sx_image small = {w, h, malloc((size_t)w * (size_t)h * 3)};
        if (!small.rgb) st = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "thumbnail: out of memory");
        if (!st)
            st = sx_resize_rgb(im.rgb, im.width, im.height, (size_t)im.width * 3, w, h, small.rgb,
                               err);
        sx_image_free(&im);
        im = small;
    }
    uint8_t *out = NULL;
    if (!st) st = sx_jpeg_encode(&im, quality, &out, len, err);
    sx_image_free(&im);
    if (st) return st;
    *jpeg = out;
    if (width) *width = w;
    if (height) *height = h;
    return SIAMIDX_OK;
}

/* image/image.h - decoding with stb_image (limits, EXIF orientation). */
#ifndef SX_IMAGE_IMAGE_H
#define SX_IMAGE_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "siamidx.h"

typedef struct sx_image {
    int width, height;
    uint8_t *rgb; /* width * height * 3, rows packed */
} sx_image;

/*
 * Decodes JPEG/PNG/BMP/GIF(first frame)/TGA to 8-bit RGB. Grayscale is
 * expanded, alpha dropped (as PIL's convert('RGB')), 16-bit reduced, JPEG EXIF
 * orientation applied. Images with more than max_pixels pixels (0: default)
 * are refused from their header, before any pixel is decoded.
 */
siamidx_status sx_image_load(const char *path, uint64_t max_pixels, sx_image *out,
                             siamidx_error *err);
siamidx_status sx_image_decode(const uint8_t *data, size_t len, uint64_t max_pixels,
                               sx_image *out, siamidx_error *err);
void sx_image_free(sx_image *img);

#endif /* SX_IMAGE_IMAGE_H */

/* image/jpeg_write.h - baseline JPEG encoding (stb_image_write), for the trainer's augmentation and report thumbnails. */
#ifndef SX_IMAGE_JPEG_WRITE_H
#define SX_IMAGE_JPEG_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "siamidx.h"
#include "image/image.h"

/* im as a baseline JPEG at `quality` (1..100) in *out (malloc'ed). */
siamidx_status sx_jpeg_encode(const sx_image *im, int quality, uint8_t **out, size_t *len,
                              siamidx_error *err);

#endif

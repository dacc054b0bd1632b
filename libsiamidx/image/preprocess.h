/* image/preprocess.h - antialiased resize, crop, normalisation. */
#ifndef SX_IMAGE_PREPROCESS_H
#define SX_IMAGE_PREPROCESS_H

#include <stddef.h>
#include <stdint.h>

#include "siamidx.h"

typedef enum sx_resize_policy {
    SX_RESIZE_SHORTER_CROP = 0, /* torchvision eval: Resize(resize) + CenterCrop(input) */
    SX_RESIZE_SQUASH            /* resize straight to input x input, aspect not kept */
} sx_resize_policy;

typedef struct sx_preprocess_cfg {
    int input_size;  /* side of the square network input */
    int resize_size; /* shorter side after resize (SHORTER_CROP) */
    sx_resize_policy policy;
    float mean[3], std[3];
} sx_preprocess_cfg;


/*
 * Resizes (antialiased, as PIL's bilinear resize that torchvision uses),
 * crops and normalises an RGB image into a CHW float tensor of
 * 3 * input_size * input_size values.
 */
siamidx_status sx_preprocess(const uint8_t *rgb, int width, int height, size_t stride,
                             const sx_preprocess_cfg *cfg, float *out_chw, siamidx_error *err);
/* The same resampler, uint8 RGB (rows of `stride` bytes) to out_w x out_h
 * packed uint8 RGB. */
siamidx_status sx_resize_rgb(const uint8_t *rgb, int width, int height, size_t stride,
                             int out_w, int out_h, uint8_t *out, siamidx_error *err);

#endif /* SX_IMAGE_PREPROCESS_H */

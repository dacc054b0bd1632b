/*
 * internal.h - what the library's files share with each other.
 *
 * One concept per file:
 *   error.c        status strings, sx_fail()
 *   sha256.c       SHA-256 (content hashes, model fingerprints)
 *   safetensors.c  safetensors parsing (mmap, header JSON, dtype conversion)
 *   model.c        siamidx_model: metadata, tensor checks, BatchNorm folding
 *   image.c        decoding with stb_image (limits, EXIF orientation)
 *   preprocess.c   antialiased resize, crop, normalisation
 *   conv.c         convolution as GEMM (im2col + OpenBLAS sgemm)
 *   encoder.c      the ResNet forward pass with its memory plan, pooling
 *   embed.c        public embedding entry points (files, buffers, tensors)
 */
#ifndef SIAMIDX_INTERNAL_H
#define SIAMIDX_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "siamidx.h"

#if defined(__GNUC__)
#define SX_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define SX_PRINTF(fmt, args)
#endif

/* ---- error.c ------------------------------------------------------------ */

/* Fills `err` (if not NULL) with status and a formatted message; returns status. */
siamidx_status sx_fail(siamidx_error *err, siamidx_status status, const char *fmt, ...)
    SX_PRINTF(3, 4);
/* Prefixes an existing message: "prefix: old message". */
void sx_error_prefix(siamidx_error *err, const char *fmt, ...) SX_PRINTF(2, 3);
void sx_error_clear(siamidx_error *err);

/* ---- sha256.c ----------------------------------------------------------- */

typedef struct sx_sha256 {
    uint32_t state[8];
    uint64_t bytes;
    uint8_t block[64];
    size_t used;
} sx_sha256;

void sx_sha256_init(sx_sha256 *h);
void sx_sha256_update(sx_sha256 *h, const void *data, size_t len);
void sx_sha256_final(sx_sha256 *h, uint8_t digest[32]);
/* Writes 64 lowercase hex characters and a NUL. */
void sx_hex(const uint8_t *bytes, size_t n, char *out);

/* ---- safetensors.c ------------------------------------------------------ */

typedef enum sx_dtype { SX_F32 = 0, SX_F16, SX_BF16 } sx_dtype;

typedef struct sx_tensor_info {
    char *name;
    sx_dtype dtype;
    int ndim;
    int64_t shape[8];
    uint64_t begin, end; /* byte offsets inside the data section */
} sx_tensor_info;

typedef struct sx_meta_entry {
    char *key;
    char *value;
} sx_meta_entry;

typedef struct sx_safetensors {
    const uint8_t *map; /* whole file, mmap'd read-only */
    size_t map_size;
    size_t data_offset; /* 8 + header length */
    sx_tensor_info *tensors;
    size_t n_tensors;
    sx_meta_entry *meta; /* sorted by key */
    size_t n_meta;
} sx_safetensors;

/* Maps and parses a file; errors name the byte offset or tensor at fault. */
siamidx_status sx_safetensors_open(const char *path, sx_safetensors *st, siamidx_error *err);
void sx_safetensors_close(sx_safetensors *st);
const sx_tensor_info *sx_safetensors_find(const sx_safetensors *st, const char *name);
const char *sx_safetensors_meta(const sx_safetensors *st, const char *key);
int64_t sx_tensor_numel(const sx_tensor_info *t);
/* Converts a tensor's data to fp32 into `out` (numel floats). */
void sx_safetensors_read_f32(const sx_safetensors *st, const sx_tensor_info *t, float *out);
const char *sx_dtype_name(sx_dtype dtype); /* "F32", "F16", "BF16" */
size_t sx_dtype_size(sx_dtype dtype);

/* Half-precision conversions (round to nearest even, as numpy/PyTorch). */
float sx_f16_to_f32(uint16_t h);
float sx_bf16_to_f32(uint16_t h);
uint16_t sx_f32_to_f16(float f);
uint16_t sx_f32_to_bf16(float f);

/* One tensor to write: fp32 values, stored as the writer's `store_as`. */
typedef struct sx_tensor_out {
    const char *name;
    const float *data;
    int ndim;
    int64_t shape[8];
} sx_tensor_out;

/*
 * Writes a safetensors file atomically (temporary file, fsync, rename): the
 * header holds `__metadata__` (keys sorted) then the tensors in the order
 * given, data contiguous, header padded with spaces to a multiple of 8.
 * tools/convert_torchvision.py writes byte-identical files.
 */
siamidx_status sx_safetensors_write(const char *path, const sx_meta_entry *meta, size_t n_meta,
                                    const sx_tensor_out *tensors, size_t n, sx_dtype store_as,
                                    siamidx_error *err);

/* ---- model.c ------------------------------------------------------------ */

/* A convolution with BatchNorm folded in: y = W * x + b. */
typedef struct sx_conv {
    int cin, cout, k, stride, pad; /* square kernels only (ResNets use 7, 3, 1) */
    float *w;                      /* [cout][cin * k * k] */
    float *b;                      /* [cout] */
} sx_conv;

typedef struct sx_block {
    sx_conv c1, c2, c3; /* c3 only in Bottleneck blocks */
    sx_conv down;       /* valid when has_down */
    int has_down;
    int stage; /* 1..4 */
} sx_block;

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

typedef struct sx_head sx_head; /* Siamese head (head issue); may be NULL */

struct siamidx_model {
    char *path;
    char *arch;     /* "resnet18" ... "resnet152" */
    int bottleneck; /* 1 for resnet50/101/152 */
    int n_stages;   /* 1..4: how many of layer1..layer4 the model has */
    sx_conv stem;   /* conv1 + bn1 */
    sx_block *blocks;
    int n_blocks;
    int stage_channels[4]; /* output channels of layer1..4 */
    int feat_dim;          /* channels after the last present stage */
    float *fc_w;           /* [n_classes][feat_dim], or NULL */
    float *fc_b;
    int n_classes;
    sx_preprocess_cfg pre;
    siamidx_pool pool; /* default pooling from metadata */
    float gem_p;
    unsigned style_stages; /* bit s-1 set: stage s contributes mean+std */
    sx_meta_entry *meta;   /* copy of __metadata__, sorted by key */
    size_t n_meta;
    sx_head *head; /* default head stored in the model file, or NULL */
    char fingerprint[65];
    void *weights;     /* one allocation holding every folded tensor */
    size_t n_params;   /* parameters of the folded encoder (+ fc) */
    int stage_blocks[4]; /* blocks in layer1..4 (first block of stage s: sum of earlier) */
};

/* ---- image.c ------------------------------------------------------------ */

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

/* ---- preprocess.c ------------------------------------------------------- */

/*
 * Resizes (antialiased, as PIL's bilinear resize that torchvision uses),
 * crops and normalises an RGB image into a CHW float tensor of
 * 3 * input_size * input_size values.
 */
siamidx_status sx_preprocess(const uint8_t *rgb, int width, int height, size_t stride,
                             const sx_preprocess_cfg *cfg, float *out_chw, siamidx_error *err);

/* ---- conv.c ------------------------------------------------------------- */

/*
 * Activations inside the encoder are laid out C x (N*H*W) ("CNHW"), so that a
 * whole batch goes through one GEMM per convolution:
 *   out[cout, N*Ho*Wo] = W[cout, cin*k*k] x col[cin*k*k, N*Ho*Wo]  (+ bias, relu)
 * A 1x1 stride-1 convolution needs no im2col at all.
 *
 * `col` must hold sx_conv_col_floats() floats (0 for 1x1 stride-1).
 */
size_t sx_conv_col_floats(const sx_conv *c, int n, int h, int w);
void sx_conv_out_size(const sx_conv *c, int h, int w, int *ho, int *wo);
void sx_conv_forward(const sx_conv *c, const float *in, int n, int h, int w, float *col,
                     float *out, int relu);

/* ---- encoder.c ---------------------------------------------------------- */

typedef enum sx_encoder_output {
    SX_OUT_EMBEDDING = 0, /* pooled per `pool`, L2-normalised */
    SX_OUT_POOLED,        /* raw global average pool [n, feat_dim] */
    SX_OUT_LOGITS         /* fc output [n, n_classes] */
} sx_encoder_output;

/*
 * A workspace for running `model` on up to max_batch images of h x w: every
 * activation buffer is planned and allocated once, here.
 */
typedef struct sx_encoder sx_encoder;
siamidx_status sx_encoder_new(const siamidx_model *model, int max_batch, int h, int w,
                              sx_encoder **out, siamidx_error *err);
void sx_encoder_free(sx_encoder *enc);
/* x: [n, 3, h, w] NCHW with n <= max_batch. */
siamidx_status sx_encoder_run(sx_encoder *enc, const float *x, int n, sx_encoder_output what,
                              siamidx_pool pool, float *out, siamidx_error *err);
/* Number of floats one image produces for `what` / `pool`. */
size_t sx_output_dim(const siamidx_model *model, sx_encoder_output what, siamidx_pool pool);

#endif /* SIAMIDX_INTERNAL_H */

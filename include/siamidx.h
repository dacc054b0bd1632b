/*
 * siamidx.h - the public contract of libsiamidx.
 *
 * siamidx tells whether two paintings are by the same artist, and which
 * indexed artists most likely painted a given picture:
 *
 *   model    a ResNet encoder (safetensors file) that turns an image into an
 *            L2-normalised embedding;
 *   index    a directory holding an LMDB store (the source of truth) and a
 *            FAISS snapshot (derived, rebuilt from LMDB whenever needed);
 *   head     a Siamese scorer P(same artist | a, b).
 *
 * Conventions
 *   - Every handle is opaque. Whatever a *_new / *_load / *_open returns is
 *     released by the matching *_free / *_close; passing NULL to those is a
 *     no-op.
 *   - Every fallible function returns a siamidx_status. When `err` is not
 *     NULL it receives the status and a one-line, human readable message
 *     naming the file, tensor or byte offset at fault. There is no global
 *     error state: messages live in the caller's siamidx_error.
 *   - A loaded model is immutable: any number of threads may embed with the
 *     same model at once. An index opened read-only may be queried from many
 *     threads at once. Writes to an index are serialised by the index itself
 *     (one writer process at a time, see siamidx_index_open).
 *   - Embeddings are float32, L2-normalised, of siamidx_model_dim() values.
 */
#ifndef SIAMIDX_H
#define SIAMIDX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SIAMIDX_VERSION_MAJOR 0
#define SIAMIDX_VERSION_MINOR 1
#define SIAMIDX_VERSION_PATCH 0
#define SIAMIDX_VERSION_STRING "0.1.0"

/* ------------------------------------------------------------------------ */
/* Status codes                                                              */
/* ------------------------------------------------------------------------ */

typedef enum siamidx_status {
    SIAMIDX_OK = 0,
    SIAMIDX_ERR_INVALID_ARGUMENT, /* the caller passed something unusable */
    SIAMIDX_ERR_NO_MEMORY,
    SIAMIDX_ERR_IO,               /* a file could not be opened/read/written */
    SIAMIDX_ERR_MODEL_FORMAT,     /* model file malformed, truncated, or missing tensors */
    SIAMIDX_ERR_IMAGE,            /* an image could not be decoded */
    SIAMIDX_ERR_IMAGE_TOO_LARGE,  /* refused before decoding: over the pixel limit */
    SIAMIDX_ERR_UNSUPPORTED,      /* valid request this build/model cannot serve */
    SIAMIDX_ERR_MODEL_MISMATCH,   /* index built with another model */
    SIAMIDX_ERR_INDEX_LOCKED,     /* another process is writing the index */
    SIAMIDX_ERR_INDEX_CORRUPT,    /* the index store is damaged or foreign */
    SIAMIDX_ERR_NOT_FOUND,        /* no such index / image / artist */
    SIAMIDX_ERR_NO_HEAD,          /* no trained Siamese head available */
    SIAMIDX_ERR_CSV,              /* a collection or pairs CSV is malformed */
    SIAMIDX_ERR_BACKEND,          /* LMDB or FAISS reported an error */
    SIAMIDX_ERR_INTERRUPTED,      /* stopped by the caller (e.g. a signal) */
    SIAMIDX_STATUS_COUNT
} siamidx_status;

#define SIAMIDX_ERROR_MESSAGE_MAX 512

typedef struct siamidx_error {
    siamidx_status status;
    char message[SIAMIDX_ERROR_MESSAGE_MAX];
} siamidx_error;

/* A short, static description of a status code ("image could not be decoded"). */
const char *siamidx_strerror(siamidx_status status);

/* ------------------------------------------------------------------------ */
/* Model                                                                     */
/* ------------------------------------------------------------------------ */

typedef struct siamidx_model siamidx_model;

typedef enum siamidx_pool {
    SIAMIDX_POOL_DEFAULT = 0, /* whatever the model's metadata names */
    SIAMIDX_POOL_AVG,         /* global average pooling (torchvision's avgpool) */
    SIAMIDX_POOL_MAX,         /* global max pooling */
    SIAMIDX_POOL_GEM,         /* generalised mean, p from metadata (default 3) */
    SIAMIDX_POOL_STYLE        /* per-channel mean and std of the metadata's stages */
} siamidx_pool;

/* Parses "avg", "max", "gem", "style" (or "default"); returns -1 if unknown. */
int siamidx_pool_from_name(const char *name);
const char *siamidx_pool_name(siamidx_pool pool);

/*
 * Loads a model file (safetensors, fp32/fp16/bf16) and folds BatchNorm into
 * the convolutions. Refuses, naming the tensor or byte offset, a file that
 * is truncated, has bad JSON, lacks a tensor or has a tensor of the wrong shape.
 */
siamidx_status siamidx_model_load(const char *path, siamidx_model **out, siamidx_error *err);
void siamidx_model_free(siamidx_model *model);

/* The value of a `__metadata__` key, or NULL. The string lives as long as the model. */
const char *siamidx_model_meta(const siamidx_model *model, const char *key);
/* Number of metadata entries and the i-th key (sorted), for listing. */
size_t siamidx_model_meta_count(const siamidx_model *model);
const char *siamidx_model_meta_key(const siamidx_model *model, size_t i);

const char *siamidx_model_arch(const siamidx_model *model);
int siamidx_model_input_size(const siamidx_model *model);
/* Embedding dimension for a pooling choice (SIAMIDX_POOL_DEFAULT: the model's). */
size_t siamidx_model_dim(const siamidx_model *model, siamidx_pool pool);
siamidx_pool siamidx_model_default_pool(const siamidx_model *model);
/* Number of classes of the model's fc layer, 0 when it has none. */
int siamidx_model_num_classes(const siamidx_model *model);
/*
 * Hex SHA-256 over the weights and the preprocessing metadata: two models
 * with the same fingerprint produce the same embeddings.
 */
const char *siamidx_model_fingerprint(const siamidx_model *model);

/* Where the installed default model lives (compiled in; may not exist). */
const char *siamidx_default_model_path(void);

/* ------------------------------------------------------------------------ */
/* Embedding                                                                 */
/* ------------------------------------------------------------------------ */

#define SIAMIDX_DEFAULT_MAX_PIXELS 100000000ull

typedef struct siamidx_embed_options {
    siamidx_pool pool;   /* SIAMIDX_POOL_DEFAULT: the model's choice */
    uint64_t max_pixels; /* images with more pixels are refused before decoding; 0: default */
    int batch;           /* images per forward pass; 0: default (16) */
} siamidx_embed_options;

void siamidx_embed_options_init(siamidx_embed_options *opt);

/*
 * Sets how many threads the compute kernels use (0: all cores). This is
 * process-wide because OpenBLAS's thread pool is; call it once at start-up.
 */
void siamidx_set_threads(int threads);

/* Embeds one image file. `out` receives siamidx_model_dim(model, opt->pool) floats. */
siamidx_status siamidx_embed_file(const siamidx_model *model, const char *path,
                                  const siamidx_embed_options *opt, float *out,
                                  siamidx_error *err);

/* Embeds an 8-bit RGB buffer (rows of `stride` bytes, 3 bytes per pixel). */
siamidx_status siamidx_embed_rgb(const siamidx_model *model, const uint8_t *rgb, int width,
                                 int height, size_t stride, const siamidx_embed_options *opt,
                                 float *out, siamidx_error *err);

/*
 * Embeds many files in batches. out: n * dim floats in argument order.
 * status[i] / errors[i] (either may be NULL) report each file; a file that
 * fails leaves its row zeroed and does not stop the others. Returns
 * SIAMIDX_OK when every file embedded, SIAMIDX_ERR_IMAGE when some failed,
 * or another status when nothing could be done (errors go to `err`).
 */
siamidx_status siamidx_embed_files(const siamidx_model *model, const char *const *paths, size_t n,
                                   const siamidx_embed_options *opt, float *out,
                                   siamidx_status *status, siamidx_error *errors,
                                   siamidx_error *err);

typedef enum siamidx_output {
    SIAMIDX_OUTPUT_POOLED = 0, /* torchvision avgpool output, flattened, not normalised */
    SIAMIDX_OUTPUT_LOGITS      /* fc output (model must have fc) */
} siamidx_output;

/*
 * Runs the network on an already preprocessed float32 tensor [n, 3, h, w]
 * (NCHW). out: n * (channels or classes) floats.
 */
siamidx_status siamidx_forward_tensor(const siamidx_model *model, const float *x, int n, int h,
                                      int w, siamidx_output output, float *out,
                                      siamidx_error *err);

/* ------------------------------------------------------------------------ */
/* Index                                                                     */
/* ------------------------------------------------------------------------ */
/* (declared by the index issue) */

/* ------------------------------------------------------------------------ */
/* Siamese head and answers                                                  */
/* ------------------------------------------------------------------------ */
/* (declared by the head issue) */

#ifdef __cplusplus
}
#endif

#endif /* SIAMIDX_H */

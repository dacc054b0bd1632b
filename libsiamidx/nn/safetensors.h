/* nn/safetensors.h - safetensors parsing and writing (mmap, header JSON, dtype conversion). */
#ifndef SX_NN_SAFETENSORS_H
#define SX_NN_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "siamidx.h"

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
    const void *raw;   /* when set: these bytes, already in raw_dtype, instead of data */
    sx_dtype raw_dtype; /* (copies keep a tensor's bytes and dtype whatever store_as) */
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

#endif /* SX_NN_SAFETENSORS_H */

/* npy.h - reading and writing float32 NumPy .npy files (format versions 1-3). */
#ifndef SIAMIDX_CLI_NPY_H
#define SIAMIDX_CLI_NPY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define NPY_MAX_DIMS 8

typedef struct npy_array {
    int ndim;
    int64_t shape[NPY_MAX_DIMS];
    float *data; /* C order, product(shape) floats; free() it */
} npy_array;

/*
 * Reads a little-endian float32 ('<f4'), C-ordered array. On failure returns
 * -1 and writes a one-line reason naming the file into `why`.
 */
int npy_read_f32(const char *path, npy_array *out, char *why, size_t why_len);

/* Writes a version 1.0 file holding float32 data of the given shape; -1 on an I/O error. */
int npy_write_f32(FILE *f, const float *data, int ndim, const int64_t *shape);

#endif

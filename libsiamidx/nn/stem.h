/*
 * nn/stem.h - the ResNet stem (7x7, stride 2, pad 3, three input channels)
 * as a direct convolution, for inference and training alike.
 *
 * As a GEMM the stem is narrow (32 or 64 output channels) over a deep
 * im2col (147 rows of the whole batch's output pixels): every im2col element
 * meets only cout multiply-adds, so building and packing it cost more than
 * the arithmetic. The direct form never builds it. Per output row it splits
 * the 21 input rows it reads into even and odd columns (zero-padded), after
 * which each of the 147 taps is a contiguous slice of one of those rows, and
 * the kernel multiplies a block of output channels by slices loaded straight
 * from them (nn/stem.c).
 */
#ifndef SX_NN_STEM_H
#define SX_NN_STEM_H

#include <stddef.h>

#include "nn/conv.h"
#include "nn/cpu.h"

/* Whether c is a stem this file computes (7x7, stride 2, pad 3, cin <= 4)
 * on `path` (AVX2 or AVX-512; the BLAS path keeps im2col + sgemm). */
int sx_stem_applies(const sx_conv *c, sx_cpu_path path);

/* Scratch floats of sx_stem_run for input rows of w pixels: the weights
 * rearranged by tap, and each thread's split rows (64-byte aligned). */
size_t sx_stem_work_floats(const sx_conv *c, int w);

/*
 * out[cout][n*ho*wo] (CNHW) = (accumulate ? out : 0) + W * in + b, ReLU'd
 * if `relu`; b may be NULL. `in` is CNHW [cin][n*h*w], or NCHW when
 * `in_nchw`. Threads over sx_threads() OpenMP threads by output rows.
 */
void sx_stem_run(const sx_conv *c, sx_cpu_path path, const float *in, int in_nchw, int n, int h,
                 int w, float *work, float *out, int relu, int accumulate);

/* Scratch floats of sx_stem_weight_grad (as sx_stem_work_floats). */
size_t sx_stem_weight_grad_floats(const sx_conv *c, int w);

/*
 * dw[cout][cin*49] += dout x im2col(in)^T, never building the im2col: the
 * forward's split rows times each output row's dout, accumulated per thread
 * and lane, summed at the end. `in` CNHW [cin][n*h*w], dout CNHW
 * [cout][n*ho*wo]. Threads over sx_threads() by output rows.
 */
void sx_stem_weight_grad(const sx_conv *c, sx_cpu_path path, const float *in, const float *dout,
                         int n, int h, int w, float *work, float *dw);

#endif /* SX_NN_STEM_H */

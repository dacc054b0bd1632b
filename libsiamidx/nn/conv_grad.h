/*
 * nn/conv_grad.h - the convolution's training side, beside its inference
 * forward (conv.c): the forward without bias (Winograd, the project's GEMM
 * on this step's weights, or im2col + OpenBLAS keeping the batch's im2col),
 * and the backward (weight gradient, col2im for the input gradient).
 *
 * Same layout as conv.h: activations CNHW [channels][n*h*w], weights
 * [cout][cin*k*k]; the sx_conv's w is read, its b is not (a BatchNorm
 * follows every convolution in training).
 */
#ifndef SX_NN_CONV_GRAD_H
#define SX_NN_CONV_GRAD_H

#include <stddef.h>

#include "nn/conv.h"

/* Floats of the whole batch's im2col matrix; 0 for a 1x1 stride-1
 * convolution, whose GEMMs read the activation itself. */
size_t sx_conv_grad_col_floats(const sx_conv *c, int n, int h, int w);

/* Floats of the scratch sx_conv_backward and sx_conv_forward_nobias need
 * (64-byte aligned): the im2col matrix; for a conv marked for Winograd
 * (c->wino_m 2 or 4: 3x3, stride 1, pad 1) the transformed weights and
 * workspace; for one with a GEMM kernel (c->gemm, nn/gemm.h) its packed
 * weights and the kernel's work; whichever is largest. */
size_t sx_conv_grad_scratch_floats(const sx_conv *c, int n, int h, int w);

/* Floats of what the forward can leave in a caller's `kept` buffer for the
 * weight gradient, so that backward need not rebuild it: im2col(in) on the
 * im2col + OpenBLAS path, the transformed input V for Winograd
 * (sx_winograd_kept_floats); 0 (nothing) for 1x1 stride 1 and for a conv
 * with c->gemm off Winograd, whose GEMMs read the input itself. */
size_t sx_conv_grad_kept_floats(const sx_conv *c, int n, int h, int w);

/* out[cout][n*ho*wo] = W x im2col(in). `kept`: NULL, or a buffer of
 * sx_conv_grad_kept_floats that is left holding what backward's `col`
 * takes, when that is not 0 (then returns 1, else 0). `scratch` (sx_conv_grad_scratch_floats floats): for a Winograd
 * conv, this step's transformed weights and the run's workspace; for one
 * with c->gemm, this step's packed weights and the kernel's work (the
 * kernel packs im2col from `in` as it goes, as inference does); else the
 * im2col when none is kept. */
int sx_conv_forward_nobias(const sx_conv *c, const float *in, int n, int h, int w, float *kept,
                           float *scratch, float *out);

/*
 * dW += dout x im2col(in)^T;  din = col2im(W^T x dout) (skipped when din is
 * NULL). `col` is the forward's im2col(in) when the caller kept it, or NULL:
 * then it is rebuilt in `scratch`. scratch (sx_conv_grad_scratch_floats) also
 * holds W^T x dout. When c->wino_m marks the conv for Winograd F(m x m, 3x3)
 * and the batch has tiles enough, both gradients are Winograd's instead
 * (nn/winograd.h; `col` is then the forward's kept V, or NULL): the weight
 * gradient through dU = (A dout A^T) x V^T, the input gradient as the convolution of dout with the
 * mirrored weights, and scratch holds transformed weights and workspace. A
 * stem with c->gemm takes nn/stem.c's weight gradient. The
 * GEMMs split over the OpenMP threads when OpenBLAS runs single-threaded (as
 * training sets it).
 */
void sx_conv_backward(const sx_conv *c, const float *in, const float *col, const float *dout,
                      int n, int h, int w, float *scratch, float *dw, float *din);

#endif /* SX_NN_CONV_GRAD_H */

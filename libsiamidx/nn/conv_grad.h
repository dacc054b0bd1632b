/*
 * nn/conv_grad.h - the convolution's training side, beside its inference
 * forward (conv.c): the forward without bias that keeps the batch's im2col
 * matrix, and the backward (weight gradient, col2im for the input gradient).
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

/* Floats of the scratch sx_conv_backward needs: the im2col matrix, or
 * for a conv marked for Winograd (c->wino_m 2 or 4: 3x3, stride 1, pad 1)
 * the input gradient's transformed weights and workspace, if larger. */
size_t sx_conv_grad_scratch_floats(const sx_conv *c, int n, int h, int w);

/* Whether this batch's forward (and input gradient) take Winograd. */
int sx_conv_grad_winograd(const sx_conv *c, int n, int h, int w);

/* out[cout][n*ho*wo] = W x im2col(in). Returns 1 when col is left holding
 * im2col(in), which backward can reuse; 0 when there is none (1x1 stride 1)
 * or when the conv is marked for Winograd (c->wino_m) and the batch has
 * tiles enough: then col is scratch (sx_conv_grad_scratch_floats floats)
 * for this step's transformed weights and the run's workspace. */
int sx_conv_forward_nobias(const sx_conv *c, const float *in, int n, int h, int w, float *col,
                           float *out);

/*
 * dW += dout x im2col(in)^T;  din = col2im(W^T x dout) (skipped when din is
 * NULL). `col` is the forward's im2col(in) when the caller kept it, or NULL:
 * then it is rebuilt in `scratch`. scratch (sx_conv_grad_scratch_floats) also
 * holds W^T x dout. When c->wino_m marks the conv for Winograd F(m x m, 3x3)
 * and the batch has tiles enough, both gradients are Winograd's instead
 * (nn/winograd.h; col is not read): the weight gradient through dU =
 * (A dout A^T) x V^T, the input gradient as the convolution of dout with the
 * mirrored weights, and scratch holds transformed weights and workspace. The
 * GEMMs split over the OpenMP threads when OpenBLAS runs single-threaded (as
 * training sets it).
 */
void sx_conv_backward(const sx_conv *c, const float *in, const float *col, const float *dout,
                      int n, int h, int w, float *scratch, float *dw, float *din);

#endif /* SX_NN_CONV_GRAD_H */

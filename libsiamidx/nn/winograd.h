/*
 * nn/winograd.h - Winograd F(m x m, 3x3) for the stride-1, pad-1 3x3
 * convolutions of the encoder, on the CNHW layout of conv.h.
 *
 * The output is cut into m x m tiles; each tile's (m+2) x (m+2) input patch d
 * and the kernel g are moved to the Winograd domain, multiplied point by
 * point and moved back:  Y = A^T [ (G g G^T) . (B^T d B) ] A.
 * Summed over input channels, the point-by-point products of all tiles are
 * (m+2)^2 independent GEMMs  M_t[cout x tiles] = U_t[cout x cin] V_t[cin x tiles],
 * 2.25x (m = 2) or 4x (m = 4) fewer multiplies than the direct convolution.
 *
 * The weight transform U = G g G^T is done once, at model load (nn/model.c
 * stores it next to the folded weights: sx_conv.wino); the input transform,
 * GEMMs and output transform (fused with bias, residual and ReLU) run over
 * blocks of tile rows whose transformed buffers fit the workspace that the
 * encoder plans next to conv.c's im2col buffer.
 *
 * SIAMIDX_WINOGRAD in the environment, read at model load: "0" keeps every
 * convolution on im2col + GEMM, "2" or "4" picks F(2x2,3x3) or F(4x4,3x3).
 */
#ifndef SX_NN_WINOGRAD_H
#define SX_NN_WINOGRAD_H

#include <stddef.h>

#include "nn/conv.h"

/* The tile size m a model loaded now should use: 0 (off), 2 or 4. */
int sx_winograd_tile_from_env(void);

/* Floats of transformed weights `c` needs for tile size m; 0 when Winograd
 * does not apply to it (not 3x3, stride 1, pad 1) or m is 0. */
size_t sx_winograd_weight_floats(const sx_conv *c, int m);

/* Transforms c->w into dst (sx_winograd_weight_floats floats) and points
 * c->wino at it: U[(m+2)^2][cout][cin], computed in double. With a kernel
 * (c->gemm) each U[t] is packed for it (sx_gemm_pack_a's panels) and the
 * run's GEMMs go to that kernel; without one U[t] is row-major, for
 * cblas_sgemm. */
void sx_winograd_prepare(sx_conv *c, int m, float *dst);

/* The transformed weights of the convolution that computes c's input
 * gradient (cin and cout swapped, each kernel turned by 180 degrees), from
 * c->w, into dst (sx_winograd_mirrored_weight_floats floats):
 * U'[(m+2)^2][cin][cout], packed for kernel g (the mirrored conv's gemm:
 * its rows are c's cin) or row-major when g is NULL. c is not changed. */
size_t sx_winograd_mirrored_weight_floats(const sx_conv *c, int m,
                                          const struct sx_gemm_kernel *g);
void sx_winograd_prepare_mirrored(const sx_conv *c, int m, const struct sx_gemm_kernel *g,
                                  float *dst);

/* Whether the Winograd path suits this input size (c is marked for a tile
 * size, c->wino_m, and the batch has enough tiles to pay for reading U); the
 * encoder's conv step takes it when the weights are there (c->wino: the
 * model transforms them on first use) and its GEMMs run on c's kernel or on
 * a single-threaded OpenBLAS. */
int sx_winograd_applies(const sx_conv *c, int n, int h, int w);

/* Workspace floats sx_winograd_run needs (0 when c is not marked for it),
 * its kernel's per-thread scratch included; 64-byte aligned. */
size_t sx_winograd_workspace_floats(const sx_conv *c, int n, int h, int w);

/* Floats of one batch's transformed input V (every block's), which training's
 * forward can keep for the weight gradient; 0 when Winograd does not apply. */
size_t sx_winograd_kept_floats(const sx_conv *c, int n, int h, int w);

/* out (+)= conv(in), + bias (none when c->b is NULL), ReLU: the contract of
 * sx_conv_run for a CNHW input, with `ws` holding sx_winograd_workspace_floats
 * floats. `kept`: NULL, or sx_winograd_kept_floats floats left holding V for
 * sx_winograd_weight_grad (V is then built there instead of in ws). */
void sx_winograd_run(const sx_conv *c, const float *in, int n, int h, int w, float *ws,
                     float *kept, float *out, int relu, int accumulate);

/* Training's weight gradient of sx_winograd_run's convolution (tile size
 * c->wino_m): dw[cout][cin][3][3] += dL/dW for the output gradient dout, of
 * the same CNHW shape as the output. `kept`: the forward's V of `in` (its
 * `kept`), or NULL to rebuild V from `in`. ws: sx_winograd_workspace_floats
 * floats; du: sx_winograd_weight_floats(c, c->wino_m) floats of scratch (dL/dU). */
void sx_winograd_weight_grad(const sx_conv *c, const float *in, const float *kept,
                             const float *dout, int n, int h, int w, float *ws, float *du,
                             float *dw);

#endif /* SX_NN_WINOGRAD_H */

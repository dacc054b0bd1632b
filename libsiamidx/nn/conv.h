/* nn/conv.h - convolution as GEMM (nn/gemm.h's kernels, or im2col + OpenBLAS sgemm). */
#ifndef SX_NN_CONV_H
#define SX_NN_CONV_H

#include <stddef.h>
#include <stdint.h>


/* A convolution with BatchNorm folded in: y = W * x + b. */
typedef struct sx_conv {
    int cin, cout, k, stride, pad; /* square kernels only (ResNets use 7, 3, 1) */
    float *w;                      /* [cout][cin * k * k] */
    float *b;                      /* [cout] */
    /* The weights packed for nn/gemm.h's kernel `gemm` (sx_conv_pack), or
       NULL: then the convolution runs as im2col + cblas_sgemm on w. */
    const struct sx_gemm_kernel *gemm;
    const float *packed;
    /* Winograd-domain weights (nn/winograd.h), or NULL: im2col + GEMM only. */
    const float *wino;             /* [(wino_m + 2)^2][cout][cin] */
    int wino_m;                    /* output tile side 2 or 4 when it takes Winograd (c->wino
                                      may come later: nn/model.h); 0: never */
    int wino_slot;                 /* 1 + its place in the model's Winograd list; 0: none */
} sx_conv;

/*
 * Activations inside the encoder are laid out C x (N*H*W) ("CNHW"), so that a
 * whole batch goes through one GEMM per convolution:
 *   out[cout, N*Ho*Wo] = W[cout, cin*k*k] x col[cin*k*k, N*Ho*Wo]  (+ bias, relu)
 * A 1x1 stride-1 convolution needs no im2col at all.
 *
 * `col` must hold sx_conv_col_floats() floats, 64-byte aligned (0 for 1x1
 * stride-1 without packed weights). With packed weights it is the GEMM's
 * scratch (the B blocks that the kernel packs straight from the input).
 */
size_t sx_conv_col_floats(const sx_conv *c, int n, int h, int w);
void sx_conv_out_size(const sx_conv *c, int h, int w, int *ho, int *wo);
/*
 * For kernel column kx over an input row of w pixels: the outputs ox in
 * [*lo, *hi) whose input pixel ox * stride - pad + kx lies inside the row
 * (im2col copies them, col2im adds them back; the rest is padding).
 */
static inline void sx_conv_inside_cols(const sx_conv *c, int kx, int w, int *lo, int *hi) {
    int s = c->stride, off = kx - c->pad;
    *lo = off < 0 ? (-off + s - 1) / s : 0;
    *hi = w - off <= 0 ? 0 : (w - off + s - 1) / s;
}
void sx_conv_forward(const sx_conv *c, const float *in, int n, int h, int w, float *col,
                     float *out, int relu);
/*
 * The general form: `in_nchw` reads the input as [n][cin][h][w] (the network
 * input; not for 1x1 stride-1 convolutions); `accumulate` adds W * x to what
 * `out` already holds (the residual) before the bias and ReLU.
 */
void sx_conv_run(const sx_conv *c, const float *in, int in_nchw, int n, int h, int w, float *col,
                 float *out, int relu, int accumulate);

/*
 * Packing the weights for kernel g (nn/gemm.h): `dst` holds
 * sx_conv_packed_floats(c, g) floats, 64-byte aligned, and must outlive c's
 * use; c->gemm and c->packed then point at them. Packing again after the
 * weights change (training) is the caller's business; an unpacked conv
 * (gemm NULL) always computes from c->w.
 */
size_t sx_conv_packed_floats(const sx_conv *c, const struct sx_gemm_kernel *g);
void sx_conv_pack(sx_conv *c, const struct sx_gemm_kernel *g, float *dst);

/* ==== Exported for training (nn/conv_grad.c) ==================================== */

/*
 * Rows 0..cin*k*k-1 of the im2col matrix of the CNHW input `in` [cin][n*h*w]
 * for output columns [j0, j0 + cols): row r = (ci, ky, kx) goes to
 * col + r * ld. The rows are split over the OpenMP threads.
 */
void sx_conv_im2col(const sx_conv *c, const float *in, int n, int h, int w, size_t j0,
                    size_t cols, float *col, size_t ld);

#endif /* SX_NN_CONV_H */

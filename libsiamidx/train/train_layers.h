/* train/train_layers.h - the layers of encoder training, forward and backward (CNHW activations, see nn/conv.h). */
#ifndef SX_TRAIN_TRAIN_LAYERS_H
#define SX_TRAIN_TRAIN_LAYERS_H

#include <stddef.h>
#include <stdint.h>

#include "nn/arch.h"


#define SX_TR_BN_EPS SX_BN_EPS /* one constant with the fold's */
#define SX_TR_BN_MOMENTUM 0.1

void sx_tr_bn_forward(int c, size_t m, const float *x, const float *gamma, const float *beta,
                      float *run_mean, float *run_var, float *mean, float *invstd, float *y,
                      int relu);
void sx_tr_bn_backward(int c, size_t m, const float *x, const float *dy, const float *gamma,
                       const float *mean, const float *invstd, float *dgamma, float *dbeta,
                       float *dx);
/* dy *= (relu_y > 0) in place (a ReLU's backward), then sx_tr_bn_backward. */
void sx_tr_relu_bn_backward(int c, size_t m, const float *relu_y, float *dy, const float *x,
                            const float *gamma, const float *mean, const float *invstd,
                            float *dgamma, float *dbeta, float *dx);
void sx_tr_relu_forward(float *x, size_t n);
void sx_tr_relu_backward(float *dy, const float *y, size_t n);
void sx_tr_add_forward(const float *a, const float *b, float *out, size_t n, int relu);
void sx_tr_add_into(float *acc, const float *g, size_t n);
void sx_tr_maxpool_forward(int c, int n, int h, int w, int k, int stride, int pad,
                           const float *in, float *out, int32_t *argmax);
void sx_tr_maxpool_backward(int c, int n, int h, int w, int ho, int wo, const int32_t *argmax,
                            const float *dout, float *din);
void sx_tr_avgpool_forward(int c, int n, int hw, const float *in, float *out);
void sx_tr_avgpool_backward(int c, int n, int hw, const float *dout, float *din);
/* The backward of nn's style pooling (sx_pool_planes with SIAMIDX_POOL_STYLE,
 * nn/encoder.h) of [c][n*hw]: writes (or, with accumulate, adds) the
 * gradient from dout, laid out as the features feat that the forward wrote. */
void sx_tr_style_backward(int c, int n, int hw, const float *in, const float *feat,
                          const float *dout, size_t ld, size_t off, float *din, int accumulate);
void sx_tr_linear_forward(int n, int in, int out, const float *x, const float *wt,
                          const float *b, float *y);
void sx_tr_linear_backward(int n, int in, int out, const float *x, const float *wt,
                           const float *dy, float *dw, float *db, float *dx);
double sx_tr_softmax_ce(int n, int k, const float *logits, const int32_t *labels,
                        float smoothing, float *dlogits, int *correct);
/* CosFace logits s * (cos - m [j == y]) on L2-normalised rows of x [n][in]
 * and w [k][in] (labels NULL: no margin); ws keeps what backward needs. */
size_t sx_tr_cosface_ws_floats(int n, int in, int k);
void sx_tr_cosface_forward(int n, int in, int k, const float *x, const float *w,
                           const int32_t *labels, float s, float m, float *ws, float *logits);
/* dx (n x in) written, dw (k x in) accumulated; scratch: k * in floats. */
void sx_tr_cosface_backward(int n, int in, int k, const float *ws, const float *dlogits, float s,
                            float *dw, float *dx, float *scratch);
double sx_tr_siamese_bce(int n, int dim, const float *feat, const int32_t *labels,
                         const float *w, float b, float scale, float *dfeat, float *dw,
                         float *db, int *correct);
/* Supervised contrastive loss over the batch's L2-normalised features at
 * temperature tau (anchors: rows with another row of their label); adds
 * weight * dL/dfeat into dfeat, returns the mean loss. ws:
 * sx_tr_supcon_ws_floats(n, dim). */
size_t sx_tr_supcon_ws_floats(int n, int dim);
double sx_tr_supcon(int n, int dim, const float *feat, const int32_t *labels, float tau,
                    float weight, float *ws, float *dfeat, int *anchors);

#endif /* SX_TRAIN_TRAIN_LAYERS_H */

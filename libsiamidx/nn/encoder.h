/* nn/encoder.h - the ResNet forward pass with its memory plan, pooling. */
#ifndef SX_NN_ENCODER_H
#define SX_NN_ENCODER_H

#include <stddef.h>
#include <stdint.h>

#include "siamidx.h"

typedef enum sx_encoder_output {
    SX_OUT_EMBEDDING = 0, /* pooled per `pool`, L2-normalised */
    SX_OUT_POOLED,        /* raw global average pool [n, feat_dim] */
    SX_OUT_LOGITS,        /* fc output [n, n_classes] */
    SX_OUT_FEATURES       /* pooled per `pool`, one view, not normalised (training's
                             validation: what its classifier sees) */
} sx_encoder_output;

/*
 * A workspace for running `model` on up to max_batch images of h x w: every
 * activation buffer is planned and allocated once, here.
 */
typedef struct siamidx_encoder sx_encoder; /* siamidx_ext.h names it siamidx_encoder */
siamidx_status sx_encoder_new(const siamidx_model *model, int max_batch, int h, int w,
                              sx_encoder **out, siamidx_error *err);
void sx_encoder_free(sx_encoder *enc);
/* x: [n, 3, h, w] NCHW with n <= max_batch. */
siamidx_status sx_encoder_run(sx_encoder *enc, const float *x, int n, sx_encoder_output what,
                              siamidx_pool pool, float *out, siamidx_error *err);
/*
 * Reduces each (channel, image) plane of a CNHW activation act [channels][n][hw]
 * to one value per `kind` (avg, max, GeM with gem_p, style), written to
 * out[img * ld + off + c]. For STYLE, the std follows at
 * out[... + off + channels + c] (population std, as torch.std(unbiased=False)).
 * The encoder's pooling, and training's style features (train/train_net.c).
 */
void sx_pool_planes(const float *act, int channels, int n, size_t hw, siamidx_pool kind,
                    float gem_p, float *out, size_t ld, size_t off);
/* Number of floats one image produces for `what` / `pool`. */
size_t sx_output_dim(const siamidx_model *model, sx_encoder_output what, siamidx_pool pool);

#endif /* SX_NN_ENCODER_H */

/* train/train_net.h - the trainable ResNet: one flat array of parameters, forward, backward. */
#ifndef SX_TRAIN_TRAIN_NET_H
#define SX_TRAIN_TRAIN_NET_H

#include <stddef.h>
#include <stdint.h>

#include "siamidx.h"
#include "train/train_layers.h"
#include "nn/arch.h"
#include "nn/conv.h"
#include "nn/encoder.h"
#include "nn/model.h"

/* The trainable ResNet (train_net.c). Every parameter lives in one flat
 * array (grads and optimizer moments alike); running statistics in another. */
typedef enum sx_tr_kind { SX_TR_DECAY = 0, SX_TR_NO_DECAY, SX_TR_BUFFER } sx_tr_kind;

typedef struct sx_tr_tensor {
    char name[64]; /* torchvision state_dict name */
    int ndim;
    int64_t shape[4];
    size_t numel, off; /* offset into params (or bufs for SX_TR_BUFFER) */
    sx_tr_kind kind;
    int stage; /* 0 stem, 1..4 layerN, 5 fc / heads */
} sx_tr_tensor;

typedef struct sx_tr_unit { /* conv + BatchNorm (+ ReLU): one unit of nn/arch.h's walk */
    sx_conv conv; /* the shape; w points into params only for a call */
    int relu, stage;
    size_t w, gamma, beta, rmean, rvar; /* offsets */
    int h_in, w_in, h_out, w_out;
    float *x, *y;          /* conv output, BN(+ReLU) output: [cout][n*h_out*w_out] */
    float *mean, *invstd;  /* batch statistics kept for backward */
    float *col;            /* the forward's im2col kept for the weight gradient, or NULL */
    sx_conv *folded;       /* this unit in net->infer: conv with the BatchNorm folded in */
} sx_tr_unit;

typedef struct sx_tr_block {
    sx_tr_unit u[3], down;
    int n_units, has_down, stage;
    float *out; /* relu(u[last].y + shortcut) */
} sx_tr_block;

typedef enum sx_tr_objective {
    SX_TR_CLASSIFY = 0, /* softmax cross-entropy over fc logits */
    SX_TR_SIAMESE,      /* pair BCE only */
    SX_TR_BOTH,         /* both */
    SX_TR_COSFACE,      /* cross-entropy over CosFace logits (fc.weight as class centres) */
    SX_TR_SUPCON        /* softmax cross-entropy plus a supervised contrastive term */
} sx_tr_objective;

typedef struct sx_tr_config {
    char arch[16];   /* resnet18 | resnet34 | resnet50 | resnet101 | resnet152 */
    float width;     /* channel multiplier (1 = torchvision) */
    int n_classes;
    int max_batch, input; /* square input side */
    sx_tr_objective objective;
    float siamese_weight; /* weight of the BCE term with SX_TR_BOTH */
    float label_smoothing;
    int freeze_through; /* -1 none, 0 stem, s: stem..layer s fixed */
    float cos_margin, cos_scale; /* SX_TR_COSFACE: m and s */
    float contrast_weight, temperature; /* SX_TR_SUPCON: the term's weight and tau */
    /* The pooled features: 0, the average of layer4; else bit s-1 for each
       stage s whose output's per-channel mean and std are the features (nn's
       style pooling, SIAMIDX_POOL_STYLE), stages in order. */
    unsigned style_stages;
} sx_tr_config;

typedef struct sx_tr_net {
    sx_tr_config cfg;
    const sx_arch *arch;
    sx_arch_widths widths; /* torchvision's times cfg.width */
    int bottleneck, stem_ch, feat_dim; /* feat_dim: layer4's channels */
    int embed_dim;   /* the pooled features' width: feat_dim, or the style statistics' */
    size_t style_off[4]; /* where each style stage's statistics start in a row */
    int stage_blocks[4], stage_ch[4];
    sx_tr_tensor *tensors;
    int n_tensors, cap_tensors;
    float *params, *grads, *bufs;
    size_t n_params, n_bufs;
    sx_tr_unit stem;
    int pool_h, pool_w;
    float *pooled_map;
    int32_t *argmax;
    sx_tr_block *blocks;
    int n_blocks;
    size_t fc_w, fc_b, siam_w, siam_b;
    float *xin, *feat, *dfeat, *logits, *dlogits;
    float *col, *g_a, *g_b, *s1, *s2, *s3;
    float *cos_ws, *cos_scratch; /* SX_TR_COSFACE only */
    float *supcon_ws;            /* SX_TR_SUPCON only */
    /* The inference network: the same units with each BatchNorm folded into
       its conv (sx_bn_fold) from the current parameters, run by nn's
       encoder for sx_tr_net_eval; frozen stages run their folded convs in
       training too. */
    siamidx_model *infer;
    sx_encoder *infer_enc;
    sx_cpu_path cpu; /* the GEMM kernel of the convs that take no Winograd (nn/cpu.h) */
    size_t kept_col_floats; /* sum of the units' kept im2col matrices */
    int last_n; /* batch size of the last forward */
    const int32_t *last_labels;
} sx_tr_net;

typedef struct sx_tr_stats {
    double loss, ce, bce, con; /* con: the supervised contrastive term, unweighted */
    int correct, pair_correct, n, pairs;
} sx_tr_stats;

siamidx_status sx_tr_net_new(const sx_tr_config *cfg, sx_tr_net **out, siamidx_error *err);
void sx_tr_net_free(sx_tr_net *net);
/* Kaiming-normal convs (fan_out), BN 1/0, PyTorch's Linear default; the last
 * BN of each block at 0 when zero_residual. Deterministic from seed. */
void sx_tr_net_init(sx_tr_net *net, uint64_t seed, int zero_residual);
sx_tr_tensor *sx_tr_net_find(sx_tr_net *net, const char *name);
float *sx_tr_tensor_data(sx_tr_net *net, const sx_tr_tensor *t);
/* Training forward + loss (x: [n,3,S,S] NCHW). BN in train mode except in
 * frozen stages. Fills stats; keeps what backward needs. */
void sx_tr_net_forward(sx_tr_net *net, const float *x, int n, const int32_t *labels,
                       sx_tr_stats *stats);
/* Accumulates gradients of the last forward's loss into net->grads. */
void sx_tr_net_backward(sx_tr_net *net);
/* Inference forward (BN running stats): logits [n][classes] and/or pooled
 * features [n][feat_dim] (either may be NULL); n in 1..max_batch. Runs nn's
 * encoder on the parameters folded now (sx_bn_fold), so it always sees the
 * network's current weights (the EMA's too, when the trainer swaps them in). */
siamidx_status sx_tr_net_eval(sx_tr_net *net, const float *x, int n, float *logits, float *feat,
                              siamidx_error *err);
/* Copies tensors of a torchvision-named safetensors file whose names and
 * shapes match (BN-folded conv biases are skipped); reports how many. */
siamidx_status sx_tr_net_load_init(sx_tr_net *net, const char *path, int *loaded,
                                   int *skipped, siamidx_error *err);


/* Counter-based randomness: the same (seed, a, b, c) always gives the same
 * stream, so a resumed run reproduces the interrupted one. */
uint64_t sx_tr_hash(uint64_t seed, uint64_t a, uint64_t b, uint64_t c);

#endif /* SX_TRAIN_TRAIN_NET_H */

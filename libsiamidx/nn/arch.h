/*
 * nn/arch.h - the one ResNet definition: the architecture table, the walk
 * over the network's units (a convolution and its BatchNorm), and folding a
 * unit's BatchNorm into its convolution.
 *
 * Model loading (nn/model.c) and encoder training (train/train_net.c) both
 * build their network by walking these units, so the two can never disagree
 * on a tensor name, a shape, a stride or where a ReLU goes.
 */
#ifndef SX_NN_ARCH_H
#define SX_NN_ARCH_H

#include "nn/conv.h"

#define SX_BN_EPS 1e-5 /* torchvision's BatchNorm2d default */
#define SX_ARCH_NAMES "resnet18, resnet34, resnet50, resnet101 or resnet152"

typedef struct sx_arch {
    const char *name; /* "resnet18" ... "resnet152" */
    int bottleneck;   /* Bottleneck blocks (1x1, 3x3, 1x1, expansion 4), else BasicBlocks (3x3, 3x3) */
    int blocks[4];    /* blocks in layer1..layer4 */
} sx_arch;

/* NULL when `name` is none of SX_ARCH_NAMES. */
const sx_arch *sx_arch_find(const char *name);

/* Channel widths; -1 where not known yet (see sx_arch_walk_learn). */
typedef struct sx_arch_widths {
    int stem;     /* conv1's output channels (torchvision: 64) */
    int inner[4]; /* inside the blocks of layer s+1: conv1's output (64 << s) */
    int out[4];   /* output of layer s+1: inner * 4 for Bottleneck, inner for BasicBlock */
} sx_arch_widths;

/* torchvision's widths times `width` (rounded, at least 1): the trainer's --width. */
void sx_arch_widths_scaled(const sx_arch *a, float width, sx_arch_widths *w);
/* Every width unknown: a reader learns them from a file as it walks. */
void sx_arch_widths_unknown(sx_arch_widths *w);

typedef enum sx_unit_role {
    SX_UNIT_STEM = 0, /* conv1 + bn1, before the max pool */
    SX_UNIT_CONV1,    /* layerS.B.conv1 + bn1 */
    SX_UNIT_CONV2,
    SX_UNIT_CONV3,     /* Bottleneck only */
    SX_UNIT_DOWNSAMPLE /* layerS.B.downsample.0 + .1: the projection shortcut */
} sx_unit_role;

/* One unit of the network, in torchvision's state_dict order. */
typedef struct sx_arch_unit {
    char conv[40], bn[40];         /* tensor prefixes: "layer2.0.conv1", "layer2.0.bn1" */
    int cin, cout, k, stride, pad; /* cout (and cin) -1 while the width is unknown */
    int stage;                     /* 0 the stem, 1..4 layer1..layer4 */
    int block;                     /* index within the stage; -1 for the stem */
    int index;                     /* index of the block in the whole network; -1 for the stem */
    sx_unit_role role;
    int relu;     /* a ReLU follows the BatchNorm directly */
    int residual; /* the block's last conv: after its BatchNorm the shortcut is added, then ReLU */
    int h_in, w_in, h_out, w_out; /* spatial sizes, when the walk was given the input's */
} sx_arch_unit;

/* The state of a walk (fields private to arch.c). */
typedef struct sx_arch_walk {
    const sx_arch *arch;
    int n_stages;
    sx_arch_widths *widths;
    int stage, block, index, step; /* the next unit: stage 0 is the stem */
    int block_cin, block_h, block_w;
    int h, w; /* input size of the next unit */
} sx_arch_walk;

/*
 * Starts a walk over the stem and the first n_stages stages of `a`. Widths
 * are read at every step, so a caller may fill in a width it learns on the
 * way (sx_arch_walk_learn). h, w: the network's input size (0: not needed).
 */
void sx_arch_walk_start(sx_arch_walk *wk, const sx_arch *a, int n_stages, sx_arch_widths *widths,
                        int h, int w);
/* 1 with the next unit in *u, 0 after the last. */
int sx_arch_walk_next(sx_arch_walk *wk, sx_arch_unit *u);
/* For a unit yielded with cout -1: its output channels are `cout` (read from a file). */
void sx_arch_walk_learn(sx_arch_walk *wk, const sx_arch_unit *u, int cout);

/* Output side of the stem's 3x3 / 2 max pool (padding 1). */
int sx_arch_pool_out(int side);

/*
 * BatchNorm folded into the convolution before it, for inference:
 *   y = gamma * (conv_w(x) + b0 - mean) / sqrt(var + eps) + beta
 *     = conv_{w * scale}(x) + (b0 - mean) * scale + beta,  scale = gamma / sqrt(var + eps)
 * computed in double. Writes c->w (from `w`, which may be c->w itself) and
 * c->b; b0 (the conv's own bias) may be NULL. The one fold: model loading
 * and training's inference-mode outputs both use it.
 */
void sx_bn_fold(sx_conv *c, const float *w, const float *b0, const float *gamma,
                const float *beta, const float *mean, const float *var);

#endif /* SX_NN_ARCH_H */

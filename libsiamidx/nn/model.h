/* nn/model.h - siamidx_model: metadata, tensor checks, BatchNorm folding. */
#ifndef SX_NN_MODEL_H
#define SX_NN_MODEL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "siamidx.h"
#include "image/preprocess.h"
#include "nn/arch.h"
#include "nn/conv.h"
#include "nn/cpu.h"
#include "nn/safetensors.h"

typedef struct sx_block {
    sx_conv c1, c2, c3; /* c3 only in Bottleneck blocks */
    sx_conv down;       /* valid when has_down */
    int has_down;
    int stage; /* 1..4 */
} sx_block;

struct siamidx_model {
    char *path;
    char *arch;     /* "resnet18" ... "resnet152" */
    int bottleneck; /* 1 for resnet50/101/152 */
    int n_stages;   /* 1..4: how many of layer1..layer4 the model has */
    sx_conv stem;   /* conv1 + bn1 */
    sx_block *blocks;
    int n_blocks;
    int stage_channels[4]; /* output channels of layer1..4 */
    int feat_dim;          /* channels after the last present stage */
    float *fc_w;           /* [n_classes][feat_dim], or NULL */
    float *fc_b;
    int n_classes;
    sx_preprocess_cfg pre;
    siamidx_pool pool; /* default pooling from metadata */
    float gem_p;
    unsigned style_stages; /* bit s-1 set: stage s contributes mean+std */
    int flip_view;         /* test_views=flip: embeddings average the mirrored image's */
    sx_meta_entry *meta;   /* copy of __metadata__, sorted by key */
    size_t n_meta;
    /* The file's default head (head.* tensors), or NULL. The network knows
       nothing of heads: head/model_head.c loads it with the model (it is the
       lowest layer that knows both) and frees it; nn/ never reads it. */
    struct siamidx_head *head;
    char fingerprint[65];
    void *weights;     /* one allocation holding every folded tensor */
    /* The 3x3 stride-1 convs' Winograd-domain weights, each transformed by
       the first forward pass that takes that conv's Winograd path
       (sx_model_winograd_ready): they are 4x the size of the weights they
       replace, and small maps (layer4 at batch 1) never take it. */
    int wino_tile;           /* 2 or 4 (SIAMIDX_WINOGRAD at load); 0: never */
    int n_wino;              /* convs marked for it at load */
    sx_conv **wino_convs;    /* [n_wino] */
    float **wino_weights;    /* [n_wino]: NULL until made */
    atomic_int *wino_state;  /* [n_wino]: 0 not transformed yet, 1 ready, -1 out of memory */
    pthread_mutex_t wino_lock;
    size_t n_params;   /* parameters of the folded encoder (+ fc) */
    int stage_blocks[4]; /* blocks in layer1..4 (first block of stage s: sum of earlier) */
    sx_cpu_path cpu;   /* the convolutions' kernel, chosen at load (nn/cpu.h) */
    float *packed;     /* one allocation: every conv's weights packed for it, or NULL */
};


/*
 * Builds the encoder of an open model file (`path` for messages and
 * siamidx_model_path). What the public siamidx_model_load does, less the
 * default head (head/model_head.c adds that). Free with sx_model_free.
 */
siamidx_status sx_model_load(const sx_safetensors *st, const char *path, siamidx_model **out,
                             siamidx_error *err);
/* Whether conv c's Winograd weights (c->wino) are there to use, transforming
 * them on the first call; safe to call from several threads at once. 0 when c
 * has none (SIAMIDX_WINOGRAD=0, not 3x3 stride 1, out of memory). */
int sx_model_winograd_ready(const siamidx_model *m, const sx_conv *c);
/* How many convs' Winograd weights have been made so far. */
int sx_model_winograd_made(const siamidx_model *m);
/* Frees the encoder; model->head must have been released (or be NULL). */
void sx_model_free(siamidx_model *model);

/* The convolution of `m` that unit u (nn/arch.h) is; a downsample unit
 * marks its block as having the projection. */
sx_conv *sx_model_unit_conv(siamidx_model *m, const sx_arch_unit *u);
/*
 * A network with no file behind it: all four stages of `arch` at `widths`,
 * every convolution shaped and given room for its weights and bias, which
 * the caller fills (training folds its parameters in with sx_bn_fold to run
 * the encoder in inference mode). Average pooling, no fc. sx_model_free.
 */
siamidx_status sx_model_new_network(const char *arch, const sx_arch_widths *widths,
                                    siamidx_model **out, siamidx_error *err);

#endif /* SX_NN_MODEL_H */

/*
 * train_net.c - the trainable ResNet: parameters, gradients, the activation
 * memory plan, and forward/backward for BasicBlock and Bottleneck.
 *
 * Built in two passes: the first registers every tensor (torchvision names,
 * offsets into one flat parameter array) and sizes every activation; the
 * second allocates everything once. Nothing is allocated per step.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/train_net.h"
#include "train/train_layers.h"
#include "nn/arch.h"
#include "nn/conv.h"
#include "nn/conv_grad.h"
#include "nn/cpu.h"
#include "nn/gemm.h"
#include "nn/winograd.h"
#include "nn/encoder.h"
#include "nn/model.h"
#include "nn/safetensors.h"
#include "base/error.h"

static size_t add_tensor(sx_tr_net *net, const char *name, int ndim, const int64_t *shape,
                         sx_tr_kind kind, int stage) {
    if (net->n_tensors == net->cap_tensors) {
        net->cap_tensors = net->cap_tensors ? 2 * net->cap_tensors : 128;
        net->tensors = realloc(net->tensors, sizeof *net->tensors * net->cap_tensors);
        if (!net->tensors) abort(); /* a few KB: out of memory here is fatal */
    }
    sx_tr_tensor *t = &net->tensors[net->n_tensors++];
    memset(t, 0, sizeof *t);
    size_t len = strlen(name);
    if (len >= sizeof t->name) len = sizeof t->name - 1; /* names are < 40 chars */
    memcpy(t->name, name, len);
    t->name[len] = 0;
    t->ndim = ndim;
    t->numel = 1;
    for (int d = 0; d < ndim; d++) t->shape[d] = shape[d], t->numel *= (size_t)shape[d];
    t->kind = kind;
    t->stage = stage;
    size_t *counter = kind == SX_TR_BUFFER ? &net->n_bufs : &net->n_params;
    t->off = *counter;
    *counter += t->numel;
    return t->off;
}

/* Registers conv `conv`.weight and BatchNorm `bn`.* for the walk's unit u. */
static void plan_unit(sx_tr_net *net, sx_tr_unit *tu, const sx_arch_unit *u) {
    char name[96];
    tu->conv = (sx_conv){.cin = u->cin, .cout = u->cout, .k = u->k, .stride = u->stride, .pad = u->pad};
    /* Winograd where it applies (SIAMIDX_WINOGRAD, as the encoder reads it): nn/conv_grad.h */
    int tile = sx_winograd_tile_from_env();
    if (sx_winograd_weight_floats(&tu->conv, tile)) tu->conv.wino_m = tile;
    /* the others (and Winograd's small batches) on the project's GEMM: nn/conv_grad.h */
    tu->conv.gemm = sx_gemm_kernel_for(net->cpu, u->cout);
    tu->relu = u->relu;
    tu->stage = u->stage;
    tu->h_in = u->h_in;
    tu->w_in = u->w_in;
    tu->h_out = u->h_out;
    tu->w_out = u->w_out;
    int64_t ws[4] = {u->cout, u->cin, u->k, u->k}, cs[1] = {u->cout};
    snprintf(name, sizeof name, "%s.weight", u->conv);
    tu->w = add_tensor(net, name, 4, ws, SX_TR_DECAY, u->stage);
    snprintf(name, sizeof name, "%s.weight", u->bn);
    tu->gamma = add_tensor(net, name, 1, cs, SX_TR_NO_DECAY, u->stage);
    snprintf(name, sizeof name, "%s.bias", u->bn);
    tu->beta = add_tensor(net, name, 1, cs, SX_TR_NO_DECAY, u->stage);
    snprintf(name, sizeof name, "%s.running_mean", u->bn);
    tu->rmean = add_tensor(net, name, 1, cs, SX_TR_BUFFER, u->stage);
    snprintf(name, sizeof name, "%s.running_var", u->bn);
    tu->rvar = add_tensor(net, name, 1, cs, SX_TR_BUFFER, u->stage);
    tu->folded = sx_model_unit_conv(net->infer, u);
}

/* The training unit that the walk's unit u is. */
static sx_tr_unit *train_unit(sx_tr_net *net, const sx_arch_unit *u) {
    if (u->role == SX_UNIT_STEM) return &net->stem;
    sx_tr_block *b = &net->blocks[u->index];
    b->stage = u->stage;
    b->n_units = net->bottleneck ? 3 : 2;
    if (u->role != SX_UNIT_DOWNSAMPLE) return &b->u[u->role - SX_UNIT_CONV1];
    b->has_down = 1;
    return &b->down;
}

/* First pass: tensors and shapes, walking nn/arch.h's units in torchvision's order. */
static void plan_network(sx_tr_net *net) {
    const sx_tr_config *cfg = &net->cfg;
    net->stem_ch = net->widths.stem;
    memcpy(net->stage_ch, net->widths.out, sizeof net->stage_ch);
    net->n_blocks = net->infer->n_blocks;
    net->blocks = calloc((size_t)net->n_blocks, sizeof *net->blocks);
    if (!net->blocks) abort();
    sx_arch_walk wk;
    sx_arch_unit u;
    sx_arch_walk_start(&wk, net->arch, 4, &net->widths, cfg->input, cfg->input);
    while (sx_arch_walk_next(&wk, &u)) plan_unit(net, train_unit(net, &u), &u);
    net->pool_h = sx_arch_pool_out(net->stem.h_out);
    net->pool_w = sx_arch_pool_out(net->stem.w_out);
    net->feat_dim = net->widths.out[3];
    int cin = net->embed_dim = net->feat_dim;
    if (cfg->style_stages) {
        cin = 0;
        for (int s = 0; s < 4; s++)
            if (cfg->style_stages & (1u << s)) {
                net->style_off[s] = (size_t)cin;
                cin += 2 * net->widths.out[s];
            }
        net->embed_dim = cin;
    }
    int64_t fw[2] = {cfg->n_classes, cin}, fb[1] = {cfg->n_classes};
    net->fc_w = add_tensor(net, "fc.weight", 2, fw, SX_TR_DECAY, 5);
    net->fc_b = add_tensor(net, "fc.bias", 1, fb, SX_TR_NO_DECAY, 5);
    int64_t sw[2] = {1, cin}, sb[1] = {1};
    net->siam_w = add_tensor(net, "siamese.weight", 2, sw, SX_TR_NO_DECAY, 5);
    net->siam_b = add_tensor(net, "siamese.bias", 1, sb, SX_TR_NO_DECAY, 5);
}

static size_t unit_out_floats(const sx_tr_unit *u, int n) {
    return (size_t)u->conv.cout * n * u->h_out * u->w_out;
}

static void grow_max(size_t *m, size_t v) {
    if (v > *m) *m = v;
}

static int unit_frozen(const sx_tr_net *net, const sx_tr_unit *u) {
    return u->stage <= net->cfg.freeze_through;
}

/*
 * What the forward pass keeps for the weight gradient (im2col matrices, and
 * Winograd's transformed inputs V), at most this many bytes in all: backward
 * then skips rebuilding them (one of the two im2cols or input transforms per
 * conv per step), paying their memory instead.
 */
#define KEEP_COL_BYTES ((size_t)1 << 30)

/* Second pass: every activation buffer, sized for max_batch. */
static int alloc_unit(sx_tr_net *net, sx_tr_unit *u, int n, size_t *max_act, size_t *max_col) {
    size_t sz = unit_out_floats(u, n);
    u->x = malloc(sz * sizeof(float));
    u->y = malloc(sz * sizeof(float));
    u->mean = malloc(u->conv.cout * sizeof(float));
    u->invstd = malloc(u->conv.cout * sizeof(float));
    grow_max(max_act, sz);
    grow_max(max_act, (size_t)u->conv.cin * n * u->h_in * u->w_in);
    size_t col = sx_conv_grad_kept_floats(&u->conv, n, u->h_in, u->w_in);
    grow_max(max_col, sx_conv_grad_scratch_floats(&u->conv, n, u->h_in, u->w_in));
    /* GEMM-kernel forwards off Winograd keep nothing: backward builds its im2col */
    if (col && !unit_frozen(net, u) &&
        (net->kept_col_floats + col) * sizeof(float) <= KEEP_COL_BYTES &&
        (u->col = malloc(col * sizeof(float))))
        net->kept_col_floats += col;
    return u->x && u->y && u->mean && u->invstd;
}

static void free_unit(sx_tr_unit *u) {
    free(u->x);
    free(u->y);
    free(u->mean);
    free(u->invstd);
    free(u->col);
}

siamidx_status sx_tr_net_new(const sx_tr_config *cfg, sx_tr_net **out, siamidx_error *err) {
    *out = NULL;
    if (!sx_arch_find(cfg->arch))
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "train: unknown architecture '%s' (%s)",
                       cfg->arch, SX_ARCH_NAMES);
    if (cfg->width <= 0 || cfg->input < 32 || cfg->max_batch < 2 || cfg->n_classes < 2 ||
        cfg->style_stages > 15)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT,
                       "train: bad configuration (width %g, input %d, batch %d, classes %d, "
                       "style stages mask 0x%x)",
                       cfg->width, cfg->input, cfg->max_batch, cfg->n_classes, cfg->style_stages);
    sx_tr_net *net = calloc(1, sizeof *net);
    if (!net) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "train: out of memory");
    net->cfg = *cfg;
    net->arch = sx_arch_find(cfg->arch);
    net->bottleneck = net->arch->bottleneck;
    memcpy(net->stage_blocks, net->arch->blocks, sizeof net->stage_blocks);
    sx_arch_widths_scaled(net->arch, cfg->width, &net->widths);
    siamidx_status s = sx_model_new_network(cfg->arch, &net->widths, &net->infer, err);
    if (s) {
        free(net);
        return s;
    }
    if ((s = sx_cpu_choose(&net->cpu, err))) {
        sx_model_free(net->infer);
        free(net);
        return s;
    }
    plan_network(net);
    if (cfg->style_stages) { /* validation embeds with the same statistics */
        net->infer->style_stages = cfg->style_stages;
        net->infer->pool = SIAMIDX_POOL_STYLE;
    }
    const int n = cfg->max_batch;
    size_t max_act = 0, max_col = 0;
    int ok = alloc_unit(net, &net->stem, n, &max_act, &max_col);
    for (int i = 0; i < net->n_blocks; i++) {
        sx_tr_block *b = &net->blocks[i];
        for (int k = 0; k < b->n_units; k++)
            ok = ok && alloc_unit(net, &b->u[k], n, &max_act, &max_col);
        if (b->has_down) ok = ok && alloc_unit(net, &b->down, n, &max_act, &max_col);
        b->out = malloc(unit_out_floats(&b->u[b->n_units - 1], n) * sizeof(float));
        ok = ok && b->out;
    }
    size_t pooled = (size_t)net->stem_ch * n * net->pool_h * net->pool_w;
    grow_max(&max_act, pooled);
    grow_max(&max_act, (size_t)n * net->embed_dim); /* s1 holds the classifier's dL/dfeat */
    net->params = calloc(net->n_params, sizeof(float));
    net->grads = calloc(net->n_params, sizeof(float));
    net->bufs = calloc(net->n_bufs ? net->n_bufs : 1, sizeof(float));
    net->pooled_map = malloc(pooled * sizeof(float));
    net->argmax = malloc(pooled * sizeof(int32_t));
    net->xin = malloc((size_t)3 * n * cfg->input * cfg->input * sizeof(float));
    net->feat = malloc((size_t)n * net->embed_dim * sizeof(float));
    net->dfeat = malloc((size_t)n * net->embed_dim * sizeof(float));
    net->logits = malloc((size_t)n * cfg->n_classes * sizeof(float));
    net->dlogits = malloc((size_t)n * cfg->n_classes * sizeof(float));
    /* 64-byte aligned: the GEMM kernel's work and packed weights live in it */
    net->col = aligned_alloc(64, ((max_col ? max_col : 1) * sizeof(float) + 63) & ~(size_t)63);
    net->g_a = malloc(max_act * sizeof(float));
    net->g_b = malloc(max_act * sizeof(float));
    net->s1 = malloc(max_act * sizeof(float));
    net->s2 = malloc(max_act * sizeof(float));
    net->s3 = malloc(max_act * sizeof(float));
    if (cfg->objective == SX_TR_COSFACE) {
        net->cos_ws = malloc(sx_tr_cosface_ws_floats(n, net->embed_dim, cfg->n_classes) *
                             sizeof(float));
        net->cos_scratch = malloc((size_t)cfg->n_classes * net->embed_dim * sizeof(float));
        ok = ok && net->cos_ws && net->cos_scratch;
    }
    if (cfg->objective == SX_TR_SUPCON) {
        net->supcon_ws = malloc(sx_tr_supcon_ws_floats(n, net->embed_dim) * sizeof(float));
        ok = ok && net->supcon_ws;
    }
    ok = ok && net->params && net->grads && net->bufs && net->pooled_map && net->argmax &&
         net->xin && net->feat && net->dfeat && net->logits && net->dlogits && net->col &&
         net->g_a && net->g_b && net->s1 && net->s2 && net->s3;
    if (!ok) {
        sx_tr_net_free(net);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY,
                       "train: out of memory for %s width %g batch %d input %d", cfg->arch,
                       cfg->width, n, cfg->input);
    }
    if ((s = sx_encoder_new(net->infer, n, cfg->input, cfg->input, &net->infer_enc, err))) {
        sx_tr_net_free(net);
        return s;
    }
    *out = net;
    return SIAMIDX_OK;
}

void sx_tr_net_free(sx_tr_net *net) {
    if (!net) return;
    free_unit(&net->stem);
    for (int i = 0; i < net->n_blocks; i++) {
        sx_tr_block *b = &net->blocks[i];
        for (int k = 0; k < b->n_units; k++) free_unit(&b->u[k]);
        if (b->has_down) free_unit(&b->down);
        free(b->out);
    }
    free(net->blocks);
    sx_encoder_free(net->infer_enc);
    sx_model_free(net->infer);
    free(net->tensors);
    free(net->params);
    free(net->grads);
    free(net->bufs);
    free(net->pooled_map);
    free(net->argmax);
    free(net->xin);
    free(net->feat);
    free(net->dfeat);
    free(net->logits);
    free(net->dlogits);
    free(net->cos_ws);
    free(net->cos_scratch);
    free(net->supcon_ws);
    free(net->col);
    free(net->g_a);
    free(net->g_b);
    free(net->s1);
    free(net->s2);
    free(net->s3);
    free(net);
}

sx_tr_tensor *sx_tr_net_find(sx_tr_net *net, const char *name) {
    for (int i = 0; i < net->n_tensors; i++)
        if (!strcmp(net->tensors[i].name, name)) return &net->tensors[i];
    return NULL;
}

float *sx_tr_tensor_data(sx_tr_net *net, const sx_tr_tensor *t) {
    return (t->kind == SX_TR_BUFFER ? net->bufs : net->params) + t->off;
}

/* ---- initialisation ---------------------------------------------------------- */

uint64_t sx_tr_hash(uint64_t seed, uint64_t a, uint64_t b, uint64_t c) {
    uint64_t x = seed ^ 0x9e3779b97f4a7c15ULL;
    uint64_t parts[3] = {a, b, c};
    for (int i = 0; i < 3; i++) { /* splitmix64 rounds */
        x += parts[i] + 0x9e3779b97f4a7c15ULL;
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
        x ^= x >> 31;
    }
    return x;
}

static double uniform01(uint64_t seed, uint64_t t, uint64_t i) {
    return ((sx_tr_hash(seed, t, i, 0) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

static double normal01(uint64_t seed, uint64_t t, uint64_t i) {
    double u1 = uniform01(seed, t, 2 * i), u2 = uniform01(seed, t, 2 * i + 1);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void sx_tr_net_init(sx_tr_net *net, uint64_t seed, int zero_residual) {
    for (int ti = 0; ti < net->n_tensors; ti++) {
        sx_tr_tensor *t = &net->tensors[ti];
        float *d = sx_tr_tensor_data(net, t);
        const char *name = t->name;
        size_t len = strlen(name);
        int is_weight = len > 7 && !strcmp(name + len - 7, ".weight");
        if (t->ndim == 4) { /* conv: kaiming normal, fan_out, ReLU gain */
            double std = sqrt(2.0 / (double)(t->shape[0] * t->shape[2] * t->shape[3]));
            for (size_t i = 0; i < t->numel; i++) d[i] = (float)(std * normal01(seed, ti, i));
        } else if (!strncmp(name, "fc.", 3) || !strncmp(name, "siamese.", 8)) {
            double bound = 1.0 / sqrt((double)net->embed_dim);
            for (size_t i = 0; i < t->numel; i++)
                d[i] = (float)(bound * (2.0 * uniform01(seed, ti, i) - 1.0));
        } else if (strstr(name, "running_var") || is_weight) {
            for (size_t i = 0; i < t->numel; i++) d[i] = 1.0f;
        } else {
            memset(d, 0, t->numel * sizeof(float));
        }
    }
    if (!zero_residual) return;
    for (int i = 0; i < net->n_blocks; i++) {
        sx_tr_unit *u = &net->blocks[i].u[net->blocks[i].n_units - 1];
        memset(net->params + u->gamma, 0, u->conv.cout * sizeof(float));
    }
}

/* ---- forward --------------------------------------------------------------- */

/* The unit's convolution with its weights in the current parameters. */
static sx_conv unit_conv(const sx_tr_net *net, const sx_tr_unit *u) {
    sx_conv c = u->conv;
    c.w = net->params + u->w;
    return c;
}

/* Folds the unit's BatchNorm (running statistics) into its conv in net->infer. */
static void fold_unit(sx_tr_net *net, sx_tr_unit *u) {
    const float *p = net->params, *b = net->bufs;
    sx_bn_fold(u->folded, p + u->w, NULL, p + u->gamma, p + u->beta, b + u->rmean, b + u->rvar);
}

static void unit_forward(sx_tr_net *net, sx_tr_unit *u, const float *in, int n) {
    if (unit_frozen(net, u)) { /* inference mode, as in the encoder: BN folded into the conv */
        fold_unit(net, u);
        sx_conv_run(u->folded, in, 0, n, u->h_in, u->w_in, net->col, u->y, u->relu, 0);
        return;
    }
    size_t m = (size_t)n * u->h_out * u->w_out;
    const float *p = net->params;
    sx_conv c = unit_conv(net, u);
    sx_conv_forward_nobias(&c, in, n, u->h_in, u->w_in, u->col, net->col, u->x);
    sx_tr_bn_forward(u->conv.cout, m, u->x, p + u->gamma, p + u->beta, net->bufs + u->rmean,
                     net->bufs + u->rvar, u->mean, u->invstd, u->y, u->relu);
}

static void block_forward(sx_tr_net *net, sx_tr_block *b, const float *in, int n) {
    const float *cur = in;
    for (int k = 0; k < b->n_units; k++) {
        unit_forward(net, &b->u[k], cur, n);
        cur = b->u[k].y;
    }
    const float *shortcut = in;
    if (b->has_down) {
        unit_forward(net, &b->down, in, n);
        shortcut = b->down.y;
    }
    sx_tr_add_forward(cur, shortcut, b->out, unit_out_floats(&b->u[b->n_units - 1], n), 1);
}

/* Whether block i ends a stage whose style statistics are features. */
static int style_end(const sx_tr_net *net, int i) {
    const sx_tr_block *b = &net->blocks[i];
    return (net->cfg.style_stages & (1u << (b->stage - 1))) &&
           (i + 1 == net->n_blocks || net->blocks[i + 1].stage != b->stage);
}

/* Everything up to the pooled features [n][embed_dim], BN in training mode. */
static void features_forward(sx_tr_net *net, const float *x, int n) {
    const int s = net->cfg.input, plane = s * s;
    for (int img = 0; img < n; img++) /* NCHW -> CNHW */
        for (int c = 0; c < 3; c++)
            memcpy(net->xin + ((size_t)c * n + img) * plane, x + ((size_t)img * 3 + c) * plane,
                   sizeof(float) * plane);
    unit_forward(net, &net->stem, net->xin, n);
    sx_tr_maxpool_forward(net->stem_ch, n, net->stem.h_out, net->stem.w_out, 3, 2, 1,
                          net->stem.y, net->pooled_map, net->argmax);
    const float *cur = net->pooled_map;
    for (int i = 0; i < net->n_blocks; i++) {
        block_forward(net, &net->blocks[i], cur, n);
        cur = net->blocks[i].out;
        if (style_end(net, i)) {
            const sx_tr_unit *u = &net->blocks[i].u[net->blocks[i].n_units - 1];
            sx_pool_planes(cur, u->conv.cout, n, (size_t)u->h_out * u->w_out, SIAMIDX_POOL_STYLE,
                           0, net->feat, (size_t)net->embed_dim,
                           net->style_off[net->blocks[i].stage - 1]);
        }
    }
    if (net->cfg.style_stages) return;
    const sx_tr_unit *last = &net->blocks[net->n_blocks - 1].u[net->blocks[net->n_blocks - 1].n_units - 1];
    sx_tr_avgpool_forward(net->feat_dim, n, last->h_out * last->w_out, cur, net->feat);
}

void sx_tr_net_forward(sx_tr_net *net, const float *x, int n, const int32_t *labels,
                       sx_tr_stats *st) {
    const sx_tr_config *cfg = &net->cfg;
    memset(st, 0, sizeof *st);
    features_forward(net, x, n);
    net->last_n = n;
    net->last_labels = labels;
    memset(net->dfeat, 0, sizeof(float) * n * net->embed_dim);
    memset(net->dlogits, 0, sizeof(float) * n * cfg->n_classes);
    st->n = n;
    if (cfg->objective == SX_TR_COSFACE) {
        sx_tr_cosface_forward(n, net->embed_dim, cfg->n_classes, net->feat,
                              net->params + net->fc_w, labels, cfg->cos_scale, cfg->cos_margin,
                              net->cos_ws, net->logits);
        st->ce = sx_tr_softmax_ce(n, cfg->n_classes, net->logits, labels, cfg->label_smoothing,
                                  net->dlogits, &st->correct);
        st->loss += st->ce;
    } else if (cfg->objective != SX_TR_SIAMESE) {
        sx_tr_linear_forward(n, net->embed_dim, cfg->n_classes, net->feat, net->params + net->fc_w,
                             net->params + net->fc_b, net->logits);
        st->ce = sx_tr_softmax_ce(n, cfg->n_classes, net->logits, labels, cfg->label_smoothing,
                                  net->dlogits, &st->correct);
        st->loss += st->ce;
    }
    if (cfg->objective == SX_TR_SIAMESE || cfg->objective == SX_TR_BOTH) {
        float scale = cfg->objective == SX_TR_BOTH ? cfg->siamese_weight : 1.0f;
        double weighted = sx_tr_siamese_bce(n, net->embed_dim, net->feat, labels,
                                            net->params + net->siam_w, net->params[net->siam_b],
                                            scale, net->dfeat, net->grads + net->siam_w,
                                            net->grads + net->siam_b, &st->pair_correct);
        st->bce = weighted / scale;
        st->loss += weighted;
        st->pairs = n / 2;
    }
    if (cfg->objective == SX_TR_SUPCON) {
        st->con = sx_tr_supcon(n, net->embed_dim, net->feat, labels, cfg->temperature,
                               cfg->contrast_weight, net->supcon_ws, net->dfeat, NULL);
        st->loss += cfg->contrast_weight * st->con;
    }
}

/* Every unit's BatchNorm folded into net->infer from the current parameters:
 * a pass over the weights, small next to one batch's forward pass. */
static void fold_network(sx_tr_net *net) {
    fold_unit(net, &net->stem);
    for (int i = 0; i < net->n_blocks; i++) {
        sx_tr_block *b = &net->blocks[i];
        for (int k = 0; k < b->n_units; k++) fold_unit(net, &b->u[k]);
        if (b->has_down) fold_unit(net, &b->down);
    }
}

siamidx_status sx_tr_net_eval(sx_tr_net *net, const float *x, int n, float *logits, float *feat,
                              siamidx_error *err) {
    fold_network(net);
    siamidx_status s =
        net->cfg.style_stages
            ? sx_encoder_run(net->infer_enc, x, n, SX_OUT_FEATURES, SIAMIDX_POOL_STYLE, net->feat, err)
            : sx_encoder_run(net->infer_enc, x, n, SX_OUT_POOLED, SIAMIDX_POOL_AVG, net->feat, err);
    if (s) return s;
    if (feat) memcpy(feat, net->feat, sizeof(float) * n * net->embed_dim);
    if (logits && net->cfg.objective == SX_TR_COSFACE) /* cosines (times s), no margin */
        sx_tr_cosface_forward(n, net->embed_dim, net->cfg.n_classes, net->feat,
                              net->params + net->fc_w, NULL, net->cfg.cos_scale, 0.0f,
                              net->cos_ws, logits);
    else if (logits)
        sx_tr_linear_forward(n, net->embed_dim, net->cfg.n_classes, net->feat,
                             net->params + net->fc_w, net->params + net->fc_b, logits);
    return SIAMIDX_OK;
}

/* ---- backward -------------------------------------------------------------- */

/* dy: gradient at u's BatchNorm output, or NULL when relu_dy is given: the
 * gradient at the output of the ReLU that follows it, masked here in place
 * by that ReLU's output relu_y (fused with BatchNorm's backward). Writes the
 * input gradient into din (may be NULL). */
static void unit_backward(sx_tr_net *net, sx_tr_unit *u, const float *in, const float *dy,
                          float *relu_dy, const float *relu_y, int n, float *din) {
    size_t m = (size_t)n * u->h_out * u->w_out;
    float *p = net->params, *g = net->grads;
    if (relu_dy)
        sx_tr_relu_bn_backward(u->conv.cout, m, relu_y, relu_dy, u->x, p + u->gamma, u->mean,
                               u->invstd, g + u->gamma, g + u->beta, net->s1);
    else
        sx_tr_bn_backward(u->conv.cout, m, u->x, dy, p + u->gamma, u->mean, u->invstd,
                          g + u->gamma, g + u->beta, net->s1);
    sx_conv c = unit_conv(net, u);
    sx_conv_backward(&c, in, u->col, net->s1, n, u->h_in, u->w_in, net->col, g + u->w, din);
}

/* g: gradient at b->out (masked in place by the final ReLU); gin: gradient
 * at the block's input, overwritten (NULL: not needed). */
static void block_backward(sx_tr_net *net, sx_tr_block *b, const float *in, float *g, int n,
                           float *gin) {
    size_t out_sz = unit_out_floats(&b->u[b->n_units - 1], n);
    /* Every unit's gradient is masked by a ReLU inside its BatchNorm
       backward: the last unit's is g, masked in place by the block's final
       ReLU (so the shortcut below reads it masked too), each earlier one's
       s2, by that unit's own ReLU. */
    for (int k = b->n_units - 1; k >= 0; k--) {
        sx_tr_unit *u = &b->u[k];
        const float *uin = k > 0 ? b->u[k - 1].y : in;
        float *din = k > 0 ? net->s2 : gin;
        int last = k == b->n_units - 1;
        unit_backward(net, u, uin, NULL, last ? g : net->s2, last ? b->out : u->y, n, din);
    }
    if (b->has_down) {
        unit_backward(net, &b->down, in, g, NULL, NULL, n, gin ? net->s3 : NULL);
        if (gin) sx_tr_add_into(gin, net->s3, (size_t)b->down.conv.cin * n * b->down.h_in * b->down.w_in);
    } else if (gin) {
        sx_tr_add_into(gin, g, out_sz);
    }
}

void sx_tr_net_backward(sx_tr_net *net) {
    const int n = net->last_n;
    const sx_tr_config *cfg = &net->cfg;
    if (cfg->objective == SX_TR_COSFACE)
        sx_tr_cosface_backward(n, net->embed_dim, cfg->n_classes, net->cos_ws, net->dlogits,
                               cfg->cos_scale, net->grads + net->fc_w, net->s1,
                               net->cos_scratch);
    else if (cfg->objective != SX_TR_SIAMESE) /* adds the classifier's share into dfeat */
        sx_tr_linear_backward(n, net->embed_dim, cfg->n_classes, net->feat,
                              net->params + net->fc_w, net->dlogits, net->grads + net->fc_w,
                              net->grads + net->fc_b, net->s1);
    else
        memset(net->s1, 0, sizeof(float) * n * net->embed_dim);
    /* dfeat: the whole dL/dfeat, kept there (s1 is the units' scratch from here) */
    for (size_t i = 0; i < (size_t)n * net->embed_dim; i++) net->dfeat[i] += net->s1[i];
    sx_tr_block *lastb = &net->blocks[net->n_blocks - 1];
    const sx_tr_unit *last = &lastb->u[lastb->n_units - 1];
    float *g = net->g_a, *gnext = net->g_b;
    if (cfg->style_stages) /* each style stage's share is added as the walk reaches it */
        memset(g, 0, sizeof(float) * unit_out_floats(last, n));
    else
        sx_tr_avgpool_backward(net->feat_dim, n, last->h_out * last->w_out, net->dfeat, g);
    for (int i = net->n_blocks - 1; i >= 0; i--) {
        sx_tr_block *b = &net->blocks[i];
        if (b->stage <= cfg->freeze_through) return;
        if (style_end(net, i)) {
            const sx_tr_unit *u = &b->u[b->n_units - 1];
            sx_tr_style_backward(u->conv.cout, n, u->h_out * u->w_out, b->out, net->feat, net->dfeat,
                                 (size_t)net->embed_dim, net->style_off[b->stage - 1], g, 1);
        }
        int below_frozen = (i == 0) ? (0 <= cfg->freeze_through)
                                    : (net->blocks[i - 1].stage <= cfg->freeze_through);
        const float *in = i > 0 ? net->blocks[i - 1].out : net->pooled_map;
        block_backward(net, b, in, g, n, below_frozen ? NULL : gnext);
        if (below_frozen) return;
        float *t = g;
        g = gnext;
        gnext = t;
    }
    sx_tr_unit *st = &net->stem;
    sx_tr_maxpool_backward(net->stem_ch, n, st->h_out, st->w_out, net->pool_h, net->pool_w,
                           net->argmax, g, gnext);
    unit_backward(net, st, net->xin, NULL, gnext, st->y, n, NULL); /* its ReLU fused in */
}

/* ---- --init: weights from a converted torchvision file -------------------- */

siamidx_status sx_tr_net_load_init(sx_tr_net *net, const char *path, int *loaded, int *skipped,
                                   siamidx_error *err) {
    sx_safetensors st;
    siamidx_status s = sx_safetensors_open(path, &st, err);
    if (s != SIAMIDX_OK) return s;
    *loaded = *skipped = 0;
    for (int i = 0; i < net->n_tensors; i++) {
        sx_tr_tensor *t = &net->tensors[i];
        const sx_tensor_info *info = sx_safetensors_find(&st, t->name);
        if (!info) continue;
        int same = info->ndim == t->ndim;
        for (int d = 0; same && d < t->ndim; d++) same = info->shape[d] == t->shape[d];
        if (!same) {
            (*skipped)++;
            continue;
        }
        sx_safetensors_read_f32(&st, info, sx_tr_tensor_data(net, t));
        (*loaded)++;
    }
    sx_safetensors_close(&st);
    return SIAMIDX_OK;
}

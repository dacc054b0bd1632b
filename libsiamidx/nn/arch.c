/*
 * arch.c - the ResNet definition (see arch.h): torchvision's layout of
 * ResNet-18/34/50/101/152 as a walk over units, and the BatchNorm fold.
 *
 * A block of stage s (1..4) is, in state_dict order:
 *   BasicBlock:  conv1 3x3/stride, conv2 3x3/1                   (+ downsample)
 *   Bottleneck:  conv1 1x1/1, conv2 3x3/stride, conv3 1x1/1      (+ downsample)
 * with stride 2 in the first block of stages 2..4 (torchvision's ResNet v1.5
 * puts a Bottleneck's stride on the 3x3). The downsample (1x1/stride conv +
 * BN) exists exactly when the block changes the shape: stride 2, or input
 * channels != output channels.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nn/arch.h"

static const sx_arch archs[] = {
    {"resnet18", 0, {2, 2, 2, 2}},  {"resnet34", 0, {3, 4, 6, 3}},
    {"resnet50", 1, {3, 4, 6, 3}},  {"resnet101", 1, {3, 4, 23, 3}},
    {"resnet152", 1, {3, 8, 36, 3}},
};

const sx_arch *sx_arch_find(const char *name) {
    for (size_t i = 0; name && i < sizeof archs / sizeof archs[0]; i++)
        if (!strcmp(name, archs[i].name)) return &archs[i];
    return NULL;
}

static int scaled(int base, float width) {
    int c = (int)(base * width + 0.5f);
    return c < 1 ? 1 : c;
}

void sx_arch_widths_scaled(const sx_arch *a, float width, sx_arch_widths *w) {
    w->stem = scaled(64, width);
    for (int s = 0; s < 4; s++) {
        w->inner[s] = scaled(64 << s, width);
        w->out[s] = a->bottleneck ? 4 * w->inner[s] : w->inner[s];
    }
}

void sx_arch_widths_unknown(sx_arch_widths *w) {
    w->stem = -1;
    for (int s = 0; s < 4; s++) w->inner[s] = w->out[s] = -1;
}

int sx_arch_pool_out(int side) { return (side + 2 - 3) / 2 + 1; }

/* ---- the walk ----------------------------------------------------------------- */

void sx_arch_walk_start(sx_arch_walk *wk, const sx_arch *a, int n_stages, sx_arch_widths *widths,
                        int h, int w) {
    memset(wk, 0, sizeof *wk);
    wk->arch = a;
    wk->n_stages = n_stages;
    wk->widths = widths;
    wk->index = -1;
    wk->h = h;
    wk->w = w;
}

static void set_conv(sx_arch_unit *u, int cin, int cout, int k, int stride, int pad) {
    u->cin = cin;
    u->cout = cout;
    u->k = k;
    u->stride = stride;
    u->pad = pad;
}

static int units_per_block(const sx_arch *a) { return a->bottleneck ? 3 : 2; }

/* Fills u as step `step` of the current block (0..2 convs, then the downsample). */
static void block_unit(sx_arch_walk *wk, sx_arch_unit *u) {
    const sx_arch_widths *W = wk->widths;
    int s = wk->stage - 1, last = units_per_block(wk->arch) - 1;
    int stride = wk->stage > 1 && wk->block == 0 ? 2 : 1;
    int inner = W->inner[s], out = W->out[s];
    u->stage = wk->stage;
    u->block = wk->block;
    u->index = wk->index;
    if (wk->step > last) {
        u->role = SX_UNIT_DOWNSAMPLE;
        snprintf(u->conv, sizeof u->conv, "layer%d.%d.downsample.0", wk->stage, wk->block);
        snprintf(u->bn, sizeof u->bn, "layer%d.%d.downsample.1", wk->stage, wk->block);
        set_conv(u, wk->block_cin, out, 1, stride, 0);
        return;
    }
    u->role = (sx_unit_role)(SX_UNIT_CONV1 + wk->step);
    snprintf(u->conv, sizeof u->conv, "layer%d.%d.conv%d", wk->stage, wk->block, wk->step + 1);
    snprintf(u->bn, sizeof u->bn, "layer%d.%d.bn%d", wk->stage, wk->block, wk->step + 1);
    u->relu = wk->step < last;
    u->residual = wk->step == last;
    if (!wk->arch->bottleneck) {
        if (wk->step == 0) set_conv(u, wk->block_cin, inner, 3, stride, 1);
        else set_conv(u, inner, out, 3, 1, 1);
    } else if (wk->step == 0) {
        set_conv(u, wk->block_cin, inner, 1, 1, 0);
    } else if (wk->step == 1) {
        set_conv(u, inner, inner, 3, stride, 1);
    } else {
        set_conv(u, inner, out, 1, 1, 0);
    }
}

/* Moves to the next block (or stage); 0 when the network is done. */
static int next_block(sx_arch_walk *wk) {
    if (wk->stage > 0) {
        wk->block_cin = wk->widths->out[wk->stage - 1];
        wk->block++;
    } else {
        wk->block_cin = wk->widths->stem;
        wk->h = wk->h ? sx_arch_pool_out(wk->h) : 0; /* the max pool after the stem */
        wk->w = wk->w ? sx_arch_pool_out(wk->w) : 0;
    }
    if (wk->stage == 0 || wk->block == wk->arch->blocks[wk->stage - 1]) {
        wk->stage++;
        wk->block = 0;
    }
    if (wk->stage > wk->n_stages) return 0;
    wk->index++;
    wk->step = 0;
    wk->block_h = wk->h;
    wk->block_w = wk->w;
    return 1;
}

/* torchvision projects the shortcut exactly when the shape changes. */
static int block_has_down(const sx_arch_walk *wk) {
    return (wk->stage > 1 && wk->block == 0) || wk->block_cin != wk->widths->out[wk->stage - 1];
}

int sx_arch_walk_next(sx_arch_walk *wk, sx_arch_unit *u) {
    memset(u, 0, sizeof *u);
    if (wk->stage == 0 && wk->step == 0) { /* the stem */
        u->role = SX_UNIT_STEM;
        u->block = u->index = -1;
        snprintf(u->conv, sizeof u->conv, "conv1");
        snprintf(u->bn, sizeof u->bn, "bn1");
        set_conv(u, 3, wk->widths->stem, 7, 2, 3);
        u->relu = 1;
    } else {
        int convs = units_per_block(wk->arch);
        if (wk->stage == 0 || wk->step > convs || (wk->step == convs && !block_has_down(wk)))
            if (!next_block(wk)) return 0;
        block_unit(wk, u);
        if (u->role == SX_UNIT_CONV1 || u->role == SX_UNIT_DOWNSAMPLE) {
            wk->h = wk->block_h; /* both read the block's input */
            wk->w = wk->block_w;
        }
    }
    u->h_in = wk->h;
    u->w_in = wk->w;
    u->h_out = wk->h ? (wk->h + 2 * u->pad - u->k) / u->stride + 1 : 0;
    u->w_out = wk->w ? (wk->w + 2 * u->pad - u->k) / u->stride + 1 : 0;
    wk->h = u->h_out;
    wk->w = u->w_out;
    wk->step++;
    return 1;
}

void sx_arch_walk_learn(sx_arch_walk *wk, const sx_arch_unit *u, int cout) {
    sx_arch_widths *W = wk->widths;
    int s = u->stage - 1;
    switch (u->role) {
    case SX_UNIT_STEM: W->stem = cout; break;
    case SX_UNIT_CONV1:
        W->inner[s] = cout;
        if (!wk->arch->bottleneck) W->out[s] = cout;
        break;
    case SX_UNIT_CONV3: W->out[s] = cout; break;
    case SX_UNIT_CONV2:
    case SX_UNIT_DOWNSAMPLE: break; /* their widths come from conv1 / the last conv */
    }
}

/* ---- BatchNorm folding ---------------------------------------------------------- */

void sx_bn_fold(sx_conv *c, const float *w, const float *b0, const float *gamma,
                const float *beta, const float *mean, const float *var) {
    size_t per_out = (size_t)c->cin * c->k * c->k;
    for (int o = 0; o < c->cout; o++) {
        double scale = gamma[o] / sqrt((double)var[o] + SX_BN_EPS);
        const float *src = w + (size_t)o * per_out;
        float *dst = c->w + (size_t)o * per_out;
        for (size_t i = 0; i < per_out; i++) dst[i] = (float)(src[i] * scale);
        c->b[o] = (float)(((b0 ? (double)b0[o] : 0.0) - mean[o]) * scale + beta[o]);
    }
}

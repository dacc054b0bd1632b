/*
 * train_optim.c - AdamW (decoupled weight decay, as torch.optim.AdamW) and
 * the learning-rate schedule: linear warmup, then cosine decay.
 *
 * BatchNorm affine parameters and biases are not decayed (SX_TR_NO_DECAY);
 * tensors of frozen stages are not touched at all.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/train_optim.h"
#include "base/error.h"
#include "base/threads.h"

siamidx_status sx_tr_adamw_new(sx_tr_adamw *opt, size_t n, siamidx_error *err) {
    memset(opt, 0, sizeof *opt);
    opt->m = calloc(n ? n : 1, sizeof(float));
    opt->v = calloc(n ? n : 1, sizeof(float));
    if (!opt->m || !opt->v) {
        sx_tr_adamw_free(opt);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "train: out of memory for optimizer state");
    }
    opt->n = n;
    opt->beta1 = 0.9f;
    opt->beta2 = 0.999f;
    opt->eps = 1e-8f;
    opt->weight_decay = 0.05f;
    return SIAMIDX_OK;
}

void sx_tr_adamw_free(sx_tr_adamw *opt) {
    free(opt->m);
    free(opt->v);
    opt->m = opt->v = NULL;
}

void sx_tr_adamw_step(sx_tr_adamw *opt, sx_tr_net *net, float lr) {
    opt->t++;
    const double bc1 = 1.0 - pow(opt->beta1, (double)opt->t);
    const double bc2 = 1.0 - pow(opt->beta2, (double)opt->t);
    const float b1 = opt->beta1, b2 = opt->beta2;
    for (int ti = 0; ti < net->n_tensors; ti++) {
        const sx_tr_tensor *t = &net->tensors[ti];
        if (t->kind == SX_TR_BUFFER || t->stage <= net->cfg.freeze_through) continue;
        sx_tr_objective obj = net->cfg.objective;
        if ((obj == SX_TR_CLASSIFY || obj == SX_TR_COSFACE || obj == SX_TR_SUPCON) &&
            !strncmp(t->name, "siamese.", 8))
            continue;
        if (obj == SX_TR_COSFACE && !strcmp(t->name, "fc.bias")) continue; /* unused */
        if (net->cfg.objective == SX_TR_SIAMESE && !strncmp(t->name, "fc.", 3)) continue;
        float decay = t->kind == SX_TR_DECAY ? 1.0f - lr * opt->weight_decay : 1.0f;
        float *p = net->params + t->off, *g = net->grads + t->off;
        float *m = opt->m + t->off, *v = opt->v + t->off;
        const float step = (float)(lr / bc1), rbc2 = (float)(1.0 / sqrt(bc2));
#pragma omp parallel for num_threads(sx_threads()) schedule(static) if(t->numel > 65536)
        for (size_t i = 0; i < t->numel; i++) {
            m[i] = b1 * m[i] + (1.0f - b1) * g[i];
            v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
            p[i] = p[i] * decay - step * m[i] / (sqrtf(v[i]) * rbc2 + opt->eps);
        }
    }
}

float sx_tr_lr(int64_t step, int64_t total, int64_t warmup, float base_lr, float min_ratio) {
    if (warmup > 0 && step < warmup) return base_lr * (float)(step + 1) / (float)warmup;
    if (total <= warmup) return base_lr;
    double progress = (double)(step - warmup) / (double)(total - warmup);
    if (progress > 1.0) progress = 1.0;
    double cosine = 0.5 * (1.0 + cos(3.141592653589793 * progress));
    return (float)(base_lr * (min_ratio + (1.0 - min_ratio) * cosine));
}

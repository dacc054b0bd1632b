/* train/train_optim.h - AdamW and the learning-rate schedule. */
#ifndef SX_TRAIN_TRAIN_OPTIM_H
#define SX_TRAIN_TRAIN_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "siamidx.h"
#include "train/train_net.h"

/* AdamW with decoupled weight decay (train_optim.c). */
typedef struct sx_tr_adamw {
    float *m, *v;
    size_t n;
    int64_t t;
    float beta1, beta2, eps, weight_decay;
} sx_tr_adamw;

siamidx_status sx_tr_adamw_new(sx_tr_adamw *opt, size_t n, siamidx_error *err);
void sx_tr_adamw_free(sx_tr_adamw *opt);
void sx_tr_adamw_step(sx_tr_adamw *opt, sx_tr_net *net, float lr);
/* Linear warmup to base_lr over `warmup` steps, then cosine to min_ratio*base. */
float sx_tr_lr(int64_t step, int64_t total, int64_t warmup, float base_lr, float min_ratio);

#endif /* SX_TRAIN_TRAIN_OPTIM_H */

/*
 * train_api.c - encoder training as siamidx_ext.h offers it: the public
 * options (with the defaults of `siamidx train-encoder`) mapped onto the
 * trainer's own (trainer.h).
 */
#include <stdio.h>
#include <string.h>

#include "siamidx_ext.h"
#include "base/error.h"
#include "train/trainer.h"
#include "train/train_augment.h"
#include "base/threads.h"

void openblas_set_num_threads(int n);
void omp_set_num_threads(int n);

void siamidx_encoder_training_init(siamidx_encoder_training *t) {
    memset(t, 0, sizeof *t);
    snprintf(t->arch, sizeof t->arch, "resnet18");
    t->width = 1.0f;
    t->input_size = 128;
    t->batch = 32;
    t->objective = SIAMIDX_OBJECTIVE_CLASSIFY;
    t->siamese_weight = 0.5f;
    t->label_smoothing = 0.1f;
    t->freeze_through = -1;
    t->epochs = 10;
    t->resize = 224;
    t->lr = 2e-3f;
    t->weight_decay = 0.05f;
    t->warmup_epochs = 1.0f;
    t->min_lr_ratio = 0.01f;
    t->balance = 0.5f;
    t->val_fraction = 0.1f;
    t->log_seconds = 10;
    t->seed = 1;
    t->zero_residual = 1;
    t->threads = 2;
    t->cache_mb = 2048;
    t->cos_margin = 0.35f;
    t->cos_scale = 30.0f;
    t->contrast_weight = 1.0f;
    t->temperature = 0.1f;
}

static sx_tr_objective objective(siamidx_encoder_objective o) {
    return o == SIAMIDX_OBJECTIVE_SIAMESE ? SX_TR_SIAMESE
           : o == SIAMIDX_OBJECTIVE_BOTH    ? SX_TR_BOTH
           : o == SIAMIDX_OBJECTIVE_COSFACE ? SX_TR_COSFACE
           : o == SIAMIDX_OBJECTIVE_SUPCON  ? SX_TR_SUPCON
                                            : SX_TR_CLASSIFY;
}

siamidx_status siamidx_train_encoder(const siamidx_encoder_training *t, siamidx_error *err) {
    if (!t || !(t->collection || t->n_collections > 0) || !t->output)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT,
                       "train-encoder: a collection and an output are needed");
    sx_tr_options o;
    memset(&o, 0, sizeof o);
    const char *one = t->collection;
    if (t->n_collections > 0) {
        o.collections = t->collections;
        o.n_collections = t->n_collections;
    } else {
        o.collections = &one;
        o.n_collections = 1;
    }
    o.collection = t->collection ? t->collection : t->collections[0];
    o.exclude_artists = t->exclude_artists;
    o.cache_bytes = t->cache_mb << 20;
    sx_tr_augment aug = {.p_squash = t->aug_squash,
                         .p_downup = t->aug_downup,
                         .p_posterize = t->aug_posterize,
                         .p_jpeg = t->aug_jpeg};
    o.augment = sx_tr_augment_active(&aug) ? &aug : NULL;
    o.ema_decay = t->ema_decay;
    o.net.cos_margin = t->cos_margin;
    o.net.cos_scale = t->cos_scale;
    o.net.contrast_weight = t->contrast_weight;
    o.net.temperature = t->temperature;
    o.net.style_stages = t->style_stages;
    o.same_style = t->same_style;
    o.output = t->output;
    o.init = t->init;
    o.resume = t->resume;
    o.checkpoint = t->checkpoint;
    o.command = t->command;
    snprintf(o.net.arch, sizeof o.net.arch, "%s", t->arch);
    o.net.width = t->width;
    o.net.max_batch = t->batch;
    o.net.input = t->input_size;
    o.net.objective = objective(t->objective);
    o.net.siamese_weight = t->siamese_weight;
    o.net.label_smoothing = t->label_smoothing;
    o.net.freeze_through = t->freeze_through;
    o.epochs = t->epochs;
    o.resize = t->resize;
    o.embed_size = t->embed_size;
    o.max_steps = t->max_steps;
    o.zero_residual = t->zero_residual;
    o.lr = t->lr;
    o.weight_decay = t->weight_decay;
    o.warmup_epochs = t->warmup_epochs;
    o.min_lr_ratio = t->min_lr_ratio;
    o.balance = t->balance;
    o.val_fraction = t->val_fraction;
    o.log_seconds = t->log_seconds;
    o.seed = t->seed;
    o.stop = t->stop;
    /* One thread pool, OpenMP's: the GEMMs split their work over it rather
       than OpenBLAS starting its own threads inside each OpenMP thread. */
    openblas_set_num_threads(1);
    sx_threads_set(t->threads > 0 ? t->threads : 1);
    omp_set_num_threads(t->threads > 0 ? t->threads : 1); /* the caller's own OpenMP users */
    return sx_train_encoder(&o, err);
}

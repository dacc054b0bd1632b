/* train/trainer.h - the encoder training loop. */
#ifndef SX_TRAIN_TRAINER_H
#define SX_TRAIN_TRAINER_H

#include <stddef.h>
#include <stdint.h>

#include "siamidx.h"
#include "train/train_net.h"

/* The training loop (trainer.c). */
typedef struct sx_tr_val {
    double auc, eer;   /* same-artist verification over all validation pairs (cosine) */
    double top1, top5; /* artist classification */
    double loss;
} sx_tr_val;

typedef struct sx_tr_options {
    const char *const *collections; /* trained on together (sx_collection_load_many) */
    int n_collections;
    const char *collection; /* how the metadata names them ("A + B") */
    const char *output;
    const char *exclude_artists; /* file of artists kept out of training, or NULL */
    const struct sx_tr_augment *augment; /* processing augmentation (train_augment.h), or NULL */
    size_t cache_bytes;     /* bound on the decoded-image cache */
    float ema_decay;        /* EMA of the weights (0: off); the model is written from it */
    const char *init;       /* torchvision-named safetensors to start from, or NULL */
    const char *resume;     /* checkpoint to continue, or NULL */
    const char *checkpoint; /* where checkpoints go (NULL: OUTPUT.ckpt) */
    const char *command;    /* recorded in the model's metadata */
    sx_tr_config net;       /* n_classes is filled from the data */
    int epochs;
    int resize;             /* inference resize recorded in the model (>= input) */
    int embed_size;         /* inference input_size recorded in the model (0: resize) */
    int max_steps;          /* stop after this many steps of this run (0: no limit) */
    int max_steps_no_checkpoint;
    int zero_residual;      /* zero-init the last BN gamma of each block */
    float lr, weight_decay, warmup_epochs, min_lr_ratio;
    float balance;          /* sampling weight count^-balance per artist */
    float same_style;       /* share of a batch's draws from its first image's style group */
    float val_fraction;
    double log_seconds;     /* progress line interval */
    uint64_t seed;
    const volatile int *stop; /* raised by a signal handler: checkpoint and return */
} sx_tr_options;

/* Trains; SIAMIDX_ERR_INTERRUPTED after *stop (checkpoint written). */
siamidx_status sx_train_encoder(const sx_tr_options *o, siamidx_error *err);

#endif /* SX_TRAIN_TRAINER_H */

/* head/head_train.h - fitting a head: the split by image, pairs, Adam, Platt calibration, threshold. */
#ifndef SX_HEAD_HEAD_TRAIN_H
#define SX_HEAD_HEAD_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "siamidx.h"
#include "head/head.h"
#include "head/labelled.h"

typedef struct sx_train_opts {
    int epochs;            /* maximum; early stopping on validation AUC */
    uint64_t seed;
    double val_fraction;   /* of seen-artist images: half validation, half test */
    int holdout_artists;   /* whole artists kept out of training (unseen test) */
    const uint8_t *test_items; /* per item, 1: a given test image (replaces the drawn
                                  test share); NULL: drawn */
    unsigned features;
    float l2, lr;
    size_t pairs_per_epoch;
    int patience;
    int verbose; /* progress lines on stderr */
    siamidx_progress_fn progress; /* after each epoch (done, most epochs) */
    void *progress_ctx;
} sx_train_opts;

void sx_train_opts_init(sx_train_opts *o);

/*
 * Splits by image (roles[i] receives SX_ROLE_*), trains, calibrates and picks
 * the threshold; fills h->report and h->info. roles may be NULL.
 */
siamidx_status sx_head_train(const sx_train_data *d, const sx_train_opts *o, uint8_t *roles,
                             sx_head **out, siamidx_error *err);
/* Roles as sx_head_train draws them (deterministic in seed). */
siamidx_status sx_split_roles(const sx_train_data *d, const sx_train_opts *o, uint8_t *roles,
                              siamidx_error *err);

#endif /* SX_HEAD_HEAD_TRAIN_H */

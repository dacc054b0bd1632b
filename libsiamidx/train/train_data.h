/* train/train_data.h - training data: a collection split per artist, balanced sampling, a producer thread. */
#ifndef SX_TRAIN_TRAIN_DATA_H
#define SX_TRAIN_TRAIN_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "siamidx.h"
#include "data/collection.h"
#include "image/image.h"

/* Training data (train_data.c): a collection split per artist (every artist
 * in both sets), balanced sampling, decoded images cached in memory. */
typedef struct sx_tr_data {
    sx_collection coll;
    const char **artists; /* sorted; label = index */
    int n_artists;
    int *label;           /* per entry */
    int *train, n_train, *val, n_val; /* entry indices */
    int *artist_count;    /* training images per artist */
    int *artist_first;    /* [n_artists + 1]: offsets into by_artist */
    int *by_artist;       /* training entries grouped by artist */
    double *cum;          /* cumulative sampling weights over train */
    sx_image *cache;      /* decoded images, filled on first use */
    char fingerprint[65]; /* SHA-256 of the sorted "path\tartist" lines */
} sx_tr_data;

siamidx_status sx_tr_data_open(const char *collection, double val_fraction, double balance,
                               uint64_t seed, sx_tr_data *d, siamidx_error *err);
void sx_tr_data_close(sx_tr_data *d);
/* n_train entries for one epoch (deterministic in seed, epoch). */
void sx_tr_data_epoch(const sx_tr_data *d, uint64_t seed, int epoch, int pairs, int *order);

/* One batch prepared by a producer thread (started, then waited for). */
typedef struct sx_tr_job {
    sx_tr_data *data;
    const int *entries;
    int n, input, augment;
    uint64_t key; /* crop/flip randomness */
    float mean[3], std[3];
    float *x;        /* [n][3][input][input] */
    int32_t *labels; /* [n] */
    int failed;      /* images that did not decode (black inputs) */
    char first_error[SIAMIDX_ERROR_MESSAGE_MAX];
    void *thread; /* the producer's pthread_t, while running */
} sx_tr_job;

void sx_tr_job_start(sx_tr_job *job);
void sx_tr_job_wait(sx_tr_job *job);

#endif /* SX_TRAIN_TRAIN_DATA_H */

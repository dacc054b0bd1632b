/* train/train_data.h - training data: a collection split per artist, balanced sampling, a producer thread. */
#ifndef SX_TRAIN_TRAIN_DATA_H
#define SX_TRAIN_TRAIN_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "siamidx.h"
#include "data/collection.h"
#include "image/image.h"

/* Training data (train_data.c): one or more collections joined, artists
 * optionally excluded, split per artist (every artist in both sets),
 * balanced sampling, decoded images cached at the training scale within a
 * bound. */
typedef struct sx_tr_data_cfg {
    const char *const *collections; /* folders or CSVs, joined (sx_collection_load_many) */
    int n_collections;
    const char *exclude_artists; /* file: one artist per line, or NULL */
    double val_fraction, balance;
    uint64_t seed;
    int scale;          /* images whose shorter side exceeds it are reduced to it (0: never) */
    size_t cache_bytes; /* bound on the cached pixels; images beyond are decoded on demand */
} sx_tr_data_cfg;

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
    /* Style groups (source_repo and the top folder of source_path): */
    int *group;           /* per entry: its group, -1 for validation images */
    int n_groups;
    int *group_first;     /* [n_groups + 1]: offsets into by_group */
    int *by_group;        /* training entries grouped by style group */
    double *group_cum;    /* cumulative weights within each group (restarting at 0) */
    int scale;            /* see sx_tr_data_cfg */
    sx_image *cache;      /* per entry: at the training scale, filled on first use */
    size_t cache_cap, cache_used; /* bytes of pixels */
    int n_cached;
    long long n_decodes;  /* image decodes so far (cached or not) */
    char **excluded;      /* the --exclude-artists names (one block), n_excluded of them */
    size_t n_excluded, n_excluded_images;
    char fingerprint[65]; /* SHA-256 of the sorted "path\tartist" lines */
} sx_tr_data;

siamidx_status sx_tr_data_open(const sx_tr_data_cfg *cfg, sx_tr_data *d, siamidx_error *err);
/* Bytes an image of w x h takes in the cache at training scale `scale`, and
 * that size (cw, ch may be NULL). */
size_t sx_tr_cached_size(int w, int h, int scale, int *cw, int *ch);
/* Entry e at the training scale: the cached copy (*owned NULL), or decoded now
 * into *tmp (cached when the bound allows, else *owned = tmp, to free). */
siamidx_status sx_tr_data_image(sx_tr_data *d, int e, sx_image *tmp, const sx_image **out,
                                sx_image **owned, siamidx_error *err);
void sx_tr_data_close(sx_tr_data *d);
/* n_train entries for one epoch (deterministic in seed, epoch), drawn with
 * the balance weights; with p_same > 0 each odd entry is, with that
 * probability, another draw of the artist before it (same-artist pairs);
 * with p_group > 0, each even entry of a batch of `batch` but the first is,
 * with that probability, drawn from the first's style group. */
void sx_tr_data_epoch(const sx_tr_data *d, uint64_t seed, int epoch, double p_same, int batch,
                      double p_group, int *order);

/* One batch prepared by a producer thread (started, then waited for). */
typedef struct sx_tr_job {
    sx_tr_data *data;
    const int *entries;
    int n, input, augment;
    uint64_t key; /* crop/flip randomness */
    const struct sx_tr_augment *processing; /* train_augment.h; NULL: none */
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

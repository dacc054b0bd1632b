/* head/classifier.h - a multinomial logistic regression over the index's artists. */
#ifndef SX_HEAD_CLASSIFIER_H
#define SX_HEAD_CLASSIFIER_H

#include <stddef.h>
#include <stdint.h>

#include "siamidx.h"
#include "head/labelled.h"

/*
 * P(artist c | e) = softmax_c(W_c . z + b_c), z = (e/|e| - mean) * inv_std:
 * the embedding L2-normalised, then standardised per dimension with the
 * training images' statistics. Classes are the artists with training
 * images; names[c] is the artist's name.
 *
 * The classifier also carries what attribution needs to fuse it with the
 * head's neighbour evidence and to weigh "unknown" (head/attribution.c):
 * the fusion weight and the unknown evidence's logistic fit, and the prior
 * P(a query's artist is not indexed).
 */
typedef struct sx_classifier {
    int dim, n_classes;
    char **names;          /* [n_classes] */
    float *mean, *inv_std; /* [dim] */
    float *w;              /* [n_classes][dim] */
    float *b;              /* [n_classes] */
    float l2;              /* the L2 penalty validation chose */
    float fuse_weight;     /* log-linear weight of the classifier, 1 - it the neighbours' */
    float unk_bias, unk_top, unk_pair; /* unknown evidence: logit on [1, log top, top pair logit] */
    float unknown_prior;   /* P(query's artist not indexed), 0 <= p < 1 */
    double val_top1, val_balanced_top1; /* the classifier alone on validation images */
    double fused_top1;     /* the fused answer on validation images */
    char head_id[65];      /* SHA-256 (hex) of the head blob the fit used */
    uint8_t *absent;       /* [n_classes] 1: dropped (sx_classifier_drop), or NULL: none */
} sx_classifier;

/* Defaults when validation cannot decide (no validation images). */
#define SX_CLASSIFIER_DEFAULT_FUSE 0.5f

/* Fits on the rows of role TRAIN (class-balanced weights), the L2 penalty
   chosen on the rows of role VAL (the training rows when there are none). */
siamidx_status sx_classifier_fit(const sx_train_data *d, const uint8_t *roles, int verbose,
                                 sx_classifier **out, siamidx_error *err);
void sx_classifier_free(sx_classifier *c);

/* Leaves class `cls` out of every later answer: its log-probability is
   -infinity and the others are renormalised without it (an artist since
   removed from the index). 0, or -1 when out of memory. Not stored in blobs. */
int sx_classifier_drop(sx_classifier *c, int cls);

/* Log-probabilities of n embeddings (dim floats each): out[n][n_classes]. */
siamidx_status sx_classifier_log_prob(const sx_classifier *c, const float *emb, size_t n,
                                      double *out, siamidx_error *err);

/* The class named `name`, or -1. */
int sx_classifier_class(const sx_classifier *c, const char *name);

/* Bytes: "SIAMIDX-CLASSIFIER 1\n", key=value lines, "data\n", float32 LE
   arrays (mean, inv_std, w, b), then each name as u32 LE length + bytes. */
siamidx_status sx_classifier_to_blob(const sx_classifier *c, uint8_t **blob, size_t *len,
                                     siamidx_error *err);
/* Refuses (SIAMIDX_ERR_INDEX_CORRUPT) anything not exactly what to_blob writes. */
siamidx_status sx_classifier_from_blob(const uint8_t *blob, size_t len, sx_classifier **out,
                                       siamidx_error *err);

#endif /* SX_HEAD_CLASSIFIER_H */

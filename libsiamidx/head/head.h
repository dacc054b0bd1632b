/* head/head.h - the Siamese head: P(same artist) from two embeddings, its serialised forms. */
#ifndef SX_HEAD_HEAD_H
#define SX_HEAD_HEAD_H

#include <stddef.h>
#include <stdint.h>

#include "siamidx.h"
#include "nn/safetensors.h"

typedef struct siamidx_head sx_head;

/* Pair features, concatenated in this order; all symmetric in a and b. */
enum {
    SX_FEAT_ABS = 1,  /* |za - zb| */
    SX_FEAT_SQ = 2,   /* (za - zb)^2 */
    SX_FEAT_PROD = 4, /* za * zb */
    SX_FEAT_COS = 8   /* za . zb (one value) */
};

/* What training measured on its validation pairs, stored with the head. */
typedef struct sx_head_report {
    double val_auc, val_acc, val_ece;
    int epochs_run, best_epoch;
    size_t n_train, n_val, n_test, n_unseen; /* images in each role */
} sx_head_report;

/*
 * P(same | a, b) = sigmoid(platt_a * (w . f(za, zb) + bias) + platt_b) with
 * z = normalise((e - mean) / std): per-dimension standardisation with the
 * training images' statistics, then L2.
 */
#define SX_HEAD_CALIB_BINS 10

struct siamidx_head {
    int dim;
    unsigned features;
    int n_feat;
    float *mean, *inv_std; /* [dim] */
    float *w;              /* [n_feat] */
    float bias;
    float platt_a, platt_b;
    float threshold; /* on the calibrated probability */
    /* attribution: P(artist) = sum_i exp(s*l_i) / (exp(u) + sum_all exp(s*l_j)),
       l: calibrated pair logits of the candidates */
    float attr_scale, attr_unknown;
    sx_head_report report;
    /* Reliability of the calibrated probability on the validation pairs: of
       the calib_n[k] pairs scored in [k/10, (k+1)/10), calib_same[k] were by
       one artist. has_calib 0: not recorded (heads from before, hand-made). */
    int has_calib;
    uint32_t calib_n[SX_HEAD_CALIB_BINS], calib_same[SX_HEAD_CALIB_BINS];
    char *info; /* "key=value" lines: seed, split, held-out artists and images */
};

int sx_head_feature_count(unsigned features, int dim);
siamidx_status sx_head_new(int dim, unsigned features, sx_head **out, siamidx_error *err);
/* Standardises and normalises one embedding into z[dim]. */
void sx_head_project(const sx_head *h, const float *e, float *z);
/* Uncalibrated logit from two projected embeddings; `feat` holds n_feat floats. */
float sx_head_raw_logit(const sx_head *h, const float *za, const float *zb, float *feat);
/* Calibrated logit (platt applied) from two projected embeddings. */
float sx_head_logit(const sx_head *h, const float *za, const float *zb, float *feat);
float sx_sigmoid(float x);
/* Fills h's calibration bins from n probabilities and their labels (1: same artist). */
void sx_head_set_calibration(sx_head *h, const float *p, const uint8_t *same, size_t n);
/* "n/same,n/same,..." (SX_HEAD_CALIB_BINS of them) into / from the head; from: 0 when malformed. */
void sx_head_calibration_string(const sx_head *h, char *out, size_t cap);
int sx_head_calibration_parse(sx_head *h, const char *s, size_t len);

/* Bytes: "SIAMIDX-HEAD 1\n", key=value lines, "data\n", float32 LE arrays. */
siamidx_status sx_head_to_blob(const sx_head *h, uint8_t **blob, size_t *len,
                               siamidx_error *err);
siamidx_status sx_head_from_blob(const uint8_t *blob, size_t len, sx_head **out,
                                 siamidx_error *err);
/*
 * The model file's default head: tensors head.mean, head.std, head.w,
 * head.params ([bias, platt_a, platt_b, threshold, attr_scale, attr_unknown])
 * and metadata head.features ("abs,sq,cos"). *out stays NULL when the file
 * has no head.* tensors.
 */
siamidx_status sx_head_from_safetensors(const sx_safetensors *st, sx_head **out,
                                        siamidx_error *err);
/* "abs,cos": the features' names as head.features and the blob spell them. */
void sx_head_features_string(unsigned features, char *out, size_t cap);

#endif /* SX_HEAD_HEAD_H */

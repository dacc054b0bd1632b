/* head/model_head.h - the model file's default head: loading it with the model, writing a trained one in. */
#ifndef SX_HEAD_MODEL_HEAD_H
#define SX_HEAD_MODEL_HEAD_H

#include <stddef.h>
#include <stdint.h>

#include "siamidx.h"
#include "head/head.h"
#include "head/head_train.h"

/* model_head.c: a trained head into a model file, as its default head. */

/*
 * Writes out_path: a copy of model's file with `head` as its default head
 * (tensors head.mean, head.std, head.w, head.params in F32; metadata
 * head.features and the validation numbers head.val_auc, head.val_accuracy,
 * head.val_ece, head.threshold, head.images, head.trained_on), replacing any
 * head.* it had. Every other tensor keeps its bytes and dtype and every
 * other metadata key its value, so the fingerprint stays; the written file
 * is loaded back to check that. Atomic (temporary file, rename); out_path
 * may be the model's own path.
 */
siamidx_status sx_model_write_head(const siamidx_model *model, const sx_head *head,
                                   const char *trained_on, const char *out_path,
                                   siamidx_error *err);
/*
 * Embeds every image of the collections (joined as train-encoder joins them,
 * less the artists listed in exclude_artists, which may be NULL) with the model
 * file at model_path, trains a head on the embeddings (sx_head_train with o) and
 * writes it into that file (sx_model_write_head). *out: the head (free it);
 * *n_failed: images that could not be embedded (left out). progress may be NULL.
 */
siamidx_status sx_model_train_head(const char *model_path, const char *const *collections,
                                   size_t n_collections, const char *exclude_artists,
                                   const sx_train_opts *o, siamidx_progress_fn progress,
                                   void *progress_ctx, sx_head **out, size_t *n_failed,
                                   siamidx_error *err);

/* siamidx_train_options (0: default) as head training reads them. */
void sx_train_opts_from_public(const siamidx_train_options *opt, sx_train_opts *o);
/* What a trained head measured, as siamidx_train_report. */
void sx_train_report_from_head(const sx_head *h, size_t unseen_artists,
                               siamidx_train_report *report);

#endif /* SX_HEAD_MODEL_HEAD_H */

/* head/evaluate.h - measuring a head on the images its training held out. */
#ifndef SX_HEAD_EVALUATE_H
#define SX_HEAD_EVALUATE_H

#include <stddef.h>
#include <stdint.h>

#include "siamidx.h"
#include "head/head.h"
#include "head/labelled.h"

typedef siamidx_pair_metrics sx_pair_eval;
typedef siamidx_attribution_metrics sx_attr_eval;
typedef siamidx_eval_report sx_eval;

/*
 * Pairs among TEST images (seen artists) and among UNSEEN images; attribution
 * of TEST and UNSEEN images against TRAIN+VAL images (the rest of the index).
 */
siamidx_status sx_evaluate(const sx_head *h, const sx_train_data *d, const uint8_t *roles,
                           uint64_t seed, sx_eval *out, siamidx_error *err);

#endif /* SX_HEAD_EVALUATE_H */

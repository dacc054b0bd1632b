/* head/nearest.h - brute-force retrieval over labelled embeddings (fitting and evaluation). */
#ifndef SX_HEAD_NEAREST_H
#define SX_HEAD_NEAREST_H

#include <stddef.h>
#include <stdint.h>

#include "siamidx.h"
#include "head/labelled.h"

/* Rows of `roles` whose role bit is in `mask` (1u << SX_ROLE_*), in order; returns how many. */
size_t sx_rows_with_role(const uint8_t *roles, size_t n, unsigned mask, size_t *out);

/*
 * For each of nq query rows, the m gallery rows with the largest inner
 * product of raw embeddings, best first (out: nq * min(m, ng)): what a flat
 * inner-product FAISS index returns for L2-normalised embeddings. A query is
 * never its own neighbour.
 */
siamidx_status sx_nearest(const sx_train_data *d, const size_t *queries, size_t nq,
                          const size_t *gallery, size_t ng, size_t m, size_t *out,
                          siamidx_error *err);

#endif /* SX_HEAD_NEAREST_H */

/*
 * nearest.c - brute-force retrieval over labelled embeddings, for fitting the
 * attribution and for evaluation: one GEMM per block of queries, the best m
 * kept by insertion. The index answers real queries (FAISS); this is the
 * same answer for a flat index without building one per split.
 */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "head/nearest.h"

/*
 * For each of nq query rows, the m gallery rows with the largest inner
 * product of raw embeddings, best first: what a flat inner-product FAISS
 * index returns for L2-normalised embeddings.
 */
siamidx_status sx_nearest(const sx_train_data *d, const size_t *queries, size_t nq,
                          const size_t *gallery, size_t ng, size_t m, size_t *out,
                          siamidx_error *err) {
    const size_t block = 64, dim = (size_t)d->dim;
    if (m > ng) m = ng;
    float *G = malloc(ng * dim * sizeof(float)), *Q = malloc(block * dim * sizeof(float));
    float *S = malloc(block * ng * sizeof(float)), *best = malloc(m * sizeof(float) + 1);
    if (!G || !Q || !S || !best) {
        free(G), free(Q), free(S), free(best);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "retrieval: out of memory (%zu images)", ng);
    }
    for (size_t j = 0; j < ng; j++) memcpy(G + j * dim, d->emb + gallery[j] * dim, dim * 4);
    for (size_t q0 = 0; q0 < nq; q0 += block) {
        size_t nb = nq - q0 < block ? nq - q0 : block;
        for (size_t i = 0; i < nb; i++) memcpy(Q + i * dim, d->emb + queries[q0 + i] * dim, dim * 4);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb, (int)ng, (int)dim, 1.0f, Q,
                    (int)dim, G, (int)dim, 0.0f, S, (int)ng);
        for (size_t i = 0; i < nb; i++) {
            size_t *o = out + (q0 + i) * m, have = 0;
            const float *s = S + i * ng;
            for (size_t j = 0; j < ng; j++) {
                if (gallery[j] == queries[q0 + i]) continue; /* never its own neighbour */
                if (have == m && s[j] <= best[m - 1]) continue;
                size_t k = have < m ? have++ : m - 1;
                while (k > 0 && best[k - 1] < s[j]) {
                    best[k] = best[k - 1];
                    o[k] = o[k - 1];
                    k--;
                }
                best[k] = s[j];
                o[k] = gallery[j];
            }
            for (size_t k = have; k < m; k++) o[k] = o[have ? have - 1 : 0];
        }
    }
    free(G), free(Q), free(S), free(best);
    return SIAMIDX_OK;
}

size_t sx_rows_with_role(const uint8_t *roles, size_t n, unsigned mask, size_t *out) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (mask & (1u << roles[i])) out[k++] = i;
    return k;
}

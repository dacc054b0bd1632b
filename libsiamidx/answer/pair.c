/*
 * pair.c - is this pair of paintings by one artist: two embeddings (or two
 * images, embedded here) scored by a head. The caller names the head, or the
 * model's default head answers; `siamidx pair -i` passes siamidx_index_head's
 * (the index's head, else the model's: the rule queries follow, index_head.c).
 */
#include <stdlib.h>

#include "siamidx_ext.h"
#include "base/error.h"
#include "head/head.h"

siamidx_status siamidx_pair_embeddings(const siamidx_head *head, const float *a, const float *b,
                                       size_t dim, siamidx_pair_result *out, siamidx_error *err) {
    if (!head)
        return sx_fail(err, SIAMIDX_ERR_NO_HEAD, "no trained head: run `siamidx train`");
    if (!a || !b || !out)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "pair: NULL argument");
    if (dim != (size_t)head->dim)
        return sx_fail(err, SIAMIDX_ERR_MODEL_MISMATCH,
                       "the head expects %d-dimensional embeddings, got %zu", head->dim, dim);
    float *buf = malloc((2 * dim + (size_t)head->n_feat) * sizeof(float));
    if (!buf) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "pair: out of memory");
    sx_head_project(head, a, buf);
    sx_head_project(head, b, buf + dim);
    float p = sx_sigmoid(sx_head_logit(head, buf, buf + dim, buf + 2 * dim));
    free(buf);
    out->probability = p;
    out->threshold = head->threshold;
    out->same_artist = p >= head->threshold;
    return SIAMIDX_OK;
}

/* Embeds two inputs with `embed` and scores them. */
static siamidx_status pair_with(const siamidx_model *model, const siamidx_head *head,
                                const siamidx_embed_options *opt, siamidx_pair_result *out,
                                siamidx_error *err,
                                siamidx_status (*embed)(const siamidx_model *, const void *,
                                                        const siamidx_embed_options *, float *,
                                                        siamidx_error *),
                                const void *a, const void *b) {
    if (!model || !out) return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "pair: NULL argument");
    if (!head) head = siamidx_model_head(model);
    if (!head)
        return sx_fail(err, SIAMIDX_ERR_NO_HEAD,
                       "no trained head: run `siamidx train` (the model %s carries none)",
                       siamidx_model_path(model));
    size_t dim = siamidx_model_dim(model, opt ? opt->pool : SIAMIDX_POOL_DEFAULT);
    float *e = malloc(2 * dim * sizeof(float));
    if (!e) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "pair: out of memory");
    siamidx_status st = embed(model, a, opt, e, err);
    if (!st) st = embed(model, b, opt, e + dim, err);
    if (!st) st = siamidx_pair_embeddings(head, e, e + dim, dim, out, err);
    free(e);
    return st;
}

static siamidx_status embed_path(const siamidx_model *m, const void *path,
                                 const siamidx_embed_options *opt, float *out,
                                 siamidx_error *err) {
    return siamidx_embed_file(m, path, opt, out, err);
}

siamidx_status siamidx_pair_files(const siamidx_model *model, const siamidx_head *head,
                                  const char *path_a, const char *path_b,
                                  const siamidx_embed_options *opt, siamidx_pair_result *out,
                                  siamidx_error *err) {
    if (!path_a || !path_b) return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "pair: NULL path");
    return pair_with(model, head, opt, out, err, embed_path, path_a, path_b);
}

static siamidx_status embed_image(const siamidx_model *m, const void *img,
                                  const siamidx_embed_options *opt, float *out,
                                  siamidx_error *err) {
    const siamidx_rgb_image *im = img;
    return siamidx_embed_rgb(m, im->rgb, im->width, im->height, im->stride, opt, out, err);
}

siamidx_status siamidx_pair_rgb(const siamidx_model *model, const siamidx_head *head,
                                const siamidx_rgb_image *a, const siamidx_rgb_image *b,
                                const siamidx_embed_options *opt, siamidx_pair_result *out,
                                siamidx_error *err) {
    if (!a || !b || !a->rgb || !b->rgb)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "pair: NULL image");
    return pair_with(model, head, opt, out, err, embed_image, a, b);
}

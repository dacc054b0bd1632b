/*
 * fuzz_model.c - the safetensors parser and the model loader.
 *
 * Internal functions used (module headers; safetensors.c, model.c):
 *   sx_safetensors_open, sx_safetensors_close, sx_safetensors_find,
 *   sx_safetensors_meta, sx_safetensors_read_f32, sx_tensor_numel,
 *   struct siamidx_model (pre.input_size)
 * Public: siamidx_model_load, siamidx_model_free, siamidx_model_dim,
 *   siamidx_model_meta*, siamidx_model_head, siamidx_embed_rgb
 *
 * The input is a file (a memfd, fuzz_util.h): sx_safetensors_open maps it,
 * every tensor it accepts is converted to fp32 (which reads exactly the span
 * its data_offsets name), then the model loader builds the network from the
 * same bytes. A model that loads with an input side of at most 64 (the
 * seeds, tools/../fuzz/make_seeds.py, are such) embeds a small picture, so
 * the encoder runs on every architecture the loader lets through.
 */
#include <math.h>

#include "fuzz_util.h"
#include "nn/safetensors.h"
#include "nn/model.h"

static void read_every_tensor(const sx_safetensors *st) {
    for (size_t i = 0; i < st->n_tensors; i++) {
        const sx_tensor_info *t = &st->tensors[i];
        FUZZ_CHECK(sx_safetensors_find(st, t->name) == t, "find('%s') misses it", t->name);
        int64_t n = sx_tensor_numel(t);
        FUZZ_CHECK(n >= 0 && (uint64_t)n * sx_dtype_size(t->dtype) == t->end - t->begin,
                   "tensor '%s': %lld values in %llu bytes", t->name, (long long)n,
                   (unsigned long long)(t->end - t->begin));
        float *v = malloc((size_t)n * sizeof *v + 1);
        if (!v) abort();
        sx_safetensors_read_f32(st, t, v);
        free(v);
    }
    for (size_t i = 0; i < st->n_meta; i++)
        FUZZ_CHECK(sx_safetensors_meta(st, st->meta[i].key) == st->meta[i].value,
                   "meta('%s') misses it", st->meta[i].key);
}

static void embed_small(const siamidx_model *m) {
    if (m->pre.input_size > 64 || m->pre.resize_size > 64) return;
    uint8_t rgb[5 * 7 * 3];
    for (size_t i = 0; i < sizeof rgb; i++) rgb[i] = (uint8_t)(i * 37);
    size_t dim = siamidx_model_dim(m, SIAMIDX_POOL_DEFAULT);
    float *out = malloc((dim + 1) * sizeof *out);
    if (!out) abort();
    siamidx_error err;
    siamidx_status s = siamidx_embed_rgb(m, rgb, 7, 5, 21, NULL, out, &err);
    fx_say("embed", s, err.message);
    if (s == SIAMIDX_OK) {
        double ss = 0;
        for (size_t i = 0; i < dim; i++) ss += (double)out[i] * out[i];
        /* L2-normalised, or all zeros when the features vanish; NaN from
           overflowing weights is possible and not an error of the loader. */
        FUZZ_CHECK(!(ss > 1.0001), "embedding norm^2 %g", ss);
    }
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static fx_file file;
    const char *path = fx_file_write(&file, "fuzz_model", data, size);
    sx_safetensors st;
    siamidx_error err;
    siamidx_status s = sx_safetensors_open(path, &st, &err);
    fx_say("safetensors", s, err.message);
    if (s != SIAMIDX_OK) {
        FUZZ_CHECK(s == SIAMIDX_ERR_MODEL_FORMAT, "safetensors: status %d: %s", s, err.message);
        return 0;
    }
    read_every_tensor(&st);
    sx_safetensors_close(&st);

    siamidx_model *m = NULL;
    s = siamidx_model_load(path, &m, &err);
    fx_say("model", s, err.message);
    if (s != SIAMIDX_OK) {
        FUZZ_CHECK(s == SIAMIDX_ERR_MODEL_FORMAT && m == NULL, "model: status %d: %s", s,
                   err.message);
        return 0;
    }
    FUZZ_CHECK(siamidx_model_dim(m, SIAMIDX_POOL_DEFAULT) > 0, "model without dimensions");
    for (size_t i = 0; i < siamidx_model_meta_count(m); i++)
        FUZZ_CHECK(siamidx_model_meta(m, siamidx_model_meta_key(m, i)) != NULL, "meta %zu", i);
    const siamidx_head *h = siamidx_model_head(m);
    FUZZ_CHECK(!h || siamidx_head_dim(h) > 0, "head without dimensions");
    embed_small(m);
    siamidx_model_free(m);
    return 0;
}

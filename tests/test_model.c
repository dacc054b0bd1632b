/* test_model.c - safetensors parsing, model loading, BatchNorm folding, fingerprints. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fixture_model.h"
#include "nn/safetensors.h"
#include "nn/model.h"
#include "nn/encoder.h"

static char tmp_model[512];

/* Writes `m` to the scratch path and loads it; returns the status, fills err. */
static siamidx_status write_and_load(const fx_model *m, sx_dtype dtype, siamidx_model **out,
                                     siamidx_error *err) {
    *out = NULL;
    siamidx_status s = fx_write(m, tmp_model, dtype, err);
    if (s) return s;
    return siamidx_model_load(tmp_model, out, err);
}

/* Loading must fail with `status` and a message containing each of the strings. */
static void expect_fail(const fx_model *m, siamidx_status status, const char *a, const char *b,
                        const char *c) {
    siamidx_model *model;
    siamidx_error err = {0};
    siamidx_status s = write_and_load(m, SX_F32, &model, &err);
    CHECK_MSG(s == status, "status %d, want %d (%s)", s, status, err.message);
    const char *parts[3] = {a, b, c};
    for (int i = 0; i < 3; i++)
        CHECK_MSG(!parts[i] || strstr(err.message, parts[i]), "'%s' not in: %s", parts[i], err.message);
    siamidx_model_free(model);
}

static void tiny(fx_model *m) { fx_resnet(m, "resnet18", 4, 10, 7); }

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    fwrite(data, 1, n, f);
    fclose(f);
}

static unsigned char *read_bytes(const char *path, size_t *n) {
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc(*n ? *n : 1);
    if (fread(p, 1, *n, f) != *n) *n = 0;
    fclose(f);
    return p;
}

/* A file with the given header JSON and `data_len` zero bytes of data. */
static siamidx_status load_raw_header(const char *json, size_t data_len, siamidx_error *err) {
    size_t hl = strlen(json), n = 8 + hl + data_len;
    unsigned char *buf = calloc(1, n);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, json, hl);
    write_bytes(tmp_model, buf, n);
    free(buf);
    sx_safetensors st;
    siamidx_status s = sx_safetensors_open(tmp_model, &st, err);
    if (!s) sx_safetensors_close(&st);
    return s;
}

static void test_half_conversions(void) {
    CHECK(sx_f16_to_f32(0x3c00) == 1.0f);
    CHECK(sx_f16_to_f32(0xc000) == -2.0f);
    CHECK(sx_f16_to_f32(0x0001) == 0x1p-24f);
    CHECK(sx_f16_to_f32(0x7bff) == 65504.0f);
    CHECK(isinf(sx_f16_to_f32(0x7c00)));
    CHECK(sx_f32_to_f16(65519.0f) == 0x7bff);
    CHECK(sx_f32_to_f16(65520.0f) == 0x7c00);
    CHECK(sx_f32_to_f16(0x1p-25f) == 0);
    CHECK(sx_f32_to_f16(0x1.8p-25f) == 1);
    CHECK(sx_f32_to_f16(1.0f + 0x1p-11f) == 0x3c00);     /* tie: to even */
    CHECK(sx_f32_to_f16(1.0f + 0x3p-11f) == 0x3c02);     /* tie: to even, upwards */
    CHECK(sx_f32_to_f16(-0.0f) == 0x8000);
    CHECK(sx_f32_to_bf16(1.0f) == 0x3f80);
    CHECK(sx_f32_to_bf16(1.0f + 0x1p-8f) == 0x3f80);
    CHECK(sx_f32_to_bf16(1.0f + 0x3p-8f) == 0x3f82);
    CHECK(sx_bf16_to_f32(0xbf80) == -1.0f);
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue; /* NaN payloads */
        if (sx_f32_to_f16(sx_f16_to_f32((uint16_t)h)) != h) bad++;
        if (sx_f32_to_bf16(sx_bf16_to_f32((uint16_t)h)) != h && !((h & 0x7f80) == 0x7f80 && (h & 0x7f)))
            bad++;
    }
    CHECK_MSG(bad == 0, "%d half values do not round-trip", bad);
}

static void test_load_tiny(void) {
    fx_model m;
    tiny(&m);
    siamidx_model *model;
    siamidx_error err;
    CHECK_MSG(write_and_load(&m, SX_F32, &model, &err) == SIAMIDX_OK, "%s", err.message);
    if (model) {
        CHECK(!strcmp(siamidx_model_arch(model), "resnet18"));
        CHECK(siamidx_model_input_size(model) == 224);
        CHECK(siamidx_model_default_pool(model) == SIAMIDX_POOL_AVG);
        CHECK(siamidx_model_dim(model, SIAMIDX_POOL_DEFAULT) == 32);
        CHECK(siamidx_model_dim(model, SIAMIDX_POOL_STYLE) == 64);
        CHECK(siamidx_model_num_classes(model) == 10);
        CHECK(model->stage_channels[0] == 4 && model->stage_channels[3] == 32);
        CHECK(model->n_blocks == 8 && model->blocks[2].has_down && !model->blocks[1].has_down);
        CHECK(model->blocks[2].c1.stride == 2 && model->blocks[2].c2.stride == 1);
        CHECK(model->pre.resize_size == 256 && fabsf(model->pre.std[2] - 0.225f) < 1e-7f);
        CHECK(siamidx_model_meta_count(model) == m.n_meta);
        for (size_t i = 1; i < siamidx_model_meta_count(model); i++)
            CHECK(strcmp(siamidx_model_meta_key(model, i - 1), siamidx_model_meta_key(model, i)) < 0);
        CHECK(!strcmp(siamidx_model_meta(model, "num_classes"), "10"));
        CHECK(siamidx_model_meta(model, "nope") == NULL);
        CHECK(strlen(siamidx_model_fingerprint(model)) == 64);
    }
    siamidx_model_free(model);
    fx_free(&m);
    CHECK(siamidx_pool_from_name("gem") == SIAMIDX_POOL_GEM);
    CHECK(siamidx_pool_from_name("mean") == -1);
    CHECK(!strcmp(siamidx_pool_name(SIAMIDX_POOL_STYLE), "style"));
    CHECK(siamidx_default_model_path() != NULL);
}

/* Bottleneck blocks, 3 stages, style pooling; fc of a truncated model is ignored. */
static void test_variants(void) {
    fx_model m;
    siamidx_model *model;
    siamidx_error err;
    fx_resnet(&m, "resnet50", 4, 5, 3);
    CHECK_MSG(write_and_load(&m, SX_BF16, &model, &err) == SIAMIDX_OK, "%s", err.message);
    if (model) {
        CHECK(model->bottleneck && model->n_blocks == 16 && model->feat_dim == 128);
        CHECK(model->blocks[0].has_down && model->blocks[0].down.stride == 1);
        CHECK(model->blocks[3].c2.stride == 2 && model->blocks[3].c1.stride == 1);
    }
    siamidx_model_free(model);
    fx_free(&m);

    tiny(&m);
    fx_set_meta(&m, "stages", "3");
    fx_set_meta(&m, "pooling", "style");
    fx_set_meta(&m, "style_stages", "2,3");
    fx_set_meta(&m, "embedding_dim", "48"); /* 2 * (8 + 16) */
    fx_del_meta(&m, "num_classes");
    CHECK_MSG(write_and_load(&m, SX_F32, &model, &err) == SIAMIDX_OK, "%s", err.message);
    if (model) {
        CHECK(model->n_stages == 3 && model->feat_dim == 16 && model->n_classes == 0);
        CHECK(siamidx_model_dim(model, SIAMIDX_POOL_DEFAULT) == 48);
        CHECK(siamidx_model_dim(model, SIAMIDX_POOL_GEM) == 16);
    }
    siamidx_model_free(model);
    fx_set_meta(&m, "embedding_dim", "32");
    expect_fail(&m, SIAMIDX_ERR_MODEL_FORMAT, "embedding_dim='32'", "48", NULL);
    fx_set_meta(&m, "embedding_dim", "48");
    fx_set_meta(&m, "style_stages", "2,4");
    expect_fail(&m, SIAMIDX_ERR_MODEL_FORMAT, "style_stages", NULL, NULL);
    fx_free(&m);
}

static void test_structure_errors(void) {
    fx_model m;
    tiny(&m);
    fx_remove(&m, "layer2.1.conv1.weight");
    expect_fail(&m, SIAMIDX_ERR_MODEL_FORMAT, "missing tensor 'layer2.1.conv1.weight'", "[8, 8, 3, 3]", NULL);
    fx_free(&m);

    tiny(&m);
    fx_remove(&m, "layer3.0.bn2.running_var");
    expect_fail(&m, SIAMIDX_ERR_MODEL_FORMAT, "layer3.0.bn2.running_var", "missing", NULL);
    fx_free(&m);

    tiny(&m);
    fx_remove(&m, "layer3.0.conv2.weight");
    int64_t wrong[4] = {16, 8, 3, 3};
    fx_add(&m, "layer3.0.conv2.weight", 4, wrong, 1);
    expect_fail(&m, SIAMIDX_ERR_MODEL_FORMAT, "'layer3.0.conv2.weight'", "[16, 8, 3, 3]", "[16, 16, 3, 3]");
    fx_free(&m);

    tiny(&m);
    fx_remove(&m, "fc.bias");
    expect_fail(&m, SIAMIDX_ERR_MODEL_FORMAT, "fc.bias", NULL, NULL);
    fx_free(&m);

    tiny(&m);
    int64_t extra[4] = {4, 4, 3, 3};
    fx_add(&m, "layer1.2.conv1.weight", 4, extra, 1);
    expect_fail(&m, SIAMIDX_ERR_MODEL_FORMAT, "unexpected tensor 'layer1.2.conv1.weight'", NULL, NULL);
    fx_free(&m);

    fx_resnet(&m, "resnet34", 4, 0, 1); /* resnet34 weights labelled resnet18 */
    fx_set_meta(&m, "arch", "resnet18");
    expect_fail(&m, SIAMIDX_ERR_MODEL_FORMAT, "unexpected tensor 'layer1.2.", NULL, NULL);
    fx_free(&m);

    static const char *const required[] = {"format", "format_version", "arch", "input_size",
                                           "resize", "resize_policy", "mean", "std", "pooling",
                                           "embedding_dim"};
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        char want[64];
        snprintf(want, sizeof want, "metadata key '%s' is missing", required[i]);
        tiny(&m);
        fx_del_meta(&m, required[i]);
        expect_fail(&m, SIAMIDX_ERR_MODEL_FORMAT, want, NULL, NULL);
        fx_free(&m);
    }
    tiny(&m);
    fx_set_meta(&m, "mean", "0.5,0.5");
    expect_fail(&m, SIAMIDX_ERR_MODEL_FORMAT, "mean='0.5,0.5'", NULL, NULL);
    fx_set_meta(&m, "mean", "0.5,0.5,0.5");
    fx_set_meta(&m, "num_classes", "11");
    expect_fail(&m, SIAMIDX_ERR_MODEL_FORMAT, "num_classes='11'", NULL, NULL);
    fx_free(&m);
}

static void test_file_errors(void) {
    fx_model m;
    siamidx_error err;
    siamidx_model *model = NULL;
    tiny(&m);
    CHECK(fx_write(&m, tmp_model, SX_F32, &err) == SIAMIDX_OK);
    fx_free(&m);
    size_t n = 0;
    unsigned char *bytes = read_bytes(tmp_model, &n);

    write_bytes(tmp_model, bytes, n / 2); /* truncated inside the data */
    CHECK(siamidx_model_load(tmp_model, &model, &err) == SIAMIDX_ERR_MODEL_FORMAT && !model);
    CHECK_MSG(strstr(err.message, "truncated") && strstr(err.message, "tensor '"), "%s", err.message);

    write_bytes(tmp_model, bytes, 5);
    CHECK(siamidx_model_load(tmp_model, &model, &err) == SIAMIDX_ERR_MODEL_FORMAT);
    CHECK_MSG(strstr(err.message, "too short"), "%s", err.message);

    write_bytes(tmp_model, bytes, 200); /* header length past the end of the file */
    CHECK(siamidx_model_load(tmp_model, &model, &err) == SIAMIDX_ERR_MODEL_FORMAT);
    CHECK_MSG(strstr(err.message, "header length") && strstr(err.message, "200-byte"), "%s", err.message);

    bytes[8 + 1] = '#'; /* damage the JSON: {"__metadata__... becomes {#__metadata__... */
    write_bytes(tmp_model, bytes, n);
    CHECK(siamidx_model_load(tmp_model, &model, &err) == SIAMIDX_ERR_MODEL_FORMAT);
    CHECK_MSG(strstr(err.message, "at byte 9:"), "%s", err.message);
    free(bytes);

    CHECK(siamidx_model_load("/nonexistent/model.safetensors", &model, &err) == SIAMIDX_ERR_IO);
    CHECK(strstr(err.message, "/nonexistent/model.safetensors") != NULL);
    tiny(&m);
    CHECK(fx_write(&m, "/nonexistent/dir/x.safetensors", SX_F32, &err) == SIAMIDX_ERR_IO);
    fx_free(&m);
}

static void test_bad_headers(void) {
    static const struct { const char *json; const char *want; } cases[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},}", "at byte 62: expected '\"'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", "fraction"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} x", "trailing"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"offsets\":[0,4]}}", "unknown field 'offsets'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", "lacks data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\" \"shape\":[1],\"data_offsets\":[0,4]}}", "expected ',' or '}'"},
        {"{\"a\" {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", "at byte 13: expected ':'"},
        {"{\"a\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}", "tensor 'a' has dtype I64"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", "tensor 'a'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[2,6]}}", "overlap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", "outside"},
        {"{\"__metadata__\":{\"k\":1}}", "must be strings"},
        {"{\"__metadata__\":{\"k\":\"\\x\"}}", "bad escape"},
        {"{\"__metadata__\":{\"k\":\"\\ud800\"}}", "surrogate"},
        {"[1]", "not a JSON object"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", "appears twice"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        siamidx_error err = {0};
        siamidx_status s = load_raw_header(cases[i].json, 8, &err);
        CHECK_MSG(s == SIAMIDX_ERR_MODEL_FORMAT, "case %zu accepted", i);
        CHECK_MSG(strstr(err.message, cases[i].want), "case %zu: '%s' not in: %s", i,
                  cases[i].want, err.message);
    }
    /* A well-formed header with escapes and metadata parses. */
    siamidx_error err;
    const char *ok = "{\"__metadata__\":{\"k\\u00e9\":\"a\\\"b\\n\"},"
                     "\"t\\/x\":{\"shape\":[2],\"dtype\":\"F16\",\"data_offsets\":[0,4]}}";
    CHECK_MSG(load_raw_header(ok, 4, &err) == SIAMIDX_OK, "%s", err.message);
    sx_safetensors st;
    if (sx_safetensors_open(tmp_model, &st, &err) == SIAMIDX_OK) {
        CHECK(st.n_tensors == 1 && sx_safetensors_find(&st, "t/x") != NULL);
        CHECK(sx_safetensors_meta(&st, "k\xc3\xa9") && !strcmp(sx_safetensors_meta(&st, "k\xc3\xa9"), "a\"b\n"));
        sx_safetensors_close(&st);
    }
    /* No tensors, no metadata (found by fuzz/fuzz_model.c): the empty arrays
       are NULL, which qsort and bsearch must not see (UBSan: nonnull). */
    CHECK_MSG(load_raw_header("{}", 0, &err) == SIAMIDX_OK, "%s", err.message);
    if (sx_safetensors_open(tmp_model, &st, &err) == SIAMIDX_OK) {
        CHECK(st.n_tensors == 0 && st.n_meta == 0);
        CHECK(sx_safetensors_find(&st, "conv1.weight") == NULL);
        CHECK(sx_safetensors_meta(&st, "arch") == NULL);
        sx_safetensors_close(&st);
    }
    siamidx_model *m = NULL;
    CHECK(siamidx_model_load(tmp_model, &m, &err) == SIAMIDX_ERR_MODEL_FORMAT && m == NULL);
}

/* The same (half-exact) weights stored as F32, F16 and BF16 load to identical models. */
static void test_dtype_equivalence(void) {
    sx_dtype kinds[2] = {SX_F16, SX_BF16};
    for (int k = 0; k < 2; k++) {
        fx_model m;
        siamidx_model *a = NULL, *b = NULL;
        siamidx_error err;
        tiny(&m);
        for (size_t i = 0; i < m.n; i++) {
            float *d = (float *)m.t[i].data;
            for (int64_t j = 0; j < fx_numel(&m.t[i]); j++)
                d[j] = kinds[k] == SX_F16 ? sx_f16_to_f32(sx_f32_to_f16(d[j]))
                                          : sx_bf16_to_f32(sx_f32_to_bf16(d[j]));
        }
        CHECK_MSG(write_and_load(&m, SX_F32, &a, &err) == SIAMIDX_OK, "%s", err.message);
        CHECK_MSG(write_and_load(&m, kinds[k], &b, &err) == SIAMIDX_OK, "%s", err.message);
        if (a && b) {
            CHECK(a->n_params == b->n_params);
            CHECK_MSG(!memcmp(a->weights, b->weights, a->n_params * sizeof(float)),
                      "%s weights differ from F32", sx_dtype_name(kinds[k]));
        }
        siamidx_model_free(a);
        siamidx_model_free(b);
        fx_free(&m);
    }
}

/* Direct convolution of one image, no padding tricks: out[o][y][x]. */
static double conv_at(const float *w, const float *x, int cin, int h, int wd, int k, int stride,
                      int pad, int o, int oy, int ox) {
    double acc = 0;
    for (int c = 0; c < cin; c++)
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++) {
                int iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
                if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
                acc += (double)w[((o * cin + c) * k + ky) * k + kx] * x[(c * h + iy) * wd + ix];
            }
    return acc;
}

/* "layer1.0.bn1.weight" -> "layer1.0.bn1" when the tensor is a BatchNorm scale. */
static int bn_prefix(const char *name, char *out, size_t cap) {
    size_t len = strlen(name);
    if (len < 8 || strcmp(name + len - 7, ".weight")) return 0;
    if (!strstr(name, "bn") && !strstr(name, "downsample.1")) return 0;
    snprintf(out, cap, "%.*s", (int)(len - 7), name);
    return 1;
}

/* "layer1.0.bn1" -> "layer1.0.conv1", "bn1" -> "conv1", "...downsample.1" -> "...downsample.0". */
static void bn_to_conv(const char *bn, char *out, size_t cap) {
    const char *last = strrchr(bn, '.');
    last = last ? last + 1 : bn;
    if (!strncmp(last, "bn", 2))
        snprintf(out, cap, "%.*sconv%s", (int)(last - bn), bn, last + 2);
    else
        snprintf(out, cap, "%.*s0", (int)(last - bn), bn);
}

/* Replaces BatchNorm `bn` after `conv` by scaled conv weights and a conv bias, as the loader folds. */
static const char *conv_weight_name(const char *conv, char *out, size_t cap) {
    snprintf(out, cap, "%s.weight", conv);
    return out;
}

static void fold_into_bias(fx_model *f, const char *conv, const char *bn) {
    char key[160];
    const float *p[4];
    const char *fields[4] = {"weight", "bias", "running_mean", "running_var"};
    for (int q = 0; q < 4; q++) {
        snprintf(key, sizeof key, "%s.%s", bn, fields[q]);
        p[q] = fx_find(f, key)->data;
    }
    snprintf(key, sizeof key, "%s.weight", conv);
    sx_tensor_out *cw = fx_find(f, key);
    int64_t cout = cw->shape[0], per = fx_numel(cw) / cout;
    snprintf(key, sizeof key, "%s.bias", conv);
    fx_add(f, key, 1, &cout, 0);
    float *w = (float *)fx_find(f, conv_weight_name(conv, key, sizeof key))->data;
    snprintf(key, sizeof key, "%s.bias", conv);
    float *bias = (float *)fx_find(f, key)->data;
    for (int64_t o = 0; o < cout; o++) {
        double scale = p[0][o] / sqrt(p[3][o] + 1e-5);
        for (int64_t j = 0; j < per; j++) w[o * per + j] = (float)(w[o * per + j] * scale);
        bias[o] = (float)((0.0 - p[2][o]) * scale + p[1][o]);
    }
    for (int q = 0; q < 4; q++) {
        snprintf(key, sizeof key, "%s.%s", bn, fields[q]);
        fx_remove(f, key);
    }
}

static void test_bn_folding(void) {
    fx_model m;
    siamidx_model *model;
    siamidx_error err;
    tiny(&m);
    CHECK_MSG(write_and_load(&m, SX_F32, &model, &err) == SIAMIDX_OK, "%s", err.message);
    if (!model) { fx_free(&m); return; }
    const float *w = fx_find(&m, "conv1.weight")->data;
    const float *g = fx_find(&m, "bn1.weight")->data, *beta = fx_find(&m, "bn1.bias")->data;
    const float *mean = fx_find(&m, "bn1.running_mean")->data;
    const float *var = fx_find(&m, "bn1.running_var")->data;
    int h = 12, wd = 10;
    float *x = fx_input(1, h, wd, 99);
    double worst = 0;
    for (int o = 0; o < 4; o++)
        for (int oy = 0; oy < 6; oy++)
            for (int ox = 0; ox < 5; ox++) {
                double y = conv_at(w, x, 3, h, wd, 7, 2, 3, o, oy, ox);
                double bn = (y - mean[o]) / sqrt((double)var[o] + 1e-5) * g[o] + beta[o];
                double folded = conv_at(model->stem.w, x, 3, h, wd, 7, 2, 3, o, oy, ox) +
                                model->stem.b[o];
                if (fabs(bn - folded) > worst) worst = fabs(bn - folded);
            }
    CHECK_MSG(worst < 1e-5, "folded stem differs from conv+BN by %g", worst);
    free(x);

    /* The folded form (convX.bias, no bn tensors) loads to the same weights. */
    fx_model f;
    tiny(&f);
    for (size_t i = 0; i < f.n; i++) {
        char bn[96], conv[96];
        if (!bn_prefix(f.t[i].name, bn, sizeof bn)) continue;
        bn_to_conv(bn, conv, sizeof conv);
        fold_into_bias(&f, conv, bn);
        i = (size_t)-1; /* the list changed under us: start over */
    }
    CHECK(fx_find(&f, "bn1.weight") == NULL && fx_find(&f, "layer2.0.downsample.0.bias") != NULL);
    siamidx_model *folded;
    CHECK_MSG(write_and_load(&f, SX_F32, &folded, &err) == SIAMIDX_OK, "%s", err.message);
    if (folded) {
        CHECK(folded->n_params == model->n_params);
        CHECK_MSG(!memcmp(folded->weights, model->weights, model->n_params * sizeof(float)),
                  "folded-form model differs from the BatchNorm model");
        CHECK(strcmp(folded->fingerprint, model->fingerprint) != 0);
    }
    siamidx_model_free(folded);
    fx_free(&f);
    siamidx_model_free(model);
    fx_free(&m);
}

static void test_fingerprint(void) {
    fx_model m;
    siamidx_model *a = NULL, *b = NULL, *c = NULL, *d = NULL;
    siamidx_error err;
    tiny(&m);
    CHECK(write_and_load(&m, SX_F32, &a, &err) == SIAMIDX_OK);
    CHECK(write_and_load(&m, SX_F32, &b, &err) == SIAMIDX_OK);
    ((float *)fx_find(&m, "layer3.1.conv2.weight")->data)[5] += 1e-3f;
    CHECK(write_and_load(&m, SX_F32, &c, &err) == SIAMIDX_OK);
    ((float *)fx_find(&m, "layer3.1.conv2.weight")->data)[5] -= 1e-3f;
    fx_set_meta(&m, "mean", "0.5,0.456,0.406");
    CHECK(write_and_load(&m, SX_F32, &d, &err) == SIAMIDX_OK);
    if (a && b && c && d) {
        CHECK(!strcmp(a->fingerprint, b->fingerprint));
        CHECK(strcmp(a->fingerprint, c->fingerprint) != 0);
        CHECK(strcmp(a->fingerprint, d->fingerprint) != 0);
    }
    siamidx_model_free(a);
    siamidx_model_free(b);
    siamidx_model_free(c);
    siamidx_model_free(d);
    fx_free(&m);
}

/* [n,3,h,w] with every row reversed. */
static float *mirrored(const float *x, int n, int h, int w) {
    float *m = malloc(sizeof *m * (size_t)n * 3 * h * w);
    for (size_t r = 0; m && r < (size_t)n * 3 * h; r++)
        for (int i = 0; i < w; i++) m[r * w + i] = x[r * w + w - 1 - i];
    return m;
}

static float max_abs_diff(const float *a, const float *b, size_t n) {
    float d = 0;
    for (size_t i = 0; i < n; i++) d = fmaxf(d, fabsf(a[i] - b[i]));
    return d;
}

/* Runs `model` on x [2,3,S,S] for `what`; out holds 2 * dim floats. */
static void run2(const siamidx_model *model, const float *x, int s, sx_encoder_output what,
                 float *out) {
    sx_encoder *enc = NULL;
    siamidx_error err;
    CHECK_MSG(sx_encoder_new(model, 2, s, s, &enc, &err) == SIAMIDX_OK, "%s", err.message);
    if (enc)
        CHECK_MSG(sx_encoder_run(enc, x, 2, what, SIAMIDX_POOL_DEFAULT, out, &err) == SIAMIDX_OK,
                  "%s", err.message);
    sx_encoder_free(enc);
}

/* test_views=flip: the embedding is the normalised mean of the image's and its mirror's
 * pooled features, so an image and its mirror embed alike; it is part of the fingerprint. */
static void test_flip_view(void) {
    fx_model m;
    siamidx_model *plain = NULL, *none = NULL, *flip = NULL;
    siamidx_error err;
    enum { S = 40 };
    tiny(&m);
    CHECK(write_and_load(&m, SX_F32, &plain, &err) == SIAMIDX_OK);
    fx_set_meta(&m, "test_views", "none");
    CHECK(write_and_load(&m, SX_F32, &none, &err) == SIAMIDX_OK);
    fx_set_meta(&m, "test_views", "flip");
    CHECK_MSG(write_and_load(&m, SX_F32, &flip, &err) == SIAMIDX_OK, "%s", err.message);
    fx_set_meta(&m, "test_views", "rotate");
    expect_fail(&m, SIAMIDX_ERR_MODEL_FORMAT, "test_views='rotate'", "none or flip", NULL);
    fx_free(&m);
    if (!plain || !none || !flip) goto out;
    CHECK(!strcmp(plain->fingerprint, none->fingerprint));
    CHECK(strcmp(plain->fingerprint, flip->fingerprint) != 0);

    size_t dim = siamidx_model_dim(flip, SIAMIDX_POOL_DEFAULT);
    float *x = fx_input(2, S, S, 5), *xm = mirrored(x, 2, S, S);
    float *e = calloc(2 * dim, sizeof *e), *em = calloc(2 * dim, sizeof *e);
    float *p = calloc(2 * dim, sizeof *p), *pm = calloc(2 * dim, sizeof *p);
    run2(plain, x, S, SX_OUT_EMBEDDING, e);
    run2(plain, xm, S, SX_OUT_EMBEDDING, em);
    CHECK_MSG(max_abs_diff(e, em, 2 * dim) > 1e-3f, "the fixture is mirror symmetric already");
    run2(flip, x, S, SX_OUT_EMBEDDING, e);
    run2(flip, xm, S, SX_OUT_EMBEDDING, em);
    CHECK_MSG(max_abs_diff(e, em, 2 * dim) < 1e-5f, "image and mirror differ by %g",
              max_abs_diff(e, em, 2 * dim));
    run2(plain, x, S, SX_OUT_POOLED, p); /* avg pooling: the embedding is the pooled row */
    run2(plain, xm, S, SX_OUT_POOLED, pm);
    for (int i = 0; i < 2; i++) {
        double norm = 0;
        for (size_t t = 0; t < dim; t++) {
            p[i * dim + t] += pm[i * dim + t];
            norm += (double)p[i * dim + t] * p[i * dim + t];
        }
        for (size_t t = 0; t < dim; t++) p[i * dim + t] /= (float)sqrt(norm);
    }
    CHECK_MSG(max_abs_diff(e, p, 2 * dim) < 1e-5f, "flip embedding is not the mean of both views");
    run2(flip, x, S, SX_OUT_POOLED, pm); /* raw outputs stay one view */
    run2(plain, x, S, SX_OUT_POOLED, p);
    CHECK(max_abs_diff(p, pm, 2 * dim) == 0.0f);
    free(x), free(xm), free(e), free(em), free(p), free(pm);
out:
    siamidx_model_free(plain);
    siamidx_model_free(none);
    siamidx_model_free(flip);
}

void openblas_set_num_threads(int);
int openblas_get_num_threads(void);

/* A model transforms its Winograd weights on first use by a single-threaded
 * OpenBLAS, not at load, and that path agrees with a SIAMIDX_WINOGRAD=0 model. */
static void test_lazy_winograd(void) {
    fx_model m;
    siamidx_model *lazy = NULL, *off = NULL;
    siamidx_error err;
    enum { S = 40 }; /* layer1 at 10x10: 2 x 9 tiles of 4x4, enough to take it */
    tiny(&m);
    unsetenv("SIAMIDX_WINOGRAD");
    CHECK(write_and_load(&m, SX_F32, &lazy, &err) == SIAMIDX_OK);
    setenv("SIAMIDX_WINOGRAD", "0", 1);
    CHECK(write_and_load(&m, SX_F32, &off, &err) == SIAMIDX_OK);
    unsetenv("SIAMIDX_WINOGRAD");
    fx_free(&m);
    if (!lazy || !off) goto out;
    CHECK(lazy->wino_tile == 4 && off->wino_tile == 0);
    CHECK_MSG(lazy->n_wino > 0 && sx_model_winograd_made(lazy) == 0,
              "Winograd weights transformed at load");
    int threads = openblas_get_num_threads();
    size_t dim = siamidx_model_dim(lazy, SIAMIDX_POOL_DEFAULT);
    float *x = fx_input(2, S, S, 9), *a = calloc(2 * dim, sizeof *a), *b = calloc(2 * dim, sizeof *b);
    openblas_set_num_threads(1);
    run2(lazy, x, S, SX_OUT_POOLED, a);
    CHECK_MSG(sx_model_winograd_made(lazy) > 0,
              "a single-threaded forward pass did not take Winograd");
    run2(off, x, S, SX_OUT_POOLED, b);
    CHECK(off->n_wino == 0 && sx_model_winograd_made(off) == 0 &&
          !sx_model_winograd_ready(off, &off->blocks[0].c1));
    openblas_set_num_threads(threads);
    float scale = 0;
    for (size_t i = 0; i < 2 * dim; i++) scale = fmaxf(scale, fabsf(b[i]));
    CHECK_MSG(scale > 0 && max_abs_diff(a, b, 2 * dim) <= 1e-4f * scale,
              "Winograd and im2col differ by %g (scale %g)", max_abs_diff(a, b, 2 * dim), scale);
    free(x), free(a), free(b);
out:
    siamidx_model_free(lazy);
    siamidx_model_free(off);
}

/* The committed tiny models load, and the C writer reproduces them byte for byte. */
static void test_committed_tiny(void) {
    const char *data = getenv("SIAMIDX_TEST_DATA");
    if (!data) return;
    const char *archs[2] = {"resnet18", "resnet50"};
    const size_t dims[2] = {32, 128};
    for (int i = 0; i < 2; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/model/tiny_%s.safetensors", data, archs[i]);
        siamidx_model *model;
        siamidx_error err;
        CHECK_MSG(siamidx_model_load(path, &model, &err) == SIAMIDX_OK, "%s", err.message);
        if (model) {
            CHECK(siamidx_model_num_classes(model) == 10);
            CHECK(siamidx_model_dim(model, SIAMIDX_POOL_DEFAULT) == dims[i]);
        }
        siamidx_model_free(model);
        fx_model m;
        fx_resnet(&m, archs[i], 4, 10, 16);
        fx_set_meta(&m, "source", "random seed=16 width=4");
        CHECK(fx_write(&m, tmp_model, SX_F16, &err) == SIAMIDX_OK);
        fx_free(&m);
        size_t na = 0, nb = 0;
        unsigned char *a = read_bytes(path, &na), *b = read_bytes(tmp_model, &nb);
        CHECK_MSG(a && b && na == nb && !memcmp(a, b, na),
                  "C writer output differs from tools/make_fixtures.py's %s", path);
        free(a);
        free(b);
    }
}

int main(void) {
    fx_tmp_path(tmp_model, sizeof tmp_model, "test_model.safetensors");
    test_half_conversions();
    test_load_tiny();
    test_variants();
    test_structure_errors();
    test_file_errors();
    test_bad_headers();
    test_dtype_equivalence();
    test_bn_folding();
    test_fingerprint();
    test_flip_view();
    test_lazy_winograd();
    test_committed_tiny();
    remove(tmp_model);
    CHECK_DONE();
}

/*
 * fixture_model.h - deterministic ResNet model files for tests.
 *
 * The C twin of tools/resnet_fixture.py + convert_torchvision.build_metadata:
 * for the same arguments it produces a byte-identical safetensors file, so
 * tests can rebuild the full-size models tools/make_fixtures.py ran through
 * torchvision without committing hundreds of megabytes of weights.
 *
 *   per tensor  seed = FNV-1a-64(name) ^ global seed
 *   value i     x = splitmix64 output i+1;  u = (x >> 40) * 2^-24
 *               v = (float)(lo + (hi - lo) * u), computed in double
 *   ranges      ndim >= 2: +-sqrt(3 / fan_in); 1-d *.weight, *.running_var:
 *               [0.5, 1.5]; other 1-d: [-0.1, 0.1]; inputs: [-2, 2]
 *
 * Header-only (static functions): each test includes it once.
 */
#ifndef SIAMIDX_FIXTURE_MODEL_H
#define SIAMIDX_FIXTURE_MODEL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "nn/safetensors.h"

#define FX_SEED 2024u

static inline uint64_t fx_fnv1a64(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

/* One rounding of lo + (hi - lo) * u each; volatile keeps the compiler from fusing an FMA. */
static inline float fx_map(double lo, double hi, double u) {
    volatile double t = (hi - lo) * u;
    volatile double v = lo + t;
    return (float)v;
}

static inline void fx_uniform(const char *name, uint64_t seed, float *out, size_t n, double lo, double hi) {
    uint64_t state = fx_fnv1a64(name) ^ seed;
    for (size_t i = 0; i < n; i++) {
        uint64_t z = (state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        out[i] = fx_map(lo, hi, (double)(z >> 40) * 0x1p-24);
    }
}

/* [n, 3, h, w] in [-2, 2]; image j is tensor "input.{h}x{w}.{j}" whatever n is. */
static inline float *fx_input(int n, int h, int w, uint64_t seed) {
    size_t per = (size_t)3 * h * w;
    float *x = malloc((size_t)n * per * sizeof *x);
    for (int j = 0; x && j < n; j++) {
        char name[64];
        snprintf(name, sizeof name, "input.%dx%d.%d", h, w, j);
        fx_uniform(name, seed, x + (size_t)j * per, per, -2.0, 2.0);
    }
    return x;
}

/* ---- a model under construction ------------------------------------------------ */

#define FX_MAX_META 24

typedef struct fx_model {
    sx_tensor_out *t; /* names and data owned here */
    size_t n, cap;
    sx_meta_entry meta[FX_MAX_META];
    size_t n_meta;
} fx_model;

static inline void fx_free(fx_model *m) {
    for (size_t i = 0; i < m->n; i++) {
        free((char *)m->t[i].name);
        free((float *)m->t[i].data);
    }
    for (size_t i = 0; i < m->n_meta; i++) {
        free(m->meta[i].key);
        free(m->meta[i].value);
    }
    free(m->t);
    memset(m, 0, sizeof *m);
}

static inline int64_t fx_numel(const sx_tensor_out *t) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

static inline sx_tensor_out *fx_find(fx_model *m, const char *name) {
    for (size_t i = 0; i < m->n; i++)
        if (!strcmp(m->t[i].name, name)) return &m->t[i];
    return NULL;
}

static inline void fx_remove(fx_model *m, const char *name) {
    sx_tensor_out *t = fx_find(m, name);
    if (!t) return;
    free((char *)t->name);
    free((float *)t->data);
    size_t i = (size_t)(t - m->t);
    memmove(t, t + 1, (m->n - i - 1) * sizeof *t);
    m->n--;
}

/* Appends a tensor filled by the generator. */
static inline void fx_add(fx_model *m, const char *name, int ndim, const int64_t *shape, uint64_t seed) {
    if (m->n == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 64;
        m->t = realloc(m->t, m->cap * sizeof *m->t);
    }
    sx_tensor_out *t = &m->t[m->n++];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    size_t n = (size_t)fx_numel(t);
    float *data = malloc((n ? n : 1) * sizeof *data);
    double lo = -0.1, hi = 0.1;
    size_t len = strlen(name);
    if (ndim >= 2) {
        hi = sqrt(3.0 / (double)(n / (size_t)shape[0]));
        lo = -hi;
    } else if ((len > 7 && !strcmp(name + len - 7, ".weight")) ||
               (len > 12 && !strcmp(name + len - 12, ".running_var"))) {
        lo = 0.5;
        hi = 1.5;
    }
    fx_uniform(name, seed, data, n, lo, hi);
    t->data = data;
}

static inline void fx_set_meta(fx_model *m, const char *key, const char *value) {
    for (size_t i = 0; i < m->n_meta; i++)
        if (!strcmp(m->meta[i].key, key)) {
            free(m->meta[i].value);
            m->meta[i].value = strdup(value);
            return;
        }
    if (m->n_meta == FX_MAX_META) return;
    m->meta[m->n_meta].key = strdup(key);
    m->meta[m->n_meta++].value = strdup(value);
}

static inline void fx_del_meta(fx_model *m, const char *key) {
    for (size_t i = 0; i < m->n_meta; i++)
        if (!strcmp(m->meta[i].key, key)) {
            free(m->meta[i].key);
            free(m->meta[i].value);
            m->meta[i] = m->meta[--m->n_meta];
            return;
        }
}

static inline void fx_conv(fx_model *m, const char *name, const char *bn, int64_t cout, int64_t cin,
                    int64_t k, uint64_t seed) {
    char key[128];
    int64_t shape[4] = {cout, cin, k, k};
    snprintf(key, sizeof key, "%s.weight", name);
    fx_add(m, key, 4, shape, seed);
    static const char *const fields[] = {"weight", "bias", "running_mean", "running_var"};
    for (int i = 0; i < 4; i++) {
        snprintf(key, sizeof key, "%s.%s", bn, fields[i]);
        fx_add(m, key, 1, &cout, seed);
    }
}

/*
 * A torchvision ResNet state_dict (without num_batches_tracked) in
 * torchvision's order, stem width `width` (64: torchvision), with fc of
 * `classes` rows (0: no fc), plus the metadata the converter writes.
 */
static inline void fx_resnet(fx_model *m, const char *arch, int width, int classes, uint64_t seed) {
    static const struct { const char *name; int bottleneck, blocks[4]; } specs[] = {
        {"resnet18", 0, {2, 2, 2, 2}}, {"resnet34", 0, {3, 4, 6, 3}},
        {"resnet50", 1, {3, 4, 6, 3}}, {"resnet101", 1, {3, 4, 23, 3}},
        {"resnet152", 1, {3, 8, 36, 3}},
    };
    int spec = 0;
    for (int i = 0; i < 5; i++)
        if (!strcmp(arch, specs[i].name)) spec = i;
    int bottleneck = specs[spec].bottleneck, exp = bottleneck ? 4 : 1;
    memset(m, 0, sizeof *m);
    fx_conv(m, "conv1", "bn1", width, 3, 7, seed);
    int cin = width;
    char c[96], b[96];
    for (int s = 1; s <= 4; s++) {
        int planes = width << (s - 1);
        for (int i = 0; i < specs[spec].blocks[s - 1]; i++) {
            int nconv = bottleneck ? 3 : 2;
            for (int k = 1; k <= nconv; k++) {
                snprintf(c, sizeof c, "layer%d.%d.conv%d", s, i, k);
                snprintf(b, sizeof b, "layer%d.%d.bn%d", s, i, k);
                int ci = k == 1 ? cin : planes, co = (k == nconv) ? planes * exp : planes;
                int ks = bottleneck && k != 2 ? 1 : 3;
                fx_conv(m, c, b, co, ci, ks, seed);
            }
            if ((s > 1 && i == 0) || cin != planes * exp) {
                snprintf(c, sizeof c, "layer%d.%d.downsample.0", s, i);
                snprintf(b, sizeof b, "layer%d.%d.downsample.1", s, i);
                fx_conv(m, c, b, planes * exp, cin, 1, seed);
            }
            cin = planes * exp;
        }
    }
    char v[64];
    if (classes > 0) {
        int64_t shape[2] = {classes, cin}, rows = classes;
        fx_add(m, "fc.weight", 2, shape, seed);
        fx_add(m, "fc.bias", 1, &rows, seed);
        snprintf(v, sizeof v, "%d", classes);
        fx_set_meta(m, "num_classes", v);
    }
    fx_set_meta(m, "format", "siamidx");
    fx_set_meta(m, "format_version", "1");
    fx_set_meta(m, "arch", arch);
    fx_set_meta(m, "stages", "4");
    fx_set_meta(m, "input_size", "224");
    fx_set_meta(m, "resize", "256");
    fx_set_meta(m, "resize_policy", "shorter_center_crop");
    fx_set_meta(m, "mean", "0.485,0.456,0.406");
    fx_set_meta(m, "std", "0.229,0.224,0.225");
    fx_set_meta(m, "pooling", "avg");
    snprintf(v, sizeof v, "%d", cin);
    fx_set_meta(m, "embedding_dim", v);
}

static inline siamidx_status fx_write(const fx_model *m, const char *path, sx_dtype dtype,
                               siamidx_error *err) {
    return sx_safetensors_write(path, m->meta, m->n_meta, m->t, m->n, dtype, err);
}

/* The parity fixture of tools/make_fixtures.py (full width, 1000 classes, F32). */
static inline siamidx_status fx_write_parity_model(const char *path, const char *arch, siamidx_error *err) {
    fx_model m;
    char source[64];
    fx_resnet(&m, arch, 64, 1000, FX_SEED);
    snprintf(source, sizeof source, "fixture seed=%u", FX_SEED);
    fx_set_meta(&m, "source", source);
    siamidx_status s = fx_write(&m, path, SX_F32, err);
    fx_free(&m);
    return s;
}

/* $SIAMIDX_TMP (created), else /tmp; `name` appended into `out`. */
static inline const char *fx_tmp_path(char *out, size_t cap, const char *name) {
    const char *dir = getenv("SIAMIDX_TMP");
    if (!dir || !*dir) dir = "/tmp";
    mkdir(dir, 0777);
    snprintf(out, cap, "%s/%s", dir, name);
    return out;
}

/* Reads a whole little-endian float32 file; *n receives the count. */
static inline float *fx_read_f32(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    float *data = size > 0 ? malloc((size_t)size) : NULL;
    if (data && fread(data, 1, (size_t)size, f) != (size_t)size) {
        free(data);
        data = NULL;
    }
    fclose(f);
    *n = data ? (size_t)size / sizeof(float) : 0;
    return data;
}

#endif

/*
 * model.c - a ResNet encoder loaded from a safetensors file.
 *
 * Tensor names are torchvision's state_dict names. Channel widths are not
 * assumed: they are read from conv1.weight and each stage's first block, and
 * every other shape is checked against them, so width-scaled models load and
 * a mismatching file is refused naming the tensor. BatchNorm is folded into
 * the convolutions here, once, so the forward pass is conv + bias only.
 * Files that were folded already (convX.bias, no bn tensors) load as well.
 *
 * Loading walks the architecture's units (nn/arch.h, the walk training
 * builds its network from too) twice with the same code: a sizing pass that
 * checks every name and shape, then a filling pass into one allocation.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "siamidx_ext.h"
#include "nn/model.h"
#include "nn/arch.h"
#include "nn/winograd.h"
#include "nn/safetensors.h"
#include "nn/gemm.h"
#include "base/sha256.h"
#include "base/error.h"

#ifndef SIAMIDX_INSTALLED_MODEL
#define SIAMIDX_INSTALLED_MODEL "/usr/local/share/siamidx/default.safetensors"
#endif
#ifndef SIAMIDX_SOURCE_MODEL
#define SIAMIDX_SOURCE_MODEL "models/default.safetensors"
#endif

/* ---- pooling names ------------------------------------------------------------- */

static const char *const pool_names[] = {"default", "avg", "max", "gem", "style"};

int siamidx_pool_from_name(const char *name) {
    for (int i = 0; name && i < (int)(sizeof pool_names / sizeof pool_names[0]); i++)
        if (!strcmp(name, pool_names[i])) return i;
    return -1;
}

const char *siamidx_pool_name(siamidx_pool pool) {
    if ((unsigned)pool >= sizeof pool_names / sizeof pool_names[0]) return "unknown";
    return pool_names[pool];
}

const char *siamidx_default_model_path(void) {
    if (access(SIAMIDX_INSTALLED_MODEL, R_OK) == 0) return SIAMIDX_INSTALLED_MODEL;
    return SIAMIDX_SOURCE_MODEL;
}

/* ---- metadata ---------------------------------------------------------------- */

static siamidx_status meta_get(const sx_safetensors *st, const char *path, const char *key,
                               const char **out, siamidx_error *err) {
    *out = sx_safetensors_meta(st, key);
    if (!*out)
        return sx_fail(err, SIAMIDX_ERR_MODEL_FORMAT,
                       "%s: metadata key '%s' is missing (write models with "
                       "tools/convert_torchvision.py)", path, key);
    return SIAMIDX_OK;
}

static siamidx_status bad_meta(const char *path, const char *key, const char *value,
                               const char *want, siamidx_error *err) {
    return sx_fail(err, SIAMIDX_ERR_MODEL_FORMAT, "%s: metadata %s='%s': expected %s", path, key,
                   value, want);
}

static int parse_int(const char *s, int lo, int hi, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > hi) return 0;
    *out = (int)v;
    return 1;
}

/* Comma-separated list of exactly `n` finite floats. */
static int parse_floats(const char *s, int n, float *out) {
    for (int i = 0; i < n; i++) {
        char *end;
        double v = strtod(s, &end);
        if (end == s || !isfinite(v)) return 0;
        out[i] = (float)v;
        s = end;
        if (i + 1 < n) {
            if (*s != ',') return 0;
            s++;
        }
    }
    return *s == 0;
}

static siamidx_status parse_preprocess(siamidx_model *m, const sx_safetensors *st,
                                       const char *path, siamidx_error *err) {
    const char *v;
    siamidx_status s;
    sx_preprocess_cfg *p = &m->pre;
    if ((s = meta_get(st, path, "input_size", &v, err))) return s;
    if (!parse_int(v, 16, 8192, &p->input_size))
        return bad_meta(path, "input_size", v, "an integer in 16..8192", err);
    if ((s = meta_get(st, path, "resize_policy", &v, err))) return s;
    if (!strcmp(v, "shorter_center_crop")) p->policy = SX_RESIZE_SHORTER_CROP;
    else if (!strcmp(v, "squash")) p->policy = SX_RESIZE_SQUASH;
    else return bad_meta(path, "resize_policy", v, "shorter_center_crop or squash", err);
    if ((s = meta_get(st, path, "resize", &v, err))) return s;
    if (!parse_int(v, 16, 16384, &p->resize_size) ||
        (p->policy == SX_RESIZE_SHORTER_CROP && p->resize_size < p->input_size))
        return bad_meta(path, "resize", v, "an integer >= input_size", err);
    if ((s = meta_get(st, path, "mean", &v, err))) return s;
    if (!parse_floats(v, 3, p->mean)) return bad_meta(path, "mean", v, "three numbers", err);
    if ((s = meta_get(st, path, "std", &v, err))) return s;
    if (!parse_floats(v, 3, p->std) || !(p->std[0] > 0 && p->std[1] > 0 && p->std[2] > 0))
        return bad_meta(path, "std", v, "three positive numbers", err);
    return SIAMIDX_OK;
}

static siamidx_status parse_pooling(siamidx_model *m, const sx_safetensors *st,
                                    const char *path, siamidx_error *err) {
    const char *v;
    siamidx_status s;
    if ((s = meta_get(st, path, "pooling", &v, err))) return s;
    int pool = siamidx_pool_from_name(v);
    if (pool <= SIAMIDX_POOL_DEFAULT) return bad_meta(path, "pooling", v, "avg, max, gem or style", err);
    m->pool = (siamidx_pool)pool;
    m->gem_p = 3.0f;
    if ((v = sx_safetensors_meta(st, "gem_p")) &&
        (!parse_floats(v, 1, &m->gem_p) || !(m->gem_p > 0)))
        return bad_meta(path, "gem_p", v, "a positive number", err);
    m->style_stages = 1u << (m->n_stages - 1);
    if ((v = sx_safetensors_meta(st, "style_stages"))) {
        m->style_stages = 0;
        const char *p = v;
        for (;;) {
            if (*p < '1' || *p > '0' + m->n_stages || (m->style_stages & (1u << (*p - '1'))))
                return bad_meta(path, "style_stages", v,
                                "distinct stage numbers, each at most 'stages'", err);
            m->style_stages |= 1u << (*p - '1');
            if (p[1] == 0) break;
            if (p[1] != ',') return bad_meta(path, "style_stages", v, "a list like 3,4", err);
            p += 2;
        }
    }
    if ((v = sx_safetensors_meta(st, "test_views"))) {
        if (!strcmp(v, "flip")) m->flip_view = 1;
        else if (strcmp(v, "none")) return bad_meta(path, "test_views", v, "none or flip", err);
    }
    return SIAMIDX_OK;
}

static siamidx_status parse_header_meta(siamidx_model *m, const sx_safetensors *st,
                                        const char *path, siamidx_error *err) {
    const char *v;
    siamidx_status s;
    if ((s = meta_get(st, path, "format", &v, err))) return s;
    if (strcmp(v, "siamidx")) return bad_meta(path, "format", v, "siamidx", err);
    if ((s = meta_get(st, path, "format_version", &v, err))) return s;
    if (strcmp(v, "1")) return bad_meta(path, "format_version", v, "1", err);
    if ((s = meta_get(st, path, "arch", &v, err))) return s;
    const sx_arch *a = sx_arch_find(v);
    if (!a) return bad_meta(path, "arch", v, SX_ARCH_NAMES, err);
    if (!(m->arch = strdup(v))) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "out of memory");
    m->bottleneck = a->bottleneck;
    m->n_stages = 4;
    if ((v = sx_safetensors_meta(st, "stages")) && !parse_int(v, 1, 4, &m->n_stages))
        return bad_meta(path, "stages", v, "1, 2, 3 or 4", err);
    m->n_blocks = 0;
    for (int i = 0; i < 4; i++) {
        m->stage_blocks[i] = i < m->n_stages ? a->blocks[i] : 0;
        m->n_blocks += m->stage_blocks[i];
    }
    if ((s = parse_preprocess(m, st, path, err))) return s;
    return parse_pooling(m, st, path, err);
}

/* ---- tensors ----------------------------------------------------------------- */

typedef struct loader {
    const sx_safetensors *st;
    const char *path;
    siamidx_error *err;
    uint8_t *used_tensor; /* per tensor: consumed by the architecture */
    float *arena;         /* NULL during the sizing pass */
    size_t n_floats;      /* floats carved so far */
} loader;

static void shape_str(const int64_t *shape, int ndim, char *out, size_t cap) {
    size_t o = (size_t)snprintf(out, cap, "[");
    for (int i = 0; i < ndim && o < cap; i++) {
        if (shape[i] < 0) o += (size_t)snprintf(out + o, cap - o, "%s?", i ? ", " : "");
        else o += (size_t)snprintf(out + o, cap - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    }
    if (o < cap) snprintf(out + o, cap - o, "]");
}

static const sx_tensor_info *lookup(loader *L, const char *name) {
    const sx_tensor_info *t = sx_safetensors_find(L->st, name);
    if (t) L->used_tensor[t - L->st->tensors] = 1;
    return t;
}

/* Finds `name` with shape `want` (-1: any); refuses naming expected vs found. */
static siamidx_status need(loader *L, const char *name, int ndim, const int64_t *want,
                           const sx_tensor_info **out) {
    char ws[96], fs[96];
    const sx_tensor_info *t = lookup(L, name);
    shape_str(want, ndim, ws, sizeof ws);
    if (!t)
        return sx_fail(L->err, SIAMIDX_ERR_MODEL_FORMAT, "%s: missing tensor '%s' (expected shape %s)",
                       L->path, name, ws);
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = want[i] < 0 || want[i] == t->shape[i];
    if (!ok) {
        shape_str(t->shape, t->ndim, fs, sizeof fs);
        return sx_fail(L->err, SIAMIDX_ERR_MODEL_FORMAT, "%s: tensor '%s' has shape %s, expected %s",
                       L->path, name, fs, ws);
    }
    *out = t;
    return SIAMIDX_OK;
}

static siamidx_status need_vec(loader *L, const char *prefix, const char *field, int64_t n,
                               const sx_tensor_info **out) {
    char name[160];
    snprintf(name, sizeof name, "%s.%s", prefix, field);
    return need(L, name, 1, &n, out);
}

static float *carve(loader *L, size_t n) {
    float *p = L->arena ? L->arena + L->n_floats : NULL;
    L->n_floats += n;
    return p;
}

/* BatchNorm `bn` (whose shapes the sizing pass checks) folded into c (sx_bn_fold). */
static siamidx_status fold_bn(loader *L, sx_conv *c, const char *bn, const sx_tensor_info *bias0) {
    const char *fields[4] = {"weight", "bias", "running_mean", "running_var"};
    const sx_tensor_info *t[4];
    for (int i = 0; i < 4; i++) {
        siamidx_status s = need_vec(L, bn, fields[i], c->cout, &t[i]);
        if (s) return s;
    }
    if (!L->arena) return SIAMIDX_OK;
    float *v = malloc(5 * (size_t)c->cout * sizeof *v); /* gamma, beta, mean, var, conv bias */
    if (!v) return sx_fail(L->err, SIAMIDX_ERR_NO_MEMORY, "out of memory");
    for (int i = 0; i < 4; i++) sx_safetensors_read_f32(L->st, t[i], v + (size_t)i * c->cout);
    float *b0 = bias0 ? v + 4 * (size_t)c->cout : NULL;
    if (b0) sx_safetensors_read_f32(L->st, bias0, b0);
    sx_bn_fold(c, c->w, b0, v, v + c->cout, v + 2 * (size_t)c->cout, v + 3 * (size_t)c->cout);
    free(v);
    return SIAMIDX_OK;
}

/* Loads conv `name`.weight [cout, cin, k, k] (cout < 0: inferred) and folds `bn` into it. */
static siamidx_status load_conv(loader *L, const char *name, const char *bn, int cin, int cout,
                                int k, int stride, int pad, sx_conv *c) {
    char key[160], bn_key[160];
    const sx_tensor_info *w, *b = NULL;
    int64_t want[4] = {cout, cin, k, k};
    snprintf(key, sizeof key, "%s.weight", name);
    siamidx_status s = need(L, key, 4, want, &w);
    if (s) return s;
    if (w->shape[0] < 1 || w->shape[0] > 65536)
        return sx_fail(L->err, SIAMIDX_ERR_MODEL_FORMAT, "%s: tensor '%s' has %lld output channels",
                       L->path, key, (long long)w->shape[0]);
    c->cin = cin;
    c->cout = (int)w->shape[0];
    c->k = k;
    c->stride = stride;
    c->pad = pad;
    size_t nw = (size_t)c->cout * (size_t)cin * (size_t)(k * k);
    c->w = carve(L, nw);
    c->b = carve(L, (size_t)c->cout);
    snprintf(key, sizeof key, "%s.bias", name);
    int has_bias = sx_safetensors_find(L->st, key) != NULL;
    if (has_bias && (s = need_vec(L, name, "bias", c->cout, &b))) return s;
    snprintf(bn_key, sizeof bn_key, "%s.weight", bn);
    int has_bn = sx_safetensors_find(L->st, bn_key) != NULL;
    if (!has_bn && !has_bias)
        return sx_fail(L->err, SIAMIDX_ERR_MODEL_FORMAT,
                       "%s: missing tensor '%s' (expected shape [%d]; or '%s' in a "
                       "BatchNorm-folded model)", L->path, bn_key, c->cout, key);
    if (L->arena) sx_safetensors_read_f32(L->st, w, c->w);
    if (has_bn) return fold_bn(L, c, bn, b);
    if (L->arena) sx_safetensors_read_f32(L->st, b, c->b);
    return SIAMIDX_OK;
}

static siamidx_status load_fc(loader *L, siamidx_model *m) {
    m->n_classes = 0;
    m->fc_w = m->fc_b = NULL;
    if (m->n_stages < 4 || !sx_safetensors_find(L->st, "fc.weight")) return SIAMIDX_OK;
    const sx_tensor_info *w, *b;
    int64_t want[2] = {-1, m->feat_dim};
    siamidx_status s = need(L, "fc.weight", 2, want, &w);
    if (s) return s;
    if (w->shape[0] < 1 || w->shape[0] > 1000000)
        return sx_fail(L->err, SIAMIDX_ERR_MODEL_FORMAT, "%s: tensor 'fc.weight' has %lld rows",
                       L->path, (long long)w->shape[0]);
    m->n_classes = (int)w->shape[0];
    if ((s = need(L, "fc.bias", 1, &w->shape[0], &b))) return s;
    m->fc_w = carve(L, (size_t)m->n_classes * (size_t)m->feat_dim);
    m->fc_b = carve(L, (size_t)m->n_classes);
    if (L->arena) {
        sx_safetensors_read_f32(L->st, w, m->fc_w);
        sx_safetensors_read_f32(L->st, b, m->fc_b);
    }
    return SIAMIDX_OK;
}

/* A block the architecture gives no projection must not come with one. */
static siamidx_status check_no_downsample(loader *L, const siamidx_model *m) {
    char name[96];
    for (int s = 0, bi = 0; s < m->n_stages; s++)
        for (int j = 0; j < m->stage_blocks[s]; j++, bi++) {
            snprintf(name, sizeof name, "layer%d.%d.downsample.0.weight", s + 1, j);
            if (!m->blocks[bi].has_down && sx_safetensors_find(L->st, name))
                return sx_fail(L->err, SIAMIDX_ERR_MODEL_FORMAT,
                               "%s: unexpected tensor '%s': the block keeps %d channels at "
                               "stride 1", L->path, name, m->blocks[bi].c1.cin);
        }
    return SIAMIDX_OK;
}

/* Every unit of the architecture (nn/arch.h); the widths come from the file's shapes. */
static siamidx_status load_network(loader *L, siamidx_model *m) {
    sx_arch_widths widths;
    sx_arch_widths_unknown(&widths);
    sx_arch_walk wk;
    sx_arch_unit u;
    sx_arch_walk_start(&wk, sx_arch_find(m->arch), m->n_stages, &widths, 0, 0);
    while (sx_arch_walk_next(&wk, &u)) {
        sx_conv *c = sx_model_unit_conv(m, &u);
        siamidx_status s =
            load_conv(L, u.conv, u.bn, u.cin, u.cout, u.k, u.stride, u.pad, c);
        if (s) return s;
        if (u.cout < 0) sx_arch_walk_learn(&wk, &u, c->cout);
    }
    memcpy(m->stage_channels, widths.out, sizeof m->stage_channels);
    for (int s = m->n_stages; s < 4; s++) m->stage_channels[s] = 0;
    m->feat_dim = widths.out[m->n_stages - 1];
    siamidx_status s = check_no_downsample(L, m);
    return s ? s : load_fc(L, m);
}

/* Tensors the architecture did not consume must be ones we knowingly skip. */
static siamidx_status check_leftovers(loader *L, const siamidx_model *m) {
    for (size_t i = 0; i < L->st->n_tensors; i++) {
        const char *name = L->st->tensors[i].name;
        if (L->used_tensor[i]) continue;
        size_t len = strlen(name);
        if (len >= 20 && !strcmp(name + len - 20, ".num_batches_tracked")) continue;
        if (!strncmp(name, "head.", 5)) continue; /* the Siamese head's */
        if (m->n_stages < 4) {
            if (!strncmp(name, "fc.", 3)) continue;
            if (!strncmp(name, "layer", 5) && name[5] > '0' + m->n_stages && name[5] <= '4' &&
                name[6] == '.')
                continue;
        }
        return sx_fail(L->err, SIAMIDX_ERR_MODEL_FORMAT,
                       "%s: unexpected tensor '%s' (not part of a %d-stage %s)", L->path, name,
                       m->n_stages, m->arch);
    }
    return SIAMIDX_OK;
}

static size_t style_dim(const siamidx_model *m) {
    size_t d = 0;
    for (int s = 0; s < m->n_stages; s++)
        if (m->style_stages & (1u << s)) d += 2 * (size_t)m->stage_channels[s];
    return d;
}

size_t siamidx_model_dim(const siamidx_model *model, siamidx_pool pool) {
    if (!model) return 0;
    if (pool == SIAMIDX_POOL_DEFAULT) pool = model->pool;
    return pool == SIAMIDX_POOL_STYLE ? style_dim(model) : (size_t)model->feat_dim;
}

static siamidx_status check_dims(const siamidx_model *m, const sx_safetensors *st,
                                 const char *path, siamidx_error *err) {
    const char *v;
    int dim, classes;
    siamidx_status s = meta_get(st, path, "embedding_dim", &v, err);
    if (s) return s;
    if (!parse_int(v, 1, 1 << 30, &dim) || (size_t)dim != siamidx_model_dim(m, m->pool))
        return sx_fail(err, SIAMIDX_ERR_MODEL_FORMAT,
                       "%s: metadata embedding_dim='%s' but %s pooling of this network gives %zu",
                       path, v, siamidx_pool_name(m->pool), siamidx_model_dim(m, m->pool));
    if ((v = sx_safetensors_meta(st, "num_classes")) &&
        (!parse_int(v, 0, 1 << 30, &classes) || classes != m->n_classes))
        return sx_fail(err, SIAMIDX_ERR_MODEL_FORMAT,
                       "%s: metadata num_classes='%s' but the model has %d (fc.weight rows)",
                       path, v, m->n_classes);
    return SIAMIDX_OK;
}

/* ---- fingerprint ----------------------------------------------------------------- */

static void hash_str(sx_sha256 *h, const char *s) { sx_sha256_update(h, s, strlen(s) + 1); }

static void hash_u64(sx_sha256 *h, uint64_t v) {
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
    sx_sha256_update(h, b, 8);
}

/* Over the stored tensors (sorted by name) and the settings that shape embeddings. */
static void fingerprint(siamidx_model *m, const sx_safetensors *st) {
    sx_sha256 h;
    sx_sha256_init(&h);
    hash_str(&h, "siamidx-model-v1");
    for (size_t i = 0; i < st->n_tensors; i++) {
        const sx_tensor_info *t = &st->tensors[i];
        if (!strncmp(t->name, "head.", 5)) continue; /* the head does not change embeddings */
        hash_str(&h, t->name);
        hash_str(&h, sx_dtype_name(t->dtype));
        hash_u64(&h, (uint64_t)t->ndim);
        for (int d = 0; d < t->ndim; d++) hash_u64(&h, (uint64_t)t->shape[d]);
        hash_u64(&h, t->end - t->begin);
        sx_sha256_update(&h, st->map + st->data_offset + t->begin, t->end - t->begin);
    }
    char cfg[512];
    const sx_preprocess_cfg *p = &m->pre;
    snprintf(cfg, sizeof cfg,
             "arch=%s stages=%d input=%d resize=%d policy=%d mean=%.9g,%.9g,%.9g "
             "std=%.9g,%.9g,%.9g pool=%s gem_p=%.9g style=%u",
             m->arch, m->n_stages, p->input_size, p->resize_size, (int)p->policy, p->mean[0],
             p->mean[1], p->mean[2], p->std[0], p->std[1], p->std[2], siamidx_pool_name(m->pool),
             m->gem_p, m->style_stages);
    hash_str(&h, cfg);
    /* Only when set, so that the fingerprints of earlier files (and the
       indexes built with them) do not change. */
    if (m->flip_view) hash_str(&h, "views=flip");
    uint8_t digest[32];
    sx_sha256_final(&h, digest);
    sx_hex(digest, 32, m->fingerprint);
}

/* ---- load / free ---------------------------------------------------------------- */

static siamidx_status copy_meta(siamidx_model *m, const sx_safetensors *st, siamidx_error *err) {
    m->meta = calloc(st->n_meta ? st->n_meta : 1, sizeof *m->meta);
    if (!m->meta) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "out of memory");
    for (size_t i = 0; i < st->n_meta; i++, m->n_meta++) {
        m->meta[i].key = strdup(st->meta[i].key);
        m->meta[i].value = strdup(st->meta[i].value);
        if (!m->meta[i].key || !m->meta[i].value) {
            m->n_meta++;
            return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "out of memory");
        }
    }
    return SIAMIDX_OK;
}

/* ---- packing for the GEMM kernel ------------------------------------------------ */

/* Calls fn on every convolution of the network. */
static void each_conv(siamidx_model *m, void (*fn)(sx_conv *c, void *ctx), void *ctx) {
    fn(&m->stem, ctx);
    for (int i = 0; i < m->n_blocks; i++) {
        sx_block *b = &m->blocks[i];
        fn(&b->c1, ctx);
        fn(&b->c2, ctx);
        if (m->bottleneck) fn(&b->c3, ctx);
        if (b->has_down) fn(&b->down, ctx);
    }
}

typedef struct packer {
    sx_cpu_path path;
    float *next; /* NULL: sizing */
    size_t floats;
} packer;

static void pack_one(sx_conv *c, void *ctx) {
    packer *p = ctx;
    const sx_gemm_kernel *g = sx_gemm_kernel_for(p->path, c->cout);
    /* 16-float multiples keep every conv's panels 64-byte aligned */
    size_t n = (sx_conv_packed_floats(c, g) + 15) & ~(size_t)15;
    if (p->next) {
        sx_conv_pack(c, g, p->next);
        p->next += n;
    }
    p->floats += n;
}

/*
 * Chooses the kernel (SIAMIDX_CPU, nn/cpu.h) and packs every convolution's
 * folded weights for it, once: the forward pass then never repacks them.
 */
static siamidx_status pack_weights(siamidx_model *m, const char *path, siamidx_error *err) {
    siamidx_status s = sx_cpu_choose(&m->cpu, err);
    if (s) {
        sx_error_prefix(err, "%s", path);
        return s;
    }
    packer p = {m->cpu, NULL, 0};
    if (m->cpu == SX_CPU_BLAS) return SIAMIDX_OK;
    each_conv(m, pack_one, &p);
    m->packed = aligned_alloc(64, p.floats * sizeof(float));
    if (!m->packed)
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "%s: out of memory for %zu packed weights", path,
                       p.floats);
    p.next = m->packed;
    p.floats = 0;
    each_conv(m, pack_one, &p);
    return SIAMIDX_OK;
}

/* Marks the 3x3 stride-1 convs for Winograd (c->wino_m sizes the encoders'
 * workspace; c->wino comes on first use) and lists them. */
typedef struct wino_marker {
    siamidx_model *m;
    int count; /* with m->wino_convs NULL: counting */
} wino_marker;

static void wino_mark(sx_conv *c, void *ctx) {
    wino_marker *k = ctx;
    if (!sx_winograd_weight_floats(c, k->m->wino_tile)) return; /* 0 unless 3x3 stride 1 */
    if (k->m->wino_convs) {
        c->wino_m = k->m->wino_tile;
        c->wino_slot = k->count + 1;
        k->m->wino_convs[k->count] = c;
    }
    k->count++;
}

/* At load: which convs will take Winograd (SIAMIDX_WINOGRAD, nn/winograd.h),
 * so that encoders size their workspace for it; no weights are transformed. */
static siamidx_status plan_winograd(siamidx_model *m, siamidx_error *err) {
    m->wino_tile = sx_winograd_tile_from_env();
    wino_marker k = {m, 0};
    each_conv(m, wino_mark, &k);
    if (!k.count) {
        m->wino_tile = 0;
        return SIAMIDX_OK;
    }
    m->wino_convs = calloc((size_t)k.count, sizeof *m->wino_convs);
    m->wino_weights = calloc((size_t)k.count, sizeof *m->wino_weights);
    m->wino_state = calloc((size_t)k.count, sizeof *m->wino_state);
    if (!m->wino_convs || !m->wino_weights || !m->wino_state) {
        m->wino_tile = 0; /* sx_model_free frees what was allocated */
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "out of memory");
    }
    for (int i = 0; i < k.count; i++) atomic_init(&m->wino_state[i], 0);
    pthread_mutex_init(&m->wino_lock, NULL);
    m->n_wino = k.count;
    k.count = 0;
    each_conv(m, wino_mark, &k);
    return SIAMIDX_OK;
}

/*
 * Whether conv c's Winograd-domain weights (c->wino) are there to use,
 * transformed from its folded weights into an allocation of their own by the
 * first caller that needs them (n_params counts the folded encoder only);
 * the others wait on the lock. Conv by conv, so that a batch-1 query, whose
 * layer4 maps are too small for Winograd, never makes layer4's (the larger
 * part: resnet18's layer4 holds two thirds of its 3x3 weights). The release
 * store publishes c->wino to the threads that then read state 1.
 */
int sx_model_winograd_ready(const siamidx_model *cm, const sx_conv *c) {
    siamidx_model *m = (siamidx_model *)cm; /* lazily filled; never const at allocation */
    int i = c->wino_slot - 1;
    if (i < 0 || i >= m->n_wino || m->wino_convs[i] != c) return 0; /* not this model's */
    int state = atomic_load_explicit(&m->wino_state[i], memory_order_acquire);
    if (state) return state > 0;
    pthread_mutex_lock(&m->wino_lock);
    state = atomic_load_explicit(&m->wino_state[i], memory_order_relaxed);
    if (!state) {
        sx_conv *wc = m->wino_convs[i];
        size_t bytes = sx_winograd_weight_floats(wc, m->wino_tile) * sizeof(float);
        float *u = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
        if (u) sx_winograd_prepare(wc, m->wino_tile, u);
        m->wino_weights[i] = u;
        state = u ? 1 : -1;
        atomic_store_explicit(&m->wino_state[i], state, memory_order_release);
    }
    pthread_mutex_unlock(&m->wino_lock);
    return state > 0;
}

int sx_model_winograd_made(const siamidx_model *m) {
    int made = 0;
    for (int i = 0; i < m->n_wino; i++)
        made += atomic_load_explicit(&m->wino_state[i], memory_order_acquire) > 0;
    return made;
}

static siamidx_status build(siamidx_model *m, const sx_safetensors *st, const char *path,
                            siamidx_error *err) {
    siamidx_status s = parse_header_meta(m, st, path, err);
    if (s) return s;
    m->blocks = calloc((size_t)m->n_blocks, sizeof *m->blocks);
    loader L = {st, path, err, calloc(st->n_tensors + 1, 1), NULL, 0};
    if (!m->blocks || !L.used_tensor) {
        free(L.used_tensor);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "out of memory");
    }
    s = load_network(&L, m); /* sizing pass: names and shapes */
    if (!s) s = check_leftovers(&L, m);
    if (!s) s = check_dims(m, st, path, err);
    if (!s) {
        m->n_params = L.n_floats;
        m->weights = L.arena = malloc(L.n_floats * sizeof(float));
        L.n_floats = 0;
        s = L.arena ? load_network(&L, m) /* filling pass */
                    : sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "%s: out of memory for %zu weights",
                              path, m->n_params);
    }
    free(L.used_tensor);
    if (!s) s = pack_weights(m, path, err);
    if (!s) s = plan_winograd(m, err);
    if (!s) s = copy_meta(m, st, err);
    if (!s) fingerprint(m, st);
    return s;
}

siamidx_status sx_model_load(const sx_safetensors *st, const char *path, siamidx_model **out,
                             siamidx_error *err) {
    *out = NULL;
    siamidx_model *m = calloc(1, sizeof *m);
    if (!m || !(m->path = strdup(path))) {
        free(m);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "out of memory");
    }
    siamidx_status s = build(m, st, path, err);
    if (s) {
        sx_model_free(m);
        return s;
    }
    *out = m;
    return SIAMIDX_OK;
}

void sx_model_free(siamidx_model *model) {
    if (!model) return;
    for (size_t i = 0; i < model->n_meta; i++) {
        free(model->meta[i].key);
        free(model->meta[i].value);
    }
    free(model->meta);
    free(model->blocks);
    free(model->weights);
    free(model->packed);
    for (int i = 0; i < model->n_wino; i++) free(model->wino_weights[i]);
    free(model->wino_weights);
    free(model->wino_convs);
    free(model->wino_state);
    if (model->n_wino) pthread_mutex_destroy(&model->wino_lock);
    free(model->arch);
    free(model->path);
    free(model);
}

/* ---- the network without a file ------------------------------------------------ */

sx_conv *sx_model_unit_conv(siamidx_model *m, const sx_arch_unit *u) {
    if (u->role == SX_UNIT_STEM) return &m->stem;
    sx_block *b = &m->blocks[u->index];
    b->stage = u->stage;
    switch (u->role) {
    case SX_UNIT_CONV1: return &b->c1;
    case SX_UNIT_CONV2: return &b->c2;
    case SX_UNIT_CONV3: return &b->c3;
    case SX_UNIT_DOWNSAMPLE: b->has_down = 1; return &b->down;
    case SX_UNIT_STEM: break;
    }
    return &m->stem;
}

/* Gives every unit's convolution its shape and, when `arena` is set, its
 * weights; returns the floats they take. */
static size_t shape_network(siamidx_model *m, const sx_arch *a, sx_arch_widths *w, float *arena) {
    sx_arch_walk wk;
    sx_arch_unit u;
    size_t n = 0;
    sx_arch_walk_start(&wk, a, m->n_stages, w, 0, 0);
    while (sx_arch_walk_next(&wk, &u)) {
        sx_conv *c = sx_model_unit_conv(m, &u);
        *c = (sx_conv){.cin = u.cin, .cout = u.cout, .k = u.k, .stride = u.stride, .pad = u.pad};
        size_t nw = (size_t)u.cout * u.cin * u.k * u.k;
        if (arena) c->w = arena + n, c->b = arena + n + nw;
        n += nw + (size_t)u.cout;
    }
    return n;
}

siamidx_status sx_model_new_network(const char *arch, const sx_arch_widths *widths,
                                    siamidx_model **out, siamidx_error *err) {
    *out = NULL;
    const sx_arch *a = sx_arch_find(arch);
    if (!a) return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "unknown architecture '%s' (%s)",
                           arch, SX_ARCH_NAMES);
    siamidx_model *m = calloc(1, sizeof *m);
    if (!m) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "out of memory");
    sx_arch_widths w = *widths;
    m->bottleneck = a->bottleneck;
    m->n_stages = 4;
    for (int s = 0; s < 4; s++) m->n_blocks += m->stage_blocks[s] = a->blocks[s];
    memcpy(m->stage_channels, w.out, sizeof m->stage_channels);
    m->feat_dim = w.out[3];
    m->pool = SIAMIDX_POOL_AVG;
    m->gem_p = 3.0f;
    m->style_stages = 1u << 3;
    m->arch = strdup(arch);
    m->blocks = calloc((size_t)m->n_blocks, sizeof *m->blocks);
    if (m->arch && m->blocks) {
        m->n_params = shape_network(m, a, &w, NULL);
        m->weights = malloc(m->n_params * sizeof(float));
    }
    if (!m->weights) {
        sx_model_free(m);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "out of memory for a %s network", arch);
    }
    shape_network(m, a, &w, m->weights);
    *out = m;
    return SIAMIDX_OK;
}

/* ---- accessors --------------------------------------------------------------- */

static int cmp_key(const void *k, const void *e) {
    return strcmp((const char *)k, ((const sx_meta_entry *)e)->key);
}

const char *siamidx_model_meta(const siamidx_model *model, const char *key) {
    if (!model || !key) return NULL;
    const sx_meta_entry *e = bsearch(key, model->meta, model->n_meta, sizeof *model->meta, cmp_key);
    return e ? e->value : NULL;
}

size_t siamidx_model_meta_count(const siamidx_model *model) { return model ? model->n_meta : 0; }

const char *siamidx_model_meta_key(const siamidx_model *model, size_t i) {
    return model && i < model->n_meta ? model->meta[i].key : NULL;
}

const char *siamidx_model_arch(const siamidx_model *model) { return model ? model->arch : NULL; }

int siamidx_model_input_size(const siamidx_model *model) {
    return model ? model->pre.input_size : 0;
}

siamidx_pool siamidx_model_default_pool(const siamidx_model *model) {
    return model ? model->pool : SIAMIDX_POOL_AVG;
}

int siamidx_model_num_classes(const siamidx_model *model) { return model ? model->n_classes : 0; }

const char *siamidx_model_fingerprint(const siamidx_model *model) {
    return model ? model->fingerprint : NULL;
}

/* ---- siamidx_ext.h ------------------------------------------------------------ */

const char *siamidx_model_path(const siamidx_model *model) { return model ? model->path : NULL; }

void siamidx_model_describe(const siamidx_model *m, siamidx_model_description *d) {
    memset(d, 0, sizeof *d);
    if (!m) return;
    d->path = m->path;
    d->arch = m->arch;
    d->bottleneck = m->bottleneck;
    d->n_stages = m->n_stages;
    memcpy(d->stage_channels, m->stage_channels, sizeof d->stage_channels);
    d->input_size = m->pre.input_size;
    d->resize_size = m->pre.resize_size;
    d->squash = m->pre.policy == SX_RESIZE_SQUASH;
    memcpy(d->mean, m->pre.mean, sizeof d->mean);
    memcpy(d->std, m->pre.std, sizeof d->std);
    d->pool = m->pool;
    d->gem_p = m->gem_p;
    d->style_stages = m->style_stages;
    d->embedding_dim = siamidx_model_dim(m, SIAMIDX_POOL_DEFAULT);
    d->n_params = m->n_params;
    d->n_classes = m->n_classes;
    d->fingerprint = m->fingerprint;
    d->kernel = sx_cpu_path_name(m->cpu);
}

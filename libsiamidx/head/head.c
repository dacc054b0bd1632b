/*
 * head.c - the Siamese head: P(same artist | a, b) from two embeddings.
 *
 *   z        = normalise((e - mean) / std)         per-dimension standardisation
 *   f(a, b)  = [|za - zb|, (za - zb)^2, za * zb, za . zb]   (the enabled parts)
 *   logit    = w . f + bias
 *   P(same)  = sigmoid(platt_a * logit + platt_b)   Platt scaling on validation
 *
 * Every part of f is symmetric in a and b, so P(a, b) == P(b, a) exactly.
 * The default, |za - zb| and the cosine on standardised embeddings, was
 * chosen by measurement (tools/head_prototype.py, docs/evaluation.md):
 * standardisation helps every head, |za - zb| adds AUC on seen AND unseen
 * artists, and the cosine keeps the strong plain-cosine baseline inside the
 * head's reach. za * zb is off: it added nothing here, and elsewhere it
 * bought seen-artist AUC with unseen-artist AUC.
 *
 * Training is head_train.c; this file is the scorer and its two serialised
 * forms (the index's blob, the model file's head.* tensors).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "siamidx_ext.h"
#include "base/error.h"
#include "base/strbuf.h"
#include "head/head.h"
#include "nn/safetensors.h"

float sx_sigmoid(float x) {
    if (x >= 0) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

int sx_head_feature_count(unsigned features, int dim) {
    return ((features & SX_FEAT_ABS) ? dim : 0) + ((features & SX_FEAT_SQ) ? dim : 0) +
           ((features & SX_FEAT_PROD) ? dim : 0) + ((features & SX_FEAT_COS) ? 1 : 0);
}

siamidx_status sx_head_new(int dim, unsigned features, sx_head **out, siamidx_error *err) {
    *out = NULL;
    if (dim <= 0 || dim > (1 << 20) || !(features & 15u) || (features & ~15u))
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "head: bad dimension %d or features %#x",
                       dim, features);
    sx_head *h = calloc(1, sizeof *h);
    if (!h) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "head: out of memory");
    h->dim = dim;
    h->features = features;
    h->n_feat = sx_head_feature_count(features, dim);
    h->mean = calloc((size_t)dim, sizeof(float));
    h->inv_std = malloc((size_t)dim * sizeof(float));
    h->w = calloc((size_t)h->n_feat, sizeof(float));
    if (!h->mean || !h->inv_std || !h->w) {
        siamidx_head_free(h);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "head: out of memory for %d dimensions", dim);
    }
    for (int i = 0; i < dim; i++) h->inv_std[i] = 1.0f;
    h->platt_a = 1.0f;
    h->threshold = 0.5f;
    h->attr_scale = 1.0f;
    *out = h;
    return SIAMIDX_OK;
}

void siamidx_head_free(siamidx_head *h) {
    if (!h) return;
    free(h->mean);
    free(h->inv_std);
    free(h->w);
    free(h->info);
    free(h);
}

void sx_head_project(const sx_head *h, const float *e, float *z) {
    double ss = 0;
    for (int i = 0; i < h->dim; i++) {
        z[i] = (e[i] - h->mean[i]) * h->inv_std[i];
        ss += (double)z[i] * z[i];
    }
    /* In double: for a tiny (damaged) 1/std, 1/|z| overflows a float and
       inf * 0 would turn the scores into NaN. */
    double inv = ss > 0 ? 1.0 / sqrt(ss) : 0.0;
    for (int i = 0; i < h->dim; i++) z[i] = (float)(z[i] * inv);
}

/*
 * Features are scaled so that, for unit vectors, each part has values of
 * order one whatever the dimension: that keeps one L2 penalty and one
 * learning rate meaningful across models of 256 to 2048 dimensions.
 */
static void pair_features(const sx_head *h, const float *za, const float *zb, float *f) {
    int d = h->dim, k = 0;
    float s1 = sqrtf((float)d), s2 = (float)d;
    if (h->features & SX_FEAT_ABS)
        for (int i = 0; i < d; i++) f[k++] = fabsf(za[i] - zb[i]) * s1;
    if (h->features & SX_FEAT_SQ)
        for (int i = 0; i < d; i++) {
            float t = za[i] - zb[i];
            f[k++] = t * t * s2;
        }
    if (h->features & SX_FEAT_PROD)
        for (int i = 0; i < d; i++) f[k++] = za[i] * zb[i] * s2;
    if (h->features & SX_FEAT_COS) {
        float c = 0;
        for (int i = 0; i < d; i++) c += za[i] * zb[i];
        f[k++] = c * 4.0f; /* a cosine spans a narrow range: widen it */
    }
}

float sx_head_raw_logit(const sx_head *h, const float *za, const float *zb, float *feat) {
    pair_features(h, za, zb, feat);
    float s = h->bias;
    for (int i = 0; i < h->n_feat; i++) s += h->w[i] * feat[i];
    return s;
}

float sx_head_logit(const sx_head *h, const float *za, const float *zb, float *feat) {
    return h->platt_a * sx_head_raw_logit(h, za, zb, feat) + h->platt_b;
}

/* ---- calibration bins ----------------------------------------------------- */

static int calib_bin(float p) {
    int k = (int)(p * SX_HEAD_CALIB_BINS);
    return k < 0 ? 0 : k >= SX_HEAD_CALIB_BINS ? SX_HEAD_CALIB_BINS - 1 : k;
}

void sx_head_set_calibration(sx_head *h, const float *p, const uint8_t *same, size_t n) {
    memset(h->calib_n, 0, sizeof h->calib_n);
    memset(h->calib_same, 0, sizeof h->calib_same);
    for (size_t i = 0; i < n; i++) {
        if (p[i] != p[i]) continue; /* NaN: no bin */
        int k = calib_bin(p[i]);
        h->calib_n[k]++;
        h->calib_same[k] += same[i] != 0;
    }
    h->has_calib = 1;
}

void sx_head_calibration_string(const sx_head *h, char *out, size_t cap) {
    size_t used = 0;
    out[0] = 0;
    for (int k = 0; k < SX_HEAD_CALIB_BINS && used < cap; k++)
        used += (size_t)snprintf(out + used, cap - used, "%s%u/%u", k ? "," : "", h->calib_n[k],
                                 h->calib_same[k]);
}

/* Exactly SX_HEAD_CALIB_BINS "n/same" entries with same <= n; anything else is refused. */
int sx_head_calibration_parse(sx_head *h, const char *s, size_t len) {
    char buf[SX_HEAD_CALIB_BINS * 24];
    if (len >= sizeof buf) return 0;
    memcpy(buf, s, len);
    buf[len] = 0;
    const char *c = buf;
    for (int k = 0; k < SX_HEAD_CALIB_BINS; k++) {
        char *end;
        if (k && *c++ != ',') return 0;
        if (*c < '0' || *c > '9') return 0;
        unsigned long n = strtoul(c, &end, 10);
        if (*end != '/' || end[1] < '0' || end[1] > '9') return 0;
        unsigned long same = strtoul(end + 1, &end, 10);
        if (n > 0xffffffffu || same > n) return 0;
        h->calib_n[k] = (uint32_t)n;
        h->calib_same[k] = (uint32_t)same;
        c = end;
    }
    if (*c) return 0;
    h->has_calib = 1;
    return 1;
}

/* ---- serialisation ------------------------------------------------------ */

static const char *feature_names[] = {"abs", "sq", "prod", "cos"};

static void features_to_string(unsigned f, char *out, size_t cap) {
    out[0] = 0;
    for (int i = 0; i < 4; i++)
        if (f & (1u << i)) {
            if (out[0]) strncat(out, ",", cap - strlen(out) - 1);
            strncat(out, feature_names[i], cap - strlen(out) - 1);
        }
}

void sx_head_features_string(unsigned features, char *out, size_t cap) {
    features_to_string(features, out, cap);
}

static int features_from_string(const char *s, unsigned *out) {
    *out = 0;
    while (*s) {
        size_t n = strcspn(s, ",");
        int found = 0;
        for (int i = 0; i < 4; i++)
            if (strlen(feature_names[i]) == n && !strncmp(s, feature_names[i], n)) {
                *out |= 1u << i;
                found = 1;
            }
        if (!found) return 0;
        s += n + (s[n] == ',');
    }
    return *out != 0;
}

/* float32 little-endian whatever the host. */
static void sb_floats(sx_strbuf *b, const float *v, int n) {
    for (int i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        uint8_t le[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
        sx_strbuf_put(b, le, 4);
    }
}

static void read_floats(const uint8_t *p, float *v, int n) {
    for (int i = 0; i < n; i++, p += 4) {
        uint32_t u = p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        memcpy(&v[i], &u, 4);
    }
}

#define HEAD_MAGIC "SIAMIDX-HEAD 1\n"

siamidx_status sx_head_to_blob(const sx_head *h, uint8_t **blob, size_t *len,
                               siamidx_error *err) {
    sx_strbuf b = {0};
    char feats[64];
    features_to_string(h->features, feats, sizeof feats);
    const sx_head_report *r = &h->report;
    sx_strbuf_printf(&b, HEAD_MAGIC "dim=%d\nfeatures=%s\n", h->dim, feats);
    sx_strbuf_printf(&b, "bias=%.9g\nplatt_a=%.9g\nplatt_b=%.9g\nthreshold=%.9g\n", h->bias, h->platt_a,
              h->platt_b, h->threshold);
    sx_strbuf_printf(&b, "attr_scale=%.9g\nattr_unknown=%.9g\n", h->attr_scale, h->attr_unknown);
    sx_strbuf_printf(&b, "val_auc=%.9g\nval_acc=%.9g\nval_ece=%.9g\nepochs_run=%d\nbest_epoch=%d\n",
              r->val_auc, r->val_acc, r->val_ece, r->epochs_run, r->best_epoch);
    sx_strbuf_printf(&b, "n_train=%zu\nn_val=%zu\nn_test=%zu\nn_unseen=%zu\n", r->n_train, r->n_val,
              r->n_test, r->n_unseen);
    if (h->has_calib) {
        char calib[SX_HEAD_CALIB_BINS * 24];
        sx_head_calibration_string(h, calib, sizeof calib);
        sx_strbuf_printf(&b, "calibration=%s\n", calib);
    }
    if (h->info) sx_strbuf_put(&b, h->info, strlen(h->info));
    sx_strbuf_printf(&b, "data\n");
    sb_floats(&b, h->mean, h->dim);
    sb_floats(&b, h->inv_std, h->dim);
    sb_floats(&b, h->w, h->n_feat);
    if (b.oom) {
        free(b.buf);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "head: out of memory serialising");
    }
    *blob = (uint8_t *)b.buf;
    *len = b.len;
    return SIAMIDX_OK;
}

static int known_key(const char *k, size_t n) {
    static const char *keys[] = {"dim", "features", "bias", "platt_a", "platt_b", "threshold",
                                 "attr_scale", "attr_unknown", "val_auc", "val_acc", "val_ece",
                                 "epochs_run", "best_epoch", "n_train", "n_val", "n_test",
                                 "n_unseen"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (strlen(keys[i]) == n && !strncmp(k, keys[i], n)) return (int)i;
    return -1;
}

/*
 * Bounds on what a head may hold: training never comes near them (weights of
 * order one, 1/std at most 1e6), and within them every score is finite --
 * |logit| stays below ~1e31 in float for any unit embeddings -- so a damaged
 * record that passes cannot turn probabilities into NaN.
 */
#define HEAD_MAX_ABS 1e7

static int head_value_ok(double x) { return isfinite(x) && fabs(x) <= HEAD_MAX_ABS; }

/* Sets a known key from its text; 0 when the value is not a number in range. */
static int set_known(sx_head *h, int key, const char *v) {
    sx_head_report *r = &h->report;
    char *end;
    double x = strtod(v, &end);
    if (end == v) return 0;
    if (key >= 2 && key <= 7 && !head_value_ok(x)) return 0;
    /* counts: integers a double holds exactly (casting anything else is UB) */
    if (key >= 11 && !(x >= 0 && x <= (key <= 12 ? 2147483647.0 : 9007199254740992.0))) return 0;
    switch (key) {
    case 2: h->bias = (float)x; break;
    case 3: h->platt_a = (float)x; break;
    case 4: h->platt_b = (float)x; break;
    case 5: h->threshold = (float)x; break;
    case 6: h->attr_scale = (float)x; break;
    case 7: h->attr_unknown = (float)x; break;
    case 8: r->val_auc = x; break;
    case 9: r->val_acc = x; break;
    case 10: r->val_ece = x; break;
    case 11: r->epochs_run = (int)x; break;
    case 12: r->best_epoch = (int)x; break;
    case 13: r->n_train = (size_t)x; break;
    case 14: r->n_val = (size_t)x; break;
    case 15: r->n_test = (size_t)x; break;
    case 16: r->n_unseen = (size_t)x; break;
    default: break;
    }
    return 1;
}

/* The arrays within HEAD_MAX_ABS, 1/std not negative (0: a constant dimension). */
static int head_arrays_ok(const sx_head *h) {
    for (int i = 0; i < h->dim; i++)
        if (!head_value_ok(h->mean[i]) || !head_value_ok(h->inv_std[i]) || h->inv_std[i] < 0)
            return 0;
    for (int i = 0; i < h->n_feat; i++)
        if (!head_value_ok(h->w[i])) return 0;
    return 1;
}

siamidx_status sx_head_from_blob(const uint8_t *blob, size_t len, sx_head **out,
                                 siamidx_error *err) {
    *out = NULL;
    size_t ml = strlen(HEAD_MAGIC);
    if (len < ml || memcmp(blob, HEAD_MAGIC, ml))
        return sx_fail(err, SIAMIDX_ERR_INDEX_CORRUPT, "head record: bad magic at byte 0");
    /* The text part ends at "data\n" at the start of a line. */
    const char *t = (const char *)blob;
    size_t pos = ml, data = 0;
    int dim = 0;
    unsigned features = 0;
    while (pos < len) {
        const char *nl = memchr(t + pos, '\n', len - pos);
        if (!nl) break;
        size_t n = (size_t)(nl - (t + pos));
        if (n == 4 && !memcmp(t + pos, "data", 4)) {
            data = pos + 5;
            break;
        }
        char line[128];
        if (n > 4 && n < sizeof line && !memcmp(t + pos, "dim=", 4)) {
            memcpy(line, t + pos, n);
            line[n] = 0;
            char *end;
            long v = strtol(line + 4, &end, 10);
            dim = *end || v < 1 || v > (1 << 20) ? -1 : (int)v; /* sx_head_new's range */
        } else if (n > 9 && n < sizeof line && !memcmp(t + pos, "features=", 9)) {
            memcpy(line, t + pos, n);
            line[n] = 0;
            if (!features_from_string(line + 9, &features))
                return sx_fail(err, SIAMIDX_ERR_INDEX_CORRUPT,
                               "head record: unknown features '%s' at byte %zu", line + 9, pos);
        }
        pos += n + 1;
    }
    if (!data || dim <= 0 || !features)
        return sx_fail(err, SIAMIDX_ERR_INDEX_CORRUPT,
                       "head record: missing dim, features or data section (%zu bytes)", len);
    /* The text part is kept as a C string (h->info): a NUL in it would cut
       what sx_head_to_blob writes back, "data" line included. */
    const char *nul = memchr(t + ml, 0, data - 5 - ml);
    if (nul)
        return sx_fail(err, SIAMIDX_ERR_INDEX_CORRUPT, "head record: NUL byte in the text at byte %zu",
                       (size_t)(nul - t));
    /* Sizes are checked before anything is allocated for them. */
    size_t need = ((size_t)2 * dim + (size_t)sx_head_feature_count(features, dim)) * 4;
    if (len - data != need)
        return sx_fail(err, SIAMIDX_ERR_INDEX_CORRUPT,
                       "head record: data section at byte %zu has %zu bytes, expected %zu", data,
                       len - data, need);
    sx_head *h;
    siamidx_status st = sx_head_new(dim, features, &h, err);
    if (st) return st;
    /* Second pass: known keys into fields, the rest verbatim into info. */
    sx_strbuf info = {0};
    for (pos = ml; pos < data - 5;) {
        const char *nl = memchr(t + pos, '\n', data - 5 - pos + 1);
        size_t n = (size_t)(nl - (t + pos));
        const char *eq = memchr(t + pos, '=', n);
        int key = eq ? known_key(t + pos, (size_t)(eq - (t + pos))) : -1;
        if (eq && eq - (t + pos) == 11 && !memcmp(t + pos, "calibration", 11)) {
            if (!sx_head_calibration_parse(h, eq + 1, n - 12)) {
                free(info.buf);
                siamidx_head_free(h);
                return sx_fail(err, SIAMIDX_ERR_INDEX_CORRUPT,
                               "head record: unusable calibration at byte %zu", pos);
            }
        } else if (key >= 2) {
            char v[64];
            size_t vn = n - (size_t)(eq + 1 - (t + pos));
            if (vn >= sizeof v) vn = sizeof v - 1;
            memcpy(v, eq + 1, vn);
            v[vn] = 0;
            if (!set_known(h, key, v)) {
                free(info.buf);
                siamidx_head_free(h);
                return sx_fail(err, SIAMIDX_ERR_INDEX_CORRUPT,
                               "head record: unusable value '%s' for %.*s at byte %zu", v,
                               (int)(eq - (t + pos)), t + pos, pos);
            }
        } else if (key < 0) {
            sx_strbuf_put(&info, t + pos, n + 1);
        }
        pos += n + 1;
    }
    sx_strbuf_put(&info, "", 1);
    if (info.oom) {
        free(info.buf);
        siamidx_head_free(h);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "head record: out of memory");
    }
    h->info = info.buf;
    read_floats(blob + data, h->mean, dim);
    read_floats(blob + data + 4 * (size_t)dim, h->inv_std, dim);
    read_floats(blob + data + 8 * (size_t)dim, h->w, h->n_feat);
    if (!head_arrays_ok(h)) {
        siamidx_head_free(h);
        return sx_fail(err, SIAMIDX_ERR_INDEX_CORRUPT,
                       "head record: data section holds non-finite or out-of-range values");
    }
    *out = h;
    return SIAMIDX_OK;
}

static siamidx_status read_head_tensor(const sx_safetensors *st, const char *name,
                                       int64_t numel, float *out, siamidx_error *err) {
    const sx_tensor_info *t = sx_safetensors_find(st, name);
    if (!t) return sx_fail(err, SIAMIDX_ERR_MODEL_FORMAT, "model head: missing tensor %s", name);
    if (sx_tensor_numel(t) != numel)
        return sx_fail(err, SIAMIDX_ERR_MODEL_FORMAT,
                       "model head: tensor %s has %lld values, expected %lld", name,
                       (long long)sx_tensor_numel(t), (long long)numel);
    sx_safetensors_read_f32(st, t, out);
    return SIAMIDX_OK;
}

siamidx_status sx_head_from_safetensors(const sx_safetensors *st, sx_head **out,
                                        siamidx_error *err) {
    *out = NULL;
    const sx_tensor_info *w = sx_safetensors_find(st, "head.w");
    const sx_tensor_info *mean = sx_safetensors_find(st, "head.mean");
    if (!w && !mean) return SIAMIDX_OK; /* no default head in this file */
    if (!mean) return sx_fail(err, SIAMIDX_ERR_MODEL_FORMAT, "model head: missing tensor head.mean");
    const char *fs = sx_safetensors_meta(st, "head.features");
    unsigned features;
    if (!fs || !features_from_string(fs, &features))
        return sx_fail(err, SIAMIDX_ERR_MODEL_FORMAT,
                       "model head: metadata head.features missing or unknown ('%s')",
                       fs ? fs : "");
    sx_head *h;
    siamidx_status s = sx_head_new((int)sx_tensor_numel(mean), features, &h, err);
    if (s) return s;
    float params[6];
    if ((s = read_head_tensor(st, "head.mean", h->dim, h->mean, err)) ||
        (s = read_head_tensor(st, "head.std", h->dim, h->inv_std, err)) ||
        (s = read_head_tensor(st, "head.w", h->n_feat, h->w, err)) ||
        (s = read_head_tensor(st, "head.params", 6, params, err))) {
        siamidx_head_free(h);
        return s;
    }
    for (int i = 0; i < h->dim; i++) {
        if (!(h->inv_std[i] > 0)) {
            siamidx_head_free(h);
            return sx_fail(err, SIAMIDX_ERR_MODEL_FORMAT,
                           "model head: head.std[%d] is not positive", i);
        }
        h->inv_std[i] = 1.0f / h->inv_std[i];
    }
    h->bias = params[0];
    h->platt_a = params[1];
    h->platt_b = params[2];
    h->threshold = params[3];
    h->attr_scale = params[4];
    h->attr_unknown = params[5];
    const char *calib = sx_safetensors_meta(st, "head.calibration"); /* optional */
    if (calib && !sx_head_calibration_parse(h, calib, strlen(calib))) {
        siamidx_head_free(h);
        return sx_fail(err, SIAMIDX_ERR_MODEL_FORMAT, "model head: unusable head.calibration '%s'",
                       calib);
    }
    int ok = head_arrays_ok(h);
    for (int i = 0; i < 6; i++) ok = ok && head_value_ok(params[i]);
    if (!ok) {
        siamidx_head_free(h);
        return sx_fail(err, SIAMIDX_ERR_MODEL_FORMAT,
                       "model head: non-finite or out-of-range values (beyond +-%g)", HEAD_MAX_ABS);
    }
    *out = h;
    return SIAMIDX_OK;
}


/* ---- the public head API ----------------------------------------------------- */

size_t siamidx_head_dim(const siamidx_head *head) { return head ? (size_t)head->dim : 0; }

double siamidx_head_threshold(const siamidx_head *head) { return head ? head->threshold : 0.5; }

size_t siamidx_head_calibration(const siamidx_head *head, siamidx_calibration_bin *bins,
                                size_t cap) {
    if (!head || !head->has_calib) return 0;
    for (size_t k = 0; k < SX_HEAD_CALIB_BINS && k < cap; k++)
        bins[k] = (siamidx_calibration_bin){(double)k / SX_HEAD_CALIB_BINS,
                                            (double)(k + 1) / SX_HEAD_CALIB_BINS,
                                            head->calib_n[k], head->calib_same[k]};
    return SX_HEAD_CALIB_BINS;
}

siamidx_status siamidx_head_from_blob(const void *blob, size_t len, siamidx_head **out,
                                      siamidx_error *err) {
    if (!blob || !out) return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "head: NULL argument");
    return sx_head_from_blob(blob, len, out, err);
}

siamidx_status siamidx_head_to_blob(const siamidx_head *head, void **blob, size_t *len,
                                    siamidx_error *err) {
    if (!head || !blob || !len)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "head: NULL argument");
    return sx_head_to_blob(head, (uint8_t **)blob, len, err);
}

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
 * Training: binary cross-entropy, Adam, fresh artist-balanced pairs every
 * epoch, early stopping on validation AUC. The split is by image (per
 * artist, so every seen artist has validation and test images) and can keep
 * whole artists out to measure unseen artists.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

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

typedef struct {
    char *buf;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const void *p, size_t n) {
    if (b->oom) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + n) cap *= 2;
        char *nb = realloc(b->buf, cap);
        if (!nb) {
            b->oom = 1;
            return;
        }
        b->buf = nb;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, p, n);
    b->len += n;
}

static void sb_printf(sbuf *b, const char *fmt, ...) SX_PRINTF(2, 3);
static void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) sb_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* float32 little-endian whatever the host. */
static void sb_floats(sbuf *b, const float *v, int n) {
    for (int i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        uint8_t le[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
        sb_put(b, le, 4);
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
    sbuf b = {0};
    char feats[64];
    features_to_string(h->features, feats, sizeof feats);
    const sx_head_report *r = &h->report;
    sb_printf(&b, HEAD_MAGIC "dim=%d\nfeatures=%s\n", h->dim, feats);
    sb_printf(&b, "bias=%.9g\nplatt_a=%.9g\nplatt_b=%.9g\nthreshold=%.9g\n", h->bias, h->platt_a,
              h->platt_b, h->threshold);
    sb_printf(&b, "attr_scale=%.9g\nattr_unknown=%.9g\n", h->attr_scale, h->attr_unknown);
    sb_printf(&b, "val_auc=%.9g\nval_acc=%.9g\nval_ece=%.9g\nepochs_run=%d\nbest_epoch=%d\n",
              r->val_auc, r->val_acc, r->val_ece, r->epochs_run, r->best_epoch);
    sb_printf(&b, "n_train=%zu\nn_val=%zu\nn_test=%zu\nn_unseen=%zu\n", r->n_train, r->n_val,
              r->n_test, r->n_unseen);
    if (h->info) sb_put(&b, h->info, strlen(h->info));
    sb_printf(&b, "data\n");
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
    sbuf info = {0};
    for (pos = ml; pos < data - 5;) {
        const char *nl = memchr(t + pos, '\n', data - 5 - pos + 1);
        size_t n = (size_t)(nl - (t + pos));
        const char *eq = memchr(t + pos, '=', n);
        int key = eq ? known_key(t + pos, (size_t)(eq - (t + pos))) : -1;
        if (key >= 2) {
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
            sb_put(&info, t + pos, n + 1);
        }
        pos += n + 1;
    }
    sb_put(&info, "", 1);
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

/* ---- training ------------------------------------------------------------ */

void sx_train_opts_init(sx_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->epochs = 60;
    o->seed = 1;
    o->val_fraction = 0.2;
    o->holdout_artists = 0;
    o->features = SX_FEAT_ABS | SX_FEAT_COS; /* docs/evaluation.md: the measurement */
    o->l2 = 1e-4f;
    o->lr = 0.01f;
    o->pairs_per_epoch = 20000;
    o->patience = 8;
}

siamidx_status sx_split_roles(const sx_train_data *d, const sx_train_opts *o, uint8_t *roles,
                              siamidx_error *err) {
    if (o->val_fraction <= 0 || o->val_fraction >= 0.9)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT,
                       "validation fraction %g is outside (0, 0.9)", o->val_fraction);
    size_t *rows = malloc((d->n ? d->n : 1) * sizeof *rows);
    if (!rows) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "split: out of memory");
    for (size_t i = 0; i < d->n; i++) rows[i] = i;
    sx_groups g;
    siamidx_status st = sx_groups_build(d->artist, rows, d->n, &g, err);
    free(rows);
    if (st) return st;
    if (o->holdout_artists < 0 || g.n_groups < (size_t)o->holdout_artists + 2) {
        sx_groups_free(&g);
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT,
                       "cannot hold out %d of %zu artists: at least two must stay for training",
                       o->holdout_artists, g.n_groups);
    }
    sx_rng rng;
    sx_rng_seed(&rng, o->seed);
    size_t *order = malloc(g.n_groups * sizeof *order);
    if (!order) {
        sx_groups_free(&g);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "split: out of memory");
    }
    for (size_t k = 0; k < g.n_groups; k++) order[k] = k;
    sx_shuffle(&rng, order, g.n_groups);
    for (size_t r = 0; r < g.n_groups; r++) {
        size_t k = order[r], *items = g.items + g.start[k], cnt = g.start[k + 1] - g.start[k];
        if (r < (size_t)o->holdout_artists) {
            for (size_t i = 0; i < cnt; i++) roles[items[i]] = SX_ROLE_UNSEEN;
            continue;
        }
        /* Per artist, so that every seen artist has validation and test images. */
        sx_shuffle(&rng, items, cnt);
        size_t nv = (size_t)(cnt * o->val_fraction / 2 + 0.5), nt = nv;
        if (cnt < 3 || nv + nt >= cnt) nv = nt = 0;
        for (size_t i = 0; i < cnt; i++)
            roles[items[i]] = i < nv ? SX_ROLE_VAL : i < nv + nt ? SX_ROLE_TEST : SX_ROLE_TRAIN;
    }
    free(order);
    sx_groups_free(&g);
    return SIAMIDX_OK;
}

static void fit_standardisation(sx_head *h, const sx_train_data *d, const uint8_t *roles) {
    int dim = h->dim;
    double *sum = calloc((size_t)dim * 2, sizeof *sum);
    if (!sum) return; /* identity standardisation: still a valid head */
    double *sq = sum + dim;
    size_t cnt = 0;
    for (size_t i = 0; i < d->n; i++) {
        if (roles[i] != SX_ROLE_TRAIN) continue;
        const float *e = d->emb + i * dim;
        for (int j = 0; j < dim; j++) {
            sum[j] += e[j];
            sq[j] += (double)e[j] * e[j];
        }
        cnt++;
    }
    for (int j = 0; j < dim && cnt; j++) {
        double m = sum[j] / cnt, v = sq[j] / cnt - m * m;
        h->mean[j] = (float)m;
        /* A dead dimension (constant, e.g. a channel that never fires) must
           not be blown up into noise. */
        h->inv_std[j] = v > 1e-12 ? (float)(1.0 / sqrt(v)) : 0.0f;
    }
    free(sum);
}

/* Rows of one role, grouped by artist. */
static siamidx_status role_groups(const sx_train_data *d, const uint8_t *roles, int role,
                                  sx_groups *g, size_t *count, siamidx_error *err) {
    size_t *rows = malloc((d->n ? d->n : 1) * sizeof *rows), n = 0;
    if (!rows) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "training: out of memory");
    for (size_t i = 0; i < d->n; i++)
        if (roles[i] == role) rows[n++] = i;
    siamidx_status st = sx_groups_build(d->artist, rows, n, g, err);
    free(rows);
    if (count) *count = n;
    return st;
}

typedef struct {
    float *m, *v;
    int t;
} adam_state;

static void adam_step(float *p, const float *g, adam_state *s, int n, float lr) {
    const float b1 = 0.9f, b2 = 0.999f;
    float c1 = 1 - powf(b1, (float)s->t), c2 = 1 - powf(b2, (float)s->t);
    for (int i = 0; i < n; i++) {
        s->m[i] = b1 * s->m[i] + (1 - b1) * g[i];
        s->v[i] = b2 * s->v[i] + (1 - b2) * g[i] * g[i];
        p[i] -= lr * (s->m[i] / c1) / (sqrtf(s->v[i] / c2) + 1e-8f);
    }
}

/* Raw logits of pairs over projected embeddings Z. */
static void score_pairs(const sx_head *h, const float *Z, const sx_pair *p, size_t n, float *out,
                        float *feat) {
    for (size_t i = 0; i < n; i++)
        out[i] = sx_head_raw_logit(h, Z + (size_t)p[i].a * h->dim, Z + (size_t)p[i].b * h->dim,
                                   feat);
}

/* One epoch of mini-batch Adam on BCE. params = [w..., bias]. */
static void train_epoch(sx_head *h, const float *Z, const sx_pair *pairs, size_t n,
                        const sx_train_opts *o, float *grad, float *feat, adam_state *adam) {
    int nf = h->n_feat;
    float *params = grad + nf + 1; /* w then bias, contiguous for Adam */
    memcpy(params, h->w, (size_t)nf * sizeof(float));
    params[nf] = h->bias;
    const size_t batch = 256;
    for (size_t s = 0; s < n; s += batch) {
        size_t e = s + batch < n ? s + batch : n;
        memset(grad, 0, (size_t)(nf + 1) * sizeof(float));
        for (size_t i = s; i < e; i++) {
            float z = sx_head_raw_logit(h, Z + (size_t)pairs[i].a * h->dim,
                                        Z + (size_t)pairs[i].b * h->dim, feat);
            float g = sx_sigmoid(z) - (float)pairs[i].same;
            for (int j = 0; j < nf; j++) grad[j] += g * feat[j];
            grad[nf] += g;
        }
        float inv = 1.0f / (float)(e - s);
        for (int j = 0; j < nf; j++) grad[j] = grad[j] * inv + o->l2 * params[j];
        grad[nf] *= inv;
        adam->t++;
        adam_step(params, grad, adam, nf + 1, o->lr);
        memcpy(h->w, params, (size_t)nf * sizeof(float));
        h->bias = params[nf];
    }
}

/* Mean BCE of sigmoid(a z + c), plus a weak pull of (a, c) towards (1, 0). */
static double platt_loss(const float *z, const sx_pair *p, size_t n, double a, double c) {
    double l = 0;
    for (size_t i = 0; i < n; i++) {
        double t = a * z[i] + c; /* log(1 + e^t) - y t, computed stably */
        l += (t > 0 ? t + log1p(exp(-t)) : log1p(exp(t))) - p[i].same * t;
    }
    return l / (double)n + 1e-4 * ((a - 1) * (a - 1) + c * c);
}

/*
 * Platt scaling: (a, c) minimising BCE of sigmoid(a z + c), by Newton's
 * method with a backtracking line search. The weak prior keeps (a, c)
 * finite when validation pairs are separable (few distinct images).
 */
static void fit_platt(const float *z, const sx_pair *p, size_t n, float *a_out, float *c_out) {
    double a = 1, c = 0, loss = platt_loss(z, p, n, a, c);
    for (int it = 0; it < 100 && n; it++) {
        double ga = 2e-4 * (a - 1), gc = 2e-4 * c, haa = 2e-4, hac = 0, hcc = 2e-4;
        for (size_t i = 0; i < n; i++) {
            double q = 1 / (1 + exp(-(a * z[i] + c))), r = q - p[i].same, w = q * (1 - q);
            ga += r * z[i] / (double)n;
            gc += r / (double)n;
            haa += w * z[i] * z[i] / (double)n;
            hac += w * z[i] / (double)n;
            hcc += w / (double)n;
        }
        double det = haa * hcc - hac * hac;
        if (!(det > 0)) break;
        double da = (hcc * ga - hac * gc) / det, dc = (haa * gc - hac * ga) / det;
        double step = 1, next = INFINITY;
        for (; step > 1e-6; step /= 2) {
            next = platt_loss(z, p, n, a - step * da, c - step * dc);
            if (next <= loss) break;
        }
        if (!(next <= loss)) break;
        a -= step * da;
        c -= step * dc;
        if (loss - next < 1e-12) break;
        loss = next;
    }
    *a_out = (float)a;
    *c_out = (float)c;
}

static void append_info(sbuf *b, const char *key, const sx_train_data *d, const uint8_t *roles,
                        int role) {
    sb_printf(b, "%s=", key);
    int first = 1;
    for (size_t i = 0; i < d->n; i++)
        if (roles[i] == role) {
            if (!first) sb_put(b, "\t", 1);
            if (d->keys && d->keys[i]) sb_put(b, d->keys[i], strlen(d->keys[i]));
            else sb_printf(b, "#%zu", i);
            first = 0;
        }
    sb_put(b, "\n", 1);
}

static char *split_info(const sx_train_data *d, const sx_train_opts *o, const uint8_t *roles) {
    sbuf b = {0};
    char feats[64];
    features_to_string(o->features, feats, sizeof feats);
    sb_printf(&b, "seed=%llu\nval_fraction=%.9g\nholdout_artists=%d\nepochs=%d\nl2=%.9g\n",
              (unsigned long long)o->seed, o->val_fraction, o->holdout_artists, o->epochs,
              o->l2);
    sb_printf(&b, "unseen_artists=");
    uint8_t *held = calloc((size_t)d->n_artists + 1, 1);
    for (size_t i = 0; held && i < d->n; i++)
        if (roles[i] == SX_ROLE_UNSEEN) held[d->artist[i]] = 1;
    int first = 1;
    for (int a = 0; held && a < d->n_artists; a++)
        if (held[a]) {
            if (!first) sb_put(&b, "\t", 1);
            if (d->artist_names) sb_put(&b, d->artist_names[a], strlen(d->artist_names[a]));
            else sb_printf(&b, "#%d", a);
            first = 0;
        }
    free(held);
    sb_put(&b, "\n", 1);
    append_info(&b, "val_images", d, roles, SX_ROLE_VAL);
    append_info(&b, "test_images", d, roles, SX_ROLE_TEST);
    sb_put(&b, "", 1);
    if (b.oom) {
        free(b.buf);
        return NULL;
    }
    return b.buf;
}

typedef struct {
    float *Z, *grad, *feat, *best_w, *val_z, *val_p;
    sx_pair *train_pairs, *val_pairs;
    uint8_t *val_labels;
    adam_state adam;
    sx_groups gtrain, gval;
} train_work;

static void train_work_free(train_work *w) {
    free(w->Z);
    free(w->grad);
    free(w->feat);
    free(w->best_w);
    free(w->val_z);
    free(w->val_p);
    free(w->train_pairs);
    free(w->val_pairs);
    free(w->val_labels);
    free(w->adam.m);
    free(w->adam.v);
    sx_groups_free(&w->gtrain);
    sx_groups_free(&w->gval);
}

static siamidx_status train_loop(sx_head *h, const sx_train_opts *o, train_work *w,
                                 size_t n_val_pairs, siamidx_error *err) {
    sx_rng rng;
    sx_rng_seed(&rng, o->seed ^ 0x7261696eull);
    int nf = h->n_feat;
    double best_auc = -1;
    float best_bias = 0;
    int bad = 0;
    for (int ep = 1; ep <= o->epochs; ep++) {
        /* Fresh pairs every epoch: far more distinct pairs than one fixed set. */
        if (sx_sample_pairs(&w->gtrain, o->pairs_per_epoch, &rng, w->train_pairs) == 0)
            return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT,
                           "training needs two artists, one with two images");
        train_epoch(h, w->Z, w->train_pairs, o->pairs_per_epoch, o, w->grad, w->feat, &w->adam);
        score_pairs(h, w->Z, w->val_pairs, n_val_pairs, w->val_z, w->feat);
        double auc = sx_roc_auc(w->val_z, w->val_labels, n_val_pairs);
        h->report.epochs_run = ep;
        if (o->verbose) fprintf(stderr, "epoch %d: validation AUC %.4f\n", ep, auc);
        if (auc > best_auc + 1e-5) {
            best_auc = auc;
            memcpy(w->best_w, h->w, (size_t)nf * sizeof(float));
            best_bias = h->bias;
            h->report.best_epoch = ep;
            bad = 0;
        } else if (++bad >= o->patience) {
            break;
        }
    }
    memcpy(h->w, w->best_w, (size_t)nf * sizeof(float));
    h->bias = best_bias;
    h->report.val_auc = best_auc;
    return SIAMIDX_OK;
}

siamidx_status sx_head_train(const sx_train_data *d, const sx_train_opts *o, uint8_t *roles_out,
                             sx_head **out, siamidx_error *err) {
    *out = NULL;
    if (!d->n || d->dim <= 0 || !d->emb || !d->artist || o->epochs < 1 || !o->pairs_per_epoch)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "training: nothing to train on");
    for (size_t i = 0; i < d->n; i++)
        if (d->artist[i] < 0 || d->artist[i] >= d->n_artists)
            return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT,
                           "training: image %zu has artist id %d outside 0..%d", i, d->artist[i],
                           d->n_artists - 1);
    uint8_t *roles = roles_out ? roles_out : malloc(d->n);
    if (!roles) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "training: out of memory");
    sx_head *h = NULL;
    train_work w;
    memset(&w, 0, sizeof w);
    const size_t n_val_pairs = 10000;
    siamidx_status st = sx_split_roles(d, o, roles, err);
    if (!st) st = sx_head_new(d->dim, o->features, &h, err);
    if (!st) st = role_groups(d, roles, SX_ROLE_TRAIN, &w.gtrain, &h->report.n_train, err);
    if (!st) st = role_groups(d, roles, SX_ROLE_VAL, &w.gval, &h->report.n_val, err);
    if (!st && (w.gval.n_pairable == 0 || w.gval.n_groups < 2))
        st = sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT,
                     "training: the validation split (%zu images) needs two artists, one with "
                     "two images; raise --val-fraction or add images",
                     h->report.n_val);
    if (st) goto done;
    for (size_t i = 0; i < d->n; i++) {
        h->report.n_test += roles[i] == SX_ROLE_TEST;
        h->report.n_unseen += roles[i] == SX_ROLE_UNSEEN;
    }
    int nf = h->n_feat;
    w.Z = malloc(d->n * (size_t)d->dim * sizeof(float));
    w.grad = malloc((size_t)(nf + 1) * 2 * sizeof(float));
    w.feat = malloc((size_t)nf * sizeof(float));
    w.best_w = calloc((size_t)nf, sizeof(float));
    w.val_z = malloc(n_val_pairs * sizeof(float));
    w.val_p = malloc(n_val_pairs * sizeof(float));
    w.train_pairs = malloc(o->pairs_per_epoch * sizeof(sx_pair));
    w.val_pairs = malloc(n_val_pairs * sizeof(sx_pair));
    w.val_labels = malloc(n_val_pairs);
    w.adam.m = calloc((size_t)nf + 1, sizeof(float));
    w.adam.v = calloc((size_t)nf + 1, sizeof(float));
    if (!w.Z || !w.grad || !w.feat || !w.best_w || !w.val_z || !w.val_p || !w.train_pairs ||
        !w.val_pairs || !w.val_labels || !w.adam.m || !w.adam.v) {
        st = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "training: out of memory for %zu images", d->n);
        goto done;
    }
    fit_standardisation(h, d, roles);
    for (size_t i = 0; i < d->n; i++)
        sx_head_project(h, d->emb + i * d->dim, w.Z + i * d->dim);
    sx_rng vrng;
    sx_rng_seed(&vrng, o->seed ^ 0x76616cull);
    sx_sample_pairs(&w.gval, n_val_pairs, &vrng, w.val_pairs);
    for (size_t i = 0; i < n_val_pairs; i++) w.val_labels[i] = w.val_pairs[i].same;
    if ((st = train_loop(h, o, &w, n_val_pairs, err))) goto done;

    /* Calibrate and choose the threshold on the validation pairs. */
    score_pairs(h, w.Z, w.val_pairs, n_val_pairs, w.val_z, w.feat);
    fit_platt(w.val_z, w.val_pairs, n_val_pairs, &h->platt_a, &h->platt_b);
    uint8_t *labels = w.val_labels;
    for (size_t i = 0; i < n_val_pairs; i++)
        w.val_p[i] = sx_sigmoid(h->platt_a * w.val_z[i] + h->platt_b);
    h->threshold = (float)sx_best_threshold(w.val_p, labels, n_val_pairs);
    h->report.val_acc = sx_accuracy_at(w.val_p, labels, n_val_pairs, h->threshold);
    h->report.val_ece = sx_ece(w.val_p, labels, n_val_pairs, 10);
    if ((st = sx_attribution_fit(h, d, roles, err))) goto done;
    h->info = split_info(d, o, roles);
    if (!h->info) st = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "training: out of memory");
done:
    train_work_free(&w);
    if (!roles_out) free(roles);
    if (st) {
        siamidx_head_free(h);
        return st;
    }
    *out = h;
    return SIAMIDX_OK;
}

/*
 * classifier.c - which of the index's artists painted this, as a
 * multinomial logistic regression (softmax) on the embeddings.
 *
 * The head's neighbour evidence only looks at the 50 nearest paintings; a
 * linear classifier over every artist uses all of each artist's images at
 * once, and on frozen features it is the stronger attributor (docs/
 * evaluation.md). attribution.c fuses the two.
 *
 * Fit: z = (e/|e| - mean) * inv_std on the training rows; full-batch Adam on
 * the class-balanced cross-entropy + l2/2 |W|^2 (b unpenalised), one sgemm
 * for the logits and one for the gradient per step. The penalty is chosen on
 * the validation rows along a decreasing path, each fit warm-started from
 * the last (so the whole path costs little more than one fit): seconds for
 * ~13,000 images of 256 dimensions and 214 artists.
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/strbuf.h"
#include "head/classifier.h"

#define FIT_STEPS_FIRST 120 /* Adam steps at the strongest penalty */
#define FIT_STEPS_NEXT 50   /* and at each weaker one, warm-started */
#define FIT_LR 0.01f
static const float l2_path[] = {1e-2f, 3e-3f, 1e-3f, 3e-4f};

void sx_classifier_free(sx_classifier *c) {
    if (!c) return;
    for (int i = 0; c->names && i < c->n_classes; i++) free(c->names[i]);
    free(c->names), free(c->mean), free(c->inv_std), free(c->w), free(c->b), free(c->absent);
    free(c);
}

static sx_classifier *classifier_new(int dim, int n_classes) {
    sx_classifier *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->dim = dim;
    c->n_classes = n_classes;
    c->names = calloc((size_t)n_classes, sizeof *c->names);
    c->mean = calloc((size_t)dim, sizeof *c->mean);
    c->inv_std = calloc((size_t)dim, sizeof *c->inv_std);
    c->w = calloc((size_t)n_classes * (size_t)dim, sizeof *c->w);
    c->b = calloc((size_t)n_classes, sizeof *c->b);
    c->fuse_weight = SX_CLASSIFIER_DEFAULT_FUSE;
    if (!c->names || !c->mean || !c->inv_std || !c->w || !c->b) {
        sx_classifier_free(c);
        return NULL;
    }
    return c;
}

int sx_classifier_class(const sx_classifier *c, const char *name) {
    for (int i = 0; i < c->n_classes; i++)
        if (!strcmp(c->names[i], name)) return i;
    return -1;
}

/* z = (e/|e| - mean) * inv_std for n rows. */
static void features(const sx_classifier *c, const float *emb, size_t n, float *z) {
    size_t dim = (size_t)c->dim;
    for (size_t i = 0; i < n; i++) {
        const float *e = emb + i * dim;
        double ss = 0;
        for (size_t j = 0; j < dim; j++) ss += (double)e[j] * e[j];
        float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
        for (size_t j = 0; j < dim; j++)
            z[i * dim + j] = (e[j] * inv - c->mean[j]) * c->inv_std[j];
    }
}

/* logits[n][C] = z W^T + b */
static void logits(const sx_classifier *c, const float *z, size_t n, float *out) {
    int C = c->n_classes, D = c->dim;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, C, D, 1.0f, z, D, c->w, D, 0.0f,
                out, C);
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < C; k++) out[i * (size_t)C + k] += c->b[k];
}

/* Row-wise softmax in place; returns log P of the row's class when cls >= 0. */
static double softmax_row(float *l, int C, int cls) {
    float m = l[0];
    for (int k = 1; k < C; k++) m = l[k] > m ? l[k] : m;
    double s = 0;
    for (int k = 0; k < C; k++) s += exp((double)l[k] - m);
    double lt = cls >= 0 ? (double)l[cls] - m - log(s) : 0;
    for (int k = 0; k < C; k++) l[k] = (float)(exp((double)l[k] - m) / s);
    return lt;
}

int sx_classifier_drop(sx_classifier *c, int cls) {
    if (cls < 0 || cls >= c->n_classes) return 0;
    if (!c->absent && !(c->absent = calloc((size_t)c->n_classes, 1))) return -1;
    c->absent[cls] = 1;
    return 0;
}

siamidx_status sx_classifier_log_prob(const sx_classifier *c, const float *emb, size_t n,
                                      double *out, siamidx_error *err) {
    const size_t block = 256, C = (size_t)c->n_classes, D = (size_t)c->dim;
    float *z = malloc(block * D * sizeof *z), *l = malloc(block * C * sizeof *l);
    if (!z || !l) {
        free(z), free(l);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "classifier: out of memory");
    }
    for (size_t i0 = 0; i0 < n; i0 += block) {
        size_t nb = n - i0 < block ? n - i0 : block;
        features(c, emb + i0 * D, nb, z);
        logits(c, z, nb, l);
        for (size_t i = 0; i < nb; i++) {
            const float *r = l + i * C;
            const uint8_t *gone = c->absent;
            float m = -INFINITY;
            for (size_t k = 0; k < C; k++)
                if (!(gone && gone[k])) m = r[k] > m ? r[k] : m;
            double s = 0;
            for (size_t k = 0; k < C; k++)
                if (!(gone && gone[k])) s += exp((double)r[k] - m);
            double lse = m + log(s); /* every class dropped: all -infinity */
            for (size_t k = 0; k < C; k++)
                out[(i0 + i) * C + k] =
                    (gone && gone[k]) || !(m > -INFINITY) ? -INFINITY : (double)r[k] - lse;
        }
    }
    free(z), free(l);
    return SIAMIDX_OK;
}

/* ---- fitting ------------------------------------------------------------------ */

typedef struct fit_set {
    size_t n;
    float *z;     /* [n][dim] */
    int32_t *cls; /* [n] */
    float *wt;    /* [n] class-balanced weight, mean 1 */
} fit_set;

static void fit_set_free(fit_set *s) { free(s->z), free(s->cls), free(s->wt); }

/* The rows of one role as features, classes and balanced weights (0 rows of
   classes the classifier lacks are dropped). */
static int fit_set_make(const sx_classifier *c, const sx_train_data *d, const uint8_t *roles,
                        int role, const int32_t *class_of, fit_set *s) {
    memset(s, 0, sizeof *s);
    size_t n = 0, C = (size_t)c->n_classes, D = (size_t)c->dim;
    for (size_t i = 0; i < d->n; i++) n += roles[i] == role && class_of[d->artist[i]] >= 0;
    s->z = malloc((n * D + 1) * sizeof *s->z);
    s->cls = malloc((n + 1) * sizeof *s->cls);
    s->wt = malloc((n + 1) * sizeof *s->wt);
    size_t *count = calloc(C, sizeof *count);
    if (!s->z || !s->cls || !s->wt || !count) {
        free(count);
        fit_set_free(s);
        return -1;
    }
    for (size_t i = 0; i < d->n; i++) {
        if (roles[i] != role || class_of[d->artist[i]] < 0) continue;
        features(c, d->emb + i * D, 1, s->z + s->n * D);
        s->cls[s->n] = class_of[d->artist[i]];
        count[s->cls[s->n]]++;
        s->n++;
    }
    size_t present = 0;
    for (size_t k = 0; k < C; k++) present += count[k] > 0;
    for (size_t i = 0; i < n; i++) s->wt[i] = (float)n / (float)(present * count[s->cls[i]]);
    free(count);
    return 0;
}

/* Weighted mean log-loss and balanced top-1 of the current weights on s; l: n*C scratch. */
static double evaluate(const sx_classifier *c, const fit_set *s, float *l, double *top1,
                       double *balanced) {
    size_t C = (size_t)c->n_classes;
    logits(c, s->z, s->n, l);
    double loss = 0, hits = 0, wsum = 0;
    double bal_hits = 0, bal_w = 0;
    for (size_t i = 0; i < s->n; i++) {
        float *r = l + i * C;
        int best = 0;
        for (size_t k = 1; k < C; k++) best = r[k] > r[best] ? (int)k : best;
        loss -= s->wt[i] * softmax_row(r, (int)C, s->cls[i]);
        wsum += s->wt[i];
        hits += best == s->cls[i];
        bal_hits += s->wt[i] * (best == s->cls[i]);
        bal_w += s->wt[i];
    }
    if (top1) *top1 = s->n ? hits / (double)s->n : NAN;
    if (balanced) *balanced = bal_w > 0 ? bal_hits / bal_w : NAN;
    return wsum > 0 ? loss / wsum : NAN;
}

typedef struct adam {
    float *m, *v; /* [C*D + C]: w then b */
    long t;
} adam;

/* `steps` full-batch Adam steps at penalty l2; l, g: n*C scratch; grad: C*D + C. */
static void fit_steps(sx_classifier *c, const fit_set *s, float l2, int steps, adam *a, float *l,
                      float *grad) {
    size_t C = (size_t)c->n_classes, D = (size_t)c->dim, np = C * D + C;
    float *gw = grad, *gb = grad + C * D;
    for (int it = 0; it < steps; it++) {
        logits(c, s->z, s->n, l);
        for (size_t i = 0; i < s->n; i++) {
            float *r = l + i * C, scale = s->wt[i] / (float)s->n;
            softmax_row(r, (int)C, -1);
            r[s->cls[i]] -= 1.0f;
            for (size_t k = 0; k < C; k++) r[k] *= scale;
        }
        /* gw = G^T Z + l2 W, gb = column sums of G */
        memcpy(gw, c->w, C * D * sizeof *gw);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)C, (int)D, (int)s->n, 1.0f, l,
                    (int)C, s->z, (int)D, l2, gw, (int)D);
        memset(gb, 0, C * sizeof *gb);
        for (size_t i = 0; i < s->n; i++)
            for (size_t k = 0; k < C; k++) gb[k] += l[i * C + k];
        a->t++;
        float c1 = 1.0f - powf(0.9f, (float)a->t), c2 = 1.0f - powf(0.999f, (float)a->t);
        for (size_t p = 0; p < np; p++) {
            float *x = p < C * D ? &c->w[p] : &c->b[p - C * D];
            a->m[p] = 0.9f * a->m[p] + 0.1f * grad[p];
            a->v[p] = 0.999f * a->v[p] + 0.001f * grad[p] * grad[p];
            *x -= FIT_LR * (a->m[p] / c1) / (sqrtf(a->v[p] / c2) + 1e-8f);
        }
    }
}

/* Classes: the artists with training rows, in artist order. */
static siamidx_status make_classes(const sx_train_data *d, const uint8_t *roles,
                                   int32_t *class_of, int *n_classes, siamidx_error *err) {
    for (int a = 0; a < d->n_artists; a++) class_of[a] = -1;
    for (size_t i = 0; i < d->n; i++)
        if (roles[i] == SX_ROLE_TRAIN) class_of[d->artist[i]] = 0;
    int k = 0;
    for (int a = 0; a < d->n_artists; a++)
        if (class_of[a] == 0) class_of[a] = k++;
    *n_classes = k;
    if (k == 0) return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "classifier: no training images");
    return SIAMIDX_OK;
}

/* mean and inv_std of the normalised training embeddings. */
static void standardise(sx_classifier *c, const sx_train_data *d, const uint8_t *roles) {
    size_t D = (size_t)c->dim, n = 0;
    double *s1 = calloc(2 * D, sizeof *s1);
    float *x = malloc(D * sizeof *x);
    if (!s1 || !x) { /* keep mean 0, inv_std 1: a fit still works, less well */
        for (size_t j = 0; j < D; j++) c->inv_std[j] = 1.0f;
        free(s1), free(x);
        return;
    }
    double *s2 = s1 + D;
    for (size_t j = 0; j < D; j++) c->inv_std[j] = 1.0f; /* features() = plain normalisation */
    for (size_t i = 0; i < d->n; i++) {
        if (roles[i] != SX_ROLE_TRAIN) continue;
        features(c, d->emb + i * D, 1, x);
        for (size_t j = 0; j < D; j++) s1[j] += x[j], s2[j] += (double)x[j] * x[j];
        n++;
    }
    for (size_t j = 0; j < D; j++) {
        double m = s1[j] / (double)n, var = s2[j] / (double)n - m * m;
        c->mean[j] = (float)m;
        c->inv_std[j] = var > 1e-12 ? (float)(1.0 / sqrt(var)) : 0.0f;
    }
    free(s1), free(x);
}

siamidx_status sx_classifier_fit(const sx_train_data *d, const uint8_t *roles, int verbose,
                                 sx_classifier **out, siamidx_error *err) {
    *out = NULL;
    int32_t *class_of = malloc(((size_t)d->n_artists + 1) * sizeof *class_of);
    if (!class_of) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "classifier: out of memory");
    int C;
    siamidx_status st = make_classes(d, roles, class_of, &C, err);
    sx_classifier *c = st ? NULL : classifier_new(d->dim, C);
    if (!st && !c) st = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "classifier: out of memory");
    for (int a = 0; !st && a < d->n_artists; a++) {
        if (class_of[a] < 0) continue;
        char num[32];
        snprintf(num, sizeof num, "artist %d", a);
        const char *name = d->artist_names ? d->artist_names[a] : num;
        if (!(c->names[class_of[a]] = strdup(name)))
            st = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "classifier: out of memory");
    }
    fit_set tr = {0}, va = {0};
    if (!st) {
        standardise(c, d, roles);
        if (fit_set_make(c, d, roles, SX_ROLE_TRAIN, class_of, &tr) ||
            fit_set_make(c, d, roles, SX_ROLE_VAL, class_of, &va))
            st = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "classifier: out of memory");
    }
    const fit_set *judge = va.n ? &va : &tr;
    size_t np = (size_t)C * (size_t)d->dim + (size_t)C, nmax = tr.n > va.n ? tr.n : va.n;
    adam a = {calloc(np, sizeof(float)), calloc(np, sizeof(float)), 0};
    float *l = malloc((nmax * (size_t)C + 1) * sizeof *l), *grad = malloc(np * sizeof *grad);
    float *best_w = malloc(np * sizeof *best_w);
    if (!st && (!a.m || !a.v || !l || !grad || !best_w))
        st = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "classifier: out of memory");
    double best = INFINITY;
    size_t CD = (size_t)C * (size_t)d->dim;
    for (size_t p = 0; !st && p < sizeof l2_path / sizeof l2_path[0]; p++) {
        fit_steps(c, &tr, l2_path[p], p ? FIT_STEPS_NEXT : FIT_STEPS_FIRST, &a, l, grad);
        double top1, bal, loss = evaluate(c, judge, l, &top1, &bal);
        if (verbose)
            fprintf(stderr, "classifier: l2 %g: validation loss %.4f, top-1 %.4f, balanced %.4f\n",
                    l2_path[p], loss, top1, bal);
        if (loss < best || !isfinite(best)) {
            best = loss;
            c->l2 = l2_path[p];
            c->val_top1 = top1;
            c->val_balanced_top1 = bal;
            memcpy(best_w, c->w, CD * sizeof *best_w);
            memcpy(best_w + CD, c->b, (size_t)C * sizeof *best_w);
        }
    }
    if (!st) {
        memcpy(c->w, best_w, CD * sizeof *best_w);
        memcpy(c->b, best_w + CD, (size_t)C * sizeof *best_w);
        if (!va.n) c->val_top1 = c->val_balanced_top1 = NAN; /* nothing held out to judge */
    }
    fit_set_free(&tr), fit_set_free(&va);
    free(a.m), free(a.v), free(l), free(grad), free(best_w), free(class_of);
    if (st) sx_classifier_free(c);
    else *out = c;
    return st;
}

/* ---- serialisation --------------------------------------------------------------- */

#define CLASSIFIER_MAGIC "SIAMIDX-CLASSIFIER 1\n"
#define CLASSIFIER_MAX_ABS 1e7  /* as the head's: far beyond any fit, keeps scores finite */
#define CLASSIFIER_MAX_NAME 4096

static void put_floats(sx_strbuf *b, const float *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        uint8_t le[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
        sx_strbuf_put(b, le, 4);
    }
}

static uint32_t get_u32(const uint8_t *p) {
    return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void get_floats(const uint8_t *p, float *v, size_t n) {
    for (size_t i = 0; i < n; i++, p += 4) {
        uint32_t u = get_u32(p);
        memcpy(&v[i], &u, 4);
    }
}

siamidx_status sx_classifier_to_blob(const sx_classifier *c, uint8_t **blob, size_t *len,
                                     siamidx_error *err) {
    sx_strbuf b = {0};
    sx_strbuf_printf(&b, CLASSIFIER_MAGIC "dim=%d\nclasses=%d\nl2=%.9g\n", c->dim, c->n_classes,
                     c->l2);
    sx_strbuf_printf(&b, "fuse_weight=%.9g\nunk_bias=%.9g\nunk_top=%.9g\nunk_pair=%.9g\n",
                     c->fuse_weight, c->unk_bias, c->unk_top, c->unk_pair);
    sx_strbuf_printf(&b, "unknown_prior=%.9g\nval_top1=%.9g\nval_balanced_top1=%.9g\n",
                     c->unknown_prior, c->val_top1, c->val_balanced_top1);
    sx_strbuf_printf(&b, "fused_top1=%.9g\nhead_id=%s\ndata\n", c->fused_top1, c->head_id);
    size_t D = (size_t)c->dim, C = (size_t)c->n_classes;
    put_floats(&b, c->mean, D);
    put_floats(&b, c->inv_std, D);
    put_floats(&b, c->w, C * D);
    put_floats(&b, c->b, C);
    for (size_t k = 0; k < C; k++) {
        uint32_t n = (uint32_t)strlen(c->names[k]);
        uint8_t le[4] = {(uint8_t)n, (uint8_t)(n >> 8), (uint8_t)(n >> 16), (uint8_t)(n >> 24)};
        sx_strbuf_put(&b, le, 4);
        sx_strbuf_put(&b, c->names[k], n);
    }
    if (b.oom) {
        free(b.buf);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "classifier: out of memory serialising");
    }
    *blob = (uint8_t *)b.buf;
    *len = b.len;
    return SIAMIDX_OK;
}

/* The header's values; `seen` has one bit per key. */
typedef struct header {
    long dim, classes;
    double v[9]; /* l2 fuse_weight unk_bias unk_top unk_pair unknown_prior val_top1 val_bal fused */
    char head_id[65];
    unsigned seen;
} header;

static const char *const real_keys[] = {"l2",           "fuse_weight",   "unk_bias",
                                        "unk_top",      "unk_pair",      "unknown_prior",
                                        "val_top1",     "val_balanced_top1", "fused_top1"};
#define N_REAL (sizeof real_keys / sizeof real_keys[0])
#define ALL_KEYS ((1u << (N_REAL + 3)) - 1) /* dim, classes, head_id and the reals */

/* One "key=value" line (NUL-terminated, no newline); 0 when it is unusable. */
static int header_line(header *h, const char *line) {
    const char *eq = strchr(line, '=');
    if (!eq) return 0;
    size_t kn = (size_t)(eq - line);
    const char *v = eq + 1;
    char *end;
    if (kn == 3 && !memcmp(line, "dim", 3)) {
        h->dim = strtol(v, &end, 10);
        h->seen |= 1u;
        return *v && !*end && h->dim >= 1 && h->dim <= (1 << 20);
    }
    if (kn == 7 && !memcmp(line, "classes", 7)) {
        h->classes = strtol(v, &end, 10);
        h->seen |= 2u;
        return *v && !*end && h->classes >= 1 && h->classes <= (1 << 20);
    }
    if (kn == 7 && !memcmp(line, "head_id", 7)) {
        h->seen |= 4u;
        if (strlen(v) != 64 || strspn(v, "0123456789abcdef") != 64) return 0;
        memcpy(h->head_id, v, 65);
        return 1;
    }
    for (size_t k = 0; k < N_REAL; k++)
        if (strlen(real_keys[k]) == kn && !memcmp(line, real_keys[k], kn)) {
            double x = strtod(v, &end);
            h->v[k] = x;
            h->seen |= 8u << k;
            if (!*v || *end) return 0;
            if (k >= 6) return isnan(x) || (x >= 0 && x <= 1); /* measured shares, NaN: none */
            if (!isfinite(x) || fabs(x) > CLASSIFIER_MAX_ABS) return 0;
            if (k == 0) return x >= 0;
            if (k == 1) return x >= 0 && x <= 1;
            if (k == 5) return x >= 0 && x < 1;
            return 1;
        }
    return 1; /* a key of a later version: ignored */
}

static int values_ok(const float *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]) || fabsf(v[i]) > CLASSIFIER_MAX_ABS) return 0;
    return 1;
}

/* Names after the arrays: exactly `classes` of them, non-empty, no NUL, distinct. */
static siamidx_status read_names(sx_classifier *c, const uint8_t *p, size_t left,
                                 siamidx_error *err) {
    for (int k = 0; k < c->n_classes; k++) {
        if (left < 4) break;
        uint32_t n = get_u32(p);
        if (n == 0 || n > CLASSIFIER_MAX_NAME || n > left - 4 || memchr(p + 4, 0, n))
            return sx_fail(err, SIAMIDX_ERR_INDEX_CORRUPT, "classifier record: bad name %d", k);
        if (!(c->names[k] = strndup((const char *)p + 4, n)))
            return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "classifier record: out of memory");
        for (int j = 0; j < k; j++)
            if (!strcmp(c->names[j], c->names[k]))
                return sx_fail(err, SIAMIDX_ERR_INDEX_CORRUPT,
                               "classifier record: artist '%s' named twice", c->names[k]);
        p += 4 + n;
        left -= 4 + n;
    }
    if (left || !c->names[c->n_classes - 1])
        return sx_fail(err, SIAMIDX_ERR_INDEX_CORRUPT,
                       "classifier record: the names do not fill the record (%zu bytes left)",
                       left);
    return SIAMIDX_OK;
}

siamidx_status sx_classifier_from_blob(const uint8_t *blob, size_t len, sx_classifier **out,
                                       siamidx_error *err) {
    *out = NULL;
    size_t ml = strlen(CLASSIFIER_MAGIC), pos = ml, data = 0;
    if (len < ml || memcmp(blob, CLASSIFIER_MAGIC, ml))
        return sx_fail(err, SIAMIDX_ERR_INDEX_CORRUPT, "classifier record: bad magic at byte 0");
    header h = {0};
    while (pos < len && !data) {
        const uint8_t *nl = memchr(blob + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (blob + pos)) : 0;
        char line[256];
        if (!nl || n >= sizeof line || memchr(blob + pos, 0, n))
            return sx_fail(err, SIAMIDX_ERR_INDEX_CORRUPT,
                           "classifier record: bad header line at byte %zu", pos);
        memcpy(line, blob + pos, n);
        line[n] = 0;
        if (!strcmp(line, "data")) data = pos + n + 1;
        else if (!header_line(&h, line))
            return sx_fail(err, SIAMIDX_ERR_INDEX_CORRUPT,
                           "classifier record: unusable line '%s' at byte %zu", line, pos);
        pos += n + 1;
    }
    if (!data || (h.seen & ALL_KEYS) != ALL_KEYS)
        return sx_fail(err, SIAMIDX_ERR_INDEX_CORRUPT,
                       "classifier record: missing keys or data section (%zu bytes)", len);
    /* Sizes are checked before anything is allocated for them. */
    size_t D = (size_t)h.dim, C = (size_t)h.classes;
    if (C * D > ((size_t)1 << 28))
        return sx_fail(err, SIAMIDX_ERR_INDEX_CORRUPT, "classifier record: %zu x %zu too large", C,
                       D);
    size_t arrays = (2 * D + C * D + C) * 4;
    if (len - data < arrays + 5 * C)
        return sx_fail(err, SIAMIDX_ERR_INDEX_CORRUPT,
                       "classifier record: data section at byte %zu has %zu bytes, need at "
                       "least %zu",
                       data, len - data, arrays + 5 * C);
    sx_classifier *c = classifier_new((int)D, (int)C);
    if (!c) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "classifier record: out of memory");
    const uint8_t *p = blob + data;
    get_floats(p, c->mean, D);
    get_floats(p + 4 * D, c->inv_std, D);
    get_floats(p + 8 * D, c->w, C * D);
    get_floats(p + 8 * D + 4 * C * D, c->b, C);
    c->l2 = (float)h.v[0], c->fuse_weight = (float)h.v[1];
    c->unk_bias = (float)h.v[2], c->unk_top = (float)h.v[3], c->unk_pair = (float)h.v[4];
    c->unknown_prior = (float)h.v[5];
    c->val_top1 = h.v[6], c->val_balanced_top1 = h.v[7], c->fused_top1 = h.v[8];
    memcpy(c->head_id, h.head_id, sizeof c->head_id);
    siamidx_status st = SIAMIDX_OK;
    int ok = values_ok(c->mean, D) && values_ok(c->inv_std, D) && values_ok(c->w, C * D) &&
             values_ok(c->b, C);
    for (size_t j = 0; ok && j < D; j++) ok = c->inv_std[j] >= 0;
    if (!ok)
        st = sx_fail(err, SIAMIDX_ERR_INDEX_CORRUPT,
                     "classifier record: data section holds non-finite or out-of-range values");
    if (!st) st = read_names(c, p + arrays, len - data - arrays, err);
    if (st) sx_classifier_free(c);
    else *out = c;
    return st;
}

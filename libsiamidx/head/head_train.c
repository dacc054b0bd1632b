/*
 * head_train.c - fitting a head on labelled embeddings.
 *
 * Binary cross-entropy, Adam, fresh artist-balanced pairs every epoch, early
 * stopping on validation AUC, then Platt calibration, the threshold and the
 * attribution parameters (attribution.c) on the validation images. The split
 * is by image (per artist, so every seen artist has validation and test
 * images) and can keep whole artists out to measure unseen artists; it is
 * recorded in the head (split.c) so that `eval` measures on what training
 * never saw.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/metrics.h"
#include "base/pairs.h"
#include "head/attribution.h"
#include "head/head.h"
#include "head/head_train.h"
#include "head/split.h"


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

/* One artist's roles when its test images are given: validation is drawn
   (already shuffled) from the others, the rest trains. */
static void roles_around_given_tests(const uint8_t *test, const size_t *items, size_t cnt,
                                     double val_fraction, uint8_t *roles) {
    size_t others = 0;
    for (size_t i = 0; i < cnt; i++) others += !test[items[i]];
    size_t nv = (size_t)(others * val_fraction / 2 + 0.5);
    if (others < 3 || nv >= others) nv = 0;
    for (size_t i = 0, v = 0; i < cnt; i++) {
        size_t it = items[i];
        if (test[it]) roles[it] = SX_ROLE_TEST;
        else roles[it] = v++ < nv ? SX_ROLE_VAL : SX_ROLE_TRAIN;
    }
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
        if (o->test_items) {
            roles_around_given_tests(o->test_items, items, cnt, o->val_fraction, roles);
            continue;
        }
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

/* The split record: the settings, then the lists (split.c writes and reads those). */
static char *split_info(const sx_train_data *d, const sx_train_opts *o, const uint8_t *roles) {
    char settings[256];
    snprintf(settings, sizeof settings,
             "seed=%llu\nval_fraction=%.9g\nholdout_artists=%d\nepochs=%d\nl2=%.9g\n",
             (unsigned long long)o->seed, o->val_fraction, o->holdout_artists, o->epochs, o->l2);
    return sx_split_record(settings, d, roles);
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
        if (o->progress) o->progress(o->progress_ctx, (size_t)ep, (size_t)o->epochs);
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
    sx_head_set_calibration(h, w.val_p, labels, n_val_pairs); /* pair reports' context */
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

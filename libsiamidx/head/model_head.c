/*
 * model_head.c - a trained Siamese head written into a model file, as the
 * model's default head (what answers use when an index has no head of its own).
 *
 * The copy is made from the file's bytes, not from the loaded model: the
 * loader folds BatchNorm, so only the file still holds the tensors as they
 * were stored. Each tensor is copied verbatim with its dtype and every
 * metadata key is kept, so the fingerprint (which skips head.*) and therefore
 * every index built with the model stay valid. "head.*" tensors and metadata
 * keys belong to the head and are replaced as a whole.
 *
 * Loading lives here too: a model file is an encoder (nn/, which knows
 * nothing of heads) plus an optional default head, and this is the lowest
 * layer that knows both. siamidx_model_load parses the file once and builds
 * both from that one mapping, so they always come from the same bytes.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "siamidx_ext.h"
#include "base/error.h"
#include "data/collection.h"
#include "data/collection_many.h"
#include "head/head.h"
#include "head/head_train.h"
#include "head/model_head.h"
#include "nn/model.h"
#include "nn/safetensors.h"

static int is_head_name(const char *name) { return !strncmp(name, "head.", 5); }

/*
 * head.std holds 1 / inv_std and the loader takes 1 / head.std again: pick
 * the float whose reciprocal gives inv_std back exactly, so that the model's
 * head scores bit for bit as the head it was copied from. A dead dimension
 * (inv_std 0) becomes an infinite std, whose reciprocal is 0 again.
 */
static float stored_std(float inv_std) {
    if (inv_std == 0.0f) return INFINITY;
    float s = 1.0f / inv_std;
    for (int k = 0; k < 4; k++) {
        float up = s, down = s;
        for (int j = 0; j < k; j++) up = nextafterf(up, INFINITY), down = nextafterf(down, 0.0f);
        if (1.0f / up == inv_std) return up;
        if (1.0f / down == inv_std) return down;
    }
    return s;
}

typedef struct meta_out {
    sx_meta_entry *e;
    size_t n, cap;
    char *owned[16]; /* values formatted here */
    int n_owned;
} meta_out;

static int meta_push(meta_out *m, const char *key, const char *value) {
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 32;
        sx_meta_entry *e = realloc(m->e, cap * sizeof *e);
        if (!e) return 0;
        m->e = e;
        m->cap = cap;
    }
    m->e[m->n].key = (char *)key;
    m->e[m->n].value = (char *)value;
    m->n++;
    return 1;
}

static int meta_pushf(meta_out *m, const char *key, const char *fmt, ...) SX_PRINTF(3, 4);
static int meta_pushf(meta_out *m, const char *key, const char *fmt, ...) {
    if (m->n_owned == (int)(sizeof m->owned / sizeof m->owned[0])) return 0;
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *v = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (!v) return 0;
    va_start(ap, fmt);
    vsnprintf(v, (size_t)len + 1, fmt, ap);
    va_end(ap);
    m->owned[m->n_owned++] = v;
    return meta_push(m, key, v);
}

static void meta_out_free(meta_out *m) {
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->e);
}

static int add_head_meta(meta_out *m, const sx_head *h, const char *trained_on) {
    char calib[SX_HEAD_CALIB_BINS * 24];
    sx_head_calibration_string(h, calib, sizeof calib);
    if (h->has_calib && !meta_pushf(m, "head.calibration", "%s", calib)) return 0;
    char feats[64];
    sx_head_features_string(h->features, feats, sizeof feats);
    const sx_head_report *r = &h->report;
    return meta_pushf(m, "head.features", "%s", feats) &&
           meta_pushf(m, "head.val_auc", "%.4f", r->val_auc) &&
           meta_pushf(m, "head.val_accuracy", "%.4f", r->val_acc) &&
           meta_pushf(m, "head.val_ece", "%.4f", r->val_ece) &&
           meta_pushf(m, "head.threshold", "%.6f", h->threshold) &&
           meta_pushf(m, "head.images", "%zu train, %zu validation, %zu test, %zu unseen",
                      r->n_train, r->n_val, r->n_test, r->n_unseen) &&
           meta_pushf(m, "head.trained_on", "%s", trained_on ? trained_on : "");
}

/* Loads what was written and checks that it embeds as `model` does. */
static siamidx_status check_written(const siamidx_model *model, const char *out_path,
                                    siamidx_error *err) {
    siamidx_model *back;
    siamidx_status s = siamidx_model_load(out_path, &back, err);
    if (s) {
        sx_error_prefix(err, "%s: written model does not load", out_path);
        return s;
    }
    if (strcmp(back->fingerprint, model->fingerprint) || !back->head)
        s = sx_fail(err, SIAMIDX_ERR_MODEL_MISMATCH,
                    "%s: fingerprint %.12s after adding the head, %.12s before: %s changed "
                    "on disk while the head was trained",
                    out_path, back->fingerprint, model->fingerprint, model->path);
    siamidx_model_free(back);
    return s;
}

siamidx_status sx_model_write_head(const siamidx_model *model, const sx_head *head,
                                   const char *trained_on, const char *out_path,
                                   siamidx_error *err) {
    if (!model || !head || !out_path)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "model head: NULL argument");
    size_t dim = siamidx_model_dim(model, SIAMIDX_POOL_DEFAULT);
    if ((size_t)head->dim != dim)
        return sx_fail(err, SIAMIDX_ERR_MODEL_MISMATCH,
                       "model head: the head takes %d dimensions, %s embeds %zu", head->dim,
                       model->path, dim);
    sx_safetensors st;
    siamidx_status s = sx_safetensors_open(model->path, &st, err);
    if (s) return s;
    sx_tensor_out *ts = calloc(st.n_tensors + 4, sizeof *ts);
    float *std = malloc((size_t)head->dim * sizeof *std);
    meta_out m = {0};
    if (!ts || !std) {
        s = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "model head: out of memory");
        goto done;
    }
    size_t n = 0;
    for (size_t i = 0; i < st.n_tensors; i++) {
        const sx_tensor_info *t = &st.tensors[i];
        if (is_head_name(t->name)) continue;
        ts[n].name = t->name;
        ts[n].ndim = t->ndim;
        memcpy(ts[n].shape, t->shape, sizeof t->shape);
        ts[n].raw = st.map + st.data_offset + t->begin;
        ts[n].raw_dtype = t->dtype;
        n++;
    }
    for (int i = 0; i < head->dim; i++) std[i] = stored_std(head->inv_std[i]);
    float params[6] = {head->bias,      head->platt_a,    head->platt_b,
                       head->threshold, head->attr_scale, head->attr_unknown};
    const struct {
        const char *name;
        const float *data;
        int64_t numel;
    } add[4] = {{"head.mean", head->mean, head->dim},
                {"head.std", std, head->dim},
                {"head.w", head->w, head->n_feat},
                {"head.params", params, 6}};
    for (int k = 0; k < 4; k++, n++) {
        ts[n].name = add[k].name;
        ts[n].ndim = 1;
        ts[n].shape[0] = add[k].numel;
        ts[n].raw = add[k].data; /* F32 whatever the encoder's dtype: the head is small */
        ts[n].raw_dtype = SX_F32;
    }
    int ok = 1;
    for (size_t i = 0; ok && i < st.n_meta; i++)
        if (!is_head_name(st.meta[i].key)) ok = meta_push(&m, st.meta[i].key, st.meta[i].value);
    if (!ok || !add_head_meta(&m, head, trained_on)) {
        s = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "model head: out of memory");
        goto done;
    }
    s = sx_safetensors_write(out_path, m.e, m.n, ts, n, SX_F32, err);
    if (!s && (s = check_written(model, out_path, err)) && strcmp(out_path, model->path))
        unlink(out_path); /* never leave a file that does not match its index */
done:
    meta_out_free(&m);
    free(std);
    free(ts);
    sx_safetensors_close(&st);
    return s;
}

/* ---- a head for a freshly trained encoder -------------------------------------------- */

static int by_name(const void *a, const void *b) {
    return strcmp(**(const char *const *const *)a, **(const char *const *const *)b);
}

/* Dense artist ids in name order; label[k]: the k-th entry that embedded (ok[i]). */
static siamidx_status label_artists(const sx_collection *c, const uint8_t *ok, int32_t *label,
                                    int *n_artists, siamidx_error *err) {
    const char **names = malloc((c->n_entries ? c->n_entries : 1) * sizeof *names);
    const char ***order = malloc((c->n_entries ? c->n_entries : 1) * sizeof *order);
    if (!names || !order) {
        free(names), free(order);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "model head: out of memory");
    }
    size_t n = 0;
    for (size_t i = 0; i < c->n_entries; i++)
        if (ok[i]) names[n++] = c->entries[i].artist;
    for (size_t i = 0; i < n; i++) order[i] = &names[i];
    qsort(order, n, sizeof *order, by_name);
    int id = -1;
    for (size_t i = 0; i < n; i++) {
        if (!i || strcmp(*order[i], *order[i - 1])) id++;
        label[order[i] - names] = id;
    }
    *n_artists = id + 1;
    free(names);
    free(order);
    return SIAMIDX_OK;
}

typedef struct embedded {
    float *emb; /* rows of the images that embedded, in collection order */
    size_t n;
    uint8_t *ok; /* per collection entry */
} embedded;

static siamidx_status embed_collection(const siamidx_model *model, const sx_collection *c,
                                       siamidx_progress_fn progress, void *ctx, embedded *e,
                                       siamidx_error *err) {
    size_t dim = siamidx_model_dim(model, SIAMIDX_POOL_DEFAULT), total = c->n_entries;
    const size_t chunk = 256;
    const char **paths = malloc(chunk * sizeof *paths);
    siamidx_status *status = malloc(chunk * sizeof *status);
    e->emb = malloc((total ? total : 1) * dim * sizeof *e->emb);
    e->ok = calloc(total ? total : 1, 1);
    e->n = 0;
    if (!paths || !status || !e->emb || !e->ok) {
        free(paths), free(status);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "model head: out of memory for %zu images",
                       total);
    }
    siamidx_status s = SIAMIDX_OK;
    for (size_t start = 0; start < total && !s; start += chunk) {
        size_t m = total - start < chunk ? total - start : chunk;
        for (size_t i = 0; i < m; i++) paths[i] = c->entries[start + i].resolved;
        /* rows land after the kept ones; failed rows are then squeezed out */
        s = siamidx_embed_files(model, paths, m, NULL, e->emb + e->n * dim, status, NULL, err);
        if (s == SIAMIDX_ERR_IMAGE) s = SIAMIDX_OK; /* some failed: they are left out */
        if (s) break;
        /* compact: keep the rows that embedded */
        float *base = e->emb + e->n * dim;
        size_t kept = 0;
        for (size_t i = 0; i < m; i++) {
            if (status[i] != SIAMIDX_OK) continue;
            if (kept != i) memmove(base + kept * dim, base + i * dim, dim * sizeof(float));
            e->ok[start + i] = 1;
            kept++;
        }
        e->n += kept;
        if (progress) progress(ctx, start + m, total);
    }
    free(paths);
    free(status);
    return s;
}

/* "A + B": how the head's metadata names several collections. */
static void name_collections(const char *const *c, size_t n, char *out, size_t cap) {
    size_t len = 0;
    out[0] = 0;
    for (size_t i = 0; i < n && len < cap; i++)
        len += (size_t)snprintf(out + len, cap - len, "%s%s", i ? " + " : "", c[i]);
}

/* The images of the collections, joined, less the excluded artists (as train-encoder reads them). */
static siamidx_status load_images(const char *const *collections, size_t n,
                                  const char *exclude_artists, sx_collection *c,
                                  siamidx_error *err) {
    siamidx_status s = sx_collection_load_many(collections, n, NULL, c, err);
    if (s || !exclude_artists) return s;
    char **names = NULL;
    size_t n_names = 0, dropped = 0;
    s = sx_artist_list_read(exclude_artists, &names, &n_names, err);
    if (!s) s = sx_collection_drop_artists(c, names, n_names, &dropped, NULL, err);
    free(names);
    return s;
}

siamidx_status sx_model_train_head(const char *model_path, const char *const *collections,
                                   size_t n_collections, const char *exclude_artists,
                                   const sx_train_opts *o, siamidx_progress_fn progress,
                                   void *progress_ctx, sx_head **out, size_t *n_failed,
                                   siamidx_error *err) {
    char collection[2048];
    name_collections(collections, n_collections, collection, sizeof collection);
    *out = NULL;
    if (n_failed) *n_failed = 0;
    siamidx_model *model = NULL;
    sx_collection c;
    memset(&c, 0, sizeof c);
    embedded e = {0};
    int32_t *label = NULL;
    sx_head *h = NULL;
    siamidx_status s = siamidx_model_load(model_path, &model, err);
    if (!s) s = load_images(collections, n_collections, exclude_artists, &c, err);
    if (!s) s = embed_collection(model, &c, progress, progress_ctx, &e, err);
    if (s) goto done;
    if (n_failed) *n_failed = c.n_entries - e.n;
    int n_artists = 0;
    if (!(label = malloc((e.n ? e.n : 1) * sizeof *label))) {
        s = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "model head: out of memory");
        goto done;
    }
    if ((s = label_artists(&c, e.ok, label, &n_artists, err))) goto done;
    sx_train_data d = {.n = e.n,
                       .dim = (int)siamidx_model_dim(model, SIAMIDX_POOL_DEFAULT),
                       .emb = e.emb,
                       .artist = label,
                       .n_artists = n_artists};
    if ((s = sx_head_train(&d, o, NULL, &h, err))) goto done;
    /* The encoder trainer records its data's fingerprint: name it when it is this data. */
    const char *data = siamidx_model_meta(model, "training_data");
    const char *fp = siamidx_model_meta(model, "training_data_fingerprint");
    char trained_on[4096]; /* the collection (up to 2047 bytes), counts and fingerprint */
    snprintf(trained_on, sizeof trained_on, "%s: %zu images of %d artists (seed %llu)%s%s",
             collection, e.n, n_artists, (unsigned long long)o->seed,
             data && fp && !strcmp(data, collection) && !exclude_artists ? ", data fingerprint " : "",
             data && fp && !strcmp(data, collection) && !exclude_artists ? fp : "");
    s = sx_model_write_head(model, h, trained_on, model_path, err);
done:
    if (s) siamidx_head_free(h);
    else *out = h;
    free(label);
    free(e.emb);
    free(e.ok);
    sx_collection_free(&c);
    siamidx_model_free(model);
    return s;
}

/* ---- the public model API: encoder + default head --------------------------------- */

siamidx_status siamidx_model_load(const char *path, siamidx_model **out, siamidx_error *err) {
    if (!out || !path) return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "model path missing");
    *out = NULL;
    sx_safetensors st;
    siamidx_status s = sx_safetensors_open(path, &st, err);
    if (s) return s;
    siamidx_model *m = NULL;
    s = sx_model_load(&st, path, &m, err);
    if (!s) s = sx_head_from_safetensors(&st, &m->head, err); /* head.*: optional */
    sx_safetensors_close(&st);
    if (s) {
        siamidx_model_free(m);
        return s;
    }
    *out = m;
    return SIAMIDX_OK;
}

void siamidx_model_free(siamidx_model *model) {
    if (!model) return;
    siamidx_head_free(model->head);
    model->head = NULL;
    sx_model_free(model);
}

const siamidx_head *siamidx_model_head(const siamidx_model *model) {
    return model ? model->head : NULL;
}

/* ---- siamidx_ext.h ------------------------------------------------------------------ */

siamidx_status siamidx_model_write_head(const siamidx_model *model, const siamidx_head *head,
                                        const char *trained_on, const char *out_path,
                                        siamidx_error *err) {
    return sx_model_write_head(model, head, trained_on, out_path, err);
}

void siamidx_train_options_init(siamidx_train_options *opt) {
    sx_train_opts o;
    sx_train_opts_init(&o);
    memset(opt, 0, sizeof *opt);
    opt->epochs = o.epochs;
    opt->seed = o.seed;
    opt->val_fraction = o.val_fraction;
    opt->unknown_prior = SIAMIDX_DEFAULT_UNKNOWN_PRIOR;
}

/* The options of `siamidx train` (siamidx_train_options) as head training takes them. */
void sx_train_opts_from_public(const siamidx_train_options *opt, sx_train_opts *o) {
    sx_train_opts_init(o);
    if (!opt) return;
    if (opt->epochs > 0) o->epochs = opt->epochs;
    if (opt->val_fraction > 0) o->val_fraction = opt->val_fraction;
    o->seed = opt->seed;
    o->holdout_artists = opt->holdout_artists;
    o->verbose = opt->verbose;
    o->progress = opt->progress;
    o->progress_ctx = opt->progress_ctx;
}

void sx_train_report_from_head(const sx_head *h, size_t unseen_artists,
                               siamidx_train_report *report) {
    memset(report, 0, sizeof *report);
    report->val_auc = h->report.val_auc;
    report->val_accuracy = h->report.val_acc;
    report->val_ece = h->report.val_ece;
    report->threshold = h->threshold;
    report->epochs_run = h->report.epochs_run;
    report->best_epoch = h->report.best_epoch;
    report->n_train = h->report.n_train;
    report->n_val = h->report.n_val;
    report->n_test = h->report.n_test;
    report->n_unseen = h->report.n_unseen;
    report->n_unseen_artists = unseen_artists;
}

siamidx_status siamidx_model_train_head(const char *model_path, const char *collection,
                                        const siamidx_train_options *opt,
                                        siamidx_progress_fn progress, void *progress_ctx,
                                        siamidx_train_report *report, size_t *n_failed,
                                        siamidx_error *err) {
    return siamidx_model_train_head_many(model_path, &collection, collection ? 1 : 0, NULL, opt,
                                         progress, progress_ctx, report, n_failed, err);
}

siamidx_status siamidx_model_train_head_many(const char *model_path,
                                             const char *const *collections, size_t n_collections,
                                             const char *exclude_artists,
                                             const siamidx_train_options *opt,
                                             siamidx_progress_fn progress, void *progress_ctx,
                                             siamidx_train_report *report, size_t *n_failed,
                                             siamidx_error *err) {
    if (!model_path || !collections || !n_collections)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "model head: NULL argument");
    for (size_t i = 0; i < n_collections; i++)
        if (!collections[i])
            return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "model head: NULL collection");
    if (opt && opt->n_test_images)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT,
                       "model head: given test images need an index (siamidx train -i)");
    sx_train_opts o;
    sx_train_opts_from_public(opt, &o);
    sx_head *h = NULL;
    siamidx_status s = sx_model_train_head(model_path, collections, n_collections,
                                           exclude_artists, &o, progress, progress_ctx, &h,
                                           n_failed, err);
    if (!s && report) sx_train_report_from_head(h, (size_t)o.holdout_artists, report);
    siamidx_head_free(h);
    return s;
}

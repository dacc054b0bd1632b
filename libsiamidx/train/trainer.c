/*
 * trainer.c - the training loop: epochs of balanced batches, validation
 * after each epoch, the best model kept, checkpoint/resume, and a clean stop
 * (resumable checkpoint) when the caller raises *stop (SIGINT/SIGTERM).
 *
 * All randomness is counter-based (sx_tr_hash of seed, epoch, step), so a
 * resumed run draws exactly the batches and crops the interrupted one would
 * have; with the same thread count it reproduces it bit for bit.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "train/trainer.h"
#include "train/train_data.h"
#include "train/train_net.h"
#include "train/train_optim.h"
#include "train/train_layers.h"
#include "nn/safetensors.h"
#include "base/metrics.h"
#include "base/error.h"
#include "train/train_augment.h"

static const float IMAGENET_MEAN[3] = {0.485f, 0.456f, 0.406f};
static const float IMAGENET_STD[3] = {0.229f, 0.224f, 0.225f};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- metadata helpers ------------------------------------------------------------- */

typedef struct meta_list {
    sx_meta_entry e[64];
    char *owned[64];
    size_t n;
} meta_list;

static void meta_add(meta_list *m, const char *key, const char *fmt, ...) SX_PRINTF(3, 4);
static void meta_add(meta_list *m, const char *key, const char *fmt, ...) {
    if (m->n == 64) return;
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *v = malloc((size_t)len + 1);
    if (!v) return;
    va_start(ap, fmt);
    vsnprintf(v, (size_t)len + 1, fmt, ap);
    va_end(ap);
    m->e[m->n].key = (char *)key;
    m->e[m->n].value = v;
    m->owned[m->n++] = v;
}

static void meta_free(meta_list *m) {
    for (size_t i = 0; i < m->n; i++) free(m->owned[i]);
    m->n = 0;
}

/* ---- the state a checkpoint carries ---------------------------------------------- */

typedef struct trainer {
    const sx_tr_options *o;
    sx_tr_data data;
    sx_tr_net *net;
    sx_tr_adamw opt;
    float *best_params, *best_bufs;
    float *ema_params, *ema_bufs; /* --ema: exponential moving average, NULL when off */
    int epoch, step;       /* next to run */
    int64_t global_step;
    int steps_per_epoch;
    double best_score;     /* validation pair AUC */
    int best_epoch;
    char *history;         /* one line per epoch, for the metadata */
    double train_seconds;  /* across resumes */
    sx_tr_val best_val;
} trainer;

static void history_add(trainer *t, const char *line) {
    size_t old = t->history ? strlen(t->history) : 0, add = strlen(line);
    char *h = realloc(t->history, old + add + 2);
    if (!h) return;
    memcpy(h + old, line, add);
    h[old + add] = '\n';
    h[old + add + 1] = 0;
    t->history = h;
}

/* ---- model and checkpoint files ------------------------------------------------ */

static size_t collect_tensors(trainer *t, sx_tensor_out *out, const float *params,
                              const float *bufs, int with_heads) {
    size_t n = 0;
    sx_tr_net *net = t->net;
    for (int i = 0; i < net->n_tensors; i++) {
        const sx_tr_tensor *x = &net->tensors[i];
        if (!with_heads && !strncmp(x->name, "siamese.", 8)) continue;
        /* a classifier over style statistics is no torchvision fc: the model
           file (nn/model.c) keeps fc for layer4's average only */
        if (!with_heads && net->cfg.style_stages && !strncmp(x->name, "fc.", 3)) continue;
        out[n].name = x->name;
        out[n].data = (x->kind == SX_TR_BUFFER ? bufs : params) + x->off;
        out[n].ndim = x->ndim;
        for (int d = 0; d < x->ndim; d++) out[n].shape[d] = x->shape[d];
        n++;
    }
    return n;
}

/* "3,4" for stages 3 and 4 */
static void style_list(unsigned stages, char *out, size_t cap) {
    size_t n = 0;
    out[0] = 0;
    for (int s = 0; s < 4 && n + 3 < cap; s++)
        if (stages & (1u << s)) n += (size_t)snprintf(out + n, cap - n, n ? ",%d" : "%d", s + 1);
}

static const char *objective_name(sx_tr_objective o) {
    switch (o) {
    case SX_TR_CLASSIFY: return "classify";
    case SX_TR_SIAMESE: return "siamese";
    case SX_TR_BOTH: return "both";
    case SX_TR_COSFACE: return "cosface";
    case SX_TR_SUPCON: return "supcon";
    }
    return "?";
}

/*
 * What shapes the batches and the updates beyond the data and the network:
 * recorded in the model, and compared on --resume so that a resumed run is
 * the run it claims to continue (bit for bit).
 */
static void training_recipe(const trainer *t, char *out, size_t cap) {
    const sx_tr_config *c = &t->net->cfg;
    char aug[160];
    sx_tr_augment_describe(t->o->augment, aug, sizeof aug);
    int n = snprintf(out, cap, "objective %s", objective_name(c->objective));
    if (c->objective == SX_TR_COSFACE && n > 0 && (size_t)n < cap)
        n += snprintf(out + n, cap - n, " (margin %g, scale %g)", c->cos_margin, c->cos_scale);
    if (c->objective == SX_TR_SUPCON && n > 0 && (size_t)n < cap)
        n += snprintf(out + n, cap - n, " (weight %g, temperature %g)", c->contrast_weight,
                      c->temperature);
    if (n > 0 && (size_t)n < cap)
        n += snprintf(out + n, cap - n, "; input %d; training scale %d; augment %s; ema %g",
                      c->input, t->data.scale, aug, t->o->ema_decay);
    if (c->style_stages && n > 0 && (size_t)n < cap) {
        char stages[16];
        style_list(c->style_stages, stages, sizeof stages);
        n += snprintf(out + n, cap - n, "; pooling style %s", stages);
    }
    if (t->o->same_style > 0 && n > 0 && (size_t)n < cap)
        snprintf(out + n, cap - n, "; same-style batches %g", t->o->same_style);
}

static void add_common_meta(trainer *t, meta_list *m) {
    const sx_tr_options *o = t->o;
    const sx_tr_config *c = &t->net->cfg;
    meta_add(m, "arch", "%s", c->arch);
    meta_add(m, "width", "%g", c->width);
    meta_add(m, "training_crop", "%d", c->input);
    if (!c->style_stages) /* a style model's file has no fc (write_model) */
        meta_add(m, "num_classes", "%d", c->n_classes);
    meta_add(m, "training_command", "%s", o->command ? o->command : "");
    meta_add(m, "training_data", "%s", o->collection);
    meta_add(m, "training_data_fingerprint", "%s", t->data.fingerprint);
    meta_add(m, "training_images", "%d train, %d validation, %d artists", t->data.n_train,
             t->data.n_val, t->data.n_artists);
    meta_add(m, "training_seed", "%llu", (unsigned long long)o->seed);
    char recipe[512];
    training_recipe(t, recipe, sizeof recipe);
    meta_add(m, "training_recipe", "%s", recipe);
    if (t->data.n_excluded) {
        size_t len = 1;
        for (size_t i = 0; i < t->data.n_excluded; i++) len += strlen(t->data.excluded[i]) + 1;
        char *names = calloc(1, len);
        for (size_t i = 0; names && i < t->data.n_excluded; i++) {
            strcat(names, t->data.excluded[i]);
            if (i + 1 < t->data.n_excluded) strcat(names, "\n");
        }
        if (names) meta_add(m, "training_excluded_artists", "%s", names);
        free(names);
    }
    meta_add(m, "training_history", "%s", t->history ? t->history : "");
    meta_add(m, "training_seconds", "%.0f", t->train_seconds);
}

static siamidx_status write_model(trainer *t, siamidx_error *err) {
    sx_tr_net *net = t->net;
    sx_tensor_out *ts = calloc((size_t)net->n_tensors, sizeof *ts);
    if (!ts) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "train: out of memory");
    size_t n = collect_tensors(t, ts, t->best_params, t->best_bufs, 0);
    meta_list m = {0};
    add_common_meta(t, &m);
    meta_add(&m, "format", "siamidx");
    meta_add(&m, "format_version", "1");
    /*
     * Training sees random crops at the painting's own scale; at inference the
     * whole painting resized to `resize` (the same scale) embeds better than a
     * centre crop of the training size (docs/training.md has the measurement).
     */
    int resize = t->o->resize > net->cfg.input ? t->o->resize : net->cfg.input;
    int embed = t->o->embed_size ? t->o->embed_size : resize;
    if (embed > resize) resize = embed;
    meta_add(&m, "input_size", "%d", embed);
    meta_add(&m, "resize", "%d", resize);
    meta_add(&m, "resize_policy", "shorter_center_crop");
    meta_add(&m, "mean", "%g,%g,%g", IMAGENET_MEAN[0], IMAGENET_MEAN[1], IMAGENET_MEAN[2]);
    meta_add(&m, "std", "%g,%g,%g", IMAGENET_STD[0], IMAGENET_STD[1], IMAGENET_STD[2]);
    char stages[16];
    style_list(net->cfg.style_stages, stages, sizeof stages);
    meta_add(&m, "pooling", net->cfg.style_stages ? "style" : "avg");
    if (net->cfg.style_stages) meta_add(&m, "style_stages", "%s", stages);
    meta_add(&m, "embedding_dim", "%d", net->embed_dim);
    meta_add(&m, "stages", "4");
    if (t->o->init)
        meta_add(&m, "source", "siamidx train-encoder, initialised from %s", t->o->init);
    else
        meta_add(&m, "source", "siamidx train-encoder, from scratch");
    meta_add(&m, "best_epoch", "%d", t->best_epoch + 1);
    meta_add(&m, "val_pair_auc", "%.4f", t->best_val.auc);
    meta_add(&m, "val_pair_eer", "%.4f", t->best_val.eer);
    meta_add(&m, "val_top1", "%.4f", t->best_val.top1);
    meta_add(&m, "val_top5", "%.4f", t->best_val.top5);
    meta_add(&m, "val_loss", "%.4f", t->best_val.loss);
    /* artists in label order: fc row i is artists[i] (a style model has no fc) */
    size_t len = 1;
    for (int i = 0; i < t->data.n_artists; i++) len += strlen(t->data.artists[i]) + 1;
    char *names = net->cfg.style_stages ? NULL : malloc(len);
    if (names) {
        names[0] = 0;
        for (int i = 0; i < t->data.n_artists; i++) {
            strcat(names, t->data.artists[i]);
            if (i + 1 < t->data.n_artists) strcat(names, "\n");
        }
        meta_add(&m, "class_names", "%s", names);
        free(names);
    }
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = 1;
        for (int d = 0; d < ts[i].ndim; d++) k *= (size_t)ts[i].shape[d];
        bytes += 4 * k;
    }
    /* fp16 only when fp32 would not fit the shipped-model budget */
    sx_dtype dt = bytes > (20u << 20) ? SX_F16 : SX_F32;
    siamidx_status s = sx_safetensors_write(t->o->output, m.e, m.n, ts, n, dt, err);
    meta_free(&m);
    free(ts);
    return s;
}

static const char *ckpt_path(const sx_tr_options *o, char *buf, size_t cap) {
    if (o->checkpoint) return o->checkpoint;
    snprintf(buf, cap, "%s.ckpt", o->output);
    return buf;
}

/*
 * 2: the training recipe (objective, augmentation, EMA, scale) is recorded
 * and must match on resume; EMA weights as ema.* tensors. Format 1 (no
 * checkpoint_format key) is refused: it cannot say what recipe it ran.
 */
#define CHECKPOINT_FORMAT 2

static siamidx_status write_checkpoint(trainer *t, siamidx_error *err) {
    sx_tr_net *net = t->net;
    size_t cap = (size_t)net->n_tensors * 5;
    sx_tensor_out *ts = calloc(cap, sizeof *ts);
    char (*names)[80] = calloc(cap, sizeof *names);
    if (!ts || !names) {
        free(ts), free(names);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "train: out of memory");
    }
    size_t n = collect_tensors(t, ts, net->params, net->bufs, 1);
    size_t nb = collect_tensors(t, ts + n, t->best_params, t->best_bufs, 1);
    for (size_t i = 0; i < nb; i++) {
        snprintf(names[n + i], sizeof names[0], "best.%s", ts[n + i].name);
        ts[n + i].name = names[n + i];
    }
    n += nb;
    if (t->ema_params) {
        size_t ne = collect_tensors(t, ts + n, t->ema_params, t->ema_bufs, 1);
        for (size_t i = 0; i < ne; i++) {
            snprintf(names[n + i], sizeof names[0], "ema.%s", ts[n + i].name);
            ts[n + i].name = names[n + i];
        }
        n += ne;
    }
    for (int i = 0; i < net->n_tensors; i++) {
        const sx_tr_tensor *x = &net->tensors[i];
        if (x->kind == SX_TR_BUFFER) continue;
        for (int k = 0; k < 2; k++) {
            snprintf(names[n], sizeof names[0], "opt.%c.%s", k ? 'v' : 'm', x->name);
            ts[n].name = names[n];
            ts[n].data = (k ? t->opt.v : t->opt.m) + x->off;
            ts[n].ndim = x->ndim;
            for (int d = 0; d < x->ndim; d++) ts[n].shape[d] = x->shape[d];
            n++;
        }
    }
    meta_list m = {0};
    add_common_meta(t, &m);
    meta_add(&m, "checkpoint_format", "%d", CHECKPOINT_FORMAT);
    meta_add(&m, "checkpoint_epoch", "%d", t->epoch);
    meta_add(&m, "checkpoint_step", "%d", t->step);
    meta_add(&m, "checkpoint_global_step", "%lld", (long long)t->global_step);
    meta_add(&m, "checkpoint_adam_t", "%lld", (long long)t->opt.t);
    meta_add(&m, "checkpoint_best_score", "%.17g", t->best_score);
    meta_add(&m, "checkpoint_best_epoch", "%d", t->best_epoch);
    meta_add(&m, "checkpoint_best_val", "%.17g,%.17g,%.17g,%.17g,%.17g", t->best_val.auc,
             t->best_val.eer, t->best_val.top1, t->best_val.top5, t->best_val.loss);
    meta_add(&m, "checkpoint_objective", "%d", (int)net->cfg.objective);
    char buf[4096];
    siamidx_status s =
        sx_safetensors_write(ckpt_path(t->o, buf, sizeof buf), m.e, m.n, ts, n, SX_F32, err);
    meta_free(&m);
    free(ts);
    free(names);
    return s;
}

static int meta_int(const sx_safetensors *st, const char *key, long long *out) {
    const char *v = sx_safetensors_meta(st, key);
    if (!v) return 0;
    *out = atoll(v);
    return 1;
}

static siamidx_status read_checkpoint(trainer *t, const char *path, siamidx_error *err) {
    sx_safetensors st;
    siamidx_status s = sx_safetensors_open(path, &st, err);
    if (s) return s;
    sx_tr_net *net = t->net;
    const char *fp = sx_safetensors_meta(&st, "training_data_fingerprint");
    const char *arch = sx_safetensors_meta(&st, "arch");
    const char *width = sx_safetensors_meta(&st, "width");
    char wbuf[32];
    snprintf(wbuf, sizeof wbuf, "%g", net->cfg.width);
    if (!fp || strcmp(fp, t->data.fingerprint) || !arch || strcmp(arch, net->cfg.arch) ||
        !width || strcmp(width, wbuf)) {
        s = sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT,
                    "%s: checkpoint is for other data or another network (arch %s, width %s, "
                    "data %.12s; this run: %s, %s, %.12s)",
                    path, arch ? arch : "?", width ? width : "?", fp ? fp : "?", net->cfg.arch,
                    wbuf, t->data.fingerprint);
        sx_safetensors_close(&st); /* after the message: its strings live in the map */
        return s;
    }
    long long format = 0;
    meta_int(&st, "checkpoint_format", &format);
    const char *recipe = sx_safetensors_meta(&st, "training_recipe");
    char mine[512];
    training_recipe(t, mine, sizeof mine);
    if (format != CHECKPOINT_FORMAT) {
        s = sx_fail(err, SIAMIDX_ERR_MODEL_FORMAT,
                    "%s: checkpoint format %lld, this siamidx resumes format %d only (older "
                    "checkpoints do not record the training recipe); start the run again",
                    path, format, CHECKPOINT_FORMAT);
    } else if (!recipe || strcmp(recipe, mine)) {
        s = sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT,
                    "%s: checkpoint was made with another recipe (%s; this run: %s); resume "
                    "with the same options", path, recipe ? recipe : "?", mine);
    }
    char name[96];
    for (int i = 0; i < net->n_tensors && !s; i++) {
        const sx_tr_tensor *x = &net->tensors[i];
        int buf = x->kind == SX_TR_BUFFER;
        struct {
            const char *fmt;
            float *dst;
        } parts[5] = {{"%s", sx_tr_tensor_data(net, x)},
                      {"best.%s", (buf ? t->best_bufs : t->best_params) + x->off},
                      {"opt.m.%s", buf ? NULL : t->opt.m + x->off},
                      {"opt.v.%s", buf ? NULL : t->opt.v + x->off},
                      {"ema.%s", !t->ema_params ? NULL : (buf ? t->ema_bufs : t->ema_params) + x->off}};
        for (int k = 0; k < 5; k++) {
            if (!parts[k].dst) continue;
            snprintf(name, sizeof name, parts[k].fmt, x->name);
            const sx_tensor_info *info = sx_safetensors_find(&st, name);
            if (!info || (size_t)sx_tensor_numel(info) != x->numel) {
                s = sx_fail(err, SIAMIDX_ERR_MODEL_FORMAT, "%s: checkpoint lacks tensor %s or "
                            "its shape differs", path, name);
                break;
            }
            sx_safetensors_read_f32(&st, info, parts[k].dst);
        }
    }
    long long v;
    if (!s && meta_int(&st, "checkpoint_epoch", &v)) t->epoch = (int)v;
    if (!s && meta_int(&st, "checkpoint_step", &v)) t->step = (int)v;
    if (!s && meta_int(&st, "checkpoint_global_step", &v)) t->global_step = v;
    if (!s && meta_int(&st, "checkpoint_adam_t", &v)) t->opt.t = v;
    if (!s && meta_int(&st, "checkpoint_best_epoch", &v)) t->best_epoch = (int)v;
    const char *bs = sx_safetensors_meta(&st, "checkpoint_best_score");
    if (!s && bs) t->best_score = atof(bs);
    const char *bv = sx_safetensors_meta(&st, "checkpoint_best_val");
    if (!s && bv)
        sscanf(bv, "%lf,%lf,%lf,%lf,%lf", &t->best_val.auc, &t->best_val.eer, &t->best_val.top1,
               &t->best_val.top5, &t->best_val.loss);
    const char *h = sx_safetensors_meta(&st, "training_history");
    if (!s && h && *h) t->history = strdup(h);
    const char *secs = sx_safetensors_meta(&st, "training_seconds");
    if (!s && secs) t->train_seconds = atof(secs);
    sx_safetensors_close(&st);
    return s;
}

/* ---- validation ---------------------------------------------------------------- */

static siamidx_status validate(trainer *t, float *x, int32_t *labels, sx_tr_val *v,
                               siamidx_error *err) {
    sx_tr_net *net = t->net;
    const sx_tr_data *d = &t->data;
    const int B = net->cfg.max_batch, C = net->cfg.n_classes, D = net->embed_dim, nv = d->n_val;
    float *logits = malloc(sizeof(float) * B * C), *emb = malloc(sizeof(float) * nv * D);
    float *scratch = malloc(sizeof(float) * B * C), *row = malloc(sizeof(float) * C);
    size_t np = (size_t)nv * (nv - 1) / 2;
    float *score = malloc(sizeof(float) * (np ? np : 1));
    uint8_t *same = malloc(np ? np : 1);
    if (!logits || !emb || !scratch || !row || !score || !same) {
        free(logits), free(emb), free(scratch), free(row), free(score), free(same);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "train: out of memory for validation");
    }
    memset(v, 0, sizeof *v);
    double loss = 0;
    int top1 = 0, top5 = 0;
    sx_tr_job job = {.data = &t->data, .input = net->cfg.input, .augment = 0, .x = x,
                     .labels = labels};
    memcpy(job.mean, IMAGENET_MEAN, sizeof job.mean);
    memcpy(job.std, IMAGENET_STD, sizeof job.std);
    for (int i = 0; i < nv; i += B) {
        job.entries = d->val + i;
        job.n = nv - i < B ? nv - i : B;
        sx_tr_job_start(&job);
        sx_tr_job_wait(&job); /* validation is short: no overlap needed */
        siamidx_status s = sx_tr_net_eval(net, x, job.n, logits, emb + (size_t)i * D, err);
        if (s) {
            free(logits), free(emb), free(scratch), free(row), free(score), free(same);
            return s;
        }
        int c1 = 0;
        loss += sx_tr_softmax_ce(job.n, C, logits, labels, 0.0f, scratch, &c1) * job.n;
        top1 += c1;
        for (int r = 0; r < job.n; r++) {
            memcpy(row, logits + (size_t)r * C, sizeof(float) * C);
            float mine = row[labels[r]];
            int above = 0;
            for (int k = 0; k < C; k++) above += row[k] > mine;
            top5 += above < 5;
        }
    }
    for (int i = 0; i < nv; i++) { /* L2-normalise: cosine similarity, as the index */
        float *e = emb + (size_t)i * D;
        double s = 0;
        for (int k = 0; k < D; k++) s += (double)e[k] * e[k];
        float inv = s > 0 ? (float)(1.0 / sqrt(s)) : 0.0f;
        for (int k = 0; k < D; k++) e[k] *= inv;
    }
    size_t p = 0;
    for (int i = 0; i < nv; i++)
        for (int j = i + 1; j < nv; j++, p++) {
            const float *a = emb + (size_t)i * D, *b = emb + (size_t)j * D;
            float s = 0;
            for (int k = 0; k < D; k++) s += a[k] * b[k];
            score[p] = s;
            same[p] = d->label[d->val[i]] == d->label[d->val[j]];
        }
    v->auc = sx_roc_auc(score, same, np);
    v->eer = sx_eer(score, same, np);
    v->top1 = nv ? (double)top1 / nv : 0;
    v->top5 = nv ? (double)top5 / nv : 0;
    v->loss = nv ? loss / nv : 0;
    free(logits), free(emb), free(scratch), free(row), free(score), free(same);
    return SIAMIDX_OK;
}

/* ---- the loop ------------------------------------------------------------------ */

static void fmt_duration(double s, char *out, size_t cap) {
    if (s < 0) s = 0;
    int h = (int)(s / 3600), m = (int)(s / 60) % 60, sec = (int)s % 60;
    if (h) snprintf(out, cap, "%dh%02dm", h, m);
    else snprintf(out, cap, "%dm%02ds", m, sec);
}

static void job_setup(trainer *t, sx_tr_job *job, const int *order, int step, float *x,
                      int32_t *labels) {
    const sx_tr_config *c = &t->net->cfg;
    memset(job, 0, sizeof *job);
    job->data = &t->data;
    job->entries = order + (size_t)step * c->max_batch;
    job->n = c->max_batch;
    job->input = c->input;
    job->augment = 1;
    job->processing = t->o->augment;
    job->key = sx_tr_hash(t->o->seed, 0xBA7C, (uint64_t)t->epoch, (uint64_t)step);
    memcpy(job->mean, IMAGENET_MEAN, sizeof job->mean);
    memcpy(job->std, IMAGENET_STD, sizeof job->std);
    job->x = x;
    job->labels = labels;
}

/* ema = d * ema + (1 - d) * w, over the parameters and the BN statistics. */
static void ema_update(trainer *t) {
    if (!t->ema_params) return;
    const float d = t->o->ema_decay, e = 1.0f - d;
    const sx_tr_net *net = t->net;
    for (size_t i = 0; i < net->n_params; i++)
        t->ema_params[i] = d * t->ema_params[i] + e * net->params[i];
    for (size_t i = 0; i < net->n_bufs; i++) t->ema_bufs[i] = d * t->ema_bufs[i] + e * net->bufs[i];
}

/* Puts the EMA weights in the network (or back): pointers swap, nothing copies. */
static void ema_swap(trainer *t) {
    if (!t->ema_params) return;
    float *p = t->net->params, *b = t->net->bufs;
    t->net->params = t->ema_params, t->net->bufs = t->ema_bufs;
    t->ema_params = p, t->ema_bufs = b;
}

static void cache_report(const trainer *t) {
    const sx_tr_data *d = &t->data;
    fprintf(stderr, "train: image cache %d of %zu images, %.0f MiB of %.0f MiB; %lld decodes so far\n",
            d->n_cached, d->coll.n_entries, d->cache_used / 1048576.0, d->cache_cap / 1048576.0,
            d->n_decodes);
}

static siamidx_status run_epochs(trainer *t, siamidx_error *err) {
    const sx_tr_options *o = t->o;
    sx_tr_net *net = t->net;
    const int B = net->cfg.max_batch, S = net->cfg.input;
    const int pairs = net->cfg.objective == SX_TR_SIAMESE || net->cfg.objective == SX_TR_BOTH;
    /* The pair losses want as many different-artist pairs as same-artist
       ones; the contrastive term wants every image to have a positive. */
    const double p_same = pairs ? 0.5 : net->cfg.objective == SX_TR_SUPCON ? 1.0 : 0.0;
    const int64_t total = (int64_t)o->epochs * t->steps_per_epoch;
    const int64_t warmup = (int64_t)(o->warmup_epochs * t->steps_per_epoch + 0.5);
    size_t per = (size_t)B * 3 * S * S;
    float *xs[2] = {malloc(per * sizeof(float)), malloc(per * sizeof(float))};
    int32_t *ls[2] = {malloc(B * sizeof(int32_t)), malloc(B * sizeof(int32_t))};
    int *order = malloc(sizeof(int) * (size_t)t->data.n_train);
    if (!xs[0] || !xs[1] || !ls[0] || !ls[1] || !order) {
        free(xs[0]), free(xs[1]), free(ls[0]), free(ls[1]), free(order);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "train: out of memory for batches");
    }
    siamidx_status s = SIAMIDX_OK;
    int run_steps = 0, warned = 0;
    double t_start = now_s(), t_seg = t_start, secs_before = t->train_seconds;
    for (; t->epoch < o->epochs && !s; t->epoch++, t->step = 0) {
        sx_tr_data_epoch(&t->data, o->seed, t->epoch, p_same, B, o->same_style, order);
        sx_tr_job jobs[2];
        int cur = 0;
        double sum_loss = 0, sum_con = 0, seg_imgs = 0, seg_wait = 0;
        int sum_correct = 0, sum_n = 0, sum_pc = 0, sum_pairs = 0;
        if (t->step < t->steps_per_epoch) {
            job_setup(t, &jobs[cur], order, t->step, xs[cur], ls[cur]);
            sx_tr_job_start(&jobs[cur]);
        }
        for (; t->step < t->steps_per_epoch; t->step++) {
            double w0 = now_s();
            sx_tr_job_wait(&jobs[cur]); /* time waited: the producer is the bottleneck */
            seg_wait += now_s() - w0;
            if (jobs[cur].failed && warned < 5) {
                fprintf(stderr, "train: warning: %d image(s) failed to decode, trained as black: %s\n",
                        jobs[cur].failed, jobs[cur].first_error);
                warned++;
            }
            int nxt = cur ^ 1;
            if (t->step + 1 < t->steps_per_epoch) { /* the producer prepares the next batch */
                job_setup(t, &jobs[nxt], order, t->step + 1, xs[nxt], ls[nxt]);
                sx_tr_job_start(&jobs[nxt]);
            }
            sx_tr_stats st;
            memset(net->grads, 0, net->n_params * sizeof(float));
            sx_tr_net_forward(net, xs[cur], B, ls[cur], &st);
            sx_tr_net_backward(net);
            float lr = sx_tr_lr(t->global_step, total, warmup, o->lr, o->min_lr_ratio);
            sx_tr_adamw_step(&t->opt, net, lr);
            ema_update(t);
            t->global_step++;
            run_steps++;
            sum_loss += st.loss * B, sum_con += st.con * B, sum_n += B, sum_correct += st.correct;
            sum_pc += st.pair_correct, sum_pairs += st.pairs;
            seg_imgs += B;
            cur = nxt;
            double now = now_s();
            int last = t->step + 1 == t->steps_per_epoch;
            if (now - t_seg >= o->log_seconds || last) {
                double ips = seg_imgs / (now - t_seg);
                double left = (double)(total - t->global_step) * B / (ips > 0 ? ips : 1);
                char eta[32], pair[48] = "";
                fmt_duration(left, eta, sizeof eta);
                if (pairs && sum_pairs)
                    snprintf(pair, sizeof pair, " pair-acc %.3f", (double)sum_pc / sum_pairs);
                else if (net->cfg.objective == SX_TR_SUPCON)
                    snprintf(pair, sizeof pair, " contrast %.4f", sum_con / sum_n);
                fprintf(stderr, "epoch %d/%d step %d/%d loss %.4f acc %.3f%s lr %.2e %.1f img/s "
                        "(data wait %.0f%%) ETA %s\n",
                        t->epoch + 1, o->epochs, t->step + 1, t->steps_per_epoch,
                        sum_loss / sum_n, (double)sum_correct / sum_n, pair, lr, ips,
                        100.0 * seg_wait / (now - t_seg), eta);
                t_seg = now;
                seg_imgs = seg_wait = 0;
            }
            int stop = o->stop && *o->stop;
            if (o->max_steps && run_steps >= o->max_steps) stop = 2;
            if (stop) {
                if (t->step + 1 < t->steps_per_epoch) sx_tr_job_wait(&jobs[nxt]);
                t->step++;
                t->train_seconds = secs_before + (now_s() - t_start);
                if (stop == 2 && o->max_steps_no_checkpoint) {
                    s = sx_fail(err, SIAMIDX_ERR_INTERRUPTED, "stopped after %d steps", run_steps);
                    goto out;
                }
                char buf[4096];
                siamidx_status ws = write_checkpoint(t, err);
                if (ws) {
                    s = ws;
                    goto out;
                }
                fprintf(stderr, "train: %s after %d steps; resumable checkpoint written to %s\n",
                        stop == 2 ? "stopped (--max-steps)" : "interrupted", run_steps,
                        ckpt_path(o, buf, sizeof buf));
                s = sx_fail(err, SIAMIDX_ERR_INTERRUPTED,
                            "interrupted at epoch %d step %d; resume with --resume %s",
                            t->epoch + 1, t->step, ckpt_path(o, buf, sizeof buf));
                goto out;
            }
        }
        /* end of epoch: validate, keep the best, checkpoint */
        sx_tr_val v = {0};
        double tv = now_s();
        ema_swap(t); /* validate (and keep) the averaged weights */
        if ((s = validate(t, xs[0], ls[0], &v, err))) {
            ema_swap(t);
            break;
        }
        cache_report(t);
        t->train_seconds = secs_before + (now_s() - t_start);
        char line[512];
        snprintf(line, sizeof line,
                 "epoch %d: train loss %.4f acc %.3f | val loss %.4f top1 %.3f top5 %.3f pair AUC "
                 "%.4f EER %.4f | %.0fs",
                 t->epoch + 1, sum_n ? sum_loss / sum_n : 0, sum_n ? (double)sum_correct / sum_n : 0,
                 v.loss, v.top1, v.top5, v.auc, v.eer, t->train_seconds);
        fprintf(stderr, "%s (validation %.1fs)\n", line, now_s() - tv);
        history_add(t, line);
        int improved = v.auc > t->best_score || t->best_epoch < 0;
        if (improved) {
            t->best_score = v.auc;
            t->best_epoch = t->epoch;
            t->best_val = v;
            memcpy(t->best_params, net->params, net->n_params * sizeof(float));
            memcpy(t->best_bufs, net->bufs, net->n_bufs * sizeof(float));
        }
        ema_swap(t);
        /* the model file always holds the best epoch so far */
        if (improved && (s = write_model(t, err))) break;
        t->step = t->steps_per_epoch; /* checkpoint points at the next epoch */
        int saved_epoch = t->epoch;
        t->epoch++, t->step = 0;
        s = write_checkpoint(t, err);
        t->epoch = saved_epoch;
        if (s) break;
        t_seg = now_s();
    }
    if (!s) s = write_model(t, err); /* final: best weights with the whole history */
out:
    free(xs[0]), free(xs[1]), free(ls[0]), free(ls[1]), free(order);
    return s;
}

siamidx_status sx_train_encoder(const sx_tr_options *o, siamidx_error *err) {
    trainer t;
    memset(&t, 0, sizeof t);
    t.o = o;
    t.best_epoch = -1;
    t.best_score = -1;
    sx_tr_data_cfg dc = {.collections = o->collections,
                         .n_collections = o->n_collections,
                         .exclude_artists = o->exclude_artists,
                         .val_fraction = o->val_fraction,
                         .balance = o->balance,
                         .seed = o->seed,
                         .scale = o->resize > o->net.input ? o->resize : o->net.input,
                         .cache_bytes = o->cache_bytes};
    siamidx_status s = sx_tr_data_open(&dc, &t.data, err);
    if (s) {
        sx_tr_data_close(&t.data);
        return s;
    }
    if (t.data.n_excluded)
        fprintf(stderr, "train: --exclude-artists: %zu artists listed, %zu images left out\n",
                t.data.n_excluded, t.data.n_excluded_images);
    sx_tr_config cfg = o->net;
    cfg.n_classes = t.data.n_artists;
    t.steps_per_epoch = t.data.n_train / cfg.max_batch;
    if (t.steps_per_epoch < 1) {
        s = sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT,
                    "train: %d training images are fewer than one batch of %d", t.data.n_train,
                    cfg.max_batch);
        goto done;
    }
    if ((s = sx_tr_net_new(&cfg, &t.net, err))) goto done;
    sx_tr_net_init(t.net, o->seed, o->zero_residual);
    if (o->init && !o->resume) {
        int loaded, skipped;
        if ((s = sx_tr_net_load_init(t.net, o->init, &loaded, &skipped, err))) goto done;
        fprintf(stderr, "train: --init %s: %d tensors loaded, %d skipped (shape), %d fresh\n",
                o->init, loaded, skipped, t.net->n_tensors - loaded - skipped);
    }
    if ((s = sx_tr_adamw_new(&t.opt, t.net->n_params, err))) goto done;
    t.opt.weight_decay = o->weight_decay;
    t.best_params = malloc(t.net->n_params * sizeof(float));
    t.best_bufs = malloc((t.net->n_bufs ? t.net->n_bufs : 1) * sizeof(float));
    if (!t.best_params || !t.best_bufs) {
        s = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "train: out of memory");
        goto done;
    }
    memcpy(t.best_params, t.net->params, t.net->n_params * sizeof(float));
    memcpy(t.best_bufs, t.net->bufs, t.net->n_bufs * sizeof(float));
    if (o->ema_decay > 0) {
        t.ema_params = malloc(t.net->n_params * sizeof(float));
        t.ema_bufs = malloc((t.net->n_bufs ? t.net->n_bufs : 1) * sizeof(float));
        if (!t.ema_params || !t.ema_bufs) {
            s = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "train: out of memory for --ema");
            goto done;
        }
        memcpy(t.ema_params, t.net->params, t.net->n_params * sizeof(float));
        memcpy(t.ema_bufs, t.net->bufs, t.net->n_bufs * sizeof(float));
    }
    if (o->resume) {
        if ((s = read_checkpoint(&t, o->resume, err))) goto done;
        fprintf(stderr, "train: resuming %s at epoch %d step %d\n", o->resume, t.epoch + 1,
                t.step);
    }
    fprintf(stderr,
            "train: %s width %g, %zu parameters, input %d, batch %d; %d artists, %d train / %d "
            "validation images, %d steps per epoch; data %.16s\n",
            cfg.arch, cfg.width, t.net->n_params, cfg.input, cfg.max_batch, t.data.n_artists,
            t.data.n_train, t.data.n_val, t.steps_per_epoch, t.data.fingerprint);
    s = run_epochs(&t, err);
done:
    free(t.ema_params);
    free(t.ema_bufs);
    free(t.best_params);
    free(t.best_bufs);
    free(t.history);
    sx_tr_adamw_free(&t.opt);
    sx_tr_net_free(t.net);
    sx_tr_data_close(&t.data);
    return s;
}

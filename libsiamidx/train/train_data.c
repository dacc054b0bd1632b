/*
 * train_data.c - what the encoder trains on: one or more collections joined
 * (artists optionally excluded), the split per artist, balanced sampling,
 * augmentation, and a producer thread that prepares the next batch while the
 * current one trains.
 *
 * Augmentation keeps the painting's own scale (brushwork is the signal):
 * a random input x input crop and a horizontal flip, no colour changes;
 * optionally the processing transforms of train_augment.c (off by default).
 * Only images smaller than the crop are enlarged (bilinear) to fit.
 *
 * The cache: an image is decoded once and reduced to the training scale
 * (shorter side at most `scale`, the --resize that inference applies, so
 * training and inference see paintings at the same scale), and kept as
 * uint8 RGB while the cache is under its bound (--cache-mb); beyond the
 * bound images are decoded again whenever drawn. Cached or not, an image
 * gives the same pixels, so the bound never changes what is trained.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/train_data.h"
#include "train/train_net.h"
#include "image/preprocess.h"
#include "data/collection.h"
#include "image/image.h"
#include "base/sha256.h"
#include "base/error.h"
#include "data/collection_many.h"
#include "train/train_augment.h"

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int artist_label(const sx_tr_data *d, const char *artist) {
    const char **hit = bsearch(&artist, d->artists, (size_t)d->n_artists, sizeof *d->artists,
                               cmp_str);
    return hit ? (int)(hit - (const char **)d->artists) : -1;
}

/* SHA-256 over the sorted "path\tartist\n" lines: names the training data. */
static void data_fingerprint(sx_tr_data *d) {
    size_t n = d->coll.n_entries;
    char **lines = malloc((n ? n : 1) * sizeof *lines);
    sx_sha256 h;
    sx_sha256_init(&h);
    for (size_t i = 0; lines && i < n; i++) {
        const sx_collection_entry *e = &d->coll.entries[i];
        size_t len = strlen(e->path) + strlen(e->artist) + 3;
        lines[i] = malloc(len);
        if (lines[i]) snprintf(lines[i], len, "%s\t%s\n", e->path, e->artist);
    }
    if (lines) {
        qsort(lines, n, sizeof *lines, cmp_str);
        for (size_t i = 0; i < n; i++)
            if (lines[i]) sx_sha256_update(&h, lines[i], strlen(lines[i]));
        for (size_t i = 0; i < n; i++) free(lines[i]);
        free(lines);
    }
    uint8_t digest[32];
    sx_sha256_final(&h, digest);
    sx_hex(digest, 32, d->fingerprint);
}

/* Per artist, a seeded shuffle puts round(val_fraction * count) images (at
 * least one, never all) in validation: every artist is in both sets, which
 * classification needs. */
static siamidx_status split(sx_tr_data *d, double val_fraction, uint64_t seed,
                            siamidx_error *err) {
    size_t n = d->coll.n_entries;
    d->train = malloc((n ? n : 1) * sizeof *d->train);
    d->val = malloc((n ? n : 1) * sizeof *d->val);
    d->artist_count = calloc((size_t)d->n_artists, sizeof *d->artist_count);
    d->artist_first = calloc((size_t)d->n_artists + 1, sizeof *d->artist_first);
    d->by_artist = malloc((n ? n : 1) * sizeof *d->by_artist);
    if (!d->train || !d->val || !d->artist_count || !d->artist_first || !d->by_artist)
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "train: out of memory");
    int *all = malloc((n ? n : 1) * sizeof *all);
    int *fill = calloc((size_t)d->n_artists, sizeof *fill);
    if (!all || !fill) {
        free(all), free(fill);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "train: out of memory");
    }
    for (size_t i = 0; i < n; i++) d->artist_count[d->label[i]]++;
    for (int a = 0; a < d->n_artists; a++)
        d->artist_first[a + 1] = d->artist_first[a] + d->artist_count[a];
    for (size_t i = 0; i < n; i++) all[d->artist_first[d->label[i]] + fill[d->label[i]]++] = (int)i;
    d->n_train = d->n_val = 0;
    for (int a = 0; a < d->n_artists; a++) {
        int *g = all + d->artist_first[a], c = d->artist_count[a];
        for (int i = c - 1; i > 0; i--) { /* Fisher-Yates */
            int j = (int)(sx_tr_hash(seed, 0x5011, (uint64_t)a, (uint64_t)i) % (uint64_t)(i + 1));
            int t = g[i];
            g[i] = g[j];
            g[j] = t;
        }
        int nv = (int)floor(val_fraction * c + 0.5);
        if (val_fraction > 0 && nv < 1) nv = 1;
        if (nv >= c) nv = c - 1;
        fill[a] = 0;
        for (int i = 0; i < c; i++) {
            if (i < nv) d->val[d->n_val++] = g[i];
            else d->train[d->n_train++] = g[i];
        }
    }
    /* by_artist: each artist's training images, for Siamese positives */
    memset(d->artist_count, 0, (size_t)d->n_artists * sizeof *d->artist_count);
    for (int i = 0; i < d->n_train; i++) d->artist_count[d->label[d->train[i]]]++;
    for (int a = 0; a < d->n_artists; a++)
        d->artist_first[a + 1] = d->artist_first[a] + d->artist_count[a];
    for (int i = 0; i < d->n_train; i++) {
        int a = d->label[d->train[i]];
        d->by_artist[d->artist_first[a] + fill[a]++] = d->train[i];
    }
    free(all);
    free(fill);
    return SIAMIDX_OK;
}

/* Sampling weight of a training image: count^-balance for its artist (0:
 * uniform over images, 1: uniform over artists). */
static siamidx_status build_sampler(sx_tr_data *d, double balance, siamidx_error *err) {
    d->cum = malloc((size_t)(d->n_train ? d->n_train : 1) * sizeof *d->cum);
    if (!d->cum) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "train: out of memory");
    double acc = 0;
    for (int i = 0; i < d->n_train; i++) {
        int c = d->artist_count[d->label[d->train[i]]];
        acc += pow((double)c, -balance);
        d->cum[i] = acc;
    }
    return SIAMIDX_OK;
}

/* An entry's style group: its source_repo and the top folder of its
 * source_path (for WikiArt, the style: the evaluation's negatives (b)). */
static int group_key_cmp(const sx_collection_entry *a, const sx_collection_entry *b) {
    const char *ra = a->source_repo ? a->source_repo : "", *rb = b->source_repo ? b->source_repo : "";
    int r = strcmp(ra, rb);
    if (r) return r;
    const char *pa = a->source_path ? a->source_path : "", *pb = b->source_path ? b->source_path : "";
    size_t la = strcspn(pa, "/"), lb = strcspn(pb, "/");
    r = strncmp(pa, pb, la < lb ? la : lb);
    return r ? r : (la > lb) - (la < lb);
}

typedef struct entry_ref {
    const sx_collection_entry *e;
    int index;
} entry_ref;

static int cmp_by_group(const void *x, const void *y) {
    const entry_ref *a = x, *b = y;
    int r = group_key_cmp(a->e, b->e);
    return r ? r : (a->index > b->index) - (a->index < b->index);
}

/* The training entries by style group, each group's cumulative balance
 * weights (the same weights as cum) for draws within it. */
static siamidx_status build_groups(sx_tr_data *d, double balance, siamidx_error *err) {
    const int n = d->n_train;
    const size_t cap = n > 0 ? (size_t)n : 1;
    d->group = malloc(d->coll.n_entries * sizeof *d->group);
    d->by_group = malloc(cap * sizeof *d->by_group);
    d->group_cum = malloc(cap * sizeof *d->group_cum);
    d->group_first = malloc((cap + 1) * sizeof *d->group_first);
    entry_ref *refs = malloc(cap * sizeof *refs);
    if (!d->group || !d->by_group || !d->group_cum || !d->group_first || !refs) {
        free(refs);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "train: out of memory");
    }
    for (int i = 0; i < n; i++) refs[i] = (entry_ref){&d->coll.entries[d->train[i]], d->train[i]};
    qsort(refs, (size_t)n, sizeof *refs, cmp_by_group);
    for (int i = 0; i < n; i++) d->by_group[i] = refs[i].index;
    free(refs);
    for (size_t i = 0; i < d->coll.n_entries; i++) d->group[i] = -1; /* validation images */
    d->n_groups = 0;
    double acc = 0;
    for (int i = 0; i < n; i++) {
        const sx_collection_entry *e = &d->coll.entries[d->by_group[i]];
        if (i == 0 || group_key_cmp(e, &d->coll.entries[d->by_group[i - 1]])) {
            d->group_first[d->n_groups++] = i;
            acc = 0;
        }
        d->group[d->by_group[i]] = d->n_groups - 1;
        acc += pow((double)d->artist_count[d->label[d->by_group[i]]], -balance);
        d->group_cum[i] = acc;
    }
    d->group_first[d->n_groups] = n;
    return SIAMIDX_OK;
}

/* --exclude-artists: drop the listed artists' images before anything else. */
static siamidx_status exclude_artists(sx_tr_data *d, const char *path, siamidx_error *err) {
    siamidx_status s = sx_artist_list_read(path, &d->excluded, &d->n_excluded, err);
    if (s) return s;
    return sx_collection_drop_artists(&d->coll, d->excluded, d->n_excluded,
                                      &d->n_excluded_images, NULL, err);
}

static siamidx_status label_artists(sx_tr_data *d, const char *what, siamidx_error *err) {
    size_t n = d->coll.n_entries;
    const char **names = malloc(n * sizeof *names);
    d->label = malloc(n * sizeof *d->label);
    d->cache = calloc(n, sizeof *d->cache);
    if (!names || !d->label || !d->cache) {
        free(names);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "train: out of memory");
    }
    for (size_t i = 0; i < n; i++) names[i] = d->coll.entries[i].artist;
    qsort(names, n, sizeof *names, cmp_str);
    int k = 0;
    for (size_t i = 0; i < n; i++)
        if (i == 0 || strcmp(names[i], names[k - 1])) names[k++] = names[i];
    d->artists = (const char **)names;
    d->n_artists = k;
    if (k < 2)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT,
                       "train: %s has %d artist; training needs at least 2", what, k);
    for (size_t i = 0; i < n; i++) d->label[i] = artist_label(d, d->coll.entries[i].artist);
    return SIAMIDX_OK;
}

siamidx_status sx_tr_data_open(const sx_tr_data_cfg *cfg, sx_tr_data *d, siamidx_error *err) {
    memset(d, 0, sizeof *d);
    d->scale = cfg->scale;
    d->cache_cap = cfg->cache_bytes;
    const char *what = cfg->n_collections == 1 ? cfg->collections[0] : "the collections";
    siamidx_status s = sx_collection_load_many(cfg->collections, (size_t)cfg->n_collections,
                                               NULL, &d->coll, err);
    if (s != SIAMIDX_OK) return s;
    if (cfg->exclude_artists && (s = exclude_artists(d, cfg->exclude_artists, err))) return s;
    size_t n = d->coll.n_entries;
    if (n < 4) {
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT,
                       "train: %s %s %zu usable images; training needs more", what,
                       cfg->n_collections == 1 ? "has" : "have", n);
    }
    if ((s = label_artists(d, what, err))) return s;
    data_fingerprint(d);
    if ((s = split(d, cfg->val_fraction, cfg->seed, err))) return s;
    if ((s = build_sampler(d, cfg->balance, err))) return s;
    return build_groups(d, cfg->balance, err);
}

void sx_tr_data_close(sx_tr_data *d) {
    if (d->cache)
        for (size_t i = 0; i < d->coll.n_entries; i++) sx_image_free(&d->cache[i]);
    free(d->cache);
    free(d->artists);
    free(d->label);
    free(d->train);
    free(d->val);
    free(d->artist_count);
    free(d->artist_first);
    free(d->by_artist);
    free(d->cum);
    free(d->group);
    free(d->by_group);
    free(d->group_cum);
    free(d->group_first);
    free(d->excluded);
    sx_collection_free(&d->coll);
    memset(d, 0, sizeof *d);
}

/* ---- images at the training scale, cached within a bound ------------------ */

/* torchvision's Resize(int) sizes: shorter side to scale, the other
 * int(scale * longer / shorter); only ever a reduction. */
size_t sx_tr_cached_size(int w, int h, int scale, int *cw, int *ch) {
    int shorter = w < h ? w : h;
    if (scale > 0 && shorter > scale) {
        int other = (int)((int64_t)scale * (w < h ? h : w) / shorter);
        if (w < h) w = scale, h = other;
        else w = other, h = scale;
    }
    if (cw) *cw = w;
    if (ch) *ch = h;
    return (size_t)w * h * 3;
}

static siamidx_status load_scaled(const sx_tr_data *d, int e, sx_image *im, siamidx_error *err) {
    siamidx_status s = sx_image_load(d->coll.entries[e].resolved, 0, im, err);
    if (s) return s;
    int w, h;
    sx_tr_cached_size(im->width, im->height, d->scale, &w, &h);
    if (w == im->width && h == im->height) return SIAMIDX_OK;
    uint8_t *px = malloc((size_t)w * h * 3);
    if (!px) s = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "train: out of memory");
    if (!s) s = sx_resize_rgb(im->rgb, im->width, im->height, (size_t)im->width * 3, w, h, px, err);
    sx_image_free(im);
    if (s) {
        free(px);
        return s;
    }
    im->rgb = px;
    im->width = w;
    im->height = h;
    return SIAMIDX_OK;
}

siamidx_status sx_tr_data_image(sx_tr_data *d, int e, sx_image *tmp, const sx_image **out,
                                sx_image **owned, siamidx_error *err) {
    *owned = NULL;
    if (d->cache[e].rgb) {
        *out = &d->cache[e];
        return SIAMIDX_OK;
    }
    siamidx_status s = load_scaled(d, e, tmp, err);
    if (s) return s;
    d->n_decodes++;
    size_t bytes = (size_t)tmp->width * tmp->height * 3;
    if (d->cache_used + bytes <= d->cache_cap) {
        d->cache[e] = *tmp;
        memset(tmp, 0, sizeof *tmp);
        d->cache_used += bytes;
        d->n_cached++;
        *out = &d->cache[e];
    } else {
        *out = tmp;
        *owned = tmp;
    }
    return SIAMIDX_OK;
}

static double unit_rand(uint64_t seed, uint64_t a, uint64_t b, uint64_t c) {
    return (sx_tr_hash(seed, a, b, c) >> 11) * (1.0 / 9007199254740992.0);
}

/* The first index in cum[lo..hi] whose value exceeds r. */
static int first_above(const double *cum, int lo, int hi, double r) {
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (cum[mid] > r) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

/*
 * The entries of one epoch: n_train draws with replacement by the balanced
 * weights. With p_same, every odd slot is, with that probability, a positive
 * for the even slot before it (a random other image of the same artist).
 * With p_group, each even slot of a batch but its first is, with that
 * probability, drawn (by the same weights) from the style group of the
 * batch's first image instead: the other artists of the batch are then
 * mostly of the same source and style, the negatives the evaluation's (b)
 * asks about.
 */
void sx_tr_data_epoch(const sx_tr_data *d, uint64_t seed, int epoch, double p_same, int batch,
                      double p_group, int *order) {
    double total = d->cum[d->n_train - 1];
    for (int i = 0; i < d->n_train; i++) {
        double r = unit_rand(seed, 0xE90C, (uint64_t)epoch, (uint64_t)i) * total;
        order[i] = d->train[first_above(d->cum, 0, d->n_train - 1, r)];
        if (p_group > 0 && batch > 0 && !(i & 1) && i % batch &&
            unit_rand(seed, 0x6A0B, (uint64_t)epoch, (uint64_t)i) < p_group) {
            int g = d->group[order[i - i % batch]];
            int lo = d->group_first[g], hi = d->group_first[g + 1] - 1;
            double rg = unit_rand(seed, 0x6A0C, (uint64_t)epoch, (uint64_t)i) * d->group_cum[hi];
            order[i] = d->by_group[first_above(d->group_cum, lo, hi, rg)];
        }
        if (p_same > 0 && (i & 1) && unit_rand(seed, 0x9A1E, (uint64_t)epoch, (uint64_t)i) < p_same) {
            int a = d->label[order[i - 1]];
            int c = d->artist_first[a + 1] - d->artist_first[a];
            uint64_t pick = sx_tr_hash(seed, 0x905, (uint64_t)epoch, (uint64_t)i) % (uint64_t)c;
            order[i] = d->by_artist[d->artist_first[a] + (int)pick];
        }
    }
}

/* ---- one image to a normalised input x input crop ------------------------- */

static float sample_bilinear(const sx_image *im, float sx, float sy, int ch) {
    if (sx < 0) sx = 0;
    if (sy < 0) sy = 0;
    int x0 = (int)sx, y0 = (int)sy;
    if (x0 > im->width - 1) x0 = im->width - 1;
    if (y0 > im->height - 1) y0 = im->height - 1;
    int x1 = x0 + 1 < im->width ? x0 + 1 : x0, y1 = y0 + 1 < im->height ? y0 + 1 : y0;
    float fx = sx - x0, fy = sy - y0;
    if (fx > 1) fx = 1;
    if (fy > 1) fy = 1;
    const uint8_t *p = im->rgb;
    size_t st = (size_t)im->width * 3;
    float a = p[y0 * st + x0 * 3 + ch], b = p[y0 * st + x1 * 3 + ch];
    float c = p[y1 * st + x0 * 3 + ch], e = p[y1 * st + x1 * 3 + ch];
    return (a + (b - a) * fx) + ((c + (e - c) * fx) - (a + (b - a) * fx)) * fy;
}

/* Crop offsets and flip from (key, slot): random when augmenting, centred
 * and unflipped otherwise. */
static void crop_one(const sx_image *im, int s, int augment, uint64_t key, int slot,
                     const float mean[3], const float std[3], float *out) {
    float scale = 1.0f;
    int shorter = im->width < im->height ? im->width : im->height;
    if (shorter < s) scale = (float)s / (float)shorter;
    float sw = im->width * scale, sh = im->height * scale;
    float cx = (sw - s) * 0.5f, cy = (sh - s) * 0.5f;
    int flip = 0;
    if (augment) {
        cx = floorf((float)unit_rand(key, 0xC0, (uint64_t)slot, 0) * (floorf(sw - s) + 1));
        cy = floorf((float)unit_rand(key, 0xC1, (uint64_t)slot, 0) * (floorf(sh - s) + 1));
        flip = unit_rand(key, 0xF1, (uint64_t)slot, 0) < 0.5;
    } else if (scale == 1.0f) {
        cx = floorf(cx), cy = floorf(cy);
    }
    const size_t plane = (size_t)s * s;
    for (int c = 0; c < 3; c++) {
        float a = 1.0f / (255.0f * std[c]), b = -mean[c] / std[c];
        float *o = out + c * plane;
        for (int y = 0; y < s; y++)
            for (int x = 0; x < s; x++) {
                int xs = flip ? s - 1 - x : x;
                float v;
                if (scale == 1.0f) { /* own scale: a pixel copy */
                    int ix = (int)cx + xs, iy = (int)cy + y;
                    v = im->rgb[((size_t)iy * im->width + ix) * 3 + c];
                } else {
                    v = sample_bilinear(im, (cx + xs + 0.5f) / scale - 0.5f,
                                        (cy + y + 0.5f) / scale - 0.5f, c);
                }
                o[(size_t)y * s + x] = v * a + b;
            }
    }
}

/* A black input keeps the batch shape; the trainer reports the failure. */
static void fail_slot(sx_tr_job *job, int i, const siamidx_error *err) {
    const size_t per = (size_t)3 * job->input * job->input;
    if (!job->failed) snprintf(job->first_error, sizeof job->first_error, "%s", err->message);
    job->failed++;
    memset(job->x + i * per, 0, per * sizeof(float));
}

static void fill_batch(sx_tr_job *job) {
    sx_tr_data *d = job->data;
    const size_t per = (size_t)3 * job->input * job->input;
    const int processing = job->augment && sx_tr_augment_active(job->processing);
    job->failed = 0;
    for (int i = 0; i < job->n; i++) {
        int e = job->entries[i];
        siamidx_error err;
        sx_image tmp = {0}, aug = {0}, *owned;
        const sx_image *im;
        job->labels[i] = d->label[e];
        if (sx_tr_data_image(d, e, &tmp, &im, &owned, &err) != SIAMIDX_OK) {
            fail_slot(job, i, &err);
            continue;
        }
        if (processing && sx_tr_augment_apply(job->processing, im, job->key, i, &aug, &err)) {
            fail_slot(job, i, &err);
        } else {
            crop_one(aug.rgb ? &aug : im, job->input, job->augment, job->key, i, job->mean,
                     job->std, job->x + i * per);
        }
        sx_image_free(&aug);
        if (owned) sx_image_free(owned);
    }
}

static void *job_main(void *arg) {
    fill_batch(arg);
    return NULL;
}

void sx_tr_job_start(sx_tr_job *job) {
    pthread_t *t = malloc(sizeof *t);
    if (t && pthread_create(t, NULL, job_main, job) == 0) {
        job->thread = t;
        return;
    }
    free(t);
    job->thread = NULL;
    fill_batch(job); /* no thread: do it here */
}

void sx_tr_job_wait(sx_tr_job *job) {
    if (!job->thread) return;
    pthread_join(*(pthread_t *)job->thread, NULL);
    free(job->thread);
    job->thread = NULL;
}

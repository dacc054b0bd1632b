/*
 * test_train_data.c - what train-encoder feeds the network, on real fixture
 * images:
 *  - issue 8: the cache holds images at the training scale (shorter side at
 *    most the scale), within its bound, and a bound that caches nothing
 *    gives the same batches (images are decoded again on demand);
 *  - several collections are one (same artist name = same artist, an image
 *    listed twice is skipped); --exclude-artists removes artists;
 *  - the processing transforms do what they say; augmented batches are a
 *    function of (key, slot) only.
 */
#include <math.h>
#include <stdint.h>

#include "check.h"
#include "data/collection.h"
#include "data/collection_many.h"
#include "image/image.h"
#include "image/preprocess.h"
#include "train/train_data.h"
#include "train/train_net.h"
#include "train/train_augment.h"
#include "base/error.h"
#include "test_train_fixture.h"

static const char *data_dir;
static char csv_a[4096], csv_b[4096];

static sx_tr_data_cfg cfg_for(const char *const *colls, int n, size_t cache_bytes, int scale) {
    sx_tr_data_cfg c = {.collections = colls, .n_collections = n, .val_fraction = 0.1,
                        .balance = 0.5, .seed = 7, .scale = scale, .cache_bytes = cache_bytes};
    return c;
}

/* ---- the cache ------------------------------------------------------------- */

static void test_cache_at_training_scale(void) {
    const char *colls[] = {csv_a};
    sx_tr_data_cfg cfg = cfg_for(colls, 1, (size_t)1 << 30, 64);
    sx_tr_data d;
    siamidx_error err;
    CHECK(sx_tr_data_open(&cfg, &d, &err) == SIAMIDX_OK);
    size_t want = 0, full = 0;
    for (size_t e = 0; e < d.coll.n_entries; e++) {
        sx_image orig, tmp = {0}, *owned;
        const sx_image *im;
        CHECK(sx_image_load(d.coll.entries[e].resolved, 0, &orig, &err) == SIAMIDX_OK);
        CHECK(sx_tr_data_image(&d, (int)e, &tmp, &im, &owned, &err) == SIAMIDX_OK);
        CHECK(owned == NULL); /* within the bound: cached */
        int cw, ch;
        want += sx_tr_cached_size(orig.width, orig.height, 64, &cw, &ch);
        full += (size_t)orig.width * orig.height * 3;
        int shorter = im->width < im->height ? im->width : im->height;
        int oshort = orig.width < orig.height ? orig.width : orig.height;
        CHECK_MSG(im->width == cw && im->height == ch, "%s: cached %dx%d, want %dx%d",
                  d.coll.entries[e].path, im->width, im->height, cw, ch);
        CHECK_MSG(shorter == (oshort < 64 ? oshort : 64), "%s: shorter side %d",
                  d.coll.entries[e].path, shorter);
        /* the aspect ratio is kept (torchvision's int() of the longer side) */
        double ra = (double)orig.width / orig.height, rb = (double)im->width / im->height;
        CHECK_MSG(fabs(ra - rb) / ra < 0.03, "aspect %g -> %g", ra, rb);
        sx_image_free(&orig);
    }
    printf("cache at scale 64: %zu bytes for %zu images (full resolution: %zu)\n", d.cache_used,
           d.coll.n_entries, full);
    CHECK_MSG(d.cache_used == want, "cache holds %zu bytes, want %zu", d.cache_used, want);
    CHECK(d.n_cached == (int)d.coll.n_entries);
    CHECK(d.cache_used * 4 < full); /* photo_480x360 alone is 518 kB at full size */
    /* a second pass decodes nothing */
    long long decodes = d.n_decodes;
    sx_image tmp = {0}, *owned;
    const sx_image *im;
    CHECK(sx_tr_data_image(&d, 0, &tmp, &im, &owned, &err) == SIAMIDX_OK && !owned);
    CHECK(d.n_decodes == decodes);
    sx_tr_data_close(&d);
}

static void fill(sx_tr_data *d, const int *entries, int n, int augment, uint64_t key,
                 const sx_tr_augment *proc, float *x, int32_t *labels) {
    sx_tr_job job = {.data = d, .entries = entries, .n = n, .input = 48, .augment = augment,
                     .key = key, .processing = proc, .x = x, .labels = labels,
                     .mean = {0.485f, 0.456f, 0.406f}, .std = {0.229f, 0.224f, 0.225f}};
    sx_tr_job_start(&job);
    sx_tr_job_wait(&job);
    CHECK_MSG(job.failed == 0, "%d failed: %s", job.failed, job.first_error);
}

static void test_cache_bound(void) {
    const char *colls[] = {csv_a, csv_b};
    sx_tr_data big, tiny;
    siamidx_error err;
    sx_tr_data_cfg cb = cfg_for(colls, 2, (size_t)1 << 30, 96);
    sx_tr_data_cfg ct = cfg_for(colls, 2, 20000, 96); /* one or two small images */
    CHECK(sx_tr_data_open(&cb, &big, &err) == SIAMIDX_OK);
    CHECK(sx_tr_data_open(&ct, &tiny, &err) == SIAMIDX_OK);
    const int n = (int)big.coll.n_entries;
    int entries[32];
    for (int i = 0; i < n; i++) entries[i] = i;
    const size_t per = (size_t)3 * 48 * 48;
    float *xa = malloc(per * n * sizeof(float)), *xb = malloc(per * n * sizeof(float));
    int32_t la[32], lb[32];
    sx_tr_augment all = {1, 1, 1, 1};
    for (int pass = 0; pass < 2; pass++) {
        fill(&big, entries, n, 1, 99 + pass, &all, xa, la);
        fill(&tiny, entries, n, 1, 99 + pass, &all, xb, lb);
        CHECK_MSG(!memcmp(xa, xb, per * n * sizeof(float)),
                  "pass %d: a bounded cache changed the batch", pass);
        CHECK(!memcmp(la, lb, sizeof(int32_t) * n));
    }
    printf("bounded cache: %d of %d images, %zu of %zu bytes; %lld decodes in 2 passes\n",
           tiny.n_cached, n, tiny.cache_used, tiny.cache_cap, tiny.n_decodes);
    CHECK(tiny.cache_used <= tiny.cache_cap);
    CHECK(tiny.n_cached < n);
    CHECK(tiny.n_decodes > n);      /* the rest decoded again */
    CHECK(big.n_decodes == n);      /* unbounded: each once */
    free(xa), free(xb);
    sx_tr_data_close(&big);
    sx_tr_data_close(&tiny);
}

/* ---- several collections, excluded artists ------------------------------------ */

static int artist_images(const sx_tr_data *d, const char *name) {
    int k = 0;
    for (size_t i = 0; i < d->coll.n_entries; i++) k += !strcmp(d->coll.entries[i].artist, name);
    return k;
}

static void test_collections(const char *tmp) {
    const char *one[] = {csv_a}, *two[] = {csv_a, csv_b};
    sx_tr_data a, ab;
    siamidx_error err;
    sx_tr_data_cfg ca = cfg_for(one, 1, 0, 224), cab = cfg_for(two, 2, 0, 224);
    CHECK(sx_tr_data_open(&ca, &a, &err) == SIAMIDX_OK);
    CHECK(sx_tr_data_open(&cab, &ab, &err) == SIAMIDX_OK);
    CHECK(a.n_artists == 2 && a.coll.n_entries == 6);
    CHECK_MSG(ab.n_artists == 3 && ab.coll.n_entries == 11, "%d artists, %zu images",
              ab.n_artists, ab.coll.n_entries);
    CHECK(artist_images(&ab, "bob") == 5); /* one artist across both */
    CHECK(artist_images(&ab, "ann") == 3); /* the photo listed twice counts once */
    int dup = 0;
    for (size_t i = 0; i < ab.coll.n_issues; i++)
        dup += strstr(ab.coll.issues[i].message, "listed by an earlier collection") != NULL;
    CHECK(dup == 1);
    CHECK(strcmp(a.fingerprint, ab.fingerprint) != 0); /* the fingerprint covers both */
    sx_tr_data_close(&a);

    char list[4200];
    snprintf(list, sizeof list, "%s/train_exclude.txt", tmp);
    FILE *f = fopen(list, "w");
    fprintf(f, "# kept out for evaluation\n\n  cy \r\nnobody\n");
    fclose(f);
    cab.exclude_artists = list;
    sx_tr_data ex;
    CHECK(sx_tr_data_open(&cab, &ex, &err) == SIAMIDX_OK);
    CHECK_MSG(ex.n_artists == 2 && ex.coll.n_entries == 8 && ex.n_excluded_images == 3,
              "%d artists, %zu images, %zu excluded", ex.n_artists, ex.coll.n_entries,
              ex.n_excluded_images);
    CHECK(ex.n_excluded == 2 && !strcmp(ex.excluded[0], "cy") && !strcmp(ex.excluded[1], "nobody"));
    CHECK(artist_images(&ex, "cy") == 0);
    CHECK(strcmp(ex.fingerprint, ab.fingerprint) != 0);
    sx_tr_data_close(&ex);
    sx_tr_data_close(&ab);

    /* excluding all but one artist leaves nothing to classify: a clear error */
    f = fopen(list, "w");
    fprintf(f, "cy\nann\n"); /* bob alone: 5 images, 1 artist */
    fclose(f);
    CHECK(sx_tr_data_open(&cab, &ex, &err) == SIAMIDX_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "at least 2") != NULL);
    sx_tr_data_close(&ex);
    cab.exclude_artists = "/nonexistent/list.txt";
    CHECK(sx_tr_data_open(&cab, &ex, &err) == SIAMIDX_ERR_NOT_FOUND);
    sx_tr_data_close(&ex);
    const char *missing[] = {csv_a, "/nonexistent/collection"};
    sx_tr_data_cfg cm = cfg_for(missing, 2, 0, 224);
    CHECK(sx_tr_data_open(&cm, &ex, &err) == SIAMIDX_ERR_NOT_FOUND);
    sx_tr_data_close(&ex);
}

/* ---- the processing transforms ------------------------------------------------- */

static double psnr(const sx_image *a, const sx_image *b) {
    size_t n = (size_t)a->width * a->height * 3;
    double se = 0;
    for (size_t i = 0; i < n; i++) se += ((double)a->rgb[i] - b->rgb[i]) * (a->rgb[i] - b->rgb[i]);
    return se > 0 ? 10 * log10(255.0 * 255.0 * n / se) : INFINITY;
}

static void copy(const sx_image *src, sx_image *dst) {
    size_t n = (size_t)src->width * src->height * 3;
    dst->rgb = malloc(n);
    memcpy(dst->rgb, src->rgb, n);
    dst->width = src->width;
    dst->height = src->height;
}

static int levels(const sx_image *im, int c) {
    int seen[256] = {0}, k = 0;
    for (size_t i = c; i < (size_t)im->width * im->height * 3; i += 3) seen[im->rgb[i]] = 1;
    for (int v = 0; v < 256; v++) k += seen[v];
    return k;
}

static void test_transforms(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/images/photo_480x360.jpg", data_dir);
    sx_image src, im;
    siamidx_error err;
    CHECK(sx_image_load(path, 0, &src, &err) == SIAMIDX_OK);
    for (int c = 0; c < 3; c++) CHECK(levels(&src, c) > 100);

    /* sx_resize_rgb is the resampler of sx_preprocess (torchvision's eval resize):
     * 480x360 to 85x64 against preprocess's 64x64 centre crop of the same resize */
    uint8_t *small = malloc(85 * 64 * 3);
    float *chw = malloc(sizeof(float) * 3 * 64 * 64);
    sx_preprocess_cfg pc = {.input_size = 64, .resize_size = 64, .policy = SX_RESIZE_SHORTER_CROP,
                            .mean = {0, 0, 0}, .std = {1, 1, 1}};
    CHECK(sx_resize_rgb(src.rgb, src.width, src.height, (size_t)src.width * 3, 85, 64, small,
                        &err) == SIAMIDX_OK);
    CHECK(sx_preprocess(src.rgb, src.width, src.height, (size_t)src.width * 3, &pc, chw, &err) ==
          SIAMIDX_OK);
    int mismatch = 0;
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < 64; y++)
            for (int x = 0; x < 64; x++)
                mismatch += (int)lroundf(chw[(c * 64 + y) * 64 + x] * 255.0f) !=
                            small[(y * 85 + x + 10) * 3 + c];
    CHECK_MSG(mismatch == 0, "%d pixels differ from sx_preprocess's resize", mismatch);
    free(small), free(chw);

    for (int bits = SX_TR_POSTERIZE_MIN_BITS; bits <= SX_TR_POSTERIZE_MAX_BITS; bits++) {
        copy(&src, &im);
        sx_tr_posterize(&im, bits);
        for (int c = 0; c < 3; c++) {
            int k = levels(&im, c);
            CHECK_MSG(k <= (1 << bits) && k >= (1 << bits) / 2, "%d bits: %d levels", bits, k);
        }
        double p = psnr(&src, &im);
        printf("posterize %d bits: %d/%d/%d levels, PSNR %.1f dB\n", bits, levels(&im, 0),
               levels(&im, 1), levels(&im, 2), p);
        /* full range kept: 0 and 255 stay reachable levels */
        CHECK(p > 6.0 * bits - 4);
        sx_image_free(&im);
    }

    double last = 0;
    for (int q = SX_TR_JPEG_MIN_QUALITY; q <= SX_TR_JPEG_MAX_QUALITY; q += 65) {
        copy(&src, &im);
        CHECK(sx_tr_jpeg(&im, q, &err) == SIAMIDX_OK);
        CHECK(im.width == src.width && im.height == src.height);
        double p = psnr(&src, &im);
        printf("JPEG quality %d: PSNR %.1f dB\n", q, p);
        CHECK_MSG(p > 25 && p < 55, "quality %d: PSNR %.1f", q, p); /* changed, not ruined */
        CHECK(p > last);
        last = p;
        sx_image_free(&im);
    }

    copy(&src, &im);
    CHECK(sx_tr_squash(&im, 1.33, &err) == SIAMIDX_OK);
    double a0 = (double)src.width / src.height, a1 = (double)im.width / im.height;
    double area = (double)im.width * im.height / ((double)src.width * src.height);
    printf("squash 1.33: %dx%d -> %dx%d\n", src.width, src.height, im.width, im.height);
    CHECK_MSG(fabs(a1 / a0 - 1.33) < 0.01 && fabs(area - 1) < 0.01, "aspect x%.3f, area x%.3f",
              a1 / a0, area);
    sx_image_free(&im);
    copy(&src, &im);
    CHECK(sx_tr_squash(&im, 0.75, &err) == SIAMIDX_OK);
    CHECK(fabs((double)im.width / im.height / a0 - 0.75) < 0.01);
    sx_image_free(&im);

    copy(&src, &im);
    CHECK(sx_tr_down_up(&im, 0.4, &err) == SIAMIDX_OK);
    double p04 = psnr(&src, &im);
    sx_image_free(&im);
    copy(&src, &im);
    CHECK(sx_tr_down_up(&im, 0.9, &err) == SIAMIDX_OK);
    double p09 = psnr(&src, &im);
    CHECK(im.width == src.width && im.height == src.height);
    printf("down-up 0.4: PSNR %.1f dB; 0.9: %.1f dB\n", p04, p09);
    CHECK(p04 > 15 && p04 < p09 && p09 < 60); /* blurs, more at the smaller factor */
    sx_image_free(&im);
    sx_image_free(&src);
}

/* ---- determinism ------------------------------------------------------------------ */

static void test_determinism(void) {
    const char *colls[] = {csv_a, csv_b};
    sx_tr_data d;
    siamidx_error err;
    sx_tr_data_cfg c = cfg_for(colls, 2, (size_t)1 << 30, 96);
    CHECK(sx_tr_data_open(&c, &d, &err) == SIAMIDX_OK);
    const int n = 8;
    int entries[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    const size_t per = (size_t)3 * 48 * 48, bytes = per * n * sizeof(float);
    float *x1 = malloc(bytes), *x2 = malloc(bytes), *x3 = malloc(bytes), *x0 = malloc(bytes);
    int32_t l[8];
    sx_tr_augment half = {0.5f, 0.5f, 0.5f, 0.5f};
    uint64_t key = sx_tr_hash(1, 0xBA7C, 0, 5), other = sx_tr_hash(1, 0xBA7C, 0, 6);
    fill(&d, entries, n, 1, key, &half, x1, l);
    fill(&d, entries, n, 1, key, &half, x2, l);
    fill(&d, entries, n, 1, other, &half, x3, l);
    fill(&d, entries, n, 1, key, NULL, x0, l);
    CHECK_MSG(!memcmp(x1, x2, bytes), "same key, different batch");
    CHECK_MSG(memcmp(x1, x3, bytes), "another step gave the same batch");
    int changed = 0; /* images the processing transforms touched (same crops as x0) */
    for (int i = 0; i < n; i++) changed += memcmp(x1 + i * per, x0 + i * per, per * sizeof(float)) != 0;
    printf("p = 0.5 each: %d of %d images processed\n", changed, n);
    CHECK(changed >= 2 && changed <= n);
    free(x0), free(x1), free(x2), free(x3);
    sx_tr_data_close(&d);
}

/* ---- an epoch's order: same-artist pairs ------------------------------------ */

/* p_same 1 (the contrastive objective): every odd entry is by the artist of
 * the entry before it, so every image of a batch has a positive; 0.5 (the
 * pair losses): some are, some are not; 0: draws are independent, and 0.5
 * leaves the even entries as they are at 0. */
static void test_epoch_pairs(void) {
    const char *colls[] = {csv_a, csv_b};
    sx_tr_data d;
    siamidx_error err;
    sx_tr_data_cfg c = cfg_for(colls, 2, 0, 96);
    CHECK(sx_tr_data_open(&c, &d, &err) == SIAMIDX_OK);
    const int n = d.n_train;
    int *o0 = malloc(sizeof(int) * n), *oh = malloc(sizeof(int) * n), *o1 = malloc(sizeof(int) * n);
    int same_h = 0, same_1 = 0, pairs = n / 2;
    for (int epoch = 0; epoch < 40; epoch++) {
        sx_tr_data_epoch(&d, 3, epoch, 0.0, 0, 0, o0);
        sx_tr_data_epoch(&d, 3, epoch, 0.5, 0, 0, oh);
        sx_tr_data_epoch(&d, 3, epoch, 1.0, 0, 0, o1);
        for (int i = 0; i + 1 < n; i += 2) {
            CHECK(oh[i] == o0[i] && o1[i] == o0[i]);
            same_h += d.label[oh[i]] == d.label[oh[i + 1]];
            same_1 += d.label[o1[i]] == d.label[o1[i + 1]];
        }
    }
    printf("same-artist pairs over 40 epochs: %d (p 0.5), %d (p 1) of %d\n", same_h, same_1,
           40 * pairs);
    CHECK(same_1 == 40 * pairs);
    CHECK(same_h > 40 * pairs / 2 && same_h < 40 * pairs); /* 0.5 + chance of 3 artists */
    free(o0), free(oh), free(o1);
    sx_tr_data_close(&d);
}

/* --same-style: the batch's draws from its first image's style group
 * (source_repo + top folder of source_path). Six artists of two images
 * each (one trains, one validates): three Baroque, two Impressionist (one
 * source), one of another source. */
static void test_style_groups(const char *tmp) {
    static const char *const rows[][4] = {
        {"photo_480x360.jpg", "a1", "wiki", "Baroque/1.jpg"},
        {"exif6_200x120.jpg", "a1", "wiki", "Baroque/2.jpg"},
        {"grad_300x180.png", "a2", "wiki", "Baroque/3.jpg"},
        {"gray_181x401.png", "a2", "wiki", "Baroque/4.jpg"},
        {"exif3_160x100.jpg", "a3", "wiki", "Baroque/5.jpg"},
        {"gray_90x70.jpg", "a3", "wiki", "Baroque/6.jpg"},
        {"small_75x50.bmp", "a4", "wiki", "Impressionism/1.jpg"},
        {"rgba_75x50.png", "a4", "wiki", "Impressionism/2.jpg"},
        {"la_75x50.png", "a5", "wiki", "Impressionism/3.jpg"},
        {"small_75x50.tga", "a5", "wiki", "Impressionism/4.jpg"},
        {"anim_97x61.gif", "a6", "museum", "Baroque/1.jpg"},
        {"rgb16_64x48.png", "a6", "museum", "Baroque/2.jpg"}};
    char csv[4200], abs[4096];
    snprintf(csv, sizeof csv, "%s/train_styles.csv", tmp);
    CHECK(realpath(data_dir, abs) != NULL);
    FILE *f = fopen(csv, "w");
    fprintf(f, "filename,artist,source_repo,source_path\n");
    for (int i = 0; i < 12; i++)
        fprintf(f, "%s/images/%s,%s,%s,%s\n", abs, rows[i][0], rows[i][1], rows[i][2], rows[i][3]);
    fclose(f);
    const char *colls[] = {csv};
    sx_tr_data d;
    siamidx_error err;
    sx_tr_data_cfg c = cfg_for(colls, 1, 0, 96);
    CHECK_MSG(sx_tr_data_open(&c, &d, &err) == SIAMIDX_OK, "%s", err.message);
    CHECK_MSG(d.n_train == 6 && d.n_groups == 3, "%d train, %d groups", d.n_train, d.n_groups);
    const char *repo[6], *top[6]; /* per artist (a1..a6 are labels 0..5) */
    for (int i = 0; i < 6; i++) repo[i] = rows[2 * i][2], top[i] = rows[2 * i][3];
    const int B = 8, n = d.n_train;
    int *o = malloc(sizeof(int) * n * 8), *o0 = malloc(sizeof(int) * n * 8);
    int grouped = 0, checked = 0, other = 0;
    for (int epoch = 0; epoch < 200; epoch++) {
        sx_tr_data_epoch(&d, 5, epoch, 1.0, B, 1.0, o);
        sx_tr_data_epoch(&d, 5, epoch, 1.0, B, 0.0, o0);
        for (int i = 0; i < n; i++) {
            int a = d.label[o[i]], first = d.label[o[i - i % B]];
            if (i & 1) CHECK(a == d.label[o[i - 1]]); /* the pair partner */
            else if (i % B) {
                checked++;
                grouped += !strcmp(repo[a], repo[first]) &&
                           !strncmp(top[a], top[first], strcspn(top[a], "/") + 1);
            }
            if (!(i % B)) CHECK(o[i] == o0[i]); /* a batch's first image is the usual draw */
            if (!(i & 1) && i % B) other += d.label[o0[i]] != d.label[o0[i - i % B]];
        }
    }
    printf("same-style batches: %d of %d later draws in the first's group (p 1)\n", grouped,
           checked);
    CHECK(checked > 0 && grouped == checked);
    CHECK(other > 0); /* without it, draws leave the group */
    free(o), free(o0);
    sx_tr_data_close(&d);
}

int main(void) {
    data_dir = check_env_dir("SIAMIDX_TEST_DATA");
    const char *tmp = fixture_tmp();
    snprintf(csv_a, sizeof csv_a, "%s/train_a.csv", tmp);
    snprintf(csv_b, sizeof csv_b, "%s/train_b.csv", tmp);
    fixture_csv(csv_a, data_dir, FIXTURE_A, 6);
    fixture_csv(csv_b, data_dir, FIXTURE_B, 6);
    test_cache_at_training_scale();
    test_cache_bound();
    test_collections(tmp);
    test_transforms();
    test_determinism();
    test_epoch_pairs();
    test_style_groups(tmp);
    CHECK_DONE();
}

/*
 * test_preprocess.c - sx_preprocess against torchvision's eval transform.
 *
 * tests/data/images/preprocess.txt lists the cases written by
 * tools/make_image_fixtures.py: the source (a fixture file, or proc_image of a
 * size, which both sides compute), the policy and sizes, and the uint8 image
 * PIL/torchvision produced after Resize + CenterCrop (normalisation is affine,
 * so it is applied here). Lossless sources must match exactly (the resize
 * reproduces Pillow's fixed-point arithmetic); JPEG sources differ by decoder
 * (stb vs libjpeg), so they are compared by cosine similarity and mean level
 * difference.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "image_fixture.h"
#include "image/image.h"
#include "image/preprocess.h"

static char dir[1024];
static const float mean[3] = {0.485f, 0.456f, 0.406f};
static const float stdev[3] = {0.229f, 0.224f, 0.225f};

static const char *fixture(const char *name) {
    static char path[1024 + 512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return path;
}

static void proc_image(int w, int h, sx_image *img) {
    img->width = w;
    img->height = h;
    img->rgb = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) img->rgb[((size_t)y * w + x) * 3 + c] = proc_pixel(w, h, x, y, c);
}

static sx_preprocess_cfg make_cfg(sx_resize_policy policy, int resize, int input) {
    sx_preprocess_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.policy = policy;
    cfg.resize_size = resize;
    cfg.input_size = input;
    memcpy(cfg.mean, mean, sizeof mean);
    memcpy(cfg.std, stdev, sizeof stdev);
    return cfg;
}

/* What torch computes from a uint8 level: ToTensor then Normalize. */
static float normalised(int level, int c) { return ((float)level / 255.0f - mean[c]) / stdev[c]; }

typedef struct stats {
    double max_level_diff, mean_level_diff, cosine;
} stats;

static stats compare(const float *out, const sx_image *expect) {
    stats st = {0, 0, 0};
    const size_t plane = (size_t)expect->width * expect->height;
    double dot = 0, na = 0, nb = 0, sum = 0;
    for (int c = 0; c < 3; c++)
        for (size_t i = 0; i < plane; i++) {
            float got = out[c * plane + i];
            int lvl = expect->rgb[i * 3 + c];
            float want = normalised(lvl, c);
            double level_got = ((double)got * stdev[c] + mean[c]) * 255.0;
            double d = fabs(level_got - lvl);
            if (d > st.max_level_diff) st.max_level_diff = d;
            sum += d;
            dot += (double)got * want;
            na += (double)got * got;
            nb += (double)want * want;
        }
    st.mean_level_diff = sum / (3.0 * plane);
    st.cosine = dot / (sqrt(na) * sqrt(nb) + 1e-30);
    return st;
}

static void test_cases(void) {
    FILE *f = fopen(fixture("preprocess.txt"), "r");
    CHECK_MSG(f != NULL, "cannot read %s", fixture("preprocess.txt"));
    if (!f) return;
    char line[512];
    int n = 0;
    double worst_lossless = 0, worst_jpeg_cos = 1, worst_jpeg_mean = 0;
    while (fgets(line, sizeof line, f)) {
        char kind[16], src[256], policy[16], expect_name[256], jpeg[16] = "";
        int resize, input;
        if (sscanf(line, "%15s %255s %15s %d %d %255s %15s", kind, src, policy, &resize, &input,
                   expect_name, jpeg) < 6)
            continue;
        n++;
        sx_image img = {0, 0, NULL}, expect;
        siamidx_error err;
        if (!strcmp(kind, "proc")) {
            int w, h;
            CHECK(sscanf(src, "%dx%d", &w, &h) == 2);
            proc_image(w, h, &img);
        } else if (sx_image_load(fixture(src), 0, &img, &err) != SIAMIDX_OK) {
            CHECK_MSG(0, "%s", err.message);
            continue;
        }
        if (sx_image_load(fixture(expect_name), 0, &expect, &err) != SIAMIDX_OK) {
            CHECK_MSG(0, "%s", err.message);
            sx_image_free(&img);
            continue;
        }
        CHECK(expect.width == input && expect.height == input);
        sx_preprocess_cfg cfg =
            make_cfg(!strcmp(policy, "squash") ? SX_RESIZE_SQUASH : SX_RESIZE_SHORTER_CROP, resize,
                     input);
        float *out = malloc(sizeof(float) * 3 * input * input);
        siamidx_status s =
            sx_preprocess(img.rgb, img.width, img.height, (size_t)img.width * 3, &cfg, out, &err);
        CHECK_MSG(s == SIAMIDX_OK, "%s: %s", src, err.message);
        if (s == SIAMIDX_OK && expect.width == input) {
            stats st = compare(out, &expect);
            printf("%-5s %-18s %-6s %3d/%3d: max %.3f levels, mean %.4f, cosine %.6f\n", kind, src,
                   policy, resize, input, st.max_level_diff, st.mean_level_diff, st.cosine);
            if (!strcmp(jpeg, "jpeg")) {
                CHECK_MSG(st.cosine >= 0.999, "%s: cosine %.6f", src, st.cosine);
                CHECK_MSG(st.mean_level_diff <= 0.5, "%s: mean diff %.3f", src, st.mean_level_diff);
                if (st.cosine < worst_jpeg_cos) worst_jpeg_cos = st.cosine;
                if (st.mean_level_diff > worst_jpeg_mean) worst_jpeg_mean = st.mean_level_diff;
            } else {
                /* The resize follows Pillow's arithmetic, so every level is identical. */
                CHECK_MSG(st.max_level_diff < 0.01, "%s %s: max diff %.3f levels", src, policy,
                          st.max_level_diff);
                if (st.max_level_diff > worst_lossless) worst_lossless = st.max_level_diff;
            }
        }
        free(out);
        sx_image_free(&img);
        sx_image_free(&expect);
    }
    fclose(f);
    CHECK_MSG(n >= 15, "only %d cases", n);
    printf("lossless: worst max diff %.3f levels; jpeg: worst cosine %.6f, worst mean diff %.3f\n",
           worst_lossless, worst_jpeg_cos, worst_jpeg_mean);
}

/* A 1x1 image becomes a constant tensor under both policies. */
static void test_one_pixel(void) {
    sx_image img;
    siamidx_error err;
    CHECK(sx_image_load(fixture("1x1.png"), 0, &img, &err) == SIAMIDX_OK);
    if (!img.rgb) return;
    CHECK(img.width == 1 && img.height == 1);
    for (int policy = 0; policy < 2; policy++) {
        sx_preprocess_cfg cfg = make_cfg((sx_resize_policy)policy, 256, 224);
        float *out = malloc(sizeof(float) * 3 * 224 * 224);
        CHECK(sx_preprocess(img.rgb, 1, 1, 3, &cfg, out, &err) == SIAMIDX_OK);
        int bad = 0;
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < 224 * 224; i++)
                if (out[c * 224 * 224 + i] != normalised(img.rgb[c], c)) bad++;
        CHECK_MSG(bad == 0, "policy %d: %d values differ from the pixel", policy, bad);
        free(out);
    }
    sx_image_free(&img);
}

/* Rows with padding at their end give the same result as packed rows. */
static void test_stride(void) {
    sx_image img;
    proc_image(97, 53, &img);
    size_t stride = 97 * 3 + 13;
    uint8_t *padded = malloc(stride * 53);
    memset(padded, 0xAB, stride * 53);
    for (int y = 0; y < 53; y++) memcpy(padded + y * stride, img.rgb + (size_t)y * 97 * 3, 97 * 3);
    sx_preprocess_cfg cfg = make_cfg(SX_RESIZE_SHORTER_CROP, 40, 32);
    float a[3 * 32 * 32], b[3 * 32 * 32];
    siamidx_error err;
    CHECK(sx_preprocess(img.rgb, 97, 53, 97 * 3, &cfg, a, &err) == SIAMIDX_OK);
    CHECK(sx_preprocess(padded, 97, 53, stride, &cfg, b, &err) == SIAMIDX_OK);
    CHECK(memcmp(a, b, sizeof a) == 0);
    free(padded);
    sx_image_free(&img);
}

static void test_bad_arguments(void) {
    uint8_t px[3] = {1, 2, 3};
    float out[3 * 8 * 8];
    siamidx_error err;
    sx_preprocess_cfg cfg = make_cfg(SX_RESIZE_SHORTER_CROP, 8, 8);
    CHECK(sx_preprocess(NULL, 1, 1, 3, &cfg, out, &err) == SIAMIDX_ERR_INVALID_ARGUMENT);
    CHECK(sx_preprocess(px, 0, 1, 3, &cfg, out, &err) == SIAMIDX_ERR_INVALID_ARGUMENT);
    CHECK(sx_preprocess(px, 1, 1, 2, &cfg, out, &err) == SIAMIDX_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "stride") != NULL);
    cfg.std[1] = 0;
    CHECK(sx_preprocess(px, 1, 1, 3, &cfg, out, &err) == SIAMIDX_ERR_INVALID_ARGUMENT);
    cfg = make_cfg(SX_RESIZE_SHORTER_CROP, 0, 8);
    CHECK(sx_preprocess(px, 1, 1, 3, &cfg, out, &err) == SIAMIDX_ERR_INVALID_ARGUMENT);
    /* An extreme aspect ratio needs no giant buffer: only the crop is computed. */
    uint8_t *strip = calloc(200000, 3);
    cfg = make_cfg(SX_RESIZE_SHORTER_CROP, 8, 8);
    CHECK(sx_preprocess(strip, 200000, 1, 600000, &cfg, out, &err) == SIAMIDX_OK);
    free(strip);
}

static void time_one(void) {
    sx_image img;
    proc_image(4000, 3000, &img);
    sx_preprocess_cfg cfg = make_cfg(SX_RESIZE_SHORTER_CROP, 256, 224);
    float *out = malloc(sizeof(float) * 3 * 224 * 224);
    siamidx_error err;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK(sx_preprocess(img.rgb, 4000, 3000, 4000 * 3, &cfg, out, &err) == SIAMIDX_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("4000x3000 -> 224x224: %.1f ms\n",
           (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);
    free(out);
    sx_image_free(&img);
}

int main(void) {
    snprintf(dir, sizeof dir, "%s/images", check_env_dir("SIAMIDX_TEST_DATA"));
    test_cases();
    test_one_pixel();
    test_stride();
    test_bad_arguments();
    time_one();
    CHECK_DONE();
}

/*
 * test_parity.c - the C encoder against torchvision on full-size ResNet-18/50.
 *
 * The weights are regenerated here (tests/fixture_model.h) exactly as
 * tools/make_fixtures.py generated them for torchvision; the model file must
 * even be byte-identical (sha256 recorded in tests/data/model/fixtures.json).
 * Expected outputs: tests/data/model/{arch}_{h}x{w}_{pooled,logits}.f32,
 * torchvision eval-mode outputs for a batch of 4; a batch of 1 is its first row.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fixture_model.h"
#include "base/sha256.h"
#include "nn/model.h"
#include "image/image.h"
#include "image/preprocess.h"

/* The sha256 recorded for `arch` in fixtures.json (sorted keys: metadata, outputs, sha256). */
static int recorded_sha256(const char *data_dir, const char *arch, char out[65]) {
    char path[1024], key[64];
    snprintf(path, sizeof path, "%s/model/fixtures.json", data_dir);
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char *text = calloc(1, 1 << 20);
    size_t n = text ? fread(text, 1, (1 << 20) - 1, f) : 0;
    fclose(f);
    if (!n) { free(text); return 0; }
    snprintf(key, sizeof key, "\"%s\": {", arch);
    const char *p = strstr(text, key);
    p = p ? strstr(p, "\"sha256\": \"") : NULL;
    int ok = p && strlen(p) > 11 + 64;
    if (ok) memcpy(out, p + 11, 64), out[64] = 0;
    free(text);
    return ok;
}

static void file_sha256(const char *path, char out[65]) {
    sx_sha256 h;
    uint8_t buf[1 << 16], digest[32];
    FILE *f = fopen(path, "rb");
    sx_sha256_init(&h);
    size_t got;
    while (f && (got = fread(buf, 1, sizeof buf, f)) > 0) sx_sha256_update(&h, buf, got);
    if (f) fclose(f);
    sx_sha256_final(&h, digest);
    sx_hex(digest, 32, out);
}

/* max |got - want| < 1e-4 * max |want| over n*dim values. */
static void compare(const char *what, const float *got, const float *want, size_t count) {
    double max_want = 0, max_diff = 0;
    for (size_t i = 0; i < count; i++) {
        max_want = fmax(max_want, fabs(want[i]));
        max_diff = fmax(max_diff, fabs((double)got[i] - want[i]));
    }
    CHECK_MSG(max_diff < 1e-4 * max_want, "%s: max |diff| %.3g, max |expected| %.3g", what,
              max_diff, max_want);
    printf("%-36s max|diff| %.3g (limit %.3g)\n", what, max_diff, 1e-4 * max_want);
}

static void run_case(const siamidx_model *model, const char *data_dir, const char *arch, int h,
                     int w, siamidx_output output, int n) {
    const char *kind = output == SIAMIDX_OUTPUT_POOLED ? "pooled" : "logits";
    char path[1024], what[96];
    snprintf(path, sizeof path, "%s/model/%s_%dx%d_%s.f32", data_dir, arch, h, w, kind);
    snprintf(what, sizeof what, "%s %dx%d %s batch %d", arch, h, w, kind, n);
    size_t count = 0;
    float *want = fx_read_f32(path, &count);
    size_t dim = output == SIAMIDX_OUTPUT_POOLED ? (size_t)model->feat_dim : (size_t)model->n_classes;
    CHECK_MSG(want && count == 4 * dim, "%s: %zu values, want %zu", path, count, 4 * dim);
    float *x = fx_input(n, h, w, FX_SEED);
    float *got = calloc((size_t)n * dim, sizeof *got);
    siamidx_error err;
    siamidx_status s = siamidx_forward_tensor(model, x, n, h, w, output, got, &err);
    CHECK_MSG(s == SIAMIDX_OK, "%s: %s", what, err.message);
    if (s == SIAMIDX_OK && want && count == 4 * dim) compare(what, got, want, (size_t)n * dim);
    free(got);
    free(x);
    free(want);
}

static double cosine(const float *a, const float *b, size_t n) {
    double dot = 0, na = 0, nb = 0;
    for (size_t i = 0; i < n; i++) {
        dot += (double)a[i] * b[i];
        na += (double)a[i] * a[i];
        nb += (double)b[i] * b[i];
    }
    return dot / (sqrt(na) * sqrt(nb) + 1e-30);
}

/*
 * End to end from an image file: our decoder, resize, crop and network against
 * torchvision's eval transform (PIL decode, Resize 256, CenterCrop 224) and
 * network. Decoders differ slightly (stb vs libjpeg), hence a cosine bound.
 */
static const char *const e2e_images[] = {"photo_480x360.jpg", "gray_90x70.jpg", "grad_300x180.png"};
enum { N_E2E = sizeof e2e_images / sizeof e2e_images[0] };

static double distance(const float *a, const float *b, size_t n) {
    double d = 0;
    for (size_t i = 0; i < n; i++) d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return sqrt(d);
}

/* Runs our whole path on one file into out[dim + classes]; returns 0 on failure. */
static int e2e_run(const siamidx_model *model, const char *image_path, float *out) {
    size_t dim = (size_t)model->feat_dim;
    int side = model->pre.input_size;
    sx_image img = {0};
    siamidx_error err = {0};
    float *x = malloc(sizeof(float) * 3 * side * side);
    int ok = x && sx_image_load(image_path, 0, &img, &err) == SIAMIDX_OK &&
             sx_preprocess(img.rgb, img.width, img.height, (size_t)img.width * 3, &model->pre, x,
                           &err) == SIAMIDX_OK &&
             siamidx_forward_tensor(model, x, 1, side, side, SIAMIDX_OUTPUT_POOLED, out, &err) ==
                 SIAMIDX_OK &&
             siamidx_forward_tensor(model, x, 1, side, side, SIAMIDX_OUTPUT_LOGITS, out + dim,
                                    &err) == SIAMIDX_OK;
    CHECK_MSG(ok, "%s: %s", image_path, err.message);
    sx_image_free(&img);
    free(x);
    return ok;
}

static void check_e2e(const siamidx_model *model, const char *data_dir) {
    size_t dim = (size_t)model->feat_dim, classes = (size_t)model->n_classes, n = dim + classes;
    float *want[N_E2E] = {0}, *got[N_E2E] = {0};
    int ok[N_E2E] = {0};
    for (int i = 0; i < N_E2E; i++) {
        char want_path[1024], image_path[1024];
        snprintf(want_path, sizeof want_path, "%s/model/resnet18_e2e_%s.f32", data_dir, e2e_images[i]);
        snprintf(image_path, sizeof image_path, "%s/images/%s", data_dir, e2e_images[i]);
        size_t count = 0;
        want[i] = fx_read_f32(want_path, &count);
        CHECK_MSG(want[i] && count == n, "%s: %zu values, want %zu", want_path, count, n);
        got[i] = calloc(n, sizeof(float));
        ok[i] = want[i] && count == n && got[i] && e2e_run(model, image_path, got[i]);
        if (!ok[i]) continue;
        double c_pooled = cosine(got[i], want[i], dim);
        double c_logits = cosine(got[i] + dim, want[i] + dim, classes);
        CHECK_MSG(c_pooled >= 0.999, "%s pooled cosine %.6f", e2e_images[i], c_pooled);
        CHECK_MSG(c_logits >= 0.999, "%s logits cosine %.6f", e2e_images[i], c_logits);
        /* The public path (file -> L2-normalised avg embedding) agrees with it. */
        siamidx_embed_options opt;
        siamidx_embed_options_init(&opt);
        opt.pool = SIAMIDX_POOL_AVG;
        float *emb = calloc(dim, sizeof(float));
        siamidx_error err = {0};
        CHECK_MSG(siamidx_embed_file(model, image_path, &opt, emb, &err) == SIAMIDX_OK, "%s",
                  err.message);
        double c_embed = cosine(emb, want[i], dim);
        CHECK_MSG(c_embed >= 0.999, "%s embedding cosine %.6f", e2e_images[i], c_embed);
        free(emb);
        printf("e2e %s: cosine pooled %.6f, logits %.6f, embedding %.6f\n", e2e_images[i],
               c_pooled, c_logits, c_embed);
    }
    /*
     * Random networks map every image to similar vectors, so a cosine bound
     * alone could pass by accident: the error must also be small next to the
     * distance between two different images' outputs.
     */
    for (int i = 0; i < N_E2E; i++) {
        int j = (i + 1) % N_E2E;
        if (!ok[i] || !want[j]) continue;
        double error = distance(got[i], want[i], n), apart = distance(want[i], want[j], n);
        printf("e2e %s: error %.4g, distance to %s %.4g\n", e2e_images[i], error, e2e_images[j],
               apart);
        CHECK_MSG(error < 0.05 * apart, "%s: error %.4g not small next to %.4g", e2e_images[i],
                  error, apart);
    }
    for (int i = 0; i < N_E2E; i++) {
        free(want[i]);
        free(got[i]);
    }
}

static void check_arch(const char *data_dir, const char *arch, int thorough) {
    char path[512], want_sha[65], got_sha[65];
    siamidx_error err;
    snprintf(want_sha, sizeof want_sha, "%s", "unknown");
    fx_tmp_path(path, sizeof path, arch);
    strncat(path, "_parity.safetensors", sizeof path - strlen(path) - 1);
    CHECK_MSG(fx_write_parity_model(path, arch, &err) == SIAMIDX_OK, "%s", err.message);
    CHECK_MSG(recorded_sha256(data_dir, arch, want_sha), "no sha256 for %s in fixtures.json", arch);
    file_sha256(path, got_sha);
    CHECK_MSG(!strcmp(want_sha, got_sha),
              "%s: generated model file %s differs from tools/make_fixtures.py's (%s)", arch,
              got_sha, want_sha);
    siamidx_model *model = NULL;
    CHECK_MSG(siamidx_model_load(path, &model, &err) == SIAMIDX_OK, "%s", err.message);
    remove(path);
    if (!model) return;
    CHECK(siamidx_model_num_classes(model) == 1000);
    static const int sizes[2][2] = {{224, 224}, {160, 288}};
    for (int i = 0; i < 2; i++) {
        int h = sizes[i][0], w = sizes[i][1];
        run_case(model, data_dir, arch, h, w, SIAMIDX_OUTPUT_POOLED, 4);
        run_case(model, data_dir, arch, h, w, SIAMIDX_OUTPUT_LOGITS, 4);
        /* A batch of one: all of it for ResNet-18, one case for the slower ResNet-50. */
        if (thorough || i == 0) run_case(model, data_dir, arch, h, w, SIAMIDX_OUTPUT_POOLED, 1);
        if (thorough) run_case(model, data_dir, arch, h, w, SIAMIDX_OUTPUT_LOGITS, 1);
    }
    if (!strcmp(arch, "resnet18")) check_e2e(model, data_dir);
    siamidx_model_free(model);
}

int main(void) {
    const char *data_dir = check_env_dir("SIAMIDX_TEST_DATA");
    check_arch(data_dir, "resnet18", 1);
    check_arch(data_dir, "resnet50", 0);
    CHECK_DONE();
}

/*
 * test_train_step.c - one full training step of a small ResNet-18 (width
 * 1/16, batch 4, 64x64) against PyTorch from the same weights and batch
 * (tools/make_train_fixture.py): the loss, every parameter gradient and the
 * updated BN running statistics within 1e-3 relative (per tensor, in the L2
 * norm). Two fixtures: cross-entropy + 0.5 * Siamese BCE on layer4's
 * average, and cross-entropy + 0.7 * the supervised contrastive term on the
 * style statistics of layer3 and layer4 (--objective supcon --pooling style).
 */
#include <math.h>
#include <stdint.h>

#include "check.h"
#include "nn/safetensors.h"
#include "train/train_net.h"

#define N 4
#define S 64

void openblas_set_num_threads(int n);

/* The input formula of make_train_fixture.py's input_batch(). */
static void input_batch(float *x) {
    for (uint64_t i = 0; i < (uint64_t)N * 3 * S * S; i++) {
        uint64_t v = (i * 1103515245ULL + 12345ULL) % (1ULL << 31);
        int64_t k = (int64_t)((v >> 8) % 2001);
        x[i] = (float)(k - 1000) / 1000.0f;
    }
}

static double rel_err(const float *a, const float *ref, size_t n) {
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        d += ((double)a[i] - ref[i]) * ((double)a[i] - ref[i]);
        r += (double)ref[i] * ref[i];
    }
    return sqrt(d) / (sqrt(r) + 1e-30);
}

/* Compares `got` with the fixture's tensor `name`; returns the error. */
static double compare(const sx_safetensors *st, const char *name, const float *got, size_t n) {
    const sx_tensor_info *t = sx_safetensors_find(st, name);
    CHECK_MSG(t != NULL, "fixture lacks %s", name);
    if (!t) return 1.0;
    CHECK_MSG((size_t)sx_tensor_numel(t) == n, "%s: %lld values, expected %zu", name,
              (long long)sx_tensor_numel(t), n);
    float *ref = malloc(n * sizeof(float));
    sx_safetensors_read_f32(st, t, ref);
    double e = rel_err(got, ref, n);
    free(ref);
    CHECK_MSG(e < 1e-3, "%s: relative error %.3g", name, e);
    return e;
}

static void check_step(const char *dir, const char *fixture, int supcon_style) {
    char path[4096];
    snprintf(path, sizeof path, "%s/train/%s", dir, fixture);
    siamidx_error err;
    sx_safetensors st;
    if (sx_safetensors_open(path, &st, &err) != SIAMIDX_OK) {
        CHECK_MSG(0, "%s", err.message);
        return;
    }
    sx_tr_config cfg = {.width = 0.0625f, .n_classes = 5, .max_batch = N, .input = S,
                        .objective = SX_TR_BOTH, .siamese_weight = 0.5f, .freeze_through = -1};
    if (supcon_style) {
        cfg.objective = SX_TR_SUPCON;
        cfg.contrast_weight = (float)atof(sx_safetensors_meta(&st, "contrast_weight"));
        cfg.temperature = (float)atof(sx_safetensors_meta(&st, "temperature"));
        cfg.style_stages = 0xc; /* 3,4 */
        CHECK(!strcmp(sx_safetensors_meta(&st, "style_stages"), "3,4"));
    }
    snprintf(cfg.arch, sizeof cfg.arch, "resnet18");
    sx_tr_net *net = NULL;
    CHECK(sx_tr_net_new(&cfg, &net, &err) == SIAMIDX_OK);
    if (!net) return;
    int loaded = 0, skipped = 0;
    CHECK(sx_tr_net_load_init(net, path, &loaded, &skipped, &err) == SIAMIDX_OK);
    CHECK_MSG(loaded == net->n_tensors && skipped == 0, "loaded %d of %d tensors (%d skipped)",
              loaded, net->n_tensors, skipped);

    float *x = malloc(sizeof(float) * N * 3 * S * S);
    input_batch(x);
    int32_t labels[N];
    const char *lp = sx_safetensors_meta(&st, "labels");
    for (int i = 0; i < N; i++, lp = strchr(lp, ',') + 1) labels[i] = atoi(lp);
    sx_tr_stats stats;
    memset(net->grads, 0, net->n_params * sizeof(float));
    sx_tr_net_forward(net, x, N, labels, &stats);
    sx_tr_net_backward(net);

    double want = atof(sx_safetensors_meta(&st, "loss"));
    double want_ce = atof(sx_safetensors_meta(&st, "ce"));
    printf("%s: loss %.7f (PyTorch %.7f), ce %.7f (PyTorch %.7f)\n", fixture, stats.loss, want,
           stats.ce, want_ce);
    if (supcon_style) {
        double want_con = atof(sx_safetensors_meta(&st, "con"));
        CHECK_MSG(fabs(stats.con - want_con) <= 1e-3 * fabs(want_con), "contrastive %.7f vs %.7f",
                  stats.con, want_con);
    }
    CHECK_MSG(fabs(stats.loss - want) <= 1e-3 * fabs(want), "loss %.7f vs %.7f", stats.loss,
              want);

    double worst = 0;
    const char *worst_name = "";
    int n_grads = 0;
    char name[128];
    for (int i = 0; i < net->n_tensors; i++) {
        sx_tr_tensor *t = &net->tensors[i];
        float *got = t->kind == SX_TR_BUFFER ? net->bufs + t->off : net->grads + t->off;
        snprintf(name, sizeof name, "%s.%s", t->kind == SX_TR_BUFFER ? "after" : "grad", t->name);
        double e = compare(&st, name, got, t->numel);
        if (e > worst) worst = e, worst_name = t->name;
        n_grads += t->kind != SX_TR_BUFFER;
    }
    printf("%d gradients + running stats compared; worst relative error %.2e (%s)\n", n_grads,
           worst, worst_name);
    free(x);
    sx_tr_net_free(net);
    sx_safetensors_close(&st);
}

int main(void) {
    /* as train-encoder runs: OpenBLAS single-threaded, GEMMs split over OpenMP */
    openblas_set_num_threads(1);
    const char *dir = check_env_dir("SIAMIDX_TEST_DATA");
    check_step(dir, "step.safetensors", 0);
    check_step(dir, "step_supcon_style.safetensors", 1);
    CHECK_DONE();
}

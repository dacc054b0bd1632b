/*
 * test_train_resume.c - the new training state survives a stop and resume
 * bit for bit: a small ResNet-18 (width 1/16, 32x32 crops, batch 2) on the
 * fixture collections with CosFace, the processing augmentation and an EMA
 * of the weights, run for 6 steps straight and as 3 + resume 3 (across an
 * epoch end, so validation, the best model and the EMA's use are in it),
 * gives the same checkpoint tensors; a resume with another recipe, or from
 * a checkpoint without the recipe, is refused with a clear message.
 */
#include <math.h>
#include <stdint.h>
#include <unistd.h>

#include "check.h"
#include "base/threads.h"
#include "nn/safetensors.h"
#include "train/train_net.h"
#include "train/train_data.h"
#include "train/trainer.h"
#include "train/train_augment.h"
#include "base/error.h"
#include "test_train_fixture.h"

void openblas_set_num_threads(int n);

static char csv_a[4096], csv_b[4096];
static const char *colls[2];
static sx_tr_augment processing = {0.3f, 0.3f, 0.3f, 0.3f};

static sx_tr_options options(const char *out, const char *ckpt) {
    sx_tr_options o;
    memset(&o, 0, sizeof o);
    snprintf(o.net.arch, sizeof o.net.arch, "resnet18");
    o.net.width = 0.0625f;
    o.net.input = 32;
    o.net.max_batch = 2;
    o.net.objective = SX_TR_COSFACE;
    o.net.cos_margin = 0.35f;
    o.net.cos_scale = 30.0f;
    o.net.label_smoothing = 0.1f;
    o.net.freeze_through = -1;
    o.collections = colls;
    o.n_collections = 2;
    o.collection = "a + b";
    o.output = out;
    o.checkpoint = ckpt;
    o.augment = &processing;
    o.cache_bytes = 1 << 20;
    o.ema_decay = 0.9f;
    o.epochs = 3;
    o.resize = 64;
    o.lr = 1e-3f;
    o.weight_decay = 0.05f;
    o.warmup_epochs = 0.5f;
    o.min_lr_ratio = 0.01f;
    o.balance = 0.5f;
    o.val_fraction = 0.1f;
    o.log_seconds = 1000;
    o.seed = 3;
    o.zero_residual = 1;
    return o;
}

/* Every tensor of a equals b's, byte for byte; returns how many were compared. */
static int same_tensors(const char *pa, const char *pb) {
    sx_safetensors a, b;
    siamidx_error err;
    if (sx_safetensors_open(pa, &a, &err) || sx_safetensors_open(pb, &b, &err)) {
        CHECK_MSG(0, "%s", err.message);
        return 0;
    }
    int n = 0, ema = 0;
    for (size_t i = 0; i < a.n_tensors; i++) {
        const sx_tensor_info *ta = &a.tensors[i], *tb = sx_safetensors_find(&b, ta->name);
        CHECK_MSG(tb != NULL, "%s lacks %s", pb, ta->name);
        if (!tb) continue;
        size_t k = (size_t)sx_tensor_numel(ta);
        float *va = malloc(k * sizeof(float)), *vb = malloc(k * sizeof(float));
        sx_safetensors_read_f32(&a, ta, va);
        sx_safetensors_read_f32(&b, tb, vb);
        CHECK_MSG(!memcmp(va, vb, k * sizeof(float)), "tensor %s differs after resume", ta->name);
        free(va), free(vb);
        n++;
        ema += !strncmp(ta->name, "ema.", 4);
    }
    CHECK_MSG(ema > 0, "no ema.* tensors in the checkpoint");
    const char *keys[] = {"checkpoint_epoch", "checkpoint_step", "checkpoint_global_step",
                          "checkpoint_best_score", "training_recipe"};
    /* (not training_history: an epoch's train-loss average covers only the
     * steps of the run that finished it) */
    for (int i = 0; i < 5; i++) {
        const char *ma = sx_safetensors_meta(&a, keys[i]), *mb = sx_safetensors_meta(&b, keys[i]);
        CHECK_MSG(ma && mb && !strcmp(ma, mb), "%s: %s vs %s", keys[i], ma ? ma : "-",
                  mb ? mb : "-");
    }
    sx_safetensors_close(&a);
    sx_safetensors_close(&b);
    return n;
}

int main(void) {
    const char *data_dir = check_env_dir("SIAMIDX_TEST_DATA");
    const char *tmp = fixture_tmp();
    snprintf(csv_a, sizeof csv_a, "%s/resume_a.csv", tmp);
    snprintf(csv_b, sizeof csv_b, "%s/resume_b.csv", tmp);
    fixture_csv(csv_a, data_dir, FIXTURE_A, 6);
    fixture_csv(csv_b, data_dir, FIXTURE_B, 6);
    colls[0] = csv_a, colls[1] = csv_b;
    /* bit for bit needs one thread count: the GEMM splits depend on it */
    openblas_set_num_threads(1);
    sx_threads_set(1);

    char m1[4200], c1[4200], m2[4200], c2[4200];
    snprintf(m1, sizeof m1, "%s/resume_straight.safetensors", tmp);
    snprintf(c1, sizeof c1, "%s/resume_straight.ckpt", tmp);
    snprintf(m2, sizeof m2, "%s/resume_split.safetensors", tmp);
    snprintf(c2, sizeof c2, "%s/resume_split.ckpt", tmp);
    siamidx_error err;

    sx_tr_options o = options(m1, c1);
    o.max_steps = 6;
    CHECK(sx_train_encoder(&o, &err) == SIAMIDX_ERR_INTERRUPTED);

    o = options(m2, c2);
    o.max_steps = 3;
    CHECK(sx_train_encoder(&o, &err) == SIAMIDX_ERR_INTERRUPTED);
    o.resume = c2;
    CHECK(sx_train_encoder(&o, &err) == SIAMIDX_ERR_INTERRUPTED);
    int n = same_tensors(c1, c2);
    printf("%d checkpoint tensors identical after 6 steps straight and 3 + resume 3\n", n);
    CHECK(n > 100);
    CHECK(access(m1, F_OK) == 0); /* an epoch ended: the best (EMA) model was written */

    /* another recipe: refused, and the checkpoint is untouched */
    sx_tr_augment none = {0};
    o = options(m2, c2);
    o.resume = c2;
    o.max_steps = 1;
    o.augment = &none;
    CHECK(sx_train_encoder(&o, &err) == SIAMIDX_ERR_INVALID_ARGUMENT);
    printf("other recipe: %s\n", err.message);
    CHECK(strstr(err.message, "another recipe") != NULL);
    o.augment = &processing;
    o.net.cos_margin = 0.2f;
    CHECK(sx_train_encoder(&o, &err) == SIAMIDX_ERR_INVALID_ARGUMENT);

    /* a checkpoint without the recipe (an older siamidx): refused by format */
    sx_safetensors st;
    CHECK(sx_safetensors_open(c2, &st, &err) == SIAMIDX_OK);
    sx_meta_entry meta[64];
    size_t nm = 0;
    for (size_t i = 0; i < st.n_meta && nm < 64; i++)
        if (strcmp(st.meta[i].key, "checkpoint_format")) meta[nm++] = st.meta[i];
    sx_tensor_out *ts = calloc(st.n_tensors, sizeof *ts);
    float **data = calloc(st.n_tensors, sizeof *data);
    for (size_t i = 0; i < st.n_tensors; i++) {
        const sx_tensor_info *t = &st.tensors[i];
        data[i] = malloc((size_t)sx_tensor_numel(t) * sizeof(float));
        sx_safetensors_read_f32(&st, t, data[i]);
        ts[i].name = t->name;
        ts[i].data = data[i];
        ts[i].ndim = t->ndim;
        for (int d = 0; d < t->ndim; d++) ts[i].shape[d] = t->shape[d];
    }
    char old[4200];
    snprintf(old, sizeof old, "%s/resume_old.ckpt", tmp);
    CHECK(sx_safetensors_write(old, meta, nm, ts, st.n_tensors, SX_F32, &err) == SIAMIDX_OK);
    for (size_t i = 0; i < st.n_tensors; i++) free(data[i]);
    free(data), free(ts);
    sx_safetensors_close(&st);
    o.net.cos_margin = 0.35f;
    o.resume = old;
    CHECK(sx_train_encoder(&o, &err) == SIAMIDX_ERR_MODEL_FORMAT);
    printf("old checkpoint: %s\n", err.message);
    CHECK(strstr(err.message, "start the run again") != NULL);
    CHECK_DONE();
}

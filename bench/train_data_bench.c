/*
 * train_data_bench.c - what the levers of train-encoder cost outside the
 * network (docs/training.md, Speed):
 *  - the producer's time per batch (decode from the cache, crop, flip, and
 *    the processing augmentation at p = 0, 0.3, 1), one thread, as in
 *    training, over real collections;
 *  - the loss head's forward + backward: fc + softmax cross-entropy
 *    against CosFace, at the trainer's batch, embedding and class counts.
 *
 * usage: train_data_bench [--batches N] [--input S] COLLECTION...
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/threads.h"
#include "train/train_net.h"
#include "train/train_data.h"
#include "train/train_layers.h"
#include "train/train_augment.h"
#include "base/error.h"

void openblas_set_num_threads(int n);

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ms per batch of B over `batches` batches drawn as epoch 0 draws them */
static double producer_ms(sx_tr_data *d, const int *order, int batches, int B, int S,
                          const sx_tr_augment *aug, float *x, int32_t *labels) {
    double t0 = now_s();
    for (int b = 0; b < batches; b++) {
        sx_tr_job job = {.data = d, .entries = order + (size_t)b * B, .n = B, .input = S,
                         .augment = 1, .key = sx_tr_hash(1, 0xBA7C, 0, (uint64_t)b),
                         .processing = aug, .x = x, .labels = labels,
                         .mean = {0.485f, 0.456f, 0.406f}, .std = {0.229f, 0.224f, 0.225f}};
        sx_tr_job_start(&job);
        sx_tr_job_wait(&job);
    }
    return (now_s() - t0) * 1000.0 / batches;
}

static void loss_heads(int B, int D, int C) {
    float *x = malloc(sizeof(float) * B * D), *w = malloc(sizeof(float) * C * D);
    float *bias = calloc(C, sizeof(float)), *z = malloc(sizeof(float) * B * C);
    float *dz = malloc(sizeof(float) * B * C), *dx = malloc(sizeof(float) * B * D);
    float *dw = calloc((size_t)C * D, sizeof(float)), *db = calloc(C, sizeof(float));
    float *ws = malloc(sizeof(float) * sx_tr_cosface_ws_floats(B, D, C));
    float *scratch = malloc(sizeof(float) * C * D);
    int32_t *labels = malloc(sizeof(int32_t) * B);
    for (int i = 0; i < B * D; i++) x[i] = (float)((i * 7919) % 1000) / 1000.0f;
    for (int i = 0; i < C * D; i++) w[i] = (float)((i * 104729) % 2000) / 1000.0f - 1.0f;
    for (int i = 0; i < B; i++) labels[i] = (i * 37) % C;
    const int reps = 200;
    double t0 = now_s();
    for (int r = 0; r < reps; r++) {
        sx_tr_linear_forward(B, D, C, x, w, bias, z);
        sx_tr_softmax_ce(B, C, z, labels, 0.1f, dz, NULL);
        sx_tr_linear_backward(B, D, C, x, w, dz, dw, db, dx);
    }
    double fc = (now_s() - t0) * 1000.0 / reps;
    t0 = now_s();
    for (int r = 0; r < reps; r++) {
        sx_tr_cosface_forward(B, D, C, x, w, labels, 30.0f, 0.35f, ws, z);
        sx_tr_softmax_ce(B, C, z, labels, 0.1f, dz, NULL);
        sx_tr_cosface_backward(B, D, C, ws, dz, 30.0f, dw, dx, scratch);
    }
    double cf = (now_s() - t0) * 1000.0 / reps;
    printf("loss head, batch %d, %d-d, %d classes, forward + backward: fc + CE %.3f ms, "
           "cosface + CE %.3f ms\n", B, D, C, fc, cf);
    free(x), free(w), free(bias), free(z), free(dz), free(dx), free(dw), free(db), free(ws);
    free(scratch), free(labels);
}

int main(int argc, char **argv) {
    int batches = 40, S = 128, B = 32, first = 1;
    while (first < argc && argv[first][0] == '-') {
        if (!strcmp(argv[first], "--batches") && first + 1 < argc) batches = atoi(argv[++first]);
        else if (!strcmp(argv[first], "--input") && first + 1 < argc) S = atoi(argv[++first]);
        else break;
        first++;
    }
    if (first >= argc) {
        fprintf(stderr, "usage: %s [--batches N] [--input S] COLLECTION...\n", argv[0]);
        return 2;
    }
    openblas_set_num_threads(1);
    sx_threads_set(1);
    sx_tr_data_cfg cfg = {.collections = (const char *const *)argv + first,
                          .n_collections = argc - first, .val_fraction = 0.1, .balance = 0.5,
                          .seed = 1, .scale = 224, .cache_bytes = (size_t)4 << 30};
    sx_tr_data d;
    siamidx_error err;
    if (sx_tr_data_open(&cfg, &d, &err)) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    int *order = malloc(sizeof(int) * d.n_train);
    sx_tr_data_epoch(&d, 1, 0, 0, 0, 0, order);
    if (batches * B > d.n_train) batches = d.n_train / B;
    float *x = malloc(sizeof(float) * B * 3 * S * S);
    int32_t *labels = malloc(sizeof(int32_t) * B);
    sx_tr_augment none = {0}, some = {0.3f, 0.3f, 0.3f, 0.3f}, all = {1, 1, 1, 1};
    double cold = producer_ms(&d, order, batches, B, S, &none, x, labels);
    printf("producer, batch %d, crop %d, %d batches: first pass (decoding) %.1f ms/batch\n", B,
           S, batches, cold);
    const struct {
        const char *name;
        const sx_tr_augment *a;
    } v[3] = {{"no processing", &none}, {"--augment processing (p 0.3)", &some},
              {"all four transforms (p 1)", &all}};
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < 3; i++)
            printf("producer, cached, %-30s %.1f ms/batch\n", v[i].name,
                   producer_ms(&d, order, batches, B, S, v[i].a, x, labels));
    const sx_tr_augment one[4] = {{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}};
    const char *names[4] = {"squash", "down-up", "posterize", "jpeg"};
    for (int i = 0; i < 4; i++)
        printf("producer, cached, only %-25s %.1f ms/batch\n", names[i],
               producer_ms(&d, order, batches, B, S, &one[i], x, labels));
    loss_heads(B, 512, d.n_artists);
    loss_heads(B, 256, d.n_artists);
    free(order), free(x), free(labels);
    sx_tr_data_close(&d);
    return 0;
}

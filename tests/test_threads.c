/*
 * test_threads.c - siamidx_set_threads is process-wide (issue 8): a count set
 * in one thread is the team size of the library's OpenMP regions in another
 * thread, and OpenBLAS's count follows it too.
 *
 * Before the fix siamidx_set_threads called omp_set_num_threads, which sets
 * the calling thread's ICV only: a second pthread still saw OpenMP's default
 * (the number of cores), not the count that was set.
 *
 * Then reads of one model from several threads at once: its Winograd
 * weights are made by whichever forward pass needs them first
 * (sx_model_winograd_ready); every thread's output must equal the direct
 * path's, and the weights must be made once. Under ThreadSanitizer (the
 * "threads" label) this is the check that the lazy transform is published
 * safely.
 */
#include <omp.h>
#include <pthread.h>

#include "check.h"
#include "siamidx.h"
#include "base/threads.h"
#include "train/train_layers.h"
#include "nn/model.h"
#include "fixture_model.h"
#include <math.h>
#include <stdlib.h>

int openblas_get_num_threads(void);

typedef struct seen {
    int library_count; /* sx_threads() */
    int team;          /* the team a library-style region got */
    int blas;          /* openblas_get_num_threads() */
    float pooled[2];   /* a real kernel run from this thread */
} seen;

static void *observe(void *arg) {
    seen *s = arg;
    s->library_count = sx_threads();
    int team = 0;
#pragma omp parallel num_threads(sx_threads())
    {
#pragma omp single
        team = omp_get_num_threads();
    }
    s->team = team;
    s->blas = openblas_get_num_threads();
    /* the average pool of 2 channels over 1 image of 4 pixels, parallel over channels */
    const float in[8] = {1, 2, 3, 4, 10, 20, 30, 40};
    sx_tr_avgpool_forward(2, 1, 4, in, s->pooled);
    return NULL;
}

static void check_from_other_thread(int want) {
    siamidx_set_threads(want);
    seen s = {0};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, observe, &s) == 0);
    pthread_join(t, NULL);
    printf("set %d in main: other thread sees library %d, team %d, OpenBLAS %d\n", want,
           s.library_count, s.team, s.blas);
    CHECK_MSG(s.library_count == want, "sx_threads() in a second thread: %d, set %d",
              s.library_count, want);
    /* OMP_THREAD_LIMIT (the ThreadSanitizer step sets 1) caps every team. */
    int team_want = want < omp_get_thread_limit() ? want : omp_get_thread_limit();
    CHECK_MSG(s.team == team_want, "team in a second thread: %d, set %d (thread limit %d)",
              s.team, want, omp_get_thread_limit());
    CHECK_MSG(s.blas == want, "OpenBLAS threads in a second thread: %d, set %d", s.blas, want);
    CHECK(s.pooled[0] == 2.5f && s.pooled[1] == 25.0f);
}

enum { READERS = 4, IMAGES = 2, SIDE = 64 };

typedef struct reader {
    const siamidx_model *model;
    const float *x;
    size_t dim;
    float *out;
    siamidx_status status;
} reader;

static void *read_model(void *arg) {
    reader *r = arg;
    siamidx_error err;
    r->status = siamidx_forward_tensor(r->model, r->x, IMAGES, SIDE, SIDE, SIAMIDX_OUTPUT_POOLED,
                                       r->out, &err);
    return NULL;
}

static void check_shared_model(void) {
    const char *data = getenv("SIAMIDX_TEST_DATA");
    if (!data) {
        printf("SIAMIDX_TEST_DATA is not set: the shared-model check is skipped\n");
        return;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/model/tiny_resnet18.safetensors", data);
    siamidx_model *direct = NULL, *shared = NULL;
    siamidx_error err;
    setenv("SIAMIDX_WINOGRAD", "0", 1);
    CHECK(siamidx_model_load(path, &direct, &err) == SIAMIDX_OK);
    unsetenv("SIAMIDX_WINOGRAD");
    CHECK(siamidx_model_load(path, &shared, &err) == SIAMIDX_OK);
    if (!direct || !shared) return;
    size_t dim = siamidx_model_dim(shared, SIAMIDX_POOL_AVG);
    float *x = fx_input(IMAGES, SIDE, SIDE, 7), *want = calloc(IMAGES * dim, sizeof *want);
    CHECK(siamidx_forward_tensor(direct, x, IMAGES, SIDE, SIDE, SIAMIDX_OUTPUT_POOLED, want,
                                 &err) == SIAMIDX_OK);
    CHECK_MSG(shared->n_wino > 0 && sx_model_winograd_made(shared) == 0,
              "the model marks convs for Winograd and transforms nothing at load");
    reader r[READERS];
    pthread_t t[READERS];
    for (int i = 0; i < READERS; i++) {
        r[i] = (reader){shared, x, dim, calloc(IMAGES * dim, sizeof(float)), SIAMIDX_ERR_INTERRUPTED};
        CHECK(pthread_create(&t[i], NULL, read_model, &r[i]) == 0);
    }
    double worst = 0, scale = 1e-3;
    for (size_t j = 0; j < IMAGES * dim; j++) scale = fmax(scale, fabs(want[j]));
    for (int i = 0; i < READERS; i++) {
        pthread_join(t[i], NULL);
        CHECK_MSG(r[i].status == SIAMIDX_OK, "reader %d: status %d", i, (int)r[i].status);
        for (size_t j = 0; j < IMAGES * dim; j++)
            worst = fmax(worst, fabs(r[i].out[j] - want[j]) / scale);
        free(r[i].out);
    }
    printf("%d threads on one model: Winograd weights of %d of %d convs made, worst relative "
           "difference from the direct path %.2e\n", READERS, sx_model_winograd_made(shared),
           shared->n_wino, worst);
    /* with packed weights the path runs at any thread count; on the BLAS
       path only with one OpenBLAS thread (not the case here) */
    CHECK_MSG((sx_model_winograd_made(shared) > 0) == (shared->cpu != SX_CPU_BLAS),
              "the Winograd weights were made (%d convs) when the kernels take them",
              sx_model_winograd_made(shared));
    CHECK_MSG(worst < 1e-4, "Winograd from %d threads against direct: %.3g", READERS, worst);
    free(x), free(want);
    siamidx_model_free(direct);
    siamidx_model_free(shared);
}

int main(void) {
    /* counts that differ from OpenMP's default (the core count) in both directions */
    int cores = omp_get_num_procs();
    check_from_other_thread(cores + 1);
    check_from_other_thread(1);
    check_from_other_thread(cores > 1 ? cores : 2);
    siamidx_set_threads(2);
    check_shared_model();
    CHECK_DONE();
}

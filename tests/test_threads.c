/*
 * test_threads.c - siamidx_set_threads is process-wide (issue 8): a count set
 * in one thread is the team size of the library's OpenMP regions in another
 * thread, and OpenBLAS's count follows it too.
 *
 * Before the fix siamidx_set_threads called omp_set_num_threads, which sets
 * the calling thread's ICV only: a second pthread still saw OpenMP's default
 * (the number of cores), not the count that was set.
 */
#include <omp.h>
#include <pthread.h>

#include "check.h"
#include "siamidx.h"
#include "base/threads.h"
#include "train/train_layers.h"

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

int main(void) {
    /* counts that differ from OpenMP's default (the core count) in both directions */
    int cores = omp_get_num_procs();
    check_from_other_thread(cores + 1);
    check_from_other_thread(1);
    check_from_other_thread(cores > 1 ? cores : 2);
    CHECK_DONE();
}

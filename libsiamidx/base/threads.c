/*
 * threads.c - the library's one thread count (see threads.h for why it is
 * process-wide and not OpenMP's per-thread ICV).
 */
#include <omp.h>
#include <stdatomic.h>

#include "base/threads.h"

/*
 * OpenBLAS threads the convolutions' GEMMs; OpenMP threads the small passes
 * (pooling) and the convolutions of callers that keep OpenBLAS single-threaded
 * (see conv.c for why the two never run at once there).
 */
static _Atomic int library_threads; /* 0: never set */

int sx_threads(void) {
    int n = atomic_load_explicit(&library_threads, memory_order_relaxed);
    return n > 0 ? n : omp_get_max_threads();
}

void sx_threads_set(int n) {
    if (n <= 0) n = omp_get_num_procs();
    atomic_store_explicit(&library_threads, n, memory_order_relaxed);
}


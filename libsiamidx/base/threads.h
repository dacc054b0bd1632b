/*
 * threads.h - the library's one thread count (set by siamidx_set_threads).
 *
 * omp_set_num_threads() sets an ICV of the *calling* thread only: a caller's
 * worker threads and the library's own producer threads would keep
 * OpenMP's default. So the count lives in one process-wide atomic, and every
 * OpenMP region of the library asks for its team with
 * `num_threads(sx_threads())`.
 */
#ifndef SIAMIDX_THREADS_H
#define SIAMIDX_THREADS_H

/* The team size for the library's parallel regions: the count last given to
 * sx_threads_set / siamidx_set_threads, or OpenMP's default for the calling
 * thread when none was given. Always >= 1. */
int sx_threads(void);
/* Sets the count for every thread (n <= 0: all cores). OpenBLAS's own
 * thread count is left alone (siamidx_set_threads sets it too). */
void sx_threads_set(int n);

#endif

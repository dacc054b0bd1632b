/*
 * stem_bench.c - the ResNet stem (7x7, stride 2, pad 3) three ways, one
 * thread, on the shapes of training (CNHW, batch 32, 128 px, 32 channels:
 * resnet18 width 0.5) and inference (NCHW, batch 16, 224 px, 64 channels):
 *   blas:    im2col + OpenBLAS sgemm (conv.c without packed weights)
 *   direct:  nn/stem.c on AVX2 and, where the CPU has it, AVX-512
 * and the weight gradient of the training shape the same two ways
 * (the packed-GEMM path with implicit im2col is what sx_conv_run takes
 * for packed non-stem convs; a stem never takes it now).
 *
 *   cmake --build build --target stem_bench && build/stem_bench [ROUNDS]
 *
 * Times are the thread's CPU time (CLOCK_THREAD_CPUTIME_ID), best of the
 * rounds, the ways interleaved, so that a shared machine's steal hurts all
 * alike; the largest difference from the blas output is printed too.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "nn/conv.h"
#include "nn/cpu.h"
#include "nn/gemm.h"
#include "nn/stem.h"
#include "base/threads.h"

void openblas_set_num_threads(int);

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static float *randv(size_t n, unsigned seed) {
    float *v = aligned_alloc(64, ((n * sizeof(float)) + 63) & ~(size_t)63);
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        v[i] = (float)(seed >> 8) / 16777216.0f - 0.5f;
    }
    return v;
}

/* One line per way: best time, GFLOP/s, speed-up over blas, difference from blas. */
static void print_ways(const double best[3], const double diff[3], double flop, const char *what) {
    const char *names[] = {"blas (im2col + sgemm)", "direct avx2", "direct avx512"};
    for (int p = 0; p < 3; p++) {
        if (best[p] >= 1e30) {
            printf("  %-22s  (not on this CPU)\n", names[p]);
            continue;
        }
        printf("  %-22s %8.2f ms  %6.1f GFLOP/s  %.2fx blas  %s %.2e\n", names[p], best[p] * 1e3,
               flop / best[p] * 1e-9, best[0] / best[p], what, diff[p]);
    }
}

static void run_shape(const char *label, int cout, int n, int s, int in_nchw, int rounds) {
    sx_conv c = {.cin = 3, .cout = cout, .k = 7, .stride = 2, .pad = 3};
    int ho, wo;
    sx_conv_out_size(&c, s, s, &ho, &wo);
    size_t out_n = (size_t)cout * n * ho * wo;
    float *in = randv((size_t)3 * n * s * s, 1), *w = randv((size_t)cout * 147, 2);
    c.w = w;
    c.b = randv((size_t)cout, 7); /* conv.c's OpenBLAS path adds a bias */
    float *ref = randv(out_n, 3), *out = randv(out_n, 4);
    float *col = randv(sx_conv_col_floats(&c, n, s, s), 5);
    sx_cpu_path paths[] = {SX_CPU_AVX2, SX_CPU_AVX512};
    double best[3] = {1e30, 1e30, 1e30}, diff[3] = {0, 0, 0};
    float *work = randv(sx_stem_work_floats(&c, s), 6);
    for (int r = 0; r < rounds; r++) {
        double t0 = now();
        sx_conv_run(&c, in, in_nchw, n, s, s, col, ref, 0, 0);
        double t = now() - t0;
        if (t < best[0]) best[0] = t;
        for (int p = 0; p < 2; p++) {
            if (!sx_cpu_supports(paths[p])) continue;
            t0 = now();
            sx_stem_run(&c, paths[p], in, in_nchw, n, s, s, work, out, 0, 0);
            t = now() - t0;
            if (t < best[1 + p]) best[1 + p] = t;
            for (size_t i = 0; i < out_n; i++)
                if (fabs(out[i] - ref[i]) > diff[1 + p]) diff[1 + p] = fabs(out[i] - ref[i]);
        }
    }
    double flop = 2.0 * out_n * 147;
    printf("%s: cout %d, batch %d, %d px, %s\n", label, cout, n, s, in_nchw ? "NCHW" : "CNHW");
    print_ways(best, diff, flop, "max |diff|");
    free(in), free(w), free(ref), free(out), free(col), free(work), free(c.b);
}

/* The weight gradient on the training shape: im2col + OpenBLAS
 * (dout x col^T, as conv_grad.c without a kernel) against nn/stem.c. */
static void run_weight_grad(int rounds) {
    sx_conv c = {.cin = 3, .cout = 32, .k = 7, .stride = 2, .pad = 3};
    const int n = 32, s = 128;
    int ho, wo;
    sx_conv_out_size(&c, s, s, &ho, &wo);
    size_t m = (size_t)n * ho * wo, w_n = (size_t)c.cout * 147;
    float *in = randv((size_t)3 * n * s * s, 1), *dout = randv((size_t)c.cout * m, 2);
    float *col = randv(147 * m, 3), *ref = randv(w_n, 4), *dw = randv(w_n, 5);
    float *work = randv(sx_stem_weight_grad_floats(&c, s), 6);
    sx_cpu_path paths[] = {SX_CPU_AVX2, SX_CPU_AVX512};
    double best[3] = {1e30, 1e30, 1e30}, diff[3] = {0, 0, 0};
    for (int r = 0; r < rounds; r++) {
        double t0 = now();
        sx_conv_im2col(&c, in, n, s, s, 0, m, col, m);
        memset(ref, 0, w_n * sizeof *ref);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c.cout, 147, (int)m, 1.0f, dout,
                    (int)m, col, (int)m, 1.0f, ref, 147);
        double t = now() - t0;
        if (t < best[0]) best[0] = t;
        for (int p = 0; p < 2; p++) {
            if (!sx_cpu_supports(paths[p])) continue;
            memset(dw, 0, w_n * sizeof *dw);
            t0 = now();
            sx_stem_weight_grad(&c, paths[p], in, dout, n, s, s, work, dw);
            t = now() - t0;
            if (t < best[1 + p]) best[1 + p] = t;
            for (size_t i = 0; i < w_n; i++) {
                double d = fabs(dw[i] - ref[i]) / (fabs(ref[i]) + 1e-3);
                if (d > diff[1 + p]) diff[1 + p] = d;
            }
        }
    }
    double flop = 2.0 * c.cout * 147 * m;
    printf("weight gradient: cout %d, batch %d, %d px, CNHW\n", c.cout, n, s);
    print_ways(best, diff, flop, "max rel diff");
    free(in), free(dout), free(col), free(ref), free(dw), free(work);
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 5;
    openblas_set_num_threads(1);
    sx_threads_set(1);
    run_shape("training", 32, 32, 128, 0, rounds);
    run_shape("inference", 64, 16, 224, 1, rounds);
    run_weight_grad(rounds);
    return 0;
}

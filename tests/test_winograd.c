/*
 * test_winograd.c - the Winograd 3x3 convolutions (nn/winograd.c) against the
 * im2col + GEMM convolution of conv.c (itself checked against naive loops by
 * test_conv), for F(2x2,3x3) and F(4x4,3x3): sizes that are not multiples of
 * the tile, 1x1 and 1xW images, batches of 1 and 3, rows wider than one stack
 * chunk of tiles, layers big enough for several tile blocks, ReLU and the
 * residual accumulate, in every threading mode the kernels have, with the
 * GEMMs on cblas (row-major U) and on every project kernel this CPU runs
 * (U packed for it: AVX2, and AVX-512 where present, including the 14-row
 * panels whose last one has padding rows); the mirrored transform (training's
 * input gradient) in both layouts; then when it applies and the
 * SIAMIDX_WINOGRAD switch.
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "test_rand.h"
#include "nn/conv.h"
#include "nn/cpu.h"
#include "nn/gemm.h"
#include "nn/winograd.h"

void openblas_set_num_threads(int);

/* Largest |a - b| over the largest |b| (at least 1e-3). */
static double max_rel_err(const float *a, const float *b, size_t n) {
    double worst = 0, scale = 1e-3;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(b[i]));
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs(a[i] - b[i]) / scale);
    return worst;
}

/*
 * One 3x3/1 convolution cin -> cout on n images of h x w (CNHW): Winograd with
 * tile m against the direct path, plain, with ReLU, and accumulating onto a
 * residual. Returns the worst relative error seen.
 */
static void *alloc_aligned_floats(size_t n) {
    return aligned_alloc(64, ((n ? n : 1) * sizeof(float) + 63) & ~(size_t)63);
}

/* The GEMM path under test: SX_CPU_BLAS (cblas), or a kernel of nn/gemm.h. */
static sx_cpu_path g_path = SX_CPU_BLAS;

static double check_case(int m, int cin, int cout, int n, int h, int w, double tol) {
    sx_conv c = {.cin = cin, .cout = cout, .k = 3, .stride = 1, .pad = 1};
    c.w = rand_floats((size_t)cout * cin * 9, sqrtf(3.0f / (cin * 9)));
    c.b = rand_floats((size_t)cout, 0.1f);
    size_t in_n = (size_t)cin * n * h * w, out_n = (size_t)cout * n * h * w;
    float *x = rand_floats(in_n, 1.0f), *res = rand_floats(out_n, 1.0f);
    float *ref = malloc(out_n * sizeof *ref), *got = malloc(out_n * sizeof *got);
    size_t col_n = sx_conv_col_floats(&c, n, h, w);
    float *col = malloc((col_n ? col_n : 1) * sizeof *col);

    sx_conv wc = c;
    wc.gemm = sx_gemm_kernel_for(g_path, cout);
    float *u = malloc(sx_winograd_weight_floats(&wc, m) * sizeof *u);
    sx_winograd_prepare(&wc, m, u);
    CHECK(wc.wino == u && wc.wino_m == m);
    size_t ws_n = sx_winograd_workspace_floats(&wc, n, h, w);
    CHECK(ws_n > 0);
    float *ws = alloc_aligned_floats(ws_n);

    double worst = 0;
    for (int mode = 0; mode < 3; mode++) { /* plain, ReLU, ReLU(x + residual) */
        int relu = mode > 0, acc = mode == 2;
        memcpy(ref, res, out_n * sizeof *ref);
        memcpy(got, res, out_n * sizeof *got);
        sx_conv_run(&c, x, 0, n, h, w, col, ref, relu, acc);
        sx_winograd_run(&wc, x, n, h, w, ws, NULL, got, relu, acc);
        double e = max_rel_err(got, ref, out_n);
        worst = fmax(worst, e);
        CHECK_MSG(e < tol, "%s F(%dx%d) %d->%d n%d %dx%d relu %d acc %d: error %g (limit %g)",
                  sx_cpu_path_name(g_path), m, m, cin, cout, n, h, w, relu, acc, e, tol);
    }
    free(c.w), free(c.b), free(x), free(res), free(ref), free(got), free(col), free(u), free(ws);
    return worst;
}

static double check_cases(int m) {
    /* F(4x4) has the larger transform constants, so the larger rounding error. */
    double tol = m == 2 ? 1e-5 : 1e-4, worst = 0;
    int cases[][5] = {
        /* cin, cout, n, h, w */
        {4, 6, 1, 6, 6},       /* one F(4) tile row plus a partial one */
        {5, 7, 3, 7, 9},       /* h, w not multiples of 2 or 4 */
        {3, 5, 1, 1, 1},       /* 1x1 image: only the centre tap */
        {6, 4, 3, 1, 5},       /* one output row */
        {8, 3, 2, 5, 1},       /* one output column */
        {3, 4, 1, 5, 301},     /* rows wider than one stack chunk of tiles */
        {64, 48, 1, 13, 11},   /* deeper sums */
        {128, 128, 3, 50, 50}, /* several tile blocks, the last one partial */
        {72, 100, 2, 9, 9},    /* AVX-512's 14-row panels: 100 = 7 x 14 + 2 */
        {32, 16, 2, 16, 16},   /* four F(4) tiles a row: quads paired across patch rows */
        {5, 3, 1, 9, 23},      /* six a row: a quad paired across rows, two single tiles */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int *k = cases[i];
        worst = fmax(worst, check_case(m, k[0], k[1], k[2], k[3], k[4], tol));
    }
    return worst;
}

/* When Winograd applies, and a workspace planned for batch n serves smaller batches. */
static void check_dispatch(void) {
    sx_conv c = {.cin = 16, .cout = 8, .k = 3, .stride = 1, .pad = 1};
    c.w = rand_floats((size_t)8 * 16 * 9, 0.1f);
    c.b = rand_floats(8, 0.1f);
    float *u = malloc(sx_winograd_weight_floats(&c, 4) * sizeof *u);
    sx_conv wc = c;
    CHECK(!sx_winograd_applies(&wc, 1, 20, 20)); /* no Winograd weights */
    sx_winograd_prepare(&wc, 4, u);
    CHECK(sx_winograd_applies(&wc, 1, 20, 20));
    CHECK(!sx_winograd_applies(&wc, 1, 3, 3)); /* one tile: direct is faster */
    sx_conv s2 = wc, k1 = wc;
    s2.stride = 2;
    k1.k = 1, k1.pad = 0;
    CHECK(!sx_winograd_applies(&s2, 4, 20, 20) && !sx_winograd_applies(&k1, 4, 20, 20));
    CHECK(sx_winograd_weight_floats(&s2, 4) == 0 && sx_winograd_weight_floats(&c, 0) == 0);
    CHECK(sx_winograd_weight_floats(&c, 2) == (size_t)16 * 8 * 16);

    int n = 3, h = 21, w = 17;
    size_t ws_n = sx_winograd_workspace_floats(&wc, n, h, w), col_n = sx_conv_col_floats(&c, n, h, w);
    float *ws = malloc(ws_n * sizeof *ws), *col = malloc(col_n * sizeof *col);
    size_t out_n = (size_t)8 * n * h * w;
    float *x = rand_floats((size_t)16 * n * h * w, 1.0f);
    float *ref = malloc(out_n * sizeof *ref), *got = malloc(out_n * sizeof *got);
    for (int b = 1; b <= n; b++) { /* the batch planned for, and smaller ones */
        size_t cnt = (size_t)8 * b * h * w;
        CHECK(sx_winograd_workspace_floats(&wc, b, h, w) <= ws_n);
        float *xb = malloc((size_t)16 * b * h * w * sizeof *xb);
        for (int ch = 0; ch < 16; ch++)
            memcpy(xb + (size_t)ch * b * h * w, x + (size_t)ch * n * h * w,
                   (size_t)b * h * w * sizeof *xb);
        sx_conv_run(&c, xb, 0, b, h, w, col, ref, 1, 0);
        sx_winograd_run(&wc, xb, b, h, w, ws, NULL, got, 1, 0);
        double e = max_rel_err(got, ref, cnt);
        CHECK_MSG(e < 1e-4, "batch %d: error %g", b, e);
        free(xb);
    }
    free(c.w), free(c.b), free(u), free(ws), free(col), free(x), free(ref), free(got);
}

/*
 * The mirrored transform in a kernel's layout runs the convolution that
 * gives the input gradient: the same as the row-major one run on cblas
 * (cin != cout, so the two kernels' rows differ).
 */
static void check_mirrored(void) {
    int cin = 100, cout = 24, n = 2, h = 10, w = 11, m = 4;
    sx_conv c = {.cin = cin, .cout = cout, .k = 3, .stride = 1, .pad = 1, .wino_m = m};
    c.w = rand_floats((size_t)cout * cin * 9, 0.1f);
    sx_conv t = {.cin = cout, .cout = cin, .k = 3, .stride = 1, .pad = 1, .wino_m = m};
    sx_conv tk = t;
    tk.gemm = sx_gemm_kernel_for(g_path, cin);
    float *u = malloc(sx_winograd_mirrored_weight_floats(&c, m, NULL) * sizeof *u);
    float *uk = malloc(sx_winograd_mirrored_weight_floats(&c, m, tk.gemm) * sizeof *uk);
    CHECK(sx_winograd_mirrored_weight_floats(&c, m, NULL) == (size_t)36 * cin * cout);
    sx_winograd_prepare_mirrored(&c, m, NULL, u);
    sx_winograd_prepare_mirrored(&c, m, tk.gemm, uk);
    t.wino = u, tk.wino = uk;
    size_t out_n = (size_t)cin * n * h * w;
    float *dy = rand_floats((size_t)cout * n * h * w, 1.0f);
    float *ref = malloc(out_n * sizeof *ref), *got = malloc(out_n * sizeof *got);
    float *ws = alloc_aligned_floats(sx_winograd_workspace_floats(&tk, n, h, w));
    sx_winograd_run(&t, dy, n, h, w, ws, NULL, ref, 0, 0);
    sx_winograd_run(&tk, dy, n, h, w, ws, NULL, got, 0, 0);
    double e = max_rel_err(got, ref, out_n);
    CHECK_MSG(e < 1e-5, "%s mirrored: error %g", sx_cpu_path_name(g_path), e);
    free(c.w), free(u), free(uk), free(dy), free(ref), free(got), free(ws);
}

static void check_env(void) {
    const char *cases[][2] = {{"0", "0"}, {"2", "2"}, {"4", "4"}, {"", "4"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        setenv("SIAMIDX_WINOGRAD", cases[i][0], 1);
        CHECK_MSG(sx_winograd_tile_from_env() == atoi(cases[i][1]), "SIAMIDX_WINOGRAD='%s'",
                  cases[i][0]);
    }
    unsetenv("SIAMIDX_WINOGRAD");
    CHECK(sx_winograd_tile_from_env() == 4);
}

int main(void) {
    int modes[][2] = {{1, 1}, {2, 1}, {2, 2}, {3, 1}};
    double worst[2] = {0, 0};
    sx_cpu_path paths[] = {SX_CPU_BLAS, SX_CPU_AVX2, SX_CPU_AVX512};
    for (size_t pi = 0; pi < sizeof paths / sizeof paths[0]; pi++) {
        g_path = paths[pi];
        worst[0] = worst[1] = 0;
        if (!sx_cpu_supports(g_path)) {
            printf("%s: not on this CPU, not tested\n", sx_cpu_path_name(g_path));
            continue;
        }
        for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
            omp_set_num_threads(modes[i][0]);
            openblas_set_num_threads(modes[i][1]);
            worst[0] = fmax(worst[0], check_cases(2));
            worst[1] = fmax(worst[1], check_cases(4));
            if (g_path == SX_CPU_BLAS) check_dispatch();
            else check_mirrored();
        }
        printf("%s: worst relative error against im2col: F(2x2,3x3) %.3g, F(4x4,3x3) %.3g\n",
               sx_cpu_path_name(g_path), worst[0], worst[1]);
    }
    check_env();
    CHECK_DONE();
}

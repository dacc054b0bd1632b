/*
 * winograd.c - Winograd F(2x2,3x3) and F(4x4,3x3) convolutions (winograd.h).
 *
 * Data flow for one block of tile rows (a tile row: the tiles_x tiles of
 * output rows [ty*m, ty*m + m) of one image):
 *   V[t][ci][j] = (B^T d B)[t]  for the input patch d of tile j, channel ci
 *   M[t] = U[t] x V[t]          t = 0 .. (m+2)^2 - 1, one sgemm each
 *   out[co][img][y][x] (+)= (A^T M[.][co][j] A)[y, x] + bias, then ReLU
 * V and M live in the workspace (sx_winograd_workspace_floats); a block has
 * as many tile rows as keep them near WINO_TARGET_FLOATS, so they stay in the
 * last level cache from one step to the next and the workspace stays small.
 *
 * Threading follows conv.c (one pool only): with OpenBLAS threaded, the
 * transforms run on the calling thread and each sgemm is one threaded
 * OpenBLAS call; with OpenBLAS single-threaded, the OpenMP threads share the
 * transforms (by channel and tile row) and the sgemms (by t).
 *
 * Transforms run over TILE_CHUNK tiles of one (channel, tile row) at a time,
 * in two passes through a buffer on the stack: down the columns (contiguous,
 * vectorised by the compiler; rows and columns outside the image are the
 * zero padding), then along the rows of each tile (across 8 tiles at a time
 * with AVX2 shuffles for F(4x4), where the compiler leaves the stride-4
 * accesses scalar). The matrices are Lavin & Gray's
 * (arXiv:1509.09308), points 0, +-1, +-2 for F(4x4,3x3); the weight
 * transform is computed in double.
 */
#include <omp.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "nn/winograd.h"
#include "nn/gemm.h"
#include "base/threads.h"

/* The two buffers of a block (V and M) together: 4 MB, so that they stay in
 * the L2 / last level cache between the transforms and the sgemms (2 MB and
 * 8 MB measured within noise of it on layer1-4 shapes). */
#define WINO_TARGET_FLOATS (1u << 20)
/* At least this many tiles per block: below it the sgemms get too thin. */
#define WINO_MIN_BLOCK_TILES 64
/* Fewer tiles than this in the whole batch and the direct path is faster:
 * U (alpha^2 / 9 times the direct weights) is then read for too little work. */
#define WINO_MIN_TILES 16
/* Tiles transformed per stack chunk of one tile row. */
#define TILE_CHUNK 64
#define MAX_ALPHA 6

int openblas_get_num_threads(void);

int sx_winograd_tile_from_env(void) {
    const char *v = getenv("SIAMIDX_WINOGRAD");
    if (!v || !*v) return 4;
    if (!strcmp(v, "0")) return 0;
    if (!strcmp(v, "2")) return 2;
    return 4;
}

static int wino_shape_ok(const sx_conv *c) {
    return c->k == 3 && c->stride == 1 && c->pad == 1;
}

/* Floats of one point's U[t] (rows x cols): packed for g's panels, or row-major. */
static size_t u_plane_floats(const sx_gemm_kernel *g, int rows, int cols) {
    return g ? sx_gemm_packed_a_floats(g, rows, cols) : (size_t)rows * cols;
}

size_t sx_winograd_weight_floats(const sx_conv *c, int m) {
    if ((m != 2 && m != 4) || !wino_shape_ok(c)) return 0;
    return (size_t)(m + 2) * (m + 2) * u_plane_floats(c->gemm, c->cout, c->cin);
}

size_t sx_winograd_mirrored_weight_floats(const sx_conv *c, int m, const sx_gemm_kernel *g) {
    if ((m != 2 && m != 4) || !wino_shape_ok(c)) return 0;
    return (size_t)(m + 2) * (m + 2) * u_plane_floats(g, c->cin, c->cout);
}

/* ---- weight transform: U = G g G^T ------------------------------------------ */

static const double G2[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
static const double G4[6][3] = {{1.0 / 4, 0, 0},
                                {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                {0, 0, 1}};

/*
 * The weights go through in blocks of WT_BLOCK kernels, transposed on the
 * stack to gt[tap][kernel], so that every step below runs across the
 * kernels of a block (contiguous: the compiler vectorises it) and U is
 * written one contiguous run per point t. Training transforms every step
 * (nn/conv_grad.c), where a kernel-at-a-time loop, scalar and writing 36
 * strided floats per kernel, took a tenth of the step.
 */
enum { WT_BLOCK = 64 };

/*
 * The layout of U[t], a rows x cols matrix: with a kernel g (nn/gemm.h), g's
 * packed panels, so that the per-point GEMMs read U as the encoder's other
 * convolutions read their weights; else row-major, for cblas_sgemm.
 */
typedef struct u_layout {
    const sx_gemm_kernel *g;
    int rows, cols;
    size_t plane; /* floats per point t */
} u_layout;

/* A walk over the positions of a plane, naming the (row, col) each holds:
 * row-major, or g's panels (mr rows of one column, then the next column). */
typedef struct u_cursor {
    size_t row0, r, col; /* row = row0 + r; row0 steps by mr (0 and 1 row-major) */
} u_cursor;

static u_cursor u_cursor_at(const u_layout *L, size_t q) {
    if (!L->g) return (u_cursor){q / L->cols, 0, q % L->cols};
    size_t mr = (size_t)L->g->mr, panel = mr * L->cols, in = q % panel;
    return (u_cursor){q / panel * mr, in % mr, in / mr};
}

static void u_cursor_next(const u_layout *L, u_cursor *k) {
    if (!L->g) {
        if (++k->col == (size_t)L->cols) k->col = 0, k->row0++;
        return;
    }
    if (++k->r < (size_t)L->g->mr) return;
    k->r = 0;
    if (++k->col == (size_t)L->cols) k->col = 0, k->row0 += (size_t)L->g->mr;
}

/* U[t][j] = (G g_j G^T)[t] for the cnt kernels in gt, in double. */
static void transform_weight_block(int m, const float gt[9][WT_BLOCK], int cnt, size_t plane,
                                   float *dst) {
    int a = m + 2;
    const double *G = m == 2 ? &G2[0][0] : &G4[0][0];
    double gg[MAX_ALPHA][3][WT_BLOCK]; /* G g */
    for (int i = 0; i < a; i++)
        for (int col = 0; col < 3; col++)
            for (int j = 0; j < cnt; j++)
                gg[i][col][j] = G[i * 3] * gt[col][j] + G[i * 3 + 1] * gt[3 + col][j] +
                                G[i * 3 + 2] * gt[6 + col][j];
    for (int i = 0; i < a; i++)
        for (int l = 0; l < a; l++) {
            float *to = dst + (size_t)(i * a + l) * plane;
            double g0 = G[l * 3], g1 = G[l * 3 + 1], g2 = G[l * 3 + 2];
            for (int j = 0; j < cnt; j++)
                to[j] = (float)(gg[i][0][j] * g0 + gg[i][1][j] * g1 + gg[i][2][j] * g2);
        }
}

/*
 * U for every kernel of c, or with `mirrored` for the convolution that
 * computes c's input gradient: cin and cout swapped and each kernel turned
 * by 180 degrees, U'[t][ci][co] from c->w[co][ci] (nn/conv_grad.c); laid
 * out for kernel g (u_layout). Blocks run over the positions of a plane, so
 * that every point's U is written in contiguous runs whichever the layout
 * (kernel-ordered writes into packed panels, strided by mr, cost training
 * twice the transform's time).
 */
static void transform_weights(const sx_conv *c, int m, int mirrored, const sx_gemm_kernel *g,
                              float *dst) {
    u_layout L = {g, mirrored ? c->cin : c->cout, mirrored ? c->cout : c->cin, 0};
    L.plane = u_plane_floats(g, L.rows, L.cols);
    size_t blocks = (L.plane + WT_BLOCK - 1) / WT_BLOCK;
#pragma omp parallel for num_threads(sx_threads()) schedule(static) if (L.plane >= 4096)
    for (size_t bi = 0; bi < blocks; bi++) {
        size_t q0 = bi * WT_BLOCK;
        int cnt = L.plane - q0 < WT_BLOCK ? (int)(L.plane - q0) : WT_BLOCK;
        float gt[9][WT_BLOCK];
        u_cursor at = u_cursor_at(&L, q0);
        for (int j = 0; j < cnt; j++, u_cursor_next(&L, &at)) {
            size_t row = at.row0 + at.r, col = at.col;
            if (row >= (size_t)L.rows) { /* g's padding rows: U = 0 */
                for (int q = 0; q < 9; q++) gt[q][j] = 0.0f;
                continue;
            }
            /* its weights: c->w[co][ci], (co, ci) = (row, col), or (col, row) mirrored */
            const float *k = c->w + (mirrored ? col * c->cin + row : row * c->cin + col) * 9;
            for (int q = 0; q < 9; q++) gt[q][j] = mirrored ? k[8 - q] : k[q];
        }
        transform_weight_block(m, (const float(*)[WT_BLOCK])gt, cnt, L.plane, dst + q0);
    }
}

void sx_winograd_prepare(sx_conv *c, int m, float *dst) {
    transform_weights(c, m, 0, c->gemm, dst);
    c->wino = dst;
    /* A model marks its convs at load and transforms later, while other
       threads read wino_m: only a change is written. */
    if (c->wino_m != m) c->wino_m = m;
}

void sx_winograd_prepare_mirrored(const sx_conv *c, int m, const sx_gemm_kernel *g, float *dst) {
    transform_weights(c, m, 1, g, dst);
}

/* ---- plan ------------------------------------------------------------------------ */

typedef struct wino_plan {
    int m, a, a2;          /* tile, patch side (m + 2), transforms per tile */
    int tiles_x, tiles_y;  /* tiles per image row / column */
    size_t tile_rows;      /* n * tiles_y */
    size_t block_rows, nb; /* tile rows per block, tiles per full block */
} wino_plan;

static wino_plan make_plan(const sx_conv *c, int n, int h, int w) {
    wino_plan p;
    p.m = c->wino_m;
    p.a = p.m + 2;
    p.a2 = p.a * p.a;
    p.tiles_y = (h + p.m - 1) / p.m;
    p.tiles_x = (w + p.m - 1) / p.m;
    p.tile_rows = (size_t)n * p.tiles_y;
    size_t per_tile = (size_t)p.a2 * (c->cin + c->cout);
    size_t tiles = WINO_TARGET_FLOATS / per_tile;
    if (tiles < WINO_MIN_BLOCK_TILES) tiles = WINO_MIN_BLOCK_TILES;
    p.block_rows = (tiles + p.tiles_x - 1) / p.tiles_x;
    if (p.block_rows > p.tile_rows) p.block_rows = p.tile_rows;
    p.nb = p.block_rows * p.tiles_x;
    return p;
}

int sx_winograd_applies(const sx_conv *c, int n, int h, int w) {
    if (!wino_shape_ok(c) || (c->wino_m != 2 && c->wino_m != 4)) return 0;
    wino_plan p = make_plan(c, n, h, w);
    return p.tile_rows * p.tiles_x >= WINO_MIN_TILES;
}

static size_t round16(size_t x) { return (x + 15) & ~(size_t)15; }

/* V and M of one block; with a kernel, its threads' scratch follows. */
static size_t block_buffers_floats(const sx_conv *c, const wino_plan *p) {
    return round16((size_t)p->a2 * (c->cin + c->cout) * p->nb);
}

size_t sx_winograd_kept_floats(const sx_conv *c, int n, int h, int w) {
    if (!sx_winograd_applies(c, n, h, w)) return 0;
    wino_plan p = make_plan(c, n, h, w);
    return (size_t)p.a2 * c->cin * p.tile_rows * p.tiles_x;
}

/* Where block row0's V lies in a kept V of the whole batch: the blocks one
 * after another, each a2 x cin x its tiles (only the last block is short). */
static size_t kept_block_offset(const wino_plan *p, const sx_conv *c, size_t row0) {
    return row0 / p->block_rows * ((size_t)p->a2 * c->cin * p->nb);
}

size_t sx_winograd_workspace_floats(const sx_conv *c, int n, int h, int w) {
    if (c->wino_m != 2 && c->wino_m != 4) return 0;
    wino_plan p = make_plan(c, n, h, w);
    size_t gemm = c->gemm ? SX_GEMM_MAX_THREADS * sx_gemm_thread_work_floats(c->gemm) : 0;
    return block_buffers_floats(c, &p) + gemm;
}

/* ---- input transform: V = B^T d B ------------------------------------------------- */

/* B^T d for F(4x4,3x3), on six values d0..d5 (one column or one row). */
#define BT4(d0, d1, d2, d3, d4, d5, v)                                                             \
    do {                                                                                           \
        v[0] = 4.0f * (d0) - 5.0f * (d2) + (d4);                                                   \
        v[1] = -4.0f * ((d1) + (d2)) + (d3) + (d4);                                                \
        v[2] = 4.0f * ((d1) - (d2)) - (d3) + (d4);                                                 \
        v[3] = 2.0f * ((d3) - (d1)) - (d2) + (d4);                                                 \
        v[4] = 2.0f * ((d1) - (d3)) - (d2) + (d4);                                                 \
        v[5] = 4.0f * (d1) - 5.0f * (d3) + (d5);                                                   \
    } while (0)

#define BT2(d0, d1, d2, d3, v)                                                                     \
    do {                                                                                           \
        v[0] = (d0) - (d2);                                                                        \
        v[1] = (d1) + (d2);                                                                        \
        v[2] = (d2) - (d1);                                                                        \
        v[3] = (d1) - (d3);                                                                        \
    } while (0)

/* A row of zeros for patch rows above or below the image (the padding). */
static const float zero_row[TILE_CHUNK * 4 + 4];

/*
 * Vertical pass: col[k][xx] = (B^T d)[k] over the a patch rows row[0..a-1]
 * for column xx (image column x0 + xx), for xx in [0, cols): contiguous, so
 * it vectorises over xx. Columns outside the image are the zero padding.
 */
static void input_vertical(int m, const float *const *row, int w, int x0, int cols, float *col,
                           int ld) {
    int lo = x0 < 0 ? -x0 : 0;
    int hi = w - x0 < cols ? w - x0 : cols;
    int a = m + 2, n = hi - lo;
    const float *d[MAX_ALPHA];
    for (int r = 0; r < a; r++) d[r] = row[r] == zero_row ? zero_row : row[r] + (x0 + lo);
    float *o = col + lo;
    if (m == 4) {
        for (int x = 0; x < n; x++) {
            float v[6];
            BT4(d[0][x], d[1][x], d[2][x], d[3][x], d[4][x], d[5][x], v);
            for (int k = 0; k < 6; k++) o[k * ld + x] = v[k];
        }
    } else {
        for (int x = 0; x < n; x++) {
            float v[4];
            BT2(d[0][x], d[1][x], d[2][x], d[3][x], v);
            for (int k = 0; k < 4; k++) o[k * ld + x] = v[k];
        }
    }
    for (int k = 0; k < a; k++) {
        memset(col + (size_t)k * ld, 0, (size_t)lo * sizeof *col);
        memset(col + (size_t)k * ld + hi, 0, (size_t)(cols - hi) * sizeof *col);
    }
}

#if defined(__x86_64__)
/*
 * A 4x4 transpose in each 128-bit lane: a_i holds columns 0-3 of tile i
 * (and of tile i + 4 in the high lane); d[q] gets column q of tiles 0-3 (and
 * 4-7). The horizontal passes' stride-4 reads and writes, which the
 * compiler does not vectorise, go through it.
 */
__attribute__((target("avx2,fma"), always_inline)) static inline void
transpose4_lanes(__m256 a0, __m256 a1, __m256 a2, __m256 a3, __m256 d[4]) {
    __m256 lo01 = _mm256_unpacklo_ps(a0, a1), hi01 = _mm256_unpackhi_ps(a0, a1);
    __m256 lo23 = _mm256_unpacklo_ps(a2, a3), hi23 = _mm256_unpackhi_ps(a2, a3);
    d[0] = _mm256_shuffle_ps(lo01, lo23, 0x44), d[1] = _mm256_shuffle_ps(lo01, lo23, 0xEE);
    d[2] = _mm256_shuffle_ps(hi01, hi23, 0x44), d[3] = _mm256_shuffle_ps(hi01, hi23, 0xEE);
}

/*
 * input_horizontal's F(4x4) transform of eight tiles as two quads: tiles
 * 0..3 of row ca (patch columns ca[0..17]) to oa[l * vstride + 0..3], and
 * tiles 0..3 of row cb to ob[...], through transpose4_lanes: lane half 0
 * holds ca's tiles, half 1 cb's. Eight tiles of one row are the
 * quads (c, o) and (c + 16, o + 4); a row of four tiles pairs with the next.
 */
__attribute__((target("avx2,fma"))) static void input_horizontal_2x4_f4(const float *ca, float *oa,
                                                                        const float *cb, float *ob,
                                                                        size_t vstride) {
    __m256 a0 = _mm256_loadu2_m128(cb, ca), a1 = _mm256_loadu2_m128(cb + 4, ca + 4);
    __m256 a2 = _mm256_loadu2_m128(cb + 8, ca + 8), a3 = _mm256_loadu2_m128(cb + 12, ca + 12);
    /* columns 4, 5 of tile 3 are the first two after the quad; only those are read */
    __m128 qa = _mm_castpd_ps(_mm_load_sd((const double *)(ca + 16)));
    __m128 qb = _mm_castpd_ps(_mm_load_sd((const double *)(cb + 16)));
    __m256 a4 = _mm256_insertf128_ps(_mm256_castps128_ps256(qa), qb, 1);
    __m256 d[4];
    transpose4_lanes(a0, a1, a2, a3, d);
    __m256 d0 = d[0], d1 = d[1], d2 = d[2], d3 = d[3];
    /* columns 4, 5: columns 0, 1 of tiles 1-3 and of the column pair after them */
    __m256 lo12 = _mm256_unpacklo_ps(a1, a2), lo34 = _mm256_unpacklo_ps(a3, a4);
    __m256 d4 = _mm256_shuffle_ps(lo12, lo34, 0x44), d5 = _mm256_shuffle_ps(lo12, lo34, 0xEE);
    const __m256 four = _mm256_set1_ps(4.0f), five = _mm256_set1_ps(5.0f);
    const __m256 two = _mm256_set1_ps(2.0f);
    __m256 d4m2 = _mm256_sub_ps(d4, d2), r[6];
    r[0] = _mm256_fmadd_ps(four, d0, _mm256_fnmadd_ps(five, d2, d4));
    r[1] = _mm256_fnmadd_ps(four, _mm256_add_ps(d1, d2), _mm256_add_ps(d3, d4));
    r[2] = _mm256_fmadd_ps(four, _mm256_sub_ps(d1, d2), _mm256_sub_ps(d4, d3));
    r[3] = _mm256_fmadd_ps(two, _mm256_sub_ps(d3, d1), d4m2);
    r[4] = _mm256_fmadd_ps(two, _mm256_sub_ps(d1, d3), d4m2);
    r[5] = _mm256_fmadd_ps(four, d1, _mm256_fnmadd_ps(five, d3, d5));
    if (ob == oa + 4) {
        for (int l = 0; l < 6; l++) _mm256_storeu_ps(oa + l * vstride, r[l]);
    } else {
        for (int l = 0; l < 6; l++) _mm256_storeu2_m128(ob + l * vstride, oa + l * vstride, r[l]);
    }
}
#endif

/* One tile's F(4x4) horizontal transform: patch columns d[0..5] to o[l * vstride]. */
static inline __attribute__((always_inline)) void input_horizontal1_f4(const float *d, float *o,
                                                                       size_t vstride) {
    float t[6];
    BT4(d[0], d[1], d[2], d[3], d[4], d[5], t);
    for (int l = 0; l < 6; l++) o[l * vstride] = t[l];
}

/*
 * Horizontal pass: V[(k*a + l) * vstride + j] = (col[k] B)[l] over the patch
 * of tile j (columns j*m .. j*m + a - 1), for `count` tiles.
 */
static void input_horizontal(int m, const float *col, int ld, int count, float *v,
                             size_t vstride) {
    if (m == 4) {
        int k = 0, j = 0;
#if defined(__x86_64__)
        /* Quads of four tiles, two per call: along each row k first, then a
         * row's last quad with the next row's first (rows of 4..7 tiles, as
         * layer2 at 128 px has); what is left of a row goes one tile at a time. */
        const float *pend = NULL;
        float *pend_o = NULL;
        for (k = 0; k < 6; k++) {
            const float *c = col + (size_t)k * ld;
            float *o = v + (size_t)k * 6 * vstride;
            for (j = 0; j + 8 <= count; j += 8)
                input_horizontal_2x4_f4(c + 4 * j, o + j, c + 4 * j + 16, o + j + 4, vstride);
            if (j + 4 <= count) {
                if (pend) {
                    input_horizontal_2x4_f4(pend, pend_o, c + 4 * j, o + j, vstride);
                    pend = NULL;
                } else {
                    pend = c + 4 * j, pend_o = o + j;
                }
                j += 4;
            }
            for (; j < count; j++) input_horizontal1_f4(c + 4 * j, o + j, vstride);
        }
        if (pend)
            for (int q = 0; q < 4; q++) input_horizontal1_f4(pend + 4 * q, pend_o + q, vstride);
#else
        for (k = 0; k < 6; k++)
            for (j = 0; j < count; j++)
                input_horizontal1_f4(col + (size_t)k * ld + 4 * j, v + (size_t)k * 6 * vstride + j,
                                     vstride);
#endif
    } else {
        for (int k = 0; k < 4; k++) {
            const float *c = col + (size_t)k * ld;
            float *o = v + (size_t)k * 4 * vstride;
            for (int j = 0; j < count; j++) {
                const float *d = c + 2 * j;
                float t[4];
                BT2(d[0], d[1], d[2], d[3], t);
                for (int l = 0; l < 4; l++) o[l * vstride + j] = t[l];
            }
        }
    }
}

/* Transforms channel ci's tile row `row` (global index img * tiles_y + ty)
 * into V at tile offset j0 of the block. */
static void input_tile_row(const wino_plan *p, const float *in, size_t plane_stride, int h, int w,
                           size_t row, float *v, size_t vstride) {
    enum { LD = TILE_CHUNK * 4 + 4 };
    float col[MAX_ALPHA * LD];
    size_t img = row / p->tiles_y;
    int ty = (int)(row % p->tiles_y);
    const float *plane = in + img * plane_stride, *rows[MAX_ALPHA];
    for (int r = 0; r < p->a; r++) {
        int y = ty * p->m - 1 + r;
        rows[r] = y < 0 || y >= h ? zero_row : plane + (size_t)y * w;
    }
    for (int tx0 = 0; tx0 < p->tiles_x; tx0 += TILE_CHUNK) {
        int count = p->tiles_x - tx0 < TILE_CHUNK ? p->tiles_x - tx0 : TILE_CHUNK;
        input_vertical(p->m, rows, w, tx0 * p->m - 1, count * p->m + 2, col, LD);
        input_horizontal(p->m, col, LD, count, v + tx0, vstride);
    }
}

/* ---- output transform: Y = A^T M A, + bias, residual, ReLU -------------------------- */

/* A^T m for F(4x4,3x3): six values to four. */
#define AT4(m0, m1, m2, m3, m4, m5, o)                                                             \
    do {                                                                                           \
        float s12 = (m1) + (m2), d12 = (m1) - (m2), s34 = (m3) + (m4), d34 = (m3) - (m4);          \
        o[0] = (m0) + s12 + s34;                                                                   \
        o[1] = d12 + 2.0f * d34;                                                                   \
        o[2] = s12 + 4.0f * s34;                                                                   \
        o[3] = d12 + 8.0f * d34 + (m5);                                                            \
    } while (0)

#define AT2(m0, m1, m2, m3, o)                                                                     \
    do {                                                                                           \
        o[0] = (m0) + (m1) + (m2);                                                                 \
        o[1] = (m1) - (m2) - (m3);                                                                 \
    } while (0)

/*
 * Vertical pass: rows[r][l][j] = (A^T M[., l])[r] for `count` tiles whose
 * M values are at mm[t * mstride + j] (contiguous over j, so it vectorises).
 */
static void output_vertical(int m, const float *mm, size_t mstride, int count, float *rows,
                            int ld) {
    int a = m + 2;
    for (int l = 0; l < a; l++) {
        const float *c = mm + (size_t)l * mstride; /* t = k * a + l */
        if (m == 4) {
            for (int j = 0; j < count; j++) {
                float o[4];
                AT4(c[j], c[6 * mstride + j], c[12 * mstride + j], c[18 * mstride + j],
                    c[24 * mstride + j], c[30 * mstride + j], o);
                for (int r = 0; r < 4; r++) rows[(r * a + l) * ld + j] = o[r];
            }
        } else {
            for (int j = 0; j < count; j++) {
                float o[2];
                AT2(c[j], c[4 * mstride + j], c[8 * mstride + j], c[12 * mstride + j], o);
                for (int r = 0; r < 2; r++) rows[(r * a + l) * ld + j] = o[r];
            }
        }
    }
}

#if defined(__x86_64__)
/* output_horizontal's F(4x4) loop for 8 tiles at s[l * ld] (l = 0..5): the
 * four outputs of each tile, transposed back to y[4 * i + c]. */
__attribute__((target("avx2,fma"))) static void output_horizontal8_f4(const float *s, int ld,
                                                                      float *y) {
    __m256 m0 = _mm256_loadu_ps(s), m1 = _mm256_loadu_ps(s + ld);
    __m256 m2 = _mm256_loadu_ps(s + 2 * ld), m3 = _mm256_loadu_ps(s + 3 * ld);
    __m256 m4 = _mm256_loadu_ps(s + 4 * ld), m5 = _mm256_loadu_ps(s + 5 * ld);
    __m256 s12 = _mm256_add_ps(m1, m2), d12 = _mm256_sub_ps(m1, m2);
    __m256 s34 = _mm256_add_ps(m3, m4), d34 = _mm256_sub_ps(m3, m4);
    __m256 o0 = _mm256_add_ps(_mm256_add_ps(m0, s12), s34);
    __m256 o1 = _mm256_fmadd_ps(_mm256_set1_ps(2.0f), d34, d12);
    __m256 o2 = _mm256_fmadd_ps(_mm256_set1_ps(4.0f), s34, s12);
    __m256 o3 = _mm256_add_ps(_mm256_fmadd_ps(_mm256_set1_ps(8.0f), d34, d12), m5);
    __m256 w[4];
    transpose4_lanes(o0, o1, o2, o3, w);
    __m256 w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
    /* w0 = tiles 0 | 4, w1 = 1 | 5, w2 = 2 | 6, w3 = 3 | 7 */
    _mm256_storeu_ps(y, _mm256_permute2f128_ps(w0, w1, 0x20));
    _mm256_storeu_ps(y + 8, _mm256_permute2f128_ps(w2, w3, 0x20));
    _mm256_storeu_ps(y + 16, _mm256_permute2f128_ps(w0, w1, 0x31));
    _mm256_storeu_ps(y + 24, _mm256_permute2f128_ps(w2, w3, 0x31));
}
#endif

/* Horizontal pass: y[r][j*m + c] = (rows[r][.] A)[c] for the tiles of a chunk. */
static void output_horizontal(int m, const float *rows, int ld, int count, float *y, int yld) {
    int a = m + 2;
    for (int r = 0; r < m; r++) {
        const float *s = rows + (size_t)r * a * ld;
        float *dst = y + (size_t)r * yld;
        if (m == 4) {
            int j = 0;
#if defined(__x86_64__)
            for (; j + 8 <= count; j += 8) output_horizontal8_f4(s + j, ld, dst + 4 * j);
#endif
            for (; j < count; j++) {
                float o[4];
                AT4(s[j], s[ld + j], s[2 * ld + j], s[3 * ld + j], s[4 * ld + j], s[5 * ld + j], o);
                for (int c = 0; c < 4; c++) dst[4 * j + c] = o[c];
            }
        } else {
            for (int j = 0; j < count; j++) {
                float o[2];
                AT2(s[j], s[ld + j], s[2 * ld + j], s[3 * ld + j], o);
                for (int c = 0; c < 2; c++) dst[2 * j + c] = o[c];
            }
        }
    }
}

/* out[x] = relu?(y[x] + bias (+ out[x])) for one row of the output. */
static void store_row(const float *y, int cols, float bias, int relu, int accumulate,
                      float *out) {
    if (accumulate)
        for (int x = 0; x < cols; x++) {
            float v = y[x] + bias + out[x];
            out[x] = relu && v < 0.0f ? 0.0f : v;
        }
    else
        for (int x = 0; x < cols; x++) {
            float v = y[x] + bias;
            out[x] = relu && v < 0.0f ? 0.0f : v;
        }
}

/*
 * Output channel co's tiles [j0, j0 + count) of a block whose first tile row
 * is row0 (M at tile j0), count <= TILE_CHUNK. The chunk runs across tile
 * rows (and images): at training's sizes a tile row holds 1-8 tiles (a
 * 32 x 32 map at F(4x4)), and transforms a row at a time spent their time
 * on loop overhead. The stores then go out one tile row's run at a time.
 */
static void output_tiles(const wino_plan *p, const float *mm, size_t mstride, size_t row0,
                         size_t j0, int count, int h, int w, float bias, int relu, int accumulate,
                         float *out, size_t plane_stride) {
    enum { LD = TILE_CHUNK, YLD = TILE_CHUNK * 4 };
    float rows[4 * MAX_ALPHA * LD], y[4 * YLD];
    output_vertical(p->m, mm, mstride, count, rows, LD);
    output_horizontal(p->m, rows, LD, count, y, YLD);
    for (int k = 0; k < count;) {
        size_t j = j0 + (size_t)k, row = row0 + j / p->tiles_x;
        int tx = (int)(j % p->tiles_x), run = p->tiles_x - tx < count - k ? p->tiles_x - tx : count - k;
        size_t img = row / p->tiles_y;
        int y0 = (int)(row % p->tiles_y) * p->m, nrows = h - y0 < p->m ? h - y0 : p->m;
        int x0 = tx * p->m, cols = w - x0 < run * p->m ? w - x0 : run * p->m;
        float *plane = out + img * plane_stride;
        for (int r = 0; r < nrows; r++)
            store_row(y + (size_t)r * YLD + (size_t)k * p->m, cols, bias, relu, accumulate,
                      plane + (size_t)(y0 + r) * w + x0);
        k += run;
    }
}

/* ---- the block loop --------------------------------------------------------------------- */

typedef struct wino_block {
    size_t row0, rows, nb; /* first tile row, tile rows, tiles */
} wino_block;

static void block_input(const wino_plan *p, const sx_conv *c, const float *in, int n, int h,
                        int w, const wino_block *b, float *v, size_t i) {
    /* i = ci * rows + row-in-block */
    size_t ci = i / b->rows, r = i % b->rows, vstride = (size_t)c->cin * b->nb;
    size_t plane = (size_t)h * w;
    input_tile_row(p, in + ci * n * plane, plane, h, w, b->row0 + r,
                   v + ci * b->nb + r * p->tiles_x, vstride);
}

/* Chunks of TILE_CHUNK tiles per output channel in block b. */
static size_t output_chunks(const wino_block *b) { return (b->nb + TILE_CHUNK - 1) / TILE_CHUNK; }

static void block_output(const wino_plan *p, const sx_conv *c, const float *mm, int n, int h,
                         int w, const wino_block *b, float *out, int relu, int accumulate,
                         size_t i) {
    /* i = co * chunks + chunk */
    size_t chunks = output_chunks(b), co = i / chunks, j0 = i % chunks * TILE_CHUNK;
    size_t mstride = (size_t)c->cout * b->nb, plane = (size_t)h * w;
    int count = b->nb - j0 < TILE_CHUNK ? (int)(b->nb - j0) : TILE_CHUNK;
    output_tiles(p, mm + co * b->nb + j0, mstride, b->row0, j0, count, h, w,
                 c->b ? c->b[co] : 0.0f, relu, accumulate, out + co * n * plane, plane);
}

/* M[t] = U[t] x V[t] for one block: on c's kernel (U packed for it) with
 * this thread's `work`, or as one cblas_sgemm (U row-major). */
static void block_gemm(const sx_conv *c, const wino_block *b, const float *v, float *mm, int t,
                       float *work) {
    const float *vt = v + (size_t)t * c->cin * b->nb;
    float *mt = mm + (size_t)t * c->cout * b->nb;
    if (c->gemm) {
        size_t plane = sx_gemm_packed_a_floats(c->gemm, c->cout, c->cin);
        sx_gemm_b vb = {sx_gemm_pack_dense, vt, b->nb, NULL};
        sx_gemm_run_serial(c->gemm, c->wino + (size_t)t * plane, c->cout, c->cin, &vb, b->nb,
                           NULL, 0, 0, mt, b->nb, work);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c->cout, (int)b->nb, c->cin, 1.0f,
                c->wino + (size_t)t * c->cout * c->cin, c->cin, vt, (int)b->nb, 0.0f, mt,
                (int)b->nb);
}

/*
 * Threads: with a kernel (c->gemm) the OpenMP threads share everything, the
 * GEMMs by point t, each on its own thread's scratch after V and M. Without
 * one, as conv.c: a threaded OpenBLAS runs each sgemm on all cores while
 * the transforms stay on this thread; a single-threaded one is shared by t
 * like the kernel.
 */
void sx_winograd_run(const sx_conv *c, const float *in, int n, int h, int w, float *ws,
                     float *kept, float *out, int relu, int accumulate) {
    wino_plan p = make_plan(c, n, h, w);
    float *v = ws, *mm = ws + (size_t)p.a2 * c->cin * p.nb;
    float *gemm_work = ws + block_buffers_floats(c, &p);
    size_t thread_work = c->gemm ? sx_gemm_thread_work_floats(c->gemm) : 0;
    int serial = !c->gemm && openblas_get_num_threads() > 1;
    int nt = sx_threads() < SX_GEMM_MAX_THREADS ? sx_threads() : SX_GEMM_MAX_THREADS;
    for (size_t row0 = 0; row0 < p.tile_rows; row0 += p.block_rows) {
        wino_block b = {row0, p.tile_rows - row0 < p.block_rows ? p.tile_rows - row0 : p.block_rows, 0};
        b.nb = b.rows * p.tiles_x;
        size_t n_in = (size_t)c->cin * b.rows, n_out = (size_t)c->cout * output_chunks(&b);
        if (kept) v = kept + kept_block_offset(&p, c, row0);
        if (serial) {
            for (size_t i = 0; i < n_in; i++) block_input(&p, c, in, n, h, w, &b, v, i);
            for (int t = 0; t < p.a2; t++) block_gemm(c, &b, v, mm, t, NULL);
            for (size_t i = 0; i < n_out; i++)
                block_output(&p, c, mm, n, h, w, &b, out, relu, accumulate, i);
            continue;
        }
#pragma omp parallel num_threads(nt)
        {
            float *work = gemm_work + (size_t)omp_get_thread_num() * thread_work;
#pragma omp for schedule(static)
            for (long i = 0; i < (long)n_in; i++) block_input(&p, c, in, n, h, w, &b, v, (size_t)i);
#pragma omp for schedule(dynamic, 1)
            for (int t = 0; t < p.a2; t++) block_gemm(c, &b, v, mm, t, work);
#pragma omp for schedule(static)
            for (long i = 0; i < (long)n_out; i++)
                block_output(&p, c, mm, n, h, w, &b, out, relu, accumulate, (size_t)i);
        }
    }
}

/* ---- the weight gradient: dU[t] = (A dY A^T)[t] x V[t]^T, dW = G^T dU G --------------- */

/*
 * The forward is Y = A^T [U . V] A per tile, linear in U, so for a loss
 * with output gradient dY: dM = A dY A^T (the adjoint of the output
 * transform, a tile's m x m gradient spread over its (m+2)^2 points),
 * dU[t] = sum over tiles of dM[t] V[t]^T, and dW = G^T dU G (the adjoint of
 * U = G g G^T). V is the forward's when the caller kept it (`kept`, a
 * whole batch's V, sx_winograd_kept_floats), else it is rebuilt from the
 * input, block by block, as the forward builds it: about the cost of the
 * im2col it replaces, for a quarter (F(4x4)) of the weight-gradient GEMM's
 * multiplies.
 */

/* A y for F(4x4,3x3): four values to six (A = the transpose of AT4's matrix). */
#define A4(y0, y1, y2, y3, v)                                                                      \
    do {                                                                                           \
        float s02 = (y0) + (y2), s13 = (y1) + (y3);                                                \
        float q02 = (y0) + 4.0f * (y2), q13 = 2.0f * (y1) + 8.0f * (y3);                           \
        v[0] = (y0);                                                                               \
        v[1] = s02 + s13;                                                                          \
        v[2] = s02 - s13;                                                                          \
        v[3] = q02 + q13;                                                                          \
        v[4] = q02 - q13;                                                                          \
        v[5] = (y3);                                                                               \
    } while (0)

#define A2(y0, y1, v)                                                                              \
    do {                                                                                           \
        v[0] = (y0);                                                                               \
        v[1] = (y0) + (y1);                                                                        \
        v[2] = (y0) - (y1);                                                                        \
        v[3] = -(y1);                                                                              \
    } while (0)

#if defined(__x86_64__)
/*
 * grad_tiles' F(4x4) horizontal pass for eight tiles: c[4 * i + q] is column
 * q of tile i; o[l * mstride + i] = (A c_i)[l]. transpose4_lanes makes the
 * columns vectors (tiles 0-3 low, 4-7 high).
 */
__attribute__((target("avx2,fma"))) static void grad_horizontal8_f4(const float *c, float *o,
                                                                    size_t mstride) {
    __m256 a0 = _mm256_loadu2_m128(c + 16, c), a1 = _mm256_loadu2_m128(c + 20, c + 4);
    __m256 a2 = _mm256_loadu2_m128(c + 24, c + 8), a3 = _mm256_loadu2_m128(c + 28, c + 12);
    __m256 y[4];
    transpose4_lanes(a0, a1, a2, a3, y);
    __m256 y0 = y[0], y1 = y[1], y2 = y[2], y3 = y[3];
    __m256 s02 = _mm256_add_ps(y0, y2), s13 = _mm256_add_ps(y1, y3);
    __m256 q02 = _mm256_fmadd_ps(_mm256_set1_ps(4.0f), y2, y0);
    __m256 q13 = _mm256_fmadd_ps(_mm256_set1_ps(8.0f), y3, _mm256_add_ps(y1, y1));
    _mm256_storeu_ps(o, y0);
    _mm256_storeu_ps(o + mstride, _mm256_add_ps(s02, s13));
    _mm256_storeu_ps(o + 2 * mstride, _mm256_sub_ps(s02, s13));
    _mm256_storeu_ps(o + 3 * mstride, _mm256_add_ps(q02, q13));
    _mm256_storeu_ps(o + 4 * mstride, _mm256_sub_ps(q02, q13));
    _mm256_storeu_ps(o + 5 * mstride, y3);
}
#endif

/*
 * dM of output channel co's tiles [j0, j0 + count) of a block whose first
 * tile row is row0 (count <= TILE_CHUNK), written at dm[t * mstride + k] for
 * tile j0 + k. The chunk runs across tile rows, as output_tiles does: the
 * vertical pass reads each tile row's run of dY (output tiles do not
 * overlap, so the runs lie side by side in col, m columns per tile), then
 * one horizontal pass covers the whole chunk. dY outside the image is
 * zero: the forward discards those outputs.
 */
static void grad_tiles(const wino_plan *p, const float *dout, size_t plane_stride, int h, int w,
                       size_t row0, size_t j0, int count, float *dm, size_t mstride) {
    enum { LD = TILE_CHUNK * 4 };
    float col[MAX_ALPHA * LD]; /* col[k][x] = (A dY[., x])[k] */
    int m = p->m, a = p->a;
    for (int k0 = 0; k0 < count;) {
        size_t j = j0 + (size_t)k0, row = row0 + j / p->tiles_x;
        int tx = (int)(j % p->tiles_x), run = p->tiles_x - tx < count - k0 ? p->tiles_x - tx : count - k0;
        const float *plane = dout + row / p->tiles_y * plane_stride, *rows[4];
        int y0 = (int)(row % p->tiles_y) * m, x0 = tx * m, cols = run * m;
        int inside = w - x0 < cols ? w - x0 : cols;
        for (int r = 0; r < m; r++)
            rows[r] = y0 + r < h ? plane + (size_t)(y0 + r) * w + x0 : zero_row;
        float *cc = col + (size_t)k0 * m;
        if (m == 4) {
            const float *d0 = rows[0], *d1 = rows[1], *d2 = rows[2], *d3 = rows[3];
            for (int x = 0; x < inside; x++) {
                float v[6];
                A4(d0[x], d1[x], d2[x], d3[x], v);
                for (int k = 0; k < 6; k++) cc[k * LD + x] = v[k];
            }
        } else {
            const float *d0 = rows[0], *d1 = rows[1];
            for (int x = 0; x < inside; x++) {
                float v[4];
                A2(d0[x], d1[x], v);
                for (int k = 0; k < 4; k++) cc[k * LD + x] = v[k];
            }
        }
        for (int k = 0; k < a; k++)
            memset(cc + (size_t)k * LD + inside, 0, (size_t)(cols - inside) * sizeof *col);
        k0 += run;
    }
    for (int k = 0; k < a; k++) {
        const float *c = col + (size_t)k * LD;
        float *o = dm + (size_t)k * a * mstride;
        int j = 0;
#if defined(__x86_64__)
        if (m == 4)
            for (; j + 8 <= count; j += 8) grad_horizontal8_f4(c + 4 * j, o + j, mstride);
#endif
        for (; j < count; j++) {
            float v[MAX_ALPHA];
            if (m == 4)
                A4(c[4 * j], c[4 * j + 1], c[4 * j + 2], c[4 * j + 3], v);
            else
                A2(c[2 * j], c[2 * j + 1], v);
            for (int l = 0; l < a; l++) o[l * mstride + j] = v[l];
        }
    }
}

static void block_grad(const wino_plan *p, const sx_conv *c, const float *dout, int n, int h,
                       int w, const wino_block *b, float *dm, size_t i) {
    /* i = co * chunks + chunk, as block_output */
    size_t chunks = output_chunks(b), co = i / chunks, j0 = i % chunks * TILE_CHUNK;
    size_t mstride = (size_t)c->cout * b->nb, plane = (size_t)h * w;
    int count = b->nb - j0 < TILE_CHUNK ? (int)(b->nb - j0) : TILE_CHUNK;
    grad_tiles(p, dout + co * n * plane, plane, h, w, b->row0, j0, count,
               dm + co * b->nb + j0, mstride);
}

/* dU[t] (+)= dM[t] x V[t]^T for one block. */
static void block_grad_gemm(const sx_conv *c, const wino_block *b, const float *v, const float *dm,
                            int t, float beta, float *du) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c->cout, c->cin, (int)b->nb, 1.0f,
                dm + (size_t)t * c->cout * b->nb, (int)b->nb, v + (size_t)t * c->cin * b->nb,
                (int)b->nb, beta, du + (size_t)t * c->cout * c->cin, c->cin);
}

/* dw[oc][3][3] += (G^T dU[.][oc] G) for the kernels oc of one block. */
static void grad_weight_block(int m, const float *du, size_t plane, size_t oc0, int cnt,
                              float *dw) {
    int a = m + 2;
    const double *G = m == 2 ? &G2[0][0] : &G4[0][0];
    float tmp[MAX_ALPHA][3][WT_BLOCK]; /* tmp[i][q] = sum_l dU[i][l] G[l][q] */
    for (int i = 0; i < a; i++)
        for (int q = 0; q < 3; q++) {
            for (int j = 0; j < cnt; j++) tmp[i][q][j] = 0.0f;
            for (int l = 0; l < a; l++) {
                float g = (float)G[l * 3 + q];
                if (g == 0.0f) continue;
                const float *d = du + (size_t)(i * a + l) * plane + oc0;
                for (int j = 0; j < cnt; j++) tmp[i][q][j] += d[j] * g;
            }
        }
    float out[9][WT_BLOCK];
    for (int pq = 0; pq < 9; pq++) {
        int pr = pq / 3, q = pq % 3;
        for (int j = 0; j < cnt; j++) out[pq][j] = 0.0f;
        for (int i = 0; i < a; i++) {
            float g = (float)G[i * 3 + pr];
            if (g == 0.0f) continue;
            for (int j = 0; j < cnt; j++) out[pq][j] += g * tmp[i][q][j];
        }
    }
    for (int j = 0; j < cnt; j++)
        for (int pq = 0; pq < 9; pq++) dw[(oc0 + j) * 9 + pq] += out[pq][j];
}

void sx_winograd_weight_grad(const sx_conv *c, const float *in, const float *kept,
                             const float *dout, int n, int h, int w, float *ws, float *du,
                             float *dw) {
    wino_plan p = make_plan(c, n, h, w);
    float *v = ws, *dm = ws + (size_t)p.a2 * c->cin * p.nb;
    size_t plane = (size_t)c->cout * c->cin, kblocks = (plane + WT_BLOCK - 1) / WT_BLOCK;
    int blas_threads = openblas_get_num_threads() > 1;
    for (size_t row0 = 0; row0 < p.tile_rows; row0 += p.block_rows) {
        wino_block b = {row0, p.tile_rows - row0 < p.block_rows ? p.tile_rows - row0 : p.block_rows, 0};
        b.nb = b.rows * p.tiles_x;
        size_t n_in = (size_t)c->cin * b.rows, n_out = (size_t)c->cout * output_chunks(&b);
        float beta = row0 ? 1.0f : 0.0f;
        const float *vb = v; /* V of this block: rebuilt in ws, or the forward's */
        if (kept) vb = kept + kept_block_offset(&p, c, row0), n_in = 0;
        if (blas_threads) {
            for (size_t i = 0; i < n_in; i++) block_input(&p, c, in, n, h, w, &b, v, i);
            for (size_t i = 0; i < n_out; i++) block_grad(&p, c, dout, n, h, w, &b, dm, i);
            for (int t = 0; t < p.a2; t++) block_grad_gemm(c, &b, vb, dm, t, beta, du);
            continue;
        }
#pragma omp parallel num_threads(sx_threads())
        {
#pragma omp for schedule(static) nowait
            for (long i = 0; i < (long)n_in; i++) block_input(&p, c, in, n, h, w, &b, v, (size_t)i);
#pragma omp for schedule(static)
            for (long i = 0; i < (long)n_out; i++)
                block_grad(&p, c, dout, n, h, w, &b, dm, (size_t)i);
            /* each t is one thread's: dU[t] is written by that thread only */
#pragma omp for schedule(dynamic, 1)
            for (int t = 0; t < p.a2; t++) block_grad_gemm(c, &b, vb, dm, t, beta, du);
        }
    }
#pragma omp parallel for num_threads(sx_threads()) schedule(static) if (plane >= 4096)
    for (size_t bi = 0; bi < kblocks; bi++) {
        size_t oc0 = bi * WT_BLOCK;
        grad_weight_block(p.m, du, plane, oc0,
                          plane - oc0 < WT_BLOCK ? (int)(plane - oc0) : WT_BLOCK, dw);
    }
}

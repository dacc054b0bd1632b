/*
 * internal.h - what the library's files share with each other.
 *
 * One concept per file:
 *   error.c        status strings, sx_fail()
 *   sha256.c       SHA-256 (content hashes, model fingerprints)
 *   safetensors.c  safetensors parsing (mmap, header JSON, dtype conversion)
 *   model.c        siamidx_model: metadata, tensor checks, BatchNorm folding
 *   image.c        decoding with stb_image (limits, EXIF orientation)
 *   preprocess.c   antialiased resize, crop, normalisation
 *   conv.c         convolution as GEMM (im2col + OpenBLAS sgemm)
 *   encoder.c      the ResNet forward pass with its memory plan, pooling
 *   embed.c        public embedding entry points (files, buffers, tensors)
 *   csv.c          RFC 4180 CSV reader, UTF-8 validation
 *   collection.c   what `build` indexes (directory or CSV), pairs CSVs
 */
#ifndef SIAMIDX_INTERNAL_H
#define SIAMIDX_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "siamidx.h"

#if defined(__GNUC__)
#define SX_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define SX_PRINTF(fmt, args)
#endif

/* ---- error.c ------------------------------------------------------------ */

/* Fills `err` (if not NULL) with status and a formatted message; returns status. */
siamidx_status sx_fail(siamidx_error *err, siamidx_status status, const char *fmt, ...)
    SX_PRINTF(3, 4);
/* Prefixes an existing message: "prefix: old message". */
void sx_error_prefix(siamidx_error *err, const char *fmt, ...) SX_PRINTF(2, 3);
void sx_error_clear(siamidx_error *err);

/* A verifier's tally: each problem goes to the caller's callback and is counted. */
typedef struct sx_problems {
    siamidx_problem_fn fn; /* may be NULL: only count */
    void *ctx;
    size_t count;
} sx_problems;
void sx_problem(sx_problems *p, const char *fmt, ...) SX_PRINTF(2, 3);

/* ---- sha256.c ----------------------------------------------------------- */

typedef struct sx_sha256 {
    uint32_t state[8];
    uint64_t bytes;
    uint8_t block[64];
    size_t used;
} sx_sha256;

void sx_sha256_init(sx_sha256 *h);
void sx_sha256_update(sx_sha256 *h, const void *data, size_t len);
void sx_sha256_final(sx_sha256 *h, uint8_t digest[32]);
/* Writes 64 lowercase hex characters and a NUL. */
void sx_hex(const uint8_t *bytes, size_t n, char *out);

/* ---- safetensors.c ------------------------------------------------------ */

typedef enum sx_dtype { SX_F32 = 0, SX_F16, SX_BF16 } sx_dtype;

typedef struct sx_tensor_info {
    char *name;
    sx_dtype dtype;
    int ndim;
    int64_t shape[8];
    uint64_t begin, end; /* byte offsets inside the data section */
} sx_tensor_info;

typedef struct sx_meta_entry {
    char *key;
    char *value;
} sx_meta_entry;

typedef struct sx_safetensors {
    const uint8_t *map; /* whole file, mmap'd read-only */
    size_t map_size;
    size_t data_offset; /* 8 + header length */
    sx_tensor_info *tensors;
    size_t n_tensors;
    sx_meta_entry *meta; /* sorted by key */
    size_t n_meta;
} sx_safetensors;

/* Maps and parses a file; errors name the byte offset or tensor at fault. */
siamidx_status sx_safetensors_open(const char *path, sx_safetensors *st, siamidx_error *err);
void sx_safetensors_close(sx_safetensors *st);
const sx_tensor_info *sx_safetensors_find(const sx_safetensors *st, const char *name);
const char *sx_safetensors_meta(const sx_safetensors *st, const char *key);
int64_t sx_tensor_numel(const sx_tensor_info *t);
/* Converts a tensor's data to fp32 into `out` (numel floats). */
void sx_safetensors_read_f32(const sx_safetensors *st, const sx_tensor_info *t, float *out);
const char *sx_dtype_name(sx_dtype dtype); /* "F32", "F16", "BF16" */
size_t sx_dtype_size(sx_dtype dtype);

/* Half-precision conversions (round to nearest even, as numpy/PyTorch). */
float sx_f16_to_f32(uint16_t h);
float sx_bf16_to_f32(uint16_t h);
uint16_t sx_f32_to_f16(float f);
uint16_t sx_f32_to_bf16(float f);

/* One tensor to write: fp32 values, stored as the writer's `store_as`. */
typedef struct sx_tensor_out {
    const char *name;
    const float *data;
    int ndim;
    int64_t shape[8];
    const void *raw;   /* when set: these bytes, already in raw_dtype, instead of data */
    sx_dtype raw_dtype; /* (copies keep a tensor's bytes and dtype whatever store_as) */
} sx_tensor_out;

/*
 * Writes a safetensors file atomically (temporary file, fsync, rename): the
 * header holds `__metadata__` (keys sorted) then the tensors in the order
 * given, data contiguous, header padded with spaces to a multiple of 8.
 * tools/convert_torchvision.py writes byte-identical files.
 */
siamidx_status sx_safetensors_write(const char *path, const sx_meta_entry *meta, size_t n_meta,
                                    const sx_tensor_out *tensors, size_t n, sx_dtype store_as,
                                    siamidx_error *err);

/* ---- model.c ------------------------------------------------------------ */

/* A convolution with BatchNorm folded in: y = W * x + b. */
typedef struct sx_conv {
    int cin, cout, k, stride, pad; /* square kernels only (ResNets use 7, 3, 1) */
    float *w;                      /* [cout][cin * k * k] */
    float *b;                      /* [cout] */
} sx_conv;

typedef struct sx_block {
    sx_conv c1, c2, c3; /* c3 only in Bottleneck blocks */
    sx_conv down;       /* valid when has_down */
    int has_down;
    int stage; /* 1..4 */
} sx_block;

typedef enum sx_resize_policy {
    SX_RESIZE_SHORTER_CROP = 0, /* torchvision eval: Resize(resize) + CenterCrop(input) */
    SX_RESIZE_SQUASH            /* resize straight to input x input, aspect not kept */
} sx_resize_policy;

typedef struct sx_preprocess_cfg {
    int input_size;  /* side of the square network input */
    int resize_size; /* shorter side after resize (SHORTER_CROP) */
    sx_resize_policy policy;
    float mean[3], std[3];
} sx_preprocess_cfg;

typedef struct siamidx_head sx_head; /* Siamese head (head.c); may be NULL */

struct siamidx_model {
    char *path;
    char *arch;     /* "resnet18" ... "resnet152" */
    int bottleneck; /* 1 for resnet50/101/152 */
    int n_stages;   /* 1..4: how many of layer1..layer4 the model has */
    sx_conv stem;   /* conv1 + bn1 */
    sx_block *blocks;
    int n_blocks;
    int stage_channels[4]; /* output channels of layer1..4 */
    int feat_dim;          /* channels after the last present stage */
    float *fc_w;           /* [n_classes][feat_dim], or NULL */
    float *fc_b;
    int n_classes;
    sx_preprocess_cfg pre;
    siamidx_pool pool; /* default pooling from metadata */
    float gem_p;
    unsigned style_stages; /* bit s-1 set: stage s contributes mean+std */
    sx_meta_entry *meta;   /* copy of __metadata__, sorted by key */
    size_t n_meta;
    sx_head *head; /* default head stored in the model file, or NULL */
    char fingerprint[65];
    void *weights;     /* one allocation holding every folded tensor */
    size_t n_params;   /* parameters of the folded encoder (+ fc) */
    int stage_blocks[4]; /* blocks in layer1..4 (first block of stage s: sum of earlier) */
};

/* ---- image.c ------------------------------------------------------------ */

typedef struct sx_image {
    int width, height;
    uint8_t *rgb; /* width * height * 3, rows packed */
} sx_image;

/*
 * Decodes JPEG/PNG/BMP/GIF(first frame)/TGA to 8-bit RGB. Grayscale is
 * expanded, alpha dropped (as PIL's convert('RGB')), 16-bit reduced, JPEG EXIF
 * orientation applied. Images with more than max_pixels pixels (0: default)
 * are refused from their header, before any pixel is decoded.
 */
siamidx_status sx_image_load(const char *path, uint64_t max_pixels, sx_image *out,
                             siamidx_error *err);
siamidx_status sx_image_decode(const uint8_t *data, size_t len, uint64_t max_pixels,
                               sx_image *out, siamidx_error *err);
void sx_image_free(sx_image *img);

/* ---- preprocess.c ------------------------------------------------------- */

/*
 * Resizes (antialiased, as PIL's bilinear resize that torchvision uses),
 * crops and normalises an RGB image into a CHW float tensor of
 * 3 * input_size * input_size values.
 */
siamidx_status sx_preprocess(const uint8_t *rgb, int width, int height, size_t stride,
                             const sx_preprocess_cfg *cfg, float *out_chw, siamidx_error *err);

/* ---- conv.c ------------------------------------------------------------- */

/*
 * Activations inside the encoder are laid out C x (N*H*W) ("CNHW"), so that a
 * whole batch goes through one GEMM per convolution:
 *   out[cout, N*Ho*Wo] = W[cout, cin*k*k] x col[cin*k*k, N*Ho*Wo]  (+ bias, relu)
 * A 1x1 stride-1 convolution needs no im2col at all.
 *
 * `col` must hold sx_conv_col_floats() floats (0 for 1x1 stride-1).
 */
size_t sx_conv_col_floats(const sx_conv *c, int n, int h, int w);
void sx_conv_out_size(const sx_conv *c, int h, int w, int *ho, int *wo);
void sx_conv_forward(const sx_conv *c, const float *in, int n, int h, int w, float *col,
                     float *out, int relu);
/*
 * The general form: `in_nchw` reads the input as [n][cin][h][w] (the network
 * input; not for 1x1 stride-1 convolutions); `accumulate` adds W * x to what
 * `out` already holds (the residual) before the bias and ReLU.
 */
void sx_conv_run(const sx_conv *c, const float *in, int in_nchw, int n, int h, int w, float *col,
                 float *out, int relu, int accumulate);

/* ---- encoder.c ---------------------------------------------------------- */

typedef enum sx_encoder_output {
    SX_OUT_EMBEDDING = 0, /* pooled per `pool`, L2-normalised */
    SX_OUT_POOLED,        /* raw global average pool [n, feat_dim] */
    SX_OUT_LOGITS         /* fc output [n, n_classes] */
} sx_encoder_output;

/*
 * A workspace for running `model` on up to max_batch images of h x w: every
 * activation buffer is planned and allocated once, here.
 */
typedef struct sx_encoder sx_encoder;
siamidx_status sx_encoder_new(const siamidx_model *model, int max_batch, int h, int w,
                              sx_encoder **out, siamidx_error *err);
void sx_encoder_free(sx_encoder *enc);
/* x: [n, 3, h, w] NCHW with n <= max_batch. */
siamidx_status sx_encoder_run(sx_encoder *enc, const float *x, int n, sx_encoder_output what,
                              siamidx_pool pool, float *out, siamidx_error *err);
/* Number of floats one image produces for `what` / `pool`. */
size_t sx_output_dim(const siamidx_model *model, sx_encoder_output what, siamidx_pool pool);

/* ---- collection.c / csv.c ------------------------------------------------ */

/*
 * An RFC 4180 CSV reader that streams a file (or a memory buffer). Fields
 * may be quoted ("" escapes, embedded commas and line breaks); CRLF, LF or CR
 * line ends; a UTF-8 BOM is skipped; blank lines are skipped.
 */
typedef struct sx_csv sx_csv;

siamidx_status sx_csv_open(const char *path, sx_csv **out, siamidx_error *err);
/* Reads `data` (not copied: it must outlive the reader); `name` is for messages. */
siamidx_status sx_csv_open_memory(const char *data, size_t len, const char *name, sx_csv **out,
                                  siamidx_error *err);
void sx_csv_close(sx_csv *csv);
/*
 * Reads the next record: *fields (NUL-terminated, valid until the next call)
 * and *n fields; *n == 0 at the end of the input. A malformed record gives
 * SIAMIDX_ERR_CSV ("FILE: line N: reason": unterminated quoted field, quote
 * inside an unquoted field, character after a closing quote, NUL byte,
 * record over 1 MiB) and the next call resumes at the next line. A read error
 * gives SIAMIDX_ERR_IO and ends the input.
 */
siamidx_status sx_csv_next(sx_csv *csv, char ***fields, size_t *n, siamidx_error *err);
/* The line (1-based) where the record last returned (or refused) began. */
long sx_csv_line(const sx_csv *csv);
const char *sx_csv_name(const sx_csv *csv);

/* Strict UTF-8 (no overlongs, surrogates, > U+10FFFF): n when valid, else the
   offset of the first bad byte. */
size_t sx_utf8_check(const char *s, size_t n);

/* One image of a collection. Optional fields are NULL when absent or empty. */
typedef struct sx_collection_entry {
    char *path;     /* as given: the CSV's value, or COLLECTION/ARTIST/.../IMAGE */
    char *resolved; /* absolute, lexically normalised ("." and ".." removed) */
    char *artist;
    char *title, *style, *genre, *date;
    char *source_repo, *source_path; /* provenance (evaluation groups by them) */
    long line; /* CSV line, 0 for directory collections */
} sx_collection_entry;

/* A skipped entry or dropped field, not fatal to the load. */
typedef struct sx_collection_issue {
    siamidx_status status; /* SIAMIDX_ERR_CSV for rows, _IO for unreadable
                              directories, _INVALID_ARGUMENT for unusable names */
    long line;             /* CSV line, 0 for directory collections */
    char *path;            /* the entry's path as given, or NULL */
    char *message;         /* one line, naming the file and line or path */
} sx_collection_issue;

typedef struct sx_collection {
    sx_collection_entry *entries; /* CSV: file order; directory: sorted by path */
    size_t n_entries;
    sx_collection_issue *issues; /* in the order found */
    size_t n_issues;
    size_t n_artists; /* distinct artists among entries */
} sx_collection;

/*
 * Loads a collection for `siamidx build`:
 *  - a directory: every .jpg .jpeg .png .bmp .gif .tga (any case) below it,
 *    recursively, hidden names skipped, symlinks followed but never in a
 *    loop; the artist is the first path component below the directory, and
 *    images at its top level (no artist) are reported and skipped;
 *  - a CSV file with a header naming `filename` (or `new_filename`) and
 *    `artist`, optionally `title`, `style`, `genre`, `date`, `source_repo`,
 *    `source_path` (where the image came from), in any order,
 *    any case, other columns ignored. Relative paths start from `root` when
 *    not NULL, else from the CSV's folder. Rows with an empty filename or
 *    artist, a wrong number of fields, a malformed record, invalid UTF-8 in
 *    the filename or artist, or a path listed before are reported as issues
 *    and skipped (invalid UTF-8 in an optional field drops only that field).
 * Fatal: SIAMIDX_ERR_NOT_FOUND / _IO when the collection cannot be read,
 * SIAMIDX_ERR_CSV when there is no header or it lacks a required column
 * (named). Image files are not opened or checked for existence here.
 */
siamidx_status sx_collection_load(const char *collection, const char *root, sx_collection *out,
                                  siamidx_error *err);
void sx_collection_free(sx_collection *c);

/* A row of a pairs CSV (Kaggle submission_info.csv: index,image1,image2). */
typedef struct sx_pair_row {
    const char *index; /* the `index` column, verbatim */
    const char *image1, *image2;
    long line;
} sx_pair_row;

/*
 * Streams a pairs CSV: a header with `index`, `image1`, `image2` (any order,
 * other columns ignored; a missing one is SIAMIDX_ERR_CSV naming it). Each
 * row with a wrong field count, an empty value, invalid UTF-8 or a malformed
 * record is SIAMIDX_ERR_CSV naming the file and line; reading may go on.
 */
typedef struct sx_pairs_csv sx_pairs_csv;
siamidx_status sx_pairs_csv_open(const char *path, sx_pairs_csv **out, siamidx_error *err);
/* row's strings are valid until the next call; OK with *done = 1 at the end. */
siamidx_status sx_pairs_csv_next(sx_pairs_csv *p, sx_pair_row *row, int *done,
                                 siamidx_error *err);
void sx_pairs_csv_close(sx_pairs_csv *p);

/* ---- pairs.c ------------------------------------------------------------ */

/* xoshiro256** seeded through splitmix64: reproducible, no global state. */
typedef struct sx_rng {
    uint64_t s[4];
} sx_rng;

void sx_rng_seed(sx_rng *r, uint64_t seed);
uint64_t sx_rng_next(sx_rng *r);
double sx_rng_uniform(sx_rng *r);         /* [0, 1) */
size_t sx_rng_below(sx_rng *r, size_t n); /* [0, n), n > 0 */
void sx_shuffle(sx_rng *r, size_t *items, size_t n);

/* Images grouped by artist (CSR): group g holds items[start[g] .. start[g+1]). */
typedef struct sx_groups {
    size_t n_groups;
    size_t *start; /* n_groups + 1 */
    size_t *items; /* row numbers into the caller's embedding matrix */
    int32_t *label; /* artist id of each group */
    size_t n_pairable; /* groups with at least two images */
} sx_groups;

/* Groups rows[0..n) by label[rows[i]]; groups keep row order. */
siamidx_status sx_groups_build(const int32_t *label, const size_t *rows, size_t n,
                               sx_groups *g, siamidx_error *err);
void sx_groups_free(sx_groups *g);

typedef struct sx_pair {
    uint32_t a, b; /* rows */
    uint8_t same;
} sx_pair;

/*
 * Fills out[0..n): even slots same-artist, odd slots different-artist. The
 * artist (or artist pair) is drawn uniformly, then images uniformly inside
 * it, so the largest artists do not dominate and no image is discarded.
 * Needs a group with two images and two groups; returns 0 when impossible.
 */
size_t sx_sample_pairs(const sx_groups *g, size_t n, sx_rng *rng, sx_pair *out);

/* ---- metrics.c ---------------------------------------------------------- */

/* ROC AUC with ties counted half (Mann-Whitney). NaN without both classes. */
double sx_roc_auc(const float *score, const uint8_t *label, size_t n);
/* Equal error rate: where false accept rate meets false reject rate. */
double sx_eer(const float *score, const uint8_t *label, size_t n);
/* True accept rate at the threshold whose false accept rate is <= far. */
double sx_tar_at_far(const float *score, const uint8_t *label, size_t n, double far);
double sx_accuracy_at(const float *score, const uint8_t *label, size_t n, double threshold);
/* Threshold (one of the scores, or the midpoint between two) maximising accuracy. */
double sx_best_threshold(const float *score, const uint8_t *label, size_t n);
/* Expected calibration error over `bins` equal-width probability bins. */
double sx_ece(const float *prob, const uint8_t *label, size_t n, int bins);

/* ---- head.c ------------------------------------------------------------- */

/* Pair features, concatenated in this order; all symmetric in a and b. */
enum {
    SX_FEAT_ABS = 1,  /* |za - zb| */
    SX_FEAT_SQ = 2,   /* (za - zb)^2 */
    SX_FEAT_PROD = 4, /* za * zb */
    SX_FEAT_COS = 8   /* za . zb (one value) */
};

/* What training measured on its validation pairs, stored with the head. */
typedef struct sx_head_report {
    double val_auc, val_acc, val_ece;
    int epochs_run, best_epoch;
    size_t n_train, n_val, n_test, n_unseen; /* images in each role */
} sx_head_report;

/*
 * P(same | a, b) = sigmoid(platt_a * (w . f(za, zb) + bias) + platt_b) with
 * z = normalise((e - mean) / std): per-dimension standardisation with the
 * training images' statistics, then L2.
 */
struct siamidx_head {
    int dim;
    unsigned features;
    int n_feat;
    float *mean, *inv_std; /* [dim] */
    float *w;              /* [n_feat] */
    float bias;
    float platt_a, platt_b;
    float threshold; /* on the calibrated probability */
    /* attribution: P(artist) = sum_i exp(s*l_i) / (exp(u) + sum_all exp(s*l_j)),
       l: calibrated pair logits of the candidates */
    float attr_scale, attr_unknown;
    sx_head_report report;
    char *info; /* "key=value" lines: seed, split, held-out artists and images */
};

int sx_head_feature_count(unsigned features, int dim);
siamidx_status sx_head_new(int dim, unsigned features, sx_head **out, siamidx_error *err);
/* Standardises and normalises one embedding into z[dim]. */
void sx_head_project(const sx_head *h, const float *e, float *z);
/* Uncalibrated logit from two projected embeddings; `feat` holds n_feat floats. */
float sx_head_raw_logit(const sx_head *h, const float *za, const float *zb, float *feat);
/* Calibrated logit (platt applied) from two projected embeddings. */
float sx_head_logit(const sx_head *h, const float *za, const float *zb, float *feat);
float sx_sigmoid(float x);

/* Bytes: "SIAMIDX-HEAD 1\n", key=value lines, "data\n", float32 LE arrays. */
siamidx_status sx_head_to_blob(const sx_head *h, uint8_t **blob, size_t *len,
                               siamidx_error *err);
siamidx_status sx_head_from_blob(const uint8_t *blob, size_t len, sx_head **out,
                                 siamidx_error *err);
/*
 * The model file's default head: tensors head.mean, head.std, head.w,
 * head.params ([bias, platt_a, platt_b, threshold, attr_scale, attr_unknown])
 * and metadata head.features ("abs,sq,cos"). *out stays NULL when the file
 * has no head.* tensors.
 */
siamidx_status sx_head_from_safetensors(const sx_safetensors *st, sx_head **out,
                                        siamidx_error *err);
/* "abs,cos": the features' names as head.features and the blob spell them. */
void sx_head_features_string(unsigned features, char *out, size_t cap);

typedef struct sx_train_opts {
    int epochs;            /* maximum; early stopping on validation AUC */
    uint64_t seed;
    double val_fraction;   /* of seen-artist images: half validation, half test */
    int holdout_artists;   /* whole artists kept out of training (unseen test) */
    unsigned features;
    float l2, lr;
    size_t pairs_per_epoch;
    int patience;
    int verbose; /* progress lines on stderr */
} sx_train_opts;

void sx_train_opts_init(sx_train_opts *o);

enum { SX_ROLE_TRAIN = 0, SX_ROLE_VAL, SX_ROLE_TEST, SX_ROLE_UNSEEN };

/* What training sees: n embeddings of dim floats with an artist id each. */
typedef struct sx_train_data {
    size_t n;
    int dim;
    const float *emb;
    const int32_t *artist;       /* 0 .. n_artists-1 */
    int n_artists;
    const char *const *artist_names; /* [n_artists], for the split record; may be NULL */
    const char *const *keys;     /* [n] image names for the split record; may be NULL */
} sx_train_data;

/*
 * Splits by image (roles[i] receives SX_ROLE_*), trains, calibrates and picks
 * the threshold; fills h->report and h->info. roles may be NULL.
 */
siamidx_status sx_head_train(const sx_train_data *d, const sx_train_opts *o, uint8_t *roles,
                             sx_head **out, siamidx_error *err);
/* Roles as sx_head_train draws them (deterministic in seed). */
siamidx_status sx_split_roles(const sx_train_data *d, const sx_train_opts *o, uint8_t *roles,
                              siamidx_error *err);

/* model_head.c: a trained head into a model file, as its default head. */

/*
 * Writes out_path: a copy of model's file with `head` as its default head
 * (tensors head.mean, head.std, head.w, head.params in F32; metadata
 * head.features and the validation numbers head.val_auc, head.val_accuracy,
 * head.val_ece, head.threshold, head.images, head.trained_on), replacing any
 * head.* it had. Every other tensor keeps its bytes and dtype and every
 * other metadata key its value, so the fingerprint stays; the written file
 * is loaded back to check that. Atomic (temporary file, rename); out_path
 * may be the model's own path.
 */
siamidx_status sx_model_write_head(const siamidx_model *model, const sx_head *head,
                                   const char *trained_on, const char *out_path,
                                   siamidx_error *err);
/*
 * Embeds every image of `collection` (as `build` reads it) with the model file
 * at model_path, trains a head on the embeddings (sx_head_train with o) and
 * writes it into that file (sx_model_write_head). *out: the head (free it);
 * *n_failed: images that could not be embedded (left out). progress may be NULL.
 */
siamidx_status sx_model_train_head(const char *model_path, const char *collection,
                                   const sx_train_opts *o, siamidx_progress_fn progress,
                                   void *progress_ctx, sx_head **out, size_t *n_failed,
                                   siamidx_error *err);

/* ---- answer.c ----------------------------------------------------------- */

/* Candidates an attribution scores for a top-k answer (a few times k). */
size_t sx_attr_candidates(size_t k);

/*
 * Per-artist aggregation of candidates' calibrated pair logits l_i:
 *   P(artist a) = sum_{i by a} exp(s l_i) / (exp(u) + sum_j exp(s l_j)),
 *   P(unknown)  = exp(u) / (...), so the artists sum to at most 1.
 * artist_prob (n_artists, zeroed here) receives P(a); returns P(unknown).
 */
double sx_aggregate(const float *logit, const int32_t *artist, size_t n, float scale,
                    float unknown, int n_artists, double *artist_prob);

/*
 * Scores a query against candidates (raw embeddings, dim floats each) and
 * aggregates: pair_prob[i] (may be NULL) the candidate's calibrated
 * probability, artist_prob[n_artists] the artists, *p_unknown the rest.
 */
siamidx_status sx_attribute(const sx_head *h, const float *query, const float *const *cand_emb,
                            const int32_t *cand_artist, size_t n, int n_artists, float *pair_prob,
                            double *artist_prob, double *p_unknown, siamidx_error *err);

/*
 * Fits attr_scale and attr_unknown on validation queries (role VAL) against
 * the training images: each query once with its artist among the candidates
 * and once with its artist removed (standing for an artist not indexed).
 */
siamidx_status sx_attribution_fit(sx_head *h, const sx_train_data *d, const uint8_t *roles,
                                  siamidx_error *err);

/* Roles of d's images as recorded in h->info by sx_head_train (keys or "#row"). */
siamidx_status sx_head_roles(const sx_head *h, const sx_train_data *d, uint8_t *roles,
                             siamidx_error *err);

typedef siamidx_pair_metrics sx_pair_eval;
typedef siamidx_attribution_metrics sx_attr_eval;
typedef siamidx_eval_report sx_eval;

/*
 * Pairs among TEST images (seen artists) and among UNSEEN images; attribution
 * of TEST and UNSEEN images against TRAIN+VAL images (the rest of the index).
 */
siamidx_status sx_evaluate(const sx_head *h, const sx_train_data *d, const uint8_t *roles,
                           uint64_t seed, sx_eval *out, siamidx_error *err);

/* ---- train_layers.c / train_net.c / train_optim.c / train_data.c /
 *      trainer.c: training the encoder (CNHW activations, see conv.c) ------ */

#define SX_TR_BN_EPS 1e-5
#define SX_TR_BN_MOMENTUM 0.1

typedef struct sx_tr_conv {
    int cin, cout, k, stride, pad;
} sx_tr_conv;

void sx_tr_conv_out(const sx_tr_conv *c, int h, int w, int *ho, int *wo);
int sx_tr_conv_pointwise(const sx_tr_conv *c);
size_t sx_tr_conv_col_floats(const sx_tr_conv *c, int n, int h, int w);
void sx_tr_conv_forward(const sx_tr_conv *c, const float *wt, const float *in, int n, int h,
                        int w, float *col, float *out);
void sx_tr_conv_backward(const sx_tr_conv *c, const float *wt, const float *in,
                         const float *dout, int n, int h, int w, float *col, float *dw,
                         float *din);
void sx_tr_bn_forward(int c, size_t m, const float *x, const float *gamma, const float *beta,
                      float *run_mean, float *run_var, float *mean, float *invstd, float *y,
                      int relu);
void sx_tr_bn_forward_eval(int c, size_t m, const float *x, const float *gamma,
                           const float *beta, const float *run_mean, const float *run_var,
                           float *y, int relu);
void sx_tr_bn_backward(int c, size_t m, const float *x, const float *dy, const float *gamma,
                       const float *mean, const float *invstd, float *dgamma, float *dbeta,
                       float *dx);
void sx_tr_relu_forward(float *x, size_t n);
void sx_tr_relu_backward(float *dy, const float *y, size_t n);
void sx_tr_add_forward(const float *a, const float *b, float *out, size_t n, int relu);
void sx_tr_add_into(float *acc, const float *g, size_t n);
void sx_tr_maxpool_forward(int c, int n, int h, int w, int k, int stride, int pad,
                           const float *in, float *out, int32_t *argmax);
void sx_tr_maxpool_backward(int c, int n, int h, int w, int ho, int wo, const int32_t *argmax,
                            const float *dout, float *din);
void sx_tr_avgpool_forward(int c, int n, int hw, const float *in, float *out);
void sx_tr_avgpool_backward(int c, int n, int hw, const float *dout, float *din);
void sx_tr_linear_forward(int n, int in, int out, const float *x, const float *wt,
                          const float *b, float *y);
void sx_tr_linear_backward(int n, int in, int out, const float *x, const float *wt,
                           const float *dy, float *dw, float *db, float *dx);
double sx_tr_softmax_ce(int n, int k, const float *logits, const int32_t *labels,
                        float smoothing, float *dlogits, int *correct);
double sx_tr_siamese_bce(int n, int dim, const float *feat, const int32_t *labels,
                         const float *w, float b, float scale, float *dfeat, float *dw,
                         float *db, int *correct);

/* The trainable ResNet (train_net.c). Every parameter lives in one flat
 * array (grads and optimizer moments alike); running statistics in another. */
typedef enum sx_tr_kind { SX_TR_DECAY = 0, SX_TR_NO_DECAY, SX_TR_BUFFER } sx_tr_kind;

typedef struct sx_tr_tensor {
    char name[64]; /* torchvision state_dict name */
    int ndim;
    int64_t shape[4];
    size_t numel, off; /* offset into params (or bufs for SX_TR_BUFFER) */
    sx_tr_kind kind;
    int stage; /* 0 stem, 1..4 layerN, 5 fc / heads */
} sx_tr_tensor;

typedef struct sx_tr_unit { /* conv + BatchNorm (+ ReLU) */
    sx_tr_conv conv;
    int relu, stage;
    size_t w, gamma, beta, rmean, rvar; /* offsets */
    int h_in, w_in, h_out, w_out;
    float *x, *y;          /* conv output, BN(+ReLU) output: [cout][n*h_out*w_out] */
    float *mean, *invstd;  /* batch statistics kept for backward */
} sx_tr_unit;

typedef struct sx_tr_block {
    sx_tr_unit u[3], down;
    int n_units, has_down, stage;
    float *out; /* relu(u[last].y + shortcut) */
} sx_tr_block;

typedef enum sx_tr_objective { SX_TR_CLASSIFY = 0, SX_TR_SIAMESE, SX_TR_BOTH } sx_tr_objective;

typedef struct sx_tr_config {
    char arch[16];   /* resnet18 | resnet34 | resnet50 */
    float width;     /* channel multiplier (1 = torchvision) */
    int n_classes;
    int max_batch, input; /* square input side */
    sx_tr_objective objective;
    float siamese_weight; /* weight of the BCE term with SX_TR_BOTH */
    float label_smoothing;
    int freeze_through; /* -1 none, 0 stem, s: stem..layer s fixed */
} sx_tr_config;

typedef struct sx_tr_net {
    sx_tr_config cfg;
    int bottleneck, stem_ch, feat_dim;
    int stage_blocks[4], stage_ch[4];
    sx_tr_tensor *tensors;
    int n_tensors, cap_tensors;
    float *params, *grads, *bufs;
    size_t n_params, n_bufs;
    sx_tr_unit stem;
    int pool_h, pool_w;
    float *pooled_map;
    int32_t *argmax;
    sx_tr_block *blocks;
    int n_blocks;
    size_t fc_w, fc_b, siam_w, siam_b;
    float *xin, *feat, *dfeat, *logits, *dlogits;
    float *col, *g_a, *g_b, *s1, *s2, *s3;
    int last_n; /* batch size of the last forward */
    const int32_t *last_labels;
} sx_tr_net;

typedef struct sx_tr_stats {
    double loss, ce, bce;
    int correct, pair_correct, n, pairs;
} sx_tr_stats;

siamidx_status sx_tr_net_new(const sx_tr_config *cfg, sx_tr_net **out, siamidx_error *err);
void sx_tr_net_free(sx_tr_net *net);
/* Kaiming-normal convs (fan_out), BN 1/0, PyTorch's Linear default; the last
 * BN of each block at 0 when zero_residual. Deterministic from seed. */
void sx_tr_net_init(sx_tr_net *net, uint64_t seed, int zero_residual);
sx_tr_tensor *sx_tr_net_find(sx_tr_net *net, const char *name);
float *sx_tr_tensor_data(sx_tr_net *net, const sx_tr_tensor *t);
/* Training forward + loss (x: [n,3,S,S] NCHW). BN in train mode except in
 * frozen stages. Fills stats; keeps what backward needs. */
void sx_tr_net_forward(sx_tr_net *net, const float *x, int n, const int32_t *labels,
                       sx_tr_stats *stats);
/* Accumulates gradients of the last forward's loss into net->grads. */
void sx_tr_net_backward(sx_tr_net *net);
/* Inference forward (BN running stats): logits [n][classes] and/or pooled
 * features [n][feat_dim] (either may be NULL). */
void sx_tr_net_eval(sx_tr_net *net, const float *x, int n, float *logits, float *feat);
/* Copies tensors of a torchvision-named safetensors file whose names and
 * shapes match (BN-folded conv biases are skipped); reports how many. */
siamidx_status sx_tr_net_load_init(sx_tr_net *net, const char *path, int *loaded,
                                   int *skipped, siamidx_error *err);

/* AdamW with decoupled weight decay (train_optim.c). */
typedef struct sx_tr_adamw {
    float *m, *v;
    size_t n;
    int64_t t;
    float beta1, beta2, eps, weight_decay;
} sx_tr_adamw;

siamidx_status sx_tr_adamw_new(sx_tr_adamw *opt, size_t n, siamidx_error *err);
void sx_tr_adamw_free(sx_tr_adamw *opt);
void sx_tr_adamw_step(sx_tr_adamw *opt, sx_tr_net *net, float lr);
/* Linear warmup to base_lr over `warmup` steps, then cosine to min_ratio*base. */
float sx_tr_lr(int64_t step, int64_t total, int64_t warmup, float base_lr, float min_ratio);

/* Counter-based randomness: the same (seed, a, b, c) always gives the same
 * stream, so a resumed run reproduces the interrupted one. */
uint64_t sx_tr_hash(uint64_t seed, uint64_t a, uint64_t b, uint64_t c);

/* Training data (train_data.c): a collection split per artist (every artist
 * in both sets), balanced sampling, decoded images cached in memory. */
typedef struct sx_tr_data {
    sx_collection coll;
    const char **artists; /* sorted; label = index */
    int n_artists;
    int *label;           /* per entry */
    int *train, n_train, *val, n_val; /* entry indices */
    int *artist_count;    /* training images per artist */
    int *artist_first;    /* [n_artists + 1]: offsets into by_artist */
    int *by_artist;       /* training entries grouped by artist */
    double *cum;          /* cumulative sampling weights over train */
    sx_image *cache;      /* decoded images, filled on first use */
    char fingerprint[65]; /* SHA-256 of the sorted "path\tartist" lines */
} sx_tr_data;

siamidx_status sx_tr_data_open(const char *collection, double val_fraction, double balance,
                               uint64_t seed, sx_tr_data *d, siamidx_error *err);
void sx_tr_data_close(sx_tr_data *d);
/* n_train entries for one epoch (deterministic in seed, epoch). */
void sx_tr_data_epoch(const sx_tr_data *d, uint64_t seed, int epoch, int pairs, int *order);

/* One batch prepared by a producer thread (started, then waited for). */
typedef struct sx_tr_job {
    sx_tr_data *data;
    const int *entries;
    int n, input, augment;
    uint64_t key; /* crop/flip randomness */
    float mean[3], std[3];
    float *x;        /* [n][3][input][input] */
    int32_t *labels; /* [n] */
    int failed;      /* images that did not decode (black inputs) */
    char first_error[SIAMIDX_ERROR_MESSAGE_MAX];
    void *thread; /* the producer's pthread_t, while running */
} sx_tr_job;

void sx_tr_job_start(sx_tr_job *job);
void sx_tr_job_wait(sx_tr_job *job);

/* The training loop (trainer.c). */
typedef struct sx_tr_val {
    double auc, eer;   /* same-artist verification over all validation pairs (cosine) */
    double top1, top5; /* artist classification */
    double loss;
} sx_tr_val;

typedef struct sx_tr_options {
    const char *collection, *output;
    const char *init;       /* torchvision-named safetensors to start from, or NULL */
    const char *resume;     /* checkpoint to continue, or NULL */
    const char *checkpoint; /* where checkpoints go (NULL: OUTPUT.ckpt) */
    const char *command;    /* recorded in the model's metadata */
    sx_tr_config net;       /* n_classes is filled from the data */
    int epochs;
    int resize;             /* inference resize recorded in the model (>= input) */
    int embed_size;         /* inference input_size recorded in the model (0: resize) */
    int max_steps;          /* stop after this many steps of this run (0: no limit) */
    int max_steps_no_checkpoint;
    int zero_residual;      /* zero-init the last BN gamma of each block */
    float lr, weight_decay, warmup_epochs, min_lr_ratio;
    float balance;          /* sampling weight count^-balance per artist */
    float val_fraction;
    double log_seconds;     /* progress line interval */
    uint64_t seed;
    const volatile int *stop; /* raised by a signal handler: checkpoint and return */
} sx_tr_options;

/* Trains; SIAMIDX_ERR_INTERRUPTED after *stop (checkpoint written). */
siamidx_status sx_train_encoder(const sx_tr_options *o, siamidx_error *err);

/* ---- store.c: the LMDB store, the index's source of truth ---------------- */

typedef struct MDB_txn MDB_txn;
typedef struct sx_store sx_store;
typedef struct sx_wtxn sx_wtxn; /* a write transaction with its change log */

#define SX_STORE_FORMAT 1

/* The durable description of an index (meta DB). */
typedef struct sx_store_meta {
    char fingerprint[65];
    char arch[32];
    char pool[16];
    char index_type[16]; /* flat | hnsw | ivf | ivfpq */
    uint32_t dim;
    uint64_t generation; /* +1 in every write transaction that changes records */
    uint64_t next_id;
} sx_store_meta;

/* One image. Strings are NUL-terminated; decoded records point into LMDB's
   memory and live as long as the transaction. */
typedef struct sx_record {
    uint64_t id;
    uint32_t artist_id;
    uint64_t size;
    int64_t mtime_ns;
    uint8_t hash[32]; /* SHA-256 of the file's bytes */
    const char *path, *resolved, *title, *style, *genre, *date; /* optional ones may be "" */
    const char *source_repo, *source_path; /* provenance, may be "" (evaluation groups by it) */
    uint32_t dim;
    const void *embedding; /* dim float32, possibly unaligned: copy with sx_record_embedding */
} sx_record;

void sx_record_embedding(const sx_record *r, float *out);

/* Opens DIR/data.mdb. create: make the directory and an empty index if absent.
   A foreign or damaged file gives SIAMIDX_ERR_INDEX_CORRUPT. */
siamidx_status sx_store_open(const char *dir, int read_only, int create, sx_store **out,
                             siamidx_error *err);
void sx_store_close(sx_store *st);
/* Disk bytes of data.mdb. */
uint64_t sx_store_file_bytes(const sx_store *st);

/* A read transaction on the last committed state (MVCC); end with sx_store_read_end. */
siamidx_status sx_store_read_begin(sx_store *st, MDB_txn **txn, siamidx_error *err);
void sx_store_read_end(MDB_txn *txn);
MDB_txn *sx_wtxn_txn(sx_wtxn *w);

/*
 * Runs fn inside ONE write transaction and commits it; on MDB_MAP_FULL the
 * map is doubled and fn runs again from scratch, so fn must only write
 * through the transaction. Changes made through sx_store_put_record /
 * sx_store_delete_record are logged under a new generation.
 */
typedef siamidx_status (*sx_write_fn)(sx_wtxn *w, void *ctx, siamidx_error *err);
siamidx_status sx_store_write(sx_store *st, sx_write_fn fn, void *ctx, siamidx_error *err);

siamidx_status sx_store_get_meta(sx_store *st, MDB_txn *txn, sx_store_meta *m,
                                 siamidx_error *err);
/* Sets fingerprint/arch/pool/dim/index_type of an index; a changed index_type
   is logged so the FAISS snapshot is rebuilt. */
siamidx_status sx_store_set_meta(sx_wtxn *w, const sx_store_meta *m, siamidx_error *err);

/* Named blobs in the meta DB (e.g. a trained head). NOT_FOUND when absent. */
siamidx_status sx_store_blob_get(sx_store *st, MDB_txn *txn, const char *name,
                                 const void **data, size_t *len, siamidx_error *err);
siamidx_status sx_store_blob_put(sx_wtxn *w, const char *name, const void *data, size_t len,
                                 siamidx_error *err);

/* Records: get by id, find by resolved path / content hash (NOT_FOUND when absent). */
siamidx_status sx_store_get_record(sx_store *st, MDB_txn *txn, uint64_t id, sx_record *r,
                                   siamidx_error *err);
siamidx_status sx_store_find_path(sx_store *st, MDB_txn *txn, const char *resolved,
                                  uint64_t *id, siamidx_error *err);
siamidx_status sx_store_find_hash(sx_store *st, MDB_txn *txn, const uint8_t hash[32],
                                  uint64_t *id, siamidx_error *err);
/* Adds r under a new id (r->id receives it) for artist `artist` (created when new). */
siamidx_status sx_store_put_record(sx_wtxn *w, sx_record *r, const char *artist,
                                   siamidx_error *err);
siamidx_status sx_store_delete_record(sx_wtxn *w, uint64_t id, siamidx_error *err);

/* Every record in id order, in one read txn; fn returns non-zero to stop. */
typedef int (*sx_record_fn)(void *ctx, const sx_record *r);
siamidx_status sx_store_foreach_record(sx_store *st, MDB_txn *txn, sx_record_fn fn, void *ctx,
                                       siamidx_error *err);
/* Ids of one artist's records (malloc'd array). */
siamidx_status sx_store_artist_records(sx_store *st, MDB_txn *txn, uint32_t artist_id,
                                       uint64_t **ids, size_t *n, siamidx_error *err);
uint64_t sx_store_count(sx_store *st, MDB_txn *txn); /* number of records */

/* Artists: name of an id (pointer into LMDB memory), id of a name, image count. */
siamidx_status sx_store_artist_name(sx_store *st, MDB_txn *txn, uint32_t id, const char **name,
                                    uint64_t *count, siamidx_error *err);
siamidx_status sx_store_artist_id(sx_store *st, MDB_txn *txn, const char *name, uint32_t *id,
                                  siamidx_error *err);
typedef int (*sx_artist_fn)(void *ctx, uint32_t id, const char *name, uint64_t count);
siamidx_status sx_store_foreach_artist(sx_store *st, MDB_txn *txn, sx_artist_fn fn, void *ctx,
                                       siamidx_error *err);

/* The change log: what generation g added and removed; NOT_FOUND when pruned. */
enum { SX_CHANGE_REBUILD = 1 }; /* the FAISS index must be rebuilt from scratch */
typedef struct sx_change {
    uint32_t flags;
    size_t n_added, n_removed;
    uint64_t *added, *removed; /* malloc'd */
} sx_change;
siamidx_status sx_store_get_change(sx_store *st, MDB_txn *txn, uint64_t gen, sx_change *c,
                                   siamidx_error *err);
void sx_change_free(sx_change *c);
/* Drops log entries up to and including `gen` (a snapshot covers them). */
siamidx_status sx_store_prune_changes(sx_store *st, uint64_t gen, siamidx_error *err);
/* Every consistency problem (decoding, lookups both ways, artist counts) to fn. */
siamidx_status sx_store_verify(sx_store *st, MDB_txn *txn, siamidx_problem_fn fn, void *ctx,
                               size_t *n_problems, siamidx_error *err);

/* ---- lock.c: one writer process per index --------------------------------- */

typedef struct sx_lock sx_lock;
/* flock()s DIR/writer.lock and writes our PID in it. Without wait, a held lock
   gives SIAMIDX_ERR_INDEX_LOCKED naming the holder's PID. */
siamidx_status sx_lock_acquire(const char *dir, int wait, sx_lock **out, siamidx_error *err);
void sx_lock_release(sx_lock *l);

/* ---- vindex.c: the FAISS index, derived from the store --------------------- */

typedef struct sx_vindex sx_vindex;
/* Loads the newest snapshot in dir (none: an empty index at generation 0). */
siamidx_status sx_vindex_load(const char *dir, uint32_t dim, sx_vindex **out,
                              siamidx_error *err);
void sx_vindex_free(sx_vindex *v);
/* Brings the index to the state of `txn` (log catch-up, or a rebuild). */
siamidx_status sx_vindex_sync(sx_vindex *v, sx_store *st, MDB_txn *txn, siamidx_error *err);
uint64_t sx_vindex_generation(const sx_vindex *v);
const char *sx_vindex_description(const sx_vindex *v); /* "Flat", "HNSW32", "IVF94,Flat" ... */
int64_t sx_vindex_ntotal(const sx_vindex *v);
/* Atomically writes the snapshot (tmp + fsync + rename) and drops older ones. */
siamidx_status sx_vindex_save(sx_vindex *v, const char *dir, siamidx_error *err);
/* Newest snapshot's generation on disk, 0 when none. */
uint64_t sx_vindex_disk_generation(const char *dir);
/* n queries: ids[n*k] (-1 when fewer) and inner products sims[n*k]. */
siamidx_status sx_vindex_search(const sx_vindex *v, const float *q, size_t n, int k,
                                int64_t *ids, float *sims, siamidx_error *err);
/* Stored vector of an id (0: ok; non-zero: absent or not reconstructible). */
int sx_vindex_reconstruct(const sx_vindex *v, int64_t id, float *out);
/* Ids the index holds (sorted, malloc'd); SIAMIDX_ERR_UNSUPPORTED when unknown. */
siamidx_status sx_vindex_ids(const sx_vindex *v, int64_t **ids, size_t *n, siamidx_error *err);

/* ---- index.c ------------------------------------------------------------- */

/* Opens an index for embeddings of `dim` from the model of `fingerprint`
   (NULL: any; then dim/arch/pool may be 0/NULL) -- lets tests and benches
   work with precomputed embeddings. */
siamidx_status sx_index_open_raw(const char *dir, const char *fingerprint, uint32_t dim,
                                 const char *arch, const char *pool,
                                 const siamidx_index_options *opt, siamidx_index **out,
                                 siamidx_error *err);

/* An image with its precomputed embedding, for sx_index_add_embeddings. */
typedef struct sx_index_item {
    const char *path, *resolved, *artist;
    const char *title, *style, *genre, *date; /* may be NULL */
    const char *source_repo, *source_path;    /* may be NULL */
    uint64_t size;
    int64_t mtime_ns;
    uint8_t hash[32];
    const float *embedding; /* dim floats */
} sx_index_item;

/* Adds items in one write transaction (an item whose resolved path is already
   indexed replaces that record). */
siamidx_status sx_index_add_embeddings(siamidx_index *idx, const sx_index_item *items, size_t n,
                                       siamidx_error *err);
sx_store *sx_index_store(siamidx_index *idx);

/*
 * The artist-scoring step of a query: from the neighbours (decreasing
 * similarity, read in `txn`) and the query embedding, fills res->artists
 * (at most k, decreasing probability, summing to <= 1). The Siamese head
 * replaces this function.
 */
siamidx_status sx_index_score_artists(siamidx_index *idx, MDB_txn *txn, const float *query,
                                      siamidx_neighbor *nb, size_t n_nb, int k,
                                      siamidx_query_result *res, siamidx_error *err);
/*
 * The head's artist scores (answer.c): each neighbour's pair probability
 * into nb[i].probability, artists and res->unknown from sx_attribute.
 * SIAMIDX_ERR_NO_HEAD when the index has no trained head (the caller then
 * falls back to similarities).
 */
siamidx_status sx_head_score_artists(siamidx_index *idx, MDB_txn *txn, const float *query,
                                     siamidx_neighbor *nb, size_t n_nb, int k,
                                     siamidx_query_result *res, siamidx_error *err);
/* The stored embedding of an image whose bytes the index holds (SHA-256),
   else SIAMIDX_ERR_NOT_FOUND (answer.c). */
siamidx_status sx_index_cached_embedding(siamidx_index *idx, const char *path, float *out,
                                         size_t dim, siamidx_error *err);

#endif /* SIAMIDX_INTERNAL_H */

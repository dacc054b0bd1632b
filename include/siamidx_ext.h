/*
 * siamidx_ext.h - the extension API of libsiamidx: LESS STABLE than siamidx.h.
 *
 * What the `siamidx` command-line tool needs beyond the public contract --
 * training the encoder, writing a head into a model file, the pairs CSV
 * reader, the encoder at a fixed batch, a model's full description, the
 * records of an index -- exported from the shared library so that any
 * program can do what the tool does. The conventions of siamidx.h hold
 * (status codes with messages, no global state, NULL-safe frees), but these
 * declarations may change between minor versions: structures here can grow
 * fields, and a function can be replaced by a public one in siamidx.h.
 * Initialise option structures with their *_init function, never by hand.
 */
#ifndef SIAMIDX_EXT_H
#define SIAMIDX_EXT_H

#include "siamidx.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- models ---------------------------------------------------------------- */

/* The path the model was loaded from. */
const char *siamidx_model_path(const siamidx_model *model);

typedef struct siamidx_model_description {
    const char *path, *arch; /* live as long as the model */
    int bottleneck;          /* Bottleneck blocks (resnet50/101/152) */
    int n_stages;            /* 1..4 */
    int stage_channels[4];
    int input_size, resize_size;
    int squash;              /* 1: resized to input x input; 0: shorter side + centre crop */
    float mean[3], std[3];
    siamidx_pool pool;       /* the default pooling */
    float gem_p;
    unsigned style_stages;   /* bit s-1: stage s feeds the style pooling */
    size_t embedding_dim, n_params;
    int n_classes;
    const char *fingerprint;
    const char *kernel;      /* the convolutions' GEMM: "avx512", "avx2" or "blas" (SIAMIDX_CPU) */
} siamidx_model_description;

void siamidx_model_describe(const siamidx_model *model, siamidx_model_description *out);

/* ---- the encoder at a fixed batch (embed --tensor) --------------------------------- */

typedef struct siamidx_encoder siamidx_encoder;

/* A workspace for up to max_batch preprocessed [3, h, w] inputs, allocated once. */
siamidx_status siamidx_encoder_new(const siamidx_model *model, int max_batch, int h, int w,
                                   siamidx_encoder **out, siamidx_error *err);
void siamidx_encoder_free(siamidx_encoder *enc);
/* x: [n, 3, h, w] with n <= max_batch; out: n * siamidx_model_output_dim floats. */
siamidx_status siamidx_encoder_run(siamidx_encoder *enc, const float *x, int n,
                                   siamidx_output output, float *out, siamidx_error *err);
/* Floats per image of `output`; 0 for logits of a model without fc. */
size_t siamidx_model_output_dim(const siamidx_model *model, siamidx_output output);

/* ---- training the encoder (train-encoder) --------------------------------------- */

typedef enum siamidx_encoder_objective {
    SIAMIDX_OBJECTIVE_CLASSIFY = 0, /* artist classification (cross-entropy) */
    SIAMIDX_OBJECTIVE_SIAMESE,      /* same-artist pairs (binary cross-entropy) */
    SIAMIDX_OBJECTIVE_BOTH,
    SIAMIDX_OBJECTIVE_COSFACE,      /* normalised softmax with an additive cosine margin */
    SIAMIDX_OBJECTIVE_SUPCON        /* classification plus a supervised contrastive term
                                       over the batch (every image paired with another
                                       of its artist) */
} siamidx_encoder_objective;

typedef struct siamidx_encoder_training {
    const char *collection, *output; /* required: what to learn from, the model to write */
    /* Several collections joined (an artist name in more than one is one artist); when
       set, `collection` is only how the model's metadata names them ("A + B"). */
    const char *const *collections;
    int n_collections;
    const char *exclude_artists; /* file of artists kept out of training, or NULL */
    size_t cache_mb;        /* bound on decoded images kept in memory (training scale) */
    /* Processing augmentation: the probability of each transform per sample (0: off). */
    float aug_squash, aug_downup, aug_posterize, aug_jpeg;
    float cos_margin, cos_scale; /* SIAMIDX_OBJECTIVE_COSFACE: m and s */
    float contrast_weight, temperature; /* SIAMIDX_OBJECTIVE_SUPCON: weight and tau */
    /* 0: the features are layer4's average; else bit s-1 for each stage s whose
       per-channel mean and std are the features, trained and embedded alike
       (the model's pooling is then "style"; it keeps no fc) */
    unsigned style_stages;
    /* The share of each batch's draws taken from the style group (source_repo
       and top folder of source_path) of its first image: 0 (default) draws
       every image by the balance weights alone */
    float same_style;
    float ema_decay;        /* EMA of the weights (0: off); validation and the model use it */
    const char *init;       /* torchvision-named safetensors to start from, or NULL */
    const char *resume;     /* checkpoint to continue, or NULL */
    const char *checkpoint; /* where checkpoints go (NULL: OUTPUT.ckpt) */
    const char *command;    /* recorded in the model's metadata */
    char arch[16];          /* resnet18 | resnet34 | resnet50 */
    float width;            /* channel multiplier (1 = torchvision) */
    int batch, input_size;  /* images per step, square training crop */
    siamidx_encoder_objective objective;
    float siamese_weight, label_smoothing;
    int freeze_through;     /* -1 none, 0 stem, s: stem..layer s fixed */
    int epochs, resize, embed_size; /* resize / embed_size: inference preprocessing recorded */
    int max_steps;          /* stop after this many steps (0: no limit), with a checkpoint */
    int zero_residual;
    float lr, weight_decay, warmup_epochs, min_lr_ratio, balance, val_fraction;
    double log_seconds;
    int threads;            /* compute threads (process-wide, as siamidx_set_threads): one
                               OpenMP pool that the GEMMs split their work over */
    uint64_t seed;
    const volatile int *stop; /* raised (e.g. by a signal handler): checkpoint and return */
} siamidx_encoder_training;

/* The defaults of `siamidx train-encoder`. */
void siamidx_encoder_training_init(siamidx_encoder_training *t);
/* Trains and writes t->output; SIAMIDX_ERR_INTERRUPTED after *stop or max_steps
   (a resumable checkpoint is written). */
siamidx_status siamidx_train_encoder(const siamidx_encoder_training *t, siamidx_error *err);

/* ---- the model file's default head ------------------------------------------------ */

/*
 * Writes out_path: a copy of model's file with `head` as its default head;
 * every other tensor and metadata key keeps its bytes, so the fingerprint
 * stays. Atomic (temporary file, rename); out_path may be the model's own.
 * trained_on is recorded in the head.trained_on metadata.
 */
siamidx_status siamidx_model_write_head(const siamidx_model *model, const siamidx_head *head,
                                        const char *trained_on, const char *out_path,
                                        siamidx_error *err);
/*
 * Embeds every image of `collection` (as `build` reads it) with the model
 * file at model_path, trains a head on them (opt as siamidx_index_train_head)
 * and writes it into that file as its default head. report and n_failed
 * (images that could not be embedded, left out) may be NULL.
 */
siamidx_status siamidx_model_train_head(const char *model_path, const char *collection,
                                        const siamidx_train_options *opt,
                                        siamidx_progress_fn progress, void *progress_ctx,
                                        siamidx_train_report *report, size_t *n_failed,
                                        siamidx_error *err);
/* The same over several collections joined, less the artists listed (one per line) in
   exclude_artists (NULL: none): what train-encoder trained on. */
siamidx_status siamidx_model_train_head_many(const char *model_path,
                                             const char *const *collections, size_t n_collections,
                                             const char *exclude_artists,
                                             const siamidx_train_options *opt,
                                             siamidx_progress_fn progress, void *progress_ctx,
                                             siamidx_train_report *report, size_t *n_failed,
                                             siamidx_error *err);

/* ---- pairs CSV (pair --batch) ---------------------------------------------------- */

/* A row of a pairs CSV (Kaggle's submission_info.csv: index,image1,image2). */
typedef struct siamidx_pair_row {
    const char *index; /* verbatim */
    const char *image1, *image2;
    long line;
} siamidx_pair_row;

typedef struct siamidx_pairs_csv siamidx_pairs_csv;

/* A header naming index, image1 and image2 (any order); SIAMIDX_ERR_CSV names a missing one. */
siamidx_status siamidx_pairs_csv_open(const char *path, siamidx_pairs_csv **out,
                                      siamidx_error *err);
/* The next row (strings valid until the next call); *done = 1 at the end. A bad row is
   SIAMIDX_ERR_CSV naming the file and line, and reading may go on. */
siamidx_status siamidx_pairs_csv_next(siamidx_pairs_csv *p, siamidx_pair_row *row, int *done,
                                      siamidx_error *err);
void siamidx_pairs_csv_close(siamidx_pairs_csv *p);

/* ---- what an index holds ---------------------------------------------------------- */

/* The stored embedding of an image whose bytes (SHA-256) the index holds, else
   SIAMIDX_ERR_NOT_FOUND; SIAMIDX_ERR_MODEL_MISMATCH when it is not of `dim`. */
siamidx_status siamidx_index_cached_embedding(siamidx_index *idx, const char *path, float *out,
                                              size_t dim, siamidx_error *err);

/* One record, valid during the callback only. */
typedef struct siamidx_index_record {
    uint64_t id;
    const char *path, *resolved, *artist;
    uint32_t artist_id;
    uint8_t hash[32]; /* SHA-256 of the file's bytes */
    uint64_t size;
    int64_t mtime_ns;
    uint32_t dim;
    const float *embedding; /* dim floats */
    const char *source_repo, *source_path; /* provenance from the collection CSV, may be "" */
} siamidx_index_record;

/* Every record in id order, in one read transaction; fn returns non-zero to stop. */
typedef int (*siamidx_record_fn)(void *ctx, const siamidx_index_record *r);
siamidx_status siamidx_index_foreach_record(siamidx_index *idx, siamidx_record_fn fn, void *ctx,
                                            siamidx_error *err);

/* ---- JSON documents (docs/json.md, docs/json-schema.json) ---------------------------- */

/*
 * Every answer and report as one JSON document: what `siamidx ... --json`
 * prints and what the Python module returns as a dict, so both say exactly
 * the same. One schema for all (docs/json.md): the top level opens with
 * "schema_version" (SIAMIDX_JSON_SCHEMA_VERSION) and "kind"; counts are
 * n_THING, lists THINGS; a file is {"path"} as `remove` accepts it, with
 * "path_hex" (its bytes) beside when the path is not UTF-8; strings are
 * always valid UTF-8 (invalid bytes become U+FFFD); unmeasurable figures
 * are null. *json receives a malloc'd, NUL-terminated document on one line
 * (no newline); free it with siamidx_json_free. idx and model may be NULL
 * where the document can say "null" for them.
 */
#define SIAMIDX_JSON_SCHEMA_VERSION 1

void siamidx_json_free(char *json);

/* How many leading bytes of s[0..n) are valid UTF-8 (whole characters): what the JSON
   documents and the HTML reports keep before writing U+FFFD for a byte that is not. */
size_t siamidx_utf8_valid_prefix(const char *s, size_t n);

/* kind "query": image, index, model, head, exact_match, artists, unknown, neighbors. */
siamidx_status siamidx_query_json(siamidx_index *idx, const siamidx_model *model,
                                  const char *image, const siamidx_query_result *res,
                                  char **json, siamidx_error *err);
/* kind "pair": images [a, b], index, model, head, probability, threshold, same_artist. */
siamidx_status siamidx_pair_json(siamidx_index *idx, const siamidx_model *model, const char *a,
                                 const char *b, const siamidx_pair_result *res,
                                 siamidx_head_source head, char **json, siamidx_error *err);
/* kind "index_info" (idx required). */
siamidx_status siamidx_index_info_json(siamidx_index *idx, const siamidx_index_info *info,
                                       char **json, siamidx_error *err);
/* kind "build" or "add" (the `kind` argument): counts and failures. */
siamidx_status siamidx_build_report_json(siamidx_index *idx, const char *kind,
                                         const siamidx_build_report *report, char **json,
                                         siamidx_error *err);
/* kind "remove": index, artist (the --artist name, or null), n_removed, paths
   [{path, n_matched}] for the n named paths (matches as siamidx_index_remove_paths
   fills it; empty when an artist was named). Exactly one of artist and paths. */
siamidx_status siamidx_remove_report_json(siamidx_index *idx, const char *artist,
                                          const char *const *paths, const size_t *matches,
                                          size_t n, size_t removed, char **json,
                                          siamidx_error *err);
/* kind "verify": index, ok, n_problems, problems (each as siamidx_index_verify
   passed it). */
siamidx_status siamidx_verify_report_json(siamidx_index *idx, const char *const *problems,
                                          size_t n, char **json, siamidx_error *err);
/* kind "model_info". */
siamidx_status siamidx_model_info_json(const siamidx_model *model, char **json,
                                       siamidx_error *err);
/* kind "train"; saved_to_model: the model file the head was also written to, or NULL. */
siamidx_status siamidx_train_report_json(siamidx_index *idx, const siamidx_train_report *report,
                                         uint64_t seed, const char *saved_to_model, char **json,
                                         siamidx_error *err);
/* kind "eval_legacy" (siamidx_index_evaluate) and "eval" (the protocol). */
siamidx_status siamidx_eval_report_json(siamidx_index *idx, const siamidx_eval_report *report,
                                        char **json, siamidx_error *err);
siamidx_status siamidx_protocol_report_json(siamidx_index *idx,
                                            const siamidx_protocol_report *report, char **json,
                                            siamidx_error *err);

/* Whole answers as documents, for bindings that would rather not mirror the result
   structures (the Python module): siamidx_index_query_opts (opt NULL: the defaults)
   then siamidx_query_json; a pair by the one head rule (the index's head, idx may be
   NULL, else the model's; SIAMIDX_ERR_NO_HEAD) then siamidx_pair_json; and
   siamidx_index_add with default options then siamidx_build_report_json (kind "add"):
   when some images fail it returns SIAMIDX_ERR_IMAGE with the document set. */
siamidx_status siamidx_index_query_json(siamidx_index *idx, const siamidx_model *model,
                                        const char *image, const siamidx_query_options *opt,
                                        char **json, siamidx_error *err);
siamidx_status siamidx_index_pair_json(siamidx_index *idx, const siamidx_model *model,
                                       const char *a, const char *b, char **json,
                                       siamidx_error *err);
siamidx_status siamidx_index_add_json(siamidx_index *idx, const siamidx_model *model,
                                      const char *const *paths, size_t n, const char *artist,
                                      char **json, siamidx_error *err);

/* ---- the BLAS: which kernels OpenBLAS runs ---------------------------------------- */

/*
 * OpenBLAS (DYNAMIC_ARCH) chooses its kernels when it is loaded, from the CPU
 * model, and falls back to old SSE3 ones ("Prescott") for a model it does not
 * know -- Debian 12's 0.3.21 does so on recent AVX-512 Xeons, with sgemm
 * about 4.5x slower. Only OPENBLAS_CORETYPE=cpu_core in the environment of a
 * process that has not loaded OpenBLAS yet changes it: `siamidx` re-executes
 * itself with it, the Python module sets it before loading the library
 * (docs/performance.md). Strings are static.
 */
typedef struct siamidx_blas_core {
    const char *core;     /* openblas_get_corename(): "SkylakeX", "Haswell", "Prescott", ... */
    const char *config;   /* openblas_get_config(): version and build options */
    const char *cpu_core; /* the best core the CPU supports: "SkylakeX" (AVX-512 F+BW+DQ+VL),
                             "Haswell" (AVX2+FMA), or NULL (neither, or not x86) */
    int weaker;           /* 1: `core` is one known to be weaker than cpu_core */
    int dynamic;          /* 1: built with DYNAMIC_ARCH, so OPENBLAS_CORETYPE is honoured */
} siamidx_blas_core;

void siamidx_blas_core_get(siamidx_blas_core *out);

/* ---- what reports show (siamidx query/pair/eval --html) ------------------------------ */

/*
 * A JPEG (quality 1..100) of an image file, shrunk to fit max_side x max_side
 * (never enlarged), decoded as embedding decodes it (EXIF orientation, the
 * default pixel limit). *jpeg is malloc'ed (free()); width/height (may be
 * NULL) receive its size.
 */
siamidx_status siamidx_image_thumbnail_jpeg(const char *path, int max_side, int quality,
                                            void **jpeg, size_t *len, int *width, int *height,
                                            siamidx_error *err);

/* Pairs whose calibrated probability fell in [lo, hi), and how many were by one artist. */
typedef struct siamidx_calibration_bin {
    double lo, hi;
    uint64_t pairs, same;
} siamidx_calibration_bin;

/*
 * The head's reliability on its validation pairs, in ten equal bins of the
 * probability: "of pairs scored like this, same/pairs were by the same
 * artist". Writes up to cap bins and returns how many the head holds (10),
 * 0 when it holds none (heads trained before they were recorded, hand-made).
 */
size_t siamidx_head_calibration(const siamidx_head *head, siamidx_calibration_bin *bins,
                                size_t cap);

/* A ROC curve: n points (false accept rate, true accept rate) from (0,0) to (1,1). */
typedef struct siamidx_roc_curve {
    size_t n;
    float *far, *tar;
} siamidx_roc_curve;

typedef struct siamidx_artist_recall {
    char *artist;
    size_t queries, top1, top3; /* held-out images; named first; among the first three */
} siamidx_artist_recall;

typedef struct siamidx_confusion {
    char *truth, *named; /* a held-out image by `truth` whose first named artist was `named` */
    size_t count;
} siamidx_confusion;

/* What a report draws beside siamidx_protocol_report's figures (overall, all sources). */
typedef struct siamidx_protocol_details {
    /* [0] seen, [1] unseen population; [.][0] against same-source, [.][1] same-style negatives */
    siamidx_roc_curve roc[2][2];
    /* per population: its positives with its same-source negatives, in ten bins */
    siamidx_calibration_bin calibration[2][10];
    siamidx_artist_recall *recall; /* seen queries per artist, worst top-1 recall first */
    size_t n_recall;
    siamidx_confusion *confusions; /* seen queries named wrongly, most frequent first */
    size_t n_confusions;
} siamidx_protocol_details;

/* siamidx_index_evaluate_protocol, also filling *details (at most 200 points a curve). */
siamidx_status siamidx_index_evaluate_protocol_details(siamidx_index *idx,
                                                       const siamidx_protocol_options *opt,
                                                       siamidx_protocol_report *out,
                                                       siamidx_protocol_details *details,
                                                       siamidx_error *err);
void siamidx_protocol_details_free(siamidx_protocol_details *d);

#ifdef __cplusplus
}
#endif

#endif /* SIAMIDX_EXT_H */

/*
 * embed.c - the public embedding entry points: one file, one RGB buffer, many
 * files in batches, and raw tensors.
 *
 * The model is immutable and shared; every call owns its own sx_encoder
 * workspace, so calls from several threads never share mutable state.
 *
 * siamidx_embed_files overlaps the two halves of the work: a producer thread
 * decodes and preprocesses batch k+1 into one of two staging tensors while
 * the calling thread runs the encoder on batch k from the other.
 */
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "nn/encoder.h"
#include "nn/model.h"
#include "image/image.h"
#include "image/preprocess.h"
#include "base/error.h"
#include "base/threads.h"

#define DEFAULT_BATCH 16
/* Raw tensors go through the network this many images at a time. */
#define TENSOR_BATCH 16

void openblas_set_num_threads(int num_threads);

void siamidx_embed_options_init(siamidx_embed_options *opt) {
    memset(opt, 0, sizeof *opt);
    opt->pool = SIAMIDX_POOL_DEFAULT;
    opt->max_pixels = 0;
    opt->batch = 0;
}

/*
 * Process-wide: the library's OpenMP regions read the count from
 * sx_threads() in whatever thread they run, and OpenBLAS's count (pthread
 * build) is global. omp_set_num_threads() is kept for the calling thread's
 * other OpenMP users (FAISS).
 */
void siamidx_set_threads(int threads) {
    if (threads <= 0) threads = omp_get_num_procs();
    sx_threads_set(threads);
    openblas_set_num_threads(threads);
    omp_set_num_threads(threads);
}

/* ---- shared checks ---------------------------------------------------------------- */

static siamidx_status check_request(const siamidx_model *model, const siamidx_embed_options *opt,
                                    siamidx_pool *pool, size_t *dim, siamidx_error *err) {
    *pool = opt ? opt->pool : SIAMIDX_POOL_DEFAULT;
    *dim = 0;
    if (!model) return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "embed: no model");
    if ((int)*pool < SIAMIDX_POOL_DEFAULT || *pool > SIAMIDX_POOL_STYLE)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "embed: unknown pooling %d", (int)*pool);
    *dim = sx_output_dim(model, SX_OUT_EMBEDDING, *pool);
    if (*dim == 0)
        return sx_fail(err, SIAMIDX_ERR_UNSUPPORTED,
                       "embed: model %s gives no features for pooling %d (style stages 0x%x)",
                       model->path ? model->path : model->arch, (int)*pool, model->style_stages);
    return SIAMIDX_OK;
}

static size_t input_floats(const siamidx_model *model) {
    return (size_t)3 * model->pre.input_size * model->pre.input_size;
}

/* Runs one preprocessed image through a fresh batch-1 encoder. */
static siamidx_status embed_tensor1(const siamidx_model *model, const float *x, siamidx_pool pool,
                                    float *out, siamidx_error *err) {
    sx_encoder *enc = NULL;
    int s = model->pre.input_size;
    siamidx_status st = sx_encoder_new(model, 1, s, s, &enc, err);
    if (st == SIAMIDX_OK) st = sx_encoder_run(enc, x, 1, SX_OUT_EMBEDDING, pool, out, err);
    sx_encoder_free(enc);
    return st;
}

/* ---- single images ----------------------------------------------------------------- */

siamidx_status siamidx_embed_rgb(const siamidx_model *model, const uint8_t *rgb, int width,
                                 int height, size_t stride, const siamidx_embed_options *opt,
                                 float *out, siamidx_error *err) {
    siamidx_pool pool;
    size_t dim;
    siamidx_status st = check_request(model, opt, &pool, &dim, err);
    if (st != SIAMIDX_OK) return st;
    if (!rgb || !out || width < 1 || height < 1 || stride < (size_t)width * 3)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT,
                       "embed: invalid RGB buffer (%dx%d, stride %zu)", width, height, stride);
    float *x = malloc(input_floats(model) * sizeof *x);
    if (!x) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "embed: out of memory");
    st = sx_preprocess(rgb, width, height, stride, &model->pre, x, err);
    if (st == SIAMIDX_OK) st = embed_tensor1(model, x, pool, out, err);
    free(x);
    return st;
}

siamidx_status siamidx_embed_file(const siamidx_model *model, const char *path,
                                  const siamidx_embed_options *opt, float *out,
                                  siamidx_error *err) {
    siamidx_pool pool;
    size_t dim;
    siamidx_status st = check_request(model, opt, &pool, &dim, err);
    if (st != SIAMIDX_OK) return st;
    if (!path || !out) return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "embed: no path or output");
    sx_image img = {0, 0, NULL};
    st = sx_image_load(path, opt ? opt->max_pixels : 0, &img, err);
    if (st != SIAMIDX_OK) return st;
    st = siamidx_embed_rgb(model, img.rgb, img.width, img.height, (size_t)img.width * 3, opt, out,
                           err);
    sx_image_free(&img);
    return st;
}

/* ---- many files: a producer thread decodes while the encoder runs -------------------- */

typedef struct batch_slot {
    float *x;  /* [batch][3][s][s]: the images of this batch that decoded */
    int *file; /* file index of each row of x */
    int rows;
    int ready; /* 1: filled by the producer, not yet consumed */
} batch_slot;

typedef struct files_job {
    const siamidx_model *model;
    const char *const *paths;
    size_t n;
    int batch;
    uint64_t max_pixels;
    siamidx_status *status; /* [n], owned by the call */
    siamidx_error *errors;  /* [n] or NULL */
    batch_slot slot[2];
    pthread_mutex_t lock;
    pthread_cond_t changed;
} files_job;

static size_t n_batches(const files_job *job) {
    return (job->n + (size_t)job->batch - 1) / (size_t)job->batch;
}

/* Decodes and preprocesses the files of batch k into `slot`. */
static void fill_slot(files_job *job, size_t k, batch_slot *slot) {
    size_t first = k * (size_t)job->batch, end = first + (size_t)job->batch;
    if (end > job->n) end = job->n;
    size_t per = input_floats(job->model);
    slot->rows = 0;
    for (size_t i = first; i < end; i++) {
        siamidx_error e;
        sx_image img = {0, 0, NULL};
        siamidx_status st = sx_image_load(job->paths[i], job->max_pixels, &img, &e);
        if (st == SIAMIDX_OK)
            st = sx_preprocess(img.rgb, img.width, img.height, (size_t)img.width * 3,
                               &job->model->pre, slot->x + (size_t)slot->rows * per, &e);
        sx_image_free(&img);
        job->status[i] = st;
        if (job->errors) {
            if (st == SIAMIDX_OK)
                sx_error_clear(&job->errors[i]);
            else
                job->errors[i] = e;
        }
        if (st == SIAMIDX_OK) slot->file[slot->rows++] = (int)i;
    }
}

static void *producer_main(void *arg) {
    files_job *job = arg;
    size_t nb = n_batches(job);
    for (size_t k = 0; k < nb; k++) {
        batch_slot *slot = &job->slot[k % 2];
        pthread_mutex_lock(&job->lock);
        while (slot->ready) pthread_cond_wait(&job->changed, &job->lock);
        pthread_mutex_unlock(&job->lock);
        fill_slot(job, k, slot);
        pthread_mutex_lock(&job->lock);
        slot->ready = 1;
        pthread_cond_broadcast(&job->changed);
        pthread_mutex_unlock(&job->lock);
    }
    return NULL;
}

/* Runs the encoder on every batch as the producer (or, without a thread, we) fill them. */
static siamidx_status consume(files_job *job, int threaded, sx_encoder *enc, siamidx_pool pool,
                              size_t dim, float *out, float *rows, siamidx_error *err) {
    siamidx_status result = SIAMIDX_OK;
    for (size_t k = 0; k < n_batches(job); k++) {
        batch_slot *slot = &job->slot[k % 2];
        if (threaded) {
            pthread_mutex_lock(&job->lock);
            while (!slot->ready) pthread_cond_wait(&job->changed, &job->lock);
            pthread_mutex_unlock(&job->lock);
        } else {
            fill_slot(job, k, slot);
        }
        siamidx_status st = SIAMIDX_OK;
        if (slot->rows > 0 && result == SIAMIDX_OK)
            st = sx_encoder_run(enc, slot->x, slot->rows, SX_OUT_EMBEDDING, pool, rows, err);
        if (st != SIAMIDX_OK) result = st;
        for (int r = 0; r < slot->rows && st == SIAMIDX_OK; r++)
            memcpy(out + (size_t)slot->file[r] * dim, rows + (size_t)r * dim, dim * sizeof *out);
        if (threaded) {
            pthread_mutex_lock(&job->lock);
            slot->ready = 0;
            pthread_cond_broadcast(&job->changed);
            pthread_mutex_unlock(&job->lock);
        }
    }
    return result;
}

siamidx_status siamidx_embed_files(const siamidx_model *model, const char *const *paths, size_t n,
                                   const siamidx_embed_options *opt, float *out,
                                   siamidx_status *status, siamidx_error *errors,
                                   siamidx_error *err) {
    siamidx_pool pool;
    size_t dim;
    siamidx_status st = check_request(model, opt, &pool, &dim, err);
    if (st != SIAMIDX_OK) return st;
    if (n == 0) return SIAMIDX_OK;
    if (!paths || !out) return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "embed: no paths or output");
    memset(out, 0, n * dim * sizeof *out);

    files_job job;
    memset(&job, 0, sizeof job);
    job.model = model;
    job.paths = paths;
    job.n = n;
    job.batch = opt && opt->batch > 0 ? opt->batch : DEFAULT_BATCH;
    if ((size_t)job.batch > n) job.batch = (int)n;
    job.max_pixels = opt ? opt->max_pixels : 0;
    job.errors = errors;
    job.status = calloc(n, sizeof *job.status);
    size_t per = input_floats(model), b = (size_t)job.batch;
    float *rows = malloc(b * dim * sizeof *rows);
    int ok = job.status && rows;
    for (int s = 0; s < 2; s++) {
        job.slot[s].x = malloc(b * per * sizeof(float));
        job.slot[s].file = malloc(b * sizeof(int));
        ok = ok && job.slot[s].x && job.slot[s].file;
    }
    sx_encoder *enc = NULL;
    if (!ok)
        st = sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "embed: out of memory for a batch of %d", job.batch);
    else
        st = sx_encoder_new(model, job.batch, model->pre.input_size, model->pre.input_size, &enc,
                            err);
    if (st == SIAMIDX_OK) {
        pthread_mutex_init(&job.lock, NULL);
        pthread_cond_init(&job.changed, NULL);
        pthread_t producer;
        /* Nothing to overlap with a single batch. */
        int threaded = n_batches(&job) > 1 && pthread_create(&producer, NULL, producer_main, &job) == 0;
        st = consume(&job, threaded, enc, pool, dim, out, rows, err);
        if (threaded) pthread_join(producer, NULL);
        pthread_cond_destroy(&job.changed);
        pthread_mutex_destroy(&job.lock);
    }
    if (st == SIAMIDX_OK) {
        for (size_t i = 0; i < n; i++) {
            if (status) status[i] = job.status[i];
            if (job.status[i] != SIAMIDX_OK) st = SIAMIDX_ERR_IMAGE;
        }
        if (st != SIAMIDX_OK)
            sx_fail(err, st, "embed: some of %zu images could not be embedded", n);
    }
    sx_encoder_free(enc);
    for (int s = 0; s < 2; s++) {
        free(job.slot[s].x);
        free(job.slot[s].file);
    }
    free(rows);
    free(job.status);
    return st;
}

/* ---- raw tensors -------------------------------------------------------------------- */

siamidx_status siamidx_forward_tensor(const siamidx_model *model, const float *x, int n, int h,
                                      int w, siamidx_output output, float *out,
                                      siamidx_error *err) {
    if (!model || !x || !out || n < 1 || h < 1 || w < 1)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT,
                       "forward: invalid tensor [%d, 3, %d, %d] or no model/output", n, h, w);
    sx_encoder_output what;
    if (output == SIAMIDX_OUTPUT_POOLED)
        what = SX_OUT_POOLED;
    else if (output == SIAMIDX_OUTPUT_LOGITS)
        what = SX_OUT_LOGITS;
    else
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "forward: unknown output %d", (int)output);
    if (what == SX_OUT_LOGITS && !model->fc_w)
        return sx_fail(err, SIAMIDX_ERR_UNSUPPORTED, "model %s has no fc layer: no logits",
                       model->path ? model->path : model->arch);
    int batch = n < TENSOR_BATCH ? n : TENSOR_BATCH;
    size_t dim = sx_output_dim(model, what, SIAMIDX_POOL_DEFAULT), per = (size_t)3 * h * w;
    sx_encoder *enc = NULL;
    siamidx_status st = sx_encoder_new(model, batch, h, w, &enc, err);
    for (int i = 0; i < n && st == SIAMIDX_OK; i += batch) {
        int m = n - i < batch ? n - i : batch;
        st = sx_encoder_run(enc, x + (size_t)i * per, m, what, SIAMIDX_POOL_DEFAULT,
                            out + (size_t)i * dim, err);
    }
    sx_encoder_free(enc);
    return st;
}

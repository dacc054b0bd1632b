/*
 * cmd_embed.c - `siamidx embed`: one embedding per image, as TSV or NPY; or
 * the network's pooled features / logits for a preprocessed NPY tensor.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "siamidx_ext.h" /* siamidx_encoder: --tensor runs exactly --batch images per pass */
#include "args.h"
#include "cli.h"
#include "npy.h"
#include "outfile.h"

typedef struct embed_args {
    const char *model, *out, *tensor;
    siamidx_pool pool;
    int npy, threads, batch, logits, time;
    uint64_t max_pixels;
} embed_args;

static const cli_help embed_help = {
    "siamidx embed IMAGE... [options]\n"
    "       siamidx embed --tensor X.npy [--output pooled|logits] [options]",
    "Writes one L2-normalised embedding per image, in argument order: TSV lines\n"
    "'path<TAB>v1<TAB>v2...', or a float32 [N, D] .npy whose rows of failed images are\n"
    "zero. --tensor runs the network on a preprocessed float32 [N, 3, H, W] tensor\n"
    "instead. Each image that fails prints 'siamidx: PATH: reason' on stderr.\n"
    "exit status: 0 all embedded, 3 some failed, 1 none embedded or no model, 2 usage\n"};

static const char *const pools[] = {"default", "avg", "max", "gem", "style", NULL};
static const char *const formats[] = {"tsv", "npy", NULL};
static const char *const outputs[] = {"pooled", "logits", NULL};

/* Returns -1 to continue, else an exit code. */
static int parse_args(int argc, char **argv, embed_args *a, int *first_image) {
    memset(a, 0, sizeof *a);
    int pool = 0; /* indices of pools[] are siamidx_pool values */
    a->batch = 16;
    a->max_pixels = SIAMIDX_DEFAULT_MAX_PIXELS;
    const cli_option opts[] = {
        CLI_OPT_MODEL(&a->model),
        CLI_OPT("out", 'o', CLI_STRING, &a->out, "OUT",
                "output file, replaced atomically (default: standard output)"),
        CLI_CHOOSE("pool", 0, &pool, pools, "pooling (default: the model's)"),
        CLI_CHOOSE("format", 0, &a->npy, formats, "TSV lines or a float32 .npy"),
        CLI_NUM("threads", 0, CLI_INT, &a->threads, 0, 1024, 0, "N",
                "compute threads, 0: all cores"),
        CLI_NUM("batch", 0, CLI_INT, &a->batch, 1, 4096, 0, "B", "images per forward pass"),
        CLI_NUM("max-pixels", 0, CLI_U64, &a->max_pixels, 1, 0, 0, "N",
                "refuse larger images before decoding"),
        CLI_OPT("tensor", 0, CLI_STRING, &a->tensor, "X.npy",
                "run on a preprocessed float32 [N, 3, H, W] tensor instead of images"),
        CLI_CHOOSE("output", 0, &a->logits, outputs,
                   "with --tensor: global average pool, or the fc layer's logits"),
        CLI_OPT("time", 0, CLI_FLAG, &a->time, NULL,
                "with --tensor: print the best and mean seconds per batch on stderr"),
        CLI_END};
    int rc = cli_parse(argc, argv, opts, &embed_help, first_image);
    if (rc >= 0) return rc;
    a->pool = (siamidx_pool)pool;
    if (a->tensor && *first_image < argc) {
        cli_error("embed: --tensor takes no image arguments");
        return CLI_EXIT_USAGE;
    }
    if (!a->tensor && *first_image >= argc) {
        cli_error("embed: no images given (see siamidx embed --help)");
        return CLI_EXIT_USAGE;
    }
    return -1;
}

/* ---- images ------------------------------------------------------------------------ */

/* "siamidx: PATH: reason", without repeating the path when the message names it first. */
static void report_failure(const char *path, const char *msg) {
    size_t n = strlen(path);
    if (!strncmp(msg, path, n) && msg[n] == ':')
        cli_error("%s", msg);
    else
        cli_error("%s: %s", path, msg);
}

static int write_tsv(FILE *f, char **paths, size_t n, const float *v, size_t dim,
                     const siamidx_status *status) {
    for (size_t i = 0; i < n; i++) {
        if (status[i] != SIAMIDX_OK) continue; /* reported on stderr instead */
        fputs(paths[i], f);
        for (size_t k = 0; k < dim; k++) fprintf(f, "\t%.7g", v[i * dim + k]);
        fputc('\n', f);
    }
    return ferror(f) ? -1 : 0;
}

static int embed_images(const embed_args *a, siamidx_model *model, char **paths, size_t n) {
    siamidx_embed_options opt;
    siamidx_embed_options_init(&opt);
    opt.pool = a->pool;
    opt.batch = a->batch;
    opt.max_pixels = a->max_pixels;
    size_t dim = siamidx_model_dim(model, a->pool);
    float *v = calloc(n * (dim ? dim : 1), sizeof *v);
    siamidx_status *status = calloc(n, sizeof *status);
    siamidx_error *errors = calloc(n, sizeof *errors);
    int code = CLI_EXIT_FAILURE;
    siamidx_error err;
    if (!v || !status || !errors) {
        cli_error("out of memory for %zu embeddings", n);
        goto done;
    }
    siamidx_status st = siamidx_embed_files(model, (const char *const *)paths, n, &opt, v, status,
                                            errors, &err);
    if (st != SIAMIDX_OK && st != SIAMIDX_ERR_IMAGE) {
        cli_error("%s", err.message);
        goto done;
    }
    size_t failed = 0;
    for (size_t i = 0; i < n; i++)
        if (status[i] != SIAMIDX_OK) {
            report_failure(paths[i], errors[i].message);
            failed++;
        }
    if (failed == n) {
        cli_error("none of the %zu images could be embedded", n);
        goto done;
    }
    cli_outfile o;
    if (cli_outfile_open(&o, a->out) != 0) goto done;
    int ok;
    if (a->npy) {
        int64_t shape[2] = {(int64_t)n, (int64_t)dim};
        ok = npy_write_f32(o.f, v, 2, shape) == 0;
        if (failed) cli_error("warning: %zu of %zu rows are zero (images that failed)", failed, n);
    } else {
        ok = write_tsv(o.f, paths, n, v, dim, status) == 0;
    }
    if (!ok) cli_error("%s: write failed", a->out ? a->out : "standard output");
    if (cli_outfile_close(&o, ok) != 0) goto done;
    code = failed ? CLI_EXIT_PARTIAL : CLI_EXIT_OK;
done:
    free(v);
    free(status);
    free(errors);
    return code;
}

/* ---- tensors ------------------------------------------------------------------------ */

static double seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int embed_tensor(const embed_args *a, siamidx_model *model) {
    npy_array x;
    char why[512];
    if (npy_read_f32(a->tensor, &x, why, sizeof why) != 0) {
        cli_error("%s", why);
        return CLI_EXIT_FAILURE;
    }
    int code = CLI_EXIT_FAILURE;
    float *out = NULL;
    siamidx_encoder *enc = NULL;
    if (x.ndim != 4 || x.shape[1] != 3 || x.shape[0] < 1 || x.shape[2] < 1 || x.shape[3] < 1 ||
        x.shape[0] > 1000000 || x.shape[2] > 65536 || x.shape[3] > 65536) {
        cli_error("%s: expected a float32 [N, 3, H, W] tensor, got %d dimensions%s", a->tensor,
                  x.ndim, x.ndim == 4 ? " with other than 3 channels" : "");
        goto done;
    }
    int n = (int)x.shape[0], h = (int)x.shape[2], w = (int)x.shape[3];
    int batch = a->batch ? a->batch : 16;
    if (batch > n) batch = n;
    siamidx_output what = a->logits ? SIAMIDX_OUTPUT_LOGITS : SIAMIDX_OUTPUT_POOLED;
    size_t dim = siamidx_model_output_dim(model, what);
    if (dim == 0) {
        cli_error("%s: the model has no fc layer: no logits", siamidx_model_path(model));
        goto done;
    }
    siamidx_error err;
    out = malloc((size_t)n * dim * sizeof *out);
    if (!out || siamidx_encoder_new(model, batch, h, w, &enc, &err) != SIAMIDX_OK) {
        cli_error("%s", out ? err.message : "out of memory");
        goto done;
    }
    size_t per = (size_t)3 * h * w;
    double best = 0, total = 0;
    int timed = 0;
    for (int i = 0; i < n; i += batch) {
        int m = n - i < batch ? n - i : batch;
        double t0 = seconds();
        if (siamidx_encoder_run(enc, x.data + i * per, m, what, out + (size_t)i * dim, &err) !=
            SIAMIDX_OK) {
            cli_error("%s", err.message);
            goto done;
        }
        double t = seconds() - t0;
        if (i > 0 && m == batch) { /* the first batch pays for page faults */
            best = timed++ ? (t < best ? t : best) : t;
            total += t;
        }
    }
    if (a->time && timed) {
        siamidx_model_description d;
        siamidx_model_describe(model, &d);
        fprintf(stderr, "forward: batch %d: best %.4f s, mean %.4f s per batch over %d batches "
                "(conv kernel %s)\n", batch, best, total / timed, timed, d.kernel);
    }
    cli_outfile o;
    if (cli_outfile_open(&o, a->out) != 0) goto done;
    int64_t shape[2] = {n, (int64_t)dim};
    int ok = npy_write_f32(o.f, out, 2, shape) == 0;
    if (!ok) cli_error("%s: write failed", a->out ? a->out : "standard output");
    if (cli_outfile_close(&o, ok) == 0) code = CLI_EXIT_OK;
done:
    siamidx_encoder_free(enc);
    free(out);
    free(x.data);
    return code;
}

int cmd_embed(int argc, char **argv) {
    embed_args a;
    int first;
    int code = parse_args(argc, argv, &a, &first);
    if (code >= 0) return code;
    siamidx_set_threads(a.threads);
    siamidx_model *model = cli_load_model(a.model);
    if (!model) return CLI_EXIT_FAILURE;
    if (a.tensor)
        code = embed_tensor(&a, model);
    else
        code = embed_images(&a, model, argv + first, (size_t)(argc - first));
    siamidx_model_free(model);
    return code;
}

/*
 * cmd_embed.c - `siamidx embed`: one embedding per image, as TSV or NPY; or
 * the network's pooled features / logits for a preprocessed NPY tensor.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "internal.h" /* sx_encoder: --tensor runs exactly --batch images per pass */
#include "npy.h"

typedef struct embed_args {
    const char *model, *out, *tensor;
    siamidx_pool pool;
    int npy, threads, batch, logits, time;
    uint64_t max_pixels;
} embed_args;

static void embed_usage(FILE *f) {
    fprintf(f,
            "usage: siamidx embed [-m MODEL] [--pool avg|max|gem|style] [--format tsv|npy]\n"
            "                     [-o OUT] [--threads N] [--batch B] [--max-pixels N] IMAGE...\n"
            "       siamidx embed [-m MODEL] --tensor X.npy [--output pooled|logits] [-o OUT.npy]\n"
            "\n"
            "Writes one L2-normalised embedding per image, in argument order.\n"
            "  -m, --model MODEL   model file (default: $SIAMIDX_MODEL, then the installed model)\n"
            "  --pool NAME         pooling (default: the model's)\n"
            "  --format tsv|npy    TSV lines 'path<TAB>v1<TAB>v2...' (default), or a float32\n"
            "                      [N, D] .npy whose rows of failed images are zero\n"
            "  -o, --out OUT       output file (default: standard output)\n"
            "  --threads N         compute threads (default: all cores)\n"
            "  --batch B           images per forward pass (default 16)\n"
            "  --max-pixels N      refuse larger images before decoding (default %llu)\n"
            "  --tensor X.npy      run on a preprocessed float32 [N, 3, H, W] tensor instead;\n"
            "  --output KIND       pooled (global average pool, default) or logits (fc)\n"
            "  --time              with --tensor: print the best and mean seconds per batch\n"
            "                      (after the first) on stderr\n"
            "\n"
            "Each image that fails prints 'siamidx: PATH: reason' on stderr.\n"
            "exit status: 0 all embedded, 3 some failed, 1 none embedded or no model, 2 usage\n",
            (unsigned long long)SIAMIDX_DEFAULT_MAX_PIXELS);
}

static int parse_int(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

/* Returns -1 to continue, else an exit code. */
static int parse_args(int argc, char **argv, embed_args *a, int *first_image) {
    enum { OPT_POOL = 256, OPT_FORMAT, OPT_THREADS, OPT_BATCH, OPT_MAXPIX, OPT_TENSOR, OPT_OUTPUT,
           OPT_TIME };
    static const struct option longs[] = {
        {"model", required_argument, NULL, 'm'},    {"out", required_argument, NULL, 'o'},
        {"pool", required_argument, NULL, OPT_POOL}, {"format", required_argument, NULL, OPT_FORMAT},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"batch", required_argument, NULL, OPT_BATCH},
        {"max-pixels", required_argument, NULL, OPT_MAXPIX},
        {"tensor", required_argument, NULL, OPT_TENSOR},
        {"output", required_argument, NULL, OPT_OUTPUT},
        {"time", no_argument, NULL, OPT_TIME},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0}};
    memset(a, 0, sizeof *a);
    optind = 1;
    opterr = 0;
    int c;
    long v;
    while ((c = getopt_long(argc, argv, ":m:o:h", longs, NULL)) != -1) {
        switch (c) {
        case 'm': a->model = optarg; break;
        case 'o': a->out = optarg; break;
        case 'h': embed_usage(stdout); return CLI_EXIT_OK;
        case OPT_POOL: {
            int p = siamidx_pool_from_name(optarg);
            if (p < 0) return cli_error("unknown pooling '%s' (avg, max, gem, style)", optarg), 2;
            a->pool = (siamidx_pool)p;
            break;
        }
        case OPT_FORMAT:
            if (strcmp(optarg, "tsv") && strcmp(optarg, "npy"))
                return cli_error("unknown format '%s' (tsv or npy)", optarg), CLI_EXIT_USAGE;
            a->npy = !strcmp(optarg, "npy");
            break;
        case OPT_THREADS:
            if (parse_int(optarg, 0, 1024, &v)) return cli_error("bad --threads '%s'", optarg), 2;
            a->threads = (int)v;
            break;
        case OPT_BATCH:
            if (parse_int(optarg, 1, 4096, &v)) return cli_error("bad --batch '%s'", optarg), 2;
            a->batch = (int)v;
            break;
        case OPT_MAXPIX: {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(optarg, &end, 10);
            if (errno || end == optarg || *end || n == 0 || optarg[0] == '-')
                return cli_error("bad --max-pixels '%s'", optarg), CLI_EXIT_USAGE;
            a->max_pixels = n;
            break;
        }
        case OPT_TENSOR: a->tensor = optarg; break;
        case OPT_TIME: a->time = 1; break;
        case OPT_OUTPUT:
            if (strcmp(optarg, "pooled") && strcmp(optarg, "logits"))
                return cli_error("unknown --output '%s' (pooled or logits)", optarg), 2;
            a->logits = !strcmp(optarg, "logits");
            break;
        case ':':
            cli_error("option '%s' needs a value (see siamidx embed --help)", argv[optind - 1]);
            return CLI_EXIT_USAGE;
        default:
            cli_error("unknown option '%s' (see siamidx embed --help)", argv[optind - 1]);
            return CLI_EXIT_USAGE;
        }
    }
    *first_image = optind;
    if (a->tensor && optind < argc) {
        cli_error("--tensor takes no image arguments");
        return CLI_EXIT_USAGE;
    }
    if (!a->tensor && optind >= argc) {
        cli_error("no images given (see siamidx embed --help)");
        return CLI_EXIT_USAGE;
    }
    return -1;
}

/* ---- output files: written beside the target, renamed into place when complete ---- */

typedef struct out_file {
    FILE *f;
    const char *path; /* NULL: standard output */
    char tmp[4096];
} out_file;

static int out_open(out_file *o, const char *path) {
    o->path = path && strcmp(path, "-") ? path : NULL;
    if (!o->path) {
        o->f = stdout;
        return 0;
    }
    snprintf(o->tmp, sizeof o->tmp, "%s.tmp.%ld", path, (long)getpid());
    o->f = fopen(o->tmp, "wb");
    if (!o->f) cli_error("%s: %s", o->tmp, strerror(errno));
    return o->f ? 0 : -1;
}

static int out_close(out_file *o, int ok) {
    if (!o->path) return fflush(stdout) == 0 && ok ? 0 : -1;
    int rc = (fclose(o->f) == 0 && ok) ? 0 : -1;
    if (rc == 0 && rename(o->tmp, o->path) != 0) rc = -1;
    if (rc != 0) {
        cli_error("%s: cannot write: %s", o->path, strerror(errno));
        remove(o->tmp);
    }
    return rc;
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
    out_file o;
    if (out_open(&o, a->out) != 0) goto done;
    int ok;
    if (a->npy) {
        int64_t shape[2] = {(int64_t)n, (int64_t)dim};
        ok = npy_write_f32(o.f, v, 2, shape) == 0;
        if (failed) cli_error("warning: %zu of %zu rows are zero (images that failed)", failed, n);
    } else {
        ok = write_tsv(o.f, paths, n, v, dim, status) == 0;
    }
    if (out_close(&o, ok) != 0) goto done;
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
    sx_encoder *enc = NULL;
    if (x.ndim != 4 || x.shape[1] != 3 || x.shape[0] < 1 || x.shape[2] < 1 || x.shape[3] < 1 ||
        x.shape[0] > 1000000 || x.shape[2] > 65536 || x.shape[3] > 65536) {
        cli_error("%s: expected a float32 [N, 3, H, W] tensor, got %d dimensions%s", a->tensor,
                  x.ndim, x.ndim == 4 ? " with other than 3 channels" : "");
        goto done;
    }
    int n = (int)x.shape[0], h = (int)x.shape[2], w = (int)x.shape[3];
    int batch = a->batch ? a->batch : 16;
    if (batch > n) batch = n;
    sx_encoder_output what = a->logits ? SX_OUT_LOGITS : SX_OUT_POOLED;
    size_t dim = sx_output_dim(model, what, SIAMIDX_POOL_DEFAULT);
    if (dim == 0) {
        cli_error("%s: the model has no fc layer: no logits", model->path);
        goto done;
    }
    siamidx_error err;
    out = malloc((size_t)n * dim * sizeof *out);
    if (!out || sx_encoder_new(model, batch, h, w, &enc, &err) != SIAMIDX_OK) {
        cli_error("%s", out ? err.message : "out of memory");
        goto done;
    }
    size_t per = (size_t)3 * h * w;
    double best = 0, total = 0;
    int timed = 0;
    for (int i = 0; i < n; i += batch) {
        int m = n - i < batch ? n - i : batch;
        double t0 = seconds();
        if (sx_encoder_run(enc, x.data + i * per, m, what, SIAMIDX_POOL_DEFAULT,
                           out + (size_t)i * dim, &err) != SIAMIDX_OK) {
            cli_error("%s", err.message);
            goto done;
        }
        double t = seconds() - t0;
        if (i > 0 && m == batch) { /* the first batch pays for page faults */
            best = timed++ ? (t < best ? t : best) : t;
            total += t;
        }
    }
    if (a->time && timed)
        fprintf(stderr, "forward: batch %d: best %.4f s, mean %.4f s per batch over %d batches\n",
                batch, best, total / timed, timed);
    out_file o;
    if (out_open(&o, a->out) != 0) goto done;
    int64_t shape[2] = {n, (int64_t)dim};
    int ok = npy_write_f32(o.f, out, 2, shape) == 0;
    if (out_close(&o, ok) == 0) code = CLI_EXIT_OK;
done:
    sx_encoder_free(enc);
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

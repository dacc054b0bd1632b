/* cmd_model_info.c - `siamidx model-info [MODEL] [--json]`: what a model file holds. */
#include <stdio.h>
#include <string.h>

#include "siamidx_ext.h"
#include "args.h"
#include "cli.h"

static const cli_help model_info_help = {
    "siamidx model-info [MODEL] [options]",
    "Prints a model's architecture, preprocessing, pooling, embedding dimension,\n"
    "classes, fingerprint, parameter count and every metadata key.\n"
    "MODEL (or -m) defaults to $SIAMIDX_MODEL, then the installed default model.\n"};

static const char *policy_name(const siamidx_model_description *d) {
    return d->squash ? "squash" : "shorter_center_crop";
}

static void style_list(const siamidx_model_description *d, char *out, size_t cap) {
    size_t o = 0;
    out[0] = 0;
    for (int s = 0; s < 4 && o < cap; s++)
        if (d->style_stages & (1u << s))
            o += (size_t)snprintf(out + o, cap - o, "%s%d", o ? "," : "", s + 1);
}

static void print_text(const siamidx_model *m, const siamidx_model_description *d) {
    char style[32];
    style_list(d, style, sizeof style);
    printf("file:          %s\n", d->path);
    printf("arch:          %s (%s blocks)\n", d->arch, d->bottleneck ? "bottleneck" : "basic");
    printf("stages:        %d (channels", d->n_stages);
    for (int s = 0; s < d->n_stages; s++) printf(" %d", d->stage_channels[s]);
    printf(")\n");
    printf("input:         %dx%d, %s resize %d\n", d->input_size, d->input_size, policy_name(d),
           d->resize_size);
    printf("normalise:     mean %g,%g,%g std %g,%g,%g\n", d->mean[0], d->mean[1], d->mean[2],
           d->std[0], d->std[1], d->std[2]);
    printf("pooling:       %s", siamidx_pool_name(d->pool));
    if (d->pool == SIAMIDX_POOL_GEM) printf(" (p=%g)", d->gem_p);
    if (d->pool == SIAMIDX_POOL_STYLE) printf(" (stages %s)", style);
    printf("\nembedding dim: %zu\n", d->embedding_dim);
    printf("classes:       %d\n", d->n_classes);
    printf("parameters:    %zu (BatchNorm folded)\n", d->n_params);
    printf("fingerprint:   %s\n", d->fingerprint);
    printf("conv kernel:   %s (SIAMIDX_CPU=auto|avx512|avx2|blas)\n", d->kernel);
    printf("metadata:\n");
    for (size_t i = 0; i < siamidx_model_meta_count(m); i++) {
        const char *k = siamidx_model_meta_key(m, i);
        printf("  %s=%s\n", k, siamidx_model_meta(m, k));
    }
}

int cmd_model_info(int argc, char **argv) {
    int json = 0, first;
    const char *path = NULL;
    const cli_option opts[] = {CLI_OPT_MODEL(&path), CLI_OPT_JSON(&json), CLI_END};
    int rc = cli_parse(argc, argv, opts, &model_info_help, &first);
    if (rc >= 0) return rc;
    if (argc - first > (path ? 0 : 1)) {
        cli_error("model-info: more than one model given");
        return CLI_EXIT_USAGE;
    }
    if (first < argc) path = argv[first];
    siamidx_model *m = cli_load_model(path);
    if (!m) return CLI_EXIT_FAILURE;
    siamidx_model_description d;
    siamidx_model_describe(m, &d);
    if (json) {
        char *doc;
        siamidx_error err;
        if (siamidx_model_info_json(m, &doc, &err)) {
            cli_error("%s", err.message);
            siamidx_model_free(m);
            return CLI_EXIT_FAILURE;
        }
        puts(doc);
        siamidx_json_free(doc);
    } else {
        print_text(m, &d);
    }
    siamidx_model_free(m);
    return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
}

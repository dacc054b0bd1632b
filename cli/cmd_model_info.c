/* cmd_model_info.c - `siamidx model-info [--json] MODEL`: what a model file holds. */
#include <stdio.h>
#include <string.h>

#include "siamidx_ext.h"
#include "args.h"
#include "cli.h"
#include "json.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: siamidx model-info [--json] [MODEL]\n\n"
            "Prints a model's architecture, preprocessing, pooling, embedding dimension,\n"
            "classes, fingerprint, parameter count and every metadata key.\n"
            "MODEL defaults to $SIAMIDX_MODEL, then the installed default model.\n");
}

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
    printf("metadata:\n");
    for (size_t i = 0; i < siamidx_model_meta_count(m); i++) {
        const char *k = siamidx_model_meta_key(m, i);
        printf("  %s=%s\n", k, siamidx_model_meta(m, k));
    }
}

static void print_json(const siamidx_model *m, const siamidx_model_description *d) {
    char style[32];
    style_list(d, style, sizeof style);
    cli_json j;
    cli_json_init(&j, stdout, 0);
    cli_json_object(&j);
    cli_json_key(&j, "file");
    cli_json_string(&j, d->path);
    cli_json_key(&j, "arch");
    cli_json_string(&j, d->arch);
    cli_json_key(&j, "stages");
    cli_json_int(&j, d->n_stages);
    cli_json_key(&j, "stage_channels");
    cli_json_array(&j);
    for (int s = 0; s < d->n_stages; s++) cli_json_int(&j, d->stage_channels[s]);
    cli_json_end(&j);
    cli_json_key(&j, "input_size");
    cli_json_int(&j, d->input_size);
    cli_json_key(&j, "resize");
    cli_json_int(&j, d->resize_size);
    cli_json_key(&j, "resize_policy");
    cli_json_string(&j, policy_name(d));
    const char *names[2] = {"mean", "std"};
    const float *values[2] = {d->mean, d->std};
    for (int k = 0; k < 2; k++) {
        cli_json_key(&j, names[k]);
        cli_json_array(&j);
        for (int c = 0; c < 3; c++) cli_json_number(&j, values[k][c], "%.7g");
        cli_json_end(&j);
    }
    cli_json_key(&j, "pooling");
    cli_json_string(&j, siamidx_pool_name(d->pool));
    cli_json_key(&j, "gem_p");
    cli_json_number(&j, d->gem_p, "%.7g");
    cli_json_key(&j, "style_stages");
    cli_json_string(&j, style);
    cli_json_key(&j, "embedding_dim");
    cli_json_uint(&j, d->embedding_dim);
    cli_json_key(&j, "num_classes");
    cli_json_int(&j, d->n_classes);
    cli_json_key(&j, "parameters");
    cli_json_uint(&j, d->n_params);
    cli_json_key(&j, "fingerprint");
    cli_json_string(&j, d->fingerprint);
    cli_json_key(&j, "metadata");
    cli_json_object(&j);
    for (size_t i = 0; i < siamidx_model_meta_count(m); i++) {
        const char *k = siamidx_model_meta_key(m, i);
        cli_json_key(&j, k);
        cli_json_string(&j, siamidx_model_meta(m, k));
    }
    cli_json_end(&j);
    cli_json_end(&j);
    cli_json_finish(&j);
}

int cmd_model_info(int argc, char **argv) {
    int json = 0, first;
    const char *path = NULL;
    const cli_option opts[] = {CLI_OPT("json", 0, CLI_FLAG, &json),
                               CLI_OPT("model", 'm', CLI_STRING, &path), CLI_END};
    int rc = cli_parse(argc, argv, opts, usage, &first);
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
    if (json) print_json(m, &d);
    else print_text(m, &d);
    siamidx_model_free(m);
    return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
}

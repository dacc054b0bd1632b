/* cmd_model_info.c - `siamidx model-info [--json] MODEL`: what a model file holds. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "internal.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: siamidx model-info [--json] [MODEL]\n\n"
            "Prints a model's architecture, preprocessing, pooling, embedding dimension,\n"
            "classes, fingerprint, parameter count and every metadata key.\n"
            "MODEL defaults to $SIAMIDX_MODEL, then the installed default model.\n");
}

static void json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

static const char *policy_name(sx_resize_policy p) {
    return p == SX_RESIZE_SQUASH ? "squash" : "shorter_center_crop";
}

static void style_list(const siamidx_model *m, char *out, size_t cap) {
    size_t o = 0;
    out[0] = 0;
    for (int s = 0; s < 4 && o < cap; s++)
        if (m->style_stages & (1u << s)) o += (size_t)snprintf(out + o, cap - o, "%s%d", o ? "," : "", s + 1);
}

static void print_text(const siamidx_model *m) {
    const sx_preprocess_cfg *p = &m->pre;
    char style[32];
    style_list(m, style, sizeof style);
    printf("file:          %s\n", m->path);
    printf("arch:          %s (%s blocks)\n", m->arch, m->bottleneck ? "bottleneck" : "basic");
    printf("stages:        %d (channels", m->n_stages);
    for (int s = 0; s < m->n_stages; s++) printf(" %d", m->stage_channels[s]);
    printf(")\n");
    printf("input:         %dx%d, %s resize %d\n", p->input_size, p->input_size,
           policy_name(p->policy), p->resize_size);
    printf("normalise:     mean %g,%g,%g std %g,%g,%g\n", p->mean[0], p->mean[1], p->mean[2],
           p->std[0], p->std[1], p->std[2]);
    printf("pooling:       %s", siamidx_pool_name(m->pool));
    if (m->pool == SIAMIDX_POOL_GEM) printf(" (p=%g)", m->gem_p);
    if (m->pool == SIAMIDX_POOL_STYLE) printf(" (stages %s)", style);
    printf("\nembedding dim: %zu\n", siamidx_model_dim(m, SIAMIDX_POOL_DEFAULT));
    printf("classes:       %d\n", m->n_classes);
    printf("parameters:    %zu (BatchNorm folded)\n", m->n_params);
    printf("fingerprint:   %s\n", m->fingerprint);
    printf("metadata:\n");
    for (size_t i = 0; i < siamidx_model_meta_count(m); i++) {
        const char *k = siamidx_model_meta_key(m, i);
        printf("  %s=%s\n", k, siamidx_model_meta(m, k));
    }
}

static void print_json(const siamidx_model *m) {
    const sx_preprocess_cfg *p = &m->pre;
    char style[32];
    style_list(m, style, sizeof style);
    printf("{\"file\":");
    json_string(m->path);
    printf(",\"arch\":\"%s\",\"stages\":%d,\"stage_channels\":[", m->arch, m->n_stages);
    for (int s = 0; s < m->n_stages; s++) printf("%s%d", s ? "," : "", m->stage_channels[s]);
    printf("],\"input_size\":%d,\"resize\":%d,\"resize_policy\":\"%s\"", p->input_size,
           p->resize_size, policy_name(p->policy));
    printf(",\"mean\":[%.7g,%.7g,%.7g],\"std\":[%.7g,%.7g,%.7g]", p->mean[0], p->mean[1],
           p->mean[2], p->std[0], p->std[1], p->std[2]);
    printf(",\"pooling\":\"%s\",\"gem_p\":%.7g,\"style_stages\":\"%s\"", siamidx_pool_name(m->pool),
           m->gem_p, style);
    printf(",\"embedding_dim\":%zu,\"num_classes\":%d,\"parameters\":%zu,\"fingerprint\":\"%s\"",
           siamidx_model_dim(m, SIAMIDX_POOL_DEFAULT), m->n_classes, m->n_params, m->fingerprint);
    printf(",\"metadata\":{");
    for (size_t i = 0; i < siamidx_model_meta_count(m); i++) {
        const char *k = siamidx_model_meta_key(m, i);
        if (i) putchar(',');
        json_string(k);
        putchar(':');
        json_string(siamidx_model_meta(m, k));
    }
    printf("}}\n");
}

int cmd_model_info(int argc, char **argv) {
    int json = 0;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return CLI_EXIT_OK;
        } else if ((!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) && i + 1 < argc)
            path = argv[++i];
        else if (argv[i][0] == '-' && argv[i][1]) {
            cli_error("model-info: unknown option '%s'", argv[i]);
            usage(stderr);
            return CLI_EXIT_USAGE;
        } else if (!path) path = argv[i];
        else {
            cli_error("model-info: more than one model given");
            return CLI_EXIT_USAGE;
        }
    }
    siamidx_model *m = cli_load_model(path);
    if (!m) return CLI_EXIT_FAILURE;
    if (json) print_json(m);
    else print_text(m);
    siamidx_model_free(m);
    return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
}

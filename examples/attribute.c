/*
 * attribute.c - which indexed artists most likely painted a picture?
 *
 *   attribute [-m MODEL] [-i INDEX] [-k K] IMAGE
 *
 * Prints the top K artists (default 5) with their probability, most likely
 * first, then the share left to an artist the index does not hold:
 *
 *   0.612345  Claude Monet
 *   0.201000  Alfred Sisley
 *   0.186655  (unknown)
 *
 * The index is -i, else $SIAMIDX_INDEX, else ./siamidx.idx; the model is -m,
 * else $SIAMIDX_MODEL, else the installed default. It must be the model the
 * index was built with. Exit status: 0 answered, 1 failure, 2 usage.
 *
 * Build against an installed siamidx:
 *   cc attribute.c $(pkg-config --cflags --libs siamidx) -o attribute
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <siamidx.h>

static int usage(void) {
    fprintf(stderr, "usage: attribute [-m MODEL] [-i INDEX] [-k K] IMAGE\n");
    return 2;
}

static const char *model_path(const char *given) {
    if (given) return given;
    const char *env = getenv("SIAMIDX_MODEL");
    return env && *env ? env : siamidx_default_model_path();
}

int main(int argc, char **argv) {
    const char *model_arg = NULL, *index_dir = NULL, *image = NULL;
    int k = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-m") && i + 1 < argc) model_arg = argv[++i];
        else if (!strcmp(argv[i], "-i") && i + 1 < argc) index_dir = argv[++i];
        else if (!strcmp(argv[i], "-k") && i + 1 < argc) k = atoi(argv[++i]);
        else if (argv[i][0] == '-' && argv[i][1]) return usage();
        else if (!image) image = argv[i];
        else return usage();
    }
    if (!image || k < 1 || k > 10000) return usage();
    if (!index_dir) index_dir = siamidx_default_index_path();

    siamidx_error err;
    siamidx_model *model = NULL;
    siamidx_index *idx = NULL;
    siamidx_query_result res;
    siamidx_index_options opt;
    int rc = 1;
    memset(&res, 0, sizeof res); /* freeing an empty result is harmless */
    siamidx_index_options_init(&opt);
    opt.read_only = 1;

    if (siamidx_model_load(model_path(model_arg), &model, &err)) goto fail;
    /* Refused with SIAMIDX_ERR_MODEL_MISMATCH if the index used another model. */
    if (siamidx_index_open(index_dir, model, &opt, &idx, &err)) goto fail;
    if (siamidx_index_query(idx, model, image, k, &res, &err)) goto fail;

    for (size_t i = 0; i < res.n_artists && i < (size_t)k; i++)
        printf("%.6f  %s\n", res.artists[i].probability, res.artists[i].artist);
    if (res.unknown > 0) printf("%.6f  (unknown)\n", res.unknown);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "attribute: %s\n", err.message);
done:
    siamidx_query_result_free(&res);
    siamidx_index_close(idx);
    siamidx_model_free(model);
    return rc;
}

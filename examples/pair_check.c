/*
 * pair_check.c - are two paintings by the same artist?
 *
 *   pair_check [-m MODEL] [-i INDEX] A B
 *
 * Prints the calibrated probability and the verdict at the head's threshold:
 *
 *   P(same artist) = 0.734120, threshold 0.500000: same artist
 *
 * The head comes from the index (-i, its trained head, else the model's),
 * else from the model file itself. The model is -m, else $SIAMIDX_MODEL,
 * else the installed default. Exit status: 0 answered, 1 failure, 2 usage.
 *
 * Build against an installed siamidx:
 *   cc pair_check.c $(pkg-config --cflags --libs siamidx) -o pair_check
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <siamidx.h>

static int usage(void) {
    fprintf(stderr, "usage: pair_check [-m MODEL] [-i INDEX] A B\n");
    return 2;
}

static const char *model_path(const char *given) {
    if (given) return given;
    const char *env = getenv("SIAMIDX_MODEL");
    return env && *env ? env : siamidx_default_model_path();
}

int main(int argc, char **argv) {
    const char *model_arg = NULL, *index_dir = NULL, *images[2];
    int n_images = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-m") && i + 1 < argc) model_arg = argv[++i];
        else if (!strcmp(argv[i], "-i") && i + 1 < argc) index_dir = argv[++i];
        else if (argv[i][0] == '-' && argv[i][1]) return usage();
        else if (n_images < 2) images[n_images++] = argv[i];
        else return usage();
    }
    if (n_images != 2) return usage();

    siamidx_error err;
    siamidx_model *model = NULL;
    siamidx_index *idx = NULL;
    siamidx_head *head = NULL; /* NULL: siamidx_pair_files uses the model's head */
    siamidx_pair_result r;
    int rc = 1;

    if (siamidx_model_load(model_path(model_arg), &model, &err)) goto fail;
    if (index_dir) {
        siamidx_index_options opt;
        siamidx_index_options_init(&opt);
        opt.read_only = 1; /* a reader never waits for, or blocks, a writer */
        if (siamidx_index_open(index_dir, model, &opt, &idx, &err)) goto fail;
        if (siamidx_index_head(idx, model, &head, &err)) goto fail;
    }
    if (siamidx_pair_files(model, head, images[0], images[1], NULL, &r, &err)) goto fail;

    printf("P(same artist) = %.6f, threshold %.6f: %s\n", r.probability, r.threshold,
           r.same_artist ? "same artist" : "different artists");
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "pair_check: %s\n", err.message);
done:
    siamidx_head_free(head);
    siamidx_index_close(idx);
    siamidx_model_free(model);
    return rc;
}

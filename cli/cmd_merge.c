/*
 * cmd_merge.c - `siamidx merge -i OUT SHARD...`: joins indexes (the shards of
 * `build --shard I/N`) into OUT, which is made when absent.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "args.h"
#include "cli.h"
#include "progress.h"
#include "signals.h"

static const cli_help merge_help = {
    "siamidx merge -i OUT SHARD... [options]",
    "Adds every record of each SHARD index (typically made by build --shard I/N)\n"
    "to OUT (made when absent): paths, artists and embeddings as the shards hold\n"
    "them, nothing embedded again. Refused, naming them, before anything is written:\n"
    "a shard built with another model (both fingerprints), OUT itself, and records\n"
    "that would put one image under two artists (its path, or its bytes, held by OUT\n"
    "under another artist). Each shard is one write transaction: a kill leaves the\n"
    "shards that committed, and a re-run completes the merge (records already merged\n"
    "are left alone). The FAISS index of OUT is updated once, at the end.\n"
    "exit status: 0 success, 1 failure or refusal (OUT unchanged by the refused\n"
    "shard), 2 usage error, 130 interrupted (SIGINT/SIGTERM) between shards\n"};

static void print_conflict(void *ctx, const char *line) {
    (void)ctx;
    cli_error("conflict: %s", line);
}

static void show_progress(void *ctx, size_t done, size_t total) {
    if (*(const int *)ctx) fprintf(stderr, "siamidx: merged shard %zu of %zu\n", done, total);
}

int cmd_merge(int argc, char **argv) {
    const char *index = NULL, *type = NULL;
    int wait = 0, quiet = 0, first;
    const cli_option opts[] = {
        CLI_OPT_INDEX(&index),
        CLI_OPT("index-type", 0, CLI_STRING, &type, "flat|hnsw|ivf|ivfpq",
                "FAISS index kind of a new OUT (default: the first shard's)"),
        CLI_OPT_WAIT(&wait),
        CLI_OPT("quiet", 0, CLI_FLAG, &quiet, NULL, "no progress lines"),
        CLI_END};
    int rc = cli_parse(argc, argv, opts, &merge_help, &first);
    if (rc >= 0) return rc;
    if (argc - first < 1) return cli_error("merge wants SHARD... (see --help)"), CLI_EXIT_USAGE;
    if (!index) index = siamidx_default_index_path();
    struct stat sb;
    for (int i = first; i < argc; i++) /* before OUT is made for them */
        if (stat(argv[i], &sb) != 0)
            return cli_error("%s: %s", argv[i], strerror(errno)), CLI_EXIT_FAILURE;
    int existed = stat(index, &sb) == 0;
    volatile int *stop = cli_catch_stop_signals(); /* between shards */
    siamidx_index_options o;
    siamidx_index_options_init(&o);
    o.create = 1;
    o.wait = wait;
    o.index_type = existed ? type : NULL; /* a new OUT: the merge options say it */
    siamidx_index *out = NULL;
    siamidx_error err;
    if (siamidx_index_open(index, NULL, &o, &out, &err)) {
        cli_error("%s", err.message);
        return CLI_EXIT_FAILURE;
    }
    int verbose = !quiet;
    siamidx_merge_options m;
    siamidx_merge_options_init(&m);
    m.index_type = type;
    m.stop = stop;
    m.progress = show_progress;
    m.progress_ctx = &verbose;
    m.conflict = print_conflict;
    siamidx_merge_report r;
    double start = cli_now();
    siamidx_status s = siamidx_index_merge(out, (const char *const *)argv + first,
                                           (size_t)(argc - first), &m, &r, &err);
    if (s) cli_error("%s", err.message);
    if (!s || r.shards) /* a refusal before anything was written has nothing to sum up */
        printf("merged %zu shard(s), %zu records: added %zu, replaced %zu, unchanged %zu, "
               "kept newer %zu (%zu write transaction(s)) in %.1f s\n",
               r.shards, r.records, r.added, r.replaced, r.unchanged, r.kept_newer, r.transactions,
               cli_now() - start);
    if (r.codes_moved) /* IVF-PQ shards of OUT's training: FAISS merge_from, nothing encoded */
        printf("IVF-PQ codes of %zu shard(s) moved into the index as they were\n", r.codes_moved);
    siamidx_index_close(out);
    if (!existed && s && r.added == 0) cli_remove_new_index(index);
    if (s == SIAMIDX_ERR_INTERRUPTED) return CLI_EXIT_INTERRUPTED;
    return s ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
}

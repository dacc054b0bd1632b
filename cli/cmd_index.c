/*
 * cmd_index.c - the index subcommands: build, add, query, info, remove,
 * verify (and a hidden `dump` for comparing two indexes in tests).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "siamidx_ext.h" /* dump: the index's records; JSON documents */
#include "args.h"
#include "cli.h"
#include "html_report.h"
#include "progress.h"
#include "signals.h"

typedef struct index_args {
    const char *index, *model, *type, *root, *artist, *shard, *html, *ivf_from;
    int batch, threads, quiet, wait, json, k, neighbors, candidates, nprobe;
} index_args;

static const cli_help build_help = {
    "siamidx build COLLECTION... [options]",
    "Indexes the images of each COLLECTION: a directory of ARTIST/IMAGE files or a CSV\n"
    "with filename and artist columns (relative paths from --root, else the CSV's folder);\n"
    "several are read as one (an artist name in more than one is one artist). Incremental:\n"
    "unchanged files (same size and mtime) are skipped and identical images are embedded\n"
    "once. One write transaction per --batch images. A second writer fails with 'being\n"
    "written by process N' unless --wait. Readers (query, info, verify) see the last\n"
    "committed state.\n"
    "--shard I/N (0 <= I < N, 0-based like Slurm's --array=0-(N-1)) indexes only the\n"
    "images whose content hash (SHA-256) falls in shard I: the same on every run and\n"
    "machine; other shards' images are hashed, never decoded. A shard is an ordinary\n"
    "index; `siamidx merge` joins shards into one.\n"
    "--index-type ivfpq trains IVF-PQ on a sample once the index holds 10,000\n"
    "images (searching exactly until then); --ivf-from INDEX instead encodes with\n"
    "INDEX's trained IVF-PQ (same model) at any size, never retraining, so shards\n"
    "built from one INDEX merge their codes.\n"
    "exit status: 0 success, 1 failure, 2 usage error, 3 some images failed and the rest\n"
    "were indexed, 130 interrupted (SIGINT/SIGTERM) after committing the batches done\n"};
static const cli_help add_help = {
    "siamidx add IMAGE... --artist NAME [options]",
    "Indexes image files as paintings by one artist (the same rules as build).\n"
    "exit status: 0 success, 1 failure, 2 usage error, 3 some images failed and the rest\n"
    "were indexed, 130 interrupted (SIGINT/SIGTERM) after committing the batches done\n"};
static const cli_help query_help = {
    "siamidx query IMAGE [options]",
    "Which indexed artists most likely painted IMAGE, and the nearest indexed paintings.\n"
    "The head (the index's trained head, else the model's default head) scores the\n"
    "--candidates nearest paintings against the image and weighs each artist against\n"
    "\"unknown\"; without any head the artists are ranked by similarity only (said so).\n"
    "An indexed file with the image's very bytes is named as its exact match; that\n"
    "record is then neither a neighbour nor evidence. --html FILE also writes a\n"
    "self-contained page: the painting, the artists' probabilities, the indexed\n"
    "paintings that carry the evidence, the model and index that answered.\n"};
static const cli_help info_help = {"siamidx info [options]",
                                   "What an index holds: images, artists, model, FAISS index.\n"};
static const cli_help remove_help = {
    "siamidx remove PATH... [options]\n       siamidx remove --artist NAME [options]",
    "Removes images: each PATH as query prints it (as given at build time) or as a path\n"
    "to the file; names the ones that matched nothing (exit 3). Or every image of an\n"
    "artist.\n"};
static const cli_help verify_help = {
    "siamidx verify [options]",
    "Checks the index's store and FAISS index and their agreement; prints each problem.\n"};
static const cli_help dump_help = {"siamidx dump [options]", "Records as TSV (for tests).\n"};

static void defaults(index_args *a) {
    memset(a, 0, sizeof *a);
    a->batch = 256;
    a->k = 5;
    a->neighbors = 5;
    a->candidates = SIAMIDX_DEFAULT_CANDIDATES;
}

/* Returns -1 to go on, else an exit code; operands are argv[*first..argc). */
static int parse(int argc, char **argv, const cli_option *opts, const cli_help *help,
                 index_args *a, int *first) {
    int rc = cli_parse(argc, argv, opts, help, first);
    if (rc >= 0) return rc;
    if (!a->index) a->index = siamidx_default_index_path();
    return -1;
}

#define OPT_BATCH(a) \
    CLI_NUM("batch", 0, CLI_INT, &(a)->batch, 1, 1 << 20, 0, "N", "images per write transaction")
#define OPT_QUIET(a) CLI_OPT("quiet", 0, CLI_FLAG, &(a)->quiet, NULL, "no progress line")

static int parse_build(int argc, char **argv, index_args *a, int *first) {
    defaults(a);
    const cli_option opts[] = {
        CLI_OPT_INDEX(&a->index), CLI_OPT_MODEL(&a->model),
        CLI_OPT("index-type", 0, CLI_STRING, &a->type, "flat|hnsw|ivf|ivfpq",
                "FAISS index kind; changing it rebuilds the FAISS index (default: the "
                "index's, flat for a new one)"),
        CLI_OPT("root", 0, CLI_STRING, &a->root, "DIR",
                "where a CSV's relative paths start (default: the CSV's folder)"),
        OPT_BATCH(a), CLI_OPT_THREADS(&a->threads), OPT_QUIET(a), CLI_OPT_WAIT(&a->wait),
        CLI_OPT("ivf-from", 0, CLI_STRING, &a->ivf_from, "INDEX",
                "encode with INDEX's trained IVF-PQ (same model), never retraining, so shards "
                "merge their codes (default: none)"),
        CLI_OPT("shard", 0, CLI_STRING, &a->shard, "I/N",
                "index only shard I of N (0-based) of the images, by content hash (default: "
                "all)"),
        CLI_OPT_JSON(&a->json), CLI_END};
    return parse(argc, argv, opts, &build_help, a, first);
}

static int parse_add(int argc, char **argv, index_args *a, int *first) {
    defaults(a);
    const cli_option opts[] = {
        CLI_OPT_INDEX(&a->index), CLI_OPT_MODEL(&a->model),
        CLI_OPT("artist", 0, CLI_STRING, &a->artist, "NAME", "the images' artist (required)"),
        OPT_BATCH(a), CLI_OPT_THREADS(&a->threads), OPT_QUIET(a), CLI_OPT_WAIT(&a->wait),
        CLI_OPT_JSON(&a->json), CLI_END};
    return parse(argc, argv, opts, &add_help, a, first);
}

static int parse_query(int argc, char **argv, index_args *a, int *first) {
    defaults(a);
    const cli_option opts[] = {
        CLI_OPT_INDEX(&a->index), CLI_OPT_MODEL(&a->model),
        CLI_NUM("top", 'k', CLI_INT, &a->k, 1, 100000, 0, "K", "artists to list"),
        CLI_NUM("neighbors", 0, CLI_INT, &a->neighbors, 0, 100000, 0, "N",
                "nearest indexed paintings to list"),
        CLI_NUM("candidates", 0, CLI_INT, &a->candidates, 1, 100000, 0, "N",
                "nearest indexed paintings scored as evidence, at least --neighbors (what "
                "\"unknown\" was fitted on and eval scores)"),
        CLI_NUM("nprobe", 0, CLI_INT, &a->nprobe, 1, 65536, 0, "N",
                "inverted lists an ivf/ivfpq index searches: fewer faster, more closer to "
                "exact (default: the index's; an error for flat and hnsw)"),
        CLI_OPT_THREADS(&a->threads), CLI_OPT_JSON(&a->json),
        CLI_OPT("html", 0, CLI_STRING, &a->html, "FILE",
                "also a self-contained page of the answer, with the evidence's thumbnails"),
        CLI_END};
    return parse(argc, argv, opts, &query_help, a, first);
}

static int parse_info(int argc, char **argv, index_args *a, int *first) {
    defaults(a);
    const cli_option opts[] = {CLI_OPT_INDEX(&a->index), CLI_OPT_JSON(&a->json), CLI_END};
    return parse(argc, argv, opts, &info_help, a, first);
}

static int parse_remove(int argc, char **argv, index_args *a, int *first) {
    defaults(a);
    const cli_option opts[] = {
        CLI_OPT_INDEX(&a->index),
        CLI_OPT("artist", 0, CLI_STRING, &a->artist, "NAME",
                "remove every image of this artist instead of PATHs"),
        CLI_OPT_WAIT(&a->wait), CLI_OPT_JSON(&a->json), CLI_END};
    return parse(argc, argv, opts, &remove_help, a, first);
}

static int parse_verify(int argc, char **argv, index_args *a, int *first) {
    defaults(a);
    const cli_option opts[] = {CLI_OPT_INDEX(&a->index), CLI_OPT_JSON(&a->json), CLI_END};
    return parse(argc, argv, opts, &verify_help, a, first);
}

static int parse_index_only(int argc, char **argv, const cli_help *help, index_args *a,
                            int *first) {
    defaults(a);
    const cli_option opts[] = {CLI_OPT_INDEX(&a->index), CLI_END};
    return parse(argc, argv, opts, help, a, first);
}

/* Prints a library document (st: the status that made it) and frees it; 0, or -1 after a
   message. */
static int print_document(siamidx_status st, char **json, const siamidx_error *err) {
    if (st) {
        cli_error("%s", err->message);
        return -1;
    }
    puts(*json);
    siamidx_json_free(*json);
    return 0;
}

static int exit_for(siamidx_status s) {
    return s == SIAMIDX_OK ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
}

static siamidx_index *open_index(const index_args *a, const siamidx_model *model, int read_only,
                                 int create) {
    siamidx_index_options o;
    siamidx_index_options_init(&o);
    o.read_only = read_only;
    o.create = create;
    o.wait = a->wait;
    o.index_type = a->type;
    siamidx_index *idx = NULL;
    siamidx_error err;
    if (siamidx_index_open(a->index, model, &o, &idx, &err)) {
        cli_error("%s", err.message);
        return NULL;
    }
    return idx;
}

/* ---- build / add ------------------------------------------------------------------------ */

typedef struct progress {
    double start;
    int on;
} progress;

static void show_progress(void *ctx, size_t done, size_t total) {
    progress *p = ctx;
    if (!p->on) return;
    double dt = cli_now() - p->start, rate = dt > 0 ? (double)done / dt : 0;
    double eta = rate > 0 ? (double)(total - done) / rate : 0;
    int width = 30, fill = total ? (int)((double)width * (double)done / (double)total) : width;
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    fprintf(stderr, "\r[%s] %zu/%zu  %.1f images/s  ETA %dm%02ds ", bar, done, total, rate,
            (int)eta / 60, (int)eta % 60);
    if (done >= total) fputc('\n', stderr);
    fflush(stderr);
}

static int finish_build(siamidx_index *idx, const index_args *a, int is_add, siamidx_status s,
                        const siamidx_error *err, siamidx_build_report *r, double start) {
    for (size_t i = 0; i < r->n_failures; i++)
        cli_error("%s", r->failures[i].message);
    if (s != SIAMIDX_OK && s != SIAMIDX_ERR_IMAGE) cli_error("%s", err->message);
    if (a->json) {
        char *json = NULL;
        siamidx_error e2;
        siamidx_status js = siamidx_build_report_json(idx, is_add ? "add" : "build", r, &json, &e2);
        if (print_document(js, &json, &e2)) s = js;
    } else {
        char shards[96] = "";
        if (a->shard)
            snprintf(shards, sizeof shards, ", other shards %zu, moved to another shard %zu",
                     r->other_shards, r->moved_out);
        printf("indexed %zu, unchanged %zu, failed %zu%s (embedded %zu, reused %zu) in %.1f s\n",
               r->indexed, r->unchanged, r->failed, shards, r->embedded, r->reused,
               cli_now() - start);
    }
    siamidx_build_report_free(r);
    if (s == SIAMIDX_OK) return CLI_EXIT_OK;
    if (s == SIAMIDX_ERR_INTERRUPTED) return CLI_EXIT_INTERRUPTED;
    return s == SIAMIDX_ERR_IMAGE ? CLI_EXIT_PARTIAL : CLI_EXIT_FAILURE;
}

/* Removes an index this command created and left empty (its own files only;
   anything else in the directory keeps it). */
void cli_remove_new_index(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d))) {
        const char *n = e->d_name;
        if (strcmp(n, "data.mdb") && strcmp(n, "lock.mdb") && strcmp(n, "writer.lock") &&
            strncmp(n, "vectors.", 8))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, n);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

/* "I/N" with 0 <= I < N <= 2^20; 1 when it is one. */
static int parse_shard(const char *text, unsigned *i, unsigned *n) {
    char *end;
    errno = 0;
    unsigned long a = strtoul(text, &end, 10);
    if (errno || end == text || *end != '/' || text[0] == '-') return 0;
    const char *rest = end + 1;
    unsigned long b = strtoul(rest, &end, 10);
    if (errno || end == rest || *end || rest[0] == '-' || b == 0 || b > (1ul << 20) || a >= b)
        return 0;
    *i = (unsigned)a;
    *n = (unsigned)b;
    return 1;
}

static int run_build(int argc, char **argv, int is_add) {
    index_args a;
    int first, rc = is_add ? parse_add(argc, argv, &a, &first) : parse_build(argc, argv, &a, &first);
    if (rc >= 0) return rc;
    if (!is_add && argc - first < 1)
        return cli_error("build wants a COLLECTION (see --help)"), CLI_EXIT_USAGE;
    if (is_add && (argc - first < 1 || !a.artist))
        return cli_error("add wants IMAGE... and --artist NAME (see --help)"), CLI_EXIT_USAGE;
    unsigned shard_i = 0, shard_n = 0;
    if (a.shard && (is_add || !parse_shard(a.shard, &shard_i, &shard_n)))
        return cli_error(is_add ? "add: --shard is for build only"
                                : "build: --shard wants I/N with 0 <= I < N (0-based), not '%s'",
                         a.shard), CLI_EXIT_USAGE;
    struct stat sb;
    for (int i = first; !is_add && i < argc; i++) /* before an index is made for them */
        if (stat(argv[i], &sb) != 0)
            return cli_error("%s: %s", argv[i], strerror(errno)), CLI_EXIT_FAILURE;
    if (a.ivf_from && a.type && strcmp(a.type, "ivfpq"))
        return cli_error("--ivf-from makes an ivfpq index, not %s", a.type), CLI_EXIT_USAGE;
    if (a.ivf_from) a.type = NULL; /* the training comes with the type, in one transaction */
    int existed = stat(a.index, &sb) == 0;
    /* Ctrl-C: stop before the next batch, keep what is committed, save the snapshot, exit 130. */
    volatile int *stop = cli_catch_stop_signals();
    if (a.threads) siamidx_set_threads(a.threads);
    siamidx_model *model = cli_load_model(a.model);
    if (!model) return CLI_EXIT_FAILURE;
    siamidx_index *idx = open_index(&a, model, 0, 1);
    if (!idx) {
        siamidx_model_free(model);
        return CLI_EXIT_FAILURE;
    }
    siamidx_error ierr;
    if (a.ivf_from && siamidx_index_ivf_from(idx, a.ivf_from, &ierr)) {
        cli_error("%s", ierr.message);
        siamidx_index_close(idx);
        siamidx_model_free(model);
        if (!existed) cli_remove_new_index(a.index);
        return CLI_EXIT_FAILURE;
    }
    progress p = {.start = cli_now(), .on = !a.quiet && isatty(2)};
    siamidx_build_options o;
    siamidx_build_options_init(&o);
    o.root = a.root;
    o.batch = a.batch;
    o.progress = show_progress;
    o.progress_ctx = &p;
    o.stop = stop;
    o.shard_index = shard_i;
    o.shard_count = shard_n;
    siamidx_build_report r;
    siamidx_error err;
    siamidx_status s;
    if (is_add)
        s = siamidx_index_add(idx, model, (const char *const *)argv + first,
                              (size_t)(argc - first), a.artist, &o, &r, &err);
    else
        s = siamidx_index_build_many(idx, model, (const char *const *)argv + first,
                                     (size_t)(argc - first), &o, &r, &err);
    size_t r_indexed = r.indexed; /* finish_build frees the report */
    rc = finish_build(idx, &a, is_add, s, &err, &r, p.start);
    siamidx_index_info info;
    if (siamidx_index_info_get(idx, &info, &err) == SIAMIDX_OK) {
        if (!strncmp(info.index_type, "ivf", 3) && strncmp(info.faiss, "IVF", 3))
            fprintf(stderr, "siamidx: note: %s needs more vectors to train (%llu indexed); "
                            "searching exactly (flat) until then\n",
                    info.index_type, (unsigned long long)info.images);
        siamidx_index_info_free(&info);
    }
    siamidx_index_close(idx);
    siamidx_model_free(model);
    if (!existed && s != SIAMIDX_OK && r_indexed == 0) cli_remove_new_index(a.index);
    return rc;
}

int cmd_build(int argc, char **argv) { return run_build(argc, argv, 0); }
int cmd_add(int argc, char **argv) { return run_build(argc, argv, 1); }

/* ---- query ------------------------------------------------------------------------------- */

/* "  (P same 0.8123)" with a trained head, "" without. */
static const char *pair_note(float p) {
    static _Thread_local char buf[32];
    if (p != p) return "";
    snprintf(buf, sizeof buf, "  (P same %.4f)", p);
    return buf;
}

static void print_query(const siamidx_query_result *r) {
    if (r->head == SIAMIDX_HEAD_NONE)
        printf("head: none (similarity only: no trained head in the index or the model; "
               "the scores rank artists, they are not probabilities)\n");
    else
        printf("head: %s%s\n", siamidx_head_source_name(r->head),
               r->classifier ? " + classifier" : "");
    if (r->exact_match_path)
        printf("exact match: %s  %s (the same file is indexed; not counted as evidence)\n",
               r->exact_match_artist, r->exact_match_path);
    printf("artists:\n");
    for (size_t i = 0; i < r->n_artists; i++)
        printf("  %.4f  %s\n", r->artists[i].probability, r->artists[i].artist);
    if (r->unknown > 0) printf("  %.4f  (unknown: an artist not in the index)\n", r->unknown);
    printf("neighbors:\n");
    for (size_t i = 0; i < r->n_neighbors; i++)
        printf("  %.4f  %-24s %s%s\n", r->neighbors[i].similarity, r->neighbors[i].artist,
               r->neighbors[i].path, pair_note(r->neighbors[i].probability));
}

int cmd_query(int argc, char **argv) {
    index_args a;
    int first, rc = parse_query(argc, argv, &a, &first);
    if (rc >= 0) return rc;
    if (argc - first != 1) return cli_error("query wants one IMAGE (see --help)"), CLI_EXIT_USAGE;
    if (a.threads) siamidx_set_threads(a.threads);
    siamidx_model *model = cli_load_model(a.model);
    if (!model) return CLI_EXIT_FAILURE;
    siamidx_index *idx = open_index(&a, model, 1, 0);
    siamidx_status s = SIAMIDX_ERR_NOT_FOUND;
    siamidx_error err;
    if (idx && a.nprobe && (s = siamidx_index_set_nprobe(idx, (unsigned)a.nprobe, &err))) {
        cli_error("%s", err.message);
        siamidx_index_close(idx);
        siamidx_model_free(model);
        return CLI_EXIT_USAGE;
    }
    if (idx) {
        siamidx_query_result r;
        siamidx_query_options o;
        siamidx_query_options_init(&o);
        o.k = a.k;
        o.neighbors = a.neighbors;
        o.candidates = a.candidates;
        s = siamidx_index_query_opts(idx, model, argv[first], &o, &r, &err);
        if (s) {
            cli_error("%s", err.message);
        } else if (a.json) {
            char *json = NULL;
            siamidx_status js = siamidx_query_json(idx, model, argv[first], &r, &json, &err);
            if (print_document(js, &json, &err)) s = js;
        } else {
            print_query(&r);
        }
        if (!s && a.html && html_query_report(a.html, argv[first], &r, model, idx, a.index))
            s = SIAMIDX_ERR_IO;
        siamidx_query_result_free(&r);
    }
    siamidx_index_close(idx);
    siamidx_model_free(model);
    return exit_for(s);
}

/* ---- info --------------------------------------------------------------------------------- */

static void print_info(const char *dir, const siamidx_index_info *n) {
    printf("index        %s\n", dir);
    printf("images       %llu\n", (unsigned long long)n->images);
    printf("artists      %llu\n", (unsigned long long)n->n_artists);
    printf("model        %s (%s, %s pooling)\n", n->fingerprint[0] ? n->fingerprint : "-",
           n->arch[0] ? n->arch : "-", n->pool[0] ? n->pool : "-");
    printf("dim          %u\n", n->dim);
    printf("index type   %s (FAISS: %s)\n", n->index_type, n->faiss);
    if (n->ivf_nlist)
        printf("ivf-pq       nlist %u, PQ %u x %u bits (%u bytes a vector), nprobe %u, "
               "trained on %llu vectors%s, tag %s\n",
               n->ivf_nlist, n->pq_m, n->pq_nbits, n->pq_m * n->pq_nbits / 8, n->nprobe,
               (unsigned long long)n->ivf_trained_on, n->ivf_imported ? " (imported)" : "",
               n->ivf_tag);
    if (n->shard_count)
        printf("shard        %u/%u (build --shard: the images whose content hash falls in it)\n",
               n->shard_index, n->shard_count);
    printf("generation   %llu\n", (unsigned long long)n->generation);
    printf("bytes        %llu\n", (unsigned long long)n->bytes_on_disk);
    for (size_t i = 0; i < n->n_artists; i++)
        printf("  %8llu  %s\n", (unsigned long long)n->artists[i].images, n->artists[i].name);
}

int cmd_info(int argc, char **argv) {
    index_args a;
    int first, rc = parse_info(argc, argv, &a, &first);
    if (rc >= 0) return rc;
    if (argc != first) return cli_error("info takes no operands (see --help)"), CLI_EXIT_USAGE;
    siamidx_index *idx = open_index(&a, NULL, 1, 0);
    if (!idx) return CLI_EXIT_FAILURE;
    siamidx_index_info info;
    siamidx_error err;
    siamidx_status s = siamidx_index_info_get(idx, &info, &err);
    if (s) {
        cli_error("%s", err.message);
    } else if (a.json) {
        char *json = NULL;
        siamidx_status js = siamidx_index_info_json(idx, &info, &json, &err);
        if (print_document(js, &json, &err)) s = js;
    } else {
        print_info(a.index, &info);
    }
    siamidx_index_info_free(&info);
    siamidx_index_close(idx);
    return exit_for(s);
}

/* ---- remove / verify -------------------------------------------------------------------------- */

/* The remove report: "removed N", or with --json the document; -1 when it could not be made. */
static int print_removed(const index_args *a, siamidx_index *idx, char **paths,
                         const size_t *matches, size_t n, size_t removed) {
    if (!a->json) {
        printf("removed %zu\n", removed);
        return 0;
    }
    char *json = NULL;
    siamidx_error err;
    siamidx_status js = siamidx_remove_report_json(idx, n ? NULL : a->artist,
                                                   (const char *const *)paths, matches, n,
                                                   removed, &json, &err);
    return print_document(js, &json, &err);
}

/* remove PATH...: each path as query prints it or as a path to the file;
   exit 3 when some named nothing and the others were removed. */
static int remove_paths(const index_args *a, siamidx_index *idx, char **paths, size_t n) {
    size_t *matches = calloc(n + 1, sizeof *matches), removed = 0;
    if (!matches) return cli_error("out of memory"), CLI_EXIT_FAILURE;
    siamidx_error err;
    siamidx_status s =
        siamidx_index_remove_paths(idx, (const char *const *)paths, n, matches, &removed, &err);
    size_t unmatched = 0;
    for (size_t i = 0; i < n && (s == SIAMIDX_OK || s == SIAMIDX_ERR_NOT_FOUND); i++) {
        if (matches[i] == 0) cli_error("%s: not in the index", paths[i]);
        if (matches[i] > 1)
            cli_error("%s: names %zu images (as given to different builds); give its full path",
                      paths[i], matches[i]);
        unmatched += matches[i] != 1;
    }
    int printed = s ? -1 : print_removed(a, idx, paths, matches, n, removed);
    free(matches);
    if (s) cli_error("%s", err.message);
    if (s || printed) return CLI_EXIT_FAILURE;
    return unmatched ? CLI_EXIT_PARTIAL : CLI_EXIT_OK;
}

int cmd_remove(int argc, char **argv) {
    index_args a;
    int first, rc = parse_remove(argc, argv, &a, &first);
    if (rc >= 0) return rc;
    if ((argc == first) == !a.artist)
        return cli_error("remove wants PATH... or --artist NAME (see --help)"), CLI_EXIT_USAGE;
    siamidx_index *idx = open_index(&a, NULL, 0, 0);
    if (!idx) return CLI_EXIT_FAILURE;
    if (!a.artist) {
        rc = remove_paths(&a, idx, argv + first, (size_t)(argc - first));
        siamidx_index_close(idx);
        return rc;
    }
    size_t removed = 0;
    siamidx_error err;
    siamidx_status s = siamidx_index_remove_artist(idx, a.artist, &removed, &err);
    if (s) cli_error("%s", err.message);
    else if (print_removed(&a, idx, NULL, NULL, 0, removed)) s = SIAMIDX_ERR_NO_MEMORY;
    siamidx_index_close(idx);
    return exit_for(s);
}

/* verify's problems: printed as they come, or kept for the --json document. */
typedef struct problems {
    int keep;
    char **list;
    size_t n, cap;
    int lost; /* out of memory while keeping one */
} problems;

static void on_problem(void *ctx, const char *problem) {
    problems *p = ctx;
    if (!p->keep) {
        printf("problem: %s\n", problem);
        return;
    }
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 16;
        char **list = realloc(p->list, cap * sizeof *list);
        if (!list) {
            p->lost = 1;
            return;
        }
        p->list = list, p->cap = cap;
    }
    if (!(p->list[p->n] = strdup(problem))) p->lost = 1;
    else p->n++;
}

int cmd_verify(int argc, char **argv) {
    index_args a;
    int first, rc = parse_verify(argc, argv, &a, &first);
    if (rc >= 0) return rc;
    if (argc != first) return cli_error("verify takes no operands (see --help)"), CLI_EXIT_USAGE;
    siamidx_index *idx = open_index(&a, NULL, 1, 0);
    if (!idx) return CLI_EXIT_FAILURE;
    size_t n_problems = 0;
    siamidx_error err;
    problems p = {a.json, NULL, 0, 0, 0};
    siamidx_status s = siamidx_index_verify(idx, on_problem, &p, &n_problems, &err);
    rc = CLI_EXIT_OK;
    if (s) {
        cli_error("%s", err.message);
        rc = CLI_EXIT_FAILURE;
    } else if (a.json) {
        char *json = NULL;
        if (p.lost) {
            cli_error("verify: out of memory for the problems' list");
            rc = CLI_EXIT_FAILURE;
        } else {
            siamidx_status js =
                siamidx_verify_report_json(idx, (const char *const *)p.list, p.n, &json, &err);
            if (print_document(js, &json, &err) || n_problems) rc = CLI_EXIT_FAILURE;
        }
    } else if (n_problems) {
        printf("%zu problem(s)\n", n_problems);
        rc = CLI_EXIT_FAILURE;
    } else {
        printf("ok\n");
    }
    for (size_t i = 0; i < p.n; i++) free(p.list[i]);
    free(p.list);
    siamidx_index_close(idx);
    return rc;
}

/* ---- dump (hidden): one line per record, for comparing indexes ------------------------------------ */

static int dump_record(void *ctx, const siamidx_index_record *r) {
    (void)ctx;
    static const char digits[] = "0123456789abcdef";
    char hash[65];
    for (int i = 0; i < 32; i++) {
        hash[2 * i] = digits[r->hash[i] >> 4];
        hash[2 * i + 1] = digits[r->hash[i] & 15];
    }
    hash[64] = 0;
    printf("%s\t%s\t%s\t%llu", r->resolved, r->artist, hash, (unsigned long long)r->size);
    for (uint32_t i = 0; i < r->dim; i++) printf("\t%.7g", r->embedding[i]);
    putchar('\n');
    return 0;
}

int cmd_dump(int argc, char **argv) {
    index_args a;
    int first, rc = parse_index_only(argc, argv, &dump_help, &a, &first);
    if (rc >= 0) return rc;
    siamidx_index *idx = open_index(&a, NULL, 1, 0);
    if (!idx) return CLI_EXIT_FAILURE;
    siamidx_error err;
    siamidx_status s = siamidx_index_foreach_record(idx, dump_record, NULL, &err);
    if (s) cli_error("%s", err.message);
    siamidx_index_close(idx);
    return exit_for(s);
}

/*
 * cmd_index.c - the index subcommands: build, add, query, info, remove,
 * verify (and a hidden `dump` for comparing two indexes in tests).
 */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "siamidx_ext.h" /* dump: the index's records */
#include "args.h"
#include "cli.h"
#include "json.h"

typedef struct index_args {
    const char *index, *model, *type, *root, *artist, *ivf_from;
    int batch, threads, quiet, wait, json, k, nprobe;
} index_args;

static const char *const usage_text =
    "usage: siamidx build COLLECTION... [-i INDEX] [-m MODEL] [--index-type flat|hnsw|ivf|ivfpq]\n"
    "                    [--ivf-from INDEX] [--root DIR] [--batch N] [--threads N] [--quiet]\n"
    "                    [--wait]\n"
    "       siamidx add IMAGE... --artist NAME [-i INDEX] [-m MODEL] [--wait]\n"
    "       siamidx query IMAGE [-i INDEX] [-m MODEL] [-k K] [--nprobe N] [--json]\n"
    "       siamidx info [-i INDEX] [--json]\n"
    "       siamidx remove [-i INDEX] [--wait] PATH... | --artist NAME\n"
    "       siamidx verify [-i INDEX]\n"
    "\n"
    "The index is a directory: -i INDEX, else $SIAMIDX_INDEX, else ./siamidx.idx.\n"
    "COLLECTION is a directory of ARTIST/IMAGE files or a CSV with filename and\n"
    "artist columns (relative paths from --root, else the CSV's folder); several\n"
    "are read as one (an artist name in more than one is one artist).\n"
    "build is incremental: unchanged files (same size and mtime) are skipped and\n"
    "identical images are embedded once. One write transaction per --batch images\n"
    "(default 256). A second writer fails with 'being written by process N' unless\n"
    "--wait. Readers (query, info, verify) see the last committed state.\n"
    "--index-type ivfpq trains IVF-PQ on a sample once the index holds 10,000\n"
    "images (searching exactly until then); --ivf-from INDEX instead encodes with\n"
    "INDEX's trained IVF-PQ (same model) at any size, never retraining, so shards\n"
    "built from one INDEX merge their codes. query --nprobe N searches N inverted\n"
    "lists of an ivf/ivfpq index (fewer: faster, more: closer to exact; an error\n"
    "for flat and hnsw indexes).\n"
    "query names an indexed file with the image's very bytes as its exact match;\n"
    "that record is then neither a neighbour nor evidence.\n"
    "remove takes each PATH as query prints it (as given at build time) or as a\n"
    "path to the file, and names the ones that matched nothing.\n"
    "exit status: 0 success, 1 failure, 2 usage error, 3 some inputs failed (build,\n"
    "add) or matched nothing (remove) and the rest were done, 130 build or add\n"
    "interrupted (SIGINT/SIGTERM) after committing the batches done\n";

static void index_usage(FILE *f) { fputs(usage_text, f); }

/* Returns -1 to go on, else an exit code; operands are argv[*first..argc). */
static int parse(int argc, char **argv, index_args *a, int *first) {
    memset(a, 0, sizeof *a);
    a->k = 5;
    const cli_option opts[] = {
        CLI_OPT("index", 'i', CLI_STRING, &a->index),
        CLI_OPT("model", 'm', CLI_STRING, &a->model),
        CLI_NUM("k", 'k', CLI_INT, &a->k, 1, 10000, 0),
        CLI_OPT("index-type", 0, CLI_STRING, &a->type),
        CLI_OPT("root", 0, CLI_STRING, &a->root),
        CLI_NUM("batch", 0, CLI_INT, &a->batch, 1, 1 << 20, 0),
        CLI_NUM("threads", 0, CLI_INT, &a->threads, 0, 4096, 0),
        CLI_OPT("quiet", 0, CLI_FLAG, &a->quiet),
        CLI_OPT("wait", 0, CLI_FLAG, &a->wait),
        CLI_OPT("json", 0, CLI_FLAG, &a->json),
        CLI_OPT("artist", 0, CLI_STRING, &a->artist),
        CLI_OPT("ivf-from", 0, CLI_STRING, &a->ivf_from),
        CLI_NUM("nprobe", 0, CLI_INT, &a->nprobe, 1, 65536, 0),
        CLI_END};
    int rc = cli_parse(argc, argv, opts, index_usage, first);
    if (rc >= 0) return rc;
    if (!a->index) a->index = siamidx_default_index_path();
    return -1;
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

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static void show_progress(void *ctx, size_t done, size_t total) {
    progress *p = ctx;
    if (!p->on) return;
    double dt = now() - p->start, rate = dt > 0 ? (double)done / dt : 0;
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

static int finish_build(siamidx_status s, const siamidx_error *err, siamidx_build_report *r,
                        double start) {
    for (size_t i = 0; i < r->n_failures; i++)
        cli_error("%s", r->failures[i].message);
    if (s != SIAMIDX_OK && s != SIAMIDX_ERR_IMAGE) cli_error("%s", err->message);
    printf("indexed %zu, unchanged %zu, failed %zu (embedded %zu, reused %zu) in %.1f s\n",
           r->indexed, r->unchanged, r->failed, r->embedded, r->reused, now() - start);
    siamidx_build_report_free(r);
    if (s == SIAMIDX_OK) return CLI_EXIT_OK;
    if (s == SIAMIDX_ERR_INTERRUPTED) return CLI_EXIT_INTERRUPTED;
    return s == SIAMIDX_ERR_IMAGE ? CLI_EXIT_PARTIAL : CLI_EXIT_FAILURE;
}

/* SIGINT/SIGTERM during build/add: stop before the next batch, keep what is
   committed, save the snapshot, exit 130. A second signal kills at once
   (LMDB's crash safety covers that too). */
static volatile int stop_requested;

static void on_signal(int sig) {
    if (stop_requested) {
        signal(sig, SIG_DFL);
        raise(sig);
    }
    stop_requested = 1;
}

/* A signal the caller ignores (nohup, a shell's background job) stays ignored. */
static void catch_signals(void) {
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    const int sigs[] = {SIGINT, SIGTERM};
    for (int i = 0; i < 2; i++)
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN)
            sigaction(sigs[i], &sa, NULL);
}

/* Removes an index this command created and left empty (its own files only;
   anything else in the directory keeps it). */
static void remove_new_index(const char *dir) {
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

static int run_build(int argc, char **argv, int is_add) {
    index_args a;
    int first, rc = parse(argc, argv, &a, &first);
    if (rc >= 0) return rc;
    if (!is_add && argc - first < 1)
        return cli_error("build wants a COLLECTION (see --help)"), CLI_EXIT_USAGE;
    if (is_add && (argc - first < 1 || !a.artist))
        return cli_error("add wants IMAGE... and --artist NAME (see --help)"), CLI_EXIT_USAGE;
    struct stat sb;
    for (int i = first; !is_add && i < argc; i++) /* before an index is made for them */
        if (stat(argv[i], &sb) != 0)
            return cli_error("%s: %s", argv[i], strerror(errno)), CLI_EXIT_FAILURE;
    if (a.ivf_from && a.type && strcmp(a.type, "ivfpq"))
        return cli_error("--ivf-from makes an ivfpq index, not %s", a.type), CLI_EXIT_USAGE;
    if (a.ivf_from) a.type = NULL; /* the training comes with the type, in one transaction */
    int existed = stat(a.index, &sb) == 0;
    catch_signals();
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
        if (!existed) remove_new_index(a.index);
        return CLI_EXIT_FAILURE;
    }
    progress p = {.start = now(), .on = !a.quiet && isatty(2)};
    siamidx_build_options o;
    siamidx_build_options_init(&o);
    o.root = a.root;
    o.batch = a.batch;
    o.progress = show_progress;
    o.progress_ctx = &p;
    o.stop = &stop_requested;
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
    rc = finish_build(s, &err, &r, p.start);
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
    if (!existed && s != SIAMIDX_OK && r_indexed == 0) remove_new_index(a.index);
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

static void print_query(const char *image, const siamidx_query_result *r, int json) {
    if (!json) {
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
        return;
    }
    cli_json j;
    cli_json_init(&j, stdout, 1);
    cli_json_object(&j);
    cli_json_key(&j, "query");
    cli_json_string(&j, image);
    /* "index", "model", or "none": artist scores from similarities only */
    cli_json_key(&j, "head");
    cli_json_string(&j, siamidx_head_source_name(r->head));
    cli_json_key(&j, "classifier");
    cli_json_bool(&j, r->classifier);
    /* the indexed image with the query's bytes, or null */
    cli_json_key(&j, "exact_match");
    if (r->exact_match_path) {
        cli_json_object(&j);
        cli_json_key(&j, "path");
        cli_json_string(&j, r->exact_match_path);
        cli_json_key(&j, "artist");
        cli_json_string(&j, r->exact_match_artist);
        cli_json_end(&j);
    } else {
        cli_json_number(&j, NAN, "%g"); /* null */
    }
    cli_json_key(&j, "artists");
    cli_json_array(&j);
    for (size_t i = 0; i < r->n_artists; i++) {
        cli_json_object(&j);
        cli_json_key(&j, "artist");
        cli_json_string(&j, r->artists[i].artist);
        cli_json_key(&j, "probability");
        cli_json_number(&j, r->artists[i].probability, "%.6f");
        cli_json_end(&j);
    }
    cli_json_end(&j);
    cli_json_key(&j, "unknown");
    cli_json_number(&j, r->unknown, "%.6f");
    cli_json_key(&j, "neighbors");
    cli_json_array(&j);
    for (size_t i = 0; i < r->n_neighbors; i++) {
        const siamidx_neighbor *n = &r->neighbors[i];
        cli_json_object(&j);
        cli_json_key(&j, "path");
        cli_json_string(&j, n->path);
        cli_json_key(&j, "artist");
        cli_json_string(&j, n->artist);
        cli_json_key(&j, "similarity");
        cli_json_number(&j, n->similarity, "%.6f");
        if (n->probability == n->probability) { /* not NaN: a head scored it */
            cli_json_key(&j, "probability");
            cli_json_number(&j, n->probability, "%.6f");
        }
        cli_json_end(&j);
    }
    cli_json_end(&j);
    cli_json_end(&j);
    cli_json_finish(&j);
}

int cmd_query(int argc, char **argv) {
    index_args a;
    int first, rc = parse(argc, argv, &a, &first);
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
        s = siamidx_index_query(idx, model, argv[first], a.k, &r, &err);
        if (s) cli_error("%s", err.message);
        else print_query(argv[first], &r, a.json);
        siamidx_query_result_free(&r);
    }
    siamidx_index_close(idx);
    siamidx_model_free(model);
    return exit_for(s);
}

/* ---- info --------------------------------------------------------------------------------- */

static void print_info(const char *dir, const siamidx_index_info *n, int json) {
    if (!json) {
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
        printf("generation   %llu\n", (unsigned long long)n->generation);
        printf("bytes        %llu\n", (unsigned long long)n->bytes_on_disk);
        for (size_t i = 0; i < n->n_artists; i++)
            printf("  %8llu  %s\n", (unsigned long long)n->artists[i].images, n->artists[i].name);
        return;
    }
    cli_json j;
    cli_json_init(&j, stdout, 1);
    cli_json_object(&j);
    cli_json_key(&j, "index");
    cli_json_string(&j, dir);
    cli_json_key(&j, "images");
    cli_json_uint(&j, n->images);
    cli_json_key(&j, "artists");
    cli_json_uint(&j, n->n_artists);
    cli_json_key(&j, "dim");
    cli_json_uint(&j, n->dim);
    const char *keys[] = {"fingerprint", "arch", "pool", "index_type", "faiss"};
    const char *values[] = {n->fingerprint, n->arch, n->pool, n->index_type, n->faiss};
    for (int k = 0; k < 5; k++) {
        cli_json_key(&j, keys[k]);
        cli_json_string(&j, values[k]);
    }
    cli_json_key(&j, "generation");
    cli_json_uint(&j, n->generation);
    cli_json_key(&j, "nprobe");
    cli_json_uint(&j, n->nprobe);
    cli_json_key(&j, "ivfpq"); /* the trained IVF-PQ, or null */
    if (n->ivf_nlist) {
        cli_json_object(&j);
        const char *k4[] = {"nlist", "pq_m", "pq_nbits", "trained_on"};
        uint64_t v4[] = {n->ivf_nlist, n->pq_m, n->pq_nbits, n->ivf_trained_on};
        for (int k = 0; k < 4; k++) {
            cli_json_key(&j, k4[k]);
            cli_json_uint(&j, v4[k]);
        }
        cli_json_key(&j, "imported");
        cli_json_bool(&j, n->ivf_imported);
        cli_json_key(&j, "tag");
        cli_json_string(&j, n->ivf_tag);
        cli_json_end(&j);
    } else {
        cli_json_number(&j, NAN, "%g"); /* null */
    }
    cli_json_key(&j, "bytes_on_disk");
    cli_json_uint(&j, n->bytes_on_disk);
    cli_json_key(&j, "artist_images");
    cli_json_object(&j);
    for (size_t i = 0; i < n->n_artists; i++) {
        cli_json_key(&j, n->artists[i].name);
        cli_json_uint(&j, n->artists[i].images);
    }
    cli_json_end(&j);
    cli_json_end(&j);
    cli_json_finish(&j);
}

int cmd_info(int argc, char **argv) {
    index_args a;
    int first, rc = parse(argc, argv, &a, &first);
    if (rc >= 0) return rc;
    if (argc != first) return cli_error("info takes no operands (see --help)"), CLI_EXIT_USAGE;
    siamidx_index *idx = open_index(&a, NULL, 1, 0);
    if (!idx) return CLI_EXIT_FAILURE;
    siamidx_index_info info;
    siamidx_error err;
    siamidx_status s = siamidx_index_info_get(idx, &info, &err);
    if (s) cli_error("%s", err.message);
    else print_info(a.index, &info, a.json);
    siamidx_index_info_free(&info);
    siamidx_index_close(idx);
    return exit_for(s);
}

/* ---- remove / verify -------------------------------------------------------------------------- */

/* remove PATH...: each path as query prints it or as a path to the file;
   exit 3 when some named nothing and the others were removed. */
static int remove_paths(siamidx_index *idx, char **paths, size_t n) {
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
    free(matches);
    if (s) cli_error("%s", err.message);
    else printf("removed %zu\n", removed);
    if (s) return CLI_EXIT_FAILURE;
    return unmatched ? CLI_EXIT_PARTIAL : CLI_EXIT_OK;
}

int cmd_remove(int argc, char **argv) {
    index_args a;
    int first, rc = parse(argc, argv, &a, &first);
    if (rc >= 0) return rc;
    if ((argc == first) == !a.artist)
        return cli_error("remove wants PATH... or --artist NAME (see --help)"), CLI_EXIT_USAGE;
    siamidx_index *idx = open_index(&a, NULL, 0, 0);
    if (!idx) return CLI_EXIT_FAILURE;
    if (!a.artist) {
        rc = remove_paths(idx, argv + first, (size_t)(argc - first));
        siamidx_index_close(idx);
        return rc;
    }
    size_t removed = 0;
    siamidx_error err;
    siamidx_status s = siamidx_index_remove_artist(idx, a.artist, &removed, &err);
    if (s) cli_error("%s", err.message);
    else printf("removed %zu\n", removed);
    siamidx_index_close(idx);
    return exit_for(s);
}

static void print_problem(void *ctx, const char *problem) {
    (void)ctx;
    printf("problem: %s\n", problem);
}

int cmd_verify(int argc, char **argv) {
    index_args a;
    int first, rc = parse(argc, argv, &a, &first);
    if (rc >= 0) return rc;
    if (argc != first) return cli_error("verify takes no operands (see --help)"), CLI_EXIT_USAGE;
    siamidx_index *idx = open_index(&a, NULL, 1, 0);
    if (!idx) return CLI_EXIT_FAILURE;
    size_t problems = 0;
    siamidx_error err;
    siamidx_status s = siamidx_index_verify(idx, print_problem, NULL, &problems, &err);
    siamidx_index_close(idx);
    if (s) {
        cli_error("%s", err.message);
        return CLI_EXIT_FAILURE;
    }
    if (problems) {
        printf("%zu problem(s)\n", problems);
        return CLI_EXIT_FAILURE;
    }
    printf("ok\n");
    return CLI_EXIT_OK;
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
    int first, rc = parse(argc, argv, &a, &first);
    if (rc >= 0) return rc;
    siamidx_index *idx = open_index(&a, NULL, 1, 0);
    if (!idx) return CLI_EXIT_FAILURE;
    siamidx_error err;
    siamidx_status s = siamidx_index_foreach_record(idx, dump_record, NULL, &err);
    if (s) cli_error("%s", err.message);
    siamidx_index_close(idx);
    return exit_for(s);
}

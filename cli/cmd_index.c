/*
 * cmd_index.c - the index subcommands: build, add, query, info, remove,
 * verify (and a hidden `dump` for comparing two indexes in tests).
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <dirent.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "internal.h" /* dump: the store's records; sx_utf8_check */

typedef struct index_args {
    const char *index, *model, *type, *root, *artist;
    int batch, threads, quiet, wait, json, k;
} index_args;

enum { OPT_TYPE = 256, OPT_ROOT, OPT_BATCH, OPT_THREADS, OPT_QUIET, OPT_WAIT, OPT_JSON,
       OPT_ARTIST };

static const struct option long_options[] = {
    {"index", required_argument, NULL, 'i'},      {"model", required_argument, NULL, 'm'},
    {"index-type", required_argument, NULL, OPT_TYPE},
    {"root", required_argument, NULL, OPT_ROOT},  {"batch", required_argument, NULL, OPT_BATCH},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"quiet", no_argument, NULL, OPT_QUIET},      {"wait", no_argument, NULL, OPT_WAIT},
    {"json", no_argument, NULL, OPT_JSON},        {"artist", required_argument, NULL, OPT_ARTIST},
    {"help", no_argument, NULL, 'h'},             {NULL, 0, NULL, 0}};

static const char *const usage_text =
    "usage: siamidx build COLLECTION [-i INDEX] [-m MODEL] [--index-type flat|hnsw|ivf|ivfpq]\n"
    "                    [--root DIR] [--batch N] [--threads N] [--quiet] [--wait]\n"
    "       siamidx add IMAGE... --artist NAME [-i INDEX] [-m MODEL] [--wait]\n"
    "       siamidx query IMAGE [-i INDEX] [-m MODEL] [-k K] [--json]\n"
    "       siamidx info [-i INDEX] [--json]\n"
    "       siamidx remove [-i INDEX] [--wait] PATH... | --artist NAME\n"
    "       siamidx verify [-i INDEX]\n"
    "\n"
    "The index is a directory: -i INDEX, else $SIAMIDX_INDEX, else ./siamidx.idx.\n"
    "COLLECTION is a directory of ARTIST/IMAGE files or a CSV with filename and\n"
    "artist columns (relative paths from --root, else the CSV's folder).\n"
    "build is incremental: unchanged files (same size and mtime) are skipped and\n"
    "identical images are embedded once. One write transaction per --batch images\n"
    "(default 256). A second writer fails with 'being written by process N' unless\n"
    "--wait. Readers (query, info, verify) see the last committed state.\n"
    "remove takes each PATH as query prints it (as given at build time) or as a\n"
    "path to the file, and names the ones that matched nothing.\n"
    "exit status: 0 success, 1 failure, 2 usage error, 3 some inputs failed (build,\n"
    "add) or matched nothing (remove) and the rest were done, 130 build or add\n"
    "interrupted (SIGINT/SIGTERM) after committing the batches done\n";

static int parse_int(const char *s, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

/* Returns -1 to go on, else an exit code; operands are argv[*first..argc). */
static int parse(int argc, char **argv, index_args *a, int *first) {
    memset(a, 0, sizeof *a);
    a->k = 5;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":i:m:k:h", long_options, NULL)) != -1) {
        switch (c) {
        case 'i': a->index = optarg; break;
        case 'm': a->model = optarg; break;
        case 'k':
            if (parse_int(optarg, 1, 10000, &a->k))
                return cli_error("-k wants a number from 1 to 10000, not '%s'", optarg), 2;
            break;
        case OPT_TYPE: a->type = optarg; break;
        case OPT_ROOT: a->root = optarg; break;
        case OPT_BATCH:
            if (parse_int(optarg, 1, 1 << 20, &a->batch))
                return cli_error("--batch wants a positive number, not '%s'", optarg), 2;
            break;
        case OPT_THREADS:
            if (parse_int(optarg, 0, 4096, &a->threads))
                return cli_error("--threads wants a number, not '%s'", optarg), 2;
            break;
        case OPT_QUIET: a->quiet = 1; break;
        case OPT_WAIT: a->wait = 1; break;
        case OPT_JSON: a->json = 1; break;
        case OPT_ARTIST: a->artist = optarg; break;
        case 'h': fputs(usage_text, stdout); return CLI_EXIT_OK;
        case ':': return cli_error("%s needs a value", argv[optind - 1]), CLI_EXIT_USAGE;
        default: return cli_error("unknown option '%s' (see --help)", argv[optind - 1]), 2;
        }
    }
    if (!a->index) a->index = siamidx_default_index_path();
    *first = optind;
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

/* ---- JSON ---------------------------------------------------------------------------- */

/* A JSON string; bytes that are not UTF-8 become U+FFFD so the output stays valid. */
static void json_string(FILE *f, const char *s) {
    fputc('"', f);
    size_t n = strlen(s);
    while (n) {
        size_t ok = sx_utf8_check(s, n);
        for (size_t i = 0; i < ok; i++) {
            unsigned char ch = (unsigned char)s[i];
            if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
            else if (ch == '\n') fputs("\\n", f);
            else if (ch == '\t') fputs("\\t", f);
            else if (ch == '\r') fputs("\\r", f);
            else if (ch < 0x20) fprintf(f, "\\u%04x", ch);
            else fputc(ch, f);
        }
        if (ok == n) break;
        fputs("\\ufffd", f);
        s += ok + 1;
        n -= ok + 1;
    }
    fputc('"', f);
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
    if (!is_add && argc - first != 1)
        return cli_error("build wants one COLLECTION (see --help)"), CLI_EXIT_USAGE;
    if (is_add && (argc - first < 1 || !a.artist))
        return cli_error("add wants IMAGE... and --artist NAME (see --help)"), CLI_EXIT_USAGE;
    struct stat sb;
    if (!is_add && stat(argv[first], &sb) != 0) /* before an index is made for it */
        return cli_error("%s: %s", argv[first], strerror(errno)), CLI_EXIT_FAILURE;
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
        s = siamidx_index_build(idx, model, argv[first], &o, &r, &err);
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
    printf("{\"query\": ");
    json_string(stdout, image);
    printf(", \"artists\": [");
    for (size_t i = 0; i < r->n_artists; i++) {
        printf("%s{\"artist\": ", i ? ", " : "");
        json_string(stdout, r->artists[i].artist);
        printf(", \"probability\": %.6f}", r->artists[i].probability);
    }
    printf("], \"unknown\": %.6f, \"neighbors\": [", r->unknown);
    for (size_t i = 0; i < r->n_neighbors; i++) {
        printf("%s{\"path\": ", i ? ", " : "");
        json_string(stdout, r->neighbors[i].path);
        printf(", \"artist\": ");
        json_string(stdout, r->neighbors[i].artist);
        printf(", \"similarity\": %.6f", r->neighbors[i].similarity);
        if (r->neighbors[i].probability == r->neighbors[i].probability) /* not NaN: a head */
            printf(", \"probability\": %.6f", r->neighbors[i].probability);
        printf("}");
    }
    printf("]}\n");
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
    if (idx) {
        siamidx_query_result r;
        siamidx_error err;
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
        printf("generation   %llu\n", (unsigned long long)n->generation);
        printf("bytes        %llu\n", (unsigned long long)n->bytes_on_disk);
        for (size_t i = 0; i < n->n_artists; i++)
            printf("  %8llu  %s\n", (unsigned long long)n->artists[i].images, n->artists[i].name);
        return;
    }
    printf("{\"index\": ");
    json_string(stdout, dir);
    printf(", \"images\": %llu, \"artists\": %llu, \"dim\": %u, \"fingerprint\": ",
           (unsigned long long)n->images, (unsigned long long)n->n_artists, n->dim);
    json_string(stdout, n->fingerprint);
    printf(", \"arch\": ");
    json_string(stdout, n->arch);
    printf(", \"pool\": ");
    json_string(stdout, n->pool);
    printf(", \"index_type\": ");
    json_string(stdout, n->index_type);
    printf(", \"faiss\": ");
    json_string(stdout, n->faiss);
    printf(", \"generation\": %llu, \"bytes_on_disk\": %llu, \"artist_images\": {",
           (unsigned long long)n->generation, (unsigned long long)n->bytes_on_disk);
    for (size_t i = 0; i < n->n_artists; i++) {
        printf("%s", i ? ", " : "");
        json_string(stdout, n->artists[i].name);
        printf(": %llu", (unsigned long long)n->artists[i].images);
    }
    printf("}}\n");
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
        sx_index_remove_paths(idx, (const char *const *)paths, n, matches, &removed, &err);
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

typedef struct dump_ctx {
    sx_store *st;
    MDB_txn *txn;
    float *buf;
} dump_ctx;

static int dump_record(void *ctx, const sx_record *r) {
    dump_ctx *d = ctx;
    const char *artist = "?";
    uint64_t count;
    siamidx_error e;
    sx_store_artist_name(d->st, d->txn, r->artist_id, &artist, &count, &e);
    char hash[65];
    sx_hex(r->hash, 32, hash);
    printf("%s\t%s\t%s\t%llu", r->resolved, artist, hash, (unsigned long long)r->size);
    sx_record_embedding(r, d->buf);
    for (uint32_t i = 0; i < r->dim; i++) printf("\t%.7g", d->buf[i]);
    putchar('\n');
    return 0;
}

int cmd_dump(int argc, char **argv) {
    index_args a;
    int first, rc = parse(argc, argv, &a, &first);
    if (rc >= 0) return rc;
    siamidx_index *idx = open_index(&a, NULL, 1, 0);
    if (!idx) return CLI_EXIT_FAILURE;
    dump_ctx d = {.st = sx_index_store(idx)};
    siamidx_error err;
    siamidx_status s = sx_store_read_begin(d.st, &d.txn, &err);
    sx_store_meta m;
    if (!s) s = sx_store_get_meta(d.st, d.txn, &m, &err);
    if (!s && !(d.buf = malloc((m.dim + 1) * sizeof *d.buf)))
        s = sx_fail(&err, SIAMIDX_ERR_NO_MEMORY, "out of memory");
    if (!s) s = sx_store_foreach_record(d.st, d.txn, dump_record, &d, &err);
    if (s) cli_error("%s", err.message);
    sx_store_read_end(d.txn);
    free(d.buf);
    siamidx_index_close(idx);
    return exit_for(s);
}

/*
 * cmd_head.c - the Siamese head's subcommands:
 *   siamidx train   fit a head on an index and store it there
 *   siamidx eval    measure it on the images training held out
 *   siamidx pair    P(same artist) for two images, or a pairs CSV
 * Every answer comes from the same library calls a program would make.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "siamidx_ext.h" /* pairs CSV reader, cached embeddings, heads into models */
#include "args.h"
#include "cli.h"
#include "html_report.h"
#include "lines.h"
#include "outfile.h"
#include "progress.h"

static int open_index(const char *dir, const siamidx_model *model, int writer,
                      siamidx_index **idx) {
    siamidx_index_options o;
    siamidx_index_options_init(&o);
    o.read_only = !writer;
    siamidx_error err;
    if (!dir) dir = siamidx_default_index_path();
    if (siamidx_index_open(dir, model, &o, idx, &err)) {
        cli_error("%s", err.message);
        return -1;
    }
    return 0;
}

/* ---- train ------------------------------------------------------------------ */

static const cli_help train_help = {
    "siamidx train [options]",
    "Fits the Siamese head on the index's embeddings and stores it in the index.\n"
    "The split is by image: of each artist, F/2 of the images validate (early\n"
    "stopping, calibration, threshold) and F/2 are kept for `siamidx eval`;\n"
    "--holdout-artists keeps N whole artists out, to measure unseen artists;\n"
    "--test-images names the test images instead of drawing them.\n"
    "Also fits a logistic classifier over the index's artists on the head's\n"
    "training images; `query` fuses it with the head's neighbours.\n"
    "--save-to-model also writes the index's model with this head as its default\n"
    "head to OUT (a copy; OUT may be MODEL itself). The fingerprint stays, so indexes\n"
    "built with the model open with OUT; an index's own head still takes precedence.\n"};

/* The index's (just trained) head into a copy of its model file. */
static siamidx_status save_head_to_model(siamidx_index *idx, const char *dir,
                                         const siamidx_model *model,
                                         const siamidx_train_options *o, const char *out,
                                         siamidx_error *err) {
    siamidx_head *head = NULL;
    siamidx_index_info info;
    siamidx_status st = siamidx_index_head(idx, NULL, &head, err);
    if (!st) st = siamidx_index_info_get(idx, &info, err);
    if (!st) {
        char trained_on[1024];
        snprintf(trained_on, sizeof trained_on,
                 "index %s: %llu images of %llu artists, generation %llu (seed %llu)", dir,
                 (unsigned long long)info.images, (unsigned long long)info.n_artists,
                 (unsigned long long)info.generation, (unsigned long long)o->seed);
        siamidx_index_info_free(&info);
        st = siamidx_model_write_head(model, head, trained_on, out, err);
    }
    siamidx_head_free(head);
    return st;
}

int cmd_train(int argc, char **argv) {
    siamidx_train_options o;
    siamidx_train_options_init(&o);
    const char *index = NULL, *model_path = NULL, *save_to = NULL, *test_file = NULL;
    int json = 0, first;
    const cli_option opts[] = {
        CLI_OPT_INDEX(&index),
        CLI_NUM("epochs", 0, CLI_INT, &o.epochs, 1, 100000, 0, "N", "most epochs; stops early"),
        CLI_NUM("seed", 0, CLI_U64, &o.seed, 0, 0x7fffffff, 0, "S", "split and pair sampling seed"),
        CLI_NUM("val-fraction", 0, CLI_DOUBLE, &o.val_fraction, 0.01, 0.8, 0, "F",
                "share of each artist's images held out: half validation, half for eval"),
        CLI_NUM("holdout-artists", 0, CLI_INT, &o.holdout_artists, 0, 1000000, 0, "N",
                "whole artists kept out, to measure unseen artists"),
        CLI_OPT("test-images", 0, CLI_STRING, &test_file, "FILE",
                "test eval on exactly these images (one path a line, as given to build; # "
                "comments), e.g. those the encoder never trained on; validation then takes F/2 "
                "of each artist's other images (default: drawn)"),
        CLI_NUM("unknown-prior", 0, CLI_DOUBLE, &o.unknown_prior, 0, 1, CLI_OPEN_MAX, "P",
                "how often a query is by an artist not in the index, 0 <= P < 1; 0: never "
                "\"unknown\""),
        CLI_OPT("save-to-model", 0, CLI_STRING, &save_to, "OUT",
                "also write the model with this head as its default head to OUT"),
        CLI_OPT("model", 'm', CLI_STRING, &model_path, "FILE",
                "the index's model, for --save-to-model (default: $SIAMIDX_MODEL, then the "
                "installed default model)"),
        CLI_OPT_JSON(&json),
        CLI_OPT("verbose", 'v', CLI_FLAG, &o.verbose, NULL, "progress on stderr"),
        CLI_END};
    int rc = cli_parse(argc, argv, opts, &train_help, &first);
    if (rc >= 0) return rc;
    if (first != argc) {
        cli_error("train: unexpected argument '%s'", argv[first]);
        return CLI_EXIT_USAGE;
    }
    if (model_path && !save_to) {
        cli_error("train: -m MODEL is only used with --save-to-model");
        return CLI_EXIT_USAGE;
    }
    cli_lines tests = {0};
    if (test_file && cli_read_lines("train", test_file, "image", &tests)) return CLI_EXIT_FAILURE;
    o.test_images = (const char *const *)tests.line;
    o.n_test_images = tests.n;
    /* The model first: a mismatched one is refused before any training. */
    siamidx_model *model = NULL;
    if (save_to && !(model = cli_load_model(model_path))) {
        cli_lines_free(&tests);
        return CLI_EXIT_FAILURE;
    }
    siamidx_index *idx;
    if (open_index(index, model, 1, &idx)) {
        siamidx_model_free(model);
        cli_lines_free(&tests);
        return CLI_EXIT_FAILURE;
    }
    siamidx_train_report r;
    siamidx_error err;
    cli_progress prog; /* epochs, on stderr (a terminal: redrawn; a log: plain lines) */
    cli_progress_init(&prog, "train", "epochs", json);
    o.progress = cli_progress_update;
    o.progress_ctx = &prog;
    siamidx_status st = siamidx_index_train_head(idx, &o, &r, &err);
    cli_progress_end(&prog);
    if (!st && save_to)
        st = save_head_to_model(idx, index ? index : siamidx_default_index_path(), model, &o,
                                save_to, &err);
    char *doc = NULL;
    if (!st && json) st = siamidx_train_report_json(idx, &r, o.seed, save_to, &doc, &err);
    siamidx_index_close(idx);
    siamidx_model_free(model);
    cli_lines_free(&tests);
    if (st) {
        cli_error("%s", err.message);
        return CLI_EXIT_FAILURE;
    }
    if (json) {
        puts(doc);
        siamidx_json_free(doc);
    } else {
        printf("images: %zu train, %zu validation, %zu test, %zu of %zu held-out artists\n",
               r.n_train, r.n_val, r.n_test, r.n_unseen, r.n_unseen_artists);
        printf("epochs: %d (best %d)\n", r.epochs_run, r.best_epoch);
        printf("validation: AUC %.4f, accuracy %.4f at threshold %.3f, calibration error %.4f\n",
               r.val_auc, r.val_accuracy, r.threshold, r.val_ece);
        printf("classifier: %zu artists; validation top-1 %.4f (balanced %.4f), fused with "
               "the neighbours %.4f (weight %.2f); unknown prior %.3f\n",
               r.n_classes, r.classifier_val_top1, r.classifier_val_balanced_top1,
               r.fused_val_top1, r.fuse_weight, r.unknown_prior);
        printf("head stored in the index (seed %llu)\n", (unsigned long long)o.seed);
        if (save_to) printf("head written into the model file %s as its default head\n", save_to);
    }
    return CLI_EXIT_OK;
}

/* ---- eval ------------------------------------------------------------------- */

static void print_pairs_text(const char *what, const siamidx_pair_metrics *m) {
    printf("%s pairs (%zu): AUC %.4f  accuracy %.4f  EER %.4f  TAR@1%%FAR %.4f  ECE %.4f\n",
           what, m->n_pairs, m->auc, m->accuracy, m->eer, m->tar_at_far1, m->ece);
}

int cmd_eval_legacy(const char *index, int json) {
    siamidx_index *idx;
    if (open_index(index, NULL, 0, &idx)) return CLI_EXIT_FAILURE;
    siamidx_eval_report r;
    siamidx_error err;
    siamidx_status st = siamidx_index_evaluate(idx, &r, &err);
    char *doc = NULL;
    if (!st && json) st = siamidx_eval_report_json(idx, &r, &doc, &err);
    siamidx_index_close(idx);
    if (st) {
        cli_error("%s", err.message);
        return CLI_EXIT_FAILURE;
    }
    if (json) {
        puts(doc);
        siamidx_json_free(doc);
        return CLI_EXIT_OK;
    }
    printf("threshold %.3f\n", r.threshold);
    print_pairs_text("seen-artist", &r.seen);
    const siamidx_attribution_metrics *a = &r.seen_attr;
    printf("seen-artist attribution (%zu queries): top-1 %.4f  top-3 %.4f  balanced %.4f  "
           "\"unknown\" first %.4f  mean top probability %.3f\n",
           a->n_queries, a->top1, a->top3, a->balanced, a->unknown_first, a->mean_top_prob);
    if (r.has_unseen) {
        print_pairs_text("unseen-artist", &r.unseen);
        a = &r.unseen_attr;
        printf("unseen-artist queries (%zu): \"unknown\" first %.4f  mean top probability %.3f\n",
               a->n_queries, a->unknown_first, a->mean_top_prob);
    }
    return CLI_EXIT_OK;
}

/* ---- pair ------------------------------------------------------------------- */

static const cli_help pair_help = {
    "siamidx pair A B [options]\n       siamidx pair --batch PAIRS.csv [options]",
    "P(same artist) for two images, from the index's trained head (-i), else the\n"
    "model's default head. --batch reads a CSV with columns index,image1,image2\n"
    "(Kaggle's submission_info.csv) and writes index,sameArtist (the probability);\n"
    "each distinct image is embedded once. Rows that cannot be answered are reported\n"
    "on stderr and left out. --html FILE also writes a self-contained page: both\n"
    "paintings, the probability, verdict and threshold, and how often the head's\n"
    "validation pairs scored alike were by one artist.\n"
    "exit status: 0 all answered, 3 some rows failed, 1 failure, 2 usage\n"};

typedef struct pair_ctx {
    siamidx_model *model;
    siamidx_index *idx;
    siamidx_head *head;        /* the index's (owned), or NULL: the model's */
    siamidx_head_source source; /* which answers */
} pair_ctx;

static void pair_ctx_free(pair_ctx *p) {
    siamidx_head_free(p->head);
    siamidx_index_close(p->idx);
    siamidx_model_free(p->model);
}

static const siamidx_head *pair_head(const pair_ctx *p) {
    return p->head ? p->head : siamidx_model_head(p->model);
}

/* One rule, as for queries: the index's head, else the model's default head. */
static int pair_setup(const char *model_path, const char *index, pair_ctx *p) {
    memset(p, 0, sizeof *p);
    siamidx_error err;
    if (!(p->model = cli_load_model(model_path))) return -1;
    if (index) {
        siamidx_index_options o;
        siamidx_index_options_init(&o);
        o.read_only = 1;
        if (siamidx_index_open(index, p->model, &o, &p->idx, &err)) {
            cli_error("%s", err.message);
            return -1;
        }
        siamidx_status st = siamidx_index_head(p->idx, NULL, &p->head, &err);
        if (st == SIAMIDX_OK) {
            p->source = SIAMIDX_HEAD_INDEX;
            return 0;
        }
        if (st != SIAMIDX_ERR_NO_HEAD) {
            cli_error("%s", err.message);
            return -1;
        }
    }
    if (!siamidx_model_head(p->model)) {
        cli_error("no trained head: run `siamidx train` on an index and pass it with -i "
                  "(the model %s carries no default head)", siamidx_model_path(p->model));
        return -1;
    }
    p->source = SIAMIDX_HEAD_MODEL;
    return 0;
}

static int pair_single(pair_ctx *p, const char *a, const char *b, int json, const char *html) {
    siamidx_pair_result r;
    siamidx_error err;
    if (siamidx_pair_files(p->model, pair_head(p), a, b, NULL, &r, &err)) {
        cli_error("%s", err.message);
        return CLI_EXIT_FAILURE;
    }
    if (json) {
        char *doc;
        if (siamidx_pair_json(p->idx, p->model, a, b, &r, p->source, &doc, &err)) {
            cli_error("%s", err.message);
            return CLI_EXIT_FAILURE;
        }
        puts(doc);
        siamidx_json_free(doc);
    } else {
        printf("P(same artist) = %.4f: %s (threshold %.3f, head: %s)\n", r.probability,
               r.same_artist ? "same artist" : "different artists", r.threshold,
               siamidx_head_source_name(p->source));
    }
    if (html && html_pair_report(html, a, b, &r, pair_head(p), p->source, p->model))
        return CLI_EXIT_FAILURE;
    return CLI_EXIT_OK;
}

/* ---- batch: distinct images, embedded once ---- */

typedef struct image_set {
    char **paths; /* resolved, in first-seen order */
    size_t n, cap;
    size_t *slots; /* open addressing: index+1, 0 empty */
    size_t n_slots;
} image_set;

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Index of path in the set, inserting it when new; (size_t)-1 when out of memory. */
static size_t image_set_put(image_set *s, const char *path) {
    if ((s->n + 1) * 2 > s->n_slots) {
        size_t ns = s->n_slots ? s->n_slots * 2 : 1024;
        size_t *slots = calloc(ns, sizeof *slots);
        if (!slots) return (size_t)-1;
        for (size_t i = 0; i < s->n; i++) {
            size_t h = fnv1a(s->paths[i]) & (ns - 1);
            while (slots[h]) h = (h + 1) & (ns - 1);
            slots[h] = i + 1;
        }
        free(s->slots);
        s->slots = slots;
        s->n_slots = ns;
    }
    size_t h = fnv1a(path) & (s->n_slots - 1);
    for (; s->slots[h]; h = (h + 1) & (s->n_slots - 1))
        if (!strcmp(s->paths[s->slots[h] - 1], path)) return s->slots[h] - 1;
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 256;
        char **np = realloc(s->paths, nc * sizeof *np);
        if (!np) return (size_t)-1;
        s->paths = np;
        s->cap = nc;
    }
    if (!(s->paths[s->n] = strdup(path))) return (size_t)-1;
    s->slots[h] = ++s->n;
    return s->n - 1;
}

static size_t image_set_find(const image_set *s, const char *path) {
    if (!s->n_slots) return (size_t)-1;
    for (size_t h = fnv1a(path) & (s->n_slots - 1); s->slots[h]; h = (h + 1) & (s->n_slots - 1))
        if (!strcmp(s->paths[s->slots[h] - 1], path)) return s->slots[h] - 1;
    return (size_t)-1;
}

static void image_set_free(image_set *s) {
    for (size_t i = 0; i < s->n; i++) free(s->paths[i]);
    free(s->paths);
    free(s->slots);
}

/* root/path unless path is absolute. */
static void resolve(const char *root, const char *path, char *out, size_t cap) {
    if (path[0] == '/' || !root || !*root) snprintf(out, cap, "%s", path);
    else snprintf(out, cap, "%s/%s", root, path);
}

static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    size_t n = (size_t)(slash - path);
    char *d = malloc(n + 2);
    if (!d) return NULL;
    memcpy(d, path, n ? n : 1);
    d[n ? n : 1] = 0;
    return d;
}

/* Pass 1: every distinct image named by a well-formed row. Returns rows refused. */
static int collect_images(const char *csv, const char *root, image_set *set, size_t *bad_rows) {
    siamidx_pairs_csv *p;
    siamidx_error err;
    if (siamidx_pairs_csv_open(csv, &p, &err)) {
        cli_error("%s", err.message);
        return -1;
    }
    char buf[8192];
    for (;;) {
        siamidx_pair_row row;
        int done;
        siamidx_status st = siamidx_pairs_csv_next(p, &row, &done, &err);
        if (st == SIAMIDX_ERR_CSV) {
            cli_error("%s", err.message);
            (*bad_rows)++;
            continue;
        }
        if (st) {
            cli_error("%s", err.message);
            siamidx_pairs_csv_close(p);
            return -1;
        }
        if (done) break;
        resolve(root, row.image1, buf, sizeof buf);
        size_t a = image_set_put(set, buf);
        resolve(root, row.image2, buf, sizeof buf);
        size_t b = image_set_put(set, buf);
        if (a == (size_t)-1 || b == (size_t)-1) {
            cli_error("%s: out of memory", csv);
            siamidx_pairs_csv_close(p);
            return -1;
        }
    }
    siamidx_pairs_csv_close(p);
    return 0;
}

/*
 * Embeds every image of the set; ok[i] says which succeeded, failures are
 * reported once. With an index, images it already holds (same bytes) take
 * their stored embedding instead of running the encoder.
 */
static int embed_set(pair_ctx *p, const image_set *set, size_t dim, float *emb, uint8_t *ok) {
    const size_t chunk = 256;
    siamidx_status *status = malloc(chunk * sizeof *status);
    siamidx_error *errors = malloc(chunk * sizeof *errors);
    size_t *todo = malloc((set->n + 1) * sizeof *todo), n_todo = 0;
    const char **paths = malloc(chunk * sizeof *paths);
    float *out = malloc(chunk * dim * sizeof *out);
    if (!status || !errors || !todo || !paths || !out) {
        free(status), free(errors), free(todo), free(paths), free(out);
        cli_error("out of memory");
        return -1;
    }
    for (size_t i = 0; i < set->n; i++) {
        siamidx_error e;
        ok[i] = p->idx && !siamidx_index_cached_embedding(p->idx, set->paths[i], emb + i * dim, dim, &e);
        if (!ok[i]) todo[n_todo++] = i;
    }
    int rc = 0;
    for (size_t s = 0; s < n_todo && !rc; s += chunk) {
        size_t n = n_todo - s < chunk ? n_todo - s : chunk;
        for (size_t i = 0; i < n; i++) paths[i] = set->paths[todo[s + i]];
        siamidx_error err;
        siamidx_status st =
            siamidx_embed_files(p->model, paths, n, NULL, out, status, errors, &err);
        if (st && st != SIAMIDX_ERR_IMAGE) {
            cli_error("%s", err.message);
            rc = -1;
            break;
        }
        for (size_t i = 0; i < n; i++) {
            size_t k = todo[s + i];
            ok[k] = status[i] == SIAMIDX_OK;
            if (ok[k]) memcpy(emb + k * dim, out + i * dim, dim * sizeof *out);
            else cli_error("%s", errors[i].message);
        }
    }
    free(status), free(errors), free(todo), free(paths), free(out);
    return rc;
}

/* Pass 2: answer every row whose two images embedded. Returns rows left out, -1 on failure. */
static long write_answers(pair_ctx *p, const char *csv, const char *root, const image_set *set,
                          const float *emb, const uint8_t *ok, size_t dim, FILE *out) {
    siamidx_pairs_csv *pc;
    siamidx_error err;
    if (siamidx_pairs_csv_open(csv, &pc, &err)) {
        cli_error("%s", err.message);
        return -1;
    }
    fprintf(out, "index,sameArtist\n");
    long skipped = 0;
    char buf[8192];
    for (;;) {
        siamidx_pair_row row;
        int done;
        siamidx_status st = siamidx_pairs_csv_next(pc, &row, &done, &err);
        if (st == SIAMIDX_ERR_CSV) continue; /* reported in pass 1 */
        if (st) {
            cli_error("%s", err.message);
            siamidx_pairs_csv_close(pc);
            return -1;
        }
        if (done) break;
        resolve(root, row.image1, buf, sizeof buf);
        size_t a = image_set_find(set, buf);
        resolve(root, row.image2, buf, sizeof buf);
        size_t b = image_set_find(set, buf);
        if (a == (size_t)-1 || b == (size_t)-1 || !ok[a] || !ok[b]) {
            cli_error("%s: line %ld: row %s left out: an image could not be read", csv, row.line,
                      row.index);
            skipped++;
            continue;
        }
        siamidx_pair_result r;
        if (siamidx_pair_embeddings(pair_head(p), emb + a * dim, emb + b * dim, dim, &r, &err)) {
            cli_error("%s", err.message);
            siamidx_pairs_csv_close(pc);
            return -1;
        }
        fprintf(out, "%s,%.6f\n", row.index, r.probability);
    }
    siamidx_pairs_csv_close(pc);
    return skipped;
}

/* The answers go to out_path atomically (outfile.h): a failed or interrupted
   run leaves the previous file as it was, never a part of the new one. */
static int pair_batch(pair_ctx *p, const char *csv, const char *root, const char *out_path) {
    image_set set = {0};
    size_t bad_rows = 0;
    char *root_buf = root ? NULL : dir_of(csv);
    if (!root) root = root_buf;
    int rc = CLI_EXIT_FAILURE;
    float *emb = NULL;
    uint8_t *ok = NULL;
    if (collect_images(csv, root, &set, &bad_rows)) goto done;
    size_t dim = siamidx_model_dim(p->model, SIAMIDX_POOL_DEFAULT);
    emb = calloc(set.n * dim + 1, sizeof *emb);
    ok = calloc(set.n + 1, 1);
    if (!emb || !ok) {
        cli_error("out of memory for %zu images", set.n);
        goto done;
    }
    if (embed_set(p, &set, dim, emb, ok)) goto done;
    cli_outfile out;
    if (cli_outfile_open(&out, out_path)) goto done;
    long skipped = write_answers(p, csv, root, &set, emb, ok, dim, out.f);
    if (cli_outfile_close(&out, skipped >= 0) != 0) goto done;
    rc = skipped || bad_rows ? CLI_EXIT_PARTIAL : CLI_EXIT_OK;
done:
    free(emb);
    free(ok);
    free(root_buf);
    image_set_free(&set);
    return rc;
}

int cmd_pair(int argc, char **argv) {
    const char *index = NULL, *model = NULL, *out = NULL, *batch = NULL, *root = NULL;
    const char *html = NULL;
    int json = 0, first;
    const cli_option opts[] = {
        CLI_OPT("index", 'i', CLI_STRING, &index, "DIR",
                "answer with this index's trained head (default: none: the model's head)"),
        CLI_OPT_MODEL(&model),
        CLI_OPT("batch", 0, CLI_STRING, &batch, "PAIRS.csv",
                "answer every row of a pairs CSV instead of A B"),
        CLI_OPT("root", 0, CLI_STRING, &root, "DIR",
                "with --batch: where relative paths start (default: the CSV's folder)"),
        CLI_OPT("out", 'o', CLI_STRING, &out, "OUT.csv",
                "with --batch: the answers, replaced atomically (default: standard output)"),
        CLI_OPT_JSON(&json),
        CLI_OPT("html", 0, CLI_STRING, &html, "FILE",
                "also a self-contained page of the pair (not with --batch)"),
        CLI_END};
    int rc = cli_parse(argc, argv, opts, &pair_help, &first);
    if (rc >= 0) return rc;
    int n_images = argc - first;
    if (batch ? n_images != 0 : n_images != 2) {
        cli_error(batch ? "pair: --batch takes no image arguments"
                        : "pair: give two images (or --batch PAIRS.csv)");
        return CLI_EXIT_USAGE;
    }
    if (batch && json) {
        cli_error("pair: --json goes with A B, not --batch");
        return CLI_EXIT_USAGE;
    }
    if (batch && html) {
        cli_error("pair: --html reports one pair, not --batch");
        return CLI_EXIT_USAGE;
    }
    if (!batch && (out || root)) {
        cli_error("pair: -o and --root go with --batch");
        return CLI_EXIT_USAGE;
    }
    pair_ctx p;
    rc = CLI_EXIT_FAILURE;
    if (pair_setup(model, index, &p) == 0)
        rc = batch ? pair_batch(&p, batch, root, out)
                   : pair_single(&p, argv[first], argv[first + 1], json, html);
    pair_ctx_free(&p);
    return rc;
}

/*
 * cmd_eval.c - `siamidx eval`: the evaluation protocol on an index
 * (siamidx.h, docs/evaluation.md). `--legacy` gives the report of the
 * earlier design (random negatives across sources), kept for comparison.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "html_report.h"
#include "json.h"
#include "progress.h"
#include "siamidx_ext.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: siamidx eval [-i INDEX] [--unseen-artists FILE] [--seed S] [--pairs N]\n"
            "                    [--unknown-prior P] [--json] [--html FILE] [--legacy]\n\n"
            "Measures the index's trained head on held-out images, overall and per source\n"
            "(the collection's source_repo column):\n"
            "  pairs        same-artist pairs drawn round-robin over artists against two\n"
            "               negative sets of the same size, each negative keeping one image\n"
            "               of a positive: (a) another artist from the same source, (b) from\n"
            "               the same source and style folder (top folder of source_path);\n"
            "               AUC, EER, TAR at 1%% FAR, calibration error (ECE) for each\n"
            "  attribution  top-1, top-3, balanced top-1 of held-out images of indexed artists\n"
            "  open set     AUROC of the \"unknown\" share between queries by unseen artists\n"
            "               and by indexed ones; how often \"unknown\" comes first\n"
            "Seen: the test images of the head's split. Unseen: every image of the artists\n"
            "in FILE (one name a line, # comments), which the head must not have trained on;\n"
            "without FILE, the artists `siamidx train --holdout-artists` kept out.\n"
            "  -i, --index DIR         index (default: $SIAMIDX_INDEX, then siamidx.idx)\n"
            "  --unseen-artists FILE   artists kept out of the head (and the encoder)\n"
            "  --seed S                pair draws (default 1)\n"
            "  --pairs N               same-artist pairs per population (default 10000)\n"
            "  --unknown-prior P       score as if trained with this prior, 0 <= P < 1\n"
            "                          (default: the index's; see siamidx train)\n"
            "  --json                  one JSON object; unmeasurable figures are null\n"
            "  --html FILE             also a self-contained page: ROC curves per population,\n"
            "                          calibration, recall per artist (worst first), the most\n"
            "                          confused artists\n"
            "  --legacy                the earlier report (random negatives), for comparison\n");
}

/* ---- the unseen-artist list ---------------------------------------------------- */

typedef struct name_list {
    char **name;
    size_t n;
} name_list;

static void name_list_free(name_list *l) {
    for (size_t i = 0; i < l->n; i++) free(l->name[i]);
    free(l->name);
}

static int read_names(const char *path, name_list *out) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "r");
    if (!f) {
        cli_error("eval: %s: %s", path, strerror(errno));
        return -1;
    }
    char line[4096];
    size_t cap = 0;
    while (fgets(line, sizeof line, f)) {
        size_t len = strcspn(line, "\r\n");
        line[len] = 0;
        while (len && (line[len - 1] == ' ' || line[len - 1] == '\t')) line[--len] = 0;
        char *s = line + strspn(line, " \t");
        if (!*s || *s == '#') continue;
        if (out->n == cap) {
            cap = cap ? 2 * cap : 64;
            char **p = realloc(out->name, cap * sizeof *p);
            if (!p) goto oom;
            out->name = p;
        }
        if (!(out->name[out->n] = strdup(s))) goto oom;
        out->n++;
    }
    fclose(f);
    if (out->n == 0) {
        cli_error("eval: %s names no artist", path);
        name_list_free(out);
        return -1;
    }
    return 0;
oom:
    fclose(f);
    name_list_free(out);
    cli_error("eval: out of memory");
    return -1;
}

/* ---- JSON (cli/json.c: unmeasurable figures come out as null) ------------------- */

static void json_num(cli_json *j, const char *key, double v) {
    cli_json_key(j, key);
    cli_json_number(j, v, "%.6g");
}

static void json_count(cli_json *j, const char *key, size_t v) {
    cli_json_key(j, key);
    cli_json_uint(j, v);
}

static void json_verif(cli_json *j, const char *key, const siamidx_protocol_verification *v) {
    cli_json_key(j, key);
    cli_json_object(j);
    json_count(j, "positives", v->positives);
    json_count(j, "negatives", v->negatives);
    json_num(j, "auc", v->auc);
    json_num(j, "eer", v->eer);
    json_num(j, "tar_at_far1", v->tar_at_far1);
    json_num(j, "ece", v->ece);
    cli_json_end(j);
}

static void json_pairs(cli_json *j, const siamidx_protocol_pairs *p) {
    cli_json_key(j, "pairs");
    cli_json_object(j);
    json_verif(j, "same_source", &p->same_source);
    json_verif(j, "same_style", &p->same_style);
    json_count(j, "style_fallback", p->style_fallback);
    json_count(j, "source_fallback", p->source_fallback);
    cli_json_end(j);
}

static void json_attr(cli_json *j, const siamidx_protocol_attribution *a, int named) {
    cli_json_key(j, "attribution");
    cli_json_object(j);
    json_count(j, "queries", a->queries);
    json_count(j, "artists", a->artists);
    if (named) {
        json_num(j, "top1", a->top1);
        json_num(j, "top3", a->top3);
        json_num(j, "balanced_top1", a->balanced_top1);
    }
    json_num(j, "unknown_first", a->unknown_first);
    json_num(j, "mean_unknown", a->mean_unknown);
    cli_json_end(j);
}

static void json_group(cli_json *j, const siamidx_protocol_group *g) {
    cli_json_object(j);
    cli_json_key(j, "seen");
    cli_json_object(j);
    json_count(j, "images", g->seen_images);
    json_pairs(j, &g->seen_pairs);
    json_attr(j, &g->seen_attribution, 1);
    cli_json_end(j);
    cli_json_key(j, "unseen");
    cli_json_object(j);
    json_count(j, "images", g->unseen_images);
    json_count(j, "artists", g->unseen_artists);
    json_pairs(j, &g->unseen_pairs);
    json_attr(j, &g->unseen_attribution, 0);
    cli_json_end(j);
    cli_json_key(j, "open_set");
    cli_json_object(j);
    json_num(j, "auroc", g->open_set_auroc);
    json_num(j, "unknown_first_indexed", g->seen_attribution.unknown_first);
    json_num(j, "unknown_first_unseen", g->unseen_attribution.unknown_first);
    cli_json_end(j);
    cli_json_end(j);
}

static void print_json(const siamidx_protocol_report *r) {
    cli_json j;
    cli_json_init(&j, stdout, 0);
    cli_json_object(&j);
    cli_json_key(&j, "protocol");
    cli_json_int(&j, 1);
    cli_json_key(&j, "seed");
    cli_json_uint(&j, r->seed);
    json_count(&j, "pairs", r->pairs);
    cli_json_key(&j, "gallery");
    cli_json_object(&j);
    json_count(&j, "images", r->gallery_images);
    json_count(&j, "artists", r->gallery_artists);
    cli_json_end(&j);
    cli_json_key(&j, "overall");
    json_group(&j, &r->groups[0]);
    cli_json_key(&j, "by_source");
    cli_json_object(&j);
    for (size_t i = 1; i < r->n_groups; i++) {
        cli_json_key(&j, *r->groups[i].source ? r->groups[i].source : "(none)");
        json_group(&j, &r->groups[i]);
    }
    cli_json_end(&j);
    cli_json_end(&j);
    cli_json_finish(&j);
}

/* ---- text ----------------------------------------------------------------------- */

static void text_pairs(const char *who, const siamidx_protocol_pairs *p) {
    const siamidx_protocol_verification *a = &p->same_source, *b = &p->same_style;
    printf("  %-6s pairs %6zu  AUC %.4f / %.4f  EER %.4f / %.4f  TAR@1%%FAR %.4f / %.4f  "
           "ECE %.4f / %.4f  (fallbacks: %zu style, %zu source)\n",
           who, a->positives, a->auc, b->auc, a->eer, b->eer, a->tar_at_far1, b->tar_at_far1,
           a->ece, b->ece, p->style_fallback, p->source_fallback);
}

static void print_text(const siamidx_protocol_report *r) {
    printf("gallery: %zu images of %zu artists; %zu same-artist pairs per population, seed "
           "%llu\nfigures: against same-source / same-style negatives\n",
           r->gallery_images, r->gallery_artists, r->pairs, (unsigned long long)r->seed);
    for (size_t i = 0; i < r->n_groups; i++) {
        const siamidx_protocol_group *g = &r->groups[i];
        printf("%s: %zu seen test images, %zu images of %zu unseen artists\n",
               g->source ? (*g->source ? g->source : "(no source)") : "all sources",
               g->seen_images, g->unseen_images, g->unseen_artists);
        text_pairs("seen", &g->seen_pairs);
        text_pairs("unseen", &g->unseen_pairs);
        const siamidx_protocol_attribution *a = &g->seen_attribution;
        printf("  attribution (%zu queries, %zu artists): top-1 %.4f  top-3 %.4f  balanced "
               "top-1 %.4f\n",
               a->queries, a->artists, a->top1, a->top3, a->balanced_top1);
        printf("  open set: AUROC %.4f; \"unknown\" first for %.4f of indexed-artist and %.4f "
               "of unseen-artist queries\n",
               g->open_set_auroc, a->unknown_first, g->unseen_attribution.unknown_first);
    }
}

/* ---- the command ---------------------------------------------------------------------- */

int cmd_eval(int argc, char **argv) {
    siamidx_protocol_options o;
    siamidx_protocol_options_init(&o);
    const char *index = NULL, *unseen = NULL, *html = NULL;
    int json = 0, legacy = 0, first;
    uint64_t seed = o.seed;
    int pairs = (int)o.pairs;
    double prior = -1; /* not given: the index's */
    const cli_option opts[] = {CLI_OPT("index", 'i', CLI_STRING, &index),
                               CLI_OPT("unseen-artists", 0, CLI_STRING, &unseen),
                               CLI_NUM("seed", 0, CLI_U64, &seed, 0, 0x7fffffff, 0),
                               CLI_NUM("pairs", 0, CLI_INT, &pairs, 1, 10000000, 0),
                               CLI_NUM("unknown-prior", 0, CLI_DOUBLE, &prior, 0, 1, CLI_OPEN_MAX),
                               CLI_OPT("json", 0, CLI_FLAG, &json),
                               CLI_OPT("html", 0, CLI_STRING, &html),
                               CLI_OPT("legacy", 0, CLI_FLAG, &legacy),
                               CLI_END};
    int rc = cli_parse(argc, argv, opts, usage, &first);
    if (rc >= 0) return rc;
    if (first != argc) {
        cli_error("eval: unexpected argument '%s'", argv[first]);
        return CLI_EXIT_USAGE;
    }
    if (legacy) {
        if (unseen || html)
            return cli_error("eval: --legacy takes no --unseen-artists or --html"), CLI_EXIT_USAGE;
        return cmd_eval_legacy(index, json);
    }
    o.seed = seed;
    o.pairs = (size_t)pairs;
    if (prior >= 0) o.unknown_prior = prior;
    name_list names = {0};
    if (unseen && read_names(unseen, &names)) return CLI_EXIT_FAILURE;
    o.unseen_artists = unseen ? (const char *const *)names.name : NULL;
    o.n_unseen_artists = names.n;
    siamidx_index_options io;
    siamidx_index_options_init(&io);
    io.read_only = 1;
    siamidx_index *idx = NULL;
    siamidx_protocol_report r;
    siamidx_protocol_details details = {0}; /* what --html draws */
    siamidx_error err;
    const char *dir = index ? index : siamidx_default_index_path();
    siamidx_status st = siamidx_index_open(dir, NULL, &io, &idx, &err);
    cli_progress prog; /* queries scored, on stderr */
    cli_progress_init(&prog, "eval", "queries", 0);
    o.progress = cli_progress_update;
    o.progress_ctx = &prog;
    if (!st)
        st = siamidx_index_evaluate_protocol_details(idx, &o, &r, html ? &details : NULL, &err);
    cli_progress_end(&prog);
    siamidx_index_close(idx);
    name_list_free(&names);
    if (st) {
        cli_error("%s", err.message);
        return CLI_EXIT_FAILURE;
    }
    if (json) print_json(&r);
    else print_text(&r);
    rc = html && html_eval_report(html, dir, &r, &details) ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
    siamidx_protocol_details_free(&details);
    siamidx_protocol_report_free(&r);
    return rc;
}

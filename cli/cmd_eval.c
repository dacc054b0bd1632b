/*
 * cmd_eval.c - `siamidx eval`: the evaluation protocol on an index
 * (siamidx_eval.h, docs/evaluation.md). `--legacy` gives the report of the
 * earlier design (random negatives across sources), kept for comparison.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "siamidx.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: siamidx eval [-i INDEX] [--unseen-artists FILE] [--seed S] [--pairs N]\n"
            "                    [--unknown-prior P] [--json] [--legacy]\n\n"
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

/* ---- JSON ----------------------------------------------------------------------- */

static void json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

/* JSON has no NaN: a figure that could not be measured is null. */
static void num(const char *key, double v, int comma) {
    if (isfinite(v)) printf("\"%s\":%.6g%s", key, v, comma ? "," : "");
    else printf("\"%s\":null%s", key, comma ? "," : "");
}

static void json_verif(const char *key, const siamidx_protocol_verification *v) {
    printf("\"%s\":{\"positives\":%zu,\"negatives\":%zu,", key, v->positives, v->negatives);
    num("auc", v->auc, 1);
    num("eer", v->eer, 1);
    num("tar_at_far1", v->tar_at_far1, 1);
    num("ece", v->ece, 0);
    printf("}");
}

static void json_pairs(const siamidx_protocol_pairs *p) {
    printf("\"pairs\":{");
    json_verif("same_source", &p->same_source);
    printf(",");
    json_verif("same_style", &p->same_style);
    printf(",\"style_fallback\":%zu,\"source_fallback\":%zu}", p->style_fallback,
           p->source_fallback);
}

static void json_attr(const siamidx_protocol_attribution *a, int named) {
    printf("\"attribution\":{\"queries\":%zu,\"artists\":%zu,", a->queries, a->artists);
    if (named) {
        num("top1", a->top1, 1);
        num("top3", a->top3, 1);
        num("balanced_top1", a->balanced_top1, 1);
    }
    num("unknown_first", a->unknown_first, 1);
    num("mean_unknown", a->mean_unknown, 0);
    printf("}");
}

static void json_group(const siamidx_protocol_group *g) {
    printf("{\"seen\":{\"images\":%zu,", g->seen_images);
    json_pairs(&g->seen_pairs);
    printf(",");
    json_attr(&g->seen_attribution, 1);
    printf("},\"unseen\":{\"images\":%zu,\"artists\":%zu,", g->unseen_images, g->unseen_artists);
    json_pairs(&g->unseen_pairs);
    printf(",");
    json_attr(&g->unseen_attribution, 0);
    printf("},\"open_set\":{");
    num("auroc", g->open_set_auroc, 1);
    num("unknown_first_indexed", g->seen_attribution.unknown_first, 1);
    num("unknown_first_unseen", g->unseen_attribution.unknown_first, 0);
    printf("}}");
}

static void print_json(const siamidx_protocol_report *r) {
    printf("{\"protocol\":1,\"seed\":%llu,\"pairs\":%zu,", (unsigned long long)r->seed, r->pairs);
    printf("\"gallery\":{\"images\":%zu,\"artists\":%zu},\"overall\":", r->gallery_images,
           r->gallery_artists);
    json_group(&r->groups[0]);
    printf(",\"by_source\":{");
    for (size_t i = 1; i < r->n_groups; i++) {
        if (i > 1) printf(",");
        json_str(*r->groups[i].source ? r->groups[i].source : "(none)");
        printf(":");
        json_group(&r->groups[i]);
    }
    printf("}}\n");
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

static int parse_count(const char *s, unsigned long long hi, unsigned long long *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || *s == '-' || v > hi) return -1;
    *out = v;
    return 0;
}

int cmd_eval(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--legacy")) {
            memmove(argv + i, argv + i + 1, (size_t)(argc - i) * sizeof *argv);
            return cmd_eval_legacy(argc - 1, argv);
        }
    enum { O_UNSEEN = 256, O_SEED, O_PAIRS, O_JSON, O_PRIOR };
    static const struct option longs[] = {{"index", required_argument, NULL, 'i'},
                                          {"unseen-artists", required_argument, NULL, O_UNSEEN},
                                          {"seed", required_argument, NULL, O_SEED},
                                          {"pairs", required_argument, NULL, O_PAIRS},
                                          {"json", no_argument, NULL, O_JSON},
                                          {"unknown-prior", required_argument, NULL, O_PRIOR},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    siamidx_protocol_options o;
    siamidx_protocol_options_init(&o);
    const char *index = NULL, *unseen = NULL;
    int json = 0, c;
    unsigned long long v;
    optind = 1;
    while ((c = getopt_long(argc, argv, "i:h", longs, NULL)) != -1) {
        switch (c) {
        case 'i': index = optarg; break;
        case O_UNSEEN: unseen = optarg; break;
        case O_JSON: json = 1; break;
        case O_SEED:
            if (parse_count(optarg, 0x7fffffffULL, &v)) goto bad;
            o.seed = v;
            break;
        case O_PAIRS:
            if (parse_count(optarg, 10000000ULL, &v) || v == 0) goto bad;
            o.pairs = (size_t)v;
            break;
        case O_PRIOR: {
            char *end;
            o.unknown_prior = strtod(optarg, &end);
            if (end == optarg || *end || !(o.unknown_prior >= 0 && o.unknown_prior < 1)) goto bad;
            break;
        }
        case 'h': usage(stdout); return CLI_EXIT_OK;
        default: usage(stderr); return CLI_EXIT_USAGE;
        }
    }
    if (optind != argc) {
        cli_error("eval: unexpected argument '%s'", argv[optind]);
        return CLI_EXIT_USAGE;
    }
    name_list names = {0};
    if (unseen && read_names(unseen, &names)) return CLI_EXIT_FAILURE;
    o.unseen_artists = unseen ? (const char *const *)names.name : NULL;
    o.n_unseen_artists = names.n;
    siamidx_index_options io;
    siamidx_index_options_init(&io);
    io.read_only = 1;
    siamidx_index *idx = NULL;
    siamidx_protocol_report r;
    siamidx_error err;
    siamidx_status st = siamidx_index_open(index ? index : siamidx_default_index_path(), NULL,
                                           &io, &idx, &err);
    if (!st) st = siamidx_index_evaluate_protocol(idx, &o, &r, &err);
    siamidx_index_close(idx);
    name_list_free(&names);
    if (st) {
        cli_error("%s", err.message);
        return CLI_EXIT_FAILURE;
    }
    if (json) print_json(&r);
    else print_text(&r);
    siamidx_protocol_report_free(&r);
    return CLI_EXIT_OK;
bad:
    cli_error("eval: bad value '%s' for %s", optarg, argv[optind - 1]);
    return CLI_EXIT_USAGE;
}

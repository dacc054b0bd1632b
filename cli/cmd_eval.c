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
#include "lines.h"
#include "progress.h"
#include "siamidx_ext.h" /* JSON documents */

static const cli_help eval_help = {
    "siamidx eval [options]",
    "Measures the index's trained head on held-out images, overall and per source\n"
    "(the collection's source_repo column):\n"
    "  pairs        same-artist pairs drawn round-robin over artists against two\n"
    "               negative sets of the same size, each negative keeping one image\n"
    "               of a positive: (a) another artist from the same source, (b) from\n"
    "               the same source and style folder (top folder of source_path);\n"
    "               AUC, EER, TAR at 1% FAR, calibration error (ECE) for each\n"
    "  attribution  top-1, top-3, balanced top-1 of held-out images of indexed artists\n"
    "  open set     AUROC of the \"unknown\" share between queries by unseen artists\n"
    "               and by indexed ones; how often \"unknown\" comes first\n"
    "Seen: the test images of the head's split. Unseen: every image of the artists\n"
    "in FILE (one name a line, # comments), which the head must not have trained on;\n"
    "without FILE, the artists `siamidx train --holdout-artists` kept out.\n"};


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
    const cli_option opts[] = {
        CLI_OPT_INDEX(&index),
        CLI_OPT("unseen-artists", 0, CLI_STRING, &unseen, "FILE",
                "artists kept out of the head (and the encoder), one name a line (default: "
                "the artists train --holdout-artists kept out)"),
        CLI_NUM("seed", 0, CLI_U64, &seed, 0, 0x7fffffff, 0, "S", "pair draws"),
        CLI_NUM("pairs", 0, CLI_INT, &pairs, 1, 10000000, 0, "N",
                "same-artist pairs per population"),
        CLI_NUM("unknown-prior", 0, CLI_DOUBLE, &prior, 0, 1, CLI_OPEN_MAX, "P",
                "score as if trained with this prior, 0 <= P < 1 (default: the index's)"),
        CLI_OPT_JSON(&json),
        CLI_OPT("html", 0, CLI_STRING, &html, "FILE",
                "also a self-contained page: ROC curves per population, calibration, recall "
                "per artist (worst first), the most confused artists"),
        CLI_OPT("legacy", 0, CLI_FLAG, &legacy, NULL,
                "the earlier report (random negatives), for comparison"),
        CLI_END};
    int rc = cli_parse(argc, argv, opts, &eval_help, &first);
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
    cli_lines names = {0};
    if (unseen && cli_read_lines("eval", unseen, "artist", &names)) return CLI_EXIT_FAILURE;
    o.unseen_artists = unseen ? (const char *const *)names.line : NULL;
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
    int have_report = 0;
    cli_progress prog; /* queries scored, on stderr */
    cli_progress_init(&prog, "eval", "queries", 0);
    o.progress = cli_progress_update;
    o.progress_ctx = &prog;
    if (!st)
        st = siamidx_index_evaluate_protocol_details(idx, &o, &r, html ? &details : NULL, &err);
    cli_progress_end(&prog);
    have_report = !st;
    char *doc = NULL;
    if (!st && json) st = siamidx_protocol_report_json(idx, &r, &doc, &err);
    siamidx_index_close(idx);
    cli_lines_free(&names);
    if (st) {
        if (have_report) siamidx_protocol_report_free(&r);
        siamidx_protocol_details_free(&details);
        cli_error("%s", err.message);
        return CLI_EXIT_FAILURE;
    }
    if (json) {
        puts(doc);
        siamidx_json_free(doc);
    } else {
        print_text(&r);
    }
    rc = html && html_eval_report(html, dir, &r, &details) ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
    siamidx_protocol_details_free(&details);
    siamidx_protocol_report_free(&r);
    return rc;
}

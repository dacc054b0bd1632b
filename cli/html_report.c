/* html_report.c - self-contained HTML reports of query, pair and eval (see html_report.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "html_report.h"
#include "outfile.h"

/* ---- text --------------------------------------------------------------------------- */

/* s as HTML text or attribute value: & < > " ' escaped, invalid UTF-8 replaced by U+FFFD. */
static void esc(FILE *f, const char *s) {
    if (!s) return;
    size_t n = strlen(s);
    while (n) {
        size_t ok = siamidx_utf8_valid_prefix(s, n);
        for (size_t i = 0; i < ok; i++) {
            char c = s[i];
            if (c == '&') fputs("&amp;", f);
            else if (c == '<') fputs("&lt;", f);
            else if (c == '>') fputs("&gt;", f);
            else if (c == '"') fputs("&quot;", f);
            else if (c == '\'') fputs("&#39;", f);
            else if ((unsigned char)c < 0x20 && c != '\t') fputs("&#xfffd;", f);
            else fputc(c, f);
        }
        if (ok == n) break;
        fputs("&#xfffd;", f); /* one replacement per invalid byte, as the JSON writer does */
        s += ok + 1;
        n -= ok + 1;
    }
}

/* The last component of a path (what a caption has room for). */
static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash && slash[1] ? slash + 1 : path;
}

static void pct(FILE *f, double p) {
    if (isfinite(p)) fprintf(f, "%.1f%%", 100 * p);
    else fputs("n/a", f);
}

static void num(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, "%.4f", v);
    else fputs("n/a", f); /* not measurable (NaN): never shown as 0 */
}

/* ---- pictures -------------------------------------------------------------------------- */

static void base64(FILE *f, const unsigned char *p, size_t n) {
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        fputc(t[v >> 18 & 63], f);
        fputc(t[v >> 12 & 63], f);
        fputc(i + 1 < n ? t[v >> 6 & 63] : '=', f);
        fputc(i + 2 < n ? t[v & 63] : '=', f);
    }
}

/* An <img> of the file inlined as a JPEG data: URI, or a box saying why there is none. */
static void picture(FILE *f, const char *path, int side) {
    void *jpeg = NULL;
    size_t len = 0;
    int w = 0, h = 0;
    siamidx_error err;
    if (siamidx_image_thumbnail_jpeg(path, side, 82, &jpeg, &len, &w, &h, &err)) {
        fprintf(f, "<div class=\"nopic\" style=\"width:%dpx;height:%dpx\">picture not readable: ",
                side, side * 3 / 4);
        esc(f, err.message);
        fputs("</div>", f);
        return;
    }
    /* shown at the box's size whatever the file's: a small painting is enlarged on screen
       (the data stays at most side pixels) */
    double scale = (double)side / (w > h ? w : h);
    int dw = (int)(w * scale + 0.5), dh = (int)(h * scale + 0.5);
    fprintf(f, "<img class=\"thumb\" width=\"%d\" height=\"%d\" data-pixels=\"%dx%d\" alt=\"",
            dw > 0 ? dw : 1, dh > 0 ? dh : 1, w, h);
    esc(f, base_name(path));
    fputs("\" src=\"data:image/jpeg;base64,", f);
    base64(f, jpeg, len);
    fputs("\">", f);
    free(jpeg);
}

/* ---- the page ------------------------------------------------------------------------------ */

static const char *const style =
    "body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1d2430;"
    "background:#f6f5f1;margin:0;padding:24px 32px}"
    "h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 10px}"
    ".sub{color:#5b6470;margin:0 0 18px}.card{background:#fff;border:1px solid #dedbd2;"
    "border-radius:8px;padding:16px 18px;margin:0 0 16px}"
    ".row{display:flex;gap:18px;flex-wrap:wrap;align-items:flex-start}"
    ".thumb{display:block;border-radius:4px;box-shadow:0 1px 3px rgba(0,0,0,.25)}"
    ".nopic{display:flex;align-items:center;justify-content:center;text-align:center;"
    "font-size:11px;color:#7a2e2e;background:#f3e6e6;border-radius:4px;padding:6px;"
    "box-sizing:border-box;overflow:hidden}"
    ".ev{display:flex;gap:12px;flex-wrap:wrap}.ev figure{margin:0;width:150px}"
    ".ev figcaption{font-size:12px;color:#4a525c;margin-top:4px;overflow-wrap:anywhere}"
    ".big{font-size:40px;font-weight:650}.same{color:#1f7a3a}.diff{color:#a33a2a}"
    "table{border-collapse:collapse;font-size:13px}td,th{padding:3px 10px;text-align:left;"
    "border-bottom:1px solid #ece9e1}th{color:#5b6470;font-weight:600}"
    "td.n{text-align:right;font-variant-numeric:tabular-nums}"
    ".meta{font-size:12px;color:#5b6470}.meta code{font-size:11px}"
    ".legend{max-width:360px}.legend span{display:inline-block;margin-right:14px;font-size:12px}"
    ".legend i{display:inline-block;width:12px;height:3px;margin-right:5px;vertical-align:middle}";

static void page_begin(FILE *f, const char *title) {
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
          /* no network, no scripts: the page only ever shows what it carries */
          "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
          "img-src data:; style-src 'unsafe-inline'\">\n<title>",
          f);
    esc(f, title);
    fprintf(f, "</title>\n<style>%s</style></head>\n<body>\n", style);
}

static void page_end(FILE *f) {
    fprintf(f, "<p class=\"meta\">siamidx %s</p>\n</body></html>\n", SIAMIDX_VERSION_STRING);
}

static void model_line(FILE *f, const siamidx_model *model) {
    if (!model) return;
    fputs("<div>model <code>", f);
    esc(f, siamidx_model_path(model));
    fputs("</code> (", f);
    esc(f, siamidx_model_arch(model));
    fprintf(f, ", %zu dimensions, fingerprint <code>%.12s</code>)</div>\n",
            siamidx_model_dim(model, SIAMIDX_POOL_DEFAULT), siamidx_model_fingerprint(model));
}

/* ---- charts (inline SVG) -------------------------------------------------------------------- */

static const char *const series_color[] = {"#2b6cb0", "#c05621", "#2f855a", "#9b2c6f"};

/* Horizontal probability bars, one a row: names[i] with p[i]; the last row `unknown`
   (NAN: none) in grey. Each row carries data-artist / data-probability. */
static void prob_bars(FILE *f, const siamidx_artist_score *a, size_t n, double unknown) {
    const int row = 30, label_w = 200, bar_w = 420;
    size_t rows = n + (unknown == unknown);
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%zu\" "
               "role=\"img\" font-size=\"13\">\n",
            label_w + bar_w + 70, rows * row + 6);
    for (size_t i = 0; i < rows; i++) {
        int is_unknown = i == n;
        double p = is_unknown ? unknown : a[i].probability;
        double y = (double)i * row + 4;
        fputs("<g class=\"artist\"", f);
        if (!is_unknown) {
            fputs(" data-artist=\"", f);
            esc(f, a[i].artist);
            fprintf(f, "\" data-probability=\"%.6f\"", a[i].probability);
        } else {
            fprintf(f, " data-unknown=\"%.6f\"", unknown);
        }
        fprintf(f, "><text x=\"%d\" y=\"%.0f\" text-anchor=\"end\"%s>", label_w - 8, y + 17,
                is_unknown ? " fill=\"#5b6470\" font-style=\"italic\"" : "");
        if (is_unknown) fputs("unknown (not in the index)", f);
        else esc(f, a[i].artist);
        fprintf(f, "</text><rect x=\"%d\" y=\"%.0f\" width=\"%d\" height=\"22\" fill=\"#ece9e1\" "
                   "rx=\"3\"/><rect x=\"%d\" y=\"%.0f\" width=\"%.1f\" height=\"22\" fill=\"%s\" "
                   "rx=\"3\"/>",
                label_w, y, bar_w, label_w, y, bar_w * (p > 0 ? p : 0),
                is_unknown ? "#a0a7b0" : i == 0 ? "#2b6cb0" : "#6b9bd1");
        fprintf(f, "<text x=\"%.1f\" y=\"%.0f\">", label_w + bar_w * (p > 0 ? p : 0) + 6, y + 17);
        pct(f, p);
        fputs("</text></g>\n", f);
    }
    fputs("</svg>\n", f);
}

typedef struct plot {
    int w, h, left, top, inner_w, inner_h;
} plot;

/* Axes from 0 to 1 both ways, gridlines every 0.2, the axis titles. */
static plot plot_begin(FILE *f, const char *xlabel, const char *ylabel) {
    plot p = {360, 330, 52, 12, 290, 270};
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "role=\"img\" font-size=\"11\">\n<rect x=\"%d\" y=\"%d\" width=\"%d\" "
               "height=\"%d\" fill=\"#fff\" stroke=\"#bdb8ab\"/>\n",
            p.w, p.h, p.left, p.top, p.inner_w, p.inner_h);
    for (int k = 0; k <= 5; k++) {
        double x = p.left + p.inner_w * k / 5.0, y = p.top + p.inner_h * (1 - k / 5.0);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#eeebe3\"/>"
                   "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#eeebe3\"/>"
                   "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.1f</text>"
                   "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.1f</text>\n",
                x, p.top, x, p.top + p.inner_h, p.left, y, p.left + p.inner_w, y, x,
                p.top + p.inner_h + 14, k / 5.0, p.left - 5, y + 4, k / 5.0);
    }
    fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" font-size=\"12\">%s</text>"
               "<text transform=\"translate(14 %.1f) rotate(-90)\" text-anchor=\"middle\" "
               "font-size=\"12\">%s</text>\n",
            p.left + p.inner_w / 2.0, p.h - 8, xlabel, p.top + p.inner_h / 2.0, ylabel);
    return p;
}

static double px(const plot *p, double v) { return p->left + p->inner_w * v; }
static double py(const plot *p, double v) { return p->top + p->inner_h * (1 - v); }

static void diagonal(FILE *f, const plot *p) {
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#a0a7b0\" "
               "stroke-dasharray=\"4 4\"/>\n",
            px(p, 0), py(p, 0), px(p, 1), py(p, 1));
}

static void legend(FILE *f, const char *const *labels, int n) {
    fputs("<div class=\"legend\">", f);
    for (int i = 0; i < n; i++) {
        if (!labels[i]) continue;
        fprintf(f, "<span><i style=\"background:%s\"></i>", series_color[i]);
        esc(f, labels[i]);
        fputs("</span>", f);
    }
    fputs("</div>\n", f);
}

/* ROC curves; labels[i] NULL: curve i has no points (not measurable), left out. */
static void roc_chart(FILE *f, const siamidx_roc_curve *const *c, const char *const *labels,
                      int n) {
    fputs("<div>", f);
    plot p = plot_begin(f, "false accept rate", "true accept rate");
    diagonal(f, &p);
    for (int i = 0; i < n; i++) {
        if (!labels[i] || c[i]->n < 2) continue;
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"",
                series_color[i]);
        for (size_t k = 0; k < c[i]->n; k++)
            fprintf(f, "%.1f,%.1f ", px(&p, c[i]->far[k]), py(&p, c[i]->tar[k]));
        fputs("\"/>\n", f);
    }
    fputs("</svg>\n", f);
    legend(f, labels, n);
    fputs("</div>\n", f);
}

/* Share of same-artist pairs per probability bin against the bin's middle; bins
   without pairs are left out; `mark` (-1: none) is drawn larger. */
static void calibration_chart(FILE *f, const siamidx_calibration_bin *const *bins, size_t nb,
                              const char *const *labels, int n, int mark) {
    fputs("<div>", f);
    plot p = plot_begin(f, "predicted P(same artist)", "share of same-artist pairs");
    diagonal(f, &p);
    for (int i = 0; i < n; i++) {
        if (!labels[i]) continue;
        const char *col = series_color[i];
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", col);
        for (size_t k = 0; k < nb; k++)
            if (bins[i][k].pairs)
                fprintf(f, "%.1f,%.1f ", px(&p, (bins[i][k].lo + bins[i][k].hi) / 2),
                        py(&p, (double)bins[i][k].same / (double)bins[i][k].pairs));
        fputs("\"/>\n", f);
        for (size_t k = 0; k < nb; k++)
            if (bins[i][k].pairs)
                fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%d\" fill=\"%s\"/>\n",
                        px(&p, (bins[i][k].lo + bins[i][k].hi) / 2),
                        py(&p, (double)bins[i][k].same / (double)bins[i][k].pairs),
                        (int)k == mark ? 7 : 3, col);
    }
    fputs("</svg>\n", f);
    legend(f, labels, n);
    fputs("</div>\n", f);
}

/* ---- writing a page atomically ---------------------------------------------------------------- */

typedef void (*page_fn)(FILE *f, const void *ctx);

static int write_page(const char *out_path, page_fn fn, const void *ctx) {
    if (!out_path || !strcmp(out_path, "-")) {
        cli_error("--html wants a file name");
        return -1;
    }
    cli_outfile o;
    if (cli_outfile_open(&o, out_path)) return -1;
    fn(o.f, ctx);
    return cli_outfile_close(&o, 1);
}

/* ---- query -------------------------------------------------------------------------------- */

typedef struct query_page {
    const char *image, *index_dir;
    const siamidx_query_result *r;
    const siamidx_model *model;
    siamidx_index *idx;
} query_page;

#define EVIDENCE_PER_ARTIST 6

/* Most probable first (without a head, NaN: most similar first). */
static int cmp_evidence(const void *pa, const void *pb) {
    const siamidx_neighbor *a = *(const siamidx_neighbor *const *)pa;
    const siamidx_neighbor *b = *(const siamidx_neighbor *const *)pb;
    if (a->probability == a->probability && b->probability == b->probability &&
        a->probability != b->probability)
        return a->probability > b->probability ? -1 : 1;
    return (a->similarity < b->similarity) - (a->similarity > b->similarity);
}

/* The artist's neighbours that carry the evidence, strongest first. */
static void evidence(FILE *f, const siamidx_query_result *r, const char *artist) {
    const siamidx_neighbor **pick = malloc((r->n_neighbors + 1) * sizeof *pick);
    size_t n = 0;
    for (size_t i = 0; pick && i < r->n_neighbors; i++)
        if (!strcmp(r->neighbors[i].artist, artist)) pick[n++] = &r->neighbors[i];
    qsort(pick, n, sizeof *pick, cmp_evidence);
    if (n > EVIDENCE_PER_ARTIST) n = EVIDENCE_PER_ARTIST;
    if (!n) {
        fputs("<p class=\"meta\">none of this artist's paintings is among the nearest neighbours listed: its share comes from further candidates or the classifier</p>\n", f);
        free(pick);
        return;
    }
    fputs("<div class=\"ev\">", f);
    for (size_t i = 0; i < n; i++) {
        fputs("<figure>", f);
        picture(f, pick[i]->path, 150);
        fputs("<figcaption>", f);
        esc(f, base_name(pick[i]->path));
        fprintf(f, "<br>similarity %.3f", pick[i]->similarity);
        if (pick[i]->probability == pick[i]->probability)
            fprintf(f, " &middot; P(same) %.3f", pick[i]->probability);
        fputs("</figcaption></figure>", f);
    }
    fputs("</div>\n", f);
    free(pick);
}

static void query_body(FILE *f, const void *ctx) {
    const query_page *q = ctx;
    const siamidx_query_result *r = q->r;
    page_begin(f, "siamidx query");
    fputs("<h1>Who painted this?</h1>\n<p class=\"sub\">", f);
    esc(f, q->image);
    fputs("</p>\n<div class=\"row\"><div class=\"card\">", f);
    picture(f, q->image, 320);
    fputs("</div>\n<div class=\"card\" style=\"flex:1;min-width:520px\">", f);
    if (r->n_artists) {
        fputs("<div class=\"big\" id=\"top\">", f);
        esc(f, r->artists[0].artist);
        fputs(" <span style=\"font-weight:400\">", f);
        pct(f, r->artists[0].probability);
        fputs("</span></div>\n", f);
    }
    if (r->head == SIAMIDX_HEAD_NONE)
        fputs("<p class=\"meta\">no trained head: the scores rank artists by similarity, they "
              "are not probabilities</p>\n", f);
    prob_bars(f, r->artists, r->n_artists, r->head == SIAMIDX_HEAD_NONE ? NAN : r->unknown);
    if (r->exact_match_path) {
        fputs("<p>exact match: this very file is indexed as ", f);
        esc(f, r->exact_match_artist);
        fputs(" (<code>", f);
        esc(f, r->exact_match_path);
        fputs("</code>); it is not counted as evidence</p>\n", f);
    }
    fputs("</div></div>\n<h2>The evidence</h2>\n", f);
    for (size_t i = 0; i < r->n_artists; i++) {
        fputs("<div class=\"card\"><b>", f);
        esc(f, r->artists[i].artist);
        fputs("</b> &middot; ", f);
        pct(f, r->artists[i].probability);
        fputs("\n", f);
        evidence(f, r, r->artists[i].artist);
        fputs("</div>\n", f);
    }
    fputs("<h2>What answered</h2>\n<div class=\"card meta\">", f);
    model_line(f, q->model);
    fputs("<div>index <code>", f);
    esc(f, q->index_dir);
    fputs("</code>", f);
    siamidx_index_info info;
    siamidx_error err;
    if (q->idx && siamidx_index_info_get(q->idx, &info, &err) == SIAMIDX_OK) {
        fprintf(f, ": %llu images of %llu artists, %s index, generation %llu",
                (unsigned long long)info.images, (unsigned long long)info.n_artists,
                info.index_type, (unsigned long long)info.generation);
        siamidx_index_info_free(&info);
    }
    fprintf(f, "</div><div>head: %s%s; %zu neighbours scored</div></div>\n",
            siamidx_head_source_name(r->head), r->classifier ? " + classifier over artists" : "",
            r->n_neighbors);
    page_end(f);
}

int html_query_report(const char *out_path, const char *image, const siamidx_query_result *r,
                      const siamidx_model *model, siamidx_index *idx, const char *index_dir) {
    query_page q = {image, index_dir, r, model, idx};
    return write_page(out_path, query_body, &q);
}

/* ---- pair ---------------------------------------------------------------------------------- */

typedef struct pair_page {
    const char *a, *b;
    const siamidx_pair_result *r;
    const siamidx_head *head;
    siamidx_head_source source;
    const siamidx_model *model;
} pair_page;

/* "Of pairs scored like this, N% were by the same artist", from the head's validation bins. */
static void calibration_context(FILE *f, const pair_page *p) {
    siamidx_calibration_bin bins[10];
    size_t nb = siamidx_head_calibration(p->head, bins, 10);
    if (!nb) {
        fputs("<p class=\"meta\" id=\"calibration\">this head records no validation pairs "
              "(it was trained before they were kept, or made by hand): train it again with "
              "<code>siamidx train</code> for the calibration context</p>\n", f);
        return;
    }
    int mark = -1;
    for (size_t k = 0; k < nb; k++)
        if (p->r->probability >= bins[k].lo && (p->r->probability < bins[k].hi || k + 1 == nb))
            mark = (int)k;
    const siamidx_calibration_bin *m = &bins[mark < 0 ? 0 : mark];
    fputs("<p id=\"calibration\">", f);
    if (m->pairs)
        fprintf(f, "Of the %llu validation pairs the head scored between %.0f%% and %.0f%%, "
                   "<b data-same-share=\"%.6f\">%.1f%%</b> were by the same artist.",
                (unsigned long long)m->pairs, 100 * m->lo, 100 * m->hi,
                (double)m->same / (double)m->pairs, 100.0 * (double)m->same / (double)m->pairs);
    else
        fprintf(f, "None of the head's validation pairs scored between %.0f%% and %.0f%%: "
                   "this probability is outside what it was calibrated on.",
                100 * m->lo, 100 * m->hi);
    fputs("</p>\n", f);
    const siamidx_calibration_bin *series[1] = {bins};
    const char *labels[1] = {"the head's validation pairs"};
    calibration_chart(f, series, nb, labels, 1, mark);
}

static void pair_body(FILE *f, const void *ctx) {
    const pair_page *p = ctx;
    page_begin(f, "siamidx pair");
    fputs("<h1>Same artist?</h1>\n<div class=\"row\">", f);
    const char *side[2] = {p->a, p->b};
    for (int i = 0; i < 2; i++) {
        fputs("<div class=\"card\">", f);
        picture(f, side[i], 300);
        fputs("<div class=\"meta\" style=\"max-width:300px;overflow-wrap:anywhere\">", f);
        esc(f, side[i]);
        fputs("</div></div>\n", f);
    }
    const siamidx_pair_result *r = p->r;
    fprintf(f, "<div class=\"card\" style=\"flex:1;min-width:340px\"><div class=\"big %s\" id=\"verdict\" "
               "data-probability=\"%.6f\" data-same-artist=\"%s\">",
            r->same_artist ? "same" : "diff", r->probability, r->same_artist ? "true" : "false");
    pct(f, r->probability);
    fprintf(f, "</div><div><b>%s</b> (P(same artist) at or above the threshold %.3f means the "
               "same artist)</div>\n",
            r->same_artist ? "same artist" : "different artists", r->threshold);
    calibration_context(f, p);
    fputs("</div></div>\n<h2>What answered</h2>\n<div class=\"card meta\">", f);
    model_line(f, p->model);
    fprintf(f, "<div>head: %s (%s)</div></div>\n", siamidx_head_source_name(p->source),
            p->source == SIAMIDX_HEAD_INDEX ? "the index's trained head"
                                            : "the model file's default head");
    page_end(f);
}

int html_pair_report(const char *out_path, const char *a, const char *b,
                     const siamidx_pair_result *r, const siamidx_head *head,
                     siamidx_head_source source, const siamidx_model *model) {
    pair_page p = {a, b, r, head, source, model};
    return write_page(out_path, pair_body, &p);
}

/* ---- eval ---------------------------------------------------------------------------------- */

typedef struct eval_page {
    const char *index_dir;
    const siamidx_protocol_report *r;
    const siamidx_protocol_details *d;
} eval_page;

static void metric_cell(FILE *f, const char *name, double v) {
    fprintf(f, "<td class=\"n\" data-metric=\"%s\" data-value=\"%.6g\">", name, v);
    num(f, v);
    fputs("</td>", f);
}

static void summary_table(FILE *f, const siamidx_protocol_group *g) {
    fputs("<table><tr><th>population</th><th>negatives</th><th>pairs</th><th>AUC</th>"
          "<th>EER</th><th>TAR@1%FAR</th><th>ECE</th></tr>\n", f);
    const char *pop[2] = {"seen", "unseen"};
    const siamidx_protocol_pairs *pp[2] = {&g->seen_pairs, &g->unseen_pairs};
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 2; k++) {
            const siamidx_protocol_verification *v = k ? &pp[i]->same_style : &pp[i]->same_source;
            char name[64];
            fprintf(f, "<tr><td>%s</td><td>%s</td><td class=\"n\">%zu</td>", pop[i],
                    k ? "same style" : "same source", v->positives);
            const char *keys[] = {"auc", "eer", "tar_at_far1", "ece"};
            const double vals[] = {v->auc, v->eer, v->tar_at_far1, v->ece};
            for (int m = 0; m < 4; m++) {
                snprintf(name, sizeof name, "%s.%s.%s", pop[i], k ? "same_style" : "same_source",
                         keys[m]);
                metric_cell(f, name, vals[m]);
            }
            fputs("</tr>\n", f);
        }
    fputs("</table>\n", f);
    const siamidx_protocol_attribution *a = &g->seen_attribution;
    fprintf(f, "<table style=\"margin-top:12px\"><tr><th>attribution (%zu queries, %zu artists)"
               "</th><th>top-1</th><th>top-3</th><th>balanced top-1</th><th>open-set AUROC</th>"
               "</tr>\n<tr><td>held-out images of indexed artists</td>",
            a->queries, a->artists);
    metric_cell(f, "top1", a->top1);
    metric_cell(f, "top3", a->top3);
    metric_cell(f, "balanced_top1", a->balanced_top1);
    metric_cell(f, "open_set_auroc", g->open_set_auroc);
    fputs("</tr></table>\n", f);
}

#define MAX_RECALL_ROWS 200
#define MAX_CONFUSIONS 25

static void recall_table(FILE *f, const siamidx_protocol_details *d) {
    fputs("<table id=\"recall\"><tr><th>artist</th><th>held-out images</th><th>top-1</th>"
          "<th>top-3</th></tr>\n", f);
    for (size_t i = 0; i < d->n_recall && i < MAX_RECALL_ROWS; i++) {
        const siamidx_artist_recall *a = &d->recall[i];
        fputs("<tr><td>", f);
        esc(f, a->artist);
        fprintf(f, "</td><td class=\"n\">%zu</td><td class=\"n\">", a->queries);
        pct(f, (double)a->top1 / (double)a->queries);
        fputs("</td><td class=\"n\">", f);
        pct(f, (double)a->top3 / (double)a->queries);
        fputs("</td></tr>\n", f);
    }
    fputs("</table>\n", f);
    if (d->n_recall > MAX_RECALL_ROWS)
        fprintf(f, "<p class=\"meta\">and %zu artists more (the best)</p>\n",
                d->n_recall - MAX_RECALL_ROWS);
}

static void confusion_table(FILE *f, const siamidx_protocol_details *d) {
    if (!d->n_confusions) {
        fputs("<p class=\"meta\">no held-out image was named as another artist's</p>\n", f);
        return;
    }
    fputs("<table id=\"confusions\"><tr><th>painted by</th><th>named first</th><th>images</th>"
          "</tr>\n", f);
    for (size_t i = 0; i < d->n_confusions && i < MAX_CONFUSIONS; i++) {
        fputs("<tr><td>", f);
        esc(f, d->confusions[i].truth);
        fputs("</td><td>", f);
        esc(f, d->confusions[i].named);
        fprintf(f, "</td><td class=\"n\">%zu</td></tr>\n", d->confusions[i].count);
    }
    fputs("</table>\n", f);
}

static void eval_body(FILE *f, const void *ctx) {
    const eval_page *e = ctx;
    const siamidx_protocol_report *r = e->r;
    const siamidx_protocol_details *d = e->d;
    const siamidx_protocol_group *g = &r->groups[0];
    page_begin(f, "siamidx eval");
    fputs("<h1>How well the head answers</h1>\n<p class=\"sub\">index <code>", f);
    esc(f, e->index_dir);
    fprintf(f, "</code>: gallery of %zu images by %zu artists; %zu seen test images, %zu images "
               "of %zu unseen artists; %zu same-artist pairs per population, seed %llu</p>\n",
            r->gallery_images, r->gallery_artists, g->seen_images, g->unseen_images,
            g->unseen_artists, r->pairs, (unsigned long long)r->seed);
    fputs("<div class=\"card\">", f);
    summary_table(f, g);
    fputs("</div>\n<div class=\"row\"><div class=\"card\"><b>ROC curves per population</b>\n", f);
    const siamidx_roc_curve *c[4] = {&d->roc[0][0], &d->roc[0][1], &d->roc[1][0], &d->roc[1][1]};
    const char *labels[4] = {"seen, same-source negatives", "seen, same-style negatives",
                             "unseen, same-source negatives", "unseen, same-style negatives"};
    for (int i = 0; i < 4; i++)
        if (c[i]->n < 2) labels[i] = NULL;
    roc_chart(f, c, labels, 4);
    fputs("</div>\n<div class=\"card\"><b>Calibration</b>\n", f);
    const siamidx_calibration_bin *bins[2] = {d->calibration[0], d->calibration[1]};
    const char *cl[2] = {g->seen_pairs.same_source.positives ? "seen pairs" : NULL,
                         g->unseen_pairs.same_source.positives ? "unseen pairs" : NULL};
    calibration_chart(f, bins, 10, cl, 2, -1);
    fputs("</div></div>\n<div class=\"row\"><div class=\"card\"><b>Recall per artist, worst "
          "first</b> (held-out images of indexed artists)\n", f);
    recall_table(f, d);
    fputs("</div>\n<div class=\"card\"><b>Most confused artists</b>\n", f);
    confusion_table(f, d);
    fputs("</div></div>\n", f);
    page_end(f);
}

int html_eval_report(const char *out_path, const char *index_dir,
                     const siamidx_protocol_report *r, const siamidx_protocol_details *d) {
    eval_page e = {index_dir, r, d};
    return write_page(out_path, eval_body, &e);
}

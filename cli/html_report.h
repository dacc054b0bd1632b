/*
 * html_report.h - the --html reports of query, pair and eval: one
 * self-contained page each. Pictures are inlined as data: URIs of small
 * JPEGs (siamidx_image_thumbnail_jpeg), charts are inline SVG written here,
 * styles are inline: the page fetches nothing, works offline and can be
 * mailed. Every path and artist name is HTML-escaped (invalid UTF-8 becomes
 * U+FFFD). The file is written atomically (outfile.h): a failed run leaves
 * the previous report as it was.
 *
 * Figures a test reads back carry data- attributes beside their text
 * (data-artist, data-probability, data-metric): the page says in words what
 * --json says in numbers, and a test can hold the two to each other.
 */
#ifndef SIAMIDX_CLI_HTML_REPORT_H
#define SIAMIDX_CLI_HTML_REPORT_H

#include "siamidx_ext.h"

/* 0 when written, else -1 after a message. */
int html_query_report(const char *out_path, const char *image, const siamidx_query_result *r,
                      const siamidx_model *model, siamidx_index *idx, const char *index_dir);
int html_pair_report(const char *out_path, const char *a, const char *b,
                     const siamidx_pair_result *r, const siamidx_head *head,
                     siamidx_head_source source, const siamidx_model *model);
int html_eval_report(const char *out_path, const char *index_dir,
                     const siamidx_protocol_report *r, const siamidx_protocol_details *d);

#endif

/*
 * json.h - the one JSON writer of every subcommand's --json output.
 *
 * It keeps the commas and nesting, so a command only says what comes next.
 * Strings are always valid UTF-8: bytes that are not (a file name from a
 * Latin-1 disk, say) are REPLACED by U+FFFD, written as the escape \ufffd,
 * so the document stays valid JSON whatever the paths; control characters
 * are escaped. Numbers that are not finite -- a metric that could not be
 * measured, e.g. AUC without negative pairs -- are written as null, never 0.
 */
#ifndef SIAMIDX_CLI_JSON_H
#define SIAMIDX_CLI_JSON_H

#include <stdint.h>
#include <stdio.h>

#define CLI_JSON_DEPTH 16

typedef struct cli_json {
    FILE *f;
    int spaced; /* ", " and ": " (query, info) rather than compact */
    int depth;
    int items[CLI_JSON_DEPTH]; /* values written so far at each depth */
    char kinds[CLI_JSON_DEPTH]; /* '{' or '[' */
    int after_key;
} cli_json;

void cli_json_init(cli_json *j, FILE *f, int spaced);
void cli_json_object(cli_json *j);
void cli_json_array(cli_json *j);
void cli_json_end(cli_json *j); /* closes the innermost object or array */
/* Ends the document: a newline after the last value. */
void cli_json_finish(cli_json *j);

void cli_json_key(cli_json *j, const char *key);
void cli_json_string(cli_json *j, const char *s);
/* fmt: a printf format of one double ("%.6f", "%.6g"); null when not finite. */
void cli_json_number(cli_json *j, double v, const char *fmt);
void cli_json_int(cli_json *j, long long v);
void cli_json_uint(cli_json *j, uint64_t v);
void cli_json_bool(cli_json *j, int v);

/* The bytes of s written as a JSON string (quotes included), invalid UTF-8 replaced. */
void cli_json_write_string(FILE *f, const char *s);
/* Strict UTF-8 (no overlongs, surrogates, > U+10FFFF): n when valid, else the
   offset of the first bad byte. */
size_t cli_utf8_valid_prefix(const char *s, size_t n);

#endif

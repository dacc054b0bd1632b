/*
 * base/json.h - the one JSON writer: every --json document of the CLI and
 * every dict of the Python module is written with it (answer/report_json.c).
 *
 * It keeps the commas and nesting, so a writer only says what comes next.
 * Strings are always valid UTF-8: bytes that are not (a file name from a
 * Latin-1 disk, say) are REPLACED by U+FFFD, written as the escape \ufffd,
 * so the document stays valid JSON whatever the paths; control characters
 * are escaped. Numbers that are not finite -- a metric that could not be
 * measured, e.g. AUC without negative pairs -- are written as null, never 0.
 * Output goes to an sx_strbuf; an allocation failure sets its `oom`.
 */
#ifndef SX_BASE_JSON_H
#define SX_BASE_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "base/strbuf.h"

#define SX_JSON_DEPTH 16

typedef struct sx_json {
    sx_strbuf out;
    int depth;
    int items[SX_JSON_DEPTH];  /* values written so far at each depth */
    char kinds[SX_JSON_DEPTH]; /* '{' or '[' */
    int after_key;
} sx_json;

/* Zero-initialise an sx_json, then write; take the text with sx_json_take. */
void sx_json_object(sx_json *j);
void sx_json_array(sx_json *j);
void sx_json_end(sx_json *j); /* closes the innermost object or array */

void sx_json_key(sx_json *j, const char *key);
void sx_json_string(sx_json *j, const char *s); /* NULL: null */
/* fmt: a printf format of one double ("%.6f", "%.6g"); null when not finite. */
void sx_json_number(sx_json *j, double v, const char *fmt);
void sx_json_int(sx_json *j, long long v);
void sx_json_uint(sx_json *j, uint64_t v);
void sx_json_bool(sx_json *j, int v);
void sx_json_null(sx_json *j);
/* key: "path", plus "path_hex" (the bytes in hex) when path is not valid UTF-8,
   so a file name that JSON can only show with U+FFFD can still be named exactly. */
void sx_json_path(sx_json *j, const char *path);

/* The document (NUL-terminated, malloc'd: free()), or NULL after an allocation failure
   (everything freed). */
char *sx_json_take(sx_json *j);

/* Strict UTF-8 (no overlongs, surrogates, > U+10FFFF): n when valid, else the
   offset of the first bad byte. */
size_t sx_utf8_valid_prefix(const char *s, size_t n);

#endif /* SX_BASE_JSON_H */

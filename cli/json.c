/* json.c - the JSON writer of every --json output (see json.h). */
#include <math.h>
#include <string.h>

#include "json.h"

void cli_json_init(cli_json *j, FILE *f, int spaced) {
    memset(j, 0, sizeof *j);
    j->f = f;
    j->spaced = spaced;
}

/* The separator before a value: none after a key, a comma after a sibling. */
static void before_value(cli_json *j) {
    if (j->after_key) {
        j->after_key = 0;
        return;
    }
    if (j->depth > 0 && j->items[j->depth - 1]++ > 0) fputs(j->spaced ? ", " : ",", j->f);
}

static void open_container(cli_json *j, int c) {
    before_value(j);
    fputc(c, j->f);
    if (j->depth < CLI_JSON_DEPTH) {
        j->items[j->depth] = 0;
        j->kinds[j->depth] = (char)c;
    }
    j->depth++;
}

void cli_json_object(cli_json *j) { open_container(j, '{'); }
void cli_json_array(cli_json *j) { open_container(j, '['); }

void cli_json_end(cli_json *j) {
    if (j->depth == 0) return;
    j->depth--;
    fputc(j->depth < CLI_JSON_DEPTH && j->kinds[j->depth] == '[' ? ']' : '}', j->f);
}

void cli_json_finish(cli_json *j) { fputc('\n', j->f); }

size_t cli_utf8_valid_prefix(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        unsigned min;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) len = 2, min = 0x80;
        else if (c >= 0xe0 && c <= 0xef) len = 3, min = 0x800;
        else if (c >= 0xf0 && c <= 0xf4) len = 4, min = 0x10000;
        else return i;
        if (i + len > n) return i;
        unsigned cp = c & (0x7f >> len);
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return i;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
        i += len;
    }
    return n;
}

void cli_json_write_string(FILE *f, const char *s) {
    fputc('"', f);
    size_t n = strlen(s);
    while (n) {
        size_t ok = cli_utf8_valid_prefix(s, n);
        for (size_t i = 0; i < ok; i++) {
            unsigned char ch = (unsigned char)s[i];
            if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
            else if (ch == '\n') fputs("\\n", f);
            else if (ch == '\t') fputs("\\t", f);
            else if (ch == '\r') fputs("\\r", f);
            else if (ch < 0x20 || ch == 0x7f) fprintf(f, "\\u%04x", ch);
            else fputc(ch, f);
        }
        if (ok == n) break;
        fputs("\\ufffd", f); /* one replacement per invalid byte */
        s += ok + 1;
        n -= ok + 1;
    }
    fputc('"', f);
}

void cli_json_key(cli_json *j, const char *key) {
    before_value(j);
    cli_json_write_string(j->f, key);
    fputs(j->spaced ? ": " : ":", j->f);
    j->after_key = 1;
}

void cli_json_string(cli_json *j, const char *s) {
    before_value(j);
    cli_json_write_string(j->f, s ? s : "");
}

void cli_json_number(cli_json *j, double v, const char *fmt) {
    before_value(j);
    if (isfinite(v)) fprintf(j->f, fmt, v);
    else fputs("null", j->f); /* JSON has no NaN: not measurable */
}

void cli_json_int(cli_json *j, long long v) {
    before_value(j);
    fprintf(j->f, "%lld", v);
}

void cli_json_uint(cli_json *j, uint64_t v) {
    before_value(j);
    fprintf(j->f, "%llu", (unsigned long long)v);
}

void cli_json_bool(cli_json *j, int v) {
    before_value(j);
    fputs(v ? "true" : "false", j->f);
}

/* base/json.c - the JSON writer (see json.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "siamidx_ext.h"
#include "base/json.h"

/* sx_strbuf_put of nothing does nothing (and never touches a NULL buffer). */
static void put(sx_strbuf *b, const char *p, size_t n) {
    if (n) sx_strbuf_put(b, p, n);
}

/* The separator before a value: none after a key, a comma after a sibling. */
static void before_value(sx_json *j) {
    if (j->after_key) {
        j->after_key = 0;
        return;
    }
    if (j->depth > 0 && j->depth <= SX_JSON_DEPTH && j->items[j->depth - 1]++ > 0)
        put(&j->out, ",", 1);
}

static void open_container(sx_json *j, char c) {
    before_value(j);
    put(&j->out, &c, 1);
    if (j->depth < SX_JSON_DEPTH) {
        j->items[j->depth] = 0;
        j->kinds[j->depth] = c;
    }
    j->depth++;
}

void sx_json_object(sx_json *j) { open_container(j, '{'); }
void sx_json_array(sx_json *j) { open_container(j, '['); }

void sx_json_end(sx_json *j) {
    if (j->depth == 0) return;
    j->depth--;
    char c = j->depth < SX_JSON_DEPTH && j->kinds[j->depth] == '[' ? ']' : '}';
    put(&j->out, &c, 1);
}

size_t sx_utf8_valid_prefix(const char *str, size_t n) {
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

size_t siamidx_utf8_valid_prefix(const char *s, size_t n) { return sx_utf8_valid_prefix(s, n); }

static void write_string(sx_strbuf *b, const char *s) {
    put(b, "\"", 1);
    size_t n = strlen(s);
    while (n) {
        size_t ok = sx_utf8_valid_prefix(s, n), run = 0;
        for (size_t i = 0; i < ok; i++) {
            unsigned char ch = (unsigned char)s[i];
            const char *esc = ch == '"' ? "\\\"" : ch == '\\' ? "\\\\" : ch == '\n' ? "\\n"
                            : ch == '\t' ? "\\t" : ch == '\r' ? "\\r" : NULL;
            if (!esc && ch >= 0x20 && ch != 0x7f) continue;
            put(b, s + run, i - run); /* the plain bytes before it */
            if (esc) put(b, esc, strlen(esc));
            else sx_strbuf_printf(b, "\\u%04x", ch);
            run = i + 1;
        }
        put(b, s + run, ok - run);
        if (ok == n) break;
        put(b, "\\ufffd", 6); /* one replacement per invalid byte */
        s += ok + 1;
        n -= ok + 1;
    }
    put(b, "\"", 1);
}

void sx_json_key(sx_json *j, const char *key) {
    before_value(j);
    write_string(&j->out, key);
    put(&j->out, ":", 1);
    j->after_key = 1;
}

void sx_json_string(sx_json *j, const char *s) {
    if (!s) {
        sx_json_null(j);
        return;
    }
    before_value(j);
    write_string(&j->out, s);
}

void sx_json_number(sx_json *j, double v, const char *fmt) {
    before_value(j);
    if (isfinite(v)) sx_strbuf_printf(&j->out, fmt, v);
    else put(&j->out, "null", 4); /* JSON has no NaN: not measurable */
}

void sx_json_int(sx_json *j, long long v) {
    before_value(j);
    sx_strbuf_printf(&j->out, "%lld", v);
}

void sx_json_uint(sx_json *j, uint64_t v) {
    before_value(j);
    sx_strbuf_printf(&j->out, "%llu", (unsigned long long)v);
}

void sx_json_bool(sx_json *j, int v) {
    before_value(j);
    put(&j->out, v ? "true" : "false", v ? 4 : 5);
}

void sx_json_null(sx_json *j) {
    before_value(j);
    put(&j->out, "null", 4);
}

void sx_json_path(sx_json *j, const char *path) {
    sx_json_key(j, "path");
    sx_json_string(j, path);
    size_t n = path ? strlen(path) : 0;
    if (!path || sx_utf8_valid_prefix(path, n) == n) return;
    static const char digits[] = "0123456789abcdef";
    sx_json_key(j, "path_hex");
    before_value(j);
    put(&j->out, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)path[i];
        char hex[2] = {digits[c >> 4], digits[c & 15]};
        put(&j->out, hex, 2);
    }
    put(&j->out, "\"", 1);
}

char *sx_json_take(sx_json *j) {
    sx_strbuf_put(&j->out, "", 1); /* the terminating NUL */
    if (j->out.oom) {
        free(j->out.buf);
        memset(&j->out, 0, sizeof j->out);
        return NULL;
    }
    char *s = j->out.buf;
    memset(&j->out, 0, sizeof j->out);
    return s;
}

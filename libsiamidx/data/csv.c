/*
 * csv.c - an RFC 4180 CSV reader, and UTF-8 validation.
 *
 * The reader streams (a pairs file may hold tens of millions of rows) and is
 * strict about what RFC 4180 forbids, because a silently mis-split row puts a
 * painting under the wrong artist. Accepted: quoted fields with "" escapes,
 * embedded commas and line breaks, CRLF / LF / CR line ends, a UTF-8 BOM, a
 * last line without a line end. Blank lines are skipped.
 *
 * A malformed record is reported (SIAMIDX_ERR_CSV, naming the line) and the
 * reader resynchronises at the next line, so callers may report and go on.
 * A read error is SIAMIDX_ERR_IO and ends the input.
 */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/csv.h"
#include "base/error.h"

#define CSV_CHUNK 65536
#define CSV_MAX_RECORD (1u << 20) /* bytes of field data in one record */

struct sx_csv {
    FILE *file;      /* NULL when reading from memory */
    char *name;      /* for messages */
    const char *mem; /* memory input, or NULL */
    char chunk[CSV_CHUNK];
    const char *in; /* current input window: chunk or mem */
    size_t in_len, in_pos;
    int at_eof, io_failed;
    int over_limit;   /* the last reserve() failed for CSV_MAX_RECORD, not memory */
    long line;        /* line of the next unread character (1-based) */
    long record_line; /* line where the last record started */
    char *buf;        /* unescaped field data, each field NUL-terminated */
    size_t buf_len, buf_cap;
    size_t *starts; /* field offsets into buf */
    char **fields;
    size_t n_fields, cap_fields;
};

/* ---- input -------------------------------------------------------------------- */

static int refill(sx_csv *csv) {
    if (csv->at_eof) return 0;
    if (!csv->file) {
        csv->at_eof = 1;
        return 0;
    }
    size_t n = fread(csv->chunk, 1, sizeof csv->chunk, csv->file);
    if (n == 0) {
        if (ferror(csv->file)) csv->io_failed = errno ? errno : EIO;
        csv->at_eof = 1;
        return 0;
    }
    csv->in = csv->chunk;
    csv->in_len = n;
    csv->in_pos = 0;
    return 1;
}

static int peek(sx_csv *csv) {
    if (csv->in_pos == csv->in_len && !refill(csv)) return EOF;
    return (unsigned char)csv->in[csv->in_pos];
}

static int next(sx_csv *csv) {
    int c = peek(csv);
    if (c != EOF) csv->in_pos++;
    return c;
}

static int is_line_end(int c) { return c == '\n' || c == '\r'; }

/* Consumes one line end (CRLF, LF or CR) whose first byte was just read. */
static void finish_line_end(sx_csv *csv, int c) {
    if (c == '\r' && peek(csv) == '\n') next(csv);
    csv->line++;
}

/* Drops the rest of the current physical line, to resynchronise after an error. */
static void skip_line(sx_csv *csv) {
    for (;;) {
        int c = next(csv);
        if (c == EOF) return;
        if (is_line_end(c)) {
            finish_line_end(csv, c);
            return;
        }
    }
}

/* ---- output buffer ------------------------------------------------------------ */

/* Makes room for n more bytes; -1 when the record would pass the limit or memory ran out. */
static int reserve(sx_csv *csv, size_t n) {
    if (csv->buf_len + n <= csv->buf_cap) return 0;
    if (csv->buf_len + n > CSV_MAX_RECORD) {
        csv->over_limit = 1;
        return -1;
    }
    size_t cap = csv->buf_cap ? csv->buf_cap : 256;
    while (cap < csv->buf_len + n)
        cap *= 2;
    char *p = realloc(csv->buf, cap);
    if (!p) return -1;
    csv->buf = p;
    csv->buf_cap = cap;
    return 0;
}

static int append(sx_csv *csv, char c) {
    if (reserve(csv, 1)) return -1;
    csv->buf[csv->buf_len++] = c;
    return 0;
}

/* Bytes that end a run of ordinary field content, outside and inside quotes. */
static const unsigned char stop_plain[256] = {
    [0] = 1, [','] = 1, ['\n'] = 1, ['\r'] = 1, ['"'] = 1};
static const unsigned char stop_quoted[256] = {[0] = 1, ['\n'] = 1, ['\r'] = 1, ['"'] = 1};

/* Copies the run of ordinary bytes at the read position (up to the end of the
   input window) in one go: the per-byte path only sees the special bytes. */
static int take_run(sx_csv *csv, const unsigned char *stop) {
    const char *p = csv->in + csv->in_pos, *end = csv->in + csv->in_len, *q = p;
    while (q < end && !stop[(unsigned char)*q])
        q++;
    size_t n = (size_t)(q - p);
    if (n == 0) return 0;
    if (reserve(csv, n)) return -1;
    memcpy(csv->buf + csv->buf_len, p, n);
    csv->buf_len += n;
    csv->in_pos += n;
    return 0;
}

static int end_field(sx_csv *csv, size_t start) {
    if (append(csv, 0)) return -1;
    if (csv->n_fields == csv->cap_fields) {
        size_t cap = csv->cap_fields ? csv->cap_fields * 2 : 16;
        size_t *s = realloc(csv->starts, cap * sizeof *s);
        if (!s) return -1;
        csv->starts = s;
        char **f = realloc(csv->fields, cap * sizeof *f);
        if (!f) return -1;
        csv->fields = f;
        csv->cap_fields = cap;
    }
    csv->starts[csv->n_fields++] = start;
    return 0;
}

/* ---- parsing ------------------------------------------------------------------ */

static siamidx_status bad_record(sx_csv *csv, siamidx_error *err, int resync, const char *why) {
    if (resync) skip_line(csv);
    return sx_fail(err, SIAMIDX_ERR_CSV, "%s: line %ld: %s", csv->name, csv->record_line, why);
}

static siamidx_status too_long(sx_csv *csv, siamidx_error *err) {
    if (!csv->over_limit)
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "%s: line %ld: out of memory", csv->name,
                       csv->record_line);
    csv->over_limit = 0;
    return bad_record(csv, err, 1, "record longer than 1 MiB");
}

/* Reads a quoted field; the opening quote is consumed. Returns 0 or an error. */
static siamidx_status read_quoted(sx_csv *csv, siamidx_error *err) {
    long opened = csv->line;
    for (;;) {
        if (take_run(csv, stop_quoted)) return too_long(csv, err);
        int c = next(csv);
        if (c == EOF) {
            char why[96];
            snprintf(why, sizeof why, "unterminated quoted field (opened on line %ld)", opened);
            return bad_record(csv, err, 0, why);
        }
        if (c == 0) return bad_record(csv, err, 1, "NUL byte in a field");
        if (c == '"') {
            if (peek(csv) != '"') return SIAMIDX_OK;
            next(csv);
        }
        if (append(csv, (char)c)) return too_long(csv, err);
        if (c == '\n' || (c == '\r' && peek(csv) != '\n')) csv->line++;
    }
}

/* Reads one record's fields. *blank is set for an empty line. */
static siamidx_status read_record(sx_csv *csv, int *blank, siamidx_error *err) {
    *blank = 0;
    for (;;) {
        size_t start = csv->buf_len;
        int quoted = peek(csv) == '"';
        if (quoted) {
            next(csv);
            siamidx_status st = read_quoted(csv, err);
            if (st) return st;
        } else {
            for (;;) {
                if (take_run(csv, stop_plain)) return too_long(csv, err);
                int c = peek(csv); /* a stop byte, or the start of the next window */
                if (c == ',' || c == EOF || is_line_end(c)) break;
                if (c == '"') return bad_record(csv, err, 1, "quote inside an unquoted field");
                if (c == 0) return bad_record(csv, err, 1, "NUL byte in a field");
            }
        }
        if (end_field(csv, start)) return too_long(csv, err);
        int c = next(csv);
        if (c == ',') continue;
        if (c == EOF || is_line_end(c)) {
            if (c != EOF) finish_line_end(csv, c);
            *blank = !quoted && csv->n_fields == 1 && csv->buf_len == 1;
            return SIAMIDX_OK;
        }
        return bad_record(csv, err, 1, "unexpected character after a closing quote");
    }
}

siamidx_status sx_csv_next(sx_csv *csv, char ***fields, size_t *n, siamidx_error *err) {
    *fields = NULL;
    *n = 0;
    for (;;) {
        csv->n_fields = 0;
        csv->buf_len = 0;
        csv->record_line = csv->line;
        if (peek(csv) == EOF) break;
        int blank;
        siamidx_status st = read_record(csv, &blank, err);
        if (csv->io_failed) break; /* whatever was read last is not to be trusted */
        if (st) return st;
        if (blank) continue;
        for (size_t i = 0; i < csv->n_fields; i++)
            csv->fields[i] = csv->buf + csv->starts[i];
        *fields = csv->fields;
        *n = csv->n_fields;
        return SIAMIDX_OK;
    }
    if (csv->io_failed)
        return sx_fail(err, SIAMIDX_ERR_IO, "%s: read error near line %ld: %s", csv->name,
                       csv->line, strerror(csv->io_failed));
    return SIAMIDX_OK;
}

long sx_csv_line(const sx_csv *csv) { return csv->record_line; }
const char *sx_csv_name(const sx_csv *csv) { return csv->name; }

/* ---- opening ------------------------------------------------------------------ */

static siamidx_status csv_new(const char *name, sx_csv **out, siamidx_error *err) {
    sx_csv *csv = calloc(1, sizeof *csv);
    if (csv) csv->name = strdup(name);
    if (!csv || !csv->name) {
        free(csv);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "%s: out of memory", name);
    }
    csv->line = 1;
    *out = csv;
    return SIAMIDX_OK;
}

static void skip_bom(sx_csv *csv) {
    static const char bom[3] = {(char)0xEF, (char)0xBB, (char)0xBF};
    if (peek(csv) == EOF) return;
    /* The first chunk holds at least 3 bytes unless the whole input is shorter. */
    if (csv->in_len - csv->in_pos >= 3 && !memcmp(csv->in + csv->in_pos, bom, 3)) csv->in_pos += 3;
}

siamidx_status sx_csv_open(const char *path, sx_csv **out, siamidx_error *err) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return sx_fail(err, SIAMIDX_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    sx_csv *csv = NULL;
    siamidx_status st = csv_new(path, &csv, err);
    if (st) {
        fclose(f);
        return st;
    }
    csv->file = f;
    skip_bom(csv);
    if (csv->io_failed) {
        st = sx_fail(err, SIAMIDX_ERR_IO, "%s: cannot read: %s", path, strerror(csv->io_failed));
        sx_csv_close(csv);
        return st;
    }
    *out = csv;
    return SIAMIDX_OK;
}

siamidx_status sx_csv_open_memory(const char *data, size_t len, const char *name, sx_csv **out,
                                  siamidx_error *err) {
    *out = NULL;
    sx_csv *csv = NULL;
    siamidx_status st = csv_new(name ? name : "<memory>", &csv, err);
    if (st) return st;
    csv->in = data;
    csv->in_len = len;
    skip_bom(csv);
    *out = csv;
    return SIAMIDX_OK;
}

void sx_csv_close(sx_csv *csv) {
    if (!csv) return;
    if (csv->file) fclose(csv->file);
    free(csv->name);
    free(csv->buf);
    free(csv->starts);
    free(csv->fields);
    free(csv);
}

/* ---- UTF-8 -------------------------------------------------------------------- */

/*
 * Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above
 * U+10FFFF. Returns n when valid, else the offset of the first bad byte.
 */
size_t sx_utf8_check(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
        if (c >= 0xC2 && c <= 0xDF)
            len = 2;
        else if (c == 0xE0)
            len = 3, lo = 0xA0;
        else if (c == 0xED)
            len = 3, hi = 0x9F; /* excludes surrogates */
        else if (c >= 0xE1 && c <= 0xEF)
            len = 3;
        else if (c == 0xF0)
            len = 4, lo = 0x90;
        else if (c >= 0xF1 && c <= 0xF3)
            len = 4;
        else if (c == 0xF4)
            len = 4, hi = 0x8F;
        else
            return i;
        if (n - i < len || p[i + 1] < lo || p[i + 1] > hi) return i;
        for (size_t k = 2; k < len; k++)
            if ((p[i + k] & 0xC0) != 0x80) return i;
        i += len;
    }
    return n;
}

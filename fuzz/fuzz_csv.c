/*
 * fuzz_csv.c - the RFC 4180 CSV reader, memory against file.
 *
 * Internal functions used (module headers; csv.c):
 *   sx_csv_open, sx_csv_open_memory, sx_csv_next, sx_csv_line, sx_csv_close,
 *   sx_utf8_check
 *
 * The file reader streams 64 KiB chunks, the memory reader sees one window:
 * the same bytes must give the same records, statuses and line numbers. The
 * input is placed after one long line of padding, so that a chunk boundary
 * falls inside it, at an offset the input's first byte chooses.
 * sx_utf8_check is checked against a byte-at-a-time reference as well.
 */
#include "fuzz_util.h"
#include "data/csv.h"

#define CHUNK 65536 /* csv.c's CSV_CHUNK */
#define MAX_RECORDS 4096

/* One record as the reader returned it, flattened: status, line, fields. */
typedef struct rec {
    siamidx_status status;
    long line;
    size_t n;
    char *bytes; /* fields, each NUL-terminated */
    size_t len;
} rec;

static size_t read_all(sx_csv *csv, rec *out) {
    size_t k = 0;
    while (k < MAX_RECORDS) {
        char **f;
        size_t n;
        siamidx_error err;
        siamidx_status s = sx_csv_next(csv, &f, &n, &err);
        rec *r = &out[k++];
        memset(r, 0, sizeof *r);
        r->status = s;
        r->line = sx_csv_line(csv);
        if (s == SIAMIDX_OK) {
            FUZZ_CHECK(n == 0 || f != NULL, "no fields array");
            r->n = n;
            for (size_t i = 0; i < n; i++) r->len += strlen(f[i]) + 1;
            r->bytes = malloc(r->len + 1);
            if (!r->bytes) abort();
            size_t o = 0;
            for (size_t i = 0; i < n; i++) {
                size_t l = strlen(f[i]);
                memcpy(r->bytes + o, f[i], l + 1);
                o += l + 1;
            }
            if (n == 0) break; /* end of input */
        } else {
            FUZZ_CHECK(s == SIAMIDX_ERR_CSV, "status %d: %s", s, err.message);
            FUZZ_CHECK(strstr(err.message, "line ") != NULL, "message names no line: %s", err.message);
        }
    }
    return k;
}

/* Reference UTF-8 check: decode code points and reject what RFC 3629 forbids. */
static size_t utf8_ref(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i], len, cp;
        if (c < 0x80) { i++; continue; }
        if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F;
        else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F;
        else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07;
        else return i;
        if (n - i < len) return i;
        for (unsigned k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        unsigned min = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += len;
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static fx_file file;
    static rec a[MAX_RECORDS], b[MAX_RECORDS];
    FUZZ_CHECK(sx_utf8_check((const char *)data, size) == utf8_ref(data, size),
               "utf8_check %zu, reference %zu", sx_utf8_check((const char *)data, size),
               utf8_ref(data, size));
    if (size == 0) return 0;
    /* A padding record (one field, copied in one run) so that the chunk
       boundary lands inside the input: after byte 1 + data[0] * 131 % size. */
    size_t pad = CHUNK - 1 - (data[0] * 131u) % (size < CHUNK ? size : CHUNK - 1);
    size_t total = pad + size;
    char *buf = malloc(total);
    if (!buf) abort();
    memset(buf, 'p', pad - 1);
    buf[pad - 1] = '\n';
    memcpy(buf + pad, data, size);

    sx_csv *mem = NULL, *fil = NULL;
    siamidx_error err;
    FUZZ_CHECK(sx_csv_open_memory(buf, total, "mem", &mem, &err) == SIAMIDX_OK, "%s", err.message);
    FUZZ_CHECK(sx_csv_open(fx_file_write(&file, "fuzz_csv", buf, total), &fil, &err) == SIAMIDX_OK,
               "%s", err.message);
    size_t na = read_all(mem, a), nb = read_all(fil, b);
    FUZZ_CHECK(na == nb, "memory reader gave %zu results, file reader %zu", na, nb);
    for (size_t i = 0; i < na; i++) {
        FUZZ_CHECK(a[i].status == b[i].status && a[i].line == b[i].line && a[i].n == b[i].n &&
                       a[i].len == b[i].len && (!a[i].len || !memcmp(a[i].bytes, b[i].bytes, a[i].len)),
                   "result %zu differs: status %d/%d line %ld/%ld fields %zu/%zu", i, a[i].status,
                   b[i].status, a[i].line, b[i].line, a[i].n, b[i].n);
        free(a[i].bytes);
        free(b[i].bytes);
    }
    sx_csv_close(mem);
    sx_csv_close(fil);
    free(buf);
    return 0;
}

/*
 * npy.c - the .npy format: magic "\x93NUMPY", version, header length (2 bytes
 * in 1.0, 4 in 2.0/3.0), then a Python dict literal such as
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 512), }
 * padded with spaces and a newline, then the raw data.
 */
#include "npy.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *why, size_t len, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, len, fmt, ap);
    va_end(ap);
    return -1;
}

/* The text after 'key': in the header dict, or NULL. */
static const char *dict_value(const char *hdr, const char *key) {
    char quoted[32];
    snprintf(quoted, sizeof quoted, "'%s'", key);
    const char *p = strstr(hdr, quoted);
    if (!p) return NULL;
    p += strlen(quoted);
    while (isspace((unsigned char)*p)) p++;
    if (*p != ':') return NULL;
    p++;
    while (isspace((unsigned char)*p)) p++;
    return p;
}

/* Parses "(3, 224, 224)" or "(5,)" or "()". */
static int parse_shape(const char *p, npy_array *a) {
    if (*p != '(') return -1;
    p++;
    a->ndim = 0;
    for (;;) {
        while (isspace((unsigned char)*p)) p++;
        if (*p == ')') return 0;
        if (!isdigit((unsigned char)*p) || a->ndim == NPY_MAX_DIMS) return -1;
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (errno || v < 0) return -1;
        a->shape[a->ndim++] = v;
        p = end;
        while (isspace((unsigned char)*p)) p++;
        if (*p == ',') p++;
        else if (*p != ')') return -1;
    }
}

static int parse_header(const char *path, const char *hdr, npy_array *a, char *why, size_t len) {
    const char *d = dict_value(hdr, "descr");
    if (!d) return fail(why, len, "%s: npy header has no 'descr'", path);
    if (strncmp(d, "'<f4'", 5) != 0) {
        char got[16] = {0};
        for (int i = 0; i < 15 && d[i] && d[i] != ',' && d[i] != '}'; i++) got[i] = d[i];
        return fail(why, len, "%s: dtype %s is not little-endian float32 ('<f4')", path, got);
    }
    const char *f = dict_value(hdr, "fortran_order");
    if (!f) return fail(why, len, "%s: npy header has no 'fortran_order'", path);
    if (strncmp(f, "False", 5) != 0)
        return fail(why, len, "%s: Fortran-ordered arrays are not supported (save C order)", path);
    const char *s = dict_value(hdr, "shape");
    if (!s || parse_shape(s, a) != 0)
        return fail(why, len, "%s: npy header has no valid 'shape'", path);
    return 0;
}

int npy_read_f32(const char *path, npy_array *out, char *why, size_t len) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) return fail(why, len, "%s: %s", path, strerror(errno));
    unsigned char pre[12];
    char *hdr = NULL;
    int rc = -1;
    size_t got = fread(pre, 1, 10, f);
    if (got < 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        fail(why, len, "%s: not a .npy file (bad magic)", path);
        goto done;
    }
    unsigned major = pre[6];
    size_t hlen, hstart;
    if (major == 1) {
        hlen = pre[8] | (size_t)pre[9] << 8;
        hstart = 10;
    } else if (major == 2 || major == 3) {
        if (fread(pre + 10, 1, 2, f) != 2) {
            fail(why, len, "%s: truncated npy header", path);
            goto done;
        }
        hlen = pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
        hstart = 12;
    } else {
        fail(why, len, "%s: unsupported npy version %u.%u", path, major, pre[7]);
        goto done;
    }
    if (hlen > (1u << 24) || !(hdr = malloc(hlen + 1)) || fread(hdr, 1, hlen, f) != hlen) {
        fail(why, len, "%s: truncated or oversized npy header (%zu bytes at offset %zu)", path,
             hlen, hstart);
        goto done;
    }
    hdr[hlen] = '\0';
    if (parse_header(path, hdr, out, why, len) != 0) goto done;
    size_t count = 1;
    for (int i = 0; i < out->ndim; i++) {
        if (out->shape[i] && count > SIZE_MAX / 4 / (size_t)out->shape[i]) {
            fail(why, len, "%s: shape too large", path);
            goto done;
        }
        count *= (size_t)out->shape[i];
    }
    out->data = malloc(count ? count * sizeof(float) : 1);
    if (!out->data) {
        fail(why, len, "%s: out of memory for %zu floats", path, count);
        goto done;
    }
    got = fread(out->data, sizeof(float), count, f);
    if (got != count) {
        fail(why, len, "%s: data truncated: %zu of %zu floats after the header at offset %zu",
             path, got, count, hstart + hlen);
        goto done;
    }
    if (fgetc(f) != EOF) {
        fail(why, len, "%s: %zu floats expected from the shape but the file is longer", path,
             count);
        goto done;
    }
    rc = 0;
done:
    if (rc != 0) {
        free(out->data);
        out->data = NULL;
    }
    free(hdr);
    fclose(f);
    return rc;
}

int npy_write_f32(FILE *f, const float *data, int ndim, const int64_t *shape) {
    char dict[256], shp[160] = "";
    size_t count = 1, used = 0;
    for (int i = 0; i < ndim; i++) {
        used += (size_t)snprintf(shp + used, sizeof shp - used, "%lld,%s", (long long)shape[i],
                                 i + 1 < ndim ? " " : "");
        count *= (size_t)shape[i];
    }
    if (ndim > 1) shp[used - 1] = '\0'; /* "(2, 3)" but "(5,)" */
    int n = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }",
                     shp);
    /* Pad so that magic + header is a multiple of 64 bytes, ending in '\n'. */
    size_t total = (10 + (size_t)n + 1 + 63) / 64 * 64, hlen = total - 10;
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xff),
                             (unsigned char)(hlen >> 8)};
    if (fwrite(pre, 1, 10, f) != 10 || fwrite(dict, 1, (size_t)n, f) != (size_t)n) return -1;
    for (size_t i = (size_t)n; i + 1 < hlen; i++)
        if (fputc(' ', f) == EOF) return -1;
    if (fputc('\n', f) == EOF) return -1;
    if (count && fwrite(data, sizeof(float), count, f) != count) return -1;
    return 0;
}

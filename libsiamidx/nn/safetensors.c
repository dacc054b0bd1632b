/*
 * safetensors.c - reading and writing safetensors files.
 *
 * Layout: 8-byte little-endian header length N, N bytes of JSON, then the
 * data section. The JSON maps tensor names to {dtype, shape, data_offsets}
 * plus an optional "__metadata__" string map. The header is attacker-
 * controlled input, so it is parsed by a small strict parser that accepts
 * exactly that grammar and reports the byte offset of anything else.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nn/safetensors.h"
#include "base/error.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c copies little-endian tensor data as is; port it for big-endian hosts"
#endif

/* The reference implementation refuses headers over 100 MB; so do we. */
#define SX_MAX_HEADER (100u * 1024u * 1024u)

/* ---- half precision ------------------------------------------------------ */

static float bits_to_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint32_t f32_to_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

float sx_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0) {
        float f = (float)man * 0x1p-24f; /* zero or subnormal: exact */
        return sign ? -f : f;
    }
    if (exp == 31) return bits_to_f32(sign | 0x7f800000u | (man << 13));
    return bits_to_f32(sign | ((exp + 112) << 23) | (man << 13));
}

float sx_bf16_to_f32(uint16_t h) { return bits_to_f32((uint32_t)h << 16); }

/* Rounds the low `shift` bits of q<<shift|rem away, to nearest even. */
static uint32_t round_shift(uint32_t m, int shift) {
    uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) q++;
    return q;
}

uint16_t sx_f32_to_f16(float f) {
    uint32_t x = f32_to_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t a = x & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00 | (uint16_t)((a >> 13) & 0x3ff); /* NaN */
    if (a >= 0x477ff000u) return sign | 0x7c00; /* 65520 and up round to infinity */
    if (a >= 0x38800000u) /* normal half: rebias the exponent, carry may bump it */
        return sign | (uint16_t)round_shift(a - 0x38000000u, 13);
    if (a < 0x33000000u) return sign; /* at most 2^-25: rounds to (even) zero */
    uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
    return sign | (uint16_t)round_shift(m, (int)(126 - e)); /* subnormal half */
}

uint16_t sx_f32_to_bf16(float f) {
    uint32_t x = f32_to_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

const char *sx_dtype_name(sx_dtype dtype) {
    switch (dtype) {
    case SX_F32: return "F32";
    case SX_F16: return "F16";
    case SX_BF16: return "BF16";
    }
    return "?";
}

size_t sx_dtype_size(sx_dtype dtype) { return dtype == SX_F32 ? 4 : 2; }

/* ---- strict JSON ---------------------------------------------------------- */

typedef struct json_in {
    const char *s;
    size_t n, pos;
    size_t base; /* file offset of s[0], for messages */
    const char *path;
    siamidx_error *err;
} json_in;

static siamidx_status json_fail(json_in *j, const char *what) {
    return sx_fail(j->err, SIAMIDX_ERR_MODEL_FORMAT, "%s: bad safetensors header at byte %zu: %s",
                   j->path, j->base + j->pos, what);
}

static void json_ws(json_in *j) {
    while (j->pos < j->n && (j->s[j->pos] == ' ' || j->s[j->pos] == '\t' ||
                             j->s[j->pos] == '\n' || j->s[j->pos] == '\r'))
        j->pos++;
}

static int json_peek(json_in *j) {
    json_ws(j);
    return j->pos < j->n ? (unsigned char)j->s[j->pos] : -1;
}

static siamidx_status json_expect(json_in *j, char c) {
    if (json_peek(j) != (unsigned char)c) {
        char what[32];
        snprintf(what, sizeof what, "expected '%c'", c);
        return json_fail(j, what);
    }
    j->pos++;
    return SIAMIDX_OK;
}

static int hex4(const char *p, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0'
              : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return 0;
        v = v * 16 + (uint32_t)d;
    }
    *out = v;
    return 1;
}

static size_t utf8_put(char *o, uint32_t cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Decodes a \uXXXX escape (j->pos at 'u'), joining surrogate pairs. */
static siamidx_status json_unicode(json_in *j, uint32_t *cp) {
    if (j->pos + 5 > j->n || !hex4(j->s + j->pos + 1, cp)) return json_fail(j, "bad \\u escape");
    j->pos += 5;
    if (*cp >= 0xdc00 && *cp <= 0xdfff) return json_fail(j, "lone low surrogate");
    if (*cp < 0xd800 || *cp > 0xdbff) return SIAMIDX_OK;
    uint32_t lo;
    if (j->pos + 6 > j->n || j->s[j->pos] != '\\' || j->s[j->pos + 1] != 'u' ||
        !hex4(j->s + j->pos + 2, &lo) || lo < 0xdc00 || lo > 0xdfff)
        return json_fail(j, "unpaired high surrogate");
    j->pos += 6;
    *cp = 0x10000 + ((*cp - 0xd800) << 10) + (lo - 0xdc00);
    return SIAMIDX_OK;
}

/* Parses a string into a new NUL-terminated buffer (NULs inside are refused). */
static siamidx_status json_string(json_in *j, char **out) {
    *out = NULL;
    siamidx_status s = json_expect(j, '"');
    if (s) return s;
    size_t start = j->pos;
    /* Escapes only shrink, so the raw length bounds the decoded length. */
    size_t end = start;
    while (end < j->n && j->s[end] != '"') end += (j->s[end] == '\\') ? 2 : 1;
    if (end >= j->n) return json_fail(j, "unterminated string");
    char *buf = malloc(end - start + 1);
    if (!buf) return sx_fail(j->err, SIAMIDX_ERR_NO_MEMORY, "%s: out of memory", j->path);
    size_t o = 0;
    while (j->s[j->pos] != '"') {
        unsigned char c = (unsigned char)j->s[j->pos];
        if (c < 0x20) { free(buf); return json_fail(j, "control character in string"); }
        if (c != '\\') { buf[o++] = (char)c; j->pos++; continue; }
        j->pos++;
        char e = j->s[j->pos];
        const char *simple = strchr("\"\\/bfnrt", e);
        if (e && simple) {
            static const char decoded[] = "\"\\/\b\f\n\r\t";
            buf[o++] = decoded[simple - "\"\\/bfnrt"];
            j->pos++;
        } else if (e == 'u') {
            uint32_t cp = 0;
            if ((s = json_unicode(j, &cp)) != SIAMIDX_OK) { free(buf); return s; }
            if (cp == 0) { free(buf); return json_fail(j, "\\u0000 in string"); }
            o += utf8_put(buf + o, cp);
        } else {
            free(buf);
            return json_fail(j, "bad escape in string");
        }
    }
    j->pos++;
    buf[o] = 0;
    *out = buf;
    return SIAMIDX_OK;
}

static siamidx_status json_uint(json_in *j, uint64_t *out) {
    json_ws(j);
    size_t p = j->pos;
    if (p >= j->n || j->s[p] < '0' || j->s[p] > '9') return json_fail(j, "expected an integer");
    if (j->s[p] == '0' && p + 1 < j->n && j->s[p + 1] >= '0' && j->s[p + 1] <= '9')
        return json_fail(j, "leading zero in integer");
    uint64_t v = 0;
    while (p < j->n && j->s[p] >= '0' && j->s[p] <= '9') {
        if (v > (UINT64_MAX - 9) / 10) return json_fail(j, "integer too large");
        v = v * 10 + (uint64_t)(j->s[p++] - '0');
    }
    if (p < j->n && (j->s[p] == '.' || j->s[p] == 'e' || j->s[p] == 'E'))
        return json_fail(j, "expected an integer, found a fraction");
    j->pos = p;
    *out = v;
    return SIAMIDX_OK;
}

static siamidx_status json_uint_array(json_in *j, uint64_t *vals, int max, int *count) {
    siamidx_status s = json_expect(j, '[');
    if (s) return s;
    *count = 0;
    if (json_peek(j) == ']') { j->pos++; return SIAMIDX_OK; }
    for (;;) {
        if (*count == max) return json_fail(j, "too many array elements");
        if ((s = json_uint(j, &vals[(*count)++])) != SIAMIDX_OK) return s;
        int c = json_peek(j);
        j->pos++;
        if (c == ']') return SIAMIDX_OK;
        if (c != ',') { j->pos--; return json_fail(j, "expected ',' or ']'"); }
    }
}

/* Iterates an object: calls `member` with each key; handles braces and commas. */
typedef siamidx_status (*json_member_fn)(json_in *j, char *key, size_t key_offset, void *ctx);

static siamidx_status json_object(json_in *j, json_member_fn member, void *ctx) {
    siamidx_status s = json_expect(j, '{');
    if (s) return s;
    if (json_peek(j) == '}') { j->pos++; return SIAMIDX_OK; }
    for (;;) {
        char *key;
        json_ws(j);
        size_t key_offset = j->base + j->pos;
        if ((s = json_string(j, &key)) != SIAMIDX_OK) return s;
        if ((s = json_expect(j, ':')) != SIAMIDX_OK) { free(key); return s; }
        if ((s = member(j, key, key_offset, ctx)) != SIAMIDX_OK) return s; /* owns key */
        int c = json_peek(j);
        j->pos++;
        if (c == '}') return SIAMIDX_OK;
        if (c != ',') { j->pos--; return json_fail(j, "expected ',' or '}'"); }
    }
}

/* ---- header ------------------------------------------------------------------ */

static int grow(void **arr, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 1;
    size_t n = *cap ? *cap * 2 : 16;
    while (n < need) n *= 2;
    void *p = realloc(*arr, n * elem);
    if (!p) return 0;
    *arr = p;
    *cap = n;
    return 1;
}

typedef struct header_ctx {
    sx_safetensors *st;
    size_t tensor_cap, meta_cap;
    int seen_meta;
    /* the tensor being parsed */
    sx_tensor_info *cur;
    int has_dtype, has_shape, has_offsets;
} header_ctx;

static siamidx_status meta_member(json_in *j, char *key, size_t key_offset, void *vctx) {
    (void)key_offset;
    header_ctx *ctx = vctx;
    sx_safetensors *st = ctx->st;
    if (!grow((void **)&st->meta, &ctx->meta_cap, st->n_meta + 1, sizeof *st->meta)) {
        free(key);
        return sx_fail(j->err, SIAMIDX_ERR_NO_MEMORY, "%s: out of memory", j->path);
    }
    if (json_peek(j) != '"') {
        free(key);
        return json_fail(j, "__metadata__ values must be strings");
    }
    char *value;
    siamidx_status s = json_string(j, &value);
    if (s) {
        free(key);
        return s;
    }
    st->meta[st->n_meta].key = key;
    st->meta[st->n_meta].value = value;
    st->n_meta++;
    return SIAMIDX_OK;
}

static siamidx_status parse_dtype(json_in *j, sx_tensor_info *t) {
    char *name;
    siamidx_status s = json_string(j, &name);
    if (s) return s;
    if (!strcmp(name, "F32")) t->dtype = SX_F32;
    else if (!strcmp(name, "F16")) t->dtype = SX_F16;
    else if (!strcmp(name, "BF16")) t->dtype = SX_BF16;
    else {
        s = sx_fail(j->err, SIAMIDX_ERR_MODEL_FORMAT,
                    "%s: tensor '%s' has dtype %s; only F32, F16 and BF16 are supported",
                    j->path, t->name, name);
    }
    free(name);
    return s;
}

static siamidx_status tensor_field(json_in *j, char *key, size_t key_offset, void *vctx) {
    header_ctx *ctx = vctx;
    sx_tensor_info *t = ctx->cur;
    siamidx_status s;
    int *seen;
    if (!strcmp(key, "dtype")) seen = &ctx->has_dtype;
    else if (!strcmp(key, "shape")) seen = &ctx->has_shape;
    else if (!strcmp(key, "data_offsets")) seen = &ctx->has_offsets;
    else {
        s = sx_fail(j->err, SIAMIDX_ERR_MODEL_FORMAT,
                    "%s: bad safetensors header at byte %zu: tensor '%s' has unknown field '%s'",
                    j->path, key_offset, t->name, key);
        free(key);
        return s;
    }
    if (*seen) {
        s = sx_fail(j->err, SIAMIDX_ERR_MODEL_FORMAT,
                    "%s: bad safetensors header at byte %zu: tensor '%s' repeats field '%s'",
                    j->path, key_offset, t->name, key);
        free(key);
        return s;
    }
    *seen = 1;
    if (seen == &ctx->has_dtype) {
        s = parse_dtype(j, t);
    } else if (seen == &ctx->has_shape) {
        uint64_t dims[8];
        s = json_uint_array(j, dims, 8, &t->ndim);
        for (int i = 0; !s && i < t->ndim; i++) {
            if (dims[i] > ((uint64_t)1 << 40)) s = json_fail(j, "shape dimension too large");
            t->shape[i] = (int64_t)dims[i];
        }
    } else {
        uint64_t off[2];
        int count;
        s = json_uint_array(j, off, 2, &count);
        if (!s && count != 2) s = json_fail(j, "data_offsets must hold two integers");
        if (!s) { t->begin = off[0]; t->end = off[1]; }
    }
    free(key);
    return s;
}

static siamidx_status top_member(json_in *j, char *key, size_t key_offset, void *vctx) {
    header_ctx *ctx = vctx;
    sx_safetensors *st = ctx->st;
    if (!strcmp(key, "__metadata__")) {
        free(key);
        if (ctx->seen_meta) return json_fail(j, "__metadata__ appears twice");
        ctx->seen_meta = 1;
        if (json_peek(j) != '{') return json_fail(j, "__metadata__ must be an object of strings");
        return json_object(j, meta_member, ctx);
    }
    if (!grow((void **)&st->tensors, &ctx->tensor_cap, st->n_tensors + 1, sizeof *st->tensors)) {
        free(key);
        return sx_fail(j->err, SIAMIDX_ERR_NO_MEMORY, "%s: out of memory", j->path);
    }
    sx_tensor_info *t = &st->tensors[st->n_tensors++];
    memset(t, 0, sizeof *t);
    t->name = key;
    ctx->cur = t;
    ctx->has_dtype = ctx->has_shape = ctx->has_offsets = 0;
    if (json_peek(j) != '{') return json_fail(j, "tensor entry must be an object");
    siamidx_status s = json_object(j, tensor_field, ctx);
    if (s) return s;
    if (!ctx->has_dtype || !ctx->has_shape || !ctx->has_offsets)
        return sx_fail(j->err, SIAMIDX_ERR_MODEL_FORMAT,
                       "%s: bad safetensors header at byte %zu: tensor '%s' lacks %s", j->path,
                       key_offset, t->name,
                       !ctx->has_dtype ? "dtype" : !ctx->has_shape ? "shape" : "data_offsets");
    return SIAMIDX_OK;
}

/* ---- checks ---------------------------------------------------------------- */

int64_t sx_tensor_numel(const sx_tensor_info *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp(((const sx_tensor_info *)a)->name, ((const sx_tensor_info *)b)->name);
}

static int cmp_meta_key(const void *a, const void *b) {
    return strcmp(((const sx_meta_entry *)a)->key, ((const sx_meta_entry *)b)->key);
}

static int cmp_begin(const void *a, const void *b) {
    const sx_tensor_info *x = *(const sx_tensor_info *const *)a;
    const sx_tensor_info *y = *(const sx_tensor_info *const *)b;
    return (x->begin > y->begin) - (x->begin < y->begin);
}

/* Offsets inside the data section, sizes matching shape x dtype, no overlap. */
static siamidx_status check_tensors(sx_safetensors *st, const char *path, siamidx_error *err) {
    uint64_t data_size = st->map_size - st->data_offset;
    for (size_t i = 0; i < st->n_tensors; i++) {
        const sx_tensor_info *t = &st->tensors[i];
        uint64_t bytes = sx_dtype_size(t->dtype);
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] && bytes > UINT64_MAX / (uint64_t)t->shape[d])
                return sx_fail(err, SIAMIDX_ERR_MODEL_FORMAT,
                               "%s: tensor '%s': shape overflows 64 bits", path, t->name);
            bytes *= (uint64_t)t->shape[d];
        }
        if (t->end < t->begin || t->end > data_size)
            return sx_fail(err, SIAMIDX_ERR_MODEL_FORMAT,
                           "%s: tensor '%s': data_offsets [%llu, %llu] outside the %llu-byte "
                           "data section (file truncated?)",
                           path, t->name, (unsigned long long)t->begin,
                           (unsigned long long)t->end, (unsigned long long)data_size);
        if (t->end - t->begin != bytes)
            return sx_fail(err, SIAMIDX_ERR_MODEL_FORMAT,
                           "%s: tensor '%s': data_offsets span %llu bytes but shape x %s needs %llu",
                           path, t->name, (unsigned long long)(t->end - t->begin),
                           sx_dtype_name(t->dtype), (unsigned long long)bytes);
    }
    /* qsort and bsearch want a valid pointer even for 0 elements: a file with
       no tensors (or no metadata) has NULL arrays. */
    if (st->n_tensors) qsort(st->tensors, st->n_tensors, sizeof *st->tensors, cmp_tensor_name);
    for (size_t i = 1; i < st->n_tensors; i++)
        if (!strcmp(st->tensors[i].name, st->tensors[i - 1].name))
            return sx_fail(err, SIAMIDX_ERR_MODEL_FORMAT, "%s: tensor '%s' appears twice", path,
                           st->tensors[i].name);
    const sx_tensor_info **order = malloc((st->n_tensors + 1) * sizeof *order);
    if (!order) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "%s: out of memory", path);
    for (size_t i = 0; i < st->n_tensors; i++) order[i] = &st->tensors[i];
    qsort(order, st->n_tensors, sizeof *order, cmp_begin);
    siamidx_status s = SIAMIDX_OK;
    const sx_tensor_info *reach = NULL; /* the tensor ending last so far */
    for (size_t i = 0; i < st->n_tensors && !s; i++) {
        if (order[i]->end == order[i]->begin) continue; /* empty tensors occupy nothing */
        if (reach && order[i]->begin < reach->end)
            s = sx_fail(err, SIAMIDX_ERR_MODEL_FORMAT, "%s: tensors '%s' and '%s' overlap", path,
                        reach->name, order[i]->name);
        if (!reach || order[i]->end > reach->end) reach = order[i];
    }
    free(order);
    if (s) return s;
    if (st->n_meta) qsort(st->meta, st->n_meta, sizeof *st->meta, cmp_meta_key);
    for (size_t i = 1; i < st->n_meta; i++)
        if (!strcmp(st->meta[i].key, st->meta[i - 1].key))
            return sx_fail(err, SIAMIDX_ERR_MODEL_FORMAT, "%s: metadata key '%s' appears twice",
                           path, st->meta[i].key);
    return SIAMIDX_OK;
}

/* ---- open / close ------------------------------------------------------------- */

static siamidx_status parse_header(sx_safetensors *st, const char *path, siamidx_error *err) {
    json_in j = {(const char *)st->map + 8, st->data_offset - 8, 0, 8, path, err};
    header_ctx ctx = {0};
    ctx.st = st;
    if (json_peek(&j) != '{') return json_fail(&j, "header is not a JSON object");
    siamidx_status s = json_object(&j, top_member, &ctx);
    if (s) return s;
    json_ws(&j);
    if (j.pos != j.n) return json_fail(&j, "trailing bytes after the header object");
    return check_tensors(st, path, err);
}

/* A byte a JSON header can start with (the parser then says what is wrong). */
static int json_start(uint8_t c) { return c && strchr("{[ \t\r\n", c) != NULL; }

siamidx_status sx_safetensors_open(const char *path, sx_safetensors *st, siamidx_error *err) {
    memset(st, 0, sizeof *st);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sx_fail(err, SIAMIDX_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return sx_fail(err, SIAMIDX_ERR_IO, "%s: not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    if (size < 8) {
        close(fd);
        return sx_fail(err, SIAMIDX_ERR_MODEL_FORMAT,
                       "%s: not a safetensors file (%zu bytes, too short for a safetensors header)",
                       path, size);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return sx_fail(err, SIAMIDX_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
    st->map = map;
    st->map_size = size;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | st->map[i];
    /* A safetensors file starts with the header's length (8 bytes, little
       endian) and the JSON header: anything else (an image, a PyTorch
       checkpoint, text) is another kind of file, not a damaged model. */
    if (hlen > SX_MAX_HEADER || hlen < 2 || (size > 8 && !json_start(st->map[8]))) {
        sx_safetensors_close(st);
        return sx_fail(err, SIAMIDX_ERR_MODEL_FORMAT,
                       "%s: not a safetensors file (no header length and JSON header at byte 0)",
                       path);
    }
    if (hlen > size - 8) {
        sx_safetensors_close(st);
        return sx_fail(err, SIAMIDX_ERR_MODEL_FORMAT,
                       "%s: header length %llu at byte 0 does not fit a %zu-byte file", path,
                       (unsigned long long)hlen, size);
    }
    st->data_offset = 8 + (size_t)hlen;
    siamidx_status s = parse_header(st, path, err);
    if (s) sx_safetensors_close(st);
    return s;
}

void sx_safetensors_close(sx_safetensors *st) {
    if (!st) return;
    if (st->map) munmap((void *)st->map, st->map_size);
    for (size_t i = 0; i < st->n_tensors; i++) free(st->tensors[i].name);
    for (size_t i = 0; i < st->n_meta; i++) {
        free(st->meta[i].key);
        free(st->meta[i].value);
    }
    free(st->tensors);
    free(st->meta);
    memset(st, 0, sizeof *st);
}

const sx_tensor_info *sx_safetensors_find(const sx_safetensors *st, const char *name) {
    sx_tensor_info key = {0};
    key.name = (char *)name;
    if (!st->n_tensors) return NULL;
    return bsearch(&key, st->tensors, st->n_tensors, sizeof *st->tensors, cmp_tensor_name);
}

const char *sx_safetensors_meta(const sx_safetensors *st, const char *key) {
    sx_meta_entry k = {(char *)key, NULL};
    if (!st->n_meta) return NULL;
    const sx_meta_entry *e = bsearch(&k, st->meta, st->n_meta, sizeof *st->meta, cmp_meta_key);
    return e ? e->value : NULL;
}

void sx_safetensors_read_f32(const sx_safetensors *st, const sx_tensor_info *t, float *out) {
    const uint8_t *p = st->map + st->data_offset + t->begin;
    size_t n = (size_t)sx_tensor_numel(t);
    if (t->dtype == SX_F32) {
        memcpy(out, p, n * sizeof *out); /* little-endian host, checked above */
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint16_t h = (uint16_t)(p[2 * i] | p[2 * i + 1] << 8);
        out[i] = t->dtype == SX_F16 ? sx_f16_to_f32(h) : sx_bf16_to_f32(h);
    }
}

/* ---- writer ------------------------------------------------------------------- */

typedef struct strbuf {
    char *p;
    size_t len, cap;
    int oom;
} strbuf;

static void sb_put(strbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (!grow((void **)&b->p, &b->cap, b->len + n + 1, 1)) { b->oom = 1; return; }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_str(strbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* A JSON string escaped exactly as Python's json.dumps(ensure_ascii=False). */
static void sb_json_string(strbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        const char *esc = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\n' ? "\\n"
                        : c == '\r' ? "\\r" : c == '\t' ? "\\t" : c == '\b' ? "\\b"
                        : c == '\f' ? "\\f" : NULL;
        char u[8];
        if (!esc && c < 0x20) {
            snprintf(u, sizeof u, "\\u%04x", c);
            esc = u;
        }
        if (esc) sb_str(b, esc);
        else sb_put(b, (const char *)&c, 1);
    }
    sb_put(b, "\"", 1);
}

static siamidx_status build_header(strbuf *h, const sx_meta_entry *meta, size_t n_meta,
                                   const sx_tensor_out *tensors, size_t n, sx_dtype store_as) {
    sx_meta_entry *sorted = NULL;
    if (n_meta) {
        sorted = malloc(n_meta * sizeof *sorted);
        if (!sorted) return SIAMIDX_ERR_NO_MEMORY;
        memcpy(sorted, meta, n_meta * sizeof *sorted);
        qsort(sorted, n_meta, sizeof *sorted, cmp_meta_key);
    }
    sb_str(h, "{");
    if (n_meta) {
        sb_str(h, "\"__metadata__\":{");
        for (size_t i = 0; i < n_meta; i++) {
            if (i) sb_str(h, ",");
            sb_json_string(h, sorted[i].key);
            sb_str(h, ":");
            sb_json_string(h, sorted[i].value);
        }
        sb_str(h, "}");
    }
    free(sorted);
    uint64_t offset = 0;
    for (size_t i = 0; i < n; i++) {
        const sx_tensor_out *t = &tensors[i];
        uint64_t numel = 1;
        char num[64];
        if (n_meta || i) sb_str(h, ",");
        sb_json_string(h, t->name);
        sx_dtype dtype = t->raw ? t->raw_dtype : store_as;
        sb_str(h, ":{\"dtype\":");
        sb_json_string(h, sx_dtype_name(dtype));
        sb_str(h, ",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            snprintf(num, sizeof num, "%s%lld", d ? "," : "", (long long)t->shape[d]);
            sb_str(h, num);
            numel *= (uint64_t)t->shape[d];
        }
        uint64_t end = offset + numel * sx_dtype_size(dtype);
        snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)offset,
                 (unsigned long long)end);
        sb_str(h, num);
        offset = end;
    }
    sb_str(h, "}");
    while (!h->oom && (8 + h->len) % 8) sb_str(h, " "); /* data starts 8-byte aligned */
    return h->oom ? SIAMIDX_ERR_NO_MEMORY : SIAMIDX_OK;
}

static int write_tensor(FILE *f, const sx_tensor_out *t, sx_dtype store_as) {
    size_t numel = 1;
    for (int d = 0; d < t->ndim; d++) numel *= (size_t)t->shape[d];
    if (t->raw) {
        size_t bytes = numel * sx_dtype_size(t->raw_dtype);
        return fwrite(t->raw, 1, bytes, f) == bytes;
    }
    if (store_as == SX_F32) return fwrite(t->data, sizeof(float), numel, f) == numel;
    uint8_t buf[8192];
    size_t used = 0;
    for (size_t i = 0; i < numel; i++) {
        uint16_t h = store_as == SX_F16 ? sx_f32_to_f16(t->data[i]) : sx_f32_to_bf16(t->data[i]);
        buf[used++] = (uint8_t)h;
        buf[used++] = (uint8_t)(h >> 8);
        if (used == sizeof buf) {
            if (fwrite(buf, 1, used, f) != used) return 0;
            used = 0;
        }
    }
    return fwrite(buf, 1, used, f) == used;
}

siamidx_status sx_safetensors_write(const char *path, const sx_meta_entry *meta, size_t n_meta,
                                    const sx_tensor_out *tensors, size_t n, sx_dtype store_as,
                                    siamidx_error *err) {
    strbuf h = {0};
    if (build_header(&h, meta, n_meta, tensors, n, store_as) != SIAMIDX_OK) {
        free(h.p);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "%s: out of memory", path);
    }
    size_t tmp_len = strlen(path) + 32;
    char *tmp = malloc(tmp_len);
    if (!tmp) {
        free(h.p);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "%s: out of memory", path);
    }
    snprintf(tmp, tmp_len, "%s.tmp.%ld", path, (long)getpid());
    siamidx_status s = SIAMIDX_OK;
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        s = sx_fail(err, SIAMIDX_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        goto done;
    }
    uint8_t len_le[8];
    for (int i = 0; i < 8; i++) len_le[i] = (uint8_t)((uint64_t)h.len >> (8 * i));
    int ok = fwrite(len_le, 1, 8, f) == 8 && fwrite(h.p, 1, h.len, f) == h.len;
    for (size_t i = 0; ok && i < n; i++) ok = write_tensor(f, &tensors[i], store_as);
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int saved = errno;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        s = sx_fail(err, SIAMIDX_ERR_IO, "%s: cannot write: %s", path,
                    strerror(ok ? errno : saved));
        unlink(tmp);
    }
done:
    free(tmp);
    free(h.p);
    return s;
}

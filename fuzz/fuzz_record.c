/*
 * fuzz_record.c - decoding a record value of the LMDB store.
 *
 * Internal functions used (module headers; store.c):
 *   sx_record_decode, sx_record_embedding, sx_record
 *
 * A damaged data.mdb hands decode_record arbitrary bytes; it must refuse
 * them (SIAMIDX_ERR_INDEX_CORRUPT) or return a record whose strings and
 * embedding lie inside the value. The input is copied to a buffer of exactly
 * its size so that ASan sees any read past the value's end.
 */
#include "fuzz_util.h"
#include "store/store.h"

static int inside(const void *p, size_t n, const uint8_t *b, size_t len) {
    const uint8_t *q = p;
    return q >= b && q <= b + len && n <= (size_t)(b + len - q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *b = malloc(size ? size : 1);
    if (!b) abort();
    memcpy(b, data, size);
    sx_record r;
    siamidx_error err;
    siamidx_status s = sx_record_decode(b, size, 42, &r, &err);
    fx_say("record", s, err.message);
    if (s != SIAMIDX_OK) {
        FUZZ_CHECK(s == SIAMIDX_ERR_INDEX_CORRUPT, "status %d: %s", s, err.message);
        free(b);
        return 0;
    }
    FUZZ_CHECK(r.id == 42, "id %llu", (unsigned long long)r.id);
    const char *str[6] = {r.path, r.resolved, r.title, r.style, r.genre, r.date};
    for (int i = 0; i < 6; i++)
        FUZZ_CHECK(str[i] && inside(str[i], strlen(str[i]) + 1, b, size), "string %d outside", i);
    FUZZ_CHECK(inside(r.embedding, (size_t)r.dim * 4, b, size), "embedding outside");
    float *e = malloc((size_t)r.dim * sizeof *e + 1);
    if (!e) abort();
    sx_record_embedding(&r, e);
    free(e);
    free(b);
    return 0;
}

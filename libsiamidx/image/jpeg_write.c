/*
 * jpeg_write.c - baseline JPEG encoding with stb_image_write, alone in its
 * file: stb's bit writer shifts signed ints past their range (defined on
 * every compiler we use, undefined in ISO C), so the sanitizer build leaves
 * the shift check off for this file only (CMakeLists.txt).
 */
#include <stdlib.h>
#include <string.h>

#include "image/jpeg_write.h"
#include "base/error.h"

#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#define STBI_WRITE_NO_STDIO
#if defined(__GNUC__)
/* STB_IMAGE_WRITE_STATIC declares functions that STBI_WRITE_NO_STDIO leaves
   undefined; gcc reports them at the end of the file. */
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#endif
#include <stb/stb_image_write.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

typedef struct byte_buf {
    uint8_t *data;
    size_t len, cap;
    int failed;
} byte_buf;

static void buf_write(void *ctx, void *data, int size) {
    byte_buf *b = ctx;
    if (b->failed || size <= 0) return;
    if (b->len + (size_t)size > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 65536;
        while (cap < b->len + (size_t)size) cap *= 2;
        uint8_t *d = realloc(b->data, cap);
        if (!d) {
            b->failed = 1;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, (size_t)size);
    b->len += (size_t)size;
}

siamidx_status sx_jpeg_encode(const sx_image *im, int quality, uint8_t **out, size_t *len,
                              siamidx_error *err) {
    byte_buf b = {0};
    *out = NULL;
    *len = 0;
    if (!stbi_write_jpg_to_func(buf_write, &b, im->width, im->height, 3, im->rgb, quality) ||
        b.failed) {
        free(b.data);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "JPEG encoding of %dx%d failed", im->width,
                       im->height);
    }
    *out = b.data;
    *len = b.len;
    return SIAMIDX_OK;
}

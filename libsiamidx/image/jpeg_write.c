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
#include "base/strbuf.h"

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

/* stb's writer callback: append to an sx_strbuf (which records running out of memory). */
static void buf_write(void *ctx, void *data, int size) {
    if (size > 0) sx_strbuf_put(ctx, data, (size_t)size);
}

siamidx_status sx_jpeg_encode(const sx_image *im, int quality, uint8_t **out, size_t *len,
                              siamidx_error *err) {
    sx_strbuf b = {0};
    *out = NULL;
    *len = 0;
    if (!stbi_write_jpg_to_func(buf_write, &b, im->width, im->height, 3, im->rgb, quality) ||
        b.oom) {
        free(b.buf);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "JPEG encoding of %dx%d failed", im->width,
                       im->height);
    }
    *out = (uint8_t *)b.buf;
    *len = b.len;
    return SIAMIDX_OK;
}

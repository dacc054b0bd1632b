/* base/strbuf.h - a growing byte buffer (serialised heads, split records). */
#ifndef SX_BASE_STRBUF_H
#define SX_BASE_STRBUF_H

#include <stddef.h>

#include "base/error.h"

/* Zero-initialise; appends after an allocation failure are dropped and `oom`
   stays set, so a writer checks once at the end. Free `buf` with free(). */
typedef struct sx_strbuf {
    char *buf;
    size_t len, cap;
    int oom;
} sx_strbuf;

void sx_strbuf_put(sx_strbuf *b, const void *p, size_t n);
/* Appends at most 255 formatted bytes (keys and numbers, not payloads). */
void sx_strbuf_printf(sx_strbuf *b, const char *fmt, ...) SX_PRINTF(2, 3);

#endif /* SX_BASE_STRBUF_H */

/* error.c - status codes and the messages callers see. */
#include <stdio.h>
#include <string.h>

#include "base/error.h"

static const char *const status_text[SIAMIDX_STATUS_COUNT] = {
    [SIAMIDX_OK] = "ok",
    [SIAMIDX_ERR_INVALID_ARGUMENT] = "invalid argument",
    [SIAMIDX_ERR_NO_MEMORY] = "out of memory",
    [SIAMIDX_ERR_IO] = "input/output error",
    [SIAMIDX_ERR_MODEL_FORMAT] = "malformed model file",
    [SIAMIDX_ERR_IMAGE] = "image could not be decoded",
    [SIAMIDX_ERR_IMAGE_TOO_LARGE] = "image exceeds the pixel limit",
    [SIAMIDX_ERR_UNSUPPORTED] = "not supported",
    [SIAMIDX_ERR_MODEL_MISMATCH] = "index was built with a different model",
    [SIAMIDX_ERR_INDEX_LOCKED] = "index is being written by another process",
    [SIAMIDX_ERR_INDEX_CORRUPT] = "index is corrupt or not a siamidx index",
    [SIAMIDX_ERR_NOT_FOUND] = "not found",
    [SIAMIDX_ERR_NO_HEAD] = "no trained Siamese head",
    [SIAMIDX_ERR_CSV] = "malformed CSV",
    [SIAMIDX_ERR_BACKEND] = "storage or search backend error",
    [SIAMIDX_ERR_INTERRUPTED] = "interrupted",
    [SIAMIDX_ERR_CONFLICT] = "conflicting records (the same image under two artists)",
};

const char *siamidx_strerror(siamidx_status status) {
    if ((unsigned)status >= SIAMIDX_STATUS_COUNT) return "unknown status";
    return status_text[status];
}

siamidx_status sx_fail(siamidx_error *err, siamidx_status status, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->status = status;
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return status;
}

void sx_error_prefix(siamidx_error *err, const char *fmt, ...) {
    if (!err) return;
    char prefix[SIAMIDX_ERROR_MESSAGE_MAX];
    char old[SIAMIDX_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->message, sizeof old);
    old[sizeof old - 1] = 0;
    /* Both halves may be long: keep the prefix whole and cut the old message. */
    size_t n = strlen(prefix);
    if (n > sizeof err->message - 3) n = sizeof err->message - 3;
    memcpy(err->message, prefix, n);
    memcpy(err->message + n, ": ", 2);
    size_t room = sizeof err->message - n - 3;
    size_t m = strlen(old);
    if (m > room) m = room;
    memcpy(err->message + n + 2, old, m);
    err->message[n + 2 + m] = 0;
}

void sx_error_clear(siamidx_error *err) {
    if (!err) return;
    err->status = SIAMIDX_OK;
    err->message[0] = 0;
}

void sx_problem(sx_problems *p, const char *fmt, ...) {
    char msg[SIAMIDX_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    p->count++;
    if (p->fn) p->fn(p->ctx, msg);
}

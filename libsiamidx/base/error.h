/* base/error.h - status messages, and the problem tally of the verifiers. */
#ifndef SX_BASE_ERROR_H
#define SX_BASE_ERROR_H

#include <stdarg.h>
#include <stddef.h>

#include "siamidx.h"

#if defined(__GNUC__)
#define SX_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define SX_PRINTF(fmt, args)
#endif


/* Fills `err` (if not NULL) with status and a formatted message; returns status. */
siamidx_status sx_fail(siamidx_error *err, siamidx_status status, const char *fmt, ...)
    SX_PRINTF(3, 4);
/* Prefixes an existing message: "prefix: old message". */
void sx_error_prefix(siamidx_error *err, const char *fmt, ...) SX_PRINTF(2, 3);
void sx_error_clear(siamidx_error *err);

/* A verifier's tally: each problem goes to the caller's callback and is counted. */
typedef struct sx_problems {
    siamidx_problem_fn fn; /* may be NULL: only count */
    void *ctx;
    size_t count;
} sx_problems;
void sx_problem(sx_problems *p, const char *fmt, ...) SX_PRINTF(2, 3);

#endif /* SX_BASE_ERROR_H */

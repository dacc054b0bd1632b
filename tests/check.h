/* check.h - the few assertions the unit tests need. */
#ifndef SIAMIDX_TEST_CHECK_H
#define SIAMIDX_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_failures;

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            check_failures++;                                                    \
        }                                                                        \
    } while (0)

#define CHECK_MSG(cond, ...)                                                     \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                        \
            fputc('\n', stderr);                                                 \
            check_failures++;                                                    \
        }                                                                        \
    } while (0)

/* Where test inputs live; exits 77 (skipped) when a needed directory is absent. */
static inline const char *check_env_dir(const char *var) {
    const char *d = getenv(var);
    if (!d || !*d) {
        fprintf(stderr, "skipped: %s is not set\n", var);
        exit(77);
    }
    return d;
}

#define CHECK_DONE()                                                             \
    do {                                                                         \
        if (check_failures) {                                                    \
            fprintf(stderr, "%d check(s) failed\n", check_failures);             \
            return 1;                                                            \
        }                                                                        \
        return 0;                                                                \
    } while (0)

#endif

/*
 * fuzz_util.h - what the fuzz targets share.
 *
 * Some readers take a path, not a buffer (the CSV and collection loaders, the
 * safetensors mmap). fx_file hands them the input as a file without touching
 * the disk: an anonymous memfd, rewritten for every input and named through
 * /proc/self/fd, so nothing is left behind when the fuzzer stops or crashes.
 *
 * FUZZ_CHECK is the targets' own oracle: a broken invariant aborts, which
 * libFuzzer reports (and saves the input) like any sanitizer finding.
 */
#ifndef SIAMIDX_FUZZ_UTIL_H
#define SIAMIDX_FUZZ_UTIL_H

#ifndef _GNU_SOURCE
#error "fuzz targets build with -D_GNU_SOURCE (memfd_create)"
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define FUZZ_CHECK(cond, ...)                                                         \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "%s:%d: FUZZ_CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                             \
            fputc('\n', stderr);                                                      \
            abort();                                                                  \
        }                                                                             \
    } while (0)

typedef struct fx_file {
    int fd;
    char path[64];
} fx_file;

/* Replaces the file's contents with data[0..len); returns its path. */
static inline const char *fx_file_write(fx_file *f, const char *tag, const void *data, size_t len) {
    if (f->fd <= 0) {
        f->fd = memfd_create(tag, MFD_CLOEXEC);
        if (f->fd < 0) {
            perror("memfd_create");
            abort();
        }
        snprintf(f->path, sizeof f->path, "/proc/self/fd/%d", f->fd);
    }
    if (ftruncate(f->fd, 0) != 0) abort();
    const uint8_t *p = data;
    for (size_t done = 0; done < len;) {
        ssize_t n = pwrite(f->fd, p + done, len - done, (off_t)done);
        if (n <= 0) abort();
        done += (size_t)n;
    }
    return f->path;
}

/* With SIAMIDX_FUZZ_VERBOSE set, each target says what it made of an input:
   how to check that seeds reach the code they are meant for. */
static inline void fx_say(const char *what, int status, const char *message) {
    static int verbose = -1;
    if (verbose < 0) verbose = getenv("SIAMIDX_FUZZ_VERBOSE") != NULL;
    if (verbose) fprintf(stderr, "%s: %s\n", what, status ? message : "ok");
}

#endif /* SIAMIDX_FUZZ_UTIL_H */

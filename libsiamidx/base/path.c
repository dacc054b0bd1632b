/* path.c - absolute, lexically normalised paths (see path.h). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/path.h"

char *sx_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    int slash = a > 0 && dir[a - 1] != '/';
    char *p = malloc(a + slash + b + 1);
    if (!p) return NULL;
    memcpy(p, dir, a);
    if (slash) p[a] = '/';
    memcpy(p + a + slash, name, b + 1);
    return p;
}

/*
 * `name` made absolute against `base` (itself absolute), with "." and ".."
 * removed lexically: symlinks are kept as the user named them.
 */
char *sx_path_resolve(const char *base, const char *name) {
    char *joined = name[0] == '/' ? strdup(name) : sx_path_join(base, name);
    if (!joined) return NULL;
    char *out = malloc(strlen(joined) + 2);
    if (!out) {
        free(joined);
        return NULL;
    }
    size_t len = 0;
    for (char *p = joined; *p;) {
        while (*p == '/')
            p++;
        char *end = p;
        while (*end && *end != '/')
            end++;
        size_t n = (size_t)(end - p);
        if (n == 0 || (n == 1 && p[0] == '.')) {
            /* nothing */
        } else if (n == 2 && p[0] == '.' && p[1] == '.') {
            while (len > 0 && out[len - 1] != '/')
                len--;
            if (len > 0) len--; /* the slash; ".." of "/" is "/" */
        } else {
            out[len++] = '/';
            memcpy(out + len, p, n);
            len += n;
        }
        p = end;
    }
    if (len == 0) out[len++] = '/';
    out[len] = 0;
    free(joined);
    return out;
}

/* `path` made absolute against the working directory. */
char *sx_path_absolute(const char *path) {
    if (path[0] == '/') return sx_path_resolve("/", path);
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd)) return NULL;
    return sx_path_resolve(cwd, path);
}

char *sx_path_dir(const char *resolved_file) {
    char *d = strdup(resolved_file);
    if (!d) return NULL;
    char *slash = strrchr(d, '/');
    if (slash == d)
        slash[1] = 0;
    else if (slash)
        *slash = 0;
    return d;
}

/* lines.c - list files: one entry a line. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "lines.h"

void cli_lines_free(cli_lines *l) {
    for (size_t i = 0; i < l->n; i++) free(l->line[i]);
    free(l->line);
    memset(l, 0, sizeof *l);
}

static int append(cli_lines *l, size_t *cap, const char *s) {
    if (l->n == *cap) {
        size_t c = *cap ? 2 * *cap : 64;
        char **p = realloc(l->line, c * sizeof *p);
        if (!p) return -1;
        l->line = p, *cap = c;
    }
    if (!(l->line[l->n] = strdup(s))) return -1;
    l->n++;
    return 0;
}

int cli_read_lines(const char *command, const char *path, const char *what, cli_lines *out) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "r");
    if (!f) {
        cli_error("%s: %s: %s", command, path, strerror(errno));
        return -1;
    }
    char line[4096];
    size_t cap = 0, lineno = 0;
    const char *problem = NULL;
    while (!problem && fgets(line, sizeof line, f)) {
        lineno++;
        size_t len = strcspn(line, "\r\n");
        if (len == sizeof line - 1 && !feof(f)) problem = "line too long";
        line[len] = 0;
        while (len && (line[len - 1] == ' ' || line[len - 1] == '\t')) line[--len] = 0;
        char *s = line + strspn(line, " \t");
        if (!problem && *s && *s != '#' && append(out, &cap, s)) problem = "out of memory";
    }
    if (!problem && ferror(f)) problem = strerror(errno);
    fclose(f);
    if (problem) {
        cli_error("%s: %s: line %zu: %s", command, path, lineno, problem);
    } else if (out->n == 0) {
        cli_error("%s: %s names no %s", command, path, what);
        problem = "empty";
    }
    if (problem) cli_lines_free(out);
    return problem ? -1 : 0;
}

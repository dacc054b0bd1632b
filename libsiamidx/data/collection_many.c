/*
 * collection_many.c - several collections as one; artists left out.
 *
 * `train-encoder A B` trains on the union of A and B: the paintings folder
 * and paintings-extra, say, which share some artists (a folder name in both
 * is the same artist). Entries are moved, not copied, from each loaded
 * collection into the joined one.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/collection_many.h"
#include "base/error.h"

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Distinct artists among entries (0 when out of memory, as collection.c). */
static size_t count_artists(const sx_collection *c) {
    if (!c->n_entries) return 0;
    const char **names = malloc(c->n_entries * sizeof *names);
    if (!names) return 0;
    for (size_t i = 0; i < c->n_entries; i++) names[i] = c->entries[i].artist;
    qsort(names, c->n_entries, sizeof *names, cmp_str);
    size_t k = 1;
    for (size_t i = 1; i < c->n_entries; i++) k += strcmp(names[i - 1], names[i]) != 0;
    free(names);
    return k;
}

static siamidx_status add_issue(sx_collection *c, const char *path, const char *message,
                                siamidx_error *err) {
    sx_collection_issue *is = realloc(c->issues, (c->n_issues + 1) * sizeof *is);
    if (!is) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "collections: out of memory");
    c->issues = is;
    sx_collection_issue *x = &is[c->n_issues];
    x->status = SIAMIDX_ERR_INVALID_ARGUMENT;
    x->line = 0;
    x->path = path ? strdup(path) : NULL;
    x->message = strdup(message);
    if (!x->message || (path && !x->path)) {
        free(x->path), free(x->message);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "collections: out of memory");
    }
    c->n_issues++;
    return SIAMIDX_OK;
}

/* Moves part's entries and issues to the end of all (skipping images all has). */
static siamidx_status join(sx_collection *all, sx_collection *part, const char *name,
                           siamidx_error *err) {
    size_t n0 = all->n_entries;
    const char **seen = malloc((n0 ? n0 : 1) * sizeof *seen);
    sx_collection_entry *e = realloc(all->entries, (n0 + part->n_entries + 1) * sizeof *e);
    sx_collection_issue *is =
        realloc(all->issues, (all->n_issues + part->n_issues + 1) * sizeof *is);
    if (e) all->entries = e;
    if (is) all->issues = is;
    if (!seen || !e || !is) {
        free(seen);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "collections: out of memory");
    }
    if (part->n_issues) memcpy(all->issues + all->n_issues, part->issues, part->n_issues * sizeof *is);
    all->n_issues += part->n_issues;
    free(part->issues);
    part->issues = NULL;
    part->n_issues = 0;
    for (size_t i = 0; i < n0; i++) seen[i] = all->entries[i].resolved;
    qsort(seen, n0, sizeof *seen, cmp_str);
    siamidx_status s = SIAMIDX_OK;
    size_t i = 0;
    for (; i < part->n_entries && !s; i++) {
        sx_collection_entry *x = &part->entries[i];
        if (n0 && bsearch(&x->resolved, seen, n0, sizeof *seen, cmp_str)) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s: %s is listed by an earlier collection; skipped", name,
                     x->path);
            s = add_issue(all, x->path, msg, err);
            sx_collection_entry_free(x);
            continue;
        }
        all->entries[all->n_entries++] = *x;
    }
    for (; i < part->n_entries; i++) sx_collection_entry_free(&part->entries[i]); /* after a failure */
    free(part->entries);
    part->entries = NULL;
    part->n_entries = 0;
    free(seen);
    return s;
}

siamidx_status sx_collection_load_many(const char *const *paths, size_t n, const char *root,
                                       sx_collection *out, siamidx_error *err) {
    memset(out, 0, sizeof *out);
    if (n == 0) return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "no collection given");
    if (n == 1) return sx_collection_load(paths[0], root, out, err);
    siamidx_status s = SIAMIDX_OK;
    for (size_t k = 0; k < n && !s; k++) {
        sx_collection part;
        if ((s = sx_collection_load(paths[k], root, &part, err))) break;
        s = join(out, &part, paths[k], err);
        sx_collection_free(&part);
    }
    if (s) sx_collection_free(out);
    else out->n_artists = count_artists(out);
    return s;
}

siamidx_status sx_artist_list_read(const char *path, char ***names, size_t *n,
                                   siamidx_error *err) {
    *names = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return sx_fail(err, errno == ENOENT ? SIAMIDX_ERR_NOT_FOUND : SIAMIDX_ERR_IO, "%s: %s",
                           path, strerror(errno));
    char *text = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *t = realloc(text, cap);
            if (!t) {
                free(text), fclose(f);
                return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "%s: out of memory", path);
            }
            text = t;
        }
        size_t got = fread(text + len, 1, 4096, f);
        len += got;
        if (got < 4096) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(text);
        return sx_fail(err, SIAMIDX_ERR_IO, "%s: read error", path);
    }
    text[len] = 0;
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    /* the pointers first, then the text, in one block */
    char **out = malloc(lines * sizeof *out + len + 1);
    if (!out) {
        free(text);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "%s: out of memory", path);
    }
    char *copy = (char *)(out + lines);
    memcpy(copy, text, len + 1);
    free(text);
    size_t k = 0;
    for (char *line = copy; line;) {
        char *next = strchr(line, '\n');
        if (next) *next++ = 0;
        while (*line == ' ' || *line == '\t') line++;
        size_t l = strlen(line);
        while (l && (line[l - 1] == '\r' || line[l - 1] == ' ' || line[l - 1] == '\t')) line[--l] = 0;
        if (l && line[0] != '#') out[k++] = line;
        line = next;
    }
    *names = out;
    *n = k;
    return SIAMIDX_OK;
}

siamidx_status sx_collection_drop_artists(sx_collection *c, char *const *names, size_t n,
                                          size_t *dropped, uint8_t *found, siamidx_error *err) {
    *dropped = 0;
    if (found) memset(found, 0, n);
    if (!n) return SIAMIDX_OK;
    char **sorted = malloc(n * sizeof *sorted);
    if (!sorted) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "collections: out of memory");
    memcpy(sorted, names, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, cmp_str);
    size_t k = 0;
    for (size_t i = 0; i < c->n_entries; i++) {
        sx_collection_entry *e = &c->entries[i];
        if (!bsearch(&e->artist, sorted, n, sizeof *sorted, cmp_str)) {
            c->entries[k++] = *e;
            continue;
        }
        if (found) /* lists are short: a scan is enough */
            for (size_t j = 0; j < n; j++) found[j] |= !strcmp(names[j], e->artist);
        sx_collection_entry_free(e);
        (*dropped)++;
    }
    c->n_entries = k;
    free(sorted);
    c->n_artists = count_artists(c);
    return SIAMIDX_OK;
}

/*
 * collection.c - what `siamidx build` indexes, and pairs CSVs.
 *
 * A collection is a directory (ARTIST/.../IMAGE) or a CSV naming files and
 * artists. Loading never opens the images: it only decides which files are
 * meant, under which artist, and reports every row it cannot use, so that one
 * bad row never costs a whole build.
 */
#define _DEFAULT_SOURCE /* d_type, dirfd, strdup */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "siamidx_ext.h"
#include "data/collection.h"
#include "data/csv.h"
#include "base/error.h"
#include "base/path.h"

#define MAX_DEPTH 64 /* directory nesting we follow; deeper is reported */

/* ---- growing the result ------------------------------------------------------ */

static siamidx_status no_memory(siamidx_error *err) {
    return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "loading the collection: out of memory");
}

static int grow(void **items, size_t *cap, size_t n, size_t size) {
    if (n < *cap) return 0;
    size_t new_cap = *cap ? *cap * 2 : 64;
    void *p = realloc(*items, new_cap * size);
    if (!p) return -1;
    *items = p;
    *cap = new_cap;
    return 0;
}

typedef struct loader {
    sx_collection *c;
    size_t cap_entries, cap_issues;
    siamidx_error *err;
} loader;

static siamidx_status add_issue(loader *ld, siamidx_status status, long line, const char *path,
                                const char *fmt, ...) SX_PRINTF(5, 6);

static siamidx_status add_issue(loader *ld, siamidx_status status, long line, const char *path,
                                const char *fmt, ...) {
    sx_collection *c = ld->c;
    if (grow((void **)&c->issues, &ld->cap_issues, c->n_issues, sizeof *c->issues))
        return no_memory(ld->err);
    char msg[SIAMIDX_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sx_collection_issue *is = &c->issues[c->n_issues];
    is->status = status;
    is->line = line;
    is->path = path ? strdup(path) : NULL;
    is->message = strdup(msg);
    if (!is->message || (path && !is->path)) {
        free(is->path);
        free(is->message);
        return no_memory(ld->err);
    }
    c->n_issues++;
    return SIAMIDX_OK;
}

static sx_collection_entry *new_entry(loader *ld) {
    sx_collection *c = ld->c;
    if (grow((void **)&c->entries, &ld->cap_entries, c->n_entries, sizeof *c->entries)) return NULL;
    sx_collection_entry *e = &c->entries[c->n_entries++];
    memset(e, 0, sizeof *e);
    return e;
}

void sx_collection_entry_free(sx_collection_entry *e) {
    free(e->path);
    free(e->resolved);
    free(e->artist);
    free(e->title);
    free(e->style);
    free(e->genre);
    free(e->date);
    free(e->source_repo);
    free(e->source_path);
}

void sx_collection_free(sx_collection *c) {
    if (!c) return;
    for (size_t i = 0; i < c->n_entries; i++)
        sx_collection_entry_free(&c->entries[i]);
    for (size_t i = 0; i < c->n_issues; i++) {
        free(c->issues[i].path);
        free(c->issues[i].message);
    }
    free(c->entries);
    free(c->issues);
    memset(c, 0, sizeof *c);
}

/* ---- paths ------------------------------------------------------------------- */

/* ---- directory collections ---------------------------------------------------- */

static int is_image_name(const char *name) {
    static const char *const exts[] = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tga"};
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name) return 0;
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++)
        if (!strcasecmp(dot, exts[i])) return 1;
    return 0;
}

typedef struct walker {
    loader *ld;
    char **found; /* relative paths of images with an artist */
    size_t n_found, cap_found;
    dev_t dev[MAX_DEPTH + 1]; /* directories on the current path: loop detection */
    ino_t ino[MAX_DEPTH + 1];
} walker;

static siamidx_status walk(walker *w, const char *abs, const char *rel, int depth);

/* Looks at one directory entry; `d_type` may be DT_UNKNOWN (some filesystems). */
static siamidx_status visit(walker *w, const char *abs, const char *rel, int depth,
                            const char *name, unsigned char d_type) {
    siamidx_status st = SIAMIDX_OK;
    char *child_abs = sx_path_join(abs, name);
    char *child_rel = depth ? sx_path_join(rel, name) : strdup(name);
    if (!child_abs || !child_rel) {
        st = no_memory(w->ld->err);
        goto done;
    }
    int is_dir = d_type == DT_DIR, is_file = d_type == DT_REG;
    if (d_type == DT_UNKNOWN || d_type == DT_LNK) {
        struct stat sb;
        if (stat(child_abs, &sb)) {
            if (is_image_name(name))
                st = add_issue(w->ld, SIAMIDX_ERR_IO, 0, child_rel, "%s: %s", child_abs,
                               strerror(errno));
            goto done;
        }
        is_dir = S_ISDIR(sb.st_mode);
        is_file = S_ISREG(sb.st_mode);
    }
    if (is_dir) {
        st = walk(w, child_abs, child_rel, depth + 1);
    } else if (is_file && is_image_name(name)) {
        size_t len = strlen(child_rel);
        if (sx_utf8_check(child_rel, len) != len) {
            st = add_issue(w->ld, SIAMIDX_ERR_INVALID_ARGUMENT, 0, child_rel,
                           "%s: name is not valid UTF-8; skipped", child_abs);
        } else if (depth == 0) {
            st = add_issue(w->ld, SIAMIDX_ERR_INVALID_ARGUMENT, 0, child_rel,
                           "%s: image at the collection's top level has no artist folder; "
                           "skipped",
                           child_abs);
        } else if (grow((void **)&w->found, &w->cap_found, w->n_found, sizeof *w->found)) {
            st = no_memory(w->ld->err);
        } else {
            w->found[w->n_found++] = child_rel;
            child_rel = NULL;
        }
    }
done:
    free(child_abs);
    free(child_rel);
    return st;
}

static siamidx_status walk(walker *w, const char *abs, const char *rel, int depth) {
    DIR *d = opendir(abs);
    if (!d) {
        if (depth == 0)
            return sx_fail(w->ld->err, SIAMIDX_ERR_IO, "%s: cannot read directory: %s", abs,
                           strerror(errno));
        return add_issue(w->ld, SIAMIDX_ERR_IO, 0, rel, "%s: cannot read directory: %s; skipped",
                         abs, strerror(errno));
    }
    struct stat sb;
    siamidx_status st = SIAMIDX_OK;
    if (fstat(dirfd(d), &sb)) {
        st = add_issue(w->ld, SIAMIDX_ERR_IO, 0, rel, "%s: %s; skipped", abs, strerror(errno));
        goto done;
    }
    for (int i = 0; i < depth; i++) {
        if (w->dev[i] == sb.st_dev && w->ino[i] == sb.st_ino) {
            st = add_issue(w->ld, SIAMIDX_ERR_INVALID_ARGUMENT, 0, rel,
                           "%s: symbolic link loop; not followed", abs);
            goto done;
        }
    }
    if (depth > MAX_DEPTH) {
        st = add_issue(w->ld, SIAMIDX_ERR_INVALID_ARGUMENT, 0, rel,
                       "%s: nested more than %d directories deep; skipped", abs, MAX_DEPTH);
        goto done;
    }
    w->dev[depth] = sb.st_dev;
    w->ino[depth] = sb.st_ino;
    for (struct dirent *de; !st && (errno = 0, de = readdir(d));) {
        if (de->d_name[0] == '.') continue; /* hidden, and . and .. */
        st = visit(w, abs, rel, depth, de->d_name, de->d_type);
    }
    if (!st && errno)
        st = add_issue(w->ld, SIAMIDX_ERR_IO, 0, rel, "%s: error reading directory: %s", abs,
                       strerror(errno));
done:
    closedir(d);
    return st;
}

static int compare_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The artist of ARTIST/sub/dirs/image.jpg */
static char *first_component(const char *rel) {
    const char *slash = strchr(rel, '/');
    size_t n = slash ? (size_t)(slash - rel) : strlen(rel);
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, rel, n);
        s[n] = 0;
    }
    return s;
}

static siamidx_status load_directory(loader *ld, const char *dir) {
    walker w = {.ld = ld};
    char *top = sx_path_absolute(dir);
    if (!top) return no_memory(ld->err);
    siamidx_status st = walk(&w, top, "", 0);
    if (!st && w.n_found) qsort(w.found, w.n_found, sizeof *w.found, compare_str); /* NULL when none */
    for (size_t i = 0; i < w.n_found && !st; i++) {
        sx_collection_entry *e = new_entry(ld);
        if (!e) {
            st = no_memory(ld->err);
            break;
        }
        e->path = sx_path_join(dir, w.found[i]);
        e->resolved = sx_path_join(top, w.found[i]);
        e->artist = first_component(w.found[i]);
        if (!e->path || !e->resolved || !e->artist) st = no_memory(ld->err);
    }
    for (size_t i = 0; i < w.n_found; i++)
        free(w.found[i]);
    free(w.found);
    free(top);
    return st;
}

/* ---- CSV collections ---------------------------------------------------------- */

/* Header cell equals `name`, ignoring case and surrounding spaces. */
static int header_is(const char *cell, const char *name) {
    while (*cell == ' ' || *cell == '\t')
        cell++;
    size_t n = strlen(name);
    if (strncasecmp(cell, name, n)) return 0;
    for (cell += n; *cell; cell++)
        if (*cell != ' ' && *cell != '\t') return 0;
    return 1;
}

static long find_column(char **cells, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (header_is(cells[i], name)) return (long)i;
    return -1;
}

enum { COL_FILE, COL_ARTIST, COL_TITLE, COL_STYLE, COL_GENRE, COL_DATE, COL_SOURCE_REPO,
       COL_SOURCE_PATH, N_COLS };
static const char *const column_names[N_COLS] = {"filename", "artist", "title",
                                                 "style",    "genre",  "date",
                                                 "source_repo", "source_path"};

typedef struct csv_layout {
    size_t n_fields;
    long col[N_COLS]; /* -1 when absent */
} csv_layout;

/* Reads a header row; *cells is valid until the next read. */
static siamidx_status read_header(sx_csv *csv, char ***cells, size_t *n, siamidx_error *err) {
    siamidx_status st = sx_csv_next(csv, cells, n, err);
    if (st == SIAMIDX_ERR_CSV) sx_error_prefix(err, "no usable header row");
    if (st) return st;
    if (*n == 0)
        return sx_fail(err, SIAMIDX_ERR_CSV, "%s: empty file: no header row", sx_csv_name(csv));
    return SIAMIDX_OK;
}

static siamidx_status missing_column(sx_csv *csv, const char *column, siamidx_error *err) {
    return sx_fail(err, SIAMIDX_ERR_CSV, "%s: line 1: the header has no %s column",
                   sx_csv_name(csv), column);
}

/* A set of resolved paths (open addressing) to find rows listed twice. Slots
 * keep the hash, so growing never touches the strings again. */
typedef struct path_slot {
    uint64_t hash;
    size_t entry; /* entry index + 1; 0 = empty */
} path_slot;

typedef struct path_set {
    path_slot *slot;
    size_t cap; /* power of two */
} path_set;

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int path_set_grow(path_set *set) {
    size_t cap = set->cap ? set->cap * 2 : 1024;
    path_slot *slot = calloc(cap, sizeof *slot);
    if (!slot) return -1;
    for (size_t i = 0; i < set->cap; i++) {
        if (!set->slot[i].entry) continue;
        size_t h = set->slot[i].hash & (cap - 1);
        while (slot[h].entry)
            h = (h + 1) & (cap - 1);
        slot[h] = set->slot[i];
    }
    free(set->slot);
    set->slot = slot;
    set->cap = cap;
    return 0;
}

/* Returns the index of an entry with the same resolved path, or -1 after
 * inserting `idx`; -2 when out of memory. */
static long path_set_add(path_set *set, const sx_collection *c, size_t idx) {
    if ((idx + 1) * 2 > set->cap && path_set_grow(set)) return -2;
    const char *key = c->entries[idx].resolved;
    uint64_t hash = hash_str(key);
    size_t h = hash & (set->cap - 1);
    for (; set->slot[h].entry; h = (h + 1) & (set->cap - 1)) {
        size_t other = set->slot[h].entry - 1;
        if (set->slot[h].hash == hash && !strcmp(c->entries[other].resolved, key))
            return (long)other;
    }
    set->slot[h] = (path_slot){hash, idx + 1};
    return -1;
}

/* An optional field: NULL when empty; dropped (with an issue) when not UTF-8. */
static siamidx_status optional_field(loader *ld, sx_csv *csv, const char *value, const char *column,
                                     const char *path, char **out) {
    *out = NULL;
    size_t len = strlen(value);
    if (len == 0) return SIAMIDX_OK;
    size_t bad = sx_utf8_check(value, len);
    if (bad != len)
        return add_issue(ld, SIAMIDX_ERR_CSV, sx_csv_line(csv), path,
                         "%s: line %ld: '%s' is not valid UTF-8 (byte %zu); field dropped",
                         sx_csv_name(csv), sx_csv_line(csv), column, bad);
    *out = strdup(value);
    return *out ? SIAMIDX_OK : no_memory(ld->err);
}

/* Checks a required field; returns 1 when usable, 0 after reporting why not. */
static int required_ok(loader *ld, sx_csv *csv, const char *value, const char *column,
                       const char *path, siamidx_status *st) {
    size_t len = strlen(value);
    size_t bad = sx_utf8_check(value, len);
    const char *name = sx_csv_name(csv);
    long line = sx_csv_line(csv);
    if (len == 0)
        *st = add_issue(ld, SIAMIDX_ERR_CSV, line, path, "%s: line %ld: empty '%s'; skipped", name,
                        line, column);
    else if (bad != len)
        *st = add_issue(ld, SIAMIDX_ERR_CSV, line, path,
                        "%s: line %ld: '%s' is not valid UTF-8 (byte %zu); skipped", name, line,
                        column, bad);
    return len && bad == len;
}

/* Turns one row into an entry, or an issue. */
static siamidx_status csv_row(loader *ld, sx_csv *csv, const csv_layout *lay, char **cells,
                              size_t n, const char *base, path_set *seen) {
    const char *name = sx_csv_name(csv);
    long line = sx_csv_line(csv);
    siamidx_status st = SIAMIDX_OK;
    if (n != lay->n_fields)
        return add_issue(ld, SIAMIDX_ERR_CSV, line, NULL,
                         "%s: line %ld: %zu fields where the header has %zu; skipped", name, line,
                         n, lay->n_fields);
    const char *file = cells[lay->col[COL_FILE]], *artist = cells[lay->col[COL_ARTIST]];
    if (!required_ok(ld, csv, file, column_names[COL_FILE], NULL, &st)) return st;
    if (!required_ok(ld, csv, artist, column_names[COL_ARTIST], file, &st)) return st;

    sx_collection_entry *e = new_entry(ld);
    if (!e) return no_memory(ld->err);
    e->line = line;
    e->path = strdup(file);
    e->resolved = sx_path_resolve(base, file);
    e->artist = strdup(artist);
    if (!e->path || !e->resolved || !e->artist) return no_memory(ld->err);
    char **opt[N_COLS] = {[COL_TITLE] = &e->title,
                          [COL_STYLE] = &e->style,
                          [COL_GENRE] = &e->genre,
                          [COL_DATE] = &e->date,
                          [COL_SOURCE_REPO] = &e->source_repo,
                          [COL_SOURCE_PATH] = &e->source_path};
    for (int k = COL_TITLE; k < N_COLS && !st; k++)
        if (lay->col[k] >= 0)
            st = optional_field(ld, csv, cells[lay->col[k]], column_names[k], file, opt[k]);
    if (st) return st;

    long first = path_set_add(seen, ld->c, ld->c->n_entries - 1);
    if (first == -2) return no_memory(ld->err);
    if (first >= 0) {
        long first_line = ld->c->entries[first].line;
        sx_collection_entry_free(e);
        ld->c->n_entries--;
        return add_issue(ld, SIAMIDX_ERR_CSV, line, file,
                         "%s: line %ld: '%s' is listed again (first on line %ld); skipped", name,
                         line, file, first_line);
    }
    return SIAMIDX_OK;
}

/* The columns of a collection CSV; only a missing required one is fatal. */
static siamidx_status collection_header(sx_csv *csv, csv_layout *lay, siamidx_error *err) {
    char **cells;
    siamidx_status st = read_header(csv, &cells, &lay->n_fields, err);
    if (st) return st;
    for (int k = 0; k < N_COLS; k++)
        lay->col[k] = find_column(cells, lay->n_fields, column_names[k]);
    /* Kaggle's all_data_info.csv names the file column new_filename. */
    if (lay->col[COL_FILE] < 0)
        lay->col[COL_FILE] = find_column(cells, lay->n_fields, "new_filename");
    if (lay->col[COL_FILE] < 0) return missing_column(csv, "'filename' (or 'new_filename')", err);
    if (lay->col[COL_ARTIST] < 0) return missing_column(csv, "'artist'", err);
    return SIAMIDX_OK;
}

/* Where relative paths start: `root`, else the CSV's folder. */
static char *csv_base(const char *path, const char *root) {
    if (root) return sx_path_absolute(root);
    char *abs = sx_path_absolute(path);
    char *base = abs ? sx_path_dir(abs) : NULL;
    free(abs);
    return base;
}

static siamidx_status load_csv(loader *ld, const char *path, const char *root) {
    sx_csv *csv;
    siamidx_status st = sx_csv_open(path, &csv, ld->err);
    if (st) return st;
    csv_layout lay;
    path_set seen = {0};
    char *base = NULL;
    st = collection_header(csv, &lay, ld->err);
    if (!st && !(base = csv_base(path, root))) st = no_memory(ld->err);
    while (!st) {
        char **cells;
        size_t n;
        siamidx_error row_err;
        st = sx_csv_next(csv, &cells, &n, &row_err);
        if (st == SIAMIDX_ERR_CSV) {
            st = add_issue(ld, SIAMIDX_ERR_CSV, sx_csv_line(csv), NULL, "%s; skipped",
                           row_err.message);
            continue;
        }
        if (st) {
            sx_fail(ld->err, st, "%s", row_err.message);
            break;
        }
        if (n == 0) break;
        st = csv_row(ld, csv, &lay, cells, n, base, &seen);
    }
    free(seen.slot);
    free(base);
    sx_csv_close(csv);
    return st;
}

/* ---- entry point -------------------------------------------------------------- */

static int compare_artist(const void *a, const void *b) {
    return strcmp((*(sx_collection_entry *const *)a)->artist,
                  (*(sx_collection_entry *const *)b)->artist);
}

static size_t count_artists(const sx_collection *c) {
    if (c->n_entries == 0) return 0;
    sx_collection_entry **by_artist = malloc(c->n_entries * sizeof *by_artist);
    if (!by_artist) return 0;
    for (size_t i = 0; i < c->n_entries; i++)
        by_artist[i] = &c->entries[i];
    qsort(by_artist, c->n_entries, sizeof *by_artist, compare_artist);
    size_t n = 1;
    for (size_t i = 1; i < c->n_entries; i++)
        n += strcmp(by_artist[i - 1]->artist, by_artist[i]->artist) != 0;
    free(by_artist);
    return n;
}

siamidx_status sx_collection_load(const char *collection, const char *root, sx_collection *out,
                                  siamidx_error *err) {
    memset(out, 0, sizeof *out);
    if (!collection || !*collection)
        return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "no collection given");
    struct stat sb;
    if (stat(collection, &sb))
        return sx_fail(err, errno == ENOENT ? SIAMIDX_ERR_NOT_FOUND : SIAMIDX_ERR_IO, "%s: %s",
                       collection, strerror(errno));
    loader ld = {.c = out, .err = err};
    siamidx_status st =
        S_ISDIR(sb.st_mode) ? load_directory(&ld, collection) : load_csv(&ld, collection, root);
    if (!st) out->n_artists = count_artists(out);
    if (st) sx_collection_free(out);
    return st;
}

/* ---- pairs CSVs ----------------------------------------------------------------- */

struct siamidx_pairs_csv { /* sx_pairs_csv inside the library */
    sx_csv *csv;
    size_t n_fields;
    long col_index, col1, col2;
};

siamidx_status sx_pairs_csv_open(const char *path, sx_pairs_csv **out, siamidx_error *err) {
    *out = NULL;
    sx_pairs_csv *p = calloc(1, sizeof *p);
    if (!p) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "%s: out of memory", path);
    siamidx_status st = sx_csv_open(path, &p->csv, err);
    char **cells;
    if (!st) st = read_header(p->csv, &cells, &p->n_fields, err);
    if (!st) {
        p->col_index = find_column(cells, p->n_fields, "index");
        p->col1 = find_column(cells, p->n_fields, "image1");
        p->col2 = find_column(cells, p->n_fields, "image2");
        if (p->col_index < 0)
            st = missing_column(p->csv, "'index'", err);
        else if (p->col1 < 0)
            st = missing_column(p->csv, "'image1'", err);
        else if (p->col2 < 0)
            st = missing_column(p->csv, "'image2'", err);
    }
    if (st) {
        sx_pairs_csv_close(p);
        return st;
    }
    *out = p;
    return SIAMIDX_OK;
}

static siamidx_status pair_value(sx_pairs_csv *p, const char *value, const char *column,
                                 siamidx_error *err) {
    size_t len = strlen(value), bad = sx_utf8_check(value, len);
    if (len == 0)
        return sx_fail(err, SIAMIDX_ERR_CSV, "%s: line %ld: empty '%s'", sx_csv_name(p->csv),
                       sx_csv_line(p->csv), column);
    if (bad != len)
        return sx_fail(err, SIAMIDX_ERR_CSV, "%s: line %ld: '%s' is not valid UTF-8 (byte %zu)",
                       sx_csv_name(p->csv), sx_csv_line(p->csv), column, bad);
    return SIAMIDX_OK;
}

siamidx_status sx_pairs_csv_next(sx_pairs_csv *p, sx_pair_row *row, int *done, siamidx_error *err) {
    char **cells;
    size_t n;
    memset(row, 0, sizeof *row);
    *done = 0;
    siamidx_status st = sx_csv_next(p->csv, &cells, &n, err);
    if (st) return st;
    if (n == 0) {
        *done = 1;
        return SIAMIDX_OK;
    }
    row->line = sx_csv_line(p->csv);
    if (n != p->n_fields)
        return sx_fail(err, SIAMIDX_ERR_CSV, "%s: line %ld: %zu fields where the header has %zu",
                       sx_csv_name(p->csv), row->line, n, p->n_fields);
    if ((st = pair_value(p, cells[p->col_index], "index", err))) return st;
    if ((st = pair_value(p, cells[p->col1], "image1", err))) return st;
    if ((st = pair_value(p, cells[p->col2], "image2", err))) return st;
    row->index = cells[p->col_index];
    row->image1 = cells[p->col1];
    row->image2 = cells[p->col2];
    return SIAMIDX_OK;
}

void sx_pairs_csv_close(sx_pairs_csv *p) {
    if (!p) return;
    sx_csv_close(p->csv);
    free(p);
}

/* ---- siamidx_ext.h ------------------------------------------------------------------ */

siamidx_status siamidx_pairs_csv_open(const char *path, siamidx_pairs_csv **out,
                                      siamidx_error *err) {
    if (!path || !out) return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "pairs CSV: NULL argument");
    return sx_pairs_csv_open(path, out, err);
}

siamidx_status siamidx_pairs_csv_next(siamidx_pairs_csv *p, siamidx_pair_row *row, int *done,
                                      siamidx_error *err) {
    sx_pair_row r = {0};
    siamidx_status s = sx_pairs_csv_next(p, &r, done, err);
    *row = (siamidx_pair_row){.index = r.index, .image1 = r.image1, .image2 = r.image2,
                              .line = r.line};
    return s;
}

void siamidx_pairs_csv_close(siamidx_pairs_csv *p) { sx_pairs_csv_close(p); }

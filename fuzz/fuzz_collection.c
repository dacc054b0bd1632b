/*
 * fuzz_collection.c - the collection CSV loader and the pairs CSV reader.
 *
 * Internal functions used (module headers; collection.c):
 *   sx_collection_load, sx_collection_free, sx_pairs_csv_open,
 *   sx_pairs_csv_next, sx_pairs_csv_close, sx_utf8_check
 *
 * The same bytes are read as a collection (what `siamidx build list.csv`
 * does; images are not opened) and as a pairs file (`siamidx pairs`). The
 * loaders read paths, so the input is handed over as a memfd (fuzz_util.h).
 * Oracles besides the sanitizers: every entry has a path, an absolute
 * lexically normalised resolved path, valid UTF-8 path and artist, distinct
 * resolved paths, and a consistent artist count; pair rows hold non-empty
 * valid UTF-8 values.
 */
#include "fuzz_util.h"
#include "data/collection.h"
#include "data/csv.h"

static void check_resolved(const char *r) {
    FUZZ_CHECK(r[0] == '/', "resolved path '%s' is not absolute", r);
    FUZZ_CHECK(!strstr(r, "//") && !strstr(r, "/./") && !strstr(r, "/../"),
               "resolved path '%s' is not normalised", r);
    size_t n = strlen(r);
    FUZZ_CHECK(n == 1 || (r[n - 1] != '/' && strcmp(r + n - 2, "/.") && (n < 3 || strcmp(r + n - 3, "/.."))),
               "resolved path '%s' ends badly", r);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void check_collection(const sx_collection *c) {
    const char **res = malloc((c->n_entries + 1) * sizeof *res);
    const char **art = malloc((c->n_entries + 1) * sizeof *art);
    if (!res || !art) abort();
    for (size_t i = 0; i < c->n_entries; i++) {
        const sx_collection_entry *e = &c->entries[i];
        FUZZ_CHECK(e->path && e->resolved && e->artist && *e->path && *e->artist, "entry %zu incomplete", i);
        FUZZ_CHECK(sx_utf8_check(e->path, strlen(e->path)) == strlen(e->path), "path not UTF-8");
        FUZZ_CHECK(sx_utf8_check(e->artist, strlen(e->artist)) == strlen(e->artist), "artist not UTF-8");
        check_resolved(e->resolved);
        FUZZ_CHECK(e->line >= 2, "entry %zu on line %ld", i, e->line);
        res[i] = e->resolved;
        art[i] = e->artist;
    }
    qsort(res, c->n_entries, sizeof *res, cmp_str);
    qsort(art, c->n_entries, sizeof *art, cmp_str);
    size_t artists = c->n_entries ? 1 : 0;
    for (size_t i = 1; i < c->n_entries; i++) {
        FUZZ_CHECK(strcmp(res[i - 1], res[i]) != 0, "'%s' listed twice", res[i]);
        artists += strcmp(art[i - 1], art[i]) != 0;
    }
    FUZZ_CHECK(artists == c->n_artists, "%zu artists counted, %zu distinct", c->n_artists, artists);
    for (size_t i = 0; i < c->n_issues; i++)
        FUZZ_CHECK(c->issues[i].message && c->issues[i].message[0], "issue %zu has no message", i);
    free(res);
    free(art);
}

static void check_pairs(const char *path) {
    sx_pairs_csv *p;
    siamidx_error err;
    siamidx_status s = sx_pairs_csv_open(path, &p, &err);
    if (s) {
        FUZZ_CHECK(s == SIAMIDX_ERR_CSV && p == NULL, "pairs open: status %d: %s", s, err.message);
        return;
    }
    for (int rows = 0; rows < 100000; rows++) {
        sx_pair_row row;
        int done;
        s = sx_pairs_csv_next(p, &row, &done, &err);
        if (s) {
            FUZZ_CHECK(s == SIAMIDX_ERR_CSV, "pairs row: status %d: %s", s, err.message);
            continue;
        }
        if (done) break;
        const char *v[3] = {row.index, row.image1, row.image2};
        for (int k = 0; k < 3; k++)
            FUZZ_CHECK(v[k] && *v[k] && sx_utf8_check(v[k], strlen(v[k])) == strlen(v[k]),
                       "pair row on line %ld has a bad value", row.line);
    }
    sx_pairs_csv_close(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static fx_file file;
    const char *path = fx_file_write(&file, "fuzz_collection", data, size);
    sx_collection c;
    siamidx_error err;
    /* Both with the CSV's own folder as base and with an explicit root. */
    for (int with_root = 0; with_root < 2; with_root++) {
        siamidx_status s = sx_collection_load(path, with_root ? "/a/./b/../c" : NULL, &c, &err);
        if (s == SIAMIDX_OK)
            snprintf(err.message, sizeof err.message, "%zu entries, %zu issues", c.n_entries,
                     c.n_issues);
        fx_say("collection", s == SIAMIDX_OK ? 1 : s, err.message);
        if (s == SIAMIDX_OK) {
            check_collection(&c);
            sx_collection_free(&c);
        } else {
            FUZZ_CHECK(s == SIAMIDX_ERR_CSV, "collection: status %d: %s", s, err.message);
        }
    }
    check_pairs(path);
    return 0;
}

/* data/collection.h - what `build` and training read (directory or CSV), pairs CSVs. */
#ifndef SX_DATA_COLLECTION_H
#define SX_DATA_COLLECTION_H

#include <stddef.h>
#include <stdint.h>

#include "siamidx.h"

/* One image of a collection. Optional fields are NULL when absent or empty. */
typedef struct sx_collection_entry {
    char *path;     /* as given: the CSV's value, or COLLECTION/ARTIST/.../IMAGE */
    char *resolved; /* absolute, lexically normalised ("." and ".." removed) */
    char *artist;
    char *title, *style, *genre, *date;
    char *source_repo, *source_path; /* provenance (evaluation groups by them) */
    long line; /* CSV line, 0 for directory collections */
} sx_collection_entry;

/* A skipped entry or dropped field, not fatal to the load. */
typedef struct sx_collection_issue {
    siamidx_status status; /* SIAMIDX_ERR_CSV for rows, _IO for unreadable
                              directories, _INVALID_ARGUMENT for unusable names */
    long line;             /* CSV line, 0 for directory collections */
    char *path;            /* the entry's path as given, or NULL */
    char *message;         /* one line, naming the file and line or path */
} sx_collection_issue;

typedef struct sx_collection {
    sx_collection_entry *entries; /* CSV: file order; directory: sorted by path */
    size_t n_entries;
    sx_collection_issue *issues; /* in the order found */
    size_t n_issues;
    size_t n_artists; /* distinct artists among entries */
} sx_collection;

/*
 * Loads a collection for `siamidx build`:
 *  - a directory: every .jpg .jpeg .png .bmp .gif .tga (any case) below it,
 *    recursively, hidden names skipped, symlinks followed but never in a
 *    loop; the artist is the first path component below the directory, and
 *    images at its top level (no artist) are reported and skipped;
 *  - a CSV file with a header naming `filename` (or `new_filename`) and
 *    `artist`, optionally `title`, `style`, `genre`, `date`, `source_repo`,
 *    `source_path` (where the image came from), in any order,
 *    any case, other columns ignored. Relative paths start from `root` when
 *    not NULL, else from the CSV's folder. Rows with an empty filename or
 *    artist, a wrong number of fields, a malformed record, invalid UTF-8 in
 *    the filename or artist, or a path listed before are reported as issues
 *    and skipped (invalid UTF-8 in an optional field drops only that field).
 * Fatal: SIAMIDX_ERR_NOT_FOUND / _IO when the collection cannot be read,
 * SIAMIDX_ERR_CSV when there is no header or it lacks a required column
 * (named). Image files are not opened or checked for existence here.
 */
siamidx_status sx_collection_load(const char *collection, const char *root, sx_collection *out,
                                  siamidx_error *err);
/* Frees one entry's strings (every field, provenance included). */
void sx_collection_entry_free(sx_collection_entry *e);
void sx_collection_free(sx_collection *c);

/* A row of a pairs CSV (Kaggle submission_info.csv: index,image1,image2). */
typedef struct sx_pair_row {
    const char *index; /* the `index` column, verbatim */
    const char *image1, *image2;
    long line;
} sx_pair_row;

/*
 * Streams a pairs CSV: a header with `index`, `image1`, `image2` (any order,
 * other columns ignored; a missing one is SIAMIDX_ERR_CSV naming it). Each
 * row with a wrong field count, an empty value, invalid UTF-8 or a malformed
 * record is SIAMIDX_ERR_CSV naming the file and line; reading may go on.
 */
typedef struct siamidx_pairs_csv sx_pairs_csv; /* siamidx_ext.h: siamidx_pairs_csv */
siamidx_status sx_pairs_csv_open(const char *path, sx_pairs_csv **out, siamidx_error *err);
/* row's strings are valid until the next call; OK with *done = 1 at the end. */
siamidx_status sx_pairs_csv_next(sx_pairs_csv *p, sx_pair_row *row, int *done,
                                 siamidx_error *err);
void sx_pairs_csv_close(sx_pairs_csv *p);

#endif /* SX_DATA_COLLECTION_H */

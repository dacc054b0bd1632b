/*
 * collection_many.h - several collections read as one (train-encoder; usable
 * by `build` too), and artists left out of a collection.
 */
#ifndef SIAMIDX_COLLECTION_MANY_H
#define SIAMIDX_COLLECTION_MANY_H

#include <stddef.h>
#include <stdint.h>

#include "siamidx.h"
#include "data/collection.h"

/*
 * Loads each of paths[0..n) with sx_collection_load (folders or CSVs) and
 * joins them in that order. An artist name that appears in several is one
 * artist. An image (resolved path) listed by an earlier collection is
 * reported as an issue and skipped. Nothing is copied on disk. Fatal errors
 * are those of sx_collection_load, prefixed by nothing (they name the file).
 */
siamidx_status sx_collection_load_many(const char *const *paths, size_t n, const char *root,
                                       sx_collection *out, siamidx_error *err);

/*
 * Reads an artist list: one name per line, surrounding blanks and CR
 * removed, blank lines and lines starting with '#' skipped. *names is one
 * malloc'ed array of pointers into one block (free(*names) frees all).
 */
siamidx_status sx_artist_list_read(const char *path, char ***names, size_t *n,
                                   siamidx_error *err);

/*
 * Removes the entries whose artist is in names[0..n); *dropped receives how
 * many images went, and found[i] (when not NULL) whether names[i] matched any.
 */
siamidx_status sx_collection_drop_artists(sx_collection *c, char *const *names, size_t n,
                                          size_t *dropped, uint8_t *found, siamidx_error *err);

#endif

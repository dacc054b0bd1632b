/* base/path.h - paths made absolute and normalised lexically, as collections and the index name files. */
#ifndef SX_BASE_PATH_H
#define SX_BASE_PATH_H

/* Every function returns a malloc'd string, NULL when out of memory. */

/* dir/name, one slash between. */
char *sx_path_join(const char *dir, const char *name);
/*
 * `name` made absolute against `base` (itself absolute), with "." and ".."
 * removed lexically: symlinks are kept as the user named them.
 */
char *sx_path_resolve(const char *base, const char *name);
/* `path` made absolute against the working directory (NULL also when it is unknown). */
char *sx_path_absolute(const char *path);
/* The directory of an absolute file path ("/" for "/x"). */
char *sx_path_dir(const char *resolved_file);

#endif /* SX_BASE_PATH_H */

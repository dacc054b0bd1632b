/*
 * store/faiss_ext.h - what siamidx needs of FAISS beyond its C API.
 *
 * FAISS's C API (upstream's libfaiss_c, or faiss_c_api.cpp here) has
 * IndexIVF merge_from but nothing that merges two IndexIDMap2 wrappers, and
 * those are what vindex.c keeps. faiss_ext.cpp is compiled in every build,
 * over the C++ library, whichever C API is linked.
 */
#ifndef SX_STORE_FAISS_EXT_H
#define SX_STORE_FAISS_EXT_H

#include <stddef.h>

#include <faiss/c_api/Index_c.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Moves every vector of `src` into `dst`, both IndexIDMap2 over an IndexIVF
 * of the same structure (FAISS's merge_from: codes are moved, nothing is
 * re-encoded), keeping src's labels; src is left empty. The caller checks
 * that both were trained from the same IVF: FAISS compares only the shapes.
 * Returns 0, or -1 with a message in why; on failure dst is unchanged
 * (every check runs before anything moves).
 */
int sx_faiss_merge_idmap2(FaissIndex *dst, FaissIndex *src, char *why, size_t cap);

#ifdef __cplusplus
}
#endif

#endif /* SX_STORE_FAISS_EXT_H */

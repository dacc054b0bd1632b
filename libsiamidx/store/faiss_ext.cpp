/*
 * faiss_ext.cpp - FAISS functions the C API lacks (see faiss_ext.h).
 */
#include <cstdio>
#include <exception>
#include <stdexcept>

#include <faiss/IndexIDMap.h>
#include <faiss/IndexIVF.h>

#include "store/faiss_ext.h"

extern "C" int sx_faiss_merge_idmap2(FaissIndex *dst, FaissIndex *src, char *why, size_t cap) {
    auto *d = dynamic_cast<faiss::IndexIDMap2 *>(reinterpret_cast<faiss::Index *>(dst));
    auto *s = dynamic_cast<faiss::IndexIDMap2 *>(reinterpret_cast<faiss::Index *>(src));
    if (!d || !s) {
        snprintf(why, cap, "merge: not two id maps");
        return -1;
    }
    auto *di = dynamic_cast<faiss::IndexIVF *>(d->index);
    auto *si = dynamic_cast<faiss::IndexIVF *>(s->index);
    if (!di || !si) {
        snprintf(why, cap, "merge: not two IVF indexes");
        return -1;
    }
    try {
        /* Throws (before moving anything) when d, nlist, code size or type differ. */
        di->check_compatible_for_merge(*si);
        if (di->ntotal != d->ntotal || si->ntotal != s->ntotal ||
            s->id_map.size() != (size_t)s->ntotal)
            throw std::runtime_error("id map and IVF disagree");
        faiss::Index::idx_t base = d->ntotal;
        d->id_map.reserve(d->id_map.size() + s->id_map.size());
        /* The IVF's own ids are the id map's positions: shift src's past dst's. */
        di->merge_from(*si, base);
        for (size_t i = 0; i < s->id_map.size(); i++) {
            d->id_map.push_back(s->id_map[i]);
            d->rev_map[s->id_map[i]] = base + (faiss::Index::idx_t)i;
        }
        d->ntotal = di->ntotal;
        s->id_map.clear();
        s->rev_map.clear();
        s->ntotal = 0;
    } catch (const std::exception &e) {
        snprintf(why, cap, "merge: %s", e.what());
        return -1;
    }
    return 0;
}

/*
 * faiss_c_api.cpp - the part of FAISS's C API that siamidx calls.
 *
 * Why this file exists: Debian 12's libfaiss-dev ships the C API headers
 * (faiss/c_api/...) but not libfaiss_c, the library that implements them.
 * Rather than depend on C++ from the rest of the library, we implement the
 * functions we use here, over the C++ libfaiss, with the exact signatures of
 * those headers. Where a real libfaiss_c is installed, CMake links it instead
 * and this file is not compiled.
 *
 * Error convention (error_c.h): a function returns 0 on success and a negative
 * FaissErrorCode when FAISS threw; faiss_get_last_error() then returns the
 * message. The last exception is thread-local, as in upstream FAISS, so
 * concurrent callers never see each other's errors.
 */
#include <exception>
#include <stdexcept>

#include <faiss/AutoTune.h>
#include <faiss/Index.h>
#include <faiss/IndexIDMap.h>
#include <faiss/IndexIVF.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/impl/io.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>

#include <faiss/c_api/AutoTune_c.h>
#include <faiss/c_api/IndexIVF_c.h>
#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/MetaIndexes_c.h>
#include <faiss/c_api/error_c.h>
#include <faiss/c_api/error_impl.h>
#include <faiss/c_api/impl/AuxIndexStructures_c.h>
#include <faiss/c_api/index_factory_c.h>
#include <faiss/c_api/index_io_c.h>

thread_local std::exception_ptr faiss_last_exception;

namespace {

/* Runs `body`, turning any exception into the C API's error code. */
template <typename F> int guarded(F body) {
    try {
        body();
        return OK;
    } catch (const faiss::FaissException &) {
        faiss_last_exception = std::current_exception();
        return FAISS_EXCEPT;
    } catch (const std::exception &) {
        faiss_last_exception = std::current_exception();
        return STD_EXCEPT;
    } catch (...) {
        faiss_last_exception = std::make_exception_ptr(std::runtime_error("unknown error"));
        return UNKNOWN_EXCEPT;
    }
}

faiss::Index *cpp(FaissIndex *p) { return reinterpret_cast<faiss::Index *>(p); }
const faiss::Index *cpp(const FaissIndex *p) { return reinterpret_cast<const faiss::Index *>(p); }
FaissIndex *c_index(faiss::Index *p) { return reinterpret_cast<FaissIndex *>(p); }

} // namespace

extern "C" {

/* ---- errors ----------------------------------------------------------------- */

const char *faiss_get_last_error() {
    if (!faiss_last_exception) return nullptr;
    try {
        std::rethrow_exception(faiss_last_exception);
    } catch (const std::exception &e) {
        return e.what(); /* lives inside the stored exception object */
    } catch (...) {
        return "unknown error";
    }
}

/* ---- Index -------------------------------------------------------------------- */

void faiss_Index_free(FaissIndex *obj) { delete cpp(obj); }
int faiss_Index_d(const FaissIndex *obj) { return cpp(obj)->d; }
int faiss_Index_is_trained(const FaissIndex *obj) { return cpp(obj)->is_trained; }
idx_t faiss_Index_ntotal(const FaissIndex *obj) { return cpp(obj)->ntotal; }
FaissMetricType faiss_Index_metric_type(const FaissIndex *obj) {
    return static_cast<FaissMetricType>(cpp(obj)->metric_type);
}
int faiss_Index_verbose(const FaissIndex *obj) { return cpp(obj)->verbose; }
void faiss_Index_set_verbose(FaissIndex *obj, int verbose) { cpp(obj)->verbose = verbose != 0; }

int faiss_index_factory(FaissIndex **p_index, int d, const char *description,
                        FaissMetricType metric) {
    return guarded([&] {
        *p_index =
            c_index(faiss::index_factory(d, description, static_cast<faiss::MetricType>(metric)));
    });
}

int faiss_Index_train(FaissIndex *index, idx_t n, const float *x) {
    return guarded([&] { cpp(index)->train(n, x); });
}

int faiss_Index_add(FaissIndex *index, idx_t n, const float *x) {
    return guarded([&] { cpp(index)->add(n, x); });
}

int faiss_Index_add_with_ids(FaissIndex *index, idx_t n, const float *x, const idx_t *xids) {
    return guarded([&] { cpp(index)->add_with_ids(n, x, xids); });
}

int faiss_Index_search(const FaissIndex *index, idx_t n, const float *x, idx_t k, float *distances,
                       idx_t *labels) {
    return guarded([&] { cpp(index)->search(n, x, k, distances, labels); });
}

int faiss_Index_reset(FaissIndex *index) {
    return guarded([&] { cpp(index)->reset(); });
}

int faiss_Index_remove_ids(FaissIndex *index, const FaissIDSelector *sel, size_t *n_removed) {
    return guarded([&] {
        size_t n = cpp(index)->remove_ids(*reinterpret_cast<const faiss::IDSelector *>(sel));
        if (n_removed) *n_removed = n;
    });
}

int faiss_Index_reconstruct(const FaissIndex *index, idx_t key, float *recons) {
    return guarded([&] { cpp(index)->reconstruct(key, recons); });
}

int faiss_Index_reconstruct_n(const FaissIndex *index, idx_t i0, idx_t ni, float *recons) {
    return guarded([&] { cpp(index)->reconstruct_n(i0, ni, recons); });
}

/* ---- IndexIDMap / IndexIDMap2 ----------------------------------------------- */

/* The C API's IDMap handles are FaissIndex handles ("inherited"); only the
 * casts below check what the object really is. */
int faiss_IndexIDMap_new(FaissIndexIDMap **p_index, FaissIndex *index) {
    return guarded([&] { *p_index = c_index(new faiss::IndexIDMap(cpp(index))); });
}

FaissIndexIDMap *faiss_IndexIDMap_cast(FaissIndex *index) {
    return c_index(dynamic_cast<faiss::IndexIDMap *>(cpp(index)));
}

int faiss_IndexIDMap_own_fields(const FaissIndexIDMap *obj) {
    return reinterpret_cast<const faiss::IndexIDMap *>(obj)->own_fields;
}

void faiss_IndexIDMap_set_own_fields(FaissIndexIDMap *obj, int own) {
    reinterpret_cast<faiss::IndexIDMap *>(obj)->own_fields = own != 0;
}

void faiss_IndexIDMap_id_map(FaissIndexIDMap *index, idx_t **p_id_map, size_t *p_size) {
    auto *m = reinterpret_cast<faiss::IndexIDMap *>(index);
    if (p_id_map) *p_id_map = m->id_map.data();
    if (p_size) *p_size = m->id_map.size();
}

FaissIndex *faiss_IndexIDMap_sub_index(FaissIndexIDMap *index) {
    return c_index(reinterpret_cast<faiss::IndexIDMap *>(index)->index);
}

int faiss_IndexIDMap2_new(FaissIndexIDMap2 **p_index, FaissIndex *index) {
    return guarded([&] { *p_index = c_index(new faiss::IndexIDMap2(cpp(index))); });
}

int faiss_IndexIDMap2_construct_rev_map(FaissIndexIDMap2 *index) {
    return guarded([&] { reinterpret_cast<faiss::IndexIDMap2 *>(index)->construct_rev_map(); });
}

FaissIndexIDMap2 *faiss_IndexIDMap2_cast(FaissIndex *index) {
    return c_index(dynamic_cast<faiss::IndexIDMap2 *>(cpp(index)));
}

int faiss_IndexIDMap2_own_fields(const FaissIndexIDMap2 *obj) {
    return reinterpret_cast<const faiss::IndexIDMap2 *>(obj)->own_fields;
}

void faiss_IndexIDMap2_set_own_fields(FaissIndexIDMap2 *obj, int own) {
    reinterpret_cast<faiss::IndexIDMap2 *>(obj)->own_fields = own != 0;
}

void faiss_IndexIDMap2_id_map(FaissIndexIDMap2 *index, idx_t **p_id_map, size_t *p_size) {
    auto *m = reinterpret_cast<faiss::IndexIDMap2 *>(index);
    if (p_id_map) *p_id_map = m->id_map.data();
    if (p_size) *p_size = m->id_map.size();
}

FaissIndex *faiss_IndexIDMap2_sub_index(FaissIndexIDMap2 *index) {
    return c_index(reinterpret_cast<faiss::IndexIDMap2 *>(index)->index);
}

/* ---- IndexIVF ------------------------------------------------------------------- */

FaissIndexIVF *faiss_IndexIVF_cast(FaissIndex *index) {
    return c_index(dynamic_cast<faiss::IndexIVF *>(cpp(index)));
}

size_t faiss_IndexIVF_nlist(const FaissIndexIVF *obj) {
    return reinterpret_cast<const faiss::IndexIVF *>(obj)->nlist;
}

size_t faiss_IndexIVF_nprobe(const FaissIndexIVF *obj) {
    return reinterpret_cast<const faiss::IndexIVF *>(obj)->nprobe;
}

void faiss_IndexIVF_set_nprobe(FaissIndexIVF *obj, size_t nprobe) {
    reinterpret_cast<faiss::IndexIVF *>(obj)->nprobe = nprobe;
}

/* As upstream: non-zero builds an array direct map, which reconstruct() needs
 * and remove_ids() refuses; zero drops it again. */
int faiss_IndexIVF_make_direct_map(FaissIndexIVF *index, int new_maintain_direct_map) {
    return guarded([&] {
        reinterpret_cast<faiss::IndexIVF *>(index)->make_direct_map(new_maintain_direct_map != 0);
    });
}

/* ---- ParameterSpace: efSearch / nprobe through any wrapper (IDMap2 included) -- */

int faiss_ParameterSpace_new(FaissParameterSpace **space) {
    return guarded(
        [&] { *space = reinterpret_cast<FaissParameterSpace *>(new faiss::ParameterSpace()); });
}

void faiss_ParameterSpace_free(FaissParameterSpace *space) {
    delete reinterpret_cast<faiss::ParameterSpace *>(space);
}

int faiss_ParameterSpace_set_index_parameter(const FaissParameterSpace *space, FaissIndex *index,
                                             const char *name, double value) {
    return guarded([&] {
        reinterpret_cast<const faiss::ParameterSpace *>(space)->set_index_parameter(cpp(index),
                                                                                    name, value);
    });
}

int faiss_ParameterSpace_set_index_parameters(const FaissParameterSpace *space, FaissIndex *index,
                                              const char *params) {
    return guarded([&] {
        reinterpret_cast<const faiss::ParameterSpace *>(space)->set_index_parameters(cpp(index),
                                                                                     params);
    });
}

/* ---- ID selectors (for remove_ids) ------------------------------------------- */

void faiss_IDSelector_free(FaissIDSelector *obj) {
    delete reinterpret_cast<faiss::IDSelector *>(obj);
}

int faiss_IDSelector_is_member(const FaissIDSelector *sel, idx_t id) {
    return reinterpret_cast<const faiss::IDSelector *>(sel)->is_member(id);
}

int faiss_IDSelectorRange_new(FaissIDSelectorRange **p_sel, idx_t imin, idx_t imax) {
    return guarded([&] {
        *p_sel = reinterpret_cast<FaissIDSelectorRange *>(new faiss::IDSelectorRange(imin, imax));
    });
}

void faiss_IDSelectorRange_free(FaissIDSelectorRange *obj) {
    delete reinterpret_cast<faiss::IDSelectorRange *>(obj);
}

int faiss_IDSelectorBatch_new(FaissIDSelectorBatch **p_sel, size_t n, const idx_t *indices) {
    return guarded([&] {
        *p_sel = reinterpret_cast<FaissIDSelectorBatch *>(new faiss::IDSelectorBatch(n, indices));
    });
}

/* ---- I/O ----------------------------------------------------------------------- */

int faiss_write_index(const FaissIndex *idx, FILE *f) {
    return guarded([&] { faiss::write_index(cpp(idx), f); });
}

int faiss_write_index_fname(const FaissIndex *idx, const char *fname) {
    return guarded([&] { faiss::write_index(cpp(idx), fname); });
}

int faiss_read_index(FILE *f, int io_flags, FaissIndex **p_out) {
    return guarded([&] { *p_out = c_index(faiss::read_index(f, io_flags)); });
}

int faiss_read_index_fname(const char *fname, int io_flags, FaissIndex **p_out) {
    return guarded([&] { *p_out = c_index(faiss::read_index(fname, io_flags)); });
}

} // extern "C"

/*
 * report_json.c - answers and reports as JSON documents (docs/json.md).
 *
 * The rules every document follows, so that a key means one thing:
 *   - the top level opens with "schema_version" and "kind";
 *   - a count is n_THING ("n_images"), a list is THINGS ("artists", "images");
 *   - a file is an object with "path" (as `remove` accepts it: as given at
 *     build time, or as given on the command line) and, when those bytes are
 *     not UTF-8, "path_hex";
 *   - the index is {"path"}, the model {"path", "fingerprint", "arch",
 *     "pool", "embedding_dim"}, wherever they appear;
 *   - a figure that could not be measured is null; a key is never left out
 *     because its value is missing: it is null.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "answer/index_head.h"
#include "answer/report_json.h"
#include "base/error.h"
#include "index/index.h"

void sx_json_document(sx_json *j, const char *kind) {
    sx_json_object(j);
    sx_json_key(j, "schema_version");
    sx_json_int(j, SIAMIDX_JSON_SCHEMA_VERSION);
    sx_json_key(j, "kind");
    sx_json_string(j, kind);
}

void siamidx_json_free(char *json) { free(json); }

/* Closes the document and hands it over. */
static siamidx_status finish(sx_json *j, char **json, siamidx_error *err) {
    while (j->depth) sx_json_end(j);
    *json = sx_json_take(j);
    return *json ? SIAMIDX_OK : sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "JSON: out of memory");
}

static siamidx_status bad_args(char **json, siamidx_error *err) {
    if (json) *json = NULL;
    return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "JSON: bad arguments");
}

static void num(sx_json *j, const char *key, double v) {
    sx_json_key(j, key);
    sx_json_number(j, v, "%.6g");
}

static void prob(sx_json *j, const char *key, double v) {
    sx_json_key(j, key);
    sx_json_number(j, v, "%.6f");
}

static void count(sx_json *j, const char *key, uint64_t v) {
    sx_json_key(j, key);
    sx_json_uint(j, v);
}

static void str(sx_json *j, const char *key, const char *v) {
    sx_json_key(j, key);
    sx_json_string(j, v);
}

/* key: {"path": ...} (null when path is NULL). */
static void file(sx_json *j, const char *key, const char *path) {
    sx_json_key(j, key);
    if (!path) {
        sx_json_null(j);
        return;
    }
    sx_json_object(j);
    sx_json_path(j, path);
    sx_json_end(j);
}

static void index_ref(sx_json *j, const siamidx_index *idx) {
    file(j, "index", idx ? sx_index_dir(idx) : NULL);
}

/* The model's identity; path NULL when only the index's record of it is known. */
static void model_fields(sx_json *j, const char *path, const char *fingerprint, const char *arch,
                         const char *pool, uint64_t dim) {
    sx_json_key(j, "model");
    sx_json_object(j);
    sx_json_path(j, path);
    str(j, "fingerprint", fingerprint);
    str(j, "arch", arch);
    str(j, "pool", pool);
    count(j, "embedding_dim", dim);
    sx_json_end(j);
}

static void model_ref(sx_json *j, const siamidx_model *m) {
    if (!m) {
        sx_json_key(j, "model");
        sx_json_null(j);
        return;
    }
    siamidx_pool pool = siamidx_model_default_pool(m);
    model_fields(j, siamidx_model_path(m), siamidx_model_fingerprint(m), siamidx_model_arch(m),
                 siamidx_pool_name(pool), siamidx_model_dim(m, pool));
}

/* ---- answers ---------------------------------------------------------------------- */

siamidx_status siamidx_query_json(siamidx_index *idx, const siamidx_model *model,
                                  const char *image, const siamidx_query_result *r, char **json,
                                  siamidx_error *err) {
    if (!json || !r || !image) return bad_args(json, err);
    sx_json j = {0};
    sx_json_document(&j, "query");
    file(&j, "image", image);
    index_ref(&j, idx);
    model_ref(&j, model);
    /* which head scored the artists: "index", "model", or "none" (similarity only) */
    sx_json_key(&j, "head");
    sx_json_object(&j);
    str(&j, "source", siamidx_head_source_name(r->head));
    sx_json_key(&j, "with_classifier");
    sx_json_bool(&j, r->classifier);
    sx_json_end(&j);
    sx_json_key(&j, "exact_match"); /* the indexed image with the query's bytes, or null */
    if (r->exact_match_path) {
        sx_json_object(&j);
        sx_json_path(&j, r->exact_match_path);
        str(&j, "artist", r->exact_match_artist);
        sx_json_end(&j);
    } else {
        sx_json_null(&j);
    }
    sx_json_key(&j, "artists");
    sx_json_array(&j);
    for (size_t i = 0; i < r->n_artists; i++) {
        sx_json_object(&j);
        str(&j, "artist", r->artists[i].artist);
        prob(&j, "probability", r->artists[i].probability);
        sx_json_end(&j);
    }
    sx_json_end(&j);
    prob(&j, "unknown", r->unknown);
    sx_json_key(&j, "neighbors");
    sx_json_array(&j);
    for (size_t i = 0; i < r->n_neighbors; i++) {
        const siamidx_neighbor *n = &r->neighbors[i];
        sx_json_object(&j);
        sx_json_path(&j, n->path);
        str(&j, "artist", n->artist);
        prob(&j, "similarity", n->similarity);
        prob(&j, "probability", n->probability); /* null without a head (NaN) */
        sx_json_end(&j);
    }
    sx_json_end(&j);
    return finish(&j, json, err);
}

siamidx_status siamidx_pair_json(siamidx_index *idx, const siamidx_model *model, const char *a,
                                 const char *b, const siamidx_pair_result *r,
                                 siamidx_head_source head, char **json, siamidx_error *err) {
    if (!json || !r || !a || !b) return bad_args(json, err);
    sx_json j = {0};
    sx_json_document(&j, "pair");
    sx_json_key(&j, "images");
    sx_json_array(&j);
    for (int i = 0; i < 2; i++) {
        sx_json_object(&j);
        sx_json_path(&j, i ? b : a);
        sx_json_end(&j);
    }
    sx_json_end(&j);
    index_ref(&j, idx);
    model_ref(&j, model);
    sx_json_key(&j, "head");
    sx_json_object(&j);
    str(&j, "source", siamidx_head_source_name(head));
    sx_json_end(&j);
    prob(&j, "probability", r->probability);
    prob(&j, "threshold", r->threshold);
    sx_json_key(&j, "same_artist");
    sx_json_bool(&j, r->same_artist);
    return finish(&j, json, err);
}

/* ---- the index -------------------------------------------------------------------- */

siamidx_status siamidx_index_info_json(siamidx_index *idx, const siamidx_index_info *n,
                                       char **json, siamidx_error *err) {
    if (!json || !n || !idx) return bad_args(json, err);
    sx_json j = {0};
    sx_json_document(&j, "index_info");
    index_ref(&j, idx);
    model_fields(&j, NULL, n->fingerprint, n->arch, n->pool, n->dim);
    count(&j, "n_images", n->images);
    count(&j, "n_artists", n->n_artists);
    sx_json_key(&j, "artists");
    sx_json_array(&j);
    for (size_t i = 0; i < n->n_artists; i++) {
        sx_json_object(&j);
        str(&j, "artist", n->artists[i].name);
        count(&j, "n_images", n->artists[i].images);
        sx_json_end(&j);
    }
    sx_json_end(&j);
    str(&j, "index_type", n->index_type);
    str(&j, "faiss", n->faiss);
    sx_json_key(&j, "shard"); /* {"index": I, "count": N} for a shard (build --shard), else null */
    if (n->shard_count) {
        sx_json_object(&j);
        count(&j, "index", n->shard_index);
        count(&j, "count", n->shard_count);
        sx_json_end(&j);
    } else {
        sx_json_null(&j);
    }
    count(&j, "nprobe", n->nprobe); /* ivf/ivfpq: lists searched now; else 0 */
    sx_json_key(&j, "ivfpq");       /* the trained IVF-PQ kept in the store, or null */
    if (n->ivf_nlist) {
        sx_json_object(&j);
        count(&j, "nlist", n->ivf_nlist);
        count(&j, "pq_m", n->pq_m);
        count(&j, "pq_nbits", n->pq_nbits);
        count(&j, "trained_on", n->ivf_trained_on);
        sx_json_key(&j, "imported");
        sx_json_bool(&j, n->ivf_imported);
        str(&j, "tag", n->ivf_tag);
        sx_json_end(&j);
    } else {
        sx_json_null(&j);
    }
    count(&j, "generation", n->generation);
    count(&j, "bytes_on_disk", n->bytes_on_disk);
    return finish(&j, json, err);
}

siamidx_status siamidx_build_report_json(siamidx_index *idx, const char *kind,
                                         const siamidx_build_report *r, char **json,
                                         siamidx_error *err) {
    if (!json || !r || !kind || (strcmp(kind, "build") && strcmp(kind, "add")))
        return bad_args(json, err);
    sx_json j = {0};
    sx_json_document(&j, kind);
    index_ref(&j, idx);
    count(&j, "n_total", r->total);
    count(&j, "n_indexed", r->indexed);
    count(&j, "n_embedded", r->embedded);
    count(&j, "n_reused", r->reused);
    count(&j, "n_unchanged", r->unchanged);
    count(&j, "n_failed", r->failed);
    sx_json_key(&j, "failures");
    sx_json_array(&j);
    for (size_t i = 0; i < r->n_failures; i++) {
        sx_json_object(&j);
        sx_json_path(&j, r->failures[i].path);
        count(&j, "status", (uint64_t)r->failures[i].status);
        str(&j, "message", r->failures[i].message);
        sx_json_end(&j);
    }
    sx_json_end(&j);
    return finish(&j, json, err);
}

siamidx_status siamidx_remove_report_json(siamidx_index *idx, const char *artist,
                                          const char *const *paths, const size_t *matches,
                                          size_t n, size_t removed, char **json,
                                          siamidx_error *err) {
    if (!json || (n && (!paths || !matches)) || (!artist) == (n == 0)) return bad_args(json, err);
    sx_json j = {0};
    sx_json_document(&j, "remove");
    index_ref(&j, idx);
    str(&j, "artist", artist); /* null when paths were named */
    count(&j, "n_removed", removed);
    sx_json_key(&j, "paths"); /* each named path and the images it matched (1: removed) */
    sx_json_array(&j);
    for (size_t i = 0; i < n; i++) {
        sx_json_object(&j);
        sx_json_path(&j, paths[i]);
        count(&j, "n_matched", matches[i]);
        sx_json_end(&j);
    }
    sx_json_end(&j);
    return finish(&j, json, err);
}

siamidx_status siamidx_verify_report_json(siamidx_index *idx, const char *const *problems,
                                          size_t n, char **json, siamidx_error *err) {
    if (!json || (n && !problems)) return bad_args(json, err);
    sx_json j = {0};
    sx_json_document(&j, "verify");
    index_ref(&j, idx);
    sx_json_key(&j, "ok");
    sx_json_bool(&j, n == 0);
    count(&j, "n_problems", n);
    sx_json_key(&j, "problems");
    sx_json_array(&j);
    for (size_t i = 0; i < n; i++) sx_json_string(&j, problems[i]);
    sx_json_end(&j);
    return finish(&j, json, err);
}

/* ---- the model -------------------------------------------------------------------- */

siamidx_status siamidx_model_info_json(const siamidx_model *m, char **json, siamidx_error *err) {
    if (!json || !m) return bad_args(json, err);
    siamidx_model_description d;
    siamidx_model_describe(m, &d);
    char style[32] = ""; /* "1,2,3,4": the stages that feed style pooling */
    for (int s = 0, o = 0; s < 4; s++)
        if (d.style_stages & (1u << s))
            o += snprintf(style + o, sizeof style - (size_t)o, "%s%d", o ? "," : "", s + 1);
    sx_json j = {0};
    sx_json_document(&j, "model_info");
    model_ref(&j, m);
    sx_json_key(&j, "bottleneck");
    sx_json_bool(&j, d.bottleneck);
    count(&j, "n_stages", (uint64_t)d.n_stages);
    sx_json_key(&j, "stage_channels");
    sx_json_array(&j);
    for (int s = 0; s < d.n_stages; s++) sx_json_int(&j, d.stage_channels[s]);
    sx_json_end(&j);
    count(&j, "input_size", (uint64_t)d.input_size);
    count(&j, "resize", (uint64_t)d.resize_size);
    str(&j, "resize_policy", d.squash ? "squash" : "shorter_center_crop");
    const char *names[2] = {"mean", "std"};
    const float *values[2] = {d.mean, d.std};
    for (int k = 0; k < 2; k++) {
        sx_json_key(&j, names[k]);
        sx_json_array(&j);
        for (int c = 0; c < 3; c++) sx_json_number(&j, values[k][c], "%.7g");
        sx_json_end(&j);
    }
    sx_json_key(&j, "gem_p");
    sx_json_number(&j, d.gem_p, "%.7g");
    str(&j, "style_stages", style);
    count(&j, "n_classes", (uint64_t)d.n_classes);
    count(&j, "n_parameters", d.n_params);
    sx_json_key(&j, "metadata");
    sx_json_object(&j);
    for (size_t i = 0; i < siamidx_model_meta_count(m); i++) {
        const char *k = siamidx_model_meta_key(m, i);
        str(&j, k, siamidx_model_meta(m, k));
    }
    sx_json_end(&j);
    return finish(&j, json, err);
}

/* ---- training and evaluation ------------------------------------------------------ */

siamidx_status siamidx_train_report_json(siamidx_index *idx, const siamidx_train_report *r,
                                         uint64_t seed, const char *saved_to_model, char **json,
                                         siamidx_error *err) {
    if (!json || !r) return bad_args(json, err);
    sx_json j = {0};
    sx_json_document(&j, "train");
    index_ref(&j, idx);
    count(&j, "seed", seed);
    sx_json_key(&j, "head");
    sx_json_object(&j);
    num(&j, "val_auc", r->val_auc);
    num(&j, "val_accuracy", r->val_accuracy);
    num(&j, "val_ece", r->val_ece);
    num(&j, "threshold", r->threshold);
    count(&j, "epochs_run", (uint64_t)r->epochs_run);
    count(&j, "best_epoch", (uint64_t)r->best_epoch);
    sx_json_end(&j);
    sx_json_key(&j, "split");
    sx_json_object(&j);
    count(&j, "n_train", r->n_train);
    count(&j, "n_val", r->n_val);
    count(&j, "n_test", r->n_test);
    count(&j, "n_unseen", r->n_unseen);
    count(&j, "n_unseen_artists", r->n_unseen_artists);
    sx_json_end(&j);
    sx_json_key(&j, "classifier");
    sx_json_object(&j);
    count(&j, "n_artists", r->n_classes);
    num(&j, "val_top1", r->classifier_val_top1);
    num(&j, "val_balanced_top1", r->classifier_val_balanced_top1);
    num(&j, "fused_val_top1", r->fused_val_top1);
    num(&j, "fuse_weight", r->fuse_weight);
    num(&j, "unknown_prior", r->unknown_prior);
    sx_json_end(&j);
    file(&j, "saved_to_model", saved_to_model);
    return finish(&j, json, err);
}

static void legacy_pairs(sx_json *j, const char *key, const siamidx_pair_metrics *m) {
    sx_json_key(j, key);
    if (!m) {
        sx_json_null(j);
        return;
    }
    sx_json_object(j);
    count(j, "n_pairs", m->n_pairs);
    num(j, "auc", m->auc);
    num(j, "accuracy", m->accuracy);
    num(j, "eer", m->eer);
    num(j, "tar_at_far1", m->tar_at_far1);
    num(j, "ece", m->ece);
    sx_json_end(j);
}

static void legacy_attr(sx_json *j, const char *key, const siamidx_attribution_metrics *a) {
    sx_json_key(j, key);
    if (!a) {
        sx_json_null(j);
        return;
    }
    sx_json_object(j);
    count(j, "n_queries", a->n_queries);
    num(j, "top1", a->top1);
    num(j, "top3", a->top3);
    num(j, "balanced_top1", a->balanced);
    num(j, "unknown_first", a->unknown_first);
    num(j, "mean_top_probability", a->mean_top_prob);
    sx_json_end(j);
}

siamidx_status siamidx_eval_report_json(siamidx_index *idx, const siamidx_eval_report *r,
                                        char **json, siamidx_error *err) {
    if (!json || !r) return bad_args(json, err);
    sx_json j = {0};
    sx_json_document(&j, "eval_legacy");
    index_ref(&j, idx);
    num(&j, "threshold", r->threshold);
    legacy_pairs(&j, "seen_pairs", &r->seen);
    legacy_attr(&j, "seen_attribution", &r->seen_attr);
    legacy_pairs(&j, "unseen_pairs", r->has_unseen ? &r->unseen : NULL);
    legacy_attr(&j, "unseen_attribution", r->has_unseen ? &r->unseen_attr : NULL);
    return finish(&j, json, err);
}

static void verification(sx_json *j, const char *key, const siamidx_protocol_verification *v) {
    sx_json_key(j, key);
    sx_json_object(j);
    count(j, "n_positives", v->positives);
    count(j, "n_negatives", v->negatives);
    num(j, "auc", v->auc);
    num(j, "eer", v->eer);
    num(j, "tar_at_far1", v->tar_at_far1);
    num(j, "ece", v->ece);
    sx_json_end(j);
}

static void protocol_pairs(sx_json *j, const siamidx_protocol_pairs *p) {
    sx_json_key(j, "pairs");
    sx_json_object(j);
    verification(j, "same_source", &p->same_source);
    verification(j, "same_style", &p->same_style);
    count(j, "n_style_fallback", p->style_fallback);
    count(j, "n_source_fallback", p->source_fallback);
    sx_json_end(j);
}

/* Unseen queries have no right answer among the indexed artists: top1.. are null. */
static void protocol_attr(sx_json *j, const siamidx_protocol_attribution *a, int named) {
    sx_json_key(j, "attribution");
    sx_json_object(j);
    count(j, "n_queries", a->queries);
    count(j, "n_artists", a->artists);
    num(j, "top1", named ? a->top1 : NAN);
    num(j, "top3", named ? a->top3 : NAN);
    num(j, "balanced_top1", named ? a->balanced_top1 : NAN);
    num(j, "unknown_first", a->unknown_first);
    num(j, "mean_unknown", a->mean_unknown);
    sx_json_end(j);
}

static void protocol_group(sx_json *j, const siamidx_protocol_group *g, int with_source) {
    sx_json_object(j);
    if (with_source) str(j, "source", g->source ? g->source : "");
    sx_json_key(j, "seen");
    sx_json_object(j);
    count(j, "n_images", g->seen_images);
    protocol_pairs(j, &g->seen_pairs);
    protocol_attr(j, &g->seen_attribution, 1);
    sx_json_end(j);
    sx_json_key(j, "unseen");
    sx_json_object(j);
    count(j, "n_images", g->unseen_images);
    count(j, "n_artists", g->unseen_artists);
    protocol_pairs(j, &g->unseen_pairs);
    protocol_attr(j, &g->unseen_attribution, 0);
    sx_json_end(j);
    sx_json_key(j, "open_set");
    sx_json_object(j);
    num(j, "auroc", g->open_set_auroc);
    num(j, "unknown_first_indexed", g->seen_attribution.unknown_first);
    num(j, "unknown_first_unseen", g->unseen_attribution.unknown_first);
    sx_json_end(j);
    sx_json_end(j);
}

siamidx_status siamidx_protocol_report_json(siamidx_index *idx, const siamidx_protocol_report *r,
                                            char **json, siamidx_error *err) {
    if (!json || !r || r->n_groups < 1) return bad_args(json, err);
    sx_json j = {0};
    sx_json_document(&j, "eval");
    index_ref(&j, idx);
    count(&j, "protocol", 1);
    count(&j, "seed", r->seed);
    count(&j, "n_pairs", r->pairs);
    sx_json_key(&j, "gallery");
    sx_json_object(&j);
    count(&j, "n_images", r->gallery_images);
    count(&j, "n_artists", r->gallery_artists);
    sx_json_end(&j);
    sx_json_key(&j, "overall");
    protocol_group(&j, &r->groups[0], 0);
    sx_json_key(&j, "by_source"); /* by source name; "" for images without one */
    sx_json_array(&j);
    for (size_t i = 1; i < r->n_groups; i++) protocol_group(&j, &r->groups[i], 1);
    sx_json_end(&j);
    return finish(&j, json, err);
}

/* ---- whole answers, for bindings ------------------------------------------------------ */

siamidx_status siamidx_index_query_json(siamidx_index *idx, const siamidx_model *model,
                                        const char *image, const siamidx_query_options *opt,
                                        char **json, siamidx_error *err) {
    if (!json) return bad_args(json, err);
    *json = NULL;
    siamidx_query_options o;
    siamidx_query_options_init(&o);
    siamidx_query_result r;
    siamidx_status st = siamidx_index_query_opts(idx, model, image, opt ? opt : &o, &r, err);
    if (!st) st = siamidx_query_json(idx, model, image, &r, json, err);
    siamidx_query_result_free(&r);
    return st;
}

siamidx_status siamidx_index_pair_json(siamidx_index *idx, const siamidx_model *model,
                                       const char *a, const char *b, char **json,
                                       siamidx_error *err) {
    if (!json || !model || !a || !b) return bad_args(json, err);
    *json = NULL;
    sx_head *owned = NULL;
    const sx_head *head = NULL;
    siamidx_head_source source;
    siamidx_status st = sx_answer_head(idx, model, &owned, &head, &source, err);
    if (!st && !head)
        st = sx_fail(err, SIAMIDX_ERR_NO_HEAD,
                     "no trained head: run `siamidx train` on an index (the model %s carries no "
                     "default head)", siamidx_model_path(model));
    siamidx_pair_result r;
    if (!st) st = siamidx_pair_files(model, head, a, b, NULL, &r, err);
    if (!st) st = siamidx_pair_json(idx, model, a, b, &r, source, json, err);
    siamidx_head_free(owned);
    return st;
}

siamidx_status siamidx_index_add_json(siamidx_index *idx, const siamidx_model *model,
                                      const char *const *paths, size_t n, const char *artist,
                                      char **json, siamidx_error *err) {
    if (!json) return bad_args(json, err);
    *json = NULL;
    siamidx_build_options o;
    siamidx_build_options_init(&o);
    siamidx_build_report r;
    memset(&r, 0, sizeof r);
    siamidx_status st = siamidx_index_add(idx, model, paths, n, artist, &o, &r, err);
    if (st == SIAMIDX_OK || st == SIAMIDX_ERR_IMAGE) {
        siamidx_error e2;
        siamidx_status js = siamidx_build_report_json(idx, "add", &r, json, &e2);
        if (js) {
            st = js;
            if (err) *err = e2;
        } else if (st == SIAMIDX_ERR_IMAGE) {
            sx_fail(err, st, "%zu of %zu images could not be indexed%s%s", r.failed, r.total,
                    r.n_failures ? ": " : "", r.n_failures ? r.failures[0].message : "");
        }
    }
    siamidx_build_report_free(&r);
    return st;
}

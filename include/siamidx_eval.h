/*
 * siamidx_eval.h - the evaluation protocol on an index (docs/evaluation.md).
 *
 * Two populations of held-out images: "seen" (the test images the head's
 * split kept out, of artists it trained on) and "unseen" (every image of
 * artists the head never saw: the list given here, else the head's own
 * held-out artists). For each:
 *   pairs        same-artist pairs drawn round-robin over artists, against
 *                two negative sets of the same size, each negative keeping
 *                one image of a positive: (a) with an image of another
 *                artist from the same source, (b) from the same source and
 *                the same top folder of source_path (WikiArt's style);
 *   attribution  top-1 / top-3 / balanced top-1 of seen test images against
 *                the gallery (the head's training and validation images);
 *   open set     the "unknown" share: AUROC of unseen against seen queries,
 *                and how often it outranks every named artist.
 * Every figure overall and per source (source_repo). Unmeasurable figures
 * are NaN.
 */
#ifndef SIAMIDX_EVAL_H
#define SIAMIDX_EVAL_H

#include "siamidx.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct siamidx_protocol_options {
    uint64_t seed;       /* pair draws */
    size_t pairs;        /* same-artist pairs per population; 0: 10,000 */
    const char *const *unseen_artists; /* artists kept out of the head (and the
                                          encoder); NULL: the head's held-out ones */
    size_t n_unseen_artists;
} siamidx_protocol_options;

void siamidx_protocol_options_init(siamidx_protocol_options *opt);

typedef struct siamidx_protocol_verification {
    size_t positives, negatives;
    double auc, eer, tar_at_far1, ece;
} siamidx_protocol_verification;

typedef struct siamidx_protocol_pairs {
    siamidx_protocol_verification same_source; /* negatives (a) */
    siamidx_protocol_verification same_style;  /* negatives (b) */
    size_t style_fallback;  /* (b) negatives drawn as (a): no same-style image by another artist */
    size_t source_fallback; /* negatives of (a) or (b) from another source: none in the anchor's */
} siamidx_protocol_pairs;

typedef struct siamidx_protocol_attribution {
    size_t queries, artists;
    double top1, top3, balanced_top1; /* NaN for unseen queries (no right answer is named) */
    double unknown_first;             /* share where "unknown" outranks every named artist */
    double mean_unknown;              /* mean "unknown" share */
} siamidx_protocol_attribution;

typedef struct siamidx_protocol_group {
    char *source; /* NULL: all sources together */
    size_t seen_images, unseen_images, unseen_artists;
    siamidx_protocol_pairs seen_pairs, unseen_pairs;
    siamidx_protocol_attribution seen_attribution, unseen_attribution;
    double open_set_auroc; /* unknown share: unseen-artist vs indexed-artist queries */
} siamidx_protocol_group;

typedef struct siamidx_protocol_report {
    uint64_t seed;
    size_t pairs;
    size_t gallery_images, gallery_artists;
    size_t n_groups;
    siamidx_protocol_group *groups; /* [0]: overall; then one per source, by name */
} siamidx_protocol_report;

/*
 * Runs the protocol with the index's trained head. Refuses
 * (SIAMIDX_ERR_INVALID_ARGUMENT) an unseen artist the index does not hold,
 * or one the head trained on: any of its images in the head's validation or
 * test split, or more images in the head's training index than the index
 * holds outside the unseen artists.
 */
siamidx_status siamidx_index_evaluate_protocol(siamidx_index *idx,
                                               const siamidx_protocol_options *opt,
                                               siamidx_protocol_report *out, siamidx_error *err);
void siamidx_protocol_report_free(siamidx_protocol_report *r);

#ifdef __cplusplus
}
#endif

#endif

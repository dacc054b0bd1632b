/* base/metrics.h - verification metrics (ROC AUC, EER, TAR@FAR, calibration). */
#ifndef SX_BASE_METRICS_H
#define SX_BASE_METRICS_H

#include <stddef.h>
#include <stdint.h>


/* ROC AUC with ties counted half (Mann-Whitney). NaN without both classes. */
double sx_roc_auc(const float *score, const uint8_t *label, size_t n);
/* Equal error rate: where false accept rate meets false reject rate. */
double sx_eer(const float *score, const uint8_t *label, size_t n);
/* True accept rate at the threshold whose false accept rate is <= far. */
double sx_tar_at_far(const float *score, const uint8_t *label, size_t n, double far);
double sx_accuracy_at(const float *score, const uint8_t *label, size_t n, double threshold);
/* Threshold (one of the scores, or the midpoint between two) maximising accuracy. */
double sx_best_threshold(const float *score, const uint8_t *label, size_t n);
/* Expected calibration error over `bins` equal-width probability bins. */
double sx_ece(const float *prob, const uint8_t *label, size_t n, int bins);

/*
 * The ROC curve: (false accept rate, true accept rate) at every distinct
 * threshold, from (0,0) to (1,1), thinned to at most max_points (>= 2)
 * evenly spaced along the sweep, both ends kept. far/tar hold max_points
 * floats; returns the points written, 0 without both classes or memory.
 */
size_t sx_roc_curve(const float *score, const uint8_t *label, size_t n, size_t max_points,
                    float *far, float *tar);

#endif /* SX_BASE_METRICS_H */

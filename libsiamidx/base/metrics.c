/*
 * metrics.c - how well pair scores separate same-artist from different-artist
 * pairs, and how honest the probabilities are.
 *
 * Every threshold metric sweeps the scores once in descending order, moving
 * a whole group of tied scores at a time: a threshold can never split ties,
 * so the results do not depend on the order of equal scores.
 */
#include <math.h>
#include <stdlib.h>

#include "base/metrics.h"

typedef struct {
    float score;
    uint8_t label;
} scored;

static int cmp_desc(const void *pa, const void *pb) {
    const scored *a = pa, *b = pb;
    return (a->score < b->score) - (a->score > b->score);
}

/* Sorted copy (descending) and class counts; NULL when one class is empty or OOM. */
static scored *sort_desc(const float *score, const uint8_t *label, size_t n, size_t *npos,
                         size_t *nneg) {
    *npos = *nneg = 0;
    for (size_t i = 0; i < n; i++) label[i] ? (*npos)++ : (*nneg)++;
    if (!*npos || !*nneg) return NULL;
    scored *s = malloc(n * sizeof *s);
    if (!s) return NULL;
    for (size_t i = 0; i < n; i++) s[i] = (scored){score[i], label[i] ? 1 : 0};
    qsort(s, n, sizeof *s, cmp_desc);
    return s;
}

/* End (exclusive) of the tie group starting at i. */
static size_t tie_end(const scored *s, size_t n, size_t i) {
    size_t j = i + 1;
    while (j < n && s[j].score == s[i].score) j++;
    return j;
}

double sx_roc_auc(const float *score, const uint8_t *label, size_t n) {
    size_t npos, nneg;
    scored *s = sort_desc(score, label, n, &npos, &nneg);
    if (!s) return NAN;
    /* For each positive: negatives strictly below it, plus half of the tied ones. */
    double wins = 0, neg_above = 0;
    for (size_t i = 0; i < n;) {
        size_t j = tie_end(s, n, i), p = 0, q = 0;
        for (size_t k = i; k < j; k++) s[k].label ? p++ : q++;
        wins += (double)p * ((double)nneg - neg_above - q) + 0.5 * (double)p * q;
        neg_above += q;
        i = j;
    }
    free(s);
    return wins / ((double)npos * nneg);
}

double sx_eer(const float *score, const uint8_t *label, size_t n) {
    size_t npos, nneg;
    scored *s = sort_desc(score, label, n, &npos, &nneg);
    if (!s) return NAN;
    /* Threshold above everything: FAR 0, FRR 1. Lower it one tie group at a time. */
    double tp = 0, fp = 0, best = 1, prev_far = 0, prev_frr = 1;
    for (size_t i = 0; i < n;) {
        size_t j = tie_end(s, n, i);
        for (size_t k = i; k < j; k++) s[k].label ? tp++ : fp++;
        double far = fp / nneg, frr = 1 - tp / npos;
        if (far >= frr) {
            /* The curves cross between the previous and this threshold:
               interpolate linearly along the segment. */
            double d0 = prev_frr - prev_far, d1 = far - frr;
            double t = d0 + d1 > 0 ? d0 / (d0 + d1) : 0;
            best = prev_far + t * (far - prev_far);
            break;
        }
        prev_far = far;
        prev_frr = frr;
        i = j;
    }
    free(s);
    return best;
}

double sx_tar_at_far(const float *score, const uint8_t *label, size_t n, double far) {
    size_t npos, nneg;
    scored *s = sort_desc(score, label, n, &npos, &nneg);
    if (!s) return NAN;
    double tp = 0, fp = 0, tar = 0;
    for (size_t i = 0; i < n;) {
        size_t j = tie_end(s, n, i);
        for (size_t k = i; k < j; k++) s[k].label ? tp++ : fp++;
        if (fp / nneg > far) break;
        tar = tp / npos;
        i = j;
    }
    free(s);
    return tar;
}

double sx_accuracy_at(const float *score, const uint8_t *label, size_t n, double threshold) {
    if (!n) return NAN;
    size_t right = 0;
    for (size_t i = 0; i < n; i++) right += (score[i] >= threshold) == (label[i] != 0);
    return (double)right / n;
}

double sx_best_threshold(const float *score, const uint8_t *label, size_t n) {
    size_t npos, nneg;
    scored *s = sort_desc(score, label, n, &npos, &nneg);
    if (!s) return 0.5;
    /* Accept everything at or above the group: right = tp + (nneg - fp). */
    double tp = 0, fp = 0, best_right = (double)nneg, best_t = s[0].score + 1.0;
    for (size_t i = 0; i < n;) {
        size_t j = tie_end(s, n, i);
        for (size_t k = i; k < j; k++) s[k].label ? tp++ : fp++;
        double right = tp + ((double)nneg - fp);
        if (right > best_right) {
            best_right = right;
            best_t = j < n ? 0.5 * ((double)s[i].score + s[j].score) : s[i].score;
        }
        i = j;
    }
    free(s);
    return best_t;
}

double sx_ece(const float *prob, const uint8_t *label, size_t n, int bins) {
    if (!n || bins < 1) return NAN;
    double *sum_p = calloc((size_t)bins, sizeof *sum_p), *sum_y = calloc((size_t)bins, sizeof *sum_y);
    size_t *count = calloc((size_t)bins, sizeof *count);
    double ece = NAN;
    if (sum_p && sum_y && count) {
        for (size_t i = 0; i < n; i++) {
            int b = (int)(prob[i] * bins);
            b = b < 0 ? 0 : b >= bins ? bins - 1 : b;
            sum_p[b] += prob[i];
            sum_y[b] += label[i] != 0;
            count[b]++;
        }
        ece = 0;
        for (int b = 0; b < bins; b++)
            if (count[b]) ece += fabs(sum_p[b] - sum_y[b]) / n;
    }
    free(sum_p);
    free(sum_y);
    free(count);
    return ece;
}

size_t sx_roc_curve(const float *score, const uint8_t *label, size_t n, size_t max_points,
                    float *far, float *tar) {
    size_t npos, nneg;
    if (max_points < 2) return 0;
    scored *s = sort_desc(score, label, n, &npos, &nneg);
    if (!s) return 0;
    /* Pass 1 counts the tie groups (the curve's points after (0,0)). */
    size_t groups = 0;
    for (size_t i = 0; i < n; i = tie_end(s, n, i)) groups++;
    size_t kept = 1, step_at = 0, g = 0;
    double tp = 0, fp = 0;
    far[0] = tar[0] = 0;
    for (size_t i = 0; i < n; g++) {
        size_t j = tie_end(s, n, i);
        for (size_t k = i; k < j; k++) s[k].label ? tp++ : fp++;
        i = j;
        /* point g+1 of groups: keep it when the even spacing reaches it, and the last one */
        step_at = (size_t)((double)(kept) * (double)groups / (double)(max_points - 1));
        if (g + 1 >= step_at || i == n) {
            if (kept == max_points) kept--; /* the last point replaces a thinned one */
            far[kept] = (float)(fp / (double)nneg);
            tar[kept] = (float)(tp / (double)npos);
            kept++;
        }
    }
    free(s);
    return kept;
}

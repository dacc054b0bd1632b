/* head/labelled.h - labelled embeddings: what head training, attribution fitting and evaluation read. */
#ifndef SX_HEAD_LABELLED_H
#define SX_HEAD_LABELLED_H

#include <stddef.h>
#include <stdint.h>


enum { SX_ROLE_TRAIN = 0, SX_ROLE_VAL, SX_ROLE_TEST, SX_ROLE_UNSEEN };

/* What training sees: n embeddings of dim floats with an artist id each. */
typedef struct sx_train_data {
    size_t n;
    int dim;
    const float *emb;
    const int32_t *artist;       /* 0 .. n_artists-1 */
    int n_artists;
    const char *const *artist_names; /* [n_artists], for the split record; may be NULL */
    const char *const *keys;     /* [n] image names for the split record; may be NULL */
} sx_train_data;

#endif /* SX_HEAD_LABELLED_H */

/* head/split.h - the roles of images as a trained head's split record names them. */
#ifndef SX_HEAD_SPLIT_H
#define SX_HEAD_SPLIT_H

#include <stddef.h>
#include <stdint.h>

#include "siamidx.h"
#include "head/head.h"
#include "head/labelled.h"

/* The split record of roles: `settings` (key=value lines), then the held-out
   artists and the validation and test images; malloc'd, NULL when out of memory. */
char *sx_split_record(const char *settings, const sx_train_data *d, const uint8_t *roles);

/* Roles of d's images as recorded in h->info by sx_head_train (keys, or "#row"
   when d has none); NOT_FOUND when the head carries no split record. */
siamidx_status sx_head_roles(const sx_head *h, const sx_train_data *d, uint8_t *roles,
                             siamidx_error *err);

#endif /* SX_HEAD_SPLIT_H */

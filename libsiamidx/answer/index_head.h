/* answer/index_head.h - the head of an index, and which head answers. */
#ifndef SX_ANSWER_INDEX_HEAD_H
#define SX_ANSWER_INDEX_HEAD_H

#include "siamidx.h"
#include "head/classifier.h"
#include "head/head.h"

/* The index's own trained head (free it), or SIAMIDX_ERR_NOT_FOUND. */
siamidx_status sx_index_stored_head(siamidx_index *idx, sx_head **out, siamidx_error *err);

/*
 * The one rule for every answer (query and pair): the index's head (idx may
 * be NULL), else the model's default head (model may be NULL), else none.
 * *head is what to score with (NULL: none), *owned what the caller frees,
 * *source which it was. Fails only when the index's head cannot be read.
 */
siamidx_status sx_answer_head(siamidx_index *idx, const siamidx_model *model, sx_head **owned,
                              const sx_head **head, siamidx_head_source *source,
                              siamidx_error *err);

/* The same, and the index's classifier (*clf, may be NULL: none) when the
   index's own head answers and the classifier was fitted with that head. */
siamidx_status sx_answer_head_classifier(siamidx_index *idx, const siamidx_model *model,
                                         sx_head **owned, const sx_head **head,
                                         siamidx_head_source *source, sx_classifier **clf,
                                         siamidx_error *err);

#endif /* SX_ANSWER_INDEX_HEAD_H */

/*
 * answer/report_json.h - every answer and report as a JSON document: the one
 * schema of docs/json.md (docs/json-schema.json), written by base/json.c.
 * The CLI's --json and the Python module both take their documents from
 * here (siamidx_*_json in siamidx_ext.h), so they cannot drift apart.
 */
#ifndef SX_ANSWER_REPORT_JSON_H
#define SX_ANSWER_REPORT_JSON_H

#include "siamidx_ext.h"
#include "base/json.h"

/* The opening of every document: {"schema_version":N,"kind":KIND, ... (left open). */
void sx_json_document(sx_json *j, const char *kind);

#endif /* SX_ANSWER_REPORT_JSON_H */

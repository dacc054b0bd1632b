/* data/csv.h - RFC 4180 CSV reader, UTF-8 validation. */
#ifndef SX_DATA_CSV_H
#define SX_DATA_CSV_H

#include <stddef.h>
#include <stdint.h>

#include "siamidx.h"

/*
 * An RFC 4180 CSV reader that streams a file (or a memory buffer). Fields
 * may be quoted ("" escapes, embedded commas and line breaks); CRLF, LF or CR
 * line ends; a UTF-8 BOM is skipped; blank lines are skipped.
 */
typedef struct sx_csv sx_csv;

siamidx_status sx_csv_open(const char *path, sx_csv **out, siamidx_error *err);
/* Reads `data` (not copied: it must outlive the reader); `name` is for messages. */
siamidx_status sx_csv_open_memory(const char *data, size_t len, const char *name, sx_csv **out,
                                  siamidx_error *err);
void sx_csv_close(sx_csv *csv);
/*
 * Reads the next record: *fields (NUL-terminated, valid until the next call)
 * and *n fields; *n == 0 at the end of the input. A malformed record gives
 * SIAMIDX_ERR_CSV ("FILE: line N: reason": unterminated quoted field, quote
 * inside an unquoted field, character after a closing quote, NUL byte,
 * record over 1 MiB) and the next call resumes at the next line. A read error
 * gives SIAMIDX_ERR_IO and ends the input.
 */
siamidx_status sx_csv_next(sx_csv *csv, char ***fields, size_t *n, siamidx_error *err);
/* The line (1-based) where the record last returned (or refused) began. */
long sx_csv_line(const sx_csv *csv);
const char *sx_csv_name(const sx_csv *csv);

/* Strict UTF-8 (no overlongs, surrogates, > U+10FFFF): n when valid, else the
   offset of the first bad byte. */
size_t sx_utf8_check(const char *s, size_t n);

#endif /* SX_DATA_CSV_H */

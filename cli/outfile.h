/*
 * outfile.h - output files written atomically: into a temporary file in the
 * target's directory, flushed and fsync'd, renamed over the target, and the
 * directory fsync'd. A reader (or a crash at any point) sees the old file or
 * the complete new one, never a part. "-" or NULL is standard output.
 */
#ifndef SIAMIDX_CLI_OUTFILE_H
#define SIAMIDX_CLI_OUTFILE_H

#include <stdio.h>

typedef struct cli_outfile {
    FILE *f;
    const char *path; /* NULL: standard output */
    char tmp[4096];
} cli_outfile;

/* 0, or -1 after a message. */
int cli_outfile_open(cli_outfile *o, const char *path);
/* ok: the content is complete. Commits it (0), or discards it (-1, message
   unless !ok: the caller reported why). */
int cli_outfile_close(cli_outfile *o, int ok);

#endif

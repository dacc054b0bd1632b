/* lines.h - list files: one entry a line (artist names, image paths). */
#ifndef SIAMIDX_CLI_LINES_H
#define SIAMIDX_CLI_LINES_H

#include <stddef.h>

typedef struct cli_lines {
    char **line;
    size_t n;
} cli_lines;

/*
 * Reads FILE: one entry a line, surrounding blanks and a CR trimmed, empty
 * lines and lines starting with '#' skipped. An unreadable file, an empty
 * list or a line longer than 4095 bytes is an error printed as
 * "siamidx: COMMAND: ..." (what: "artist", "image", for the message).
 * Returns 0 or -1 (out then holds nothing).
 */
int cli_read_lines(const char *command, const char *path, const char *what, cli_lines *out);
void cli_lines_free(cli_lines *l);

#endif

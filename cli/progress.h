/*
 * progress.h - progress of a long command on stderr, as `build` shows it: on
 * a terminal one line redrawn in place ("\r": count, rate, ETA, at most ten
 * times a second); otherwise (a log file, a pipe) plain lines, one every
 * `every` seconds and one at the end, never a "\r".
 */
#ifndef SIAMIDX_CLI_PROGRESS_H
#define SIAMIDX_CLI_PROGRESS_H

#include <stddef.h>

typedef struct cli_progress {
    const char *what, *unit; /* "train", "epochs" */
    double start, last;
    double every;  /* seconds between plain lines (not a terminal) */
    int tty, open; /* open: a redrawn line is on the terminal, not yet ended */
    int quiet;
    size_t done, total; /* the last update */
    int pending;        /* not shown yet */
} cli_progress;

/* Seconds on the monotonic clock: what rates and ETAs are measured with. */
double cli_now(void);

/* what: the command; unit: what is counted. quiet: show nothing. */
void cli_progress_init(cli_progress *p, const char *what, const char *unit, int quiet);
/* A siamidx_progress_fn: ctx is the cli_progress. */
void cli_progress_update(void *ctx, size_t done, size_t total);
/* Ends the redrawn line (if any) so that what follows starts on its own line. */
void cli_progress_end(cli_progress *p);

#endif

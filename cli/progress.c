/* progress.c - progress lines on stderr: redrawn on a terminal, plain in a log (progress.h). */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "progress.h"

double cli_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

void cli_progress_init(cli_progress *p, const char *what, const char *unit, int quiet) {
    *p = (cli_progress){what, unit, cli_now(), 0, 10, isatty(2), 0, quiet, 0, 0, 0};
}

static void eta_text(double seconds, char *out, size_t cap) {
    int s = (int)(seconds + 0.5);
    if (s >= 3600) snprintf(out, cap, "%dh%02dm", s / 3600, s / 60 % 60);
    else snprintf(out, cap, "%dm%02ds", s / 60, s % 60);
}

static void show(cli_progress *p, size_t done, size_t total, double t);

void cli_progress_update(void *ctx, size_t done, size_t total) {
    cli_progress *p = ctx;
    if (p->quiet) return;
    double t = cli_now();
    p->done = done, p->total = total, p->pending = 1;
    /* a terminal redraws often, a log gets a line now and then */
    if (done < total && p->last > 0 && t - p->last < (p->tty ? 0.1 : p->every)) return;
    if (!p->tty && done == 0 && total > 0) return; /* a log line says something has been done */
    show(p, done, total, t);
}

static void show(cli_progress *p, size_t done, size_t total, double t) {
    double dt = t - p->start;
    int finished = done >= total;
    p->last = t;
    p->pending = 0;
    double rate = dt > 0 ? (double)done / dt : 0;
    char eta[32];
    eta_text(rate > 0 && total > done ? (double)(total - done) / rate : 0, eta, sizeof eta);
    if (p->tty) {
        const int width = 30;
        int fill = total ? (int)((double)width * (double)done / (double)total) : width;
        char bar[64];
        for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
        bar[width] = 0;
        fprintf(stderr, "\r%s: [%s] %zu/%zu %s  %.1f/s  ETA %s ", p->what, bar, done, total,
                p->unit, rate, eta);
        p->open = 1;
        if (finished) cli_progress_end(p);
    } else {
        fprintf(stderr, "%s: %zu/%zu %s, %.1f/s, ETA %s\n", p->what, done, total, p->unit, rate,
                eta);
    }
    fflush(stderr);
}

void cli_progress_end(cli_progress *p) {
    /* the last count (it may stop short of the total: early stopping) */
    if (p->pending && !p->quiet) show(p, p->done, p->total, cli_now());
    if (p->open) fputc('\n', stderr);
    p->open = 0;
}

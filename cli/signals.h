/* signals.h - stopping a long command cleanly on SIGINT/SIGTERM (build, add, merge). */
#ifndef SIAMIDX_CLI_SIGNALS_H
#define SIAMIDX_CLI_SIGNALS_H

/*
 * Installs the handlers and returns the flag they raise, for the library's
 * `stop` options: the command stops at its next safe point (a committed
 * batch, a merged shard). A second signal kills at once (LMDB's crash
 * safety covers that too). A signal the caller ignores (nohup, a shell's
 * background job) stays ignored.
 */
volatile int *cli_catch_stop_signals(void);

#endif

/* cli.h - what the subcommands of the siamidx tool share. */
#ifndef SIAMIDX_CLI_H
#define SIAMIDX_CLI_H

#include "siamidx.h"

/* Exit codes (documented in `siamidx --help`). */
enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_FAILURE = 1, /* the command failed; nothing (more) was done */
    CLI_EXIT_USAGE = 2,   /* bad command line */
    CLI_EXIT_PARTIAL = 3, /* some inputs failed, the rest were processed */
    CLI_EXIT_INTERRUPTED = 130 /* SIGINT/SIGTERM: stopped cleanly, work done so far kept */
};

/* Each subcommand: argv[0] is the subcommand's name. Returns an exit code. */
typedef int (*cli_command_fn)(int argc, char **argv);

int cmd_embed(int argc, char **argv);
int cmd_model_info(int argc, char **argv);
int cmd_build(int argc, char **argv); /* cmd_index.c */
int cmd_add(int argc, char **argv);
int cmd_query(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_remove(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_dump(int argc, char **argv); /* hidden: records as TSV, for tests */
int cmd_train_encoder(int argc, char **argv); /* cmd_train_encoder.c */
int cmd_train(int argc, char **argv); /* cmd_head.c */
int cmd_eval(int argc, char **argv); /* cmd_eval.c: the evaluation protocol */
int cmd_eval_legacy(const char *index, int json); /* cmd_head.c: the earlier report */
int cmd_pair(int argc, char **argv);
int cmd_merge(int argc, char **argv); /* cmd_merge.c */

/* Removes an index directory a command created and left empty (its own files
   only; anything else in the directory keeps it). cmd_index.c */
void cli_remove_new_index(const char *dir);

/* Prints "siamidx: <message>" to stderr (one line). */
void cli_error(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/*
 * Loads the model named by -m, or $SIAMIDX_MODEL, or the default model.
 * Prints a clear error and returns NULL when none can be loaded.
 */
siamidx_model *cli_load_model(const char *path);

#endif

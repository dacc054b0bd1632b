/*
 * args.h - the one command-line parser every subcommand uses.
 *
 * A command describes its options in a table; cli_parse reads argv with
 * getopt_long (options and operands in any order), checks every value
 * (numbers in range, choices among their names) and stores it, and prints
 * one kind of message for every mistake: "siamidx CMD: ..." and exit status
 * 2. --help / -h print the command's usage on stdout (exit 0).
 */
#ifndef SIAMIDX_CLI_ARGS_H
#define SIAMIDX_CLI_ARGS_H

#include <stdint.h>
#include <stdio.h>

typedef enum cli_kind {
    CLI_FLAG,   /* int *: set to 1 */
    CLI_STRING, /* const char **: the argument itself */
    CLI_INT,    /* int *, in [min, max] */
    CLI_U64,    /* uint64_t *, in [min, max] (max 0: no upper bound) */
    CLI_DOUBLE, /* double *, in [min, max], ends excluded per `open` */
    CLI_FLOAT,  /* float *, likewise */
    CLI_CHOICE  /* int *: the index of the argument among `choices` */
} cli_kind;

enum { CLI_OPEN_MIN = 1, CLI_OPEN_MAX = 2 }; /* exclusive ends of a number's range */

typedef struct cli_option {
    const char *name; /* the long name, without "--" */
    char letter;      /* the short name, 0 for none */
    cli_kind kind;
    void *target;
    double min, max;
    unsigned open;
    const char *const *choices; /* CLI_CHOICE: NULL-terminated */
} cli_option;

/* An option without value range (flags, strings). */
#define CLI_OPT(name, letter, kind, target) {name, letter, kind, target, 0, 0, 0, NULL}
#define CLI_NUM(name, letter, kind, target, lo, hi, open) {name, letter, kind, target, lo, hi, open, NULL}
#define CLI_CHOOSE(name, letter, target, choices) {name, letter, CLI_CHOICE, target, 0, 0, 0, choices}
#define CLI_END {NULL, 0, CLI_FLAG, NULL, 0, 0, 0, NULL}

/*
 * Parses argv (argv[0] is the command's name) against opts. Returns -1 to
 * go on, with the operands in argv[*first .. argc); else the exit status to
 * return (0 after --help, 2 after a message on stderr). usage(f) prints the
 * command's usage text.
 */
int cli_parse(int argc, char **argv, const cli_option *opts, void (*usage)(FILE *f), int *first);

#endif

/*
 * args.h - the one command-line parser every subcommand uses, and the one
 * place its help text comes from.
 *
 * A command describes its options in a table; cli_parse reads argv with
 * getopt_long (options and operands in any order), checks every value
 * (numbers in range, choices among their names) and stores it, and prints
 * one kind of message for every mistake: "siamidx CMD: ..." and exit status
 * 2. An option the table lacks is an error, and so is an abbreviated long
 * option (--ind for --index): a name means one option, exactly.
 *
 * --help / -h print the command's help on stdout (exit 0), generated from
 * the table in one regular format that tools read (the man page, the bash
 * completion): a "usage:" block, the description, then "options:" and one
 * line per option,
 *     "  -i, --index DIR         description (default: X)"
 * two spaces, the option's names (short first), its value's name, the
 * description, and its default: the target's value before parsing unless
 * the description says "(default: ...)" itself. The hidden --list-options
 * prints the accepted names, one option a line ("-i --index"), for tests.
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
    const char *arg;            /* the value's name in the help ("DIR"); NULL for flags */
    const char *help;           /* one line */
} cli_option;

/* An option without value range (flags, strings). */
#define CLI_OPT(name, letter, kind, target, arg, help) \
    {name, letter, kind, target, 0, 0, 0, NULL, arg, help}
#define CLI_NUM(name, letter, kind, target, lo, hi, open, arg, help) \
    {name, letter, kind, target, lo, hi, open, NULL, arg, help}
#define CLI_CHOOSE(name, letter, target, choices, help) \
    {name, letter, CLI_CHOICE, target, 0, 0, 0, choices, NULL, help}
#define CLI_END {NULL, 0, CLI_FLAG, NULL, 0, 0, 0, NULL, NULL, NULL}

/* The options several commands share, said the same way everywhere. */
#define CLI_OPT_INDEX(target) \
    CLI_OPT("index", 'i', CLI_STRING, target, "DIR", \
            "the index directory (default: $SIAMIDX_INDEX, then ./siamidx.idx)")
#define CLI_OPT_MODEL(target) \
    CLI_OPT("model", 'm', CLI_STRING, target, "FILE", \
            "the model file (default: $SIAMIDX_MODEL, then the installed default model)")
#define CLI_OPT_JSON(target) \
    CLI_OPT("json", 0, CLI_FLAG, target, NULL, "print one JSON document instead of text (docs/json.md)")
#define CLI_OPT_THREADS(target) \
    CLI_NUM("threads", 0, CLI_INT, target, 0, 4096, 0, "N", "compute threads, 0: all cores (default: 0)")
#define CLI_OPT_WAIT(target) \
    CLI_OPT("wait", 0, CLI_FLAG, target, NULL, "wait for another writer to finish instead of failing")

/* What --help says around the options. */
typedef struct cli_help {
    const char *usage;       /* the synopsis lines, without "usage: " ("siamidx query IMAGE [options]") */
    const char *description; /* paragraphs, may be NULL */
} cli_help;

/*
 * Parses argv (argv[0] is the command's name) against opts. Returns -1 to
 * go on, with the operands in argv[*first .. argc); else the exit status to
 * return (0 after --help, 2 after a message on stderr).
 */
int cli_parse(int argc, char **argv, const cli_option *opts, const cli_help *help, int *first);

/* The help text (as --help prints it) to f. */
void cli_print_help(FILE *f, const char *cmd, const cli_option *opts, const cli_help *help);

#endif

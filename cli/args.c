/* args.c - the command-line parser of every subcommand (see args.h). */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"

#define MAX_OPTIONS 64
#define HELP_CODE 1000 /* getopt value of --help */

static const char *option_name(const cli_option *o, char *buf, size_t cap) {
    snprintf(buf, cap, "%s%s", o->name[1] ? "--" : "-", o->name);
    return buf;
}

static int in_range(const cli_option *o, double v) {
    if (!(o->open & CLI_OPEN_MIN) ? v < o->min : v <= o->min) return 0;
    if (!(o->open & CLI_OPEN_MAX) ? v > o->max : v >= o->max) return 0;
    return 1;
}

/* "from 1 to 100", "above 0", "from 0 to below 1" */
static void describe_range(const cli_option *o, char *buf, size_t cap) {
    snprintf(buf, cap, "%s %g to %s%g", o->open & CLI_OPEN_MIN ? "above" : "from", o->min,
             o->open & CLI_OPEN_MAX ? "below " : "", o->max);
}

static int bad_value(const char *cmd, const cli_option *o, const char *arg, const char *want) {
    char name[64];
    cli_error("%s: %s wants %s, not '%s'", cmd, option_name(o, name, sizeof name), want, arg);
    return CLI_EXIT_USAGE;
}

/* Stores arg into o->target; returns -1 when it did, else the exit status. */
static int store(const char *cmd, const cli_option *o, const char *arg) {
    char *end, range[96];
    describe_range(o, range, sizeof range);
    char want[128];
    switch (o->kind) {
    case CLI_FLAG: *(int *)o->target = 1; return -1;
    case CLI_STRING: *(const char **)o->target = arg; return -1;
    case CLI_INT: {
        errno = 0;
        long v = strtol(arg, &end, 10);
        snprintf(want, sizeof want, "a whole number %s", range);
        if (errno || end == arg || *end || !in_range(o, (double)v)) return bad_value(cmd, o, arg, want);
        *(int *)o->target = (int)v;
        return -1;
    }
    case CLI_U64: {
        errno = 0;
        unsigned long long v = strtoull(arg, &end, 10);
        if (o->max > 0) snprintf(want, sizeof want, "a whole number from %.0f to %.0f", o->min, o->max);
        else snprintf(want, sizeof want, "a whole number of at least %.0f", o->min);
        if (errno || end == arg || *end || arg[0] == '-' || (double)v < o->min ||
            (o->max > 0 && (double)v > o->max))
            return bad_value(cmd, o, arg, want);
        *(uint64_t *)o->target = v;
        return -1;
    }
    case CLI_DOUBLE:
    case CLI_FLOAT: {
        errno = 0;
        double v = strtod(arg, &end);
        snprintf(want, sizeof want, "a number %s", range);
        if (errno || end == arg || *end || !isfinite(v) || !in_range(o, v))
            return bad_value(cmd, o, arg, want);
        if (o->kind == CLI_FLOAT) *(float *)o->target = (float)v;
        else *(double *)o->target = v;
        return -1;
    }
    case CLI_CHOICE: {
        size_t len = 0;
        want[0] = 0;
        for (int i = 0; o->choices[i]; i++) {
            if (!strcmp(arg, o->choices[i])) {
                *(int *)o->target = i;
                return -1;
            }
            len += (size_t)snprintf(want + len, len < sizeof want ? sizeof want - len : 0, "%s%s",
                                    i ? (o->choices[i + 1] ? ", " : " or ") : "one of ",
                                    o->choices[i]);
        }
        return bad_value(cmd, o, arg, want);
    }
    }
    return CLI_EXIT_USAGE;
}

int cli_parse(int argc, char **argv, const cli_option *opts, void (*usage)(FILE *f), int *first) {
    const char *cmd = argv[0];
    struct option longs[MAX_OPTIONS + 2];
    char shorts[3 * MAX_OPTIONS + 4] = ":h";
    size_t n = 0, ns = 2;
    for (; opts[n].name || opts[n].letter; n++) {
        /* Programming errors: a table this long, an option without a long name. */
        if (n == MAX_OPTIONS || !opts[n].name) abort();
        int arg = opts[n].kind == CLI_FLAG ? no_argument : required_argument;
        longs[n] = (struct option){opts[n].name, arg, NULL, (int)(256 + n)};
        if (opts[n].letter) {
            shorts[ns++] = opts[n].letter;
            if (arg == required_argument) shorts[ns++] = ':';
        }
    }
    shorts[ns] = 0;
    longs[n] = (struct option){"help", no_argument, NULL, HELP_CODE};
    longs[n + 1] = (struct option){NULL, 0, NULL, 0};
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, shorts, longs, NULL)) != -1) {
        const cli_option *o = NULL;
        if (c >= 256 && c < 256 + (int)n) o = &opts[c - 256];
        for (size_t i = 0; !o && c > 0 && c < 256 && i < n; i++)
            if (opts[i].letter == c) o = &opts[i];
        if (c == 'h' || c == HELP_CODE) {
            usage(stdout);
            return CLI_EXIT_OK;
        }
        if (c == ':') {
            cli_error("%s: %s needs a value (see siamidx %s --help)", cmd, argv[optind - 1], cmd);
            return CLI_EXIT_USAGE;
        }
        if (!o) {
            cli_error("%s: unknown option '%s' (see siamidx %s --help)", cmd, argv[optind - 1], cmd);
            return CLI_EXIT_USAGE;
        }
        int rc = store(cmd, o, optarg);
        if (rc >= 0) return rc;
    }
    *first = optind;
    return -1;
}

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
#define LIST_CODE 1001 /* getopt value of the hidden --list-options */

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

/* ---- help ---------------------------------------------------------------------------- */

/* "-i, --index DIR", "--pool avg|max|gem|style", "--json". */
static void option_spelling(const cli_option *o, char *buf, size_t cap) {
    size_t n = 0;
    if (o->letter) n += (size_t)snprintf(buf, cap, "-%c, ", o->letter);
    n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, "--%s", o->name);
    if (o->kind == CLI_CHOICE) {
        for (int i = 0; o->choices[i] && n < cap; i++)
            n += (size_t)snprintf(buf + n, cap - n, "%s%s", i ? "|" : " ", o->choices[i]);
    } else if (o->kind != CLI_FLAG && n < cap) {
        snprintf(buf + n, cap - n, " %s", o->arg ? o->arg : "VALUE");
    }
}

/* The target's value before parsing: what the option is when not given. */
static void default_text(const cli_option *o, char *buf, size_t cap) {
    switch (o->kind) {
    case CLI_FLAG: snprintf(buf, cap, "off"); break;
    case CLI_STRING: {
        const char *v = *(const char *const *)o->target;
        snprintf(buf, cap, "%s", v ? v : "none");
        break;
    }
    case CLI_INT: snprintf(buf, cap, "%d", *(const int *)o->target); break;
    case CLI_U64: snprintf(buf, cap, "%llu", (unsigned long long)*(const uint64_t *)o->target); break;
    case CLI_DOUBLE: snprintf(buf, cap, "%g", *(const double *)o->target); break;
    case CLI_FLOAT: snprintf(buf, cap, "%g", (double)*(const float *)o->target); break;
    case CLI_CHOICE: snprintf(buf, cap, "%s", o->choices[*(const int *)o->target]); break;
    }
}

static void help_line(FILE *f, const char *names, const char *text) {
    size_t len = strlen(names);
    fprintf(f, "  %s%*s%s\n", names, len < 24 ? (int)(24 - len) : 2, "", text);
}

void cli_print_help(FILE *f, const char *cmd, const cli_option *opts, const cli_help *help) {
    fprintf(f, "usage: %s\n", help->usage);
    if (help->description) fprintf(f, "\n%s", help->description);
    fprintf(f, "\noptions:\n");
    char names[256], def[256], text[1024];
    for (const cli_option *o = opts; o->name; o++) {
        option_spelling(o, names, sizeof names);
        if (strstr(o->help, "(default:")) {
            snprintf(text, sizeof text, "%s", o->help);
        } else {
            default_text(o, def, sizeof def);
            snprintf(text, sizeof text, "%s (default: %s)", o->help, def);
        }
        help_line(f, names, text);
    }
    help_line(f, "-h, --help", "print this help and exit");
    (void)cmd;
}

/* --list-options: the names the parser accepts, one option a line. */
static void list_options(const cli_option *opts) {
    for (const cli_option *o = opts; o->name; o++) {
        if (o->letter) printf("-%c ", o->letter);
        printf("--%s\n", o->name);
    }
    printf("-h --help\n");
}

/* ---- parsing --------------------------------------------------------------------------- */

static const cli_option *find_long(const cli_option *opts, const char *name, size_t len) {
    for (const cli_option *o = opts; o->name; o++)
        if (strlen(o->name) == len && !strncmp(o->name, name, len)) return o;
    return NULL;
}

static const cli_option *find_short(const cli_option *opts, char c) {
    for (const cli_option *o = opts; o->name; o++)
        if (o->letter == c) return o;
    return NULL;
}

/*
 * getopt_long takes any unambiguous prefix of a long name; we do not: an
 * abbreviation would start meaning another option the day one is added.
 * So every "--name" element is checked for an exact name first, skipping
 * the values of options that take one, as getopt will read them.
 */
static int check_long_names(int argc, char **argv, const cli_option *opts) {
    const char *cmd = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) break;
        if (a[0] != '-' || !a[1]) continue;
        if (a[1] != '-') { /* -xVALUE or -x VALUE: a short option taking a value eats the next */
            const cli_option *o = find_short(opts, a[1]);
            if (o && o->kind != CLI_FLAG && !a[2]) i++;
            continue;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        if ((len == 4 && !strncmp(name, "help", 4)) || (len == 12 && !strncmp(name, "list-options", 12)))
            continue;
        const cli_option *o = find_long(opts, name, len);
        if (!o) {
            cli_error("%s: unknown option '--%.*s' (see siamidx %s --help)", cmd, (int)len, name, cmd);
            return CLI_EXIT_USAGE;
        }
        if (o->kind != CLI_FLAG && !eq) i++;
    }
    return -1;
}

int cli_parse(int argc, char **argv, const cli_option *opts, const cli_help *help, int *first) {
    const char *cmd = argv[0];
    struct option longs[MAX_OPTIONS + 3];
    char shorts[3 * MAX_OPTIONS + 4] = ":h";
    size_t n = 0, ns = 2;
    for (; opts[n].name || opts[n].letter; n++) {
        /* Programming errors: a table this long, an option without a long name or help. */
        if (n == MAX_OPTIONS || !opts[n].name || !opts[n].help) abort();
        int arg = opts[n].kind == CLI_FLAG ? no_argument : required_argument;
        longs[n] = (struct option){opts[n].name, arg, NULL, (int)(256 + n)};
        if (opts[n].letter) {
            shorts[ns++] = opts[n].letter;
            if (arg == required_argument) shorts[ns++] = ':';
        }
    }
    shorts[ns] = 0;
    longs[n] = (struct option){"help", no_argument, NULL, HELP_CODE};
    longs[n + 1] = (struct option){"list-options", no_argument, NULL, LIST_CODE};
    longs[n + 2] = (struct option){NULL, 0, NULL, 0};
    int rc = check_long_names(argc, argv, opts);
    if (rc >= 0) return rc;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, shorts, longs, NULL)) != -1) {
        const cli_option *o = NULL;
        if (c >= 256 && c < 256 + (int)n) o = &opts[c - 256];
        if (!o && c > 0 && c < 256) o = find_short(opts, (char)c);
        if (c == 'h' || c == HELP_CODE) {
            cli_print_help(stdout, cmd, opts, help);
            return CLI_EXIT_OK;
        }
        if (c == LIST_CODE) {
            list_options(opts);
            return CLI_EXIT_OK;
        }
        if (c == ':') {
            cli_error("%s: %s needs a value (see siamidx %s --help)", cmd, argv[optind - 1], cmd);
            return CLI_EXIT_USAGE;
        }
        if (!o || c == '?') {
            char bad[3] = {'-', (char)optopt, 0};
            cli_error("%s: unknown option '%s' (see siamidx %s --help)", cmd,
                      optopt > 0 && optopt < 256 ? bad : argv[optind - 1], cmd);
            return CLI_EXIT_USAGE;
        }
        rc = store(cmd, o, optarg);
        if (rc >= 0) return rc;
    }
    *first = optind;
    return -1;
}

/* main.c - the siamidx command-line tool: a thin dispatcher over libsiamidx. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "siamidx_ext.h"

typedef struct command {
    const char *name;
    cli_command_fn fn;
    const char *summary;
} command;

static const command commands[] = {
    {"embed", cmd_embed, "write one embedding per image (TSV or NPY)"},
    {"model-info", cmd_model_info, "print a model file's metadata"},
    {"build", cmd_build, "index a collection (directory or CSV), incrementally"},
    {"add", cmd_add, "index images as paintings by one artist"},
    {"query", cmd_query, "nearest indexed paintings and artist scores for an image"},
    {"info", cmd_info, "what an index holds"},
    {"remove", cmd_remove, "remove images (by path or artist) from an index"},
    {"verify", cmd_verify, "check an index's store and FAISS index for consistency"},
    {"merge", cmd_merge, "join indexes (the shards of build --shard) into one"},
    {"train-encoder", cmd_train_encoder, "train the ResNet encoder on a collection"},
    {"train", cmd_train, "fit the Siamese head on an index and store it there"},
    {"eval", cmd_eval, "measure the head on held-out images and artists (the protocol)"},
    {"pair", cmd_pair, "P(same artist) for two images, or a pairs CSV"},
};

void cli_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("siamidx: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

siamidx_model *cli_load_model(const char *path) {
    int defaulted = 0;
    if (!path || !*path) path = getenv("SIAMIDX_MODEL");
    if (!path || !*path) {
        path = siamidx_default_model_path();
        defaulted = 1;
    }
    siamidx_model *model = NULL;
    siamidx_error err;
    if (siamidx_model_load(path, &model, &err) != SIAMIDX_OK) {
        if (defaulted && err.status == SIAMIDX_ERR_IO)
            cli_error("no model given (-m MODEL or SIAMIDX_MODEL) and the default model is not "
                      "available: %s", err.message);
        else
            cli_error("%s", err.message);
        return NULL;
    }
    return model;
}

/*
 * OpenBLAS chose its kernels when it was loaded, before main, and on a CPU
 * model its table does not know it takes SSE3 ones (Debian 12's 0.3.21 on
 * recent AVX-512 Xeons: sgemm 4.5x slower). The one remedy is
 * OPENBLAS_CORETYPE at load time, so the tool runs itself again, once, with
 * the variable set to what the CPU supports. The variable is also the loop
 * guard: the second run finds it set and goes on, whatever OpenBLAS made of
 * it. A user's own OPENBLAS_CORETYPE (even empty) is never overridden.
 * Nothing has been opened, read, written or installed yet: the new image
 * keeps the pid, the open descriptors (a pipe on stdin is unread), the
 * signal mask and ignored signals, and argv.
 */
static void rerun_with_the_cpus_blas_kernels(char **argv) {
    if (getenv("OPENBLAS_CORETYPE")) return;
    siamidx_blas_core b;
    siamidx_blas_core_get(&b);
    if (!b.dynamic || !b.weaker) return;
    if (setenv("OPENBLAS_CORETYPE", b.cpu_core, 1) != 0) return;
    /* The binary's own path, not /proc/self/exe itself: the kernel names the
       process after the file executed, and ps/top/pgrep should still say siamidx. */
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = 0;
        execv(self, argv);
    }
    execv("/proc/self/exe", argv); /* the file was replaced or deleted meanwhile */
    unsetenv("OPENBLAS_CORETYPE"); /* no /proc: carry on with the slow kernels */
}

/* The second line says which kernels run, so a slow machine can be told at a glance. */
static void print_version(void) {
    siamidx_blas_core b;
    siamidx_blas_core_get(&b);
    const char *user = getenv("OPENBLAS_CORETYPE");
    char note[96] = "";
    if (b.weaker)
        snprintf(note, sizeof note, " (the core in use is weaker%s%s)",
                 user ? ": OPENBLAS_CORETYPE=" : "", user ? user : "");
    printf("siamidx %s\n", SIAMIDX_VERSION_STRING);
    printf("blas: core %s; cpu supports %s%s; %s\n", b.core, b.cpu_core ? b.cpu_core : "-", note,
           b.config);
}

static void usage(FILE *f) {
    fprintf(f, "usage: siamidx COMMAND [OPTIONS] ...\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-14s %s\n", commands[i].name, commands[i].summary);
    fprintf(f,
            "\n`siamidx COMMAND --help` describes a command.\n"
            "exit status: 0 success, 1 failure, 2 usage error, 3 some inputs failed\n");
}

int main(int argc, char **argv) {
    rerun_with_the_cpus_blas_kernels(argv);
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    if (!strcmp(argv[1], "--version")) {
        print_version();
        return CLI_EXIT_OK;
    }
    if (!strcmp(argv[1], "dump")) return cmd_dump(argc - 1, argv + 1); /* hidden, for tests */
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    cli_error("unknown command '%s' (see siamidx --help)", argv[1]);
    return CLI_EXIT_USAGE;
}

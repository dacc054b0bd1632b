/* cmd_train_encoder.c - `siamidx train-encoder`: train the ResNet encoder. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "siamidx_ext.h"
#include "args.h"
#include "cli.h"
#include "progress.h"

/* Raised by SIGINT/SIGTERM; the trainer checkpoints after the current step. */
static volatile int stop_requested;

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

/*
 * OpenMP threads that spin while they wait cost a factor of three when the
 * cores are shared (measured: 6 vs 21 images/s on 2 busy cores), and the
 * policy is read once when libgomp loads: so set it and start again.
 * main() passes argv + 1, so argv[-1] is the program's own name.
 */
static void prefer_passive_wait(char **argv) {
    if (getenv("OMP_WAIT_POLICY")) return;
    setenv("OMP_WAIT_POLICY", "passive", 1);
    execv("/proc/self/exe", argv - 1);
    /* exec failed: carry on with the default policy */
}

static const cli_help train_encoder_help = {
    "siamidx train-encoder COLLECTION... -o MODEL.safetensors [options]",
    "Trains a ResNet encoder (from scratch, or from --init) to classify the artists of\n"
    "the COLLECTIONs (each a folder per artist, or a CSV with filename,artist; several\n"
    "are joined, and an artist name in more than one is one artist), and writes the\n"
    "epoch with the best validation pair AUC as a siamidx model file.\n"
    "Then, unless --no-head, every image of the COLLECTIONs (less --exclude-artists)\n"
    "is embedded with the written model and a Siamese head trained on those\n"
    "embeddings (as `siamidx train` does on an index) is stored in the model as its\n"
    "default head. An index's own trained head takes precedence over it.\n"
    "--augment processing sets each --aug-* probability to 0.3 (given ones win).\n"
    "Ctrl-C or SIGTERM writes a resumable checkpoint, then exits with status 1.\n"};


/* The model's default head, trained on the best model's embeddings of the collection. */
static int train_default_head(const siamidx_encoder_training *t, double val_fraction) {
    siamidx_train_options ho;
    siamidx_train_options_init(&ho);
    ho.seed = t->seed;
    ho.val_fraction = val_fraction;
    siamidx_train_report r;
    size_t failed;
    siamidx_error err;
    /* a terminal gets a redrawn line, a log plain lines (it used to get "\r"s) */
    cli_progress embed_prog, epoch_prog;
    cli_progress_init(&embed_prog, "train-encoder: default head", "images embedded", 0);
    cli_progress_init(&epoch_prog, "train-encoder: default head", "epochs", 0);
    ho.progress = cli_progress_update;
    ho.progress_ctx = &epoch_prog;
    siamidx_status st = siamidx_model_train_head_many(
        t->output, t->collections, (size_t)t->n_collections, t->exclude_artists, &ho,
        cli_progress_update, &embed_prog, &r, &failed, &err);
    cli_progress_end(&embed_prog);
    cli_progress_end(&epoch_prog);
    if (st) {
        cli_error("train-encoder: default head: %s (here: --head-val-fraction); %s was "
                  "written without a default head: build an index with it and run `siamidx "
                  "train -i INDEX --save-to-model` to add one",
                  err.message, t->output);
        return CLI_EXIT_FAILURE;
    }
    if (failed) fprintf(stderr, "train-encoder: %zu images could not be embedded\n", failed);
    printf("default head: %zu train, %zu validation, %zu test images; epochs %d (best %d)\n",
           r.n_train, r.n_val, r.n_test, r.epochs_run, r.best_epoch);
    printf("default head validation: AUC %.4f, accuracy %.4f at threshold %.3f, "
           "calibration error %.4f\n",
           r.val_auc, r.val_accuracy, r.threshold, r.val_ece);
    fprintf(stderr, "train-encoder: wrote the default head into %s\n", t->output);
    return CLI_EXIT_OK;
}

/* The command as typed, for the model's metadata. */
static char *join_command(int argc, char **argv) {
    size_t len = 32;
    for (int i = 0; i < argc; i++) len += strlen(argv[i]) + 1;
    char *s = malloc(len);
    if (!s) return NULL;
    strcpy(s, "siamidx");
    for (int i = 0; i < argc; i++) {
        strcat(s, " ");
        strcat(s, argv[i]);
    }
    return s;
}

/* In the order of siamidx_encoder_objective. */
static const char *const objectives[] = {"classify", "siamese", "both", "cosface", "supcon",
                                              NULL};
static const char *const augments[] = {"none", "processing", NULL};
static const char *const poolings[] = {"avg", "style", NULL};

/* "3,4" -> bits 2 and 3; 0 for anything but distinct stages 1-4 */
static unsigned parse_stages(const char *s) {
    unsigned bits = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '1' || *p > '4' || (bits & (1u << (*p - '1')))) return 0;
        bits |= 1u << (*p - '1');
        if (p[1] == ',' && p[2]) p++;
        else if (p[1]) return 0;
    }
    return bits;
}

/* "A + B": how the model's metadata names the training collections. */
static char *join_collections(char *const *c, int n) {
    size_t len = 1;
    for (int i = 0; i < n; i++) len += strlen(c[i]) + 3;
    char *s = malloc(len);
    if (!s) return NULL;
    s[0] = 0;
    for (int i = 0; i < n; i++) {
        if (i) strcat(s, " + ");
        strcat(s, c[i]);
    }
    return s;
}

/* --augment sets every probability, --aug-X one of them (given ones win). */
static float augment_p(float given, int augment) {
    return given >= 0 ? given : augment == 1 ? 0.3f : 0.0f;
}

int cmd_train_encoder(int argc, char **argv) {
    prefer_passive_wait(argv);
    siamidx_encoder_training t;
    siamidx_encoder_training_init(&t);
    const char *arch = NULL;
    int no_head = 0, objective = (int)t.objective, first, augment = 0, cache_mb = (int)t.cache_mb;
    int pooling = 0;
    const char *style_stages = "3,4";
    float p_post = -1, p_downup = -1, p_jpeg = -1, p_squash = -1; /* -1: not given */
    double head_val = 0.2, log_seconds = t.log_seconds;
    const double inf = 1e300;
    const cli_option opts[] = {
        CLI_OPT("output", 'o', CLI_STRING, &t.output, "FILE", "the model to write, required (default: none)"),
        CLI_OPT("arch", 0, CLI_STRING, &arch, "resnet18|34|50|101|152",
                "architecture (default: resnet18)"),
        CLI_NUM("width", 0, CLI_FLOAT, &t.width, 0, inf, CLI_OPEN_MIN, "W",
                "channel width multiplier (e.g. 0.5)"),
        CLI_OPT("init", 0, CLI_STRING, &t.init, "MODEL",
                "start from a converted torchvision file; tensors it lacks start fresh"),
        CLI_NUM("freeze-through", 0, CLI_INT, &t.freeze_through, -1, 4, 0, "STAGE",
                "keep stem (0) .. layerSTAGE fixed; -1: none"),
        CLI_CHOOSE("objective", 0, &objective, objectives, "the training loss"),
        CLI_NUM("siamese-weight", 0, CLI_FLOAT, &t.siamese_weight, -inf, inf, 0, "W",
                "weight of the pair BCE with --objective both"),
        CLI_NUM("margin", 0, CLI_FLOAT, &t.cos_margin, 0, 1, CLI_OPEN_MAX, "M",
                "cosface additive cosine margin"),
        CLI_NUM("scale", 0, CLI_FLOAT, &t.cos_scale, 0, 1000, CLI_OPEN_MIN, "S",
                "cosface logit scale"),
        CLI_NUM("contrast-weight", 0, CLI_FLOAT, &t.contrast_weight, 0, 100, 0, "W",
                "supcon: weight of the supervised contrastive term"),
        CLI_NUM("temperature", 0, CLI_FLOAT, &t.temperature, 0.01, 10, 0, "T",
                "supcon: temperature of the contrastive term"),
        CLI_OPT("exclude-artists", 0, CLI_STRING, &t.exclude_artists, "FILE",
                "leave these artists (one name a line, # comments) out of training and of "
                "the default head"),
        CLI_CHOOSE("augment", 0, &augment, augments,
                   "processing: posterize, down-then-up scale, JPEG re-encode, aspect squash"),
        CLI_NUM("aug-posterize", 0, CLI_FLOAT, &p_post, 0, 1, 0, "P",
                "probability of 2-6 bits per channel (default: 0, 0.3 with --augment processing)"),
        CLI_NUM("aug-downup", 0, CLI_FLOAT, &p_downup, 0, 1, 0, "P",
                "probability of a downscale by 0.4-0.9 and back (default: 0, 0.3 with "
                "--augment processing)"),
        CLI_NUM("aug-jpeg", 0, CLI_FLOAT, &p_jpeg, 0, 1, 0, "P",
                "probability of a JPEG round trip at quality 30-95 (default: 0, 0.3 with "
                "--augment processing)"),
        CLI_NUM("aug-squash", 0, CLI_FLOAT, &p_squash, 0, 1, 0, "P",
                "probability of an aspect change by 0.75-1.33, area kept (default: 0, 0.3 "
                "with --augment processing)"),
        CLI_CHOOSE("pooling", 0, &pooling, poolings,
                   "the features: layer4's average, or the per-channel mean and std of the "
                   "--style-stages (trained and embedded alike; the model keeps no fc)"),
        CLI_OPT("style-stages", 0, CLI_STRING, &style_stages, "LIST",
                "with --pooling style: the stages, e.g. 3,4 or 4 (default: 3,4)"),
        CLI_NUM("same-style", 0, CLI_FLOAT, &t.same_style, 0, 1, 0, "P",
                "share of each batch's images drawn from the source and style folder "
                "(source_repo, top folder of source_path) of its first: negatives of the "
                "same style"),
        CLI_NUM("ema", 0, CLI_FLOAT, &t.ema_decay, 0, 1, CLI_OPEN_MIN | CLI_OPEN_MAX, "DECAY",
                "keep an exponential moving average of the weights (e.g. 0.999); validation "
                "and the model use it (default: off)"),
        CLI_NUM("cache-mb", 0, CLI_INT, &cache_mb, 0, 1 << 24, 0, "M",
                "bound on decoded images kept in memory at the training scale"),
        CLI_NUM("input-size", 0, CLI_INT, &t.input_size, 32, 1024, 0, "S", "square training crop"),
        CLI_NUM("resize", 0, CLI_INT, &t.resize, 16, 8192, 0, "R",
                "inference resize recorded in the model; larger images are reduced to "
                "max(R, S) for training too"),
        CLI_NUM("embed-size", 0, CLI_INT, &t.embed_size, 16, 8192, 0, "S",
                "inference input size recorded in the model (default: R, the whole resized "
                "painting)"),
        CLI_NUM("epochs", 0, CLI_INT, &t.epochs, 1, 100000, 0, "N", "training epochs"),
        CLI_NUM("batch", 0, CLI_INT, &t.batch, 2, 4096, 0, "B", "images per step"),
        CLI_NUM("lr", 0, CLI_FLOAT, &t.lr, 0, inf, CLI_OPEN_MIN, "LR", "peak AdamW learning rate"),
        CLI_NUM("weight-decay", 0, CLI_FLOAT, &t.weight_decay, 0, inf, 0, "WD", "AdamW weight decay"),
        CLI_NUM("warmup-epochs", 0, CLI_FLOAT, &t.warmup_epochs, 0, inf, 0, "E",
                "linear warmup, then cosine"),
        CLI_NUM("label-smoothing", 0, CLI_FLOAT, &t.label_smoothing, 0, 1, CLI_OPEN_MAX, "E",
                "label smoothing of the classification loss"),
        CLI_NUM("balance", 0, CLI_FLOAT, &t.balance, 0, inf, 0, "A",
                "sample images with weight count(artist)^-A"),
        CLI_NUM("seed", 0, CLI_U64, &t.seed, 0, 0, 0, "S", "seed of the split, sampling and init"),
        CLI_NUM("val-fraction", 0, CLI_FLOAT, &t.val_fraction, 0, 0.9, CLI_OPEN_MIN | CLI_OPEN_MAX,
                "F", "held out per artist for validation"),
        CLI_NUM("threads", 0, CLI_INT, &t.threads, 1, 256, 0, "N", "compute threads"),
        CLI_OPT("resume", 0, CLI_STRING, &t.resume, "CHECKPOINT",
                "continue an interrupted run (same command otherwise)"),
        CLI_OPT("checkpoint", 0, CLI_STRING, &t.checkpoint, "FILE",
                "where checkpoints go (default: MODEL.ckpt)"),
        CLI_NUM("max-steps", 0, CLI_INT, &t.max_steps, 0, 1 << 30, 0, "N",
                "stop after N steps (benchmarks) with a checkpoint; 0: no limit"),
        CLI_NUM("log-seconds", 0, CLI_DOUBLE, &log_seconds, 0, inf, 0, "T",
                "progress line interval in seconds"),
        CLI_OPT("no-head", 0, CLI_FLAG, &no_head, NULL,
                "do not train the model's default Siamese head"),
        CLI_NUM("head-val-fraction", 0, CLI_DOUBLE, &head_val, 0.01, 0.8, 0, "F",
                "the default head's held-out share, as train --val-fraction"),
        CLI_END};
    int rc = cli_parse(argc, argv, opts, &train_encoder_help, &first);
    if (rc >= 0) return rc;
    if (first >= argc || !t.output) {
        cli_error("train-encoder: give COLLECTION... and -o MODEL.safetensors (see siamidx "
                  "train-encoder --help)");
        return CLI_EXIT_USAGE;
    }
    if (arch) snprintf(t.arch, sizeof t.arch, "%s", arch);
    if (pooling == 1 && !(t.style_stages = parse_stages(style_stages))) {
        cli_error("train-encoder: --style-stages wants distinct stages 1-4 like 3,4, not '%s'",
                  style_stages);
        return CLI_EXIT_USAGE;
    }
    t.objective = (siamidx_encoder_objective)objective;
    t.log_seconds = log_seconds;
    char *command = join_command(argc, argv);
    char *joined = join_collections(argv + first, argc - first);
    t.collections = (const char *const *)argv + first;
    t.n_collections = argc - first;
    t.collection = joined ? joined : argv[first];
    t.cache_mb = (size_t)cache_mb;
    t.aug_posterize = augment_p(p_post, augment);
    t.aug_downup = augment_p(p_downup, augment);
    t.aug_jpeg = augment_p(p_jpeg, augment);
    t.aug_squash = augment_p(p_squash, augment);
    t.command = command;
    t.stop = &stop_requested;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    siamidx_error err;
    siamidx_status s = siamidx_train_encoder(&t, &err);
    free(command);
    rc = CLI_EXIT_OK;
    if (s == SIAMIDX_ERR_INTERRUPTED && t.max_steps && !stop_requested) {
        rc = CLI_EXIT_OK;
    } else if (s != SIAMIDX_OK) {
        cli_error("train-encoder: %s", err.message);
        rc = CLI_EXIT_FAILURE;
    } else {
        fprintf(stderr, "train-encoder: wrote %s\n", t.output);
        if (!no_head) rc = train_default_head(&t, head_val);
    }
    free(joined);
    return rc;
}

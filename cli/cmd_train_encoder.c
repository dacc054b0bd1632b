/* cmd_train_encoder.c - `siamidx train-encoder`: train the ResNet encoder. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>

#include "cli.h"
#include "collection_many.h"
#include "internal.h"
#include "threads.h"
#include "train_augment.h"

void openblas_set_num_threads(int n);


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

static void usage(FILE *f) {
    fprintf(f,
            "usage: siamidx train-encoder COLLECTION... -o MODEL.safetensors [options]\n"
            "\n"
            "Trains a ResNet encoder (from scratch, or from --init) to classify the artists of\n"
            "the COLLECTIONs (each a folder per artist, or a CSV with filename,artist; several\n"
            "are joined, and an artist name in more than one is one artist), and writes the\n"
            "epoch with the best validation pair AUC as a siamidx model file.\n"
            "\n"
            "  -o, --output FILE        the model to write (required)\n"
            "  --exclude-artists FILE   leave these artists (one name per line, # comments)\n"
            "                           out of training and of the default head\n"
            "  --arch NAME              resnet18 (default), resnet34, resnet50\n"
            "  --width W                channel width multiplier (default 1; e.g. 0.5)\n"
            "  --init MODEL             start from a converted torchvision file; tensors it\n"
            "                           lacks (e.g. later stages) start fresh\n"
            "  --freeze-through STAGE   keep stem (0) .. layerSTAGE fixed (default: none)\n"
            "  --objective OBJ          classify (default), siamese, both, cosface\n"
            "  --siamese-weight W       weight of the pair BCE with `both` (default 0.5)\n"
            "  --margin M               cosface additive cosine margin (default 0.35)\n"
            "  --scale S                cosface logit scale (default 30)\n"
            "  --input-size S           square training crop (default 128)\n"
            "  --resize R               inference resize recorded in the model (default 224);\n"
            "                           images whose shorter side exceeds max(R, S) are\n"
            "                           reduced to it for training too (the same scale)\n"
            "  --embed-size S           inference input size recorded in the model (default:\n"
            "                           R, the whole resized painting at the training scale;\n"
            "                           measured better than a centre crop of the training size)\n"
            "  --augment WHAT           none (default) or processing: posterize, down-then-up\n"
            "                           scale, JPEG re-encode, aspect squash, each with\n"
            "                           probability %.1f per sample\n"
            "  --aug-posterize P        probability of 2-6 bits per channel\n"
            "  --aug-downup P           of a downscale by 0.4-0.9 and back\n"
            "  --aug-jpeg P             of a JPEG round trip at quality 30-95\n"
            "  --aug-squash P           of an aspect change by 0.75-1.33 (area kept)\n"
            "  --ema DECAY              keep an exponential moving average of the weights\n"
            "                           (e.g. 0.999); validation and the model use it\n"
            "  --epochs N               (default 10)\n"
            "  --batch B                (default 32)\n"
            "  --lr LR                  peak AdamW learning rate (default 2e-3)\n"
            "  --weight-decay WD        (default 0.05)\n"
            "  --warmup-epochs E        linear warmup, then cosine (default 1)\n"
            "  --label-smoothing E      (default 0.1)\n"
            "  --balance A              sample images with weight count(artist)^-A (default 0.5)\n"
            "  --seed S                 (default 1)\n"
            "  --val-fraction F         held out per artist for validation (default 0.1)\n"
            "  --threads N              compute threads (default 2)\n"
            "  --cache-mb M             bound on decoded images kept in memory, at the\n"
            "                           training scale (default 2048); beyond it images are\n"
            "                           decoded each time they are drawn\n"
            "  --resume CHECKPOINT      continue an interrupted run (same command otherwise)\n"
            "  --checkpoint FILE        where checkpoints go (default MODEL.ckpt)\n"
            "  --max-steps N            stop after N steps (benchmarks); writes a checkpoint\n"
            "  --log-seconds T          progress line interval (default 10)\n"
            "  --no-head                do not train the model's default Siamese head\n"
            "  --head-val-fraction F    the head's held-out share, as `siamidx train\n"
            "                           --val-fraction` (default 0.2; split seed: --seed)\n"
            "\n"
            "Then, unless --no-head, every image of the COLLECTIONs (less --exclude-artists)\n"
            "is embedded with the written model and a Siamese head trained on those\n"
            "embeddings (as `siamidx train` does on an index) is stored in the model as its\n"
            "default head; its validation numbers are printed and kept in the model's head.*\n"
            "metadata. An index's own trained head takes precedence over it.\n"
            "\n"
            "Ctrl-C or SIGTERM writes a resumable checkpoint, then exits with status 1.\n",
            SX_TR_AUGMENT_PROCESSING_P);
}

static int parse_float(const char *s, float *out) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end) return 0;
    *out = (float)v;
    return 1;
}

static int parse_int(const char *s, int lo, int hi, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > hi) return 0;
    *out = (int)v;
    return 1;
}

static int parse_prob(const char *s, float *out) {
    return parse_float(s, out) && *out >= 0 && *out <= 1;
}

static const char *option_name(const struct option *longs, int c) {
    for (; longs->name; longs++)
        if (longs->val == c) return longs->name;
    return "?";
}

/* "A + B": how the model's metadata names the training collections. */
static char *join_collections(const char *const *c, int n) {
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

static void head_progress(void *ctx, size_t done, size_t total) {
    (void)ctx;
    fprintf(stderr, "\rtrain-encoder: embedded %zu of %zu images for the head", done, total);
    if (done == total) fputc('\n', stderr);
}

/* A CSV field, quoted when it needs to be (RFC 4180). */
static void csv_field(FILE *f, const char *v) {
    if (!strpbrk(v, ",\"\r\n")) {
        fputs(v, f);
        return;
    }
    fputc('"', f);
    for (; *v; v++) {
        if (*v == '"') fputc('"', f);
        fputc(*v, f);
    }
    fputc('"', f);
}

/*
 * The head trains on one collection (sx_model_train_head): for several, or
 * with artists excluded, a CSV listing the images (absolute paths; nothing
 * copied) stands for them. Returns 0 and the CSV's path in `out`.
 */
static int write_head_listing(const sx_tr_options *o, char *out, size_t cap) {
    siamidx_error err;
    sx_collection c;
    if (sx_collection_load_many(o->collections, (size_t)o->n_collections, NULL, &c, &err)) {
        cli_error("train-encoder: default head: %s", err.message);
        return -1;
    }
    if (o->exclude_artists) {
        char **names;
        size_t n, dropped;
        if (sx_artist_list_read(o->exclude_artists, &names, &n, &err) ||
            sx_collection_drop_artists(&c, names, n, &dropped, NULL, &err)) {
            cli_error("train-encoder: default head: %s", err.message);
            sx_collection_free(&c);
            return -1;
        }
        free(names);
    }
    snprintf(out, cap, "%s.head-images.csv", o->output);
    FILE *f = fopen(out, "w");
    if (!f) {
        cli_error("train-encoder: default head: cannot write %s", out);
        sx_collection_free(&c);
        return -1;
    }
    fputs("filename,artist\n", f);
    for (size_t i = 0; i < c.n_entries; i++) {
        csv_field(f, c.entries[i].resolved);
        fputc(',', f);
        csv_field(f, c.entries[i].artist);
        fputc('\n', f);
    }
    int bad = fclose(f) != 0;
    sx_collection_free(&c);
    if (bad) {
        cli_error("train-encoder: default head: cannot write %s", out);
        remove(out);
        return -1;
    }
    return 0;
}

/* The model's default head, trained on the best model's embeddings of the collection. */
static int train_default_head(const sx_tr_options *o, float val_fraction) {
    sx_train_opts ho;
    sx_train_opts_init(&ho);
    ho.seed = o->seed;
    ho.val_fraction = val_fraction;
    sx_head *h;
    size_t failed;
    siamidx_error err;
    char listing[4096];
    const char *images = o->collections[0];
    if (o->n_collections > 1 || o->exclude_artists) {
        if (write_head_listing(o, listing, sizeof listing)) return CLI_EXIT_FAILURE;
        images = listing;
    }
    siamidx_status hs =
        sx_model_train_head(o->output, images, &ho, head_progress, NULL, &h, &failed, &err);
    if (images == listing) remove(listing);
    if (hs) {
        cli_error("train-encoder: default head: %s (here: --head-val-fraction); %s was "
                  "written without a default head: build an index with it and run `siamidx "
                  "train -i INDEX --save-to-model` to add one",
                  err.message, o->output);
        return CLI_EXIT_FAILURE;
    }
    const sx_head_report *r = &h->report;
    if (failed) fprintf(stderr, "train-encoder: %zu images could not be embedded\n", failed);
    printf("default head: %zu train, %zu validation, %zu test images; epochs %d (best %d)\n",
           r->n_train, r->n_val, r->n_test, r->epochs_run, r->best_epoch);
    printf("default head validation: AUC %.4f, accuracy %.4f at threshold %.3f, "
           "calibration error %.4f\n",
           r->val_auc, r->val_acc, h->threshold, r->val_ece);
    fprintf(stderr, "train-encoder: wrote the default head into %s\n", o->output);
    siamidx_head_free(h);
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

int cmd_train_encoder(int argc, char **argv) {
    enum {
        O_ARCH = 256, O_WIDTH, O_INIT, O_FREEZE, O_OBJ, O_SIAMW, O_INPUT, O_RESIZE, O_EMBED, O_EPOCHS,
        O_BATCH, O_LR, O_WD, O_WARMUP, O_LS, O_BALANCE, O_SEED, O_VAL, O_THREADS, O_RESUME,
        O_CKPT, O_MAXSTEPS, O_LOGS, O_NOHEAD, O_HEADVAL, O_EXCLUDE, O_CACHE, O_AUGMENT,
        O_AUG_POST, O_AUG_DOWNUP, O_AUG_JPEG, O_AUG_SQUASH, O_MARGIN, O_SCALE, O_EMA
    };
    static const struct option longs[] = {
        {"output", required_argument, 0, 'o'}, {"arch", required_argument, 0, O_ARCH},
        {"width", required_argument, 0, O_WIDTH}, {"init", required_argument, 0, O_INIT},
        {"freeze-through", required_argument, 0, O_FREEZE},
        {"objective", required_argument, 0, O_OBJ},
        {"siamese-weight", required_argument, 0, O_SIAMW},
        {"input-size", required_argument, 0, O_INPUT}, {"resize", required_argument, 0, O_RESIZE},
        {"embed-size", required_argument, 0, O_EMBED},
        {"epochs", required_argument, 0, O_EPOCHS}, {"batch", required_argument, 0, O_BATCH},
        {"lr", required_argument, 0, O_LR}, {"weight-decay", required_argument, 0, O_WD},
        {"warmup-epochs", required_argument, 0, O_WARMUP},
        {"label-smoothing", required_argument, 0, O_LS},
        {"balance", required_argument, 0, O_BALANCE}, {"seed", required_argument, 0, O_SEED},
        {"val-fraction", required_argument, 0, O_VAL},
        {"threads", required_argument, 0, O_THREADS}, {"resume", required_argument, 0, O_RESUME},
        {"checkpoint", required_argument, 0, O_CKPT},
        {"max-steps", required_argument, 0, O_MAXSTEPS},
        {"log-seconds", required_argument, 0, O_LOGS}, {"no-head", no_argument, 0, O_NOHEAD},
        {"head-val-fraction", required_argument, 0, O_HEADVAL},
        {"exclude-artists", required_argument, 0, O_EXCLUDE},
        {"cache-mb", required_argument, 0, O_CACHE}, {"augment", required_argument, 0, O_AUGMENT},
        {"aug-posterize", required_argument, 0, O_AUG_POST},
        {"aug-downup", required_argument, 0, O_AUG_DOWNUP},
        {"aug-jpeg", required_argument, 0, O_AUG_JPEG},
        {"aug-squash", required_argument, 0, O_AUG_SQUASH},
        {"margin", required_argument, 0, O_MARGIN}, {"scale", required_argument, 0, O_SCALE},
        {"ema", required_argument, 0, O_EMA}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    prefer_passive_wait(argv);
    sx_tr_options o;
    memset(&o, 0, sizeof o);
    snprintf(o.net.arch, sizeof o.net.arch, "resnet18");
    o.net.width = 1.0f;
    o.net.input = 128;
    o.net.max_batch = 32;
    o.net.objective = SX_TR_CLASSIFY;
    o.net.siamese_weight = 0.5f;
    o.net.label_smoothing = 0.1f;
    o.net.freeze_through = -1;
    o.epochs = 10;
    o.resize = 224;
    o.lr = 2e-3f;
    o.weight_decay = 0.05f;
    o.warmup_epochs = 1.0f;
    o.min_lr_ratio = 0.01f;
    o.balance = 0.5f;
    o.val_fraction = 0.1f;
    o.log_seconds = 10;
    o.seed = 1;
    o.zero_residual = 1;
    o.net.cos_margin = 0.35f;
    o.net.cos_scale = 30.0f;
    int threads = 2, c, with_head = 1, cache_mb = 2048;
    sx_tr_augment aug = {0};
    float head_val = 0.2f;
    char *command = join_command(argc, argv);
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", longs, NULL)) != -1) {
        int ok = 1;
        switch (c) {
        case 'o': o.output = optarg; break;
        case O_ARCH: snprintf(o.net.arch, sizeof o.net.arch, "%s", optarg); break;
        case O_WIDTH: ok = parse_float(optarg, &o.net.width) && o.net.width > 0; break;
        case O_INIT: o.init = optarg; break;
        case O_FREEZE:
            ok = parse_int(optarg, -1, 4, &o.net.freeze_through);
            break;
        case O_OBJ:
            if (!strcmp(optarg, "classify")) o.net.objective = SX_TR_CLASSIFY;
            else if (!strcmp(optarg, "siamese")) o.net.objective = SX_TR_SIAMESE;
            else if (!strcmp(optarg, "both")) o.net.objective = SX_TR_BOTH;
            else if (!strcmp(optarg, "cosface")) o.net.objective = SX_TR_COSFACE;
            else ok = 0;
            break;
        case O_SIAMW: ok = parse_float(optarg, &o.net.siamese_weight); break;
        case O_INPUT: ok = parse_int(optarg, 32, 1024, &o.net.input); break;
        case O_RESIZE: ok = parse_int(optarg, 16, 8192, &o.resize); break;
        case O_EMBED: ok = parse_int(optarg, 16, 8192, &o.embed_size); break;
        case O_EPOCHS: ok = parse_int(optarg, 1, 100000, &o.epochs); break;
        case O_BATCH: ok = parse_int(optarg, 2, 4096, &o.net.max_batch); break;
        case O_LR: ok = parse_float(optarg, &o.lr) && o.lr > 0; break;
        case O_WD: ok = parse_float(optarg, &o.weight_decay) && o.weight_decay >= 0; break;
        case O_WARMUP: ok = parse_float(optarg, &o.warmup_epochs) && o.warmup_epochs >= 0; break;
        case O_LS:
            ok = parse_float(optarg, &o.net.label_smoothing) && o.net.label_smoothing >= 0 &&
                 o.net.label_smoothing < 1;
            break;
        case O_BALANCE: ok = parse_float(optarg, &o.balance) && o.balance >= 0; break;
        case O_SEED: o.seed = strtoull(optarg, NULL, 10); break;
        case O_VAL:
            ok = parse_float(optarg, &o.val_fraction) && o.val_fraction > 0 &&
                 o.val_fraction < 0.9f;
            break;
        case O_THREADS: ok = parse_int(optarg, 1, 256, &threads); break;
        case O_RESUME: o.resume = optarg; break;
        case O_CKPT: o.checkpoint = optarg; break;
        case O_MAXSTEPS: ok = parse_int(optarg, 0, 1 << 30, &o.max_steps); break;
        case O_LOGS: {
            float v = 0;
            ok = parse_float(optarg, &v) && v >= 0;
            o.log_seconds = v;
            break;
        }
        case O_NOHEAD: with_head = 0; break;
        case O_HEADVAL:
            ok = parse_float(optarg, &head_val) && head_val >= 0.01f && head_val <= 0.8f;
            break;
        case O_EXCLUDE: o.exclude_artists = optarg; break;
        case O_CACHE: ok = parse_int(optarg, 0, 1 << 24, &cache_mb); break;
        case O_AUGMENT:
            if (!strcmp(optarg, "none")) {
                memset(&aug, 0, sizeof aug);
            } else if (!strcmp(optarg, "processing")) {
                aug.p_squash = aug.p_downup = SX_TR_AUGMENT_PROCESSING_P;
                aug.p_posterize = aug.p_jpeg = SX_TR_AUGMENT_PROCESSING_P;
            } else {
                ok = 0;
            }
            break;
        case O_AUG_POST: ok = parse_prob(optarg, &aug.p_posterize); break;
        case O_AUG_DOWNUP: ok = parse_prob(optarg, &aug.p_downup); break;
        case O_AUG_JPEG: ok = parse_prob(optarg, &aug.p_jpeg); break;
        case O_AUG_SQUASH: ok = parse_prob(optarg, &aug.p_squash); break;
        case O_MARGIN:
            ok = parse_float(optarg, &o.net.cos_margin) && o.net.cos_margin >= 0 &&
                 o.net.cos_margin < 1;
            break;
        case O_SCALE:
            ok = parse_float(optarg, &o.net.cos_scale) && o.net.cos_scale > 0 &&
                 o.net.cos_scale <= 1000;
            break;
        case O_EMA:
            ok = parse_float(optarg, &o.ema_decay) && o.ema_decay > 0 && o.ema_decay < 1;
            break;
        case 'h': usage(stdout); free(command); return CLI_EXIT_OK;
        default: usage(stderr); free(command); return CLI_EXIT_USAGE;
        }
        if (!ok) {
            cli_error("train-encoder: bad value '%s' for --%s", optarg, option_name(longs, c));
            free(command);
            return CLI_EXIT_USAGE;
        }
    }
    if (optind >= argc || !o.output) {
        usage(stderr);
        free(command);
        return CLI_EXIT_USAGE;
    }
    o.collections = (const char *const *)argv + optind;
    o.n_collections = argc - optind;
    char *joined = join_collections(o.collections, o.n_collections);
    o.collection = joined ? joined : argv[optind];
    o.cache_bytes = (size_t)cache_mb << 20;
    o.augment = sx_tr_augment_active(&aug) ? &aug : NULL;
    o.command = command;
    o.stop = &stop_requested;
    /* one thread pool: OpenMP's; the GEMMs split their work over it */
    openblas_set_num_threads(1);
    sx_threads_set(threads);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    siamidx_error err;
    siamidx_status s = sx_train_encoder(&o, &err);
    free(command);
    int rc = CLI_EXIT_OK;
    if (s == SIAMIDX_ERR_INTERRUPTED && o.max_steps && !stop_requested) {
        rc = CLI_EXIT_OK;
    } else if (s != SIAMIDX_OK) {
        cli_error("train-encoder: %s", err.message);
        rc = CLI_EXIT_FAILURE;
    } else {
        fprintf(stderr, "train-encoder: wrote %s\n", o.output);
        if (with_head) rc = train_default_head(&o, head_val);
    }
    free(joined);
    return rc;
}

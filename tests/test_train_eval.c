/*
 * test_train_eval.c - the trainer's inference-mode outputs against a plain
 * eval-mode ResNet-18 written out by hand here.
 *
 * sx_tr_net_eval (validation) runs nn's encoder on the training parameters
 * with every BatchNorm folded in (nn/arch.h's sx_bn_fold), and frozen stages
 * run folded convolutions inside the training forward. Both must give what
 * torchvision's model.eval() gives: conv, BatchNorm with the running
 * statistics, ReLU, residual adds, as the naive double-precision NCHW
 * forward below computes it from the tensors found by their torchvision
 * names. The BatchNorm parameters and running statistics are random, so the
 * fold has something to fold.
 */
#include <math.h>
#include <stdint.h>

#include "check.h"
#include "train/train_net.h"

#define N 3 /* fewer than the planned batch */
#define S 64

void openblas_set_num_threads(int n);

static uint64_t rng = 0x5eed;
static double urand(void) { /* uniform in [0, 1) */
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rng >> 11) * (1.0 / 9007199254740992.0);
}

typedef struct act { /* NCHW, double */
    int c, h, w;
    double *v;
} act;

static act act_new(int c, int h, int w) {
    act a = {c, h, w, calloc((size_t)N * c * h * w, sizeof(double))};
    return a;
}

static double *at(const act *a, int i, int c, int y, int x) {
    return &a->v[(((size_t)i * a->c + c) * a->h + y) * a->w + x];
}

static const float *tensor(sx_tr_net *net, const char *prefix, const char *field) {
    char name[96];
    snprintf(name, sizeof name, "%s.%s", prefix, field);
    sx_tr_tensor *t = sx_tr_net_find(net, name);
    CHECK_MSG(t != NULL, "no tensor %s", name);
    if (!t) exit(1);
    return sx_tr_tensor_data(net, t);
}

/* conv (no bias) then BatchNorm with running statistics, then ReLU if asked. */
static act conv_bn(sx_tr_net *net, const act *x, const char *conv, const char *bn, int cout,
                   int k, int stride, int pad, int relu) {
    const float *w = tensor(net, conv, "weight"), *g = tensor(net, bn, "weight");
    const float *b = tensor(net, bn, "bias"), *mu = tensor(net, bn, "running_mean");
    const float *var = tensor(net, bn, "running_var");
    act y = act_new(cout, (x->h + 2 * pad - k) / stride + 1, (x->w + 2 * pad - k) / stride + 1);
    for (int i = 0; i < N; i++)
        for (int co = 0; co < cout; co++)
            for (int oy = 0; oy < y.h; oy++)
                for (int ox = 0; ox < y.w; ox++) {
                    double s = 0;
                    for (int ci = 0; ci < x->c; ci++)
                        for (int ky = 0; ky < k; ky++)
                            for (int kx = 0; kx < k; kx++) {
                                int iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
                                if (iy < 0 || iy >= x->h || ix < 0 || ix >= x->w) continue;
                                s += w[((size_t)(co * x->c + ci) * k + ky) * k + kx] *
                                     *at(x, i, ci, iy, ix);
                            }
                    double v = (s - mu[co]) / sqrt(var[co] + 1e-5) * g[co] + b[co];
                    *at(&y, i, co, oy, ox) = relu && v < 0 ? 0 : v;
                }
    return y;
}

static act maxpool(const act *x) {
    act y = act_new(x->c, (x->h - 1) / 2 + 1, (x->w - 1) / 2 + 1);
    for (int i = 0; i < N; i++)
        for (int c = 0; c < x->c; c++)
            for (int oy = 0; oy < y.h; oy++)
                for (int ox = 0; ox < y.w; ox++) {
                    double m = -INFINITY;
                    for (int iy = 2 * oy - 1; iy <= 2 * oy + 1; iy++)
                        for (int ix = 2 * ox - 1; ix <= 2 * ox + 1; ix++)
                            if (iy >= 0 && iy < x->h && ix >= 0 && ix < x->w)
                                m = fmax(m, *at(x, i, c, iy, ix));
                    *at(&y, i, c, oy, ox) = m;
                }
    return y;
}

/* torchvision's resnet18 in eval mode: pooled features [N][feat]. */
/* nn's style pooling: each plane's mean, then its population std */
static void style_stats(const act *a, double *feat, int ld, size_t off) {
    for (int i = 0; i < N; i++)
        for (int c = 0; c < a->c; c++) {
            const double *v = a->v + ((size_t)i * a->c + c) * a->h * a->w;
            double m = 0, ss = 0;
            for (int p = 0; p < a->h * a->w; p++) m += v[p];
            m /= a->h * a->w;
            for (int p = 0; p < a->h * a->w; p++) ss += (v[p] - m) * (v[p] - m);
            feat[(size_t)i * ld + off + c] = m;
            feat[(size_t)i * ld + off + a->c + c] = sqrt(ss / (a->h * a->w));
        }
}

static void reference(sx_tr_net *net, const float *x, double *feat) {
    act a = act_new(3, S, S);
    for (size_t i = 0; i < (size_t)N * 3 * S * S; i++) a.v[i] = x[i];
    act t = conv_bn(net, &a, "conv1", "bn1", net->stem_ch, 7, 2, 3, 1);
    free(a.v);
    a = maxpool(&t);
    free(t.v);
    char c1[64], b1[64], c2[64], b2[64], dc[64], db[64];
    for (int s = 1; s <= 4; s++)
        for (int j = 0; j < 2; j++) {
            int stride = s > 1 && j == 0 ? 2 : 1, width = net->stage_ch[s - 1];
            snprintf(c1, sizeof c1, "layer%d.%d.conv1", s, j);
            snprintf(b1, sizeof b1, "layer%d.%d.bn1", s, j);
            snprintf(c2, sizeof c2, "layer%d.%d.conv2", s, j);
            snprintf(b2, sizeof b2, "layer%d.%d.bn2", s, j);
            snprintf(dc, sizeof dc, "layer%d.%d.downsample.0", s, j);
            snprintf(db, sizeof db, "layer%d.%d.downsample.1", s, j);
            act h = conv_bn(net, &a, c1, b1, width, 3, stride, 1, 1);
            act o = conv_bn(net, &h, c2, b2, width, 3, 1, 1, 0);
            act sc = stride != 1 || a.c != width ? conv_bn(net, &a, dc, db, width, 1, stride, 0, 0)
                                                 : a;
            for (size_t i = 0; i < (size_t)N * o.c * o.h * o.w; i++)
                o.v[i] = fmax(o.v[i] + sc.v[i], 0.0);
            if (sc.v != a.v) free(sc.v);
            free(h.v);
            free(a.v);
            a = o;
            if (j == 1 && (net->cfg.style_stages & (1u << (s - 1))))
                style_stats(&a, feat, net->embed_dim, net->style_off[s - 1]);
        }
    if (net->cfg.style_stages) {
        free(a.v);
        return;
    }
    for (int i = 0; i < N; i++)
        for (int c = 0; c < a.c; c++) {
            double s = 0;
            for (int p = 0; p < a.h * a.w; p++) s += a.v[((size_t)i * a.c + c) * a.h * a.w + p];
            feat[(size_t)i * a.c + c] = s / (a.h * a.w);
        }
    free(a.v);
}

/* Random BatchNorm affine parameters and running statistics. */
static void randomise_bn(sx_tr_net *net) {
    for (int i = 0; i < net->n_tensors; i++) {
        sx_tr_tensor *t = &net->tensors[i];
        if (t->ndim != 1 || t->stage > 4) continue;
        float *d = sx_tr_tensor_data(net, t);
        int var = strstr(t->name, "running_var") != NULL;
        int gamma = strstr(t->name, ".weight") != NULL;
        for (size_t k = 0; k < t->numel; k++)
            d[k] = (float)(var ? 0.2 + urand() : gamma ? 0.5 + urand() : urand() - 0.5);
    }
}

static double rel_err(const float *got, const double *want, size_t n) {
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        d += (got[i] - want[i]) * (got[i] - want[i]);
        r += want[i] * want[i];
    }
    return sqrt(d) / (sqrt(r) + 1e-30);
}

static void check_net(int freeze_through, unsigned style_stages) {
    sx_tr_config cfg = {.width = 0.0625f, .n_classes = 5, .max_batch = 4, .input = S,
                        .objective = SX_TR_CLASSIFY, .freeze_through = freeze_through,
                        .style_stages = style_stages};
    snprintf(cfg.arch, sizeof cfg.arch, "resnet18");
    siamidx_error err;
    sx_tr_net *net = NULL;
    CHECK_MSG(sx_tr_net_new(&cfg, &net, &err) == SIAMIDX_OK, "%s", err.message);
    if (!net) return;
    sx_tr_net_init(net, 7, 0);
    randomise_bn(net);
    float *x = malloc(sizeof(float) * 4 * 3 * S * S);
    for (int i = 0; i < 4 * 3 * S * S; i++) x[i] = (float)(2 * urand() - 1);
    size_t d = (size_t)net->embed_dim;
    if (style_stages) CHECK(d == 2 * (size_t)(net->stage_ch[2] + net->stage_ch[3]));
    double *want = malloc(sizeof(double) * N * d);
    float *feat = malloc(sizeof(float) * N * d), *logits = malloc(sizeof(float) * N * 5);
    reference(net, x, want);

    CHECK_MSG(sx_tr_net_eval(net, x, N, logits, feat, &err) == SIAMIDX_OK, "%s", err.message);
    double e = rel_err(feat, want, N * d);
    printf("freeze %d, style stages 0x%x: sx_tr_net_eval vs eval-mode reference: relative "
           "error %.2e\n", freeze_through, style_stages, e);
    CHECK_MSG(e < 1e-4, "sx_tr_net_eval: relative error %.3g", e);
    CHECK(sx_tr_net_eval(net, x, 5, logits, feat, &err) == SIAMIDX_ERR_INVALID_ARGUMENT);

    if (freeze_through == 4) { /* every stage frozen: the training forward is eval mode too */
        int32_t labels[N] = {0, 1, 2};
        sx_tr_stats st;
        sx_tr_net_forward(net, x, N, labels, &st);
        e = rel_err(net->feat, want, N * d);
        printf("freeze 4: training forward vs eval-mode reference: relative error %.2e\n", e);
        CHECK_MSG(e < 1e-4, "frozen forward: relative error %.3g", e);
    }
    free(x), free(want), free(feat), free(logits);
    sx_tr_net_free(net);
}

int main(void) {
    openblas_set_num_threads(1); /* as train-encoder runs */
    check_net(-1, 0);
    check_net(4, 0);
    check_net(-1, 0xc); /* style statistics of layer3 and layer4 */
    check_net(4, 0xc);
    CHECK_DONE();
}

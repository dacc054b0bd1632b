/*
 * split.c - the split record a trained head carries in its info: which
 * artists were held out whole and which images validated and tested, so
 * that `eval` measures on exactly what training never saw. Images are named
 * by key (the content hash in an index: the split survives moving files),
 * or "#row" when the data has no keys.
 *
 *   unseen_artists=NAME<TAB>NAME...
 *   val_images=KEY<TAB>KEY...
 *   test_images=KEY<TAB>KEY...
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/strbuf.h"
#include "head/split.h"

/* ---- writing ------------------------------------------------------------------- */

static void append_info(sx_strbuf *b, const char *key, const sx_train_data *d, const uint8_t *roles,
                        int role) {
    sx_strbuf_printf(b, "%s=", key);
    int first = 1;
    for (size_t i = 0; i < d->n; i++)
        if (roles[i] == role) {
            if (!first) sx_strbuf_put(b, "\t", 1);
            if (d->keys && d->keys[i]) sx_strbuf_put(b, d->keys[i], strlen(d->keys[i]));
            else sx_strbuf_printf(b, "#%zu", i);
            first = 0;
        }
    sx_strbuf_put(b, "\n", 1);
}

char *sx_split_record(const char *settings, const sx_train_data *d, const uint8_t *roles) {
    sx_strbuf b = {0};
    sx_strbuf_put(&b, settings, strlen(settings));
    sx_strbuf_printf(&b, "unseen_artists=");
    uint8_t *held = calloc((size_t)d->n_artists + 1, 1);
    for (size_t i = 0; held && i < d->n; i++)
        if (roles[i] == SX_ROLE_UNSEEN) held[d->artist[i]] = 1;
    int first = 1;
    for (int a = 0; held && a < d->n_artists; a++)
        if (held[a]) {
            if (!first) sx_strbuf_put(&b, "\t", 1);
            if (d->artist_names) sx_strbuf_put(&b, d->artist_names[a], strlen(d->artist_names[a]));
            else sx_strbuf_printf(&b, "#%d", a);
            first = 0;
        }
    free(held);
    sx_strbuf_put(&b, "\n", 1);
    append_info(&b, "val_images", d, roles, SX_ROLE_VAL);
    append_info(&b, "test_images", d, roles, SX_ROLE_TEST);
    sx_strbuf_put(&b, "", 1);
    if (b.oom) {
        free(b.buf);
        return NULL;
    }
    return b.buf;
}

/* ---- reading ------------------------------------------------------------------- */

/* The value of `key=` in info, up to the end of its line (not NUL-terminated). */
static const char *info_value(const char *info, const char *key, size_t *len) {
    size_t kl = strlen(key);
    for (const char *p = info; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        if (n > kl && !strncmp(p, key, kl) && p[kl] == '=') {
            *len = n - kl - 1;
            return p + kl + 1;
        }
        p = nl ? nl + 1 : NULL;
    }
    return NULL;
}

static int in_tab_list(const char *list, size_t len, const char *name) {
    size_t nl = strlen(name);
    for (size_t i = 0; i < len;) {
        const char *tab = memchr(list + i, '\t', len - i);
        size_t n = tab ? (size_t)(tab - (list + i)) : len - i;
        if (n == nl && !memcmp(list + i, name, n)) return 1;
        i += n + 1;
    }
    return 0;
}

typedef struct {
    const char *s;
    size_t n;
} span;

static int cmp_span(const void *pa, const void *pb) {
    const span *a = pa, *b = pb;
    size_t n = a->n < b->n ? a->n : b->n;
    int c = memcmp(a->s, b->s, n);
    return c ? c : (a->n > b->n) - (a->n < b->n);
}

/* Sorted spans of a tab-separated list, for binary search. */
static span *split_tabs(const char *list, size_t len, size_t *count) {
    size_t n = len ? 1 : 0;
    for (size_t i = 0; i < len; i++) n += list[i] == '\t';
    span *s = malloc((n + 1) * sizeof *s);
    if (!s) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < len && k < n;) {
        const char *tab = memchr(list + i, '\t', len - i);
        size_t m = tab ? (size_t)(tab - (list + i)) : len - i;
        s[k++] = (span){list + i, m};
        i += m + 1;
    }
    qsort(s, k, sizeof *s, cmp_span);
    *count = k;
    return s;
}

siamidx_status sx_head_roles(const sx_head *h, const sx_train_data *d, uint8_t *roles,
                             siamidx_error *err) {
    size_t lu = 0, lv = 0, lt = 0;
    const char *info = h->info ? h->info : "";
    const char *unseen = info_value(info, "unseen_artists", &lu);
    const char *val = info_value(info, "val_images", &lv);
    const char *test = info_value(info, "test_images", &lt);
    if (!val || !test)
        return sx_fail(err, SIAMIDX_ERR_NOT_FOUND,
                       "the head carries no split record (it was not trained by `siamidx train`)");
    size_t nv = 0, nt = 0;
    span *sv = split_tabs(val, lv, &nv), *stt = split_tabs(test, lt, &nt);
    uint8_t *held = calloc((size_t)d->n_artists + 1, 1);
    if (!sv || !stt || !held) {
        free(sv), free(stt), free(held);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "split record: out of memory");
    }
    for (int a = 0; unseen && a < d->n_artists; a++) {
        char tmp[32];
        const char *name = d->artist_names ? d->artist_names[a] : tmp;
        if (!d->artist_names) snprintf(tmp, sizeof tmp, "#%d", a);
        held[a] = (uint8_t)in_tab_list(unseen, lu, name);
    }
    for (size_t i = 0; i < d->n; i++) {
        char tmp[32];
        const char *key = d->keys && d->keys[i] ? d->keys[i] : tmp;
        if (key == tmp) snprintf(tmp, sizeof tmp, "#%zu", i);
        span k = {key, strlen(key)};
        roles[i] = held[d->artist[i]]                           ? SX_ROLE_UNSEEN
                   : bsearch(&k, stt, nt, sizeof k, cmp_span) ? SX_ROLE_TEST
                   : bsearch(&k, sv, nv, sizeof k, cmp_span)  ? SX_ROLE_VAL
                                                                : SX_ROLE_TRAIN;
    }
    free(sv), free(stt), free(held);
    return SIAMIDX_OK;
}

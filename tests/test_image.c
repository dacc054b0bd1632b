/*
 * test_image.c - decoding: formats, EXIF orientation, bad files, the pixel
 * limit, and decoding from many threads at once.
 *
 * Fixtures: tests/data/images, written by tools/make_image_fixtures.py, whose
 * manifest.txt says each file's size and where its exact pixels come from.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "image_fixture.h"
#include "image/image.h"

static char dir[1024];

static const char *fixture(const char *name) {
    static _Thread_local char path[1024 + 512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return path;
}

static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* ---- formats ------------------------------------------------------------- */

static void test_manifest(void) {
    size_t len;
    char *text = (char *)read_file(fixture("manifest.txt"), &len);
    CHECK_MSG(text != NULL, "cannot read %s", fixture("manifest.txt"));
    if (!text) return;
    text = realloc(text, len + 1);
    text[len] = 0;
    int n = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char name[256], ref[256];
        int w, h;
        if (sscanf(line, "%255s %d %d %255s", name, &w, &h, ref) != 4) continue;
        n++;
        sx_image img;
        siamidx_error err;
        siamidx_status s = sx_image_load(fixture(name), 0, &img, &err);
        CHECK_MSG(s == SIAMIDX_OK, "%s: %s", name, err.message);
        if (s != SIAMIDX_OK) continue;
        CHECK_MSG(img.width == w && img.height == h, "%s: %dx%d, expected %dx%d", name,
                  img.width, img.height, w, h);
        size_t npix = (size_t)w * h * 3;
        uint8_t *expect = NULL;
        if (!strcmp(ref, "proc") || !strcmp(ref, "procg")) {
            expect = malloc(npix);
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                    for (int c = 0; c < 3; c++)
                        expect[((size_t)y * w + x) * 3 + c] =
                            proc_pixel(w, h, x, y, ref[4] == 'g' ? 1 : c);
        } else if (strcmp(ref, "-")) {
            size_t rlen;
            expect = read_file(fixture(ref), &rlen);
            CHECK_MSG(expect && rlen == npix, "%s: reference %s has %zu bytes", name, ref, rlen);
            if (expect && rlen != npix) {
                free(expect);
                expect = NULL;
            }
        }
        if (expect && img.width == w && img.height == h) {
            size_t bad = 0, first = 0;
            for (size_t i = 0; i < npix; i++)
                if (img.rgb[i] != expect[i] && !bad++) first = i;
            CHECK_MSG(bad == 0, "%s: %zu of %zu values differ from %s (first at %zu: %d vs %d)",
                      name, bad, npix, ref, first, img.rgb[first], expect[first]);
        }
        free(expect);
        sx_image_free(&img);
    }
    CHECK_MSG(n >= 14, "manifest lists only %d images", n);
    free(text);
}

/* Lossy JPEGs are close to the picture they encode, orientation applied. */
static double jpeg_error(const char *name, int w, int h, int orientation) {
    sx_image img;
    siamidx_error err;
    if (sx_image_load(fixture(name), 0, &img, &err) != SIAMIDX_OK) {
        CHECK_MSG(0, "%s: %s", name, err.message);
        return 1e9;
    }
    /* Stored w x h; orientation 6 (90 clockwise) displays h x w; 3 is 180. */
    int ow = orientation == 6 ? h : w, oh = orientation == 6 ? w : h;
    CHECK_MSG(img.width == ow && img.height == oh, "%s: %dx%d", name, img.width, img.height);
    double sum = 0;
    if (img.width == ow && img.height == oh) {
        for (int y = 0; y < oh; y++)
            for (int x = 0; x < ow; x++) {
                int sx = x, sy = y;
                if (orientation == 6) sx = y, sy = h - 1 - x;
                if (orientation == 3) sx = w - 1 - x, sy = h - 1 - y;
                for (int c = 0; c < 3; c++)
                    sum += abs(img.rgb[((size_t)y * ow + x) * 3 + c] - proc_pixel(w, h, sx, sy, c));
            }
    }
    sx_image_free(&img);
    return sum / ((double)w * h * 3);
}

static void test_jpeg_content(void) {
    double e1 = jpeg_error("photo_480x360.jpg", 480, 360, 1);
    double e6 = jpeg_error("exif6_200x120.jpg", 200, 120, 6);
    double e3 = jpeg_error("exif3_160x100.jpg", 160, 100, 3);
    printf("jpeg mean abs error vs source: photo %.2f, exif6 %.2f, exif3 %.2f levels\n", e1, e6, e3);
    /* A wrong orientation would be tens of levels off. */
    CHECK(e1 < 8.0);
    CHECK(e6 < 8.0);
    CHECK(e3 < 8.0);
}

/* ---- EXIF orientation ---------------------------------------------------------- */

static int nearest_colour(const uint8_t *p) {
    static const int col[4][3] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {255, 255, 255}};
    int best = 0, best_d = 1 << 30;
    for (int i = 0; i < 4; i++) {
        int d = abs(p[0] - col[i][0]) + abs(p[1] - col[i][1]) + abs(p[2] - col[i][2]);
        if (d < best_d) best = i, best_d = d;
    }
    return best;
}

static size_t find_bytes(const uint8_t *d, size_t len, const char *what, size_t n) {
    for (size_t i = 0; i + n <= len; i++)
        if (!memcmp(d + i, what, n)) return i;
    return 0;
}

static void test_orientation_file(const char *name, size_t at, int little, int expect[9][6]) {
    size_t len;
    uint8_t *data = read_file(fixture(name), &len);
    CHECK_MSG(data && at + 2 <= len, "%s unreadable", name);
    if (!data || at + 2 > len) return;
    for (int o = 1; o <= 8; o++) {
        data[at] = little ? (uint8_t)o : 0;
        data[at + 1] = little ? 0 : (uint8_t)o;
        sx_image img;
        siamidx_error err;
        siamidx_status s = sx_image_decode(data, len, 0, &img, &err);
        CHECK_MSG(s == SIAMIDX_OK, "%s orientation %d: %s", name, o, err.message);
        if (s != SIAMIDX_OK) continue;
        int w = img.width, h = img.height;
        CHECK_MSG(w == expect[o][0] && h == expect[o][1], "%s orientation %d: %dx%d, PIL %dx%d",
                  name, o, w, h, expect[o][0], expect[o][1]);
        if (w == expect[o][0] && h == expect[o][1]) {
            int got[4] = {nearest_colour(img.rgb + ((size_t)4 * w + 4) * 3),
                          nearest_colour(img.rgb + ((size_t)4 * w + w - 5) * 3),
                          nearest_colour(img.rgb + ((size_t)(h - 5) * w + 4) * 3),
                          nearest_colour(img.rgb + ((size_t)(h - 5) * w + w - 5) * 3)};
            for (int k = 0; k < 4; k++)
                CHECK_MSG(got[k] == expect[o][2 + k], "%s orientation %d corner %d: colour %d, PIL %d",
                          name, o, k, got[k], expect[o][2 + k]);
        }
        sx_image_free(&img);
    }

    /* Broken EXIF must not stop the decode: the picture comes out unrotated. */
    size_t tiff = find_bytes(data, len, "Exif\0\0", 6) + 6;
    CHECK(tiff > 6);
    data[at] = little ? 6 : 0;
    data[at + 1] = little ? 0 : 6;
    struct {
        size_t off;
        uint8_t bytes[4];
    } damage[] = {
        {tiff + 4, {0xFF, 0xFF, 0xFF, 0x00}}, /* IFD0 far past the segment */
        {tiff + 8, {0xFF, 0xFF, 0, 0}},       /* 65535 entries (and no orientation tag) */
        {tiff + 0, {'X', 'X', 0, 0}},         /* not a TIFF byte order */
        {at, {9, 9, 0, 0}},                   /* orientation 9 (2313): out of range */
    };
    for (size_t i = 0; i < sizeof damage / sizeof damage[0]; i++) {
        uint8_t *copy = malloc(len);
        memcpy(copy, data, len);
        size_t n = i == 1 || i == 2 || i == 3 ? 2 : 4;
        memcpy(copy + damage[i].off, damage[i].bytes, n);
        if (i == 1) copy[at - 8 + !little] = 0x13; /* tag 0x0112 -> 0x0113: scan every entry */
        sx_image img;
        siamidx_error err;
        siamidx_status s = sx_image_decode(copy, len, 0, &img, &err);
        CHECK_MSG(s == SIAMIDX_OK, "%s damage %zu: %s", name, i, err.message);
        if (s == SIAMIDX_OK)
            CHECK_MSG(img.width == 48 && img.height == 32, "%s damage %zu: %dx%d", name, i,
                      img.width, img.height);
        sx_image_free(&img);
        free(copy);
    }
    free(data);
}

static void test_orientation(void) {
    size_t len;
    char *text = (char *)read_file(fixture("orient_expect.txt"), &len);
    CHECK(text != NULL);
    if (!text) return;
    text = realloc(text, len + 1);
    text[len] = 0;
    int expect[9][6] = {{0}};
    char files[2][64] = {"", ""};
    size_t at[2] = {0, 0};
    int nf = 0, no = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        int o, e[6];
        char name[64];
        size_t off;
        if (sscanf(line, "file %63s %zu", name, &off) == 2 && nf < 2) {
            strcpy(files[nf], name);
            at[nf++] = off;
        } else if (sscanf(line, "orientation %d %d %d %d %d %d %d", &o, &e[0], &e[1], &e[2],
                          &e[3], &e[4], &e[5]) == 7 && o >= 1 && o <= 8) {
            memcpy(expect[o], e, sizeof e);
            no++;
        }
    }
    free(text);
    CHECK(nf == 2 && no == 8);
    for (int i = 0; i < nf; i++)
        test_orientation_file(files[i], at[i], strstr(files[i], "_le") != NULL, expect);
}

/* ---- bad input ------------------------------------------------------------------- */

static void expect_failure(const char *path, siamidx_status want, const char *reason) {
    sx_image img = {1, 1, (uint8_t *)&img};
    siamidx_error err;
    siamidx_status s = sx_image_load(path, 0, &img, &err);
    CHECK_MSG(s == want, "%s: status %d (%s), expected %d", path, s, err.message, want);
    if (s == SIAMIDX_OK) sx_image_free(&img);
    CHECK_MSG(img.rgb == NULL && img.width == 0, "%s: output not cleared", path);
    CHECK_MSG(strstr(err.message, path) != NULL, "message does not name the file: %s", err.message);
    CHECK_MSG(strstr(err.message, reason) != NULL, "message lacks '%s': %s", reason, err.message);
    CHECK_MSG(strchr(err.message, '\n') == NULL, "multi-line message: %s", err.message);
    printf("  %s\n", err.message);
}

static void test_bad_files(void) {
    char path[1024 + 64];
    expect_failure(fixture("truncated.jpg"), SIAMIDX_ERR_IMAGE, "truncated");
    expect_failure(fixture("zero.jpg"), SIAMIDX_ERR_IMAGE, "empty");
    expect_failure(fixture("text.jpg"), SIAMIDX_ERR_IMAGE, "cannot decode image");
    expect_failure(fixture("huge_header.png"), SIAMIDX_ERR_IMAGE_TOO_LARGE, "20000x20000");
    expect_failure(fixture("huge_header.png"), SIAMIDX_ERR_IMAGE_TOO_LARGE, "100000000");
    snprintf(path, sizeof path, "%s/does-not-exist.jpg", dir);
    expect_failure(path, SIAMIDX_ERR_IO, "No such file");
    expect_failure(dir, SIAMIDX_ERR_IO, "directory");

    siamidx_error err;
    sx_image img;
    CHECK(sx_image_decode(NULL, 0, 0, &img, &err) == SIAMIDX_ERR_IMAGE);
    CHECK(sx_image_load("", 0, &img, &err) == SIAMIDX_ERR_INVALID_ARGUMENT);
    CHECK(sx_image_load(fixture("1x1.png"), 0, NULL, &err) == SIAMIDX_ERR_INVALID_ARGUMENT);
}

/* Every prefix of every format: refused or decoded, never a crash (run under ASan). */
static void test_truncations(void) {
    const char *names[] = {"grad_300x180.png", "small_75x50.bmp", "small_75x50.tga",
                           "anim_97x61.gif",   "photo_480x360.jpg", "exif6_200x120.jpg",
                           "rgb16_64x48.png"};
    for (size_t f = 0; f < sizeof names / sizeof names[0]; f++) {
        size_t len;
        uint8_t *data = read_file(fixture(names[f]), &len);
        CHECK(data != NULL);
        if (!data) continue;
        size_t step = len / 97 + 1, ok = 0;
        int is_jpeg = strstr(names[f], ".jpg") != NULL;
        for (size_t n = 1; n < len; n += step) {
            uint8_t *prefix = malloc(n); /* exact size so ASan sees any over-read */
            memcpy(prefix, data, n);
            sx_image img;
            siamidx_error err;
            if (sx_image_decode(prefix, n, 0, &img, &err) == SIAMIDX_OK) {
                ok++;
                CHECK(img.width > 0 && img.height > 0 && img.rgb);
                sx_image_free(&img);
            } else {
                CHECK(err.status == SIAMIDX_ERR_IMAGE);
            }
            free(prefix);
        }
        if (is_jpeg) CHECK_MSG(ok == 0, "%s: %zu truncated copies decoded", names[f], ok);
        free(data);
    }
}

/* ---- the pixel limit -------------------------------------------------------------- */

static void test_pixel_limit(void) {
    sx_image img;
    siamidx_error err;
    /* 300 x 180 = 54000 pixels: allowed at exactly the limit, refused one below. */
    CHECK(sx_image_load(fixture("grad_300x180.png"), 54000, &img, &err) == SIAMIDX_OK);
    sx_image_free(&img);
    CHECK(sx_image_load(fixture("grad_300x180.png"), 53999, &img, &err) ==
          SIAMIDX_ERR_IMAGE_TOO_LARGE);
    CHECK_MSG(strstr(err.message, "300x180") && strstr(err.message, "53999"), "%s", err.message);
    CHECK(img.rgb == NULL);
    CHECK(sx_image_load(fixture("photo_480x360.jpg"), 1000, &img, &err) ==
          SIAMIDX_ERR_IMAGE_TOO_LARGE);
    CHECK(sx_image_load(fixture("anim_97x61.gif"), 97 * 61 - 1, &img, &err) ==
          SIAMIDX_ERR_IMAGE_TOO_LARGE);
    CHECK(sx_image_load(fixture("small_75x50.bmp"), 75 * 50 - 1, &img, &err) ==
          SIAMIDX_ERR_IMAGE_TOO_LARGE);
    CHECK(sx_image_load(fixture("small_75x50.tga"), 75 * 50 - 1, &img, &err) ==
          SIAMIDX_ERR_IMAGE_TOO_LARGE);
    /* A larger limit lets the 400-megapixel header through to the decoder, which then
       finds no pixel data: refused as undecodable, not as too large. */
    siamidx_status s = sx_image_load(fixture("huge_header.png"), 500000000ull, &img, &err);
    CHECK_MSG(s == SIAMIDX_ERR_IMAGE, "status %d: %s", s, err.message);
    sx_image_free(&img);
}

/* ---- top-down BMP (found by fuzz/fuzz_image.c) ------------------------------------- */

static void put_le(uint8_t *p, uint32_t v, int n) {
    for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* A 24-bit BMP of 3 x 2 pixels; a negative height stores the rows top first. */
static size_t make_bmp(uint8_t *b, int top_down) {
    static const uint8_t rows[2][3][3] = {{{10, 20, 30}, {40, 50, 60}, {70, 80, 90}},
                                          {{1, 2, 3}, {4, 5, 6}, {7, 8, 9}}}; /* top, bottom; RGB */
    const int w = 3, h = 2, stride = 12, off = 54;
    memset(b, 0, 54 + stride * h);
    b[0] = 'B', b[1] = 'M';
    put_le(b + 2, (uint32_t)(off + stride * h), 4);
    put_le(b + 10, off, 4);
    put_le(b + 14, 40, 4);
    put_le(b + 18, (uint32_t)w, 4);
    put_le(b + 22, (uint32_t)(top_down ? -h : h), 4);
    put_le(b + 26, 1, 2);
    put_le(b + 28, 24, 2);
    put_le(b + 34, (uint32_t)(stride * h), 4);
    for (int r = 0; r < h; r++) { /* stored row r: the top row first when top-down */
        int y = top_down ? r : h - 1 - r;
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) b[off + r * stride + x * 3 + c] = rows[y][x][2 - c]; /* BGR */
    }
    return (size_t)(off + stride * h);
}

/* stb_image's info call reports a top-down BMP's height negative; the pixel
   limit read it as 2^64 - 6 pixels and refused every such file. */
static void test_top_down_bmp(void) {
    uint8_t up[80], down[80];
    size_t n_up = make_bmp(up, 0), n_down = make_bmp(down, 1);
    sx_image a, b;
    siamidx_error err;
    CHECK(sx_image_decode(up, n_up, 6, &a, &err) == SIAMIDX_OK);
    siamidx_status s = sx_image_decode(down, n_down, 6, &b, &err);
    CHECK_MSG(s == SIAMIDX_OK, "top-down BMP: status %d: %s", s, s ? err.message : "");
    if (s == SIAMIDX_OK && a.rgb) {
        CHECK(b.width == 3 && b.height == 2);
        CHECK_MSG(!memcmp(a.rgb, b.rgb, 18), "top-down and bottom-up BMPs decode differently");
        CHECK(b.rgb[0] == 10 && b.rgb[17] == 9);
    }
    sx_image_free(&a);
    sx_image_free(&b);
    s = sx_image_decode(down, n_down, 5, &b, &err);
    CHECK_MSG(s == SIAMIDX_ERR_IMAGE_TOO_LARGE && strstr(err.message, "3x2 = 6 pixels"),
              "status %d: %s", s, err.message);
}

/* An empty IDAT chunk before the real one is legal PNG, and made stb_image
   2.27 compute NULL + 0 (undefined; found by fuzz/fuzz_image.c). It decodes,
   to the same pixels as without it, and so does one between two IDATs. */
static void test_empty_idat(void) {
    size_t len;
    uint8_t *png = read_file(fixture("1x1.png"), &len);
    CHECK(png != NULL && len > 33);
    if (!png) return;
    /* 00000000 "IDAT" CRC-32("IDAT") = 35 af 06 1e, after the IHDR (8 + 25 bytes) */
    static const uint8_t empty[12] = {0, 0, 0, 0, 'I', 'D', 'A', 'T', 0x35, 0xaf, 0x06, 0x1e};
    uint8_t *with = malloc(len + 24);
    memcpy(with, png, 33);
    memcpy(with + 33, empty, 12);
    memcpy(with + 45, png + 33, len - 33);
    sx_image a, b;
    siamidx_error err;
    CHECK(sx_image_decode(png, len, 0, &a, &err) == SIAMIDX_OK);
    siamidx_status s = sx_image_decode(with, len + 12, 0, &b, &err);
    CHECK_MSG(s == SIAMIDX_OK, "empty IDAT: status %d: %s", s, s ? err.message : "");
    if (!s && a.rgb) CHECK(b.width == a.width && b.height == a.height && !memcmp(a.rgb, b.rgb, 3));
    sx_image_free(&b);
    /* and an empty IDAT chunk at the end, before IEND */
    memcpy(with, png, len - 12);
    memcpy(with + len - 12, empty, 12);
    memcpy(with + len, png + len - 12, 12);
    s = sx_image_decode(with, len + 12, 0, &b, &err);
    CHECK_MSG(s == SIAMIDX_OK, "trailing empty IDAT: status %d: %s", s, s ? err.message : "");
    if (!s && a.rgb) CHECK(!memcmp(a.rgb, b.rgb, 3));
    sx_image_free(&a);
    sx_image_free(&b);
    free(with);
    free(png);
}

/* A PNG chunk claiming more bytes than the file has left made stb_image
   2.27 allocate the claimed size first (2 GB for the 250 bytes fuzz_image
   found in CI): refused as truncated before stb sees it. */
static void test_overlong_png_chunk(void) {
    size_t len;
    uint8_t *png = read_file(fixture("1x1.png"), &len);
    CHECK(png != NULL && len > 45);
    if (!png) return;
    /* after the IHDR (8 + 25 bytes): an IDAT header claiming 0x42ca0000 bytes, 6 bytes after it */
    static const uint8_t bomb[14] = {0x42, 0xca, 0, 0, 'I', 'D', 'A', 'T', 0, 0, 'I', 'E', 'N', 'D'};
    uint8_t file[33 + sizeof bomb];
    memcpy(file, png, 33);
    memcpy(file + 33, bomb, sizeof bomb);
    sx_image img;
    siamidx_error err;
    siamidx_status s = sx_image_decode(file, sizeof file, 0, &img, &err);
    CHECK_MSG(s == SIAMIDX_ERR_IMAGE && img.rgb == NULL && strstr(err.message, "truncated PNG") &&
                  strstr(err.message, "'IDAT' chunk at byte 33 claims 1120534528 bytes, 2 are left"),
              "status %d: %s", s, s ? err.message : "");
    if (!s) sx_image_free(&img);
    /* the intact file still decodes: its chunks all fit */
    CHECK(sx_image_decode(png, len, 0, &img, &err) == SIAMIDX_OK);
    if (img.rgb) sx_image_free(&img);
    free(png);
}

/* A GIF whose frame stb decodes to 1150 x 0 pixels (found by fuzz/fuzz_image.c in CI):
   refused as no image, never returned as an empty one. */
static void test_zero_height_gif(void) {
    static const uint8_t gif[] = {
        0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x7e, 0x4,  0x0,  0x0,  0xf1, 0x0,  0x0,  0x0,
        0x0,  0x0,  0xfe, 0x0,  0x0,  0x0,  0xff, 0x0,  0x0,  0x0,  0xff, 0x2c, 0x0,  0x0,
        0x0,  0x0,  0xff, 0x0,  0x0,  0x0,  0xff, 0x2c, 0x0,  0x0,  0xa8, 0x11, 0x4d, 0x4d,
        0x0,  0x2a, 0x35, 0x22, 0xd4, 0x18, 0x71, 0x60, 0xc4, 0x2,  0x0,  0x3b};
    sx_image img;
    siamidx_error err;
    siamidx_status s = sx_image_decode(gif, sizeof gif, 0, &img, &err);
    CHECK_MSG(s == SIAMIDX_ERR_IMAGE && img.rgb == NULL && strstr(err.message, "x0 pixels"),
              "status %d, %dx%d: %s", s, img.width, img.height, s ? err.message : "");
    if (!s) sx_image_free(&img);
}

/* stb_image 2.27 overruns its Huffman arrays on a DHT table whose 16 code
   counts sum past 256 (found by fuzz/fuzz_image.c); image.c refuses it
   first, in a header DHT and in one placed after the first scan. */
static void test_oversized_huffman_table(void) {
    size_t len;
    uint8_t *jpg = read_file(fixture("orient_le.jpg"), &len);
    CHECK(jpg != NULL);
    if (!jpg) return;
    size_t dht = find_bytes(jpg, len, "\xff\xc4", 2);
    CHECK(dht > 0);
    sx_image img;
    siamidx_error err;
    CHECK(sx_image_decode(jpg, len, 0, &img, &err) == SIAMIDX_OK);
    sx_image_free(&img);
    uint8_t *bad = malloc(len + 64);
    memcpy(bad, jpg, len);
    for (int i = 0; i < 16; i++) bad[dht + 5 + i] = 0x20; /* 512 codes */
    siamidx_status s = sx_image_decode(bad, len, 0, &img, &err);
    CHECK_MSG(s == SIAMIDX_ERR_IMAGE && strstr(err.message, "Huffman table"), "status %d: %s", s,
              s ? err.message : "decoded");
    /* The same table after the scan data, where progressive JPEGs put theirs. */
    size_t eoi = len - 2;
    CHECK(jpg[eoi] == 0xff && jpg[eoi + 1] == 0xd9);
    static const uint8_t table[] = {0xff, 0xc4, 0x00, 0x13, 0x00, 0x20, 0x20, 0x20, 0x20, 0x20,
                                    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
                                    0x20, 0x00};
    memcpy(bad, jpg, eoi);
    memcpy(bad + eoi, table, sizeof table);
    memcpy(bad + eoi + sizeof table, jpg + eoi, 2);
    s = sx_image_decode(bad, len + sizeof table, 0, &img, &err);
    CHECK_MSG(s == SIAMIDX_ERR_IMAGE && strstr(err.message, "Huffman table"), "after the scan: %d: %s",
              s, s ? err.message : "decoded");
    free(bad);
    free(jpg);
}

/* ---- threads ------------------------------------------------------------------------ */

#define N_THREAD_FILES 6
static const char *thread_files[N_THREAD_FILES] = {"photo_480x360.jpg", "text.jpg",
                                                   "anim_97x61.gif",    "truncated.jpg",
                                                   "exif6_200x120.jpg", "grad_300x180.png"};
static sx_image thread_ref[N_THREAD_FILES];
static siamidx_error thread_ref_err[N_THREAD_FILES];

typedef struct thread_result {
    int id, mismatches;
} thread_result;

static void *decode_many(void *arg) {
    thread_result *r = arg;
    for (int iter = 0; iter < 12; iter++) {
        int f = (iter + r->id) % N_THREAD_FILES;
        sx_image img;
        siamidx_error err;
        siamidx_status s = sx_image_load(fixture(thread_files[f]), 0, &img, &err);
        const sx_image *ref = &thread_ref[f];
        if (s != thread_ref_err[f].status) r->mismatches++;
        else if (s != SIAMIDX_OK && strcmp(err.message, thread_ref_err[f].message)) r->mismatches++;
        else if (s == SIAMIDX_OK &&
                 (img.width != ref->width || img.height != ref->height ||
                  memcmp(img.rgb, ref->rgb, (size_t)img.width * img.height * 3)))
            r->mismatches++;
        if (s == SIAMIDX_OK) sx_image_free(&img);
    }
    return NULL;
}

static void test_threads(void) {
    for (int f = 0; f < N_THREAD_FILES; f++) {
        siamidx_status s = sx_image_load(fixture(thread_files[f]), 0, &thread_ref[f],
                                         &thread_ref_err[f]);
        if (s == SIAMIDX_OK) thread_ref_err[f].status = SIAMIDX_OK;
    }
    enum { N = 8 };
    pthread_t th[N];
    thread_result res[N];
    for (int i = 0; i < N; i++) {
        res[i].id = i;
        res[i].mismatches = 0;
        CHECK(pthread_create(&th[i], NULL, decode_many, &res[i]) == 0);
    }
    int bad = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        bad += res[i].mismatches;
    }
    CHECK_MSG(bad == 0, "%d decodes from threads differ from the single-threaded ones", bad);
    for (int f = 0; f < N_THREAD_FILES; f++) sx_image_free(&thread_ref[f]);
}

int main(void) {
    snprintf(dir, sizeof dir, "%s/images", check_env_dir("SIAMIDX_TEST_DATA"));
    test_manifest();
    test_jpeg_content();
    test_orientation();
    test_bad_files();
    test_truncations();
    test_pixel_limit();
    test_top_down_bmp();
    test_oversized_huffman_table();
    test_empty_idat();
    test_zero_height_gif();
    test_overlong_png_chunk();
    test_threads();
    CHECK_DONE();
}

/*
 * image.c - decoding image files to 8-bit RGB with stb_image.
 *
 * What this adds over stb_image:
 *   - the pixel limit is checked from the header, before any pixel buffer is
 *     allocated, so a tiny file claiming 20000 x 20000 costs nothing;
 *   - JPEG EXIF orientation is applied (as PIL's ImageOps.exif_transpose), so
 *     a photo taken sideways is embedded the way it is displayed;
 *   - every failure names the file and the reason.
 *
 * Thread safety: stb_image keeps its failure reason (and a few load flags we
 * never set) in globals unless STBI_THREAD_LOCAL is available; with it they
 * are per thread, so concurrent decodes cannot see each other's reasons.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image/image.h"
#include "base/error.h"

#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_FAILURE_USERMSG
#define STBI_ONLY_JPEG
#define STBI_ONLY_PNG
#define STBI_ONLY_BMP
#define STBI_ONLY_GIF
#define STBI_ONLY_TGA
#define STBI_NO_HDR
#define STBI_NO_LINEAR
/* Larger than any side the pixel limit lets through in practice (JPEG tops out
   at 65535); a header beyond it is refused as corrupt. */
#define STBI_MAX_DIMENSIONS (1 << 20)

#if defined(__GNUC__)
/* stb declares static functions it never defines with STB_IMAGE_STATIC; gcc
   reports those at the end of the file, so this one stays off for the file. */
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#endif
#include <stb/stb_image.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#ifndef STBI_THREAD_LOCAL
#error "stb_image without thread-local failure reasons: concurrent decoding would be unsafe"
#endif

/* Largest file we hand to stb_image, whose lengths are ints. */
#define SX_MAX_FILE_BYTES ((size_t)INT_MAX)

/* ---- reading the file ---------------------------------------------------- */

static siamidx_status read_whole_file(const char *path, uint8_t **out, size_t *out_len,
                                      siamidx_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sx_fail(err, SIAMIDX_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return sx_fail(err, SIAMIDX_ERR_IO, "%s: %s", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return sx_fail(err, SIAMIDX_ERR_IO, "%s: is a directory, not an image file", path);
    }
    /* Regular files tell their size; pipes and devices grow the buffer. */
    size_t cap = S_ISREG(st.st_mode) && st.st_size > 0 ? (size_t)st.st_size + 1 : 65536;
    if (cap > SX_MAX_FILE_BYTES) cap = SX_MAX_FILE_BYTES;
    uint8_t *buf = malloc(cap);
    size_t len = 0;
    if (!buf) {
        close(fd);
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "%s: out of memory reading the file", path);
    }
    for (;;) {
        if (len == cap) {
            if (cap >= SX_MAX_FILE_BYTES) {
                free(buf);
                close(fd);
                return sx_fail(err, SIAMIDX_ERR_IMAGE, "%s: file too large to decode (over %zu bytes)",
                               path, SX_MAX_FILE_BYTES);
            }
            size_t ncap = cap > SX_MAX_FILE_BYTES / 2 ? SX_MAX_FILE_BYTES : cap * 2;
            uint8_t *nbuf = realloc(buf, ncap);
            if (!nbuf) {
                free(buf);
                close(fd);
                return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "%s: out of memory reading the file", path);
            }
            buf = nbuf;
            cap = ncap;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int e = errno;
            free(buf);
            close(fd);
            return sx_fail(err, SIAMIDX_ERR_IO, "%s: %s", path, strerror(e));
        }
        if (n == 0) break;
        len += (size_t)n;
    }
    close(fd);
    if (len == 0) {
        free(buf);
        return sx_fail(err, SIAMIDX_ERR_IMAGE, "%s: file is empty (0 bytes)", path);
    }
    *out = buf;
    *out_len = len;
    return SIAMIDX_OK;
}

/* ---- header size --------------------------------------------------------- */

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int is_png(const uint8_t *d, size_t len) {
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    return len >= 8 && !memcmp(d, sig, 8);
}

/*
 * stb's PNG header check already refuses some huge sizes ("too large") before
 * saying how large; read the IHDR ourselves so the caller hears the real size.
 */
static int png_header_size(const uint8_t *d, size_t len, uint32_t *w, uint32_t *h) {
    if (len < 24 || !is_png(d, len) || memcmp(d + 12, "IHDR", 4) != 0) return 0;
    *w = be32(d + 16);
    *h = be32(d + 20);
    return 1;
}

/*
 * A PNG whose first IDAT chunk is empty makes stb_image 2.27 (Debian 12) read
 * zero bytes to NULL + 0, which C leaves undefined (UBSan reports it; found by
 * fuzz_image). An empty IDAT carries no pixels, so decode a copy without the
 * empty ones: *copy is NULL when there is none to drop (or on a malformed
 * chunk list, which stb then refuses itself), else malloc'ed, *copy_len long.
 */
static int png_drop_empty_idat(const uint8_t *d, size_t len, uint8_t **copy, size_t *copy_len) {
    *copy = NULL;
    if (!is_png(d, len)) return 0;
    size_t empty = 0;
    for (size_t p = 8; p + 12 <= len;) {
        uint64_t n = be32(d + p);
        if (n == 0 && !memcmp(d + p + 4, "IDAT", 4)) empty++;
        if (!memcmp(d + p + 4, "IEND", 4) || n > len - p - 12) break;
        p += 12 + (size_t)n;
    }
    if (!empty) return 0;
    if (!(*copy = malloc(len))) return -1;
    size_t out = 8, p = 8;
    memcpy(*copy, d, 8);
    while (p + 12 <= len) {
        uint64_t n = be32(d + p);
        int end = !memcmp(d + p + 4, "IEND", 4) || n > len - p - 12;
        size_t chunk = end ? len - p : 12 + (size_t)n;
        if (end || n != 0 || memcmp(d + p + 4, "IDAT", 4)) {
            memcpy(*copy + out, d + p, chunk);
            out += chunk;
        }
        p += chunk;
    }
    memcpy(*copy + out, d + p, len - p); /* a tail shorter than a chunk header */
    *copy_len = out + (len - p);
    return 0;
}

/*
 * A chunk of a PNG longer than what is left of the file: stb_image 2.27 grows
 * its IDAT buffer to the declared length before it finds the bytes missing,
 * so a 250-byte file claiming a 1.1 GB IDAT made it allocate 2 GB (found by
 * fuzz_image). No valid PNG has such a chunk: the caller refuses it first.
 * Returns the first such chunk's offset (0: none, or not a PNG).
 */
static size_t png_overlong_chunk(const uint8_t *d, size_t len, uint64_t *claimed) {
    if (!is_png(d, len)) return 0;
    for (size_t p = 8; p + 12 <= len;) {
        uint64_t n = be32(d + p);
        if (n > len - p - 12) {
            *claimed = n;
            return p;
        }
        if (!memcmp(d + p + 4, "IEND", 4)) break;
        p += 12 + (size_t)n;
    }
    return 0;
}

static siamidx_status check_pixel_limit(const uint8_t *data, size_t len, uint64_t max_pixels,
                                        siamidx_error *err) {
    int w = 0, h = 0, comp = 0;
    uint64_t pixels;
    uint32_t pw, ph;
    if (stbi_info_from_memory(data, (int)len, &w, &h, &comp)) {
        /* stb 2.27 reports a top-down BMP's height as stored: negative. */
        uint64_t aw = w < 0 ? (uint64_t)-(int64_t)w : (uint64_t)w;
        uint64_t ah = h < 0 ? (uint64_t)-(int64_t)h : (uint64_t)h;
        pixels = aw * ah;
        if (pixels > max_pixels)
            return sx_fail(err, SIAMIDX_ERR_IMAGE_TOO_LARGE,
                           "image is %llux%llu = %llu pixels, over the limit of %llu pixels",
                           (unsigned long long)aw, (unsigned long long)ah,
                           (unsigned long long)pixels, (unsigned long long)max_pixels);
        return SIAMIDX_OK;
    }
    if (png_header_size(data, len, &pw, &ph)) {
        pixels = (uint64_t)pw * ph;
        if (pixels > max_pixels)
            return sx_fail(err, SIAMIDX_ERR_IMAGE_TOO_LARGE,
                           "image is %ux%u = %llu pixels, over the limit of %llu pixels", pw, ph,
                           (unsigned long long)pixels, (unsigned long long)max_pixels);
    }
    const char *why = stbi_failure_reason();
    return sx_fail(err, SIAMIDX_ERR_IMAGE, "cannot decode image: %s",
                   why ? why : "unknown format");
}

/* ---- EXIF orientation ------------------------------------------------------ */

typedef struct tiff_reader {
    const uint8_t *p;
    size_t len;
    int little;
} tiff_reader;

static int tiff_u16(const tiff_reader *t, size_t off, unsigned *v) {
    if (off > t->len || t->len - off < 2) return 0;
    const uint8_t *q = t->p + off;
    *v = t->little ? (unsigned)(q[0] | q[1] << 8) : (unsigned)(q[0] << 8 | q[1]);
    return 1;
}

static int tiff_u32(const tiff_reader *t, size_t off, uint32_t *v) {
    if (off > t->len || t->len - off < 4) return 0;
    const uint8_t *q = t->p + off;
    *v = t->little ? (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24
                   : be32(q);
    return 1;
}

/* Orientation tag (0x0112) of IFD0 in a TIFF block, or 1 when absent/invalid. */
static int tiff_orientation(const uint8_t *p, size_t len) {
    tiff_reader t = {p, len, 0};
    if (len < 8) return 1;
    if (p[0] == 'I' && p[1] == 'I') t.little = 1;
    else if (!(p[0] == 'M' && p[1] == 'M')) return 1;
    unsigned magic, n_entries;
    uint32_t ifd0;
    if (!tiff_u16(&t, 2, &magic) || magic != 42 || !tiff_u32(&t, 4, &ifd0)) return 1;
    if (!tiff_u16(&t, ifd0, &n_entries)) return 1;
    for (unsigned i = 0; i < n_entries; i++) {
        size_t e = (size_t)ifd0 + 2 + (size_t)i * 12;
        unsigned tag, type, value;
        uint32_t count;
        if (!tiff_u16(&t, e, &tag) || !tiff_u16(&t, e + 2, &type) || !tiff_u32(&t, e + 4, &count))
            return 1;
        if (tag != 0x0112) continue;
        if (type != 3 || count != 1 || !tiff_u16(&t, e + 8, &value)) return 1; /* SHORT */
        return value >= 1 && value <= 8 ? (int)value : 1;
    }
    return 1;
}

/*
 * Walks a JPEG's marker segments up to the first scan. Finds the orientation
 * from the first APP1 "Exif\0\0" segment (1 when absent) and the offset of
 * the first SOS marker (0 when none before the data ends).
 */
static void jpeg_markers(const uint8_t *d, size_t len, int *orientation, size_t *sos) {
    int found_exif = 0;
    size_t pos = 2;
    *orientation = 1;
    *sos = 0;
    while (pos + 4 <= len) {
        if (d[pos] != 0xFF) return;
        uint8_t marker = d[pos + 1];
        if (marker == 0xFF) { /* fill byte */
            pos++;
            continue;
        }
        if (marker == 0xD8 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) {
            pos += 2; /* markers without a length */
            continue;
        }
        if (marker == 0xD9) return;
        if (marker == 0xDA) {
            *sos = pos;
            return;
        }
        size_t seg = (size_t)d[pos + 2] << 8 | d[pos + 3]; /* includes the length bytes */
        if (seg < 2 || seg > len - pos - 2) return;
        const uint8_t *body = d + pos + 4;
        size_t body_len = seg - 2;
        if (!found_exif && marker == 0xE1 && body_len >= 6 && memcmp(body, "Exif\0\0", 6) == 0) {
            found_exif = 1;
            *orientation = tiff_orientation(body + 6, body_len - 6);
        }
        pos += 2 + seg;
    }
}

static int is_jpeg(const uint8_t *d, size_t len) {
    return len >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF;
}

/*
 * stb_image decodes a truncated JPEG without complaint, filling the missing
 * part with grey; PIL (and so the reference pipeline) refuses it. Entropy-coded
 * data never holds an unescaped FF D9, so the end-of-image marker must follow
 * the first scan somewhere.
 */
static int jpeg_has_end(const uint8_t *d, size_t len, size_t sos) {
    for (size_t i = sos; i + 1 < len; i++)
        if (d[i] == 0xFF && d[i + 1] == 0xD9) return 1;
    return 0;
}

/*
 * stb_image 2.27 (Debian 12) builds a JPEG Huffman table without checking that
 * its 16 code counts sum to at most 256 (2.28 added the check): a DHT segment
 * claiming more writes past its 257-byte arrays, already in stbi_info. Before
 * stb sees a JPEG we walk its markers the way stb does -- bytes that are not
 * FF skipped, FF fill skipped, segments skipped by their length, and after a
 * scan header everything up to the next FF xx (xx not 00 or a restart) -- and
 * refuse any DHT table stb would overrun on. Past the end stb reads zeros.
 */
static unsigned byte_or_zero(const uint8_t *d, size_t len, size_t i) { return i < len ? d[i] : 0; }

static int dht_fits(const uint8_t *d, size_t len, size_t p /* at the length bytes */) {
    long left = (long)(byte_or_zero(d, len, p) << 8 | byte_or_zero(d, len, p + 1)) - 2;
    for (p += 2; left > 0;) { /* as stb: tables until the length is used up */
        unsigned n = 0;
        for (size_t i = 1; i <= 16; i++) n += byte_or_zero(d, len, p + i);
        if (n > 256) return 0;
        p += 17 + n;
        left -= 17 + (long)n;
    }
    return 1;
}

/* Offset just after a JPEG start-of-image marker as stb reads it (FF, any FF
   fill, D8), or 0 when stb would not take the data for a JPEG. */
static size_t jpeg_soi_end(const uint8_t *d, size_t len) {
    size_t p = 0;
    if (len < 2 || d[0] != 0xFF) return 0;
    while (p < len && d[p] == 0xFF) p++;
    return p < len && d[p] == 0xD8 ? p + 1 : 0;
}

static int jpeg_huffman_tables_fit(const uint8_t *d, size_t len, size_t p) {
    while (p < len) {
        if (d[p] != 0xFF) { /* junk, or entropy-coded data */
            p++;
            continue;
        }
        while (p < len && d[p] == 0xFF) p++;
        if (p >= len) return 1;
        unsigned m = d[p++];
        if (m == 0x00 || m == 0x01 || (m >= 0xD0 && m <= 0xD8)) continue; /* no length */
        if (m == 0xD9) return 1;                                            /* end of image */
        if (m == 0xC4 && !dht_fits(d, len, p)) return 0;
        size_t seg = byte_or_zero(d, len, p) << 8 | byte_or_zero(d, len, p + 1);
        p += seg >= 2 ? seg : 2;
    }
    return 1;
}

/*
 * Applies an EXIF orientation the way PIL's exif_transpose does:
 * 2 mirror, 3 rotate 180, 4 flip, 5 transpose, 6 rotate 90 clockwise,
 * 7 transverse, 8 rotate 90 counter-clockwise. For each output pixel we
 * compute the source pixel, which keeps all eight cases in one loop.
 */
static siamidx_status apply_orientation(sx_image *img, int orientation, siamidx_error *err) {
    if (orientation <= 1 || orientation > 8) return SIAMIDX_OK;
    int w = img->width, h = img->height;
    int swap = orientation >= 5;
    int ow = swap ? h : w, oh = swap ? w : h;
    uint8_t *out = malloc((size_t)ow * oh * 3);
    if (!out) return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "out of memory rotating the image");
    for (int y = 0; y < oh; y++) {
        for (int x = 0; x < ow; x++) {
            int sx, sy;
            switch (orientation) {
            case 2: sx = w - 1 - x; sy = y; break;
            case 3: sx = w - 1 - x; sy = h - 1 - y; break;
            case 4: sx = x; sy = h - 1 - y; break;
            case 5: sx = y; sy = x; break;
            case 6: sx = y; sy = h - 1 - x; break;
            case 7: sx = w - 1 - y; sy = h - 1 - x; break;
            default: sx = w - 1 - y; sy = x; break; /* 8 */
            }
            memcpy(out + ((size_t)y * ow + x) * 3, img->rgb + ((size_t)sy * w + sx) * 3, 3);
        }
    }
    stbi_image_free(img->rgb);
    img->rgb = out;
    img->width = ow;
    img->height = oh;
    return SIAMIDX_OK;
}

/* ---- public -------------------------------------------------------------- */

siamidx_status sx_image_decode(const uint8_t *data, size_t len, uint64_t max_pixels, sx_image *out,
                               siamidx_error *err) {
    if (!out) return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "sx_image_decode: no output image");
    out->width = out->height = 0;
    out->rgb = NULL;
    if (!data || len == 0) return sx_fail(err, SIAMIDX_ERR_IMAGE, "image data is empty (0 bytes)");
    if (len > SX_MAX_FILE_BYTES)
        return sx_fail(err, SIAMIDX_ERR_IMAGE, "image data too large to decode (%zu bytes)", len);
    if (max_pixels == 0) max_pixels = SIAMIDX_DEFAULT_MAX_PIXELS;

    size_t soi = jpeg_soi_end(data, len);
    if (soi && !jpeg_huffman_tables_fit(data, len, soi))
        return sx_fail(err, SIAMIDX_ERR_IMAGE,
                       "cannot decode image: corrupt JPEG (a Huffman table defines more than 256 "
                       "codes)");

    siamidx_status s = check_pixel_limit(data, len, max_pixels, err);
    if (s != SIAMIDX_OK) return s;

    int orientation = 1;
    if (is_jpeg(data, len)) {
        size_t sos;
        jpeg_markers(data, len, &orientation, &sos);
        if (sos == 0 || !jpeg_has_end(data, len, sos))
            return sx_fail(err, SIAMIDX_ERR_IMAGE,
                           "cannot decode image: truncated JPEG (no end-of-image marker after the "
                           "scan data)");
    }

    uint64_t claimed = 0;
    size_t at = png_overlong_chunk(data, len, &claimed);
    if (at)
        return sx_fail(err, SIAMIDX_ERR_IMAGE,
                       "cannot decode image: truncated PNG (its '%.4s' chunk at byte %zu claims "
                       "%llu bytes, %zu are left)",
                       (const char *)data + at + 4, at, (unsigned long long)claimed, len - at - 12);
    int w = 0, h = 0, comp = 0;
    uint8_t *clean = NULL;
    size_t clean_len = 0;
    if (png_drop_empty_idat(data, len, &clean, &clean_len))
        return sx_fail(err, SIAMIDX_ERR_NO_MEMORY, "out of memory decoding a PNG of %zu bytes", len);
    uint8_t *rgb = clean ? stbi_load_from_memory(clean, (int)clean_len, &w, &h, &comp, 3)
                         : stbi_load_from_memory(data, (int)len, &w, &h, &comp, 3);
    free(clean);
    if (!rgb) {
        const char *why = stbi_failure_reason();
        return sx_fail(err, SIAMIDX_ERR_IMAGE, "cannot decode image: %s", why ? why : "unknown error");
    }
    /* stb can "decode" a frame of no rows or columns (a GIF of height 0, found by
       fuzz_image): that is no image, not an empty one. */
    if (w <= 0 || h <= 0) {
        stbi_image_free(rgb);
        return sx_fail(err, SIAMIDX_ERR_IMAGE, "cannot decode image: it is %dx%d pixels", w, h);
    }
    /* Headers can disagree with what decodes: check again. */
    if ((uint64_t)w * (uint64_t)h > max_pixels) {
        stbi_image_free(rgb);
        return sx_fail(err, SIAMIDX_ERR_IMAGE_TOO_LARGE,
                       "image is %dx%d pixels, over the limit of %llu pixels", w, h,
                       (unsigned long long)max_pixels);
    }
    out->width = w;
    out->height = h;
    out->rgb = rgb;
    s = apply_orientation(out, orientation, err);
    if (s != SIAMIDX_OK) sx_image_free(out);
    return s;
}

siamidx_status sx_image_load(const char *path, uint64_t max_pixels, sx_image *out,
                             siamidx_error *err) {
    if (!out) return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "sx_image_load: no output image");
    out->width = out->height = 0;
    out->rgb = NULL;
    if (!path || !*path) return sx_fail(err, SIAMIDX_ERR_INVALID_ARGUMENT, "empty image path");
    uint8_t *data = NULL;
    size_t len = 0;
    siamidx_status s = read_whole_file(path, &data, &len, err);
    if (s != SIAMIDX_OK) return s;
    s = sx_image_decode(data, len, max_pixels, out, err);
    free(data);
    if (s != SIAMIDX_OK) sx_error_prefix(err, "%s", path);
    return s;
}

void sx_image_free(sx_image *img) {
    if (!img) return;
    /* Both stb's buffer and ours come from malloc (STBI_MALLOC default). */
    stbi_image_free(img->rgb);
    img->rgb = NULL;
    img->width = img->height = 0;
}

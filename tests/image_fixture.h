/* image_fixture.h - the synthetic picture the image tests share with
 * tools/make_image_fixtures.py, recomputed here so that large inputs never
 * need to be stored as files. */
#ifndef SIAMIDX_TEST_IMAGE_FIXTURE_H
#define SIAMIDX_TEST_IMAGE_FIXTURE_H

#include <stdint.h>

/* Same formula as proc_image() in tools/make_image_fixtures.py. */
static inline uint8_t proc_pixel(int w, int h, int x, int y, int c) {
    int64_t t = ((int64_t)x * (c + 1) * 1024 / w + (int64_t)y * (3 - c) * 512 / h) % 512;
    int64_t v = t < 256 ? t : 511 - t;
    int cx = w / 3, cy = h / 2, r = (w < h ? w : h) / 4;
    if ((int64_t)(x - cx) * (x - cx) + (int64_t)(y - cy) * (y - cy) < (int64_t)r * r) v = 255 - v;
    if (x >= w / 2 && x < w * 3 / 4 && y >= h / 5 && y < h * 2 / 5) v = c == 0 ? 240 : 20;
    int period = (w < h ? w : h) / 10;
    if (period < 1) period = 1;
    if (((x + y) / period) % 5 == 0) v /= 2;
    uint32_t hs = (uint32_t)x * 374761393u + (uint32_t)y * 668265263u + (uint32_t)c * 2246822519u;
    hs = (hs ^ (hs >> 13)) * 1274126177u;
    hs ^= hs >> 16;
    v += (int64_t)(hs % 9) - 4;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

#endif

/* test_train_fixture.h - two small training collections (CSVs listing the
 * fixture images of tests/data/images by absolute path, nothing copied) for
 * the training tests. */
#ifndef SIAMIDX_TEST_TRAIN_FIXTURE_H
#define SIAMIDX_TEST_TRAIN_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

/* A: ann 3, bob 3. B: bob 2 more, cy 3, and photo_480x360.jpg again (listed by A). */
static const char *const FIXTURE_A[][2] = {
    {"photo_480x360.jpg", "ann"}, {"exif6_200x120.jpg", "ann"}, {"grad_300x180.png", "ann"},
    {"gray_181x401.png", "bob"},  {"exif3_160x100.jpg", "bob"}, {"gray_90x70.jpg", "bob"}};
static const char *const FIXTURE_B[][2] = {
    {"small_75x50.bmp", "bob"}, {"rgba_75x50.png", "bob"},    {"la_75x50.png", "cy"},
    {"small_75x50.tga", "cy"},  {"anim_97x61.gif", "cy"},     {"photo_480x360.jpg", "ann"}};

static const char *fixture_tmp(void) {
    const char *t = getenv("SIAMIDX_TMP");
    if (!t || !*t) t = "/tmp";
    mkdir(t, 0777);
    return t;
}

/* Writes DIR/name listing rows[0..n) with images from data_dir/images. */
static void fixture_csv(const char *path, const char *data_dir, const char *const (*rows)[2],
                        int n) {
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    char abs[4096];
    if (!realpath(data_dir, abs)) {
        fprintf(stderr, "cannot resolve %s\n", data_dir);
        exit(1);
    }
    fprintf(f, "filename,artist\n");
    for (int i = 0; i < n; i++) fprintf(f, "%s/images/%s,%s\n", abs, rows[i][0], rows[i][1]);
    fclose(f);
}

#endif

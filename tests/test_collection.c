/* test_collection.c - loading what `siamidx build` indexes: CSV fixtures, a
 * directory tree made here, and the real paintings (skipped when absent). */
#define _DEFAULT_SOURCE /* symlink, mkdtemp */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "data/collection.h"

static const char *data_dir;
static char cwd[4096];

static int streq(const char *a, const char *b) { return a && b && !strcmp(a, b); }

/* An issue whose message contains `text`, or NULL. */
static const sx_collection_issue *find_issue(const sx_collection *c, const char *text) {
    for (size_t i = 0; i < c->n_issues; i++)
        if (strstr(c->issues[i].message, text)) return &c->issues[i];
    return NULL;
}

static void dump_issues(const sx_collection *c) {
    for (size_t i = 0; i < c->n_issues; i++)
        fprintf(stderr, "  issue: %s\n", c->issues[i].message);
}

static siamidx_status load_fixture(const char *name, const char *root, sx_collection *c,
                                   siamidx_error *err) {
    char path[1024];
    snprintf(path, sizeof path, "%s/csv/%s", data_dir, name);
    return sx_collection_load(path, root, c, err);
}

/* The absolute path the loader should give for `rel` under `dir`. */
static void expect_resolved(const sx_collection_entry *e, const char *dir, const char *rel) {
    char want[8192];
    if (dir[0] == '/')
        snprintf(want, sizeof want, "%s/%s", dir, rel);
    else
        snprintf(want, sizeof want, "%s/%s/%s", cwd, dir, rel);
    CHECK_MSG(streq(e->resolved, want), "resolved %s, want %s", e->resolved, want);
}

static void test_kaggle_train_info(void) {
    sx_collection c;
    siamidx_error err;
    CHECK(load_fixture("train_info.csv", NULL, &c, &err) == SIAMIDX_OK);
    CHECK(c.n_entries == 4 && c.n_issues == 0 && c.n_artists == 3);
    if (c.n_entries == 4) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/csv", data_dir);
        CHECK(streq(c.entries[0].path, "102257.jpg"));
        expect_resolved(&c.entries[0], dir, "102257.jpg");
        CHECK(streq(c.entries[0].artist, "5b39c876740bfc1cfaf544721431afb1"));
        CHECK(streq(c.entries[0].title, "Uriel"));
        CHECK(streq(c.entries[0].style, "Color Field Painting"));
        CHECK(streq(c.entries[0].genre, "abstract"));
        CHECK(streq(c.entries[0].date, "1955.0"));
        CHECK(streq(c.entries[1].title, "Night Landscape, with Moon"));
        CHECK(streq(c.entries[2].title, "The \"Red\" Room\nsecond line"));
        CHECK(c.entries[2].date == NULL);
        CHECK(c.entries[3].title == NULL && c.entries[3].style == NULL);
        CHECK(c.entries[3].genre == NULL && c.entries[3].date == NULL);
        CHECK(c.entries[0].line == 2 && c.entries[2].line == 4 && c.entries[3].line == 6);
    }
    sx_collection_free(&c);
    CHECK(c.entries == NULL && c.n_entries == 0);

    /* A root moves where relative paths start, absolute or relative to the cwd. */
    CHECK(load_fixture("train_info.csv", "/data/pbn/train", &c, &err) == SIAMIDX_OK);
    CHECK(c.n_entries == 4 && streq(c.entries[1].resolved, "/data/pbn/train/75232.jpg"));
    sx_collection_free(&c);
    CHECK(load_fixture("train_info.csv", "some/../train/", &c, &err) == SIAMIDX_OK);
    if (c.n_entries) expect_resolved(&c.entries[0], "train", "102257.jpg");
    sx_collection_free(&c);
}

static void test_kaggle_all_data_info(void) {
    sx_collection c;
    siamidx_error err;
    CHECK(load_fixture("all_data_info.csv", NULL, &c, &err) == SIAMIDX_OK);
    CHECK(c.n_entries == 3 && c.n_issues == 0 && c.n_artists == 3);
    if (c.n_entries == 3) {
        CHECK(streq(c.entries[0].path, "102257.jpg"));
        CHECK(streq(c.entries[0].artist, "Barnett Newman"));
        CHECK(streq(c.entries[1].title, "Portrait of Countess Ekaterina Tyshkevich"));
        CHECK(c.entries[1].date == NULL);
        CHECK(streq(c.entries[2].path, "32145.jpg"));
        CHECK(streq(c.entries[2].style, "Na\xC3\xAFve Art (Primitivism)"));
        CHECK(streq(c.entries[2].title, "Saint Nicholas, the Wonderworker"));
        CHECK(streq(c.entries[2].genre, "religious painting"));
        CHECK(streq(c.entries[2].date, "c.1940"));
    }
    sx_collection_free(&c);
}

static void test_bom_crlf_order(void) {
    sx_collection c;
    siamidx_error err;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/csv", data_dir);
    CHECK(load_fixture("bom_crlf.csv", NULL, &c, &err) == SIAMIDX_OK);
    CHECK(c.n_entries == 3 && c.n_issues == 0 && c.n_artists == 2);
    if (c.n_entries == 3) {
        CHECK(streq(c.entries[0].artist, "Claude Monet"));
        CHECK(streq(c.entries[0].path, "monet/impression.jpg"));
        CHECK(streq(c.entries[0].title, "Impression"));
        CHECK(c.entries[0].style == NULL);
        CHECK(streq(c.entries[1].title, "Water Lilies\r\n(1906)"));
        CHECK(streq(c.entries[1].path, "./monet/../monet/lilies.jpg"));
        expect_resolved(&c.entries[1], dir, "monet/lilies.jpg");
        CHECK(streq(c.entries[2].artist, "Paul C\xC3\xA9zanne"));
        CHECK(streq(c.entries[2].resolved, "/abs/cezanne/card players.jpg"));
        CHECK(c.entries[2].line == 5);
    }
    sx_collection_free(&c);
}

static void test_row_issues(void) {
    sx_collection c;
    siamidx_error err;
    CHECK(load_fixture("issues.csv", NULL, &c, &err) == SIAMIDX_OK);
    CHECK(c.n_entries == 3 && c.n_artists == 2);
    if (c.n_entries == 3) {
        CHECK(streq(c.entries[0].path, "a/ok1.jpg") && streq(c.entries[0].artist, "Artist A"));
        CHECK(streq(c.entries[1].path, "a/badtitle.jpg") && c.entries[1].title == NULL);
        CHECK(streq(c.entries[2].path, "a/ok2.jpg") && streq(c.entries[2].title, "Fine, really"));
    }
    static const struct {
        long line;
        const char *text;
    } want[] = {
        {3, "line 3: empty 'artist'; skipped"},
        {4, "line 4: empty 'filename'; skipped"},
        {5, "line 5: 'a/ok1.jpg' is listed again (first on line 2); skipped"},
        {6, "line 6: 'a/./ok1.jpg' is listed again (first on line 2); skipped"},
        {7, "line 7: 2 fields where the header has 3; skipped"},
        {8, "line 8: 4 fields where the header has 3; skipped"},
        {9, "line 9: 'artist' is not valid UTF-8 (byte 4); skipped"},
        {10, "line 10: 'filename' is not valid UTF-8 (byte 5); skipped"},
        {11, "line 11: 'title' is not valid UTF-8 (byte 4); field dropped"},
        {12, "line 12: quote inside an unquoted field; skipped"},
        {15, "line 15: unterminated quoted field (opened on line 15); skipped"},
    };
    size_t n_want = sizeof want / sizeof want[0];
    CHECK_MSG(c.n_issues == n_want, "%zu issues", c.n_issues);
    for (size_t i = 0; i < n_want && i < c.n_issues; i++) {
        CHECK_MSG(c.issues[i].line == want[i].line && strstr(c.issues[i].message, want[i].text) &&
                      strstr(c.issues[i].message, "issues.csv"),
                  "issue %zu: '%s', want '%s'", i, c.issues[i].message, want[i].text);
        CHECK(c.issues[i].status == SIAMIDX_ERR_CSV);
    }
    if (check_failures) dump_issues(&c);
    sx_collection_free(&c);
}

static void expect_fatal(const char *fixture, siamidx_status status, const char *text) {
    sx_collection c;
    siamidx_error err;
    siamidx_status st = load_fixture(fixture, NULL, &c, &err);
    CHECK_MSG(st == status, "%s: status %d", fixture, (int)st);
    CHECK_MSG(st && strstr(err.message, text) && strstr(err.message, fixture),
              "%s: '%s', want '%s'", fixture, st ? err.message : "ok", text);
    CHECK(c.entries == NULL && c.n_entries == 0 && c.issues == NULL);
}

static void test_fatal(void) {
    expect_fatal("no_artist.csv", SIAMIDX_ERR_CSV, "line 1: the header has no 'artist' column");
    expect_fatal("no_filename.csv", SIAMIDX_ERR_CSV,
                 "line 1: the header has no 'filename' (or 'new_filename') column");
    expect_fatal("empty.csv", SIAMIDX_ERR_CSV, "empty file: no header row");
    expect_fatal("bad_header.csv", SIAMIDX_ERR_CSV, "no usable header row");
    expect_fatal("missing.csv", SIAMIDX_ERR_NOT_FOUND, "No such file");
    sx_collection c;
    siamidx_error err;
    CHECK(sx_collection_load("", NULL, &c, &err) == SIAMIDX_ERR_INVALID_ARGUMENT);
}

/* ---- a directory tree made for the test ------------------------------------------- */

static void touch(const char *root, const char *rel) {
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    FILE *f = fopen(path, "wb");
    CHECK_MSG(f != NULL, "cannot create %s", path);
    if (f) fclose(f);
}

static void make_dir(const char *root, const char *rel) {
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    CHECK_MSG(mkdir(path, 0777) == 0, "cannot create %s", path);
}

static void make_link(const char *root, const char *target, const char *rel) {
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    CHECK_MSG(symlink(target, path) == 0, "cannot link %s", path);
}

static void remove_tree(const char *root) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
}

static void test_directory(const char *tmpdir) {
    char root[1024];
    snprintf(root, sizeof root, "%s/collection_XXXXXX", tmpdir);
    if (!mkdtemp(root)) {
        CHECK_MSG(0, "mkdtemp %s failed", root);
        return;
    }
    const char *dirs[] = {"Monet", "Monet/sub", "Monet/sub/deeper", ".git", "Zorn", "Bad", "Empty"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++)
        make_dir(root, dirs[i]);
    const char *files[] = {"Monet/a.jpg",       "Monet/sub/deeper/b.PNG",
                           "Monet/.hidden.jpg", "Monet/notes.txt",
                           ".git/x.jpg",        "Zorn/c.JpEg",
                           "Zorn/d.tga",        "Zorn/e.gif",
                           "Zorn/f.bmp",        "Zorn/g.webp",
                           "Zorn/jpg",          "top.jpg",
                           "Bad/caf\xE9.jpg"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        touch(root, files[i]);
    make_link(root, "..", "Zorn/loop");         /* back to the top: a loop */
    make_link(root, "a.jpg", "Monet/link.jpg"); /* a link to a file is an image */
    make_link(root, "nowhere.jpg", "Monet/broken.jpg");

    sx_collection c;
    siamidx_error err;
    CHECK(sx_collection_load(root, NULL, &c, &err) == SIAMIDX_OK);
    const char *want[] = {"Monet/a.jpg", "Monet/link.jpg", "Monet/sub/deeper/b.PNG",
                          "Zorn/c.JpEg", "Zorn/d.tga",     "Zorn/e.gif",
                          "Zorn/f.bmp"};
    size_t n_want = sizeof want / sizeof want[0];
    CHECK_MSG(c.n_entries == n_want, "%zu entries", c.n_entries);
    for (size_t i = 0; i < n_want && i < c.n_entries; i++) {
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", root, want[i]);
        CHECK_MSG(streq(c.entries[i].path, path), "entry %zu: %s", i, c.entries[i].path);
        expect_resolved(&c.entries[i], root, want[i]);
        CHECK(streq(c.entries[i].artist, i < 3 ? "Monet" : "Zorn"));
        CHECK(c.entries[i].line == 0 && c.entries[i].title == NULL);
    }
    CHECK(c.n_artists == 2);
    CHECK_MSG(c.n_issues == 4, "%zu issues", c.n_issues);
    const sx_collection_issue *is;
    CHECK((is = find_issue(&c, "top.jpg: image at the collection's top level has no artist")) &&
          streq(is->path, "top.jpg") && is->status == SIAMIDX_ERR_INVALID_ARGUMENT);
    CHECK((is = find_issue(&c, "Zorn/loop: symbolic link loop; not followed")) &&
          streq(is->path, "Zorn/loop"));
    CHECK((is = find_issue(&c, "Monet/broken.jpg: No such file")) && is->status == SIAMIDX_ERR_IO);
    CHECK((is = find_issue(&c, "Bad/caf\xE9.jpg: name is not valid UTF-8")) != NULL);
    if (check_failures) dump_issues(&c);
    sx_collection_free(&c);

    /* A trailing slash, and a relative spelling, change nothing but `path`. */
    char alt[1100];
    snprintf(alt, sizeof alt, "%s/Monet/../", root);
    CHECK(sx_collection_load(alt, NULL, &c, &err) == SIAMIDX_OK);
    CHECK(c.n_entries == n_want);
    if (c.n_entries) {
        CHECK(streq(c.entries[0].artist, "Monet"));
        expect_resolved(&c.entries[0], root, want[0]);
        char path[2048];
        snprintf(path, sizeof path, "%sMonet/a.jpg", alt);
        CHECK_MSG(streq(c.entries[0].path, path), "%s", c.entries[0].path);
    }
    sx_collection_free(&c);
    remove_tree(root);
}

/* ---- the real paintings ------------------------------------------------------------- */

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int compare_resolved(const void *a, const void *b) {
    return strcmp(((const sx_collection_entry *)a)->resolved,
                  ((const sx_collection_entry *)b)->resolved);
}

/* Returns 0 when the shared data is absent. */
static int test_paintings(void) {
    const char *shared = getenv("SIAMIDX_SHARED");
    char dir[1024], csv[1100];
    snprintf(dir, sizeof dir, "%s/data/paintings", shared ? shared : "");
    snprintf(csv, sizeof csv, "%s/index.csv", dir);
    struct stat sb;
    if (!shared || stat(csv, &sb)) return 0;

    sx_collection from_dir, from_csv;
    siamidx_error err;
    double t0 = now_ms();
    CHECK(sx_collection_load(dir, NULL, &from_dir, &err) == SIAMIDX_OK);
    double t1 = now_ms();
    CHECK(sx_collection_load(csv, NULL, &from_csv, &err) == SIAMIDX_OK);
    double t2 = now_ms();
    fprintf(stderr,
            "paintings: directory %zu images, %zu artists in %.1f ms; "
            "index.csv %zu rows, %zu artists in %.1f ms\n",
            from_dir.n_entries, from_dir.n_artists, t1 - t0, from_csv.n_entries, from_csv.n_artists,
            t2 - t1);
    CHECK(from_dir.n_entries == 8862 && from_dir.n_artists == 89 && from_dir.n_issues == 0);
    CHECK(from_csv.n_entries == 8862 && from_csv.n_artists == 89 && from_csv.n_issues == 0);
    CHECK_MSG(t1 - t0 < 1000, "directory walk took %.0f ms", t1 - t0);

    /* Both name the same files under the same artists. */
    if (from_dir.n_entries == from_csv.n_entries) {
        qsort(from_csv.entries, from_csv.n_entries, sizeof *from_csv.entries, compare_resolved);
        size_t same = 0;
        for (size_t i = 0; i < from_dir.n_entries; i++)
            same += streq(from_dir.entries[i].resolved, from_csv.entries[i].resolved) &&
                    streq(from_dir.entries[i].artist, from_csv.entries[i].artist);
        CHECK_MSG(same == from_dir.n_entries, "%zu of %zu agree", same, from_dir.n_entries);
        size_t exist = 0;
        for (size_t i = 0; i < from_csv.n_entries; i++)
            exist += stat(from_csv.entries[i].resolved, &sb) == 0 && S_ISREG(sb.st_mode);
        CHECK(exist == from_csv.n_entries);
    }
    for (size_t i = 1; i < from_dir.n_entries; i++)
        if (strcmp(from_dir.entries[i - 1].path, from_dir.entries[i].path) >= 0) {
            CHECK_MSG(0, "directory entries not sorted at %zu", i);
            break;
        }
    sx_collection_free(&from_dir);
    sx_collection_free(&from_csv);
    return 1;
}

/* An empty folder is an empty collection (its NULL list was handed to
   qsort, UB that UBSan reports: found beside fuzz/fuzz_model.c's finding). */
static void test_empty_directory(const char *tmpdir) {
    char root[1024];
    snprintf(root, sizeof root, "%s/empty_XXXXXX", tmpdir);
    if (!mkdtemp(root)) {
        CHECK_MSG(0, "mkdtemp %s failed", root);
        return;
    }
    sx_collection c;
    siamidx_error err;
    siamidx_status s = sx_collection_load(root, NULL, &c, &err);
    CHECK_MSG(s == SIAMIDX_OK, "%s", s ? err.message : "");
    if (s == SIAMIDX_OK) {
        CHECK(c.n_entries == 0 && c.n_artists == 0);
        sx_collection_free(&c);
    }
    rmdir(root);
}

int main(void) {
    data_dir = check_env_dir("SIAMIDX_TEST_DATA");
    const char *tmpdir = getenv("SIAMIDX_TMP");
    if (!tmpdir || !*tmpdir) tmpdir = "/tmp";
    mkdir(tmpdir, 0777);
    if (!getcwd(cwd, sizeof cwd)) return 1;

    test_kaggle_train_info();
    test_kaggle_all_data_info();
    test_bom_crlf_order();
    test_row_issues();
    test_fatal();
    test_directory(tmpdir);
    test_empty_directory(tmpdir);
    int ran = test_paintings();
    if (!ran && !check_failures) {
        fprintf(stderr, "skipped: the shared paintings are absent (SIAMIDX_SHARED)\n");
        return 77;
    }
    CHECK_DONE();
}

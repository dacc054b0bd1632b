/* test_csv.c - the RFC 4180 reader, UTF-8 validation and pairs CSVs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "data/collection.h"
#include "data/csv.h"

/* Reads all of `text` and renders it as "line:f1|f2;line:f1;..." with errors as "!line". */
static void render(const char *text, size_t len, char *out, size_t cap) {
    sx_csv *csv;
    siamidx_error err;
    out[0] = 0;
    if (sx_csv_open_memory(text, len, "mem.csv", &csv, &err)) {
        snprintf(out, cap, "open failed: %s", err.message);
        return;
    }
    size_t used = 0;
    for (int guard = 0; guard < 100; guard++) {
        char **f;
        size_t n;
        siamidx_status st = sx_csv_next(csv, &f, &n, &err);
        if (st) {
            used += snprintf(out + used, cap - used, "!%ld;", sx_csv_line(csv));
            continue;
        }
        if (!n) break;
        used += snprintf(out + used, cap - used, "%ld:", sx_csv_line(csv));
        for (size_t i = 0; i < n; i++)
            used += snprintf(out + used, cap - used, "%s%s", i ? "|" : "", f[i]);
        used += snprintf(out + used, cap - used, ";");
    }
    sx_csv_close(csv);
}

#define EXPECT_CSV(text, want)                                                                     \
    do {                                                                                           \
        char got[4096];                                                                            \
        render(text, sizeof(text) - 1, got, sizeof got);                                           \
        CHECK_MSG(!strcmp(got, want), "csv %s\n  got  %s\n  want %s", #text, got, want);           \
    } while (0)

/* The first error message `text` produces. */
static void first_error(const char *text, char *msg, size_t cap) {
    sx_csv *csv;
    siamidx_error err;
    msg[0] = 0;
    if (sx_csv_open_memory(text, strlen(text), "mem.csv", &csv, &err)) return;
    for (;;) {
        char **f;
        size_t n;
        if (sx_csv_next(csv, &f, &n, &err)) {
            snprintf(msg, cap, "%s", err.message);
            break;
        }
        if (!n) break;
    }
    sx_csv_close(csv);
}

static void test_grammar(void) {
    EXPECT_CSV("a,b,c\n1,2,3\n", "1:a|b|c;2:1|2|3;");
    EXPECT_CSV("a,b\r\n1,2", "1:a|b;2:1|2;"); /* CRLF, no final line end */
    EXPECT_CSV("a\rb\r", "1:a;2:b;");         /* old Mac line ends */
    EXPECT_CSV("\xEF\xBB\xBF"
               "filename,artist\n",
               "1:filename|artist;");                  /* BOM dropped */
    EXPECT_CSV("x\xEF\xBB\xBF\n", "1:x\xEF\xBB\xBF;"); /* ...only at the start */
    EXPECT_CSV("a\n\n\r\n\nb\n", "1:a;5:b;");          /* blank lines skipped */
    EXPECT_CSV(",,\n\"\"\n", "1:||;2:;");              /* empty fields are kept */
    EXPECT_CSV("\"a,b\",\"say \"\"hi\"\"\"\n", "1:a,b|say \"hi\";");
    EXPECT_CSV("\"two\nlines\",x\nnext\n", "1:two\nlines|x;3:next;");
    EXPECT_CSV("\"crlf\r\ninside\"\r\nz\r\n", "1:crlf\r\ninside;3:z;");
    EXPECT_CSV("caf\xC3\xA9,\"\"\"\"\n", "1:caf\xC3\xA9|\";");
    EXPECT_CSV("", "");
    EXPECT_CSV("\xEF\xBB\xBF", "");
    /* Errors name the line; reading resumes on the next line. */
    EXPECT_CSV("a,b\"c\nx,y\n", "!1;2:x|y;");
    EXPECT_CSV("\"ab\"c,d\ne,f\n", "!1;2:e|f;");
    EXPECT_CSV("a\nb,\"open\nc,d\n", "1:a;!2;");
    EXPECT_CSV("a,b\0c\nd\n", "!1;2:d;");

    char msg[SIAMIDX_ERROR_MESSAGE_MAX];
    first_error("h\nok\n\"x\",\"never\nclosed\n", msg, sizeof msg);
    CHECK_MSG(strstr(msg, "mem.csv: line 3: unterminated quoted field (opened on line 3)"), "%s",
              msg);
    first_error("h\n1,2\n3,x\"y\n", msg, sizeof msg);
    CHECK_MSG(strstr(msg, "mem.csv: line 3: quote inside an unquoted field"), "%s", msg);
    first_error("\"a\" ,b\n", msg, sizeof msg);
    CHECK_MSG(strstr(msg, "line 1: unexpected character after a closing quote"), "%s", msg);
}

/* Records over 1 MiB are refused, not grown without bound, from memory and
 * from a file (where the record spans many reads). */
static void check_long_record(sx_csv *csv, const char *name) {
    siamidx_error err;
    char **f;
    size_t nf;
    char want[128];
    snprintf(want, sizeof want, "%s: line 1: record longer than 1 MiB", name);
    CHECK(sx_csv_next(csv, &f, &nf, &err) == SIAMIDX_ERR_CSV);
    CHECK_MSG(strstr(err.message, want), "%s", err.message);
    CHECK(sx_csv_next(csv, &f, &nf, &err) == SIAMIDX_OK && nf == 1 && !strcmp(f[0], "short"));
    CHECK(sx_csv_line(csv) == 2);
    CHECK(sx_csv_next(csv, &f, &nf, &err) == SIAMIDX_OK && nf == 0);
    sx_csv_close(csv);
}

static void test_long_record(const char *tmpdir) {
    size_t n = (1u << 20) + 100;
    char *text = malloc(n + 16);
    memset(text, 'x', n);
    memcpy(text + n, "\nshort\n", 8);
    sx_csv *csv;
    siamidx_error err;
    CHECK(sx_csv_open_memory(text, n + 7, "big.csv", &csv, &err) == SIAMIDX_OK);
    check_long_record(csv, "big.csv");

    char path[1024];
    snprintf(path, sizeof path, "%s/test_csv_long.csv", tmpdir);
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(text, 1, n + 7, f) == n + 7);
    if (f) fclose(f);
    CHECK(sx_csv_open(path, &csv, &err) == SIAMIDX_OK);
    if (csv) check_long_record(csv, path);
    remove(path);
    free(text);
}

/* A file far larger than the reader's buffer: quoted fields straddle refills. */
static void test_file_streaming(const char *tmpdir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/test_csv_stream.csv", tmpdir);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    enum { ROWS = 30000 };
    fputs("\xEF\xBB\xBFid,name,note\r\n", f);
    for (int i = 0; i < ROWS; i++)
        fprintf(f, "%d,\"name, %d\",\"two\nlines \"\"%d\"\"\"\r\n", i, i, i);
    fclose(f);

    sx_csv *csv;
    siamidx_error err;
    CHECK(sx_csv_open(path, &csv, &err) == SIAMIDX_OK);
    char **fields;
    size_t n;
    int rows = 0, good = 0;
    CHECK(sx_csv_next(csv, &fields, &n, &err) == SIAMIDX_OK && n == 3 && !strcmp(fields[0], "id"));
    while (sx_csv_next(csv, &fields, &n, &err) == SIAMIDX_OK && n) {
        char want1[64], want2[64];
        snprintf(want1, sizeof want1, "name, %d", rows);
        snprintf(want2, sizeof want2, "two\nlines \"%d\"", rows);
        good += n == 3 && atoi(fields[0]) == rows && !strcmp(fields[1], want1) &&
                !strcmp(fields[2], want2) && sx_csv_line(csv) == 2 + 2L * rows;
        rows++;
    }
    CHECK_MSG(rows == ROWS && good == ROWS, "rows %d good %d", rows, good);
    sx_csv_close(csv);
    remove(path);

    CHECK(sx_csv_open("/nonexistent/x.csv", &csv, &err) == SIAMIDX_ERR_IO);
    CHECK(strstr(err.message, "/nonexistent/x.csv") != NULL);
    CHECK(csv == NULL);
}

static void test_utf8(void) {
#define U8(s, want) CHECK_MSG(sx_utf8_check(s, sizeof(s) - 1) == (want), "utf8 %s", #s)
    U8("plain ascii", 11);
    U8("", 0);
    U8("caf\xC3\xA9", 5);
    U8("\xE2\x82\xAC", 3);      /* U+20AC */
    U8("\xF0\x9F\x8E\xA8!", 5); /* U+1F3A8 */
    U8("\xF4\x8F\xBF\xBF", 4);  /* U+10FFFF, the last one */
    U8("\xED\x9F\xBF", 3);      /* U+D7FF, just below the surrogates */
    U8("caf\xE9", 3);           /* Latin-1 */
    U8("ab\x80", 2);            /* lone continuation byte */
    U8("\xC0\xAF", 0);          /* overlong '/' */
    U8("\xC1\xBF", 0);          /* overlong */
    U8("\xE0\x80\xAF", 0);      /* overlong 3-byte */
    U8("\xF0\x80\x80\xAF", 0);  /* overlong 4-byte */
    U8("\xED\xA0\x80", 0);      /* surrogate U+D800 */
    U8("\xF4\x90\x80\x80", 0);  /* above U+10FFFF */
    U8("\xF5\x80\x80\x80", 0);
    U8("x\xC3", 1); /* truncated */
    U8("x\xE2\x82", 1);
    U8("x\xE2\x28\xA1", 1); /* bad continuation */
    U8("\xFF", 0);
#undef U8
}

static void test_pairs(const char *data) {
    char path[1024];
    sx_pairs_csv *p;
    siamidx_error err;
    sx_pair_row row;
    int done;

    snprintf(path, sizeof path, "%s/csv/pairs.csv", data);
    CHECK(sx_pairs_csv_open(path, &p, &err) == SIAMIDX_OK);
    if (p) {
        const char *want[3][3] = {{"0", "49823.jpg", "99442.jpg"},
                                  {"1", "with, comma.jpg", "2.jpg"},
                                  {"2", "7.jpg", "8.jpg"}};
        for (int i = 0; i < 3; i++) {
            CHECK(sx_pairs_csv_next(p, &row, &done, &err) == SIAMIDX_OK && !done);
            CHECK(row.line == i + 2);
            CHECK(row.index && !strcmp(row.index, want[i][0]));
            CHECK(row.image1 && !strcmp(row.image1, want[i][1]));
            CHECK(row.image2 && !strcmp(row.image2, want[i][2]));
        }
        CHECK(sx_pairs_csv_next(p, &row, &done, &err) == SIAMIDX_OK && done);
        sx_pairs_csv_close(p);
    }

    /* Each bad row is an error naming the line; the good rows still come. */
    snprintf(path, sizeof path, "%s/csv/pairs_bad.csv", data);
    CHECK(sx_pairs_csv_open(path, &p, &err) == SIAMIDX_OK);
    if (p) {
        const char *want[] = {NULL,
                              "line 3: 2 fields where the header has 3",
                              "line 4: empty 'image1'",
                              "line 5: 'image2' is not valid UTF-8 (byte 0)",
                              "line 6: unexpected character after a closing quote",
                              NULL};
        for (int i = 0; i < 6; i++) {
            siamidx_status st = sx_pairs_csv_next(p, &row, &done, &err);
            CHECK(!done);
            if (want[i]) {
                CHECK(st == SIAMIDX_ERR_CSV);
                CHECK_MSG(strstr(err.message, want[i]) && strstr(err.message, "pairs_bad.csv"),
                          "got '%s', want '%s'", err.message, want[i]);
            } else {
                CHECK(st == SIAMIDX_OK && row.line == (i ? 7 : 2));
            }
        }
        CHECK(sx_pairs_csv_next(p, &row, &done, &err) == SIAMIDX_OK && done);
        sx_pairs_csv_close(p);
    }

    snprintf(path, sizeof path, "%s/csv/pairs_no_image2.csv", data);
    CHECK(sx_pairs_csv_open(path, &p, &err) == SIAMIDX_ERR_CSV && p == NULL);
    CHECK_MSG(strstr(err.message, "line 1: the header has no 'image2' column"), "%s", err.message);
    snprintf(path, sizeof path, "%s/csv/empty.csv", data);
    CHECK(sx_pairs_csv_open(path, &p, &err) == SIAMIDX_ERR_CSV && p == NULL);
    CHECK(sx_pairs_csv_open("/nonexistent/pairs.csv", &p, &err) == SIAMIDX_ERR_IO);
}

int main(void) {
    const char *data = check_env_dir("SIAMIDX_TEST_DATA");
    const char *tmpdir = getenv("SIAMIDX_TMP");
    if (!tmpdir || !*tmpdir) tmpdir = "/tmp";
    mkdir(tmpdir, 0777);

    test_grammar();
    test_long_record(tmpdir);
    test_file_streaming(tmpdir);
    test_utf8();
    test_pairs(data);
    CHECK_DONE();
}

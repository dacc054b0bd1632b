/* test_json.c - the one JSON writer (base/json.c) and a document of the library
   (answer/report_json.c): separators and nesting, escapes, invalid UTF-8 replaced
   byte by byte, NaN and infinities as null, path_hex only beside a non-UTF-8 path,
   and a pair document exactly as docs/json.md shows it. */
#include <math.h>

#include "check.h"
#include "base/json.h"
#include "siamidx_ext.h"

static void expect(char *got, const char *want) {
    CHECK_MSG(got && !strcmp(got, want), "got %s, want %s", got ? got : "(null)", want);
    free(got);
}

int main(void) {
    sx_json j = {0};
    sx_json_object(&j);
    sx_json_key(&j, "a");
    sx_json_array(&j);
    sx_json_int(&j, -3);
    sx_json_uint(&j, 18446744073709551615ull);
    sx_json_bool(&j, 1);
    sx_json_null(&j);
    sx_json_number(&j, NAN, "%.6f");
    sx_json_number(&j, INFINITY, "%.6f");
    sx_json_number(&j, 0.25, "%.6f");
    sx_json_string(&j, NULL);
    sx_json_end(&j);
    sx_json_key(&j, "s");
    sx_json_string(&j, "q\"b\\n\nt\tc\x01\x7f");
    sx_json_key(&j, "empty");
    sx_json_object(&j);
    sx_json_end(&j);
    sx_json_end(&j);
    expect(sx_json_take(&j), "{\"a\":[-3,18446744073709551615,true,null,null,null,0.250000,null],"
                             "\"s\":\"q\\\"b\\\\n\\nt\\tc\\u0001\\u007f\",\"empty\":{}}");

    /* invalid UTF-8: each bad byte one U+FFFD; valid multi-byte kept; overlong, surrogate refused */
    sx_json j2 = {0};
    sx_json_array(&j2);
    sx_json_string(&j2, "caf\xe9-\xff \xc3\xa9 \xe2\x82\xac \xf0\x9f\x8e\xa8");
    sx_json_string(&j2, "\xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80 \xe2\x82");
    sx_json_end(&j2);
    expect(sx_json_take(&j2), "[\"caf\\ufffd-\\ufffd \xc3\xa9 \xe2\x82\xac \xf0\x9f\x8e\xa8\","
                              "\"\\ufffd\\ufffd \\ufffd\\ufffd\\ufffd \\ufffd\\ufffd\\ufffd\\ufffd "
                              "\\ufffd\\ufffd\"]");
    CHECK(sx_utf8_valid_prefix("ab\xe9", 3) == 2);
    CHECK(sx_utf8_valid_prefix("\xe2\x82\xac", 3) == 3);

    /* path_hex: only when the path is not UTF-8 */
    sx_json j3 = {0};
    sx_json_array(&j3);
    sx_json_object(&j3);
    sx_json_path(&j3, "a/\xc3\xa9.jpg");
    sx_json_end(&j3);
    sx_json_object(&j3);
    sx_json_path(&j3, "a/\xe9.jpg");
    sx_json_end(&j3);
    sx_json_end(&j3);
    expect(sx_json_take(&j3), "[{\"path\":\"a/\xc3\xa9.jpg\"},"
                              "{\"path\":\"a/\\ufffd.jpg\",\"path_hex\":\"612fe92e6a7067\"}]");

    /* a library document: no model, no index */
    siamidx_pair_result r = {0.788089, 0.5, 1};
    char *doc = NULL;
    siamidx_error err;
    CHECK(siamidx_pair_json(NULL, NULL, "A.jpg", "caf\xe9.png", &r, SIAMIDX_HEAD_MODEL, &doc, &err) ==
          SIAMIDX_OK);
    expect(doc, "{\"schema_version\":1,\"kind\":\"pair\",\"images\":[{\"path\":\"A.jpg\"},"
                "{\"path\":\"caf\\ufffd.png\",\"path_hex\":\"636166e92e706e67\"}],\"index\":null,"
                "\"model\":null,\"head\":{\"source\":\"model\"},\"probability\":0.788089,"
                "\"threshold\":0.500000,\"same_artist\":true}");
    doc = (char *)1;
    CHECK(siamidx_pair_json(NULL, NULL, NULL, "b", &r, SIAMIDX_HEAD_MODEL, &doc, &err) ==
              SIAMIDX_ERR_INVALID_ARGUMENT &&
          doc == NULL);
    siamidx_json_free(NULL);
    CHECK_DONE();
}

/* test_jsonw.c — the JSON text writer (mcp/jsonw.h) writes what jansson's
 * json_dumps(JSON_COMPACT) writes, byte for byte: strings (every byte value,
 * control characters, quotes, backslashes, NULs, multi-byte UTF-8), reals
 * (jansson's %.17g with ".0" and exponent clean-up), integers and whole
 * values; its UTF-8 check agrees with providers/utf8.h; errors are sticky
 * and the cap holds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcp/jsonw.h"
#include "providers/utf8.h"

static uint32_t rng = 0x9E3779B9u;

static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

/* jsonw's text for v equals json_dumps's. */
static void same_as_jansson(json_t *v, const char *what)
{
    char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    assert_non_null(want);
    jsonw w;
    jsonw_init(&w, 0);
    jsonw_json(&w, v);
    assert_false(w.failed);
    if (w.len != strlen(want) || memcmp(w.buf, want, w.len) != 0)
        fail_msg("%s: jsonw wrote \"%.*s\", jansson \"%s\"", what, (int)w.len, w.buf, want);
    free(want);
    jsonw_free(&w);
}

static void check_string(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n);
    assert_non_null(j);
    same_as_jansson(j, "string");
    /* jsonw_str directly, and jsonw_str_body between quotes */
    char *want = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    jsonw w;
    jsonw_init(&w, 0);
    jsonw_str(&w, s, n);
    assert_int_equal(w.len, strlen(want));
    assert_memory_equal(w.buf, want, w.len);
    w.len = 0;
    jsonw_char(&w, '"');
    jsonw_str_body(&w, s, n);
    jsonw_char(&w, '"');
    assert_int_equal(w.len, strlen(want));
    assert_memory_equal(w.buf, want, w.len);
    jsonw_free(&w);
    free(want);
    json_decref(j);
}

static void test_strings(void **state)
{
    (void)state;
    check_string("", 0);
    check_string("plain ascii text", 16);
    check_string("\"quoted\" and \\back\\slashed\\", 28);
    check_string("/slash/ \x7f del", 13);
    check_string("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xe2\x80\xa8 \xef\xbf\xbf", 23);
    /* every byte below 0x20, alone and in runs at every alignment */
    for (int c = 0; c < 0x20; c++) {
        char s[24];
        for (size_t pos = 0; pos < 17; pos++) {
            memset(s, 'a', sizeof s);
            s[pos] = (char)c;
            check_string(s, sizeof s);
        }
    }
    const char nul[] = "a\0b\0\0c";
    check_string(nul, sizeof nul - 1);
    /* random valid UTF-8 made of pieces that matter */
    static const char *const pieces[] = {"a", "bcdefgh", "\"", "\\", "\n", "\t", "\x01",
                                         "\x1f", "\x7f", "\xc3\xa9", "\xe2\x82\xac",
                                         "\xf0\x9f\x98\x80", " ", "0123456789", "/"};
    for (int i = 0; i < 20000; i++) {
        char s[512];
        size_t n = 0, k = rnd() % 40;
        for (size_t j = 0; j < k; j++) {
            const char *p = pieces[rnd() % (sizeof pieces / sizeof pieces[0])];
            memcpy(s + n, p, strlen(p));
            n += strlen(p);
        }
        check_string(s, n);
    }
    /* long: more than one escaping block */
    size_t big = (200u << 10) + 7;
    char *s = malloc(big);
    assert_non_null(s);
    for (size_t i = 0; i < big; i++)
        s[i] = "ab\"\\\ncd\x01"[i % 8];
    check_string(s, big);
    free(s);
}

static void check_real(double v)
{
    json_t *j = json_real(v);
    assert_non_null(j);
    char what[64];
    snprintf(what, sizeof what, "real %.17g", v);
    same_as_jansson(j, what);
    json_decref(j);
}

static void test_numbers(void **state)
{
    (void)state;
    const double reals[] = {0, -0.0, 1, -1, 0.5, 2.25, 10, 100, 1e15, 1e16, 1e17, 1e21, 1e22,
                            1e300, 1.7976931348623157e308, 5e-324, 1e-5, 1e-7, 0.1, 0.2,
                            1.0 / 3, 123456789.123, 52, 100000, 99.99999999999999, -2.5e-10};
    for (size_t i = 0; i < sizeof reals / sizeof reals[0]; i++)
        check_real(reals[i]);
    for (int i = 0; i < 20000; i++) {
        uint64_t bits = (uint64_t)rnd() << 32 | rnd();
        double d;
        memcpy(&d, &bits, sizeof d);
        if (isfinite(d))
            check_real(d);
        check_real((double)(rnd() % 100000) / (1 + rnd() % 1000));
        check_real((double)(rnd() % 1000000));
    }
    jsonw w;
    jsonw_init(&w, 0);
    assert_false(jsonw_real(&w, NAN));
    assert_false(jsonw_real(&w, INFINITY));
    assert_false(jsonw_real(&w, -INFINITY));
    assert_int_equal(w.len, 0);
    jsonw_free(&w);

    const long long ints[] = {0, 1, -1, 42, 1000000, INT64_MAX, INT64_MIN};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        json_t *j = json_integer(ints[i]);
        same_as_jansson(j, "integer");
        json_decref(j);
    }
}

static void test_values(void **state)
{
    (void)state;
    json_t *v = json_pack("{s:s, s:i, s:f, s:[s, n, b, b], s:{s:o}, s:s#}", "a", "x\ny", "b", 7,
                          "c", 1.5, "d", "q\"", 1, 0, "e", "f", json_object(), "g", "n\0ul",
                          (int)4);
    assert_non_null(v);
    same_as_jansson(v, "object");
    json_decref(v);
    json_t *n = json_null();
    same_as_jansson(n, "null");
    jsonw w;
    jsonw_init(&w, 0);
    jsonw_json(&w, NULL);
    assert_true(w.failed);
    jsonw_free(&w);
}

static json_t *random_tree(int depth)
{
    static const char *const strs[] = {"", "a", "x\"y", "back\\slash", "nl\n", "\x01",
                                       "caf\xc3\xa9", "\xf0\x9f\x98\x80", "/", "\x7f"};
    size_t nstrs = sizeof strs / sizeof strs[0];
    switch (depth > 4 ? rnd() % 6 : rnd() % 8) {
    case 0: return json_string(strs[rnd() % nstrs]);
    case 1: return json_integer((json_int_t)((int64_t)((uint64_t)rnd() << 32 | rnd())));
    case 2: return json_real((double)(int32_t)rnd() / (1 + rnd() % 1000));
    case 3: return json_boolean(rnd() % 2);
    case 4: return json_null();
    case 5: return json_integer((json_int_t)(rnd() % 100));
    case 6: {
        json_t *a = json_array();
        for (size_t i = 0, n = rnd() % 5; i < n; i++)
            json_array_append_new(a, random_tree(depth + 1));
        return a;
    }
    default: {
        json_t *o = json_object();
        for (size_t i = 0, n = rnd() % 5; i < n; i++) {
            char key[32];
            snprintf(key, sizeof key, "%s%u", strs[rnd() % nstrs], (unsigned)(rnd() % 4));
            json_object_set_new(o, key, random_tree(depth + 1));
        }
        if (json_object_size(o) > 1 && rnd() % 3 == 0) {
            /* a deletion and a re-insertion: the order jansson dumps in */
            const char *k = json_object_iter_key(json_object_iter(o));
            char first[64];
            snprintf(first, sizeof first, "%s", k);
            json_object_del(o, first);
            json_object_set_new(o, first, json_true());
        }
        return o;
    }
    }
}

static void test_trees(void **state)
{
    (void)state;
    for (int i = 0; i < 5000; i++) {
        json_t *t = random_tree(0);
        same_as_jansson(t, "random tree");
        json_decref(t);
    }
    /* deeper than the walk goes: jansson's own dump takes over */
    json_t *root = json_array(), *cur = root;
    for (int i = 0; i < 300; i++) {
        json_t *next = i % 2 ? json_array() : json_object();
        if (json_is_array(cur))
            json_array_append_new(cur, next);
        else
            json_object_set_new(cur, "k\"", next);
        cur = next;
    }
    json_array_append_new(root, json_string("end"));
    same_as_jansson(root, "deep tree");
    json_decref(root);
    /* a string jansson cannot write (made without its UTF-8 check): both fail */
    json_t *bad = json_pack("{s:o}", "k", json_stringn_nocheck("a\xff", 2));
    assert_null(json_dumps(bad, JSON_COMPACT));
    jsonw w;
    jsonw_init(&w, 0);
    jsonw_json(&w, bad);
    assert_true(w.failed);
    jsonw_free(&w);
    json_decref(bad);
}

static void test_utf8_valid(void **state)
{
    (void)state;
    static const unsigned char bytes[] = {'a', 0x00, 0x7f, 0x80, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf,
                                          0xe0, 0xa0, 0xed, 0x9f, 0xee, 0xef, 0xf0, 0x90, 0xf4,
                                          0x8f, 0xf5, 0xff};
    for (int i = 0; i < 300000; i++) {
        unsigned char s[24];
        size_t n = rnd() % sizeof s;
        for (size_t k = 0; k < n; k++)
            s[k] = rnd() % 3 ? bytes[rnd() % sizeof bytes] : (unsigned char)('a' + k);
        /* utf8_valid (ASCII skipped 8 bytes at a time) against a walk by
         * utf8_seq_len, one code point at a time. */
        bool want = true;
        for (size_t k = 0; k < n;) {
            size_t q = utf8_seq_len((const char *)s + k, n - k);
            if (!q) {
                want = false;
                break;
            }
            k += q;
        }
        if (utf8_valid((const char *)s, n) != want)
            fail_msg("utf8 disagreement on %zu bytes (want %d)", n, want);
        /* and jansson agrees */
        json_t *j = json_stringn((const char *)s, n);
        assert_int_equal(j != NULL, want);
        json_decref(j);
    }
}

static void test_cap_and_reset(void **state)
{
    (void)state;
    jsonw w;
    jsonw_init(&w, 10);
    jsonw_lit(&w, "0123456789");
    assert_false(w.failed);
    jsonw_char(&w, 'x');
    assert_true(w.failed);
    jsonw_lit(&w, "more");           /* sticky */
    assert_int_equal(w.len, 10);
    jsonw_reset(&w, 1024);
    assert_false(w.failed);
    assert_int_equal(w.len, 0);
    jsonw_str(&w, "abcdefghijkl", 12);  /* 14 bytes > cap */
    assert_true(w.failed);
    jsonw_reset(&w, 0);                 /* releases the buffer */
    assert_null(w.buf);
    jsonw_free(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_trees),
        cmocka_unit_test(test_utf8_valid),
        cmocka_unit_test(test_cap_and_reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

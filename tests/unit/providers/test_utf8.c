/* test_utf8.c — UTF-8 validation, repair (maximal subparts -> U+FFFD) and
 * code-point-safe truncation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "providers/utf8.h"

#define FFFD "\xEF\xBF\xBD"
#define S(lit) (lit), (sizeof(lit) - 1)

typedef struct {
    const char *in;
    size_t in_len;
    const char *out;
    size_t out_len;
} repair_case;

#define RC(in, out) { (in), sizeof(in) - 1, (out), sizeof(out) - 1 }

/* Encodes cp without any validity checks (so it can also produce surrogates
 * and values above U+10FFFF). Returns the length. */
static size_t encode(unsigned long cp, unsigned char *b)
{
    if (cp < 0x80) {
        b[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        b[0] = (unsigned char)(0xC0 | (cp >> 6));
        b[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        b[0] = (unsigned char)(0xE0 | (cp >> 12));
        b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    b[0] = (unsigned char)(0xF0 | (cp >> 18));
    b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    b[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

static void expect_repair(const char *in, size_t in_len, const char *out, size_t out_len)
{
    size_t got_len = (size_t)-1;
    char *got = utf8_repair(in, in_len, &got_len);
    assert_non_null(got);
    assert_int_equal(got_len, out_len);
    assert_memory_equal(got, out, out_len);
    assert_int_equal(got[got_len], '\0');
    assert_true(utf8_valid(got, got_len));
    free(got);
}

static void test_valid_sequences(void **state)
{
    (void)state;
    static const repair_case ok[] = {
        RC("", ""),
        RC("plain ascii", "plain ascii"),
        RC("caf\xC3\xA9", "caf\xC3\xA9"),                  /* U+00E9 */
        RC("\xE2\x82\xAC", "\xE2\x82\xAC"),                /* U+20AC */
        RC("\xF0\x9F\x98\x80", "\xF0\x9F\x98\x80"),        /* U+1F600 */
        RC("\xC2\x80", "\xC2\x80"),                        /* U+0080, smallest 2-byte */
        RC("\xE0\xA0\x80", "\xE0\xA0\x80"),                /* U+0800, smallest 3-byte */
        RC("\xED\x9F\xBF", "\xED\x9F\xBF"),                /* U+D7FF, below surrogates */
        RC("\xEE\x80\x80", "\xEE\x80\x80"),                /* U+E000, above surrogates */
        RC("\xEF\xBF\xBF", "\xEF\xBF\xBF"),                /* U+FFFF */
        RC("\xF0\x90\x80\x80", "\xF0\x90\x80\x80"),        /* U+10000, smallest 4-byte */
        RC("\xF4\x8F\xBF\xBF", "\xF4\x8F\xBF\xBF"),        /* U+10FFFF, largest */
        RC("a\0b\0", "a\0b\0"),                            /* NUL is valid */
        RC("\xEF\xBB\xBF" "x", "\xEF\xBB\xBF" "x"),        /* BOM is just U+FEFF */
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        assert_true(utf8_valid(ok[i].in, ok[i].in_len));
        expect_repair(ok[i].in, ok[i].in_len, ok[i].out, ok[i].out_len);
    }
}

static void test_invalid_sequences(void **state)
{
    (void)state;
    static const repair_case bad[] = {
        /* overlongs: C0/C1 are never valid leads; E0 needs A0..BF next;
         * F0 needs 90..BF next */
        RC("\xC0\x80", FFFD FFFD),
        RC("\xC1\xBF", FFFD FFFD),
        RC("\xE0\x80\x80", FFFD FFFD FFFD),
        RC("\xE0\x9F\xBF", FFFD FFFD FFFD),
        RC("\xF0\x80\x80\x80", FFFD FFFD FFFD FFFD),
        RC("\xF0\x8F\xBF\xBF", FFFD FFFD FFFD FFFD),
        /* surrogates */
        RC("\xED\xA0\x80", FFFD FFFD FFFD),
        RC("\xED\xBF\xBF", FFFD FFFD FFFD),
        RC("\xED\xA0\x80\xED\xB0\x80", FFFD FFFD FFFD FFFD FFFD FFFD),
        /* above U+10FFFF */
        RC("\xF4\x90\x80\x80", FFFD FFFD FFFD FFFD),
        RC("\xF5\x80\x80\x80", FFFD FFFD FFFD FFFD),
        RC("\xF7\xBF\xBF\xBF", FFFD FFFD FFFD FFFD),
        RC("\xF8\x88\x80\x80\x80", FFFD FFFD FFFD FFFD FFFD),
        RC("\xFE\xFF", FFFD FFFD),
        /* stray continuation bytes, each its own subpart */
        RC("\x80", FFFD),
        RC("a\xBF" "b", "a" FFFD "b"),
        RC("\x80\x80\x80", FFFD FFFD FFFD),
        RC("\xE2\x82\xAC\x80", "\xE2\x82\xAC" FFFD),
        /* truncated sequences: the maximal subpart is one U+FFFD */
        RC("\xF0\x9F\x98" "a", FFFD "a"),
        RC("\xF0\x9F" "a", FFFD "a"),
        RC("\xE2\x82" "a", FFFD "a"),
        RC("\xC3" "a", FFFD "a"),
        RC("a\xC3(b", "a" FFFD "(b"),
        RC("\xE2\x82\xE2\x82\xAC", FFFD "\xE2\x82\xAC"),
        RC("\xF0\x9F\x98\xF0\x9F\x98\x80", FFFD "\xF0\x9F\x98\x80"),
        /* truncated at the very end of the input */
        RC("ok\xC3", "ok" FFFD),
        RC("ok\xE2\x82", "ok" FFFD),
        RC("ok\xF0\x9F\x98", "ok" FFFD),
        RC("ok\xF4\x8F\xBF", "ok" FFFD),
        /* Unicode 15 Table 3-8 example */
        RC("\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64",
           "a" FFFD FFFD FFFD "b" FFFD "c" FFFD FFFD "d"),
        /* NUL around an invalid byte is kept */
        RC("\0\xFF\0", "\0" FFFD "\0"),
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_false(utf8_valid(bad[i].in, bad[i].in_len));
        expect_repair(bad[i].in, bad[i].in_len, bad[i].out, bad[i].out_len);
    }
}

/* Every scalar value is valid in its shortest form; surrogates, values above
 * U+10FFFF and every overlong form are not. */
static void test_exhaustive_code_points(void **state)
{
    (void)state;
    unsigned char b[4];
    for (unsigned long cp = 0; cp <= 0x10FFFF; cp++) {
        size_t n = encode(cp, b);
        bool scalar = cp < 0xD800 || cp > 0xDFFF;
        if (utf8_valid((const char *)b, n) != scalar)
            fail_msg("U+%04lX: utf8_valid gave %d", cp, !scalar);
        if (!scalar) {
            expect_repair((const char *)b, n, S(FFFD FFFD FFFD));
            continue;
        }
        /* overlong: the same value forced into every longer form */
        for (size_t len = n + 1; len <= 4; len++) {
            unsigned char o[4];
            unsigned long marker = len == 2 ? 0xC0 : len == 3 ? 0xE0 : 0xF0;
            for (size_t k = len - 1; k > 0; k--)
                o[k] = (unsigned char)(0x80 | ((cp >> (6 * (len - 1 - k))) & 0x3F));
            o[0] = (unsigned char)(marker | (cp >> (6 * (len - 1))));
            if (utf8_valid((const char *)o, len))
                fail_msg("overlong U+%04lX in %zu bytes accepted", cp, len);
        }
    }
    for (unsigned long cp = 0x110000; cp <= 0x1FFFFF; cp += 0x1111) {
        size_t n = encode(cp, b);
        assert_int_equal(n, 4);
        assert_false(utf8_valid((const char *)b, n));
        expect_repair((const char *)b, n, S(FFFD FFFD FFFD FFFD));
    }
}

/* Repair always yields valid UTF-8 and leaves valid input untouched, for
 * every 1- and 2-byte input and a sample of 3-byte inputs. */
static void test_repair_properties(void **state)
{
    (void)state;
    char in[3];
    for (unsigned v = 0; v < 0x10000; v++) {
        in[0] = (char)(v >> 8);
        in[1] = (char)(v & 0xFF);
        for (size_t n = 1; n <= 2; n++) {
            size_t out_len;
            char *out = utf8_repair(in, n, &out_len);
            assert_non_null(out);
            assert_true(utf8_valid(out, out_len));
            if (utf8_valid(in, n)) {
                assert_int_equal(out_len, n);
                assert_memory_equal(out, in, n);
            } else {
                assert_true(out_len > n || memcmp(out, in, out_len) != 0);
            }
            free(out);
        }
    }
    for (unsigned v = 0; v < 0x1000000; v += 97) {
        in[0] = (char)(v >> 16);
        in[1] = (char)(v >> 8);
        in[2] = (char)v;
        size_t out_len;
        char *out = utf8_repair(in, 3, &out_len);
        assert_non_null(out);
        assert_true(utf8_valid(out, out_len));
        free(out);
    }
}

static void test_repair_out_len_optional(void **state)
{
    (void)state;
    char *out = utf8_repair(S("x\xFFy"), NULL);
    assert_non_null(out);
    assert_string_equal(out, "x" FFFD "y");
    free(out);
    out = utf8_repair(NULL, 0, NULL);
    assert_non_null(out);
    assert_string_equal(out, "");
    free(out);
}

static size_t seq_len(unsigned char b)
{
    return b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
}

static void test_truncate_never_splits(void **state)
{
    (void)state;
    static const char s[] = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80" "b\0c\xF4\x8F\xBF\xBF";
    const size_t len = sizeof s - 1;
    for (size_t max = 0; max <= len + 2; max++) {
        size_t n = utf8_truncate(s, len, max);
        assert_true(n <= max);
        assert_true(n <= len);
        assert_true(utf8_valid(s, n));
        /* as long as possible: the next code point would not have fitted */
        if (n < len)
            assert_true(n + seq_len((unsigned char)s[n]) > max);
    }
}

static void test_truncate_examples(void **state)
{
    (void)state;
    assert_int_equal(utf8_truncate(S("abc"), 5), 3);
    assert_int_equal(utf8_truncate(S("abc"), 3), 3);
    assert_int_equal(utf8_truncate(S("abc"), 0), 0);
    assert_int_equal(utf8_truncate(S("a\xE2\x82\xAC"), 1), 1);
    assert_int_equal(utf8_truncate(S("a\xE2\x82\xAC"), 2), 1);
    assert_int_equal(utf8_truncate(S("a\xE2\x82\xAC"), 3), 1);
    assert_int_equal(utf8_truncate(S("a\xE2\x82\xAC"), 4), 4);
    assert_int_equal(utf8_truncate(S("\xF0\x9F\x98\x80"), 3), 0);
    assert_int_equal(utf8_truncate(S("\xF0\x9F\x98\x80z"), 4), 4);
    assert_int_equal(utf8_truncate(S("\xC3\xA9\xC3\xA9"), 3), 2);
    /* NUL is an ordinary one-byte code point */
    assert_int_equal(utf8_truncate(S("\0\0\0"), 2), 2);
}

/* On invalid input it still returns a cut no further back than needed. */
static void test_truncate_invalid_input(void **state)
{
    (void)state;
    /* "€" then stray continuation bytes: cutting after the stray bytes does
     * not split a code point */
    assert_int_equal(utf8_truncate(S("\xE2\x82\xAC\x80\x80"), 4), 4);
    assert_int_equal(utf8_truncate(S("\x80\x80\x80\x80\x80"), 2), 2);
    assert_int_equal(utf8_truncate(S("\xE2\x82\xAC\x80"), 2), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_sequences),
        cmocka_unit_test(test_invalid_sequences),
        cmocka_unit_test(test_exhaustive_code_points),
        cmocka_unit_test(test_repair_properties),
        cmocka_unit_test(test_repair_out_len_optional),
        cmocka_unit_test(test_truncate_never_splits),
        cmocka_unit_test(test_truncate_examples),
        cmocka_unit_test(test_truncate_invalid_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

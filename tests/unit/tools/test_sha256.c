/* test_sha256.c — SHA-256 against the FIPS 180-4 example vectors, fed whole
 * and in every split, so buffering across update() calls is covered. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "tools/sha256.h"

static void hex(const unsigned char *d, char out[2 * TOOL_SHA256_LEN + 1])
{
    for (int i = 0; i < TOOL_SHA256_LEN; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void check(const char *msg, size_t len, const char *want)
{
    unsigned char d[TOOL_SHA256_LEN];
    char got[2 * TOOL_SHA256_LEN + 1];
    tool_sha256(msg, len, d);
    hex(d, got);
    assert_string_equal(got, want);
    /* Every two-part split. */
    for (size_t cut = 0; cut <= len; cut++) {
        tool_sha256_ctx c;
        tool_sha256_init(&c);
        tool_sha256_update(&c, msg, cut);
        tool_sha256_update(&c, msg + cut, len - cut);
        tool_sha256_final(&c, d);
        hex(d, got);
        assert_string_equal(got, want);
    }
    /* Byte by byte. */
    tool_sha256_ctx c;
    tool_sha256_init(&c);
    for (size_t i = 0; i < len; i++)
        tool_sha256_update(&c, msg + i, 1);
    tool_sha256_final(&c, d);
    hex(d, got);
    assert_string_equal(got, want);
}

static void test_empty(void **state)
{
    (void)state;
    check("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

static void test_abc(void **state)
{
    (void)state;
    check("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_448_bits(void **state)
{
    (void)state;
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    check(m, strlen(m), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void test_896_bits(void **state)
{
    (void)state;
    const char *m = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopq"
                    "klmnopqrlmnopqrsmnopqrstnopqrstu";
    check(m, strlen(m), "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

static void test_million_a(void **state)
{
    (void)state;
    static char block[1000];
    memset(block, 'a', sizeof block);
    tool_sha256_ctx c;
    tool_sha256_init(&c);
    for (int i = 0; i < 1000; i++)
        tool_sha256_update(&c, block, sizeof block);
    unsigned char d[TOOL_SHA256_LEN];
    char got[2 * TOOL_SHA256_LEN + 1];
    tool_sha256_final(&c, d);
    hex(d, got);
    assert_string_equal(got, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),     cmocka_unit_test(test_abc),
        cmocka_unit_test(test_448_bits),  cmocka_unit_test(test_896_bits),
        cmocka_unit_test(test_million_a),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

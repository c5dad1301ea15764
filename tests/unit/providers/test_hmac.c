/* test_hmac.c — HMAC-SHA256 against the RFC 4231 test vectors (cases 1-7),
 * including keys longer than the block (hashed first) and case 5's
 * truncated output, plus hmac_wipe. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "providers/hmac.h"

static void hex(const unsigned char *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* Checks HMAC(key, msg) against the hex digest `want` (which may be
 * truncated, as in RFC 4231 case 5). */
static void check(const unsigned char *key, size_t key_len, const char *msg, size_t msg_len,
                  const char *want)
{
    unsigned char mac[HMAC_SHA256_LEN];
    char got[2 * HMAC_SHA256_LEN + 1];
    hmac_sha256(key, key_len, msg, msg_len, mac);
    hex(mac, sizeof mac, got);
    assert_int_equal(strncmp(got, want, strlen(want)), 0);
}

static void fill(unsigned char *buf, size_t n, unsigned char v) { memset(buf, v, n); }

static void test_case1(void **state)
{
    (void)state;
    unsigned char key[20];
    fill(key, sizeof key, 0x0b);
    check(key, sizeof key, "Hi There", 8,
          "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
}

static void test_case2_short_key(void **state)
{
    (void)state;
    check((const unsigned char *)"Jefe", 4, "what do ya want for nothing?", 28,
          "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

static void test_case3(void **state)
{
    (void)state;
    unsigned char key[20], msg[50];
    fill(key, sizeof key, 0xaa);
    fill(msg, sizeof msg, 0xdd);
    check(key, sizeof key, (const char *)msg, sizeof msg,
          "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
}

static void test_case4(void **state)
{
    (void)state;
    unsigned char key[25], msg[50];
    for (size_t i = 0; i < sizeof key; i++)
        key[i] = (unsigned char)(i + 1);
    fill(msg, sizeof msg, 0xcd);
    check(key, sizeof key, (const char *)msg, sizeof msg,
          "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");
}

static void test_case5_truncated(void **state)
{
    (void)state;
    unsigned char key[20];
    fill(key, sizeof key, 0x0c);
    check(key, sizeof key, "Test With Truncation", 20, "a3b6167473100ee06e0c796c2955552b");
}

static void test_case6_long_key(void **state)
{
    (void)state;
    unsigned char key[131];
    fill(key, sizeof key, 0xaa);
    const char *msg = "Test Using Larger Than Block-Size Key - Hash Key First";
    check(key, sizeof key, msg, strlen(msg),
          "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

static void test_case7_long_key_long_data(void **state)
{
    (void)state;
    unsigned char key[131];
    fill(key, sizeof key, 0xaa);
    const char *msg = "This is a test using a larger than block-size key and a larger than "
                      "block-size data. The key needs to be hashed before being used by the "
                      "HMAC algorithm.";
    check(key, sizeof key, msg, strlen(msg),
          "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
}

static void test_empty_key_and_message(void **state)
{
    (void)state;
    /* python3: hmac.new(b"", b"", hashlib.sha256).hexdigest() */
    check(NULL, 0, NULL, 0, "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

static void test_key_exactly_one_block(void **state)
{
    (void)state;
    unsigned char key[64];
    fill(key, sizeof key, 0x41);
    /* python3: hmac.new(b"A" * 64, b"abc", hashlib.sha256).hexdigest() */
    check(key, sizeof key, "abc", 3,
          "b09843dd297745e7eca6cc60d99542a9cd9e6ecdc564f3850a034d99646fb4c7");
}

static void test_wipe(void **state)
{
    (void)state;
    char buf[16];
    memset(buf, 'x', sizeof buf);
    hmac_wipe(buf, sizeof buf);
    for (size_t i = 0; i < sizeof buf; i++)
        assert_int_equal(buf[i], 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_case1),
        cmocka_unit_test(test_case2_short_key),
        cmocka_unit_test(test_case3),
        cmocka_unit_test(test_case4),
        cmocka_unit_test(test_case5_truncated),
        cmocka_unit_test(test_case6_long_key),
        cmocka_unit_test(test_case7_long_key_long_data),
        cmocka_unit_test(test_empty_key_and_message),
        cmocka_unit_test(test_key_exactly_one_block),
        cmocka_unit_test(test_wipe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

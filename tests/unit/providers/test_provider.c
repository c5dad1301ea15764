/* test_provider.c — the shared adapter helpers (providers/provider.c,
 * providers/b64.c): normalized status words, errors, path escaping, upstream
 * JSON with broken UTF-8, UUIDs, base64url, Deployment objects, secrets and
 * the one-shot operation machinery (asynchronous completion, cancel). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "providers/b64.h"
#include "providers/provider.h"

/* ------------------------------------------------------------ status */

static void test_status_words(void **state)
{
    (void)state;
    static const char *const words[] = {"queued", "building", "ready", "failed", "canceled"};
    static const prov_status sts[] = {PROV_ST_QUEUED, PROV_ST_BUILDING, PROV_ST_READY,
                                      PROV_ST_FAILED, PROV_ST_CANCELED};
    static const bool terminal[] = {false, false, true, true, true};
    for (size_t i = 0; i < 5; i++) {
        assert_string_equal(prov_status_name(sts[i]), words[i]);
        assert_int_equal(prov_status_parse(words[i]), sts[i]);
        assert_int_equal(prov_status_terminal(sts[i]), terminal[i]);
    }
    assert_string_equal(prov_status_name(PROV_ST_UNKNOWN), "unknown");
    assert_string_equal(prov_status_name((prov_status)5), "unknown");
    assert_string_equal(prov_status_name((prov_status)-7), "unknown");
    assert_int_equal(prov_status_parse("unknown"), PROV_ST_UNKNOWN);
    assert_int_equal(prov_status_parse("Ready"), PROV_ST_UNKNOWN);   /* exact words only */
    assert_int_equal(prov_status_parse("ready "), PROV_ST_UNKNOWN);
    assert_int_equal(prov_status_parse("cancelled"), PROV_ST_UNKNOWN);
    assert_int_equal(prov_status_parse(""), PROV_ST_UNKNOWN);
    assert_int_equal(prov_status_parse(NULL), PROV_ST_UNKNOWN);
    assert_false(prov_status_terminal(PROV_ST_UNKNOWN));
}

/* ------------------------------------------------------------ errors */

static void test_error_set(void **state)
{
    (void)state;
    prov_error e;
    memset(&e, 0x5a, sizeof e);
    prov_error_set(&e, "build_quota_exceeded", 429, false, "quota %d of %s", 10, "site");
    assert_string_equal(e.code, "build_quota_exceeded");
    assert_string_equal(e.message, "quota 10 of site");
    assert_int_equal(e.http_status, 429);
    assert_false(e.retryable);

    prov_error_set(&e, NULL, 0, true, "%s", "x");
    assert_string_equal(e.code, "error");
    assert_int_equal(e.http_status, 0);
    assert_true(e.retryable);
    assert_string_equal(e.message, "x");

    /* Over-long code and message are cut, still NUL-terminated. */
    char code[200], msg[3000];
    memset(code, 'c', sizeof code - 1);
    code[sizeof code - 1] = '\0';
    memset(msg, 'm', sizeof msg - 1);
    msg[sizeof msg - 1] = '\0';
    prov_error_set(&e, code, 500, true, "%s", msg);
    assert_int_equal(strlen(e.code), PROV_ERR_CODE_MAX - 1);
    assert_int_equal(strlen(e.message), PROV_ERR_MSG_MAX - 1);
    assert_int_equal(e.message[0], 'm');
    assert_int_equal(e.code[0], 'c');
}

static void test_secret(void **state)
{
    (void)state;
    unsetenv("DMCP_TEST_SECRET_X");
    assert_null(prov_secret("DMCP_TEST_SECRET_X"));
    setenv("DMCP_TEST_SECRET_X", "", 1);
    assert_null(prov_secret("DMCP_TEST_SECRET_X"));   /* empty counts as unset */
    setenv("DMCP_TEST_SECRET_X", "sk_live_1", 1);
    assert_string_equal(prov_secret("DMCP_TEST_SECRET_X"), "sk_live_1");
    unsetenv("DMCP_TEST_SECRET_X");
    assert_null(prov_secret(NULL));
    assert_null(prov_secret(""));
}

/* ------------------------------------------------------------ escape */

static void test_escape(void **state)
{
    (void)state;
    char out[256];
    const char *plain = "ABCXYZabcxyz0189-_.~";
    assert_int_equal(prov_escape(out, sizeof out, plain), 0);
    assert_string_equal(out, plain);

    assert_int_equal(prov_escape(out, sizeof out, "a/b?c#d%e f"), 0);
    assert_string_equal(out, "a%2Fb%3Fc%23d%25e%20f");
    assert_int_equal(prov_escape(out, sizeof out, "../x"), 0);
    assert_string_equal(out, "..%2Fx");
    assert_int_equal(prov_escape(out, sizeof out, "\xc3\xa9\xe2\x82\xac"), 0);  /* é € */
    assert_string_equal(out, "%C3%A9%E2%82%AC");
    assert_int_equal(prov_escape(out, sizeof out, "+&=:@!*'()[]\"<>\\^`{|}"), 0);
    assert_string_equal(out, "%2B%26%3D%3A%40%21%2A%27%28%29%5B%5D%22%3C%3E%5C%5E%60%7B%7C%7D");
    assert_int_equal(prov_escape(out, sizeof out, "\x01\x7f\xff"), 0);
    assert_string_equal(out, "%01%7F%FF");
    assert_int_equal(prov_escape(out, sizeof out, ""), 0);
    assert_string_equal(out, "");

    /* Exact fits and one byte short (the NUL needs room too). */
    assert_int_equal(prov_escape(out, 5, "abcd"), 0);
    assert_string_equal(out, "abcd");
    assert_int_equal(prov_escape(out, 4, "abcd"), -1);
    assert_int_equal(prov_escape(out, 4, "/"), 0);
    assert_string_equal(out, "%2F");
    assert_int_equal(prov_escape(out, 3, "/"), -1);
    assert_int_equal(prov_escape(out, 5, "a/b"), -1);
    assert_int_equal(prov_escape(out, 6, "a/b"), 0);
    assert_string_equal(out, "a%2Fb");
    assert_int_equal(prov_escape(out, 1, ""), 0);
    assert_int_equal(prov_escape(out, 0, ""), -1);

    char big[600];
    memset(big, '/', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(prov_escape(out, sizeof out, big), -1);
}

/* -------------------------------------------------------- JSON repair */

static void test_json_parse(void **state)
{
    (void)state;
    const char ok[] = "{\"a\":\"h\xc3\xa9llo\",\"n\":[1,2]}";
    json_t *j = prov_json_parse(ok, strlen(ok));
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "a")), "h\xc3\xa9llo");
    json_decref(j);

    /* Invalid bytes inside strings become U+FFFD; nothing is dropped. */
    const char bad[] = "{\"a\":\"x\xffy\",\"b\":[\"\xc3\x28\",\"\xed\xa0\x80z\"],"
                       "\"c\":\"\xf0\x9f\x98\"}";
    j = prov_json_parse(bad, strlen(bad));
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "a")), "x\xef\xbf\xbdy");
    json_t *b = json_object_get(j, "b");
    assert_string_equal(json_string_value(json_array_get(b, 0)), "\xef\xbf\xbd(");
    /* A surrogate encoded in UTF-8: each byte of the maximal subpart is invalid. */
    assert_string_equal(json_string_value(json_array_get(b, 1)),
                        "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdz");
    /* A truncated 4-byte sequence is one maximal subpart: one U+FFFD. */
    assert_string_equal(json_string_value(json_object_get(j, "c")), "\xef\xbf\xbd");
    json_decref(j);

    /* Not NUL-terminated: only len bytes count. */
    const char part[] = "[1]garbage";
    j = prov_json_parse(part, 3);
    assert_true(json_is_array(j));
    json_decref(j);

    /* Embedded NUL (escaped) is allowed. */
    const char nul[] = "{\"a\":\"x\\u0000y\"}";
    j = prov_json_parse(nul, strlen(nul));
    assert_non_null(j);
    assert_int_equal(json_string_length(json_object_get(j, "a")), 3);
    json_decref(j);

    assert_null(prov_json_parse("{\"a\":", 5));
    assert_null(prov_json_parse("\xff{}", 3));
    assert_null(prov_json_parse("", 0));
    assert_null(prov_json_parse(NULL, 0));
}

/* A lone surrogate escape ("\ud83d" — what JavaScript's JSON.stringify
 * writes for a string cut in the middle of an emoji, e.g. a truncated build
 * log line from a Node.js platform) makes jansson reject the whole document,
 * so prov_json_parse returns NULL and the adapter drops the event with all
 * of its log lines. */
static void test_json_parse_lone_surrogate_escape(void **state)
{
    (void)state;
    const char body[] = "{\"stream\":\"build\",\"lines\":[\"ok\",\"cut \\ud83d\"]}";
    json_t *j = prov_json_parse(body, strlen(body));
    assert_non_null(j);
    json_t *lines = json_object_get(j, "lines");
    assert_int_equal(json_array_size(lines), 2);
    assert_string_equal(json_string_value(json_array_get(lines, 1)), "cut \xef\xbf\xbd");
    json_decref(j);
}

/* -------------------------------------------------------------- uuid */

static void assert_uuid4_shape(const char *u)
{
    assert_int_equal(strlen(u), PROV_UUID_LEN);
    for (size_t i = 0; i < PROV_UUID_LEN; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            assert_int_equal(u[i], '-');
        else
            assert_non_null(strchr("0123456789abcdef", u[i]));
    }
    assert_int_equal(u[14], '4');
    assert_non_null(strchr("89ab", u[19]));
}

static void test_uuid4(void **state)
{
    (void)state;
    enum { N = 64 };
    char ids[N][PROV_UUID_LEN + 1];
    bool variant_seen[4] = {false};
    for (size_t i = 0; i < N; i++) {
        memset(ids[i], 'X', sizeof ids[i]);
        prov_uuid4(ids[i]);
        assert_uuid4_shape(ids[i]);
        static const char variants[] = "89ab";
        variant_seen[strchr(variants, ids[i][19]) - variants] = true;
        for (size_t k = 0; k < i; k++)
            assert_string_not_equal(ids[i], ids[k]);
    }
    /* 64 draws cover all four variant nibbles with overwhelming probability
     * (a miss has probability below 4 * (3/4)^64 ~ 4e-8). */
    for (size_t v = 0; v < 4; v++)
        assert_true(variant_seen[v]);
}

/* ------------------------------------------------------------ base64 */

static void test_b64_vectors(void **state)
{
    (void)state;
    /* RFC 4648 §10, without padding. */
    static const char *const in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const out[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
    for (size_t i = 0; i < 7; i++) {
        char *enc = b64url_encode((const unsigned char *)in[i], strlen(in[i]));
        assert_non_null(enc);
        assert_string_equal(enc, out[i]);
        free(enc);
        size_t n = 99;
        unsigned char *dec = b64url_decode(out[i], &n);
        assert_non_null(dec);
        assert_int_equal(n, strlen(in[i]));
        assert_memory_equal(dec, in[i], n);
        assert_int_equal(dec[n], '\0');
        free(dec);
    }
    /* Padding tolerated. */
    size_t n = 0;
    unsigned char *dec = b64url_decode("Zg==", &n);
    assert_non_null(dec);
    assert_int_equal(n, 1);
    assert_int_equal(dec[0], 'f');
    free(dec);
    dec = b64url_decode("Zm8=", &n);
    assert_non_null(dec);
    assert_int_equal(n, 2);
    free(dec);

    /* The URL-safe alphabet: 0xfb 0xff -> "-_8" (standard base64: "+/8="). */
    const unsigned char hi[] = {0xfb, 0xff};
    char *enc = b64url_encode(hi, sizeof hi);
    assert_string_equal(enc, "-_8");
    free(enc);
    dec = b64url_decode("-_8", &n);
    assert_non_null(dec);
    assert_int_equal(n, 2);
    assert_memory_equal(dec, hi, 2);
    free(dec);
}

static void test_b64_roundtrip(void **state)
{
    (void)state;
    unsigned char buf[64];
    for (size_t len = 0; len <= 64; len++) {
        for (size_t pass = 0; pass < 3; pass++) {
            for (size_t i = 0; i < len; i++)
                buf[i] = pass == 0 ? (unsigned char)(i * 37 + len)
                       : pass == 1 ? 0xff : (unsigned char)(255 - i);
            char *enc = b64url_encode(buf, len);
            assert_non_null(enc);
            assert_int_equal(strlen(enc), (len * 4 + 2) / 3);   /* no padding */
            for (const char *p = enc; *p; p++)
                assert_true((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                            (*p >= '0' && *p <= '9') || *p == '-' || *p == '_');
            size_t n = 12345;
            unsigned char *dec = b64url_decode(enc, &n);
            assert_non_null(dec);
            assert_int_equal(n, len);
            if (len)
                assert_memory_equal(dec, buf, len);
            free(dec);
            free(enc);
        }
    }
}

static void test_b64_invalid(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "A",          /* a length that cannot come from whole bytes */
        "Zm9vY",
        "+/8",        /* standard alphabet, not base64url */
        "Zm 9v",
        "Zm9v!",
        "Zg=a",
        "Z=g",
        "Zm9v\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t n = 77;
        unsigned char *dec = b64url_decode(bad[i], &n);
        if (dec)
            fail_msg("b64url_decode accepted \"%s\"", bad[i]);
    }
}

/* -------------------------------------------------------- deployment */

static const struct provider fake_ops = {.name = "fakeprov", .display_name = "FakeProv"};

static void test_deployment_shape(void **state)
{
    (void)state;
    cfg_target ct = {.name = (char *)"web", .provider = (char *)"fakeprov"};
    prov_target t = {.cfg = &ct, .ops = &fake_ops};

    json_t *d = prov_deployment(&t, "dep_1", "production", PROV_ST_READY, "live",
                                "https://x.example", "2025-01-01T00:00:00Z");
    char *s = json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(s, "{\"createdAt\":\"2025-01-01T00:00:00Z\",\"environment\":"
                           "\"production\",\"id\":\"dep_1\",\"provider\":\"fakeprov\","
                           "\"providerStatus\":\"live\",\"status\":\"ready\",\"target\":\"web\","
                           "\"url\":\"https://x.example\"}");
    free(s);
    json_decref(d);

    /* Optional fields omitted when NULL or empty; defaults for the rest. */
    d = prov_deployment(&t, NULL, NULL, PROV_ST_UNKNOWN, NULL, NULL, NULL);
    s = json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(s, "{\"environment\":\"preview\",\"id\":\"\",\"provider\":\"fakeprov\","
                           "\"providerStatus\":\"unknown\",\"status\":\"queued\","
                           "\"target\":\"web\"}");
    free(s);
    json_decref(d);

    d = prov_deployment(&t, "d", "preview", PROV_ST_FAILED, "errored", "", "");
    assert_null(json_object_get(d, "url"));
    assert_null(json_object_get(d, "createdAt"));
    assert_string_equal(json_string_value(json_object_get(d, "status")), "failed");
    assert_string_equal(json_string_value(json_object_get(d, "providerStatus")), "errored");
    json_decref(d);

    for (int st = PROV_ST_QUEUED; st <= PROV_ST_CANCELED; st++) {
        d = prov_deployment(&t, "d", NULL, (prov_status)st, NULL, NULL, NULL);
        assert_string_equal(json_string_value(json_object_get(d, "status")),
                            prov_status_name((prov_status)st));
        json_decref(d);
    }
}

static void test_network_error(void **state)
{
    (void)state;
    cfg_target ct = {.name = (char *)"web", .provider = (char *)"fakeprov"};
    prov_target t = {.cfg = &ct, .ops = &fake_ops};
    http_response res = {.status = 0, .curl_code = 7, .error = "Couldn't connect to server"};
    prov_error e;
    prov_network_error(&e, &t, &res);
    assert_string_equal(e.code, "network_error");
    assert_true(e.retryable);
    assert_int_equal(e.http_status, 0);
    assert_non_null(strstr(e.message, "FakeProv"));
    assert_non_null(strstr(e.message, "Couldn't connect to server"));
    assert_non_null(strstr(e.message, "baseUrl"));
    res.error = NULL;
    prov_network_error(&e, &t, &res);
    assert_non_null(strstr(e.message, "could not reach FakeProv;"));
    /* libcurl missing: nothing reached the network, so no baseUrl hint and
     * not retryable as is. */
    http_response nolib = {.status = 0, .lib_missing = true,
                           .error = "libcurl could not be loaded: libcurl.so.4: cannot open"};
    prov_network_error(&e, &t, &nolib);
    assert_string_equal(e.code, "internal_error");
    assert_false(e.retryable);
    assert_non_null(strstr(e.message, "FakeProv"));
    assert_non_null(strstr(e.message, "libcurl could not be loaded"));
    assert_null(strstr(e.message, "baseUrl"));
}

/* ------------------------------------------------------ one-shot ops */

typedef struct op_seen {
    int calls;
    json_t *result;
    prov_error err;
    bool failed;
    bool in_start;     /* set while the starting call runs */
    bool called_inside;
    int freed;
} op_seen;

static void op_cb(void *ud, json_t *result, const prov_error *err)
{
    op_seen *s = ud;
    s->calls++;
    if (s->in_start)
        s->called_inside = true;
    if (err) {
        s->failed = true;
        s->err = *err;
    }
    json_decref(s->result);
    s->result = result;
}

static void free_state(void *p)
{
    op_seen *s = p;
    s->freed++;
}

static void test_op_later(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    cfg_target ct = {.name = (char *)"web", .provider = (char *)"fakeprov"};
    prov_target t = {.cfg = &ct, .ops = &fake_ops, .loop = &loop};

    /* succeed_later: never inside the starting call; state freed once. */
    op_seen a = {0};
    a.in_start = true;
    prov_op *op = prov_op_new(&t, op_cb, &a, &a, free_state);
    assert_non_null(op);
    assert_ptr_equal(prov_op_state(op), &a);
    assert_ptr_equal(prov_op_target(op), &t);
    prov_op_succeed_later(op, json_string("done"));
    a.in_start = false;
    assert_int_equal(a.calls, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(a.calls, 1);
    assert_false(a.called_inside);
    assert_false(a.failed);
    assert_string_equal(json_string_value(a.result), "done");
    assert_int_equal(a.freed, 1);
    json_decref(a.result);

    /* fail_later copies the error. */
    op_seen b = {0};
    op = prov_op_new(&t, op_cb, &b, NULL, NULL);
    prov_error e;
    prov_error_set(&e, "nope", 404, false, "missing %s", "x");
    prov_op_fail_later(op, &e);
    memset(&e, 0, sizeof e);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(b.calls, 1);
    assert_true(b.failed);
    assert_null(b.result);
    assert_string_equal(b.err.code, "nope");
    assert_string_equal(b.err.message, "missing x");
    assert_int_equal(b.err.http_status, 404);

    /* Cancel before the completion: no callback, result and state freed. */
    op_seen c = {0};
    op = prov_op_new(&t, op_cb, &c, &c, free_state);
    prov_op_succeed_later(op, json_pack("{s:[i,i]}", "big", 1, 2));
    prov_op_cancel(op);
    prov_op_cancel(NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(c.calls, 0);
    assert_int_equal(c.freed, 1);

    /* Synchronous succeed (from outside any starting call). */
    op_seen d = {0};
    op = prov_op_new(&t, op_cb, &d, &d, free_state);
    prov_op_succeed(op, json_true());
    assert_int_equal(d.calls, 1);
    assert_int_equal(d.freed, 1);
    json_decref(d.result);

    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_registry(void **state)
{
    (void)state;
    assert_non_null(prov_lookup("showly"));
    assert_string_equal(prov_lookup("showly")->name, "showly");
    assert_true(prov_known("showly"));
    assert_false(prov_known("shwoly"));
    assert_null(prov_lookup(NULL));
    assert_null(prov_lookup(""));
    size_t n = 0;
    for (const struct provider *const *p = prov_all; *p; p++, n++) {
        assert_ptr_equal(prov_lookup((*p)->name), *p);
        assert_non_null((*p)->display_name);
    }
    assert_true(n >= 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_words),
        cmocka_unit_test(test_error_set),
        cmocka_unit_test(test_secret),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_json_parse),
        cmocka_unit_test(test_json_parse_lone_surrogate_escape),
        cmocka_unit_test(test_uuid4),
        cmocka_unit_test(test_b64_vectors),
        cmocka_unit_test(test_b64_roundtrip),
        cmocka_unit_test(test_b64_invalid),
        cmocka_unit_test(test_deployment_shape),
        cmocka_unit_test(test_network_error),
        cmocka_unit_test(test_op_later),
        cmocka_unit_test(test_registry),
    };
    (void)test_json_parse_lone_surrogate_escape;
    return cmocka_run_group_tests(tests, NULL, NULL);
}

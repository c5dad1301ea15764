/* test_validate.c — tool_validate_args: every schema rule the tools use,
 * with the exact messages a model sees. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tools/tool.h"

/* Shaped like the tools' own schemas (stream_events, tail_logs, ...). */
static const char *const SCHEMA =
    "{\"type\":\"object\",\"properties\":{"
    "\"deploymentId\":{\"type\":\"string\",\"minLength\":1},"
    "\"cursor\":{\"type\":\"string\"},"
    "\"maxSeconds\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":3600,\"default\":300},"
    "\"includeLogs\":{\"type\":\"boolean\",\"default\":true},"
    "\"level\":{\"type\":\"string\",\"enum\":[\"debug\",\"info\",\"warn\",\"error\"]},"
    "\"key\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":5},"
    "\"ratio\":{\"type\":\"number\",\"minimum\":0,\"maximum\":1},"
    "\"count\":{\"type\":\"integer\",\"minimum\":0},"
    "\"nullable\":{\"type\":[\"string\",\"null\"]},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},"
    "\"opts\":{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}},"
    "\"required\":[\"a\"],\"additionalProperties\":false},"
    "\"target\":{\"type\":\"string\"}"
    "},\"required\":[\"deploymentId\"],\"additionalProperties\":false}";

static json_t *schema;

static int setup(void **state)
{
    (void)state;
    schema = json_loads(SCHEMA, 0, NULL);
    return schema ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    json_decref(schema);
    return 0;
}

/* Validates JSON text; returns the message ("" when valid). */
static const char *run(const char *args_json)
{
    static char err[512];
    json_error_t jerr;
    json_t *args = json_loads(args_json, JSON_DECODE_ANY, &jerr);
    assert_non_null(args);
    int rc = tool_validate_args(schema, args, err, sizeof err);
    json_decref(args);
    if (rc == 0) {
        assert_string_equal(err, "");
        return "";
    }
    assert_int_equal(rc, -1);
    assert_true(err[0] != '\0');
    return err;
}

static void test_valid(void **state)
{
    (void)state;
    assert_string_equal(run("{\"deploymentId\":\"d1\"}"), "");
    assert_string_equal(run("{\"deploymentId\":\"d1\",\"cursor\":\"\",\"maxSeconds\":1,"
                            "\"includeLogs\":false,\"level\":\"warn\",\"key\":\"abcde\","
                            "\"ratio\":0.5,\"count\":0,\"nullable\":null,\"tags\":[\"a\"],"
                            "\"opts\":{\"a\":1},\"target\":\"web\"}"),
                        "");
    assert_string_equal(run("{\"deploymentId\":\"d1\",\"maxSeconds\":3600}"), "");
    assert_string_equal(run("{\"deploymentId\":\"d1\",\"nullable\":\"x\"}"), "");
}

static void test_not_object(void **state)
{
    (void)state;
    assert_string_equal(run("[]"), "arguments must be a JSON object");
    assert_string_equal(run("\"x\""), "arguments must be a JSON object");
    assert_string_equal(run("null"), "arguments must be a JSON object");
    assert_string_equal(run("3"), "arguments must be a JSON object");
}

static void test_missing_required(void **state)
{
    (void)state;
    assert_string_equal(run("{}"), "missing required argument \"deploymentId\"");
    assert_string_equal(run("{\"maxSeconds\":5}"), "missing required argument \"deploymentId\"");
}

static void test_unknown(void **state)
{
    (void)state;
    assert_string_equal(run("{\"deploymentId\":\"d\",\"foo\":1}"),
                        "unknown argument \"foo\" (allowed: deploymentId, cursor, maxSeconds, "
                        "includeLogs, level, key, ratio, count, nullable, tags, opts, target)");
    /* Names are matched exactly: case matters. */
    assert_non_null(strstr(run("{\"deploymentid\":\"d\"}"), "unknown argument \"deploymentid\""));
}

static void test_no_arguments_tool(void **state)
{
    (void)state;
    json_t *s = json_loads("{\"type\":\"object\",\"properties\":{},"
                           "\"additionalProperties\":false}", 0, NULL);
    json_t *ok = json_object();
    json_t *bad = json_pack("{s:i}", "x", 1);
    char err[256];
    assert_int_equal(tool_validate_args(s, ok, err, sizeof err), 0);
    assert_int_equal(tool_validate_args(s, bad, err, sizeof err), -1);
    assert_string_equal(err, "unknown argument \"x\" (this tool takes no arguments)");
    json_decref(s);
    json_decref(ok);
    json_decref(bad);
}

static void test_integer_range(void **state)
{
    (void)state;
    const char *want = "argument \"maxSeconds\" must be an integer between 1 and 3600";
    assert_string_equal(run("{\"deploymentId\":\"d\",\"maxSeconds\":0}"), want);
    assert_string_equal(run("{\"deploymentId\":\"d\",\"maxSeconds\":3601}"), want);
    assert_string_equal(run("{\"deploymentId\":\"d\",\"maxSeconds\":-5}"), want);
    assert_string_equal(run("{\"deploymentId\":\"d\",\"maxSeconds\":1e9}"), want);
    assert_string_equal(run("{\"deploymentId\":\"d\",\"count\":-1}"),
                        "argument \"count\" must be an integer >= 0");
}

static void test_integer_types(void **state)
{
    (void)state;
    const char *want = "argument \"maxSeconds\" must be an integer between 1 and 3600";
    assert_string_equal(run("{\"deploymentId\":\"d\",\"maxSeconds\":\"30\"}"), want);
    assert_string_equal(run("{\"deploymentId\":\"d\",\"maxSeconds\":true}"), want);
    assert_string_equal(run("{\"deploymentId\":\"d\",\"maxSeconds\":false}"), want);
    assert_string_equal(run("{\"deploymentId\":\"d\",\"maxSeconds\":null}"), want);
    assert_string_equal(run("{\"deploymentId\":\"d\",\"maxSeconds\":1.5}"), want);
    assert_string_equal(run("{\"deploymentId\":\"d\",\"maxSeconds\":[1]}"), want);
    assert_string_equal(run("{\"deploymentId\":\"d\",\"maxSeconds\":{}}"), want);
    assert_string_equal(run("{\"deploymentId\":\"d\",\"count\":0.25}"),
                        "argument \"count\" must be an integer >= 0");
}

static void test_integral_reals(void **state)
{
    (void)state;
    assert_string_equal(run("{\"deploymentId\":\"d\",\"maxSeconds\":30.0}"), "");
    assert_string_equal(run("{\"deploymentId\":\"d\",\"maxSeconds\":1.0}"), "");
    assert_string_equal(run("{\"deploymentId\":\"d\",\"maxSeconds\":3600.0}"), "");
    assert_string_equal(run("{\"deploymentId\":\"d\",\"maxSeconds\":3.6e3}"), "");
    assert_string_equal(run("{\"deploymentId\":\"d\",\"maxSeconds\":0.0}"),
                        "argument \"maxSeconds\" must be an integer between 1 and 3600");
    assert_string_equal(run("{\"deploymentId\":\"d\",\"maxSeconds\":3600.5}"),
                        "argument \"maxSeconds\" must be an integer between 1 and 3600");
}

static void test_numbers(void **state)
{
    (void)state;
    assert_string_equal(run("{\"deploymentId\":\"d\",\"ratio\":1}"), "");
    assert_string_equal(run("{\"deploymentId\":\"d\",\"ratio\":0}"), "");
    assert_string_equal(run("{\"deploymentId\":\"d\",\"ratio\":1.5}"),
                        "argument \"ratio\" must be a number between 0 and 1");
    assert_string_equal(run("{\"deploymentId\":\"d\",\"ratio\":\"0.5\"}"),
                        "argument \"ratio\" must be a number between 0 and 1");
    assert_string_equal(run("{\"deploymentId\":\"d\",\"ratio\":true}"),
                        "argument \"ratio\" must be a number between 0 and 1");
}

static void test_booleans(void **state)
{
    (void)state;
    const char *want = "argument \"includeLogs\" must be true or false";
    assert_string_equal(run("{\"deploymentId\":\"d\",\"includeLogs\":\"true\"}"), want);
    assert_string_equal(run("{\"deploymentId\":\"d\",\"includeLogs\":1}"), want);
    assert_string_equal(run("{\"deploymentId\":\"d\",\"includeLogs\":0}"), want);
    assert_string_equal(run("{\"deploymentId\":\"d\",\"includeLogs\":null}"), want);
}

static void test_strings(void **state)
{
    (void)state;
    assert_string_equal(run("{\"deploymentId\":5}"), "argument \"deploymentId\" must be a string");
    assert_string_equal(run("{\"deploymentId\":null}"),
                        "argument \"deploymentId\" must be a string");
    assert_string_equal(run("{\"deploymentId\":[\"d\"]}"),
                        "argument \"deploymentId\" must be a string");
    assert_string_equal(run("{\"deploymentId\":\"\"}"), "argument \"deploymentId\" must not be empty");
    assert_string_equal(run("{\"deploymentId\":\"d\",\"key\":\"abcdef\"}"),
                        "argument \"key\" must be a string of 1 to 5 characters");
    assert_string_equal(run("{\"deploymentId\":\"d\",\"key\":\"\"}"),
                        "argument \"key\" must not be empty");
    /* Lengths count code points, not bytes: five two-byte characters fit. */
    assert_string_equal(run("{\"deploymentId\":\"d\",\"key\":\"\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\"}"),
                        "");
}

static void test_enum(void **state)
{
    (void)state;
    const char *want = "argument \"level\" must be one of: debug, info, warn, error";
    assert_string_equal(run("{\"deploymentId\":\"d\",\"level\":\"warning\"}"), want);
    assert_string_equal(run("{\"deploymentId\":\"d\",\"level\":\"INFO\"}"), want);
    assert_string_equal(run("{\"deploymentId\":\"d\",\"level\":\"\"}"), want);
    assert_string_equal(run("{\"deploymentId\":\"d\",\"level\":3}"),
                        "argument \"level\" must be a string");
}

static void test_type_lists(void **state)
{
    (void)state;
    assert_string_equal(run("{\"deploymentId\":\"d\",\"nullable\":3}"),
                        "argument \"nullable\" must be of type string, null");
}

static void test_nested(void **state)
{
    (void)state;
    assert_string_equal(run("{\"deploymentId\":\"d\",\"tags\":[\"a\",2]}"),
                        "argument \"tags[1]\" must be a string");
    assert_string_equal(run("{\"deploymentId\":\"d\",\"tags\":\"a\"}"),
                        "argument \"tags\" must be an array");
    assert_string_equal(run("{\"deploymentId\":\"d\",\"opts\":{}}"),
                        "missing required argument \"opts.a\"");
    assert_string_equal(run("{\"deploymentId\":\"d\",\"opts\":{\"a\":1,\"b\":2}}"),
                        "unknown argument \"opts.b\" (allowed: a)");
    assert_string_equal(run("{\"deploymentId\":\"d\",\"opts\":{\"a\":\"1\"}}"),
                        "argument \"opts.a\" must be an integer");
}

static void test_any_of(void **state)
{
    (void)state;
    json_t *s = json_loads("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\"},"
                           "\"error\":{\"type\":\"object\"}},\"anyOf\":[{\"required\":[\"a\"]},"
                           "{\"required\":[\"error\"]}]}", 0, NULL);
    assert_non_null(s);
    char err[256];
    json_t *v = json_pack("{s:s}", "a", "x");
    assert_int_equal(tool_validate_args(s, v, err, sizeof err), 0);
    json_decref(v);
    v = json_pack("{s:{}}", "error");
    assert_int_equal(tool_validate_args(s, v, err, sizeof err), 0);
    json_decref(v);
    v = json_object();
    assert_int_equal(tool_validate_args(s, v, err, sizeof err), -1);
    assert_string_equal(err, "missing required argument \"a\" (and no other allowed shape "
                             "matches)");
    json_decref(v);
    v = json_pack("{s:i}", "a", 1);   /* the properties still apply */
    assert_int_equal(tool_validate_args(s, v, err, sizeof err), -1);
    assert_string_equal(err, "argument \"a\" must be a string");
    json_decref(v);
    json_decref(s);
}

static void test_small_buffer(void **state)
{
    (void)state;
    json_t *args = json_pack("{s:s, s:i}", "deploymentId", "d", "maxSeconds", 0);
    char err[8];
    assert_int_equal(tool_validate_args(schema, args, err, sizeof err), -1);
    assert_int_equal(strlen(err), sizeof err - 1);
    assert_int_equal(tool_validate_args(schema, args, NULL, 0), -1);
    json_decref(args);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),          cmocka_unit_test(test_not_object),
        cmocka_unit_test(test_missing_required), cmocka_unit_test(test_unknown),
        cmocka_unit_test(test_no_arguments_tool), cmocka_unit_test(test_integer_range),
        cmocka_unit_test(test_integer_types),  cmocka_unit_test(test_integral_reals),
        cmocka_unit_test(test_numbers),        cmocka_unit_test(test_booleans),
        cmocka_unit_test(test_strings),        cmocka_unit_test(test_enum),
        cmocka_unit_test(test_type_lists),     cmocka_unit_test(test_nested),
        cmocka_unit_test(test_any_of),          cmocka_unit_test(test_small_buffer),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

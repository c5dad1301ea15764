/* test_result.c — tool_result's deferred text block (tools/result.h): the
 * session recognises exactly the shape tool_result made (optionally with
 * isError added) and anything else is materialized into an ordinary
 * CallToolResult whose text is structuredContent's compact JSON, as
 * tool_result wrote it before. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "tools/result.h"
#include "tools/tool.h"

static json_t *sample_sc(void)
{
    return json_pack("{s:s, s:i, s:[s, s], s:{s:b}}", "deploymentId", "d \"1\" \xc3\xa9",
                     "eventCount", 3, "lastLines", "a\nb", "c\\d", "x", "y", 1);
}

static void assert_text_is_sc(json_t *res, size_t block)
{
    json_t *sc = json_object_get(res, "structuredContent");
    char *want = json_dumps(sc, JSON_COMPACT | JSON_ENCODE_ANY);
    json_t *b = json_array_get(json_object_get(res, "content"), block);
    assert_string_equal(json_string_value(json_object_get(b, "type")), "text");
    assert_string_equal(json_string_value(json_object_get(b, "text")), want);
    free(want);
}

static void test_deferred_shape(void **state)
{
    (void)state;
    assert_null(tool_result(NULL));
    json_t *sc = sample_sc();
    json_t *res = tool_result(sc);
    assert_non_null(res);
    int is_error = 7;
    assert_ptr_equal(tool_result_deferred(res, &is_error), sc);
    assert_int_equal(is_error, -1);

    json_object_set_new(res, "isError", json_false());
    assert_ptr_equal(tool_result_deferred(res, &is_error), sc);
    assert_int_equal(is_error, 0);
    json_object_set_new(res, "isError", json_true());
    assert_ptr_equal(tool_result_deferred(res, &is_error), sc);
    assert_int_equal(is_error, 1);
    json_object_set_new(res, "isError", json_string("yes"));   /* not a boolean */
    assert_null(tool_result_deferred(res, &is_error));
    json_object_del(res, "isError");

    json_object_set_new(res, "_meta", json_object());          /* another member */
    assert_null(tool_result_deferred(res, &is_error));
    json_object_del(res, "_meta");
    assert_non_null(tool_result_deferred(res, &is_error));

    /* a second block (as list_targets adds) */
    json_array_append_new(json_object_get(res, "content"),
                          json_pack("{s:s, s:s}", "type", "text", "text", "prose"));
    assert_null(tool_result_deferred(res, &is_error));
    assert_int_equal(tool_result_materialize(res), 0);
    assert_text_is_sc(res, 0);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(res, "content"), 1),
                                          "text")),
        "prose");
    /* materialized: an ordinary result now */
    assert_null(tool_result_deferred(res, &is_error));
    assert_int_equal(tool_result_materialize(res), 0);
    assert_text_is_sc(res, 0);
    json_decref(res);
}

/* Results that are not tool_result's: untouched. */
static void test_other_results(void **state)
{
    (void)state;
    prov_error e = {.http_status = 409, .retryable = false};
    strcpy(e.code, "conflict");
    strcpy(e.message, "already running");
    json_t *err = tool_error_result("showly", &e);
    int is_error;
    assert_null(tool_result_deferred(err, &is_error));
    char *before = json_dumps(err, JSON_COMPACT);
    assert_int_equal(tool_result_materialize(err), 0);
    char *after = json_dumps(err, JSON_COMPACT);
    assert_string_equal(before, after);
    free(before);
    free(after);
    json_decref(err);

    json_t *plain = json_pack("{s:[{s:s, s:s}]}", "content", "type", "text", "text", "hi");
    assert_null(tool_result_deferred(plain, &is_error));
    assert_int_equal(tool_result_materialize(plain), 0);
    json_decref(plain);
    assert_null(tool_result_deferred(NULL, &is_error));
    assert_int_equal(tool_result_materialize(NULL), 0);
}

/* A structuredContent changed between tool_result and sending: the text
 * follows it (it is written when the result is sent). */
static void test_text_follows_sc(void **state)
{
    (void)state;
    json_t *sc = sample_sc();
    json_t *res = tool_result(sc);
    json_object_set_new(sc, "late", json_string("added"));
    assert_int_equal(tool_result_materialize(res), 0);
    assert_text_is_sc(res, 0);
    assert_non_null(strstr(json_string_value(json_object_get(
                               json_array_get(json_object_get(res, "content"), 0), "text")),
                           "\"late\":\"added\""));
    json_decref(res);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deferred_shape),
        cmocka_unit_test(test_other_results),
        cmocka_unit_test(test_text_follows_sc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_schemas.c — the tool table as tools/list shows it: documented order,
 * titles, descriptions, annotations, and inputSchema/outputSchema that parse
 * and say exactly what PRODUCT.md §3 says. Also checks that the output
 * schemas accept the shapes the tools produce (the TypeScript SDK validates
 * structuredContent against them). */
#include <setjmp.h>
#include <stdio.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tools/tool.h"

/* PRODUCT.md §3, in the order tools/list shows them. */
static const char *const order[] = {"list_targets",   "create_preview", "request_publish",
                                    "stream_events",  "tail_logs",      "get_deployment",
                                    "list_deployments", NULL};

static json_t *prop(const char *tool, const char *name)
{
    const tool_def *t = tool_find(tool);
    assert_non_null(t);
    json_t *p = json_object_get(json_object_get(tool_input_schema(t), "properties"), name);
    if (!p)
        fail_msg("%s has no argument %s", tool, name);
    return p;
}

static void assert_int_prop(const char *tool, const char *name, int min, int max, int dflt)
{
    json_t *p = prop(tool, name);
    assert_string_equal(json_string_value(json_object_get(p, "type")), "integer");
    assert_int_equal(json_integer_value(json_object_get(p, "minimum")), min);
    assert_int_equal(json_integer_value(json_object_get(p, "maximum")), max);
    if (dflt >= 0)
        assert_int_equal(json_integer_value(json_object_get(p, "default")), dflt);
}

static void assert_enum(const char *tool, const char *name, const char *const *words)
{
    json_t *e = json_object_get(prop(tool, name), "enum");
    size_t n = 0;
    while (words[n])
        n++;
    assert_int_equal(json_array_size(e), n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(json_string_value(json_array_get(e, i)), words[i]);
}

static bool is_required(const char *tool, const char *name)
{
    json_t *req = json_object_get(tool_input_schema(tool_find(tool)), "required");
    size_t i;
    json_t *r;
    json_array_foreach(req, i, r) if (strcmp(json_string_value(r), name) == 0) return true;
    return false;
}

static void test_order(void **state)
{
    (void)state;
    size_t i = 0;
    for (; order[i]; i++) {
        assert_non_null(tool_table[i]);
        assert_string_equal(tool_table[i]->name, order[i]);
        assert_ptr_equal(tool_find(order[i]), tool_table[i]);
    }
    assert_null(tool_table[i]);
    assert_null(tool_find("deploy_everything"));
    assert_null(tool_find(""));
    assert_null(tool_find(NULL));
}

static void test_every_tool_is_described(void **state)
{
    (void)state;
    for (size_t i = 0; tool_table[i]; i++) {
        const tool_def *t = tool_table[i];
        assert_non_null(t->title);
        assert_true(strlen(t->title) > 5);
        assert_non_null(t->description);
        assert_true(strlen(t->description) > 200);   /* written for a model */
        assert_non_null(t->call);

        json_t *in = tool_input_schema(t), *out = tool_output_schema(t);
        if (!in || !out)
            fail_msg("%s: schema does not parse", t->name);
        assert_ptr_equal(tool_input_schema(t), in);   /* parsed once, cached */
        assert_string_equal(json_string_value(json_object_get(in, "type")), "object");
        assert_true(json_is_false(json_object_get(in, "additionalProperties")));
        assert_true(json_is_object(json_object_get(in, "properties")));
        assert_string_equal(json_string_value(json_object_get(out, "type")), "object");
        assert_true(json_is_object(json_object_get(out, "properties")));
        /* Optional result fields must not be required; extra fields allowed. */
        assert_false(json_is_false(json_object_get(out, "additionalProperties")));

        json_t *target = json_object_get(json_object_get(in, "properties"), "target");
        if (t->cap == 0) {
            assert_null(target);
        } else {
            assert_non_null(target);
            assert_string_equal(json_string_value(json_object_get(target, "type")), "string");
            assert_false(is_required(t->name, "target"));
        }

        json_t *d = tool_describe(t);
        assert_string_equal(json_string_value(json_object_get(d, "name")), t->name);
        assert_string_equal(json_string_value(json_object_get(d, "title")), t->title);
        assert_string_equal(json_string_value(json_object_get(d, "description")),
                            t->description);
        assert_true(json_equal(json_object_get(d, "inputSchema"), in));
        assert_true(json_equal(json_object_get(d, "outputSchema"), out));
        json_t *a = json_object_get(d, "annotations");
        assert_string_equal(json_string_value(json_object_get(a, "title")), t->title);
        assert_true(json_is_boolean(json_object_get(a, "readOnlyHint")));
        assert_true(json_is_boolean(json_object_get(a, "destructiveHint")));
        assert_true(json_is_boolean(json_object_get(a, "idempotentHint")));
        assert_true(json_is_boolean(json_object_get(a, "openWorldHint")));
        assert_int_equal(json_is_true(json_object_get(a, "readOnlyHint")), t->read_only);
        json_decref(d);
    }
}

static void test_annotations(void **state)
{
    (void)state;
    static const char *const ro[] = {"list_targets", "stream_events", "tail_logs",
                                     "get_deployment", "list_deployments", NULL};
    for (size_t i = 0; ro[i]; i++) {
        assert_true(tool_find(ro[i])->read_only);
        assert_false(tool_find(ro[i])->destructive);
    }
    const tool_def *cp = tool_find("create_preview");
    assert_false(cp->read_only);
    assert_false(cp->destructive);
    assert_true(cp->idempotent);
    assert_true(cp->open_world);
    const tool_def *rp = tool_find("request_publish");
    assert_false(rp->read_only);
    assert_false(rp->destructive);
    assert_true(rp->open_world);
}

static void test_capabilities(void **state)
{
    (void)state;
    assert_int_equal(tool_find("list_targets")->cap, 0);
    assert_int_equal(tool_find("create_preview")->cap, PROV_CAP_CREATE_PREVIEW);
    assert_int_equal(tool_find("request_publish")->cap, PROV_CAP_REQUEST_PUBLISH);
    assert_int_equal(tool_find("stream_events")->cap, PROV_CAP_STREAM_EVENTS);
    assert_int_equal(tool_find("tail_logs")->cap, PROV_CAP_TAIL_LOGS);
    assert_int_equal(tool_find("get_deployment")->cap, PROV_CAP_GET);
    assert_int_equal(tool_find("list_deployments")->cap, PROV_CAP_LIST);
}

static void test_arguments_per_product(void **state)
{
    (void)state;
    static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
    static const char *const statuses[] = {"queued", "building", "ready", "failed", "canceled",
                                           NULL};
    static const char *const envs[] = {"preview", "production", NULL};

    assert_int_equal(json_object_size(json_object_get(
                         tool_input_schema(tool_find("list_targets")), "properties")),
                     0);

    assert_int_prop("stream_events", "maxSeconds", 1, 3600, 300);
    assert_true(json_is_true(json_object_get(prop("stream_events", "includeLogs"), "default")));
    assert_true(is_required("stream_events", "deploymentId"));
    prop("stream_events", "cursor");

    assert_int_prop("tail_logs", "seconds", 1, 3600, 30);
    assert_int_prop("tail_logs", "maxLines", 1, 5000, 200);
    assert_enum("tail_logs", "level", levels);
    assert_false(is_required("tail_logs", "deploymentId"));
    prop("tail_logs", "filter");
    prop("tail_logs", "cursor");

    assert_int_prop("list_deployments", "limit", 1, 100, 20);
    assert_enum("list_deployments", "status", statuses);
    assert_enum("list_deployments", "environment", envs);
    prop("list_deployments", "cursor");

    assert_int_prop("create_preview", "maxSeconds", 1, 3600, -1);
    assert_true(json_is_false(json_object_get(prop("create_preview", "wait"), "default")));
    static const char *const cp_args[] = {"branch", "commitSha", "artifact", "message",
                                          "idempotencyKey", NULL};
    for (size_t i = 0; cp_args[i]; i++) {
        assert_string_equal(json_string_value(json_object_get(prop("create_preview", cp_args[i]),
                                                              "type")),
                            "string");
        assert_false(is_required("create_preview", cp_args[i]));
    }
    assert_int_equal(json_integer_value(json_object_get(prop("create_preview",
                                                             "idempotencyKey"), "maxLength")),
                     255);

    assert_true(is_required("request_publish", "sourceDeploymentId"));
    prop("request_publish", "notes");
    assert_true(is_required("get_deployment", "deploymentId"));
}

static const char *check_args(const char *tool, const char *json)
{
    static char err[512];
    json_t *args = json_loads(json, 0, NULL);
    assert_non_null(args);
    int rc = tool_validate_args(tool_input_schema(tool_find(tool)), args, err, sizeof err);
    json_decref(args);
    return rc == 0 ? "" : err;
}

static void test_real_schemas_validate(void **state)
{
    (void)state;
    assert_string_equal(check_args("stream_events", "{\"deploymentId\":\"d\"}"), "");
    assert_string_equal(check_args("stream_events", "{\"deploymentId\":\"d\",\"maxSeconds\":0}"),
                        "argument \"maxSeconds\" must be an integer between 1 and 3600");
    assert_string_equal(check_args("stream_events", "{\"deploymentId\":\"d\",\"maxSeconds\":60.0,"
                                                    "\"includeLogs\":false,\"target\":\"web\"}"),
                        "");
    assert_string_equal(check_args("stream_events", "{}"),
                        "missing required argument \"deploymentId\"");
    assert_string_equal(check_args("tail_logs", "{\"seconds\":3601}"),
                        "argument \"seconds\" must be an integer between 1 and 3600");
    assert_string_equal(check_args("tail_logs", "{\"maxLines\":5001}"),
                        "argument \"maxLines\" must be an integer between 1 and 5000");
    assert_string_equal(check_args("tail_logs", "{\"level\":\"warning\"}"),
                        "argument \"level\" must be one of: debug, info, warn, error");
    assert_string_equal(check_args("list_deployments", "{\"limit\":101}"),
                        "argument \"limit\" must be an integer between 1 and 100");
    assert_string_equal(check_args("list_deployments", "{\"status\":\"done\"}"),
                        "argument \"status\" must be one of: queued, building, ready, failed, "
                        "canceled");
    assert_string_equal(check_args("create_preview", "{\"wait\":\"yes\"}"),
                        "argument \"wait\" must be true or false");
    assert_string_equal(check_args("list_targets", "{}"), "");
    assert_string_equal(check_args("list_targets", "{\"target\":\"web\"}"),
                        "unknown argument \"target\" (this tool takes no arguments)");
    assert_non_null(strstr(check_args("request_publish", "{\"sourceDeploymentId\":\"d\","
                                                         "\"approve\":true}"),
                           "unknown argument \"approve\" (allowed: sourceDeploymentId, notes, "
                           "target)"));
}

/* The output schemas must accept what the tools produce, including the
 * optional fields left out and nulls where the tools write null. */
static void assert_output_ok(const char *tool, const char *json)
{
    char err[512];
    json_t *sc = json_loads(json, 0, NULL);
    assert_non_null(sc);
    if (tool_validate_args(tool_output_schema(tool_find(tool)), sc, err, sizeof err) != 0)
        fail_msg("%s output rejected: %s", tool, err);
    json_decref(sc);
}

/* isError results carry {error:{...}} as structuredContent, and clients
 * validate it against the outputSchema too. */
static void test_error_results_accepted(void **state)
{
    (void)state;
    for (size_t i = 0; tool_table[i]; i++) {
        const char *name = tool_table[i]->name;
        assert_output_ok(name, "{\"error\":{\"code\":\"invalid_arguments\",\"message\":\"m\","
                               "\"provider\":null,\"retryable\":false}}");
        assert_output_ok(name, "{\"error\":{\"code\":\"build_quota_exceeded\",\"message\":"
                               "\"m\",\"httpStatus\":429,\"provider\":\"showly\","
                               "\"retryable\":false}}");
        /* ...but neither an empty object nor a malformed error. */
        char err[512];
        json_t *empty = json_object();
        json_t *bad = json_pack("{s:{s:i}}", "error", "code", 5);
        assert_int_equal(tool_validate_args(tool_output_schema(tool_table[i]), empty, err,
                                            sizeof err),
                         -1);
        assert_int_equal(tool_validate_args(tool_output_schema(tool_table[i]), bad, err,
                                            sizeof err),
                         -1);
        json_decref(empty);
        json_decref(bad);
    }
}

static void test_outputs_accepted(void **state)
{
    (void)state;
    assert_output_ok("list_targets", "{\"targets\":[],\"hint\":\"configure one\"}");
    assert_output_ok("list_targets",
                     "{\"targets\":[{\"name\":\"web\",\"provider\":\"showly\",\"capabilities\":"
                     "[\"create_preview\"],\"ready\":false,\"problem\":\"SHOWLY_TOKEN is not "
                     "set\"}],\"defaultTarget\":\"web\"}");
    const char *dep = "{\"id\":\"d1\",\"target\":\"web\",\"provider\":\"showly\","
                      "\"environment\":\"preview\",\"status\":\"queued\",\"providerStatus\":"
                      "null,\"url\":null,\"createdAt\":\"2025-01-01T00:00:00Z\"}";
    char buf[2048];
    snprintf(buf, sizeof buf, "{\"deployment\":%s}", dep);
    assert_output_ok("get_deployment", buf);
    snprintf(buf, sizeof buf, "{\"deployment\":%s,\"note\":\"local\"}", dep);
    assert_output_ok("get_deployment", buf);
    snprintf(buf, sizeof buf, "{\"deployments\":[%s,%s],\"nextCursor\":\"c2\"}", dep, dep);
    assert_output_ok("list_deployments", buf);
    assert_output_ok("list_deployments", "{\"deployments\":[]}");
    const char *stream = "{\"deploymentId\":\"d1\",\"status\":\"unknown\",\"terminal\":false,"
                         "\"eventCount\":0,\"logLineCount\":0,\"lastLines\":[],\"cursor\":\"\","
                         "\"durationMs\":5}";
    assert_output_ok("stream_events", stream);
    assert_output_ok("stream_events",
                     "{\"deploymentId\":\"d1\",\"status\":\"failed\",\"terminal\":true,"
                     "\"providerStatus\":\"failed\",\"url\":\"https://x\",\"eventCount\":3,"
                     "\"logLineCount\":2,\"lastLines\":[\"a\",\"b\"],\"failure\":{\"code\":"
                     "\"40\",\"message\":\"bad\"},\"cursor\":\"abc\",\"durationMs\":1200}");
    snprintf(buf, sizeof buf, "{\"deployment\":%s,\"idempotencyKey\":\"k\"}", dep);
    assert_output_ok("create_preview", buf);
    snprintf(buf, sizeof buf,
             "{\"deployment\":%s,\"idempotencyKey\":\"k\",\"reused\":true,\"stream\":%s,"
             "\"streamError\":{\"code\":\"network_error\",\"message\":\"m\",\"retryable\":true}}",
             dep, stream);
    assert_output_ok("create_preview", buf);
    assert_output_ok("request_publish",
                     "{\"request\":{\"id\":\"r1\",\"status\":\"pending\",\"webApprovalUrl\":"
                     "\"https://a\",\"sourceDeploymentId\":\"d1\",\"target\":\"web\","
                     "\"provider\":\"showly\"}}");
    assert_output_ok("tail_logs", "{\"lines\":[{\"level\":\"info\",\"text\":\"hi\"},{\"ts\":"
                                  "\"t\",\"level\":\"error\",\"text\":\"x\",\"source\":"
                                  "\"request\"}],\"count\":2,\"dropped\":0,\"cursor\":\"c\"}");
}

static int teardown(void **state)
{
    (void)state;
    tool_registry_cleanup();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order),
        cmocka_unit_test(test_every_tool_is_described),
        cmocka_unit_test(test_annotations),
        cmocka_unit_test(test_capabilities),
        cmocka_unit_test(test_arguments_per_product),
        cmocka_unit_test(test_real_schemas_validate),
        cmocka_unit_test(test_outputs_accepted),
        cmocka_unit_test(test_error_results_accepted),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}

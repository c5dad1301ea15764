/* test_session.c — JSON-RPC 2.0 / MCP handling of one session (mcp/session.c)
 * through mcp_session_handle with a capture transport, against a real
 * mcp_server whose one target uses a fake adapter defined here.
 *
 * The fake adapter's get_deployment answers "now" on the next loop turn and
 * leaves "hang" in flight until the test completes or cancels it, which gives
 * requests that stay in flight (duplicate ids, cancellation, batches, close)
 * without any network. Checks PRODUCT.md §4: framing errors, the lifecycle,
 * version negotiation, pagination, batches per protocol version, stray
 * responses, notifications, progress and log-level filtering, and requests
 * to the client (mcp_req_ask: routing of the client's responses, cancel, the
 * cap, requests that end or sessions that close with asks pending, and the
 * conformance fixtures that ask). Every test runs its own loop and ends with
 * uv_loop_close() == 0. */
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

#include <math.h>

#include "mcp/config.h"
#include "mcp/jsonw.h"
#include "mcp/server.h"
#include "mcp/session.h"
#include "providers/provider.h"
#include "tools/fixtures.h"
#include "tools/tool.h"

#define MAX_HANG 4200

/* ---------------------------------------------------------- fake adapter */

/* One get_deployment("hang") in flight. `ud` is what the tool layer passed
 * to the adapter. */
typedef struct hang_slot {
    prov_op *op;
    void *ud;
} hang_slot;

static hang_slot g_hang[MAX_HANG];
static size_t g_nhang;
static int g_ops_freed;

static void hang_freed(void *p)
{
    hang_slot *slot = p;
    slot->op = NULL;
    g_ops_freed++;
}

static json_t *deployment(const prov_target *t, const char *id)
{
    return prov_deployment(t, id, "preview", PROV_ST_READY, "ready", NULL, NULL);
}

static prov_op *fake_get(prov_target *t, const char *id, prov_result_cb cb, void *ud,
                         prov_error *err)
{
    if (strncmp(id, "now", 3) == 0) {
        prov_op *op = prov_op_new(t, cb, ud, NULL, NULL);
        prov_op_succeed_later(op, deployment(t, id));
        return op;
    }
    if (strcmp(id, "hang") == 0) {
        assert_true(g_nhang < MAX_HANG);
        hang_slot *slot = &g_hang[g_nhang++];
        slot->ud = ud;
        slot->op = prov_op_new(t, cb, ud, slot, hang_freed);
        return slot->op;
    }
    prov_error_set(err, "deployment_not_found", 404, false, "no deployment %s", id);
    return NULL;
}

static const struct provider fake_ops = {
    .name = "fakeprov", .display_name = "FakeProv", .caps = PROV_CAP_GET,
    .get_deployment = fake_get,
};

/* Completes the i-th hanging call with a Deployment. */
static void finish_hang(size_t i)
{
    assert_non_null(g_hang[i].op);
    prov_op *op = g_hang[i].op;
    prov_op_succeed(op, deployment(prov_op_target(op), "hang"));
}

/* The mcp_request of a hanging call, for the mcp_req_* functions. The tool
 * table is fixed, so the test reaches a live request through the adapter:
 * tools/common.c (tool_run_op) passes its op_call as `ud`, whose first member
 * is the mcp_request. If that layout changes, this is the line to adapt. */
static mcp_request *hang_request(size_t i)
{
    return *(mcp_request **)g_hang[i].ud;
}

/* ------------------------------------------------------------- harness */

typedef struct env {
    uv_loop_t loop;
    mcp_server srv;
    cfg *config;
    prov_target target;
    mcp_session *session;
    json_t *out;               /* every message the session sent, in order */
    json_t *raw;               /* the same, as the bytes sent (JSON strings) */
    size_t raw_sends;
} env;

static int capture(void *io, const char *msg, size_t len)
{
    env *e = io;
    e->raw_sends++;
    assert_true(len > 0 && msg[len - 1] != '\n');
    json_t *j = json_loadb(msg, len, JSON_ALLOW_NUL, NULL);
    assert_non_null(j);
    json_array_append_new(e->out, j);
    json_t *raw = json_stringn(msg, len);
    assert_non_null(raw);    /* valid UTF-8 */
    json_array_append_new(e->raw, raw);
    return 0;
}

static const mcp_transport capture_tp = {.name = "test", .send = capture};

static void send_raw(env *e, const char *msg, size_t len)
{
    mcp_session_handle(e->session, msg, len);
}

static void send_msg(env *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void send_msg(env *e, const char *fmt, ...)
{
    char buf[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    send_raw(e, buf, strlen(buf));
}

static void run_loop(env *e) { uv_run(&e->loop, UV_RUN_DEFAULT); }

static void new_session(env *e)
{
    e->session = mcp_session_new(&e->srv, &capture_tp, e);
    assert_non_null(e->session);
}

static int setup(void **state)
{
    env *e = calloc(1, sizeof *e);
    assert_non_null(e);
    assert_int_equal(uv_loop_init(&e->loop), 0);
    const char text[] = "{\"targets\":{\"fake\":{\"provider\":\"fakeprov\"}}}";
    char err[512];
    if (cfg_parse(text, strlen(text), "test.json", NULL, &e->config, err, sizeof err) != 0)
        fail_msg("config: %s", err);
    e->target.cfg = &e->config->targets[0];
    e->target.ops = &fake_ops;
    e->target.loop = &e->loop;
    e->srv.loop = &e->loop;
    e->srv.config = e->config;
    e->srv.targets = &e->target;
    e->srv.ntargets = 1;
    e->srv.tools_page_size = 100;
    e->out = json_array();
    e->raw = json_array();
    memset(g_hang, 0, sizeof g_hang);
    g_nhang = 0;
    g_ops_freed = 0;
    new_session(e);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    env *e = *state;
    if (e->session)
        mcp_session_close(e->session);
    run_loop(e);
    assert_int_equal(uv_loop_close(&e->loop), 0);
    /* Every operation the adapter started was finished or cancelled. */
    for (size_t i = 0; i < g_nhang; i++)
        assert_null(g_hang[i].op);
    cfg_free(e->config);
    json_decref(e->out);
    json_decref(e->raw);
    free(e);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    tool_registry_cleanup();
    return 0;
}

static void initialize(env *e, const char *version)
{
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":\"init\",\"method\":\"initialize\",\"params\":"
                "{\"protocolVersion\":\"%s\",\"capabilities\":{},\"clientInfo\":"
                "{\"name\":\"t\",\"version\":\"1\"}}}", version);
    assert_int_equal(json_array_size(e->out), 1);
    assert_non_null(json_object_get(json_array_get(e->out, 0), "result"));
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}");
    assert_int_equal(json_array_size(e->out), 1);
    json_array_clear(e->out);
}

static size_t nout(env *e) { return json_array_size(e->out); }

static json_t *out_at(env *e, size_t i) { return json_array_get(e->out, i); }

/* Asserts that m is a JSON-RPC error with `code` and the id given as JSON
 * text ("null", "1", "\"a\""). */
static void assert_error(json_t *m, int code, const char *id_json)
{
    char *dump = json_dumps(m, JSON_COMPACT | JSON_ENCODE_ANY);
    json_t *want_id = json_loads(id_json, JSON_DECODE_ANY, NULL);
    json_t *err = json_object_get(m, "error");
    bool ok = json_is_object(m) &&
              json_string_value(json_object_get(m, "jsonrpc")) &&
              strcmp(json_string_value(json_object_get(m, "jsonrpc")), "2.0") == 0 &&
              json_is_object(err) &&
              json_integer_value(json_object_get(err, "code")) == code &&
              json_is_string(json_object_get(err, "message")) &&
              json_string_length(json_object_get(err, "message")) > 0 &&
              json_equal(json_object_get(m, "id"), want_id) &&
              json_typeof(json_object_get(m, "id")) == json_typeof(want_id) &&
              !json_object_get(m, "result");
    json_decref(want_id);
    if (!ok)
        fail_msg("expected error %d with id %s, got %s", code, id_json, dump ? dump : "(null)");
    free(dump);
}

/* The only message sent since the last clear must be this error. */
static void expect_one_error(env *e, int code, const char *id_json)
{
    if (nout(e) != 1) {
        char *d = json_dumps(e->out, JSON_COMPACT);
        fail_msg("expected exactly one message, got %zu: %s", nout(e), d);
    }
    assert_error(out_at(e, 0), code, id_json);
    json_array_clear(e->out);
}

static json_t *expect_one_result(env *e, const char *id_json)
{
    if (nout(e) != 1) {
        char *d = json_dumps(e->out, JSON_COMPACT);
        fail_msg("expected exactly one message, got %zu: %s", nout(e), d);
    }
    json_t *m = out_at(e, 0);
    json_t *want_id = json_loads(id_json, JSON_DECODE_ANY, NULL);
    assert_true(json_equal(json_object_get(m, "id"), want_id));
    json_decref(want_id);
    assert_null(json_object_get(m, "error"));
    assert_string_equal(json_string_value(json_object_get(m, "jsonrpc")), "2.0");
    json_t *r = json_object_get(m, "result");
    assert_non_null(r);
    return r;   /* valid until the next clear */
}

static void call_tool(env *e, const char *id_json, const char *tool, const char *args,
                      const char *meta)
{
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":%s,\"method\":\"tools/call\",\"params\":"
                "{\"name\":\"%s\",\"arguments\":%s%s%s}}",
             id_json, tool, args, meta ? ",\"_meta\":" : "", meta ? meta : "");
}

/* ------------------------------------------------------------- framing */

static void test_parse_errors(void **state)
{
    env *e = *state;
    for (int phase = 0; phase < 2; phase++) {
        if (phase == 1)
            initialize(e, "2025-11-25");
        const char trunc[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"";
        send_raw(e, trunc, strlen(trunc));
        expect_one_error(e, RPC_PARSE_ERROR, "null");

        const char utf8[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"pi\xffng\"}";
        send_raw(e, utf8, strlen(utf8));
        expect_one_error(e, RPC_PARSE_ERROR, "null");
        const char overlong[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xc0\xafping\"}";
        send_raw(e, overlong, strlen(overlong));
        expect_one_error(e, RPC_PARSE_ERROR, "null");

        /* Not NUL-terminated: only len bytes are read. */
        const char ping[] = "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"ping\"}xyz";
        send_raw(e, ping, strlen(ping) - 3);
        expect_one_result(e, "9");
        json_array_clear(e->out);
        send_raw(e, ping, strlen(ping));   /* trailing garbage */
        expect_one_error(e, RPC_PARSE_ERROR, "null");

        send_raw(e, "", 0);
        expect_one_error(e, RPC_PARSE_ERROR, "null");
        send_raw(e, "   ", 3);
        expect_one_error(e, RPC_PARSE_ERROR, "null");
        send_raw(e, "{\"a\":1}\0{}", 10);
        expect_one_error(e, RPC_PARSE_ERROR, "null");

        /* 100 000 levels of nesting: refused, not a stack overflow. */
        enum { DEPTH = 100000 };
        char *deep = malloc(2 * DEPTH + 64);
        int off = sprintf(deep, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":");
        for (int i = 0; i < DEPTH; i++)
            deep[off++] = '[';
        for (int i = 0; i < DEPTH; i++)
            deep[off++] = ']';
        deep[off++] = '}';
        send_raw(e, deep, (size_t)off);
        expect_one_error(e, RPC_PARSE_ERROR, "null");
        for (int i = 0; i < DEPTH; i++)
            deep[i] = '[';
        send_raw(e, deep, DEPTH);   /* and unterminated */
        expect_one_error(e, RPC_PARSE_ERROR, "null");
        free(deep);

        /* The session still works. */
        send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}");
        json_t *r = expect_one_result(e, "2");
        assert_int_equal(json_object_size(r), 0);
        json_array_clear(e->out);
    }
}

/* session.h promises MCP_MAX_DEPTH (64) as the nesting depth accepted in a
 * message, but only jansson's own limit (2048) applies. */
static void test_depth_cap(void **state)
{
    env *e = *state;
    initialize(e, "2025-11-25");
    enum { DEPTH = MCP_MAX_DEPTH + 100 };
    char buf[2 * DEPTH + 128];
    int off = snprintf(buf, sizeof buf, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\","
                                        "\"params\":{\"x\":");
    for (int i = 0; i < DEPTH; i++)
        buf[off++] = '[';
    for (int i = 0; i < DEPTH; i++)
        buf[off++] = ']';
    buf[off++] = '}';
    buf[off++] = '}';
    send_raw(e, buf, (size_t)off);
    assert_int_equal(nout(e), 1);
    assert_non_null(json_object_get(out_at(e, 0), "error"));
}

/* Valid JSON that is not an object (or array) is an invalid Request
 * (-32600), not a parse error: JSON-RPC 2.0 §5.1 keeps -32700 for text that
 * is not JSON. Inside a batch this already holds (test_batch_served). */
static void test_non_object_messages(void **state)
{
    env *e = *state;
    initialize(e, "2025-11-25");
    static const char *const not_objects[] = {"5", "\"ping\"", "null", "true", "1.5"};
    for (size_t i = 0; i < sizeof not_objects / sizeof not_objects[0]; i++) {
        send_msg(e, "%s", not_objects[i]);
        expect_one_error(e, RPC_INVALID_REQUEST, "null");
    }
}

static void test_invalid_requests(void **state)
{
    env *e = *state;
    initialize(e, "2025-11-25");
    send_msg(e, "{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"ping\"}");
    expect_one_error(e, RPC_INVALID_REQUEST, "1");
    send_msg(e, "{\"jsonrpc\":2.0,\"id\":1,\"method\":\"ping\"}");
    expect_one_error(e, RPC_INVALID_REQUEST, "1");
    send_msg(e, "{\"id\":2,\"method\":\"ping\"}");
    expect_one_error(e, RPC_INVALID_REQUEST, "2");
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":3}");
    expect_one_error(e, RPC_INVALID_REQUEST, "3");
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":\"m\",\"method\":5}");
    expect_one_error(e, RPC_INVALID_REQUEST, "\"m\"");
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":null}");
    expect_one_error(e, RPC_INVALID_REQUEST, "4");
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"method\":[\"ping\"]}");
    expect_one_error(e, RPC_INVALID_REQUEST, "null");

    /* id: null, boolean, object, array, float — never echoed. */
    static const char *const bad_ids[] = {"null", "true", "false", "{}", "{\"a\":1}", "[1]",
                                          "1.5", "1.0", "-0.0", "1e3"};
    for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
        send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":%s,\"method\":\"ping\"}", bad_ids[i]);
        expect_one_error(e, RPC_INVALID_REQUEST, "null");
        send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":%s,\"method\":\"tools/call\",\"params\":"
                    "{\"name\":\"list_targets\"}}", bad_ids[i]);
        expect_one_error(e, RPC_INVALID_REQUEST, "null");
    }

    /* params that are neither object nor array. */
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"ping\",\"params\":5}");
    expect_one_error(e, RPC_INVALID_PARAMS, "5");
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/list\",\"params\":\"x\"}");
    expect_one_error(e, RPC_INVALID_PARAMS, "5");

    /* Valid ids are echoed with their type and value. */
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":\"abc\",\"method\":\"ping\"}");
    expect_one_result(e, "\"abc\"");
    json_array_clear(e->out);
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":\"\",\"method\":\"ping\"}");
    expect_one_result(e, "\"\"");
    json_array_clear(e->out);
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":-7,\"method\":\"ping\"}");
    expect_one_result(e, "-7");
    json_array_clear(e->out);
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":9007199254740993,\"method\":\"ping\"}");
    expect_one_result(e, "9007199254740993");
    json_array_clear(e->out);
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"ping\",\"params\":{}}");
    expect_one_result(e, "0");
    json_array_clear(e->out);
}

/* ----------------------------------------------------------- lifecycle */

static void test_before_initialize(void **state)
{
    env *e = *state;
    assert_string_equal(mcp_session_protocol(e->session), "");
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}");
    expect_one_result(e, "1");
    json_array_clear(e->out);
    static const char *const methods[] = {"tools/list", "tools/call", "logging/setLevel",
                                          "resources/list", "nope"};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":%zu,\"method\":\"%s\",\"params\":"
                    "{\"name\":\"list_targets\",\"level\":\"debug\"}}", i + 10, methods[i]);
        char id[16];
        snprintf(id, sizeof id, "%zu", i + 10);
        expect_one_error(e, RPC_INVALID_REQUEST, id);
    }
    /* Notifications need no answer, before initialize too. */
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}");
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":"
                "{\"requestId\":1}}");
    assert_int_equal(nout(e), 0);
    /* A batch before a version is negotiated. */
    send_msg(e, "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]");
    expect_one_error(e, RPC_INVALID_REQUEST, "null");
    assert_int_equal(g_nhang, 0);
}

static void test_versions(void **state)
{
    env *e = *state;
    static const char *const asked[] = {"2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05",
                                        "2099-01-01", "2024-10-07", "", "latest"};
    static const char *const want[] = {"2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05",
                                       "2025-11-25", "2025-11-25", "2025-11-25", "2025-11-25"};
    for (size_t i = 0; i < sizeof asked / sizeof asked[0]; i++) {
        if (i > 0) {
            mcp_session_close(e->session);
            new_session(e);
        }
        send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":"
                    "{\"protocolVersion\":\"%s\",\"capabilities\":{\"roots\":{}},"
                    "\"clientInfo\":{\"name\":\"t\",\"version\":\"1\"}}}", asked[i]);
        json_t *r = expect_one_result(e, "1");
        assert_string_equal(json_string_value(json_object_get(r, "protocolVersion")), want[i]);
        assert_string_equal(mcp_session_protocol(e->session), want[i]);
        json_t *caps = json_object_get(r, "capabilities");
        assert_true(json_is_object(json_object_get(caps, "tools")));
        assert_true(json_is_object(json_object_get(caps, "logging")));
        json_t *info = json_object_get(r, "serverInfo");
        assert_string_equal(json_string_value(json_object_get(info, "name")), "deploy-mcp");
        assert_true(json_is_string(json_object_get(info, "version")));
        json_array_clear(e->out);
    }
}

static void test_initialize_params(void **state)
{
    env *e = *state;
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":"
                "{\"capabilities\":{}}}");
    expect_one_error(e, RPC_INVALID_PARAMS, "1");
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"initialize\"}");
    expect_one_error(e, RPC_INVALID_PARAMS, "2");
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"initialize\",\"params\":"
                "{\"protocolVersion\":20250618}}");
    expect_one_error(e, RPC_INVALID_PARAMS, "3");
    /* Still not initialized. */
    assert_string_equal(mcp_session_protocol(e->session), "");
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"tools/list\"}");
    expect_one_error(e, RPC_INVALID_REQUEST, "4");

    /* Capabilities that are not an object are tolerated. */
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"initialize\",\"params\":"
                "{\"protocolVersion\":\"2025-06-18\",\"capabilities\":7}}");
    expect_one_result(e, "5");
    json_array_clear(e->out);

    /* A second initialize is refused and changes nothing. */
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"initialize\",\"params\":"
                "{\"protocolVersion\":\"2024-11-05\",\"capabilities\":{}}}");
    expect_one_error(e, RPC_INVALID_REQUEST, "6");
    assert_string_equal(mcp_session_protocol(e->session), "2025-06-18");
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/list\"}");
    expect_one_result(e, "7");
    json_array_clear(e->out);
}

static void test_unknown_method(void **state)
{
    env *e = *state;
    initialize(e, "2025-11-25");
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"resources/list\"}");
    assert_non_null(strstr(json_string_value(json_object_get(
                               json_object_get(out_at(e, 0), "error"), "message")),
                           "resources/list"));
    expect_one_error(e, RPC_METHOD_NOT_FOUND, "1");
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"notifications/initialized\"}");
    expect_one_error(e, RPC_METHOD_NOT_FOUND, "2");
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"\"}");
    expect_one_error(e, RPC_METHOD_NOT_FOUND, "3");
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"Ping\"}");
    expect_one_error(e, RPC_METHOD_NOT_FOUND, "4");
}

/* ----------------------------------------------------------- tools/list */

static json_t *tool_names(json_t *tools)
{
    json_t *names = json_array();
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t)
        json_array_append_new(names, json_string(json_string_value(json_object_get(t, "name"))));
    return names;
}

static void test_tools_list(void **state)
{
    env *e = *state;
    initialize(e, "2025-11-25");
    size_t ntools = 0;
    json_t *all = json_array();
    for (const tool_def *const *t = tool_table; *t; t++, ntools++)
        json_array_append_new(all, json_string((*t)->name));
    assert_true(ntools >= 7);

    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}");
    json_t *r = expect_one_result(e, "1");
    json_t *names = tool_names(json_object_get(r, "tools"));
    assert_true(json_equal(names, all));
    json_decref(names);
    assert_null(json_object_get(r, "nextCursor"));
    json_t *first = json_array_get(json_object_get(r, "tools"), 0);
    assert_true(json_is_object(json_object_get(first, "inputSchema")));
    assert_true(json_is_object(json_object_get(first, "annotations")));
    json_array_clear(e->out);

    /* cursor: null is the first page. */
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\",\"params\":"
                "{\"cursor\":null}}");
    r = expect_one_result(e, "2");
    assert_int_equal(json_array_size(json_object_get(r, "tools")), ntools);
    json_array_clear(e->out);

    /* Pages of 3, following nextCursor, give every tool once, in order. */
    e->srv.tools_page_size = 3;
    json_t *seen = json_array();
    char cursor[64] = "";
    int pages = 0;
    for (;;) {
        if (cursor[0])
            send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/list\",\"params\":"
                        "{\"cursor\":\"%s\"}}", cursor);
        else
            send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/list\",\"params\":{}}");
        r = expect_one_result(e, "3");
        json_t *tools = json_object_get(r, "tools");
        assert_true(json_array_size(tools) >= 1 && json_array_size(tools) <= 3);
        names = tool_names(tools);
        json_array_extend(seen, names);
        json_decref(names);
        pages++;
        const char *next = json_string_value(json_object_get(r, "nextCursor"));
        if (!next) {
            json_array_clear(e->out);
            break;
        }
        assert_int_equal(json_array_size(tools), 3);
        snprintf(cursor, sizeof cursor, "%s", next);
        json_array_clear(e->out);
        assert_true(pages < 10);
    }
    assert_int_equal(pages, (int)((ntools + 2) / 3));
    assert_true(json_equal(seen, all));
    json_decref(seen);

    /* Page size 1. */
    e->srv.tools_page_size = 1;
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"tools/list\"}");
    r = expect_one_result(e, "4");
    assert_int_equal(json_array_size(json_object_get(r, "tools")), 1);
    assert_true(json_is_string(json_object_get(r, "nextCursor")));
    json_array_clear(e->out);

    /* Invalid cursors. */
    static const char *const bad[] = {"\"x\"", "\"t0\"", "\"t99\"", "\"t\"", "\"t1x\"",
                                      "\"t-1\"", "\"\"", "5", "{}", "true"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/list\",\"params\":"
                    "{\"cursor\":%s}}", bad[i]);
        expect_one_error(e, RPC_INVALID_PARAMS, "5");
    }
    char past[32];
    snprintf(past, sizeof past, "\"t%zu\"", ntools);
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"tools/list\",\"params\":"
                "{\"cursor\":%s}}", past);
    expect_one_error(e, RPC_INVALID_PARAMS, "6");
    json_decref(all);
}

/* ----------------------------------------------------------- tools/call */

static void test_tools_call_errors(void **state)
{
    env *e = *state;
    initialize(e, "2025-11-25");
    call_tool(e, "1", "deploy_everything", "{}", NULL);
    json_t *m = out_at(e, 0);
    assert_non_null(strstr(json_string_value(json_object_get(json_object_get(m, "error"),
                                                             "message")),
                           "deploy_everything"));
    expect_one_error(e, RPC_INVALID_PARAMS, "1");

    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":"
                "{\"arguments\":{}}}");
    expect_one_error(e, RPC_INVALID_PARAMS, "2");
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\"}");
    expect_one_error(e, RPC_INVALID_PARAMS, "3");
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"tools/call\",\"params\":"
                "{\"name\":7}}");
    expect_one_error(e, RPC_INVALID_PARAMS, "4");
    call_tool(e, "5", "list_targets", "[]", NULL);
    expect_one_error(e, RPC_INVALID_PARAMS, "5");
    call_tool(e, "6", "list_targets", "\"x\"", NULL);
    expect_one_error(e, RPC_INVALID_PARAMS, "6");
    assert_int_equal(mcp_session_inflight(e->session), 0);

    /* arguments: null or absent mean {}. */
    call_tool(e, "7", "list_targets", "null", NULL);
    json_t *r = expect_one_result(e, "7");
    assert_null(json_object_get(r, "isError"));
    json_array_clear(e->out);
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"tools/call\",\"params\":"
                "{\"name\":\"list_targets\"}}");
    r = expect_one_result(e, "8");
    json_t *targets = json_object_get(json_object_get(r, "structuredContent"), "targets");
    assert_int_equal(json_array_size(targets), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(targets, 0), "name")),
                        "fake");
    json_array_clear(e->out);

    /* Invalid arguments are a tool result with isError, not a JSON-RPC error. */
    call_tool(e, "9", "list_targets", "{\"bogus\":1}", NULL);
    r = expect_one_result(e, "9");
    assert_true(json_is_true(json_object_get(r, "isError")));
    json_array_clear(e->out);
    call_tool(e, "10", "get_deployment", "{}", NULL);
    r = expect_one_result(e, "10");
    assert_true(json_is_true(json_object_get(r, "isError")));
    json_array_clear(e->out);

    /* An asynchronous call answers on a later loop turn. */
    call_tool(e, "11", "get_deployment", "{\"deploymentId\":\"now\"}", NULL);
    assert_int_equal(nout(e), 0);
    assert_int_equal(mcp_session_inflight(e->session), 1);
    run_loop(e);
    r = expect_one_result(e, "11");
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_object_get(r, "structuredContent"),
                                            "deployment"), "id")), "now");
    assert_int_equal(mcp_session_inflight(e->session), 0);
    json_array_clear(e->out);
}

/* ------------------------------------------------------ logging/setLevel */

static void test_set_level(void **state)
{
    env *e = *state;
    initialize(e, "2025-11-25");
    static const char *const levels[] = {"debug", "info", "notice", "warning", "error",
                                         "critical", "alert", "emergency"};
    for (size_t i = 0; i < 8; i++) {
        send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":%zu,\"method\":\"logging/setLevel\","
                    "\"params\":{\"level\":\"%s\"}}", i, levels[i]);
        char id[8];
        snprintf(id, sizeof id, "%zu", i);
        json_t *r = expect_one_result(e, id);
        assert_int_equal(json_object_size(r), 0);
        json_array_clear(e->out);
    }
    static const char *const bad[] = {"{\"level\":\"verbose\"}", "{\"level\":\"WARNING\"}",
                                      "{\"level\":\"warn\"}", "{\"level\":3}", "{}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":\"b\",\"method\":\"logging/setLevel\","
                    "\"params\":%s}", bad[i]);
        expect_one_error(e, RPC_INVALID_PARAMS, "\"b\"");
    }
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":\"c\",\"method\":\"logging/setLevel\"}");
    expect_one_error(e, RPC_INVALID_PARAMS, "\"c\"");
}

/* ------------------------------------------ responses and notifications */

static void test_stray_and_notifications(void **state)
{
    env *e = *state;
    /* Stray responses are ignored before and after initialize. */
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}");
    initialize(e, "2025-11-25");
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}");
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":\"srv-1\",\"result\":{\"roots\":[]}}");
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":2,\"error\":{\"code\":-32601,\"message\":\"no\"}}");
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32700,\"message\":"
                "\"parse\"}}");
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":99,\"result\":null}");
    /* Notifications get no response, known or not. */
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}");
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/roots/list_changed\"}");
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"method\":\"vendor/whatever\",\"params\":{\"a\":1}}");
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"method\":\"tools/list\"}");
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":"
                "{\"requestId\":12345,\"reason\":\"x\"}}");
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\"}");
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{}}");
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":"
                "{\"progressToken\":1,\"progress\":1}}");
    assert_int_equal(nout(e), 0);
    assert_int_equal(e->raw_sends, 1);   /* only the initialize result */

    /* A notification calling tools/call does not run the tool. */
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"method\":\"tools/call\",\"params\":"
                "{\"name\":\"get_deployment\",\"arguments\":{\"deploymentId\":\"hang\"}}}");
    assert_int_equal(g_nhang, 0);
    assert_int_equal(mcp_session_inflight(e->session), 0);
    assert_int_equal(nout(e), 0);
}

/* --------------------------------------------------------------- batches */

static void test_batch_rejected(void **state)
{
    env *e = *state;
    static const char *const versions[] = {"2025-06-18", "2025-11-25", "2099-01-01"};
    for (size_t v = 0; v < 3; v++) {
        if (v > 0) {
            mcp_session_close(e->session);
            new_session(e);
        }
        initialize(e, versions[v]);
        send_msg(e, "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"},"
                    "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":"
                    "{\"name\":\"get_deployment\",\"arguments\":{\"deploymentId\":\"hang\"}}}]");
        expect_one_error(e, RPC_INVALID_REQUEST, "null");
        send_msg(e, "[]");
        expect_one_error(e, RPC_INVALID_REQUEST, "null");
        send_msg(e, "[{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}]");
        expect_one_error(e, RPC_INVALID_REQUEST, "null");
        assert_int_equal(g_nhang, 0);   /* no member ran */
    }
}

static void test_batch_served(void **state)
{
    env *e = *state;
    initialize(e, "2025-03-26");
    send_msg(e, "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"},"
                "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":"
                "{\"name\":\"list_targets\",\"arguments\":{}}},"
                "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"},"
                "5,"
                "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"nope\"},"
                "{\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{}},"
                "{\"jsonrpc\":\"2.0\",\"id\":\"t\",\"method\":\"tools/list\"}]");
    assert_int_equal(nout(e), 1);
    json_t *arr = out_at(e, 0);
    assert_true(json_is_array(arr));
    assert_int_equal(json_array_size(arr), 5);
    json_t *m = json_array_get(arr, 0);
    assert_int_equal(json_integer_value(json_object_get(m, "id")), 1);
    assert_non_null(json_object_get(m, "result"));
    m = json_array_get(arr, 1);
    assert_int_equal(json_integer_value(json_object_get(m, "id")), 2);
    json_t *sc = json_object_get(json_object_get(m, "result"), "structuredContent");
    assert_int_equal(json_array_size(json_object_get(sc, "targets")), 1);
    assert_error(json_array_get(arr, 2), RPC_INVALID_REQUEST, "null");
    assert_error(json_array_get(arr, 3), RPC_METHOD_NOT_FOUND, "3");
    m = json_array_get(arr, 4);
    assert_string_equal(json_string_value(json_object_get(m, "id")), "t");
    assert_true(json_is_array(json_object_get(json_object_get(m, "result"), "tools")));
    json_array_clear(e->out);

    /* Empty batch; batch of notifications only (nothing to answer). */
    send_msg(e, "[]");
    expect_one_error(e, RPC_INVALID_REQUEST, "null");
    send_msg(e, "[{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"},"
                "{\"jsonrpc\":\"2.0\",\"id\":8,\"result\":{}}]");
    assert_int_equal(nout(e), 0);

    /* Asynchronous members: the array waits for all of them. */
    send_msg(e, "[{\"jsonrpc\":\"2.0\",\"id\":10,\"method\":\"tools/call\",\"params\":"
                "{\"name\":\"get_deployment\",\"arguments\":{\"deploymentId\":\"now\"}}},"
                "{\"jsonrpc\":\"2.0\",\"id\":11,\"method\":\"ping\"},"
                "{\"jsonrpc\":\"2.0\",\"id\":12,\"method\":\"tools/call\",\"params\":"
                "{\"name\":\"get_deployment\",\"arguments\":{\"deploymentId\":\"hang\"}}}]");
    assert_int_equal(nout(e), 0);
    assert_int_equal(mcp_session_inflight(e->session), 2);
    run_loop(e);
    assert_int_equal(nout(e), 0);             /* id 12 still runs */
    assert_int_equal(g_nhang, 1);
    finish_hang(0);
    assert_int_equal(nout(e), 1);
    arr = out_at(e, 0);
    assert_true(json_is_array(arr));
    assert_int_equal(json_array_size(arr), 3);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(arr, 0), "id")), 11);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(arr, 1), "id")), 10);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(arr, 2), "id")), 12);
    assert_int_equal(mcp_session_inflight(e->session), 0);
    json_array_clear(e->out);

    /* A cancelled member has no response; the rest still go out. */
    send_msg(e, "[{\"jsonrpc\":\"2.0\",\"id\":20,\"method\":\"tools/call\",\"params\":"
                "{\"name\":\"get_deployment\",\"arguments\":{\"deploymentId\":\"hang\"}}},"
                "{\"jsonrpc\":\"2.0\",\"id\":21,\"method\":\"ping\"}]");
    assert_int_equal(nout(e), 0);
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":"
                "{\"requestId\":20}}");
    assert_int_equal(nout(e), 1);
    arr = out_at(e, 0);
    assert_int_equal(json_array_size(arr), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(arr, 0), "id")), 21);
    assert_null(g_hang[1].op);
    json_array_clear(e->out);

    /* Every member cancelled: nothing at all is sent. */
    send_msg(e, "[{\"jsonrpc\":\"2.0\",\"id\":30,\"method\":\"tools/call\",\"params\":"
                "{\"name\":\"get_deployment\",\"arguments\":{\"deploymentId\":\"hang\"}}}]");
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":"
                "{\"requestId\":30}}");
    assert_int_equal(nout(e), 0);

    /* 2024-11-05 serves batches too. */
    mcp_session_close(e->session);
    new_session(e);
    initialize(e, "2024-11-05");
    send_msg(e, "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]");
    assert_int_equal(nout(e), 1);
    assert_true(json_is_array(out_at(e, 0)));
    assert_int_equal(json_array_size(out_at(e, 0)), 1);
}

/* ------------------------------------------ in-flight ids, cancel, close */

static void test_duplicate_inflight_id(void **state)
{
    env *e = *state;
    initialize(e, "2025-11-25");
    const char *args = "{\"deploymentId\":\"hang\"}";
    call_tool(e, "7", "get_deployment", args, NULL);
    assert_int_equal(nout(e), 0);
    assert_int_equal(mcp_session_inflight(e->session), 1);
    call_tool(e, "7", "get_deployment", args, NULL);
    expect_one_error(e, RPC_INVALID_REQUEST, "7");
    call_tool(e, "7", "list_targets", "{}", NULL);   /* any tool */
    expect_one_error(e, RPC_INVALID_REQUEST, "7");
    assert_int_equal(g_nhang, 1);
    /* The same digits as a string are another id. */
    call_tool(e, "\"7\"", "get_deployment", args, NULL);
    assert_int_equal(nout(e), 0);
    assert_int_equal(mcp_session_inflight(e->session), 2);

    finish_hang(0);
    expect_one_result(e, "7");
    json_array_clear(e->out);
    /* Once finished, the id may be used again. */
    call_tool(e, "7", "list_targets", "{}", NULL);
    expect_one_result(e, "7");
    json_array_clear(e->out);
    finish_hang(1);
    expect_one_result(e, "\"7\"");
    json_array_clear(e->out);
    assert_int_equal(mcp_session_inflight(e->session), 0);
}

static void test_cancel(void **state)
{
    env *e = *state;
    initialize(e, "2025-11-25");
    call_tool(e, "1", "get_deployment", "{\"deploymentId\":\"hang\"}", NULL);
    call_tool(e, "\"a\"", "get_deployment", "{\"deploymentId\":\"hang\"}", NULL);
    assert_int_equal(mcp_session_inflight(e->session), 2);

    /* Unknown ids, or the right digits with the wrong type: ignored. */
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":"
                "{\"requestId\":2}}");
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":"
                "{\"requestId\":\"1\"}}");
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":"
                "{\"requestId\":null}}");
    assert_int_equal(mcp_session_inflight(e->session), 2);
    assert_int_equal(g_ops_freed, 0);

    send_msg(e, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":"
                "{\"requestId\":1,\"reason\":\"user\"}}");
    assert_int_equal(mcp_session_inflight(e->session), 1);
    assert_int_equal(g_ops_freed, 1);
    assert_null(g_hang[0].op);
    /* Cancelling again is harmless. */
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":"
                "{\"requestId\":1}}");
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":"
                "{\"requestId\":\"a\"}}");
    assert_int_equal(mcp_session_inflight(e->session), 0);
    assert_int_equal(g_ops_freed, 2);
    run_loop(e);
    assert_int_equal(nout(e), 0);   /* never a response for a cancelled call */
}

static void test_reject(void **state)
{
    env *e = *state;
    mcp_session_reject(e->session, RPC_INVALID_REQUEST, "message too large");
    json_t *m = out_at(e, 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(m, "error"),
                                                          "message")),
                        "message too large");
    expect_one_error(e, RPC_INVALID_REQUEST, "null");
    mcp_session_reject(e->session, RPC_PARSE_ERROR, "100% \"bad\" %s");
    m = out_at(e, 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(m, "error"),
                                                          "message")),
                        "100% \"bad\" %s");
    expect_one_error(e, RPC_PARSE_ERROR, "null");

    /* Over the size cap: refused without being parsed. */
    size_t big = MCP_MAX_MESSAGE_BYTES + 1;
    char *buf = malloc(big);
    memset(buf, ' ', big);
    memcpy(buf, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}",
           strlen("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}"));
    send_raw(e, buf, big);
    expect_one_error(e, RPC_INVALID_REQUEST, "null");
    /* Exactly at the cap is fine. */
    send_raw(e, buf, MCP_MAX_MESSAGE_BYTES);
    expect_one_result(e, "1");
    json_array_clear(e->out);
    free(buf);
}

static void test_close_with_inflight(void **state)
{
    env *e = *state;
    initialize(e, "2025-03-26");
    for (int i = 0; i < 3; i++) {
        char id[8];
        snprintf(id, sizeof id, "%d", i);
        call_tool(e, id, "get_deployment", "{\"deploymentId\":\"hang\"}",
                  i == 0 ? "{\"progressToken\":\"p\"}" : NULL);
    }
    /* A batch with members in flight, plus one already answered. */
    send_msg(e, "[{\"jsonrpc\":\"2.0\",\"id\":10,\"method\":\"ping\"},"
                "{\"jsonrpc\":\"2.0\",\"id\":11,\"method\":\"tools/call\",\"params\":"
                "{\"name\":\"get_deployment\",\"arguments\":{\"deploymentId\":\"hang\"}}},"
                "{\"jsonrpc\":\"2.0\",\"id\":12,\"method\":\"tools/call\",\"params\":"
                "{\"name\":\"get_deployment\",\"arguments\":{\"deploymentId\":\"hang\"}}}]");
    /* An asynchronous one whose completion is already scheduled. */
    call_tool(e, "20", "get_deployment", "{\"deploymentId\":\"now\"}", NULL);
    assert_int_equal(mcp_session_inflight(e->session), 6);
    assert_int_equal(g_nhang, 5);
    mcp_session_close(e->session);
    e->session = NULL;
    assert_int_equal(g_ops_freed, 5);   /* every cancel callback ran */
    run_loop(e);
    assert_int_equal(nout(e), 0);       /* and nothing was sent */
}

static void test_inflight_limit(void **state)
{
    env *e = *state;
    initialize(e, "2025-11-25");
    for (unsigned i = 0; i < MCP_MAX_INFLIGHT; i++) {
        char id[16];
        snprintf(id, sizeof id, "%u", i);
        call_tool(e, id, "get_deployment", "{\"deploymentId\":\"hang\"}", NULL);
    }
    assert_int_equal(nout(e), 0);
    assert_int_equal(mcp_session_inflight(e->session), MCP_MAX_INFLIGHT);
    call_tool(e, "\"over\"", "get_deployment", "{\"deploymentId\":\"hang\"}", NULL);
    expect_one_error(e, RPC_INVALID_REQUEST, "\"over\"");
    assert_int_equal(g_nhang, MCP_MAX_INFLIGHT);
    /* Cheap requests still work. */
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":\"p\",\"method\":\"ping\"}");
    expect_one_result(e, "\"p\"");
    json_array_clear(e->out);
    finish_hang(17);
    expect_one_result(e, "17");
    json_array_clear(e->out);
    call_tool(e, "\"again\"", "list_targets", "{}", NULL);
    expect_one_result(e, "\"again\"");
    json_array_clear(e->out);
    /* teardown closes the session with 4095 requests in flight */
}

/* ----------------------------------------------- progress and logging */

static bool is_method(json_t *m, const char *method)
{
    const char *s = json_string_value(json_object_get(m, "method"));
    return s && strcmp(s, method) == 0;
}

static void test_progress(void **state)
{
    env *e = *state;
    initialize(e, "2025-11-25");
    call_tool(e, "1", "get_deployment", "{\"deploymentId\":\"hang\"}",
              "{\"progressToken\":\"tok-1\"}");
    call_tool(e, "2", "get_deployment", "{\"deploymentId\":\"hang\"}", NULL);
    call_tool(e, "3", "get_deployment", "{\"deploymentId\":\"hang\"}", "{\"progressToken\":42}");
    call_tool(e, "4", "get_deployment", "{\"deploymentId\":\"hang\"}",
              "{\"progressToken\":{\"x\":1}}");
    assert_int_equal(g_nhang, 4);
    mcp_request *r1 = hang_request(0), *r2 = hang_request(1), *r3 = hang_request(2),
                *r4 = hang_request(3);
    assert_ptr_equal(mcp_req_server(r1), &e->srv);
    assert_true(mcp_req_wants_progress(r1));
    assert_false(mcp_req_wants_progress(r2));
    assert_true(mcp_req_wants_progress(r3));
    assert_false(mcp_req_wants_progress(r4));   /* a token must be a string or an integer */

    assert_true(mcp_req_progress(r1, 1, -1, "queued"));
    assert_false(mcp_req_progress(r1, 1, -1, "again"));      /* equal: not sent */
    assert_false(mcp_req_progress(r1, 0.5, -1, "lower"));    /* lower: not sent */
    assert_true(mcp_req_progress(r1, 2, 10, NULL));
    assert_false(mcp_req_progress(r1, 1.5, 10, NULL));
    assert_true(mcp_req_progress(r1, 2.25, -1, "building \xc2\xb7 step 1"));
    assert_true(mcp_req_progress(r3, 0, 100, "zero first"));  /* the first value may be 0 */
    assert_false(mcp_req_progress(r3, 0, 100, NULL));
    assert_false(mcp_req_progress(r2, 1, -1, "no token"));
    assert_false(mcp_req_progress(r4, 1, -1, "bad token"));

    assert_int_equal(nout(e), 4);
    const char *want_tok[] = {"\"tok-1\"", "\"tok-1\"", "\"tok-1\"", "42"};
    const double want_p[] = {1, 2, 2.25, 0};
    const double want_total[] = {-1, 10, -1, 100};
    const char *want_msg[] = {"queued", NULL, "building \xc2\xb7 step 1", "zero first"};
    for (size_t i = 0; i < 4; i++) {
        json_t *m = out_at(e, i);
        assert_true(is_method(m, "notifications/progress"));
        assert_null(json_object_get(m, "id"));
        json_t *p = json_object_get(m, "params");
        json_t *tok = json_loads(want_tok[i], JSON_DECODE_ANY, NULL);
        assert_true(json_equal(json_object_get(p, "progressToken"), tok));
        json_decref(tok);
        assert_true(json_number_value(json_object_get(p, "progress")) == want_p[i]);
        json_t *total = json_object_get(p, "total");
        if (want_total[i] < 0)
            assert_null(total);
        else
            assert_true(json_number_value(total) == want_total[i]);
        json_t *msg = json_object_get(p, "message");
        if (want_msg[i])
            assert_string_equal(json_string_value(msg), want_msg[i]);
        else
            assert_null(msg);
    }
    json_array_clear(e->out);
    for (size_t i = 0; i < 4; i++)
        finish_hang(i);
    assert_int_equal(nout(e), 4);   /* the four responses, nothing else */
    for (size_t i = 0; i < 4; i++)
        assert_non_null(json_object_get(out_at(e, i), "result"));
}

static void test_log_levels(void **state)
{
    env *e = *state;
    initialize(e, "2025-11-25");
    call_tool(e, "1", "get_deployment", "{\"deploymentId\":\"hang\"}", NULL);
    mcp_request *r = hang_request(0);

    /* Default threshold: info. */
    assert_false(mcp_req_log_enabled(r, MCP_LOG_DEBUG));
    assert_true(mcp_req_log_enabled(r, MCP_LOG_INFO));
    assert_true(mcp_req_log_enabled(r, MCP_LOG_EMERGENCY));
    mcp_req_log(r, MCP_LOG_DEBUG, "deploy-mcp/fake", json_pack("{s:s}", "text", "dbg"));
    assert_int_equal(nout(e), 0);   /* suppressed (and its data freed) */
    mcp_req_log(r, MCP_LOG_INFO, "deploy-mcp/fake",
                json_pack("{s:s, s:[s,s]}", "deploymentId", "d1", "lines", "a", "b"));
    assert_int_equal(nout(e), 1);
    json_t *m = out_at(e, 0);
    assert_true(is_method(m, "notifications/message"));
    json_t *p = json_object_get(m, "params");
    assert_string_equal(json_string_value(json_object_get(p, "level")), "info");
    assert_string_equal(json_string_value(json_object_get(p, "logger")), "deploy-mcp/fake");
    char *data = json_dumps(json_object_get(p, "data"), JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(data, "{\"deploymentId\":\"d1\",\"lines\":[\"a\",\"b\"]}");
    free(data);
    json_array_clear(e->out);

    /* setLevel warning: info is suppressed, warning and above pass. */
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":\"l\",\"method\":\"logging/setLevel\",\"params\":"
                "{\"level\":\"warning\"}}");
    json_array_clear(e->out);
    assert_false(mcp_req_log_enabled(r, MCP_LOG_INFO));
    assert_false(mcp_req_log_enabled(r, MCP_LOG_NOTICE));
    assert_true(mcp_req_log_enabled(r, MCP_LOG_WARNING));
    mcp_req_log(r, MCP_LOG_INFO, "deploy-mcp/fake", json_string("i"));
    mcp_req_log(r, MCP_LOG_NOTICE, "deploy-mcp/fake", json_string("n"));
    mcp_req_log(r, MCP_LOG_WARNING, "deploy-mcp/fake", json_string("w"));
    mcp_req_log(r, MCP_LOG_ERROR, "deploy-mcp/fake", json_string("e"));
    mcp_req_log(r, MCP_LOG_CRITICAL, "deploy-mcp/fake", json_string("c"));
    assert_int_equal(nout(e), 3);
    const char *want[][2] = {{"warning", "w"}, {"error", "e"}, {"critical", "c"}};
    for (size_t i = 0; i < 3; i++) {
        p = json_object_get(out_at(e, i), "params");
        assert_string_equal(json_string_value(json_object_get(p, "level")), want[i][0]);
        assert_string_equal(json_string_value(json_object_get(p, "data")), want[i][1]);
    }
    json_array_clear(e->out);

    /* setLevel debug: everything passes; emergency: only emergency. */
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":\"l\",\"method\":\"logging/setLevel\",\"params\":"
                "{\"level\":\"debug\"}}");
    json_array_clear(e->out);
    mcp_req_log(r, MCP_LOG_DEBUG, "deploy-mcp/fake", json_string("d"));
    assert_int_equal(nout(e), 1);
    assert_string_equal(json_string_value(json_object_get(json_object_get(out_at(e, 0),
                                                                          "params"), "level")),
                        "debug");
    json_array_clear(e->out);
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":\"l\",\"method\":\"logging/setLevel\",\"params\":"
                "{\"level\":\"emergency\"}}");
    json_array_clear(e->out);
    mcp_req_log(r, MCP_LOG_ALERT, "deploy-mcp/fake", json_string("a"));
    assert_int_equal(nout(e), 0);
    mcp_req_log(r, MCP_LOG_EMERGENCY, "deploy-mcp/fake", json_string("x"));
    assert_int_equal(nout(e), 1);
    json_array_clear(e->out);
    /* An invalid setLevel keeps the previous threshold. */
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":\"l\",\"method\":\"logging/setLevel\",\"params\":"
                "{\"level\":\"loud\"}}");
    json_array_clear(e->out);
    assert_false(mcp_req_log_enabled(r, MCP_LOG_ALERT));

    /* The session's threshold applies to every request, also later ones. */
    call_tool(e, "2", "get_deployment", "{\"deploymentId\":\"hang\"}", NULL);
    assert_false(mcp_req_log_enabled(hang_request(1), MCP_LOG_ERROR));
    finish_hang(0);
    finish_hang(1);
    assert_int_equal(nout(e), 2);
}

/* Log levels are per session. */
static void test_log_level_per_session(void **state)
{
    env *e = *state;
    initialize(e, "2025-11-25");
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":\"l\",\"method\":\"logging/setLevel\",\"params\":"
                "{\"level\":\"error\"}}");
    json_array_clear(e->out);
    mcp_session *first = e->session;
    new_session(e);
    initialize(e, "2025-11-25");
    call_tool(e, "1", "get_deployment", "{\"deploymentId\":\"hang\"}", NULL);
    assert_true(mcp_req_log_enabled(hang_request(0), MCP_LOG_INFO));
    mcp_session_close(first);
}


/* ------------------------------------- bytes written without jansson trees */

/* The raw bytes of the i-th message sent equal `want` (NUL-terminated). */
static void assert_raw(env *e, size_t i, const char *want, const char *what)
{
    json_t *raw = json_array_get(e->raw, i);
    assert_non_null(raw);
    if (json_string_length(raw) != strlen(want) ||
        memcmp(json_string_value(raw), want, strlen(want)) != 0)
        fail_msg("%s:\n  sent %s\n  want %s", what, json_string_value(raw), want);
}

/* Progress notifications are written directly: the same bytes as the
 * jansson tree they replace, jansson's omissions included. */
static void test_progress_bytes(void **state)
{
    env *e = *state;
    initialize(e, "2025-11-25");
    json_array_clear(e->raw);
    call_tool(e, "1", "get_deployment", "{\"deploymentId\":\"hang\"}",
              "{\"progressToken\":\"t\\\"ok\\u00e9\\n\"}");
    call_tool(e, "2", "get_deployment", "{\"deploymentId\":\"hang\"}",
              "{\"progressToken\":-9007199254740993}");
    mcp_request *r1 = hang_request(0), *r2 = hang_request(1);
    static const struct {
        double p, total;
        const char *msg;
    } steps[] = {
        {0, -1, "first"}, {1e-7, 100, "tiny"}, {0.1, -1, NULL}, {2.25, 10.5, "a \"quoted\" \\ msg\n\t\x01"},
        {52, -1, "log \xc2\xb7 12 lines"}, {123456789.123, -1, "bad utf-8 \xff is left out"},
        {1e21, INFINITY, "inf total is left out"}, {1e22, NAN, "so is NaN"},
        {1.7976931348623157e308, 0, ""},
    };
    size_t n = sizeof steps / sizeof steps[0];
    for (int k = 0; k < 2; k++) {
        mcp_request *r = k ? r2 : r1;
        for (size_t i = 0; i < n; i++)
            assert_true(mcp_req_progress(r, steps[i].p, steps[i].total, steps[i].msg));
    }
    assert_int_equal(json_array_size(e->raw), 2 * n);
    for (int k = 0; k < 2; k++) {
        json_t *tok = k ? json_integer(-9007199254740993LL) : json_string("t\"ok\xc3\xa9\n");
        for (size_t i = 0; i < n; i++) {
            /* what session.c built with jansson before */
            json_t *params = json_pack("{s:O, s:f}", "progressToken", tok, "progress",
                                       steps[i].p);
            if (steps[i].total >= 0)
                json_object_set_new(params, "total", json_real(steps[i].total));
            if (steps[i].msg)
                json_object_set_new(params, "message", json_string(steps[i].msg));
            json_t *msg = json_pack("{s:s, s:s, s:o}", "jsonrpc", "2.0", "method",
                                    "notifications/progress", "params", params);
            char *want = json_dumps(msg, JSON_COMPACT);
            assert_non_null(want);
            assert_raw(e, k * n + i, want, "progress");
            free(want);
            json_decref(msg);
        }
        json_decref(tok);
    }
    /* A progress value jansson cannot hold is not sent (and counts as sent). */
    json_array_clear(e->raw);
    json_array_clear(e->out);
    assert_true(mcp_req_progress(r1, INFINITY, -1, "inf"));
    assert_int_equal(nout(e), 0);
    finish_hang(0);
    finish_hang(1);
}

/* notifications/message through the writer (mcp_req_log_begin / _end) and
 * through mcp_req_log: the bytes jansson wrote for the same tree. */
static void test_log_bytes(void **state)
{
    env *e = *state;
    initialize(e, "2025-11-25");
    call_tool(e, "1", "get_deployment", "{\"deploymentId\":\"hang\"}", NULL);
    mcp_request *r = hang_request(0);
    json_array_clear(e->raw);
    const char *logger = "deploy-mcp/we\"b\xc3\xa9";
    json_t *data = json_pack("{s:s, s:[s, s, s#]}", "deploymentId", "dep\\1", "lines",
                             "plain", "ctl \x01\x1f\x7f \"q\" \\ / \xe2\x80\xa8",
                             "nul\0byte", (int)8);
    assert_non_null(data);
    json_t *msg = json_pack("{s:s, s:s, s:{s:s, s:s, s:O}}", "jsonrpc", "2.0", "method",
                            "notifications/message", "params", "level", "warning", "logger",
                            logger, "data", data);
    char *want = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);

    mcp_req_log(r, MCP_LOG_WARNING, logger, json_incref(data));
    struct jsonw *w = mcp_req_log_begin(r, MCP_LOG_WARNING, logger);
    assert_non_null(w);
    jsonw_json(w, data);
    mcp_req_log_end(r, w);
    assert_int_equal(json_array_size(e->raw), 2);
    assert_raw(e, 0, want, "mcp_req_log");
    assert_raw(e, 1, want, "mcp_req_log_begin/end");
    free(want);

    /* Not enabled, or a logger jansson would refuse: nothing (data freed). */
    assert_null(mcp_req_log_begin(r, MCP_LOG_DEBUG, logger));
    assert_null(mcp_req_log_begin(r, MCP_LOG_INFO, "bad \xff logger"));
    mcp_req_log(r, MCP_LOG_INFO, "bad \xc3 logger", json_incref(data));
    mcp_req_log(r, MCP_LOG_INFO, logger, NULL);
    assert_int_equal(json_array_size(e->raw), 2);
    json_decref(data);
    finish_hang(0);
}

/* The response to `id_json` among the raw messages. */
static size_t find_response(env *e, const char *id_json)
{
    json_t *want = json_loads(id_json, JSON_DECODE_ANY, NULL);
    for (size_t i = 0; i < nout(e); i++) {
        json_t *id = json_object_get(out_at(e, i), "id");
        if (id && json_equal(id, want) && json_typeof(id) == json_typeof(want) &&
            json_object_get(out_at(e, i), "result")) {
            json_decref(want);
            return i;
        }
    }
    fail_msg("no response to %s", id_json);
    return 0;
}

/* A tool result (tool_result: structuredContent and the same JSON as text)
 * is written with structuredContent serialized once and spliced: the bytes
 * must be those of the jansson tree it replaces. */
static void test_result_spliced(void **state)
{
    env *e = *state;
    initialize(e, "2025-11-25");
    static const char *const ids[] = {"1", "\"s\\\"tr\\u00e9\\n\"", "-42", "9007199254740993"};
    /* deployment ids that need escaping in the JSON and again in the text */
    static const char *const deps[] = {"now", "now \\\"quoted\\\" \\\\ \\/ \\n\\t\\u0001",
                                       "now \\u00e9\\u20ac\\ud83d\\ude00 \\u2028",
                                       "now \\u0000 nul"};
    for (size_t i = 0; i < 4; i++) {
        json_array_clear(e->out);
        json_array_clear(e->raw);
        char args[256];
        snprintf(args, sizeof args, "{\"deploymentId\":\"%s\"}", deps[i]);
        call_tool(e, ids[i], "get_deployment", args, NULL);
        run_loop(e);
        size_t k = find_response(e, ids[i]);
        json_t *m = out_at(e, k);
        json_t *res = json_object_get(m, "result");
        json_t *sc = json_object_get(res, "structuredContent");
        assert_non_null(sc);
        assert_null(json_object_get(res, "isError"));
        /* what tool_result and send_msg made before */
        char *text = json_dumps(sc, JSON_COMPACT | JSON_ENCODE_ANY);
        json_t *tree = json_pack("{s:s, s:O, s:{s:[{s:s, s:s}], s:O}}", "jsonrpc", "2.0", "id",
                                 json_object_get(m, "id"), "result", "content", "type", "text",
                                 "text", text, "structuredContent", sc);
        char *want = json_dumps(tree, JSON_COMPACT);
        assert_raw(e, k, want, "spliced result");
        free(want);
        free(text);
        json_decref(tree);
    }
}

/* In a batch (2025-03-26) the result goes through the tree: its text is
 * still structuredContent's JSON. A result whose content was changed after
 * tool_result (list_targets without targets adds a block) too. */
static void test_result_materialized(void **state)
{
    env *e = *state;
    initialize(e, "2025-03-26");
    send_msg(e, "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":"
                "{\"name\":\"get_deployment\",\"arguments\":{\"deploymentId\":\"now \\\"b\\\"\"}}},"
                "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":"
                "{\"name\":\"list_targets\",\"arguments\":{}}}]");
    run_loop(e);
    assert_int_equal(nout(e), 1);
    json_t *arr = out_at(e, 0);
    assert_int_equal(json_array_size(arr), 2);
    for (size_t i = 0; i < 2; i++) {
        json_t *res = json_object_get(json_array_get(arr, i), "result");
        json_t *sc = json_object_get(res, "structuredContent");
        json_t *content = json_object_get(res, "content");
        assert_int_equal(json_array_size(content), 1);
        char *text = json_dumps(sc, JSON_COMPACT | JSON_ENCODE_ANY);
        assert_string_equal(json_string_value(json_object_get(json_array_get(content, 0), "text")),
                            text);
        free(text);
    }
    json_array_clear(e->out);

    /* list_targets with no targets: a second text block after the JSON one */
    e->srv.ntargets = 0;
    call_tool(e, "3", "list_targets", "{}", NULL);
    e->srv.ntargets = 1;
    json_t *res = expect_one_result(e, "3");
    json_t *content = json_object_get(res, "content");
    assert_int_equal(json_array_size(content), 2);
    char *text = json_dumps(json_object_get(res, "structuredContent"), JSON_COMPACT);
    assert_string_equal(json_string_value(json_object_get(json_array_get(content, 0), "text")),
                        text);
    free(text);
}

/* ------------------------------------------------ requests to the client */

/* What an ask's callback received (copies). */
typedef struct reply_rec {
    int calls;
    json_t *result;
    json_t *error;
} reply_rec;

static void record_reply(void *ud, json_t *result, const json_t *error)
{
    reply_rec *rec = ud;
    rec->calls++;
    json_decref(rec->result);
    json_decref(rec->error);
    rec->result = result ? json_deep_copy(result) : NULL;
    rec->error = error ? json_deep_copy(error) : NULL;
}

static void reply_rec_free(reply_rec *rec)
{
    json_decref(rec->result);
    json_decref(rec->error);
    memset(rec, 0, sizeof *rec);
}

/* Asserts that m is our request `method` and returns its id (a string; valid
 * until the next clear). */
static const char *expect_ask_msg(json_t *m, const char *method)
{
    assert_string_equal(json_string_value(json_object_get(m, "jsonrpc")), "2.0");
    assert_string_equal(json_string_value(json_object_get(m, "method")), method);
    assert_true(json_is_object(json_object_get(m, "params")));
    json_t *id = json_object_get(m, "id");
    assert_true(json_is_string(id));
    return json_string_value(id);
}

/* Asserts that m is notifications/cancelled for our request `id`. */
static void expect_cancelled_msg(json_t *m, const char *id)
{
    assert_string_equal(json_string_value(json_object_get(m, "method")),
                        "notifications/cancelled");
    assert_null(json_object_get(m, "id"));
    json_t *params = json_object_get(m, "params");
    assert_string_equal(json_string_value(json_object_get(params, "requestId")), id);
    assert_true(json_is_string(json_object_get(params, "reason")));
}

/* Asks elicitation/create for the hang-th hanging call. */
static mcp_ask *ask_one(size_t hang, reply_rec *rec)
{
    return mcp_req_ask(hang_request(hang), "elicitation/create",
                       json_pack("{s:s, s:{s:s}}", "message", "ok?", "requestedSchema", "type",
                                 "object"),
                       record_reply, rec);
}

static void test_ask_routed(void **state)
{
    env *e = *state;
    initialize(e, "2025-11-25");
    call_tool(e, "1", "get_deployment", "{\"deploymentId\":\"hang\"}", NULL);
    call_tool(e, "2", "get_deployment", "{\"deploymentId\":\"hang\"}", NULL);
    reply_rec r1 = {0}, r2 = {0};
    mcp_ask *a1 = mcp_req_ask(hang_request(0), "sampling/createMessage",
                              json_pack("{s:[], s:i}", "messages", "maxTokens", 100),
                              record_reply, &r1);
    mcp_ask *a2 = ask_one(1, &r2);
    assert_non_null(a1);
    assert_non_null(a2);
    assert_int_equal(mcp_session_asks(e->session), 2);
    assert_int_equal(nout(e), 2);
    char id1[32], id2[32];
    snprintf(id1, sizeof id1, "%s", expect_ask_msg(out_at(e, 0), "sampling/createMessage"));
    snprintf(id2, sizeof id2, "%s", expect_ask_msg(out_at(e, 1), "elicitation/create"));
    assert_string_not_equal(id1, id2);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(out_at(e, 0), "params"),
                                                        "maxTokens")), 100);
    json_array_clear(e->out);

    /* Unknown ids, our id with another JSON type, a null id: ignored. */
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":\"srv-999\",\"result\":{}}");
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}");
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":[\"%s\"],\"result\":{}}", id1);
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32700,\"message\":\"x\"}}");
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"result\":{}}");
    assert_int_equal(r1.calls + r2.calls, 0);
    assert_int_equal(mcp_session_asks(e->session), 2);

    /* The second answer goes to the second ask, once. */
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":\"%s\",\"result\":{\"action\":\"accept\","
                "\"content\":{\"a\":1}}}", id2);
    assert_int_equal(r2.calls, 1);
    assert_int_equal(r1.calls, 0);
    assert_null(r2.error);
    assert_string_equal(json_string_value(json_object_get(r2.result, "action")), "accept");
    assert_int_equal(mcp_session_asks(e->session), 1);
    /* A duplicate answer is ignored. */
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":\"%s\",\"result\":{\"action\":\"decline\"}}", id2);
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":\"%s\",\"error\":{\"code\":1,\"message\":\"m\"}}",
             id2);
    assert_int_equal(r2.calls, 1);
    assert_string_equal(json_string_value(json_object_get(r2.result, "action")), "accept");

    /* An error answer: the error object, no result. */
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":\"%s\",\"error\":{\"code\":-1,"
                "\"message\":\"User rejected sampling request\"}}", id1);
    assert_int_equal(r1.calls, 1);
    assert_null(r1.result);
    assert_int_equal(json_integer_value(json_object_get(r1.error, "code")), -1);
    assert_string_equal(json_string_value(json_object_get(r1.error, "message")),
                        "User rejected sampling request");
    assert_int_equal(mcp_session_asks(e->session), 0);
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":\"%s\",\"result\":{}}", id1);
    assert_int_equal(r1.calls, 1);
    assert_int_equal(nout(e), 0); /* responses are never answered */

    /* A malformed error member is reported as an error object too. */
    reply_rec r3 = {0};
    assert_non_null(ask_one(0, &r3));
    char id3[32];
    snprintf(id3, sizeof id3, "%s", expect_ask_msg(out_at(e, 0), "elicitation/create"));
    json_array_clear(e->out);
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":\"%s\",\"error\":\"no\"}", id3);
    assert_int_equal(r3.calls, 1);
    assert_int_equal(json_integer_value(json_object_get(r3.error, "code")), RPC_INTERNAL_ERROR);

    finish_hang(0);
    finish_hang(1);
    assert_int_equal(nout(e), 2); /* the two tools/call results, nothing else */
    reply_rec_free(&r1);
    reply_rec_free(&r2);
    reply_rec_free(&r3);
}

static void test_ask_cancel(void **state)
{
    env *e = *state;
    initialize(e, "2025-11-25");
    call_tool(e, "1", "get_deployment", "{\"deploymentId\":\"hang\"}", NULL);
    reply_rec rec = {0};
    mcp_ask *a = ask_one(0, &rec);
    assert_non_null(a);
    char id[32];
    snprintf(id, sizeof id, "%s", expect_ask_msg(out_at(e, 0), "elicitation/create"));
    json_array_clear(e->out);
    mcp_ask_cancel(a);
    mcp_ask_cancel(NULL);
    assert_int_equal(nout(e), 1);
    expect_cancelled_msg(out_at(e, 0), id);
    json_array_clear(e->out);
    assert_int_equal(mcp_session_asks(e->session), 0);
    /* The client answers anyway: no callback. */
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":\"%s\",\"result\":{\"action\":\"cancel\"}}", id);
    assert_int_equal(rec.calls, 0);
    assert_int_equal(nout(e), 0);
    finish_hang(0);
    expect_one_result(e, "1");
}

/* Asks still pending when their request ends are freed without callbacks:
 * notifications/cancelled precedes the response when it finishes; nothing
 * is sent when the client cancelled the request (its stream is gone). */
static void test_ask_request_ends(void **state)
{
    env *e = *state;
    initialize(e, "2025-11-25");
    call_tool(e, "1", "get_deployment", "{\"deploymentId\":\"hang\"}", NULL);
    call_tool(e, "2", "get_deployment", "{\"deploymentId\":\"hang\"}", NULL);
    reply_rec r1 = {0}, r2 = {0};
    assert_non_null(ask_one(0, &r1));
    assert_non_null(ask_one(1, &r2));
    char id1[32], id2[32];
    snprintf(id1, sizeof id1, "%s", expect_ask_msg(out_at(e, 0), "elicitation/create"));
    snprintf(id2, sizeof id2, "%s", expect_ask_msg(out_at(e, 1), "elicitation/create"));
    json_array_clear(e->out);

    finish_hang(0);
    assert_int_equal(nout(e), 2);
    expect_cancelled_msg(out_at(e, 0), id1);
    assert_int_equal(json_integer_value(json_object_get(out_at(e, 1), "id")), 1);
    assert_non_null(json_object_get(out_at(e, 1), "result"));
    json_array_clear(e->out);
    assert_int_equal(mcp_session_asks(e->session), 1);

    send_msg(e, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":"
                "{\"requestId\":2}}");
    assert_int_equal(mcp_session_asks(e->session), 0);
    assert_int_equal(mcp_session_inflight(e->session), 0);
    assert_int_equal(nout(e), 0);
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":\"%s\",\"result\":{}}", id1);
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":\"%s\",\"result\":{}}", id2);
    assert_int_equal(r1.calls + r2.calls, 0);
    assert_int_equal(nout(e), 0);
}

/* Closing the session with asks pending frees them (the ASan build checks
 * for leaks), without callbacks and without sending anything. */
static void test_ask_session_close(void **state)
{
    env *e = *state;
    initialize(e, "2025-11-25");
    reply_rec rec = {0};
    for (size_t i = 0; i < 3; i++) {
        char id[8];
        snprintf(id, sizeof id, "%zu", i);
        call_tool(e, id, "get_deployment", "{\"deploymentId\":\"hang\"}", NULL);
        assert_non_null(ask_one(i, &rec));
        assert_non_null(ask_one(i, &rec));
    }
    assert_int_equal(mcp_session_asks(e->session), 6);
    json_array_clear(e->out);
    mcp_session_close(e->session);
    e->session = NULL;
    assert_int_equal(rec.calls, 0);
    assert_int_equal(g_ops_freed, 3);
    run_loop(e);
    assert_int_equal(nout(e), 0);
}

static void test_ask_cap(void **state)
{
    env *e = *state;
    initialize(e, "2025-11-25");
    call_tool(e, "1", "get_deployment", "{\"deploymentId\":\"hang\"}", NULL);
    reply_rec rec = {0};
    for (unsigned i = 0; i < MCP_MAX_ASKS; i++)
        assert_non_null(ask_one(0, &rec));
    assert_int_equal(mcp_session_asks(e->session), MCP_MAX_ASKS);
    assert_int_equal(nout(e), MCP_MAX_ASKS);
    char first[32];
    snprintf(first, sizeof first, "%s", expect_ask_msg(out_at(e, 0), "elicitation/create"));
    json_array_clear(e->out);
    /* One more: NULL, nothing sent, no callback (params freed: ASan). */
    assert_null(ask_one(0, &rec));
    assert_int_equal(nout(e), 0);
    assert_int_equal(mcp_session_asks(e->session), MCP_MAX_ASKS);
    /* An answer frees a slot. */
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":\"%s\",\"result\":{\"action\":\"decline\"}}", first);
    assert_int_equal(rec.calls, 1);
    assert_non_null(ask_one(0, &rec));
    assert_int_equal(mcp_session_asks(e->session), MCP_MAX_ASKS);
    json_array_clear(e->out);
    /* Finishing the request cancels the rest. */
    finish_hang(0);
    assert_int_equal(nout(e), MCP_MAX_ASKS + 1);
    assert_int_equal(mcp_session_asks(e->session), 0);
    assert_int_equal(rec.calls, 1);
    reply_rec_free(&rec);
}

/* The conformance fixtures that ask the client, end to end through the
 * session. Fixtures stay enabled for the rest of the process: these tests
 * run last. */
static void initialize_caps(env *e, const char *caps)
{
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":\"init\",\"method\":\"initialize\",\"params\":"
                "{\"protocolVersion\":\"2025-11-25\",\"capabilities\":%s,\"clientInfo\":"
                "{\"name\":\"t\",\"version\":\"1\"}}}", caps);
    assert_non_null(json_object_get(out_at(e, 0), "result"));
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}");
    json_array_clear(e->out);
}

static const char *result_text(json_t *res)
{
    return json_string_value(
        json_object_get(json_array_get(json_object_get(res, "content"), 0), "text"));
}

static void test_fixture_asks(void **state)
{
    env *e = *state;
    tool_fixtures_enable();
    initialize_caps(e, "{\"sampling\":{},\"elicitation\":{}}");

    /* test_elicitation: the scenario's schema; the answer comes back as text. */
    call_tool(e, "7", "test_elicitation", "{\"message\":\"Who are you?\"}", NULL);
    assert_int_equal(nout(e), 1);
    char id[32];
    snprintf(id, sizeof id, "%s", expect_ask_msg(out_at(e, 0), "elicitation/create"));
    json_t *params = json_object_get(out_at(e, 0), "params");
    assert_string_equal(json_string_value(json_object_get(params, "message")), "Who are you?");
    json_t *props = json_object_get(json_object_get(params, "requestedSchema"), "properties");
    assert_non_null(json_object_get(props, "username"));
    assert_non_null(json_object_get(props, "email"));
    json_array_clear(e->out);
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":\"%s\",\"result\":{\"action\":\"accept\","
                "\"content\":{\"username\":\"u\",\"email\":\"e@x\"}}}", id);
    json_t *res = expect_one_result(e, "7");
    assert_string_equal(result_text(res),
                        "User response: action=accept, content={\"username\":\"u\",\"email\":\"e@x\"}");
    assert_null(json_object_get(res, "isError"));
    json_array_clear(e->out);

    /* test_sampling answered with a JSON-RPC error: isError with its message. */
    call_tool(e, "8", "test_sampling", "{\"prompt\":\"hi\"}", NULL);
    snprintf(id, sizeof id, "%s", expect_ask_msg(out_at(e, 0), "sampling/createMessage"));
    params = json_object_get(out_at(e, 0), "params");
    assert_int_equal(json_integer_value(json_object_get(params, "maxTokens")), 100);
    json_t *msg0 = json_array_get(json_object_get(params, "messages"), 0);
    assert_string_equal(json_string_value(json_object_get(msg0, "role")), "user");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(msg0, "content"), "text")), "hi");
    json_array_clear(e->out);
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":\"%s\",\"error\":{\"code\":-1,"
                "\"message\":\"User rejected\"}}", id);
    res = expect_one_result(e, "8");
    assert_true(json_is_true(json_object_get(res, "isError")));
    assert_non_null(strstr(result_text(res), "User rejected"));
    json_array_clear(e->out);

    /* test_sampling answered: "LLM response: <text>". */
    call_tool(e, "9", "test_sampling", "{\"prompt\":\"hi\"}", NULL);
    snprintf(id, sizeof id, "%s", expect_ask_msg(out_at(e, 0), "sampling/createMessage"));
    json_array_clear(e->out);
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":\"%s\",\"result\":{\"role\":\"assistant\","
                "\"content\":{\"type\":\"text\",\"text\":\"hello\"},\"model\":\"m\"}}", id);
    res = expect_one_result(e, "9");
    assert_string_equal(result_text(res), "LLM response: hello");
    json_array_clear(e->out);

    /* The client cancels the tools/call: the fixture's cancel callback
     * cancels its ask (the request is gone already: the notification goes
     * out unrelated), and no response follows. */
    call_tool(e, "10", "test_elicitation_sep1330_enums", "{}", NULL);
    snprintf(id, sizeof id, "%s", expect_ask_msg(out_at(e, 0), "elicitation/create"));
    props = json_object_get(json_object_get(json_object_get(out_at(e, 0), "params"),
                                            "requestedSchema"), "properties");
    assert_int_equal(json_object_size(props), 5);
    json_array_clear(e->out);
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":"
                "{\"requestId\":10}}");
    assert_int_equal(nout(e), 1);
    expect_cancelled_msg(out_at(e, 0), id);
    json_array_clear(e->out);
    assert_int_equal(mcp_session_asks(e->session), 0);
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":\"%s\",\"result\":{\"action\":\"accept\"}}", id);
    run_loop(e);
    assert_int_equal(nout(e), 0);

    /* The session closes while a fixture waits: its cancel callback runs
     * (mcp_ask_cancel sends nothing now), everything is freed. */
    call_tool(e, "11", "test_elicitation_sep1034_defaults", "{}", NULL);
    props = json_object_get(json_object_get(json_object_get(out_at(e, 0), "params"),
                                            "requestedSchema"), "properties");
    assert_true(json_is_real(json_object_get(json_object_get(props, "score"), "default")));
    json_array_clear(e->out);
    mcp_session_close(e->session);
    e->session = NULL;
    run_loop(e);
    assert_int_equal(nout(e), 0);
}

static void test_fixture_asks_no_capability(void **state)
{
    env *e = *state;
    tool_fixtures_enable();
    initialize_caps(e, "{}");
    call_tool(e, "1", "test_sampling", "{\"prompt\":\"hi\"}", NULL);
    json_t *res = expect_one_result(e, "1");
    assert_true(json_is_true(json_object_get(res, "isError")));
    assert_non_null(strstr(result_text(res), "sampling"));
    json_array_clear(e->out);
    call_tool(e, "2", "test_elicitation", "{\"message\":\"m\"}", NULL);
    res = expect_one_result(e, "2");
    assert_true(json_is_true(json_object_get(res, "isError")));
    assert_non_null(strstr(result_text(res), "elicitation"));
    assert_int_equal(mcp_session_asks(e->session), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_parse_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_depth_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_non_object_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_before_initialize, setup, teardown),
        cmocka_unit_test_setup_teardown(test_versions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_initialize_params, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_method, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tools_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tools_call_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_level, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stray_and_notifications, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_served, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_inflight_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reject, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_with_inflight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inflight_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_progress, setup, teardown),
        cmocka_unit_test_setup_teardown(test_progress_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_result_spliced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_result_materialized, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_levels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_level_per_session, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ask_routed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ask_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ask_request_ends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ask_session_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ask_cap, setup, teardown),
        /* last: they enable the fixture tools for good */
        cmocka_unit_test_setup_teardown(test_fixture_asks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fixture_asks_no_capability, setup, teardown),
    };
    (void)test_depth_cap;
    (void)test_non_object_messages;
    return cmocka_run_group_tests(tests, NULL, group_teardown);
}

/* test_relay.c — the live relay's notifications (tools/relay.c), written as
 * JSON text from the lines' stored escaped text rather than jansson trees:
 * every line arrives once, in order, exactly as sent (quotes, backslashes,
 * control characters, NULs, multi-byte UTF-8; invalid UTF-8 repaired as
 * before), one notification per run of same-level lines, chunks flushed at
 * RELAY_CHUNK_MAX_LINES lines and RELAY_CHUNK_MAX_BYTES bytes, lastLines
 * keeping the latest 50, and tail_logs objects {ts?, level, text, source?}.
 *
 * The relay runs on a real request: a tools/call get_deployment whose fake
 * adapter never answers ("hang"); the session's output is captured. */
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

#include "mcp/config.h"
#include "mcp/server.h"
#include "mcp/session.h"
#include "providers/provider.h"
#include "providers/utf8.h"
#include "tools/relay.h"
#include "tools/tool.h"

/* ---------------------------------------------------------- fake adapter */

static prov_op *g_op;
static void *g_ud;

static void op_freed(void *p)
{
    (void)p;
    g_op = NULL;
}

static prov_op *fake_get(prov_target *t, const char *id, prov_result_cb cb, void *ud,
                         prov_error *err)
{
    (void)id;
    (void)err;
    g_ud = ud;
    g_op = prov_op_new(t, cb, ud, &g_op, op_freed);
    return g_op;
}

static const struct provider fake_ops = {
    .name = "fakeprov", .display_name = "FakeProv", .caps = PROV_CAP_GET,
    .get_deployment = fake_get,
};

/* ------------------------------------------------------------- harness */

typedef struct env {
    uv_loop_t loop;
    mcp_server srv;
    cfg *config;
    prov_target target;
    mcp_session *session;
    json_t *out;
    mcp_request *req;
} env;

static int capture(void *io, const char *msg, size_t len)
{
    env *e = io;
    json_error_t jerr;
    json_t *j = json_loadb(msg, len, JSON_ALLOW_NUL, &jerr);
    if (!j)
        fail_msg("the session sent invalid JSON (%s): %.*s", jerr.text, (int)len, msg);
    json_array_append_new(e->out, j);
    return 0;
}

static const mcp_transport capture_tp = {.name = "test", .send = capture};

static void send_text(env *e, const char *s) { mcp_session_handle(e->session, s, strlen(s)); }

static int setup(void **state)
{
    env *e = calloc(1, sizeof *e);
    assert_non_null(e);
    assert_int_equal(uv_loop_init(&e->loop), 0);
    const char text[] = "{\"targets\":{\"web\":{\"provider\":\"fakeprov\"}}}";
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
    e->out = json_array();
    e->session = mcp_session_new(&e->srv, &capture_tp, e);
    assert_non_null(e->session);
    send_text(e, "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":"
                 "{\"protocolVersion\":\"2025-11-25\",\"capabilities\":{}}}");
    send_text(e, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}");
    send_text(e, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":"
                 "{\"name\":\"get_deployment\",\"arguments\":{\"deploymentId\":\"d\"},"
                 "\"_meta\":{\"progressToken\":\"tok\"}}}");
    assert_non_null(g_op);
    /* tools/common.c passes its call state as ud; its first member is the
     * request (as tests/unit/mcp/test_session.c relies on too). */
    e->req = *(mcp_request **)g_ud;
    json_array_clear(e->out);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    env *e = *state;
    mcp_session_close(e->session);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&e->loop), 0);
    assert_null(g_op);
    cfg_free(e->config);
    json_decref(e->out);
    free(e);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    tool_registry_cleanup();
    return 0;
}

static void set_level(env *e, const char *level)
{
    char msg[256];
    snprintf(msg, sizeof msg, "{\"jsonrpc\":\"2.0\",\"id\":\"l\",\"method\":\"logging/setLevel\","
                              "\"params\":{\"level\":\"%s\"}}", level);
    send_text(e, msg);
    json_array_clear(e->out);
}

static bool is_method(json_t *m, const char *method)
{
    const char *s = json_string_value(json_object_get(m, "method"));
    return s && strcmp(s, method) == 0;
}

/* The log notifications sent so far, as [[level, data], ...]. */
static json_t *log_messages(env *e)
{
    json_t *all = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(e->out, i, m) {
        if (!is_method(m, "notifications/message"))
            continue;
        json_t *p = json_object_get(m, "params");
        assert_string_equal(json_string_value(json_object_get(p, "logger")), "deploy-mcp/web");
        json_array_append_new(all, json_pack("[O, O]", json_object_get(p, "level"),
                                             json_object_get(p, "data")));
    }
    return all;
}

static void assert_json(json_t *got, const char *want_text)
{
    json_t *want = json_loads(want_text, JSON_ALLOW_NUL, NULL);
    assert_non_null(want);
    if (!json_equal(got, want)) {
        char *g = json_dumps(got, JSON_COMPACT | JSON_ENCODE_ANY);
        fail_msg("got  %s\nwant %s", g, want_text);
    }
    json_decref(want);
}

static void log_event(relay *r, const prov_log_line *lines, size_t n)
{
    prov_event ev = {.kind = PROV_EV_LOG, .status = PROV_ST_UNKNOWN, .progress = -1,
                     .total = -1, .lines = lines, .nlines = n};
    relay_event(r, &ev);
}

static void finish(env *e, relay *r)
{
    relay_finish(r);
    relay_free(r);
    prov_op_succeed(g_op, prov_deployment(&e->target, "d", "preview", PROV_ST_READY, "ready",
                                          NULL, NULL));
    uv_run(&e->loop, UV_RUN_DEFAULT);
}

/* ---------------------------------------------------------------- tests */

#define T(lit) .text = lit, .len = sizeof(lit) - 1

static void test_build_lines_encoded(void **state)
{
    env *e = *state;
    set_level(e, "debug");
    relay_opts o = {.mode = RELAY_BUILD, .deployment_id = "dep \"1\"", .include_logs = true};
    relay *r = relay_new(e->req, "web", &o);
    assert_non_null(r);
    const char nul[] = "nul\0inside";
    prov_log_line a[] = {
        {.text = "plain", .len = 5, .level = "info"},
        {T("q\"uote\\back/slash\n\t\r\b\f\x01\x1f\x7f"), .level = NULL},
        {T("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xe2\x80\xa8"), .level = "info"},
        {.text = nul, .len = sizeof nul - 1, .level = "info"},
        {T("bad \xff utf-8 \xe2\x82"), .level = "warn"},
        {.text = "", .len = 0, .level = "warning"},
        {.text = NULL, .len = 0, .level = "error"},
        {.text = "dbg", .len = 3, .level = "trace"},
        {.text = "back to info", .len = 12, .level = "bogus"},
    };
    log_event(r, a, sizeof a / sizeof a[0]);
    relay_flush(r);
    json_t *msgs = log_messages(e);
    assert_json(msgs,
                "[[\"info\",{\"deploymentId\":\"dep \\\"1\\\"\",\"lines\":[\"plain\","
                "\"q\\\"uote\\\\back/slash\\n\\t\\r\\b\\f\\u0001\\u001f\x7f\","
                "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xe2\x80\xa8\","
                "\"nul\\u0000inside\"]}],"
                "[\"warning\",{\"deploymentId\":\"dep \\\"1\\\"\",\"lines\":"
                "[\"bad \xef\xbf\xbd utf-8 \xef\xbf\xbd\",\"\"]}],"
                "[\"error\",{\"deploymentId\":\"dep \\\"1\\\"\",\"lines\":[\"\"]}],"
                "[\"debug\",{\"deploymentId\":\"dep \\\"1\\\"\",\"lines\":[\"dbg\"]}],"
                "[\"info\",{\"deploymentId\":\"dep \\\"1\\\"\",\"lines\":[\"back to info\"]}]]");
    json_decref(msgs);
    /* one progress for the chunk */
    json_t *last = json_array_get(e->out, json_array_size(e->out) - 1);
    assert_true(is_method(last, "notifications/progress"));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(last, "params"), "message")),
        "log · 9 lines");

    json_t *sc = relay_stream_summary(r, "c", 1);
    assert_json(json_object_get(sc, "lastLines"),
                "[\"plain\",\"q\\\"uote\\\\back/slash\\n\\t\\r\\b\\f\\u0001\\u001f\x7f\","
                "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xe2\x80\xa8\","
                "\"nul\\u0000inside\",\"bad \xef\xbf\xbd utf-8 \xef\xbf\xbd\",\"\",\"\","
                "\"dbg\",\"back to info\"]");
    assert_int_equal(json_integer_value(json_object_get(sc, "logLineCount")), 9);
    json_decref(sc);
    finish(e, r);
}

static void test_levels_filtered(void **state)
{
    env *e = *state;
    relay_opts o = {.mode = RELAY_BUILD, .deployment_id = NULL, .include_logs = true};
    relay *r = relay_new(e->req, "web", &o);
    prov_log_line a[] = {
        {.text = "d1", .len = 2, .level = "debug"},
        {.text = "i1", .len = 2, .level = "info"},
        {.text = "i2", .len = 2, .level = "info"},
        {.text = "d2", .len = 2, .level = "debug"},
        {.text = "e1", .len = 2, .level = "fatal"},
    };
    log_event(r, a, 5);
    relay_flush(r);
    json_t *msgs = log_messages(e);
    /* debug is below the default level (info); no deploymentId */
    assert_json(msgs, "[[\"info\",{\"lines\":[\"i1\",\"i2\"]}],[\"error\",{\"lines\":[\"e1\"]}]]");
    json_decref(msgs);
    json_t *sc = relay_stream_summary(r, "c", 1);
    assert_json(json_object_get(sc, "lastLines"), "[\"d1\",\"i1\",\"i2\",\"d2\",\"e1\"]");
    json_decref(sc);
    finish(e, r);
}

/* Chunks flush at RELAY_CHUNK_MAX_LINES lines and at RELAY_CHUNK_MAX_BYTES
 * bytes; lastLines keeps the latest RELAY_LAST_LINES; every line once. */
static void test_chunk_caps_and_last_lines(void **state)
{
    env *e = *state;
    relay_opts o = {.mode = RELAY_BUILD, .deployment_id = "d", .include_logs = true};
    relay *r = relay_new(e->req, "web", &o);
    size_t total = 2 * RELAY_CHUNK_MAX_LINES + 123;
    char (*texts)[32] = calloc(total, sizeof *texts);
    prov_log_line *lines = calloc(total, sizeof *lines);
    for (size_t i = 0; i < total; i++) {
        snprintf(texts[i], sizeof texts[i], "line \"%zu\"", i);
        lines[i] = (prov_log_line){.text = texts[i], .len = strlen(texts[i]), .level = "info"};
    }
    log_event(r, lines, total);
    json_t *msgs = log_messages(e);
    assert_int_equal(json_array_size(msgs), 2); /* two full chunks went at once */
    relay_flush(r);
    json_decref(msgs);
    msgs = log_messages(e);
    assert_int_equal(json_array_size(msgs), 3);
    size_t k = 0, i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        json_t *ls = json_object_get(json_array_get(m, 1), "lines");
        assert_true(json_array_size(ls) <= RELAY_CHUNK_MAX_LINES);
        size_t j;
        json_t *l;
        json_array_foreach(ls, j, l)
            assert_string_equal(json_string_value(l), texts[k++]);
    }
    assert_int_equal(k, total);
    json_decref(msgs);
    json_t *sc = relay_stream_summary(r, "c", 1);
    json_t *last = json_object_get(sc, "lastLines");
    assert_int_equal(json_array_size(last), RELAY_LAST_LINES);
    for (i = 0; i < RELAY_LAST_LINES; i++)
        assert_string_equal(json_string_value(json_array_get(last, i)),
                            texts[total - RELAY_LAST_LINES + i]);
    json_decref(sc);

    /* bytes: 100 KiB lines flush after the third */
    json_array_clear(e->out);
    size_t big = 100u << 10;
    char *b = malloc(big);
    memset(b, 'x', big);
    b[0] = '"';
    prov_log_line bl = {.text = b, .len = big, .level = "info"};
    log_event(r, &bl, 1);
    log_event(r, &bl, 1);
    msgs = log_messages(e);
    assert_int_equal(json_array_size(msgs), 0);
    json_decref(msgs);
    log_event(r, &bl, 1);
    msgs = log_messages(e);
    assert_int_equal(json_array_size(msgs), 1);
    json_t *ls = json_object_get(json_array_get(json_array_get(msgs, 0), 1), "lines");
    assert_int_equal(json_array_size(ls), 3);
    assert_int_equal(json_string_length(json_array_get(ls, 2)), big);
    assert_memory_equal(json_string_value(json_array_get(ls, 2)), b, big);
    json_decref(msgs);
    free(b);
    free(texts);
    free(lines);
    finish(e, r);
}

/* tail_logs: objects {ts?, level, text, source?}, level and substring
 * filters, kept lines for the result up to max_lines. */
static void test_tail_objects(void **state)
{
    env *e = *state;
    set_level(e, "debug");
    relay_opts o = {.mode = RELAY_TAIL, .min_level = "info", .filter = "x", .max_lines = 2};
    relay *r = relay_new(e->req, "web", &o);
    prov_log_line a[] = {
        {.text = "x debug", .len = 7, .level = "debug"},
        {.text = "x one \"q\"", .len = 9, .level = "info", .ts = "2026-01-01T00:00:00Z",
         .source = "build"},
        {.text = "no match", .len = 8, .level = "error"},
        {.text = "x two \xff", .len = 7, .level = "warn", .ts = "", .source = "s\xc3"},
        {.text = "x three", .len = 7, .level = "error", .ts = "t\n"},
    };
    log_event(r, a, 5);
    relay_flush(r);
    json_t *msgs = log_messages(e);
    assert_json(msgs,
                "[[\"info\",{\"lines\":[{\"ts\":\"2026-01-01T00:00:00Z\",\"level\":\"info\","
                "\"text\":\"x one \\\"q\\\"\",\"source\":\"build\"}]}],"
                "[\"warning\",{\"lines\":[{\"level\":\"warn\",\"text\":\"x two \xef\xbf\xbd\","
                "\"source\":\"s\xef\xbf\xbd\"}]}],"
                "[\"error\",{\"lines\":[{\"ts\":\"t\\n\",\"level\":\"error\","
                "\"text\":\"x three\"}]}]]");
    /* key order as before: ts, level, text, source */
    json_t *first = json_object_get(json_array_get(json_array_get(msgs, 0), 1), "lines");
    char *d = json_dumps(json_array_get(first, 0), JSON_COMPACT);
    assert_string_equal(d, "{\"ts\":\"2026-01-01T00:00:00Z\",\"level\":\"info\","
                           "\"text\":\"x one \\\"q\\\"\",\"source\":\"build\"}");
    free(d);
    json_decref(msgs);
    json_t *sc = relay_tail_summary(r, "c");
    assert_json(sc, "{\"lines\":[{\"ts\":\"2026-01-01T00:00:00Z\",\"level\":\"info\","
                    "\"text\":\"x one \\\"q\\\"\",\"source\":\"build\"},"
                    "{\"level\":\"warn\",\"text\":\"x two \xef\xbf\xbd\","
                    "\"source\":\"s\xef\xbf\xbd\"}],\"count\":2,\"dropped\":1,\"cursor\":\"c\"}");
    json_decref(sc);
    finish(e, r);
}

/* Lines buffered when the request is cancelled are dropped, not sent. */
static void test_detach_drops(void **state)
{
    env *e = *state;
    relay_opts o = {.mode = RELAY_BUILD, .deployment_id = "d", .include_logs = true};
    relay *r = relay_new(e->req, "web", &o);
    prov_log_line l = {.text = "pending", .len = 7, .level = "info"};
    log_event(r, &l, 1);
    relay_detach(r);
    relay_free(r);
    json_t *msgs = log_messages(e);
    assert_int_equal(json_array_size(msgs), 0);
    json_decref(msgs);
    prov_op_succeed(g_op, prov_deployment(&e->target, "d", "preview", PROV_ST_READY, "ready",
                                          NULL, NULL));
    uv_run(&e->loop, UV_RUN_DEFAULT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_build_lines_encoded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_levels_filtered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunk_caps_and_last_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tail_objects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_detach_drops, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, group_teardown);
}

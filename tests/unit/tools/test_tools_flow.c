/* test_tools_flow.c — the tool layer end to end inside one process: a real
 * MCP session, tools/call dispatch, the generic SSE stream, the watch and the
 * relay, against a fake provider adapter defined here and a scripted SSE
 * server (tests/unit/tools/sse_test_server.py, spawned once for the group).
 *
 * Checks what PRODUCT.md §3 promises: argument and capability errors as
 * isError results, live relay (progress strictly increasing, log lines in
 * order, exactly once, chunked), summaries and cursors, timeouts,
 * cancellation closing the upstream, idempotent create_preview, tail_logs
 * filters. Every test runs its own loop and ends with uv_loop_close() == 0. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/unit/support/pyserver.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "mcp/config.h"
#include "mcp/server.h"
#include "mcp/session.h"
#include "providers/http.h"
#include "providers/provider.h"
#include "tools/tool.h"

extern char **environ;

#define WAIT_MS 10000
#define TICK_MS 5

static pyserver g_server = {.pid = -1, .stdin_fd = -1};
static char g_base[64];
static char g_root[PATH_MAX];          /* artifactRoot of target "fake" */

/* ---------------------------------------------------------- fake adapter */

static int g_creates;
static char g_last_key[256];
static char g_last_artifact[PATH_MAX];
static char g_stream_key[64];          /* ?key= for the server's stream counters */

static bool fake_creds(const prov_target *t, char *problem, size_t n)
{
    const char *env = cfg_str(t->cfg, "tokenEnv", NULL);
    if (env && !prov_secret(env)) {
        snprintf(problem, n, "environment variable %s is not set", env);
        return false;
    }
    return true;
}

static const char *fake_hint(const char *tool)
{
    return strcmp(tool, "tail_logs") == 0 ? "It has no logs; follow deployments with "
                                            "stream_events instead."
                                          : NULL;
}

static json_t *deployment(const prov_target *t, const char *id, const char *status)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "id", id, "target", t->cfg->name,
                     "provider", t->cfg->provider, "environment", "preview", "status", status,
                     "providerStatus", status);
}

static prov_op *fake_create(prov_target *t, const prov_create_args *a, prov_result_cb cb,
                            void *ud, prov_error *err)
{
    (void)err;
    g_creates++;
    snprintf(g_last_key, sizeof g_last_key, "%s", a->idempotency_key);
    snprintf(g_last_artifact, sizeof g_last_artifact, "%s", a->artifact ? a->artifact : "");
    prov_op *op = prov_op_new(t, cb, ud, NULL, NULL);
    prov_op_succeed_later(op, deployment(t, a->branch ? a->branch : "build", "queued"));
    return op;
}

static prov_op *fake_publish(prov_target *t, const char *source, const char *notes,
                             prov_result_cb cb, void *ud, prov_error *err)
{
    (void)notes;
    (void)err;
    prov_op *op = prov_op_new(t, cb, ud, NULL, NULL);
    prov_op_succeed_later(op, json_pack("{s:{s:s, s:s, s:s}}", "request", "id", "req-1",
                                        "status", "pending", "webApprovalUrl",
                                        "http://127.0.0.1:8788/approve/req-1"));
    (void)source;
    return op;
}

static prov_op *fake_get(prov_target *t, const char *id, prov_result_cb cb, void *ud,
                         prov_error *err)
{
    if (strcmp(id, "missing") == 0) {
        prov_error_set(err, "deployment_not_found", 404, false, "no deployment %s", id);
        return NULL;
    }
    prov_op *op = prov_op_new(t, cb, ud, NULL, NULL);
    prov_op_succeed_later(op, deployment(t, id, "ready"));
    return op;
}

static prov_op *fake_list(prov_target *t, const prov_list_args *a, prov_result_cb cb, void *ud,
                          prov_error *err)
{
    (void)err;
    prov_op *op = prov_op_new(t, cb, ud, NULL, NULL);
    json_t *deps = json_array();
    for (int i = 0; i < a->limit && i < 3; i++)
        json_array_append_new(deps, deployment(t, "d", "ready"));
    prov_op_succeed_later(op, json_pack("{s:o, s:n}", "deployments", deps, "nextCursor"));
    return op;
}

static int fake_spec(prov_target *t, enum prov_stream_kind kind, const char *id,
                     prov_stream_spec *spec, prov_error *err)
{
    (void)err;
    memset(spec, 0, sizeof *spec);
    snprintf(spec->url, sizeof spec->url, "%s/events/%s?key=%s",
             cfg_str(t->cfg, "baseUrl", ""), kind == PROV_STREAM_LOGS && !id ? "logs" : id,
             g_stream_key);
    spec->resume = PROV_RESUME_LIVE;
    spec->reconnect = false;
    return 0;
}

static double num_or(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : -1;
}

static int fake_parse(prov_target *t, void *state, enum prov_stream_kind kind,
                      const sse_event *sev, prov_emit_fn emit, void *sink, prov_error *err)
{
    (void)t;
    (void)state;
    (void)kind;
    json_t *d = json_loadb(sev->data, sev->data_len, 0, NULL);
    if (!d)
        return PROV_PARSE_IGNORED;
    const char *k = json_string_value(json_object_get(d, "kind"));
    int rc = PROV_PARSE_CONTINUE;
    prov_event e;
    memset(&e, 0, sizeof e);
    e.status = PROV_ST_UNKNOWN;
    e.progress = num_or(d, "progress");
    e.total = num_or(d, "total");
    e.url = json_string_value(json_object_get(d, "url"));
    if (strcmp(k, "status") == 0) {
        e.kind = PROV_EV_STATUS;
        e.provider_status = json_string_value(json_object_get(d, "status"));
        e.status = prov_status_parse(e.provider_status);
        emit(sink, &e);
        if (prov_status_terminal(e.status))
            rc = PROV_PARSE_END;
    } else if (strcmp(k, "step") == 0) {
        e.kind = PROV_EV_STEP;
        e.step = json_string_value(json_object_get(d, "step"));
        emit(sink, &e);
    } else if (strcmp(k, "log") == 0) {
        json_t *arr = json_object_get(d, "lines");
        size_t n = json_array_size(arr);
        prov_log_line *ls = calloc(n ? n : 1, sizeof *ls);
        for (size_t i = 0; i < n; i++) {
            json_t *l = json_array_get(arr, i);
            ls[i].text = json_string_value(json_object_get(l, "text"));
            ls[i].len = strlen(ls[i].text);
            ls[i].level = json_string_value(json_object_get(l, "level"));
            ls[i].ts = json_string_value(json_object_get(l, "ts"));
            ls[i].source = json_string_value(json_object_get(l, "source"));
        }
        e.kind = PROV_EV_LOG;
        e.lines = ls;
        e.nlines = n;
        emit(sink, &e);
        free(ls);
    } else if (strcmp(k, "error") == 0) {
        prov_error_set(err, json_string_value(json_object_get(d, "code")), 0, false, "%s",
                       json_string_value(json_object_get(d, "message")));
        rc = -1;
    } else if (strcmp(k, "done") == 0) {
        rc = PROV_PARSE_END;
    }
    json_decref(d);
    return rc;
}

#define ALL_CAPS                                                                            \
    (PROV_CAP_CREATE_PREVIEW | PROV_CAP_REQUEST_PUBLISH | PROV_CAP_STREAM_EVENTS |          \
     PROV_CAP_TAIL_LOGS | PROV_CAP_GET | PROV_CAP_LIST)

static const struct provider fake_ops = {
    .name = "fakeprov", .display_name = "FakeProv", .caps = ALL_CAPS,
    .local_records_only = true, .credentials_ok = fake_creds, .unsupported_hint = fake_hint,
    .create_preview = fake_create, .request_publish = fake_publish, .get_deployment = fake_get,
    .list_deployments = fake_list, .stream_spec = fake_spec, .stream_parse = fake_parse,
};

/* Like Showly: native idempotency, build logs only. */
static const struct provider showlike_ops = {
    .name = "showlike", .display_name = "ShowLike", .caps = ALL_CAPS,
    .logs_need_deployment = true, .native_idempotency = true, .credentials_ok = fake_creds,
    .create_preview = fake_create, .request_publish = fake_publish, .get_deployment = fake_get,
    .list_deployments = fake_list, .stream_spec = fake_spec, .stream_parse = fake_parse,
};

/* Like Bluelink: no logs. */
static const struct provider nologs_ops = {
    .name = "nologs", .display_name = "NoLogs", .caps = ALL_CAPS & ~PROV_CAP_TAIL_LOGS,
    .credentials_ok = fake_creds, .unsupported_hint = fake_hint,
    .create_preview = fake_create, .request_publish = fake_publish, .get_deployment = fake_get,
    .list_deployments = fake_list, .stream_spec = fake_spec, .stream_parse = fake_parse,
};

/* ------------------------------------------------------------- server */

static int group_setup(void **state)
{
    (void)state;
    setenv("no_proxy", "127.0.0.1,localhost", 1);
    setenv("NO_PROXY", "127.0.0.1,localhost", 1);
    unsetenv("LOCKED_TOKEN_FOR_TEST");
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return -1;
    signal(SIGPIPE, SIG_IGN);

    if (pyserver_start(&g_server, "unit/tools/sse_test_server.py") != 0)
        return -1;
    snprintf(g_base, sizeof g_base, "http://127.0.0.1:%d", g_server.port);

    snprintf(g_root, sizeof g_root, "/tmp/dmcp-tools-XXXXXX");
    if (!mkdtemp(g_root))
        return -1;
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/app.zip", g_root);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs("PK", f);
    fclose(f);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    pyserver_stop(&g_server);
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/app.zip", g_root);
    unlink(path);
    rmdir(g_root);
    tool_registry_cleanup();
    curl_global_cleanup();
    return 0;
}

/* Synchronous GET of the server's stream counters (blocking is fine here). */
static size_t collect(char *p, size_t sz, size_t n, void *ud)
{
    char *buf = ud;
    size_t have = strlen(buf), add = sz * n;
    if (have + add < 256) {
        memcpy(buf + have, p, add);
        buf[have + add] = '\0';
    }
    return sz * n;
}

static int open_streams(const char *key)
{
    char url[256], body[256] = "";
    snprintf(url, sizeof url, "%s/stats?key=%s", g_base, key);
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_cleanup(c);
    assert_int_equal(rc, CURLE_OK);
    json_t *j = json_loads(body, 0, NULL);
    int open = (int)json_integer_value(json_object_get(j, "open"));
    json_decref(j);
    return open;
}

/* ------------------------------------------------------------ harness */

typedef struct env {
    uv_loop_t loop;
    uv_timer_t ticker;
    mcp_server srv;
    cfg *config;
    prov_target targets[4];
    mcp_session *session;
    json_t *out;               /* every message the session sent, in order */
} env;

static int capture(void *io, const char *msg, size_t len)
{
    env *e = io;
    json_t *j = json_loadb(msg, len, 0, NULL);
    assert_non_null(j);
    json_array_append_new(e->out, j);
    return 0;
}

static const mcp_transport capture_tp = {.name = "test", .send = capture};

static void tick_cb(uv_timer_t *t) { (void)t; }

static void send_msg(env *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void send_msg(env *e, const char *fmt, ...)
{
    char buf[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    mcp_session_handle(e->session, buf, strlen(buf));
}

static int setup(void **state)
{
    env *e = calloc(1, sizeof *e);
    assert_int_equal(uv_loop_init(&e->loop), 0);
    uv_timer_init(&e->loop, &e->ticker);
    uv_timer_start(&e->ticker, tick_cb, TICK_MS, TICK_MS);
    char text[PATH_MAX + 2048], err[512];
    snprintf(text, sizeof text,
             "{\"targets\":{"
             "\"fake\":{\"provider\":\"fakeprov\",\"baseUrl\":\"%s\",\"artifactRoot\":\"%s\"},"
             "\"show\":{\"provider\":\"showlike\",\"baseUrl\":\"%s\"},"
             "\"infra\":{\"provider\":\"nologs\",\"baseUrl\":\"%s\"},"
             "\"locked\":{\"provider\":\"fakeprov\",\"baseUrl\":\"%s\","
             "\"tokenEnv\":\"LOCKED_TOKEN_FOR_TEST\"}},"
             "\"defaultTarget\":\"fake\"}",
             g_base, g_root, g_base, g_base, g_base);
    if (cfg_parse(text, strlen(text), "test.json", NULL, &e->config, err, sizeof err) != 0)
        fail_msg("config: %s", err);
    e->srv.loop = &e->loop;
    e->srv.config = e->config;
    e->srv.http = http_client_new(&e->loop);
    assert_non_null(e->srv.http);
    const struct provider *ops[] = {&fake_ops, &showlike_ops, &nologs_ops, &fake_ops};
    for (size_t i = 0; i < 4; i++) {
        e->targets[i].cfg = &e->config->targets[i];
        e->targets[i].ops = ops[i];
        e->targets[i].http = e->srv.http;
        e->targets[i].loop = &e->loop;
    }
    e->srv.targets = e->targets;
    e->srv.ntargets = 4;
    e->srv.tools_page_size = 100;
    e->out = json_array();
    e->session = mcp_session_new(&e->srv, &capture_tp, e);
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":\"init\",\"method\":\"initialize\",\"params\":"
                "{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},\"clientInfo\":"
                "{\"name\":\"t\",\"version\":\"1\"}}}");
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}");
    json_array_clear(e->out);
    g_creates = 0;
    snprintf(g_stream_key, sizeof g_stream_key, "k%d", rand());
    *state = e;
    return 0;
}

static void on_close(uv_handle_t *h) { (void)h; }

static int teardown(void **state)
{
    env *e = *state;
    mcp_session_close(e->session);
    http_client_destroy(e->srv.http);
    uv_close((uv_handle_t *)&e->ticker, on_close);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&e->loop), 0);
    cfg_free(e->config);
    json_decref(e->out);
    free(e);
    return 0;
}

static json_t *find_response(env *e, json_int_t id, size_t *index)
{
    size_t i;
    json_t *m;
    json_array_foreach(e->out, i, m) {
        json_t *mid = json_object_get(m, "id");
        if (json_is_integer(mid) && json_integer_value(mid) == id &&
            (json_object_get(m, "result") || json_object_get(m, "error"))) {
            if (index)
                *index = i;
            return m;
        }
    }
    return NULL;
}

static void run_for(env *e, int ms)
{
    uint64_t end = uv_now(&e->loop) + (uint64_t)ms;
    while (uv_now(&e->loop) < end)
        uv_run(&e->loop, UV_RUN_ONCE);
}

static json_t *wait_response(env *e, json_int_t id, size_t *index)
{
    uint64_t end = uv_now(&e->loop) + WAIT_MS;
    json_t *r;
    while (!(r = find_response(e, id, index)) && uv_now(&e->loop) < end)
        uv_run(&e->loop, UV_RUN_ONCE);
    if (!r)
        fail_msg("no response for id %lld", (long long)id);
    return r;
}

static void call(env *e, json_int_t id, const char *tool, const char *args, bool progress)
{
    char meta[64] = "";
    if (progress)
        snprintf(meta, sizeof meta, ",\"_meta\":{\"progressToken\":\"p%lld\"}", (long long)id);
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":%lld,\"method\":\"tools/call\",\"params\":"
                "{\"name\":\"%s\",\"arguments\":%s%s}}",
             (long long)id, tool, args, meta);
}

/* Every result, success or isError, must pass the tool's outputSchema, as
 * the TypeScript SDK client checks it. */
static void assert_matches_output_schema(const char *tool, json_t *result)
{
    char err[512];
    json_t *sc = json_object_get(result, "structuredContent");
    assert_non_null(sc);
    if (tool_validate_args(tool_output_schema(tool_find(tool)), sc, err, sizeof err) != 0)
        fail_msg("%s result does not match its outputSchema: %s", tool, err);
}

/* Calls and waits; returns the result object (borrowed from e->out). */
static json_t *call_wait(env *e, json_int_t id, const char *tool, const char *args)
{
    call(e, id, tool, args, false);
    json_t *r = json_object_get(wait_response(e, id, NULL), "result");
    assert_non_null(r);
    assert_matches_output_schema(tool, r);
    return r;
}

static json_t *sc_of(json_t *result) { return json_object_get(result, "structuredContent"); }

static const char *error_code(json_t *result)
{
    assert_true(json_is_true(json_object_get(result, "isError")));
    return json_string_value(json_object_get(json_object_get(sc_of(result), "error"), "code"));
}

static const char *error_message(json_t *result)
{
    return json_string_value(json_object_get(json_object_get(sc_of(result), "error"),
                                             "message"));
}

static bool is_method(json_t *m, const char *method)
{
    const char *s = json_string_value(json_object_get(m, "method"));
    return s && strcmp(s, method) == 0;
}

/* The text block must be the structuredContent, serialized. */
static void assert_text_matches(json_t *result)
{
    json_t *text = json_object_get(json_array_get(json_object_get(result, "content"), 0), "text");
    json_t *parsed = json_loads(json_string_value(text), 0, NULL);
    if (!json_is_true(json_object_get(result, "isError")))
        assert_true(json_equal(parsed, sc_of(result)));
    json_decref(parsed);
}

/* -------------------------------------------------------------- tests */

static void test_list_targets(void **state)
{
    env *e = *state;
    json_t *r = call_wait(e, 1, "list_targets", "{}");
    assert_text_matches(r);
    json_t *ts = json_object_get(sc_of(r), "targets");
    assert_int_equal(json_array_size(ts), 4);
    json_t *infra = json_array_get(ts, 2), *locked = json_array_get(ts, 3);
    assert_string_equal(json_string_value(json_object_get(infra, "provider")), "nologs");
    char *caps = json_dumps(json_object_get(infra, "capabilities"), JSON_COMPACT);
    assert_string_equal(caps, "[\"create_preview\",\"request_publish\",\"stream_events\","
                              "\"get_deployment\",\"list_deployments\"]");
    free(caps);
    assert_true(json_is_true(json_object_get(infra, "ready")));
    assert_null(json_object_get(infra, "problem"));
    assert_true(json_is_false(json_object_get(locked, "ready")));
    assert_non_null(strstr(json_string_value(json_object_get(locked, "problem")),
                           "LOCKED_TOKEN_FOR_TEST"));
    assert_null(json_object_get(sc_of(r), "hint"));
}

static void test_no_targets(void **state)
{
    env *e = *state;
    e->srv.ntargets = 0;   /* as when no config file exists */
    json_t *r = call_wait(e, 1, "list_targets", "{}");
    assert_null(json_object_get(r, "isError"));
    assert_int_equal(json_array_size(json_object_get(sc_of(r), "targets")), 0);
    const char *hint = json_string_value(json_object_get(sc_of(r), "hint"));
    assert_non_null(hint);
    assert_non_null(strstr(hint, "--config"));
    assert_non_null(strstr(hint, "DEPLOY_MCP_CONFIG"));
    assert_non_null(strstr(hint, "./deploy-mcp.json"));
    assert_non_null(strstr(hint, "~/.config/deploy-mcp/config.json"));
    assert_non_null(strstr(hint, "SHOWLY_TOKEN"));
    json_t *content = json_object_get(r, "content");
    assert_int_equal(json_array_size(content), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(content, 1), "text")),
                        hint);
    assert_text_matches(r);

    r = call_wait(e, 2, "get_deployment", "{\"deploymentId\":\"x\"}");
    assert_string_equal(error_code(r), "no_target");
    assert_true(strlen(error_message(r)) > 10);
    e->srv.ntargets = 4;
}

static void test_dispatch_errors(void **state)
{
    env *e = *state;
    call(e, 1, "nope", "{}", false);
    json_t *m = wait_response(e, 1, NULL);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(m, "error"), "code")),
                     -32602);
    assert_string_equal(json_string_value(json_object_get(json_object_get(m, "error"),
                                                          "message")),
                        "Unknown tool: nope");

    json_t *r = call_wait(e, 2, "stream_events", "{\"deploymentId\":\"x\",\"maxSeconds\":0}");
    assert_string_equal(error_code(r), "invalid_arguments");
    assert_string_equal(error_message(r),
                        "argument \"maxSeconds\" must be an integer between 1 and 3600");
    assert_true(json_is_null(json_object_get(json_object_get(sc_of(r), "error"), "provider")));
    assert_true(json_is_false(json_object_get(json_object_get(sc_of(r), "error"), "retryable")));
    assert_null(json_object_get(json_object_get(sc_of(r), "error"), "httpStatus"));

    r = call_wait(e, 3, "get_deployment", "{\"deploymentId\":\"x\",\"target\":\"nowhere\"}");
    assert_string_equal(error_code(r), "unknown_target");

    r = call_wait(e, 4, "tail_logs", "{\"target\":\"infra\"}");
    assert_string_equal(error_code(r), "unsupported");
    assert_non_null(strstr(error_message(r), "NoLogs"));
    assert_non_null(strstr(error_message(r), "stream_events"));
    assert_string_equal(json_string_value(json_object_get(json_object_get(sc_of(r), "error"),
                                                          "provider")),
                        "nologs");

    r = call_wait(e, 5, "get_deployment", "{\"deploymentId\":\"x\",\"target\":\"locked\"}");
    assert_string_equal(error_code(r), "missing_credentials");
    assert_non_null(strstr(error_message(r), "LOCKED_TOKEN_FOR_TEST"));

    r = call_wait(e, 6, "tail_logs", "{\"target\":\"show\"}");
    assert_string_equal(error_code(r), "deployment_id_required");
    assert_non_null(strstr(error_message(r), "ShowLike"));

    r = call_wait(e, 7, "get_deployment", "{\"deploymentId\":\"missing\"}");
    assert_string_equal(error_code(r), "deployment_not_found");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(sc_of(r), "error"),
                                                        "httpStatus")),
                     404);
    const char *text = json_string_value(
        json_object_get(json_array_get(json_object_get(r, "content"), 0), "text"));
    assert_non_null(strstr(text, "fakeprov error deployment_not_found (HTTP 404)"));
    assert_non_null(strstr(text, "Not retryable"));

    r = call_wait(e, 8, "create_preview", "{\"idempotencyKey\":\"has space\"}");
    assert_string_equal(error_code(r), "invalid_arguments");
    assert_int_equal(g_creates, 0);
}

/* Collects notifications before index `upto`: every line of every
 * notifications/message (in order), and progress values. */
typedef struct seen {
    json_t *lines;          /* strings (build) or objects (tail) */
    int messages;
    double progress[4096];
    double totals[4096];
    char last_progress_msg[512];
    int nprogress;
} seen;

static void collect_notifications(env *e, size_t upto, seen *s)
{
    memset(s, 0, sizeof *s);
    s->lines = json_array();
    for (size_t i = 0; i < upto; i++) {
        json_t *m = json_array_get(e->out, i);
        json_t *p = json_object_get(m, "params");
        if (is_method(m, "notifications/message")) {
            json_t *lines = json_object_get(json_object_get(p, "data"), "lines");
            if (lines) {
                s->messages++;
                json_array_extend(s->lines, lines);
                assert_string_equal(json_string_value(json_object_get(p, "logger")),
                                    "deploy-mcp/fake");
            }
        } else if (is_method(m, "notifications/progress") && s->nprogress < 4096) {
            s->progress[s->nprogress] = json_number_value(json_object_get(p, "progress"));
            json_t *tot = json_object_get(p, "total");
            s->totals[s->nprogress] = tot ? json_number_value(tot) : -1;
            snprintf(s->last_progress_msg, sizeof s->last_progress_msg, "%s",
                     json_string_value(json_object_get(p, "message")));
            s->nprogress++;
        }
    }
    for (int i = 1; i < s->nprogress; i++)
        assert_true(s->progress[i] > s->progress[i - 1]);
}

static void assert_nothing_after(env *e, size_t index)
{
    run_for(e, 250);
    assert_int_equal(json_array_size(e->out), index + 1);
}

static void test_stream_build(void **state)
{
    env *e = *state;
    call(e, 1, "stream_events", "{\"deploymentId\":\"build\"}", true);
    size_t idx;
    json_t *r = json_object_get(wait_response(e, 1, &idx), "result");
    assert_matches_output_schema("stream_events", r);
    assert_text_matches(r);
    json_t *sc = sc_of(r);
    assert_string_equal(json_string_value(json_object_get(sc, "deploymentId")), "build");
    assert_string_equal(json_string_value(json_object_get(sc, "status")), "ready");
    assert_true(json_is_true(json_object_get(sc, "terminal")));
    assert_string_equal(json_string_value(json_object_get(sc, "url")), "https://p.example");
    assert_int_equal(json_integer_value(json_object_get(sc, "eventCount")), 5);
    assert_int_equal(json_integer_value(json_object_get(sc, "logLineCount")), 5);
    char *last = json_dumps(json_object_get(sc, "lastLines"), JSON_COMPACT);
    assert_string_equal(last, "[\"line 1\",\"warn 1\",\"line 2\",\"debug x\",\"line 3\"]");
    free(last);
    assert_null(json_object_get(sc, "failure"));
    assert_true(strlen(json_string_value(json_object_get(sc, "cursor"))) > 0);
    assert_true(json_is_integer(json_object_get(sc, "durationMs")));

    seen s;
    collect_notifications(e, idx, &s);
    /* debug lines are below the default logging level (info). */
    char *lines = json_dumps(s.lines, JSON_COMPACT);
    assert_string_equal(lines, "[\"line 1\",\"warn 1\",\"line 2\",\"line 3\"]");
    free(lines);
    assert_true(s.nprogress >= 3);
    assert_string_equal(s.last_progress_msg, "ready · https://p.example");
    /* warn is mapped to warning, in its own notification (order kept). */
    bool saw_warning = false;
    for (size_t i = 0; i < idx; i++) {
        json_t *p = json_object_get(json_array_get(e->out, i), "params");
        const char *lv = json_string_value(json_object_get(p, "level"));
        if (lv && strcmp(lv, "warning") == 0) {
            saw_warning = true;
            char *d = json_dumps(json_object_get(p, "data"), JSON_COMPACT);
            assert_string_equal(d, "{\"deploymentId\":\"build\",\"lines\":[\"warn 1\"]}");
            free(d);
        }
    }
    assert_true(saw_warning);
    json_decref(s.lines);
    assert_nothing_after(e, idx);
}

static void test_stream_debug_level_and_no_logs(void **state)
{
    env *e = *state;
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"id\":90,\"method\":\"logging/setLevel\",\"params\":"
                "{\"level\":\"debug\"}}");
    call(e, 1, "stream_events", "{\"deploymentId\":\"build\"}", false);
    size_t idx;
    wait_response(e, 1, &idx);
    seen s;
    collect_notifications(e, idx, &s);
    assert_int_equal(json_array_size(s.lines), 5);
    assert_int_equal(s.nprogress, 0);   /* no progress token, no progress */
    json_decref(s.lines);

    json_array_clear(e->out);
    call(e, 2, "stream_events", "{\"deploymentId\":\"build\",\"includeLogs\":false}", true);
    json_t *r = json_object_get(wait_response(e, 2, &idx), "result");
    assert_matches_output_schema("stream_events", r);
    collect_notifications(e, idx, &s);
    assert_int_equal(json_array_size(s.lines), 0);
    assert_true(s.nprogress >= 3);
    json_t *sc = sc_of(r);
    assert_int_equal(json_array_size(json_object_get(sc, "lastLines")), 0);
    assert_int_equal(json_integer_value(json_object_get(sc, "logLineCount")), 5);
    json_decref(s.lines);
}

static void test_stream_percent(void **state)
{
    env *e = *state;
    call(e, 1, "stream_events", "{\"deploymentId\":\"pct\"}", true);
    size_t idx;
    wait_response(e, 1, &idx);
    seen s;
    collect_notifications(e, idx, &s);
    assert_int_equal(s.nprogress, 4);
    assert_true(s.progress[0] == 1 && s.totals[0] < 0);            /* queued: a count */
    assert_true(s.progress[1] == 10 && s.totals[1] == 100);
    assert_true(s.progress[2] == 50 && s.totals[2] == 100);
    assert_true(s.progress[3] == 100 && s.totals[3] == 100);
    /* The repeated 10% travelled as a log message. */
    bool saw = false;
    for (size_t i = 0; i < idx; i++) {
        json_t *m = json_array_get(e->out, i);
        json_t *d = json_object_get(json_object_get(m, "params"), "data");
        const char *msg = json_string_value(json_object_get(d, "message"));
        if (is_method(m, "notifications/message") && msg) {
            assert_string_equal(msg, "queued · step downloading 10%");
            saw = true;
        }
    }
    assert_true(saw);
    json_decref(s.lines);
}

static void test_stream_burst(void **state)
{
    env *e = *state;
    call(e, 1, "stream_events", "{\"deploymentId\":\"burst\"}", true);
    size_t idx;
    json_t *r = json_object_get(wait_response(e, 1, &idx), "result");
    assert_matches_output_schema("stream_events", r);
    json_t *sc = sc_of(r);
    assert_int_equal(json_integer_value(json_object_get(sc, "logLineCount")), 20000);
    assert_int_equal(json_integer_value(json_object_get(sc, "eventCount")), 201);
    json_t *last = json_object_get(sc, "lastLines");
    assert_int_equal(json_array_size(last), 50);
    assert_string_equal(json_string_value(json_array_get(last, 0)), "L19950");
    assert_string_equal(json_string_value(json_array_get(last, 49)), "L19999");
    seen s;
    collect_notifications(e, idx, &s);
    assert_int_equal(json_array_size(s.lines), 20000);
    for (size_t i = 0; i < 20000; i++) {
        char want[16];
        snprintf(want, sizeof want, "L%zu", i);
        assert_string_equal(json_string_value(json_array_get(s.lines, i)), want);
    }
    /* Chunked: far fewer notifications than lines or even upstream events. */
    assert_true(s.messages <= 100);
    assert_true(s.nprogress <= 100);
    json_decref(s.lines);
}

static void test_stream_timeout_and_resume(void **state)
{
    env *e = *state;
    call(e, 1, "stream_events", "{\"deploymentId\":\"slow\",\"maxSeconds\":1}", false);
    size_t idx;
    json_t *r = json_object_get(wait_response(e, 1, &idx), "result");
    assert_matches_output_schema("stream_events", r);
    assert_null(json_object_get(r, "isError"));
    json_t *sc = sc_of(r);
    assert_true(json_is_false(json_object_get(sc, "terminal")));
    assert_string_equal(json_string_value(json_object_get(sc, "status")), "building");
    json_int_t ms = json_integer_value(json_object_get(sc, "durationMs"));
    assert_true(ms >= 900 && ms < 5000);
    const char *cursor = json_string_value(json_object_get(sc, "cursor"));
    assert_true(strlen(cursor) > 0);
    run_for(e, 300);
    assert_int_equal(open_streams(g_stream_key), 0);   /* upstream closed */

    /* A cursor from another deployment is refused with a usable message. */
    char args[4096];
    snprintf(args, sizeof args, "{\"deploymentId\":\"build\",\"cursor\":\"%s\"}", cursor);
    r = call_wait(e, 2, "stream_events", args);
    assert_string_equal(error_code(r), "invalid_cursor");
}

static void test_cancel_closes_upstream(void **state)
{
    env *e = *state;
    call(e, 1, "stream_events", "{\"deploymentId\":\"slow\"}", true);
    call(e, 2, "tail_logs", "{\"seconds\":60}", true);
    run_for(e, 400);
    assert_int_equal(open_streams(g_stream_key), 2);
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":"
                "{\"requestId\":1}}");
    send_msg(e, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":"
                "{\"requestId\":2}}");
    size_t before = json_array_size(e->out);
    run_for(e, 400);
    assert_int_equal(json_array_size(e->out), before);   /* no response, nothing relayed */
    assert_null(find_response(e, 1, NULL));
    assert_null(find_response(e, 2, NULL));
    assert_int_equal(open_streams(g_stream_key), 0);
    assert_int_equal(mcp_session_inflight(e->session), 0);
}

static void test_session_close_mid_stream(void **state)
{
    env *e = *state;
    call(e, 1, "stream_events", "{\"deploymentId\":\"slow\"}", true);
    call(e, 2, "create_preview", "{\"branch\":\"slow\",\"wait\":true}", true);
    run_for(e, 300);
    /* teardown closes the session with both in flight: must be clean. */
}

static void test_stream_failure(void **state)
{
    env *e = *state;
    json_t *r = call_wait(e, 1, "stream_events", "{\"deploymentId\":\"fail\"}");
    assert_string_equal(error_code(r), "bundle_failed");
    assert_non_null(strstr(error_message(r), "bundle extraction failed"));
    assert_non_null(strstr(error_message(r), "cursor"));
}

static void test_stream_end_without_status(void **state)
{
    env *e = *state;
    json_t *r = call_wait(e, 1, "stream_events", "{\"deploymentId\":\"donly\"}");
    json_t *sc = sc_of(r);
    /* The stream ended without saying how: the deployment was looked up. */
    assert_string_equal(json_string_value(json_object_get(sc, "status")), "ready");
    assert_true(json_is_true(json_object_get(sc, "terminal")));
    assert_int_equal(json_integer_value(json_object_get(sc, "logLineCount")), 2);
}

static void test_create_preview_idempotency(void **state)
{
    env *e = *state;
    json_t *a = call_wait(e, 1, "create_preview", "{\"branch\":\"b1\",\"message\":\"m\"}");
    assert_text_matches(a);
    const char *key1 = json_string_value(json_object_get(sc_of(a), "idempotencyKey"));
    assert_int_equal(strlen(key1), 36);
    assert_string_equal(g_last_key, key1);
    assert_int_equal(g_creates, 1);
    assert_null(json_object_get(sc_of(a), "reused"));
    assert_string_equal(json_string_value(json_object_get(json_object_get(sc_of(a),
                                                                          "deployment"),
                                                          "id")),
                        "b1");

    json_t *b = call_wait(e, 2, "create_preview", "{\"branch\":\"b1\",\"message\":\"m\"}");
    assert_string_equal(json_string_value(json_object_get(sc_of(b), "idempotencyKey")), key1);
    assert_int_equal(g_creates, 1);   /* no second create */
    assert_true(json_is_true(json_object_get(sc_of(b), "reused")));
    assert_string_equal(json_string_value(json_object_get(json_object_get(sc_of(b),
                                                                          "deployment"),
                                                          "id")),
                        "b1");
    assert_non_null(json_object_get(sc_of(b), "note"));

    json_t *c = call_wait(e, 3, "create_preview", "{\"branch\":\"b2\",\"message\":\"m\"}");
    assert_string_not_equal(json_string_value(json_object_get(sc_of(c), "idempotencyKey")),
                            key1);
    assert_int_equal(g_creates, 2);

    /* Two identical calls in flight at once: one create. */
    call(e, 4, "create_preview", "{\"branch\":\"b3\"}", false);
    call(e, 5, "create_preview", "{\"branch\":\"b3\"}", false);
    json_t *r4 = json_object_get(wait_response(e, 4, NULL), "result");
    assert_matches_output_schema("create_preview", r4);
    json_t *r5 = json_object_get(wait_response(e, 5, NULL), "result");
    assert_matches_output_schema("create_preview", r5);
    assert_int_equal(g_creates, 3);
    assert_string_equal(json_string_value(json_object_get(sc_of(r4), "idempotencyKey")),
                        json_string_value(json_object_get(sc_of(r5), "idempotencyKey")));

    /* The caller's key is used as is; reusing it with other arguments is a
     * conflict, as Showly answers. */
    json_t *k = call_wait(e, 6, "create_preview", "{\"branch\":\"b4\",\"idempotencyKey\":\"k-1\"}");
    assert_string_equal(json_string_value(json_object_get(sc_of(k), "idempotencyKey")), "k-1");
    assert_string_equal(g_last_key, "k-1");
    json_t *x = call_wait(e, 7, "create_preview", "{\"branch\":\"b5\",\"idempotencyKey\":\"k-1\"}");
    assert_string_equal(error_code(x), "idempotency_conflict");
    assert_int_equal(g_creates, 4);

    /* Native idempotency: the platform always gets the call, same key. */
    json_t *n1 = call_wait(e, 8, "create_preview", "{\"branch\":\"b1\",\"target\":\"show\"}");
    json_t *n2 = call_wait(e, 9, "create_preview", "{\"branch\":\"b1\",\"target\":\"show\"}");
    assert_int_equal(g_creates, 6);
    assert_string_equal(json_string_value(json_object_get(sc_of(n1), "idempotencyKey")),
                        json_string_value(json_object_get(sc_of(n2), "idempotencyKey")));
    assert_string_not_equal(json_string_value(json_object_get(sc_of(n1), "idempotencyKey")),
                            key1);   /* the target is part of the key */
}

static void test_create_preview_artifact(void **state)
{
    env *e = *state;
    json_t *r = call_wait(e, 1, "create_preview", "{\"artifact\":\"app.zip\"}");
    assert_null(json_object_get(r, "isError"));
    char want[PATH_MAX + 16];
    char *real = realpath(g_root, NULL);
    snprintf(want, sizeof want, "%s/app.zip", real);
    free(real);
    assert_string_equal(g_last_artifact, want);

    r = call_wait(e, 2, "create_preview", "{\"artifact\":\"/etc/passwd\"}");
    assert_string_equal(error_code(r), "artifact_outside_root");
    r = call_wait(e, 3, "create_preview", "{\"artifact\":\"../../etc/passwd\"}");
    assert_string_equal(error_code(r), "artifact_outside_root");
    r = call_wait(e, 4, "create_preview", "{\"artifact\":\"missing.zip\"}");
    assert_string_equal(error_code(r), "artifact_not_found");
    assert_int_equal(g_creates, 1);
}

static void test_create_preview_wait(void **state)
{
    env *e = *state;
    call(e, 1, "create_preview", "{\"branch\":\"build\",\"wait\":true,\"maxSeconds\":30}", true);
    size_t idx;
    json_t *r = json_object_get(wait_response(e, 1, &idx), "result");
    assert_matches_output_schema("create_preview", r);
    assert_text_matches(r);
    json_t *sc = sc_of(r);
    json_t *dep = json_object_get(sc, "deployment");
    assert_string_equal(json_string_value(json_object_get(dep, "status")), "ready");
    assert_string_equal(json_string_value(json_object_get(dep, "url")), "https://p.example");
    json_t *stream = json_object_get(sc, "stream");
    assert_true(json_is_true(json_object_get(stream, "terminal")));
    assert_int_equal(json_integer_value(json_object_get(stream, "eventCount")), 5);
    seen s;
    collect_notifications(e, idx, &s);
    assert_int_equal(json_array_size(s.lines), 4);
    json_decref(s.lines);
    assert_nothing_after(e, idx);
}

static void test_tail_logs(void **state)
{
    env *e = *state;
    call(e, 1, "tail_logs", "{\"seconds\":1,\"level\":\"info\",\"filter\":\"GET\","
                            "\"maxLines\":2}",
         false);
    size_t idx;
    json_t *r = json_object_get(wait_response(e, 1, &idx), "result");
    assert_matches_output_schema("tail_logs", r);
    assert_text_matches(r);
    json_t *sc = sc_of(r);
    char *lines = json_dumps(json_object_get(sc, "lines"), JSON_COMPACT);
    assert_string_equal(lines, "[{\"ts\":\"2025-01-01T00:00:00Z\",\"level\":\"info\",\"text\":"
                               "\"GET / 200\",\"source\":\"request\"},{\"level\":\"error\","
                               "\"text\":\"GET /x 500\"}]");
    free(lines);
    assert_int_equal(json_integer_value(json_object_get(sc, "count")), 2);
    assert_int_equal(json_integer_value(json_object_get(sc, "dropped")), 1);
    assert_non_null(json_object_get(sc, "cursor"));
    seen s;
    collect_notifications(e, idx, &s);
    /* The dropped line was still relayed; filtered lines were not. */
    assert_int_equal(json_array_size(s.lines), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(s.lines, 2), "text")),
                        "warn GET slow");
    json_decref(s.lines);
}

static void test_get_list_publish(void **state)
{
    env *e = *state;
    json_t *r = call_wait(e, 1, "get_deployment", "{\"deploymentId\":\"d9\"}");
    assert_text_matches(r);
    assert_string_equal(json_string_value(json_object_get(json_object_get(sc_of(r),
                                                                          "deployment"),
                                                          "id")),
                        "d9");
    assert_non_null(strstr(json_string_value(json_object_get(sc_of(r), "note")), "FakeProv"));

    r = call_wait(e, 2, "list_deployments", "{\"limit\":2}");
    assert_text_matches(r);
    assert_int_equal(json_array_size(json_object_get(sc_of(r), "deployments")), 2);
    assert_null(json_object_get(sc_of(r), "nextCursor"));   /* null dropped */
    assert_non_null(json_object_get(sc_of(r), "note"));

    r = call_wait(e, 3, "get_deployment", "{\"deploymentId\":\"d9\",\"target\":\"infra\"}");
    assert_null(json_object_get(sc_of(r), "note"));

    r = call_wait(e, 4, "request_publish", "{\"sourceDeploymentId\":\"d1\",\"notes\":\"n\"}");
    assert_text_matches(r);
    json_t *req = json_object_get(sc_of(r), "request");
    assert_string_equal(json_string_value(json_object_get(req, "id")), "req-1");
    assert_string_equal(json_string_value(json_object_get(req, "sourceDeploymentId")), "d1");
    assert_string_equal(json_string_value(json_object_get(req, "target")), "fake");
    assert_string_equal(json_string_value(json_object_get(req, "provider")), "fakeprov");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_list_targets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_targets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dispatch_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_build, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_debug_level_and_no_logs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_percent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_burst, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_timeout_and_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_closes_upstream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_close_mid_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_end_without_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_preview_idempotency, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_preview_artifact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_preview_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tail_logs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_list_publish, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

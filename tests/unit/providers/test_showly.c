/* test_showly.c — the Showly adapter's parts that need no network
 * (providers/showly.c through its `struct provider` table): configuration
 * checks, credentials, the stream connection spec, the SSE event parser
 * (PROVIDERS.md "Showly": `event: status` / `event: log`), the error mapping
 * and the argument errors that are answered before any request. */
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

#include "mcp/config.h"
#include "providers/provider.h"

#define TOKEN_ENV "DMCP_TEST_SHOWLY_TOKEN"
#define TOKEN "sk_live_TESTTOKEN123"

static const struct provider *showly(void)
{
    const struct provider *p = prov_lookup("showly");
    assert_non_null(p);
    return p;
}

/* --------------------------------------------------------- targets */

typedef struct env {
    cfg *config;
    prov_target t;
    bool configured;
} env;

/* Parses a one-target config and runs the adapter's configure on it.
 * Returns configure's result; err gets its message. */
static int configure_target(env *e, const char *target_json, char *err, size_t errlen)
{
    char text[2048], perr[512];
    snprintf(text, sizeof text, "{\"targets\":{\"web\":%s}}", target_json);
    if (cfg_parse(text, strlen(text), "t.json", prov_known, &e->config, perr, sizeof perr) != 0)
        fail_msg("config does not parse: %s", perr);
    memset(&e->t, 0, sizeof e->t);
    e->t.cfg = &e->config->targets[0];
    e->t.ops = prov_lookup(e->t.cfg->provider);
    assert_ptr_equal(e->t.ops, showly());
    err[0] = '\0';
    e->configured = true;
    return e->t.ops->configure(&e->t, err, errlen);
}

static void release(env *e)
{
    /* provider.h: unconfigure also runs after a failed configure. */
    if (e->configured)
        e->t.ops->unconfigure(&e->t);
    assert_null(e->t.priv);
    cfg_free(e->config);
    memset(e, 0, sizeof *e);
}

static void configure_ok(env *e, const char *target_json)
{
    char err[512];
    if (configure_target(e, target_json, err, sizeof err) != 0)
        fail_msg("configure failed: %s", err);
}

#define WEB_TARGET                                                                          \
    "{\"provider\":\"showly\",\"siteId\":\"site_01HZX\",\"tokenEnv\":\"" TOKEN_ENV "\","     \
    "\"baseUrl\":\"http://127.0.0.1:9/\"}"

/* ------------------------------------------------------------- table */

static void test_table(void **state)
{
    (void)state;
    const struct provider *p = showly();
    assert_string_equal(p->name, "showly");
    assert_string_equal(p->display_name, "Showly");
    unsigned all = PROV_CAP_CREATE_PREVIEW | PROV_CAP_REQUEST_PUBLISH | PROV_CAP_STREAM_EVENTS |
                   PROV_CAP_TAIL_LOGS | PROV_CAP_GET | PROV_CAP_LIST;
    assert_int_equal(p->caps, all);
    assert_true(p->native_idempotency);   /* Showly de-duplicates by Idempotency-Key */
    assert_true(p->logs_need_deployment); /* build logs only */
    assert_false(p->local_records_only);
    assert_non_null(p->configure);
    assert_non_null(p->unconfigure);
    assert_non_null(p->credentials_ok);
    assert_non_null(p->stream_spec);
    assert_non_null(p->stream_parse);
    assert_non_null(p->map_http_error);
}

/* ----------------------------------------------------- configuration */

static void test_configure(void **state)
{
    (void)state;
    env e = {0};
    char err[512];

    configure_ok(&e, WEB_TARGET);
    assert_non_null(e.t.priv);
    release(&e);

    assert_int_equal(configure_target(&e, "{\"provider\":\"showly\"}", err, sizeof err), -1);
    assert_non_null(strstr(err, "\"siteId\""));
    assert_non_null(strstr(err, "required"));
    release(&e);

    assert_int_equal(configure_target(&e, "{\"provider\":\"showly\",\"siteId\":\"\"}", err,
                                      sizeof err), -1);
    assert_non_null(strstr(err, "\"siteId\""));
    release(&e);

    assert_int_equal(configure_target(&e, "{\"provider\":\"showly\",\"siteId\":42}", err,
                                      sizeof err), -1);
    assert_non_null(strstr(err, "\"siteId\""));
    release(&e);

    assert_int_equal(configure_target(&e, "{\"provider\":\"showly\",\"siteId\":\"s\","
                                          "\"approvalUrlTemplate\":\"https://app.example/a/\"}",
                                      err, sizeof err), -1);
    assert_non_null(strstr(err, "\"approvalUrlTemplate\""));
    assert_non_null(strstr(err, "{requestId}"));
    release(&e);

    configure_ok(&e, "{\"provider\":\"showly\",\"siteId\":\"s\",\"approvalUrlTemplate\":"
                     "\"https://app.example/approvals/{requestId}?x=1\"}");
    release(&e);
}

/* ------------------------------------------------------- credentials */

static void test_credentials(void **state)
{
    (void)state;
    env e = {0};
    char problem[512];
    configure_ok(&e, WEB_TARGET);

    unsetenv(TOKEN_ENV);
    problem[0] = '\0';
    assert_false(e.t.ops->credentials_ok(&e.t, problem, sizeof problem));
    assert_non_null(strstr(problem, TOKEN_ENV));

    setenv(TOKEN_ENV, "", 1);   /* empty is as good as unset */
    assert_false(e.t.ops->credentials_ok(&e.t, problem, sizeof problem));

    setenv(TOKEN_ENV, TOKEN, 1);
    assert_true(e.t.ops->credentials_ok(&e.t, problem, sizeof problem));
    unsetenv(TOKEN_ENV);
    release(&e);

    /* Default variable name: SHOWLY_TOKEN. */
    const char *saved = getenv("SHOWLY_TOKEN");
    char *keep = saved ? strdup(saved) : NULL;
    unsetenv("SHOWLY_TOKEN");
    configure_ok(&e, "{\"provider\":\"showly\",\"siteId\":\"s\"}");
    assert_false(e.t.ops->credentials_ok(&e.t, problem, sizeof problem));
    assert_non_null(strstr(problem, "SHOWLY_TOKEN"));
    setenv("SHOWLY_TOKEN", "sk_live_other", 1);
    assert_true(e.t.ops->credentials_ok(&e.t, problem, sizeof problem));
    release(&e);
    if (keep)
        setenv("SHOWLY_TOKEN", keep, 1);
    else
        unsetenv("SHOWLY_TOKEN");
    free(keep);
}

/* ------------------------------------------------------- stream spec */

static void test_stream_spec(void **state)
{
    (void)state;
    env e = {0};
    prov_stream_spec spec;
    prov_error err;
    configure_ok(&e, WEB_TARGET);
    setenv(TOKEN_ENV, TOKEN, 1);

    memset(&spec, 0x5a, sizeof spec);
    assert_int_equal(e.t.ops->stream_spec(&e.t, PROV_STREAM_EVENTS, "dep_123", &spec, &err), 0);
    assert_string_equal(spec.url, "http://127.0.0.1:9/deployments/dep_123/events");
    assert_int_equal(spec.nheaders, 1);
    assert_string_equal(spec.headers[0], "Authorization: Bearer " TOKEN);
    assert_int_equal(spec.resume, PROV_RESUME_LAST_EVENT_ID);
    assert_true(spec.reconnect);
    assert_null(spec.ca_file);
    assert_string_equal(spec.first_last_event_id, "");

    /* Build logs travel on the same events stream. */
    assert_int_equal(e.t.ops->stream_spec(&e.t, PROV_STREAM_LOGS, "dep_123", &spec, &err), 0);
    assert_string_equal(spec.url, "http://127.0.0.1:9/deployments/dep_123/events");

    /* The id is one path segment: '/', '?', '#', '%', spaces are escaped. */
    assert_int_equal(e.t.ops->stream_spec(&e.t, PROV_STREAM_EVENTS, "../a/b?c=1#x %", &spec,
                                          &err), 0);
    assert_string_equal(spec.url,
                        "http://127.0.0.1:9/deployments/..%2Fa%2Fb%3Fc%3D1%23x%20%25/events");

    memset(&err, 0, sizeof err);
    assert_int_equal(e.t.ops->stream_spec(&e.t, PROV_STREAM_EVENTS, "", &spec, &err), -1);
    assert_string_equal(err.code, "invalid_arguments");
    memset(&err, 0, sizeof err);
    assert_int_equal(e.t.ops->stream_spec(&e.t, PROV_STREAM_EVENTS, NULL, &spec, &err), -1);
    assert_string_equal(err.code, "invalid_arguments");

    /* Without the token: an error naming the variable, never a header. */
    unsetenv(TOKEN_ENV);
    memset(&err, 0, sizeof err);
    assert_int_equal(e.t.ops->stream_spec(&e.t, PROV_STREAM_EVENTS, "dep_1", &spec, &err), -1);
    assert_string_equal(err.code, "missing_credentials");
    assert_non_null(strstr(err.message, TOKEN_ENV));
    release(&e);

    /* Default base URL and caFile. */
    setenv(TOKEN_ENV, TOKEN, 1);
    configure_ok(&e, "{\"provider\":\"showly\",\"siteId\":\"s\",\"tokenEnv\":\"" TOKEN_ENV "\","
                     "\"caFile\":\"/tmp/ca.pem\"}");
    assert_int_equal(e.t.ops->stream_spec(&e.t, PROV_STREAM_EVENTS, "dep_9", &spec, &err), 0);
    assert_string_equal(spec.url, "https://api.showly.ai/deployments/dep_9/events");
    assert_string_equal(spec.ca_file, "/tmp/ca.pem");
    unsetenv(TOKEN_ENV);
    release(&e);
}

/* ------------------------------------------------------- stream parse */

/* Every emitted event, copied into JSON while its pointers are valid. */
static void capture_emit(void *sink, const prov_event *ev)
{
    json_t *out = sink;
    json_t *o = json_pack("{s:i, s:s}", "kind", (int)ev->kind, "status",
                          prov_status_name(ev->status));
    if (ev->provider_status)
        json_object_set_new(o, "providerStatus", json_string(ev->provider_status));
    if (ev->url)
        json_object_set_new(o, "url", json_string(ev->url));
    if (ev->error)
        json_object_set_new(o, "error", json_pack("{s:s, s:s}", "code", ev->error->code,
                                                  "message", ev->error->message));
    if (ev->kind == PROV_EV_LOG) {
        json_t *lines = json_array();
        for (size_t i = 0; i < ev->nlines; i++) {
            const prov_log_line *l = &ev->lines[i];
            /* NULL (and a test failure) unless the text is valid UTF-8. */
            json_t *text = json_stringn(l->text, l->len);
            assert_non_null(text);
            json_t *lo = json_pack("{s:o, s:s}", "text", text, "level", l->level);
            if (l->source)
                json_object_set_new(lo, "source", json_string(l->source));
            if (l->ts)
                json_object_set_new(lo, "ts", json_string(l->ts));
            json_array_append_new(lines, lo);
        }
        json_object_set_new(o, "lines", lines);
    }
    json_array_append_new(out, o);
}

typedef struct parsed {
    int rc;
    json_t *events;
} parsed;

static env g_parse_env;

static parsed parse_n(const char *type, const char *data, size_t len)
{
    sse_event ev = {.type = type, .type_len = strlen(type), .data = data, .data_len = len,
                    .id = "", .id_len = 0};
    parsed p = {.events = json_array()};
    prov_error err;
    memset(&err, 0, sizeof err);
    prov_target *t = &g_parse_env.t;
    p.rc = t->ops->stream_parse(t, NULL, PROV_STREAM_EVENTS, &ev, capture_emit, p.events, &err);
    return p;
}

static parsed parse(const char *type, const char *data)
{
    return parse_n(type, data, strlen(data));
}

static void assert_events(parsed *p, int rc, const char *want)
{
    char *got = json_dumps(p->events, JSON_COMPACT | JSON_SORT_KEYS);
    if (p->rc != rc || strcmp(got, want) != 0)
        fail_msg("rc %d (want %d), events %s\n  want %s", p->rc, rc, got, want);
    free(got);
    json_decref(p->events);
    p->events = NULL;
}

static int parse_setup(void **state)
{
    (void)state;
    configure_ok(&g_parse_env, WEB_TARGET);
    return 0;
}

static int parse_teardown(void **state)
{
    (void)state;
    release(&g_parse_env);
    return 0;
}

#define K_STATUS "0"
#define K_LOG "1"

static void test_parse_status(void **state)
{
    (void)state;
    parsed p = parse("status", "{\"status\":\"building\",\"at\":\"2025-01-01T00:00:00Z\"}");
    assert_events(&p, PROV_PARSE_CONTINUE,
                  "[{\"kind\":" K_STATUS ",\"providerStatus\":\"building\","
                  "\"status\":\"building\"}]");

    p = parse("status", "{\"status\":\"queued\"}");
    assert_events(&p, PROV_PARSE_CONTINUE,
                  "[{\"kind\":" K_STATUS ",\"providerStatus\":\"queued\",\"status\":\"queued\"}]");

    p = parse("status", "{\"status\":\"ready\",\"previewUrl\":\"https://x.preview.showly.app\"}");
    assert_events(&p, PROV_PARSE_END,
                  "[{\"kind\":" K_STATUS ",\"providerStatus\":\"ready\",\"status\":\"ready\","
                  "\"url\":\"https://x.preview.showly.app\"}]");

    p = parse("status", "{\"status\":\"failed\",\"error\":{\"code\":\"build_error\","
                        "\"message\":\"npm ERR! missing script: build\"}}");
    assert_events(&p, PROV_PARSE_END,
                  "[{\"error\":{\"code\":\"build_error\",\"message\":\"npm ERR! missing script: "
                  "build\"},\"kind\":" K_STATUS ",\"providerStatus\":\"failed\","
                  "\"status\":\"failed\"}]");

    /* failed without details still carries an error. */
    p = parse("status", "{\"status\":\"failed\"}");
    assert_events(&p, PROV_PARSE_END,
                  "[{\"error\":{\"code\":\"build_failed\",\"message\":\"the Showly build "
                  "failed\"},\"kind\":" K_STATUS ",\"providerStatus\":\"failed\","
                  "\"status\":\"failed\"}]");

    p = parse("status", "{\"status\":\"canceled\"}");
    assert_events(&p, PROV_PARSE_END,
                  "[{\"kind\":" K_STATUS ",\"providerStatus\":\"canceled\","
                  "\"status\":\"canceled\"}]");

    /* A word outside the five: relayed as the platform's word, not terminal. */
    p = parse("status", "{\"status\":\"deploying\"}");
    assert_events(&p, PROV_PARSE_CONTINUE,
                  "[{\"kind\":" K_STATUS ",\"providerStatus\":\"deploying\","
                  "\"status\":\"unknown\"}]");

    /* Data split over several "data:" lines arrives joined with '\n'. */
    p = parse("status", "{\"status\":\n\"ready\",\n\"previewUrl\":\"https://m.example\"}");
    assert_events(&p, PROV_PARSE_END,
                  "[{\"kind\":" K_STATUS ",\"providerStatus\":\"ready\",\"status\":\"ready\","
                  "\"url\":\"https://m.example\"}]");
}

static void test_parse_log(void **state)
{
    (void)state;
    parsed p = parse("log", "{\"stream\":\"build\",\"lines\":[\"Installing\",\"Built in 3s\"]}");
    assert_events(&p, PROV_PARSE_CONTINUE,
                  "[{\"kind\":" K_LOG ",\"lines\":["
                  "{\"level\":\"info\",\"source\":\"build\",\"text\":\"Installing\"},"
                  "{\"level\":\"info\",\"source\":\"build\",\"text\":\"Built in 3s\"}],"
                  "\"status\":\"unknown\"}]");

    /* An event-wide level; {text, level, ts} objects; non-strings skipped. */
    p = parse("log", "{\"stream\":\"build\",\"level\":\"warn\",\"lines\":[\"w1\",7,"
                     "{\"text\":\"e1\",\"level\":\"error\",\"ts\":\"2025-01-01T00:00:01Z\"},"
                     "{\"nope\":1},null]}");
    assert_events(&p, PROV_PARSE_CONTINUE,
                  "[{\"kind\":" K_LOG ",\"lines\":["
                  "{\"level\":\"warn\",\"source\":\"build\",\"text\":\"w1\"},"
                  "{\"level\":\"error\",\"source\":\"build\",\"text\":\"e1\","
                  "\"ts\":\"2025-01-01T00:00:01Z\"}],\"status\":\"unknown\"}]");

    /* Invalid UTF-8 is repaired (U+FFFD), never a reason to drop the lines. */
    const char bad[] = "{\"stream\":\"build\",\"lines\":[\"caf\xe9 ok\",\"\xff\xfe\",\"fine\"]}";
    p = parse_n("log", bad, sizeof bad - 1);
    assert_events(&p, PROV_PARSE_CONTINUE,
                  "[{\"kind\":" K_LOG ",\"lines\":["
                  "{\"level\":\"info\",\"source\":\"build\",\"text\":\"caf\xef\xbf\xbd ok\"},"
                  "{\"level\":\"info\",\"source\":\"build\",\"text\":"
                  "\"\xef\xbf\xbd\xef\xbf\xbd\"},"
                  "{\"level\":\"info\",\"source\":\"build\",\"text\":\"fine\"}],"
                  "\"status\":\"unknown\"}]");

    /* Lines keep embedded NULs and their exact length. */
    const char nul[] = "{\"stream\":\"build\",\"lines\":[\"a\\u0000b\"]}";
    p = parse("log", nul);
    assert_int_equal(p.rc, PROV_PARSE_CONTINUE);
    json_t *t = json_object_get(json_array_get(json_object_get(json_array_get(p.events, 0),
                                                                "lines"), 0), "text");
    assert_int_equal(json_string_length(t), 3);
    json_decref(p.events);

    /* Multi-line data. */
    p = parse("log", "{\"stream\":\"build\",\n\"lines\":[\"x\"]}");
    assert_events(&p, PROV_PARSE_CONTINUE,
                  "[{\"kind\":" K_LOG ",\"lines\":["
                  "{\"level\":\"info\",\"source\":\"build\",\"text\":\"x\"}],"
                  "\"status\":\"unknown\"}]");

    /* No "stream": no source. */
    p = parse("log", "{\"lines\":[\"x\"]}");
    assert_events(&p, PROV_PARSE_CONTINUE,
                  "[{\"kind\":" K_LOG ",\"lines\":[{\"level\":\"info\",\"text\":\"x\"}],"
                  "\"status\":\"unknown\"}]");
}

static void test_parse_ignored(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"message", "{\"status\":\"ready\"}"},      /* not a Showly event type */
        {"ping", "{}"},
        {"Status", "{\"status\":\"ready\"}"},       /* types are case-sensitive */
        {"status", "not json"},
        {"status", "{\"status\":"},
        {"status", "[\"ready\"]"},                  /* not an object */
        {"log", "\"line\""},
        {"log", "{\"stream\":\"build\",\"lines\":[]}"},
        {"log", "{\"stream\":\"build\"}"},
        {"log", "{\"stream\":\"build\",\"lines\":\"x\"}"},
        {"log", "{\"stream\":\"build\",\"lines\":[1,null,{\"t\":1}]}"},
        {"log", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        parsed p = parse(cases[i][0], cases[i][1]);
        if (p.rc != PROV_PARSE_IGNORED || json_array_size(p.events) != 0)
            fail_msg("case %zu (%s: %s): rc %d, %zu events", i, cases[i][0], cases[i][1], p.rc,
                     json_array_size(p.events));
        json_decref(p.events);
    }
}

/* A log line cut in the middle of a UTF-16 surrogate pair, as JavaScript's
 * JSON.stringify writes it ("\ud83d" alone): the other lines of the event
 * must still be relayed, and the cut one repaired. */
static void test_parse_log_lone_surrogate(void **state)
{
    (void)state;
    parsed p = parse("log", "{\"stream\":\"build\",\"lines\":[\"ok\",\"cut \\ud83d\"]}");
    assert_events(&p, PROV_PARSE_CONTINUE,
                  "[{\"kind\":" K_LOG ",\"lines\":["
                  "{\"level\":\"info\",\"source\":\"build\",\"text\":\"ok\"},"
                  "{\"level\":\"info\",\"source\":\"build\",\"text\":\"cut \xef\xbf\xbd\"}],"
                  "\"status\":\"unknown\"}]");
}

/* ------------------------------------------------------ error mapping */

static void map(env *e, long status, const char *body, prov_error *out)
{
    http_response res = {.status = status, .body = body, .body_len = body ? strlen(body) : 0,
                         .error = ""};
    memset(out, 0, sizeof *out);
    e->t.ops->map_http_error(&e->t, &res, out);
}

static void test_map_http_error(void **state)
{
    (void)state;
    env e = {0};
    prov_error err;
    configure_ok(&e, WEB_TARGET);

    map(&e, 429, "{\"ok\":false,\"error\":{\"code\":\"build_quota_exceeded\",\"message\":"
                 "\"50 builds per day\"}}", &err);
    assert_string_equal(err.code, "build_quota_exceeded");
    assert_int_equal(err.http_status, 429);
    assert_false(err.retryable);   /* it does not clear on a timer */
    assert_non_null(strstr(err.message, "50 builds per day"));
    assert_non_null(strstr(err.message, "Waiting will not clear it"));

    map(&e, 404, "{\"ok\":false,\"error\":{\"code\":\"deployment_not_found\",\"message\":"
                 "\"no dep_x\"}}", &err);
    assert_string_equal(err.code, "deployment_not_found");
    assert_false(err.retryable);
    assert_non_null(strstr(err.message, "no dep_x"));

    map(&e, 404, "", &err);
    assert_string_equal(err.code, "not_found");

    map(&e, 401, "{\"ok\":false,\"error\":{\"code\":\"invalid_token\",\"message\":\"bad\"}}",
        &err);
    assert_string_equal(err.code, "invalid_token");
    assert_false(err.retryable);
    assert_non_null(strstr(err.message, TOKEN_ENV));   /* the variable, never its value */

    map(&e, 409, "{\"ok\":false,\"error\":{\"code\":\"idempotency_conflict\",\"message\":"
                 "\"different body\"}}", &err);
    assert_string_equal(err.code, "idempotency_conflict");
    assert_false(err.retryable);

    map(&e, 503, "<html>busy</html>", &err);
    assert_string_equal(err.code, "upstream_error");
    assert_true(err.retryable);
    assert_int_equal(err.http_status, 503);

    map(&e, 429, "{}", &err);   /* no Retry-After: do not retry */
    assert_string_equal(err.code, "rate_limited");
    assert_false(err.retryable);

    map(&e, 400, "{\"ok\":false,\"error\":{\"code\":\"bad_branch\",\"message\":\"caf\xe9\"}}",
        &err);
    assert_string_equal(err.code, "bad_branch");
    assert_non_null(strstr(err.message, "caf\xef\xbf\xbd"));

    map(&e, 0, NULL, &err);
    assert_string_equal(err.code, "network_error");
    assert_true(err.retryable);
    release(&e);
}

/* ------------------------------------- refused before any request */

static void never_called(void *ud, json_t *result, const prov_error *err)
{
    (void)ud;
    (void)result;
    (void)err;
    fail_msg("no callback may run for a refused operation");
}

static void test_refused_without_network(void **state)
{
    (void)state;
    env e = {0};
    prov_error err;
    configure_ok(&e, WEB_TARGET);
    setenv(TOKEN_ENV, TOKEN, 1);

    prov_create_args a = {.artifact = "app.zip", .branch = "main", .idempotency_key = "k"};
    memset(&err, 0, sizeof err);
    assert_null(e.t.ops->create_preview(&e.t, &a, never_called, NULL, &err));
    assert_string_equal(err.code, "unsupported_argument");
    assert_non_null(strstr(err.message, "branch"));

    memset(&err, 0, sizeof err);
    assert_null(e.t.ops->get_deployment(&e.t, "", never_called, NULL, &err));
    assert_string_equal(err.code, "invalid_arguments");

    unsetenv(TOKEN_ENV);
    prov_create_args b = {.branch = "main", .idempotency_key = "k"};
    memset(&err, 0, sizeof err);
    assert_null(e.t.ops->create_preview(&e.t, &b, never_called, NULL, &err));
    assert_string_equal(err.code, "missing_credentials");
    assert_null(strstr(err.message, TOKEN));
    memset(&err, 0, sizeof err);
    assert_null(e.t.ops->get_deployment(&e.t, "dep_1", never_called, NULL, &err));
    assert_string_equal(err.code, "missing_credentials");
    memset(&err, 0, sizeof err);
    assert_null(e.t.ops->request_publish(&e.t, "dep_1", NULL, never_called, NULL, &err));
    assert_string_equal(err.code, "missing_credentials");
    prov_list_args l = {.limit = 5};
    memset(&err, 0, sizeof err);
    assert_null(e.t.ops->list_deployments(&e.t, &l, never_called, NULL, &err));
    assert_string_equal(err.code, "missing_credentials");
    release(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_configure),
        cmocka_unit_test(test_credentials),
        cmocka_unit_test(test_stream_spec),
        cmocka_unit_test_setup_teardown(test_parse_status, parse_setup, parse_teardown),
        cmocka_unit_test_setup_teardown(test_parse_log, parse_setup, parse_teardown),
        cmocka_unit_test_setup_teardown(test_parse_ignored, parse_setup, parse_teardown),
        cmocka_unit_test_setup_teardown(test_parse_log_lone_surrogate, parse_setup,
                                           parse_teardown),
        cmocka_unit_test(test_map_http_error),
        cmocka_unit_test(test_refused_without_network),
    };
    (void)test_parse_log_lone_surrogate;
    return cmocka_run_group_tests(tests, NULL, NULL);
}

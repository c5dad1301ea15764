/* test_mixpeek.c — the Mixpeek adapter's pure parts: deploy-log lines (ts
 * seconds → ISO-8601 UTC with ms, levels from the leading word, invalid
 * UTF-8 repaired, non-JSON data), `done` ending the stream and travelling
 * in the cursor, the status/environment mapping of deploy objects and
 * versions, the error envelope of each documented type (and that the key
 * never appears in a message), list cursors and configuration.
 *
 * The adapter keeps its helpers static (one exported symbol, prov_mixpeek),
 * so this test includes the source: it then defines prov_mixpeek itself and
 * the linker never pulls providers/mixpeek.o out of the core library. The
 * request/stream flows over HTTP are covered by tests/e2e/test_mixpeek.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "providers/mixpeek.c"

#define FFFD "\xEF\xBF\xBD"
#define KEY_VALUE "mxp_sk_unit_SECRET_42"
#define MAX_SEEN 8

/* ---- fixtures ------------------------------------------------------------ */

typedef struct fixture {
    cfg_target cfg;
    prov_target t;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->cfg.name = "canvas";
    f->cfg.provider = "mixpeek";
    f->cfg.obj = json_pack("{s:s, s:s, s:s}", "provider", "mixpeek", "appId", "app_unit",
                           "namespace", "ns_unit");
    f->t.cfg = &f->cfg;
    f->t.ops = &prov_mixpeek;
    char err[256] = "";
    assert_int_equal(prov_mixpeek.configure(&f->t, err, sizeof err), 0);
    setenv("MIXPEEK_API_KEY", KEY_VALUE, 1);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    prov_mixpeek.unconfigure(&f->t);
    json_decref(f->cfg.obj);
    free(f);
    unsetenv("MIXPEEK_API_KEY");
    return 0;
}

/* Collects what stream_parse emits (copies: pointers are borrowed). */
typedef struct seen {
    int events;
    prov_event_kind kind[MAX_SEEN];
    char text[MAX_SEEN][256];
    size_t len[MAX_SEEN];
    char level[MAX_SEEN][16];
    char ts[MAX_SEEN][MX_TS_MAX];
    char source[MAX_SEEN][16];
} seen;

static void collect(void *sink, const prov_event *ev)
{
    seen *s = sink;
    assert_true(s->events < MAX_SEEN);
    int i = s->events++;
    s->kind[i] = ev->kind;
    /* one prov_event per relayed SSE event: one line each */
    assert_int_equal(ev->nlines, 1);
    const prov_log_line *l = &ev->lines[0];
    assert_true(l->len < sizeof s->text[i]);
    memcpy(s->text[i], l->text, l->len);
    s->text[i][l->len] = '\0';
    s->len[i] = l->len;
    snprintf(s->level[i], sizeof s->level[i], "%s", l->level);
    snprintf(s->ts[i], sizeof s->ts[i], "%s", l->ts ? l->ts : "(none)");
    snprintf(s->source[i], sizeof s->source[i], "%s", l->source ? l->source : "(none)");
}

static int parse(fixture *f, void *st, const char *type, const char *data, size_t len,
                 seen *s)
{
    sse_event ev = {.type = type, .type_len = strlen(type), .data = data, .data_len = len,
                    .id = "", .id_len = 0};
    prov_error err = {0};
    return prov_mixpeek.stream_parse(&f->t, st, PROV_STREAM_EVENTS, &ev, collect, s, &err);
}

#define PARSE(f, st, type, lit, s) parse((f), (st), (type), (lit), sizeof(lit) - 1, (s))

/* ---- log lines ----------------------------------------------------------- */

static void test_line_ts_and_defaults(void **state)
{
    fixture *f = *state;
    seen s = {0};
    assert_int_equal(PARSE(f, NULL, "message", "{\"ts\": 1711741200.123, \"line\": \"hello\"}",
                           &s), PROV_PARSE_CONTINUE);
    assert_int_equal(s.events, 1);
    assert_int_equal(s.kind[0], PROV_EV_LOG);
    assert_string_equal(s.text[0], "hello");
    assert_string_equal(s.ts[0], "2024-03-29T19:40:00.123Z");
    assert_string_equal(s.level[0], "info");
    assert_string_equal(s.source[0], "deploy");

    /* milliseconds round (not truncate), carrying into the second */
    PARSE(f, NULL, "message", "{\"ts\": 1711741200.9996, \"line\": \"a\"}", &s);
    assert_string_equal(s.ts[1], "2024-03-29T19:40:01.000Z");
    /* whole seconds, and the epoch itself */
    PARSE(f, NULL, "message", "{\"ts\": 0, \"line\": \"b\"}", &s);
    assert_string_equal(s.ts[2], "1970-01-01T00:00:00.000Z");
    /* no ts, or one no calendar can show: the line still goes out, without ts */
    PARSE(f, NULL, "message", "{\"line\": \"c\"}", &s);
    assert_string_equal(s.ts[3], "(none)");
    PARSE(f, NULL, "message", "{\"ts\": -5, \"line\": \"d\"}", &s);
    assert_string_equal(s.ts[4], "(none)");
    PARSE(f, NULL, "message", "{\"ts\": 1e300, \"line\": \"e\"}", &s);
    assert_string_equal(s.ts[5], "(none)");
    /* an ISO string with an offset is normalized to UTC */
    PARSE(f, NULL, "message", "{\"ts\": \"2024-03-29T21:40:00.5+02:00\", \"line\": \"f\"}", &s);
    assert_string_equal(s.ts[6], "2024-03-29T19:40:00.500Z");
    assert_int_equal(s.events, 7);
}

static void test_line_levels(void **state)
{
    fixture *f = *state;
    static const struct { const char *line, *level; } cases[] = {
        {"ERROR: build failed", "error"},   {"[ERROR] boom", "error"},
        {"error", "error"},                 {"  FATAL out of memory", "error"},
        {"Err: x", "error"},                {"panic: runtime error", "error"},
        {"WARN peer dependency", "warn"},   {"warning: deprecated", "warn"},
        {"(warn) slow", "warn"},            {"DEBUG cache key", "debug"},
        {"trace: x", "debug"},              {"Errors: 0", "info"},
        {"ERROR1 not a level", "info"},     {"npm ERR! kept simple", "info"},
        {"Building canvas", "info"},        {"", "info"},
        {"the build has an error", "info"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char data[256];
        snprintf(data, sizeof data, "{\"ts\": 1, \"line\": \"%s\"}", cases[i].line);
        seen s = {0};
        assert_int_equal(parse(f, NULL, "message", data, strlen(data), &s),
                         PROV_PARSE_CONTINUE);
        assert_int_equal(s.events, 1);
        if (strcmp(s.level[0], cases[i].level) != 0)
            fail_msg("line \"%s\": level %s, want %s", cases[i].line, s.level[0],
                     cases[i].level);
    }
}

static void test_line_invalid_utf8_and_odd_data(void **state)
{
    fixture *f = *state;
    seen s = {0};
    /* raw invalid bytes inside the JSON string: repaired, not dropped */
    assert_int_equal(PARSE(f, NULL, "message", "{\"ts\":1,\"line\":\"a \xff\xfe b \xe2\x82\"}", &s),
                     PROV_PARSE_CONTINUE);
    assert_int_equal(s.events, 1);
    assert_string_equal(s.text[0], "a " FFFD FFFD " b " FFFD);
    assert_true(utf8_valid(s.text[0], s.len[0]));
    /* data that is not JSON is the line itself (also repaired) */
    assert_int_equal(PARSE(f, NULL, "message", "plain text \xc3", &s), PROV_PARSE_CONTINUE);
    assert_string_equal(s.text[1], "plain text " FFFD);
    assert_string_equal(s.ts[1], "(none)");
    /* an escaped NUL survives with its length */
    PARSE(f, NULL, "message", "{\"line\":\"x\\u0000y\"}", &s);
    assert_int_equal(s.len[2], 3);
    /* JSON without a line, and unknown event types: nothing relayed */
    assert_int_equal(PARSE(f, NULL, "message", "{}", &s), PROV_PARSE_IGNORED);
    assert_int_equal(PARSE(f, NULL, "message", "{\"line\": 5}", &s), PROV_PARSE_IGNORED);
    assert_int_equal(PARSE(f, NULL, "ping", "{\"line\":\"x\"}", &s), PROV_PARSE_IGNORED);
    assert_int_equal(s.events, 3);
}

static void test_done_ends_and_travels_in_cursor(void **state)
{
    fixture *f = *state;
    void *st = prov_mixpeek.stream_state_new(&f->t, PROV_STREAM_LOGS);
    assert_non_null(st);
    assert_null(prov_mixpeek.stream_state_save(st));          /* nothing to save yet */
    assert_false(prov_mixpeek.stream_state_complete(st));
    seen s = {0};
    assert_int_equal(PARSE(f, st, "message", "{\"ts\":1,\"line\":\"last\"}", &s),
                     PROV_PARSE_CONTINUE);
    assert_int_equal(PARSE(f, st, "done", "{}", &s), PROV_PARSE_END);
    assert_int_equal(s.events, 1);                            /* done relays nothing */
    char *saved = prov_mixpeek.stream_state_save(st);
    assert_non_null(saved);
    void *st2 = prov_mixpeek.stream_state_new(&f->t, PROV_STREAM_EVENTS);
    assert_int_equal(prov_mixpeek.stream_state_restore(st2, saved), 0);
    assert_true(prov_mixpeek.stream_state_complete(st2));
    assert_int_equal(prov_mixpeek.stream_state_restore(st2, "garbage"), -1);
    free(saved);
    prov_mixpeek.stream_state_free(st);
    prov_mixpeek.stream_state_free(st2);
    /* done with no state (NULL) is still the end */
    assert_int_equal(PARSE(f, NULL, "done", "{}", &s), PROV_PARSE_END);
}

static void test_stream_spec(void **state)
{
    fixture *f = *state;
    prov_stream_spec spec;
    prov_error err = {0};
    assert_int_equal(prov_mixpeek.stream_spec(&f->t, PROV_STREAM_LOGS, "dpl/1", &spec, &err), 0);
    assert_string_equal(spec.url,
                        "https://api.mixpeek.com/v1/apps/app_unit/deploys/dpl%2F1/logs/stream");
    assert_int_equal(spec.resume, PROV_RESUME_REPLAY);
    assert_true(spec.reconnect);
    assert_int_equal(spec.nheaders, 2);
    assert_string_equal(spec.headers[0], "Authorization: Bearer " KEY_VALUE);
    assert_string_equal(spec.headers[1], "X-Namespace: ns_unit");
    assert_int_equal(prov_mixpeek.stream_spec(&f->t, PROV_STREAM_LOGS, "", &spec, &err), -1);
    assert_string_equal(err.code, "invalid_arguments");
}

/* ---- status mapping ------------------------------------------------------ */

static json_t *deployment_of(fixture *f, const char *json)
{
    json_t *d = json_loads(json, 0, NULL);
    assert_non_null(d);
    json_t *dep = to_deployment(&f->t, d);
    json_decref(d);
    assert_non_null(dep);
    return dep;
}

static const char *field(json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "(absent)";
}

static void test_status_mapping(void **state)
{
    fixture *f = *state;
    assert_int_equal(mx_status("queued"), PROV_ST_QUEUED);
    assert_int_equal(mx_status("building"), PROV_ST_BUILDING);
    assert_int_equal(mx_status("complete"), PROV_ST_READY);
    assert_int_equal(mx_status("failed"), PROV_ST_FAILED);
    assert_int_equal(mx_status("completed"), PROV_ST_UNKNOWN);   /* not guessed */
    assert_int_equal(mx_status(NULL), PROV_ST_UNKNOWN);
    assert_string_equal(mx_environment("staging"), "preview");
    assert_string_equal(mx_environment("production"), "production");
    assert_null(mx_environment("dev"));

    json_t *d = deployment_of(f, "{\"deploy_id\":\"dpl_1\",\"status\":\"complete\","
                                 "\"environment\":\"staging\",\"error\":null,"
                                 "\"queued_at\":\"2024-03-29T19:40:00.123456Z\","
                                 "\"message\":\"hi\"}");
    assert_string_equal(field(d, "id"), "dpl_1");
    assert_string_equal(field(d, "status"), "ready");
    assert_string_equal(field(d, "providerStatus"), "complete");
    assert_string_equal(field(d, "environment"), "preview");
    assert_string_equal(field(d, "providerEnvironment"), "staging");
    assert_string_equal(field(d, "createdAt"), "2024-03-29T19:40:00.123Z");
    assert_string_equal(field(d, "provider"), "mixpeek");
    assert_string_equal(field(d, "target"), "canvas");
    assert_string_equal(field(d, "message"), "hi");
    assert_null(json_object_get(d, "error"));
    json_decref(d);

    d = deployment_of(f, "{\"deploy_id\":\"dpl_2\",\"status\":\"failed\","
                         "\"environment\":\"production\",\"error\":\"exit code 1\","
                         "\"queued_at\":1711741200}");
    assert_string_equal(field(d, "status"), "failed");
    assert_string_equal(field(d, "environment"), "production");
    assert_string_equal(field(d, "createdAt"), "2024-03-29T19:40:00.000Z");
    json_t *e = json_object_get(d, "error");
    assert_string_equal(field(e, "code"), "deploy_failed");
    assert_string_equal(field(e, "message"), "exit code 1");
    json_decref(d);

    /* failed without a message still says so; queued/building map as such */
    d = deployment_of(f, "{\"deploy_id\":\"dpl_3\",\"status\":\"failed\"}");
    assert_non_null(json_object_get(d, "error"));
    assert_string_equal(field(d, "environment"), "preview");
    json_decref(d);
    d = deployment_of(f, "{\"deploy_id\":\"dpl_4\",\"status\":\"building\"}");
    assert_string_equal(field(d, "status"), "building");
    json_decref(d);
    /* an unknown word: reported as given, normalized conservatively */
    d = deployment_of(f, "{\"deploy_id\":\"dpl_5\",\"status\":\"rolling\"}");
    assert_string_equal(field(d, "status"), "queued");
    assert_string_equal(field(d, "providerStatus"), "rolling");
    json_decref(d);
}

static void test_versions_and_records(void **state)
{
    fixture *f = *state;
    /* A version without status: known nothing, so never "ready". */
    json_t *v = json_loads("{\"version_id\":\"ver_1\",\"version\":3,\"message\":\"m\","
                           "\"created_at\":\"2024-01-02T03:04:05Z\"}", 0, NULL);
    json_t *d = version_entry(&f->t, v);
    assert_string_equal(field(d, "id"), "ver_1");
    assert_string_equal(field(d, "kind"), "version");
    assert_string_equal(field(d, "status"), "queued");
    assert_string_equal(field(d, "providerStatus"), "unknown");
    assert_true(json_is_false(json_object_get(d, "statusKnown")));
    assert_true(json_is_false(json_object_get(d, "environmentKnown")));
    assert_string_equal(field(d, "createdAt"), "2024-01-02T03:04:05.000Z");
    assert_int_equal(json_integer_value(json_object_get(d, "version")), 3);
    json_decref(d);
    json_decref(v);

    /* A version naming a deploy this process created: its observed status. */
    record_add(&f->t, "dpl_9", "apps/app_unit/bundles/x.zip", "msg", "preview", "complete");
    v = json_loads("{\"version_id\":\"ver_2\",\"deploy_id\":\"dpl_9\","
                   "\"environment\":\"staging\"}", 0, NULL);
    d = version_entry(&f->t, v);
    assert_string_equal(field(d, "id"), "dpl_9");
    assert_string_equal(field(d, "kind"), "deploy");
    assert_string_equal(field(d, "status"), "ready");
    assert_true(json_is_true(json_object_get(d, "statusKnown")));
    assert_string_equal(field(d, "versionId"), "ver_2");
    json_decref(d);
    json_decref(v);
    mx_record *r = record_find(&f->t, "dpl_9");
    assert_non_null(r);
    assert_string_equal(r->bundle_key, "apps/app_unit/bundles/x.zip");

    /* Records are capped: the oldest is forgotten. */
    char id[32];
    for (int i = 0; i < MX_MAX_RECORDS + 5; i++) {
        snprintf(id, sizeof id, "dpl_cap_%d", i);
        record_add(&f->t, id, "k", NULL, "preview", NULL);
    }
    assert_int_equal(cfg_of(&f->t)->nrecs, MX_MAX_RECORDS);
    assert_null(record_find(&f->t, "dpl_9"));
    assert_non_null(record_find(&f->t, id));
}

static void test_list_cursor(void **state)
{
    (void)state;
    json_t *d = json_pack("{s:s, s:s}", "id", "dpl_7", "createdAt", "2024-05-01T00:00:00.000Z");
    char *c = make_cursor(d);
    assert_non_null(c);
    assert_true(strncmp(c, MX_CURSOR_PREFIX, strlen(MX_CURSOR_PREFIX)) == 0);
    mx_list st = {0};
    assert_int_equal(parse_cursor(&st, c), 0);
    assert_string_equal(st.after_id, "dpl_7");
    assert_string_equal(st.after_created, "2024-05-01T00:00:00.000Z");
    /* keyset order: newer first, then by id; missing times last */
    assert_true(entry_cmp_key("2024-05-02", "a", "2024-05-01", "a") < 0);
    assert_true(entry_cmp_key("2024-05-01", "a", "2024-05-01", "b") < 0);
    assert_true(entry_cmp_key("", "a", "2024-05-01", "z") > 0);
    free(st.after_created);
    free(st.after_id);
    free(c);
    json_decref(d);
    mx_list bad = {0};
    assert_int_equal(parse_cursor(&bad, "garbage"), -1);
    assert_int_equal(parse_cursor(&bad, MX_CURSOR_PREFIX "!!!"), -1);
}

/* ---- error envelopes ----------------------------------------------------- */

static void map(fixture *f, long status, const char *body, prov_error *e)
{
    http_response res = {.status = status, .body = body, .body_len = body ? strlen(body) : 0,
                         .error = ""};
    memset(e, 0, sizeof *e);
    prov_mixpeek.map_http_error(&f->t, &res, e);
    assert_true(utf8_valid(e->message, strlen(e->message)));
    assert_null(strstr(e->message, KEY_VALUE));
}

#define ENVELOPE(st, type, msg, extra)                                                     \
    "{\"success\":false,\"status\":" #st ",\"error\":{\"message\":\"" msg "\",\"type\":\"" \
    type "\"" extra "}}"

static void test_error_envelopes(void **state)
{
    fixture *f = *state;
    static const struct {
        long status;
        const char *body, *code;
        bool retryable;
        const char *must;   /* a phrase the model needs */
    } cases[] = {
        {400, ENVELOPE(400, "BadRequestError", "bad filename", ""), "BadRequestError", false,
         "bad filename"},
        {403, ENVELOPE(403, "UnauthorizedError", "Invalid API key " KEY_VALUE, ""),
         "UnauthorizedError", false, "MIXPEEK_API_KEY"},
        {404, ENVELOPE(404, "NotFoundError", "Deploy dpl_x not found", ""), "NotFoundError",
         false, "app_unit"},
        {409, ENVELOPE(409, "AlreadyExistsError", "deploy in progress", ""),
         "AlreadyExistsError", false, "stream_events"},
        {422, ENVELOPE(422, "ValidationError", "Validation failed",
                       ",\"details\":[{\"loc\":[\"body\",\"environment\"]}]"),
         "ValidationError", false, "\"environment\""},
        {429, ENVELOPE(429, "TooManyRequestsError", "slow down", ""), "TooManyRequestsError",
         true, "minute"},
        {408, ENVELOPE(408, "TimeoutError", "took too long", ""), "TimeoutError", true,
         "timed out"},
        {500, ENVELOPE(500, "InternalServerError", "oops", ",\"code\":\"E42\""),
         "InternalServerError", true, "E42"},
        /* no envelope: the type follows from the status */
        {502, "<html>bad gateway</html>", "InternalServerError", true, "no details given"},
        {401, "{\"detail\":\"Not authenticated\"}", "UnauthorizedError", false,
         "Not authenticated"},
        {405, "{\"detail\":\"Method Not Allowed\"}", "HttpError", false, "Method Not Allowed"},
        /* the type decides even when the status disagrees */
        {400, ENVELOPE(400, "TooManyRequestsError", "limited", ""), "TooManyRequestsError",
         true, "minute"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        prov_error e;
        map(f, cases[i].status, cases[i].body, &e);
        if (strcmp(e.code, cases[i].code) != 0 || e.retryable != cases[i].retryable ||
            e.http_status != cases[i].status || !strstr(e.message, cases[i].must))
            fail_msg("case %zu (HTTP %ld): code %s retryable %d status %ld: %s", i,
                     cases[i].status, e.code, e.retryable, e.http_status, e.message);
    }
    /* the auth message names the variable, the app and the namespace */
    prov_error e;
    map(f, 403, ENVELOPE(403, "UnauthorizedError", "Invalid API key", ""), &e);
    assert_non_null(strstr(e.message, "ns_unit"));
    assert_non_null(strstr(e.message, "MIXPEEK_API_KEY"));
    map(f, 403, ENVELOPE(403, "UnauthorizedError", "bad key " KEY_VALUE, ""), &e);
    assert_non_null(strstr(e.message, "[redacted]"));
    /* transport failure */
    http_response res = {.status = 0, .error = "Connection refused", .curl_code = 7};
    prov_mixpeek.map_http_error(&f->t, &res, &e);
    assert_string_equal(e.code, "network_error");
    assert_true(e.retryable);
    assert_non_null(strstr(e.message, "Mixpeek"));
}

/* ---- configuration and small helpers ------------------------------------- */

static void test_configure(void **state)
{
    (void)state;
    static const struct { const char *json, *must; } bad[] = {
        {"{\"provider\":\"mixpeek\"}", "appId"},
        {"{\"provider\":\"mixpeek\",\"appId\":\"\"}", "appId"},
        {"{\"provider\":\"mixpeek\",\"appId\":\"a\",\"namespace\":5}", "namespace"},
        {"{\"provider\":\"mixpeek\",\"appId\":\"a\",\"namespace\":\"\"}", "namespace"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cfg_target c = {.name = "x", .provider = "mixpeek", .obj = json_loads(bad[i].json, 0, NULL)};
        prov_target t = {.cfg = &c, .ops = &prov_mixpeek};
        char err[256] = "";
        assert_int_equal(prov_mixpeek.configure(&t, err, sizeof err), -1);
        assert_non_null(strstr(err, bad[i].must));
        prov_mixpeek.unconfigure(&t);   /* also after a failed configure */
        json_decref(c.obj);
    }
    cfg_target c = {.name = "x", .provider = "mixpeek",
                    .obj = json_pack("{s:s, s:s, s:s}", "appId", "a", "tokenEnv", "MY_MX_KEY",
                                     "baseUrl", "http://127.0.0.1:1")};
    prov_target t = {.cfg = &c, .ops = &prov_mixpeek};
    char err[256] = "";
    assert_int_equal(prov_mixpeek.configure(&t, err, sizeof err), 0);
    char problem[256] = "";
    unsetenv("MY_MX_KEY");
    assert_false(prov_mixpeek.credentials_ok(&t, problem, sizeof problem));
    assert_non_null(strstr(problem, "MY_MX_KEY"));
    setenv("MY_MX_KEY", "v", 1);
    assert_true(prov_mixpeek.credentials_ok(&t, problem, sizeof problem));
    unsetenv("MY_MX_KEY");
    /* Production publishes go through deploy-mcp's approval gate. */
    assert_null(prov_mixpeek.request_publish);
    assert_true(prov_mixpeek.caps & PROV_CAP_REQUEST_PUBLISH);
    assert_non_null(prov_mixpeek.prepare_publish);
    assert_non_null(prov_mixpeek.publish);
    assert_non_null(strstr(prov_mixpeek.unsupported_hint("request_publish"), "approval gate"));
    prov_mixpeek.unconfigure(&t);
    json_decref(c.obj);
}

static void test_time_and_names(void **state)
{
    (void)state;
    double s;
    assert_true(parse_iso("2024-03-29T19:40:00Z", &s));
    assert_true(s == 1711741200.0);
    assert_true(parse_iso("2024-03-29 19:40:00", &s));        /* no zone = UTC */
    assert_true(s == 1711741200.0);
    assert_true(parse_iso("2024-03-29T20:40:00+0100", &s));
    assert_true(s == 1711741200.0);
    assert_false(parse_iso("2024-13-29T19:40:00Z", &s));
    assert_false(parse_iso("yesterday", &s));
    assert_false(parse_iso("2024-03-29T19:40:00Zjunk", &s));
    char out[MX_TS_MAX];
    json_t *v = json_string("not a time");
    assert_true(ts_normalize(v, out, sizeof out));           /* kept verbatim */
    assert_string_equal(out, "not a time");
    json_decref(v);
    v = json_integer(1711741200123);                          /* milliseconds */
    assert_true(ts_normalize(v, out, sizeof out));
    assert_string_equal(out, "2024-03-29T19:40:00.123Z");
    json_decref(v);

    char *n = bundle_filename("/root/build/site");
    assert_string_equal(n, "site.zip");
    free(n);
    n = bundle_filename("/root/build/bundle.zip");
    assert_string_equal(n, "bundle.zip");
    free(n);

    char msg[PROV_ERR_MSG_MAX] = "key abcdef and abcdef again";
    redact(msg, sizeof msg, "abcdef");
    assert_string_equal(msg, "key [redacted] and [redacted] again");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_line_ts_and_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_line_levels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_line_invalid_utf8_and_odd_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_done_ends_and_travels_in_cursor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_spec, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_mapping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_versions_and_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_cursor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_envelopes, setup, teardown),
        cmocka_unit_test(test_configure),
        cmocka_unit_test(test_time_and_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

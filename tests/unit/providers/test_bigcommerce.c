/* test_bigcommerce.c — the BigCommerce adapter's parts that need no network
 * (providers/bigcommerce.c through its `struct provider` table): configuration,
 * the stream connection specs, snapshot parsing and status mapping for every
 * deployment_status and error code, de-duplication of repeated snapshots
 * (also across a cursor's save/restore), deployment_url vs
 * deployment_hostnames, runtime-log events to lines, the local records that
 * answer get/list, and the error mapping. Loop tests end with
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

#include "mcp/config.h"
#include "providers/provider.h"

#define TOKEN_ENV "DMCP_TEST_BC_TOKEN"
#define TOKEN "bc_TESTTOKEN_0123456789"
#define MAX_CAPTURE 8
#define MAX_LINES 32

extern const struct provider prov_bigcommerce;

/* ---- targets ------------------------------------------------------------- */

typedef struct env {
    cfg *config;
    prov_target t;
    uv_loop_t loop;
    bool configured;
} env;

static int configure_target(env *e, const char *target_json, char *err, size_t errlen)
{
    char text[2048], perr[512];
    snprintf(text, sizeof text, "{\"targets\":{\"store\":%s}}", target_json);
    if (cfg_parse(text, strlen(text), "t.json", prov_known, &e->config, perr, sizeof perr) != 0)
        fail_msg("config does not parse: %s", perr);
    memset(&e->t, 0, sizeof e->t);
    e->t.cfg = &e->config->targets[0];
    e->t.ops = prov_lookup(e->t.cfg->provider);
    assert_ptr_equal(e->t.ops, &prov_bigcommerce);
    assert_int_equal(uv_loop_init(&e->loop), 0);
    e->t.loop = &e->loop;
    e->configured = true;
    err[0] = '\0';
    return e->t.ops->configure(&e->t, err, errlen);
}

static void release(env *e)
{
    if (e->configured)
        e->t.ops->unconfigure(&e->t);
    assert_null(e->t.priv);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&e->loop), 0);
    cfg_free(e->config);
    memset(e, 0, sizeof *e);
}

#define STORE_TARGET                                                                        \
    "{\"provider\":\"bigcommerce\",\"storeHash\":\"abc123\",\"projectUuid\":\"proj-1\","    \
    "\"tokenEnv\":\"" TOKEN_ENV "\",\"baseUrl\":\"http://127.0.0.1:9/\","                   \
    "\"streamBaseUrl\":\"http://127.0.0.1:10\"}"

static void configure_ok(env *e, const char *json)
{
    char err[512];
    if (configure_target(e, json, err, sizeof err) != 0)
        fail_msg("configure failed: %s", err);
}

/* ---- capturing emitted events ------------------------------------------- */

typedef struct cap_line {
    char text[256], level[16], ts[64], source[32];
} cap_line;

typedef struct cap_event {
    prov_event_kind kind;
    prov_status status;
    char provider_status[32], url[256], step[32];
    double progress, total;
    bool has_error;
    prov_error error;
    cap_line lines[MAX_LINES];
    size_t nlines;
} cap_event;

typedef struct capture {
    cap_event ev[MAX_CAPTURE];
    size_t n;
} capture;

static void copy_str(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src ? src : "");
}

static void on_emit(void *sink, const prov_event *ev)
{
    capture *c = sink;
    assert_true(c->n < MAX_CAPTURE);
    cap_event *o = &c->ev[c->n++];
    memset(o, 0, sizeof *o);
    o->kind = ev->kind;
    o->status = ev->status;
    copy_str(o->provider_status, sizeof o->provider_status, ev->provider_status);
    copy_str(o->url, sizeof o->url, ev->url);
    copy_str(o->step, sizeof o->step, ev->step);
    o->progress = ev->progress;
    o->total = ev->total;
    if (ev->error) {
        o->has_error = true;
        o->error = *ev->error;
    }
    for (size_t i = 0; i < ev->nlines && i < MAX_LINES; i++) {
        snprintf(o->lines[i].text, sizeof o->lines[i].text, "%.*s", (int)ev->lines[i].len,
                 ev->lines[i].text);
        copy_str(o->lines[i].level, sizeof o->lines[i].level, ev->lines[i].level);
        copy_str(o->lines[i].ts, sizeof o->lines[i].ts, ev->lines[i].ts);
        copy_str(o->lines[i].source, sizeof o->lines[i].source, ev->lines[i].source);
        o->nlines++;
    }
}

static int feed(env *e, void *state, enum prov_stream_kind kind, const char *json, capture *c)
{
    sse_event ev = {.type = "message", .type_len = 7, .data = json, .data_len = strlen(json),
                    .id = "", .id_len = 0};
    prov_error err;
    memset(&err, 0, sizeof err);
    return e->t.ops->stream_parse(&e->t, state, kind, &ev, on_emit, c, &err);
}

#define SNAP(status, event, error, extra)                                                   \
    "{\"deployment_uuid\":\"dep-1\",\"deployment_status\":\"" status "\",\"event\":" event  \
    ",\"error\":" error extra "}"

/* ---- configuration and table -------------------------------------------- */

static void test_table(void **state)
{
    (void)state;
    const struct provider *p = &prov_bigcommerce;
    assert_string_equal(p->name, "bigcommerce");
    assert_ptr_equal(prov_lookup("bigcommerce"), p);
    assert_true(p->local_records_only);
    assert_false(p->logs_need_deployment);
    assert_false(p->native_idempotency);
    /* No approval concept on the platform: publishes go through
     * deploy-mcp's gate (prepare_publish/publish), never request_publish. */
    assert_null(p->request_publish);
    assert_true(p->caps & PROV_CAP_REQUEST_PUBLISH);
    assert_non_null(p->prepare_publish);
    assert_non_null(p->publish);
    assert_true(p->caps & PROV_CAP_CREATE_PREVIEW);
    assert_true(p->caps & PROV_CAP_TAIL_LOGS);
}

static void test_configure(void **state)
{
    (void)state;
    env e;
    char err[512];
    assert_int_equal(configure_target(&e, "{\"provider\":\"bigcommerce\",\"projectUuid\":\"p\"}",
                                      err, sizeof err), -1);
    assert_non_null(strstr(err, "storeHash"));
    release(&e);
    assert_int_equal(configure_target(&e, "{\"provider\":\"bigcommerce\",\"storeHash\":\"h\"}",
                                      err, sizeof err), -1);
    assert_non_null(strstr(err, "projectUuid"));
    release(&e);
    assert_int_equal(configure_target(&e, "{\"provider\":\"bigcommerce\",\"storeHash\":\"h\","
                                          "\"projectUuid\":\"p\",\"productionProjectUuid\":5}",
                                      err, sizeof err), -1);
    assert_non_null(strstr(err, "productionProjectUuid"));
    release(&e);

    configure_ok(&e, STORE_TARGET);
    unsetenv(TOKEN_ENV);
    char problem[256];
    assert_false(e.t.ops->credentials_ok(&e.t, problem, sizeof problem));
    assert_non_null(strstr(problem, TOKEN_ENV));
    setenv(TOKEN_ENV, TOKEN, 1);
    assert_true(e.t.ops->credentials_ok(&e.t, problem, sizeof problem));
    release(&e);

    /* Defaults: the token variable and the API host. */
    configure_ok(&e, "{\"provider\":\"bigcommerce\",\"storeHash\":\"h1\",\"projectUuid\":\"p\"}");
    unsetenv("BIGCOMMERCE_ACCESS_TOKEN");
    assert_false(e.t.ops->credentials_ok(&e.t, problem, sizeof problem));
    assert_non_null(strstr(problem, "BIGCOMMERCE_ACCESS_TOKEN"));
    setenv("BIGCOMMERCE_ACCESS_TOKEN", TOKEN, 1);
    prov_stream_spec spec;
    prov_error perr;
    assert_int_equal(e.t.ops->stream_spec(&e.t, PROV_STREAM_EVENTS, "d1", &spec, &perr), 0);
    assert_string_equal(spec.url,
                        "https://api.bigcommerce.com/stores/h1/v3/infrastructure/deployments/d1/events");
    assert_int_equal(e.t.ops->stream_spec(&e.t, PROV_STREAM_LOGS, NULL, &spec, &perr), 0);
    assert_string_equal(spec.url, "https://api.bigcommerce.com/stores/h1/v3/infrastructure/"
                                  "logs/p/tail");
    unsetenv("BIGCOMMERCE_ACCESS_TOKEN");
    release(&e);
}

static void test_stream_spec(void **state)
{
    (void)state;
    env e;
    configure_ok(&e, STORE_TARGET);
    setenv(TOKEN_ENV, TOKEN, 1);
    prov_stream_spec spec;
    prov_error err;
    assert_int_equal(e.t.ops->stream_spec(&e.t, PROV_STREAM_EVENTS, "dep 1", &spec, &err), 0);
    assert_string_equal(spec.url, "http://127.0.0.1:9/stores/abc123/v3/infrastructure/"
                                  "deployments/dep%201/events");
    assert_int_equal(spec.nheaders, 1);
    assert_string_equal(spec.headers[0], "X-Auth-Token: " TOKEN);
    assert_int_equal(spec.resume, PROV_RESUME_LIVE);
    assert_true(spec.reconnect);
    /* Runtime logs: per project, from streamBaseUrl; a deploymentId is ignored. */
    assert_int_equal(e.t.ops->stream_spec(&e.t, PROV_STREAM_LOGS, "dep-9", &spec, &err), 0);
    assert_string_equal(spec.url, "http://127.0.0.1:10/stores/abc123/v3/infrastructure/logs/"
                                  "proj-1/tail");
    assert_int_equal(spec.resume, PROV_RESUME_LIVE);
    assert_true(spec.reconnect);
    unsetenv(TOKEN_ENV);
    assert_int_equal(e.t.ops->stream_spec(&e.t, PROV_STREAM_EVENTS, "d", &spec, &err), -1);
    assert_non_null(strstr(err.message, TOKEN_ENV));
    release(&e);
}

/* ---- snapshots ---------------------------------------------------------- */

static void test_snapshot_mapping(void **state)
{
    (void)state;
    env e;
    configure_ok(&e, STORE_TARGET);
    void *st = e.t.ops->stream_state_new(&e.t, PROV_STREAM_EVENTS);
    capture c = {0};

    assert_int_equal(feed(&e, st, PROV_STREAM_EVENTS,
                          SNAP("queued", "null", "null", ",\"deployment_url\":null"), &c),
                     PROV_PARSE_CONTINUE);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.ev[0].kind, PROV_EV_STATUS);
    assert_int_equal(c.ev[0].status, PROV_ST_QUEUED);
    assert_string_equal(c.ev[0].provider_status, "queued");
    assert_true(c.ev[0].progress == 0 && c.ev[0].total == 100);
    assert_false(c.ev[0].has_error);

    assert_int_equal(feed(&e, st, PROV_STREAM_EVENTS,
                          SNAP("in_progress", "{\"step\":\"processing\",\"progress\":40}",
                               "null", ""), &c),
                     PROV_PARSE_CONTINUE);
    assert_int_equal(c.n, 2);
    assert_int_equal(c.ev[1].status, PROV_ST_BUILDING);
    assert_string_equal(c.ev[1].provider_status, "in_progress");
    assert_string_equal(c.ev[1].step, "processing");
    assert_true(c.ev[1].progress == 40 && c.ev[1].total == 100);

    assert_int_equal(feed(&e, st, PROV_STREAM_EVENTS,
                          SNAP("completed", "{\"step\":\"complete\",\"progress\":100}", "null",
                               ",\"deployment_url\":\"https://store.example\""), &c),
                     PROV_PARSE_END);
    assert_int_equal(c.ev[2].status, PROV_ST_READY);
    assert_string_equal(c.ev[2].provider_status, "completed");
    assert_string_equal(c.ev[2].url, "https://store.example");
    assert_false(c.ev[2].has_error);

    /* failed without an error object still ends, with a generic failure */
    void *st2 = e.t.ops->stream_state_new(&e.t, PROV_STREAM_EVENTS);
    assert_int_equal(feed(&e, st2, PROV_STREAM_EVENTS, SNAP("failed", "null", "null", ""), &c),
                     PROV_PARSE_END);
    assert_int_equal(c.ev[3].status, PROV_ST_FAILED);
    assert_true(c.ev[3].has_error);
    assert_true(c.ev[3].total < 0); /* no percentage to report */
    /* an unknown word is relayed with its own name, not guessed */
    void *st3 = e.t.ops->stream_state_new(&e.t, PROV_STREAM_EVENTS);
    assert_int_equal(feed(&e, st3, PROV_STREAM_EVENTS, SNAP("paused", "null", "null", ""), &c),
                     PROV_PARSE_CONTINUE);
    assert_int_equal(c.ev[4].status, PROV_ST_UNKNOWN);
    assert_string_equal(c.ev[4].provider_status, "paused");
    /* data that is not a JSON object is skipped */
    assert_int_equal(feed(&e, st3, PROV_STREAM_EVENTS, "not json", &c), PROV_PARSE_IGNORED);
    assert_int_equal(c.n, 5);
    e.t.ops->stream_state_free(st);
    e.t.ops->stream_state_free(st2);
    e.t.ops->stream_state_free(st3);
    release(&e);
}

static void test_error_codes(void **state)
{
    (void)state;
    static const struct {
        int code;
        const char *status;       /* deployment_status sent */
        prov_status want;
        const char *name;
        bool retryable;
        const char *words;        /* in the message */
    } cases[] = {
        {10, "failed", PROV_ST_FAILED, "internal_error", false, "internal error"},
        {20, "failed", PROV_ST_FAILED, "bundle_retrieval_failed", true, "retrieve"},
        {30, "failed", PROV_ST_FAILED, "bundle_extraction_failed", false, "extract"},
        {40, "failed", PROV_ST_FAILED, "invalid_build_output", false, "output/"},
        {50, "failed", PROV_ST_FAILED, "deploy_failed", true, "transient"},
        {60, "completed", PROV_ST_READY, "deployment_url_unknown", false, "URL"},
        {60, "failed", PROV_ST_FAILED, "deployment_url_unknown", false, "URL"},
        {99, "failed", PROV_ST_FAILED, "deployment_error", false, "99"},
        /* an error object ends the deployment even if the word lags behind */
        {50, "in_progress", PROV_ST_FAILED, "deploy_failed", true, "deploy"},
    };
    env e;
    configure_ok(&e, STORE_TARGET);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        void *st = e.t.ops->stream_state_new(&e.t, PROV_STREAM_EVENTS);
        capture c = {0};
        char json[512];
        snprintf(json, sizeof json,
                 "{\"deployment_uuid\":\"d%zu\",\"deployment_status\":\"%s\",\"event\":"
                 "{\"step\":\"processing\",\"progress\":40},\"error\":{\"code\":%d},"
                 "\"deployment_url\":null}", i, cases[i].status, cases[i].code);
        assert_int_equal(feed(&e, st, PROV_STREAM_EVENTS, json, &c), PROV_PARSE_END);
        assert_int_equal(c.n, 1);
        assert_int_equal(c.ev[0].status, cases[i].want);
        assert_true(c.ev[0].has_error);
        assert_string_equal(c.ev[0].error.code, cases[i].name);
        assert_int_equal(c.ev[0].error.retryable, cases[i].retryable);
        if (!strstr(c.ev[0].error.message, cases[i].words))
            fail_msg("code %d: \"%s\" lacks \"%s\"", cases[i].code, c.ev[0].error.message,
                     cases[i].words);
        e.t.ops->stream_state_free(st);
    }
    release(&e);
}

static void test_dedupe(void **state)
{
    (void)state;
    env e;
    configure_ok(&e, STORE_TARGET);
    void *st = e.t.ops->stream_state_new(&e.t, PROV_STREAM_EVENTS);
    capture c = {0};
    const char *s40 = SNAP("in_progress", "{\"step\":\"processing\",\"progress\":40}", "null",
                           ",\"deployment_url\":null");
    const char *s60 = SNAP("in_progress", "{\"step\":\"processing\",\"progress\":60}", "null",
                           ",\"deployment_url\":null");
    assert_int_equal(feed(&e, st, PROV_STREAM_EVENTS, s40, &c), PROV_PARSE_CONTINUE);
    /* the server repeats the current snapshot on every reconnect */
    assert_int_equal(feed(&e, st, PROV_STREAM_EVENTS, s40, &c), PROV_PARSE_IGNORED);
    assert_int_equal(c.n, 1);
    /* a different field order is the same snapshot */
    assert_int_equal(feed(&e, st, PROV_STREAM_EVENTS,
                          "{\"event\":{\"progress\":40,\"step\":\"processing\"},\"error\":null,"
                          "\"deployment_status\":\"in_progress\",\"deployment_uuid\":\"dep-1\"}",
                          &c), PROV_PARSE_IGNORED);
    assert_int_equal(c.n, 1);

    /* across a cursor: save, restore into a fresh state, repeat ignored */
    char *saved = e.t.ops->stream_state_save(st);
    assert_non_null(saved);
    void *st2 = e.t.ops->stream_state_new(&e.t, PROV_STREAM_EVENTS);
    assert_int_equal(e.t.ops->stream_state_restore(st2, saved), 0);
    free(saved);
    assert_int_equal(feed(&e, st2, PROV_STREAM_EVENTS, s40, &c), PROV_PARSE_IGNORED);
    assert_int_equal(feed(&e, st2, PROV_STREAM_EVENTS, s60, &c), PROV_PARSE_CONTINUE);
    assert_int_equal(c.n, 2);
    assert_true(c.ev[1].progress == 60);

    /* a repeated terminal snapshot ends the stream without relaying again */
    const char *done = SNAP("completed", "{\"step\":\"complete\",\"progress\":100}", "null",
                            ",\"deployment_url\":\"https://x.example\"");
    assert_int_equal(feed(&e, st2, PROV_STREAM_EVENTS, done, &c), PROV_PARSE_END);
    assert_false(e.t.ops->stream_state_complete(st)); /* st stopped at 40% */
    saved = e.t.ops->stream_state_save(st2);
    void *st3 = e.t.ops->stream_state_new(&e.t, PROV_STREAM_EVENTS);
    assert_int_equal(e.t.ops->stream_state_restore(st3, saved), 0);
    free(saved);
    /* a cursor taken after the end: the stream need not connect again */
    assert_true(e.t.ops->stream_state_complete(st3));
    assert_int_equal(feed(&e, st3, PROV_STREAM_EVENTS, done, &c), PROV_PARSE_END);
    assert_int_equal(c.n, 3);
    assert_int_equal(e.t.ops->stream_state_restore(st3, "Xjunk"), -1);

    /* nothing seen yet: nothing to save; an oversized saved value is refused */
    void *fresh = e.t.ops->stream_state_new(&e.t, PROV_STREAM_EVENTS);
    assert_null(e.t.ops->stream_state_save(fresh));
    char *big = malloc(8192);
    memset(big, 'x', 8191);
    big[8191] = '\0';
    assert_int_equal(e.t.ops->stream_state_restore(fresh, big), -1);
    free(big);
    /* log tails are live only: no state to carry */
    void *logs = e.t.ops->stream_state_new(&e.t, PROV_STREAM_LOGS);
    assert_null(e.t.ops->stream_state_save(logs));
    assert_false(e.t.ops->stream_state_complete(logs));
    assert_int_equal(e.t.ops->stream_state_restore(logs, "anything"), 0);
    e.t.ops->stream_state_free(logs);
    e.t.ops->stream_state_free(fresh);
    e.t.ops->stream_state_free(st);
    e.t.ops->stream_state_free(st2);
    e.t.ops->stream_state_free(st3);
    release(&e);
}

static void test_hostnames(void **state)
{
    (void)state;
    env e;
    configure_ok(&e, STORE_TARGET);
    capture c = {0};
    void *st = e.t.ops->stream_state_new(&e.t, PROV_STREAM_EVENTS);
    assert_int_equal(feed(&e, st, PROV_STREAM_EVENTS,
                          SNAP("completed", "{\"step\":\"complete\",\"progress\":100}", "null",
                               ",\"deployment_hostnames\":[\"shop.example.store\",\"b.example\"]"),
                          &c), PROV_PARSE_END);
    assert_string_equal(c.ev[0].url, "https://shop.example.store");
    e.t.ops->stream_state_free(st);

    st = e.t.ops->stream_state_new(&e.t, PROV_STREAM_EVENTS);
    assert_int_equal(feed(&e, st, PROV_STREAM_EVENTS,
                          SNAP("completed", "null", "null",
                               ",\"deployment_url\":\"https://u.example\","
                               "\"deployment_hostnames\":[\"h.example\"]"), &c), PROV_PARSE_END);
    assert_string_equal(c.ev[1].url, "https://u.example"); /* the URL wins when both come */
    assert_true(c.ev[1].progress == 100);                 /* completed is 100% */
    e.t.ops->stream_state_free(st);

    st = e.t.ops->stream_state_new(&e.t, PROV_STREAM_EVENTS);
    assert_int_equal(feed(&e, st, PROV_STREAM_EVENTS,
                          SNAP("in_progress", "{\"step\":\"deploying\",\"progress\":75}", "null",
                               ",\"deployment_hostnames\":[]"), &c), PROV_PARSE_CONTINUE);
    assert_string_equal(c.ev[2].url, "");
    e.t.ops->stream_state_free(st);
    release(&e);
}

/* ---- runtime logs --------------------------------------------------------- */

static void test_logs(void **state)
{
    (void)state;
    env e;
    configure_ok(&e, STORE_TARGET);
    void *st = e.t.ops->stream_state_new(&e.t, PROV_STREAM_LOGS);
    capture c = {0};
    const char *ev =
        "{\"uuid\":\"u1\",\"project_uuid\":\"proj-1\","
        "\"request\":{\"method\":\"GET\",\"url\":\"/path\",\"status_code\":200},"
        "\"logs\":[{\"timestamp\":\"2025-01-01T00:00:01Z\",\"level\":\"debug\","
        "\"messages\":[\"d1\"]},"
        "{\"timestamp\":\"2025-01-01T00:00:02Z\",\"level\":\"warning\",\"messages\":[\"w1\","
        "\"w2\"]},"
        "{\"timestamp\":1735689603,\"level\":\"fatal\",\"messages\":[{\"k\":1}]},"
        "{\"level\":\"notice\",\"messages\":[\"n1\"]}],"
        "\"exceptions\":[{\"timestamp\":\"2025-01-01T00:00:04Z\",\"name\":\"TypeError\","
        "\"message\":\"boom\"}],"
        "\"timestamp\":\"2025-01-01T00:00:00Z\"}";
    assert_int_equal(feed(&e, st, PROV_STREAM_LOGS, ev, &c), PROV_PARSE_CONTINUE);
    assert_int_equal(c.n, 1); /* one event for one SSE event */
    cap_event *o = &c.ev[0];
    assert_int_equal(o->kind, PROV_EV_LOG);
    assert_int_equal(o->nlines, 7);
    assert_string_equal(o->lines[0].text, "GET /path 200");
    assert_string_equal(o->lines[0].level, "info");
    assert_string_equal(o->lines[0].source, "request");
    assert_string_equal(o->lines[0].ts, "2025-01-01T00:00:00Z");
    assert_string_equal(o->lines[1].text, "d1");
    assert_string_equal(o->lines[1].level, "debug");
    assert_string_equal(o->lines[1].source, "worker");
    assert_string_equal(o->lines[1].ts, "2025-01-01T00:00:01Z");
    assert_string_equal(o->lines[2].level, "warn");
    assert_string_equal(o->lines[3].text, "w2");
    assert_string_equal(o->lines[4].text, "{\"k\":1}");
    assert_string_equal(o->lines[4].level, "error");
    assert_string_equal(o->lines[4].ts, "2025-01-01T00:00:03.000Z");
    assert_string_equal(o->lines[5].level, "info");
    assert_string_equal(o->lines[5].ts, "2025-01-01T00:00:00Z"); /* the event's own */
    assert_string_equal(o->lines[6].text, "TypeError: boom");
    assert_string_equal(o->lines[6].level, "error");
    assert_string_equal(o->lines[6].source, "exception");

    /* a re-sent event (same uuid) is not relayed twice */
    assert_int_equal(feed(&e, st, PROV_STREAM_LOGS, ev, &c), PROV_PARSE_IGNORED);
    /* nothing to show: not relayed (and not counted) */
    assert_int_equal(feed(&e, st, PROV_STREAM_LOGS,
                          "{\"uuid\":\"u2\",\"request\":null,\"logs\":[],\"exceptions\":[]}", &c),
                     PROV_PARSE_IGNORED);
    /* request line only, without a status code */
    assert_int_equal(feed(&e, st, PROV_STREAM_LOGS,
                          "{\"uuid\":\"u3\",\"request\":{\"method\":\"POST\",\"url\":\"/cart\"}}",
                          &c), PROV_PARSE_CONTINUE);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.ev[1].lines[0].text, "POST /cart");
    e.t.ops->stream_state_free(st);
    release(&e);
}

/* ---- local records: get / list ------------------------------------------ */

typedef struct op_result {
    bool called;
    json_t *result;
    prov_error err;
    bool failed;
} op_result;

static void on_result(void *ud, json_t *result, const prov_error *err)
{
    op_result *r = ud;
    r->called = true;
    r->result = result;
    if (err) {
        r->failed = true;
        r->err = *err;
    }
}

static json_t *run_get(env *e, const char *id, prov_error *err)
{
    op_result r = {0};
    prov_op *op = e->t.ops->get_deployment(&e->t, id, on_result, &r, err);
    if (!op)
        return NULL;
    assert_false(r.called); /* never inside the starting call */
    uv_run(&e->loop, UV_RUN_DEFAULT);
    assert_true(r.called);
    assert_false(r.failed);
    return r.result;
}

static json_t *run_list(env *e, const prov_list_args *a, prov_error *err)
{
    op_result r = {0};
    prov_op *op = e->t.ops->list_deployments(&e->t, a, on_result, &r, err);
    if (!op)
        return NULL;
    uv_run(&e->loop, UV_RUN_DEFAULT);
    assert_true(r.called);
    return r.result;
}

static void observe(env *e, const char *id, const char *status, const char *extra)
{
    void *st = e->t.ops->stream_state_new(&e->t, PROV_STREAM_EVENTS);
    capture c = {0};
    char json[512];
    snprintf(json, sizeof json, "{\"deployment_uuid\":\"%s\",\"deployment_status\":\"%s\","
                                "\"event\":null,\"error\":%s}", id, status, extra);
    assert_true(feed(e, st, PROV_STREAM_EVENTS, json, &c) >= 0);
    e->t.ops->stream_state_free(st);
}

static void test_records(void **state)
{
    (void)state;
    env e;
    configure_ok(&e, STORE_TARGET);
    prov_error err;

    /* unknown: said plainly, with advice */
    memset(&err, 0, sizeof err);
    assert_null(e.t.ops->get_deployment(&e.t, "nope", on_result, NULL, &err));
    assert_non_null(strstr(err.message, "not created or observed by this deploy-mcp process"));
    assert_non_null(strstr(err.message, "stream_events"));

    observe(&e, "d-1", "queued", "null");
    observe(&e, "d-2", "completed", "null,\"deployment_url\":\"https://two.example\"");
    observe(&e, "d-3", "failed", "{\"code\":40}");
    observe(&e, "d-1", "in_progress", "null"); /* d-1 moves on */

    json_t *d = run_get(&e, "d-2", &err);
    assert_non_null(d);
    assert_string_equal(json_string_value(json_object_get(d, "status")), "ready");
    assert_string_equal(json_string_value(json_object_get(d, "providerStatus")), "completed");
    assert_string_equal(json_string_value(json_object_get(d, "url")), "https://two.example");
    assert_string_equal(json_string_value(json_object_get(d, "provider")), "bigcommerce");
    /* observed, not created here: which project it ran on is not known */
    assert_string_equal(json_string_value(json_object_get(d, "environment")), "unknown");
    json_decref(d);
    d = run_get(&e, "d-3", &err);
    assert_string_equal(json_string_value(json_object_get(d, "status")), "failed");
    assert_string_equal(json_string_value(json_object_get(json_object_get(d, "error"), "code")),
                        "invalid_build_output");
    json_decref(d);
    d = run_get(&e, "d-1", &err);
    assert_string_equal(json_string_value(json_object_get(d, "status")), "building");
    json_decref(d);

    /* list: newest first, limit + cursor pages, filters */
    prov_list_args a = {.limit = 2};
    json_t *page = run_list(&e, &a, &err);
    json_t *deps = json_object_get(page, "deployments");
    assert_int_equal(json_array_size(deps), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(deps, 0), "id")), "d-3");
    assert_string_equal(json_string_value(json_object_get(json_array_get(deps, 1), "id")), "d-2");
    const char *next = json_string_value(json_object_get(page, "nextCursor"));
    assert_non_null(next);
    char cursor[256];
    snprintf(cursor, sizeof cursor, "%s", next);
    json_decref(page);
    a.cursor = cursor;
    page = run_list(&e, &a, &err);
    deps = json_object_get(page, "deployments");
    assert_int_equal(json_array_size(deps), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(deps, 0), "id")), "d-1");
    assert_null(json_object_get(page, "nextCursor"));
    json_decref(page);

    prov_list_args f = {.status = "ready", .limit = 20};
    page = run_list(&e, &f, &err);
    assert_int_equal(json_array_size(json_object_get(page, "deployments")), 1);
    json_decref(page);
    prov_list_args g = {.environment = "preview", .limit = 20};
    page = run_list(&e, &g, &err);
    assert_int_equal(json_array_size(json_object_get(page, "deployments")), 0);
    json_decref(page);

    prov_list_args bad = {.cursor = "garbage!", .limit = 20};
    memset(&err, 0, sizeof err);
    assert_null(e.t.ops->list_deployments(&e.t, &bad, on_result, NULL, &err));
    assert_string_equal(err.code, "invalid_cursor");
    release(&e);
}

static void test_create_needs_artifact(void **state)
{
    (void)state;
    env e;
    configure_ok(&e, STORE_TARGET);
    setenv(TOKEN_ENV, TOKEN, 1);
    prov_create_args a = {.branch = "main", .idempotency_key = "k"};
    prov_error err;
    memset(&err, 0, sizeof err);
    assert_null(e.t.ops->create_preview(&e.t, &a, on_result, NULL, &err));
    assert_string_equal(err.code, "artifact_required");
    assert_non_null(strstr(err.message, "artifact"));
    assert_non_null(strstr(err.message, "bundle"));
    unsetenv(TOKEN_ENV);
    a.artifact = "/tmp";
    assert_null(e.t.ops->create_preview(&e.t, &a, on_result, NULL, &err));
    assert_non_null(strstr(err.message, TOKEN_ENV)); /* names the variable, not a value */
    release(&e);
}

/* ---- error mapping ---------------------------------------------------------- */

static void map(env *e, long status, const char *body, prov_error *err)
{
    http_response res = {.status = status, .body = body, .body_len = strlen(body)};
    memset(err, 0, sizeof *err);
    e->t.ops->map_http_error(&e->t, &res, err);
}

static void test_error_mapping(void **state)
{
    (void)state;
    env e;
    configure_ok(&e, STORE_TARGET);
    prov_error err;
    map(&e, 401, "{\"status\":401,\"title\":\"Unauthorized\",\"type\":\"t\",\"errors\":{}}", &err);
    assert_string_equal(err.code, "unauthorized");
    assert_non_null(strstr(err.message, TOKEN_ENV));
    assert_false(err.retryable);
    map(&e, 403, "{\"status\":403,\"title\":\"Forbidden\"}", &err);
    assert_non_null(strstr(err.message, "Infrastructure Hosting is not enabled for this store"));
    assert_null(strstr(err.message, TOKEN_ENV)); /* different advice from 401 */
    map(&e, 404, "{\"status\":404,\"title\":\"Not Found\"}", &err);
    assert_string_equal(err.code, "not_found");
    map(&e, 409, "{\"status\":409,\"title\":\"Conflict\"}", &err);
    assert_non_null(strstr(err.message, "already in progress"));
    map(&e, 422, "{\"status\":422,\"title\":\"Invalid\",\"errors\":{\"project_uuid\":"
                 "\"is required\",\"upload_uuid\":[\"not found\"]}}", &err);
    assert_non_null(strstr(err.message, "project_uuid: is required"));
    assert_non_null(strstr(err.message, "upload_uuid: not found"));
    map(&e, 429, "{\"status\":429}", &err);
    assert_true(err.retryable);
    assert_non_null(strstr(err.message, "wait"));
    map(&e, 503, "<html>", &err);
    assert_true(err.retryable);
    assert_int_equal(err.http_status, 503);
    http_response net = {.status = 0, .error = "Connection refused"};
    e.t.ops->map_http_error(&e.t, &net, &err);
    assert_string_equal(err.code, "network_error");
    release(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_configure),
        cmocka_unit_test(test_stream_spec),
        cmocka_unit_test(test_snapshot_mapping),
        cmocka_unit_test(test_error_codes),
        cmocka_unit_test(test_dedupe),
        cmocka_unit_test(test_hostnames),
        cmocka_unit_test(test_logs),
        cmocka_unit_test(test_records),
        cmocka_unit_test(test_create_needs_artifact),
        cmocka_unit_test(test_error_mapping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_stream.c — the generic reconnecting stream (providers/stream.c)
 * against a scripted SSE server (tests/unit/providers/stream_test_server.py,
 * spawned once for the group), through a tiny adapter defined here that
 * turns each SSE event into one common event and ends at `event: done`.
 *
 * The server plays one logical sequence of 8 events (6 relayable, one the
 * adapter ignores, then done) in different ways: closing every 2 events and
 * honouring Last-Event-ID, replaying from the start with or without ids,
 * answering 404 or 503. What must hold (PRODUCT.md §3 "Cursors" and
 * "Upstream stream limits"): every relayable event exactly once, in order,
 * across reconnects and across a cursor; bad cursors refused; nothing after
 * close. Every test runs its own loop and ends with uv_loop_close() == 0. */
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
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "providers/b64.h"
#include "providers/http.h"
#include "providers/provider.h"

extern char **environ;

#define WAIT_MS 8000
#define TICK_MS 5

static pyserver g_server = {.pid = -1, .stdin_fd = -1};
static char g_base[64];

/* What the next stream_spec asks the server for. */
static char g_key[64];
static char g_query[128];
static enum prov_resume g_resume = PROV_RESUME_LAST_EVENT_ID;
static bool g_reconnect = true;
static int g_specs;                  /* stream_spec calls */
static int g_spec_fail_at;           /* this stream_spec call fails (0: none) */

/* The relayable events of the server's sequence, as on_event labels them. */
static const char *const SEQ_LABELS[] = {
    "S:queued", "L:line 2", "L:line 3", "S:building https://u.example/4", "L:line 6",
    "L:line 7",
};
#define SEQ_N 6
/* Their positions in the SSE sequence (ids when the server sends ids). */
static const int SEQ_POS[SEQ_N] = {1, 2, 3, 4, 6, 7};

/* ---------------------------------------------------------- test adapter */

typedef struct ts_state {
    int parsed;          /* stream_parse calls on this logical stream */
} ts_state;

static int g_state_news, g_state_frees, g_final_parsed, g_restored = -1;

static int ts_spec(prov_target *t, enum prov_stream_kind kind, const char *id,
                   prov_stream_spec *spec, prov_error *err)
{
    (void)t;
    (void)kind;
    g_specs++;
    memset(spec, 0, sizeof *spec);
    if (g_spec_fail_at && g_specs == g_spec_fail_at) {
        prov_error_set(err, "missing_credentials", 0, false, "the token went away");
        return -1;
    }
    if (!id || strcmp(id, "bad") == 0) {
        prov_error_set(err, "invalid_arguments", 0, false, "no such stream id");
        return -1;
    }
    snprintf(spec->url, sizeof spec->url, "%s/s/%s?key=%s&%s", g_base, id, g_key, g_query);
    snprintf(spec->headers[0], sizeof spec->headers[0], "X-Test: 1");
    spec->nheaders = 1;
    spec->resume = g_resume;
    spec->reconnect = g_reconnect;
    return 0;
}

static int ts_parse(prov_target *t, void *state, enum prov_stream_kind kind,
                    const sse_event *ev, prov_emit_fn emit, void *sink, prov_error *err)
{
    (void)t;
    (void)kind;
    ts_state *st = state;
    if (st)
        st->parsed++;
    prov_event e = {.status = PROV_ST_UNKNOWN, .progress = -1, .total = -1};
    prov_log_line line = {.level = "info"};
    if (strcmp(ev->type, "done") == 0)
        return PROV_PARSE_END;
    if (strcmp(ev->type, "fatal") == 0) {
        prov_error_set(err, "test_fatal", 0, false, "fatal: %s", ev->data);
        return -1;
    }
    if (strcmp(ev->type, "status") == 0) {
        char word[32] = "";
        const char *sp = strchr(ev->data, ' ');
        size_t n = sp ? (size_t)(sp - ev->data) : ev->data_len;
        snprintf(word, sizeof word, "%.*s", (int)n, ev->data);
        e.kind = PROV_EV_STATUS;
        e.status = prov_status_parse(word);
        e.provider_status = word;
        e.url = sp ? sp + 1 : NULL;
        emit(sink, &e);
        return PROV_PARSE_CONTINUE;
    }
    if (strcmp(ev->type, "log") == 0 || strcmp(ev->type, "two") == 0) {
        bool two = ev->type[0] == 't';
        char text[256];
        for (int i = 0; i < (two ? 2 : 1); i++) {
            if (two)
                snprintf(text, sizeof text, "%s#%d", ev->data, i + 1);
            else
                snprintf(text, sizeof text, "%s", ev->data);
            line.text = text;
            line.len = strlen(text);
            e.kind = PROV_EV_LOG;
            e.lines = &line;
            e.nlines = 1;
            emit(sink, &e);
        }
        return PROV_PARSE_CONTINUE;
    }
    return PROV_PARSE_IGNORED;
}

static void ts_map_http_error(prov_target *t, const http_response *res, prov_error *err)
{
    (void)t;
    prov_error_set(err, "test_http", res->status, false, "HTTP %ld: %.*s", res->status,
                   (int)res->body_len, res->body ? res->body : "");
}

static void *ts_state_new(prov_target *t, enum prov_stream_kind kind)
{
    (void)t;
    (void)kind;
    g_state_news++;
    return calloc(1, sizeof(ts_state));
}

static void ts_state_free(void *state)
{
    ts_state *st = state;
    g_state_frees++;
    g_final_parsed = st->parsed;
    free(st);
}

static char *ts_state_save(const void *state)
{
    const ts_state *st = state;
    if (st->parsed == 0)
        return NULL;   /* nothing worth saving */
    char *out = malloc(32);
    if (out)
        snprintf(out, 32, "parsed=%d", st->parsed);
    return out;
}

static int ts_state_restore(void *state, const char *saved)
{
    ts_state *st = state;
    int n = -1;
    char tail;
    if (sscanf(saved, "parsed=%d%c", &n, &tail) != 1 || n < 0)
        return -1;
    st->parsed = n;
    g_restored = n;
    return 0;
}

static const struct provider ts_ops = {
    .name = "teststream", .display_name = "TestStream", .caps = PROV_CAP_STREAM_EVENTS,
    .stream_spec = ts_spec, .stream_parse = ts_parse, .map_http_error = ts_map_http_error,
};

static const struct provider ts_stateful_ops = {
    .name = "teststream", .display_name = "TestStream", .caps = PROV_CAP_STREAM_EVENTS,
    .stream_spec = ts_spec, .stream_parse = ts_parse, .map_http_error = ts_map_http_error,
    .stream_state_new = ts_state_new, .stream_state_free = ts_state_free,
    .stream_state_save = ts_state_save, .stream_state_restore = ts_state_restore,
};

static const struct provider ts_nostream_ops = {
    .name = "teststream", .display_name = "NoStream", .caps = 0,
};

/* ------------------------------------------------------------- server */

static int group_setup(void **state)
{
    (void)state;
    setenv("no_proxy", "127.0.0.1,localhost", 1);
    setenv("NO_PROXY", "127.0.0.1,localhost", 1);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return -1;
    signal(SIGPIPE, SIG_IGN);

    if (pyserver_start(&g_server, "unit/providers/stream_test_server.py") != 0)
        return -1;
    snprintf(g_base, sizeof g_base, "http://127.0.0.1:%d", g_server.port);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    pyserver_stop(&g_server);
    curl_global_cleanup();
    return 0;
}

static size_t collect_body(char *p, size_t size, size_t n, void *ud)
{
    char *buf = ud;
    size_t have = strlen(buf), add = size * n;
    if (have + add >= 4096)
        return 0;
    memcpy(buf + have, p, add);
    buf[have + add] = '\0';
    return add;
}

/* The server's counters for the current key (blocking; the loop is idle). */
static json_t *server_stats(void)
{
    char url[256], body[4096] = "";
    snprintf(url, sizeof url, "%s/stats?key=%s", g_base, g_key);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_cleanup(c);
    json_t *j = json_loads(body, 0, NULL);
    assert_non_null(j);
    return j;
}

static json_int_t stat_int(const char *name)
{
    json_t *s = server_stats();
    json_int_t v = json_integer_value(json_object_get(s, name));
    json_decref(s);
    return v;
}

/* "[null,\"2\",...]" — the Last-Event-ID headers the server received. */
static char *stat_last_ids(void)
{
    json_t *s = server_stats();
    char *d = json_dumps(json_object_get(s, "lastEventIds"), JSON_COMPACT);
    json_decref(s);
    return d;
}

/* ------------------------------------------------------- loop harness */

typedef struct env {
    uv_loop_t loop;
    uv_timer_t ticker;      /* keeps UV_RUN_ONCE returning regularly */
    http_client *http;
    cfg_target ct;
    prov_target t;
} env;

/* One stream's observations. */
typedef struct run {
    env *e;
    prov_stream *s;
    json_t *labels;         /* on_event, in order */
    int close_after;        /* close inside on_event after this many (0: never) */
    bool cursor_at_close;   /* take a cursor right before that close */
    char *cursor;
    bool closed;
    int ends;
    bool failed;
    prov_error err;
    unsigned long events_at_end;
    unsigned reconnects_at_end;
    prov_status status_at_end;
    char url_at_end[256];
} run;

static void tick_cb(uv_timer_t *t) { (void)t; }

static unsigned g_key_seq;

static int setup(void **state)
{
    env *e = calloc(1, sizeof *e);
    assert_non_null(e);
    assert_int_equal(uv_loop_init(&e->loop), 0);
    uv_timer_init(&e->loop, &e->ticker);
    uv_timer_start(&e->ticker, tick_cb, TICK_MS, TICK_MS);
    e->http = http_client_new(&e->loop);
    assert_non_null(e->http);
    e->ct.name = (char *)"t";
    e->ct.provider = (char *)"teststream";
    e->t.cfg = &e->ct;
    e->t.ops = &ts_ops;
    e->t.http = e->http;
    e->t.loop = &e->loop;
    snprintf(g_key, sizeof g_key, "k%d-%u", (int)getpid(), ++g_key_seq);
    snprintf(g_query, sizeof g_query, "mode=all&ids=1");
    g_resume = PROV_RESUME_LAST_EVENT_ID;
    g_reconnect = true;
    g_specs = 0;
    g_spec_fail_at = 0;
    g_state_news = g_state_frees = 0;
    g_final_parsed = 0;
    g_restored = -1;
    *state = e;
    return 0;
}

static void on_close(uv_handle_t *h) { (void)h; }

static int teardown(void **state)
{
    env *e = *state;
    http_client_destroy(e->http);
    uv_close((uv_handle_t *)&e->ticker, on_close);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&e->loop), 0);
    assert_int_equal(g_state_news, g_state_frees);
    free(e);
    return 0;
}

static void on_event(void *ud, const prov_event *ev)
{
    run *r = ud;
    assert_false(r->closed);
    assert_int_equal(r->ends, 0);
    char label[512];
    if (ev->kind == PROV_EV_STATUS)
        snprintf(label, sizeof label, "S:%s%s%s", prov_status_name(ev->status),
                 ev->url ? " " : "", ev->url ? ev->url : "");
    else if (ev->kind == PROV_EV_LOG && ev->nlines == 1)
        snprintf(label, sizeof label, "L:%.*s", (int)ev->lines[0].len, ev->lines[0].text);
    else
        snprintf(label, sizeof label, "?%d", (int)ev->kind);
    json_array_append_new(r->labels, json_string(label));
    if (r->close_after > 0 && (int)json_array_size(r->labels) == r->close_after) {
        if (r->cursor_at_close) {
            r->cursor = prov_stream_cursor(r->s);
            assert_non_null(r->cursor);
        }
        prov_stream_close(r->s);   /* from inside the stream's own callback */
        r->s = NULL;
        r->closed = true;
    }
}

static void on_end(void *ud, const prov_error *err)
{
    run *r = ud;
    assert_false(r->closed);
    r->ends++;
    if (err) {
        r->failed = true;
        r->err = *err;
    }
    r->events_at_end = prov_stream_events(r->s);
    r->reconnects_at_end = prov_stream_reconnects(r->s);
    const char *url = NULL;
    r->status_at_end = prov_stream_status(r->s, NULL, &url);
    snprintf(r->url_at_end, sizeof r->url_at_end, "%s", url ? url : "");
    r->s = NULL;   /* dead once this returns */
}

static const prov_stream_callbacks cbs = {on_event, on_end};

static void run_init(run *r, env *e)
{
    memset(r, 0, sizeof *r);
    r->e = e;
    r->labels = json_array();
}

static void run_free(run *r)
{
    json_decref(r->labels);
    free(r->cursor);
    memset(r, 0, sizeof *r);
}

static void open_stream(run *r, const char *id, const char *cursor)
{
    prov_error err;
    memset(&err, 0, sizeof err);
    r->s = prov_stream_open(&r->e->t, PROV_STREAM_EVENTS, id, cursor, &cbs, r, &err);
    if (!r->s)
        fail_msg("prov_stream_open failed: %s: %s", err.code, err.message);
}

static void run_for(env *e, int ms)
{
    uint64_t end = uv_now(&e->loop) + (uint64_t)ms;
    while (uv_now(&e->loop) < end)
        uv_run(&e->loop, UV_RUN_ONCE);
}

/* Runs until the stream ended or was closed. */
static void wait_done(run *r)
{
    uint64_t end = uv_now(&r->e->loop) + WAIT_MS;
    while (!r->ends && !r->closed && uv_now(&r->e->loop) < end)
        uv_run(&r->e->loop, UV_RUN_ONCE);
    if (!r->ends && !r->closed)
        fail_msg("the stream neither ended nor was closed in time");
}

/* The labels must be SEQ_LABELS[from .. to). */
static void assert_labels(const run *r, size_t from, size_t to)
{
    bool ok = json_array_size(r->labels) == to - from;
    for (size_t i = from; ok && i < to; i++)
        ok = strcmp(json_string_value(json_array_get(r->labels, i - from)), SEQ_LABELS[i]) == 0;
    if (!ok) {
        char *d = json_dumps(r->labels, JSON_COMPACT);
        fail_msg("events %s, expected SEQ_LABELS[%zu..%zu)", d, from, to);
    }
}

static void assert_clean_end(const run *r)
{
    assert_int_equal(r->ends, 1);
    if (r->failed)
        fail_msg("the stream failed: %s: %s", r->err.code, r->err.message);
}

/* -------------------------------------------------- (a) Last-Event-ID */

static void test_last_event_id_resume(void **state)
{
    env *e = *state;
    snprintf(g_query, sizeof g_query, "mode=lei&ids=1&per=2");
    run r;
    run_init(&r, e);
    open_stream(&r, "d1", NULL);
    wait_done(&r);
    assert_clean_end(&r);
    assert_labels(&r, 0, SEQ_N);
    assert_int_equal(r.events_at_end, SEQ_N);
    assert_int_equal(r.reconnects_at_end, 3);
    assert_int_equal(r.status_at_end, PROV_ST_BUILDING);
    assert_string_equal(r.url_at_end, "https://u.example/4");
    assert_int_equal(stat_int("connections"), 4);
    char *ids = stat_last_ids();
    assert_string_equal(ids, "[null,\"2\",\"4\",\"6\"]");
    free(ids);
    assert_int_equal(g_specs, 4); /* the adapter is asked again for every connection */
    run_free(&r);
}

/* A reconnect asks the adapter for a fresh spec; when that fails (the
 * credentials went away), the stream ends with the adapter's error. */
static void test_reconnect_spec_fails(void **state)
{
    env *e = *state;
    snprintf(g_query, sizeof g_query, "mode=lei&ids=1&per=2");
    g_spec_fail_at = 2;
    run r;
    run_init(&r, e);
    open_stream(&r, "d1", NULL);
    wait_done(&r);
    assert_int_equal(r.ends, 1);
    assert_true(r.failed);
    assert_string_equal(r.err.code, "missing_credentials");
    assert_string_equal(r.err.message, "the token went away");
    assert_labels(&r, 0, 2); /* the first connection's events */
    assert_int_equal(g_specs, 2);
    assert_int_equal(stat_int("connections"), 1);
    run_free(&r);
}

/* ------------------------------------- (b) replay although ids are sent */

static void test_replay_with_ids_detected(void **state)
{
    env *e = *state;
    snprintf(g_query, sizeof g_query, "mode=replay&ids=1&per=2");
    run r;
    run_init(&r, e);
    open_stream(&r, "d1", NULL);
    wait_done(&r);
    assert_clean_end(&r);
    assert_labels(&r, 0, SEQ_N);
    assert_int_equal(r.events_at_end, SEQ_N);
    assert_int_equal(r.reconnects_at_end, 3);
    assert_int_equal(stat_int("connections"), 4);
    char *ids = stat_last_ids();
    assert_string_equal(ids, "[null,\"2\",\"4\",\"6\"]");   /* asked, ignored */
    free(ids);
    run_free(&r);
}

/* ------------------------------------------- (c) replay without ids */

static void test_replay_without_ids(void **state)
{
    env *e = *state;
    /* PROV_RESUME_REPLAY, and PROV_RESUME_LAST_EVENT_ID falling back to
     * skipping by count when the server sends no ids. */
    const enum prov_resume modes[] = {PROV_RESUME_REPLAY, PROV_RESUME_LAST_EVENT_ID};
    for (size_t m = 0; m < 2; m++) {
        snprintf(g_key, sizeof g_key, "k%d-%u", (int)getpid(), ++g_key_seq);
        snprintf(g_query, sizeof g_query, "mode=replay&ids=0&per=2");
        g_resume = modes[m];
        run r;
        run_init(&r, e);
        open_stream(&r, "d1", NULL);
        wait_done(&r);
        assert_clean_end(&r);
        assert_labels(&r, 0, SEQ_N);
        assert_int_equal(r.reconnects_at_end, 3);
        assert_int_equal(stat_int("connections"), 4);
        char *ids = stat_last_ids();
        assert_string_equal(ids, "[null,null,null,null]");
        free(ids);
        run_free(&r);
    }
}

/* --------------------------------------------------- (d) cursors */

static void test_cursor_roundtrip(void **state)
{
    env *e = *state;
    static const struct {
        const char *query;
        enum prov_resume resume;
    } cases[] = {
        {"mode=lei&ids=1&per=100", PROV_RESUME_LAST_EVENT_ID},     /* honours the id */
        {"mode=replay&ids=1&per=100", PROV_RESUME_LAST_EVENT_ID},  /* ignores it */
        {"mode=replay&ids=0&per=100", PROV_RESUME_REPLAY},         /* no ids at all */
    };
    for (size_t c = 0; c < 3; c++) {
        for (int k = 1; k < SEQ_N; k++) {
            snprintf(g_key, sizeof g_key, "k%d-%u", (int)getpid(), ++g_key_seq);
            snprintf(g_query, sizeof g_query, "%s", cases[c].query);
            g_resume = cases[c].resume;
            run a;
            run_init(&a, e);
            a.close_after = k;
            a.cursor_at_close = true;
            open_stream(&a, "d1", NULL);
            wait_done(&a);
            assert_true(a.closed);
            assert_int_equal(a.ends, 0);
            assert_labels(&a, 0, (size_t)k);

            run b;
            run_init(&b, e);
            open_stream(&b, "d1", a.cursor);
            /* The cursor carries the latest status before anything arrives. */
            const char *ps = NULL, *url = NULL;
            prov_status st = prov_stream_status(b.s, &ps, &url);
            if (k >= 4) {
                assert_int_equal(st, PROV_ST_BUILDING);
                assert_string_equal(ps, "building");
                assert_string_equal(url, "https://u.example/4");
            } else {
                assert_int_equal(st, PROV_ST_QUEUED);
                assert_string_equal(ps, "queued");
                assert_null(url);
            }
            assert_int_equal(prov_stream_events(b.s), 0);
            wait_done(&b);
            assert_clean_end(&b);
            assert_labels(&b, (size_t)k, SEQ_N);
            assert_int_equal(b.events_at_end, SEQ_N - k);
            assert_int_equal(b.reconnects_at_end, 0);
            assert_int_equal(b.status_at_end, PROV_ST_BUILDING);
            assert_string_equal(b.url_at_end, "https://u.example/4");
            if (c == 0) {
                char want[64];
                snprintf(want, sizeof want, "[null,\"%d\"]", SEQ_POS[k - 1]);
                char *ids = stat_last_ids();
                assert_string_equal(ids, want);
                free(ids);
            }
            run_free(&a);
            run_free(&b);
        }
    }
}

static void expect_open_error(env *e, const char *id, const char *cursor, const char *code,
                              const char *in_message)
{
    run r;
    run_init(&r, e);
    prov_error err;
    memset(&err, 0, sizeof err);
    prov_stream *s = prov_stream_open(&e->t, PROV_STREAM_EVENTS, id, cursor, &cbs, &r, &err);
    if (s)
        fail_msg("cursor \"%s\" was accepted", cursor ? cursor : "(null)");
    assert_string_equal(err.code, code);
    if (in_message && !strstr(err.message, in_message))
        fail_msg("\"%s\" not in: %s", in_message, err.message);
    run_free(&r);
}

static char *encode(const char *json_text)
{
    return b64url_encode((const unsigned char *)json_text, strlen(json_text));
}

static void test_cursor_invalid(void **state)
{
    env *e = *state;
    snprintf(g_query, sizeof g_query, "mode=lei&ids=1&per=100");
    run a;
    run_init(&a, e);
    a.close_after = 2;
    a.cursor_at_close = true;
    open_stream(&a, "d1", NULL);
    wait_done(&a);
    assert_non_null(a.cursor);

    /* Another deployment's cursor. */
    expect_open_error(e, "d2", a.cursor, "invalid_cursor", "another deployment");

    static const char *const garbage[] = {"", "!!!", "A", "not-a-cursor", "eyJ2IjoxfQ"};
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++)
        expect_open_error(e, "d1", garbage[i], "invalid_cursor", NULL);
    static const char *const bad_json[] = {
        "not json",
        "[]",
        "{\"v\":2,\"d\":\"d1\",\"n\":2,\"i\":\"2\",\"f\":\"1\"}",     /* other version */
        "{\"v\":1,\"d\":\"d1\",\"n\":-1,\"i\":\"2\",\"f\":\"1\"}",    /* negative count */
        "{\"v\":1,\"d\":\"d1\",\"n\":\"2\",\"i\":\"2\",\"f\":\"1\"}", /* wrong type */
        "{\"v\":1,\"d\":\"d1\",\"i\":\"2\",\"f\":\"1\"}",             /* missing n */
        "{\"v\":1,\"d\":\"d1\",\"n\":2,\"i\":\"2\",\"f\":\"1\",\"s\":5}",
    };
    for (size_t i = 0; i < sizeof bad_json / sizeof bad_json[0]; i++) {
        char *c = encode(bad_json[i]);
        expect_open_error(e, "d1", c, "invalid_cursor", NULL);
        free(c);
    }
    /* An id longer than any SSE id. */
    char *long_id = malloc(SSE_MAX_ID + 200);
    int off = sprintf(long_id, "{\"v\":1,\"d\":\"d1\",\"n\":2,\"f\":\"1\",\"i\":\"");
    memset(long_id + off, '7', SSE_MAX_ID + 1);
    strcpy(long_id + off + SSE_MAX_ID + 1, "\"}");
    char *c = encode(long_id);
    expect_open_error(e, "d1", c, "invalid_cursor", NULL);
    free(c);
    free(long_id);

    /* A hand-made but well-formed cursor is honoured. */
    c = encode("{\"v\":1,\"d\":\"d1\",\"n\":4,\"i\":\"4\",\"f\":\"1\"}");
    run b;
    run_init(&b, e);
    open_stream(&b, "d1", c);
    free(c);
    wait_done(&b);
    assert_clean_end(&b);
    assert_labels(&b, 4, SEQ_N);

    /* The adapter's own refusal and a platform without streams. */
    expect_open_error(e, "bad", NULL, "invalid_arguments", "no such stream id");
    e->t.ops = &ts_nostream_ops;
    expect_open_error(e, "d1", NULL, "unsupported", "NoStream");
    e->t.ops = &ts_ops;
    run_free(&a);
    run_free(&b);
}

/* ------------------------------------------------ (e) HTTP errors */

static void test_http_404_no_reconnect(void **state)
{
    env *e = *state;
    snprintf(g_query, sizeof g_query, "mode=notfound");
    run r;
    run_init(&r, e);
    open_stream(&r, "d1", NULL);
    wait_done(&r);
    assert_int_equal(r.ends, 1);
    assert_true(r.failed);
    assert_string_equal(r.err.code, "test_http");   /* the adapter's mapping */
    assert_int_equal(r.err.http_status, 404);
    assert_false(r.err.retryable);
    assert_non_null(strstr(r.err.message, "no_such_deployment"));   /* body reached it */
    assert_int_equal(r.events_at_end, 0);
    assert_int_equal(r.reconnects_at_end, 0);
    run_for(e, 300);
    assert_int_equal(stat_int("connections"), 1);
    run_free(&r);
}

static void test_http_503_then_ok(void **state)
{
    env *e = *state;
    snprintf(g_query, sizeof g_query, "mode=flaky&ids=1");
    run r;
    run_init(&r, e);
    open_stream(&r, "d1", NULL);
    wait_done(&r);
    assert_clean_end(&r);
    assert_labels(&r, 0, SEQ_N);
    assert_int_equal(r.reconnects_at_end, 1);
    assert_int_equal(stat_int("connections"), 2);

    /* Closing while the reconnect back-off timer is pending. */
    snprintf(g_key, sizeof g_key, "k%d-%u", (int)getpid(), ++g_key_seq);
    run c;
    run_init(&c, e);
    open_stream(&c, "d1", NULL);
    uint64_t end = uv_now(&e->loop) + WAIT_MS;
    while (stat_int("connections") < 1 && uv_now(&e->loop) < end)
        run_for(e, 20);
    run_for(e, 100);   /* the 503 is in; the retry waits >= 250 ms */
    prov_stream_close(c.s);
    c.s = NULL;
    run_for(e, 500);
    assert_int_equal(c.ends, 0);
    assert_int_equal(json_array_size(c.labels), 0);
    assert_int_equal(stat_int("connections"), 1);
    run_free(&r);
    run_free(&c);
}

static void test_early_close_without_reconnect(void **state)
{
    env *e = *state;
    snprintf(g_query, sizeof g_query, "mode=early&ids=1&per=2");
    g_reconnect = false;
    run r;
    run_init(&r, e);
    open_stream(&r, "d1", NULL);
    wait_done(&r);
    assert_int_equal(r.ends, 1);
    assert_true(r.failed);
    assert_string_equal(r.err.code, "stream_closed");
    assert_labels(&r, 0, 2);
    assert_int_equal(stat_int("connections"), 1);
    run_free(&r);
}

static void test_fatal_parse(void **state)
{
    env *e = *state;
    /* An in-stream error the adapter deems fatal (-1) ends the stream with
     * the adapter's error; no reconnect. */
    snprintf(g_query, sizeof g_query, "mode=fatal&ids=1");
    run r;
    run_init(&r, e);
    open_stream(&r, "d1", NULL);
    wait_done(&r);
    assert_int_equal(r.ends, 1);
    assert_true(r.failed);
    assert_string_equal(r.err.code, "test_fatal");
    assert_string_equal(r.err.message, "fatal: boom");
    assert_labels(&r, 0, 2);
    assert_int_equal(r.reconnects_at_end, 0);
    run_for(e, 100);
    assert_int_equal(stat_int("connections"), 1);
    run_free(&r);
}

/* -------------------------------------------- (f) close in on_event */

static void test_close_inside_on_event(void **state)
{
    env *e = *state;
    /* Everything arrives in one chunk; closing at event k delivers nothing
     * more, not even the events already received, and never on_end — also
     * when the terminal `done` sits right behind the closing event. */
    for (int k = 1; k <= SEQ_N; k++) {
        run r;
        run_init(&r, e);
        r.close_after = k;
        open_stream(&r, "d1", NULL);
        wait_done(&r);
        assert_true(r.closed);
        run_for(e, 50);
        assert_labels(&r, 0, (size_t)k);
        assert_int_equal(r.ends, 0);
        run_free(&r);
    }

    /* Closing during the first of two events one SSE event produced. */
    snprintf(g_query, sizeof g_query, "mode=two&ids=0");
    run t;
    run_init(&t, e);
    t.close_after = 1;
    open_stream(&t, "d1", NULL);
    wait_done(&t);
    run_for(e, 50);
    assert_int_equal(json_array_size(t.labels), 1);
    assert_string_equal(json_string_value(json_array_get(t.labels, 0)), "L:a#1");
    run_free(&t);

    /* Closing a live connection closes it upstream. */
    snprintf(g_key, sizeof g_key, "k%d-%u", (int)getpid(), ++g_key_seq);
    snprintf(g_query, sizeof g_query, "mode=hold&ids=1&per=4");
    run h;
    run_init(&h, e);
    h.close_after = 2;
    open_stream(&h, "d1", NULL);
    wait_done(&h);
    uint64_t end = uv_now(&e->loop) + WAIT_MS;
    while (stat_int("open") > 0 && uv_now(&e->loop) < end)
        run_for(e, 20);
    assert_int_equal(stat_int("open"), 0);
    assert_labels(&h, 0, 2);
    run_free(&h);
}

static void test_pause(void **state)
{
    env *e = *state;
    run r;
    run_init(&r, e);
    open_stream(&r, "d1", NULL);
    prov_stream_pause(r.s, true);
    run_for(e, 300);
    assert_int_equal(json_array_size(r.labels), 0);
    assert_int_equal(r.ends, 0);
    prov_stream_pause(r.s, false);
    wait_done(&r);
    assert_clean_end(&r);
    assert_labels(&r, 0, SEQ_N);
    run_free(&r);
}

/* ----------------------------------------- (g) adapter state in cursors */

static json_t *decode_cursor(const char *cursor)
{
    size_t n = 0;
    unsigned char *raw = b64url_decode(cursor, &n);
    assert_non_null(raw);
    json_t *j = json_loadb((const char *)raw, n, 0, NULL);
    free(raw);
    assert_non_null(j);
    return j;
}

static void test_state_in_cursor(void **state)
{
    env *e = *state;
    e->t.ops = &ts_stateful_ops;
    snprintf(g_query, sizeof g_query, "mode=lei&ids=1&per=100");

    /* Nothing to save yet: no "a" in the cursor. */
    run z;
    run_init(&z, e);
    open_stream(&z, "d1", NULL);
    char *c0 = prov_stream_cursor(z.s);
    json_t *j = decode_cursor(c0);
    assert_null(json_object_get(j, "a"));
    assert_int_equal(json_integer_value(json_object_get(j, "n")), 0);
    json_decref(j);
    free(c0);
    prov_stream_close(z.s);
    run_free(&z);
    assert_int_equal(g_state_news, 1);
    assert_int_equal(g_state_frees, 1);

    run a;
    run_init(&a, e);
    a.close_after = 3;
    a.cursor_at_close = true;
    open_stream(&a, "d1", NULL);
    wait_done(&a);
    assert_int_equal(g_final_parsed, 3);
    j = decode_cursor(a.cursor);
    assert_string_equal(json_string_value(json_object_get(j, "a")), "parsed=3");
    assert_string_equal(json_string_value(json_object_get(j, "d")), "d1");
    assert_int_equal(json_integer_value(json_object_get(j, "n")), 3);

    run b;
    run_init(&b, e);
    open_stream(&b, "d1", a.cursor);
    assert_int_equal(g_restored, 3);
    wait_done(&b);
    assert_clean_end(&b);
    assert_labels(&b, 3, SEQ_N);
    assert_int_equal(g_final_parsed, 8);   /* 3 restored + events 4..8 */

    /* State the adapter cannot restore, or an adapter without restore. */
    json_object_set_new(j, "a", json_string("garbage"));
    char *text = json_dumps(j, JSON_COMPACT);
    char *bad = encode(text);
    expect_open_error(e, "d1", bad, "invalid_cursor", "stream state");
    free(bad);
    free(text);
    e->t.ops = &ts_ops;
    expect_open_error(e, "d1", a.cursor, "invalid_cursor", "stream state");
    json_decref(j);
    run_free(&a);
    run_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_last_event_id_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconnect_spec_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_with_ids_detected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_without_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cursor_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cursor_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_404_no_reconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_503_then_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_early_close_without_reconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fatal_parse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_inside_on_event, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_in_cursor, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

/* test_http.c — providers/http.c against a scripted local HTTP server
 * (tests/unit/providers/http_test_server.py, spawned once for the group).
 * Every test runs its own uv loop and ends with http_client_destroy, a full
 * loop run and uv_loop_close() == 0. libcurl is loaded by the client itself
 * (providers/curl_lazy.h): the first tests run before it is, and check what
 * happens when it cannot be loaded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/unit/support/pyserver.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "providers/curl_lazy.h"
#include "providers/http.h"

extern char **environ;

#define WAIT_MS                 8000   /* upper bound for one exchange */
#define CLOSE_DEADLINE_MS       1000   /* cancel must close upstream by then */
#define TICK_MS                 5
#define MAX_STREAM              8192
#define N_CONCURRENT            50

static pyserver g_server = {.pid = -1, .stdin_fd = -1};
static char g_base[64];

/* ------------------------------------------------------------ server */

static int group_setup(void **state)
{
    (void)state;
    /* the proxy settings of the environment must not apply to 127.0.0.1 */
    setenv("no_proxy", "127.0.0.1,localhost", 1);
    setenv("NO_PROXY", "127.0.0.1,localhost", 1);
    signal(SIGPIPE, SIG_IGN);

    if (pyserver_start(&g_server, "unit/providers/http_test_server.py") != 0)
        return -1;
    snprintf(g_base, sizeof g_base, "http://127.0.0.1:%d", g_server.port);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    pyserver_stop(&g_server);
    curl_lazy_cleanup();
    return 0;
}

static void url_of(char *buf, size_t cap, const char *path)
{
    snprintf(buf, cap, "%s%s", g_base, path);
}

/* ------------------------------------------------------- loop harness */

typedef struct env {
    uv_loop_t loop;
    uv_timer_t ticker; /* keeps UV_RUN_ONCE returning regularly */
    http_client *client;
} env;

static void tick_cb(uv_timer_t *t)
{
    (void)t;
}

static void env_init(env *e)
{
    memset(e, 0, sizeof *e);
    assert_int_equal(uv_loop_init(&e->loop), 0);
    assert_int_equal(uv_timer_init(&e->loop, &e->ticker), 0);
    assert_int_equal(uv_timer_start(&e->ticker, tick_cb, TICK_MS, TICK_MS), 0);
    e->client = http_client_new(&e->loop);
    assert_non_null(e->client);
}

static void env_fini(env *e)
{
    uv_close((uv_handle_t *)&e->ticker, NULL);
    if (e->client)
        http_client_destroy(e->client);
    e->client = NULL;
    uv_run(&e->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&e->loop), 0);
}

/* Runs the loop until *counter >= target or timeout; true when reached. */
static bool run_until(env *e, const int *counter, int target, uint64_t timeout_ms)
{
    uv_update_time(&e->loop);
    uint64_t deadline = uv_now(&e->loop) + timeout_ms;
    while (*counter < target && uv_now(&e->loop) < deadline)
        uv_run(&e->loop, UV_RUN_ONCE);
    return *counter >= target;
}

static void run_for(env *e, uint64_t ms)
{
    static const int never = 0;
    run_until(e, &never, 1, ms);
}

static uint64_t now_ms(env *e)
{
    uv_update_time(&e->loop);
    return uv_now(&e->loop);
}

/* ----------------------------------------------------- recorded results */

typedef struct rec {
    env *e;
    http_req *req;
    int responses, datas, dones;
    bool data_before_response, callback_after_done;
    long resp_status;
    char resp_header[128];
    char stream[MAX_STREAM];
    size_t stream_len;
    long status;
    int curl_code;
    bool lib_missing;
    char error[512];
    bool truncated, canceled;
    int attempts;
    bool body_null;
    char *body;
    size_t body_len;
    char hdr_ctype[128], hdr_test[128], hdr_padded[128];
    bool hdr_missing_null;
    uint64_t done_at;
    /* behaviour */
    int cancel_at_chunk;     /* http_cancel(req) from on_data at this chunk */
    int abort_at_chunk;      /* on_data returns non-zero at this chunk */
    bool cancel_in_response; /* http_cancel(req) from on_response */
    bool abort_in_response;  /* on_response returns non-zero */
    int pause_at_chunk;      /* http_pause(req, true) from on_data */
} rec;

static void copy_str(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "(null)");
}

static int rec_on_response(void *ud, const http_response *res)
{
    rec *r = ud;
    if (r->dones)
        r->callback_after_done = true;
    r->responses++;
    r->resp_status = res->status;
    copy_str(r->resp_header, sizeof r->resp_header, http_header(res->req, "X-Stream"));
    if (r->cancel_in_response) {
        http_cancel(r->req);
        return 0;
    }
    return r->abort_in_response ? 1 : 0;
}

static int rec_on_data(void *ud, const char *buf, size_t len)
{
    rec *r = ud;
    if (r->dones)
        r->callback_after_done = true;
    if (r->responses == 0)
        r->data_before_response = true;
    r->datas++;
    size_t room = sizeof r->stream - 1 - r->stream_len;
    size_t take = len < room ? len : room;
    memcpy(r->stream + r->stream_len, buf, take);
    r->stream_len += take;
    r->stream[r->stream_len] = '\0';
    if (r->cancel_at_chunk && r->datas == r->cancel_at_chunk)
        http_cancel(r->req);
    if (r->pause_at_chunk && r->datas == r->pause_at_chunk)
        http_pause(r->req, true);
    return r->abort_at_chunk && r->datas == r->abort_at_chunk ? 1 : 0;
}

static void rec_on_done(void *ud, const http_response *res)
{
    rec *r = ud;
    if (r->dones)
        r->callback_after_done = true;
    r->dones++;
    r->status = res->status;
    r->curl_code = res->curl_code;
    r->lib_missing = res->lib_missing;
    copy_str(r->error, sizeof r->error, res->error);
    r->truncated = res->truncated;
    r->canceled = res->canceled_by_callback;
    r->attempts = res->attempts;
    r->body_null = res->body == NULL;
    if (res->body) {
        assert_int_equal(res->body[res->body_len], '\0');
        r->body = malloc(res->body_len + 1);
        assert_non_null(r->body);
        memcpy(r->body, res->body, res->body_len + 1);
        r->body_len = res->body_len;
    }
    copy_str(r->hdr_ctype, sizeof r->hdr_ctype, http_header(res->req, "content-type"));
    copy_str(r->hdr_test, sizeof r->hdr_test, http_header(res->req, "X-TEST"));
    copy_str(r->hdr_padded, sizeof r->hdr_padded, http_header(res->req, "x-padded"));
    r->hdr_missing_null = http_header(res->req, "X-Not-There") == NULL;
    if (r->e)
        r->done_at = now_ms(r->e);
}

static void rec_free(rec *r)
{
    free(r->body);
    r->body = NULL;
}

static const http_callbacks REC_CB = {
    .on_response = rec_on_response, .on_data = rec_on_data, .on_done = rec_on_done,
};

/* Starts a request and records into r. */
static http_req *start(env *e, rec *r, const http_opts *o)
{
    r->e = e;
    r->req = http_start(e->client, o, &REC_CB, r);
    return r->req;
}

/* Buffered GET of path; returns the parsed JSON body (caller json_decref). */
static json_t *get_json(env *e, const char *path)
{
    char url[256];
    url_of(url, sizeof url, path);
    rec r = {0};
    http_opts o = {.url = url};
    assert_non_null(start(e, &r, &o));
    assert_true(run_until(e, &r.dones, 1, WAIT_MS));
    assert_int_equal(r.status, 200);
    json_error_t jerr;
    json_t *j = json_loads(r.body, 0, &jerr);
    assert_non_null(j);
    rec_free(&r);
    return j;
}

static json_int_t json_int_field(json_t *j, const char *name)
{
    json_t *v = json_object_get(j, name);
    assert_non_null(v);
    return json_integer_value(v);
}

static json_int_t hits_of(env *e, const char *key)
{
    char path[128];
    snprintf(path, sizeof path, "/hits?key=%s", key);
    json_t *j = get_json(e, path);
    json_int_t n = json_int_field(j, "hits");
    json_decref(j);
    return n;
}

/* Polls /stats until the key has no open stream; returns the elapsed ms, or
 * UINT64_MAX when still open after the deadline. */
static uint64_t wait_stream_closed(env *e, const char *key, uint64_t t0)
{
    char path[128];
    snprintf(path, sizeof path, "/stats?key=%s", key);
    for (;;) {
        json_t *j = get_json(e, path);
        json_int_t open = json_int_field(j, "open");
        json_decref(j);
        uint64_t el = now_ms(e) - t0;
        if (open == 0)
            return el;
        if (el > CLOSE_DEADLINE_MS)
            return UINT64_MAX;
        run_for(e, 20);
    }
}

static json_int_t stream_open(env *e, const char *key)
{
    char path[128];
    snprintf(path, sizeof path, "/stats?key=%s", key);
    json_t *j = get_json(e, path);
    json_int_t open = json_int_field(j, "open");
    json_decref(j);
    return open;
}

/* ---------------------------------------------------------------- tests */

/* A client that makes no request never loads libcurl. */
static void test_no_request_no_curl(void **state)
{
    (void)state;
    env e;
    env_init(&e);
    run_for(&e, 20);
    assert_false(curl_lazy_loaded());
    assert_string_equal(curl_lazy_error(), "");
    env_fini(&e);
    assert_false(curl_lazy_loaded());
}

/* libcurl missing: every request ends on a later loop turn with the loader's
 * reason; nothing runs inside http_start; cancel still works; the next
 * request tries again, and loads curl once it is there. */
static void test_curl_missing(void **state)
{
    (void)state;
    env e;
    env_init(&e);
    curl_lazy_set_library("libdeploy-mcp-no-such-curl.so.4");
    char url[256];
    url_of(url, sizeof url, "/json");
    rec r = {0}, rs = {0}, rc = {0};
    http_opts o = {.url = url, .max_retries = 3, .idempotent = true};
    http_opts os = {.url = url, .stream = true};
    assert_non_null(start(&e, &r, &o));
    assert_non_null(start(&e, &rs, &os));
    assert_non_null(start(&e, &rc, &o));
    assert_false(curl_lazy_loaded());
    assert_int_equal(r.dones + rs.dones, 0); /* never inside http_start */
    assert_int_equal(http_active(e.client), 3);
    http_cancel(rc.req);
    assert_true(run_until(&e, &rs.dones, 1, WAIT_MS));
    assert_true(run_until(&e, &r.dones, 1, WAIT_MS));
    run_for(&e, 20);
    assert_int_equal(rc.dones, 0);
    assert_int_equal(http_active(e.client), 0);
    const rec *all[] = {&r, &rs};
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(all[i]->dones, 1);
        assert_int_equal(all[i]->responses, 0);
        assert_int_equal(all[i]->status, 0);
        assert_int_equal(all[i]->curl_code, CURLE_FAILED_INIT);
        assert_true(all[i]->lib_missing);
        assert_non_null(strstr(all[i]->error, "libcurl could not be loaded: "));
        assert_non_null(strstr(all[i]->error, "libdeploy-mcp-no-such-curl.so.4"));
        assert_int_equal(all[i]->callback_after_done, false);
    }
    rec_free(&r);
    rec_free(&rs);

    /* back to the real library: the next request loads it */
    curl_lazy_set_library(NULL);
    rec r2 = {0};
    assert_non_null(start(&e, &r2, &o));
    assert_true(curl_lazy_loaded());
    assert_true(run_until(&e, &r2.dones, 1, WAIT_MS));
    assert_int_equal(r2.status, 200);
    assert_false(r2.lib_missing);
    assert_string_equal(curl_lazy_error(), "");
    rec_free(&r2);
    env_fini(&e);
}

static void test_get_buffered(void **state)
{
    (void)state;
    env e;
    env_init(&e);
    char url[256];
    url_of(url, sizeof url, "/json");
    rec r = {0};
    http_opts o = {.url = url};
    assert_non_null(start(&e, &r, &o));
    assert_int_equal(http_active(e.client), 1);
    assert_true(run_until(&e, &r.dones, 1, WAIT_MS));
    assert_int_equal(http_active(e.client), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.curl_code, 0);
    assert_string_equal(r.error, "");
    assert_int_equal(r.attempts, 1);
    assert_false(r.truncated);
    assert_int_equal(r.responses, 0); /* buffered: no on_response/on_data */
    assert_int_equal(r.datas, 0);
    assert_string_equal(r.body, "{\"ok\": true, \"n\": 42}");
    assert_int_equal(r.body_len, strlen(r.body));
    assert_string_equal(r.hdr_ctype, "application/json");
    assert_string_equal(r.hdr_test, "hello");
    assert_string_equal(r.hdr_padded, "padded");
    assert_true(r.hdr_missing_null);
    rec_free(&r);

    /* a 404 is a response, not a transport error */
    url_of(url, sizeof url, "/nope");
    rec r2 = {0};
    http_opts o2 = {.url = url, .max_retries = 3, .idempotent = true};
    assert_non_null(start(&e, &r2, &o2));
    assert_true(run_until(&e, &r2.dones, 1, WAIT_MS));
    assert_int_equal(r2.status, 404);
    assert_int_equal(r2.curl_code, 0);
    assert_int_equal(r2.attempts, 1);
    rec_free(&r2);
    env_fini(&e);
}

static void test_post_and_custom_headers(void **state)
{
    (void)state;
    env e;
    env_init(&e);
    char url[256];
    url_of(url, sizeof url, "/echo?a=1");
    const char *headers[] = {"X-Custom: abc", "Content-Type: text/plain",
                             "Authorization: Bearer not-a-real-token", NULL};
    const char body[] = "hello=world&x=1";
    rec r = {0};
    http_opts o = {.method = "POST", .url = url, .headers = headers,
                   .body = body, .body_len = strlen(body)};
    assert_non_null(start(&e, &r, &o));
    assert_true(run_until(&e, &r.dones, 1, WAIT_MS));
    assert_int_equal(r.status, 200);
    json_t *j = json_loads(r.body, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "method")), "POST");
    assert_string_equal(json_string_value(json_object_get(j, "body")), body);
    assert_string_equal(json_string_value(json_object_get(j, "query")), "a=1");
    json_t *h = json_object_get(j, "headers");
    assert_string_equal(json_string_value(json_object_get(h, "x-custom")), "abc");
    assert_string_equal(json_string_value(json_object_get(h, "content-type")), "text/plain");
    assert_string_equal(json_string_value(json_object_get(h, "authorization")),
                        "Bearer not-a-real-token");
    assert_null(json_object_get(h, "accept-encoding"));
    json_decref(j);
    rec_free(&r);

    /* custom method with a body (embedded NUL byte kept) */
    const char bin[] = {'a', '\0', 'b'};
    rec r2 = {0};
    http_opts o2 = {.method = "PATCH", .url = url, .body = bin, .body_len = sizeof bin};
    assert_non_null(start(&e, &r2, &o2));
    rec r3 = {0};
    http_opts o3 = {.method = "DELETE", .url = url};
    assert_non_null(start(&e, &r3, &o3));
    assert_true(run_until(&e, &r2.dones, 1, WAIT_MS));
    assert_true(run_until(&e, &r3.dones, 1, WAIT_MS));
    j = json_loads(r2.body, JSON_ALLOW_NUL, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "method")), "PATCH");
    assert_int_equal(json_int_field(j, "body_len"), 3);
    json_decref(j);
    j = json_loads(r3.body, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "method")), "DELETE");
    assert_int_equal(json_int_field(j, "body_len"), 0);
    json_decref(j);
    rec_free(&r2);
    rec_free(&r3);

    /* header injection and bad methods are refused up front */
    const char *bad[] = {"X-A: b\r\nX-Injected: 1", NULL};
    rec r4 = {0};
    http_opts o4 = {.url = url, .headers = bad};
    assert_null(start(&e, &r4, &o4));
    http_opts o5 = {.url = url, .method = "GE T"};
    assert_null(start(&e, &r4, &o5));
    assert_int_equal(http_active(e.client), 0);
    env_fini(&e);
}

static void test_put_body_file(void **state)
{
    (void)state;
    env e;
    env_init(&e);
    /* over 1 MiB, so curl also goes through Expect: 100-continue */
    const size_t size = (1u << 20) + 12345;
    char path[] = "/tmp/test_http_upload_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    char *content = malloc(size + 1);
    assert_non_null(content);
    for (size_t i = 0; i < size; i++)
        content[i] = (char)('a' + i % 26);
    content[size] = '\0';
    assert_int_equal(write(fd, content, size), (ssize_t)size);
    close(fd);

    char url[256];
    url_of(url, sizeof url, "/echo?X-Signature=SIGNEDSECRET");
    rec r = {0};
    http_opts o = {.url = url, .body_file = path};
    assert_non_null(start(&e, &r, &o));
    rec r2 = {0};
    http_opts o2 = {.url = url, .body_file = path, .method = "POST"};
    assert_non_null(start(&e, &r2, &o2));
    assert_true(run_until(&e, &r.dones, 1, WAIT_MS));
    assert_true(run_until(&e, &r2.dones, 1, WAIT_MS));
    assert_int_equal(r.status, 200);
    json_t *j = json_loads(r.body, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "method")), "PUT");
    assert_int_equal(json_int_field(j, "body_len"), (json_int_t)size);
    assert_true(strcmp(json_string_value(json_object_get(j, "body")), content) == 0);
    json_decref(j);
    j = json_loads(r2.body, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "method")), "POST");
    assert_int_equal(json_int_field(j, "body_len"), (json_int_t)size);
    json_decref(j);
    rec_free(&r);
    rec_free(&r2);

    /* a missing file: nothing starts */
    rec r3 = {0};
    http_opts o3 = {.url = url, .body_file = "/nonexistent/dir/file"};
    assert_null(start(&e, &r3, &o3));
    unlink(path);
    free(content);
    env_fini(&e);
}

static void test_streaming(void **state)
{
    (void)state;
    env e;
    env_init(&e);
    char url[256];
    url_of(url, sizeof url, "/slow-stream?n=5&delay=0.05&key=stream1");
    rec r = {0};
    http_opts o = {.url = url, .stream = true};
    assert_non_null(start(&e, &r, &o));
    assert_true(run_until(&e, &r.dones, 1, WAIT_MS));
    assert_int_equal(r.responses, 1);
    assert_int_equal(r.resp_status, 200);
    assert_string_equal(r.resp_header, "yes");
    assert_false(r.data_before_response);
    assert_false(r.callback_after_done);
    assert_true(r.datas >= 2); /* chunks arrive separately, 50 ms apart */
    assert_string_equal(r.stream, "chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n");
    assert_int_equal(r.status, 200);
    assert_int_equal(r.curl_code, 0);
    assert_true(r.body_null);
    assert_string_equal(r.hdr_ctype, "text/event-stream");
    env_fini(&e);
}

static void test_many_concurrent(void **state)
{
    (void)state;
    env e;
    env_init(&e);
    static rec recs[N_CONCURRENT];
    memset(recs, 0, sizeof recs);
    char url[256];
    int done_total = 0;
    for (int i = 0; i < N_CONCURRENT; i++) {
        char path[64];
        snprintf(path, sizeof path, "/echo?i=%d", i);
        url_of(url, sizeof url, path);
        http_opts o = {.url = url, .stream = i % 5 == 0};
        assert_non_null(start(&e, &recs[i], &o));
    }
    assert_int_equal(http_active(e.client), N_CONCURRENT);
    uv_update_time(&e.loop);
    uint64_t deadline = uv_now(&e.loop) + WAIT_MS;
    while (done_total < N_CONCURRENT && uv_now(&e.loop) < deadline) {
        uv_run(&e.loop, UV_RUN_ONCE);
        done_total = 0;
        for (int i = 0; i < N_CONCURRENT; i++)
            done_total += recs[i].dones;
    }
    assert_int_equal(done_total, N_CONCURRENT);
    assert_int_equal(http_active(e.client), 0);
    for (int i = 0; i < N_CONCURRENT; i++) {
        assert_int_equal(recs[i].dones, 1);
        assert_int_equal(recs[i].status, 200);
        const char *text = i % 5 == 0 ? recs[i].stream : recs[i].body;
        json_t *j = json_loads(text, 0, NULL);
        assert_non_null(j);
        char q[32];
        snprintf(q, sizeof q, "i=%d", i);
        assert_string_equal(json_string_value(json_object_get(j, "query")), q);
        json_decref(j);
        rec_free(&recs[i]);
    }
    env_fini(&e);
}

static void test_cancel_stream(void **state)
{
    (void)state;
    env e;
    env_init(&e);
    char url[256];
    url_of(url, sizeof url, "/slow-stream?n=400&delay=0.05&key=cancel1");
    rec r = {0};
    http_opts o = {.url = url, .stream = true};
    assert_non_null(start(&e, &r, &o));
    assert_true(run_until(&e, &r.datas, 3, WAIT_MS));
    assert_int_equal(stream_open(&e, "cancel1"), 1);
    assert_int_equal(http_active(e.client), 1);

    uint64_t t0 = now_ms(&e);
    http_cancel(r.req);
    assert_int_equal(http_active(e.client), 0);
    int datas = r.datas;
    uint64_t el = wait_stream_closed(&e, "cancel1", t0);
    assert_true(el < CLOSE_DEADLINE_MS);
    run_for(&e, 150);
    assert_int_equal(r.datas, datas);
    assert_int_equal(r.dones, 0);
    env_fini(&e);
}

static void test_cancel_inside_callbacks(void **state)
{
    (void)state;
    env e;
    env_init(&e);
    char url[256];
    url_of(url, sizeof url, "/slow-stream?n=400&delay=0.03&key=cancel2");
    rec r = {.cancel_at_chunk = 2};
    http_opts o = {.url = url, .stream = true};
    assert_non_null(start(&e, &r, &o));
    assert_true(run_until(&e, &r.datas, 2, WAIT_MS));
    uint64_t t0 = now_ms(&e);
    assert_int_equal(http_active(e.client), 0);
    run_for(&e, 200);
    assert_int_equal(r.datas, 2);
    assert_int_equal(r.dones, 0);
    assert_true(wait_stream_closed(&e, "cancel2", t0) < CLOSE_DEADLINE_MS);

    /* from on_response: no on_data, no on_done */
    url_of(url, sizeof url, "/slow-stream?n=400&delay=0.03&key=cancel3");
    rec r2 = {.cancel_in_response = true};
    http_opts o2 = {.url = url, .stream = true};
    assert_non_null(start(&e, &r2, &o2));
    assert_true(run_until(&e, &r2.responses, 1, WAIT_MS));
    t0 = now_ms(&e);
    run_for(&e, 200);
    assert_int_equal(r2.datas, 0);
    assert_int_equal(r2.dones, 0);
    assert_true(wait_stream_closed(&e, "cancel3", t0) < CLOSE_DEADLINE_MS);
    env_fini(&e);
}

static void test_on_data_abort(void **state)
{
    (void)state;
    env e;
    env_init(&e);
    char url[256];
    url_of(url, sizeof url, "/slow-stream?n=400&delay=0.03&key=abort1");
    rec r = {.abort_at_chunk = 2};
    http_opts o = {.url = url, .stream = true, .max_retries = 3, .idempotent = true};
    assert_non_null(start(&e, &r, &o));
    assert_true(run_until(&e, &r.dones, 1, WAIT_MS));
    assert_int_equal(r.datas, 2);
    assert_true(r.canceled);
    assert_int_equal(r.attempts, 1); /* an abort is never retried */
    assert_int_not_equal(r.curl_code, 0);
    assert_int_equal(r.status, 200);
    run_for(&e, 100);
    assert_int_equal(r.datas, 2);
    assert_false(r.callback_after_done);

    /* abort from on_response */
    rec r2 = {.abort_in_response = true};
    assert_non_null(start(&e, &r2, &o));
    assert_true(run_until(&e, &r2.dones, 1, WAIT_MS));
    assert_int_equal(r2.responses, 1);
    assert_int_equal(r2.datas, 0);
    assert_true(r2.canceled);
    assert_int_equal(r2.attempts, 1);
    env_fini(&e);
}

static void test_retry_503(void **state)
{
    (void)state;
    env e;
    env_init(&e);
    char url[256];
    url_of(url, sizeof url, "/status/503-then-200?key=r503a");
    rec r = {0};
    http_opts o = {.url = url, .max_retries = 3, .idempotent = true};
    assert_non_null(start(&e, &r, &o));
    assert_true(run_until(&e, &r.dones, 1, WAIT_MS));
    assert_int_equal(r.status, 200);
    assert_int_equal(r.attempts, 2);
    assert_int_equal(hits_of(&e, "r503a"), 2);
    rec_free(&r);

    url_of(url, sizeof url, "/status/503-then-200?key=r503b");
    rec r2 = {0};
    http_opts o2 = {.method = "POST", .url = url, .body = "x", .body_len = 1,
                    .max_retries = 3, .idempotent = false};
    assert_non_null(start(&e, &r2, &o2));
    assert_true(run_until(&e, &r2.dones, 1, WAIT_MS));
    assert_int_equal(r2.status, 503);
    assert_int_equal(r2.attempts, 1);
    assert_string_equal(r2.body, "busy");
    assert_int_equal(hits_of(&e, "r503b"), 1);
    rec_free(&r2);

    /* streaming: the 503 is not shown, the retried stream is */
    url_of(url, sizeof url, "/stream-503-then-200?key=r503s&n=3");
    rec r3 = {0};
    http_opts o3 = {.url = url, .stream = true, .max_retries = 2, .idempotent = true};
    assert_non_null(start(&e, &r3, &o3));
    assert_true(run_until(&e, &r3.dones, 1, WAIT_MS));
    assert_int_equal(r3.responses, 1);
    assert_int_equal(r3.resp_status, 200);
    assert_int_equal(r3.status, 200);
    assert_int_equal(r3.attempts, 2);
    assert_string_equal(r3.stream, "chunk 0\nchunk 1\nchunk 2\n");
    env_fini(&e);
}

static void test_429(void **state)
{
    (void)state;
    env e;
    env_init(&e);
    char url[256];
    url_of(url, sizeof url, "/429-retry-after?key=ra1");
    rec r = {0};
    http_opts o = {.url = url, .max_retries = 2, .idempotent = true};
    uint64_t t0 = now_ms(&e);
    assert_non_null(start(&e, &r, &o));
    assert_true(run_until(&e, &r.dones, 1, WAIT_MS));
    assert_int_equal(r.status, 200);
    assert_int_equal(r.attempts, 2);
    assert_true(r.done_at - t0 >= 950); /* waited the Retry-After second */
    rec_free(&r);

    url_of(url, sizeof url, "/429-reset-ms?key=rm1");
    rec r2 = {0};
    http_opts o2 = {.url = url, .max_retries = 2, .idempotent = true};
    t0 = now_ms(&e);
    assert_non_null(start(&e, &r2, &o2));
    assert_true(run_until(&e, &r2.dones, 1, WAIT_MS));
    assert_int_equal(r2.status, 200);
    assert_int_equal(r2.attempts, 2);
    assert_true(r2.done_at - t0 >= 280);
    rec_free(&r2);

    url_of(url, sizeof url, "/429-no-header?key=nh1");
    rec r3 = {0};
    http_opts o3 = {.url = url, .max_retries = 3, .idempotent = true};
    assert_non_null(start(&e, &r3, &o3));
    assert_true(run_until(&e, &r3.dones, 1, WAIT_MS));
    assert_int_equal(r3.status, 429);
    assert_int_equal(r3.attempts, 1);
    assert_string_equal(r3.body, "quota exceeded");
    assert_int_equal(hits_of(&e, "nh1"), 1);
    rec_free(&r3);
    env_fini(&e);
}

static int closed_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &len), 0);
    close(s);
    return ntohs(a.sin_port);
}

static void test_connection_errors(void **state)
{
    (void)state;
    env e;
    env_init(&e);
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/x?sig=SECRETSIG123", closed_port());
    rec r = {0};
    http_opts o = {.url = url, .max_retries = 2, .idempotent = true};
    assert_non_null(start(&e, &r, &o));
    assert_true(run_until(&e, &r.dones, 1, WAIT_MS));
    assert_int_equal(r.status, 0);
    assert_int_equal(r.curl_code, CURLE_COULDNT_CONNECT);
    assert_true(strlen(r.error) > 0);
    assert_null(strstr(r.error, "SECRETSIG123"));
    assert_int_equal(r.attempts, 3);
    assert_string_equal(r.body, "");
    rec_free(&r);

    rec r2 = {0};
    http_opts o2 = {.url = url, .max_retries = 2, .idempotent = false};
    assert_non_null(start(&e, &r2, &o2));
    assert_true(run_until(&e, &r2.dones, 1, WAIT_MS));
    assert_int_equal(r2.attempts, 1);
    rec_free(&r2);

    /* reset by the peer */
    url_of(url, sizeof url, "/reset?key=rst1");
    rec r3 = {0};
    http_opts o3 = {.url = url, .max_retries = 1, .idempotent = true};
    assert_non_null(start(&e, &r3, &o3));
    assert_true(run_until(&e, &r3.dones, 1, WAIT_MS));
    assert_int_equal(r3.status, 0);
    assert_int_not_equal(r3.curl_code, 0);
    assert_true(strlen(r3.error) > 0);
    assert_int_equal(r3.attempts, 2);
    assert_int_equal(hits_of(&e, "rst1"), 2);
    rec_free(&r3);
    env_fini(&e);
}

static void test_max_body(void **state)
{
    (void)state;
    env e;
    env_init(&e);
    char url[256];
    url_of(url, sizeof url, "/big?size=200000");
    rec r = {0};
    http_opts o = {.url = url, .max_body = 1000, .max_retries = 2, .idempotent = true};
    assert_non_null(start(&e, &r, &o));
    assert_true(run_until(&e, &r.dones, 1, WAIT_MS));
    assert_int_equal(r.status, 200);
    assert_true(r.truncated);
    assert_int_equal(r.body_len, 1000);
    assert_int_equal(r.curl_code, 0);
    assert_string_equal(r.error, "");
    assert_int_equal(r.attempts, 1);
    for (size_t i = 0; i < r.body_len; i++)
        assert_int_equal(r.body[i], 'x');
    rec_free(&r);

    url_of(url, sizeof url, "/big?size=1000");
    rec r2 = {0};
    assert_non_null(start(&e, &r2, &o));
    assert_true(run_until(&e, &r2.dones, 1, WAIT_MS));
    assert_false(r2.truncated);
    assert_int_equal(r2.body_len, 1000);
    rec_free(&r2);

    url_of(url, sizeof url, "/big?size=300000");
    rec r3 = {0};
    http_opts o3 = {.url = url};
    assert_non_null(start(&e, &r3, &o3));
    assert_true(run_until(&e, &r3.dones, 1, WAIT_MS));
    assert_false(r3.truncated);
    assert_int_equal(r3.body_len, 300000);
    rec_free(&r3);
    env_fini(&e);
}

static void test_timeouts(void **state)
{
    (void)state;
    env e;
    env_init(&e);
    char url[256];
    url_of(url, sizeof url, "/never?key=idle1");
    rec r = {0};
    http_opts o = {.url = url, .idle_timeout_ms = 300};
    uint64_t t0 = now_ms(&e);
    assert_non_null(start(&e, &r, &o));
    assert_true(run_until(&e, &r.dones, 1, WAIT_MS));
    uint64_t el = r.done_at - t0;
    assert_int_equal(r.status, 0);
    assert_int_equal(r.curl_code, CURLE_OPERATION_TIMEDOUT);
    assert_true(strlen(r.error) > 0);
    assert_true(el >= 280 && el < 2000);
    rec_free(&r);

    /* an idle stream that keeps sending is not cut */
    url_of(url, sizeof url, "/slow-stream?n=8&delay=0.1&key=idle2");
    rec r2 = {0};
    http_opts o2 = {.url = url, .stream = true, .idle_timeout_ms = 400};
    assert_non_null(start(&e, &r2, &o2));
    assert_true(run_until(&e, &r2.dones, 1, WAIT_MS));
    assert_int_equal(r2.curl_code, 0);
    assert_int_equal(r2.status, 200);

    /* total timeout */
    url_of(url, sizeof url, "/never?key=idle3");
    rec r3 = {0};
    http_opts o3 = {.url = url, .timeout_ms = 300};
    assert_non_null(start(&e, &r3, &o3));
    assert_true(run_until(&e, &r3.dones, 1, WAIT_MS));
    assert_int_equal(r3.curl_code, CURLE_OPERATION_TIMEDOUT);
    assert_int_equal(r3.status, 0);
    rec_free(&r3);
    env_fini(&e);
}

static void test_pause_resume(void **state)
{
    (void)state;
    env e;
    env_init(&e);
    char url[256];
    url_of(url, sizeof url, "/slow-stream?n=6&delay=0.03&key=pause1");
    rec r = {.pause_at_chunk = 1};
    http_opts o = {.url = url, .stream = true, .idle_timeout_ms = 200};
    assert_non_null(start(&e, &r, &o));
    assert_true(run_until(&e, &r.datas, 1, WAIT_MS));
    run_for(&e, 400); /* paused: longer than the idle timeout, too */
    assert_int_equal(r.datas, 1);
    assert_int_equal(r.dones, 0);
    http_pause(r.req, false);
    assert_true(run_until(&e, &r.dones, 1, WAIT_MS));
    assert_int_equal(r.curl_code, 0);
    assert_string_equal(r.stream,
                        "chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\nchunk 5\n");
    env_fini(&e);
}

/* on_done of one request starts another and cancels a third; on_data of a
 * stream starts a fourth (deferred until curl is off the stack). */
typedef struct chain {
    env *e;
    http_req *victim;
    rec started, from_data;
    rec victim_rec;
    int dones, datas;
    bool started_ok, from_data_ok;
    char url[256];
} chain;

static void chain_done(void *ud, const http_response *res)
{
    chain *c = ud;
    assert_int_equal(res->status, 200);
    c->dones++;
    http_cancel(c->victim);
    http_opts o = {.url = c->url};
    c->started.e = c->e;
    c->started.req = http_start(c->e->client, &o, &REC_CB, &c->started);
    c->started_ok = c->started.req != NULL;
}

static int chain_data(void *ud, const char *buf, size_t len)
{
    chain *c = ud;
    (void)buf;
    (void)len;
    if (c->datas++ == 0) {
        http_opts o = {.url = c->url};
        c->from_data.e = c->e;
        c->from_data.req = http_start(c->e->client, &o, &REC_CB, &c->from_data);
        c->from_data_ok = c->from_data.req != NULL;
    }
    return 0;
}

static void chain_stream_done(void *ud, const http_response *res)
{
    chain *c = ud;
    assert_int_equal(res->status, 200);
    c->dones++;
}

static void test_reentrancy(void **state)
{
    (void)state;
    env e;
    env_init(&e);
    static chain c;
    memset(&c, 0, sizeof c);
    c.e = &e;
    url_of(c.url, sizeof c.url, "/json");

    char url[256];
    url_of(url, sizeof url, "/never?key=victim");
    http_opts ov = {.url = url};
    c.victim_rec.e = &e;
    c.victim = http_start(e.client, &ov, &REC_CB, &c.victim_rec);
    assert_non_null(c.victim);
    c.victim_rec.req = c.victim;

    http_callbacks cb = {.on_done = chain_done};
    http_opts o = {.url = c.url};
    assert_non_null(http_start(e.client, &o, &cb, &c));

    char surl[256];
    url_of(surl, sizeof surl, "/slow-stream?n=3&delay=0.02&key=chain");
    http_callbacks scb = {.on_data = chain_data, .on_done = chain_stream_done};
    http_opts so = {.url = surl, .stream = true};
    assert_non_null(http_start(e.client, &so, &scb, &c));
    assert_int_equal(http_active(e.client), 3);

    assert_true(run_until(&e, &c.dones, 2, WAIT_MS));
    assert_true(c.started_ok);
    assert_true(c.from_data_ok);
    assert_true(run_until(&e, &c.started.dones, 1, WAIT_MS));
    assert_true(run_until(&e, &c.from_data.dones, 1, WAIT_MS));
    assert_int_equal(c.started.status, 200);
    assert_int_equal(c.from_data.status, 200);
    assert_int_equal(c.victim_rec.dones, 0);
    assert_int_equal(http_active(e.client), 0);
    rec_free(&c.started);
    rec_free(&c.from_data);
    env_fini(&e);
}

/* Destroying the client with transfers in every state: no callbacks, no
 * leaks, the loop closes. Also destroying from inside on_done. */
static void destroy_in_done(void *ud, const http_response *res)
{
    env *e = ud;
    (void)res;
    http_client_destroy(e->client);
    e->client = NULL;
}

static int destroy_in_data(void *ud, const char *buf, size_t len)
{
    env *e = ud;
    (void)buf;
    (void)len;
    http_client_destroy(e->client);
    e->client = NULL;
    return 0;
}

static void fail_done(void *ud, const http_response *res)
{
    (void)ud;
    (void)res;
    fail_msg("on_done after http_client_destroy");
}

static void test_destroy_with_active(void **state)
{
    (void)state;
    env e;
    env_init(&e);
    char url[256];
    rec rs = {0}, rn = {0}, rr = {0}, rc = {0};
    url_of(url, sizeof url, "/slow-stream?n=400&delay=0.03&key=destroy1");
    http_opts os = {.url = url, .stream = true};
    assert_non_null(start(&e, &rs, &os));
    char url2[256];
    url_of(url2, sizeof url2, "/never?key=destroy2");
    http_opts on = {.url = url2};
    assert_non_null(start(&e, &rn, &on));
    char url3[256];
    url_of(url3, sizeof url3, "/429-retry-after?key=destroy3");
    http_opts orr = {.url = url3, .max_retries = 2, .idempotent = true};
    assert_non_null(start(&e, &rr, &orr));
    char url4[256];
    snprintf(url4, sizeof url4, "http://127.0.0.1:%d/", closed_port());
    http_opts oc = {.url = url4};
    assert_non_null(start(&e, &rc, &oc));
    assert_true(run_until(&e, &rs.datas, 2, WAIT_MS));
    assert_true(run_until(&e, &rc.dones, 1, WAIT_MS));
    run_for(&e, 100); /* the 429 now waits for its retry */
    assert_int_equal(http_active(e.client), 3);
    http_client_destroy(e.client);
    e.client = NULL;
    int datas = rs.datas;
    run_for(&e, 100);
    assert_int_equal(rs.datas, datas);
    assert_int_equal(rs.dones + rn.dones + rr.dones, 0);
    rec_free(&rc);
    env_fini(&e);

    /* destroy from on_done while another transfer is running */
    env e2;
    env_init(&e2);
    rec rn2 = {0};
    assert_non_null(start(&e2, &rn2, &on));
    char url5[256];
    url_of(url5, sizeof url5, "/json");
    http_opts oj = {.url = url5};
    http_callbacks cb = {.on_done = destroy_in_done};
    assert_non_null(http_start(e2.client, &oj, &cb, &e2));
    uv_update_time(&e2.loop);
    uint64_t deadline = uv_now(&e2.loop) + WAIT_MS;
    while (e2.client && uv_now(&e2.loop) < deadline)
        uv_run(&e2.loop, UV_RUN_ONCE);
    assert_null(e2.client);
    run_for(&e2, 50);
    assert_int_equal(rn2.dones, 0);
    env_fini(&e2);

    /* destroy from on_data (curl is on the stack) with others in flight */
    env e3;
    env_init(&e3);
    rec rn3 = {0};
    assert_non_null(start(&e3, &rn3, &on));
    char url6[256];
    url_of(url6, sizeof url6, "/slow-stream?n=400&delay=0.03&key=destroy4");
    http_opts od = {.url = url6, .stream = true};
    http_callbacks dcb = {.on_data = destroy_in_data, .on_done = fail_done};
    assert_non_null(http_start(e3.client, &od, &dcb, &e3));
    assert_non_null(http_start(e3.client, &od, &dcb, &e3));
    uv_update_time(&e3.loop);
    deadline = uv_now(&e3.loop) + WAIT_MS;
    while (e3.client && uv_now(&e3.loop) < deadline)
        uv_run(&e3.loop, UV_RUN_ONCE);
    assert_null(e3.client);
    run_for(&e3, 50);
    assert_int_equal(rn3.dones, 0);
    env_fini(&e3);
}

/* With a budget of 1 ns every loop iteration serves one socket callback and
 * leaves the other ready sockets for the next: nothing is lost or stalled,
 * and curl's timeouts still fire on time. */
static void test_poll_budget(void **state)
{
    (void)state;
    env e;
    env_init(&e);
    http_set_poll_budget(e.client, 1);
    enum { NBIG = 12, NSTREAM = 6, BIG = 300000 };
    static rec big[NBIG], st[NSTREAM];
    memset(big, 0, sizeof big);
    memset(st, 0, sizeof st);
    char url[256];
    for (int i = 0; i < NBIG; i++) {
        url_of(url, sizeof url, "/big?size=300000");
        http_opts o = {.url = url};
        assert_non_null(start(&e, &big[i], &o));
    }
    for (int i = 0; i < NSTREAM; i++) {
        char path[96];
        snprintf(path, sizeof path, "/slow-stream?n=6&delay=0.02&key=budget%d", i);
        url_of(url, sizeof url, path);
        http_opts o = {.url = url, .stream = true};
        assert_non_null(start(&e, &st[i], &o));
    }
    url_of(url, sizeof url, "/never?key=budget-timeout");
    rec rt = {0};
    http_opts ot = {.url = url, .timeout_ms = 300};
    uint64_t t0 = now_ms(&e);
    assert_non_null(start(&e, &rt, &ot));

    uv_update_time(&e.loop);
    uint64_t deadline = uv_now(&e.loop) + 3 * WAIT_MS;
    int done = 0;
    while (done < NBIG + NSTREAM + 1 && uv_now(&e.loop) < deadline) {
        uv_run(&e.loop, UV_RUN_ONCE);
        done = rt.dones;
        for (int i = 0; i < NBIG; i++)
            done += big[i].dones;
        for (int i = 0; i < NSTREAM; i++)
            done += st[i].dones;
    }
    assert_int_equal(done, NBIG + NSTREAM + 1);
    assert_true(http_deferred_polls(e.client) > 0);
    assert_int_equal(rt.curl_code, CURLE_OPERATION_TIMEDOUT);
    uint64_t el = rt.done_at - t0;
    assert_true(el >= 280 && el < 2000);
    for (int i = 0; i < NBIG; i++) {
        assert_int_equal(big[i].status, 200);
        assert_int_equal(big[i].curl_code, 0);
        assert_int_equal(big[i].body_len, BIG);
        for (size_t k = 0; k < big[i].body_len; k++)
            assert_int_equal(big[i].body[k], 'x');
        rec_free(&big[i]);
    }
    for (int i = 0; i < NSTREAM; i++) {
        assert_int_equal(st[i].status, 200);
        assert_string_equal(st[i].stream,
                            "chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\nchunk 5\n");
    }
    rec_free(&rt);
    env_fini(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        /* first: they run before libcurl is loaded */
        cmocka_unit_test(test_no_request_no_curl),
        cmocka_unit_test(test_curl_missing),
        cmocka_unit_test(test_get_buffered),
        cmocka_unit_test(test_post_and_custom_headers),
        cmocka_unit_test(test_put_body_file),
        cmocka_unit_test(test_streaming),
        cmocka_unit_test(test_many_concurrent),
        cmocka_unit_test(test_cancel_stream),
        cmocka_unit_test(test_cancel_inside_callbacks),
        cmocka_unit_test(test_on_data_abort),
        cmocka_unit_test(test_retry_503),
        cmocka_unit_test(test_429),
        cmocka_unit_test(test_connection_errors),
        cmocka_unit_test(test_max_body),
        cmocka_unit_test(test_timeouts),
        cmocka_unit_test(test_pause_resume),
        cmocka_unit_test(test_reentrancy),
        cmocka_unit_test(test_destroy_with_active),
        cmocka_unit_test(test_poll_budget),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

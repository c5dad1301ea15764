/* fuzz_jsonrpc.c — JSON-RPC framing and MCP dispatch (mcp/session.h) on a
 * real mcp_server with zero targets, through a capture transport.
 *
 * Input: 1 control byte, then messages separated by '\n' (each handed to
 * mcp_session_handle on its own, in an exact-size buffer, as a transport
 * would after framing).
 *   control bit0     send initialize first
 *           bits1-2  its protocolVersion (2024-11-05 allows batches)
 *           bit3     then notifications/initialized
 *           bits4-5  tools/list page size (0 = all)
 *           bit6     transport with send_related/related_end (Streamable
 *                    HTTP style) instead of plain send (stdio style)
 *           bit7     run the loop (UV_RUN_NOWAIT) after every message
 * At the end the loop runs once, the session is closed (cancelling what is
 * in flight), and the loop runs again for close callbacks: what a request
 * leaves behind shows up as a leak, a handle still active on the loop, or a
 * message sent after close.
 *
 * Invariants on every outgoing message: valid JSON without a raw newline
 * (stdio frames by lines); either a JSON-RPC 2.0 response (id, and exactly
 * one of result / error{code:int, message:string}), a notification (method
 * string), or a non-empty batch array of responses. With send_related: the
 * related id is a string or integer when present, a response goes out as
 * is_response, notifications never do and always name their request. */
#include <curl/curl.h>
#include <jansson.h>
#include <stdbool.h>
#include <uv.h>

#include "fuzz/fuzz.h"
#include "mcp/config.h"
#include "mcp/log.h"
#include "mcp/server.h"
#include "mcp/session.h"
#include "providers/http.h"
#include "tools/tool.h"

/* The conformance fixture tools (tools/fixtures.h) exercise requests that
 * stay in flight (timers, progress, logging). Weak, so this target still
 * builds against a tree without them. */
extern void tool_fixtures_enable(void) __attribute__((weak));

static uv_loop_t loop;
static mcp_server srv;
static bool verbose;   /* FUZZ_VERBOSE=1: print what the session sends */

typedef struct capture {
    bool closed;
    unsigned long sent;
} capture;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_set_level(LOG_ERROR);
    verbose = getenv("FUZZ_VERBOSE") != NULL;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || uv_loop_init(&loop) != 0)
        abort();
    char err[256];
    if (cfg_parse("{}", 2, "fuzz", NULL, &srv.config, err, sizeof err) != 0)
        abort();
    srv.loop = &loop;
    srv.http = http_client_new(&loop);
    if (!srv.http)
        abort();
    if (tool_fixtures_enable)
        tool_fixtures_enable();
    return 0;
}

static bool is_id(const json_t *id) { return json_is_string(id) || json_is_integer(id); }

static void check_response(const json_t *m, const char *msg)
{
    FUZZ_CHECK(json_is_object(m), "batch member is not an object: %.300s", msg);
    FUZZ_CHECK(json_is_string(json_object_get(m, "jsonrpc")) &&
                   strcmp(json_string_value(json_object_get(m, "jsonrpc")), "2.0") == 0,
               "no \"jsonrpc\":\"2.0\": %.300s", msg);
    json_t *id = json_object_get(m, "id");
    json_t *result = json_object_get(m, "result"), *error = json_object_get(m, "error");
    FUZZ_CHECK(id && (is_id(id) || json_is_null(id)), "response id missing or bad: %.300s", msg);
    FUZZ_CHECK(!result != !error, "a response needs exactly one of result/error: %.300s", msg);
    if (error) {
        FUZZ_CHECK(json_is_integer(json_object_get(error, "code")) &&
                       json_is_string(json_object_get(error, "message")),
                   "error without integer code and string message: %.300s", msg);
    } else {
        FUZZ_CHECK(json_is_object(result), "result is not an object: %.300s", msg);
        FUZZ_CHECK(!json_is_null(id), "a result with id null: %.300s", msg);
    }
}

/* Returns the parsed message (caller decrefs). */
static json_t *check_message(capture *c, const char *msg, size_t len)
{
    FUZZ_CHECK(!c->closed, "message sent after mcp_session_close: %.300s", msg);
    FUZZ_CHECK(msg && len > 0, "empty message");
    FUZZ_CHECK(!memchr(msg, '\n', len) && !memchr(msg, '\r', len),
               "raw line break in an outgoing message (breaks stdio framing): %.300s", msg);
    json_error_t jerr;
    json_t *j = json_loadb(msg, len, JSON_ALLOW_NUL, &jerr);
    FUZZ_CHECK(j, "outgoing message is not JSON (%s): %.300s", jerr.text, msg);
    if (json_is_array(j)) {
        FUZZ_CHECK(json_array_size(j) > 0, "empty batch response");
        size_t i;
        json_t *m;
        json_array_foreach(j, i, m)
            check_response(m, msg);
    } else if (json_is_object(j) && json_object_get(j, "method")) {
        FUZZ_CHECK(json_is_string(json_object_get(j, "method")) && !json_object_get(j, "id"),
                   "bad notification: %.300s", msg);
        FUZZ_CHECK(strcmp(json_string_value(json_object_get(j, "jsonrpc")), "2.0") == 0,
                   "notification without jsonrpc 2.0: %.300s", msg);
    } else {
        check_response(j, msg);
    }
    c->sent++;
    if (verbose)
        fprintf(stderr, "<- %.*s\n", (int)(len > 300 ? 300 : len), msg);
    return j;
}

static int tp_send(void *io, const char *msg, size_t len)
{
    json_decref(check_message(io, msg, len));
    return 0;
}

static int tp_send_related(void *io, const char *msg, size_t len, const json_t *related,
                           bool is_response)
{
    json_t *j = check_message(io, msg, len);
    FUZZ_CHECK(!related || is_id(related), "related id is not a string or integer");
    if (json_is_array(j)) {
        FUZZ_CHECK(is_response, "a batch response not sent as is_response");
    } else if (json_object_get(j, "method")) {
        FUZZ_CHECK(!is_response, "a notification sent as is_response: %.300s", msg);
        FUZZ_CHECK(related, "a notification that names no request: %.300s", msg);
    } else {
        json_t *id = json_object_get(j, "id");
        FUZZ_CHECK(is_response, "a response not sent as is_response: %.300s", msg);
        if (is_id(id))
            FUZZ_CHECK(related && json_equal(id, (json_t *)related),
                       "response related to another id: %.300s", msg);
        else
            FUZZ_CHECK(!related, "an id-null response related to a request: %.300s", msg);
    }
    json_decref(j);
    return 0;
}

static void tp_related_end(void *io, const json_t *related)
{
    (void)io; /* may come from mcp_session_close */
    FUZZ_CHECK(related && is_id(related), "related_end without a request id");
}

static const mcp_transport plain_tp = {.name = "fuzz", .send = tp_send};
static const mcp_transport related_tp = {.name = "fuzz-related", .send = tp_send,
                                         .send_related = tp_send_related,
                                         .related_end = tp_related_end};

static void handle(mcp_session *s, const char *text, size_t len)
{
    char *m = fz_dup(text, len, 0);
    mcp_session_handle(s, m, len);
    free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const versions[] = {"2024-11-05", "2025-03-26", "2025-06-18",
                                           "2025-11-25"};
    fuzz_in in = {data, size};
    uint8_t ctl = fz_u8(&in);
    srv.tools_page_size = (ctl >> 4) & 3;
    capture cap = {0};
    mcp_session *s = mcp_session_new(&srv, ctl & 0x40 ? &related_tp : &plain_tp, &cap);
    FUZZ_CHECK(s, "mcp_session_new returned NULL");

    if (ctl & 1) {
        char init[256];
        int n = snprintf(init, sizeof init,
                         "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":"
                         "{\"protocolVersion\":\"%s\",\"capabilities\":{},\"clientInfo\":"
                         "{\"name\":\"fuzz\",\"version\":\"1\"}}}",
                         versions[(ctl >> 1) & 3]);
        handle(s, init, (size_t)n);
        FUZZ_CHECK(mcp_session_protocol(s)[0], "initialize did not negotiate a version");
        if (ctl & 8) {
            static const char note[] =
                "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}";
            handle(s, note, sizeof note - 1);
        }
    }

    const char *p = (const char *)in.p;
    size_t n = in.n;
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t len = nl ? (size_t)(nl - p) : n;
        handle(s, p, len);
        if (ctl & 0x80)
            uv_run(&loop, UV_RUN_NOWAIT);
        p += len + (nl ? 1 : 0);
        n -= len + (nl ? 1 : 0);
    }

    uv_run(&loop, UV_RUN_NOWAIT);
    mcp_session_close(s);
    cap.closed = true;
    uv_run(&loop, UV_RUN_NOWAIT);
    FUZZ_CHECK(!uv_loop_alive(&loop),
               "a handle is still active on the loop after the session closed");
    return 0;
}

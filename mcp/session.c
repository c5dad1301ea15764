/* session.c — JSON-RPC 2.0 / MCP message handling for one session.
 *
 * Inbound: parse, classify (request / notification / response / invalid),
 * enforce the lifecycle, dispatch. Outbound: responses and notifications are
 * serialized here and handed to the transport's send().
 *
 * Requests that run asynchronously (tools/call) live in a per-session table
 * keyed by their JSON-RPC id until they finish or are cancelled. JSON-RPC
 * batches (protocol versions before 2025-06-18) collect their members'
 * responses, including asynchronous ones, and go out as one array.
 *
 * Requests we send the client (mcp_req_ask) live in a second table, keyed
 * by our own ids, until the client's response arrives, they are cancelled,
 * or the request they were sent for ends. */
#include "mcp/session.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcp/jsonw.h"
#include "mcp/log.h"
#include "mcp/server.h"
#include "providers/utf8.h"
#include "tools/gate.h"
#include "tools/result.h"
#include "tools/tool.h"

#define MCP_SERVER_NAME "deploy-mcp"
#define MCP_LATEST_VERSION "2025-11-25"
#define MCP_BATCH_CUTOFF "2025-06-18" /* batches rejected from this version on */

/* Outgoing messages are written into one buffer per session and handed to
 * the transport (which copies them). A buffer grown past OUT_KEEP for one
 * large message is released afterwards; OUT_MAX caps one message. */
#define OUT_KEEP (256u << 10)
#define OUT_MAX ((size_t)1 << 30)

static const char *const supported_versions[] = {
    "2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05", NULL,
};

static const char *const level_names[] = {
    "debug", "info", "notice", "warning", "error", "critical", "alert", "emergency",
};

typedef struct mcp_batch {
    json_t *responses;      /* array being filled */
    json_t *first_id;       /* id of the first request member (routes the array) */
    size_t pending;         /* member requests still running */
    bool sealed;            /* all members dispatched */
} mcp_batch;

struct mcp_request {
    mcp_session *s;
    json_t *id;             /* string or integer */
    json_t *progress_token; /* NULL when absent */
    double last_progress;
    bool sent_progress;
    mcp_batch *batch;
    void (*cancel)(void *ud);
    void *cancel_ud;
    void (*writable)(void *ud);
    void *writable_ud;
    mcp_request *prev, *next;
};

struct mcp_ask {
    mcp_session *s;
    mcp_request *req;       /* the request it serves; NULL while that request's
                             * cancel callback runs (it is freed already) */
    json_t *id;             /* our id: a string */
    unsigned detach_gen;    /* which req_cancel detached it (see there) */
    mcp_reply_fn cb;
    void *ud;
    mcp_ask *prev, *next;
};

struct mcp_session {
    mcp_server *srv;
    const mcp_transport *tp;
    void *io;
    char protocol[32];
    bool initialized;        /* initialize answered */
    bool client_ready;       /* notifications/initialized received */
    enum mcp_level log_level;
    json_t *client_caps;
    mcp_request *reqs;       /* in-flight requests */
    size_t ninflight;
    size_t nwritable;        /* requests waiting for the transport to drain */
    mcp_ask *asks;           /* our requests awaiting the client's response */
    unsigned detach_seq;     /* generations for req_cancel's detached asks */
    size_t nasks;
    bool closing;            /* in mcp_session_close: nothing more is sent */
    jsonw out;               /* the message being written (see out_begin) */
    bool out_busy;           /* `out` holds a message not yet sent */
};

/* ---- output ------------------------------------------------------------ */

/* A writer for one outgoing message: the session's buffer, or (should a
 * message be started while another is being written) a fresh one. */
static jsonw *out_begin(mcp_session *s)
{
    jsonw *w = &s->out;
    if (s->out_busy) {
        w = malloc(sizeof *w);
        if (!w)
            return NULL;
        jsonw_init(w, OUT_MAX);
    } else {
        s->out_busy = true;
        jsonw_reset(w, OUT_KEEP);
    }
    return w;
}

/* Releases a writer from out_begin without sending it. */
static void out_drop(mcp_session *s, jsonw *w)
{
    if (w == &s->out) {
        s->out_busy = false;
        jsonw_reset(w, OUT_KEEP);
    } else {
        jsonw_free(w);
        free(w);
    }
}

/* Sends the message in w (from out_begin) and releases w. `related` is the
 * id of the request it belongs to (NULL: none); `is_response` marks that
 * request's last message. Transports without send_related ignore both
 * (stdio, WebSocket). */
static void out_send(mcp_session *s, jsonw *w, const json_t *related, bool is_response)
{
    if (w->failed) {
        log_error("session: could not serialize an outgoing message");
    } else {
        int rc = s->tp->send_related
                     ? s->tp->send_related(s->io, w->buf, w->len, related, is_response)
                     : s->tp->send(s->io, w->buf, w->len);
        if (rc < 0)
            log_debug("session: %s transport refused a message (peer gone)", s->tp->name);
    }
    out_drop(s, w);
}

/* Serializes and sends one message (see out_send). */
static void send_msg(mcp_session *s, json_t *msg, json_t *related, bool is_response)
{
    jsonw *w = out_begin(s);
    if (!w) {
        log_error("session: could not serialize an outgoing message");
        return;
    }
    if (msg)
        jsonw_json(w, msg);
    else
        w->failed = true;
    out_send(s, w, related, is_response);
}

/* Sends a response (a message carrying "id"); routed by that id. */
static void send_response(mcp_session *s, json_t *msg)
{
    json_t *id = json_object_get(msg, "id");
    send_msg(s, msg, id && !json_is_null(id) ? id : NULL, true);
}

static void notify_related_end(mcp_session *s, json_t *id)
{
    if (s->tp->related_end && id)
        s->tp->related_end(s->io, id);
}

static json_t *make_error(json_t *id, int code, const char *message)
{
    return json_pack("{s:s, s:O, s:{s:i, s:s}}", "jsonrpc", "2.0", "id", id ? id : json_null(),
                     "error", "code", code, "message", message);
}

static json_t *make_result(json_t *id, json_t *result /* stolen */)
{
    return json_pack("{s:s, s:O, s:o}", "jsonrpc", "2.0", "id", id, "result", result);
}

/* Sends a response, or adds it to its batch. Steals msg. */
static void deliver(mcp_session *s, mcp_batch *b, json_t *msg)
{
    if (b) {
        json_array_append_new(b->responses, msg);
        return;
    }
    send_response(s, msg);
    json_decref(msg);
}

static void send_error(mcp_session *s, mcp_batch *b, json_t *id, int code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void send_error(mcp_session *s, mcp_batch *b, json_t *id, int code, const char *fmt, ...)
{
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    deliver(s, b, make_error(id, code, message));
}

static void batch_maybe_flush(mcp_session *s, mcp_batch *b)
{
    if (!b || !b->sealed || b->pending > 0)
        return;
    if (json_array_size(b->responses) > 0)
        send_msg(s, b->responses, b->first_id, true);
    else
        notify_related_end(s, b->first_id); /* every member was cancelled */
    json_decref(b->responses);
    json_decref(b->first_id);
    free(b);
}

/* ---- request table ------------------------------------------------------- */

static bool ids_equal(json_t *a, json_t *b)
{
    return json_equal(a, b) && json_typeof(a) == json_typeof(b);
}

static mcp_request *req_find(mcp_session *s, json_t *id)
{
    for (mcp_request *r = s->reqs; r; r = r->next)
        if (ids_equal(r->id, id))
            return r;
    return NULL;
}

/* ---- asks (server-to-client requests) ---------------------------------- */

static void ask_unlink_free(mcp_ask *a)
{
    mcp_session *s = a->s;
    if (a->prev)
        a->prev->next = a->next;
    else
        s->asks = a->next;
    if (a->next)
        a->next->prev = a->prev;
    s->nasks--;
    json_decref(a->id);
    free(a);
}

/* Tells the client we no longer want the answer to ask a. */
static void ask_send_cancelled(mcp_ask *a, const char *reason)
{
    mcp_session *s = a->s;
    if (s->closing)
        return;
    json_t *msg = json_pack("{s:s, s:s, s:{s:O, s:s}}", "jsonrpc", "2.0", "method",
                            "notifications/cancelled", "params", "requestId", a->id, "reason",
                            reason);
    if (msg) {
        /* On its request's stream while that lives; else unrelated. */
        send_msg(s, msg, a->req ? a->req->id : NULL, false);
        json_decref(msg);
    }
}

/* Frees the asks of request r without callbacks; with `notify`, the client
 * is told each is cancelled (r's stream is still open). */
static void req_drop_asks(mcp_request *r, bool notify)
{
    mcp_session *s = r->s;
    for (mcp_ask *a = s->asks, *next; a; a = next) {
        next = a->next;
        if (a->req != r)
            continue;
        if (notify)
            ask_send_cancelled(a, "the request it was sent for has ended");
        ask_unlink_free(a);
    }
}

/* A response from the client (no method; result or error). */
static void handle_response(mcp_session *s, json_t *msg)
{
    json_t *id = json_object_get(msg, "id");
    mcp_ask *a = s->asks;
    while (a && !(id && json_equal(a->id, id) && json_typeof(a->id) == json_typeof(id)))
        a = a->next;
    if (!a) {
        log_debug("session: a response to no pending request of ours; ignored");
        return;
    }
    mcp_reply_fn cb = a->cb;
    void *ud = a->ud;
    ask_unlink_free(a); /* first: cb may end the request or ask again */
    json_t *err = json_object_get(msg, "error");
    if (err) {
        json_t *made = NULL;
        if (!json_is_object(err))
            err = made = json_pack("{s:i, s:s}", "code", RPC_INTERNAL_ERROR, "message",
                                   "the client answered with a malformed error");
        cb(ud, NULL, err);
        json_decref(made);
    } else {
        cb(ud, json_object_get(msg, "result"), NULL);
    }
}

/* ---- request table (continued) ----------------------------------------- */

static void req_unlink_free(mcp_request *r)
{
    mcp_session *s = r->s;
    if (s->nasks)
        req_drop_asks(r, false);
    if (r->prev)
        r->prev->next = r->next;
    else
        s->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    s->ninflight--;
    if (r->writable)
        s->nwritable--;
    json_decref(r->id);
    json_decref(r->progress_token);
    free(r);
}

/* Ends a request whose response is `msg` (stolen; NULL = no response). */
static void req_end(mcp_request *r, json_t *msg)
{
    mcp_session *s = r->s;
    mcp_batch *b = r->batch;
    if (msg)
        deliver(s, b, msg);
    req_unlink_free(r);
    if (b) {
        b->pending--;
        batch_maybe_flush(s, b);
    }
}

mcp_server *mcp_req_server(const mcp_request *r) { return r->s->srv; }

bool mcp_req_wants_progress(const mcp_request *r) { return r->progress_token != NULL; }

bool mcp_req_progress(mcp_request *r, double progress, double total, const char *message)
{
    if (!r->progress_token || (r->sent_progress && progress <= r->last_progress))
        return false;
    r->last_progress = progress;
    r->sent_progress = true;
    /* Written directly; the same text as serializing {jsonrpc, method,
     * params: {progressToken, progress, total?, message?}}. Like jansson,
     * a non-finite total and a message that is not valid UTF-8 are left
     * out, and a non-finite progress cannot be sent. */
    jsonw *w = isfinite(progress) ? out_begin(r->s) : NULL;
    if (!w) {
        log_error("session: could not serialize an outgoing message");
        return true;
    }
    jsonw_lit(w, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":"
                 "{\"progressToken\":");
    jsonw_json(w, r->progress_token);
    jsonw_lit(w, ",\"progress\":");
    jsonw_real(w, progress);
    if (total >= 0 && isfinite(total)) {
        jsonw_lit(w, ",\"total\":");
        jsonw_real(w, total);
    }
    size_t mlen = message ? strlen(message) : 0;
    if (message && utf8_valid(message, mlen)) {
        jsonw_lit(w, ",\"message\":");
        jsonw_str(w, message, mlen);
    }
    jsonw_lit(w, "}}");
    out_send(r->s, w, r->id, false);
    return true;
}

bool mcp_req_log_enabled(const mcp_request *r, enum mcp_level level)
{
    return level >= r->s->log_level;
}

jsonw *mcp_req_log_begin(mcp_request *r, enum mcp_level level, const char *logger)
{
    /* What json_pack would refuse is not sent (as before). */
    size_t llen = logger ? strlen(logger) : 0;
    if (!mcp_req_log_enabled(r, level) || !logger || !utf8_valid(logger, llen))
        return NULL;
    jsonw *w = out_begin(r->s);
    if (!w)
        return NULL;
    jsonw_lit(w, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":"
                 "{\"level\":\"");
    jsonw_raw(w, level_names[level], strlen(level_names[level]));
    jsonw_lit(w, "\",\"logger\":");
    jsonw_str(w, logger, llen);
    jsonw_lit(w, ",\"data\":");
    return w;
}

void mcp_req_log_end(mcp_request *r, jsonw *w)
{
    jsonw_lit(w, "}}");
    out_send(r->s, w, r->id, false);
}

void mcp_req_log(mcp_request *r, enum mcp_level level, const char *logger, json_t *data)
{
    jsonw *w = data ? mcp_req_log_begin(r, level, logger) : NULL;
    if (w) {
        jsonw_json(w, data);
        mcp_req_log_end(r, w);
    }
    json_decref(data);
}

bool mcp_req_congested(const mcp_request *r)
{
    const mcp_session *s = r->s;
    return s->tp->pending && s->tp->pending(s->io) > MCP_OUT_HIGH_WATER;
}

void mcp_req_on_writable(mcp_request *r, void (*fn)(void *ud), void *ud)
{
    if (r->writable && !fn)
        r->s->nwritable--;
    else if (!r->writable && fn)
        r->s->nwritable++;
    r->writable = fn;
    r->writable_ud = ud;
}

void mcp_session_drained(mcp_session *s)
{
    if (!s || s->nwritable == 0)
        return;
    for (mcp_request *r = s->reqs; r; r = r->next) {
        if (!r->writable)
            continue;
        void (*fn)(void *) = r->writable;
        void *ud = r->writable_ud;
        mcp_req_on_writable(r, NULL, NULL);
        fn(ud);
    }
}

mcp_session *mcp_req_session(const mcp_request *r) { return r->s; }

/* Builds a request of ours with a fresh id (set in *id, borrowed from the
 * message). Steals params. NULL when it cannot. */
static json_t *make_request(mcp_session *s, const char *method, json_t *params, json_t **id)
{
    char buf[32];
    snprintf(buf, sizeof buf, "srv-%llu", ++s->srv->id_counter);
    json_t *msg = json_pack("{s:s, s:s, s:s, s:o}", "jsonrpc", "2.0", "id", buf,
                            "method", method, "params", params);
    *id = msg ? json_object_get(msg, "id") : NULL;
    return msg;
}

void mcp_req_send_request(mcp_request *r, const char *method, json_t *params)
{
    json_t *id;
    json_t *msg = make_request(r->s, method, params, &id);
    if (msg) {
        send_msg(r->s, msg, r->id, false);
        json_decref(msg);
    }
}

mcp_ask *mcp_req_ask(mcp_request *r, const char *method, json_t *params, mcp_reply_fn cb,
                     void *ud)
{
    mcp_session *s = r->s;
    if (s->nasks >= MCP_MAX_ASKS) {
        log_warn("session: %u requests to the client already pending; %s not sent",
                 MCP_MAX_ASKS, method);
        json_decref(params);
        return NULL;
    }
    mcp_ask *a = calloc(1, sizeof *a);
    if (!a) {
        json_decref(params);
        return NULL;
    }
    json_t *id = NULL;
    json_t *msg = make_request(s, method, params, &id);
    if (!msg) {
        free(a);
        return NULL;
    }
    a->s = s;
    a->req = r;
    a->id = json_incref(id);
    a->cb = cb;
    a->ud = ud;
    a->next = s->asks;
    if (s->asks)
        s->asks->prev = a;
    s->asks = a;
    s->nasks++;
    send_msg(s, msg, r->id, false);
    json_decref(msg);
    return a;
}

void mcp_ask_cancel(mcp_ask *a)
{
    if (!a)
        return;
    ask_send_cancelled(a, "no longer needed");
    ask_unlink_free(a);
}

size_t mcp_session_asks(const mcp_session *s) { return s->nasks; }

void mcp_session_notify(mcp_session *s, const char *method, json_t *params)
{
    json_t *msg = json_pack("{s:s, s:s, s:o}", "jsonrpc", "2.0", "method", method,
                            "params", params);
    if (msg) {
        send_msg(s, msg, NULL, false);
        json_decref(msg);
    }
}

bool mcp_session_client_has(const mcp_session *s, const char *path)
{
    json_t *node = s->client_caps;
    char part[64];
    while (node && *path) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        if (n >= sizeof part)
            return false;
        memcpy(part, path, n);
        part[n] = '\0';
        node = json_object_get(node, part);
        path += n + (dot ? 1 : 0);
    }
    return node && !json_is_null(node) && !json_is_false(node);
}

void mcp_req_on_cancel(mcp_request *r, void (*cancel)(void *ud), void *ud)
{
    r->cancel = cancel;
    r->cancel_ud = ud;
}

/* Sends a tool_result's response with structuredContent serialized once
 * (tools/result.h): {"jsonrpc":"2.0","id":…,"result":{"content":[{"type":
 * "text","text":"<escaped s>"}],"structuredContent":<s>,"isError"?}}.
 * Returns false (nothing sent) when it cannot. */
static bool finish_spliced(mcp_request *r, json_t *sc, int is_error)
{
    jsonw text;
    jsonw_init(&text, OUT_MAX);
    jsonw_json(&text, sc);
    jsonw *w = text.failed ? NULL : out_begin(r->s);
    if (!w) {
        jsonw_free(&text);
        return false;
    }
    jsonw_lit(w, "{\"jsonrpc\":\"2.0\",\"id\":");
    jsonw_json(w, r->id);
    jsonw_lit(w, ",\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"");
    jsonw_str_body(w, text.buf, text.len);
    jsonw_lit(w, "\"}],\"structuredContent\":");
    jsonw_raw(w, text.buf, text.len);
    if (is_error >= 0) {
        if (is_error)
            jsonw_lit(w, ",\"isError\":true");
        else
            jsonw_lit(w, ",\"isError\":false");
    }
    jsonw_lit(w, "}}");
    jsonw_free(&text);
    if (w->failed) {
        out_drop(r->s, w); /* the tree path below tries again */
        return false;
    }
    out_send(r->s, w, r->id, true);
    return true;
}

void mcp_req_finish(mcp_request *r, json_t *result)
{
    if (r->s->nasks)
        req_drop_asks(r, true); /* before the response ends r's stream */
    if (!result)
        result = json_pack("{s:[{s:s, s:s}], s:b}", "content", "type", "text", "text",
                           "internal error: no result", "isError", 1);
    int is_error = -1;
    json_t *sc = r->batch ? NULL : tool_result_deferred(result, &is_error);
    if (sc && finish_spliced(r, sc, is_error)) {
        json_decref(result);
        req_end(r, NULL);
        return;
    }
    tool_result_materialize(result);
    req_end(r, make_result(r->id, result));
}

void mcp_req_finish_error(mcp_request *r, int code, const char *message)
{
    if (r->s->nasks)
        req_drop_asks(r, true);
    req_end(r, make_error(r->id, code, message));
}

/* Runs a request's cancel callback and frees it without a response. Its
 * asks outlive it until the callback returns (which may mcp_ask_cancel
 * them): they are detached (req = NULL) first and freed after. */
static void req_cancel(mcp_request *r)
{
    void (*cancel)(void *) = r->cancel;
    void *ud = r->cancel_ud;
    r->cancel = NULL;
    mcp_batch *b = r->batch;
    mcp_session *s = r->s;
    bool detached = false;
    /* A cancel callback may cancel another request (a nested req_cancel):
     * each call frees only the asks it detached itself. */
    unsigned gen = ++s->detach_seq;
    for (mcp_ask *a = s->asks; a; a = a->next)
        if (a->req == r) {
            a->req = NULL;
            a->detach_gen = gen;
            detached = true;
        }
    if (!b)
        notify_related_end(s, r->id); /* batch members end with their batch */
    req_unlink_free(r);
    if (cancel)
        cancel(ud);
    for (mcp_ask *a = detached ? s->asks : NULL, *next; a; a = next) {
        next = a->next;
        if (!a->req && a->detach_gen == gen)
            ask_unlink_free(a);
    }
    if (b) {
        b->pending--;
        batch_maybe_flush(s, b);
    }
}

/* ---- methods ------------------------------------------------------------ */

static const char *negotiate(const char *asked)
{
    for (size_t i = 0; supported_versions[i]; i++)
        if (asked && strcmp(asked, supported_versions[i]) == 0)
            return supported_versions[i];
    return MCP_LATEST_VERSION;
}

static void do_initialize(mcp_session *s, mcp_batch *b, json_t *id, json_t *params)
{
    if (s->initialized) {
        send_error(s, b, id, RPC_INVALID_REQUEST, "session is already initialized");
        return;
    }
    json_t *pv = params ? json_object_get(params, "protocolVersion") : NULL;
    if (!json_is_string(pv)) {
        send_error(s, b, id, RPC_INVALID_PARAMS,
                   "initialize needs params.protocolVersion (a string)");
        return;
    }
    snprintf(s->protocol, sizeof s->protocol, "%s", negotiate(json_string_value(pv)));
    json_t *caps = json_object_get(params, "capabilities");
    s->client_caps = json_is_object(caps) ? json_incref(caps) : json_object();
    s->initialized = true;

    json_t *result = json_pack(
        "{s:s, s:{s:{s:b}, s:{}}, s:{s:s, s:s, s:s}, s:s}",
        "protocolVersion", s->protocol,
        "capabilities", "tools", "listChanged", 0, "logging",
        "serverInfo", "name", MCP_SERVER_NAME, "title", "deploy-mcp", "version", DEPLOY_MCP_VERSION,
        "instructions",
        "deploy-mcp deploys through hosting platforms. Call list_targets first. "
        "create_preview makes a preview deployment; stream_events follows its build live "
        "(progress and log notifications) and returns a cursor to resume; tail_logs reads "
        "logs; request_publish asks a human to approve a production publish and returns "
        "the approval URL to show the user. No tool publishes to production directly.");
    deliver(s, b, make_result(id, result));
}

static void do_tools_list(mcp_session *s, mcp_batch *b, json_t *id, json_t *params)
{
    size_t start = 0, n = 0;
    json_t *cursor = params ? json_object_get(params, "cursor") : NULL;
    while (tool_nth(n))
        n++;
    if (cursor && !json_is_null(cursor)) {
        const char *c = json_string_value(cursor);
        char *end = NULL;
        unsigned long v = c && c[0] == 't' ? strtoul(c + 1, &end, 10) : 0;
        if (!c || c[0] != 't' || !end || *end || end == c + 1 || v == 0 || v >= n) {
            send_error(s, b, id, RPC_INVALID_PARAMS, "invalid tools/list cursor");
            return;
        }
        start = v;
    }
    size_t page = s->srv->tools_page_size ? s->srv->tools_page_size : n;
    json_t *tools = json_array();
    size_t i;
    for (i = start; i < n && i < start + page; i++)
        json_array_append_new(tools, tool_describe(tool_nth(i)));
    json_t *result = json_pack("{s:o}", "tools", tools);
    if (i < n) {
        char next[32];
        snprintf(next, sizeof next, "t%zu", i);
        json_object_set_new(result, "nextCursor", json_string(next));
    }
    deliver(s, b, make_result(id, result));
}

static void do_set_level(mcp_session *s, mcp_batch *b, json_t *id, json_t *params)
{
    const char *word = params ? json_string_value(json_object_get(params, "level")) : NULL;
    for (size_t i = 0; word && i < sizeof level_names / sizeof level_names[0]; i++)
        if (strcmp(word, level_names[i]) == 0) {
            s->log_level = (enum mcp_level)i;
            deliver(s, b, make_result(id, json_object()));
            return;
        }
    send_error(s, b, id, RPC_INVALID_PARAMS,
               "logging/setLevel needs params.level: one of debug, info, notice, warning, "
               "error, critical, alert, emergency");
}

static void do_tools_call(mcp_session *s, mcp_batch *b, json_t *id, json_t *params)
{
    json_t *name = params ? json_object_get(params, "name") : NULL;
    if (!json_is_string(name)) {
        send_error(s, b, id, RPC_INVALID_PARAMS, "tools/call needs params.name (a string)");
        return;
    }
    json_t *args = json_object_get(params, "arguments");
    if (args && !json_is_object(args) && !json_is_null(args)) {
        send_error(s, b, id, RPC_INVALID_PARAMS, "tools/call params.arguments must be an object");
        return;
    }
    if (req_find(s, id)) {
        send_error(s, b, id, RPC_INVALID_REQUEST,
                   "a request with this id is already in progress");
        return;
    }
    if (s->ninflight >= MCP_MAX_INFLIGHT) {
        send_error(s, b, id, RPC_INVALID_REQUEST,
                   "too many requests in flight (limit %u): wait for some to finish",
                   MCP_MAX_INFLIGHT);
        return;
    }
    mcp_request *r = calloc(1, sizeof *r);
    if (!r) {
        send_error(s, b, id, RPC_INTERNAL_ERROR, "out of memory");
        return;
    }
    r->s = s;
    r->id = json_incref(id);
    json_t *meta = json_object_get(params, "_meta");
    json_t *tok = meta ? json_object_get(meta, "progressToken") : NULL;
    if (json_is_string(tok) || json_is_integer(tok))
        r->progress_token = json_incref(tok);
    r->batch = b;
    if (b)
        b->pending++;
    r->next = s->reqs;
    if (s->reqs)
        s->reqs->prev = r;
    s->reqs = r;
    s->ninflight++;
    json_t *empty = NULL;
    if (!json_is_object(args))
        args = empty = json_object();
    tool_dispatch(r, json_string_value(name), args);
    json_decref(empty);
}

static void handle_notification(mcp_session *s, const char *method, json_t *params)
{
    if (strcmp(method, "notifications/initialized") == 0) {
        s->client_ready = true;
    } else if (strcmp(method, "notifications/cancelled") == 0) {
        json_t *rid = params ? json_object_get(params, "requestId") : NULL;
        mcp_request *r = rid ? req_find(s, rid) : NULL;
        if (r) {
            log_debug("session: request cancelled by the client");
            req_cancel(r);
        }
    }
    /* Other notifications (roots/list_changed, ...) need no action. */
}

static void handle_request(mcp_session *s, mcp_batch *b, json_t *id, const char *method,
                           json_t *params)
{
    if (params && !json_is_object(params) && !json_is_array(params)) {
        send_error(s, b, id, RPC_INVALID_PARAMS, "params must be an object");
        return;
    }
    if (params && !json_is_object(params))
        params = NULL; /* no method of ours takes positional params */
    if (strcmp(method, "ping") == 0) {
        deliver(s, b, make_result(id, json_object()));
        return;
    }
    if (strcmp(method, "initialize") == 0) {
        do_initialize(s, b, id, params);
        return;
    }
    if (!s->initialized) {
        send_error(s, b, id, RPC_INVALID_REQUEST,
                   "session not initialized: send initialize first");
        return;
    }
    if (strcmp(method, "tools/list") == 0)
        do_tools_list(s, b, id, params);
    else if (strcmp(method, "tools/call") == 0)
        do_tools_call(s, b, id, params);
    else if (strcmp(method, "logging/setLevel") == 0)
        do_set_level(s, b, id, params);
    else
        send_error(s, b, id, RPC_METHOD_NOT_FOUND, "method not found: %.200s", method);
}

/* Handles one parsed message (an element of a batch or a lone message). */
static void handle_one(mcp_session *s, mcp_batch *b, json_t *msg)
{
    if (!json_is_object(msg)) {
        send_error(s, b, NULL, RPC_INVALID_REQUEST, "a JSON-RPC message must be an object");
        return;
    }
    json_t *id = json_object_get(msg, "id");
    bool id_ok = id && (json_is_string(id) || json_is_integer(id));
    json_t *reply_id = id_ok ? id : NULL;
    const char *version = json_string_value(json_object_get(msg, "jsonrpc"));
    json_t *method = json_object_get(msg, "method");

    if (!method && (json_object_get(msg, "result") || json_object_get(msg, "error"))) {
        handle_response(s, msg); /* to one of our asks, or stray */
        return;
    }
    if (!version || strcmp(version, "2.0") != 0) {
        send_error(s, b, reply_id, RPC_INVALID_REQUEST, "jsonrpc must be \"2.0\"");
        return;
    }
    if (!json_is_string(method)) {
        send_error(s, b, reply_id, RPC_INVALID_REQUEST, "method must be a string");
        return;
    }
    if (id && !id_ok) {
        send_error(s, b, NULL, RPC_INVALID_REQUEST,
                   "id must be a string or an integer (null is not allowed)");
        return;
    }
    json_t *params = json_object_get(msg, "params");
    if (b && id && !b->first_id)
        b->first_id = json_incref(id);
    if (!id)
        handle_notification(s, json_string_value(method), params);
    else
        handle_request(s, b, id, json_string_value(method), params);
}

/* True when v nests arrays/objects deeper than max. Recursion is bounded by
 * jansson's own parse depth limit (2048). */
static bool json_depth_exceeds(json_t *v, int max)
{
    if (max < 0)
        return true;
    size_t i;
    const char *k;
    json_t *el;
    if (json_is_array(v)) {
        json_array_foreach(v, i, el)
            if (json_depth_exceeds(el, max - 1))
                return true;
    } else if (json_is_object(v)) {
        json_object_foreach(v, k, el)
            if (json_depth_exceeds(el, max - 1))
                return true;
    }
    return false;
}

static bool batches_allowed(const mcp_session *s)
{
    /* Versions are dates, so string order is time order. */
    return s->initialized && strcmp(s->protocol, MCP_BATCH_CUTOFF) < 0;
}

void mcp_session_handle(mcp_session *s, const char *text, size_t len)
{
    if (len > MCP_MAX_MESSAGE_BYTES) {
        mcp_session_reject(s, RPC_INVALID_REQUEST, "message too large");
        return;
    }
    json_error_t jerr;
    json_t *msg = json_loadb(text, len, JSON_ALLOW_NUL | JSON_DECODE_ANY, &jerr);
    if (!msg) {
        send_error(s, NULL, NULL, RPC_PARSE_ERROR, "parse error: %s (at byte %d)",
                   jerr.text, jerr.position);
        return;
    }
    if (json_depth_exceeds(msg, MCP_MAX_DEPTH)) {
        json_decref(msg);
        send_error(s, NULL, NULL, RPC_INVALID_REQUEST,
                   "message nested deeper than %d levels", MCP_MAX_DEPTH);
        return;
    }
    if (!json_is_array(msg)) {
        handle_one(s, NULL, msg);
        json_decref(msg);
        return;
    }
    if (!batches_allowed(s)) {
        send_error(s, NULL, NULL, RPC_INVALID_REQUEST,
                   "JSON-RPC batches are not supported with protocol version %s",
                   s->initialized ? s->protocol : "(not negotiated yet)");
    } else if (json_array_size(msg) == 0) {
        send_error(s, NULL, NULL, RPC_INVALID_REQUEST, "empty batch");
    } else {
        mcp_batch *b = calloc(1, sizeof *b);
        if (b) {
            b->responses = json_array();
            size_t i;
            json_t *el;
            json_array_foreach(msg, i, el)
                handle_one(s, b, el);
            b->sealed = true;
            batch_maybe_flush(s, b);
        }
    }
    json_decref(msg);
}

void mcp_session_reject(mcp_session *s, int code, const char *message)
{
    send_error(s, NULL, NULL, code, "%s", message);
}

mcp_session *mcp_session_new(mcp_server *srv, const mcp_transport *tp, void *io)
{
    mcp_session *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->srv = srv;
    s->tp = tp;
    s->io = io;
    s->log_level = MCP_LOG_INFO;
    jsonw_init(&s->out, OUT_MAX);
    return s;
}

void mcp_session_close(mcp_session *s)
{
    if (!s)
        return;
    s->closing = true; /* cancel callbacks may mcp_ask_cancel: nothing is sent */
    while (s->reqs) {
        /* Batches of cancelled members would flush partially; drop them. */
        mcp_request *r = s->reqs;
        if (r->batch) {
            mcp_batch *b = r->batch;
            for (mcp_request *o = s->reqs; o; o = o->next)
                if (o->batch == b)
                    o->batch = NULL;
            json_decref(b->responses);
            json_decref(b->first_id);
            free(b);
        }
        req_cancel(r);
    }
    while (s->asks) /* none are left (each belongs to a request); to be sure */
        ask_unlink_free(s->asks);
    if (s->srv->gate)
        gate_session_closed(s->srv->gate, s);
    json_decref(s->client_caps);
    jsonw_free(&s->out);
    free(s);
}

size_t mcp_session_inflight(const mcp_session *s) { return s->ninflight; }

bool mcp_session_initialized(const mcp_session *s) { return s->initialized; }

bool mcp_protocol_supported(const char *version)
{
    for (size_t i = 0; version && supported_versions[i]; i++)
        if (strcmp(version, supported_versions[i]) == 0)
            return true;
    return false;
}

const char *mcp_session_protocol(const mcp_session *s) { return s->protocol; }

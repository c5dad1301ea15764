/* session.h — one MCP session: JSON-RPC message handling, lifecycle
 * (initialize → initialized), the request table, progress, cancellation and
 * logging. Transports own the bytes; the session owns MCP.
 *
 * A transport creates a session with a send function and hands it whole
 * JSON-RPC messages (one line / one frame / one POST body). The session
 * answers through send(). Everything runs on the loop thread.
 *
 * Requests (tools/call) that take time are represented by mcp_request. The
 * tool that handles one must end it exactly once with mcp_req_finish (or
 * mcp_req_finish_error), unless the request is cancelled first: then the
 * session calls the tool's cancel callback (registered with mcp_req_on_cancel)
 * and frees the request itself, and no response is sent. After either, the
 * mcp_request pointer is dead. */
#ifndef DEPLOY_MCP_SESSION_H
#define DEPLOY_MCP_SESSION_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct mcp_server;

typedef struct mcp_session mcp_session;
typedef struct mcp_request mcp_request;

#define MCP_MAX_MESSAGE_BYTES (4u << 20)   /* one inbound JSON-RPC message */
#define MCP_MAX_DEPTH 64                   /* nesting depth accepted in a message */
#define MCP_MAX_INFLIGHT 4096              /* concurrent requests per session */

/* JSON-RPC error codes. */
enum {
    RPC_PARSE_ERROR = -32700,
    RPC_INVALID_REQUEST = -32600,
    RPC_METHOD_NOT_FOUND = -32601,
    RPC_INVALID_PARAMS = -32602,
    RPC_INTERNAL_ERROR = -32603,
};

/* MCP logging levels (RFC 5424 order). */
enum mcp_level {
    MCP_LOG_DEBUG = 0, MCP_LOG_INFO, MCP_LOG_NOTICE, MCP_LOG_WARNING, MCP_LOG_ERROR,
    MCP_LOG_CRITICAL, MCP_LOG_ALERT, MCP_LOG_EMERGENCY
};

/* The transport's side. send() gets one complete serialized JSON-RPC message
 * (no trailing newline; the transport frames it) and must copy what it keeps.
 * It returns 0, or a negative value when the peer is gone.
 *
 * Transports that carry each request on its own stream (Streamable HTTP:
 * one POST, one SSE stream) also set the optional members:
 *  - send_related() replaces send() when set. `related_id` is the JSON-RPC id
 *    of the request the message belongs to (a response's own id, or the
 *    request a progress/log notification reports on; for a batch response,
 *    the id of the batch's first request), NULL when it belongs to none (an
 *    error answering an unparsable message). `is_response` is true when the
 *    message is the last one for that request. The id is borrowed.
 *  - related_end() is called when a request ends without a response
 *    (cancelled by the client, or its session closing), so the transport can
 *    end that request's stream. May be called from mcp_session_close. */
/* Backpressure: a transport may report the bytes it has queued for the
 * peer (pending). Above MCP_OUT_HIGH_WATER the session reports requests as
 * congested and streaming tools pause their upstream transfers; the
 * transport calls mcp_session_drained once the queue is below
 * MCP_OUT_LOW_WATER, and they resume. Nothing is dropped either way. */
#define MCP_OUT_HIGH_WATER (4u << 20)
#define MCP_OUT_LOW_WATER (1u << 20)

typedef struct mcp_transport {
    const char *name;                     /* "stdio", "websocket", "http" */
    int (*send)(void *io, const char *msg, size_t len);
    int (*send_related)(void *io, const char *msg, size_t len, const json_t *related_id,
                        bool is_response);
    void (*related_end)(void *io, const json_t *related_id);
    size_t (*pending)(void *io);          /* optional: bytes queued for the peer */
} mcp_transport;

/* True when `version` is a protocol version this server negotiates (for the
 * Streamable HTTP MCP-Protocol-Version header check). */
bool mcp_protocol_supported(const char *version);

/* Creates a session bound to a server and a transport endpoint `io`.
 * Never NULL except out of memory. */
mcp_session *mcp_session_new(struct mcp_server *srv, const mcp_transport *tp, void *io);

/* Handles one inbound message (raw bytes; need not be NUL-terminated, need
 * not be valid UTF-8 or JSON — errors are answered). */
void mcp_session_handle(mcp_session *s, const char *msg, size_t len);

/* Answers an inbound message that the transport had to refuse before
 * parsing (e.g. over the size cap): sends a JSON-RPC error with id null. */
void mcp_session_reject(mcp_session *s, int code, const char *message);

/* Cancels every running request (their cancel callbacks run, no responses)
 * and frees the session. The transport must not call send-side functions
 * afterwards. Safe to call while requests are in flight. */
void mcp_session_close(mcp_session *s);

/* Number of requests in flight. */
size_t mcp_session_inflight(const mcp_session *s);

/* The negotiated protocol version ("" before initialize). */
const char *mcp_session_protocol(const mcp_session *s);

/* True once initialize has been answered successfully. */
bool mcp_session_initialized(const mcp_session *s);

/* --- for tool implementations --------------------------------------- */

struct mcp_server *mcp_req_server(const mcp_request *r);

/* True when the request carried _meta.progressToken. */
bool mcp_req_wants_progress(const mcp_request *r);

/* Sends notifications/progress if the request has a progress token and
 * `progress` is strictly greater than the last value sent (otherwise does
 * nothing and returns false). total < 0 means "no total". message may be NULL. */
bool mcp_req_progress(mcp_request *r, double progress, double total, const char *message);

/* True when a notifications/message at `level` would be sent (the session's
 * logging/setLevel threshold; default info). */
bool mcp_req_log_enabled(const mcp_request *r, enum mcp_level level);

/* Sends notifications/message {level, logger, data} if enabled. Steals
 * `data` in every case. */
void mcp_req_log(mcp_request *r, enum mcp_level level, const char *logger, json_t *data);

/* The same without a jansson tree, for hot paths (tools/relay.c): returns a
 * writer (mcp/jsonw.h) into which the caller writes exactly one JSON value,
 * the notification's data, then calls mcp_req_log_end, which sends it. NULL
 * (and nothing to end) when the level is not enabled, `logger` is not valid
 * UTF-8, or memory ran out. The text the caller writes is not checked: it
 * must be one compact JSON value, its strings valid UTF-8. */
struct jsonw;
struct jsonw *mcp_req_log_begin(mcp_request *r, enum mcp_level level, const char *logger);
void mcp_req_log_end(mcp_request *r, struct jsonw *w);

/* Registers the function the session calls if the client cancels the
 * request (notifications/cancelled) or the session closes. It must abort all
 * of the call's work and free the tool's own state; it must not call
 * mcp_req_finish. */
void mcp_req_on_cancel(mcp_request *r, void (*cancel)(void *ud), void *ud);

/* True when the session's transport has more than MCP_OUT_HIGH_WATER bytes
 * queued for a client that is not reading fast enough. */
bool mcp_req_congested(const mcp_request *r);

/* Registers fn to run (once) when the transport has drained after
 * congestion; NULL unregisters. The registration dies with the request. */
void mcp_req_on_writable(mcp_request *r, void (*fn)(void *ud), void *ud);

/* Transport side: the queue fell below MCP_OUT_LOW_WATER; runs the
 * requests' writable callbacks. */
void mcp_session_drained(mcp_session *s);

/* The session a request belongs to (valid while the request lives). */
mcp_session *mcp_req_session(const mcp_request *r);

/* Server-to-client requests (sampling/createMessage, elicitation/create).
 *
 * mcp_req_ask sends `method` with `params` to the client on the stream of
 * request `r` (so Streamable HTTP delivers it before r's response) under a
 * fresh id of ours ("srv-<n>", a string unique for the server's lifetime),
 * and keeps an mcp_ask until the client answers. The session matches the
 * client's response by id (same JSON type) and calls cb exactly once:
 * cb(ud, result, NULL) for a result, cb(ud, NULL, error) for a JSON-RPC
 * error object (a malformed error member is reported as an internal-error
 * object). Both are borrowed for the call. The ask is freed before cb runs:
 * cb may end r (mcp_req_finish) or ask again. A second response to the same
 * id, or one to an id we never sent or have cancelled, is ignored.
 *
 * Steals params in every case. Returns NULL — nothing sent, cb never called —
 * when the session already has MCP_MAX_ASKS asks pending or memory ran out.
 *
 * An ask lives at most as long as its request: when r ends (finished, or
 * cancelled by the client, or its session closing) asks still pending are
 * freed without a callback. Finishing r sends notifications/cancelled for
 * each first; when r is cancelled, its cancel callback may still call
 * mcp_ask_cancel on them (they are freed after it returns). */
#define MCP_MAX_ASKS 64                    /* pending asks per session */

typedef struct mcp_ask mcp_ask;
typedef void (*mcp_reply_fn)(void *ud, json_t *result, const json_t *error);

mcp_ask *mcp_req_ask(mcp_request *r, const char *method, json_t *params, mcp_reply_fn cb,
                     void *ud);

/* Abandons a pending ask: sends notifications/cancelled {requestId, reason}
 * to the client (not while its session is closing) and frees it; cb is never
 * called. NULL does nothing. After it, the pointer is dead. */
void mcp_ask_cancel(mcp_ask *a);

/* Number of asks pending in the session. */
size_t mcp_session_asks(const mcp_session *s);

/* Sends a server-to-client request without awaiting the answer (nothing is
 * kept; the client's response is ignored like any unknown one), on r's
 * stream as mcp_req_ask does. Steals params. For requests whose answer does
 * not matter (URL-mode elicitation: the outcome arrives out of band). */
void mcp_req_send_request(mcp_request *r, const char *method, json_t *params);

/* Sends a notification that belongs to no request (e.g.
 * notifications/elicitation/complete). Steals params. */
void mcp_session_notify(mcp_session *s, const char *method, json_t *params);

/* True when the client declared the capability at initialize, given as a
 * dotted path into its capabilities object, e.g. "elicitation.url". */
bool mcp_session_client_has(const mcp_session *s, const char *path);

/* Sends the tools/call result and frees the request. Steals `result` (a
 * CallToolResult object). */
void mcp_req_finish(mcp_request *r, json_t *result);

/* Sends a JSON-RPC error response and frees the request. */
void mcp_req_finish_error(mcp_request *r, int code, const char *message);

#endif

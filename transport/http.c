/* http.c — MCP Streamable HTTP (MCP 2025-11-25 "Transports") on /mcp.
 *
 * POST carries one JSON-RPC message (or, for protocol versions before
 * 2025-06-18, a batch). Notifications and responses get 202. A request gets a
 * stream: the session's messages for that request — progress and log
 * notifications, then the response — are routed to it by request id through
 * mcp_transport.send_related. When the response is ready before anything else
 * was said (initialize, ping, tools/list, quick errors) it goes out as plain
 * application/json with a Content-Length; otherwise the POST becomes an SSE
 * stream that ends after the response. Debian's libwebsockets cannot chunk
 * HTTP/1.1 output, so SSE streams are close-delimited (Connection: close).
 *
 * Sessions (Mcp-Session-Id, issued at initialize from uv_random) outlive
 * connections: a notifications/cancelled on one POST cancels a call running
 * on another, because the request table belongs to the session. They end on
 * DELETE, on idle expiry (no open stream and no request for idle_ms) or at
 * shutdown; ending one closes its streams and cancels its calls. GET opens
 * the session's one server-to-client stream, which carries messages that
 * belong to no request.
 *
 * Chunked request bodies are not decoded by lws, so a POST must carry a
 * Content-Length (411 otherwise); one that is not a single decimal number
 * gets 400, bodies over LSN_MAX_BODY get 413.
 *
 * HTTP/1.1 pipelining: lws 4.1.6 cannot parse a request whose bytes it has
 * already read into its own buffer together with the previous one (its
 * lws_http_action feeds that buffer, starting at the request's head, to the
 * body parser, and would then spin), so such requests are never served: the
 * request before them is answered with `Connection: close` and the connection
 * closes, which tells the client that none of the requests after it were
 * processed (RFC 9112 section 9.6). To know whether lws holds such bytes, a
 * complete JSON answer (or 202) is not written from the body completion
 * callback but in the prepare phase of the next loop turn (on_reply_turn):
 * lws' idle callback hands buffered bytes over first, and with the request
 * still open it reports them as a second body completion. An SSE stream (its
 * head always says Connection: close) that gets one is closed. A request that
 * reaches lws in a read of its own (pipelined requests that arrive apart, or
 * a client that waits for each answer) is served on the kept-alive
 * connection as before. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mcp/log.h"
#include "transport/listener_int.h"
#include "transport/lws_lazy.h" /* lws_* calls go through the loaded table */

#define SID_MAX 128                 /* longest Mcp-Session-Id we read */
#define PROTO_HDR_MAX 64            /* longest MCP-Protocol-Version we read */
#define REFUSAL_MAX 256
#define FLUSH_CLOSE_S 5             /* a closing answer not flushed by then: drop it */
#define SSE_PREFIX "event: message\ndata: "
#define SSE_SUFFIX "\n\n"
#define RPC_SESSION_ERROR (-32000)  /* transport-level refusals, as the TS SDK uses */
#define RPC_SESSION_NOT_FOUND (-32001)

enum hmethod { HM_OTHER, HM_GET, HM_POST, HM_DELETE };
enum hmode { HC_NEW, HC_COLLECT, HC_REPLY, HC_SSE };

typedef struct hsess hsess;

typedef struct hconn {
    listener *l;
    struct lws *wsi;
    lsn_pss *pss;
    enum hmethod method;
    char sid[SID_MAX];
    bool has_sid;
    unsigned refuse;              /* status to answer once the body is read */
    char refuse_msg[REFUSAL_MAX];
    char *body;
    size_t body_len, body_cap;
    hsess *sess;                  /* NULL when none or after the session ended */
    json_t *ids;                  /* request ids this POST carries (array) */
    enum hmode mode;
    char *out;                    /* bytes not yet written */
    size_t out_len, out_off, out_cap;
    char *first_msg;              /* the first message, when it was a response */
    size_t first_len;
    size_t nmsgs;
    bool got_response;
    bool finished;                /* nothing more will be queued: close after flush */
    bool closing;                 /* flushed; the next writeable closes */
    bool abort;                   /* close at once */
    bool client_close;            /* HTTP/1.0 or Connection: close: no keep-alive */
    unsigned reply_status;        /* HC_REPLY: the answer's status; body in first_msg */
    bool pipelined;               /* lws holds bytes sent after this request */
    uv_prepare_t *prep;           /* HC_REPLY: runs once before the next poll */
    bool in_streams;
    struct hconn *sprev, *snext;  /* in sess->streams */
    struct hconn *prev, *next;    /* in l->hconns */
} hconn;

struct hsess {
    listener *l;
    mcp_session *session;
    char id[2 * LSN_SESSION_ID_BYTES + 1];
    uint64_t last_active;
    hconn *streams;               /* POST streams awaiting responses, and the GET stream */
    hconn *get_stream;
    hconn *current;               /* the POST being dispatched */
    bool dead;
    hsess *prev, *next;
};

/* ---- sessions ------------------------------------------------------------- */

static bool ids_equal(const json_t *a, const json_t *b)
{
    return json_typeof(a) == json_typeof(b) && json_equal((json_t *)a, (json_t *)b);
}

static void stream_unlink(hconn *c)
{
    hsess *s = c->sess;
    if (!s || !c->in_streams)
        return;
    if (c->sprev)
        c->sprev->snext = c->snext;
    else
        s->streams = c->snext;
    if (c->snext)
        c->snext->sprev = c->sprev;
    c->sprev = c->snext = NULL;
    c->in_streams = false;
    if (s->get_stream == c)
        s->get_stream = NULL;
}

static void stream_link(hsess *s, hconn *c)
{
    c->sess = s;
    c->snext = s->streams;
    c->sprev = NULL;
    if (s->streams)
        s->streams->sprev = c;
    s->streams = c;
    c->in_streams = true;
}

static hconn *find_stream(hsess *s, const json_t *id)
{
    for (hconn *c = s->streams; c; c = c->snext) {
        size_t i;
        json_t *v;
        json_array_foreach(c->ids, i, v)
            if (ids_equal(v, id))
                return c;
    }
    return NULL;
}

static void wake(hconn *c)
{
    if (c->mode == HC_SSE && c->wsi)
        lws_callback_on_writable(c->wsi);
}

/* Queues one SSE event (or, while collecting, a message that may still go out
 * as plain JSON). */
static int queue_msg(hconn *c, const char *msg, size_t len, bool is_response)
{
    if (c->finished || c->abort || c->mode == HC_REPLY)
        return -1;
    if (c->mode == HC_COLLECT && is_response && c->nmsgs == 0) {
        c->first_msg = malloc(len + 1);
        if (c->first_msg) {
            memcpy(c->first_msg, msg, len);
            c->first_msg[len] = '\0';
            c->first_len = len;
        }
    }
    size_t add = sizeof SSE_PREFIX - 1 + len + sizeof SSE_SUFFIX - 1;
    if (c->out_len - c->out_off + add > LSN_OUT_MAX) {
        log_warn("http: client is not reading its stream (%zu bytes queued); closing it",
                 c->out_len - c->out_off);
        c->abort = true;
        if (c->wsi)
            lws_callback_on_writable(c->wsi);
        return -1;
    }
    if (c->out_off > 0 && c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    if (c->out_len + add > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < c->out_len + add)
            cap *= 2;
        char *n = realloc(c->out, cap);
        if (!n)
            return -1;
        c->out = n;
        c->out_cap = cap;
    }
    char *p = c->out + c->out_len;
    memcpy(p, SSE_PREFIX, sizeof SSE_PREFIX - 1);
    p += sizeof SSE_PREFIX - 1;
    memcpy(p, msg, len);
    p += len;
    memcpy(p, SSE_SUFFIX, sizeof SSE_SUFFIX - 1);
    c->out_len += add;
    c->nmsgs++;
    if (is_response) {
        c->got_response = true;
        c->finished = true; /* a POST stream ends with its response */
        stream_unlink(c);   /* ...and nothing after it is routed here */
    }
    wake(c);
    return 0;
}

static int http_send_related(void *io, const char *msg, size_t len, const json_t *related,
                             bool is_response)
{
    hsess *s = io;
    if (s->dead)
        return -1;
    s->last_active = uv_now(s->l->srv->loop);
    hconn *c = related ? find_stream(s, related) : NULL;
    /* An answer to the POST being handled that has no id (e.g. a parse
     * error). Only answers: a POST without requests is answered 202 with no
     * body, so a notification queued there would never be written. */
    if (!c && is_response && s->current &&
        (!related || json_array_size(s->current->ids) == 0))
        c = s->current;
    if (!c && !related && !is_response)
        c = s->get_stream; /* unrelated server-to-client messages */
    if (!c) {
        log_debug("http: no open stream for a message; dropped");
        return -1;
    }
    if (c == s->get_stream && is_response)
        return -1; /* responses never travel on the GET stream */
    return queue_msg(c, msg, len, is_response && c != s->get_stream);
}

static int http_send(void *io, const char *msg, size_t len)
{
    return http_send_related(io, msg, len, NULL, false);
}

/* A request ended without a response (cancelled): end its stream. */
static void http_related_end(void *io, const json_t *id)
{
    hsess *s = io;
    if (s->dead)
        return;
    hconn *c = find_stream(s, id);
    json_t *first = c ? json_array_get(c->ids, 0) : NULL;
    if (!first || !ids_equal(first, id))
        return; /* a batch stream ends with its batch response */
    c->finished = true;
    stream_unlink(c);
    wake(c);
}

static const mcp_transport http_tp = {
    .name = "http", .send = http_send, .send_related = http_send_related,
    .related_end = http_related_end,
};

static hsess *sess_find(listener *l, const char *id)
{
    for (hsess *s = l->sessions; s; s = s->next)
        if (!s->dead && strcmp(s->id, id) == 0)
            return s;
    return NULL;
}

static hsess *sess_new(listener *l)
{
    unsigned char raw[LSN_SESSION_ID_BYTES];
    /* Synchronous uv_random (no callback) reads the kernel CSPRNG; it does
     * not block once the system has booted. */
    if (uv_random(NULL, NULL, raw, sizeof raw, 0, NULL) != 0)
        return NULL;
    hsess *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(s->id + 2 * i, 3, "%02x", raw[i]);
    s->l = l;
    s->session = mcp_session_new(l->srv, &http_tp, s);
    if (!s->session) {
        free(s);
        return NULL;
    }
    s->last_active = uv_now(l->srv->loop);
    s->next = l->sessions;
    if (l->sessions)
        l->sessions->prev = s;
    l->sessions = s;
    l->nsessions++;
    return s;
}

/* Ends a session: its streams close, its calls are cancelled (no responses).
 * Called from DELETE, the idle sweep, shutdown, or a failed initialize —
 * never from inside the session's own callbacks, so freeing here is safe. */
static void sess_kill(hsess *s)
{
    if (s->dead)
        return;
    s->dead = true;
    listener *l = s->l;
    if (s->prev)
        s->prev->next = s->next;
    else
        l->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    l->nsessions--;
    /* Every connection that still points at the session lets go of it, not
     * only the open streams: a POST stream that has ended (its response or
     * cancellation queued, so unlinked from s->streams) stays open until it
     * has flushed and closed, and must not reach the freed session then. */
    for (hconn *c = l->hconns; c; c = c->next) {
        if (c->sess != s)
            continue;
        if (c->in_streams) {
            stream_unlink(c);
            c->abort = true; /* cut off mid-stream: no response will come */
            if (c->wsi)
                lws_callback_on_writable(c->wsi);
        }
        c->sess = NULL;
    }
    s->streams = s->get_stream = s->current = NULL;
    mcp_session_close(s->session);
    free(s);
}

void lsn_http_sweep(listener *l, uint64_t now)
{
    hsess *s = l->sessions;
    while (s) {
        hsess *next = s->next;
        if (!s->streams && now - s->last_active >= l->idle_ms) {
            log_info("http: session idle for %llu s; ending it",
                     (unsigned long long)(l->idle_ms / 1000));
            sess_kill(s);
        }
        s = next;
    }
}

void lsn_http_stop(listener *l)
{
    while (l->sessions)
        sess_kill(l->sessions);
}

/* ---- connections ------------------------------------------------------------ */

static hconn *conn_new(listener *l, struct lws *wsi, lsn_pss *pss)
{
    hconn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->l = l;
    c->wsi = wsi;
    c->pss = pss;
    c->next = l->hconns;
    if (l->hconns)
        l->hconns->prev = c;
    l->hconns = c;
    pss->obj = c;
    return c;
}

static void free_handle(uv_handle_t *h) { free(h); }

static void conn_free(hconn *c)
{
    listener *l = c->l;
    stream_unlink(c);
    if (c->sess && c->sess->current == c)
        c->sess->current = NULL;
    if (c->prev)
        c->prev->next = c->next;
    else if (l->hconns == c)
        l->hconns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->pss && c->pss->obj == c)
        c->pss->obj = NULL;
    if (c->prep) {
        c->prep->data = NULL;
        uv_close((uv_handle_t *)c->prep, free_handle);
    }
    json_decref(c->ids);
    free(c->body);
    free(c->out);
    free(c->first_msg);
    free(c);
}

static int add_hdr(struct lws *wsi, const char *name, const char *value, unsigned char **p,
                   unsigned char *end)
{
    return lws_add_http_header_by_name(wsi, (const unsigned char *)name,
                                       (const unsigned char *)value, (int)strlen(value), p, end);
}

/* Writes the response head. clen = LWS_ILLEGAL_HTTP_CONTENT_LEN for a
 * close-delimited SSE stream (lws adds Connection: close itself); `close`
 * adds it to a response with a length. */
static int write_head(hconn *c, unsigned status, const char *ctype, lws_filepos_t clen, bool close)
{
    unsigned char buf[LWS_PRE + LSN_HDR_SPACE];
    unsigned char *start = buf + LWS_PRE, *p = start, *end = buf + sizeof buf - 1;
    if (lws_add_http_common_headers(c->wsi, status, ctype, clen, &p, end))
        return -1;
    if (close && clen != LWS_ILLEGAL_HTTP_CONTENT_LEN &&
        lws_add_http_header_by_token(c->wsi, WSI_TOKEN_CONNECTION, (const unsigned char *)"close",
                                     5, &p, end))
        return -1;
    if (clen == LWS_ILLEGAL_HTTP_CONTENT_LEN && add_hdr(c->wsi, "cache-control:", "no-cache", &p, end))
        return -1;
    if (c->sess && add_hdr(c->wsi, "mcp-session-id:", c->sess->id, &p, end))
        return -1;
    return lws_finalize_write_http_header(c->wsi, start, &p, end) ? -1 : 0;
}

/* Writes a complete response with a Content-Length (body NULL: none); with
 * `close`, the head says Connection: close. Returns 0 or -1. */
static int write_whole(hconn *c, unsigned status, const char *body, size_t blen, bool close)
{
    struct lws *wsi = c->wsi;
    int rc = write_head(c, status, blen ? "application/json" : NULL, (lws_filepos_t)blen, close);
    if (rc == 0 && blen) {
        unsigned char *b = malloc(LWS_PRE + blen);
        rc = b ? 0 : -1;
        if (b) {
            memcpy(b + LWS_PRE, body, blen);
            if (lws_write(wsi, b + LWS_PRE, blen, LWS_WRITE_HTTP_FINAL) < 0)
                rc = -1;
            free(b);
        }
    }
    return rc;
}

/* Writes the answer of an HC_REPLY transaction, then either hands the
 * connection back to lws for the next request (keep-alive), or, when bytes
 * of a further request wait that lws cannot serve (or the client asked for
 * it), closes it once lws has flushed: from the next writeable callback,
 * with a timeout in case that never comes. Runs outside lws' callbacks. */
static void send_reply(hconn *c)
{
    struct lws *wsi = c->wsi;
    bool close = c->pipelined || c->client_close;
    int rc = write_whole(c, c->reply_status, c->first_msg, c->first_msg ? c->first_len : 0, close);
    if (rc != 0) {
        lws_set_timeout(wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
        return;
    }
    if (close) {
        c->closing = true;
        lws_set_timeout(wsi, PENDING_FLUSH_STORED_SEND_BEFORE_CLOSE, FLUSH_CLOSE_S);
        lws_callback_on_writable(wsi);
        return;
    }
    conn_free(c); /* the transaction is over; lws may start the next one below */
    if (lws_http_transaction_completed(wsi))
        lws_set_timeout(wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
}

/* Runs in the loop's prepare phase of the turn after the one that completed
 * the body: lws' idle callback, which hands a connection the bytes it has
 * buffered (reported as a second body completion, see on_body_complete), has
 * run by now, and the poll phase, where lws would read the socket and could
 * see a client's end of input before we answered, has not. */
static void on_reply_turn(uv_prepare_t *h)
{
    hconn *c = h->data;
    uv_prepare_stop(h);
    if (c && c->wsi && c->mode == HC_REPLY && !c->closing && !c->l->stopping)
        send_reply(c);
}

/* Answers a POST with one JSON body (first_msg; NULL: none) one loop turn
 * from now. Returns what the lws callback must return. */
static int reply_later(hconn *c, unsigned status)
{
    c->mode = HC_REPLY;
    c->reply_status = status;
    if (!c->prep) {
        c->prep = malloc(sizeof *c->prep);
        if (!c->prep || uv_prepare_init(c->l->srv->loop, c->prep) != 0) {
            free(c->prep);
            c->prep = NULL;
            /* Cannot wait a turn: answer now, and close in case more
             * follows, once lws has flushed what it buffered of the answer
             * (as send_reply does). */
            if (write_whole(c, status, c->first_msg, c->first_msg ? c->first_len : 0, true) != 0)
                return -1;
            c->closing = true;
            lws_set_timeout(c->wsi, PENDING_FLUSH_STORED_SEND_BEFORE_CLOSE, FLUSH_CLOSE_S);
            lws_callback_on_writable(c->wsi);
            return 0;
        }
        c->prep->data = c;
    }
    uv_prepare_start(c->prep, on_reply_turn);
    return 0;
}

/* Refusal with a JSON-RPC error body, then close. */
static int refuse(struct lws *wsi, unsigned status, int code, const char *msg)
{
    static const char *const auth_hdr[] = {"www-authenticate:", "Bearer", NULL};
    static const char *const allow_hdr[] = {"allow:", "GET, POST, DELETE", NULL};
    char *body = lsn_error_body(code, msg);
    lsn_respond_now(wsi, status, "application/json", body,
                    status == 401 ? auth_hdr : status == 405 ? allow_hdr : NULL);
    free(body);
    log_debug("http: refused a request (%u): %s", status, msg);
    return -1;
}

/* True when a comma-separated Accept value lists `type` (parameters such as
 * ";q=0.9" ignored). */
static bool accept_lists(const char *accept, const char *type)
{
    size_t n = strlen(type);
    const char *p = accept;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        size_t len = strcspn(p, ",;");
        size_t tlen = len;
        while (tlen > 0 && (p[tlen - 1] == ' ' || p[tlen - 1] == '\t'))
            tlen--;
        if (tlen == n && strncasecmp(p, type, n) == 0)
            return true;
        p += len;
        if (*p == ';')
            p += strcspn(p, ",");
    }
    return false;
}

static enum hmethod method_of(struct lws *wsi)
{
    if (lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI))
        return HM_POST;
    if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI))
        return HM_GET;
    if (lws_hdr_total_length(wsi, WSI_TOKEN_DELETE_URI))
        return HM_DELETE;
    return HM_OTHER;
}

/* Reads Mcp-Session-Id and MCP-Protocol-Version. Returns 0, or refuses. */
static int read_session_headers(hconn *c, struct lws *wsi)
{
    char proto[PROTO_HDR_MAX];
    int n = lsn_header(wsi, (enum lws_token_indexes)0, "mcp-session-id:", c->sid, sizeof c->sid);
    if (n < 0)
        return refuse(wsi, 404, RPC_SESSION_NOT_FOUND, "Session not found");
    c->has_sid = n > 0;
    /* Absent means 2025-03-26 (the spec's default for servers); present must
     * be a version we speak. */
    n = lsn_header(wsi, (enum lws_token_indexes)0, "mcp-protocol-version:", proto, sizeof proto);
    if (n < 0 || (n > 0 && !mcp_protocol_supported(proto))) {
        char msg[REFUSAL_MAX];
        snprintf(msg, sizeof msg, "Bad Request: unsupported MCP-Protocol-Version %s "
                 "(supported: 2025-11-25, 2025-06-18, 2025-03-26, 2024-11-05)",
                 n < 0 ? "(too long)" : proto);
        return refuse(wsi, 400, RPC_SESSION_ERROR, msg);
    }
    return 0;
}

/* Looks up the session a GET/DELETE names; refuses when absent/unknown. */
static hsess *session_of(hconn *c, int *rc)
{
    if (!c->has_sid) {
        *rc = refuse(c->wsi, 400, RPC_SESSION_ERROR, "Bad Request: Mcp-Session-Id header is required");
        return NULL;
    }
    hsess *s = sess_find(c->l, c->sid);
    if (!s)
        *rc = refuse(c->wsi, 404, RPC_SESSION_NOT_FOUND, "Session not found");
    return s;
}

static int start_sse(hconn *c)
{
    c->mode = HC_SSE;
    if (write_head(c, HTTP_STATUS_OK, "text/event-stream", LWS_ILLEGAL_HTTP_CONTENT_LEN, false) != 0)
        return -1;
    /* Long-lived from here: no body/idle timeout applies to it. (On HTTP/1.1
     * lws_http_mark_sse only matters for h2 substreams, which we do not serve.) */
    lws_set_timeout(c->wsi, NO_PENDING_TIMEOUT, 0);
    lws_callback_on_writable(c->wsi);
    return 0;
}

static int on_get(hconn *c)
{
    char accept[LSN_HDR_MAX];
    if (lsn_header(c->wsi, WSI_TOKEN_HTTP_ACCEPT, NULL, accept, sizeof accept) <= 0 ||
        !accept_lists(accept, "text/event-stream"))
        return refuse(c->wsi, 406, RPC_SESSION_ERROR,
                      "Not Acceptable: the GET stream needs Accept: text/event-stream");
    int rc = 0;
    hsess *s = session_of(c, &rc);
    if (!s)
        return rc;
    if (s->get_stream)
        return refuse(c->wsi, 409, RPC_SESSION_ERROR,
                      "Conflict: this session already has a GET stream open");
    stream_link(s, c);
    s->get_stream = c;
    s->last_active = uv_now(c->l->srv->loop);
    return start_sse(c);
}

static int on_delete(hconn *c)
{
    int rc = 0;
    hsess *s = session_of(c, &rc);
    if (!s)
        return rc;
    log_debug("http: session ended by DELETE");
    sess_kill(s);
    lsn_respond_now(c->wsi, HTTP_STATUS_OK, NULL, NULL, NULL);
    return -1;
}

/* Whether lws will close the connection after this transaction (the same
 * rule as lws: HTTP/1.1 keeps it open and HTTP/1.0 does not, unless a
 * Connection header of exactly "close" / "keep-alive" says otherwise). */
static bool client_wants_close(struct lws *wsi)
{
    char v[32];
    int n = lsn_header(wsi, WSI_TOKEN_HTTP, NULL, v, sizeof v);
    bool close = !(n > 7 && v[5] == '1' && v[7] == '1');
    if (lsn_header(wsi, WSI_TOKEN_CONNECTION, NULL, v, sizeof v) > 0) {
        if (strcasecmp(v, "keep-alive") == 0)
            close = false;
        else if (strcasecmp(v, "close") == 0)
            close = true;
    }
    return close;
}

enum clen_verdict { CL_OK, CL_BAD, CL_TOO_BIG };

/* Content-Length must be exactly one run of decimal digits (RFC 9110
 * section 8.6), optional whitespace around it. A list, even of equal values
 * (also what two Content-Length lines become: lws joins repeated headers with
 * commas), a sign or any other character makes the framing unknowable: 400.
 * A well-formed number over the body cap: 413. */
static enum clen_verdict parse_content_length(const char *v)
{
    while (*v == ' ' || *v == '\t')
        v++;
    unsigned long long n = 0;
    const char *d = v;
    bool big = false;
    for (; *d >= '0' && *d <= '9'; d++) {
        if (n > LSN_MAX_BODY)
            big = true; /* keep scanning the syntax; never overflows */
        else
            n = n * 10 + (unsigned)(*d - '0');
    }
    if (d == v)
        return CL_BAD;
    while (*d == ' ' || *d == '\t')
        d++;
    if (*d)
        return CL_BAD;
    return big || n > LSN_MAX_BODY ? CL_TOO_BIG : CL_OK;
}

/* Checks made on the request line and headers, before the body. */
static int on_request(hconn *c, const char *path)
{
    struct lws *wsi = c->wsi;
    char why[REFUSAL_MAX];
    c->method = method_of(wsi);
    if (strcmp(path, LSN_PATH) != 0)
        return refuse(wsi, 404, RPC_SESSION_ERROR, "Not Found: the MCP endpoint is /mcp");
    int status = lsn_check_request(c->l, wsi, why, sizeof why);
    if (status) {
        log_info("http: refused a request (%d): %s", status, why);
        return refuse(wsi, (unsigned)status, RPC_SESSION_ERROR, why);
    }
    if (c->method == HM_OTHER)
        return refuse(wsi, 405, RPC_SESSION_ERROR,
                      "Method Not Allowed: use POST, GET or DELETE on /mcp");
    if (read_session_headers(c, wsi) != 0)
        return -1;
    if (c->method == HM_GET)
        return on_get(c);
    if (c->method == HM_DELETE)
        return on_delete(c);

    c->client_close = client_wants_close(wsi);
    char v[LSN_HDR_MAX];
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0 ||
        lsn_header(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH, NULL, v, sizeof v) <= 0)
        return refuse(wsi, 411, RPC_SESSION_ERROR,
                      "Length Required: send the body with a Content-Length (chunked request "
                      "bodies are not accepted)");
    switch (parse_content_length(v)) {
    case CL_BAD:
        return refuse(wsi, 400, RPC_SESSION_ERROR,
                      "Bad Request: Content-Length must be one decimal number");
    case CL_TOO_BIG:
        return refuse(wsi, 413, RPC_SESSION_ERROR,
                      "Payload Too Large: a message may hold at most 4 MiB");
    default:
        break;
    }
    /* Refusals below wait for the body, so the client is not reset mid-send. */
    if (lsn_header(wsi, WSI_TOKEN_HTTP_ACCEPT, NULL, v, sizeof v) <= 0 ||
        !accept_lists(v, "application/json") || !accept_lists(v, "text/event-stream")) {
        c->refuse = 406;
        snprintf(c->refuse_msg, sizeof c->refuse_msg,
                 "Not Acceptable: Accept must list application/json and text/event-stream");
    } else if (lsn_header(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE, NULL, v, sizeof v) <= 0 ||
               strncasecmp(v, "application/json", 16) != 0) {
        c->refuse = 415;
        snprintf(c->refuse_msg, sizeof c->refuse_msg,
                 "Unsupported Media Type: Content-Type must be application/json");
    }
    return 0;
}

/* True when a body starts like a request line ("POST /mcp HTTP/1.1"): what
 * lws 4.1.6 hands over as the body of a pipelined request it parsed from its
 * own buffer. No JSON text starts that way. */
static bool looks_like_request_line(const char *p, size_t len)
{
    size_t i = 0;
    while (i < len && i < 16 && p[i] >= 'A' && p[i] <= 'Z')
        i++;
    return i > 0 && i + 1 < len && p[i] == ' ' && (p[i + 1] == '/' || p[i + 1] == '*');
}

static int on_body(hconn *c, const void *in, size_t len)
{
    if (c->refuse || len == 0)
        return 0;
    if (c->body_len == 0 && looks_like_request_line(in, len)) {
        /* Never reached while reply_later sees to it that lws holds no
         * request bytes when a transaction ends; should it happen, close
         * rather than answer a request whose body is not its body. */
        log_warn("http: a pipelined request reached us garbled; closing its connection");
        return -1;
    }
    if (c->body_len + len > LSN_MAX_BODY) {
        c->refuse = 413;
        snprintf(c->refuse_msg, sizeof c->refuse_msg,
                 "Payload Too Large: a message may hold at most 4 MiB");
        return 0;
    }
    if (c->body_len + len > c->body_cap) {
        size_t cap = c->body_cap ? c->body_cap : 4096;
        while (cap < c->body_len + len)
            cap *= 2;
        char *n = realloc(c->body, cap);
        if (!n)
            return -1;
        c->body = n;
        c->body_cap = cap;
    }
    memcpy(c->body + c->body_len, in, len);
    c->body_len += len;
    return 0;
}

static void collect_id(json_t *ids, json_t *m, bool *is_init)
{
    json_t *id = json_object_get(m, "id");
    const char *method = json_string_value(json_object_get(m, "method"));
    if (method && id && (json_is_string(id) || json_is_integer(id))) {
        json_array_append(ids, id);
        if (strcmp(method, "initialize") == 0)
            *is_init = true;
    }
}

static int on_body_complete(hconn *c)
{
    struct lws *wsi = c->wsi;
    if (c->mode != HC_NEW) {
        /* lws calls again while this request is still open: it holds bytes
         * the client sent after it, which it cannot parse as a request (see
         * the top of this file). They will not be served; this request's
         * answer says Connection: close. */
        if (c->mode == HC_SSE && !c->abort) {
            /* An SSE stream cannot go on: lws would call us again on every
             * turn (it reads no more while it holds those bytes, and the
             * socket stays readable) and cannot pause its reading without
             * pausing its writing too. Its head said Connection: close; the
             * call goes on in the session like one whose client went away. */
            log_warn("http: a request was pipelined behind a POST whose answer is an SSE "
                     "stream; closing that stream (requests after it were not processed)");
            c->abort = true;
            stream_unlink(c);
            lws_callback_on_writable(wsi);
        } else if (!c->pipelined) {
            log_debug("http: a request was pipelined behind another; answering the first "
                      "with Connection: close");
        }
        c->pipelined = true;
        return 0;
    }
    if (c->refuse)
        return refuse(wsi, c->refuse, RPC_SESSION_ERROR, c->refuse_msg);
    json_error_t jerr;
    json_t *msg = json_loadb(c->body ? c->body : "", c->body_len, 0, &jerr);
    if (!msg) {
        char m[REFUSAL_MAX];
        snprintf(m, sizeof m, "Parse error: %s", jerr.text);
        char *body = lsn_error_body(RPC_PARSE_ERROR, m);
        lsn_respond_now(wsi, 400, "application/json", body, NULL);
        free(body);
        return -1;
    }
    json_t *ids = json_array();
    bool is_init = false, batch = json_is_array(msg);
    if (batch) {
        size_t i;
        json_t *m;
        json_array_foreach(msg, i, m)
            collect_id(ids, m, &is_init);
    } else {
        collect_id(ids, msg, &is_init);
    }
    json_decref(msg);

    hsess *s;
    bool created = false;
    if (!c->has_sid) {
        if (!is_init || batch) {
            json_decref(ids);
            return refuse(wsi, 400, RPC_SESSION_ERROR,
                          "Bad Request: Mcp-Session-Id header is required (send initialize "
                          "first)");
        }
        if (c->l->nsessions >= LSN_MAX_SESSIONS) {
            json_decref(ids);
            return refuse(wsi, 503, RPC_SESSION_ERROR,
                          "Service Unavailable: too many sessions; end unused ones with DELETE");
        }
        s = sess_new(c->l);
        if (!s) {
            json_decref(ids);
            return refuse(wsi, 500, RPC_INTERNAL_ERROR, "could not create a session");
        }
        created = true;
    } else if (!(s = sess_find(c->l, c->sid))) {
        json_decref(ids);
        return refuse(wsi, 404, RPC_SESSION_NOT_FOUND, "Session not found");
    }
    s->last_active = uv_now(c->l->srv->loop);
    c->sess = s;
    c->ids = ids;
    if (json_array_size(ids) > 0)
        stream_link(s, c);
    c->mode = HC_COLLECT;
    s->current = c;
    mcp_session_handle(s->session, c->body ? c->body : "", c->body_len);
    if (c->sess)
        s->current = NULL;
    free(c->body);
    c->body = NULL;
    c->body_len = c->body_cap = 0;

    if (created && !mcp_session_initialized(s->session)) {
        /* initialize failed: answer it, but no session comes into being. */
        stream_unlink(c);
        c->sess = NULL;
        sess_kill(s);
        if (!c->first_msg)
            return refuse(wsi, 400, RPC_INVALID_REQUEST, "initialize failed");
        return reply_later(c, HTTP_STATUS_OK);
    }
    if (c->abort || !c->sess)
        return -1;
    if (json_array_size(c->ids) == 0) {
        /* Notifications and responses: 202, unless the session objected. */
        if (c->nmsgs && c->first_msg)
            return reply_later(c, 400);
        free(c->first_msg);
        c->first_msg = NULL;
        return reply_later(c, 202);
    }
    if (c->got_response && c->nmsgs == 1 && c->first_msg) {
        stream_unlink(c);
        return reply_later(c, HTTP_STATUS_OK);
    }
    return start_sse(c) == 0 ? 0 : -1;
}

static int on_writeable(hconn *c, struct lws *wsi)
{
    if (c->abort || c->closing)
        return -1; /* lws flushed everything before asking again; now close */
    if (c->mode == HC_REPLY)
        return 0; /* its answer goes out from on_reply_turn */
    size_t pending = c->out_len - c->out_off;
    if (pending) {
        size_t n = pending < LSN_WRITE_CHUNK ? pending : LSN_WRITE_CHUNK;
        memcpy(c->l->scratch + LWS_PRE, c->out + c->out_off, n);
        if (lws_write(wsi, c->l->scratch + LWS_PRE, n, LWS_WRITE_HTTP) < 0)
            return -1;
        c->out_off += n;
        if (c->out_off == c->out_len)
            c->out_off = c->out_len = 0;
        if (c->sess)
            c->sess->last_active = uv_now(c->l->srv->loop);
    }
    if (c->out_len - c->out_off == 0 && c->finished)
        c->closing = true; /* close-delimited SSE: the close ends the response */
    if (c->out_len - c->out_off > 0 || c->closing)
        lws_callback_on_writable(wsi);
    return 0;
}

int lsn_http_event(listener *l, struct lws *wsi, enum lws_callback_reasons reason, lsn_pss *pss,
                   void *in, size_t len)
{
    hconn *c = pss ? pss->obj : NULL;
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        if (!pss || l->stopping)
            return -1;
        if (c)
            conn_free(c); /* a previous transaction on this keep-alive connection */
        c = conn_new(l, wsi, pss);
        if (!c)
            return -1;
        return on_request(c, in ? (const char *)in : "");
    case LWS_CALLBACK_HTTP_BODY:
        return c ? on_body(c, in, len) : 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        return c ? on_body_complete(c) : -1;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return c ? on_writeable(c, wsi) : 0;
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (c)
            conn_free(c);
        return 0;
    default:
        return 0;
    }
}

/* ws.c — MCP over WebSocket: upgrade on /mcp (subprotocol `mcp`), one
 * JSON-RPC message per text frame, one MCP session per connection.
 *
 * Frames are reassembled up to LSN_MAX_BODY (else close 1009); binary frames
 * close with 1003. Outgoing messages queue per connection; each writeable
 * callback writes queued messages (one frame each) until the socket would
 * block or WS_WRITE_BUDGET bytes went out, so a burst of small notifications
 * does not cost a loop turn each. A client that stops reading while more
 * than LSN_OUT_MAX bytes pile up is disconnected rather than letting memory
 * grow. Closing the connection closes the session, which cancels its running
 * calls and their upstream transfers. */
#include <stdlib.h>
#include <string.h>

#include "mcp/log.h"
#include "transport/listener_int.h"
#include "transport/lws_lazy.h" /* lws_* calls go through the loaded table */

#define WS_WRITE_BUDGET (256 * 1024) /* bytes per writeable callback, at most */

typedef struct wmsg {
    struct wmsg *next;
    size_t len;
    unsigned char buf[]; /* LWS_PRE headroom, then the message */
} wmsg;

typedef struct wconn {
    listener *l;
    struct lws *wsi;
    mcp_session *session;     /* NULL once closed */
    char *rx;                 /* message being reassembled */
    size_t rx_len, rx_cap;
    wmsg *q_head, *q_tail;
    size_t q_bytes;
    bool too_slow;
    struct wconn *prev, *next;
} wconn;

static int ws_send(void *io, const char *msg, size_t len)
{
    wconn *c = io;
    if (c->too_slow || !c->wsi)
        return -1;
    if (c->q_bytes + len > LSN_OUT_MAX) {
        log_warn("websocket: client is not reading (%zu bytes queued); disconnecting it",
                 c->q_bytes);
        c->too_slow = true;
        lws_callback_on_writable(c->wsi);
        return -1;
    }
    wmsg *m = malloc(sizeof *m + LWS_PRE + len);
    if (!m)
        return -1;
    m->next = NULL;
    m->len = len;
    memcpy(m->buf + LWS_PRE, msg, len);
    if (c->q_tail)
        c->q_tail->next = m;
    else
        c->q_head = m;
    c->q_tail = m;
    c->q_bytes += len;
    lws_callback_on_writable(c->wsi);
    return 0;
}

static size_t ws_pending(void *io) { return ((wconn *)io)->q_bytes; }

static const mcp_transport ws_tp = {.name = "websocket", .send = ws_send, .pending = ws_pending};

static void conn_free(wconn *c)
{
    listener *l = c->l;
    if (c->session)
        mcp_session_close(c->session); /* cancels calls; they send nothing */
    c->session = NULL;
    while (c->q_head) {
        wmsg *m = c->q_head;
        c->q_head = m->next;
        free(m);
    }
    if (c->prev)
        c->prev->next = c->next;
    else if (l->wconns == c)
        l->wconns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c->rx);
    free(c);
}

static int close_with(struct lws *wsi, enum lws_close_status code, const char *reason)
{
    lws_close_reason(wsi, code, (unsigned char *)reason, strlen(reason));
    return -1;
}

/* Appends a fragment; returns 0, or -1 when the message would pass the cap. */
static int rx_append(wconn *c, const void *in, size_t len)
{
    if (c->rx_len + len > LSN_MAX_BODY)
        return -1;
    if (c->rx_len + len > c->rx_cap) {
        size_t cap = c->rx_cap ? c->rx_cap : 4096;
        while (cap < c->rx_len + len)
            cap *= 2;
        if (cap > LSN_MAX_BODY)
            cap = LSN_MAX_BODY;
        char *n = realloc(c->rx, cap);
        if (!n)
            return -1;
        c->rx = n;
        c->rx_cap = cap;
    }
    memcpy(c->rx + c->rx_len, in, len);
    c->rx_len += len;
    return 0;
}

static int on_receive(wconn *c, struct lws *wsi, const void *in, size_t len)
{
    if (lws_frame_is_binary(wsi))
        return close_with(wsi, LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE,
                          "binary frames are not accepted: send JSON-RPC as text");
    if (lws_is_first_fragment(wsi) && c->rx_len == 0 && lws_is_final_fragment(wsi) &&
        !lws_remaining_packet_payload(wsi)) {
        if (len > LSN_MAX_BODY)
            return close_with(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
                              "message too large (limit 4 MiB)");
        mcp_session_handle(c->session, in, len); /* whole message in one piece: no copy */
        return 0;
    }
    if (rx_append(c, in, len) != 0)
        return close_with(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
                          "message too large (limit 4 MiB)");
    if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi))
        return 0;
    size_t n = c->rx_len;
    c->rx_len = 0;
    mcp_session_handle(c->session, c->rx, n);
    return 0;
}

static int on_writeable(wconn *c, struct lws *wsi)
{
    if (c->too_slow)
        return close_with(wsi, LWS_CLOSE_STATUS_POLICY_VIOLATION, "client not reading");
    size_t sent = 0;
    wmsg *m;
    /* lws buffers what the kernel did not take and reports the pipe choked
     * until it went out: stop there and wait for the next callback. */
    while ((m = c->q_head) && sent < WS_WRITE_BUDGET && !(sent && lws_send_pipe_choked(wsi))) {
        c->q_head = m->next;
        if (!c->q_head)
            c->q_tail = NULL;
        c->q_bytes -= m->len;
        sent += m->len;
        int w = lws_write(wsi, m->buf + LWS_PRE, m->len, LWS_WRITE_TEXT);
        free(m);
        if (w < 0)
            return -1;
    }
    if (c->q_head)
        lws_callback_on_writable(wsi);
    /* The client reads again: streams paused for it may go on. */
    if (c->q_bytes < MCP_OUT_LOW_WATER)
        mcp_session_drained(c->session);
    return 0;
}

int lsn_ws_event(listener *l, struct lws *wsi, enum lws_callback_reasons reason, lsn_pss *pss,
                 void *in, size_t len)
{
    wconn *c = pss ? pss->obj : NULL;
    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
        /* The upgrade request's headers are still readable here; refusals
         * answer with a proper HTTP status before lws drops the connection. */
        char why[256], path[64];
        if (l->stopping)
            return -1;
        if (lsn_header(wsi, WSI_TOKEN_GET_URI, NULL, path, sizeof path) <= 0 ||
            strcmp(path, LSN_PATH) != 0) {
            lsn_respond_now(wsi, HTTP_STATUS_NOT_FOUND, "text/plain",
                            "WebSocket upgrades are served on /mcp\n", NULL);
            return -1;
        }
        int status = lsn_check_request(l, wsi, why, sizeof why);
        if (status) {
            static const char *const auth_hdr[] = {"www-authenticate:", "Bearer", NULL};
            char *body = lsn_error_body(-32000, why);
            lsn_respond_now(wsi, (unsigned)status, "application/json", body,
                            status == 401 ? auth_hdr : NULL);
            free(body);
            log_info("websocket: refused an upgrade (%d): %s", status, why);
            return -1;
        }
        return 0;
    }
    case LWS_CALLBACK_ESTABLISHED:
        if (!pss)
            return -1;
        c = calloc(1, sizeof *c);
        if (!c)
            return -1;
        c->l = l;
        c->wsi = wsi;
        c->session = mcp_session_new(l->srv, &ws_tp, c);
        if (!c->session) {
            free(c);
            return -1;
        }
        c->next = l->wconns;
        if (l->wconns)
            l->wconns->prev = c;
        l->wconns = c;
        pss->obj = c;
        log_debug("websocket: session opened");
        return 0;
    case LWS_CALLBACK_RECEIVE:
        if (!c || !c->session)
            return -1;
        return on_receive(c, wsi, in, len);
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (!c || !c->session)
            return -1;
        return on_writeable(c, wsi);
    case LWS_CALLBACK_CLOSED:
        if (c) {
            pss->obj = NULL;
            c->wsi = NULL;
            conn_free(c);
            log_debug("websocket: session closed");
        }
        return 0;
    default:
        return 0;
    }
}

void lsn_ws_stop(listener *l)
{
    for (wconn *c = l->wconns; c; c = c->next) {
        if (c->session)
            mcp_session_close(c->session);
        c->session = NULL;
    }
}

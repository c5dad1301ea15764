/* listener_int.h — what listener.c, http.c and ws.c share (not part of the
 * listener's public contract, which is listener.h). Prefix: lsn_. */
#ifndef DEPLOY_MCP_LISTENER_INT_H
#define DEPLOY_MCP_LISTENER_INT_H

#include <libwebsockets.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "mcp/server.h"
#include "mcp/session.h"
#include "transport/listener.h"

#define LSN_PATH "/mcp"
#define LSN_MAX_BODY MCP_MAX_MESSAGE_BYTES  /* POST body / reassembled WS message */
#define LSN_OUT_MAX (32u << 20)   /* bytes queued to one slow client before it is dropped */
#define LSN_WRITE_CHUNK (64u << 10) /* bytes handed to one lws_write */
#define LSN_HDR_MAX 4096          /* longest header value we read (tokens, origins) */
#define LSN_HDR_SPACE 2048        /* response header block */
#define LSN_MAX_SESSIONS 1024     /* live Streamable HTTP sessions */
#define LSN_SESSION_ID_BYTES 16   /* random bytes; hex-encoded in Mcp-Session-Id */
#define LSN_SWEEP_MAX_MS 10000    /* idle-session sweep period (shorter for short idles) */

struct hsess;
struct hconn;
struct wconn;

struct listener {
    mcp_server *srv;
    struct lws_context *ctx;
    struct lws_vhost *vhost;
    listen_addr addr;
    int port;                       /* bound port */
    char *token;                    /* NULL: no auth */
    size_t token_len;
    const char *const *origins;     /* config allowedOrigins */
    uint64_t idle_ms;
    uv_timer_t sweep;
    bool sweep_open;
    struct hsess *sessions;         /* live HTTP sessions */
    size_t nsessions;
    struct hconn *hconns;           /* every HTTP transaction in progress */
    struct wconn *wconns;           /* every WebSocket connection */
    bool stopping;
    unsigned char *scratch;         /* LWS_PRE + LSN_WRITE_CHUNK, for lws_write */
};

/* lws per-connection storage: we keep our own objects and only a pointer here,
 * so their lifetime is ours (an HTTP/1.1 keep-alive connection carries many
 * transactions; a session outlives them). */
typedef struct lsn_pss {
    void *obj;
} lsn_pss;

/* Request checks shared by HTTP and WebSocket upgrades: Host (DNS rebinding,
 * loopback binds only), Origin, bearer token. Returns 0 when allowed, else the
 * HTTP status to answer (403 / 401) with a reason in why. */
int lsn_check_request(listener *l, struct lws *wsi, char *why, size_t whylen);

/* Copies a header into buf (NUL-terminated). `custom` is a lowercase
 * "name:" for headers lws has no token for, else NULL and `token` is used.
 * Returns the length, 0 when absent, -1 when longer than buflen - 1. */
int lsn_header(struct lws *wsi, enum lws_token_indexes token, const char *custom, char *buf,
               size_t buflen);

/* Writes a complete response at once (headers + body) and marks the
 * connection to close: for refusals and other one-shot answers. extra_hdrs
 * is NULL or NULL-terminated name/value pairs ("allow:", "GET, POST"). Returns
 * 0 or -1 (caller returns -1 to lws either way to close). */
int lsn_respond_now(struct lws *wsi, unsigned status, const char *ctype, const char *body,
                    const char *const *extra_hdrs);

/* A JSON-RPC error body {"jsonrpc":"2.0","id":null,"error":{code,message}}
 * (malloc'd; NULL out of memory). */
char *lsn_error_body(int code, const char *message);

/* HTTP side (http.c). */
int lsn_http_event(listener *l, struct lws *wsi, enum lws_callback_reasons reason, lsn_pss *pss,
                   void *in, size_t len);
void lsn_http_stop(listener *l);              /* kills every HTTP session */
void lsn_http_sweep(listener *l, uint64_t now); /* expires idle sessions */

/* WebSocket side (ws.c). */
int lsn_ws_event(listener *l, struct lws *wsi, enum lws_callback_reasons reason, lsn_pss *pss,
                 void *in, size_t len);
void lsn_ws_stop(listener *l);                /* closes every WebSocket session */

#endif

/* listener.h — `deploy-mcp --listen HOST:PORT`: MCP over WebSocket and
 * Streamable HTTP on one port (PRODUCT.md §1), served by libwebsockets on the
 * program's libuv loop.
 *
 * - WebSocket: upgrade on /mcp (subprotocol `mcp`), one JSON-RPC message per
 *   text frame, one MCP session per connection; closing the connection
 *   cancels that session's calls (transport/ws.c).
 * - Streamable HTTP (MCP 2025-11-25 "Transports"): POST/GET/DELETE on /mcp;
 *   sessions named by Mcp-Session-Id outlive connections and end on DELETE,
 *   idle expiry or shutdown (transport/http.c).
 * - Every request and upgrade passes the same checks first: Host (DNS
 *   rebinding, when bound to loopback), Origin, and the bearer token from
 *   DEPLOY_MCP_AUTH_TOKEN (transport/listener.c).
 *
 * Everything runs on the loop thread. */
#ifndef DEPLOY_MCP_LISTENER_H
#define DEPLOY_MCP_LISTENER_H

#include <stdbool.h>
#include <stddef.h>

struct mcp_server;
typedef struct listener listener;

#define LISTEN_HOST_MAX 64                     /* textual address, without brackets */
#define LISTEN_DEFAULT_HOST "127.0.0.1"
#define LISTEN_SESSION_IDLE_DEFAULT_S (30 * 60) /* idle HTTP sessions expire */
#define LISTEN_IDLE_ENV "DEPLOY_MCP_SESSION_IDLE_SECONDS"
#define LISTEN_TOKEN_ENV "DEPLOY_MCP_AUTH_TOKEN"

typedef struct listen_addr {
    char host[LISTEN_HOST_MAX];  /* "127.0.0.1", "::1", "0.0.0.0", ... */
    int port;                    /* 0 = any free port (logged once bound) */
    bool loopback;               /* host is 127.0.0.0/8, ::1 or localhost */
} listen_addr;

/* Parses "HOST:PORT", ":PORT" (default host) or "[V6]:PORT". "localhost"
 * becomes 127.0.0.1. Returns 0, or -1 with a message in err. */
int listener_parse_addr(const char *spec, listen_addr *out, char *err, size_t errlen);

typedef struct listen_opts {
    listen_addr addr;
    const char *token;                  /* bearer token, or NULL: none required */
    const char *const *allowed_origins; /* NULL-terminated; borrowed for the listener's life */
    unsigned idle_seconds;              /* HTTP session idle expiry (>= 1) */
} listen_opts;

/* Binds and starts serving. On failure returns NULL with a message in err.
 * Refuses a non-loopback address without a token. The options' strings are
 * copied except allowed_origins, which must outlive the listener.
 * Rarely (the port was taken between our probe and libwebsockets' bind) it
 * returns a listener whose listener_port() is -1, with err filled: treat it
 * as a failure, but stop and free it like a running one. */
listener *listener_start(struct mcp_server *srv, const listen_opts *opts, char *err,
                         size_t errlen);

/* The port actually bound (useful with port 0). */
int listener_port(const listener *l);

/* First half of shutdown: closes every session (cancelling their calls and
 * upstream transfers; no responses are sent for them), then starts
 * libwebsockets' asynchronous close of its handles. Run the loop until it has
 * no handles left, then call listener_free. */
void listener_stop(listener *l);

/* Second half: frees libwebsockets' context and the listener. Only after
 * listener_stop and after the loop has run dry. NULL is ignored. */
void listener_free(listener *l);

#endif

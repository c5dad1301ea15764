/* http.h — asynchronous HTTP client: libcurl's multi-socket interface driven
 * by the program's one libuv loop (one uv_poll per socket, one uv_timer).
 *
 * Two kinds of transfer share the client:
 *  - buffered: the response body is collected (capped at opts.max_body) and
 *    handed to on_done;
 *  - streaming (opts.stream): on_response is called once with the status and
 *    headers, then on_data for every body chunk as it arrives, then on_done.
 *
 * Ownership and lifetime: http_start returns a request handle owned by the
 * client. Exactly one of these ends it: on_done is called (the handle is
 * freed right after on_done returns, so do not use it afterwards), or the
 * caller calls http_cancel (then no callback runs any more, and the upstream
 * connection is closed at once). Callbacks never run inside http_start or
 * http_cancel; curl_multi_* is never called from inside a curl callback.
 *
 * Retries: when opts.max_retries > 0 and opts.idempotent is true, the client
 * retries with exponential backoff (200 ms doubling, capped at 5 s, plus
 * jitter) on connection-level failures (connect refused/reset, DNS failure,
 * timeouts, empty reply) and on 502/503/504, and on 429 only when the response
 * carries Retry-After or X-Rate-Limit-Time-Reset-Ms (waiting that long, up to
 * 60 s). A 429 without either header is never retried (Showly's
 * build_quota_exceeded does not clear on a timer). Streaming transfers are
 * retried only if nothing was delivered to on_data yet.
 *
 * Secrets: header values are never logged or put in error messages.
 *
 * libcurl is loaded at run time, by the first http_start (curl_lazy.h): a
 * server that never talks to a platform never maps it. If it cannot be
 * loaded, every request ends (on_done, on the next loop turn) with status 0,
 * lib_missing set and error "libcurl could not be loaded: <reason>"; the
 * next request tries to load it again. */
#ifndef DEPLOY_MCP_HTTP_H
#define DEPLOY_MCP_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define HTTP_DEFAULT_MAX_BODY   (16u << 20)  /* buffered responses */
#define HTTP_MAX_HEADER_BYTES   (64u << 10)  /* response headers kept per transfer */
#define HTTP_DEFAULT_CONNECT_MS 10000
#define HTTP_STREAM_BUFFER_BYTES 4096        /* curl receive buffer of streaming transfers */
#define HTTP_POLL_BUDGET_NS     300000u      /* socket callbacks per loop iteration */

typedef struct http_client http_client;
typedef struct http_req http_req;

/* The response as far as known. Pointers are valid only during the callback. */
typedef struct http_response {
    long status;            /* HTTP status; 0 when no response was received */
    const char *body;       /* buffered mode: the body, NUL-terminated; else NULL */
    size_t body_len;
    int curl_code;          /* CURLcode of the transfer; 0 on success */
    const char *error;      /* human-readable transport error ("" when none) */
    bool truncated;         /* buffered body exceeded max_body (body is cut) */
    bool canceled_by_callback; /* on_data/on_response returned an abort */
    bool lib_missing;       /* libcurl could not be loaded: error says why, retrying
                               will not help */
    int attempts;           /* 1 + retries performed */
    const struct http_req *req; /* for http_header() during the callback */
} http_response;

typedef struct http_callbacks {
    /* Streaming mode: called once when the status line and headers are in.
     * Return 0 to receive the body, non-zero to abort the transfer (on_done
     * follows with canceled_by_callback set). May be NULL. */
    int (*on_response)(void *ud, const http_response *res);
    /* Streaming mode: a body chunk. Return 0 to continue, non-zero to abort
     * (on_done follows with canceled_by_callback set). */
    int (*on_data)(void *ud, const char *buf, size_t len);
    /* Always called exactly once unless http_cancel was called first. */
    void (*on_done)(void *ud, const http_response *res);
} http_callbacks;

typedef struct http_opts {
    const char *method;         /* "GET" (default when NULL), "POST", "PUT", ... */
    const char *url;            /* absolute URL; copied */
    const char *const *headers; /* NULL-terminated "Name: value" strings; copied */
    const char *body;           /* request body; copied; may be NULL */
    size_t body_len;
    const char *body_file;      /* or: upload this file's contents (PUT); path copied */
    bool stream;                /* streaming mode (see above) */
    size_t max_body;            /* buffered cap; 0 = HTTP_DEFAULT_MAX_BODY */
    long connect_timeout_ms;    /* 0 = HTTP_DEFAULT_CONNECT_MS */
    long timeout_ms;            /* whole transfer; 0 = none (use for streams) */
    long idle_timeout_ms;       /* abort when no byte arrives for this long; 0 = none */
    int max_retries;            /* 0 = no retries */
    bool idempotent;            /* retries allowed only when true */
    const char *ca_file;        /* extra CA bundle (self-hosted TLS); may be NULL */
} http_opts;

/* Creates the client on `loop`. Returns NULL on failure. Does not load
 * libcurl: the first http_start does (and runs curl_global_init); main calls
 * curl_lazy_cleanup() at exit. */
http_client *http_client_new(uv_loop_t *loop);

/* Cancels every transfer (no callbacks), closes the uv handles and frees the
 * client once they are closed; the loop must run afterwards for the close
 * callbacks. `client` must not be used after this call. */
void http_client_destroy(http_client *client);

/* Starts a transfer. Returns NULL (and calls nothing) if it could not be
 * started. See the file comment for lifetime. */
http_req *http_start(http_client *client, const http_opts *opts,
                     const http_callbacks *cb, void *ud);

/* Aborts a transfer: no callback runs after this returns, the connection is
 * closed at once, and the handle is freed. Safe to call from inside this
 * request's own callbacks too (freeing is deferred). */
void http_cancel(http_req *req);

/* Pauses or resumes delivery of body data on a streaming transfer
 * (backpressure). */
void http_pause(http_req *req, bool paused);

/* Looks up a response header (case-insensitive) of the request's latest
 * response; returns its value without surrounding whitespace, or NULL. Valid
 * during on_response/on_done only. */
const char *http_header(const http_req *req, const char *name);

/* Number of transfers in flight (for tests and shutdown checks). */
size_t http_active(const http_client *client);

/* Socket work per loop iteration: once the socket callbacks of one iteration
 * have run this long, the remaining ready sockets wait for the next iteration
 * (see http.c). Default HTTP_POLL_BUDGET_NS; 0 restores it. For tests. */
void http_set_poll_budget(http_client *client, uint64_t ns);

/* Socket callbacks deferred to a later iteration so far (for tests). */
uint64_t http_deferred_polls(const http_client *client);

#endif

/* watch.h — follows one upstream stream for a tool call: opens it, relays
 * its events (tools/relay.h), enforces the call's time limit, and reports
 * once how it ended. Shared by stream_events, create_preview (wait) and
 * tail_logs.
 *
 * The call ends in exactly one of three ways:
 *  - the logical stream completed (the adapter saw the end): done(), with
 *    timed_out false;
 *  - max_seconds passed first: the stream is closed, done() with timed_out
 *    true and a cursor to continue;
 *  - the stream failed: done() with err set;
 * or the request is cancelled and the tool calls watch_cancel (no done()).
 *
 * When the stream ends without a terminal status (Mixpeek's log stream
 * ends with `done`, which says nothing about the outcome) and resolve_final
 * is set, the deployment is looked up once (PROV_CAP_GET) before done(). */
#ifndef DEPLOY_MCP_TOOLS_WATCH_H
#define DEPLOY_MCP_TOOLS_WATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "mcp/session.h"
#include "providers/provider.h"
#include "tools/relay.h"

typedef struct watch watch;

typedef struct watch_opts {
    enum prov_stream_kind kind;
    const char *id;              /* deployment id; may be NULL for runtime logs */
    const char *cursor;          /* resume after this cursor; may be NULL */
    unsigned max_seconds;        /* > 0 */
    relay_opts relay;
    bool resolve_final;          /* see the file comment */
} watch_opts;

typedef struct watch_end {
    relay *relay;                /* finished (flushed); borrowed for the callback */
    const char *cursor;          /* never NULL; "" only when none could be made */
    uint64_t duration_ms;        /* open → end of the stream */
    bool timed_out;
    const prov_error *err;       /* the stream failed; NULL otherwise */
} watch_end;

/* Called once; the callee ends the request (mcp_req_finish). The watch
 * frees itself after the callback returns. */
typedef void (*watch_done_fn)(void *ud, const watch_end *end);

/* Starts following. Returns NULL with *err filled (nothing to free, no
 * callback). `req` and `t` must outlive the watch. */
watch *watch_start(mcp_request *req, prov_target *t, const watch_opts *o, watch_done_fn done,
                   void *ud, prov_error *err);

/* The watch's relay, e.g. to seed a status before events arrive. */
relay *watch_relay(watch *w);

/* Aborts at once (the request was cancelled): closes the stream and any
 * lookup, sends nothing more, no callback. */
void watch_cancel(watch *w);

#endif

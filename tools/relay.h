/* relay.h — the live relay: turns one request's upstream events (the common
 * event model of providers/provider.h) into MCP notifications while the tool
 * call runs, and accumulates what the tool's result reports.
 *
 * Used by stream_events, create_preview (wait) and tail_logs, usually through
 * tools/watch.h, which adds the stream and the deadline.
 *
 * What goes out (PRODUCT.md §3 "Live relay"):
 *  - log lines as notifications/message, level mapped from the line (debug,
 *    info, warn → warning, error; info when absent), logger
 *    "deploy-mcp/<target>", data {deploymentId, lines:[string]} (RELAY_BUILD)
 *    or {lines:[{ts?, level, text, source?}]} (RELAY_TAIL), honouring the
 *    session's logging level. Lines are chunked: lines arriving within
 *    RELAY_CHUNK_MS travel together; consecutive lines of one level share a
 *    notification, so order is preserved.
 *  - if the request carried a progress token, notifications/progress with
 *    strictly increasing progress: the provider's percentage (and total)
 *    once it reports one, else the number of events relayed so far. One per
 *    non-log event and one per flushed log chunk ("log · 12 lines"). Once a
 *    percentage was seen, an event that does not raise it travels as a
 *    notifications/message {deploymentId?, message} instead. Without a
 *    progress token only log lines are relayed; the rest is in the result.
 *
 * Lifetime: relay_new → relay_event* → relay_finish (flushes; nothing is
 * relayed afterwards) → build the result → relay_free. If the request is
 * cancelled instead, relay_detach (drops pending lines, never touches the
 * request again) then relay_free. relay_free closes the chunk timer; the
 * memory is released in its close callback, so the pointer stays valid until
 * control returns to the loop (a relay may be freed from inside its own
 * callers' stack frames). Everything runs on the loop thread. */
#ifndef DEPLOY_MCP_TOOLS_RELAY_H
#define DEPLOY_MCP_TOOLS_RELAY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mcp/session.h"
#include "providers/provider.h"

#define RELAY_CHUNK_MS         100          /* lines this close travel together */
#define RELAY_CHUNK_MAX_BYTES  (256u << 10) /* flush a chunk early past this */
#define RELAY_CHUNK_MAX_LINES  2000         /* ... or past this many lines */
#define RELAY_LAST_LINES       50           /* lastLines kept for stream results */
#define RELAY_MESSAGE_MAX      512          /* bytes of a progress message */

enum relay_mode {
    RELAY_BUILD,   /* build/deploy events of one deployment (stream_events) */
    RELAY_TAIL,    /* log lines for tail_logs: filtered, kept as objects */
};

typedef struct relay_opts {
    enum relay_mode mode;
    const char *deployment_id;  /* copied; may be NULL (runtime logs) */
    bool include_logs;          /* BUILD: relay log lines and keep lastLines
                                   (lines are counted either way) */
    const char *min_level;      /* TAIL: "debug" | "info" | "warn" | "error"; NULL = all */
    const char *filter;         /* TAIL: substring a line must contain; NULL = all */
    size_t max_lines;           /* TAIL: matching lines kept for the result */
} relay_opts;

typedef struct relay relay;

/* Creates a relay for `req` (borrowed; must outlive the relay until
 * relay_finish or relay_detach). The chunk timer runs on
 * mcp_req_server(req)->loop. Returns NULL when out of memory. */
relay *relay_new(mcp_request *req, const char *target_name, const relay_opts *o);

/* Relays one event (its pointers are borrowed for the call). Ignored after
 * relay_finish / relay_detach. */
void relay_event(relay *r, const prov_event *ev);

/* Sends the buffered log lines now. */
void relay_flush(relay *r);

/* Flushes and stops relaying: call before sending the result. */
void relay_finish(relay *r);

/* The request is gone (cancelled): drop buffered lines, never touch it again. */
void relay_detach(relay *r);

/* Releases the relay (see the file comment). Does not flush. */
void relay_free(relay *r);

/* Status known before any event (e.g. carried by a stream cursor, or the
 * deployment just created). provider_status / url may be NULL. */
void relay_seed_status(relay *r, prov_status st, const char *provider_status, const char *url);

/* Takes status, providerStatus, url and error from a Deployment object (a
 * final get_deployment answer). */
void relay_apply_deployment(relay *r, json_t *deployment);

/* Writes the relay's status, providerStatus, url, the members of the latest
 * status event's detail (prov_event.detail) and (when failed) error into a
 * Deployment object. */
void relay_update_deployment(const relay *r, json_t *deployment);

prov_status relay_status(const relay *r);
unsigned long relay_event_count(const relay *r);
unsigned long relay_log_line_count(const relay *r);

/* The stream_events result (new reference): {deploymentId, status, terminal,
 * providerStatus?, url?, eventCount, logLineCount, lastLines, failure?,
 * cursor, durationMs}. */
json_t *relay_stream_summary(const relay *r, const char *cursor, uint64_t duration_ms);

/* The tail_logs result (new reference): {lines, count, dropped, cursor}. */
json_t *relay_tail_summary(const relay *r, const char *cursor);

#endif

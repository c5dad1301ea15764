/* gate.h — the human approval gate for production publishes on platforms
 * without an approval concept of their own (BigCommerce, Mixpeek, Bluelink).
 *
 * request_publish asks the adapter to describe the publish
 * (prepare_publish), records a request in the journal (tools/approval.h) and
 * answers with the approval page's URL (transport/approval_page.h). Only a
 * person with the approver secret can approve it there; then the gate calls
 * the adapter's publish and records the outcome. No tool can approve.
 *
 * Request ids ("apr_...") also work as deployment ids: get_deployment and
 * stream_events report pending_approval (normalized status queued) while
 * waiting, then follow the production deployment; rejection and expiry are
 * terminal. When the client declared elicitation.url, request_publish also
 * sends elicitation/create (mode "url") and, once decided (or expired),
 * notifications/elicitation/complete.
 *
 * Requests expire after 24 h undecided; env DEPLOY_MCP_APPROVAL_TTL_SECONDS
 * (read at start-up) changes that. */
#ifndef DEPLOY_MCP_GATE_H
#define DEPLOY_MCP_GATE_H

#include <jansson.h>
#include <stdbool.h>

#include "mcp/session.h"
#include "providers/provider.h"

struct mcp_server;
typedef struct gate gate;

/* Creates the gate when some target publishes through it (the adapter has
 * prepare_publish/publish), opening the journal and the approval page. A
 * gate whose journal or page could not start still exists and explains why
 * in request_publish. Returns NULL when no target needs it. */
gate *gate_new(struct mcp_server *srv);

/* Stops the page and closes the journal (the loop must run afterwards),
 * ending every follower without a response (their sessions are closing). */
void gate_free(gate *g);

/* True for a request id ("apr_" and 32 hex digits). */
bool gate_is_request_id(const char *id);

/* request_publish for a gated target. Ends the request. */
void gate_request(gate *g, mcp_request *req, prov_target *t, json_t *args);

/* get_deployment on a request id. Ends the request. */
void gate_get(gate *g, mcp_request *req, prov_target *t, const char *id);

/* stream_events on a request id. Ends the request (or is cancelled). */
void gate_follow(gate *g, mcp_request *req, prov_target *t, json_t *args);

/* A session closed: forget what the gate meant to tell it. */
void gate_session_closed(gate *g, mcp_session *s);

#endif

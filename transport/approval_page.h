/* approval_page.h — the human approval page for production publishes.
 *
 * A small HTTP/1.1 server on the program's loop (uv_tcp), bound to
 * config approval.listen (default 127.0.0.1:8788) in every mode, stdio
 * included. It serves one page per request, GET /approvals/<id>, showing
 * what publishing will do, with Approve and Reject buttons; the form POSTs
 * back to the same path. Deciding needs the approver secret (read from the
 * environment variable the config names; no tool can read it), the page's
 * per-request CSRF token, a same-origin POST, and a request that is still
 * pending: every request is decided at most once. Responses are
 * Connection: close; every buffer is capped; slow clients time out. */
#ifndef DEPLOY_MCP_APPROVAL_PAGE_H
#define DEPLOY_MCP_APPROVAL_PAGE_H

#include <stdbool.h>
#include <uv.h>

#include "tools/approval.h"

#define APAGE_MAX_REQUEST_BYTES (64u << 10)  /* request line + headers + body */
#define APAGE_MAX_CONNECTIONS 64
#define APAGE_IDLE_MS 10000
#define APAGE_MAX_BAD_SECRETS 5              /* per request, then locked for a while */
#define APAGE_LOCK_MS 60000

typedef struct apage apage;

/* Called after a decision is durable in the journal. */
typedef void (*apage_decided_fn)(void *ud, apr_request *r);

/* Starts listening on `listen` ("HOST:PORT", "[v6]:PORT", ":PORT"; port 0
 * picks a free one). `public_url` (may be NULL) is the base URL users open
 * when a proxy sits in front; its host is then also accepted in Host and
 * Origin. `secret_env` names the approver secret's variable. Returns NULL
 * with a message in err. */
apage *apage_start(uv_loop_t *loop, apr_store *store, const char *listen,
                   const char *public_url, const char *secret_env, apage_decided_fn decided,
                   void *ud, char *err, size_t errlen);

/* The base URL for webApprovalUrl (public_url, or http://host:port). */
const char *apage_base_url(const apage *p);

/* True when the approver secret's variable is set and non-empty. */
bool apage_secret_configured(const apage *p);

/* Stops listening, closes connections, frees itself in close callbacks. */
void apage_stop(apage *p);

#endif

/* server.h — process-wide state shared by every session: the loop, the
 * loaded config, the runtime targets (provider adapters), the HTTP client and
 * the tool table. Owned by main; sessions and tools borrow it. */
#ifndef DEPLOY_MCP_SERVER_H
#define DEPLOY_MCP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "mcp/config.h"
#include "providers/http.h"
#include "providers/provider.h"

typedef struct mcp_server {
    uv_loop_t *loop;
    cfg *config;                  /* never NULL (may have zero targets) */
    http_client *http;
    prov_target *targets;         /* one per config target, same order */
    size_t ntargets;
    size_t tools_page_size;       /* tools/list page size (>= 1) */
    unsigned long long id_counter; /* for server-originated ids */
    bool shutting_down;
    struct gate *gate;            /* the approval gate (tools/gate.h); NULL when no
                                     target needs deploy-mcp's own approval */
} mcp_server;

/* Looks up the runtime target for a tool call (see cfg_pick_target for the
 * rules). Returns NULL and fills err with an actionable message. */
prov_target *mcp_server_pick_target(mcp_server *srv, const char *name, char *err, size_t errlen);

#endif

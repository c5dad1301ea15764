/* server.c — process-wide helpers over the shared server state. */
#include "mcp/server.h"

#include <string.h>

prov_target *mcp_server_pick_target(mcp_server *srv, const char *name, char *err, size_t errlen)
{
    const cfg_target *ct = cfg_pick_target(srv->config, name, err, errlen);
    if (!ct)
        return NULL;
    for (size_t i = 0; i < srv->ntargets; i++)
        if (srv->targets[i].cfg == ct)
            return &srv->targets[i];
    return NULL;
}

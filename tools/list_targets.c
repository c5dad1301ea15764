/* list_targets.c — which targets are configured, what each can do, and
 * whether its credentials are present. Never fails: with no config it
 * explains how to write one. */
#include <stdio.h>
#include <string.h>

#include "mcp/server.h"
#include "tools/tool_internal.h"

#define LIST_TARGETS_HINT                                                                   \
    "No deployment targets are configured. deploy-mcp reads its targets file from "         \
    "--config FILE, else the DEPLOY_MCP_CONFIG environment variable, else ./deploy-mcp.json, " \
    "else $XDG_CONFIG_HOME/deploy-mcp/config.json (~/.config/deploy-mcp/config.json). A "     \
    "minimal file: {\"targets\": {\"web\": {\"provider\": \"showly\", \"siteId\": "          \
    "\"site_123\", \"tokenEnv\": \"SHOWLY_TOKEN\"}}} with the API token in the SHOWLY_TOKEN " \
    "environment variable (secrets never go in the file). Providers: showly, bigcommerce, "  \
    "mixpeek, bluelink. Restart deploy-mcp after creating the file."

static json_t *describe_target(const prov_target *t)
{
    json_t *caps = json_array();
    for (size_t i = 0; caps && tool_table[i]; i++)
        if (tool_table[i]->cap && (t->ops->caps & tool_table[i]->cap))
            json_array_append_new(caps, json_string(tool_table[i]->name));
    char problem[512] = "";
    bool ready = !t->ops->credentials_ok || t->ops->credentials_ok(t, problem, sizeof problem);
    json_t *o = json_pack("{s:s, s:s, s:o, s:b}", "name", t->cfg->name, "provider",
                          t->cfg->provider, "capabilities", caps ? caps : json_array(),
                          "ready", ready);
    if (o && !ready)
        json_object_set_new(o, "problem",
                            json_string(problem[0] ? problem : "credentials are missing"));
    return o;
}

static void list_targets_call(mcp_request *req, prov_target *target, json_t *args)
{
    (void)target;
    (void)args;
    mcp_server *srv = mcp_req_server(req);
    json_t *targets = json_array();
    json_t *sc = json_object();
    if (!targets || !sc) {
        json_decref(targets);
        json_decref(sc);
        tool_finish_oom(req);
        return;
    }
    for (size_t i = 0; i < srv->ntargets; i++) {
        json_t *o = describe_target(&srv->targets[i]);
        if (o)
            json_array_append_new(targets, o);
    }
    json_object_set_new(sc, "targets", targets);
    if (srv->config && srv->config->default_target)
        json_object_set_new(sc, "defaultTarget", json_string(srv->config->default_target));
    if (srv->ntargets > 0) {
        mcp_req_finish(req, tool_result(sc));
        return;
    }
    json_object_set_new(sc, "hint", json_string(LIST_TARGETS_HINT));
    json_t *res = tool_result(sc);
    /* Besides the JSON, say it in prose: this is what a model shows a user. */
    json_t *content = json_object_get(res, "content");
    if (json_is_array(content))
        json_array_append_new(content,
                              json_pack("{s:s, s:s}", "type", "text", "text", LIST_TARGETS_HINT));
    mcp_req_finish(req, res);
}

const tool_def tool_def_list_targets = {
    .name = "list_targets",
    .title = "List deployment targets",
    .description =
        "List the deployment targets this server is configured with. Call this first: every "
        "other tool takes an optional `target` naming one of them (it may be omitted when "
        "only one target exists or a defaultTarget is configured). For each target you get "
        "its `name`, its `provider` (showly, bigcommerce, mixpeek or bluelink), "
        "`capabilities` (the tool names that platform supports; e.g. Bluelink has no "
        "tail_logs) and `ready` (whether its credentials are present in the server's "
        "environment; when false, `problem` names the missing environment variable). With "
        "no targets configured, `hint` explains how to configure one. Never fails and "
        "changes nothing.",
    .input_schema = "{\"type\":\"object\",\"properties\":{},\"additionalProperties\":false}",
    .output_schema = TOOL_OUTPUT_SCHEMA(
        "\"targets\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{"
        "\"name\":{\"type\":\"string\"},"
        "\"provider\":{\"type\":\"string\"},"
        "\"capabilities\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},"
        "\"ready\":{\"type\":\"boolean\"},"
        "\"problem\":{\"type\":\"string\",\"description\":\"Why the target is not ready.\"}"
        "},\"required\":[\"name\",\"provider\",\"capabilities\",\"ready\"],"
        "\"additionalProperties\":true}},"
        "\"defaultTarget\":{\"type\":\"string\"},"
        "\"hint\":{\"type\":\"string\",\"description\":\"How to configure a target, when "
        "none is.\"}",
        "\"targets\""),
    .read_only = true,
    .destructive = false,
    .idempotent = true,
    .open_world = false,
    .cap = 0,
    .call = list_targets_call,
};

/* get_deployment.c — one deployment's current state. */
#include "mcp/server.h"
#include "tools/gate.h"
#include "tools/tool_internal.h"

static prov_op *start_get(prov_target *t, json_t *args, prov_result_cb cb, void *ud,
                          prov_error *err)
{
    return t->ops->get_deployment(t, tool_arg_str(args, "deploymentId"), cb, ud, err);
}

static json_t *shape_get(const prov_target *t, json_t *args, json_t *result)
{
    (void)args;
    /* Adapters answer with the Deployment itself; accept {deployment: ...}
     * too rather than nest it twice. */
    json_t *dep = result;
    if (json_is_object(result) && json_is_object(json_object_get(result, "deployment")) &&
        !json_object_get(result, "id")) {
        dep = json_incref(json_object_get(result, "deployment"));
        json_decref(result);
    }
    tool_fill_origin(dep, t);
    json_t *sc = json_pack("{s:o}", "deployment", dep ? dep : json_null());
    tool_add_local_note(sc, t);
    return sc;
}

static void get_deployment_call(mcp_request *req, prov_target *t, json_t *args)
{
    const char *id = tool_arg_str(args, "deploymentId");
    if (gate_is_request_id(id)) {
        /* An approval request id: pending until a human decides. */
        gate_get(mcp_req_server(req)->gate, req, t, id);
        return;
    }
    tool_run_op(req, t, args, start_get, shape_get);
}

const tool_def tool_def_get_deployment = {
    .name = "get_deployment",
    .title = "Get a deployment",
    .description =
        "Return one deployment's current state: {deployment: {id, target, provider, "
        "environment (preview|production), status (queued|building|ready|failed|canceled), "
        "providerStatus (the platform's own word), url?, createdAt?, error?}}. Use it to "
        "check on a deployment without following it live (stream_events follows it live). "
        "`deploymentId` is the id returned by create_preview or list_deployments, or one "
        "copied from the platform's dashboard; Bluelink change sets carry the prefix "
        "`changeset:`. BigCommerce has no API to look deployments up: there the answer "
        "comes from what this deploy-mcp process created and observed (the result carries a "
        "`note` saying so), so deployments made elsewhere or before a restart are unknown.",
    .input_schema =
        "{\"type\":\"object\",\"properties\":{"
        "\"deploymentId\":{\"type\":\"string\",\"minLength\":1,\"description\":\"The "
        "deployment's id.\"}," TOOL_SCHEMA_TARGET
        "},\"required\":[\"deploymentId\"],\"additionalProperties\":false}",
    .output_schema = TOOL_OUTPUT_SCHEMA("\"deployment\":" TOOL_SCHEMA_DEPLOYMENT ","
                                        "\"note\":{\"type\":\"string\"}",
                                        "\"deployment\""),
    .read_only = true,
    .destructive = false,
    .idempotent = true,
    .open_world = true,
    .cap = PROV_CAP_GET,
    .call = get_deployment_call,
};

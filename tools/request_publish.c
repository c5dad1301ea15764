/* request_publish.c — asks for a human-approved production publish of a
 * ready preview. It only ever creates the request and returns the URL where
 * a person approves or rejects it: nothing here approves or publishes. */
#include "mcp/server.h"
#include "tools/gate.h"
#include "tools/tool_internal.h"

static prov_op *start_publish(prov_target *t, json_t *args, prov_result_cb cb, void *ud,
                              prov_error *err)
{
    return t->ops->request_publish(t, tool_arg_str(args, "sourceDeploymentId"),
                                   tool_arg_str(args, "notes"), cb, ud, err);
}

/* Adapters answer {request: {...}}; a bare request object is accepted too. */
static json_t *shape_publish(const prov_target *t, json_t *args, json_t *result)
{
    json_t *request = json_object_get(result, "request");
    if (json_is_object(request))
        json_incref(request);
    else
        request = json_is_object(result) ? json_incref(result) : json_object();
    json_decref(result);
    if (!request)
        return NULL;
    tool_fill_origin(request, t);
    if (!json_object_get(request, "sourceDeploymentId"))
        json_object_set(request, "sourceDeploymentId", json_object_get(args, "sourceDeploymentId"));
    return json_pack("{s:o}", "request", request);
}

static void request_publish_call(mcp_request *req, prov_target *t, json_t *args)
{
    if (!t->ops->request_publish && t->ops->prepare_publish) {
        /* No approval concept on the platform: deploy-mcp's own gate. */
        gate_request(mcp_req_server(req)->gate, req, t, args);
        return;
    }
    tool_run_op(req, t, args, start_publish, shape_publish);
}

const tool_def tool_def_request_publish = {
    .name = "request_publish",
    .title = "Request a production publish",
    .description =
        "Ask a human to approve publishing a ready preview to production. This never "
        "publishes by itself and nothing can approve on your behalf: it creates an approval "
        "request and returns {request: {id, status, webApprovalUrl, sourceDeploymentId, "
        "target, provider}}. Give the user `webApprovalUrl` and tell them to approve or "
        "reject it there; afterwards get_deployment / list_deployments show the production "
        "deployment. `sourceDeploymentId` is the preview to publish (normally one with "
        "status ready, from create_preview or list_deployments); `notes` are shown to the "
        "approver. Showly issues the request and URL itself; for BigCommerce, Mixpeek and "
        "Bluelink, deploy-mcp keeps the request and serves its own approval page, and "
        "publishes only after a human approves it there.",
    .input_schema =
        "{\"type\":\"object\",\"properties\":{"
        "\"sourceDeploymentId\":{\"type\":\"string\",\"minLength\":1,\"description\":\"The "
        "ready preview deployment to publish.\"},"
        "\"notes\":{\"type\":\"string\",\"description\":\"Shown to the "
        "human approver: what changes and why.\"}," TOOL_SCHEMA_TARGET
        "},\"required\":[\"sourceDeploymentId\"],\"additionalProperties\":false}",
    .output_schema = TOOL_OUTPUT_SCHEMA(
        "\"request\":{\"type\":\"object\",\"properties\":{"
        "\"id\":{\"type\":\"string\"},"
        "\"status\":{\"type\":\"string\",\"description\":\"e.g. pending, approved, "
        "rejected\"},"
        "\"webApprovalUrl\":{\"type\":[\"string\",\"null\"],\"description\":\"Where a human "
        "approves or rejects the request.\"},"
        "\"sourceDeploymentId\":{\"type\":\"string\"},"
        "\"target\":{\"type\":\"string\"},"
        "\"provider\":{\"type\":\"string\"}"
        "},\"additionalProperties\":true}",
        "\"request\""),
    .read_only = false,
    .destructive = false,
    .idempotent = false,
    .open_world = true,
    .cap = PROV_CAP_REQUEST_PUBLISH,
    .call = request_publish_call,
};

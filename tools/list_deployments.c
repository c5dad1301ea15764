/* list_deployments.c — recent deployments of a target, newest first, with
 * cursor pagination. */
#include "tools/tool_internal.h"

#define LIST_DEFAULT_LIMIT 20

static prov_op *start_list(prov_target *t, json_t *args, prov_result_cb cb, void *ud,
                           prov_error *err)
{
    prov_list_args a = {
        .status = tool_arg_str(args, "status"),
        .environment = tool_arg_str(args, "environment"),
        .cursor = tool_arg_opt(args, "cursor"),
        .limit = (int)tool_arg_int(args, "limit", LIST_DEFAULT_LIMIT),
    };
    return t->ops->list_deployments(t, &a, cb, ud, err);
}

static json_t *shape_list(const prov_target *t, json_t *args, json_t *result)
{
    (void)args;
    json_t *sc = json_is_object(result) ? result : json_object();
    if (sc != result)
        json_decref(result);
    if (!sc)
        return NULL;
    json_t *deps = json_object_get(sc, "deployments");
    if (!json_is_array(deps)) {
        deps = json_array();
        json_object_set_new(sc, "deployments", deps);
    }
    size_t i;
    json_t *d;
    json_array_foreach(deps, i, d)
        tool_fill_origin(d, t);
    /* "No further page" is said by leaving nextCursor out. */
    json_t *next = json_object_get(sc, "nextCursor");
    if (next && (!json_is_string(next) || !*json_string_value(next)))
        json_object_del(sc, "nextCursor");
    tool_add_local_note(sc, t);
    return sc;
}

static void list_deployments_call(mcp_request *req, prov_target *t, json_t *args)
{
    tool_run_op(req, t, args, start_list, shape_list);
}

const tool_def tool_def_list_deployments = {
    .name = "list_deployments",
    .title = "List deployments",
    .description =
        "List a target's recent deployments, newest first: {deployments: [Deployment...], "
        "nextCursor?}. Filter by normalized `status` and by `environment` (preview or "
        "production); `limit` is 1-100 (default 20). When `nextCursor` is present, pass it "
        "back as `cursor` for the next page. Use it to find a deployment id (e.g. the ready "
        "preview to pass to request_publish). BigCommerce has no list API: there the list "
        "holds what this deploy-mcp process created and observed (the result carries a "
        "`note` saying so).",
    .input_schema =
        "{\"type\":\"object\",\"properties\":{"
        "\"status\":{\"type\":\"string\",\"enum\":[" TOOL_STATUS_WORDS "],"
        "\"description\":\"Only deployments with this normalized status.\"},"
        "\"environment\":{\"type\":\"string\",\"enum\":[\"preview\",\"production\"]},"
        "\"limit\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":100,\"default\":20},"
        "\"cursor\":{\"type\":\"string\",\"description\":\"nextCursor from "
        "the previous page.\"}," TOOL_SCHEMA_TARGET
        "},\"additionalProperties\":false}",
    .output_schema = TOOL_OUTPUT_SCHEMA(
        "\"deployments\":{\"type\":\"array\",\"items\":" TOOL_SCHEMA_DEPLOYMENT "},"
        "\"nextCursor\":{\"type\":\"string\",\"description\":\"Pass as cursor for the next "
        "page; absent on the last page.\"},"
        "\"note\":{\"type\":\"string\"}",
        "\"deployments\""),
    .read_only = true,
    .destructive = false,
    .idempotent = true,
    .open_world = true,
    .cap = PROV_CAP_LIST,
    .call = list_deployments_call,
};

/* tail_logs.c — relays log lines live for a while and returns the ones that
 * matched, runtime logs where the platform has them (BigCommerce), a
 * deployment's build log where it has only those (Showly, Mixpeek). */
#include <stdlib.h>
#include <string.h>

#include "tools/tool_internal.h"

#define TAIL_DEFAULT_SECONDS 30
#define TAIL_DEFAULT_MAX_LINES 200

typedef struct tail_call {
    mcp_request *req;
    prov_target *t;
    watch *w;
} tail_call;

static void tail_done(void *ud, const watch_end *end)
{
    tail_call *c = ud;
    if (end->err) {
        mcp_req_finish(c->req, tool_stream_error_result(c->t, end));
    } else {
        json_t *sc = relay_tail_summary(end->relay, end->cursor);
        if (sc)
            mcp_req_finish(c->req, tool_result(sc));
        else
            tool_finish_oom(c->req);
    }
    free(c);
}

static void tail_cancel(void *ud)
{
    tail_call *c = ud;
    watch_cancel(c->w);
    free(c);
}

static void tail_logs_call(mcp_request *req, prov_target *t, json_t *args)
{
    const char *id = tool_arg_str(args, "deploymentId");
    if (!id && t->ops->logs_need_deployment) {
        mcp_req_finish(req, tool_error_simple(
                                t->cfg->provider, "deployment_id_required",
                                "deploymentId is required on %s: it has build logs only, no "
                                "runtime logs. Pass the id of a deployment (from "
                                "create_preview or list_deployments) to tail its build log.",
                                t->ops->display_name));
        return;
    }
    tail_call *c = calloc(1, sizeof *c);
    if (!c) {
        tool_finish_oom(req);
        return;
    }
    c->req = req;
    c->t = t;
    watch_opts o = {
        .kind = PROV_STREAM_LOGS,
        .id = id,
        .cursor = tool_arg_opt(args, "cursor"),
        .max_seconds = (unsigned)tool_arg_int(args, "seconds", TAIL_DEFAULT_SECONDS),
        .relay = {.mode = RELAY_TAIL, .deployment_id = id,
                  .min_level = tool_arg_str(args, "level"),
                  .filter = tool_arg_str(args, "filter"),
                  .max_lines = (size_t)tool_arg_int(args, "maxLines", TAIL_DEFAULT_MAX_LINES)},
        .resolve_final = false,
    };
    prov_error err;
    memset(&err, 0, sizeof err);
    c->w = watch_start(req, t, &o, tail_done, c, &err);
    if (!c->w) {
        free(c);
        tool_finish_prov_error(req, t, &err);
        return;
    }
    mcp_req_on_cancel(req, tail_cancel, c);
}

const tool_def tool_def_tail_logs = {
    .name = "tail_logs",
    .title = "Tail logs",
    .description =
        "Follow log lines live for `seconds` (default 30, max 3600) and return the ones that "
        "matched: {lines: [{ts?, level, text, source?}], count, dropped, cursor}. Each "
        "matching line is also relayed as it arrives as a notifications/message (data "
        "{lines: [...]}). Filter with `level` (minimum: debug < info < warn < error) and "
        "`filter` (a case-sensitive substring of the text). At most `maxLines` lines "
        "(default 200, max 5000) are kept in the result; `dropped` counts matching lines "
        "beyond that (they were still relayed). Pass `cursor` from an earlier result to "
        "continue after it. What is tailed depends on the platform: BigCommerce has runtime "
        "logs of the live storefront (deploymentId optional); Showly and Mixpeek have build "
        "logs only, so `deploymentId` is required there and the tail ends when that "
        "deployment finishes; Bluelink has no logs at all (use stream_events).",
    .input_schema =
        "{\"type\":\"object\",\"properties\":{"
        "\"deploymentId\":{\"type\":\"string\",\"minLength\":1,\"description\":\"Whose build "
        "log to tail (required on Showly and Mixpeek).\"},"
        "\"seconds\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":3600,\"default\":30,"
        "\"description\":\"How long to follow (whole seconds).\"},"
        "\"filter\":{\"type\":\"string\",\"description\":\"Keep only lines containing this "
        "text (case-sensitive).\"},"
        "\"level\":{\"type\":\"string\",\"enum\":[\"debug\",\"info\",\"warn\",\"error\"],"
        "\"description\":\"Minimum level to keep.\"},"
        "\"maxLines\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":5000,\"default\":200,"
        "\"description\":\"Lines kept in the result.\"},"
        "\"cursor\":{\"type\":\"string\",\"description\":\"cursor from an "
        "earlier tail_logs result, to resume after it.\"}," TOOL_SCHEMA_TARGET
        "},\"additionalProperties\":false}",
    .output_schema = TOOL_OUTPUT_SCHEMA(
        "\"lines\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{"
        "\"ts\":{\"type\":\"string\"},"
        "\"level\":{\"type\":\"string\",\"enum\":[\"debug\",\"info\",\"warn\",\"error\"]},"
        "\"text\":{\"type\":\"string\"},"
        "\"source\":{\"type\":\"string\"}"
        "},\"required\":[\"level\",\"text\"],\"additionalProperties\":true}},"
        "\"count\":{\"type\":\"integer\",\"minimum\":0,\"description\":\"Lines in "
        "`lines`.\"},"
        "\"dropped\":{\"type\":\"integer\",\"minimum\":0,\"description\":\"Matching lines "
        "not kept because of maxLines (they were relayed).\"},"
        "\"cursor\":{\"type\":\"string\"}",
        "\"lines\",\"count\",\"dropped\",\"cursor\""),
    .read_only = true,
    .destructive = false,
    .idempotent = true,
    .open_world = true,
    .cap = PROV_CAP_TAIL_LOGS,
    .call = tail_logs_call,
};

/* stream_events.c — follows a deployment live: relays its events as
 * notifications until a terminal status, maxSeconds, or cancellation, then
 * answers with a summary and a cursor to continue. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcp/server.h"
#include "tools/gate.h"
#include "tools/tool_internal.h"

typedef struct se_call {
    mcp_request *req;
    prov_target *t;
    watch *w;
} se_call;

watch *tool_follow_events(mcp_request *req, prov_target *t, const char *deployment_id,
                          const char *cursor, unsigned max_seconds, bool include_logs,
                          watch_done_fn done, void *ud, prov_error *err)
{
    watch_opts o = {
        .kind = PROV_STREAM_EVENTS,
        .id = deployment_id,
        .cursor = cursor,
        .max_seconds = max_seconds,
        .relay = {.mode = RELAY_BUILD, .deployment_id = deployment_id,
                  .include_logs = include_logs},
        .resolve_final = true,
    };
    return watch_start(req, t, &o, done, ud, err);
}

json_t *tool_events_summary(const watch_end *end)
{
    return relay_stream_summary(end->relay, end->cursor, end->duration_ms);
}

json_t *tool_stream_error_result(const prov_target *t, const watch_end *end)
{
    prov_error e = *end->err;
    if (relay_event_count(end->relay) > 0 && end->cursor[0]) {
        size_t used = strlen(e.message);
        char extra[PROV_ERR_MSG_MAX];
        int n = snprintf(extra, sizeof extra,
                         "%s%lu events were relayed before the failure; to continue after "
                         "them, call again with cursor \"%s\".",
                         used ? " " : "", relay_event_count(end->relay), end->cursor);
        /* A cut-off cursor would be worse than none. */
        if (n > 0 && used + (size_t)n < sizeof e.message)
            memcpy(e.message + used, extra, (size_t)n + 1);
    }
    return tool_error_result(t->cfg->provider, &e);
}

static void se_done(void *ud, const watch_end *end)
{
    se_call *c = ud;
    if (end->err) {
        mcp_req_finish(c->req, tool_stream_error_result(c->t, end));
    } else {
        json_t *sc = tool_events_summary(end);
        if (sc)
            mcp_req_finish(c->req, tool_result(sc));
        else
            tool_finish_oom(c->req);
    }
    free(c);
}

static void se_cancel(void *ud)
{
    se_call *c = ud;
    watch_cancel(c->w);
    free(c);
}

static void stream_events_call(mcp_request *req, prov_target *t, json_t *args)
{
    if (gate_is_request_id(tool_arg_str(args, "deploymentId"))) {
        /* An approval request id: wait for the decision, then follow the
         * production deployment. */
        gate_follow(mcp_req_server(req)->gate, req, t, args);
        return;
    }
    se_call *c = calloc(1, sizeof *c);
    if (!c) {
        tool_finish_oom(req);
        return;
    }
    c->req = req;
    c->t = t;
    prov_error err;
    memset(&err, 0, sizeof err);
    c->w = tool_follow_events(
        req, t, tool_arg_str(args, "deploymentId"), tool_arg_opt(args, "cursor"),
        (unsigned)tool_arg_int(args, "maxSeconds", TOOL_STREAM_DEFAULT_SECONDS),
        tool_arg_bool(args, "includeLogs", true), se_done, c, &err);
    if (!c->w) {
        free(c);
        tool_finish_prov_error(req, t, &err);
        return;
    }
    mcp_req_on_cancel(req, se_cancel, c);
}

const tool_def tool_def_stream_events = {
    .name = "stream_events",
    .title = "Follow a deployment live",
    .description =
        "Follow a deployment's build/deploy live until it reaches a terminal status (ready, "
        "failed, canceled) or `maxSeconds` pass (default 300, max 3600). While it runs, each "
        "event reaches you as it happens: notifications/progress (if you sent a "
        "progressToken; e.g. \"building · step processing 40%\") and build log lines as "
        "notifications/message (data {deploymentId, lines}), in chunks. The result "
        "summarizes: {deploymentId, status, terminal, url?, eventCount, logLineCount, "
        "lastLines (last 50 log lines), failure? ({code, message} when it failed), cursor, "
        "durationMs}. If `terminal` is false the time ran out first: call again with "
        "`cursor` to continue exactly after the last event you received (no gap, no "
        "duplicates). Set `includeLogs: false` to get only status/step events (log lines "
        "are still counted). Platform stream quirks (BigCommerce closing streams every 30 s, "
        "Mixpeek replaying history) are handled for you.",
    .input_schema =
        "{\"type\":\"object\",\"properties\":{"
        "\"deploymentId\":{\"type\":\"string\",\"minLength\":1,\"description\":\"The "
        "deployment to follow (from create_preview, list_deployments or the platform's "
        "dashboard).\"},"
        "\"cursor\":{\"type\":\"string\",\"description\":\"cursor from an "
        "earlier stream_events result for this deployment, to resume after it.\"},"
        "\"maxSeconds\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":3600,\"default\":300,"
        "\"description\":\"Stop following after this many seconds (whole seconds).\"},"
        "\"includeLogs\":{\"type\":\"boolean\",\"default\":true,\"description\":\"Relay build "
        "log lines (and keep lastLines).\"}," TOOL_SCHEMA_TARGET
        "},\"required\":[\"deploymentId\"],\"additionalProperties\":false}",
    .output_schema = TOOL_OUTPUT_SCHEMA(TOOL_SCHEMA_STREAM_SUMMARY_PROPS,
                                        TOOL_STREAM_SUMMARY_REQUIRED),
    .read_only = true,
    .destructive = false,
    .idempotent = true,
    .open_world = true,
    .cap = PROV_CAP_STREAM_EVENTS,
    .call = stream_events_call,
};

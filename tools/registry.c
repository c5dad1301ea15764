/* registry.c — the tool table and tools/call dispatch.
 *
 * Everything a tool would otherwise repeat happens here, before the tool
 * runs: argument validation against its inputSchema, picking the target,
 * checking that the platform has the capability and that its credentials
 * are present. Each refusal is an isError result that says what to do. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcp/log.h"
#include "mcp/server.h"
#include "tools/fixtures.h"
#include "tools/idempotency.h"
#include "tools/tool_internal.h"

#define REGISTRY_ERR_MAX 1024

const tool_def *const tool_table[] = {
    &tool_def_list_targets,   &tool_def_create_preview, &tool_def_request_publish,
    &tool_def_stream_events,  &tool_def_tail_logs,      &tool_def_get_deployment,
    &tool_def_list_deployments, NULL,
};

#define TOOL_COUNT (sizeof tool_table / sizeof tool_table[0] - 1)

/* Parsed schemas, index-aligned with tool_table; filled on first use. */
static json_t *input_schemas[TOOL_COUNT];
static json_t *output_schemas[TOOL_COUNT];

const tool_def *tool_find(const char *name)
{
    for (size_t i = 0; name && tool_nth(i); i++)
        if (strcmp(tool_nth(i)->name, name) == 0)
            return tool_nth(i);
    return NULL;
}

const tool_def *tool_nth(size_t i)
{
    return i < TOOL_COUNT ? tool_table[i] : tool_fixture_at(i - TOOL_COUNT);
}

static json_t *cached_schema(const tool_def *t, bool output)
{
    for (size_t i = 0; i < TOOL_COUNT; i++) {
        if (tool_table[i] != t)
            continue;
        json_t **slot = output ? &output_schemas[i] : &input_schemas[i];
        if (!*slot) {
            json_error_t jerr;
            *slot = json_loads(output ? t->output_schema : t->input_schema, 0, &jerr);
            if (!*slot)
                log_error("tool %s: %s schema does not parse: %s (line %d)", t->name,
                          output ? "output" : "input", jerr.text, jerr.line);
        }
        return *slot;
    }
    return tool_fixture_schema(t, output); /* conformance fixtures cache their own */
}

json_t *tool_input_schema(const tool_def *t) { return cached_schema(t, false); }
json_t *tool_output_schema(const tool_def *t) { return cached_schema(t, true); }

void tool_registry_cleanup(void)
{
    for (size_t i = 0; i < TOOL_COUNT; i++) {
        json_decref(input_schemas[i]);
        json_decref(output_schemas[i]);
        input_schemas[i] = output_schemas[i] = NULL;
    }
    idem_cleanup();
    tool_fixtures_cleanup();
}

json_t *tool_describe(const tool_def *t)
{
    json_t *in = tool_input_schema(t), *out = tool_output_schema(t);
    json_t *d = json_pack("{s:s, s:s, s:s, s:o, s:o?, s:{s:s, s:b, s:b, s:b, s:b}}", "name",
                          t->name, "title", t->title, "description", t->description,
                          "inputSchema", in ? json_deep_copy(in) : json_object(),
                          "outputSchema", out ? json_deep_copy(out) : NULL, "annotations",
                          "title", t->title, "readOnlyHint", t->read_only, "destructiveHint",
                          t->destructive, "idempotentHint", t->idempotent, "openWorldHint",
                          t->open_world);
    if (d && json_is_null(json_object_get(d, "outputSchema")))
        json_object_del(d, "outputSchema"); /* optional in MCP, but never null */
    return d;
}

/* "create_preview, stream_events, get_deployment" — what a platform offers. */
static void offered_tools(const prov_target *target, char *buf, size_t n)
{
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; tool_table[i]; i++) {
        const tool_def *t = tool_table[i];
        if (!t->cap || !(target->ops->caps & t->cap))
            continue;
        int w = snprintf(buf + off, n - off, "%s%s", off ? ", " : "", t->name);
        if (w < 0 || (size_t)w >= n - off)
            break;
        off += (size_t)w;
    }
    if (!off)
        snprintf(buf, n, "list_targets only");
}

void tool_dispatch(mcp_request *req, const char *name, json_t *args)
{
    const tool_def *t = tool_find(name);
    if (!t) {
        char msg[300];
        snprintf(msg, sizeof msg, "Unknown tool: %.200s", name ? name : "(none)");
        mcp_req_finish_error(req, RPC_INVALID_PARAMS, msg);
        return;
    }
    /* Missing arguments mean "no arguments". */
    json_t *owned = NULL;
    if (!args || json_is_null(args))
        args = owned = json_object();
    if (!args) {
        tool_finish_oom(req);
        return;
    }

    char err[REGISTRY_ERR_MAX];
    json_t *schema = tool_input_schema(t);
    if (!schema) {
        mcp_req_finish(req, tool_error_simple(NULL, "internal_error",
                                              "tool %s is unavailable: its input schema "
                                              "could not be loaded", t->name));
        goto out;
    }
    if (tool_validate_args(schema, args, err, sizeof err) != 0) {
        mcp_req_finish(req, tool_error_simple(NULL, "invalid_arguments", "%s", err));
        goto out;
    }

    prov_target *target = NULL;
    if (t->cap) {
        mcp_server *srv = mcp_req_server(req);
        const char *want = tool_arg_str(args, "target");
        if (want && !*want)
            want = NULL;
        err[0] = '\0';
        target = mcp_server_pick_target(srv, want, err, sizeof err);
        if (!target) {
            if (!err[0])
                snprintf(err, sizeof err, "no target is available for this call%s%s%s; call "
                         "list_targets to see the configured targets",
                         want ? " (asked for \"" : "", want ? want : "", want ? "\")" : "");
            mcp_req_finish(req, tool_error_simple(NULL, want ? "unknown_target" : "no_target",
                                                  "%s", err));
            goto out;
        }
        const struct provider *ops = target->ops;
        if (!(ops->caps & t->cap)) {
            char offers[512];
            offered_tools(target, offers, sizeof offers);
            const char *hint = ops->unsupported_hint ? ops->unsupported_hint(t->name) : NULL;
            mcp_req_finish(req, tool_error_simple(
                                    target->cfg->provider, "unsupported",
                                    "%s (target \"%s\") does not support %s.%s%s It offers: %s.",
                                    ops->display_name, target->cfg->name, t->name,
                                    hint && *hint ? " " : "", hint ? hint : "", offers));
            goto out;
        }
        char problem[512] = "";
        if (ops->credentials_ok && !ops->credentials_ok(target, problem, sizeof problem)) {
            size_t plen = strlen(problem);
            while (plen > 0 && (problem[plen - 1] == '.' || problem[plen - 1] == ' '))
                problem[--plen] = '\0';
            mcp_req_finish(req, tool_error_simple(
                                    target->cfg->provider, "missing_credentials",
                                    "target \"%s\" (%s) is not ready: %s. Set it in the "
                                    "environment deploy-mcp runs in and restart it.",
                                    target->cfg->name, ops->display_name,
                                    problem[0] ? problem : "its credentials are missing"));
            goto out;
        }
    }
    t->call(req, target, args);
out:
    json_decref(owned);
}

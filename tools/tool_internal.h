/* tool_internal.h — what the tool files share with each other (not part of
 * the tool layer's public contract, which is tools/tool.h). */
#ifndef DEPLOY_MCP_TOOL_INTERNAL_H
#define DEPLOY_MCP_TOOL_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>

#include "providers/provider.h"
#include "tools/tool.h"

/* The tools, one per file (tools/<name>.c). */
extern const tool_def tool_def_list_targets;
extern const tool_def tool_def_create_preview;
extern const tool_def tool_def_request_publish;
extern const tool_def tool_def_stream_events;
extern const tool_def tool_def_tail_logs;
extern const tool_def tool_def_get_deployment;
extern const tool_def tool_def_list_deployments;

/* Schema fragments shared by several tools (JSON text, spliced into the
 * schema literals). */
#define TOOL_SCHEMA_TARGET                                                                 \
    "\"target\":{\"type\":\"string\",\"minLength\":1,\"description\":\"Name of a "         \
    "configured target (see list_targets). May be omitted when only one target is "        \
    "configured or the config names a defaultTarget.\"}"

#define TOOL_STATUS_WORDS "\"queued\",\"building\",\"ready\",\"failed\",\"canceled\""

#define TOOL_SCHEMA_DEPLOYMENT                                                             \
    "{\"type\":\"object\",\"description\":\"A deployment as deploy-mcp normalizes it.\","  \
    "\"properties\":{"                                                                     \
    "\"id\":{\"type\":\"string\",\"description\":\"The platform's own id (Bluelink change " \
    "sets carry the prefix changeset:).\"},"                                               \
    "\"target\":{\"type\":\"string\"},"                                                    \
    "\"provider\":{\"type\":\"string\"},"                                                  \
    "\"environment\":{\"type\":\"string\",\"description\":\"preview or production\"},"     \
    "\"status\":{\"type\":\"string\",\"enum\":[" TOOL_STATUS_WORDS "]},"                   \
    "\"providerStatus\":{\"type\":[\"string\",\"null\"],\"description\":\"The platform's " \
    "own status word.\"},"                                                                 \
    "\"url\":{\"type\":[\"string\",\"null\"]},"                                            \
    "\"createdAt\":{\"type\":[\"string\",\"null\"]},"                                      \
    "\"error\":{\"type\":[\"object\",\"null\"],\"properties\":{\"code\":{},\"message\":"   \
    "{\"type\":\"string\"}}}"                                                              \
    "},\"required\":[\"id\",\"status\"],\"additionalProperties\":true}"

/* The error object of an isError result (tools/result.c). */
#define TOOL_SCHEMA_ERROR_PROP                                                              \
    "\"error\":{\"type\":\"object\",\"description\":\"Only in isError results, instead "   \
    "of the fields above.\",\"properties\":{"                                              \
    "\"code\":{\"type\":\"string\"},"                                                      \
    "\"message\":{\"type\":\"string\"},"                                                   \
    "\"httpStatus\":{\"type\":\"integer\"},"                                               \
    "\"provider\":{\"type\":[\"string\",\"null\"]},"                                       \
    "\"retryable\":{\"type\":\"boolean\"}"                                                 \
    "},\"required\":[\"code\",\"message\",\"retryable\"],\"additionalProperties\":true}"

/* A tool's outputSchema. Clients such as the TypeScript SDK validate
 * structuredContent against it even in isError results, so it accepts both
 * shapes: a success with the `required` fields (a JSON list body, e.g.
 * "\"deployment\""), or {error: {...}}. Extra fields are always allowed. */
#define TOOL_OUTPUT_SCHEMA(props, required)                                                 \
    "{\"type\":\"object\",\"properties\":{" props "," TOOL_SCHEMA_ERROR_PROP "},"            \
    "\"anyOf\":[{\"required\":[" required "]},{\"required\":[\"error\"]}],"                 \
    "\"additionalProperties\":true}"

/* The stream_events result; create_preview embeds it under "stream". */
#define TOOL_SCHEMA_STREAM_SUMMARY_PROPS                                                    \
    "\"deploymentId\":{\"type\":[\"string\",\"null\"]},"                                   \
    "\"status\":{\"type\":\"string\",\"enum\":[" TOOL_STATUS_WORDS ",\"unknown\"],"         \
    "\"description\":\"Last known normalized status (unknown when nothing said it yet).\"}," \
    "\"terminal\":{\"type\":\"boolean\",\"description\":\"true when status is ready, "      \
    "failed or canceled; false means more may follow: call again with cursor.\"},"          \
    "\"providerStatus\":{\"type\":\"string\"},"                                            \
    "\"url\":{\"type\":\"string\"},"                                                       \
    "\"eventCount\":{\"type\":\"integer\",\"minimum\":0},"                                 \
    "\"logLineCount\":{\"type\":\"integer\",\"minimum\":0},"                               \
    "\"lastLines\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"maxItems\":50},"   \
    "\"failure\":{\"type\":\"object\",\"properties\":{\"code\":{\"type\":\"string\"},"      \
    "\"message\":{\"type\":\"string\"}},\"additionalProperties\":true},"                    \
    "\"cursor\":{\"type\":\"string\",\"description\":\"Pass back to resume right after "    \
    "the last event received.\"},"                                                          \
    "\"durationMs\":{\"type\":\"integer\",\"minimum\":0}"
#define TOOL_STREAM_SUMMARY_REQUIRED                                                        \
    "\"status\",\"terminal\",\"eventCount\",\"logLineCount\",\"lastLines\",\"cursor\","      \
    "\"durationMs\""
#define TOOL_SCHEMA_STREAM_SUMMARY                                                          \
    "{\"type\":\"object\",\"properties\":{" TOOL_SCHEMA_STREAM_SUMMARY_PROPS "},"           \
    "\"required\":[" TOOL_STREAM_SUMMARY_REQUIRED "],\"additionalProperties\":true}"

/* Arguments, already validated against the tool's inputSchema. */
const char *tool_arg_str(json_t *args, const char *key);           /* NULL when absent */
/* Like tool_arg_str, but "" counts as absent (cursors: a result may carry an
 * empty one, and passing it back means "from the start"). */
const char *tool_arg_opt(json_t *args, const char *key);
long long tool_arg_int(json_t *args, const char *key, long long dflt);
bool tool_arg_bool(json_t *args, const char *key, bool dflt);

/* A JSON string from text that should be valid UTF-8, repairing it if not
 * (jansson refuses invalid UTF-8). NULL only when out of memory. */
json_t *tool_json_text(const char *s, size_t len);

/* Ends the request with an isError result for a provider failure. */
void tool_finish_prov_error(mcp_request *req, const prov_target *t, const prov_error *e);

/* Ends the request with a plain internal-error isError result. */
void tool_finish_oom(mcp_request *req);

/* Adds "target"/"provider" to a Deployment-like object when missing. */
void tool_fill_origin(json_t *obj, const prov_target *t);

/* For platforms without get/list APIs: adds {"note": ...} to sc saying that
 * the answer comes from this process's own records. */
void tool_add_local_note(json_t *sc, const prov_target *t);

/* ---- one provider operation per call (get, list, publish) -------------- */

/* Starts the operation, calling through t->ops with strings read from
 * `args` (the call's own copy, alive until the operation has ended, so the
 * adapter may keep pointers into it). */
typedef prov_op *(*tool_op_start_fn)(prov_target *t, json_t *args, prov_result_cb cb,
                                     void *ud, prov_error *err);
/* Turns the provider's result (stolen) into structuredContent (returned;
 * args as for start),
 * or NULL when out of memory. */
typedef json_t *(*tool_op_shape_fn)(const prov_target *t, json_t *args, json_t *result);

/* Runs start() for the request, handles cancellation, and ends the request
 * with shape()'s structuredContent or the provider's error. `args` is
 * borrowed (copied). */
void tool_run_op(mcp_request *req, prov_target *t, json_t *args, tool_op_start_fn start,
                 tool_op_shape_fn shape);

/* ---- following a deployment (stream_events.c) ------------------------ */

#include "tools/watch.h"

#define TOOL_STREAM_DEFAULT_SECONDS 300

/* Follows a deployment's build/deploy events exactly as stream_events does:
 * relay with lastLines, deadline, final status lookup. See watch_start. */
watch *tool_follow_events(mcp_request *req, prov_target *t, const char *deployment_id,
                          const char *cursor, unsigned max_seconds, bool include_logs,
                          watch_done_fn done, void *ud, prov_error *err);

/* The stream_events structuredContent for a finished watch (new reference). */
json_t *tool_events_summary(const watch_end *end);

/* The isError result for a stream that failed after relaying some events:
 * the error, plus the cursor to resume from when it fits. */
json_t *tool_stream_error_result(const prov_target *t, const watch_end *end);

#endif

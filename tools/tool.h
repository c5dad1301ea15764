/* tool.h — the MCP tool table and the helpers every tool shares.
 *
 * One tool is one `const tool_def` in tools/<name>.c, listed in
 * tools/registry.c. A tool's `call` receives arguments that have already
 * been validated against its inputSchema (tool_validate_args) and must end
 * the request exactly once (mcp_req_finish) or register a cancel callback
 * that frees its state (see mcp/session.h). */
#ifndef DEPLOY_MCP_TOOL_H
#define DEPLOY_MCP_TOOL_H

#include <jansson.h>
#include <stdbool.h>

#include "mcp/session.h"
#include "providers/provider.h"

typedef struct tool_def {
    const char *name;
    const char *title;
    const char *description;      /* written for a model */
    const char *input_schema;     /* JSON text; additionalProperties: false */
    const char *output_schema;    /* JSON text */
    bool read_only, destructive, idempotent, open_world;  /* annotations */
    unsigned cap;                 /* PROV_CAP_* the target must have; 0 = none */
    /* Handles a call. `args` is borrowed (valid for the call only; copy what
     * you keep). `target` is the resolved target when cap != 0, else NULL. */
    void (*call)(mcp_request *req, prov_target *target, json_t *args);
} tool_def;

/* All tools, NULL-terminated, in tools/list order. */
extern const tool_def *const tool_table[];

/* Finds a tool by name; NULL when unknown. */
const tool_def *tool_find(const char *name);

/* The i-th tool in tools/list order: tool_table, then the conformance
 * fixture tools when --conformance-fixtures enabled them (tools/fixtures.h).
 * NULL past the end. */
const tool_def *tool_nth(size_t i);

/* The tools/list entry for a tool (new reference). */
json_t *tool_describe(const tool_def *t);

/* The tool's inputSchema / outputSchema, parsed once and cached (borrowed;
 * NULL only if the embedded JSON text is broken or memory ran out). */
json_t *tool_input_schema(const tool_def *t);
json_t *tool_output_schema(const tool_def *t);

/* Frees the cached schemas and the create_preview idempotency tables. Call
 * once at exit, after every session is closed (no tool call running). */
void tool_registry_cleanup(void);

/* Handles tools/call: validates, resolves the target, checks capability and
 * dispatches. Unknown tool → JSON-RPC -32602 via mcp_req_finish_error;
 * invalid arguments / unknown target / unsupported capability → isError
 * result. */
void tool_dispatch(mcp_request *req, const char *name, json_t *args);

/* Validates args against a schema subset (type object/string/integer/number/
 * boolean/array, properties, required, additionalProperties:false, enum,
 * minimum, maximum, minLength, maxLength). Returns 0, or -1 with a message
 * naming the argument in err. */
int tool_validate_args(json_t *schema, json_t *args, char *err, size_t errlen);

/* ---- results -------------------------------------------------------- */

/* {content:[{type:text,text:<json>}], structuredContent: sc}. Steals sc. */
json_t *tool_result(json_t *sc);

/* isError result: structuredContent {error:{code,message,httpStatus?,provider,
 * retryable}} and a text block a model can act on. provider may be NULL. */
json_t *tool_error_result(const char *provider, const prov_error *e);

/* Shorthand for argument / usage errors (retryable false, no httpStatus). */
json_t *tool_error_simple(const char *provider, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif

/* result.h — how a tool_result (tools/tool.h) is serialized once.
 *
 * A success result carries structuredContent and the same JSON as the text
 * of its one text block. Serializing the result as a tree would write that
 * JSON twice (once into the text, once as structuredContent) and escape it a
 * third time; instead tool_result leaves the text block's "text" as a
 * placeholder, and the session's sender writes structuredContent's JSON once
 * and splices it into the envelope as both the escaped text and the object
 * (mcp/session.c, mcp_req_finish).
 *
 * Whoever hands a result anywhere else than mcp_req_finish, or changes its
 * shape first, must not care: mcp_req_finish materializes the placeholder
 * (fills in the text) before any other serialization, and so does
 * tool_result_materialize for other callers. */
#ifndef DEPLOY_MCP_TOOLS_RESULT_H
#define DEPLOY_MCP_TOOLS_RESULT_H

#include <jansson.h>

/* When `result` is exactly what tool_result made — {content:[{type:"text",
 * text:<placeholder>}], structuredContent, isError?} — returns its
 * structuredContent (borrowed) and sets *is_error to -1 (absent), 0 or 1.
 * Otherwise NULL. */
json_t *tool_result_deferred(json_t *result, int *is_error);

/* Replaces every placeholder text in result.content by structuredContent's
 * compact JSON text (what tool_result used to put there), turning the result
 * into an ordinary CallToolResult tree. Nothing to do for other results.
 * Returns 0, or -1 when out of memory (the text is then "(unprintable)"). */
int tool_result_materialize(json_t *result);

#endif

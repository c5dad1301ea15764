/* fixtures.h — the MCP conformance suite's fixture tools.
 *
 * @modelcontextprotocol/conformance calls tools with fixed names
 * (test_simple_text, test_tool_with_progress, ...) to check content types,
 * progress, logging and errors end to end. `deploy-mcp --conformance-fixtures`
 * registers them next to the real tools so the suite exercises the same
 * session, progress and logging machinery the deployment tools use. They are
 * never listed without the flag. */
#ifndef DEPLOY_MCP_FIXTURES_H
#define DEPLOY_MCP_FIXTURES_H

#include <stdbool.h>
#include <stddef.h>

#include "tools/tool.h"

/* Makes the fixture tools visible to tools/list and tools/call. Call once at
 * start-up, before any session exists. */
void tool_fixtures_enable(void);

bool tool_fixtures_enabled(void);

/* The i-th fixture tool, or NULL past the end (or when not enabled). */
const tool_def *tool_fixture_at(size_t i);

/* A fixture tool's parsed input/output schema, cached like the real tools'
 * (borrowed; NULL when the tool is not a fixture or has no such schema). */
json_t *tool_fixture_schema(const tool_def *t, bool output);

/* Frees the cached schemas (from tool_registry_cleanup). */
void tool_fixtures_cleanup(void);

#endif

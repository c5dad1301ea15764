/* showly.h — the two halves of the Showly event parser, for the tests and
 * the fuzz target that compare them (the adapter itself is reached through
 * `prov_showly` in providers/registry.c).
 *
 * showly_stream_parse first tries showly_event_parse_fast, a scanner for the
 * shapes Showly sends ({"stream":…,"lines":[…]} and {"status":…,…} with
 * string values), and falls back to showly_event_parse_slow (jansson through
 * prov_json_parse) for everything the scanner declines: numbers, nested
 * values, repeated keys, escaped keys, invalid UTF-8, lone surrogates,
 * anything jansson would reject. Whenever the fast path does not decline it
 * must emit exactly what the slow path emits and return the same code. */
#ifndef DEPLOY_MCP_PROVIDERS_SHOWLY_H
#define DEPLOY_MCP_PROVIDERS_SHOWLY_H

#include "providers/provider.h"
#include "providers/sse.h"

/* Returned by showly_event_parse_fast when it leaves the event to the slow
 * path (nothing was emitted). */
#define SHOWLY_FAST_DECLINED (-2)

/* Both return PROV_PARSE_CONTINUE, PROV_PARSE_END or PROV_PARSE_IGNORED
 * (the fast one also SHOWLY_FAST_DECLINED) and emit at most one event. */
int showly_event_parse_fast(const sse_event *ev, prov_emit_fn emit, void *sink);
int showly_event_parse_slow(const sse_event *ev, prov_emit_fn emit, void *sink);

#endif

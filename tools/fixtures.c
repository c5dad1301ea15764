/* fixtures.c — the conformance suite's fixture tools (see fixtures.h).
 *
 * Names, arguments and results follow @modelcontextprotocol/conformance's
 * server scenarios (its everything-server is the reference). The timed ones
 * (logging, progress) run on a uv_timer so they exercise exactly what a
 * deployment stream does: notifications tied to a running request, sent on
 * that request's stream, then the result; cancellation stops the timer. */
#include "tools/fixtures.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "mcp/log.h"
#include "mcp/server.h"
#include "mcp/session.h"

#define FX_STEP_MS 50          /* the suite asks for ~50 ms between notifications */
#define FX_STEPS 3
#define FX_LOGGER "conformance"

/* A 1x1 red PNG and a 44-byte silent WAV: the smallest valid payloads. */
#define FX_PNG_B64                                                                          \
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
#define FX_WAV_B64 "UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YQAAAAA="

#define FX_NO_ARGS "{\"type\":\"object\",\"properties\":{},\"additionalProperties\":false}"

static bool enabled;

/* ---- immediate results ---------------------------------------------------- */

static json_t *text_block(const char *text)
{
    return json_pack("{s:s, s:s}", "type", "text", "text", text);
}

static json_t *image_block(void)
{
    return json_pack("{s:s, s:s, s:s}", "type", "image", "data", FX_PNG_B64, "mimeType",
                     "image/png");
}

static void finish_content(mcp_request *req, json_t *content)
{
    json_t *result = content ? json_pack("{s:o}", "content", content) : NULL;
    mcp_req_finish(req, result); /* NULL result → an isError "internal error" */
}

static void fx_simple_text(mcp_request *req, prov_target *t, json_t *args)
{
    (void)t;
    (void)args;
    finish_content(req, json_pack("[o]", text_block("This is a simple text response for testing.")));
}

static void fx_image(mcp_request *req, prov_target *t, json_t *args)
{
    (void)t;
    (void)args;
    finish_content(req, json_pack("[o]", image_block()));
}

static void fx_audio(mcp_request *req, prov_target *t, json_t *args)
{
    (void)t;
    (void)args;
    finish_content(req, json_pack("[{s:s, s:s, s:s}]", "type", "audio", "data", FX_WAV_B64,
                                  "mimeType", "audio/wav"));
}

static void fx_embedded_resource(mcp_request *req, prov_target *t, json_t *args)
{
    (void)t;
    (void)args;
    finish_content(req, json_pack("[{s:s, s:{s:s, s:s, s:s}}]", "type", "resource", "resource",
                                  "uri", "test://embedded-resource", "mimeType", "text/plain",
                                  "text", "This is an embedded resource content."));
}

static void fx_mixed(mcp_request *req, prov_target *t, json_t *args)
{
    (void)t;
    (void)args;
    finish_content(req, json_pack("[o, o, {s:s, s:{s:s, s:s, s:s}}]",
                                  text_block("Multiple content types test:"), image_block(),
                                  "type", "resource", "resource", "uri",
                                  "test://mixed-content-resource", "mimeType",
                                  "application/json", "text", "{\"test\":\"data\",\"value\":123}"));
}

static void fx_error(mcp_request *req, prov_target *t, json_t *args)
{
    (void)t;
    (void)args;
    mcp_req_finish(req, json_pack("{s:[o], s:b}", "content",
                                  text_block("This tool intentionally returns an error for testing"),
                                  "isError", 1));
}

static void fx_schema_tool(mcp_request *req, prov_target *t, json_t *args)
{
    (void)t;
    (void)args;
    finish_content(req, json_pack("[o]", text_block("json_schema_2020_12_tool called")));
}

/* ---- timed: logging and progress ---------------------------------------- */

typedef struct fx_run {
    mcp_request *req;         /* NULL once finished or cancelled */
    uv_timer_t timer;
    int step;
    bool progress;            /* progress notifications, else log messages */
} fx_run;

static void on_run_closed(uv_handle_t *h)
{
    free(h->data);
}

static void run_close(fx_run *run)
{
    run->req = NULL;
    uv_timer_stop(&run->timer);
    uv_close((uv_handle_t *)&run->timer, on_run_closed);
}

static void run_cancel(void *ud)
{
    run_close(ud);
}

static void run_step(fx_run *run)
{
    static const char *const log_lines[FX_STEPS] = {
        "Tool execution started", "Tool processing data", "Tool execution completed",
    };
    int i = run->step++;
    if (run->progress) {
        char msg[64];
        int pct = i * 100 / (FX_STEPS - 1);
        snprintf(msg, sizeof msg, "Completed step %d of 100", pct);
        mcp_req_progress(run->req, pct, 100, msg);
    } else {
        mcp_req_log(run->req, MCP_LOG_INFO, FX_LOGGER, json_string(log_lines[i]));
    }
    if (run->step < FX_STEPS)
        return;
    mcp_request *req = run->req;
    run_close(run);
    finish_content(req, json_pack("[o]", text_block(run->progress
                                                        ? "Tool with progress executed successfully"
                                                        : "Tool with logging executed successfully")));
}

static void on_run_timer(uv_timer_t *h)
{
    fx_run *run = h->data;
    run_step(run);
}

static void start_run(mcp_request *req, bool progress)
{
    fx_run *run = calloc(1, sizeof *run);
    if (!run) {
        mcp_req_finish_error(req, RPC_INTERNAL_ERROR, "out of memory");
        return;
    }
    run->req = req;
    run->progress = progress;
    if (uv_timer_init(mcp_req_server(req)->loop, &run->timer) != 0) {
        free(run);
        mcp_req_finish_error(req, RPC_INTERNAL_ERROR, "could not start a timer");
        return;
    }
    run->timer.data = run;
    mcp_req_on_cancel(req, run_cancel, run);
    run_step(run); /* the first notification goes out at once */
    if (run->req)
        uv_timer_start(&run->timer, on_run_timer, FX_STEP_MS, FX_STEP_MS);
}

static void fx_logging(mcp_request *req, prov_target *t, json_t *args)
{
    (void)t;
    (void)args;
    start_run(req, false);
}

static void fx_progress(mcp_request *req, prov_target *t, json_t *args)
{
    (void)t;
    (void)args;
    start_run(req, true);
}

/* ---- the table -------------------------------------------------------------- */

#define FX_TOOL(sym, nm, ttl, desc, schema, fn)                                             \
    static const tool_def sym = {                                                           \
        .name = nm, .title = ttl, .description = desc, .input_schema = schema,              \
        .output_schema = NULL, .read_only = true, .idempotent = true, .call = fn,           \
    }

FX_TOOL(fx_def_simple_text, "test_simple_text", "Simple text",
        "Conformance fixture: returns one text block.", FX_NO_ARGS, fx_simple_text);
FX_TOOL(fx_def_image, "test_image_content", "Image content",
        "Conformance fixture: returns a 1x1 PNG image block.", FX_NO_ARGS, fx_image);
FX_TOOL(fx_def_audio, "test_audio_content", "Audio content",
        "Conformance fixture: returns a short WAV audio block.", FX_NO_ARGS, fx_audio);
FX_TOOL(fx_def_resource, "test_embedded_resource", "Embedded resource",
        "Conformance fixture: returns an embedded text resource.", FX_NO_ARGS,
        fx_embedded_resource);
FX_TOOL(fx_def_mixed, "test_multiple_content_types", "Mixed content",
        "Conformance fixture: returns text, image and resource blocks.", FX_NO_ARGS, fx_mixed);
FX_TOOL(fx_def_logging, "test_tool_with_logging", "Logging",
        "Conformance fixture: sends three info log notifications 50 ms apart, then returns.",
        FX_NO_ARGS, fx_logging);
FX_TOOL(fx_def_progress, "test_tool_with_progress", "Progress",
        "Conformance fixture: reports progress 0, 50 and 100 of 100, 50 ms apart, then returns.",
        FX_NO_ARGS, fx_progress);
FX_TOOL(fx_def_error, "test_error_handling", "Error result",
        "Conformance fixture: always returns an isError result.", FX_NO_ARGS, fx_error);
FX_TOOL(fx_def_schema, "json_schema_2020_12_tool", "JSON Schema 2020-12",
        "Tool with JSON Schema 2020-12 features",
        "{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\",\"type\":\"object\","
        "\"$defs\":{\"address\":{\"$anchor\":\"addressDef\",\"type\":\"object\",\"properties\":"
        "{\"street\":{\"type\":\"string\"},\"city\":{\"type\":\"string\"}}}},"
        "\"properties\":{\"name\":{\"type\":\"string\"},\"address\":{\"$ref\":\"#/$defs/address\"},"
        "\"contactMethod\":{\"type\":\"string\",\"enum\":[\"phone\",\"email\"]},"
        "\"phone\":{\"type\":\"string\"},\"email\":{\"type\":\"string\"}},"
        "\"allOf\":[{\"anyOf\":[{\"required\":[\"phone\"]},{\"required\":[\"email\"]}]}],"
        "\"if\":{\"properties\":{\"contactMethod\":{\"const\":\"phone\"}},"
        "\"required\":[\"contactMethod\"]},\"then\":{\"required\":[\"phone\"]},"
        "\"else\":{\"required\":[\"email\"]},\"additionalProperties\":false}",
        fx_schema_tool);

static const tool_def *const fixture_table[] = {
    &fx_def_simple_text, &fx_def_image,    &fx_def_audio, &fx_def_resource, &fx_def_mixed,
    &fx_def_logging,     &fx_def_progress, &fx_def_error, &fx_def_schema,
};

#define FIXTURE_COUNT (sizeof fixture_table / sizeof fixture_table[0])

static json_t *fixture_input_schemas[FIXTURE_COUNT];

void tool_fixtures_enable(void) { enabled = true; }

bool tool_fixtures_enabled(void) { return enabled; }

const tool_def *tool_fixture_at(size_t i)
{
    return enabled && i < FIXTURE_COUNT ? fixture_table[i] : NULL;
}

json_t *tool_fixture_schema(const tool_def *t, bool output)
{
    for (size_t i = 0; i < FIXTURE_COUNT; i++) {
        if (fixture_table[i] != t)
            continue;
        if (output) /* fixtures return plain content, like the suite's reference server */
            return NULL;
        if (!fixture_input_schemas[i]) {
            json_error_t jerr;
            fixture_input_schemas[i] = json_loads(t->input_schema, 0, &jerr);
            if (!fixture_input_schemas[i])
                log_error("fixture %s: input schema does not parse: %s", t->name, jerr.text);
        }
        return fixture_input_schemas[i];
    }
    return NULL;
}

void tool_fixtures_cleanup(void)
{
    for (size_t i = 0; i < FIXTURE_COUNT; i++) {
        json_decref(fixture_input_schemas[i]);
        fixture_input_schemas[i] = NULL;
    }
}

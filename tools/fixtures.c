/* fixtures.c — the conformance suite's fixture tools (see fixtures.h).
 *
 * Names, arguments and results follow @modelcontextprotocol/conformance's
 * server scenarios (its everything-server is the reference). The timed ones
 * (logging, progress) run on a uv_timer so they exercise exactly what a
 * deployment stream does: notifications tied to a running request, sent on
 * that request's stream, then the result; cancellation stops the timer.
 * The sampling and elicitation ones ask the client (mcp_req_ask) and answer
 * with what it said; cancellation cancels the ask. */
#include "tools/fixtures.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "mcp/log.h"
#include "mcp/server.h"
#include "mcp/session.h"

#define FX_STEP_MS 50          /* the suite asks for ~50 ms between notifications */
#define FX_STEPS 3
#define FX_LOGGER "conformance"
#define FX_ASK_TIMEOUT_MS 60000 /* a client that never answers: isError after this */

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

/* ---- asking the client: sampling and elicitation ------------------------ */

/* The elicitation/create schemas the scenarios check field by field. */
#define FX_ELICIT_SCHEMA                                                                    \
    "{\"type\":\"object\",\"properties\":{"                                                 \
    "\"username\":{\"type\":\"string\",\"description\":\"User's response\"},"               \
    "\"email\":{\"type\":\"string\",\"description\":\"User's email address\"}},"            \
    "\"required\":[\"username\",\"email\"]}"
#define FX_DEFAULTS_SCHEMA                                                                  \
    "{\"type\":\"object\",\"properties\":{"                                                 \
    "\"name\":{\"type\":\"string\",\"description\":\"User name\",\"default\":\"John Doe\"},"  \
    "\"age\":{\"type\":\"integer\",\"description\":\"User age\",\"default\":30},"           \
    "\"score\":{\"type\":\"number\",\"description\":\"User score\",\"default\":95.5},"      \
    "\"status\":{\"type\":\"string\",\"description\":\"User status\","                      \
    "\"enum\":[\"active\",\"inactive\",\"pending\"],\"default\":\"active\"},"               \
    "\"verified\":{\"type\":\"boolean\",\"description\":\"Verification status\","           \
    "\"default\":true}}}"
#define FX_ENUMS_SCHEMA                                                                     \
    "{\"type\":\"object\",\"properties\":{"                                                 \
    "\"untitledSingle\":{\"type\":\"string\",\"description\":\"Untitled single-select\","   \
    "\"enum\":[\"option1\",\"option2\",\"option3\"]},"                                      \
    "\"titledSingle\":{\"type\":\"string\",\"description\":\"Titled single-select\","       \
    "\"oneOf\":[{\"const\":\"value1\",\"title\":\"First Option\"},"                         \
    "{\"const\":\"value2\",\"title\":\"Second Option\"},"                                   \
    "{\"const\":\"value3\",\"title\":\"Third Option\"}]},"                                  \
    "\"legacyEnum\":{\"type\":\"string\",\"description\":\"Legacy titled enum\","           \
    "\"enum\":[\"opt1\",\"opt2\",\"opt3\"],"                                                \
    "\"enumNames\":[\"Option One\",\"Option Two\",\"Option Three\"]},"                      \
    "\"untitledMulti\":{\"type\":\"array\",\"description\":\"Untitled multi-select\","      \
    "\"items\":{\"type\":\"string\",\"enum\":[\"option1\",\"option2\",\"option3\"]}},"      \
    "\"titledMulti\":{\"type\":\"array\",\"description\":\"Titled multi-select\","          \
    "\"items\":{\"anyOf\":[{\"const\":\"value1\",\"title\":\"First Choice\"},"              \
    "{\"const\":\"value2\",\"title\":\"Second Choice\"},"                                   \
    "{\"const\":\"value3\",\"title\":\"Third Choice\"}]}}}}"

/* One tools/call waiting for the client's answer. */
typedef struct fx_wait {
    mcp_request *req;
    mcp_ask *ask;             /* NULL once answered or cancelled */
    uv_timer_t timer;         /* the time limit */
    const char *method;
    const char *prefix;       /* of the result text: "LLM response", ... */
} fx_wait;

static void finish_error_text(mcp_request *req, const char *text)
{
    mcp_req_finish(req, json_pack("{s:[o], s:b}", "content", text_block(text), "isError", 1));
}

/* Finishes with "<a><b>" as one text block (isError when is_error). */
static void finish_concat(mcp_request *req, const char *a, const char *b, bool is_error)
{
    size_t n = strlen(a) + strlen(b) + 1;
    char *text = malloc(n);
    if (!text) {
        mcp_req_finish(req, NULL);
        return;
    }
    snprintf(text, n, "%s%s", a, b);
    if (is_error)
        finish_error_text(req, text);
    else
        finish_content(req, json_pack("[o]", text_block(text)));
    free(text);
}

static void on_wait_closed(uv_handle_t *h)
{
    free(h->data);
}

/* Ends the wait (the ask must be answered or cancelled already). */
static void wait_close(fx_wait *w)
{
    w->req = NULL;
    uv_timer_stop(&w->timer);
    uv_close((uv_handle_t *)&w->timer, on_wait_closed);
}

static void wait_cancel(void *ud)
{
    fx_wait *w = ud;
    mcp_ask_cancel(w->ask);
    w->ask = NULL;
    wait_close(w);
}

static void on_wait_timeout(uv_timer_t *h)
{
    fx_wait *w = h->data;
    mcp_request *req = w->req;
    const char *method = w->method;
    mcp_ask_cancel(w->ask);
    w->ask = NULL;
    wait_close(w);
    char msg[160];
    snprintf(msg, sizeof msg, "The client did not answer %s within %d seconds", method,
             FX_ASK_TIMEOUT_MS / 1000);
    finish_error_text(req, msg);
}

/* The text of a sampling result's content (one block or, from 2025-11-25,
 * an array of blocks: the first text one); its JSON otherwise. */
static char *sampling_text(json_t *result)
{
    json_t *content = json_object_get(result, "content");
    json_t *block = content;
    if (json_is_array(content)) {
        size_t i;
        json_t *el;
        block = NULL;
        json_array_foreach(content, i, el)
            if (json_is_string(json_object_get(el, "text"))) {
                block = el;
                break;
            }
    }
    const char *text = json_string_value(json_object_get(block, "text"));
    if (text)
        return strdup(text);
    return json_dumps(content ? content : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
}

/* "action=<action>, content=<content as compact JSON>" */
static char *elicit_text(json_t *result)
{
    const char *action = json_string_value(json_object_get(result, "action"));
    json_t *content = json_object_get(result, "content");
    json_t *empty = content ? NULL : json_object();
    char *cj = json_dumps(content ? content : empty, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(empty);
    if (!cj)
        return NULL;
    size_t n = strlen(cj) + 64 + (action ? strlen(action) : 0);
    char *text = malloc(n);
    if (text)
        snprintf(text, n, "action=%s, content=%s", action ? action : "(none)", cj);
    free(cj);
    return text;
}

static void on_wait_answer(void *ud, json_t *result, const json_t *error)
{
    fx_wait *w = ud;
    mcp_request *req = w->req;
    const char *method = w->method, *prefix = w->prefix;
    w->ask = NULL; /* answered: the session has freed it */
    wait_close(w);
    if (error) {
        const char *m = json_string_value(json_object_get(error, "message"));
        char head[96];
        snprintf(head, sizeof head, "%s failed: ", method);
        finish_concat(req, head, m ? m : "(no message)", true);
        return;
    }
    bool sampling = strcmp(method, "sampling/createMessage") == 0;
    char *text = sampling ? sampling_text(result) : elicit_text(result);
    if (!text) {
        mcp_req_finish(req, NULL);
        return;
    }
    finish_concat(req, prefix, text, false);
    free(text);
}

/* Sends method(params) to the client if it declared `cap`, and finishes
 * req with "<prefix><answer>" once it answers. Steals params. */
static void ask_client(mcp_request *req, const char *cap, const char *method, json_t *params,
                       const char *prefix)
{
    if (!params) {
        mcp_req_finish_error(req, RPC_INTERNAL_ERROR, "out of memory");
        return;
    }
    if (!mcp_session_client_has(mcp_req_session(req), cap)) {
        json_decref(params);
        char msg[160];
        snprintf(msg, sizeof msg, "The client does not support %s (it declared no %s "
                 "capability at initialize)", cap, cap);
        finish_error_text(req, msg);
        return;
    }
    fx_wait *w = calloc(1, sizeof *w);
    if (!w || uv_timer_init(mcp_req_server(req)->loop, &w->timer) != 0) {
        free(w);
        json_decref(params);
        mcp_req_finish_error(req, RPC_INTERNAL_ERROR, "could not start a timer");
        return;
    }
    w->req = req;
    w->method = method;
    w->prefix = prefix;
    w->timer.data = w;
    w->ask = mcp_req_ask(req, method, params, on_wait_answer, w);
    if (!w->ask) {
        wait_close(w);
        finish_error_text(req, "Could not send the request to the client (too many requests "
                               "to it are pending)");
        return;
    }
    mcp_req_on_cancel(req, wait_cancel, w);
    uv_timer_start(&w->timer, on_wait_timeout, FX_ASK_TIMEOUT_MS, 0);
}

static void fx_sampling(mcp_request *req, prov_target *t, json_t *args)
{
    (void)t;
    const char *prompt = json_string_value(json_object_get(args, "prompt"));
    ask_client(req, "sampling", "sampling/createMessage",
               json_pack("{s:[{s:s, s:{s:s, s:s}}], s:i}", "messages", "role", "user", "content",
                         "type", "text", "text", prompt ? prompt : "", "maxTokens", 100),
               "LLM response: ");
}

/* elicitation/create {message, requestedSchema: <schema text>}. */
static void elicit(mcp_request *req, const char *message, const char *schema, const char *prefix)
{
    json_t *rs = json_loads(schema, 0, NULL);
    json_t *params = rs ? json_pack("{s:s, s:o}", "message", message, "requestedSchema", rs) : NULL;
    ask_client(req, "elicitation", "elicitation/create", params, prefix);
}

static void fx_elicitation(mcp_request *req, prov_target *t, json_t *args)
{
    (void)t;
    const char *message = json_string_value(json_object_get(args, "message"));
    elicit(req, message ? message : "", FX_ELICIT_SCHEMA, "User response: ");
}

static void fx_elicitation_defaults(mcp_request *req, prov_target *t, json_t *args)
{
    (void)t;
    (void)args;
    elicit(req, "Please review and update the form fields with defaults", FX_DEFAULTS_SCHEMA,
           "Elicitation completed: ");
}

static void fx_elicitation_enums(mcp_request *req, prov_target *t, json_t *args)
{
    (void)t;
    (void)args;
    elicit(req, "Please select options from the enum fields", FX_ENUMS_SCHEMA,
           "Elicitation completed: ");
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

FX_TOOL(fx_def_sampling, "test_sampling", "Sampling",
        "Conformance fixture: asks the client for an LLM completion of `prompt` "
        "(sampling/createMessage) and returns its text.",
        "{\"type\":\"object\",\"properties\":{\"prompt\":{\"type\":\"string\","
        "\"description\":\"The prompt to send to the LLM\"}},\"required\":[\"prompt\"],"
        "\"additionalProperties\":false}",
        fx_sampling);
FX_TOOL(fx_def_elicitation, "test_elicitation", "Elicitation",
        "Conformance fixture: asks the user (elicitation/create) for a username and an email, "
        "showing `message`, and returns the answer.",
        "{\"type\":\"object\",\"properties\":{\"message\":{\"type\":\"string\","
        "\"description\":\"The message to show the user\"}},\"required\":[\"message\"],"
        "\"additionalProperties\":false}",
        fx_elicitation);
FX_TOOL(fx_def_elicitation_defaults, "test_elicitation_sep1034_defaults", "Elicitation defaults",
        "Conformance fixture: elicitation/create with a default for every primitive type "
        "(SEP-1034); returns the answer.", FX_NO_ARGS, fx_elicitation_defaults);
FX_TOOL(fx_def_elicitation_enums, "test_elicitation_sep1330_enums", "Elicitation enums",
        "Conformance fixture: elicitation/create with the five enum schema variants "
        "(SEP-1330); returns the answer.", FX_NO_ARGS, fx_elicitation_enums);

static const tool_def *const fixture_table[] = {
    &fx_def_simple_text, &fx_def_image,    &fx_def_audio, &fx_def_resource, &fx_def_mixed,
    &fx_def_logging,     &fx_def_progress, &fx_def_error, &fx_def_schema,
    &fx_def_sampling,    &fx_def_elicitation, &fx_def_elicitation_defaults,
    &fx_def_elicitation_enums,
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

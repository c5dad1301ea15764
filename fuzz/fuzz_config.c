/* fuzz_config.c — the config loader (cfg_parse, mcp/config.h) and what
 * start-up does next with a loaded config: each target's adapter configure,
 * credentials check, stream spec, unconfigure (as main.c's setup_targets).
 *
 * Input: the file's bytes, as is (seeds are real config files).
 *
 * Invariants:
 *  - 0 with a cfg, or -1 with no cfg and a message "config <path>: ...";
 *    the message for a JSON syntax error never carries jansson's "near '...'"
 *    excerpt (it could quote a secret pasted into the file);
 *  - the same call with a small error buffer gives the same answer and a
 *    truncated, NUL-terminated prefix of the message;
 *  - a loaded cfg: at most 256 targets with unique non-empty names, known
 *    providers, each obj an object whose "provider" matches; baseUrl and
 *    streamBaseUrl without trailing '/'; allowed_origins NULL-terminated;
 *    approval_listen and approval_secret_env set; defaultTarget names a target;
 *  - cfg_pick_target follows its rules (a name picks that target, ""/NULL the
 *    only target or the default, anything else NULL with a message);
 *  - configure either succeeds or fails with a message, unconfigure runs
 *    after both (provider.h), and a configured target's stream spec, when
 *    one is produced, is NUL-terminated within its buffers. */
#include <curl/curl.h>
#include <jansson.h>
#include <stdbool.h>
#include <uv.h>

#include "fuzz/fuzz.h"
#include "mcp/config.h"
#include "mcp/log.h"
#include "providers/http.h"
#include "providers/provider.h"
#include "tools/tool.h"

#define PATH "fuzz.json"
#define PREFIX "config " PATH ": "

static uv_loop_t loop;
static http_client *http;
static bool verbose;   /* FUZZ_VERBOSE=1: print each answer (for reading seeds) */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_set_level(LOG_ERROR);
    verbose = getenv("FUZZ_VERBOSE") != NULL;
    /* The providers' default credential variables, and one custom name. */
    setenv("SHOWLY_TOKEN", "sk_live_fuzz", 1);
    setenv("BIGCOMMERCE_ACCESS_TOKEN", "bc-fuzz-token", 1);
    setenv("MIXPEEK_API_KEY", "mx-fuzz-key", 1);
    setenv("BLUELINK_API_KEY", "bl-fuzz-key", 1);
    setenv("FUZZ_SECRET", "fuzz-secret-value", 1);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || uv_loop_init(&loop) != 0 ||
        !(http = http_client_new(&loop)))
        abort();
    return 0;
}

/* True when the text is not JSON for a reason other than a duplicate key
 * (whose message may name the key). */
static bool is_syntax_error(const char *text, size_t len)
{
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) {
        text += 3;
        len -= 3;
    }
    json_error_t je;
    json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    json_decref(j);
    return !j && json_error_code(&je) != json_error_duplicate_key;
}

static bool ends_with_slash(const json_t *obj, const char *field)
{
    const char *s = json_string_value(json_object_get(obj, field));
    size_t n = s ? strlen(s) : 0;
    return n > 0 && s[n - 1] == '/';
}

static void check_cfg(const cfg *c)
{
    FUZZ_CHECK(c->ntargets <= 256, "%zu targets", c->ntargets);
    FUZZ_CHECK(c->ntargets == 0 || c->targets, "targets array missing");
    for (size_t i = 0; i < c->ntargets; i++) {
        const cfg_target *t = &c->targets[i];
        FUZZ_CHECK(t->name && t->name[0], "target %zu has no name", i);
        FUZZ_CHECK(t->provider && prov_known(t->provider), "target %zu: provider not known", i);
        FUZZ_CHECK(json_is_object(t->obj), "target %zu: obj is not an object", i);
        FUZZ_CHECK(strcmp(cfg_str(t, "provider", ""), t->provider) == 0,
                   "target %zu: obj.provider differs from provider", i);
        FUZZ_CHECK(!ends_with_slash(t->obj, "baseUrl") && !ends_with_slash(t->obj, "streamBaseUrl"),
                   "target %zu: a base URL kept its trailing slash", i);
        FUZZ_CHECK(cfg_target_get(c, t->name) == t, "target name %zu is not unique", i);
    }
    FUZZ_CHECK(c->allowed_origins, "allowed_origins is NULL");
    for (char **o = c->allowed_origins; *o; o++)
        FUZZ_CHECK(**o, "empty allowed origin");
    FUZZ_CHECK(c->approval_listen && c->approval_secret_env, "approval defaults missing");
    FUZZ_CHECK(!c->default_target || cfg_target_get(c, c->default_target),
               "defaultTarget names no target");
}

static void check_pick(const cfg *c)
{
    char err[512];
    const cfg_target *t = cfg_pick_target(c, NULL, err, sizeof err);
    const cfg_target *expect = c->ntargets == 1 ? &c->targets[0]
                               : c->default_target ? cfg_target_get(c, c->default_target)
                                                   : NULL;
    if (c->ntargets == 0)
        expect = NULL;
    FUZZ_CHECK(t == expect, "cfg_pick_target(NULL) picked the wrong target");
    FUZZ_CHECK(t || err[0], "cfg_pick_target failed without a message");
    FUZZ_CHECK(cfg_pick_target(c, "", err, sizeof err) == t, "\"\" is not the same as NULL");
    for (size_t i = 0; i < c->ntargets; i++)
        FUZZ_CHECK(cfg_pick_target(c, c->targets[i].name, err, sizeof err) == &c->targets[i],
                   "cfg_pick_target(\"%s\") did not pick it", c->targets[i].name);
    FUZZ_CHECK(!cfg_pick_target(c, "\x01no such target", err, sizeof err) && err[0],
               "an unknown target name was accepted or got no message");
    /* A small message buffer is fine too. */
    char tiny[8];
    cfg_pick_target(c, "\x01no such target", tiny, sizeof tiny);
    FUZZ_CHECK(memchr(tiny, '\0', sizeof tiny), "message not NUL-terminated in a small buffer");
}

static void check_spec(prov_target *t, enum prov_stream_kind kind, const char *id)
{
    prov_stream_spec spec;
    prov_error perr;
    memset(&spec, 0xAA, sizeof spec);
    memset(&perr, 0, sizeof perr);
    if (t->ops->stream_spec(t, kind, id, &spec, &perr) != 0) {
        FUZZ_CHECK(memchr(perr.message, '\0', sizeof perr.message) && perr.code[0],
                   "%s stream_spec failed without an error code", t->ops->name);
        return;
    }
    FUZZ_CHECK(memchr(spec.url, '\0', sizeof spec.url) && spec.url[0],
               "%s stream_spec: url empty or not NUL-terminated", t->ops->name);
    FUZZ_CHECK(spec.nheaders >= 0 && spec.nheaders <= PROV_STREAM_MAX_HEADERS,
               "%s stream_spec: nheaders %d", t->ops->name, spec.nheaders);
    for (int i = 0; i < spec.nheaders; i++)
        FUZZ_CHECK(memchr(spec.headers[i], '\0', PROV_HEADER_MAX) && strchr(spec.headers[i], ':'),
                   "%s stream_spec: header %d malformed", t->ops->name, i);
    FUZZ_CHECK(memchr(spec.first_last_event_id, '\0', sizeof spec.first_last_event_id),
               "%s stream_spec: first_last_event_id not NUL-terminated", t->ops->name);
}

/* What main.c does with each target, then what a tool call starts with. */
static void exercise_targets(const cfg *c)
{
    for (size_t i = 0; i < c->ntargets; i++) {
        prov_target t = {.cfg = &c->targets[i], .ops = prov_lookup(c->targets[i].provider),
                         .http = http, .loop = &loop};
        FUZZ_CHECK(t.ops, "prov_known accepted \"%s\" but prov_lookup has no adapter",
                   c->targets[i].provider);
        char err[512] = "";
        if (t.ops->configure(&t, err, sizeof err) != 0) {
            FUZZ_CHECK(err[0], "%s configure failed without a message", t.ops->name);
            if (verbose)
                fprintf(stderr, "  target %s: configure: %s\n", t.cfg->name, err);
            if (t.ops->unconfigure)
                t.ops->unconfigure(&t);
            continue;
        }
        char problem[512] = "";
        if (t.ops->credentials_ok && !t.ops->credentials_ok(&t, problem, sizeof problem))
            FUZZ_CHECK(problem[0], "%s credentials_ok false without a problem", t.ops->name);
        for (size_t k = 0; t.ops->unsupported_hint && tool_table[k]; k++) {
            const char *hint = t.ops->unsupported_hint(tool_table[k]->name);
            if (hint)
                (void)strlen(hint);
        }
        if (t.ops->stream_spec) {
            check_spec(&t, PROV_STREAM_EVENTS, "dep_0123");
            check_spec(&t, PROV_STREAM_EVENTS, "changeset:cs_0123");
            check_spec(&t, PROV_STREAM_LOGS, "dep_0123");
            if (!t.ops->logs_need_deployment)
                check_spec(&t, PROV_STREAM_LOGS, NULL);
        }
        if (t.ops->stream_state_new) {
            void *st = t.ops->stream_state_new(&t, PROV_STREAM_EVENTS);
            if (st && t.ops->stream_state_free)
                t.ops->stream_state_free(st);
        }
        if (t.ops->unconfigure)
            t.ops->unconfigure(&t);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fz_dup(data, size, 0);
    char err[1024];
    memset(err, 'x', sizeof err);
    cfg *c = (cfg *)0x1;
    int rc = cfg_parse(text, size, PATH, prov_known, &c, err, sizeof err);
    FUZZ_CHECK(rc == 0 || rc == -1, "cfg_parse returned %d", rc);
    FUZZ_CHECK(memchr(err, '\0', sizeof err), "message not NUL-terminated");
    if (verbose)
        fprintf(stderr, "cfg_parse: %d %s\n", rc, rc == 0 ? "" : err);
    if (rc == 0) {
        FUZZ_CHECK(c != NULL, "success without a cfg");
        FUZZ_CHECK(err[0] == '\0', "success with a message: %s", err);
    } else {
        FUZZ_CHECK(c == NULL, "failure left *out set");
        FUZZ_CHECK(strncmp(err, PREFIX, strlen(PREFIX)) == 0 && err[strlen(PREFIX)],
                   "message does not name the file: %s", err);
        if (is_syntax_error(text, size))
            FUZZ_CHECK(!strstr(err, " near '"), "syntax error message quotes the file: %s", err);
    }

    /* Again with a small buffer: the same answer, the message truncated. */
    size_t small = size ? data[size - 1] % 48 + 1 : 1;
    char *tiny = fz_dup("", small, 0);
    cfg *c2 = NULL;
    int rc2 = cfg_parse(text, size, PATH, prov_known, &c2, tiny, small);
    FUZZ_CHECK(rc2 == rc, "cfg_parse answered %d, then %d", rc, rc2);
    FUZZ_CHECK(memchr(tiny, '\0', small), "small message buffer not NUL-terminated");
    FUZZ_CHECK(strncmp(tiny, err, strlen(tiny)) == 0, "small-buffer message is not a prefix");
    free(tiny);
    cfg_free(c2);

    if (rc == 0) {
        check_cfg(c);
        check_pick(c);
        exercise_targets(c);
        cfg_free(c);
    }
    free(text);
    return 0;
}

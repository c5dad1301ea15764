/* create_preview.c — creates a preview deployment, idempotently, and with
 * `wait` follows it live like stream_events.
 *
 * Idempotency (PRODUCT.md §3): every call has a key, the caller's or one
 * derived from the arguments (tools/idempotency.h). Platforms that honour
 * Idempotency-Key themselves (Showly) always get the call, with the key; for
 * the others this file remembers which deployment a key created and answers
 * a repeat with it, without a second upload or create. Two identical calls in
 * flight at once share the first one's outcome. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcp/config.h"
#include "tools/idempotency.h"
#include "tools/tool_internal.h"

typedef struct cp_call {
    mcp_request *req;
    prov_target *t;
    json_t *args;               /* own copy: prov_create_args point into it */
    char *artifact;             /* resolved path, or NULL */
    char key[IDEM_KEY_MAX + 1];
    unsigned char fp[IDEM_FP_LEN];
    bool wait;
    unsigned max_seconds;
    bool creator;               /* owns a pending idempotency record */
    bool reused;                /* answered from an earlier call's deployment */
    prov_op *op;                /* the create */
    idem_waiter *waiter;
    watch *w;
    json_t *deployment;
} cp_call;

static void cp_free(cp_call *c)
{
    json_decref(c->args);
    json_decref(c->deployment);
    free(c->artifact);
    free(c);
}

/* ---- artifact ----------------------------------------------------------- */

/* Resolves `artifact` (relative paths against the target's artifactRoot,
 * which defaults to the working directory), following symlinks, and refuses
 * anything outside the root: an agent must not be able to upload arbitrary
 * files. Returns the malloc'd real path, or NULL with an isError result in
 * *fail. */
static char *resolve_artifact(const prov_target *t, const char *artifact, json_t **fail)
{
    const char *root = cfg_str(t->cfg, "artifactRoot", NULL);
    char *root_real = realpath(root ? root : ".", NULL);
    if (!root_real) {
        *fail = tool_error_simple(t->cfg->provider, "invalid_config",
                                  "artifactRoot \"%s\" of target \"%s\" cannot be used (%s); "
                                  "fix the config file",
                                  root ? root : ".", t->cfg->name, strerror(errno));
        return NULL;
    }
    char *joined = NULL;
    if (artifact[0] == '/') {
        joined = strdup(artifact);
    } else {
        size_t n = strlen(root_real) + strlen(artifact) + 2;
        joined = malloc(n);
        if (joined)
            snprintf(joined, n, "%s/%s", root_real, artifact);
    }
    if (!joined) {
        free(root_real);
        *fail = tool_error_simple(NULL, "internal_error", "out of memory");
        return NULL;
    }
    char *real = realpath(joined, NULL);
    if (!real) {
        int e = errno;
        *fail = tool_error_simple(t->cfg->provider, "artifact_not_found",
                                  "artifact \"%s\" cannot be read (%s; resolved to %s). Pass "
                                  "the path of the built zip or directory, relative to %s or "
                                  "absolute inside it",
                                  artifact, strerror(e), joined, root_real);
        free(joined);
        free(root_real);
        return NULL;
    }
    free(joined);
    size_t rl = strlen(root_real);
    bool inside = (rl == 1 && root_real[0] == '/') ||
                  (strncmp(real, root_real, rl) == 0 && (real[rl] == '/' || real[rl] == '\0'));
    if (!inside) {
        *fail = tool_error_simple(t->cfg->provider, "artifact_outside_root",
                                  "artifact \"%s\" resolves to %s, outside the target's "
                                  "artifactRoot %s; only files under it can be deployed. "
                                  "Build into that directory, or ask the operator to set "
                                  "artifactRoot for target \"%s\"",
                                  artifact, real, root_real, t->cfg->name);
        free(real);
        free(root_real);
        return NULL;
    }
    free(root_real);
    return real;
}

/* ---- answering ---------------------------------------------------------- */

static void finish(cp_call *c, json_t *stream, const prov_error *stream_err)
{
    json_t *sc = json_object();
    if (!sc) {
        json_decref(stream);
        tool_finish_oom(c->req);
        cp_free(c);
        return;
    }
    json_object_set(sc, "deployment", c->deployment ? c->deployment : json_null());
    json_object_set_new(sc, "idempotencyKey", json_string(c->key));
    if (c->reused)
        json_object_set_new(sc, "reused", json_true());
    if (stream)
        json_object_set_new(sc, "stream", stream);
    if (stream_err)
        json_object_set_new(sc, "streamError",
                            json_pack("{s:s, s:s, s:b}", "code", stream_err->code, "message",
                                      stream_err->message, "retryable", stream_err->retryable));
    if (c->reused)
        json_object_set_new(
            sc, "note",
            json_string("An earlier create_preview with the same idempotency key created "
                        "this deployment, so no new one was created; its status is as of "
                        "then (get_deployment or stream_events show the current one). Change "
                        "an argument or pass a new idempotencyKey to deploy again."));
    mcp_req_finish(c->req, tool_result(sc));
    cp_free(c);
}

static void on_followed(void *ud, const watch_end *end)
{
    cp_call *c = ud;
    c->w = NULL;
    relay_update_deployment(end->relay, c->deployment);
    finish(c, tool_events_summary(end), end->err);
}

static void have_deployment(cp_call *c)
{
    tool_fill_origin(c->deployment, c->t);
    if (!c->wait) {
        finish(c, NULL, NULL);
        return;
    }
    const char *id = json_string_value(json_object_get(c->deployment, "id"));
    prov_error err;
    memset(&err, 0, sizeof err);
    if (!(c->t->ops->caps & PROV_CAP_STREAM_EVENTS)) {
        prov_error_set(&err, "unsupported", 0, false,
                       "%s has no event stream to wait on; check the deployment with "
                       "get_deployment", c->t->ops->display_name);
        finish(c, NULL, &err);
        return;
    }
    if (!id) {
        prov_error_set(&err, "internal_error", 0, false,
                       "the platform's answer carried no deployment id to follow");
        finish(c, NULL, &err);
        return;
    }
    c->w = tool_follow_events(c->req, c->t, id, NULL, c->max_seconds, true, on_followed, c,
                              &err);
    if (!c->w) {
        finish(c, NULL, &err);
        return;
    }
    /* Until the stream says otherwise, the status is what creation said. */
    relay_apply_deployment(watch_relay(c->w), c->deployment);
}

static void on_created(void *ud, json_t *result, const prov_error *err)
{
    cp_call *c = ud;
    c->op = NULL;
    if (c->creator) {
        c->creator = false;
        idem_resolve(c->t->cfg->name, c->key, err ? NULL : result, err);
    }
    if (err) {
        tool_finish_prov_error(c->req, c->t, err);
        cp_free(c);
        return;
    }
    c->deployment = result;
    have_deployment(c);
}

static void on_waited(void *ud, json_t *deployment, const prov_error *err)
{
    cp_call *c = ud;
    c->waiter = NULL;
    if (err) {
        tool_finish_prov_error(c->req, c->t, err);
        cp_free(c);
        return;
    }
    c->deployment = deployment;
    c->reused = true;
    have_deployment(c);
}

static void start_create(cp_call *c)
{
    prov_create_args a = {
        .branch = tool_arg_str(c->args, "branch"),
        .commit_sha = tool_arg_str(c->args, "commitSha"),
        .artifact = c->artifact,
        .message = tool_arg_str(c->args, "message"),
        .idempotency_key = c->key,
    };
    prov_error err;
    memset(&err, 0, sizeof err);
    c->op = c->t->ops->create_preview(c->t, &a, on_created, c, &err);
    if (c->op)
        return;
    if (c->creator) {
        c->creator = false;
        idem_resolve(c->t->cfg->name, c->key, NULL, &err);
    }
    tool_finish_prov_error(c->req, c->t, &err);
    cp_free(c);
}

static void cp_cancel(void *ud)
{
    cp_call *c = ud;
    if (c->op)
        prov_op_cancel(c->op);
    if (c->creator) {
        /* Calls waiting on this one must not hang: they get an answer they
         * can act on. Whether the platform created something is unknown. */
        prov_error e;
        prov_error_set(&e, "request_canceled", 0, true,
                       "an identical create_preview call that this one was joined to was "
                       "cancelled before the platform answered; call create_preview again");
        idem_resolve(c->t->cfg->name, c->key, NULL, &e);
    }
    idem_waiter_cancel(c->waiter);
    watch_cancel(c->w);
    cp_free(c);
}

static void create_preview_call(mcp_request *req, prov_target *t, json_t *args)
{
    const char *caller_key = tool_arg_str(args, "idempotencyKey");
    if (caller_key && !idem_key_valid(caller_key)) {
        mcp_req_finish(req, tool_error_simple(NULL, "invalid_arguments",
                                              "argument \"idempotencyKey\" must be 1 to %d "
                                              "visible ASCII characters (no spaces or control "
                                              "characters)", IDEM_KEY_MAX));
        return;
    }
    cp_call *c = calloc(1, sizeof *c);
    if (!c || !(c->args = json_deep_copy(args))) {
        free(c);
        tool_finish_oom(req);
        return;
    }
    c->req = req;
    c->t = t;
    c->wait = tool_arg_bool(args, "wait", false);
    c->max_seconds = (unsigned)tool_arg_int(args, "maxSeconds", TOOL_STREAM_DEFAULT_SECONDS);
    const char *artifact = tool_arg_str(args, "artifact");
    if (artifact) {
        json_t *fail = NULL;
        c->artifact = resolve_artifact(t, artifact, &fail);
        if (!c->artifact) {
            mcp_req_finish(req, fail);
            cp_free(c);
            return;
        }
    }
    idem_fields f = {
        .target = t->cfg->name,
        .branch = tool_arg_str(args, "branch"),
        .commit_sha = tool_arg_str(args, "commitSha"),
        .artifact = c->artifact,
        .message = tool_arg_str(args, "message"),
    };
    idem_fingerprint(&f, c->fp);
    if (idem_choose_key(caller_key, c->fp, c->key) != 0) {
        mcp_req_finish(req, tool_error_simple(NULL, "internal_error",
                                              "could not derive an idempotency key (no "
                                              "randomness available); pass idempotencyKey"));
        cp_free(c);
        return;
    }
    mcp_req_on_cancel(req, cp_cancel, c);
    if (t->ops->native_idempotency) {
        start_create(c);
        return;
    }
    json_t *dep = NULL;
    switch (idem_claim(t->cfg->name, c->key, c->fp, &dep, on_waited, c, &c->waiter)) {
    case IDEM_CLAIM_NEW:
        c->creator = true;
        start_create(c);
        return;
    case IDEM_CLAIM_DONE:
        /* No second create, and no other provider call either: the caller
         * asked for the same thing again and gets the same answer. */
        c->deployment = dep;
        c->reused = true;
        have_deployment(c);
        return;
    case IDEM_CLAIM_PENDING:
        return;   /* on_waited answers */
    case IDEM_CLAIM_CONFLICT:
        mcp_req_finish(req, tool_error_simple(
                                t->cfg->provider, "idempotency_conflict",
                                "idempotencyKey \"%s\" was already used on target \"%s\" with "
                                "different arguments; use a new key (or omit it) to create a "
                                "different deployment",
                                c->key, t->cfg->name));
        cp_free(c);
        return;
    case IDEM_CLAIM_ERROR:
    default:
        tool_finish_oom(req);
        cp_free(c);
        return;
    }
}

const tool_def tool_def_create_preview = {
    .name = "create_preview",
    .title = "Create a preview deployment",
    .description =
        "Create a preview (non-production) deployment on a target and return {deployment, "
        "idempotencyKey}. What to pass depends on the platform: Showly builds a `branch` / "
        "`commitSha`; BigCommerce and Mixpeek deploy a built bundle, `artifact` (path of a "
        "zip or directory inside the target's artifactRoot; relative paths are resolved "
        "against it); Bluelink stages a change set of its configured blueprint (the id is "
        "prefixed `changeset:`). `message` describes the deployment. Creation is idempotent: "
        "an identical call repeated within 15 minutes reuses the same idempotency key and "
        "returns the same deployment instead of creating a second one (`reused: true` when "
        "deploy-mcp answered from its own memory); pass your own `idempotencyKey` to control "
        "this, or change an argument to deploy again. With `wait: true` the build is "
        "followed live exactly like stream_events (progress and log notifications) until it "
        "finishes or `maxSeconds` pass (default 300), the returned deployment carries the "
        "latest status and url, and `stream` holds the stream_events summary (call "
        "stream_events with its cursor to keep following). Nothing here touches production: "
        "use request_publish for that.",
    .input_schema =
        "{\"type\":\"object\",\"properties\":{"
        "\"branch\":{\"type\":\"string\",\"minLength\":1,\"description\":\"Branch to build "
        "(Showly).\"},"
        "\"commitSha\":{\"type\":\"string\",\"minLength\":1,\"description\":\"Commit to build "
        "(Showly).\"},"
        "\"artifact\":{\"type\":\"string\",\"minLength\":1,\"description\":\"Path of a zip or "
        "directory to upload (BigCommerce, Mixpeek); must be inside the target's "
        "artifactRoot.\"},"
        "\"message\":{\"type\":\"string\",\"description\":\"What this "
        "deployment is.\"},"
        "\"idempotencyKey\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":255,"
        "\"pattern\":\"^[!-~]+$\",\"description\":\"Your own idempotency key (visible ASCII). "
        "Default: derived from the arguments, stable for 15 minutes.\"},"
        "\"wait\":{\"type\":\"boolean\",\"default\":false,\"description\":\"Follow the build "
        "live until it finishes or maxSeconds pass.\"},"
        "\"maxSeconds\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":3600,\"default\":300,"
        "\"description\":\"With wait: how long to follow (whole seconds).\"},"
        TOOL_SCHEMA_TARGET "},\"additionalProperties\":false}",
    .output_schema = TOOL_OUTPUT_SCHEMA(
        "\"deployment\":" TOOL_SCHEMA_DEPLOYMENT ","
        "\"idempotencyKey\":{\"type\":\"string\"},"
        "\"reused\":{\"type\":\"boolean\",\"description\":\"true when an earlier identical "
        "call's deployment was returned.\"},"
        "\"stream\":" TOOL_SCHEMA_STREAM_SUMMARY ","
        "\"streamError\":{\"type\":\"object\",\"description\":\"Following the build failed "
        "(the deployment itself was created).\",\"properties\":{\"code\":{\"type\":\"string\"},"
        "\"message\":{\"type\":\"string\"},\"retryable\":{\"type\":\"boolean\"}},"
        "\"additionalProperties\":true},"
        "\"note\":{\"type\":\"string\"}",
        "\"deployment\",\"idempotencyKey\""),
    .read_only = false,
    .destructive = false,
    .idempotent = true,
    .open_world = true,
    .cap = PROV_CAP_CREATE_PREVIEW,
    .call = create_preview_call,
};

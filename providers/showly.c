/* showly.c — the Showly adapter (PROVIDERS.md, "Showly").
 *
 * Showly builds from git (branch / commitSha), de-duplicates creates by
 * Idempotency-Key itself, issues its own production approval requests (a
 * token client can never complete a production publish), and streams one
 * SSE event per state transition and log batch, closing at a terminal
 * status. Whether it sends ids is undocumented: we use them when present
 * (Last-Event-ID) and skip replayed events by position otherwise. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcp/log.h"
#include "providers/provider.h"
#include "providers/showly.h"
#include "providers/utf8.h"

#define SHOWLY_DEFAULT_BASE "https://api.showly.ai"
#define SHOWLY_DEFAULT_TOKEN_ENV "SHOWLY_TOKEN"
#define SHOWLY_TIMEOUT_MS 30000
#define SHOWLY_RETRIES 3
#define SHOWLY_MAX_LINES_PER_EVENT 100000

typedef struct showly_cfg {
    const char *base;          /* no trailing slash */
    const char *site_id;
    const char *token_env;
    const char *approval_tpl;  /* approvalUrlTemplate or NULL */
    const char *ca_file;
} showly_cfg;

static showly_cfg *cfg_of(const prov_target *t) { return t->priv; }

/* ---- configuration ------------------------------------------------------ */

static int showly_configure(prov_target *t, char *err, size_t errlen)
{
    showly_cfg *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    c->base = cfg_str(t->cfg, "baseUrl", SHOWLY_DEFAULT_BASE);
    c->site_id = cfg_str(t->cfg, "siteId", NULL);
    c->token_env = cfg_str(t->cfg, "tokenEnv", SHOWLY_DEFAULT_TOKEN_ENV);
    c->approval_tpl = cfg_str(t->cfg, "approvalUrlTemplate", NULL);
    c->ca_file = cfg_str(t->cfg, "caFile", NULL);
    t->priv = c;
    if (!c->site_id || !*c->site_id) {
        snprintf(err, errlen, "field \"siteId\": required for provider showly (a string such "
                              "as \"site_01HZX\")");
        return -1;
    }
    if (c->approval_tpl && !strstr(c->approval_tpl, "{requestId}")) {
        snprintf(err, errlen, "field \"approvalUrlTemplate\": must contain {requestId}");
        return -1;
    }
    return 0;
}

static void showly_unconfigure(prov_target *t)
{
    free(t->priv);
    t->priv = NULL;
}

static bool showly_credentials_ok(const prov_target *t, char *problem, size_t n)
{
    if (prov_secret(cfg_of(t)->token_env))
        return true;
    snprintf(problem, n, "environment variable %s is not set: export your Showly API token "
                         "in it (tokens look like sk_live_...)", cfg_of(t)->token_env);
    return false;
}

static const char *showly_unsupported_hint(const char *tool)
{
    (void)tool;
    return "Showly supports every deploy-mcp tool";
}

/* ---- requests ----------------------------------------------------------- */

typedef struct showly_headers {
    char auth[PROV_HEADER_MAX];
    char idem[PROV_HEADER_MAX];
    const char *list[6];
} showly_headers;

static int build_headers(const prov_target *t, showly_headers *h, const char *idem_key,
                         bool json_body, prov_error *err)
{
    const char *token = prov_secret(cfg_of(t)->token_env);
    if (!token) {
        prov_error_set(err, "missing_credentials", 0, false,
                       "environment variable %s is not set: export your Showly API token in it",
                       cfg_of(t)->token_env);
        return -1;
    }
    if ((size_t)snprintf(h->auth, sizeof h->auth, "Authorization: Bearer %s", token) >=
        sizeof h->auth) {
        prov_error_set(err, "invalid_credentials", 0, false, "the Showly token in %s is too long",
                       cfg_of(t)->token_env);
        return -1;
    }
    int n = 0;
    h->list[n++] = h->auth;
    h->list[n++] = "Accept: application/json";
    if (json_body)
        h->list[n++] = "Content-Type: application/json";
    if (idem_key) {
        snprintf(h->idem, sizeof h->idem, "Idempotency-Key: %s", idem_key);
        h->list[n++] = h->idem;
    }
    h->list[n] = NULL;
    return 0;
}

/* Maps a Showly error answer (or a transport failure) to a prov_error. */
static void map_error(const prov_target *t, const http_response *res, prov_error *e)
{
    if (res->status == 0) {
        prov_network_error(e, t, res);
        return;
    }
    json_t *j = prov_json_parse(res->body, res->body_len);
    json_t *err = json_object_get(j, "error");
    const char *code = json_string_value(json_object_get(err, "code"));
    const char *msg = json_string_value(json_object_get(err, "message"));
    if (!code)
        code = res->status == 401 ? "unauthorized"
             : res->status == 404 ? "not_found"
             : res->status == 429 ? "rate_limited"
             : res->status >= 500 ? "upstream_error" : "http_error";
    char detail[512];
    snprintf(detail, sizeof detail, "%s", msg ? msg : "no details given");
    bool retry_after = http_header(res->req, "Retry-After") != NULL;
    if (strcmp(code, "build_quota_exceeded") == 0) {
        prov_error_set(e, code, res->status, false,
                       "Showly refused the build: the site's build quota is exhausted (%s). "
                       "Waiting will not clear it: raise the plan's quota or free capacity in "
                       "the Showly dashboard, then try again.", detail);
    } else if (res->status == 401) {
        prov_error_set(e, code, res->status, false,
                       "Showly rejected the API token (%s): check the token in %s", detail,
                       cfg_of(t)->token_env);
    } else if (strcmp(code, "deployment_not_found") == 0 || res->status == 404) {
        prov_error_set(e, code, res->status, false,
                       "Showly has no such deployment or site (%s): check the id with "
                       "list_deployments", detail);
    } else if (strcmp(code, "idempotency_conflict") == 0) {
        prov_error_set(e, code, res->status, false,
                       "this idempotencyKey was already used with different arguments (%s): "
                       "use a new key, or repeat the original arguments", detail);
    } else {
        bool retryable = res->status >= 500 || res->status == 408 ||
                         (res->status == 429 && retry_after);
        prov_error_set(e, code, res->status, retryable, "Showly answered HTTP %ld %s: %s",
                       res->status, code, detail);
    }
    json_decref(j);
}

static void showly_map_http_error(prov_target *t, const http_response *res, prov_error *e)
{
    map_error(t, res, e);
}

static json_t *ok_data(const http_response *res, json_t **root)
{
    *root = prov_json_parse(res->body, res->body_len);
    if (!json_is_true(json_object_get(*root, "ok")))
        return NULL;
    return json_object_get(*root, "data");
}

static json_t *to_deployment(const prov_target *t, json_t *d)
{
    const char *word = json_string_value(json_object_get(d, "status"));
    json_t *dep = prov_deployment(t, json_string_value(json_object_get(d, "id")),
                                  json_string_value(json_object_get(d, "environment")),
                                  prov_status_parse(word), word,
                                  json_string_value(json_object_get(d, "previewUrl")),
                                  json_string_value(json_object_get(d, "createdAt")));
    json_t *err = json_object_get(d, "error");
    if (dep && json_is_object(err)) {
        const char *code = json_string_value(json_object_get(err, "code"));
        const char *msg = json_string_value(json_object_get(err, "message"));
        json_object_set_new(dep, "error", json_pack("{s:s, s:s}", "code", code ? code : "error",
                                                    "message", msg ? msg : ""));
    }
    return dep;
}

/* Completes an op whose answer is one Deployment. */
static void step_deployment(prov_op *op, const http_response *res)
{
    prov_target *t = prov_op_target(op);
    prov_error e;
    if (res->status < 200 || res->status >= 300) {
        map_error(t, res, &e);
        prov_op_fail(op, &e);
        return;
    }
    json_t *root;
    json_t *d = ok_data(res, &root);
    json_t *dep = json_is_object(d) ? to_deployment(t, d) : NULL;
    json_decref(root);
    if (!dep) {
        prov_error_set(&e, "bad_response", res->status, true,
                       "Showly answered with a body that is not a deployment");
        prov_op_fail(op, &e);
        return;
    }
    prov_op_succeed(op, dep);
}

static prov_op *start(prov_target *t, const char *method, const char *url, const char *body,
                      const char *idem, prov_op_step_fn step, prov_result_cb cb, void *ud,
                      prov_error *err)
{
    showly_headers h;
    if (build_headers(t, &h, idem, body != NULL, err) != 0)
        return NULL;
    prov_op *op = prov_op_new(t, cb, ud, NULL, NULL);
    http_opts o = {
        .method = method, .url = url, .headers = h.list, .body = body,
        .body_len = body ? strlen(body) : 0, .timeout_ms = SHOWLY_TIMEOUT_MS,
        /* GETs are idempotent; POSTs carry an Idempotency-Key, so retrying
         * them with the same key is safe too. */
        .idempotent = true, .max_retries = SHOWLY_RETRIES, .ca_file = cfg_of(t)->ca_file,
    };
    if (!op || prov_op_http(op, &o, step) != 0) {
        prov_op_cancel(op);
        prov_error_set(err, "internal_error", 0, true, "could not start the request to Showly");
        return NULL;
    }
    return op;
}

static int site_url(const prov_target *t, char *url, size_t n, const char *suffix,
                    prov_error *err)
{
    char site[512];
    if (prov_escape(site, sizeof site, cfg_of(t)->site_id) != 0 ||
        (size_t)snprintf(url, n, "%s/sites/%s%s", cfg_of(t)->base, site, suffix) >= n) {
        prov_error_set(err, "invalid_config", 0, false, "the Showly siteId is too long");
        return -1;
    }
    return 0;
}

static int deployment_url(const prov_target *t, char *url, size_t n, const char *id,
                          const char *suffix, prov_error *err)
{
    char esc[512];
    if (!id || !*id || prov_escape(esc, sizeof esc, id) != 0 ||
        (size_t)snprintf(url, n, "%s/deployments/%s%s", cfg_of(t)->base, esc, suffix) >= n) {
        prov_error_set(err, "invalid_arguments", 0, false,
                       "deploymentId must be a non-empty Showly deployment id (dep_...)");
        return -1;
    }
    return 0;
}

/* ---- operations --------------------------------------------------------- */

static prov_op *showly_create_preview(prov_target *t, const prov_create_args *a,
                                      prov_result_cb cb, void *ud, prov_error *err)
{
    if (a->artifact) {
        prov_error_set(err, "unsupported_argument", 0, false,
                       "Showly builds from git and does not take an artifact: pass branch "
                       "and/or commitSha instead");
        return NULL;
    }
    char url[PROV_URL_MAX];
    if (site_url(t, url, sizeof url, "/deploy", err) != 0)
        return NULL;
    json_t *body = json_pack("{s:s}", "environment", "preview");
    if (a->commit_sha)
        json_object_set_new(body, "commitSha", json_string(a->commit_sha));
    if (a->branch)
        json_object_set_new(body, "branch", json_string(a->branch));
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    prov_op *op = text ? start(t, "POST", url, text, a->idempotency_key, step_deployment, cb, ud,
                               err)
                       : NULL;
    if (!text)
        prov_error_set(err, "internal_error", 0, true, "out of memory");
    free(text);
    return op;
}

typedef struct publish_state {
    char *source_id;
} publish_state;

static void publish_state_free(void *p)
{
    publish_state *st = p;
    if (st)
        free(st->source_id);
    free(st);
}

/* Finds requestId / webApprovalUrl in an object, or in its "details". */
static void find_request(json_t *obj, const char **rid, const char **url)
{
    for (int depth = 0; json_is_object(obj) && depth < 2; depth++) {
        if (!*rid)
            *rid = json_string_value(json_object_get(obj, "requestId"));
        if (!*rid)
            *rid = json_string_value(json_object_get(obj, "approvalRequestId"));
        if (!*url)
            *url = json_string_value(json_object_get(obj, "webApprovalUrl"));
        if (!*url)
            *url = json_string_value(json_object_get(obj, "approvalUrl"));
        obj = json_object_get(obj, "details");
    }
}

static void step_publish(prov_op *op, const http_response *res)
{
    prov_target *t = prov_op_target(op);
    publish_state *st = prov_op_state(op);
    prov_error e;
    json_t *root = prov_json_parse(res->body, res->body_len);
    const char *rid = NULL, *url = NULL;
    if (res->status >= 200 && res->status < 300)
        find_request(json_object_get(root, "data"), &rid, &url);
    else if (res->status == 428)
        find_request(json_object_get(root, "error"), &rid, &url);
    if (!rid && !url) {
        if (res->status >= 200 && res->status < 300)
            prov_error_set(&e, "bad_response", res->status, false,
                           "Showly accepted the publish request but returned no approval "
                           "request; open the Showly dashboard to approve it");
        else
            map_error(t, res, &e);
        json_decref(root);
        prov_op_fail(op, &e);
        return;
    }
    char built[PROV_URL_MAX];
    if (!url && cfg_of(t)->approval_tpl) {
        /* The response carried only the id: build the deep link. */
        const char *tpl = cfg_of(t)->approval_tpl, *at = strstr(tpl, "{requestId}");
        snprintf(built, sizeof built, "%.*s%s%s", (int)(at - tpl), tpl, rid, at + 11);
        url = built;
    }
    if (!url) {
        json_decref(root);
        prov_error_set(&e, "approval_url_unknown", res->status, false,
                       "Showly created approval request %s but returned no URL for it: set "
                       "approvalUrlTemplate (e.g. \"https://app.showly.ai/approvals/{requestId}\") "
                       "on the target, or approve it in the Showly dashboard", rid);
        prov_op_fail(op, &e);
        return;
    }
    json_t *req = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "id", rid ? rid : "",
                            "status", "pending_approval", "webApprovalUrl", url,
                            "sourceDeploymentId", st->source_id, "target", t->cfg->name,
                            "provider", t->ops->name);
    json_decref(root);
    prov_op_succeed(op, json_pack("{s:o}", "request", req));
}

static prov_op *showly_request_publish(prov_target *t, const char *source_id, const char *notes,
                                       prov_result_cb cb, void *ud, prov_error *err)
{
    char url[PROV_URL_MAX];
    if (site_url(t, url, sizeof url, "/deploy", err) != 0)
        return NULL;
    json_t *body = json_pack("{s:s, s:s}", "environment", "production",
                             "sourceDeploymentId", source_id);
    if (notes)
        json_object_set_new(body, "notes", json_string(notes));
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    /* One key per publish request; internal retries reuse it. */
    char uuid[PROV_UUID_LEN + 1];
    prov_uuid4(uuid);
    publish_state *st = calloc(1, sizeof *st);
    if (!text || !st || !(st->source_id = strdup(source_id))) {
        free(text);
        publish_state_free(st);
        prov_error_set(err, "internal_error", 0, true, "out of memory");
        return NULL;
    }
    showly_headers h;
    if (build_headers(t, &h, uuid, true, err) != 0) {
        free(text);
        publish_state_free(st);
        return NULL;
    }
    prov_op *op = prov_op_new(t, cb, ud, st, publish_state_free);
    http_opts o = {
        .method = "POST", .url = url, .headers = h.list, .body = text, .body_len = strlen(text),
        .timeout_ms = SHOWLY_TIMEOUT_MS, .idempotent = true, .max_retries = SHOWLY_RETRIES,
        .ca_file = cfg_of(t)->ca_file,
    };
    int rc = op ? prov_op_http(op, &o, step_publish) : -1; /* copies the body */
    free(text);
    if (rc != 0) {
        prov_op_cancel(op);
        prov_error_set(err, "internal_error", 0, true, "could not start the request to Showly");
        return NULL;
    }
    return op;
}

static prov_op *showly_get_deployment(prov_target *t, const char *id, prov_result_cb cb,
                                      void *ud, prov_error *err)
{
    char url[PROV_URL_MAX];
    if (deployment_url(t, url, sizeof url, id, "", err) != 0)
        return NULL;
    return start(t, "GET", url, NULL, NULL, step_deployment, cb, ud, err);
}

static void step_list(prov_op *op, const http_response *res)
{
    prov_target *t = prov_op_target(op);
    prov_error e;
    if (res->status < 200 || res->status >= 300) {
        map_error(t, res, &e);
        prov_op_fail(op, &e);
        return;
    }
    json_t *root;
    json_t *d = ok_data(res, &root);
    json_t *items = json_object_get(d, "items");
    if (!json_is_array(items)) {
        json_decref(root);
        prov_error_set(&e, "bad_response", res->status, true,
                       "Showly answered the list with a body that has no items");
        prov_op_fail(op, &e);
        return;
    }
    json_t *out = json_array();
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it)
        if (json_is_object(it))
            json_array_append_new(out, to_deployment(t, it));
    json_t *result = json_pack("{s:o}", "deployments", out);
    json_t *page = json_object_get(d, "pageInfo");
    const char *next = json_string_value(json_object_get(page, "nextCursor"));
    if (next && *next && !json_is_false(json_object_get(page, "hasMore")))
        json_object_set_new(result, "nextCursor", json_string(next));
    json_decref(root);
    prov_op_succeed(op, result);
}

/* Appends "&name=value" (value percent-encoded) to url. */
static int add_query(char *url, size_t n, const char *name, const char *value)
{
    if (!value || !*value)
        return 0;
    char esc[1024];
    size_t len = strlen(url);
    if (prov_escape(esc, sizeof esc, value) != 0 ||
        (size_t)snprintf(url + len, n - len, "%c%s=%s", strchr(url, '?') ? '&' : '?', name,
                         esc) >= n - len)
        return -1;
    return 0;
}

static prov_op *showly_list_deployments(prov_target *t, const prov_list_args *a,
                                        prov_result_cb cb, void *ud, prov_error *err)
{
    char url[PROV_URL_MAX], limit[16];
    snprintf(url, sizeof url, "%s/deployments", cfg_of(t)->base);
    snprintf(limit, sizeof limit, "%d", a->limit > 0 ? a->limit : 20);
    if (add_query(url, sizeof url, "siteId", cfg_of(t)->site_id) != 0 ||
        add_query(url, sizeof url, "environment", a->environment) != 0 ||
        add_query(url, sizeof url, "status", a->status) != 0 ||
        add_query(url, sizeof url, "limit", limit) != 0 ||
        add_query(url, sizeof url, "cursor", a->cursor) != 0) {
        prov_error_set(err, "invalid_arguments", 0, false, "the list cursor is too long");
        return NULL;
    }
    return start(t, "GET", url, NULL, NULL, step_list, cb, ud, err);
}

/* ---- streams ------------------------------------------------------------ */

static int showly_stream_spec(prov_target *t, enum prov_stream_kind kind, const char *id,
                              prov_stream_spec *spec, prov_error *err)
{
    (void)kind; /* build logs travel on the events stream */
    prov_stream_spec_init(spec);
    if (deployment_url(t, spec->url, sizeof spec->url, id, "/events", err) != 0)
        return -1;
    showly_headers h;
    if (build_headers(t, &h, NULL, false, err) != 0)
        return -1;
    snprintf(spec->headers[0], sizeof spec->headers[0], "%s", h.auth);
    spec->nheaders = 1;
    spec->resume = PROV_RESUME_LAST_EVENT_ID;
    spec->reconnect = true;
    spec->ca_file = cfg_of(t)->ca_file;
    return 0;
}

/* ---- events ------------------------------------------------------------- */

/* A status event: {"status", "previewUrl"?, "error"?: {"code", "message"}}.
 * has_error: "error" is an object (code / message are its string members,
 * or NULL). */
static int emit_status_fields(const char *word, const char *url, bool has_error,
                              const char *code, const char *msg, prov_emit_fn emit, void *sink)
{
    prov_status st = prov_status_parse(word);
    prov_error failure = {0};
    prov_event ev = {.kind = PROV_EV_STATUS, .status = st, .provider_status = word,
                     .url = url, .progress = -1, .total = -1};
    if (has_error) {
        prov_error_set(&failure, code ? code : "build_failed", 0, false, "%s",
                       msg ? msg : "the build failed");
        ev.error = &failure;
    } else if (st == PROV_ST_FAILED) {
        prov_error_set(&failure, "build_failed", 0, false, "the Showly build failed");
        ev.error = &failure;
    }
    emit(sink, &ev);
    return prov_status_terminal(st) ? PROV_PARSE_END : PROV_PARSE_CONTINUE;
}

static int emit_status(json_t *d, prov_emit_fn emit, void *sink)
{
    json_t *err = json_object_get(d, "error");
    return emit_status_fields(json_string_value(json_object_get(d, "status")),
                              json_string_value(json_object_get(d, "previewUrl")),
                              json_is_object(err),
                              json_string_value(json_object_get(err, "code")),
                              json_string_value(json_object_get(err, "message")), emit, sink);
}

static int emit_logs(json_t *d, prov_emit_fn emit, void *sink)
{
    json_t *lines = json_object_get(d, "lines");
    const char *source = json_string_value(json_object_get(d, "stream"));
    const char *level = json_string_value(json_object_get(d, "level"));
    size_t n = json_array_size(lines);
    if (n == 0)
        return PROV_PARSE_IGNORED;
    if (n > SHOWLY_MAX_LINES_PER_EVENT)
        n = SHOWLY_MAX_LINES_PER_EVENT;
    prov_log_line *out = calloc(n, sizeof *out);
    if (!out)
        return PROV_PARSE_IGNORED;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *l = json_array_get(lines, i);
        /* Lines are strings; tolerate {text, level, ts} objects too. */
        json_t *text = json_is_object(l) ? json_object_get(l, "text") : l;
        if (!json_is_string(text))
            continue;
        out[k].text = json_string_value(text);
        out[k].len = json_string_length(text);
        out[k].level = level ? level : "info";
        if (json_is_object(l)) {
            const char *lv = json_string_value(json_object_get(l, "level"));
            if (lv)
                out[k].level = lv;
            out[k].ts = json_string_value(json_object_get(l, "ts"));
        }
        out[k].source = source;
        k++;
    }
    if (k > 0) {
        prov_event ev = {.kind = PROV_EV_LOG, .status = PROV_ST_UNKNOWN, .progress = -1,
                         .total = -1, .lines = out, .nlines = k};
        emit(sink, &ev);
    }
    free(out);
    return k > 0 ? PROV_PARSE_CONTINUE : PROV_PARSE_IGNORED;
}

/* The general path: jansson, with prov_json_parse's repairs. */
int showly_event_parse_slow(const sse_event *ev, prov_emit_fn emit, void *sink)
{
    bool is_status = strcmp(ev->type, "status") == 0;
    bool is_log = strcmp(ev->type, "log") == 0;
    if (!is_status && !is_log)
        return PROV_PARSE_IGNORED; /* unknown event types are not ours to relay */
    json_t *d = prov_json_parse(ev->data, ev->data_len);
    if (!json_is_object(d)) {
        log_warn("showly: skipped a %s event whose data is not a JSON object", ev->type);
        json_decref(d);
        return PROV_PARSE_IGNORED;
    }
    int r = is_status ? emit_status(d, emit, sink) : emit_logs(d, emit, sink);
    json_decref(d);
    return r;
}

/* ---- events: the fast path ------------------------------------------------
 *
 * jansson reads its input byte by byte (a UTF-8 check and a buffer append
 * per byte, a malloc per value): ~11 000 instructions for a 60-byte log
 * event, most of the CPU of a busy relay. Showly's events are flat objects
 * of strings, plus the "lines" array of strings and the "error" object of
 * strings. This scanner reads exactly that: runs of plain bytes eight at a
 * time, escapes decoded only in strings that have a backslash, values that
 * need no decoding used where they lie in the event's data.
 *
 * It declines (SHOWLY_FAST_DECLINED, nothing emitted) whenever it is not
 * certain to produce what showly_event_parse_slow produces: numbers, values
 * nested deeper than "lines"/"error" (and objects inside "lines"), a key
 * that has a backslash, a key of ours twice (jansson keeps the last), more
 * than SHOWLY_MAX_LINES_PER_EVENT lines, and everything jansson rejects or
 * prov_json_parse would repair: invalid UTF-8 (Unicode Table 3-7, as
 * providers/utf8.c and jansson check it), raw control characters in strings,
 * bad escapes, unpaired surrogate escapes, anything after the object. */

#define FAST_STACK_TEXT 1024  /* decoded strings before the heap is needed */
#define FAST_STACK_LINES 64

enum fast_key {
    FK_OTHER,
    FK_STREAM, FK_LEVEL, FK_LINES,        /* log events */
    FK_STATUS, FK_PREVIEW, FK_ERROR,      /* status events */
    FK_CODE, FK_MESSAGE,                  /* inside "error" */
};

typedef struct fast {
    const unsigned char *p, *end;
    size_t data_len;
    bool is_log;
    /* decoded strings: the stack block, then one heap block of data_len + 1
     * bytes (enough for every string of the event with its NUL: a string's
     * decoded text is never longer than its raw text, and its two quotes
     * leave room for the terminator) */
    char stack[FAST_STACK_TEXT];
    size_t stack_used;
    char *heap;
    size_t heap_used;
    /* "lines" */
    prov_log_line stack_lines[FAST_STACK_LINES];
    prov_log_line *lines;
    size_t nlines, lines_cap;
    size_t nelems;            /* elements of "lines", strings or not */
    bool lines_is_array;
    /* the members we read; NULL when absent or not a string */
    const char *str[FK_MESSAGE + 1];
    unsigned seen;            /* bit per fast_key: a repeat declines */
    bool error_is_object;
} fast;

static char *fast_alloc(fast *f, size_t n)
{
    if (n <= sizeof f->stack - f->stack_used) {
        char *p = f->stack + f->stack_used;
        f->stack_used += n;
        return p;
    }
    if (!f->heap && !(f->heap = malloc(f->data_len + 1)))
        return NULL;
    if (n > f->data_len + 1 - f->heap_used)
        return NULL; /* cannot happen (see above); decline rather than overflow */
    char *p = f->heap + f->heap_used;
    f->heap_used += n;
    return p;
}

#define FAST_ONES UINT64_C(0x0101010101010101)
#define FAST_HIGHS UINT64_C(0x8080808080808080)

/* Non-zero when one of the 8 bytes of v is '"', '\\', below 0x20 or
 * non-ASCII: the bytes a string scan must look at. */
static inline uint64_t fast_special8(uint64_t v)
{
    uint64_t ctl = v - FAST_ONES * 0x20;
    uint64_t quote = (v ^ (FAST_ONES * '"')) - FAST_ONES;
    uint64_t bslash = (v ^ (FAST_ONES * '\\')) - FAST_ONES;
    return (((ctl | quote | bslash) & ~v) | v) & FAST_HIGHS;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The 4 hex digits at p (end bounds the input); -1 when they are not. */
static long hex4(const unsigned char *p, const unsigned char *end)
{
    if (end - p < 4)
        return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0)
            return -1;
        v = v << 4 | h;
    }
    return v;
}

/* Scans the string starting at f->p (a '"'): checks it as jansson would and
 * sets *body / *raw_len to the bytes between the quotes and *esc when they
 * hold a backslash. false declines. */
static bool scan_string(fast *f, const unsigned char **body, size_t *raw_len, bool *esc)
{
    const unsigned char *p = f->p + 1, *end = f->end;
    *esc = false;
    for (;;) {
        while (end - p >= 8) {
            uint64_t v;
            memcpy(&v, p, 8);
            uint64_t m = fast_special8(v);
            if (m) {
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
                /* The lowest flagged byte is a real one (a false flag can
                 * only sit above a real one): go straight to it. */
                p += __builtin_ctzll(m) >> 3;
#endif
                break;
            }
            p += 8;
        }
        if (p >= end)
            return false;
        unsigned char c = *p;
        if (c == '"')
            break;
        if (c < 0x20)
            return false; /* jansson: "control character" */
        if (c < 0x80 && c != '\\') {
            p++;
            continue;
        }
        if (c >= 0x80) {
            size_t n = utf8_seq_len((const char *)p, (size_t)(end - p));
            if (!n)
                return false;
            p += n;
            continue;
        }
        *esc = true;
        if (end - p < 2)
            return false;
        unsigned char e = p[1];
        if (e != 'u') {
            if (!strchr("\"\\/bfnrt", e) || e == '\0')
                return false;
            p += 2;
            continue;
        }
        long cp = hex4(p + 2, end);
        if (cp < 0)
            return false;
        p += 6;
        if (cp >= 0xDC00 && cp <= 0xDFFF)
            return false; /* a lone low surrogate */
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            long lo = end - p >= 6 && p[0] == '\\' && p[1] == 'u' ? hex4(p + 2, end) : -1;
            if (lo < 0xDC00 || lo > 0xDFFF)
                return false; /* unpaired high surrogate */
            p += 6;
        }
    }
    *body = f->p + 1;
    *raw_len = (size_t)(p - *body);
    f->p = p + 1;
    return true;
}

/* Decodes the escapes of a string body scan_string accepted; returns the
 * decoded length (<= n). */
static size_t decode_string(const unsigned char *s, size_t n, char *out)
{
    char *o = out;
    const unsigned char *end = s + n;
    while (s < end) {
        const unsigned char *bs = memchr(s, '\\', (size_t)(end - s));
        size_t run = bs ? (size_t)(bs - s) : (size_t)(end - s);
        memcpy(o, s, run);
        o += run;
        s += run;
        if (!bs)
            break;
        unsigned char e = s[1];
        s += 2;
        switch (e) {
        case 'b': *o++ = '\b'; continue;
        case 'f': *o++ = '\f'; continue;
        case 'n': *o++ = '\n'; continue;
        case 'r': *o++ = '\r'; continue;
        case 't': *o++ = '\t'; continue;
        case 'u': break;
        default: *o++ = (char)e; continue; /* " \ / */
        }
        unsigned long cp = (unsigned long)hex4(s, end);
        s += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            unsigned long lo = (unsigned long)hex4(s + 2, end);
            s += 6;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        }
        if (cp < 0x80) {
            *o++ = (char)cp;
        } else if (cp < 0x800) {
            *o++ = (char)(0xC0 | cp >> 6);
            *o++ = (char)(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            *o++ = (char)(0xE0 | cp >> 12);
            *o++ = (char)(0x80 | (cp >> 6 & 0x3F));
            *o++ = (char)(0x80 | (cp & 0x3F));
        } else {
            *o++ = (char)(0xF0 | cp >> 18);
            *o++ = (char)(0x80 | (cp >> 12 & 0x3F));
            *o++ = (char)(0x80 | (cp >> 6 & 0x3F));
            *o++ = (char)(0x80 | (cp & 0x3F));
        }
    }
    return (size_t)(o - out);
}

/* Reads the string at f->p. With out == NULL it is only checked; else
 * *out / *len get its value: where it lies in the data when it needs no
 * decoding and no terminator, else decoded (and NUL-terminated) into the
 * scratch space. */
static bool fast_string(fast *f, bool need_nul, const char **out, size_t *len)
{
    const unsigned char *body;
    size_t raw;
    bool esc;
    if (!scan_string(f, &body, &raw, &esc))
        return false;
    if (!out)
        return true;
    if (!esc && !need_nul) {
        *out = (const char *)body;
        *len = raw;
        return true;
    }
    char *dst = fast_alloc(f, raw + 1);
    if (!dst)
        return false;
    size_t n = esc ? decode_string(body, raw, dst) : raw;
    if (!esc)
        memcpy(dst, body, raw);
    dst[n] = '\0';
    *out = dst;
    *len = n;
    return true;
}

static void fast_ws(fast *f)
{
    while (f->p < f->end && (*f->p == ' ' || *f->p == '\n' || *f->p == '\r' || *f->p == '\t'))
        f->p++;
}

/* true, false or null at f->p. */
static bool fast_literal(fast *f)
{
    static const char *const words[] = {"null", "true", "false"};
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(words[i]);
        if ((size_t)(f->end - f->p) >= n && memcmp(f->p, words[i], n) == 0) {
            f->p += n;
            return true;
        }
    }
    return false;
}

static enum fast_key key_of(const fast *f, const unsigned char *k, size_t n, bool in_error)
{
#define KEY_IS(lit) (n == sizeof(lit) - 1 && memcmp(k, lit, n) == 0)
    if (in_error)
        return KEY_IS("code") ? FK_CODE : KEY_IS("message") ? FK_MESSAGE : FK_OTHER;
    if (f->is_log)
        return KEY_IS("lines")    ? FK_LINES
               : KEY_IS("stream") ? FK_STREAM
               : KEY_IS("level")  ? FK_LEVEL
                                  : FK_OTHER;
    return KEY_IS("status")       ? FK_STATUS
           : KEY_IS("previewUrl") ? FK_PREVIEW
           : KEY_IS("error")      ? FK_ERROR
                                  : FK_OTHER;
#undef KEY_IS
}

static bool push_line(fast *f, const char *text, size_t len)
{
    if (f->nlines == f->lines_cap) {
        size_t cap = f->lines_cap * 4;
        prov_log_line *nl = f->lines == f->stack_lines ? malloc(cap * sizeof *nl)
                                                       : realloc(f->lines, cap * sizeof *nl);
        if (!nl)
            return false;
        if (f->lines == f->stack_lines)
            memcpy(nl, f->stack_lines, sizeof f->stack_lines);
        f->lines = nl;
        f->lines_cap = cap;
    }
    f->lines[f->nlines++] = (prov_log_line){.text = text, .len = len};
    return true;
}

/* A scalar value: a string (its value into *out when out is set) or a
 * literal (*out = NULL). Numbers and everything else decline. */
static bool fast_scalar(fast *f, bool need_nul, const char **out, size_t *len)
{
    if (f->p < f->end && *f->p == '"')
        return fast_string(f, need_nul, out, len);
    if (out)
        *out = NULL;
    return fast_literal(f);
}

/* An array of scalars (numbers and anything nested decline). With `lines`
 * it is the event's "lines": its strings are pushed as lines, capped at
 * SHOWLY_MAX_LINES_PER_EVENT; otherwise it is skipped. */
static bool fast_array(fast *f, bool lines)
{
    f->p++; /* '[' */
    if (lines)
        f->lines_is_array = true;
    fast_ws(f);
    if (f->p < f->end && *f->p == ']') {
        f->p++;
        return true;
    }
    for (;;) {
        const char *text;
        size_t len;
        if (!fast_scalar(f, false, lines ? &text : NULL, lines ? &len : NULL))
            return false;
        if (lines) {
            if (++f->nelems > SHOWLY_MAX_LINES_PER_EVENT)
                return false;
            if (text && !push_line(f, text, len))
                return false;
        }
        fast_ws(f);
        if (f->p >= f->end)
            return false;
        if (*f->p++ == ']')
            return true;
        if (f->p[-1] != ',')
            return false;
        fast_ws(f);
    }
}

static bool fast_object(fast *f, bool top, bool read_error);

/* The value of member `k` (top: a member of the event's object). */
static bool fast_value(fast *f, enum fast_key k, bool top)
{
    if (f->p >= f->end)
        return false;
    unsigned char c = *f->p;
    if (c == '[') {
        if (!top)
            return false;
        return fast_array(f, k == FK_LINES);
    }
    if (c == '{') {
        if (!top)
            return false;
        if (k == FK_ERROR)
            f->error_is_object = true;
        return fast_object(f, false, k == FK_ERROR);
    }
    size_t len;
    if (k == FK_OTHER || k == FK_LINES || k == FK_ERROR)
        return fast_scalar(f, false, NULL, NULL); /* not an array / object: as absent */
    return fast_scalar(f, true, &f->str[k], &len);
}

/* An object at f->p: the event (top) or a member's value (scalars only);
 * read_error: it is "error", whose code and message we keep. */
static bool fast_object(fast *f, bool top, bool read_error)
{
    f->p++; /* '{' */
    fast_ws(f);
    if (f->p < f->end && *f->p == '}') {
        f->p++;
        return true;
    }
    for (;;) {
        if (f->p >= f->end || *f->p != '"')
            return false;
        const unsigned char *key;
        size_t klen;
        bool esc;
        if (!scan_string(f, &key, &klen, &esc) || esc)
            return false;
        enum fast_key k = top || read_error ? key_of(f, key, klen, read_error) : FK_OTHER;
        if (k != FK_OTHER) {
            if (f->seen & (1u << k))
                return false; /* jansson keeps the last one: let it */
            f->seen |= 1u << k;
        }
        fast_ws(f);
        if (f->p >= f->end || *f->p != ':')
            return false;
        f->p++;
        fast_ws(f);
        if (!fast_value(f, k, top))
            return false;
        fast_ws(f);
        if (f->p >= f->end)
            return false;
        if (*f->p++ == '}')
            return true;
        if (f->p[-1] != ',')
            return false;
        fast_ws(f);
    }
}

int showly_event_parse_fast(const sse_event *ev, prov_emit_fn emit, void *sink)
{
    bool is_status = strcmp(ev->type, "status") == 0;
    bool is_log = strcmp(ev->type, "log") == 0;
    if (!is_status && !is_log)
        return PROV_PARSE_IGNORED;
    fast fs, *f = &fs;
    f->p = (const unsigned char *)ev->data;
    f->end = f->p + ev->data_len;
    f->data_len = ev->data_len;
    f->is_log = is_log;
    f->stack_used = f->heap_used = 0;
    f->heap = NULL;
    f->lines = f->stack_lines;
    f->lines_cap = FAST_STACK_LINES;
    f->nlines = f->nelems = 0;
    f->lines_is_array = false;
    memset(f->str, 0, sizeof f->str);
    f->seen = 0;
    f->error_is_object = false;

    int r = SHOWLY_FAST_DECLINED;
    fast_ws(f);
    if (!ev->data || f->p >= f->end || *f->p != '{' || !fast_object(f, true, false))
        goto out;
    fast_ws(f);
    if (f->p != f->end)
        goto out;
    if (is_status) {
        r = emit_status_fields(f->str[FK_STATUS], f->str[FK_PREVIEW], f->error_is_object,
                               f->str[FK_CODE], f->str[FK_MESSAGE], emit, sink);
    } else if (f->nlines == 0) {
        r = PROV_PARSE_IGNORED;
    } else {
        const char *level = f->str[FK_LEVEL] ? f->str[FK_LEVEL] : "info";
        for (size_t i = 0; i < f->nlines; i++) {
            f->lines[i].level = level;
            f->lines[i].source = f->str[FK_STREAM];
        }
        prov_event e = {.kind = PROV_EV_LOG, .status = PROV_ST_UNKNOWN, .progress = -1,
                        .total = -1, .lines = f->lines, .nlines = f->nlines};
        emit(sink, &e);
        r = PROV_PARSE_CONTINUE;
    }
out:
    if (f->lines != f->stack_lines)
        free(f->lines);
    free(f->heap);
    return r;
}

static int showly_stream_parse(prov_target *t, void *state, enum prov_stream_kind kind,
                               const sse_event *ev, prov_emit_fn emit, void *sink,
                               prov_error *err)
{
    (void)t;
    (void)state;
    (void)kind;
    (void)err;
    int r = showly_event_parse_fast(ev, emit, sink);
    return r != SHOWLY_FAST_DECLINED ? r : showly_event_parse_slow(ev, emit, sink);
}

const struct provider prov_showly = {
    .name = "showly",
    .display_name = "Showly",
    .caps = PROV_CAP_CREATE_PREVIEW | PROV_CAP_REQUEST_PUBLISH | PROV_CAP_STREAM_EVENTS |
            PROV_CAP_TAIL_LOGS | PROV_CAP_GET | PROV_CAP_LIST,
    .logs_need_deployment = true,
    .local_records_only = false,
    .native_idempotency = true,
    .configure = showly_configure,
    .unconfigure = showly_unconfigure,
    .credentials_ok = showly_credentials_ok,
    .unsupported_hint = showly_unsupported_hint,
    .create_preview = showly_create_preview,
    .request_publish = showly_request_publish,
    .get_deployment = showly_get_deployment,
    .list_deployments = showly_list_deployments,
    .stream_spec = showly_stream_spec,
    .stream_parse = showly_stream_parse,
    .map_http_error = showly_map_http_error,
};

/* bigcommerce.c — the BigCommerce Infrastructure Hosting adapter
 * (PROVIDERS.md, "BigCommerce Infrastructure Hosting").
 *
 * BigCommerce deploys a built bundle, not a git ref: create_preview zips the
 * artifact (providers/zip.c, off the loop), asks for a signed upload URL,
 * PUTs the zip there and creates a deployment of that upload on the
 * target's projectUuid. The signed URL is a credential: it is never put in a
 * result, a log line or an error message, and the API token is never sent
 * to it.
 *
 * The API has no GET-one or list endpoint for deployments, so this adapter
 * keeps its own records of what this process created and observed (in
 * t->priv) and answers get/list from them (`local_records_only`).
 *
 * The events stream sends whole snapshots (status, step, progress, error,
 * URL) without ids, and the server closes it every 30 s even mid-deployment.
 * The generic stream reconnects (PROV_RESUME_LIVE); the server starts each
 * connection with the current snapshot again, so this file drops a snapshot
 * equal to the last one relayed. That last snapshot lives in the per-stream
 * state and travels in cursors, so a resumed call does not repeat it either.
 *
 * Runtime logs are a live tail that ends every 60 s; it is reconnected for as
 * long as the caller asked. Each SSE event becomes one PROV_EV_LOG. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mcp/log.h"
#include "providers/b64.h"
#include "providers/provider.h"
#include "providers/utf8.h"
#include "tools/sha256.h"
#include "providers/zip.h"

#define BC_DEFAULT_BASE "https://api.bigcommerce.com"
#define BC_DEFAULT_TOKEN_ENV "BIGCOMMERCE_ACCESS_TOKEN"
#define BC_API_TIMEOUT_MS 30000
#define BC_UPLOAD_TIMEOUT_MS (10 * 60 * 1000)   /* 64 MiB over a slow uplink */
#define BC_RETRIES 3
#define BC_MAX_BUNDLE_BYTES ((uint64_t)64 << 20) /* "64 MB compressed" */
#define BC_BUNDLE_PREFIX "output/"               /* what the official CLI zips under */
#define BC_MAX_RECORDS 1000                      /* oldest records are forgotten first */
#define BC_ID_MAX 128
#define BC_WORD_MAX 32
#define BC_TIME_MAX 40
#define BC_LIST_DEFAULT 20
#define BC_LIST_MAX 100
/* Room left in a PROV_URL_MAX URL for the paths appended to the prefix. */
#define BC_PREFIX_MAX (PROV_URL_MAX - 512)
#define BC_SNAPSHOT_KEY_MAX (PROV_URL_MAX + 256)
#define BC_FIELD_ERRORS_MAX 600                  /* bytes of "field: msg; ..." in messages */
#define BC_TITLE_MAX 300
#define BC_MAX_LINES_PER_EVENT 10000
#define BC_LOG_SEEN 64                           /* log event uuids remembered for de-dup */
#define BC_CURSOR_TAG "bc1:"
#define BC_RATE_WINDOW_S 30                      /* store-wide rate-limit window */

/* ---- configuration and records ------------------------------------------ */

typedef struct bc_record {
    unsigned long seq;                 /* creation order in this process */
    char id[BC_ID_MAX];
    char environment[16];              /* preview | production | unknown */
    prov_status status;
    char provider_status[BC_WORD_MAX];
    char *url;
    char created_at[BC_TIME_MAX];
    char upload_uuid[BC_ID_MAX];
    char project[BC_ID_MAX];
    char digest[ZIP_DIGEST_HEX + 1];
    uint64_t bytes;
    char *message;
    char err_code[PROV_ERR_CODE_MAX];  /* "" when none */
    char *err_message;
} bc_record;

typedef struct bc_cfg {
    const char *base;                  /* no trailing slash */
    const char *stream_base;
    const char *store_hash;
    const char *project_uuid;
    const char *production_project_uuid;  /* for the approval gate (later) */
    const char *token_env;
    const char *ca_file;
    char api[BC_PREFIX_MAX];           /* base + /stores/{hash}/v3 */
    char stream_api[BC_PREFIX_MAX];    /* stream_base + /stores/{hash}/v3 */
    char project_esc[3 * BC_ID_MAX + 1];
    bc_record **recs;                  /* ascending seq */
    size_t nrecs;
    unsigned long next_seq;
} bc_cfg;

static bc_cfg *cfg_of(const prov_target *t) { return t->priv; }

static void record_free(bc_record *r)
{
    if (!r)
        return;
    free(r->url);
    free(r->message);
    free(r->err_message);
    free(r);
}

static bc_record *record_find(const bc_cfg *c, const char *id)
{
    for (size_t i = c->nrecs; id && i-- > 0;)
        if (strcmp(c->recs[i]->id, id) == 0)
            return c->recs[i];
    return NULL;
}

/* Adds an empty record for `id` (newest), forgetting the oldest past the cap. */
static bc_record *record_add(bc_cfg *c, const char *id)
{
    if (strlen(id) >= BC_ID_MAX)
        return NULL;
    bc_record *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    if (c->nrecs == BC_MAX_RECORDS) {
        record_free(c->recs[0]);
        memmove(c->recs, c->recs + 1, (c->nrecs - 1) * sizeof *c->recs);
        c->nrecs--;
    }
    if (!c->recs && !(c->recs = calloc(BC_MAX_RECORDS, sizeof *c->recs))) {
        free(r);
        return NULL;
    }
    r->seq = ++c->next_seq;
    snprintf(r->id, sizeof r->id, "%s", id);
    snprintf(r->environment, sizeof r->environment, "unknown");
    r->status = PROV_ST_QUEUED;
    snprintf(r->provider_status, sizeof r->provider_status, "queued");
    c->recs[c->nrecs++] = r;
    return r;
}

static void set_owned(char **dst, const char *src)
{
    if (src && *dst && strcmp(*dst, src) == 0)
        return;
    free(*dst);
    *dst = src ? strdup(src) : NULL;
}

static json_t *record_json(const prov_target *t, const bc_record *r)
{
    json_t *d = prov_deployment(t, r->id, r->environment, r->status, r->provider_status,
                                r->url, r->created_at);
    if (!d)
        return NULL;
    if (r->err_code[0])
        json_object_set_new(d, "error", json_pack("{s:s, s:s}", "code", r->err_code, "message",
                                                  r->err_message ? r->err_message : ""));
    if (r->digest[0])
        json_object_set_new(d, "artifact", json_pack("{s:s, s:I}", "sha256", r->digest,
                                                     "bytes", (json_int_t)r->bytes));
    if (r->message)
        json_object_set_new(d, "message", json_string(r->message));
    return d;
}

static void now_iso(char *buf, size_t n)
{
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm))
        strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
    else
        snprintf(buf, n, "%s", "");
}

static int make_prefix(char *out, size_t n, const char *base, const char *hash_esc)
{
    return (size_t)snprintf(out, n, "%s/stores/%s/v3", base, hash_esc) >= n ? -1 : 0;
}

static int bc_configure(prov_target *t, char *err, size_t errlen)
{
    bc_cfg *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    t->priv = c;
    c->base = cfg_str(t->cfg, "baseUrl", BC_DEFAULT_BASE);
    c->stream_base = cfg_str(t->cfg, "streamBaseUrl", c->base);
    c->store_hash = cfg_str(t->cfg, "storeHash", NULL);
    c->project_uuid = cfg_str(t->cfg, "projectUuid", NULL);
    c->production_project_uuid = cfg_str(t->cfg, "productionProjectUuid", NULL);
    c->token_env = cfg_str(t->cfg, "tokenEnv", BC_DEFAULT_TOKEN_ENV);
    c->ca_file = cfg_str(t->cfg, "caFile", NULL);
    json_t *ppu = json_object_get(t->cfg->obj, "productionProjectUuid");
    if (!c->store_hash || !*c->store_hash) {
        snprintf(err, errlen, "field \"storeHash\": required for provider bigcommerce (the "
                              "store hash from the API path, e.g. \"abc123\")");
        return -1;
    }
    if (!c->project_uuid || !*c->project_uuid) {
        snprintf(err, errlen, "field \"projectUuid\": required for provider bigcommerce (the "
                              "Infrastructure Hosting project previews deploy to)");
        return -1;
    }
    if (ppu && !json_is_null(ppu) && (!c->production_project_uuid ||
                                      !*c->production_project_uuid)) {
        snprintf(err, errlen, "field \"productionProjectUuid\": must be a project UUID string");
        return -1;
    }
    char hash[3 * BC_ID_MAX + 1];
    if (strlen(c->store_hash) >= BC_ID_MAX || prov_escape(hash, sizeof hash, c->store_hash) ||
        make_prefix(c->api, sizeof c->api, c->base, hash) ||
        make_prefix(c->stream_api, sizeof c->stream_api, c->stream_base, hash)) {
        snprintf(err, errlen, "field \"storeHash\": too long");
        return -1;
    }
    if (strlen(c->project_uuid) >= BC_ID_MAX ||
        prov_escape(c->project_esc, sizeof c->project_esc, c->project_uuid)) {
        snprintf(err, errlen, "field \"projectUuid\": too long");
        return -1;
    }
    return 0;
}

static void bc_unconfigure(prov_target *t)
{
    bc_cfg *c = t->priv;
    if (c) {
        for (size_t i = 0; i < c->nrecs; i++)
            record_free(c->recs[i]);
        free(c->recs);
    }
    free(c);
    t->priv = NULL;
}

static bool bc_credentials_ok(const prov_target *t, char *problem, size_t n)
{
    if (prov_secret(cfg_of(t)->token_env))
        return true;
    snprintf(problem, n, "environment variable %s is not set: export a BigCommerce API "
                         "account access token for store %s in it", cfg_of(t)->token_env,
             cfg_of(t)->store_hash);
    return false;
}

static const char *bc_unsupported_hint(const char *tool)
{
    (void)tool;
    return NULL; /* BigCommerce supports every deploy-mcp tool */
}

/* ---- requests and errors ------------------------------------------------ */

typedef struct bc_headers {
    char auth[PROV_HEADER_MAX];
    const char *list[5];
} bc_headers;

static int build_headers(const prov_target *t, bc_headers *h, bool json_body, prov_error *err)
{
    const char *token = prov_secret(cfg_of(t)->token_env);
    if (!token) {
        prov_error_set(err, "missing_credentials", 0, false,
                       "environment variable %s is not set: export a BigCommerce API account "
                       "access token in it", cfg_of(t)->token_env);
        return -1;
    }
    if ((size_t)snprintf(h->auth, sizeof h->auth, "X-Auth-Token: %s", token) >= sizeof h->auth) {
        prov_error_set(err, "invalid_credentials", 0, false,
                       "the BigCommerce token in %s is too long", cfg_of(t)->token_env);
        return -1;
    }
    int n = 0;
    h->list[n++] = h->auth;
    h->list[n++] = "Accept: application/json";
    if (json_body)
        h->list[n++] = "Content-Type: application/json";
    h->list[n] = NULL;
    return 0;
}

/* " (title: detail)" from an RFC 7807-like body, or "". */
static void problem_text(json_t *j, char *out, size_t n)
{
    const char *title = json_string_value(json_object_get(j, "title"));
    const char *detail = json_string_value(json_object_get(j, "detail"));
    out[0] = '\0';
    if (title && detail && strcmp(title, detail) != 0)
        snprintf(out, n, ": %.*s: %.*s", BC_TITLE_MAX, title, BC_TITLE_MAX, detail);
    else if (title || detail)
        snprintf(out, n, ": %.*s", BC_TITLE_MAX, title ? title : detail);
}

/* "field: message; field2: message" from the body's "errors" object. */
static void field_errors(json_t *j, char *out, size_t n)
{
    json_t *errs = json_object_get(j, "errors");
    size_t off = 0;
    out[0] = '\0';
    const char *key;
    json_t *v;
    json_object_foreach(errs, key, v) {
        const char *msg = json_string_value(v);
        char *dumped = NULL;
        if (!msg && json_is_array(v))
            msg = json_string_value(json_array_get(v, 0));
        if (!msg)
            msg = dumped = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        int w = snprintf(out + off, n - off, "%s%s: %s", off ? "; " : "", key,
                         msg ? msg : "invalid");
        free(dumped);
        if (w < 0 || (size_t)w >= n - off) {
            out[n - 1] = '\0';
            break;
        }
        off += (size_t)w;
    }
}

/* Maps a BigCommerce API error answer (or a transport failure) while doing
 * `what` ("creating the deployment") into *e. */
static void map_error(const prov_target *t, const http_response *res, const char *what,
                      prov_error *e)
{
    const bc_cfg *c = cfg_of(t);
    if (res->status == 0) {
        prov_network_error(e, t, res);
        return;
    }
    json_t *j = prov_json_parse(res->body, res->body_len);
    char prob[2 * BC_TITLE_MAX + 8], fields[BC_FIELD_ERRORS_MAX];
    problem_text(j, prob, sizeof prob);
    field_errors(j, fields, sizeof fields);
    long st = res->status;
    if (st == 401) {
        prov_error_set(e, "unauthorized", st, false,
                       "BigCommerce rejected the access token in %s while %s (HTTP 401%s): "
                       "set %s to a valid API account access token for store %s and restart "
                       "deploy-mcp", c->token_env, what, prob, c->token_env, c->store_hash);
    } else if (st == 403) {
        prov_error_set(e, "infrastructure_hosting_not_enabled", st, false,
                       "Infrastructure Hosting is not enabled for this store (%s; HTTP 403 "
                       "while %s%s). The token was accepted, so a new token will not help: "
                       "ask BigCommerce to enable Infrastructure Hosting (Catalyst native "
                       "hosting) for the store, and check that the API account may use it",
                       c->store_hash, what, prob);
    } else if (st == 404) {
        prov_error_set(e, "not_found", st, false,
                       "BigCommerce answered 404 Not Found while %s%s: check the deployment "
                       "id, and the target's storeHash (%s) and projectUuid (%s)", what, prob,
                       c->store_hash, c->project_uuid);
    } else if (st == 409) {
        prov_error_set(e, "deployment_in_progress", st, true,
                       "a deployment is already in progress for BigCommerce project %s "
                       "(HTTP 409%s): BigCommerce runs one deployment per project at a time. "
                       "Wait for it to finish (follow it with stream_events), then call "
                       "create_preview again", c->project_uuid, prob);
    } else if (st == 413) {
        prov_error_set(e, "bundle_too_large", st, false,
                       "BigCommerce refused the bundle as too large while %s (HTTP 413; the "
                       "limit is 64 MB compressed): deploy only the build output", what);
    } else if (st == 422) {
        prov_error_set(e, "validation_failed", st, false,
                       "BigCommerce rejected the request while %s (HTTP 422%s)%s%s", what, prob,
                       fields[0] ? "; invalid fields: " : "", fields);
    } else if (st == 429) {
        const char *reset = res->req ? http_header(res->req, "X-Rate-Limit-Time-Reset-Ms") : NULL;
        char *end = NULL;
        unsigned long ms = reset ? strtoul(reset, &end, 10) : 0;
        if (reset && end && end != reset && *end == '\0')
            prov_error_set(e, "rate_limited", st, true,
                           "BigCommerce's API rate limit for store %s is used up (HTTP 429 "
                           "while %s): wait %.1f s (X-Rate-Limit-Time-Reset-Ms: %lu) and retry",
                           c->store_hash, what, (double)ms / 1000.0, ms);
        else
            prov_error_set(e, "rate_limited", st, true,
                           "BigCommerce's API rate limit for store %s is used up (HTTP 429 "
                           "while %s): wait for the %d-second window to reset and retry",
                           c->store_hash, what, BC_RATE_WINDOW_S);
    } else {
        bool retryable = st >= 500 || st == 408;
        prov_error_set(e, st >= 500 ? "upstream_error" : "http_error", st, retryable,
                       "BigCommerce answered HTTP %ld while %s%s%s%s%s", st, what, prob,
                       fields[0] ? " (" : "", fields, fields[0] ? ")" : "");
    }
    json_decref(j);
}

static void bc_map_http_error(prov_target *t, const http_response *res, prov_error *e)
{
    map_error(t, res, "opening the stream", e);
}

/* ---- create_preview ----------------------------------------------------- */

typedef struct bc_create {
    zip_job *zip;
    bool zip_done;                     /* its callback ran: free, don't cancel */
    const zip_result *zres;            /* valid until zip_job_free */
    char *message;
    char *upload_url;                  /* a credential: wiped, never shown */
    char upload_uuid[BC_ID_MAX];
    bool production;                   /* a publish approved on the gate's page */
    char digest[ZIP_DIGEST_HEX + 1];   /* publish: the source's artifact digest */
} bc_create;

static void wipe(char *s)
{
    if (!s)
        return;
    volatile char *p = s;
    while (*p)
        *p++ = '\0';
}

static void bc_create_free(void *p)
{
    bc_create *st = p;
    if (!st)
        return;
    if (st->zip) {
        if (st->zip_done)
            zip_job_free(st->zip);
        else
            zip_job_cancel(st->zip);
    }
    wipe(st->upload_url);
    free(st->upload_url);
    free(st->message);
    free(st);
}

static void start_create(prov_op *op);

static void fail_op(prov_op *op, const char *code, long status, bool retryable,
                    const char *msg)
{
    prov_error e;
    prov_error_set(&e, code, status, retryable, "%s", msg);
    prov_op_fail(op, &e);
}

static void step_created(prov_op *op, const http_response *res)
{
    prov_target *t = prov_op_target(op);
    bc_create *st = prov_op_state(op);
    bc_cfg *c = cfg_of(t);
    prov_error e;
    if (res->status < 200 || res->status >= 300) {
        map_error(t, res, "creating the deployment", &e);
        prov_op_fail(op, &e);
        return;
    }
    json_t *root = prov_json_parse(res->body, res->body_len);
    const char *id = json_string_value(json_object_get(json_object_get(root, "data"),
                                                       "deployment_uuid"));
    if (!id || !*id || strlen(id) >= BC_ID_MAX) {
        json_decref(root);
        fail_op(op, "bad_response", res->status, false,
                "BigCommerce accepted the deployment but its answer carried no "
                "deployment_uuid; check the project in the BigCommerce control panel before "
                "deploying again");
        return;
    }
    bc_record *r = record_find(c, id);
    if (!r)
        r = record_add(c, id);
    json_t *dep = NULL;
    const char *env = st->production ? "production" : "preview";
    const char *project = st->production ? c->production_project_uuid : c->project_uuid;
    if (r) {
        snprintf(r->environment, sizeof r->environment, "%s", env);
        now_iso(r->created_at, sizeof r->created_at);
        snprintf(r->upload_uuid, sizeof r->upload_uuid, "%s", st->upload_uuid);
        snprintf(r->project, sizeof r->project, "%s", project);
        snprintf(r->digest, sizeof r->digest, "%s", st->zres ? st->zres->digest : st->digest);
        r->bytes = st->zres ? st->zres->size : 0;
        set_owned(&r->message, st->message);
        dep = record_json(t, r);
    } else {
        dep = prov_deployment(t, id, env, PROV_ST_QUEUED, "queued", NULL, NULL);
    }
    log_info("bigcommerce: created deployment %s on project %s", id, project);
    json_decref(root); /* id points into it */
    if (!dep) {
        fail_op(op, "internal_error", 0, true, "out of memory");
        return;
    }
    prov_op_succeed(op, dep);
}

/* The storage service behind the signed URL answers in its own format (S3
 * error XML echoes the signature back), so its body is never quoted. */
static void step_uploaded(prov_op *op, const http_response *res)
{
    if (res->status == 0) {
        fail_op(op, "network_error", 0, true,
                "the upload of the bundle to BigCommerce's storage broke off (network "
                "error); call create_preview again");
        return;
    }
    if (res->status == 413) {
        fail_op(op, "bundle_too_large", 413, false,
                "BigCommerce's storage refused the bundle as too large (the limit is 64 MB "
                "compressed): deploy only the build output");
        return;
    }
    if (res->status < 200 || res->status >= 300) {
        prov_error e;
        prov_error_set(&e, "upload_failed", res->status,
                       res->status >= 500 || res->status == 403 || res->status == 408,
                       "BigCommerce's storage refused the bundle upload (HTTP %ld)%s; call "
                       "create_preview again", res->status,
                       res->status == 403 ? ": the signed upload URL was rejected, probably "
                                            "because it expired" : "");
        prov_op_fail(op, &e);
        return;
    }
    start_create(op);
}

/* POSTs the deployment of st->upload_uuid on the preview project (or, for
 * an approved publish, the production project). */
static void start_create(prov_op *op)
{
    prov_target *t = prov_op_target(op);
    bc_create *st = prov_op_state(op);
    bc_cfg *c = cfg_of(t);
    char url[PROV_URL_MAX];
    snprintf(url, sizeof url, "%s/infrastructure/deployments", c->api);
    json_t *body = json_pack("{s:s, s:s, s:[]}", "upload_uuid", st->upload_uuid,
                             "project_uuid",
                             st->production ? c->production_project_uuid : c->project_uuid,
                             "environment_variables");
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    bc_headers h;
    prov_error e;
    if (!text) {
        fail_op(op, "internal_error", 0, true, "out of memory");
        return;
    }
    if (build_headers(t, &h, true, &e) != 0) {
        free(text);
        prov_op_fail(op, &e);
        return;
    }
    /* Not idempotent: a retry after a lost answer could start a second
     * deployment (or answer 409 for our own). A 429 is reported instead. */
    http_opts o = {
        .method = "POST", .url = url, .headers = h.list, .body = text,
        .body_len = strlen(text), .timeout_ms = BC_API_TIMEOUT_MS, .ca_file = c->ca_file,
    };
    int rc = prov_op_http(op, &o, step_created);
    free(text);
    if (rc != 0)
        fail_op(op, "internal_error", 0, true, "could not start the request to BigCommerce");
}

static bool same_origin(const char *a, const char *base)
{
    size_t n = strlen(base);
    return strncmp(a, base, n) == 0 && (a[n] == '/' || a[n] == '\0' || a[n] == '?');
}

static void step_upload_url(prov_op *op, const http_response *res)
{
    prov_target *t = prov_op_target(op);
    bc_create *st = prov_op_state(op);
    bc_cfg *c = cfg_of(t);
    prov_error e;
    if (res->status < 200 || res->status >= 300) {
        map_error(t, res, "requesting an upload URL", &e);
        prov_op_fail(op, &e);
        return;
    }
    json_t *root = prov_json_parse(res->body, res->body_len);
    json_t *data = json_object_get(root, "data");
    const char *url = json_string_value(json_object_get(data, "upload_url"));
    const char *uuid = json_string_value(json_object_get(data, "upload_uuid"));
    bool url_ok = url && strlen(url) < PROV_URL_MAX &&
                  (strncmp(url, "https://", 8) == 0 || strncmp(url, "http://", 7) == 0);
    if (!url_ok || !uuid || !*uuid || strlen(uuid) >= BC_ID_MAX ||
        !(st->upload_url = strdup(url))) {
        json_decref(root);
        fail_op(op, "bad_response", res->status, true,
                "BigCommerce's answer to the upload request carried no usable upload_url / "
                "upload_uuid; try again");
        return;
    }
    snprintf(st->upload_uuid, sizeof st->upload_uuid, "%s", uuid);
    json_decref(root);
    /* The signed URL authorizes the upload by itself: no X-Auth-Token goes
     * there. "Expect:" turns off curl's 100-continue wait. */
    static const char *const put_headers[] = {"Content-Type: application/zip", "Expect:", NULL};
    http_opts o = {
        .method = "PUT", .url = st->upload_url, .headers = put_headers,
        .body_file = st->zres->path, .timeout_ms = BC_UPLOAD_TIMEOUT_MS,
        .idempotent = true, .max_retries = BC_RETRIES,
        /* caFile is for the API host; the storage host uses the system CAs. */
        .ca_file = same_origin(st->upload_url, c->base) ? c->ca_file : NULL,
    };
    if (prov_op_http(op, &o, step_uploaded) != 0)
        fail_op(op, "internal_error", 0, true, "could not start the bundle upload");
}

static void on_zipped(void *ud, zip_job *job, const zip_result *res)
{
    prov_op *op = ud;
    prov_target *t = prov_op_target(op);
    bc_create *st = prov_op_state(op);
    bc_cfg *c = cfg_of(t);
    (void)job;
    st->zip_done = true;
    st->zres = res;
    if (res->status != 0) {
        prov_error e;
        prov_error_set(&e, res->status == -EFBIG ? "bundle_too_large" : "invalid_artifact",
                       0, false, "could not package the artifact for BigCommerce: %s",
                       res->error ? res->error : "unknown error");
        prov_op_fail(op, &e);
        return;
    }
    log_debug("bigcommerce: bundle ready (%llu bytes, %lu files, sha256 %s)",
              (unsigned long long)res->size, res->entries, res->digest);
    char url[PROV_URL_MAX];
    snprintf(url, sizeof url, "%s/infrastructure/deployments/uploads", c->api);
    bc_headers h;
    prov_error e;
    if (build_headers(t, &h, true, &e) != 0) {
        prov_op_fail(op, &e);
        return;
    }
    /* Asking for an upload URL twice only leaves an unused slot: safe to
     * retry (including 429 with X-Rate-Limit-Time-Reset-Ms). */
    http_opts o = {
        .method = "POST", .url = url, .headers = h.list, .body = "{}", .body_len = 2,
        .timeout_ms = BC_API_TIMEOUT_MS, .idempotent = true, .max_retries = BC_RETRIES,
        .ca_file = c->ca_file,
    };
    if (prov_op_http(op, &o, step_upload_url) != 0)
        fail_op(op, "internal_error", 0, true, "could not start the request to BigCommerce");
}

static prov_op *bc_create_preview(prov_target *t, const prov_create_args *a, prov_result_cb cb,
                                  void *ud, prov_error *err)
{
    if (!a->artifact || !*a->artifact) {
        prov_error_set(err, "artifact_required", 0, false,
                       "BigCommerce deploys a built bundle, not a git branch or commit: pass "
                       "`artifact`, the path of the build output directory (deploy-mcp zips "
                       "it under output/) or of a .zip of it, inside the target's "
                       "artifactRoot");
        return NULL;
    }
    bc_headers h;
    if (build_headers(t, &h, false, err) != 0)
        return NULL;
    bc_create *st = calloc(1, sizeof *st);
    if (!st || (a->message && !(st->message = strdup(a->message)))) {
        bc_create_free(st);
        prov_error_set(err, "internal_error", 0, true, "out of memory");
        return NULL;
    }
    prov_op *op = prov_op_new(t, cb, ud, st, bc_create_free);
    if (!op) {
        prov_error_set(err, "internal_error", 0, true, "out of memory");
        return NULL;
    }
    st->zip = zip_job_start(t->loop, a->artifact, BC_BUNDLE_PREFIX, BC_MAX_BUNDLE_BYTES,
                            on_zipped, op);
    if (!st->zip) {
        prov_op_cancel(op);
        prov_error_set(err, "internal_error", 0, true, "could not start packaging the artifact");
        return NULL;
    }
    return op;
}

/* ---- get / list from the records ---------------------------------------- */

static prov_op *bc_get_deployment(prov_target *t, const char *id, prov_result_cb cb, void *ud,
                                  prov_error *err)
{
    bc_record *r = record_find(cfg_of(t), id);
    if (!r) {
        prov_error_set(err, "deployment_unknown", 0, false,
                       "deployment %.200s was not created or observed by this deploy-mcp "
                       "process: BigCommerce has no API to look deployments up, so deploy-mcp "
                       "only knows the deployments it created or followed since it started. "
                       "Use an id from create_preview or list_deployments, follow the "
                       "deployment with stream_events (which works for any id and records it), "
                       "or check the BigCommerce control panel", id ? id : "");
        return NULL;
    }
    json_t *dep = record_json(t, r);
    prov_op *op = dep ? prov_op_new(t, cb, ud, NULL, NULL) : NULL;
    if (!op) {
        json_decref(dep);
        prov_error_set(err, "internal_error", 0, true, "out of memory");
        return NULL;
    }
    prov_op_succeed_later(op, dep);
    return op;
}

static char *list_cursor(unsigned long seq)
{
    char raw[64];
    int n = snprintf(raw, sizeof raw, BC_CURSOR_TAG "%lu", seq);
    return b64url_encode((const unsigned char *)raw, (size_t)n);
}

/* Returns the seq a cursor continues below, 0 for none, or -1 when invalid. */
static long long parse_list_cursor(const char *cursor)
{
    if (!cursor || !*cursor)
        return 0;
    size_t len = 0;
    unsigned char *raw = b64url_decode(cursor, &len);
    long long seq = -1;
    size_t tag = strlen(BC_CURSOR_TAG);
    if (raw && len > tag && len < 32 && memcmp(raw, BC_CURSOR_TAG, tag) == 0) {
        char *end = NULL;
        unsigned long long v = strtoull((const char *)raw + tag, &end, 10);
        if (end && *end == '\0' && v > 0 && v < (1ull << 62))
            seq = (long long)v;
    }
    free(raw);
    return seq;
}

static prov_op *bc_list_deployments(prov_target *t, const prov_list_args *a, prov_result_cb cb,
                                    void *ud, prov_error *err)
{
    bc_cfg *c = cfg_of(t);
    long long below = parse_list_cursor(a->cursor);
    if (below < 0) {
        prov_error_set(err, "invalid_cursor", 0, false,
                       "the cursor is not one this server issued: pass nextCursor from the "
                       "previous list_deployments result unchanged, or omit it");
        return NULL;
    }
    prov_status want = a->status ? prov_status_parse(a->status) : PROV_ST_UNKNOWN;
    if (a->status && want == PROV_ST_UNKNOWN) {
        prov_error_set(err, "invalid_arguments", 0, false,
                       "status must be one of queued, building, ready, failed, canceled");
        return NULL;
    }
    int limit = a->limit > 0 ? a->limit : BC_LIST_DEFAULT;
    if (limit > BC_LIST_MAX)
        limit = BC_LIST_MAX;
    json_t *deps = json_array();
    json_t *result = json_object();
    unsigned long last_seq = 0;
    bool more = false;
    int got = 0;
    for (size_t i = c->nrecs; deps && result && i-- > 0;) {
        bc_record *r = c->recs[i];
        if (below > 0 && r->seq >= (unsigned long)below)
            continue;
        if (a->status && r->status != want)
            continue;
        if (a->environment && strcmp(a->environment, r->environment) != 0)
            continue;
        if (got == limit) {
            more = true;
            break;
        }
        json_array_append_new(deps, record_json(t, r));
        last_seq = r->seq;
        got++;
    }
    if (!deps || !result) {
        json_decref(deps);
        json_decref(result);
        prov_error_set(err, "internal_error", 0, true, "out of memory");
        return NULL;
    }
    json_object_set_new(result, "deployments", deps);
    if (more) {
        char *next = list_cursor(last_seq);
        if (next)
            json_object_set_new(result, "nextCursor", json_string(next));
        free(next);
    }
    prov_op *op = prov_op_new(t, cb, ud, NULL, NULL);
    if (!op) {
        json_decref(result);
        prov_error_set(err, "internal_error", 0, true, "out of memory");
        return NULL;
    }
    prov_op_succeed_later(op, result);
    return op;
}

/* ---- streams ------------------------------------------------------------ */

typedef struct bc_stream_state {
    enum prov_stream_kind kind;
    bool have_last;
    bool last_terminal;                /* that snapshot ended the deployment */
    char last[BC_SNAPSHOT_KEY_MAX];    /* the last snapshot relayed (events) */
    char seen[BC_LOG_SEEN][BC_ID_MAX]; /* recent log event uuids (logs) */
    size_t seen_next, seen_count;
} bc_stream_state;

static void *bc_stream_state_new(prov_target *t, enum prov_stream_kind kind)
{
    (void)t;
    bc_stream_state *s = calloc(1, sizeof *s);
    if (s)
        s->kind = kind;
    return s;
}

static void bc_stream_state_free(void *state) { free(state); }

/* Saved as "<T|R><key>": whether the snapshot was terminal, then its key. */
static char *bc_stream_state_save(const void *state)
{
    const bc_stream_state *s = state;
    if (s->kind != PROV_STREAM_EVENTS || !s->have_last)
        return NULL;
    size_t n = strlen(s->last) + 2;
    char *out = malloc(n);
    if (out)
        snprintf(out, n, "%c%s", s->last_terminal ? 'T' : 'R', s->last);
    return out;
}

static int bc_stream_state_restore(void *state, const char *saved)
{
    bc_stream_state *s = state;
    if (s->kind != PROV_STREAM_EVENTS)
        return 0; /* the log tail is live only: nothing to restore */
    if (!saved || (saved[0] != 'T' && saved[0] != 'R') || strlen(saved + 1) >= sizeof s->last)
        return -1;
    snprintf(s->last, sizeof s->last, "%s", saved + 1);
    s->last_terminal = saved[0] == 'T';
    s->have_last = true;
    return 0;
}

/* A cursor taken after the terminal snapshot: nothing is left to follow,
 * so the generic stream ends at once instead of reconnecting only to be
 * sent that snapshot again. */
static bool bc_stream_state_complete(const void *state)
{
    const bc_stream_state *s = state;
    return s->kind == PROV_STREAM_EVENTS && s->have_last && s->last_terminal;
}

static int bc_stream_spec(prov_target *t, enum prov_stream_kind kind, const char *id,
                          prov_stream_spec *spec, prov_error *err)
{
    bc_cfg *c = cfg_of(t);
    prov_stream_spec_init(spec);
    if (kind == PROV_STREAM_EVENTS) {
        char esc[3 * BC_ID_MAX + 1];
        if (!id || !*id || strlen(id) >= BC_ID_MAX || prov_escape(esc, sizeof esc, id) != 0 ||
            (size_t)snprintf(spec->url, sizeof spec->url,
                             "%s/infrastructure/deployments/%s/events", c->api, esc) >=
                sizeof spec->url) {
            prov_error_set(err, "invalid_arguments", 0, false,
                           "deploymentId must be a BigCommerce deployment_uuid (from "
                           "create_preview or list_deployments)");
            return -1;
        }
    } else if ((size_t)snprintf(spec->url, sizeof spec->url, "%s/infrastructure/logs/%s/tail",
                                c->stream_api, c->project_esc) >= sizeof spec->url) {
        /* Runtime logs are per project: a deploymentId is not needed (and
         * the API has no per-deployment tail). */
        prov_error_set(err, "invalid_config", 0, false, "streamBaseUrl is too long");
        return -1;
    }
    bc_headers h;
    if (build_headers(t, &h, false, err) != 0)
        return -1;
    snprintf(spec->headers[0], sizeof spec->headers[0], "%s", h.auth);
    spec->nheaders = 1;
    /* No ids and no Last-Event-ID: reconnect live; snapshots are
     * de-duplicated here, log events are live only. */
    spec->resume = PROV_RESUME_LIVE;
    spec->reconnect = true;
    spec->ca_file = c->ca_file;
    return 0;
}

typedef struct bc_code {
    int code;
    const char *name;
    bool retryable;
    const char *message;
} bc_code;

static const bc_code bc_codes[] = {
    {10, "internal_error", false,
     "BigCommerce had an internal error while deploying (error code 10). Deploy again; if it "
     "keeps happening, contact BigCommerce support with the deployment id"},
    {20, "bundle_retrieval_failed", true,
     "BigCommerce could not retrieve the uploaded bundle (error code 20). This is usually "
     "transient: call create_preview again to upload and deploy anew"},
    {30, "bundle_extraction_failed", false,
     "BigCommerce could not extract the bundle (error code 30): the upload is not a readable "
     "zip archive. Rebuild it, or pass the build output directory and let deploy-mcp zip it"},
    {40, "invalid_build_output", false,
     "BigCommerce found the bundle's build output invalid (error code 40): it expects the "
     "build output (as `catalyst build` writes it) under a top-level output/ folder. Fix the "
     "build, then deploy again"},
    {50, "deploy_failed", true,
     "BigCommerce failed to deploy the bundle (error code 50). This is usually transient: "
     "deploy again"},
    {60, "deployment_url_unknown", false,
     "The bundle was deployed, but BigCommerce could not determine its URL (error code 60). "
     "The deployment is live on its project: find the URL in the BigCommerce control panel"},
};

static void code_error(int code, prov_error *e)
{
    for (size_t i = 0; i < sizeof bc_codes / sizeof bc_codes[0]; i++)
        if (bc_codes[i].code == code) {
            prov_error_set(e, bc_codes[i].name, 0, bc_codes[i].retryable, "%s",
                           bc_codes[i].message);
            return;
        }
    prov_error_set(e, "deployment_error", 0, false,
                   "BigCommerce reported error code %d for the deployment", code);
}

static void observe(prov_target *t, const char *id, prov_status st, const char *word,
                    const char *url, const prov_error *failure)
{
    bc_cfg *c = cfg_of(t);
    if (!c || !id || !*id)
        return;
    bc_record *r = record_find(c, id);
    if (!r && !(r = record_add(c, id)))
        return;
    if (st != PROV_ST_UNKNOWN)
        r->status = st;
    if (word)
        snprintf(r->provider_status, sizeof r->provider_status, "%s", word);
    if (url && *url)
        set_owned(&r->url, url);
    if (failure) {
        snprintf(r->err_code, sizeof r->err_code, "%s", failure->code);
        set_owned(&r->err_message, failure->message);
    }
}

static prov_status map_status(const char *word)
{
    if (!word)
        return PROV_ST_UNKNOWN;
    if (strcmp(word, "queued") == 0)
        return PROV_ST_QUEUED;
    if (strcmp(word, "in_progress") == 0)
        return PROV_ST_BUILDING;
    if (strcmp(word, "completed") == 0)
        return PROV_ST_READY;
    if (strcmp(word, "failed") == 0)
        return PROV_ST_FAILED;
    return PROV_ST_UNKNOWN;
}

static int parse_snapshot(prov_target *t, bc_stream_state *s, json_t *d, prov_emit_fn emit,
                          void *sink)
{
    const char *word = json_string_value(json_object_get(d, "deployment_status"));
    json_t *event = json_object_get(d, "event");
    const char *step = json_string_value(json_object_get(event, "step"));
    json_t *pj = json_object_get(event, "progress");
    double progress = json_is_number(pj) ? json_number_value(pj) : -1;
    json_t *ej = json_object_get(d, "error");
    bool has_err = json_is_object(ej);
    json_t *cj = json_object_get(ej, "code");
    int code = json_is_integer(cj) ? (int)json_integer_value(cj)
             : json_is_string(cj) ? atoi(json_string_value(cj)) : 0;

    char url[PROV_URL_MAX] = "";
    const char *du = json_string_value(json_object_get(d, "deployment_url"));
    const char *host = json_string_value(json_array_get(json_object_get(d,
                                                        "deployment_hostnames"), 0));
    if (du && *du)
        snprintf(url, sizeof url, "%s", du);
    else if (host && *host)
        snprintf(url, sizeof url, "%s%s", strstr(host, "://") ? "" : "https://", host);
    utf8_trim_cstr(url); /* a cut mid-character would make jansson drop the URL */

    /* The repeat-detection key hashes the whole snapshot, so two snapshots
     * that differ only in a long field stay distinct, and the key (which
     * travels in cursors) is plain ASCII whatever the platform sends. */
    char key[2 * TOOL_SHA256_LEN + 1];
    {
        char nums[64];
        snprintf(nums, sizeof nums, "|%g|%d|%d|", progress, has_err, code);
        const char *parts[] = {word ? word : "", "|", step ? step : "", nums, url};
        tool_sha256_ctx h;
        tool_sha256_init(&h);
        for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
            tool_sha256_update(&h, parts[i], strlen(parts[i]) + 1);
        unsigned char digest[TOOL_SHA256_LEN];
        tool_sha256_final(&h, digest);
        for (size_t i = 0; i < TOOL_SHA256_LEN; i++)
            snprintf(key + 2 * i, 3, "%02x", digest[i]);
    }
    prov_status st = map_status(word);
    bool terminal = st == PROV_ST_READY || st == PROV_ST_FAILED || has_err;
    if (s->have_last && strcmp(key, s->last) == 0)
        return terminal ? PROV_PARSE_END : PROV_PARSE_IGNORED; /* a reconnect's repeat */
    snprintf(s->last, sizeof s->last, "%s", key);
    s->have_last = true;
    s->last_terminal = terminal;

    prov_error failure;
    bool have_failure = false;
    if (has_err) {
        code_error(code, &failure);
        have_failure = true;
        /* "completed" with an error (code 60) is deployed all the same. */
        if (st != PROV_ST_READY)
            st = PROV_ST_FAILED;
    } else if (st == PROV_ST_FAILED) {
        prov_error_set(&failure, "deployment_failed", 0, false,
                       "the BigCommerce deployment failed without an error code; check the "
                       "bundle and deploy again");
        have_failure = true;
    }
    /* A queued deployment is at 0% and a completed one at 100% even when
     * the snapshot carries no step, so progress never has to restart. */
    if (progress < 0 && st == PROV_ST_QUEUED)
        progress = 0;
    if (progress < 0 && st == PROV_ST_READY)
        progress = 100;
    if (progress > 100)
        progress = 100;
    prov_event ev = {
        .kind = PROV_EV_STATUS, .status = st, .provider_status = word, .url = url[0] ? url : NULL,
        .progress = progress, .total = progress >= 0 ? 100 : -1, .step = step,
        .error = have_failure ? &failure : NULL,
    };
    observe(t, json_string_value(json_object_get(d, "deployment_uuid")), st, word,
            ev.url, ev.error);
    emit(sink, &ev);
    return terminal ? PROV_PARSE_END : PROV_PARSE_CONTINUE;
}

/* ---- runtime logs -------------------------------------------------------- */

static const char *norm_level(const char *w)
{
    if (!w)
        return "info";
    if (strcmp(w, "debug") == 0 || strcmp(w, "trace") == 0)
        return "debug";
    if (strcmp(w, "warn") == 0 || strcmp(w, "warning") == 0)
        return "warn";
    if (strcmp(w, "error") == 0 || strcmp(w, "fatal") == 0 || strcmp(w, "critical") == 0)
        return "error";
    return "info";
}

/* Lines of one log event, with the strings this file had to build. */
typedef struct bc_lines {
    prov_log_line *v;
    size_t n, cap;
    char **owned;
    size_t nowned;
} bc_lines;

static char *own(bc_lines *l, char *s)
{
    if (s)
        l->owned[l->nowned++] = s;
    return s;
}

static void add_line(bc_lines *l, const char *text, size_t len, const char *level,
                     const char *ts, const char *source)
{
    if (!text || l->n >= l->cap)
        return;
    l->v[l->n++] = (prov_log_line){.text = text, .len = len, .level = level, .ts = ts,
                                   .source = source};
}

/* A timestamp as ISO 8601: strings as they are; numbers as epoch seconds
 * (or milliseconds when that large). */
static const char *ts_of(bc_lines *l, json_t *v)
{
    if (json_is_string(v))
        return json_string_value(v);
    if (!json_is_number(v))
        return NULL;
    double x = json_number_value(v);
    if (x > 1e11)
        x /= 1000.0;
    time_t secs = (time_t)x;
    struct tm tm;
    char *buf = malloc(BC_TIME_MAX);
    if (!buf || !gmtime_r(&secs, &tm)) {
        free(buf);
        return NULL;
    }
    size_t n = strftime(buf, BC_TIME_MAX, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, BC_TIME_MAX - n, ".%03dZ", (int)((x - (double)secs) * 1000.0));
    return own(l, buf);
}

static bool seen_before(bc_stream_state *s, const char *uuid)
{
    if (!uuid || !*uuid || strlen(uuid) >= BC_ID_MAX)
        return false;
    for (size_t i = 0; i < s->seen_count; i++)
        if (strcmp(s->seen[i], uuid) == 0)
            return true;
    snprintf(s->seen[s->seen_next], BC_ID_MAX, "%s", uuid);
    s->seen_next = (s->seen_next + 1) % BC_LOG_SEEN;
    if (s->seen_count < BC_LOG_SEEN)
        s->seen_count++;
    return false;
}

static int parse_logs(bc_stream_state *s, json_t *d, prov_emit_fn emit, void *sink)
{
    /* Live only, but a server that re-sent an event after a reconnect must
     * not make it appear twice. */
    if (seen_before(s, json_string_value(json_object_get(d, "uuid"))))
        return PROV_PARSE_IGNORED;
    json_t *req = json_object_get(d, "request");
    json_t *logs = json_object_get(d, "logs");
    json_t *exc = json_object_get(d, "exceptions");
    size_t want = json_is_object(req) ? 1 : 0;
    size_t i, k;
    json_t *entry, *m;
    json_array_foreach(logs, i, entry)
        want += json_is_array(json_object_get(entry, "messages"))
                    ? json_array_size(json_object_get(entry, "messages")) : 0;
    want += json_array_size(exc);
    if (want == 0)
        return PROV_PARSE_IGNORED;
    if (want > BC_MAX_LINES_PER_EVENT)
        want = BC_MAX_LINES_PER_EVENT;
    bc_lines l = {.cap = want};
    l.v = calloc(want, sizeof *l.v);
    /* Each line owns at most a text and a timestamp. */
    l.owned = calloc(2 * want + 1, sizeof *l.owned);
    if (!l.v || !l.owned) {
        free(l.v);
        free(l.owned);
        return PROV_PARSE_IGNORED;
    }
    const char *event_ts = ts_of(&l, json_object_get(d, "timestamp"));
    if (json_is_object(req)) {
        const char *method = json_string_value(json_object_get(req, "method"));
        const char *url = json_string_value(json_object_get(req, "url"));
        json_t *sc = json_object_get(req, "status_code");
        char code[24] = "";
        if (json_is_integer(sc))
            snprintf(code, sizeof code, " %lld", (long long)json_integer_value(sc));
        else if (json_is_string(sc))
            snprintf(code, sizeof code, " %.16s", json_string_value(sc));
        size_t n = strlen(method ? method : "") + strlen(url ? url : "") + sizeof code + 2;
        char *text = own(&l, malloc(n));
        if (text) {
            snprintf(text, n, "%s%s%s%s", method ? method : "", method && url ? " " : "",
                     url ? url : "", code);
            add_line(&l, text, strlen(text), "info", event_ts, "request");
        }
    }
    json_array_foreach(logs, i, entry) {
        const char *level = norm_level(json_string_value(json_object_get(entry, "level")));
        const char *ts = ts_of(&l, json_object_get(entry, "timestamp"));
        if (!ts)
            ts = event_ts;
        json_array_foreach(json_object_get(entry, "messages"), k, m) {
            if (json_is_string(m)) {
                add_line(&l, json_string_value(m), json_string_length(m), level, ts, "worker");
            } else {
                char *text = own(&l, json_dumps(m, JSON_COMPACT | JSON_ENCODE_ANY));
                if (text)
                    add_line(&l, text, strlen(text), level, ts, "worker");
            }
        }
    }
    json_array_foreach(exc, i, entry) {
        const char *name = json_string_value(json_object_get(entry, "name"));
        const char *msg = json_string_value(json_object_get(entry, "message"));
        const char *ts = ts_of(&l, json_object_get(entry, "timestamp"));
        size_t n = strlen(name ? name : "Error") + strlen(msg ? msg : "") + 3;
        char *text = own(&l, malloc(n));
        if (text) {
            snprintf(text, n, "%s: %s", name ? name : "Error", msg ? msg : "");
            add_line(&l, text, strlen(text), "error", ts ? ts : event_ts, "exception");
        }
    }
    int r = PROV_PARSE_IGNORED;
    if (l.n > 0) {
        prov_event ev = {.kind = PROV_EV_LOG, .status = PROV_ST_UNKNOWN, .progress = -1,
                         .total = -1, .lines = l.v, .nlines = l.n};
        emit(sink, &ev);
        r = PROV_PARSE_CONTINUE;
    }
    for (i = 0; i < l.nowned; i++)
        free(l.owned[i]);
    free(l.owned);
    free(l.v);
    return r;
}

static int bc_stream_parse(prov_target *t, void *state, enum prov_stream_kind kind,
                           const sse_event *ev, prov_emit_fn emit, void *sink, prov_error *err)
{
    (void)err;
    bc_stream_state *s = state;
    if (!s)
        return PROV_PARSE_IGNORED;
    json_t *d = prov_json_parse(ev->data, ev->data_len);
    if (!json_is_object(d)) {
        log_warn("bigcommerce: skipped a %s event whose data is not a JSON object", ev->type);
        json_decref(d);
        return PROV_PARSE_IGNORED;
    }
    int r = kind == PROV_STREAM_EVENTS ? parse_snapshot(t, s, d, emit, sink)
                                       : parse_logs(s, d, emit, sink);
    json_decref(d);
    return r;
}

/* ---- human-gated production publish --------------------------------------- */

static prov_op *bc_prepare_publish(prov_target *t, const char *source_id, prov_result_cb cb,
                                   void *ud, prov_error *err)
{
    bc_cfg *c = cfg_of(t);
    if (!c->production_project_uuid) {
        prov_error_set(err, "no_production_project", 0, false,
                       "target \"%s\" has no productionProjectUuid: add the UUID of the "
                       "production project to it in the config, then request the publish again",
                       t->cfg->name);
        return NULL;
    }
    bc_record *r = record_find(c, source_id);
    if (!r || !r->upload_uuid[0]) {
        prov_error_set(err, "unknown_source", 0, false,
                       "deployment %s was not created by this deploy-mcp process, so its "
                       "upload is unknown (BigCommerce has no API to look it up): deploy the "
                       "bundle again with create_preview and publish that deployment",
                       source_id);
        return NULL;
    }
    if (r->status != PROV_ST_READY) {
        prov_error_set(err, "source_not_ready", 0, false,
                       "deployment %s is not ready (last seen: %s): follow it with "
                       "stream_events until it is ready, then request the publish",
                       source_id, prov_status_name(r->status));
        return NULL;
    }
    char plan[1024];
    snprintf(plan, sizeof plan,
             "deploy upload %s%s%.12s%s to production project %s (the same bundle as preview "
             "deployment %s)", r->upload_uuid, r->digest[0] ? " (artifact sha256 " : "",
             r->digest, r->digest[0] ? "…)" : "", c->production_project_uuid, r->id);
    json_t *source = json_pack("{s:s, s:s, s:s}", "uploadUuid", r->upload_uuid,
                               "productionProject", c->production_project_uuid,
                               "sourceDeploymentId", r->id);
    if (source && r->digest[0])
        json_object_set_new(source, "artifactDigest", json_string(r->digest));
    if (source && r->url)
        json_object_set_new(source, "url", json_string(r->url));
    prov_op *op = prov_op_new(t, cb, ud, NULL, NULL);
    json_t *result = json_pack("{s:s, s:o}", "plan", plan, "source", source);
    if (!op || !result) {
        json_decref(result);
        prov_op_cancel(op);
        prov_error_set(err, "internal_error", 0, true, "out of memory");
        return NULL;
    }
    prov_op_succeed_later(op, result);
    return op;
}

static prov_op *bc_publish(prov_target *t, json_t *source, prov_result_cb cb, void *ud,
                           prov_error *err)
{
    bc_cfg *c = cfg_of(t);
    const char *upload = json_string_value(json_object_get(source, "uploadUuid"));
    const char *project = json_string_value(json_object_get(source, "productionProject"));
    if (!upload || strlen(upload) >= BC_ID_MAX || !project || !c->production_project_uuid ||
        strcmp(project, c->production_project_uuid) != 0) {
        /* The config changed since the human approved: do not publish
         * somewhere they did not see. */
        prov_error_set(err, "publish_mismatch", 0, false,
                       "the approved request names production project %s, but the target now "
                       "has %s; nothing was published: request the publish again",
                       project ? project : "(none)",
                       c->production_project_uuid ? c->production_project_uuid : "none");
        return NULL;
    }
    bc_create *st = calloc(1, sizeof *st);
    if (!st) {
        prov_error_set(err, "internal_error", 0, true, "out of memory");
        return NULL;
    }
    st->production = true;
    snprintf(st->upload_uuid, sizeof st->upload_uuid, "%s", upload);
    const char *digest = json_string_value(json_object_get(source, "artifactDigest"));
    snprintf(st->digest, sizeof st->digest, "%s", digest ? digest : "");
    prov_op *op = prov_op_new(t, cb, ud, st, bc_create_free);
    if (!op) {
        prov_error_set(err, "internal_error", 0, true, "out of memory");
        return NULL;
    }
    start_create(op);
    return op;
}

const struct provider prov_bigcommerce = {
    .name = "bigcommerce",
    .display_name = "BigCommerce",
    /* request_publish goes through deploy-mcp's approval gate. */
    .caps = PROV_CAP_CREATE_PREVIEW | PROV_CAP_REQUEST_PUBLISH | PROV_CAP_STREAM_EVENTS |
            PROV_CAP_TAIL_LOGS | PROV_CAP_GET | PROV_CAP_LIST,
    .logs_need_deployment = false,
    .local_records_only = true,
    .native_idempotency = false,
    .configure = bc_configure,
    .unconfigure = bc_unconfigure,
    .credentials_ok = bc_credentials_ok,
    .unsupported_hint = bc_unsupported_hint,
    .create_preview = bc_create_preview,
    .request_publish = NULL,
    .get_deployment = bc_get_deployment,
    .list_deployments = bc_list_deployments,
    .stream_spec = bc_stream_spec,
    .stream_state_new = bc_stream_state_new,
    .stream_state_free = bc_stream_state_free,
    .stream_state_save = bc_stream_state_save,
    .stream_state_restore = bc_stream_state_restore,
    .stream_parse = bc_stream_parse,
    .map_http_error = bc_map_http_error,
    .stream_state_complete = bc_stream_state_complete,
    .prepare_publish = bc_prepare_publish,
    .publish = bc_publish,
};

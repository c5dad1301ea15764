/* mixpeek.c — the Mixpeek Apps ("Canvas") adapter (PROVIDERS.md, "Mixpeek").
 *
 * Mixpeek deploys a zipped bundle: ask for a signed upload URL, PUT the zip
 * there, then start a deploy of the uploaded key. Preview = environment
 * "staging" (always sent: the documented default changed between API
 * versions). Production publishes go through deploy-mcp's own approval gate
 * (tools/gate.h): prepare_publish accepts only a preview deploy this process
 * created (it knows the bundle key; Mixpeek has no API that says which bundle
 * a deploy used) and that GET reports `complete`; after a human approved,
 * publish deploys the same bundle_s3_key with environment "production". That
 * is why every deploy this process creates is remembered with its key.
 *
 * There is no list endpoint for deploys. list_deployments merges the app's
 * versions (GET /versions) with the deploys this process created, and says
 * so in a note; a version's status is reported only when Mixpeek gives one.
 *
 * The deploy log (SSE) replays every earlier line on each connection and has
 * no ids, so it runs with PROV_RESUME_REPLAY: the generic stream skips what
 * was already consumed, on reconnects and when resuming from a cursor. It
 * ends with `event: done`, which says nothing about the outcome: the tool
 * layer then looks the deploy up (get_deployment) for the final status. */
#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mcp/log.h"
#include "providers/b64.h"
#include "providers/provider.h"
#include "providers/utf8.h"
#include "providers/zip.h"

#define MX_DEFAULT_BASE "https://api.mixpeek.com"
#define MX_DEFAULT_TOKEN_ENV "MIXPEEK_API_KEY"
#define MX_TIMEOUT_MS 30000
/* A bundle upload can be large and storage slow; the signed URL itself is
 * short-lived, so there is no point waiting longer than this. */
#define MX_UPLOAD_TIMEOUT_MS (10 * 60 * 1000)
#define MX_RETRIES 3
/* Mixpeek documents no bundle limit; this cap keeps an agent from zipping a
 * whole home directory by mistake. */
#define MX_MAX_BUNDLE_BYTES ((uint64_t)512 << 20)
#define MX_MAX_RECORDS 512          /* deploys remembered per target */
#define MX_MAX_VERSIONS 1000        /* versions considered per list call */
#define MX_UPLOAD_URL_MAX 8192      /* signed URLs carry long query strings */
#define MX_ID_MAX 256
#define MX_KEY_MAX 1024             /* bundle_s3_key */
#define MX_MESSAGE_MAX 1024
#define MX_FILENAME_MAX 255
#define MX_TS_MAX 40
#define MX_WORD_MAX 64
#define MX_DETAIL_MAX 600           /* upstream text quoted in one error message */
#define MX_CURSOR_MAX 1024
#define MX_DEFAULT_MESSAGE "Preview deployed by deploy-mcp"
#define MX_CURSOR_PREFIX "mx1."
#define MX_REDACTED "[redacted]"

/* A deploy created by this process. */
typedef struct mx_record {
    char *deploy_id;
    char *bundle_key;          /* the key the approval gate will publish */
    char *message;
    char digest[ZIP_DIGEST_HEX + 1];    /* SHA-256 of the uploaded zip, or "" */
    char environment[16];      /* "preview" | "production" */
    char created_at[MX_TS_MAX];
    char provider_status[MX_WORD_MAX];  /* as last observed */
} mx_record;

typedef struct mx_cfg {
    const char *base;          /* no trailing slash */
    const char *app_id;
    const char *token_env;
    const char *ns;            /* X-Namespace, or NULL */
    const char *ca_file;
    mx_record *recs;           /* oldest first */
    size_t nrecs;
} mx_cfg;

static mx_cfg *cfg_of(const prov_target *t) { return t->priv; }

/* ---- small helpers ------------------------------------------------------- */

/* Replaces every occurrence of `secret` in msg (capacity cap) with
 * MX_REDACTED. Upstream text is quoted in error messages, and a platform may
 * echo what it was sent; a key or signature must never reach a result. */
static void redact(char *msg, size_t cap, const char *secret)
{
    size_t sl = secret ? strlen(secret) : 0;
    if (sl < 4 || !strstr(msg, secret))
        return;
    char out[PROV_ERR_MSG_MAX];
    size_t o = 0;
    for (const char *p = msg; *p && o + 1 < sizeof out;) {
        if (strncmp(p, secret, sl) == 0) {
            size_t rl = strlen(MX_REDACTED);
            if (o + rl >= sizeof out)
                break;
            memcpy(out + o, MX_REDACTED, rl);
            o += rl;
            p += sl;
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
    snprintf(msg, cap, "%s", out);
}

static void redact_error(const prov_target *t, prov_error *e)
{
    redact(e->message, sizeof e->message, prov_secret(cfg_of(t)->token_env));
}

/* Copies at most max bytes of a valid UTF-8 string without cutting a
 * character. */
static char *dup_capped(const char *s, size_t max)
{
    if (!s)
        return NULL;
    size_t n = utf8_truncate(s, strlen(s), max);
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* Seconds since the epoch → "2024-03-29T19:40:00.123Z" (UTC, milliseconds).
 * Returns false for values no calendar can show. */
static bool iso_from_seconds(double secs, char *out, size_t n)
{
    /* year 1970 .. 9999: what the format can carry */
    if (!isfinite(secs) || secs < 0 || secs >= 253402300800.0)
        return false;
    long long ms = llround(secs * 1000.0);
    time_t whole = (time_t)(ms / 1000);
    struct tm tm;
    if (!gmtime_r(&whole, &tm))
        return false;
    return (size_t)snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                            tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                            (int)(ms % 1000)) < n;
}

static int parse_digits(const char **p, int count)
{
    int v = 0;
    for (int i = 0; i < count; i++, (*p)++) {
        if (!isdigit((unsigned char)**p))
            return -1;
        v = v * 10 + (**p - '0');
    }
    return v;
}

/* "YYYY-MM-DD[T ]HH:MM:SS[.frac][Z|±HH[:]MM]" (no zone = UTC) → seconds. */
static bool parse_iso(const char *s, double *out)
{
    const char *p = s;
    int Y = parse_digits(&p, 4);
    if (Y < 0 || *p++ != '-')
        return false;
    int M = parse_digits(&p, 2);
    if (M < 1 || M > 12 || *p++ != '-')
        return false;
    int D = parse_digits(&p, 2);
    if (D < 1 || D > 31 || (*p != 'T' && *p != 't' && *p != ' '))
        return false;
    p++;
    int h = parse_digits(&p, 2);
    if (h < 0 || h > 23 || *p++ != ':')
        return false;
    int mi = parse_digits(&p, 2);
    if (mi < 0 || mi > 59 || *p++ != ':')
        return false;
    int sec = parse_digits(&p, 2);
    if (sec < 0 || sec > 60)
        return false;
    double frac = 0, scale = 0.1;
    if (*p == '.' || *p == ',') {
        p++;
        if (!isdigit((unsigned char)*p))
            return false;
        for (; isdigit((unsigned char)*p); p++, scale /= 10)
            frac += (*p - '0') * scale;
    }
    long offset = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1;
        int oh = parse_digits(&p, 2);
        if (*p == ':')
            p++;
        int om = parse_digits(&p, 2);
        if (oh < 0 || oh > 23 || om < 0 || om > 59)
            return false;
        offset = sign * (oh * 3600L + om * 60L);
    }
    if (*p)
        return false;
    struct tm tm = {0};
    tm.tm_year = Y - 1900;
    tm.tm_mon = M - 1;
    tm.tm_mday = D;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return false;
    *out = (double)t - (double)offset + frac;
    return true;
}

/* A timestamp as Mixpeek may give it (seconds as a number, as the log
 * stream does; milliseconds when implausibly large; or an ISO string) in one
 * normalized shape, so that list entries sort as strings. Unparsable strings
 * are kept verbatim. Returns false when there is nothing usable. */
static bool ts_normalize(json_t *v, char *out, size_t n)
{
    if (json_is_number(v)) {
        double s = json_number_value(v);
        if (s > 1e11)   /* milliseconds: seconds would be past year 5000 */
            s /= 1000.0;
        return iso_from_seconds(s, out, n);
    }
    const char *str = json_string_value(v);
    if (!str || !*str)
        return false;
    double secs;
    if (parse_iso(str, &secs) && iso_from_seconds(secs, out, n))
        return true;
    size_t k = utf8_truncate(str, strlen(str), n - 1);
    memcpy(out, str, k);
    out[k] = '\0';
    return true;
}

static void now_iso(char *out, size_t n)
{
    uv_timeval64_t tv;
    if (uv_gettimeofday(&tv) != 0 ||
        !iso_from_seconds((double)tv.tv_sec + tv.tv_usec / 1e6, out, n))
        snprintf(out, n, "%s", "");
}

/* ---- status and environment words ---------------------------------------- */

/* queued|building|complete|failed (PROVIDERS.md); complete → ready. Any
 * other word stays unknown rather than being guessed. */
static prov_status mx_status(const char *word)
{
    if (!word)
        return PROV_ST_UNKNOWN;
    if (strcmp(word, "queued") == 0)
        return PROV_ST_QUEUED;
    if (strcmp(word, "building") == 0)
        return PROV_ST_BUILDING;
    if (strcmp(word, "complete") == 0)
        return PROV_ST_READY;
    if (strcmp(word, "failed") == 0)
        return PROV_ST_FAILED;
    return PROV_ST_UNKNOWN;
}

/* staging → preview; production → production. NULL when unknown. */
static const char *mx_environment(const char *word)
{
    if (!word)
        return NULL;
    if (strcmp(word, "staging") == 0)
        return "preview";
    if (strcmp(word, "production") == 0)
        return "production";
    return NULL;
}

/* ---- records of this process's deploys ---------------------------------- */

static void record_clear(mx_record *r)
{
    free(r->deploy_id);
    free(r->bundle_key);
    free(r->message);
    memset(r, 0, sizeof *r);
}

static mx_record *record_find(const prov_target *t, const char *id)
{
    mx_cfg *c = cfg_of(t);
    for (size_t i = c->nrecs; id && i-- > 0;)
        if (strcmp(c->recs[i].deploy_id, id) == 0)
            return &c->recs[i];
    return NULL;
}

/* Remembers a deploy; the oldest is forgotten once MX_MAX_RECORDS are kept.
 * Returns the new record (NULL when not added). */
static mx_record *record_add(prov_target *t, const char *id, const char *bundle_key,
                             const char *message, const char *environment,
                             const char *provider_status)
{
    mx_cfg *c = cfg_of(t);
    if (!id || !*id || record_find(t, id))
        return NULL;
    if (!c->recs && !(c->recs = calloc(MX_MAX_RECORDS, sizeof *c->recs)))
        return NULL;
    if (c->nrecs == MX_MAX_RECORDS) {
        record_clear(&c->recs[0]);
        memmove(&c->recs[0], &c->recs[1], (MX_MAX_RECORDS - 1) * sizeof *c->recs);
        c->nrecs--;
        memset(&c->recs[c->nrecs], 0, sizeof *c->recs);
    }
    mx_record *r = &c->recs[c->nrecs];
    r->deploy_id = dup_capped(id, MX_ID_MAX);
    r->bundle_key = dup_capped(bundle_key ? bundle_key : "", MX_KEY_MAX);
    r->message = dup_capped(message ? message : "", MX_MESSAGE_MAX);
    if (!r->deploy_id || !r->bundle_key || !r->message) {
        record_clear(r);
        return NULL;
    }
    snprintf(r->environment, sizeof r->environment, "%s", environment ? environment : "preview");
    snprintf(r->provider_status, sizeof r->provider_status, "%s",
             provider_status ? provider_status : "queued");
    now_iso(r->created_at, sizeof r->created_at);
    c->nrecs++;
    return r;
}

static void record_set_digest(mx_record *r, const char *digest)
{
    if (r)
        snprintf(r->digest, sizeof r->digest, "%s", digest ? digest : "");
}

/* ---- configuration ------------------------------------------------------- */

static int mx_configure(prov_target *t, char *err, size_t errlen)
{
    mx_cfg *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    t->priv = c;
    c->base = cfg_str(t->cfg, "baseUrl", MX_DEFAULT_BASE);
    c->app_id = cfg_str(t->cfg, "appId", NULL);
    c->token_env = cfg_str(t->cfg, "tokenEnv", MX_DEFAULT_TOKEN_ENV);
    c->ns = cfg_str(t->cfg, "namespace", NULL);
    c->ca_file = cfg_str(t->cfg, "caFile", NULL);
    json_t *ns = json_object_get(t->cfg->obj, "namespace");
    if (!c->app_id || !*c->app_id || strlen(c->app_id) > MX_ID_MAX) {
        snprintf(err, errlen, "field \"appId\": required for provider mixpeek (a string of "
                              "at most %d characters such as \"app_abc123\")", MX_ID_MAX);
        return -1;
    }
    if ((ns && !json_is_null(ns) && !json_is_string(ns)) || (c->ns && !*c->ns) ||
        (c->ns && strlen(c->ns) > MX_ID_MAX)) {
        snprintf(err, errlen, "field \"namespace\": must be a non-empty string (sent as "
                              "X-Namespace) or left out");
        return -1;
    }
    return 0;
}

static void mx_unconfigure(prov_target *t)
{
    mx_cfg *c = t->priv;
    if (c) {
        for (size_t i = 0; i < c->nrecs; i++)
            record_clear(&c->recs[i]);
        free(c->recs);
    }
    free(c);
    t->priv = NULL;
}

static bool mx_credentials_ok(const prov_target *t, char *problem, size_t n)
{
    if (prov_secret(cfg_of(t)->token_env))
        return true;
    snprintf(problem, n, "environment variable %s is not set: export your Mixpeek API key "
                         "in it", cfg_of(t)->token_env);
    return false;
}

static const char *mx_unsupported_hint(const char *tool)
{
    /* Mixpeek offers every tool; this is what request_publish means there. */
    (void)tool;
    return "Mixpeek has no approval concept of its own: request_publish on Mixpeek goes "
           "through deploy-mcp's own approval gate. It takes a preview deploy (Mixpeek "
           "environment staging) that this deploy-mcp created with create_preview and that is "
           "ready, and returns the URL of deploy-mcp's approval page; after a human approves "
           "there, deploy-mcp deploys the same bundle to production.";
}

/* ---- requests ------------------------------------------------------------ */

typedef struct mx_headers {
    char auth[PROV_HEADER_MAX];
    char ns[PROV_HEADER_MAX];
    const char *list[6];
} mx_headers;

static int build_headers(const prov_target *t, mx_headers *h, bool json_body, prov_error *err)
{
    const mx_cfg *c = cfg_of(t);
    const char *key = prov_secret(c->token_env);
    if (!key) {
        prov_error_set(err, "missing_credentials", 0, false,
                       "environment variable %s is not set: export your Mixpeek API key in it "
                       "and restart deploy-mcp", c->token_env);
        return -1;
    }
    if ((size_t)snprintf(h->auth, sizeof h->auth, "Authorization: Bearer %s", key) >=
        sizeof h->auth) {
        prov_error_set(err, "invalid_credentials", 0, false,
                       "the Mixpeek API key in %s is too long", c->token_env);
        return -1;
    }
    int n = 0;
    h->list[n++] = h->auth;
    h->list[n++] = "Accept: application/json";
    if (json_body)
        h->list[n++] = "Content-Type: application/json";
    if (c->ns) {
        snprintf(h->ns, sizeof h->ns, "X-Namespace: %s", c->ns);
        h->list[n++] = h->ns;
    }
    h->list[n] = NULL;
    return 0;
}

/* {base}/v1/apps/{app_id}{suffix}[{escaped id}{suffix2}] */
static int app_url(const prov_target *t, char *url, size_t n, const char *suffix,
                   const char *id, const char *suffix2, prov_error *err)
{
    char app[3 * MX_ID_MAX + 1], esc[3 * MX_ID_MAX + 1] = "";
    if (prov_escape(app, sizeof app, cfg_of(t)->app_id) != 0) {
        prov_error_set(err, "invalid_config", 0, false, "the Mixpeek appId is too long");
        return -1;
    }
    if (id && (!*id || strlen(id) > MX_ID_MAX || prov_escape(esc, sizeof esc, id) != 0)) {
        prov_error_set(err, "invalid_arguments", 0, false,
                       "deploymentId must be a Mixpeek deploy_id (from create_preview or "
                       "list_deployments), at most %d characters", MX_ID_MAX);
        return -1;
    }
    if ((size_t)snprintf(url, n, "%s/v1/apps/%s%s%s%s", cfg_of(t)->base, app, suffix, esc,
                         suffix2 ? suffix2 : "") >= n) {
        prov_error_set(err, "invalid_config", 0, false, "the Mixpeek URL is too long");
        return -1;
    }
    return 0;
}

/* The object a success answer carries: the body itself, or its "data". */
static json_t *payload(json_t *root)
{
    json_t *d = json_object_get(root, "data");
    if (json_is_object(d) && !json_object_get(root, "deploy_id") &&
        !json_object_get(root, "upload_url"))
        return d;
    return root;
}

/* The HTTP status Mixpeek means for an error type, 0 when not one we know. */
static long type_status(const char *type)
{
    static const struct { const char *type; long status; } known[] = {
        {"BadRequestError", 400},       {"UnauthorizedError", 403},
        {"NotFoundError", 404},         {"AlreadyExistsError", 409},
        {"ValidationError", 422},       {"TooManyRequestsError", 429},
        {"TimeoutError", 408},          {"InternalServerError", 500},
    };
    for (size_t i = 0; type && i < sizeof known / sizeof known[0]; i++)
        if (strcmp(known[i].type, type) == 0)
            return known[i].status;
    return 0;
}

static const char *status_type(long status)
{
    switch (status) {
    case 400: return "BadRequestError";
    case 401:
    case 403: return "UnauthorizedError";
    case 404: return "NotFoundError";
    case 408: return "TimeoutError";
    case 409: return "AlreadyExistsError";
    case 422: return "ValidationError";
    case 429: return "TooManyRequestsError";
    default: return status >= 500 ? "InternalServerError" : "HttpError";
    }
}

/* Maps Mixpeek's error envelope
 * {"success":false,"status":N,"error":{"message","type","code"?,"details"?}}
 * (or a transport failure) to a prov_error whose code is Mixpeek's type. */
static void map_error(const prov_target *t, const http_response *res, prov_error *e)
{
    if (res->status == 0) {
        prov_network_error(e, t, res);
        return;
    }
    const mx_cfg *c = cfg_of(t);
    json_t *root = prov_json_parse(res->body, res->body_len);
    json_t *err = json_object_get(root, "error");
    const char *type = json_string_value(json_object_get(err, "type"));
    const char *msg = json_string_value(json_object_get(err, "message"));
    if (!msg)   /* FastAPI's own answers (e.g. 405) carry {"detail": "..."} */
        msg = json_string_value(json_object_get(root, "detail"));
    json_t *jcode = json_object_get(err, "code");
    char code[MX_WORD_MAX] = "";
    if (json_is_string(jcode))
        snprintf(code, sizeof code, "%s", json_string_value(jcode));
    else if (json_is_integer(jcode))
        snprintf(code, sizeof code, "%lld", (long long)json_integer_value(jcode));
    long kind = type_status(type);
    if (!kind)
        kind = res->status == 401 ? 403 : res->status;
    if (!type || !type_status(type) || strlen(type) >= PROV_ERR_CODE_MAX)
        type = status_type(kind);

    char detail[MX_DETAIL_MAX];
    snprintf(detail, sizeof detail, "%s%s%s%s", msg ? msg : "no details given",
             code[0] ? " [code " : "", code, code[0] ? "]" : "");
    switch (kind) {
    case 403:
        prov_error_set(e, type, res->status, false,
                       "Mixpeek refused the API key (HTTP %ld %s: %s). The key in environment "
                       "variable %s is missing, wrong or revoked, or has no access to app %s%s%s. "
                       "Put a valid Mixpeek API key in %s and restart deploy-mcp.",
                       res->status, type, detail, c->token_env, c->app_id,
                       c->ns ? " in namespace " : "", c->ns ? c->ns : "", c->token_env);
        break;
    case 404:
        prov_error_set(e, type, res->status, false,
                       "Mixpeek has no such app or deploy (HTTP %ld %s: %s). Check the "
                       "target's appId \"%s\"%s%s and the deploymentId (from create_preview "
                       "or list_deployments).",
                       res->status, type, detail, c->app_id,
                       c->ns ? " and namespace " : "", c->ns ? c->ns : "");
        break;
    case 409:
        prov_error_set(e, type, res->status, false,
                       "Mixpeek refused: it already exists or conflicts with another deploy "
                       "(HTTP %ld %s: %s). If a deploy of this app is still running, follow it "
                       "with stream_events and try again once it has finished.",
                       res->status, type, detail);
        break;
    case 422: {
        char details[MX_DETAIL_MAX] = "";
        json_t *d = json_object_get(err, "details");
        char *dtext = d && !json_is_null(d) ? json_dumps(d, JSON_COMPACT | JSON_ENCODE_ANY)
                                            : NULL;
        if (dtext) {
            size_t k = utf8_truncate(dtext, strlen(dtext), sizeof details - 1);
            memcpy(details, dtext, k);
            details[k] = '\0';
        }
        free(dtext);
        prov_error_set(e, type, res->status, false,
                       "Mixpeek rejected the request as invalid (HTTP %ld %s: %s)%s%s. Fix the "
                       "arguments (or the bundle) and call again.",
                       res->status, type, detail, details[0] ? "; details: " : "", details);
        break;
    }
    case 429:
        /* No Retry-After is documented, so the HTTP layer did not retry:
         * tell the model how long a per-route limit (e.g. 60/min) lasts. */
        prov_error_set(e, type, res->status, true,
                       "Mixpeek's rate limit for this route was reached (HTTP %ld %s: %s). "
                       "Limits are per route and per minute, and Mixpeek gives no Retry-After: "
                       "wait about a minute before calling again.",
                       res->status, type, detail);
        break;
    case 408:
        prov_error_set(e, type, res->status, true,
                       "Mixpeek timed out handling the request (HTTP %ld %s: %s); try again.",
                       res->status, type, detail);
        break;
    case 400:
        prov_error_set(e, type, res->status, false,
                       "Mixpeek rejected the request (HTTP %ld %s: %s).", res->status, type,
                       detail);
        break;
    default:
        prov_error_set(e, type, res->status, res->status >= 500,
                       "Mixpeek answered HTTP %ld %s: %s%s", res->status, type, detail,
                       res->status >= 500 ? ". This is on Mixpeek's side; try again shortly."
                                          : "");
        break;
    }
    redact_error(t, e);
    json_decref(root);
}

static void mx_map_http_error(prov_target *t, const http_response *res, prov_error *e)
{
    map_error(t, res, e);
}

/* A 2xx whose body says success:false is still a failure. */
static bool answered_ok(const http_response *res, json_t *root)
{
    return res->status >= 200 && res->status < 300 &&
           !json_is_false(json_object_get(root, "success"));
}

/* A Deployment (PRODUCT.md §3) from Mixpeek's deploy object, completed from
 * this process's record of it when the platform leaves fields out. */
static json_t *to_deployment(const prov_target *t, json_t *d)
{
    const char *id = json_string_value(json_object_get(d, "deploy_id"));
    mx_record *rec = record_find(t, id);
    const char *word = json_string_value(json_object_get(d, "status"));
    const char *env_word = json_string_value(json_object_get(d, "environment"));
    const char *env = mx_environment(env_word);
    if (!env)
        env = rec ? rec->environment : "preview";
    char created[MX_TS_MAX] = "";
    if (!ts_normalize(json_object_get(d, "queued_at"), created, sizeof created) &&
        !ts_normalize(json_object_get(d, "created_at"), created, sizeof created) && rec)
        snprintf(created, sizeof created, "%s", rec->created_at);
    json_t *dep = prov_deployment(t, id, env, mx_status(word), word, NULL,
                                  created[0] ? created : NULL);
    if (!dep)
        return NULL;
    if (env_word)
        json_object_set_new(dep, "providerEnvironment", json_string(env_word));
    const char *message = json_string_value(json_object_get(d, "message"));
    if (!message && rec && rec->message[0])
        message = rec->message;
    if (message)
        json_object_set_new(dep, "message", json_string(message));
    json_t *err = json_object_get(d, "error");
    const char *emsg = json_string_value(err);
    if (json_is_object(err))
        emsg = json_string_value(json_object_get(err, "message"));
    if (emsg && *emsg)
        json_object_set_new(dep, "error", json_pack("{s:s, s:s}", "code", "deploy_failed",
                                                    "message", emsg));
    else if (mx_status(word) == PROV_ST_FAILED)
        json_object_set_new(dep, "error", json_pack("{s:s, s:s}", "code", "deploy_failed",
                                                    "message", "the Mixpeek deploy failed"));
    if (rec && word)
        snprintf(rec->provider_status, sizeof rec->provider_status, "%s", word);
    return dep;
}

/* Starts one JSON request of an op. Returns 0, or -1 with *err filled. */
static int op_request(prov_op *op, const char *method, const char *url, const char *body,
                      bool idempotent, prov_op_step_fn step, prov_error *err)
{
    prov_target *t = prov_op_target(op);
    mx_headers h;
    if (build_headers(t, &h, body != NULL, err) != 0)
        return -1;
    http_opts o = {
        .method = method, .url = url, .headers = h.list, .body = body,
        .body_len = body ? strlen(body) : 0, .timeout_ms = MX_TIMEOUT_MS,
        .idempotent = idempotent, .max_retries = idempotent ? MX_RETRIES : 0,
        .ca_file = cfg_of(t)->ca_file,
    };
    if (prov_op_http(op, &o, step) != 0) {
        prov_error_set(err, "internal_error", 0, true, "could not start the request to Mixpeek");
        return -1;
    }
    return 0;
}

/* ---- create_preview: zip → upload-url → PUT → deploy --------------------- */

typedef struct mx_create {
    prov_op *op;
    zip_job *zip;
    bool zip_done;             /* its callback ran: free, do not cancel */
    char *artifact;
    char *zip_path;
    char *filename;
    char *message;
    char *upload_url;          /* signed: never logged, never in a message */
    char *bundle_key;
    char digest[ZIP_DIGEST_HEX + 1];
    long expires_in;
} mx_create;

static void create_free(void *p)
{
    mx_create *st = p;
    if (!st)
        return;
    if (st->zip) {
        if (st->zip_done)
            zip_job_free(st->zip);
        else
            zip_job_cancel(st->zip);
    }
    if (st->upload_url) {
        memset(st->upload_url, 0, strlen(st->upload_url));
        free(st->upload_url);
    }
    free(st->artifact);
    free(st->zip_path);
    free(st->filename);
    free(st->message);
    free(st->bundle_key);
    free(st);
}

/* The name Mixpeek is told: the artifact's base name, ".zip" added for a
 * directory. */
static char *bundle_filename(const char *artifact)
{
    const char *base = strrchr(artifact, '/');
    base = base && base[1] ? base + 1 : artifact;
    size_t bl = strlen(base);
    bool has_zip = bl > 4 && strcmp(base + bl - 4, ".zip") == 0;
    size_t keep = bl > MX_FILENAME_MAX - 4 ? MX_FILENAME_MAX - 4 : bl;
    keep = utf8_truncate(base, bl, keep);
    char *out = malloc(keep + 5);
    if (out)
        snprintf(out, keep + 5, "%.*s%s", (int)keep, base, has_zip && keep == bl ? "" : ".zip");
    return out;
}

/* Completes an op whose answer is a new deploy (preview or production):
 * records it with its bundle and digest and answers with the Deployment.
 * `env` NULL takes the environment from the answer (default preview);
 * `from` (may be NULL) is the preview a production deploy promotes. */
static void finish_deploy(prov_op *op, const http_response *res, const char *bundle_key,
                          const char *message, const char *digest, const char *env,
                          const char *from)
{
    prov_target *t = prov_op_target(op);
    prov_error e;
    json_t *root = prov_json_parse(res->body, res->body_len);
    if (!answered_ok(res, root)) {
        json_decref(root);
        map_error(t, res, &e);
        prov_op_fail(op, &e);
        return;
    }
    json_t *d = payload(root);
    const char *id = json_string_value(json_object_get(d, "deploy_id"));
    if (!id || !*id) {
        json_decref(root);
        prov_error_set(&e, "bad_response", res->status, false,
                       "Mixpeek accepted the %sdeploy but its answer carries no deploy_id; "
                       "look for it in the Mixpeek dashboard before trying again",
                       from ? "production " : "");
        prov_op_fail(op, &e);
        return;
    }
    const char *word = json_string_value(json_object_get(d, "status"));
    if (!env)
        env = mx_environment(json_string_value(json_object_get(d, "environment")));
    record_set_digest(record_add(t, id, bundle_key, message, env ? env : "preview",
                                 word ? word : "queued"),
                      digest);
    json_t *dep = to_deployment(t, d);
    json_decref(root);
    if (!dep) {
        prov_error_set(&e, "internal_error", 0, true, "out of memory");
        prov_op_fail(op, &e);
        return;
    }
    if (from)
        json_object_set_new(dep, "sourceDeploymentId", json_string(from));
    prov_op_succeed(op, dep);
}

static void step_deploy(prov_op *op, const http_response *res)
{
    mx_create *st = prov_op_state(op);
    finish_deploy(op, res, st->bundle_key, st->message, st->digest, NULL, NULL);
}

static void start_deploy(prov_op *op)
{
    prov_target *t = prov_op_target(op);
    mx_create *st = prov_op_state(op);
    prov_error e;
    char url[PROV_URL_MAX];
    if (app_url(t, url, sizeof url, "/deploy", NULL, NULL, &e) != 0) {
        prov_op_fail(op, &e);
        return;
    }
    /* environment is always sent: its default changed between API versions. */
    json_t *body = json_pack("{s:s, s:s, s:s, s:s}", "message", st->message, "environment",
                             "staging", "source", "cli_upload", "bundle_s3_key", st->bundle_key);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) {
        prov_error_set(&e, "internal_error", 0, true, "out of memory");
        prov_op_fail(op, &e);
        return;
    }
    /* Not retried: a repeated POST would start a second deploy. */
    int rc = op_request(op, "POST", url, text, false, step_deploy, &e);
    free(text);
    if (rc != 0)
        prov_op_fail(op, &e);
}

static void step_put(prov_op *op, const http_response *res)
{
    mx_create *st = prov_op_state(op);
    prov_error e;
    if (res->status >= 200 && res->status < 300) {
        start_deploy(op);
        return;
    }
    if (res->status == 0) {
        /* curl's text names at most the host; the query is removed anyway. */
        prov_error_set(&e, "upload_failed", 0, true,
                       "uploading the bundle to Mixpeek's storage failed: %s. Call "
                       "create_preview again (it asks for a new upload URL).",
                       res->error && *res->error ? res->error : "network error");
        const char *q = strchr(st->upload_url, '?');
        redact(e.message, sizeof e.message, st->upload_url);
        if (q)
            redact(e.message, sizeof e.message, q + 1);
    } else {
        /* The storage's error body is not quoted: S3 echoes the signature. */
        bool refused = res->status == 403 || res->status == 400;
        prov_error_set(&e, "upload_failed", res->status, refused || res->status >= 500,
                       "Mixpeek's storage refused the bundle upload (HTTP %ld)%s. Call "
                       "create_preview again: it asks for a new signed upload URL.",
                       res->status,
                       refused ? ": the signed upload URL was rejected or has expired" : "");
    }
    prov_op_fail(op, &e);
}

/* True when the signed URL lives on the API host, so the target's caFile
 * applies; storage hosts use the public CAs (CURLOPT_CAINFO would replace
 * them). */
static bool same_origin(const char *base, const char *url)
{
    size_t bl = strlen(base);
    return strncmp(base, url, bl) == 0 && (url[bl] == '/' || url[bl] == '?' || !url[bl]);
}

static void step_upload_url(prov_op *op, const http_response *res)
{
    prov_target *t = prov_op_target(op);
    mx_create *st = prov_op_state(op);
    prov_error e;
    json_t *root = prov_json_parse(res->body, res->body_len);
    if (!answered_ok(res, root)) {
        json_decref(root);
        map_error(t, res, &e);
        prov_op_fail(op, &e);
        return;
    }
    json_t *d = payload(root);
    const char *url = json_string_value(json_object_get(d, "upload_url"));
    const char *key = json_string_value(json_object_get(d, "bundle_s3_key"));
    json_t *exp = json_object_get(d, "expires_in");
    st->expires_in = json_is_integer(exp) ? (long)json_integer_value(exp) : 0;
    bool url_ok = url && strlen(url) < MX_UPLOAD_URL_MAX &&
                  (strncmp(url, "https://", 8) == 0 || strncmp(url, "http://", 7) == 0);
    if (!url_ok || !key || !*key || strlen(key) > MX_KEY_MAX) {
        json_decref(root);
        prov_error_set(&e, "bad_response", res->status, true,
                       "Mixpeek's upload-url answer lacks a usable upload_url or "
                       "bundle_s3_key; try again");
        prov_op_fail(op, &e);
        return;
    }
    st->upload_url = strdup(url);
    st->bundle_key = strdup(key);
    json_decref(root);
    if (!st->upload_url || !st->bundle_key) {
        prov_error_set(&e, "internal_error", 0, true, "out of memory");
        prov_op_fail(op, &e);
        return;
    }
    /* A presigned URL is its own credential: sending Authorization (or the
     * namespace) there would leak the API key to storage, and S3 refuses
     * requests that carry two auth mechanisms. */
    static const char *const put_headers[] = {"Content-Type: application/zip", NULL};
    http_opts o = {
        .method = "PUT", .url = st->upload_url, .headers = put_headers,
        .body_file = st->zip_path, .timeout_ms = MX_UPLOAD_TIMEOUT_MS,
        .idempotent = true, .max_retries = MX_RETRIES,
        .ca_file = same_origin(cfg_of(t)->base, st->upload_url) ? cfg_of(t)->ca_file : NULL,
    };
    if (prov_op_http(op, &o, step_put) != 0) {
        prov_error_set(&e, "internal_error", 0, true,
                       "could not start the bundle upload (is the zip still readable?)");
        prov_op_fail(op, &e);
    }
}

static void on_zipped(void *ud, zip_job *job, const zip_result *res)
{
    mx_create *st = ud;
    prov_op *op = st->op;
    prov_target *t = prov_op_target(op);
    st->zip = job;
    st->zip_done = true;
    prov_error e;
    /* The op's end frees the job, which must not happen inside this
     * callback: failures are reported on the next loop turn. */
    if (res->status != 0 || !res->path) {
        prov_error_set(&e, "invalid_artifact", 0, false,
                       "could not package artifact \"%s\" for Mixpeek: %s. Pass a .zip file or "
                       "a directory of the built app (at most %llu MB).",
                       st->artifact, res->error ? res->error : "unknown error",
                       (unsigned long long)(MX_MAX_BUNDLE_BYTES >> 20));
        prov_op_fail_later(op, &e);
        return;
    }
    st->zip_path = strdup(res->path);
    snprintf(st->digest, sizeof st->digest, "%s", res->digest);
    char url[PROV_URL_MAX];
    json_t *body = json_pack("{s:s, s:s}", "filename", st->filename, "content_type",
                             "application/zip");
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!st->zip_path || !text) {
        free(text);
        prov_error_set(&e, "internal_error", 0, true, "out of memory");
        prov_op_fail_later(op, &e);
        return;
    }
    log_debug("mixpeek: bundle ready (%llu bytes, %lu entries); requesting an upload URL",
              (unsigned long long)res->size, res->entries);
    int rc = app_url(t, url, sizeof url, "/deploy/upload-url", NULL, NULL, &e);
    /* Asking for a signed URL has no side effect worth guarding: retry it. */
    if (rc == 0)
        rc = op_request(op, "POST", url, text, true, step_upload_url, &e);
    free(text);
    if (rc != 0)
        prov_op_fail_later(op, &e);
}

static prov_op *mx_create_preview(prov_target *t, const prov_create_args *a,
                                  prov_result_cb cb, void *ud, prov_error *err)
{
    if (!a->artifact) {
        prov_error_set(err, "artifact_required", 0, false,
                       "Mixpeek deploys a built bundle: pass `artifact`, the path of a .zip or "
                       "of the directory to deploy (inside the target's artifactRoot). "
                       "branch/commitSha are not used by Mixpeek.");
        return NULL;
    }
    mx_headers h;
    if (build_headers(t, &h, false, err) != 0)   /* fail before zipping anything */
        return NULL;
    mx_create *st = calloc(1, sizeof *st);
    if (st) {
        st->artifact = strdup(a->artifact);
        st->filename = bundle_filename(a->artifact);
        st->message = dup_capped(a->message && *a->message ? a->message : MX_DEFAULT_MESSAGE,
                                 MX_MESSAGE_MAX);
    }
    if (!st || !st->artifact || !st->filename || !st->message) {
        create_free(st);
        prov_error_set(err, "internal_error", 0, true, "out of memory");
        return NULL;
    }
    prov_op *op = prov_op_new(t, cb, ud, st, create_free);
    if (!op) {
        prov_error_set(err, "internal_error", 0, true, "out of memory");
        return NULL;
    }
    st->op = op;
    /* Zipping runs on the thread pool; the upload URL is asked for only
     * once the bundle exists, so its short lifetime is not spent zipping. */
    st->zip = zip_job_start(t->loop, st->artifact, "", MX_MAX_BUNDLE_BYTES, on_zipped, st);
    if (!st->zip) {
        prov_op_cancel(op);
        prov_error_set(err, "internal_error", 0, true, "out of memory starting the zip job");
        return NULL;
    }
    return op;
}

/* ---- get_deployment ------------------------------------------------------ */

static void step_get(prov_op *op, const http_response *res)
{
    prov_target *t = prov_op_target(op);
    prov_error e;
    json_t *root = prov_json_parse(res->body, res->body_len);
    if (!answered_ok(res, root)) {
        json_decref(root);
        map_error(t, res, &e);
        prov_op_fail(op, &e);
        return;
    }
    json_t *d = payload(root);
    json_t *dep = json_is_string(json_object_get(d, "deploy_id")) ? to_deployment(t, d) : NULL;
    json_decref(root);
    if (!dep) {
        prov_error_set(&e, "bad_response", res->status, true,
                       "Mixpeek answered with a body that is not a deploy");
        prov_op_fail(op, &e);
        return;
    }
    prov_op_succeed(op, dep);
}

static prov_op *mx_get_deployment(prov_target *t, const char *id, prov_result_cb cb, void *ud,
                                  prov_error *err)
{
    char url[PROV_URL_MAX];
    if (app_url(t, url, sizeof url, "/deploys/", id ? id : "", NULL, err) != 0)
        return NULL;
    prov_op *op = prov_op_new(t, cb, ud, NULL, NULL);
    if (!op) {
        prov_error_set(err, "internal_error", 0, true, "out of memory");
        return NULL;
    }
    if (op_request(op, "GET", url, NULL, true, step_get, err) != 0) {
        prov_op_cancel(op);
        return NULL;
    }
    return op;
}

/* ---- list_deployments: versions + this process's deploys ----------------- */

#define MX_LIST_NOTE                                                                        \
    "Mixpeek has no API that lists deploys. This list merges the app's versions (GET "      \
    "/v1/apps/{app_id}/versions: a version is a bundle Mixpeek keeps for the app, shown "    \
    "with the fields Mixpeek reports: id is its deploy_id when it names one, else its "     \
    "version id, which get_deployment and stream_events cannot follow; kind says which) "   \
    "with the deploys this deploy-mcp process created since it started (status as last "    \
    "observed; get_deployment gives the current one). A version that reports no status "    \
    "has providerStatus \"unknown\", status \"queued\" and statusKnown false: its state is " \
    "not known, so it never counts as ready and is left out when filtering by status. "    \
    "Newest first by createdAt."

typedef struct mx_list {
    char *status, *environment;      /* filters, or NULL */
    char *after_created, *after_id;  /* keyset position from the cursor, or NULL */
    int limit;
} mx_list;

static void list_free(void *p)
{
    mx_list *st = p;
    if (!st)
        return;
    free(st->status);
    free(st->environment);
    free(st->after_created);
    free(st->after_id);
    free(st);
}

/* Sort key of an entry: createdAt (normalized ISO strings compare as time;
 * missing sorts last), then id. */
static const char *entry_created(json_t *d)
{
    const char *c = json_string_value(json_object_get(d, "createdAt"));
    return c ? c : "";
}

static const char *entry_id(json_t *d)
{
    const char *i = json_string_value(json_object_get(d, "id"));
    return i ? i : "";
}

/* < 0 when a comes first (newer, or same time and smaller id). */
static int entry_cmp_key(const char *ca, const char *ia, const char *cb, const char *ib)
{
    int c = strcmp(cb, ca);
    return c ? c : strcmp(ia, ib);
}

static int entry_cmp(const void *pa, const void *pb)
{
    json_t *a = *(json_t *const *)pa, *b = *(json_t *const *)pb;
    return entry_cmp_key(entry_created(a), entry_id(a), entry_created(b), entry_id(b));
}

static json_t *version_entry(const prov_target *t, json_t *v)
{
    const char *deploy_id = json_string_value(json_object_get(v, "deploy_id"));
    json_t *vid = json_object_get(v, "version_id");
    if (!vid)
        vid = json_object_get(v, "id");
    char vid_text[MX_ID_MAX + 1] = "";
    if (json_is_string(vid))
        snprintf(vid_text, sizeof vid_text, "%s", json_string_value(vid));
    else if (json_is_integer(vid))
        snprintf(vid_text, sizeof vid_text, "%lld", (long long)json_integer_value(vid));
    const char *id = deploy_id && *deploy_id ? deploy_id : vid_text;
    if (!*id)
        return NULL;   /* nothing to name it by */
    mx_record *rec = record_find(t, deploy_id);
    const char *word = json_string_value(json_object_get(v, "status"));
    bool known = mx_status(word) != PROV_ST_UNKNOWN;
    if (!known && rec && mx_status(rec->provider_status) != PROV_ST_UNKNOWN) {
        word = rec->provider_status;   /* observed by this process */
        known = true;
    }
    const char *env_word = json_string_value(json_object_get(v, "environment"));
    const char *env = mx_environment(env_word);
    char created[MX_TS_MAX] = "";
    if (!ts_normalize(json_object_get(v, "created_at"), created, sizeof created) &&
        !ts_normalize(json_object_get(v, "createdAt"), created, sizeof created) && rec)
        snprintf(created, sizeof created, "%s", rec->created_at);
    json_t *dep = prov_deployment(t, id, env ? env : (rec ? rec->environment : "preview"),
                                  known ? mx_status(word) : PROV_ST_QUEUED, word, NULL,
                                  created[0] ? created : NULL);
    if (!dep)
        return NULL;
    json_object_set_new(dep, "kind", json_string(deploy_id && *deploy_id ? "deploy" : "version"));
    json_object_set_new(dep, "statusKnown", json_boolean(known));
    if (!env && !rec)
        json_object_set_new(dep, "environmentKnown", json_false());
    if (env_word)
        json_object_set_new(dep, "providerEnvironment", json_string(env_word));
    if (vid_text[0])
        json_object_set_new(dep, "versionId", json_string(vid_text));
    json_t *num = json_object_get(v, "version");
    if (json_is_integer(num) || json_is_string(num))
        json_object_set(dep, "version", num);
    const char *message = json_string_value(json_object_get(v, "message"));
    if (message)
        json_object_set_new(dep, "message", json_string(message));
    return dep;
}

static json_t *record_entry(const prov_target *t, const mx_record *r)
{
    json_t *dep = prov_deployment(t, r->deploy_id, r->environment,
                                  mx_status(r->provider_status), r->provider_status, NULL,
                                  r->created_at[0] ? r->created_at : NULL);
    if (!dep)
        return NULL;
    json_object_set_new(dep, "kind", json_string("deploy"));
    json_object_set_new(dep, "statusKnown",
                        json_boolean(mx_status(r->provider_status) != PROV_ST_UNKNOWN));
    if (r->message[0])
        json_object_set_new(dep, "message", json_string(r->message));
    json_object_set_new(dep, "createdByThisServer", json_true());
    return dep;
}

/* The versions array of the answer: a bare array, or under a usual key. */
static json_t *versions_of(json_t *root)
{
    static const char *const keys[] = {"versions", "items", "data", "results"};
    if (json_is_array(root))
        return root;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        json_t *a = json_object_get(root, keys[i]);
        if (json_is_array(a))
            return a;
        if (json_is_object(a) && json_is_array(json_object_get(a, "versions")))
            return json_object_get(a, "versions");
    }
    return NULL;
}

static bool entry_matches(const mx_list *st, json_t *d)
{
    if (st->status && (!json_is_true(json_object_get(d, "statusKnown")) ||
                       strcmp(json_string_value(json_object_get(d, "status")), st->status) != 0))
        return false;
    if (st->environment && (json_is_false(json_object_get(d, "environmentKnown")) ||
                            strcmp(json_string_value(json_object_get(d, "environment")),
                                   st->environment) != 0))
        return false;
    if (st->after_created &&
        entry_cmp_key(entry_created(d), entry_id(d), st->after_created, st->after_id) <= 0)
        return false;
    return true;
}

static char *make_cursor(json_t *d)
{
    json_t *c = json_pack("{s:s, s:s}", "c", entry_created(d), "i", entry_id(d));
    char *text = c ? json_dumps(c, JSON_COMPACT) : NULL;
    json_decref(c);
    char *enc = text ? b64url_encode((const unsigned char *)text, strlen(text)) : NULL;
    free(text);
    char *out = enc ? malloc(strlen(MX_CURSOR_PREFIX) + strlen(enc) + 1) : NULL;
    if (out)
        sprintf(out, "%s%s", MX_CURSOR_PREFIX, enc);
    free(enc);
    return out;
}

static int parse_cursor(mx_list *st, const char *cursor)
{
    size_t pl = strlen(MX_CURSOR_PREFIX), len = 0;
    if (strlen(cursor) > MX_CURSOR_MAX || strncmp(cursor, MX_CURSOR_PREFIX, pl) != 0)
        return -1;
    unsigned char *raw = b64url_decode(cursor + pl, &len);
    json_t *c = raw ? json_loadb((const char *)raw, len, 0, NULL) : NULL;
    free(raw);
    const char *created = NULL, *id = NULL;
    int rc = -1;
    if (c && json_unpack(c, "{s:s, s:s}", "c", &created, "i", &id) == 0) {
        st->after_created = strdup(created);
        st->after_id = strdup(id);
        rc = st->after_created && st->after_id ? 0 : -1;
    }
    json_decref(c);
    return rc;
}

static void step_list(prov_op *op, const http_response *res)
{
    prov_target *t = prov_op_target(op);
    mx_list *st = prov_op_state(op);
    mx_cfg *c = cfg_of(t);
    prov_error e;
    json_t *root = prov_json_parse(res->body, res->body_len);
    json_t *versions = answered_ok(res, root) ? versions_of(root) : NULL;
    if (!versions) {
        if (answered_ok(res, root))
            prov_error_set(&e, "bad_response", res->status, true,
                           "Mixpeek answered the versions list with a body deploy-mcp does "
                           "not understand (no versions array)");
        else
            map_error(t, res, &e);
        json_decref(root);
        prov_op_fail(op, &e);
        return;
    }
    json_t *all = json_array();
    size_t n = json_array_size(versions);
    for (size_t i = 0; all && i < n && i < MX_MAX_VERSIONS; i++) {
        json_t *v = json_array_get(versions, i);
        json_t *d = json_is_object(v) ? version_entry(t, v) : NULL;
        if (d)
            json_array_append_new(all, d);
    }
    json_decref(root);
    /* This process's deploys that the versions list does not show yet
     * (e.g. still building), de-duplicated by id. */
    size_t nv = json_array_size(all);
    for (size_t r = 0; all && r < c->nrecs; r++) {
        bool seen = false;
        for (size_t i = 0; i < nv && !seen; i++)
            seen = strcmp(entry_id(json_array_get(all, i)), c->recs[r].deploy_id) == 0;
        if (!seen)
            json_array_append_new(all, record_entry(t, &c->recs[r]));
    }
    size_t total = json_array_size(all);
    json_t **items = total ? calloc(total, sizeof *items) : NULL;
    json_t *out = json_array();
    if (!all || !out || (total && !items)) {
        free(items);
        json_decref(all);
        json_decref(out);
        prov_error_set(&e, "internal_error", 0, true, "out of memory");
        prov_op_fail(op, &e);
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < total; i++) {
        json_t *d = json_array_get(all, i);
        if (d && entry_matches(st, d))
            items[k++] = d;
    }
    qsort(items, k, sizeof *items, entry_cmp);
    size_t take = k < (size_t)st->limit ? k : (size_t)st->limit;
    for (size_t i = 0; i < take; i++)
        json_array_append(out, items[i]);
    json_t *result = json_pack("{s:o, s:s}", "deployments", out, "note", MX_LIST_NOTE);
    if (result && take < k) {
        char *next = make_cursor(items[take - 1]);
        if (next)
            json_object_set_new(result, "nextCursor", json_string(next));
        free(next);
    }
    free(items);
    json_decref(all);
    if (!result) {
        prov_error_set(&e, "internal_error", 0, true, "out of memory");
        prov_op_fail(op, &e);
        return;
    }
    prov_op_succeed(op, result);
}

static prov_op *mx_list_deployments(prov_target *t, const prov_list_args *a, prov_result_cb cb,
                                    void *ud, prov_error *err)
{
    char url[PROV_URL_MAX];
    if (app_url(t, url, sizeof url, "/versions", NULL, NULL, err) != 0)
        return NULL;
    mx_list *st = calloc(1, sizeof *st);
    if (!st) {
        prov_error_set(err, "internal_error", 0, true, "out of memory");
        return NULL;
    }
    st->limit = a->limit > 0 ? a->limit : 20;
    if ((a->status && !(st->status = strdup(a->status))) ||
        (a->environment && !(st->environment = strdup(a->environment)))) {
        list_free(st);
        prov_error_set(err, "internal_error", 0, true, "out of memory");
        return NULL;
    }
    if (a->cursor && *a->cursor && parse_cursor(st, a->cursor) != 0) {
        list_free(st);
        prov_error_set(err, "invalid_cursor", 0, false,
                       "the cursor is not one this server issued for Mixpeek: pass nextCursor "
                       "from the previous list_deployments result unchanged, or omit it");
        return NULL;
    }
    prov_op *op = prov_op_new(t, cb, ud, st, list_free);
    if (!op) {
        prov_error_set(err, "internal_error", 0, true, "out of memory");
        return NULL;
    }
    if (op_request(op, "GET", url, NULL, true, step_list, err) != 0) {
        prov_op_cancel(op);
        return NULL;
    }
    return op;
}

/* ---- the approval gate: prepare_publish / publish ------------------------ */

/* prepare_publish: the preview deploy's id (state of the GET). */
static void step_prepare(prov_op *op, const http_response *res)
{
    prov_target *t = prov_op_target(op);
    const char *id = prov_op_state(op);
    mx_cfg *c = cfg_of(t);
    prov_error e;
    memset(&e, 0, sizeof e);
    json_t *root = prov_json_parse(res->body, res->body_len);
    if (!answered_ok(res, root)) {
        json_decref(root);
        map_error(t, res, &e);
        prov_op_fail(op, &e);
        return;
    }
    json_t *d = payload(root);
    const char *word = json_string_value(json_object_get(d, "status"));
    mx_record *rec = record_find(t, id);
    if (rec && word)
        snprintf(rec->provider_status, sizeof rec->provider_status, "%s", word);
    prov_status st = mx_status(word);
    const char *key = json_string_value(json_object_get(d, "bundle_s3_key"));
    if (!rec) {
        prov_error_set(&e, "unknown_source", 0, false,
                       "preview deploy %s is no longer among the deploys this deploy-mcp "
                       "remembers; deploy a new preview with create_preview and request the "
                       "publish of that one", id);
    } else if (st == PROV_ST_FAILED) {
        prov_error_set(&e, "source_not_ready", 0, false,
                       "preview deploy %s failed on Mixpeek, so there is nothing to publish: "
                       "fix the app, deploy a new preview with create_preview, and request the "
                       "publish of that one once it is ready", id);
    } else if (st != PROV_ST_READY) {
        prov_error_set(&e, "source_not_ready", 0, true,
                       "preview deploy %s is %s on Mixpeek, not complete: follow it with "
                       "stream_events until its status is ready, then call request_publish "
                       "again", id, word ? word : "in an unknown state");
    } else if (key && strcmp(key, rec->bundle_key) != 0) {
        prov_error_set(&e, "source_mismatch", 0, false,
                       "Mixpeek reports a different bundle for preview deploy %s than the one "
                       "deploy-mcp uploaded for it; nothing was requested. Deploy a new preview "
                       "with create_preview and request the publish of that one", id);
    }
    if (e.code[0]) {
        json_decref(root);
        prov_op_fail(op, &e);
        return;
    }
    char plan[MX_KEY_MAX + 3 * MX_ID_MAX + 128];
    snprintf(plan, sizeof plan,
             "deploy bundle %s (from preview deploy %s) to production on app %s%s%s",
             rec->bundle_key, id, c->app_id, c->ns ? " in namespace " : "", c->ns ? c->ns : "");
    json_t *source = json_pack("{s:s, s:s, s:s, s:s}", "deployId", id, "appId", c->app_id,
                               "bundleKey", rec->bundle_key, "message", rec->message);
    if (source && c->ns)
        json_object_set_new(source, "namespace", json_string(c->ns));
    if (source && rec->digest[0])
        json_object_set_new(source, "artifactDigest", json_string(rec->digest));
    static const char *const url_keys[] = {"url", "preview_url", "app_url"};
    for (size_t i = 0; source && i < sizeof url_keys / sizeof url_keys[0]; i++) {
        const char *u = json_string_value(json_object_get(d, url_keys[i]));
        if (u && *u) {
            json_object_set_new(source, "url", json_string(u));
            break;
        }
    }
    json_decref(root);
    json_t *result = source ? json_pack("{s:s, s:o}", "plan", plan, "source", source) : NULL;
    if (!result) {
        prov_error_set(&e, "internal_error", 0, true, "out of memory");
        prov_op_fail(op, &e);
        return;
    }
    prov_op_succeed(op, result);
}

static prov_op *mx_prepare_publish(prov_target *t, const char *source_id, prov_result_cb cb,
                                   void *ud, prov_error *err)
{
    const mx_record *rec = record_find(t, source_id);
    if (!rec || !rec->bundle_key[0]) {
        prov_error_set(err, "unknown_source", 0, false,
                       "%s is not a preview deploy this deploy-mcp process created, so its "
                       "bundle is unknown (Mixpeek has no API that says which bundle a deploy "
                       "used, and deploy-mcp forgets its deploys on restart). Deploy the app "
                       "with create_preview, wait until it is ready, then call request_publish "
                       "with that deploy's id", source_id);
        return NULL;
    }
    if (strcmp(rec->environment, "preview") != 0) {
        prov_error_set(err, "not_a_preview", 0, false,
                       "%s is a production deploy already; request_publish takes a preview "
                       "deploy (from create_preview)", source_id);
        return NULL;
    }
    char url[PROV_URL_MAX];
    if (app_url(t, url, sizeof url, "/deploys/", source_id, NULL, err) != 0)
        return NULL;
    char *id = strdup(source_id);
    prov_op *op = id ? prov_op_new(t, cb, ud, id, free) : NULL;
    if (!op) {
        free(id);
        prov_error_set(err, "internal_error", 0, true, "out of memory");
        return NULL;
    }
    if (op_request(op, "GET", url, NULL, true, step_prepare, err) != 0) {
        prov_op_cancel(op);
        return NULL;
    }
    return op;
}

typedef struct mx_publish_state {
    char *bundle_key, *message, *digest, *from;
} mx_publish_state;

static void publish_state_free(void *p)
{
    mx_publish_state *st = p;
    if (!st)
        return;
    free(st->bundle_key);
    free(st->message);
    free(st->digest);
    free(st->from);
    free(st);
}

static void step_published(prov_op *op, const http_response *res)
{
    mx_publish_state *st = prov_op_state(op);
    finish_deploy(op, res, st->bundle_key, st->message, st->digest, "production", st->from);
}

static prov_op *mx_publish(prov_target *t, json_t *source, prov_result_cb cb, void *ud,
                           prov_error *err)
{
    const mx_cfg *c = cfg_of(t);
    const char *key = json_string_value(json_object_get(source, "bundleKey"));
    const char *app = json_string_value(json_object_get(source, "appId"));
    const char *message = json_string_value(json_object_get(source, "message"));
    const char *digest = json_string_value(json_object_get(source, "artifactDigest"));
    const char *from = json_string_value(json_object_get(source, "deployId"));
    if (!key || !*key || strlen(key) > MX_KEY_MAX) {
        prov_error_set(err, "invalid_source", 0, false,
                       "the approved request names no Mixpeek bundle; nothing was published");
        return NULL;
    }
    if (app && strcmp(app, c->app_id) != 0) {
        prov_error_set(err, "target_changed", 0, false,
                       "the request was approved for Mixpeek app %s, but target \"%s\" now "
                       "deploys app %s; nothing was published. Request a new publish",
                       app, t->cfg->name, c->app_id);
        return NULL;
    }
    char url[PROV_URL_MAX];
    if (app_url(t, url, sizeof url, "/deploy", NULL, NULL, err) != 0)
        return NULL;
    mx_publish_state *st = calloc(1, sizeof *st);
    if (st) {
        st->bundle_key = strdup(key);
        st->message = dup_capped(message && *message ? message : "Published by deploy-mcp",
                                 MX_MESSAGE_MAX);
        st->digest = digest ? strdup(digest) : NULL;
        st->from = from ? strdup(from) : NULL;
    }
    /* environment is always sent: its default changed between API versions. */
    json_t *body = st && st->bundle_key && st->message
                       ? json_pack("{s:s, s:s, s:s, s:s}", "message", st->message, "environment",
                                   "production", "source", "cli_upload", "bundle_s3_key", key)
                       : NULL;
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    prov_op *op = text ? prov_op_new(t, cb, ud, st, publish_state_free) : NULL;
    if (!op) {
        free(text);
        if (!text)
            publish_state_free(st);
        prov_error_set(err, "internal_error", 0, true, "out of memory");
        return NULL;
    }
    /* Not retried: a repeated POST would start a second production deploy. */
    int rc = op_request(op, "POST", url, text, false, step_published, err);
    free(text);
    if (rc != 0) {
        prov_op_cancel(op);
        return NULL;
    }
    return op;
}

/* ---- the deploy-log stream ----------------------------------------------- */

/* Per-stream state: whether `done` was seen. It travels in the cursor so a
 * stream resumed after its end is known to be complete. */
typedef struct mx_stream {
    bool done;
} mx_stream;

static void *mx_stream_state_new(prov_target *t, enum prov_stream_kind kind)
{
    (void)t;
    (void)kind;
    return calloc(1, sizeof(mx_stream));
}

static void mx_stream_state_free(void *state) { free(state); }

static char *mx_stream_state_save(const void *state)
{
    const mx_stream *s = state;
    return s && s->done ? strdup("done") : NULL;
}

static int mx_stream_state_restore(void *state, const char *saved)
{
    mx_stream *s = state;
    if (!s || strcmp(saved, "done") != 0)
        return -1;
    s->done = true;
    return 0;
}

static bool mx_stream_state_complete(const void *state)
{
    const mx_stream *s = state;
    return s && s->done;
}

static int mx_stream_spec(prov_target *t, enum prov_stream_kind kind, const char *id,
                          prov_stream_spec *spec, prov_error *err)
{
    (void)kind; /* build logs and deploy progress are the same stream */
    prov_stream_spec_init(spec);
    if (app_url(t, spec->url, sizeof spec->url, "/deploys/", id ? id : "", "/logs/stream",
                err) != 0)
        return -1;
    mx_headers h;
    if (build_headers(t, &h, false, err) != 0)
        return -1;
    snprintf(spec->headers[spec->nheaders++], PROV_HEADER_MAX, "%s", h.auth);
    if (cfg_of(t)->ns)
        snprintf(spec->headers[spec->nheaders++], PROV_HEADER_MAX, "%s", h.ns);
    /* Every connection replays all earlier lines and there are no ids. */
    spec->resume = PROV_RESUME_REPLAY;
    spec->reconnect = true;
    spec->ca_file = cfg_of(t)->ca_file;
    return 0;
}

/* Case-insensitive: does the word at s[0..n) equal w? */
static bool word_is(const char *s, size_t n, const char *w)
{
    size_t wl = strlen(w);
    if (n != wl)
        return false;
    for (size_t i = 0; i < n; i++)
        if (tolower((unsigned char)s[i]) != w[i])
            return false;
    return true;
}

/* Mixpeek gives log lines no level. A line whose first word (after blanks
 * and one opening bracket) is ERROR/ERR/FATAL/CRITICAL/PANIC is "error",
 * WARN/WARNING is "warn", DEBUG/TRACE is "debug" (any case, followed by a
 * non-alphanumeric character or the end); every other line is "info". */
static const char *mx_line_level(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len && (s[i] == ' ' || s[i] == '\t'))
        i++;
    if (i < len && (s[i] == '[' || s[i] == '('))
        i++;
    size_t w = i;
    while (w < len && isalpha((unsigned char)s[w]))
        w++;
    if (w < len && isalnum((unsigned char)s[w]))
        return "info";
    static const struct { const char *word, *level; } words[] = {
        {"error", "error"}, {"err", "error"},  {"fatal", "error"}, {"critical", "error"},
        {"panic", "error"}, {"warn", "warn"},  {"warning", "warn"}, {"debug", "debug"},
        {"trace", "debug"},
    };
    for (size_t k = 0; k < sizeof words / sizeof words[0]; k++)
        if (word_is(s + i, w - i, words[k].word))
            return words[k].level;
    return "info";
}

static void emit_line(const char *text, size_t len, const char *ts, prov_emit_fn emit,
                      void *sink)
{
    prov_log_line line = {.text = text, .len = len, .level = mx_line_level(text, len),
                          .ts = ts, .source = "deploy"};
    prov_event ev = {.kind = PROV_EV_LOG, .status = PROV_ST_UNKNOWN, .progress = -1,
                     .total = -1, .lines = &line, .nlines = 1};
    emit(sink, &ev);
}

/* One SSE event → at most one common event: a log line, or the end. */
static int mx_stream_parse(prov_target *t, void *state, enum prov_stream_kind kind,
                           const sse_event *ev, prov_emit_fn emit, void *sink, prov_error *err)
{
    (void)t;
    (void)kind;
    (void)err;
    mx_stream *st = state;
    if (strcmp(ev->type, "done") == 0) {
        /* The log is complete; the outcome comes from GET deploy. */
        if (st)
            st->done = true;
        return PROV_PARSE_END;
    }
    if (strcmp(ev->type, "message") != 0 && strcmp(ev->type, "log") != 0) {
        log_debug("mixpeek: ignored a log-stream event of type %.64s", ev->type);
        return PROV_PARSE_IGNORED;
    }
    json_t *d = prov_json_parse(ev->data, ev->data_len);   /* repairs bad UTF-8 */
    if (!d) {
        /* Not JSON: the data is the line itself. */
        size_t len = 0;
        char *text = utf8_repair(ev->data, ev->data_len, &len);
        if (!text)
            return PROV_PARSE_IGNORED;
        emit_line(text, len, NULL, emit, sink);
        free(text);
        return PROV_PARSE_CONTINUE;
    }
    json_t *line = json_object_get(d, "line");
    if (!json_is_string(line)) {
        json_decref(d);
        return PROV_PARSE_IGNORED;
    }
    char ts[MX_TS_MAX];
    bool have_ts = ts_normalize(json_object_get(d, "ts"), ts, sizeof ts);
    emit_line(json_string_value(line), json_string_length(line), have_ts ? ts : NULL, emit,
              sink);
    json_decref(d);
    return PROV_PARSE_CONTINUE;
}

const struct provider prov_mixpeek = {
    .name = "mixpeek",
    .display_name = "Mixpeek",
    /* request_publish goes through deploy-mcp's approval gate (prepare_publish,
     * publish): Mixpeek has no approval concept of its own. */
    .caps = PROV_CAP_CREATE_PREVIEW | PROV_CAP_REQUEST_PUBLISH | PROV_CAP_STREAM_EVENTS |
            PROV_CAP_TAIL_LOGS | PROV_CAP_GET | PROV_CAP_LIST,
    .logs_need_deployment = true,
    .local_records_only = false,
    .native_idempotency = false,
    .configure = mx_configure,
    .unconfigure = mx_unconfigure,
    .credentials_ok = mx_credentials_ok,
    .unsupported_hint = mx_unsupported_hint,
    .create_preview = mx_create_preview,
    .request_publish = NULL,
    .get_deployment = mx_get_deployment,
    .list_deployments = mx_list_deployments,
    .prepare_publish = mx_prepare_publish,
    .publish = mx_publish,
    .stream_spec = mx_stream_spec,
    .stream_state_new = mx_stream_state_new,
    .stream_state_free = mx_stream_state_free,
    .stream_state_save = mx_stream_state_save,
    .stream_state_restore = mx_stream_state_restore,
    .stream_parse = mx_stream_parse,
    .map_http_error = mx_map_http_error,
    .stream_state_complete = mx_stream_state_complete,
};

/* bluelink.c — the Bluelink Deploy Engine adapter (PROVIDERS.md, "Bluelink").
 *
 * Bluelink deploys blueprints (infrastructure as code) from a self-hosted
 * engine. Its preview is a *change set*: a staged plan of what deploying
 * the target's blueprint would create, update, recreate or remove, streamed
 * as one event per resource, child blueprint and link. Its production side
 * is a blueprint *instance*, whose deployments stream resource, child and
 * link status changes until a `finish` event that says endOfStream.
 *
 * Ids: change sets travel as "changeset:<id>" (PRODUCT.md §3), anything else
 * is an instance id or name. The API has no lookup for change sets, so
 * get/list answer for them from what this process staged and observed, kept
 * in t->priv (capped, oldest dropped first).
 *
 * Production publishes go through deploy-mcp's own approval gate
 * (tools/gate.h): prepare_publish accepts a change set this process staged
 * and saw reach CHANGES_STAGED, and describes its changes; after a human
 * approved, publish deploys it (POST /deployments/instances for a new
 * instance, PATCH /deployments/instances/{idOrName} for an existing one).
 * The production Deployment is the instance, so stream_events follows the
 * instance stream.
 *
 * Streams resume exclusively with Last-Event-ID; without it the engine
 * replays the last 300 s, so the first connect to a change set or to an
 * instance this process deployed passes the lastEventId its POST/PATCH
 * returned (otherwise an earlier deployment's events would be replayed). Bluelink-Signature-V1 signs a date the
 * engine accepts for ±300 s, so signed headers are rebuilt before every
 * connect (stream_prepare) rather than once per stream.
 *
 * Secrets (token, API key, HMAC secret, signature) live only in request
 * headers: never in messages, logs or results. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "mcp/log.h"
#include "providers/b64.h"
#include "providers/hmac.h"
#include "providers/provider.h"
#include "providers/utf8.h"

#define BL_DEFAULT_BASE "http://localhost:8325"
#define BL_API_PREFIX "/v1"
#define BL_DEFAULT_SECRET_ENV "BLUELINK_API_KEY"   /* PRODUCT.md §2, every auth type */
#define BL_DEFAULT_BLUEPRINT "project.blueprint.yml" /* the engine's own default */
#define BL_CHANGESET_PREFIX "changeset:"
#define BL_CHANGESET_PREFIX_LEN (sizeof BL_CHANGESET_PREFIX - 1)
#define BL_TIMEOUT_MS 30000
#define BL_RETRIES 3               /* GETs only: a create must not run twice */
#define BL_MAX_RECORDS 256         /* change sets remembered per target */
#define BL_KEY_ID_MAX 256
#define BL_SIG_MAX 512             /* Bluelink-Signature-V1 header value */
#define BL_MSG_MAX 768             /* one-line event and status messages */
#define BL_MAX_NAMES 50            /* names kept per action in a change summary */
#define BL_TEXT_NAMES 10           /* names quoted per action in a one-line summary */
#define BL_MAX_FIELDS 5            /* changed fields quoted per resource or link */
#define BL_MAX_DRIFTED 10          /* drifted resources named in a drift message */
#define BL_MAX_REASONS 3           /* failure reasons quoted in one message */
#define BL_MAX_DETAILS 5           /* validation errors quoted in one error */
#define BL_LIST_DEFAULT_LIMIT 20
#define BL_SKEW_SECONDS 300        /* the engine's accepted clock skew */
#define BL_MAX_INSTANCES 64        /* instances deployed by this process, remembered */
#define BL_MAX_CHANGE_LINES 500    /* resource changes named on the approval page */

/* ---- status words ------------------------------------------------------- */

static const char *const instance_status_names[] = {
    "PREPARING", "DEPLOYING", "DEPLOYED", "DEPLOY_FAILED", "DEPLOY_ROLLING_BACK",
    "DEPLOY_ROLLBACK_FAILED", "DEPLOY_ROLLBACK_COMPLETE", "DESTROYING", "DESTROYED",
    "DESTROY_FAILED", "DESTROY_ROLLING_BACK", "DESTROY_ROLLBACK_FAILED",
    "DESTROY_ROLLBACK_COMPLETE", "UPDATING", "UPDATED", "UPDATE_FAILED", "UPDATE_ROLLING_BACK",
    "UPDATE_ROLLBACK_FAILED", "UPDATE_ROLLBACK_COMPLETE", "NOT_DEPLOYED", "DEPLOY_INTERRUPTED",
    "UPDATE_INTERRUPTED", "DESTROY_INTERRUPTED",
};

static const char *const resource_status_names[] = {
    "UNKNOWN", "CREATING", "CREATED", "CREATE_FAILED", "DESTROYING", "DESTROYED",
    "DESTROY_FAILED", "UPDATING", "UPDATED", "UPDATE_FAILED", "ROLLING_BACK",
    "ROLLBACK_FAILED", "ROLLBACK_COMPLETE", "CREATE_INTERRUPTED", "UPDATE_INTERRUPTED",
    "DESTROY_INTERRUPTED", "RETAINED",
};

/* Links have their own enumeration in the engine (core.LinkStatus), which
 * differs from ResourceStatus after CREATE_FAILED. */
static const char *const link_status_names[] = {
    "UNKNOWN", "CREATING", "CREATED", "CREATE_FAILED", "CREATE_ROLLING_BACK",
    "CREATE_ROLLBACK_FAILED", "CREATE_ROLLBACK_COMPLETE", "DESTROYING", "DESTROYED",
    "DESTROY_FAILED", "DESTROY_ROLLING_BACK", "DESTROY_ROLLBACK_FAILED",
    "DESTROY_ROLLBACK_COMPLETE", "UPDATING", "UPDATED", "UPDATE_FAILED", "UPDATE_ROLLING_BACK",
    "UPDATE_ROLLBACK_FAILED", "UPDATE_ROLLBACK_COMPLETE", "CREATE_INTERRUPTED",
    "UPDATE_INTERRUPTED", "DESTROY_INTERRUPTED",
};

#define NAMES_LEN(a) ((long)(sizeof a / sizeof a[0]))

typedef struct status_table {
    const char *const *names;
    long count;
} status_table;

static const status_table INSTANCE_TABLE = {instance_status_names,
                                            NAMES_LEN(instance_status_names)};
static const status_table RESOURCE_TABLE = {resource_status_names,
                                            NAMES_LEN(resource_status_names)};
static const status_table LINK_TABLE = {link_status_names, NAMES_LEN(link_status_names)};

/* A status field as a code: the documented integer, or (tolerated) the word
 * itself, with spaces or underscores. -1 when absent or not in the table. */
static long status_code(json_t *v, const status_table *tab)
{
    if (json_is_integer(v)) {
        json_int_t n = json_integer_value(v);
        return n >= 0 && n < tab->count ? (long)n : -1;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        return d >= 0 && d < (double)tab->count && d == (double)(long)d ? (long)d : -1;
    }
    const char *w = json_string_value(v);
    if (!w)
        return -1;
    for (long i = 0; i < tab->count; i++) {
        const char *a = tab->names[i], *b = w;
        for (; *a && *b; a++, b++)
            if (!(*a == *b || (*a == '_' && *b == ' ') ||
                  (*a >= 'A' && *a <= 'Z' && *b == *a - 'A' + 'a')))
                break;
        if (!*a && !*b)
            return i;
    }
    return -1;
}

/* The word for a code; "UNKNOWN" when out of range (never a bare number). */
static const char *status_word(long code, const status_table *tab)
{
    return code >= 0 && code < tab->count ? tab->names[code] : "UNKNOWN";
}

/* InstanceStatus on a stream (PROVIDERS.md): destroy states and NOT_DEPLOYED
 * say nothing about the deployment being followed, so they are reported as
 * providerStatus only. */
static prov_status instance_stream_status(long code)
{
    switch (code) {
    case 0:
        return PROV_ST_QUEUED;
    case 1: case 4: case 13: case 16:
        return PROV_ST_BUILDING;
    case 2: case 14:
        return PROV_ST_READY;
    case 3: case 5: case 6: case 15: case 17: case 18: case 20: case 21: case 22:
        return PROV_ST_FAILED;
    default:
        return PROV_ST_UNKNOWN;
    }
}

/* InstanceStatus in a Deployment object, which must carry one of the five
 * words: an instance being destroyed is still in motion (building), a
 * destroyed one is gone (canceled), a failed destroy failed, and one never
 * deployed has not started (queued). */
static prov_status instance_record_status(long code)
{
    prov_status st = instance_stream_status(code);
    if (st != PROV_ST_UNKNOWN)
        return st;
    switch (code) {
    case 7: case 10:
        return PROV_ST_BUILDING;
    case 8:
        return PROV_ST_CANCELED;
    case 9: case 11: case 12:
        return PROV_ST_FAILED;
    default:
        return PROV_ST_QUEUED;
    }
}

/* Change set status words (PROVIDERS.md mapping). */
static prov_status changeset_status(const char *word)
{
    if (!word)
        return PROV_ST_UNKNOWN;
    if (strcmp(word, "STARTING") == 0)
        return PROV_ST_QUEUED;
    if (strcmp(word, "STAGING_CHANGES") == 0)
        return PROV_ST_BUILDING;
    if (strcmp(word, "CHANGES_STAGED") == 0)
        return PROV_ST_READY;
    if (strcmp(word, "FAILED") == 0 || strcmp(word, "DRIFT_DETECTED") == 0)
        return PROV_ST_FAILED;
    return PROV_ST_UNKNOWN;
}

/* ---- small helpers -------------------------------------------------------- */

static const char *jstr(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static bool jtrue(json_t *o, const char *k) { return json_is_true(json_object_get(o, k)); }

static void appendf(char *buf, size_t cap, size_t *off, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Appends to buf at *off; output past the cap is dropped (messages are one
 * line for a model, so a cut summary beats none). */
static void appendf(char *buf, size_t cap, size_t *off, const char *fmt, ...)
{
    if (*off + 1 >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(buf + *off, cap - *off, fmt, ap);
    va_end(ap);
    if (w > 0)
        *off = *off + (size_t)w < cap - 1 ? *off + (size_t)w : cap - 1;
    /* A cut inside a character would make the message invalid UTF-8, and
     * jansson would drop it. */
    *off = utf8_trim_incomplete(buf, *off);
    buf[*off] = '\0';
}

/* "a, b, c" from the strings of an array (at most max, then ", and N more"). */
static void append_list(char *buf, size_t cap, size_t *off, json_t *arr, size_t max)
{
    size_t n = json_array_size(arr), shown = 0;
    for (size_t i = 0; i < n && shown < max; i++) {
        const char *s = json_string_value(json_array_get(arr, i));
        if (!s)
            continue;
        appendf(buf, cap, off, "%s%s", shown ? ", " : "", s);
        shown++;
    }
    if (n > shown && shown > 0)
        appendf(buf, cap, off, ", and %zu more", n - shown);
}

/* Unix seconds (number) or an ISO string to an ISO-8601 UTC string in out;
 * returns out, or NULL when the value is absent or zero. */
static const char *iso_time(json_t *v, char *out, size_t n)
{
    if (json_is_string(v))
        return *json_string_value(v) ? json_string_value(v) : NULL;
    double secs = json_is_integer(v) ? (double)json_integer_value(v)
                : json_is_real(v)    ? json_real_value(v) : 0;
    if (secs <= 0)
        return NULL;
    /* Milliseconds slip in from some clients; seconds are documented. */
    if (secs > 1e11)
        secs /= 1000.0;
    time_t t = (time_t)secs;
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        return NULL;
    return out;
}

static void set_owned(char **dst, const char *src)
{
    if (src && *dst && strcmp(*dst, src) == 0)
        return;
    free(*dst);
    *dst = src ? strdup(src) : NULL;
}

/* ---- configuration ------------------------------------------------------ */

enum bl_auth_type { BL_AUTH_BEARER, BL_AUTH_API_KEY, BL_AUTH_SIGNATURE };

/* A change set this process staged or observed on a stream. */
typedef struct bl_record {
    char *id;                  /* the platform's id, without the prefix */
    char *instance_id;
    char *status;              /* STARTING ... DRIFT_DETECTED */
    char *created_at;          /* ISO-8601 or NULL */
    char *last_event_id;       /* the POST's lastEventId, or NULL */
    json_t *changes;           /* staged-changes summary once staged */
    char *error_code, *error_message;
    bool deployed;             /* this process published it (a change set applies once) */
} bl_record;

/* An instance this process deployed to: where its deployment's events
 * begin (the POST/PATCH answer's lastEventId, NULL for none). */
typedef struct bl_instance {
    char *id, *name;
    char *last_event_id;
} bl_instance;

typedef struct bl_cfg {
    char *base;                /* baseUrl + "/v1", no trailing slash */
    const char *directory, *blueprint_file, *instance_name, *instance_id, *ca_file;
    json_t *config;            /* blueprint "config", borrowed from the target */
    enum bl_auth_type auth;
    const char *secret_env;
    const char *key_id;        /* signature only */
    bl_record *records;        /* oldest first */
    size_t nrecords;
    bl_instance *instances;    /* oldest first */
    size_t ninstances;
} bl_cfg;

static bl_cfg *cfg_of(const prov_target *t) { return t->priv; }

static void record_clear(bl_record *r)
{
    free(r->id);
    free(r->instance_id);
    free(r->status);
    free(r->created_at);
    free(r->last_event_id);
    json_decref(r->changes);
    free(r->error_code);
    free(r->error_message);
    memset(r, 0, sizeof *r);
}

static void bl_cfg_free(bl_cfg *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->nrecords; i++)
        record_clear(&c->records[i]);
    free(c->records);
    for (size_t i = 0; i < c->ninstances; i++) {
        free(c->instances[i].id);
        free(c->instances[i].name);
        free(c->instances[i].last_event_id);
    }
    free(c->instances);
    free(c->base);
    free(c);
}

static bl_record *record_find(bl_cfg *c, const char *id)
{
    for (size_t i = c->nrecords; id && i-- > 0;)
        if (strcmp(c->records[i].id, id) == 0)
            return &c->records[i];
    return NULL;
}

/* The record for id, created (newest) when absent. NULL when out of memory. */
static bl_record *record_get(bl_cfg *c, const char *id)
{
    bl_record *r = record_find(c, id);
    if (r)
        return r;
    if (!c->records && !(c->records = calloc(BL_MAX_RECORDS, sizeof *c->records)))
        return NULL;
    if (c->nrecords == BL_MAX_RECORDS) {
        record_clear(&c->records[0]);
        memmove(&c->records[0], &c->records[1], (BL_MAX_RECORDS - 1) * sizeof *c->records);
        memset(&c->records[BL_MAX_RECORDS - 1], 0, sizeof *c->records);
        c->nrecords--;
    }
    r = &c->records[c->nrecords];
    if (!(r->id = strdup(id)))
        return NULL;
    c->nrecords++;
    return r;
}

/* A string field of obj: 0 with *out set (NULL when absent or null), or -1
 * with a message when it is something else. */
static int opt_str(json_t *obj, const char *prefix, const char *field, const char **out,
                   char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, field);
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v)) {
        snprintf(err, errlen, "field \"%s%s\": must be a string", prefix, field);
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

/* keyId travels inside a quoted, comma-separated header value and in the
 * signed message, so quotes, commas, '=' and whitespace would break both. */
static bool key_id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > BL_KEY_ID_MAX)
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= 0x20 || *p == 0x7f || *p == '"' || *p == ',' || *p == '=' || *p == '\\')
            return false;
    return true;
}

static int configure_auth(bl_cfg *c, const prov_target *t, char *err, size_t errlen)
{
    static const char *const env_fields[] = {"tokenEnv", "keyEnv", "secretEnv"};
    json_t *obj = t->cfg->obj;
    json_t *auth = json_object_get(obj, "auth");
    if (auth && json_is_null(auth))
        auth = NULL;
    if (!auth) {
        /* No "auth": a target-level tokenEnv/keyEnv says which scheme is
         * meant; otherwise an API key from BLUELINK_API_KEY. */
        const char *tok = NULL, *key = NULL, *sec = NULL;
        if (opt_str(obj, "", "tokenEnv", &tok, err, errlen) != 0 ||
            opt_str(obj, "", "keyEnv", &key, err, errlen) != 0 ||
            opt_str(obj, "", "secretEnv", &sec, err, errlen) != 0)
            return -1;
        if (sec) {
            snprintf(err, errlen, "field \"secretEnv\": request signing needs a key id too: "
                                  "write {\"auth\": {\"type\": \"signature\", \"keyId\": \"...\", "
                                  "\"secretEnv\": \"...\"}}");
            return -1;
        }
        if (tok && key) {
            snprintf(err, errlen, "fields \"tokenEnv\" and \"keyEnv\": pick one Bluelink auth "
                                  "scheme with \"auth\": {\"type\": \"bearer\" | \"apiKey\" | "
                                  "\"signature\", ...}");
            return -1;
        }
        c->auth = tok ? BL_AUTH_BEARER : BL_AUTH_API_KEY;
        c->secret_env = tok ? tok : key ? key : BL_DEFAULT_SECRET_ENV;
        return 0;
    }
    if (!json_is_object(auth)) {
        snprintf(err, errlen, "field \"auth\": must be an object, e.g. {\"type\": \"apiKey\", "
                              "\"keyEnv\": \"" BL_DEFAULT_SECRET_ENV "\"}");
        return -1;
    }
    for (size_t i = 0; i < sizeof env_fields / sizeof env_fields[0]; i++) {
        if (json_object_get(obj, env_fields[i])) {
            snprintf(err, errlen, "field \"%s\": Bluelink reads its credentials from \"auth\"; "
                                  "move it there (e.g. \"auth\": {\"type\": \"bearer\", "
                                  "\"tokenEnv\": \"...\"})", env_fields[i]);
            return -1;
        }
    }
    const char *type = NULL;
    if (opt_str(auth, "auth.", "type", &type, err, errlen) != 0)
        return -1;
    if (!type) {
        snprintf(err, errlen, "field \"auth.type\": required: one of \"bearer\" (tokenEnv), "
                              "\"apiKey\" (keyEnv) or \"signature\" (keyId, secretEnv)");
        return -1;
    }
    const char *env_field;
    if (strcmp(type, "bearer") == 0) {
        c->auth = BL_AUTH_BEARER;
        env_field = "tokenEnv";
    } else if (strcmp(type, "apiKey") == 0) {
        c->auth = BL_AUTH_API_KEY;
        env_field = "keyEnv";
    } else if (strcmp(type, "signature") == 0) {
        c->auth = BL_AUTH_SIGNATURE;
        env_field = "secretEnv";
    } else {
        snprintf(err, errlen, "field \"auth.type\": unknown Bluelink auth type \"%.64s\" "
                              "(known: \"bearer\", \"apiKey\", \"signature\")", type);
        return -1;
    }
    const char *key;
    json_t *val;
    json_object_foreach(auth, key, val) {
        bool ok = key[0] == '_' || strcmp(key, "type") == 0 || strcmp(key, env_field) == 0 ||
                  (c->auth == BL_AUTH_SIGNATURE && strcmp(key, "keyId") == 0);
        if (!ok) {
            snprintf(err, errlen, "field \"auth.%.64s\": not used with auth.type \"%s\" (it "
                                  "takes %s%s)", key, type,
                     c->auth == BL_AUTH_SIGNATURE ? "\"keyId\" and " : "", env_field);
            return -1;
        }
    }
    if (opt_str(auth, "auth.", env_field, &c->secret_env, err, errlen) != 0)
        return -1;
    if (!c->secret_env)
        c->secret_env = BL_DEFAULT_SECRET_ENV;
    if (c->auth == BL_AUTH_SIGNATURE) {
        if (opt_str(auth, "auth.", "keyId", &c->key_id, err, errlen) != 0)
            return -1;
        if (!c->key_id || !*c->key_id) {
            snprintf(err, errlen, "field \"auth.keyId\": required with auth.type \"signature\": "
                                  "the id of the key pair configured on the deploy engine");
            return -1;
        }
        if (!key_id_ok(c->key_id)) {
            snprintf(err, errlen, "field \"auth.keyId\": must be 1 to %d visible characters "
                                  "without quotes, commas, '=' or backslashes", BL_KEY_ID_MAX);
            return -1;
        }
    }
    return 0;
}

static int configure_fields(bl_cfg *c, const prov_target *t, char *err, size_t errlen)
{
    json_t *obj = t->cfg->obj;
    const char *base = NULL;
    if (opt_str(obj, "", "baseUrl", &base, err, errlen) != 0 ||
        opt_str(obj, "", "directory", &c->directory, err, errlen) != 0 ||
        opt_str(obj, "", "blueprintFile", &c->blueprint_file, err, errlen) != 0 ||
        opt_str(obj, "", "instanceName", &c->instance_name, err, errlen) != 0 ||
        opt_str(obj, "", "instanceId", &c->instance_id, err, errlen) != 0 ||
        opt_str(obj, "", "caFile", &c->ca_file, err, errlen) != 0)
        return -1;
    if (!base || !*base)
        base = BL_DEFAULT_BASE;
    /* baseUrl is scheme://host:port; tolerate one that already ends in /v1. */
    size_t blen = strlen(base);
    bool has_prefix = blen >= 3 && strcmp(base + blen - 3, BL_API_PREFIX) == 0;
    size_t n = blen + sizeof BL_API_PREFIX;
    if (!(c->base = malloc(n))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    snprintf(c->base, n, "%s%s", base, has_prefix ? "" : BL_API_PREFIX);
    if (!c->directory || !*c->directory) {
        snprintf(err, errlen, "field \"directory\": required for provider bluelink: the "
                              "directory holding the blueprint, as the deploy engine sees it "
                              "(e.g. \"infra\")");
        return -1;
    }
    if (!c->blueprint_file || !*c->blueprint_file)
        c->blueprint_file = BL_DEFAULT_BLUEPRINT;
    if (c->instance_name && !*c->instance_name)
        c->instance_name = NULL;
    if (c->instance_id && !*c->instance_id)
        c->instance_id = NULL;
    if (!c->instance_name && !c->instance_id) {
        snprintf(err, errlen, "field \"instanceName\": required for provider bluelink (or "
                              "\"instanceId\"): the blueprint instance change sets are staged "
                              "against, e.g. \"prod-stack\"");
        return -1;
    }
    json_t *conf = json_object_get(obj, "config");
    if (conf && !json_is_null(conf) && !json_is_object(conf)) {
        snprintf(err, errlen, "field \"config\": must be an object (the blueprint config "
                              "passed to the deploy engine as is)");
        return -1;
    }
    c->config = json_is_object(conf) ? conf : NULL;
    return 0;
}

static int bl_configure(prov_target *t, char *err, size_t errlen)
{
    bl_cfg *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (configure_fields(c, t, err, errlen) != 0 || configure_auth(c, t, err, errlen) != 0) {
        /* Nothing is left behind, whether or not the caller unconfigures. */
        bl_cfg_free(c);
        t->priv = NULL;
        return -1;
    }
    t->priv = c;
    return 0;
}

static void bl_unconfigure(prov_target *t)
{
    bl_cfg_free(t->priv);
    t->priv = NULL;
}

static bool bl_credentials_ok(const prov_target *t, char *problem, size_t n)
{
    const bl_cfg *c = cfg_of(t);
    if (prov_secret(c->secret_env))
        return true;
    switch (c->auth) {
    case BL_AUTH_BEARER:
        snprintf(problem, n, "environment variable %s is not set: export the bearer token (a "
                             "JWT the deploy engine accepts) in it (auth.type \"bearer\")",
                 c->secret_env);
        break;
    case BL_AUTH_API_KEY:
        snprintf(problem, n, "environment variable %s is not set: export a Bluelink Deploy "
                             "Engine API key in it (sent as the Bluelink-Api-Key header; "
                             "auth.type \"apiKey\")", c->secret_env);
        break;
    case BL_AUTH_SIGNATURE:
        snprintf(problem, n, "environment variable %s is not set: export the secret of signing "
                             "key \"%s\" in it (Bluelink-Signature-V1; auth.type \"signature\")",
                 c->secret_env, c->key_id);
        break;
    }
    return false;
}

static const char *bl_unsupported_hint(const char *tool)
{
    if (tool && strcmp(tool, "tail_logs") == 0)
        return "The Bluelink Deploy Engine has no runtime or build logs: follow a change set "
               "(changeset:<id>) or an instance deployment with stream_events instead, which "
               "relays every resource, child blueprint and link change as it happens.";
    if (tool && strcmp(tool, "request_publish") == 0)
        return "Bluelink has no approval concept of its own: request_publish on Bluelink goes "
               "through deploy-mcp's own approval gate. It takes a change set "
               "(changeset:<id>) that this deploy-mcp staged with create_preview and that is "
               "ready (CHANGES_STAGED), and returns the URL of deploy-mcp's approval page; "
               "after a human approves there, deploy-mcp deploys the change set to the "
               "target's instance.";
    return "";
}

/* ---- authentication ------------------------------------------------------ */

/* Writes the Bluelink-Signature-V1 header value for key_id and secret at
 * unix time `date`: keyId="<id>", headers="bluelink-date", signature="<sig>"
 * with sig = base64url-without-padding(HMAC-SHA256(secret,
 * "<keyId>,bluelink-date=<date>")). Returns 0, or -1 when it does not fit
 * or memory ran out. */
static int bl_signature(const char *key_id, const char *secret, long long date, char *out,
                        size_t n)
{
    char msg[BL_KEY_ID_MAX + 64];
    int m = snprintf(msg, sizeof msg, "%s,bluelink-date=%lld", key_id, date);
    if (m < 0 || (size_t)m >= sizeof msg)
        return -1;
    unsigned char mac[HMAC_SHA256_LEN];
    hmac_sha256(secret, strlen(secret), msg, (size_t)m, mac);
    char *sig = b64url_encode(mac, sizeof mac);
    hmac_wipe(mac, sizeof mac);
    if (!sig)
        return -1;
    int w = snprintf(out, n, "keyId=\"%s\", headers=\"bluelink-date\", signature=\"%s\"",
                     key_id, sig);
    hmac_wipe(sig, strlen(sig));
    free(sig);
    return w < 0 || (size_t)w >= n ? -1 : 0;
}

#define BL_AUTH_HEADERS 2

/* The auth header lines ("Name: value") for one request. */
typedef struct bl_auth_headers {
    char line[BL_AUTH_HEADERS][PROV_HEADER_MAX];
    int n;
} bl_auth_headers;

static void auth_headers_wipe(bl_auth_headers *h) { hmac_wipe(h, sizeof *h); }

static int auth_headers(const bl_cfg *c, long long now, bl_auth_headers *h, prov_error *err)
{
    memset(h, 0, sizeof *h);
    const char *secret = prov_secret(c->secret_env);
    if (!secret) {
        prov_error_set(err, "missing_credentials", 0, false,
                       "environment variable %s is not set: export the Bluelink %s in it and "
                       "restart deploy-mcp", c->secret_env,
                       c->auth == BL_AUTH_BEARER    ? "bearer token"
                       : c->auth == BL_AUTH_API_KEY ? "API key" : "signing secret");
        return -1;
    }
    int w = 0;
    switch (c->auth) {
    case BL_AUTH_BEARER:
        w = snprintf(h->line[0], sizeof h->line[0], "Authorization: Bearer %s", secret);
        h->n = 1;
        break;
    case BL_AUTH_API_KEY:
        w = snprintf(h->line[0], sizeof h->line[0], "Bluelink-Api-Key: %s", secret);
        h->n = 1;
        break;
    case BL_AUTH_SIGNATURE: {
        char sig[BL_SIG_MAX];
        snprintf(h->line[0], sizeof h->line[0], "Bluelink-Date: %lld", now);
        if (bl_signature(c->key_id, secret, now, sig, sizeof sig) != 0) {
            hmac_wipe(sig, sizeof sig);
            prov_error_set(err, "internal_error", 0, true,
                           "could not compute the Bluelink request signature");
            return -1;
        }
        w = snprintf(h->line[1], sizeof h->line[1], "Bluelink-Signature-V1: %s", sig);
        hmac_wipe(sig, sizeof sig);
        h->n = 2;
        break;
    }
    }
    if (w < 0 || (size_t)w >= PROV_HEADER_MAX) {
        auth_headers_wipe(h);
        prov_error_set(err, "invalid_credentials", 0, false,
                       "the Bluelink credential in %s is too long for a request header",
                       c->secret_env);
        return -1;
    }
    return 0;
}

/* ---- errors ---------------------------------------------------------------- */

/* "; location: message; ..." from 422 errors[] or validationDiagnostics. */
static void append_details(char *buf, size_t cap, size_t *off, json_t *root)
{
    json_t *lists[] = {json_object_get(root, "errors"),
                       json_object_get(root, "validationDiagnostics"),
                       json_object_get(root, "diagnostics")};
    size_t shown = 0, total = 0;
    for (size_t l = 0; l < sizeof lists / sizeof lists[0]; l++) {
        size_t i;
        json_t *it;
        json_array_foreach(lists[l], i, it) {
            total++;
            if (shown >= BL_MAX_DETAILS)
                continue;
            const char *msg = json_is_string(it) ? json_string_value(it) : jstr(it, "message");
            if (!msg)
                continue;
            const char *loc = jstr(it, "location");
            if (!loc)
                loc = jstr(it, "field");
            appendf(buf, cap, off, "; %s%s%s", loc ? loc : "", loc ? ": " : "", msg);
            shown++;
        }
    }
    if (total > shown && shown > 0)
        appendf(buf, cap, off, "; and %zu more", total - shown);
}

/* Maps a Bluelink error answer (or a transport failure) to a prov_error. */
static void map_error(const prov_target *t, const http_response *res, prov_error *e)
{
    if (res->status == 0) {
        prov_network_error(e, t, res);
        return;
    }
    const bl_cfg *c = cfg_of(t);
    json_t *root = prov_json_parse(res->body, res->body_len);
    const char *msg = jstr(root, "message");
    if (!msg)
        msg = jstr(root, "error");
    char detail[PROV_ERR_MSG_MAX / 2];
    size_t off = 0;
    detail[0] = '\0';
    appendf(detail, sizeof detail, &off, "%s", msg && *msg ? msg : "no details given");
    append_details(detail, sizeof detail, &off, root);
    long st = res->status;
    if (st == 401) {
        switch (c->auth) {
        case BL_AUTH_BEARER:
            prov_error_set(e, "unauthorized", st, false,
                           "Bluelink rejected the bearer token (401 %s): check that the token "
                           "in %s is a valid, unexpired JWT for this deploy engine", detail,
                           c->secret_env);
            break;
        case BL_AUTH_API_KEY:
            prov_error_set(e, "unauthorized", st, false,
                           "Bluelink rejected the API key (401 %s): check that the key in %s is "
                           "one the deploy engine is configured to accept", detail,
                           c->secret_env);
            break;
        case BL_AUTH_SIGNATURE:
            prov_error_set(e, "unauthorized", st, false,
                           "Bluelink rejected the request signature (401 %s): check that the "
                           "secret in %s belongs to key id \"%s\" on the deploy engine, and that "
                           "this machine's clock is within ±%d s of the engine's (the signed "
                           "Bluelink-Date is checked against it)", detail, c->secret_env,
                           c->key_id, BL_SKEW_SECONDS);
            break;
        }
    } else if (st == 403) {
        prov_error_set(e, "forbidden", st, false,
                       "Bluelink refused access (403 %s): the credential in %s lacks permission "
                       "for this operation", detail, c->secret_env);
    } else if (st == 404) {
        prov_error_set(e, "not_found", st, false,
                       "Bluelink has no such instance or change set (404 %s): check the id or "
                       "name (list_deployments shows the known ones)", detail);
    } else if (st == 409) {
        prov_error_set(e, "drift_detected", st, false,
                       "Bluelink refused because the deployed resources have drifted from its "
                       "recorded state (409 %s): reconcile the drift on the deploy engine (e.g. "
                       "with the Bluelink CLI), then stage a new change set with create_preview",
                       detail);
    } else if (st == 422) {
        prov_error_set(e, "validation_failed", st, false,
                       "Bluelink could not validate the request or blueprint (422 %s): fix the "
                       "blueprint %s/%s or the target's config, then call create_preview again",
                       detail, c->directory, c->blueprint_file);
    } else if (st == 400) {
        prov_error_set(e, "bad_request", st, false, "Bluelink refused the request (400 %s)",
                       detail);
    } else {
        bool retryable = st >= 500 || st == 408 || st == 429;
        prov_error_set(e, st == 429 ? "rate_limited" : st >= 500 ? "upstream_error" : "http_error",
                       st, retryable, "Bluelink answered HTTP %ld: %s%s", st, detail,
                       retryable ? " (temporary; retry shortly)" : "");
    }
    json_decref(root);
}

static void bl_map_http_error(prov_target *t, const http_response *res, prov_error *e)
{
    map_error(t, res, e);
}

/* ---- change summaries ----------------------------------------------------- */

/* True when a provider.Changes object says the resource must be replaced. */
static bool must_recreate(json_t *ch)
{
    if (jtrue(ch, "mustRecreate"))
        return true;
    static const char *const lists[] = {"modifiedFields", "newFields", "removedFields"};
    for (size_t l = 0; l < sizeof lists / sizeof lists[0]; l++) {
        size_t i;
        json_t *f;
        json_array_foreach(json_object_get(ch, lists[l]), i, f)
            if (jtrue(f, "mustRecreate"))
                return true;
    }
    return false;
}

static void push_name(json_t *arr, const char *name)
{
    if (name && json_array_size(arr) < BL_MAX_NAMES)
        json_array_append_new(arr, json_string(name));
}

/* {create, update, recreate, remove} name lists plus counts. */
static json_t *action_lists(void)
{
    return json_pack("{s:[], s:[], s:[], s:[]}", "create", "update", "recreate", "remove");
}

/* Sorts a BlueprintChanges object into what would be created, updated,
 * recreated or removed, for resources, child blueprints and links. */
static void classify_changes(json_t *changes, json_t *res, json_t *kids, json_t *links,
                             size_t counts[3][4])
{
    const char *name;
    json_t *v;
    size_t i;
    json_object_foreach(json_object_get(changes, "newResources"), name, v) {
        counts[0][0]++;
        push_name(json_object_get(res, "create"), name);
    }
    json_object_foreach(json_object_get(changes, "resourceChanges"), name, v) {
        bool re = must_recreate(v);
        counts[0][re ? 2 : 1]++;
        push_name(json_object_get(res, re ? "recreate" : "update"), name);
    }
    json_array_foreach(json_object_get(changes, "removedResources"), i, v) {
        counts[0][3]++;
        push_name(json_object_get(res, "remove"), json_string_value(v));
    }
    json_object_foreach(json_object_get(changes, "newChildren"), name, v) {
        counts[1][0]++;
        push_name(json_object_get(kids, "create"), name);
    }
    json_object_foreach(json_object_get(changes, "childChanges"), name, v) {
        counts[1][1]++;
        push_name(json_object_get(kids, "update"), name);
    }
    json_array_foreach(json_object_get(changes, "recreateChildren"), i, v) {
        counts[1][2]++;
        push_name(json_object_get(kids, "recreate"), json_string_value(v));
    }
    json_array_foreach(json_object_get(changes, "removedChildren"), i, v) {
        counts[1][3]++;
        push_name(json_object_get(kids, "remove"), json_string_value(v));
    }
    json_array_foreach(json_object_get(changes, "removedLinks"), i, v) {
        counts[2][3]++;
        push_name(json_object_get(links, "remove"), json_string_value(v));
    }
}

static const char *const action_words[4] = {"create", "update", "recreate", "remove"};

/* "2 to create (a, b), 1 to update (c)" for one kind of element. */
static void append_counts(char *buf, size_t cap, size_t *off, const size_t counts[4],
                          json_t *lists, bool with_names)
{
    bool first = true;
    for (int a = 0; a < 4; a++) {
        if (!counts[a])
            continue;
        appendf(buf, cap, off, "%s%zu to %s", first ? "" : ", ", counts[a], action_words[a]);
        if (with_names) {
            appendf(buf, cap, off, " (");
            append_list(buf, cap, off, json_object_get(lists, action_words[a]), BL_TEXT_NAMES);
            appendf(buf, cap, off, ")");
        }
        first = false;
    }
}

/* The staged-changes summary of a BlueprintChanges object:
 * {text, counts: {create, update, recreate, remove}, resources: {create: [names], ...},
 *  children: {...}, links: {remove: [...]}}; counts are of resources. */
static json_t *changes_summary(json_t *changes)
{
    json_t *res = action_lists(), *kids = action_lists(), *links = action_lists();
    if (!res || !kids || !links) {
        json_decref(res);
        json_decref(kids);
        json_decref(links);
        return NULL;
    }
    size_t counts[3][4] = {{0}};
    if (json_is_object(changes))
        classify_changes(changes, res, kids, links, counts);
    char text[BL_MSG_MAX];
    size_t off = 0;
    text[0] = '\0';
    size_t nres = counts[0][0] + counts[0][1] + counts[0][2] + counts[0][3];
    size_t nkids = counts[1][0] + counts[1][1] + counts[1][2] + counts[1][3];
    append_counts(text, sizeof text, &off, counts[0], res, true);
    if (nkids) {
        appendf(text, sizeof text, &off, "%schild blueprints: ", nres ? "; " : "");
        append_counts(text, sizeof text, &off, counts[1], kids, true);
    }
    if (counts[2][3]) {
        appendf(text, sizeof text, &off, "%slinks: ", nres || nkids ? "; " : "");
        append_counts(text, sizeof text, &off, counts[2], links, true);
    }
    if (off == 0)
        appendf(text, sizeof text, &off, "no changes");
    return json_pack("{s:s, s:{s:I, s:I, s:I, s:I}, s:o, s:o, s:o}", "text", text, "counts",
                     "create", (json_int_t)counts[0][0], "update", (json_int_t)counts[0][1],
                     "recreate", (json_int_t)counts[0][2], "remove", (json_int_t)counts[0][3],
                     "resources", res, "children", kids, "links", links);
}

/* ---- deployments ------------------------------------------------------------ */

static json_t *record_deployment(const prov_target *t, const bl_record *r)
{
    char id[PROV_URL_MAX];
    snprintf(id, sizeof id, BL_CHANGESET_PREFIX "%s", r->id);
    json_t *dep = prov_deployment(t, id, "preview", changeset_status(r->status),
                                  r->status ? r->status : "STARTING", NULL, r->created_at);
    if (!dep)
        return NULL;
    if (r->instance_id && *r->instance_id)
        json_object_set_new(dep, "instanceId", json_string(r->instance_id));
    if (r->changes)
        json_object_set(dep, "changes", r->changes);
    if (changeset_status(r->status) == PROV_ST_FAILED)
        json_object_set_new(dep, "error",
                            json_pack("{s:s, s:s}", "code",
                                      r->error_code ? r->error_code : "staging_failed", "message",
                                      r->error_message ? r->error_message
                                                       : "staging the change set failed"));
    return dep;
}

/* Updates a record from a change set object of the API. */
static void record_update(bl_record *r, json_t *d)
{
    const char *status = jstr(d, "status");
    if (status)
        set_owned(&r->status, status);
    const char *inst = jstr(d, "instanceId");
    if (inst && *inst)
        set_owned(&r->instance_id, inst);
    char when[32];
    const char *iso = iso_time(json_object_get(d, "created"), when, sizeof when);
    if (iso)
        set_owned(&r->created_at, iso);
    json_t *changes = json_object_get(d, "changes");
    if (status && strcmp(status, "CHANGES_STAGED") == 0 && json_is_object(changes)) {
        json_decref(r->changes);
        r->changes = changes_summary(changes);
    }
}

/* Up to BL_MAX_REASONS failure reasons of an instance's elements. */
static void append_element_reasons(char *buf, size_t cap, size_t *off, json_t *inst,
                                   size_t *shown)
{
    static const char *const maps[] = {"resources", "children", "links"};
    for (size_t m = 0; m < sizeof maps / sizeof maps[0]; m++) {
        const char *key;
        json_t *el;
        json_object_foreach(json_object_get(inst, maps[m]), key, el) {
            size_t i;
            json_t *why;
            json_array_foreach(json_object_get(el, "failureReasons"), i, why) {
                if (*shown >= BL_MAX_REASONS || !json_is_string(why))
                    continue;
                const char *name = jstr(el, "name");
                if (!name)
                    name = jstr(el, "resourceName");
                appendf(buf, cap, off, "%s%s: %s", *shown ? "; " : ": ", name ? name : key,
                        json_string_value(why));
                (*shown)++;
            }
        }
    }
}

/* A Deployment from an InstanceState (GET) or a list item. */
static json_t *instance_deployment(const prov_target *t, json_t *d)
{
    const char *id = jstr(d, "instanceId");
    if (!id)
        id = jstr(d, "id");
    const char *name = jstr(d, "instanceName");
    if (!name)
        name = jstr(d, "name");
    if (!id && !name)
        return NULL;
    long code = status_code(json_object_get(d, "status"), &INSTANCE_TABLE);
    char when[32];
    const char *created = iso_time(json_object_get(d, "lastDeployedTimestamp"), when, sizeof when);
    if (!created)
        created = iso_time(json_object_get(d, "lastDeployAttemptTimestamp"), when, sizeof when);
    prov_status st = instance_record_status(code);
    json_t *dep = prov_deployment(t, id ? id : name, "production", st,
                                  status_word(code, &INSTANCE_TABLE), NULL, created);
    if (!dep)
        return NULL;
    if (name)
        json_object_set_new(dep, "name", json_string(name));
    if (st == PROV_ST_FAILED) {
        char msg[BL_MSG_MAX], code_word[64];
        size_t off = 0, shown = 0;
        msg[0] = '\0';
        appendf(msg, sizeof msg, &off, "the instance is %s", status_word(code, &INSTANCE_TABLE));
        append_element_reasons(msg, sizeof msg, &off, d, &shown);
        snprintf(code_word, sizeof code_word, "%s", status_word(code, &INSTANCE_TABLE));
        for (char *p = code_word; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
        json_object_set_new(dep, "error", json_pack("{s:s, s:s}", "code", code_word,
                                                    "message", msg));
    }
    return dep;
}

/* ---- requests ---------------------------------------------------------------- */

/* The object inside {"data": ...} when the answer is wrapped, else root. */
static json_t *payload(json_t *root)
{
    json_t *d = json_object_get(root, "data");
    return json_is_object(d) ? d : root;
}

static prov_op *start(prov_target *t, const char *method, const char *url, const char *body,
                      prov_op_step_fn step, void *state, void (*free_state)(void *),
                      prov_result_cb cb, void *ud, prov_error *err)
{
    bl_auth_headers ah;
    if (auth_headers(cfg_of(t), (long long)time(NULL), &ah, err) != 0) {
        if (free_state)
            free_state(state);
        return NULL;
    }
    const char *list[BL_AUTH_HEADERS + 3];
    int n = 0;
    for (int i = 0; i < ah.n; i++)
        list[n++] = ah.line[i];
    list[n++] = "Accept: application/json";
    if (body)
        list[n++] = "Content-Type: application/json";
    list[n] = NULL;
    bool is_get = strcmp(method, "GET") == 0;
    http_opts o = {
        .method = method, .url = url, .headers = list, .body = body,
        .body_len = body ? strlen(body) : 0, .timeout_ms = BL_TIMEOUT_MS,
        /* Bluelink has no idempotency key: a repeated POST would stage a
         * second change set, so only reads are retried. */
        .idempotent = is_get, .max_retries = is_get ? BL_RETRIES : 0,
        .ca_file = cfg_of(t)->ca_file,
    };
    prov_op *op = prov_op_new(t, cb, ud, state, free_state);
    int rc = op ? prov_op_http(op, &o, step) : -1; /* headers and body are copied */
    auth_headers_wipe(&ah);
    if (rc != 0) {
        prov_op_cancel(op);
        prov_error_set(err, "internal_error", 0, true, "could not start the request to Bluelink");
        return NULL;
    }
    return op;
}

/* base + "/deployments/<what>/<escaped id><suffix>" */
static int api_url(const prov_target *t, char *url, size_t n, const char *what, const char *id,
                   const char *suffix, prov_error *err)
{
    char esc[PROV_URL_MAX / 2];
    if (!id || !*id || prov_escape(esc, sizeof esc, id) != 0 ||
        (size_t)snprintf(url, n, "%s/deployments/%s/%s%s", cfg_of(t)->base, what, esc,
                         suffix) >= n) {
        prov_error_set(err, "invalid_arguments", 0, false,
                       "deploymentId must be a Bluelink instance id or name, or "
                       "\"changeset:<id>\" for a change set");
        return -1;
    }
    return 0;
}

static bool is_changeset_id(const char *id)
{
    return id && strncmp(id, BL_CHANGESET_PREFIX, BL_CHANGESET_PREFIX_LEN) == 0;
}

/* ---- create_preview: stage a change set ----------------------------------- */

typedef struct create_state {
    bool ignored_git;          /* branch/commitSha were passed (not used) */
} create_state;

static void step_created(prov_op *op, const http_response *res)
{
    prov_target *t = prov_op_target(op);
    create_state *st = prov_op_state(op);
    prov_error e;
    if (res->status < 200 || res->status >= 300) {
        map_error(t, res, &e);
        prov_op_fail(op, &e);
        return;
    }
    json_t *root = prov_json_parse(res->body, res->body_len);
    json_t *d = payload(root);
    const char *id = jstr(d, "id");
    bl_record *r = id && *id ? record_get(cfg_of(t), id) : NULL;
    if (!r) {
        json_decref(root);
        prov_error_set(&e, "bad_response", res->status, false,
                       "Bluelink accepted the change set but its answer carried no change set "
                       "id; look for it on the deploy engine before staging again");
        prov_op_fail(op, &e);
        return;
    }
    if (!jstr(d, "status"))
        set_owned(&r->status, "STARTING");
    record_update(r, d);
    const char *last = jstr(root, "lastEventId");
    if (last && *last && strlen(last) <= SSE_MAX_ID)
        set_owned(&r->last_event_id, last);
    json_decref(root);
    json_t *dep = record_deployment(t, r);
    if (dep && st->ignored_git) {
        char note[512];
        snprintf(note, sizeof note,
                 "Bluelink stages the blueprint %s/%s as the deploy engine sees it; branch and "
                 "commitSha were not used.", cfg_of(t)->directory, cfg_of(t)->blueprint_file);
        json_object_set_new(dep, "note", json_string(note));
    }
    if (!dep) {
        prov_error_set(&e, "internal_error", 0, true, "out of memory");
        prov_op_fail(op, &e);
        return;
    }
    prov_op_succeed(op, dep);
}

static prov_op *bl_create_preview(prov_target *t, const prov_create_args *a, prov_result_cb cb,
                                  void *ud, prov_error *err)
{
    const bl_cfg *c = cfg_of(t);
    if (a->artifact) {
        prov_error_set(err, "unsupported_argument", 0, false,
                       "Bluelink does not take an artifact: it stages the blueprint %s/%s "
                       "configured on target \"%s\", as the deploy engine sees it. Call "
                       "create_preview without artifact.", c->directory, c->blueprint_file,
                       t->cfg->name);
        return NULL;
    }
    char url[PROV_URL_MAX];
    snprintf(url, sizeof url, "%s/deployments/changes", c->base);
    json_t *body = json_pack("{s:s, s:s, s:s}", "fileSourceScheme", "file", "directory",
                             c->directory, "blueprintFile", c->blueprint_file);
    if (body && c->instance_name)
        json_object_set_new(body, "instanceName", json_string(c->instance_name));
    if (body && c->instance_id)
        json_object_set_new(body, "instanceId", json_string(c->instance_id));
    if (body)
        json_object_set_new(body, "config", c->config ? json_deep_copy(c->config) : json_object());
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    create_state *st = calloc(1, sizeof *st);
    if (!text || !st) {
        free(text);
        free(st);
        prov_error_set(err, "internal_error", 0, true, "out of memory");
        return NULL;
    }
    st->ignored_git = a->branch || a->commit_sha;
    prov_op *op = start(t, "POST", url, text, step_created, st, free, cb, ud, err);
    free(text);
    return op;
}

/* ---- get_deployment -------------------------------------------------------- */

static void step_instance(prov_op *op, const http_response *res)
{
    prov_target *t = prov_op_target(op);
    prov_error e;
    if (res->status < 200 || res->status >= 300) {
        map_error(t, res, &e);
        prov_op_fail(op, &e);
        return;
    }
    json_t *root = prov_json_parse(res->body, res->body_len);
    json_t *dep = instance_deployment(t, payload(root));
    json_decref(root);
    if (!dep) {
        prov_error_set(&e, "bad_response", res->status, true,
                       "Bluelink answered with a body that is not a blueprint instance");
        prov_op_fail(op, &e);
        return;
    }
    prov_op_succeed(op, dep);
}

#define BL_LOCAL_NOTE                                                                          \
    "Bluelink's API has no lookup for change sets: change sets (changeset:...) come from "     \
    "what this deploy-mcp process staged and observed since it started (status as last "      \
    "seen; stream_events refreshes it)."

static prov_op *bl_get_deployment(prov_target *t, const char *id, prov_result_cb cb, void *ud,
                                  prov_error *err)
{
    if (is_changeset_id(id)) {
        const bl_record *r = record_find(cfg_of(t), id + BL_CHANGESET_PREFIX_LEN);
        prov_op *op = prov_op_new(t, cb, ud, NULL, NULL);
        if (!op) {
            prov_error_set(err, "internal_error", 0, true, "out of memory");
            return NULL;
        }
        json_t *dep = r ? record_deployment(t, r) : NULL;
        if (dep) {
            json_object_set_new(dep, "note", json_string(BL_LOCAL_NOTE));
            prov_op_succeed_later(op, dep);
        } else {
            prov_error e;
            prov_error_set(&e, "not_found", 0, false,
                           "%s is not a change set this deploy-mcp process staged or observed "
                           "(Bluelink's API has no lookup for change sets, and deploy-mcp "
                           "forgets them on restart): stage a new one with create_preview, or "
                           "follow it with stream_events", id);
            prov_op_fail_later(op, &e);
        }
        return op;
    }
    char url[PROV_URL_MAX];
    if (api_url(t, url, sizeof url, "instances", id, "", err) != 0)
        return NULL;
    return start(t, "GET", url, NULL, step_instance, NULL, NULL, cb, ud, err);
}

/* ---- list_deployments ------------------------------------------------------- */

/* Pages list the change sets this process knows (newest first), then the
 * platform's instances; the cursor holds a position in each. */
typedef struct list_state {
    json_t *out;               /* deployments so far */
    long cs_next;              /* change sets: next position, -1 when done */
    long offset, limit;        /* instances: what was asked */
    prov_status want;          /* status filter or UNKNOWN */
    bool with_records;         /* change sets were listed: say where they came from */
} list_state;

static void list_state_free(void *p)
{
    list_state *st = p;
    if (st)
        json_decref(st->out);
    free(st);
}

static char *list_cursor(long cs, long offset)
{
    char raw[64];
    snprintf(raw, sizeof raw, "{\"c\":%ld,\"o\":%ld}", cs, offset);
    return b64url_encode((const unsigned char *)raw, strlen(raw));
}

static int parse_list_cursor(const char *cursor, long *cs, long *offset)
{
    *cs = 0;
    *offset = 0;
    if (!cursor || !*cursor)
        return 0;
    size_t len = 0;
    unsigned char *raw = b64url_decode(cursor, &len);
    json_t *j = raw ? json_loadb((const char *)raw, len, 0, NULL) : NULL;
    free(raw);
    json_int_t c = -2, o = -1;
    int rc = j && json_unpack(j, "{s:I, s:I}", "c", &c, "o", &o) == 0 && c >= -1 && o >= 0 &&
             c < (json_int_t)BL_MAX_RECORDS * 4 && o < (json_int_t)1 << 40 ? 0 : -1;
    json_decref(j);
    *cs = (long)c;
    *offset = (long)o;
    return rc;
}

static json_t *list_result(json_t *deps, long cs_next, long offset, bool more_instances)
{
    json_t *r = json_pack("{s:O}", "deployments", deps);
    if (r && (cs_next >= 0 || more_instances)) {
        char *cur = list_cursor(cs_next, offset);
        if (cur)
            json_object_set_new(r, "nextCursor", json_string(cur));
        free(cur);
    }
    return r;
}

static void step_list(prov_op *op, const http_response *res)
{
    prov_target *t = prov_op_target(op);
    list_state *st = prov_op_state(op);
    prov_error e;
    if (res->status < 200 || res->status >= 300) {
        map_error(t, res, &e);
        prov_op_fail(op, &e);
        return;
    }
    json_t *root = prov_json_parse(res->body, res->body_len);
    json_t *items = json_object_get(payload(root), "instances");
    if (!json_is_array(items)) {
        json_decref(root);
        prov_error_set(&e, "bad_response", res->status, true,
                       "Bluelink answered the instance list with a body that has no instances");
        prov_op_fail(op, &e);
        return;
    }
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it) {
        json_t *dep = instance_deployment(t, it);
        if (!dep)
            continue;
        if (st->want != PROV_ST_UNKNOWN &&
            prov_status_parse(jstr(dep, "status")) != st->want) {
            json_decref(dep);
            continue;
        }
        json_array_append_new(st->out, dep);
    }
    long got = (long)json_array_size(items);
    json_t *total = json_object_get(payload(root), "totalCount");
    bool more = json_is_integer(total) ? st->offset + got < (long)json_integer_value(total)
                                       : got >= st->limit && got > 0;
    json_decref(root);
    json_t *result = list_result(st->out, -1, st->offset + got, more);
    if (result && st->with_records)
        json_object_set_new(result, "note", json_string(BL_LOCAL_NOTE));
    if (!result) {
        prov_error_set(&e, "internal_error", 0, true, "out of memory");
        prov_op_fail(op, &e);
        return;
    }
    prov_op_succeed(op, result);
}

static prov_op *bl_list_deployments(prov_target *t, const prov_list_args *a, prov_result_cb cb,
                                    void *ud, prov_error *err)
{
    bl_cfg *c = cfg_of(t);
    long cs = 0, offset = 0;
    if (parse_list_cursor(a->cursor, &cs, &offset) != 0) {
        prov_error_set(err, "invalid_cursor", 0, false,
                       "the cursor is not one this server issued: pass nextCursor from the "
                       "previous list_deployments result unchanged, or omit it");
        return NULL;
    }
    long limit = a->limit > 0 ? a->limit : BL_LIST_DEFAULT_LIMIT;
    bool want_preview = !a->environment || strcmp(a->environment, "preview") == 0;
    bool want_prod = !a->environment || strcmp(a->environment, "production") == 0;
    list_state *st = calloc(1, sizeof *st);
    if (!st || !(st->out = json_array())) {
        free(st);
        prov_error_set(err, "internal_error", 0, true, "out of memory");
        return NULL;
    }
    st->want = a->status ? prov_status_parse(a->status) : PROV_ST_UNKNOWN;
    /* Change sets first, newest first, from this process's records. */
    long pos = cs < 0 ? (long)c->nrecords : cs;
    while (want_preview && pos < (long)c->nrecords &&
           (long)json_array_size(st->out) < limit) {
        const bl_record *r = &c->records[c->nrecords - 1 - (size_t)pos];
        pos++;
        if (st->want != PROV_ST_UNKNOWN && changeset_status(r->status) != st->want)
            continue;
        json_t *dep = record_deployment(t, r);
        if (dep)
            json_array_append_new(st->out, dep);
    }
    long cs_next = want_preview && pos < (long)c->nrecords ? pos : -1;
    long room = limit - (long)json_array_size(st->out);
    if (!want_prod || room <= 0) {
        /* No request needed: answer on the next loop turn. With room gone
         * and instances still wanted, the next page starts with them. */
        json_t *r = list_result(st->out, cs_next, offset, want_prod);
        list_state_free(st);
        prov_op *op = r ? prov_op_new(t, cb, ud, NULL, NULL) : NULL;
        if (!op) {
            json_decref(r);
            prov_error_set(err, "internal_error", 0, true, "out of memory");
            return NULL;
        }
        if (want_preview)
            json_object_set_new(r, "note", json_string(BL_LOCAL_NOTE));
        prov_op_succeed_later(op, r);
        return op;
    }
    st->cs_next = -1;
    st->with_records = want_preview;
    st->offset = offset;
    st->limit = room;
    char url[PROV_URL_MAX];
    snprintf(url, sizeof url, "%s/deployments/instances?offset=%ld&limit=%ld", c->base, offset,
             room);
    return start(t, "GET", url, NULL, step_list, st, list_state_free, cb, ud, err);
}

/* ---- the approval gate: prepare_publish / publish ---------------------------- */

static bl_instance *instance_find(bl_cfg *c, const char *id_or_name)
{
    for (size_t i = c->ninstances; id_or_name && i-- > 0;) {
        bl_instance *in = &c->instances[i];
        if ((in->id && strcmp(in->id, id_or_name) == 0) ||
            (in->name && strcmp(in->name, id_or_name) == 0))
            return in;
    }
    return NULL;
}

/* Remembers where a deployment of an instance begins (last_event_id may be
 * NULL: then the stream starts with the engine's replay window, which holds
 * only this deployment for a new instance). */
static void instance_remember(bl_cfg *c, const char *id, const char *name,
                              const char *last_event_id)
{
    if (!id && !name)
        return;
    bl_instance *in = instance_find(c, id);
    if (!in)
        in = instance_find(c, name);
    if (!in) {
        if (!c->instances && !(c->instances = calloc(BL_MAX_INSTANCES, sizeof *c->instances)))
            return;
        if (c->ninstances == BL_MAX_INSTANCES) {
            free(c->instances[0].id);
            free(c->instances[0].name);
            free(c->instances[0].last_event_id);
            memmove(&c->instances[0], &c->instances[1],
                    (BL_MAX_INSTANCES - 1) * sizeof *c->instances);
            memset(&c->instances[BL_MAX_INSTANCES - 1], 0, sizeof *c->instances);
            c->ninstances--;
        }
        in = &c->instances[c->ninstances++];
    }
    if (id)
        set_owned(&in->id, id);
    if (name)
        set_owned(&in->name, name);
    set_owned(&in->last_event_id,
              last_event_id && *last_event_id && strlen(last_event_id) <= SSE_MAX_ID
                  ? last_event_id : NULL);
}

/* One string per staged change ("create resource ordersTable"), from a
 * change summary (changes_summary()). */
static json_t *change_lines(json_t *sum)
{
    static const struct { const char *key, *noun; } kinds[] = {
        {"resources", "resource"}, {"children", "child blueprint"}, {"links", "link"},
    };
    json_t *out = json_array();
    json_t *counts = json_object_get(sum, "counts");
    for (size_t k = 0; out && k < sizeof kinds / sizeof kinds[0]; k++) {
        json_t *lists = json_object_get(sum, kinds[k].key);
        for (int a = 0; a < 4; a++) {
            json_t *names = json_object_get(lists, action_words[a]);
            size_t i;
            json_t *n;
            json_array_foreach(names, i, n) {
                if (json_array_size(out) >= BL_MAX_CHANGE_LINES)
                    break;
                char line[BL_MSG_MAX];
                snprintf(line, sizeof line, "%s %s %s", action_words[a], kinds[k].noun,
                         json_string_value(n) ? json_string_value(n) : "?");
                utf8_trim_cstr(line);   /* a cut name must stay valid UTF-8 */
                json_array_append_new(out, json_string(line));
            }
            /* Summaries keep BL_MAX_NAMES names per action; say what is left. */
            json_int_t total = k == 0 ? json_integer_value(json_object_get(counts,
                                                                           action_words[a]))
                                      : 0;
            if (total > (json_int_t)json_array_size(names)) {
                char line[BL_MSG_MAX];
                snprintf(line, sizeof line, "... and %lld more %ss to %s",
                         (long long)(total - (json_int_t)json_array_size(names)),
                         kinds[k].noun, action_words[a]);
                json_array_append_new(out, json_string(line));
            }
        }
    }
    return out;
}

static prov_op *bl_prepare_publish(prov_target *t, const char *source_id, prov_result_cb cb,
                                   void *ud, prov_error *err)
{
    bl_cfg *c = cfg_of(t);
    if (!is_changeset_id(source_id)) {
        prov_error_set(err, "unknown_source", 0, false,
                       "Bluelink publishes a staged change set: pass sourceDeploymentId "
                       "\"changeset:<id>\" as create_preview returned it (\"%s\" is not a "
                       "change set; an instance is production already)", source_id);
        return NULL;
    }
    const char *cs_id = source_id + BL_CHANGESET_PREFIX_LEN;
    const bl_record *r = record_find(c, cs_id);
    if (!r) {
        prov_error_set(err, "unknown_source", 0, false,
                       "%s is not a change set this deploy-mcp process staged (Bluelink's API "
                       "has no lookup for change sets, and deploy-mcp forgets them on "
                       "restart): stage one with create_preview, follow it with stream_events "
                       "until it is ready, then call request_publish with its id", source_id);
        return NULL;
    }
    prov_status st = changeset_status(r->status);
    if (st == PROV_ST_FAILED) {
        prov_error_set(err, "source_not_ready", 0, false,
                       "change set %s did not stage (%s%s%s), so there is nothing to publish: "
                       "stage a new one with create_preview", source_id,
                       r->status, r->error_message ? ": " : "",
                       r->error_message ? r->error_message : "");
        return NULL;
    }
    if (r->deployed) {
        prov_error_set(err, "already_published", 0, false,
                       "change set %s was already deployed to production by this deploy-mcp; "
                       "a change set applies once. Stage a new one with create_preview for "
                       "further changes", source_id);
        return NULL;
    }
    if (st != PROV_ST_READY) {
        prov_error_set(err, "source_not_ready", 0, true,
                       "change set %s is %s as far as this deploy-mcp has seen, not staged "
                       "(CHANGES_STAGED): follow it with stream_events until its status is "
                       "ready, then call request_publish again", source_id,
                       r->status ? r->status : "STARTING");
        return NULL;
    }
    /* The instance the change set was staged against: an existing one is
     * updated (PATCH), none yet means a new instance (POST). */
    const char *inst_id = r->instance_id && *r->instance_id ? r->instance_id : c->instance_id;
    const char *name = c->instance_name ? c->instance_name : inst_id;
    json_t *sum = r->changes ? json_incref(r->changes) : changes_summary(NULL);
    json_t *counts = json_object_get(sum, "counts");
    long long n_create = json_integer_value(json_object_get(counts, "create"));
    long long n_update = json_integer_value(json_object_get(counts, "update"));
    long long n_recreate = json_integer_value(json_object_get(counts, "recreate"));
    long long n_remove = json_integer_value(json_object_get(counts, "remove"));
    char plan[BL_MSG_MAX * 2];
    size_t off = 0;
    plan[0] = '\0';
    appendf(plan, sizeof plan, &off, "apply change set %s to instance %s: %lld to create, "
            "%lld to update, ", cs_id, name, n_create, n_update);
    if (n_recreate)
        appendf(plan, sizeof plan, &off, "%lld to recreate, ", n_recreate);
    appendf(plan, sizeof plan, &off, "%lld to remove", n_remove);
    if (!inst_id)
        appendf(plan, sizeof plan, &off, " (the instance is new: deploying creates it)");
    json_t *source = json_pack("{s:s, s:s, s:s, s:o, s:s, s:s}", "changeSetId", cs_id,
                               "instanceName", name, "changesSummary",
                               jstr(sum, "text") ? jstr(sum, "text") : "no changes",
                               "changes", change_lines(sum), "directory", c->directory,
                               "blueprintFile", c->blueprint_file);
    if (source && inst_id)
        json_object_set_new(source, "instanceId", json_string(inst_id));
    if (source && counts)
        json_object_set(source, "counts", counts);
    json_decref(sum);
    json_t *result = source ? json_pack("{s:s, s:o}", "plan", plan, "source", source) : NULL;
    prov_op *op = result ? prov_op_new(t, cb, ud, NULL, NULL) : NULL;
    if (!op) {
        json_decref(result);
        prov_error_set(err, "internal_error", 0, true, "out of memory");
        return NULL;
    }
    prov_op_succeed_later(op, result);
    return op;
}

/* publish: the instance the request names (id, or name for a new one) and
 * the change set, for the Deployment when the answer leaves them out. */
typedef struct publish_state {
    char *instance;
    char *changeset_id;
} publish_state;

static void publish_state_free(void *p)
{
    publish_state *st = p;
    if (!st)
        return;
    free(st->instance);
    free(st->changeset_id);
    free(st);
}

static void step_published(prov_op *op, const http_response *res)
{
    prov_target *t = prov_op_target(op);
    publish_state *st = prov_op_state(op);
    prov_error e;
    if (res->status < 200 || res->status >= 300) {
        map_error(t, res, &e);
        prov_op_fail(op, &e);
        return;
    }
    json_t *root = prov_json_parse(res->body, res->body_len);
    json_t *d = payload(root);
    json_t *dep = instance_deployment(t, d);
    if (!dep) /* an answer without the instance: it is at least preparing */
        dep = prov_deployment(t, st->instance, "production", PROV_ST_QUEUED, "PREPARING", NULL,
                              NULL);
    const char *id = jstr(dep, "id");
    const char *name = jstr(d, "instanceName");
    instance_remember(cfg_of(t), id, name ? name : st->instance, jstr(root, "lastEventId"));
    bl_record *r = record_find(cfg_of(t), st->changeset_id);
    if (r)
        r->deployed = true;
    json_decref(root);
    if (!dep) {
        prov_error_set(&e, "internal_error", 0, true, "out of memory");
        prov_op_fail(op, &e);
        return;
    }
    char cs[PROV_URL_MAX];
    snprintf(cs, sizeof cs, BL_CHANGESET_PREFIX "%s", st->changeset_id);
    json_object_set_new(dep, "sourceDeploymentId", json_string(cs));
    prov_op_succeed(op, dep);
}

static prov_op *bl_publish(prov_target *t, json_t *source, prov_result_cb cb, void *ud,
                           prov_error *err)
{
    const bl_cfg *c = cfg_of(t);
    const char *cs = jstr(source, "changeSetId");
    const char *name = jstr(source, "instanceName");
    const char *inst_id = jstr(source, "instanceId");
    const char *dir = jstr(source, "directory");
    const char *file = jstr(source, "blueprintFile");
    if (!cs || !*cs || ((!name || !*name) && (!inst_id || !*inst_id))) {
        prov_error_set(err, "invalid_source", 0, false,
                       "the approved request names no Bluelink change set or instance; "
                       "nothing was published");
        return NULL;
    }
    json_t *body = json_pack("{s:s, s:s, s:s, s:s}", "fileSourceScheme", "file", "directory",
                             dir ? dir : c->directory, "blueprintFile",
                             file ? file : c->blueprint_file, "changeSetId", cs);
    if (body)
        json_object_set_new(body, "config", c->config ? json_deep_copy(c->config) : json_object());
    char url[PROV_URL_MAX];
    const char *method;
    if (inst_id && *inst_id) {
        method = "PATCH";
        if (api_url(t, url, sizeof url, "instances", inst_id, "", err) != 0) {
            json_decref(body);
            return NULL;
        }
    } else {
        method = "POST";
        snprintf(url, sizeof url, "%s/deployments/instances", c->base);
        if (body)
            json_object_set_new(body, "instanceName", json_string(name));
    }
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    publish_state *st = calloc(1, sizeof *st);
    if (st) {
        st->instance = strdup(inst_id && *inst_id ? inst_id : name);
        st->changeset_id = strdup(cs);
    }
    if (!text || !st || !st->instance || !st->changeset_id) {
        free(text);
        publish_state_free(st);
        prov_error_set(err, "internal_error", 0, true, "out of memory");
        return NULL;
    }
    /* start() never retries a POST/PATCH: a repeat would deploy twice. */
    prov_op *op = start(t, method, url, text, step_published, st, publish_state_free, cb, ud,
                        err);
    free(text);
    return op;
}

/* ---- streams ------------------------------------------------------------------ */

/* Per-stream state: which change set a stream follows (its events do not
 * say), so staging results land in the right record. */
typedef struct bl_stream {
    char *changeset_id;        /* without the prefix; NULL for instance streams */
    bool bound;
    bool staging_seen;         /* a staging event was relayed on this stream */
    bool ended;                /* a change set's staging reached its last event */
} bl_stream;

#define BL_STATE_ENDED "ended"  /* saved stream state: the staging stream is over */

static void *bl_stream_state_new(prov_target *t, enum prov_stream_kind kind)
{
    (void)t;
    (void)kind;
    return calloc(1, sizeof(bl_stream));
}

static void bl_stream_state_free(void *p)
{
    bl_stream *s = p;
    if (s)
        free(s->changeset_id);
    free(s);
}

/* A change set is staged once, so a cursor taken after its last event needs
 * no connection: the engine would resume after that event and wait forever.
 * (An instance's stream goes on with its next deployment, so it is never
 * marked ended.) */
static char *bl_stream_state_save(const void *state)
{
    const bl_stream *s = state;
    return s && s->ended ? strdup(BL_STATE_ENDED) : NULL;
}

static int bl_stream_state_restore(void *state, const char *saved)
{
    bl_stream *s = state;
    if (!s || strcmp(saved, BL_STATE_ENDED) != 0)
        return -1;
    s->ended = true;
    return 0;
}

static bool bl_stream_state_complete(const void *state)
{
    const bl_stream *s = state;
    return s && s->ended;
}

static int bl_stream_spec(prov_target *t, enum prov_stream_kind kind, const char *id,
                          prov_stream_spec *spec, prov_error *err)
{
    prov_stream_spec_init(spec);
    if (kind != PROV_STREAM_EVENTS) {
        prov_error_set(err, "unsupported", 0, false, "%s", bl_unsupported_hint("tail_logs"));
        return -1;
    }
    bool cs = is_changeset_id(id);
    const char *raw = cs ? id + BL_CHANGESET_PREFIX_LEN : id;
    if (api_url(t, spec->url, sizeof spec->url, cs ? "changes" : "instances", raw, "/stream",
                err) != 0)
        return -1;
    bl_auth_headers ah;
    if (auth_headers(cfg_of(t), (long long)time(NULL), &ah, err) != 0)
        return -1;
    for (int i = 0; i < ah.n; i++)
        memcpy(spec->headers[i], ah.line[i], sizeof spec->headers[i]);
    spec->nheaders = ah.n;
    auth_headers_wipe(&ah);
    spec->resume = PROV_RESUME_LAST_EVENT_ID;
    spec->reconnect = true;
    spec->ca_file = cfg_of(t)->ca_file;
    const char *first = NULL;
    if (cs) {
        /* Resume after the events that existed before this staging began. */
        const bl_record *r = record_find(cfg_of(t), raw);
        first = r ? r->last_event_id : NULL;
    } else {
        /* An instance this process deployed: start at that deployment, not
         * at earlier ones still inside the engine's replay window. */
        const bl_instance *in = instance_find(cfg_of(t), raw);
        first = in ? in->last_event_id : NULL;
    }
    if (first)
        snprintf(spec->first_last_event_id, sizeof spec->first_last_event_id, "%s", first);
    return 0;
}

static void bl_stream_prepare(prov_target *t, void *state, const char *id,
                              prov_stream_spec *spec)
{
    bl_stream *s = state;
    if (s && !s->bound) {
        s->bound = true;
        if (is_changeset_id(id))
            s->changeset_id = strdup(id + BL_CHANGESET_PREFIX_LEN);
    }
    const bl_cfg *c = cfg_of(t);
    if (c->auth != BL_AUTH_SIGNATURE)
        return;
    /* A signature is valid for ±300 s: sign again for every connection. */
    bl_auth_headers ah;
    prov_error e;
    if (auth_headers(c, (long long)time(NULL), &ah, &e) != 0) {
        log_warn("bluelink: could not refresh the request signature (%s); reconnecting with "
                 "the previous one", e.message);
        return;
    }
    if (ah.n > spec->nheaders) { /* not a spec this adapter filled */
        auth_headers_wipe(&ah);
        return;
    }
    for (int i = 0; i < ah.n; i++)
        memcpy(spec->headers[i], ah.line[i], sizeof spec->headers[i]);
    auth_headers_wipe(&ah);
}

/* The record a change set stream writes to (created for change sets staged
 * elsewhere and only observed here). */
static bl_record *stream_record(prov_target *t, const bl_stream *s)
{
    return s && s->changeset_id ? record_get(cfg_of(t), s->changeset_id) : NULL;
}

/* "fields a, b" of a provider.Changes object; false when there are none. */
static bool append_fields(char *buf, size_t cap, size_t *off, json_t *ch)
{
    static const char *const lists[] = {"modifiedFields", "newFields", "removedFields"};
    size_t shown = 0, total = 0;
    for (size_t l = 0; l < sizeof lists / sizeof lists[0]; l++) {
        size_t i;
        json_t *f;
        json_array_foreach(json_object_get(ch, lists[l]), i, f) {
            const char *path = json_is_string(f) ? json_string_value(f) : jstr(f, "fieldPath");
            if (!path)
                path = jstr(f, "fieldName");
            total++;
            if (!path || shown >= BL_MAX_FIELDS)
                continue;
            appendf(buf, cap, off, "%s%s", shown ? ", " : " (", path);
            shown++;
        }
    }
    if (shown)
        appendf(buf, cap, off, "%s)", total > shown ? ", ..." : "");
    return total > 0;
}

/* One staging event as a RESOURCE message: what would happen to the
 * resource, child blueprint or link, in words. */
static void staging_message(const char *type, json_t *d, char *msg, size_t cap)
{
    size_t off = 0;
    msg[0] = '\0';
    json_t *ch = json_object_get(d, "changes");
    bool is_new = jtrue(d, "new"), removed = jtrue(d, "removed");
    if (strcmp(type, "resourceChanges") == 0) {
        const char *name = jstr(d, "resourceName");
        appendf(msg, cap, &off, "resource %s would be ", name ? name : "(unnamed)");
        if (is_new) {
            appendf(msg, cap, &off, "created");
        } else if (removed) {
            appendf(msg, cap, &off, "removed");
        } else if (must_recreate(ch)) {
            appendf(msg, cap, &off, "recreated");
            append_fields(msg, cap, &off, ch);
        } else {
            size_t mark = off;
            appendf(msg, cap, &off, "updated");
            if (!append_fields(msg, cap, &off, ch)) {
                off = mark;
                msg[off] = '\0';
                appendf(msg, cap, &off, "left unchanged");
            }
        }
        if (jtrue(d, "conditionKnownOnDeploy"))
            appendf(msg, cap, &off, " if its condition holds at deploy time");
    } else if (strcmp(type, "childChanges") == 0) {
        const char *name = jstr(d, "childBlueprintName");
        appendf(msg, cap, &off, "child blueprint %s would be %s", name ? name : "(unnamed)",
                is_new ? "created" : removed ? "removed" : "updated");
        if (!removed && json_is_object(ch)) {
            json_t *sum = changes_summary(ch);
            const char *text = jstr(sum, "text");
            if (text && strcmp(text, "no changes") != 0)
                appendf(msg, cap, &off, ": %s", text);
            json_decref(sum);
        }
    } else {
        const char *a = jstr(d, "resourceAName"), *b = jstr(d, "resourceBName");
        appendf(msg, cap, &off, "link %s -> %s would be ", a ? a : "?", b ? b : "?");
        if (is_new) {
            appendf(msg, cap, &off, "created");
        } else if (removed) {
            appendf(msg, cap, &off, "removed");
        } else {
            size_t mark = off;
            appendf(msg, cap, &off, "updated");
            if (!append_fields(msg, cap, &off, ch)) {
                off = mark;
                msg[off] = '\0';
                appendf(msg, cap, &off, "left unchanged");
            }
        }
    }
}

/* Names of drifted resources in a driftDetected payload, whatever its
 * exact shape (a list of names, or objects naming them). */
static void append_drifted(char *buf, size_t cap, size_t *off, json_t *d)
{
    json_t *rr = json_object_get(d, "reconciliationResult");
    json_t *lists[] = {json_object_get(d, "resources"), json_object_get(rr, "resources"),
                       json_object_get(d, "driftedResources")};
    size_t shown = 0;
    for (size_t l = 0; l < sizeof lists / sizeof lists[0]; l++) {
        size_t i;
        json_t *it;
        json_array_foreach(lists[l], i, it) {
            const char *name = json_is_string(it) ? json_string_value(it)
                                                  : jstr(it, "resourceName");
            if (!name)
                name = jstr(it, "name");
            if (!name || shown >= BL_MAX_DRIFTED)
                continue;
            appendf(buf, cap, off, "%s%s", shown ? ", " : " (drifted: ", name);
            shown++;
        }
    }
    if (shown)
        appendf(buf, cap, off, ")");
}

static int parse_changeset_event(prov_target *t, bl_stream *s, const char *type, json_t *d,
                                 prov_emit_fn emit, void *sink)
{
    bl_record *r = stream_record(t, s);
    char msg[BL_MSG_MAX];
    prov_event ev = {.kind = PROV_EV_RESOURCE, .status = PROV_ST_UNKNOWN, .progress = -1,
                     .total = -1, .message = msg};
    if (strcmp(type, "resourceChanges") == 0 || strcmp(type, "childChanges") == 0 ||
        strcmp(type, "linkChanges") == 0) {
        if (r && (!r->status || strcmp(r->status, "STARTING") == 0))
            set_owned(&r->status, "STAGING_CHANGES");
        staging_message(type, d, msg, sizeof msg);
        if (s && !s->staging_seen) {
            /* The first change staged is also the change set's move to
             * STAGING_CHANGES: say so with this same event. */
            s->staging_seen = true;
            ev.kind = PROV_EV_STATUS;
            ev.status = PROV_ST_BUILDING;
            ev.provider_status = "STAGING_CHANGES";
        }
        emit(sink, &ev);
        return PROV_PARSE_CONTINUE;
    }
    if (strcmp(type, "changeStagingComplete") == 0) {
        json_t *sum = changes_summary(json_object_get(d, "changes"));
        snprintf(msg, sizeof msg, "changes staged: %s",
                 jstr(sum, "text") ? jstr(sum, "text") : "no changes");
        if (r) {
            set_owned(&r->status, "CHANGES_STAGED");
            json_decref(r->changes);
            r->changes = json_incref(sum);
        }
        ev.kind = PROV_EV_STATUS;
        ev.status = PROV_ST_READY;
        ev.provider_status = "CHANGES_STAGED";
        /* A Deployment member: create_preview with wait returns it, as
         * get_deployment does. */
        ev.detail = sum ? json_pack("{s:O}", "changes", sum) : NULL;
        emit(sink, &ev);
        json_decref(ev.detail);
        json_decref(sum);
        return PROV_PARSE_END;
    }
    prov_error failure;
    size_t off = 0;
    msg[0] = '\0';
    if (strcmp(type, "driftDetected") == 0) {
        const char *m = jstr(d, "message");
        appendf(msg, sizeof msg, &off,
                "Bluelink detected drift: resources of the instance were changed outside "
                "Bluelink since it last deployed them");
        append_drifted(msg, sizeof msg, &off, d);
        if (m && *m)
            appendf(msg, sizeof msg, &off, " (%s)", m);
        appendf(msg, sizeof msg, &off, ". Reconcile the drift on the deploy engine (e.g. with "
                                       "the Bluelink CLI), then stage again with create_preview");
        prov_error_set(&failure, "drift_detected", 0, false, "%s", msg);
        ev.provider_status = "DRIFT_DETECTED";
    } else {
        const char *m = jstr(d, "message");
        if (!m)
            m = jstr(d, "error");
        appendf(msg, sizeof msg, &off, "staging the change set failed: %s",
                m && *m ? m : "no details given");
        json_t *wrap = json_pack("{s:O?}", "diagnostics", json_object_get(d, "diagnostics"));
        append_details(msg, sizeof msg, &off, wrap);
        json_decref(wrap);
        prov_error_set(&failure, "staging_failed", 0, false, "%s", msg);
        ev.provider_status = "FAILED";
    }
    if (r) {
        set_owned(&r->status, ev.provider_status);
        set_owned(&r->error_code, failure.code);
        set_owned(&r->error_message, failure.message);
    }
    ev.kind = PROV_EV_STATUS;
    ev.status = PROV_ST_FAILED;
    ev.error = &failure;
    emit(sink, &ev);
    return PROV_PARSE_END;
}

/* ": reason; reason" from failureReasons. */
static void append_reasons(char *buf, size_t cap, size_t *off, json_t *d, const char *lead)
{
    size_t i, shown = 0;
    json_t *why;
    json_array_foreach(json_object_get(d, "failureReasons"), i, why) {
        if (!json_is_string(why) || shown >= BL_MAX_REASONS)
            continue;
        appendf(buf, cap, off, "%s%s", shown ? "; " : lead, json_string_value(why));
        shown++;
    }
}

static void lowercase_code(char *out, size_t n, const char *word)
{
    snprintf(out, n, "%s", word);
    for (char *p = out; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
}

static int parse_finish(json_t *d, prov_emit_fn emit, void *sink)
{
    long code = status_code(json_object_get(d, "status"), &INSTANCE_TABLE);
    const char *word = status_word(code, &INSTANCE_TABLE);
    prov_status st = instance_stream_status(code);
    /* Engines before auto-rollback sent no endOfStream: finish was the end. */
    json_t *eos = json_object_get(d, "endOfStream");
    bool end = !json_is_boolean(eos) || json_is_true(eos);
    char msg[BL_MSG_MAX];
    size_t off = 0;
    msg[0] = '\0';
    prov_error failure;
    prov_event ev = {.kind = PROV_EV_STATUS, .status = st, .provider_status = word,
                     .progress = -1, .total = -1, .message = msg};
    if (st == PROV_ST_FAILED) {
        bool rolled = strstr(word, "ROLLBACK") != NULL;
        appendf(msg, sizeof msg, &off, "%s (%s)",
                rolled ? "the deployment failed and Bluelink rolled it back"
                       : "the deployment failed", word);
        append_reasons(msg, sizeof msg, &off, d, ": ");
        if (!end)
            appendf(msg, sizeof msg, &off, "; Bluelink is rolling it back automatically "
                                           "(more events follow)");
        char c[64];
        lowercase_code(c, sizeof c, word);
        /* One text for both: the relay then says it once. */
        prov_error_set(&failure, c, 0, false, "%s", msg);
        ev.error = &failure;
    } else {
        appendf(msg, sizeof msg, &off, "finished: %s", word);
        append_reasons(msg, sizeof msg, &off, d, " — ");
    }
    emit(sink, &ev);
    return end ? PROV_PARSE_END : PROV_PARSE_CONTINUE;
}

static int parse_instance_event(const char *type, json_t *d, prov_emit_fn emit, void *sink)
{
    char msg[BL_MSG_MAX];
    size_t off = 0;
    msg[0] = '\0';
    prov_event ev = {.kind = PROV_EV_RESOURCE, .status = PROV_ST_UNKNOWN, .progress = -1,
                     .total = -1, .message = msg};
    if (strcmp(type, "resource") == 0) {
        const char *name = jstr(d, "resourceName");
        appendf(msg, sizeof msg, &off, "resource %s: %s", name ? name : "(unnamed)",
                status_word(status_code(json_object_get(d, "status"), &RESOURCE_TABLE),
                            &RESOURCE_TABLE));
        append_reasons(msg, sizeof msg, &off, d, " — ");
    } else if (strcmp(type, "child") == 0) {
        const char *name = jstr(d, "childName");
        appendf(msg, sizeof msg, &off, "child blueprint %s: %s", name ? name : "(unnamed)",
                status_word(status_code(json_object_get(d, "status"), &INSTANCE_TABLE),
                            &INSTANCE_TABLE));
        append_reasons(msg, sizeof msg, &off, d, " — ");
    } else if (strcmp(type, "link") == 0) {
        const char *name = jstr(d, "linkName");
        appendf(msg, sizeof msg, &off, "link %s: %s", name ? name : "(unnamed)",
                status_word(status_code(json_object_get(d, "status"), &LINK_TABLE),
                            &LINK_TABLE));
        append_reasons(msg, sizeof msg, &off, d, " — ");
    } else if (strcmp(type, "instanceUpdate") == 0) {
        long code = status_code(json_object_get(d, "status"), &INSTANCE_TABLE);
        ev.kind = PROV_EV_STATUS;
        ev.status = instance_stream_status(code);
        ev.provider_status = status_word(code, &INSTANCE_TABLE);
        appendf(msg, sizeof msg, &off, "instance %s", ev.provider_status);
    } else if (strcmp(type, "finish") == 0) {
        return parse_finish(d, emit, sink);
    } else if (strcmp(type, "preRollbackState") == 0) {
        long code = status_code(json_object_get(d, "status"), &INSTANCE_TABLE);
        appendf(msg, sizeof msg, &off, "state before rollback recorded");
        if (code >= 0)
            appendf(msg, sizeof msg, &off, " (instance %s)", status_word(code, &INSTANCE_TABLE));
    } else {
        return PROV_PARSE_IGNORED;
    }
    emit(sink, &ev);
    return PROV_PARSE_CONTINUE;
}

/* An instance stream's `error` event {message, diagnostics}: the deployment
 * failed. A bare {"error": "..."} is the engine's stream itself failing
 * (not a persisted event): reported as an error, the outcome then looked up. */
static int parse_instance_error(json_t *d, prov_emit_fn emit, void *sink)
{
    const char *m = jstr(d, "message");
    char msg[BL_MSG_MAX];
    size_t off = 0;
    msg[0] = '\0';
    prov_error failure;
    prov_event ev = {.kind = PROV_EV_STATUS, .status = PROV_ST_FAILED, .provider_status = "ERROR",
                     .progress = -1, .total = -1, .message = msg, .error = &failure};
    if (!m) {
        const char *se = jstr(d, "error");
        appendf(msg, sizeof msg, &off, "the deploy engine's event stream failed: %s",
                se && *se ? se : "no details given");
        prov_error_set(&failure, "stream_error", 0, true, "%s", msg);
        ev.kind = PROV_EV_ERROR;
        ev.status = PROV_ST_UNKNOWN;
        ev.provider_status = NULL;
    } else {
        appendf(msg, sizeof msg, &off, "the deployment failed: %s", *m ? m : "no details given");
        json_t *wrap = json_pack("{s:O?}", "diagnostics", json_object_get(d, "diagnostics"));
        append_details(msg, sizeof msg, &off, wrap);
        json_decref(wrap);
        prov_error_set(&failure, "deploy_error", 0, false, "%s", msg);
    }
    emit(sink, &ev);
    return PROV_PARSE_END;
}

static int bl_stream_parse(prov_target *t, void *state, enum prov_stream_kind kind,
                           const sse_event *ev, prov_emit_fn emit, void *sink, prov_error *err)
{
    (void)kind;
    (void)err;
    bl_stream *s = state;
    static const char *const staging[] = {"resourceChanges", "childChanges", "linkChanges",
                                          "changeStagingComplete", "driftDetected"};
    static const char *const deploying[] = {"resource", "child", "link", "instanceUpdate",
                                            "finish", "preRollbackState"};
    bool is_staging = false, is_deploy = false, is_error = strcmp(ev->type, "error") == 0;
    for (size_t i = 0; i < sizeof staging / sizeof staging[0]; i++)
        is_staging |= strcmp(ev->type, staging[i]) == 0;
    for (size_t i = 0; i < sizeof deploying / sizeof deploying[0]; i++)
        is_deploy |= strcmp(ev->type, deploying[i]) == 0;
    if (!is_staging && !is_deploy && !is_error)
        return PROV_PARSE_IGNORED; /* not a documented event: nothing to relay */
    json_t *d = prov_json_parse(ev->data, ev->data_len);
    if (!json_is_object(d)) {
        log_warn("bluelink: skipped a %s event whose data is not a JSON object", ev->type);
        json_decref(d);
        return PROV_PARSE_IGNORED;
    }
    int r;
    if (is_staging || (is_error && s && s->changeset_id)) {
        r = parse_changeset_event(t, s, ev->type, d, emit, sink);
        if (r == PROV_PARSE_END && s)
            s->ended = true;
    }
    else if (is_error)
        r = parse_instance_error(d, emit, sink);
    else
        r = parse_instance_event(ev->type, d, emit, sink);
    json_decref(d);
    return r;
}

const struct provider prov_bluelink = {
    .name = "bluelink",
    .display_name = "Bluelink",
    /* No tail_logs (no logs at all); request_publish goes through deploy-mcp's
     * own approval gate (prepare_publish, publish). */
    .caps = PROV_CAP_CREATE_PREVIEW | PROV_CAP_REQUEST_PUBLISH | PROV_CAP_STREAM_EVENTS |
            PROV_CAP_GET | PROV_CAP_LIST,
    .logs_need_deployment = false,
    /* Instances come from the API; change sets from records (said per answer). */
    .local_records_only = false,
    .native_idempotency = false,
    .configure = bl_configure,
    .unconfigure = bl_unconfigure,
    .credentials_ok = bl_credentials_ok,
    .unsupported_hint = bl_unsupported_hint,
    .create_preview = bl_create_preview,
    .request_publish = NULL,
    .get_deployment = bl_get_deployment,
    .list_deployments = bl_list_deployments,
    .prepare_publish = bl_prepare_publish,
    .publish = bl_publish,
    .stream_spec = bl_stream_spec,
    .stream_state_new = bl_stream_state_new,
    .stream_state_free = bl_stream_state_free,
    .stream_state_save = bl_stream_state_save,
    .stream_state_restore = bl_stream_state_restore,
    .stream_state_complete = bl_stream_state_complete,
    .stream_parse = bl_stream_parse,
    .map_http_error = bl_map_http_error,
    .stream_prepare = bl_stream_prepare,
};

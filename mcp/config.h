/* config.h — the targets file (PRODUCT.md §2).
 *
 * Lookup order when no explicit path is given: env DEPLOY_MCP_CONFIG, then
 * ./deploy-mcp.json, then $XDG_CONFIG_HOME/deploy-mcp/config.json (or
 * ~/.config/deploy-mcp/config.json when XDG_CONFIG_HOME is unset, empty or
 * relative, per the XDG Base Directory spec). An empty DEPLOY_MCP_CONFIG counts
 * as unset.
 * An explicit path (--config) or DEPLOY_MCP_CONFIG that does not exist is an
 * error; the two default locations are simply skipped when absent. With no file
 * at all the loader succeeds with zero targets (cfg->path == NULL).
 *
 * The loader validates what is common to every target (an object; "provider"
 * is a non-empty string naming a known provider; "baseUrl" when present is an
 * http(s) URL; "tokenEnv"/"keyEnv"/"secretEnv" when present are environment
 * variable names, never values) plus the top-level fields. Provider-specific
 * fields are checked by the provider adapter afterwards. Secrets never live in
 * the file and are never read here, and values of tokenEnv/keyEnv/secretEnv
 * fields are never echoed in messages.
 *
 * Top-level keys other than targets, defaultTarget, allowedOrigins and approval
 * are errors, except "$schema" and keys starting with '_' (comments), which
 * are ignored (likewise inside "approval"). A null optional field counts as
 * absent. baseUrl/streamBaseUrl/approval.publicUrl lose trailing slashes (in
 * the target's obj too). A target's "auth", when present, must be an object
 * and its *Env fields are checked the same way; plain-text secret fields
 * ("token", "apiKey", "secret", "password", ...) in a target or its "auth"
 * are refused. */
#ifndef DEPLOY_MCP_CONFIG_H
#define DEPLOY_MCP_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define CFG_MAX_FILE_BYTES (4u << 20)   /* larger files are refused */
#define CFG_DEFAULT_APPROVAL_LISTEN "127.0.0.1:8788"
#define CFG_DEFAULT_APPROVER_SECRET_ENV "DEPLOY_MCP_APPROVER_SECRET"

typedef struct cfg_target {
    char *name;        /* key in "targets" */
    char *provider;    /* "showly", "bigcommerce", "mixpeek", "bluelink" */
    json_t *obj;       /* the target's JSON object (owned reference) */
} cfg_target;

typedef struct cfg {
    char *path;                 /* file that was loaded, or NULL when none */
    cfg_target *targets;        /* in file order */
    size_t ntargets;
    char *default_target;       /* may be NULL */
    char **allowed_origins;     /* NULL-terminated list (possibly empty) */
    char *approval_listen;      /* never NULL: default CFG_DEFAULT_APPROVAL_LISTEN */
    char *approval_public_url;  /* may be NULL */
    char *approval_secret_env;  /* never NULL: default CFG_DEFAULT_APPROVER_SECRET_ENV */
} cfg;

/* Predicate the loader uses to reject unknown providers; returns true for a
 * known provider name. A NULL predicate accepts any non-empty provider. */
typedef bool (*cfg_provider_known_fn)(const char *name);

/* Finds and loads the config. `explicit_path` is --config or NULL. On success
 * returns 0 and *out owns a cfg (free with cfg_free). On failure returns -1 and
 * writes one message into err naming the file, and the target and field when
 * the problem is in one, e.g.
 *   "config ./deploy-mcp.json: target \"web\": field \"provider\": unknown provider \"shwoly\" (known: showly, bigcommerce, mixpeek, bluelink)". */
int cfg_load(const char *explicit_path, cfg_provider_known_fn known, cfg **out,
             char *err, size_t errlen);

/* Parses a config from a string (used by cfg_load and tests). `path` is only
 * used in messages. Same contract as cfg_load. */
int cfg_parse(const char *text, size_t len, const char *path, cfg_provider_known_fn known,
              cfg **out, char *err, size_t errlen);

/* Resolves the file cfg_load would read, without reading it. Returns a
 * malloc'd path or NULL when no candidate exists; sets *explicit_missing when
 * an explicitly named file (argument or DEPLOY_MCP_CONFIG) does not exist. */
char *cfg_find(const char *explicit_path, bool *explicit_missing);

/* Finds a target by name; NULL when absent. */
const cfg_target *cfg_target_get(const cfg *c, const char *name);

/* Picks the target for a tool call: `name` when given (an empty string counts
 * as not given), else the only target, else default_target. Returns NULL and
 * fills err with an actionable message (listing the target names, or saying
 * where to put a config file when there are none) when none applies. */
const cfg_target *cfg_pick_target(const cfg *c, const char *name, char *err, size_t errlen);

/* String field of a target object, or `dflt` when absent/not a string. */
const char *cfg_str(const cfg_target *t, const char *field, const char *dflt);

void cfg_free(cfg *c);

#endif

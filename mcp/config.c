/* config.c — finds, reads and validates the targets file (see config.h and
 * PRODUCT.md §2).
 *
 * Every error message has the shape
 *   config <file>: [target "<name>": ][field "<field>": ]<what is wrong>
 * Values of secret-bearing fields (tokenEnv/keyEnv/secretEnv, URLs that may
 * carry credentials, JSON text near a syntax error) are never echoed. */
#include "mcp/config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define CFG_ENV_VAR            "DEPLOY_MCP_CONFIG"
#define CFG_LOCAL_FILE         "./deploy-mcp.json"
#define CFG_XDG_SUBPATH        "deploy-mcp/config.json"
#define CFG_HOME_SUBPATH       ".config/deploy-mcp/config.json"
#define CFG_KNOWN_PROVIDERS    "showly, bigcommerce, mixpeek, bluelink"
#define CFG_NO_PATH            "(string)"   /* cfg_parse without a path */

#define CFG_MAX_TARGETS        256    /* targets in one file */
#define CFG_MAX_TARGET_NAME    64     /* bytes in a target name */
#define CFG_MAX_ENV_NAME       128    /* bytes in an environment variable name */
#define CFG_MAX_URL            2048   /* bytes in baseUrl/streamBaseUrl/publicUrl */
#define CFG_MAX_ORIGINS        256    /* entries in allowedOrigins */
#define CFG_MAX_ORIGIN         2048   /* bytes in one allowed origin */
#define CFG_MAX_LISTEN         300    /* bytes in approval.listen */
#define CFG_MAX_PORT           65535
#define CFG_QUOTE_CHARS        64     /* characters of a user value echoed in a message */
#define CFG_QUOTE_BUF          (CFG_QUOTE_CHARS * 4 + 8)  /* escaped + quotes + "..." */
#define CFG_FIELD_BUF          (CFG_QUOTE_BUF + 32)
#define CFG_MSG_BUF            1024
#define CFG_READ_CHUNK         65536
#define CFG_SECRET_SEGMENT     16     /* a '_'-separated run this long with a digit is a token */

/* ------------------------------------------------------------------ errors */

typedef struct parse_ctx {
    const char *path;
    cfg_provider_known_fn known;
    char *err;
    size_t errlen;
} parse_ctx;

__attribute__((format(printf, 3, 4)))
static void put_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Writes s as a double-quoted, escaped string of at most CFG_QUOTE_CHARS
 * characters (UTF-8 sequences are kept whole) into dst[CFG_QUOTE_BUF]. */
static void quote(char dst[CFG_QUOTE_BUF], const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0, chars = 0;
    dst[o++] = '"';
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        bool continuation = (*c & 0xC0) == 0x80;
        if (!continuation && chars++ == CFG_QUOTE_CHARS) {
            memcpy(dst + o, "...", 3);
            o += 3;
            break;
        }
        if (*c == '"' || *c == '\\') {
            dst[o++] = '\\';
            dst[o++] = (char)*c;
        } else if (*c < 0x20 || *c == 0x7F) {
            dst[o++] = '\\';
            dst[o++] = 'x';
            dst[o++] = hex[*c >> 4];
            dst[o++] = hex[*c & 0xF];
        } else {
            dst[o++] = (char)*c;
        }
    }
    dst[o++] = '"';
    dst[o] = '\0';
}

/* Reports a problem: "config P: target "T": field "F": message". `target`
 * and `field` may be NULL; both are quoted (they may come from the file). */
__attribute__((format(printf, 4, 5)))
static int fail(const parse_ctx *p, const char *target, const char *field, const char *fmt, ...)
{
    char msg[CFG_MSG_BUF], qt[CFG_QUOTE_BUF], qf[CFG_QUOTE_BUF];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (target)
        quote(qt, target);
    if (field)
        quote(qf, field);
    put_err(p->err, p->errlen, "config %s: %s%s%s%s%s%s%s", p->path,
            target ? "target " : "", target ? qt : "", target ? ": " : "",
            field ? "field " : "", field ? qf : "", field ? ": " : "", msg);
    return -1;
}

static int fail_oom(const parse_ctx *p)
{
    return fail(p, NULL, NULL, "out of memory");
}

/* ------------------------------------------------------------- validators */

static bool is_env_char(unsigned char c, bool first)
{
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_')
        return true;
    return !first && c >= '0' && c <= '9';
}

/* True when s is shaped like an environment variable name and not like a
 * credential pasted in its place. */
static bool is_env_name(const char *s)
{
    static const char *const secret_prefixes[] = {
        "sk_", "sk-", "pk_", "rk_", "mcp_", "ghp_", "gho_", "ghs_", "ghu_",
        "github_pat_", "glpat", "xox", "bearer", "Bearer",
    };
    size_t len = strlen(s);
    if (len == 0 || len > CFG_MAX_ENV_NAME)
        return false;
    /* a long run of letters and digits without word breaks is a key, e.g.
     * "AKIAIOSFODNN7EXAMPLE", a hex token, or "xk_live_0123456789abcdef" */
    size_t run = 0;
    bool digit = false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!is_env_char(c, i == 0))
            return false;
        if (c == '_') {
            run = 0;
            digit = false;
            continue;
        }
        digit |= c >= '0' && c <= '9';
        if (++run >= CFG_SECRET_SEGMENT && digit)
            return false;
    }
    for (size_t i = 0; i < sizeof secret_prefixes / sizeof secret_prefixes[0]; i++)
        if (strncmp(s, secret_prefixes[i], strlen(secret_prefixes[i])) == 0)
            return false;
    return true;
}

/* Checks a tokenEnv/keyEnv/secretEnv value. Never echoes it. */
static int check_env(const parse_ctx *p, const char *target, const char *field, const json_t *v,
                     const char *example)
{
    if (!json_is_string(v))
        return fail(p, target, field,
                    "must be a string naming an environment variable (e.g. \"%s\")", example);
    const char *s = json_string_value(v);
    if (s[0] == '\0')
        return fail(p, target, field, "must name an environment variable (e.g. \"%s\"), not be empty",
                    example);
    if (!is_env_name(s))
        return fail(p, target, field,
                    "must name an environment variable, not hold the secret: put the secret in "
                    "an environment variable and write only its name here (e.g. \"%s\"; names "
                    "are letters, digits and '_', not starting with a digit)",
                    example);
    return 0;
}

/* Checks an http(s) base URL and strips trailing slashes in place. The value
 * is never echoed (it could carry credentials). */
static int check_url(const parse_ctx *p, const char *target, const char *field, json_t *v)
{
    static const char shape[] = "must be a string URL starting with http:// or https:// "
                                "(scheme, host and optional port, e.g. \"https://api.example.com\")";
    if (!json_is_string(v))
        return fail(p, target, field, "%s", shape);
    const char *s = json_string_value(v);
    size_t len = strlen(s), host;
    if (strncasecmp(s, "http://", 7) == 0)
        host = 7;
    else if (strncasecmp(s, "https://", 8) == 0)
        host = 8;
    else
        return fail(p, target, field, "%s", shape);
    if (len > CFG_MAX_URL)
        return fail(p, target, field, "URL is longer than %d bytes", CFG_MAX_URL);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7F)
            return fail(p, target, field, "URL must not contain whitespace or control characters");
        if (c == '?' || c == '#')
            return fail(p, target, field, "URL must not contain a query or fragment");
    }
    size_t host_end = host + strcspn(s + host, "/");
    if (host_end == host)
        return fail(p, target, field, "URL has no host (e.g. \"https://api.example.com\")");
    if (memchr(s + host, '@', host_end - host))
        return fail(p, target, field,
                    "URL must not embed credentials (user:password@host); secrets belong in "
                    "environment variables");
    size_t keep = len;
    while (keep > host_end && s[keep - 1] == '/')
        keep--;
    if (keep != len) {
        char *stripped = strndup(s, keep);
        if (!stripped || json_string_set(v, stripped) != 0) {
            free(stripped);
            return fail_oom(p);
        }
        free(stripped);
    }
    return 0;
}

static bool is_host_char(unsigned char c, bool bracketed)
{
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
        c == '.' || c == '-')
        return true;
    return c == '_' || (bracketed && (c == ':' || c == '%'));
}

/* "HOST:PORT" with HOST a name, IPv4 address or bracketed IPv6 address. */
static bool is_listen(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > CFG_MAX_LISTEN)
        return false;
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s)
        return false;
    bool bracketed = s[0] == '[';
    const char *h = s, *h_end = colon;
    if (bracketed) {
        if (colon[-1] != ']' || colon - s < 3)
            return false;
        h = s + 1;
        h_end = colon - 1;
    }
    for (const char *c = h; c < h_end; c++)
        if (!is_host_char((unsigned char)*c, bracketed))
            return false;
    const char *port = colon + 1;
    size_t nd = strlen(port);
    if (nd == 0 || nd > 5 || strspn(port, "0123456789") != nd)
        return false;
    long n = strtol(port, NULL, 10);
    return n >= 1 && n <= CFG_MAX_PORT;
}

/* 1..CFG_MAX_TARGET_NAME printable ASCII characters. */
static bool is_target_name(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > CFG_MAX_TARGET_NAME)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7E)
            return false;
    return true;
}

/* Keys the file may carry without meaning: a "$schema" reference and
 * "_comment"-style keys. */
static bool is_ignored_key(const char *key)
{
    return key[0] == '_' || strcmp(key, "$schema") == 0;
}

static const char *provider_example_env(const char *provider)
{
    static const struct { const char *provider, *env; } defaults[] = {
        {"showly", "SHOWLY_TOKEN"},
        {"bigcommerce", "BIGCOMMERCE_ACCESS_TOKEN"},
        {"mixpeek", "MIXPEEK_API_KEY"},
        {"bluelink", "BLUELINK_API_KEY"},
    };
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++)
        if (strcmp(provider, defaults[i].provider) == 0)
            return defaults[i].env;
    return "MY_TOKEN";
}

/* Fields that would hold a secret in plain text; the file only names the
 * environment variables that hold them. */
static int check_no_plain_secrets(const parse_ctx *p, const char *target, const char *prefix,
                                  const json_t *obj)
{
    static const char *const plain[] = {
        "token", "accessToken", "access_token", "apiKey", "api_key", "apiToken",
        "secret", "clientSecret", "password",
    };
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
        if (!json_object_get(obj, plain[i]))
            continue;
        char field[CFG_FIELD_BUF];
        snprintf(field, sizeof field, "%s%s", prefix, plain[i]);
        return fail(p, target, field,
                    "secrets never live in the config file: put the value in an environment "
                    "variable and name it with \"tokenEnv\", \"keyEnv\" or \"secretEnv\"");
    }
    return 0;
}

static int check_env_fields(const parse_ctx *p, const char *target, const char *prefix,
                            const json_t *obj, const char *example)
{
    static const char *const env_fields[] = {"tokenEnv", "keyEnv", "secretEnv"};
    for (size_t i = 0; i < sizeof env_fields / sizeof env_fields[0]; i++) {
        const json_t *v = json_object_get(obj, env_fields[i]);
        if (!v)
            continue;
        char field[CFG_FIELD_BUF];
        snprintf(field, sizeof field, "%s%s", prefix, env_fields[i]);
        if (check_env(p, target, field, v, example) != 0)
            return -1;
    }
    return check_no_plain_secrets(p, target, prefix, obj);
}

/* ------------------------------------------------------------ the parser */

static int parse_target(const parse_ctx *p, const char *name, json_t *t, cfg_target *out)
{
    char qn[CFG_QUOTE_BUF];
    if (!is_target_name(name)) {
        quote(qn, name);
        return fail(p, NULL, NULL,
                    "target name %s: must be 1 to %d printable ASCII characters", qn,
                    CFG_MAX_TARGET_NAME);
    }
    if (!json_is_object(t))
        return fail(p, name, NULL,
                    "must be an object like {\"provider\": \"showly\", ...} (providers: "
                    CFG_KNOWN_PROVIDERS ")");
    const json_t *prov = json_object_get(t, "provider");
    if (!prov)
        return fail(p, name, "provider", "missing (one of: " CFG_KNOWN_PROVIDERS ")");
    if (!json_is_string(prov) || json_string_value(prov)[0] == '\0')
        return fail(p, name, "provider", "must be a non-empty string (one of: " CFG_KNOWN_PROVIDERS ")");
    const char *provider = json_string_value(prov);
    if (p->known && !p->known(provider)) {
        quote(qn, provider);
        return fail(p, name, "provider", "unknown provider %s (known: " CFG_KNOWN_PROVIDERS ")", qn);
    }

    static const char *const url_fields[] = {"baseUrl", "streamBaseUrl"};
    for (size_t i = 0; i < sizeof url_fields / sizeof url_fields[0]; i++) {
        json_t *u = json_object_get(t, url_fields[i]);
        if (u && check_url(p, name, url_fields[i], u) != 0)
            return -1;
    }

    const char *example = provider_example_env(provider);
    if (check_env_fields(p, name, "", t, example) != 0)
        return -1;
    const json_t *auth = json_object_get(t, "auth");
    if (auth) {
        if (!json_is_object(auth))
            return fail(p, name, "auth", "must be an object, e.g. {\"type\": \"apiKey\", \"keyEnv\": \"%s\"}",
                        example);
        if (check_env_fields(p, name, "auth.", auth, example) != 0)
            return -1;
    }

    out->name = strdup(name);
    out->provider = strdup(provider);
    if (!out->name || !out->provider)
        return fail_oom(p);
    out->obj = json_incref(t);
    return 0;
}

static int parse_targets(const parse_ctx *p, json_t *targets, cfg *c)
{
    if (!targets || json_is_null(targets))
        return 0;
    if (!json_is_object(targets))
        return fail(p, NULL, "targets",
                    "must be an object mapping target names to targets, e.g. "
                    "{\"web\": {\"provider\": \"showly\", ...}}");
    size_t n = json_object_size(targets);
    if (n > CFG_MAX_TARGETS)
        return fail(p, NULL, "targets", "%zu targets; at most %d are supported", n, CFG_MAX_TARGETS);
    if (n == 0)
        return 0;
    c->targets = calloc(n, sizeof *c->targets);
    if (!c->targets)
        return fail_oom(p);
    const char *name;
    json_t *t;
    json_object_foreach(targets, name, t) {
        /* counted first so cfg_free releases a half-filled entry */
        cfg_target *slot = &c->targets[c->ntargets++];
        if (parse_target(p, name, t, slot) != 0)
            return -1;
    }
    return 0;
}

static void append_names(char *buf, size_t buflen, const cfg *c)
{
    size_t o = strlen(buf);
    for (size_t i = 0; i < c->ntargets && o + 1 < buflen; i++) {
        int w = snprintf(buf + o, buflen - o, "%s%s", i ? ", " : "", c->targets[i].name);
        if (w < 0)
            break;
        o += (size_t)w;
    }
    if (o >= buflen && buflen >= 4)
        memcpy(buf + buflen - 4, "...", 4);
}

static int parse_default_target(const parse_ctx *p, const json_t *v, cfg *c)
{
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v) || json_string_value(v)[0] == '\0')
        return fail(p, NULL, "defaultTarget", "must be the name of a target (a non-empty string)");
    const char *name = json_string_value(v);
    if (!cfg_target_get(c, name)) {
        char q[CFG_QUOTE_BUF], names[CFG_MSG_BUF / 2] = "";
        quote(q, name);
        append_names(names, sizeof names, c);
        if (c->ntargets == 0)
            return fail(p, NULL, "defaultTarget", "names %s but no targets are configured", q);
        return fail(p, NULL, "defaultTarget", "no target named %s (configured targets: %s)", q, names);
    }
    c->default_target = strdup(name);
    return c->default_target ? 0 : fail_oom(p);
}

static int parse_origins(const parse_ctx *p, const json_t *v, cfg *c)
{
    size_t n = 0;
    if (v && !json_is_null(v)) {
        if (!json_is_array(v))
            return fail(p, NULL, "allowedOrigins",
                        "must be an array of origin strings, e.g. [\"https://app.example.com\"]");
        n = json_array_size(v);
        if (n > CFG_MAX_ORIGINS)
            return fail(p, NULL, "allowedOrigins", "%zu entries; at most %d are supported", n,
                        CFG_MAX_ORIGINS);
    }
    c->allowed_origins = calloc(n + 1, sizeof *c->allowed_origins);
    if (!c->allowed_origins)
        return fail_oom(p);
    for (size_t i = 0; i < n; i++) {
        const json_t *o = json_array_get(v, i);
        char field[CFG_FIELD_BUF];
        snprintf(field, sizeof field, "allowedOrigins[%zu]", i);
        if (!json_is_string(o) || json_string_value(o)[0] == '\0')
            return fail(p, NULL, field, "must be a non-empty string such as \"https://app.example.com\"");
        const char *s = json_string_value(o);
        size_t len = strlen(s);
        if (len > CFG_MAX_ORIGIN)
            return fail(p, NULL, field, "longer than %d bytes", CFG_MAX_ORIGIN);
        for (size_t k = 0; k < len; k++)
            if ((unsigned char)s[k] <= 0x20 || (unsigned char)s[k] == 0x7F)
                return fail(p, NULL, field, "must not contain whitespace or control characters");
        /* an Origin header never ends in '/': "https://x.com/" would never match */
        while (len > 1 && s[len - 1] == '/')
            len--;
        c->allowed_origins[i] = strndup(s, len);
        if (!c->allowed_origins[i])
            return fail_oom(p);
    }
    return 0;
}

static int parse_approval(const parse_ctx *p, json_t *v, cfg *c)
{
    const json_t *listen = NULL, *secret_env = NULL;
    json_t *public_url = NULL;
    if (v && !json_is_null(v)) {
        if (!json_is_object(v))
            return fail(p, NULL, "approval",
                        "must be an object like {\"listen\": \"" CFG_DEFAULT_APPROVAL_LISTEN
                        "\", \"publicUrl\": null, \"secretEnv\": \"" CFG_DEFAULT_APPROVER_SECRET_ENV "\"}");
        const char *key;
        json_t *val;
        json_object_foreach(v, key, val) {
            if (strcmp(key, "listen") == 0)
                listen = val;
            else if (strcmp(key, "publicUrl") == 0)
                public_url = val;
            else if (strcmp(key, "secretEnv") == 0)
                secret_env = val;
            else if (!is_ignored_key(key)) {
                char field[CFG_FIELD_BUF];
                snprintf(field, sizeof field, "approval.%s", key);   /* fail() escapes it */
                return fail(p, NULL, field, "unknown field (expected: listen, publicUrl, secretEnv)");
            }
        }
    }

    if (listen && !json_is_null(listen)) {
        if (!json_is_string(listen) || !is_listen(json_string_value(listen))) {
            char q[CFG_QUOTE_BUF] = "";
            if (json_is_string(listen))
                quote(q, json_string_value(listen));
            return fail(p, NULL, "approval.listen",
                        "must be \"HOST:PORT\" with a port from 1 to %d, e.g. \"" CFG_DEFAULT_APPROVAL_LISTEN
                        "\" or \"[::1]:8788\"%s%s%s",
                        CFG_MAX_PORT, q[0] ? " (got " : "", q, q[0] ? ")" : "");
        }
        c->approval_listen = strdup(json_string_value(listen));
    } else {
        c->approval_listen = strdup(CFG_DEFAULT_APPROVAL_LISTEN);
    }
    if (!c->approval_listen)
        return fail_oom(p);

    if (public_url && !json_is_null(public_url)) {
        if (check_url(p, NULL, "approval.publicUrl", public_url) != 0)
            return -1;
        c->approval_public_url = strdup(json_string_value(public_url));
        if (!c->approval_public_url)
            return fail_oom(p);
    }

    if (secret_env && !json_is_null(secret_env)) {
        if (check_env(p, NULL, "approval.secretEnv", secret_env, CFG_DEFAULT_APPROVER_SECRET_ENV) != 0)
            return -1;
        c->approval_secret_env = strdup(json_string_value(secret_env));
    } else {
        c->approval_secret_env = strdup(CFG_DEFAULT_APPROVER_SECRET_ENV);
    }
    return c->approval_secret_env ? 0 : fail_oom(p);
}

static int check_top_level_keys(const parse_ctx *p, json_t *root)
{
    static const char *const known[] = {"targets", "defaultTarget", "allowedOrigins", "approval"};
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        (void)val;
        bool ok = is_ignored_key(key);
        const char *hint = NULL;
        for (size_t i = 0; !ok && i < sizeof known / sizeof known[0]; i++) {
            if (strcmp(key, known[i]) == 0)
                ok = true;
            else if (strcasecmp(key, known[i]) == 0 ||
                     (strncmp(key, known[i], strlen(key)) == 0 && strlen(key) + 1 == strlen(known[i])))
                hint = known[i];   /* "Targets", "target" */
        }
        if (ok)
            continue;
        char q[CFG_QUOTE_BUF];
        quote(q, key);
        if (hint)
            return fail(p, NULL, NULL, "unknown top-level field %s: did you mean \"%s\"?", q, hint);
        return fail(p, NULL, NULL,
                    "unknown top-level field %s (expected: targets, defaultTarget, allowedOrigins, "
                    "approval; keys starting with '_' are ignored)",
                    q);
    }
    return 0;
}

/* The JSON error without jansson's "near '...'" excerpt, which could quote a
 * secret pasted into the file. Duplicate-key excerpts are keys, kept. */
static void json_error_text(const json_error_t *je, char *buf, size_t buflen)
{
    snprintf(buf, buflen, "%s", je->text);
#if JANSSON_VERSION_HEX >= 0x020b00
    bool duplicate = json_error_code(je) == json_error_duplicate_key;
#else
    bool duplicate = strncmp(buf, "duplicate object key", 20) == 0;
#endif
    char *near = strstr(buf, " near ");
    if (!near)
        return;
    if (!duplicate) {
        *near = '\0';
        return;
    }
    /* "duplicate object key near '"web"'" -> "duplicate object key "web"" */
    char *key = near + strlen(" near ");
    size_t klen = strlen(key);
    if (klen >= 2 && key[0] == '\'' && key[klen - 1] == '\'') {
        key[klen - 1] = '\0';
        memmove(near + 1, key + 1, klen - 1);
    }
}

static cfg *new_cfg(void)
{
    return calloc(1, sizeof(cfg));
}

/* Fills the defaults of a cfg that has no file behind it. */
static int fill_defaults(cfg *c)
{
    c->allowed_origins = calloc(1, sizeof *c->allowed_origins);
    c->approval_listen = strdup(CFG_DEFAULT_APPROVAL_LISTEN);
    c->approval_secret_env = strdup(CFG_DEFAULT_APPROVER_SECRET_ENV);
    return c->allowed_origins && c->approval_listen && c->approval_secret_env ? 0 : -1;
}

int cfg_parse(const char *text, size_t len, const char *path, cfg_provider_known_fn known,
              cfg **out, char *err, size_t errlen)
{
    parse_ctx p = {path ? path : CFG_NO_PATH, known, err, errlen};
    if (err && errlen)
        err[0] = '\0';
    if (!out)
        return fail(&p, NULL, NULL, "internal error: no output");
    *out = NULL;
    if (!text) {
        text = "";
        len = 0;
    }
    if (len > CFG_MAX_FILE_BYTES)
        return fail(&p, NULL, NULL, "larger than %u bytes", CFG_MAX_FILE_BYTES);
    /* tolerate a UTF-8 byte-order mark written by some editors */
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) {
        text += 3;
        len -= 3;
    }

    size_t blank = 0;   /* text need not be NUL-terminated */
    while (blank < len && (text[blank] == ' ' || text[blank] == '\t' || text[blank] == '\r' ||
                           text[blank] == '\n'))
        blank++;
    if (blank == len)
        return fail(&p, NULL, NULL, "the file is empty; expected a JSON object like {\"targets\": {...}}");

    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        char what[sizeof je.text];
        json_error_text(&je, what, sizeof what);
        return fail(&p, NULL, NULL, "invalid JSON at line %d, column %d: %s", je.line, je.column, what);
    }
    if (!json_is_object(root)) {
        json_decref(root);
        return fail(&p, NULL, NULL,
                    "the top level must be a JSON object like {\"targets\": {...}}");
    }

    cfg *c = new_cfg();
    int rc = -1;
    if (!c)
        fail_oom(&p);
    else if (check_top_level_keys(&p, root) == 0 &&
             parse_targets(&p, json_object_get(root, "targets"), c) == 0 &&
             parse_default_target(&p, json_object_get(root, "defaultTarget"), c) == 0 &&
             parse_origins(&p, json_object_get(root, "allowedOrigins"), c) == 0 &&
             parse_approval(&p, json_object_get(root, "approval"), c) == 0)
        rc = 0;
    json_decref(root);
    if (rc != 0) {
        cfg_free(c);
        return -1;
    }
    *out = c;
    return 0;
}

/* ---------------------------------------------------------------- lookup */

enum cfg_source { SRC_NONE, SRC_EXPLICIT, SRC_ENV, SRC_LOCAL, SRC_XDG, SRC_HOME };

/* True when path names something; permission errors count as existing so
 * that loading reports them instead of silently skipping the file. */
static bool path_exists(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0)
        return true;
    return errno != ENOENT && errno != ENOTDIR;
}

static char *join_path(const char *dir, const char *rest)
{
    size_t dl = strlen(dir), rl = strlen(rest);
    while (dl > 1 && dir[dl - 1] == '/')
        dl--;
    char *s = malloc(dl + 1 + rl + 1);
    if (!s)
        return NULL;
    memcpy(s, dir, dl);
    s[dl] = '/';
    memcpy(s + dl + 1, rest, rl + 1);
    return s;
}

/* Returns the candidate path (malloc'd) or NULL; *src tells where it came
 * from. An explicitly named file that does not exist yields NULL with *src
 * SRC_EXPLICIT or SRC_ENV and *missing set; NULL with *missing false and
 * SRC_NONE means no file (or out of memory when *oom is set). */
static char *find_config(const char *explicit_path, enum cfg_source *src, bool *missing, bool *oom)
{
    *src = SRC_NONE;
    *missing = false;
    *oom = false;
    const char *named = explicit_path;
    enum cfg_source named_src = SRC_EXPLICIT;
    if (!named) {
        const char *env = getenv(CFG_ENV_VAR);
        if (env && env[0]) {
            named = env;
            named_src = SRC_ENV;
        }
    }
    if (named) {
        *src = named_src;
        if (named[0] == '\0' || !path_exists(named)) {
            *missing = true;
            return NULL;
        }
        char *s = strdup(named);
        *oom = !s;
        return s;
    }

    if (path_exists(CFG_LOCAL_FILE)) {
        *src = SRC_LOCAL;
        char *s = strdup(CFG_LOCAL_FILE);
        *oom = !s;
        return s;
    }

    /* XDG Base Directory: a relative XDG_CONFIG_HOME is invalid and ignored */
    const char *xdg = getenv("XDG_CONFIG_HOME");
    char *candidate = NULL;
    enum cfg_source cand_src = SRC_NONE;
    if (xdg && xdg[0] == '/') {
        candidate = join_path(xdg, CFG_XDG_SUBPATH);
        cand_src = SRC_XDG;
    } else {
        const char *home = getenv("HOME");
        if (!home || !home[0])
            return NULL;
        candidate = join_path(home, CFG_HOME_SUBPATH);
        cand_src = SRC_HOME;
    }
    if (!candidate) {
        *oom = true;
        return NULL;
    }
    if (!path_exists(candidate)) {
        free(candidate);
        return NULL;
    }
    *src = cand_src;
    return candidate;
}

char *cfg_find(const char *explicit_path, bool *explicit_missing)
{
    enum cfg_source src;
    bool missing, oom;
    char *path = find_config(explicit_path, &src, &missing, &oom);
    if (explicit_missing)
        *explicit_missing = missing;
    return path;
}

/* Reads the whole file into a malloc'd buffer, refusing more than
 * CFG_MAX_FILE_BYTES. */
static int read_file(const char *path, char **buf_out, size_t *len_out, char *err, size_t errlen)
{
    char ebuf[256];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (strerror_r(e, ebuf, sizeof ebuf) != 0)
            snprintf(ebuf, sizeof ebuf, "error %d", e);
        put_err(err, errlen, "config %s: cannot open: %s", path, ebuf);
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            close(fd);
            put_err(err, errlen, "config %s: is a directory, not a JSON file", path);
            return -1;
        }
        if (S_ISREG(st.st_mode) && (unsigned long long)st.st_size > CFG_MAX_FILE_BYTES) {
            close(fd);
            put_err(err, errlen, "config %s: file is larger than %u bytes", path, CFG_MAX_FILE_BYTES);
            return -1;
        }
    }
    size_t cap = 0, len = 0;
    char *buf = NULL;
    for (;;) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : CFG_READ_CHUNK;
            if (ncap > (size_t)CFG_MAX_FILE_BYTES + 1)
                ncap = (size_t)CFG_MAX_FILE_BYTES + 1;
            char *nb = ncap > cap ? realloc(buf, ncap) : NULL;
            if (!nb) {
                free(buf);
                close(fd);
                put_err(err, errlen, "config %s: out of memory", path);
                return -1;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            if (strerror_r(e, ebuf, sizeof ebuf) != 0)
                snprintf(ebuf, sizeof ebuf, "error %d", e);
            free(buf);
            close(fd);
            put_err(err, errlen, "config %s: cannot read: %s", path, ebuf);
            return -1;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len > CFG_MAX_FILE_BYTES) {
            free(buf);
            close(fd);
            put_err(err, errlen, "config %s: file is larger than %u bytes", path, CFG_MAX_FILE_BYTES);
            return -1;
        }
    }
    close(fd);
    *buf_out = buf;
    *len_out = len;
    return 0;
}

int cfg_load(const char *explicit_path, cfg_provider_known_fn known, cfg **out, char *err,
             size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!out) {
        put_err(err, errlen, "config: internal error: no output");
        return -1;
    }
    *out = NULL;
    enum cfg_source src;
    bool missing, oom;
    char *path = find_config(explicit_path, &src, &missing, &oom);
    if (oom) {
        put_err(err, errlen, "config: out of memory");
        return -1;
    }
    if (missing) {
        const char *named = src == SRC_EXPLICIT ? explicit_path : getenv(CFG_ENV_VAR);
        put_err(err, errlen, "config %s: file not found (named by %s)", named ? named : "",
                src == SRC_EXPLICIT ? "--config" : CFG_ENV_VAR);
        return -1;
    }
    if (!path) {
        cfg *c = new_cfg();
        if (!c || fill_defaults(c) != 0) {
            cfg_free(c);
            put_err(err, errlen, "config: out of memory");
            return -1;
        }
        *out = c;
        return 0;
    }

    char *text = NULL;
    size_t len = 0;
    if (read_file(path, &text, &len, err, errlen) != 0) {
        free(path);
        return -1;
    }
    cfg *c = NULL;
    int rc = cfg_parse(text, len, path, known, &c, err, errlen);
    free(text);
    if (rc != 0) {
        free(path);
        return -1;
    }
    c->path = path;
    *out = c;
    return 0;
}

/* ---------------------------------------------------------------- access */

const cfg_target *cfg_target_get(const cfg *c, const char *name)
{
    if (!c || !name)
        return NULL;
    for (size_t i = 0; i < c->ntargets; i++)
        if (c->targets[i].name && strcmp(c->targets[i].name, name) == 0)
            return &c->targets[i];
    return NULL;
}

const cfg_target *cfg_pick_target(const cfg *c, const char *name, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (name && name[0] == '\0')
        name = NULL;   /* an empty "target" argument means "not given" */
    size_t n = c ? c->ntargets : 0;
    if (n == 0) {
        if (c && c->path)
            put_err(err, errlen,
                    "no deployment targets are configured: %s has no \"targets\"; add one, e.g. "
                    "{\"targets\": {\"web\": {\"provider\": \"showly\", \"siteId\": \"...\", "
                    "\"tokenEnv\": \"SHOWLY_TOKEN\"}}} (providers: " CFG_KNOWN_PROVIDERS ")",
                    c->path);
        else
            put_err(err, errlen,
                    "no deployment targets are configured: create " CFG_LOCAL_FILE
                    " or $XDG_CONFIG_HOME/" CFG_XDG_SUBPATH " (default ~/" CFG_HOME_SUBPATH
                    "), or pass --config FILE or set " CFG_ENV_VAR ", containing e.g. "
                    "{\"targets\": {\"web\": {\"provider\": \"showly\", \"siteId\": \"...\", "
                    "\"tokenEnv\": \"SHOWLY_TOKEN\"}}} (providers: " CFG_KNOWN_PROVIDERS ")");
        return NULL;
    }
    char names[CFG_MSG_BUF / 2] = "";
    if (name) {
        const cfg_target *t = cfg_target_get(c, name);
        if (t)
            return t;
        char q[CFG_QUOTE_BUF];
        quote(q, name);
        append_names(names, sizeof names, c);
        put_err(err, errlen, "unknown target %s; configured targets: %s", q, names);
        return NULL;
    }
    if (n == 1)
        return &c->targets[0];
    if (c->default_target) {
        const cfg_target *t = cfg_target_get(c, c->default_target);
        if (t)
            return t;
    }
    append_names(names, sizeof names, c);
    put_err(err, errlen,
            "several targets are configured (%s) and no defaultTarget is set: pass \"target\"",
            names);
    return NULL;
}

const char *cfg_str(const cfg_target *t, const char *field, const char *dflt)
{
    if (!t || !t->obj || !field)
        return dflt;
    const json_t *v = json_object_get(t->obj, field);
    return json_is_string(v) ? json_string_value(v) : dflt;
}

void cfg_free(cfg *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->ntargets; i++) {
        free(c->targets[i].name);
        free(c->targets[i].provider);
        json_decref(c->targets[i].obj);
    }
    free(c->targets);
    if (c->allowed_origins)
        for (char **o = c->allowed_origins; *o; o++)
            free(*o);
    free(c->allowed_origins);
    free(c->path);
    free(c->default_target);
    free(c->approval_listen);
    free(c->approval_public_url);
    free(c->approval_secret_env);
    free(c);
}

/* test_config.c — the config loader (mcp/config.h, PRODUCT.md §2). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mcp/config.h"

#define ERR_LEN 1024
#define MAX_SUBSTR 4
#define PATH_LEN 4096

static bool known_provider(const char *name)
{
    static const char *const names[] = {"showly", "bigcommerce", "mixpeek", "bluelink"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(name, names[i]) == 0)
            return true;
    return false;
}

static cfg *parse_ok(const char *text)
{
    cfg *c = NULL;
    char err[ERR_LEN] = "";
    int rc = cfg_parse(text, strlen(text), "t.json", known_provider, &c, err, sizeof err);
    if (rc != 0)
        print_error("unexpected error: %s\n", err);
    assert_int_equal(rc, 0);
    assert_non_null(c);
    return c;
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle)) {
        print_error("expected \"%s\" in: %s\n", needle, hay);
        fail();
    }
}

static void assert_lacks(const char *hay, const char *needle)
{
    if (strstr(hay, needle)) {
        print_error("did not expect \"%s\" in: %s\n", needle, hay);
        fail();
    }
}

/* ------------------------------------------------------------ valid files */

static const char full_config[] =
    "{\n"
    "  \"$schema\": \"https://example.com/deploy-mcp.schema.json\",\n"
    "  \"_comment\": \"four providers\",\n"
    "  \"targets\": {\n"
    "    \"web\":     { \"provider\": \"showly\", \"siteId\": \"site_01HZX\", \"tokenEnv\": \"SHOWLY_TOKEN\" },\n"
    "    \"store\":   { \"provider\": \"bigcommerce\", \"storeHash\": \"abc123\", \"projectUuid\": \"\xe2\x80\xa6\",\n"
    "                 \"productionProjectUuid\": \"\xe2\x80\xa6\", \"tokenEnv\": \"BIGCOMMERCE_ACCESS_TOKEN\",\n"
    "                 \"baseUrl\": \"http://127.0.0.1:9001/\", \"streamBaseUrl\": \"https://logs.example.com//\" },\n"
    "    \"canvas\":  { \"provider\": \"mixpeek\", \"appId\": \"app_\xe2\x80\xa6\", \"tokenEnv\": \"MIXPEEK_API_KEY\" },\n"
    "    \"infra\":   { \"provider\": \"bluelink\", \"baseUrl\": \"http://127.0.0.1:8325\",\n"
    "                 \"instanceName\": \"prod-stack\", \"directory\": \"infra\", \"blueprintFile\": \"project.blueprint.yml\",\n"
    "                 \"auth\": { \"type\": \"apiKey\", \"keyEnv\": \"BLUELINK_API_KEY\" } }\n"
    "  },\n"
    "  \"defaultTarget\": \"web\",\n"
    "  \"allowedOrigins\": [\"https://app.example.com\", \"http://localhost:3000/\"],\n"
    "  \"approval\": {\"listen\": \"0.0.0.0:9999\", \"publicUrl\": \"https://deploy.example.com/\",\n"
    "               \"secretEnv\": \"MY_APPROVER_SECRET\", \"_note\": \"behind a proxy\"}\n"
    "}\n";

static void test_full_config(void **state)
{
    (void)state;
    cfg *c = parse_ok(full_config);
    assert_null(c->path);   /* cfg_parse loads no file */
    assert_int_equal(c->ntargets, 4);
    static const char *const names[] = {"web", "store", "canvas", "infra"};
    static const char *const providers[] = {"showly", "bigcommerce", "mixpeek", "bluelink"};
    for (size_t i = 0; i < 4; i++) {
        assert_string_equal(c->targets[i].name, names[i]);   /* file order */
        assert_string_equal(c->targets[i].provider, providers[i]);
        assert_true(json_is_object(c->targets[i].obj));
        assert_ptr_equal(cfg_target_get(c, names[i]), &c->targets[i]);
    }
    assert_null(cfg_target_get(c, "nope"));
    assert_string_equal(c->default_target, "web");
    assert_string_equal(c->allowed_origins[0], "https://app.example.com");
    assert_string_equal(c->allowed_origins[1], "http://localhost:3000");
    assert_null(c->allowed_origins[2]);
    assert_string_equal(c->approval_listen, "0.0.0.0:9999");
    assert_string_equal(c->approval_public_url, "https://deploy.example.com");
    assert_string_equal(c->approval_secret_env, "MY_APPROVER_SECRET");

    const cfg_target *store = cfg_target_get(c, "store");
    assert_string_equal(cfg_str(store, "storeHash", NULL), "abc123");
    assert_string_equal(cfg_str(store, "baseUrl", NULL), "http://127.0.0.1:9001");
    assert_string_equal(cfg_str(store, "streamBaseUrl", NULL), "https://logs.example.com");
    assert_string_equal(cfg_str(store, "artifactRoot", "dflt"), "dflt");
    assert_null(cfg_str(store, "missing", NULL));
    const cfg_target *infra = cfg_target_get(c, "infra");
    assert_string_equal(cfg_str(infra, "baseUrl", NULL), "http://127.0.0.1:8325");
    assert_string_equal(cfg_str(infra, "auth", "not-a-string"), "not-a-string");
    assert_string_equal(cfg_str(NULL, "x", "d"), "d");
    cfg_free(c);
}

static void test_defaults(void **state)
{
    (void)state;
    cfg *c = parse_ok("{\"targets\": {\"only\": {\"provider\": \"mixpeek\"}}}");
    assert_int_equal(c->ntargets, 1);
    assert_null(c->default_target);
    assert_non_null(c->allowed_origins);
    assert_null(c->allowed_origins[0]);
    assert_string_equal(c->approval_listen, CFG_DEFAULT_APPROVAL_LISTEN);
    assert_null(c->approval_public_url);
    assert_string_equal(c->approval_secret_env, CFG_DEFAULT_APPROVER_SECRET_ENV);
    cfg_free(c);

    /* no targets at all; nulls count as absent; a BOM is tolerated */
    c = parse_ok("\xEF\xBB\xBF{\"defaultTarget\": null, \"allowedOrigins\": null,"
                 " \"approval\": {\"listen\": null, \"publicUrl\": null, \"secretEnv\": null}}");
    assert_int_equal(c->ntargets, 0);
    assert_null(c->targets);
    assert_null(c->allowed_origins[0]);
    assert_string_equal(c->approval_listen, CFG_DEFAULT_APPROVAL_LISTEN);
    assert_string_equal(c->approval_secret_env, CFG_DEFAULT_APPROVER_SECRET_ENV);
    cfg_free(c);

    c = parse_ok("{\"targets\": {}, \"approval\": {\"listen\": \"[::1]:1\"}}");
    assert_int_equal(c->ntargets, 0);
    assert_string_equal(c->approval_listen, "[::1]:1");
    cfg_free(c);

    c = parse_ok("{\"approval\": {\"listen\": \"localhost:65535\"}}");
    cfg_free(c);

    /* boundary: a 64-character printable name, env names with digits */
    c = parse_ok("{\"targets\": {\"a2345678901234567890123456789012345678901234567890123456789012 ~\":"
                 " {\"provider\": \"showly\", \"tokenEnv\": \"_TOKEN_2\", \"secretEnv\": \"lower_case\"}}}");
    assert_int_equal(strlen(c->targets[0].name), 64);
    cfg_free(c);

    /* a NULL predicate accepts any provider */
    char err[ERR_LEN];
    const char *t = "{\"targets\": {\"x\": {\"provider\": \"future\"}}}";
    assert_int_equal(cfg_parse(t, strlen(t), NULL, NULL, &c, err, sizeof err), 0);
    assert_string_equal(c->targets[0].provider, "future");
    cfg_free(c);

    cfg_free(NULL);
}

/* ------------------------------------------------------------ error cases */

typedef struct err_case {
    const char *json;
    const char *want[MAX_SUBSTR];   /* each must appear in the message */
    const char *never;              /* must not appear (a secret) */
} err_case;

#define T1(prov, extra) "{\"targets\": {\"web\": {\"provider\": \"" prov "\"" extra "}}}"

static const err_case err_cases[] = {
    /* shape */
    {"[]", {"config t.json: ", "top level must be a JSON object"}, NULL},
    {"   \n", {"config t.json: ", "empty"}, NULL},
    {"{\"targets\": []}", {"config t.json: ", "field \"targets\": ", "must be an object"}, NULL},
    {"{\"targets\": {\"web\": \"showly\"}}", {"target \"web\": ", "must be an object"}, NULL},
    {"{\"tragets\": {}}", {"config t.json: ", "unknown top-level field \"tragets\"", "expected: targets"}, NULL},
    {"{\"Targets\": {}}", {"\"Targets\"", "did you mean \"targets\""}, NULL},
    {"{\"target\": {}}", {"\"target\"", "did you mean \"targets\""}, NULL},
    /* provider */
    {"{\"targets\": {\"web\": {\"siteId\": \"s\"}}}",
     {"config t.json: target \"web\": field \"provider\": missing", "showly, bigcommerce, mixpeek, bluelink"}, NULL},
    {T1("", ""), {"target \"web\": field \"provider\": ", "non-empty string"}, NULL},
    {"{\"targets\": {\"web\": {\"provider\": 7}}}", {"target \"web\": field \"provider\": ", "non-empty string"}, NULL},
    {T1("shwoly", ""),
     {"config t.json: target \"web\": field \"provider\": unknown provider \"shwoly\" "
      "(known: showly, bigcommerce, mixpeek, bluelink)"}, NULL},
    /* target names */
    {"{\"targets\": {\"\": {\"provider\": \"showly\"}}}", {"config t.json: ", "target name \"\"", "1 to 64"}, NULL},
    {"{\"targets\": {\"a2345678901234567890123456789012345678901234567890123456789012345\": {\"provider\": \"showly\"}}}",
     {"target name ", "1 to 64 printable ASCII"}, NULL},
    {"{\"targets\": {\"we\\u0001b\": {\"provider\": \"showly\"}}}", {"target name \"we\\x01b\"", "printable ASCII"}, NULL},
    {"{\"targets\": {\"caf\xc3\xa9\": {\"provider\": \"showly\"}}}", {"target name \"caf\xc3\xa9\"", "printable ASCII"}, NULL},
    /* URLs (never echoed: they could carry credentials) */
    {T1("showly", ", \"baseUrl\": 5"), {"target \"web\": field \"baseUrl\": ", "http:// or https://"}, NULL},
    {T1("showly", ", \"baseUrl\": \"ftp://files.example.com\""),
     {"target \"web\": field \"baseUrl\": ", "http:// or https://"}, "files.example.com"},
    {T1("showly", ", \"baseUrl\": \"my-api.test\""), {"field \"baseUrl\": ", "http://"}, "my-api.test"},
    {T1("showly", ", \"baseUrl\": \"http://bad host\""), {"field \"baseUrl\": ", "whitespace"}, NULL},
    {T1("showly", ", \"baseUrl\": \"http://x/?a=1\""), {"field \"baseUrl\": ", "query"}, NULL},
    {T1("showly", ", \"baseUrl\": \"http:///path\""), {"field \"baseUrl\": ", "no host"}, NULL},
    {T1("showly", ", \"baseUrl\": \"https://user:hunter2@api.example.com\""),
     {"target \"web\": field \"baseUrl\": ", "credentials"}, "hunter2"},
    {T1("bigcommerce", ", \"streamBaseUrl\": \"wss://x\""),
     {"target \"web\": field \"streamBaseUrl\": ", "http:// or https://"}, NULL},
    /* environment variable names: secrets are refused and never echoed */
    {T1("showly", ", \"tokenEnv\": \"sk_live_51HxQabc\""),
     {"config t.json: target \"web\": field \"tokenEnv\": ",
      "must name an environment variable, not hold the secret", "SHOWLY_TOKEN"}, "sk_live_51HxQabc"},
    {T1("showly", ", \"tokenEnv\": \"mcp_8f3a9c\""),
     {"field \"tokenEnv\": ", "must name an environment variable, not hold the secret"}, "mcp_8f3a9c"},
    {T1("showly", ", \"tokenEnv\": \"abc-def.ghi/jk=\""),
     {"field \"tokenEnv\": ", "not hold the secret"}, "abc-def"},
    {T1("showly", ", \"tokenEnv\": \"Bearer eyJhbGciOi\""),
     {"field \"tokenEnv\": ", "not hold the secret"}, "eyJhbGciOi"},
    {T1("showly", ", \"tokenEnv\": \"AKIAIOSFODNN7EXAMPLE\""),
     {"field \"tokenEnv\": ", "not hold the secret"}, "AKIAIOSFODNN7EXAMPLE"},
    {T1("showly", ", \"tokenEnv\": \"9TOKEN\""), {"field \"tokenEnv\": ", "not hold the secret"}, "9TOKEN"},
    {T1("showly", ", \"tokenEnv\": \"\""), {"target \"web\": field \"tokenEnv\": ", "not be empty"}, NULL},
    {T1("showly", ", \"tokenEnv\": 12345"), {"target \"web\": field \"tokenEnv\": ", "must be a string"}, "12345"},
    {T1("mixpeek", ", \"keyEnv\": \"mk_live_0123456789abcdef0123\""),
     {"target \"web\": field \"keyEnv\": ", "not hold the secret", "MIXPEEK_API_KEY"}, "mk_live_0123456789abcdef0123"},
    {T1("bluelink", ", \"secretEnv\": \"s3cr3t!\""), {"target \"web\": field \"secretEnv\": ", "not hold the secret"}, "s3cr3t!"},
    {T1("bluelink", ", \"auth\": {\"type\": \"apiKey\", \"keyEnv\": \"bl_key_0123456789abcdef0123456789\"}"),
     {"target \"web\": field \"auth.keyEnv\": ", "not hold the secret", "BLUELINK_API_KEY"},
     "bl_key_0123456789abcdef0123456789"},
    {T1("bluelink", ", \"auth\": {\"type\": \"signature\", \"keyId\": \"k1\", \"secretEnv\": \"sk_abc\"}"),
     {"field \"auth.secretEnv\": ", "not hold the secret"}, "sk_abc"},
    {T1("bluelink", ", \"auth\": {\"type\": \"bearer\", \"tokenEnv\": false}"),
     {"field \"auth.tokenEnv\": ", "must be a string"}, NULL},
    {T1("bluelink", ", \"auth\": \"apiKey\""), {"target \"web\": field \"auth\": ", "must be an object"}, NULL},
    /* plain-text secrets */
    {T1("showly", ", \"token\": \"shw_0123456789\""),
     {"target \"web\": field \"token\": ", "secrets never live in the config file"}, "shw_0123456789"},
    {T1("bluelink", ", \"auth\": {\"type\": \"apiKey\", \"apiKey\": \"k-0123\"}"),
     {"target \"web\": field \"auth.apiKey\": ", "secrets never live"}, "k-0123"},
    /* defaultTarget */
    {"{\"targets\": {\"a\": {\"provider\": \"showly\"}, \"b\": {\"provider\": \"mixpeek\"}}, \"defaultTarget\": \"c\"}",
     {"config t.json: field \"defaultTarget\": ", "no target named \"c\"", "configured targets: a, b"}, NULL},
    {"{\"targets\": {\"a\": {\"provider\": \"showly\"}}, \"defaultTarget\": 1}",
     {"field \"defaultTarget\": ", "name of a target"}, NULL},
    {"{\"defaultTarget\": \"web\"}", {"field \"defaultTarget\": ", "no targets are configured"}, NULL},
    /* allowedOrigins */
    {"{\"allowedOrigins\": \"https://a.example\"}", {"config t.json: field \"allowedOrigins\": ", "array"}, NULL},
    {"{\"allowedOrigins\": [\"https://a.example\", 3]}", {"field \"allowedOrigins[1]\": ", "string"}, NULL},
    {"{\"allowedOrigins\": [\"\"]}", {"field \"allowedOrigins[0]\": ", "non-empty"}, NULL},
    /* approval */
    {"{\"approval\": true}", {"config t.json: field \"approval\": ", "must be an object"}, NULL},
    {"{\"approval\": {\"listen\": \"127.0.0.1\"}}", {"field \"approval.listen\": ", "HOST:PORT"}, NULL},
    {"{\"approval\": {\"listen\": \"127.0.0.1:0\"}}", {"field \"approval.listen\": ", "1 to 65535"}, NULL},
    {"{\"approval\": {\"listen\": \"127.0.0.1:65536\"}}", {"field \"approval.listen\": ", "1 to 65535"}, NULL},
    {"{\"approval\": {\"listen\": \":8788\"}}", {"field \"approval.listen\": ", "HOST:PORT"}, NULL},
    {"{\"approval\": {\"listen\": \"::1:8788\"}}", {"field \"approval.listen\": ", "[::1]:8788"}, NULL},
    {"{\"approval\": {\"listen\": \"host:80x\"}}", {"field \"approval.listen\": ", "HOST:PORT"}, NULL},
    {"{\"approval\": {\"listen\": 8788}}", {"field \"approval.listen\": ", "HOST:PORT"}, NULL},
    {"{\"approval\": {\"publicUrl\": 1}}", {"field \"approval.publicUrl\": ", "http:// or https://"}, NULL},
    {"{\"approval\": {\"publicUrl\": \"deploy.example.com\"}}", {"field \"approval.publicUrl\": ", "http://"}, NULL},
    {"{\"approval\": {\"secretEnv\": \"hunter2-secret\"}}",
     {"config t.json: field \"approval.secretEnv\": ", "not hold the secret", CFG_DEFAULT_APPROVER_SECRET_ENV},
     "hunter2"},
    {"{\"approval\": {\"listen\": \"127.0.0.1:1\", \"port\": 2}}",
     {"field \"approval.port\": ", "unknown field", "listen, publicUrl, secretEnv"}, NULL},
    /* JSON syntax: line and column, duplicates, no secret excerpts */
    {"{\n  \"targets\": {,}\n}", {"config t.json: invalid JSON at line 2, column 15"}, NULL},
    {"{\"targets\": {\"web\": {\"provider\": \"showly\"}, \"web\": {\"provider\": \"mixpeek\"}}}",
     {"config t.json: invalid JSON at line 1", "duplicate", "\"web\""}, NULL},
    {"{\"targets\": {}, \"targets\": {}}", {"invalid JSON", "duplicate", "\"targets\""}, NULL},
    {"{\"targets\": {\"web\": {\"provider\": \"showly\",\n \"tokenEnv\": sk_live_pasted}}}",
     {"config t.json: invalid JSON at line 2, column"}, "sk_live_pasted"},
    {"{\"targets\": {\"web\": {\"tokenEnv\": \"sk_live_\x01\"}}}", {"invalid JSON at line 1"}, "sk_live"},
    {"{\"targets\": {\"web\": {\"provider\": \"showly\"}}", {"invalid JSON", "line 1"}, NULL},
};

static void test_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof err_cases / sizeof err_cases[0]; i++) {
        const err_case *e = &err_cases[i];
        cfg *c = (cfg *)(uintptr_t)1;   /* must be reset to NULL */
        char err[ERR_LEN] = "";
        int rc = cfg_parse(e->json, strlen(e->json), "t.json", known_provider, &c, err, sizeof err);
        if (rc != -1) {
            print_error("case %zu accepted: %s\n", i, e->json);
            fail();
        }
        assert_null(c);
        assert_true(strlen(err) > 0);
        for (size_t k = 0; k < MAX_SUBSTR && e->want[k]; k++)
            assert_contains(err, e->want[k]);
        if (e->never)
            assert_lacks(err, e->never);
        assert_lacks(err, "\n");   /* one line */
    }
}

static void test_error_buffer_edges(void **state)
{
    (void)state;
    const char *bad = T1("shwoly", "");
    cfg *c = NULL;
    char small[16];
    memset(small, 'x', sizeof small);
    assert_int_equal(cfg_parse(bad, strlen(bad), "t.json", known_provider, &c, small, sizeof small), -1);
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_int_equal(cfg_parse(bad, strlen(bad), "t.json", known_provider, &c, NULL, 0), -1);
    assert_null(c);

    /* not NUL-terminated input: only len bytes are read */
    char buf[] = {'{', '}', 'x'};
    assert_int_equal(cfg_parse(buf, 2, "t.json", known_provider, &c, small, sizeof small), 0);
    cfg_free(c);

    /* no path: messages still say where */
    char err[ERR_LEN];
    assert_int_equal(cfg_parse("[]", 2, NULL, known_provider, &c, err, sizeof err), -1);
    assert_contains(err, "config ");

    /* a long provider name is quoted and truncated */
    char big[512];
    snprintf(big, sizeof big, T1("%0300d", ""), 7);
    assert_int_equal(cfg_parse(big, strlen(big), "t.json", known_provider, &c, err, sizeof err), -1);
    assert_contains(err, "unknown provider \"0000");
    assert_contains(err, "...\"");
    assert_true(strlen(err) < 300);
}

/* --------------------------------------------------------- files, lookup */

typedef struct saved_env {
    char *cwd;
    char *vals[3];
} saved_env;

static const char *const env_names[3] = {"DEPLOY_MCP_CONFIG", "XDG_CONFIG_HOME", "HOME"};

static void save_env(saved_env *s)
{
    s->cwd = getcwd(NULL, 0);
    assert_non_null(s->cwd);
    for (size_t i = 0; i < 3; i++) {
        const char *v = getenv(env_names[i]);
        s->vals[i] = v ? strdup(v) : NULL;
    }
}

static void restore_env(saved_env *s)
{
    assert_int_equal(chdir(s->cwd), 0);
    free(s->cwd);
    for (size_t i = 0; i < 3; i++) {
        if (s->vals[i])
            setenv(env_names[i], s->vals[i], 1);
        else
            unsetenv(env_names[i]);
        free(s->vals[i]);
    }
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static void make_dir(const char *path)
{
    assert_int_equal(mkdir(path, 0700), 0);
}

/* "<dir>/<rest>" into buf */
static const char *at(char *buf, const char *dir, const char *rest)
{
    int n = snprintf(buf, PATH_LEN, "%s/%s", dir, rest);
    assert_true(n > 0 && n < PATH_LEN);
    return buf;
}

static char *one_target(const char *name)
{
    static char buf[256];
    snprintf(buf, sizeof buf, "{\"targets\": {\"%s\": {\"provider\": \"showly\"}}}", name);
    return buf;
}

/* Loads with cfg_load and checks which file won (by its only target). */
static void expect_load(const char *explicit_path, const char *want_path_suffix, const char *want_target)
{
    cfg *c = NULL;
    char err[ERR_LEN] = "";
    int rc = cfg_load(explicit_path, known_provider, &c, err, sizeof err);
    if (rc != 0)
        print_error("cfg_load: %s\n", err);
    assert_int_equal(rc, 0);
    if (!want_path_suffix) {
        assert_null(c->path);
        assert_int_equal(c->ntargets, 0);
        assert_null(c->allowed_origins[0]);
        assert_string_equal(c->approval_listen, CFG_DEFAULT_APPROVAL_LISTEN);
        assert_string_equal(c->approval_secret_env, CFG_DEFAULT_APPROVER_SECRET_ENV);
    } else {
        assert_non_null(c->path);
        size_t pl = strlen(c->path), sl = strlen(want_path_suffix);
        assert_true(pl >= sl);
        assert_string_equal(c->path + pl - sl, want_path_suffix);
        assert_int_equal(c->ntargets, 1);
        assert_string_equal(c->targets[0].name, want_target);
    }
    bool missing = true;
    char *found = cfg_find(explicit_path, &missing);
    assert_false(missing);
    if (want_path_suffix) {
        assert_non_null(found);
        assert_string_equal(found, c->path);
    } else {
        assert_null(found);
    }
    free(found);
    cfg_free(c);
}

typedef struct tree {
    char root[PATH_LEN];
} tree;

static void rm_tree(const tree *t)
{
    static const char *const files[] = {
        "env.json", "explicit.json", "cwd/deploy-mcp.json", "xdg/deploy-mcp/config.json",
        "home/.config/deploy-mcp/config.json", "big.json",
    };
    static const char *const dirs[] = {
        "xdg/deploy-mcp", "xdg", "home/.config/deploy-mcp", "home/.config", "home", "cwd", "empty",
        "emptyhome", "adir",
    };
    char p[PATH_LEN];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        unlink(at(p, t->root, files[i]));
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++)
        rmdir(at(p, t->root, dirs[i]));
    assert_int_equal(rmdir(t->root), 0);
}

static void test_lookup_order(void **state)
{
    (void)state;
    saved_env saved;
    save_env(&saved);
    tree t;
    snprintf(t.root, sizeof t.root, "/tmp/deploy-mcp-cfg-XXXXXX");
    assert_non_null(mkdtemp(t.root));
    char p[PATH_LEN], q[PATH_LEN];
    make_dir(at(p, t.root, "cwd"));
    make_dir(at(p, t.root, "empty"));
    make_dir(at(p, t.root, "emptyhome"));
    make_dir(at(p, t.root, "xdg"));
    make_dir(at(p, t.root, "xdg/deploy-mcp"));
    make_dir(at(p, t.root, "home"));
    make_dir(at(p, t.root, "home/.config"));
    make_dir(at(p, t.root, "home/.config/deploy-mcp"));
    write_file(at(p, t.root, "explicit.json"), one_target("from-explicit"));
    write_file(at(p, t.root, "env.json"), one_target("from-env"));
    write_file(at(p, t.root, "cwd/deploy-mcp.json"), one_target("from-cwd"));
    write_file(at(p, t.root, "xdg/deploy-mcp/config.json"), one_target("from-xdg"));
    write_file(at(p, t.root, "home/.config/deploy-mcp/config.json"), one_target("from-home"));

    assert_int_equal(chdir(at(p, t.root, "cwd")), 0);
    setenv("DEPLOY_MCP_CONFIG", at(p, t.root, "env.json"), 1);
    setenv("XDG_CONFIG_HOME", at(p, t.root, "xdg"), 1);
    setenv("HOME", at(p, t.root, "home"), 1);

    /* explicit beats everything, then the env variable, then ./, then XDG, then HOME */
    expect_load(at(q, t.root, "explicit.json"), "/explicit.json", "from-explicit");
    expect_load(NULL, "/env.json", "from-env");
    setenv("DEPLOY_MCP_CONFIG", "", 1);   /* empty counts as unset */
    expect_load(NULL, "./deploy-mcp.json", "from-cwd");
    unsetenv("DEPLOY_MCP_CONFIG");
    expect_load(NULL, "./deploy-mcp.json", "from-cwd");
    assert_int_equal(chdir(at(p, t.root, "empty")), 0);
    expect_load(NULL, "/xdg/deploy-mcp/config.json", "from-xdg");
    setenv("XDG_CONFIG_HOME", "", 1);
    expect_load(NULL, "/home/.config/deploy-mcp/config.json", "from-home");
    unsetenv("XDG_CONFIG_HOME");
    expect_load(NULL, "/home/.config/deploy-mcp/config.json", "from-home");
    setenv("XDG_CONFIG_HOME", "relative/dir", 1);   /* invalid per XDG: ignored */
    expect_load(NULL, "/home/.config/deploy-mcp/config.json", "from-home");
    /* XDG set but without a file there: HOME is not consulted */
    setenv("XDG_CONFIG_HOME", at(p, t.root, "emptyhome"), 1);
    expect_load(NULL, NULL, NULL);

    /* no file anywhere: success, zero targets, path NULL */
    unsetenv("XDG_CONFIG_HOME");
    setenv("HOME", at(p, t.root, "emptyhome"), 1);
    expect_load(NULL, NULL, NULL);
    unsetenv("HOME");
    expect_load(NULL, NULL, NULL);

    /* explicitly named files that are missing are errors naming them */
    cfg *c = (cfg *)(uintptr_t)1;
    char err[ERR_LEN];
    bool missing = false;
    const char *gone = at(q, t.root, "gone.json");
    assert_int_equal(cfg_load(gone, known_provider, &c, err, sizeof err), -1);
    assert_null(c);
    assert_contains(err, gone);
    assert_contains(err, "not found");
    assert_contains(err, "--config");
    assert_null(cfg_find(gone, &missing));
    assert_true(missing);

    setenv("DEPLOY_MCP_CONFIG", gone, 1);
    assert_int_equal(cfg_load(NULL, known_provider, &c, err, sizeof err), -1);
    assert_contains(err, gone);
    assert_contains(err, "DEPLOY_MCP_CONFIG");
    missing = false;
    assert_null(cfg_find(NULL, &missing));
    assert_true(missing);
    /* an explicit path wins over a broken env variable */
    expect_load(at(q, t.root, "explicit.json"), "/explicit.json", "from-explicit");
    unsetenv("DEPLOY_MCP_CONFIG");

    /* a directory, and a file over the size cap */
    make_dir(at(p, t.root, "adir"));
    assert_int_equal(cfg_load(p, known_provider, &c, err, sizeof err), -1);
    assert_contains(err, p);
    assert_contains(err, "directory");

    const char *bigp = at(p, t.root, "big.json");
    FILE *f = fopen(bigp, "w");
    assert_non_null(f);
    fputs("{\"targets\": {}}", f);
    for (size_t i = 0; i < CFG_MAX_FILE_BYTES; i++)
        fputc(' ', f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(cfg_load(bigp, known_provider, &c, err, sizeof err), -1);
    assert_contains(err, bigp);
    assert_contains(err, "larger than");
    assert_null(c);

    /* errors inside a loaded file name that file */
    write_file(at(p, t.root, "explicit.json"), "{\"targets\": {\"web\": {\"provider\": \"shwoly\"}}}");
    assert_int_equal(cfg_load(p, known_provider, &c, err, sizeof err), -1);
    char want[PATH_LEN + 64];
    snprintf(want, sizeof want, "config %s: target \"web\": field \"provider\"", p);
    assert_contains(err, want);

    /* ./deploy-mcp.json is named as such in messages */
    assert_int_equal(chdir(at(p, t.root, "cwd")), 0);
    write_file("deploy-mcp.json", "{\n \"targets\": {\"web\": {\"provider\": \"shwoly\"}}}");
    assert_int_equal(cfg_load(NULL, known_provider, &c, err, sizeof err), -1);
    assert_contains(err, "config ./deploy-mcp.json: target \"web\": field \"provider\": unknown provider \"shwoly\"");
    write_file("deploy-mcp.json", "{\n \"targets\": {\"web\": }\n}");
    assert_int_equal(cfg_load(NULL, known_provider, &c, err, sizeof err), -1);
    assert_contains(err, "config ./deploy-mcp.json: invalid JSON at line 2, column");

    restore_env(&saved);
    rm_tree(&t);
}

/* ----------------------------------------------------------- pick_target */

static void test_pick_target(void **state)
{
    (void)state;
    char err[ERR_LEN];
    const cfg_target *t;

    cfg *none = parse_ok("{}");
    assert_null(cfg_pick_target(none, NULL, err, sizeof err));
    assert_contains(err, "no deployment targets are configured");
    assert_contains(err, "deploy-mcp.json");
    assert_contains(err, "deploy-mcp/config.json");
    assert_contains(err, "--config");
    assert_contains(err, "DEPLOY_MCP_CONFIG");
    assert_null(cfg_pick_target(none, "web", err, sizeof err));
    assert_contains(err, "no deployment targets are configured");
    assert_null(cfg_pick_target(NULL, NULL, err, sizeof err));
    assert_contains(err, "no deployment targets are configured");
    cfg_free(none);

    cfg *one = parse_ok("{\"targets\": {\"solo\": {\"provider\": \"bluelink\"}}}");
    t = cfg_pick_target(one, NULL, err, sizeof err);
    assert_non_null(t);
    assert_string_equal(t->name, "solo");
    assert_non_null(cfg_pick_target(one, "", err, sizeof err));   /* empty = omitted */
    assert_null(cfg_pick_target(one, "x", err, sizeof err));
    assert_string_equal(err, "unknown target \"x\"; configured targets: solo");
    cfg_free(one);

    cfg *two = parse_ok("{\"targets\": {\"a\": {\"provider\": \"showly\"}, \"b\": {\"provider\": \"mixpeek\"}}}");
    assert_null(cfg_pick_target(two, NULL, err, sizeof err));
    assert_string_equal(err,
                        "several targets are configured (a, b) and no defaultTarget is set: pass \"target\"");
    assert_null(cfg_pick_target(two, "x", err, sizeof err));
    assert_string_equal(err, "unknown target \"x\"; configured targets: a, b");
    assert_null(cfg_pick_target(two, "x\"\n", err, sizeof err));
    assert_string_equal(err, "unknown target \"x\\\"\\x0a\"; configured targets: a, b");
    t = cfg_pick_target(two, "b", err, sizeof err);
    assert_non_null(t);
    assert_string_equal(t->provider, "mixpeek");
    cfg_free(two);

    cfg *dflt = parse_ok("{\"targets\": {\"a\": {\"provider\": \"showly\"}, \"b\": {\"provider\": \"mixpeek\"}},"
                         " \"defaultTarget\": \"b\"}");
    t = cfg_pick_target(dflt, NULL, err, sizeof err);
    assert_non_null(t);
    assert_string_equal(t->name, "b");
    t = cfg_pick_target(dflt, "a", err, sizeof err);
    assert_non_null(t);
    assert_string_equal(t->name, "a");
    cfg_free(dflt);

    /* a loaded file without targets says which file to edit */
    cfg *empty_file = parse_ok("{\"targets\": {}}");
    empty_file->path = strdup("/etc/x.json");
    assert_null(cfg_pick_target(empty_file, NULL, err, sizeof err));
    assert_contains(err, "/etc/x.json");
    assert_contains(err, "\"targets\"");
    cfg_free(empty_file);

    /* many targets: the list is cut, never overflows */
    char big[16384];
    size_t o = (size_t)snprintf(big, sizeof big, "{\"targets\": {");
    for (int i = 0; i < 200; i++)
        o += (size_t)snprintf(big + o, sizeof big - o, "%s\"target-number-%03d\": {\"provider\": \"showly\"}",
                              i ? ", " : "", i);
    snprintf(big + o, sizeof big - o, "}}");
    cfg *many = parse_ok(big);
    assert_int_equal(many->ntargets, 200);
    assert_null(cfg_pick_target(many, NULL, err, sizeof err));
    assert_contains(err, "several targets are configured (target-number-000, ");
    assert_contains(err, "pass \"target\"");
    char tiny[8];
    assert_null(cfg_pick_target(many, "zz", tiny, sizeof tiny));
    assert_int_equal(strlen(tiny), sizeof tiny - 1);
    cfg_free(many);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_config),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_error_buffer_edges),
        cmocka_unit_test(test_lookup_order),
        cmocka_unit_test(test_pick_target),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

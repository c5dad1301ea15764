/* test_bluelink.c — the Bluelink adapter without a network: the
 * Bluelink-Signature-V1 header against a vector computed independently with
 * Python's hmac module, configuration checks, every event type of both
 * streams (staging and deploying) translated into the common model with
 * statuses in words, endOfStream handling, the staged-changes summary,
 * change set records, error mapping and list cursors.
 *
 * The adapter's helpers are file-private, so this test compiles the adapter
 * into itself; the linker then takes prov_bluelink from here and never pulls
 * the library's copy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <stdlib.h>

#include "providers/bluelink.c"

#define MAX_EVENTS 8
#define TEXT_MAX 1024

/* ---- fixtures ----------------------------------------------------------- */

typedef struct fixture {
    cfg_target cfg;
    prov_target t;
} fixture;

static int make_target(fixture *f, const char *json, char *err, size_t n)
{
    memset(f, 0, sizeof *f);
    f->cfg.name = (char *)"infra";
    f->cfg.provider = (char *)"bluelink";
    f->cfg.obj = json_loads(json, 0, NULL);
    assert_non_null(f->cfg.obj);
    f->t.cfg = &f->cfg;
    f->t.ops = &prov_bluelink;
    err[0] = '\0';
    return bl_configure(&f->t, err, n);
}

static void drop_target(fixture *f)
{
    bl_unconfigure(&f->t);
    json_decref(f->cfg.obj);
}

#define BASIC_CFG(auth)                                                                      \
    "{\"provider\":\"bluelink\",\"baseUrl\":\"http://127.0.0.1:9\",\"instanceName\":\"prod\","  \
    "\"directory\":\"infra\",\"blueprintFile\":\"app.blueprint.yml\"" auth "}"

/* Events captured from stream_parse. */
typedef struct captured {
    int n;
    prov_event_kind kind[MAX_EVENTS];
    prov_status status[MAX_EVENTS];
    char provider_status[MAX_EVENTS][64];
    char message[MAX_EVENTS][TEXT_MAX];
    char error_code[MAX_EVENTS][64];
    char error_message[MAX_EVENTS][TEXT_MAX];
    json_t *detail[MAX_EVENTS];
} captured;

static void capture(void *sink, const prov_event *ev)
{
    captured *c = sink;
    assert_true(c->n < MAX_EVENTS);
    int i = c->n++;
    c->kind[i] = ev->kind;
    c->status[i] = ev->status;
    snprintf(c->provider_status[i], sizeof c->provider_status[i], "%s",
             ev->provider_status ? ev->provider_status : "");
    snprintf(c->message[i], sizeof c->message[i], "%s", ev->message ? ev->message : "");
    snprintf(c->error_code[i], sizeof c->error_code[i], "%s", ev->error ? ev->error->code : "");
    snprintf(c->error_message[i], sizeof c->error_message[i], "%s",
             ev->error ? ev->error->message : "");
    c->detail[i] = ev->detail ? json_incref(ev->detail) : NULL;
}

static void captured_free(captured *c)
{
    for (int i = 0; i < c->n; i++)
        json_decref(c->detail[i]);
    memset(c, 0, sizeof *c);
}

/* Feeds one SSE event to the adapter; returns stream_parse's answer. */
static int feed(fixture *f, void *state, const char *type, const char *data, captured *c)
{
    sse_event ev = {.type = type, .type_len = strlen(type), .data = data,
                    .data_len = strlen(data), .id = "", .id_len = 0};
    prov_error err = {0};
    return bl_stream_parse(&f->t, state, PROV_STREAM_EVENTS, &ev, capture, c, &err);
}

/* A stream state bound to `id`, as prov_stream_open + connect would do. */
static bl_stream *open_state(fixture *f, const char *id)
{
    prov_stream_spec spec;
    prov_error err;
    setenv("BLUELINK_API_KEY", "k", 1);
    bl_stream *s = bl_stream_state_new(&f->t, PROV_STREAM_EVENTS);
    assert_non_null(s);
    assert_int_equal(bl_stream_spec(&f->t, PROV_STREAM_EVENTS, id, &spec, &err), 0);
    bl_stream_prepare(&f->t, s, id, &spec);
    return s;
}

/* Status words only: no bare numbers in a message (resource names here
 * carry no digits). */
static void assert_no_digits(const char *s)
{
    for (; *s; s++)
        if (isdigit((unsigned char)*s)) {
            print_error("unexpected digit in message: %s\n", s);
            fail();
        }
}

/* ---- signature ---------------------------------------------------------- */

static void test_signature_vector(void **state)
{
    (void)state;
    char out[BL_SIG_MAX];
    /* python3: base64.urlsafe_b64encode(hmac.new(b"s3cr3t-signing-key",
     *   b"deploy-mcp-test,bluelink-date=1700000000", hashlib.sha256).digest()).rstrip(b"=") */
    assert_int_equal(bl_signature("deploy-mcp-test", "s3cr3t-signing-key", 1700000000LL, out,
                                  sizeof out), 0);
    assert_string_equal(out, "keyId=\"deploy-mcp-test\", headers=\"bluelink-date\", "
                             "signature=\"DZOJcsxNPT95MD5W0b0TG_p7elG9kp09b4BgIoYIHps\"");
    /* An empty secret is still a key (of zero bytes). */
    assert_int_equal(bl_signature("k1", "", 1, out, sizeof out), 0);
    assert_non_null(strstr(out, "signature=\"l-hfnHew4HP58nvTeMHZp2z9t2bUGU0l82l5wvOUsfw\""));
    /* Too small an output buffer is an error, not a cut header. */
    assert_int_equal(bl_signature("deploy-mcp-test", "x", 1, out, 20), -1);
}

static void test_auth_header_lines(void **state)
{
    (void)state;
    fixture f;
    char err[512];
    bl_auth_headers h;
    prov_error e;
    setenv("BL_TEST_SECRET", "s3cr3t-signing-key", 1);
    assert_int_equal(make_target(&f, BASIC_CFG(",\"auth\":{\"type\":\"signature\",\"keyId\":"
                                               "\"deploy-mcp-test\",\"secretEnv\":"
                                               "\"BL_TEST_SECRET\"}"), err, sizeof err), 0);
    assert_int_equal(auth_headers(cfg_of(&f.t), 1700000000LL, &h, &e), 0);
    assert_int_equal(h.n, 2);
    assert_string_equal(h.line[0], "Bluelink-Date: 1700000000");
    assert_string_equal(h.line[1], "Bluelink-Signature-V1: keyId=\"deploy-mcp-test\", "
                                   "headers=\"bluelink-date\", "
                                   "signature=\"DZOJcsxNPT95MD5W0b0TG_p7elG9kp09b4BgIoYIHps\"");
    drop_target(&f);

    setenv("BL_TEST_TOKEN", "jwt.token.value", 1);
    assert_int_equal(make_target(&f, BASIC_CFG(",\"auth\":{\"type\":\"bearer\",\"tokenEnv\":"
                                               "\"BL_TEST_TOKEN\"}"), err, sizeof err), 0);
    assert_int_equal(auth_headers(cfg_of(&f.t), 1, &h, &e), 0);
    assert_int_equal(h.n, 1);
    assert_string_equal(h.line[0], "Authorization: Bearer jwt.token.value");
    drop_target(&f);

    /* No auth at all: an API key from BLUELINK_API_KEY. */
    setenv("BLUELINK_API_KEY", "bl-key-123", 1);
    assert_int_equal(make_target(&f, BASIC_CFG(""), err, sizeof err), 0);
    assert_int_equal(auth_headers(cfg_of(&f.t), 1, &h, &e), 0);
    assert_string_equal(h.line[0], "Bluelink-Api-Key: bl-key-123");
    unsetenv("BLUELINK_API_KEY");
    /* A missing secret names the variable, never a value. */
    assert_int_equal(auth_headers(cfg_of(&f.t), 1, &h, &e), -1);
    assert_string_equal(e.code, "missing_credentials");
    assert_non_null(strstr(e.message, "BLUELINK_API_KEY"));
    drop_target(&f);
}

static void test_stream_prepare_resigns(void **state)
{
    (void)state;
    fixture f;
    char err[512];
    setenv("BL_TEST_SECRET", "s3cr3t-signing-key", 1);
    assert_int_equal(make_target(&f, BASIC_CFG(",\"auth\":{\"type\":\"signature\",\"keyId\":"
                                               "\"kid\",\"secretEnv\":\"BL_TEST_SECRET\"}"),
                                 err, sizeof err), 0);
    prov_stream_spec spec;
    prov_error e;
    assert_int_equal(bl_stream_spec(&f.t, PROV_STREAM_EVENTS, "prod", &spec, &e), 0);
    assert_int_equal(spec.nheaders, 2);
    assert_string_equal(spec.url, "http://127.0.0.1:9/v1/deployments/instances/prod/stream");
    assert_int_equal(spec.resume, PROV_RESUME_LAST_EVENT_ID);
    assert_true(spec.reconnect);
    /* Stale date: stream_prepare signs again with the current time. */
    snprintf(spec.headers[0], sizeof spec.headers[0], "Bluelink-Date: 1");
    bl_stream_prepare(&f.t, NULL, "prod", &spec);
    long long date = atoll(spec.headers[0] + strlen("Bluelink-Date: "));
    assert_true(date > 1700000000LL);
    char want[BL_SIG_MAX];
    assert_int_equal(bl_signature("kid", "s3cr3t-signing-key", date, want, sizeof want), 0);
    assert_string_equal(spec.headers[1] + strlen("Bluelink-Signature-V1: "), want);
    drop_target(&f);
}

/* ---- configuration --------------------------------------------------------- */

static void expect_config_error(const char *json, const char *needle)
{
    fixture f;
    char err[512];
    assert_int_equal(make_target(&f, json, err, sizeof err), -1);
    if (!strstr(err, needle)) {
        print_error("error \"%s\" does not mention \"%s\"\n", err, needle);
        fail();
    }
    assert_null(f.t.priv);
    json_decref(f.cfg.obj);
}

static void test_config_defaults(void **state)
{
    (void)state;
    fixture f;
    char err[512];
    assert_int_equal(make_target(&f, "{\"provider\":\"bluelink\",\"instanceName\":\"prod\","
                                     "\"directory\":\"infra\"}", err, sizeof err), 0);
    const bl_cfg *c = cfg_of(&f.t);
    assert_string_equal(c->base, "http://localhost:8325/v1");
    assert_string_equal(c->blueprint_file, "project.blueprint.yml");
    assert_int_equal(c->auth, BL_AUTH_API_KEY);
    assert_string_equal(c->secret_env, "BLUELINK_API_KEY");
    drop_target(&f);
    /* A baseUrl that already ends in /v1 is not doubled. */
    assert_int_equal(make_target(&f, "{\"baseUrl\":\"http://h:1/v1\",\"instanceId\":\"i\","
                                     "\"directory\":\"d\",\"auth\":{\"type\":\"bearer\"}}",
                                 err, sizeof err), 0);
    assert_string_equal(cfg_of(&f.t)->base, "http://h:1/v1");
    assert_int_equal(cfg_of(&f.t)->auth, BL_AUTH_BEARER);
    assert_string_equal(cfg_of(&f.t)->secret_env, "BLUELINK_API_KEY");
    drop_target(&f);
}

static void test_config_errors_name_fields(void **state)
{
    (void)state;
    expect_config_error("{\"instanceName\":\"p\"}", "\"directory\"");
    expect_config_error("{\"directory\":\"d\"}", "\"instanceName\"");
    expect_config_error(BASIC_CFG(",\"auth\":{\"type\":\"oauth\"}"), "\"auth.type\"");
    expect_config_error(BASIC_CFG(",\"auth\":{\"keyEnv\":\"K\"}"), "\"auth.type\"");
    expect_config_error(BASIC_CFG(",\"auth\":{\"type\":\"signature\",\"secretEnv\":\"S\"}"),
                        "\"auth.keyId\"");
    expect_config_error(BASIC_CFG(",\"auth\":{\"type\":\"signature\",\"keyId\":\"a,b\"}"),
                        "\"auth.keyId\"");
    expect_config_error(BASIC_CFG(",\"auth\":{\"type\":\"bearer\",\"keyEnv\":\"K\"}"),
                        "\"auth.keyEnv\"");
    expect_config_error(BASIC_CFG(",\"auth\":{\"type\":\"apiKey\"},\"tokenEnv\":\"T\""),
                        "\"tokenEnv\"");
    expect_config_error(BASIC_CFG(",\"auth\":\"apiKey\""), "\"auth\"");
    expect_config_error(BASIC_CFG(",\"config\":[1]"), "\"config\"");
    expect_config_error(BASIC_CFG(",\"secretEnv\":\"S\""), "\"secretEnv\"");
    expect_config_error("{\"directory\":7,\"instanceName\":\"p\"}", "\"directory\"");
}

static void test_credentials_name_the_variable(void **state)
{
    (void)state;
    fixture f;
    char err[512], problem[512];
    unsetenv("BL_TEST_MISSING");
    assert_int_equal(make_target(&f, BASIC_CFG(",\"auth\":{\"type\":\"signature\",\"keyId\":"
                                               "\"kid\",\"secretEnv\":\"BL_TEST_MISSING\"}"),
                                 err, sizeof err), 0);
    assert_false(bl_credentials_ok(&f.t, problem, sizeof problem));
    assert_non_null(strstr(problem, "BL_TEST_MISSING"));
    assert_non_null(strstr(problem, "kid"));
    setenv("BL_TEST_MISSING", "value-never-shown", 1);
    assert_true(bl_credentials_ok(&f.t, problem, sizeof problem));
    unsetenv("BL_TEST_MISSING");
    drop_target(&f);
}

static void test_unsupported_hints(void **state)
{
    (void)state;
    assert_non_null(strstr(bl_unsupported_hint("tail_logs"), "stream_events"));
    assert_non_null(strstr(bl_unsupported_hint("tail_logs"), "no runtime"));
    assert_non_null(strstr(bl_unsupported_hint("request_publish"), "approval"));
    assert_false(prov_bluelink.caps & PROV_CAP_TAIL_LOGS);
    /* Production publishes go through deploy-mcp's approval gate. */
    assert_true(prov_bluelink.caps & PROV_CAP_REQUEST_PUBLISH);
    assert_null(prov_bluelink.request_publish);
    assert_non_null(prov_bluelink.prepare_publish);
    assert_non_null(prov_bluelink.publish);
}

/* ---- staging stream ---------------------------------------------------------- */

static const char COMPLETE[] =
    "{\"changes\":{\"newResources\":{\"ordersTable\":{},\"ordersApi\":{}},"
    "\"resourceChanges\":{\"assetsBucket\":{\"modifiedFields\":[{\"fieldPath\":"
    "\"spec.versioning\"}]},\"cacheCluster\":{\"mustRecreate\":true}},"
    "\"removedResources\":[\"legacyQueue\"],\"removedLinks\":[\"a::b\"],"
    "\"newChildren\":{\"networking\":{}},\"childChanges\":{},\"recreateChildren\":[],"
    "\"removedChildren\":[]},\"timestamp\":1700000000}";

static void test_staging_events(void **state)
{
    (void)state;
    fixture f;
    char err[512];
    assert_int_equal(make_target(&f, BASIC_CFG(""), err, sizeof err), 0);
    bl_record *r = record_get(cfg_of(&f.t), "cs-1");
    set_owned(&r->status, "STARTING");
    set_owned(&r->last_event_id, "0190a1b2-0000-7000-8000-000000000001");
    bl_stream *s = open_state(&f, "changeset:cs-1");
    assert_string_equal(s->changeset_id, "cs-1");
    captured c = {0};

    assert_int_equal(feed(&f, s, "resourceChanges", "{\"resourceName\":\"ordersTable\","
                          "\"new\":true,\"removed\":false,\"changes\":{}}", &c),
                     PROV_PARSE_CONTINUE);
    assert_int_equal(feed(&f, s, "resourceChanges", "{\"resourceName\":\"legacyQueue\","
                          "\"removed\":true,\"changes\":{}}", &c), PROV_PARSE_CONTINUE);
    assert_int_equal(feed(&f, s, "resourceChanges", "{\"resourceName\":\"assetsBucket\","
                          "\"changes\":{\"modifiedFields\":[{\"fieldPath\":\"spec.versioning\"}]}}",
                          &c), PROV_PARSE_CONTINUE);
    assert_int_equal(feed(&f, s, "resourceChanges", "{\"resourceName\":\"cacheCluster\","
                          "\"changes\":{\"modifiedFields\":[{\"fieldPath\":\"spec.engine\","
                          "\"mustRecreate\":true}]}}", &c), PROV_PARSE_CONTINUE);
    assert_int_equal(feed(&f, s, "childChanges", "{\"childBlueprintName\":\"networking\","
                          "\"new\":true,\"changes\":{\"newResources\":{\"vpc\":{}}}}", &c),
                     PROV_PARSE_CONTINUE);
    assert_int_equal(feed(&f, s, "linkChanges", "{\"resourceAName\":\"ordersApi\","
                          "\"resourceBName\":\"ordersTable\",\"new\":true,\"changes\":{}}", &c),
                     PROV_PARSE_CONTINUE);
    assert_int_equal(c.n, 6);
    /* The first staged change also moves the change set to STAGING_CHANGES. */
    assert_int_equal(c.kind[0], PROV_EV_STATUS);
    assert_int_equal(c.status[0], PROV_ST_BUILDING);
    assert_string_equal(c.provider_status[0], "STAGING_CHANGES");
    for (int i = 1; i < 6; i++)
        assert_int_equal(c.kind[i], PROV_EV_RESOURCE);
    assert_string_equal(c.message[0], "resource ordersTable would be created");
    assert_string_equal(c.message[1], "resource legacyQueue would be removed");
    assert_string_equal(c.message[2], "resource assetsBucket would be updated (spec.versioning)");
    assert_string_equal(c.message[3], "resource cacheCluster would be recreated (spec.engine)");
    assert_string_equal(c.message[4], "child blueprint networking would be created: "
                                      "1 to create (vpc)");
    assert_string_equal(c.message[5], "link ordersApi -> ordersTable would be created");
    assert_string_equal(r->status, "STAGING_CHANGES");
    captured_free(&c);

    assert_int_equal(feed(&f, s, "changeStagingComplete", COMPLETE, &c), PROV_PARSE_END);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.kind[0], PROV_EV_STATUS);
    assert_int_equal(c.status[0], PROV_ST_READY);
    assert_string_equal(c.provider_status[0], "CHANGES_STAGED");
    assert_non_null(strstr(c.message[0], "2 to create (ordersTable, ordersApi)"));
    assert_non_null(strstr(c.message[0], "1 to update (assetsBucket)"));
    assert_non_null(strstr(c.message[0], "1 to recreate (cacheCluster)"));
    assert_non_null(strstr(c.message[0], "1 to remove (legacyQueue)"));
    json_t *counts = json_object_get(json_object_get(c.detail[0], "changes"), "counts");
    assert_int_equal(json_integer_value(json_object_get(counts, "create")), 2);
    assert_int_equal(json_integer_value(json_object_get(counts, "update")), 1);
    assert_int_equal(json_integer_value(json_object_get(counts, "recreate")), 1);
    assert_int_equal(json_integer_value(json_object_get(counts, "remove")), 1);
    captured_free(&c);

    /* The record now answers get_deployment with the summary. */
    assert_string_equal(r->status, "CHANGES_STAGED");
    json_t *dep = record_deployment(&f.t, r);
    assert_string_equal(json_string_value(json_object_get(dep, "id")), "changeset:cs-1");
    assert_string_equal(json_string_value(json_object_get(dep, "environment")), "preview");
    assert_string_equal(json_string_value(json_object_get(dep, "status")), "ready");
    const char *text = json_string_value(json_object_get(json_object_get(dep, "changes"), "text"));
    assert_non_null(strstr(text, "child blueprints: 1 to create (networking)"));
    json_decref(dep);
    /* A cursor taken now says the staging stream is over. */
    char *saved = bl_stream_state_save(s);
    assert_non_null(saved);
    bl_stream *again = bl_stream_state_new(&f.t, PROV_STREAM_EVENTS);
    assert_false(bl_stream_state_complete(again));
    assert_int_equal(bl_stream_state_restore(again, saved), 0);
    assert_true(bl_stream_state_complete(again));
    assert_int_equal(bl_stream_state_restore(again, "garbage"), -1);
    free(saved);
    bl_stream_state_free(again);
    bl_stream_state_free(s);
    drop_target(&f);
}

static void test_staging_first_connect_resumes_after_post(void **state)
{
    (void)state;
    fixture f;
    char err[512];
    prov_stream_spec spec;
    prov_error e;
    assert_int_equal(make_target(&f, BASIC_CFG(""), err, sizeof err), 0);
    setenv("BLUELINK_API_KEY", "k", 1);
    bl_record *r = record_get(cfg_of(&f.t), "cs/2");
    set_owned(&r->last_event_id, "0190a1b2-0000-7000-8000-00000000000a");
    assert_int_equal(bl_stream_spec(&f.t, PROV_STREAM_EVENTS, "changeset:cs/2", &spec, &e), 0);
    assert_string_equal(spec.url, "http://127.0.0.1:9/v1/deployments/changes/cs%2F2/stream");
    assert_string_equal(spec.first_last_event_id, "0190a1b2-0000-7000-8000-00000000000a");
    assert_string_equal(spec.headers[0], "Bluelink-Api-Key: k");
    /* Logs are not a Bluelink stream. */
    assert_int_equal(bl_stream_spec(&f.t, PROV_STREAM_LOGS, NULL, &spec, &e), -1);
    assert_string_equal(e.code, "unsupported");
    unsetenv("BLUELINK_API_KEY");
    drop_target(&f);
}

static void test_staging_drift_and_error(void **state)
{
    (void)state;
    fixture f;
    char err[512];
    assert_int_equal(make_target(&f, BASIC_CFG(""), err, sizeof err), 0);
    bl_stream *s = open_state(&f, "changeset:cs-3");
    captured c = {0};
    assert_int_equal(feed(&f, s, "driftDetected", "{\"message\":\"drift detected\","
                          "\"reconciliationResult\":{\"resources\":[{\"resourceName\":"
                          "\"assetsBucket\"}]},\"timestamp\":1}", &c), PROV_PARSE_END);
    assert_int_equal(c.kind[0], PROV_EV_STATUS);
    assert_int_equal(c.status[0], PROV_ST_FAILED);
    assert_string_equal(c.provider_status[0], "DRIFT_DETECTED");
    assert_string_equal(c.error_code[0], "drift_detected");
    assert_non_null(strstr(c.error_message[0], "drift"));
    assert_non_null(strstr(c.error_message[0], "assetsBucket"));
    const bl_record *r = record_find(cfg_of(&f.t), "cs-3");
    assert_non_null(r);   /* observed on a stream: recorded */
    assert_string_equal(r->status, "DRIFT_DETECTED");
    captured_free(&c);
    bl_stream_state_free(s);

    s = open_state(&f, "changeset:cs-4");
    assert_int_equal(feed(&f, s, "error", "{\"message\":\"blueprint invalid\",\"diagnostics\":"
                          "[{\"level\":1,\"message\":\"unknown resource type aws/nope\"}]}", &c),
                     PROV_PARSE_END);
    assert_int_equal(c.status[0], PROV_ST_FAILED);
    assert_string_equal(c.provider_status[0], "FAILED");
    assert_non_null(strstr(c.error_message[0], "blueprint invalid"));
    assert_non_null(strstr(c.error_message[0], "unknown resource type aws/nope"));
    captured_free(&c);
    bl_stream_state_free(s);
    drop_target(&f);
}

/* ---- deploy stream ----------------------------------------------------------- */

static void test_deploy_events_in_words(void **state)
{
    (void)state;
    fixture f;
    char err[512];
    assert_int_equal(make_target(&f, BASIC_CFG(""), err, sizeof err), 0);
    bl_stream *s = open_state(&f, "inst-1");
    assert_null(s->changeset_id);
    captured c = {0};
    assert_int_equal(feed(&f, s, "resource", "{\"resourceName\":\"ordersTable\",\"status\":3,"
                          "\"preciseStatus\":3,\"failureReasons\":[\"AccessDenied\"]}", &c),
                     PROV_PARSE_CONTINUE);
    assert_int_equal(feed(&f, s, "child", "{\"childName\":\"networking\",\"status\":2}", &c),
                     PROV_PARSE_CONTINUE);
    assert_int_equal(feed(&f, s, "link", "{\"linkName\":\"ordersApi::ordersTable\","
                          "\"status\":6}", &c), PROV_PARSE_CONTINUE);
    assert_int_equal(feed(&f, s, "resource", "{\"resourceName\":\"bucket\",\"status\":\"UPDATED\"}",
                          &c), PROV_PARSE_CONTINUE);
    assert_int_equal(feed(&f, s, "resource", "{\"resourceName\":\"odd\",\"status\":99}", &c),
                     PROV_PARSE_CONTINUE);
    assert_string_equal(c.message[0], "resource ordersTable: CREATE_FAILED — AccessDenied");
    assert_string_equal(c.message[1], "child blueprint networking: DEPLOYED");
    assert_string_equal(c.message[2], "link ordersApi::ordersTable: CREATE_ROLLBACK_COMPLETE");
    assert_string_equal(c.message[3], "resource bucket: UPDATED");
    assert_string_equal(c.message[4], "resource odd: UNKNOWN");
    for (int i = 0; i < c.n; i++) {
        assert_int_equal(c.kind[i], PROV_EV_RESOURCE);
        assert_no_digits(c.message[i]);
    }
    captured_free(&c);
    /* Instance streams continue with the next deployment: never "ended". */
    assert_int_equal(feed(&f, s, "finish", "{\"status\":2,\"endOfStream\":true}", &c),
                     PROV_PARSE_END);
    assert_null(bl_stream_state_save(s));
    captured_free(&c);
    bl_stream_state_free(s);
    drop_target(&f);
}

static void test_instance_status_mapping(void **state)
{
    (void)state;
    static const struct {
        int code;
        prov_status st;
        const char *word;
    } cases[] = {
        {0, PROV_ST_QUEUED, "PREPARING"},       {1, PROV_ST_BUILDING, "DEPLOYING"},
        {2, PROV_ST_READY, "DEPLOYED"},         {3, PROV_ST_FAILED, "DEPLOY_FAILED"},
        {4, PROV_ST_BUILDING, "DEPLOY_ROLLING_BACK"},
        {6, PROV_ST_FAILED, "DEPLOY_ROLLBACK_COMPLETE"},
        {7, PROV_ST_UNKNOWN, "DESTROYING"},     {8, PROV_ST_UNKNOWN, "DESTROYED"},
        {12, PROV_ST_UNKNOWN, "DESTROY_ROLLBACK_COMPLETE"},
        {13, PROV_ST_BUILDING, "UPDATING"},     {14, PROV_ST_READY, "UPDATED"},
        {16, PROV_ST_BUILDING, "UPDATE_ROLLING_BACK"},
        {18, PROV_ST_FAILED, "UPDATE_ROLLBACK_COMPLETE"},
        {19, PROV_ST_UNKNOWN, "NOT_DEPLOYED"},  {20, PROV_ST_FAILED, "DEPLOY_INTERRUPTED"},
        {22, PROV_ST_FAILED, "DESTROY_INTERRUPTED"},
    };
    fixture f;
    char err[512], data[128];
    assert_int_equal(make_target(&f, BASIC_CFG(""), err, sizeof err), 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        captured c = {0};
        snprintf(data, sizeof data, "{\"instanceId\":\"i\",\"status\":%d,\"updateTimestamp\":1}",
                 cases[i].code);
        assert_int_equal(feed(&f, NULL, "instanceUpdate", data, &c), PROV_PARSE_CONTINUE);
        assert_int_equal(c.kind[0], PROV_EV_STATUS);
        assert_int_equal(c.status[0], cases[i].st);
        assert_string_equal(c.provider_status[0], cases[i].word);
        assert_no_digits(c.message[0]);
        captured_free(&c);
    }
    /* Deployment objects need one of the five words even for destroy states. */
    assert_int_equal(instance_record_status(7), PROV_ST_BUILDING);
    assert_int_equal(instance_record_status(8), PROV_ST_CANCELED);
    assert_int_equal(instance_record_status(9), PROV_ST_FAILED);
    assert_int_equal(instance_record_status(19), PROV_ST_QUEUED);
    assert_int_equal(instance_record_status(2), PROV_ST_READY);
    drop_target(&f);
}

static void test_finish_and_end_of_stream(void **state)
{
    (void)state;
    fixture f;
    char err[512];
    assert_int_equal(make_target(&f, BASIC_CFG(""), err, sizeof err), 0);
    captured c = {0};
    /* Auto-rollback: a failed finish that is not the end. */
    assert_int_equal(feed(&f, NULL, "finish", "{\"instanceId\":\"i\",\"status\":3,"
                          "\"failureReasons\":[\"ordersTable: AccessDenied\"],"
                          "\"finishTimestamp\":1,\"durations\":{},\"endOfStream\":false}", &c),
                     PROV_PARSE_CONTINUE);
    assert_int_equal(c.status[0], PROV_ST_FAILED);
    assert_string_equal(c.provider_status[0], "DEPLOY_FAILED");
    assert_string_equal(c.error_code[0], "deploy_failed");
    assert_non_null(strstr(c.message[0], "rolling it back automatically"));
    assert_string_equal(c.message[0], c.error_message[0]);
    assert_non_null(strstr(c.error_message[0], "AccessDenied"));
    assert_int_equal(feed(&f, NULL, "preRollbackState", "{\"instanceId\":\"i\",\"status\":3}", &c),
                     PROV_PARSE_CONTINUE);
    assert_int_equal(c.kind[1], PROV_EV_RESOURCE);
    assert_non_null(strstr(c.message[1], "before rollback"));
    assert_int_equal(feed(&f, NULL, "instanceUpdate", "{\"status\":4}", &c), PROV_PARSE_CONTINUE);
    assert_int_equal(c.status[2], PROV_ST_BUILDING);
    assert_int_equal(feed(&f, NULL, "finish", "{\"status\":6,\"endOfStream\":true}", &c),
                     PROV_PARSE_END);
    assert_int_equal(c.status[3], PROV_ST_FAILED);
    assert_string_equal(c.provider_status[3], "DEPLOY_ROLLBACK_COMPLETE");
    assert_non_null(strstr(c.error_message[3], "rolled it back"));
    captured_free(&c);
    /* Success; and an engine without endOfStream ends at finish. */
    assert_int_equal(feed(&f, NULL, "finish", "{\"status\":2,\"endOfStream\":true}", &c),
                     PROV_PARSE_END);
    assert_int_equal(c.status[0], PROV_ST_READY);
    assert_string_equal(c.error_code[0], "");
    assert_int_equal(feed(&f, NULL, "finish", "{\"status\":14}", &c), PROV_PARSE_END);
    assert_int_equal(c.status[1], PROV_ST_READY);
    assert_string_equal(c.provider_status[1], "UPDATED");
    captured_free(&c);
    drop_target(&f);
}

static void test_instance_error_and_junk(void **state)
{
    (void)state;
    fixture f;
    char err[512];
    assert_int_equal(make_target(&f, BASIC_CFG(""), err, sizeof err), 0);
    bl_stream *s = open_state(&f, "prod");
    captured c = {0};
    assert_int_equal(feed(&f, s, "error", "{\"message\":\"plugin crashed\",\"diagnostics\":[]}",
                          &c), PROV_PARSE_END);
    assert_int_equal(c.kind[0], PROV_EV_STATUS);
    assert_int_equal(c.status[0], PROV_ST_FAILED);
    assert_non_null(strstr(c.error_message[0], "plugin crashed"));
    /* The engine's own stream failure is an error, the outcome unknown. */
    assert_int_equal(feed(&f, s, "error", "{\"error\":\"event store unavailable\"}", &c),
                     PROV_PARSE_END);
    assert_int_equal(c.kind[1], PROV_EV_ERROR);
    assert_int_equal(c.status[1], PROV_ST_UNKNOWN);
    assert_true(strstr(c.error_message[1], "event store unavailable") != NULL);
    /* Unknown types and non-object data are not relayed (not counted). */
    assert_int_equal(feed(&f, s, "heartbeat", "{}", &c), PROV_PARSE_IGNORED);
    assert_int_equal(feed(&f, s, "resource", "not json", &c), PROV_PARSE_IGNORED);
    assert_int_equal(c.n, 2);
    captured_free(&c);
    bl_stream_state_free(s);
    drop_target(&f);
}

/* ---- summaries, records, errors, cursors ---------------------------------------- */

static void test_changes_summary(void **state)
{
    (void)state;
    json_t *root = json_loads(COMPLETE, 0, NULL);
    json_t *sum = changes_summary(json_object_get(root, "changes"));
    const char *text = json_string_value(json_object_get(sum, "text"));
    assert_string_equal(text, "2 to create (ordersTable, ordersApi), 1 to update (assetsBucket), "
                              "1 to recreate (cacheCluster), 1 to remove (legacyQueue); "
                              "child blueprints: 1 to create (networking); links: 1 to remove "
                              "(a::b)");
    json_t *res = json_object_get(sum, "resources");
    assert_int_equal(json_array_size(json_object_get(res, "create")), 2);
    assert_string_equal(json_string_value(json_array_get(json_object_get(res, "remove"), 0)),
                        "legacyQueue");
    json_decref(sum);
    json_decref(root);
    json_t *empty = json_object();
    sum = changes_summary(empty);
    assert_string_equal(json_string_value(json_object_get(sum, "text")), "no changes");
    json_decref(sum);
    json_decref(empty);
    sum = changes_summary(NULL);
    assert_string_equal(json_string_value(json_object_get(sum, "text")), "no changes");
    json_decref(sum);
}

static void test_records_are_capped(void **state)
{
    (void)state;
    fixture f;
    char err[512], id[32];
    assert_int_equal(make_target(&f, BASIC_CFG(""), err, sizeof err), 0);
    bl_cfg *c = cfg_of(&f.t);
    for (int i = 0; i < BL_MAX_RECORDS + 5; i++) {
        snprintf(id, sizeof id, "cs-%d", i);
        assert_non_null(record_get(c, id));
    }
    assert_int_equal(c->nrecords, BL_MAX_RECORDS);
    assert_null(record_find(c, "cs-0"));
    assert_null(record_find(c, "cs-4"));
    assert_non_null(record_find(c, "cs-5"));
    snprintf(id, sizeof id, "cs-%d", BL_MAX_RECORDS + 4);
    assert_ptr_equal(record_find(c, id), &c->records[BL_MAX_RECORDS - 1]);
    drop_target(&f);
}

static void test_error_mapping(void **state)
{
    (void)state;
    fixture f;
    char err[512];
    prov_error e;
    setenv("BL_TEST_SECRET", "topsecret-value", 1);
    assert_int_equal(make_target(&f, BASIC_CFG(",\"auth\":{\"type\":\"signature\",\"keyId\":"
                                               "\"kid\",\"secretEnv\":\"BL_TEST_SECRET\"}"),
                                 err, sizeof err), 0);
    const char *body = "{\"message\":\"Unauthorized\"}";
    http_response res = {.status = 401, .body = body, .body_len = strlen(body), .error = ""};
    map_error(&f.t, &res, &e);
    assert_string_equal(e.code, "unauthorized");
    assert_false(e.retryable);
    assert_non_null(strstr(e.message, "BL_TEST_SECRET"));
    assert_non_null(strstr(e.message, "clock"));
    assert_null(strstr(e.message, "topsecret-value"));

    body = "{\"message\":\"request body failed validation\",\"errors\":[{\"location\":"
           "\"directory\",\"message\":\"directory is required\",\"type\":\"required\"}]}";
    res = (http_response){.status = 422, .body = body, .body_len = strlen(body), .error = ""};
    map_error(&f.t, &res, &e);
    assert_string_equal(e.code, "validation_failed");
    assert_non_null(strstr(e.message, "directory: directory is required"));

    body = "{\"message\":\"blueprint validation failed\",\"validationDiagnostics\":[{\"level\":1,"
           "\"message\":\"resource x has no type\"}]}";
    res = (http_response){.status = 422, .body = body, .body_len = strlen(body), .error = ""};
    map_error(&f.t, &res, &e);
    assert_non_null(strstr(e.message, "resource x has no type"));

    body = "{\"message\":\"drift detected for instance\"}";
    res = (http_response){.status = 409, .body = body, .body_len = strlen(body), .error = ""};
    map_error(&f.t, &res, &e);
    assert_string_equal(e.code, "drift_detected");

    res = (http_response){.status = 503, .body = "", .body_len = 0, .error = ""};
    map_error(&f.t, &res, &e);
    assert_true(e.retryable);
    drop_target(&f);
}

static void test_list_cursor_roundtrip(void **state)
{
    (void)state;
    long cs, off;
    char *cur = list_cursor(-1, 40);
    assert_int_equal(parse_list_cursor(cur, &cs, &off), 0);
    assert_int_equal(cs, -1);
    assert_int_equal(off, 40);
    free(cur);
    assert_int_equal(parse_list_cursor("not-a-cursor", &cs, &off), -1);
    assert_int_equal(parse_list_cursor(NULL, &cs, &off), 0);
    assert_int_equal(cs, 0);
}

static void test_instance_deployment(void **state)
{
    (void)state;
    fixture f;
    char err[512];
    assert_int_equal(make_target(&f, BASIC_CFG(""), err, sizeof err), 0);
    json_t *d = json_loads("{\"instanceId\":\"i-1\",\"instanceName\":\"prod\",\"status\":3,"
                           "\"lastDeployedTimestamp\":1700000000,\"resources\":{\"r1\":{\"name\":"
                           "\"ordersTable\",\"failureReasons\":[\"AccessDenied\"]}}}", 0, NULL);
    json_t *dep = instance_deployment(&f.t, d);
    assert_string_equal(json_string_value(json_object_get(dep, "id")), "i-1");
    assert_string_equal(json_string_value(json_object_get(dep, "environment")), "production");
    assert_string_equal(json_string_value(json_object_get(dep, "status")), "failed");
    assert_string_equal(json_string_value(json_object_get(dep, "providerStatus")), "DEPLOY_FAILED");
    assert_string_equal(json_string_value(json_object_get(dep, "createdAt")),
                        "2023-11-14T22:13:20Z");
    json_t *e = json_object_get(dep, "error");
    assert_string_equal(json_string_value(json_object_get(e, "code")), "deploy_failed");
    assert_non_null(strstr(json_string_value(json_object_get(e, "message")),
                           "ordersTable: AccessDenied"));
    json_decref(dep);
    json_decref(d);
    d = json_loads("{\"id\":\"i-2\",\"name\":\"staging\",\"status\":2}", 0, NULL);
    dep = instance_deployment(&f.t, d);
    assert_string_equal(json_string_value(json_object_get(dep, "status")), "ready");
    assert_string_equal(json_string_value(json_object_get(dep, "name")), "staging");
    assert_null(json_object_get(dep, "createdAt"));
    json_decref(dep);
    json_decref(d);
    drop_target(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signature_vector),
        cmocka_unit_test(test_auth_header_lines),
        cmocka_unit_test(test_stream_prepare_resigns),
        cmocka_unit_test(test_config_defaults),
        cmocka_unit_test(test_config_errors_name_fields),
        cmocka_unit_test(test_credentials_name_the_variable),
        cmocka_unit_test(test_unsupported_hints),
        cmocka_unit_test(test_staging_events),
        cmocka_unit_test(test_staging_first_connect_resumes_after_post),
        cmocka_unit_test(test_staging_drift_and_error),
        cmocka_unit_test(test_deploy_events_in_words),
        cmocka_unit_test(test_instance_status_mapping),
        cmocka_unit_test(test_finish_and_end_of_stream),
        cmocka_unit_test(test_instance_error_and_junk),
        cmocka_unit_test(test_changes_summary),
        cmocka_unit_test(test_records_are_capped),
        cmocka_unit_test(test_error_mapping),
        cmocka_unit_test(test_list_cursor_roundtrip),
        cmocka_unit_test(test_instance_deployment),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

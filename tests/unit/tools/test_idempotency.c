/* test_idempotency.c — create_preview's idempotency keys and remembered
 * deployments (tools/idempotency.h), on an injected clock. */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tools/idempotency.h"

static uint64_t fake_now;
static uint64_t fake_clock(void) { return fake_now; }

static int setup(void **state)
{
    (void)state;
    fake_now = 1000000;
    idem_set_clock(fake_clock);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    idem_cleanup();
    idem_set_clock(NULL);
    return 0;
}

static void fp_of(const char *target, const char *branch, const char *sha, const char *artifact,
                  const char *message, unsigned char fp[IDEM_FP_LEN])
{
    idem_fields f = {target, branch, sha, artifact, message};
    idem_fingerprint(&f, fp);
}

static void derive(const char *branch, char key[IDEM_UUID_LEN + 1])
{
    unsigned char fp[IDEM_FP_LEN];
    fp_of("web", branch, "abc123", NULL, "msg", fp);
    assert_int_equal(idem_derive_key(fp, key), 0);
}

static void assert_uuid_shape(const char *k)
{
    assert_int_equal(strlen(k), 36);
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            assert_int_equal(k[i], '-');
        else
            assert_true(isxdigit((unsigned char)k[i]) && !isupper((unsigned char)k[i]));
    }
    assert_int_equal(k[14], '4');                        /* version */
    assert_non_null(strchr("89ab", k[19]));              /* RFC 4122 variant */
}

static void test_same_args_same_key_within_window(void **state)
{
    (void)state;
    char a[IDEM_UUID_LEN + 1], b[IDEM_UUID_LEN + 1];
    derive("main", a);
    fake_now += IDEM_WINDOW_MS - 1;
    derive("main", b);
    assert_string_equal(a, b);
    assert_uuid_shape(a);
}

static void test_new_key_after_window(void **state)
{
    (void)state;
    char a[IDEM_UUID_LEN + 1], b[IDEM_UUID_LEN + 1], c[IDEM_UUID_LEN + 1];
    derive("main", a);
    fake_now += IDEM_WINDOW_MS;
    derive("main", b);
    assert_string_not_equal(a, b);
    assert_uuid_shape(b);
    /* ...and the new key is stable in its own window. */
    fake_now += 60 * 1000;
    derive("main", c);
    assert_string_equal(b, c);
}

static void test_window_is_not_sliding(void **state)
{
    (void)state;
    char a[IDEM_UUID_LEN + 1], b[IDEM_UUID_LEN + 1];
    derive("main", a);
    for (int i = 0; i < 3; i++) {
        fake_now += 5 * 60 * 1000;   /* 5, 10, 15 minutes after the first call */
        derive("main", b);
    }
    assert_string_not_equal(a, b);
}

static void test_different_args_different_keys(void **state)
{
    (void)state;
    char a[IDEM_UUID_LEN + 1], b[IDEM_UUID_LEN + 1];
    derive("main", a);
    derive("dev", b);
    assert_string_not_equal(a, b);

    unsigned char f1[IDEM_FP_LEN], f2[IDEM_FP_LEN], f3[IDEM_FP_LEN], f4[IDEM_FP_LEN];
    fp_of("web", "ab", "c", NULL, NULL, f1);
    fp_of("web", "a", "bc", NULL, NULL, f2);        /* same concatenation */
    fp_of("web", "ab", "c", "", NULL, f3);          /* empty differs from absent */
    fp_of("shop", "ab", "c", NULL, NULL, f4);       /* another target */
    assert_memory_not_equal(f1, f2, IDEM_FP_LEN);
    assert_memory_not_equal(f1, f3, IDEM_FP_LEN);
    assert_memory_not_equal(f1, f4, IDEM_FP_LEN);
    unsigned char again[IDEM_FP_LEN];
    fp_of("web", "ab", "c", NULL, NULL, again);
    assert_memory_equal(f1, again, IDEM_FP_LEN);
}

static void test_keys_are_salted(void **state)
{
    (void)state;
    /* After a cleanup (a new process), the same arguments get a new key:
     * keys cannot be predicted from the arguments. */
    char a[IDEM_UUID_LEN + 1], b[IDEM_UUID_LEN + 1];
    derive("main", a);
    idem_cleanup();
    derive("main", b);
    assert_string_not_equal(a, b);
}

static void test_caller_key_honoured(void **state)
{
    (void)state;
    unsigned char fp[IDEM_FP_LEN];
    fp_of("web", "main", NULL, NULL, NULL, fp);
    char out[IDEM_KEY_MAX + 1];
    assert_int_equal(idem_choose_key("my-key-42", fp, out), 0);
    assert_string_equal(out, "my-key-42");
    assert_int_equal(idem_choose_key(NULL, fp, out), 0);
    assert_uuid_shape(out);
    char again[IDEM_KEY_MAX + 1];
    assert_int_equal(idem_choose_key(NULL, fp, again), 0);
    assert_string_equal(out, again);
}

static void test_key_validation(void **state)
{
    (void)state;
    assert_true(idem_key_valid("a"));
    assert_true(idem_key_valid("550e8400-e29b-41d4-a716-446655440000"));
    assert_true(idem_key_valid("!~{}"));
    assert_false(idem_key_valid(NULL));
    assert_false(idem_key_valid(""));
    assert_false(idem_key_valid("has space"));
    assert_false(idem_key_valid("tab\there"));
    assert_false(idem_key_valid("new\nline"));
    assert_false(idem_key_valid("caf\xc3\xa9"));
    char k[IDEM_KEY_MAX + 2];
    memset(k, 'k', IDEM_KEY_MAX);
    k[IDEM_KEY_MAX] = '\0';
    assert_true(idem_key_valid(k));
    k[IDEM_KEY_MAX] = 'k';
    k[IDEM_KEY_MAX + 1] = '\0';
    assert_false(idem_key_valid(k));
}

/* ---- remembered deployments ------------------------------------------ */

typedef struct waited {
    int calls;
    json_t *dep;
    char code[PROV_ERR_CODE_MAX];
} waited;

static void on_wait(void *ud, json_t *dep, const prov_error *err)
{
    waited *w = ud;
    w->calls++;
    w->dep = dep;
    if (err)
        strcpy(w->code, err->code);
}

static void test_remembered_deployment(void **state)
{
    (void)state;
    unsigned char fp[IDEM_FP_LEN];
    fp_of("store", NULL, NULL, "/b/app.zip", NULL, fp);
    json_t *dep = NULL;
    idem_waiter *w = NULL;
    waited a = {0};
    assert_int_equal(idem_claim("store", "k1", fp, &dep, on_wait, &a, &w), IDEM_CLAIM_NEW);
    assert_null(dep);
    assert_null(w);

    /* An identical call while the first is in flight waits for it. */
    waited b = {0}, c = {0};
    idem_waiter *wb = NULL, *wc = NULL;
    assert_int_equal(idem_claim("store", "k1", fp, &dep, on_wait, &b, &wb), IDEM_CLAIM_PENDING);
    assert_int_equal(idem_claim("store", "k1", fp, &dep, on_wait, &c, &wc), IDEM_CLAIM_PENDING);
    assert_non_null(wb);
    idem_waiter_cancel(wc);   /* that one was cancelled: no callback */

    json_t *created = json_pack("{s:s, s:s}", "id", "dep-1", "status", "queued");
    idem_resolve("store", "k1", created, NULL);
    assert_int_equal(b.calls, 1);
    assert_int_equal(c.calls, 0);
    assert_string_equal(json_string_value(json_object_get(b.dep, "id")), "dep-1");
    assert_ptr_not_equal(b.dep, created);   /* each gets its own copy */
    json_decref(b.dep);
    json_decref(created);

    /* A later repeat gets the remembered deployment without a create. */
    fake_now += IDEM_WINDOW_MS;   /* remembered well beyond the key window */
    assert_int_equal(idem_claim("store", "k1", fp, &dep, on_wait, &a, &w), IDEM_CLAIM_DONE);
    assert_string_equal(json_string_value(json_object_get(dep, "id")), "dep-1");
    json_decref(dep);

    /* Same key, different arguments: a conflict, as Showly answers 409. */
    unsigned char other[IDEM_FP_LEN];
    fp_of("store", NULL, NULL, "/b/other.zip", NULL, other);
    assert_int_equal(idem_claim("store", "k1", other, &dep, on_wait, &a, &w),
                     IDEM_CLAIM_CONFLICT);
    /* Keys are per target. */
    assert_int_equal(idem_claim("canvas", "k1", other, &dep, on_wait, &a, &w), IDEM_CLAIM_NEW);
    idem_resolve("canvas", "k1", NULL, NULL);

    /* Forgotten after IDEM_REMEMBER_MS. */
    fake_now += IDEM_REMEMBER_MS;
    assert_int_equal(idem_claim("store", "k1", fp, &dep, on_wait, &a, &w), IDEM_CLAIM_NEW);
    idem_resolve("store", "k1", NULL, NULL);
}

static void test_failed_create_is_not_remembered(void **state)
{
    (void)state;
    unsigned char fp[IDEM_FP_LEN];
    fp_of("store", NULL, NULL, "/b/app.zip", NULL, fp);
    json_t *dep = NULL;
    idem_waiter *w = NULL;
    waited a = {0}, b = {0};
    assert_int_equal(idem_claim("store", "k2", fp, &dep, on_wait, &a, &w), IDEM_CLAIM_NEW);
    assert_int_equal(idem_claim("store", "k2", fp, &dep, on_wait, &b, &w), IDEM_CLAIM_PENDING);
    prov_error e;
    memset(&e, 0, sizeof e);
    strcpy(e.code, "network_error");
    idem_resolve("store", "k2", NULL, &e);
    assert_int_equal(b.calls, 1);
    assert_null(b.dep);
    assert_string_equal(b.code, "network_error");
    /* The next call may try again. */
    assert_int_equal(idem_claim("store", "k2", fp, &dep, on_wait, &a, &w), IDEM_CLAIM_NEW);
    idem_resolve("store", "k2", NULL, &e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_same_args_same_key_within_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_key_after_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_window_is_not_sliding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_different_args_different_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys_are_salted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_caller_key_honoured, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remembered_deployment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_create_is_not_remembered, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

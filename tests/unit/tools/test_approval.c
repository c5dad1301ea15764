/* test_approval.c — approval requests and their journal: durability, replay
 * after a restart, torn last lines, expiry, single decisions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tools/approval.h"

static int64_t fake_now = 1700000000000LL;
static int64_t test_clock(void) { return fake_now; }

typedef struct fixture {
    uv_loop_t loop;
    char dir[256];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/dmcp-apr-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    assert_int_equal(uv_loop_init(&f->loop), 0);
    apr_set_clock(test_clock);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    apr_set_clock(NULL);
    free(f);
    return 0;
}

static int writes_done;
static int last_status;
static void on_done(void *ud, int status)
{
    (void)ud;
    writes_done++;
    last_status = status;
}

static apr_store *open_store(fixture *f)
{
    char err[256] = "";
    apr_store *st = apr_store_open(&f->loop, f->dir, err, sizeof err);
    assert_non_null(st);
    return st;
}

static void close_store(fixture *f, apr_store *st)
{
    apr_store_close(st);
    uv_run(&f->loop, UV_RUN_DEFAULT);
}

static void test_create_decide_and_replay(void **state)
{
    fixture *f = *state;
    apr_store *st = open_store(f);
    json_t *src = json_pack("{s:s}", "uploadUuid", "u-1");
    writes_done = 0;
    apr_request *r = apr_create(st, "store", "bigcommerce", "dep_1",
                                "deploy upload u-1 to production project p-2", "ship it", src,
                                0, on_done, NULL);
    json_decref(src);
    assert_non_null(r);
    assert_int_equal(strncmp(r->id, "apr_", 4), 0);
    assert_int_equal(strlen(r->id), APR_ID_LEN);
    assert_false(r->durable);
    char err[256];
    assert_int_equal(apr_decide(st, r, true, "ann", "127.0.0.1", NULL, NULL, NULL, err,
                                sizeof err), -1); /* not durable yet */
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(writes_done, 1);
    assert_int_equal(last_status, 0);
    assert_true(r->durable);
    assert_int_equal(r->status, APR_PENDING);
    assert_int_equal(r->expires_ms - r->created_ms, APR_DEFAULT_TTL_MS);
    char id[APR_ID_LEN + 1];
    memcpy(id, r->id, sizeof id);

    assert_int_equal(apr_decide(st, r, true, "ann", "127.0.0.1", "ok", on_done, NULL, err,
                                sizeof err), 0);
    assert_int_equal(apr_decide(st, r, false, "bob", "127.0.0.1", NULL, NULL, NULL, err,
                                sizeof err), -1);
    assert_non_null(strstr(err, "already decided"));
    apr_set_status(st, r, APR_PUBLISHING, "dep_prod_9", NULL, NULL, NULL);
    apr_set_status(st, r, APR_PUBLISHED, NULL, NULL, on_done, NULL);
    close_store(f, st);

    /* A restart replays everything. */
    st = open_store(f);
    apr_request *again = apr_get(st, id);
    assert_non_null(again);
    assert_int_equal(again->status, APR_PUBLISHED);
    assert_string_equal(again->decided_by, "ann");
    assert_string_equal(again->decided_from, "127.0.0.1");
    assert_string_equal(again->production_id, "dep_prod_9");
    assert_string_equal(again->plan, "deploy upload u-1 to production project p-2");
    assert_string_equal(json_string_value(json_object_get(again->source, "uploadUuid")), "u-1");
    assert_true(again->durable);
    json_t *view = apr_request_json(again);
    assert_string_equal(json_string_value(json_object_get(view, "status")), "published");
    assert_null(json_object_get(view, "csrf"));
    json_decref(view);

    struct stat sb;
    assert_int_equal(stat(apr_store_path(st), &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    close_store(f, st);
}

static void test_torn_last_line_is_dropped(void **state)
{
    fixture *f = *state;
    apr_store *st = open_store(f);
    apr_request *r = apr_create(st, "t", "mixpeek", "dep_2", "plan", NULL, NULL, 0, NULL, NULL);
    char id[APR_ID_LEN + 1];
    memcpy(id, r->id, sizeof id);
    char path[512];
    snprintf(path, sizeof path, "%s", apr_store_path(st));
    close_store(f, st);

    int fd = open(path, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    const char torn[] = "{\"t\":\"decision\",\"id\":\"";
    assert_int_equal(write(fd, torn, sizeof torn - 1), (ssize_t)(sizeof torn - 1));
    close(fd);

    st = open_store(f);
    apr_request *again = apr_get(st, id);
    assert_non_null(again);
    assert_int_equal(again->status, APR_PENDING); /* the torn decision never counted */
    /* New records start on a fresh line and replay cleanly. */
    char err[128];
    assert_int_equal(apr_decide(st, again, false, "cy", "::1", NULL, NULL, NULL, err,
                                sizeof err), 0);
    close_store(f, st);
    st = open_store(f);
    assert_int_equal(apr_get(st, id)->status, APR_REJECTED);
    close_store(f, st);
}

static void test_expiry(void **state)
{
    fixture *f = *state;
    apr_store *st = open_store(f);
    apr_request *r = apr_create(st, "t", "bluelink", "changeset:c1", "apply change set c1",
                                NULL, NULL, 60000, NULL, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    char id[APR_ID_LEN + 1];
    memcpy(id, r->id, sizeof id);
    fake_now += 59999;
    assert_int_equal(apr_get(st, id)->status, APR_PENDING);
    fake_now += 1;
    assert_int_equal(apr_get(st, id)->status, APR_EXPIRED);
    char err[128];
    assert_int_equal(apr_decide(st, r, true, "x", "y", NULL, NULL, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "expired"));
    close_store(f, st);
    st = open_store(f);
    assert_int_equal(apr_get(st, id)->status, APR_EXPIRED);
    size_t cur = 0, n = 0;
    while (apr_next(st, &cur))
        n++;
    assert_int_equal(n, 1);
    close_store(f, st);
}

static void test_ids_are_unguessable(void **state)
{
    fixture *f = *state;
    apr_store *st = open_store(f);
    apr_request *a = apr_create(st, "t", "p", "s", NULL, NULL, NULL, 0, NULL, NULL);
    apr_request *b = apr_create(st, "t", "p", "s", NULL, NULL, NULL, 0, NULL, NULL);
    assert_string_not_equal(a->id, b->id);
    assert_string_not_equal(a->csrf, b->csrf);
    assert_int_equal(strlen(a->csrf), 32);
    assert_null(apr_get(st, "apr_nope"));
    close_store(f, st);
}

static void test_unwritable_dir_is_a_clear_error(void **state)
{
    fixture *f = *state;
    char err[256] = "";
    apr_store *st = apr_store_open(&f->loop, "/proc/deploy-mcp-cannot", err, sizeof err);
    assert_null(st);
    assert_non_null(strstr(err, "/proc/deploy-mcp-cannot"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_decide_and_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_last_line_is_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ids_are_unguessable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unwritable_dir_is_a_clear_error, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

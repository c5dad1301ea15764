/* test_stdio.c — the stdio transport (transport/stdio.c) with this process's
 * stdin and stdout replaced by a pipe or a file: a burst of messages that
 * arrives in one read is handled at most STDIO_MSGS_PER_TURN (16) per loop
 * iteration, so that the loop serves everything else in between; messages
 * are handled in order, each exactly once, across reads that cut lines
 * anywhere (one iteration may end one read's messages and begin the next
 * read's); end of input is reported only after every message before it was
 * handled; every request is answered on stdout, in order.
 *
 * The messages are tools/call requests to a fake adapter that notes the
 * loop iteration in which the session handed each to it, and pings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "mcp/config.h"
#include "mcp/server.h"
#include "providers/provider.h"
#include "tools/tool.h"
#include "transport/stdio.h"

#define PER_TURN 16
#define MAX_CALLS 4096

/* ---------------------------------------------------------- fake adapter */

static unsigned long g_iteration;          /* loop iterations so far (uv_check) */
static unsigned long g_call_iter[MAX_CALLS];
static long g_call_id[MAX_CALLS];
static size_t g_ncalls;

static prov_op *fake_get(prov_target *t, const char *id, prov_result_cb cb, void *ud,
                         prov_error *err)
{
    (void)err;
    assert_true(g_ncalls < MAX_CALLS);
    g_call_iter[g_ncalls] = g_iteration;
    g_call_id[g_ncalls] = strtol(id, NULL, 10);
    g_ncalls++;
    prov_op *op = prov_op_new(t, cb, ud, NULL, NULL);
    prov_op_succeed_later(op, prov_deployment(t, id, "preview", PROV_ST_READY, "ready", NULL,
                                              NULL));
    return op;
}

static const struct provider fake_ops = {
    .name = "fakeprov", .display_name = "FakeProv", .caps = PROV_CAP_GET,
    .get_deployment = fake_get,
};

/* ------------------------------------------------------------- harness */

typedef struct env {
    uv_loop_t loop;
    mcp_server srv;
    cfg *config;
    prov_target target;
    uv_check_t check;
    stdio_transport *t;
    bool eof;
    size_t calls_at_eof;
    int saved_in, saved_out;
    char out_path[64];
} env;

static void on_check(uv_check_t *h)
{
    (void)h;
    g_iteration++;
}

static void on_eof(void *ud)
{
    env *e = ud;
    e->eof = true;
    e->calls_at_eof = g_ncalls;
    stdio_stop(e->t);
    uv_close((uv_handle_t *)&e->check, NULL);
}

static void env_init(env *e)
{
    memset(e, 0, sizeof *e);
    assert_int_equal(uv_loop_init(&e->loop), 0);
    const char text[] = "{\"targets\":{\"web\":{\"provider\":\"fakeprov\"}}}";
    char err[512];
    if (cfg_parse(text, strlen(text), "test.json", NULL, &e->config, err, sizeof err) != 0)
        fail_msg("config: %s", err);
    e->target.cfg = &e->config->targets[0];
    e->target.ops = &fake_ops;
    e->target.loop = &e->loop;
    e->srv.loop = &e->loop;
    e->srv.config = e->config;
    e->srv.targets = &e->target;
    e->srv.ntargets = 1;
    uv_check_init(&e->loop, &e->check);
    uv_check_start(&e->check, on_check);
    g_iteration = 0;
    g_ncalls = 0;
    /* stdout: a file, read back at the end */
    fflush(stdout);
    e->saved_in = dup(STDIN_FILENO);
    e->saved_out = dup(STDOUT_FILENO);
    snprintf(e->out_path, sizeof e->out_path, "/tmp/test_stdio_out.%ld", (long)getpid());
    int fd = open(e->out_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(dup2(fd, STDOUT_FILENO), STDOUT_FILENO);
    close(fd);
}

/* Runs the transport to the end of input; restores stdin/stdout; returns
 * what it wrote. */
static char *env_run(env *e)
{
    e->t = stdio_start(&e->srv, on_eof, e);
    assert_non_null(e->t);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    assert_true(e->eof);
    assert_int_equal(uv_loop_close(&e->loop), 0);
    assert_int_equal(dup2(e->saved_in, STDIN_FILENO), STDIN_FILENO);
    assert_int_equal(dup2(e->saved_out, STDOUT_FILENO), STDOUT_FILENO);
    close(e->saved_in);
    close(e->saved_out);
    FILE *f = fopen(e->out_path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *out = malloc((size_t)n + 1);
    assert_int_equal(fread(out, 1, (size_t)n, f), (size_t)n);
    out[n] = '\0';
    fclose(f);
    unlink(e->out_path);
    cfg_free(e->config);
    return out;
}

/* The input: initialize, then n messages alternating tools/call (id 2k,
 * deploymentId "k") and ping (id 2k+1), with a blank line and a CRLF line
 * among them. */
static char *make_input(size_t n, size_t *len)
{
    size_t cap = 512 + n * 200, o = 0;
    char *b = malloc(cap);
    assert_non_null(b);
    o += (size_t)snprintf(b + o, cap - o,
                          "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":"
                          "{\"protocolVersion\":\"2025-11-25\",\"capabilities\":{}}}\n"
                          "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n");
    for (size_t k = 1; k <= n; k++) {
        if (k % 2)
            o += (size_t)snprintf(b + o, cap - o,
                                  "{\"jsonrpc\":\"2.0\",\"id\":%zu,\"method\":\"tools/call\","
                                  "\"params\":{\"name\":\"get_deployment\",\"arguments\":"
                                  "{\"deploymentId\":\"%zu\"}}}%s\n",
                                  k, k, k == 7 ? "\r" : "");
        else
            o += (size_t)snprintf(b + o, cap - o,
                                  "{\"jsonrpc\":\"2.0\",\"id\":%zu,\"method\":\"ping\"}\n", k);
        if (k == 5)
            o += (size_t)snprintf(b + o, cap - o, "   \n");
    }
    *len = o;
    return b;
}

/* Every request answered once; pings in order; calls handed to the adapter
 * in order, at most PER_TURN messages per loop iteration. */
static void check_run(env *e, const char *out, size_t n)
{
    assert_int_equal(g_ncalls, (n + 1) / 2);
    assert_int_equal(e->calls_at_eof, g_ncalls); /* end of input came after all */
    for (size_t i = 0; i < g_ncalls; i++)
        assert_int_equal(g_call_id[i], (long)(2 * i + 1));
    unsigned long per_iter = 0, max_per_iter = 0;
    for (size_t i = 0; i < g_ncalls; i++) {
        per_iter = i > 0 && g_call_iter[i] == g_call_iter[i - 1] ? per_iter + 1 : 1;
        if (per_iter > max_per_iter)
            max_per_iter = per_iter;
    }
    /* Calls are every other message: at most PER_TURN / 2 (+1) per read
     * callback or idle turn. An idle turn that finishes a read resumes
     * reading, and the next read may complete in the same iteration: twice
     * that per iteration at most. */
    assert_true(max_per_iter <= PER_TURN + 2);
    assert_true(g_call_iter[g_ncalls - 1] - g_call_iter[0] >= (n + 1) / 2 / (PER_TURN / 2 + 1) - 1);

    bool *seen = calloc(n + 1, sizeof *seen);
    long last_ping = -1;
    size_t lines = 0;
    for (const char *p = out; *p;) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl);
        json_t *m = json_loadb(p, (size_t)(nl - p), 0, NULL);
        assert_non_null(m);
        json_t *id = json_object_get(m, "id");
        assert_true(json_is_integer(id));
        long v = (long)json_integer_value(id);
        assert_true(v >= 0 && (size_t)v <= n);
        assert_false(seen[v]);
        seen[v] = true;
        assert_non_null(json_object_get(m, "result"));
        if (v > 0 && v % 2 == 0) {
            assert_true(v > last_ping);
            last_ping = v;
        }
        json_decref(m);
        lines++;
        p = nl + 1;
    }
    /* Every ping and initialize answered; tools/call answers come a turn
     * later (succeed_later) and may be cut off by the end of input (stdio
     * closes the session then, cancelling what is in flight). */
    assert_true(seen[0]);
    for (size_t k = 2; k <= n; k += 2)
        assert_true(seen[k]);
    free(seen);
}

static void test_pipe_burst(void **state)
{
    (void)state;
    env e;
    env_init(&e);
    size_t n = 400, len;
    char *in = make_input(n, &len);
    assert_true(len < 60000); /* fits in the pipe at once */
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(write(fds[1], in, len), (ssize_t)len);
    close(fds[1]);
    assert_int_equal(dup2(fds[0], STDIN_FILENO), STDIN_FILENO);
    close(fds[0]);
    char *out = env_run(&e);
    check_run(&e, out, n);
    free(out);
    free(in);
}

/* A regular file: read in 64 KiB pieces that cut lines anywhere. */
static void test_file_many_reads(void **state)
{
    (void)state;
    env e;
    env_init(&e);
    size_t n = 3000, len;
    char *in = make_input(n, &len);
    assert_true(len > 3 * 65536);
    char path[64];
    snprintf(path, sizeof path, "/tmp/test_stdio_in.%ld", (long)getpid());
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, in, len), (ssize_t)len);
    lseek(fd, 0, SEEK_SET);
    assert_int_equal(dup2(fd, STDIN_FILENO), STDIN_FILENO);
    close(fd);
    unlink(path);
    char *out = env_run(&e);
    check_run(&e, out, n);
    free(out);
    free(in);
}

static int group_teardown(void **state)
{
    (void)state;
    tool_registry_cleanup();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipe_burst),
        cmocka_unit_test(test_file_many_reads),
    };
    return cmocka_run_group_tests(tests, NULL, group_teardown);
}

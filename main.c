/* main.c — command line, start-up, the one libuv loop, and clean shutdown.
 *
 * Shutdown order (ARCHITECTURE.md): stop reading stdin and close the MCP
 * session, or with --listen close every listener session (cancelling
 * in-flight calls and their transfers) and start libwebsockets' async close
 * → flush and shut down stdout → destroy the HTTP client → close signal
 * handles → run the loop until no handles remain → free the libwebsockets
 * context (its second lws_context_destroy) → uv_loop_close must return 0. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "mcp/config.h"
#include "mcp/log.h"
#include "mcp/server.h"
#include "providers/curl_lazy.h"
#include "providers/provider.h"
#include "tools/fixtures.h"
#include "tools/gate.h"
#include "tools/tool.h"
#include "transport/listener.h"
#include "transport/lws_lazy.h"
#include "transport/stdio.h"

#define SHUTDOWN_GRACE_MS 1500   /* then remaining handles are closed by force */
#define TOOLS_PAGE_ENV "DEPLOY_MCP_TOOLS_PAGE_SIZE"

typedef struct app {
    uv_loop_t loop;
    mcp_server srv;
    stdio_transport *stdio;
    listener *listen;
    uv_signal_t sigint, sigterm;
    uv_timer_t grace;
    bool stopping;
} app;

typedef struct cli {
    const char *config;
    const char *listen;
    const char *log_level;
    bool check, version, help, fixtures;
} cli;

static void usage(FILE *out)
{
    fprintf(out,
        "usage: deploy-mcp [--config FILE] [--listen HOST:PORT] [--log-level LEVEL]\n"
        "                  [--check] [--version] [--help]\n"
        "\n"
        "An MCP server that deploys through hosting platforms (Showly, BigCommerce,\n"
        "Mixpeek, Bluelink): previews, live build events, logs, and human-approved\n"
        "production publishes.\n"
        "\n"
        "  --config FILE      targets file (default: $DEPLOY_MCP_CONFIG, ./deploy-mcp.json,\n"
        "                     then $XDG_CONFIG_HOME/deploy-mcp/config.json)\n"
        "  --listen HOST:PORT serve WebSocket and Streamable HTTP on /mcp instead of stdio\n"
        "  --log-level LEVEL  stderr verbosity: debug, info, warning, error (default info)\n"
        "  --check            validate the config and report each target's credentials\n"
        "  --conformance-fixtures\n"
        "                     also offer the MCP conformance suite's test tools\n"
        "                     (test_simple_text, test_tool_with_progress, ...)\n"
        "  --version          print the version\n"
        "  --help             print this help\n"
        "\n"
        "Without --listen, MCP messages are read from stdin and written to stdout,\n"
        "one JSON-RPC message per line. Diagnostics go to stderr.\n"
        "\n"
        "With --listen (default host 127.0.0.1; also :PORT and [::1]:PORT), clients\n"
        "connect to http://HOST:PORT/mcp (Streamable HTTP) or ws://HOST:PORT/mcp\n"
        "(WebSocket, subprotocol mcp). If $DEPLOY_MCP_AUTH_TOKEN is set, every request\n"
        "needs Authorization: Bearer <token>; a non-loopback HOST requires it.\n"
        "Idle HTTP sessions end after $DEPLOY_MCP_SESSION_IDLE_SECONDS (default 1800).\n");
}

/* Accepts "--opt value" and "--opt=value". Returns 0, or -1 after printing. */
static int parse_cli(int argc, char **argv, cli *c)
{
    static const char *const valued[] = {"--config", "--listen", "--log-level"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--check") == 0) { c->check = true; continue; }
        if (strcmp(a, "--conformance-fixtures") == 0) { c->fixtures = true; continue; }
        if (strcmp(a, "--version") == 0 || strcmp(a, "-V") == 0) { c->version = true; continue; }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) { c->help = true; continue; }
        const char *val = NULL;
        int which = -1;
        for (int k = 0; k < 3; k++) {
            size_t n = strlen(valued[k]);
            if (strncmp(a, valued[k], n) == 0 && (a[n] == '=' || a[n] == '\0')) {
                which = k;
                if (a[n] == '=')
                    val = a + n + 1;
                else if (i + 1 < argc)
                    val = argv[++i];
                break;
            }
        }
        if (which < 0) {
            fprintf(stderr, "deploy-mcp: unknown option '%s' (see --help)\n", a);
            return -1;
        }
        if (!val || !*val) {
            fprintf(stderr, "deploy-mcp: %s needs a value (see --help)\n", valued[which]);
            return -1;
        }
        if (which == 0) c->config = val;
        else if (which == 1) c->listen = val;
        else c->log_level = val;
    }
    return 0;
}

/* Builds the runtime targets; on failure prints the message and returns -1. */
static int setup_targets(mcp_server *srv)
{
    cfg *c = srv->config;
    srv->targets = calloc(c->ntargets ? c->ntargets : 1, sizeof *srv->targets);
    if (!srv->targets)
        return -1;
    for (size_t i = 0; i < c->ntargets; i++) {
        prov_target *t = &srv->targets[i];
        t->cfg = &c->targets[i];
        t->ops = prov_lookup(t->cfg->provider);
        t->http = srv->http;
        t->loop = srv->loop;
        char err[512] = "";
        /* Counted before configure: unconfigure also runs after a failed
         * configure, so partial adapter state is freed. */
        srv->ntargets = i + 1;
        if (!t->ops || t->ops->configure(t, err, sizeof err) != 0) {
            fprintf(stderr, "deploy-mcp: config %s: target \"%s\": %s\n", c->path,
                    t->cfg->name, t->ops ? err : "unknown provider");
            return -1;
        }
    }
    return 0;
}

static void teardown_targets(mcp_server *srv)
{
    for (size_t i = 0; i < srv->ntargets; i++)
        if (srv->targets[i].ops && srv->targets[i].ops->unconfigure)
            srv->targets[i].ops->unconfigure(&srv->targets[i]);
    free(srv->targets);
    srv->targets = NULL;
    srv->ntargets = 0;
}

/* A caFile that is missing or unreadable would only show as a TLS error on the
 * first request; --check reports it up front. Whether it holds valid PEM is
 * left to the TLS library (it reports that clearly on use). */
static bool ca_file_ok(const prov_target *t, char *problem, size_t len)
{
    const char *ca = cfg_str(t->cfg, "caFile", NULL);
    struct stat st;
    if (!ca)
        return true;
    if (stat(ca, &st) != 0) {
        snprintf(problem, len, "caFile %s: %s", ca, strerror(errno));
        return false;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(problem, len, "caFile %s: not a regular file", ca);
        return false;
    }
    if (access(ca, R_OK) != 0) {
        snprintf(problem, len, "caFile %s: %s", ca, strerror(errno));
        return false;
    }
    return true;
}

static int run_check(mcp_server *srv)
{
    cfg *c = srv->config;
    if (!c->path) {
        printf("no config file found (looked at $DEPLOY_MCP_CONFIG, ./deploy-mcp.json and "
               "$XDG_CONFIG_HOME/deploy-mcp/config.json); nothing to check\n");
        return 1;
    }
    printf("config %s: %zu target(s)\n", c->path, srv->ntargets);
    int bad = 0;
    for (size_t i = 0; i < srv->ntargets; i++) {
        prov_target *t = &srv->targets[i];
        char problem[512] = "";
        bool ok = t->ops->credentials_ok(t, problem, sizeof problem);
        if (ok)
            ok = ca_file_ok(t, problem, sizeof problem);
        printf("  %-16s %-12s %s%s%s\n", t->cfg->name, t->ops->name, ok ? "ready" : "NOT READY",
               ok ? "" : ": ", ok ? "" : problem);
        bad += !ok;
    }
    if (srv->ntargets == 0)
        return 1;
    return bad ? 1 : 0;
}

static void on_close_any(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void on_grace_expired(uv_timer_t *timer)
{
    /* Something (a client that never reads stdout) is holding the loop open:
     * close what is left so the process exits. */
    log_warn("shutdown: closing remaining handles after %d ms", SHUTDOWN_GRACE_MS);
    uv_walk(timer->loop, on_close_any, NULL);
}

static void begin_shutdown(app *a)
{
    if (a->stopping)
        return;
    a->stopping = true;
    a->srv.shutting_down = true;
    log_debug("shutting down");
    if (a->stdio)
        stdio_stop(a->stdio);
    a->stdio = NULL;
    if (a->listen)
        listener_stop(a->listen); /* freed after the loop ran dry (listener_free) */
    /* After the sessions (their calls are cancelled), before the HTTP client
     * (a publish in flight is cancelled; the journal says so on restart). */
    gate_free(a->srv.gate);
    a->srv.gate = NULL;
    http_client_destroy(a->srv.http);
    a->srv.http = NULL;
    uv_close((uv_handle_t *)&a->sigint, NULL);
    uv_close((uv_handle_t *)&a->sigterm, NULL);
    uv_timer_init(&a->loop, &a->grace);
    uv_timer_start(&a->grace, on_grace_expired, SHUTDOWN_GRACE_MS, 0);
    uv_unref((uv_handle_t *)&a->grace); /* never keeps the loop alive by itself */
}

static void on_stdin_eof(void *ud) { begin_shutdown(ud); }

static void on_signal(uv_signal_t *h, int signum)
{
    log_info("received %s, shutting down", signum == SIGINT ? "SIGINT" : "SIGTERM");
    begin_shutdown(h->data);
}

static size_t tools_page_size(void)
{
    const char *v = getenv(TOOLS_PAGE_ENV);
    long n = v ? strtol(v, NULL, 10) : 0;
    return n > 0 ? (size_t)n : 0;
}

int main(int argc, char **argv)
{
    cli c = {0};
    if (parse_cli(argc, argv, &c) != 0)
        return 2;
    if (c.help) {
        usage(stdout);
        return 0;
    }
    if (c.version) {
        printf("deploy-mcp %s\n", DEPLOY_MCP_VERSION);
        return 0;
    }
    if (c.log_level) {
        enum log_level lvl;
        if (log_parse_level(c.log_level, &lvl) != 0) {
            fprintf(stderr, "deploy-mcp: --log-level must be debug, info, warning or error\n");
            return 2;
        }
        log_set_level(lvl);
    }
    listen_opts lopts = {0};
    if (c.listen) {
        char lerr[512];
        if (listener_parse_addr(c.listen, &lopts.addr, lerr, sizeof lerr) != 0) {
            fprintf(stderr, "deploy-mcp: %s\n", lerr);
            return 2;
        }
        lopts.token = getenv(LISTEN_TOKEN_ENV);
        if (lopts.token && !*lopts.token)
            lopts.token = NULL;
        if (!lopts.addr.loopback && !lopts.token) {
            fprintf(stderr, "deploy-mcp: refusing to listen on %s, which is not a loopback "
                    "address, without authentication: set %s to a secret token (clients "
                    "then send Authorization: Bearer <token>), or listen on 127.0.0.1\n",
                    lopts.addr.host, LISTEN_TOKEN_ENV);
            return 2;
        }
        const char *idle = getenv(LISTEN_IDLE_ENV);
        long secs = idle ? strtol(idle, NULL, 10) : 0;
        lopts.idle_seconds = secs > 0 && secs <= 7 * 24 * 3600 ? (unsigned)secs
                                                               : LISTEN_SESSION_IDLE_DEFAULT_S;
    }
    if (c.fixtures)
        tool_fixtures_enable();

    signal(SIGPIPE, SIG_IGN);
    static app a; /* static: big, and must outlive every callback */
    char err[1024] = "";
    if (cfg_load(c.config, prov_known, &a.srv.config, err, sizeof err) != 0) {
        fprintf(stderr, "deploy-mcp: %s\n", err);
        return 1;
    }
    /* libcurl is loaded (and globally initialised) by the first upstream
     * request: providers/curl_lazy.h. */
    int rc = 0;
    if (uv_loop_init(&a.loop) != 0) {
        fprintf(stderr, "deploy-mcp: could not initialise the event loop\n");
        rc = 1;
        goto out_curl;
    }
    a.srv.loop = &a.loop;
    a.srv.tools_page_size = tools_page_size();
    a.srv.http = http_client_new(&a.loop);
    if (!a.srv.http || setup_targets(&a.srv) != 0) {
        rc = 1;
        goto out_loop;
    }
    if (c.check) {
        rc = run_check(&a.srv);
        goto out_loop;
    }
    if (a.srv.config->path)
        log_info("config %s: %zu target(s)", a.srv.config->path, a.srv.ntargets);
    else
        log_info("no config file found; list_targets explains how to add one");

    /* The approval gate (journal + page) for platforms without approvals of
     * their own; it also runs in stdio mode. */
    a.srv.gate = gate_new(&a.srv);

    uv_signal_init(&a.loop, &a.sigint);
    uv_signal_init(&a.loop, &a.sigterm);
    a.sigint.data = a.sigterm.data = &a;
    uv_signal_start(&a.sigint, on_signal, SIGINT);
    uv_signal_start(&a.sigterm, on_signal, SIGTERM);

    if (c.listen) {
        /* stdin is not read in listen mode: the server runs until a signal. */
        char lerr[1024];
        lopts.allowed_origins = (const char *const *)a.srv.config->allowed_origins;
        /* libwebsockets is loaded only now, for --listen (transport/lws_lazy.h) */
        if (lws_lazy_load(lerr, sizeof lerr) == 0)
            a.listen = listener_start(&a.srv, &lopts, lerr, sizeof lerr);
        if (!a.listen || listener_port(a.listen) < 0) {
            fprintf(stderr, "deploy-mcp: %s\n", lerr);
            rc = 1;
            begin_shutdown(&a);
        }
    } else {
        a.stdio = stdio_start(&a.srv, on_stdin_eof, &a);
        if (!a.stdio) {
            fprintf(stderr, "deploy-mcp: could not open stdin/stdout\n");
            rc = 1;
            begin_shutdown(&a);
        }
    }
    uv_run(&a.loop, UV_RUN_DEFAULT);
    if (a.stopping && !uv_is_closing((uv_handle_t *)&a.grace))
        uv_close((uv_handle_t *)&a.grace, NULL);

out_loop:
    if (a.srv.http) {
        http_client_destroy(a.srv.http);
        a.srv.http = NULL;
    }
    uv_run(&a.loop, UV_RUN_DEFAULT); /* run close callbacks */
    listener_free(a.listen); /* the second lws_context_destroy: frees the context */
    a.listen = NULL;
    uv_run(&a.loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&a.loop) != 0) {
        log_error("shutdown: event loop still had open handles");
        uv_walk(&a.loop, on_close_any, NULL);
        uv_run(&a.loop, UV_RUN_DEFAULT);
        if (uv_loop_close(&a.loop) != 0 && rc == 0)
            rc = 1;
    }
    teardown_targets(&a.srv);
    tool_registry_cleanup();
out_curl:
    curl_lazy_cleanup(); /* curl_global_cleanup, if a request loaded curl */
    cfg_free(a.srv.config);
    return rc;
}

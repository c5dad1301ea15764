/* listener.c — the libwebsockets context on the program's libuv loop, the
 * request checks every HTTP request and WebSocket upgrade passes, and the
 * dispatch of lws callbacks to http.c and ws.c. */
#include "transport/listener_int.h"
#include "transport/lws_lazy.h" /* lws_* calls go through the loaded table */

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mcp/log.h"

#define LSN_VHOST_NAME "deploy-mcp"
#define LSN_RX_BUFFER 65536           /* lws read buffer per connection */
#define LSN_HTTP_HEADER_DATA 16384    /* all request header bytes lws keeps */
#define LSN_KEEPALIVE_S 30            /* idle HTTP/1.1 keep-alive connections */
#define LSN_TIMEOUT_S 30              /* lws protocol timeouts (body read, handshake) */
#define LSN_LOG_LINE_MAX 512

/* ---- address parsing ------------------------------------------------------ */

static bool is_loopback_literal(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return false;
}

int listener_parse_addr(const char *spec, listen_addr *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    const char *colon, *host = spec;
    size_t hlen;
    if (spec[0] == '[') {
        const char *close = strchr(spec, ']');
        if (!close || close[1] != ':') {
            snprintf(err, errlen, "--listen %s: an IPv6 address is written [ADDR]:PORT", spec);
            return -1;
        }
        host = spec + 1;
        hlen = (size_t)(close - host);
        colon = close + 1;
    } else {
        colon = strrchr(spec, ':');
        if (!colon) {
            snprintf(err, errlen, "--listen %s: expected HOST:PORT, :PORT or [::1]:PORT", spec);
            return -1;
        }
        hlen = (size_t)(colon - spec);
    }
    char *end = NULL;
    long port = strtol(colon + 1, &end, 10);
    if (!colon[1] || !end || *end || port < 0 || port > 65535) {
        snprintf(err, errlen, "--listen %s: the port must be a number from 0 to 65535", spec);
        return -1;
    }
    if (hlen == 0) {
        snprintf(out->host, sizeof out->host, "%s", LISTEN_DEFAULT_HOST);
    } else if (hlen >= sizeof out->host) {
        snprintf(err, errlen, "--listen %s: host too long", spec);
        return -1;
    } else {
        memcpy(out->host, host, hlen);
        out->host[hlen] = '\0';
    }
    if (strcasecmp(out->host, "localhost") == 0)
        snprintf(out->host, sizeof out->host, "%s", LISTEN_DEFAULT_HOST);
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, out->host, &a4) != 1 && inet_pton(AF_INET6, out->host, &a6) != 1) {
        snprintf(err, errlen, "--listen %s: the host must be an IP address (e.g. 127.0.0.1, "
                 "::1, 0.0.0.0) or localhost", spec);
        return -1;
    }
    out->port = (int)port;
    out->loopback = is_loopback_literal(out->host);
    return 0;
}

/* ---- helpers shared with http.c / ws.c ------------------------------------- */

int lsn_header(struct lws *wsi, enum lws_token_indexes token, const char *custom, char *buf,
               size_t buflen)
{
    buf[0] = '\0';
    int n = custom ? lws_hdr_custom_length(wsi, custom, (int)strlen(custom))
                   : lws_hdr_total_length(wsi, token);
    if (n <= 0)
        return 0;
    if ((size_t)n >= buflen)
        return -1;
    int got = custom ? lws_hdr_custom_copy(wsi, buf, (int)buflen, custom, (int)strlen(custom))
                     : lws_hdr_copy(wsi, buf, (int)buflen, token);
    if (got < 0)
        return -1;
    buf[got] = '\0';
    return got;
}

char *lsn_error_body(int code, const char *message)
{
    json_t *e = json_pack("{s:s, s:n, s:{s:i, s:s}}", "jsonrpc", "2.0", "id", "error", "code",
                          code, "message", message);
    char *text = e ? json_dumps(e, JSON_COMPACT) : NULL;
    json_decref(e);
    return text;
}

int lsn_respond_now(struct lws *wsi, unsigned status, const char *ctype, const char *body,
                    const char *const *extra_hdrs)
{
    unsigned char buf[LWS_PRE + LSN_HDR_SPACE];
    unsigned char *start = buf + LWS_PRE, *p = start, *end = buf + sizeof buf - 1;
    size_t blen = body ? strlen(body) : 0;
    if (lws_add_http_common_headers(wsi, status, ctype, (lws_filepos_t)blen, &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION, (const unsigned char *)"close",
                                     5, &p, end))
        return -1;
    for (size_t i = 0; extra_hdrs && extra_hdrs[i]; i += 2)
        if (lws_add_http_header_by_name(wsi, (const unsigned char *)extra_hdrs[i],
                                        (const unsigned char *)extra_hdrs[i + 1],
                                        (int)strlen(extra_hdrs[i + 1]), &p, end))
            return -1;
    if (lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    /* lws keeps whatever the socket does not take and flushes it before it
     * closes the connection, so a short body can go out in one write here. */
    if (blen) {
        unsigned char *b = malloc(LWS_PRE + blen);
        if (!b)
            return -1;
        memcpy(b + LWS_PRE, body, blen);
        int w = lws_write(wsi, b + LWS_PRE, blen, LWS_WRITE_HTTP_FINAL);
        free(b);
        if (w < 0)
            return -1;
    }
    return 0;
}

/* Host header: "localhost", "127.0.0.1" or "[::1]", with an optional port. */
static bool host_is_loopback(const char *h)
{
    const char *rest;
    if (h[0] == '[') {
        if (strncmp(h, "[::1]", 5) != 0)
            return false;
        rest = h + 5;
    } else {
        size_t n = strcspn(h, ":");
        if (!((n == 9 && strncasecmp(h, "localhost", 9) == 0) ||
              (n == 9 && strncmp(h, "127.0.0.1", 9) == 0)))
            return false;
        rest = h + n;
    }
    if (*rest == '\0')
        return true;
    if (*rest != ':' || !rest[1])
        return false;
    for (rest++; *rest; rest++)
        if (!isdigit((unsigned char)*rest))
            return false;
    return true;
}

/* Origin: http(s)://<loopback host>[:port], or listed in allowedOrigins. */
static bool origin_allowed(const listener *l, const char *o)
{
    size_t olen = strlen(o);
    while (olen > 0 && o[olen - 1] == '/')
        olen--;
    for (size_t i = 0; l->origins && l->origins[i]; i++) {
        const char *a = l->origins[i];
        size_t alen = strlen(a);
        while (alen > 0 && a[alen - 1] == '/')
            alen--;
        if (alen == olen && strncasecmp(a, o, olen) == 0)
            return true;
    }
    const char *host;
    if (strncasecmp(o, "http://", 7) == 0)
        host = o + 7;
    else if (strncasecmp(o, "https://", 8) == 0)
        host = o + 8;
    else
        return false;
    char h[LISTEN_HOST_MAX + 16];
    size_t hlen = olen - (size_t)(host - o);
    if (hlen >= sizeof h)
        return false;
    memcpy(h, host, hlen);
    h[hlen] = '\0';
    return host_is_loopback(h);
}

/* Compares in time that depends only on the expected token's length, so the
 * answer time does not reveal how much of a guess was right. */
static bool token_matches(const listener *l, const char *given, size_t glen)
{
    unsigned char diff = glen != l->token_len;
    for (size_t i = 0; i < l->token_len; i++)
        diff |= (unsigned char)((i < glen ? (unsigned char)given[i] : 0) ^
                                (unsigned char)l->token[i]);
    return diff == 0;
}

int lsn_check_request(listener *l, struct lws *wsi, char *why, size_t whylen)
{
    char v[LSN_HDR_MAX];
    /* DNS rebinding: a page on evil.example resolving to 127.0.0.1 reaches a
     * loopback server with its own name in Host. */
    if (l->addr.loopback) {
        int n = lsn_header(wsi, WSI_TOKEN_HOST, NULL, v, sizeof v);
        if (n <= 0 || !host_is_loopback(v)) {
            snprintf(why, whylen, "Host header must name localhost, 127.0.0.1 or [::1] "
                     "(DNS rebinding protection)");
            return 403;
        }
    }
    int n = lsn_header(wsi, WSI_TOKEN_ORIGIN, NULL, v, sizeof v);
    if (n < 0 || (n > 0 && !origin_allowed(l, v))) {
        snprintf(why, whylen, "Origin not allowed: only loopback origins and the config's "
                 "allowedOrigins may use this server");
        return 403;
    }
    if (l->token) {
        n = lsn_header(wsi, WSI_TOKEN_HTTP_AUTHORIZATION, NULL, v, sizeof v);
        const char *t = v;
        bool ok = n > 7 && strncasecmp(v, "Bearer ", 7) == 0;
        if (ok) {
            t = v + 7;
            while (*t == ' ')
                t++;
        }
        if (!ok || !token_matches(l, t, strlen(t))) {
            snprintf(why, whylen, "missing or wrong bearer token (Authorization: Bearer "
                     "<DEPLOY_MCP_AUTH_TOKEN>)");
            return 401;
        }
    }
    return 0;
}

/* ---- lws glue ------------------------------------------------------------ */

static int lsn_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                        size_t len)
{
    struct lws_context *ctx = lws_get_context(wsi);
    listener *l = ctx ? lws_context_user(ctx) : NULL;
    lsn_pss *pss = user;
    switch (reason) {
    case LWS_CALLBACK_HTTP:
    case LWS_CALLBACK_HTTP_BODY:
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
    case LWS_CALLBACK_HTTP_WRITEABLE:
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (l)
            return lsn_http_event(l, wsi, reason, pss, in, len);
        break;
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
    case LWS_CALLBACK_ESTABLISHED:
    case LWS_CALLBACK_RECEIVE:
    case LWS_CALLBACK_SERVER_WRITEABLE:
    case LWS_CALLBACK_CLOSED:
        if (l)
            return lsn_ws_event(l, wsi, reason, pss, in, len);
        break;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* One protocol serves both: an upgrade without Sec-WebSocket-Protocol lands
 * on protocols[0] too, and plain HTTP always does. */
static const struct lws_protocols lsn_protocols[] = {
    {"mcp", lsn_callback, sizeof(lsn_pss), LSN_RX_BUFFER, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void lsn_log(int level, const char *line)
{
    char buf[LSN_LOG_LINE_MAX];
    snprintf(buf, sizeof buf, "%s", line);
    size_t n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    if (level & LLL_ERR)
        log_error("libwebsockets: %s", buf);
    else if (level & LLL_WARN)
        log_warn("libwebsockets: %s", buf);
    else
        log_debug("libwebsockets: %s", buf);
}

static void on_sweep(uv_timer_t *t)
{
    listener *l = t->data;
    lsn_http_sweep(l, uv_now(t->loop));
}

int listener_port(const listener *l) { return l->port; }

/* Tries the bind before libwebsockets does: lws reports a busy port only in
 * its log and still returns a context (with no vhost), and a context on a
 * foreign loop can only be torn down with the loop running. */
static int probe_bind(const listen_addr *a, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof ss);
    if (strchr(a->host, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)a->port);
        inet_pton(AF_INET6, a->host, &s6->sin6_addr);
        len = sizeof *s6;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)a->port);
        inet_pton(AF_INET, a->host, &s4->sin_addr);
        len = sizeof *s4;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM, 0);
    if (fd < 0) {
        snprintf(err, errlen, "could not create a socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one); /* as lws does */
    int rc = bind(fd, (struct sockaddr *)&ss, len);
    int e = errno;
    close(fd);
    if (rc != 0) {
        snprintf(err, errlen, "could not listen on %s:%d: %s", a->host, a->port, strerror(e));
        return -1;
    }
    return 0;
}

listener *listener_start(mcp_server *srv, const listen_opts *opts, char *err, size_t errlen)
{
    if (!opts->addr.loopback && !(opts->token && *opts->token)) {
        snprintf(err, errlen, "refusing to listen on %s, which is not a loopback address, "
                 "without authentication: set %s to a secret token (clients then send "
                 "Authorization: Bearer <token>), or listen on 127.0.0.1",
                 opts->addr.host, LISTEN_TOKEN_ENV);
        return NULL;
    }
    if (probe_bind(&opts->addr, err, errlen) != 0)
        return NULL;
    listener *l = calloc(1, sizeof *l);
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    l->srv = srv;
    l->addr = opts->addr;
    l->origins = opts->allowed_origins;
    l->idle_ms = (uint64_t)(opts->idle_seconds ? opts->idle_seconds : 1) * 1000u;
    l->scratch = malloc(LWS_PRE + LSN_WRITE_CHUNK);
    if (opts->token && *opts->token) {
        l->token = strdup(opts->token);
        l->token_len = l->token ? strlen(l->token) : 0;
    }
    if (!l->scratch || (opts->token && *opts->token && !l->token)) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }

    lws_set_log_level(LLL_ERR | LLL_WARN | (log_get_level() == LOG_DEBUG ? LLL_NOTICE : 0),
                      lsn_log);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    void *foreign_loops[1] = {srv->loop};
    info.options = LWS_SERVER_OPTION_LIBUV;
    info.foreign_loops = foreign_loops; /* only read during lws_create_context */
    info.port = opts->addr.port;
    info.iface = opts->addr.host;
    if (!strchr(opts->addr.host, ':'))
        info.options |= LWS_SERVER_OPTION_DISABLE_IPV6; /* an IPv4 literal binds AF_INET */
    info.protocols = lsn_protocols;
    info.vhost_name = LSN_VHOST_NAME;
    info.user = l;
    info.max_http_header_data = LSN_HTTP_HEADER_DATA;
    info.keepalive_timeout = LSN_KEEPALIVE_S;
    info.timeout_secs = LSN_TIMEOUT_S;
    info.server_string = "deploy-mcp";
    l->ctx = lws_create_context(&info);
    if (!l->ctx) {
        snprintf(err, errlen, "could not listen on %s:%d: the address may be in use or not "
                 "available here, or libwebsockets' libuv support (Debian package "
                 "libwebsockets-evlib-uv) is missing", opts->addr.host, opts->addr.port);
        goto fail;
    }
    l->vhost = lws_get_vhost_by_name(l->ctx, LSN_VHOST_NAME);
    if (!l->vhost) {
        /* Lost a race for the port after probe_bind: the context exists and
         * must be torn down like a running one. */
        snprintf(err, errlen, "could not listen on %s:%d (see the libwebsockets error above)",
                 opts->addr.host, opts->addr.port);
        l->port = -1;
        return l;
    }
    l->port = lws_get_vhost_listen_port(l->vhost);

    uint64_t period = l->idle_ms / 2 ? l->idle_ms / 2 : 1;
    if (period > LSN_SWEEP_MAX_MS)
        period = LSN_SWEEP_MAX_MS;
    if (uv_timer_init(srv->loop, &l->sweep) == 0) {
        l->sweep_open = true;
        l->sweep.data = l;
        uv_timer_start(&l->sweep, on_sweep, period, period);
        uv_unref((uv_handle_t *)&l->sweep); /* never keeps the loop alive by itself */
    }
    const char *h = l->addr.host;
    bool v6 = strchr(h, ':') != NULL;
    log_info("listening on http://%s%s%s:%d%s (Streamable HTTP and WebSocket)%s", v6 ? "[" : "",
             h, v6 ? "]" : "", l->port, LSN_PATH,
             l->token ? "; bearer token required" : "");
    return l;
fail:
    free(l->scratch);
    free(l->token);
    free(l);
    return NULL;
}

void listener_stop(listener *l)
{
    if (!l || l->stopping)
        return;
    l->stopping = true;
    if (l->sweep_open) {
        uv_timer_stop(&l->sweep);
        uv_close((uv_handle_t *)&l->sweep, NULL);
        l->sweep_open = false;
    }
    /* Sessions first, so their calls are cancelled (and upstream transfers
     * closed) before lws starts tearing the connections down. */
    lsn_ws_stop(l);
    lsn_http_stop(l);
    /* With a foreign loop this only starts closing lws' handles; the context
     * is freed by the second call in listener_free, after the loop ran dry. */
    lws_context_destroy(l->ctx);
}

void listener_free(listener *l)
{
    if (!l)
        return;
    if (l->ctx)
        lws_context_destroy(l->ctx);
    free(l->scratch);
    if (l->token)
        memset(l->token, 0, l->token_len);
    free(l->token);
    free(l);
}

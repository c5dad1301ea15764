/* upstream.c — a fast, Showly-shaped fake upstream for the benchmark.
 *
 *   upstream [--port 0] [--host 127.0.0.1] [--token TOKEN] [--exit-on-stdin-eof]
 *
 * Prints "PORT <n>" on stdout once bound. One libuv loop, no threads, no
 * allocation per event: it must never be what a benchmark measures.
 *
 * The deployment id carries the stream's shape, so no state or control call
 * is needed before a stream: "bench_n<N>_l<L>_d<D>_t<T>[_w<W>][_o<O>]" is a
 * build of N log events of L lines each, D ms before every event (0:
 * everything at once), lines tagged with stream number T and padded to at
 * least W bytes, the whole timeline O ms later (so that concurrent streams
 * need not tick in phase). Missing fields default to 0 (n=10, l=1). Any other
 * id is 404.
 *
 * Routes (Showly's API as tests/fakes/showly_fake.py serves it):
 *   GET /deployments/{id}/events  SSE, Connection: close. Event 1 is
 *       `status` {"status":"building","at"}, events 2..N+1 are `log`
 *       {"stream":"build","lines":["#T:S# compiling module S", ...]} with S
 *       the 1-based line number in the build, event N+2 is `status`
 *       {"status":"ready","previewUrl","at"}; then the server closes. Frames
 *       are `event:` / `id:` / `data:` / blank line, exactly like the fake's.
 *       Last-Event-ID resumes strictly after that id.
 *   GET /deployments/{id}  {"ok":true,"data":Deployment} (always ready: the
 *       upstream keeps no per-deployment clock).
 *   Both require "Authorization: Bearer <token>" (else 401 unauthorized).
 *   GET /_bench/stats   {"open","maxOpen","streams","events","bytes","requests"}
 *   POST /_bench/reset  zeroes maxOpen/streams/events/bytes/requests.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <uv.h>

#define REQ_MAX        16384            /* request head cap */
#define OUT_CHUNK      (256u << 10)     /* bytes generated per write when events are due */
#define EVENT_MAX      (64u << 10)      /* one rendered event, worst case (L*W bounded below) */
#define LINES_MAX      10000            /* lines per event */
#define WIDTH_MAX      4096             /* padded line width */
#define DEFAULT_TOKEN  "sk_live_bench"

typedef struct stats {
    uint64_t open, max_open, streams, events, bytes, requests;
} stats;

static stats st;
static const char *token = DEFAULT_TOKEN;
static uv_loop_t *loop;

typedef struct shape {
    unsigned long n, l, d, t, w, o;
} shape;

typedef struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    char in[REQ_MAX];
    size_t in_len;
    bool streaming;      /* SSE response started */
    bool writing;        /* one write outstanding at a time */
    bool done;           /* the terminal event is written */
    bool closing;
    bool counted_open;
    int handles;         /* open handles: freed when 0 */
    shape sh;
    char id[128];
    unsigned long next;  /* 1-based id of the next event */
    unsigned long total; /* n + 2 */
    int64_t t0;          /* ms, loop time of the stream's start (may be negative) */
    char *out;           /* write buffer (OUT_CHUNK + EVENT_MAX) */
    size_t out_len;
} conn;

/* ---- helpers ------------------------------------------------------------ */

static void iso_now(char *buf, size_t n)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(buf, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ts.tv_nsec / 1000000) % 1000);
}

/* Writes v in decimal at p; returns the length. */
static size_t put_ul(char *p, unsigned long v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        p[i] = tmp[n - 1 - i];
    return n;
}

static size_t put(char *p, const char *s)
{
    size_t n = strlen(s);
    memcpy(p, s, n);
    return n;
}

static bool parse_shape(const char *id, shape *sh)
{
    sh->n = 10;
    sh->l = 1;
    sh->d = 0;
    sh->t = 0;
    sh->w = 0;
    sh->o = 0;
    if (strncmp(id, "bench", 5) != 0)
        return false;
    const char *p = id + 5;
    while (*p) {
        if (*p != '_')
            return false;
        char k = p[1];
        char *end;
        unsigned long v = strtoul(p + 2, &end, 10);
        if (end == p + 2)
            return false;
        switch (k) {
        case 'n': sh->n = v; break;
        case 'l': sh->l = v; break;
        case 'd': sh->d = v; break;
        case 't': sh->t = v; break;
        case 'w': sh->w = v; break;
        case 'o': sh->o = v; break;
        default: return false;
        }
        p = end;
    }
    if (sh->l < 1)
        sh->l = 1;
    if (sh->l > LINES_MAX)
        sh->l = LINES_MAX;
    if (sh->w > WIDTH_MAX)
        sh->w = WIDTH_MAX;
    /* keep one rendered event within EVENT_MAX */
    while (sh->l * (sh->w + 96) + 256 > EVENT_MAX && sh->l > 1)
        sh->l--;
    return true;
}

/* Renders event `i` (1-based) of the stream into p; returns its length. */
static size_t render(const conn *c, unsigned long i, char *p)
{
    char *s = p;
    if (i == 1 || i == c->total) {
        char at[96];
        iso_now(at, sizeof at);
        p += put(p, "event: status\nid: ");
        p += put_ul(p, i);
        if (i == 1) {
            p += put(p, "\ndata: {\"status\":\"building\",\"at\":\"");
        } else {
            p += put(p, "\ndata: {\"status\":\"ready\",\"previewUrl\":\"https://s-");
            p += put(p, c->id);
            p += put(p, ".preview.showly.app\",\"at\":\"");
        }
        p += put(p, at);
        p += put(p, "\"}\n\n");
        return (size_t)(p - s);
    }
    p += put(p, "event: log\nid: ");
    p += put_ul(p, i);
    p += put(p, "\ndata: {\"stream\":\"build\",\"lines\":[");
    unsigned long seq = (i - 2) * c->sh.l;
    for (unsigned long j = 0; j < c->sh.l; j++) {
        char *ls = p;
        seq++;
        if (j)
            *p++ = ',';
        p += put(p, "\"#");
        p += put_ul(p, c->sh.t);
        *p++ = ':';
        p += put_ul(p, seq);
        p += put(p, "# compiling module ");
        p += put_ul(p, seq);
        size_t len = (size_t)(p - ls) - 1 - (j ? 1 : 0);
        while (len < c->sh.w) {
            *p++ = '.';
            len++;
        }
        *p++ = '"';
    }
    p += put(p, "]}\n\n");
    return (size_t)(p - s);
}

/* ---- connection lifetime ------------------------------------------------ */

static void on_handle_closed(uv_handle_t *h)
{
    conn *c = h->data;
    if (--c->handles == 0) {
        free(c->out);
        free(c);
    }
}

static void conn_close(conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    if (c->counted_open) {
        c->counted_open = false;
        st.open--;
    }
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    conn_close(req->data);
}

/* ---- streaming ---------------------------------------------------------- */

static void pump(conn *c);

/* Loop time at which event c->next is due. */
static int64_t due_ms(const conn *c)
{
    return c->t0 + (int64_t)(c->next * c->sh.d);
}

static void on_stream_written(uv_write_t *req, int status)
{
    conn *c = req->data;
    c->writing = false;
    if (status < 0 || c->closing) {
        conn_close(c);
        return;
    }
    if (c->done) {
        c->sreq.data = c;
        if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) != 0)
            conn_close(c);
        return;
    }
    pump(c);
}

static void on_timer(uv_timer_t *t)
{
    pump(t->data);
}

/* Writes every due event (up to OUT_CHUNK per write), then waits for the
 * write or for the next due time. */
static void pump(conn *c)
{
    if (c->writing || c->closing || c->done)
        return;
    uint64_t now = uv_now(loop);
    c->out_len = 0;
    while (c->next <= c->total && c->out_len < OUT_CHUNK) {
        if ((c->sh.d || c->sh.o) && due_ms(c) > (int64_t)now)
            break;
        c->out_len += render(c, c->next, c->out + c->out_len);
        c->next++;
        st.events++;
    }
    if (c->next > c->total)
        c->done = true;
    if (c->out_len) {
        st.bytes += c->out_len;
        uv_buf_t b = uv_buf_init(c->out, (unsigned)c->out_len);
        c->writing = true;
        c->wreq.data = c;
        if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_stream_written) != 0)
            conn_close(c);
        return;
    }
    if (!c->done) {
        int64_t wait = due_ms(c) - (int64_t)now;
        uv_timer_start(&c->timer, on_timer, wait > 0 ? (uint64_t)wait : 0, 0);
    }
}

/* ---- plain responses ---------------------------------------------------- */

typedef struct plain_write {
    uv_write_t req;
    conn *c;
    char data[];
} plain_write;

static void on_plain_written(uv_write_t *req, int status)
{
    plain_write *w = (plain_write *)req;
    conn *c = w->c;
    free(w);
    if (status < 0)
        conn_close(c);
}

/* One JSON answer on a keep-alive connection; each write owns its bytes. */
static void respond(conn *c, int code, const char *reason, const char *body)
{
    size_t blen = strlen(body);
    char head[256];
    int hn = snprintf(head, sizeof head,
                      "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\nServer: bench-upstream\r\n\r\n",
                      code, reason, blen);
    plain_write *w = malloc(sizeof *w + (size_t)hn + blen);
    if (!w) {
        conn_close(c);
        return;
    }
    w->c = c;
    memcpy(w->data, head, (size_t)hn);
    memcpy(w->data + hn, body, blen);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)((size_t)hn + blen));
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_plain_written) != 0) {
        free(w);
        conn_close(c);
    }
}

static void respond_error(conn *c, int code, const char *reason, const char *ecode,
                          const char *msg)
{
    char body[512];
    snprintf(body, sizeof body, "{\"ok\":false,\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}",
             ecode, msg);
    respond(c, code, reason, body);
}

/* ---- requests ----------------------------------------------------------- */

/* Finds header `name` in the head (lines after the first); copies its value. */
static bool header(const char *head, const char *name, char *val, size_t n)
{
    size_t nl = strlen(name);
    const char *p = strstr(head, "\r\n");
    while (p && p[2] != '\r' && p[2] != '\0') {
        p += 2;
        const char *e = strstr(p, "\r\n");
        if (!e)
            break;
        if ((size_t)(e - p) > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
            const char *v = p + nl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            size_t len = (size_t)(e - v);
            while (len && (v[len - 1] == ' ' || v[len - 1] == '\t'))
                len--;
            if (len >= n)
                len = n - 1;
            memcpy(val, v, len);
            val[len] = '\0';
            return true;
        }
        p = e;
    }
    return false;
}

static bool authorized(const char *head)
{
    char v[512];
    if (!header(head, "Authorization", v, sizeof v))
        return false;
    if (strncasecmp(v, "Bearer ", 7) != 0)
        return false;
    const char *tok = v + 7;
    while (*tok == ' ')
        tok++;
    return strcmp(tok, token) == 0;
}

static void start_stream(conn *c, const char *head)
{
    char accept[256];
    if (header(head, "Accept", accept, sizeof accept) && !strstr(accept, "text/event-stream") &&
        !strstr(accept, "*/*")) {
        respond_error(c, 406, "Not Acceptable", "not_acceptable",
                      "this endpoint serves text/event-stream");
        return;
    }
    char lei[64];
    c->next = 1;
    c->total = c->sh.n + 2;
    if (header(head, "Last-Event-ID", lei, sizeof lei)) {
        char *end;
        unsigned long v = strtoul(lei, &end, 10);
        if (end != lei && *end == '\0' && v <= c->total)
            c->next = v + 1;
    }
    c->streaming = true;
    c->out = malloc(OUT_CHUNK + EVENT_MAX);
    if (!c->out) {
        conn_close(c);
        return;
    }
    st.streams++;
    st.open++;
    c->counted_open = true;
    if (st.open > st.max_open)
        st.max_open = st.open;
    /* resume keeps the timeline; o shifts it (streams out of phase) */
    c->t0 = (int64_t)uv_now(loop) + (int64_t)c->sh.o - (int64_t)((c->next - 1) * c->sh.d);
    static const char hdr[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                              "Cache-Control: no-cache\r\nConnection: close\r\n"
                              "Server: bench-upstream\r\n\r\n";
    /* The head goes out with the first events. */
    memcpy(c->out, hdr, sizeof hdr - 1);
    size_t hl = sizeof hdr - 1;
    if (c->next > c->total)
        c->done = true;
    uint64_t now = uv_now(loop);
    size_t len = hl;
    while (!c->done && c->next <= c->total && len < OUT_CHUNK) {
        if ((c->sh.d || c->sh.o) && due_ms(c) > (int64_t)now)
            break;
        len += render(c, c->next, c->out + len);
        c->next++;
        st.events++;
    }
    if (c->next > c->total)
        c->done = true;
    st.bytes += len;
    uv_buf_t b = uv_buf_init(c->out, (unsigned)len);
    c->writing = true;
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_stream_written) != 0)
        conn_close(c);
}

static void stats_json(char *buf, size_t n)
{
    snprintf(buf, n,
             "{\"open\":%" PRIu64 ",\"maxOpen\":%" PRIu64 ",\"streams\":%" PRIu64
             ",\"events\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"requests\":%" PRIu64 "}",
             st.open, st.max_open, st.streams, st.events, st.bytes, st.requests);
}

/* Handles one complete request head (NUL-terminated). */
static void handle(conn *c, char *head)
{
    char method[16], path[1024];
    if (sscanf(head, "%15s %1023s", method, path) != 2) {
        respond_error(c, 400, "Bad Request", "bad_request", "malformed request line");
        return;
    }
    char *q = strchr(path, '?');
    if (q)
        *q = '\0';
    if (strcmp(path, "/_bench/stats") == 0) {
        char body[512];
        stats_json(body, sizeof body);
        respond(c, 200, "OK", body);
        return;
    }
    if (strcmp(path, "/_bench/reset") == 0) {
        uint64_t open = st.open;
        memset(&st, 0, sizeof st);
        st.open = open;
        st.max_open = open;
        respond(c, 200, "OK", "{\"ok\":true}");
        return;
    }
    st.requests++;
    if (!authorized(head)) {
        respond_error(c, 401, "Unauthorized", "unauthorized", "Missing or invalid API token");
        return;
    }
    if (strncmp(path, "/deployments/", 13) != 0) {
        respond_error(c, 404, "Not Found", "not_found", "No route");
        return;
    }
    char *id = path + 13;
    char *slash = strchr(id, '/');
    bool events = false;
    if (slash) {
        if (strcmp(slash, "/events") != 0) {
            respond_error(c, 404, "Not Found", "not_found", "No route");
            return;
        }
        *slash = '\0';
        events = true;
    }
    if (strcmp(method, "GET") != 0) {
        respond_error(c, 405, "Method Not Allowed", "method_not_allowed", "Use GET");
        return;
    }
    size_t idlen = strlen(id);
    if (idlen >= sizeof c->id || !parse_shape(id, &c->sh)) {
        respond_error(c, 404, "Not Found", "deployment_not_found", "Deployment not found");
        return;
    }
    memcpy(c->id, id, idlen + 1);
    if (events) {
        start_stream(c, head);
        return;
    }
    char at[96], body[1024];
    iso_now(at, sizeof at);
    snprintf(body, sizeof body,
             "{\"ok\":true,\"data\":{\"id\":\"%s\",\"siteId\":\"s\",\"environment\":\"preview\","
             "\"status\":\"ready\",\"createdAt\":\"%s\",\"updatedAt\":\"%s\",\"branch\":\"main\","
             "\"commitSha\":\"0000000\",\"previewUrl\":\"https://s-%s.preview.showly.app\"}}",
             c->id, at, at, c->id);
    respond(c, 200, "OK", body);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    conn *c = h->data;
    (void)suggested;
    if (c->streaming) { /* only EOF matters now; reuse the head buffer */
        buf->base = c->in;
        buf->len = sizeof c->in;
        return;
    }
    buf->base = c->in + c->in_len;
    buf->len = sizeof c->in - 1 - c->in_len;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn *c = s->data;
    (void)buf;
    if (nread < 0) {
        if (!c->streaming || !c->done || !c->writing)
            conn_close(c);
        return;
    }
    if (c->streaming || nread == 0)
        return;
    c->in_len += (size_t)nread;
    c->in[c->in_len] = '\0';
    for (;;) {
        char *end = strstr(c->in, "\r\n\r\n");
        if (!end) {
            if (c->in_len >= sizeof c->in - 1) {
                respond_error(c, 431, "Request Header Fields Too Large", "bad_request",
                              "request head too large");
                conn_close(c);
            }
            return;
        }
        size_t hl = (size_t)(end - c->in) + 4;
        end[2] = '\0';
        handle(c, c->in);
        if (c->streaming || c->closing)
            return;
        memmove(c->in, c->in + hl, c->in_len - hl + 1);
        c->in_len -= hl;
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    conn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    uv_tcp_init(loop, &c->tcp);
    uv_timer_init(loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->handles = 2;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* ---- main --------------------------------------------------------------- */

static void on_signal(uv_signal_t *h, int sig)
{
    (void)h;
    (void)sig;
    exit(0);
}

static char stdin_buf[4096];

static void stdin_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    (void)h;
    (void)s;
    b->base = stdin_buf;
    b->len = sizeof stdin_buf;
}

static void stdin_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void)s;
    (void)b;
    if (n < 0)
        exit(0);
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    int port = 0;
    bool exit_on_eof = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
            port = atoi(argv[++i]);
        else if (strcmp(argv[i], "--host") == 0 && i + 1 < argc)
            host = argv[++i];
        else if (strcmp(argv[i], "--token") == 0 && i + 1 < argc)
            token = argv[++i];
        else if (strcmp(argv[i], "--exit-on-stdin-eof") == 0)
            exit_on_eof = true;
        else {
            fprintf(stderr, "usage: %s [--port N] [--host H] [--token T] [--exit-on-stdin-eof]\n",
                    argv[0]);
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    loop = uv_default_loop();
    uv_tcp_t server;
    uv_tcp_init(loop, &server);
    struct sockaddr_storage addr;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&addr) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr) != 0) {
        fprintf(stderr, "upstream: bad host %s\n", host);
        return 2;
    }
    int rc = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&server, 4096, on_connection);
    if (rc != 0) {
        fprintf(stderr, "upstream: cannot listen on %s:%d: %s\n", host, port, uv_strerror(rc));
        return 1;
    }
    struct sockaddr_storage bound;
    int blen = sizeof bound;
    uv_tcp_getsockname(&server, (struct sockaddr *)&bound, &blen);
    int bport = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                   : ((struct sockaddr_in *)&bound)->sin_port);
    printf("PORT %d\n", bport);
    fflush(stdout);

    uv_signal_t sigterm, sigint;
    uv_signal_init(loop, &sigterm);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_signal_init(loop, &sigint);
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_pipe_t in;
    if (exit_on_eof && uv_guess_handle(0) == UV_NAMED_PIPE) {
        uv_pipe_init(loop, &in, 0);
        if (uv_pipe_open(&in, 0) == 0)
            uv_read_start((uv_stream_t *)&in, stdin_alloc, stdin_read);
    }
    return uv_run(loop, UV_RUN_DEFAULT);
}

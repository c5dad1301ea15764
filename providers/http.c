/* http.c — asynchronous HTTP client on libcurl's multi-socket interface and
 * the program's libuv loop. See http.h for the contract.
 *
 * Structure (after curl's docs/examples/multi-uv.c):
 *  - one http_client per loop: a CURLM with CURLMOPT_SOCKETFUNCTION (one
 *    uv_poll_t per socket, attached with curl_multi_assign) and
 *    CURLMOPT_TIMERFUNCTION (one uv_timer_t);
 *  - after every curl_multi_socket_action the finished transfers are taken
 *    from curl_multi_info_read and ended there (retry or on_done);
 *  - every request owns one uv_timer_t that serves, one at a time, as retry
 *    backoff, idle-timeout watchdog and "do this from the loop" trigger for
 *    work that may not happen inside a curl callback (starting, cancelling or
 *    unpausing a transfer while curl is on the stack). The request's memory
 *    is freed in that timer's close callback, so it is never freed under a
 *    running callback.
 *
 * Re-entrancy rules:
 *  - client->in_curl > 0 while one of our curl calls that may run curl
 *    callbacks (and so user callbacks) is on the stack; then no curl_multi_*
 *    call is made and such work is deferred to the request's timer;
 *  - client->depth > 0 while one of our loop callbacks runs; destroying the
 *    client from a user callback only marks it, the teardown runs when the
 *    outermost loop callback unwinds.
 *
 * libcurl is loaded on the first http_start (providers/curl_lazy.h), which
 * also creates the multi handle: a client that never makes a request never
 * touches curl. When curl cannot be loaded, each request fails on the next
 * loop turn with the loader's reason (http_response.lib_missing).
 *
 * Loop latency: socket callbacks share a budget of HTTP_POLL_BUDGET_NS per
 * loop iteration (reset by a uv_prepare handle before every poll). Past it,
 * poll_cb returns without calling curl: epoll is level-triggered, so the
 * socket is reported again on the next iteration, after the loop has served
 * its other handles (stdin, timers) in between. Nothing is read or lost in
 * the meantime; the kernel keeps the data. */
#include "providers/http.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include "mcp/log.h"
#include "providers/curl_lazy.h"

#define RETRY_BASE_MS        200u    /* first backoff */
#define RETRY_MAX_BACKOFF_MS 5000u   /* backoff cap (jitter comes on top) */
#define RETRY_JITTER_DIV     4u      /* jitter: up to backoff / 4 */
#define RETRY_MAX_WAIT_MS    60000u  /* cap on Retry-After & co. */
#define MULTI_MIN_TIMEOUT_MS 1       /* curl's "0 = now" is run from the loop */
#define BODY_INITIAL_CAP     4096u
#define HEADER_INITIAL_CAP   1024u
#define TCP_KEEPIDLE_S       60L
#define TCP_KEEPINTVL_S      30L
#define METHOD_MAX_LEN       32u
#define OWN_ERROR_MAX        128u

#ifdef CURL_WRITEFUNC_ERROR
#define WRITE_ABORT ((size_t)CURL_WRITEFUNC_ERROR)
#else
#define WRITE_ABORT ((size_t)0)
#endif

typedef struct sock_ctx {
    uv_poll_t poll;
    curl_socket_t fd;
    int events;
    bool closing;
    struct http_client *client;
    struct sock_ctx *prev, *next;
} sock_ctx;

enum req_state {
    REQ_WAIT,      /* not in the multi: timer will start the next attempt */
    REQ_RUNNING,   /* in the multi */
    REQ_FINISHING, /* on_done is running */
    REQ_RELEASED   /* timer closing; memory freed in its close callback */
};

struct http_req {
    struct http_client *client;
    struct http_req *prev, *next; /* client's list of unreleased requests */
    CURL *easy;
    struct curl_slist *slist;
    FILE *upload;
    char *query; /* the URL's query string, to keep it out of error texts */
    char *load_error; /* libcurl could not be loaded: the reason (no easy handle) */
    http_callbacks cb;
    void *ud;

    bool stream;
    size_t max_body;
    long idle_ms;
    int max_retries;
    bool idempotent;

    enum req_state state;
    bool in_multi;
    bool dead;          /* canceled: no callback may run any more */
    bool counted;       /* included in client->active */
    bool paused;        /* user asked for a pause (streaming) */
    bool want_unpause;  /* timer should call curl_easy_pause(CONT) */
    bool responded;     /* on_response was called (in any attempt) */
    int attempts;
    size_t delivered;   /* bytes handed to on_data, over all attempts */
    uint64_t last_activity;

    /* per attempt */
    long status;
    bool headers_done;
    bool response_called;
    bool discard;       /* streaming response that will be retried */
    bool truncated;
    bool aborted_by_cb;
    bool oom;
    char *body;
    size_t body_len, body_cap;
    char *hdrs;         /* "name\0value\0" entries of the latest response */
    size_t hdr_len, hdr_cap;
    bool hdr_overflow;
    char own_error[OWN_ERROR_MAX];
    char errbuf[CURL_ERROR_SIZE];
    uv_timer_t timer;
};

struct http_client {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    uv_prepare_t prepare;     /* resets the socket budget before every poll */
    uint64_t slice_start;     /* hrtime of this iteration's first socket callback; 0 = none yet */
    uint64_t budget_ns;       /* HTTP_POLL_BUDGET_NS (tests may change it) */
    uint64_t deferred;        /* socket callbacks left for the next iteration */
    struct http_req *reqs;
    sock_ctx *socks;
    size_t active;
    size_t open_handles; /* uv handles whose close callback is pending or due */
    int in_curl;
    int depth;
    bool destroying;
    bool finalized;
    uint64_t rng;
};

static void req_timer_cb(uv_timer_t *t);
static void req_finish_attempt(http_req *r, CURLcode code, const char *own_err);

/* ---------------------------------------------------------------- helpers */

static uint64_t rng_next(http_client *c)
{
    /* xorshift64*: jitter only, not security relevant */
    uint64_t x = c->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    c->rng = x;
    return x * UINT64_C(2685821657736338717);
}

static void client_maybe_free(http_client *c)
{
    if (c->finalized && c->open_handles == 0)
        free(c);
}

static void req_uncount(http_req *r)
{
    if (r->counted) {
        r->counted = false;
        r->client->active--;
    }
}

/* ------------------------------------------------------------ uv sockets */

static void sock_close_cb(uv_handle_t *h)
{
    sock_ctx *sc = h->data;
    http_client *c = sc->client;
    free(sc);
    c->open_handles--;
    client_maybe_free(c);
}

static void sock_close(sock_ctx *sc)
{
    http_client *c = sc->client;
    if (sc->closing)
        return;
    sc->closing = true;
    if (sc->prev)
        sc->prev->next = sc->next;
    else
        c->socks = sc->next;
    if (sc->next)
        sc->next->prev = sc->prev;
    sc->prev = sc->next = NULL;
    uv_poll_stop(&sc->poll);
    uv_close((uv_handle_t *)&sc->poll, sock_close_cb);
}

static sock_ctx *sock_find(http_client *c, curl_socket_t s)
{
    for (sock_ctx *sc = c->socks; sc; sc = sc->next)
        if (sc->fd == s)
            return sc;
    return NULL;
}

static void process_info(http_client *c);
static void client_finalize(http_client *c);

/* Close callback of the client's own timer and prepare handles. */
static void client_handle_close_cb(uv_handle_t *h)
{
    http_client *c = h->data;
    c->open_handles--;
    client_maybe_free(c);
}

static void client_leave(http_client *c)
{
    c->depth--;
    if (c->depth == 0 && c->destroying && !c->finalized)
        client_finalize(c);
}

static void client_drive(http_client *c, curl_socket_t s, int ev)
{
    int running = 0;
    c->depth++;
    c->in_curl++;
    CURLMcode mc = curl_multi_socket_action(c->multi, s, ev, &running);
    c->in_curl--;
    if (mc != CURLM_OK)
        log_warn("http: curl_multi_socket_action: %s", curl_multi_strerror(mc));
    process_info(c);
    client_leave(c);
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
    sock_ctx *sc = h->data;
    http_client *c = sc->client;
    if (status >= 0) {
        /* Over this iteration's budget: leave the socket for the next one
         * (level-triggered, so it is reported again; the handle stays
         * active). Errors are always handled: libuv stopped that handle. */
        uint64_t now = uv_hrtime();
        if (c->slice_start == 0)
            c->slice_start = now;
        else if (now - c->slice_start >= c->budget_ns) {
            c->deferred++;
            return;
        }
    }
    int flags = 0;
    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    } else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    bool restart = status < 0; /* libuv stopped the handle on POLLERR */
    c->depth++;
    client_drive(c, sc->fd, flags);
    /* sc's memory lives until its close callback, which cannot have run */
    if (restart && !sc->closing && !c->finalized && sc->events)
        uv_poll_start(&sc->poll, sc->events, poll_cb);
    client_leave(c);
}

static int multi_socket_cb(CURL *easy, curl_socket_t s, int what, void *userp,
                           void *socketp)
{
    http_client *c = userp;
    sock_ctx *sc = socketp;
    (void)easy;
    if (c->finalized)
        return 0;
    if (!sc)
        sc = sock_find(c, s);
    if (what == CURL_POLL_REMOVE) {
        if (sc)
            sock_close(sc);
        return 0;
    }
    if (!sc) {
        sc = calloc(1, sizeof *sc);
        if (!sc)
            return -1;
        if (uv_poll_init_socket(c->loop, &sc->poll, s) != 0) {
            free(sc);
            return -1;
        }
        sc->fd = s;
        sc->client = c;
        sc->poll.data = sc;
        sc->next = c->socks;
        if (c->socks)
            c->socks->prev = sc;
        c->socks = sc;
        c->open_handles++;
        /* allowed from the socket callback; sock_find covers a refusal */
        (void)curl_multi_assign(c->multi, s, sc);
    }
    int events = 0;
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    sc->events = events;
    if (events)
        uv_poll_start(&sc->poll, events, poll_cb);
    else
        uv_poll_stop(&sc->poll);
    return 0;
}

static void prepare_cb(uv_prepare_t *p)
{
    http_client *c = p->data;
    c->slice_start = 0;
}

static void multi_timeout_cb(uv_timer_t *t)
{
    client_drive(t->data, CURL_SOCKET_TIMEOUT, 0);
}

static int multi_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    http_client *c = userp;
    (void)multi;
    if (c->finalized)
        return 0;
    if (timeout_ms < 0) {
        uv_timer_stop(&c->timer);
    } else {
        if (timeout_ms < MULTI_MIN_TIMEOUT_MS)
            timeout_ms = MULTI_MIN_TIMEOUT_MS;
        uv_timer_start(&c->timer, multi_timeout_cb, (uint64_t)timeout_ms, 0);
    }
    return 0;
}

/* -------------------------------------------------------- request upkeep */

static void req_close_cb(uv_handle_t *h)
{
    http_req *r = h->data;
    http_client *c = r->client;
    free(r->body);
    free(r->hdrs);
    free(r->query);
    free(r->load_error);
    free(r);
    c->open_handles--;
    client_maybe_free(c);
}

/* Takes the transfer out of curl and frees its curl-side resources. Never
 * called while curl is on the stack (client->in_curl == 0). */
static void req_detach(http_req *r)
{
    if (r->easy) {
        if (r->in_multi && r->client->multi)
            curl_multi_remove_handle(r->client->multi, r->easy);
        r->in_multi = false;
        curl_easy_cleanup(r->easy);
        r->easy = NULL;
    }
    if (r->slist) {
        curl_slist_free_all(r->slist);
        r->slist = NULL;
    }
    if (r->upload) {
        fclose(r->upload);
        r->upload = NULL;
    }
}

static void req_release(http_req *r)
{
    http_client *c = r->client;
    if (r->state == REQ_RELEASED)
        return;
    r->state = REQ_RELEASED;
    req_uncount(r);
    if (r->prev)
        r->prev->next = r->next;
    else
        c->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
    uv_close((uv_handle_t *)&r->timer, req_close_cb);
}

static void req_arm_idle(http_req *r)
{
    if (r->idle_ms > 0) {
        r->last_activity = uv_now(r->client->loop);
        uv_timer_start(&r->timer, req_timer_cb, (uint64_t)r->idle_ms, 0);
    }
}

static void req_touch(http_req *r)
{
    r->last_activity = uv_now(r->client->loop);
}

/* Starts an attempt: only curl_multi_add_handle; the socket action happens
 * later from the loop. */
static bool req_begin_attempt(http_req *r)
{
    r->status = 0;
    r->headers_done = false;
    r->response_called = false;
    r->discard = false;
    r->truncated = false;
    r->aborted_by_cb = false;
    r->oom = false;
    r->body_len = 0;
    r->hdr_len = 0;
    r->hdr_overflow = false;
    r->own_error[0] = '\0';
    r->errbuf[0] = '\0';
    if (r->upload && fseeko(r->upload, 0, SEEK_SET) != 0)
        return false;
    r->attempts++;
    CURLMcode mc = curl_multi_add_handle(r->client->multi, r->easy);
    if (mc != CURLM_OK) {
        log_warn("http: curl_multi_add_handle: %s", curl_multi_strerror(mc));
        return false;
    }
    r->in_multi = true;
    r->state = REQ_RUNNING;
    req_arm_idle(r);
    return true;
}

/* ------------------------------------------------------- retry decisions */

static bool parse_uint(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!s || !*s)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        if (v <= (UINT64_MAX - 9) / 10) /* else saturated; callers cap it */
            v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return true;
}

/* How long the server asked us to wait (Retry-After: seconds or HTTP date,
 * X-Rate-Limit-Time-Reset-Ms), capped. False when it did not say. */
static bool header_wait_ms(const http_req *r, uint64_t *ms)
{
    bool have = false;
    uint64_t best = 0, v;
    const char *ra = http_header(r, "Retry-After");
    if (ra) {
        if (parse_uint(ra, &v)) {
            best = v > RETRY_MAX_WAIT_MS / 1000u ? RETRY_MAX_WAIT_MS : v * 1000u;
            have = true;
        } else {
            time_t when = curl_getdate(ra, NULL);
            if (when != (time_t)-1) {
                time_t now = time(NULL);
                double diff = difftime(when, now);
                best = diff <= 0 ? 0
                       : diff * 1000.0 >= (double)RETRY_MAX_WAIT_MS ? RETRY_MAX_WAIT_MS
                       : (uint64_t)(diff * 1000.0);
                have = true;
            }
        }
    }
    const char *xr = http_header(r, "X-Rate-Limit-Time-Reset-Ms");
    if (xr && parse_uint(xr, &v)) {
        if (v > RETRY_MAX_WAIT_MS)
            v = RETRY_MAX_WAIT_MS;
        if (!have || v > best)
            best = v;
        have = true;
    }
    if (have)
        *ms = best;
    return have;
}

static uint64_t backoff_ms(http_req *r)
{
    uint64_t base = RETRY_BASE_MS;
    for (int i = 1; i < r->attempts && base < RETRY_MAX_BACKOFF_MS; i++)
        base *= 2;
    if (base > RETRY_MAX_BACKOFF_MS)
        base = RETRY_MAX_BACKOFF_MS;
    return base + rng_next(r->client) % (base / RETRY_JITTER_DIV + 1);
}

/* A stream the user has seen (on_response or on_data) is never retried, so
 * that on_response runs at most once. */
static bool retry_allowed(const http_req *r)
{
    return r->idempotent && r->attempts <= r->max_retries &&
           !(r->stream && (r->delivered > 0 || r->responded));
}

static bool code_retryable(CURLcode code)
{
    switch (code) {
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return true;
    default:
        return false;
    }
}

/* Whether the final status of this attempt calls for a retry, and after how
 * long. The caller checks retry_allowed(). */
static bool status_retry_delay(http_req *r, uint64_t *delay)
{
    uint64_t hdr_ms = 0;
    bool has = header_wait_ms(r, &hdr_ms);
    switch (r->status) {
    case 429:
        if (!has)
            return false; /* quota errors that do not clear on a timer */
        *delay = hdr_ms;
        return true;
    case 502:
    case 503:
    case 504: {
        uint64_t b = backoff_ms(r);
        *delay = has && hdr_ms > b ? hdr_ms : b;
        return true;
    }
    default:
        return false;
    }
}

static bool req_should_retry(http_req *r, CURLcode code, uint64_t *delay)
{
    if (!retry_allowed(r))
        return false;
    if (code != CURLE_OK) {
        if (!code_retryable(code))
            return false;
        *delay = backoff_ms(r);
        return true;
    }
    return status_retry_delay(r, delay);
}

/* --------------------------------------------------------- curl callbacks */

static bool req_call_on_response(http_req *r)
{
    r->response_called = true;
    r->responded = true;
    if (!r->cb.on_response)
        return true;
    http_response res = {
        .status = r->status, .body = NULL, .body_len = 0, .curl_code = 0,
        .error = "", .truncated = false, .canceled_by_callback = false,
        .attempts = r->attempts, .req = r,
    };
    int rc = r->cb.on_response(r->ud, &res);
    if (r->dead)
        return false;
    if (rc != 0) {
        r->aborted_by_cb = true;
        return false;
    }
    return true;
}

/* The final response's headers are complete. False aborts the transfer. */
static bool req_headers_complete(http_req *r)
{
    if (!r->stream)
        return true;
    uint64_t delay;
    if (retry_allowed(r) && status_retry_delay(r, &delay)) {
        r->discard = true; /* this response is retried, the user never sees it */
        return true;
    }
    return req_call_on_response(r);
}

static long parse_status_line(const char *buf, size_t n)
{
    size_t i = 0;
    while (i < n && buf[i] != ' ')
        i++;
    while (i < n && buf[i] == ' ')
        i++;
    long st = 0;
    int digits = 0;
    while (i < n && digits < 3 && buf[i] >= '0' && buf[i] <= '9') {
        st = st * 10 + (buf[i] - '0');
        i++;
        digits++;
    }
    return digits == 3 ? st : 0;
}

static void req_store_header(http_req *r, const char *line, size_t len)
{
    if (len == 0 || line[0] == ' ' || line[0] == '\t')
        return; /* obsolete line folding: ignored */
    const char *colon = memchr(line, ':', len);
    if (!colon || colon == line)
        return;
    size_t nlen = (size_t)(colon - line);
    while (nlen > 0 && (line[nlen - 1] == ' ' || line[nlen - 1] == '\t'))
        nlen--;
    const char *v = colon + 1;
    const char *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t vlen = (size_t)(end - v);
    if (nlen == 0 || memchr(line, '\0', nlen) || memchr(v, '\0', vlen))
        return;
    size_t need = nlen + 1 + vlen + 1;
    if (r->hdr_len + need > HTTP_MAX_HEADER_BYTES) {
        if (!r->hdr_overflow)
            log_debug("http: response headers over %u bytes, rest dropped",
                      (unsigned)HTTP_MAX_HEADER_BYTES);
        r->hdr_overflow = true;
        return;
    }
    if (r->hdr_len + need > r->hdr_cap) {
        size_t cap = r->hdr_cap ? r->hdr_cap : HEADER_INITIAL_CAP;
        while (cap < r->hdr_len + need)
            cap *= 2;
        if (cap > HTTP_MAX_HEADER_BYTES)
            cap = HTTP_MAX_HEADER_BYTES;
        char *nb = realloc(r->hdrs, cap);
        if (!nb) {
            r->hdr_overflow = true;
            return;
        }
        r->hdrs = nb;
        r->hdr_cap = cap;
    }
    memcpy(r->hdrs + r->hdr_len, line, nlen);
    r->hdrs[r->hdr_len + nlen] = '\0';
    memcpy(r->hdrs + r->hdr_len + nlen + 1, v, vlen);
    r->hdrs[r->hdr_len + nlen + 1 + vlen] = '\0';
    r->hdr_len += need;
}

static size_t header_cb(char *buf, size_t size, size_t nitems, void *userdata)
{
    http_req *r = userdata;
    size_t n = size * nitems;
    if (r->dead || r->aborted_by_cb)
        return 0;
    req_touch(r);
    if (n >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
        /* a new response (1xx, or the final one): keep only its headers */
        r->hdr_len = 0;
        r->hdr_overflow = false;
        r->headers_done = false;
        r->status = parse_status_line(buf, n);
        return n;
    }
    size_t len = n;
    while (len > 0 && (buf[len - 1] == '\r' || buf[len - 1] == '\n'))
        len--;
    if (len == 0) {
        if (!r->headers_done && r->status >= 200) {
            r->headers_done = true;
            if (!req_headers_complete(r))
                return 0;
        }
        return n;
    }
    if (!r->headers_done) /* trailers are not kept */
        req_store_header(r, buf, len);
    return n;
}

static bool body_append(http_req *r, const char *p, size_t n)
{
    size_t room = r->max_body - r->body_len;
    size_t take = n <= room ? n : room;
    if (r->body_len + take + 1 > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : BODY_INITIAL_CAP;
        while (cap < r->body_len + take + 1 && cap <= r->max_body)
            cap *= 2;
        if (cap > r->max_body + 1)
            cap = r->max_body + 1;
        char *nb = realloc(r->body, cap);
        if (!nb) {
            r->oom = true;
            return false;
        }
        r->body = nb;
        r->body_cap = cap;
    }
    if (take)
        memcpy(r->body + r->body_len, p, take);
    r->body_len += take;
    r->body[r->body_len] = '\0';
    if (take < n) {
        r->truncated = true;
        return false;
    }
    return true;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    http_req *r = userdata;
    size_t n = size * nmemb;
    if (r->dead || r->aborted_by_cb || r->truncated || r->oom)
        return WRITE_ABORT;
    req_touch(r);
    if (r->discard)
        return n;
    if (!r->stream)
        return body_append(r, ptr, n) ? n : WRITE_ABORT;
    if (!r->response_called && !req_call_on_response(r))
        return WRITE_ABORT;
    if (r->paused)
        return CURL_WRITEFUNC_PAUSE; /* curl keeps this chunk for later */
    if (n == 0 || !r->cb.on_data)
        return n;
    int rc = r->cb.on_data(r->ud, ptr, n);
    r->delivered += n;
    if (r->dead)
        return WRITE_ABORT;
    if (rc != 0) {
        r->aborted_by_cb = true;
        return WRITE_ABORT;
    }
    return n;
}

static size_t read_cb(char *buf, size_t size, size_t nitems, void *userdata)
{
    http_req *r = userdata;
    if (r->dead || !r->upload)
        return CURL_READFUNC_ABORT;
    req_touch(r);
    size_t got = fread(buf, 1, size * nitems, r->upload);
    if (got == 0 && ferror(r->upload))
        return CURL_READFUNC_ABORT;
    return got;
}

static int seek_cb(void *userdata, curl_off_t offset, int origin)
{
    http_req *r = userdata;
    if (!r->upload || fseeko(r->upload, (off_t)offset, origin) != 0)
        return CURL_SEEKFUNC_CANTSEEK;
    return CURL_SEEKFUNC_OK;
}

/* ------------------------------------------------------------ completion */

/* curl's message unless it could reveal the URL (signed query strings). */
static const char *req_error_text(http_req *r, CURLcode code)
{
    size_t n = strlen(r->errbuf);
    while (n > 0 && (r->errbuf[n - 1] == '\n' || r->errbuf[n - 1] == '\r'))
        r->errbuf[--n] = '\0';
    if (n == 0 || strstr(r->errbuf, "://") ||
        (r->query && r->query[0] && strstr(r->errbuf, r->query)))
        return curl_easy_strerror(code);
    return r->errbuf;
}

/* Ends the current attempt: retry, or on_done and release. Called from the
 * loop only (client->in_curl == 0, client->depth > 0). */
static void req_finish_attempt(http_req *r, CURLcode code, const char *own_err)
{
    http_client *c = r->client;
    if (r->in_multi) {
        curl_multi_remove_handle(c->multi, r->easy);
        r->in_multi = false;
    }
    uv_timer_stop(&r->timer);
    r->want_unpause = false;
    if (r->dead) {
        req_detach(r);
        req_release(r);
        return;
    }
    if (r->oom) {
        code = CURLE_OUT_OF_MEMORY;
        own_err = "out of memory";
    } else if (r->truncated) {
        code = CURLE_OK; /* a complete response, flagged truncated */
        own_err = NULL;
    } else if (r->aborted_by_cb) {
        if (code == CURLE_OK)
            code = CURLE_WRITE_ERROR;
        own_err = "transfer aborted by callback";
    }

    uint64_t delay = 0;
    if (!r->oom && !r->truncated && !r->aborted_by_cb &&
        req_should_retry(r, code, &delay)) {
        log_debug("http: attempt %d failed (status %ld, %s), retry in %llu ms",
                  r->attempts, r->status,
                  code != CURLE_OK ? curl_easy_strerror(code) : "HTTP status",
                  (unsigned long long)delay);
        r->state = REQ_WAIT;
        uv_timer_start(&r->timer, req_timer_cb, delay, 0);
        return;
    }

    const char *err = "";
    if (code != CURLE_OK)
        err = own_err ? own_err : req_error_text(r, code);
    r->state = REQ_FINISHING;
    req_uncount(r);
    if (!r->stream && !r->body) {
        /* always hand out a NUL-terminated body */
        r->body = malloc(1);
        if (r->body) {
            r->body[0] = '\0';
            r->body_cap = 1;
        }
    }
    http_response res = {
        .status = r->status,
        .body = r->stream ? NULL : (r->body ? r->body : ""),
        .body_len = r->stream ? 0 : r->body_len,
        .curl_code = (int)code,
        .error = err,
        .truncated = r->truncated,
        .canceled_by_callback = r->aborted_by_cb,
        .lib_missing = r->load_error != NULL,
        .attempts = r->attempts,
        .req = r,
    };
    if (r->cb.on_done)
        r->cb.on_done(r->ud, &res);
    req_detach(r);
    req_release(r);
}

static void process_info(http_client *c)
{
    CURLMsg *msg;
    int left = 0;
    while (!c->destroying && (msg = curl_multi_info_read(c->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURLcode code = msg->data.result;
        char *priv = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
        http_req *r = (http_req *)(void *)priv;
        /* msg is not used past this point: on_done may change the multi */
        if (r)
            req_finish_attempt(r, code, NULL);
    }
}

static void req_do_unpause(http_req *r)
{
    http_client *c = r->client;
    r->want_unpause = false;
    c->in_curl++;
    /* may deliver the held-back data (on_data) right here */
    CURLcode rc = curl_easy_pause(r->easy, CURLPAUSE_CONT);
    c->in_curl--;
    if (r->dead) {
        req_detach(r);
        req_release(r);
    } else if (rc != CURLE_OK || r->aborted_by_cb || r->truncated || r->oom) {
        req_finish_attempt(r, rc != CURLE_OK ? rc : CURLE_WRITE_ERROR, NULL);
    } else if (r->state == REQ_RUNNING) {
        req_arm_idle(r);
    }
}

static void req_check_idle(http_req *r)
{
    if (r->idle_ms <= 0)
        return;
    uint64_t now = uv_now(r->client->loop);
    if (r->paused) {
        req_arm_idle(r);
        return;
    }
    uint64_t idle = (uint64_t)r->idle_ms;
    uint64_t elapsed = now - r->last_activity;
    if (elapsed >= idle) {
        snprintf(r->own_error, sizeof r->own_error,
                 "idle timeout: no data received for %ld ms", r->idle_ms);
        req_finish_attempt(r, CURLE_OPERATION_TIMEDOUT, r->own_error);
    } else {
        uv_timer_start(&r->timer, req_timer_cb, idle - elapsed, 0);
    }
}

static void req_timer_cb(uv_timer_t *t)
{
    http_req *r = t->data;
    http_client *c = r->client;
    c->depth++;
    if (r->dead) {
        req_detach(r);
        req_release(r);
    } else if (r->state == REQ_WAIT && !r->easy) {
        /* libcurl could not be loaded when this request started */
        req_finish_attempt(r, CURLE_FAILED_INIT, r->load_error);
    } else if (r->state == REQ_WAIT) {
        if (!req_begin_attempt(r)) {
            snprintf(r->own_error, sizeof r->own_error, "could not start the transfer");
            req_finish_attempt(r, CURLE_FAILED_INIT, r->own_error);
        }
    } else if (r->state == REQ_RUNNING) {
        if (r->want_unpause)
            req_do_unpause(r);
        else
            req_check_idle(r);
    }
    client_leave(c);
}

/* ------------------------------------------------------------ public API */

http_client *http_client_new(uv_loop_t *loop)
{
    if (!loop)
        return NULL;
    http_client *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->loop = loop;
    /* curl and the multi handle come with the first request (client_load) */
    if (uv_prepare_init(loop, &c->prepare) != 0) {
        free(c);
        return NULL;
    }
    c->prepare.data = c;
    c->open_handles = 1;
    if (uv_timer_init(loop, &c->timer) != 0) {
        c->finalized = true; /* freed once the prepare handle is closed */
        uv_close((uv_handle_t *)&c->prepare, client_handle_close_cb);
        return NULL;
    }
    c->timer.data = c;
    c->open_handles = 2;
    c->budget_ns = HTTP_POLL_BUDGET_NS;
    c->rng = uv_hrtime() ^ (uint64_t)(uintptr_t)c ^ UINT64_C(0x9e3779b97f4a7c15);
    if (c->rng == 0)
        c->rng = 1;
    return c;
}

static void client_finalize(http_client *c)
{
    c->finalized = true; /* curl's socket/timer callbacks are ignored now */
    while (c->reqs) {
        http_req *r = c->reqs;
        r->dead = true;
        req_detach(r);
        req_release(r);
    }
    while (c->socks)
        sock_close(c->socks);
    if (c->multi) {
        curl_multi_cleanup(c->multi);
        c->multi = NULL;
    }
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, client_handle_close_cb);
    uv_prepare_stop(&c->prepare);
    uv_close((uv_handle_t *)&c->prepare, client_handle_close_cb);
}

void http_client_destroy(http_client *client)
{
    if (!client || client->destroying)
        return;
    client->destroying = true;
    for (http_req *r = client->reqs; r; r = r->next) {
        r->dead = true;
        req_uncount(r);
    }
    if (client->depth == 0)
        client_finalize(client);
    /* else: from a callback; client_leave finalizes when the loop callback
     * that is on the stack unwinds */
}

static bool method_ok(const char *m)
{
    size_t n = strlen(m);
    if (n == 0 || n > METHOD_MAX_LEN)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((m[i] >= 'A' && m[i] <= 'Z') || m[i] == '-' || m[i] == '_'))
            return false;
    return true;
}

#define SETOPT_OR_FAIL(r, opt, val)                                  \
    do {                                                             \
        if (curl_easy_setopt((r)->easy, opt, val) != CURLE_OK)       \
            return false;                                            \
    } while (0)

static bool req_set_body(http_req *r, const http_opts *o, const char *method)
{
    if (o->body_file) {
        r->upload = fopen(o->body_file, "rb");
        if (!r->upload) {
            log_warn("http: cannot open the upload file");
            return false;
        }
        struct stat st;
        if (fstat(fileno(r->upload), &st) != 0 || !S_ISREG(st.st_mode))
            return false;
        SETOPT_OR_FAIL(r, CURLOPT_UPLOAD, 1L);
        SETOPT_OR_FAIL(r, CURLOPT_READFUNCTION, read_cb);
        SETOPT_OR_FAIL(r, CURLOPT_READDATA, r);
        SETOPT_OR_FAIL(r, CURLOPT_SEEKFUNCTION, seek_cb);
        SETOPT_OR_FAIL(r, CURLOPT_SEEKDATA, r);
        SETOPT_OR_FAIL(r, CURLOPT_INFILESIZE_LARGE, (curl_off_t)st.st_size);
        if (strcmp(method, "PUT") != 0)
            SETOPT_OR_FAIL(r, CURLOPT_CUSTOMREQUEST, method);
        return true;
    }
    bool has_body = o->body != NULL;
    if (strcmp(method, "HEAD") == 0) {
        SETOPT_OR_FAIL(r, CURLOPT_NOBODY, 1L);
        return true;
    }
    if (strcmp(method, "POST") == 0) {
        SETOPT_OR_FAIL(r, CURLOPT_POST, 1L);
    } else if (strcmp(method, "GET") == 0 && !has_body) {
        SETOPT_OR_FAIL(r, CURLOPT_HTTPGET, 1L);
        return true;
    } else {
        SETOPT_OR_FAIL(r, CURLOPT_CUSTOMREQUEST, method);
        /* PUT/PATCH without a body still send Content-Length: 0 */
        if (!has_body && strcmp(method, "PUT") != 0 && strcmp(method, "PATCH") != 0)
            return true;
    }
    size_t len = has_body ? o->body_len : 0;
    SETOPT_OR_FAIL(r, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    SETOPT_OR_FAIL(r, CURLOPT_COPYPOSTFIELDS, has_body ? o->body : "");
    return true;
}

static bool req_setup(http_req *r, const http_opts *o)
{
    const char *q = strchr(o->url, '?');
    if (q) {
        size_t qlen = strcspn(q + 1, "#");
        r->query = malloc(qlen + 1);
        if (!r->query)
            return false;
        memcpy(r->query, q + 1, qlen);
        r->query[qlen] = '\0';
    }
    for (const char *const *h = o->headers; h && *h; h++) {
        if (strpbrk(*h, "\r\n") || !strchr(*h, ':')) {
            log_warn("http: refusing a malformed request header");
            return false;
        }
        struct curl_slist *ns = curl_slist_append(r->slist, *h);
        if (!ns)
            return false;
        r->slist = ns;
    }
    const char *method = o->method ? o->method : o->body_file ? "PUT" : "GET";
    if (!method_ok(method)) {
        log_warn("http: refusing an invalid method");
        return false;
    }
    long connect_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms
                                                : HTTP_DEFAULT_CONNECT_MS;
    SETOPT_OR_FAIL(r, CURLOPT_PRIVATE, (void *)r);
    SETOPT_OR_FAIL(r, CURLOPT_URL, o->url);
    SETOPT_OR_FAIL(r, CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
    SETOPT_OR_FAIL(r, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    SETOPT_OR_FAIL(r, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    SETOPT_OR_FAIL(r, CURLOPT_FOLLOWLOCATION, 0L);
    SETOPT_OR_FAIL(r, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    if (o->timeout_ms > 0)
        SETOPT_OR_FAIL(r, CURLOPT_TIMEOUT_MS, o->timeout_ms);
    SETOPT_OR_FAIL(r, CURLOPT_TCP_KEEPALIVE, 1L);
    SETOPT_OR_FAIL(r, CURLOPT_TCP_KEEPIDLE, TCP_KEEPIDLE_S);
    SETOPT_OR_FAIL(r, CURLOPT_TCP_KEEPINTVL, TCP_KEEPINTVL_S);
    SETOPT_OR_FAIL(r, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
    SETOPT_OR_FAIL(r, CURLOPT_ERRORBUFFER, r->errbuf);
    SETOPT_OR_FAIL(r, CURLOPT_WRITEFUNCTION, write_cb);
    /* Event streams trickle small events; curl's default 16 KiB receive
     * buffer per transfer would dominate the memory of a live stream. */
    if (r->stream)
        SETOPT_OR_FAIL(r, CURLOPT_BUFFERSIZE, (long)HTTP_STREAM_BUFFER_BYTES);
    SETOPT_OR_FAIL(r, CURLOPT_WRITEDATA, r);
    SETOPT_OR_FAIL(r, CURLOPT_HEADERFUNCTION, header_cb);
    SETOPT_OR_FAIL(r, CURLOPT_HEADERDATA, r);
    if (r->slist)
        SETOPT_OR_FAIL(r, CURLOPT_HTTPHEADER, r->slist);
    if (o->ca_file)
        SETOPT_OR_FAIL(r, CURLOPT_CAINFO, o->ca_file);
    return req_set_body(r, o, method);
}

/* Loads libcurl and creates the multi handle, on the first request. Returns
 * 0; 1 when libcurl could not be loaded (curl_lazy_error() says why; the
 * next request tries again); -1 on another failure (out of memory). */
static int client_load(http_client *c)
{
    if (c->multi)
        return 0;
    if (curl_lazy_load() != 0) {
        log_error("http: %s", curl_lazy_error());
        return 1;
    }
    c->multi = curl_multi_init();
    if (!c->multi)
        return -1;
    if (curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, multi_socket_cb) != CURLM_OK ||
        curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c) != CURLM_OK ||
        curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, multi_timer_cb) != CURLM_OK ||
        curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c) != CURLM_OK) {
        curl_multi_cleanup(c->multi);
        c->multi = NULL;
        return -1;
    }
    uv_prepare_start(&c->prepare, prepare_cb);
    uv_unref((uv_handle_t *)&c->prepare); /* never keeps the loop alive */
    return 0;
}

/* A request that cannot run because libcurl is missing: it ends with that
 * reason from its timer, on the next loop turn (never inside http_start). */
static bool req_setup_unloaded(http_req *r)
{
    r->load_error = strdup(curl_lazy_error());
    return r->load_error != NULL;
}

http_req *http_start(http_client *client, const http_opts *opts,
                     const http_callbacks *cb, void *ud)
{
    if (!client || client->destroying || !opts || !opts->url || !cb)
        return NULL;
    int loaded = client_load(client);
    if (loaded < 0)
        return NULL;
    http_req *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->client = client;
    r->cb = *cb;
    r->ud = ud;
    r->stream = opts->stream;
    r->max_body = opts->max_body ? opts->max_body : HTTP_DEFAULT_MAX_BODY;
    r->idle_ms = opts->idle_timeout_ms > 0 ? opts->idle_timeout_ms : 0;
    r->max_retries = opts->max_retries > 0 ? opts->max_retries : 0;
    r->idempotent = opts->idempotent;
    r->state = REQ_WAIT;
    bool ok;
    if (loaded == 0) {
        r->easy = curl_easy_init();
        ok = r->easy && req_setup(r, opts);
    } else {
        ok = req_setup_unloaded(r);
    }
    if (!ok || uv_timer_init(client->loop, &r->timer) != 0) {
        req_detach(r);
        free(r->query);
        free(r->load_error);
        free(r);
        return NULL;
    }
    r->timer.data = r;
    client->open_handles++;
    r->next = client->reqs;
    if (client->reqs)
        client->reqs->prev = r;
    client->reqs = r;
    r->counted = true;
    client->active++;

    if (client->in_curl > 0 || !r->easy) {
        /* called from inside a curl callback: add from the loop; or
         * without curl: fail from the loop */
        uv_timer_start(&r->timer, req_timer_cb, 0, 0);
    } else if (!req_begin_attempt(r)) {
        req_detach(r);
        req_release(r);
        return NULL;
    }
    return r;
}

void http_cancel(http_req *req)
{
    if (!req || req->dead || req->state == REQ_RELEASED)
        return;
    req->dead = true;
    req_uncount(req);
    if (req->state == REQ_FINISHING)
        return; /* inside its own on_done: released when that returns */
    if (req->client->in_curl > 0) {
        /* curl is on the stack: no callback will run (dead), the transfer is
         * taken out of curl from the loop, right after this callback */
        uv_timer_start(&req->timer, req_timer_cb, 0, 0);
        return;
    }
    req_detach(req);
    req_release(req);
}

void http_pause(http_req *req, bool paused)
{
    if (!req || req->dead || !req->stream)
        return;
    if (paused) {
        /* the write callback holds the next chunk back (CURL_WRITEFUNC_PAUSE),
         * which pauses receiving in curl */
        req->paused = true;
        return;
    }
    if (!req->paused)
        return;
    req->paused = false;
    if (req->state == REQ_RUNNING) {
        /* curl_easy_pause(CONT) delivers the held data synchronously: do it
         * from the loop, never inside the caller's stack */
        req->want_unpause = true;
        uv_timer_start(&req->timer, req_timer_cb, 0, 0);
    }
}

const char *http_header(const http_req *req, const char *name)
{
    if (!req || !name || !req->hdrs)
        return NULL;
    size_t off = 0;
    while (off < req->hdr_len) {
        const char *n = req->hdrs + off;
        size_t nl = strlen(n);
        const char *v = n + nl + 1;
        size_t vl = strlen(v);
        if (strcasecmp(n, name) == 0)
            return v;
        off += nl + 1 + vl + 1;
    }
    return NULL;
}

size_t http_active(const http_client *client)
{
    return client ? client->active : 0;
}

void http_set_poll_budget(http_client *client, uint64_t ns)
{
    if (client)
        client->budget_ns = ns ? ns : HTTP_POLL_BUDGET_NS;
}

uint64_t http_deferred_polls(const http_client *client)
{
    return client ? client->deferred : 0;
}
